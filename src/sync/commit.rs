//! Commits the sync cycle makes of its own: the captured local edits, built in memory on top
//! of HEAD (no index), then just those paths written into the clone's working tree.
//!
//! Must never: commit a file the capture did not hand it, or leave the working tree of the
//! clone different from the new HEAD for the paths it committed.

use crate::error::{Error, Result};
use crate::repo::FleetRepo;

use super::capture;

/// HEAD's tree of the fleet clone.
pub fn head_tree(repo: &git2::Repository) -> Result<git2::Tree<'_>> {
    repo.head()
        .and_then(|h| h.peel_to_tree())
        .map_err(Error::git("cannot read HEAD of the fleet clone"))
}

/// Commits the captured changes in one commit. A captured file whose path clashes with the
/// fleet's tree (a directory here where the fleet holds a file, or the reverse) is not
/// committed: it is returned with the reason, for the cycle's report, and the rest goes on.
pub fn commit_capture(
    repo: &FleetRepo,
    captured: &capture::Captured,
    name: &str,
) -> Result<Vec<String>> {
    let head = head_tree(repo.raw())?;
    let mut held_back = Vec::new();
    let upserts: Vec<(String, git2::Oid, bool)> = captured
        .upserts
        .iter()
        .filter(|(path, _, _)| match clash(&head, path) {
            Some(why) => {
                held_back.push(format!("{} not captured: {why}", display_path(path)));
                false
            }
            None => true,
        })
        .cloned()
        .collect();
    drop(head);
    let mut names: Vec<String> = Vec::new();
    for (path, _, _) in &upserts {
        names.push(display_path(path));
    }
    for path in &captured.removals {
        names.push(format!("{} (deleted)", display_path(path)));
    }
    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    let more = names.len().saturating_sub(3);
    let message = if more > 0 {
        format!("{name}: sync {} (+{more} more)", shown.join(", "))
    } else {
        format!("{name}: sync {}", shown.join(", "))
    };
    if upserts.is_empty() && captured.removals.is_empty() {
        return Ok(held_back);
    }
    commit_changes(repo, &upserts, &captured.removals, &message)?;
    Ok(held_back)
}

/// Why a file cannot be stored at `path` in `tree`: a leading part of the path is a file in
/// the tree, or the path itself is a directory there. `None` when it can.
pub fn clash(tree: &git2::Tree<'_>, path: &str) -> Option<String> {
    let mut prefix = String::new();
    for part in path.split('/') {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        let Ok(entry) = tree.get_path(std::path::Path::new(&prefix)) else {
            return None;
        };
        let is_tree = entry.kind() == Some(git2::ObjectType::Tree);
        if prefix.len() < path.len() && !is_tree {
            return Some(format!(
                "the fleet holds a file at {} where this machine has a directory",
                display_path(&prefix)
            ));
        }
        if prefix.len() == path.len() && is_tree {
            return Some(format!(
                "the fleet holds a directory at {} where this machine has a file",
                display_path(&prefix)
            ));
        }
    }
    None
}

/// Commits `upserts` (path, blob, exec) and `removals` on top of HEAD in one commit built in
/// memory (no index), moves the branch, then writes just those paths into the clone's working
/// tree and index. Returns `None` when nothing changed.
pub fn commit_changes(
    repo: &FleetRepo,
    upserts: &[(String, git2::Oid, bool)],
    removals: &[String],
    message: &str,
) -> Result<Option<git2::Oid>> {
    let raw = repo.raw();
    let head = head_tree(raw)?;
    let mut b = git2::build::TreeUpdateBuilder::new();
    for (path, oid, exec) in upserts {
        let mode = if *exec {
            git2::FileMode::BlobExecutable
        } else {
            git2::FileMode::Blob
        };
        b.upsert(path.as_str(), *oid, mode);
    }
    for path in removals {
        b.remove(path.as_str());
    }
    let tree_id = b
        .create_updated(raw, &head)
        .map_err(Error::git("cannot write the changed tree"))?;
    if tree_id == head.id() {
        return Ok(None);
    }
    let tree = raw
        .find_tree(tree_id)
        .map_err(Error::git("cannot read a tree"))?;
    let parent = raw
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(Error::git("cannot read HEAD"))?;
    let oid = crate::signing::commit(
        raw,
        repo.signer()?,
        Some("HEAD"),
        message,
        &tree,
        &[&parent],
    )?;
    // The working tree follows for the changed paths only (a long list: all of it).
    // The paths are exact repo paths, never patterns: libgit2 then walks just them instead of
    // every entry of the tree (and a name holding `*` or `[` means only itself).
    let mut co = git2::build::CheckoutBuilder::new();
    co.force().disable_pathspec_match(true);
    if upserts.len() + removals.len() <= 256 {
        for (path, _, _) in upserts {
            co.path(path.as_str());
        }
        for path in removals {
            co.path(path.as_str());
        }
    }
    raw.checkout_head(Some(&mut co))
        .map_err(Error::git("cannot update the fleet clone's working tree"))?;
    Ok(Some(oid))
}

/// Commits `fleet` as the clone's fleet.toml (fleetkey's own layout of the file), alone, with
/// `message`. Returns `None` when it was already so.
pub fn commit_fleet_toml(
    repo: &FleetRepo,
    fleet: &crate::config::FleetConfig,
    message: &str,
) -> Result<Option<git2::Oid>> {
    let blob = repo
        .raw()
        .blob(fleet.file_text().as_bytes())
        .map_err(Error::git("cannot store fleet.toml"))?;
    commit_changes(
        repo,
        &[(crate::config::FleetConfig::FILE.to_string(), blob, false)],
        &[],
        message,
    )
}

/// `home/.zshrc` → `~/.zshrc`; `hosts/NAME/home/x` → `~/x (NAME only)`.
fn display_path(repo_path: &str) -> String {
    if let Some(rel) = repo_path.strip_prefix("home/") {
        return format!("~/{rel}");
    }
    let mut parts = repo_path.splitn(4, '/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("hosts"), Some(host), Some("home"), Some(rel)) => format!("~/{rel} ({host} only)"),
        _ => repo_path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_with<'r>(repo: &'r git2::Repository, paths: &[&str]) -> git2::Tree<'r> {
        let blob = repo.blob(b"x").unwrap();
        let empty = repo.treebuilder(None).unwrap().write().unwrap();
        let empty = repo.find_tree(empty).unwrap();
        let mut b = git2::build::TreeUpdateBuilder::new();
        for p in paths {
            b.upsert(*p, blob, git2::FileMode::Blob);
        }
        let id = b.create_updated(repo, &empty).unwrap();
        repo.find_tree(id).unwrap()
    }

    #[test]
    fn a_path_clashes_with_a_file_above_it_or_a_directory_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let tree = tree_with(&repo, &["home/.config", "home/.vim/vimrc"]);
        let above = clash(&tree, "home/.config/git/config").unwrap();
        assert!(above.contains("a file at ~/.config where"), "{above}");
        let at = clash(&tree, "home/.vim").unwrap();
        assert!(at.contains("a directory at ~/.vim where"), "{at}");
        assert_eq!(clash(&tree, "home/.vim/gvimrc"), None);
        assert_eq!(clash(&tree, "home/.zshrc"), None);
        assert_eq!(
            clash(&tree, "home/.config"),
            None,
            "a file replacing a file"
        );
    }
}

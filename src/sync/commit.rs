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

/// Commits the captured changes in one commit.
pub fn commit_capture(repo: &FleetRepo, captured: &capture::Captured, name: &str) -> Result<()> {
    let mut names: Vec<String> = Vec::new();
    for (path, _, _) in &captured.upserts {
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
    commit_changes(repo, &captured.upserts, &captured.removals, &message)?;
    Ok(())
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
    let mut co = git2::build::CheckoutBuilder::new();
    co.force();
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

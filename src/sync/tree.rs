//! Reading the native backend's files out of a commit: `home/` and this machine's
//! `hosts/NAME/home/` overrides, as a map from the path relative to `$HOME` to the blob that
//! holds its content.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

use super::managed::Managed;

/// The fleet's top directory for managed files.
pub const HOME_DIR: &str = "home";

/// A managed file as stored in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its path in the repo (`home/REL` or `hosts/NAME/home/REL`).
    pub repo_path: String,
    /// The blob.
    pub oid: git2::Oid,
    /// Whether it is stored executable.
    pub exec: bool,
}

/// `hosts/NAME/home`.
pub fn host_dir(machine: &str) -> String {
    format!("hosts/{machine}/home")
}

/// Every blob below `prefix` in `tree`, by path relative to `prefix`.
pub fn blobs_under(
    repo: &git2::Repository,
    tree: &git2::Tree<'_>,
    prefix: &str,
) -> Result<BTreeMap<String, (git2::Oid, bool)>> {
    let mut out = BTreeMap::new();
    let Ok(entry) = tree.get_path(std::path::Path::new(prefix)) else {
        return Ok(out);
    };
    if entry.kind() != Some(git2::ObjectType::Tree) {
        return Ok(out);
    }
    let sub = repo
        .find_tree(entry.id())
        .map_err(Error::git(format!("cannot read {prefix}/")))?;
    sub.walk(git2::TreeWalkMode::PreOrder, |root, e| {
        if e.kind() == Some(git2::ObjectType::Blob)
            && let Ok(name) = e.name()
        {
            out.insert(
                format!("{root}{name}"),
                (
                    e.id(),
                    e.filemode() == i32::from(git2::FileMode::BlobExecutable),
                ),
            );
        }
        git2::TreeWalkResult::Ok
    })
    .map_err(Error::git(format!("cannot walk {prefix}/")))?;
    Ok(out)
}

/// What this machine should have for each managed file in `tree`: the host override when there
/// is one, else `home/`. Only paths the managed list covers are returned.
pub fn effective(
    repo: &git2::Repository,
    tree: &git2::Tree<'_>,
    machine: &str,
    managed: &[Managed],
) -> Result<BTreeMap<String, Stored>> {
    let mut out = BTreeMap::new();
    let host = host_dir(machine);
    for (prefix, files) in [
        (HOME_DIR.to_string(), blobs_under(repo, tree, HOME_DIR)?),
        (host.clone(), blobs_under(repo, tree, &host)?),
    ] {
        for (rel, (oid, exec)) in files {
            if managed.iter().any(|m| m.covers(&rel)) {
                out.insert(
                    rel.clone(),
                    Stored {
                        repo_path: format!("{prefix}/{rel}"),
                        oid,
                        exec,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// The blob at `path` in `tree`, if any.
pub fn blob_at(tree: &git2::Tree<'_>, path: &str) -> Option<git2::Oid> {
    tree.get_path(std::path::Path::new(path))
        .ok()
        .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
        .map(|e| e.id())
}

/// The bytes of the blob at `path` in `tree`, if any.
pub fn read_at(repo: &git2::Repository, tree: &git2::Tree<'_>, path: &str) -> Option<Vec<u8>> {
    let oid = blob_at(tree, path)?;
    repo.find_blob(oid).ok().map(|b| b.content().to_vec())
}

/// What this machine should have for the managed file `rel` in `tree` (its override, else
/// `home/`), looked up directly: no walk.
pub fn lookup(tree: &git2::Tree<'_>, machine: &str, rel: &str) -> Option<Stored> {
    for prefix in [host_dir(machine), HOME_DIR.to_string()] {
        let repo_path = format!("{prefix}/{rel}");
        if let Ok(e) = tree.get_path(std::path::Path::new(&repo_path))
            && e.kind() == Some(git2::ObjectType::Blob)
        {
            return Some(Stored {
                repo_path,
                oid: e.id(),
                exec: e.filemode() == i32::from(git2::FileMode::BlobExecutable),
            });
        }
    }
    None
}

/// The managed files (relative to `$HOME`) whose stored version may differ between the trees
/// `old` and `new`: every path under `home/` or `hosts/MACHINE/home/` that the diff touches.
/// `None` when `old` cannot be read (then everything is compared).
pub fn changed_between(
    repo: &git2::Repository,
    old: git2::Oid,
    new: &git2::Tree<'_>,
    machine: &str,
) -> Option<std::collections::BTreeSet<String>> {
    let old = repo.find_tree(old).ok()?;
    let host = host_dir(machine);
    let mut opts = git2::DiffOptions::new();
    opts.pathspec(format!("{HOME_DIR}/"))
        .pathspec(format!("{host}/"));
    let diff = repo
        .diff_tree_to_tree(Some(&old), Some(new), Some(&mut opts))
        .ok()?;
    let mut out = std::collections::BTreeSet::new();
    for d in diff.deltas() {
        for f in [d.old_file(), d.new_file()] {
            let Some(p) = f.path().and_then(|p| p.to_str()) else {
                continue;
            };
            if let Some(rel) = p
                .strip_prefix(&format!("{HOME_DIR}/"))
                .or_else(|| p.strip_prefix(&format!("{host}/")))
            {
                out.insert(rel.to_string());
            }
        }
    }
    Some(out)
}

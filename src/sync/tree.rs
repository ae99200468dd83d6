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
    let mut out = std::collections::BTreeSet::new();
    for prefix in [HOME_DIR.to_string(), host_dir(machine)] {
        let path = std::path::Path::new(&prefix);
        let side = |t: &git2::Tree<'_>| t.get_path(path).ok().map(|e| (e.id(), e.filemode()));
        // A whole folder is compared as one entry named "" below the prefix.
        diff_entry(repo, "", side(&old), side(new), &mut out).ok()?;
    }
    Some(out)
}

/// One entry (`None` where absent; id and file mode where present) compared between two trees:
/// equal ids and modes are skipped without reading them (git's own tree diff does the same; a
/// libgit2 diff reads every subtree), differing folders are compared entry by entry, and every
/// file path (relative to the prefix) that differs goes into `out`.
fn diff_entry(
    repo: &git2::Repository,
    rel: &str,
    old: Option<(git2::Oid, i32)>,
    new: Option<(git2::Oid, i32)>,
    out: &mut std::collections::BTreeSet<String>,
) -> std::result::Result<(), git2::Error> {
    if old == new {
        return Ok(());
    }
    let tree_mode = i32::from(git2::FileMode::Tree);
    let as_tree = |side: Option<(git2::Oid, i32)>| -> std::result::Result<Option<git2::Tree<'_>>, git2::Error> {
        match side {
            Some((id, mode)) if mode == tree_mode => repo.find_tree(id).map(Some),
            _ => Ok(None),
        }
    };
    let (old_tree, new_tree) = (as_tree(old)?, as_tree(new)?);
    // A file on either side (a file replaced by a folder counts as the file changing too).
    let is_file = |side: Option<(git2::Oid, i32)>| side.is_some_and(|(_, m)| m != tree_mode);
    if !rel.is_empty() && (is_file(old) || is_file(new)) {
        out.insert(rel.to_string());
    }
    let entries = |t: &Option<git2::Tree<'_>>| -> BTreeMap<Vec<u8>, (git2::Oid, i32)> {
        t.iter()
            .flat_map(|t| t.iter())
            .map(|e| (e.name_bytes().to_vec(), (e.id(), e.filemode())))
            .collect()
    };
    let (a, b) = (entries(&old_tree), entries(&new_tree));
    let names: std::collections::BTreeSet<&Vec<u8>> = a.keys().chain(b.keys()).collect();
    for name in names {
        let Ok(name_str) = std::str::from_utf8(name) else {
            continue;
        };
        let child = if rel.is_empty() {
            name_str.to_string()
        } else {
            format!("{rel}/{name_str}")
        };
        diff_entry(
            repo,
            &child,
            a.get(name).copied(),
            b.get(name).copied(),
            out,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libgit2's own tree diff, kept to the two folders: what `changed_between` must agree with.
    fn by_libgit2(
        repo: &git2::Repository,
        old: &git2::Tree<'_>,
        new: &git2::Tree<'_>,
        machine: &str,
    ) -> std::collections::BTreeSet<String> {
        let host = host_dir(machine);
        let diff = repo.diff_tree_to_tree(Some(old), Some(new), None).unwrap();
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
        out
    }

    fn tree<'r>(
        repo: &'r git2::Repository,
        base: Option<&git2::Tree<'_>>,
        set: &[(&str, &str, bool)],
        remove: &[&str],
    ) -> git2::Tree<'r> {
        let empty = repo.treebuilder(None).unwrap().write().unwrap();
        let base = base
            .map(|t| repo.find_tree(t.id()).unwrap())
            .unwrap_or_else(|| repo.find_tree(empty).unwrap());
        // Removals first, in a tree of their own: a folder may then become a file.
        let mut r = git2::build::TreeUpdateBuilder::new();
        for path in remove {
            r.remove(*path);
        }
        let base = repo
            .find_tree(r.create_updated(repo, &base).unwrap())
            .unwrap();
        let mut b = git2::build::TreeUpdateBuilder::new();
        for (path, content, exec) in set {
            let blob = repo.blob(content.as_bytes()).unwrap();
            let mode = if *exec {
                git2::FileMode::BlobExecutable
            } else {
                git2::FileMode::Blob
            };
            b.upsert(*path, blob, mode);
        }
        let id = b.create_updated(repo, &base).unwrap();
        repo.find_tree(id).unwrap()
    }

    #[test]
    fn the_changed_files_are_those_libgit2_finds_without_reading_equal_folders() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let mut files: Vec<(String, String)> = Vec::new();
        for d in 0..5 {
            for f in 0..5 {
                files.push((format!("home/d{d}/f{f}"), format!("{d}-{f}")));
            }
        }
        files.push(("home/.zshrc".into(), "z".into()));
        files.push(("hosts/m/home/.zshrc".into(), "mz".into()));
        files.push(("hosts/other/home/.zshrc".into(), "oz".into()));
        files.push(("fleet.toml".into(), "t".into()));
        let set: Vec<(&str, &str, bool)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str(), false))
            .collect();
        let base = tree(&repo, None, &set, &[]);
        type Change<'a> = (&'a [(&'a str, &'a str, bool)], &'a [&'a str]);
        let changes: [(&str, Change<'_>); 9] = [
            ("one file deep down", (&[("home/d2/f3", "new", false)], &[])),
            ("a file added", (&[("home/d4/new", "n", false)], &[])),
            ("a file removed", (&[], &["home/d1/f1"])),
            ("made executable", (&[("home/d0/f0", "0-0", true)], &[])),
            ("a folder removed", (&[], &["home/d3"])),
            (
                "a file becomes a folder",
                (&[("home/.zshrc/inner", "i", false)], &["home/.zshrc"]),
            ),
            (
                "a folder becomes a file",
                (&[("home/d2", "file now", false)], &["home/d2"]),
            ),
            (
                "this machine's override",
                (&[("hosts/m/home/.zshrc", "x", false)], &[]),
            ),
            (
                "outside both folders",
                (
                    &[
                        ("hosts/other/home/.zshrc", "x", false),
                        ("fleet.toml", "u", false),
                    ],
                    &[],
                ),
            ),
        ];
        for (what, (set, remove)) in changes {
            let new = tree(&repo, Some(&base), set, remove);
            let ours = changed_between(&repo, base.id(), &new, "m").unwrap();
            assert_eq!(ours, by_libgit2(&repo, &base, &new, "m"), "{what}");
            let back = changed_between(&repo, new.id(), &base, "m").unwrap();
            assert_eq!(
                back,
                by_libgit2(&repo, &new, &base, "m"),
                "{what}, backwards"
            );
            if what == "outside both folders" {
                assert!(ours.is_empty(), "{ours:?}");
            } else {
                assert!(!ours.is_empty(), "{what}");
            }
        }
        let same = changed_between(&repo, base.id(), &base, "m").unwrap();
        assert!(same.is_empty());
        assert!(
            changed_between(&repo, git2::Oid::ZERO_SHA1, &base, "m").is_none(),
            "an unreadable old tree means compare everything"
        );
    }
}

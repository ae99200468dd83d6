//! What a fleet commit's tree may hold: regular files (100644, 100755) and directories, and
//! nothing that git treats as its own. Checked before a commit is checked out or applied, so a
//! symlink, a gitlink, `.gitmodules`, `.gitattributes` or a `.git` component (in any case or
//! alias) never reaches the clone's working tree, whoever made the commit.
//!
//! The walk is bounded: it counts every entry along every path (a subtree referenced a million
//! times counts a million times) up to [`TREE_ENTRIES`], descends at most [`TREE_DEPTH`]
//! directories, holds one open tree per level and one path buffer, and stops collecting after
//! [`MAX_VIOLATIONS`] violations. Must never: recurse on the call stack, or follow a gitlink.

use crate::limits::{COMPONENT_BYTES, TREE_ENTRIES};

use super::names::{GitName, git_name};

/// The deepest directory nesting a fleet tree may have (git itself refuses trees deeper than
/// 4096 by default; a home's dotfiles are rarely 20 deep).
pub const TREE_DEPTH: usize = 256;

/// How many violations are listed before the walk stops.
pub const MAX_VIOLATIONS: usize = 1000;

/// What is wrong with one entry of a tree. Modes are compared as written in the tree object
/// (libgit2 normalises some odd modes on reading; another reader may not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Mode 120000.
    #[error("is a symbolic link; a fleet tree holds only regular files and directories")]
    Symlink,
    /// Mode 160000 (a submodule commit).
    #[error("is a gitlink (submodule); a fleet tree holds only regular files and directories")]
    Gitlink,
    /// Any other mode.
    #[error("has the unsupported mode {0:o}")]
    Mode(u32),
    /// `.git`, `.gitmodules` or `.gitattributes`, in any case or alias.
    #[error("is git's own {} (in some spelling); it never belongs in a fleet tree", .0.as_str())]
    Git(GitName),
    /// Empty, `.`, `..`, or holding `/`, `\` or NUL (only a crafted object has these).
    #[error("is not a valid file name")]
    BadName,
    /// A name longer than [`COMPONENT_BYTES`].
    #[error("has a name longer than {COMPONENT_BYTES} bytes")]
    NameTooLong,
    /// Deeper than [`TREE_DEPTH`].
    #[error("is nested more than {TREE_DEPTH} directories deep")]
    TooDeep,
    /// A subtree that cannot be read from the object database.
    #[error("is a directory whose tree object cannot be read")]
    Unreadable,
    /// The walk reached its entry cap.
    #[error("the tree has more than {0} entries; refusing to check it out")]
    TooManyEntries(usize),
    /// The walk stopped listing.
    #[error("more than {MAX_VIOLATIONS} problems; the rest are not listed")]
    TooManyViolations,
}

/// One offending entry: its path from the top of the tree (lossy UTF-8) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {violation}")]
pub struct TreeViolation {
    /// The path, `/`-separated (empty for a problem of the whole tree).
    pub path: String,
    /// What is wrong.
    pub violation: Violation,
}

/// Checks `tree` (every level) with the default entry cap, [`TREE_ENTRIES`]. `Err` lists each
/// offending path.
pub fn check_tree(
    repo: &git2::Repository,
    tree: &git2::Tree<'_>,
) -> Result<(), Vec<TreeViolation>> {
    check_tree_within(repo, tree, TREE_ENTRIES)
}

/// One level of the walk: the tree, the next entry to look at, and the length of the path
/// buffer holding this tree's path (with its trailing `/`).
struct Frame<'r> {
    tree: git2::Tree<'r>,
    next: usize,
    prefix: usize,
}

/// [`check_tree`] with an explicit cap on the number of entries.
pub fn check_tree_within(
    repo: &git2::Repository,
    tree: &git2::Tree<'_>,
    max_entries: usize,
) -> Result<(), Vec<TreeViolation>> {
    let mut out: Vec<TreeViolation> = Vec::new();
    let mut path = String::new();
    let mut stack: Vec<Frame<'_>> = match repo.find_tree(tree.id()) {
        Ok(t) => vec![Frame {
            tree: t,
            next: 0,
            prefix: 0,
        }],
        Err(_) => {
            return Err(vec![TreeViolation {
                path: String::new(),
                violation: Violation::Unreadable,
            }]);
        }
    };
    let mut seen: usize = 0;
    while let Some(top) = stack.last_mut() {
        let Some(entry) = top.tree.get(top.next) else {
            stack.pop();
            continue;
        };
        top.next += 1;
        let (name, mode, id) = (
            entry.name_bytes().to_vec(),
            u32::try_from(entry.filemode_raw()).unwrap_or(0),
            entry.id(),
        );
        drop(entry);
        path.truncate(top.prefix);
        path.push_str(&String::from_utf8_lossy(&name));
        let depth = stack.len();
        seen += 1;
        if seen > max_entries {
            out.push(TreeViolation {
                path: String::new(),
                violation: Violation::TooManyEntries(max_entries),
            });
            break;
        }
        let flag = |out: &mut Vec<TreeViolation>, path: &str, violation| {
            out.push(TreeViolation {
                path: path.to_string(),
                violation,
            });
        };
        if let Some(v) = name_violation(&name) {
            flag(&mut out, &path, v);
        } else if mode == 0o040000 {
            if depth >= TREE_DEPTH {
                flag(&mut out, &path, Violation::TooDeep);
            } else {
                match repo.find_tree(id) {
                    Ok(sub) => {
                        path.push('/');
                        stack.push(Frame {
                            tree: sub,
                            next: 0,
                            prefix: path.len(),
                        });
                    }
                    Err(_) => flag(&mut out, &path, Violation::Unreadable),
                }
            }
        } else {
            match mode {
                0o100644 | 0o100755 => {}
                0o120000 => flag(&mut out, &path, Violation::Symlink),
                0o160000 => flag(&mut out, &path, Violation::Gitlink),
                other => flag(&mut out, &path, Violation::Mode(other)),
            }
        }
        if out.len() >= MAX_VIOLATIONS {
            out.push(TreeViolation {
                path: String::new(),
                violation: Violation::TooManyViolations,
            });
            break;
        }
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// What is wrong with an entry's name, if anything.
fn name_violation(name: &[u8]) -> Option<Violation> {
    if name.is_empty()
        || name == b"."
        || name == b".."
        || name.iter().any(|b| matches!(b, b'/' | b'\\' | 0))
    {
        return Some(Violation::BadName);
    }
    if name.len() > COMPONENT_BYTES {
        return Some(Violation::NameTooLong);
    }
    git_name(&String::from_utf8_lossy(name)).map(Violation::Git)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, git2::Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        (dir, repo)
    }

    /// Writes a raw tree object: entries (mode, name, oid), sorted as git sorts them. This
    /// builds what a hostile client could push, names that libgit2's builder refuses included.
    fn raw_tree(repo: &git2::Repository, entries: &[(u32, &[u8], git2::Oid)]) -> git2::Oid {
        let mut sorted: Vec<&(u32, &[u8], git2::Oid)> = entries.iter().collect();
        sorted.sort_by(|a, b| {
            let key = |e: &(u32, &[u8], git2::Oid)| {
                let mut k = e.1.to_vec();
                if e.0 == 0o040000 {
                    k.push(b'/');
                }
                k
            };
            key(a).cmp(&key(b))
        });
        let mut bytes = Vec::new();
        for (mode, name, oid) in sorted {
            bytes.extend_from_slice(format!("{mode:o} ").as_bytes());
            bytes.extend_from_slice(name);
            bytes.push(0);
            bytes.extend_from_slice(oid.as_bytes());
        }
        repo.odb()
            .unwrap()
            .write(git2::ObjectType::Tree, &bytes)
            .unwrap()
    }

    fn check(repo: &git2::Repository, oid: git2::Oid) -> Result<(), Vec<TreeViolation>> {
        check_tree(repo, &repo.find_tree(oid).unwrap())
    }

    fn only(repo: &git2::Repository, oid: git2::Oid) -> (String, Violation) {
        let v = check(repo, oid).unwrap_err();
        assert_eq!(v.len(), 1, "{v:?}");
        (v[0].path.clone(), v[0].violation.clone())
    }

    #[test]
    fn regular_files_and_directories_pass() {
        let (_d, repo) = repo();
        let blob = repo.blob(b"x\n").unwrap();
        let sub = raw_tree(
            &repo,
            &[
                (0o100644, b".zshrc", blob),
                (0o100755, b"run.sh", blob),
                (0o100644, b".gitignore", blob),
                (0o100644, b".gitconfig", blob),
            ],
        );
        let home = raw_tree(
            &repo,
            &[(0o040000, b"home", sub), (0o100644, b"fleet.toml", blob)],
        );
        check(&repo, home).unwrap();
        let empty = repo.treebuilder(None).unwrap().write().unwrap();
        check(&repo, empty).unwrap();
    }

    #[test]
    fn symlinks_gitlinks_and_odd_modes_are_named() {
        let (_d, repo) = repo();
        let blob = repo.blob(b"/etc").unwrap();
        let link = raw_tree(&repo, &[(0o120000, b"pwn", blob)]);
        assert_eq!(only(&repo, link), ("pwn".into(), Violation::Symlink));
        let commit = git2::Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap();
        let sub = raw_tree(&repo, &[(0o160000, b"vendor", commit)]);
        let top = raw_tree(&repo, &[(0o040000, b"home", sub)]);
        assert_eq!(only(&repo, top), ("home/vendor".into(), Violation::Gitlink));
        // Modes are checked as written, not as libgit2 normalises them (it reads 120755 as an
        // executable blob, another tool may not).
        for mode in [0o100600, 0o100664, 0o120755, 0o160644, 0o060644] {
            let odd = raw_tree(&repo, &[(mode, b"f", blob)]);
            assert_eq!(
                only(&repo, odd),
                ("f".into(), Violation::Mode(mode)),
                "{mode:o}"
            );
        }
    }

    #[test]
    fn git_names_in_every_spelling_are_refused_anywhere() {
        let (_d, repo) = repo();
        let blob = repo.blob(b"[core]\n").unwrap();
        let inner = raw_tree(&repo, &[(0o100644, b"config", blob)]);
        for (name, what) in [
            (&b".git"[..], GitName::Dir),
            (b".GIT", GitName::Dir),
            (b".git.", GitName::Dir),
            (b".git ", GitName::Dir),
            (b"git~1", GitName::Dir),
            (".g\u{200c}it".as_bytes(), GitName::Dir),
            (b".gitmodules", GitName::Modules),
            (b".GitAttributes", GitName::Attributes),
        ] {
            // As a directory deep inside home/, and as a file at the top.
            let deep = raw_tree(&repo, &[(0o040000, name, inner)]);
            let mid = raw_tree(&repo, &[(0o040000, b".config", deep)]);
            let top = raw_tree(&repo, &[(0o040000, b"home", mid)]);
            let want = format!("home/.config/{}", String::from_utf8_lossy(name));
            assert_eq!(only(&repo, top), (want, Violation::Git(what)));
            let file = raw_tree(&repo, &[(0o100644, name, blob)]);
            assert_eq!(only(&repo, file).1, Violation::Git(what));
        }
    }

    #[test]
    fn crafted_names_are_refused() {
        let (_d, repo) = repo();
        let blob = repo.blob(b"x").unwrap();
        // (A NUL cannot be in a name: it ends the name in the object format.)
        for name in [&b".."[..], b".", b"a/b", b"a\\b"] {
            let t = raw_tree(&repo, &[(0o100644, name, blob)]);
            assert_eq!(only(&repo, t).1, Violation::BadName, "{name:?}");
        }
        let long = vec![b'a'; COMPONENT_BYTES + 1];
        let t = raw_tree(&repo, &[(0o100644, &long, blob)]);
        assert_eq!(only(&repo, t).1, Violation::NameTooLong);
    }

    #[test]
    fn every_offending_path_is_listed() {
        let (_d, repo) = repo();
        let blob = repo.blob(b"x").unwrap();
        let sub = raw_tree(
            &repo,
            &[
                (0o120000, b"a", blob),
                (0o100644, b"ok", blob),
                (0o100644, b".gitattributes", blob),
            ],
        );
        let top = raw_tree(
            &repo,
            &[
                (0o040000, b"home", sub),
                (0o120000, b"keys", blob),
                (0o100644, b".gitmodules", blob),
            ],
        );
        let mut paths: Vec<String> = check(&repo, top)
            .unwrap_err()
            .iter()
            .map(|v| v.to_string())
            .collect();
        paths.sort();
        assert_eq!(paths.len(), 4, "{paths:?}");
        assert!(
            paths[0].starts_with(".gitmodules: is git's own .gitmodules"),
            "{paths:?}"
        );
        assert!(paths[1].starts_with("home/.gitattributes: "), "{paths:?}");
        assert!(
            paths[2].starts_with("home/a: is a symbolic link"),
            "{paths:?}"
        );
        assert!(
            paths[3].starts_with("keys: is a symbolic link"),
            "{paths:?}"
        );
    }

    #[test]
    fn a_tree_bomb_stops_at_the_entry_cap() {
        // Ten levels, each ten references to the level below: 10^10 paths, a few KiB of objects.
        let (_d, repo) = repo();
        let blob = repo.blob(b"x").unwrap();
        let mut level = raw_tree(&repo, &[(0o100644, b"f", blob)]);
        for _ in 0..10 {
            let names: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
            let entries: Vec<(u32, &[u8], git2::Oid)> = names
                .iter()
                .map(|n| (0o040000, n.as_bytes(), level))
                .collect();
            level = raw_tree(&repo, &entries);
        }
        let tree = repo.find_tree(level).unwrap();
        let v = check_tree_within(&repo, &tree, 50_000).unwrap_err();
        assert_eq!(
            v,
            vec![TreeViolation {
                path: String::new(),
                violation: Violation::TooManyEntries(50_000)
            }]
        );
        assert!(
            v[0].to_string().contains("more than 50000 entries"),
            "{}",
            v[0]
        );
    }

    #[test]
    fn nesting_deeper_than_the_cap_is_refused_without_recursion() {
        let (_d, repo) = repo();
        let blob = repo.blob(b"x").unwrap();
        let mut level = raw_tree(&repo, &[(0o100644, b"f", blob)]);
        for _ in 0..(TREE_DEPTH + 10) {
            level = raw_tree(&repo, &[(0o040000, b"d", level)]);
        }
        let (path, v) = only(&repo, level);
        assert_eq!(v, Violation::TooDeep);
        assert_eq!(path.split('/').count(), TREE_DEPTH);
        // Exactly at the cap is fine.
        let mut ok = raw_tree(&repo, &[(0o100644, b"f", blob)]);
        for _ in 0..(TREE_DEPTH - 1) {
            ok = raw_tree(&repo, &[(0o040000, b"d", ok)]);
        }
        check(&repo, ok).unwrap();
    }

    #[test]
    fn listing_stops_after_the_violation_cap() {
        let (_d, repo) = repo();
        let blob = repo.blob(b"x").unwrap();
        let names: Vec<String> = (0..MAX_VIOLATIONS + 50).map(|i| format!("l{i}")).collect();
        let entries: Vec<(u32, &[u8], git2::Oid)> = names
            .iter()
            .map(|n| (0o120000, n.as_bytes(), blob))
            .collect();
        let t = raw_tree(&repo, &entries);
        let v = check(&repo, t).unwrap_err();
        assert_eq!(v.len(), MAX_VIOLATIONS + 1);
        assert_eq!(v.last().unwrap().violation, Violation::TooManyViolations);
    }

    #[test]
    fn a_missing_subtree_is_reported_not_a_panic() {
        let (_d, repo) = repo();
        let missing = git2::Oid::from_str("1111111111111111111111111111111111111111").unwrap();
        let t = raw_tree(&repo, &[(0o040000, b"home", missing)]);
        assert_eq!(only(&repo, t), ("home".into(), Violation::Unreadable));
    }
}

//! The fleet's history of its files, read from git (libgit2, no network): `fleetkey log` and
//! the versions `fleetkey restore` can put back.
//!
//! A managed file's history is every commit (newest first) whose version of it differs from
//! each of its parents' (git's own rule for `git log PATH`: a merge that only brought one side
//! along is not listed), looking at `home/REL` and at this machine's `hosts/NAME/home/REL`.
//! Each entry says which machine made the commit (its `Fleetkey-Machine` trailer, else an author
//! `fleetkey (NAME)`), when, and what
//! happened, read from the message fleetkey wrote (edit, track, untrack, track --here,
//! untrack --here, restore, conflict, config, delete).
//!
//! Must never: trust a message for anything but this label (a member's message is shown, not
//! run), or show a file's content.

use crate::error::{Error, Result};

use super::tree;

/// One entry of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The commit.
    pub commit: git2::Oid,
    /// The machine that made it (from the author name), or the author as written.
    pub machine: String,
    /// Commit time, seconds since the epoch.
    pub time: i64,
    /// What happened.
    pub what: &'static str,
    /// The commit's first line.
    pub subject: String,
}

/// The machine named in an author `fleetkey (NAME)`.
fn machine_of(author: &str) -> String {
    author
        .strip_prefix("fleetkey (")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(author)
        .to_string()
}

/// What a fleetkey commit message says happened.
pub fn what_happened(subject: &str, file_deleted: bool) -> &'static str {
    let body = subject.split_once(": ").map_or(subject, |(_, b)| b);
    if body.starts_with("track --here") {
        "track --here"
    } else if body.starts_with("untrack --here") {
        "untrack --here"
    } else if body.starts_with("track ") {
        "track"
    } else if body.starts_with("untrack ") {
        "untrack"
    } else if body.starts_with("restore ") {
        "restore"
    } else if body.starts_with("config set") {
        "config"
    } else if body.starts_with("remote set") {
        "forge move"
    } else if body.starts_with("merge the forge's changes (") {
        "conflict"
    } else if body.starts_with("merge") {
        "merge"
    } else if file_deleted {
        "delete"
    } else if body.starts_with("sync") {
        "edit"
    } else {
        "change"
    }
}

/// The blob this machine had for `rel` in `tree` (its override, else `home/`).
fn version(tree: &git2::Tree<'_>, machine: &str, rel: &str) -> Option<(git2::Oid, bool)> {
    tree::lookup(tree, machine, rel).map(|s| (s.oid, s.exec))
}

/// What a log or a restore is about: one managed file, or every file under a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The managed file at this path relative to `$HOME`.
    File(&'a str),
    /// Every file under this directory relative to `$HOME`.
    Dir(&'a str),
    /// A file of the fleet repo itself (`fleet.toml`).
    Repo(&'a str),
}

/// What `tree` holds for `scope`, as this machine sees it: for a file its blob and exec bit
/// (its override, else `home/`); for a directory the ids of its subtrees under `home/` and
/// this machine's `hosts/NAME/home/`. Equal values mean nothing under it changed.
type Seen = (Option<git2::Oid>, Option<git2::Oid>, bool);

fn seen(tree: &git2::Tree<'_>, machine: &str, scope: Scope<'_>) -> Seen {
    match scope {
        Scope::File(rel) => match version(tree, machine, rel) {
            Some((oid, exec)) => (Some(oid), None, exec),
            None => (None, None, false),
        },
        Scope::Dir(rel) => {
            let sub = |prefix: &str| {
                tree.get_path(std::path::Path::new(&format!("{prefix}/{rel}")))
                    .ok()
                    .filter(|e| e.kind() == Some(git2::ObjectType::Tree))
                    .map(|e| e.id())
            };
            (sub(tree::HOME_DIR), sub(&tree::host_dir(machine)), false)
        }
        Scope::Repo(path) => (tree::blob_at(tree, path), None, false),
    }
}

/// The machine that made `commit`: its `Fleetkey-Machine` trailer (the author is often the
/// user's own git identity, the same on every machine), else a `fleetkey (NAME)` author.
pub fn made_by(commit: &git2::Commit<'_>) -> String {
    if let Some(name) = commit.message().ok().and_then(crate::signing::machine_of) {
        return name.to_string();
    }
    machine_of(commit.author().name().unwrap_or("?"))
}

/// The history from HEAD, newest first: of a managed file or of every file under a managed
/// directory, or of the whole fleet when `scope` is `None`. At most `limit` entries.
pub fn log(
    repo: &git2::Repository,
    machine: &str,
    scope: Option<Scope<'_>>,
    limit: usize,
) -> Result<Vec<Entry>> {
    let mut walk = repo.revwalk().map_err(Error::git("cannot walk history"))?;
    walk.set_sorting(git2::Sort::TIME)
        .map_err(Error::git("cannot walk history"))?;
    if walk.push_head().is_err() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for oid in walk {
        if out.len() >= limit {
            break;
        }
        let oid = oid.map_err(Error::git("cannot walk history"))?;
        let commit = repo
            .find_commit(oid)
            .map_err(Error::git("cannot read a commit"))?;
        let subject = String::from_utf8_lossy(
            commit
                .message_bytes()
                .split(|b| *b == b'\n')
                .next()
                .unwrap_or_default(),
        )
        .into_owned();
        let mut deleted = false;
        if let Some(scope) = scope {
            let tree = commit.tree().map_err(Error::git("cannot read a commit"))?;
            let here = seen(&tree, machine, scope);
            let none: Seen = (None, None, false);
            let parents: Vec<Seen> = commit
                .parents()
                .map(|p| p.tree().ok().map_or(none, |t| seen(&t, machine, scope)))
                .collect();
            let changed = if parents.is_empty() {
                here != none
            } else {
                parents.iter().all(|p| *p != here)
            };
            if !changed {
                continue;
            }
            deleted = here == none;
        }
        out.push(Entry {
            commit: oid,
            machine: made_by(&commit),
            time: commit.time().seconds(),
            what: what_happened(&subject, deleted),
            subject,
        });
    }
    Ok(out)
}

/// Which earlier version `restore` puts back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// The version before the current one (the latest that differs from HEAD's).
    Previous,
    /// The version in this commit (anything `git rev-parse` takes: an id, a prefix, `HEAD~2`).
    At(String),
    /// The version in force just before this instant (seconds since the epoch).
    Before(i64),
}

/// A version found in history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The commit it comes from.
    pub commit: git2::Oid,
    /// Its blob (the repo form).
    pub blob: git2::Oid,
    /// Whether it was executable.
    pub exec: bool,
}

fn tree_of_commit<'r>(c: &git2::Commit<'r>) -> Result<git2::Tree<'r>> {
    c.tree().map_err(Error::git("cannot read a commit"))
}

/// Finds the version of `rel` that `which` names, as this machine had it.
pub fn find_version(
    repo: &git2::Repository,
    machine: &str,
    rel: &str,
    which: &Which,
) -> Result<Version> {
    let missing = |what: String| Error::refused(format!("~/{rel} has no version {what}"));
    match which {
        Which::At(rev) => {
            let commit = repo
                .revparse_single(rev)
                .and_then(|o| o.peel_to_commit())
                .map_err(|_| {
                    Error::refused(format!("{rev:?} names no commit of the fleet"))
                        .hint("`fleetkey log PATH` lists the commits that changed a file")
                })?;
            let (blob, exec) = version(&tree_of_commit(&commit)?, machine, rel)
                .ok_or_else(|| missing(format!("at {rev}")))?;
            Ok(Version {
                commit: commit.id(),
                blob,
                exec,
            })
        }
        Which::Previous | Which::Before(_) => {
            let head = repo
                .head()
                .and_then(|h| h.peel_to_commit())
                .map_err(Error::git("cannot read HEAD"))?;
            let current = version(&tree_of_commit(&head)?, machine, rel);
            let mut walk = repo.revwalk().map_err(Error::git("cannot walk history"))?;
            walk.set_sorting(git2::Sort::TIME)
                .map_err(Error::git("cannot walk history"))?;
            walk.push(head.id())
                .map_err(Error::git("cannot walk history"))?;
            for oid in walk {
                let oid = oid.map_err(Error::git("cannot walk history"))?;
                let commit = repo
                    .find_commit(oid)
                    .map_err(Error::git("cannot read a commit"))?;
                let here = version(&tree_of_commit(&commit)?, machine, rel);
                let fits = match which {
                    Which::Before(t) => commit.time().seconds() < *t,
                    _ => here.is_some() && here != current,
                };
                if !fits {
                    continue;
                }
                let (blob, exec) = here.ok_or_else(|| match which {
                    Which::Before(t) => missing(format!("before {}", crate::clock::rfc3339(*t))),
                    _ => missing("before this one".into()),
                })?;
                return Ok(Version {
                    commit: oid,
                    blob,
                    exec,
                });
            }
            Err(match which {
                Which::Before(t) => missing(format!("before {}", crate::clock::rfc3339(*t))),
                _ => missing("before this one".into()),
            })
        }
    }
}

/// The commit whose tree a directory restore takes its files from: `At(REV)` that commit,
/// `Before(T)` the newest commit older than T. `Previous` has no meaning for a directory.
pub fn find_commit(repo: &git2::Repository, which: &Which) -> Result<git2::Oid> {
    match which {
        Which::At(rev) => repo
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map(|c| c.id())
            .map_err(|_| {
                Error::refused(format!("{rev:?} names no commit of the fleet"))
                    .hint("`fleetkey log PATH` lists the commits that changed a file")
            }),
        Which::Before(t) => {
            let mut walk = repo.revwalk().map_err(Error::git("cannot walk history"))?;
            walk.set_sorting(git2::Sort::TIME)
                .map_err(Error::git("cannot walk history"))?;
            walk.push_head()
                .map_err(Error::git("cannot walk history"))?;
            for oid in walk {
                let oid = oid.map_err(Error::git("cannot walk history"))?;
                let commit = repo
                    .find_commit(oid)
                    .map_err(Error::git("cannot read a commit"))?;
                if commit.time().seconds() < *t {
                    return Ok(oid);
                }
            }
            Err(Error::refused(format!(
                "the fleet has no commit before {}",
                crate::clock::rfc3339(*t)
            )))
        }
        Which::Previous => Err(Error::refused(
            "a directory has no single earlier version: say which with --at REV or --before DATE",
        )
        .hint("`fleetkey log DIR` lists the commits that changed files under it")),
    }
}

/// Every file under the directory `rel` as this machine had it at `commit` (its overrides
/// first), by path relative to `$HOME`.
pub fn files_under(
    repo: &git2::Repository,
    commit: git2::Oid,
    machine: &str,
    rel: &str,
) -> Result<Vec<(String, Version)>> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(Error::git("cannot read a commit"))?;
    let mut out = std::collections::BTreeMap::new();
    for prefix in [tree::HOME_DIR.to_string(), tree::host_dir(machine)] {
        for (sub, (blob, exec)) in tree::blobs_under(repo, &tree, &format!("{prefix}/{rel}"))? {
            out.insert(format!("{rel}/{sub}"), Version { commit, blob, exec });
        }
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_happened() {
        let cases = [
            ("alice: sync ~/.zshrc", false, "edit"),
            ("alice: sync ~/.zshrc (deleted)", true, "delete"),
            ("bob: track ~/.config/app/", false, "track"),
            ("bob: track --here ~/.x (bob only)", false, "track --here"),
            ("bob: untrack --here ~/.x", false, "untrack --here"),
            ("bob: untrack ~/.x", true, "untrack"),
            ("bob: restore ~/.x from 0123456789ab", false, "restore"),
            (
                "bob: merge the forge's changes (1 conflicts resolved, upstream wins)",
                false,
                "conflict",
            ),
            ("bob: merge the forge's changes", false, "merge"),
            ("bob: config set poll 5s", false, "config"),
        ];
        for (subject, deleted, want) in cases {
            assert_eq!(what_happened(subject, deleted), want, "{subject}");
        }
        assert_eq!(machine_of("fleetkey (carol)"), "carol");
        assert_eq!(machine_of("Somebody"), "Somebody");
    }
}

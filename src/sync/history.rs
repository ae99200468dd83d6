//! The fleet's history of its files, read from git (libgit2, no network): `fleetkey log` and
//! the versions `fleetkey restore` can put back.
//!
//! A managed file's history is every commit (newest first) whose version of it differs from
//! each of its parents' (git's own rule for `git log PATH`: a merge that only brought one side
//! along is not listed), looking at `home/REL` and at this machine's `hosts/NAME/home/REL`.
//! Each entry says which machine made the commit (its author, `fleetkey (NAME)`), when, and what
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

/// The history from HEAD, newest first: of the managed file `rel` (relative to `$HOME`), or of
/// the whole fleet when `rel` is `None`. At most `limit` entries.
pub fn log(
    repo: &git2::Repository,
    machine: &str,
    rel: Option<&str>,
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
        if let Some(rel) = rel {
            let tree = commit.tree().map_err(Error::git("cannot read a commit"))?;
            let here = version(&tree, machine, rel);
            let parents: Vec<Option<(git2::Oid, bool)>> = commit
                .parents()
                .map(|p| p.tree().ok().and_then(|t| version(&t, machine, rel)))
                .collect();
            let changed = if parents.is_empty() {
                here.is_some()
            } else {
                parents.iter().all(|p| *p != here)
            };
            if !changed {
                continue;
            }
            deleted = here.is_none();
        }
        out.push(Entry {
            commit: oid,
            machine: machine_of(commit.author().name().unwrap_or("?")),
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

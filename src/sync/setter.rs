//! Who set a secret's value, and when: read from the fleet's history for the records of a
//! secrets merge ([`crate::envfile::merge3`]), so a value kept aside and the one in force are
//! named by the machine that set each (not by "ours" and "theirs", which swap from one machine
//! to the other) and by the time it was set there (not the time of the merge).
//!
//! From one side's tip towards the merge base, the walk follows a parent that still holds the
//! same value of the key; the commit none of whose parents on that side does is the one that
//! set it: its `Fleetkey-Machine` trailer names the machine, its author time says when. Each
//! version of the secrets is decrypted at most once (versions are compared by blob first), with
//! this machine's identity; a version it cannot read, or a walk longer than [`MAX_STEPS`],
//! leaves the setter unknown, which the record says honestly.
//!
//! Must never: print or log a value, or keep a decrypted version outside zeroizing buffers.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use zeroize::Zeroizing;

use crate::envfile::{EnvFile, Setter};
use crate::identity::Identity;
use crate::secrets::{self, CIPHERTEXT};

use super::tree;

/// The most commits one walk looks at (and the most commits of a side it considers): far more
/// than two machines make between syncs; beyond it the setter is unknown.
pub const MAX_STEPS: usize = 512;

/// Reads values of the secrets at commits of one side of a merge, decrypting each version once.
pub struct History<'r> {
    repo: &'r git2::Repository,
    identity: &'r Identity,
    /// Decrypted versions by blob (`None`: no secrets file there; an `Err` is not cached).
    versions: HashMap<Option<git2::Oid>, Option<EnvFile>>,
}

impl<'r> History<'r> {
    /// A reader of `repo`'s history with this machine's `identity`.
    pub fn new(repo: &'r git2::Repository, identity: &'r Identity) -> History<'r> {
        History {
            repo,
            identity,
            versions: HashMap::new(),
        }
    }

    /// Who set `key` to the value it has at `tip`, walking only commits that are not in
    /// `base`'s history. Unknown (both fields `None`) when a version cannot be read or the walk
    /// is too long.
    pub fn setter(&mut self, tip: git2::Oid, base: git2::Oid, key: &str) -> Setter {
        self.find(tip, base, key).unwrap_or_default()
    }

    fn find(&mut self, tip: git2::Oid, base: git2::Oid, key: &str) -> Option<Setter> {
        let side = self.side(tip, base)?;
        let mut cur = self.repo.find_commit(tip).ok()?;
        let target = self.value(&cur, key)?;
        for _ in 0..MAX_STEPS {
            let mut next = None;
            for parent in cur.parents() {
                if !side.contains(&parent.id()) {
                    continue;
                }
                if self.value(&parent, key)? == target {
                    next = Some(parent);
                    break;
                }
            }
            match next {
                Some(parent) => cur = parent,
                None => {
                    return Some(Setter {
                        machine: Some(super::history::made_by(&cur)),
                        at: Some(crate::clock::rfc3339(cur.author().when().seconds())),
                    });
                }
            }
        }
        None
    }

    /// The commits reachable from `tip` but not from `base`; `None` when there are too many.
    fn side(&self, tip: git2::Oid, base: git2::Oid) -> Option<HashSet<git2::Oid>> {
        let mut walk = self.repo.revwalk().ok()?;
        walk.push(tip).ok()?;
        walk.hide(base).ok()?;
        let mut side = HashSet::new();
        for oid in walk {
            side.insert(oid.ok()?);
            if side.len() > MAX_STEPS {
                return None;
            }
        }
        Some(side)
    }

    /// `key`'s value at `commit` (`Some(None)`: absent there); `None` when that version cannot
    /// be read.
    fn value(&mut self, commit: &git2::Commit<'_>, key: &str) -> Option<Option<Zeroizing<String>>> {
        let tree = commit.tree().ok()?;
        let blob = tree::blob_at(&tree, CIPHERTEXT);
        if !self.versions.contains_key(&blob) {
            let env = match blob {
                None => None,
                Some(_) => {
                    let ct = tree::read_at(self.repo, &tree, CIPHERTEXT)?;
                    let path = Path::new(CIPHERTEXT);
                    let plain = secrets::decrypt(&ct, self.identity, path).ok()?;
                    Some(secrets::parse_plaintext(&plain, path).ok()?)
                }
            };
            self.versions.insert(blob, env);
        }
        let env = self.versions.get(&blob)?;
        Some(
            env.as_ref()
                .and_then(|e| e.get(key))
                .map(|v| Zeroizing::new(v.to_owned())),
        )
    }
}

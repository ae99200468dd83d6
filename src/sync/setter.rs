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

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository whose commits each hold the secrets `plain` encrypted to `to`, made by
    /// `machine` at `secs` (a `Fleetkey-Machine` trailer, as fleetkey writes it).
    struct Repo {
        _dir: tempfile::TempDir,
        repo: git2::Repository,
    }

    impl Repo {
        fn new() -> Repo {
            let dir = tempfile::tempdir().unwrap();
            let repo = git2::Repository::init(dir.path()).unwrap();
            Repo { _dir: dir, repo }
        }

        fn commit(
            &self,
            parents: &[git2::Oid],
            machine: &str,
            secs: i64,
            plain: &str,
            to: &Identity,
        ) -> git2::Oid {
            let ct = secrets::encrypt(plain.as_bytes(), &[to.recipient()]).unwrap();
            let blob = self.repo.blob(&ct).unwrap();
            let mut tb = self.repo.treebuilder(None).unwrap();
            tb.insert(CIPHERTEXT, blob, 0o100644).unwrap();
            let tree = self.repo.find_tree(tb.write().unwrap()).unwrap();
            let sig = git2::Signature::new("someone", "s@x", &git2::Time::new(secs, 0)).unwrap();
            let parents: Vec<git2::Commit<'_>> = parents
                .iter()
                .map(|p| self.repo.find_commit(*p).unwrap())
                .collect();
            let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
            let message = format!("{machine}: secrets\n\nFleetkey-Machine: {machine}\n");
            self.repo
                .commit(None, &sig, &sig, &message, &tree, &parents)
                .unwrap()
        }
    }

    fn known(machine: &str, secs: i64) -> Setter {
        Setter {
            machine: Some(machine.into()),
            at: Some(crate::clock::rfc3339(secs)),
        }
    }

    #[test]
    fn the_setter_is_the_commit_that_gave_the_key_its_value_not_a_later_one() {
        let id = Identity::generate();
        let r = Repo::new();
        let base = r.commit(&[], "alpha", 1_000, "A=1\n", &id);
        // Ours: alpha sets A, then changes another key (A's value stays).
        let o1 = r.commit(&[base], "alpha", 2_000, "A=ours\n", &id);
        let o2 = r.commit(&[o1], "alpha", 3_000, "A=ours\nB=x\n", &id);
        // Theirs: beta sets A; gamma re-encrypts the same text later (another blob).
        let t1 = r.commit(&[base], "beta", 2_500, "A=theirs\n", &id);
        let t2 = r.commit(&[t1], "gamma", 4_000, "A=theirs\n", &id);
        let mut h = History::new(&r.repo, &id);
        assert_eq!(h.setter(o2, base, "A"), known("alpha", 2_000));
        assert_eq!(h.setter(t2, base, "A"), known("beta", 2_500));
        assert_eq!(h.setter(o2, base, "B"), known("alpha", 3_000));
    }

    #[test]
    fn through_a_merge_the_walk_follows_the_parent_that_holds_the_value() {
        let id = Identity::generate();
        let r = Repo::new();
        let base = r.commit(&[], "alpha", 1_000, "A=1\n", &id);
        let side = r.commit(&[base], "beta", 2_000, "A=1\nC=3\n", &id);
        let set = r.commit(&[base], "gamma", 2_100, "A=2\n", &id);
        let merged = r.commit(&[side, set], "beta", 3_000, "A=2\nC=3\n", &id);
        let mut h = History::new(&r.repo, &id);
        assert_eq!(h.setter(merged, base, "A"), known("gamma", 2_100));
        // C came from the first parent, through the merge.
        assert_eq!(h.setter(merged, base, "C"), known("beta", 2_000));
    }

    #[test]
    fn a_version_this_machine_cannot_read_leaves_the_setter_unknown() {
        let (id, other) = (Identity::generate(), Identity::generate());
        let r = Repo::new();
        let base = r.commit(&[], "alpha", 1_000, "A=1\n", &id);
        let hidden = r.commit(&[base], "beta", 2_000, "A=2\n", &other);
        let tip = r.commit(&[hidden], "beta", 3_000, "A=2\n", &id);
        let mut h = History::new(&r.repo, &id);
        assert_eq!(h.setter(tip, base, "A"), Setter::default());
    }
}

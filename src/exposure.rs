//! The exposure report of `revoke --compromised`: from git history, every secret name that any
//! ciphertext readable by the revoked machine's key ever held, with the first and last date.
//!
//! Re-encryption protects only what is written from now on: the old ciphertexts stay readable
//! in history by whoever holds the old key. `secrets.recipients`, committed beside each
//! ciphertext, says who could read it; a ciphertext without one counts as readable by everyone.
//!
//! Owns: the history walk. Must never: print or return a value, only names and dates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::clock;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::repo::FleetRepo;
use crate::secrets::{self, CIPHERTEXT, RECIPIENTS};

/// One exposed secret name.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Exposed {
    /// The secret's name.
    pub key: String,
    /// The first commit date at which a readable ciphertext held it (YYYY-MM-DD).
    pub first: String,
    /// The last such date.
    pub last: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// The revoked machine.
    pub machine: String,
    /// Exposed names, sorted.
    pub secrets: Vec<Exposed>,
    /// Commits whose ciphertext the revoked key could read but this machine cannot (it was not
    /// a recipient then): their names are unknown here; run the report on a machine that was.
    pub unreadable: Vec<String>,
    /// How many distinct ciphertexts readable by the key were examined.
    pub ciphertexts: usize,
}

/// Walks every commit reachable from HEAD and reports what `recipients` (the revoked machine's
/// age recipients, as text) could ever read. `identity` decrypts the ciphertexts.
pub fn report(
    repo: &FleetRepo,
    machine: &str,
    recipients: &[String],
    identity: &Identity,
) -> Result<Report> {
    let git = repo.raw();
    let Some(head) = repo.head() else {
        return Ok(Report {
            machine: machine.into(),
            ..Report::default()
        });
    };
    let mut walk = git
        .revwalk()
        .map_err(Error::git("cannot walk the history"))?;
    walk.push(head)
        .map_err(Error::git("cannot walk the history"))?;
    let wanted: HashSet<&str> = recipients.iter().map(String::as_str).collect();
    let mine = identity.recipient().to_string();

    // key -> (first, last) commit time.
    let mut spans: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    // ciphertext blob -> names it holds (None: this machine cannot read it).
    let mut cache: HashMap<git2::Oid, Option<Vec<String>>> = HashMap::new();
    // recipients blob -> (readable by the revoked key, this machine's stanza index).
    let mut readers: HashMap<Option<git2::Oid>, (bool, Option<usize>)> = HashMap::new();
    let mut unreadable = Vec::new();

    for oid in walk {
        let oid = oid.map_err(Error::git("cannot walk the history"))?;
        let commit = git
            .find_commit(oid)
            .map_err(Error::git("cannot read a commit"))?;
        let tree = commit.tree().map_err(Error::git("cannot read a tree"))?;
        let Some(ct_entry) = tree.get_name(CIPHERTEXT) else {
            continue;
        };
        let ct_id = ct_entry.id();
        let rc_id = tree.get_name(RECIPIENTS).map(|e| e.id());
        let (readable, hint) = match readers.get(&rc_id) {
            Some(v) => *v,
            None => {
                let v = match rc_id {
                    Some(id) => {
                        let blob = git
                            .find_blob(id)
                            .map_err(Error::git("cannot read secrets.recipients"))?;
                        let text = String::from_utf8_lossy(blob.content());
                        let list: Vec<&str> = text
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty() && !l.starts_with('#'))
                            .collect();
                        (
                            list.iter().any(|r| wanted.contains(r)),
                            list.iter().position(|r| *r == mine),
                        )
                    }
                    // No record of the recipients: assume the worst.
                    None => (true, None),
                };
                readers.insert(rc_id, v);
                v
            }
        };
        if !readable {
            continue;
        }
        let names = match cache.get(&ct_id) {
            Some(n) => n.clone(),
            None => {
                let blob = git
                    .find_blob(ct_id)
                    .map_err(Error::git("cannot read a ciphertext"))?;
                let label = Path::new(CIPHERTEXT);
                let names = secrets::decrypt_hinted(blob.content(), identity, hint, label)
                    .ok()
                    .and_then(|plain| secrets::parse_plaintext(&plain, label).ok())
                    .map(|env| env.keys().map(str::to_string).collect::<Vec<_>>());
                cache.insert(ct_id, names.clone());
                names
            }
        };
        let when = commit.time().seconds();
        match names {
            Some(names) => {
                for key in names {
                    let span = spans.entry(key).or_insert((when, when));
                    span.0 = span.0.min(when);
                    span.1 = span.1.max(when);
                }
            }
            None => unreadable.push(format!(
                "{} ({})",
                &oid.to_string()[..12],
                clock::date(when)
            )),
        }
    }
    Ok(Report {
        machine: machine.into(),
        secrets: spans
            .into_iter()
            .map(|(key, (first, last))| Exposed {
                key,
                first: clock::date(first),
                last: clock::date(last),
            })
            .collect(),
        unreadable,
        ciphertexts: cache.len(),
    })
}

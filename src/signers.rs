//! git's allowed_signers file for the fleet's whole signed history, so that stock git
//! (`gpg.ssh.allowedSignersFile`, `git verify-commit`, `git log --show-signature`) accepts
//! every commit fleetkey accepts, old ones signed by rotated and revoked keys included.
//!
//! stock git knows no roster: it checks a signature against the keys of the file, each valid in
//! a time window (`valid-after`, `valid-before`; ssh-keygen compares them with the commit's
//! committer time, which git passes as `-Overify-time`). The windows come from a fresh
//! verification of the branch from the fleet's founding commit, by fleetkey's own rule:
//!
//! - every key that signed an authentic commit, and every key active in the tip's roster, gets
//!   one line, principal = its machine's name, `namespaces="git"`;
//! - `valid-after` is the earliest of the committer time of the first commit whose roster lists
//!   the key (when it was added) and the earliest authentic commit it signed (a machine whose
//!   clock runs behind);
//! - a key no longer active (rotated out, or revoked) gets `valid-before` one second after the
//!   latest authentic commit it signed (ssh-keygen refuses a window of zero length). Commits a
//!   compromised key signed before its revocation are in the history and fleetkey accepts
//!   them, so stock git must too; a commit it signs later claims a later time and is refused.
//!   A key that left the roster without signing anything is not listed.
//!
//! A committer time is the signer's claim: a revoked key's holder can sign a new commit dated
//! inside the old window, and stock git accepts it. fleetkey's own check does not go by time
//! (a key must be active in every parent's roster, never revoked); `fleetkey verify` is the
//! authority, this file lets stock git agree on the history as it is.
//!
//! Owns: the windows and the file's text. Must never: list a key for a commit fleetkey did not
//! accept, or print a line for a history that is not authentic.

use std::collections::BTreeMap;

use crate::clock;
use crate::error::{Error, ErrorKind, Result};
use crate::roster::{RevokedKey, Roster};
use crate::signing;
use crate::trust::{self, TrustState, Verdict, Verifier};

/// One key's line: its machine, the key and the window in which stock git accepts it.
#[derive(Debug, Clone)]
pub struct Window {
    /// The machine (the principal).
    pub machine: String,
    /// The signing key.
    pub key: ssh_key::PublicKey,
    /// From when the key signs (seconds since the epoch).
    pub valid_after: i64,
    /// Until when, for a key no longer active.
    pub valid_before: Option<i64>,
    /// Why a key no longer active left: its `keys/revoked` note, if any.
    pub note: Option<String>,
}

/// The windows of every signing key of the branch at `head`, from a fresh verification from
/// the founding commit; active keys first (roster order), then retired ones by time. `roster`
/// is the clone's roster at `head` (its active keys and the `keys/revoked` notes).
pub fn windows(repo: &git2::Repository, head: git2::Oid, roster: &Roster) -> Result<Vec<Window>> {
    let founding = trust::founding_commit(repo, head)?;
    let mut state = TrustState::fresh(repo, founding);
    let mut verifier = Verifier::new(repo).recording();
    if let Verdict::Refused(refused) = verifier.verify(&mut state, head, false)? {
        let first = &refused[0];
        return Err(ErrorKind::Refused(format!(
            "the fleet branch does not verify from its founding commit: commit {} (claims {}) is refused: {}{}; no allowed_signers file was printed",
            first.commit,
            first.machine,
            first.why,
            match refused.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            }
        ))
        .hint("`fleetkey verify` checks the clone and the forge; `fleetkey forge repair` puts the authentic history back on a tampered forge"));
    }
    let mut accepted = verifier.take_accepted();
    // The founding commit is the root of the walk, not walked: its signer is the founder,
    // listed in its own tree.
    let founding_commit = repo
        .find_commit(founding)
        .map_err(Error::git("cannot read the founding commit"))?;
    if let Ok(key) = signing::verified_signer(repo, founding)
        && let Some(name) = verifier
            .signing_keys_in(&founding_commit)
            .get(&signing::fingerprint(&key))
    {
        accepted.push(trust::Accepted {
            key,
            machine: name.clone(),
            time: founding_commit.committer().when().seconds(),
        });
    }

    // When each key was first listed, over every commit of the branch.
    let mut listed: BTreeMap<String, i64> = BTreeMap::new();
    let mut walk = repo
        .revwalk()
        .map_err(Error::git("cannot walk the history"))?;
    walk.push(head)
        .map_err(Error::git("cannot walk the history"))?;
    for oid in walk {
        let commit = oid
            .and_then(|o| repo.find_commit(o))
            .map_err(Error::git("cannot walk the history"))?;
        let time = commit.committer().when().seconds();
        for fp in verifier.signing_keys_in(&commit).keys() {
            let first = listed.entry(fp.clone()).or_insert(time);
            *first = (*first).min(time);
        }
    }

    // The signed span of each key: (key, machine, earliest, latest).
    let mut signed: BTreeMap<String, (ssh_key::PublicKey, String, i64, i64)> = BTreeMap::new();
    for a in accepted {
        let fp = signing::fingerprint(&a.key);
        let span = signed
            .entry(fp)
            .or_insert_with(|| (a.key.clone(), a.machine.clone(), a.time, a.time));
        span.2 = span.2.min(a.time);
        span.3 = span.3.max(a.time);
    }

    let head_commit = repo
        .find_commit(head)
        .map_err(Error::git("cannot read the fleet branch"))?;
    let active_now = verifier.signing_keys_in(&head_commit);
    let mut out = Vec::new();
    for member in &roster.active {
        for key in &member.signing {
            let fp = signing::fingerprint(key);
            if active_now.get(&fp) != Some(&member.name) {
                continue; // not in the verified tip (an uncommitted change of the clone)
            }
            let since = [listed.get(&fp).copied(), signed.get(&fp).map(|s| s.2)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| head_commit.committer().when().seconds());
            out.push(Window {
                machine: member.name.clone(),
                key: key.clone(),
                valid_after: since,
                valid_before: None,
                note: None,
            });
        }
    }
    let mut retired: Vec<Window> = signed
        .into_iter()
        .filter(|(fp, _)| !active_now.contains_key(fp))
        .map(|(fp, (key, machine, first, last))| Window {
            valid_after: listed.get(&fp).map_or(first, |l| (*l).min(first)),
            valid_before: Some(last + 1),
            note: revoked_note(roster, &fp),
            machine,
            key,
        })
        .collect();
    retired.sort_by(|a, b| (a.valid_after, &a.machine).cmp(&(b.valid_after, &b.machine)));
    out.extend(retired);
    Ok(out)
}

/// The `keys/revoked` note of the SSH key with fingerprint `fp` (printable characters only).
fn revoked_note(roster: &Roster, fp: &str) -> Option<String> {
    roster.revoked.iter().find_map(|r| match &r.key {
        RevokedKey::Ssh(key) if signing::fingerprint(key) == fp => Some(
            r.note
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect(),
        ),
        _ => None,
    })
}

/// A time as allowed_signers writes it: `YYYYMMDDHHMMSSZ` (UTC; ssh-keygen compares it with
/// the local time git passes, both absolute).
fn ssh_time(secs: i64) -> String {
    clock::compact(secs).replace('T', "")
}

/// The allowed_signers text of `windows`, with a comment line above each retired key.
pub fn render(windows: &[Window]) -> Result<String> {
    let mut text = String::from(
        "# fleetkey: the fleet's signing keys over its whole history, for git -c gpg.ssh.allowedSignersFile=FILE verify-commit / log --show-signature\n",
    );
    for w in windows {
        let line = w
            .key
            .to_openssh()
            .map_err(|e| ErrorKind::Refused(format!("cannot encode a key: {e}")))?;
        let mut fields = line.split_whitespace();
        let (kind, data) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        let mut options = format!(
            "namespaces=\"git\",valid-after=\"{}\"",
            ssh_time(w.valid_after)
        );
        if let Some(before) = w.valid_before {
            text.push_str(&format!(
                "# {}: no longer active ({}); valid until its last authentic commit\n",
                w.machine,
                w.note
                    .as_deref()
                    .map_or("left the roster".to_string(), |n| format!(
                        "keys/revoked: {n}"
                    ))
            ));
            options.push_str(&format!(",valid-before=\"{}\"", ssh_time(before)));
        }
        text.push_str(&format!("{} {options} {kind} {data}\n", w.machine));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBxoXX5WIQ8rHNBQ7lSDogYkRgWYSlgS9ZP4QbnE7mRA";

    #[test]
    fn times_are_written_as_ssh_keygen_reads_them_in_utc() {
        assert_eq!(ssh_time(0), "19700101000000Z");
        assert_eq!(ssh_time(1_700_000_000), "20231114221320Z");
    }

    #[test]
    fn an_active_key_is_open_ended_and_a_retired_one_closed_with_its_note() {
        let key = ssh_key::PublicKey::from_openssh(KEY).unwrap();
        let text = render(&[
            Window {
                machine: "alpha".into(),
                key: key.clone(),
                valid_after: 0,
                valid_before: None,
                note: None,
            },
            Window {
                machine: "carol".into(),
                key,
                valid_after: 60,
                valid_before: Some(3600),
                note: Some("carol 2026-12-03 compromised".into()),
            },
        ])
        .unwrap();
        let body: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            body,
            [
                format!("alpha namespaces=\"git\",valid-after=\"19700101000000Z\" {KEY}").as_str(),
                "# carol: no longer active (keys/revoked: carol 2026-12-03 compromised); valid until its last authentic commit",
                format!("carol namespaces=\"git\",valid-after=\"19700101000100Z\",valid-before=\"19700101010000Z\" {KEY}").as_str(),
            ]
        );
    }
}

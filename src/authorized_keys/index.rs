//! Owns key identity: the roster checked (one machine per key, no active key revoked, machine
//! names that can be written) and indexed by decoded key blob, and the verdict on one line
//! ([`judge`]): it lists an active key, with these options, or it must go. Must never: compare
//! keys by base64 text or comment.

use std::collections::HashMap;

use ssh_key::PublicKey;
use ssh_key::public::KeyData;

use super::base64::base64_encode;
use super::error::Error;
use super::options::{Options, parse_options};
use super::tokenize::{KEY_TYPES, marker, scan};
use super::{ChangeReason, FleetKey, Roster, fingerprint, poke_command_ok, poke_options};

/// The blob algorithm name fleetkey will match for `key`, if sshd reads keys of its type.
fn blob_algorithm(key: &PublicKey) -> Option<&'static str> {
    let algorithm = key.algorithm();
    KEY_TYPES
        .iter()
        .map(|t| t.blob)
        .find(|&b| b == algorithm.as_str())
}

/// An active fleet key, ready to be matched and written.
pub(super) struct Active<'r> {
    pub(super) machine: &'r str,
    pub(super) key: &'r PublicKey,
    /// The wire encoding of the key data: the identity compared against each line.
    blob: Vec<u8>,
    /// The blob's algorithm name.
    algorithm: &'static str,
    /// `TYPE BASE64`: the start of the line fleetkey writes, and the sort key after the machine.
    pub(super) text: String,
    /// For a peer's poke key, the exact options its line carries (`restrict,command="…"`);
    /// `None` for a login key.
    pub(super) options: Option<String>,
}

/// A revoked key, ready to be matched.
struct Revoked<'r> {
    key: &'r PublicKey,
    algorithm: &'static str,
}

/// The roster, checked and indexed by key blob so that each line costs one hash lookup.
pub(super) struct Index<'r> {
    /// Active keys, in the order their lines are appended: machine name, then key text.
    pub(super) active: Vec<Active<'r>>,
    /// Key blob → position in `active`.
    active_by_blob: HashMap<Vec<u8>, usize>,
    /// Key blob → revoked key.
    revoked: HashMap<Vec<u8>, Revoked<'r>>,
    /// Key blobs of the login keys `from` leaves out.
    left_out: std::collections::HashSet<Vec<u8>>,
}

impl<'r> Index<'r> {
    pub(super) fn new(roster: &Roster<'r>) -> Result<Self, Error> {
        if roster.active.is_empty() && roster.left_out.is_empty() {
            return Err(Error::NoActiveFleetKey);
        }

        let mut revoked = HashMap::with_capacity(roster.revoked.len());
        for key in roster.revoked {
            // A key of a type sshd does not read can be on no line sshd reads: nothing to remove.
            let Some(algorithm) = blob_algorithm(key) else {
                continue;
            };
            let blob = key.to_bytes().map_err(|_| Error::UnencodableKey {
                owner: "the revoked keys".to_owned(),
            })?;
            revoked.insert(blob, Revoked { key, algorithm });
        }

        let mut active = Vec::with_capacity(roster.active.len());
        let poke_options = match roster.poke {
            Some(poke) if !poke.keys.is_empty() => {
                if !poke_command_ok(poke.command) {
                    return Err(Error::InvalidPokeCommand);
                }
                Some(poke_options(poke.command))
            }
            _ => None,
        };
        let login = roster.active.iter().map(|k| (k, None));
        let pokes = roster
            .poke
            .map_or(&[][..], |p| p.keys)
            .iter()
            .map(|k: &'r FleetKey| (k, poke_options.clone()));
        for (fleet, options) in login.chain(pokes) {
            let machine = fleet.machine.as_str();
            if machine.is_empty() || machine.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::InvalidMachineName {
                    machine: machine.to_owned(),
                });
            }
            let Some(algorithm) = blob_algorithm(&fleet.key).filter(|&a| a != "ssh-dss") else {
                return Err(Error::UnsupportedFleetKey {
                    machine: machine.to_owned(),
                    fingerprint: fingerprint(fleet.key.key_data()),
                    algorithm: fleet.key.algorithm().as_str().to_owned(),
                });
            };
            let blob = fleet.key.to_bytes().map_err(|_| Error::UnencodableKey {
                owner: format!("machine {machine}"),
            })?;
            if revoked.contains_key(&blob) {
                return Err(Error::RevokedKeyIsActive {
                    fingerprint: fingerprint(fleet.key.key_data()),
                    machine: machine.to_owned(),
                });
            }
            let text = format!("{algorithm} {}", base64_encode(&blob));
            active.push(Active {
                machine,
                key: &fleet.key,
                blob,
                algorithm,
                text,
                options,
            });
        }
        // Login keys first, then poke keys; each by machine, then key text.
        active.sort_by(|a, b| {
            (a.options.is_some(), a.machine, &a.text).cmp(&(
                b.options.is_some(),
                b.machine,
                &b.text,
            ))
        });
        // The same key listed twice for one machine: once is enough.
        active.dedup_by(|a, b| a.machine == b.machine && a.blob == b.blob);

        let mut active_by_blob = HashMap::with_capacity(active.len());
        for (at, fleet) in active.iter().enumerate() {
            if let Some(&first) = active_by_blob.get(&fleet.blob) {
                let first: &Active<'_> = &active[first];
                return Err(Error::KeySharedByMachines {
                    fingerprint: fingerprint(fleet.key.key_data()),
                    first: first.machine.to_owned(),
                    second: fleet.machine.to_owned(),
                });
            }
            active_by_blob.insert(fleet.blob.clone(), at);
        }

        let mut left_out = std::collections::HashSet::with_capacity(roster.left_out.len());
        for fleet in roster.left_out {
            let blob = fleet.key.to_bytes().map_err(|_| Error::UnencodableKey {
                owner: format!("machine {}", fleet.machine),
            })?;
            if revoked.contains_key(&blob) {
                return Err(Error::RevokedKeyIsActive {
                    fingerprint: fingerprint(fleet.key.key_data()),
                    machine: fleet.machine.clone(),
                });
            }
            left_out.insert(blob);
        }

        Ok(Self {
            active,
            active_by_blob,
            revoked,
            left_out,
        })
    }
}

/// Whether, and how, the kept lines list an active key as a plain entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Listed {
    No,
    /// Only on lines whose options sshd rejects; the first such input line.
    OnlyWithBadOptions(usize),
    Yes,
}

/// What to do with one input line.
pub(super) enum Verdict {
    /// Keep it; it lists no active key.
    Keep,
    /// Keep it; it lists the active key at this position, with these options.
    Lists(usize, Options),
    /// Drop it: reason, the line's `fleetkey=` machine, the key.
    Remove(ChangeReason, Option<String>, KeyData),
}

pub(super) fn judge(line: &[u8], index: &Index<'_>, blob: &mut Vec<u8>) -> Verdict {
    let Some(found) = scan(line, blob) else {
        return Verdict::Keep;
    };
    let kind = found.field.kind;
    let marker = marker(found.field.comment);
    let owner = || marker.map(|m| String::from_utf8_lossy(m.name).into_owned());

    if let Some(revoked) = index.revoked.get(blob.as_slice())
        && revoked.algorithm == kind.blob
    {
        return Verdict::Remove(
            ChangeReason::Revoked,
            owner(),
            revoked.key.key_data().clone(),
        );
    }
    if let Some(&at) = index.active_by_blob.get(blob.as_slice())
        && index.active[at].algorithm == kind.blob
    {
        let fleet = &index.active[at];
        // fleetkey's own line for this key must be the line fleetkey would write now: the
        // right machine, the right kind, and (for a poke key) exactly the poke options.
        let stale = marker.is_some_and(|m| {
            m.name != fleet.machine.as_bytes()
                || m.poke != fleet.options.is_some()
                || (m.poke && !has_options(found.options, fleet.options.as_deref()))
        });
        if stale {
            return Verdict::Remove(
                ChangeReason::LeftFleet,
                owner(),
                fleet.key.key_data().clone(),
            );
        }
        let options = found.options.map_or(Options::BARE, parse_options);
        return Verdict::Lists(at, options);
    }
    // A key the roster does not know. If fleetkey wrote the line, its machine no longer has
    // this key; remove the line only if sshd would read a key from it.
    if marker.is_some()
        && let Ok(key) = PublicKey::from_bytes(blob)
        && key.algorithm().as_str() == kind.blob
    {
        let why = if index.left_out.contains(blob.as_slice()) {
            ChangeReason::NotAdmitted
        } else {
            ChangeReason::LeftFleet
        };
        return Verdict::Remove(why, owner(), key.key_data().clone());
    }
    Verdict::Keep
}

/// Whether a line's options (`options`, from their first byte to the end of the line) are
/// exactly `expected`, followed by the blank that ends them.
fn has_options(options: Option<&[u8]>, expected: Option<&str>) -> bool {
    match (options, expected) {
        (Some(o), Some(e)) => {
            o.starts_with(e.as_bytes())
                && o.get(e.len())
                    .is_some_and(|&b| super::tokenize::is_blank(b))
        }
        _ => false,
    }
}

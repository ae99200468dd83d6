//! The `authorized_keys` merge: the fleet's SSH public keys in, the user's own lines kept.
//!
//! This module owns one pure function, [`merge`]. It is given the bytes of the current
//! `~/.ssh/authorized_keys` (empty when the file does not exist yet) and the fleet's [`Roster`]
//! (active keys, revoked keys), and returns the whole new file plus a report of what changed.
//! [`parse_public_keys`] reads the roster's key files. Nothing here touches the disk but
//! [`merge_into_file`], the thin reader and writer of the file around [`merge`].
//!
//! # What it must never do
//! - **Never drop a user line.** Every line fleetkey did not write is kept byte for byte and in
//!   order: comments, blank lines, options, CRLF, a BOM, unknown or future key types, malformed
//!   lines, lines of any length. The one exception is a line whose key is revoked.
//! - **Never print a partial or empty file.** Every problem is an `Err` and the caller prints
//!   nothing: chezmoi deletes the target of a `modify_` script whose output is empty, and a half
//!   file could lock the user out. An empty result is an `Err` too.
//! - **Never panic**, whatever the bytes (property-tested on arbitrary input).
//! - **Never widen a user's restriction.** sshd tries every line that holds the presented key, so
//!   a bare copy of a key the user lists with `from=` or `command=` would lift the restriction.
//!   An active fleet key the user already lists, with any options, is not added again.
//!
//! # Reading a line as sshd does
//! A line is what sshd's `auth_check_authkeys_file` and `auth_check_authkey_line` see (OpenSSH
//! `auth2-pubkeyfile.c`, `sshkey.c`, `auth-options.c`):
//! - Lines are split on `\n` only; a NUL byte ends the line for sshd (C strings).
//! - Leading spaces and tabs are skipped; an empty line or one whose next byte is `#` is a
//!   comment. `#` anywhere else is not special.
//! - The line is first read as a bare key (`sshkey_read`): a type name sshd knows, a run of
//!   spaces or tabs, the base64 key data up to the next space or tab (decoded as `b64_pton` does:
//!   `\r`, `\v` and `\f` inside it are skipped, padding and zero trailing bits are required), then
//!   the comment. If that fails, the options are skipped (`sshkey_advance_past_options`: up to the
//!   first space or tab outside double quotes, `\"` escaping a quote) and the key is read again.
//!   A line on which sshd finds no key is kept verbatim and never matched.
//! - Two entries are the same key when their decoded key data is equal (the wire encoding of
//!   [`KeyData`], which ssh-key only accepts in canonical form) and the line's type name is one
//!   sshd accepts for that data (`rsa-sha2-256` and `rsa-sha2-512` name `ssh-rsa` keys); never by
//!   base64 text or comment. Whether the options hold `cert-authority` (case-insensitive, as
//!   `sshauthopt_parse` reads them) is part of an entry's identity: a CA line does not let the key
//!   itself log in.
//!
//! # The merge
//! - A line whose key is revoked is removed, whatever its options or comment.
//! - fleetkey's own lines end their comment with the token `fleetkey=NAME`. Such a line is kept in
//!   place, byte for byte, while machine NAME still has that exact key active; otherwise (the
//!   machine left, rotated its key, or was renamed) it is removed.
//! - Every active fleet key that no kept line lists as a plain (non-CA) entry is appended as
//!   `TYPE BASE64 [COMMENT] fleetkey=NAME`, ordered by machine name then key text, with the file's
//!   line ending.
//! - The other machines' poke keys ([`Poke`]) are appended after them as
//!   `restrict,command="FLEETKEY poke" TYPE BASE64 fleetkey-poke=NAME`. Such a line is kept
//!   only while its key is active and its options are exactly those (a moved binary rewrites
//!   it); a `fleetkey-poke=` line for any other key is removed. A last line without a newline gets a `\n` first, so its bytes stay its own.
//! - A fleet key the user lists only with options sshd rejects (an unknown option, say) counts as
//!   listed: fleetkey does not add a bare copy that would lift the user's restriction once the
//!   typo is fixed. The merge reports it in [`Merge::warnings`] instead, since that machine
//!   cannot log in here until the line is fixed. Option *values* (from= patterns, expiry-time,
//!   permitopen ports, …) are not checked; several depend on the host.
//!
//! # Known limits
//! - sshd also accepts a few non-canonical encodings of a key (RSA numbers with extra leading
//!   zero bytes, compressed EC points) that ssh-key either rejects or stores differently. Such a
//!   line is not recognised as the key it encodes. Only a hand-crafted line looks like that;
//!   `ssh-keygen` and every key fleetkey writes are canonical. sshd's own `RevokedKeys` is the
//!   defence in depth against crafted lines.
//! - Keys ssh-key cannot decode in this build (ECDSA without its `ecdsa` feature) cannot be fleet
//!   or revoked keys: [`parse_public_keys`] rejects them with an error naming the file and line.
//!   User lines holding them are kept.
//!
//! # Parts
//! This file holds the merge and what it returns. `tokenize.rs` finds the key on a line as sshd
//! does, `options.rs` reads the line's options, `base64.rs` decodes the key data, `index.rs`
//! matches keys against the checked roster, `public_keys.rs` reads the roster's key files,
//! `error.rs` says what can go wrong, and `file.rs` reads and writes the file on disk.

mod base64;
mod error;
mod file;
mod index;
mod options;
mod public_keys;
mod tokenize;

#[cfg(test)]
mod tests;

use std::fmt;

use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};

pub use error::Error;
pub use file::{
    INPUT_LIMIT, log_warnings, loose_mode, merge_into_file, read_target, symlink_hint, warn_loose,
};
pub use public_keys::parse_public_keys;

use index::{Index, Listed, Verdict, judge};

/// One active fleet machine's SSH public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetKey {
    /// The machine's name in the fleet (`keys/NAME.ssh.pub`), written as `fleetkey=NAME`.
    pub machine: String,
    /// The machine's public key; its comment, if any, is written before the marker.
    pub key: PublicKey,
}

/// What the merge is given: the active fleet keys and the revoked keys.
#[derive(Clone, Copy, Debug)]
pub struct Roster<'a> {
    /// Keys every machine must accept (from `keys/*.ssh.pub`). A machine may have several.
    pub active: &'a [FleetKey],
    /// Keys no machine may accept (the SSH lines of `keys/revoked`).
    pub revoked: &'a [PublicKey],
    /// The other machines' poke keys, admitted only to run the poke (see [`Poke`]).
    pub poke: Option<Poke<'a>>,
}

/// The peers' poke keys (`keys/NAME.poke.pub`) and the one command they may run.
///
/// Each is written as `restrict,command="COMMAND poke" TYPE BASE64 fleetkey-poke=NAME`:
/// `restrict` forbids a pty and every forwarding, and the forced command ignores whatever the
/// client asked to run. COMMAND is this machine's own absolute fleetkey path, so the peer's
/// login PATH never matters. A `fleetkey-poke=` line is kept only while its key is active and
/// its options are exactly these; otherwise it is removed (and the current line appended).
#[derive(Clone, Copy, Debug)]
pub struct Poke<'a> {
    /// The poke keys, by machine.
    pub keys: &'a [FleetKey],
    /// The absolute path of this machine's fleetkey binary: no `"`, `\\`, or control
    /// character (checked by the merge).
    pub command: &'a str,
}

/// The options of a poke line for the fleetkey binary at `command`. sshd runs the forced
/// command through the user's login shell (`SHELL -c`), so the path is single-quoted for the
/// shell (a `'` inside as `'\''`, which sh, bash, zsh and fish all read back), and a `"` is
/// escaped for the `command="…"` option itself.
pub fn poke_options(command: &str) -> String {
    let shell = format!("'{}' poke", command.replace('\'', "'\\''"));
    format!("restrict,command=\"{}\"", shell.replace('"', "\\\""))
}

/// Whether `command` can be written inside a `command="…"` option, quoted for every shell:
/// absolute, and no backslash (fish reads one inside single quotes), whitespace other than a
/// plain space, or control character.
pub fn poke_command_ok(command: &str) -> bool {
    command.starts_with('/')
        && !command
            .chars()
            .any(|c| c == '\\' || c.is_control() || (c.is_whitespace() && c != ' '))
}

/// The result of a merge: the whole new file and what changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    /// The complete new `authorized_keys`. Never empty; equal to the input, byte for byte, when
    /// nothing changed.
    pub output: Vec<u8>,
    /// The lines appended, in output order.
    pub added: Vec<Change>,
    /// The lines removed, in input order.
    pub removed: Vec<Change>,
    /// Active fleet keys the file lists only on lines sshd rejects (see [`Warning`]).
    pub warnings: Vec<Warning>,
}

impl Merge {
    /// Whether the output differs from the input.
    pub fn changed(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }
}

/// One line the merge added or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// 1-based line number: in the input for a removal, in the output for an addition.
    pub line: usize,
    /// The fleet machine the line belongs to: the active key's machine for an addition, the
    /// line's `fleetkey=NAME` marker for a removal (`None` for a user line).
    pub machine: Option<String>,
    /// The key.
    pub key: KeyData,
    /// Why the line was added or removed.
    pub why: ChangeReason,
}

impl Change {
    /// The key's `SHA256:…` fingerprint, as `ssh-keygen -l` prints it. Computed on demand:
    /// the `modify_` filter never reports changes and so never hashes a key.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key)
    }
}

/// Why a line was added or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeReason {
    /// An active fleet login key that no line listed was appended.
    FleetKeyAdded,
    /// A peer's poke key (restricted to `fleetkey poke`) that no line listed was appended.
    PokeKeyAdded,
    /// The line's key is revoked (whatever its options, comment or owner).
    Revoked,
    /// A line fleetkey wrote for a machine that no longer has that key active: the machine
    /// left the fleet, rotated its key, or was renamed.
    LeftFleet,
}

impl fmt::Display for ChangeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FleetKeyAdded => "fleet key added",
            Self::PokeKeyAdded => "poke key added",
            Self::Revoked => "revoked",
            Self::LeftFleet => "left the fleet",
        })
    }
}

/// An active fleet key that the file lists only on lines whose options sshd rejects.
///
/// fleetkey does not append a bare copy of such a key: the user meant to restrict it, and a
/// bare line would silently lift that restriction once the options are fixed. Until the line is
/// fixed, that machine cannot log in here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// 1-based input line of the first such line.
    pub line: usize,
    /// The fleet machine whose key it is.
    pub machine: String,
    /// The key's `SHA256:…` fingerprint.
    pub fingerprint: String,
}

/// Merge the roster into the current `authorized_keys` (see the module docs for the rules).
///
/// `current` is the file's bytes, empty when it does not exist yet. Returns `Err`, and the
/// caller must then print nothing, when the roster has no active key or is inconsistent.
pub fn merge(current: &[u8], roster: &Roster<'_>) -> Result<Merge, Error> {
    let index = Index::new(roster)?;
    let mut output = Vec::with_capacity(current.len() + 128 * index.active.len());
    let mut removed = Vec::new();
    let mut listed = vec![Listed::No; index.active.len()];
    let (mut crlf_lines, mut lf_lines) = (0usize, 0usize);
    let mut blob = Vec::new();

    for (i, chunk) in current.split_inclusive(|&b| b == b'\n').enumerate() {
        let number = i + 1;
        let line = match chunk.strip_suffix(b"\n") {
            Some(line) if line.ends_with(b"\r") => {
                crlf_lines += 1;
                line
            }
            Some(line) => {
                lf_lines += 1;
                line
            }
            None => chunk,
        };
        match judge(line, &index, &mut blob) {
            Verdict::Keep => {}
            Verdict::Lists(at, options) if !options.cert_authority => {
                listed[at] = match (listed[at], options.valid) {
                    (_, true) => Listed::Yes,
                    (Listed::No, false) => Listed::OnlyWithBadOptions(number),
                    (earlier, false) => earlier,
                }
            }
            Verdict::Lists(..) => {}
            Verdict::Remove(why, machine, key) => {
                removed.push(Change {
                    line: number,
                    machine,
                    key,
                    why,
                });
                continue;
            }
        }
        output.extend_from_slice(chunk);
    }

    let mut added = Vec::new();
    let mut warnings = Vec::new();
    let eol: &[u8] = if crlf_lines > lf_lines {
        b"\r\n"
    } else {
        b"\n"
    };
    for (fleet, listed) in index.active.iter().zip(&listed) {
        match listed {
            Listed::Yes => continue,
            Listed::OnlyWithBadOptions(line) => {
                warnings.push(Warning {
                    line: *line,
                    machine: fleet.machine.to_owned(),
                    fingerprint: fingerprint(fleet.key.key_data()),
                });
                continue;
            }
            Listed::No => {}
        }
        if added.is_empty() && output.last().is_some_and(|&b| b != b'\n') {
            output.push(b'\n');
        }
        if let Some(options) = &fleet.options {
            output.extend_from_slice(options.as_bytes());
            output.push(b' ');
        }
        output.extend_from_slice(fleet.text.as_bytes());
        if fleet.options.is_some() {
            output.extend_from_slice(b" fleetkey-poke=");
        } else {
            let comment = fleet.key.comment().trim();
            if !comment.is_empty() && !comment.chars().any(char::is_control) {
                output.push(b' ');
                output.extend_from_slice(comment.as_bytes());
            }
            output.extend_from_slice(b" fleetkey=");
        }
        output.extend_from_slice(fleet.machine.as_bytes());
        output.extend_from_slice(eol);
        added.push(Change {
            line: 0, // numbered below, once the kept lines have been counted
            machine: Some(fleet.machine.to_owned()),
            key: fleet.key.key_data().clone(),
            why: if fleet.options.is_some() {
                ChangeReason::PokeKeyAdded
            } else {
                ChangeReason::FleetKeyAdded
            },
        });
    }
    if !added.is_empty() {
        let lines = output.iter().filter(|&&b| b == b'\n').count();
        let first = lines - added.len() + 1;
        for (n, change) in added.iter_mut().enumerate() {
            change.line = first + n;
        }
    }

    if output.is_empty() {
        return Err(Error::EmptyOutput);
    }
    Ok(Merge {
        output,
        added,
        removed,
        warnings,
    })
}

fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

//! The `authorized_keys` merge: the fleet's SSH public keys in, the user's own lines kept.
//!
//! This module owns one pure function, [`merge`]. It is given the bytes of the current
//! `~/.ssh/authorized_keys` (empty when the file does not exist yet) and the fleet's [`Roster`]
//! (active keys, revoked keys), and returns the whole new file plus a report of what changed.
//! [`parse_public_keys`] reads the roster's key files. Nothing here touches the disk.
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
//!   line ending. A last line without a newline gets a `\n` first, so its bytes stay its own.
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

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};

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
    /// An active fleet key that no line listed was appended.
    FleetKeyAdded,
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

/// Why a line of a keys file is not a public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyLineProblem {
    /// The first field is not a key type sshd reads (options are not allowed in keys files).
    #[error("the key type is not one sshd reads")]
    UnknownKeyType,
    /// The line holds an OpenSSH certificate, not a plain public key.
    #[error("it is a certificate, not a public key")]
    Certificate,
    /// The key type is not followed by key data.
    #[error("the key data is missing")]
    MissingKeyData,
    /// The key data is not valid base64.
    #[error("the key data is not valid base64")]
    BadBase64,
    /// The key data does not decode as a key.
    #[error("the key data does not decode as a key")]
    BadKeyData,
    /// The key type at the start of the line does not match the type inside the key data.
    #[error("the key type does not match the key data")]
    TypeMismatch,
    /// A key type sshd reads but this build of fleetkey cannot decode (ECDSA without ssh-key's
    /// `ecdsa` feature).
    #[error("this build of fleetkey cannot decode this key type")]
    UnsupportedKeyType,
}

/// Why a merge or a keys file was refused. Messages never quote a line's content.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A line of a keys file is not one OpenSSH public key.
    #[error("{}:{line}: not an OpenSSH public key: {problem}", .path.display())]
    InvalidKeyLine {
        /// The file, as the caller named it.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        problem: KeyLineProblem,
    },
    /// The roster has no active SSH key. The caller must print nothing: an empty `modify_`
    /// output makes chezmoi delete `authorized_keys`.
    #[error("the fleet has no active SSH key, so authorized_keys is left as it is")]
    NoActiveFleetKey,
    /// A key is both active and revoked.
    #[error("key {fingerprint} of machine {machine} is both active and revoked")]
    RevokedKeyIsActive {
        /// The key's `SHA256:…` fingerprint.
        fingerprint: String,
        /// The machine that lists it as active.
        machine: String,
    },
    /// One key is listed as active for two machines, so its `fleetkey=NAME` is ambiguous.
    #[error("key {fingerprint} is listed for two machines, {first} and {second}")]
    KeySharedByMachines {
        /// The key's `SHA256:…` fingerprint.
        fingerprint: String,
        /// One machine listing it (first by name).
        first: String,
        /// The other machine listing it.
        second: String,
    },
    /// A machine name cannot be written as a `fleetkey=NAME` marker.
    #[error("machine name {machine:?} cannot be written to authorized_keys")]
    InvalidMachineName {
        /// The name, as given.
        machine: String,
    },
    /// An active key of a type fleetkey will not write to authorized_keys (DSA, which OpenSSH
    /// disables since 7.0 and removed in 10.0, or a type sshd does not know).
    #[error(
        "key {fingerprint} of machine {machine} is a {algorithm} key, which fleetkey does not write to authorized_keys"
    )]
    UnsupportedFleetKey {
        /// The machine.
        machine: String,
        /// The key's `SHA256:…` fingerprint.
        fingerprint: String,
        /// The key's algorithm name.
        algorithm: String,
    },
    /// A roster key could not be encoded (a field over 4 GiB; never happens for keys read from
    /// text).
    #[error("a key of {owner} cannot be encoded")]
    UnencodableKey {
        /// "machine NAME" or "the revoked keys".
        owner: String,
    },
    /// The merge would produce an empty file. Unreachable while the roster has an active key;
    /// kept so that an empty output can never be printed.
    #[error("the merged authorized_keys would be empty, so it is left as it is")]
    EmptyOutput,
}

impl Error {
    /// A one-line suggestion of what to do about the error.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::InvalidKeyLine { .. } => {
                "each line must be one public key as `ssh-keygen -y -f KEYFILE` prints it: TYPE BASE64 [COMMENT]"
            }
            Self::NoActiveFleetKey => {
                "check that the fleet repo has keys/NAME.ssh.pub files, or approve a machine with `fleetkey approve NAME`"
            }
            Self::RevokedKeyIsActive { .. } => {
                "remove the key from keys/NAME.ssh.pub, or from keys/revoked if revoking it was a mistake"
            }
            Self::KeySharedByMachines { .. } => {
                "give each machine its own key: run `fleetkey rotate` on one of them"
            }
            Self::InvalidMachineName { .. } => {
                "machine names must be non-empty, without spaces or control characters"
            }
            Self::UnsupportedFleetKey { .. } => {
                "give the machine an ed25519 key: run `fleetkey rotate` on it"
            }
            Self::UnencodableKey { .. } | Self::EmptyOutput => {
                "this is a bug in fleetkey; please report it"
            }
        }
    }
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
        output.extend_from_slice(fleet.text.as_bytes());
        let comment = fleet.key.comment().trim();
        if !comment.is_empty() && !comment.chars().any(char::is_control) {
            output.push(b' ');
            output.extend_from_slice(comment.as_bytes());
        }
        output.extend_from_slice(b" fleetkey=");
        output.extend_from_slice(fleet.machine.as_bytes());
        output.extend_from_slice(eol);
        added.push(Change {
            line: 0, // numbered below, once the kept lines have been counted
            machine: Some(fleet.machine.to_owned()),
            key: fleet.key.key_data().clone(),
            why: ChangeReason::FleetKeyAdded,
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

/// Parse a keys file (`keys/NAME.ssh.pub` or the SSH lines of `keys/revoked`): one public key
/// per line; blank lines and lines whose first non-blank char is `#` are skipped; a line that is
/// not a valid public key is an error naming `source` and the 1-based line number (never the
/// line's content).
///
/// Keys are read as sshd reads them from `authorized_keys` (spaces or tabs between fields, a
/// trailing `\r` ignored), without options. The comment is kept, trimmed.
pub fn parse_public_keys(text: &str, source: &Path) -> Result<Vec<PublicKey>, Error> {
    let mut keys = Vec::new();
    let mut blob = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let body = skip_blanks(line.as_bytes());
        if body.iter().all(|&b| is_c_space(b)) || body.first() == Some(&b'#') {
            continue;
        }
        let key = read_public_key(body, &mut blob).map_err(|problem| Error::InvalidKeyLine {
            path: source.to_path_buf(),
            line: i + 1,
            problem,
        })?;
        keys.push(key);
    }
    Ok(keys)
}

/// A key type sshd reads from `authorized_keys` (the plain types of `sshkey.c`'s `keyimpls`).
///
/// Certificates are left out: sshd reads a certificate line, but a certificate never equals a
/// plain key, and with `cert-authority` sshd compares the presented certificate's CA key, which
/// is never a certificate. So a certificate line lists no key this module tracks.
struct KeyType {
    /// The type name at the start of the key field.
    name: &'static str,
    /// The algorithm the decoded key data must have.
    blob: &'static str,
}

impl KeyType {
    const fn new(name: &'static str, blob: &'static str) -> Self {
        Self { name, blob }
    }
}

const KEY_TYPES: [KeyType; 10] = [
    KeyType::new("ssh-ed25519", "ssh-ed25519"),
    KeyType::new("sk-ssh-ed25519@openssh.com", "sk-ssh-ed25519@openssh.com"),
    KeyType::new("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256"),
    KeyType::new("ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384"),
    KeyType::new("ecdsa-sha2-nistp521", "ecdsa-sha2-nistp521"),
    KeyType::new(
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ),
    KeyType::new("ssh-rsa", "ssh-rsa"),
    // Signature algorithm names: sshd's type lookup accepts them, and they name ssh-rsa keys.
    KeyType::new("rsa-sha2-256", "ssh-rsa"),
    KeyType::new("rsa-sha2-512", "ssh-rsa"),
    // Read by sshd up to 9.x (OpenSSH 10 removed DSA); fleetkey removes revoked DSA keys but
    // never writes one.
    KeyType::new("ssh-dss", "ssh-dss"),
];

/// The blob algorithm name fleetkey will match for `key`, if sshd reads keys of its type.
fn blob_algorithm(key: &PublicKey) -> Option<&'static str> {
    let algorithm = key.algorithm();
    KEY_TYPES
        .iter()
        .map(|t| t.blob)
        .find(|&b| b == algorithm.as_str())
}

/// An active fleet key, ready to be matched and written.
struct Active<'r> {
    machine: &'r str,
    key: &'r PublicKey,
    /// The wire encoding of the key data: the identity compared against each line.
    blob: Vec<u8>,
    /// The blob's algorithm name.
    algorithm: &'static str,
    /// `TYPE BASE64`: the start of the line fleetkey writes, and the sort key after the machine.
    text: String,
}

/// A revoked key, ready to be matched.
struct Revoked<'r> {
    key: &'r PublicKey,
    algorithm: &'static str,
}

/// The roster, checked and indexed by key blob so that each line costs one hash lookup.
struct Index<'r> {
    /// Active keys, in the order their lines are appended: machine name, then key text.
    active: Vec<Active<'r>>,
    /// Key blob → position in `active`.
    active_by_blob: HashMap<Vec<u8>, usize>,
    /// Key blob → revoked key.
    revoked: HashMap<Vec<u8>, Revoked<'r>>,
}

impl<'r> Index<'r> {
    fn new(roster: &Roster<'r>) -> Result<Self, Error> {
        if roster.active.is_empty() {
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
        for fleet in roster.active {
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
            });
        }
        active.sort_by(|a, b| a.machine.cmp(b.machine).then_with(|| a.text.cmp(&b.text)));
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

        Ok(Self {
            active,
            active_by_blob,
            revoked,
        })
    }
}

/// Whether, and how, the kept lines list an active key as a plain entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listed {
    No,
    /// Only on lines whose options sshd rejects; the first such input line.
    OnlyWithBadOptions(usize),
    Yes,
}

/// What to do with one input line.
enum Verdict {
    /// Keep it; it lists no active key.
    Keep,
    /// Keep it; it lists the active key at this position, with these options.
    Lists(usize, Options),
    /// Drop it: reason, the line's `fleetkey=` machine, the key.
    Remove(ChangeReason, Option<String>, KeyData),
}

fn judge(line: &[u8], index: &Index<'_>, blob: &mut Vec<u8>) -> Verdict {
    let Some(found) = scan(line, blob) else {
        return Verdict::Keep;
    };
    let kind = found.field.kind;
    let marker = fleetkey_marker(found.field.comment);
    let owner = || marker.map(|name| String::from_utf8_lossy(name).into_owned());

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
        if marker.is_some_and(|name| name != fleet.machine.as_bytes()) {
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
        return Verdict::Remove(ChangeReason::LeftFleet, owner(), key.key_data().clone());
    }
    Verdict::Keep
}

/// A line on which sshd finds a key (not yet checked to decode; see [`read_key`]).
struct KeyLine<'l> {
    field: KeyField<'l>,
    /// The options as sshd hands them to its option parser (from their first byte to the end of
    /// the line); `None` for a bare key.
    options: Option<&'l [u8]>,
}

/// `auth_check_authkey_line`: where the key is on a line, leaving its decoded blob in `blob`.
fn scan<'l>(line: &'l [u8], blob: &mut Vec<u8>) -> Option<KeyLine<'l>> {
    // sshd reads lines as C strings: nothing after a NUL byte exists for it.
    let line = line.split(|&b| b == 0).next().unwrap_or_default();
    let s = skip_blanks(line);
    if s.first().is_none_or(|&b| b == b'#') {
        return None;
    }
    if let Some(field) = read_key(s, blob) {
        return Some(KeyLine {
            field,
            options: None,
        });
    }
    let field = read_key(skip_blanks(advance_past_options(s)?), blob)?;
    Some(KeyLine {
        field,
        options: Some(s),
    })
}

/// The key field of a line.
struct KeyField<'l> {
    kind: &'static KeyType,
    /// Everything after the key data and the blanks that follow it.
    comment: &'l [u8],
}

/// `sshkey_read`'s tokenising: a known type name, blanks, base64 up to the next blank, blanks,
/// then the comment. The decoded key data is left in `blob`.
///
/// This accepts any blob that decodes as base64; sshd also requires it to decode as a key of the
/// line's type, and otherwise goes on to look for options. That difference never changes an
/// outcome: the options would end at the type name, and the base64 after it is never a type
/// name (they all hold a `-`), so sshd finds no key on such a line either. A blob that matches a
/// roster key decodes by construction; the only other blob decoded is a `fleetkey=` line's
/// ([`judge`]).
fn read_key<'l>(s: &'l [u8], blob: &mut Vec<u8>) -> Option<KeyField<'l>> {
    let (name, rest) = s.split_at(s.iter().position(|&b| is_blank(b))?);
    let kind = KEY_TYPES.iter().find(|t| t.name.as_bytes() == name)?;
    let rest = skip_blanks(rest);
    if rest.is_empty() {
        return None;
    }
    let (text, rest) = rest.split_at(rest.iter().position(|&b| is_blank(b)).unwrap_or(rest.len()));
    if !decode_base64(text, blob) {
        return None;
    }
    Some(KeyField {
        kind,
        comment: skip_blanks(rest),
    })
}

/// `sshkey_advance_past_options`: the rest of the line after the options, which end at the
/// first space or tab outside double quotes (`\"` does not end a quote). `None` for an
/// unterminated quote.
fn advance_past_options(s: &[u8]) -> Option<&[u8]> {
    let mut quoted = false;
    let mut rest = s;
    loop {
        match rest {
            [] => return (!quoted).then_some(rest),
            [b, ..] if !quoted && is_blank(*b) => return Some(rest),
            [b'\\', b'"', tail @ ..] => rest = tail,
            [b'"', tail @ ..] => {
                quoted = !quoted;
                rest = tail;
            }
            [_, tail @ ..] => rest = tail,
        }
    }
}

/// What the options of a line say, as far as the merge cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Options {
    /// The options hold `cert-authority`: the line trusts certificates signed by the key, and
    /// does not let the key itself log in.
    cert_authority: bool,
    /// sshd accepts the options (names, quoting and commas; values are not checked). When
    /// false, sshd ignores the whole line, and `cert_authority` is a best effort.
    valid: bool,
}

impl Options {
    const BARE: Self = Self {
        cert_authority: false,
        valid: true,
    };
}

/// Flag options in `sshauthopt_parse`'s order, and whether a `no-` prefix negates them.
const FLAG_OPTIONS: [(&str, bool); 9] = [
    ("restrict", false),
    ("cert-authority", false),
    ("port-forwarding", true),
    ("agent-forwarding", true),
    ("x11-forwarding", true),
    ("touch-required", true),
    ("verify-required", true),
    ("pty", true),
    ("user-rc", true),
];

/// Options with a quoted value, in `sshauthopt_parse`'s order. The first three may appear once.
const VALUE_OPTIONS: [&str; 8] = [
    "command",
    "principals",
    "from",
    "expiry-time",
    "environment",
    "permitopen",
    "permitlisten",
    "tunnel",
];

/// `sshauthopt_parse`, reduced to what the merge needs (see [`Options`]).
fn parse_options(opts: &[u8]) -> Options {
    let mut out = Options::BARE;
    let mut once = [false; 3];
    let mut o = opts;
    while o.first().is_some_and(|&b| !is_blank(b)) {
        let parsed = one_option(&mut o, &mut once);
        let well_ended = matches!(o.first(), None | Some(b' ' | b'\t' | b','));
        match parsed {
            Parsed::CertAuthority if well_ended => out.cert_authority = true,
            Parsed::Other if well_ended => {}
            _ => {
                // sshd rejects the whole line here ("unknown key option", "missing end quote",
                // …). Read on only to learn whether the user also wrote cert-authority.
                out.valid = false;
                o = skip_past_option(o);
                continue;
            }
        }
        if let Some((b',', rest)) = o.split_first() {
            o = rest;
            if o.is_empty() {
                out.valid = false; // "unexpected end-of-options"
            }
        }
    }
    out
}

enum Parsed {
    CertAuthority,
    /// Another option, or none: `sshauthopt_parse` then only accepts a comma (an empty option).
    Other,
    Bad,
}

/// One step of `sshauthopt_parse`'s option chain: option names are matched as
/// case-insensitive prefixes, and the caller checks what follows.
fn one_option(o: &mut &[u8], once: &mut [bool; 3]) -> Parsed {
    for (name, negatable) in FLAG_OPTIONS {
        let mut s = *o;
        if negatable && starts_with_ignore_case(s, "no-") {
            s = &s[3..];
        }
        if starts_with_ignore_case(s, name) {
            *o = &s[name.len()..];
            return if name == "cert-authority" {
                Parsed::CertAuthority
            } else {
                Parsed::Other
            };
        }
    }
    for (i, name) in VALUE_OPTIONS.into_iter().enumerate() {
        if starts_with_ignore_case(o, name) && o.get(name.len()) == Some(&b'=') {
            *o = &o[name.len() + 1..];
            if let Some(seen) = once.get_mut(i) {
                if *seen {
                    return Parsed::Bad; // "multiple \"command\" clauses"
                }
                *seen = true;
            }
            return match dequote(o) {
                Some(rest) => {
                    *o = rest;
                    Parsed::Other
                }
                None => Parsed::Bad,
            };
        }
    }
    Parsed::Other
}

/// `opt_dequote`: past a double-quoted value (`\"` inside it is a quote). `None` when the
/// value does not start with a quote or never ends.
fn dequote(o: &[u8]) -> Option<&[u8]> {
    let mut rest = o.strip_prefix(b"\"")?;
    loop {
        match rest {
            [] => return None,
            [b'"', tail @ ..] => return Some(tail),
            [b'\\', b'"', tail @ ..] | [_, tail @ ..] => rest = tail,
        }
    }
}

/// Past the next comma outside quotes, or up to the blank that ends the options.
fn skip_past_option(o: &[u8]) -> &[u8] {
    let mut quoted = false;
    let mut rest = o;
    loop {
        match rest {
            [] => return rest,
            [b',', tail @ ..] if !quoted => return tail,
            [b, ..] if !quoted && is_blank(*b) => return rest,
            [b'\\', b'"', tail @ ..] => rest = tail,
            [b'"', tail @ ..] => {
                quoted = !quoted;
                rest = tail;
            }
            [_, tail @ ..] => rest = tail,
        }
    }
}

fn starts_with_ignore_case(s: &[u8], prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// The machine name of a `fleetkey=NAME` marker: the last blank-separated token of the comment.
fn fleetkey_marker(comment: &[u8]) -> Option<&[u8]> {
    let end = comment.iter().rposition(|&b| !is_c_space(b))? + 1;
    let comment = &comment[..end];
    let start = comment
        .iter()
        .rposition(|&b| is_blank(b))
        .map_or(0, |i| i + 1);
    comment[start..]
        .strip_prefix(b"fleetkey=")
        .filter(|name| !name.is_empty())
}

/// Read one line of a keys file as a bare key.
fn read_public_key(body: &[u8], blob: &mut Vec<u8>) -> Result<PublicKey, KeyLineProblem> {
    let name = body.split(|&b| is_blank(b)).next().unwrap_or_default();
    let Some(kind) = KEY_TYPES.iter().find(|t| t.name.as_bytes() == name) else {
        return Err(if name.ends_with(b"-cert-v01@openssh.com") {
            KeyLineProblem::Certificate
        } else {
            KeyLineProblem::UnknownKeyType
        });
    };
    let Some(field) = read_key(body, blob) else {
        let rest = body.get(name.len()..).unwrap_or_default();
        return Err(if rest.iter().all(|&b| is_c_space(b)) {
            KeyLineProblem::MissingKeyData
        } else {
            KeyLineProblem::BadBase64
        });
    };
    if blob.is_empty() {
        return Err(KeyLineProblem::MissingKeyData);
    }
    let mut key = PublicKey::from_bytes(blob).map_err(|_| {
        if kind.blob.contains("ecdsa") && !ecdsa_supported() {
            KeyLineProblem::UnsupportedKeyType
        } else {
            KeyLineProblem::BadKeyData
        }
    })?;
    if key.algorithm().as_str() != kind.blob {
        return Err(KeyLineProblem::TypeMismatch);
    }
    let end = field
        .comment
        .iter()
        .rposition(|&b| !is_c_space(b))
        .map_or(0, |i| i + 1);
    key.set_comment(String::from_utf8_lossy(&field.comment[..end]));
    Ok(key)
}

/// Whether this build's ssh-key decodes ECDSA keys (its optional `ecdsa` feature).
fn ecdsa_supported() -> bool {
    const NISTP256_KEY: &[u8] = b"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIJzSSRHAQ1Y/PfWzgsXpRpnNPiTi0KUtbD1e7IY6IbDq+uPCkMnod43S3eXJCDvJm/b29IKgLHlVcLTxywWvuo=";
    let mut blob = Vec::new();
    decode_base64(NISTP256_KEY, &mut blob) && PublicKey::from_bytes(&blob).is_ok()
}

fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// sshd's field separators: spaces and tabs.
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// C's `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn skip_blanks(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_blank(b)).count();
    &s[n..]
}

const fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decode base64 into `out` as OpenSSH's `b64_pton` does: whitespace anywhere is skipped,
/// padding is required, nothing but whitespace may follow it, and the unused bits of the last
/// character must be zero.
fn decode_base64(text: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    out.reserve(text.len() / 4 * 3 + 3);
    let (mut state, mut partial) = (0u8, 0u8);
    let mut at = 0;
    // Fast path: whole groups of four alphabet characters, three bytes each.
    while let Some(&[a, b, c, d]) = text.get(at..at + 4) {
        let [a, b, c, d] = [a, b, c, d].map(|x| BASE64[usize::from(x)]);
        if (a | b | c | d) >= 64 {
            break;
        }
        out.extend_from_slice(&[a << 2 | b >> 4, b << 4 | c >> 2, c << 6 | d]);
        at += 4;
    }
    let padded = loop {
        let Some(&c) = text.get(at) else {
            break false;
        };
        at += 1;
        let v = BASE64[usize::from(c)];
        match v {
            B64_SPACE => continue,
            B64_PAD => break true,
            B64_INVALID => return false,
            _ => {}
        }
        match state {
            0 => partial = v << 2,
            1 => {
                out.push(partial | v >> 4);
                partial = (v & 0x0f) << 4;
            }
            2 => {
                out.push(partial | v >> 2);
                partial = (v & 0x03) << 6;
            }
            _ => {
                out.push(partial | v);
                partial = 0;
            }
        }
        state = (state + 1) % 4;
    };
    if !padded {
        return state == 0;
    }
    let mut rest = text[at..].iter().copied().filter(|&c| !is_c_space(c));
    match state {
        2 if rest.next() == Some(b'=') => {}
        3 => {}
        _ => return false,
    }
    rest.next().is_none() && partial == 0
}

/// [`BASE64`] marks for whitespace (skipped), `=` and bytes outside the alphabet.
const B64_SPACE: u8 = 0xfe;
const B64_PAD: u8 = 0xfd;
const B64_INVALID: u8 = 0xff;

/// Each byte's base64 value, or one of the marks above: one lookup per character.
const BASE64: [u8; 256] = {
    let mut table = [B64_INVALID; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = match base64_value(b) {
            Some(v) => v,
            None if b == b'=' => B64_PAD,
            None if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) => B64_SPACE,
            None => B64_INVALID,
        };
        c += 1;
    }
    table
};

fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = byte(0) << 16 | byte(1) << 8 | byte(2);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            text.push(if i <= chunk.len() {
                char::from(ALPHABET[(n >> shift & 63) as usize])
            } else {
                '='
            });
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use ssh_key::public::Ed25519PublicKey;
    use std::fs;
    use std::sync::OnceLock;
    use std::time::Instant;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/authorized_keys");

    fn key_file(name: &str) -> Result<String, String> {
        fs::read_to_string(format!("{CORPUS}/keys/{name}.pub"))
            .map_err(|e| format!("keys/{name}.pub: {e}"))
    }

    /// `TYPE BASE64` of a corpus key, as ssh-keygen wrote it.
    fn key_text(name: &str) -> Result<String, String> {
        let text = key_file(name)?;
        match text.split_whitespace().collect::<Vec<_>>()[..] {
            [kind, base64, ..] => Ok(format!("{kind} {base64}")),
            _ => Err(format!("keys/{name}.pub is not a key line")),
        }
    }

    fn corpus_key(name: &str) -> PublicKey {
        let text = key_file(name).unwrap();
        let mut keys = parse_public_keys(&text, Path::new(name)).unwrap();
        assert_eq!(keys.len(), 1, "{name}");
        keys.remove(0)
    }

    fn fleet(machine: &str, name: &str) -> FleetKey {
        FleetKey {
            machine: machine.to_owned(),
            key: corpus_key(name),
        }
    }

    /// Lines as the merge sees them: split on `\n`, without it.
    fn lines(file: &[u8]) -> Vec<&[u8]> {
        file.split_inclusive(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\n").unwrap_or(l))
            .collect()
    }

    /// Bytes shown with the corpus escapes, for failure messages.
    fn show(file: &[u8]) -> String {
        let mut text = String::from_utf8_lossy(file)
            .replace('\r', "{CR}")
            .replace('\t', "{TAB}")
            .replace('\u{feff}', "{BOM}");
        if !file.is_empty() && !file.ends_with(b"\n") {
            text.push_str("{no-eol}\n");
        }
        text
    }

    // ---- the corpus (format: tests/data/authorized_keys/README.md) ----

    /// Expand the escapes of one corpus line.
    fn expand(line: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut rest = line;
        while let Some(open) = rest.find('{') {
            out.extend_from_slice(&rest.as_bytes()[..open]);
            rest = &rest[open..];
            let token = rest.find('}').map(|close| &rest[1..close]);
            let expansion = match token {
                Some("CR") => Some(b"\r".to_vec()),
                Some("TAB") => Some(b"\t".to_vec()),
                Some("BOM") => Some("\u{feff}".as_bytes().to_vec()),
                Some(t) if t.starts_with("key:") => Some(key_text(&t[4..])?.into_bytes()),
                Some(t) if t.starts_with("b64:") => {
                    let text = key_text(&t[4..])?;
                    Some(
                        text.split_once(' ')
                            .map(|(_, b)| b)
                            .unwrap_or_default()
                            .as_bytes()
                            .to_vec(),
                    )
                }
                _ => None,
            };
            match (token, expansion) {
                (Some(token), Some(bytes)) => {
                    out.extend_from_slice(&bytes);
                    rest = &rest[token.len() + 2..];
                }
                _ => {
                    out.push(b'{');
                    rest = &rest[1..];
                }
            }
        }
        out.extend_from_slice(rest.as_bytes());
        Ok(out)
    }

    const SECTIONS: [&str; 8] = [
        "input",
        "fleet",
        "revoked",
        "expect",
        "expect-error",
        "added",
        "removed",
        "warnings",
    ];

    #[derive(Default)]
    struct Case {
        about: String,
        requires_ecdsa: bool,
        sections: HashMap<&'static str, Vec<String>>,
    }

    impl Case {
        fn parse(text: &str) -> Result<Self, String> {
            let mut case = Case::default();
            let mut current = None;
            let mut raw: Vec<&str> = text.split('\n').collect();
            if raw.last() == Some(&"") {
                raw.pop();
            }
            for line in raw {
                if let Some(name) = line.strip_prefix("--- ") {
                    let name = SECTIONS
                        .into_iter()
                        .find(|&s| s == name.trim())
                        .ok_or_else(|| format!("unknown section {name:?}"))?;
                    if case.sections.insert(name, Vec::new()).is_some() {
                        return Err(format!("section {name} appears twice"));
                    }
                    current = Some(name);
                } else if let Some(name) = current {
                    case.sections.entry(name).or_default().push(line.to_owned());
                } else if let Some(about) = line.strip_prefix("about:") {
                    case.about.push_str(about.trim());
                    case.about.push(' ');
                } else if line.trim() == "requires: ecdsa" {
                    case.requires_ecdsa = true;
                } else if !line.trim().is_empty() && !line.starts_with('#') {
                    return Err(format!("unknown header line {line:?}"));
                }
            }
            if case.about.trim().is_empty() {
                return Err("no about: line".to_owned());
            }
            Ok(case)
        }

        fn section(&self, name: &str) -> &[String] {
            self.sections.get(name).map_or(&[], Vec::as_slice)
        }

        /// An `input` or `expect` section as file bytes.
        fn file(&self, name: &str) -> Result<Vec<u8>, String> {
            let section = self.section(name);
            let mut out = Vec::new();
            for (i, line) in section.iter().enumerate() {
                match line.strip_suffix("{no-eol}") {
                    Some(_) if i + 1 != section.len() => {
                        return Err(format!("{{no-eol}} before the end of section {name}"));
                    }
                    Some(line) => out.extend_from_slice(&expand(line)?),
                    None => {
                        out.extend_from_slice(&expand(line)?);
                        out.push(b'\n');
                    }
                }
            }
            Ok(out)
        }

        /// The roster; `Ok(Err(_))` when `parse_public_keys` refuses a key.
        #[allow(clippy::type_complexity)]
        fn roster(
            &self,
            case: &str,
        ) -> Result<Result<(Vec<FleetKey>, Vec<PublicKey>), Error>, String> {
            let mut active = Vec::new();
            for line in self.section("fleet") {
                let (machine, key_line) = line
                    .split_once(' ')
                    .ok_or_else(|| format!("fleet line {line:?} is not MACHINE KEYLINE"))?;
                let text = String::from_utf8(expand(key_line)?).map_err(|e| e.to_string())?;
                let keys = match parse_public_keys(&text, Path::new(&format!("{case}:fleet"))) {
                    Ok(keys) => keys,
                    Err(e) => return Ok(Err(e)),
                };
                for key in keys {
                    active.push(FleetKey {
                        machine: machine.to_owned(),
                        key,
                    });
                }
            }
            let mut revoked_text = Vec::new();
            for line in self.section("revoked") {
                revoked_text.extend_from_slice(&expand(line)?);
                revoked_text.push(b'\n');
            }
            let revoked_text = String::from_utf8(revoked_text).map_err(|e| e.to_string())?;
            Ok(
                parse_public_keys(&revoked_text, Path::new(&format!("{case}:revoked")))
                    .map(|revoked| (active, revoked)),
            )
        }

        fn report(&self, name: &str) -> Vec<String> {
            self.section(name)
                .iter()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect()
        }
    }

    fn added_report(merged: &Merge) -> Vec<String> {
        merged
            .added
            .iter()
            .map(|c| format!("{} {}", c.line, c.machine.as_deref().unwrap_or("?")))
            .collect()
    }

    fn removed_report(merged: &Merge) -> Vec<String> {
        merged
            .removed
            .iter()
            .map(|c| {
                let why = match c.why {
                    ChangeReason::Revoked => "revoked",
                    ChangeReason::LeftFleet => "left-fleet",
                    ChangeReason::FleetKeyAdded => "added",
                };
                match &c.machine {
                    Some(machine) => format!("{} {why} {machine}", c.line),
                    None => format!("{} {why}", c.line),
                }
            })
            .collect()
    }

    fn warnings_report(merged: &Merge) -> Vec<String> {
        merged
            .warnings
            .iter()
            .map(|w| format!("{} {}", w.line, w.machine))
            .collect()
    }

    fn run_case(path: &Path) -> Result<(), String> {
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let case = Case::parse(&fs::read_to_string(path).map_err(|e| e.to_string())?)?;
        let input = case.file("input")?;
        let (active, revoked) = match case.roster(&name)? {
            Ok(_) if case.requires_ecdsa && !ecdsa_supported() => {
                return Err("requires: ecdsa, yet this build read the roster".to_owned());
            }
            Ok(roster) => roster,
            // Without ECDSA support the case still pins something: the roster is refused,
            // loudly and with file and line, rather than ECDSA keys being silently ignored.
            Err(Error::InvalidKeyLine {
                problem: KeyLineProblem::UnsupportedKeyType,
                ..
            }) if case.requires_ecdsa && !ecdsa_supported() => return Ok(()),
            Err(e) => return Err(format!("the roster does not parse: {e}")),
        };
        let roster = Roster {
            active: &active,
            revoked: &revoked,
        };
        let result = merge(&input, &roster);
        match (
            case.sections.contains_key("expect"),
            case.sections.get("expect-error"),
        ) {
            (true, None) => {
                let merged = result.map_err(|e| format!("the merge failed: {e}"))?;
                let expect = case.file("expect")?;
                if merged.output != expect {
                    return Err(format!(
                        "output differs\n--- expected\n{}--- actual\n{}",
                        show(&expect),
                        show(&merged.output)
                    ));
                }
                for (section, actual) in [
                    ("added", added_report(&merged)),
                    ("removed", removed_report(&merged)),
                    ("warnings", warnings_report(&merged)),
                ] {
                    let expected = case.report(section);
                    if actual != expected {
                        return Err(format!("{section}: expected {expected:?}, got {actual:?}"));
                    }
                }
                let again = merge(&merged.output, &roster)
                    .map_err(|e| format!("the second merge failed: {e}"))?;
                if again.output != merged.output || again.changed() {
                    return Err(format!(
                        "not idempotent: the second merge gave\n{}",
                        show(&again.output)
                    ));
                }
                Ok(())
            }
            (false, Some(expected)) => match result {
                Ok(merged) => Err(format!("expected an error, got\n{}", show(&merged.output))),
                Err(e) if e.to_string().contains(expected.join("\n").trim()) => Ok(()),
                Err(e) => Err(format!(
                    "expected an error containing {expected:?}, got {:?}",
                    e.to_string()
                )),
            },
            _ => Err("a case needs exactly one of `--- expect` and `--- expect-error`".to_owned()),
        }
    }

    #[test]
    fn corpus_cases_merge_as_expected() {
        let mut paths: Vec<PathBuf> = fs::read_dir(CORPUS)
            .unwrap_or_else(|e| panic!("{CORPUS}: {e}"))
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "case"))
            .collect();
        paths.sort();
        assert!(paths.len() >= 35, "only {} cases in {CORPUS}", paths.len());
        let failures: Vec<String> = paths
            .iter()
            .filter_map(|p| run_case(p).err().map(|e| format!("{}: {e}", p.display())))
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {} corpus cases failed:\n\n{}",
            failures.len(),
            paths.len(),
            failures.join("\n\n")
        );
    }

    #[test]
    fn every_corpus_key_file_reads_as_sshd_would() {
        let mut names: Vec<String> = fs::read_dir(format!("{CORPUS}/keys"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pub"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(names.len() >= 20);
        for name in names {
            let text = key_file(&name).unwrap();
            let result = parse_public_keys(&text, Path::new("k.pub"));
            let problem = match result {
                Ok(keys) => {
                    assert_eq!(keys.len(), 1, "{name}");
                    let key = &keys[0];
                    let text = format!(
                        "{} {}",
                        key.algorithm().as_str(),
                        base64_encode(&key.to_bytes().unwrap())
                    );
                    assert_eq!(text, key_text(&name).unwrap(), "{name}");
                    assert!(
                        text.len() + 1 < key_file(&name).unwrap().len() || key.comment().is_empty(),
                        "{name}"
                    );
                    continue;
                }
                Err(Error::InvalidKeyLine {
                    problem, line: 1, ..
                }) => problem,
                Err(e) => panic!("{name}: {e}"),
            };
            let expected = match name.as_str() {
                "future-type" => KeyLineProblem::UnknownKeyType,
                "bob-ed25519-cert" => KeyLineProblem::Certificate,
                n if n.contains("ecdsa") && !ecdsa_supported() => {
                    KeyLineProblem::UnsupportedKeyType
                }
                _ => panic!("{name}: {problem}"),
            };
            assert_eq!(problem, expected, "{name}");
        }
    }

    // ---- sshd's reading of a line, piece by piece ----

    #[test]
    fn fingerprints_are_the_ones_ssh_keygen_prints() {
        for (name, expected) in [
            (
                "alice-ed25519",
                "SHA256:Y/ZLqZAgWpJVL7Q+U92OMLxMOm3ZT91DjNKSMXcBIuA",
            ),
            (
                "server-rsa",
                "SHA256:guOQPgyc6ZpTgD/fZptcv5JZwrtut9KFNx2erQ/R6Ik",
            ),
            (
                "yubikey-sk-ed25519",
                "SHA256:FqUBP/w3mWFjKqNzEaC6RSy+o5+FvRKuhlLypm0F98o",
            ),
            (
                "old-dsa",
                "SHA256:+biVl55e74T9QCP4Vj45hbdO5hv8UaOlplSr8zPu/Fo",
            ),
        ] {
            assert_eq!(fingerprint(corpus_key(name).key_data()), expected, "{name}");
        }
    }

    #[test]
    fn fleet_lines_encode_keys_as_ssh_keygen_does() {
        for name in [
            "alice-ed25519",
            "pi-ed25519",
            "server-rsa",
            "user-rsa",
            "yubikey-sk-ed25519",
            "solokey-sk-ed25519",
        ] {
            let key = corpus_key(name);
            let text = format!(
                "{} {}",
                key.algorithm().as_str(),
                base64_encode(&key.to_bytes().unwrap())
            );
            assert_eq!(text, key_text(name).unwrap(), "{name}");
        }
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"a"), "YQ==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b"abc"), "YWJj");
    }

    #[test]
    fn base64_is_decoded_as_b64_pton_does() {
        let cases: [(&[u8], Option<&[u8]>); 17] = [
            (b"", Some(b"")),
            (b"YQ==", Some(b"a")),
            (b"YWI=", Some(b"ab")),
            (b"YWJj", Some(b"abc")),
            (b"Y\rW\x0bJ\x0cj\r", Some(b"abc")), // CR, VT and FF are skipped anywhere
            (b"YQ=\r=", Some(b"a")),             // even between the pads
            (b"YQ", None),                       // padding is required
            (b"YWI", None),
            (b"YQ=", None),
            (b"YR==", None), // the unused bits must be zero
            (b"YWJ=", None),
            (b"YQ==YQ==", None), // nothing may follow the padding
            (b"=", None),
            (b"Y===", None),
            (b"YWJj=", None),
            (b"YW-j", None), // not in the alphabet
            (b"YW\0j", None),
        ];
        let mut out = Vec::new();
        for (text, expected) in cases {
            let ok = decode_base64(text, &mut out);
            assert_eq!(ok.then_some(out.as_slice()), expected, "{}", show(text));
        }
    }

    #[test]
    fn lines_are_tokenised_as_sshd_does() {
        let k = key_text("alice-ed25519").unwrap();
        let b = k.split_once(' ').unwrap().1;
        let cases: [(String, bool, bool); 16] = [
            // (line, sshd finds the key, with options)
            (k.clone(), true, false),
            (format!(" \t {k} comment"), true, false),
            (format!("ssh-ed25519\t\t{b}\t comment"), true, false),
            (format!("ssh-ed25519 {b}\r"), true, false),
            (format!("#{k}"), false, false),
            (format!("  # {k}"), false, false),
            (format!("no-pty {k}"), true, true),
            (format!("command=\"a b\"\t{k}"), true, true),
            (format!("command=\"a \\\" b\" {k}"), true, true),
            (format!("command=\"a b {k}"), false, false), // an unterminated quote swallows the key
            (format!("\u{feff}{k}"), false, false),       // a BOM makes the type unknown
            (format!("SSH-ED25519 {b}"), false, false),   // type names are case-sensitive
            (format!("{k}\0 anything"), true, false),     // sshd stops at NUL
            (format!("ssh-ed25519\0 {b}"), false, false),
            (format!("ssh-ed25519 ssh-ed25519 {b}"), true, true), // read as options + key
            ("ssh-ed25519".to_owned(), false, false),
        ];
        let mut blob = Vec::new();
        for (line, finds, with_options) in cases {
            let found = scan(line.as_bytes(), &mut blob);
            assert_eq!(found.is_some(), finds, "{}", show(line.as_bytes()));
            assert_eq!(
                found.is_some_and(|f| f.options.is_some()),
                with_options,
                "{}",
                show(line.as_bytes())
            );
        }
    }

    #[test]
    fn options_are_read_as_sshauthopt_parse_reads_them() {
        let cases = [
            // (options, cert-authority, sshd accepts them)
            ("no-pty k", false, true),
            ("cert-authority k", true, true),
            ("Cert-Authority,no-pty k", true, true),
            ("no-pty,CERT-AUTHORITY\tk", true, true),
            ("command=\"cert-authority\" k", false, true),
            ("command=\"a \\\"b\\\", #c\",restrict k", false, true),
            (",,no-pty, k", false, true),
            (
                "No-Port-Forwarding,X11-FORWARDING,no-touch-required,verify-required k",
                false,
                true,
            ),
            (
                "restrict,pty,user-rc,agent-forwarding,port-forwarding k",
                false,
                true,
            ),
            ("environment=\"A=1\",environment=\"B=2\" k", false, true),
            (
                "tunnel=\"1\",expiry-time=\"20991231\",permitopen=\"h:1\",permitlisten=\"8080\" k",
                false,
                true,
            ),
            (
                "principals=\"a,b\",cert-authority,from=\"*.lan\" k",
                true,
                true,
            ),
            ("no-pty,", false, false),
            ("cert-authorityx k", false, false),
            ("no-cert-authority k", false, false),
            ("frobnicate,cert-authority k", true, false),
            ("from=\"a\",from=\"b\" k", false, false),
            ("principals=\"a\",principals=\"b\" k", false, false),
            ("command=unquoted k", false, false),
            ("command=\"never ends", false, false),
        ];
        for (options, cert_authority, valid) in cases {
            assert_eq!(
                parse_options(options.as_bytes()),
                Options {
                    cert_authority,
                    valid
                },
                "{options}"
            );
        }
    }

    #[test]
    fn the_marker_is_the_last_token_of_the_comment() {
        let cases: [(&[u8], Option<&[u8]>); 8] = [
            (b"me@laptop fleetkey=laptop", Some(b"laptop")),
            (b"fleetkey=laptop", Some(b"laptop")),
            (b"me fleetkey=laptop\r", Some(b"laptop")),
            (b"a\tfleetkey=pi \t", Some(b"pi")),
            (b"fleetkey=laptop and more", None),
            (b"fleetkey=", None),
            (b"myfleetkey=laptop", None),
            (b"", None),
        ];
        for (comment, expected) in cases {
            assert_eq!(fleetkey_marker(comment), expected, "{}", show(comment));
        }
    }

    // ---- keys files ----

    #[test]
    fn keys_files_skip_comments_and_blank_lines() {
        let k = key_text("laptop-ed25519").unwrap();
        let text = format!(
            "# laptop\n\n   \r\n  # indented\n{k} me@laptop\r\n{k}\t# laptop 2025-01-01 lost\n"
        );
        let keys = parse_public_keys(&text, Path::new("keys/laptop.ssh.pub")).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].comment(), "me@laptop");
        assert_eq!(keys[1].comment(), "# laptop 2025-01-01 lost");
        assert_eq!(keys[0].key_data(), corpus_key("laptop-ed25519").key_data());
    }

    #[test]
    fn keys_file_errors_name_the_file_and_line_but_never_the_content() {
        let k = key_text("laptop-ed25519").unwrap();
        let b = k.split_once(' ').unwrap().1;
        let cases = [
            ("ssh-ed25519 SECRETLOOKINGTEXT", KeyLineProblem::BadBase64),
            ("from=\"10.0.0.1\" SECRET", KeyLineProblem::UnknownKeyType),
            ("ssh-ed25519", KeyLineProblem::MissingKeyData),
            ("ssh-ed25519 \r", KeyLineProblem::MissingKeyData),
            ("ssh-ed25519 AAAA", KeyLineProblem::BadKeyData),
            (&format!("ssh-rsa {b} SECRET"), KeyLineProblem::TypeMismatch),
            (
                &format!("ssh-ed25519-cert-v01@openssh.com {b}"),
                KeyLineProblem::Certificate,
            ),
        ];
        for (bad, problem) in cases {
            let text = format!("# laptop\n\n{k} me@laptop\n{bad}\n");
            let err = parse_public_keys(&text, Path::new("keys/laptop.ssh.pub")).unwrap_err();
            let message = err.to_string();
            assert_eq!(
                message,
                format!("keys/laptop.ssh.pub:4: not an OpenSSH public key: {problem}")
            );
            assert!(
                !message.contains("SECRET") && !message.contains(b),
                "{message}"
            );
            assert!(
                matches!(err, Error::InvalidKeyLine { line: 4, problem: p, .. } if p == problem)
            );
            assert!(!err.hint().is_empty());
        }
    }

    // ---- the roster ----

    #[test]
    fn an_inconsistent_roster_is_refused() {
        let laptop = fleet("laptop", "laptop-ed25519");
        let no_revoked: &[PublicKey] = &[];
        let cases: Vec<(Vec<FleetKey>, Vec<PublicKey>, &str)> = vec![
            (vec![], vec![], "no active SSH key"),
            (
                vec![laptop.clone()],
                vec![laptop.key.clone()],
                "both active and revoked",
            ),
            (
                vec![
                    laptop.clone(),
                    FleetKey {
                        machine: "desktop".into(),
                        key: laptop.key.clone(),
                    },
                ],
                vec![],
                "listed for two machines, desktop and laptop",
            ),
            (
                vec![FleetKey {
                    machine: String::new(),
                    ..laptop.clone()
                }],
                vec![],
                "machine name \"\"",
            ),
            (
                vec![FleetKey {
                    machine: "my laptop".into(),
                    ..laptop.clone()
                }],
                vec![],
                "machine name \"my laptop\"",
            ),
            (
                vec![FleetKey {
                    machine: "a\nb".into(),
                    ..laptop.clone()
                }],
                vec![],
                "machine name \"a\\nb\"",
            ),
            (vec![fleet("old", "old-dsa")], vec![], "is a ssh-dss key"),
        ];
        for (active, revoked, message) in cases {
            let roster = Roster {
                active: &active,
                revoked: if revoked.is_empty() {
                    no_revoked
                } else {
                    &revoked
                },
            };
            let err = merge(b"# keep me\n", &roster).unwrap_err();
            assert!(
                err.to_string().contains(message),
                "{err} (wanted {message:?})"
            );
            assert!(!err.hint().is_empty());
        }
    }

    #[test]
    fn a_key_listed_twice_for_one_machine_is_written_once() {
        let active = [
            fleet("laptop", "laptop-ed25519"),
            fleet("laptop", "laptop-ed25519"),
        ];
        let merged = merge(
            b"",
            &Roster {
                active: &active,
                revoked: &[],
            },
        )
        .unwrap();
        assert_eq!(lines(&merged.output).len(), 1);
        assert_eq!(merged.added.len(), 1);
    }

    #[test]
    fn fleet_key_comments_are_trimmed_and_never_break_a_line() {
        let text = key_text("laptop-ed25519").unwrap();
        for (comment, expected) in [
            (
                "me@laptop\nssh-ed25519 AAAA injected",
                format!("{text} fleetkey=laptop\n"),
            ),
            ("me@laptop\r", format!("{text} me@laptop fleetkey=laptop\n")),
            ("me\u{7}@laptop", format!("{text} fleetkey=laptop\n")),
            (
                "  me@laptop\t",
                format!("{text} me@laptop fleetkey=laptop\n"),
            ),
            ("", format!("{text} fleetkey=laptop\n")),
        ] {
            let mut key = fleet("laptop", "laptop-ed25519");
            key.key.set_comment(comment);
            let active = [key];
            let merged = merge(
                b"",
                &Roster {
                    active: &active,
                    revoked: &[],
                },
            )
            .unwrap();
            assert_eq!(
                show(&merged.output),
                show(expected.as_bytes()),
                "{comment:?}"
            );
        }
    }

    #[test]
    fn changes_carry_fingerprints() {
        let thief = corpus_key("thief-ed25519");
        let active = [fleet("laptop", "laptop-ed25519")];
        let input = format!("{} x\n", key_text("thief-ed25519").unwrap());
        let merged = merge(
            input.as_bytes(),
            &Roster {
                active: &active,
                revoked: &[thief],
            },
        )
        .unwrap();
        assert_eq!(
            merged.removed[0].fingerprint(),
            "SHA256:K9Vllh5sJmBec1YKniVjU8F6kxToPUnsG1+aLO+ogGY"
        );
        assert_eq!(
            merged.added[0].fingerprint(),
            "SHA256:c55068ZrupHFaklAteVGiC27zkay2miylhSTsYlH2tU"
        );
        assert_eq!(merged.added[0].why.to_string(), "fleet key added");
        assert!(merged.changed());
    }

    /// A made-up ed25519 key: the merge never checks a key's curve point, only its data.
    fn synthetic_key(i: u32, comment: &str) -> PublicKey {
        let mut bytes = [0u8; 32];
        for (j, b) in bytes.iter_mut().enumerate() {
            *b = (i.wrapping_mul(2_654_435_761) >> (j % 4 * 8)) as u8 ^ j as u8;
        }
        PublicKey::new(KeyData::Ed25519(Ed25519PublicKey(bytes)), comment)
    }

    /// The issue's benchmark shape, checked for correctness here; time it with
    /// `cargo test --release -- --nocapture thousand`.
    #[test]
    fn a_thousand_line_file_with_two_hundred_fleet_keys() {
        let active: Vec<FleetKey> = (0..200)
            .map(|i| FleetKey {
                machine: format!("machine-{:03}", i / 2),
                key: synthetic_key(i, &format!("me@machine-{}", i / 2)),
            })
            .collect();
        let revoked: Vec<PublicKey> = (1000..1020).map(|i| synthetic_key(i, "")).collect();
        let text = |k: &PublicKey| format!("ssh-ed25519 {}", base64_encode(&k.to_bytes().unwrap()));
        let mut input = String::new();
        for i in 0..1000u32 {
            let line = match i % 10 {
                0 => format!("# comment {i}"),
                1 if i < 400 => format!(
                    "{} me fleetkey={}",
                    text(&active[i as usize / 2].key),
                    active[i as usize / 2].machine
                ),
                2 if i < 200 => format!(
                    "from=\"10.0.0.0/8\",no-pty {} restricted",
                    text(&revoked[i as usize / 10])
                ),
                3 if i < 300 => format!(
                    "{} old fleetkey=gone-{i}",
                    text(&synthetic_key(5000 + i, ""))
                ),
                4 => format!(
                    "command=\"echo \\\"hi, there\\\" # x\" {} user",
                    text(&synthetic_key(9000 + i, ""))
                ),
                _ => format!("{} user-{i}@host", text(&synthetic_key(20_000 + i, ""))),
            };
            input.push_str(&line);
            input.push('\n');
        }
        let roster = Roster {
            active: &active,
            revoked: &revoked,
        };
        let start = Instant::now();
        let merged = merge(input.as_bytes(), &roster).unwrap();
        let elapsed = start.elapsed();
        println!("merge of 1000 lines, 200 fleet keys, 20 revoked: {elapsed:?}");
        assert_eq!(
            merged
                .removed
                .iter()
                .filter(|c| c.why == ChangeReason::Revoked)
                .count(),
            20
        );
        assert_eq!(
            merged
                .removed
                .iter()
                .filter(|c| c.why == ChangeReason::LeftFleet)
                .count(),
            30
        );
        // Lines 1, 11, …, 391 list 40 fleet keys: active[0], active[5], …
        assert_eq!(merged.added.len(), 200 - 40);
        assert_eq!(lines(&merged.output).len(), 1000 - 50 + 160);
        authorised(&merged.output, &roster).unwrap();
    }

    // ---- properties ----

    /// Every active key is listed as a plain entry and no revoked key is listed at all, as this
    /// module's own reading of sshd sees the file.
    fn authorised(file: &[u8], roster: &Roster<'_>) -> Result<(), String> {
        let mut blob = Vec::new();
        let mut entries = Vec::new();
        for line in lines(file) {
            if let Some(found) = scan(line, &mut blob) {
                let options = found.options.map_or(Options::BARE, parse_options);
                entries.push((blob.clone(), found.field.kind.blob, options.cert_authority));
            }
        }
        let listed = |key: &PublicKey, plain_only: bool| {
            let data = key.to_bytes().unwrap();
            let algorithm = key.algorithm();
            entries
                .iter()
                .any(|(b, a, ca)| *b == data && *a == algorithm.as_str() && !(plain_only && *ca))
        };
        for fleet in roster.active {
            if !listed(&fleet.key, true) {
                return Err(format!(
                    "{} of {} is not authorised",
                    fingerprint(fleet.key.key_data()),
                    fleet.machine
                ));
            }
        }
        for key in roster.revoked {
            if listed(key, false) {
                return Err(format!("revoked {} survived", fingerprint(key.key_data())));
            }
        }
        Ok(())
    }

    const POOL: [&str; 13] = [
        "alice-ed25519",
        "bob-ed25519",
        "laptop-ed25519",
        "laptop-ed25519-new",
        "desktop-ed25519",
        "pi-ed25519",
        "thief-ed25519",
        "oldphone-ed25519",
        "ca-ed25519",
        "server-rsa",
        "yubikey-sk-ed25519",
        "solokey-sk-ed25519",
        "old-dsa",
    ];
    /// The last one never has a key in the roster.
    const MACHINES: [&str; 5] = ["desktop", "laptop", "pi", "server", "oldbox"];

    struct Pool {
        keys: Vec<PublicKey>,
        texts: Vec<String>,
    }

    fn pool() -> &'static Pool {
        static POOL_KEYS: OnceLock<Pool> = OnceLock::new();
        POOL_KEYS.get_or_init(|| Pool {
            keys: POOL.iter().map(|n| corpus_key(n)).collect(),
            texts: POOL.iter().map(|n| key_text(n).unwrap()).collect(),
        })
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Role {
        Absent,
        Active(usize),
        Revoked,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Opt {
        /// sshd finds the key; it is a plain entry (valid options or not).
        Plain,
        /// sshd finds the key; the options hold cert-authority.
        Ca,
        /// sshd finds no key on the line.
        Unreadable,
    }

    const OPTIONS: [(&str, Opt); 11] = [
        ("", Opt::Plain),
        ("no-pty ", Opt::Plain),
        (
            "from=\"10.0.0.0/8,192.168.1.*\",no-agent-forwarding ",
            Opt::Plain,
        ),
        ("command=\"echo \\\"a b, #c\\\"\" ", Opt::Plain),
        ("restrict,pty\t", Opt::Plain),
        (
            "environment=\"A=b c\",expiry-time=\"20991231\" ",
            Opt::Plain,
        ),
        ("frobnicate ", Opt::Plain),
        ("cert-authority ", Opt::Ca),
        ("no-pty,CERT-Authority,principals=\"me\" ", Opt::Ca),
        ("from=\"unterminated ", Opt::Unreadable),
        ("\u{feff}", Opt::Unreadable),
    ];

    const TEXTS: [&str; 6] = [
        "# a comment",
        "",
        "   ",
        "\t# indented comment",
        "#",
        "ssh-ed25519",
    ];

    #[derive(Clone, Debug)]
    enum Plan {
        Text(usize),
        Key {
            key: usize,
            options: usize,
            tab: bool,
        },
        Marked {
            key: usize,
            machine: usize,
            options: usize,
        },
        Malformed {
            key: usize,
            how: usize,
        },
        Bytes(Vec<u8>),
    }

    fn plan() -> impl Strategy<Value = Plan> {
        let key = 0..POOL.len();
        prop_oneof![
            2 => (0..TEXTS.len()).prop_map(Plan::Text),
            5 => (key.clone(), 0..OPTIONS.len(), any::<bool>())
                .prop_map(|(key, options, tab)| Plan::Key { key, options, tab }),
            4 => (key.clone(), 0..MACHINES.len(), 0..OPTIONS.len())
                .prop_map(|(key, machine, options)| Plan::Marked { key, machine, options }),
            2 => (key, 0..6usize).prop_map(|(key, how)| Plan::Malformed { key, how }),
            1 => vec(any::<u8>(), 0..40).prop_map(|mut bytes| {
                bytes.retain(|&b| b != b'\n');
                Plan::Bytes(bytes)
            }),
        ]
    }

    /// One generated line and whether the merge must keep or remove it.
    fn render(plan: &Plan, roles: &[Role]) -> (Vec<u8>, bool) {
        let pool = pool();
        let removed_if_found =
            |key: usize, opt: Opt| opt != Opt::Unreadable && roles[key] == Role::Revoked;
        match plan {
            Plan::Text(i) => (TEXTS[*i].as_bytes().to_vec(), false),
            Plan::Key { key, options, tab } => {
                let (opts, opt) = OPTIONS[*options];
                let sep = if *tab { "\t" } else { " " };
                let line = format!(
                    "{opts}{}{sep}user comment",
                    pool.texts[*key].replacen(' ', sep, 1)
                );
                (line.into_bytes(), removed_if_found(*key, opt))
            }
            Plan::Marked {
                key,
                machine,
                options,
            } => {
                let (opts, opt) = OPTIONS[*options];
                let line = format!(
                    "{opts}{} me fleetkey={}",
                    pool.texts[*key], MACHINES[*machine]
                );
                let removed = opt != Opt::Unreadable && (roles[*key] != Role::Active(*machine));
                (line.into_bytes(), removed)
            }
            Plan::Malformed { key, how } => {
                let (kind, b64) = pool.texts[*key].split_once(' ').unwrap();
                let line = match how {
                    0 => format!("{kind} {}", &b64[..20]),
                    1 => format!("ecdsa-sha2-nistp256 {b64} wrong type"),
                    2 => format!("{b64} no type"),
                    3 => format!("{kind} {b64}! bad base64"),
                    4 => format!("{kind} AAAA fleetkey=oldbox"), // does not decode
                    _ => kind.to_owned(),
                };
                (line.into_bytes(), false)
            }
            Plan::Bytes(bytes) => (bytes.clone(), false),
        }
    }

    fn roster_strategy() -> impl Strategy<Value = Vec<Role>> {
        vec((0u8..3, 0..MACHINES.len() - 1), POOL.len()).prop_map(|picks| {
            let mut roles: Vec<Role> = picks
                .into_iter()
                .enumerate()
                .map(|(i, (role, machine))| match role {
                    // DSA keys may be revoked but are refused as fleet keys.
                    1 if POOL[i] == "old-dsa" => Role::Absent,
                    1 => Role::Active(machine),
                    2 => Role::Revoked,
                    _ => Role::Absent,
                })
                .collect();
            if !roles.iter().any(|r| matches!(r, Role::Active(_))) {
                roles[0] = Role::Active(0);
            }
            roles
        })
    }

    fn build_roster(roles: &[Role]) -> (Vec<FleetKey>, Vec<PublicKey>) {
        let pool = pool();
        let mut active = Vec::new();
        let mut revoked = Vec::new();
        for (key, role) in pool.keys.iter().zip(roles) {
            match role {
                Role::Active(m) => active.push(FleetKey {
                    machine: MACHINES[*m].to_owned(),
                    key: key.clone(),
                }),
                Role::Revoked => revoked.push(key.clone()),
                Role::Absent => {}
            }
        }
        (active, revoked)
    }

    fn fixed_roster() -> (Vec<FleetKey>, Vec<PublicKey>) {
        (
            vec![
                fleet("laptop", "laptop-ed25519"),
                fleet("desktop", "desktop-ed25519"),
            ],
            vec![corpus_key("thief-ed25519")],
        )
    }

    /// The output starts with the input's lines, minus the ones reported removed, verbatim.
    fn assert_keeps_unremoved_lines(input: &[u8], merged: &Merge) -> Result<(), TestCaseError> {
        let removed: Vec<usize> = merged.removed.iter().map(|c| c.line).collect();
        let kept: Vec<&[u8]> = lines(input)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !removed.contains(&(i + 1)))
            .map(|(_, l)| l)
            .collect();
        let output = lines(&merged.output);
        prop_assert_eq!(output.len(), kept.len() + merged.added.len());
        prop_assert_eq!(&output[..kept.len()], &kept[..]);
        Ok(())
    }

    fn assert_idempotent(merged: &Merge, roster: &Roster<'_>) -> Result<(), TestCaseError> {
        let again =
            merge(&merged.output, roster).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(show(&again.output), show(&merged.output));
        prop_assert!(!again.changed());
        Ok(())
    }

    proptest! {
        #[test]
        fn the_merge_keeps_user_lines_authorises_the_fleet_and_drops_revoked_keys(
            roles in roster_strategy(),
            plans in vec(plan(), 0..40),
            crlf in any::<bool>(),
            final_newline in any::<bool>(),
        ) {
            let (active, revoked) = build_roster(&roles);
            let roster = Roster { active: &active, revoked: &revoked };
            let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let mut input = Vec::new();
            let mut fates = Vec::new();
            for (i, plan) in plans.iter().enumerate() {
                let (line, removed) = render(plan, &roles);
                let last = i + 1 == plans.len();
                if last && !final_newline && line.is_empty() {
                    break; // an empty unterminated last line is no line
                }
                input.extend_from_slice(&line);
                if !last || final_newline {
                    input.extend_from_slice(eol);
                }
                fates.push(removed);
            }

            let merged = merge(&input, &roster).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(!merged.output.is_empty());

            // Exactly the revoked lines and fleetkey's stale lines are removed...
            let expected_removed: Vec<usize> =
                fates.iter().enumerate().filter(|(_, r)| **r).map(|(i, _)| i + 1).collect();
            let removed: Vec<usize> = merged.removed.iter().map(|c| c.line).collect();
            prop_assert_eq!(removed, expected_removed);
            // ...every other line appears verbatim and in order, followed by the added lines.
            assert_keeps_unremoved_lines(&input, &merged)?;

            authorised(&merged.output, &roster).map_err(TestCaseError::fail)?;
            assert_idempotent(&merged, &roster)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_are_kept(input in vec(any::<u8>(), 0..4096)) {
            let (active, revoked) = fixed_roster();
            let roster = Roster { active: &active, revoked: &revoked };
            let merged = merge(&input, &roster).map_err(|e| TestCaseError::fail(e.to_string()))?;
            // Random bytes never hold a readable revoked key or a fleetkey line: nothing goes.
            prop_assert!(merged.removed.is_empty());
            prop_assert!(merged.output.starts_with(&input));
            assert_keeps_unremoved_lines(&input, &merged)?;
            authorised(&merged.output, &roster).map_err(TestCaseError::fail)?;
            assert_idempotent(&merged, &roster)?;
        }

        #[test]
        fn lines_made_of_tricky_pieces_never_panic(pieces in vec(0usize..24, 0..80)) {
            let pool = pool();
            let fragments: [&str; 24] = [
                " ", "\t", "\"", "\\\"", ",", "#", "=", "\n", "\r\n", "\r", "\0", "\u{feff}",
                "ssh-ed25519", "rsa-sha2-256", "cert-authority", "CERT-AUTHORITY", "from=\"", "command=",
                " fleetkey=laptop", " fleetkey=gone", &pool.texts[2], &pool.texts[6], &pool.texts[9], "AAAA",
            ];
            let input: String = pieces.into_iter().map(|i| fragments[i]).collect();
            let (active, revoked) = fixed_roster();
            let roster = Roster { active: &active, revoked: &revoked };
            let merged = merge(input.as_bytes(), &roster).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(!merged.output.is_empty());
            assert_keeps_unremoved_lines(input.as_bytes(), &merged)?;
            authorised(&merged.output, &roster).map_err(TestCaseError::fail)?;
            assert_idempotent(&merged, &roster)?;
        }

        #[test]
        fn keys_files_never_panic(text in any::<String>()) {
            let _ = parse_public_keys(&text, Path::new("keys/x.ssh.pub"));
        }
    }
}

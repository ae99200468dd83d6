//! Owns reading a line as sshd tokenises it (`auth_check_authkey_line`, `sshkey_read`,
//! `sshkey_advance_past_options`): the key types sshd reads, where the key is on a line, its
//! decoded blob, the comment and the comment's `fleetkey=NAME` marker. Must never: decide what
//! the merge does with a line (`index.rs`) or read the options themselves (`options.rs`).

use super::base64::decode_base64;

/// A key type sshd reads from `authorized_keys` (the plain types of `sshkey.c`'s `keyimpls`).
///
/// Certificates are left out: sshd reads a certificate line, but a certificate never equals a
/// plain key, and with `cert-authority` sshd compares the presented certificate's CA key, which
/// is never a certificate. So a certificate line lists no key this module tracks.
pub(super) struct KeyType {
    /// The type name at the start of the key field.
    pub(super) name: &'static str,
    /// The algorithm the decoded key data must have.
    pub(super) blob: &'static str,
}

impl KeyType {
    const fn new(name: &'static str, blob: &'static str) -> Self {
        Self { name, blob }
    }
}

pub(super) const KEY_TYPES: [KeyType; 10] = [
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
/// A line on which sshd finds a key (not yet checked to decode; see [`read_key`]).
pub(super) struct KeyLine<'l> {
    pub(super) field: KeyField<'l>,
    /// The options as sshd hands them to its option parser (from their first byte to the end of
    /// the line); `None` for a bare key.
    pub(super) options: Option<&'l [u8]>,
}

/// `auth_check_authkey_line`: where the key is on a line, leaving its decoded blob in `blob`.
pub(super) fn scan<'l>(line: &'l [u8], blob: &mut Vec<u8>) -> Option<KeyLine<'l>> {
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
pub(super) struct KeyField<'l> {
    pub(super) kind: &'static KeyType,
    /// Everything after the key data and the blanks that follow it.
    pub(super) comment: &'l [u8],
}

/// `sshkey_read`'s tokenising: a known type name, blanks, base64 up to the next blank, blanks,
/// then the comment. The decoded key data is left in `blob`.
///
/// This accepts any blob that decodes as base64; sshd also requires it to decode as a key of the
/// line's type, and otherwise goes on to look for options. That difference never changes an
/// outcome: the options would end at the type name, and the base64 after it is never a type
/// name (they all hold a `-`), so sshd finds no key on such a line either. A blob that matches a
/// roster key decodes by construction; the only other blob decoded is a `fleetkey=` line's
/// ([`judge`](super::index::judge)).
pub(super) fn read_key<'l>(s: &'l [u8], blob: &mut Vec<u8>) -> Option<KeyField<'l>> {
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

/// Which of fleetkey's own markers ends a line's comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Marker<'l> {
    /// The machine name.
    pub(super) name: &'l [u8],
    /// `fleetkey-poke=NAME` (a poke line) rather than `fleetkey=NAME`.
    pub(super) poke: bool,
}

/// fleetkey's marker at the end of a comment: `fleetkey=NAME` or `fleetkey-poke=NAME`.
pub(super) fn marker(comment: &[u8]) -> Option<Marker<'_>> {
    if let Some(name) = fleetkey_marker(comment) {
        return Some(Marker { name, poke: false });
    }
    last_token(comment)?
        .strip_prefix(b"fleetkey-poke=")
        .filter(|name| !name.is_empty())
        .map(|name| Marker { name, poke: true })
}

fn last_token(comment: &[u8]) -> Option<&[u8]> {
    let end = comment.iter().rposition(|&b| !is_c_space(b))? + 1;
    let comment = &comment[..end];
    let start = comment
        .iter()
        .rposition(|&b| is_blank(b))
        .map_or(0, |i| i + 1);
    Some(&comment[start..])
}

/// The machine name of a `fleetkey=NAME` marker: the last blank-separated token of the comment.
pub(super) fn fleetkey_marker(comment: &[u8]) -> Option<&[u8]> {
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

/// sshd's field separators: spaces and tabs.
pub(super) fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// C's `isspace` in the C locale.
pub(super) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

pub(super) fn skip_blanks(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_blank(b)).count();
    &s[n..]
}

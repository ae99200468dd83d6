//! Owns reading the roster's keys files (`keys/NAME.ssh.pub`, the SSH lines of `keys/revoked`)
//! into [`PublicKey`]s, one bare key per line as sshd would read it. Must never: accept options
//! or a certificate, or quote a line in an error.

use std::path::Path;

use ssh_key::PublicKey;

use super::base64::decode_base64;
use super::error::{Error, KeyLineProblem};
use super::tokenize::{KEY_TYPES, is_blank, is_c_space, read_key, skip_blanks};

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
pub(super) fn ecdsa_supported() -> bool {
    const NISTP256_KEY: &[u8] = b"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIJzSSRHAQ1Y/PfWzgsXpRpnNPiTi0KUtbD1e7IY6IbDq+uPCkMnod43S3eXJCDvJm/b29IKgLHlVcLTxywWvuo=";
    let mut blob = Vec::new();
    decode_base64(NISTP256_KEY, &mut blob) && PublicKey::from_bytes(&blob).is_ok()
}

//! The fleet's secrets file: `secrets.env.age`, ASCII-armored age encrypted to every active
//! machine's recipient, with `secrets.recipients` beside it listing those recipients.
//!
//! Owns: encryption and decryption, and keeping the ciphertext and its recipient list in step.
//! The grammar of the plaintext lives in [`crate::envfile`]. Must never: write plaintext to the
//! repo, a log, argv or an error; plaintext lives in zeroizing buffers only.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::envfile::EnvFile;
use crate::error::{Error, Result};
use crate::files;
use crate::identity::Identity;
use crate::roster::{self, Roster};

/// The ciphertext, relative to the repo root.
pub const CIPHERTEXT: &str = "secrets.env.age";
/// The recipient list, relative to the repo root.
pub const RECIPIENTS: &str = "secrets.recipients";

/// Largest ciphertext fleetkey reads (a secrets file is small; this stops a hostile one).
const CIPHERTEXT_LIMIT: u64 = 64 << 20;

/// Encrypts `plaintext` to `recipients`, ASCII-armored as `age -a` writes it.
pub fn encrypt(plaintext: &[u8], recipients: &[age::x25519::Recipient]) -> Result<Vec<u8>> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(Error::Encrypt)?;
    let mut out = Vec::with_capacity(plaintext.len() * 4 / 3 + 200 + 100 * recipients.len());
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| Error::Encrypt(e.into()))?;
    let mut writer = encryptor
        .wrap_output(armor)
        .map_err(|e| Error::Encrypt(e.into()))?;
    writer
        .write_all(plaintext)
        .and_then(|()| writer.finish())
        .and_then(|armor| armor.finish())
        .map_err(|e| Error::Encrypt(e.into()))?;
    Ok(out)
}

/// Decrypts an age file (armored or binary) with `identity`. `path` only names it in errors.
pub fn decrypt(ciphertext: &[u8], identity: &Identity, path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let err = |source| Error::Decrypt {
        path: path.to_path_buf(),
        source,
    };
    let reader = age::armor::ArmoredReader::new(ciphertext);
    let decryptor = age::Decryptor::new_buffered(reader).map_err(err)?;
    let mut stream = decryptor
        .decrypt(std::iter::once(identity.as_age()))
        .map_err(err)?;
    let mut plaintext = Zeroizing::new(Vec::new());
    stream
        .read_to_end(&mut plaintext)
        .map_err(|e| err(age::DecryptError::Io(e)))?;
    Ok(plaintext)
}

/// The secrets file of one fleet clone.
pub struct SecretsFile {
    root: PathBuf,
}

impl SecretsFile {
    /// The secrets file of the clone at `root`.
    pub fn new(root: &Path) -> SecretsFile {
        SecretsFile {
            root: root.to_path_buf(),
        }
    }

    /// The ciphertext's path.
    pub fn ciphertext_path(&self) -> PathBuf {
        self.root.join(CIPHERTEXT)
    }

    /// Reads and decrypts the file, then parses it.
    pub fn load(&self, identity: &Identity) -> Result<EnvFile> {
        let path = self.ciphertext_path();
        let ciphertext = files::read_limited(&path, CIPHERTEXT_LIMIT)?;
        parse_plaintext(&decrypt(&ciphertext, identity, &path)?, &path)
    }

    /// Encrypts `env` to the active roster and writes the ciphertext and `secrets.recipients`
    /// (each atomically). The caller commits both paths together.
    pub fn store(&self, env: &EnvFile, roster: &Roster) -> Result<()> {
        let recipients: Vec<age::x25519::Recipient> =
            roster.active.iter().map(|m| m.recipient.clone()).collect();
        if recipients.is_empty() {
            return Err(Error::Refused(
                "the fleet has no active machine to encrypt the secrets to".into(),
            ));
        }
        let ciphertext = encrypt(env.to_text().as_bytes(), &recipients)?;
        files::write_atomic(&self.ciphertext_path(), &ciphertext, 0o644)?;
        let lines = roster.recipient_lines();
        files::write_atomic(
            &self.root.join(RECIPIENTS),
            roster::recipients_file_text(&lines).as_bytes(),
            0o644,
        )
    }

    /// The recipients recorded in `secrets.recipients` (empty when the file is missing).
    pub fn recorded_recipients(&self) -> Result<Vec<String>> {
        let path = self.root.join(RECIPIENTS);
        match files::read_text(&path, 1 << 20) {
            Ok(text) => Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect()),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }
}

/// Parses decrypted bytes as a secrets file; `path` names the ciphertext in errors.
pub fn parse_plaintext(plaintext: &[u8], path: &Path) -> Result<EnvFile> {
    let text = std::str::from_utf8(plaintext).map_err(|_| {
        Error::Secret(format!(
            "{} decrypts to text that is not UTF-8",
            path.display()
        ))
    })?;
    crate::envfile::parse(text).map_err(|source| Error::SecretsGrammar {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks a secret name against `[A-Za-z_][A-Za-z0-9_]*`.
pub fn check_key(key: &str) -> Result<()> {
    let mut chars = key.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Secret(format!(
            "{key:?} is not a valid secret name: use letters, digits and '_', not starting with a digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_encrypted_to_a_roster_decrypts_with_any_member() {
        let a = Identity::generate();
        let b = Identity::generate();
        let outsider = Identity::generate();
        let ct = encrypt(b"K=v\n", &[a.recipient(), b.recipient()]).unwrap();
        assert!(ct.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
        for id in [&a, &b] {
            assert_eq!(&decrypt(&ct, id, Path::new("s")).unwrap()[..], b"K=v\n");
        }
        let err = decrypt(&ct, &outsider, Path::new("s")).err().unwrap();
        assert!(matches!(
            err,
            Error::Decrypt {
                source: age::DecryptError::NoMatchingKeys,
                ..
            }
        ));
    }

    #[test]
    fn a_truncated_ciphertext_is_an_error_not_a_short_read() {
        let id = Identity::generate();
        let ct = encrypt(&vec![b'x'; 100_000], &[id.recipient()]).unwrap();
        let cut = &ct[..ct.len() / 2];
        assert!(decrypt(cut, &id, Path::new("s")).is_err());
    }

    #[test]
    fn secret_names_follow_the_grammar() {
        for ok in ["A", "_x", "API_TOKEN2"] {
            check_key(ok).unwrap();
        }
        for bad in ["", "2A", "A-B", "A B", "é"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}

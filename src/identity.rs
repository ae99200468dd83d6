//! This machine's keys: its age identity (`identity.txt`) and its SSH key pair.
//!
//! Owns: making, storing and loading private keys. Identities are created with `create_new` and
//! mode 0600 in a 0700 directory and are never silently overwritten; an identity (or its
//! directory) that others can read, or that someone else owns, is refused as ssh refuses such a
//! private key. Must never: print, log or put a private key in an error message.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::files;

/// Largest identity file fleetkey reads.
const IDENTITY_LIMIT: u64 = 64 * 1024;

/// This machine's age identity. It has no `Debug` or `Display`: only its recipient is public.
pub struct Identity {
    inner: age::x25519::Identity,
}

impl Identity {
    /// Makes a fresh identity.
    pub fn generate() -> Identity {
        Identity {
            inner: age::x25519::Identity::generate(),
        }
    }

    /// The public recipient (`age1…`) that others encrypt to.
    pub fn recipient(&self) -> age::x25519::Recipient {
        self.inner.to_public()
    }

    /// The identity as age's identity trait object, for decryption.
    pub fn as_age(&self) -> &dyn age::Identity {
        &self.inner
    }

    /// The text of an identity file in the format `age-keygen` writes.
    pub fn to_file_text(&self, created: &str) -> Zeroizing<String> {
        let secret = self.inner.to_string();
        Zeroizing::new(format!(
            "# created: {created}\n# public key: {}\n{}\n",
            self.recipient(),
            secret.expose_secret()
        ))
    }

    /// Parses the text of an identity file: `#` comments and blank lines are skipped; the first
    /// `AGE-SECRET-KEY-1…` line is the identity. `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Identity> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            return age::x25519::Identity::from_str(line)
                .map(|inner| Identity { inner })
                .map_err(|_| {
                    Error::from(ErrorKind::BadIdentity {
                        path: path.to_path_buf(),
                        line: i + 1,
                    })
                });
        }
        Err(ErrorKind::BadIdentity {
            path: path.to_path_buf(),
            line: 0,
        }
        .into())
    }

    /// Loads the identity at `path`, refusing it (and its directory) when others can read it.
    pub fn load(path: &Path) -> Result<Identity> {
        if !path.exists() {
            return Err(ErrorKind::Io {
                action: "cannot read the identity",
                path: path.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }
            .hint(format!(
                "this machine's age identity is gone, so it cannot read the secrets. Restore {} from a backup if you have one; otherwise join again under a new name: move ~/.config/fleetkey/config.toml and the clone (~/.local/share/fleetkey/fleet) aside, run `fleetkey enroll NEWNAME --remote URL` (it sets the old keys aside and makes fresh ones), approve it on an admin with the code it prints, then revoke the old name there: `fleetkey revoke OLDNAME`",
                path.display()
            )));
        }
        files::check_private(path)?;
        if let Some(dir) = path.parent() {
            files::check_private(dir)?;
        }
        let bytes = Zeroizing::new(files::read_limited(path, IDENTITY_LIMIT)?);
        let text = std::str::from_utf8(&bytes).map_err(|_| ErrorKind::BadIdentity {
            path: path.to_path_buf(),
            line: 0,
        })?;
        Identity::parse(text, path)
    }

    /// Writes a new identity file at `path` (0600 in a 0700 directory); refuses to overwrite.
    pub fn create(&self, path: &Path, created: &str) -> Result<()> {
        if let Some(dir) = path.parent() {
            files::ensure_private_dir(dir)?;
        }
        files::create_new_private(path, self.to_file_text(created).as_bytes())
    }
}

/// Retires the identity at `current` for the one a `rotate` made at `next`: the old one is
/// kept first under `retired_dir` (named by its recipient, so a re-run keeps one copy; only
/// for reading the history it encrypted, which a `revoke --compromised` report needs), then
/// `next` takes `current`'s place in one rename. Safe to interrupt at any point: until the
/// rename both identities are where they were.
pub fn retire_for_next(current: &Path, next: &Path, retired_dir: &Path, at: &str) -> Result<()> {
    if let Ok(old) = Identity::load(current) {
        let retired = retired_dir.join(format!("{}.txt", old.recipient()));
        if !retired.exists() {
            old.create(&retired, at)?;
        }
    }
    std::fs::rename(next, current).map_err(Error::io("cannot retire the old identity at", current))
}

/// Parses an age recipient, naming the file and line on error.
pub fn parse_recipient(text: &str, path: &Path, line: usize) -> Result<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(text.trim()).map_err(|_| {
        Error::from(ErrorKind::BadRoster {
            path: path.to_path_buf(),
            line,
            problem: "not an age recipient (age1…)".into(),
        })
    })
}

/// This machine's SSH key pair as fleetkey found or made it.
pub struct SshKey {
    /// The public key line (`ssh-ed25519 AAAA… comment`).
    pub public_line: String,
    /// Where the public key lives.
    pub public_path: PathBuf,
    /// Whether fleetkey made the pair just now.
    pub created: bool,
}

/// Uses `~/.ssh/id_ed25519.pub` when it exists; otherwise makes an ed25519 pair there, as
/// `ssh-keygen -t ed25519` would (private key 0600 in OpenSSH format, `~/.ssh` 0700).
pub fn ensure_ssh_key(ssh_dir: &Path, comment: &str) -> Result<SshKey> {
    let private_path = ssh_dir.join("id_ed25519");
    let public_path = ssh_dir.join("id_ed25519.pub");
    if public_path.exists() {
        let text = files::read_text(&public_path, IDENTITY_LIMIT)?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| ErrorKind::BadRoster {
                path: public_path.clone(),
                line: 1,
                problem: "no public key in the file".into(),
            })?;
        ssh_key::PublicKey::from_openssh(line).map_err(|_| ErrorKind::BadRoster {
            path: public_path.clone(),
            line: 1,
            problem: "not an OpenSSH public key".into(),
        })?;
        return Ok(SshKey {
            public_line: line.to_string(),
            public_path,
            created: false,
        });
    }
    if private_path.exists() {
        return Err(ErrorKind::Refused(format!(
            "{} exists without its .pub file; restore it with `ssh-keygen -y -f {0} > {0}.pub`",
            private_path.display()
        ))
        .into());
    }
    files::ensure_private_dir(ssh_dir)?;
    let (private, public_line) = new_ssh_keypair(comment)?;
    files::create_new_private(&private_path, private.as_bytes())?;
    files::write_atomic(&public_path, format!("{public_line}\n").as_bytes(), 0o644)?;
    Ok(SshKey {
        public_line,
        public_path,
        created: true,
    })
}

/// A fresh ed25519 key pair as `ssh-keygen -t ed25519 -C COMMENT` makes it: the private key in
/// OpenSSH format (zeroized on drop) and the public key line.
pub fn new_ssh_keypair(comment: &str) -> Result<(Zeroizing<String>, String)> {
    let mut key = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .map_err(|e| ErrorKind::Refused(format!("cannot make an SSH key: {e}")))?;
    key.set_comment(comment);
    let encode = |e: ssh_key::Error| ErrorKind::Refused(format!("cannot encode the SSH key: {e}"));
    let private = key.to_openssh(ssh_key::LineEnding::LF).map_err(encode)?;
    let public = key.public_key().to_openssh().map_err(encode)?;
    Ok((private, public))
}

/// The SHA256 fingerprint of an OpenSSH public key line, as `ssh-keygen -l` prints it.
pub fn ssh_fingerprint(line: &str) -> Option<String> {
    ssh_key::PublicKey::from_openssh(line.trim())
        .ok()
        .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_identity_round_trips_through_its_file_text() {
        let id = Identity::generate();
        let text = id.to_file_text("2026-01-01T00:00:00Z");
        let back = Identity::parse(&text, Path::new("identity.txt")).unwrap();
        assert_eq!(back.recipient().to_string(), id.recipient().to_string());
        assert!(text.contains("# public key: age1"));
    }

    #[test]
    fn a_bad_identity_names_the_line_but_not_its_content() {
        let err = Identity::parse("# c\n\nAGE-SECRET-KEY-1NOTREALLY\n", Path::new("id.txt"))
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.contains("id.txt line 3"), "{msg}");
        assert!(!msg.contains("NOTREALLY"), "{msg}");
    }

    #[test]
    fn a_world_readable_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        let path = cfg.join("identity.txt");
        Identity::generate().create(&path, "now").unwrap();
        Identity::load(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Identity::load(&path).err().unwrap();
        assert!(
            matches!(err.kind(), ErrorKind::InsecurePermissions { .. }),
            "{err}"
        );
    }

    #[test]
    fn an_ssh_key_is_made_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        let made = ensure_ssh_key(&ssh, "me@laptop").unwrap();
        assert!(made.created);
        assert!(made.public_line.starts_with("ssh-ed25519 "));
        assert!(made.public_line.ends_with(" me@laptop"));
        let mode = std::fs::metadata(ssh.join("id_ed25519"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ensure_ssh_key(&ssh, "me@laptop").unwrap();
        assert!(!again.created);
        assert_eq!(again.public_line, made.public_line);
        assert!(
            ssh_fingerprint(&made.public_line)
                .unwrap()
                .starts_with("SHA256:")
        );
    }
}

//! The enrollment bundle: a new machine's age identity and SSH key pair, made on an enrolled
//! machine by `fleetkey enroll NAME --bundle FILE` and carried to the new machine, encrypted with
//! a passphrase (age's scrypt recipient, ASCII-armored).
//!
//! Owns: the bundle's format and its encryption. Must never: write a bundle into the fleet repo,
//! overwrite an existing file, or hold the private keys outside zeroizing buffers.
//!
//! The decrypted format is line-based text:
//! ```text
//! fleetkey-bundle 2
//! name NAME
//! trust-root COMMIT           the fleet commit the new machine pins as its trust root
//! age AGE-SECRET-KEY-1…
//! ssh-public ssh-ed25519 AAAA… COMMENT
//! ssh-private
//! -----BEGIN OPENSSH PRIVATE KEY-----
//! …
//! -----END OPENSSH PRIVATE KEY-----
//! sign-private
//! -----BEGIN OPENSSH PRIVATE KEY-----   the commit-signing key
//! …
//! -----END OPENSSH PRIVATE KEY-----
//! ```

use std::io::{Read, Write};
use std::path::Path;

use age::secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::identity::Identity;
use crate::signing::SigningKey;

const HEADER: &str = "fleetkey-bundle 2";
/// Largest bundle fleetkey reads.
const BUNDLE_LIMIT: u64 = 256 * 1024;

/// A new machine's keys, in memory.
pub struct Bundle {
    /// The machine's name.
    pub name: String,
    /// Its age identity.
    pub identity: Identity,
    /// Its OpenSSH public key line.
    pub ssh_public: String,
    /// Its OpenSSH private key (PEM text).
    pub ssh_private: Zeroizing<String>,
    /// Its commit-signing key.
    pub signing: SigningKey,
    /// The fleet commit the new machine pins as its trust root (hex).
    pub trust_root: String,
}

impl Bundle {
    /// The plaintext form.
    fn to_text(&self) -> Result<Zeroizing<String>> {
        let id = self.identity.to_file_text("bundle");
        let secret_line = id
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .expect("an identity file holds its key");
        let sign = self.signing.to_openssh()?;
        Ok(Zeroizing::new(format!(
            "{HEADER}\nname {}\ntrust-root {}\nage {secret_line}\nssh-public {}\nssh-private\n{}sign-private\n{}",
            self.name,
            self.trust_root,
            self.ssh_public,
            self.ssh_private.as_str(),
            sign.as_str()
        )))
    }

    /// Parses the plaintext form; `path` names the bundle in errors.
    fn parse(text: &str, path: &Path) -> Result<Bundle> {
        let bad = |what: &str| {
            Error::refused(format!(
                "{} is not a fleetkey bundle ({what})",
                path.display()
            ))
        };
        let mut lines = text.splitn(6, '\n');
        if lines.next() != Some(HEADER) {
            return Err(bad(
                "unknown header; bundles made before signed history are refused",
            ));
        }
        let name = lines
            .next()
            .and_then(|l| l.strip_prefix("name "))
            .ok_or_else(|| bad("no name"))?
            .to_string();
        crate::roster::check_name(&name)?;
        let trust_root = lines
            .next()
            .and_then(|l| l.strip_prefix("trust-root "))
            .filter(|r| git2::Oid::from_str(r).is_ok())
            .ok_or_else(|| bad("no trust root"))?
            .to_string();
        let age_line = lines
            .next()
            .and_then(|l| l.strip_prefix("age "))
            .ok_or_else(|| bad("no age identity"))?;
        let identity = Identity::parse(age_line, path)?;
        let ssh_public = lines
            .next()
            .and_then(|l| l.strip_prefix("ssh-public "))
            .ok_or_else(|| bad("no SSH public key"))?
            .to_string();
        let rest = lines
            .next()
            .and_then(|l| l.strip_prefix("ssh-private\n"))
            .ok_or_else(|| bad("no SSH private key"))?;
        let (ssh_pem, sign_pem) = rest
            .split_once("sign-private\n")
            .ok_or_else(|| bad("no signing key"))?;
        ssh_key::PrivateKey::from_openssh(ssh_pem).map_err(|_| bad("a damaged SSH private key"))?;
        let signing = SigningKey::from_openssh(sign_pem, path)?;
        Ok(Bundle {
            name,
            identity,
            ssh_public,
            ssh_private: Zeroizing::new(ssh_pem.to_string()),
            signing,
            trust_root,
        })
    }

    /// Makes fresh keys for `name`, to pin `trust_root` on the new machine.
    pub fn generate(name: &str, trust_root: &str) -> Result<Bundle> {
        let (ssh_private, ssh_public) =
            crate::identity::new_ssh_keypair(&format!("fleetkey@{name}"))?;
        Ok(Bundle {
            name: name.to_string(),
            identity: Identity::generate(),
            ssh_public,
            ssh_private,
            signing: SigningKey::generate(&format!("fleetkey-sign@{name}"))?,
            trust_root: trust_root.to_string(),
        })
    }

    /// Encrypts the bundle with `passphrase` and writes it to the new file `path` (0600).
    pub fn write(&self, path: &Path, passphrase: SecretString) -> Result<()> {
        let encryptor = age::Encryptor::with_user_passphrase(passphrase);
        let mut out = Vec::new();
        let armor =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| ErrorKind::Encrypt(e.into()))?;
        let mut w = encryptor
            .wrap_output(armor)
            .map_err(|e| ErrorKind::Encrypt(e.into()))?;
        w.write_all(self.to_text()?.as_bytes())
            .and_then(|()| w.finish())
            .and_then(|a| a.finish())
            .map_err(|e| ErrorKind::Encrypt(e.into()))?;
        crate::files::create_new_private(path, &out)
    }

    /// Reads and decrypts the bundle at `path`.
    pub fn read(path: &Path, passphrase: SecretString) -> Result<Bundle> {
        let ciphertext = crate::files::read_limited(path, BUNDLE_LIMIT)?;
        let wrong = || {
            ErrorKind::Refused(format!(
                "cannot open the bundle {}: wrong passphrase, or the file is damaged or truncated",
                path.display()
            ))
        };
        let decryptor =
            age::Decryptor::new_buffered(age::armor::ArmoredReader::new(&ciphertext[..]))
                .map_err(|_| wrong())?;
        if !decryptor.is_scrypt() {
            return Err(ErrorKind::Refused(format!(
                "{} is not a passphrase-encrypted bundle",
                path.display()
            ))
            .into());
        }
        let identity = age::scrypt::Identity::new(passphrase);
        let mut reader = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|_| wrong())?;
        let mut plain = Zeroizing::new(Vec::new());
        reader.read_to_end(&mut plain).map_err(|_| wrong())?;
        let text = std::str::from_utf8(&plain).map_err(|_| wrong())?;
        Bundle::parse(text, path)
    }
}

/// Reads a passphrase: the first line of `file`, or prompted on the terminal (twice when
/// `confirm`).
/// The fewest characters a new bundle's passphrase may have: a bundle is a bearer credential
/// for full membership, and a passphrase file or prompt is its only lock.
pub const MIN_PASSPHRASE: usize = 16;

/// A passphrase of 6 groups of 5 characters from a 32-letter alphabet (150 bits), easy to read
/// out and type: `k7mq2-…`.
pub fn generate_passphrase() -> SecretString {
    use rand_core::RngCore;
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = Zeroizing::new([0u8; 30]);
    rand_core::OsRng.fill_bytes(&mut bytes[..]);
    let mut text = Zeroizing::new(String::with_capacity(35));
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 5 == 0 {
            text.push('-');
        }
        text.push(ALPHABET[usize::from(*b) % 32] as char);
    }
    SecretString::from(text.to_string())
}

/// Refuses a passphrase for a new bundle that is shorter than [`MIN_PASSPHRASE`] characters or
/// a single character repeated; the message never holds the passphrase.
pub fn check_strength(passphrase: &str) -> Result<()> {
    let chars: Vec<char> = passphrase.chars().collect();
    let distinct = {
        let mut c = chars.clone();
        c.sort_unstable();
        c.dedup();
        c.len()
    };
    if chars.len() < MIN_PASSPHRASE || distinct < 5 {
        return Err(ErrorKind::Refused(format!(
            "the bundle passphrase is too weak: a bundle grants full membership to whoever opens it, so use at least {MIN_PASSPHRASE} characters, not one repeated"
        ))
        .hint("generate one: `head -c 18 /dev/urandom | base64 > pass.txt`, then pass `--passphrase-file pass.txt` (and send it apart from the bundle)"));
    }
    Ok(())
}

/// Reads a bundle passphrase from `file` (its first line) or prompts for it (twice when
/// `confirm`, which is when a new bundle is made: then it must pass [`check_strength`]).
pub fn passphrase(file: Option<&Path>, confirm: bool) -> Result<SecretString> {
    if let Some(file) = file {
        let bytes = Zeroizing::new(crate::files::read_limited(file, 4096)?);
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ErrorKind::Refused(format!("{} is not UTF-8 text", file.display())))?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(
                ErrorKind::Refused(format!("{} holds no passphrase", file.display())).into(),
            );
        }
        if confirm {
            check_strength(line)?;
        }
        return Ok(SecretString::from(line.to_string()));
    }
    let tty = Path::new("/dev/tty");
    let prompt = if confirm {
        "bundle passphrase (press Enter to have one generated): "
    } else {
        "bundle passphrase: "
    };
    // No terminal (a script, ssh without -t, an agent): name the flag that does without one.
    let no_tty = |e: std::io::Error| {
        let command = if confirm {
            "fleetkey enroll NAME --bundle FILE --passphrase-file PASSFILE"
        } else {
            "fleetkey join FILE --remote URL --passphrase-file PASSFILE"
        };
        Error::io("cannot prompt on", tty)(e).hint(format!(
            "there is no terminal to ask for the bundle passphrase on: put it on the first line of a file only you can read (`chmod 600 PASSFILE`) and run `{command}`"
        ))
    };
    let first = Zeroizing::new(rpassword::prompt_password(prompt).map_err(no_tty)?);
    if first.is_empty() && confirm {
        let made = generate_passphrase();
        // Shown once, on the terminal only (never stdout, a log or an error).
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .open(tty)
            .map_err(Error::io("cannot write to", tty))?;
        let line = Zeroizing::new(format!(
            "generated passphrase: {}\n  (shown once: give it to the new machine apart from the bundle)\n",
            made.expose_secret()
        ));
        std::io::Write::write_all(&mut out, line.as_bytes())
            .map_err(Error::io("cannot write to", tty))?;
        return Ok(made);
    }
    if first.is_empty() {
        return Err(ErrorKind::Refused("an empty passphrase is not allowed".into()).into());
    }
    if confirm {
        check_strength(&first)?;
        let again = Zeroizing::new(
            rpassword::prompt_password("bundle passphrase (again): ").map_err(no_tty)?,
        );
        if *again != *first {
            return Err(ErrorKind::Refused("the passphrases differ".into()).into());
        }
    }
    Ok(SecretString::from(first.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weak_passphrase_is_refused_for_a_new_bundle() {
        for weak in [
            "x",
            "correct horse",
            "aaaaaaaaaaaaaaaaaaaa",
            "abababababababababab",
        ] {
            let err = check_strength(weak).unwrap_err();
            assert!(err.to_string().contains("too weak"), "{weak}");
            assert!(
                !err.to_string().contains(weak),
                "the message holds the passphrase"
            );
        }
        check_strength("correct horse battery staple").unwrap();
        let made = generate_passphrase();
        check_strength(made.expose_secret()).unwrap();
        assert_eq!(made.expose_secret().len(), 35);
        assert_ne!(made.expose_secret(), generate_passphrase().expose_secret());
    }

    #[test]
    fn the_plaintext_form_round_trips() {
        let root = "0123456789abcdef0123456789abcdef01234567";
        let b = Bundle::generate("new-mac", root).unwrap();
        let back = Bundle::parse(&b.to_text().unwrap(), Path::new("b")).unwrap();
        assert_eq!(back.trust_root, root);
        assert_eq!(back.signing.fingerprint(), b.signing.fingerprint());
        assert_eq!(back.name, "new-mac");
        assert_eq!(
            back.identity.recipient().to_string(),
            b.identity.recipient().to_string()
        );
        assert_eq!(back.ssh_public, b.ssh_public);
        assert_eq!(*back.ssh_private, *b.ssh_private);
    }

    #[test]
    fn a_damaged_plaintext_is_refused() {
        let b = Bundle::generate("x", "0123456789abcdef0123456789abcdef01234567").unwrap();
        let text = b.to_text().unwrap();
        let cut = &text[..text.len() - 40];
        assert!(Bundle::parse(cut, Path::new("b")).is_err());
        assert!(Bundle::parse("hello", Path::new("b")).is_err());
    }
}

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
use crate::error::{Error, ErrorKind, Result};
use crate::files;
use crate::identity::Identity;
use crate::roster::{self, Roster};

/// The output format of `secrets export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// A dotenv file (`KEY='value'` lines) that python-dotenv and Node's dotenv read back
    /// exactly; a value they would read differently is refused, naming the key.
    Env,
    /// `KEY=value` lines for `docker run --env-file` (raw values; a multi-line value is
    /// refused, naming the key).
    Docker,
    /// `export KEY='value'` lines for `eval "$(fleetkey secrets export --format sh)"` in bash,
    /// zsh or dash (or `set -a; . FILE`): child processes see them.
    Sh,
    /// `set -gx KEY 'value'` lines for fish: `fleetkey secrets export --format fish | source`.
    Fish,
    /// One JSON object, for programs.
    Json,
}

/// The name prefix of the private directories `secrets edit` decrypts into.
pub const EDIT_PREFIX: &str = "fleetkey-edit-";

/// The prefix of this setup's edit directories: [`EDIT_PREFIX`] and a tag of `state_dir`, so
/// a sweep under this setup's lock never touches the edit of another setup of the same user
/// (another HOME or XDG_STATE_HOME sharing `XDG_RUNTIME_DIR` or `/dev/shm`).
pub fn edit_prefix(state_dir: &Path) -> String {
    // FNV-1a: stable across runs and builds, no dependency.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in state_dir.as_os_str().as_encoded_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{EDIT_PREFIX}{hash:08x}-")
}

/// Where `secrets edit` may put its decrypted copy, best first: the per-user runtime directory
/// (`XDG_RUNTIME_DIR`, memory-backed), `/dev/shm` on Linux (memory-backed, so a crash leaves
/// nothing on disk across a reboot), then fleetkey's state directory.
pub fn scratch_bases(state_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && run.is_absolute()
        && run.is_dir()
    {
        out.push(run);
    }
    let shm = Path::new("/dev/shm");
    if std::env::consts::OS == "linux" && shm.is_dir() {
        out.push(shm.to_path_buf());
    }
    out.push(state_dir.to_path_buf());
    out
}

/// Removes every edit directory of this setup ([`edit_prefix`]) under [`scratch_bases`] that
/// this user owns: a decrypted copy left by a `secrets edit` that was killed. Called with the
/// lock held (an edit holds it throughout, so any such directory is stale); says what it
/// removed. Returns the directories.
pub fn sweep_stale_edits(state_dir: &Path) -> Vec<PathBuf> {
    let prefix = edit_prefix(state_dir);
    use std::os::unix::fs::MetadataExt;
    let uid = rustix::process::geteuid().as_raw();
    let mut removed = Vec::new();
    for base in scratch_bases(state_dir) {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let path = entry.path();
            // Never follow a link; only our own directories.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_dir() || meta.uid() != uid {
                continue;
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    crate::log::warn(&format!(
                        "removed {}: a decrypted copy of the secrets left by an interrupted `fleetkey secrets edit`",
                        path.display()
                    ));
                    removed.push(path);
                }
                Err(e) => crate::log::warn(&format!(
                    "cannot remove {} (a decrypted copy of the secrets left by an interrupted `fleetkey secrets edit`): {e}; remove it by hand",
                    path.display()
                )),
            }
        }
    }
    removed
}

/// Which value `secrets resolve` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Keep {
    /// The value kept aside: the edit that lost the merge, from the machine `secrets
    /// conflicts` names (`ours`, the old spelling, is an alias).
    #[value(alias = "ours")]
    Aside,
    /// The value in force: the edit that won the merge, the forge's (`theirs` and `current`
    /// are aliases).
    #[value(aliases = ["theirs", "current"])]
    InForce,
}

/// The ciphertext, relative to the repo root.
pub const CIPHERTEXT: &str = "secrets.env.age";
/// The recipient list, relative to the repo root.
pub const RECIPIENTS: &str = "secrets.recipients";

/// Encrypts `plaintext` to `recipients` in the order given, ASCII-armored as `age -a` writes it.
/// fleetkey passes them in the sorted order of `secrets.recipients` (as `age -R` does with that
/// file), so a machine knows which stanza is its own.
pub fn encrypt(plaintext: &[u8], recipients: &[age::x25519::Recipient]) -> Result<Vec<u8>> {
    Sealer::start(recipients.to_vec())?.seal(plaintext)
}

/// An encryption to a list of recipients, prepared on a background thread before the plaintext
/// is known. Wrapping the file key costs one X25519 agreement per recipient and does not depend
/// on the plaintext, so a command starts it first and decrypts, parses and edits meanwhile.
pub struct Sealer {
    prepared: std::thread::JoinHandle<Result<age::Encryptor>>,
}

impl Sealer {
    /// Starts wrapping a fresh file key for `recipients` (in that order).
    pub fn start(recipients: Vec<age::x25519::Recipient>) -> Result<Sealer> {
        if recipients.is_empty() {
            return Err(ErrorKind::Refused(
                "the fleet has no active machine to encrypt the secrets to".into(),
            )
            .into());
        }
        let prepared = std::thread::spawn(move || {
            let fanout = Fanout {
                recipients: &recipients,
            };
            age::Encryptor::with_recipients(std::iter::once(&fanout as &dyn age::Recipient))
                .map_err(|e| Error::from(ErrorKind::Encrypt(e)))
        });
        Ok(Sealer { prepared })
    }

    /// Starts wrapping for the roster's active recipients, sorted as `secrets.recipients`.
    pub fn for_roster(roster: &Roster) -> Result<Sealer> {
        Sealer::start(
            roster
                .recipient_lines()
                .iter()
                .map(|l| {
                    l.parse::<age::x25519::Recipient>()
                        .expect("roster recipients were parsed on load")
                })
                .collect(),
        )
    }

    /// Encrypts `plaintext`, ASCII-armored.
    pub fn seal(self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let encryptor = self
            .prepared
            .join()
            .expect("the key-wrapping thread panicked")?;
        let mut out = Vec::with_capacity(plaintext.len() * 4 / 3 + 16_384);
        let armor =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| ErrorKind::Encrypt(e.into()))?;
        let mut writer = encryptor
            .wrap_output(armor)
            .map_err(|e| ErrorKind::Encrypt(e.into()))?;
        writer
            .write_all(plaintext)
            .and_then(|()| writer.finish())
            .and_then(|armor| armor.finish())
            .map_err(|e| ErrorKind::Encrypt(e.into()))?;
        Ok(out)
    }
}

/// All recipients of one file as a single age recipient that wraps the file key for each of them
/// on several threads. Each wrap is an X25519 agreement; with 100 or 1,000 machines that is most
/// of the cost of a re-encryption, and the stanzas come out in the same order as sequentially.
struct Fanout<'a> {
    recipients: &'a [age::x25519::Recipient],
}

/// Below this many recipients a thread costs more than it saves.
const FANOUT_MIN: usize = 16;

impl age::Recipient for Fanout<'_> {
    fn wrap_file_key(
        &self,
        file_key: &age_core::format::FileKey,
    ) -> std::result::Result<
        (
            Vec<age_core::format::Stanza>,
            std::collections::HashSet<String>,
        ),
        age::EncryptError,
    > {
        let wrap_all = |chunk: &[age::x25519::Recipient]| {
            let mut stanzas = Vec::with_capacity(chunk.len());
            let mut labels = std::collections::HashSet::new();
            for r in chunk {
                let (s, l) = age::Recipient::wrap_file_key(r, file_key)?;
                stanzas.extend(s);
                labels.extend(l);
            }
            Ok((stanzas, labels))
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        if threads < 2 || self.recipients.len() < FANOUT_MIN {
            return wrap_all(self.recipients);
        }
        let chunk = self.recipients.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .recipients
                .chunks(chunk)
                .map(|c| scope.spawn(move || wrap_all(c)))
                .collect();
            let mut stanzas = Vec::with_capacity(self.recipients.len());
            let mut labels = std::collections::HashSet::new();
            for h in handles {
                let (s, l) = h.join().expect("a wrapping thread panicked")?;
                stanzas.extend(s);
                labels.extend(l);
            }
            Ok((stanzas, labels))
        })
    }
}

/// An identity that tries the stanza at `hint` first, then every other one.
///
/// The secrets file is encrypted to the recipients in the order `secrets.recipients` lists them,
/// so the position of this machine's recipient there is the index of its stanza. Trying it first
/// costs one X25519 agreement instead of one per recipient ahead of it; when the hint is wrong
/// (a file written another way) the other stanzas are still tried, so the result is the same.
struct Hinted<'a> {
    identity: &'a dyn age::Identity,
    hint: Option<usize>,
}

impl age::Identity for Hinted<'_> {
    fn unwrap_stanza(
        &self,
        stanza: &age_core::format::Stanza,
    ) -> Option<std::result::Result<age_core::format::FileKey, age::DecryptError>> {
        self.identity.unwrap_stanza(stanza)
    }

    fn unwrap_stanzas(
        &self,
        stanzas: &[age_core::format::Stanza],
    ) -> Option<std::result::Result<age_core::format::FileKey, age::DecryptError>> {
        if let Some(stanza) = self.hint.and_then(|i| stanzas.get(i))
            && let Some(key) = self.identity.unwrap_stanza(stanza)
        {
            return Some(key);
        }
        stanzas
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.hint)
            .find_map(|(_, stanza)| self.identity.unwrap_stanza(stanza))
    }
}

/// Decrypts an age file (armored or binary) with `identity`. `path` only names it in errors.
pub fn decrypt(ciphertext: &[u8], identity: &Identity, path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    decrypt_hinted(ciphertext, identity, None, path)
}

/// Like [`decrypt`], trying the stanza at `hint` first (see [`Hinted`]).
pub fn decrypt_hinted(
    ciphertext: &[u8],
    identity: &Identity,
    hint: Option<usize>,
    path: &Path,
) -> Result<Zeroizing<Vec<u8>>> {
    decrypt_within(
        ciphertext,
        identity,
        hint,
        path,
        crate::limits::SECRETS_CIPHERTEXT,
        crate::limits::SECRETS_PLAINTEXT,
    )
}

/// Like [`decrypt_hinted`] for any age file, with the limits of its ciphertext and plaintext
/// (a collected file gathered from another machine is not the secrets file).
pub fn decrypt_within(
    ciphertext: &[u8],
    identity: &Identity,
    hint: Option<usize>,
    path: &Path,
    cipher_limit: crate::limits::Limit,
    limit: crate::limits::Limit,
) -> Result<Zeroizing<Vec<u8>>> {
    let hinted = Hinted {
        identity: identity.as_age(),
        hint,
    };
    let err = |source| ErrorKind::Decrypt {
        path: path.to_path_buf(),
        source,
    };
    // A hostile ciphertext (from the forge, or an old commit) is refused before any work.
    let too_large = |e: crate::limits::TooLarge| Error::refused(format!("{}: {e}", path.display()));
    cipher_limit
        .check(ciphertext.len() as u64)
        .map_err(too_large)?;
    let mut binary = Vec::with_capacity(ciphertext.len());
    age::armor::ArmoredReader::new(ciphertext)
        .read_to_end(&mut binary)
        .map_err(|e| err(age::DecryptError::Io(e)))?;
    let decryptor = age::Decryptor::new_buffered(WholeHeader::new(&binary)).map_err(err)?;
    let mut stream = decryptor
        .decrypt(std::iter::once(&hinted as &dyn age::Identity))
        .map_err(err)?;
    let mut plaintext = Zeroizing::new(Vec::new());
    (&mut stream)
        .take(limit.bytes + 1)
        .read_to_end(&mut plaintext)
        .map_err(|e| err(age::DecryptError::Io(e)))?;
    limit.check(plaintext.len() as u64).map_err(too_large)?;
    Ok(plaintext)
}

/// The binary age file as a reader that hands age's header parser the whole header at once.
///
/// age 0.12 parses the header again from the start after each line it reads (`read_until`
/// newline), which is quadratic in the number of recipients: with 100 recipients that is most
/// of the cost of a decryption. The header ends with the first line starting `--- ` (stanza
/// lines start `-> ` and bodies are base64), so `read_until` here returns everything up to and
/// including that line in one call; the parser then sees exactly the bytes it would have
/// collected line by line, and every other read is a plain slice read.
struct WholeHeader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> WholeHeader<'a> {
    fn new(data: &'a [u8]) -> Self {
        WholeHeader { data, pos: 0 }
    }
}

impl Read for WholeHeader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (&self.data[self.pos..]).read(buf)?;
        self.pos += n;
        Ok(n)
    }
}

impl std::io::BufRead for WholeHeader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        Ok(&self.data[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.data.len());
    }

    fn read_until(&mut self, byte: u8, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        let rest = &self.data[self.pos..];
        let line_end = |from: usize| {
            rest[from..]
                .iter()
                .position(|&b| b == byte)
                .map_or(rest.len(), |i| from + i + 1)
        };
        let end = if byte == b'\n' && self.pos == 0 {
            // The whole header: through the end of the MAC line.
            match rest.windows(5).position(|w| w == b"\n--- ") {
                Some(i) => line_end(i + 1),
                None => line_end(0),
            }
        } else {
            line_end(0)
        };
        buf.extend_from_slice(&rest[..end]);
        self.pos += end;
        Ok(end)
    }
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
        let ciphertext = files::read_regular(&path, crate::limits::SECRETS_CIPHERTEXT)?;
        let hint = self.stanza_hint(identity);
        parse_plaintext(&decrypt_hinted(&ciphertext, identity, hint, &path)?, &path)
    }

    /// The index of `identity`'s stanza according to `secrets.recipients`, if it is listed.
    fn stanza_hint(&self, identity: &Identity) -> Option<usize> {
        let mine = identity.recipient().to_string();
        self.recorded_recipients()
            .ok()?
            .iter()
            .position(|r| *r == mine)
    }

    /// Encrypts `env` to the active roster and writes the ciphertext and `secrets.recipients`
    /// (each atomically). The caller commits both paths together.
    pub fn store(&self, env: &EnvFile, roster: &Roster) -> Result<()> {
        self.store_sealed(env, roster, Sealer::for_roster(roster)?)
    }

    /// Like [`SecretsFile::store`], with an encryption to `roster` already under way.
    pub fn store_sealed(&self, env: &EnvFile, roster: &Roster, sealer: Sealer) -> Result<()> {
        let text = env.to_text();
        crate::limits::SECRETS_PLAINTEXT
            .check(text.len() as u64)
            .map_err(|e| {
                Error::from(ErrorKind::Secret(format!("the secrets would not fit: {e}")))
            })?;
        let ciphertext = sealer.seal(text.as_bytes())?;
        files::write_atomic(&self.ciphertext_path(), &ciphertext, 0o644)?;
        let lines = roster.recipient_lines();
        if self.recorded_recipients().ok().as_ref() != Some(&lines) {
            files::write_atomic(
                &self.root.join(RECIPIENTS),
                roster::recipients_file_text(&lines).as_bytes(),
                0o644,
            )?;
        }
        Ok(())
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
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// Parses decrypted bytes as a secrets file; `path` names the ciphertext in errors.
pub fn parse_plaintext(plaintext: &[u8], path: &Path) -> Result<EnvFile> {
    let text = std::str::from_utf8(plaintext).map_err(|_| {
        ErrorKind::Secret(format!(
            "{} decrypts to text that is not UTF-8",
            path.display()
        ))
    })?;
    crate::envfile::parse(text).map_err(|e| e.in_file(path))
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
        Err(ErrorKind::Secret(format!(
            "{key:?} is not a valid secret name: use letters, digits and '_', not starting with a digit"
        )).into())
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
            err.kind(),
            ErrorKind::Decrypt {
                source: age::DecryptError::NoMatchingKeys,
                ..
            }
        ));
    }

    #[test]
    fn many_recipients_are_wrapped_in_order_and_each_decrypts() {
        let ids: Vec<Identity> = (0..40).map(|_| Identity::generate()).collect();
        let recipients: Vec<_> = ids.iter().map(Identity::recipient).collect();
        let ct = encrypt(b"K=v\n", &recipients).unwrap();
        /// Tries only the stanza at one index.
        struct Only<'a>(&'a dyn age::Identity, usize);
        impl age::Identity for Only<'_> {
            fn unwrap_stanza(
                &self,
                s: &age_core::format::Stanza,
            ) -> Option<std::result::Result<age_core::format::FileKey, age::DecryptError>>
            {
                self.0.unwrap_stanza(s)
            }
            fn unwrap_stanzas(
                &self,
                s: &[age_core::format::Stanza],
            ) -> Option<std::result::Result<age_core::format::FileKey, age::DecryptError>>
            {
                s.get(self.1).and_then(|s| self.0.unwrap_stanza(s))
            }
        }
        for (i, id) in ids.iter().enumerate() {
            // Stanza i belongs to recipient i: the order secrets.recipients promises.
            let only = Only(id.as_age(), i);
            let d = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(&ct[..])).unwrap();
            assert!(
                d.decrypt(std::iter::once(&only as &dyn age::Identity))
                    .is_ok(),
                "stanza {i}"
            );
            assert_eq!(&decrypt(&ct, id, Path::new("s")).unwrap()[..], b"K=v\n");
        }
    }

    #[test]
    fn the_whole_header_reader_gives_age_the_same_bytes_as_line_by_line() {
        use std::io::BufRead;
        let ids: Vec<Identity> = (0..20).map(|_| Identity::generate()).collect();
        let recipients: Vec<_> = ids.iter().map(Identity::recipient).collect();
        let armored = encrypt(b"K=v\n", &recipients).unwrap();
        let mut binary = Vec::new();
        age::armor::ArmoredReader::new(&armored[..])
            .read_to_end(&mut binary)
            .unwrap();
        let mut whole = WholeHeader::new(&binary);
        let mut header = Vec::new();
        whole.read_until(b'\n', &mut header).unwrap();
        assert!(header.starts_with(b"age-encryption.org/v1\n"));
        let mac_line = header.split(|&b| b == b'\n').rev().nth(1).unwrap();
        assert!(
            mac_line.starts_with(b"--- "),
            "the header ends with the MAC line"
        );
        assert_eq!(&binary[..header.len()], &header[..]);
        let mut rest = Vec::new();
        whole.read_to_end(&mut rest).unwrap();
        assert_eq!(header.len() + rest.len(), binary.len());
        for id in &ids {
            assert_eq!(
                &decrypt(&armored, id, Path::new("s")).unwrap()[..],
                b"K=v\n"
            );
        }
    }

    #[test]
    fn a_wrong_stanza_hint_still_decrypts() {
        let ids: Vec<Identity> = (0..5).map(|_| Identity::generate()).collect();
        let recipients: Vec<_> = ids.iter().map(Identity::recipient).collect();
        let ct = encrypt(b"K=v\n", &recipients).unwrap();
        for (i, id) in ids.iter().enumerate() {
            for hint in [Some(i), Some((i + 1) % 5), Some(99), None] {
                let pt = decrypt_hinted(&ct, id, hint, Path::new("s")).unwrap();
                assert_eq!(&pt[..], b"K=v\n");
            }
        }
    }

    #[test]
    fn oversized_ciphertext_and_plaintext_are_refused() {
        let id = Identity::generate();
        let huge = vec![b'-'; crate::limits::SECRETS_CIPHERTEXT.bytes as usize + 1];
        let err = decrypt(&huge, &id, Path::new("secrets.env.age"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("larger than the limit for the secrets file"),
            "{err}"
        );
        // A ciphertext within its limit whose plaintext is over its own.
        let plain = vec![b'#'; crate::limits::SECRETS_PLAINTEXT.bytes as usize + 1];
        let ct = encrypt(&plain, &[id.recipient()]).unwrap();
        let err = decrypt(&ct, &id, Path::new("secrets.env.age"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("larger than the limit for the decrypted secrets"),
            "{err}"
        );
        assert!(!err.contains("###"), "{err}");
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

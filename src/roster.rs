//! The fleet's roster: who is in it, who is waiting, and who was thrown out, read from the plain
//! files under `keys/` in the fleet repo.
//!
//! ```text
//! keys/NAME.age.pub           an active machine's age recipient, one line: age1…
//! keys/NAME.ssh.pub           an active machine's OpenSSH public key line(s)
//! keys/pending/NAME.*.pub     enrolled, waiting for approval
//! keys/revoked                revoked recipients and SSH keys, each with a "# NAME DATE REASON" line
//! ```
//!
//! Owns: reading and validating those files and the machine-name rule. Must never: accept a
//! malformed key silently (every error names the file and line), or treat a revoked key as active.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::files;
use crate::identity::parse_recipient;
use crate::limits;

/// The header of a new keys/revoked file.
pub const REVOKED_HEADER: &str = "# Revoked age recipients and SSH keys, one per line, each followed by a\n# \"# NAME DATE REASON\" line. fleetkey removes these keys from every authorized_keys.\n";

/// Checks a machine name against `[a-z0-9][a-z0-9-]{0,62}`.
pub fn check_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ErrorKind::BadName { name: name.into() }.into())
    }
}

/// One machine of the roster, active or pending.
#[derive(Debug, Clone)]
pub struct Member {
    /// The machine's name.
    pub name: String,
    /// Its age recipient.
    pub recipient: age::x25519::Recipient,
    /// Its SSH public keys.
    pub ssh_keys: Vec<ssh_key::PublicKey>,
    /// Its commit-signing keys (`keys/NAME.sign.pub`): one, or two while a `rotate` hands over
    /// from the old key to the new.
    pub signing: Vec<ssh_key::PublicKey>,
    /// Its poke key (`keys/NAME.poke.pub`): what its peers admit only to run `fleetkey poke`.
    pub poke: Vec<ssh_key::PublicKey>,
}

/// A key in `keys/revoked`.
#[derive(Debug, Clone)]
pub enum RevokedKey {
    /// A revoked age recipient, as text (`age1…`).
    Age(String),
    /// A revoked SSH public key.
    Ssh(ssh_key::PublicKey),
}

/// One entry of `keys/revoked` with its annotation.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The key.
    pub key: RevokedKey,
    /// The `NAME DATE REASON` annotation, if any.
    pub note: String,
}

impl Revoked {
    /// The machine name from the annotation (its first word).
    pub fn machine(&self) -> Option<&str> {
        self.note.split_whitespace().next()
    }
}

/// The whole roster as read from `keys/`.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    /// Approved machines, by name.
    pub active: Vec<Member>,
    /// Enrolled machines waiting for approval.
    pub pending: Vec<Member>,
    /// Revoked keys.
    pub revoked: Vec<Revoked>,
}

/// The directory names and files of the roster inside a fleet repo.
pub mod layout {
    /// The roster directory.
    pub const KEYS: &str = "keys";
    /// Pending enrollments.
    pub const PENDING: &str = "keys/pending";
    /// The revocation list.
    pub const REVOKED: &str = "keys/revoked";

    /// `keys/NAME.age.pub` (or under pending/).
    pub fn age_pub(dir: &str, name: &str) -> String {
        format!("{dir}/{name}.age.pub")
    }

    /// `keys/NAME.ssh.pub` (or under pending/).
    pub fn ssh_pub(dir: &str, name: &str) -> String {
        format!("{dir}/{name}.ssh.pub")
    }

    /// `keys/NAME.sign.pub`: the machine's commit-signing key.
    pub fn sign_pub(dir: &str, name: &str) -> String {
        format!("{dir}/{name}.sign.pub")
    }

    /// `keys/NAME.poke.pub`: the machine's poke key (see [`crate::sync::poke`]).
    pub fn poke_pub(dir: &str, name: &str) -> String {
        format!("{dir}/{name}.poke.pub")
    }

    /// `keys/NAME.role`: `admin`, `member` or `receiver` (see [`crate::authority::Role`]).
    pub fn role(dir: &str, name: &str) -> String {
        format!("{dir}/{name}.role")
    }

    /// `keys/NAME.proof`: the machine's own signature binding its name and keys to the fleet
    /// (see [`crate::enrollment`]).
    pub fn proof(dir: &str, name: &str) -> String {
        format!("{dir}/{name}.proof")
    }
}

impl Roster {
    /// Reads the roster of the fleet repo at `repo`.
    pub fn load(repo: &Path) -> Result<Roster> {
        Ok(Roster {
            active: load_members(&repo.join(layout::KEYS))?,
            pending: load_members(&repo.join(layout::PENDING))?,
            revoked: load_revoked(&repo.join(layout::REVOKED))?,
        })
    }

    /// The active recipients as sorted, de-duplicated text: the content of secrets.recipients.
    pub fn recipient_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .active
            .iter()
            .map(|m| m.recipient.to_string())
            .collect();
        lines.sort();
        lines.dedup();
        lines
    }

    /// The active member called `name`.
    pub fn active(&self, name: &str) -> Option<&Member> {
        self.active.iter().find(|m| m.name == name)
    }

    /// The pending member called `name`.
    pub fn pending(&self, name: &str) -> Option<&Member> {
        self.pending.iter().find(|m| m.name == name)
    }

    /// Whether a machine called `name` was revoked.
    pub fn is_revoked_name(&self, name: &str) -> bool {
        self.revoked.iter().any(|r| r.machine() == Some(name))
    }
}

impl From<Revocation> for crate::error::Error {
    fn from(r: Revocation) -> crate::error::Error {
        ErrorKind::Revoked {
            name: r.name,
            date: r.date,
            by: r.by,
        }
        .into()
    }
}

/// How a machine left the fleet: when, and which machine revoked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The machine that was revoked.
    pub name: String,
    /// The date of the revocation, as keys/revoked records it (YYYY-MM-DD).
    pub date: String,
    /// The machine whose commit revoked it (its `Fleetkey-Machine` trailer), when history
    /// says.
    pub by: Option<String>,
}

/// `name`'s revocation as the fleet's commit `at` records it, or `None` when `name` is active
/// or pending there, or was never revoked (a key `name` rotated away is no revocation). The
/// revoking machine is the one whose commit first carried the revocation note, walking back
/// through the parents that hold it.
pub fn revocation(repo: &git2::Repository, at: git2::Oid, name: &str) -> Option<Revocation> {
    let tree = repo.find_commit(at).ok()?.tree().ok()?;
    let listed = |dir: &str| {
        tree.get_path(Path::new(&layout::age_pub(dir, name)))
            .is_ok()
    };
    if listed(layout::KEYS) || listed(layout::PENDING) {
        return None;
    }
    let blob = tree.get_path(Path::new(layout::REVOKED)).ok()?;
    let blob = repo.find_blob(blob.id()).ok()?;
    let revoked = parse_revoked(
        &String::from_utf8_lossy(blob.content()),
        Path::new(layout::REVOKED),
    )
    .ok()?;
    let note = revoked
        .iter()
        .filter(|r| r.machine() == Some(name))
        .map(|r| r.note.clone())
        .find(|note| note.split_whitespace().nth(2) != Some("rotated"))?;
    let date = note.split_whitespace().nth(1).unwrap_or("an unknown date");
    let holds_note = |commit: &git2::Commit| -> bool {
        commit
            .tree()
            .ok()
            .and_then(|t| t.get_path(Path::new(layout::REVOKED)).ok())
            .and_then(|e| repo.find_blob(e.id()).ok())
            .is_some_and(|b| {
                String::from_utf8_lossy(b.content())
                    .lines()
                    .any(|l| l.trim().strip_prefix('#').map(str::trim) == Some(note.as_str()))
            })
    };
    let mut by = None;
    let mut commit = repo.find_commit(at).ok()?;
    // Back through the parents that hold the note (a merge may hold it from either side) to
    // the commit that added it; bounded, a revocation is recent history for the one that asks.
    for _ in 0..10_000 {
        if !holds_note(&commit) {
            break;
        }
        match commit.parents().find(|p| holds_note(p)) {
            Some(parent) => commit = parent,
            None => {
                by = commit
                    .message()
                    .ok()
                    .and_then(crate::signing::machine_of)
                    .map(str::to_string);
                break;
            }
        }
    }
    Some(Revocation {
        name: name.to_string(),
        date: date.to_string(),
        by,
    })
}

/// The roster of the `keys/` directory `keys_dir`, as the merge takes it.
#[derive(Debug, Clone, Default)]
pub struct FleetKeys {
    /// Active login keys with their machines.
    pub active: Vec<crate::authorized_keys::FleetKey>,
    /// Revoked keys.
    pub revoked: Vec<ssh_key::PublicKey>,
    /// The poke keys of the active machines other than this one.
    pub poke: Vec<crate::authorized_keys::FleetKey>,
    /// The forced command of the poke lines ([`poke_command`]); without it no poke line is
    /// written.
    pub poke_command: Option<String>,
}

/// The roster of the `keys/` directory `keys_dir`, as the merge on machine `me` takes it (its
/// own poke key is left out: a machine never pokes itself).
pub fn fleet_keys(keys_dir: &Path, me: Option<&str>) -> Result<FleetKeys> {
    let roster = SshRoster::load(keys_dir)?;
    let flat = |list: Vec<(String, Vec<ssh_key::PublicKey>)>| {
        list.into_iter()
            .flat_map(|(machine, keys)| {
                keys.into_iter()
                    .map(move |key| crate::authorized_keys::FleetKey {
                        machine: machine.clone(),
                        key,
                    })
            })
            .collect::<Vec<_>>()
    };
    let poke = roster
        .poke
        .into_iter()
        .filter(|(machine, _)| Some(machine.as_str()) != me)
        .collect();
    Ok(FleetKeys {
        active: flat(roster.active),
        revoked: roster.revoked,
        poke: flat(poke),
        poke_command: poke_command(),
    })
}

impl FleetKeys {
    /// The merge's view of these keys; `command` is this machine's fleetkey path for the poke
    /// lines (`None` leaves the poke lines out, and removes any fleetkey wrote before).
    /// The roster every authorized_keys merge takes (the cycle's and `authorized-keys`').
    pub fn roster(&self) -> crate::authorized_keys::Roster<'_> {
        crate::authorized_keys::Roster {
            active: &self.active,
            revoked: &self.revoked,
            poke: self
                .poke_command
                .as_deref()
                .map(|command| crate::authorized_keys::Poke {
                    keys: &self.poke,
                    command,
                }),
        }
    }
}

/// The absolute path of the running fleetkey binary, as a poke line's forced command runs it;
/// `None` (with a warning) when it cannot be written there, or when another user could replace
/// it (see [`poke_command_problem`]).
pub fn poke_command() -> Option<String> {
    match poke_command_checked() {
        Ok(text) => Some(text),
        Err(problem) => {
            crate::log::warn(&format!("peers cannot poke this machine: {problem}"));
            None
        }
    }
}

/// Why the running binary cannot be a poke line's forced command, if so (`doctor` shows it).
pub fn poke_command_problem() -> Option<String> {
    poke_command_checked().err()
}

fn poke_command_checked() -> std::result::Result<String, String> {
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| format!("cannot find the fleetkey binary ({e})"))?;
    let text = exe
        .to_str()
        .ok_or("the fleetkey binary's path is not UTF-8")?
        .to_string();
    if !crate::authorized_keys::poke_command_ok(&text) {
        return Err(
            "the fleetkey binary's path holds a backslash or a control character: install it under a plain path (e.g. ~/.local/bin)"
                .into(),
        );
    }
    if let Some(dir) = writable_by_others(&exe) {
        return Err(format!(
            "{} can be written by other users, who could replace fleetkey and run commands as you when a peer pokes: install fleetkey where only you (or root) can write, e.g. ~/.local/bin, or `chmod go-w {}`",
            dir.display(),
            dir.display()
        ));
    }
    Ok(text)
}

/// The first of `exe` and its directories (up to `/`) that a user other than its owner can
/// write, or that belongs to another user who is not root.
pub fn writable_by_others(exe: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::getuid().as_raw();
    let mut at = Some(exe);
    while let Some(p) = at {
        let meta = fs::metadata(p).ok()?;
        let sticky = meta.mode() & 0o1000 != 0 && meta.is_dir();
        let shared = meta.mode() & 0o022 != 0;
        if (shared && !sticky) || (meta.uid() != me && meta.uid() != 0) {
            return Some(p.to_path_buf());
        }
        // A sticky, world-writable directory (/tmp): others cannot replace what is in it, but
        // they can when its owner is not us or root (checked above).
        at = p.parent();
    }
    None
}

/// What the authorized_keys merge needs, read without touching age recipients (this runs on
/// every `chezmoi apply`, so it reads as little as it can).
#[derive(Debug, Clone, Default)]
pub struct SshRoster {
    /// Active machines and their SSH keys, by name.
    pub active: Vec<(String, Vec<ssh_key::PublicKey>)>,
    /// Active machines and their poke keys, by name.
    pub poke: Vec<(String, Vec<ssh_key::PublicKey>)>,
    /// Revoked SSH keys.
    pub revoked: Vec<ssh_key::PublicKey>,
}

impl SshRoster {
    /// Reads the SSH side of the roster from the `keys/` directory `keys_dir`.
    pub fn load(keys_dir: &Path) -> Result<SshRoster> {
        let mut active = Vec::new();
        let mut poke = Vec::new();
        for (name, files) in member_files(keys_dir)? {
            if let Some(ssh) = files.ssh {
                active.push((name.clone(), read_ssh_keys(&ssh)?));
            }
            // Only a member (one with an age recipient) may be poked from.
            if let (Some(p), Some(_)) = (files.poke, files.age) {
                poke.push((name, read_ssh_keys(&p)?));
            }
        }
        let revoked = load_revoked(&keys_dir.join("revoked"))?
            .into_iter()
            .filter_map(|r| match r.key {
                RevokedKey::Ssh(k) => Some(k),
                RevokedKey::Age(_) => None,
            })
            .collect();
        Ok(SshRoster {
            active,
            poke,
            revoked,
        })
    }
}

/// The text of the `secrets.recipients` file for `lines`.
pub fn recipients_file_text(lines: &[String]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[derive(Default)]
struct MemberFiles {
    age: Option<PathBuf>,
    ssh: Option<PathBuf>,
    sign: Option<PathBuf>,
    poke: Option<PathBuf>,
}

fn member_files(dir: &Path) -> Result<BTreeMap<String, MemberFiles>> {
    let mut members: BTreeMap<String, MemberFiles> = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(members),
        Err(e) => return Err(Error::io("cannot list", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io("cannot list", dir))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let (name, kind) = if let Some(n) = file_name.strip_suffix(".age.pub") {
            (n, 0)
        } else if let Some(n) = file_name.strip_suffix(".ssh.pub") {
            (n, 1)
        } else if let Some(n) = file_name.strip_suffix(".sign.pub") {
            (n, 2)
        } else if let Some(n) = file_name.strip_suffix(".poke.pub") {
            (n, 3)
        } else {
            continue;
        };
        let path = entry.path();
        check_name(name).map_err(|_| ErrorKind::BadRoster {
            path: path.clone(),
            line: 0,
            problem: "the file name is not NAME.age.pub, NAME.ssh.pub, NAME.sign.pub or \
                      NAME.poke.pub with a valid machine name"
                .into(),
        })?;
        let slot = members.entry(name.to_string()).or_default();
        match kind {
            0 => slot.age = Some(path),
            1 => slot.ssh = Some(path),
            2 => slot.sign = Some(path),
            _ => slot.poke = Some(path),
        }
    }
    Ok(members)
}

fn load_members(dir: &Path) -> Result<Vec<Member>> {
    let mut out = Vec::new();
    for (name, files) in member_files(dir)? {
        let Some(age_path) = files.age else {
            return Err(ErrorKind::BadRoster {
                path: dir.join(format!("{name}.age.pub")),
                line: 0,
                problem: format!("{name} has an SSH key but no age recipient file"),
            }
            .into());
        };
        let recipient = read_recipient(&age_path)?;
        let ssh_keys = match files.ssh {
            Some(p) => read_ssh_keys(&p)?,
            None => Vec::new(),
        };
        let signing = match files.sign {
            Some(p) => read_ssh_keys(&p)?,
            None => Vec::new(),
        };
        let poke = match files.poke {
            Some(p) => read_ssh_keys(&p)?,
            None => Vec::new(),
        };
        out.push(Member {
            name,
            recipient,
            ssh_keys,
            signing,
            poke,
        });
    }
    Ok(out)
}

fn read_recipient(path: &Path) -> Result<age::x25519::Recipient> {
    let text = files::read_regular_text(path, limits::KEY_FILE)?;
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if found.is_some() {
            return Err(ErrorKind::BadRoster {
                path: path.to_path_buf(),
                line: i + 1,
                problem: "more than one recipient; a machine has exactly one".into(),
            }
            .into());
        }
        found = Some(parse_recipient(line, path, i + 1)?);
    }
    found.ok_or_else(|| {
        Error::from(ErrorKind::BadRoster {
            path: path.to_path_buf(),
            line: 0,
            problem: "no recipient in the file".into(),
        })
    })
}

/// Reads an SSH public key file of `keys/`: one key per line, blank and `#` lines skipped; a
/// regular file (not a symlink) of at most [`limits::KEY_FILE`].
pub fn read_ssh_keys(path: &Path) -> Result<Vec<ssh_key::PublicKey>> {
    let text = files::read_regular_text(path, limits::KEY_FILE)?;
    parse_ssh_keys(&text, path)
}

/// Parses SSH public key lines as sshd reads them; `path` names the file in errors.
pub fn parse_ssh_keys(text: &str, path: &Path) -> Result<Vec<ssh_key::PublicKey>> {
    Ok(crate::authorized_keys::parse_public_keys(text, path)?)
}

/// The key lines of a key file's text: neither blank nor `#` comments, with their line numbers.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Parses a key file that must hold exactly one SSH public key line; `path` names it in errors.
pub fn parse_one_key(text: &str, path: &Path) -> Result<ssh_key::PublicKey> {
    let mut lines = key_lines(text);
    let Some((no, line)) = lines.next() else {
        return Err(ErrorKind::BadRoster {
            path: path.to_path_buf(),
            line: 0,
            problem: "no key in the file".into(),
        }
        .into());
    };
    if let Some((extra, _)) = lines.next() {
        return Err(ErrorKind::BadRoster {
            path: path.to_path_buf(),
            line: extra,
            problem: "a second key; a key file holds exactly one".into(),
        }
        .into());
    }
    parse_ssh_line(line, path, no)
}

/// Parses a recipient file that must hold exactly one age recipient; `path` names it in errors.
pub fn parse_one_recipient(text: &str, path: &Path) -> Result<age::x25519::Recipient> {
    let mut lines = key_lines(text);
    let Some((no, line)) = lines.next() else {
        return Err(ErrorKind::BadRoster {
            path: path.to_path_buf(),
            line: 0,
            problem: "no recipient in the file".into(),
        }
        .into());
    };
    if let Some((extra, _)) = lines.next() {
        return Err(ErrorKind::BadRoster {
            path: path.to_path_buf(),
            line: extra,
            problem: "more than one recipient; a machine has exactly one".into(),
        }
        .into());
    }
    parse_recipient(line, path, no)
}

fn parse_ssh_line(line: &str, path: &Path, line_no: usize) -> Result<ssh_key::PublicKey> {
    match crate::authorized_keys::parse_public_keys(line, path) {
        Ok(mut keys) if keys.len() == 1 => Ok(keys.remove(0)),
        Ok(_) => Err(ErrorKind::BadRoster {
            path: path.to_path_buf(),
            line: line_no,
            problem: "not an OpenSSH public key (TYPE BASE64 [COMMENT])".into(),
        }
        .into()),
        Err(crate::authorized_keys::Error::InvalidKeyLine { problem, .. }) => {
            Err(ErrorKind::BadRoster {
                path: path.to_path_buf(),
                line: line_no,
                problem: format!("not an OpenSSH public key: {problem}"),
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

fn load_revoked(path: &Path) -> Result<Vec<Revoked>> {
    let text = match files::read_regular_text(path, limits::REVOKED_FILE) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    parse_revoked(&text, path)
}

/// Parses the text of `keys/revoked`.
pub fn parse_revoked(text: &str, path: &Path) -> Result<Vec<Revoked>> {
    let mut out: Vec<Revoked> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(note) = line.strip_prefix('#') {
            // A note line annotates the key just above it, when that key has none yet.
            if let Some(last) = out.last_mut()
                && last.note.is_empty()
            {
                last.note = note.trim().to_string();
            }
            continue;
        }
        if line.starts_with("age1") {
            let (key, note) = match line.split_once('#') {
                Some((k, n)) => (k.trim(), n.trim()),
                None => (line, ""),
            };
            parse_recipient(key, path, i + 1)?;
            out.push(Revoked {
                key: RevokedKey::Age(key.to_string()),
                note: note.to_string(),
            });
        } else {
            out.push(Revoked {
                key: RevokedKey::Ssh(parse_ssh_line(line, path, i + 1)?),
                note: String::new(),
            });
        }
    }
    Ok(out)
}

/// The lines to append to `keys/revoked` for `member`, with the note `NAME DATE REASON`.
pub fn revocation_lines(member: &Member, date: &str, reason: &str) -> String {
    let note = format!("# {} {date} {reason}", member.name);
    let mut text = format!("{}\n{note}\n", member.recipient);
    for key in member
        .ssh_keys
        .iter()
        .chain(&member.signing)
        .chain(&member.poke)
    {
        text.push_str(&format!("{}\n{note}\n", key_line(key)));
    }
    text
}

/// `key` as its OpenSSH public key line (`TYPE BASE64 [COMMENT]`). A key parsed from text or
/// made by ssh-key always encodes.
pub fn key_line(key: &ssh_key::PublicKey) -> String {
    key.to_openssh().expect("a parsed key encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names_follow_the_rule() {
        for ok in ["a", "mac-mini", "0", "x1-carbon-2", &"a".repeat(63)] {
            check_name(ok).unwrap();
        }
        for bad in ["", "-a", "A", "a_b", "a.b", "a b", &"a".repeat(64), "../x"] {
            assert!(check_name(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn revoked_entries_take_the_note_below_them() {
        let id = crate::identity::Identity::generate();
        let text = format!(
            "# header comment\n{}\n# old-mac 2026-01-02 compromised\n\
             ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl old\n\
             # old-mac 2026-01-02 compromised\n",
            id.recipient()
        );
        let revoked = parse_revoked(&text, Path::new("keys/revoked")).unwrap();
        assert_eq!(revoked.len(), 2);
        assert_eq!(revoked[0].machine(), Some("old-mac"));
        assert!(matches!(revoked[1].key, RevokedKey::Ssh(_)));
        assert_eq!(revoked[1].note, "old-mac 2026-01-02 compromised");
    }

    #[test]
    fn key_files_are_capped_and_never_read_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        let id = crate::identity::Identity::generate();
        std::fs::write(keys.join("a.age.pub"), format!("{}\n", id.recipient())).unwrap();
        Roster::load(dir.path()).unwrap();

        // A recipient file padded past the limit.
        let padded = format!(
            "{}{}\n",
            "#\n".repeat(limits::KEY_FILE.bytes as usize / 2),
            id.recipient()
        );
        std::fs::write(keys.join("a.age.pub"), padded).unwrap();
        let err = Roster::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("larger than the limit for a keys/ file"),
            "{err}"
        );

        // keys/NAME.ssh.pub as a symlink to a private key.
        std::fs::write(keys.join("a.age.pub"), format!("{}\n", id.recipient())).unwrap();
        let secret = dir.path().join("id_ed25519");
        std::fs::write(&secret, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n").unwrap();
        std::os::unix::fs::symlink(&secret, keys.join("a.ssh.pub")).unwrap();
        let err = SshRoster::load(&keys).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!err.contains("b3Blbg"), "{err}");
        std::fs::remove_file(keys.join("a.ssh.pub")).unwrap();

        // keys/revoked has its own, larger limit.
        let revoked = "# note\n".repeat(limits::KEY_FILE.bytes as usize / 4);
        std::fs::write(keys.join("revoked"), &revoked).unwrap();
        Roster::load(dir.path()).unwrap();
    }

    #[test]
    fn a_bad_key_line_names_the_file_and_line() {
        let err = parse_revoked("# x\nssh-ed25519 notbase64\n", Path::new("keys/revoked"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("keys/revoked line 2:"), "{err}");
    }
}

//! The roster of one commit's tree, read straight from git objects and checked whole: what
//! verification needs to know who a commit's tree admits, and whether that roster is valid.
//!
//! A roster is valid when every entry of `keys/` is a regular file named
//! `NAME.{age,ssh,sign,poke}.pub`, `NAME.proof` or `revoked` (or the `pending/` directory) with
//! a valid machine name; each key file holds exactly one key (`NAME.sign.pub` two during a
//! `rotate`'s hand-over); every machine listed has its age, SSH and signing keys; no key is
//! both active and revoked; and no two machines' names differ only in case (the name rule
//! allows lower case only, so a name in another case is invalid on its own).
//!
//! Verification ([`crate::trust`]) refuses a commit whose tree holds an invalid roster, so
//! loading the roster of an authentic tree cannot fail: one bad file under `keys/` can never
//! stop `revoke` on every machine.
//!
//! Owns: that rule, and the parsed roster of a `keys/` tree. Must never: read a file outside
//! `keys/`, quote a key file's content in a problem, or call a roster valid that
//! [`crate::roster::Roster::load`] would refuse.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::enrollment::Statement;
use crate::limits;
use crate::roster::{self, check_name};

/// One machine's keys in a tree.
#[derive(Debug, Clone, Default)]
pub struct TreeMember {
    /// Its age recipient, as text.
    pub age: Option<String>,
    /// Its SSH login key.
    pub ssh: Option<ssh_key::PublicKey>,
    /// Its signing keys (two during a rotate's hand-over).
    pub sign: Vec<ssh_key::PublicKey>,
    /// Its poke key.
    pub poke: Option<ssh_key::PublicKey>,
    /// Its enrollment proof's text.
    pub proof: Option<String>,
}

/// The roster of one `keys/` tree.
#[derive(Debug, Clone, Default)]
pub struct TreeRoster {
    /// The machines listed, by name.
    pub members: BTreeMap<String, TreeMember>,
    /// SHA256 fingerprints of the SSH-type keys in `keys/revoked`.
    pub revoked: BTreeSet<String>,
    /// The age recipients in `keys/revoked`.
    pub revoked_age: BTreeSet<String>,
}

impl TreeRoster {
    /// The SHA256 fingerprints of every active SSH-type key (login, signing, poke), with the
    /// machine holding it.
    pub fn active_fingerprints(&self) -> BTreeMap<String, String> {
        self.holders()
            .into_iter()
            .filter_map(|(fp, names)| names.into_iter().next().map(|n| (fp, n)))
            .collect()
    }

    /// Every active SSH-type key's fingerprint with the machines that list it.
    fn holders(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, m) in &self.members {
            for k in m.ssh.iter().chain(&m.sign).chain(&m.poke) {
                out.entry(crate::signing::fingerprint(k))
                    .or_default()
                    .insert(name.clone());
            }
        }
        out
    }

    /// The statement `name`'s keys make in the fleet founded by `fleet` (none without all
    /// four keys).
    pub fn statement(&self, fleet: &str, name: &str) -> Option<Statement> {
        let m = self.members.get(name)?;
        Some(Statement::new(
            fleet,
            name,
            m.age.as_deref()?,
            m.ssh.as_ref()?,
            m.sign.first()?,
            m.poke.as_ref()?,
        ))
    }
}

/// Reads and checks the roster of the `keys/` tree `tree` (`None`: the commit has no `keys/`).
/// `Err` says what makes it invalid, naming the file (never its content).
pub fn read_tree(repo: &git2::Repository, tree: Option<git2::Oid>) -> Result<TreeRoster, String> {
    let mut roster = TreeRoster::default();
    let Some(tree) = tree else {
        return Ok(roster);
    };
    let tree = repo
        .find_tree(tree)
        .map_err(|_| "keys/ is not a directory".to_string())?;
    for entry in tree.iter() {
        let Ok(file) = entry.name() else {
            return Err("keys/ holds a file whose name is not UTF-8".into());
        };
        let path = format!("keys/{file}");
        if file == "pending" && entry.kind() == Some(git2::ObjectType::Tree) {
            // Requests belong on their side branches; one left here must still load.
            read_tree(repo, Some(entry.id())).map_err(|e| e.replace("keys/", "keys/pending/"))?;
            continue;
        }
        if entry.kind() != Some(git2::ObjectType::Blob) || entry.filemode() != 0o100644 {
            return Err(format!("{path} is not a regular file"));
        }
        let blob = repo
            .find_blob(entry.id())
            .map_err(|_| format!("{path} cannot be read"))?;
        let limit = if file == "revoked" {
            limits::REVOKED_FILE.bytes
        } else {
            limits::KEY_FILE.bytes
        };
        if blob.content().len() as u64 > limit {
            return Err(format!("{path} is larger than the limit for a keys/ file"));
        }
        let text =
            std::str::from_utf8(blob.content()).map_err(|_| format!("{path} is not UTF-8 text"))?;
        if file == "revoked" {
            for r in roster::parse_revoked(text, Path::new(&path)).map_err(|e| e.to_string())? {
                match r.key {
                    roster::RevokedKey::Age(a) => {
                        roster.revoked_age.insert(a);
                    }
                    roster::RevokedKey::Ssh(k) => {
                        roster.revoked.insert(crate::signing::fingerprint(&k));
                    }
                }
            }
            continue;
        }
        let kinds = [".age.pub", ".ssh.pub", ".sign.pub", ".poke.pub", ".proof"];
        let Some((name, kind)) = kinds
            .iter()
            .find_map(|k| file.strip_suffix(k).map(|n| (n, *k)))
        else {
            return Err(format!(
                "{path} is not NAME.age.pub, NAME.ssh.pub, NAME.sign.pub, NAME.poke.pub, NAME.proof or revoked"
            ));
        };
        if check_name(name).is_err() {
            return Err(format!(
                "{path}: {name:?} is not a machine name (lower-case letters, digits and '-')"
            ));
        }
        let slot = roster.members.entry(name.to_string()).or_default();
        let p = Path::new(&path);
        let one = |text: &str| roster::parse_one_key(text, p).map_err(|e| e.to_string());
        match kind {
            ".age.pub" => {
                let r = roster::parse_one_recipient(text, p).map_err(|e| e.to_string())?;
                slot.age = Some(r.to_string());
            }
            ".ssh.pub" => slot.ssh = Some(one(text)?),
            ".poke.pub" => slot.poke = Some(one(text)?),
            ".sign.pub" => {
                let keys = roster::parse_ssh_keys(text, p).map_err(|e| e.to_string())?;
                if keys.is_empty() || keys.len() > 2 {
                    return Err(format!(
                        "{path} holds {} keys; it holds one (two only while a rotate hands over)",
                        keys.len()
                    ));
                }
                slot.sign = keys;
            }
            _ => slot.proof = Some(text.to_string()),
        }
    }
    for (name, m) in &roster.members {
        if m.age.is_none() || m.ssh.is_none() || m.sign.is_empty() {
            return Err(format!(
                "{name} lacks its {}: a machine has its age, SSH and signing keys",
                [
                    (m.age.is_none(), "keys/NAME.age.pub"),
                    (m.ssh.is_none(), "keys/NAME.ssh.pub"),
                    (m.sign.is_empty(), "keys/NAME.sign.pub"),
                ]
                .iter()
                .filter(|(missing, _)| *missing)
                .map(|(_, f)| f.replace("NAME", name))
                .collect::<Vec<_>>()
                .join(" and ")
            ));
        }
        if m.age
            .as_ref()
            .is_some_and(|a| roster.revoked_age.contains(a))
        {
            return Err(format!(
                "keys/{name}.age.pub holds a recipient that keys/revoked lists"
            ));
        }
    }
    for (fp, names) in roster.holders() {
        if names.len() > 1 {
            let names: Vec<String> = names.into_iter().collect();
            return Err(format!(
                "a key ({fp}) is held by both {}: a key belongs to one machine",
                names.join(" and ")
            ));
        }
    }
    let mut ages: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, m) in &roster.members {
        if let Some(age) = &m.age
            && let Some(other) = ages.insert(age.as_str(), name.as_str())
        {
            return Err(format!(
                "an age recipient is held by both {other} and {name}: a key belongs to one machine"
            ));
        }
    }
    for (fp, name) in roster.active_fingerprints() {
        if roster.revoked.contains(&fp) {
            return Err(format!(
                "a key of {name} ({fp}) is both active and in keys/revoked"
            ));
        }
    }
    Ok(roster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SigningKey;

    fn keys_tree(repo: &git2::Repository, files: &[(&str, &str)]) -> git2::Oid {
        let mut b = repo.treebuilder(None).unwrap();
        for (name, text) in files {
            let blob = repo.blob(text.as_bytes()).unwrap();
            b.insert(name, blob, 0o100644).unwrap();
        }
        b.write().unwrap()
    }

    #[test]
    fn invalid_rosters_are_named_and_valid_ones_read() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let age = crate::identity::Identity::generate()
            .recipient()
            .to_string();
        let age2 = crate::identity::Identity::generate()
            .recipient()
            .to_string();
        let ssh = SigningKey::generate("s").unwrap().public_line();
        let ssh2 = SigningKey::generate("t").unwrap().public_line();
        let sign = SigningKey::generate("g").unwrap().public_line();
        let good = vec![
            ("a.age.pub", format!("{age}\n")),
            ("a.ssh.pub", format!("{ssh}\n")),
            ("a.sign.pub", format!("{sign}\n")),
            ("revoked", "# header\n".to_string()),
        ];
        let read = |files: &[(&str, String)]| {
            let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
            read_tree(&repo, Some(keys_tree(&repo, &files)))
        };
        let r = read(&good).unwrap();
        assert_eq!(r.members.len(), 1);

        let with = |extra: Vec<(&'static str, String)>| {
            let mut f = good.clone();
            for (n, t) in extra {
                f.retain(|(x, _)| *x != n);
                f.push((n, t));
            }
            read(&f).unwrap_err()
        };
        let e = with(vec![("a.ssh.pub", format!("{ssh}\n{ssh2}\n"))]);
        assert!(
            e.contains("keys/a.ssh.pub line 2") && e.contains("exactly one"),
            "{e}"
        );
        let e = with(vec![("a.age.pub", format!("{age}\n{age2}\n"))]);
        assert!(e.contains("more than one recipient"), "{e}");
        let e = with(vec![("B.ssh.pub", format!("{ssh2}\n"))]);
        assert!(
            e.contains("keys/B.ssh.pub") && e.contains("not a machine name"),
            "{e}"
        );
        let e = with(vec![("b.ssh.pub", format!("{ssh2}\n"))]);
        assert!(
            e.contains("b lacks its keys/b.age.pub and keys/b.sign.pub"),
            "{e}"
        );
        let e = with(vec![("revoked", format!("{ssh}\n# a 2026-01-01 lost\n"))]);
        assert!(e.contains("both active and in keys/revoked"), "{e}");
        let e = with(vec![("revoked", format!("{age}\n# a 2026-01-01 lost\n"))]);
        assert!(
            e.contains("keys/a.age.pub holds a recipient that keys/revoked lists"),
            "{e}"
        );
        let e = with(vec![("notes.txt", "hi\n".into())]);
        assert!(e.contains("keys/notes.txt is not"), "{e}");
        // The content of a bad file is never quoted.
        let e = with(vec![("a.ssh.pub", "ssh-ed25519 SECRETSTUFF\n".into())]);
        assert!(!e.contains("SECRETSTUFF"), "{e}");
    }
}

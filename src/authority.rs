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

/// What a machine may change (see the README, "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Receives everything; changes only its own key files (by `rotate`), its own
    /// `hosts/NAME/` and its host branch.
    Receiver,
    /// Dotfiles, settings, secrets, its own `hosts/NAME/`, its own key files by `rotate`.
    Member,
    /// Approve, revoke, change roles, `forge` and the policy, and all a member may do.
    Admin,
}

impl Role {
    /// The word in `keys/NAME.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Receiver => "receiver",
        }
    }

    /// Reads the word of `keys/NAME.role` (one line, surrounding blanks ignored).
    pub fn parse(text: &str) -> Option<Role> {
        match text.trim() {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            "receiver" => Some(Role::Receiver),
            _ => None,
        }
    }

    /// What the role may do, in one line (the approve prompt and `role --help` show it).
    pub fn describe(self) -> &'static str {
        match self {
            Role::Admin => "approve, revoke, change roles and the forge, and all a member may do",
            Role::Member => {
                "dotfiles, settings, secrets and its own hosts/NAME/; no roster changes"
            }
            Role::Receiver => {
                "receives everything; changes only its own keys (rotate) and hosts/NAME/ (servers)"
            }
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::parse(s).ok_or_else(|| format!("{s:?} is not a role: admin, member or receiver"))
    }
}

/// `name`'s role in the clone at `root` (`keys/NAME.role`; none, or unreadable: admin, as for
/// a machine from before roles, whose authentic roster verification already checked).
pub fn role_in(root: &Path, name: &str) -> Role {
    let path = root.join(roster::layout::role(roster::layout::KEYS, name));
    crate::files::read_text(&path, 64)
        .ok()
        .and_then(|t| Role::parse(&t))
        .unwrap_or(Role::Admin)
}

/// Refuses a command that only an admin may run, when this machine (`me`, in the clone at
/// `root`) is not one: its commit would be refused by every machine.
pub fn require_admin(root: &Path, me: &str, what: &str) -> crate::error::Result<()> {
    let role = role_in(root, me);
    if role == Role::Admin {
        return Ok(());
    }
    Err(crate::error::ErrorKind::Refused(format!(
        "only an admin may {what}; {me} is a {role}"
    ))
    .hint("run it on an admin machine (`fleetkey status` lists each machine's role), or ask an admin to run `fleetkey role NAME admin`"))
}

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
    /// Its role file (`keys/NAME.role`); none: a machine from before roles, an admin.
    pub role: Option<Role>,
}

impl TreeMember {
    /// Its role: the role file's, or admin for a machine from before roles.
    pub fn role(&self) -> Role {
        self.role.unwrap_or(Role::Admin)
    }
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
        read_entry(repo, &entry, &mut roster)?;
    }
    check_complete(&roster)?;
    check_one_holder(&roster)?;
    Ok(roster)
}

/// The file names a `keys/` file may end with, after its machine's name.
const KEY_FILE_KINDS: [&str; 6] = [
    ".age.pub",
    ".ssh.pub",
    ".sign.pub",
    ".poke.pub",
    ".proof",
    ".role",
];

/// One entry of `keys/`: a regular UTF-8 file within its size limit, which is `revoked`, a
/// machine's key file, or a `pending/` folder left on the branch (which must still load).
fn read_entry(
    repo: &git2::Repository,
    entry: &git2::TreeEntry<'_>,
    roster: &mut TreeRoster,
) -> Result<(), String> {
    let Ok(file) = entry.name() else {
        return Err("keys/ holds a file whose name is not UTF-8".into());
    };
    let path = format!("keys/{file}");
    if file == "pending" && entry.kind() == Some(git2::ObjectType::Tree) {
        // Requests belong on their side branches; one left here must still load.
        read_tree(repo, Some(entry.id())).map_err(|e| e.replace("keys/", "keys/pending/"))?;
        return Ok(());
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
        return add_revoked(roster, text, &path);
    }
    let Some((name, kind)) = KEY_FILE_KINDS
        .iter()
        .find_map(|k| file.strip_suffix(k).map(|n| (n, *k)))
    else {
        return Err(format!(
            "{path} is not NAME.age.pub, NAME.ssh.pub, NAME.sign.pub, NAME.poke.pub, NAME.proof, NAME.role or revoked"
        ));
    };
    if check_name(name).is_err() {
        return Err(format!(
            "{path}: {name:?} is not a machine name (lower-case letters, digits and '-')"
        ));
    }
    let slot = roster.members.entry(name.to_string()).or_default();
    add_key_file(slot, kind, text, &path)
}

/// The keys `keys/revoked` lists, into the roster's revoked sets.
fn add_revoked(roster: &mut TreeRoster, text: &str, path: &str) -> Result<(), String> {
    for r in roster::parse_revoked(text, Path::new(path)).map_err(|e| e.to_string())? {
        match r.key {
            roster::RevokedKey::Age(a) => {
                roster.revoked_age.insert(a);
            }
            roster::RevokedKey::Ssh(k) => {
                roster.revoked.insert(crate::signing::fingerprint(&k));
            }
        }
    }
    Ok(())
}

/// One machine's key file of `kind` (one of [`KEY_FILE_KINDS`]): exactly one key (a signing
/// key file holds two only while a rotate hands over), a known role, or the proof's text.
fn add_key_file(slot: &mut TreeMember, kind: &str, text: &str, path: &str) -> Result<(), String> {
    let p = Path::new(path);
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
        ".role" => {
            slot.role = Some(
                Role::parse(text)
                    .ok_or_else(|| format!("{path} is not one of admin, member or receiver"))?,
            );
        }
        _ => slot.proof = Some(text.to_string()),
    }
    Ok(())
}

/// Every machine has its age, SSH and signing keys, and its age recipient is not revoked.
fn check_complete(roster: &TreeRoster) -> Result<(), String> {
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
    Ok(())
}

/// A key belongs to one machine, and an active key is never also revoked.
fn check_one_holder(roster: &TreeRoster) -> Result<(), String> {
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
    Ok(())
}

/// Whether the machine `signer`, with `role` in the parent's roster, may make the change from
/// `parent` to `tree` at `path` (a path the commit changes). `Err` says why not.
pub fn may_change(
    repo: &git2::Repository,
    signer: &str,
    role: Role,
    path: &str,
    parent: &git2::Tree<'_>,
    tree: &git2::Tree<'_>,
) -> Result<(), String> {
    let read = |t: &git2::Tree<'_>| -> Option<Vec<u8>> {
        let e = t.get_path(Path::new(path)).ok()?;
        repo.find_blob(e.id()).ok().map(|b| b.content().to_vec())
    };
    let outside = |what: &str| Err(format!("{signer} ({role}) may not change {path}: {what}"));
    if role == Role::Admin {
        return Ok(());
    }
    if let Some(file) = path.strip_prefix("keys/") {
        let own = [".age.pub", ".ssh.pub", ".sign.pub", ".poke.pub"]
            .iter()
            .any(|k| file.strip_suffix(k) == Some(signer));
        if own {
            // Its own keys, signed with its current key (the signer is checked against the
            // parent's roster before this): a rotate.
            return Ok(());
        }
        if file == "revoked" {
            // A rotate retires its old keys: lines are only ever added.
            let old = read(parent).unwrap_or_default();
            let new = read(tree).unwrap_or_default();
            let old = String::from_utf8_lossy(&old);
            let new = String::from_utf8_lossy(&new);
            let kept: std::collections::BTreeSet<&str> = new.lines().map(str::trim).collect();
            if old
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .all(|l| kept.contains(l))
            {
                return Ok(());
            }
            return outside("only an admin removes a line from keys/revoked");
        }
        return outside("only an admin changes another machine's keys, roles or proofs");
    }
    if let Some(rest) = path.strip_prefix("hosts/") {
        return if rest.split('/').next() == Some(signer) {
            Ok(())
        } else {
            outside("a machine changes only its own hosts/NAME/")
        };
    }
    if path == crate::config::FleetConfig::FILE {
        let table = |t: &git2::Tree<'_>| -> Option<toml::Table> {
            read(t)
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|t| t.parse().ok())
        };
        let (old, new) = (
            table(parent).unwrap_or_default(),
            table(tree).unwrap_or_default(),
        );
        if role == Role::Member {
            if old.get("forge") != new.get("forge") {
                return outside("only an admin moves the fleet's forge");
            }
            if login_from(&old) != login_from(&new) {
                return outside(
                    "only an admin changes whose login keys the fleet admits ([authorized_keys] from)",
                );
            }
            if old.get("trust") != new.get("trust") {
                return outside("only an admin changes whether the forge heals itself ([trust])");
            }
            return Ok(());
        }
        // A receiver may set only its own [hosts.NAME] table.
        let without_own = |mut t: toml::Table| {
            if let Some(toml::Value::Table(hosts)) = t.get_mut("hosts") {
                hosts.remove(signer);
                // Its own table was the only one: the first address a receiver sets (or the
                // last it clears) adds or drops `[hosts]` itself.
                if hosts.is_empty() {
                    t.remove("hosts");
                }
            }
            t
        };
        return if without_own(old) == without_own(new) {
            Ok(())
        } else {
            outside("a receiver changes only its own [hosts.NAME] settings")
        };
    }
    match role {
        Role::Receiver => outside("a receiver changes nothing the fleet shares"),
        _ => Ok(()),
    }
}

/// `[authorized_keys] from` of a fleet.toml's table, the default when it is not set: a member's
/// commit that writes the default out explicitly changes nothing.
fn login_from(table: &toml::Table) -> toml::Value {
    match table.get("authorized_keys").and_then(|t| t.get("from")) {
        Some(v) => v.clone(),
        None => toml::Value::Array(
            crate::access::default_from()
                .into_iter()
                .map(toml::Value::String)
                .collect(),
        ),
    }
}

/// The paths `commit` changes: for one parent, every path that differs from it; for a merge,
/// every path whose result matches no parent.
pub fn changed_paths(
    repo: &git2::Repository,
    commit: &git2::Commit<'_>,
) -> Result<BTreeSet<String>, String> {
    let tree = commit
        .tree()
        .map_err(|_| "its tree cannot be read".to_string())?;
    let mut result: Option<BTreeSet<String>> = None;
    for parent in commit.parents() {
        let ptree = parent
            .tree()
            .map_err(|_| "a parent's tree cannot be read".to_string())?;
        let diff = repo
            .diff_tree_to_tree(Some(&ptree), Some(&tree), None)
            .map_err(|_| "its changes cannot be read".to_string())?;
        let mut paths = BTreeSet::new();
        for d in diff.deltas() {
            for f in [d.old_file(), d.new_file()] {
                if let Some(p) = f.path().and_then(Path::to_str) {
                    paths.insert(p.to_string());
                }
            }
        }
        result = Some(match result {
            None => paths,
            Some(prev) => prev.intersection(&paths).cloned().collect(),
        });
    }
    Ok(result.unwrap_or_default())
}

/// One act a machine did as admin, found in the history, with the command that undoes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdminAct {
    /// The commit (hex).
    pub commit: String,
    /// Its date (RFC 3339).
    pub date: String,
    /// What it did, in words.
    pub act: String,
    /// The command that undoes it.
    pub undo: String,
}

/// Every admission, role change and forge change in the history reachable from `head` that
/// `name` signed (with a key listed as `keys/NAME.sign.pub` in the commit's parent), oldest
/// first. Merges are integration, not acts: they are skipped.
pub fn admin_acts(repo: &git2::Repository, head: git2::Oid, name: &str) -> Vec<AdminAct> {
    let mut out = Vec::new();
    let Ok(mut walk) = repo.revwalk() else {
        return out;
    };
    let _ = walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE);
    if walk.push(head).is_err() {
        return out;
    }
    let sign_path = roster::layout::sign_pub(roster::layout::KEYS, name);
    let text_at = |tree: &git2::Tree<'_>, path: &str| -> Option<String> {
        let e = tree.get_path(Path::new(path)).ok()?;
        let b = repo.find_blob(e.id()).ok()?;
        Some(String::from_utf8_lossy(b.content()).into_owned())
    };
    for oid in walk.flatten() {
        let Ok(commit) = repo.find_commit(oid) else {
            continue;
        };
        if commit.parent_count() != 1 {
            continue;
        }
        let Ok(key) = crate::signing::verified_signer(repo, oid) else {
            continue;
        };
        let (Ok(parent), Ok(tree)) = (commit.parent(0).and_then(|p| p.tree()), commit.tree())
        else {
            continue;
        };
        let fp = crate::signing::fingerprint(&key);
        let signed_by_name = text_at(&parent, &sign_path).is_some_and(|t| {
            roster::parse_ssh_keys(&t, Path::new(&sign_path))
                .unwrap_or_default()
                .iter()
                .any(|k| crate::signing::fingerprint(k) == fp)
        });
        if !signed_by_name {
            continue;
        }
        let date = crate::clock::rfc3339(commit.time().seconds());
        let mut act = |what: String, undo: String| {
            out.push(AdminAct {
                commit: oid.to_string(),
                date: date.clone(),
                act: what,
                undo,
            })
        };
        let (Ok(before), Ok(after)) = (
            read_tree(repo, keys_of(&parent)),
            read_tree(repo, keys_of(&tree)),
        ) else {
            continue;
        };
        for (other, m) in &after.members {
            match before.members.get(other) {
                None => act(
                    format!("admitted {other} as {}", m.role()),
                    format!("fleetkey revoke {other}"),
                ),
                Some(b) if b.role() != m.role() => act(
                    format!("changed {other}'s role from {} to {}", b.role(), m.role()),
                    format!("fleetkey role {other} {}", b.role()),
                ),
                Some(_) => {}
            }
        }
        let forge_of = |t: &git2::Tree<'_>| {
            text_at(t, crate::config::FleetConfig::FILE)
                .and_then(|t| t.parse::<toml::Table>().ok())
                .and_then(|t| t.get("forge").and_then(|f| f.as_str().map(str::to_string)))
        };
        let (old, new) = (forge_of(&parent), forge_of(&tree));
        if old != new {
            act(
                format!(
                    "moved the forge from {} to {}",
                    old.as_deref().unwrap_or("(none)"),
                    new.as_deref().unwrap_or("(none)")
                ),
                match &old {
                    Some(url) => format!("fleetkey remote set {url}"),
                    None => "fleetkey remote set URL (the forge you trust)".into(),
                },
            );
        }
    }
    out
}

fn keys_of(tree: &git2::Tree<'_>) -> Option<git2::Oid> {
    tree.get_name("keys").map(|e| e.id())
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

//! Gathering: fetch the host branches when they moved, keep those signed by their own
//! machine's active key, and materialise their files into `collected/host=NAME/`.
//!
//! Must never: use a branch not signed by the active signing key of the machine it is named
//! for, write outside `collected/host=NAME/` (names are checked by
//! [`crate::confine::collected_rel`], the tree by [`crate::confine::check_tree_within`], and
//! every write goes through a [`HomeDir`] rooted at the machine's directory, which follows no
//! symlink), or read a blob over its limit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::confine::{self, DirMode, HomeDir};
use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::forge::{self, Forge};
use crate::limits;
use crate::repo::FleetRepo;
use crate::roster::Roster;
use crate::signing;

use super::status::HostStatus;
use super::{CollectState, collected_dir};

/// How many ignored host branches are listed (the rest are counted).
const MAX_REPORTED: usize = 20;

/// What was materialised from one machine's branch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Gathered {
    /// The branch's commit.
    pub commit: String,
    /// The fingerprint of the key that signed it.
    pub signer: String,
    /// Its status.json.
    pub status: HostStatus,
    /// Each file materialised: path below `host=NAME/` → the blob id on the branch.
    pub files: BTreeMap<String, String>,
}

/// The local host refs (NAME → commit) under [`forge::HOSTS_REFS`].
fn local_hosts(raw: &git2::Repository) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(refs) = raw.references_glob(&format!("{}*", forge::HOSTS_REFS)) {
        for r in refs.flatten() {
            if let (Ok(name), Some(oid)) = (r.name(), r.target())
                && let Some(host) = name.strip_prefix(forge::HOSTS_REFS)
            {
                out.insert(host.to_string(), oid.to_string());
            }
        }
    }
    out
}

/// Fetches the host branches when `forge_hosts` differs from the local refs, then brings
/// `collected/` in step with the active members' verified branches.
pub fn gather(
    machine: &Machine,
    forge: &Forge,
    repo: &FleetRepo,
    forge_hosts: &BTreeMap<String, String>,
    state: &mut CollectState,
) -> Result<()> {
    let raw = repo.raw();
    let roster = Roster::load(&machine.config.repo)?;
    let members = active_members(forge_hosts, &roster);
    fetch_members(forge, repo, &members)?;
    let mut ignored = not_members(forge_hosts, &members, &roster);
    let revoked = revoked_keys(machine, raw)?;
    let dir = collected_dir(machine);
    refuse_non_directory(&dir)?;
    let gathering = Gathering {
        machine,
        raw,
        roster: &roster,
        revoked: &revoked,
        dir: &dir,
    };
    for (name, oid) in local_hosts(raw) {
        match gathering.branch(&name, oid, state) {
            Ok(lines) | Err(lines) => ignored.extend(lines),
        }
    }
    remove_inactive(&dir, &roster, state);
    state.ignored = capped(ignored);
    Ok(())
}

/// Only the active members' branches are fetched (one refspec each): a forge full of other
/// branches costs nothing, and a non-member's branch is never downloaded.
fn active_members(
    forge_hosts: &BTreeMap<String, String>,
    roster: &Roster,
) -> BTreeMap<String, String> {
    forge_hosts
        .iter()
        .filter(|(name, _)| roster.active(name).is_some())
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect()
}

/// Drops the local refs of branches that are no longer members', then fetches the members'
/// branches when the local refs differ from the forge's.
fn fetch_members(
    forge: &Forge,
    repo: &FleetRepo,
    members: &BTreeMap<String, String>,
) -> Result<()> {
    let raw = repo.raw();
    let local = local_hosts(raw);
    for stale in local.keys().filter(|n| !members.contains_key(*n)) {
        if let Ok(mut r) = raw.find_reference(&format!("{}{stale}", forge::HOSTS_REFS)) {
            let _ = r.delete();
        }
    }
    if local_hosts(raw) != *members && !members.is_empty() {
        let names: Vec<&str> = members.keys().map(String::as_str).collect();
        forge.fetch_hosts(repo.root(), &names)?;
    }
    Ok(())
}

/// Other branches are reported (a revoked machine's quietly skipped), never fetched.
fn not_members(
    forge_hosts: &BTreeMap<String, String>,
    members: &BTreeMap<String, String>,
    roster: &Roster,
) -> Vec<String> {
    forge_hosts
        .keys()
        .filter(|n| !members.contains_key(*n))
        .filter(|n| crate::roster::check_name(n).is_err() || !roster.is_revoked_name(n))
        .map(|n| {
            let why = if crate::roster::check_name(n).is_err() {
                "not a machine name"
            } else {
                "no active machine has this name"
            };
            format!(
                "host branch {}: {why}; ignored (not fetched)",
                forge::host_branch(n)
            )
        })
        .collect()
}

/// The signing keys this machine knows were revoked. A damaged trust state is an error here
/// too (fail closed), never an empty revoked set.
fn revoked_keys(machine: &Machine, raw: &git2::Repository) -> Result<BTreeSet<String>> {
    Ok(match crate::trust::pinned_root(&machine.config) {
        Ok(root) => crate::trust::TrustState::load(raw, &machine.paths.state_dir, root)?.revoked,
        Err(_) => Default::default(),
    })
}

/// Refuses to gather into a `collected/` that exists but is not a directory.
fn refuse_non_directory(dir: &Path) -> Result<()> {
    if dir.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
        return Err(Error::refused(format!(
            "{} is not a directory (a symlink?); nothing is gathered into it",
            dir.display()
        )));
    }
    Ok(())
}

/// The line that reports a host branch ignored, and why.
fn ignored_line(name: &str, why: &str) -> String {
    format!("host branch {}: {why}; ignored", forge::host_branch(name))
}

/// What every host branch of one gathering is checked against, and where it goes.
struct Gathering<'a> {
    machine: &'a Machine,
    raw: &'a git2::Repository,
    roster: &'a Roster,
    revoked: &'a BTreeSet<String>,
    dir: &'a Path,
}

impl Gathering<'_> {
    /// One host branch, along its rules: a member's, still verified or verified now, then
    /// materialised. `Ok` holds the lines reporting its single files' problems, `Err` the lines
    /// saying why it is ignored (none when it is skipped quietly).
    fn branch(
        &self,
        name: &str,
        oid: String,
        state: &mut CollectState,
    ) -> std::result::Result<Vec<String>, Vec<String>> {
        let keys = self.member_keys(name)?;
        if let Some(g) = state.hosts.get(name)
            && g.commit == oid
        {
            return self.still_verified(name, &keys, state).map(|()| Vec::new());
        }
        let Ok(commit) = git2::Oid::from_str(&oid) else {
            return Err(Vec::new());
        };
        let signer = self.verified_signer(name, commit, &keys)?;
        self.take_in(name, commit, oid, signer, state)
    }

    /// The rule of names: a branch must be named for an active machine; its signing keys.
    /// A revoked machine's branch is ignored quietly (its directory goes later); any other name
    /// never was a member.
    fn member_keys(&self, name: &str) -> std::result::Result<BTreeSet<String>, Vec<String>> {
        if crate::roster::check_name(name).is_err() {
            return Err(vec![ignored_line(name, "not a machine name")]);
        }
        let Some(member) = self.roster.active(name) else {
            if !self.roster.is_revoked_name(name) {
                return Err(vec![ignored_line(name, "no active machine has this name")]);
            }
            return Err(Vec::new());
        };
        Ok(member.signing.iter().map(signing::fingerprint).collect())
    }

    /// The rule of an unchanged branch: verified before, its signer must still be active, or
    /// its directory goes.
    fn still_verified(
        &self,
        name: &str,
        keys: &BTreeSet<String>,
        state: &mut CollectState,
    ) -> std::result::Result<(), Vec<String>> {
        let Some(g) = state.hosts.get(name) else {
            return Ok(());
        };
        if !keys.contains(&g.signer) || self.revoked.contains(&g.signer) {
            remove_host(self.dir, name, state);
            return Err(vec![ignored_line(
                name,
                "its signing key is no longer active",
            )]);
        }
        Ok(())
    }

    /// The rule of signatures: a changed branch must be signed by an active, unrevoked key of
    /// the machine it is named for; the signer's fingerprint.
    fn verified_signer(
        &self,
        name: &str,
        commit: git2::Oid,
        keys: &BTreeSet<String>,
    ) -> std::result::Result<String, Vec<String>> {
        let signer = match signing::verified_signer(self.raw, commit) {
            Ok(key) => signing::fingerprint(&key),
            Err(problem) => return Err(vec![ignored_line(name, &problem.to_string())]),
        };
        if !keys.contains(&signer) || self.revoked.contains(&signer) {
            let owner = self
                .roster
                .active
                .iter()
                .find(|m| m.signing.iter().any(|k| signing::fingerprint(k) == signer));
            return Err(vec![ignored_line(
                name,
                &match owner {
                    Some(m) => format!("signed by {}'s key, not {name}'s", m.name),
                    None if self.revoked.contains(&signer) => {
                        format!("signed by a revoked key ({signer})")
                    }
                    None => format!("signed by a key of no active machine ({signer})"),
                },
            )]);
        }
        Ok(signer)
    }

    /// Materialises a verified branch and records what it held; `Ok` holds the lines reporting
    /// its single files' problems, `Err` the branch's own refusal.
    fn take_in(
        &self,
        name: &str,
        commit: git2::Oid,
        oid: String,
        signer: String,
        state: &mut CollectState,
    ) -> std::result::Result<Vec<String>, Vec<String>> {
        let identities = self.machine.identities().unwrap_or_default();
        let (status, files, problems) = materialise(
            self.raw,
            self.dir,
            name,
            commit,
            &identities,
            state.hosts.get(name),
        )
        .map_err(|why| vec![ignored_line(name, &why)])?;
        state.hosts.insert(
            name.to_string(),
            Gathered {
                commit: oid,
                signer,
                status,
                files,
            },
        );
        Ok(problems
            .into_iter()
            .map(|p| format!("host branch {}: {p}", forge::host_branch(name)))
            .collect())
    }
}

/// Machines no longer active: their directories go, both those recorded and any other
/// `host=NAME/` found in `collected/`.
fn remove_inactive(dir: &Path, roster: &Roster, state: &mut CollectState) {
    let gone: Vec<String> = state
        .hosts
        .keys()
        .filter(|n| roster.active(n).is_none())
        .cloned()
        .collect();
    for name in gone {
        remove_host(dir, &name, state);
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let file_name = e.file_name();
            let Some(host) = file_name.to_str().and_then(|n| n.strip_prefix("host=")) else {
                continue;
            };
            if roster.active(host).is_none() {
                remove_host(dir, host, state);
            }
        }
    }
}

/// A forge full of junk branches must not flood every cycle's report: the first
/// [`MAX_REPORTED`] lines, and a count of the rest.
fn capped(mut ignored: Vec<String>) -> Vec<String> {
    if ignored.len() > MAX_REPORTED {
        let more = ignored.len() - MAX_REPORTED;
        ignored.truncate(MAX_REPORTED);
        ignored.push(format!("{more} more host branches ignored"));
    }
    ignored
}

/// Removes `host=NAME/` (without following a symlink in it) and forgets what it held.
fn remove_host(dir: &Path, name: &str, state: &mut CollectState) {
    state.hosts.remove(name);
    let path = dir.join(format!("host={name}"));
    let removed = match path.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
        Ok(_) => std::fs::remove_file(&path),
        Err(_) => return,
    };
    if let Err(e) = removed {
        crate::log::warn(&format!("cannot remove {}: {e}", path.display()));
    }
}

/// A machine's directory, created 0700 when missing; refused when it (or `collected/`) is not
/// a real directory.
fn host_dir(dir: &Path, name: &str) -> std::result::Result<HomeDir, String> {
    let host = dir.join(format!("host={name}"));
    for d in [dir, host.as_path()] {
        match d.symlink_metadata() {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a directory", d.display())),
            Err(_) => crate::files::ensure_private_dir(d).map_err(|e| e.to_string())?,
        }
    }
    HomeDir::open(&host).map_err(|e| e.to_string())
}

/// What one branch held: its status, the files written (path → blob id), and the problems of
/// single files (skipped).
type Materialised = (HostStatus, BTreeMap<String, String>, Vec<String>);

/// Brings `host=NAME/` in step with the branch's commit: writes what changed, removes what
/// the branch no longer holds. `Err` says why the whole branch is refused.
fn materialise(
    raw: &git2::Repository,
    dir: &Path,
    name: &str,
    commit: git2::Oid,
    identities: &[crate::identity::Identity],
    before: Option<&Gathered>,
) -> std::result::Result<Materialised, String> {
    let tree = checked_tree(raw, commit)?;
    let status = host_status(raw, &tree, name, before)?;
    let wanted = wanted_blobs(raw, &tree);
    let home = host_dir(dir, name)?;
    let old = before.map(|g| g.files.clone()).unwrap_or_default();
    remove_dropped(&home, &old, &wanted);
    let (files, problems) = write_wanted(raw, &home, wanted, &old, identities)?;
    Ok((status, files, problems))
}

/// The rule of trees: the commit's tree, refused when it does not stay within its limits.
fn checked_tree(
    raw: &git2::Repository,
    commit: git2::Oid,
) -> std::result::Result<git2::Tree<'_>, String> {
    let tree = raw
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|_| "its commit cannot be read".to_string())?;
    if let Err(v) = confine::tree::check_tree_within(raw, &tree, limits::HOST_TREE_ENTRIES) {
        let shown: Vec<String> = v.iter().take(3).map(ToString::to_string).collect();
        return Err(format!("its tree is refused: {}", shown.join("; ")));
    }
    Ok(tree)
}

/// The rule of status.json: the branch must hold one, naming the machine it is named for,
/// and no older than the one gathered before.
fn host_status(
    raw: &git2::Repository,
    tree: &git2::Tree<'_>,
    name: &str,
    before: Option<&Gathered>,
) -> std::result::Result<HostStatus, String> {
    let status_blob = tree
        .get_name("status.json")
        .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
        .ok_or("it has no status.json")?
        .id();
    let status =
        blob_bytes(raw, status_blob, limits::HOST_STATUS).and_then(|b| HostStatus::parse(&b))?;
    if status.machine != name {
        return Err(format!(
            "its status.json names another machine ({:?})",
            status.machine
        ));
    }
    // A replay of an older signed commit would take the collected files back in time. The
    // same second is allowed: `written` counts whole seconds, and a machine may publish twice
    // within one (both commits are its own and equally recent).
    if let Some(g) = before
        && status.written < g.status.written
    {
        return Err(format!(
            "its status was written at {} ({}), before the one gathered before ({}): an older commit replayed",
            status.written_at, status.written, g.status.written
        ));
    }
    Ok(status)
}

/// Every blob below files/ (plain) and sealed/ (age): path → (blob, sealed).
fn wanted_blobs(
    raw: &git2::Repository,
    tree: &git2::Tree<'_>,
) -> BTreeMap<String, (git2::Oid, bool)> {
    let mut wanted = BTreeMap::new();
    for (top, sealed) in [("files", false), ("sealed", true)] {
        let Some(sub) = tree
            .get_name(top)
            .filter(|e| e.kind() == Some(git2::ObjectType::Tree))
            .and_then(|e| raw.find_tree(e.id()).ok())
        else {
            continue;
        };
        let _ = sub.walk(git2::TreeWalkMode::PreOrder, |parent, entry| {
            if entry.kind() == Some(git2::ObjectType::Blob)
                && let Ok(n) = std::str::from_utf8(entry.name_bytes())
            {
                wanted.insert(format!("{parent}{n}"), (entry.id(), sealed));
            }
            git2::TreeWalkResult::Ok
        });
    }
    wanted
}

/// Removes the files the branch no longer holds. Removals come first: a file that became a
/// directory (or back) frees its name.
fn remove_dropped(
    home: &HomeDir,
    old: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, (git2::Oid, bool)>,
) {
    for rel in old.keys().filter(|r| !wanted.contains_key(*r)) {
        if let Ok(checked) = confine::collected_rel(rel) {
            let _ = home.remove_file(&checked);
            remove_empty_parents(home.path(), rel);
        }
    }
}

/// Writes each wanted file that changed, within the total limit of what is gathered; a file
/// refused or not written is a problem of its own (skipped). The files in step: path → blob id.
fn write_wanted(
    raw: &git2::Repository,
    home: &HomeDir,
    wanted: BTreeMap<String, (git2::Oid, bool)>,
    old: &BTreeMap<String, String>,
    identities: &[crate::identity::Identity],
) -> std::result::Result<(BTreeMap<String, String>, Vec<String>), String> {
    let mut problems = Vec::new();
    let mut files = BTreeMap::new();
    let odb = raw.odb().map_err(|e| e.message().to_string())?;
    let mut total: u64 = 0;
    for (rel, (blob, sealed)) in wanted {
        let size = odb.read_header(blob).map(|(s, _)| s as u64).unwrap_or(0);
        if let Err(e) = limits::COLLECT_GATHERED_TOTAL.check(total + size) {
            problems.push(format!("{rel}: {e}"));
            continue;
        }
        total += size;
        let checked = match confine::collected_rel(&rel) {
            Ok(c) => c,
            Err(r) => {
                problems.push(format!("file refused: {r}"));
                continue;
            }
        };
        let id = blob.to_string();
        if old.get(&rel) == Some(&id) && home.stamp(&checked).is_ok() {
            files.insert(rel, id);
            continue;
        }
        match write_one(raw, home, &checked, blob, sealed, identities, &rel) {
            Ok(()) => {
                files.insert(rel, id);
            }
            Err(why) => problems.push(format!("{rel}: {why}")),
        }
    }
    Ok((files, problems))
}

/// Writes one file 0600, within its limit: a sealed one decrypted first.
fn write_one(
    raw: &git2::Repository,
    home: &HomeDir,
    checked: &confine::HomeRel,
    blob: git2::Oid,
    sealed: bool,
    identities: &[crate::identity::Identity],
    rel: &str,
) -> std::result::Result<(), String> {
    let limit = if sealed {
        limits::COLLECT_GATHERED
    } else {
        limits::COLLECT_FILE
    };
    blob_bytes(raw, blob, limit).and_then(|bytes| {
        let plain = if sealed {
            decrypt(&bytes, identities, rel)?
        } else {
            zeroize::Zeroizing::new(bytes)
        };
        home.write_file(checked, &plain, 0o600, DirMode::Private)
            .map_err(|e| e.to_string())
    })
}

/// A blob's bytes, refusing it by its size in the object database before reading it.
fn blob_bytes(
    raw: &git2::Repository,
    id: git2::Oid,
    limit: limits::Limit,
) -> std::result::Result<Vec<u8>, String> {
    let odb = raw.odb().map_err(|e| e.message().to_string())?;
    let (size, _) = odb.read_header(id).map_err(|e| e.message().to_string())?;
    limit.check(size as u64).map_err(|e| e.to_string())?;
    let blob = raw.find_blob(id).map_err(|e| e.message().to_string())?;
    Ok(blob.content().to_vec())
}

/// Decrypts a sealed file with whichever of this machine's identities can.
fn decrypt(
    bytes: &[u8],
    identities: &[crate::identity::Identity],
    rel: &str,
) -> std::result::Result<zeroize::Zeroizing<Vec<u8>>, String> {
    let mut last = String::from("this machine has no identity to decrypt it");
    for id in identities {
        match crate::secrets::decrypt_within(
            bytes,
            id,
            None,
            Path::new(rel),
            limits::COLLECT_GATHERED,
            limits::COLLECT_FILE,
        ) {
            Ok(p) => return Ok(p),
            Err(e) => last = Error::to_string(&e),
        }
    }
    Err(last)
}

/// Removes the empty directories above `rel` inside `root` (a directory that is not empty, or
/// not a directory, stops it).
fn remove_empty_parents(root: &Path, rel: &str) {
    let mut parts: Vec<&str> = rel.split('/').collect();
    parts.pop();
    while !parts.is_empty() {
        let dir = root.join(parts.join("/"));
        if std::fs::remove_dir(&dir).is_err() {
            return;
        }
        parts.pop();
    }
}

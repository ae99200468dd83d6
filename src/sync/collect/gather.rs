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
    // Only the active members' branches are fetched (one refspec each): a forge full of other
    // branches costs nothing, and a non-member's branch is never downloaded.
    let members: BTreeMap<String, String> = forge_hosts
        .iter()
        .filter(|(name, _)| roster.active(name).is_some())
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    let local = local_hosts(raw);
    for stale in local.keys().filter(|n| !members.contains_key(*n)) {
        if let Ok(mut r) = raw.find_reference(&format!("{}{stale}", forge::HOSTS_REFS)) {
            let _ = r.delete();
        }
    }
    if local_hosts(raw) != members && !members.is_empty() {
        let names: Vec<&str> = members.keys().map(String::as_str).collect();
        forge.fetch_hosts(repo.root(), &names)?;
    }
    // Other branches are reported (a revoked machine's quietly skipped), never fetched.
    let not_members: Vec<String> = forge_hosts
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
        .collect();
    // A damaged trust state is an error here too (fail closed), never an empty revoked set.
    let revoked = match crate::trust::pinned_root(&machine.config) {
        Ok(root) => crate::trust::TrustState::load(raw, &machine.paths.state_dir, root)?.revoked,
        Err(_) => Default::default(),
    };
    let dir = collected_dir(machine);
    if dir.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
        return Err(Error::refused(format!(
            "{} is not a directory (a symlink?); nothing is gathered into it",
            dir.display()
        )));
    }
    let mut ignored = not_members;
    for (name, oid) in local_hosts(raw) {
        let report =
            |why: &str| format!("host branch {}: {why}; ignored", forge::host_branch(&name));
        if crate::roster::check_name(&name).is_err() {
            ignored.push(report("not a machine name"));
            continue;
        }
        let Some(member) = roster.active(&name) else {
            // A revoked machine's branch is ignored quietly (its directory goes below); any
            // other name never was a member.
            if !roster.is_revoked_name(&name) {
                ignored.push(report("no active machine has this name"));
            }
            continue;
        };
        let keys: BTreeSet<String> = member.signing.iter().map(signing::fingerprint).collect();
        if let Some(g) = state.hosts.get(&name)
            && g.commit == oid
        {
            // Unchanged since it was verified; its signer must still be active.
            if !keys.contains(&g.signer) || revoked.contains(&g.signer) {
                ignored.push(report("its signing key is no longer active"));
                remove_host(&dir, &name, state);
            }
            continue;
        }
        let Ok(commit) = git2::Oid::from_str(&oid) else {
            continue;
        };
        let signer = match signing::verified_signer(raw, commit) {
            Ok(key) => signing::fingerprint(&key),
            Err(problem) => {
                ignored.push(report(&problem.to_string()));
                continue;
            }
        };
        if !keys.contains(&signer) || revoked.contains(&signer) {
            let owner = roster
                .active
                .iter()
                .find(|m| m.signing.iter().any(|k| signing::fingerprint(k) == signer));
            ignored.push(report(&match owner {
                Some(m) => format!("signed by {}'s key, not {name}'s", m.name),
                None if revoked.contains(&signer) => format!("signed by a revoked key ({signer})"),
                None => format!("signed by a key of no active machine ({signer})"),
            }));
            continue;
        }
        let identities = machine.identities().unwrap_or_default();
        match materialise(
            raw,
            &dir,
            &name,
            commit,
            &identities,
            state.hosts.get(&name),
        ) {
            Ok((status, files, problems)) => {
                ignored.extend(
                    problems
                        .into_iter()
                        .map(|p| format!("host branch {}: {p}", forge::host_branch(&name))),
                );
                state.hosts.insert(
                    name.clone(),
                    Gathered {
                        commit: oid,
                        signer,
                        status,
                        files,
                    },
                );
            }
            Err(why) => ignored.push(report(&why)),
        }
    }
    // Machines no longer active: their directories go.
    let gone: Vec<String> = state
        .hosts
        .keys()
        .filter(|n| roster.active(n).is_none())
        .cloned()
        .collect();
    for name in gone {
        remove_host(&dir, &name, state);
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let file_name = e.file_name();
            let Some(host) = file_name.to_str().and_then(|n| n.strip_prefix("host=")) else {
                continue;
            };
            if roster.active(host).is_none() {
                remove_host(&dir, host, state);
            }
        }
    }
    // A forge full of junk branches must not flood every cycle's report.
    if ignored.len() > MAX_REPORTED {
        let more = ignored.len() - MAX_REPORTED;
        ignored.truncate(MAX_REPORTED);
        ignored.push(format!("{more} more host branches ignored"));
    }
    state.ignored = ignored;
    Ok(())
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
    let tree = raw
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|_| "its commit cannot be read".to_string())?;
    if let Err(v) = confine::tree::check_tree_within(raw, &tree, limits::HOST_TREE_ENTRIES) {
        let shown: Vec<String> = v.iter().take(3).map(ToString::to_string).collect();
        return Err(format!("its tree is refused: {}", shown.join("; ")));
    }
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
    // Every blob below files/ (plain) and sealed/ (age): path → (blob, sealed).
    let mut wanted: BTreeMap<String, (git2::Oid, bool)> = BTreeMap::new();
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
    let home = host_dir(dir, name)?;
    let mut problems = Vec::new();
    let old = before.map(|g| g.files.clone()).unwrap_or_default();
    // Removals first: a file that became a directory (or back) frees its name.
    for rel in old.keys().filter(|r| !wanted.contains_key(*r)) {
        if let Ok(checked) = confine::collected_rel(rel) {
            let _ = home.remove_file(&checked);
            remove_empty_parents(home.path(), rel);
        }
    }
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
        let limit = if sealed {
            limits::COLLECT_GATHERED
        } else {
            limits::COLLECT_FILE
        };
        let written = blob_bytes(raw, blob, limit).and_then(|bytes| {
            let plain = if sealed {
                decrypt(&bytes, identities, &rel)?
            } else {
                zeroize::Zeroizing::new(bytes)
            };
            home.write_file(&checked, &plain, 0o600, DirMode::Private)
                .map_err(|e| e.to_string())
        });
        match written {
            Ok(()) => {
                files.insert(rel, id);
            }
            Err(why) => problems.push(format!("{rel}: {why}")),
        }
    }
    Ok((status, files, problems))
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

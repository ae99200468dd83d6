//! Publishing: this machine's status and collected files as one signed orphan commit,
//! force-pushed to `fleetkey/host/NAME`.
//!
//! Must never: read a path confinement refuses (every entry of `[collect] paths` goes through
//! [`crate::confine::Confinement::check_entry`] and is read through
//! [`crate::confine::HomeDir`]), read more than the limits, or publish more often than once per
//! `poll` from the agents.

use std::path::Path;

use crate::config::FleetConfig;
use crate::confine::{Confinement, HomeDir, HomeRel};
use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::forge::{self, PushOutcome};
use crate::limits;
use crate::repo::FleetRepo;
use crate::sync::Cycle;
use crate::sync::placeholder::SecretValues;
use crate::sync::state::CycleRecord;

use super::status::{HostStatus, LastCycle, PublishedFile};
use super::{CollectState, HEARTBEAT};

/// The files of `[collect] paths` that pass confinement; what is refused is held back.
fn collected_paths(
    machine: &Machine,
    fleet: &FleetConfig,
    held_back: &mut Vec<String>,
) -> Vec<HomeRel> {
    let confinement = Confinement::for_machine(&machine.paths, &machine.config.repo);
    let mut out = Vec::new();
    for entry in &fleet.collect.paths {
        match confinement.check_entry(entry) {
            Ok(c) if c.dir => held_back.push(format!(
                "[collect] paths: {entry:?} names a directory; list the files to collect"
            )),
            Ok(c) => out.push(c.rel),
            Err(r) => held_back.push(format!("[collect] paths: {r}")),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// This machine's status now. `written` is left for [`publish_if_due`] to fill in.
fn current_status(
    machine: &Machine,
    repo: &FleetRepo,
    rec: &CycleRecord,
    state: &mut CollectState,
    files: Vec<PublishedFile>,
) -> HostStatus {
    let result = rec.result.to_string();
    let home = &machine.paths.home;
    let conflicts = crate::sync::state::conflicts(&machine.paths.state_dir)
        .into_iter()
        .map(|c| match c.copy.strip_prefix(home) {
            Ok(rel) => format!("~/{}", rel.display()),
            Err(_) => c.copy.display().to_string(),
        })
        .collect();
    HostStatus {
        format: super::status::FORMAT,
        machine: machine.config.name.clone(),
        fleetkey: env!("CARGO_PKG_VERSION").to_string(),
        platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        written: 0,
        written_at: String::new(),
        last_cycle: Some(LastCycle {
            at: rec.started.clone(),
            result,
            held_back: rec.held_back.len(),
        }),
        applied: repo.head().map(|h| h.to_string()),
        agents: Vec::new(),
        conflicts,
        secret_conflicts: secret_conflicts(machine, repo, state),
        files,
        healed: crate::sync::heal::Healed::recent(
            &machine.paths.state_dir,
            crate::clock::now_unix(),
        )
        .map(|h| h.at_text),
    }
}

/// The names of the secrets with a conflict kept aside, decrypted only when the secrets file
/// changed since the last look.
fn secret_conflicts(machine: &Machine, repo: &FleetRepo, state: &mut CollectState) -> Vec<String> {
    let blob = repo
        .raw()
        .head()
        .and_then(|h| h.peel_to_tree())
        .ok()
        .and_then(|t| t.get_name(crate::secrets::CIPHERTEXT).map(|e| e.id()));
    let Some(blob) = blob.map(|b| b.to_string()) else {
        return Vec::new();
    };
    if let Some((known, names)) = &state.secrets
        && *known == blob
    {
        return names.clone();
    }
    let names: Vec<String> = match machine.secrets() {
        Ok(env) => env.conflicts().into_iter().map(|c| c.key).collect(),
        Err(_) => Vec::new(),
    };
    state.secrets = Some((blob, names.clone()));
    names
}

/// The digest of what a publication would hold, without its times: a change of it (or the
/// heartbeat) is what makes a machine publish.
fn digest(status: &HostStatus, encrypt: bool) -> String {
    let mut s = status.clone();
    if let Some(c) = &mut s.last_cycle {
        c.at.clear();
    }
    let mut text = serde_json::to_string(&s).expect("status serializes");
    text.push_str(if encrypt { "\nsealed" } else { "\nplain" });
    git2::Oid::hash_object(git2::ObjectType::Blob, text.as_bytes())
        .map(|o| o.to_string())
        .unwrap_or_default()
}

/// Publishes this machine's branch when its content changed or the heartbeat is due (and, with
/// `limit_per_poll`, its last publication is at least one `poll` old), or when the forge's
/// branch (`forge_has`) is not the commit this machine published last. Returns the commit
/// pushed.
pub fn publish_if_due(
    cx: &Cycle,
    repo: &FleetRepo,
    fleet: &FleetConfig,
    rec: &mut CycleRecord,
    state: &mut CollectState,
    forge_has: Option<&str>,
    limit_per_poll: bool,
) -> Result<Option<String>> {
    let (machine, now) = (cx.machine, cx.now);
    let mut held_back = Vec::new();
    let paths = collected_paths(machine, fleet, &mut held_back);
    let home = HomeDir::open(&machine.paths.home)?;
    // The fleet secrets, read at most once, only when a collected file is.
    let secret_values = std::cell::OnceCell::new();
    let secrets = || secret_values.get_or_init(|| crate::sync::plan::secret_values(machine));
    let files = stamp_files(&home, &paths, fleet, state, &secrets, &mut held_back)?;
    rec.held_back.extend(held_back);
    let published: Vec<PublishedFile> = files
        .iter()
        .map(|(rel, size, oid)| PublishedFile {
            // The content's id makes a changed file change the digest; it is not secret
            // (a git blob id) but is left out of the published status when encrypted.
            path: format!("{}\0{oid}", rel.as_str()),
            size: *size,
            encrypted: fleet.collect.encrypt,
        })
        .collect();
    let mut status = current_status(machine, repo, rec, state, published);
    let digest = digest(&status, fleet.collect.encrypt);
    for f in &mut status.files {
        f.path.truncate(f.path.find('\0').unwrap_or(f.path.len()));
    }
    if !due(cx, fleet, state, &digest, forge_has, limit_per_poll) {
        return Ok(None);
    }
    status.written = now;
    status.written_at = crate::clock::rfc3339(now);
    status.agents = cx.hooks.agent_states(machine, fleet);
    let plain = (!fleet.collect.encrypt && !files.is_empty()).then(secrets);
    let commit = commit_branch(machine, repo, fleet, &home, &files, &status, plain)?;
    push_host_branch(cx, repo, commit)?;
    let oid = commit.to_string();
    state.digest = Some(digest);
    state.published = now;
    state.commit = Some(oid.clone());
    state.status = Some(status);
    Ok(Some(oid))
}

/// Stats each collected file, within the per-file and total limits, and reads (and hashes)
/// only those whose stamp moved since the last publish; a file holding a fleet secret is not
/// published in plain. Returns (path, size, blob id) of each file to publish, and remembers
/// the stamps in `state`.
fn stamp_files<'s>(
    home: &HomeDir,
    paths: &[HomeRel],
    fleet: &FleetConfig,
    state: &mut CollectState,
    secrets: &dyn Fn() -> &'s SecretValues,
    held_back: &mut Vec<String>,
) -> Result<Vec<(HomeRel, u64, String)>> {
    let mut files = Vec::new();
    let mut total: u64 = 0;
    let mut known = std::collections::BTreeMap::new();
    for rel in paths {
        let stamp = match home.stamp(rel) {
            Ok(s) => s,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                held_back.push(format!("[collect] {rel}: {e}"));
                continue;
            }
        };
        let within = limits::COLLECT_FILE
            .check(stamp.size)
            .and_then(|()| limits::COLLECT_TOTAL.check(total + stamp.size));
        if let Err(e) = within {
            held_back.push(format!("[collect] {rel}: {e}"));
            continue;
        }
        total += stamp.size;
        let oid = match state.files.get(rel.as_str()) {
            Some((s, oid)) if *s == stamp => oid.clone(),
            _ => match read_for_publishing(home, rel, fleet, secrets)? {
                Ok(oid) => oid,
                Err(why) => {
                    held_back.push(why);
                    continue;
                }
            },
        };
        known.insert(rel.as_str().to_string(), (stamp, oid.clone()));
        files.push((rel.clone(), stamp.size, oid));
    }
    state.files = known;
    Ok(files)
}

/// Reads one collected file and returns its blob id, or the held-back line (a read that
/// failed, or a fleet secret in a file published in plain).
fn read_for_publishing<'s>(
    home: &HomeDir,
    rel: &HomeRel,
    fleet: &FleetConfig,
    secrets: &dyn Fn() -> &'s SecretValues,
) -> Result<std::result::Result<String, String>> {
    let c = match home.read_file(rel, limits::COLLECT_FILE) {
        Ok(c) => c,
        Err(e) => return Ok(Err(format!("[collect] {rel}: {e}"))),
    };
    if !fleet.collect.encrypt
        && let Some(why) = never_published(secrets(), &c.bytes)
    {
        return Ok(Err(format!("[collect] {rel} not published: {why}")));
    }
    let oid = git2::Oid::hash_object(git2::ObjectType::Blob, &c.bytes)
        .map_err(Error::git("cannot hash a collected file"))?;
    Ok(Ok(oid.to_string()))
}

/// Whether to publish now: the status changed (or the forge does not hold our last commit),
/// or the heartbeat is due; from the agents, at most once per `poll`.
fn due(
    cx: &Cycle,
    fleet: &FleetConfig,
    state: &CollectState,
    digest: &str,
    forge_has: Option<&str>,
    limit_per_poll: bool,
) -> bool {
    let now = cx.now;
    let forge_is_ours = forge_has.is_some() && forge_has == state.commit.as_deref();
    let changed = state.digest.as_deref() != Some(digest) || !forge_is_ours;
    let heartbeat = now - state.published >= HEARTBEAT;
    let poll = fleet.poll().as_secs() as i64;
    (changed || heartbeat) && !(limit_per_poll && now - state.published < poll)
}

/// Force-pushes the host branch (an orphan commit each time) and keeps it as the gathered
/// copy of this machine's own.
fn push_host_branch(cx: &Cycle, repo: &FleetRepo, commit: git2::Oid) -> Result<()> {
    let name = &cx.machine.config.name;
    let branch = forge::host_branch(name);
    let local = format!("refs/heads/{branch}");
    match cx.forge.push_to(repo.root(), &local, &branch, None, true)? {
        PushOutcome::Pushed => {}
        PushOutcome::Rejected => {
            return Err(Error::refused(format!(
                "the forge refused the force-push of {branch} (does it protect the branch?)"
            )));
        }
    }
    let _ = repo.raw().reference(
        &format!("{}{}", forge::HOSTS_REFS, name),
        commit,
        true,
        "fleetkey: published",
    );
    crate::log::info(&format!("published {branch}"));
    Ok(())
}

/// Why a collected file must not be published in plain on the host branch, if it must not:
/// it holds a fleet secret's value (apply may have written one into it) or something that
/// looks like a credential. `[collect] encrypt` seals the files to the fleet instead.
fn never_published(secrets: &SecretValues, bytes: &[u8]) -> Option<String> {
    let hint = "set [collect] encrypt = true to publish it sealed to the fleet";
    if let Some(key) = secrets.find_any(bytes) {
        return Some(format!(
            "it holds the value of the fleet secret {key}; {hint}"
        ));
    }
    let found = crate::tokens::scan(bytes);
    (!found.is_empty()).then(|| {
        format!(
            "it holds what looks like a credential ({}); {hint}",
            crate::tokens::describe(&found)
        )
    })
}

/// Writes the branch's one commit (no parent, signed) with `status.json` and the files, read
/// again now (sealed to the roster when `[collect] encrypt` is on; else checked against
/// `plain`, the fleet secrets, and for tokens).
fn commit_branch(
    machine: &Machine,
    repo: &FleetRepo,
    fleet: &FleetConfig,
    home: &HomeDir,
    files: &[(HomeRel, u64, String)],
    status: &HostStatus,
    plain: Option<&SecretValues>,
) -> Result<git2::Oid> {
    let raw = repo.raw();
    let git = || Error::git("cannot write the host branch");
    let mut update = git2::build::TreeUpdateBuilder::new();
    let text = serde_json::to_vec_pretty(status).expect("status serializes");
    update.upsert(
        "status.json",
        raw.blob(&text).map_err(git())?,
        git2::FileMode::Blob,
    );
    let roster = if fleet.collect.encrypt {
        Some(crate::roster::Roster::load(Path::new(
            &machine.config.repo,
        ))?)
    } else {
        None
    };
    for (rel, _, _) in files {
        let content = home.read_file(rel, limits::COLLECT_FILE)?;
        // Checked when its stamp moved; again here, as it may have changed since.
        if let Some(secrets) = plain
            && let Some(why) = never_published(secrets, &content.bytes)
        {
            return Err(Error::refused(format!(
                "{rel} changed while being published and is not published: {why}"
            )));
        }
        let (dir, bytes) = match &roster {
            Some(roster) => (
                "sealed",
                crate::secrets::Sealer::for_roster(roster)?.seal(&content.bytes)?,
            ),
            None => ("files", content.bytes),
        };
        let blob = raw.blob(&bytes).map_err(git())?;
        update.upsert(
            format!("{dir}/{}", rel.as_str()),
            blob,
            git2::FileMode::Blob,
        );
    }
    let empty = raw
        .treebuilder(None)
        .and_then(|b| b.write())
        .and_then(|id| raw.find_tree(id))
        .map_err(git())?;
    let tree_id = update.create_updated(raw, &empty).map_err(git())?;
    let tree = raw.find_tree(tree_id).map_err(git())?;
    let name = &machine.config.name;
    crate::signing::commit(
        raw,
        repo.signer()?,
        Some(&format!("refs/heads/{}", forge::host_branch(name))),
        &format!("{name}: status and collected files"),
        &tree,
        &[],
    )
}

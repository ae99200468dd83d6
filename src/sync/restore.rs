//! `fleetkey restore`: an earlier version of a managed file back into the live file, then into
//! the fleet as a normal edit (one commit, `NAME: restore ~/REL from COMMIT`), so every machine
//! gets it on its next cycle. The live version it replaces is kept beside it as a conflict-style
//! copy (`FILE.conflict-NAME-STAMP`, reason "replaced by restore", listed by `status`).
//!
//! Must never: write anywhere but the checked live path (through [`crate::confine::HomeDir`]),
//! write a private-looking path or an ignored file, or replace a live file whose copy could not
//! be kept.

use std::os::unix::fs::PermissionsExt;

use crate::confine::DirMode;
use crate::error::{Error, Result};
use crate::limits;
use crate::repo::FleetRepo;

use super::conflicts::{Occasion, keep_copy};
use super::history::Version;
use super::plan::Plan;
use super::state::{self, ConflictReason, ConflictRecord, Entry, Manifest, Stat};
use super::{apply, commit, tree};

/// What a restore did.
#[derive(Debug, Default)]
pub struct Restored {
    /// The copy of the version it replaced, when there was one.
    pub copy: Option<ConflictRecord>,
    /// Whether anything changed (the live file did not already hold that version).
    pub changed: bool,
}

/// Puts `version` of the managed file `rel` back into the live file and commits it. The
/// caller holds the lock; `state_dir` keeps the manifest and the conflict records.
pub fn restore(
    repo: &FleetRepo,
    plan: &Plan,
    machine: &str,
    rel: &str,
    version: &Version,
    state_dir: &std::path::Path,
    now: i64,
) -> Result<Restored> {
    let refuse = |why: &str| Error::refused(format!("~/{rel} cannot be restored: {why}"));
    if !plan.managed.iter().any(|m| m.covers(rel)) {
        return Err(refuse("it is not a managed file").hint("`fleetkey track PATH` manages it"));
    }
    if plan.ignore.is_ignored(rel, false) {
        return Err(refuse("it is ignored"));
    }
    if let Some(kind) = crate::private::by_path(rel) {
        return Err(refuse(&format!("it is where {kind} lives")));
    }
    let checked = plan
        .confinement
        .check_rel(rel)
        .map_err(|r| refuse(&r.to_string()))?;
    let raw = repo.raw();
    let size = raw
        .odb()
        .and_then(|o| o.read_header(version.blob))
        .map_err(Error::git("cannot read the earlier version"))?
        .0;
    limits::MANAGED_FILE
        .check(size as u64)
        .map_err(|e| refuse(&e.to_string()))?;
    let blob = raw
        .find_blob(version.blob)
        .map_err(Error::git("cannot read the earlier version"))?;
    let wanted = plan.placeholders.to_live(rel, blob.content()).into_owned();
    let home = plan.open_home()?;
    let current = home.read_file(&checked, limits::MANAGED_FILE).ok();
    let private = apply::is_private(rel, &plan.private)
        || current
            .as_ref()
            .is_some_and(|c| c.metadata.permissions().mode() & 0o077 == 0);
    let mode = match (private, version.exec) {
        (true, true) => 0o700,
        (true, false) => 0o600,
        (false, true) => 0o755,
        (false, false) => 0o644,
    };
    let mut out = Restored::default();
    if current.as_ref().is_some_and(|c| c.bytes == wanted) {
        return Ok(out);
    }
    let (stamp, at) = (crate::clock::compact(now), crate::clock::rfc3339(now));
    if let Some(c) = &current {
        let record = keep_copy(
            &home,
            &plan.confinement,
            &checked,
            &c.bytes,
            c.metadata.permissions().mode() & 0o777,
            ConflictReason::Restored,
            Occasion {
                machine,
                stamp: &stamp,
                at: &at,
            },
        )?;
        state::record_conflicts(state_dir, std::slice::from_ref(&record))?;
        out.copy = Some(record);
    }
    let dirs = if private {
        DirMode::Private
    } else {
        DirMode::Shared
    };
    home.write_file(&checked, &wanted, mode, dirs)?;
    out.changed = true;
    // Into the fleet as an edit of this machine's version (its override, when it has one).
    let head = commit::head_tree(raw)?;
    let repo_path = tree::lookup(&head, machine, rel)
        .map(|s| s.repo_path)
        .unwrap_or_else(|| format!("{}/{rel}", tree::HOME_DIR));
    drop(head);
    let short = &version.commit.to_string()[..12];
    commit::commit_changes(
        repo,
        &[(repo_path, version.blob, version.exec)],
        &[],
        &format!("{machine}: restore ~/{rel} from {short}"),
    )?;
    let meta = home
        .read_file(&checked, limits::MANAGED_FILE)
        .map_err(|e| refuse(&e.to_string()))?
        .metadata;
    let mut manifest = Manifest::load(state_dir);
    manifest.files.insert(
        rel.to_string(),
        Entry {
            oid: version.blob.to_string(),
            exec: version.exec,
            stat: Some(Stat::of(&meta)),
        },
    );
    manifest.save(state_dir)?;
    Ok(out)
}

//! `fleetkey conflicts` and `fleetkey resolve PATH --keep here|fleet`: the file conflict copies
//! this machine holds (`FILE.conflict-NAME-STAMP`, made when a merge, a first contact or a
//! restore put another version in the live file), listed and settled one path at a time.
//!
//! Owns: reading and settling the records of `conflicts.json` ([`crate::sync::state`]).
//! Must never: write outside the checked live path (every read and write goes through
//! [`crate::confine::HomeDir`]), or remove a copy before the chosen bytes are in the live file.

use std::path::{Path, PathBuf};

use crate::confine::DirMode;
use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::limits;
use crate::output::outln;
use crate::sync::{self, managed, state};

/// Which version `resolve` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Keep {
    /// This machine's version, the one kept in the conflict copy: it goes back into the live
    /// file and out to the fleet.
    Here,
    /// The fleet's version, the one in the live file now: the copy is removed.
    Fleet,
}

/// `~/REL` for a path under `home`, else the path as it is.
fn shown(path: &Path, home: &Path) -> String {
    match path.strip_prefix(home) {
        Ok(rel) => format!("~/{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

/// `fleetkey conflicts`: one line per copy: the live file, the machine whose version the copy
/// holds, when, why, and the copy.
pub fn list() -> Result<()> {
    let machine = Machine::load()?;
    let home = &machine.paths.home;
    let records = state::conflicts(&machine.paths.state_dir);
    if records.is_empty() {
        outln!("fleetkey: no conflict copies")?;
        return Ok(());
    }
    for c in &records {
        outln!(
            "{}  {}  {}  {}  copy {}",
            shown(&c.path, home),
            c.machine,
            c.at,
            c.reason,
            shown(&c.copy, home)
        )?;
    }
    outln!(
        "Settle one with `fleetkey resolve PATH --keep here` (the copy's version) or `--keep fleet` (the live file's)."
    )?;
    Ok(())
}

/// `fleetkey resolve PATH --keep here|fleet`: keeps the chosen version in the live file,
/// removes every conflict copy of PATH, and syncs (so `here` reaches the fleet at once).
pub fn resolve(path: &str, keep: Keep) -> Result<()> {
    let machine = Machine::load()?;
    let home = machine.paths.home.clone();
    let cwd = std::env::current_dir().map_err(Error::io(
        "cannot read the current directory",
        Path::new("."),
    ))?;
    let rel = managed::normalize(path, &home, &cwd)?;
    let live = home.join(&rel);
    if keep == Keep::Here
        && crate::authority::role_in(&machine.config.repo, &machine.config.name)
            == crate::authority::Role::Receiver
    {
        return Err(Error::refused(format!(
            "{} only receives (role receiver): its version of ~/{rel} cannot go to the fleet, and the next sync would keep it aside again",
            machine.config.name
        ))
        .hint("make the change on an admin or member machine (it reaches this one with the next sync), or settle with `--keep fleet`; `fleetkey status` lists each machine's role"));
    }
    {
        let _lock = machine.lock()?;
        let state_dir = &machine.paths.state_dir;
        // The newest copy last: it is the version `here` keeps.
        let mut records: Vec<state::ConflictRecord> = state::conflicts(state_dir)
            .into_iter()
            .filter(|c| c.path == live)
            .collect();
        records.sort_by(|a, b| a.at.cmp(&b.at));
        let Some(newest) = records.last() else {
            return Err(Error::refused(format!("~/{rel} has no conflict copy"))
                .hint("`fleetkey conflicts` lists the copies this machine holds"));
        };
        let plan = sync::plan::Plan::for_machine(&machine)?;
        let checked = |p: &Path| {
            let rel = p
                .strip_prefix(&home)
                .map_err(|_| Error::refused(format!("{} is not under $HOME", p.display())))?;
            plan.confinement
                .check_rel(&rel.to_string_lossy())
                .map_err(|r| Error::refused(format!("{} cannot be used: {r}", p.display())))
        };
        let home_dir = plan.open_home()?;
        if keep == Keep::Here {
            use std::os::unix::fs::PermissionsExt;
            let copy = home_dir.read_file(&checked(&newest.copy)?, limits::MANAGED_FILE)?;
            let target = checked(&live)?;
            let mode = home_dir
                .read_file(&target, limits::MANAGED_FILE)
                .map(|c| c.metadata.permissions().mode() & 0o777)
                .unwrap_or(copy.metadata.permissions().mode() & 0o777);
            home_dir.write_file(&target, &copy.bytes, mode, DirMode::Shared)?;
        }
        let mut removed: Vec<PathBuf> = Vec::new();
        for c in &records {
            home_dir.remove_file(&checked(&c.copy)?)?;
            removed.push(c.copy.clone());
        }
        state::forget_conflicts(state_dir, &removed)?;
        match keep {
            Keep::Here => outln!(
                "fleetkey: ~/{rel} holds this machine's version again (from {}); syncing it to the fleet",
                shown(&newest.copy, &home)
            )?,
            Keep::Fleet => outln!("fleetkey: ~/{rel} keeps the fleet's version")?,
        }
        for r in &removed {
            outln!("  removed {}", shown(r, &home))?;
        }
    }
    let rec = sync::cycle_by_hand(
        &machine,
        sync::Network::CheapCheck,
        &crate::agents::AgentHooks,
    )?;
    outln!(
        "fleetkey: synced: {} captured, {} applied, {} conflicts{}",
        rec.captured,
        rec.applied,
        rec.conflicts,
        if rec.pushed { ", pushed" } else { "" }
    )?;
    Ok(())
}

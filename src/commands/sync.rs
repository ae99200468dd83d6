//! `fleetkey sync`, `pull [--every DURATION]` and `watch`: thin shells over
//! [`crate::sync`].

use crate::agents::AgentHooks;
use crate::output::outln;
use std::time::Duration;

use crate::config::parse_duration;
use crate::error::{ErrorKind, Result};
use crate::fleet::Machine;
use crate::sync::{self, Network};

fn report(rec: &sync::state::CycleRecord) -> Result<()> {
    outln!(
        "fleetkey: synced: {} captured, {} applied, {} conflicts{} ({} ms)",
        rec.captured,
        rec.applied,
        rec.conflicts,
        if rec.pushed { ", pushed" } else { "" },
        rec.duration_ms
    )?;
    if let Some(h) = &rec.healed {
        for r in &h.refused {
            say_refused(r)?;
        }
        outln!("fleetkey: {}", h.line())?;
    }
    for r in &rec.refused {
        say_refused(r)?;
    }
    if let Some(why) = &rec.not_healed {
        outln!("fleetkey: {why}")?;
    }
    Ok(())
}

/// The error a cycle that refused forge commits ends with (exit code 3).
fn untrusted(rec: &sync::state::CycleRecord) -> Result<()> {
    if rec.refused.is_empty() {
        return Ok(());
    }
    Err(ErrorKind::Untrusted {
        refused: rec.refused.len(),
    }
    .into())
}

/// `fleetkey sync`: one cycle. `offline` skips the forge (capture, commit, apply).
pub fn sync(offline: bool) -> Result<()> {
    let machine = Machine::load()?;
    let rec = sync::cycle_by_hand(
        &machine,
        if offline {
            Network::Offline
        } else {
            Network::CheapCheck
        },
        &AgentHooks,
    )?;
    report(&rec)?;
    if rec.pushed {
        // What went out goes to the peers too, each poke carrying it.
        let repo = machine.repo()?;
        let fleet = machine.fleet_config()?;
        let forge = crate::forge::Forge::new(&machine.config.remote, &machine.paths.state_dir);
        sync::poke::deliver(&machine, &forge, &repo, &fleet.sync.branch, rec.pushed_over);
    }
    untrusted(&rec)
}

/// `fleetkey pull [--every DURATION]`: one cycle, or one per DURATION forever. Each cycle first
/// asks the forge for its head and skips the fetch when nothing moved.
pub fn pull(every: Option<&str>) -> Result<()> {
    let machine = Machine::load()?;
    let Some(every) = every else {
        let rec = sync::cycle(&machine, Network::CheapCheck, &AgentHooks)?;
        report(&rec)?;
        return untrusted(&rec);
    };
    let period: Duration = parse_duration(every)
        .map_err(|problem| ErrorKind::Refused(format!("--every: {problem}")))?;
    if period < Duration::from_secs(1) {
        return Err(ErrorKind::Refused("--every must be at least 1s".into()).into());
    }
    let mut backoff = sync::debounce::Backoff::default();
    loop {
        let wait = match sync::cycle(&machine, Network::CheapCheck, &AgentHooks) {
            Ok(rec) => {
                if let Err(e) = untrusted(&rec) {
                    crate::log::warn(&format!("{e}"));
                }
                backoff.succeed();
                period
            }
            Err(e) if e.is_unreachable() => {
                let d = backoff.fail(sync::debounce::jitter_unit()).max(period);
                crate::log::warn(&format!("{e}; retrying in {}s", d.as_secs()));
                d
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotInitialized { .. }
                        | ErrorKind::Config { .. }
                        | ErrorKind::Revoked { .. }
                ) =>
            {
                return Err(e);
            }
            Err(e) => {
                crate::log::warn(&format!("cycle failed: {e}"));
                period
            }
        };
        sync::watch::sleep(wait);
    }
}

/// `fleetkey watch`: the daemon.
pub fn watch() -> Result<()> {
    let machine = Machine::load()?;
    match sync::watch::run(&machine, &AgentHooks) {
        Ok(()) => Ok(()),
        Err(sync::watch::Critical(e)) => Err(e),
    }
}

/// One refused commit, as the cycle's output names it.
fn say_refused(r: &crate::trust::Refusal) -> Result<()> {
    outln!(
        "fleetkey: refused commit {} (claims {}): {}",
        r.commit,
        r.machine,
        r.why
    )?;
    Ok(())
}

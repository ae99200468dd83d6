//! `fleetkey log [PATH]` and `fleetkey restore PATH [--at REV | --before DATE]`: a managed
//! file's history from git ([`crate::sync::history`]) and an earlier version put back
//! ([`crate::sync::restore`]).

use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::output::outln;
use crate::sync::{self, history, managed};

fn rel_of(machine: &Machine, input: &str) -> Result<String> {
    let cwd = std::env::current_dir().map_err(Error::io(
        "cannot read the current directory",
        std::path::Path::new("."),
    ))?;
    managed::normalize(input, &machine.paths.home, &cwd)
}

/// `fleetkey log [PATH]`: one line per change, newest first.
pub fn log(path: Option<&str>, limit: usize) -> Result<()> {
    let machine = Machine::load()?;
    let rel = path.map(|p| rel_of(&machine, p)).transpose()?;
    let repo = machine.repo()?;
    let entries = history::log(repo.raw(), &machine.config.name, rel.as_deref(), limit)?;
    let mut text = String::new();
    for e in &entries {
        text.push_str(&format!(
            "{}  {}  {:<14} {:<14} {}\n",
            &e.commit.to_string()[..12],
            crate::clock::rfc3339(e.time),
            e.machine,
            e.what,
            e.subject
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
        ));
    }
    if entries.is_empty()
        && let Some(r) = &rel
    {
        text.push_str(&format!("~/{r} has no history in the fleet\n"));
    }
    crate::output::stdout(text.as_bytes())
}

/// `fleetkey restore PATH [--at REV | --before DATE]`.
pub fn restore(path: &str, at: Option<&str>, before: Option<&str>, push: bool) -> Result<()> {
    let machine = Machine::load()?;
    let rel = rel_of(&machine, path)?;
    let which = match (at, before) {
        (Some(rev), _) => history::Which::At(rev.to_string()),
        (None, Some(date)) => {
            history::Which::Before(crate::clock::parse(date).ok_or_else(|| {
                Error::refused(format!("{date:?} is not a date"))
                    .hint("write YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)")
            })?)
        }
        (None, None) => history::Which::Previous,
    };
    let mut change = sync::FleetChange::begin(&machine, sync::Begin::RepairAll)?;
    let repo = &change.repo;
    let plan = sync::plan::Plan::for_machine(&machine)?;
    if plan.fleet.backend == crate::config::Backend::Chezmoi {
        return Err(Error::refused("`fleetkey restore` is the native backend's")
            .hint("with chezmoi, restore the source file with git, then run `fleetkey sync`"));
    }
    let name = &machine.config.name;
    let version = history::find_version(repo.raw(), name, &rel, &which)?;
    let done = sync::restore::restore(
        repo,
        &plan,
        name,
        &rel,
        &version,
        &machine.paths.state_dir,
        crate::clock::now_unix(),
    )?;
    let short = &version.commit.to_string()[..12];
    if !done.changed {
        outln!("fleetkey: ~/{rel} already holds the version of {short}")?;
        return Ok(());
    }
    outln!("fleetkey: ~/{rel} is back to the version of {short}; every machine gets it")?;
    if let Some(c) = &done.copy {
        outln!("  the version it replaced is kept as {}", c.copy.display())?;
    }
    if push {
        change.fleet = plan.fleet;
        change.publish()?;
    }
    Ok(())
}

//! `fleetkey address set DEST | clear`: where peers poke this machine (`[hosts.NAME] address` in
//! fleet.toml), and `fleetkey poke`, what a peer's poke runs here.
//!
//! `set` checks the destination as every address is checked ([`crate::address`]), writes
//! fleet.toml, commits and pushes, as `track` does; offline the commit goes out with the next
//! cycle. `--address` on `init`, `enroll` and `join` asks for the same: a machine that is not a
//! member yet keeps it in the state directory and its first cycle as a member commits it.

use crate::address::Address;
use crate::config::FleetConfig;
use crate::error::{ErrorKind, Result};
use crate::fleet::Machine;
use crate::output::outln;
use crate::paths::Paths;
use crate::sync;
use crate::sync::poke::WANTED;

/// Checks an address given on the command line.
pub fn parse(text: &str) -> Result<Address> {
    Address::parse(text).map_err(|problem| {
        ErrorKind::Refused(format!("the address is not an ssh destination: {problem}"))
            .hint("give `user@host` or `ssh://user@host:port` (letters, digits, `.`, `_`, `-`)")
    })
}

/// `fleetkey address set DEST` (`Some`) or `clear` (`None`).
pub fn set(destination: Option<&str>, push: bool) -> Result<()> {
    let address = destination.map(parse).transpose()?;
    let machine = Machine::load()?;
    let mut change = sync::FleetChange::begin(&machine, sync::Begin::RepairAll)?;
    let mut fleet = change.fleet.clone();
    let name = machine.config.name.clone();
    if fleet.address(&name) == address {
        outln!("fleetkey: nothing to change")?;
        return Ok(());
    }
    fleet.set_address(&name, address.as_ref());
    crate::files::write_atomic(
        &machine.config.repo.join(FleetConfig::FILE),
        fleet.file_text().as_bytes(),
        0o644,
    )?;
    let message = match &address {
        Some(a) => format!("{name}: set its address to {a}"),
        None => format!("{name}: clear its address"),
    };
    change.commit(&[FleetConfig::FILE], &message)?;
    let _ = std::fs::remove_file(machine.paths.state_dir.join(WANTED));
    match &address {
        Some(a) => outln!("fleetkey: peers poke {name} at {a} after each push")?,
        None => outln!("fleetkey: peers no longer poke {name}; it still polls")?,
    }
    if push {
        change.fleet = fleet;
        change.publish()?;
    }
    Ok(())
}

/// Keeps `address` (already checked) for the first cycle as a member to commit.
pub fn want(paths: &Paths, address: &Address) -> Result<()> {
    crate::files::ensure_private_dir(&paths.state_dir)?;
    crate::files::write_atomic(
        &paths.state_dir.join(WANTED),
        format!("{address}\n").as_bytes(),
        0o600,
    )
}

/// `fleetkey poke`: wakes the running watcher, if any, and succeeds whatever happens: the
/// caller is a peer's ssh, and a poke is only ever a hint. Reads nothing from the client
/// (`SSH_ORIGINAL_COMMAND` and stdin are ignored).
pub fn poke() -> Result<()> {
    if let Ok(paths) = Paths::from_env() {
        let woke = sync::poke::notify_watcher(&paths.state_dir);
        crate::log::debug(if woke {
            "poke: the watcher will pull now"
        } else {
            "poke: no watcher runs here"
        });
    }
    Ok(())
}

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
use crate::limits;
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

/// `fleetkey poke`: takes the bundle a peer's poke carries on stdin, if any, into the inbox
/// (at most [`limits::POKE_BUNDLE`] bytes within [`limits::POKE_READ`], see
/// [`sync::carry`]), then wakes the running watcher, if any, whose next cycle verifies it as a
/// fetch. Empty stdin (or a terminal) is a plain poke. `SSH_ORIGINAL_COMMAND` is ignored.
///
/// The caller is a peer's ssh: the watcher is woken whatever happened to the bundle (a poke is
/// at least a hint to fetch). Prints [`sync::carry::ACK`] when it took a bundle; fails, with
/// nothing kept, when what came on stdin was too large, too slow or not a bundle.
pub fn poke() -> Result<()> {
    use std::io::IsTerminal;
    let paths = Paths::from_env()?;
    let stdin = std::io::stdin();
    let received = if stdin.is_terminal() {
        Ok(None)
    } else {
        sync::carry::read_bounded(stdin, limits::POKE_BUNDLE, limits::POKE_READ)
    };
    let taken = match received {
        Ok(Some(bytes)) => sync::carry::spool(&paths.state_dir, &bytes).map(Some),
        Ok(None) => Ok(None),
        Err(why) => Err(ErrorKind::Refused(format!(
            "the bundle this poke carried was not taken: {why}"
        ))
        .into()),
    };
    let woke = sync::poke::notify_watcher(&paths.state_dir);
    crate::log::debug(if woke {
        "poke: the watcher will pull now"
    } else {
        "poke: no watcher runs here"
    });
    if taken?.is_some() {
        outln!("{}", sync::carry::ACK)?;
    }
    Ok(())
}

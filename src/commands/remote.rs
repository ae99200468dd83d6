//! `fleetkey remote set URL`: moves the whole fleet to another forge
//! ([`crate::sync::forge_move`]); every machine follows on its next cycle.

use crate::error::Result;
use crate::fleet::Machine;
use crate::output::outln;
use crate::sync;

/// `fleetkey remote set URL`.
pub fn set(url: &str) -> Result<()> {
    let machine = Machine::load()?;
    if machine.config.remote == url && machine.fleet_config()?.forge.as_deref() == Some(url) {
        outln!("fleetkey: the fleet is already on {url}")?;
        return Ok(());
    }
    let change = sync::FleetChange::begin(&machine, sync::Begin::RepairAll)?;
    crate::authority::require_admin(
        change.repo.root(),
        &machine.config.name,
        "move the fleet's forge",
    )?;
    let moved = sync::forge_move::move_fleet(&change, url)?;
    outln!("fleetkey: the fleet moved from {} to {url}", moved.old)?;
    outln!("  every machine switches on its next cycle")?;
    match &moved.old_told {
        Ok(()) => outln!("  the old forge's last commit says where the fleet went")?,
        Err(why) => outln!(
            "  the old forge was not told ({why}): run `fleetkey remote set {url}` on machines still using it"
        )?,
    }
    Ok(())
}

//! `fleetkey config get [KEY]` and `config set KEY [VALUE…]`: read and change fleet.toml's
//! settings ([`crate::sync::settings`] names and checks them). A change is one commit that
//! names the setting and its new value, pushed at once (offline: exit 75, it goes out with the
//! next cycle), so every machine takes it on its next cycle. Hand edits of fleet.toml in the
//! clone are not needed (a cycle would revert them).

use crate::error::Result;
use crate::fleet::Machine;
use crate::output::outln;
use crate::sync::{self, settings};

/// `fleetkey config get [KEY]`: the value (one line per list entry), or every setting.
pub fn get(key: Option<&str>) -> Result<()> {
    let machine = Machine::load()?;
    let fleet = machine.fleet_config()?;
    match key {
        Some(k) => {
            for line in settings::get(&fleet, settings::key(k)?) {
                outln!("{line}")?;
            }
        }
        None => {
            for k in settings::KEYS {
                let v = settings::get(&fleet, *k);
                let shown = if k.list {
                    format!("[{}]", v.join(", "))
                } else {
                    v.first().cloned().unwrap_or_else(|| "none".into())
                };
                outln!("{} = {shown}", k.name)?;
            }
            outln!(
                "forge = {}",
                fleet.forge.as_deref().unwrap_or("(this machine's remote)")
            )?;
        }
    }
    Ok(())
}

/// `fleetkey config set KEY [VALUE…]`.
pub fn set(key: &str, values: &[String], push: bool) -> Result<()> {
    let machine = Machine::load()?;
    let key = settings::key(key)?;
    let _lock = machine.lock()?;
    let repo = machine.repo()?;
    sync::recover(&repo, true)?;
    if key.name == "ssh_from" {
        // Every machine would refuse a member's commit that changes it.
        crate::authority::require_admin(
            repo.root(),
            &machine.config.name,
            "change whose login keys the fleet admits (ssh_from)",
        )?;
    }
    let plan = sync::plan::Plan::for_machine(&machine)?;
    let fleet = settings::set(&plan.fleet, key, values, &plan.confinement)?;
    let name = &machine.config.name;
    let shown = if values.is_empty() {
        "(none)".to_string()
    } else {
        values.join(" ")
    };
    let message = format!("{name}: config set {} {shown}", key.name);
    // A new literal list changes how stored files read: store them again in the same commit.
    let new_plan = sync::plan::Plan::new(&machine, fleet.clone());
    let head = sync::commit::head_tree(repo.raw())?;
    let (mut upserts, rows) = sync::settings::restore_for_transform(
        repo.raw(),
        &head,
        name,
        &plan.placeholders,
        &new_plan.placeholders,
    )?;
    drop(head);
    let toml = repo
        .raw()
        .blob(fleet.file_text().as_bytes())
        .map_err(crate::error::Error::git("cannot store fleet.toml"))?;
    upserts.push((crate::config::FleetConfig::FILE.to_string(), toml, false));
    if sync::commit::commit_changes(&repo, &upserts, &[], &message)?.is_none() {
        outln!("fleetkey: {} is already {shown}", key.name)?;
        return Ok(());
    }
    let mut manifest = sync::state::Manifest::load(&machine.paths.state_dir);
    for (rel, id) in rows {
        if let Some(e) = manifest.files.get_mut(&rel) {
            e.oid = id.to_string();
        }
    }
    manifest.save(&machine.paths.state_dir)?;
    outln!(
        "fleetkey: {} = {shown} (every machine takes it on its next cycle)",
        key.name
    )?;
    if push {
        sync::push_merging_upstream(&machine, &repo, &fleet)?;
        if key.name == "ssh_from" {
            // Every authorized_keys follows at once on the online peers, as after a revoke.
            crate::commands::lifecycle::revoke::poke_remaining_peers(&machine)?;
        }
    }
    Ok(())
}

//! `fleetkey config get [KEY]`, `config set KEY [VALUE…]` and `config add|remove KEY VALUE…`
//! (lists): read and change fleet.toml's
//! settings ([`crate::sync::settings`] names and checks them). A change is one commit that
//! names the setting and its new value, pushed at once (offline: exit 75, it goes out with the
//! next cycle), so every machine takes it on its next cycle. Hand edits of fleet.toml in the
//! clone are not needed (a cycle would revert them).

use crate::error::Result;
use crate::fleet::Machine;
use crate::output::outln;
use crate::sync::{self, settings};

/// The value of `key` as `get` prints it: fleet.toml's, or for `forge` unset, this machine's
/// remote (every machine keeps its own).
fn value_of(
    machine: &Machine,
    fleet: &crate::config::FleetConfig,
    key: settings::Key,
) -> Vec<String> {
    let v = settings::get(fleet, key);
    if key.name == "forge" && v.is_empty() {
        return vec![format!("{} (this machine's remote)", machine.config.remote)];
    }
    v
}

/// `fleetkey config get [KEY]`: the value (one line per list entry), or every setting.
pub fn get(key: Option<&str>) -> Result<()> {
    let machine = Machine::load()?;
    let fleet = machine.fleet_config()?;
    match key {
        Some(k) => {
            for line in value_of(&machine, &fleet, settings::key(k)?) {
                outln!("{line}")?;
            }
        }
        None => {
            for k in settings::KEYS {
                let v = value_of(&machine, &fleet, *k);
                let shown = if k.list {
                    format!("[{}]", v.join(", "))
                } else {
                    v.first().cloned().unwrap_or_else(|| "none".into())
                };
                outln!("{} = {shown}", k.name)?;
            }
        }
    }
    Ok(())
}

/// How a `config` change came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `config set KEY VALUE…`: the value replaced.
    Set,
    /// `config add KEY VALUE…`: values added to a list.
    Add,
    /// `config remove KEY VALUE…`: values removed from a list.
    Remove,
}

/// `fleetkey config set|add|remove KEY [VALUE…]`.
pub fn change(how: Change, key: &str, values: &[String], push: bool) -> Result<()> {
    let machine = Machine::load()?;
    let key = settings::key(key)?;
    let mut change = sync::FleetChange::begin(&machine, sync::Begin::RepairAll)?;
    let repo = &change.repo;
    if key.name == "ssh_from" {
        // Every machine would refuse a member's commit that changes it.
        crate::authority::require_admin(
            repo.root(),
            &machine.config.name,
            "change whose login keys the fleet admits (ssh_from)",
        )?;
    }
    if key.name == "heal" {
        // Every machine would refuse a member's commit that changes it.
        crate::authority::require_admin(
            repo.root(),
            &machine.config.name,
            "change whether the forge heals itself (heal)",
        )?;
    }
    let plan = sync::plan::Plan::for_machine(&machine)?;
    let before = settings::get(&plan.fleet, key);
    let new_values = match how {
        Change::Set => values.to_vec(),
        Change::Add => settings::edit_list(&plan.fleet, key, values, true)?,
        Change::Remove => settings::edit_list(&plan.fleet, key, values, false)?,
    };
    let fleet = settings::set(&plan.fleet, key, &new_values, &plan.confinement)?;
    let name = &machine.config.name;
    let list = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(" ")
        }
    };
    let shown = list(&settings::get(&fleet, key));
    let message = match how {
        Change::Set => format!("{name}: config set {} {shown}", key.name),
        Change::Add => format!("{name}: config add {} {}", key.name, values.join(" ")),
        Change::Remove => format!("{name}: config remove {} {}", key.name, values.join(" ")),
    };
    // A new literal list changes how stored files read: store them again in the same commit.
    let mut new_plan = sync::plan::Plan::new(&machine, fleet.clone());
    new_plan.placeholders = new_plan
        .placeholders
        .with_secrets(plan.placeholders.secrets().clone());
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
    if sync::commit::commit_changes(repo, &upserts, &[], &message)?.is_none() {
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
    // A set replaces: say what it replaced, so a list entry dropped by mistake is seen.
    let replaced: Vec<String> = before
        .iter()
        .filter(|v| !settings::get(&fleet, key).contains(v))
        .cloned()
        .collect();
    if how == Change::Set && !replaced.is_empty() {
        outln!("  replaced: {}", replaced.join(" "))?;
        if key.list {
            outln!(
                "  (to add to the list instead: `fleetkey config add {} VALUE`)",
                key.name
            )?;
        }
    }
    if push {
        change.fleet = fleet;
        let published = change.publish_and_deliver();
        if key.name == "ssh_from" {
            // Every authorized_keys follows at once on the online peers, as after a revoke.
            crate::commands::lifecycle::revoke::tell_delivery(&published.delivery)?;
        }
        published.pushed?;
    }
    Ok(())
}

//! Moving the fleet to another forge (`fleetkey remote set URL`) and following such a move.
//!
//! A move is one commit on the fleet branch that sets `forge = URL` in fleet.toml
//! (`NAME: remote set URL`). The moving machine pushes the whole branch, that commit included,
//! to the new forge, checks that it arrived, then pushes the same commit to the old forge: the
//! old forge's last word is "the fleet went to URL", in the fleet's own history. Every machine
//! follows on a cycle: after integrating, when the fleet.toml it has integrated names a forge
//! other than its config.toml's `remote`, it pushes nothing more to the old forge, updates
//! config.toml and `origin`, and exchanges with the new forge in the same cycle; a machine that was offline during the move fetches the old
//! forge, meets that commit, and follows it too.
//!
//! Only a `forge` setting in integrated fleet.toml counts (never a ref, a file or a message the
//! forge itself offers), so a forge cannot redirect a machine on its own: it would need a
//! commit the cycle accepts into the fleet's history (with signed commits, a member's). The URL
//! must pass [`crate::forge::check_url`] (no `ext::` helpers, no options). Must never: switch
//! this machine's forge to one that does not hold its fleet branch when `remote set` runs.

use crate::config::FleetConfig;
use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::forge::{self, Forge, PushOutcome};
use crate::repo::FleetRepo;

/// What [`follow`] did.
#[derive(Debug, Default)]
pub struct Followed {
    /// The exchange with the new forge, when this machine switched.
    pub exchanged: Option<super::exchange::Exchanged>,
    /// Why the `forge` of fleet.toml was not followed, when it was refused (for the cycle's
    /// held-back report).
    pub held_back: Option<String>,
}

/// The step after an exchange that saw the integrated fleet.toml name another forge: switch
/// to it (a new [`Forge`]) and exchange with it; a `forge` that fails the check is only
/// reported, and the machine stays.
pub fn follow(
    machine: &Machine,
    forge: &Forge,
    repo: &FleetRepo,
    fleet: &FleetConfig,
    identity: Option<&crate::identity::Identity>,
    at: &str,
    seen: &super::exchange::Exchanged,
) -> Result<Followed> {
    let Some(url) = &seen.moved_to else {
        return Ok(Followed {
            exchanged: None,
            held_back: seen.move_refused.clone(),
        });
    };
    let moved = switch(machine, repo, url)?;
    let new_forge = forge.moved_to(url);
    let x = super::exchange::exchange(
        &moved,
        &new_forge,
        repo,
        fleet,
        identity,
        at,
        super::Network::Full,
    )?;
    Ok(Followed {
        exchanged: Some(x),
        held_back: None,
    })
}

/// Points this machine at `url`: `origin` in the clone, then `remote` in config.toml (atomic).
/// Returns the machine with its new configuration.
pub fn switch(machine: &Machine, repo: &FleetRepo, url: &str) -> Result<Machine> {
    forge::check_url(url).map_err(|why| Error::refused(format!("forge URL refused: {why}")))?;
    repo.set_origin(url)?;
    let mut config = machine.config.clone();
    config.remote = url.to_string();
    config.save(&machine.paths.config_file())?;
    crate::log::info(&format!(
        "the fleet moved: this machine now syncs with {url}"
    ));
    Ok(Machine {
        paths: machine.paths.clone(),
        config,
    })
}

/// Pushes the branch to `url` and checks that the forge's branch is now this clone's HEAD.
pub fn copy_to(repo: &FleetRepo, to: &Forge, branch: &str) -> Result<()> {
    let url = to.remote();
    match to.push_to_url(repo.root(), branch)? {
        PushOutcome::Pushed => {}
        PushOutcome::Rejected => {
            return Err(Error::refused(format!(
                "{url} already holds a {branch} branch that is not this fleet's history up to here"
            ))
            .hint("point `remote set` at an empty repository, or at the forge the fleet already moved to"));
        }
    }
    let head = repo.head().map(|h| h.to_string());
    let arrived = to.remote_head(branch)?;
    if arrived.is_none() || arrived != head {
        return Err(Error::refused(format!(
            "the push to {url} did not arrive: its {branch} is {}, not {}",
            arrived.as_deref().unwrap_or("missing"),
            head.as_deref().unwrap_or("?")
        )));
    }
    Ok(())
}

/// What [`move_fleet`] did.
#[derive(Debug)]
pub struct Moved {
    /// The forge the fleet left.
    pub old: String,
    /// Whether the old forge got the commit that points to the new one.
    pub old_told: Result<(), String>,
}

/// `fleetkey remote set URL`, under the lock: in step with the old forge (when it answers),
/// the `forge = URL` commit, the whole branch to the new forge (checked), this machine
/// switched, and the same commit left on the old forge.
pub fn move_fleet(change: &super::change::FleetChange, url: &str) -> Result<Moved> {
    forge::check_url(url).map_err(|why| Error::refused(format!("forge URL refused: {why}")))?;
    let (machine, repo, old_forge) = (change.machine, &change.repo, change.forge());
    let new_forge = old_forge.moved_to(url);
    let old = machine.config.remote.clone();
    let name = &machine.config.name;
    let fleet = &change.fleet;
    let branch = fleet.sync.branch.clone();
    let old_reachable = match change.publish() {
        Ok(()) => true,
        Err(e) if e.is_unreachable() => {
            crate::log::warn(&format!(
                "the old forge cannot be reached ({e}); machines still on it will need `fleetkey remote set {url}` themselves"
            ));
            false
        }
        Err(e) => return Err(e),
    };
    let mut moved = machine.fleet_config()?;
    moved.forge = Some(url.to_string());
    super::commit::commit_fleet_toml(repo, &moved, &format!("{name}: remote set {url}"))?;
    match new_forge.remote_head(&branch)? {
        None => copy_to(repo, &new_forge, &branch)?,
        Some(h) if Some(h.as_str()) == repo.head().map(|o| o.to_string()).as_deref() => {}
        Some(_) => {
            // The new forge already holds the fleet (another member moved it): join it there.
            repo.set_origin(url)?;
            let there = Machine {
                paths: machine.paths.clone(),
                config: crate::config::MachineConfig {
                    remote: url.to_string(),
                    ..machine.config.clone()
                },
            };
            let joined = super::change::publish(&there, &new_forge, repo, &moved)
                .and_then(|()| copy_to(repo, &new_forge, &branch));
            if let Err(e) = joined {
                repo.set_origin(&old)?;
                return Err(e);
            }
        }
    }
    let _ = switch(machine, repo, url)?;
    let old_told = if old_reachable {
        match old_forge.push_to_url(repo.root(), &branch) {
            Ok(PushOutcome::Pushed) => Ok(()),
            Ok(PushOutcome::Rejected) => Err("it moved on meanwhile".to_string()),
            Err(e) => Err(e.to_string()),
        }
    } else {
        Err("it cannot be reached".to_string())
    };
    Ok(Moved { old, old_told })
}

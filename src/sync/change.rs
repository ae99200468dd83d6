//! One way to change the fleet: every command that commits to the fleet branch and pushes
//! begins, commits and publishes through [`FleetChange`].
//!
//! [`FleetChange::begin`] takes the cycle lock (and with it the [`Forge`] as this machine
//! reaches it), repairs what a killed command left as the [`Begin`] mode asks, opens the clone
//! and reads fleet.toml once; [`FleetChange::commit`] commits the files the command wrote;
//! [`FleetChange::publish`] pushes, merging what the forge gained meanwhile (the exchange of the
//! cycle, verified by the gate), follows a forge move, and delivers the new commits to every
//! peer with an address ([`super::poke::deliver`]), even when the forge refused the push or
//! could not be reached: pokes and peer delivery of a change belong here, in one place.
//!
//! Owns: the start and the end of every fleet-changing command (`secrets`, `track`,
//! `untrack`, `config set`, `address`, `history restore`, `remote set`, `approve`, `enroll
//! --bundle`, `rotate`, `revoke`). Must never: publish without the lock, push a commit the gate
//! refused to build on, or report a change as published that stayed local.

use crate::clock;
use crate::config::FleetConfig;
use crate::error::{ErrorKind, Result};
use crate::fleet::{Locked, Machine};
use crate::forge::Forge;
use crate::repo::FleetRepo;

use super::{Network, backend, exchange, forge_move, recover};

/// fleetkey's own files in the repo, restored from HEAD before a key lifecycle command.
pub const OWN_FILES: &[&str] = &[
    "keys",
    crate::secrets::CIPHERTEXT,
    crate::secrets::RECIPIENTS,
];

/// How a change begins, after the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// The clone as it is, nothing repaired first: the secrets commands (a damaged secrets
    /// file or fleet.toml in the clone is an error to show, never silently reset) and `forge
    /// repair`.
    AsIs,
    /// Repair the whole working tree (after a killed cycle or command): `track`, `untrack`,
    /// `config set`, `address`, `history restore`, `remote set`.
    RepairAll,
    /// Put fleetkey's own files back as HEAD has them, fetch and verify the forge's branch, and
    /// fast-forward the clone to it when that is a fast-forward (an unreachable forge is a
    /// warning: the change is made on the last fetch): the key lifecycle.
    InStep,
}

/// A change of the fleet under way: the lock held, the clone open, fleet.toml read.
pub struct FleetChange<'m> {
    /// This machine.
    pub machine: &'m Machine,
    locked: Locked,
    /// The fleet clone, its commits signed by this machine.
    pub repo: FleetRepo,
    /// The fleet.toml in force when the change began.
    pub fleet: FleetConfig,
}

impl<'m> FleetChange<'m> {
    /// Takes the lock and prepares the clone as `mode` says.
    pub fn begin(machine: &'m Machine, mode: Begin) -> Result<FleetChange<'m>> {
        let locked = machine.lock()?;
        let repo = machine.repo()?;
        match mode {
            Begin::AsIs => {}
            Begin::RepairAll => recover(&repo, true)?,
            Begin::InStep => repo.restore_paths(OWN_FILES)?,
        }
        let fleet = machine.fleet_config()?;
        let change = FleetChange {
            machine,
            locked,
            repo,
            fleet,
        };
        if mode == Begin::InStep {
            change.fast_forward()?;
        }
        Ok(change)
    }

    /// The forge, as the holder of the lock reaches it.
    pub fn forge(&self) -> &Forge {
        &self.locked.forge
    }

    /// Brings the clone up to the forge's verified branch when that is a fast-forward.
    fn fast_forward(&self) -> Result<()> {
        let branch = &self.fleet.sync.branch;
        match crate::gate::fetch_verified(self.machine, self.forge(), &self.repo, branch) {
            Ok(refused) => {
                if !refused.is_empty() {
                    crate::log::warn(&format!(
                        "the forge holds {} commits that are not authentic; working from the last authentic state",
                        refused.len()
                    ));
                }
                if let Some(target) = self.repo.remote_tracking(branch) {
                    self.repo.fast_forward(target)?;
                }
                Ok(())
            }
            Err(e) if e.is_unreachable() => {
                crate::log::warn(&format!(
                    "{e}; working from the last fetch{}",
                    e.advice().map(|a| format!(" ({a})")).unwrap_or_default()
                ));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Commits `paths` (relative to the clone) with `message`, signed by this machine.
    pub fn commit(&self, paths: &[&str], message: &str) -> Result<Option<git2::Oid>> {
        self.repo.commit_paths(paths, message)
    }

    /// Pushes the clone's new commits. When the forge has moved on, this FETCHES its commits
    /// (verified by the gate), MERGES them in memory and pushes again; managed files whose local
    /// side lost that merge get their conflict copies in `$HOME` now (a later cycle could not
    /// tell them from files in step). The rest of what the merge brought is applied by the next
    /// cycle, after it has captured. A fleet that moved to another forge meanwhile is followed,
    /// and the change goes there. Then the new commits are delivered to the peers, whatever
    /// the forge did (see [`FleetChange::publish_and_deliver`]).
    pub fn publish(&self) -> Result<()> {
        self.publish_and_deliver().pushed
    }

    /// [`FleetChange::publish`], also saying what the delivery to the peers did: for the
    /// commands that tell the user which peers have the change (`revoke`, `role`, `config set
    /// ssh_from`).
    pub fn publish_and_deliver(&self) -> Published {
        publish_and_deliver(self.machine, self.forge(), &self.repo, &self.fleet)
    }
}

/// What publishing a change did.
pub struct Published {
    /// The push (and the follow of a forge move): an error when the change stayed here.
    pub pushed: Result<()>,
    /// The delivery of the new commits to the peers, done whatever the push did.
    pub delivery: super::poke::Delivery,
}

/// The push of [`FleetChange::publish`] for a clone and forge the caller holds under the lock
/// (`remote set`, which publishes to the old forge and then joins the new one). It delivers
/// nothing to the peers: the change that holds the lock did when it published.
pub fn publish(
    machine: &Machine,
    forge: &Forge,
    repo: &FleetRepo,
    fleet: &FleetConfig,
) -> Result<()> {
    push(machine, forge, repo, fleet, &mut None)
}

/// Pushes (see [`FleetChange::publish`]), then delivers HEAD over the last fleet commit
/// fetched to the peers, even when the push failed: a forge that is down or holds commits that
/// are not authentic cannot keep a change (a revocation above all) from a reachable peer.
fn publish_and_deliver(
    machine: &Machine,
    forge: &Forge,
    repo: &FleetRepo,
    fleet: &FleetConfig,
) -> Published {
    let mut pushed_over = None;
    let pushed = push(machine, forge, repo, fleet, &mut pushed_over);
    let branch = &fleet.sync.branch;
    // Pushed: over the forge's commit it went on; not pushed: over the last one fetched.
    let base = pushed_over.or_else(|| repo.remote_tracking(branch));
    // A machine that is not an active member has nothing the peers would take.
    let delivery = if crate::gate::may_push(repo).unwrap_or(false) {
        super::poke::deliver(machine, forge, repo, branch, base)
    } else {
        super::poke::Delivery::default()
    };
    Published { pushed, delivery }
}

/// The push of [`publish`]; `pushed_over` receives the forge's commit the push went on.
fn push(
    machine: &Machine,
    forge: &Forge,
    repo: &FleetRepo,
    fleet: &FleetConfig,
    pushed_over: &mut Option<git2::Oid>,
) -> Result<()> {
    let identity = machine.identity().ok();
    let now = clock::now_unix();
    let at = clock::rfc3339(now);
    let x = exchange::exchange(
        machine,
        forge,
        repo,
        fleet,
        identity.as_ref(),
        &at,
        Network::Full,
    )
    .map_err(|e| {
        if e.is_forge_failure() {
            exchange::with_waiting_hint(e, repo, &fleet.sync.branch)
        } else {
            e
        }
    })?;
    *pushed_over = x.pushed_over.filter(|_| x.pushed);
    backend::keep_lost(machine, repo, &x.lost, now)?;
    if let Some(h) = &x.healed {
        crate::log::warn(&h.line());
    }
    if let Some(why) = &x.not_healed {
        crate::log::warn(&why.to_string());
    }
    if !x.refused.is_empty() {
        return Err(ErrorKind::Untrusted {
            refused: x.refused.len(),
        }
        .into());
    }
    if x.not_member {
        crate::log::warn(
            "this machine is not an active member of the fleet; its commits stay local",
        );
    }
    if let Some(refused) = &x.tree_refused {
        crate::log::warn(&format!(
            "{}; your change is committed here and goes out once the forge is healed",
            crate::gate::tree_held_back(refused)
        ));
    }
    // The fleet moved to another forge meanwhile: the change goes there.
    let followed = forge_move::follow(machine, forge, repo, fleet, identity.as_ref(), &at, &x)?;
    if let Some(why) = followed.held_back {
        crate::log::warn(&why);
    }
    if let Some(more) = followed.exchanged {
        backend::keep_lost(machine, repo, &more.lost, now)?;
    }
    Ok(())
}

//! The exchange with the forge: fetch, integrate, push; again on a rejected push, at most
//! [`PUSH_TRIES`] times.
//!
//! A forge whose branch the gate refuses is healed here, in the same loop: the last authentic
//! state goes back with a lease on the refused tip ([`super::heal`]).
//!
//! Owns: the only network steps of the cycle and of the commands that change the fleet (through
//! [`crate::forge`], the `git` command line). Must never: leave a rebase or merge half done on
//! disk (integration happens in memory, see [`super::integrate`]), or report a rejected push as
//! success.

use crate::config::FleetConfig;
use crate::error::{ErrorKind, Result};
use crate::fleet::Machine;
use crate::forge::{Forge, PushOutcome};
use crate::gate::{self, may_push, refuse_tree, verify_tracking};
use crate::identity::Identity;
use crate::repo::FleetRepo;
use crate::trust::Refusal;

use super::{Network, heal, integrate};

/// How many times a rejected push is retried after integrating again.
pub const PUSH_TRIES: usize = 5;

/// What the exchange with the forge did.
#[derive(Debug, Default)]
pub struct Exchanged {
    /// Whether our commits went out.
    pub pushed: bool,
    /// The forge's commit the push went on top of (the last fleet commit fetched): what the
    /// peers most likely hold, the base of the bundle a poke carries.
    pub pushed_over: Option<git2::Oid>,
    /// Managed files whose local side lost a conflict.
    pub lost: Vec<integrate::LostFile>,
    /// Other conflicts resolved.
    pub other_conflicts: usize,
    /// Commits of the forge refused as not authentic: nothing was integrated or pushed.
    pub refused: Vec<Refusal>,
    /// This machine is not (or no longer) an active member: nothing was pushed.
    pub not_member: bool,
    /// The forge's (authentic) commit not taken because of what its tree holds (nothing of it
    /// was integrated or pushed on top of): a [`crate::trust::Reason::Tree`].
    pub tree_refused: Option<Refusal>,
    /// The forge's host branches (NAME → commit), when the cheap check listed them.
    pub hosts: Option<std::collections::BTreeMap<String, String>>,
    /// The forge the integrated fleet.toml moves the fleet to, when it names another one:
    /// nothing more went to this forge (the caller follows the move, see
    /// [`super::forge_move::follow`]).
    pub moved_to: Option<String>,
    /// Why the `forge` the integrated fleet.toml names is not followed, when it is refused.
    pub move_refused: Option<String>,
    /// The forge held commits that are not authentic (or had lost commits verified here) and
    /// this exchange put the last authentic state back ([`super::heal`]).
    pub healed: Option<heal::Healed>,
    /// Why the forge's refused commits were not healed now, when they were not.
    pub not_healed: Option<heal::NotNow>,
}

/// The forge the clone's fleet.toml moves the fleet to, if it names one other than `forge`;
/// `Err(report)` for a URL that fails [`crate::forge::check_url`] (not followed).
pub fn forge_named(repo: &FleetRepo, forge: &Forge) -> std::result::Result<Option<String>, String> {
    let Ok(fleet) = FleetConfig::load(repo.root()) else {
        return Ok(None);
    };
    match fleet.forge {
        Some(url) if url != forge.remote() => match crate::forge::check_url(&url) {
            Ok(()) => Ok(Some(url)),
            Err(why) => Err(format!(
                "fleet.toml: forge is refused ({why}); this machine stays on its forge"
            )),
        },
        _ => Ok(None),
    }
}

/// Fetch, integrate, push; again on a rejected push, at most [`PUSH_TRIES`] times. Returns
/// what it saw, a forge move included (the caller decides what to do about it).
pub fn exchange(
    machine: &Machine,
    forge: &Forge,
    repo: &FleetRepo,
    fleet: &FleetConfig,
    identity: Option<&Identity>,
    at: &str,
    network: Network,
) -> Result<Exchanged> {
    let mut out = exchange_with(machine, forge, repo, fleet, identity, at, network)?;
    match forge_named(repo, forge) {
        Ok(moved) => out.moved_to = moved,
        Err(report) => out.move_refused = Some(report),
    }
    Ok(out)
}

/// The loop of [`exchange`].
fn exchange_with(
    machine: &Machine,
    forge: &Forge,
    repo: &FleetRepo,
    fleet: &FleetConfig,
    identity: Option<&Identity>,
    at: &str,
    network: Network,
) -> Result<Exchanged> {
    let branch = fleet.sync.branch.as_str();
    let raw = repo.raw();
    let remote = forge.remote();
    let tracking = integrate::tracking_ref(branch);
    let mut out = Exchanged::default();
    // A heal under way: the refused forge tip the push must replace.
    let mut lease: Option<heal::Lease> = None;
    for attempt in 0..PUSH_TRIES {
        let known = raw.refname_to_id(&tracking).ok();
        // Only local commits on top of what we last saw of the forge: push straight away (one
        // round trip); a rejection sends us through fetch and integrate on the next try.
        let ahead = attempt == 0
            && network == Network::CheapCheck
            && match (repo.head(), known) {
                (Some(h), Some(k)) => h != k && raw.graph_descendant_of(h, k).unwrap_or(false),
                _ => false,
            };
        if !ahead {
            let skip_fetch = attempt == 0 && network == Network::CheapCheck && known.is_some() && {
                // One ls-remote for the fleet branch and the host branches (gathering).
                let refs = forge.remote_refs(Some(branch))?;
                let head = refs
                    .head
                    .as_deref()
                    .and_then(|h| git2::Oid::from_str(h).ok());
                out.hosts = Some(refs.hosts);
                head == known
            };
            if !skip_fetch {
                forge.fetch(repo.root(), branch)?;
            }
            // Verify what the forge holds BEFORE integrating anything from it.
            let refused = verify_tracking(machine, repo, branch)?;
            // What an earlier try saw is replaced by what this fetch brought.
            lease = None;
            out.refused.clear();
            if !refused.is_empty() {
                // The forge heals itself: the last authentic state goes back, with a lease on
                // the refused tip (at most once a minute, unless `[trust] heal = false`).
                let now = crate::clock::now_unix();
                match heal::allowed(machine, fleet, now) {
                    Ok(()) if may_push(repo)? => {
                        lease = Some(heal::begin(machine, repo, branch, &refused, now)?);
                        out.refused = refused;
                    }
                    Ok(()) => {
                        out.refused = refused;
                        return Ok(out);
                    }
                    Err(why) => {
                        out.refused = refused;
                        out.not_healed = Some(why);
                        return Ok(out);
                    }
                }
            }
            // Even an authentic commit may come from a compromised member: its tree is
            // checked before anything of it reaches the clone.
            if let Some(refusal) = refuse_tree(machine, raw, &tracking)? {
                out.tree_refused = Some(refusal);
                return Ok(out);
            }
            // The fleet revoked this machine: nothing of its own can join the fleet's history
            // any more, so nothing is integrated (the cycle ends saying so).
            if let Ok(tip) = raw.refname_to_id(&tracking)
                && crate::roster::revocation(raw, tip, &machine.config.name).is_some()
            {
                out.not_member = true;
                return Ok(out);
            }
            let done = integrate::integrate(
                raw,
                branch,
                &machine.config.name,
                identity,
                at,
                fleet.backend,
                repo.signer()?,
            )?;
            out.lost.extend(done.lost);
            out.other_conflicts += done.other_conflicts;
            crate::fault::point("sync:integrated");
        }
        let head = repo.head();
        // Healing pushes even when nothing is new here: the forge holds the refused tip.
        if head.is_none() || (lease.is_none() && head == raw.refname_to_id(&tracking).ok()) {
            return Ok(out);
        }
        if !may_push(repo)? {
            out.not_member = true;
            return Ok(out);
        }
        // The fleet moved to another forge: nothing more goes to this one, whose last commit
        // says where the fleet went (the cycle follows the move next).
        if matches!(forge_named(repo, forge), Ok(Some(_))) {
            return Ok(out);
        }
        // Never push what the fleet would refuse (checked with the same verifier).
        gate::replay_refused_own_commits(machine, repo, branch)?;
        let head = repo.head();
        let over = raw.refname_to_id(&tracking).ok();
        let pushed = match &lease {
            Some(l) => forge.push_to(
                repo.root(),
                &format!("refs/heads/{branch}"),
                branch,
                Some(&l.bad.to_string()),
                false,
            )?,
            None => forge.push(repo.root(), branch)?,
        };
        match pushed {
            PushOutcome::Pushed if lease.is_some() => {
                let l = lease.take().expect("a heal under way");
                out.healed = Some(heal::finish(
                    machine,
                    repo,
                    branch,
                    l,
                    crate::clock::now_unix(),
                )?);
                out.refused.clear();
                out.pushed = true;
                out.pushed_over = over;
                crate::fault::point("sync:healed");
                return Ok(out);
            }
            PushOutcome::Pushed => {
                // git updates the tracking ref itself; make sure of it for a URL remote.
                if let Some(h) = head {
                    let _ = raw.reference(&tracking, h, true, "fleetkey: pushed");
                }
                out.pushed = true;
                out.pushed_over = over;
                crate::fault::point("sync:pushed");
                return Ok(out);
            }
            PushOutcome::Rejected => {
                crate::log::debug(&format!(
                    "push rejected (try {}), integrating again",
                    attempt + 1
                ));
            }
        }
    }
    // Healing a forge that is rewritten faster than a heal takes: the refusals stand, and the
    // next cycle tries again (peers still reach each other through pokes).
    if lease.is_some() {
        crate::log::warn(&format!(
            "the forge {remote} moved during each of {PUSH_TRIES} tries to heal it; nothing was overwritten"
        ));
        return Ok(out);
    }
    Err(ErrorKind::Refused(format!(
        "the forge {remote} kept moving: {PUSH_TRIES} pushes in a row were rejected; your commits are kept"
    ))
    .hint("run `fleetkey sync` again"))
}

/// `e` (a forge failure) with a hint that says how many commits made here wait to go out, so
/// the message never claims a change that was not made.
pub fn with_waiting_hint(
    e: crate::error::Error,
    repo: &FleetRepo,
    branch: &str,
) -> crate::error::Error {
    let waiting = match (repo.head(), repo.remote_tracking(branch)) {
        (Some(local), Some(remote)) => repo
            .raw()
            .graph_ahead_behind(local, remote)
            .map(|(ahead, _)| ahead)
            .unwrap_or(0),
        (Some(_), None) => 1,
        _ => 0,
    };
    e.hint_before(&match waiting {
        0 => "nothing made here waits to go out".to_string(),
        1 => "1 commit made here is kept and goes out with the next `fleetkey sync`".to_string(),
        n => format!("{n} commits made here are kept and go out with the next `fleetkey sync`"),
    })
}

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

/// One exchange's fixed inputs, so that each rule of the loop is a method of its own.
struct Session<'a> {
    machine: &'a Machine,
    forge: &'a Forge,
    repo: &'a FleetRepo,
    fleet: &'a FleetConfig,
    identity: Option<&'a Identity>,
    at: &'a str,
    network: Network,
    /// The fleet branch.
    branch: &'a str,
    /// Its remote-tracking ref in the clone.
    tracking: String,
}

/// Whether the loop goes on after a step.
enum Step {
    /// On to the next step (or the next try).
    Go,
    /// The exchange is over: return what it saw.
    Done,
}

/// The loop of [`exchange`]: take in what the forge holds (unless only our own commits are
/// new), then push; again on a rejected push.
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
    let s = Session {
        machine,
        forge,
        repo,
        fleet,
        identity,
        at,
        network,
        branch,
        tracking: integrate::tracking_ref(branch),
    };
    let mut out = Exchanged::default();
    // A heal under way: the refused forge tip the push must replace.
    let mut lease: Option<heal::Lease> = None;
    for attempt in 0..PUSH_TRIES {
        let known = repo.raw().refname_to_id(&s.tracking).ok();
        if !s.only_ours_ahead(attempt, known)
            && let Step::Done = s.take_in(attempt, known, &mut out, &mut lease)?
        {
            return Ok(out);
        }
        if let Step::Done = s.push(&mut out, &mut lease)? {
            return Ok(out);
        }
        crate::log::debug(&format!(
            "push rejected (try {}), integrating again",
            attempt + 1
        ));
    }
    let remote = forge.remote();
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

impl Session<'_> {
    /// Only local commits on top of what we last saw of the forge: push straight away (one
    /// round trip); a rejection sends us through fetch and integrate on the next try.
    fn only_ours_ahead(&self, attempt: usize, known: Option<git2::Oid>) -> bool {
        attempt == 0
            && self.network == Network::CheapCheck
            && match (self.repo.head(), known) {
                (Some(h), Some(k)) => {
                    h != k && self.repo.raw().graph_descendant_of(h, k).unwrap_or(false)
                }
                _ => false,
            }
    }

    /// Fetches the fleet branch, unless the cheap check (one ls-remote for the fleet branch
    /// and the host branches, for gathering) finds the forge where we last saw it.
    fn fetch_if_moved(
        &self,
        attempt: usize,
        known: Option<git2::Oid>,
        out: &mut Exchanged,
    ) -> Result<()> {
        let unchanged = attempt == 0 && self.network == Network::CheapCheck && known.is_some() && {
            let refs = self.forge.remote_refs(Some(self.branch))?;
            let head = refs
                .head
                .as_deref()
                .and_then(|h| git2::Oid::from_str(h).ok());
            out.hosts = Some(refs.hosts);
            head == known
        };
        if !unchanged {
            self.forge.fetch(self.repo.root(), self.branch)?;
        }
        Ok(())
    }

    /// Fetch, verify, then integrate what the forge holds: [`Step::Done`] when something in
    /// it stops the exchange (refused and not healed now, a refused tree, this machine
    /// revoked).
    fn take_in(
        &self,
        attempt: usize,
        known: Option<git2::Oid>,
        out: &mut Exchanged,
        lease: &mut Option<heal::Lease>,
    ) -> Result<Step> {
        self.fetch_if_moved(attempt, known, out)?;
        // Verify what the forge holds BEFORE integrating anything from it.
        if let Step::Done = self.refusals(out, lease)? {
            return Ok(Step::Done);
        }
        let raw = self.repo.raw();
        // Even an authentic commit may come from a compromised member: its tree is
        // checked before anything of it reaches the clone.
        if let Some(refusal) = refuse_tree(self.machine, raw, &self.tracking)? {
            out.tree_refused = Some(refusal);
            return Ok(Step::Done);
        }
        // The fleet revoked this machine: nothing of its own can join the fleet's history
        // any more, so nothing is integrated (the cycle ends saying so).
        if let Ok(tip) = raw.refname_to_id(&self.tracking)
            && crate::roster::revocation(raw, tip, &self.machine.config.name).is_some()
        {
            out.not_member = true;
            return Ok(Step::Done);
        }
        let done = integrate::integrate(
            raw,
            self.branch,
            &self.machine.config.name,
            self.identity,
            self.at,
            self.fleet.backend,
            self.repo.signer()?,
        )?;
        out.lost.extend(done.lost);
        out.other_conflicts += done.other_conflicts;
        crate::fault::point("sync:integrated");
        Ok(Step::Go)
    }

    /// The gate's verdict on the fetched branch. Refused commits are healed: the last
    /// authentic state goes back with a lease on the refused tip (at most once a minute,
    /// unless `[trust] heal = false`); [`Step::Done`] when they stand.
    fn refusals(&self, out: &mut Exchanged, lease: &mut Option<heal::Lease>) -> Result<Step> {
        let refused = verify_tracking(self.machine, self.repo, self.branch)?;
        // What an earlier try saw is replaced by what this fetch brought.
        *lease = None;
        out.refused.clear();
        if refused.is_empty() {
            return Ok(Step::Go);
        }
        let now = crate::clock::now_unix();
        match heal::allowed(self.machine, self.fleet, now) {
            Ok(()) if may_push(self.repo)? => {
                *lease = Some(heal::begin(
                    self.machine,
                    self.repo,
                    self.branch,
                    &refused,
                    now,
                )?);
                out.refused = refused;
                Ok(Step::Go)
            }
            Ok(()) => {
                out.refused = refused;
                Ok(Step::Done)
            }
            Err(why) => {
                out.refused = refused;
                out.not_healed = Some(why);
                Ok(Step::Done)
            }
        }
    }

    /// Pushes our commits (with the heal's lease when one is under way): [`Step::Go`] only
    /// for a rejected push, which the loop answers with another fetch and integrate.
    fn push(&self, out: &mut Exchanged, lease: &mut Option<heal::Lease>) -> Result<Step> {
        let raw = self.repo.raw();
        let head = self.repo.head();
        // Healing pushes even when nothing is new here: the forge holds the refused tip.
        if head.is_none() || (lease.is_none() && head == raw.refname_to_id(&self.tracking).ok()) {
            return Ok(Step::Done);
        }
        if !may_push(self.repo)? {
            out.not_member = true;
            return Ok(Step::Done);
        }
        // The fleet moved to another forge: nothing more goes to this one, whose last commit
        // says where the fleet went (the cycle follows the move next).
        if matches!(forge_named(self.repo, self.forge), Ok(Some(_))) {
            return Ok(Step::Done);
        }
        // Never push what the fleet would refuse (checked with the same verifier).
        gate::replay_refused_own_commits(self.machine, self.repo, self.branch)?;
        let head = self.repo.head();
        let over = raw.refname_to_id(&self.tracking).ok();
        let pushed = match lease.as_ref() {
            Some(l) => self.forge.push_to(
                self.repo.root(),
                &format!("refs/heads/{}", self.branch),
                self.branch,
                Some(&l.bad.to_string()),
                false,
            )?,
            None => self.forge.push(self.repo.root(), self.branch)?,
        };
        match pushed {
            PushOutcome::Rejected => return Ok(Step::Go),
            PushOutcome::Pushed => match lease.take() {
                Some(l) => {
                    out.healed = Some(heal::finish(
                        self.machine,
                        self.repo,
                        self.branch,
                        l,
                        crate::clock::now_unix(),
                    )?);
                    out.refused.clear();
                    crate::fault::point("sync:healed");
                }
                None => {
                    // git updates the tracking ref itself; make sure of it for a URL remote.
                    if let Some(h) = head {
                        let _ = raw.reference(&self.tracking, h, true, "fleetkey: pushed");
                    }
                    crate::fault::point("sync:pushed");
                }
            },
        }
        out.pushed = true;
        out.pushed_over = over;
        Ok(Step::Done)
    }
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

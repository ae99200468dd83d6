//! The sync cycle, step by step as docs/sync.md tells it:
//!
//! 1. lock (one flock shared by the watcher, the puller and every manual command);
//! 2. repair what a killed command left ([`recover`]);
//! 3. a member that has not yet published its poke key or the address `--address` asked for
//!    commits them ([`poke`]); capture every managed path into the clone and commit it
//!    ([`backend::capture_and_commit`]); a receiver captures nothing;
//! 4. take the bundles peers' pokes handed over: verify each as a fetch is verified, integrate
//!    it ([`carry`]); then fetch, integrate the forge's commits in memory, push; again on a
//!    rejected push ([`exchange`]); a forge holding commits that are not authentic is healed
//!    ([`heal`]); when the integrated fleet.toml moved the fleet to another forge, the same with
//!    the new one ([`forge_move`]); a receiver whose rotate waits takes its new identity once
//!    the secrets are encrypted to it ([`adopt`]);
//! 5. apply the result to the live files, with conflict copies of what lost (on a receiver,
//!    of every local edit too: "this machine only receives") ([`backend::apply_head`]);
//! 6. publish this machine's status and collected files on its host branch when due, gather
//!    the other machines' ([`collect`]; a failure there is held back, never fails the cycle);
//! 7. record the cycle in the state directory ([`state`]), refresh the background agents when
//!    fleet.toml changed; unlock.
//!
//! Used by `fleetkey sync` (once), `pull` (once or every DURATION) and `watch` (after each
//! settled change, each poll and each poke; after a cycle that pushed, the watcher pokes its
//! peers in the background, [`poke`]). Local work goes through libgit2; only fetch, push and the cheap ref check
//! run the `git` command line ([`crate::forge`]). When the forge cannot be reached, every local
//! commit stays, the local state is still applied, the cycle is recorded as `offline` and the
//! command exits 75.
//!
//! Crash safety: the clone's working tree and index belong to fleetkey. A marker file is
//! present while a cycle runs; a cycle that finds it repairs the whole working tree, so a cycle
//! killed anywhere leaves nothing the next one trips on. No rebase or merge state is ever
//! written.
//!
//! Must never: overwrite a live file holding an edit that is not captured or kept as a
//! conflict copy.

pub mod adopt;
pub mod apply;
pub mod backend;
pub mod capture;
pub mod carry;
pub mod change;
pub mod chezmoi;
pub mod collect;
pub mod commit;
pub mod conflicts;
pub mod debounce;
pub mod exchange;
pub mod forge_move;
pub mod heal;
pub mod history;
pub mod ignore;
pub mod integrate;
pub mod managed;
pub mod overrides;
pub mod placeholder;
pub mod plan;
pub mod poke;
pub mod preview;
pub mod recover;
pub mod restore;
pub mod setter;
pub mod settings;
pub mod state;
pub mod tree;
pub mod watch;

use std::time::Instant;

use crate::clock;
use crate::config::FleetConfig;
use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::forge::Forge;

pub use change::{Begin, FleetChange};
pub use recover::recover;
use state::{CycleRecord, CycleResult, Manifest};

/// The state file present while a cycle runs (see [`recover`]).
pub const UNFINISHED: &str = "cycle-unfinished";

/// What a cycle hands to the layer above it (the background agents: desktop notifications,
/// agent files), given by the command that runs the cycle, so that the cycle never imports
/// `agents`. Each call is best effort: it never fails or delays the cycle.
pub trait CycleHooks {
    /// The cycle made conflict copies (`notify = true` in config.toml): tell the user.
    fn conflict_copies(&self, machine: &Machine, copies: &[state::ConflictRecord]);
    /// The cycle is done; `before` is the fleet.toml it started with (a new one may change
    /// the agents).
    fn cycle_done(&self, machine: &Machine, before: &FleetConfig);
    /// The agents as a cycle can tell without asking the service manager, for the host
    /// status this machine publishes.
    fn agent_states(
        &self,
        machine: &Machine,
        fleet: &FleetConfig,
    ) -> Vec<collect::status::AgentState>;
}

/// One cycle's context, made once per cycle: this machine (its config.toml as it is now), the
/// forge it reaches, how it talks to it, the time, and the hooks of the layer above.
pub struct Cycle<'a> {
    /// This machine.
    pub machine: &'a Machine,
    /// The forge, as the holder of the lock reaches it.
    pub forge: &'a Forge,
    /// How this cycle talks to the forge.
    pub network: Network,
    /// When the cycle started (seconds since the epoch).
    pub now: i64,
    /// `fleetkey sync` run by hand: capture reads a fresh file at once unless it changes under
    /// the read.
    pub by_hand: bool,
    /// The layer above.
    pub hooks: &'a dyn CycleHooks,
}

/// How a cycle talks to the forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Fetch, integrate and push.
    Full,
    /// First ask the forge for its head (`git ls-remote`); fetch only when it moved.
    CheapCheck,
    /// No network at all: capture, commit and apply.
    Offline,
}

/// Runs one cycle under the lock and records it in the state directory.
pub fn cycle(machine: &Machine, network: Network, hooks: &dyn CycleHooks) -> Result<CycleRecord> {
    let locked = machine.lock()?;
    cycle_inner(
        machine,
        &locked.forge,
        network,
        collect::Pace::PerPoll,
        hooks,
    )
}

/// Like [`cycle`], for `fleetkey sync` run by hand: this machine's host branch is published
/// at once when its content changed, not at most once per `poll` as from the agents.
pub fn cycle_by_hand(
    machine: &Machine,
    network: Network,
    hooks: &dyn CycleHooks,
) -> Result<CycleRecord> {
    let locked = machine.lock()?;
    cycle_inner(machine, &locked.forge, network, collect::Pace::Now, hooks)
}

fn cycle_inner(
    machine: &Machine,
    forge: &Forge,
    network: Network,
    pace: collect::Pace,
    hooks: &dyn CycleHooks,
) -> Result<CycleRecord> {
    // config.toml as it is now: an earlier cycle of this process may have followed a forge move.
    let fresh;
    let machine = match crate::config::MachineConfig::load(&machine.paths.config_file()) {
        Ok(config) if config != machine.config => {
            fresh = Machine {
                paths: machine.paths.clone(),
                config,
            };
            &fresh
        }
        _ => machine,
    };
    // The forge of config.toml as it is now: a move makes a new one (and a new connection).
    let moved;
    let forge = if forge.remote() == machine.config.remote {
        forge
    } else {
        moved = forge.moved_to(&machine.config.remote);
        &moved
    };
    crate::log::new_cycle();
    let started = Instant::now();
    let now = clock::now_unix();
    let mut rec = CycleRecord {
        started: clock::rfc3339(now),
        ..CycleRecord::default()
    };
    let mut hosts = None;
    let cx = Cycle {
        machine,
        forge,
        network,
        now,
        by_hand: pace == collect::Pace::Now,
        hooks,
    };
    let result = run(&cx, &mut rec, &mut hosts);
    if result.is_ok() && !rec.refused.is_empty() {
        rec.result = CycleResult::Untrusted;
    }
    if let Err(e) = &result {
        rec.result = if e.is_unreachable() {
            CycleResult::Offline
        } else {
            CycleResult::Error
        };
        rec.error = Some(e.to_string());
    }
    // Publishing and gathering need the forge: not after an offline cycle. After a failed
    // one they still try (the others see the failure), quietly: the cycle's error says it.
    if !matches!(rec.result, CycleResult::Offline) {
        collect::step(&cx, pace, &mut rec, hosts);
    }
    rec.duration_ms = started.elapsed().as_millis() as u64;
    // Each problem once, however many steps ran into it.
    let mut seen = std::collections::BTreeSet::new();
    rec.held_back.retain(|h| seen.insert(h.clone()));
    for h in &rec.held_back {
        crate::log::warn_once_per_cycle(&format!("held back: {h}"));
    }
    if let Err(e) = rec.save(&machine.paths.state_dir) {
        crate::log::warn(&format!("cannot record the cycle: {e}"));
    }
    result.map(|()| rec)
}

/// The cycle's steps, in order.
/// `hosts` receives the forge's host branches when the cheap ref check listed them.
fn run(
    cx: &Cycle,
    rec: &mut CycleRecord,
    hosts: &mut Option<std::collections::BTreeMap<String, String>>,
) -> Result<()> {
    let machine = cx.machine;
    let (repo, marker) = begin(cx)?;
    // Capture by the fleet.toml in force (the last valid one when the clone's is not), every
    // path of it checked; a refused entry is reported by apply, with the fleet.toml it uses.
    let plan = plan::Plan::in_force(machine, machine.keep_valid_fleet()?);
    let fleet = plan.fleet.clone();
    let mut pass = Pass {
        rec,
        hosts,
        manifest: Manifest::load(&machine.paths.state_dir),
        missing: Vec::new(),
        lost: Vec::new(),
    };
    // A machine that is not an active member (waiting for approval, or revoked) captures
    // nothing: members would refuse its commits. Membership is asked again after the fetch,
    // so the first cycle after an approval captures too.
    let member = crate::gate::may_push(&repo)?;
    if member {
        pass.missing = capture_as_member(cx, &repo, &plan, &mut pass.manifest, pass.rec)?;
    }
    drop(plan);
    // A lost identity fails the cycle at its end, after the rest is done.
    let identity = machine.identity();
    let offline = exchange_phase(cx, &repo, &fleet, identity.as_ref().ok(), member, &mut pass)?;
    if !crate::gate::may_push(&repo)? && machine.revocation().is_none() {
        crate::log::info("this machine is not an active member of the fleet: nothing is captured");
    }
    let identity = identity_after_rotate(machine, &repo, identity, pass.rec);
    apply_phase(cx, &repo, identity.as_ref().ok(), &mut pass)?;
    cx.hooks.cycle_done(machine, &fleet);
    let _ = std::fs::remove_file(&marker);
    outcome(machine, &repo, &fleet, identity.err(), offline)
}

/// What the steps of one cycle hand each other.
struct Pass<'r> {
    /// The cycle's record.
    rec: &'r mut CycleRecord,
    /// The forge's host branches, when the cheap ref check listed them.
    hosts: &'r mut Option<std::collections::BTreeMap<String, String>>,
    /// What is in step (`applied.json`), read once, written by apply.
    manifest: Manifest,
    /// Managed paths missing here (captured as such).
    missing: Vec<String>,
    /// Managed files whose local side lost a conflict in an integration.
    lost: Vec<integrate::LostFile>,
}

/// The cycle's start: a trust root to check the forge against, the clone repaired from
/// whatever a killed command left, and the marker that stays until the cycle ends (a cycle
/// that finds it repairs the whole tree). Returns the clone and the marker's path.
fn begin(cx: &Cycle) -> Result<(crate::repo::FleetRepo, std::path::PathBuf)> {
    let machine = cx.machine;
    let state_dir = &machine.paths.state_dir;
    // A machine set up before signed history has nothing to check the forge against.
    crate::trust::pinned_root(&machine.config)?;
    let repo = machine.repo()?;
    let marker = state_dir.join(UNFINISHED);
    let full_repair = marker.exists();
    crate::files::ensure_private_dir(state_dir)?;
    std::fs::write(&marker, b"").map_err(Error::io("cannot write", &marker))?;
    recover(&repo, full_repair)?;
    Ok((repo, marker))
}

/// Takes in what peers handed over with their pokes, then exchanges with the forge (and with
/// the one a fleet.toml move names); a machine approved by what the fetch brought captures
/// and pushes at once. Returns the forge failure the cycle ends with, when there was one:
/// anything the clone holds is still applied.
fn exchange_phase(
    cx: &Cycle,
    repo: &crate::repo::FleetRepo,
    fleet: &FleetConfig,
    identity: Option<&crate::identity::Identity>,
    member: bool,
    pass: &mut Pass,
) -> Result<Option<Error>> {
    let (machine, forge) = (cx.machine, cx.forge);
    let at = clock::rfc3339(cx.now);
    // What peers handed over with their pokes, verified as a fetch is, before the forge: a
    // forge that is down or holds commits that are not authentic cannot keep it from here.
    let taken = carry::take_inbox(machine, forge, repo, fleet, identity, &at)?;
    pass.lost.extend(taken.lost);
    pass.rec.conflicts += taken.other_conflicts;
    if cx.network == Network::Offline {
        return Ok(None);
    }
    // The exchange says what it saw; when the integrated fleet.toml moved the fleet to
    // another forge, the cycle follows it and exchanges with the new one.
    let exchanged = exchange::exchange(machine, forge, repo, fleet, identity, &at, cx.network)
        .and_then(|x| {
            let followed = forge_move::follow(machine, forge, repo, fleet, identity, &at, &x);
            pass.absorb(x);
            followed
        });
    let followed = match exchanged {
        Ok(followed) => followed,
        // Any forge failure still applies what the clone holds; only an unreachable forge
        // makes the cycle "offline" (retried with backoff).
        Err(e) if e.is_forge_failure() => return Ok(Some(e)),
        Err(e) => return Err(e),
    };
    if let Some(x) = followed.exchanged {
        pass.absorb(x);
    }
    pass.rec.held_back.extend(followed.held_back);
    // Approved by what this fetch brought: capture now, and push it.
    let now_member = !member && crate::gate::may_push(repo)? && machine.revocation().is_none();
    if !now_member {
        return Ok(None);
    }
    let plan = plan::Plan::for_machine(machine)?;
    pass.missing = capture_as_member(cx, repo, &plan, &mut pass.manifest, pass.rec)?;
    drop(plan);
    match exchange::exchange(
        machine,
        forge,
        repo,
        fleet,
        identity,
        &at,
        Network::CheapCheck,
    ) {
        Ok(x) => {
            pass.absorb(x);
            Ok(None)
        }
        Err(e) if e.is_forge_failure() => Ok(Some(e)),
        Err(e) => Err(e),
    }
}

impl Pass<'_> {
    /// Records what one exchange saw in the cycle's record.
    fn absorb(&mut self, x: exchange::Exchanged) {
        let rec = &mut *self.rec;
        rec.held_back
            .extend(x.tree_refused.as_ref().map(crate::gate::tree_held_back));
        rec.pushed |= x.pushed;
        if x.pushed && rec.pushed_over.is_none() {
            rec.pushed_over = x.pushed_over;
        }
        rec.refused.extend(x.refused);
        if x.healed.is_some() {
            rec.healed = x.healed;
        }
        if let Some(why) = x.not_healed {
            rec.not_healed = Some(why.to_string());
        }
        rec.conflicts += x.other_conflicts;
        self.lost.extend(x.lost);
        if x.hosts.is_some() {
            *self.hosts = x.hosts;
        }
    }
}

/// A receiver's rotate waits for the fleet to re-encrypt the secrets to its new identity:
/// once they are, the new identity is the one this cycle applies with.
fn identity_after_rotate(
    machine: &Machine,
    repo: &crate::repo::FleetRepo,
    identity: Result<crate::identity::Identity>,
    rec: &mut CycleRecord,
) -> Result<crate::identity::Identity> {
    match adopt::adopt_waiting_identity(machine, repo) {
        Ok(true) => machine.identity(),
        Ok(false) => identity,
        Err(e) => {
            rec.held_back.push(format!(
                "this machine's new identity (from its rotate) is not in use yet: {}",
                crate::error::chain(&e)
            ));
            identity
        }
    }
}

/// Applies the clone's HEAD to the live files (conflict copies of what lost, told to the
/// user when `notify` is on).
fn apply_phase(
    cx: &Cycle,
    repo: &crate::repo::FleetRepo,
    identity: Option<&crate::identity::Identity>,
    pass: &mut Pass,
) -> Result<()> {
    let machine = cx.machine;
    let applied = backend::apply_head(
        machine,
        repo,
        identity,
        &pass.lost,
        &mut pass.manifest,
        cx.now,
        &pass.missing,
    )?;
    let rec = &mut *pass.rec;
    rec.applied = applied.changed;
    rec.held_back.extend(applied.held_back);
    rec.conflicts += applied.conflicts.len();
    if machine.config.notify && !applied.conflicts.is_empty() {
        cx.hooks.conflict_copies(machine, &applied.conflicts);
    }
    rec.head = repo.head().map(|o| o.to_string());
    Ok(())
}

/// How the cycle ends once everything it could do is done: a machine the fleet threw out is
/// told so, and so is one that lost the key to the secrets (it captured and applied, but it
/// is not "synced"); then the forge failure, if any, with a hint when commits wait.
fn outcome(
    machine: &Machine,
    repo: &crate::repo::FleetRepo,
    fleet: &FleetConfig,
    identity_err: Option<Error>,
    offline: Option<Error>,
) -> Result<()> {
    if let Some(r) = machine.revocation() {
        return Err(r.into());
    }
    if let Some(e) = identity_err
        && repo.root().join(crate::secrets::CIPHERTEXT).exists()
    {
        return Err(e);
    }
    match offline {
        Some(e) => Err(exchange::with_waiting_hint(e, repo, &fleet.sync.branch)),
        None => Ok(()),
    }
}

/// A member's capture: its poke key and wanted address first (a failure there only means
/// peers cannot poke it yet), then every managed path, committed. Returns the managed paths
/// missing here.
fn capture_as_member(
    cx: &Cycle,
    repo: &crate::repo::FleetRepo,
    plan: &plan::Plan,
    manifest: &mut Manifest,
    rec: &mut CycleRecord,
) -> Result<Vec<String>> {
    let machine = cx.machine;
    if let Err(e) = poke::publish_key(machine, repo) {
        crate::log::warn(&format!("cannot publish this machine's poke key: {e}"));
    }
    if let Err(e) = poke::adopt_wanted_address(machine, repo) {
        crate::log::warn(&format!("cannot set this machine's address: {e}"));
    }
    if crate::authority::role_in(repo.root(), &machine.config.name)
        == crate::authority::Role::Receiver
    {
        // A receiver changes nothing the fleet shares: members would refuse its commits.
        crate::log::info("this machine only receives (role receiver): nothing is captured");
        return Ok(Vec::new());
    }
    backend::capture_and_commit(machine, repo, plan, manifest, rec, cx.by_hand)
}

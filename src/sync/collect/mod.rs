//! Fleet-wide collection and status (the old kit's pull-fleet), the cycle's last step.
//!
//! Each machine publishes ONE signed orphan commit on its branch `fleetkey/host/NAME`,
//! force-pushed each time (the forge never keeps a history of it): `status.json`
//! ([`status::HostStatus`]) and the files of fleet.toml's `[collect] paths`, under `files/REL`,
//! or under `sealed/REL` age-encrypted to the fleet's recipients with `[collect] encrypt`.
//! Every machine fetches the host branches and materialises the active members' files into
//! `~/.local/share/fleetkey/collected/host=NAME/REL` ([`gather`]).
//!
//! When: the cycle runs this step after apply (from `sync`, `pull` and the watcher). A machine
//! publishes when its status (minus its times) or a collected file changed, or when its last
//! publication is older than [`HEARTBEAT`] (so the others can tell it is alive), and from the
//! puller and the watcher at most once per `poll` (`sync`, run by hand, publishes at once).
//! Gathering fetches only when the forge's host branches moved: the puller's cheap ref check
//! lists them in the same `git ls-remote`. An idle cycle reads no collected file (a stat each)
//! and runs no extra `git`.
//!
//! Trust: a host branch is used only when its commit's signature verifies under the active
//! signing key of the very machine the branch is named for; any other branch (a non-member's,
//! one signed by another member's key, a revoked key's) is ignored and reported in the cycle's
//! held-back list and by `fleetkey fleet`. Its tree is checked ([`crate::confine::check_tree`])
//! and every name in it must be a plain relative path, so nothing escapes `host=NAME/`.
//!
//! Must never: fail the cycle (a failure here is held back and logged), read a collected
//! path that confinement refuses, or write outside `collected/`.

pub mod gather;
pub mod publish;
pub mod status;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::confine::Stamp;
use crate::error::Result;
use crate::files;
use crate::fleet::Machine;

use super::state::CycleRecord;
use super::{Cycle, Network};

/// The state file of this step (`~/.local/state/fleetkey/collect.json`).
pub const STATE_FILE: &str = "collect.json";

/// A machine republishes at least this often, even with nothing changed.
pub const HEARTBEAT: i64 = 60 * 60;

/// A machine whose last publication is older than this (and than three polls) is silent.
pub const SILENT: i64 = 3 * HEARTBEAT;

/// Largest state file read.
const STATE_LIMIT: u64 = 64 << 20;

/// What this step remembers between cycles. Names, ids, stamps and times only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CollectState {
    /// The digest of what was last published (status without its times, and the files).
    #[serde(default)]
    pub digest: Option<String>,
    /// When it was published (seconds since the epoch).
    #[serde(default)]
    pub published: i64,
    /// The commit published.
    #[serde(default)]
    pub commit: Option<String>,
    /// The status published.
    #[serde(default)]
    pub status: Option<status::HostStatus>,
    /// Each collected path (relative to `$HOME`): its stamp and blob id when last read, so an
    /// unchanged file is not read again.
    #[serde(default)]
    pub files: BTreeMap<String, (Stamp, String)>,
    /// The secrets file's blob id, and the names of its conflicts then.
    #[serde(default)]
    pub secrets: Option<(String, Vec<String>)>,
    /// What was gathered from each machine.
    #[serde(default)]
    pub hosts: BTreeMap<String, gather::Gathered>,
    /// The host branches ignored by the last gathering, each with why.
    #[serde(default)]
    pub ignored: Vec<String>,
}

impl CollectState {
    /// Reads the state (empty when missing or unreadable: the next cycle publishes and
    /// materialises again, which loses nothing).
    pub fn load(state_dir: &Path) -> CollectState {
        files::read_limited(&state_dir.join(STATE_FILE), STATE_LIMIT)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, state_dir: &Path) -> Result<()> {
        files::ensure_private_dir(state_dir)?;
        let text = serde_json::to_vec(self).expect("state serializes");
        files::write_atomic(&state_dir.join(STATE_FILE), &text, 0o600)
    }
}

/// `~/.local/share/fleetkey/collected/`: one `host=NAME/` directory per machine.
pub fn collected_dir(machine: &Machine) -> PathBuf {
    machine.paths.data_dir.join("collected")
}

/// How often this process may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// At once when the content changed (`fleetkey sync` run by hand).
    Now,
    /// At most once per `poll` (the watcher and the puller).
    PerPoll,
}

/// The cycle's step: publish this machine's branch when due, then gather the others'.
/// `hosts` is the forge's host branches when the cheap ref check listed them. Never fails the
/// cycle: what goes wrong is held back in `rec` and logged.
pub fn step(
    cx: &Cycle,
    pace: Pace,
    rec: &mut CycleRecord,
    hosts: Option<BTreeMap<String, String>>,
) {
    let machine = cx.machine;
    if cx.network == Network::Offline {
        return;
    }
    let mut state = CollectState::load(&machine.paths.state_dir);
    let before = serde_json::to_vec(&state).ok();
    let outcome = run(cx, pace, rec, hosts, &mut state);
    match outcome {
        Ok(()) => {}
        // The cycle failed already and says why; this step only tried its best.
        Err(e) if rec.result == super::state::CycleResult::Error => {
            crate::log::debug(&format!("fleet-wide collection after a failed cycle: {e}"));
        }
        Err(e) => {
            let why = format!("fleet-wide collection: {}", crate::error::chain(&e));
            crate::log::warn(&why);
            rec.held_back.push(why);
        }
    }
    rec.held_back.extend(state.ignored.iter().cloned());
    if serde_json::to_vec(&state).ok() != before
        && let Err(e) = state.save(&machine.paths.state_dir)
    {
        crate::log::warn(&format!("cannot record the collection state: {e}"));
    }
}

fn run(
    cx: &Cycle,
    pace: Pace,
    rec: &mut CycleRecord,
    hosts: Option<BTreeMap<String, String>>,
    state: &mut CollectState,
) -> Result<()> {
    let (machine, forge) = (cx.machine, cx.forge);
    let repo = machine.repo()?;
    let fleet = machine.fleet_config()?;
    let mut hosts = match hosts {
        Some(h) => h,
        None => forge.remote_refs(None)?.hosts,
    };
    let mine = &machine.config.name;
    // A machine that is not an active member publishes nothing: the others would ignore it.
    if crate::gate::may_push(&repo)? {
        let forge_has = hosts.get(mine).cloned();
        let limit_per_poll = pace == Pace::PerPoll;
        if let Some(commit) = publish::publish_if_due(
            cx,
            &repo,
            &fleet,
            rec,
            state,
            forge_has.as_deref(),
            limit_per_poll,
        )? {
            hosts.insert(mine.clone(), commit);
        }
    }
    gather::gather(machine, forge, &repo, &hosts, state)
}

/// The machines as `fleet` shows them: this machine's last published status and every other
/// machine's gathered one, with the branches ignored.
pub fn known_statuses(machine: &Machine) -> (BTreeMap<String, status::HostStatus>, Vec<String>) {
    let state = CollectState::load(&machine.paths.state_dir);
    let mut out: BTreeMap<String, status::HostStatus> = state
        .hosts
        .into_iter()
        .map(|(name, g)| (name, g.status))
        .collect();
    if let Some(own) = state.status {
        out.insert(machine.config.name.clone(), own);
    }
    (out, state.ignored)
}

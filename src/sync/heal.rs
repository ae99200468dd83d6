//! The forge heals itself: a cycle (or a fleet-changing command) that finds the forge's branch
//! holding commits that are not authentic, or a forge that lost commits this machine verified
//! (a rewind), puts the last authentic state back, with this machine's own work and the honest
//! commits members made before the refused ones.
//!
//! The steps, shared with `fleetkey forge repair` (which a person runs, and which asks first):
//! 1. [`honest_base`]: what of the forge's branch is kept. The refused tip itself when it is
//!    authentic as a commit and only fails the forge's rule (a rewind: it does not contain the
//!    last forge tip verified here, which `trust.json` remembers), else the newest authentic
//!    commit below it, else the last authentic forge tip. `origin/BRANCH` is put there, so the
//!    exchange checks its tree and integrates it as it does any fetch;
//! 2. [`keep_refused`]: the refused tip is kept under `refs/fleetkey/refused/…` in the clone;
//! 3. the exchange integrates and pushes with `--force-with-lease` against the exact refused tip
//!    this machine saw: a forge that moved again meanwhile is not overwritten (the exchange
//!    fetches, verifies and tries again);
//! 4. [`finish`]: the pushed tip becomes the verified forge tip, the record is written.
//!
//! Only the last verified forge tip (in `trust.json`) and the commits descending from it count
//! as "verified here": the heal pushes a tip that contains it, so nothing this machine verified
//! is lost, and the honest machines that verified less accept it (it descends from what they
//! verified). Two machines healing at once: one lease wins, the other's push is rejected and
//! it integrates the winner's tip like any new forge commit.
//!
//! Owns: the heal rule, its limit ([`HEAL_EVERY`] per machine, `[trust] heal = false` turns it
//! off) and `healed.json`, the record of the last heal (for `status`, `doctor` and `fleet`).
//! Must never: push over a forge tip it did not refuse (the lease), push a tip that lacks the
//! last forge tip verified here, heal more often than the limit, or drop a refused commit
//! without keeping it under a ref.

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::config::FleetConfig;
use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::repo::{FleetRepo, tracking_ref};
use crate::trust::{self, Reason, Refusal, TrustState, Verdict, Verifier};

use super::state::{CycleRecord, CycleResult};

/// The state file holding the last heal ([`Healed`]).
pub const HEALED: &str = "healed.json";

/// A machine heals at most once in this many seconds.
pub const HEAL_EVERY: i64 = 60;

/// How long after a heal `status`, `doctor` and `fleet` still show it (seconds): a week.
pub const HEAL_SHOWN: i64 = 7 * 86_400;

/// Where refused forge tips are kept in the clone.
pub const REFUSED_PREFIX: &str = "refs/fleetkey/refused/";

/// A heal this machine made: what the forge held, and what it holds now. Never holds file
/// content (ids, names, counts and the refusals' sentences).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healed {
    /// When (seconds since the epoch).
    pub at: i64,
    /// [`Healed::at`] as RFC 3339.
    pub at_text: String,
    /// The fleet branch.
    pub branch: String,
    /// The refused forge tip that was replaced (hex).
    pub bad: String,
    /// What the forge's branch holds now (hex).
    pub head: String,
    /// Where the refused commits are kept in this machine's clone.
    pub kept: String,
    /// Commits the forge held that it no longer does (all kept under [`Healed::kept`]).
    pub dropped: usize,
    /// Commits the forge did not hold that it holds now: commits it had lost (a rewind) and
    /// this machine's own new work.
    pub restored: usize,
    /// The forge had lost commits this machine verified (a rewind).
    pub rewound: bool,
    /// Why the forge's commits were refused.
    pub refused: Vec<Refusal>,
}

impl Healed {
    /// The last heal, if any (an unreadable record is no record: it only feeds reports and
    /// the limit, which then allows one heal).
    pub fn load(state_dir: &std::path::Path) -> Option<Healed> {
        let bytes = crate::files::read_limited(&state_dir.join(HEALED), 1 << 20).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The last heal, when it is recent enough to show ([`HEAL_SHOWN`]).
    pub fn recent(state_dir: &std::path::Path, now: i64) -> Option<Healed> {
        Healed::load(state_dir).filter(|h| now - h.at < HEAL_SHOWN)
    }

    /// Writes the record atomically (0600).
    pub fn save(&self, state_dir: &std::path::Path) -> Result<()> {
        crate::files::ensure_private_dir(state_dir)?;
        let text = serde_json::to_vec(self).expect("the heal record serializes");
        crate::files::write_atomic(&state_dir.join(HEALED), &text, 0o600)
    }

    /// The heal in one line, for the cycle's output, the watcher's log and `status`.
    pub fn line(&self) -> String {
        let short = |c: &str| c[..c.len().min(12)].to_string();
        let what = if self.rewound {
            "had lost commits this machine verified"
        } else {
            "held commits that are not authentic"
        };
        format!(
            "HEALED the forge at {}: its {} {what} (tip {}); this machine pushed {} back ({} commits restored, {} dropped there, kept here under {})",
            self.at_text,
            self.branch,
            short(&self.bad),
            short(&self.head),
            self.restored,
            self.dropped,
            self.kept
        )
    }
}

/// Why a machine does not heal the forge now (`Display`: the sentence the cycle logs and
/// `status` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotNow {
    /// `[trust] heal = false` in fleet.toml.
    Disabled,
    /// This machine healed the forge `ago` seconds ago.
    TooSoon {
        /// Seconds since the last heal.
        ago: i64,
    },
}

impl std::fmt::Display for NotNow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotNow::Disabled => f.write_str(
                "not healed: [trust] heal = false; after checking, run `fleetkey forge repair`",
            ),
            NotNow::TooSoon { ago } => write!(
                f,
                "not healed yet: this machine healed the forge {ago}s ago and heals at most once a minute (the forge may be spammed: `fleetkey revoke` names the credential to remove)"
            ),
        }
    }
}

/// Whether this machine may heal now: `[trust] heal` and the once-a-minute limit.
pub fn allowed(
    machine: &Machine,
    fleet: &FleetConfig,
    now: i64,
) -> std::result::Result<(), NotNow> {
    limit(
        fleet,
        Healed::load(&machine.paths.state_dir).map(|h| h.at),
        now,
    )
}

/// The rule of [`allowed`], given when this machine last healed (`last`, seconds since the
/// epoch).
fn limit(fleet: &FleetConfig, last: Option<i64>, now: i64) -> std::result::Result<(), NotNow> {
    if !fleet.trust.heal {
        return Err(NotNow::Disabled);
    }
    match last {
        // A clock that went back counts as "long ago": it never blocks healing for hours.
        Some(at) if (0..HEAL_EVERY).contains(&(now - at)) => Err(NotNow::TooSoon { ago: now - at }),
        _ => Ok(()),
    }
}

/// A heal under way: the refused tip it replaces (the lease) and what it drops there.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The refused forge tip this machine saw: the push must find exactly it.
    pub bad: git2::Oid,
    /// Where the refused commits are kept.
    pub kept: String,
    /// Commits of the forge that the heal drops there (kept under [`Lease::kept`]).
    pub dropped: usize,
    /// Why the forge's commits were refused.
    pub refused: Vec<Refusal>,
}

/// Starts a heal after [`crate::gate::verify_tracking`] refused the forge's branch (its tip is
/// at [`trust::REFUSED_TIP_REF`]): puts `origin/BRANCH` on the [`honest_base`] and keeps the
/// refused tip under a ref. The caller integrates and pushes with the lease.
pub fn begin(
    machine: &Machine,
    repo: &FleetRepo,
    branch: &str,
    refused: &[Refusal],
    now: i64,
) -> Result<Lease> {
    let raw = repo.raw();
    let bad = raw
        .refname_to_id(trust::REFUSED_TIP_REF)
        .map_err(Error::git("cannot find the refused forge tip"))?;
    honest_base(machine, repo, branch, bad)?;
    let root = trust::pinned_root(&machine.config)?;
    let dropped = dropped(repo, branch, root, bad)?.len();
    let kept = keep_refused(raw, bad, now)?;
    Ok(Lease {
        bad,
        kept,
        dropped,
        refused: refused.to_vec(),
    })
}

/// Puts `origin/BRANCH` on what of the refused forge tip `bad` may be kept: `bad` itself when
/// it is authentic as a commit (it fails only the forge's rule: a rewind, or a history that
/// lost commits verified here), else the newest authentic commit below it, else whatever
/// [`crate::gate::verify_tracking`] left there (the last authentic forge tip). Nothing is
/// saved: what is integrated is verified again when it is pushed ([`finish`]).
pub fn honest_base(
    machine: &Machine,
    repo: &FleetRepo,
    branch: &str,
    bad: git2::Oid,
) -> Result<()> {
    let raw = repo.raw();
    let root = trust::pinned_root(&machine.config)?;
    let mut state = TrustState::load(raw, &machine.paths.state_dir, root)?;
    let mut verifier = Verifier::new(raw);
    let base = match verifier.verify(&mut state, bad, false)? {
        Verdict::Authentic { .. } => Some(bad),
        Verdict::Refused(_) => verifier.best_authentic,
    };
    if let Some(base) = base {
        raw.reference(
            &tracking_ref(branch),
            base,
            true,
            "fleetkey: the honest part of the refused forge tip",
        )
        .map_err(Error::git("cannot set the forge's tracking ref"))?;
    }
    Ok(())
}

/// The commits reachable from the refused tip `bad` and from nothing this machine keeps
/// (`origin/BRANCH`, HEAD, the trust root): what the forge loses when it is repaired.
pub fn dropped(
    repo: &FleetRepo,
    branch: &str,
    root: git2::Oid,
    bad: git2::Oid,
) -> Result<Vec<git2::Oid>> {
    let raw = repo.raw();
    let mut walk = raw
        .revwalk()
        .map_err(Error::git("cannot walk the history"))?;
    walk.push(bad)
        .map_err(Error::git("cannot walk the history"))?;
    if let Ok(good) = raw.refname_to_id(&tracking_ref(branch)) {
        let _ = walk.hide(good);
    }
    if let Some(h) = repo.head() {
        let _ = walk.hide(h);
    }
    let _ = walk.hide(root);
    Ok(walk.filter_map(|o| o.ok()).collect())
}

/// Keeps the refused tip `bad` under `refs/fleetkey/refused/TIMESTAMP-ID` in the clone;
/// returns the ref's name.
pub fn keep_refused(raw: &git2::Repository, bad: git2::Oid, now: i64) -> Result<String> {
    let name = format!(
        "{REFUSED_PREFIX}{}-{}",
        clock::compact(now),
        &bad.to_string()[..12]
    );
    raw.reference(&name, bad, true, "fleetkey: refused forge tip, kept")
        .map_err(Error::git("cannot keep the refused commits"))?;
    Ok(name)
}

/// After the forge took `head` in place of the refused tip: `origin/BRANCH` follows, `head` is
/// verified as the forge's tip (so the next fetch is checked against it), the refused tip's
/// marker goes, and the last cycle's refusals are cleared (the forge no longer holds them).
pub fn settle(machine: &Machine, repo: &FleetRepo, branch: &str, head: git2::Oid) -> Result<()> {
    let raw = repo.raw();
    let _ = raw.reference(&tracking_ref(branch), head, true, "fleetkey: healed");
    let root = trust::pinned_root(&machine.config)?;
    let mut state = TrustState::load(raw, &machine.paths.state_dir, root)?;
    match Verifier::new(raw).verify(&mut state, head, true)? {
        Verdict::Authentic { .. } => state.save(&machine.paths.state_dir)?,
        Verdict::Refused(r) => crate::log::warn(&format!(
            "the repaired tip {head} does not verify here ({}); the next cycle checks the forge again",
            r.first().map(|r| r.why.to_string()).unwrap_or_default()
        )),
    }
    if let Ok(mut r) = raw.find_reference(trust::REFUSED_TIP_REF) {
        let _ = r.delete();
    }
    clear_refusals(machine);
    Ok(())
}

/// Ends a heal whose push the forge took: [`settle`], then the record ([`HEALED`]). The
/// caller says so loudly ([`Healed::line`]).
pub fn finish(
    machine: &Machine,
    repo: &FleetRepo,
    branch: &str,
    lease: Lease,
    now: i64,
) -> Result<Healed> {
    let raw = repo.raw();
    let head = repo
        .head()
        .ok_or_else(|| Error::refused("the fleet clone has no commit"))?;
    let restored = {
        let mut walk = raw
            .revwalk()
            .map_err(Error::git("cannot walk the history"))?;
        walk.push(head)
            .map_err(Error::git("cannot walk the history"))?;
        let _ = walk.hide(lease.bad);
        walk.count()
    };
    settle(machine, repo, branch, head)?;
    let healed = Healed {
        at: now,
        at_text: clock::rfc3339(now),
        branch: branch.to_string(),
        bad: lease.bad.to_string(),
        head: head.to_string(),
        kept: lease.kept,
        dropped: lease.dropped,
        restored,
        rewound: lease
            .refused
            .iter()
            .any(|r| matches!(r.why, Reason::Rewound { .. })),
        refused: lease.refused,
    };
    healed.save(&machine.paths.state_dir)?;
    Ok(healed)
}

/// The last cycle's record without its refusals (the forge no longer holds them).
pub fn clear_refusals(machine: &Machine) {
    if let Some(mut rec) = CycleRecord::load(&machine.paths.state_dir)
        && !rec.refused.is_empty()
    {
        rec.refused.clear();
        if rec.result == CycleResult::Untrusted {
            rec.result = CycleResult::Ok;
        }
        let _ = rec.save(&machine.paths.state_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_heals_at_most_once_a_minute_unless_heal_is_off() {
        let mut fleet = FleetConfig::default();
        assert_eq!(limit(&fleet, None, 1_000), Ok(()));
        assert_eq!(
            limit(&fleet, Some(1_000), 1_059),
            Err(NotNow::TooSoon { ago: 59 })
        );
        assert_eq!(limit(&fleet, Some(1_000), 1_060), Ok(()));
        // A clock that went back never blocks healing.
        assert_eq!(limit(&fleet, Some(5_000), 1_000), Ok(()));
        fleet.trust.heal = false;
        assert_eq!(limit(&fleet, None, 1_000), Err(NotNow::Disabled));
        assert!(NotNow::Disabled.to_string().contains("forge repair"));
    }

    #[test]
    fn heal_is_on_by_default_and_off_by_fleet_toml() {
        let fleet: FleetConfig = toml::from_str("").unwrap();
        assert!(fleet.trust.heal);
        assert!(!fleet.to_toml().contains("[trust]"), "{}", fleet.to_toml());
        let off: FleetConfig = toml::from_str("[trust]\nheal = false\n").unwrap();
        assert!(!off.trust.heal);
        assert!(off.to_toml().contains("heal = false"));
    }

    #[test]
    fn a_heal_says_what_it_did_in_one_line() {
        let h = Healed {
            at: 0,
            at_text: "2026-12-03T08:00:00Z".into(),
            branch: "main".into(),
            bad: "0123456789abcdef0123".into(),
            head: "fedcba9876543210fedc".into(),
            kept: "refs/fleetkey/refused/20261203T080000Z-0123456789ab".into(),
            dropped: 3,
            restored: 1,
            rewound: false,
            refused: Vec::new(),
        };
        assert_eq!(
            h.line(),
            "HEALED the forge at 2026-12-03T08:00:00Z: its main held commits that are not authentic (tip 0123456789ab); this machine pushed fedcba987654 back (1 commits restored, 3 dropped there, kept here under refs/fleetkey/refused/20261203T080000Z-0123456789ab)"
        );
    }
}

//! The exchange with the forge: fetch, integrate, push; again on a rejected push, at most
//! [`PUSH_TRIES`] times.
//!
//! Owns: the only network steps of the cycle and of the commands that change the fleet (through
//! [`crate::forge`], the `git` command line). Must never: leave a rebase or merge half done on
//! disk (integration happens in memory, see [`super::integrate`]), or report a rejected push as
//! success.

use crate::clock;
use crate::config::FleetConfig;
use crate::confine;
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Machine;
use crate::forge::{self, PushOutcome};
use crate::identity::Identity;
use crate::repo::FleetRepo;
use crate::trust::{self, Refusal, TrustState, Verdict};

use super::{Network, backend, integrate};

/// How many times a rejected push is retried after integrating again.
pub const PUSH_TRIES: usize = 5;

/// What the exchange with the forge did.
#[derive(Debug, Default)]
pub struct Exchanged {
    /// Whether our commits went out.
    pub pushed: bool,
    /// Managed files whose local side lost a conflict.
    pub lost: Vec<integrate::LostFile>,
    /// Other conflicts resolved.
    pub other_conflicts: usize,
    /// Commits of the forge refused as not authentic: nothing was integrated or pushed.
    pub refused: Vec<Refusal>,
    /// This machine is not (or no longer) an active member: nothing was pushed.
    pub not_member: bool,
    /// Why the forge's (authentic) commit was not taken because of what its tree holds
    /// (nothing of it was integrated or pushed on top of).
    pub tree_refused: Option<String>,
    /// The forge's host branches (NAME → commit), when the cheap check listed them.
    pub hosts: Option<std::collections::BTreeMap<String, String>>,
}

/// Fetch, integrate, push; again on a rejected push, at most [`PUSH_TRIES`] times.
pub fn exchange(
    machine: &Machine,
    repo: &FleetRepo,
    fleet: &FleetConfig,
    identity: Option<&Identity>,
    at: &str,
    network: Network,
) -> Result<Exchanged> {
    let branch = fleet.sync.branch.as_str();
    let raw = repo.raw();
    let remote = &machine.config.remote;
    let tracking = integrate::tracking_ref(branch);
    let mut out = Exchanged::default();
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
                let refs = forge::remote_refs(remote, Some(branch))?;
                let head = refs
                    .head
                    .as_deref()
                    .and_then(|h| git2::Oid::from_str(h).ok());
                out.hosts = Some(refs.hosts);
                head == known
            };
            if !skip_fetch {
                fetch_retrying(repo, remote, branch)?;
            }
            // Verify what the forge holds BEFORE integrating anything from it.
            let refused = verify_tracking(machine, repo, branch)?;
            if !refused.is_empty() {
                out.refused = refused;
                return Ok(out);
            }
            // Even an authentic commit may come from a compromised member: its tree is
            // checked before anything of it reaches the clone.
            if let Some(why) = refuse_tree(machine, raw, &tracking)? {
                out.tree_refused = Some(why);
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
        if head.is_none() || head == raw.refname_to_id(&tracking).ok() {
            return Ok(out);
        }
        if !may_push(repo)? {
            out.not_member = true;
            return Ok(out);
        }
        // The fleet moved to another forge: nothing more goes to this one, whose last commit
        // says where the fleet went (the cycle follows the move next).
        if matches!(super::forge_move::follow_target(machine), Ok(Some(_))) {
            return Ok(out);
        }
        match forge::push(repo.root(), remote, branch)? {
            PushOutcome::Pushed => {
                // git updates the tracking ref itself; make sure of it for a URL remote.
                if let Some(h) = head {
                    let _ = raw.reference(&tracking, h, true, "fleetkey: pushed");
                }
                out.pushed = true;
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
    Err(ErrorKind::Refused(format!(
        "the forge {remote} kept moving: {PUSH_TRIES} pushes in a row were rejected; your commits are kept"
    ))
    .hint("run `fleetkey sync` again"))
}

/// The state file holding the last forge commit whose tree passed [`confine::check_tree`] (so
/// an unchanged forge is not walked again every cycle).
pub const TREE_CHECKED: &str = "tree-checked";

/// Checks the tree of the forge's commit at `tracking` before anything of it is used: only
/// regular files and directories, no `.git`, `.gitmodules`, `.gitattributes` (a symlink
/// checked out into the clone could redirect a write, or reach the clone's own `.git`).
/// Returns why it is refused, or `None`.
pub fn refuse_tree(
    machine: &Machine,
    raw: &git2::Repository,
    tracking: &str,
) -> Result<Option<String>> {
    let Ok(tip) = raw.refname_to_id(tracking) else {
        return Ok(None);
    };
    let marker = machine.paths.state_dir.join(TREE_CHECKED);
    let tip_hex = tip.to_string();
    if std::fs::read_to_string(&marker).is_ok_and(|t| t.trim() == tip_hex) {
        return Ok(None);
    }
    let tree = raw
        .find_commit(tip)
        .and_then(|c| c.tree())
        .map_err(Error::git("cannot read the forge's commit"))?;
    match confine::check_tree(raw, &tree) {
        Ok(()) => {
            let _ = crate::files::write_atomic(&marker, format!("{tip_hex}\n").as_bytes(), 0o600);
            Ok(None)
        }
        Err(violations) => {
            let shown: Vec<String> = violations.iter().take(3).map(ToString::to_string).collect();
            let more = violations.len().saturating_sub(3);
            Ok(Some(format!(
                "the forge's commit {} is refused: {}{}; this machine keeps its last state and its own commits until a commit without them arrives",
                &tip_hex[..12],
                shown.join("; "),
                if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                }
            )))
        }
    }
}

/// Whether this machine's commits may go to the forge: its signing key is active in HEAD's
/// roster (a pending machine, or one revoked, pushes nothing: members would refuse it).
pub fn may_push(repo: &FleetRepo) -> Result<bool> {
    let signer = repo.signer()?;
    Ok(trust::signs_for(
        repo.raw(),
        &signer.name,
        signer.key().public(),
    ))
}

/// Fetches the forge's branch and verifies it; see [`verify_tracking`].
pub fn fetch_verified(machine: &Machine, repo: &FleetRepo, branch: &str) -> Result<Vec<Refusal>> {
    fetch_retrying(repo, &machine.config.remote, branch)?;
    verify_tracking(machine, repo, branch)
}

/// Verifies `origin/BRANCH` (just fetched) against this machine's trust state. When it is not
/// authentic, the refused tip is kept under [`trust::REFUSED_TIP_REF`] and `origin/BRANCH` is
/// put back on the last authentic tip, so nothing downstream (integrate, fast-forward, status)
/// ever sees the refused commits; the refusals are returned.
pub fn verify_tracking(machine: &Machine, repo: &FleetRepo, branch: &str) -> Result<Vec<Refusal>> {
    let raw = repo.raw();
    let tracking = integrate::tracking_ref(branch);
    let Ok(tip) = raw.refname_to_id(&tracking) else {
        return Ok(Vec::new());
    };
    let root = trust::pinned_root(&machine.config)?;
    let state_dir = &machine.paths.state_dir;
    let mut state = TrustState::load(raw, state_dir, root)?;
    let before = state.clone();
    let mut verifier = trust::Verifier::new(raw);
    let verdict = verifier.verify(&mut state, tip, true)?;
    if state != before || !state_dir.join(trust::STATE_FILE).exists() {
        state.save(state_dir)?;
    }
    match verdict {
        Verdict::Authentic { checked } => {
            if checked > 0 {
                crate::log::debug(&format!("verified {checked} new commits of the forge"));
            }
            if let Ok(mut r) = raw.find_reference(trust::REFUSED_TIP_REF) {
                let _ = r.delete();
            }
            Ok(Vec::new())
        }
        Verdict::Refused(refused) => {
            raw.reference(
                trust::REFUSED_TIP_REF,
                tip,
                true,
                "fleetkey: refused forge tip",
            )
            .map_err(Error::git("cannot keep the refused forge tip"))?;
            // Honest commits members made before the refused ones are kept; nothing after.
            let newest = state.tips.first().and_then(|t| git2::Oid::from_str(t).ok());
            let good = verifier
                .best_authentic
                .or(newest)
                .or(state.last_authentic());
            match good {
                Some(good) if raw.find_commit(good).is_ok() => {
                    raw.reference(&tracking, good, true, "fleetkey: last authentic forge tip")
                        .map_err(Error::git("cannot reset the forge's tracking ref"))?;
                }
                _ => {
                    if let Ok(mut r) = raw.find_reference(&tracking) {
                        let _ = r.delete();
                    }
                }
            }
            for r in &refused {
                crate::log::warn(&format!(
                    "refused commit {} (claims {}): {}",
                    r.commit, r.machine, r.why
                ));
            }
            Ok(refused)
        }
    }
}

/// `git fetch`, retried (3 times, 300 ms apart) when another git holds a ref lock: a git left
/// running by a killed fleetkey that [`forge::reap_orphan`] did not know about.
pub fn fetch_retrying(repo: &FleetRepo, remote: &str, branch: &str) -> Result<()> {
    let mut tries = 0;
    loop {
        match forge::fetch(repo.root(), remote, branch) {
            Err(e)
                if tries < 3
                    && matches!(e.kind(), ErrorKind::ForgeFailed { stderr, .. } | ErrorKind::ForgeUnreachable { stderr, .. }
                        if stderr.contains("cannot lock ref") || stderr.contains(".lock'")) =>
            {
                tries += 1;
                crate::log::debug("another git holds a ref lock; retrying the fetch");
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            other => return other,
        }
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

/// Pushes the clone's new commits (those a command such as `secrets set`, `track` or `approve`
/// just made, holding the lock). When the forge has moved on, this FETCHES its commits, MERGES
/// them in memory and pushes again; managed files whose local side lost that merge get their
/// conflict copies in `$HOME` now (a later cycle could not tell them from files in step). The
/// rest of what the merge brought is applied by the next cycle, after it has captured.
pub fn push_merging_upstream(
    machine: &Machine,
    repo: &FleetRepo,
    fleet: &FleetConfig,
) -> Result<()> {
    let identity = machine.identity().ok();
    let now = clock::now_unix();
    let x = exchange(
        machine,
        repo,
        fleet,
        identity.as_ref(),
        &clock::rfc3339(now),
        Network::Full,
    )
    .map_err(|e| {
        if e.is_forge_failure() {
            with_waiting_hint(e, repo, &fleet.sync.branch)
        } else {
            e
        }
    })?;
    backend::keep_lost(machine, repo, &x.lost, now)?;
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
    if let Some(why) = &x.tree_refused {
        crate::log::warn(&format!(
            "{why}; your change is committed here and goes out once the forge is healed"
        ));
    }
    // The fleet moved to another forge meanwhile: the change goes there.
    let followed = super::forge_move::follow(
        machine,
        repo,
        fleet,
        identity.as_ref(),
        &clock::rfc3339(now),
    )?;
    if let Some(why) = followed.held_back {
        crate::log::warn(&why);
    }
    if let Some(more) = followed.exchanged {
        backend::keep_lost(machine, repo, &more.lost, now)?;
    }
    Ok(())
}

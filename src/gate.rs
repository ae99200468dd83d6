//! The verification gate: what the forge holds is checked here before anything of it is used.
//!
//! A fetched `origin/BRANCH` passes two checks, in order: its commits are authentic (the rule in
//! [`crate::trust`], against this machine's trust state), and the tree of its tip holds only
//! what fleetkey checks out (no symlink, `.git`, `.gitmodules` or `.gitattributes`, see
//! [`crate::confine::check_tree`]). Every refusal is a [`Refusal`] whose [`Reason`] says why.
//!
//! Owns: running the verifier over the tracking ref and saving the trust state; keeping a
//! refused tip aside ([`trust::REFUSED_TIP_REF`]) and putting `origin/BRANCH` back on the last
//! authentic tip; the marker of the last tree checked. Must never: leave a refused commit where
//! integrate, fast-forward or status can see it; start afresh over a damaged trust state
//! ([`TrustState::load`] fails closed); or let a refused tree's content reach the clone.

use crate::confine;
use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::forge::Forge;
use crate::repo::{FleetRepo, tracking_ref};
use crate::trust::{self, Reason, Refusal, TrustState, Verdict};

/// The state file holding the last forge commit whose tree passed [`confine::check_tree`] (so
/// an unchanged forge is not walked again every cycle).
pub const TREE_CHECKED: &str = "tree-checked";

/// How many tree violations a refusal names (the rest are counted).
const VIOLATIONS_SHOWN: usize = 3;

/// Fetches the forge's branch and verifies it; see [`verify_tracking`].
pub fn fetch_verified(
    machine: &Machine,
    forge: &Forge,
    repo: &FleetRepo,
    branch: &str,
) -> Result<Vec<Refusal>> {
    forge.fetch(repo.root(), branch)?;
    verify_tracking(machine, repo, branch)
}

/// Verifies `origin/BRANCH` (just fetched) against this machine's trust state. When it is not
/// authentic, the refused tip is kept under [`trust::REFUSED_TIP_REF`] and `origin/BRANCH` is
/// put back on the last authentic tip, so nothing downstream (integrate, fast-forward, status)
/// ever sees the refused commits; the refusals are returned.
pub fn verify_tracking(machine: &Machine, repo: &FleetRepo, branch: &str) -> Result<Vec<Refusal>> {
    let raw = repo.raw();
    let tracking = tracking_ref(branch);
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

/// Verifies the commits at `refname` that a peer handed over (a bundle fetched into a
/// quarantine ref, see [`crate::sync::carry`]) by the same rule and the same trust state as a
/// forge fetch, then checks its tree as [`refuse_tree`] does. What it learns (authentic tips,
/// revoked keys) is saved; nothing else moves: the forge's tracking ref, the refused-tip ref
/// and the forge tip remembered stay as they are. Returns the refusals (empty: authentic, and
/// its tree passed).
pub fn verify_handed_over(
    machine: &Machine,
    repo: &FleetRepo,
    refname: &str,
) -> Result<Vec<Refusal>> {
    let raw = repo.raw();
    let tip = raw
        .refname_to_id(refname)
        .map_err(Error::git("cannot read the commits a peer handed over"))?;
    let root = trust::pinned_root(&machine.config)?;
    let state_dir = &machine.paths.state_dir;
    let mut state = TrustState::load(raw, state_dir, root)?;
    let before = state.clone();
    let verdict = trust::Verifier::new(raw).verify(&mut state, tip, false)?;
    if state != before {
        state.save(state_dir)?;
    }
    if let Verdict::Refused(refused) = verdict {
        return Ok(refused);
    }
    Ok(refuse_tree(machine, raw, refname)?.into_iter().collect())
}

/// Checks the tree of the forge's commit at `tracking` before anything of it is used: only
/// regular files and directories, no `.git`, `.gitmodules`, `.gitattributes` (a symlink
/// checked out into the clone could redirect a write, or reach the clone's own `.git`).
/// Returns the refusal ([`Reason::Tree`]), or `None`.
pub fn refuse_tree(
    machine: &Machine,
    raw: &git2::Repository,
    tracking: &str,
) -> Result<Option<Refusal>> {
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
        Err(violations) => Ok(Some(Refusal::of(
            raw,
            tip,
            Reason::Tree {
                violations: violations
                    .iter()
                    .take(VIOLATIONS_SHOWN)
                    .map(ToString::to_string)
                    .collect(),
                more: violations.len().saturating_sub(VIOLATIONS_SHOWN),
            },
        ))),
    }
}

/// What a refused tree means for this machine, in one line (held back in the cycle record,
/// warned by a command).
pub fn tree_held_back(refusal: &Refusal) -> String {
    format!(
        "the forge's commit {} is refused: {}; this machine keeps its last state and its own commits until a commit without them arrives",
        &refusal.commit[..refusal.commit.len().min(12)],
        refusal.why
    )
}

/// Before a push: checks this machine's own new commits (HEAD over the fleet's tip) with the
/// same verifier every other machine runs, on a copy of the trust state (nothing is saved).
/// A history the fleet would refuse (a commit made before this machine was a member, or before
/// its rotate took effect, merged since) is replaced by ONE commit on top of the fleet's tip
/// holding the same tree, signed with this machine's current key, so the push never freezes
/// the fleet; when even that would be refused, nothing is pushed and the commits stay local.
pub fn replay_refused_own_commits(machine: &Machine, repo: &FleetRepo, branch: &str) -> Result<()> {
    let raw = repo.raw();
    let Some(head) = repo.head() else {
        return Ok(());
    };
    let Ok(tip) = raw.refname_to_id(&tracking_ref(branch)) else {
        return Ok(());
    };
    if head == tip
        || !raw
            .graph_descendant_of(head, tip)
            .map_err(Error::git("cannot compare histories"))?
    {
        return Ok(());
    }
    let root = trust::pinned_root(&machine.config)?;
    let state_dir = &machine.paths.state_dir;
    let refusal = |oid: git2::Oid| -> Result<Option<Refusal>> {
        let mut state = TrustState::load(raw, state_dir, root)?;
        Ok(
            match trust::Verifier::new(raw).verify(&mut state, oid, false)? {
                Verdict::Authentic { .. } => None,
                Verdict::Refused(mut r) => Some(r.remove(0)),
            },
        )
    };
    let Some(first) = refusal(head)? else {
        return Ok(());
    };
    let mut walk = raw
        .revwalk()
        .map_err(Error::git("cannot walk the history"))?;
    walk.push(head)
        .and_then(|()| walk.hide(tip))
        .map_err(Error::git("cannot walk the history"))?;
    let mut subjects = Vec::new();
    for oid in walk {
        let oid = oid.map_err(Error::git("cannot walk the history"))?;
        let commit = raw
            .find_commit(oid)
            .map_err(Error::git("cannot read a commit"))?;
        if commit.parent_count() == 1 {
            subjects.push(format!(
                "- {}",
                commit.summary().ok().flatten().unwrap_or_default()
            ));
        }
    }
    subjects.reverse();
    let me = &machine.config.name;
    let tree = raw
        .find_commit(head)
        .and_then(|c| c.tree())
        .map_err(Error::git("cannot read a tree"))?;
    let parent = raw
        .find_commit(tip)
        .map_err(Error::git("cannot read the fleet's tip"))?;
    let message = format!(
        "{me}: replay {} commits made before the fleet could accept them\n\n{}",
        subjects.len(),
        subjects.join("\n")
    );
    crate::log::info(&format!(
        "this machine's new commits would be refused by the fleet ({}): replayed onto the fleet's tip and signed again",
        first.why
    ));
    let replayed = crate::signing::commit(
        raw,
        repo.signer()?,
        Some("HEAD"),
        &message,
        &tree,
        &[&parent],
    )?;
    if let Some(r) = refusal(replayed)? {
        return Err(crate::error::ErrorKind::Refused(format!(
            "this machine's commits would be refused by the fleet ({}); nothing was pushed and they stay here",
            r.why
        ))
        .hint("`fleetkey status` shows this machine's role; an admin can change it with `fleetkey role NAME ROLE`"));
    }
    Ok(())
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

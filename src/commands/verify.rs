//! `fleetkey verify [--allowed-signers]` and `fleetkey forge repair`.
//!
//! `verify` checks the whole fleet branch from this machine's trust root (not incrementally:
//! a fresh check that does not touch the saved state) and the forge's branch as the cycle does,
//! and prints a summary. `--allowed-signers` prints every signing key of the history in the
//! format of git's `gpg.ssh.allowedSignersFile` (principal = machine name, `namespaces="git"`,
//! rotated and revoked keys with a validity window: see [`crate::signers`]), so stock
//! `git verify-commit` can check any commit by hand.
//!
//! `forge repair` puts the last authentic state (with this machine's local work, and the honest
//! commits members made before the refused ones) back on a tampered forge, pushing with
//! `--force-with-lease` against the refused tip, and keeps the refused commits under
//! `refs/fleetkey/refused/…` in the clone so nothing is lost.
//!
//! Must never: push over a forge tip it did not refuse (the lease), or repair without the
//! user's say-so (a "yes" on a terminal, `--yes` otherwise).

use std::io::IsTerminal;

use crate::clock;
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Machine;
use crate::forge::PushOutcome;
use crate::output::outln;
use crate::roster::Roster;
use crate::sync::{heal, integrate};
use crate::trust::{self, TrustState, Verdict, Verifier};

/// `fleetkey verify [--allowed-signers]`.
pub fn verify(allowed_signers: bool) -> Result<()> {
    let machine = Machine::load()?;
    if allowed_signers {
        return print_allowed_signers(&machine);
    }
    let root = trust::pinned_root(&machine.config)?;
    let locked = machine.lock()?;
    let repo = machine.repo()?;
    let fleet = machine.fleet_config()?;
    let branch = &fleet.sync.branch;
    let raw = repo.raw();
    let head = repo
        .head()
        .ok_or_else(|| Error::refused("the fleet clone has no commit"))?;
    // A fresh check of the whole branch, from the root, with nothing remembered. Revocations are
    // learned in history order, as a machine first seeing this history would: a commit signed
    // before its key was revoked stays authentic.
    let mut fresh = TrustState::fresh(raw, root);
    let started = std::time::Instant::now();
    let verdict = Verifier::new(raw).verify(&mut fresh, head, false)?;
    let elapsed = started.elapsed();
    if let Verdict::Authentic { .. } = verdict {
        // What was just verified need not be walked again by the forge's check below.
        let mut saved = TrustState::load(raw, &machine.paths.state_dir, root)?;
        saved.remember_tip(head);
        saved.revoked.extend(fresh.revoked.iter().cloned());
        saved
            .revoked_blobs
            .extend(fresh.revoked_blobs.iter().cloned());
        saved.save(&machine.paths.state_dir)?;
    }
    let forge_refused = match crate::gate::fetch_verified(&machine, &locked.forge, &repo, branch) {
        Ok(r) => Some(r),
        Err(e) if e.is_unreachable() => {
            crate::log::warn(&format!("{e}; checking the clone only"));
            None
        }
        Err(e) => return Err(e),
    };
    let fp = trust::fleet_fingerprint(raw, head).ok();
    outln!("fleet fingerprint  {}", fp.as_deref().unwrap_or("none"))?;
    outln!("trust root         {root}")?;
    let mut refused = 0;
    match &verdict {
        Verdict::Authentic { checked } => outln!(
            "clone   {branch} at {head}: authentic ({checked} commits checked in {} ms)",
            elapsed.as_millis()
        )?,
        Verdict::Refused(r) => {
            refused += r.len();
            outln!("clone   {branch} at {head}: NOT AUTHENTIC")?;
            for x in r {
                outln!("  refused {} (claims {}): {}", x.commit, x.machine, x.why)?;
            }
        }
    }
    match &forge_refused {
        None => outln!("forge   unreachable; not checked")?,
        Some(r) if r.is_empty() => outln!("forge   {branch}: authentic")?,
        Some(r) => {
            refused += r.len();
            outln!("forge   {branch}: NOT AUTHENTIC")?;
            for x in r {
                outln!("  refused {} (claims {}): {}", x.commit, x.machine, x.why)?;
            }
        }
    }
    let roster = Roster::load(repo.root())?;
    let signers: Vec<&str> = roster
        .active
        .iter()
        .filter(|m| !m.signing.is_empty())
        .map(|m| m.name.as_str())
        .collect();
    outln!("signers {} active: {}", signers.len(), signers.join(", "))?;
    if refused > 0 {
        return Err(ErrorKind::Untrusted { refused }.into());
    }
    Ok(())
}

/// The allowed_signers file for the clone's whole history (see [`crate::signers`]).
fn print_allowed_signers(machine: &Machine) -> Result<()> {
    let repo = machine.repo()?;
    let head = repo
        .head()
        .ok_or_else(|| Error::refused("the fleet clone has no commit"))?;
    let roster = Roster::load(repo.root())?;
    let windows = crate::signers::windows(repo.raw(), head, &roster)?;
    crate::output::stdout(crate::signers::render(&windows)?.as_bytes())
}

/// `fleetkey forge repair [--yes]`: the steps of [`heal`], asked for by a person (no limit,
/// `[trust] heal` aside), after showing what the forge loses.
pub fn repair(yes: bool) -> Result<()> {
    let machine = Machine::load()?;
    let root = trust::pinned_root(&machine.config)?;
    let change = crate::sync::FleetChange::begin(&machine, crate::sync::Begin::AsIs)?;
    let (repo, forge) = (&change.repo, change.forge());
    let branch = change.fleet.sync.branch.clone();
    let refused = crate::gate::fetch_verified(&machine, forge, repo, &branch)?;
    let raw = repo.raw();
    if refused.is_empty() {
        outln!("fleetkey: the forge's {branch} holds only authentic commits; nothing to repair")?;
        heal::clear_refusals(&machine);
        return Ok(());
    }
    let bad = raw
        .refname_to_id(trust::REFUSED_TIP_REF)
        .map_err(Error::git("cannot find the refused forge tip"))?;
    // The honest part of the forge's branch stays: commits members made before the refused
    // ones, or the whole of a rewound branch that is authentic.
    heal::honest_base(&machine, repo, &branch, bad)?;
    let dropped = heal::dropped(repo, &branch, root, bad)?;
    outln!("fleetkey: the forge's {branch} is at {bad}, which is not authentic:")?;
    for r in &refused {
        outln!("  refused {} (claims {}): {}", r.commit, r.machine, r.why)?;
    }
    outln!(
        "Repair puts this machine's {branch} back on the forge and drops these {} commits there (kept here under {}):",
        dropped.len(),
        heal::REFUSED_PREFIX
    )?;
    for oid in &dropped {
        let summary = raw
            .find_commit(*oid)
            .ok()
            .and_then(|c| {
                c.summary()
                    .ok()
                    .flatten()
                    .map(|s| s.chars().take(72).collect::<String>())
            })
            .unwrap_or_default();
        outln!(
            "  drop {} ({}) {summary}",
            &oid.to_string()[..12],
            trust::claimed_machine(raw, *oid)
        )?;
    }
    confirm(yes)?;

    // Keep what we drop, then bring in the honest commits that came before the refused ones.
    let keep = heal::keep_refused(raw, bad, clock::now_unix())?;
    let identity = machine.identity().ok();
    let done = integrate::integrate(
        raw,
        &branch,
        &machine.config.name,
        identity.as_ref(),
        &clock::rfc3339(clock::now_unix()),
        change.fleet.backend,
        repo.signer()?,
    )?;
    crate::sync::backend::keep_lost(&machine, repo, &done.lost, clock::now_unix())?;
    let head = repo
        .head()
        .ok_or_else(|| Error::refused("the fleet clone has no commit"))?;
    match forge.push_to(
        repo.root(),
        &format!("refs/heads/{branch}"),
        &branch,
        Some(&bad.to_string()),
        false,
    )? {
        PushOutcome::Pushed => {}
        PushOutcome::Rejected => {
            return Err(ErrorKind::Refused(format!(
                "the forge's {branch} moved while repairing; nothing was overwritten"
            ))
            .hint("run `fleetkey forge repair` again"));
        }
    }
    // The repaired tip is this machine's own history: verified, it becomes the forge tip.
    heal::settle(&machine, repo, &branch, head)?;
    outln!(
        "fleetkey: repaired: the forge's {branch} is at {head}; the refused commits are kept under {keep}"
    )?;
    Ok(())
}

/// A "yes" on a terminal, or `--yes`.
fn confirm(yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(ErrorKind::Refused(
            "repairing the forge needs --yes when stdin is not a terminal".into(),
        )
        .hint("read the list above, then run `fleetkey forge repair --yes`"));
    }
    if crate::output::ask_yes("Repair the forge? [y/N]")? {
        Ok(())
    } else {
        Err(ErrorKind::Refused("the forge was not repaired".into()).into())
    }
}

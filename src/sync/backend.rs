//! The backend's part of the cycle, dispatched in one place: how local edits are captured into
//! the clone and how the clone is applied to the live files, natively ([`super::capture`],
//! [`super::apply`]) or through chezmoi ([`super::chezmoi`]).
//!
//! Must never: apply before the cycle's capture (every caller captures first), or write a live
//! file outside the managed list.

use std::collections::BTreeSet;

use crate::clock;
use crate::config::Backend;
use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::identity::Identity;
use crate::repo::FleetRepo;

use super::commit::{commit_capture, head_tree};
use super::conflicts::{Occasion, keep_copy};
use super::plan::Plan;
use super::state::{self, ConflictReason, CycleRecord, Manifest};
use super::{apply, capture, chezmoi, integrate, tree};

/// Captures every managed path of `plan` (the last valid fleet.toml) into the clone and
/// commits what changed. Returns the managed files that are missing on disk (apply looks at
/// them even when the tree did not change). `by_hand`: `fleetkey sync` (see
/// [`capture::Patience::by_hand`]).
pub fn capture_and_commit(
    machine: &Machine,
    repo: &FleetRepo,
    plan: &Plan,
    manifest: &mut Manifest,
    rec: &mut CycleRecord,
    by_hand: bool,
) -> Result<Vec<String>> {
    let name = machine.config.name.as_str();
    match plan.fleet.backend {
        Backend::Chezmoi => {
            let source = chezmoi::source_dir(repo.root());
            chezmoi::warn_auto_git(&machine.paths);
            let ignore_changed = chezmoi::ensure_ignore(&source)?;
            let added = chezmoi::capture(
                &source,
                &machine.paths.home,
                &plan.managed,
                manifest,
                capture::Patience::of(&plan.fleet, by_hand),
                &mut rec.held_back,
            )?;
            if added > 0 || ignore_changed {
                let message = format!("{name}: sync {added} paths (chezmoi add)");
                if repo.commit_all(&["."], &message)?.is_some() {
                    rec.captured = added;
                    crate::fault::point("sync:captured");
                }
            }
            Ok(Vec::new())
        }
        Backend::Native => {
            let raw = repo.raw();
            let head = head_tree(raw)?;
            let home = plan.open_home()?;
            let skip = plan.never_captured(&machine.paths.state_dir);
            let placeholders = plan.placeholders_since(machine, raw, manifest.tree.as_deref());
            let scope = capture::Scope {
                home: &home,
                confinement: &plan.confinement,
                managed: &plan.managed,
                skip: &skip,
                machine: name,
                first_contact: capture::FirstContact::FleetWins,
                ignore: &plan.ignore,
                placeholders: &placeholders,
                allow_tokens: &plan.allow_tokens,
                patience: Some(capture::Patience::of(&plan.fleet, by_hand)),
            };
            let captured = capture::capture(raw, &head, &scope, manifest)?;
            rec.held_back.extend(captured.held_back.iter().cloned());
            rec.captured = captured.count();
            if captured.count() > 0 {
                let held_back = commit_capture(repo, &captured, name)?;
                rec.captured -= held_back.len();
                rec.held_back.extend(held_back);
                crate::fault::point("sync:captured");
            }
            // The manifest is saved after apply: if the cycle dies before, the next capture
            // finds the captured files equal to HEAD and in step, so nothing is lost or repeated.
            Ok(captured.missing)
        }
    }
}

/// Which managed files an apply looks at.
enum Reach<'a> {
    /// Everything HEAD changed since the last full apply, plus `missing` files and the files
    /// that lost a merge (or every managed file, when the lists changed).
    Head {
        /// Managed files missing on disk.
        missing: &'a [String],
    },
    /// Only the conflict copies of the files that lost a merge, and their live files.
    LostOnly,
}

/// Applies the clone's HEAD to the live files (with the conflict copies of `lost`), saves the
/// manifest and the conflict records, materializes the secrets and (native backend) runs the
/// authorized_keys merge, by the plan of the fleet.toml now in force (it may have come with
/// the integration). The caller holds the lock and has captured.
pub fn apply_head(
    machine: &Machine,
    repo: &FleetRepo,
    identity: Option<&Identity>,
    lost: &[integrate::LostFile],
    manifest: &mut Manifest,
    now: i64,
    missing: &[String],
) -> Result<apply::Applied> {
    let state_dir = &machine.paths.state_dir;
    let plan = Plan::for_machine(machine)?;
    let home = plan.open_home()?;
    let phase = Phase {
        machine,
        repo,
        plan: &plan,
        home: &home,
    };
    let applied = apply_files(&phase, lost, manifest, now, Reach::Head { missing });
    manifest.save(state_dir)?;
    let mut applied = applied?;
    state::record_conflicts(state_dir, &applied.conflicts)?;
    let materialized = apply::materialize_secrets(
        repo.root(),
        &home,
        plan.materialize.as_ref(),
        plan.fleet.secrets.materialize_format,
        identity,
        state_dir,
    );
    if let Err(e) = materialized {
        applied.held_back.push(format!(
            "the secrets were not materialized: {}",
            crate::error::chain(&e)
        ));
    }
    if plan.fleet.backend == Backend::Native {
        // With chezmoi, its modify_ hook does the authorized_keys merge.
        if let Err(e) = apply::authorized_keys(
            repo.root(),
            &machine.config.name,
            &home,
            plan.authorized_keys.as_ref(),
            &plan.fleet.authorized_keys.from,
        ) {
            applied.held_back.push(format!(
                "authorized_keys was not merged: {}{}",
                crate::error::chain(&e),
                e.advice().map(|a| format!(" ({a})")).unwrap_or_default()
            ));
        }
    }
    // The refused entries of the fleet.toml now in force, unless capture reported them.
    for h in plan.held_back {
        if !applied.held_back.contains(&h) {
            applied.held_back.push(h);
        }
    }
    Ok(applied)
}

/// Merges the fleet's SSH keys of the clone's HEAD into this machine's authorized_keys at once
/// (what the next cycle's apply would do), for a command that changed the roster: after
/// `revoke`, the revoked key is gone here before the command returns. Returns whether the file
/// changed. With chezmoi the merge is the one its `modify_` hook makes, so the next apply
/// leaves the file as it is.
pub fn merge_authorized_keys(machine: &Machine, repo: &FleetRepo) -> Result<bool> {
    let plan = Plan::for_machine(machine)?;
    let home = plan.open_home()?;
    apply::authorized_keys(
        repo.root(),
        &machine.config.name,
        &home,
        plan.authorized_keys.as_ref(),
        &plan.fleet.authorized_keys.from,
    )
}

/// After an integration outside a cycle (a rejected push of `secrets set`, `track`…): only the
/// managed files that lost a merge are handled now: their local version is kept as a conflict
/// copy and the live file takes the fleet's. Everything else is left to the next cycle, which
/// captures before it applies.
pub fn keep_lost(
    machine: &Machine,
    repo: &FleetRepo,
    lost: &[integrate::LostFile],
    now: i64,
) -> Result<()> {
    if lost.is_empty() {
        return Ok(());
    }
    let state_dir = &machine.paths.state_dir;
    let plan = Plan::for_machine(machine)?;
    let home = plan.open_home()?;
    let phase = Phase {
        machine,
        repo,
        plan: &plan,
        home: &home,
    };
    let mut manifest = Manifest::load(state_dir);
    let applied = apply_files(&phase, lost, &mut manifest, now, Reach::LostOnly);
    manifest.save(state_dir)?;
    state::record_conflicts(state_dir, &applied?.conflicts)
}

/// What an apply phase of the cycle read once and every step of it shares: the machine, its
/// clone, the plan of the fleet.toml in force (read once for the phase) and `$HOME` opened by
/// that plan.
struct Phase<'a> {
    /// This machine.
    machine: &'a Machine,
    /// Its clone of the fleet repo.
    repo: &'a FleetRepo,
    /// The plan of the fleet.toml in force for this phase.
    plan: &'a Plan,
    /// `$HOME`, opened with the plan's confinement.
    home: &'a crate::confine::HomeDir,
}

/// The one dispatch of apply on the backend.
fn apply_files(
    phase: &Phase<'_>,
    lost: &[integrate::LostFile],
    manifest: &mut Manifest,
    now: i64,
    reach: Reach<'_>,
) -> Result<apply::Applied> {
    let Phase {
        machine,
        repo,
        plan,
        home,
    } = *phase;
    let (stamp, at) = (clock::compact(now), clock::rfc3339(now));
    let occasion = Occasion {
        machine: &machine.config.name,
        stamp: &stamp,
        at: &at,
    };
    let name = machine.config.name.as_str();
    // A receiver captures nothing: every managed file is looked at, and an edit made here is
    // kept aside before the fleet's version replaces it.
    let receives_only =
        crate::authority::role_in(repo.root(), name) == crate::authority::Role::Receiver;
    if plan.fleet.backend == Backend::Chezmoi {
        let run_apply = matches!(reach, Reach::Head { .. });
        let mut kept = Vec::new();
        if receives_only && run_apply {
            kept = keep_receiver_edits(home, plan, manifest, occasion)?;
        }
        let mut applied = apply_chezmoi(phase, lost, manifest, occasion, run_apply)?;
        applied.conflicts.extend(kept);
        return Ok(applied);
    }
    let head = head_tree(repo.raw())?;
    // Only what changed since the last full apply needs a look, unless the lists changed.
    // The secrets' ciphertext id too: a changed secret rewrites the files that use it.
    let lists = format!(
        "{:?} {:?} {:?} {:?} {}",
        plan.fleet.sync.paths,
        plan.fleet.sync.private,
        plan.fleet.sync.ignore,
        plan.fleet.sync.literal,
        plan.placeholders.secrets().fingerprint()
    );
    let recheck_secrets = manifest.lists.as_ref() != Some(&lists);
    let scope: Option<BTreeSet<String>> = match reach {
        Reach::LostOnly => Some(lost_rels(lost, name).collect()),
        Reach::Head { .. } if receives_only => None,
        Reach::Head { missing } => match (&manifest.tree, &manifest.lists) {
            (Some(old), Some(l)) if *l == lists => git2::Oid::from_str(old)
                .ok()
                .and_then(|old| tree::changed_between(repo.raw(), old, &head, name))
                .map(|mut rels| {
                    rels.extend(missing.iter().cloned());
                    rels.extend(lost_rels(lost, name));
                    rels
                }),
            _ => None,
        },
    };
    let cx = apply::ApplyContext {
        home,
        confinement: &plan.confinement,
        machine: name,
        managed: &plan.managed,
        private: &plan.private,
        ignore: &plan.ignore,
        placeholders: &plan.placeholders,
        recheck_secrets,
        receives_only,
        stamp: &stamp,
        at: &at,
    };
    let applied = apply::apply(repo.raw(), &head, &cx, lost, manifest, scope.as_ref());
    if applied.is_ok() && matches!(reach, Reach::Head { .. }) {
        manifest.tree = Some(head.id().to_string());
        manifest.lists = Some(lists);
    }
    applied
}

/// A receiver with chezmoi: every managed live file edited since it was last in step (its
/// stat and content differ from the manifest's) is kept aside as a conflict copy ("this machine
/// only receives") before `chezmoi apply --force` replaces it.
fn keep_receiver_edits(
    home: &crate::confine::HomeDir,
    plan: &Plan,
    manifest: &Manifest,
    occasion: Occasion<'_>,
) -> Result<Vec<state::ConflictRecord>> {
    use std::os::unix::fs::PermissionsExt;
    let mut kept = Vec::new();
    for (rel, entry) in &manifest.files {
        let Ok(checked) = plan.confinement.check_rel(rel) else {
            continue;
        };
        let Ok(live) = home.read_file(&checked, crate::limits::MANAGED_FILE) else {
            continue;
        };
        if entry.stat == Some(state::Stat::of(&live.metadata))
            || git2::Oid::hash_object(git2::ObjectType::Blob, &live.bytes)
                .is_ok_and(|o| o.to_string() == entry.oid)
        {
            continue;
        }
        kept.push(keep_copy(
            home,
            &plan.confinement,
            &checked,
            &live.bytes,
            live.metadata.permissions().mode() & 0o777,
            ConflictReason::ReceiverOnly,
            occasion,
        )?);
    }
    Ok(kept)
}

/// The live paths (relative to `$HOME`) of files that lost a merge, from their repo paths under
/// `home/` or this machine's `hosts/NAME/home/`.
fn lost_rels<'a>(
    lost: &'a [integrate::LostFile],
    machine: &str,
) -> impl Iterator<Item = String> + 'a {
    let host = format!("{}/", tree::host_dir(machine));
    lost.iter().filter_map(move |l| {
        l.repo_path
            .strip_prefix("home/")
            .or_else(|| l.repo_path.strip_prefix(host.as_str()))
            .map(str::to_string)
    })
}

/// Apply with chezmoi: conflict copies of the source files that lost (beside the live file
/// chezmoi names for them), then `chezmoi apply`, then the manifest of live stats.
fn apply_chezmoi(
    phase: &Phase<'_>,
    lost: &[integrate::LostFile],
    manifest: &mut Manifest,
    occasion: Occasion<'_>,
    run_apply: bool,
) -> Result<apply::Applied> {
    let Phase {
        machine,
        repo,
        plan,
        home: home_dir,
    } = *phase;
    let home = &machine.paths.home;
    let source = chezmoi::source_dir(repo.root());
    let mut out = apply::Applied::default();
    for l in lost {
        let target = chezmoi::target_path(&source, &repo.root().join(&l.repo_path))?;
        let Some(rel) = target
            .strip_prefix(home)
            .ok()
            .and_then(|r| r.to_str())
            .and_then(|r| plan.confinement.check_rel(r).ok())
        else {
            continue;
        };
        let blob = repo
            .raw()
            .find_blob(l.ours)
            .map_err(Error::git("cannot read our side of a conflict"))?;
        out.conflicts.push(keep_copy(
            home_dir,
            &plan.confinement,
            &rel,
            blob.content(),
            0o600,
            ConflictReason::BothChanged,
            occasion,
        )?);
    }
    if !run_apply {
        return Ok(out);
    }
    let before = manifest.clone();
    chezmoi::apply(&source, home, &plan.managed, manifest)?;
    out.changed = manifest
        .files
        .iter()
        .filter(|(rel, e)| before.files.get(*rel) != Some(e))
        .count();
    Ok(out)
}

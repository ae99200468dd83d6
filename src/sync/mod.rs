//! The sync cycle, as the design orders it: lock → capture every managed path → commit if
//! changed → fetch → integrate → push (on a rejected push: fetch and integrate again, at most
//! [`PUSH_TRIES`] times) → apply → record the cycle → unlock.
//!
//! Used by `fleetkey sync` (once), `pull` (once or every DURATION) and `watch` (after each
//! settled change). Local work goes through libgit2; only fetch, push and the cheap ref check
//! run the `git` command line ([`crate::forge`]). When the forge cannot be reached, every local
//! commit stays, the local state is still applied, the cycle is recorded as `offline` and the
//! command exits 75.
//!
//! Crash safety: the clone's working tree and index belong to fleetkey. Every cycle starts by
//! removing stale git lock files (under fleetkey's own flock, so no other fleetkey holds them)
//! and resetting the working tree to HEAD, so a cycle killed anywhere leaves nothing the next
//! one trips on. No rebase or merge state is ever written.
//!
//! Must never: overwrite a live file holding an edit that is not captured or kept as a
//! conflict copy.

pub mod apply;
pub mod capture;
pub mod chezmoi;
pub mod debounce;
pub mod integrate;
pub mod managed;
pub mod state;
pub mod tree;
pub mod watch;

use std::time::Instant;

use crate::clock;
use crate::config::{Backend, FleetConfig};
use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::forge::{self, PushOutcome};
use crate::identity::Identity;
use crate::repo::FleetRepo;

use state::{CycleRecord, Manifest};

/// How many times a rejected push is retried after integrating again.
pub const PUSH_TRIES: usize = 5;

/// The state file present while a cycle runs (see [`recover`]).
pub const UNFINISHED: &str = "cycle-unfinished";

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
pub fn cycle(machine: &Machine, network: Network) -> Result<CycleRecord> {
    let _lock = machine.lock()?;
    cycle_locked(machine, network)
}

/// One cycle; the caller holds the lock.
pub fn cycle_locked(machine: &Machine, network: Network) -> Result<CycleRecord> {
    let started = Instant::now();
    let now = clock::now_unix();
    let mut rec = CycleRecord {
        started: clock::rfc3339(now),
        ..CycleRecord::default()
    };
    let result = run(machine, network, now, &mut rec);
    rec.duration_ms = started.elapsed().as_millis() as u64;
    match &result {
        Ok(()) => rec.result = "ok".into(),
        Err(e) => {
            rec.result = if e.exit_code() == crate::error::EXIT_TEMPFAIL {
                "offline".into()
            } else {
                "error".into()
            };
            rec.error = Some(e.to_string());
        }
    }
    if let Err(e) = rec.save(&machine.paths.state_dir) {
        crate::log::warn(&format!("cannot record the cycle: {e}"));
    }
    result.map(|()| rec)
}

fn run(machine: &Machine, network: Network, now: i64, rec: &mut CycleRecord) -> Result<()> {
    let name = machine.config.name.as_str();
    let state_dir = &machine.paths.state_dir;
    let at = clock::rfc3339(now);
    let repo = machine.repo()?;
    let raw = repo.raw();
    let t = Instant::now();
    let step = |what: &str| crate::log::debug(&format!("cycle: {what} done at {:?}", t.elapsed()));
    // "Unfinished" marker: present from here until the cycle ends; a cycle that finds it
    // repairs the whole working tree.
    let marker = state_dir.join(UNFINISHED);
    let full = marker.exists();
    crate::files::ensure_private_dir(state_dir)?;
    std::fs::write(&marker, b"").map_err(Error::io("cannot write", &marker))?;
    step("marker");
    recover(&repo, full)?;
    step("repair");

    // Capture and commit.
    let fleet = machine.fleet_config()?;
    let managed = managed::parse_list(&fleet.sync.paths)?;
    let mut manifest = Manifest::load(state_dir);
    step("manifest load");
    let mut missing = Vec::new();
    if fleet.backend == Backend::Chezmoi {
        let source = chezmoi::source_dir(repo.root());
        chezmoi::warn_auto_git(&machine.paths);
        let ignore_changed = chezmoi::ensure_ignore(&source)?;
        let added = chezmoi::capture(&source, &machine.paths.home, &managed, &manifest)?;
        if added > 0 || ignore_changed {
            let message = format!("{name}: sync {added} paths (chezmoi add)");
            if repo.commit_all(&["."], name, &message)?.is_some() {
                rec.captured = added;
            }
        }
    } else {
        let head = head_tree(raw)?;
        let captured = capture::capture(
            raw,
            &head,
            &machine.paths.home,
            name,
            &managed,
            &mut manifest,
        )?;
        rec.captured = captured.count();
        missing = captured.missing.clone();
        step("capture");
        if captured.count() > 0 {
            commit_capture(&repo, &captured, name)?;
            crate::fault::point("sync:captured");
        }
        step("commit");
        drop(head);
        // The manifest is saved after apply: if the cycle dies before, the next capture finds
        // the captured files equal to HEAD and in step, so nothing is lost or repeated.
    }

    // Integrate and push.
    let identity = machine.identity().ok();
    let mut lost = Vec::new();
    let offline = match network {
        Network::Offline => None,
        _ => match exchange(machine, &repo, &fleet, identity.as_ref(), &at, network) {
            Ok(x) => {
                rec.pushed = x.pushed;
                rec.conflicts += x.other_conflicts;
                lost = x.lost;
                None
            }
            Err(e @ Error::ForgeUnreachable { .. }) => Some(e),
            Err(e) => return Err(e),
        },
    };

    // Apply what HEAD holds now.
    step("exchange");
    let applied = apply_head(
        machine,
        &repo,
        identity.as_ref(),
        &lost,
        &mut manifest,
        now,
        &missing,
    )?;
    step("apply");
    rec.applied = applied.changed;
    rec.conflicts += applied.conflicts.len();
    rec.head = repo.head().map(|o| o.to_string());
    refresh_agents(machine, &fleet);
    let _ = std::fs::remove_file(&marker);
    match offline {
        Some(e) => Err(e),
        None => Ok(()),
    }
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

/// Re-runs the agents' install-if-changed when the cycle brought a new fleet.toml (a new `poll`
/// reaches every machine's puller) or an earlier reload is still owed. Agents the user did not
/// install stay uninstalled; a failure is a warning, never a failed cycle.
fn refresh_agents(machine: &Machine, before: &FleetConfig) {
    let after = match machine.fleet_config() {
        Ok(f) => f,
        Err(_) => return,
    };
    let owed = machine.paths.state_dir.join("agents.pending").exists();
    if &after == before && !owed {
        return;
    }
    match crate::agents::install_if_changed(machine, &after) {
        Ok(report) if report.changed() => crate::log::info(&format!(
            "agents updated for the new fleet.toml: {:?}",
            report.reloaded
        )),
        Ok(_) => {}
        Err(e) => crate::log::warn(&format!("cannot update the background agents: {e}")),
    }
}

/// Applies the clone's HEAD to the live files (with the conflict copies of `lost`), saves the
/// manifest and the conflict records, materializes the secrets and runs the authorized_keys
/// merge. The caller holds the lock.
fn apply_head(
    machine: &Machine,
    repo: &FleetRepo,
    identity: Option<&Identity>,
    lost: &[integrate::LostFile],
    manifest: &mut Manifest,
    now: i64,
    missing: &[String],
) -> Result<apply::Applied> {
    let state_dir = &machine.paths.state_dir;
    let (stamp, at) = (clock::compact(now), clock::rfc3339(now));
    let fleet = machine.fleet_config()?;
    let managed = managed::parse_list(&fleet.sync.paths)?;
    let private = apply::private_list(&fleet)?;
    if fleet.backend == Backend::Chezmoi {
        let applied = apply_chezmoi(machine, repo, lost, manifest, &managed, (&stamp, &at), true);
        manifest.save(state_dir)?;
        let applied = applied?;
        state::record_conflicts(state_dir, &applied.conflicts)?;
        if let Err(e) = apply::materialize_secrets(repo.root(), &machine.paths, &fleet, identity) {
            crate::log::warn(&format!("cannot materialize the secrets: {e}"));
        }
        return Ok(applied);
    }
    let head = head_tree(repo.raw())?;
    // Only what changed since the last full apply needs a look, unless the lists changed.
    let lists = format!("{:?} {:?}", fleet.sync.paths, fleet.sync.private);
    let scope = match (&manifest.tree, &manifest.lists) {
        (Some(old), Some(l)) if *l == lists => git2::Oid::from_str(old)
            .ok()
            .and_then(|old| tree::changed_between(repo.raw(), old, &head, &machine.config.name))
            .map(|mut rels| {
                rels.extend(missing.iter().cloned());
                rels.extend(lost_rels(lost, &machine.config.name));
                rels
            }),
        _ => None,
    };
    let cx = apply::ApplyContext {
        paths: &machine.paths,
        machine: &machine.config.name,
        fleet: &fleet,
        managed: &managed,
        private: &private,
        stamp: &stamp,
        at: &at,
    };
    let applied = apply::apply(repo.raw(), &head, &cx, lost, manifest, scope.as_ref());
    if applied.is_ok() {
        manifest.tree = Some(head.id().to_string());
        manifest.lists = Some(lists);
    }
    manifest.save(state_dir)?;
    let applied = applied?;
    state::record_conflicts(state_dir, &applied.conflicts)?;
    if let Err(e) = apply::materialize_secrets(repo.root(), &machine.paths, &fleet, identity) {
        crate::log::warn(&format!("cannot materialize the secrets: {e}"));
    }
    apply::authorized_keys(repo.root(), &machine.paths, &fleet)?;
    Ok(applied)
}

/// After an integration outside a cycle (a rejected push of `secrets set`, `track`…): only the
/// managed files that lost a merge are handled now: their local version is kept as a conflict
/// copy and the live file takes the fleet's. Everything else is left to the next cycle, which
/// captures before it applies.
fn keep_lost(
    machine: &Machine,
    repo: &FleetRepo,
    lost: &[integrate::LostFile],
    now: i64,
) -> Result<()> {
    if lost.is_empty() {
        return Ok(());
    }
    let state_dir = &machine.paths.state_dir;
    let (stamp, at) = (clock::compact(now), clock::rfc3339(now));
    let fleet = machine.fleet_config()?;
    let managed = managed::parse_list(&fleet.sync.paths)?;
    let private = apply::private_list(&fleet)?;
    let mut manifest = Manifest::load(state_dir);
    let applied = if fleet.backend == Backend::Chezmoi {
        apply_chezmoi(
            machine,
            repo,
            lost,
            &mut manifest,
            &managed,
            (&stamp, &at),
            false,
        )?
    } else {
        let head = head_tree(repo.raw())?;
        let scope: std::collections::BTreeSet<String> =
            lost_rels(lost, &machine.config.name).collect();
        let cx = apply::ApplyContext {
            paths: &machine.paths,
            machine: &machine.config.name,
            fleet: &fleet,
            managed: &managed,
            private: &private,
            stamp: &stamp,
            at: &at,
        };
        let applied = apply::apply(repo.raw(), &head, &cx, lost, &mut manifest, Some(&scope));
        manifest.save(state_dir)?;
        applied?
    };
    state::record_conflicts(state_dir, &applied.conflicts)
}

/// Apply with chezmoi: conflict copies of the source files that lost (beside the live file
/// chezmoi names for them), then `chezmoi apply`, then the manifest of live stats.
fn apply_chezmoi(
    machine: &Machine,
    repo: &FleetRepo,
    lost: &[integrate::LostFile],
    manifest: &mut Manifest,
    managed: &[managed::Managed],
    (stamp, at): (&str, &str),
    run_apply: bool,
) -> Result<apply::Applied> {
    let home = &machine.paths.home;
    let source = chezmoi::source_dir(repo.root());
    let mut out = apply::Applied::default();
    for l in lost {
        let target = chezmoi::target_path(&source, &repo.root().join(&l.repo_path))?;
        if !target.starts_with(home) {
            continue;
        }
        let blob = repo
            .raw()
            .find_blob(l.ours)
            .map_err(Error::git("cannot read our side of a conflict"))?;
        let copy = capture::write_conflict_copy(
            &target,
            blob.content(),
            0o600,
            &machine.config.name,
            stamp,
        )?;
        crate::log::warn(&format!(
            "{}: changed here and on another machine; the fleet's version wins, yours (chezmoi source) is kept as {}",
            target.display(),
            copy.display()
        ));
        out.conflicts.push(state::ConflictRecord {
            path: target,
            copy,
            machine: machine.config.name.clone(),
            at: at.to_string(),
            reason: "both changed".into(),
        });
    }
    if !run_apply {
        return Ok(out);
    }
    let before = manifest.clone();
    chezmoi::apply(&source, home, managed, manifest)?;
    out.changed = manifest
        .files
        .iter()
        .filter(|(rel, e)| before.files.get(*rel) != Some(e))
        .count();
    Ok(out)
}

/// What the exchange with the forge did.
#[derive(Debug, Default)]
pub struct Exchanged {
    /// Whether our commits went out.
    pub pushed: bool,
    /// Managed files whose local side lost a conflict.
    pub lost: Vec<integrate::LostFile>,
    /// Other conflicts resolved.
    pub other_conflicts: usize,
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
            let skip_fetch = attempt == 0
                && network == Network::CheapCheck
                && known.is_some()
                && forge::remote_head(remote, branch)?.and_then(|h| git2::Oid::from_str(&h).ok())
                    == known;
            if !skip_fetch {
                fetch_retrying(repo, remote, branch)?;
            }
            let done = integrate::integrate(
                raw,
                branch,
                &machine.config.name,
                identity,
                at,
                fleet.backend,
            )?;
            out.lost.extend(done.lost);
            out.other_conflicts += done.other_conflicts;
            crate::fault::point("sync:integrated");
        }
        let head = repo.head();
        if head.is_none() || head == raw.refname_to_id(&tracking).ok() {
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
    Err(Error::Refused(format!(
        "the forge {remote} kept moving: {PUSH_TRIES} pushes in a row were rejected; your commits are kept"
    ))
    .hint("run `fleetkey sync` again"))
}

/// `git fetch`, retried (3 times, 300 ms apart) when another git holds a ref lock: a git left
/// running by a killed fleetkey that [`forge::reap_orphan`] did not know about.
fn fetch_retrying(repo: &FleetRepo, remote: &str, branch: &str) -> Result<()> {
    let mut tries = 0;
    loop {
        match forge::fetch(repo.root(), remote, branch) {
            Err(Error::ForgeUnreachable { stderr, .. })
                if tries < 3
                    && (stderr.contains("cannot lock ref") || stderr.contains(".lock'")) =>
            {
                tries += 1;
                crate::log::debug("another git holds a ref lock; retrying the fetch");
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            other => return other,
        }
    }
}

/// The integrate-and-push path for a command whose push was rejected (`secrets set` …): the
/// caller holds the lock and has committed. Managed files that lost a merge get their conflict
/// copies now (a later cycle could not tell them from files in step); the rest is applied by
/// the next cycle, after it has captured.
pub fn integrate_and_push(machine: &Machine, repo: &FleetRepo, fleet: &FleetConfig) -> Result<()> {
    let identity = machine.identity().ok();
    let now = clock::now_unix();
    let x = exchange(
        machine,
        repo,
        fleet,
        identity.as_ref(),
        &clock::rfc3339(now),
        Network::Full,
    )?;
    keep_lost(machine, repo, &x.lost, now)
}

fn head_tree(repo: &git2::Repository) -> Result<git2::Tree<'_>> {
    repo.head()
        .and_then(|h| h.peel_to_tree())
        .map_err(Error::git("cannot read HEAD of the fleet clone"))
}

/// Commits the captured changes in one commit.
fn commit_capture(repo: &FleetRepo, captured: &capture::Captured, name: &str) -> Result<()> {
    let mut names: Vec<String> = Vec::new();
    for (path, _, _) in &captured.upserts {
        names.push(display_path(path));
    }
    for path in &captured.removals {
        names.push(format!("{} (deleted)", display_path(path)));
    }
    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    let more = names.len().saturating_sub(3);
    let message = if more > 0 {
        format!("{name}: sync {} (+{more} more)", shown.join(", "))
    } else {
        format!("{name}: sync {}", shown.join(", "))
    };
    commit_changes(repo, &captured.upserts, &captured.removals, name, &message)?;
    Ok(())
}

/// Commits `upserts` (path, blob, exec) and `removals` on top of HEAD in one commit built in
/// memory (no index), moves the branch, then writes just those paths into the clone's working
/// tree and index. Returns `None` when nothing changed.
pub fn commit_changes(
    repo: &FleetRepo,
    upserts: &[(String, git2::Oid, bool)],
    removals: &[String],
    name: &str,
    message: &str,
) -> Result<Option<git2::Oid>> {
    let raw = repo.raw();
    let head = head_tree(raw)?;
    let mut b = git2::build::TreeUpdateBuilder::new();
    for (path, oid, exec) in upserts {
        let mode = if *exec {
            git2::FileMode::BlobExecutable
        } else {
            git2::FileMode::Blob
        };
        b.upsert(path.as_str(), *oid, mode);
    }
    for path in removals {
        b.remove(path.as_str());
    }
    let tree_id = b
        .create_updated(raw, &head)
        .map_err(Error::git("cannot write the changed tree"))?;
    if tree_id == head.id() {
        return Ok(None);
    }
    let tree = raw
        .find_tree(tree_id)
        .map_err(Error::git("cannot read a tree"))?;
    let parent = raw
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(Error::git("cannot read HEAD"))?;
    let sig = FleetRepo::signature(name)?;
    let oid = raw
        .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&parent])
        .map_err(Error::git("cannot commit"))?;
    // The working tree follows for the changed paths only (a long list: all of it).
    let mut co = git2::build::CheckoutBuilder::new();
    co.force();
    if upserts.len() + removals.len() <= 256 {
        for (path, _, _) in upserts {
            co.path(path.as_str());
        }
        for path in removals {
            co.path(path.as_str());
        }
    }
    raw.checkout_head(Some(&mut co))
        .map_err(Error::git("cannot update the fleet clone's working tree"))?;
    Ok(Some(oid))
}

/// `home/.zshrc` → `~/.zshrc`; `hosts/NAME/home/x` → `~/x (NAME only)`.
fn display_path(repo_path: &str) -> String {
    if let Some(rel) = repo_path.strip_prefix("home/") {
        return format!("~/{rel}");
    }
    let mut parts = repo_path.splitn(4, '/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("hosts"), Some(host), Some("home"), Some(rel)) => format!("~/{rel} ({host} only)"),
        _ => repo_path.to_string(),
    }
}

/// Whether fleetkey's own files in the clone's working tree differ from HEAD (hashing a handful
/// of small files, where a full status would stat every managed file).
fn own_files_dirty(repo: &FleetRepo) -> Result<bool> {
    let raw = repo.raw();
    let head = head_tree(raw)?;
    let hash = |p: &std::path::Path| {
        std::fs::read(p)
            .ok()
            .and_then(|b| git2::Oid::hash_object(git2::ObjectType::Blob, &b).ok())
    };
    for path in [
        FleetConfig::FILE,
        crate::secrets::CIPHERTEXT,
        crate::secrets::RECIPIENTS,
        ".chezmoiignore",
    ] {
        if tree::blob_at(&head, path) != hash(&repo.root().join(path)) {
            return Ok(true);
        }
    }
    let stored = tree::blobs_under(raw, &head, crate::roster::layout::KEYS)?;
    let keys = repo.root().join(crate::roster::layout::KEYS);
    let mut seen = 0;
    let mut stack = vec![(keys.clone(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = format!("{prefix}{name}");
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((e.path(), format!("{rel}/")));
                continue;
            }
            seen += 1;
            if stored.get(&rel).map(|(o, _)| *o) != hash(&e.path()) {
                return Ok(true);
            }
        }
    }
    Ok(seen != stored.len())
}

/// Repairs what a killed command may have left: stale git lock files, a half-done checkout or
/// merge state. Only called under fleetkey's lock. `full` compares the whole working tree with
/// HEAD (after an unfinished cycle); otherwise only fleetkey's own files (what `secrets`, the
/// key commands and `track` write before they commit) are compared, which is cheap.
pub fn recover(repo: &FleetRepo, full: bool) -> Result<()> {
    let raw = repo.raw();
    let git_dir = raw.path().to_path_buf();
    let mut stale = Vec::new();
    for name in [
        "index.lock",
        "HEAD.lock",
        "packed-refs.lock",
        "config.lock",
        "shallow.lock",
    ] {
        let p = git_dir.join(name);
        if p.exists() {
            stale.push(p);
        }
    }
    let mut stack = vec![git_dir.join("refs")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "lock") {
                stale.push(p);
            }
        }
    }
    for p in stale {
        crate::log::warn(&format!(
            "removing {} left by an interrupted command",
            p.display()
        ));
        std::fs::remove_file(&p).map_err(Error::io("cannot remove", &p))?;
    }
    raw.cleanup_state()
        .map_err(Error::git("cannot clear merge state"))?;
    crate::log::debug("repair: locks and state checked");
    if let Some(head) = repo.head() {
        let dirty = if full {
            let mut opts = git2::StatusOptions::new();
            opts.include_untracked(false).exclude_submodules(true);
            raw.statuses(Some(&mut opts))
                .map(|s| !s.is_empty())
                .unwrap_or(true)
        } else {
            own_files_dirty(repo).unwrap_or(true)
        };
        if dirty {
            crate::log::debug("resetting the fleet clone's working tree to HEAD");
            integrate::move_to(raw, head)?;
        }
    }
    Ok(())
}

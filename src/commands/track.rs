//! `fleetkey track PATH…` and `untrack PATH…`: change the managed list.
//!
//! `track` seeds `home/REL` in the fleet repo with the live content FIRST, then adds `~/REL`
//! (`~/REL/` for a directory) to fleet.toml, and commits both in one commit, so no cycle on any
//! machine can see the path managed without its content. `untrack` removes the entry and
//! `home/REL` from the repo; it never touches the live file. Both push; offline (exit 75) the
//! commit stays and goes out with the next cycle. With the chezmoi backend, `track` seeds
//! through `chezmoi add` and `untrack` only edits the list (the chezmoi source stays the user's).

use crate::config::FleetConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::files;
use crate::fleet::Machine;
use crate::output::outln;
use crate::repo::FleetRepo;
use crate::sync::managed::{self, Managed};
use crate::sync::state::Manifest;
use crate::sync::{self, capture, capture::live_files};

/// Resolves what the user typed into managed entries, checking each.
fn resolve(machine: &Machine, inputs: &[String], must_exist: bool) -> Result<Vec<Managed>> {
    let cwd = std::env::current_dir().map_err(Error::io(
        "cannot read the current directory",
        std::path::Path::new("."),
    ))?;
    let mut out = Vec::new();
    for input in inputs {
        let rel = managed::normalize(input, &machine.paths.home, &cwd)?;
        managed::check_allowed(&rel, &machine.paths, &machine.config.repo)?;
        let full = machine.paths.home.join(&rel);
        let meta = std::fs::symlink_metadata(&full);
        let dir = match &meta {
            Ok(m) if m.is_dir() => true,
            Ok(m) if m.is_file() => false,
            Ok(_) => {
                return Err(ErrorKind::Refused(format!(
                    "{} is not a regular file or directory",
                    full.display()
                ))
                .into());
            }
            Err(_) if must_exist => {
                return Err(ErrorKind::Refused(format!(
                    "{} does not exist; there is nothing to seed the fleet with",
                    full.display()
                ))
                .into());
            }
            Err(_) => input.ends_with('/'),
        };
        out.push(Managed { rel, dir });
    }
    Ok(out)
}

/// `fleetkey track PATH…`.
pub fn track(inputs: &[String], push: bool) -> Result<()> {
    let machine = Machine::load()?;
    let wanted = resolve(&machine, inputs, true)?;
    refuse_ignored(&machine, &wanted)?;
    let mut change = sync::FleetChange::begin(&machine, sync::Begin::RepairAll)?;
    let mut fleet = change.fleet.clone();
    let existing = managed::parse_list(&fleet.sync.paths)?;
    let added = not_yet_managed(&machine, &change.repo, &existing, wanted)?;
    if added.is_empty() {
        return Ok(());
    }
    // Seed first: copy every live file into home/ (with chezmoi: `chezmoi add`).
    let mut manifest = Manifest::load(&machine.paths.state_dir);
    let ignore = crate::sync::ignore::IgnoreRules::new(&fleet.sync.ignore).0;
    let live = live_files(&machine.paths.home, &added, &ignore);
    let chezmoi = fleet.backend == crate::config::Backend::Chezmoi;
    let upserts = if chezmoi {
        seed_chezmoi(&machine, &fleet, &added)?;
        Vec::new()
    } else {
        refuse_private_keys(&machine, &added)?;
        seed_native(&machine, &change.repo, &fleet, &added, &mut manifest)?
    };
    // Then the list, and both in one commit.
    add_entries(&mut fleet, &added);
    let shown: Vec<String> = added.iter().map(Managed::entry).collect();
    let message = format!("{}: track {}", machine.config.name, shown.join(", "));
    if chezmoi {
        let all = existing_and(&existing, &added);
        commit_chezmoi(
            &machine,
            &change.repo,
            &fleet,
            &all,
            &mut manifest,
            &message,
        )?;
    } else {
        commit_native(&change.repo, &fleet, upserts, &message)?;
    }
    manifest.save(&machine.paths.state_dir)?;
    outln!(
        "fleetkey: tracking {} ({} files)",
        shown.join(", "),
        live.len()
    )?;
    if push {
        change.fleet = fleet;
        change.publish()?;
    }
    Ok(())
}

/// Of `wanted`, the entries not managed yet, once each. One the list already covers is left
/// out with a note, and each path under it overridden on this machine is named (its edits
/// reach no other machine).
fn not_yet_managed(
    machine: &Machine,
    repo: &FleetRepo,
    existing: &[Managed],
    wanted: Vec<Managed>,
) -> Result<Vec<Managed>> {
    let overridden = {
        let head = sync::commit::head_tree(repo.raw())?;
        sync::overrides::list(repo.raw(), &head, &machine.config.name)
    };
    let mut added: Vec<Managed> = Vec::new();
    for m in wanted {
        if let Some(e) = existing.iter().find(|e| e.covers(&m.rel)) {
            crate::log::info(&format!(
                "{} is already managed (by {})",
                m.entry(),
                e.entry()
            ));
            for o in overridden.iter().filter(|o| m.covers(o)) {
                outln!(
                    "fleetkey: ~/{o} is overridden on this machine: its edits go to {}/{o} and reach no other machine (`fleetkey untrack --here ~/{o}` follows the fleet's version again)",
                    sync::tree::host_dir(&machine.config.name)
                )?;
            }
            continue;
        }
        if added.iter().any(|a| a == &m) {
            continue;
        }
        added.push(m);
    }
    Ok(added)
}

/// The chezmoi backend's seed: `chezmoi add` of the new entries into the source (its ignore
/// file ensured first); a file still being written refuses the whole `track`.
fn seed_chezmoi(machine: &Machine, fleet: &FleetConfig, added: &[Managed]) -> Result<()> {
    let source = crate::sync::chezmoi::source_dir(&machine.config.repo);
    crate::sync::chezmoi::ensure_ignore(&source)?;
    let mut held_back = Vec::new();
    crate::sync::chezmoi::capture(
        &source,
        &machine.paths.home,
        added,
        &Manifest::default(),
        capture::Patience::of(fleet, true),
        &mut held_back,
    )?;
    if let Some(first) = held_back.first() {
        return Err(ErrorKind::Refused(format!("cannot seed the fleet: {first}")).into());
    }
    Ok(())
}

/// A private key named on the command line is refused outright; one inside a tracked
/// directory is skipped by the capture (with a warning), as in every cycle.
fn refuse_private_keys(machine: &Machine, added: &[Managed]) -> Result<()> {
    for m in added.iter().filter(|m| !m.dir) {
        let src = machine.paths.home.join(&m.rel);
        let bytes = std::fs::read(&src).map_err(Error::io("cannot read", &src))?;
        if let Some(kind) = crate::private::detect(&m.rel, &bytes) {
            return Err(ErrorKind::Refused(format!(
                "{} looks like {kind}; fleetkey never puts private keys or credentials in the fleet repo",
                src.display()
            ))
            .hint("keep it per machine, or store the value with `fleetkey secrets set`"));
        }
    }
    Ok(())
}

/// The native backend's seed: the same capture as a cycle's, with the live content winning
/// (the user asked for it) and the fleet secrets' values become their placeholders. Blobs go
/// straight into the object database; the commit is the durable point, and a killed `track`
/// leaves nothing half-written in the clone. Returns the blobs for the commit; a file still
/// being written refuses the whole `track`.
fn seed_native(
    machine: &Machine,
    repo: &FleetRepo,
    fleet: &FleetConfig,
    added: &[Managed],
    manifest: &mut Manifest,
) -> Result<Vec<(String, git2::Oid, bool)>> {
    let head = sync::commit::head_tree(repo.raw())?;
    let plan = sync::plan::Plan::new(machine, fleet.clone());
    let home = plan.open_home()?;
    let skip = plan.never_captured(&machine.paths.state_dir);
    let placeholders = plan
        .placeholders
        .clone()
        .with_secrets(sync::plan::secret_values(machine));
    let scope = capture::Scope {
        home: &home,
        confinement: &plan.confinement,
        managed: added,
        skip: &skip,
        machine: &machine.config.name,
        first_contact: capture::FirstContact::LocalWins,
        ignore: &plan.ignore,
        placeholders: &placeholders,
        allow_tokens: &plan.allow_tokens,
        patience: Some(capture::Patience::of(&plan.fleet, true)),
    };
    let captured = capture::capture(repo.raw(), &head, &scope, manifest)?;
    if let Some(first) = captured.held_back.first() {
        return Err(ErrorKind::Refused(format!("cannot seed the fleet: {first}")).into());
    }
    Ok(captured.upserts)
}

/// The list's rule: each added entry joins fleet.toml, and a new directory entry absorbs the
/// entries it covers.
fn add_entries(fleet: &mut FleetConfig, added: &[Managed]) {
    for m in added {
        let entries: Vec<String> = fleet
            .sync
            .paths
            .iter()
            .filter(|e| {
                Managed::parse(e)
                    .map(|x| !(m.dir && m.covers(&x.rel)))
                    .unwrap_or(true)
            })
            .cloned()
            .collect();
        fleet.sync.paths = entries;
        fleet.sync.paths.push(m.entry());
    }
}

/// The chezmoi backend's commit: fleet.toml written in the clone, the managed list `all`
/// recorded as applied, and everything committed.
fn commit_chezmoi(
    machine: &Machine,
    repo: &FleetRepo,
    fleet: &FleetConfig,
    all: &[Managed],
    manifest: &mut Manifest,
    message: &str,
) -> Result<()> {
    files::write_atomic(
        &machine.config.repo.join(FleetConfig::FILE),
        fleet.file_text().as_bytes(),
        0o644,
    )?;
    crate::sync::chezmoi::record(&machine.paths.home, all, manifest);
    repo.commit_all(&["."], message)?;
    Ok(())
}

/// The native backend's commit: the seeded blobs and the new fleet.toml, in one commit made
/// straight from the object database.
fn commit_native(
    repo: &FleetRepo,
    fleet: &FleetConfig,
    mut upserts: Vec<(String, git2::Oid, bool)>,
    message: &str,
) -> Result<()> {
    let toml = repo
        .raw()
        .blob(fleet.file_text().as_bytes())
        .map_err(Error::git("cannot store fleet.toml"))?;
    upserts.push((FleetConfig::FILE.to_string(), toml, false));
    crate::sync::commit::commit_changes(repo, &upserts, &[], message)?;
    Ok(())
}

/// A path the ignore rules cover would be managed with nothing in it: refused, saying why.
fn refuse_ignored(machine: &Machine, wanted: &[Managed]) -> Result<()> {
    let fleet = machine.fleet_config()?;
    let ignore = crate::sync::ignore::IgnoreRules::new(&fleet.sync.ignore).0;
    for m in wanted {
        if ignore.is_ignored(&m.rel, m.dir) {
            return Err(Error::refused(format!(
                "{} is ignored (the built-in list or [sync] ignore): fleetkey never syncs it",
                m.entry()
            ))
            .hint("`fleetkey config get ignore` shows the fleet's own patterns"));
        }
    }
    Ok(())
}

fn existing_and(existing: &[Managed], added: &[Managed]) -> Vec<Managed> {
    existing.iter().chain(added).cloned().collect()
}

/// `fleetkey untrack PATH…`.
pub fn untrack(inputs: &[String], push: bool) -> Result<()> {
    let machine = Machine::load()?;
    let wanted = resolve(&machine, inputs, false)?;
    let mut change = sync::FleetChange::begin(&machine, sync::Begin::RepairAll)?;
    let repo = &change.repo;
    let mut fleet = change.fleet.clone();
    let mut removed = Vec::new();
    for m in &wanted {
        let before = fleet.sync.paths.len();
        fleet
            .sync
            .paths
            .retain(|e| Managed::parse(e).map(|x| x.rel != m.rel).unwrap_or(true));
        if fleet.sync.paths.len() == before {
            crate::log::info(&format!("~/{} is not in the managed list", m.rel));
            continue;
        }
        removed.push(m.clone());
    }
    if removed.is_empty() {
        return Ok(());
    }
    let name = &machine.config.name;
    let shown: Vec<String> = removed.iter().map(|m| format!("~/{}", m.rel)).collect();
    let head = repo
        .raw()
        .head()
        .and_then(|h| h.peel_to_tree())
        .map_err(Error::git("cannot read HEAD"))?;
    let mut removals = Vec::new();
    for m in &removed {
        let path = format!("home/{}", m.rel);
        if crate::sync::tree::blob_at(&head, &path).is_some() {
            removals.push(path.clone());
        }
        for sub in crate::sync::tree::blobs_under(repo.raw(), &head, &path)?.keys() {
            removals.push(format!("{path}/{sub}"));
        }
    }
    let toml = repo
        .raw()
        .blob(fleet.file_text().as_bytes())
        .map_err(Error::git("cannot store fleet.toml"))?;
    crate::sync::commit::commit_changes(
        repo,
        &[(FleetConfig::FILE.to_string(), toml, false)],
        &removals,
        &format!("{name}: untrack {}", shown.join(", ")),
    )?;
    let mut manifest = Manifest::load(&machine.paths.state_dir);
    manifest
        .files
        .retain(|rel, _| !removed.iter().any(|m| m.covers(rel)));
    manifest.save(&machine.paths.state_dir)?;
    outln!(
        "fleetkey: no longer tracking {} (the live files are left as they are)",
        shown.join(", ")
    )?;
    if push {
        change.fleet = fleet;
        change.publish()?;
    }
    Ok(())
}

/// `fleetkey track --here PATH…`: this machine's own version of each path, in
/// `hosts/NAME/home/` (see [`crate::sync::overrides`]); a path not managed yet joins the
/// managed list too (the other machines have no content for it, so nothing reaches them).
pub fn track_here(inputs: &[String], push: bool) -> Result<()> {
    let machine = Machine::load()?;
    let wanted = resolve(&machine, inputs, true)?;
    refuse_ignored(&machine, &wanted)?;
    let mut change = sync::FleetChange::begin(&machine, sync::Begin::RepairAll)?;
    let repo = &change.repo;
    let plan = sync::plan::Plan::for_machine(&machine)?;
    if plan.fleet.backend == crate::config::Backend::Chezmoi {
        return Err(Error::refused(
            "per-machine files are the native backend's; with chezmoi, use its templates",
        ));
    }
    let name = &machine.config.name;
    let mut fleet = plan.fleet.clone();
    let mut manifest = Manifest::load(&machine.paths.state_dir);
    let never = plan.never_captured(&machine.paths.state_dir);
    let mut upserts = Vec::new();
    let mut shown = Vec::new();
    for m in &wanted {
        if !plan.managed.iter().any(|e| e.covers(&m.rel)) {
            fleet.sync.paths.push(m.entry());
        }
        let made = sync::overrides::make(repo.raw(), &plan, name, m, &never, &mut manifest)?;
        if made.rels.is_empty() {
            return Err(Error::refused(format!(
                "{} holds no file fleetkey may sync (ignored or private-looking files are left out)",
                m.entry()
            )));
        }
        upserts.extend(made.upserts);
        shown.push(m.entry());
    }
    if fleet != plan.fleet {
        let toml = repo
            .raw()
            .blob(fleet.file_text().as_bytes())
            .map_err(Error::git("cannot store fleet.toml"))?;
        upserts.push((FleetConfig::FILE.to_string(), toml, false));
    }
    let message = format!("{name}: track --here {} ({name} only)", shown.join(", "));
    crate::sync::commit::commit_changes(repo, &upserts, &[], &message)?;
    manifest.save(&machine.paths.state_dir)?;
    outln!(
        "fleetkey: {} is now this machine's own ({}/); its edits stay on {name}",
        shown.join(", "),
        sync::tree::host_dir(name)
    )?;
    if push {
        change.fleet = fleet;
        change.publish()?;
    }
    Ok(())
}

/// `fleetkey untrack --here PATH…`: removes this machine's override; the fleet's version
/// (`home/`) replaces the live file on the next cycle (the override stays in history).
pub fn untrack_here(inputs: &[String], push: bool) -> Result<()> {
    let machine = Machine::load()?;
    let wanted = resolve(&machine, inputs, false)?;
    let mut change = sync::FleetChange::begin(&machine, sync::Begin::RepairAll)?;
    let repo = &change.repo;
    let fleet = machine.fleet_config()?;
    let name = &machine.config.name;
    let head = sync::commit::head_tree(repo.raw())?;
    let mut removals = Vec::new();
    let mut shown = Vec::new();
    for m in &wanted {
        let found = sync::overrides::existing(repo.raw(), &head, name, m)?;
        if found.is_empty() {
            crate::log::info(&format!("{} is not overridden on this machine", m.entry()));
            continue;
        }
        removals.extend(found);
        shown.push(m.entry());
    }
    drop(head);
    if removals.is_empty() {
        return Ok(());
    }
    let message = format!("{name}: untrack --here {}", shown.join(", "));
    crate::sync::commit::commit_changes(repo, &[], &removals, &message)?;
    outln!(
        "fleetkey: {} follows the fleet's version again from the next cycle (this machine's stays in history: `fleetkey log`)",
        shown.join(", ")
    )?;
    if push {
        change.fleet = fleet;
        change.publish()?;
    }
    Ok(())
}

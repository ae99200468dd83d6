//! `fleetkey log [PATH]` and `fleetkey restore PATH [--at REV | --before DATE]`: a managed
//! file's history from git ([`crate::sync::history`]) and an earlier version put back
//! ([`crate::sync::restore`]).

use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::output::outln;
use crate::sync::plan::ManagedKind;
use crate::sync::{self, history, managed};

fn rel_of(machine: &Machine, input: &str) -> Result<String> {
    let cwd = std::env::current_dir().map_err(Error::io(
        "cannot read the current directory",
        std::path::Path::new("."),
    ))?;
    managed::normalize(input, &machine.paths.home, &cwd)
}

/// What `rel` is to the managed list of the fleet.toml in force (refused when not managed).
pub(crate) fn managed_kind(
    machine: &Machine,
    plan: &sync::plan::Plan,
    raw: &git2::Repository,
    rel: &str,
) -> Result<ManagedKind> {
    let overrides = sync::commit::head_tree(raw)
        .map(|t| sync::overrides::list(raw, &t, &machine.config.name))
        .unwrap_or_default();
    plan.managed_kind(rel, &overrides)
}

/// `fleetkey log [PATH]`: one line per change, newest first. A directory's log lists the
/// changes of every file under it.
pub fn log(path: Option<&str>, limit: usize) -> Result<()> {
    let machine = Machine::load()?;
    let fleet_toml = path == Some(FLEET_TOML);
    let rel = path
        .filter(|_| !fleet_toml)
        .map(|p| rel_of(&machine, p))
        .transpose()?;
    let repo = machine.repo()?;
    let scope = match &rel {
        _ if fleet_toml => Some(history::Scope::Repo(FLEET_TOML)),
        Some(r) => {
            let plan = sync::plan::Plan::for_machine(&machine)?;
            Some(match managed_kind(&machine, &plan, repo.raw(), r)? {
                ManagedKind::File => history::Scope::File(r),
                ManagedKind::Dir => history::Scope::Dir(r),
            })
        }
        None => None,
    };
    let entries = history::log(repo.raw(), &machine.config.name, scope, limit)?;
    let mut text = String::new();
    for e in &entries {
        text.push_str(&format!(
            "{}  {}  {:<14} {:<14} {}\n",
            &e.commit.to_string()[..12],
            crate::clock::rfc3339(e.time),
            e.machine,
            e.what,
            e.subject
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
        ));
    }
    if entries.is_empty()
        && let Some(r) = &rel
    {
        text.push_str(&format!("~/{r} has no history in the fleet\n"));
    }
    crate::output::stdout(text.as_bytes())
}

/// The fleet's own settings file, which `log` and `restore` take by this name.
const FLEET_TOML: &str = crate::config::FleetConfig::FILE;

/// `fleetkey restore PATH [--at REV | --before DATE]`.
pub fn restore(path: &str, at: Option<&str>, before: Option<&str>, push: bool) -> Result<()> {
    let machine = Machine::load()?;
    if path == FLEET_TOML {
        let which = which(at, before)?;
        return restore_fleet_toml(&machine, &which, push);
    }
    let rel = rel_of(&machine, path)?;
    let which = which(at, before)?;
    let mut change = sync::FleetChange::begin(&machine, sync::Begin::RepairAll)?;
    let repo = &change.repo;
    let plan = sync::plan::Plan::for_machine(&machine)?;
    if plan.fleet.backend == crate::config::Backend::Chezmoi {
        return Err(Error::refused("`fleetkey restore` is the native backend's")
            .hint("with chezmoi, restore the source file with git, then run `fleetkey sync`"));
    }
    let name = &machine.config.name;
    if managed_kind(&machine, &plan, repo.raw(), &rel)? == ManagedKind::Dir {
        return restore_dir(&mut change, plan, &rel, &which, push);
    }
    let version = history::find_version(repo.raw(), name, &rel, &which)?;
    let done = sync::restore::restore(
        repo,
        &plan,
        name,
        &rel,
        &version,
        &machine.paths.state_dir,
        crate::clock::now_unix(),
    )?;
    let short = &version.commit.to_string()[..12];
    if !done.changed {
        outln!("fleetkey: ~/{rel} already holds the version of {short}")?;
        return Ok(());
    }
    outln!("fleetkey: ~/{rel} is back to the version of {short}; every machine gets it")?;
    if let Some(c) = &done.copy {
        outln!("  the version it replaced is kept as {}", c.copy.display())?;
    }
    if push {
        change.fleet = plan.fleet;
        change.publish()?;
    }
    Ok(())
}

/// `restore DIR --at REV | --before DATE`: every file under the managed directory DIR back to
/// its version in that commit, each as `restore FILE` would put it back (a copy of what it
/// replaces kept beside it). Files added since are left as they are, and named.
fn restore_dir(
    change: &mut sync::FleetChange,
    plan: sync::plan::Plan,
    rel: &str,
    which: &history::Which,
    push: bool,
) -> Result<()> {
    let machine = change.machine;
    let repo = &change.repo;
    let name = &machine.config.name;
    let commit = history::find_commit(repo.raw(), which)?;
    let short = &commit.to_string()[..12];
    let files = history::files_under(repo.raw(), commit, name, rel)?;
    if files.is_empty() {
        return Err(
            Error::refused(format!("~/{rel}/ held no file at {short}")).hint(format!(
                "`fleetkey log ~/{rel}` lists the commits that changed files under it"
            )),
        );
    }
    let now = crate::clock::now_unix();
    let (mut changed, mut copies) = (0, Vec::new());
    for (file, version) in &files {
        let done = sync::restore::restore(
            repo,
            &plan,
            name,
            file,
            version,
            &machine.paths.state_dir,
            now,
        )?;
        if done.changed {
            changed += 1;
        }
        copies.extend(done.copy.map(|c| c.copy));
    }
    outln!(
        "fleetkey: ~/{rel}/ is back to the version of {short}: {changed} of {} files changed; every machine gets them",
        files.len()
    )?;
    for c in &copies {
        outln!("  the version it replaced is kept as {}", c.display())?;
    }
    let head = sync::commit::head_tree(repo.raw())?;
    let now_files = sync::tree::blobs_under(
        repo.raw(),
        &head,
        &format!("{}/{rel}", sync::tree::HOME_DIR),
    )?;
    let newer: Vec<String> = now_files
        .keys()
        .map(|sub| format!("{rel}/{sub}"))
        .filter(|f| !files.iter().any(|(old, _)| old == f))
        .collect();
    for f in &newer {
        outln!("  ~/{f} did not exist then and is left as it is")?;
    }
    if push {
        change.fleet = plan.fleet;
        change.publish()?;
    }
    Ok(())
}

/// Which version `--at` / `--before` name.
fn which(at: Option<&str>, before: Option<&str>) -> Result<history::Which> {
    Ok(match (at, before) {
        (Some(rev), _) => history::Which::At(rev.to_string()),
        (None, Some(date)) => {
            history::Which::Before(crate::clock::parse(date).ok_or_else(|| {
                Error::refused(format!("{date:?} is not a date"))
                    .hint("write YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)")
            })?)
        }
        (None, None) => history::Which::Previous,
    })
}

/// `restore fleet.toml [--at REV | --before DATE]`: an earlier fleet.toml back, checked as a
/// cycle checks it, in one commit (`NAME: restore fleet.toml from REV`), pushed. Without an
/// option: the newest earlier version that differs from the current one and is valid.
fn restore_fleet_toml(machine: &Machine, which: &history::Which, push: bool) -> Result<()> {
    let change = sync::FleetChange::begin(machine, sync::Begin::RepairAll)?;
    let repo = &change.repo;
    let raw = repo.raw();
    let at_commit = |oid: git2::Oid| -> Option<(git2::Oid, String)> {
        let tree = raw.find_commit(oid).ok()?.tree().ok()?;
        let blob = sync::tree::blob_at(&tree, FLEET_TOML)?;
        let text = String::from_utf8(raw.find_blob(blob).ok()?.content().to_vec()).ok()?;
        Some((blob, text))
    };
    let valid = |text: &str| -> Result<()> {
        let config: crate::config::FleetConfig = toml::from_str(text).map_err(|e| {
            Error::refused(format!(
                "that fleet.toml is not valid either: {}",
                e.message()
            ))
        })?;
        config.validate(std::path::Path::new(FLEET_TOML))
    };
    let current = repo.head().and_then(&at_commit).map(|(b, _)| b);
    let commit = match which {
        history::Which::Previous => {
            let mut walk = raw.revwalk().map_err(Error::git("cannot walk history"))?;
            walk.set_sorting(git2::Sort::TIME)
                .map_err(Error::git("cannot walk history"))?;
            walk.push_head()
                .map_err(Error::git("cannot walk history"))?;
            walk.flatten()
                .find(|oid| {
                    at_commit(*oid)
                        .is_some_and(|(b, text)| Some(b) != current && valid(&text).is_ok())
                })
                .ok_or_else(|| Error::refused("fleet.toml has no earlier valid version"))?
        }
        other => history::find_commit(raw, other)?,
    };
    let short = commit.to_string()[..12].to_string();
    let (blob, text) = at_commit(commit)
        .ok_or_else(|| Error::refused(format!("the fleet held no fleet.toml at {short}")))?;
    valid(&text)
        .map_err(|e| e.hint("`fleetkey log fleet.toml` lists its versions: pick a valid one"))?;
    let name = &machine.config.name;
    if Some(blob) == current {
        outln!("fleetkey: fleet.toml already is the version of {short}")?;
        return Ok(());
    }
    sync::commit::commit_changes(
        repo,
        &[(FLEET_TOML.to_string(), blob, false)],
        &[],
        &format!("{name}: restore fleet.toml from {short}"),
    )?;
    outln!(
        "fleetkey: fleet.toml is back to the version of {short}; every machine takes it on its next cycle"
    )?;
    if push {
        change.publish()?;
    }
    Ok(())
}

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
    let rel = path.map(|p| rel_of(&machine, p)).transpose()?;
    let repo = machine.repo()?;
    let scope = match &rel {
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

/// `fleetkey restore PATH [--at REV | --before DATE]`.
pub fn restore(path: &str, at: Option<&str>, before: Option<&str>, push: bool) -> Result<()> {
    let machine = Machine::load()?;
    let rel = rel_of(&machine, path)?;
    let which = match (at, before) {
        (Some(rev), _) => history::Which::At(rev.to_string()),
        (None, Some(date)) => {
            history::Which::Before(crate::clock::parse(date).ok_or_else(|| {
                Error::refused(format!("{date:?} is not a date"))
                    .hint("write YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)")
            })?)
        }
        (None, None) => history::Which::Previous,
    };
    let _lock = machine.lock()?;
    let repo = machine.repo()?;
    sync::recover(&repo, true)?;
    let plan = sync::plan::Plan::for_machine(&machine)?;
    if plan.fleet.backend == crate::config::Backend::Chezmoi {
        return Err(Error::refused("`fleetkey restore` is the native backend's")
            .hint("with chezmoi, restore the source file with git, then run `fleetkey sync`"));
    }
    let name = &machine.config.name;
    if managed_kind(&machine, &plan, repo.raw(), &rel)? == ManagedKind::Dir {
        return restore_dir(&machine, &repo, &plan, &rel, &which, push);
    }
    let version = history::find_version(repo.raw(), name, &rel, &which)?;
    let done = sync::restore::restore(
        &repo,
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
        sync::push_merging_upstream(&machine, &repo, &plan.fleet)?;
    }
    Ok(())
}

/// `restore DIR --at REV | --before DATE`: every file under the managed directory DIR back to
/// its version in that commit, each as `restore FILE` would put it back (a copy of what it
/// replaces kept beside it). Files added since are left as they are, and named.
fn restore_dir(
    machine: &Machine,
    repo: &crate::repo::FleetRepo,
    plan: &sync::plan::Plan,
    rel: &str,
    which: &history::Which,
    push: bool,
) -> Result<()> {
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
            plan,
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
        sync::push_merging_upstream(machine, repo, &plan.fleet)?;
    }
    Ok(())
}

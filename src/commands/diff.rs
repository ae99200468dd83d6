//! `fleetkey diff [PATH…] [--offline]`: what the next cycle would do, both ways
//! ([`crate::sync::preview`]): the local edits it would capture, and what the forge's latest
//! commit (fetched first, unless `--offline`) would change in the live files.

use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::output::outln;
use crate::sync::{self, managed, preview};

/// `fleetkey diff`.
pub fn run(paths: &[String], offline: bool) -> Result<()> {
    let machine = Machine::load()?;
    let cwd = std::env::current_dir().map_err(Error::io(
        "cannot read the current directory",
        std::path::Path::new("."),
    ))?;
    let only: Vec<String> = paths
        .iter()
        .map(|p| managed::normalize(p, &machine.paths.home, &cwd))
        .collect::<Result<_>>()?;
    let locked = machine.lock()?;
    let repo = machine.repo()?;
    sync::recover(&repo, false)?;
    let plan = sync::plan::Plan::for_machine(&machine)?;
    if plan.fleet.backend == crate::config::Backend::Chezmoi {
        return Err(Error::refused("`fleetkey diff` is the native backend's")
            .hint("with chezmoi, `chezmoi diff` shows what apply would change"));
    }
    // A path that is not managed is refused, not answered with "nothing to capture".
    for rel in &only {
        super::history::managed_kind(&machine, &plan, repo.raw(), rel)?;
    }
    let branch = plan.fleet.sync.branch.clone();
    let note = if offline {
        None
    } else {
        fetch_or_note(&locked.forge, &repo, &branch)?
    };
    let raw = repo.raw();
    let tracking = sync::integrate::tracking_ref(&branch);
    let refused = crate::gate::refuse_tree(&machine, raw, &tracking)?;
    let head = sync::commit::head_tree(raw)?;
    let trees = match &refused {
        None => incoming_trees(&repo, &branch)?,
        Some(_) => None,
    };
    let manifest = sync::state::Manifest::load(&machine.paths.state_dir);
    let never = plan.never_captured(&machine.paths.state_dir);
    let inputs = preview::Inputs {
        repo: raw,
        plan: &plan,
        machine: &machine.config.name,
        manifest: &manifest,
        never: &never,
        only: &only,
    };
    let p = preview::preview(&inputs, &head, trees.as_ref().map(|(b, t)| (b, t)))?;
    crate::output::stdout(render(&p, refused.as_ref())?.as_bytes())?;
    if let Some(n) = note {
        outln!("note: {n}")?;
    }
    Ok(())
}

/// Fetches the fleet branch; an unreachable forge is a note (incoming is then as of the last
/// fetch), any other failure an error.
fn fetch_or_note(
    forge: &crate::forge::Forge,
    repo: &crate::repo::FleetRepo,
    branch: &str,
) -> Result<Option<String>> {
    match forge.fetch(repo.root(), branch) {
        Ok(()) => Ok(None),
        Err(e) if e.is_unreachable() => Ok(Some(format!(
            "the forge cannot be reached ({e}); incoming is as of the last fetch"
        ))),
        Err(e) => Err(e),
    }
}

/// The merge base's tree and the forge's, when the forge holds commits this clone does not.
fn incoming_trees<'r>(
    repo: &'r crate::repo::FleetRepo,
    branch: &str,
) -> Result<Option<(git2::Tree<'r>, git2::Tree<'r>)>> {
    let raw = repo.raw();
    let (Some(h), Some(t)) = (repo.head(), repo.remote_tracking(branch)) else {
        return Ok(None);
    };
    if h == t
        || raw
            .graph_descendant_of(h, t)
            .map_err(Error::git("cannot compare histories"))?
    {
        return Ok(None);
    }
    let base = raw
        .merge_base(h, t)
        .map_err(Error::git("the fleet clone and the forge share no history"))?;
    let tree_of = |oid| {
        raw.find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(Error::git("cannot read a commit"))
    };
    Ok(Some((tree_of(base)?, tree_of(t)?)))
}

/// The preview as `diff` prints it: outgoing, incoming (or why nothing is applied), the files
/// kept here.
fn render(p: &preview::Preview, refused: Option<&crate::trust::Refusal>) -> Result<String> {
    let mut text = String::new();
    if p.outgoing.is_empty() {
        text.push_str("outgoing: nothing to capture\n");
    } else {
        text.push_str(&format!(
            "outgoing: {} local edit(s) the next sync captures\n",
            p.outgoing.len()
        ));
        for c in &p.outgoing {
            text.push_str(&preview::render_change(c, "fleet", "here")?);
        }
    }
    if let Some(refused) = refused {
        text.push_str(&format!(
            "incoming: nothing applied: {}\n",
            crate::gate::tree_held_back(refused)
        ));
    } else if p.incoming.is_empty() {
        text.push_str("incoming: nothing from the forge\n");
    } else {
        text.push_str(&format!(
            "incoming: {} file(s) the next sync changes here\n",
            p.incoming.len()
        ));
        for c in &p.incoming {
            text.push_str(&preview::render_change(c, "here", "forge")?);
        }
    }
    for o in &p.overridden {
        text.push_str(&format!(
            "overridden here: ~/{o} (its edits stay on this machine)\n"
        ));
    }
    Ok(text)
}

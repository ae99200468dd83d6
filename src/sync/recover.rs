//! Crash repair at the start of every cycle and fleet-changing command.
//!
//! Owns: removing stale git lock files and merge state, and resetting the clone's working tree
//! to HEAD where a killed command left it different. Only called under fleetkey's lock, so no
//! other fleetkey holds those git locks. Must never: touch a live file in `$HOME`, or move the
//! branch.

use crate::config::FleetConfig;
use crate::error::{Error, Result};
use crate::repo::FleetRepo;

use super::commit::head_tree;
use super::{integrate, tree};

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

//! Per-machine files (native backend): `hosts/NAME/home/REL` in the fleet repo is machine
//! NAME's own version of the managed file `~/REL`. Apply writes it instead of `home/REL` on
//! NAME only ([`super::tree::lookup`] looks there first), and capture puts NAME's edits of it
//! back there, so they never reach another machine; every other machine goes on with `home/`.
//!
//! Owns: making an override from the live files (`track --here`), removing one
//! (`untrack --here`), and listing this machine's (for `status`, `diff` and `track`). Must
//! never: touch another machine's `hosts/` directory, or read a live file outside the checked
//! managed paths.

use crate::error::{Error, Result};

use super::capture::live_files;
use super::managed::Managed;
use super::plan::Plan;
use super::state::{Entry, Manifest, Stat};
use super::tree;

/// The repo changes of a `track --here`: the files to write under `hosts/NAME/home/`.
#[derive(Debug, Default)]
pub struct Made {
    /// (repo path, blob, exec), for [`super::commit::commit_changes`].
    pub upserts: Vec<(String, git2::Oid, bool)>,
    /// The live files the override holds (relative to `$HOME`).
    pub rels: Vec<String>,
}

/// Stores the live content of every file `m` covers (ignored and private-looking files left
/// out, home path as the placeholder) as this machine's override, and records each as in step
/// in `manifest`.
pub fn make(
    repo: &git2::Repository,
    plan: &Plan,
    machine: &str,
    m: &Managed,
    never: &std::collections::BTreeSet<String>,
    manifest: &mut Manifest,
) -> Result<Made> {
    use std::os::unix::fs::PermissionsExt;
    let home = plan.open_home()?;
    let host = tree::host_dir(machine);
    let mut out = Made::default();
    for (rel, _) in live_files(home.path(), std::slice::from_ref(m), &plan.ignore) {
        if never.contains(&rel) || crate::private::by_path(&rel).is_some() {
            continue;
        }
        let checked = plan
            .confinement
            .check_rel(&rel)
            .map_err(|r| Error::refused(r.to_string()))?;
        let contents = home.read_file(&checked, crate::limits::MANAGED_FILE)?;
        if crate::private::detect(&rel, &contents.bytes).is_some() {
            continue;
        }
        let bytes = plan.placeholders.to_repo(&rel, &contents.bytes);
        if let Some(why) =
            super::capture::never_uploaded(&plan.placeholders, &plan.allow_tokens, &rel, &bytes)
        {
            return Err(Error::refused(format!("~/{rel} is not stored: {why}")));
        }
        let exec = contents.metadata.permissions().mode() & 0o111 != 0;
        let blob = repo
            .blob(&bytes)
            .map_err(Error::git("cannot store a file in the fleet repo"))?;
        out.upserts.push((format!("{host}/{rel}"), blob, exec));
        manifest.files.insert(
            rel.clone(),
            Entry {
                oid: blob.to_string(),
                exec,
                stat: Some(Stat::of(&contents.metadata)),
            },
        );
        out.rels.push(rel);
    }
    Ok(out)
}

/// The repo paths of this machine's override of `m` in `tree` (what `untrack --here` removes).
pub fn existing(
    repo: &git2::Repository,
    tree: &git2::Tree<'_>,
    machine: &str,
    m: &Managed,
) -> Result<Vec<String>> {
    let path = format!("{}/{}", tree::host_dir(machine), m.rel);
    let mut out = Vec::new();
    if tree::blob_at(tree, &path).is_some() {
        out.push(path.clone());
    }
    for sub in tree::blobs_under(repo, tree, &path)?.keys() {
        out.push(format!("{path}/{sub}"));
    }
    Ok(out)
}

/// This machine's overridden files in `tree` (relative to `$HOME`), sorted.
pub fn list(repo: &git2::Repository, tree: &git2::Tree<'_>, machine: &str) -> Vec<String> {
    tree::blobs_under(repo, tree, &tree::host_dir(machine))
        .map(|m| m.into_keys().collect())
        .unwrap_or_default()
}

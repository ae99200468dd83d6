//! Apply (native backend): make the live files what the fleet says, after capture and
//! integration.
//!
//! For every managed file the source is this machine's override (`hosts/NAME/home/REL`) when
//! there is one, else `home/REL`. A live file already equal to its source is not touched. Writes
//! are atomic; a file under `~/.ssh`, listed in `[sync] private`, or already private on disk
//! (no group/other bits) is written 0600 (0700 when executable), others 0644/0755. A file that
//! left a managed directory upstream is removed here only when it still holds what was applied
//! (otherwise capture has just committed the local edit and it is back). A live symlink is
//! never written through. Conflict copies of files that lost a merge are written beside them
//! before the live file changes.
//!
//! Also: the decrypted secrets materialized when `[secrets] materialize` is set (0600, atomic,
//! only when changed), and the authorized_keys merge at its one call site,
//! [`authorized_keys`]. Must never: write outside `$HOME`, or remove a file it did not write.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::config::FleetConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::identity::Identity;
use crate::paths::Paths;

use super::conflicts::{Occasion, keep_copy};
use super::integrate::LostFile;
use super::managed::Managed;
use super::state::{ConflictReason, ConflictRecord, Entry, Manifest, Stat};
use super::tree;

/// What apply changed.
#[derive(Debug, Default)]
pub struct Applied {
    /// Live files written or removed.
    pub changed: usize,
    /// Conflict copies written.
    pub conflicts: Vec<ConflictRecord>,
    /// Files the fleet holds that could not be written here, each with why (the rest of the
    /// apply goes on).
    pub held_back: Vec<String>,
}

impl Applied {
    /// Records that `live` was not written, and why; says so in the log.
    fn hold_back(&mut self, live: &Path, why: &str) {
        let text = format!("{} not applied: {why}", live.display());
        crate::log::warn(&text);
        self.held_back.push(text);
    }
}

/// Whether `rel` must be written 0600: under `~/.ssh` or covered by `[sync] private`.
pub fn is_private(rel: &str, private: &[Managed]) -> bool {
    rel == ".ssh" || rel.starts_with(".ssh/") || private.iter().any(|m| m.covers(rel))
}

/// Context for one apply.
pub struct ApplyContext<'a> {
    /// Where things are on this machine.
    pub paths: &'a Paths,
    /// This machine's name.
    pub machine: &'a str,
    /// The managed list of that commit.
    pub managed: &'a [Managed],
    /// The `[sync] private` list.
    pub private: &'a [Managed],
    /// `YYYYMMDDTHHMMSSZ` for conflict copy names.
    pub stamp: &'a str,
    /// RFC 3339 time for records.
    pub at: &'a str,
}

impl ApplyContext<'_> {
    /// Who and when, for the conflict copies this apply makes.
    pub fn occasion(&self) -> Occasion<'_> {
        Occasion {
            machine: self.machine,
            stamp: self.stamp,
            at: self.at,
        }
    }
}

/// Applies `head` (the clone's HEAD tree) to the live files. With `scope`, only those managed
/// files are looked at (the caller knows nothing else can differ: see [`super::tree::changed_between`]);
/// without, every managed file is.
pub fn apply(
    repo: &git2::Repository,
    head: &git2::Tree<'_>,
    cx: &ApplyContext<'_>,
    lost: &[LostFile],
    manifest: &mut Manifest,
    scope: Option<&BTreeSet<String>>,
) -> Result<Applied> {
    let home = &cx.paths.home;
    let target: BTreeMap<String, tree::Stored> = match scope {
        None => tree::effective(repo, head, cx.machine, cx.managed)?,
        Some(rels) => rels
            .iter()
            .filter(|rel| cx.managed.iter().any(|m| m.covers(rel)))
            .filter_map(|rel| tree::lookup(head, cx.machine, rel).map(|s| (rel.clone(), s)))
            .collect(),
    };
    let mut out = Applied::default();

    // Conflict copies first: our side of every file that lost a merge.
    let host = tree::host_dir(cx.machine);
    for l in lost {
        let rel = l
            .repo_path
            .strip_prefix(&format!("{}/", tree::HOME_DIR))
            .or_else(|| l.repo_path.strip_prefix(&format!("{host}/")));
        let Some(rel) = rel else { continue };
        // Only the version this machine would apply matters here.
        if target.get(rel).is_none_or(|t| t.repo_path != l.repo_path) {
            continue;
        }
        let blob = repo
            .find_blob(l.ours)
            .map_err(Error::git("cannot read our side of a conflict"))?;
        let live = home.join(rel);
        let mode = if is_private(rel, cx.private) {
            0o600
        } else {
            0o644
        };
        out.conflicts.push(keep_copy(
            &live,
            blob.content(),
            mode,
            ConflictReason::BothChanged,
            cx.occasion(),
        )?);
    }

    for (rel, src) in &target {
        let live = home.join(rel);
        let meta = std::fs::symlink_metadata(&live).ok();
        if let Some(m) = &meta
            && m.file_type().is_symlink()
        {
            crate::log::warn(&format!(
                "{} is a symbolic link; not writing through it",
                live.display()
            ));
            continue;
        }
        if let (Some(m), Some(e)) = (&meta, manifest.files.get(rel))
            && e.oid == src.oid.to_string()
            && e.exec == src.exec
            && e.stat == Some(Stat::of(m))
        {
            continue;
        }
        let blob = repo
            .find_blob(src.oid)
            .map_err(Error::git(format!("cannot read {}", src.repo_path)))?;
        let already_private = meta
            .as_ref()
            .is_some_and(|m| m.is_file() && m.permissions().mode() & 0o077 == 0);
        let private = is_private(rel, cx.private) || already_private;
        let mode = match (private, src.exec) {
            (true, true) => 0o700,
            (true, false) => 0o600,
            (false, true) => 0o755,
            (false, false) => 0o644,
        };
        let up_to_date = meta.as_ref().is_some_and(|m| {
            m.is_file()
                && m.permissions().mode() & 0o777 == mode
                && std::fs::read(&live).is_ok_and(|b| b == blob.content())
        });
        if !up_to_date {
            // A live file that is not what this machine last had in step (first contact, or
            // edited since capture) is kept aside before it is replaced.
            if let Some(m) = meta.as_ref().filter(|m| m.is_file()) {
                let entry = manifest.files.get(rel);
                let in_step = entry.is_some_and(|e| {
                    e.stat == Some(Stat::of(m))
                        || std::fs::read(&live).is_ok_and(|b| {
                            git2::Oid::hash_object(git2::ObjectType::Blob, &b)
                                .is_ok_and(|o| o.to_string() == e.oid)
                        })
                });
                let differs = std::fs::read(&live)
                    .map(|b| b != blob.content())
                    .unwrap_or(true);
                if !in_step && differs {
                    let bytes = std::fs::read(&live).map_err(Error::io("cannot read", &live))?;
                    let reason = if entry.is_none() {
                        ConflictReason::FirstContact
                    } else {
                        ConflictReason::ChangedDuringCycle
                    };
                    out.conflicts.push(keep_copy(
                        &live,
                        &bytes,
                        m.permissions().mode() & 0o777,
                        reason,
                        cx.occasion(),
                    )?);
                }
            }
            if meta.as_ref().is_some_and(|m| m.is_dir()) {
                out.hold_back(
                    &live,
                    "it is a directory here; not replacing it with a file",
                );
                continue;
            }
            let written = live
                .parent()
                .map_or(Ok(()), |dir| {
                    if rel.starts_with(".ssh/") {
                        crate::files::ensure_private_dir(&home.join(".ssh"))?;
                    }
                    crate::files::ensure_dir(dir)
                })
                .and_then(|()| crate::files::write_atomic(&live, blob.content(), mode));
            if let Err(e) = written {
                out.hold_back(&live, &crate::error::chain(&e));
                continue;
            }
            out.changed += 1;
            crate::fault::point("sync:applying");
        }
        let meta = std::fs::symlink_metadata(&live).map_err(Error::io("cannot inspect", &live))?;
        manifest.files.insert(
            rel.clone(),
            Entry {
                oid: src.oid.to_string(),
                exec: src.exec,
                stat: Some(Stat::of(&meta)),
            },
        );
    }

    // Files that left the fleet (inside a managed directory) or the managed list.
    let leftover: Vec<(String, Entry)> = manifest
        .files
        .iter()
        .filter(|(rel, _)| !target.contains_key(*rel))
        .filter(|(rel, _)| scope.is_none_or(|s| s.contains(*rel)))
        .map(|(r, e)| (r.clone(), e.clone()))
        .collect();
    for (rel, entry) in leftover {
        manifest.files.remove(&rel);
        let Some(m) = cx.managed.iter().find(|m| m.covers(&rel)) else {
            continue; // untracked: the live file stays as it is
        };
        if !m.dir || rel == m.rel {
            continue;
        }
        let live = home.join(&rel);
        let Ok(meta) = std::fs::symlink_metadata(&live) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let holds_applied = entry.stat == Some(Stat::of(&meta))
            || std::fs::read(&live).is_ok_and(|b| {
                git2::Oid::hash_object(git2::ObjectType::Blob, &b)
                    .is_ok_and(|o| o.to_string() == entry.oid)
            });
        if holds_applied {
            std::fs::remove_file(&live).map_err(Error::io("cannot remove", &live))?;
            out.changed += 1;
        }
    }
    Ok(out)
}

/// Writes the decrypted secrets to `[secrets] materialize` (0600, atomic, only when changed).
pub fn materialize_secrets(
    repo_root: &Path,
    paths: &Paths,
    fleet: &FleetConfig,
    identity: Option<&Identity>,
) -> Result<bool> {
    let Some(target) = &fleet.secrets.materialize else {
        return Ok(false);
    };
    let Some(identity) = identity else {
        return Ok(false);
    };
    let path = paths.expand(target);
    if !path.starts_with(&paths.home) {
        return Err(ErrorKind::Refused(format!(
            "fleet.toml: secrets.materialize {target:?} is not under your home directory"
        ))
        .into());
    }
    let env = crate::secrets::SecretsFile::new(repo_root).load(identity)?;
    let text = env.to_text();
    if std::fs::read(&path).is_ok_and(|b| zeroize::Zeroizing::new(b).as_slice() == text.as_bytes())
    {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        crate::files::ensure_private_dir(dir)?;
    }
    crate::files::write_private(&path, text.as_bytes())?;
    Ok(true)
}

/// The one call site of the authorized_keys merge in a cycle (native backend): merges the fleet's
/// SSH keys into `[authorized_keys] path` after every apply, so an approved machine's key arrives
/// and a revoked one leaves. A fleet with no SSH key yet leaves the file alone. Returns whether
/// the file changed.
pub fn authorized_keys(repo_root: &Path, paths: &Paths, fleet: &FleetConfig) -> Result<bool> {
    let target = paths.expand(&fleet.authorized_keys.path);
    let keys = repo_root.join(crate::roster::layout::KEYS);
    let (active, revoked) = crate::roster::fleet_keys(&keys)?;
    let roster = crate::authorized_keys::Roster {
        active: &active,
        revoked: &revoked,
    };
    match crate::authorized_keys::merge_into_file(&roster, &target) {
        Ok(merged) => Ok(merged.changed()),
        // A fleet with no SSH key yet leaves the file alone; nothing to merge.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::AuthorizedKeys(crate::authorized_keys::Error::NoActiveFleetKey)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Parses `[sync] private`.
pub fn private_list(fleet: &FleetConfig) -> Result<Vec<Managed>> {
    super::managed::parse_list(&fleet.sync.private)
}

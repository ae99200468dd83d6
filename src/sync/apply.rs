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

use crate::confine::{Confinement, DirMode, HomeDir, HomeRel};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::limits;

use super::conflicts::{Occasion, keep_copy};
use super::ignore::IgnoreRules;
use super::integrate::LostFile;
use super::managed::Managed;
use super::placeholder::Placeholders;
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
    /// Records that `~/REL` was not written, and why.
    fn hold_back(&mut self, rel: &str, why: &str) {
        self.held_back.push(format!("~/{rel} not applied: {why}"));
    }

    /// Records the conflict copy of `~/REL`; when it could not be written, holds the file back
    /// instead and returns `false`: the live file must then stay as it is.
    fn keep(&mut self, rel: &str, kept: Result<ConflictRecord>) -> bool {
        match kept {
            Ok(record) => {
                self.conflicts.push(record);
                true
            }
            Err(e) => {
                let why = crate::error::chain(&e);
                self.hold_back(
                    rel,
                    &format!("cannot keep this machine's version aside ({why})"),
                );
                false
            }
        }
    }
}

/// Whether `rel` must be written 0600: under `~/.ssh` or covered by `[sync] private`.
pub fn is_private(rel: &str, private: &[Managed]) -> bool {
    rel == ".ssh" || rel.starts_with(".ssh/") || private.iter().any(|m| m.covers(rel))
}

/// Context for one apply.
pub struct ApplyContext<'a> {
    /// `$HOME`, open: every read and write of a live file goes through it.
    pub home: &'a HomeDir,
    /// The check every path from the fleet passes.
    pub confinement: &'a Confinement,
    /// This machine's name.
    pub machine: &'a str,
    /// The managed list of that commit.
    pub managed: &'a [Managed],
    /// The `[sync] private` list.
    pub private: &'a [Managed],
    /// Files never written nor removed.
    pub ignore: &'a IgnoreRules,
    /// How the repo's content becomes the live file's (home-path and secret placeholders).
    pub placeholders: &'a Placeholders,
    /// The secrets (or whether they can be read) changed since the last full apply: a file
    /// with a secret placeholder is written again even when nothing else changed.
    pub recheck_secrets: bool,
    /// This machine is a receiver: it captures nothing, so a live file edited here since it
    /// was last in step is kept aside (reason "this machine only receives") and the fleet's
    /// version applied.
    pub receives_only: bool,
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

    /// The live file's bytes, when it is a regular file reachable without a symlink and not
    /// over the managed-file limit.
    fn read_live(&self, rel: &HomeRel) -> Option<Vec<u8>> {
        self.home
            .read_file(rel, limits::MANAGED_FILE)
            .ok()
            .map(|c| c.bytes)
    }
}

/// Applies `head` (the clone's HEAD tree) to the live files. With `scope`, only those managed
/// files are looked at (the caller knows nothing else can differ: see [`super::tree::changed_between`]);
/// without, every managed file is.
///
/// A file that cannot be applied is held back with the reason (a path that fails the
/// confinement check, a private-looking path, a blob over the size limit, a symlink or a
/// directory in the way, a failed write) and the rest goes on. A live file whose conflict copy
/// could not be written is left as it is.
pub fn apply(
    repo: &git2::Repository,
    head: &git2::Tree<'_>,
    cx: &ApplyContext<'_>,
    lost: &[LostFile],
    manifest: &mut Manifest,
    scope: Option<&BTreeSet<String>>,
) -> Result<Applied> {
    let target = targets(repo, head, cx, scope)?;
    let mut out = Applied::default();
    // Conflict copies first: our side of every file that lost a merge. A live file whose copy
    // could not be written must not be replaced.
    let keep_live = lost_copies(repo, cx, &target, lost, &mut out)?;
    for (rel, src) in &target {
        if !keep_live.contains(rel) {
            apply_file(repo, cx, rel, src, manifest, &mut out)?;
        }
    }
    leftovers(cx, &target, scope, manifest, &mut out);
    Ok(out)
}

/// Rule of reach: the files apply looks at are this machine's effective versions in `head`
/// (its override, else `home/`) of every managed file, or of the managed files in `scope`;
/// ignored files are never written.
fn targets(
    repo: &git2::Repository,
    head: &git2::Tree<'_>,
    cx: &ApplyContext<'_>,
    scope: Option<&BTreeSet<String>>,
) -> Result<BTreeMap<String, tree::Stored>> {
    let target: BTreeMap<String, tree::Stored> = match scope {
        None => tree::effective(repo, head, cx.machine, cx.managed)?,
        Some(rels) => rels
            .iter()
            .filter(|rel| cx.managed.iter().any(|m| m.covers(rel)))
            .filter_map(|rel| tree::lookup(head, cx.machine, rel).map(|s| (rel.clone(), s)))
            .collect(),
    };
    Ok(target
        .into_iter()
        .filter(|(rel, _)| !cx.ignore.is_ignored(rel, false))
        .collect())
}

/// Rule of lost merges: our side of every file that lost a merge, in the version this machine
/// applies, is kept as a conflict copy beside the live file before it changes. Returns the
/// live files whose copy could not be written: they stay as they are.
fn lost_copies(
    repo: &git2::Repository,
    cx: &ApplyContext<'_>,
    target: &BTreeMap<String, tree::Stored>,
    lost: &[LostFile],
    out: &mut Applied,
) -> Result<BTreeSet<String>> {
    let mut keep_live = BTreeSet::new();
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
        let Ok(checked) = cx.confinement.check_rel(rel) else {
            continue; // never applied either (held back by apply_file)
        };
        let blob = repo
            .find_blob(l.ours)
            .map_err(Error::git("cannot read our side of a conflict"))?;
        let mode = if is_private(rel, cx.private) {
            0o600
        } else {
            0o644
        };
        let kept = keep_copy(
            cx.home,
            cx.confinement,
            &checked,
            &cx.placeholders.to_live(rel, blob.content()),
            mode,
            ConflictReason::BothChanged,
            cx.occasion(),
        );
        if !out.keep(rel, kept) {
            keep_live.insert(rel.to_string());
        }
    }
    Ok(keep_live)
}

/// Rule of paths: a path that fails the confinement check, or where a key or credential lives,
/// is never written from the fleet (held back); otherwise the checked path.
fn writable(cx: &ApplyContext<'_>, rel: &str, out: &mut Applied) -> Option<HomeRel> {
    let checked = match cx.confinement.check_rel(rel) {
        Ok(c) => c,
        Err(refusal) => {
            out.hold_back(rel, &refusal.to_string());
            return None;
        }
    };
    if let Some(kind) = crate::private::by_path(rel) {
        out.hold_back(
            rel,
            &format!("it is where {kind} lives; fleetkey never writes one from the fleet"),
        );
        return None;
    }
    Some(checked)
}

/// Rule of the manifest: a live file whose stat is the one recorded when `src` was applied is
/// in step and not read, unless the secrets changed and `src` holds a placeholder.
fn in_step_by_stat(
    repo: &git2::Repository,
    cx: &ApplyContext<'_>,
    src: &tree::Stored,
    meta: &std::fs::Metadata,
    entry: Option<&Entry>,
) -> bool {
    entry.is_some_and(|e| {
        e.oid == src.oid.to_string()
            && e.exec == src.exec
            && e.stat == Some(Stat::of(meta))
            && !(cx.recheck_secrets && super::capture::holds_placeholder(repo, src.oid))
    })
}

/// Rule of size: the stored file, refused over the managed-file limit (checked from the object
/// header, before the blob is loaded). `None` when it was held back.
fn stored_blob<'r>(
    repo: &'r git2::Repository,
    rel: &str,
    src: &tree::Stored,
    out: &mut Applied,
) -> Result<Option<git2::Blob<'r>>> {
    let size = repo
        .odb()
        .and_then(|odb| odb.read_header(src.oid))
        .map_err(Error::git(format!("cannot read {}", src.repo_path)))?
        .0;
    if let Err(too_large) = limits::MANAGED_FILE.check(size as u64) {
        out.hold_back(rel, &too_large.to_string());
        return Ok(None);
    }
    repo.find_blob(src.oid)
        .map(Some)
        .map_err(Error::git(format!("cannot read {}", src.repo_path)))
}

/// Rule of modes: private (0600, 0700 executable) under `~/.ssh`, in `[sync] private`, when
/// the live file already is (no group/other bits) or when a secret was written into it;
/// otherwise 0644/0755.
fn mode_of(private: bool, exec: bool) -> u32 {
    match (private, exec) {
        (true, true) => 0o700,
        (true, false) => 0o600,
        (false, true) => 0o755,
        (false, false) => 0o644,
    }
}

/// Rule of edits here: a live file that is not what this machine last had in step (first
/// contact, an edit made since capture, or any edit on a receiver) and differs from what is
/// written is kept aside as a conflict copy first. Returns `false` when the live file must
/// stay as it is (unreadable, or its copy could not be written).
fn keep_edited(
    cx: &ApplyContext<'_>,
    rel: &str,
    checked: &HomeRel,
    live: (&std::fs::Metadata, Option<&[u8]>),
    wanted: &[u8],
    entry: Option<&Entry>,
    out: &mut Applied,
) -> bool {
    let (meta, current) = live;
    let in_step = entry.is_some_and(|e| {
        e.stat == Some(Stat::of(meta))
            || current.is_some_and(|b| {
                git2::Oid::hash_object(git2::ObjectType::Blob, &cx.placeholders.to_repo(rel, b))
                    .is_ok_and(|o| o.to_string() == e.oid)
            })
    });
    if in_step || current == Some(wanted) {
        return true;
    }
    let Some(bytes) = current else {
        out.hold_back(rel, "it cannot be read here to keep a copy of it");
        return false;
    };
    let reason = if entry.is_none() {
        ConflictReason::FirstContact
    } else if cx.receives_only {
        ConflictReason::ReceiverOnly
    } else {
        ConflictReason::ChangedDuringCycle
    };
    let kept = keep_copy(
        cx.home,
        cx.confinement,
        checked,
        bytes,
        meta.permissions().mode() & 0o777,
        reason,
        cx.occasion(),
    );
    out.keep(rel, kept)
}

/// Rule of the live form: what the live file holds is the stored file with this machine's
/// home path and the fleet secrets' values where the repo has their placeholders; a
/// placeholder that cannot be resolved is left as it is and reported. Returns the bytes and
/// whether a secret was written into them (such a file is written private).
fn live_form<'b>(
    cx: &ApplyContext<'_>,
    rel: &str,
    stored: &'b [u8],
    out: &mut Applied,
) -> (std::borrow::Cow<'b, [u8]>, bool) {
    let decoded = cx.placeholders.to_live_checked(rel, stored);
    for key in &decoded.unresolved {
        out.held_back.push(format!(
            "~/{rel}: the placeholder {{{{fleetkey.secret.{key}}}}} is left as it is: {}",
            cx.placeholders.secrets().why_not(key)
        ));
    }
    (decoded.bytes, decoded.substituted)
}

/// Rule of writing: atomic, through `$HOME` opened without symlinks, with `mode`; the
/// directories it makes are private (0700) for a private file or under `~/.ssh`. A failed
/// write is held back and `false` returned.
fn write_live(
    cx: &ApplyContext<'_>,
    rel: &str,
    checked: &HomeRel,
    (wanted, mode): (&[u8], u32),
    private: bool,
    out: &mut Applied,
) -> bool {
    let dirs = if private || rel.starts_with(".ssh/") {
        DirMode::Private
    } else {
        DirMode::Shared
    };
    if let Err(e) = cx.home.write_file(checked, wanted, mode, dirs) {
        out.hold_back(rel, &e.to_string());
        return false;
    }
    out.changed += 1;
    crate::fault::point("sync:applying");
    true
}

/// One managed file, by the rules in this order: [`writable`]; a live symlink is never
/// written through; [`in_step_by_stat`]; [`stored_blob`]; [`live_form`]; [`mode_of`]; a
/// directory in the way is held back; a live file equal in content and mode is left alone;
/// [`keep_edited`]; [`write_live`]; then the manifest records what is now live.
fn apply_file(
    repo: &git2::Repository,
    cx: &ApplyContext<'_>,
    rel: &String,
    src: &tree::Stored,
    manifest: &mut Manifest,
    out: &mut Applied,
) -> Result<()> {
    let Some(checked) = writable(cx, rel, out) else {
        return Ok(());
    };
    let live = cx.home.path().join(rel);
    let meta = std::fs::symlink_metadata(&live).ok();
    if let Some(m) = &meta
        && m.file_type().is_symlink()
    {
        out.hold_back(rel, "it is a symbolic link here; not writing through it");
        return Ok(());
    }
    if let Some(m) = &meta
        && in_step_by_stat(repo, cx, src, m, manifest.files.get(rel))
    {
        return Ok(());
    }
    let Some(blob) = stored_blob(repo, rel, src, out)? else {
        return Ok(());
    };
    let (wanted, substituted) = live_form(cx, rel, blob.content(), out);
    let already_private = meta
        .as_ref()
        .is_some_and(|m| m.is_file() && m.permissions().mode() & 0o077 == 0);
    let private = is_private(rel, cx.private) || already_private || substituted;
    let mode = mode_of(private, src.exec);
    if meta.as_ref().is_some_and(|m| m.is_dir()) {
        out.hold_back(rel, "it is a directory here; not replacing it with a file");
        return Ok(());
    }
    let current = meta
        .as_ref()
        .filter(|m| m.is_file())
        .and_then(|_| cx.read_live(&checked));
    let up_to_date = meta
        .as_ref()
        .is_some_and(|m| m.permissions().mode() & 0o777 == mode)
        && current.as_deref() == Some(wanted.as_ref());
    if !up_to_date {
        if let Some(m) = meta.as_ref().filter(|m| m.is_file())
            && !keep_edited(
                cx,
                rel,
                &checked,
                (m, current.as_deref()),
                &wanted,
                manifest.files.get(rel),
                out,
            )
        {
            return Ok(());
        }
        if !write_live(cx, rel, &checked, (&wanted, mode), private, out) {
            return Ok(());
        }
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
    Ok(())
}

/// Rule of leaving: a file the manifest knows that is no longer a target (in `scope`) leaves
/// the manifest; its live file is removed only when it was inside a managed directory (not
/// the directory's root, not an untracked path) and still holds what was applied.
fn leftovers(
    cx: &ApplyContext<'_>,
    target: &BTreeMap<String, tree::Stored>,
    scope: Option<&BTreeSet<String>>,
    manifest: &mut Manifest,
    out: &mut Applied,
) {
    let home = cx.home.path();
    let leftover: Vec<(String, Entry)> = manifest
        .files
        .iter()
        .filter(|(rel, _)| !target.contains_key(*rel))
        .filter(|(rel, _)| scope.is_none_or(|s| s.contains(*rel)))
        .filter(|(rel, _)| !cx.ignore.is_ignored(rel, false))
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
        let Ok(checked) = cx.confinement.check_rel(&rel) else {
            continue;
        };
        let live = home.join(&rel);
        let Ok(meta) = std::fs::symlink_metadata(&live) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let holds_applied = entry.stat == Some(Stat::of(&meta))
            || cx.read_live(&checked).is_some_and(|b| {
                git2::Oid::hash_object(git2::ObjectType::Blob, &cx.placeholders.to_repo(&rel, &b))
                    .is_ok_and(|o| o.to_string() == entry.oid)
            });
        if holds_applied {
            match cx.home.remove_file(&checked) {
                Ok(_) => out.changed += 1,
                Err(e) => out.hold_back(&rel, &e.to_string()),
            }
        }
    }
}

/// Writes the decrypted secrets to `target` (`[secrets] materialize`, checked by the plan):
/// 0600 in directories made 0700, atomic, only when changed, never through a symlink. The path
/// is remembered in the state directory first, so capture never reads it, even after
/// fleet.toml stops naming it.
pub fn materialize_secrets(
    repo_root: &Path,
    home: &HomeDir,
    target: Option<&HomeRel>,
    format: crate::config::MaterializeFormat,
    identity: Option<&Identity>,
    state_dir: &Path,
) -> Result<bool> {
    let (Some(rel), Some(identity)) = (target, identity) else {
        return Ok(false);
    };
    let env = crate::secrets::SecretsFile::new(repo_root).load(identity)?;
    let text = match format {
        crate::config::MaterializeFormat::Env => env.to_text(),
        crate::config::MaterializeFormat::Sh => env.export_sh(),
    };
    if home
        .read_file(rel, limits::SECRETS_PLAINTEXT)
        .is_ok_and(|c| zeroize::Zeroizing::new(c.bytes).as_slice() == text.as_bytes())
    {
        return Ok(false);
    }
    super::state::record_materialized(state_dir, rel.as_str())?;
    home.write_file(rel, text.as_bytes(), 0o600, DirMode::Private)?;
    Ok(true)
}

/// The one call site of the authorized_keys merge in a cycle (native backend): merges the fleet's
/// SSH keys into `target` (`[authorized_keys] path`, checked by the plan) after every apply, so
/// an approved machine's key arrives and a revoked one leaves. A fleet with no SSH key yet
/// leaves the file alone; a path through a symlink is refused. Only the login keys `from`
/// (`[authorized_keys] from`) admits go in (see [`crate::access`]), so a role change reaches
/// the file on the next cycle. Returns whether the file changed.
pub fn authorized_keys(
    repo_root: &Path,
    me: &str,
    home: &HomeDir,
    target: Option<&HomeRel>,
    from: &[String],
) -> Result<bool> {
    let Some(rel) = target else {
        return Ok(false);
    };
    let path = home.path().join(rel.as_str());
    home.probe(rel).map_err(|e| {
        let link = matches!(e, crate::confine::WalkError::Symlink { .. });
        let err: crate::error::Error = e.into();
        if link {
            err.hint(crate::authorized_keys::symlink_hint(&path))
        } else {
            err
        }
    })?;
    let keys = repo_root.join(crate::roster::layout::KEYS);
    let keys = crate::roster::fleet_keys(&keys, Some(me), from)?;
    let roster = keys.roster();
    // Read and written through `home` like every other file in $HOME (no symlink followed).
    let limit = crate::limits::Limit {
        what: "authorized_keys",
        bytes: crate::authorized_keys::INPUT_LIMIT,
    };
    let (current, loose) = match home.read_file(rel, limit) {
        Ok(c) => {
            let loose = crate::authorized_keys::loose_mode(&c.metadata);
            (c.bytes, loose)
        }
        Err(e) if e.is_not_found() => (Vec::new(), None),
        Err(e) => return Err(e.into()),
    };
    let merged = match crate::authorized_keys::merge(&current, &roster) {
        Ok(m) => m,
        // A fleet with no SSH key yet leaves the file alone; nothing to merge.
        Err(crate::authorized_keys::Error::NoActiveFleetKey) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    crate::authorized_keys::log_warnings(&merged);
    // sshd's StrictModes ignores an authorized_keys that others may write (every key in it,
    // so nobody logs in): a file fleetkey keeps is rewritten 0600, saying so.
    if merged.changed() || loose.is_some() {
        if let Some(mode) = loose {
            crate::authorized_keys::warn_loose(&path, mode);
        }
        home.write_file(rel, &merged.output, 0o600, crate::confine::DirMode::Private)?;
    }
    Ok(merged.changed())
}

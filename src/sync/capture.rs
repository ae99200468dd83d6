//! Capture (native backend): every local change to a managed file goes into one commit before
//! anything is fetched or applied, so no apply can overwrite an in-flight edit.
//!
//! Rules, for each managed file, with "stored" the blob this machine should have (its host
//! override, else `home/`) and "manifest" what it last had in step (see [`super::state`]):
//!
//! - live stat equals the manifest's: unchanged, not even read.
//! - live content equals stored or manifest: unchanged (only the stat is refreshed).
//! - the manifest knows the file and stored still equals the manifest: a local edit, captured.
//! - the manifest knows the file but stored moved on since (an integrate ran without an apply):
//!   both changed; not captured: the fleet's version wins and apply keeps the live one as a
//!   conflict copy.
//! - the manifest does not know the file (first contact: a new machine, or a newly managed
//!   path that the fleet already holds): a file the fleet lacks is captured; one the fleet holds
//!   with other content is not: apply keeps it as a conflict copy and writes the fleet's.
//! - a file inside a managed directory that the manifest knows, now missing while the directory
//!   exists, was deleted: the deletion is captured (unless the fleet changed it meanwhile: a
//!   change beats a deletion).
//! - a managed *file* (or a whole managed directory) that is missing is NOT a deletion: the
//!   next apply restores it. `fleetkey untrack` is how a path leaves the fleet. This keeps a
//!   stray `rm` on one machine from deleting a dotfile on every machine.
//!
//! A private-looking file ([`crate::private::detect`]: keys and credentials, by path or by
//! content) is never captured, whatever the managed list says. Nor is a file whose repo form
//! still holds a fleet secret's value, or something that looks like a credential
//! ([`crate::tokens`]; unless `[sync] allow_tokens` lists it): it is held back, named by kind
//! and line ([`never_uploaded`]). A fleet secret's value becomes its placeholder first
//! ([`super::placeholder`]), so a secret is never mistaken for a stray token. Symlinks, conflict copies (`*.conflict-NAME-STAMP`) and fleetkey's temp files inside a
//! managed directory are never captured, nor are ignored files ([`super::ignore`]). What is
//! stored, hashed and compared with the manifest is the repo's form of the content (this
//! machine's home path as a placeholder, [`super::placeholder`]), so "in step" means the same
//! thing on every machine. Must never: write a live file.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use std::time::{Duration, SystemTime};

use crate::confine::walk::Contents;
use crate::confine::{Confinement, HomeDir, HomeRel, Stamp, WalkError};
use crate::error::{Error, Result};
use crate::limits;

use super::debounce::{Look, Steady, Watched, read_when_written};
use super::ignore::IgnoreRules;
use super::managed::{self, Managed};
use super::placeholder::Placeholders;
use super::state::{Entry, Manifest, Stat};
use super::tree::{self, Stored};

/// What capture found.
#[derive(Debug, Default)]
pub struct Captured {
    /// Repo paths to set: (path, blob, exec).
    pub upserts: Vec<(String, git2::Oid, bool)>,
    /// Repo paths to delete.
    pub removals: Vec<String>,
    /// Managed files in the manifest that are missing on disk (apply restores or forgets them).
    pub missing: Vec<String>,
    /// Files not captured, each with why.
    pub held_back: Vec<String>,
}

impl Captured {
    /// How many files changed.
    pub fn count(&self) -> usize {
        self.upserts.len() + self.removals.len()
    }
}

/// Who wins when this machine meets a managed file for the first time (the manifest does not
/// know it) and the fleet already holds other content for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstContact {
    /// A sync cycle: the fleet's version wins; apply keeps the live one as a conflict copy.
    FleetWins,
    /// `track` seeding a path the user just asked to manage: the live content is what the
    /// user means to share, so it is captured.
    LocalWins,
}

/// Every regular file the managed list covers on this machine, by path relative to `$HOME`,
/// except the ignored ones (an ignored directory is not even entered).
pub fn live_files(
    home: &Path,
    managed: &[Managed],
    ignore: &IgnoreRules,
) -> BTreeMap<String, std::fs::Metadata> {
    // Rows first, one map built from them at the end: sorted once (the stat boxed, so the sort
    // moves small rows), then built in bulk, cheaper than 10,000 inserts one by one.
    let mut out = Vec::new();
    for m in managed {
        let root = home.join(&m.rel);
        let Ok(meta) = std::fs::symlink_metadata(&root) else {
            continue;
        };
        if ignore.is_ignored(&m.rel, meta.is_dir()) {
            continue;
        }
        if !m.dir {
            if meta.is_file() {
                out.push((m.rel.clone(), Box::new(meta)));
            }
            continue;
        }
        if !meta.is_dir() {
            continue;
        }
        walk_parallel(root, m.rel.clone(), ignore, &mut out);
    }
    // Stable: a path listed twice keeps its last row, as an insert would.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(rel, meta)| (rel, *meta)).collect()
}

/// Walks the directory `root` (whose path relative to `$HOME` is `rel`) into `out`. The
/// subdirectories of `root` are shared among a few threads (stat calls dominate a large tree;
/// git spreads them over threads too).
fn walk_parallel(
    root: std::path::PathBuf,
    rel: String,
    ignore: &IgnoreRules,
    out: &mut Vec<(String, Box<std::fs::Metadata>)>,
) {
    let mut subdirs = Vec::new();
    walk_dir(&root, &rel, ignore, out, &mut subdirs);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    if workers == 1 || subdirs.len() < 2 {
        walk_serial(subdirs, ignore, out);
        return;
    }
    let chunks: Vec<Vec<(std::path::PathBuf, String)>> = {
        let mut c: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
        for (i, d) in subdirs.into_iter().enumerate() {
            c[i % workers].push(d);
        }
        c
    };
    let parts: Vec<Vec<(String, Box<std::fs::Metadata>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    let mut part = Vec::new();
                    walk_serial(chunk, ignore, &mut part);
                    part
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for part in parts {
        out.extend(part);
    }
}

fn walk_serial(
    mut stack: Vec<(std::path::PathBuf, String)>,
    ignore: &IgnoreRules,
    out: &mut Vec<(String, Box<std::fs::Metadata>)>,
) {
    while let Some((dir, rel)) = stack.pop() {
        walk_dir(&dir, &rel, ignore, out, &mut stack);
    }
}

/// One directory: files into `out`, subdirectories onto `stack`.
fn walk_dir(
    dir: &Path,
    rel: &str,
    ignore: &IgnoreRules,
    out: &mut Vec<(String, Box<std::fs::Metadata>)>,
    stack: &mut Vec<(std::path::PathBuf, String)>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        crate::log::warn(&format!("cannot read {}", dir.display()));
        return;
    };
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        if managed::is_conflict_copy(name) || managed::is_own_temp(name) {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        let mut child = String::with_capacity(rel.len() + 1 + name.len());
        child.push_str(rel);
        child.push('/');
        child.push_str(name);
        // Every directory above `child` was checked on the way down (an ignored one is not
        // entered), so only `child` itself is matched here.
        if ignore.is_ignored_in_walk(&child, meta.is_dir()) {
            continue;
        }
        if meta.is_dir() {
            stack.push((e.path(), child));
        } else if meta.is_file() {
            out.push((child, Box::new(meta)));
        }
    }
}

/// How long capture waits for a file still being written (the rules:
/// [`super::debounce::read_when_written`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// A file is done once its size, modification time and inode stood still this long
    /// (`[sync] quiet`).
    pub quiet: Duration,
    /// The longest one capture waits, for all its files together (`[sync] settle`).
    pub settle: Duration,
    /// A command run by hand (`sync`, `track`): a file is read at once unless it changes
    /// while capture looks at it. The watcher and the puller also wait for a file changed
    /// less than `quiet` ago.
    pub by_hand: bool,
}

impl Patience {
    /// The patience `fleet` asks for.
    pub fn of(fleet: &crate::config::FleetConfig, by_hand: bool) -> Patience {
        Patience {
            quiet: fleet.quiet(),
            settle: fleet.settle(),
            by_hand,
        }
    }
}

/// A live file followed by [`read_when_written`]: the real clock, the real file.
struct LiveFile<'a> {
    home: &'a HomeDir,
    rel: &'a HomeRel,
}

impl Watched for LiveFile<'_> {
    type Read = Contents;
    type Error = WalkError;
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
    fn stamp(&mut self) -> std::result::Result<Stamp, WalkError> {
        self.home.stamp(self.rel)
    }
    fn read(&mut self) -> std::result::Result<(Contents, Stamp, Stamp), WalkError> {
        let contents = self.home.read_file(self.rel, limits::MANAGED_FILE)?;
        let opened = Stamp::of(&contents.metadata);
        let after = self.home.stamp(self.rel)?;
        Ok((contents, opened, after))
    }
}

/// What one capture reads, and how.
pub struct Scope<'a> {
    /// `$HOME`, open: every file is read through it (never through a symlink).
    pub home: &'a HomeDir,
    /// The check every path passes, files found inside managed directories included (a
    /// managed `~/.config/` never reaches fleetkey's own `~/.config/fleetkey/`).
    pub confinement: &'a Confinement,
    /// The managed entries to capture.
    pub managed: &'a [Managed],
    /// Files never read whatever the list says (see [`super::plan::Plan::never_captured`]).
    pub skip: &'a BTreeSet<String>,
    /// This machine's name.
    pub machine: &'a str,
    /// Who wins a first contact.
    pub first_contact: FirstContact,
    /// Files never synced (see [`super::ignore`]).
    pub ignore: &'a IgnoreRules,
    /// How the live content becomes the repo's (home-path and secret placeholders).
    pub placeholders: &'a Placeholders,
    /// Files captured even when they hold what looks like a credential (`[sync]
    /// allow_tokens`).
    pub allow_tokens: &'a [Managed],
    /// How long to wait for a file still being written; `None` reads every file as it is
    /// (what `diff` shows).
    pub patience: Option<Patience>,
}

/// HEAD's parents that this machine made (its `Fleetkey-Machine` trailer), each with its own
/// first parent's tree: the capture commits a killed cycle may have merged already; and the
/// trees of HEAD's other parents (the forge's side of that merge).
struct OwnParents<'r> {
    mine: Vec<(git2::Tree<'r>, Option<git2::Tree<'r>>)>,
    theirs: Vec<git2::Tree<'r>>,
}

fn own_parents<'r>(repo: &'r git2::Repository, machine: &str) -> OwnParents<'r> {
    let mut out = OwnParents {
        mine: Vec::new(),
        theirs: Vec::new(),
    };
    let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
        return out;
    };
    for p in head.parents() {
        let Ok(tree) = p.tree() else { continue };
        let by_me = p
            .message()
            .ok()
            .and_then(crate::signing::machine_of)
            .is_some_and(|m| m == machine);
        if by_me {
            let before = p.parent(0).ok().and_then(|pp| pp.tree().ok());
            out.mine.push((tree, before));
        } else {
            out.theirs.push(tree);
        }
    }
    out
}

impl OwnParents<'_> {
    /// Whether one of these commits changed `rel` from `known` (the manifest's version) to the
    /// live `oid`, and HEAD (holding `merged` for it) took that edit in: this machine captured
    /// exactly this edit and a clean merge holds it. When HEAD's version is the forge side's
    /// own, the edit lost a conflict and is no such case (apply keeps it as a copy).
    fn captured(
        &self,
        machine: &str,
        rel: &str,
        known: &Entry,
        (oid, exec): (git2::Oid, bool),
        merged: git2::Oid,
    ) -> bool {
        let lost = merged != oid
            && self
                .theirs
                .iter()
                .any(|t| tree::lookup(t, machine, rel).is_some_and(|s| s.oid == merged));
        !lost
            && self.mine.iter().any(|(tree, before)| {
                tree::lookup(tree, machine, rel).is_some_and(|s| s.oid == oid && s.exec == exec)
                    && before
                        .as_ref()
                        .and_then(|b| tree::lookup(b, machine, rel))
                        .is_some_and(|s| s.oid.to_string() == known.oid)
            })
    }
}

/// Captures the local changes of the managed files against `head` (the clone's HEAD tree).
/// Updates `manifest` for files found unchanged; the caller saves it after committing. A file
/// that cannot be captured (over the size limit, behind a symlink, unreadable) is held back with
/// the reason; a private-looking file is skipped with a warning; past the capture's total size
/// limit the rest waits for the next cycle.
pub fn capture(
    repo: &git2::Repository,
    head: &git2::Tree<'_>,
    scope: &Scope<'_>,
    manifest: &mut Manifest,
) -> Result<Captured> {
    let live = live_files(scope.home.path(), scope.managed, scope.ignore);
    let mut pass = Pass {
        repo,
        head,
        scope,
        started: SystemTime::now(),
        ours: own_parents(repo, scope.machine),
        total: 0,
        out: Captured::default(),
    };
    let in_step = stat_unchanged(&live, manifest);
    for ((rel, meta), unchanged) in live.iter().zip(in_step) {
        if !unchanged && pass.file(rel, meta, manifest)? == Flow::Stop {
            break;
        }
    }
    deletions(&live, head, scope, manifest, &mut pass.out);
    Ok(pass.out)
}

/// Whether each live file still has the stat the manifest recorded, in `live`'s order: one
/// walk along both sorted maps (a lookup per file costs several times more).
fn stat_unchanged(live: &BTreeMap<String, std::fs::Metadata>, manifest: &Manifest) -> Vec<bool> {
    let mut recorded = manifest.files.iter().peekable();
    live.iter()
        .map(|(rel, meta)| {
            while recorded
                .next_if(|(r, _)| r.as_str() < rel.as_str())
                .is_some()
            {}
            match recorded.peek() {
                Some((r, e)) if *r == rel => e.stat.is_some_and(|s| s == Stat::of(meta)),
                _ => false,
            }
        })
        .collect()
}

/// Whether a capture goes on to the next file.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// On to the next file.
    Next,
    /// The capture's total size limit is reached: the rest waits for the next cycle.
    Stop,
}

/// One capture under way: what it reads, and what it found so far.
struct Pass<'a> {
    repo: &'a git2::Repository,
    head: &'a git2::Tree<'a>,
    scope: &'a Scope<'a>,
    /// When the capture began (its `settle` counts from there).
    started: SystemTime,
    ours: OwnParents<'a>,
    /// The bytes read so far (against [`limits::CAPTURE_TOTAL`]).
    total: u64,
    out: Captured,
}

/// The warning for a private-looking file, which is never synced.
fn warn_private(path: &Path, kind: impl std::fmt::Display) {
    crate::log::warn_once_per_cycle(&format!(
        "{} looks like {kind}; it is not synced (the fleet repo is plain git; use `fleetkey secrets set`)",
        path.display()
    ));
}

impl Pass<'_> {
    /// One live file whose stat moved since the manifest recorded it (or that it does not
    /// know), by the rules of the module doc in this order: outside the confinement; private by its path; read once it stands still
    /// ([`Pass::read_steady`]); the capture's total size; private by its content; the repo's
    /// form ([`Pass::repo_form`]); then how it compares with the stored and the manifest's
    /// versions ([`Pass::decide`]).
    fn file(
        &mut self,
        rel: &String,
        meta: &std::fs::Metadata,
        manifest: &mut Manifest,
    ) -> Result<Flow> {
        let scope = self.scope;
        // An unchanged file (its stat as the manifest recorded, see `stat_unchanged`) is not
        // read, so not checked either (it was when it was captured).
        if scope.skip.contains(rel) {
            return Ok(Flow::Next);
        }
        // Inside a managed directory: fleetkey's own directories and the like are left out.
        let Ok(checked) = scope.confinement.check_rel(rel) else {
            return Ok(Flow::Next);
        };
        let path = scope.home.path().join(rel);
        if let Some(kind) = crate::private::by_path(rel) {
            warn_private(&path, kind);
            return Ok(Flow::Next);
        }
        let contents = match self.read_steady(rel, &checked, meta) {
            Ok(c) => c,
            Err(why) => {
                self.out.held_back.push(why);
                return Ok(Flow::Next);
            }
        };
        self.total += contents.bytes.len() as u64;
        if let Err(too_large) = limits::CAPTURE_TOTAL.check(self.total) {
            self.out.held_back.push(format!(
                "capture stopped at ~/{rel}: {too_large}; the rest goes out with later cycles"
            ));
            return Ok(Flow::Stop);
        }
        let (bytes, meta) = (contents.bytes, &contents.metadata);
        if let Some(kind) = crate::private::detect(rel, &bytes) {
            warn_private(&path, kind);
            return Ok(Flow::Next);
        }
        let exec = meta.permissions().mode() & 0o111 != 0;
        let Some(bytes) = self.repo_form(rel, &bytes) else {
            return Ok(Flow::Next);
        };
        self.decide(rel, &bytes, exec, meta, manifest)?;
        Ok(Flow::Next)
    }

    /// Rule of patience: with [`Scope::patience`], a file still being written is read once it
    /// stands still ([`read_when_written`]), or held back when it did not within `settle`;
    /// without, it is read as it is. The error is the held-back line.
    fn read_steady(
        &self,
        rel: &str,
        checked: &HomeRel,
        meta: &std::fs::Metadata,
    ) -> std::result::Result<Contents, String> {
        let scope = self.scope;
        let read = match scope.patience {
            Some(p) => read_when_written(
                &mut LiveFile {
                    home: scope.home,
                    rel: checked,
                },
                Look {
                    at: SystemTime::now(),
                    stamp: Stamp::of(meta),
                },
                p.quiet,
                p.by_hand,
                self.started + p.settle,
                || {
                    crate::log::debug(&format!(
                        "~/{rel} is still being written: waiting until it stands still for {:?} (at most {:?})",
                        p.quiet, p.settle
                    ))
                },
            ),
            None => scope
                .home
                .read_file(checked, limits::MANAGED_FILE)
                .map(Steady::Read),
        };
        match read {
            Ok(Steady::Read(c)) => Ok(c),
            Ok(Steady::StillWritten) => {
                let settle = scope.patience.map(|p| p.settle).unwrap_or_default();
                Err(format!(
                    "~/{rel} not captured: it was still being written after {settle:?}; the cycle after it stands still captures it"
                ))
            }
            Err(e) => Err(format!("~/{rel} not captured: {e}")),
        }
    }

    /// Rule of the repo's form: this machine's home path and the fleet secrets' values become
    /// their placeholders (text files only); a form that would still upload a secret or a
    /// credential is held back ([`never_uploaded`]) and `None` returned.
    fn repo_form(&mut self, rel: &str, bytes: &[u8]) -> Option<Vec<u8>> {
        let scope = self.scope;
        let bytes = scope.placeholders.to_repo(rel, bytes).into_owned();
        if let Some(why) = never_uploaded(scope.placeholders, scope.allow_tokens, rel, &bytes) {
            self.out
                .held_back
                .push(format!("~/{rel} not captured: {why}"));
            return None;
        }
        Some(bytes)
    }

    /// The rules of the module doc for a file read and in the repo's form (`bytes`), against
    /// the stored version in HEAD and the manifest's: unchanged (the manifest's stat
    /// refreshed), in step with an edit a killed cycle already merged, both changed (left to
    /// apply's conflict copy), first contact with a file the fleet holds (the fleet wins), or
    /// a local edit (stored, listed in [`Captured::upserts`]).
    fn decide(
        &mut self,
        rel: &String,
        bytes: &[u8],
        exec: bool,
        meta: &std::fs::Metadata,
        manifest: &mut Manifest,
    ) -> Result<()> {
        let (repo, scope, machine) = (self.repo, self.scope, self.scope.machine);
        let oid = git2::Oid::hash_object(git2::ObjectType::Blob, bytes)
            .map_err(Error::git("cannot hash a file"))?;
        let known = manifest.files.get(rel).cloned();
        let in_step = |e: &Entry| e.oid == oid.to_string() && e.exec == exec;
        let st_owned = tree::lookup(self.head, machine, rel);
        let st = st_owned.as_ref();
        let same_as_stored = st.is_some_and(|s| s.oid == oid && s.exec == exec);
        // Secrets unreadable here, and the fleet's copy has placeholders: the live file may
        // hold values apply wrote earlier, which this machine can no longer recognise.
        if !same_as_stored
            && scope.placeholders.secrets().is_unreadable()
            && st.is_some_and(|s| holds_placeholder(repo, s.oid))
        {
            self.out.held_back.push(format!(
                "~/{rel} not captured: the fleet's copy has secret placeholders and this machine cannot read the fleet secrets now (see `fleetkey doctor`)"
            ));
            return Ok(());
        }
        if same_as_stored || known.as_ref().is_some_and(in_step) {
            let entry = manifest.files.entry(rel.clone()).or_insert(Entry {
                oid: oid.to_string(),
                exec,
                stat: None,
            });
            entry.stat = Some(Stat::of(meta));
            return Ok(());
        }
        match (known, st) {
            // A cycle killed after it captured this very edit and merged it (the manifest is
            // saved only after apply): the merge holds it, so the live file is in step with
            // what was captured, and apply writes the merge without a conflict copy.
            (Some(k), Some(s)) if self.ours.captured(machine, rel, &k, (oid, exec), s.oid) => {
                manifest.files.insert(
                    rel.clone(),
                    Entry {
                        oid: oid.to_string(),
                        exec,
                        stat: Some(Stat::of(meta)),
                    },
                );
            }
            // The fleet moved on since our last apply and we edited too, or this machine never
            // had the file in step: apply keeps the live version as a conflict copy.
            (Some(k), Some(s)) if k.oid != s.oid.to_string() || k.exec != s.exec => {}
            (None, Some(_)) if scope.first_contact == FirstContact::FleetWins => {}
            (_, st) => {
                let blob = repo
                    .blob(bytes)
                    .map_err(Error::git("cannot store a file in the fleet repo"))?;
                let repo_path = st
                    .map(|s: &Stored| s.repo_path.clone())
                    .unwrap_or_else(|| format!("{}/{rel}", tree::HOME_DIR));
                self.out.upserts.push((repo_path, blob, exec));
                manifest.files.insert(
                    rel.clone(),
                    Entry {
                        oid: blob.to_string(),
                        exec,
                        stat: Some(Stat::of(meta)),
                    },
                );
            }
        }
        Ok(())
    }
}

/// Rule of deletions: a file the manifest knows, missing now, is listed in
/// [`Captured::missing`]; it is a deletion to capture only inside a managed directory whose
/// root still exists, and only while HEAD still holds what this machine last had (a change
/// beats a deletion). A missing managed file or directory is no deletion (apply restores it).
fn deletions(
    live: &BTreeMap<String, std::fs::Metadata>,
    head: &git2::Tree<'_>,
    scope: &Scope<'_>,
    manifest: &mut Manifest,
    out: &mut Captured,
) {
    let home = scope.home.path();
    let mut gone = Vec::new();
    for (rel, entry) in &manifest.files {
        if live.contains_key(rel) || scope.ignore.is_ignored(rel, false) {
            continue;
        }
        out.missing.push(rel.clone());
        let Some(m) = scope.managed.iter().find(|m| m.covers(rel)) else {
            continue;
        };
        if !m.dir || rel == &m.rel || !home.join(&m.rel).is_dir() {
            continue;
        }
        if let Some(s) = tree::lookup(head, scope.machine, rel)
            && s.oid.to_string() == entry.oid
        {
            out.removals.push(s.repo_path.clone());
            gone.push(rel.clone());
        }
    }
    for rel in gone {
        manifest.files.remove(&rel);
    }
}

/// Whether the blob `oid` holds a secret placeholder.
pub fn holds_placeholder(repo: &git2::Repository, oid: git2::Oid) -> bool {
    let prefix = super::placeholder::SECRET_PREFIX.as_bytes();
    repo.find_blob(oid)
        .is_ok_and(|b| b.content().windows(prefix.len()).any(|w| w == prefix))
}

/// Why the repo form `bytes` of `rel` must not leave this machine, if it must not: it still
/// holds a fleet secret's value (a binary or `[sync] literal` file, never transformed), or
/// something that looks like a credential and is no fleet secret (unless `[sync]
/// allow_tokens` lists the file). Names the key, or the kind and line; never the value.
pub fn never_uploaded(
    placeholders: &Placeholders,
    allow_tokens: &[Managed],
    rel: &str,
    bytes: &[u8],
) -> Option<String> {
    if let Some(key) = placeholders.leaked_secret(bytes) {
        return Some(format!(
            "it holds the value of the fleet secret {key}, and a binary or [sync] literal file is never given placeholders; remove the value from the file"
        ));
    }
    if allow_tokens.iter().any(|m| m.covers(rel)) {
        return None;
    }
    let found = crate::tokens::scan(bytes);
    (!found.is_empty()).then(|| {
        format!(
            "it holds what looks like a credential ({}); move it into the fleet secrets with `fleetkey secrets adopt ~/{rel}`, or list the file in [sync] allow_tokens",
            crate::tokens::describe(&found)
        )
    })
}

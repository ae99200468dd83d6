//! `fleetkey watch`: the daemon that runs a cycle after each settled change and pulls every
//! `poll`, so one process keeps a machine in step.
//!
//! When: the adaptive settle of [`super::debounce`]: a cycle starts `quiet` (150 ms) after the
//! last relevant event, and never later than `settle` (2 s) after the first one of a burst;
//! the cycle's capture then waits (within `settle`) for any file still being written.
//!
//! Event flow (as watchexec does it): notify's callback only converts an event and `try_send`s
//! it into one bounded channel; one loop consumes the channel. A full channel, a backend error
//! or a backend "rescan" notice sets a flag that makes the next cycle a full rescan (every cycle
//! captures by walking the managed paths, so a rescan is simply a cycle). The loop sleeps in
//! `recv_timeout` until the next deadline (settle, poll, poke or retry): no busy polling. A
//! peer's poke (a datagram on `poke.sock`, read by a thread of its own into the same channel)
//! makes the next cycle fetch at once; pokes coalesce, at most one cycle per [`POKE_GAP`]. When
//! pokes handed over bundles ([`super::carry`]), a cycle without the network takes and applies
//! them first, then the cycle that talks to the forge runs.
//!
//! What is watched: the DIRECTORIES holding managed paths (editors save by writing a temp file
//! and renaming it over the original, which a watch on the file itself would miss): a managed
//! file's parent, non-recursively; a managed directory, recursively; for a path whose directory
//! does not exist yet, its nearest existing ancestor. Events are filtered to managed paths, and
//! an event for a file whose stat still equals what the last cycle recorded (its own apply, or
//! a touch that changed nothing) is ignored.
//!
//! Errors: the ones that stop the daemon ([`Critical`]) are the setup failing (not initialized,
//! the watch itself failing, e.g. the inotify watch limit); everything else (the forge
//! unreachable, a merge problem) is logged and retried: offline with the backoff of
//! [`super::debounce::Backoff`], keeping every commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Machine;

use super::debounce::{Backoff, Debouncer, jitter_unit};
use super::ignore::IgnoreRules;
use super::managed::{self, Managed};
use super::plan::Plan;
use super::state::Manifest;
use super::{Network, cycle};

/// The least time between two cycles that pokes start.
const POKE_GAP: Duration = Duration::from_secs(1);

/// Capacity of the event channel; beyond it events are dropped and a rescan is flagged.
const CHANNEL: usize = 1024;

/// An error that stops the watcher (as opposed to one it logs and survives).
#[derive(Debug)]
pub struct Critical(pub Error);

/// What the event sources (notify's callback, the poke socket) hand to the loop.
#[derive(Debug)]
enum Msg {
    Paths(Vec<PathBuf>),
    Rescan,
    /// A peer pushed and poked this machine (`fleetkey poke`): pull now.
    Poke,
}

/// Runs the watcher until a critical error.
pub fn run(machine: &Machine, hooks: &dyn super::CycleHooks) -> std::result::Result<(), Critical> {
    let (tx, rx) = mpsc::sync_channel::<Msg>(CHANNEL);
    let overflow = Arc::new(AtomicBool::new(false));
    let watcher = make_watcher(tx.clone(), overflow.clone()).map_err(Critical)?;
    listen_for_pokes(&machine.paths.state_dir, tx);
    let mut watch = Watch::start(machine, hooks, watcher)?;
    loop {
        let now = Instant::now();
        if watch.cycle_due(now, &overflow) {
            watch.run_cycle(now);
            continue;
        }
        let wait = watch
            .next_deadline()
            .saturating_duration_since(Instant::now());
        watch.intake(rx.recv_timeout(wait))?;
    }
}

/// The loop's state: the settings, managed list and watches of the last plan, and when the
/// next cycle is due (a settled burst, the poll, a retry, a poke).
struct Watch<'m> {
    machine: &'m Machine,
    hooks: &'m dyn super::CycleHooks,
    watcher: notify::RecommendedWatcher,
    watched: BTreeMap<PathBuf, RecursiveMode>,
    settle: Duration,
    poll: Duration,
    managed_list: Vec<Managed>,
    ignore: IgnoreRules,
    manifest: Manifest,
    debounce: Debouncer,
    backoff: Backoff,
    /// A cycle runs at the next turn of the loop (the first one: a full rescan).
    due_cycle: bool,
    next_poll: Instant,
    retry_at: Option<Instant>,
    /// A poke means the forge moved: that cycle fetches without asking for the ref first.
    /// Pokes coalesce into one cycle, at most one per POKE_GAP, so a flood of pokes is not a
    /// flood of fetches.
    poked: bool,
    poke_at: Option<Instant>,
    last_poke_cycle: Option<Instant>,
}

impl<'m> Watch<'m> {
    /// Setup: the checked managed list (a refused entry is neither watched nor captured), its
    /// directories watched, the ready file written; the first cycle is a full rescan. A plan
    /// or a watch that fails here stops the daemon.
    fn start(
        machine: &'m Machine,
        hooks: &'m dyn super::CycleHooks,
        watcher: notify::RecommendedWatcher,
    ) -> std::result::Result<Self, Critical> {
        let plan = Plan::for_machine(machine).map_err(Critical)?;
        let (settle, quiet, poll) = (plan.fleet.settle(), plan.fleet.quiet(), plan.fleet.poll());
        let (mut watcher, mut watched) = (watcher, BTreeMap::new());
        let home = &machine.paths.home;
        refresh_watches(&mut watcher, &mut watched, home, &plan.managed).map_err(Critical)?;
        let manifest = Manifest::load(&machine.paths.state_dir);
        mark_ready(&machine.paths.state_dir);
        let watch = Watch {
            machine,
            hooks,
            watcher,
            watched,
            settle,
            poll,
            managed_list: plan.managed,
            ignore: plan.ignore,
            manifest,
            debounce: Debouncer::new(quiet, settle),
            backoff: Backoff::default(),
            due_cycle: true,
            next_poll: Instant::now() + poll,
            retry_at: None,
            poked: false,
            poke_at: None,
            last_poke_cycle: None,
        };
        crate::log::info(&format!(
            "watching {} managed paths ({} directories), quiet {quiet:?}, settle {settle:?}, poll {poll:?}",
            watch.managed_list.len(),
            watch.watched.len()
        ));
        Ok(watch)
    }

    /// The settle decision and the timers: a dropped event (a full channel) counts as an
    /// event; a cycle is due when the burst has settled ([`Debouncer::fire`]), or the poll, a
    /// retry or a poke is due, or the first rescan is pending.
    fn cycle_due(&mut self, now: Instant, overflow: &AtomicBool) -> bool {
        if overflow.swap(false, Ordering::Relaxed) {
            self.debounce.event(now);
        }
        if self.debounce.fire(now) {
            self.due_cycle = true;
        }
        if now >= self.next_poll
            || self.retry_at.is_some_and(|r| now >= r)
            || self.poke_at.is_some_and(|p| now >= p)
        {
            self.due_cycle = true;
        }
        self.due_cycle
    }

    /// One cycle: the bundles pokes handed over first (without the network), then the cycle
    /// proper (fetching at once after a poke), then the plan reloaded and the poll restarted.
    fn run_cycle(&mut self, now: Instant) {
        self.due_cycle = false;
        let network = self.take_poke(now);
        if !super::carry::spooled(&self.machine.paths.state_dir).is_empty() {
            apply_bundles_first(self.machine, self.hooks);
        }
        self.retry_at = watched_cycle(
            self.machine,
            network,
            self.hooks,
            &mut self.backoff,
            self.settle,
        );
        self.reload();
        self.next_poll = Instant::now() + self.poll;
    }

    /// The pokes a cycle answers: they are cleared, the time noted for [`POKE_GAP`], and the
    /// cycle fetches at once ([`Network::Full`]); without a poke it asks for the ref first.
    fn take_poke(&mut self, now: Instant) -> Network {
        self.poke_at = None;
        if self.poked {
            self.last_poke_cycle = Some(now);
        }
        if std::mem::take(&mut self.poked) {
            Network::Full
        } else {
            Network::CheapCheck
        }
    }

    /// After a cycle: the list, settings and watches may have changed with what was applied.
    /// A plan that cannot be made keeps the last one; a watch that fails is logged.
    fn reload(&mut self) {
        self.manifest = Manifest::load(&self.machine.paths.state_dir);
        if let Ok(plan) = Plan::for_machine(self.machine) {
            self.settle = plan.fleet.settle();
            let quiet = plan.fleet.quiet();
            self.poll = plan.fleet.poll();
            self.debounce = Debouncer::new(quiet, self.settle);
            self.managed_list = plan.managed;
            self.ignore = plan.ignore;
        }
        if let Err(e) = self.refresh_watches() {
            crate::log::warn(&format!("cannot watch every managed directory: {e}"));
        }
    }

    /// Watches the directories of the managed list ([`refresh_watches`]).
    fn refresh_watches(&mut self) -> Result<()> {
        refresh_watches(
            &mut self.watcher,
            &mut self.watched,
            &self.machine.paths.home,
            &self.managed_list,
        )
    }

    /// How long the loop may sleep: until the earliest of the poll, a retry, a poke and the
    /// settle deadline.
    fn next_deadline(&self) -> Instant {
        [
            Some(self.next_poll),
            self.retry_at,
            self.poke_at,
            self.debounce.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.next_poll)
    }

    /// Event intake: a rescan notice or a relevant path is an event of the burst; a poke
    /// schedules a fetching cycle; a timeout is nothing; the channel closing stops the daemon.
    fn intake(
        &mut self,
        msg: std::result::Result<Msg, RecvTimeoutError>,
    ) -> std::result::Result<(), Critical> {
        match msg {
            Ok(Msg::Rescan) => self.debounce.event(Instant::now()),
            Ok(Msg::Poke) => self.poke(),
            Ok(Msg::Paths(paths)) => {
                if paths.iter().any(|p| self.relevant(p)) {
                    self.debounce.event(Instant::now());
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Critical(Error::refused("the file watcher stopped")));
            }
        }
        Ok(())
    }

    /// A peer's poke: a fetching cycle now, or [`POKE_GAP`] after the last poke's cycle;
    /// pokes before it coalesce into it.
    fn poke(&mut self) {
        crate::log::debug("poked by a peer: pulling now");
        let now = Instant::now();
        let at = self.last_poke_cycle.map_or(now, |t| now.max(t + POKE_GAP));
        self.poke_at = Some(self.poke_at.map_or(at, |p| p.min(at)));
        self.poked = true;
    }

    /// Whether an event on `path` may need a cycle ([`relevant`], with the loop's list).
    fn relevant(&self, path: &Path) -> bool {
        relevant(
            path,
            &self.machine.paths.home,
            &self.managed_list,
            &self.ignore,
            &self.manifest,
        )
    }
}

/// Runs one cycle for the watcher and logs what it did (pokes the peers in the background
/// after a push); returns when to try again, after a cycle that found the forge unreachable
/// (with backoff) or the lock held (after `settle`).
fn watched_cycle(
    machine: &Machine,
    network: Network,
    hooks: &dyn super::CycleHooks,
    backoff: &mut Backoff,
    settle: Duration,
) -> Option<Instant> {
    match cycle(machine, network, hooks) {
        Ok(rec) => {
            backoff.succeed();
            for r in &rec.refused {
                crate::log::warn(&format!(
                    "the forge holds a commit that is not authentic: {} (claims {}): {}; nothing from it was applied (exit status 3 for `fleetkey sync`)",
                    r.commit, r.machine, r.why
                ));
            }
            if let Some(why) = &rec.not_healed {
                crate::log::warn(why);
            }
            if let Some(h) = &rec.healed {
                crate::log::warn(&h.line());
            }
            if rec.pushed {
                // In the background: the pokes never delay or fail the cycle. Each carries
                // the commits just pushed.
                super::poke::deliver_in_background(machine, rec.pushed_over);
            }
            if rec.captured + rec.applied + rec.conflicts > 0 || rec.pushed {
                crate::log::info(&format!(
                    "cycle: {} captured, {} applied, {} conflicts{}",
                    rec.captured,
                    rec.applied,
                    rec.conflicts,
                    if rec.pushed { ", pushed" } else { "" }
                ));
            }
            None
        }
        Err(e) if e.is_unreachable() => {
            let delay = backoff.fail(jitter_unit());
            crate::log::warn(&format!("{e}; retrying in {}s", delay.as_secs()));
            Some(Instant::now() + delay)
        }
        Err(e) if matches!(e.kind(), ErrorKind::Locked { .. }) => {
            crate::log::debug(&format!("{e}; retrying after settle"));
            Some(Instant::now() + settle)
        }
        Err(e) => {
            crate::log::warn(&format!("cycle failed: {e}"));
            if let Some(a) = e.advice() {
                crate::log::warn(&format!("  hint: {a}"));
            }
            None
        }
    }
}

/// Bundles peers' pokes handed over are taken and applied by a cycle without the network
/// first, so a forge that is slow, down or stalling never stands between a verified change (a
/// revocation above all) and the live files; the cycle that talks to the forge follows at
/// once. A failure here is logged: that next cycle takes whatever is left.
fn apply_bundles_first(machine: &Machine, hooks: &dyn super::CycleHooks) {
    match cycle(machine, Network::Offline, hooks) {
        Ok(rec) => crate::log::debug(&format!(
            "bundles taken before the forge: {} applied",
            rec.applied
        )),
        Err(e) => crate::log::debug(&format!("bundles not taken before the forge: {e}")),
    }
}

/// The state file that says the watcher's watches are in place (it holds the watcher's pid):
/// what a test, or a user, can wait on instead of sleeping. Each finished cycle is then visible
/// in `last-cycle.json`.
pub const READY_FILE: &str = "watch-ready";

fn mark_ready(state_dir: &Path) {
    let written = crate::files::ensure_private_dir(state_dir).and_then(|()| {
        crate::files::write_atomic(
            &state_dir.join(READY_FILE),
            format!("{}\n", std::process::id()).as_bytes(),
            0o600,
        )
    });
    if let Err(e) = written {
        crate::log::warn(&format!("cannot record that the watcher is ready: {e}"));
    }
}

/// Binds the poke socket and feeds each poke into the loop's channel from a thread of its own.
/// Without the socket (a path too long for a unix socket, say) the watcher still polls.
fn listen_for_pokes(state_dir: &Path, tx: SyncSender<Msg>) {
    let inbox = crate::files::ensure_private_dir(state_dir)
        .map_err(|e| e.to_string())
        .and_then(|()| super::poke::Inbox::bind(state_dir).map_err(|e| e.to_string()));
    let inbox = match inbox {
        Ok(inbox) => inbox,
        Err(e) => {
            crate::log::warn(&format!(
                "peers cannot poke this watcher (no socket in {}: {e}); it polls",
                state_dir.display()
            ));
            return;
        }
    };
    std::thread::spawn(move || {
        while inbox.wait().is_ok() {
            match tx.try_send(Msg::Poke) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    });
}

fn make_watcher(
    tx: SyncSender<Msg>,
    overflow: Arc<AtomicBool>,
) -> Result<notify::RecommendedWatcher> {
    notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let msg = match res {
            Ok(ev) if ev.need_rescan() => Msg::Rescan,
            Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => return,
            Ok(ev) => Msg::Paths(ev.paths),
            Err(_) => Msg::Rescan,
        };
        if let Err(TrySendError::Full(_)) = tx.try_send(msg) {
            overflow.store(true, Ordering::Relaxed);
        }
    })
    .map_err(watch_error)
}

fn watch_error(e: notify::Error) -> Error {
    let hint = match e.kind {
        notify::ErrorKind::MaxFilesWatch => Some(
            "raise the inotify watch limit: `sudo sysctl fs.inotify.max_user_watches=524288` (and in /etc/sysctl.d/ to keep it)",
        ),
        _ => None,
    };
    let err = Error::refused(format!("cannot watch the managed files: {e}"));
    match hint {
        Some(h) => err.hint(h),
        None => err,
    }
}

/// The directories to watch for `managed`, with how.
pub fn watch_dirs(home: &Path, managed: &[Managed]) -> BTreeMap<PathBuf, RecursiveMode> {
    let mut out: BTreeMap<PathBuf, RecursiveMode> = BTreeMap::new();
    for m in managed {
        let full = home.join(&m.rel);
        let (dir, mode) = if m.dir && full.is_dir() {
            (full, RecursiveMode::Recursive)
        } else {
            let mut d = full.parent().unwrap_or(home).to_path_buf();
            while !d.is_dir() && d.starts_with(home) && d != home {
                d = d.parent().unwrap_or(home).to_path_buf();
            }
            (d, RecursiveMode::NonRecursive)
        };
        let e = out.entry(dir).or_insert(mode);
        if mode == RecursiveMode::Recursive {
            *e = mode;
        }
    }
    out
}

fn refresh_watches(
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut BTreeMap<PathBuf, RecursiveMode>,
    home: &Path,
    managed: &[Managed],
) -> Result<()> {
    let want = watch_dirs(home, managed);
    for (dir, mode) in watched.clone() {
        if want.get(&dir) != Some(&mode) {
            let _ = watcher.unwatch(&dir);
            watched.remove(&dir);
        }
    }
    for (dir, mode) in want {
        if let std::collections::btree_map::Entry::Vacant(slot) = watched.entry(dir) {
            watcher.watch(slot.key(), mode).map_err(watch_error)?;
            slot.insert(mode);
        }
    }
    Ok(())
}

/// Whether an event on `path` may need a cycle: it is a managed file (or inside a managed
/// directory, or an ancestor of a managed path), not a conflict copy, fleetkey temp file or
/// ignored file ([`super::ignore`]), and not exactly what the last cycle left there.
pub fn relevant(
    path: &Path,
    home: &Path,
    managed: &[Managed],
    ignore: &IgnoreRules,
    manifest: &Manifest,
) -> bool {
    let Ok(rel) = path.strip_prefix(home) else {
        return false;
    };
    let Some(rel) = rel.to_str() else {
        return false;
    };
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if managed::is_conflict_copy(name) || managed::is_own_temp(name) {
        return false;
    }
    // An editor's swap file or Finder's .DS_Store never wakes a cycle.
    let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if ignore.is_ignored(rel, is_dir) {
        return false;
    }
    let covered = managed.iter().any(|m| m.covers(rel));
    let ancestor = managed
        .iter()
        .any(|m| m.rel.starts_with(rel) && m.rel.as_bytes().get(rel.len()) == Some(&b'/'));
    if !covered {
        return ancestor;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => !manifest.unchanged(rel, &meta),
        Ok(meta) => meta.is_dir(),
        Err(_) => {
            manifest.files.contains_key(rel) || managed.iter().any(|m| m.dir && m.covers(rel))
        }
    }
}

/// Sleeps for `d` (used by `pull --every`).
pub fn sleep(d: Duration) {
    std::thread::sleep(d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_of_files_and_managed_directories_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::create_dir_all(home.join(".config/git")).unwrap();
        let managed = managed::parse_list(&[
            "~/.zshrc".to_string(),
            "~/.config/git/".to_string(),
            "~/.local/bin/tool".to_string(),
        ])
        .unwrap();
        let w = watch_dirs(home, &managed);
        assert_eq!(w.get(home), Some(&RecursiveMode::NonRecursive));
        assert_eq!(
            w.get(&home.join(".config/git")),
            Some(&RecursiveMode::Recursive)
        );
        assert_eq!(
            w.len(),
            2,
            "a missing directory is watched through its ancestor: {w:?}"
        );
    }

    #[test]
    fn only_managed_paths_that_changed_are_relevant() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let managed =
            managed::parse_list(&["~/.zshrc".to_string(), "~/.config/app/".to_string()]).unwrap();
        let ignore = IgnoreRules::default();
        let mut manifest = Manifest::default();
        std::fs::create_dir_all(home.join(".config/app")).unwrap();
        std::fs::write(home.join(".config/app/.a.sh.swp"), "x").unwrap();
        std::fs::write(home.join(".config/app/a.sh"), "x").unwrap();
        assert!(!relevant(
            &home.join(".config/app/.a.sh.swp"),
            home,
            &managed,
            &ignore,
            &manifest
        ));
        assert!(!relevant(
            &home.join(".config/app/.DS_Store"),
            home,
            &managed,
            &ignore,
            &manifest
        ));
        assert!(relevant(
            &home.join(".config/app/a.sh"),
            home,
            &managed,
            &ignore,
            &manifest
        ));
        std::fs::write(home.join(".zshrc"), "x").unwrap();
        assert!(relevant(
            &home.join(".zshrc"),
            home,
            &managed,
            &ignore,
            &manifest
        ));
        assert!(!relevant(
            &home.join(".bashrc"),
            home,
            &managed,
            &ignore,
            &manifest
        ));
        assert!(!relevant(
            &home.join(".zshrc.conflict-a-20261127T003735Z"),
            home,
            &managed,
            &ignore,
            &manifest
        ));
        let meta = std::fs::symlink_metadata(home.join(".zshrc")).unwrap();
        manifest.files.insert(
            ".zshrc".into(),
            super::super::state::Entry {
                oid: String::new(),
                exec: false,
                stat: Some(super::super::state::Stat::of(&meta)),
            },
        );
        assert!(
            !relevant(&home.join(".zshrc"), home, &managed, &ignore, &manifest),
            "the file is what the last cycle left: its own write"
        );
    }
}

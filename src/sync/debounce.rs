//! The watcher's timing rules, as pure functions of instants so they are tested with made-up
//! events (as watchexec tests its action worker), never with a real watcher or a real clock.
//!
//! Debounce, the adaptive settle ([`Debouncer`]): a burst of relevant events runs ONE cycle,
//! `quiet` (default 150 ms) after its last event: an editor's save (write a temp file, rename
//! it over the original) lands in a few milliseconds, so a save is live on the other machines
//! in well under a second. While events keep coming (a checkout, an installer, a file that
//! keeps changing) the cycle waits for that quiet, but never longer than `settle` (default
//! 2 s) after the first event of the burst, so a busy directory still commits every `settle`.
//! `quiet` longer than `settle` is cut to `settle`.
//!
//! Still being written ([`read_when_written`]): a file whose size, modification time or inode
//! changes while capture looks at it is being written. Capture reads a changed file only once
//! its stamp has stood still for `quiet` (seen twice `quiet` apart, or a modification time at
//! least `quiet` old), and keeps what it read only when the stamp before and after the read
//! agree; otherwise it looks again. It waits at most `settle` in one cycle; a file still being
//! written then is held back to a later cycle (its next change wakes the watcher again), never
//! captured half-written.
//!
//! Backoff: while the forge is unreachable, retries wait 5 s, 10 s, 20 s … up to 5 min, each
//! with ±20 % jitter so a fleet coming back online does not knock on the forge in step. Local
//! commits are kept meanwhile; a success resets the delay.

use std::time::{Duration, Instant, SystemTime};

use crate::confine::Stamp;

/// Collects events and says when the burst has settled.
#[derive(Debug, Clone)]
pub struct Debouncer {
    quiet: Duration,
    settle: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debouncer {
    /// A debouncer waiting `quiet` after the last event, and never more than `settle` after the
    /// first one (`quiet` longer than `settle` is cut to `settle`).
    pub fn new(quiet: Duration, settle: Duration) -> Debouncer {
        Debouncer {
            quiet: quiet.min(settle),
            settle,
            first: None,
            last: None,
        }
    }

    /// Notes a relevant event at `at`.
    pub fn event(&mut self, at: Instant) {
        self.first = Some(self.first.map_or(at, |f| f.min(at)));
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
    }

    #[cfg(test)]
    /// Whether events are waiting.
    pub fn pending(&self) -> bool {
        self.first.is_some()
    }

    /// When the burst will have settled, if events are waiting.
    pub fn deadline(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + self.quiet).min(first + self.settle))
    }

    /// Whether a cycle is due at `now`; when it is, the burst is forgotten.
    pub fn fire(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(d) if now >= d => {
                self.first = None;
                self.last = None;
                true
            }
            _ => false,
        }
    }
}

/// One look at a file: when it was taken and what the file's stat said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// When.
    pub at: SystemTime,
    /// Size, modification time and inode.
    pub stamp: Stamp,
}

/// What [`Writing::look`] concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The stamp has stood still for `quiet`: nobody is writing the file.
    Done,
    /// It may still be written: look again at this time.
    LookAt(SystemTime),
}

/// One file followed through the looks capture takes at it.
#[derive(Debug, Clone)]
pub struct Writing {
    quiet: Duration,
    stamp: Stamp,
    /// The first look that saw `stamp`.
    since: SystemTime,
}

impl Writing {
    /// Starts following a file from its first look. `by_hand`: the file is taken as standing
    /// still from that look (a command the user runs after the save is over) until a later
    /// look sees it change; otherwise (the watcher, woken by the change itself) it must stand
    /// still for `quiet` first.
    pub fn new(first: Look, quiet: Duration, by_hand: bool) -> Writing {
        Writing {
            quiet,
            stamp: first.stamp,
            since: if by_hand {
                SystemTime::UNIX_EPOCH
            } else {
                first.at
            },
        }
    }

    /// The stamp of the last look.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// Notes a look: the file is done once its stamp has stood still for `quiet`, seen so
    /// (looks `quiet` apart with one stamp) or told so by a modification time at least `quiet`
    /// old. A modification time in the future (another machine's clock on a network file
    /// system) tells nothing: the looks decide.
    pub fn look(&mut self, l: Look) -> Written {
        if l.stamp != self.stamp {
            self.stamp = l.stamp;
            self.since = l.at;
        }
        let mtime = u64::try_from(self.stamp.mtime_ns)
            .map(|ns| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let still_since = self.since.min(mtime);
        let done_at = still_since + self.quiet;
        if l.at >= done_at {
            Written::Done
        } else {
            Written::LookAt(done_at)
        }
    }
}

/// What [`read_when_written`] needs: a clock, a way to wait, and the file.
pub trait Watched {
    /// What a read gives.
    type Read;
    /// Why a look or a read failed (the file is gone, unreadable, …).
    type Error;
    /// The time now.
    fn now(&self) -> SystemTime;
    /// Waits `d`.
    fn sleep(&mut self, d: Duration);
    /// The file's stamp now.
    fn stamp(&mut self) -> Result<Stamp, Self::Error>;
    /// Reads the file: what was read, with the stamp of the open file before the read and the
    /// file's stamp after it.
    fn read(&mut self) -> Result<(Self::Read, Stamp, Stamp), Self::Error>;
}

/// The file read whole, or still being written at `deadline`.
#[derive(Debug)]
pub enum Steady<T> {
    /// Read while nobody was writing it.
    Read(T),
    /// Still changing at the deadline: not read (a later cycle captures it).
    StillWritten,
}

/// Reads a file once it is no longer being written (see the module doc), starting from the
/// look `first` (the stat the walk took; `by_hand` as [`Writing::new`] takes it), waiting at
/// most until `deadline`. `waiting` is called once, when the first wait begins (the caller says
/// so at debug level).
pub fn read_when_written<W: Watched>(
    file: &mut W,
    first: Look,
    quiet: Duration,
    by_hand: bool,
    deadline: SystemTime,
    mut waiting: impl FnMut(),
) -> Result<Steady<W::Read>, W::Error> {
    let mut writing = Writing::new(first, quiet, by_hand);
    let mut now = first.at;
    let mut said = false;
    loop {
        match writing.look(Look {
            at: now,
            stamp: writing.stamp(),
        }) {
            Written::Done => {
                let (read, opened, after) = file.read()?;
                if opened == writing.stamp() && after == opened {
                    return Ok(Steady::Read(read));
                }
                // Changed between the look and the read, or during it.
                now = file.now();
                writing.look(Look {
                    at: now,
                    stamp: after,
                });
            }
            Written::LookAt(at) => {
                if now >= deadline {
                    return Ok(Steady::StillWritten);
                }
                if !std::mem::replace(&mut said, true) {
                    waiting();
                }
                let until = at.min(deadline);
                file.sleep(until.duration_since(now).unwrap_or_default());
                let stamp = file.stamp()?;
                now = file.now();
                writing.look(Look { at: now, stamp });
            }
        }
    }
}

/// Retry delays while the forge is unreachable.
#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
    min: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            failures: 0,
            min: Duration::from_secs(5),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay after one more failure; `unit` in [0, 1) picks the jitter (±20 %).
    pub fn fail(&mut self, unit: f64) -> Duration {
        let exp = self.failures.min(16);
        self.failures += 1;
        let base = self.min.saturating_mul(1 << exp).min(self.max);
        let factor = 0.8 + 0.4 * unit.clamp(0.0, 1.0);
        base.mul_f64(factor).min(self.max)
    }

    /// Forgets the failures after a success.
    pub fn succeed(&mut self) {
        self.failures = 0;
    }

    #[cfg(test)]
    /// Whether the last attempt failed.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }
}

pub use crate::clock::jitter_unit;

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The defaults: quiet 150 ms, settle 2 s.
    fn defaults() -> Debouncer {
        Debouncer::new(ms(150), ms(2000))
    }

    /// Feeds events at the given offsets (ms from `t0`) to a debouncer checked every
    /// millisecond, as the watcher's loop checks it (before it takes the next event), until
    /// `end`; returns when it fired.
    fn run(d: &mut Debouncer, t0: Instant, events: &[u64], end: u64) -> Vec<u64> {
        let mut fired = Vec::new();
        let mut next = events.iter().peekable();
        for t in 0..=end {
            let now = t0 + ms(t);
            if d.fire(now) {
                fired.push(t);
            }
            while next.next_if(|&&e| e <= t).is_some() {
                d.event(now);
            }
        }
        fired
    }

    #[test]
    fn one_save_fires_once_quiet_after_it() {
        let t0 = Instant::now();
        let mut d = defaults();
        assert!(!d.pending() && d.deadline().is_none());
        d.event(t0);
        assert_eq!(d.deadline(), Some(t0 + ms(150)));
        assert!(!d.fire(t0 + ms(149)));
        assert!(d.fire(t0 + ms(150)));
        assert!(!d.pending());
        assert!(!d.fire(t0 + ms(5000)), "fires once per burst");
        assert_eq!(run(&mut defaults(), t0, &[0], 5000), [150]);
    }

    #[test]
    fn a_rename_save_is_one_cycle() {
        // An editor's save: the temp file is created, written, closed, renamed over the
        // target, and the target's mode set: five events within 4 ms.
        let t0 = Instant::now();
        assert_eq!(run(&mut defaults(), t0, &[0, 1, 1, 3, 4], 5000), [154]);
        // Two saves a second apart are two cycles.
        assert_eq!(
            run(&mut defaults(), t0, &[0, 1, 3, 1000, 1002], 5000),
            [153, 1152]
        );
    }

    #[test]
    fn a_burst_of_1000_files_is_one_cycle() {
        // A checkout writes 1,000 files, one every 0.9 ms (events at whole milliseconds):
        // one cycle, quiet after the last.
        let t0 = Instant::now();
        let events: Vec<u64> = (0..1000u64).map(|i| i * 9 / 10).collect();
        assert_eq!(run(&mut defaults(), t0, &events, 10_000), [899 + 150]);
    }

    #[test]
    fn events_that_never_stop_commit_every_settle() {
        // A tool rewrites a file every 100 ms forever: no quiet ever comes, so a cycle runs
        // every settle after the first event of each burst.
        let t0 = Instant::now();
        let events: Vec<u64> = (0..=100u64).map(|i| i * 100).collect();
        assert_eq!(
            run(&mut defaults(), t0, &events, 10_000),
            [2000, 4000, 6000, 8000, 10_000]
        );
    }

    #[test]
    fn events_out_of_order_do_not_shorten_the_wait() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(1000), ms(10_000));
        d.event(t0 + ms(500));
        d.event(t0);
        assert_eq!(d.deadline(), Some(t0 + ms(1500)));
    }

    #[test]
    fn quiet_never_outlasts_settle() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(5000), ms(1000));
        d.event(t0);
        assert_eq!(d.deadline(), Some(t0 + ms(1000)));
    }

    /// A simulated file, clock and writer: `writes[i]` is the time (ms) of the i-th write,
    /// which appends `CHUNK` bytes and sets the modification time.
    struct Sim {
        start: SystemTime,
        now_ms: u64,
        writes: Vec<u64>,
        reads: usize,
    }

    const CHUNK: u64 = 4096;

    impl Sim {
        fn stamp_at(&self, t: u64) -> Stamp {
            let n = self.writes.iter().filter(|&&w| w <= t).count() as u64;
            let last = self.writes.iter().filter(|&&w| w <= t).max().copied();
            let mtime = self.start + ms(last.unwrap_or(0));
            Stamp {
                size: n * CHUNK,
                mtime_ns: mtime
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as i64,
                ino: 7,
            }
        }
        fn look(&self) -> Look {
            Look {
                at: self.now(),
                stamp: self.stamp_at(self.now_ms),
            }
        }
    }

    impl Watched for Sim {
        type Read = u64;
        type Error = ();
        fn now(&self) -> SystemTime {
            self.start + ms(self.now_ms)
        }
        fn sleep(&mut self, d: Duration) {
            self.now_ms += d.as_millis().max(1) as u64;
        }
        fn stamp(&mut self) -> Result<Stamp, ()> {
            Ok(self.stamp_at(self.now_ms))
        }
        fn read(&mut self) -> Result<(u64, Stamp, Stamp), ()> {
            // Reading takes 1 ms.
            self.reads += 1;
            let before = self.stamp_at(self.now_ms);
            self.now_ms += 1;
            Ok((before.size, before, self.stamp_at(self.now_ms)))
        }
    }

    fn sim(writes: Vec<u64>) -> Sim {
        Sim {
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            now_ms: 0,
            writes,
            reads: 0,
        }
    }

    #[test]
    fn a_file_that_grows_for_3s_is_captured_whole_and_once() {
        // A download: 4 KiB every 50 ms for 3 s, each write an event. The watcher (quiet
        // 150 ms, settle 2 s) fires at 2 s; capture finds the file still being written and
        // waits (at most settle) until it stood still for quiet; the events that arrived
        // meanwhile find the file as the cycle left it (the watcher's relevance check) and run
        // no second cycle.
        let (quiet, settle) = (ms(150), ms(2000));
        let writes: Vec<u64> = (0..=60u64).map(|i| i * 50).collect();
        let whole = writes.len() as u64 * CHUNK;
        let mut file = sim(writes.clone());
        let t0 = Instant::now();
        let mut d = Debouncer::new(quiet, settle);
        let mut captured: Vec<(u64, u64)> = Vec::new();
        let mut in_step: Option<Stamp> = None;
        let mut waited = 0;
        let mut next_write = 0;
        let mut t = 0;
        while t <= 10_000 {
            file.now_ms = t;
            if d.fire(t0 + ms(t)) {
                let first = file.look();
                let deadline = file.now() + settle;
                match read_when_written(&mut file, first, quiet, false, deadline, || waited += 1) {
                    Ok(Steady::Read(size)) => {
                        captured.push((file.now_ms, size));
                        in_step = Some(file.stamp_at(file.now_ms));
                    }
                    other => panic!("not captured: {other:?}"),
                }
                t = file.now_ms;
            }
            // The events of the writes up to now (those during the cycle were queued), each
            // kept only when the file differs from what the last cycle left (as `relevant`).
            while writes.get(next_write).is_some_and(|&w| w <= t) {
                if in_step != Some(file.stamp_at(t)) {
                    d.event(t0 + ms(t));
                }
                next_write += 1;
            }
            t += 1;
        }
        assert_eq!(captured.len(), 1, "captured once: {captured:?}");
        let (at, size) = captured[0];
        assert_eq!(size, whole, "captured whole");
        assert!(
            (3150..=3160).contains(&at),
            "quiet after the last write: {at}"
        );
        assert_eq!(waited, 1, "the wait is said once");
    }

    #[test]
    fn a_file_still_written_after_settle_is_held_back_unread() {
        // Written every 50 ms for a minute: capture gives up at its deadline without reading.
        let mut file = sim((0..1200u64).map(|i| i * 50).collect());
        file.now_ms = 2000;
        let first = file.look();
        let deadline = file.now() + ms(2000);
        let got = read_when_written(&mut file, first, ms(150), false, deadline, || {}).unwrap();
        assert!(matches!(got, Steady::StillWritten), "{got:?}");
        assert_eq!(file.reads, 0);
        assert!(file.now_ms >= 4000 && file.now_ms < 4100, "{}", file.now_ms);
    }

    #[test]
    fn a_file_written_long_ago_is_read_at_once_and_one_changed_during_the_read_again() {
        let mut file = sim(vec![0]);
        file.now_ms = 500;
        let first = file.look();
        let deadline = file.now() + ms(2000);
        let got = read_when_written(&mut file, first, ms(150), false, deadline, || {
            panic!("waited")
        });
        assert!(matches!(got, Ok(Steady::Read(CHUNK))));
        assert_eq!((file.reads, file.now_ms), (1, 501), "no wait, one read");

        // A write lands during the read: the read is thrown away, and the file read again
        // once it stood still for quiet.
        let mut file = sim(vec![0, 501]);
        file.now_ms = 500;
        let first = file.look();
        let deadline = file.now() + ms(2000);
        let got = read_when_written(&mut file, first, ms(150), false, deadline, || {});
        assert!(
            matches!(got, Ok(Steady::Read(n)) if n == 2 * CHUNK),
            "{got:?}"
        );
        assert_eq!(file.reads, 2);
        assert!(file.now_ms >= 651, "{}", file.now_ms);
    }

    #[test]
    fn by_hand_a_fresh_file_is_read_at_once_unless_it_changes_under_the_read() {
        // `fleetkey sync` 10 ms after a save: read at once, no wait.
        let mut file = sim(vec![0]);
        file.now_ms = 10;
        let first = file.look();
        let deadline = file.now() + ms(2000);
        let got = read_when_written(&mut file, first, ms(150), true, deadline, || {
            panic!("waited")
        });
        assert!(matches!(got, Ok(Steady::Read(CHUNK))));
        assert_eq!(file.reads, 1);
        // A write during the read still makes it wait and read again.
        let mut file = sim(vec![0, 11]);
        file.now_ms = 10;
        let first = file.look();
        let got = read_when_written(&mut file, first, ms(150), true, deadline, || {});
        assert!(
            matches!(got, Ok(Steady::Read(n)) if n == 2 * CHUNK),
            "{got:?}"
        );
        assert_eq!(file.reads, 2);
    }

    #[test]
    fn a_modification_time_in_the_future_waits_for_quiet_once() {
        // The writer's clock (a network file system) is 10 s ahead: the looks decide.
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let stamp = Stamp {
            size: 3,
            mtime_ns: (1_800_000_010u64 * 1_000_000_000) as i64,
            ino: 1,
        };
        let mut w = Writing::new(Look { at, stamp }, ms(150), false);
        assert_eq!(w.look(Look { at, stamp }), Written::LookAt(at + ms(150)));
        assert_eq!(
            w.look(Look {
                at: at + ms(150),
                stamp
            }),
            Written::Done
        );
    }

    #[test]
    fn backoff_doubles_from_5s_to_5min_with_bounded_jitter() {
        let mut b = Backoff::default();
        let plain: Vec<u64> = (0..9).map(|_| b.fail(0.5).as_secs()).collect();
        assert_eq!(plain, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        b.succeed();
        assert!(!b.failing());
        let low = b.fail(0.0);
        b.succeed();
        let high = b.fail(0.999_999);
        assert_eq!(low, ms(4000));
        assert!(high > ms(5990) && high <= ms(6000), "{high:?}");
        let u = jitter_unit();
        assert!((0.0..1.0).contains(&u));
    }
}

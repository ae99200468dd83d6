//! The watcher's timing rules, as pure functions of instants so they are tested with made-up
//! events (as watchexec tests its action worker), never with a real watcher.
//!
//! Debounce: a burst of relevant events runs ONE cycle, once `settle` has passed with no new
//! event. A file that keeps changing (a log someone manages by mistake) still gets a cycle at
//! the latest `max_wait` after the first event of the burst, so the watcher cannot starve.
//!
//! Backoff: while the forge is unreachable, retries wait 5 s, 10 s, 20 s … up to 5 min, each
//! with ±20 % jitter so a fleet coming back online does not knock on the forge in step. Local
//! commits are kept meanwhile; a success resets the delay.

use std::time::{Duration, Instant};

/// Collects events and says when the burst has settled.
#[derive(Debug, Clone)]
pub struct Debouncer {
    settle: Duration,
    max_wait: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debouncer {
    /// A debouncer waiting `settle` of quiet, and never more than `max_wait` after the first event.
    pub fn new(settle: Duration, max_wait: Duration) -> Debouncer {
        Debouncer {
            settle,
            max_wait: max_wait.max(settle),
            first: None,
            last: None,
        }
    }

    /// Notes a relevant event at `at`.
    pub fn event(&mut self, at: Instant) {
        self.first.get_or_insert(at);
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
        Some((last + self.settle).min(first + self.max_wait))
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

    #[test]
    fn a_burst_fires_once_after_settle_of_quiet() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(1000), ms(10_000));
        assert!(!d.pending() && d.deadline().is_none());
        d.event(t0);
        d.event(t0 + ms(300));
        d.event(t0 + ms(900));
        assert_eq!(d.deadline(), Some(t0 + ms(1900)));
        assert!(!d.fire(t0 + ms(1899)));
        assert!(d.fire(t0 + ms(1900)));
        assert!(!d.pending());
        assert!(!d.fire(t0 + ms(5000)), "fires once per burst");
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
    fn a_file_that_never_stops_changing_still_syncs_by_max_wait() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(1000), ms(3000));
        let mut fired = Vec::new();
        for i in 0..100u64 {
            let now = t0 + ms(i * 200);
            d.event(now);
            if d.fire(now) {
                fired.push(i * 200);
            }
        }
        assert_eq!(fired, [3000, 6200, 9400, 12600, 15800, 19000]);
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

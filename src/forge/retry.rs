//! One retry rule for every `git` run that talks to the forge (fetch, push, ls-remote), after
//! cargo's `util/network/retry.rs`.
//!
//! - **What is spurious** is decided from the error's kind ([`is_spurious`]), never by reading
//!   git's stderr again (sorting stderr into a kind is [`super::classify`]'s one job). Spurious:
//!   [`ErrorKind::RefLocked`], another git holding a ref lock in the clone (one left running by
//!   a killed fleetkey that [`super::Forge::reap_orphan`] did not know about, or the user's own
//!   git in the clone), which is gone a moment later.
//! - **Not spurious**, returned at once: an unreachable forge (the cycle goes offline, exit 75,
//!   and the watcher retries with its own backoff of minutes, [`crate::sync::debounce::Backoff`]),
//!   refused credentials, a missing repository, a declined push, a malformed git configuration,
//!   and anything git said that fleetkey does not recognise.
//! - **How many tries:** [`RULE`], 4 in all (3 retries).
//! - **Backoff:** 300 ms, doubling with each retry, each delay scaled by a jitter in [0.5, 1.5)
//!   so that two processes that collided do not collide again.
//!
//! Must never: retry what a retry cannot fix, or sleep without logging why.

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// The retry rule: how many tries, and the first delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included.
    pub tries: u32,
    /// The delay before the first retry; each later one doubles it.
    pub base: Duration,
}

/// The rule every forge operation uses.
pub const RULE: Retry = Retry {
    tries: 4,
    base: Duration::from_millis(300),
};

/// Whether `e` is a failure that goes away by itself, so that trying again may succeed.
pub fn is_spurious(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::RefLocked { .. })
}

impl Retry {
    /// The delay before retry number `retry` (0 for the first), scaled by `jitter` in [0, 1).
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let doubled = self.base.saturating_mul(1 << retry.min(16));
        doubled.mul_f64(0.5 + jitter.clamp(0.0, 1.0))
    }

    /// Runs `op` (named `what` in the log) until it succeeds, fails for a reason that is not
    /// spurious, or has been tried [`Retry::tries`] times.
    pub fn run<T>(&self, what: &str, op: impl FnMut() -> Result<T>) -> Result<T> {
        self.run_with(what, op, std::thread::sleep, crate::clock::jitter_unit)
    }

    /// [`Retry::run`] with the sleep and the jitter source given (tests count the tries
    /// without sleeping).
    pub fn run_with<T>(
        &self,
        what: &str,
        mut op: impl FnMut() -> Result<T>,
        mut sleep: impl FnMut(Duration),
        mut jitter: impl FnMut() -> f64,
    ) -> Result<T> {
        let mut retry = 0;
        loop {
            match op() {
                Err(e) if retry + 1 < self.tries && is_spurious(&e) => {
                    let delay = self.delay(retry, jitter());
                    crate::log::debug(&format!(
                        "{what}: {e}; trying again in {} ms",
                        delay.as_millis()
                    ));
                    sleep(delay);
                    retry += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked() -> Error {
        ErrorKind::RefLocked {
            remote: "r".into(),
            stderr: String::new(),
        }
        .into()
    }

    fn unreachable() -> Error {
        ErrorKind::ForgeUnreachable {
            remote: "r".into(),
            stderr: String::new(),
        }
        .into()
    }

    #[test]
    fn a_held_ref_lock_is_retried_with_growing_jittered_delays_then_given_up() {
        let mut calls = 0;
        let mut slept = Vec::new();
        let out: Result<()> = RULE.run_with(
            "fetch",
            || {
                calls += 1;
                Err(locked())
            },
            |d| slept.push(d),
            || 0.5,
        );
        assert!(matches!(
            out.unwrap_err().kind(),
            ErrorKind::RefLocked { .. }
        ));
        assert_eq!(calls, RULE.tries);
        assert_eq!(
            slept,
            [300, 600, 1200].map(Duration::from_millis).to_vec(),
            "doubling from the base, jitter 0.5 scaling by 1"
        );
        assert_eq!(RULE.delay(0, 0.0), Duration::from_millis(150));
        assert!(RULE.delay(0, 0.999) < Duration::from_millis(450));
    }

    #[test]
    fn success_after_a_spurious_failure_and_no_retry_of_what_a_retry_cannot_fix() {
        let mut calls = 0;
        let out = RULE.run_with(
            "push",
            || {
                calls += 1;
                if calls == 1 { Err(locked()) } else { Ok(7) }
            },
            |_| {},
            || 0.0,
        );
        assert_eq!(out.unwrap(), 7);
        assert_eq!(calls, 2);
        let mut calls = 0;
        let out: Result<()> = RULE.run_with(
            "ls-remote",
            || {
                calls += 1;
                Err(unreachable())
            },
            |_| panic!("an unreachable forge is not retried here"),
            || 0.0,
        );
        assert!(out.unwrap_err().is_unreachable());
        assert_eq!(calls, 1);
    }
}

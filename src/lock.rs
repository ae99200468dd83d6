//! The one lock that keeps cycles apart: the watcher, the puller and every command that changes
//! the fleet take it, so two never touch the clone at once.
//!
//! It is an advisory `flock` on `~/.local/state/fleetkey/lock`, released by the kernel when the
//! process dies, so a killed cycle never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// A held lock; released on drop.
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock at `path`, waiting up to `wait` for another holder to finish.
    pub fn acquire(path: &Path, wait: Duration) -> Result<Lock> {
        if let Some(dir) = path.parent() {
            crate::files::ensure_private_dir(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(Error::io("cannot open the lock", path))?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(ErrorKind::Locked {
                        path: path.to_path_buf(),
                    }
                    .into());
                }
                Err(TryLockError::Error(e)) => return Err(Error::io("cannot lock", path)(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/lock");
        let first = Lock::acquire(&path, Duration::ZERO).unwrap();
        let err = Lock::acquire(&path, Duration::from_millis(100))
            .err()
            .unwrap();
        assert!(matches!(err.kind(), ErrorKind::Locked { .. }));
        drop(first);
        Lock::acquire(&path, Duration::ZERO).unwrap();
    }
}

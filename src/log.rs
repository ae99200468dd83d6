//! Minimal logging to stderr, with no dependency: `FLEETKEY_LOG=debug` turns on debug lines.
//!
//! An agent (a process started by launchd or systemd, [`crate::agents::AGENT_ENV`] set) writes
//! each line with its time. On Linux its stderr goes to the journal, which keeps and rotates it.
//! On macOS launchd appends stderr to `~/Library/Logs/fleetkey/NAME.log`, which nothing rotates:
//! [`to_rotating_file`] makes the agent cap that file itself (rotated at [`ROTATE_AT`] bytes,
//! [`KEEP`] older files kept as `NAME.log.1` …), reopening it as its own stdout and stderr.
//!
//! Must never: be handed a secret. Callers log commands, paths, key names and counts only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);
static STAMPED: AtomicBool = AtomicBool::new(false);
static ROTATING: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The size at which an agent's log file on macOS is rotated.
pub const ROTATE_AT: u64 = 1 << 20;
/// How many rotated files are kept beside the current one.
pub const KEEP: usize = 3;

/// Reads `FLEETKEY_LOG` once.
pub fn init() {
    let on = std::env::var("FLEETKEY_LOG").is_ok_and(|v| v == "debug");
    DEBUG.store(on, Ordering::Relaxed);
}

/// Prefixes every line with its time (UTC, RFC 3339): for agents, whose lines are read later.
pub fn with_timestamps() {
    STAMPED.store(true, Ordering::Relaxed);
}

/// Caps the file this process's stdout and stderr are appended to (an agent's log under
/// launchd): before each line, a file over [`ROTATE_AT`] is rotated by [`rotate`] and opened
/// anew as stdout and stderr.
pub fn to_rotating_file(path: PathBuf) {
    *ROTATING.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
}

/// Shifts `path` to `path.1`, `path.1` to `path.2` … keeping `keep` old files, when `path` is
/// larger than `cap` bytes. Returns whether it rotated. Pure file operations, so it is tested
/// on any platform.
pub fn rotate(path: &Path, cap: u64, keep: usize) -> std::io::Result<bool> {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size <= cap || keep == 0 {
        return Ok(false);
    }
    let numbered = |n: usize| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        match std::fs::rename(numbered(n), numbered(n + 1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path, numbered(1))?;
    Ok(true)
}

/// Rotates the agent's log when it is due, and points stdout and stderr at the new file.
fn rotate_if_due() {
    let guard = ROTATING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(path) = guard.as_ref() else {
        return;
    };
    if !matches!(rotate(path, ROTATE_AT, KEEP), Ok(true)) {
        return;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Ok(file) = file {
        let _ = rustix::stdio::dup2_stdout(&file);
        let _ = rustix::stdio::dup2_stderr(&file);
    }
}

fn line(level: &str, msg: &str) {
    rotate_if_due();
    let stamp = if STAMPED.load(Ordering::Relaxed) {
        format!("{} ", crate::clock::rfc3339(crate::clock::now_unix()))
    } else {
        String::new()
    };
    let _ = writeln!(std::io::stderr().lock(), "{stamp}fleetkey: {level}{msg}");
}

/// A debug line, printed only when debug logging is on.
pub fn debug(msg: &str) {
    if DEBUG.load(Ordering::Relaxed) {
        line("debug: ", msg);
    }
}

/// An informational line on stderr.
pub fn info(msg: &str) {
    line("", msg);
}

/// A warning on stderr.
pub fn warn(msg: &str) {
    line("warning: ", msg);
}

/// The warnings said since the current cycle began (see [`warn_once_per_cycle`]).
static SAID: Mutex<Option<std::collections::BTreeSet<String>>> = Mutex::new(None);

/// A warning on stderr, unless the same text was said since [`new_cycle`]: each problem once
/// per cycle, however many steps of it run into it.
pub fn warn_once_per_cycle(msg: &str) {
    let fresh = SAID
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Default::default)
        .insert(msg.to_string());
    if fresh {
        warn(msg);
    }
}

/// Starts a new cycle for [`warn_once_per_cycle`]: what was said before may be said again.
pub fn new_cycle() {
    *SAID.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_over_the_cap_rotates_keeping_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("watch.log");
        std::fs::write(&log, b"small").unwrap();
        assert!(!rotate(&log, 10, 2).unwrap());
        for round in 0..4u8 {
            std::fs::write(&log, vec![b'a' + round; 20]).unwrap();
            assert!(rotate(&log, 10, 2).unwrap());
            assert!(!log.exists());
        }
        // The two newest are kept, newest first.
        let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
        assert_eq!(read("watch.log.1"), vec![b'd'; 20]);
        assert_eq!(read("watch.log.2"), vec![b'c'; 20]);
        assert!(!dir.path().join("watch.log.3").exists());
    }
}

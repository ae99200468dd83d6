//! Minimal logging to stderr, with no dependency: `FLEETKEY_LOG=debug` turns on debug lines.
//!
//! Must never: be handed a secret. Callers log commands, paths, key names and counts only.

use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Reads `FLEETKEY_LOG` once.
pub fn init() {
    let on = std::env::var("FLEETKEY_LOG").is_ok_and(|v| v == "debug");
    DEBUG.store(on, Ordering::Relaxed);
}

/// A debug line, printed only when debug logging is on.
pub fn debug(msg: &str) {
    if DEBUG.load(Ordering::Relaxed) {
        eprintln!("fleetkey: debug: {msg}");
    }
}

/// An informational line on stderr.
pub fn info(msg: &str) {
    eprintln!("fleetkey: {msg}");
}

/// A warning on stderr.
pub fn warn(msg: &str) {
    eprintln!("fleetkey: warning: {msg}");
}

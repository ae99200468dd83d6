//! Crash points for the crash-safety tests: when `FLEETKEY_FAULT` names a point, the process
//! kills itself there with SIGKILL, exactly as a power cut or `kill -9` would stop it.
//!
//! Compiled in only with debug assertions (test builds); in a release build [`point`] is empty.

/// Dies with SIGKILL here when `FLEETKEY_FAULT` equals `name` (debug builds only).
#[inline]
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("FLEETKEY_FAULT").is_some_and(|v| v == name) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

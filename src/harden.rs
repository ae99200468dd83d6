//! Process hardening applied before anything else runs: no core dumps (they would hold
//! decrypted secrets), umask 077 (every file fleetkey creates is private unless it says
//! otherwise), and on Linux the process is marked non-dumpable so other processes of the same
//! user cannot read its memory through ptrace or /proc.
//!
//! Must never: fail the command. Each step is best effort and reported only in debug output.

/// The umask the user ran fleetkey with, before [`at_start`] set 077 (0o022 until then).
static USER_UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0o022);

/// The umask the user ran fleetkey with: shared directories fleetkey creates in `$HOME` get
/// the mode the user's own `mkdir` would have given them.
pub fn user_umask() -> u32 {
    USER_UMASK.load(std::sync::atomic::Ordering::Relaxed)
}

/// Applies every hardening step. Called first thing by `main`.
pub fn at_start() {
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // Only the first call sees the user's umask; a second one (tests) sees our own 077.
    static RECORDED: std::sync::Once = std::sync::Once::new();
    RECORDED
        .call_once(|| USER_UMASK.store(old.bits() & 0o777, std::sync::atomic::Ordering::Relaxed));
    let none = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    let _ = rustix::process::setrlimit(rustix::process::Resource::Core, none);
    #[cfg(target_os = "linux")]
    {
        let _ =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn core_dumps_are_off_after_hardening() {
        super::at_start();
        let limit = rustix::process::getrlimit(rustix::process::Resource::Core);
        assert_eq!(limit.current, Some(0));
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        assert_eq!(old.bits(), 0o077);
    }
}

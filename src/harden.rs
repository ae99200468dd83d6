//! Process hardening applied before anything else runs: no core dumps (they would hold
//! decrypted secrets), umask 077 (every file fleetkey creates is private unless it says
//! otherwise), and on Linux the process is marked non-dumpable so other processes of the same
//! user cannot read its memory through ptrace or /proc.
//!
//! Must never: fail the command. Each step is best effort and reported only in debug output.

/// Applies every hardening step. Called first thing by `main`.
pub fn at_start() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
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

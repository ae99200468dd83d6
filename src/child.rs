//! Child processes: an explicit argument list (never a shell), stdin closed, and an environment
//! cleaned down to the variables the program needs.
//!
//! Each caller names its own list (git needs the ssh agent, systemctl the user's bus); this is
//! the one place that builds such a command. Must never: pass a secret in argv or environment.

use std::process::{Command, Stdio};

/// What every child keeps: who and where the user is, and where programs and temp files are.
pub const BASE_ENV: &[&str] = &["HOME", "PATH", "USER", "LOGNAME", "TMPDIR"];

/// `program` with every environment variable dropped but [`BASE_ENV`] and those in `keep`
/// (when set), and stdin closed.
pub fn command(program: &str, keep: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for var in BASE_ENV.iter().chain(keep) {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_named_variables_reach_the_child() {
        let cmd = super::command("true", &["GIT_SSH_COMMAND", "FLEETKEY_SURELY_UNSET_VAR"]);
        let names: Vec<_> = cmd.get_envs().map(|(k, _)| k.to_owned()).collect();
        assert!(
            names
                .iter()
                .all(|k| k == "GIT_SSH_COMMAND" || super::BASE_ENV.iter().any(|b| k == b)),
            "{names:?}"
        );
        assert!(
            names.iter().any(|k| k == "PATH"),
            "PATH is always kept: {names:?}"
        );
    }
}

//! Linux: the systemd user units and the `systemctl --user` commands that (re)load them.
//!
//! Values enter a unit file through systemd's own quoting rules (systemd.syntax(7),
//! systemd.service(7)): each is double-quoted with `\` and `"` backslash-escaped and `%` doubled
//! (specifiers are expanded everywhere). `$` is doubled only in a command's arguments: systemd
//! expands variables there, but not in the executable's path (`systemd-analyze verify` shows a
//! doubled `$` staying doubled in it) nor in `Environment=`. A value a unit file cannot hold (a
//! control character) is refused rather than written.

use super::render::fill;
use super::{Agent, AgentFile, Cmd, RenderInput, Step};
use crate::error::{ErrorKind, Result};

const WATCH_SERVICE: &str = include_str!("../../systemd/fleetkey-watch.service");
const PULL_SERVICE: &str = include_str!("../../systemd/fleetkey-pull.service");
const PULL_TIMER: &str = include_str!("../../systemd/fleetkey-pull.timer");

/// The unit that is enabled and started for the agent.
pub(super) fn main_unit(agent: Agent) -> &'static str {
    match agent {
        Agent::Watch => "fleetkey-watch.service",
        Agent::Pull => "fleetkey-pull.timer",
    }
}

/// The agent's unit files.
pub(super) fn render(
    agent: Agent,
    input: &RenderInput,
    env: &[(String, String)],
) -> Result<Vec<AgentFile>> {
    let exe = quote(&input.exe.to_string_lossy(), Context::Executable)?;
    let mut environment = Vec::new();
    for (key, value) in env {
        environment.push(format!(
            "Environment={}",
            quote(&format!("{key}={value}"), Context::Environment)?
        ));
    }
    let environment = environment.join("\n");
    let poll = input.poll_secs();
    let poll_text = poll.to_string();
    // Let systemd batch wake-ups a little, never by more than a tenth of the interval.
    let accuracy = (poll / 10).clamp(1, 60).to_string();
    let values = [
        ("EXE", exe.as_str()),
        ("ENVIRONMENT", environment.as_str()),
        ("POLL_SECS", poll_text.as_str()),
        ("ACCURACY_SECS", accuracy.as_str()),
    ];
    let unit = |name: &'static str, template: &str| -> Result<AgentFile> {
        Ok(AgentFile {
            agent,
            name,
            bytes: fill(template, &values)?.into_bytes(),
        })
    };
    Ok(match agent {
        Agent::Watch => vec![unit("fleetkey-watch.service", WATCH_SERVICE)?],
        Agent::Pull => vec![
            unit("fleetkey-pull.service", PULL_SERVICE)?,
            unit("fleetkey-pull.timer", PULL_TIMER)?,
        ],
    })
}

/// Where a quoted value goes: a command's arguments expand `$VAR`; its executable path and an
/// `Environment=` line do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// The first word of `ExecStart=`: the program's path.
    Executable,
    /// A later word of `ExecStart=`.
    #[cfg_attr(not(test), allow(dead_code))]
    Argument,
    /// `Environment=`.
    Environment,
}

/// Quotes `value` as one word of a unit file setting.
pub(crate) fn quote(value: &str, context: Context) -> Result<String> {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if context == Context::Argument => out.push_str("$$"),
            c if c.is_control() => {
                return Err(ErrorKind::Refused(format!(
                    "{value:?} holds a control character a systemd unit cannot hold"
                ))
                .into());
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// `systemctl --user ARGS`.
pub(super) fn systemctl(args: &[&str]) -> Cmd {
    let mut all = vec!["--user"];
    all.extend_from_slice(args);
    Cmd::new("systemctl", &all)
}

/// Makes the user manager read the changed unit files; once per install.
pub(super) fn daemon_reload() -> Step {
    Step::Run(systemctl(&["daemon-reload"]))
}

/// Enables and starts the agent. A unit that was installed before is restarted: `enable --now`
/// leaves a running unit on its old definition (the watcher would keep its old command line,
/// the timer its old interval).
pub(super) fn reload_steps(agent: Agent, was_installed: bool) -> Vec<Step> {
    let unit = main_unit(agent);
    if was_installed {
        vec![
            Step::Run(systemctl(&["enable", unit])),
            Step::Run(systemctl(&["restart", unit])),
        ]
    } else {
        vec![Step::Run(systemctl(&["enable", "--now", unit]))]
    }
}

/// Stops and disables both agents (failures ignored: an agent may not be installed). A pull
/// cycle already running is left to finish.
pub(super) fn stop_steps() -> Vec<Step> {
    Agent::ALL
        .into_iter()
        .map(|a| Step::Try(systemctl(&["disable", "--now", main_unit(a)])))
        .collect()
}

//! macOS: the launchd property lists and the `launchctl` commands that (re)load them.
//!
//! Every value is XML-escaped before it enters a template; a value XML cannot hold (a control
//! character) is refused rather than written.

use std::path::{Path, PathBuf};

use super::render::fill;
use super::{Agent, AgentFile, Cmd, RenderInput, Step};
use crate::error::{ErrorKind, Result};

const WATCH: &str = include_str!("../../launchd/dev.fleetkey.watch.plist");
const PULL: &str = include_str!("../../launchd/dev.fleetkey.pull.plist");

/// The job label, also the plist's file name without `.plist`.
pub(super) fn label(agent: Agent) -> &'static str {
    match agent {
        Agent::Watch => "dev.fleetkey.watch",
        Agent::Pull => "dev.fleetkey.pull",
    }
}

fn file_name(agent: Agent) -> &'static str {
    match agent {
        Agent::Watch => "dev.fleetkey.watch.plist",
        Agent::Pull => "dev.fleetkey.pull.plist",
    }
}

/// `~/Library/Logs/fleetkey`.
pub(super) fn log_dir(home: &Path) -> PathBuf {
    home.join("Library/Logs/fleetkey")
}

/// The agent's plist.
pub(super) fn render(
    agent: Agent,
    input: &RenderInput,
    env: &[(String, String)],
) -> Result<AgentFile> {
    let template = match agent {
        Agent::Watch => WATCH,
        Agent::Pull => PULL,
    };
    let mut environment = String::new();
    for (key, value) in env {
        environment.push_str(&format!(
            "\t\t<key>{}</key>\n\t\t<string>{}</string>\n",
            xml_escape(key)?,
            xml_escape(value)?
        ));
    }
    let environment = environment.trim_end_matches('\n');
    let exe = xml_escape(&input.exe.to_string_lossy())?;
    let home = xml_escape(&input.home.to_string_lossy())?;
    let logs = xml_escape(&log_dir(&input.home).to_string_lossy())?;
    let poll = input.poll_secs().to_string();
    let text = fill(
        template,
        &[
            ("EXE", &exe),
            ("HOME", &home),
            ("LOG_DIR", &logs),
            ("ENVIRONMENT", environment),
            ("POLL_SECS", &poll),
        ],
    )?;
    Ok(AgentFile {
        agent,
        name: file_name(agent),
        bytes: text.into_bytes(),
    })
}

/// Escapes `value` for XML character data and attribute values. Characters XML 1.0 cannot
/// hold at all are refused.
pub(crate) fn xml_escape(value: &str) -> Result<String> {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                return Err(ErrorKind::Refused(format!(
                    "{value:?} holds a control character a launchd property list cannot hold"
                ))
                .into());
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `launchctl print gui/UID/LABEL`: succeeds while launchd has the job.
pub(super) fn print_cmd(uid: u32, agent: Agent) -> Cmd {
    Cmd::new("launchctl", &["print", &service(uid, agent)])
}

fn service(uid: u32, agent: Agent) -> String {
    format!("gui/{uid}/{}", label(agent))
}

/// Stops the job and waits until launchd has let go of it (a `bootstrap` before then fails).
pub(super) fn stop_steps(uid: u32, agent: Agent) -> Vec<Step> {
    vec![
        Step::Try(Cmd::new("launchctl", &["bootout", &service(uid, agent)])),
        Step::WaitUntilFails(print_cmd(uid, agent)),
    ]
}

/// Boots the job out (if it was loaded), waits, and bootstraps it from its new plist.
pub(super) fn reload_steps(uid: u32, agent: Agent, dir: &Path) -> Vec<Step> {
    let plist = dir.join(file_name(agent));
    let mut steps = stop_steps(uid, agent);
    steps.push(Step::Run(Cmd::new(
        "launchctl",
        &["bootstrap", &format!("gui/{uid}"), &plist.to_string_lossy()],
    )));
    steps
}

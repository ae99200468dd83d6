//! The cycle's hooks into the agents ([`crate::sync::CycleHooks`]): what a cycle hands up to
//! this layer, through the command that runs it, so that the cycle never imports `agents`.
//!
//! Owns: the desktop notification of conflict copies, re-installing the agents when a cycle
//! brought a new fleet.toml, and the agents' states in the host status. Must never: fail or
//! delay a cycle (each hook is best effort, a failure is logged).

use crate::config::FleetConfig;
use crate::fleet::Machine;
use crate::sync::CycleHooks;
use crate::sync::collect::status::AgentState;
use crate::sync::state::ConflictRecord;

use super::{Platform, notify, runner_from_env};

/// The hooks every command that runs a cycle gives it.
pub struct AgentHooks;

impl CycleHooks for AgentHooks {
    fn conflict_copies(&self, machine: &Machine, copies: &[ConflictRecord]) {
        if let (Ok(platform), Ok(runner)) = (Platform::current(), runner_from_env()) {
            notify::conflict_copies(runner.as_ref(), platform, copies, &machine.paths.home);
        }
    }

    fn cycle_done(&self, machine: &Machine, before: &FleetConfig) {
        refresh(machine, before);
    }

    fn agent_states(&self, machine: &Machine, fleet: &FleetConfig) -> Vec<AgentState> {
        agent_states(machine, fleet)
    }
}

/// Re-runs the agents' install-if-changed when the cycle brought a new fleet.toml (a new `poll`
/// reaches every machine's puller) or an earlier reload is still owed. Agents the user did not
/// install stay uninstalled; a failure is a warning, never a failed cycle.
fn refresh(machine: &Machine, before: &FleetConfig) {
    let after = match machine.fleet_config() {
        Ok(f) => f,
        Err(_) => return,
    };
    let owed = machine.paths.state_dir.join("agents.pending").exists();
    if &after == before && !owed {
        return;
    }
    match super::install_if_changed(&machine.paths, &after) {
        Ok(report) if report.changed() => crate::log::info(&format!(
            "agents updated for the new fleet.toml: {:?}",
            report.reloaded
        )),
        Ok(_) => {}
        Err(e) => crate::log::warn(&format!("cannot update the background agents: {e}")),
    }
}

/// The agents as a cycle can tell without asking the service manager (no command runs): their
/// files installed, and for the watcher whether the process that marked itself ready
/// (`watch-ready`) still runs.
fn agent_states(machine: &Machine, fleet: &FleetConfig) -> Vec<AgentState> {
    let watcher_runs =
        std::fs::read_to_string(machine.paths.state_dir.join(crate::sync::watch::READY_FILE))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
            .map(|pid| rustix::process::test_kill_process(pid).is_ok());
    super::current_file_status(&machine.paths, fleet)
        .map(|list| {
            list.into_iter()
                .map(|a| {
                    let agent = serde_json::to_value(a.agent)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    let loaded = if agent == "watch" {
                        Some(watcher_runs.unwrap_or(false))
                    } else {
                        None
                    };
                    AgentState {
                        agent,
                        installed: a.installed,
                        loaded,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

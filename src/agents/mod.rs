//! The background agents: the watcher (`fleetkey watch`, always running) and the puller
//! (`fleetkey pull`, every `poll` of fleet.toml), as launchd jobs on macOS and systemd user units
//! on Linux.
//!
//! Owns: rendering the embedded templates (`launchd/` and `systemd/` at the top of the source
//! tree) with this machine's absolute paths, writing them only when their bytes changed, and
//! reloading only the agents whose files changed. Every platform command (`launchctl`,
//! `systemctl`) goes through one [`Runner`], so tests see the exact command lines.
//!
//! A reload that fails is not forgotten: the agents about to be reloaded are listed in
//! `~/.local/state/fleetkey/agents.pending` before their files are written, and taken off only
//! once their reload succeeded, so the next install retries them even though the bytes on disk
//! already match.
//!
//! Must never: run a shell, write a file non-atomically, reload an agent whose files did not
//! change, or (in [`install_if_changed`]) install an agent the user has not installed.

mod hooks;
mod launchd;
pub mod notify;
mod render;
mod runner;
mod systemd;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::FleetConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::files;
use crate::paths::Paths;

pub use hooks::AgentHooks;
pub use render::{AgentFile, RenderInput, agents_dir, log_dir, render, system_path};
pub use runner::{RunOutput, Runner, runner_from_env};

/// The environment variable the agents' own processes carry: `watch` or `pull`.
pub const AGENT_ENV: &str = "FLEETKEY_AGENT";

/// Where an agent's files live and how it is (re)loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// launchd user agents in `~/Library/LaunchAgents`.
    Macos,
    /// systemd user units in `$XDG_CONFIG_HOME/systemd/user`.
    Linux,
}

impl Platform {
    /// The platform fleetkey runs on. Debug builds honour `FLEETKEY_AGENTS_PLATFORM=macos|linux`,
    /// a test hook so both platforms' install paths run end to end on one machine.
    pub fn current() -> Result<Platform> {
        #[cfg(debug_assertions)]
        if let Ok(forced) = std::env::var("FLEETKEY_AGENTS_PLATFORM") {
            return Platform::from_name(&forced).ok_or_else(|| {
                Error::refused(format!(
                    "FLEETKEY_AGENTS_PLATFORM={forced:?}: use macos or linux"
                ))
            });
        }
        Platform::from_name(std::env::consts::OS).ok_or_else(|| {
            ErrorKind::Refused(format!(
                "background agents are supported on macOS and Linux, not {}",
                std::env::consts::OS
            ))
            .hint("run `fleetkey pull --every 60s` and `fleetkey watch` from your own service manager")
        })
    }

    fn from_name(name: &str) -> Option<Platform> {
        match name {
            "macos" => Some(Platform::Macos),
            "linux" => Some(Platform::Linux),
            _ => None,
        }
    }

    /// The name used in messages: `macos` or `linux`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Macos => "macos",
            Platform::Linux => "linux",
        }
    }
}

/// One of the two background agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Agent {
    /// `fleetkey watch`: always running, a cycle after each settled change.
    Watch,
    /// `fleetkey pull`: one cycle every `poll`.
    Pull,
}

impl Agent {
    /// Both agents, in the order they are installed.
    pub const ALL: [Agent; 2] = [Agent::Watch, Agent::Pull];

    /// `watch` or `pull`: the subcommand the agent runs.
    pub fn name(self) -> &'static str {
        match self {
            Agent::Watch => "watch",
            Agent::Pull => "pull",
        }
    }

    fn from_name(name: &str) -> Option<Agent> {
        Agent::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A platform command, as run through the [`Runner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// The program (looked up on PATH).
    pub program: &'static str,
    /// Its arguments.
    pub args: Vec<String>,
}

impl Cmd {
    fn new(program: &'static str, args: &[&str]) -> Cmd {
        Cmd {
            program,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn run(&self, runner: &dyn Runner) -> Result<RunOutput> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        runner.run(self.program, &args)
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&runner::command_line(self.program, &self.args))
    }
}

/// One step of a reload or removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run the command; a failure stops the install.
    Run(Cmd),
    /// Run the command; a failure is expected when the agent is not loaded, and ignored.
    Try(Cmd),
    /// Run the command until it fails (the agent is gone), a bounded number of times.
    WaitUntilFails(Cmd),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Run(c) => write!(f, "{c}"),
            Step::Try(c) => write!(f, "{c} (a failure is ignored)"),
            Step::WaitUntilFails(c) => write!(f, "{c} (repeated until it fails)"),
        }
    }
}

/// How long [`Step::WaitUntilFails`] waits: `launchctl bootout` returns before launchd has
/// finished removing the job, and a `bootstrap` before then fails.
const WAIT_TRIES: u32 = 50;
const WAIT_PAUSE: Duration = Duration::from_millis(100);

fn run_step(step: &Step, runner: &dyn Runner) -> Result<()> {
    match step {
        Step::Run(cmd) => {
            let out = cmd.run(runner)?;
            if !out.success {
                return Err(
                    ErrorKind::Refused(format!("`{cmd}` failed: {}", out.stderr.trim())).into(),
                );
            }
        }
        Step::Try(cmd) => {
            let out = cmd.run(runner)?;
            if !out.success {
                crate::log::debug(&format!("`{cmd}` failed (ignored): {}", out.stderr.trim()));
            }
        }
        Step::WaitUntilFails(cmd) => {
            for attempt in 0..WAIT_TRIES {
                if !cmd.run(runner)?.success {
                    return Ok(());
                }
                if attempt + 1 < WAIT_TRIES {
                    std::thread::sleep(WAIT_PAUSE);
                }
            }
            return Err(ErrorKind::Refused(format!(
                "`{cmd}` still succeeds {} s after the agent was stopped",
                (WAIT_PAUSE * WAIT_TRIES).as_secs()
            ))
            .into());
        }
    }
    Ok(())
}

/// Everything an agents operation needs: where, for which platform, and how commands run.
pub struct Setup<'a> {
    /// The platform whose agents are handled.
    pub platform: Platform,
    /// This machine's paths.
    pub paths: &'a Paths,
    /// What the templates are filled with.
    pub input: RenderInput,
    /// The one place platform commands run.
    pub runner: &'a dyn Runner,
    /// The user id (`launchctl`'s `gui/UID` domain).
    pub uid: u32,
    /// The agent this process runs as, if any (from [`AGENT_ENV`]).
    pub running_as: Option<Agent>,
}

impl<'a> Setup<'a> {
    /// A setup for this process: its platform, uid and agent identity.
    pub fn new(paths: &'a Paths, fleet: &FleetConfig, runner: &'a dyn Runner) -> Result<Setup<'a>> {
        Ok(Setup {
            platform: Platform::current()?,
            paths,
            input: RenderInput::for_machine(paths, fleet)?,
            runner,
            uid: rustix::process::getuid().as_raw(),
            running_as: std::env::var(AGENT_ENV)
                .ok()
                .and_then(|n| Agent::from_name(&n)),
        })
    }

    fn dir(&self) -> PathBuf {
        agents_dir(self.platform, self.paths)
    }

    fn pending_file(&self) -> PathBuf {
        self.paths.state_dir.join("agents.pending")
    }

    fn reload_steps(&self, agent: Agent, was_installed: bool) -> Vec<Step> {
        match self.platform {
            Platform::Macos => launchd::reload_steps(self.uid, agent, &self.dir()),
            Platform::Linux => systemd::reload_steps(agent, was_installed),
        }
    }
}

/// Which agents [`install`] handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Both agents (`fleetkey agents install`).
    All,
    /// Only agents that are installed already (a sync cycle never installs one by itself).
    Installed,
}

/// What an install did, or with `dry_run` would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallReport {
    /// The platform installed for.
    pub platform: Platform,
    /// Nothing was changed; `written` and `commands` say what would have been.
    pub dry_run: bool,
    /// The files written (their rendered bytes differed from what was there).
    pub written: Vec<PathBuf>,
    /// The agents reloaded.
    pub reloaded: Vec<Agent>,
    /// Agents whose files were written but whose reload waits for another process: on macOS a
    /// launchd job cannot boot itself out and back in (it would be killed half way).
    pub deferred: Vec<Agent>,
    /// The platform commands run, in order.
    pub commands: Vec<String>,
}

impl InstallReport {
    /// Whether anything was (or would be) written or reloaded.
    pub fn changed(&self) -> bool {
        !self.written.is_empty() || !self.reloaded.is_empty() || !self.deferred.is_empty()
    }
}

/// Writes the rendered files whose bytes differ from those installed, then reloads exactly the
/// agents that changed (or whose earlier reload failed). With `dry_run` nothing is written or
/// run; the report says what would be.
pub fn install(setup: &Setup<'_>, scope: Scope, dry_run: bool) -> Result<InstallReport> {
    let dir = setup.dir();
    let files = render(setup.platform, &setup.input)?;
    let pending = read_pending(&setup.pending_file())?;
    let mut report = InstallReport {
        platform: setup.platform,
        dry_run,
        written: Vec::new(),
        reloaded: Vec::new(),
        deferred: Vec::new(),
        commands: Vec::new(),
    };

    // Per agent: its files to write, whether any of its files existed.
    let mut changed: Vec<(Agent, bool)> = Vec::new();
    let mut writes: Vec<(PathBuf, &[u8])> = Vec::new();
    for agent in Agent::ALL {
        let mine: Vec<&AgentFile> = files.iter().filter(|f| f.agent == agent).collect();
        let mut installed = false;
        let mut differs = false;
        for f in &mine {
            let path = dir.join(f.name);
            match read_existing(&path)? {
                Some(bytes) => {
                    installed = true;
                    if bytes != f.bytes {
                        differs = true;
                        writes.push((path, &f.bytes));
                    }
                }
                None => {
                    differs = true;
                    writes.push((path, &f.bytes));
                }
            }
        }
        let was_pending = pending.contains(&agent);
        if scope == Scope::Installed && !installed && !was_pending {
            writes.retain(|(p, _)| !mine.iter().any(|f| dir.join(f.name) == *p));
            continue;
        }
        if differs || was_pending {
            changed.push((agent, installed));
        }
    }

    report.written = writes.iter().map(|(p, _)| p.clone()).collect();
    let mut steps: Vec<(Agent, Vec<Step>)> = Vec::new();
    let mut needs_daemon_reload = false;
    for &(agent, was_installed) in &changed {
        if setup.platform == Platform::Macos && setup.running_as == Some(agent) {
            report.deferred.push(agent);
            continue;
        }
        needs_daemon_reload = true;
        steps.push((agent, setup.reload_steps(agent, was_installed)));
    }
    let prelude: Vec<Step> = match setup.platform {
        Platform::Linux if needs_daemon_reload => vec![systemd::daemon_reload()],
        _ => Vec::new(),
    };

    if dry_run {
        report.commands = prelude
            .iter()
            .chain(steps.iter().flat_map(|(_, s)| s))
            .map(Step::to_string)
            .collect();
        report.reloaded = steps.iter().map(|(a, _)| *a).collect();
        return Ok(report);
    }
    if changed.is_empty() {
        return Ok(report);
    }

    // Mark first, write, reload, unmark: an interrupted install is retried by the next one.
    let mut still_pending: Vec<Agent> = changed.iter().map(|(a, _)| *a).collect();
    write_pending(setup, &still_pending)?;
    files::ensure_dir(&dir)?;
    if setup.platform == Platform::Macos {
        files::ensure_dir(&log_dir(setup.paths))?;
    }
    for (path, bytes) in &writes {
        files::write_atomic(path, bytes, 0o644)?;
    }
    let recorder = Recorder {
        inner: setup.runner,
        lines: std::cell::RefCell::new(Vec::new()),
    };
    let mut result = Ok(());
    for step in &prelude {
        result = run_step(step, &recorder);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        for (agent, agent_steps) in &steps {
            result = agent_steps.iter().try_for_each(|s| run_step(s, &recorder));
            if result.is_err() {
                break;
            }
            report.reloaded.push(*agent);
            still_pending.retain(|a| a != agent);
        }
    }
    report.commands = recorder.lines.into_inner();
    write_pending(setup, &still_pending)?;
    result.map_err(|e| e.hint(reload_hint(setup)))?;
    Ok(report)
}

/// What to check when a reload failed; the files are written and the reload is retried.
fn reload_hint(setup: &Setup<'_>) -> String {
    let check = match setup.platform {
        Platform::Macos => format!(
            "check `launchctl print gui/{}/dev.fleetkey.watch` and the logs in {}; a job turned off with `launchctl disable` needs `launchctl enable` first",
            setup.uid,
            log_dir(setup.paths).display()
        ),
        Platform::Linux => "check that your user's systemd runs (`systemctl --user status`; without a login session, `loginctl enable-linger`)".to_string(),
    };
    format!(
        "{check}; the files are in place and the next `fleetkey agents install` retries the reload"
    )
}

/// Reinstalls the agents already installed on this machine when their rendered files changed
/// (a new `poll` in fleet.toml, a moved binary, a new template), reloading only those.
///
/// The sync cycle calls this after it applied a fleet.toml change, holding the cycle lock (this
/// function does not take it); it is cheap (a render and a few small reads) when nothing
/// changed. Agents the user has not installed stay uninstalled. On macOS an agent does not
/// reload itself (launchd would kill it half way): the report lists it as deferred, and the
/// next call from another process (the other agent, or `fleetkey agents install`) reloads it.
pub fn install_if_changed(paths: &Paths, fleet: &FleetConfig) -> Result<InstallReport> {
    let runner = runner_from_env()?;
    let setup = Setup::new(paths, fleet, runner.as_ref())?;
    install(&setup, Scope::Installed, false)
}

/// When this process runs as an agent ([`AGENT_ENV`] set): its log lines get their time, and
/// on macOS (chosen at run time) its log file under [`log_dir`] is capped by rotation.
pub fn set_up_logging() {
    let Some(agent) = std::env::var(AGENT_ENV)
        .ok()
        .and_then(|a| Agent::from_name(&a))
    else {
        return;
    };
    crate::log::with_timestamps();
    if let (Ok(Platform::Macos), Ok(paths)) = (Platform::current(), Paths::from_env()) {
        crate::log::to_rotating_file(agent_log_file(Platform::Macos, &paths, agent));
    }
}

/// The file an agent's output is appended to on macOS (launchd's StandardErrorPath).
pub fn agent_log_file(platform: Platform, paths: &Paths, agent: Agent) -> PathBuf {
    debug_assert_eq!(platform, Platform::Macos, "Linux agents log to the journal");
    log_dir(paths).join(format!("{}.log", agent.name()))
}

/// Each agent's state on this machine, for `fleetkey status` and `doctor`: the platform it runs
/// on, the runner of this process, fleet.toml's settings.
pub fn current_status(paths: &Paths, fleet: &FleetConfig) -> Result<Vec<AgentStatus>> {
    let runner = runner_from_env()?;
    let setup = Setup::new(paths, fleet, runner.as_ref())?;
    status(&setup)
}

/// Each agent: installed, up to date with the current render; `loaded` left unknown, as no
/// service manager is asked (what a sync cycle reports about itself, running no command).
pub fn current_file_status(paths: &Paths, fleet: &FleetConfig) -> Result<Vec<AgentStatus>> {
    let runner = runner_from_env()?;
    let setup = Setup::new(paths, fleet, runner.as_ref())?;
    file_status(&setup)
}

/// What an uninstall removed and ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UninstallReport {
    /// Nothing was changed; the lists say what would have been.
    pub dry_run: bool,
    /// The files removed.
    pub removed: Vec<PathBuf>,
    /// The platform commands run, in order.
    pub commands: Vec<String>,
    /// The calls that failed for another reason than the agent not being loaded, each with
    /// what the service manager said: the agents may still run.
    pub failed: Vec<String>,
}

/// Whether a failed stop says only that the agent was not loaded (nothing to stop).
fn not_loaded(stderr: &str) -> bool {
    [
        "not loaded",
        "does not exist",
        "No such process",
        "Could not find service",
        "not found",
    ]
    .iter()
    .any(|s| stderr.contains(s))
}

/// Stops and disables both agents and removes their files.
pub fn uninstall(setup: &Setup<'_>, dry_run: bool) -> Result<UninstallReport> {
    let dir = setup.dir();
    let files = render(setup.platform, &setup.input)?;
    let removed: Vec<PathBuf> = files
        .iter()
        .map(|f| dir.join(f.name))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    let mut steps: Vec<Step> = match setup.platform {
        Platform::Macos => Agent::ALL
            .into_iter()
            .flat_map(|a| launchd::stop_steps(setup.uid, a))
            .collect(),
        Platform::Linux => systemd::stop_steps(),
    };
    // Stopping is best effort: the files go whatever the service manager says (it may not even
    // run), and nothing is left to retry.
    let after: Vec<Step> = match setup.platform {
        Platform::Linux if !removed.is_empty() => match systemd::daemon_reload() {
            Step::Run(cmd) => vec![Step::Try(cmd)],
            other => vec![other],
        },
        _ => Vec::new(),
    };
    if dry_run {
        steps.extend(after);
        return Ok(UninstallReport {
            dry_run,
            removed,
            commands: steps.iter().map(Step::to_string).collect(),
            failed: Vec::new(),
        });
    }
    let recorder = Recorder {
        inner: setup.runner,
        lines: std::cell::RefCell::new(Vec::new()),
    };
    write_pending(setup, &[])?;
    let mut failed = Vec::new();
    let mut attempt = |step: &Step| match step {
        Step::Try(cmd) | Step::Run(cmd) => match cmd.run(&recorder) {
            Ok(out) if out.success || not_loaded(&out.stderr) => {}
            Ok(out) => failed.push(format!("`{cmd}`: {}", out.stderr.trim())),
            Err(e) => failed.push(format!("`{cmd}`: {}", crate::error::chain(&e))),
        },
        other => {
            if let Err(e) = run_step(other, &recorder) {
                failed.push(e.to_string());
            }
        }
    };
    for step in &steps {
        attempt(step);
    }
    for path in &removed {
        std::fs::remove_file(path).map_err(Error::io("cannot remove", path))?;
    }
    for step in &after {
        attempt(step);
    }
    Ok(UninstallReport {
        dry_run,
        removed,
        commands: recorder.lines.into_inner(),
        failed,
    })
}

/// One agent's state on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentStatus {
    /// The agent.
    pub agent: Agent,
    /// Its files.
    pub files: Vec<PathBuf>,
    /// Every one of its files is there.
    pub installed: bool,
    /// Its files hold exactly what `agents install` would write now.
    pub up_to_date: bool,
    /// launchd has the job / systemd reports the unit active; `None` when that could not be
    /// asked (e.g. no user service manager is reachable).
    pub loaded: Option<bool>,
    /// systemd: the unit is enabled; always `None` on macOS (launchd has no separate notion).
    pub enabled: Option<bool>,
    /// When `loaded` is unknown: the command asked and what it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
    /// The fleetkey binary the installed files run (`None` when not installed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<PathBuf>,
}

/// Each agent: installed, up to date with the current render, and the binary its files run;
/// `loaded` left unknown, as no service manager is asked.
pub fn file_status(setup: &Setup<'_>) -> Result<Vec<AgentStatus>> {
    let dir = setup.dir();
    let files = render(setup.platform, &setup.input)?;
    let mut out = Vec::new();
    for agent in Agent::ALL {
        let mut st = AgentStatus {
            agent,
            files: Vec::new(),
            installed: true,
            up_to_date: true,
            loaded: None,
            enabled: None,
            unknown: None,
            runs: None,
        };
        for f in files.iter().filter(|f| f.agent == agent) {
            let path = dir.join(f.name);
            match read_existing(&path)? {
                Some(bytes) => {
                    st.up_to_date &= bytes == f.bytes;
                    if st.runs.is_none() {
                        st.runs =
                            render::recorded_exe(setup.platform, &String::from_utf8_lossy(&bytes));
                    }
                }
                None => {
                    st.installed = false;
                    st.up_to_date = false;
                }
            }
            st.files.push(path);
        }
        out.push(st);
    }
    Ok(out)
}

/// Each agent: installed, up to date with the current render, loaded.
pub fn status(setup: &Setup<'_>) -> Result<Vec<AgentStatus>> {
    let mut out = file_status(setup)?;
    for st in &mut out {
        let agent = st.agent;
        // An answer only when the service manager gave one: a command that could not run, or
        // (systemctl) one that printed no state because the manager is unreachable, is unknown.
        match setup.platform {
            Platform::Macos => {
                let cmd = launchd::print_cmd(setup.uid, agent);
                match cmd.run(setup.runner) {
                    Ok(o) => st.loaded = Some(o.success),
                    Err(e) => st.unknown = Some(format!("`{cmd}`: {}", crate::error::chain(&e))),
                }
            }
            Platform::Linux => {
                let unit = systemd::main_unit(agent);
                let state = |query: &str, yes: &str| -> std::result::Result<bool, String> {
                    let cmd = systemd::systemctl(&[query, unit]);
                    let out = cmd
                        .run(setup.runner)
                        .map_err(|e| format!("`{cmd}`: {}", crate::error::chain(&e)))?;
                    let word = out.stdout.trim();
                    if word.is_empty() {
                        Err(format!("`{cmd}` said: {}", out.stderr.trim()))
                    } else {
                        Ok(word == yes)
                    }
                };
                match state("is-active", "active") {
                    Ok(v) => st.loaded = Some(v),
                    Err(why) => st.unknown = Some(why),
                }
                st.enabled = state("is-enabled", "enabled").ok();
            }
        }
    }
    Ok(out)
}

/// A runner that keeps the command lines it ran, for the report.
struct Recorder<'a> {
    inner: &'a dyn Runner,
    lines: std::cell::RefCell<Vec<String>>,
}

impl Runner for Recorder<'_> {
    fn run(&self, program: &str, args: &[&str]) -> Result<RunOutput> {
        let args_owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.lines
            .borrow_mut()
            .push(runner::command_line(program, &args_owned));
        self.inner.run(program, args)
    }
}

/// The file's bytes, or `None` when it does not exist.
fn read_existing(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read", path)(e)),
    }
}

fn read_pending(path: &Path) -> Result<Vec<Agent>> {
    let bytes = read_existing(path)?.unwrap_or_default();
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| Agent::from_name(l.trim()))
        .collect())
}

fn write_pending(setup: &Setup<'_>, agents: &[Agent]) -> Result<()> {
    let path = setup.pending_file();
    if agents.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("cannot remove", &path)(e))
            }
            _ => Ok(()),
        };
    }
    files::ensure_private_dir(&setup.paths.state_dir)?;
    let text: String = agents.iter().map(|a| format!("{a}\n")).collect();
    files::write_atomic(&path, text.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests;

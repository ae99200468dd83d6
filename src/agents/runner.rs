//! The one place `launchctl` and `systemctl` run: [`SystemRunner`] for real, [`RecordingRunner`]
//! for tests.
//!
//! Must never: run a shell, or pass the user's whole environment on (only what the service
//! managers need to find the user's session).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};

/// What a platform command did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunOutput {
    /// It exited 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs platform commands. Every `launchctl` and `systemctl` call of fleetkey goes through one.
pub trait Runner {
    /// Runs `program` with `args` (no shell) and returns what it did; an error only when it
    /// could not be started.
    fn run(&self, program: &str, args: &[&str]) -> Result<RunOutput>;

    /// Starts `program` with `args` and returns at once, never waiting for it (a desktop
    /// notification must never hold up a sync). By default, [`Runner::run`].
    fn spawn(&self, program: &str, args: &[&str]) -> Result<()> {
        self.run(program, args).map(|_| ())
    }
}

/// Environment variables platform commands keep: `systemctl --user` finds the user's service
/// manager through `XDG_RUNTIME_DIR` or `DBUS_SESSION_BUS_ADDRESS`.
const KEPT_ENV: &[&str] = &["XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"];

/// Runs commands for real, with a cleaned environment and stdin closed.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, program: &str, args: &[&str]) -> Result<RunOutput> {
        let mut cmd = crate::child::command(program, KEPT_ENV);
        cmd.env("LC_ALL", "C").env("SYSTEMD_PAGER", "").args(args);
        crate::log::debug(&format!(
            "running {}",
            command_line(
                program,
                &args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
            )
        ));
        let out = cmd.output().map_err(|source| ErrorKind::Spawn {
            program: program.into(),
            source,
        })?;
        Ok(RunOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn spawn(&self, program: &str, args: &[&str]) -> Result<()> {
        let mut cmd = crate::child::command(program, KEPT_ENV);
        cmd.env("LC_ALL", "C")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().map_err(|source| ErrorKind::Spawn {
            program: program.into(),
            source,
        })?;
        // Reaped in the background, so a long-running watcher leaves no zombie.
        std::thread::spawn(move || child.wait());
        Ok(())
    }
}

/// Runs nothing: records each command line, in memory and optionally appended to a file, and
/// answers as a service manager with nothing loaded would: `launchctl print` fails as for an
/// unknown service (so a wait after `bootout` ends at once), `systemctl is-active` says
/// `inactive` and `is-enabled` says `disabled` (both failing, as systemctl does), commands that
/// start with one of the prefixes given to [`RecordingRunner::failing`] fail, and every other
/// command succeeds with no output.
#[derive(Debug, Default)]
pub struct RecordingRunner {
    lines: Mutex<Vec<String>>,
    file: Option<PathBuf>,
    failing: Vec<String>,
}

impl RecordingRunner {
    /// A recorder that keeps the command lines in memory.
    #[cfg(test)]
    pub fn new() -> RecordingRunner {
        RecordingRunner::default()
    }

    /// A recorder that also appends each command line to `file` (the debug builds' test hook).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub fn to_file(file: PathBuf) -> RecordingRunner {
        RecordingRunner {
            file: Some(file),
            ..RecordingRunner::default()
        }
    }

    /// Makes commands whose line starts with `prefix` fail.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub fn failing(mut self, prefix: &str) -> RecordingRunner {
        self.failing.push(prefix.to_string());
        self
    }

    /// The command lines recorded so far.
    #[cfg(test)]
    pub fn commands(&self) -> Vec<String> {
        self.lines.lock().expect("recorder lock").clone()
    }

    /// Forgets the command lines recorded so far.
    #[cfg(test)]
    pub fn clear(&self) {
        self.lines.lock().expect("recorder lock").clear();
    }
}

impl Runner for RecordingRunner {
    fn run(&self, program: &str, args: &[&str]) -> Result<RunOutput> {
        let line = command_line(
            program,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        if let Some(file) = &self.file {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .and_then(|mut f| writeln!(f, "{line}"))
                .map_err(Error::io("cannot record to", file))?;
        }
        self.lines.lock().expect("recorder lock").push(line.clone());
        if self.failing.iter().any(|p| line.starts_with(p.as_str())) {
            return Ok(RunOutput {
                success: false,
                stdout: String::new(),
                stderr: "recorded failure".into(),
            });
        }
        let answer = |success: bool, stdout: &str, stderr: &str| RunOutput {
            success,
            stdout: stdout.into(),
            stderr: stderr.into(),
        };
        Ok(match (program, args) {
            ("launchctl", ["print", ..]) => answer(false, "", "Could not find service"),
            ("systemctl", ["--user", "is-active", ..]) => answer(false, "inactive\n", ""),
            ("systemctl", ["--user", "is-enabled", ..]) => answer(false, "disabled\n", ""),
            _ => answer(true, "", ""),
        })
    }
}

/// The runner for this process: the real one, or in debug builds the recorder named by
/// `FLEETKEY_AGENTS_RUNNER=record:FILE`, failing the commands that start with one of the
/// `;`-separated prefixes in `FLEETKEY_AGENTS_FAIL`. Those variables are test hooks, so the
/// end-to-end tests can assert the exact commands of the real binary; release builds ignore
/// them.
pub fn runner_from_env() -> Result<Box<dyn Runner>> {
    #[cfg(debug_assertions)]
    if let Ok(spec) = std::env::var("FLEETKEY_AGENTS_RUNNER") {
        return match spec.strip_prefix("record:") {
            Some(file) if !file.is_empty() => {
                let mut rec = RecordingRunner::to_file(file.into());
                for prefix in std::env::var("FLEETKEY_AGENTS_FAIL")
                    .unwrap_or_default()
                    .split(';')
                {
                    if !prefix.is_empty() {
                        rec = rec.failing(prefix);
                    }
                }
                Ok(Box::new(rec))
            }
            _ => Err(ErrorKind::Refused(format!(
                "FLEETKEY_AGENTS_RUNNER={spec:?}: use record:FILE"
            ))
            .into()),
        };
    }
    Ok(Box::new(SystemRunner))
}

/// A command line for messages and records: arguments that a shell would split or expand are
/// single-quoted.
pub(crate) fn command_line(program: &str, args: &[String]) -> String {
    let mut line = program.to_string();
    for arg in args {
        line.push(' ');
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
        if plain {
            line.push_str(arg);
        } else {
            let _ = write!(line, "'{}'", arg.replace('\'', r"'\''"));
        }
    }
    line
}

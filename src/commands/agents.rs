//! `fleetkey agents install | uninstall | status | print`: the command-line face of
//! [`crate::agents`].

use std::path::{Path, PathBuf};

use crate::agents::{self, Platform, RenderInput, Scope, Setup};
use crate::config::{FleetConfig, MachineConfig};
use crate::error::{ErrorKind, Result};
use crate::files;
use crate::fleet::LOCK_WAIT;
use crate::lock::Lock;
use crate::output::stdout as write_stdout;
use crate::paths::Paths;

/// This machine's paths and fleet.toml; the defaults when the machine is not set up, unless
/// `required`.
fn load(required: bool) -> Result<(Paths, FleetConfig)> {
    let paths = Paths::from_env()?;
    match MachineConfig::load(&paths.config_file()) {
        Ok(config) => {
            // The fleet.toml in force: the last valid one when the clone's is not.
            let machine = crate::fleet::Machine {
                paths: paths.clone(),
                config,
            };
            let fleet = machine.fleet_config()?;
            Ok((paths, fleet))
        }
        Err(e) if !required && matches!(e.kind(), ErrorKind::NotInitialized { .. }) => {
            Ok((paths, FleetConfig::default()))
        }
        Err(e) => Err(e),
    }
}

/// The cycle lock, so no agent is stopped in the middle of a cycle; none for a dry run.
fn lock_unless(dry_run: bool, paths: &Paths) -> Result<Option<Lock>> {
    if dry_run {
        return Ok(None);
    }
    Lock::acquire(&paths.lock_file(), LOCK_WAIT).map(Some)
}

/// `agents install [--dry-run]`.
pub fn install(dry_run: bool) -> Result<()> {
    let (paths, fleet) = load(true)?;
    let runner = agents::runner_from_env()?;
    let setup = Setup::new(&paths, &fleet, runner.as_ref())?;
    // A running cycle finishes before its agent is stopped for the reload.
    let _lock = lock_unless(dry_run, &paths)?;
    let report = agents::install(&setup, Scope::All, dry_run)?;
    let mut text = String::new();
    let (write, run) = if dry_run {
        ("would write", "would run")
    } else {
        ("wrote", "ran")
    };
    for path in &report.written {
        text.push_str(&format!("{write} {}\n", path.display()));
    }
    for cmd in &report.commands {
        text.push_str(&format!("{run} {cmd}\n"));
    }
    if !report.changed() {
        text.push_str(&format!(
            "agents ({}) are up to date; nothing written, nothing reloaded\n",
            report.platform.as_str()
        ));
    } else if !report.reloaded.is_empty() {
        let names: Vec<&str> = report.reloaded.iter().map(|a| a.name()).collect();
        let verb = if dry_run { "would reload" } else { "reloaded" };
        text.push_str(&format!("{verb}: {}\n", names.join(", ")));
    }
    write_stdout(text.as_bytes())
}

/// `agents uninstall [--dry-run]`.
pub fn uninstall(dry_run: bool) -> Result<()> {
    let (paths, fleet) = load(false)?;
    let runner = agents::runner_from_env()?;
    let setup = Setup::new(&paths, &fleet, runner.as_ref())?;
    let _lock = lock_unless(dry_run, &paths)?;
    let report = agents::uninstall(&setup, dry_run)?;
    let (remove, run) = if dry_run {
        ("would remove", "would run")
    } else {
        ("removed", "ran")
    };
    let mut text = String::new();
    for cmd in &report.commands {
        // A call the service manager refused is not "ran": the error below lists why.
        let failed = report
            .failed
            .iter()
            .any(|f| f.starts_with(&format!("`{cmd}`")));
        let verb = if failed { "failed:" } else { run };
        text.push_str(&format!("{verb} {cmd}\n"));
    }
    for path in &report.removed {
        text.push_str(&format!("{remove} {}\n", path.display()));
    }
    if report.removed.is_empty() {
        text.push_str("no agent files were installed\n");
    }
    write_stdout(text.as_bytes())?;
    if !report.failed.is_empty() {
        return Err(ErrorKind::Refused(format!(
            "{} service manager call(s) failed, so the agents may still be running: {}",
            report.failed.len(),
            report.failed.join("; ")
        ))
        .hint(match setup.platform {
            Platform::Linux => "the user service manager must be reachable (run this in your login session, or `loginctl enable-linger $USER`); check with `systemctl --user status fleetkey-watch.service`, then run `fleetkey agents uninstall` again",
            Platform::Macos => "run this in your GUI login session; check with `launchctl print gui/$(id -u)/dev.fleetkey.watch`, then run `fleetkey agents uninstall` again",
        }));
    }
    Ok(())
}

/// `agents status [--json]`.
pub fn status(json: bool) -> Result<()> {
    let (paths, fleet) = load(false)?;
    let runner = agents::runner_from_env()?;
    let setup = Setup::new(&paths, &fleet, runner.as_ref())?;
    let states = agents::status(&setup)?;
    let text = if json {
        let mut t = serde_json::to_string_pretty(&serde_json::json!({
            "platform": setup.platform,
            "agents": states,
        }))
        .expect("status serializes");
        t.push('\n');
        t
    } else {
        let yes_no = |v: Option<bool>, yes: &str, no: &str| match v {
            Some(true) => yes.to_string(),
            Some(false) => no.to_string(),
            None => format!("{yes}: unknown"),
        };
        let mut t = String::new();
        for s in &states {
            let mut parts = vec![];
            if s.installed {
                parts.push("installed".to_string());
                parts.push(
                    if s.up_to_date {
                        "up to date"
                    } else {
                        "out of date (run `fleetkey agents install`)"
                    }
                    .to_string(),
                );
            } else {
                parts.push("not installed".to_string());
            }
            parts.push(yes_no(s.loaded, "loaded", "not loaded"));
            if s.enabled.is_some() {
                parts.push(yes_no(s.enabled, "enabled", "not enabled"));
            }
            t.push_str(&format!("{:<5}  {}\n", s.agent.name(), parts.join(", ")));
            for f in &s.files {
                t.push_str(&format!("       {}\n", f.display()));
            }
        }
        t
    };
    write_stdout(text.as_bytes())
}

/// `agents print [--platform P] [--out DIR]`.
pub fn print(platform: Option<Platform>, out: Option<&Path>) -> Result<()> {
    let (paths, fleet) = load(false)?;
    let platform = match platform {
        Some(p) => p,
        None => Platform::current()?,
    };
    let input = RenderInput::for_machine(&paths, &fleet)?;
    let rendered = agents::render(platform, &input)?;
    let dir = agents::agents_dir(platform, &paths);
    let mut text = Vec::new();
    match out {
        Some(out) => {
            files::ensure_dir(out)?;
            for f in &rendered {
                let path: PathBuf = out.join(f.name);
                files::write_atomic(&path, &f.bytes, 0o644)?;
                text.extend_from_slice(format!("wrote {}\n", path.display()).as_bytes());
            }
        }
        None => {
            for f in &rendered {
                text.extend_from_slice(format!("# {}\n", dir.join(f.name).display()).as_bytes());
                text.extend_from_slice(&f.bytes);
                if !f.bytes.ends_with(b"\n") {
                    text.push(b'\n');
                }
            }
        }
    }
    write_stdout(&text)
}

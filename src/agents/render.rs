//! Rendering the agents' files: the launchd plists and systemd units filled with this
//! machine's absolute paths and settings (XML-escaped, or quoted by systemd's rules), and where
//! they go. Must never: put a secret in a rendered file, or leave a placeholder unfilled.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::FleetConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::paths::Paths;

use super::{AGENT_ENV, Agent, Platform, launchd, systemd};

/// What the templates are filled with: absolute paths and settings, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderInput {
    /// The fleetkey binary the agents run: the stable path the user ran when it leads to the
    /// running binary (see [`stable_exe`]), else the running binary's canonical path.
    pub exe: PathBuf,
    /// The user's home directory.
    pub home: PathBuf,
    /// How often the puller runs.
    pub poll: Duration,
    /// XDG base directories set to something other than their defaults, passed on to the
    /// agents so they find the same configuration as the command that installed them.
    pub xdg: Vec<(String, PathBuf)>,
}

impl RenderInput {
    /// The input for this machine: the running binary, its paths and fleet.toml's `poll`.
    pub fn for_machine(paths: &Paths, fleet: &FleetConfig) -> Result<RenderInput> {
        let mut xdg = Vec::new();
        for (var, dir, default) in [
            ("XDG_CONFIG_HOME", &paths.config_dir, ".config"),
            ("XDG_DATA_HOME", &paths.data_dir, ".local/share"),
            ("XDG_STATE_HOME", &paths.state_dir, ".local/state"),
        ] {
            let base = dir.parent().unwrap_or(dir);
            if base != paths.home.join(default) {
                xdg.push((var.to_string(), base.to_path_buf()));
            }
        }
        let canonical = current_exe()?;
        let exe = stable_exe(
            std::env::args_os().next().as_deref(),
            std::env::var_os("PATH").as_deref(),
            std::env::current_dir().ok().as_deref(),
            &canonical,
        );
        Ok(RenderInput {
            exe,
            home: paths.home.clone(),
            poll: fleet.poll(),
            xdg,
        })
    }

    /// The puller's interval in whole seconds, at least one.
    pub fn poll_secs(&self) -> u64 {
        self.poll.as_millis().div_ceil(1000).max(1) as u64
    }

    /// The environment an agent runs with: PATH, HOME, the XDG overrides and [`AGENT_ENV`].
    fn environment(&self, platform: Platform, agent: Agent) -> Vec<(String, String)> {
        let mut dirs: Vec<String> = system_path(platform)
            .iter()
            .map(|d| d.to_string())
            .collect();
        // fleetkey itself (chezmoi's modify_ script calls it) and the user's own tools.
        let extra = [
            self.exe.parent().map(Path::to_path_buf),
            Some(self.home.join(".local/bin")),
        ];
        for dir in extra.into_iter().flatten() {
            let dir = dir.to_string_lossy().into_owned();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        let mut env = vec![
            ("PATH".to_string(), dirs.join(":")),
            ("HOME".to_string(), text(&self.home)),
        ];
        env.extend(self.xdg.iter().map(|(k, v)| (k.clone(), text(v))));
        env.push((AGENT_ENV.to_string(), agent.name().to_string()));
        env
    }
}

/// The system directories at the front of an agent's PATH (after them come the fleetkey
/// binary's own directory and `~/.local/bin`). `doctor` checks that `git` is in one of them.
pub fn system_path(platform: Platform) -> &'static [&'static str] {
    match platform {
        Platform::Macos => &[
            "/opt/homebrew/bin",
            "/usr/local/bin",
            "/usr/bin",
            "/bin",
            "/usr/sbin",
            "/sbin",
        ],
        Platform::Linux => &["/usr/local/bin", "/usr/bin", "/bin"],
    }
}

pub(super) fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The running binary, canonicalised. On Linux a binary replaced while it runs reads as
/// `PATH (deleted)`; the path it was started from is what the agents must run.
pub(super) fn current_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(Error::io("cannot locate", Path::new("fleetkey")))?;
    let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(original) if !exe.exists() => PathBuf::from(original),
        _ => exe,
    };
    std::fs::canonicalize(&exe).map_err(Error::io("cannot resolve", &exe))
}

/// The path the user ran fleetkey by (`argv[0]`, looked up on `PATH` when it has no `/`), when
/// it is absolute after joining `cwd` and resolves to `canonical`: a Homebrew Cellar path
/// changes with every upgrade while `/opt/homebrew/bin/fleetkey` stays. Otherwise `canonical`.
pub fn stable_exe(
    argv0: Option<&std::ffi::OsStr>,
    path_var: Option<&std::ffi::OsStr>,
    cwd: Option<&Path>,
    canonical: &Path,
) -> PathBuf {
    let Some(argv0) = argv0.map(Path::new) else {
        return canonical.to_path_buf();
    };
    let candidate = if argv0.components().count() > 1 || argv0.is_absolute() {
        match (argv0.is_absolute(), cwd) {
            (true, _) => Some(argv0.to_path_buf()),
            (false, Some(cwd)) => Some(cwd.join(argv0)),
            (false, None) => None,
        }
    } else {
        path_var.and_then(|p| {
            std::env::split_paths(p)
                .filter(|d| d.is_absolute())
                .map(|d| d.join(argv0))
                .find(|c| c.is_file())
        })
    };
    match candidate {
        Some(c)
            if std::fs::canonicalize(&c).is_ok_and(|r| r == canonical)
                && !c.components().any(|p| p == std::path::Component::ParentDir) =>
        {
            c
        }
        _ => canonical.to_path_buf(),
    }
}

/// The binary an installed agent file runs: `ExecStart=` of a systemd unit, the first
/// `ProgramArguments` string of a plist (unescaped); `None` when it cannot be found.
pub fn recorded_exe(platform: Platform, file: &str) -> Option<PathBuf> {
    match platform {
        Platform::Linux => {
            let line = file.lines().find_map(|l| l.strip_prefix("ExecStart="))?;
            let Some(rest) = line.strip_prefix('"') else {
                return line.split_whitespace().next().map(PathBuf::from);
            };
            // Undo systemd::quote: \\ \" %% $$.
            let mut out = String::new();
            let mut chars = rest.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '"' => return Some(PathBuf::from(out)),
                    '\\' => out.push(chars.next()?),
                    '%' | '$' => {
                        out.push(c);
                        chars.next_if_eq(&c);
                    }
                    c => out.push(c),
                }
            }
            None
        }
        Platform::Macos => {
            let after = file.split_once("<key>ProgramArguments</key>")?.1;
            let inner = after.split_once("<string>")?.1.split_once("</string>")?.0;
            let text = inner
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&");
            Some(PathBuf::from(text))
        }
    }
}

/// One rendered file of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFile {
    /// The agent it belongs to.
    pub agent: Agent,
    /// Its file name in the agents directory.
    pub name: &'static str,
    /// Its content.
    pub bytes: Vec<u8>,
}

/// Renders every file of both agents for `platform`. A path that is not UTF-8 is refused: a
/// plist or unit file could only hold a mangled copy of it.
pub fn render(platform: Platform, input: &RenderInput) -> Result<Vec<AgentFile>> {
    let paths = [&input.exe, &input.home]
        .into_iter()
        .chain(input.xdg.iter().map(|(_, p)| p));
    for path in paths {
        if path.to_str().is_none() {
            return Err(ErrorKind::Refused(format!(
                "{} is not UTF-8; the agents' files cannot name it",
                path.display()
            ))
            .into());
        }
    }
    let mut out = Vec::new();
    for agent in Agent::ALL {
        let env = input.environment(platform, agent);
        match platform {
            Platform::Macos => out.push(launchd::render(agent, input, &env)?),
            Platform::Linux => out.extend(systemd::render(agent, input, &env)?),
        }
    }
    Ok(out)
}

/// The directory the agents' files are installed into.
pub fn agents_dir(platform: Platform, paths: &Paths) -> PathBuf {
    match platform {
        Platform::Macos => paths.home.join("Library/LaunchAgents"),
        // config_dir is $XDG_CONFIG_HOME/fleetkey.
        Platform::Linux => paths
            .config_dir
            .parent()
            .unwrap_or(&paths.config_dir)
            .join("systemd/user"),
    }
}

/// The directory the macOS agents log into (on Linux their output goes to the journal).
pub fn log_dir(paths: &Paths) -> PathBuf {
    launchd::log_dir(&paths.home)
}

/// Substitutes `{{NAME}}` placeholders with already escaped values; a placeholder without a
/// value is a bug in a template and an error.
pub(super) fn fill(template: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut out = String::with_capacity(template.len() + 512);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| ErrorKind::Refused("an agent template has an unclosed {{".into()))?;
        let name = &after[..end];
        let value = values
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                ErrorKind::Refused(format!(
                    "an agent template uses an unknown value {{{{{name}}}}}"
                ))
            })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

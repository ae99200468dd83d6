//! Talking to the forge through the `git` command line: clone, fetch, push and the cheap ref
//! check the puller makes.
//!
//! Network work goes through `git` rather than libgit2 so that it honours `~/.ssh/config`, ssh
//! agents and credential helpers exactly as the user's own git does. Every run gets an explicit
//! argument list (no shell), stdin closed, prompts disabled (`GIT_TERMINAL_PROMPT=0`, ssh in
//! `BatchMode`) so a daemon never hangs, and an environment cleaned of every `GIT_*` variable
//! but `GIT_SSH_COMMAND`. Must never: pass a secret on a command line, or report a rejected
//! push as success.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The forge took the commits (or already had them).
    Pushed,
    /// The forge has commits this clone lacks; fetch and integrate, then push again.
    Rejected,
}

/// Environment variables a `git` child keeps; everything else is dropped.
const KEPT_ENV: &[&str] = &[
    "HOME",
    "PATH",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "SSH_AUTH_SOCK",
    "XDG_CONFIG_HOME",
    "GIT_SSH_COMMAND",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// A `git` command with the cleaned environment, run in `dir` when given.
pub fn git(dir: Option<&Path>) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear();
    for var in KEPT_ENV {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    cmd
}

fn describe(cmd: &Command) -> String {
    let mut text = String::from("git");
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

fn run(mut cmd: Command) -> Result<(String, Output)> {
    let line = describe(&cmd);
    crate::log::debug(&format!("running {line}"));
    let out = cmd.output().map_err(|source| Error::Spawn {
        program: "git".into(),
        source,
    })?;
    Ok((line, out))
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// Clones `url` into `dest` (which must not exist), checking out `branch` or the forge's
/// default branch.
pub fn clone(url: &str, dest: &Path, branch: Option<&str>) -> Result<()> {
    let mut cmd = git(None);
    cmd.args(["clone", "--quiet"]);
    if let Some(b) = branch {
        cmd.args(["--branch", b]);
    }
    cmd.args(["--", url]).arg(dest);
    let (_, out) = run(cmd)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::ForgeUnreachable {
            remote: url.into(),
            stderr: stderr_of(&out),
        })
    }
}

/// Fetches `branch` from `origin` into `refs/remotes/origin/BRANCH`.
pub fn fetch(repo: &Path, remote: &str, branch: &str) -> Result<()> {
    let mut cmd = git(Some(repo));
    cmd.args([
        "fetch",
        "--quiet",
        "--no-tags",
        "origin",
        &format!("+refs/heads/{branch}:refs/remotes/origin/{branch}"),
    ]);
    let (_, out) = run(cmd)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::ForgeUnreachable {
            remote: remote.into(),
            stderr: stderr_of(&out),
        })
    }
}

/// Pushes the local `branch` to `origin`. A rejection (the forge moved on) is
/// [`PushOutcome::Rejected`], never success; any other failure is [`Error::ForgeUnreachable`].
pub fn push(repo: &Path, remote: &str, branch: &str) -> Result<PushOutcome> {
    let mut cmd = git(Some(repo));
    cmd.args([
        "push",
        "--porcelain",
        "origin",
        &format!("refs/heads/{branch}:refs/heads/{branch}"),
    ]);
    let (_, out) = run(cmd)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Porcelain: one line per ref, flag first: ' ' pushed, '=' up to date, '!' rejected.
    let flags: Vec<char> = stdout
        .lines()
        .filter(|l| l.contains("refs/heads/"))
        .filter_map(|l| l.chars().next())
        .collect();
    if flags.contains(&'!') {
        return Ok(PushOutcome::Rejected);
    }
    if out.status.success() && !flags.is_empty() {
        return Ok(PushOutcome::Pushed);
    }
    Err(Error::ForgeUnreachable {
        remote: remote.into(),
        stderr: stderr_of(&out),
    })
}

/// The commit `branch` points to on the forge, without fetching (`git ls-remote`): `None` when
/// the branch does not exist there.
pub fn remote_head(url: &str, branch: &str) -> Result<Option<String>> {
    let mut cmd = git(None);
    cmd.args(["ls-remote", "--", url, &format!("refs/heads/{branch}")]);
    let (_, out) = run(cmd)?;
    if !out.status.success() {
        return Err(Error::ForgeUnreachable {
            remote: url.into(),
            stderr: stderr_of(&out),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string))
}

/// Whether the forge at `url` already has any branch.
pub fn has_any_branch(url: &str) -> Result<bool> {
    let mut cmd = git(None);
    cmd.args(["ls-remote", "--heads", "--", url]);
    let (_, out) = run(cmd)?;
    if !out.status.success() {
        return Err(Error::ForgeUnreachable {
            remote: url.into(),
            stderr: stderr_of(&out),
        });
    }
    Ok(!out.stdout.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_environment_keeps_only_what_git_needs() {
        let cmd = git(Some(Path::new("/tmp")));
        let envs: Vec<_> = cmd
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(envs.contains(&"GIT_TERMINAL_PROMPT".to_string()));
        assert!(envs.iter().all(|k| !k.starts_with("GIT_")
            || ["GIT_TERMINAL_PROMPT", "GIT_ASKPASS", "GIT_SSH_COMMAND"].contains(&k.as_str())));
        assert_eq!(describe(&cmd), "git -C /tmp");
    }
}

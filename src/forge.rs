//! Talking to the forge through the `git` command line: clone, fetch, push and the cheap ref
//! check the puller makes.
//!
//! Network work goes through `git` rather than libgit2 so that it honours `~/.ssh/config`, ssh
//! agents and credential helpers exactly as the user's own git does. Every run gets an explicit
//! argument list (no shell), stdin closed, prompts disabled (`GIT_TERMINAL_PROMPT=0`, ssh in
//! `BatchMode`) so a daemon never hangs, and an environment cleaned of every `GIT_*` variable
//! but `GIT_SSH_COMMAND`. Must never: pass a secret on a command line, or report a rejected
//! push as success.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{ErrorKind, Result};

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
    "SSH_AUTH_SOCK",
    "XDG_CONFIG_HOME",
    "GIT_SSH_COMMAND",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// A `git` command with the cleaned environment, run in `dir` when given.
pub fn git(dir: Option<&Path>) -> Command {
    let mut cmd = crate::child::command("git", KEPT_ENV);
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

/// Where the running `git` child is recorded (set once the cycle lock is held).
static CHILD_RECORD: OnceLock<PathBuf> = OnceLock::new();

/// Records each `git` child's process id in `path` while it runs, so that when fleetkey is
/// killed (SIGKILL) mid-fetch or mid-push, the next holder of the lock finds the orphaned `git`
/// and waits for it (or stops it) before touching the clone: [`reap_orphan`].
pub fn record_children_in(path: PathBuf) {
    let _ = CHILD_RECORD.set(path);
}

fn run(mut cmd: Command) -> Result<(String, Output)> {
    let line = describe(&cmd);
    crate::log::debug(&format!("running {line}"));
    let spawn_err = |source| ErrorKind::Spawn {
        program: "git".into(),
        source,
    };
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let record = CHILD_RECORD.get();
    if let Some(path) = record {
        // A plain write, not an atomic one: this must be done within microseconds of the spawn
        // (a kill in between leaves an orphan nobody knows about), and a torn record only
        // means an orphan is not waited for.
        let text = format!("{} {}\n", child.id(), start_time(child.id()).unwrap_or(0));
        if let Err(e) = std::fs::write(path, text.as_bytes()) {
            crate::log::debug(&format!("cannot record the git child: {e}"));
        }
    }
    let out = child.wait_with_output().map_err(spawn_err);
    if let Some(path) = record {
        let _ = std::fs::remove_file(path);
    }
    Ok((line, out?))
}

/// A process's start time in clock ticks since boot (Linux `/proc/PID/stat` field 22), to
/// tell a recorded process from a later one that reused its id. `None` where there is no /proc.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` has exited and only waits to be reaped (Linux; false where there is no /proc).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, a)| a.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// After taking the lock: if a killed fleetkey left its `git` child running (see
/// [`record_children_in`]), wait up to 10 s for it to finish, then stop it (SIGTERM, which makes
/// git remove its own lock files, then SIGKILL). A recorded id now used by another process (a
/// different start time) is left alone.
pub fn reap_orphan() {
    let Some(path) = CHILD_RECORD.get() else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let mut parts = text.split_whitespace();
    let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
    let started: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let _ = std::fs::remove_file(path);
    let Some(pid) = pid else { return };
    let Some(raw) = rustix::process::Pid::from_raw(pid as i32) else {
        return;
    };
    let same = || {
        rustix::process::test_kill_process(raw).is_ok()
            && !is_zombie(pid)
            && (started == 0 || start_time(pid) == Some(started))
    };
    if !same() {
        return;
    }
    crate::log::warn(&format!(
        "waiting for git (pid {pid}) left running by an interrupted fleetkey"
    ));
    let wait = |limit: Duration| {
        let end = Instant::now() + limit;
        while same() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait(Duration::from_secs(10));
    for signal in [rustix::process::Signal::TERM, rustix::process::Signal::KILL] {
        if !same() {
            return;
        }
        let _ = rustix::process::kill_process(raw, signal);
        wait(Duration::from_secs(2));
    }
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
        Err(ErrorKind::ForgeUnreachable {
            remote: url.into(),
            stderr: stderr_of(&out),
        }
        .into())
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
        Err(ErrorKind::ForgeUnreachable {
            remote: remote.into(),
            stderr: stderr_of(&out),
        }
        .into())
    }
}

/// Pushes the local `branch` to `origin`. A rejection (the forge moved on) is
/// [`PushOutcome::Rejected`], never success; any other failure is [`ErrorKind::ForgeUnreachable`].
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
    Err(ErrorKind::ForgeUnreachable {
        remote: remote.into(),
        stderr: stderr_of(&out),
    }
    .into())
}

/// The commit `branch` points to on the forge, without fetching (`git ls-remote`): `None` when
/// the branch does not exist there.
pub fn remote_head(url: &str, branch: &str) -> Result<Option<String>> {
    let mut cmd = git(None);
    cmd.args(["ls-remote", "--", url, &format!("refs/heads/{branch}")]);
    let (_, out) = run(cmd)?;
    if !out.status.success() {
        return Err(ErrorKind::ForgeUnreachable {
            remote: url.into(),
            stderr: stderr_of(&out),
        }
        .into());
    }
    let wanted = format!("refs/heads/{branch}");
    // ls-remote matches a pattern against the tail of each ref: keep the exact name only.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .find(|(_, name)| *name == wanted)
        .map(|(oid, _)| oid.trim().to_string()))
}

/// Where each machine publishes its status and collected files: `fleetkey/host/NAME`.
pub fn host_branch(name: &str) -> String {
    format!("fleetkey/host/{name}")
}

/// The local namespace the host branches are fetched into: `refs/fleetkey/hosts/NAME`.
pub const HOSTS_REFS: &str = "refs/fleetkey/hosts/";

/// What one `git ls-remote` of the fleet branch and the host branches found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteRefs {
    /// The fleet branch's commit, when the forge has it.
    pub head: Option<String>,
    /// Each `fleetkey/host/NAME` branch: NAME → commit (names as the forge spells them; the
    /// caller checks them).
    pub hosts: std::collections::BTreeMap<String, String>,
}

/// Parses `git ls-remote` output into the fleet branch `branch` and the host branches.
pub fn parse_remote_refs(stdout: &str, branch: Option<&str>) -> RemoteRefs {
    let wanted = branch.map(|b| format!("refs/heads/{b}"));
    let hosts_prefix = format!("refs/heads/{}", host_branch(""));
    let mut refs = RemoteRefs::default();
    for (oid, name) in stdout.lines().filter_map(|l| l.split_once('\t')) {
        let (oid, name) = (oid.trim(), name.trim());
        if wanted.as_deref() == Some(name) {
            refs.head = Some(oid.to_string());
        } else if let Some(host) = name.strip_prefix(&hosts_prefix) {
            refs.hosts.insert(host.to_string(), oid.to_string());
        }
    }
    refs
}

/// The fleet branch (when `branch` is given) and every host branch on the forge, in ONE
/// `git ls-remote`: the puller's cheap check and the gathering's share it.
pub fn remote_refs(url: &str, branch: Option<&str>) -> Result<RemoteRefs> {
    let mut cmd = git(None);
    cmd.args(["ls-remote", "--", url]);
    if let Some(b) = branch {
        cmd.arg(format!("refs/heads/{b}"));
    }
    cmd.arg(format!("refs/heads/{}*", host_branch("")));
    let (_, out) = run(cmd)?;
    if !out.status.success() {
        return Err(ErrorKind::ForgeUnreachable {
            remote: url.into(),
            stderr: stderr_of(&out),
        }
        .into());
    }
    Ok(parse_remote_refs(
        &String::from_utf8_lossy(&out.stdout),
        branch,
    ))
}

/// Fetches every host branch into [`HOSTS_REFS`] in one `git fetch`, dropping local refs
/// whose branch left the forge (`--prune`).
pub fn fetch_hosts(repo: &Path, remote: &str) -> Result<()> {
    let mut cmd = git(Some(repo));
    cmd.args([
        "fetch",
        "--quiet",
        "--no-tags",
        "--prune",
        "--no-write-fetch-head",
        "origin",
        &format!("+refs/heads/{}*:{HOSTS_REFS}*", host_branch("")),
    ]);
    let (_, out) = run(cmd)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ErrorKind::ForgeUnreachable {
            remote: remote.into(),
            stderr: stderr_of(&out),
        }
        .into())
    }
}

/// Whether the forge at `url` already has any branch.
pub fn has_any_branch(url: &str) -> Result<bool> {
    let mut cmd = git(None);
    cmd.args(["ls-remote", "--heads", "--", url]);
    let (_, out) = run(cmd)?;
    if !out.status.success() {
        return Err(ErrorKind::ForgeUnreachable {
            remote: url.into(),
            stderr: stderr_of(&out),
        }
        .into());
    }
    Ok(!out.stdout.is_empty())
}

/// The branch a machine's enrollment request waits on: `fleetkey/pending/NAME`.
pub fn pending_branch(name: &str) -> String {
    format!("fleetkey/pending/{name}")
}

/// Pushes `src` (a commit id or local ref) to `refs/heads/DST_BRANCH` on `origin`. With
/// `lease`, the forge's branch must still point at that commit (`--force-with-lease`); with
/// `force`, it is replaced whatever it holds.
pub fn push_to(
    repo: &Path,
    remote: &str,
    src: &str,
    dst_branch: &str,
    lease: Option<&str>,
    force: bool,
) -> Result<PushOutcome> {
    let mut cmd = git(Some(repo));
    cmd.args(["push", "--porcelain"]);
    if let Some(expect) = lease {
        cmd.arg(format!(
            "--force-with-lease=refs/heads/{dst_branch}:{expect}"
        ));
    }
    let plus = if force { "+" } else { "" };
    cmd.args(["origin", &format!("{plus}{src}:refs/heads/{dst_branch}")]);
    let (_, out) = run(cmd)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
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
    Err(ErrorKind::ForgeUnreachable {
        remote: remote.into(),
        stderr: stderr_of(&out),
    }
    .into())
}

/// Deletes `refs/heads/BRANCH` on `origin`.
pub fn delete_branch(repo: &Path, remote: &str, branch: &str) -> Result<()> {
    let mut cmd = git(Some(repo));
    cmd.args([
        "push",
        "--quiet",
        "origin",
        &format!(":refs/heads/{branch}"),
    ]);
    let (_, out) = run(cmd)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ErrorKind::ForgeUnreachable {
            remote: remote.into(),
            stderr: stderr_of(&out),
        }
        .into())
    }
}

/// Fetches `refs/heads/BRANCH` from `origin` into the local ref `dst`; `false` when the forge
/// has no such branch.
pub fn fetch_branch_to(repo: &Path, remote: &str, branch: &str, dst: &str) -> Result<bool> {
    if remote_head(remote, branch)?.is_none() {
        return Ok(false);
    }
    let mut cmd = git(Some(repo));
    cmd.args([
        "fetch",
        "--quiet",
        "--no-tags",
        "origin",
        &format!("+refs/heads/{branch}:{dst}"),
    ]);
    let (_, out) = run(cmd)?;
    if out.status.success() {
        Ok(true)
    } else {
        Err(ErrorKind::ForgeUnreachable {
            remote: remote.into(),
            stderr: stderr_of(&out),
        }
        .into())
    }
}

/// The branches under `refs/heads/PREFIX` on the forge, without the prefix (`git ls-remote`).
pub fn list_branches(url: &str, prefix: &str) -> Result<Vec<String>> {
    let mut cmd = git(None);
    cmd.args(["ls-remote", "--heads", "--", url]);
    let (_, out) = run(cmd)?;
    if !out.status.success() {
        return Err(ErrorKind::ForgeUnreachable {
            remote: url.into(),
            stderr: stderr_of(&out),
        }
        .into());
    }
    let full = format!("refs/heads/{prefix}");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|r| r.strip_prefix(&full).map(str::to_string))
        .collect())
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

    #[test]
    fn ls_remote_output_is_read_by_exact_names() {
        let out = "1111\trefs/heads/evil/refs/heads/main\n\
                   2222\trefs/heads/fleetkey/host/a\n\
                   3333\trefs/heads/main\n\
                   4444\trefs/heads/fleetkey/host/b\n";
        let refs = parse_remote_refs(out, Some("main"));
        assert_eq!(refs.head.as_deref(), Some("3333"));
        assert_eq!(refs.hosts.len(), 2);
        assert_eq!(refs.hosts["a"], "2222");
        assert_eq!(parse_remote_refs(out, None).head, None);
    }
}

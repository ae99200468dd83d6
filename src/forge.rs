//! Talking to the forge through the `git` command line: clone, fetch, push and the cheap ref
//! check the puller makes.
//!
//! The forge is a value, [`Forge`]: its URL and, for a machine that is set up, its state
//! directory. Everything a run needs comes from the value it is called on: the ssh
//! ControlPath is derived from THIS forge's URL, the running `git` child is recorded only by
//! the forge [`crate::fleet::Machine::lock`] made (under the cycle lock), and a forge move makes
//! a new value ([`Forge::moved_to`]); no process-wide state, so a watcher that follows a move
//! never talks to the old forge through the old connection. Every run has hooks off
//! (`core.hooksPath` pointed at an empty directory): the user's global hooks never run on
//! fleetkey's clone. Transient failures are retried by one rule ([`retry`]).
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

pub mod credential;
pub mod retry;

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

/// Where hooks are looked for when a forge has no state directory: no file can be found under
/// it, so no hook runs.
const NO_HOOKS_FALLBACK: &str = "/dev/null";

/// The `git` command for a forge whose ssh master socket is `control_path`, with hooks looked
/// for in `hooks` (an empty directory).
///
/// The ssh command git runs for ssh forges, in order of precedence:
/// 1. the user's own `GIT_SSH_COMMAND`, unchanged;
/// 2. the user's own `core.sshCommand` (git config), unchanged: fleetkey sets nothing;
/// 3. otherwise `ssh -o BatchMode=yes`, plus, for a forge with a ControlMaster socket,
///    `-o ControlMaster=auto -o ControlPersist=… -o ControlPath=…`, so the poll's ref check
///    costs one round trip over a connection kept open, not a new handshake. Everything else
///    (host aliases, users, keys, ProxyJump) still comes from `~/.ssh/config`: options on the
///    command line only win over the same options there.
fn git_for(dir: Option<&Path>, control_path: Option<&str>, hooks: &Path) -> Command {
    let mut cmd = crate::child::command("git", KEPT_ENV);
    if std::env::var_os("GIT_SSH_COMMAND").is_none() && !user_ssh_command() {
        cmd.env("GIT_SSH_COMMAND", ssh_command(control_path));
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    cmd.arg("-c")
        .arg(format!("core.hooksPath={}", hooks.display()));
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

/// How long an idle multiplexed forge connection stays open: well above the default poll, so
/// a watcher keeps one connection for as long as it runs.
pub const CONTROL_PERSIST: Duration = Duration::from_secs(300);

/// Longest ControlPath used: ssh adds a 17-byte suffix while it sets the socket up, and a unix
/// socket path holds at most 104 bytes on macOS (108 on Linux).
const CONTROL_PATH_MAX: usize = 104 - 17 - 1;

/// The ControlPath for `remote` under `state_dir`, when it can be one.
pub fn control_path(state_dir: &Path, remote: &str) -> Option<String> {
    if !is_ssh_remote(remote) {
        return None;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    remote.hash(&mut h);
    let path = state_dir.join(format!("cm-{:012x}", h.finish() & 0xffff_ffff_ffff));
    let text = path.to_str()?.to_string();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if !plain || text.len() > CONTROL_PATH_MAX {
        crate::log::debug(&format!(
            "no multiplexed forge connection: {} is too long or needs quoting",
            path.display()
        ));
        return None;
    }
    Some(text)
}

/// Whether git reaches `remote` over ssh: `ssh://…`, `git+ssh://…`, or scp-like `host:path`.
pub fn is_ssh_remote(remote: &str) -> bool {
    if remote.starts_with("ssh://") || remote.starts_with("git+ssh://") {
        return true;
    }
    if remote.contains("://") || remote.starts_with('/') || remote.starts_with('.') {
        return false;
    }
    match (remote.find(':'), remote.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    }
}

/// The ssh command fleetkey gives git when the user set none, multiplexed over
/// `control_path` when there is one.
pub fn ssh_command(control_path: Option<&str>) -> String {
    match control_path {
        Some(path) => format!(
            "ssh -o BatchMode=yes -o ControlMaster=auto -o ControlPersist={} -o ControlPath={path}",
            CONTROL_PERSIST.as_secs()
        ),
        None => "ssh -o BatchMode=yes".into(),
    }
}

/// Whether the user's git config sets `core.sshCommand` (asked once per process).
fn user_ssh_command() -> bool {
    static SET: OnceLock<bool> = OnceLock::new();
    *SET.get_or_init(|| {
        let mut cmd = crate::child::command("git", &["XDG_CONFIG_HOME"]);
        cmd.args(["config", "--global", "--get", "core.sshCommand"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        cmd.output()
            .map(|o| o.status.success() && !o.stdout.trim_ascii().is_empty())
            .unwrap_or(false)
    })
}

/// Runs `cmd`, recording its process id in `record` (when given) while it runs.
fn run(mut cmd: Command, record: Option<&Path>) -> Result<(String, Output)> {
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

/// After taking the lock: if a killed fleetkey left its `git` child running (recorded in
/// `path`, see [`Forge::recording_children`]), wait up to 10 s for it to finish, then stop it
/// (SIGTERM, which makes git remove its own lock files, then SIGKILL). A recorded id now used by
/// another process (a different start time) is left alone.
fn reap_orphan(path: &Path) {
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

/// Whether a failed `git` command was reading from the forge or pushing to it (a forge that
/// answers "access denied" to a push refuses writes; to a read, it hides or lacks the repo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doing {
    Reading,
    Pushing,
}

/// The error for a failed `git` command that talked to `remote`, told apart by what git said
/// (git runs with `LC_ALL=C`, so its messages are the English ones matched here).
fn failure(remote: &str, out: &Output, doing: Doing) -> crate::error::Error {
    let stderr = stderr_of(out);
    let remote = remote.to_string();
    match classify(&stderr, doing) {
        Class::Config(file) => ErrorKind::GitConfig { file, stderr },
        Class::Unreachable => ErrorKind::ForgeUnreachable { remote, stderr },
        Class::NoRepository => ErrorKind::ForgeNoRepository { remote, stderr },
        Class::Auth => ErrorKind::ForgeAuth { remote, stderr },
        Class::Declined => ErrorKind::PushDeclined { remote, stderr },
        Class::RefLocked => ErrorKind::RefLocked { remote, stderr },
        Class::Other => ErrorKind::ForgeFailed { remote, stderr },
    }
    .into()
}

/// What a `git` failure means, from its stderr.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    /// A malformed git configuration file (its path).
    Config(String),
    /// Another git holds a ref lock in the local clone: spurious, see [`retry`].
    RefLocked,
    /// No answer from the host: transient, retry later.
    Unreachable,
    /// The host answered but has no such repository (or hides it).
    NoRepository,
    /// The host refused the credentials.
    Auth,
    /// The host refused the push (hook, protected branch, read-only access).
    Declined,
    /// Anything else.
    Other,
}

/// Sorts git's stderr into a [`Class`]. The order matters: a config error stops git before it
/// talks to anyone; ssh's "Permission denied (publickey)" comes with the generic "Could not
/// read from remote repository", which alone says nothing.
fn classify(stderr: &str, doing: Doing) -> Class {
    let has = |needles: &[&str]| needles.iter().any(|n| stderr.contains(n));
    if let Some(at) = stderr.find("bad config") {
        let line = stderr[at..].lines().next().unwrap_or_default();
        let file = line
            .split_once(" in file ")
            .map(|(_, f)| f.trim().to_string())
            .unwrap_or_else(|| "(git did not say which)".to_string());
        return Class::Config(file);
    }
    // A lock file in the local clone ("Unable to create '….lock': File exists"); while reading,
    // every "cannot lock ref" is local (a push's is the forge's, a lost race).
    if (has(&["Unable to create '"]) && has(&[".lock': File exists"]))
        || (doing == Doing::Reading && has(&["cannot lock ref"]))
    {
        return Class::RefLocked;
    }
    if has(&[
        "hook declined",
        "[remote rejected]",
        "protected branch",
        "You are not allowed to push",
        "The requested URL returned error: 403",
    ]) || (doing == Doing::Pushing
        && has(&[
            "access denied or repository not exported",
            "service not enabled",
            "Permission to ",
            "Write access to repository not granted",
        ]))
    {
        return Class::Declined;
    }
    if has(&[
        "Permission denied (",
        "Authentication failed",
        "could not read Username",
        "could not read Password",
        "HTTP Basic: Access denied",
        "The requested URL returned error: 401",
        "Host key verification failed",
    ]) {
        return Class::Auth;
    }
    let missing_repo = stderr
        .lines()
        .any(|l| l.contains("repository '") && l.trim_end().ends_with("' does not exist"));
    if missing_repo
        || has(&[
            "does not appear to be a git repository",
            "not a git repository",
            "access denied or repository not exported",
            "epository not found",
            "The requested URL returned error: 404",
            "No such file or directory",
        ])
    {
        return Class::NoRepository;
    }
    if has(&[
        "Could not resolve host",
        "unable to look up",
        "Name or service not known",
        "nodename nor servname",
        "Temporary failure in name resolution",
        "Connection refused",
        "timed out",
        "Network is unreachable",
        "No route to host",
        "unable to connect",
        "Connection reset",
        "Connection closed by",
        "hung up unexpectedly",
        "early EOF",
        "Could not connect",
        "Failed to connect",
    ]) {
        return Class::Unreachable;
    }
    Class::Other
}

/// What a `git push --porcelain` did: pushed, rejected because the forge moved on (fetch and
/// try again), or an error saying what went wrong (`shown` names the forge).
fn push_outcome(out: &Output, shown: &str) -> Result<PushOutcome> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Porcelain: one line per ref, flag first: ' ' pushed, '=' up to date, '!' rejected.
    let flags: Vec<char> = stdout
        .lines()
        .filter(|l| l.contains("refs/heads/"))
        .filter_map(|l| l.chars().next())
        .collect();
    // A "[remote rejected]" from a hook or a protected branch is the forge saying no, not the
    // forge having moved on: fetching and pushing again would never help. One that lost a race
    // for the ref lock (another push landed meanwhile) is a rejection like any other.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lost_race = ["cannot lock ref", "but expected", "failed to update ref"]
        .iter()
        .any(|s| stdout.contains(s) || stderr.contains(s));
    if flags.contains(&'!') && (!stdout.contains("[remote rejected]") || lost_race) {
        return Ok(PushOutcome::Rejected);
    }
    if out.status.success() && !flags.is_empty() {
        return Ok(PushOutcome::Pushed);
    }
    Err(failure(shown, out, Doing::Pushing))
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

/// The branch a machine's enrollment request waits on: `fleetkey/pending/NAME`.
pub fn pending_branch(name: &str) -> String {
    format!("fleetkey/pending/{name}")
}

/// Why `url` cannot be a forge, if it cannot. Allowed: `ssh://`, `git://`, `https://`,
/// `http://` and `file://` URLs, an absolute path, and scp-like `[user@]host:path`. Refused:
/// anything else, above all git's `TRANSPORT::ADDRESS` remote helpers (`ext::` runs a command),
/// a leading `-` (an option to git), whitespace, control characters and more than 1024 bytes.
/// A URL from fleet.toml (`forge`) passes this before any machine uses it.
pub fn check_url(url: &str) -> std::result::Result<(), &'static str> {
    if url.is_empty() || url.len() > 1024 {
        return Err("it is empty or longer than 1024 bytes");
    }
    if url.contains("::") {
        return Err("git remote helpers (TRANSPORT::ADDRESS) are not allowed");
    }
    if url.starts_with('-') {
        return Err("it starts with '-'");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("it holds whitespace or a control character");
    }
    let schemes = ["ssh://", "git://", "https://", "http://", "file://"];
    if schemes.iter().any(|s| url.starts_with(s)) || url.starts_with('/') {
        return Ok(());
    }
    if url.contains("://") {
        return Err("only ssh://, git://, https://, http:// and file:// URLs are allowed");
    }
    // scp-like: [user@]host:path, with no '/' before the ':'.
    match url.split_once(':') {
        Some((host, path)) if !host.is_empty() && !host.contains('/') && !path.is_empty() => Ok(()),
        _ => Err("it is neither a URL, an absolute path nor [user@]host:path"),
    }
}

/// The forge one command or cycle talks to: its URL and, for a machine that is set up, the
/// state directory that holds this forge's ssh master socket and the empty hooks directory.
///
/// Made by [`crate::fleet::Machine::lock`] (which also records the running `git` child, see
/// [`Forge::recording_children`]) or [`crate::fleet::Machine::forge`]; [`Forge::at`] for a URL
/// before this machine is set up. A forge move makes a new value ([`Forge::moved_to`]).
/// Operations in the clone go to its `origin`, which [`crate::repo::FleetRepo::set_origin`]
/// keeps at this URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forge {
    remote: String,
    state_dir: Option<PathBuf>,
    record_children: bool,
}

impl Forge {
    /// The forge at `remote` for a machine that is not set up yet: not multiplexed, hooks off
    /// through `/dev/null`, no child recorded.
    pub fn at(remote: &str) -> Forge {
        Forge {
            remote: remote.to_string(),
            state_dir: None,
            record_children: false,
        }
    }

    /// The forge at `remote` for a machine whose state directory is `state_dir`: its ssh
    /// connections multiplexed over a ControlMaster socket there, named after `remote`.
    pub fn new(remote: &str, state_dir: &Path) -> Forge {
        Forge {
            remote: remote.to_string(),
            state_dir: Some(state_dir.to_path_buf()),
            record_children: false,
        }
    }

    /// This forge, recording each `git` child's process id in the state directory while it
    /// runs, so that when fleetkey is killed (SIGKILL) mid-fetch or mid-push, the next holder of
    /// the lock finds the orphaned `git` and waits for it (or stops it) before touching the
    /// clone. Only the holder of the cycle lock records ([`crate::fleet::Machine::lock`]).
    pub fn recording_children(mut self) -> Forge {
        self.record_children = self.state_dir.is_some();
        self
    }

    /// The same machine's forge after the fleet moved to `url`: a new value, with its own
    /// ControlPath (the old forge's connection is never reused).
    pub fn moved_to(&self, url: &str) -> Forge {
        Forge {
            remote: url.to_string(),
            ..self.clone()
        }
    }

    /// The URL.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// The ControlMaster socket of this forge's ssh connections, when it has one (see
    /// [`control_path`]).
    pub fn control_path(&self) -> Option<String> {
        control_path(self.state_dir.as_deref()?, &self.remote)
    }

    /// Where the running `git` child is recorded, when this forge records it.
    fn child_record(&self) -> Option<PathBuf> {
        let dir = self.state_dir.as_ref().filter(|_| self.record_children)?;
        Some(dir.join("git-child"))
    }

    /// The empty directory `core.hooksPath` points at (created when missing), or `/dev/null`.
    fn hooks_dir(&self) -> PathBuf {
        let Some(dir) = &self.state_dir else {
            return PathBuf::from(NO_HOOKS_FALLBACK);
        };
        let hooks = dir.join("no-hooks");
        let made = crate::files::ensure_private_dir(dir)
            .and_then(|()| crate::files::ensure_private_dir(&hooks));
        match made {
            Ok(()) => hooks,
            Err(e) => {
                crate::log::debug(&format!("hooks off through /dev/null: {e}"));
                PathBuf::from(NO_HOOKS_FALLBACK)
            }
        }
    }

    /// A `git` command for this forge (see [`git_for`]), run in `dir` when given.
    pub fn git(&self, dir: Option<&Path>) -> Command {
        git_for(dir, self.control_path().as_deref(), &self.hooks_dir())
    }

    /// Runs `cmd`, recording the child when this forge does.
    fn run(&self, cmd: Command) -> Result<Output> {
        run(cmd, self.child_record().as_deref()).map(|(_, out)| out)
    }

    /// After taking the lock: deals with a `git` child that a killed holder left running.
    pub fn reap_orphan(&self) {
        if let Some(path) = self.child_record() {
            reap_orphan(&path);
        }
    }

    /// Clones the forge into `dest` (which must not exist), checking out `branch` or the
    /// forge's default branch.
    pub fn clone_into(&self, dest: &Path, branch: Option<&str>) -> Result<()> {
        let mut cmd = self.git(None);
        cmd.args(["clone", "--quiet"]);
        if let Some(b) = branch {
            cmd.args(["--branch", b]);
        }
        cmd.args(["--", &self.remote]).arg(dest);
        let out = self.run(cmd)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(failure(&self.remote, &out, Doing::Reading))
        }
    }

    /// Fetches `branch` from `origin` into `refs/remotes/origin/BRANCH`, retried by the
    /// [`retry`] rule.
    pub fn fetch(&self, repo: &Path, branch: &str) -> Result<()> {
        retry::RULE.run("fetch", || {
            let mut cmd = self.git(Some(repo));
            cmd.args([
                "fetch",
                "--quiet",
                "--no-tags",
                "origin",
                &format!("+refs/heads/{branch}:refs/remotes/origin/{branch}"),
            ]);
            let out = self.run(cmd)?;
            if out.status.success() {
                Ok(())
            } else {
                Err(failure(&self.remote, &out, Doing::Reading))
            }
        })
    }

    /// Pushes the local `branch` to `origin`, retried by the [`retry`] rule. A rejection (the
    /// forge moved on) is [`PushOutcome::Rejected`], never success; any other failure is an
    /// error that says what went wrong (unreachable, no such repository, credentials, push
    /// declined, git's configuration).
    pub fn push(&self, repo: &Path, branch: &str) -> Result<PushOutcome> {
        self.push_branch(repo, "origin", branch)
    }

    /// Pushes the local `branch` to THIS forge's URL (not `origin`): how `remote set` copies
    /// the fleet to its new forge and leaves its last commit on the old one. Outcomes as
    /// [`Forge::push`].
    pub fn push_to_url(&self, repo: &Path, branch: &str) -> Result<PushOutcome> {
        check_url(&self.remote)
            .map_err(|why| crate::error::Error::refused(format!("forge URL refused: {why}")))?;
        self.push_branch(repo, &self.remote, branch)
    }

    /// Pushes `refs/heads/BRANCH` to `target` (`origin` or this forge's URL).
    fn push_branch(&self, repo: &Path, target: &str, branch: &str) -> Result<PushOutcome> {
        retry::RULE.run("push", || {
            let mut cmd = self.git(Some(repo));
            cmd.args([
                "push",
                "--porcelain",
                target,
                &format!("refs/heads/{branch}:refs/heads/{branch}"),
            ]);
            let out = self.run(cmd)?;
            push_outcome(&out, &self.remote)
        })
    }

    /// Pushes `src` (a commit id or local ref) to `refs/heads/DST_BRANCH` on `origin`. With
    /// `lease`, the forge's branch must still point at that commit (`--force-with-lease`);
    /// with `force`, it is replaced whatever it holds.
    pub fn push_to(
        &self,
        repo: &Path,
        src: &str,
        dst_branch: &str,
        lease: Option<&str>,
        force: bool,
    ) -> Result<PushOutcome> {
        let mut cmd = self.git(Some(repo));
        cmd.args(["push", "--porcelain"]);
        if let Some(expect) = lease {
            cmd.arg(format!(
                "--force-with-lease=refs/heads/{dst_branch}:{expect}"
            ));
        }
        let plus = if force { "+" } else { "" };
        cmd.args(["origin", &format!("{plus}{src}:refs/heads/{dst_branch}")]);
        let out = self.run(cmd)?;
        push_outcome(&out, &self.remote)
    }

    /// Deletes `refs/heads/BRANCH` on `origin`.
    pub fn delete_branch(&self, repo: &Path, branch: &str) -> Result<()> {
        let mut cmd = self.git(Some(repo));
        cmd.args([
            "push",
            "--quiet",
            "origin",
            &format!(":refs/heads/{branch}"),
        ]);
        let out = self.run(cmd)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(failure(&self.remote, &out, Doing::Pushing))
        }
    }

    /// `git ls-remote URL PATTERNS…`, retried by the [`retry`] rule: its stdout.
    fn ls_remote(&self, args: &[&str]) -> Result<String> {
        retry::RULE.run("ls-remote", || {
            let mut cmd = self.git(None);
            cmd.arg("ls-remote");
            cmd.args(args.iter().take_while(|a| a.starts_with('-')));
            cmd.args(["--", &self.remote]);
            cmd.args(args.iter().skip_while(|a| a.starts_with('-')));
            let out = self.run(cmd)?;
            if !out.status.success() {
                return Err(failure(&self.remote, &out, Doing::Reading));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        })
    }

    /// The commit `branch` points to on the forge, without fetching (`git ls-remote`): `None`
    /// when the branch does not exist there.
    pub fn remote_head(&self, branch: &str) -> Result<Option<String>> {
        let wanted = format!("refs/heads/{branch}");
        let stdout = self.ls_remote(&[&wanted])?;
        // ls-remote matches a pattern against the tail of each ref: keep the exact name only.
        Ok(stdout
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(_, name)| *name == wanted)
            .map(|(oid, _)| oid.trim().to_string()))
    }

    /// The fleet branch (when `branch` is given) and every host branch on the forge, in ONE
    /// `git ls-remote`: the puller's cheap check and the gathering's share it.
    pub fn remote_refs(&self, branch: Option<&str>) -> Result<RemoteRefs> {
        let fleet = branch.map(|b| format!("refs/heads/{b}"));
        let hosts = format!("refs/heads/{}*", host_branch(""));
        let patterns: Vec<&str> = fleet
            .iter()
            .map(String::as_str)
            .chain([hosts.as_str()])
            .collect();
        Ok(parse_remote_refs(&self.ls_remote(&patterns)?, branch))
    }

    /// Fetches the host branches of `names` (the active members' that the forge holds) into
    /// [`HOSTS_REFS`] in one `git fetch`, one refspec each: no other branch is downloaded.
    pub fn fetch_hosts(&self, repo: &Path, names: &[&str]) -> Result<()> {
        let mut cmd = self.git(Some(repo));
        cmd.args([
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "origin",
        ]);
        for name in names {
            cmd.arg(format!(
                "+refs/heads/{}:{HOSTS_REFS}{name}",
                host_branch(name)
            ));
        }
        let out = self.run(cmd)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(failure(&self.remote, &out, Doing::Reading))
        }
    }

    /// Whether the forge already has any branch.
    pub fn has_any_branch(&self) -> Result<bool> {
        Ok(!self.ls_remote(&["--heads"])?.is_empty())
    }

    /// Fetches `refs/heads/BRANCH` from `origin` into the local ref `dst`; `false` when the
    /// forge has no such branch.
    pub fn fetch_branch_to(&self, repo: &Path, branch: &str, dst: &str) -> Result<bool> {
        if self.remote_head(branch)?.is_none() {
            return Ok(false);
        }
        let mut cmd = self.git(Some(repo));
        cmd.args([
            "fetch",
            "--quiet",
            "--no-tags",
            "origin",
            &format!("+refs/heads/{branch}:{dst}"),
        ]);
        let out = self.run(cmd)?;
        if out.status.success() {
            Ok(true)
        } else {
            Err(failure(&self.remote, &out, Doing::Reading))
        }
    }

    /// The branches under `refs/heads/PREFIX` on the forge, without the prefix.
    pub fn list_branches(&self, prefix: &str) -> Result<Vec<String>> {
        let full = format!("refs/heads/{prefix}");
        Ok(self
            .ls_remote(&["--heads"])?
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter_map(|r| r.strip_prefix(&full).map(str::to_string))
            .collect())
    }
}

#[cfg(test)]
mod multiplex_tests {
    use super::*;

    #[test]
    fn only_ssh_forges_are_multiplexed_with_a_short_plain_path() {
        let dir = Path::new("/home/a/.local/state/fleetkey");
        for ssh in [
            "ssh://git@h/x.git",
            "git@h:me/x.git",
            "h:x",
            "git+ssh://h/x",
        ] {
            let p = control_path(dir, ssh).unwrap();
            assert!(p.starts_with("/home/a/.local/state/fleetkey/cm-"), "{p}");
            assert!(p.len() <= CONTROL_PATH_MAX);
        }
        for other in [
            "https://h/x.git",
            "/srv/x.git",
            "./x",
            "git://h/x",
            "file:///x",
        ] {
            assert_eq!(control_path(dir, other), None, "{other}");
        }
        assert_ne!(
            control_path(dir, "ssh://a/x"),
            control_path(dir, "ssh://b/x"),
            "a moved forge gets its own connection"
        );
        let long = Path::new("/").join("d".repeat(90));
        assert_eq!(control_path(&long, "ssh://a/x"), None);
        assert_eq!(control_path(Path::new("/a b/s"), "ssh://a/x"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_environment_keeps_only_what_git_needs() {
        let cmd = Forge::at("/srv/fleet.git").git(Some(Path::new("/tmp")));
        let envs: Vec<_> = cmd
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(envs.contains(&"GIT_TERMINAL_PROMPT".to_string()));
        assert!(envs.iter().all(|k| !k.starts_with("GIT_")
            || ["GIT_TERMINAL_PROMPT", "GIT_ASKPASS", "GIT_SSH_COMMAND"].contains(&k.as_str())));
        assert_eq!(
            describe(&cmd),
            "git -c core.hooksPath=/dev/null -C /tmp",
            "hooks off"
        );
    }

    #[test]
    fn git_failures_are_told_apart_by_what_git_said() {
        use Doing::*;
        let cases: &[(&str, Doing, Class)] = &[
            (
                "fatal: bad config line 1 in file /h/.gitconfig",
                Reading,
                Class::Config("/h/.gitconfig".into()),
            ),
            (
                "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused",
                Reading,
                Class::Unreachable,
            ),
            (
                "fatal: unable to look up no-such-host.invalid (port 9418) (Name or service not known)",
                Reading,
                Class::Unreachable,
            ),
            (
                "ssh: connect to host h port 22: Connection timed out\nfatal: Could not read from remote repository.",
                Reading,
                Class::Unreachable,
            ),
            (
                "fatal: '/x' does not appear to be a git repository\nfatal: Could not read from remote repository.",
                Reading,
                Class::NoRepository,
            ),
            (
                "fatal: remote error: access denied or repository not exported: /nope.git",
                Reading,
                Class::NoRepository,
            ),
            (
                "fatal: remote error: access denied or repository not exported: /fleet.git",
                Pushing,
                Class::Declined,
            ),
            (
                "git@h: Permission denied (publickey).\nfatal: Could not read from remote repository.",
                Reading,
                Class::Auth,
            ),
            (
                "remote: error: GH006: Protected branch update failed\n ! [remote rejected] main -> main (protected branch hook declined)",
                Pushing,
                Class::Declined,
            ),
            (
                "ERROR: Permission to me/fleet.git denied to deploy key",
                Pushing,
                Class::Declined,
            ),
            (
                "ssh: Could not resolve hostname nowhere.invalid: Name or service not known\nfatal: Could not read from remote repository.",
                Reading,
                Class::Unreachable,
            ),
            (
                "fatal: '/srv/nope.git' does not appear to be a git repository\nfatal: Could not read from remote repository.",
                Pushing,
                Class::NoRepository,
            ),
            (
                "fatal: repository '/srv/nope.git' does not exist",
                Reading,
                Class::NoRepository,
            ),
            (
                "Host key verification failed.\nfatal: Could not read from remote repository.",
                Reading,
                Class::Auth,
            ),
            (
                "remote: error: cannot lock ref 'refs/heads/main': is at 1 but expected 2",
                Pushing,
                Class::Other,
            ),
            (
                "error: cannot lock ref 'refs/remotes/origin/main': Unable to create '/c/.git/refs/remotes/origin/main.lock': File exists.",
                Reading,
                Class::RefLocked,
            ),
            ("fatal: something new", Reading, Class::Other),
        ];
        for (stderr, doing, want) in cases {
            assert_eq!(&classify(stderr, *doing), want, "{stderr}");
        }
    }

    #[test]
    fn only_plain_transports_can_be_a_forge() {
        for ok in [
            "ssh://git@example.org/me/fleet.git",
            "git://127.0.0.1:9418/fleet.git",
            "https://example.org/me/fleet.git",
            "file:///srv/fleet.git",
            "/srv/fleet.git",
            "git@example.org:me/fleet.git",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ext::sh -c touch% /tmp/pwned",
            "ext::sh",
            "fd::17",
            "--upload-pack=touch /tmp/x",
            "ftp://example.org/x",
            "relative/path",
            "a b",
            "ssh://x\nHost",
            "",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
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

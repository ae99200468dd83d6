//! The one test harness: a simulated machine ([`Machine`], one HOME each) running the real binary
//! with a cleaned environment, the servers a forge runs on ([`server`], [`forge`]), a fleet of
//! machines joined by the real `init`/`enroll`/`approve` ([`fleet`]), and checks that a real
//! component (age, git, sshd) is installed. Every wait has a deadline and says what it waited for.

#![allow(dead_code)]

pub mod fleet;
pub mod forge;
pub mod server;

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The fleetkey binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fleetkey"))
}

/// Fails the test (never skips it) when `program` is missing, saying what to install.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    match found {
        Some(p) => p,
        None => panic!("this test needs `{program}`: install it with `apt-get install {package}`"),
    }
}

/// One simulated machine: a HOME of its own, a name (what it enrolls as in a fleet), and any
/// extra environment its commands need (e.g. how ssh reaches a test forge).
pub struct Machine {
    /// The machine's name in a fleet (`machine` when it never joins one).
    pub name: String,
    /// Keeps the directory alive; HOME and TMPDIR are inside it.
    pub dir: tempfile::TempDir,
    /// `$HOME`.
    pub home: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl Default for Machine {
    fn default() -> Self {
        Machine::new()
    }
}

impl Machine {
    /// A fresh, empty HOME.
    pub fn new() -> Machine {
        Machine::named("machine")
    }

    /// A fresh, empty HOME for the machine called `name`.
    pub fn named(name: &str) -> Machine {
        let dir = tempfile::Builder::new()
            .prefix("fleetkey-test-")
            .tempdir()
            .unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        Machine {
            name: name.to_string(),
            dir,
            home,
            env: Vec::new(),
        }
    }

    /// Moves `$HOME` to `sub` inside the machine's own directory (e.g. `a/much/deeper/home-bob`),
    /// so machines' home paths differ in length and depth. Only before the machine is set up.
    pub fn home_at(&mut self, sub: &str) {
        let home = self.dir.path().join(sub);
        std::fs::create_dir_all(&home).unwrap();
        let _ = std::fs::remove_dir(&self.home);
        self.home = home;
    }

    /// Sets `key` to `value` in every command this machine runs.
    pub fn set_env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
    }

    /// A `fleetkey` command for this machine, with the user's environment stripped.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TMPDIR", self.tmp())
            .env("USER", "tester")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// This machine's private temp directory (TMPDIR for the commands).
    pub fn tmp(&self) -> PathBuf {
        let t = self.dir.path().join("tmp");
        std::fs::create_dir_all(&t).unwrap();
        t
    }

    /// Runs fleetkey and returns its output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn fleetkey")
    }

    /// Runs fleetkey with `args` and `stdin`, returning the output whatever the status.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        output_with_stdin(self.cmd(args), stdin)
    }

    /// Runs fleetkey and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(&out, args);
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs fleetkey with stdin and asserts success, returning stdout.
    pub fn ok_with_stdin(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.run_with_stdin(args, stdin);
        assert_success(&out, args);
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs fleetkey, asserts it fails with `code`, and returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_failure(&out, args, code);
        String::from_utf8(out.stderr).unwrap()
    }

    /// `fleetkey sync`, asserted to succeed; returns stdout.
    pub fn sync(&self) -> String {
        self.ok(&["sync"])
    }

    /// Runs fleetkey with `FLEETKEY_FAULT=point` and asserts it died there by SIGKILL (which
    /// also proves the point was reached).
    pub fn killed_at(&self, args: &[&str], point: &str) -> Output {
        let out = self
            .cmd(args)
            .env("FLEETKEY_FAULT", point)
            .output()
            .expect("spawn fleetkey");
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{}: fleetkey {args:?} should die at {point}, but it exited with {}\nstdout:\n{}\nstderr:\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `$HOME/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.home.join(rel)
    }

    /// Writes `$HOME/rel`, creating its directories.
    pub fn write(&self, rel: &str, bytes: &[u8]) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    /// Reads `$HOME/rel` (empty when missing).
    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_default()
    }

    /// Reads `$HOME/rel` as text (empty when missing).
    pub fn text(&self, rel: &str) -> String {
        String::from_utf8(self.read(rel)).unwrap()
    }

    /// The fleet clone.
    pub fn repo(&self) -> PathBuf {
        self.home.join(".local/share/fleetkey/fleet")
    }

    /// The embedded forge.
    pub fn forge(&self) -> PathBuf {
        self.home.join(".local/share/fleetkey/forge.git")
    }

    /// The age identity file.
    pub fn identity(&self) -> PathBuf {
        self.home.join(".config/fleetkey/identity.txt")
    }

    /// The state directory.
    pub fn state(&self) -> PathBuf {
        self.home.join(".local/state/fleetkey")
    }

    /// This machine's SSH public key as `TYPE BASE64` (no comment).
    pub fn ssh_key(&self) -> String {
        let line = std::fs::read_to_string(self.home.join(".ssh/id_ed25519.pub"))
            .unwrap_or_else(|e| panic!("{} has no SSH key: {e}", self.name));
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The SHA256 fingerprint of this machine's SSH key, as `ssh-keygen -l` computes it.
    pub fn ssh_fingerprint(&self) -> String {
        let out = run_program(
            Command::new(require("ssh-keygen", "openssh-client"))
                .arg("-lf")
                .arg(self.home.join(".ssh/id_ed25519.pub")),
        );
        String::from_utf8(out)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    }

    /// The applied `~/.ssh/authorized_keys` (empty when missing).
    pub fn authorized_keys(&self) -> String {
        self.text(".ssh/authorized_keys")
    }

    /// `git add -A` and a commit in the clone, as a user editing it by hand would.
    pub fn commit_in_clone(&self, message: &str) {
        // Signed with this machine's fleetkey signing key, as a member committing by hand
        // with stock git does (docs/rotation.md): fleetkey accepts nothing unsigned.
        for args in [&["add", "-A"][..], &["commit", "-qm", message]] {
            run_program(
                Command::new("git")
                    .arg("-C")
                    .arg(self.repo())
                    .args(signing_config(self))
                    .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                    .args(args),
            );
        }
    }

    /// Conflict copies of `$HOME/rel` on this machine, sorted.
    pub fn conflict_copies(&self, rel: &str) -> Vec<PathBuf> {
        let p = self.path(rel);
        let dir = p.parent().unwrap();
        let prefix = format!("{}.conflict-", p.file_name().unwrap().to_str().unwrap());
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_str().unwrap().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }

    /// Asserts the clone is healthy: fsck clean, no rebase or merge state, no lock files, a
    /// clean working tree.
    pub fn assert_clean_repo(&self) {
        let repo = self.repo();
        run_program(
            Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(["fsck", "--no-progress"]),
        );
        for leftover in [
            "rebase-merge",
            "rebase-apply",
            "MERGE_HEAD",
            "index.lock",
            "HEAD.lock",
            "packed-refs.lock",
        ] {
            assert!(
                !repo.join(".git").join(leftover).exists(),
                "{} left {leftover} behind",
                self.name
            );
        }
        let ref_locks: Vec<PathBuf> = snapshot(&repo.join(".git/refs"))
            .0
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.extension().is_some_and(|x| x == "lock"))
            .collect();
        assert!(
            ref_locks.is_empty(),
            "{} left ref locks: {ref_locks:?}",
            self.name
        );
        let status = git_out(&repo, &["status", "--porcelain"]);
        assert!(
            status.is_empty(),
            "{} has a dirty clone:\n{status}",
            self.name
        );
    }

    /// Asserts the last cycle ran to its end: no `cycle-unfinished` marker, no lock held.
    pub fn assert_cycle_finished(&self) {
        assert!(
            !self.state().join("cycle-unfinished").exists(),
            "{} left an unfinished-cycle marker",
            self.name
        );
        if let Ok(f) = std::fs::File::open(self.state().join("lock")) {
            assert!(
                f.try_lock().is_ok(),
                "{}: the cycle lock is still held",
                self.name
            );
        }
    }

    /// `last-cycle.json`, parsed (None before the first cycle).
    pub fn last_cycle(&self) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.state().join("last-cycle.json")).ok()?;
        Some(serde_json::from_slice(&bytes).expect("last-cycle.json is JSON"))
    }

    /// What `last-cycle.json` is now (each finished cycle replaces the file).
    pub fn cycle_mark(&self) -> CycleMark {
        let path = self.state().join("last-cycle.json");
        CycleMark(
            std::fs::metadata(&path)
                .ok()
                .map(|m| (m.ino(), std::fs::read(&path).unwrap_or_default())),
        )
    }

    /// Waits up to `limit` for a cycle to finish after `mark` was taken; returns its record.
    /// `context` is added to the failure message (e.g. the watcher's log).
    pub fn cycle_after(
        &self,
        mark: &CycleMark,
        limit: Duration,
        context: impl Fn() -> String,
    ) -> serde_json::Value {
        wait_for(
            limit,
            || format!("{}: no cycle finished\n{}", self.name, context()),
            || {
                (self.cycle_mark() != *mark)
                    .then(|| self.last_cycle())
                    .flatten()
            },
        )
    }
}

/// Which `last-cycle.json` a machine had (inode and bytes), to wait for the next one.
#[derive(Debug, PartialEq, Eq)]
pub struct CycleMark(Option<(u64, Vec<u8>)>);

/// Runs `cmd` with `stdin` piped in, returning its output whatever the status. A command that
/// fails before it reads stdin closes the pipe: not the test's concern.
pub fn output_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    match child.stdin.take().unwrap().write_all(stdin) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
        _ => {}
    }
    child.wait_with_output().unwrap()
}

/// Polls `probe` every 20 ms until it gives a value, and fails the test with `what()` when
/// `limit` passes first.
pub fn wait_for<T>(
    limit: Duration,
    what: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting: {}",
            what()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts success, printing the command, stdout and stderr otherwise.
pub fn assert_success(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "fleetkey {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts a failure with `code`, printing the command, stdout and stderr otherwise.
pub fn assert_failure(out: &Output, args: &[&str], code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "fleetkey {args:?} should exit {code}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs an external program and asserts success, returning stdout.
pub fn run_program(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `git -C dir ARGS` output, trimmed.
pub fn git_out(dir: &Path, args: &[&str]) -> String {
    String::from_utf8(run_program(
        Command::new("git").arg("-C").arg(dir).args(args),
    ))
    .unwrap()
    .trim()
    .to_string()
}

/// Decrypts `file` with the stock `age` binary and `identity`; the plaintext, or None when age
/// refuses.
pub fn age_decrypt(identity: &Path, file: &Path) -> Option<Vec<u8>> {
    let out = Command::new(require("age", "age"))
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .expect("run age");
    out.status.success().then_some(out.stdout)
}

/// Every file below `dir` with its bytes, for "nothing changed" checks. The (empty) cycle lock
/// file is left out: taking the lock is not a change.
pub fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && !e.path().ends_with(".local/state/fleetkey/lock") {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    Snapshot(out)
}

/// Files and their bytes; compares by content and prints only the paths that differ.
#[derive(PartialEq, Eq)]
pub struct Snapshot(pub Vec<(PathBuf, Vec<u8>)>);

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(p, b)| (p, b.len())))
            .finish()
    }
}

impl Snapshot {
    /// The paths whose presence or content differs between two snapshots.
    pub fn diff(&self, other: &Snapshot) -> Vec<PathBuf> {
        let a: std::collections::BTreeMap<_, _> = self.0.iter().cloned().collect();
        let b: std::collections::BTreeMap<_, _> = other.0.iter().cloned().collect();
        a.keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A fresh directory that sshd's StrictModes accepts: it and every parent are owned by root or
/// the current user and writable by no one else (so never under /tmp). Tries the target
/// directory, then `$HOME/.cache`; fails with what to do when neither qualifies.
pub fn strict_modes_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    let safe = |dir: &Path| {
        dir.ancestors().all(|d| match std::fs::metadata(d) {
            Ok(m) => (m.uid() == 0 || m.uid() == uid) && m.permissions().mode() & 0o022 == 0,
            Err(_) => false,
        })
    };
    let candidates = [
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/fleetkey-tests"),
    ];
    for base in &candidates {
        if base.as_os_str().is_empty() {
            continue;
        }
        if std::fs::create_dir_all(base).is_err() {
            continue;
        }
        if safe(base) {
            let dir = tempfile::Builder::new()
                .prefix("sshd-")
                .tempdir_in(base)
                .unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
            return dir;
        }
    }
    panic!(
        "sshd's StrictModes needs a directory no other user can write to; neither {candidates:?} \
         qualifies: run the tests from a checkout outside /tmp, or with HOME set to a private directory"
    );
}

/// The enrollment code in `enroll`'s output `out` for machine `name`: the line
/// `enrollment code: CODE`, which must also be the code of the approve command it suggests.
pub fn code_in(out: &str, name: &str) -> String {
    let code = out
        .lines()
        .find_map(|l| l.strip_prefix("enrollment code: "))
        .unwrap_or_else(|| panic!("enroll printed no enrollment code:\n{out}"))
        .trim()
        .to_string();
    let said = format!("fleetkey approve {name} --code {code}");
    assert!(
        out.lines().any(|l| l.trim() == said),
        "enroll did not say how to approve it with its code:\n{out}"
    );
    code
}

/// The enrollment code of pending machine `m`, as `status --json` shows it there.
pub fn enrollment_code(m: &Machine) -> String {
    let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "--json"])).unwrap();
    status["machine"]["enrollment_code"]
        .as_str()
        .unwrap_or_else(|| {
            panic!("status --json of a pending machine has no enrollment_code: {status}")
        })
        .to_string()
}

/// The SHA256 fingerprint of `m`'s commit-signing key, as `ssh-keygen -lf` prints it.
pub fn signing_fingerprint(m: &Machine) -> String {
    let out = run_program(
        Command::new(require("ssh-keygen", "openssh-client"))
            .arg("-lf")
            .arg(m.home.join(".config/fleetkey/signing_key")),
    );
    String::from_utf8(out)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// `git -c …` options that make a stock `git commit` sign with `m`'s fleetkey signing key, as
/// docs/rotation.md tells a member committing by hand.
pub fn signing_config(m: &Machine) -> Vec<String> {
    let key = m.home.join(".config/fleetkey/signing_key");
    vec![
        "-c".into(),
        "gpg.format=ssh".into(),
        "-c".into(),
        format!("user.signingkey={}", key.display()),
        "-c".into(),
        "commit.gpgsign=true".into(),
    ]
}

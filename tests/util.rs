//! Test helpers: a fresh machine (its own HOME) per test, the real binary run with a cleaned
//! environment, and checks that a real component (age, git, sshd) is installed.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

/// One simulated machine: a HOME of its own.
pub struct Machine {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// `$HOME`.
    pub home: PathBuf,
}

impl Machine {
    /// A fresh, empty HOME.
    pub fn new() -> Machine {
        let dir = tempfile::Builder::new()
            .prefix("fleetkey-test-")
            .tempdir()
            .unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        Machine { dir, home }
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

    /// Runs fleetkey with `args` and `stdin`, returning the output whatever the status.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = self.cmd(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn fleetkey");
        // A command that fails before it reads stdin closes the pipe: not the test's concern.
        match child.stdin.take().unwrap().write_all(stdin) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
            _ => {}
        }
        child.wait_with_output().unwrap()
    }

    /// Runs fleetkey and returns its output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn fleetkey")
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

    /// The fleet clone.
    pub fn repo(&self) -> PathBuf {
        self.home.join(".local/share/fleetkey/fleet")
    }

    /// The embedded forge.
    pub fn forge(&self) -> PathBuf {
        self.home.join(".local/share/fleetkey/forge.git")
    }

    /// The identity file.
    pub fn identity(&self) -> PathBuf {
        self.home.join(".config/fleetkey/identity.txt")
    }

    /// The state directory.
    pub fn state(&self) -> PathBuf {
        self.home.join(".local/state/fleetkey")
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
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
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

/// The SHA256 fingerprint of `m`'s commit-signing key, as `ssh-keygen -lf` prints it: what
/// `fleetkey approve NAME --fingerprint` takes.
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

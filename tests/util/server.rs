//! A server the tests start on 127.0.0.1 (git daemon, sshd), ready when it says so.
//!
//! Neither git daemon nor sshd can be handed a listening socket or asked to bind port 0 and
//! report it, so the port is one the kernel just called free, and the server itself confirms
//! it: it is ready when its log shows that IT is listening (git daemon's "Ready to rumble",
//! sshd's "Server listening on … port N"), never when something answers on the port (that
//! could be another test's server). Both exit at once when the port is taken; then the server
//! is started again on another port. Restarting on a fixed port (a forge that comes back)
//! retries that port until the deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long a server may take to say it is listening.
const READY: Duration = Duration::from_secs(15);

/// A running server; killed when dropped.
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its stderr.
    pub log: PathBuf,
    child: Child,
}

/// How to run one kind of server.
pub struct Spec<'a> {
    /// For messages: "git daemon", "sshd".
    pub what: &'a str,
    /// The line the server logs once it listens on `port`.
    pub ready: &'a dyn Fn(u16) -> String,
    /// The command that serves on `port` (its stderr goes to the log).
    pub command: &'a dyn Fn(u16) -> Command,
}

impl Server {
    /// Starts the server on a free port, or on `port` when given.
    pub fn start(spec: &Spec<'_>, log: &Path, port: Option<u16>) -> Server {
        match port {
            // The same port again after a clash: whoever holds it may let go.
            Some(p) => Self::start_on(spec, log, || p, Duration::from_millis(100)),
            None => Self::start_on(spec, log, kernel_free_port, Duration::ZERO),
        }
    }

    /// Starts the server on `next_port()`, and again on the next one (after `pause`) each time
    /// the server says its port is taken, until [`READY`] has passed.
    fn start_on(
        spec: &Spec<'_>,
        log: &Path,
        mut next_port: impl FnMut() -> u16,
        pause: Duration,
    ) -> Server {
        let deadline = Instant::now() + READY;
        let mut clashes = Vec::new();
        loop {
            let port = next_port();
            match Self::try_start(spec, log, port, deadline) {
                Ok(server) => return server,
                Err(log_text) => {
                    clashes.push(port);
                    assert!(
                        Instant::now() < deadline,
                        "{} could not bind a port (tried {clashes:?}):\n{log_text}",
                        spec.what
                    );
                    std::thread::sleep(pause);
                }
            }
        }
    }

    /// One start on `port`: Ok once the server says it listens; Err(log) when it exited because
    /// the port is taken. Any other exit, or no word before `deadline`, fails the test.
    fn try_start(
        spec: &Spec<'_>,
        log: &Path,
        port: u16,
        deadline: Instant,
    ) -> Result<Server, String> {
        let file = std::fs::File::create(log).unwrap();
        let mut cmd = (spec.command)(port);
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({cmd:?}): {e}", spec.what));
        let ready = (spec.ready)(port);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains(&ready) {
                return Ok(Server {
                    port,
                    log: log.to_path_buf(),
                    child,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                if text.contains("Address already in use") {
                    return Err(text);
                }
                panic!("{} exited with {status} on port {port}:\n{text}", spec.what);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not say {ready:?} within {READY:?}:\n{text}",
                    spec.what
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port the kernel has just called free (it may be taken by the time a server binds it: the
/// server says so and [`Server::start`] tries another).
fn kernel_free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `git-daemon` itself, not `git daemon`: the `git` wrapper runs it as a child, and stopping
/// the server must stop the daemon.
pub fn git_daemon() -> PathBuf {
    let exec = String::from_utf8(super::run_program(Command::new("git").arg("--exec-path")))
        .expect("git --exec-path");
    let p = Path::new(exec.trim()).join("git-daemon");
    assert!(
        p.is_file(),
        "this test needs git-daemon: install it with `apt-get install git`"
    );
    p
}

/// `git daemon` serving every repository under `base` (push enabled), verbose so that it says
/// when it listens.
pub fn git_daemon_spec(base: &Path) -> impl Fn(u16) -> Command + use<> {
    let daemon = git_daemon();
    let base = base.to_path_buf();
    move |port| {
        let mut c = Command::new(&daemon);
        c.arg("--reuseaddr")
            .arg("--verbose")
            .arg(format!("--base-path={}", base.display()))
            .args([
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(&base);
        c
    }
}

/// What git daemon logs once it listens.
pub fn git_daemon_ready(_port: u16) -> String {
    "Ready to rumble".to_string()
}

/// sshd in the foreground, logging to stderr, with the config `config(port)` written to
/// `dir/sshd_config` for each port tried. The config must log at INFO or more.
pub fn sshd_spec<F: Fn(u16) -> String>(dir: &Path, config: F) -> impl Fn(u16) -> Command + use<F> {
    let sshd = super::require("sshd", "openssh-server");
    std::fs::create_dir_all("/run/sshd").expect("sshd needs /run/sshd (run the tests as root)");
    let path = dir.join("sshd_config");
    move |port| {
        std::fs::write(&path, config(port)).unwrap();
        let mut c = Command::new(&sshd);
        c.args(["-D", "-e", "-f"]).arg(&path);
        c
    }
}

/// What sshd logs once it listens.
pub fn sshd_ready(port: u16) -> String {
    format!("Server listening on 127.0.0.1 port {port}.")
}

#[test]
fn a_server_whose_port_is_taken_starts_again_on_another() {
    let dir = tempfile::tempdir().unwrap();
    super::run_program(
        Command::new("git")
            .args(["init", "--quiet", "--bare"])
            .arg(dir.path().join("r.git")),
    );
    // The first port offered is held by this test: the daemon must say so, exit, and be
    // started again on the next port offered.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let mut offered = vec![taken];
    let command = git_daemon_spec(dir.path());
    let spec = Spec {
        what: "git daemon",
        ready: &git_daemon_ready,
        command: &command,
    };
    let server = Server::start_on(
        &spec,
        &dir.path().join("daemon.log"),
        || offered.pop().unwrap_or_else(kernel_free_port),
        Duration::ZERO,
    );
    assert_ne!(server.port, taken);
    assert!(offered.is_empty(), "the taken port was never tried");
    // And it is the server on that port: it serves the repository.
    super::run_program(
        Command::new("git")
            .arg("ls-remote")
            .arg(format!("git://127.0.0.1:{}/r.git", server.port)),
    );
    drop(held);
}

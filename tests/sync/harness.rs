//! A fleet of simulated machines (one HOME each, the real binary) around a real forge started by
//! the test on 127.0.0.1: `git daemon` (git://) or OpenSSH's sshd (ssh://).

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Machine, assert_failure, assert_success, require, run_program};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// The transport a forge is served over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `git daemon`, git:// URLs.
    GitDaemon,
    /// sshd, ssh:// URLs.
    Ssh,
}

/// A bare repository served on 127.0.0.1; stopped when dropped.
pub struct Forge {
    pub transport: Transport,
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    /// ssh: the client key every machine uses.
    pub client_key: Option<PathBuf>,
}

impl Forge {
    /// A forge with an empty bare repo `fleet.git` on `main`.
    pub fn start(transport: Transport) -> Forge {
        require("git", "git");
        // sshd's StrictModes refuses a world-writable ancestor, so not under /tmp.
        let dir = crate::util::strict_modes_dir();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bare = dir.path().join("fleet.git");
        run_program(
            Command::new("git")
                .args(["init", "--quiet", "--bare", "-b", "main"])
                .arg(&bare),
        );
        let mut forge = Forge {
            transport,
            dir,
            port: free_port(),
            child: None,
            client_key: None,
        };
        if transport == Transport::Ssh {
            forge.setup_ssh();
        }
        forge.resume();
        forge
    }

    fn setup_ssh(&mut self) {
        let keygen = require("ssh-keygen", "openssh-client");
        let d = self.dir.path();
        for name in ["host_key", "client_key"] {
            run_program(
                Command::new(&keygen)
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                    .arg(d.join(name)),
            );
        }
        let public = std::fs::read_to_string(d.join("client_key.pub")).unwrap();
        std::fs::write(d.join("authorized_keys"), public).unwrap();
        std::fs::set_permissions(
            d.join("authorized_keys"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        self.client_key = Some(d.join("client_key"));
    }

    /// The URL machines use.
    pub fn url(&self) -> String {
        let bare = self.dir.path().join("fleet.git");
        match self.transport {
            Transport::GitDaemon => format!("git://127.0.0.1:{}/fleet.git", self.port),
            Transport::Ssh => format!("ssh://{}@127.0.0.1:{}{}", user(), self.port, bare.display()),
        }
    }

    /// The bare repository.
    pub fn bare(&self) -> PathBuf {
        self.dir.path().join("fleet.git")
    }

    /// Stops serving (the repository stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Serves again on the same port.
    pub fn resume(&mut self) {
        let d = self.dir.path().to_path_buf();
        let log_path = d.join(format!("{:?}.log", self.transport));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = match self.transport {
            // git-daemon itself, not `git daemon`: the `git` wrapper runs it as a child, and
            // stopping the forge must stop the server.
            Transport::GitDaemon => Command::new(git_daemon())
                .arg("--reuseaddr")
                .arg(format!("--base-path={}", d.display()))
                .args([
                    "--export-all",
                    "--enable=receive-pack",
                    "--listen=127.0.0.1",
                ])
                .arg(format!("--port={}", self.port))
                .arg(&d)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start git daemon (apt-get install git)"),
            Transport::Ssh => {
                let sshd = require("sshd", "openssh-server");
                std::fs::create_dir_all("/run/sshd")
                    .expect("sshd needs /run/sshd (run the tests as root)");
                let config = d.join("sshd_config");
                std::fs::write(
                    &config,
                    format!(
                        "Port {}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                         StrictModes yes\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                         KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
                         PidFile {}\nLogLevel ERROR\nMaxStartups 100\n",
                        self.port,
                        d.join("host_key").display(),
                        d.join("authorized_keys").display(),
                        d.join("sshd.pid").display()
                    ),
                )
                .unwrap();
                Command::new(sshd)
                    .args(["-D", "-e", "-f"])
                    .arg(&config)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start sshd")
            }
        };
        self.child = Some(child);
        wait_for_port(self.port, &format!("{:?}", self.transport), &log_path);
    }

    /// The forge's `main`.
    pub fn head(&self) -> String {
        git_out(&self.bare(), &["rev-parse", "main"])
    }
}

impl Drop for Forge {
    fn drop(&mut self) {
        self.stop();
    }
}

fn git_daemon() -> PathBuf {
    let exec = String::from_utf8(run_program(Command::new("git").arg("--exec-path"))).unwrap();
    let p = Path::new(exec.trim()).join("git-daemon");
    assert!(
        p.is_file(),
        "this test needs git-daemon: apt-get install git-daemon-run or git"
    );
    p
}

fn user() -> String {
    String::from_utf8(run_program(Command::new("id").arg("-un")))
        .unwrap()
        .trim()
        .to_string()
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

/// One simulated machine of a fleet.
pub struct Node {
    pub name: String,
    pub m: Machine,
    env: Vec<(String, String)>,
}

impl Node {
    fn new(name: &str, forge: &Forge) -> Node {
        let m = Machine::new();
        let mut env = Vec::new();
        if let Some(key) = &forge.client_key {
            // ssh reads ~/.ssh/config from the passwd entry's home, not $HOME, so each machine
            // points ssh at its own config through GIT_SSH_COMMAND (which fleetkey keeps).
            let ssh_dir = m.home.join(".ssh");
            std::fs::create_dir_all(&ssh_dir).unwrap();
            std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            let config = ssh_dir.join("config");
            std::fs::write(
                &config,
                format!(
                    "Host 127.0.0.1\n  Port {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
                     UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n  LogLevel ERROR\n",
                    forge.port,
                    key.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
            env.push((
                "GIT_SSH_COMMAND".to_string(),
                format!("ssh -F {} -o BatchMode=yes", config.display()),
            ));
        }
        Node {
            name: name.to_string(),
            m,
            env,
        }
    }

    /// A fleetkey command for this machine.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.m.cmd(args);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs fleetkey, whatever the result.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs fleetkey and asserts success.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(&out, args);
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs fleetkey and asserts it fails with `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_failure(&out, args, code);
        String::from_utf8(out.stderr).unwrap()
    }

    /// Runs fleetkey with `stdin` and asserts success.
    pub fn ok_with_stdin(&self, args: &[&str], stdin: &[u8]) -> String {
        use std::io::Write;
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_success(&out, args);
        String::from_utf8(out.stdout).unwrap()
    }

    /// `fleetkey sync`.
    pub fn sync(&self) -> String {
        self.ok(&["sync"])
    }

    /// `$HOME/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.m.home.join(rel)
    }

    /// Writes `$HOME/rel`.
    pub fn write(&self, rel: &str, bytes: &[u8]) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    /// Reads `$HOME/rel` (empty when missing).
    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_default()
    }

    /// Reads `$HOME/rel` as text.
    pub fn text(&self, rel: &str) -> String {
        String::from_utf8(self.read(rel)).unwrap()
    }

    /// The fleet clone.
    pub fn repo(&self) -> PathBuf {
        self.m.repo()
    }

    /// Conflict copies of `$HOME/rel` on this machine.
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

    /// Asserts the clone is healthy: fsck clean, no rebase or merge state, no lock files.
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
        ] {
            assert!(
                !repo.join(".git").join(leftover).exists(),
                "{} left {leftover} behind",
                self.name
            );
        }
        let status = git_out(&repo, &["status", "--porcelain"]);
        assert!(
            status.is_empty(),
            "{} has a dirty clone:\n{status}",
            self.name
        );
    }
}

/// A fleet: a forge and machines, the first started with `init`, the others joined.
pub struct Fleet {
    pub forge: Forge,
    pub nodes: Vec<Node>,
}

impl Fleet {
    /// A forge over `transport` and machines named `names`, all in step.
    pub fn new(transport: Transport, names: &[&str]) -> Fleet {
        let forge = Forge::start(transport);
        let url = forge.url();
        let mut nodes = Vec::new();
        let first = Node::new(names[0], &forge);
        first.ok(&["init", "--name", names[0], "--remote", &url]);
        for name in &names[1..] {
            let n = Node::new(name, &forge);
            join(&first, &n, &url);
            nodes.push(n);
        }
        nodes.insert(0, first);
        Fleet { forge, nodes }
    }

    /// Machine `i`.
    pub fn n(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Syncs every machine in order, `rounds` times.
    pub fn settle(&self, rounds: usize) {
        for _ in 0..rounds {
            for n in &self.nodes {
                n.sync();
            }
        }
    }
}

/// Sets up `new` as a member of `first`'s fleet.
///
/// `enroll`/`approve` are not on this branch yet, so the test does by hand what they will do:
/// clone the forge into the new machine's default clone path, write its config.toml, and give it
/// a copy of the first machine's age identity (so it can read and merge the secrets). Replace
/// with `enroll` + `approve` once they exist.
pub fn join(first: &Node, new: &Node, url: &str) {
    let repo = new.repo();
    std::fs::create_dir_all(repo.parent().unwrap()).unwrap();
    let mut clone = Command::new("git");
    clone
        .env("HOME", &new.m.home)
        .envs(new.env.iter().map(|(k, v)| (k, v)))
        .args(["clone", "--quiet", "--branch", "main", "--", url])
        .arg(&repo);
    run_program(&mut clone);
    let config_dir = new.m.home.join(".config/fleetkey");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::set_permissions(&config_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(first.m.identity(), new.m.identity()).unwrap();
    std::fs::set_permissions(new.m.identity(), std::fs::Permissions::from_mode(0o600)).unwrap();
    // Signed history: the same signing key (a member's), and the clone's tip as trust root.
    let signing_key = config_dir.join("signing_key");
    std::fs::copy(
        first.m.home.join(".config/fleetkey/signing_key"),
        &signing_key,
    )
    .unwrap();
    std::fs::set_permissions(&signing_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let head = run_program(
        Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["rev-parse", "HEAD"]),
    );
    let head = String::from_utf8(head).unwrap();
    let config = config_dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"{}\"\nbackend = \"native\"\nrepo = \"{}\"\nremote = \"{url}\"\ntrust_root = \"{}\"\n",
            new.name,
            repo.display(),
            head.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
}

//! A forge the test starts: a bare repository `fleet.git` on `main`, served on 127.0.0.1 by
//! `git daemon` (git://) or OpenSSH's sshd (ssh://), that can be stopped and served again on the
//! same port (the URL every machine holds).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use super::server::{self, Server, Spec};
use super::{Machine, git_out, require, run_program};

/// The transport a forge is served over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `git daemon`, git:// URLs.
    GitDaemon,
    /// sshd, ssh:// URLs.
    Ssh,
}

/// A bare repo served on 127.0.0.1; stopped when dropped.
pub struct Forge {
    pub transport: Transport,
    pub dir: tempfile::TempDir,
    pub port: u16,
    server: Option<Server>,
    /// ssh: the key the machines reach the forge with (their forge account, not their fleet
    /// key: `enroll` clones before it makes the machine's keys).
    pub client_key: Option<PathBuf>,
}

impl Drop for Forge {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Forge {
    /// A forge with an empty bare repo `fleet.git` on `main`, serving.
    pub fn start(transport: Transport) -> Forge {
        require("git", "git");
        // sshd's StrictModes refuses a world-writable ancestor, so not under /tmp.
        let dir = super::strict_modes_dir();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        run_program(
            Command::new("git")
                .args(["init", "--quiet", "--bare", "-b", "main"])
                .arg(dir.path().join("fleet.git")),
        );
        let mut forge = Forge {
            transport,
            dir,
            port: 0,
            server: None,
            client_key: None,
        };
        if transport == Transport::Ssh {
            forge.setup_ssh();
        }
        forge.serve(None);
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

    fn serve(&mut self, port: Option<u16>) {
        let d = self.dir.path().to_path_buf();
        let log = d.join(format!("{:?}.log", self.transport));
        let server = match self.transport {
            Transport::GitDaemon => {
                let command = server::git_daemon_spec(&d);
                let spec = Spec {
                    what: "git daemon",
                    ready: &server::git_daemon_ready,
                    command: &command,
                };
                Server::start(&spec, &log, port)
            }
            Transport::Ssh => {
                let config = |port: u16| {
                    format!(
                        "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                         StrictModes yes\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                         KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
                         PidFile {}\nLogLevel INFO\nMaxStartups 100\n",
                        d.join("host_key").display(),
                        d.join("authorized_keys").display(),
                        d.join("sshd.pid").display()
                    )
                };
                let command = server::sshd_spec(&d, config);
                let spec = Spec {
                    what: "sshd",
                    ready: &server::sshd_ready,
                    command: &command,
                };
                Server::start(&spec, &log, port)
            }
        };
        self.port = server.port;
        self.server = Some(server);
    }

    /// The URL machines use.
    pub fn url(&self) -> String {
        match self.transport {
            Transport::GitDaemon => format!("git://127.0.0.1:{}/fleet.git", self.port),
            Transport::Ssh => format!(
                "ssh://{}@127.0.0.1:{}{}",
                user(),
                self.port,
                self.bare().display()
            ),
        }
    }

    /// The bare repository.
    pub fn bare(&self) -> PathBuf {
        self.dir.path().join("fleet.git")
    }

    /// Stops serving (the repository stays): the machines find the forge unreachable. Over
    /// ssh, the multiplexed master connection is closed too, or it would go on serving.
    pub fn stop(&mut self) {
        self.server = None;
        if self.transport == Transport::Ssh {
            let _ = Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", self.mux().display()))
                .args(["-O", "exit", "127.0.0.1"])
                .output();
        }
    }

    /// The control socket of the machines' shared ssh connection.
    fn mux(&self) -> PathBuf {
        self.dir.path().join("ssh-mux")
    }

    /// Serves again on the same port.
    pub fn resume(&mut self) {
        assert!(self.server.is_none(), "the forge is already serving");
        self.serve(Some(self.port));
    }

    /// The forge's `main`.
    pub fn head(&self) -> String {
        git_out(&self.bare(), &["rev-parse", "main"])
    }

    /// How many commits the forge's `main` holds.
    pub fn commits(&self) -> usize {
        git_out(&self.bare(), &["rev-list", "--count", "main"])
            .parse()
            .unwrap()
    }

    /// A fresh machine called `name` that reaches this forge (over ssh: with the forge's client
    /// key, through its own ssh config outside its HOME, passed in GIT_SSH_COMMAND, which
    /// fleetkey keeps; ssh reads ~/.ssh/config from the passwd entry's home, not $HOME).
    pub fn machine(&self, name: &str) -> Machine {
        let mut m = Machine::named(name);
        if let Some(key) = &self.client_key {
            let config = m.dir.path().join("ssh_config");
            std::fs::write(
                &config,
                format!(
                    "Host 127.0.0.1\n  Port {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
                     UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n  LogLevel ERROR\n  \
                     ControlMaster auto\n  ControlPath {}\n  ControlPersist 5\n",
                    self.port,
                    key.display(),
                    self.mux().display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
            m.set_env(
                "GIT_SSH_COMMAND",
                format!("ssh -F {} -o BatchMode=yes", config.display()),
            );
        }
        m
    }
}

fn user() -> String {
    String::from_utf8(run_program(Command::new("id").arg("-un")))
        .unwrap()
        .trim()
        .to_string()
}

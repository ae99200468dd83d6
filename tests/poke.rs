//! Peer pokes against a real sshd: machines are real local users (`useradd`, a HOME each), so
//! one sshd on 127.0.0.1 gives every login its own HOME, passwd entry and minimal PATH, the way
//! a peer's sshd does. The forge is a git daemon. These tests run as root (CI does) and fail,
//! saying so, otherwise; every user they create is removed (`userdel -r`) when the test ends,
//! failed or not.
//!
//! - A saves with both watchers running; B's live file changes through the poke path (B's
//!   watcher logs the poke) well before B's poll, although fleetkey is on no PATH sshd gives.
//! - A poke key runs nothing but the poke: a command asked for is ignored, a pty refused; a
//!   hostile address is refused before it reaches ssh.
//! - With B's address unreachable, B catches up at its poll.
//! - `revoke c` on A pokes B, whose authorized_keys loses C's key without waiting for a poll.
//! - A watcher over an ssh:// forge, reached through fleetkey's own multiplexed ssh command (the
//!   user's ~/.ssh/config, no GIT_SSH_COMMAND), follows `remote set` to a second ssh forge: its
//!   next cycle reaches the new forge over a connection of its own, not the old forge's.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::forge::{Forge, Transport};
use crate::util::server::{self, Server, Spec};
use crate::util::{bin, require, run_program, wait_for};

/// How long a setup step (a watcher's start, a cycle) may take.
const STEP: Duration = Duration::from_secs(20);

pub(crate) fn require_root() {
    let uid = String::from_utf8(run_program(Command::new("id").arg("-u"))).unwrap();
    assert_eq!(
        uid.trim(),
        "0",
        "the poke tests create local users and run sshd: run them as root (as CI does), e.g. `sudo -E cargo test --test tests poke::`"
    );
    require("useradd", "passwd");
    require("sshd", "openssh-server");
    require("ssh", "openssh-client");
}

/// A local user made for one test: a machine with its own HOME. Removed when dropped, with
/// every process the test started as it.
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) machine: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: PathBuf,
    watcher: Option<(Child, PathBuf)>,
}

static SERIAL: AtomicUsize = AtomicUsize::new(0);

impl User {
    /// `useradd -m` a user for machine `machine` (a password field of `*`: no password, but
    /// not locked, so sshd lets its keys in).
    fn create(machine: &str) -> User {
        let name = format!(
            "fkp{}{}{machine}",
            std::process::id() % 100_000,
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        run_program(
            Command::new(require("useradd", "passwd"))
                .args(["-m", "-s", "/bin/sh", "-p", "*"])
                .arg(&name),
        );
        let id = |flag: &str| -> u32 {
            String::from_utf8(run_program(Command::new("id").arg(flag).arg(&name)))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let home = PathBuf::from(format!("/home/{name}"));
        assert!(home.is_dir(), "useradd -m made no {}", home.display());
        User {
            uid: id("-u"),
            gid: id("-g"),
            name,
            machine: machine.to_string(),
            home,
            watcher: None,
        }
    }

    /// A command run as this user, with only what a login gives: HOME, USER, a PATH without
    /// fleetkey's directory.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .current_dir(&self.home)
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null());
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(bin()).args(args).output().unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} ({}): fleetkey {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.machine,
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.home.join(rel)
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.home.join(".local/state/fleetkey")
    }

    /// Writes `rel` as this user would (owned by them).
    pub(crate) fn write(&self, rel: &str, text: &str) {
        let tmp = self.path(&format!("{rel}.tmp-save"));
        std::fs::write(&tmp, text).unwrap();
        std::os::unix::fs::chown(&tmp, Some(self.uid), Some(self.gid)).unwrap();
        std::fs::rename(&tmp, self.path(rel)).unwrap();
    }

    pub(crate) fn text(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// Trusts sshd's host key for 127.0.0.1:PORT in this user's own known_hosts (what a user
    /// does once per peer).
    fn trust_host(&self, port: u16, host_pub: &str) {
        let ssh = self.path(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::write(
            ssh.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}\n"),
        )
        .unwrap();
        for p in [&ssh, &ssh.join("known_hosts")] {
            std::os::unix::fs::chown(p, Some(self.uid), Some(self.gid)).unwrap();
        }
    }

    pub(crate) fn address(&self, port: u16) -> String {
        format!("ssh://{}@127.0.0.1:{port}", self.name)
    }

    /// Starts `fleetkey watch` (debug log) and waits until its watches and poke socket are in
    /// place and its start-up cycle finished.
    pub(crate) fn start_watcher(&mut self) {
        let ready = self.state().join("watch-ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::env::temp_dir().join(format!("{}-watch.log", self.name));
        let child = self
            .command(bin())
            .arg("watch")
            .env("FLEETKEY_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let pid = format!("{}\n", child.id());
        self.watcher = Some((child, log));
        wait_for(
            STEP,
            || {
                format!(
                    "{}'s watcher never got ready:\n{}",
                    self.machine,
                    self.log()
                )
            },
            || (std::fs::read_to_string(&ready).ok()? == pid).then_some(()),
        );
        wait_for(
            STEP,
            || {
                format!(
                    "{}'s watcher never finished its first cycle:\n{}",
                    self.machine,
                    self.log()
                )
            },
            || self.state().join("last-cycle.json").exists().then_some(()),
        );
    }

    pub(crate) fn log(&self) -> String {
        self.watcher
            .as_ref()
            .map(|(_, log)| std::fs::read_to_string(log).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The last poke of `peer` this machine recorded: (reached, error).
    fn last_poke(&self, peer: &User) -> Option<(bool, String)> {
        let text = std::fs::read_to_string(self.state().join("pokes.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let r = v.get(&peer.machine)?;
        Some((
            r["reached"].as_bool()?,
            r["error"].as_str().unwrap_or_default().to_string(),
        ))
    }
}

impl Drop for User {
    fn drop(&mut self) {
        if let Some((mut child, log)) = self.watcher.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(log);
        }
        // -f: also when an ssh session of the test is still closing.
        let _ = Command::new("userdel")
            .args(["-r", "-f"])
            .arg(&self.name)
            .stderr(Stdio::null())
            .status();
    }
}

/// One sshd on 127.0.0.1 for every user: their own ~/.ssh/authorized_keys (StrictModes on),
/// keys only, and the minimal PATH sshd gives a non-interactive session.
struct Sshd {
    server: Server,
    host_pub: String,
    _dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Sshd {
        let dir = crate::util::strict_modes_dir();
        let host_key = dir.path().join("host_key");
        run_program(
            Command::new(require("ssh-keygen", "openssh-client"))
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "host", "-f"])
                .arg(&host_key),
        );
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let host_pub = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let d = dir.path().to_path_buf();
        let config = move |port: u16| {
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\n\
                 AuthorizedKeysFile .ssh/authorized_keys\nStrictModes yes\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin no\n\
                 PidFile {}\nLogLevel VERBOSE\nMaxStartups 100\n",
                d.join("host_key").display(),
                d.join("sshd.pid").display()
            )
        };
        let command = server::sshd_spec(dir.path(), config);
        let spec = Spec {
            what: "sshd",
            ready: &server::sshd_ready,
            command: &command,
        };
        let server = Server::start(&spec, &dir.path().join("sshd.log"), None);
        Sshd {
            server,
            host_pub,
            _dir: dir,
        }
    }
}

/// A fleet of real users around a git daemon forge, every machine with an address on one
/// sshd, each admitting the others' poke keys.
pub(crate) struct PokeFleet {
    pub(crate) users: Vec<User>,
    sshd: Sshd,
    pub(crate) forge: Forge,
}

impl PokeFleet {
    pub(crate) fn new(names: &[&str]) -> PokeFleet {
        let roles: Vec<(&str, &str)> = names.iter().map(|n| (*n, "admin")).collect();
        PokeFleet::with_roles(&roles)
    }

    /// [`PokeFleet::new`] with each machine's role: the first is the founder (an admin); each
    /// other is approved with its role by the last admin before it.
    pub(crate) fn with_roles(machines: &[(&str, &str)]) -> PokeFleet {
        let names: Vec<&str> = machines.iter().map(|(n, _)| *n).collect();
        require_root();
        let forge = Forge::start(Transport::GitDaemon);
        let url = forge.url();
        let sshd = Sshd::start();
        let port = sshd.server.port;
        let users: Vec<User> = names.iter().map(|n| User::create(n)).collect();
        for u in &users {
            u.trust_host(port, &sshd.host_pub);
        }
        let first = &users[0];
        first.ok(&[
            "init",
            "--name",
            &first.machine,
            "--remote",
            &url,
            "--address",
            &first.address(port),
        ]);
        for (i, new) in users.iter().enumerate().skip(1) {
            let out = new.ok(&[
                "enroll",
                &new.machine,
                "--remote",
                &url,
                "--address",
                &new.address(port),
            ]);
            let code = crate::util::code_in(&out, &new.machine);
            let approver = (0..i).rev().find(|&j| machines[j].1 == "admin").unwrap();
            users[approver].ok(&[
                "approve",
                &new.machine,
                "--code",
                &code,
                "--role",
                machines[i].1,
            ]);
            new.ok(&["sync"]);
        }
        // Two rounds: each machine publishes its poke key and address, then every machine
        // merges the others' into its authorized_keys.
        for _ in 0..2 {
            for u in &users {
                u.ok(&["sync"]);
            }
        }
        PokeFleet { users, sshd, forge }
    }

    /// Sets the fleet's poll, committed by hand (signed) on the first machine, synced by all:
    /// with a poll of an hour, only a poke brings a change within the test's deadline.
    pub(crate) fn set_poll(&self, poll: &str) {
        let a = &self.users[0];
        let clone = a.home.join(".local/share/fleetkey/fleet");
        let toml = clone.join("fleet.toml");
        let text = std::fs::read_to_string(&toml).unwrap();
        assert!(
            text.contains("poll = \"15s\""),
            "the default poll is 15 s:\n{text}"
        );
        std::fs::write(
            &toml,
            text.replace("poll = \"15s\"", &format!("poll = \"{poll}\"")),
        )
        .unwrap();
        let key = a.home.join(".config/fleetkey/signing_key");
        for args in [&["add", "-A"][..], &["commit", "-qm", "test: poll"]] {
            let out = a
                .command("git")
                .arg("-C")
                .arg(&clone)
                .args(["-c", "gpg.format=ssh", "-c", "commit.gpgsign=true"])
                .arg("-c")
                .arg(format!("user.signingkey={}", key.display()))
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
        }
        for u in &self.users {
            u.ok(&["sync"]);
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.sshd.server.port
    }

    /// A shared file, tracked on the first machine and pulled by all.
    pub(crate) fn track(&self, rel: &str, text: &str) {
        self.users[0].write(rel, text);
        self.users[0].ok(&["track", &format!("~/{rel}")]);
        for u in &self.users[1..] {
            u.ok(&["sync"]);
            assert_eq!(u.text(rel), text, "{} did not get {rel}", u.machine);
        }
    }
}

/// The ssh options of every test connection: no prompt, only the key given, a short timeout.
pub(crate) const SSH_BATCH: [&str; 6] = [
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "ConnectTimeout=5",
];

/// ssh as `from` with `key` to `to`'s account, asking to run `command`.
pub(crate) fn ssh_as(
    from: &User,
    key: &Path,
    to: &User,
    port: u16,
    extra: &[&str],
    command: &str,
) -> Output {
    from.command(require("ssh", "openssh-client"))
        .args(SSH_BATCH)
        .args(extra)
        .arg("-i")
        .arg(key)
        .args(["-p", &port.to_string(), "--"])
        .arg(format!("{}@127.0.0.1", to.name))
        .arg(command)
        .output()
        .unwrap()
}

#[test]
fn a_save_reaches_a_poked_peer_at_once_and_a_poke_key_runs_nothing_else() {
    let mut fleet = PokeFleet::new(&["a", "b"]);
    let port = fleet.port();
    fleet.track(".zshrc", "one\n");
    fleet.set_poll("1h");
    let b_keys = fleet.users[1].text(".ssh/authorized_keys");
    assert!(
        b_keys
            .lines()
            .any(|l| l.starts_with("restrict,command=\"'/")
                && l.contains(" poke\" ssh-ed25519 ")
                && l.ends_with(" fleetkey-poke=a")),
        "b admits a's poke key only for the poke:\n{b_keys}"
    );
    // sshd's PATH for a session does not hold fleetkey: the forced command's absolute path is
    // what makes the poke work.
    let dir = bin().parent().unwrap().to_path_buf();
    for p in ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        assert_ne!(Path::new(p), dir);
        assert!(
            !Path::new(p).join("fleetkey").exists(),
            "{p}/fleetkey exists"
        );
    }

    for i in 0..2 {
        fleet.users[i].start_watcher();
    }
    let (a, b) = (&fleet.users[0], &fleet.users[1]);
    let saved = Instant::now();
    a.write(".zshrc", "two\n");
    // settle 2 s, then push and poke; the poll (an hour) cannot be what brings it.
    wait_for(
        Duration::from_secs(12),
        || format!("b never got a's save\n{}\n{}", a.log(), b.log()),
        || (b.text(".zshrc") == "two\n").then_some(()),
    );
    let took = saved.elapsed();
    assert!(
        b.log().contains("poked by a peer: pulling now"),
        "b pulled without being poked ({took:?}):\n{}",
        b.log()
    );
    assert_eq!(a.last_poke(b), Some((true, String::new())), "{}", a.log());
    let status = a.ok(&["status"]);
    assert!(
        status.contains(&format!("b at {}: last poke reached it", b.address(port))),
        "{status}"
    );

    // The poke key runs nothing but the poke: the command asked for is ignored...
    let a_poke = a.path(".config/fleetkey/poke_key");
    let pwned = std::env::temp_dir().join(format!("pwned-{}", b.name));
    let _ = std::fs::remove_file(&pwned);
    let out = ssh_as(
        a,
        &a_poke,
        b,
        port,
        &[],
        &format!("touch {}", pwned.display()),
    );
    assert!(
        out.status.success(),
        "the forced poke itself succeeds: {out:?}"
    );
    assert!(
        !pwned.exists(),
        "a poke key ran a command of its own choosing"
    );
    // ... a pty, forwarding and a subsystem are refused or ignored the same way.
    let out = ssh_as(
        a,
        &a_poke,
        b,
        port,
        &["-tt", "-L", "1:127.0.0.1:1"],
        "id > /tmp/x",
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("uid="),
        "{out:?}"
    );
    let sftp = ssh_as(a, &a_poke, b, port, &["-s"], "sftp");
    assert!(
        !String::from_utf8_lossy(&sftp.stdout).contains("SSH_FXP"),
        "{sftp:?}"
    );

    // A hostile address never reaches ssh.
    let hostile = "-oProxyCommand=touch /tmp/fleetkey-hostile";
    let out = a.run(&["address", "set", "--", hostile]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("ProxyCommand"));
    assert!(!Path::new("/tmp/fleetkey-hostile").exists());
}

#[test]
fn a_peer_that_cannot_be_poked_catches_up_at_its_poll() {
    let mut fleet = PokeFleet::new(&["a", "b"]);
    fleet.track(".zshrc", "one\n");
    // b's address now points at a closed port: pokes fail, b still polls.
    fleet.users[1].ok(&["address", "set", "ssh://nobody@127.0.0.1:1"]);
    fleet.users[0].ok(&["sync"]);
    for i in 0..2 {
        fleet.users[i].start_watcher();
    }
    let (a, b) = (&fleet.users[0], &fleet.users[1]);
    a.write(".zshrc", "two\n");
    // settle (2 s) + poll (15 s) + slack.
    wait_for(
        Duration::from_secs(30),
        || format!("b never caught up\n{}\n{}", a.log(), b.log()),
        || (b.text(".zshrc") == "two\n").then_some(()),
    );
    assert!(!b.log().contains("poked by a peer"), "{}", b.log());
    let (reached, error) = wait_for(
        STEP,
        || format!("a recorded no poke of b\n{}", a.log()),
        || a.last_poke(b),
    );
    assert!(!reached, "a poke of a closed port reached it");
    assert!(error.to_lowercase().contains("refused"), "{error}");
    let doctor = a.run(&["doctor"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("warn  poke b") && l.contains("Remote Login")),
        "{text}"
    );
}

#[test]
fn revoke_pokes_the_remaining_peers_and_they_drop_the_key_at_once() {
    let mut fleet = PokeFleet::new(&["a", "b", "c"]);
    let c_key = {
        let line = fleet.users[2].text(".ssh/id_ed25519.pub");
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    assert!(fleet.users[1].text(".ssh/authorized_keys").contains(&c_key));
    fleet.set_poll("1h");
    fleet.users[1].start_watcher();
    let (a, b) = (&fleet.users[0], &fleet.users[1]);
    let revoked = Instant::now();
    let out = a.ok(&["revoke", "c", "--yes"]);
    assert!(out.contains("delivered to 1 of 1 peers (b)"), "{out}");
    wait_for(
        Duration::from_secs(10),
        || format!("b still admits c's key\n{}", b.log()),
        || (!b.text(".ssh/authorized_keys").contains(&c_key)).then_some(()),
    );
    assert!(
        b.log().contains("poked by a peer: pulling now"),
        "b dropped the key without a poke ({:?}):\n{}",
        revoked.elapsed(),
        b.log()
    );
    // c's poke key left b's authorized_keys too.
    assert!(!b.text(".ssh/authorized_keys").contains("fleetkey-poke=c"));
}

/// Gives `user` what a person reaching these ssh forges has: each forge's account key and host
/// key in their own ~/.ssh (config and known_hosts), strict host key checking on. No
/// GIT_SSH_COMMAND: fleetkey's own ssh command (multiplexed) is what git runs.
fn reach_ssh_forges(user: &User, forges: &[&Forge]) {
    let ssh = user.path(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let mut config = String::from(
        "Host 127.0.0.1\n  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n",
    );
    let mut known = String::new();
    let mut files = vec![ssh.join("config"), ssh.join("known_hosts")];
    for (i, f) in forges.iter().enumerate() {
        let key = ssh.join(format!("forge{i}_key"));
        std::fs::copy(f.client_key.as_ref().unwrap(), &key).unwrap();
        config.push_str(&format!("  IdentityFile {}\n", key.display()));
        let host = std::fs::read_to_string(f.dir.path().join("host_key.pub")).unwrap();
        let host: Vec<&str> = host.split_whitespace().take(2).collect();
        known.push_str(&format!("[127.0.0.1]:{} {}\n", f.port, host.join(" ")));
        files.push(key);
    }
    std::fs::write(ssh.join("config"), config).unwrap();
    std::fs::write(ssh.join("known_hosts"), known).unwrap();
    for p in files.iter().chain([&ssh]) {
        std::os::unix::fs::chown(p, Some(user.uid), Some(user.gid)).unwrap();
        let mode = if p == &ssh { 0o700 } else { 0o600 };
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
}

/// Makes `forge` serve its own repository only (a forced command that refuses any other
/// path), so a session that reaches it while meaning another forge fails instead of being
/// served from the same disk.
fn serve_only_itself(forge: &Forge) {
    let only = forge.dir.path().join("only-here.sh");
    let bare = forge.bare();
    std::fs::write(
        &only,
        format!(
            "#!/bin/sh\ncase \"$SSH_ORIGINAL_COMMAND\" in\n  *\"'{}'\") exec sh -c \"$SSH_ORIGINAL_COMMAND\" ;;\nesac\necho \"this forge serves only {}\" >&2\nexit 1\n",
            bare.display(),
            bare.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&only, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let public =
        std::fs::read_to_string(forge.client_key.as_ref().unwrap().with_extension("pub")).unwrap();
    std::fs::write(
        forge.dir.path().join("authorized_keys"),
        format!("command=\"{}\" {public}", only.display()),
    )
    .unwrap();
}

/// The ControlMaster sockets fleetkey made in `user`'s state directory.
fn control_sockets(user: &User) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(user.state())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("cm-"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn a_watcher_over_ssh_follows_remote_set_to_another_ssh_forge_and_its_next_cycle_reaches_it() {
    require_root();
    let one = Forge::start(Transport::Ssh);
    let two = Forge::start(Transport::Ssh);
    serve_only_itself(&one);
    let mut a = User::create("a");
    reach_ssh_forges(&a, &[&one, &two]);
    a.ok(&["init", "--name", "a", "--remote", &one.url()]);
    a.write(".zshrc", "one\n");
    a.ok(&["track", "~/.zshrc"]);
    a.start_watcher();
    // The watcher talks to forge one over a multiplexed connection of fleetkey's own.
    wait_for(
        STEP,
        || format!("no ControlMaster socket for forge one:\n{}", a.log()),
        || (control_sockets(&a).len() == 1).then_some(()),
    );
    let first = control_sockets(&a);

    let out = a.ok(&["remote", "set", &two.url()]);
    assert!(out.contains("the fleet moved"), "{out}");
    a.write(".zshrc", "two\n");
    // The watcher's next cycle follows the move and pushes the save to forge two; through forge
    // one's connection it would be refused (forge one serves only its own repository).
    wait_for(
        Duration::from_secs(40),
        || {
            format!(
                "the save never reached forge two\nwatcher:\n{}\nforge two's main: {:?}",
                a.log(),
                Command::new("git")
                    .arg("-C")
                    .arg(two.bare())
                    .args(["show", "main:home/.zshrc"])
                    .output()
            )
        },
        || {
            let out = Command::new("git")
                .arg("-C")
                .arg(two.bare())
                .args(["show", "main:home/.zshrc"])
                .output()
                .ok()?;
            (out.stdout == b"two\n").then_some(())
        },
    );
    let sockets = control_sockets(&a);
    assert_eq!(
        sockets.len(),
        2,
        "forge two has a connection of its own: {sockets:?}"
    );
    assert!(sockets.contains(&first[0]), "{sockets:?}");
    let config = a.text(".config/fleetkey/config.toml");
    assert!(config.contains(&two.url()), "{config}");
    // Nothing of the save went to forge one after the move.
    let on_one = Command::new("git")
        .arg("-C")
        .arg(one.bare())
        .args(["show", "main:home/.zshrc"])
        .output()
        .unwrap();
    assert_eq!(on_one.stdout, b"one\n");
}

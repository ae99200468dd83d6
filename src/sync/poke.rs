//! Peer pokes: after a push, this machine tells each peer that has an address to pull now, over
//! SSH, with a key that can do nothing else.
//!
//! - **The key.** Each machine has a poke key (`~/.config/fleetkey/poke_key`, OpenSSH ed25519,
//!   0600), made on demand and published by the machine itself as `keys/NAME.poke.pub` with
//!   its first cycle as a member ([`publish_key`]). Every other machine's authorized_keys merge
//!   admits it as `restrict,command="/abs/path/fleetkey poke" … fleetkey-poke=NAME` (see
//!   [`crate::authorized_keys::Poke`]): no pty, no forwarding, and sshd runs that command
//!   whatever the client asked for. The path is the receiving machine's own binary, so the
//!   peer's login PATH never matters.
//! - **Sending** ([`poke_peers`]): one `ssh -o BatchMode=yes -o ConnectTimeout=3 -i poke_key
//!   -o IdentitiesOnly=yes -- DEST fleetkey-poke` per peer, all in parallel, each bounded by
//!   [`ATTEMPT`] and retried once; the outcome of each is logged at debug level and kept in
//!   `pokes.json` in the state directory for `status`. The address was checked by
//!   [`crate::address`] (it cannot be an ssh option) and follows `--`.
//! - **Receiving** ([`notify_watcher`], [`Inbox`]): `fleetkey poke` sends one datagram to the
//!   unix socket `poke.sock` in the state directory (0700, so only this user can) and exits 0;
//!   the watcher's loop receives it as one more event and runs a cycle at once. It reads
//!   nothing from the SSH client. With no watcher running it does nothing.
//!
//! Must never: delay or fail a cycle (the sender runs beside it), let anything read from the
//! forge reach ssh as an option, or let a poke do more than wake the watcher.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::error::Result;
use crate::fleet::Machine;
use crate::paths::Paths;
use crate::repo::FleetRepo;
use crate::roster::{Roster, layout};
use crate::signing::SigningKey;

/// The watcher's socket in the state directory.
pub const SOCKET: &str = "poke.sock";
/// The outcome of the last poke of each peer, in the state directory.
pub const STATE: &str = "pokes.json";
/// How long one ssh attempt may take, connect and command (ConnectTimeout is 3 s of it).
pub const ATTEMPT: Duration = Duration::from_secs(8);

/// This machine's poke key: the existing one, or a new one (see [`crate::setup::poke_key`]).
pub fn ensure_key(paths: &Paths, name: &str) -> Result<SigningKey> {
    crate::setup::poke_key(paths, name)
}

/// Publishes this machine's poke key as `keys/NAME.poke.pub` when the clone does not hold it
/// yet (a signed commit of that one file). Returns whether it committed.
pub fn publish_key(machine: &Machine, repo: &FleetRepo) -> Result<bool> {
    let name = &machine.config.name;
    let key = ensure_key(&machine.paths, name)?;
    let rel = layout::poke_pub(layout::KEYS, name);
    let want = format!("{}\n", key.public_line());
    let path = repo.root().join(&rel);
    if std::fs::read(&path).ok().as_deref() == Some(want.as_bytes()) {
        return Ok(false);
    }
    crate::files::write_atomic(&path, want.as_bytes(), 0o644)?;
    repo.commit_paths(&[&rel], &format!("{name}: publish its poke key"))?;
    Ok(true)
}

/// The state file holding an address asked for (`--address`) before this machine could commit
/// it: its first cycle as a member does.
pub const WANTED: &str = "address.wanted";

/// Commits the address `--address` asked for, once this machine is a member. Returns whether
/// it committed.
pub fn adopt_wanted_address(machine: &Machine, repo: &FleetRepo) -> Result<bool> {
    let path = machine.paths.state_dir.join(WANTED);
    let Ok(text) = crate::files::read_text(&path, 1024) else {
        return Ok(false);
    };
    let Ok(address) = Address::parse(text.trim()) else {
        crate::log::warn("the address kept for this machine is not an ssh destination; dropped");
        let _ = std::fs::remove_file(&path);
        return Ok(false);
    };
    let name = &machine.config.name;
    let mut fleet = crate::config::FleetConfig::load(repo.root())?;
    let mut committed = false;
    if fleet.address(name).as_ref() != Some(&address) {
        fleet.set_address(name, Some(&address));
        let file = crate::config::FleetConfig::FILE;
        crate::files::write_atomic(&repo.root().join(file), fleet.file_text().as_bytes(), 0o644)?;
        repo.commit_paths(&[file], &format!("{name}: set its address to {address}"))?;
        committed = true;
    }
    let _ = std::fs::remove_file(&path);
    Ok(committed)
}

/// A peer to poke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its machine name.
    pub name: String,
    /// Its checked address.
    pub address: Address,
}

/// The active members other than this one that have an address, by the fleet.toml in force.
pub fn peers(machine: &Machine) -> Vec<Peer> {
    let Ok(fleet) = machine.fleet_config() else {
        return Vec::new();
    };
    let Ok(roster) = Roster::load(&machine.config.repo) else {
        return Vec::new();
    };
    roster
        .active
        .iter()
        .filter(|m| m.name != machine.config.name)
        .filter_map(|m| {
            fleet.address(&m.name).map(|address| Peer {
                name: m.name.clone(),
                address,
            })
        })
        .collect()
}

/// The outcome of the last poke of one peer, as `pokes.json` keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PokeRecord {
    /// The address poked.
    pub address: String,
    /// When (RFC 3339).
    pub at: String,
    /// Whether ssh reached it and the forced command ran.
    pub reached: bool,
    /// ssh's last error line, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The last poke of each peer, by name (empty when none was recorded).
pub fn load_state(state_dir: &Path) -> BTreeMap<String, PokeRecord> {
    std::fs::read(state_dir.join(STATE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Pokes every peer in parallel (each retried once), records the outcomes in `pokes.json`, and
/// returns them. Blocks for at most about twice [`ATTEMPT`].
pub fn poke_peers(machine: &Machine, peers: &[Peer]) -> BTreeMap<String, PokeRecord> {
    if peers.is_empty() {
        return BTreeMap::new();
    }
    let key = match ensure_key(&machine.paths, &machine.config.name) {
        Ok(_) => machine.paths.poke_key_file(),
        Err(e) => {
            crate::log::debug(&format!("no poke key, no pokes: {e}"));
            return BTreeMap::new();
        }
    };
    let threads: Vec<_> = peers
        .iter()
        .cloned()
        .map(|peer| {
            let key = key.clone();
            std::thread::spawn(move || {
                let mut result = ssh_poke(&key, &peer.address);
                if let Err(e) = &result {
                    crate::log::debug(&format!("poke of {} failed ({e}); retrying", peer.name));
                    result = ssh_poke(&key, &peer.address);
                }
                match &result {
                    Ok(()) => {
                        crate::log::debug(&format!("poked {} at {}", peer.name, peer.address))
                    }
                    Err(e) => crate::log::debug(&format!(
                        "poke of {} at {} failed: {e}; its poll will catch up",
                        peer.name, peer.address
                    )),
                }
                let record = PokeRecord {
                    address: peer.address.to_string(),
                    at: crate::clock::rfc3339(crate::clock::now_unix()),
                    reached: result.is_ok(),
                    error: result.err(),
                };
                (peer.name, record)
            })
        })
        .collect();
    let outcomes: BTreeMap<String, PokeRecord> =
        threads.into_iter().filter_map(|t| t.join().ok()).collect();
    if !outcomes.is_empty() {
        let mut state = load_state(&machine.paths.state_dir);
        state.extend(outcomes.clone());
        let text = serde_json::to_vec_pretty(&state).expect("poke records serialize");
        if let Err(e) =
            crate::files::write_atomic(&machine.paths.state_dir.join(STATE), &text, 0o600)
        {
            crate::log::debug(&format!("cannot record the pokes: {e}"));
        }
    }
    outcomes
}

/// Pokes the peers on a thread of its own and returns at once: the cycle never waits for it.
pub fn poke_in_background(machine: &Machine) {
    let peers = peers(machine);
    if peers.is_empty() {
        return;
    }
    let machine = machine.clone();
    std::thread::spawn(move || {
        poke_peers(&machine, &peers);
    });
}

/// The ssh argv of one poke (after the program name). The destination follows `--`.
pub fn ssh_args(key: &Path, address: &Address) -> Vec<String> {
    let mut args: Vec<String> = [
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=3",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        "-o",
        "ClearAllForwardings=yes",
        "-o",
        "ForwardAgent=no",
        "-T",
        "-i",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(key.display().to_string());
    args.push("--".into());
    args.push(address.to_string());
    args.push("fleetkey-poke".into());
    args
}

/// One ssh attempt, bounded by [`ATTEMPT`]; the error is ssh's last stderr line.
fn ssh_poke(key: &Path, address: &Address) -> std::result::Result<(), String> {
    let mut cmd = crate::child::command("ssh", &[]);
    cmd.args(ssh_args(key, address))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run ssh: {e}"))?;
    let deadline = Instant::now() + ATTEMPT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", ATTEMPT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for ssh: {e}")),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot read ssh's output: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("ssh failed")
        .trim();
    Err(line.chars().take(200).collect())
}

/// `fleetkey poke`: wakes this machine's watcher, if one runs. Returns whether one received it.
pub fn notify_watcher(state_dir: &Path) -> bool {
    let Ok(socket) = UnixDatagram::unbound() else {
        return false;
    };
    socket.send_to(b"poke", state_dir.join(SOCKET)).is_ok()
}

/// The watcher's end of the socket.
pub struct Inbox {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Inbox {
    /// Binds `poke.sock` in `state_dir` (a stale one, left by a killed watcher, is replaced).
    pub fn bind(state_dir: &Path) -> std::io::Result<Inbox> {
        let path = state_dir.join(SOCKET);
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(&path)?;
            }
        }
        let socket = UnixDatagram::bind(&path)?;
        Ok(Inbox { socket, path })
    }

    /// Blocks until a poke arrives (whatever its bytes: it only means "pull now").
    pub fn wait(&self) -> std::io::Result<()> {
        let mut buf = [0u8; 16];
        self.socket.recv(&mut buf).map(|_| ())
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_follows_a_double_dash_and_is_the_last_but_one_argument() {
        let addr = Address::parse("ssh://alice@host:2222").unwrap();
        let args = ssh_args(Path::new("/k/poke_key"), &addr);
        let dash = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(args[dash + 1], "ssh://alice@host:2222");
        assert_eq!(args.len(), dash + 3);
        assert!(args.contains(&"BatchMode=yes".to_string()));
        assert!(args.contains(&"IdentitiesOnly=yes".to_string()));
    }

    #[test]
    fn a_poke_reaches_a_bound_inbox_and_is_a_no_op_without_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            !notify_watcher(dir.path()),
            "no watcher: nothing receives it"
        );
        let inbox = Inbox::bind(dir.path()).unwrap();
        assert!(notify_watcher(dir.path()));
        inbox.wait().unwrap();
        drop(inbox);
        assert!(!dir.path().join(SOCKET).exists());
        // A stale socket from a killed watcher is replaced.
        let stale = UnixDatagram::bind(dir.path().join(SOCKET)).unwrap();
        drop(stale);
        let inbox = Inbox::bind(dir.path()).unwrap();
        assert!(notify_watcher(dir.path()));
        inbox.wait().unwrap();
    }
}

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
//! - **Carrying** ([`deliver`]): after a push, and after every command that changes the fleet
//!   even when the forge refused the push or could not be reached, the poke carries a git
//!   bundle of the commits just made on its stdin ([`super::carry`]); a peer that took it
//!   answers [`super::carry::ACK`], so the sender knows which peers have the change and which
//!   get it from the forge. A change too large for [`crate::limits::POKE_BUNDLE`] is a plain
//!   poke.
//! - **Receiving** ([`notify_watcher`], [`Inbox`]): `fleetkey poke` reads a bundle from its
//!   stdin into the inbox (bounded in size and time, see [`super::carry`]), sends one datagram
//!   to the unix socket `poke.sock` in the state directory (0700, so only this user can) and
//!   exits; the watcher's loop receives it as one more event and runs a cycle at once, which
//!   verifies and integrates the bundle before it fetches. With no watcher running, the next
//!   cycle takes the bundle.
//!
//! Must never: delay or fail a cycle (the sender runs beside it), let anything read from the
//! forge reach ssh as an option, or let a poke do more than wake the watcher and hand it
//! commits that its cycle verifies like any fetched from the forge.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::error::Result;
use crate::fleet::Machine;
use crate::forge::Forge;
use crate::paths::Paths;
use crate::repo::FleetRepo;
use crate::roster::{Roster, layout};
use crate::signing::SigningKey;

use super::carry::{self, Made, Outgoing};

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
    /// The commit whose bundle the peer took, when the poke carried one and the peer
    /// answered that it took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<String>,
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
    poke_peers_carrying(machine, peers, None)
}

/// [`poke_peers`], each poke carrying `bundle` on its stdin when given.
pub fn poke_peers_carrying(
    machine: &Machine,
    peers: &[Peer],
    bundle: Option<&Outgoing>,
) -> BTreeMap<String, PokeRecord> {
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
            let carry = bundle.map(|b| (b.path().to_path_buf(), b.tip.to_string()));
            std::thread::spawn(move || {
                let file = carry.as_ref().map(|(f, _)| f.as_path());
                let mut result = ssh_poke(&key, &peer.address, file);
                if let Err(e) = &result {
                    crate::log::debug(&format!("poke of {} failed ({e}); retrying", peer.name));
                    result = ssh_poke(&key, &peer.address, file);
                }
                match &result {
                    Ok(took) => crate::log::debug(&format!(
                        "poked {} at {}{}",
                        peer.name,
                        peer.address,
                        match (took, &carry) {
                            (true, _) => ": it took the bundle",
                            (false, Some(_)) => ": it did not take the bundle",
                            (false, None) => "",
                        }
                    )),
                    Err(e) => crate::log::debug(&format!(
                        "poke of {} at {} failed: {e}; its poll will catch up",
                        peer.name, peer.address
                    )),
                }
                let took = result.as_ref().is_ok_and(|took| *took);
                let record = PokeRecord {
                    address: peer.address.to_string(),
                    at: crate::clock::rfc3339(crate::clock::now_unix()),
                    reached: result.is_ok(),
                    error: result.err(),
                    carried: carry.filter(|_| took).map(|(_, tip)| tip),
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

/// What delivering a change to the peers did.
#[derive(Debug, Default)]
pub struct Delivery {
    /// The commit the pokes carried, when they carried a bundle.
    pub carried: Option<git2::Oid>,
    /// Why the pokes carried nothing although there was a change (too large, git failed).
    pub plain_because: Option<String>,
    /// Each peer poked, by name.
    pub outcomes: BTreeMap<String, PokeRecord>,
}

impl Delivery {
    /// The peers that took the bundle: they have the change whatever the forge does.
    pub fn have_it(&self) -> Vec<&str> {
        self.outcomes
            .iter()
            .filter(|(_, r)| r.carried.is_some())
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The peers that did not take it: they get the change from the forge (at once when the
    /// poke reached them, else at their next poll).
    pub fn left_to_the_forge(&self) -> Vec<&str> {
        self.outcomes
            .iter()
            .filter(|(_, r)| r.carried.is_none())
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// Delivers this machine's new commits (HEAD over `base`, the last fleet commit it fetched)
/// to every peer with an address: each poke carries their bundle, or is a plain poke when the
/// bundle would be too large. Nothing new over `base`: nobody is poked. Blocks for at most
/// about twice [`ATTEMPT`]; never fails (a problem is logged and recorded).
pub fn deliver(
    machine: &Machine,
    forge: &Forge,
    repo: &FleetRepo,
    branch: &str,
    base: Option<git2::Oid>,
) -> Delivery {
    let peers = peers(machine);
    if peers.is_empty() {
        return Delivery::default();
    }
    let mut delivery = Delivery::default();
    let bundle = match carry::make(forge, repo, &machine.paths.state_dir, branch, base) {
        Made::Nothing => return delivery,
        Made::Bundle(b) => Some(b),
        Made::Plain(why) => {
            let why = format!("{why}; the peers fetch the change from the forge");
            crate::log::info(&why);
            delivery.plain_because = Some(why);
            None
        }
    };
    if let Some(b) = &bundle {
        crate::log::debug(&format!(
            "each poke carries a bundle of {} up to {}",
            crate::limits::Size(b.bytes),
            b.tip
        ));
    }
    delivery.carried = bundle.as_ref().map(|b| b.tip);
    delivery.outcomes = poke_peers_carrying(machine, &peers, bundle.as_ref());
    delivery
}

/// [`deliver`] on a thread of its own, for the watcher after a cycle that pushed over `base`:
/// the bundle is made now, the pokes run beside the next cycle, which never waits for them.
pub fn deliver_in_background(machine: &Machine, base: Option<git2::Oid>) {
    let peers = peers(machine);
    if peers.is_empty() {
        return;
    }
    let forge = Forge::new(&machine.config.remote, &machine.paths.state_dir);
    let Ok(fleet) = machine.fleet_config() else {
        return;
    };
    let made = match machine.repo() {
        Ok(repo) => carry::make(
            &forge,
            &repo,
            &machine.paths.state_dir,
            &fleet.sync.branch,
            base,
        ),
        Err(e) => Made::Plain(format!("no bundle: {e}")),
    };
    // The cycle pushed: the peers are poked whatever the bundle.
    let bundle = match made {
        Made::Bundle(b) => Some(b),
        Made::Nothing => None,
        Made::Plain(why) => {
            crate::log::info(&format!("{why}; the peers fetch the change from the forge"));
            None
        }
    };
    let machine = machine.clone();
    std::thread::spawn(move || {
        poke_peers_carrying(&machine, &peers, bundle.as_ref());
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

/// One ssh attempt, bounded by [`ATTEMPT`], carrying `bundle` on stdin when given (else
/// stdin is empty: a plain poke). Returns whether the peer took the bundle; the error is ssh's
/// last stderr line.
fn ssh_poke(
    key: &Path,
    address: &Address,
    bundle: Option<&Path>,
) -> std::result::Result<bool, String> {
    let mut cmd = crate::child::command("ssh", &[]);
    cmd.args(ssh_args(key, address))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(file) = bundle {
        let file = std::fs::File::open(file).map_err(|e| format!("cannot read the bundle: {e}"))?;
        cmd.stdin(file);
    }
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
        let said = String::from_utf8_lossy(&out.stdout);
        return Ok(bundle.is_some() && said.lines().any(|l| l.trim() == carry::ACK));
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

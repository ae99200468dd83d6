//! `rotate [--ssh]`: new keys for this machine, in steps that are each safe to interrupt.
//!
//! Owns: the order of the rotation (new keys listed beside the old, pushed, then the old retired).
//! Must never: retire an old key before the roster that replaces it is on the forge.

use crate::output::outln;
use std::path::Path;

use crate::clock;
use crate::error::{Error, ErrorKind, Result};
use crate::fault;
use crate::files;
use crate::fleet::Machine;
use crate::identity::{self, Identity};
use crate::paths::Paths;
use crate::roster::{self, Roster, layout};
use crate::secrets::{CIPHERTEXT, RECIPIENTS, SecretsFile};
use crate::signing::SigningKey;
use crate::sync::{Begin, FleetChange};

use super::read_revoked;

/// `rotate [--ssh]`: a new identity for this machine (and a new SSH key with `--ssh`).
///
/// The new identity is written to `identity.txt.next` first and used to re-encrypt; the old one
/// is retired (replaced by the new) only after the new roster is pushed. A crash or failed push
/// at any step leaves both identities, and every command tries both, so nothing locks out.
pub fn rotate(ssh: bool) -> Result<()> {
    let machine = Machine::load()?;
    let mut change = FleetChange::begin(&machine, Begin::InStep)?;
    // A receiver changes only its own key files: the secrets are re-encrypted to its new
    // identity by the next admin or member cycle, and it keeps its old identity until then.
    let receiver = crate::authority::role_in(change.repo.root(), &machine.config.name)
        == crate::authority::Role::Receiver;
    let next = NextKeys::load_or_make(&machine)?;
    fault::point("rotate:identity-made");
    list_new_keys(&change, &next, ssh, receiver)?;
    change.publish()?;
    fault::point("rotate:pushed");
    retire_old_signing_key(&change, &next)?;
    change.repo.set_signer(machine.signer()?);
    change.publish()?;
    retire_signing_key_here(&machine)?;
    if !receiver {
        retire_identity_here(&machine)?;
    }
    outln!(
        "fleetkey: {} has a new age identity: {}",
        machine.config.name,
        next.identity.recipient()
    )?;
    outln!("  signing key: {}", next.signing.fingerprint())?;
    // A member's re-encryption may have come with the merges of this rotate already.
    if receiver && !crate::sync::adopt::adopt_waiting_identity(&machine, &change.repo)? {
        outln!(
            "  {} only receives: the secrets are re-encrypted to its new identity by the next admin or member sync; it keeps its old identity until it can read them with the new one",
            machine.config.name
        )?;
    }
    rotate_poke_key(&change)
}

/// The new identity and signing key, made once and kept beside the old ones
/// (`identity.txt.next`, `signing_key.next`) until the new roster is on the forge.
struct NextKeys {
    identity: Identity,
    signing: SigningKey,
}

impl NextKeys {
    /// The keys an interrupted rotate made, or new ones.
    fn load_or_make(machine: &Machine) -> Result<NextKeys> {
        let me = &machine.config.name;
        let path = machine.paths.next_identity_file();
        let identity = if path.exists() {
            Identity::load(&path)?
        } else {
            let id = Identity::generate();
            id.create(&path, &clock::rfc3339(clock::now_unix()))?;
            id
        };
        let sign_path = machine.paths.next_signing_key_file();
        let signing = if sign_path.exists() {
            SigningKey::load(&sign_path)?
        } else {
            let key = SigningKey::generate(&format!("fleetkey-sign@{me}"))?;
            key.create(&sign_path)?;
            key
        };
        Ok(NextKeys { identity, signing })
    }

    /// Whether `key` is the new signing key.
    fn is_new_signing(&self, key: &ssh_key::PublicKey) -> bool {
        key.key_data() == self.signing.public().key_data()
    }
}

/// A `keys/NAME.sign.pub` listing `keys`.
fn sign_text(keys: &[&ssh_key::PublicKey]) -> String {
    keys.iter()
        .map(|k| format!("{}\n", roster::key_line(k)))
        .collect()
}

/// Step 1: the new identity, and the new signing key listed BESIDE the old one, in one commit
/// signed by the old key (the one members know from its parent); with `ssh`, a new SSH key too.
/// A merge this machine has to make before step 2 is pushed is signed by the old key, which
/// both parents list. Nothing to do when a rotate interrupted later made it already. A
/// `receiver` commits only its key files (and the keys it retires): the secrets stay as they
/// are, for an admin or member to re-encrypt.
fn list_new_keys(change: &FleetChange, next: &NextKeys, ssh: bool, receiver: bool) -> Result<()> {
    let (machine, repo) = (change.machine, &change.repo);
    let me = &machine.config.name;
    let roster = Roster::load(repo.root())?;
    let current = roster
        .active(me)
        .ok_or_else(|| ErrorKind::Refused(format!("{me} is not an active machine of this fleet")))?
        .clone();
    let new_recipient = next.identity.recipient().to_string();
    let recipient_changed = current.recipient.to_string() != new_recipient;
    if !recipient_changed && current.signing.iter().any(|k| next.is_new_signing(k)) {
        return Ok(());
    }
    let today = clock::date(clock::now_unix());
    let env = if receiver {
        None
    } else {
        Some(machine.secrets()?)
    };
    let age_path = layout::age_pub(layout::KEYS, me);
    let sign_path = layout::sign_pub(layout::KEYS, me);
    files::write_atomic(
        &repo.root().join(&age_path),
        format!("{new_recipient}\n").as_bytes(),
        0o644,
    )?;
    let mut listed: Vec<&ssh_key::PublicKey> = current
        .signing
        .iter()
        .filter(|k| !next.is_new_signing(k))
        .collect();
    listed.push(next.signing.public());
    files::write_atomic(
        &repo.root().join(&sign_path),
        sign_text(&listed).as_bytes(),
        0o644,
    )?;
    let mut revoked_text = read_revoked(repo.root())?;
    if recipient_changed {
        revoked_text.push_str(&format!("{}\n# {me} {today} rotated\n", current.recipient));
    }
    let mut paths_changed = vec![age_path, sign_path, layout::REVOKED.to_string()];
    if ssh {
        let new_line = rotate_ssh_key(&machine.paths, me)?;
        for key in &current.ssh_keys {
            let line = roster::key_line(key);
            revoked_text.push_str(&format!("{line}\n# {me} {today} rotated\n"));
        }
        let ssh_path = layout::ssh_pub(layout::KEYS, me);
        files::write_atomic(
            &repo.root().join(&ssh_path),
            format!("{new_line}\n").as_bytes(),
            0o644,
        )?;
        paths_changed.push(ssh_path);
    }
    files::write_atomic(
        &repo.root().join(layout::REVOKED),
        revoked_text.as_bytes(),
        0o644,
    )?;
    fault::point("rotate:roster-written");
    if let Some(env) = env {
        let roster = Roster::load(repo.root())?;
        SecretsFile::new(repo.root()).store(&env, &roster)?;
        fault::point("rotate:encrypted");
        paths_changed.push(CIPHERTEXT.into());
        paths_changed.push(RECIPIENTS.into());
    }
    let refs: Vec<&str> = paths_changed.iter().map(String::as_str).collect();
    let what = if ssh {
        "age identity, signing key and SSH key"
    } else {
        "age identity and signing key"
    };
    let secrets = if receiver {
        "the secrets are re-encrypted by the next admin or member sync"
    } else {
        "secrets re-encrypted"
    };
    change.commit(&refs, &format!("{me}: rotate its {what}; {secrets}"))?;
    fault::point("rotate:committed");
    Ok(())
}

/// Step 2, once step 1 is on the forge: the old signing key leaves the roster for
/// keys/revoked; from here on this machine signs with the new key.
fn retire_old_signing_key(change: &FleetChange, next: &NextKeys) -> Result<()> {
    let repo = &change.repo;
    let me = &change.machine.config.name;
    let roster = Roster::load(repo.root())?;
    let old: Vec<ssh_key::PublicKey> = roster
        .active(me)
        .map(|m| {
            m.signing
                .iter()
                .filter(|k| !next.is_new_signing(k))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if old.is_empty() {
        return Ok(());
    }
    let sign_path = layout::sign_pub(layout::KEYS, me);
    files::write_atomic(
        &repo.root().join(&sign_path),
        sign_text(&[next.signing.public()]).as_bytes(),
        0o644,
    )?;
    retire_keys(repo.root(), &old, me, &clock::date(clock::now_unix()))?;
    change.commit(
        &[&sign_path, layout::REVOKED],
        &format!("{me}: retire its old signing key"),
    )?;
    fault::point("rotate:retired");
    Ok(())
}

/// The new roster is on the forge: the old signing key is replaced by the new one here.
fn retire_signing_key_here(machine: &Machine) -> Result<()> {
    std::fs::rename(
        machine.paths.next_signing_key_file(),
        machine.paths.signing_key_file(),
    )
    .map_err(Error::io(
        "cannot retire the old signing key at",
        &machine.paths.signing_key_file(),
    ))
}

/// The new roster and the secrets encrypted to it are on the forge: the old identity is
/// replaced by the new one here (and kept under retired/, see [`identity::retire_for_next`]).
/// A receiver's rotate leaves this to the cycle that first reads the secrets with the new
/// identity ([`crate::sync::adopt`]).
fn retire_identity_here(machine: &Machine) -> Result<()> {
    identity::retire_for_next(
        &machine.paths.identity_file(),
        &machine.paths.next_identity_file(),
        &machine.paths.retired_dir(),
        &clock::rfc3339(clock::now_unix()),
    )
}

/// Step 3 of `rotate`: a new poke key replaces the old, which goes to keys/revoked. The new key
/// takes the old one's place on disk first (one rename), so a crash at any later point leaves
/// a key that the next cycle publishes; the old key's lines go from every authorized_keys
/// either way (a `fleetkey-poke=` line whose key left the roster is removed).
fn rotate_poke_key(change: &FleetChange) -> Result<()> {
    let (machine, repo) = (change.machine, &change.repo);
    let me = &machine.config.name;
    let path = machine.paths.poke_key_file();
    let next = path.with_file_name("poke_key.next");
    let _ = std::fs::remove_file(&next);
    let key = SigningKey::generate(&format!("fleetkey-poke@{me}"))?;
    key.create(&next)?;
    std::fs::rename(&next, &path).map_err(Error::io("cannot replace the poke key at", &path))?;
    let roster = Roster::load(repo.root())?;
    let old: Vec<ssh_key::PublicKey> = roster
        .active(me)
        .map(|m| m.poke.clone())
        .unwrap_or_default();
    let poke_path = layout::poke_pub(layout::KEYS, me);
    files::write_atomic(
        &repo.root().join(&poke_path),
        format!("{}\n", key.public_line()).as_bytes(),
        0o644,
    )?;
    retire_keys(repo.root(), &old, me, &clock::date(clock::now_unix()))?;
    change.commit(
        &[&poke_path, layout::REVOKED],
        &format!("{me}: rotate its poke key"),
    )?;
    outln!("  poke key:    {}", key.fingerprint())?;
    change.publish()?;
    // The host branch was signed by the key just retired: sign it anew, or every other
    // machine ignores it until this one's next cycle.
    let cx = crate::sync::Cycle {
        machine,
        forge: change.forge(),
        network: crate::sync::Network::Full,
        now: clock::now_unix(),
        by_hand: true,
        hooks: &crate::agents::AgentHooks,
    };
    if let Err(e) = crate::sync::collect::republish(&cx) {
        crate::log::warn(&format!(
            "cannot republish this machine's host branch with its new key (the next sync does): {}",
            crate::error::chain(&e)
        ));
    }
    Ok(())
}

/// Replaces `~/.ssh/id_ed25519` with a new pair; the old pair is kept aside with a suffix (it
/// may still be in use outside the fleet). Returns the new public line. Idempotent: a pair made
/// by an interrupted rotate (`id_ed25519.next`) is reused.
fn rotate_ssh_key(paths: &Paths, name: &str) -> Result<String> {
    let dir = paths.ssh_dir();
    let staged = dir.join("fleetkey-next");
    files::ensure_private_dir(&staged)?;
    let made = identity::ensure_ssh_key(&staged, &format!("fleetkey@{name}"))?;
    let stamp = clock::compact(clock::now_unix());
    for f in ["id_ed25519", "id_ed25519.pub"] {
        let live = dir.join(f);
        if live.exists() {
            let aside = dir.join(format!("{f}.rotated-{stamp}"));
            std::fs::rename(&live, &aside).map_err(Error::io("cannot move aside", &live))?;
        }
        std::fs::rename(staged.join(f), &live).map_err(Error::io("cannot install", &live))?;
    }
    let _ = std::fs::remove_dir(&staged);
    Ok(made.public_line)
}

/// Adds `keys` to keys/revoked as rotated away by `me` on `today` (each followed by its
/// `# NAME DATE rotated` line).
fn retire_keys(root: &Path, keys: &[ssh_key::PublicKey], me: &str, today: &str) -> Result<()> {
    let mut revoked_text = read_revoked(root)?;
    for key in keys {
        let line = roster::key_line(key);
        revoked_text.push_str(&format!("{line}\n# {me} {today} rotated\n"));
    }
    files::write_atomic(&root.join(layout::REVOKED), revoked_text.as_bytes(), 0o644)
}

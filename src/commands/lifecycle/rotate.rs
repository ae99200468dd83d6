//! `rotate [--ssh]`: new keys for this machine, in steps that are each safe to interrupt.
//!
//! Owns: the order of the rotation (new keys listed beside the old, pushed, then the old retired).
//! Must never: retire an old key before the roster that replaces it is on the forge.

use crate::output::outln;
use std::path::Path;

use crate::clock;
use crate::config::FleetConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::fault;
use crate::files;
use crate::fleet::Machine;
use crate::identity::{self, Identity};
use crate::paths::Paths;
use crate::repo::FleetRepo;
use crate::roster::{Roster, layout};
use crate::secrets::{CIPHERTEXT, RECIPIENTS, SecretsFile};
use crate::signing::SigningKey;
use crate::sync;

use super::{prepare, read_revoked};

/// `rotate [--ssh]`: a new identity for this machine (and a new SSH key with `--ssh`).
///
/// The new identity is written to `identity.txt.next` first and used to re-encrypt; the old one
/// is retired (replaced by the new) only after the new roster is pushed. A crash or failed push
/// at any step leaves both identities, and every command tries both, so nothing locks out.
pub fn rotate(ssh: bool) -> Result<()> {
    let machine = Machine::load()?;
    let (_lock, repo, fleet) = prepare(&machine)?;
    if crate::authority::role_in(repo.root(), &machine.config.name)
        == crate::authority::Role::Receiver
    {
        return Err(ErrorKind::Refused(format!(
            "{} is a receiver: its rotate re-encrypts the secrets, which only an admin or member may change",
            machine.config.name
        ))
        .hint("on an admin, run `fleetkey role NAME member`; rotate here; then `fleetkey role NAME receiver` again"));
    }
    let me = machine.config.name.clone();
    let next_path = machine.paths.next_identity_file();
    let next = if next_path.exists() {
        Identity::load(&next_path)?
    } else {
        let id = Identity::generate();
        id.create(&next_path, &clock::rfc3339(clock::now_unix()))?;
        id
    };
    let next_sign_path = machine.paths.next_signing_key_file();
    let next_sign = if next_sign_path.exists() {
        SigningKey::load(&next_sign_path)?
    } else {
        let key = SigningKey::generate(&format!("fleetkey-sign@{me}"))?;
        key.create(&next_sign_path)?;
        key
    };
    fault::point("rotate:identity-made");
    let roster = Roster::load(repo.root())?;
    let current = roster
        .active(&me)
        .ok_or_else(|| ErrorKind::Refused(format!("{me} is not an active machine of this fleet")))?
        .clone();
    let new_recipient = next.recipient().to_string();
    let today = clock::date(clock::now_unix());
    let is_new = |k: &ssh_key::PublicKey| k.key_data() == next_sign.public().key_data();
    let sign_path = layout::sign_pub(layout::KEYS, &me);
    let sign_text = |keys: &[&ssh_key::PublicKey]| -> String {
        keys.iter()
            .map(|k| format!("{}\n", k.to_openssh().expect("a parsed key encodes")))
            .collect()
    };
    // Step 1: the new identity, and the new signing key listed BESIDE the old one, in one commit
    // signed by the old key (the one members know from its parent). A merge this machine has to
    // make before step 2 is pushed is signed by the old key, which both parents list.
    if current.recipient.to_string() != new_recipient || !current.signing.iter().any(is_new) {
        let env = machine.secrets()?;
        let age_path = layout::age_pub(layout::KEYS, &me);
        files::write_atomic(
            &repo.root().join(&age_path),
            format!("{new_recipient}\n").as_bytes(),
            0o644,
        )?;
        let mut listed: Vec<&ssh_key::PublicKey> =
            current.signing.iter().filter(|k| !is_new(k)).collect();
        listed.push(next_sign.public());
        files::write_atomic(
            &repo.root().join(&sign_path),
            sign_text(&listed).as_bytes(),
            0o644,
        )?;
        let mut revoked_text = read_revoked(repo.root())?;
        if current.recipient.to_string() != new_recipient {
            revoked_text.push_str(&format!("{}\n# {me} {today} rotated\n", current.recipient));
        }
        let mut paths_changed = vec![
            age_path.clone(),
            sign_path.clone(),
            layout::REVOKED.to_string(),
        ];
        if ssh {
            let new_line = rotate_ssh_key(&machine.paths, &me)?;
            for key in &current.ssh_keys {
                let line = key.to_openssh().expect("a parsed key encodes");
                revoked_text.push_str(&format!("{line}\n# {me} {today} rotated\n"));
            }
            let ssh_path = layout::ssh_pub(layout::KEYS, &me);
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
        let roster = Roster::load(repo.root())?;
        SecretsFile::new(repo.root()).store(&env, &roster)?;
        fault::point("rotate:encrypted");
        paths_changed.push(CIPHERTEXT.into());
        paths_changed.push(RECIPIENTS.into());
        let refs: Vec<&str> = paths_changed.iter().map(String::as_str).collect();
        let what = if ssh {
            "age identity, signing key and SSH key"
        } else {
            "age identity and signing key"
        };
        repo.commit_paths(
            &refs,
            &format!("{me}: rotate its {what}; secrets re-encrypted"),
        )?;
        fault::point("rotate:committed");
    }
    sync::push_merging_upstream(&machine, &repo, &fleet)?;
    fault::point("rotate:pushed");
    // Step 2, once step 1 is on the forge: the old signing key leaves the roster for
    // keys/revoked; from here on this machine signs with the new key.
    let roster = Roster::load(repo.root())?;
    let old: Vec<ssh_key::PublicKey> = roster
        .active(&me)
        .map(|m| m.signing.iter().filter(|k| !is_new(k)).cloned().collect())
        .unwrap_or_default();
    if !old.is_empty() {
        files::write_atomic(
            &repo.root().join(&sign_path),
            sign_text(&[next_sign.public()]).as_bytes(),
            0o644,
        )?;
        retire_keys(repo.root(), &old, &me, &today)?;
        repo.commit_paths(
            &[&sign_path, layout::REVOKED],
            &format!("{me}: retire its old signing key"),
        )?;
        fault::point("rotate:retired");
    }
    let repo = repo.with_signer(machine.signer()?);
    sync::push_merging_upstream(&machine, &repo, &fleet)?;
    // The new roster is on the forge: retire the old identity and signing key. The old
    // identity is kept under retired/ (named by its recipient, so a re-run keeps one copy) for
    // reading the history it encrypted, which a `revoke --compromised` report needs.
    if let Ok(old) = Identity::load(&machine.paths.identity_file()) {
        let retired = machine
            .paths
            .retired_dir()
            .join(format!("{}.txt", old.recipient()));
        if !retired.exists() {
            old.create(&retired, &clock::rfc3339(clock::now_unix()))?;
        }
    }
    std::fs::rename(&next_path, machine.paths.identity_file()).map_err(Error::io(
        "cannot retire the old identity at",
        &machine.paths.identity_file(),
    ))?;
    std::fs::rename(&next_sign_path, machine.paths.signing_key_file()).map_err(Error::io(
        "cannot retire the old signing key at",
        &machine.paths.signing_key_file(),
    ))?;
    outln!("fleetkey: {me} has a new age identity: {new_recipient}")?;
    outln!("  signing key: {}", next_sign.fingerprint())?;
    rotate_poke_key(&machine, &repo, &fleet)
}

/// Step 3 of `rotate`: a new poke key replaces the old, which goes to keys/revoked. The new key
/// takes the old one's place on disk first (one rename), so a crash at any later point leaves
/// a key that the next cycle publishes; the old key's lines go from every authorized_keys
/// either way (a `fleetkey-poke=` line whose key left the roster is removed).
fn rotate_poke_key(machine: &Machine, repo: &FleetRepo, fleet: &FleetConfig) -> Result<()> {
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
    repo.commit_paths(
        &[&poke_path, layout::REVOKED],
        &format!("{me}: rotate its poke key"),
    )?;
    outln!("  poke key:    {}", key.fingerprint())?;
    sync::push_merging_upstream(machine, repo, fleet)
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
        let line = key.to_openssh().expect("a parsed key encodes");
        revoked_text.push_str(&format!("{line}\n# {me} {today} rotated\n"));
    }
    files::write_atomic(&root.join(layout::REVOKED), revoked_text.as_bytes(), 0o644)
}

//! `enroll`: a new machine asks to join (`--remote`), or a member makes a machine's keys and
//! approves them at once (`--bundle`).
//!
//! Owns: the enrollment request on `fleetkey/pending/NAME` and the bundle a member writes. Must
//! never: touch the fleet branch from a machine that is not a member, or write a bundle inside
//! the clone.

use crate::output::outln;
use std::path::Path;

use crate::bundle::{self, Bundle};
use crate::clock;
use crate::commands::approve;
use crate::config::FleetConfig;
use crate::enrollment::Statement;
use crate::error::{Error, ErrorKind, Result};
use crate::files;
use crate::fleet::Machine;
use crate::forge::{self, Forge, PushOutcome};
use crate::identity::{self, Identity};
use crate::paths::Paths;
use crate::repo::FleetRepo;
use crate::roster::{self, Roster, layout};
use crate::secrets::{CIPHERTEXT, RECIPIENTS, SecretsFile};
use crate::setup::{check_not_set_up, machine_keys, settle_in, staging_dir};
use crate::signing::{Signer, SigningKey};
use crate::sync::{Begin, FleetChange};
use crate::trust::{self, TrustState, Verdict, Verifier};

use super::{clone_fleet, print_fingerprints};

/// The state file holding the enrollment code of this machine's request, for `status` while
/// it waits for approval.
pub const ENROLLMENT_CODE: &str = "enrollment-code";

/// `enroll NAME --remote URL`, on the new machine: verifies the fetched history forward from
/// its founding commit (the trust root it pins), makes its keys, and pushes its request (the
/// public keys and the proof binding them, signed by its new signing key) to the side branch
/// `fleetkey/pending/NAME`. The fleet branch is not touched: this machine is not a member until
/// someone approves it.
pub fn enroll_here(name: &str, remote: &str) -> Result<()> {
    roster::check_name(name)?;
    let paths = Paths::from_env()?;
    check_not_set_up(&paths)?;
    // Dropped last (declared first): a failure leaves no data directory behind.
    let _guard = crate::setup::DataDirGuard::new(&paths);
    let staging = staging_dir(&paths)?;
    let root = staging.path().join("fleet");
    clone_fleet(remote, &root)?;
    let repo = FleetRepo::open(&root)?;
    let fetched = repo
        .head()
        .ok_or_else(|| Error::refused(format!("the forge {remote} holds no fleet")))?;
    // Refuses a fleet made before signed history.
    let fleet_fp = trust::fleet_fingerprint(repo.raw(), fetched)?;
    let founding = trust::founding_commit(repo.raw(), fetched)?;
    verify_from_founding(repo.raw(), founding, fetched)?;
    let fleet = FleetConfig::load(&root)?;
    let roster = Roster::load(&root)?;
    refuse_taken_name(&roster, name)?;
    set_aside_known_keys(&paths, &roster)?;
    let (identity, mut ssh, signing) = machine_keys(&paths, name)?;
    let poke = crate::setup::poke_key(&paths, name)?;
    if let Some(fresh) = fresh_ssh_key_if_known(&paths, &roster, &ssh, name)? {
        ssh = fresh;
    }
    let ssh_key = ssh_key::PublicKey::from_openssh(ssh.public_line.trim()).map_err(|_| {
        Error::refused(format!(
            "{} is not an OpenSSH public key",
            ssh.public_path.display()
        ))
    })?;
    let statement = Statement::new(
        &founding.to_string(),
        name,
        &identity.recipient().to_string(),
        &ssh_key,
        signing.public(),
        poke.public(),
    );
    let proof = statement.prove(&signing)?;
    let sign_fp = signing.fingerprint();
    let request = approve::request_commit(
        repo.raw(),
        fetched,
        &Signer::new(name, signing),
        &approve::RequestKeys {
            recipient: &identity.recipient().to_string(),
            ssh_line: &ssh.public_line,
            poke_line: &poke.public_line(),
            proof: &proof,
        },
    )?;
    push_request(&root, remote, name, request)?;
    drop(repo);
    let code = statement.code();
    files::ensure_private_dir(&paths.state_dir)?;
    files::write_atomic(
        &paths.state_dir.join(ENROLLMENT_CODE),
        format!("{code}\n").as_bytes(),
        0o600,
    )?;
    settle_in(
        &paths,
        &root,
        name,
        fleet.backend,
        remote,
        &founding.to_string(),
    )?;
    outln!("fleetkey: {name} is enrolled and waits for approval.")?;
    print_fingerprints(&identity.recipient().to_string(), &ssh.public_line)?;
    outln!("  signing key:     {sign_fp}")?;
    outln!("  poke key:        {}", poke.fingerprint())?;
    outln!("  fleet:           {fleet_fp}")?;
    print_next_steps(name, founding, fetched, &code)
}

/// A name active in the fleet, or revoked from it, is not enrolled again.
fn refuse_taken_name(roster: &Roster, name: &str) -> Result<()> {
    if roster.active(name).is_some() {
        return Err(
            ErrorKind::Refused(format!("the name {name} is taken in this fleet"))
                .hint("pick another name"),
        );
    }
    if roster.is_revoked_name(name) {
        return Err(ErrorKind::Refused(format!(
            "{name} was revoked from this fleet; a revoked name is not reused"
        ))
        .hint("pick another name"));
    }
    Ok(())
}

/// Pushes the request commit to `fleetkey/pending/NAME` (forced: a rerun replaces it).
fn push_request(root: &Path, remote: &str, name: &str, request: git2::Oid) -> Result<()> {
    match Forge::at(remote).push_to(
        root,
        &request.to_string(),
        &forge::pending_branch(name),
        None,
        true,
    )? {
        PushOutcome::Pushed => Ok(()),
        PushOutcome::Rejected => Err(ErrorKind::Refused(format!(
            "the forge {remote} refused the enrollment request"
        ))
        .hint("run the same command again")),
    }
}

/// What this machine trusts, the enrollment code, and what to run next (on a member, then
/// here).
fn print_next_steps(name: &str, founding: git2::Oid, fetched: git2::Oid, code: &str) -> Result<()> {
    outln!("Check that the fleet line matches `fleetkey status` on a member (this machine trusts")?;
    outln!("commit {founding} and what members signed after it, verified up to {fetched}).")?;
    outln!("enrollment code: {code}")?;
    outln!(
        "On a machine already in the fleet, give it this code (it binds the name and all four keys):"
    )?;
    outln!("  fleetkey approve {name} --code {code}")?;
    outln!("and then here: fleetkey sync")?;
    Ok(())
}

/// Whether `roster` already knows `key` (SSH-type): a member's key, or a revoked one.
fn known_key(roster: &Roster, key: &ssh_key::PublicKey) -> Option<&'static str> {
    let data = key.key_data();
    if roster.active.iter().any(|m| {
        m.ssh_keys
            .iter()
            .chain(&m.signing)
            .chain(&m.poke)
            .any(|k| k.key_data() == data)
    }) {
        return Some("already a member's key");
    }
    roster
        .revoked
        .iter()
        .any(|r| matches!(&r.key, roster::RevokedKey::Ssh(k) if k.key_data() == data))
        .then_some("revoked")
}

/// Before `enroll` makes or reuses this machine's keys: an age identity, signing key or poke
/// key that the fleet already knows (revoked, or a member's: a machine that lost its config and
/// enrolls again) is moved aside (`FILE.known-STAMP`, never deleted), so a fresh one is made.
/// A revoked key never comes back.
fn set_aside_known_keys(paths: &Paths, roster: &Roster) -> Result<()> {
    let stamp = clock::compact(clock::now_unix());
    let aside = |path: &Path, why: &str| -> Result<()> {
        let to = path.with_file_name(format!(
            "{}.known-{stamp}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("key")
        ));
        std::fs::rename(path, &to).map_err(Error::io("cannot move aside", path))?;
        outln!(
            "fleetkey: {} is {why} in this fleet; it is kept as {} and a fresh key is made",
            path.display(),
            to.display()
        )
    };
    let identity_path = paths.identity_file();
    if identity_path.exists() {
        let recipient = Identity::load(&identity_path)?.recipient().to_string();
        let revoked = roster
            .revoked
            .iter()
            .any(|r| matches!(&r.key, roster::RevokedKey::Age(a) if *a == recipient));
        if revoked {
            aside(&identity_path, "revoked")?;
        } else if roster
            .active
            .iter()
            .any(|m| m.recipient.to_string() == recipient)
        {
            aside(&identity_path, "already a member's key")?;
        }
    }
    for path in [paths.signing_key_file(), paths.poke_key_file()] {
        if path.exists()
            && let Some(why) = known_key(roster, SigningKey::load(&path)?.public())
        {
            aside(&path, why)?;
        }
    }
    Ok(())
}

/// When this machine's SSH login key is one the fleet already knows (revoked, or a member's),
/// makes a new pair `~/.ssh/fleetkey_NAME_ed25519` (the user's own key is left alone) and says
/// so; `None` when `ssh` may be used.
fn fresh_ssh_key_if_known(
    paths: &Paths,
    roster: &Roster,
    ssh: &identity::SshKey,
    name: &str,
) -> Result<Option<identity::SshKey>> {
    let Ok(key) = ssh_key::PublicKey::from_openssh(ssh.public_line.trim()) else {
        return Ok(None);
    };
    let Some(why) = known_key(roster, &key) else {
        return Ok(None);
    };
    let dir = paths.ssh_dir();
    let private = dir.join(format!("fleetkey_{name}_ed25519"));
    let public = dir.join(format!("fleetkey_{name}_ed25519.pub"));
    let line = if public.exists() {
        files::read_text(&public, 16 * 1024)?.trim().to_string()
    } else {
        let (private_text, public_line) = identity::new_ssh_keypair(&format!("fleetkey@{name}"))?;
        files::ensure_private_dir(&dir)?;
        files::create_new_private(&private, private_text.as_bytes())?;
        files::write_atomic(&public, format!("{public_line}\n").as_bytes(), 0o644)?;
        public_line
    };
    if ssh_key::PublicKey::from_openssh(&line)
        .ok()
        .and_then(|k| known_key(roster, &k))
        .is_some()
    {
        return Err(ErrorKind::Refused(format!(
            "{} is a key this fleet already knows",
            public.display()
        ))
        .hint("move it aside and run the same command again"));
    }
    outln!(
        "fleetkey: your SSH key {} is {why} in this fleet; made a new login key {} for it (use it with `ssh -i` or an IdentityFile line)",
        ssh.public_path.display(),
        private.display()
    )?;
    Ok(Some(identity::SshKey {
        public_line: line,
        public_path: public,
        created: true,
    }))
}

/// Verifies every commit from the fleet's founding commit `founding` up to `tip` exactly as a
/// member does; refuses (exit 3) a history that does not verify, before any of it is used.
fn verify_from_founding(
    repo: &git2::Repository,
    founding: git2::Oid,
    tip: git2::Oid,
) -> Result<()> {
    let mut state = TrustState::fresh(repo, founding);
    match Verifier::new(repo).verify(&mut state, tip, true)? {
        Verdict::Authentic { .. } => Ok(()),
        Verdict::Refused(refusals) => {
            let first = &refusals[0];
            Err(ErrorKind::NotAuthentic {
                commit: first.commit.clone(),
                machine: first.machine.clone(),
                why: first.why.to_string(),
            }
            .hint("the forge holds commits no member signed after the founding commit: ask a member to run `fleetkey forge repair`, then enroll again"))
        }
    }
}

/// `enroll NAME --bundle FILE`, on an enrolled machine: makes NAME's keys here, approves them at
/// once, and writes them passphrase-encrypted to FILE for a secure channel.
pub fn enroll_bundle(name: &str, file: &Path, passphrase_file: Option<&Path>) -> Result<()> {
    roster::check_name(name)?;
    let machine = Machine::load()?;
    if file.exists() {
        return Err(ErrorKind::Refused(format!(
            "{} exists; a bundle never overwrites a file",
            file.display()
        ))
        .into());
    }
    let absolute = std::path::absolute(file).map_err(Error::io("cannot resolve", file))?;
    // Resolved through any symlink: the directory the bundle lands in, and the clone.
    let real_parent = absolute
        .parent()
        .and_then(|p| std::fs::canonicalize(p).ok());
    let real_repo =
        std::fs::canonicalize(&machine.config.repo).unwrap_or_else(|_| machine.config.repo.clone());
    if absolute.starts_with(&machine.config.repo)
        || real_parent.is_some_and(|p| p.starts_with(&real_repo))
    {
        return Err(ErrorKind::Refused(format!(
            "{} is inside the fleet repo {} (through a symlink or not): a bundle holds private keys and must never be written where a commit could take it",
            file.display(),
            machine.config.repo.display()
        ))
        .hint("write it outside the clone, e.g. `--bundle ~/NAME.bundle`"));
    }
    let passphrase = bundle::passphrase(passphrase_file, true)?;
    let change = FleetChange::begin(&machine, Begin::InStep)?;
    let repo = &change.repo;
    let roster = Roster::load(repo.root())?;
    if roster.active(name).is_some() || roster.pending(name).is_some() {
        return Err(ErrorKind::Refused(format!("the name {name} is taken in this fleet")).into());
    }
    if roster.is_revoked_name(name) {
        return Err(ErrorKind::Refused(format!(
            "{name} was revoked from this fleet; a revoked name is not reused"
        ))
        .into());
    }
    let env = machine.secrets()?;
    let head = repo
        .head()
        .ok_or_else(|| Error::refused("the fleet clone has no commit"))?;
    // The new machine pins the founding commit and verifies everything after it, as a member.
    let founding = trust::founding_commit(repo.raw(), head)?;
    let new = Bundle::generate(name, &founding.to_string())?;
    new.write(file, passphrase)?;
    let age_path = layout::age_pub(layout::KEYS, name);
    let ssh_path = layout::ssh_pub(layout::KEYS, name);
    let sign_path = layout::sign_pub(layout::KEYS, name);
    files::write_atomic(
        &repo.root().join(&sign_path),
        format!("{}\n", new.signing.public_line()).as_bytes(),
        0o644,
    )?;
    files::write_atomic(
        &repo.root().join(&age_path),
        format!("{}\n", new.identity.recipient()).as_bytes(),
        0o644,
    )?;
    files::write_atomic(
        &repo.root().join(&ssh_path),
        format!("{}\n", new.ssh_public).as_bytes(),
        0o644,
    )?;
    let roster = Roster::load(repo.root())?;
    SecretsFile::new(repo.root()).store(&env, &roster)?;
    let me = &machine.config.name;
    change.commit(
        &[&age_path, &ssh_path, &sign_path, CIPHERTEXT, RECIPIENTS],
        &format!("{me}: enroll and approve {name} (bundle)"),
    )?;
    outln!(
        "fleetkey: {name} is in the fleet; its keys are in {} (passphrase-encrypted).",
        file.display()
    )?;
    print_fingerprints(&new.identity.recipient().to_string(), &new.ssh_public)?;
    outln!("Carry the bundle over a secure channel, then on the new machine run:")?;
    outln!(
        "  fleetkey join {} --remote {}",
        file.display(),
        machine.config.remote
    )?;
    change.publish()
}

//! `enroll`: a new machine asks to join (`--remote`), or a member makes a machine's keys and
//! approves them at once (`--bundle`).
//!
//! Owns: the enrollment request on `fleetkey/pending/NAME` and the bundle a member writes. Must
//! never: touch the fleet branch from a machine that is not a member, or write a bundle inside
//! the clone.

use crate::output::outln;
use std::path::Path;

use crate::bundle::{self, Bundle};
use crate::commands::approve;
use crate::config::FleetConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::files;
use crate::fleet::Machine;
use crate::forge::{self, Forge, PushOutcome};
use crate::identity;
use crate::paths::Paths;
use crate::repo::FleetRepo;
use crate::roster::{self, Roster, layout};
use crate::secrets::{CIPHERTEXT, RECIPIENTS, SecretsFile};
use crate::setup::{check_not_set_up, machine_keys, settle_in, staging_dir};
use crate::signing::Signer;
use crate::sync::{Begin, FleetChange};
use crate::trust;

use super::{clone_fleet, print_fingerprints};

/// `enroll NAME --remote URL`, on the new machine: makes its keys and pushes its request (the
/// public keys, signed by its new signing key) to the side branch `fleetkey/pending/NAME`. The
/// fleet branch is not touched: this machine is not a member until someone approves it.
pub fn enroll_here(name: &str, remote: &str) -> Result<()> {
    roster::check_name(name)?;
    let paths = Paths::from_env()?;
    check_not_set_up(&paths)?;
    let staging = staging_dir(&paths)?;
    let root = staging.path().join("fleet");
    clone_fleet(remote, &root)?;
    let repo = FleetRepo::open(&root)?;
    let fetched = repo
        .head()
        .ok_or_else(|| Error::refused(format!("the forge {remote} holds no fleet")))?;
    // Refuses a fleet made before signed history.
    let fleet_fp = trust::fleet_fingerprint(repo.raw(), fetched)?;
    let fleet = FleetConfig::load(&root)?;
    let roster = Roster::load(&root)?;
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
    let (identity, ssh, signing) = machine_keys(&paths, name)?;
    let sign_line = signing.public_line();
    let sign_fp = signing.fingerprint();
    let request = approve::request_commit(
        repo.raw(),
        fetched,
        &Signer::new(name, signing),
        &identity.recipient().to_string(),
        &ssh.public_line,
        &sign_line,
    )?;
    match Forge::at(remote).push_to(
        &root,
        &request.to_string(),
        &forge::pending_branch(name),
        None,
        true,
    )? {
        PushOutcome::Pushed => {}
        PushOutcome::Rejected => {
            return Err(ErrorKind::Refused(format!(
                "the forge {remote} refused the enrollment request"
            ))
            .hint("run the same command again"));
        }
    }
    drop(repo);
    settle_in(
        &paths,
        &root,
        name,
        fleet.backend,
        remote,
        &fetched.to_string(),
    )?;
    outln!("fleetkey: {name} is enrolled and waits for approval.")?;
    print_fingerprints(&identity.recipient().to_string(), &ssh.public_line)?;
    outln!("  signing key:     {sign_fp}")?;
    outln!("  fleet:           {fleet_fp}")?;
    outln!("Check that the fleet line matches `fleetkey status` on a member (this machine trusts")?;
    outln!("commit {fetched} and what members sign after it).")?;
    let fp = identity::ssh_fingerprint(&ssh.public_line).unwrap_or_default();
    outln!("On a machine already in the fleet, compare these out of band, then run:")?;
    outln!("  fleetkey approve {name} --fingerprint {fp}")?;
    outln!("and then here: fleetkey sync")?;
    Ok(())
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
    let root_commit = repo
        .head()
        .ok_or_else(|| Error::refused("the fleet clone has no commit"))?;
    let new = Bundle::generate(name, &root_commit.to_string())?;
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

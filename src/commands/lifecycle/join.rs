//! `join FILE --remote URL`: installs a bundle's keys on the new machine.
//!
//! Owns: checking that the forge holds the commit the bundle pins and that the bundle's keys are
//! active there. Must never: replace keys this machine already has.

use crate::output::outln;
use std::path::Path;

use crate::bundle::{self, Bundle};
use crate::clock;
use crate::config::FleetConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::files;
use crate::paths::Paths;
use crate::repo::FleetRepo;
use crate::roster::Roster;
use crate::setup::{check_not_set_up, settle_in, staging_dir};
use crate::trust::{TrustState, Verdict, Verifier};

use super::clone_fleet;

/// `join FILE --remote URL`, on the new machine: installs the keys from a bundle.
pub fn join(file: &Path, remote: &str, passphrase_file: Option<&Path>) -> Result<()> {
    let paths = Paths::from_env()?;
    check_not_set_up(&paths)?;
    for key in [paths.identity_file(), paths.signing_key_file()] {
        if key.exists() {
            return Err(ErrorKind::Refused(format!(
                "{} exists; joining would replace this machine's keys",
                key.display()
            ))
            .into());
        }
    }
    let passphrase = bundle::passphrase(passphrase_file, false)?;
    let b = Bundle::read(file, passphrase)?;
    // Dropped last (declared first): a failure leaves no data directory behind.
    let _guard = crate::setup::DataDirGuard::new(&paths);
    let staging = staging_dir(&paths)?;
    let root = staging.path().join("fleet");
    clone_fleet(remote, &root)?;
    let fleet = FleetConfig::load(&root)?;
    let roster = Roster::load(&root)?;
    verify_from_bundle_root(&paths, &root, &b.trust_root, remote)?;
    if roster.active(&b.name).map(|m| m.recipient.to_string())
        != Some(b.identity.recipient().to_string())
    {
        return Err(ErrorKind::Refused(format!(
            "the bundle's identity is not {}'s active key in the fleet at {remote}",
            b.name
        ))
        .hint(
            "make a new bundle with `fleetkey enroll NAME --bundle FILE` on an enrolled machine",
        ));
    }
    let private = install_keys(&paths, &b)?;
    settle_in(&paths, &root, &b.name, fleet.backend, remote, &b.trust_root)?;
    outln!("fleetkey: this machine joined the fleet as {}", b.name)?;
    outln!("  identity: {}", paths.identity_file().display())?;
    outln!("  ssh key:  {}", private.display())?;
    offer_to_delete(file)?;
    outln!("next: run `fleetkey sync` to apply the fleet here, then `fleetkey agents install`")?;
    Ok(())
}

/// The clone must hold the fleet commit the bundle pins, and verify forward from it (the
/// verified state is kept as this machine's trust state).
fn verify_from_bundle_root(paths: &Paths, root: &Path, pinned: &str, remote: &str) -> Result<()> {
    let trust_root = git2::Oid::from_str(pinned)
        .map_err(|_| Error::refused("the bundle's trust root is not a commit id"))?;
    let cloned = FleetRepo::open(root)?;
    let holds_root = cloned.head().is_some_and(|h| {
        h == trust_root
            || cloned
                .raw()
                .graph_descendant_of(h, trust_root)
                .unwrap_or(false)
    });
    let verdict = match cloned.head() {
        Some(head) if holds_root => {
            let mut state = TrustState::load(cloned.raw(), &paths.state_dir, trust_root)?;
            let v = Verifier::new(cloned.raw()).verify(&mut state, head, true)?;
            if matches!(v, Verdict::Authentic { .. }) {
                state.save(&paths.state_dir)?;
            }
            Some(v)
        }
        _ => None,
    };
    if let Some(Verdict::Refused(r)) = verdict {
        return Err(ErrorKind::Untrusted { refused: r.len() }.hint(format!(
            "commit {} (claims {}) was refused: {}; run `fleetkey forge repair` on a member, then join again",
            r[0].commit, r[0].machine, r[0].why
        )));
    }
    if !holds_root {
        return Err(ErrorKind::Refused(format!(
            "the forge {remote} does not hold the fleet commit the bundle pins ({trust_root})"
        ))
        .hint("check the remote URL; if the forge was tampered with, run `fleetkey forge repair` on a member"));
    }
    Ok(())
}

/// Installs the bundle's identity, signing key and SSH key (beside an `id_ed25519` already
/// there, under a name of its own). Returns the SSH private key's path.
fn install_keys(paths: &Paths, b: &Bundle) -> Result<std::path::PathBuf> {
    files::ensure_private_dir(&paths.config_dir)?;
    b.identity
        .create(&paths.identity_file(), &clock::rfc3339(clock::now_unix()))?;
    b.signing.create(&paths.signing_key_file())?;
    let ssh_dir = paths.ssh_dir();
    files::ensure_private_dir(&ssh_dir)?;
    let (private, public) =
        if ssh_dir.join("id_ed25519").exists() || ssh_dir.join("id_ed25519.pub").exists() {
            (
                ssh_dir.join(format!("fleetkey_{}_ed25519", b.name)),
                ssh_dir.join(format!("fleetkey_{}_ed25519.pub", b.name)),
            )
        } else {
            (ssh_dir.join("id_ed25519"), ssh_dir.join("id_ed25519.pub"))
        };
    files::create_new_private(&private, b.ssh_private.as_bytes())?;
    files::write_atomic(&public, format!("{}\n", b.ssh_public).as_bytes(), 0o644)?;
    Ok(private)
}

/// The bundle is a bearer credential for this machine's membership: it should not outlive
/// the join. On a terminal, offer to delete it (yes by default); else say to.
fn offer_to_delete(file: &Path) -> Result<()> {
    let delete = std::io::IsTerminal::is_terminal(&std::io::stdin())
        && rpassword::prompt_password(format!(
            "delete the bundle {} now (it holds this machine's private keys)? [Y/n] ",
            file.display()
        ))
        .is_ok_and(|a| !a.trim().eq_ignore_ascii_case("n"));
    if delete {
        std::fs::remove_file(file).map_err(Error::io("cannot remove", file))?;
        outln!("  deleted the bundle {}", file.display())?;
    } else {
        outln!(
            "  the bundle {} holds this machine's private keys: delete it (`rm {}`) once you no longer need it",
            file.display(),
            file.display()
        )?;
    }
    Ok(())
}

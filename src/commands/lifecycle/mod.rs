//! The key lifecycle: `enroll`, `approve`, `join`, `rotate` and `revoke`.
//!
//! Each step that touches several files commits them together, so a roster and its ciphertext
//! never disagree in a commit. Every command first puts fleetkey's own files (keys/, secrets.*)
//! back as HEAD has them, so one interrupted half-way is simply run again. A private key never
//! leaves its machine, except inside a passphrase-encrypted bundle the user asked for.
//!
//! Owns: what the lifecycle commands share (the clone of a fleet for a new machine, the
//! fingerprint printing, reading keys/revoked). Must never: write a private key into the clone,
//! or commit a roster without the ciphertext re-encrypted to it.
//!
//! - [`enroll`]: `enroll NAME --remote URL` (on the new machine) and `enroll NAME --bundle FILE`.
//! - [`join`]: `join FILE --remote URL`, installing a bundle's keys.
//! - [`rotate`]: `rotate [--ssh]`, new keys for this machine.
//! - [`revoke`]: `revoke NAME [--compromised]`, and its exposure report.

use crate::output::outln;
use std::path::Path;

use crate::config::FleetConfig;
use crate::error::{ErrorKind, Result};
use crate::files;
use crate::forge::Forge;
use crate::roster::{self, layout};

pub mod enroll;
pub mod join;
pub mod revoke;
pub mod rotate;

pub use enroll::{ENROLLMENT_CODE, enroll_bundle, enroll_here};
pub use join::join;
pub use revoke::{RevokeOptions, revoke};
pub use rotate::rotate;

/// Clones the fleet branch explicitly (`main`, the branch `init` creates): a bare repository
/// whose HEAD names another branch (`master`, a forge's default) would otherwise give an empty
/// checkout. A forge without that branch is cloned at its default branch.
pub(crate) fn clone_fleet(remote: &str, root: &std::path::Path) -> Result<()> {
    let branch = FleetConfig::default().sync.branch;
    let forge = Forge::at(remote);
    match forge.clone_into(root, Some(&branch)) {
        Err(e)
            if matches!(e.kind(), ErrorKind::ForgeFailed { stderr, .. }
                if stderr.contains("not found in upstream")) =>
        {
            forge.clone_into(root, None)
        }
        other => other,
    }
}

/// Prints an age recipient and an SSH key's fingerprint with its randomart.
pub(crate) fn print_fingerprints(recipient: &str, ssh_line: &str) -> Result<()> {
    outln!("  age recipient:   {recipient}")?;
    if let Ok(key) = ssh_key::PublicKey::from_openssh(ssh_line.trim()) {
        print_key("ssh fingerprint", &key)?;
    }
    Ok(())
}

/// Prints `label: FINGERPRINT` and the key's randomart.
pub(crate) fn print_key(label: &str, key: &ssh_key::PublicKey) -> Result<()> {
    let fp = key.fingerprint(ssh_key::HashAlg::Sha256);
    outln!("  {label}: {fp}")?;
    let header = format!(
        "{} 256",
        key.algorithm()
            .as_str()
            .trim_start_matches("ssh-")
            .to_uppercase()
    );
    for line in fp.to_randomart(&header).lines() {
        outln!("  {line}")?;
    }
    Ok(())
}

/// The text of keys/revoked in `root` (its header when there is none yet), ending in a newline.
pub(crate) fn read_revoked(root: &Path) -> Result<String> {
    let path = root.join(layout::REVOKED);
    match files::read_text(&path, 1 << 20) {
        Ok(t) => Ok(if t.is_empty() || t.ends_with('\n') {
            t
        } else {
            format!("{t}\n")
        }),
        Err(e) if e.is_not_found() => Ok(roster::REVOKED_HEADER.to_string()),
        Err(e) => Err(e),
    }
}

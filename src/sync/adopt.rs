//! The end of a receiver's `rotate`: the new identity takes the old one's place once the
//! secrets are encrypted to it.
//!
//! A receiver changes nothing the fleet shares, so its `rotate` lists its new keys and leaves
//! the secrets as they are; the next admin or member cycle re-encrypts them to the roster
//! ([`super::integrate`]). Until then the receiver reads them with its old identity
//! (`identity.txt`) and holds the new one as `identity.txt.next`. The first cycle that finds
//! the clone's secrets readable with the new identity retires the old one.
//!
//! Owns: that decision. Must never: retire an identity while the secrets (or the roster) do
//! not name the new one yet, or while a rotate is still handing over its signing key
//! (`signing_key.next` present: the rotate finishes itself).

use crate::clock;
use crate::error::Result;
use crate::fleet::Machine;
use crate::identity::{self, Identity};
use crate::repo::FleetRepo;
use crate::roster::layout;
use crate::secrets::SecretsFile;

/// Retires this machine's old identity when a rotate left a new one waiting and the clone's
/// HEAD lists the new one's recipient and (when there are secrets) encrypts the secrets to it.
/// Returns whether the identity changed.
pub fn adopt_waiting_identity(machine: &Machine, repo: &FleetRepo) -> Result<bool> {
    let paths = &machine.paths;
    let next = paths.next_identity_file();
    if !next.exists() || paths.next_signing_key_file().exists() {
        return Ok(false);
    }
    let waiting = Identity::load(&next)?;
    let me = &machine.config.name;
    let listed = crate::files::read_text(
        &repo.root().join(layout::age_pub(layout::KEYS, me)),
        crate::limits::KEY_FILE.bytes,
    )
    .is_ok_and(|t| t.trim() == waiting.recipient().to_string());
    if !listed {
        return Ok(false);
    }
    let file = SecretsFile::new(repo.root());
    if file.ciphertext_path().exists() && file.load(&waiting).is_err() {
        return Ok(false);
    }
    identity::retire_for_next(
        &paths.identity_file(),
        &next,
        &paths.retired_dir(),
        &clock::rfc3339(clock::now_unix()),
    )?;
    crate::log::info(&format!(
        "the secrets are encrypted to this machine's new identity ({}): the old one is retired",
        waiting.recipient()
    ));
    Ok(true)
}

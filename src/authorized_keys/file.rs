//! Owns the authorized_keys file on disk around the pure [`merge`](super::merge): the current
//! file read (empty when missing, a symlink refused,
//! at most [`INPUT_LIMIT`] bytes), and the merged file written only when it changed (atomic,
//! 0600, `~/.ssh` made 0700 when missing). Used by `fleetkey authorized-keys` and by the native
//! backend's apply step. Must never: write a partial or empty file, or write through a symlink.

use std::path::Path;

use crate::error::{Error, Result};
use crate::files;

use super::{Merge, Roster};

/// Largest authorized_keys file read.
pub const INPUT_LIMIT: u64 = 16 << 20;

/// Merges `roster` into the file at `path` (atomic, 0600, `~/.ssh` made 0700 when missing, a
/// symlink refused); writes only when something changed. Used by `--apply` and by the native
/// backend's apply step.
pub fn merge_into_file(roster: &Roster<'_>, path: &Path) -> Result<Merge> {
    let current = read_target(path)?;
    let merged = super::merge(&current, roster)?;
    log_warnings(&merged);
    if merged.changed() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            files::ensure_private_dir(dir)?;
        }
        files::write_private(path, &merged.output)?;
    }
    Ok(merged)
}

/// The current bytes of `path` (empty when missing); a symlink is refused.
pub fn read_target(path: &Path) -> Result<Vec<u8>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::refused(format!(
            "{} is a symbolic link; refusing to merge into it",
            path.display()
        ))),
        Ok(_) => files::read_limited(path, INPUT_LIMIT),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("cannot read", path)(e)),
    }
}

/// Logs a warning for each active fleet key the file lists only with options sshd rejects
/// ([`Merge::warnings`]).
pub fn log_warnings(merged: &Merge) {
    for w in &merged.warnings {
        crate::log::warn(&format!(
            "line {}: {}'s key {} is listed with options sshd rejects, so that machine cannot log in until the line is fixed",
            w.line, w.machine, w.fingerprint
        ));
    }
}

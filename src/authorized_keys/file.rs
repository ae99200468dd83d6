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
    // sshd's StrictModes ignores an authorized_keys that others may write (every key in it,
    // so nobody logs in): a file fleetkey keeps is rewritten 0600, saying so.
    let loose = std::fs::symlink_metadata(path)
        .ok()
        .and_then(|m| loose_mode(&m));
    if merged.changed() || loose.is_some() {
        if let Some(mode) = loose {
            warn_loose(path, mode);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            files::ensure_private_dir(dir)?;
        }
        files::write_private(path, &merged.output)?;
    }
    Ok(merged)
}

/// The mode of `path` when group or others may write it or it is not owned by this user (what
/// sshd's StrictModes refuses); `None` when it is fine or missing.
pub fn loose_mode(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = meta.permissions().mode() & 0o7777;
    let mine = meta.uid() == rustix::process::geteuid().as_raw();
    (meta.is_file() && (mode & 0o022 != 0 || !mine)).then_some(mode)
}

/// Says that `path`, mode `mode`, is rewritten 0600 (see [`loose_mode`]).
pub fn warn_loose(path: &Path, mode: u32) {
    crate::log::warn(&format!(
        "{} was mode {mode:o} (writable by others, or not yours), which sshd's StrictModes refuses for every key in it; rewrote it 0600",
        path.display()
    ));
}

/// The hint for an authorized_keys that is a symlink (shared by sync, `authorized-keys
/// --apply` and doctor, so they agree).
pub fn symlink_hint(path: &Path) -> String {
    format!(
        "fleetkey merges keys only into a regular file (a link could point anywhere): replace the link with the file it points to (`cp --remove-destination \"$(readlink -f {p})\" {p}`), or set `[authorized_keys] path` in fleet.toml to the real file",
        p = path.display()
    )
}

/// The current bytes of `path` (empty when missing); a symlink is refused.
pub fn read_target(path: &Path) -> Result<Vec<u8>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::refused(format!(
            "{} is a symbolic link; refusing to merge into it",
            path.display()
        ))
        .hint(symlink_hint(path))),
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

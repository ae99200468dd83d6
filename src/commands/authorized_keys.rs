//! `fleetkey authorized-keys`: the fleet's SSH keys merged into an `authorized_keys` file.
//!
//! As a chezmoi `modify_` script it reads the current file on stdin (empty when the file does
//! not exist yet) and prints the whole new file on stdout. On any error, or when the fleet has no
//! active SSH key, it prints nothing and exits non-zero: chezmoi deletes a target whose `modify_`
//! output is empty. `--apply PATH` writes the file itself (atomically, 0600, refusing a symlink);
//! `--check [PATH]` only says what would change.
//!
//! This runs on every `chezmoi apply`, `diff` and `status`, so it reads only the roster's SSH
//! files and the input: no identity, no secrets, no git.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::authorized_keys::{self, FleetKey, Merge, Roster};
use crate::error::{Error, ErrorKind, Result};
use crate::files;
use crate::fleet::Machine;
use crate::roster::SshRoster;

/// Largest authorized_keys file read.
const INPUT_LIMIT: u64 = 16 << 20;

/// What the command was asked to do.
pub enum Mode {
    /// stdin to stdout.
    Filter,
    /// Merge into the file at the path.
    Apply(PathBuf),
    /// Report what a merge into the file (default: the configured one) would change.
    Check(Option<PathBuf>),
}

/// The roster of the `keys/` directory `keys_dir`, as the merge takes it: active keys with their
/// machines, and revoked keys.
pub fn fleet_keys(keys_dir: &Path) -> Result<(Vec<FleetKey>, Vec<ssh_key::PublicKey>)> {
    let roster = SshRoster::load(keys_dir)?;
    let active = roster
        .active
        .into_iter()
        .flat_map(|(machine, keys)| {
            keys.into_iter().map(move |key| FleetKey {
                machine: machine.clone(),
                key,
            })
        })
        .collect();
    Ok((active, roster.revoked))
}

/// Merges the roster of `keys_dir` into the file at `path` (atomic, 0600, `~/.ssh` made 0700
/// when missing, a symlink refused); writes only when something changed. Used by `--apply` and
/// by the native backend's apply step.
pub fn merge_into_file(keys_dir: &Path, path: &Path) -> Result<Merge> {
    let (active, revoked) = fleet_keys(keys_dir)?;
    let roster = Roster {
        active: &active,
        revoked: &revoked,
    };
    let current = read_target(path)?;
    let merged = authorized_keys::merge(&current, &roster)?;
    warn(&merged);
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

/// Runs the command; returns the exit code (1 from `--check` when the file would change).
pub fn run(mode: Mode, keys: Option<&Path>) -> Result<i32> {
    let keys_dir = match keys {
        Some(dir) => dir.to_path_buf(),
        None => Machine::load()?
            .config
            .repo
            .join(crate::roster::layout::KEYS),
    };
    if let Mode::Apply(path) = &mode {
        let merged = merge_into_file(&keys_dir, path)?;
        report(&merged, path, false)?;
        return Ok(0);
    }
    let (active, revoked) = fleet_keys(&keys_dir)?;
    let roster = Roster {
        active: &active,
        revoked: &revoked,
    };
    match mode {
        Mode::Filter => {
            let mut input = Vec::new();
            std::io::stdin()
                .lock()
                .take(INPUT_LIMIT + 1)
                .read_to_end(&mut input)
                .map_err(Error::io("cannot read", Path::new("stdin")))?;
            if input.len() as u64 > INPUT_LIMIT {
                return Err(ErrorKind::Refused(format!(
                    "stdin is larger than {INPUT_LIMIT} bytes"
                ))
                .into());
            }
            let merged = authorized_keys::merge(&input, &roster)?;
            warn(&merged);
            // One write of the whole file: never a partial one.
            let mut out = std::io::stdout().lock();
            match out.write_all(&merged.output).and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(Error::io("cannot write to", Path::new("stdout"))(e))
                }
                _ => Ok(0),
            }
        }
        Mode::Apply(_) => unreachable!("handled above"),
        Mode::Check(path) => {
            let path = match path {
                Some(p) => p,
                None => default_target()?,
            };
            let current = read_target(&path)?;
            let merged = authorized_keys::merge(&current, &roster)?;
            warn(&merged);
            report(&merged, &path, true)?;
            Ok(if merged.changed() { 1 } else { 0 })
        }
    }
}

/// The configured authorized_keys of this machine (`[authorized_keys] path` in fleet.toml).
pub fn default_target() -> Result<PathBuf> {
    let machine = Machine::load()?;
    let fleet = machine.fleet_config()?;
    Ok(machine.paths.expand(&fleet.authorized_keys.path))
}

/// The current bytes of `path` (empty when missing); a symlink is refused.
fn read_target(path: &Path) -> Result<Vec<u8>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(ErrorKind::Refused(format!(
            "{} is a symbolic link; refusing to merge into it",
            path.display()
        ))
        .into()),
        Ok(_) => files::read_limited(path, INPUT_LIMIT),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("cannot read", path)(e)),
    }
}

fn warn(merged: &Merge) {
    for w in &merged.warnings {
        crate::log::warn(&format!(
            "line {}: {}'s key {} is listed with options sshd rejects, so that machine cannot log in until the line is fixed",
            w.line, w.machine, w.fingerprint
        ));
    }
}

fn report(merged: &Merge, path: &Path, dry_run: bool) -> Result<()> {
    let mut out = String::new();
    let verb = if dry_run { "would " } else { "" };
    if !merged.changed() {
        out.push_str(&format!("{}: up to date\n", path.display()));
    }
    for c in &merged.added {
        out.push_str(&format!(
            "{verb}add     {} ({}) at line {}\n",
            c.fingerprint(),
            c.machine.as_deref().unwrap_or("?"),
            c.line
        ));
    }
    for c in &merged.removed {
        out.push_str(&format!(
            "{verb}remove  {} at line {} ({}{})\n",
            c.fingerprint(),
            c.line,
            c.why,
            c.machine
                .as_deref()
                .map(|m| format!(", {m}"))
                .unwrap_or_default()
        ));
    }
    crate::output::stdout(out.as_bytes())
}

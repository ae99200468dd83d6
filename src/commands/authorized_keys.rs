//! `fleetkey authorized-keys`: the fleet's SSH keys merged into an `authorized_keys` file.
//!
//! As a chezmoi `modify_` script it reads the current file on stdin (empty when the file does
//! not exist yet) and prints the whole new file on stdout. On any error, or when the fleet has no
//! active SSH key, it prints nothing and exits non-zero: chezmoi deletes a target whose `modify_`
//! output is empty. `--apply PATH` writes the file itself (atomically, 0600, refusing a symlink);
//! `--check [PATH]` says what would change, and why each fleet login key is admitted or left
//! out (`[authorized_keys] from`, see [`crate::access`]).
//!
//! This runs on every `chezmoi apply`, `diff` and `status`, so it reads only the roster's SSH
//! files and the input: no identity, no secrets, no git.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::authorized_keys::{
    self, INPUT_LIMIT, Merge, log_warnings, merge_into_file, read_target,
};
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Machine;
use crate::roster::fleet_keys;

/// What the command was asked to do.
pub enum Mode {
    /// stdin to stdout.
    Filter,
    /// Merge into the file at the path.
    Apply(PathBuf),
    /// Report what a merge into the file (default: the configured one) would change.
    Check(Option<PathBuf>),
}

/// Runs the command; returns the exit code (1 from `--check` when the file would change).
pub fn run(mode: Mode, keys: Option<&Path>) -> Result<i32> {
    // This machine's name leaves its own poke key out; with `--keys DIR` and no setup, every
    // member's poke key is admitted.
    let machine = Machine::load().ok();
    let me = machine.as_ref().map(|m| m.config.name.clone());
    let keys_dir = match keys {
        Some(dir) => dir.to_path_buf(),
        None => match &machine {
            Some(m) => m.config.repo.join(crate::roster::layout::KEYS),
            None => Machine::load()?
                .config
                .repo
                .join(crate::roster::layout::KEYS),
        },
    };
    // Whose login keys go in: the fleet.toml in force; with `--keys DIR` and no setup, the
    // default (admins and members).
    let from = match &machine {
        Some(m) => m.fleet_config()?.authorized_keys.from,
        None => crate::access::default_from(),
    };
    let keys = fleet_keys(&keys_dir, me.as_deref(), &from)?;
    let roster = keys.roster();
    if let Mode::Apply(path) = &mode {
        let merged = merge_into_file(&roster, path)?;
        report(&merged, path, false)?;
        return Ok(0);
    }
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
            log_warnings(&merged);
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
            log_warnings(&merged);
            report(&merged, &path, true)?;
            crate::output::stdout(explain(&keys, &from).as_bytes())?;
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

/// Why each fleet login key is admitted or left out, and whose poke keys are admitted.
pub fn explain(keys: &crate::roster::FleetKeys, from: &[String]) -> String {
    let mut out = format!(
        "login keys from: {}   ([authorized_keys] from)\n",
        crate::access::show_from(from)
    );
    let width = keys.access.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
    for (machine, access) in &keys.access {
        let list = if access.admitted() {
            &keys.active
        } else {
            &keys.left_out
        };
        for k in list.iter().filter(|k| &k.machine == machine) {
            out.push_str(&format!(
                "  {machine:<width$}  {}  {access}\n",
                crate::signing::fingerprint(&k.key)
            ));
        }
    }
    let mut pokes: Vec<&str> = keys.poke.iter().map(|k| k.machine.as_str()).collect();
    pokes.dedup();
    out.push_str(&format!(
        "poke keys (only `fleetkey poke`, every role): {}\n",
        if pokes.is_empty() {
            "none".to_string()
        } else {
            pokes.join(", ")
        }
    ));
    out
}

fn report(merged: &Merge, path: &Path, dry_run: bool) -> Result<()> {
    let mut out = String::new();
    let verb = if dry_run { "would " } else { "" };
    if !merged.changed() {
        out.push_str(&format!("{}: up to date\n", path.display()));
    }
    for c in &merged.added {
        let kind = match c.why {
            authorized_keys::ChangeReason::PokeKeyAdded => "poke key: may only run `fleetkey poke`",
            _ => "login key",
        };
        out.push_str(&format!(
            "{verb}add     {} ({}, {kind}) at line {}\n",
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

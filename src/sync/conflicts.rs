//! Conflict copies: the one place a losing version of a managed file is kept beside the live
//! file, logged, and turned into a record for `conflicts.json` and `status`.
//!
//! Must never: overwrite an existing file (a taken name gets a `-2`, `-3` … suffix), write the
//! copy anywhere but beside the live file, or write through a symlink (the copy goes through
//! [`HomeDir`], like every write into `$HOME`).

use std::collections::BTreeSet;

use crate::confine::{Confinement, DirMode, HomeDir, HomeRel};
use crate::error::Result;

use super::managed;
use super::state::{ConflictReason, ConflictRecord};

/// Who and when, for the copies one cycle makes.
#[derive(Debug, Clone, Copy)]
pub struct Occasion<'a> {
    /// This machine's name (the copy holds its version).
    pub machine: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, for the copy's name.
    pub stamp: &'a str,
    /// RFC 3339 time, for the record.
    pub at: &'a str,
}

/// Keeps `bytes` (this machine's losing version of `live`) as
/// `FILE.conflict-NAME-TIMESTAMP` beside it (mode `mode`, at most 0755), says so in the log,
/// and returns the record. When this fails, the caller must leave the live file alone.
pub fn keep_copy(
    home: &HomeDir,
    confinement: &Confinement,
    live: &HomeRel,
    bytes: &[u8],
    mode: u32,
    reason: ConflictReason,
    when: Occasion<'_>,
) -> Result<ConflictRecord> {
    let (parent, file) = match live.as_str().rsplit_once('/') {
        Some((p, f)) => (Some(p), f),
        None => (None, live.as_str()),
    };
    let dir = parent.map_or_else(|| home.path().to_path_buf(), |p| home.path().join(p));
    let base = managed::conflict_name(file, when.machine, when.stamp);
    let taken: BTreeSet<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // A copy of these very bytes made by this machine already (a cycle killed after it wrote
    // the copy, run again): that one is the copy, not a second.
    let mine = managed::conflict_name(file, when.machine, "");
    let at = |name: &str| match parent {
        Some(p) => format!("{p}/{name}"),
        None => name.to_string(),
    };
    let stamped = |n: &&String| {
        n.strip_prefix(&mine)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    };
    for existing in taken.iter().filter(stamped) {
        let Ok(rel) = confinement.check_rel(&at(existing)) else {
            continue;
        };
        if home
            .read_file(&rel, crate::limits::MANAGED_FILE)
            .is_ok_and(|c| c.bytes == bytes)
        {
            return Ok(ConflictRecord {
                path: home.path().join(live.as_str()),
                copy: home.path().join(rel.as_str()),
                machine: when.machine.to_string(),
                at: when.at.to_string(),
                reason,
            });
        }
    }
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    let copy_rel = match parent {
        Some(p) => format!("{p}/{name}"),
        None => name,
    };
    let copy_rel = confinement.check_rel(&copy_rel)?;
    let dirs = if mode & 0o077 == 0 {
        DirMode::Private
    } else {
        DirMode::Shared
    };
    home.write_file(&copy_rel, bytes, mode & 0o755, dirs)?;
    let (live, copy) = (
        home.path().join(live.as_str()),
        home.path().join(copy_rel.as_str()),
    );
    let why = match reason {
        ConflictReason::BothChanged => {
            "changed here and on another machine; the fleet's version wins".to_string()
        }
        ConflictReason::Restored => "an earlier version is restored".to_string(),
        ConflictReason::ReceiverOnly => {
            "this machine only receives (role receiver); the fleet's version is applied".to_string()
        }
        other => format!("the fleet's version wins ({other})"),
    };
    crate::log::warn(&format!(
        "{}: {why}; yours is kept as {}",
        live.display(),
        copy.display()
    ));
    Ok(ConflictRecord {
        path: live,
        copy,
        machine: when.machine.to_string(),
        at: when.at.to_string(),
        reason,
    })
}

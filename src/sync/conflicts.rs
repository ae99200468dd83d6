//! Conflict copies: the one place a losing version of a managed file is kept beside the live
//! file, logged, and turned into a record for `conflicts.json` and `status`.
//!
//! Must never: overwrite an existing file (a taken name gets a `-2`, `-3` … suffix), or write
//! the copy anywhere but beside the live file.

use std::path::Path;

use crate::error::Result;

use super::capture::write_conflict_copy;
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
/// `FILE.conflict-NAME-TIMESTAMP` beside it, says so in the log, and returns the record.
pub fn keep_copy(
    live: &Path,
    bytes: &[u8],
    mode: u32,
    reason: ConflictReason,
    when: Occasion<'_>,
) -> Result<ConflictRecord> {
    let copy = write_conflict_copy(live, bytes, mode, when.machine, when.stamp)?;
    let why = match reason {
        ConflictReason::BothChanged => {
            "changed here and on another machine; the fleet's version wins".to_string()
        }
        other => format!("the fleet's version wins ({other})"),
    };
    crate::log::warn(&format!(
        "{}: {why}; yours is kept as {}",
        live.display(),
        copy.display()
    ));
    Ok(ConflictRecord {
        path: live.to_path_buf(),
        copy,
        machine: when.machine.to_string(),
        at: when.at.to_string(),
        reason,
    })
}

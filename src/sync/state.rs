//! What the sync engine remembers between cycles, as JSON files in the state directory
//! (`~/.local/state/fleetkey/`):
//!
//! - `applied.json`: the manifest. For every managed file, what this machine last had in step
//!   with the fleet: its blob id, exec bit, and the size/mtime/inode the live file had right
//!   after; and the tree last applied (`tree`) with the lists it was applied under (`lists`). A live file whose stat still matches is unchanged without being read (git's index
//!   does the same); a live file whose content differs from its manifest blob is a local edit.
//!   A file missing from the manifest was never in step here (see `capture`).
//! - `last-cycle.json`: the last cycle's times, result, error and counts, for `status`.
//! - `conflicts.json`: every conflict copy made on this machine, for `status`.
//!
//! Must never: hold a secret (paths, ids, counts and times only). Every file is written
//! atomically, 0600.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::files;

/// Largest state file read.
const STATE_LIMIT: u64 = 256 << 20;

/// The manifest file name.
pub const APPLIED: &str = "applied.json";
/// The last cycle's record.
pub const LAST_CYCLE: &str = "last-cycle.json";
/// The conflict copies made here.
pub const CONFLICTS: &str = "conflicts.json";

/// The stat fields that tell a file changed without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Inode number (a rename-over save changes it).
    pub ino: u64,
    /// Permission bits.
    pub mode: u32,
}

impl Stat {
    /// The stat of `meta`.
    pub fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            size: meta.size(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000) + meta.mtime_nsec(),
            ino: meta.ino(),
            mode: meta.mode() & 0o7777,
        }
    }
}

/// One managed file as last in step. Stored as a JSON array
/// `[oid, exec, size, mtime_ns, ino, mode]` (the stat fields `null` when unknown): the manifest
/// holds one per managed file and is read every cycle.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "EntryRow")]
pub struct Entry {
    /// The git blob id of its content (hex).
    pub oid: String,
    /// Whether it is executable.
    pub exec: bool,
    /// The live file's stat after it was last captured or applied.
    pub stat: Option<Stat>,
}

/// The on-disk form of an [`Entry`].
#[derive(Deserialize)]
struct EntryRow(
    String,
    bool,
    Option<u64>,
    Option<i64>,
    Option<u64>,
    Option<u32>,
);

impl From<EntryRow> for Entry {
    fn from(r: EntryRow) -> Entry {
        let stat = match (r.2, r.3, r.4, r.5) {
            (Some(size), Some(mtime_ns), Some(ino), Some(mode)) => Some(Stat {
                size,
                mtime_ns,
                ino,
                mode,
            }),
            _ => None,
        };
        Entry {
            oid: r.0,
            exec: r.1,
            stat,
        }
    }
}

/// Written as the same row [`EntryRow`] reads, without copying the entry (the manifest is
/// written every cycle that changed something).
impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let st = self.stat;
        let mut row = s.serialize_tuple(6)?;
        row.serialize_element(&self.oid)?;
        row.serialize_element(&self.exec)?;
        row.serialize_element(&st.map(|s| s.size))?;
        row.serialize_element(&st.map(|s| s.mtime_ns))?;
        row.serialize_element(&st.map(|s| s.ino))?;
        row.serialize_element(&st.map(|s| s.mode))?;
        row.end()
    }
}

/// `applied.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// By path relative to `$HOME`.
    #[serde(deserialize_with = "rows_in_order")]
    pub files: BTreeMap<String, Entry>,
    /// The clone's tree last applied in full, so the next apply only looks at what changed.
    #[serde(default)]
    pub tree: Option<String>,
    /// The managed and private lists that apply used (a change means a full apply).
    #[serde(default)]
    pub lists: Option<String>,
}

/// Reads the manifest's `files` object into its map in one bulk build: the rows are written
/// in key order, so collecting them first and building the tree from the sorted run costs a
/// fraction of inserting 10,000 keys one by one (a duplicate key keeps its last row, as an
/// insert would).
fn rows_in_order<'de, D>(d: D) -> std::result::Result<BTreeMap<String, Entry>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Rows;
    impl<'de> serde::de::Visitor<'de> for Rows {
        type Value = Vec<(String, Entry)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of paths to manifest rows")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut rows = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(row) = map.next_entry::<String, Entry>()? {
                rows.push(row);
            }
            Ok(rows)
        }
    }
    Ok(d.deserialize_map(Rows)?.into_iter().collect())
}

impl Manifest {
    /// Reads the manifest (empty when missing or unreadable: every file is then "first
    /// contact", which loses nothing).
    pub fn load(state_dir: &Path) -> Manifest {
        read_json(&state_dir.join(APPLIED)).unwrap_or_default()
    }

    /// Writes the manifest atomically (temp file + rename; compact JSON, one row per managed
    /// file). It is not fsynced: it is a cache of what is in step, and losing it to a power cut
    /// only makes the next cycle treat every file as first contact (conflict copies, no loss),
    /// while an fsync of a large manifest would cost more than the rest of a cycle.
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        files::ensure_private_dir(state_dir)?;
        let path = state_dir.join(APPLIED);
        let text = serde_json::to_vec(self).expect("state serializes");
        let mut tmp = tempfile::Builder::new()
            .prefix(".fleetkey-")
            .suffix(".tmp")
            .tempfile_in(state_dir)
            .map_err(crate::error::Error::io(
                "cannot create a temporary file in",
                state_dir,
            ))?;
        std::io::Write::write_all(&mut tmp, &text)
            .map_err(crate::error::Error::io("cannot write", &path))?;
        tmp.persist(&path)
            .map_err(|e| crate::error::Error::io("cannot replace", &path)(e.error))?;
        Ok(())
    }

    /// Whether the live file with `meta` is still exactly what the manifest recorded.
    pub fn unchanged(&self, rel: &str, meta: &std::fs::Metadata) -> bool {
        self.files
            .get(rel)
            .and_then(|e| e.stat)
            .is_some_and(|s| s == Stat::of(meta))
    }
}

/// How a cycle ended, as `last-cycle.json` spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CycleResult {
    /// Everything done.
    #[default]
    Ok,
    /// The forge was unreachable; local commits are kept and go out with a later cycle.
    Offline,
    /// The cycle stopped on an error (see the record's `error`).
    Error,
    /// The forge holds commits that are not authentic (see the record's `refused`): nothing
    /// from them was applied; local commits are kept and not pushed.
    Untrusted,
}

impl std::fmt::Display for CycleResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CycleResult::Ok => "ok",
            CycleResult::Offline => "offline",
            CycleResult::Error => "error",
            CycleResult::Untrusted => "untrusted",
        })
    }
}

/// `last-cycle.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleRecord {
    /// When the cycle started (RFC 3339, UTC).
    pub started: String,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// How it ended.
    pub result: CycleResult,
    /// The error's message when `result` is not `ok`.
    pub error: Option<String>,
    /// Managed files whose local change was captured.
    pub captured: usize,
    /// Live files written or removed by apply.
    pub applied: usize,
    /// Conflicts resolved in this cycle (conflict copies made plus other conflicts logged).
    pub conflicts: usize,
    /// Whether the forge took our commits in this cycle.
    pub pushed: bool,
    /// The forge's commit the push went on (the base of the bundle the watcher's pokes carry);
    /// not written to the file.
    #[serde(skip)]
    pub pushed_over: Option<git2::Oid>,
    /// The commit the clone is on afterwards.
    pub head: Option<String>,
    /// What the fleet repo asked for and this cycle did not do, each with why: an invalid
    /// fleet.toml (the last valid one stayed in force), a refused path or commit. Reported
    /// every cycle until a valid commit heals it.
    #[serde(default)]
    pub held_back: Vec<String>,
    /// Commits of the forge this cycle refused as not authentic (nothing from them applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<crate::trust::Refusal>,
    /// The forge held refused commits and this cycle put the last authentic state back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healed: Option<super::heal::Healed>,
    /// Why this cycle did not heal the refused commits it found (`[trust] heal = false`, or
    /// the once-a-minute limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_healed: Option<String>,
}

impl CycleRecord {
    /// Reads the last record, if any.
    pub fn load(state_dir: &Path) -> Option<CycleRecord> {
        read_json(&state_dir.join(LAST_CYCLE))
    }

    /// Writes the record atomically.
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        write_json(state_dir, LAST_CYCLE, self)
    }
}

/// One conflict copy, in `conflicts.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// The live file that took the other version.
    pub path: PathBuf,
    /// The copy holding this machine's version.
    pub copy: PathBuf,
    /// The machine whose version the copy holds.
    pub machine: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Why the copy was made.
    pub reason: ConflictReason,
}

/// Why a conflict copy was made, as `conflicts.json` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConflictReason {
    /// The file changed here and on another machine, and the three-way merge could not join
    /// the two: the fleet's version won.
    #[serde(rename = "both changed")]
    BothChanged,
    /// The live file differed from the fleet's before this machine ever synced it.
    #[serde(rename = "first contact")]
    FirstContact,
    /// The live file changed after this cycle captured it.
    #[serde(rename = "changed during the cycle")]
    ChangedDuringCycle,
    /// `fleetkey restore` put an earlier version in its place.
    #[serde(rename = "replaced by restore")]
    Restored,
    /// The file was edited on a receiver, which changes nothing the fleet shares: the edit is
    /// kept aside and the fleet's version applied.
    #[serde(rename = "this machine only receives")]
    ReceiverOnly,
}

impl std::fmt::Display for ConflictReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConflictReason::BothChanged => "both changed",
            ConflictReason::FirstContact => "first contact",
            ConflictReason::ChangedDuringCycle => "changed during the cycle",
            ConflictReason::Restored => "replaced by restore",
            ConflictReason::ReceiverOnly => "this machine only receives",
        })
    }
}

/// The state file listing every path (relative to `$HOME`) the secrets were ever materialized
/// to on this machine, one per line.
pub const MATERIALIZED: &str = "materialized";

/// Every path the secrets were ever materialized to here (see [`MATERIALIZED`]).
pub fn materialized(state_dir: &Path) -> std::collections::BTreeSet<String> {
    files::read_limited(&state_dir.join(MATERIALIZED), STATE_LIMIT)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Remembers that the secrets are materialized at `rel` (before they are written there).
pub fn record_materialized(state_dir: &Path, rel: &str) -> Result<()> {
    let mut all = materialized(state_dir);
    if !all.insert(rel.to_string()) {
        return Ok(());
    }
    let mut text = all.into_iter().collect::<Vec<_>>().join("\n");
    text.push('\n');
    files::ensure_private_dir(state_dir)?;
    files::write_atomic(&state_dir.join(MATERIALIZED), text.as_bytes(), 0o600)
}

/// Adds `records` to `conflicts.json`.
pub fn record_conflicts(state_dir: &Path, records: &[ConflictRecord]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut all: Vec<ConflictRecord> = read_json(&state_dir.join(CONFLICTS)).unwrap_or_default();
    // A copy recorded already (a killed cycle run again reuses its copy) is recorded once.
    for r in records {
        if !all.iter().any(|a| a.copy == r.copy) {
            all.push(r.clone());
        }
    }
    write_json(state_dir, CONFLICTS, &all)
}

/// Drops the records of the conflict copies `copies` from `conflicts.json` (they were settled).
pub fn forget_conflicts(state_dir: &Path, copies: &[PathBuf]) -> Result<()> {
    let all: Vec<ConflictRecord> = read_json(&state_dir.join(CONFLICTS)).unwrap_or_default();
    let kept: Vec<ConflictRecord> = all
        .into_iter()
        .filter(|c| !copies.contains(&c.copy))
        .collect();
    write_json(state_dir, CONFLICTS, &kept)
}

/// Every conflict copy recorded here whose file still exists.
pub fn conflicts(state_dir: &Path) -> Vec<ConflictRecord> {
    let all: Vec<ConflictRecord> = read_json(&state_dir.join(CONFLICTS)).unwrap_or_default();
    all.into_iter().filter(|c| c.copy.exists()).collect()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = files::read_limited(path, STATE_LIMIT).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            crate::log::warn(&format!("ignoring {}: {e}", path.display()));
            None
        }
    }
}

fn write_json<T: Serialize>(state_dir: &Path, name: &str, value: &T) -> Result<()> {
    files::ensure_private_dir(state_dir)?;
    let mut text = serde_json::to_vec_pretty(value).expect("state serializes");
    text.push(b'\n');
    files::write_atomic(&state_dir.join(name), &text, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_reasons_keep_their_written_names() {
        assert_eq!(
            serde_json::to_string(&CycleResult::Offline).unwrap(),
            r#""offline""#
        );
        for reason in [
            ConflictReason::BothChanged,
            ConflictReason::FirstContact,
            ConflictReason::ChangedDuringCycle,
            ConflictReason::ReceiverOnly,
        ] {
            let text = serde_json::to_string(&reason).unwrap();
            assert_eq!(text, format!("\"{reason}\""));
            assert_eq!(
                serde_json::from_str::<ConflictReason>(&text).unwrap(),
                reason
            );
        }
    }

    #[test]
    fn manifest_entries_are_compact_rows_and_read_back() {
        let mut m = Manifest::default();
        m.files.insert(
            ".zshrc".into(),
            Entry {
                oid: "ab".into(),
                exec: true,
                stat: Some(Stat {
                    size: 3,
                    mtime_ns: 5,
                    ino: 7,
                    mode: 0o755,
                }),
            },
        );
        m.files.insert(
            "x".into(),
            Entry {
                oid: "cd".into(),
                exec: false,
                stat: None,
            },
        );
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            text.contains(r#"".zshrc":["ab",true,3,5,7,493]"#)
                && text.contains(r#""x":["cd",false,null,null,null,null]"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
    }

    #[test]
    fn manifest_rows_out_of_order_or_repeated_read_as_inserts_would() {
        // Written by hand or by an older build: the bulk build must not assume sorted rows.
        let text = r#"{"files":{"b":["2",false,null,null,null,null],"a":["1",true,null,null,null,null],"b":["3",false,null,null,null,null]},"tree":null}"#;
        let m: Manifest = serde_json::from_str(text).unwrap();
        let keys: Vec<&str> = m.files.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(
            m.files["b"].oid, "3",
            "the last row of a repeated path wins"
        );
        assert!(m.files["a"].exec);
    }
}

//! `status.json`, the file at the top of each host branch: what a machine says about itself.
//!
//! Read from other machines' branches it is hostile data: parsed with a size limit, unknown
//! fields ignored (a newer fleetkey may add some), and every string cleaned of control
//! characters before anything shows it. Must never: hold a secret or a file's content (names,
//! ids, counts and times only).

use serde::{Deserialize, Serialize};

/// The format of `status.json` this fleetkey writes.
pub const FORMAT: u32 = 1;

/// A machine's `status.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    /// The format ([`FORMAT`]).
    #[serde(default)]
    pub format: u32,
    /// The machine's name.
    #[serde(default)]
    pub machine: String,
    /// Its fleetkey version.
    #[serde(default)]
    pub fleetkey: String,
    /// Its platform, `OS-ARCH` (`macos-aarch64`, `linux-x86_64`).
    #[serde(default)]
    pub platform: String,
    /// When it was written (seconds since the epoch; RFC 3339 in `written_at`).
    #[serde(default)]
    pub written: i64,
    /// [`HostStatus::written`] as RFC 3339, for people reading the branch.
    #[serde(default)]
    pub written_at: String,
    /// Its last sync cycle.
    #[serde(default)]
    pub last_cycle: Option<LastCycle>,
    /// The fleet commit it has applied.
    #[serde(default)]
    pub applied: Option<String>,
    /// Its background agents.
    #[serde(default)]
    pub agents: Vec<AgentState>,
    /// Its open conflict copies (`~/REL` of each copy).
    #[serde(default)]
    pub conflicts: Vec<String>,
    /// Secrets with a concurrent edit kept aside (names only).
    #[serde(default)]
    pub secret_conflicts: Vec<String>,
    /// The files it publishes.
    #[serde(default)]
    pub files: Vec<PublishedFile>,
    /// When it last healed the forge (RFC 3339), within the last week (see
    /// `crate::sync::heal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healed: Option<String>,
}

/// The last cycle of a machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCycle {
    /// When it started (RFC 3339).
    #[serde(default)]
    pub at: String,
    /// `ok`, `offline`, `error` or `untrusted`.
    #[serde(default)]
    pub result: String,
    /// How many things it held back.
    #[serde(default)]
    pub held_back: usize,
}

/// A background agent of a machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// `watcher` or `puller`.
    #[serde(default)]
    pub agent: String,
    /// Its files are installed.
    #[serde(default)]
    pub installed: bool,
    /// It runs: for the watcher, its process is alive; `None` when unknown (the puller is a
    /// timer that runs now and then).
    #[serde(default)]
    pub loaded: Option<bool>,
}

/// A file a machine publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedFile {
    /// Its path relative to `$HOME` (also its path below `collected/host=NAME/`).
    pub path: String,
    /// Its size in bytes (before encryption).
    pub size: u64,
    /// Age-encrypted to the fleet on the branch.
    pub encrypted: bool,
}

impl HostStatus {
    /// Parses a branch's `status.json` (at most [`crate::limits::HOST_STATUS`]); strings are
    /// cleaned of control characters and cut to a sane length, lists are capped.
    pub fn parse(bytes: &[u8]) -> Result<HostStatus, String> {
        crate::limits::HOST_STATUS
            .check(bytes.len() as u64)
            .map_err(|e| e.to_string())?;
        let mut s: HostStatus = serde_json::from_slice(bytes)
            .map_err(|e| format!("status.json is not valid ({})", e.classify_text()))?;
        s.clean();
        Ok(s)
    }

    fn clean(&mut self) {
        for text in [
            &mut self.machine,
            &mut self.fleetkey,
            &mut self.platform,
            &mut self.written_at,
        ] {
            *text = printable(text, 64);
        }
        if let Some(c) = &mut self.last_cycle {
            c.at = printable(&c.at, 64);
            c.result = printable(&c.result, 16);
        }
        if let Some(a) = &mut self.applied {
            *a = printable(a, 64);
        }
        if let Some(h) = &mut self.healed {
            *h = printable(h, 64);
        }
        self.agents.truncate(8);
        for a in &mut self.agents {
            a.agent = printable(&a.agent, 16);
        }
        for list in [&mut self.conflicts, &mut self.secret_conflicts] {
            list.truncate(100);
            for t in list.iter_mut() {
                *t = printable(t, 300);
            }
        }
        self.files.truncate(1000);
        for f in &mut self.files {
            f.path = printable(&f.path, 300);
        }
    }
}

/// `text` without control characters, at most `max` characters.
pub fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// serde_json's error category, without the input it quotes.
trait Classify {
    fn classify_text(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_text(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "a syntax error",
            serde_json::error::Category::Data => "a field of the wrong type",
            serde_json::error::Category::Eof => "it ends early",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_status_is_cleaned_and_bounded() {
        let text =
            br#"{"machine":"b\u001b[2J","fleetkey":"0.1.0","conflicts":["~/x\nEVIL"],"extra":1}"#;
        let s = HostStatus::parse(text).unwrap();
        assert_eq!(s.machine, "b[2J");
        assert_eq!(s.conflicts, vec!["~/xEVIL".to_string()]);
        let err = HostStatus::parse(b"{\"machine\": \"secret-looking").unwrap_err();
        assert!(!err.contains("secret-looking"), "{err}");
        let big = vec![b' '; (crate::limits::HOST_STATUS.bytes + 1) as usize];
        assert!(HostStatus::parse(&big).is_err());
    }
}

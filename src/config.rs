//! The two configuration files: this machine's `config.toml` and the fleet's `fleet.toml`.
//!
//! Owns: their schema, defaults and validation. An unknown key anywhere is an error naming the
//! file, the line and the key (chezmoi users lose hours to `recipent`); `quiet`, `settle` and
//! `poll` are bounded ([`crate::limits::QUIET`], [`crate::limits::SETTLE`],
//! [`crate::limits::POLL`]). Must never: write either file
//! non-atomically, or quote a file's content in an error (a TOML error names the line, the
//! column and the key; the line itself may be a secret that a symlink or a typo brought in).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::files;
use crate::limits::{self, Bounds};

/// Largest config.toml fleetkey reads (this machine's own file, as large as fleet.toml may be).
const CONFIG_LIMIT: u64 = limits::FLEET_TOML.bytes;

/// How the managed dotfiles are captured and applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `home/` in the fleet repo mirrors managed paths byte for byte.
    #[default]
    Native,
    /// The fleet repo is a chezmoi source directory; chezmoi captures and applies.
    Chezmoi,
}

impl Backend {
    /// The name used in files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Native => "native",
            Backend::Chezmoi => "chezmoi",
        }
    }
}

/// `~/.config/fleetkey/config.toml`: this machine's own settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// This machine's name in the fleet.
    pub name: String,
    /// The dotfile backend.
    #[serde(default)]
    pub backend: Backend,
    /// The fleet clone.
    pub repo: PathBuf,
    /// The forge the clone pushes to and pulls from.
    pub remote: String,
    /// The commit this machine trusts without checking (see [`crate::trust`]): the founding
    /// commit for `init`, the bundle's for `join`, the tip it first fetched for `enroll`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_root: Option<String>,
    /// A desktop notification when a sync makes a conflict copy (`notify = false` turns it
    /// off; on by default).
    #[serde(default = "default_notify", skip_serializing_if = "is_default_notify")]
    pub notify: bool,
}

fn default_notify() -> bool {
    true
}

fn is_default_notify(on: &bool) -> bool {
    *on
}

impl MachineConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<MachineConfig> {
        if !path.exists() {
            return Err(ErrorKind::NotInitialized {
                path: path.to_path_buf(),
            }
            .into());
        }
        let cfg: MachineConfig = parse_toml(path)?;
        crate::roster::check_name(&cfg.name).map_err(|_| ErrorKind::ConfigValue {
            path: path.to_path_buf(),
            key: "name".into(),
            problem: "not a valid machine name ([a-z0-9][a-z0-9-]{0,62})".into(),
        })?;
        Ok(cfg)
    }

    /// Writes `path` atomically (0600).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self).expect("config serializes");
        files::write_atomic(path, text.as_bytes(), 0o600)
    }
}

/// `fleet.toml` at the top of the fleet repo: what syncs and how.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The dotfile backend the fleet uses.
    #[serde(default)]
    pub backend: Backend,
    /// The fleet-wide forge, once `fleetkey remote set` moved the fleet: every machine whose
    /// config.toml names another forge switches to this one on its next cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<String>,
    /// The sync settings.
    #[serde(default)]
    pub sync: SyncConfig,
    /// Where secrets are materialized.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// Where the authorized_keys merge is applied.
    #[serde(default)]
    pub authorized_keys: AuthorizedKeysConfig,
    /// What each machine publishes on its host branch for the others to gather.
    #[serde(default, skip_serializing_if = "CollectConfig::is_empty")]
    pub collect: CollectConfig,
    /// What a machine does when the forge holds commits that are not authentic.
    #[serde(default, skip_serializing_if = "TrustConfig::is_default")]
    pub trust: TrustConfig,
    /// Per-machine settings (`[hosts.NAME]`), by machine name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, HostConfig>,
}

/// `[trust]` in fleet.toml.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// A cycle that finds commits on the forge that are not authentic (or a forge that lost
    /// commits this machine verified) puts the last authentic state back, at most once a
    /// minute per machine (see `crate::sync::heal`). `false`: only `fleetkey forge repair`
    /// does, when a person runs it.
    #[serde(default = "default_heal")]
    pub heal: bool,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            heal: default_heal(),
        }
    }
}

impl TrustConfig {
    /// The defaults (the section is left out of the file).
    pub fn is_default(&self) -> bool {
        *self == TrustConfig::default()
    }
}

fn default_heal() -> bool {
    true
}

/// `[collect]` in fleet.toml: the files every machine publishes on its branch
/// `fleetkey/host/NAME` and every other machine gathers into
/// `~/.local/share/fleetkey/collected/host=NAME/` (see `crate::sync::collect`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {
    /// Files under `$HOME` (`~/REL`), checked as managed paths are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Age-encrypt the published files to the fleet's recipients.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypt: bool,
}

impl CollectConfig {
    /// No file to collect and no encryption asked for (the section is left out of the file).
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && !self.encrypt
    }
}

/// `[hosts.NAME]` in fleet.toml: one machine's own settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Where peers poke this machine over SSH (see [`crate::address`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `[sync]` in fleet.toml.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// The managed list: the contract of what syncs.
    #[serde(default)]
    pub paths: Vec<String>,
    /// How long the watcher waits after the last change before a cycle starts (bounded by
    /// [`limits::QUIET`]). Left out of fleet.toml while it is the default, so a fleet.toml
    /// written by this version still reads on machines that predate the setting.
    #[serde(default = "default_quiet", skip_serializing_if = "is_default_quiet")]
    pub quiet: String,
    /// The longest the watcher waits after the first change of a burst while changes keep
    /// coming, and the longest a cycle waits for a file still being written.
    #[serde(default = "default_settle")]
    pub settle: String,
    /// How often the puller checks the forge.
    #[serde(default = "default_poll")]
    pub poll: String,
    /// The branch every machine follows.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Managed paths written 0600 on apply (besides everything under `~/.ssh`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private: Vec<String>,
    /// Gitignore-style patterns (relative to `$HOME`) of files never captured nor deleted, on
    /// top of the built-in list ([`crate::sync::ignore::BUILT_IN`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// Managed paths synced byte for byte: no home-path placeholder
    /// ([`crate::sync::placeholder`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub literal: Vec<String>,
    /// Managed paths captured even when they hold what looks like a credential ([`crate::tokens`]):
    /// the per-file opt-out of token detection. A fleet secret's value is still replaced by
    /// its placeholder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_tokens: Vec<String>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            paths: Vec::new(),
            quiet: default_quiet(),
            settle: default_settle(),
            poll: default_poll(),
            branch: default_branch(),
            private: Vec::new(),
            ignore: Vec::new(),
            literal: Vec::new(),
            allow_tokens: Vec::new(),
        }
    }
}

/// `[secrets]` in fleet.toml.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// If set, the decrypted secrets are written here (0600) on apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub materialize: Option<String>,
    /// How the materialized file is written: `env` (the secrets file as `secrets edit` shows
    /// it, for dotenv readers) or `sh` (`export KEY='value'` lines that `.` in a shell reads
    /// back exactly).
    #[serde(default, skip_serializing_if = "MaterializeFormat::is_default")]
    pub materialize_format: MaterializeFormat,
}

/// The format of the materialized secrets file (`[secrets] materialize_format`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MaterializeFormat {
    /// The secrets file itself (`KEY=value` lines with its quoting and directives), for tools
    /// that read dotenv files; a shell's `.` misreads unquoted values with spaces.
    #[default]
    Env,
    /// `export KEY='value'` lines, for `. FILE` in bash, zsh or dash.
    Sh,
}

impl MaterializeFormat {
    fn is_default(&self) -> bool {
        *self == MaterializeFormat::Env
    }
}

/// `[authorized_keys]` in fleet.toml.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthorizedKeysConfig {
    /// The file the native backend merges fleet keys into.
    #[serde(default = "default_authorized_keys")]
    pub path: String,
    /// Whose login keys every machine admits: roles (`admin`, `member`, `receiver`) and
    /// machine names (see [`crate::access`]). Poke keys are admitted whatever this says.
    #[serde(
        default = "crate::access::default_from",
        skip_serializing_if = "crate::access::is_default_from"
    )]
    pub from: Vec<String>,
}

impl Default for AuthorizedKeysConfig {
    fn default() -> Self {
        AuthorizedKeysConfig {
            path: default_authorized_keys(),
            from: crate::access::default_from(),
        }
    }
}

/// The three-way merge of `[hosts]`: upstream's, plus each `[hosts.NAME]` that ours changed
/// and upstream did not (each machine sets its own, so two machines' changes both survive).
pub fn merge_hosts(
    base: &BTreeMap<String, HostConfig>,
    ours: &BTreeMap<String, HostConfig>,
    theirs: &BTreeMap<String, HostConfig>,
) -> BTreeMap<String, HostConfig> {
    let mut out = theirs.clone();
    for name in base.keys().chain(ours.keys()) {
        let (b, o) = (base.get(name), ours.get(name));
        if o != b && theirs.get(name) == b {
            match o {
                Some(h) => out.insert(name.clone(), h.clone()),
                None => out.remove(name),
            };
        }
    }
    out
}

fn default_quiet() -> String {
    "150ms".into()
}
fn is_default_quiet(quiet: &String) -> bool {
    *quiet == default_quiet()
}
fn default_settle() -> String {
    "2s".into()
}
fn default_poll() -> String {
    "15s".into()
}
fn default_branch() -> String {
    "main".into()
}
fn default_authorized_keys() -> String {
    "~/.ssh/authorized_keys".into()
}

impl FleetConfig {
    /// The file name inside the fleet repo.
    pub const FILE: &'static str = "fleet.toml";

    /// Reads and validates `fleet.toml` from the repo at `repo`: a regular file (not a
    /// symlink) of at most [`limits::FLEET_TOML`].
    pub fn load(repo: &Path) -> Result<FleetConfig> {
        let path = repo.join(Self::FILE);
        let text = files::read_regular_text(&path, limits::FLEET_TOML)?;
        let cfg: FleetConfig = parse_toml_text(&text, &path)?;
        cfg.validate(&path)?;
        Ok(cfg)
    }

    /// Checks the values that serde cannot: durations (bounded) and the branch name.
    pub fn validate(&self, path: &Path) -> Result<()> {
        for (bounds, value) in [
            (limits::QUIET, &self.sync.quiet),
            (limits::SETTLE, &self.sync.settle),
            (limits::POLL, &self.sync.poll),
        ] {
            parse_bounded(value, bounds).map_err(|problem| {
                Error::from(ErrorKind::ConfigValue {
                    path: path.to_path_buf(),
                    key: bounds.key.into(),
                    problem,
                })
            })?;
        }
        if self.sync.branch.is_empty()
            || !self
                .sync
                .branch
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            return Err(ErrorKind::ConfigValue {
                path: path.to_path_buf(),
                key: "sync.branch".into(),
                problem: "not a plain branch name".into(),
            }
            .into());
        }
        crate::access::check_from(&self.authorized_keys.from).map_err(|problem| {
            Error::from(ErrorKind::ConfigValue {
                path: path.to_path_buf(),
                key: "authorized_keys.from".into(),
                problem,
            })
        })?;
        for (name, host) in &self.hosts {
            let key = |what: &str| format!("hosts.{what}");
            crate::roster::check_name(name).map_err(|_| ErrorKind::ConfigValue {
                path: path.to_path_buf(),
                key: key("NAME"),
                problem: "a [hosts.NAME] section whose NAME is not a machine name".into(),
            })?;
            if let Some(address) = &host.address {
                crate::address::Address::parse(address).map_err(|problem| {
                    ErrorKind::ConfigValue {
                        path: path.to_path_buf(),
                        key: key(&format!("{name}.address")),
                        problem: format!("not an ssh destination: {problem}"),
                    }
                })?;
            }
        }
        Ok(())
    }

    /// The checked address of machine `name`, if it has one. An address that fails the check
    /// (only possible in a fleet.toml that was never validated) is treated as none.
    pub fn address(&self, name: &str) -> Option<crate::address::Address> {
        let text = self.hosts.get(name)?.address.as_deref()?;
        crate::address::Address::parse(text).ok()
    }

    /// Sets (or with `None` clears) machine `name`'s address; an empty `[hosts.NAME]` goes.
    pub fn set_address(&mut self, name: &str, address: Option<&crate::address::Address>) {
        let host = self.hosts.entry(name.to_string()).or_default();
        host.address = address.map(|a| a.as_str().to_string());
        if host == &HostConfig::default() {
            self.hosts.remove(name);
        }
    }

    /// The settle time. Never panics: a value that [`FleetConfig::validate`] would refuse
    /// gives the default.
    pub fn settle(&self) -> Duration {
        parse_bounded(&self.sync.settle, limits::SETTLE)
            .or_else(|_| parse_bounded(&default_settle(), limits::SETTLE))
            .unwrap_or(limits::SETTLE.min)
    }

    /// The quiet time, never longer than [`FleetConfig::settle`] (the upper bound wins). Never
    /// panics: a value that [`FleetConfig::validate`] would refuse gives the default.
    pub fn quiet(&self) -> Duration {
        parse_bounded(&self.sync.quiet, limits::QUIET)
            .or_else(|_| parse_bounded(&default_quiet(), limits::QUIET))
            .unwrap_or(limits::QUIET.min)
            .min(self.settle())
    }

    /// The poll interval. Never panics: a value that [`FleetConfig::validate`] would refuse
    /// gives the default.
    pub fn poll(&self) -> Duration {
        parse_bounded(&self.sync.poll, limits::POLL)
            .or_else(|_| parse_bounded(&default_poll(), limits::POLL))
            .unwrap_or(limits::POLL.max)
    }

    /// The file's text as fleetkey writes it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("fleet config serializes")
    }

    /// fleet.toml as `init` writes it: a comment line, then [`FleetConfig::to_toml`].
    pub fn file_text(&self) -> String {
        format!(
            "# fleetkey: what this fleet syncs and how. Unknown keys are an error.\n{}",
            self.to_toml()
        )
    }
}

fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = files::read_text(path, CONFIG_LIMIT)?;
    parse_toml_text(&text, path)
}

/// Parses `text` (the content of `path`), turning a TOML error into one that names the line,
/// the column and the key only.
fn parse_toml_text<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        Error::from(ErrorKind::Config {
            path: path.to_path_buf(),
            source: Box::new(<toml::de::Error as serde::de::Error>::custom(
                describe_toml_error(&e, text),
            )),
        })
    })
}

/// `line L, column C, key K: PROBLEM` for a TOML error, with nothing of the file's content
/// but key names that look like key names (see [`plain_key`]) and the schema's expectations.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let mut out = String::new();
    let mut line_no = None;
    if let Some(span) = e.span() {
        let at = span.start.min(text.len());
        let at = (0..=at)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[start..at].chars().count() + 1;
        out.push_str(&format!("line {line}, column {column}"));
        line_no = Some(line);
    } else {
        out.push_str("somewhere in the file");
    }
    if let Some(key) = line_no.and_then(|l| key_at_line(text, l)) {
        out.push_str(&format!(", key {key}"));
    }
    out.push_str(": ");
    out.push_str(&toml_problem(e.message()));
    out
}

/// A key name safe to print: 1 to 32 of `a-z`, `0-9`, `_` and `-`, starting with a letter.
/// Anything else (an upper-case run of an age identity, a base64 line of a private key) is
/// never printed.
fn plain_key(s: &str) -> Option<&str> {
    let s = s.trim().trim_matches(|c| c == '"' || c == '\'');
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    ok.then_some(s)
}

/// A dotted key (`a.b`) whose every part is a [`plain_key`].
fn plain_dotted(s: &str) -> Option<String> {
    let parts: Option<Vec<&str>> = s.split('.').map(plain_key).collect();
    parts.map(|p| p.join("."))
}

/// The dotted key being defined on line `line` (1-based): the table header above it and the
/// key before `=`, when all of it is plain.
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?.trim();
    let header = |l: &str| {
        let l = l.trim();
        l.strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
            .map(str::to_string)
    };
    if let Some(h) = header(here) {
        return plain_dotted(&h);
    }
    let key = plain_dotted(here.split_once('=')?.0)?;
    let table = lines[..line - 1].iter().rev().find_map(|l| header(l));
    match table {
        None => Some(key),
        Some(t) => Some(format!("{}.{key}", plain_dotted(&t)?)),
    }
}

/// The kind of a TOML error, from serde's and toml's fixed wording, without the values they
/// quote. The schema's expectations (`expected a string`, field names) are kept when plain.
fn toml_problem(message: &str) -> String {
    let expected = message
        .rsplit_once(", expected ")
        .map(|(_, tail)| tail.lines().next().unwrap_or(""))
        .filter(|tail| {
            tail.len() <= 200
                && tail
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || " `,_-".contains(c))
        });
    let with_expected = |what: &str| match expected {
        Some(x) => format!("{what}, expected {x}"),
        None => what.to_string(),
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        return match rest.split_once('`').and_then(|(k, _)| plain_key(k)) {
            Some(k) => with_expected(&format!("unknown key `{k}`")),
            None => with_expected("unknown key"),
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        return match rest.split_once('`').and_then(|(k, _)| plain_key(k)) {
            Some(k) => format!("missing key `{k}`"),
            None => "missing key".into(),
        };
    }
    for (prefix, what) in [
        ("invalid type", "wrong type of value"),
        ("invalid value", "invalid value"),
        ("invalid length", "wrong number of values"),
        ("unknown variant", "unknown value"),
    ] {
        if message.starts_with(prefix) {
            return with_expected(what);
        }
    }
    if message.starts_with("duplicate") {
        return "a key is defined twice".into();
    }
    "not valid TOML".into()
}

/// Parses a duration: a whole number and a unit, `ms`, `s`, `m`, `h` or `d` (`500ms`, `2s`,
/// `5m`). A bare number is an error (is `5` seconds or minutes?); so is a value too large to
/// represent. The value itself is not quoted in the error.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    const SHAPE: &str = "not a duration: write a whole number and a unit, like 500ms, 2s, 5m or 1h";
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(SHAPE.into());
    }
    let too_large = || "too large a duration".to_string();
    let n: u64 = number.parse().map_err(|_| too_large())?;
    let secs = |scale: u64| n.checked_mul(scale).map(Duration::from_secs);
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        "" => return Err(format!("{SHAPE} (a bare number has no unit)")),
        _ => return Err(format!("{SHAPE} (unknown unit; use ms, s, m, h or d)")),
    };
    d.ok_or_else(too_large)
}

/// Shows a duration in the largest unit that holds it exactly (`100ms`, `5s`, `1m`, `24h`).
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// [`parse_duration`], then `bounds`: an out-of-range value is an error that gives the range.
pub fn parse_bounded(text: &str, bounds: Bounds) -> std::result::Result<Duration, String> {
    let range = || {
        format!(
            "allowed: {} to {}",
            show_duration(bounds.min),
            show_duration(bounds.max)
        )
    };
    let d = parse_duration(text).map_err(|e| format!("{e}; {}", range()))?;
    if !bounds.contains(d) {
        return Err(format!("{} is out of range; {}", show_duration(d), range()));
    }
    Ok(d)
}

/// The check clap runs on `pull --every`: a bounded duration ([`limits::EVERY`]). Returns the
/// text unchanged.
pub fn check_every(text: &str) -> std::result::Result<String, String> {
    parse_bounded(text, limits::EVERY).map(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration(" 2s "), Ok(Duration::from_secs(2)));
        for bad in [
            "90",
            "5",
            "",
            "s",
            "2 fortnights",
            "2 s",
            "-1s",
            "1.5s",
            "2S",
            "1e3s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("5").unwrap_err().contains("bare number"));
    }

    #[test]
    fn huge_durations_are_errors_not_overflows() {
        for huge in [
            "18446744073709551615s",
            "18446744073709551616s",
            "18446744073709551615m",
            "18446744073709551615h",
            "18446744073709551615d",
            "99999999999999999999999999999999ms",
        ] {
            let err = parse_bounded(huge, limits::POLL).unwrap_err();
            assert!(err.contains("allowed: 5s to 24h"), "{huge}: {err}");
        }
        // Parsed but far out of range: refused, never added to an Instant.
        assert!(parse_duration("18446744073709551615ms").is_ok());
        let err = parse_bounded("18446744073709551615ms", limits::POLL).unwrap_err();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn settle_and_poll_are_bounded_and_errors_name_the_key_file_and_range() {
        let dir = tempfile::tempdir().unwrap();
        let write = |settle: &str, poll: &str| {
            std::fs::write(
                dir.path().join("fleet.toml"),
                format!("[sync]\nsettle = \"{settle}\"\npoll = \"{poll}\"\n"),
            )
            .unwrap();
        };
        for (settle, poll) in [
            ("100ms", "5s"),
            ("1m", "1d"),
            ("2s", "24h"),
            ("60s", "86400s"),
        ] {
            write(settle, poll);
            FleetConfig::load(dir.path()).unwrap();
        }
        for (settle, poll, key, range) in [
            ("99ms", "60s", "sync.settle", "allowed: 100ms to 1m"),
            ("61s", "60s", "sync.settle", "allowed: 100ms to 1m"),
            ("2s", "0s", "sync.poll", "allowed: 5s to 24h"),
            ("2s", "4999ms", "sync.poll", "allowed: 5s to 24h"),
            ("2s", "86401s", "sync.poll", "allowed: 5s to 24h"),
            (
                "2s",
                "18446744073709551615s",
                "sync.poll",
                "allowed: 5s to 24h",
            ),
            ("2s", "60", "sync.poll", "bare number"),
        ] {
            write(settle, poll);
            let err = FleetConfig::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains("fleet.toml"), "{err}");
            assert!(err.contains(key), "{err}");
            assert!(err.contains(range), "{err}");
        }
    }

    #[test]
    fn quiet_is_bounded_defaults_to_150ms_and_never_outlasts_settle() {
        let dir = tempfile::tempdir().unwrap();
        let load = |sync: &str| {
            std::fs::write(dir.path().join("fleet.toml"), format!("[sync]\n{sync}")).unwrap();
            FleetConfig::load(dir.path())
        };
        let cfg = load("").unwrap();
        assert_eq!(cfg.quiet(), Duration::from_millis(150));
        assert_eq!(cfg.settle(), Duration::from_secs(2));
        assert!(
            !cfg.to_toml().contains("quiet"),
            "the default stays out of fleet.toml, so older versions still read it"
        );
        assert_eq!(
            load("quiet = \"10ms\"\n").unwrap().quiet(),
            Duration::from_millis(10)
        );
        let cfg = load("quiet = \"5s\"\nsettle = \"1s\"\n").unwrap();
        assert_eq!(
            cfg.quiet(),
            Duration::from_secs(1),
            "settle is the upper bound"
        );
        assert!(cfg.to_toml().contains("quiet = \"5s\""));
        for bad in ["9ms", "5001ms", "1m", "150"] {
            let err = load(&format!("quiet = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("fleet.toml"), "{err}");
            assert!(err.contains("sync.quiet"), "{err}");
            assert!(
                err.contains("allowed: 10ms to 5s") || err.contains("bare number"),
                "{err}"
            );
        }
        let mut cfg = FleetConfig::default();
        cfg.sync.quiet = "18446744073709551615s".into();
        assert_eq!(cfg.quiet(), Duration::from_millis(150));
    }

    #[test]
    fn settle_and_poll_never_panic_on_an_unvalidated_config() {
        let mut cfg = FleetConfig::default();
        cfg.sync.settle = "18446744073709551615s".into();
        cfg.sync.poll = "0s".into();
        assert_eq!(cfg.settle(), Duration::from_secs(2));
        assert_eq!(cfg.poll(), Duration::from_secs(15));
        cfg.sync.poll = "garbage".into();
        assert_eq!(cfg.poll(), Duration::from_secs(15));
    }

    #[test]
    fn pull_every_needs_a_unit_and_a_bounded_value() {
        assert_eq!(check_every("5s"), Ok("5s".into()));
        assert_eq!(check_every("1h"), Ok("1h".into()));
        for bad in ["5", "1s", "0s", "2d", "18446744073709551615s", "soon"] {
            let err = check_every(bad).unwrap_err();
            assert!(err.contains("allowed: 5s to 24h"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_show_in_their_largest_exact_unit() {
        assert_eq!(show_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show_duration(Duration::from_secs(5)), "5s");
        assert_eq!(show_duration(Duration::from_secs(60)), "1m");
        assert_eq!(show_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(show_duration(Duration::ZERO), "0s");
    }

    /// The error chain as `report` prints it.
    fn chain(err: &Error) -> String {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            text.push_str(&format!(" / {s}"));
            source = s.source();
        }
        text
    }

    #[test]
    fn a_toml_error_never_quotes_the_file() {
        let secret = "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSKZ2ZK";
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            // An identity file where fleet.toml should be.
            format!("# created: 2026-01-01\n# public key: age1xyz\n{secret}\n"),
            // A secret as a value of the wrong type, and as an unknown key.
            format!("[sync]\npaths = \"{secret}\"\n"),
            format!("backend = \"{secret}\"\n"),
            format!("[sync]\n{secret} = 1\n"),
            format!("[sync]\nsettle = \"2s\"\nsettle = \"{secret}\"\n"),
            format!("[{secret}]\nx = 1\n"),
            // A private key's armour and base64 lines.
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\nAAAA==\n"
                .into(),
            format!("[secrets]\nmaterialize = [\"{secret}\"]\n"),
        ];
        for text in cases {
            std::fs::write(dir.path().join("fleet.toml"), &text).unwrap();
            let err = FleetConfig::load(dir.path()).unwrap_err();
            let shown = chain(&err);
            assert!(shown.contains("fleet.toml"), "{shown}");
            assert!(shown.contains("line "), "{shown}");
            for leak in ["AGE-SECRET", "QYQSZ", "b3BlbnNz", "AAAA", "OPENSSH"] {
                assert!(!shown.contains(leak), "{leak} leaked: {shown}");
            }
        }
    }

    #[test]
    fn a_toml_error_names_the_line_column_and_key() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            (
                "[sync]\nsettle = \"2s\"\npaths = 3\n",
                "line 3, column 9, key sync.paths: wrong type of value, expected a sequence",
            ),
            (
                "backend = \"nativ\"\n",
                "key backend: unknown value, expected `native` or `chezmoi`",
            ),
            ("[sync\n", "line 1, column 6"),
            (
                "[sync]\npaths = [\"~/.a\"\n",
                "line 2, column 16, key sync.paths: not valid TOML",
            ),
        ] {
            std::fs::write(dir.path().join("fleet.toml"), text).unwrap();
            let shown = chain(&FleetConfig::load(dir.path()).unwrap_err());
            assert!(shown.contains(want), "{text:?}: {shown}");
        }
    }

    #[test]
    fn a_symlinked_fleet_toml_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let identity = dir.path().join("identity.txt");
        std::fs::write(&identity, "AGE-SECRET-KEY-1QQQ\n").unwrap();
        std::os::unix::fs::symlink(&identity, dir.path().join("fleet.toml")).unwrap();
        let shown = chain(&FleetConfig::load(dir.path()).unwrap_err());
        assert!(shown.contains("symbolic link"), "{shown}");
        assert!(!shown.contains("AGE-SECRET"), "{shown}");
    }

    #[test]
    fn an_oversized_fleet_toml_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("[sync]\npaths = [\n");
        while text.len() <= limits::FLEET_TOML.bytes as usize {
            text.push_str("  \"~/.config/some/rather/long/path/to/a/file\",\n");
        }
        text.push_str("]\n");
        std::fs::write(dir.path().join("fleet.toml"), text).unwrap();
        let err = FleetConfig::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("larger than the limit for fleet.toml"),
            "{err}"
        );
    }

    #[test]
    fn the_design_example_fleet_toml_parses() {
        let text = r#"
backend = "native"
[sync]
paths = ["~/.zshrc", "~/.config/git/"]
settle = "2s"
poll = "60s"
branch = "main"
[secrets]
materialize = "~/.config/fleetkey/secrets.env"
[authorized_keys]
path = "~/.ssh/authorized_keys"
[hosts.mbp]
address = "alice@mbp.example.ts.net"
"#;
        let cfg: FleetConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.sync.paths, ["~/.zshrc", "~/.config/git/"]);
        assert_eq!(cfg.poll(), Duration::from_secs(60));
        assert_eq!(
            cfg.address("mbp").unwrap().as_str(),
            "alice@mbp.example.ts.net"
        );
        assert_eq!(FleetConfig::default().poll(), Duration::from_secs(15));
    }

    #[test]
    fn two_machines_setting_their_own_address_at_once_both_keep_it() {
        let host = |a: &str| HostConfig {
            address: Some(a.into()),
        };
        let base: BTreeMap<_, _> = [("c".to_string(), host("c@old"))].into();
        let mut ours = base.clone();
        ours.insert("a".into(), host("a@h"));
        ours.remove("c");
        let mut theirs = base.clone();
        theirs.insert("b".into(), host("b@h"));
        let merged = merge_hosts(&base, &ours, &theirs);
        assert_eq!(
            merged.keys().collect::<Vec<_>>(),
            ["a", "b"],
            "ours added a and cleared c; theirs added b"
        );
        // Both changed the same machine: upstream wins.
        let mut ours = base.clone();
        ours.insert("c".into(), host("c@ours"));
        let mut theirs = base.clone();
        theirs.insert("c".into(), host("c@theirs"));
        assert_eq!(merge_hosts(&base, &ours, &theirs)["c"], host("c@theirs"));
    }

    #[test]
    fn a_hostile_address_makes_fleet_toml_invalid_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fleet.toml"),
            "[hosts.b]\naddress = \"-oProxyCommand=touch /tmp/x\"\n",
        )
        .unwrap();
        let err = FleetConfig::load(dir.path()).unwrap_err();
        let text = format!("{err}");
        assert!(text.contains("hosts.b.address"), "{text}");
        assert!(!text.contains("ProxyCommand"), "{text}");
        let mut cfg = FleetConfig::default();
        cfg.set_address("b", Some(&crate::address::Address::parse("u@h").unwrap()));
        assert!(cfg.to_toml().contains("[hosts.b]"));
        cfg.set_address("b", None);
        assert!(cfg.hosts.is_empty());
    }

    #[test]
    fn an_unknown_key_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fleet.toml"),
            "[secrets]\nrecipent = \"x\"\n",
        )
        .unwrap();
        let err = FleetConfig::load(dir.path()).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("fleet.toml"), "{chain}");
        assert!(chain.contains("recipent"), "{chain}");
        assert!(chain.contains("line 2"), "{chain}");
        assert!(chain.contains("secrets.recipent"), "{chain}");
    }
}

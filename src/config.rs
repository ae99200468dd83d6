//! The two configuration files: this machine's `config.toml` and the fleet's `fleet.toml`.
//!
//! Owns: their schema, defaults and validation. An unknown key anywhere is an error naming the
//! file, the line and the key (chezmoi users lose hours to `recipent`). Must never: write either
//! file non-atomically.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::files;

/// Largest configuration file fleetkey reads.
const CONFIG_LIMIT: u64 = 1 << 20;

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
    /// The sync settings.
    #[serde(default)]
    pub sync: SyncConfig,
    /// Where secrets are materialized.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// Where the authorized_keys merge is applied.
    #[serde(default)]
    pub authorized_keys: AuthorizedKeysConfig,
}

/// `[sync]` in fleet.toml.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// The managed list: the contract of what syncs.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Quiet time after the last change before a commit.
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
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            paths: Vec::new(),
            settle: default_settle(),
            poll: default_poll(),
            branch: default_branch(),
            private: Vec::new(),
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
}

/// `[authorized_keys]` in fleet.toml.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthorizedKeysConfig {
    /// The file the native backend merges fleet keys into.
    #[serde(default = "default_authorized_keys")]
    pub path: String,
}

impl Default for AuthorizedKeysConfig {
    fn default() -> Self {
        AuthorizedKeysConfig {
            path: default_authorized_keys(),
        }
    }
}

fn default_settle() -> String {
    "2s".into()
}
fn default_poll() -> String {
    "60s".into()
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

    /// Reads and validates `fleet.toml` from the repo at `repo`.
    pub fn load(repo: &Path) -> Result<FleetConfig> {
        let path = repo.join(Self::FILE);
        let cfg: FleetConfig = parse_toml(&path)?;
        cfg.validate(&path)?;
        Ok(cfg)
    }

    /// Checks the values that serde cannot: durations and the branch name.
    pub fn validate(&self, path: &Path) -> Result<()> {
        for (key, value) in [
            ("sync.settle", &self.sync.settle),
            ("sync.poll", &self.sync.poll),
        ] {
            parse_duration(value).map_err(|problem| ErrorKind::ConfigValue {
                path: path.to_path_buf(),
                key: key.into(),
                problem,
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
        Ok(())
    }

    /// The settle time.
    pub fn settle(&self) -> Duration {
        parse_duration(&self.sync.settle).expect("validated on load")
    }

    /// The poll interval.
    pub fn poll(&self) -> Duration {
        parse_duration(&self.sync.poll).expect("validated on load")
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
    toml::from_str(&text).map_err(|e| {
        Error::from(ErrorKind::Config {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    })
}

/// Parses a duration such as `500ms`, `2s`, `5m` or `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 2s, 5m or 1h"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{text:?} has an unknown unit (use ms, s, m or h)")),
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("2 fortnights").is_err());
        assert!(parse_duration("").is_err());
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
"#;
        let cfg: FleetConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.sync.paths, ["~/.zshrc", "~/.config/git/"]);
        assert_eq!(cfg.poll(), Duration::from_secs(60));
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
    }
}

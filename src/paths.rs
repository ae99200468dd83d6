//! Where fleetkey keeps things on a machine, following the XDG base directories.
//!
//! Owns: the mapping from `HOME` and `XDG_{CONFIG,DATA,STATE}_HOME` to fleetkey's files. Every
//! other module asks this one; none builds a path under `$HOME` itself.

use std::path::PathBuf;

use crate::error::{ErrorKind, Result};

/// The directories and files fleetkey uses on this machine.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The user's home directory.
    pub home: PathBuf,
    /// `~/.config/fleetkey`: config.toml and identity.txt.
    pub config_dir: PathBuf,
    /// `~/.local/share/fleetkey`: the fleet clone and the embedded forge.
    pub data_dir: PathBuf,
    /// `~/.local/state/fleetkey`: lock, last-cycle status, conflict records, logs.
    pub state_dir: PathBuf,
}

impl Paths {
    /// Reads `HOME` and the XDG variables (a relative XDG value is ignored, as the spec says).
    pub fn from_env() -> Result<Paths> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| ErrorKind::Refused("HOME is not set".into()))?;
        let xdg = |var: &str, default: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| home.join(default))
        };
        Ok(Paths {
            config_dir: xdg("XDG_CONFIG_HOME", ".config").join("fleetkey"),
            data_dir: xdg("XDG_DATA_HOME", ".local/share").join("fleetkey"),
            state_dir: xdg("XDG_STATE_HOME", ".local/state").join("fleetkey"),
            home,
        })
    }

    /// `config.toml`: this machine's name, backend, repo path and remote.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// `identity.txt`: this machine's age identity (0600).
    pub fn identity_file(&self) -> PathBuf {
        self.config_dir.join("identity.txt")
    }

    /// The identity a `rotate` made and has not yet switched to (the old one is kept until the
    /// new roster is on the forge).
    pub fn next_identity_file(&self) -> PathBuf {
        self.config_dir.join("identity.txt.next")
    }

    /// `retired/`: the age identities `rotate` replaced, kept (0600, never synced) only so
    /// `revoke --compromised` can still read the history they encrypted; `rm -r` it to forget
    /// them.
    pub fn retired_dir(&self) -> PathBuf {
        self.config_dir.join("retired")
    }

    /// `poke_key`: the key this machine pokes its peers with (OpenSSH ed25519, 0600); peers
    /// admit it only to run `fleetkey poke`.
    pub fn poke_key_file(&self) -> PathBuf {
        self.config_dir.join("poke_key")
    }

    /// `signing_key`: this machine's commit-signing key (OpenSSH ed25519, 0600).
    pub fn signing_key_file(&self) -> PathBuf {
        self.config_dir.join("signing_key")
    }

    /// The signing key a `rotate` made and has not yet switched to.
    pub fn next_signing_key_file(&self) -> PathBuf {
        self.config_dir.join("signing_key.next")
    }

    /// The default location of the fleet clone.
    pub fn default_repo(&self) -> PathBuf {
        self.data_dir.join("fleet")
    }

    /// The embedded default forge: a local bare repository.
    pub fn embedded_forge(&self) -> PathBuf {
        self.data_dir.join("forge.git")
    }

    /// The lock shared by every command that changes the fleet.
    pub fn lock_file(&self) -> PathBuf {
        self.state_dir.join("lock")
    }

    /// `~/.ssh`.
    pub fn ssh_dir(&self) -> PathBuf {
        self.home.join(".ssh")
    }

    /// Expands a leading `~/` against `home`; other paths are returned as they are.
    pub fn expand(&self, path: &str) -> PathBuf {
        match path.strip_prefix("~/") {
            Some(rest) => self.home.join(rest),
            None if path == "~" => self.home.clone(),
            None => PathBuf::from(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_expands_against_home_only_at_the_start() {
        let p = Paths {
            home: "/h".into(),
            config_dir: "/h/.config/fleetkey".into(),
            data_dir: "/h/.local/share/fleetkey".into(),
            state_dir: "/h/.local/state/fleetkey".into(),
        };
        assert_eq!(p.expand("~/.zshrc"), PathBuf::from("/h/.zshrc"));
        assert_eq!(p.expand("~"), PathBuf::from("/h"));
        assert_eq!(p.expand("/etc/~/x"), PathBuf::from("/etc/~/x"));
        assert_eq!(
            p.identity_file(),
            PathBuf::from("/h/.config/fleetkey/identity.txt")
        );
    }
}

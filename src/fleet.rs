//! This machine as a member of its fleet: its paths, its config, its keys and its clone, loaded
//! once per command.
//!
//! Owns: loading this machine's setup (paths, config.toml), its identities, the decrypted
//! secrets and the cycle lock. Must never: talk to the forge or write into `$HOME` (that is
//! [`crate::sync`]'s job, a layer above).

use std::time::Duration;

use crate::config::{FleetConfig, MachineConfig};
use crate::envfile::EnvFile;
use crate::error::Result;
use crate::forge;
use crate::identity::Identity;
use crate::lock::Lock;
use crate::paths::Paths;
use crate::repo::FleetRepo;
use crate::secrets::SecretsFile;

/// How long a manual command waits for a running cycle to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// This machine, set up.
pub struct Machine {
    /// Where things are.
    pub paths: Paths,
    /// config.toml.
    pub config: MachineConfig,
}

impl Machine {
    /// Loads this machine's setup from the environment.
    pub fn load() -> Result<Machine> {
        let paths = Paths::from_env()?;
        let config = MachineConfig::load(&paths.config_file())?;
        Ok(Machine { paths, config })
    }

    /// This machine's age identity.
    pub fn identity(&self) -> Result<Identity> {
        Identity::load(&self.paths.identity_file())
    }

    /// Every identity this machine holds: its own, and the one an unfinished `rotate` made.
    pub fn identities(&self) -> Result<Vec<Identity>> {
        let mut ids = vec![self.identity()?];
        let next = self.paths.next_identity_file();
        if next.exists() {
            ids.push(Identity::load(&next)?);
        }
        Ok(ids)
    }

    /// Decrypts the secrets with whichever of this machine's identities can.
    pub fn secrets(&self) -> Result<EnvFile> {
        let file = SecretsFile::new(&self.config.repo);
        let mut ids = self.identities()?.into_iter();
        let first = ids.next().expect("one identity at least");
        let err = match file.load(&first) {
            Ok(env) => return Ok(env),
            Err(e) => e,
        };
        for id in ids {
            if let Ok(env) = file.load(&id) {
                return Ok(env);
            }
        }
        Err(err)
    }

    /// The fleet clone.
    pub fn repo(&self) -> Result<FleetRepo> {
        FleetRepo::open(&self.config.repo)
    }

    /// fleet.toml.
    pub fn fleet_config(&self) -> Result<FleetConfig> {
        FleetConfig::load(&self.config.repo)
    }

    /// Takes the cycle lock, waiting for a running cycle; then deals with a `git` child that a
    /// killed holder left running ([`forge::reap_orphan`]).
    pub fn lock(&self) -> Result<Lock> {
        let lock = Lock::acquire(&self.paths.lock_file(), LOCK_WAIT)?;
        forge::record_children_in(self.paths.state_dir.join("git-child"));
        forge::reap_orphan();
        Ok(lock)
    }
}

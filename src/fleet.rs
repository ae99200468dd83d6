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
use crate::forge::Forge;
use crate::identity::Identity;
use crate::lock::Lock;
use crate::paths::Paths;
use crate::repo::FleetRepo;
use crate::secrets::SecretsFile;
use crate::signing::{Signer, SigningKey};

/// How long a manual command waits for a running cycle to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// How a fleet.toml held back as invalid is fixed.
pub const FLEET_TOML_FIX: &str = "change a setting with `fleetkey config set KEY VALUE` (it writes a valid fleet.toml), or find the last good version with `fleetkey log fleet.toml` and put it back with `fleetkey restore fleet.toml --at REV`";

/// The state file that keeps the last valid fleet.toml.
pub const LAST_VALID_FLEET: &str = "fleet.toml.last-valid";

/// The fleet.toml in force on this machine.
#[derive(Debug, Clone)]
pub struct InForce {
    /// The settings.
    pub config: FleetConfig,
    /// Why the clone's fleet.toml is not the one in force (it is invalid), when it is not.
    pub held_back: Option<String>,
}

/// This machine, set up.
#[derive(Debug, Clone)]
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

    /// Decrypts the secrets with whichever of this machine's identities can. A machine the
    /// fleet revoked is told so instead: what its clone still holds is no longer the fleet's.
    pub fn secrets(&self) -> Result<EnvFile> {
        if let Some(r) = self.revocation() {
            return Err(r.into());
        }
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

    /// This machine's revocation, when the fleet says it was revoked: the clone's HEAD, or
    /// the last forge commit this machine verified (a revoked machine integrates nothing, so
    /// its HEAD may predate the revocation). Never read from an unverified commit.
    pub fn revocation(&self) -> Option<crate::roster::Revocation> {
        let repo = git2::Repository::open(&self.config.repo).ok()?;
        let root = crate::trust::pinned_root(&self.config).ok()?;
        let verified = crate::trust::TrustState::load(&repo, &self.paths.state_dir, root)
            .ok()
            .and_then(|s| s.forge_tip)
            .and_then(|t| git2::Oid::from_str(&t).ok());
        let head = repo.head().ok().and_then(|h| h.target());
        [verified, head]
            .into_iter()
            .flatten()
            .find_map(|at| crate::roster::revocation(&repo, at, &self.config.name))
    }

    /// The fleet clone, its commits signed with this machine's signing key (when it has one:
    /// a commit without it is refused with advice, see [`FleetRepo::signer`]).
    pub fn repo(&self) -> Result<FleetRepo> {
        let repo = FleetRepo::open(&self.config.repo)?;
        match self.signer() {
            Ok(signer) => Ok(repo.with_signer(signer)),
            Err(e) if e.is_not_found() => Ok(repo),
            Err(e) => Err(e),
        }
    }

    /// This machine's signer: its name and signing key. While a `rotate` is unfinished, the
    /// new key (`signing_key.next`) signs once the clone's HEAD lists it and no longer lists the
    /// old one; the old one before.
    pub fn signer(&self) -> Result<Signer> {
        let current = SigningKey::load(&self.paths.signing_key_file());
        let next = self.paths.next_signing_key_file();
        if next.exists() {
            let key = SigningKey::load(&next)?;
            let in_head = git2::Repository::open(&self.config.repo)
                .map(|r| crate::trust::head_signing_keys(&r, &self.config.name))
                .unwrap_or_default();
            let old_listed = current
                .as_ref()
                .is_ok_and(|c| in_head.contains(&c.fingerprint()));
            if in_head.contains(&key.fingerprint()) && !old_listed {
                return Ok(Signer::new(&self.config.name, key));
            }
        }
        Ok(Signer::new(&self.config.name, current?))
    }

    /// The fleet.toml in force: the clone's when it is valid, else the last valid one this
    /// machine saw (see [`Machine::fleet_settings`]).
    pub fn fleet_config(&self) -> Result<FleetConfig> {
        self.fleet_settings().map(|s| s.config)
    }

    /// Keeps a copy of the clone's fleet.toml in the state directory when it is valid (and
    /// differs from the copy): the one [`Machine::fleet_settings`] falls back on. Called by the
    /// sync cycle under the lock, before it captures; reading commands never write it. Returns
    /// the fleet.toml in force (as [`Machine::fleet_settings`] does), from the same one read of
    /// the clone's file.
    pub fn keep_valid_fleet(&self) -> Result<InForce> {
        let config = match FleetConfig::load(&self.config.repo) {
            Ok(config) => config,
            Err(e) => return self.last_valid_fleet(e),
        };
        let saved = self.paths.state_dir.join(LAST_VALID_FLEET);
        let text = config.to_toml();
        if std::fs::read(&saved).ok().as_deref() != Some(text.as_bytes()) {
            let kept = crate::files::ensure_private_dir(&self.paths.state_dir)
                .and_then(|()| crate::files::write_atomic(&saved, text.as_bytes(), 0o600));
            if let Err(e) = kept {
                crate::log::warn(&format!("cannot keep a copy of fleet.toml: {e}"));
            }
        }
        Ok(InForce {
            config,
            held_back: None,
        })
    }

    /// The fleet.toml in force, and why the clone's is not, when it is not.
    ///
    /// An invalid fleet.toml (from the forge, or edited by hand in the clone) must never wedge
    /// this machine: the last valid one stays in force (kept in the state directory by
    /// [`Machine::keep_valid_fleet`]) until a valid commit heals it, and every
    /// caller can report what is held back. With no valid fleet.toml ever seen, the error
    /// stands.
    pub fn fleet_settings(&self) -> Result<InForce> {
        match FleetConfig::load(&self.config.repo) {
            Ok(config) => Ok(InForce {
                config,
                held_back: None,
            }),
            Err(e) => self.last_valid_fleet(e),
        }
    }

    /// The last valid fleet.toml this machine kept, in force while the clone's is not valid
    /// (`e` says why it is not); `e` itself when no valid one was ever kept.
    fn last_valid_fleet(&self, e: crate::error::Error) -> Result<InForce> {
        let saved = self.paths.state_dir.join(LAST_VALID_FLEET);
        let fallback = std::fs::read_to_string(&saved)
            .ok()
            .and_then(|text| toml::from_str::<FleetConfig>(&text).ok())
            .filter(|c| c.validate(&saved).is_ok());
        let Some(config) = fallback else {
            return Err(e);
        };
        // One line, whatever line breaks the parser's message holds.
        let why: Vec<String> = crate::error::chain(&e)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let held_back = format!(
            "{}; the last valid fleet.toml stays in force until a valid one arrives: {FLEET_TOML_FIX}",
            why.join(" ")
        );
        // The same words as the cycle's own report, so a cycle says it once.
        crate::log::warn_once_per_cycle(&format!("held back: {held_back}"));
        Ok(InForce {
            config,
            held_back: Some(held_back),
        })
    }

    /// The forge config.toml names now, as this machine reaches it (multiplexed over a
    /// ControlMaster socket of its own in the state directory); it records no `git` child: for
    /// commands that read the forge without the lock.
    pub fn forge(&self) -> Forge {
        Forge::new(&self.config.remote, &self.paths.state_dir)
    }

    /// Takes the cycle lock, waiting for a running cycle; then deals with a `git` child that a
    /// killed holder left running ([`Forge::reap_orphan`]). The forge it returns records each
    /// `git` child while it runs (see [`Forge::recording_children`]).
    pub fn lock(&self) -> Result<Locked> {
        let lock = Lock::acquire(&self.paths.lock_file(), LOCK_WAIT)?;
        let forge = self.forge().recording_children();
        forge.reap_orphan();
        crate::secrets::sweep_stale_edits(&self.paths.state_dir);
        Ok(Locked { _lock: lock, forge })
    }
}

/// The cycle lock, held until this is dropped, and the forge as its holder reaches it.
pub struct Locked {
    _lock: Lock,
    /// The forge of config.toml when the lock was taken, recording its `git` children.
    pub forge: Forge,
}

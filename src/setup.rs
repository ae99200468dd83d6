//! Setting up this machine: its keys and its first clone, shared by `init`, `enroll` and
//! `join`.
//!
//! Owns: making (or reusing, after an interrupted run) this machine's age identity and SSH key,
//! the staging directory a new clone is built in, writing a new fleet's first roster, and the
//! last step that moves the clone into place and writes config.toml. Must never: overwrite an
//! existing setup (see [`check_not_set_up`]) or a key file.

use crate::clock;
use crate::config::{Backend, FleetConfig, MachineConfig};
use crate::envfile::EnvFile;
use crate::error::{Error, ErrorKind, Result};
use crate::files;
use crate::identity::{self, Identity};
use crate::paths::Paths;
use crate::roster::{self, Roster, layout};
use crate::secrets::SecretsFile;
use crate::signing::SigningKey;

/// Writes a new fleet's files into `root`: fleet.toml, this machine's keys (its poke key
/// included, so the founding commit needs no second one) as the whole roster,
/// an empty keys/revoked, and an empty secrets file encrypted to the roster.
pub fn write_first_roster(
    root: &std::path::Path,
    name: &str,
    fleet: &FleetConfig,
    identity: &Identity,
    ssh: &identity::SshKey,
    signing: &SigningKey,
    poke: &SigningKey,
) -> Result<()> {
    files::write_atomic(
        &root.join(FleetConfig::FILE),
        fleet.file_text().as_bytes(),
        0o644,
    )?;
    files::ensure_dir(&root.join(layout::KEYS))?;
    let keys = [
        (
            layout::age_pub(layout::KEYS, name),
            identity.recipient().to_string(),
        ),
        (layout::ssh_pub(layout::KEYS, name), ssh.public_line.clone()),
        (layout::sign_pub(layout::KEYS, name), signing.public_line()),
        (layout::poke_pub(layout::KEYS, name), poke.public_line()),
    ];
    for (path, line) in keys {
        files::write_atomic(&root.join(path), format!("{line}\n").as_bytes(), 0o644)?;
    }
    // The founder is the fleet's first admin.
    files::write_atomic(
        &root.join(layout::role(layout::KEYS, name)),
        b"admin\n",
        0o644,
    )?;
    files::write_atomic(
        &root.join(layout::REVOKED),
        roster::REVOKED_HEADER.as_bytes(),
        0o644,
    )?;
    let roster = Roster::load(root)?;
    SecretsFile::new(root).store(&EnvFile::new(), &roster)
}

/// This machine's keys: the age identity, SSH key and signing key an interrupted `init` or
/// `enroll` left, or new ones.
pub fn machine_keys(paths: &Paths, name: &str) -> Result<(Identity, identity::SshKey, SigningKey)> {
    let identity_path = paths.identity_file();
    let identity = if identity_path.exists() {
        Identity::load(&identity_path)?
    } else {
        let id = Identity::generate();
        id.create(&identity_path, &clock::rfc3339(clock::now_unix()))?;
        id
    };
    let ssh = identity::ensure_ssh_key(&paths.ssh_dir(), &format!("{}@{name}", user_name()))?;
    Ok((identity, ssh, signing_key(paths, name)?))
}

/// This machine's signing key: the one an interrupted setup left, or a new one.
pub fn signing_key(paths: &Paths, name: &str) -> Result<SigningKey> {
    let path = paths.signing_key_file();
    if path.exists() {
        return SigningKey::load(&path);
    }
    let key = SigningKey::generate(&format!("fleetkey-sign@{name}"))?;
    key.create(&path)?;
    Ok(key)
}

/// This machine's poke key (`poke_key`: what it pokes its peers with): the existing one, or a
/// new one. Its public half is published by the machine's first cycle as a member.
pub fn poke_key(paths: &Paths, name: &str) -> Result<SigningKey> {
    let path = paths.poke_key_file();
    if path.exists() {
        return SigningKey::load(&path);
    }
    let key = SigningKey::generate(&format!("fleetkey-poke@{name}"))?;
    key.create(&path)?;
    Ok(key)
}

/// Moves a clone built in a staging directory to its place and writes config.toml: the last
/// step of `init`, `enroll` and `join`, so an interrupted one leaves no half-set-up machine.
pub fn settle_in(
    paths: &Paths,
    staged: &std::path::Path,
    name: &str,
    backend: Backend,
    remote: &str,
    trust_root: &str,
) -> Result<()> {
    poke_key(paths, name)?;
    let repo_path = paths.default_repo();
    std::fs::rename(staged, &repo_path)
        .map_err(Error::io("cannot move the clone to", &repo_path))?;
    files::ensure_private_dir(&paths.config_dir)?;
    MachineConfig {
        name: name.to_string(),
        backend,
        repo: repo_path,
        remote: remote.to_string(),
        trust_root: Some(trust_root.to_string()),
        notify: true,
    }
    .save(&paths.config_file())
}

/// Refuses to set up a machine that already is: config.toml or the clone exists. The hints
/// never suggest the command being run: they say what is there and how to start over.
pub fn check_not_set_up(paths: &Paths) -> Result<()> {
    let config_path = paths.config_file();
    let repo_path = paths.default_repo();
    if config_path.exists() {
        return Err(ErrorKind::AlreadyInitialized {
            what: format!(
                "this machine is already set up ({} exists)",
                config_path.display()
            ),
        }
        .hint(format!(
            "`fleetkey status` shows the fleet it is in; to leave it for a new fleet (`fleetkey init`) or another one (`fleetkey enroll NAME --remote URL`), move {} and {} aside first",
            config_path.display(),
            repo_path.display()
        )));
    }
    if repo_path.exists() {
        return Err(ErrorKind::AlreadyInitialized {
            what: format!(
                "{} already exists, but no {} says which fleet it belongs to",
                repo_path.display(),
                config_path.display()
            ),
        }
        .hint(format!(
            "a setup stopped half-way, or a clone was left behind: move it aside (`mv {} {}.aside`) and run the command again",
            repo_path.display(),
            repo_path.display()
        )));
    }
    Ok(())
}

/// Removes fleetkey's data directory when it is dropped, if this setup command made it and did
/// not finish (no config.toml): a failed `enroll` or `join` leaves nothing behind there.
pub struct DataDirGuard {
    dir: Option<std::path::PathBuf>,
    config: std::path::PathBuf,
}

impl DataDirGuard {
    /// Watches `paths`' data directory: it is removed on drop only when it does not exist now.
    pub fn new(paths: &Paths) -> DataDirGuard {
        DataDirGuard {
            dir: (!paths.data_dir.exists()).then(|| paths.data_dir.clone()),
            config: paths.config_file(),
        }
    }
}

impl Drop for DataDirGuard {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir
            && !self.config.exists()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A staging directory for a clone, next to its final place (same file system, so the final
/// move is one rename).
pub fn staging_dir(paths: &Paths) -> Result<tempfile::TempDir> {
    files::ensure_private_dir(&paths.data_dir)?;
    tempfile::Builder::new()
        .prefix(".fleet-staging-")
        .tempdir_in(&paths.data_dir)
        .map_err(Error::io("cannot create a directory in", &paths.data_dir))
}

fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "fleetkey".into())
}

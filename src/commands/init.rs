//! `fleetkey init`: start a fleet on this machine.
//!
//! Everything is checked before anything is written: a second `init`, or a forge that already
//! holds a fleet, is an error that points to `enroll` and leaves every file as it was. The clone
//! is built in a temporary directory and moved into place only after the push; config.toml is
//! written last, so an interrupted `init` can simply be run again (it reuses the identity and the
//! SSH key it already made).

use std::path::PathBuf;

use crate::clock;
use crate::config::{Backend, FleetConfig, MachineConfig};
use crate::envfile::EnvFile;
use crate::error::{Error, Result};
use crate::files;
use crate::forge;
use crate::identity::{self, Identity};
use crate::paths::Paths;
use crate::repo::FleetRepo;
use crate::roster::{self, Roster, layout};
use crate::secrets::{self, SecretsFile};

/// What `init` was asked for.
pub struct InitOptions {
    /// This machine's name (default: the host name, cleaned).
    pub name: Option<String>,
    /// The forge (default: the embedded local bare repo).
    pub remote: Option<String>,
    /// The backend (default: native).
    pub backend: Option<Backend>,
}

/// Runs `fleetkey init`.
pub fn run(opts: InitOptions) -> Result<()> {
    let paths = Paths::from_env()?;
    let name = match opts.name {
        Some(n) => n,
        None => default_name(),
    };
    roster::check_name(&name)?;
    let backend = opts.backend.unwrap_or_default();
    if backend == Backend::Chezmoi {
        return Err(Error::Refused(
            "the chezmoi backend is not available yet; use --backend native".into(),
        ));
    }

    check_not_set_up(&paths)?;
    let repo_path = paths.default_repo();
    let (remote, embedded) = match opts.remote {
        Some(r) => (r, false),
        None => (paths.embedded_forge().to_string_lossy().into_owned(), true),
    };
    let branch = FleetConfig::default().sync.branch;
    let forge_exists = !embedded || paths.embedded_forge().exists();
    if forge_exists && forge::has_any_branch(&remote)? {
        return Err(Error::AlreadyInitialized {
            what: format!("the forge {remote} already holds a fleet"),
        }
        .hint(format!(
            "to add this machine to it, run `fleetkey enroll {name} --remote {remote}`"
        )));
    }

    let (identity, ssh) = machine_keys(&paths, &name)?;

    // Build the clone in a temporary directory next to its final place.
    let staging = staging_dir(&paths)?;
    if embedded && !paths.embedded_forge().exists() {
        FleetRepo::init_bare(&paths.embedded_forge(), &branch)?;
    }
    let root: PathBuf = staging.path().join("fleet");
    let repo = FleetRepo::init(&root, &branch, &remote)?;
    let fleet = FleetConfig {
        backend,
        ..FleetConfig::default()
    };
    files::write_atomic(
        &root.join(FleetConfig::FILE),
        fleet_toml_text(&fleet).as_bytes(),
        0o644,
    )?;
    files::ensure_dir(&root.join(layout::PENDING))?;
    files::write_atomic(&root.join(layout::PENDING).join(".keep"), b"", 0o644)?;
    files::write_atomic(
        &root.join(layout::age_pub(layout::KEYS, &name)),
        format!("{}\n", identity.recipient()).as_bytes(),
        0o644,
    )?;
    files::write_atomic(
        &root.join(layout::ssh_pub(layout::KEYS, &name)),
        format!("{}\n", ssh.public_line).as_bytes(),
        0o644,
    )?;
    files::write_atomic(
        &root.join(layout::REVOKED),
        REVOKED_HEADER.as_bytes(),
        0o644,
    )?;
    let roster = Roster::load(&root)?;
    SecretsFile::new(&root).store(&EnvFile::new(), &roster)?;
    repo.commit_all(&["."], &name, &format!("{name}: start the fleet"))?;
    match forge::push(&root, &remote, &branch)? {
        forge::PushOutcome::Pushed => {}
        forge::PushOutcome::Rejected => {
            return Err(Error::AlreadyInitialized {
                what: format!("the forge {remote} already holds a fleet"),
            }
            .hint(format!("run `fleetkey enroll {name} --remote {remote}`")));
        }
    }
    drop(repo);
    settle_in(&paths, &root, &name, backend, &remote)?;

    println!(
        "fleetkey: started a fleet with this machine as {name} ({} backend)",
        backend.as_str()
    );
    println!(
        "  forge:        {remote}{}",
        if embedded {
            " (embedded local forge)"
        } else {
            ""
        }
    );
    println!("  clone:        {}", repo_path.display());
    println!("  age:          {}", identity.recipient());
    if let Some(fp) = identity::ssh_fingerprint(&ssh.public_line) {
        let made = if ssh.created { "made" } else { "using" };
        println!(
            "  ssh:          {fp} ({made} {})",
            ssh.public_path.display()
        );
    }
    println!(
        "  secrets:      {} (empty, encrypted to 1 recipient)",
        repo_path.join(secrets::CIPHERTEXT).display()
    );
    Ok(())
}

/// This machine's keys: the age identity and SSH key an interrupted `init` or `enroll` left, or
/// new ones.
pub fn machine_keys(paths: &Paths, name: &str) -> Result<(Identity, identity::SshKey)> {
    let identity_path = paths.identity_file();
    let identity = if identity_path.exists() {
        Identity::load(&identity_path)?
    } else {
        let id = Identity::generate();
        id.create(&identity_path, &clock::rfc3339(clock::now_unix()))?;
        id
    };
    let ssh = identity::ensure_ssh_key(&paths.ssh_dir(), &format!("{}@{name}", user_name()))?;
    Ok((identity, ssh))
}

/// Moves a clone built in a staging directory to its place and writes config.toml: the last
/// step of `init`, `enroll` and `join`, so an interrupted one leaves no half-set-up machine.
pub fn settle_in(
    paths: &Paths,
    staged: &std::path::Path,
    name: &str,
    backend: Backend,
    remote: &str,
) -> Result<()> {
    let repo_path = paths.default_repo();
    std::fs::rename(staged, &repo_path)
        .map_err(Error::io("cannot move the clone to", &repo_path))?;
    files::ensure_private_dir(&paths.config_dir)?;
    MachineConfig {
        name: name.to_string(),
        backend,
        repo: repo_path,
        remote: remote.to_string(),
    }
    .save(&paths.config_file())
}

/// Refuses to set up a machine that already is: config.toml or the clone exists.
pub fn check_not_set_up(paths: &Paths) -> Result<()> {
    let config_path = paths.config_file();
    if config_path.exists() {
        return Err(Error::AlreadyInitialized {
            what: format!(
                "this machine is already set up ({} exists)",
                config_path.display()
            ),
        }
        .hint("to join another fleet, move that file away and run `fleetkey enroll NAME --remote URL`"));
    }
    let repo_path = paths.default_repo();
    if repo_path.exists() {
        return Err(Error::AlreadyInitialized {
            what: format!("{} already exists", repo_path.display()),
        }
        .hint("move it away, or join its fleet with `fleetkey enroll NAME --remote URL`"));
    }
    Ok(())
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

/// The header of a new keys/revoked file.
pub const REVOKED_HEADER: &str = "# Revoked age recipients and SSH keys, one per line, each followed by a\n# \"# NAME DATE REASON\" line. fleetkey removes these keys from every authorized_keys.\n";

/// fleet.toml as `init` writes it, with comments.
pub fn fleet_toml_text(cfg: &FleetConfig) -> String {
    format!(
        "# fleetkey: what this fleet syncs and how. Unknown keys are an error.\n{}",
        cfg.to_toml()
    )
}

fn default_name() -> String {
    let raw = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let short = raw
        .trim()
        .split('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let cleaned: String = short
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(63)
        .collect();
    if cleaned.is_empty() {
        "machine".into()
    } else {
        cleaned
    }
}

fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "fleetkey".into())
}

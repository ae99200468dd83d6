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
use crate::sync::chezmoi;

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
    // chezmoi when asked, or when chezmoi is installed and has a source directory.
    let source = match opts.backend {
        Some(Backend::Native) => None,
        Some(Backend::Chezmoi) => Some(chezmoi::discover_source().ok_or_else(|| {
            Error::Refused("chezmoi is not installed here, or has no source directory".into())
                .hint("install chezmoi and run `chezmoi init`, or use --backend native")
        })?),
        None => chezmoi::discover_source(),
    };
    if let Some(source) = source {
        println!(
            "fleetkey: using the chezmoi backend (source directory {})",
            source.display()
        );
        return run_chezmoi(&paths, &name, opts.remote, &source);
    }
    let backend = Backend::Native;

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
    write_first_roster(&root, &name, &fleet, &identity, &ssh)?;
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

/// `init` for chezmoi users: the chezmoi source repository becomes the fleet repo, adopted in
/// place. fleetkey's files go at the top of its git working tree, `.chezmoiignore` lists them,
/// and the `modify_` hook for `~/.ssh/authorized_keys` is installed in the source directory.
/// Only fleetkey's own paths are committed; the user's uncommitted work is left alone.
fn run_chezmoi(
    paths: &Paths,
    name: &str,
    remote: Option<String>,
    source: &std::path::Path,
) -> Result<()> {
    let config_path = paths.config_file();
    if config_path.exists() {
        return check_not_set_up(paths);
    }
    let root = source
        .ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(source)
        .to_path_buf();
    if root.join(FleetConfig::FILE).exists() {
        return Err(Error::AlreadyInitialized {
            what: format!("{} already holds a fleet", root.display()),
        }
        .hint(format!(
            "to add this machine to it, run `fleetkey enroll {name} --remote URL`"
        )));
    }
    let needs_hook = chezmoi::check_modify_hook(source)?;
    let repo = if root.join(".git").exists() {
        FleetRepo::open(&root)?
    } else {
        FleetRepo::init(&root, &FleetConfig::default().sync.branch, "")?
    };
    let origin = repo.origin_url().filter(|u| !u.is_empty());
    let remote = match (remote, origin) {
        (Some(r), Some(o)) if r != o => {
            return Err(Error::Refused(format!(
                "the chezmoi repo's origin is {o}, not {r}"
            ))
            .hint("run init without --remote to use the origin, or change it with `git remote set-url origin URL`"));
        }
        (Some(r), _) => r,
        (None, Some(o)) => o,
        (None, None) => paths.embedded_forge().to_string_lossy().into_owned(),
    };
    let branch = current_branch(&repo);
    if remote == paths.embedded_forge().to_string_lossy() && !paths.embedded_forge().exists() {
        files::ensure_private_dir(&paths.data_dir)?;
        FleetRepo::init_bare(&paths.embedded_forge(), &branch)?;
    }
    repo.set_origin(&remote)?;

    let (identity, ssh) = machine_keys(paths, name)?;
    let fleet = FleetConfig {
        backend: Backend::Chezmoi,
        sync: crate::config::SyncConfig {
            branch: branch.clone(),
            ..Default::default()
        },
        ..FleetConfig::default()
    };
    write_first_roster(&root, name, &fleet, &identity, &ssh)?;
    let age_pub = layout::age_pub(layout::KEYS, name);
    let ssh_pub = layout::ssh_pub(layout::KEYS, name);
    chezmoi::ensure_ignore(source)?;
    if needs_hook {
        chezmoi::install_modify_hook(source)?;
    }
    let rel = |p: &std::path::Path| {
        p.strip_prefix(&root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let ignore = rel(&source.join(".chezmoiignore"));
    let hook = rel(&source.join(chezmoi::MODIFY_HOOK));
    repo.commit_paths(
        &[
            FleetConfig::FILE,
            &age_pub,
            &ssh_pub,
            layout::REVOKED,
            "keys/pending/.keep",
            secrets::CIPHERTEXT,
            secrets::RECIPIENTS,
            &ignore,
            &hook,
        ],
        name,
        &format!("{name}: start the fleet in this chezmoi source"),
    )?;
    match forge::push(&root, &remote, &branch)? {
        forge::PushOutcome::Pushed => {}
        forge::PushOutcome::Rejected => {
            return Err(Error::Refused(format!(
                "the forge {remote} has commits this chezmoi repo lacks; fleetkey's commit is kept locally"
            ))
            .hint("bring the repo up to date (`chezmoi git pull -- --rebase`), then run `fleetkey sync`"));
        }
    }
    files::ensure_private_dir(&paths.config_dir)?;
    MachineConfig {
        name: name.to_string(),
        backend: Backend::Chezmoi,
        repo: root.clone(),
        remote: remote.clone(),
    }
    .save(&config_path)?;
    println!("fleetkey: started a fleet with this machine as {name} (chezmoi backend)");
    println!("  fleet repo:   {} (your chezmoi source)", root.display());
    println!("  forge:        {remote}");
    println!("  age:          {}", identity.recipient());
    println!(
        "  ssh hook:     {} runs `fleetkey authorized-keys` on every chezmoi apply",
        source.join(chezmoi::MODIFY_HOOK).display()
    );
    Ok(())
}

fn current_branch(repo: &FleetRepo) -> String {
    repo.raw()
        .find_reference("HEAD")
        .ok()
        .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_string))
        .and_then(|t| t.strip_prefix("refs/heads/").map(str::to_string))
        .unwrap_or_else(|| FleetConfig::default().sync.branch)
}

/// Writes a new fleet's files into `root`: fleet.toml, this machine's keys as the whole roster,
/// an empty keys/revoked and keys/pending/, and an empty secrets file encrypted to the roster.
fn write_first_roster(
    root: &std::path::Path,
    name: &str,
    fleet: &FleetConfig,
    identity: &Identity,
    ssh: &identity::SshKey,
) -> Result<()> {
    files::write_atomic(
        &root.join(FleetConfig::FILE),
        fleet_toml_text(fleet).as_bytes(),
        0o644,
    )?;
    files::ensure_dir(&root.join(layout::PENDING))?;
    files::write_atomic(&root.join(layout::PENDING).join(".keep"), b"", 0o644)?;
    let keys = [
        (
            layout::age_pub(layout::KEYS, name),
            identity.recipient().to_string(),
        ),
        (layout::ssh_pub(layout::KEYS, name), ssh.public_line.clone()),
    ];
    for (path, line) in keys {
        files::write_atomic(&root.join(path), format!("{line}\n").as_bytes(), 0o644)?;
    }
    files::write_atomic(
        &root.join(layout::REVOKED),
        REVOKED_HEADER.as_bytes(),
        0o644,
    )?;
    let roster = Roster::load(root)?;
    SecretsFile::new(root).store(&EnvFile::new(), &roster)
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

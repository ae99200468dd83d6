//! `fleetkey init`: start a fleet on this machine.
//!
//! Everything is checked before anything is written: a second `init`, or a forge that already
//! holds a fleet, is an error that points to `enroll` and leaves every file as it was. The clone
//! is built in a temporary directory and moved into place only after the push; config.toml is
//! written last, so an interrupted `init` can simply be run again (it reuses the identity and the
//! SSH key it already made).

use crate::output::outln;
use std::path::PathBuf;

use crate::config::{Backend, FleetConfig, MachineConfig};
use crate::error::{ErrorKind, Result};
use crate::files;
use crate::forge;
use crate::identity::{self};
use crate::paths::Paths;
use crate::repo::FleetRepo;
use crate::roster::{self, layout};
use crate::secrets::{self};
use crate::setup::{check_not_set_up, machine_keys, settle_in, staging_dir, write_first_roster};
use crate::signing::{Signer, SigningKey};
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
    if let Some(source) = chezmoi_source(opts.backend)? {
        outln!(
            "fleetkey: using the chezmoi backend (source directory {})",
            source.display()
        )?;
        return run_chezmoi(&paths, &name, opts.remote, &source);
    }
    check_not_set_up(&paths)?;
    let (remote, embedded) = match opts.remote {
        Some(r) => (r, false),
        None => (paths.embedded_forge().to_string_lossy().into_owned(), true),
    };
    refuse_a_forge_with_a_fleet(&paths, &name, &remote, embedded)?;
    let (identity, ssh, signing) = machine_keys(&paths, &name)?;
    let backend = Backend::Native;
    let branch = FleetConfig::default().sync.branch;
    // Build the clone in a temporary directory next to its final place.
    let staging = staging_dir(&paths)?;
    if embedded && !paths.embedded_forge().exists() {
        FleetRepo::init_bare(&paths.embedded_forge(), &branch)?;
    }
    let root: PathBuf = staging.path().join("fleet");
    let repo = FleetRepo::init(&root, &branch, &remote)?.with_signer(Signer::new(
        &name,
        SigningKey::load(&paths.signing_key_file())?,
    ));
    let fleet = FleetConfig {
        backend,
        ..FleetConfig::default()
    };
    let poke = crate::setup::poke_key(&paths, &name)?;
    write_first_roster(&root, &name, &fleet, &identity, &ssh, &signing, &poke)?;
    let founding = repo
        .commit_all(&["."], &format!("{name}: start the fleet"))?
        .ok_or_else(|| ErrorKind::Refused("the new fleet has nothing to commit".into()))?;
    push_founding(&root, &name, &remote, &branch)?;
    drop(repo);
    settle_in(
        &paths,
        &root,
        &name,
        backend,
        &remote,
        &founding.to_string(),
    )?;
    print_started(&paths, &name, &remote, embedded, &identity, &ssh)
}

/// The chezmoi source directory to start the fleet in: chezmoi when asked (an error when it
/// is not set up), or when chezmoi is installed and has a source directory; `None`: native.
fn chezmoi_source(backend: Option<Backend>) -> Result<Option<PathBuf>> {
    Ok(match backend {
        Some(Backend::Native) => None,
        Some(Backend::Chezmoi) => Some(chezmoi::discover_source().ok_or_else(|| {
            ErrorKind::Refused("chezmoi is not installed here, or has no source directory".into())
                .hint("install chezmoi and run `chezmoi init`, or use --backend native")
        })?),
        None => chezmoi::discover_source(),
    })
}

/// A forge that already holds a fleet is not started again: the hint names `enroll`.
fn refuse_a_forge_with_a_fleet(
    paths: &Paths,
    name: &str,
    remote: &str,
    embedded: bool,
) -> Result<()> {
    let forge_exists = !embedded || paths.embedded_forge().exists();
    if forge_exists
        && forge::Forge::at(remote)
            .has_any_branch()
            .map_err(|e| e.hint_before("nothing was set up"))?
    {
        return Err(ErrorKind::AlreadyInitialized {
            what: format!("the forge {remote} already holds a fleet"),
        }
        .hint(format!(
            "to add this machine to it, run `fleetkey enroll {name} --remote {remote}`"
        )));
    }
    Ok(())
}

/// Pushes the founding commit; a forge that took another fleet's first push meanwhile is
/// told apart from one that cannot be reached (nothing is set up either way).
fn push_founding(root: &std::path::Path, name: &str, remote: &str, branch: &str) -> Result<()> {
    match forge::Forge::at(remote).push(root, branch).map_err(|e| {
        e.hint_before("nothing was set up (the keys made here are reused by the next try)")
    })? {
        forge::PushOutcome::Pushed => Ok(()),
        forge::PushOutcome::Rejected => Err(ErrorKind::AlreadyInitialized {
            what: format!("the forge {remote} already holds a fleet"),
        }
        .hint(format!("run `fleetkey enroll {name} --remote {remote}`"))),
    }
}

/// What `init` made: the forge, the clone, this machine's keys, the empty secrets (and, on
/// the embedded forge, that no other machine reaches it).
fn print_started(
    paths: &Paths,
    name: &str,
    remote: &str,
    embedded: bool,
    identity: &identity::Identity,
    ssh: &identity::SshKey,
) -> Result<()> {
    let repo_path = paths.default_repo();
    outln!(
        "fleetkey: started a fleet with this machine as {name} ({} backend)",
        Backend::Native.as_str()
    )?;
    outln!(
        "  forge:        {remote}{}",
        if embedded {
            " (embedded local forge)"
        } else {
            ""
        }
    )?;
    outln!("  clone:        {}", repo_path.display())?;
    outln!("  age:          {}", identity.recipient())?;
    if let Some(fp) = identity::ssh_fingerprint(&ssh.public_line) {
        let made = if ssh.created { "made" } else { "using" };
        outln!(
            "  ssh:          {fp} ({made} {})",
            ssh.public_path.display()
        )?;
    }
    outln!(
        "  secrets:      {} (empty, encrypted to 1 recipient)",
        repo_path.join(secrets::CIPHERTEXT).display()
    )?;
    if embedded {
        local_forge_note()?;
    }
    Ok(())
}

/// What the embedded forge means for a second machine, and the way to a real forge.
fn local_forge_note() -> Result<()> {
    outln!(
        "The embedded forge is a directory on this machine: no other machine can reach it. To bring"
    )?;
    outln!(
        "in a second machine, move the fleet to a forge both can reach (an empty repository on GitHub,"
    )?;
    outln!("Gitea or any SSH host):")?;
    outln!("  fleetkey remote set ssh://git@example.org/you/fleet.git")?;
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
    let root = source_repo_root(source, name)?;
    let needs_hook = chezmoi::check_modify_hook(source)?;
    let repo = if root.join(".git").exists() {
        FleetRepo::open(&root)?
    } else {
        FleetRepo::init(&root, &FleetConfig::default().sync.branch, "")?
    };
    let remote = chezmoi_remote(paths, &repo, remote)?;
    let branch = current_branch(&repo);
    if remote == paths.embedded_forge().to_string_lossy() && !paths.embedded_forge().exists() {
        files::ensure_private_dir(&paths.data_dir)?;
        FleetRepo::init_bare(&paths.embedded_forge(), &branch)?;
    }
    repo.set_origin(&remote)?;

    let (identity, ssh, signing) = machine_keys(paths, name)?;
    let repo = repo.with_signer(Signer::new(
        name,
        SigningKey::load(&paths.signing_key_file())?,
    ));
    let fleet = FleetConfig {
        backend: Backend::Chezmoi,
        sync: crate::config::SyncConfig {
            branch: branch.clone(),
            ..Default::default()
        },
        ..FleetConfig::default()
    };
    let poke = crate::setup::poke_key(paths, name)?;
    write_first_roster(&root, name, &fleet, &identity, &ssh, &signing, &poke)?;
    chezmoi::ensure_ignore(source)?;
    if needs_hook {
        chezmoi::install_modify_hook(source)?;
    }
    let founding = commit_founding_in_source(&repo, &root, source, name)?;
    match forge::Forge::at(&remote).push(&root, &branch)? {
        forge::PushOutcome::Pushed => {}
        forge::PushOutcome::Rejected => {
            return Err(ErrorKind::Refused(format!(
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
        trust_root: Some(founding.to_string()),
        notify: true,
    }
    .save(&config_path)?;
    outln!("fleetkey: started a fleet with this machine as {name} (chezmoi backend)")?;
    outln!("  fleet repo:   {} (your chezmoi source)", root.display())?;
    outln!("  forge:        {remote}")?;
    outln!("  age:          {}", identity.recipient())?;
    outln!(
        "  ssh hook:     {} runs `fleetkey authorized-keys` on every chezmoi apply",
        source.join(chezmoi::MODIFY_HOOK).display()
    )?;
    Ok(())
}

/// The git repository holding the chezmoi source (the source itself when none does); one
/// that already holds a fleet is not started again.
fn source_repo_root(source: &std::path::Path, name: &str) -> Result<PathBuf> {
    let root = source
        .ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(source)
        .to_path_buf();
    if root.join(FleetConfig::FILE).exists() {
        return Err(ErrorKind::AlreadyInitialized {
            what: format!("{} already holds a fleet", root.display()),
        }
        .hint(format!(
            "to add this machine to it, run `fleetkey enroll {name} --remote URL`"
        )));
    }
    Ok(root)
}

/// The forge of a chezmoi fleet: `--remote`, which must agree with the repo's origin when it
/// has one; else the origin; else the embedded local forge.
fn chezmoi_remote(paths: &Paths, repo: &FleetRepo, remote: Option<String>) -> Result<String> {
    let origin = repo.origin_url().filter(|u| !u.is_empty());
    Ok(match (remote, origin) {
        (Some(r), Some(o)) if r != o => {
            return Err(ErrorKind::Refused(format!(
                "the chezmoi repo's origin is {o}, not {r}"
            ))
            .hint("run init without --remote to use the origin, or change it with `git remote set-url origin URL`"));
        }
        (Some(r), _) => r,
        (None, Some(o)) => o,
        (None, None) => paths.embedded_forge().to_string_lossy().into_owned(),
    })
}

/// Commits exactly fleetkey's founding files in the chezmoi repo (fleet.toml, this machine's
/// key files, the empty secrets, the ignore file and the modify hook), nothing of the user's.
fn commit_founding_in_source(
    repo: &FleetRepo,
    root: &std::path::Path,
    source: &std::path::Path,
    name: &str,
) -> Result<git2::Oid> {
    let rel = |p: &std::path::Path| {
        p.strip_prefix(root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let own = [
        FleetConfig::FILE.to_string(),
        layout::age_pub(layout::KEYS, name),
        layout::ssh_pub(layout::KEYS, name),
        layout::sign_pub(layout::KEYS, name),
        layout::poke_pub(layout::KEYS, name),
        layout::role(layout::KEYS, name),
        layout::REVOKED.to_string(),
        secrets::CIPHERTEXT.to_string(),
        secrets::RECIPIENTS.to_string(),
        rel(&source.join(".chezmoiignore")),
        rel(&source.join(chezmoi::MODIFY_HOOK)),
    ];
    let paths: Vec<&str> = own.iter().map(String::as_str).collect();
    repo.commit_paths(
        &paths,
        &format!("{name}: start the fleet in this chezmoi source"),
    )?
    .ok_or_else(|| ErrorKind::Refused("the new fleet has nothing to commit".into()).into())
}

fn current_branch(repo: &FleetRepo) -> String {
    repo.raw()
        .find_reference("HEAD")
        .ok()
        .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_string))
        .and_then(|t| t.strip_prefix("refs/heads/").map(str::to_string))
        .unwrap_or_else(|| FleetConfig::default().sync.branch)
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

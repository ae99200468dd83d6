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
    // chezmoi when asked, or when chezmoi is installed and has a source directory.
    let source = match opts.backend {
        Some(Backend::Native) => None,
        Some(Backend::Chezmoi) => Some(chezmoi::discover_source().ok_or_else(|| {
            ErrorKind::Refused("chezmoi is not installed here, or has no source directory".into())
                .hint("install chezmoi and run `chezmoi init`, or use --backend native")
        })?),
        None => chezmoi::discover_source(),
    };
    if let Some(source) = source {
        outln!(
            "fleetkey: using the chezmoi backend (source directory {})",
            source.display()
        )?;
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
    if forge_exists
        && forge::Forge::at(&remote)
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

    let (identity, ssh, signing) = machine_keys(&paths, &name)?;

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
    match forge::Forge::at(&remote)
        .push(&root, &branch)
        .map_err(|e| {
            e.hint_before("nothing was set up (the keys made here are reused by the next try)")
        })? {
        forge::PushOutcome::Pushed => {}
        forge::PushOutcome::Rejected => {
            return Err(ErrorKind::AlreadyInitialized {
                what: format!("the forge {remote} already holds a fleet"),
            }
            .hint(format!("run `fleetkey enroll {name} --remote {remote}`")));
        }
    }
    drop(repo);
    settle_in(
        &paths,
        &root,
        &name,
        backend,
        &remote,
        &founding.to_string(),
    )?;

    outln!(
        "fleetkey: started a fleet with this machine as {name} ({} backend)",
        backend.as_str()
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
    let needs_hook = chezmoi::check_modify_hook(source)?;
    let repo = if root.join(".git").exists() {
        FleetRepo::open(&root)?
    } else {
        FleetRepo::init(&root, &FleetConfig::default().sync.branch, "")?
    };
    let origin = repo.origin_url().filter(|u| !u.is_empty());
    let remote = match (remote, origin) {
        (Some(r), Some(o)) if r != o => {
            return Err(ErrorKind::Refused(format!(
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
    let age_pub = layout::age_pub(layout::KEYS, name);
    let ssh_pub = layout::ssh_pub(layout::KEYS, name);
    let sign_pub = layout::sign_pub(layout::KEYS, name);
    let poke_pub = layout::poke_pub(layout::KEYS, name);
    let role = layout::role(layout::KEYS, name);
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
    let founding = repo
        .commit_paths(
            &[
                FleetConfig::FILE,
                &age_pub,
                &ssh_pub,
                &sign_pub,
                &poke_pub,
                &role,
                layout::REVOKED,
                secrets::CIPHERTEXT,
                secrets::RECIPIENTS,
                &ignore,
                &hook,
            ],
            &format!("{name}: start the fleet in this chezmoi source"),
        )?
        .ok_or_else(|| ErrorKind::Refused("the new fleet has nothing to commit".into()))?;
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

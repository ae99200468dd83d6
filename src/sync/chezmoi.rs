//! The chezmoi backend: the fleet repo is the user's chezmoi source directory; chezmoi captures
//! and applies the dotfiles, fleetkey does every git step itself.
//!
//! Exact commands (the contract the tests check with a fake `chezmoi` on PATH, since chezmoi is
//! not installable on the build machines):
//!
//! - capture: `chezmoi --source SRC add PATH…` for the managed paths whose stat changed since the
//!   last apply (all of them the first time), then one commit of the source directory.
//! - apply: `chezmoi --source SRC apply --force --no-tty`.
//! - a managed source file that lost a merge: `chezmoi --source SRC target-path SRCFILE` names
//!   the live file beside which the local (source) version is saved as a conflict copy.
//!
//! `SRC` is the repo root, or the directory `.chezmoiroot` names. fleetkey's own files
//! (`fleet.toml`, `keys/`, `secrets.*`) are listed in `.chezmoiignore` (added, committed, when
//! missing) so chezmoi never applies them. A chezmoi config with `autoCommit`/`autoPush` on is
//! warned about: chezmoi would commit (and push) a second time. chezmoi runs with an explicit
//! argument list and a cleaned environment. Must never: run chezmoi through a shell.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ErrorKind, Result};
use crate::paths::Paths;

use super::managed::Managed;
use super::state::{Entry, Manifest, Stat};

/// The lines fleetkey keeps in `.chezmoiignore`.
pub const IGNORED: &[&str] = &[
    "fleet.toml",
    "keys",
    "keys/**",
    "secrets.env.age",
    "secrets.recipients",
];

/// Header above fleetkey's lines in `.chezmoiignore`.
const IGNORE_HEADER: &str = "# fleetkey's own files: never applied to $HOME";

/// Environment variables a `chezmoi` child keeps.
const KEPT_ENV: &[&str] = &[
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "XDG_CACHE_HOME",
    "LANG",
];

/// The chezmoi source directory of the fleet repo at `repo_root` (honouring `.chezmoiroot`).
pub fn source_dir(repo_root: &Path) -> PathBuf {
    match std::fs::read_to_string(repo_root.join(".chezmoiroot")) {
        Ok(text) if !text.trim().is_empty() && !text.contains("..") => repo_root.join(text.trim()),
        _ => repo_root.to_path_buf(),
    }
}

/// A `chezmoi --source SRC ARGS…` command with the cleaned environment.
pub fn command(source: &Path, args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = crate::child::command("chezmoi", KEPT_ENV);
    cmd.arg("--source").arg(source).args(args);
    cmd
}

fn run(source: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>> {
    let mut cmd = command(source, args);
    let line = format!(
        "chezmoi --source {} {}",
        source.display(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    crate::log::debug(&format!("running {line}"));
    let out = cmd.output().map_err(|source| {
        ErrorKind::Spawn {
            program: "chezmoi".into(),
            source,
        }
        .hint("install chezmoi (https://chezmoi.io/install/), or set backend = \"native\"")
    })?;
    if !out.status.success() {
        return Err(ErrorKind::GitCommand {
            command: line,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }
        .into());
    }
    Ok(out.stdout)
}

/// The user's chezmoi source directory, as `chezmoi source-path` prints it; `None` when chezmoi
/// is not installed or has no source directory yet.
pub fn discover_source() -> Option<PathBuf> {
    let out = crate::child::command("chezmoi", KEPT_ENV)
        .arg("source-path")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    path.is_dir().then_some(path)
}

/// The `modify_` script chezmoi runs for `~/.ssh/authorized_keys`, relative to the source
/// directory: the current file on stdin, the merged one on stdout.
pub const MODIFY_HOOK: &str = "private_dot_ssh/modify_private_authorized_keys";

/// The hook's content: fleetkey by name, so it follows the binary wherever PATH finds it.
pub const MODIFY_HOOK_TEXT: &str = "#!/bin/sh\n\
# fleetkey: merges the fleet's SSH keys into ~/.ssh/authorized_keys, keeping every local line.\n\
# chezmoi gives the current file on stdin; on any error this prints nothing and fails.\n\
exec fleetkey authorized-keys\n";

/// Source entries that would fight the hook for `~/.ssh/authorized_keys`.
const OTHER_AUTHORIZED_KEYS: &[&str] = &[
    "private_dot_ssh/authorized_keys",
    "private_dot_ssh/private_authorized_keys",
    "private_dot_ssh/authorized_keys.tmpl",
    "private_dot_ssh/private_authorized_keys.tmpl",
    "private_dot_ssh/modify_authorized_keys",
    "dot_ssh/authorized_keys",
    "dot_ssh/private_authorized_keys",
    "dot_ssh/modify_authorized_keys",
    "dot_ssh/modify_private_authorized_keys",
];

/// Whether [`MODIFY_HOOK`] needs writing in `source`. Refuses when a different script is there,
/// or when the source already manages `~/.ssh/authorized_keys` another way (chezmoi would see
/// two targets).
pub fn check_modify_hook(source: &Path) -> Result<bool> {
    let hook = source.join(MODIFY_HOOK);
    if let Ok(text) = std::fs::read_to_string(&hook) {
        return if text == MODIFY_HOOK_TEXT {
            Ok(false)
        } else {
            Err(ErrorKind::Refused(format!(
                "{} exists and is not fleetkey's hook; leaving it alone",
                hook.display()
            ))
            .hint("make it run `exec fleetkey authorized-keys`, or remove it and run init again"))
        };
    }
    if let Some(other) = OTHER_AUTHORIZED_KEYS
        .iter()
        .map(|o| source.join(o))
        .find(|p| p.exists())
    {
        return Err(ErrorKind::Refused(format!(
            "{} already manages ~/.ssh/authorized_keys",
            other.display()
        ))
        .hint("remove it from the chezmoi source (its keys stay in ~/.ssh/authorized_keys, which the hook keeps), then run init again"));
    }
    Ok(true)
}

/// Installs [`MODIFY_HOOK`] in `source` (see [`check_modify_hook`]); returns whether it wrote it.
pub fn install_modify_hook(source: &Path) -> Result<bool> {
    if !check_modify_hook(source)? {
        return Ok(false);
    }
    let hook = source.join(MODIFY_HOOK);
    if let Some(dir) = hook.parent() {
        crate::files::ensure_dir(dir)?;
    }
    crate::files::write_atomic(&hook, MODIFY_HOOK_TEXT.as_bytes(), 0o755)?;
    Ok(true)
}

/// Makes sure `.chezmoiignore` in `source` lists fleetkey's own files. Returns whether it
/// changed (the caller commits it).
pub fn ensure_ignore(source: &Path) -> Result<bool> {
    let path = source.join(".chezmoiignore");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let present: Vec<&str> = text.lines().map(str::trim).collect();
    let missing: Vec<&str> = IGNORED
        .iter()
        .copied()
        .filter(|l| !present.contains(l))
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    let mut out = text.clone();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !present.contains(&IGNORE_HEADER) {
        out.push_str(IGNORE_HEADER);
        out.push('\n');
    }
    for l in missing {
        out.push_str(l);
        out.push('\n');
    }
    crate::files::write_atomic(&path, out.as_bytes(), 0o644)?;
    Ok(true)
}

/// Warns when chezmoi's own config would commit or push on its own.
pub fn warn_auto_git(paths: &Paths) {
    let dir = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| paths.home.join(".config"))
        .join("chezmoi");
    for name in ["chezmoi.toml", "chezmoi.yaml", "chezmoi.json"] {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
            continue;
        };
        let compact: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '"')
            .collect::<String>()
            .to_ascii_lowercase();
        for key in ["autocommit", "autopush"] {
            if compact.contains(&format!("{key}=true")) || compact.contains(&format!("{key}:true"))
            {
                crate::log::warn(&format!(
                    "{}: git.{key} is on; chezmoi would commit a second time beside fleetkey (turn it off)",
                    dir.join(name).display()
                ));
            }
        }
    }
}

/// Captures: `chezmoi add` of every managed live file whose stat differs from the manifest.
/// Returns how many paths were added.
pub fn capture(
    source: &Path,
    home: &Path,
    managed: &[Managed],
    manifest: &Manifest,
    patience: super::capture::Patience,
    held_back: &mut Vec<String>,
) -> Result<usize> {
    let live = super::capture::live_files(home, managed, &super::ignore::IgnoreRules::default());
    let started = std::time::SystemTime::now();
    let mut changed: Vec<PathBuf> = Vec::new();
    for (rel, meta) in live
        .iter()
        .filter(|(rel, meta)| !manifest.unchanged(rel, meta))
    {
        // chezmoi reads the file itself: it is handed over only once nobody writes it.
        let path = home.join(rel);
        let first = super::debounce::Look {
            at: std::time::SystemTime::now(),
            stamp: crate::confine::Stamp::of(meta),
        };
        let steady = super::debounce::read_when_written(
            &mut PathStamps(&path),
            first,
            patience.quiet,
            patience.by_hand,
            started + patience.settle,
            || crate::log::debug(&format!("~/{rel} is still being written: waiting")),
        );
        match steady {
            Ok(super::debounce::Steady::Read(())) => changed.push(path),
            Ok(super::debounce::Steady::StillWritten) => held_back.push(format!(
                "~/{rel} not captured: it was still being written after {:?}; the cycle after it stands still captures it",
                patience.settle
            )),
            // Gone or unreadable: chezmoi is not asked about it.
            Err(_) => {}
        }
    }
    if changed.is_empty() {
        return Ok(0);
    }
    let mut args: Vec<&std::ffi::OsStr> = vec!["add".as_ref()];
    args.extend(changed.iter().map(|p| p.as_os_str()));
    run(source, &args)?;
    Ok(changed.len())
}

/// A live file chezmoi is about to read, followed by its stamps alone (chezmoi reads it).
struct PathStamps<'a>(&'a Path);

impl super::debounce::Watched for PathStamps<'_> {
    type Read = ();
    type Error = std::io::Error;
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }
    fn sleep(&mut self, d: std::time::Duration) {
        std::thread::sleep(d);
    }
    fn stamp(&mut self) -> std::io::Result<crate::confine::Stamp> {
        std::fs::symlink_metadata(self.0).map(|m| crate::confine::Stamp::of(&m))
    }
    fn read(&mut self) -> std::io::Result<((), crate::confine::Stamp, crate::confine::Stamp)> {
        let stamp = self.stamp()?;
        Ok(((), stamp, stamp))
    }
}

/// Applies: `chezmoi apply --force --no-tty`, then records the managed files' stats.
pub fn apply(
    source: &Path,
    home: &Path,
    managed: &[Managed],
    manifest: &mut Manifest,
) -> Result<()> {
    run(
        source,
        &["apply".as_ref(), "--force".as_ref(), "--no-tty".as_ref()],
    )?;
    record(home, managed, manifest);
    Ok(())
}

/// Records the stat of every managed live file as in step.
pub fn record(home: &Path, managed: &[Managed], manifest: &mut Manifest) {
    manifest.files.clear();
    for (rel, meta) in
        super::capture::live_files(home, managed, &super::ignore::IgnoreRules::default())
    {
        let oid = std::fs::read(home.join(&rel))
            .ok()
            .and_then(|b| git2::Oid::hash_object(git2::ObjectType::Blob, &b).ok())
            .map(|o| o.to_string())
            .unwrap_or_default();
        use std::os::unix::fs::PermissionsExt;
        manifest.files.insert(
            rel,
            Entry {
                oid,
                exec: meta.permissions().mode() & 0o111 != 0,
                stat: Some(Stat::of(&meta)),
            },
        );
    }
}

/// The live file chezmoi makes from the source file `source_file`.
pub fn target_path(source: &Path, source_file: &Path) -> Result<PathBuf> {
    let out = run(source, &["target-path".as_ref(), source_file.as_os_str()])?;
    let text = String::from_utf8_lossy(&out).trim().to_string();
    if text.is_empty() {
        return Err(ErrorKind::Refused(format!(
            "chezmoi names no target for {}",
            source_file.display()
        ))
        .into());
    }
    Ok(PathBuf::from(text))
}

/// Whether `repo_path` (relative to the repo root) is one of fleetkey's own files.
pub fn is_own(repo_path: &str) -> bool {
    repo_path == "fleet.toml"
        || repo_path == ".chezmoiignore"
        || repo_path == ".chezmoiroot"
        || repo_path.starts_with("keys/")
        || repo_path.starts_with("secrets.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ignore_file_gains_fleetkeys_lines_once_and_keeps_the_users() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".chezmoiignore"), "README.md").unwrap();
        assert!(ensure_ignore(dir.path()).unwrap());
        let text = std::fs::read_to_string(dir.path().join(".chezmoiignore")).unwrap();
        assert!(
            text.starts_with("README.md\n# fleetkey's own files"),
            "{text}"
        );
        for l in IGNORED {
            assert!(text.lines().any(|x| x == *l), "{l}");
        }
        assert!(!ensure_ignore(dir.path()).unwrap(), "idempotent");
    }

    #[test]
    fn chezmoiroot_moves_the_source_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(source_dir(dir.path()), dir.path());
        std::fs::write(dir.path().join(".chezmoiroot"), "home\n").unwrap();
        assert_eq!(source_dir(dir.path()), dir.path().join("home"));
    }

    #[test]
    fn chezmoi_runs_with_an_explicit_argument_list_and_a_clean_environment() {
        let cmd = command(
            Path::new("/r"),
            &["apply".as_ref(), "--force".as_ref(), "--no-tty".as_ref()],
        );
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args, ["--source", "/r", "apply", "--force", "--no-tty"]);
        assert!(cmd.get_envs().all(|(k, _)| {
            let k = k.to_str().unwrap();
            KEPT_ENV.contains(&k) || crate::child::BASE_ENV.contains(&k)
        }));
    }
}

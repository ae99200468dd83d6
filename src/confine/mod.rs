//! Confinement: what the fleet repo can make a machine touch.
//!
//! Everything in the fleet repo may come from a compromised machine, so every path read from it
//! (managed paths, `[sync] private`, `[secrets] materialize`, `[authorized_keys] path`) and
//! every path given to `track` passes [`Confinement::check_entry`] (or its siblings for
//! user input and for files inside a managed directory). A path that passes is a [`HomeRel`]:
//! relative to `$HOME`, not `$HOME` itself, `/`-separated, with no empty, `.` or `..`
//! component, no NUL, backslash or control character, no component git treats as its own
//! (`.git`, `.gitmodules`, `.gitattributes`, in any case or alias), no longer than
//! [`crate::limits::PATH_BYTES`], and neither inside nor holding fleetkey's configuration, data
//! or state directory or the clone (compared case-insensitively, lexically and through the
//! real paths of those directories).
//!
//! That check is lexical. Symlinks are dealt with by [`walk`]: a [`HomeRel`] is only ever
//! opened component by component from a descriptor of `$HOME`, never following a link, so the
//! check made on disk IS the write (no window in which a symlink can be planted).
//! [`tree::check_tree`] refuses a fleet commit whose tree holds anything but regular files and
//! directories before it is checked out.
//!
//! Owns: those rules. Must never: accept a path that leaves `$HOME`, quote a file's content in
//! a refusal (the path itself is shown, escaped and shortened), or chmod anything it did not
//! create.

pub mod names;
pub mod tree;
pub mod walk;

use std::path::{Component, Path, PathBuf};

use crate::limits::{COMPONENT_BYTES, PATH_BYTES};
use crate::paths::Paths;

pub use names::{GitName, git_name};
pub use tree::check_tree;
pub use walk::{DirMode, HomeDir, Stamp, WalkError};

/// The one file of fleetkey's configuration directory `[secrets] materialize` may name.
pub const MATERIALIZE_FILE: &str = "secrets.env";

/// One of fleetkey's own directories, which no managed path may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnDir {
    /// The fleet clone (usually inside the data directory).
    Clone,
    /// `~/.config/fleetkey`: config.toml, identity.txt, signing_key.
    Config,
    /// `~/.local/share/fleetkey`: the clone and the embedded forge.
    Data,
    /// `~/.local/state/fleetkey`: lock, records, logs.
    State,
}

impl OwnDir {
    /// How messages name it.
    pub fn describe(self) -> &'static str {
        match self {
            OwnDir::Clone => "the fleet clone",
            OwnDir::Config => "fleetkey's configuration directory",
            OwnDir::Data => "fleetkey's data directory",
            OwnDir::State => "fleetkey's state directory",
        }
    }
}

/// Why a path was refused. Never holds file content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The entry is the empty string.
    #[error("is empty")]
    Empty,
    /// A fleet.toml entry not written `~/REL` (absolute, relative, `~user/…`).
    #[error("does not start with ~/; write it as \"~/REL\" or \"~/REL/\"")]
    NotTilde,
    /// A `..` leaves `$HOME`, or the path is elsewhere.
    #[error("is not inside your home directory; only files under $HOME can be managed")]
    EscapesHome,
    /// The path is `$HOME` itself.
    #[error("is your home directory itself; fleetkey never manages your whole home directory")]
    IsHome,
    /// An empty, `.` or `..` component that stays inside `$HOME` (fleet.toml holds normal forms
    /// only, so one path has one spelling).
    #[error("has an empty, '.' or '..' component; write the plain path")]
    NotNormal,
    /// A NUL byte.
    #[error("holds a NUL byte")]
    Nul,
    /// A backslash (a separator on other systems; never in a managed path).
    #[error("holds a backslash")]
    Backslash,
    /// A control character (newline, escape, …).
    #[error("holds a control character")]
    Control,
    /// A component git treats as its own.
    #[error("has a {} component; git's own files are never managed", .0.as_str())]
    Git(GitName),
    /// Longer than [`PATH_BYTES`].
    #[error("is longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A component longer than [`COMPONENT_BYTES`].
    #[error("has a component longer than {max} bytes")]
    ComponentTooLong {
        /// The limit.
        max: usize,
    },
    /// The path is not UTF-8 (only possible for paths that come from the file system).
    #[error("is not valid UTF-8")]
    NotUtf8,
    /// Inside, equal to or holding one of fleetkey's own directories.
    #[error("is or holds {} ({}); fleetkey cannot manage its own files", .what.describe(), .dir.display())]
    OwnDirectory {
        /// Which one.
        what: OwnDir,
        /// Where it is on this machine.
        dir: PathBuf,
    },
    /// A directory entry (`~/x/`) where the setting names a single file.
    #[error("names a directory; this setting takes a file (no trailing /)")]
    NotAFile,
}

/// A refused path: the path as given (escaped, shortened when long) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown} {reason}")]
pub struct Refusal {
    /// The path as given, escaped like a Rust string and cut at 120 characters.
    pub shown: String,
    /// Why it was refused.
    pub reason: Reason,
}

impl Refusal {
    fn new(input: &str, reason: Reason) -> Refusal {
        Refusal {
            shown: show(input),
            reason,
        }
    }
}

impl From<Refusal> for crate::Error {
    fn from(r: Refusal) -> crate::Error {
        crate::Error::refused(r.to_string())
    }
}

/// `input` escaped (`{:?}`) and cut to 120 characters, for messages.
fn show(input: &str) -> String {
    const MAX: usize = 120;
    let escaped = format!("{input:?}");
    if escaped.chars().count() <= MAX {
        return escaped;
    }
    let mut cut: String = escaped.chars().take(MAX).collect();
    cut.push_str("…\"");
    cut
}

/// A path relative to `$HOME` that passed every lexical check of [`Confinement`], including
/// the one against fleetkey's own directories. Only [`Confinement`] makes one, so holding a
/// `HomeRel` is proof of the check; [`walk::HomeDir`] takes nothing else.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HomeRel(String);

impl HomeRel {
    /// `REL`: `/`-separated, no leading or trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, from `$HOME` down.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last component.
    #[cfg(test)]
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The fleet.toml form of a file: `~/REL`.
    #[cfg(test)]
    pub fn entry(&self) -> String {
        format!("~/{}", self.0)
    }
}

impl std::fmt::Display for HomeRel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "~/{}", self.0)
    }
}

/// `REL` (`/`-separated, as a host branch's tree names a collected file) checked by the lexical
/// rules of a managed path (no `..`, `.`, empty, absolute or git-owned component, bounded
/// length, no control character), for writing below another root than `$HOME`: a machine's
/// directory `collected/host=NAME/`, opened as a [`walk::HomeDir`] of its own. Nothing a hostile
/// tree names can then leave that directory.
pub fn collected_rel(rel: &str) -> Result<HomeRel, Refusal> {
    check_rel_lexical(rel).map_err(|reason| Refusal::new(rel, reason))?;
    Ok(HomeRel(rel.to_string()))
}

/// A checked fleet.toml entry: the path, and whether it was written as a directory (`~/REL/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confined {
    /// The path.
    pub rel: HomeRel,
    /// Written with a trailing `/`: the whole directory syncs.
    pub dir: bool,
}

/// Splits a fleet.toml entry into `REL` and whether it names a directory, checking everything
/// that needs no knowledge of this machine. Used where no [`Confinement`] is at hand (parsing a
/// list to merge it); everything that touches the disk goes through [`Confinement`].
pub fn lexical_entry(entry: &str) -> Result<(String, bool), Refusal> {
    let refuse = |reason| Err(Refusal::new(entry, reason));
    if entry.is_empty() {
        return refuse(Reason::Empty);
    }
    // Bound the work before anything else: `~/` + REL + `/`.
    if entry.len() > PATH_BYTES + 3 {
        return refuse(Reason::TooLong { max: PATH_BYTES });
    }
    if let Some(reason) = bad_character(entry) {
        return refuse(reason);
    }
    if entry == "~" || entry == "~/" {
        return refuse(Reason::IsHome);
    }
    let Some(rest) = entry.strip_prefix("~/") else {
        return refuse(Reason::NotTilde);
    };
    let (rel, dir) = match rest.strip_suffix('/') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    check_rel_lexical(rel).map_err(|reason| Refusal::new(entry, reason))?;
    Ok((rel.to_string(), dir))
}

/// The characters no managed path may hold.
fn bad_character(s: &str) -> Option<Reason> {
    if s.contains('\0') {
        Some(Reason::Nul)
    } else if s.contains('\\') {
        Some(Reason::Backslash)
    } else if s.chars().any(char::is_control) {
        Some(Reason::Control)
    } else {
        None
    }
}

/// The lexical rules for `REL` (relative to `$HOME`, no `~/`, no trailing slash).
fn check_rel_lexical(rel: &str) -> Result<(), Reason> {
    if rel.is_empty() {
        return Err(Reason::IsHome);
    }
    if let Some(reason) = bad_character(rel) {
        return Err(reason);
    }
    let mut depth: usize = 0;
    let mut abnormal = false;
    for c in rel.split('/') {
        match c {
            ".." => {
                if depth == 0 {
                    return Err(Reason::EscapesHome);
                }
                depth -= 1;
                abnormal = true;
            }
            "" | "." => abnormal = true,
            _ => depth += 1,
        }
    }
    if abnormal {
        return Err(Reason::NotNormal);
    }
    if rel.len() > PATH_BYTES {
        return Err(Reason::TooLong { max: PATH_BYTES });
    }
    for c in rel.split('/') {
        if c.len() > COMPONENT_BYTES {
            return Err(Reason::ComponentTooLong {
                max: COMPONENT_BYTES,
            });
        }
        if let Some(g) = git_name(c) {
            return Err(Reason::Git(g));
        }
    }
    Ok(())
}

/// A path with `.` dropped and `..` applied, lexically.
fn lexical_clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

/// `path` with its longest existing ancestor resolved through the file system.
fn resolve_existing(path: &Path) -> Option<PathBuf> {
    let mut rest = Vec::new();
    let mut probe = path.to_path_buf();
    loop {
        if let Ok(real) = std::fs::canonicalize(&probe) {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Some(out);
        }
        let name = probe.file_name()?.to_os_string();
        rest.push(name);
        if !probe.pop() {
            return None;
        }
    }
}

/// `rel`'s components, case-folded (macOS file systems ignore case).
fn folded(rel: &str) -> Vec<String> {
    rel.split('/').map(str::to_lowercase).collect()
}

/// One of fleetkey's directories, as the components of its path relative to `$HOME` (each
/// spelling: as configured, and through the real paths).
#[derive(Debug, Clone)]
struct OwnRoot {
    what: OwnDir,
    dir: PathBuf,
    rels: Vec<Vec<String>>,
}

/// This machine's `$HOME` and fleetkey's own directories: everything needed to check a path.
#[derive(Debug, Clone)]
pub struct Confinement {
    home: PathBuf,
    roots: Vec<OwnRoot>,
}

impl Confinement {
    /// The confinement of `home`, with `own` the directories no managed path may reach. A
    /// directory outside `$HOME` cannot be reached by a checked path and is ignored.
    pub fn new(
        home: impl Into<PathBuf>,
        own: impl IntoIterator<Item = (OwnDir, PathBuf)>,
    ) -> Confinement {
        let home = home.into();
        let home_clean = lexical_clean(&home);
        let home_real = std::fs::canonicalize(&home).ok();
        let mut roots = Vec::new();
        for (what, dir) in own {
            let mut rels: Vec<Vec<String>> = Vec::new();
            let mut add = |base: &Path, dir: &Path| {
                if let Ok(rel) = dir.strip_prefix(base)
                    && let Some(rel) = rel.to_str()
                {
                    let comps = if rel.is_empty() {
                        Vec::new()
                    } else {
                        folded(rel)
                    };
                    if !rels.contains(&comps) {
                        rels.push(comps);
                    }
                }
            };
            add(&home_clean, &lexical_clean(&dir));
            if let (Some(home_real), Some(dir_real)) = (&home_real, resolve_existing(&dir)) {
                add(home_real, &dir_real);
            }
            if !rels.is_empty() {
                roots.push(OwnRoot { what, dir, rels });
            }
        }
        Confinement { home, roots }
    }

    /// The confinement of this machine: its `$HOME`, and its config, data and state
    /// directories and the clone at `clone`.
    pub fn for_machine(paths: &Paths, clone: &Path) -> Confinement {
        Confinement::new(
            paths.home.clone(),
            [
                (OwnDir::Clone, clone.to_path_buf()),
                (OwnDir::Config, paths.config_dir.clone()),
                (OwnDir::Data, paths.data_dir.clone()),
                (OwnDir::State, paths.state_dir.clone()),
            ],
        )
    }

    /// `$HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Checks a path as written in fleet.toml: `~/REL` (a file) or `~/REL/` (a directory).
    /// THE check every path from the fleet repo goes through.
    pub fn check_entry(&self, entry: &str) -> Result<Confined, Refusal> {
        let (rel, dir) = lexical_entry(entry)?;
        self.own_dirs(&rel).map_err(|r| Refusal::new(entry, r))?;
        Ok(Confined {
            rel: HomeRel(rel),
            dir,
        })
    }

    /// Like [`Confinement::check_entry`] for a setting that names one file
    /// (`[secrets] materialize`, `[authorized_keys] path`): `~/REL/` is refused.
    pub fn check_file_entry(&self, entry: &str) -> Result<HomeRel, Refusal> {
        let c = self.check_entry(entry)?;
        if c.dir {
            return Err(Refusal::new(entry, Reason::NotAFile));
        }
        Ok(c.rel)
    }

    /// [`Confinement::check_file_entry`] for `[secrets] materialize`, which may also name
    /// [`MATERIALIZE_FILE`] in fleetkey's configuration directory (the documented default
    /// place: private, and never managed) and nothing else of fleetkey's directories, so a
    /// hostile fleet.toml cannot make the secrets overwrite `identity.txt` or `config.toml`.
    pub fn check_materialize(&self, entry: &str) -> Result<HomeRel, Refusal> {
        let refusal = match self.check_file_entry(entry) {
            Ok(rel) => return Ok(rel),
            Err(r) => r,
        };
        if !matches!(
            refusal.reason,
            Reason::OwnDirectory {
                what: OwnDir::Config,
                ..
            }
        ) {
            return Err(refusal);
        }
        let (rel, dir) = lexical_entry(entry)?;
        if dir {
            return Err(Refusal::new(entry, Reason::NotAFile));
        }
        let target = folded(&rel);
        let is_default = self
            .roots
            .iter()
            .filter(|r| r.what == OwnDir::Config)
            .flat_map(|r| &r.rels)
            .any(|own| {
                target.len() == own.len() + 1
                    && target.starts_with(own)
                    && target.last().is_some_and(|f| f == MATERIALIZE_FILE)
            });
        if is_default {
            Ok(HomeRel(rel))
        } else {
            Err(refusal)
        }
    }

    /// Checks `REL`, a path relative to `$HOME` without `~/` (a file inside a managed
    /// directory, as found in the fleet's tree or on disk).
    pub fn check_rel(&self, rel: &str) -> Result<HomeRel, Refusal> {
        let refuse = |reason| Refusal::new(rel, reason);
        if rel.len() > PATH_BYTES {
            return Err(refuse(Reason::TooLong { max: PATH_BYTES }));
        }
        check_rel_lexical(rel).map_err(refuse)?;
        self.own_dirs(rel).map_err(refuse)?;
        Ok(HomeRel(rel.to_string()))
    }

    /// Checks what a user typed to `track`: `~`, `~/…`, an absolute path, or a path relative
    /// to `cwd`; `.` and `..` are resolved lexically (the user means the path as typed), then
    /// the result must pass [`Confinement::check_rel`]. A trailing `/` marks a directory.
    #[cfg(test)]
    pub fn check_input(&self, input: &str, cwd: &Path) -> Result<Confined, Refusal> {
        let rel = resolve_input(input, &self.home, cwd)?;
        let rel = self
            .check_rel(&rel)
            .map_err(|r| Refusal::new(input, r.reason))?;
        Ok(Confined {
            rel,
            dir: input.ends_with('/'),
        })
    }

    /// Refuses `rel` when it is inside, equal to, or holds one of fleetkey's own directories.
    fn own_dirs(&self, rel: &str) -> Result<(), Reason> {
        let target = folded(rel);
        for root in &self.roots {
            for own in &root.rels {
                if target.starts_with(own) || own.starts_with(&target) {
                    return Err(Reason::OwnDirectory {
                        what: root.what,
                        dir: root.dir.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Resolves user input to `REL` lexically (see [`Confinement::check_input`]) and applies the
/// lexical rules; the check against fleetkey's own directories is the caller's.
pub fn resolve_input(input: &str, home: &Path, cwd: &Path) -> Result<String, Refusal> {
    let refuse = |reason| Refusal::new(input, reason);
    if input.is_empty() {
        return Err(refuse(Reason::Empty));
    }
    if input.len() > 4 * PATH_BYTES {
        return Err(refuse(Reason::TooLong { max: PATH_BYTES }));
    }
    if let Some(reason) = bad_character(input) {
        return Err(refuse(reason));
    }
    let expanded: PathBuf = if input == "~" {
        home.to_path_buf()
    } else if let Some(rest) = input.strip_prefix("~/") {
        home.join(rest)
    } else if Path::new(input).is_absolute() {
        PathBuf::from(input)
    } else {
        cwd.join(input)
    };
    let clean = lexical_clean(&expanded);
    let rel = clean
        .strip_prefix(lexical_clean(home))
        .map_err(|_| refuse(Reason::EscapesHome))?;
    let rel = rel.to_str().ok_or_else(|| refuse(Reason::NotUtf8))?;
    check_rel_lexical(rel).map_err(refuse)?;
    Ok(rel.to_string())
}

#[cfg(test)]
mod tests;

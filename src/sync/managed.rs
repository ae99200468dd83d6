//! The managed list: what a path a user types means, which paths may be managed, and the pure
//! rules the sync engine applies to names (conflict copies, three-way unions).
//!
//! A managed path is stored in fleet.toml as `~/REL` (a file) or `~/REL/` (a directory, whose
//! whole content syncs). `REL` is relative to `$HOME`, uses `/`, has no `.` or `..` component
//! and is never empty. Must never: accept a path that leaves `$HOME` lexically or through a
//! symlink, or one inside fleetkey's own directories.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crate::error::{ErrorKind, Result};
use crate::paths::Paths;

/// One entry of the managed list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Managed {
    /// Relative to `$HOME`, `/`-separated, without a trailing slash.
    pub rel: String,
    /// Whether the entry is a directory (stored with a trailing `/`).
    pub dir: bool,
}

impl Managed {
    /// Parses a fleet.toml entry (`~/REL` or `~/REL/`).
    pub fn parse(entry: &str) -> Result<Managed> {
        let bad = |why: &str| {
            ErrorKind::Refused(format!(
                "fleet.toml: managed path {entry:?} {why}; write it as \"~/REL\" or \"~/REL/\""
            ))
        };
        let rest = entry
            .strip_prefix("~/")
            .ok_or_else(|| bad("does not start with ~/"))?;
        let dir = rest.ends_with('/');
        let rel = rest.trim_end_matches('/');
        check_rel(rel).map_err(|why| bad(&why))?;
        Ok(Managed {
            rel: rel.to_string(),
            dir,
        })
    }

    /// The fleet.toml form: `~/REL`, or `~/REL/` for a directory.
    pub fn entry(&self) -> String {
        if self.dir {
            format!("~/{}/", self.rel)
        } else {
            format!("~/{}", self.rel)
        }
    }

    /// Whether `rel` (a file relative to `$HOME`) is this entry or inside it.
    pub fn covers(&self, rel: &str) -> bool {
        rel == self.rel
            || (self.dir
                && rel.len() > self.rel.len()
                && rel.starts_with(&self.rel)
                && rel.as_bytes()[self.rel.len()] == b'/')
    }
}

/// Parses every entry of fleet.toml's `[sync] paths`.
pub fn parse_list(entries: &[String]) -> Result<Vec<Managed>> {
    entries.iter().map(|e| Managed::parse(e)).collect()
}

/// Checks a `/`-separated relative path: not empty, no `.`/`..`/empty components.
fn check_rel(rel: &str) -> std::result::Result<(), String> {
    if rel.is_empty() {
        return Err("is the home directory itself".into());
    }
    if rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("has an empty, '.' or '..' component".into());
    }
    if rel.contains('\0') || rel.contains('\\') {
        return Err("holds a NUL or backslash".into());
    }
    Ok(())
}

/// Turns what a user typed into a path relative to `home`, lexically: `~` and `~/…` expand to
/// `home`, a relative path is taken from `cwd`, `.` and `..` are resolved. Fails when the result
/// is `home` itself or outside it, or is not valid UTF-8.
pub fn normalize(input: &str, home: &Path, cwd: &Path) -> Result<String> {
    let expanded: PathBuf = if input == "~" {
        home.to_path_buf()
    } else if let Some(rest) = input.strip_prefix("~/") {
        home.join(rest)
    } else if Path::new(input).is_absolute() {
        PathBuf::from(input)
    } else {
        cwd.join(input)
    };
    let mut out = PathBuf::new();
    for c in expanded.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    let outside = || {
        ErrorKind::Refused(format!(
            "{input} is not inside your home directory {}; only files under $HOME can be managed",
            home.display()
        ))
    };
    let rel = out.strip_prefix(home).map_err(|_| outside())?;
    let rel = rel
        .to_str()
        .ok_or_else(|| ErrorKind::Refused(format!("{input} is not valid UTF-8")))?
        .to_string();
    if rel.is_empty() {
        return Err(ErrorKind::Refused(
            "refusing to manage your whole home directory; name files or directories inside it"
                .into(),
        )
        .into());
    }
    check_rel(&rel).map_err(|why| ErrorKind::Refused(format!("{input} {why}")))?;
    Ok(rel)
}

/// Checks, on disk, that `rel` may be managed: no component is a symlink that leaves `$HOME`,
/// the path itself is not a symlink, and it is not inside fleetkey's own directories or the
/// fleet clone.
pub fn check_allowed(rel: &str, paths: &Paths, repo: &Path) -> Result<()> {
    let full = paths.home.join(rel);
    let home_real = std::fs::canonicalize(&paths.home).unwrap_or_else(|_| paths.home.clone());
    // Every existing ancestor must resolve inside $HOME.
    let mut probe = paths.home.clone();
    for part in rel.split('/') {
        probe.push(part);
        let Ok(meta) = std::fs::symlink_metadata(&probe) else {
            break;
        };
        if meta.file_type().is_symlink() {
            let real = std::fs::canonicalize(&probe).unwrap_or_default();
            if probe == full {
                return Err(ErrorKind::Refused(format!(
                    "{} is a symbolic link; the native backend syncs regular files (track its target instead)",
                    full.display()
                )).into());
            }
            if !real.starts_with(&home_real) {
                return Err(ErrorKind::Refused(format!(
                    "{} leaves your home directory through the symbolic link {}",
                    full.display(),
                    probe.display()
                ))
                .into());
            }
        }
    }
    let own: [(&Path, &str); 4] = [
        (repo, "the fleet clone"),
        (&paths.config_dir, "fleetkey's configuration directory"),
        (&paths.data_dir, "fleetkey's data directory"),
        (&paths.state_dir, "fleetkey's state directory"),
    ];
    for (dir, what) in own {
        if full.starts_with(dir) || dir.starts_with(&full) {
            return Err(ErrorKind::Refused(format!(
                "{} is or holds {what} ({}); fleetkey cannot manage its own files",
                full.display(),
                dir.display()
            ))
            .into());
        }
    }
    Ok(())
}

/// The name of a conflict copy of `file_name`: `FILE.conflict-NAME-TIMESTAMP`, where NAME is the
/// machine whose version it holds and TIMESTAMP is `YYYYMMDDTHHMMSSZ` (UTC).
pub fn conflict_name(file_name: &str, machine: &str, stamp: &str) -> String {
    format!("{file_name}.conflict-{machine}-{stamp}")
}

/// Whether `file_name` is a conflict copy (never captured, so copies stay on the machine that
/// made them).
pub fn is_conflict_copy(file_name: &str) -> bool {
    let Some((_, tail)) = file_name.rsplit_once(".conflict-") else {
        return false;
    };
    // NAME-YYYYMMDDTHHMMSSZ, optionally followed by -N.
    let stamp_ok = |s: &str| {
        s.len() == 16
            && s.as_bytes()[8] == b'T'
            && s.ends_with('Z')
            && s[..8].bytes().all(|b| b.is_ascii_digit())
            && s[9..15].bytes().all(|b| b.is_ascii_digit())
    };
    tail.split('-').any(stamp_ok)
}

/// Whether `file_name` is a temporary file fleetkey itself writes (never captured).
pub fn is_own_temp(file_name: &str) -> bool {
    file_name.starts_with(".fleetkey-") && file_name.ends_with(".tmp")
}

/// Whether `bytes` look like a private key: PEM/OpenSSH armour (`…PRIVATE KEY-----`) or an age
/// identity (`AGE-SECRET-KEY-1…`) in the first 8 KiB. Such a file never goes into the fleet
/// repo, which is plain git (`fleetkey secrets set` is the place for secrets).
pub fn looks_like_private_key(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    has(b"PRIVATE KEY-----") || has(b"AGE-SECRET-KEY-1")
}

/// Three-way merge of two sets: what `ours` added since `base` is added to `theirs`, what `ours`
/// removed since `base` is removed from it. With no removal this is the union the design asks
/// for; honouring removals keeps an `untrack` from being undone by a concurrent `track`
/// elsewhere. The result keeps `theirs`' order, then `ours`' additions in their order.
pub fn merge_sets(base: &[String], ours: &[String], theirs: &[String]) -> Vec<String> {
    let base_set: BTreeSet<&String> = base.iter().collect();
    let ours_set: BTreeSet<&String> = ours.iter().collect();
    let mut out: Vec<String> = theirs
        .iter()
        .filter(|t| ours_set.contains(t) || !base_set.contains(t))
        .cloned()
        .collect();
    for o in ours {
        if !base_set.contains(o) && !out.contains(o) {
            out.push(o.clone());
        }
    }
    out
}

/// Union of two `keys/revoked` texts: `theirs` as it is, then every block of `ours` whose first
/// line `theirs` lacks. A block is a key line with the comment lines right below it (its
/// `# NAME DATE REASON` note); comment lines before the first key are a header and are kept
/// from `theirs`.
pub fn union_revoked(ours: &str, theirs: &str) -> String {
    let known: BTreeSet<&str> = theirs.lines().map(str::trim_end).collect();
    let mut out = theirs.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let mut block: Vec<&str> = Vec::new();
    let flush = |block: &mut Vec<&str>, out: &mut String| {
        if let Some(first) = block.first()
            && !known.contains(first.trim_end())
        {
            for line in block.iter() {
                out.push_str(line);
                out.push('\n');
            }
        }
        block.clear();
    };
    for line in ours.lines() {
        let t = line.trim_start();
        let is_note = t.starts_with('#') || t.is_empty();
        if is_note {
            if !block.is_empty() && !t.is_empty() {
                block.push(line);
            }
        } else {
            flush(&mut block, &mut out);
            block.push(line);
        }
    }
    flush(&mut block, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> &'static Path {
        Path::new("/home/u")
    }

    #[test]
    fn tilde_relative_and_dotted_paths_normalize_under_home() {
        let cwd = Path::new("/home/u/src/proj");
        assert_eq!(normalize("~/.zshrc", h(), cwd).unwrap(), ".zshrc");
        assert_eq!(
            normalize("/home/u/.config/git/", h(), cwd).unwrap(),
            ".config/git"
        );
        assert_eq!(normalize(".envrc", h(), cwd).unwrap(), "src/proj/.envrc");
        assert_eq!(normalize("../../.vimrc", h(), cwd).unwrap(), ".vimrc");
        assert_eq!(normalize("~/a/./b/../c", h(), cwd).unwrap(), "a/c");
    }

    #[test]
    fn paths_outside_home_or_home_itself_are_refused() {
        let cwd = Path::new("/home/u");
        for bad in [
            "/etc/passwd",
            "~/../other/.zshrc",
            "../../etc/x",
            "~",
            "/home/u",
            "/home/user2/x",
        ] {
            assert!(normalize(bad, h(), cwd).is_err(), "{bad}");
        }
    }

    #[test]
    fn managed_entries_parse_and_print_back() {
        let f = Managed::parse("~/.zshrc").unwrap();
        assert_eq!((f.rel.as_str(), f.dir), (".zshrc", false));
        let d = Managed::parse("~/.config/git/").unwrap();
        assert_eq!((d.rel.as_str(), d.dir), (".config/git", true));
        assert_eq!(d.entry(), "~/.config/git/");
        assert!(d.covers(".config/git/config"));
        assert!(!d.covers(".config/gitk"));
        assert!(f.covers(".zshrc") && !f.covers(".zshrc2"));
        for bad in ["/etc/x", "~/", "~/a/../b", "~/a//b", ".zshrc"] {
            assert!(Managed::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conflict_copies_are_named_and_recognised() {
        let n = conflict_name(".zshrc", "laptop-2", "20261127T003735Z");
        assert_eq!(n, ".zshrc.conflict-laptop-2-20261127T003735Z");
        assert!(is_conflict_copy(&n));
        assert!(is_conflict_copy(&format!("{n}-2")));
        assert!(!is_conflict_copy(".zshrc"));
        assert!(!is_conflict_copy("notes.conflict-resolution.md"));
    }

    #[test]
    fn private_keys_are_recognised() {
        assert!(looks_like_private_key(
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n"
        ));
        assert!(looks_like_private_key(b"-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(looks_like_private_key(
            b"# created: x\nAGE-SECRET-KEY-1QQQ\n"
        ));
        assert!(!looks_like_private_key(b"ssh-ed25519 AAAA... me@host\n"));
        assert!(!looks_like_private_key(
            b"Host *\n  IdentityFile ~/.ssh/id_ed25519\n"
        ));
    }

    #[test]
    fn set_merge_is_a_union_that_honours_removals() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let base = s(&["~/.a", "~/.b"]);
        // Both added something: union.
        assert_eq!(
            merge_sets(
                &base,
                &s(&["~/.a", "~/.b", "~/.c"]),
                &s(&["~/.a", "~/.b", "~/.d"])
            ),
            s(&["~/.a", "~/.b", "~/.d", "~/.c"])
        );
        // We removed ~/.a, they added ~/.d: both hold.
        assert_eq!(
            merge_sets(&base, &s(&["~/.b"]), &s(&["~/.a", "~/.b", "~/.d"])),
            s(&["~/.b", "~/.d"])
        );
        // Same addition on both sides is not repeated.
        assert_eq!(
            merge_sets(
                &base,
                &s(&["~/.a", "~/.b", "~/.c"]),
                &s(&["~/.a", "~/.b", "~/.c"])
            ),
            s(&["~/.a", "~/.b", "~/.c"])
        );
    }

    #[test]
    fn revoked_lists_union_by_block() {
        let header = "# header\n";
        let theirs = format!("{header}age1aaa\n# a 2026-01-01 lost\n");
        let ours =
            format!("{header}age1bbb\n# b 2026-01-02 stolen\nage1aaa\n# a 2026-01-01 lost\n");
        let merged = union_revoked(&ours, &theirs);
        assert_eq!(
            merged,
            format!("{header}age1aaa\n# a 2026-01-01 lost\nage1bbb\n# b 2026-01-02 stolen\n")
        );
        assert_eq!(union_revoked(&theirs, &theirs), theirs);
        assert_eq!(union_revoked(&merged, &merged), merged);
    }
}

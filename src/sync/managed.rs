//! The managed list: what a path a user types means, which paths may be managed, and the pure
//! rules the sync engine applies to names (conflict copies, three-way unions).
//!
//! A managed path is stored in fleet.toml as `~/REL` (a file) or `~/REL/` (a directory, whose
//! whole content syncs). Which `REL` may be managed is [`crate::confine`]'s to say: this module
//! asks it for every entry, from fleet.toml and from `track` alike. Must never: accept a path
//! that leaves `$HOME` lexically or through a symlink, or one inside fleetkey's own directories.

use std::collections::BTreeSet;
use std::path::Path;

use crate::confine::{self, Confined, Confinement, HomeDir, Refusal, WalkError};
use crate::error::{Error, Result};
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
    /// Parses a fleet.toml entry (`~/REL` or `~/REL/`) with the lexical rules of
    /// [`confine::lexical_entry`]; [`parse_entries`] adds the checks that need this machine.
    pub fn parse(entry: &str) -> Result<Managed> {
        let (rel, dir) = confine::lexical_entry(entry)
            .map_err(|r| Error::refused(format!("fleet.toml: managed path {r}")))?;
        Ok(Managed { rel, dir })
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

impl From<Confined> for Managed {
    fn from(c: Confined) -> Managed {
        Managed {
            rel: c.rel.as_str().to_string(),
            dir: c.dir,
        }
    }
}

/// Parses every entry of fleet.toml's `[sync] paths`, all or nothing, with the lexical rules
/// only (see [`Managed::parse`]). The cycle uses [`parse_entries`].
pub fn parse_list(entries: &[String]) -> Result<Vec<Managed>> {
    entries.iter().map(|e| Managed::parse(e)).collect()
}

/// An entry of a fleet.toml list that was refused, kept to be reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fleet.toml: {key} entry {} {refusal}; it is skipped", .index + 1)]
pub struct BadEntry {
    /// The list, as written in fleet.toml (`sync.paths`, `sync.private`).
    pub key: &'static str,
    /// The entry's 0-based position in the list.
    pub index: usize,
    /// Why it was refused (the refusal shows the entry).
    pub refusal: Refusal,
}

/// Parses a fleet.toml list of managed paths (`key` names it in reports) with every check of
/// [`Confinement::check_entry`]: the good entries, and each bad one with why. A bad entry
/// never stops the others.
pub fn parse_entries(
    key: &'static str,
    entries: &[String],
    confinement: &Confinement,
) -> (Vec<Managed>, Vec<BadEntry>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        match confinement.check_entry(entry) {
            Ok(c) => good.push(Managed::from(c)),
            Err(refusal) => bad.push(BadEntry {
                key,
                index,
                refusal,
            }),
        }
    }
    (good, bad)
}

/// Turns what a user typed into a path relative to `home`, lexically: `~` and `~/…` expand to
/// `home`, a relative path is taken from `cwd`, `.` and `..` are resolved. Fails when the result
/// is `home` itself or outside it, is not valid UTF-8, or breaks a rule of
/// [`crate::confine`] (a `.git` component, a control character, …).
pub fn normalize(input: &str, home: &Path, cwd: &Path) -> Result<String> {
    confine::resolve_input(input, home, cwd).map_err(|r| match r.reason {
        confine::Reason::EscapesHome => Error::refused(format!(
            "{input} is not inside your home directory {}; only files under $HOME can be managed",
            home.display()
        )),
        _ => Error::refused(r.to_string()),
    })
}

/// Checks that `rel` may be managed on this machine: [`Confinement::check_rel`] (the rules
/// every path from the fleet repo passes too), then, on disk, that no existing component of
/// it is a symlink (walked from `$HOME` without following links).
pub fn check_allowed(rel: &str, paths: &Paths, repo: &Path) -> Result<()> {
    let full = paths.home.join(rel);
    let confinement = Confinement::for_machine(paths, repo);
    let checked = confinement
        .check_rel(rel)
        .map_err(|r| Error::refused(format!("{} {}", full.display(), r.reason)))?;
    let home = HomeDir::open(&paths.home)?;
    match home.probe(&checked) {
        Ok(()) => Ok(()),
        Err(WalkError::Symlink { path }) if path == full => Err(Error::refused(format!(
            "{} is a symbolic link; the native backend syncs regular files (track its target instead)",
            full.display()
        ))),
        Err(WalkError::Symlink { path }) => {
            let home_real =
                std::fs::canonicalize(&paths.home).unwrap_or_else(|_| paths.home.clone());
            let inside =
                std::fs::canonicalize(&path).is_ok_and(|real| real.starts_with(&home_real));
            Err(Error::refused(if inside {
                format!(
                    "{} goes through the symbolic link {}; fleetkey never reads or writes through one (track the real path instead)",
                    full.display(),
                    path.display()
                )
            } else {
                format!(
                    "{} leaves your home directory through the symbolic link {}",
                    full.display(),
                    path.display()
                )
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// The name of a conflict copy of `file_name`: `FILE.conflict-NAME-TIMESTAMP`, where NAME is the
/// machine whose version it holds and TIMESTAMP is `YYYYMMDDTHHMMSSZ` (UTC).
pub fn conflict_name(file_name: &str, machine: &str, stamp: &str) -> String {
    format!("{file_name}.conflict-{machine}-{stamp}")
}

/// Whether `file_name` is a conflict copy (never captured, so copies stay on the machine that
/// made them).
pub fn is_conflict_copy(file_name: &str) -> bool {
    // A copy's name ends with its stamp's `Z` or a `-N` count: most names are answered here,
    // before the search for the marker.
    if !matches!(file_name.as_bytes().last(), Some(b'Z' | b'0'..=b'9')) {
        return false;
    }
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
    fn managed_entries_refuse_git_components_and_odd_characters() {
        for bad in [
            "~/proj/.git/config",
            "~/.GIT/",
            "~/x/git~1/y",
            "~/.gitattributes",
            "~/a\nb",
            "~/a\u{1b}[31m",
            "~/../x",
            "~/a/./b",
            "",
            "~",
        ] {
            assert!(Managed::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("~/{}", "a/".repeat(600));
        assert!(Managed::parse(&long).is_err());
    }

    fn confinement() -> Confinement {
        use crate::confine::OwnDir;
        Confinement::new(
            "/home/u",
            [
                (OwnDir::Clone, "/home/u/.local/share/fleetkey/fleet".into()),
                (OwnDir::Config, "/home/u/.config/fleetkey".into()),
                (OwnDir::Data, "/home/u/.local/share/fleetkey".into()),
                (OwnDir::State, "/home/u/.local/state/fleetkey".into()),
            ],
        )
    }

    #[test]
    fn a_bad_entry_is_skipped_alone_and_reported_with_its_position() {
        let entries: Vec<String> = [
            "~/.zshrc",
            "~/../../../etc/x",
            "~/.config/git/",
            "~/.config/fleetkey/",
            "~/.local/share/fleetkey/fleet/gd/config",
            "/etc/passwd",
            "~/proj/.git/config",
            "~/.vimrc",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (good, bad) = parse_entries("sync.paths", &entries, &confinement());
        assert_eq!(
            good.iter().map(Managed::entry).collect::<Vec<_>>(),
            ["~/.zshrc", "~/.config/git/", "~/.vimrc"]
        );
        assert_eq!(
            bad.iter().map(|b| b.index).collect::<Vec<_>>(),
            [1, 3, 4, 5, 6]
        );
        let shown: Vec<String> = bad.iter().map(|b| b.to_string()).collect();
        assert_eq!(
            shown[0],
            "fleet.toml: sync.paths entry 2 \"~/../../../etc/x\" is not inside your home directory; only files under $HOME can be managed; it is skipped"
        );
        assert!(
            shown[1].contains("fleetkey's configuration directory"),
            "{}",
            shown[1]
        );
        assert!(shown[2].contains("the fleet clone"), "{}", shown[2]);
        assert!(shown[3].contains("does not start with ~/"), "{}", shown[3]);
        assert!(shown[4].contains(".git component"), "{}", shown[4]);
        // The lexical all-or-nothing parse refuses the list as a whole.
        assert!(parse_list(&entries).is_err());
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
        let looks_like_private_key = |b: &[u8]| crate::private::by_content(b).is_some();
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

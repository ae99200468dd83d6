//! Ignore rules: files inside managed paths that never sync, on any machine.
//!
//! Owns: the built-in list ([`BUILT_IN`]: what macOS, editors and file managers leave beside
//! the files people edit) and fleet.toml's `[sync] ignore`, both in gitignore syntax, matched
//! by the `ignore` crate (ripgrep's own gitignore matcher) against paths relative to `$HOME`.
//! A pattern without a `/` matches a name at any depth (`*.log`); one with a `/` is anchored at
//! `$HOME` (`.config/app/cache/`); `!pattern` re-includes; `dir/` matches directories only.
//!
//! An ignored file is invisible to the cycle: capture never reads it, apply never writes or
//! removes it, a managed directory's walk does not descend into an ignored directory, and the
//! watcher does not wake for it. Must never: make a cycle delete an ignored live file (an
//! ignored file the fleet already holds stays in the repo, untouched, and is not applied).

use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// Ignored on every machine, whatever fleet.toml says: macOS Finder and Spotlight metadata,
/// AppleDouble files, Windows and Linux file-manager leftovers, NFS and FUSE silly-renames,
/// and the swap, backup, lock and probe files of vim, emacs, kate and others. `4913` is the
/// file vim creates to test whether a directory is writable.
pub const BUILT_IN: &[&str] = &[
    ".DS_Store",
    "._*",
    ".AppleDouble",
    ".LSOverride",
    "Icon\r",
    ".Spotlight-V100/",
    ".Trashes/",
    ".fseventsd/",
    ".TemporaryItems/",
    ".DocumentRevisions-V100/",
    "Thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    ".directory",
    ".Trash-*/",
    ".nfs*",
    ".fuse_hidden*",
    "*.swp",
    "*.swo",
    "*.swn",
    "*.swx",
    "*~",
    ".#*",
    "\\#*#",
    "4913",
    "*.kate-swp",
    ".*.kate-swp",
];

/// The ignore rules of one fleet.toml.
#[derive(Debug, Clone)]
pub struct IgnoreRules {
    matcher: Gitignore,
}

impl Default for IgnoreRules {
    fn default() -> Self {
        IgnoreRules::new(&[]).0
    }
}

impl IgnoreRules {
    /// The built-in list plus `patterns` (fleet.toml's `[sync] ignore`). A pattern that does
    /// not parse is left out and returned as a report (`sync.ignore entry N …`); the rest apply.
    pub fn new(patterns: &[String]) -> (IgnoreRules, Vec<String>) {
        let mut b = GitignoreBuilder::new("/");
        for p in BUILT_IN {
            b.add_line(None, p)
                .expect("the built-in ignore list parses");
        }
        let mut bad = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            if let Some(why) = check_pattern(p) {
                bad.push(format!(
                    "fleet.toml: sync.ignore entry {} {why}; it is skipped",
                    i + 1
                ));
                continue;
            }
            if b.add_line(None, p).is_err() {
                bad.push(format!(
                    "fleet.toml: sync.ignore entry {} is not a valid gitignore pattern; it is skipped",
                    i + 1
                ));
            }
        }
        let matcher = b.build().unwrap_or_else(|_| Gitignore::empty());
        (IgnoreRules { matcher }, bad)
    }

    /// Whether `rel` (relative to `$HOME`; `is_dir` when it is a directory) is ignored, by
    /// itself or through a directory above it.
    pub fn is_ignored(&self, rel: &str, is_dir: bool) -> bool {
        if rel.is_empty() || rel.starts_with('/') {
            return false;
        }
        self.matcher
            .matched_path_or_any_parents(rel, is_dir)
            .is_ignore()
    }

    /// Whether `rel` is ignored by itself, for a walk that checked every directory above it
    /// already (with [`IgnoreRules::is_ignored`] at its root, then this on the way down): the
    /// same answer as `is_ignored` there, without matching each parent again for every file.
    pub fn is_ignored_in_walk(&self, rel: &str, is_dir: bool) -> bool {
        if rel.is_empty() || rel.starts_with('/') {
            return false;
        }
        self.matcher.matched(rel, is_dir).is_ignore()
    }
}

/// Why `pattern` cannot be an ignore rule (`config set` refuses it; a cycle skips it), if it
/// cannot: empty, over 1024 bytes, or holding a control character.
pub fn check_pattern(pattern: &str) -> Option<&'static str> {
    if pattern.trim().is_empty() {
        return Some("is empty");
    }
    if pattern.len() > 1024 {
        return Some("is longer than 1024 bytes");
    }
    if pattern.chars().any(char::is_control) {
        return Some("holds a control character");
    }
    if GitignoreBuilder::new("/").add_line(None, pattern).is_err() {
        return Some("is not a valid gitignore pattern");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_list_stops_what_macos_and_editors_leave_behind() {
        let rules = IgnoreRules::default();
        for rel in [
            ".config/app/.DS_Store",
            ".DS_Store",
            ".config/app/._aliases.sh",
            ".config/app/.aliases.sh.swp",
            ".config/app/.aliases.sh.swo",
            ".config/app/config.toml~",
            ".config/app/.#config.toml",
            ".config/app/#config.toml#",
            ".config/app/4913",
            ".config/app/x.kate-swp",
            ".config/app/Thumbs.db",
            ".config/app/.nfs000000001234",
            ".config/app/.Spotlight-V100/store.db",
        ] {
            assert!(rules.is_ignored(rel, false), "{rel}");
        }
        for rel in [
            ".config/app/aliases.sh",
            ".config/app/config.toml",
            ".zshrc",
            ".config/app/swp",
            ".config/app/49130",
            ".config/app/DS_Store",
        ] {
            assert!(!rules.is_ignored(rel, false), "{rel}");
        }
    }

    #[test]
    fn fleet_patterns_add_to_the_list_anchored_at_home_when_they_hold_a_slash() {
        let (rules, bad) = IgnoreRules::new(&[
            "*.log".into(),
            ".config/app/cache/".into(),
            "!keep.log".into(),
        ]);
        assert!(bad.is_empty(), "{bad:?}");
        assert!(rules.is_ignored(".config/app/run.log", false));
        assert!(rules.is_ignored("deep/er/x.log", false));
        assert!(!rules.is_ignored(".config/app/keep.log", false));
        assert!(rules.is_ignored(".config/app/cache", true));
        assert!(rules.is_ignored(".config/app/cache/a/b", false));
        assert!(!rules.is_ignored("x/.config/app/cache/a", false));
        assert!(!rules.is_ignored(".config/app/cache", false), "dir-only");
    }

    #[test]
    fn a_walk_that_checks_each_directory_on_the_way_down_agrees_with_the_full_check() {
        let (rules, bad) = IgnoreRules::new(&[
            "*.log".into(),
            "!keep.log".into(),
            ".config/app/cache/".into(),
            "build".into(),
            "!build/keep".into(),
        ]);
        assert!(bad.is_empty(), "{bad:?}");
        // (path, is_dir) below the managed root `.config/app`, parents before children.
        let tree = [
            ("a", true),
            ("a/run.log", false),
            ("a/keep.log", false),
            ("a/.DS_Store", false),
            ("a/b.txt", false),
            ("cache", true),
            ("cache/x", false),
            ("cache/sub", true),
            ("cache/sub/y", false),
            ("build", true),
            ("build/keep", false),
            ("build/out", false),
            ("src", true),
            ("src/build", false),
            ("src/ok.rs", false),
            ("logs.log", true),
            ("logs.log/inner", false),
        ];
        let root = ".config/app";
        assert!(!rules.is_ignored(root, true));
        let mut ignored_dirs: Vec<String> = Vec::new();
        for (rel, is_dir) in tree {
            let path = format!("{root}/{rel}");
            let full = rules.is_ignored(&path, is_dir);
            // The walk never enters an ignored directory: what lies below one is ignored.
            let walk = ignored_dirs
                .iter()
                .any(|d| path.starts_with(&format!("{d}/")))
                || rules.is_ignored_in_walk(&path, is_dir);
            assert_eq!(walk, full, "{path}");
            if is_dir && walk {
                ignored_dirs.push(path);
            }
        }
        assert!(!ignored_dirs.is_empty(), "the tree has ignored directories");
    }

    #[test]
    fn a_bad_pattern_is_skipped_alone_and_reported_by_position() {
        let (rules, bad) = IgnoreRules::new(&["*.log".into(), "a\u{7}b".into(), "  ".into()]);
        assert_eq!(
            bad,
            [
                "fleet.toml: sync.ignore entry 2 holds a control character; it is skipped",
                "fleet.toml: sync.ignore entry 3 is empty; it is skipped",
            ]
        );
        assert!(rules.is_ignored("x.log", false));
        assert_eq!(
            check_pattern("[z-a"),
            Some("is not a valid gitignore pattern")
        );
    }
}

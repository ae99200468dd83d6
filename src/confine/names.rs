//! The names git itself treats as its own, matched the way git matches them on every file
//! system it protects (`is_hfs_dotgit`, `is_ntfs_dotgit` in git's `path.c`): case-insensitively,
//! ignoring the code points HFS+ drops, a trailing run of dots and spaces and an NTFS stream
//! suffix (`.git::$INDEX_ALLOCATION`), and the 8.3 short names (`git~1`).

/// A path component that names one of git's own files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitName {
    /// `.git`: a repository's own directory (its config can run commands).
    Dir,
    /// `.gitmodules`: submodules, which make a checkout fetch other repositories.
    Modules,
    /// `.gitattributes`: filters and diff drivers, which run commands.
    Attributes,
}

impl GitName {
    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GitName::Dir => ".git",
            GitName::Modules => ".gitmodules",
            GitName::Attributes => ".gitattributes",
        }
    }
}

/// Code points HFS+ ignores when it compares names (git's `next_hfs_char`).
fn hfs_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}'
    )
}

/// Whether `s` is `prefix` followed by one or more ASCII digits (an 8.3 short name).
fn short_name(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Which of git's own names `component` is, on any file system git protects, if any.
pub fn git_name(component: &str) -> Option<GitName> {
    let folded: String = component
        .chars()
        .filter(|c| !hfs_ignorable(*c))
        .flat_map(char::to_lowercase)
        .collect();
    // NTFS: an alternate data stream names the same file; trailing dots and spaces are dropped.
    let base = folded.split(':').next().unwrap_or("");
    let base = base.trim_end_matches(['.', ' ']);
    match base {
        ".git" => Some(GitName::Dir),
        ".gitmodules" => Some(GitName::Modules),
        ".gitattributes" => Some(GitName::Attributes),
        s if short_name(s, "git~") => Some(GitName::Dir),
        s if short_name(s, "gitmod~") => Some(GitName::Modules),
        s if short_name(s, "gitatt~") => Some(GitName::Attributes),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_of_dot_git_is_recognised() {
        for name in [
            ".git",
            ".GIT",
            ".Git",
            ".git.",
            ".git ",
            ".git. . ",
            ".git::$INDEX_ALLOCATION",
            ".git:stream",
            "git~1",
            "GIT~1",
            "git~12",
            ".g\u{200c}it",
            "\u{feff}.git",
            ".gi\u{206a}t",
        ] {
            assert_eq!(git_name(name), Some(GitName::Dir), "{name:?}");
        }
        for name in [".gitmodules", ".GitModules", ".gitmodules.", "gitmod~1"] {
            assert_eq!(git_name(name), Some(GitName::Modules), "{name:?}");
        }
        for name in [".gitattributes", ".GITATTRIBUTES ", "gitatt~3"] {
            assert_eq!(git_name(name), Some(GitName::Attributes), "{name:?}");
        }
    }

    #[test]
    fn ordinary_names_that_look_close_are_not_git_names() {
        for name in [
            ".gitignore",
            ".gitconfig",
            "git",
            ".git-credentials",
            ".gitk",
            "x.git",
            ".git~",
            "git~",
            "git~a",
            ".github",
            "a:.git",
            "",
        ] {
            assert_eq!(git_name(name), None, "{name:?}");
        }
    }
}

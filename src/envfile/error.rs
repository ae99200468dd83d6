//! Owns what can go wrong parsing or editing a secrets file: [`ParseError`], [`KeyError`] and
//! [`DirectiveError`]. Must never: hold a value or a line of the file (a duplicate's key name,
//! a valid name, is the one piece of content an error carries).

/// Why a secrets file could not be parsed. The caller must write nothing.
///
/// `line` is always the 1-based line where the entry (or directive) starts; `at` is the line
/// where the problem was found, which differs for a double-quoted value spanning several lines.
/// No variant holds any content of the file except [`ParseError::DuplicateKey`]'s key name,
/// which is a valid key name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text before the first `=` is not a key name.
    #[error(
        "line {line}: invalid key name; a key starts at column 1 with a letter or `_`, continues \
         with letters, digits or `_`, and is directly followed by `=` (no `export`, no spaces)"
    )]
    BadKey {
        /// Line of the entry.
        line: usize,
    },
    /// A line that is neither blank nor a comment has no `=`.
    #[error(
        "line {line}: missing `=`; write KEY=VALUE, or start the line with `#` to make it a comment"
    )]
    MissingEquals {
        /// Line of the entry.
        line: usize,
    },
    /// A key is defined twice.
    #[error("line {line}: duplicate key {key}, first defined on line {first}; keep only one")]
    DuplicateKey {
        /// The key name (a valid name).
        key: String,
        /// Line of the second definition.
        line: usize,
        /// Line of the first definition.
        first: usize,
    },
    /// A single-quoted value has no closing quote on its line (single quotes cannot span lines).
    #[error(
        "line {line}: unterminated single-quoted value, no closing `'` on the same line; close \
         the quote on that line (a value that spans lines must be double-quoted)"
    )]
    UnterminatedSingleQuote {
        /// Line of the entry.
        line: usize,
    },
    /// A double-quoted value has no closing quote before the end of the file.
    #[error(
        "line {line}: unterminated double-quoted value, no closing `\"` by line {at}; close the \
         quote (inside it, write a `\"` as \\\")"
    )]
    UnterminatedDoubleQuote {
        /// Line where the entry starts.
        line: usize,
        /// Line where the file ended.
        at: usize,
    },
    /// A double-quoted value holds a backslash escape other than `\n`, `\"` and `\\`.
    #[error(
        "line {at}: unknown escape in the double-quoted value that starts on line {line}; only \
         \\n, \\\" and \\\\ are allowed (write a backslash as \\\\, or use single quotes)"
    )]
    UnknownEscape {
        /// Line where the entry starts.
        line: usize,
        /// Line of the bad escape.
        at: usize,
    },
    /// Something other than an optional `\r` follows a closing quote.
    #[error(
        "line {at}: text after the closing quote of the value that starts on line {line}; \
         nothing may follow the closing quote"
    )]
    TextAfterQuote {
        /// Line where the entry starts.
        line: usize,
        /// Line of the closing quote.
        at: usize,
    },
    /// A `# fleetkey:stale` or `# fleetkey:conflict` line is malformed.
    #[error(
        "line {line}: malformed fleetkey directive; expected `# fleetkey:stale KEY \
         since=YYYY-MM-DD reason=...` or `# fleetkey:conflict KEY from=MACHINE at=TIME \
         value=\"...\"` (or remove the line)"
    )]
    BadDirective {
        /// Line of the directive.
        line: usize,
    },
}

impl ParseError {
    /// This parse error of the decrypted secrets file `path` as the error a command ends with
    /// (it converts into [`crate::error::Error`], which never names this type).
    pub fn in_file(self, path: &std::path::Path) -> crate::error::Error {
        crate::error::ErrorKind::SecretsGrammar {
            path: path.to_path_buf(),
            source: Box::new(self),
        }
        .into()
    }

    #[cfg(test)]
    /// The 1-based line where the offending entry or directive starts.
    pub fn line(&self) -> usize {
        match *self {
            Self::BadKey { line }
            | Self::MissingEquals { line }
            | Self::DuplicateKey { line, .. }
            | Self::UnterminatedSingleQuote { line }
            | Self::UnterminatedDoubleQuote { line, .. }
            | Self::UnknownEscape { line, .. }
            | Self::TextAfterQuote { line, .. }
            | Self::BadDirective { line } => line,
        }
    }
}

/// A key name given to an edit is not `[A-Za-z_][A-Za-z0-9_]*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid key name; use a letter or `_`, then letters, digits or `_` ([A-Za-z_][A-Za-z0-9_]*)"
)]
pub struct KeyError;

/// A field given to [`EnvFile::mark_stale`] or [`EnvFile::add_conflict`] cannot be written as a
/// directive.
///
/// [`EnvFile::mark_stale`]: super::EnvFile::mark_stale
/// [`EnvFile::add_conflict`]: super::EnvFile::add_conflict
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DirectiveError {
    /// The key name is invalid.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// `since` is not a `YYYY-MM-DD` date.
    #[error("invalid date; use YYYY-MM-DD")]
    Date,
    /// A one-word field (`from`, `at`) is empty or holds whitespace or control characters.
    #[error("invalid {0}; it must be one non-empty word without spaces or control characters")]
    #[cfg_attr(not(test), allow(dead_code))]
    Word(&'static str),
    /// The reason holds a control character (a line break, for one).
    #[error("invalid reason; it must fit on one line, without control characters")]
    Reason,
}

/// What an export is written for, in [`Unexportable`]'s message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportTarget {
    /// `--format env`: python-dotenv and Node's dotenv.
    Dotenv,
    /// `--format docker`: `docker run --env-file`.
    Docker,
}

/// Why one value cannot be written in an export so that its reader gets it back exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwritable {
    /// It holds `${NAME}` or `${NAME:-default}`, which python-dotenv expands in every quoting.
    Expands,
    /// Its mix of quotes, backslashes, `#`, line breaks and edge spaces reads back differently
    /// in python-dotenv and Node's dotenv in every quoting.
    NoCommonQuoting,
    /// It spans lines (docker's env file holds one variable per line).
    LineBreak,
}

impl std::fmt::Display for Unwritable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unwritable::Expands => "holds ${…}, which python-dotenv expands",
            Unwritable::NoCommonQuoting => {
                "mixes quotes, backslashes, `#` or line breaks so that python-dotenv and Node's dotenv read it differently in every quoting"
            }
            Unwritable::LineBreak => "spans lines, and docker reads one line per variable",
        })
    }
}

/// An export refused because some values cannot be written for its reader: each key (a valid
/// name, never a value) with why. Nothing of the export is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unexportable {
    /// What the export is for.
    pub target: ExportTarget,
    /// Each refused key, in file order, with why.
    pub keys: Vec<(String, Unwritable)>,
}

impl Unexportable {
    pub(super) fn new(target: ExportTarget, keys: Vec<(String, Unwritable)>) -> Unexportable {
        Unexportable { target, keys }
    }
}

impl std::fmt::Display for Unexportable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.target {
            ExportTarget::Dotenv => "dotenv (--format env)",
            ExportTarget::Docker => "docker's --env-file (--format docker)",
        };
        write!(f, "cannot export the secrets as {what}: ")?;
        for (n, (key, why)) in self.keys.iter().enumerate() {
            if n > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{key} {why}")?;
        }
        f.write_str("; nothing was written")
    }
}

impl std::error::Error for Unexportable {}

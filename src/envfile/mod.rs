//! The grammar of fleetkey's decrypted secrets file: parse it, edit it, print it back, export
//! it, and merge concurrent edits of it.
//!
//! # The format
//!
//! ```text
//! # A comment: the first character of the line is `#`. Kept byte for byte.
//! PLAIN=raw to the end of the line, # included, no unescaping
//! LITERAL='single quotes: no escapes, one line, no quote inside'
//! ESCAPED="double quotes: \n \" \\ are the only escapes"
//! PEM="-----BEGIN PRIVATE KEY-----
//! real newlines inside double quotes are part of the value
//! -----END PRIVATE KEY-----"
//! # fleetkey:stale PLAIN since=2024-05-01 reason=revoked laptop (compromised)
//! # fleetkey:conflict LITERAL from=laptop at=2024-05-01T10:00:00Z value="the losing value"
//! ```
//!
//! - A key is `[A-Za-z_][A-Za-z0-9_]*`, starts at column 1 and is directly followed by `=`
//!   (no `export `, no spaces around `=`). Everything after the `=` is the value's text.
//! - A line that is empty or holds only spaces and tabs is a blank line; a line whose first
//!   character is `#` is a comment (an indented `#` is not: it is a bad key or a missing `=`).
//!   Both are kept in place, byte for byte, through every edit.
//! - A raw value is not trimmed: `A= x ` holds ` x `. Values are never expanded (`$X` is text).
//! - Line endings are `\n`. A `\r` that ends a line (before its `\n`, or as the very last byte
//!   of the file) is part of the line ending, never of a value, and is kept for the round trip.
//!   Inside a multi-line double-quoted value a `\r\n` line break therefore reads as `\n`.
//! - After a closing quote only that optional `\r` may follow on the line.
//! - Comment lines that start with `# fleetkey:` are directives: fleetkey's metadata kept inside
//!   the encrypted file, invisible to other readers of the format. `stale` and `conflict` are
//!   parsed (see [`Stale`] and [`Conflict`]); a malformed one of those is an error, any other
//!   `# fleetkey:` line is a plain comment.
//! - [`EnvFile::to_text`] of a parsed file is the parsed text, byte for byte, always.
//!
//! # What this module must never do
//!
//! It owns the text format only: it never touches the disk, a terminal, a child process, git or
//! a log. Plaintext (values, raw lines, printed text) lives only in [`Zeroizing`] buffers that
//! are wiped on drop, including every intermediate buffer: growth copies into a fresh zeroizing
//! allocation instead of letting `String` reallocate and free an unwiped one. Nothing here has a
//! `Debug` or `Display` that shows a value or a line: `Debug` lists key names, and a
//! [`ParseError`] carries line numbers and, for a duplicate, the (valid) key name only.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;

use zeroize::Zeroizing;

/// Every comment line that starts with this is a fleetkey directive.
const DIRECTIVE_PREFIX: &str = "# fleetkey:";

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
    /// A quoted value has no closing quote (single quotes must close on the same line).
    #[error(
        "line {line}: unterminated quoted value, no closing quote by line {at}; close the quote \
         (a single-quoted value must close on its own line)"
    )]
    UnterminatedQuote {
        /// Line where the entry starts.
        line: usize,
        /// Line where the file (or, for single quotes, the line) ended.
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
    /// The 1-based line where the offending entry or directive starts.
    pub fn line(&self) -> usize {
        match *self {
            Self::BadKey { line }
            | Self::MissingEquals { line }
            | Self::DuplicateKey { line, .. }
            | Self::UnterminatedQuote { line, .. }
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
    Word(&'static str),
    /// The reason holds a control character (a line break, for one).
    #[error("invalid reason; it must fit on one line, without control characters")]
    Reason,
}

/// What [`EnvFile::set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// The key was absent: a new entry was appended at the end of the file.
    Added,
    /// The key held another value: its entry was rewritten in place.
    Replaced,
    /// The key already held exactly this value: the file was not touched.
    Unchanged,
}

impl Changed {
    /// Whether the value changed (the file needs re-encrypting).
    pub fn is_changed(self) -> bool {
        !matches!(self, Self::Unchanged)
    }
}

/// `!changed` is true when nothing changed, so `if !env.set(k, v)? { return }` reads as with a
/// `bool`.
impl std::ops::Not for Changed {
    type Output = bool;

    fn not(self) -> bool {
        !self.is_changed()
    }
}

/// A `# fleetkey:stale KEY since=YYYY-MM-DD reason=...` directive: KEY's value was readable by
/// a compromised machine and needs a new one. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// The key that needs a new value.
    pub key: String,
    /// When it was marked, `YYYY-MM-DD`.
    pub since: String,
    /// Why, free text on one line (may be empty).
    pub reason: String,
}

/// A `# fleetkey:conflict KEY from=MACHINE at=TIME value="..."` directive: a concurrent edit of
/// KEY that lost a merge, kept inside the encrypted file so no value is ever lost.
///
/// `Debug` shows everything but the value.
#[derive(Clone)]
pub struct Conflict {
    /// The key both sides changed.
    pub key: String,
    /// The machine whose edit lost.
    pub from: String,
    /// When the merge happened (one word, e.g. an RFC 3339 timestamp).
    pub at: String,
    /// The losing value.
    pub value: Zeroizing<String>,
}

impl fmt::Debug for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conflict")
            .field("key", &self.key)
            .field("from", &self.from)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl Conflict {
    fn same_as(&self, other: &Conflict) -> bool {
        self.key == other.key
            && self.from == other.from
            && self.at == other.at
            && *self.value == *other.value
    }
}

/// Whether `key` is a valid key name, `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One line of the file, or several for a multi-line value. `raw` is the exact text, line
/// ending included, so that printing is concatenation. No `Debug`: it would print values.
#[derive(Clone)]
enum Item {
    /// A blank line or a plain comment.
    Trivia(Zeroizing<String>),
    /// A `# fleetkey:stale` directive.
    Stale {
        raw: Zeroizing<String>,
        stale: Stale,
    },
    /// A `# fleetkey:conflict` directive.
    Conflict {
        raw: Zeroizing<String>,
        conflict: Conflict,
    },
    /// `KEY=VALUE`, `value` decoded.
    Entry {
        raw: Zeroizing<String>,
        key: String,
        value: Zeroizing<String>,
    },
}

impl Item {
    fn raw(&self) -> &str {
        match self {
            Self::Trivia(raw)
            | Self::Stale { raw, .. }
            | Self::Conflict { raw, .. }
            | Self::Entry { raw, .. } => raw,
        }
    }

    fn raw_mut(&mut self) -> &mut Zeroizing<String> {
        match self {
            Self::Trivia(raw)
            | Self::Stale { raw, .. }
            | Self::Conflict { raw, .. }
            | Self::Entry { raw, .. } => raw,
        }
    }

    fn entry(key: &str, value: &str, ending: &str) -> Self {
        let mut raw = SecretBuf::with_capacity(key.len() + 1 + 2 * value.len() + 2 + ending.len());
        raw.push_str(key);
        raw.push_str("=");
        push_encoded(&mut raw, value);
        raw.push_str(ending);
        Self::Entry {
            raw: raw.into_inner(),
            key: key.to_owned(),
            value: secret_copy(value),
        }
    }

    fn is_comment(&self) -> bool {
        matches!(self, Self::Trivia(raw) if raw.starts_with('#'))
    }
}

/// A parsed secrets file: entries, comments, blank lines and directives, in file order.
///
/// `Debug` shows key names only.
#[derive(Clone, Default)]
pub struct EnvFile {
    items: Vec<Item>,
}

impl fmt::Debug for EnvFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stale: Vec<&str> = self
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Stale { stale, .. } => Some(stale.key.as_str()),
                _ => None,
            })
            .collect();
        let conflicts = self
            .items
            .iter()
            .filter(|item| matches!(item, Item::Conflict { .. }))
            .count();
        f.debug_struct("EnvFile")
            .field("keys", &self.keys().collect::<Vec<_>>())
            .field("stale", &stale)
            .field("conflicts", &conflicts)
            .finish()
    }
}

/// Parses the text of a decrypted secrets file. See [`EnvFile::parse`].
pub fn parse(text: &str) -> Result<EnvFile, ParseError> {
    EnvFile::parse(text)
}

impl EnvFile {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the text of a decrypted secrets file (grammar in the module docs).
    ///
    /// On error nothing of the text survives: every buffer built so far is wiped.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut items = Vec::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        let mut pos = 0;
        let mut line = 1;
        while pos < text.len() {
            let parsed = parse_item(text, pos, line)?;
            if let Item::Entry { key, .. } = &parsed.item {
                if let Some(&first) = first_line.get(key) {
                    return Err(ParseError::DuplicateKey {
                        key: key.clone(),
                        line,
                        first,
                    });
                }
                first_line.insert(key.clone(), line);
            }
            items.push(parsed.item);
            pos = parsed.end;
            line = parsed.next_line;
        }
        Ok(Self { items })
    }

    /// The file's text: for a parsed file, exactly the bytes it was parsed from.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut out = SecretBuf::with_capacity(self.items.iter().map(|i| i.raw().len()).sum());
        for item in &self.items {
            out.push_str(item.raw());
        }
        out.into_inner()
    }

    /// The decoded value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find_entry(key).map(|i| match &self.items[i] {
            Item::Entry { value, .. } => value.as_str(),
            _ => unreachable!("find_entry returns entries only"),
        })
    }

    /// Whether `key` has an entry.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find_entry(key).is_some()
    }

    /// The key names, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries().map(|(key, _)| key)
    }

    /// `(key, decoded value)` for every entry, in file order. Directives are not entries.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.items.iter().filter_map(|item| match item {
            Item::Entry { key, value, .. } => Some((key.as_str(), value.as_str())),
            _ => None,
        })
    }

    /// How many entries the file has.
    pub fn len(&self) -> usize {
        self.entries().count()
    }

    /// Whether the file has no entry (it may still have comments and directives).
    pub fn is_empty(&self) -> bool {
        self.entries().next().is_none()
    }

    /// Sets `key` to `value` (any string: newlines, quotes, leading spaces, NUL...).
    ///
    /// An existing entry is rewritten in place, keeping its line ending; a new one is appended
    /// at the end (a final line without a line ending gets one first, in the file's style: the
    /// ending of its first line). The value is written in the simplest encoding that reads back
    /// exactly: raw when it has no newline, no leading or trailing whitespace and does not
    /// start with a quote; else single-quoted when it has no `'` and no newline; else
    /// double-quoted with `\n`, `\"` and `\\` escapes, on one line. When the value changes, the
    /// key's `stale` directive goes (it has its new value). When it does not change, nothing is
    /// touched, not even the encoding.
    pub fn set(&mut self, key: &str, value: &str) -> Result<Changed, KeyError> {
        if !is_valid_key(key) {
            return Err(KeyError);
        }
        let changed = match self.find_entry(key) {
            Some(i) => {
                if self.get(key) == Some(value) {
                    return Ok(Changed::Unchanged);
                }
                let ending = ending_of(self.items[i].raw());
                self.items[i] = Item::entry(key, value, ending);
                Changed::Replaced
            }
            None => {
                let ending = self.newline();
                self.append(Item::entry(key, value, ending));
                Changed::Added
            }
        };
        self.remove_stale(key);
        Ok(changed)
    }

    /// Removes `key`'s entry (all its lines) and its `stale` directive. Comments, blank lines
    /// and conflict records stay. Returns whether there was an entry.
    pub fn unset(&mut self, key: &str) -> bool {
        let removed = self.remove_entry(key);
        self.remove_stale(key);
        removed
    }

    /// Every entry as a POSIX sh assignment `KEY='value'` (a `'` written `'\''`), one per line,
    /// in file order, so that `set -a; . FILE` gives every variable exactly its value,
    /// multi-line values included. Directives are not exported. (A value holding NUL cannot live
    /// in an environment; sh drops or cuts it.)
    pub fn export_env(&self) -> Zeroizing<String> {
        let size = self
            .entries()
            .map(|(key, value)| key.len() + value.len() + 4 + 3 * value.matches('\'').count())
            .sum();
        let mut out = SecretBuf::with_capacity(size);
        for (key, value) in self.entries() {
            out.push_str(key);
            out.push_str("='");
            let mut parts = value.split('\'');
            if let Some(first) = parts.next() {
                out.push_str(first);
            }
            for part in parts {
                out.push_str("'\\''");
                out.push_str(part);
            }
            out.push_str("'\n");
        }
        out.into_inner()
    }

    /// Every entry as one JSON object `{"KEY":"value",...}` in file order, followed by a
    /// newline. Directives are not exported.
    pub fn export_json(&self) -> Zeroizing<String> {
        let mut out = SecretBuf::with_capacity(64);
        out.push_str("{");
        for (n, (key, value)) in self.entries().enumerate() {
            if n > 0 {
                out.push_str(",");
            }
            push_json_string(&mut out, key);
            out.push_str(":");
            push_json_string(&mut out, value);
        }
        out.push_str("}\n");
        out.into_inner()
    }

    /// Marks `key` as needing a new value (`revoke --compromised`): a
    /// `# fleetkey:stale KEY since=SINCE reason=REASON` line directly above the key's entry, or
    /// at the end of the file when the key is absent.
    ///
    /// Idempotent: a key has at most one such directive, and an existing one is kept as it is
    /// (the value has needed replacing since the first marking). Returns whether a directive
    /// was added.
    pub fn mark_stale(
        &mut self,
        key: &str,
        since: &str,
        reason: &str,
    ) -> Result<bool, DirectiveError> {
        if !is_valid_key(key) {
            return Err(KeyError.into());
        }
        if !is_valid_date(since) {
            return Err(DirectiveError::Date);
        }
        if reason.chars().any(char::is_control) {
            return Err(DirectiveError::Reason);
        }
        if self.has_stale(key) {
            return Ok(false);
        }
        let body = concat(&[
            DIRECTIVE_PREFIX,
            "stale ",
            key,
            " since=",
            since,
            " reason=",
            reason,
        ]);
        self.insert_stale(key, &body);
        Ok(true)
    }

    /// The `stale` directives, in file order.
    pub fn stale(&self) -> Vec<Stale> {
        self.items
            .iter()
            .filter_map(|item| match item {
                Item::Stale { stale, .. } => Some(stale.clone()),
                _ => None,
            })
            .collect()
    }

    /// Records a concurrent edit of `key` that lost: appends
    /// `# fleetkey:conflict KEY from=FROM at=AT value="VALUE"` (value escaped onto one line) at
    /// the end of the file. An identical record is not added twice. Returns whether it was added.
    pub fn add_conflict(
        &mut self,
        key: &str,
        from: &str,
        at: &str,
        value: &str,
    ) -> Result<bool, DirectiveError> {
        if !is_valid_key(key) {
            return Err(KeyError.into());
        }
        if !is_word(from) {
            return Err(DirectiveError::Word("from"));
        }
        if !is_word(at) {
            return Err(DirectiveError::Word("at"));
        }
        Ok(self.push_conflict(key, from, at, value))
    }

    /// The conflict records, in file order.
    pub fn conflicts(&self) -> Vec<Conflict> {
        self.items
            .iter()
            .filter_map(|item| match item {
                Item::Conflict { conflict, .. } => Some(conflict.clone()),
                _ => None,
            })
            .collect()
    }

    /// Removes every conflict record of `key`; returns how many there were.
    pub fn clear_conflicts(&mut self, key: &str) -> usize {
        let before = self.items.len();
        self.items
            .retain(|item| !matches!(item, Item::Conflict { conflict, .. } if conflict.key == key));
        before - self.items.len()
    }

    fn find_entry(&self, key: &str) -> Option<usize> {
        self.items
            .iter()
            .position(|item| matches!(item, Item::Entry { key: k, .. } if k == key))
    }

    fn has_stale(&self, key: &str) -> bool {
        self.items
            .iter()
            .any(|item| matches!(item, Item::Stale { stale, .. } if stale.key == key))
    }

    /// The file's line ending for new lines: the ending of its first terminated line, else `\n`.
    fn newline(&self) -> &'static str {
        self.items
            .iter()
            .map(|item| ending_of(item.raw()))
            .find(|ending| ending.ends_with('\n'))
            .unwrap_or("\n")
    }

    /// Appends a line, first terminating the last line if the file does not end with `\n`.
    fn append(&mut self, item: Item) {
        let newline = self.newline();
        if let Some(last) = self.items.last_mut() {
            let raw = last.raw_mut();
            if !raw.ends_with('\n') {
                let ending = if raw.ends_with('\r') { "\n" } else { newline };
                let terminated = concat(&[raw.as_str(), ending]);
                *raw = terminated;
            }
        }
        self.items.push(item);
    }

    fn remove_entry(&mut self, key: &str) -> bool {
        match self.find_entry(key) {
            Some(i) => {
                self.items.remove(i);
                true
            }
            None => false,
        }
    }

    fn remove_stale(&mut self, key: &str) {
        self.items
            .retain(|item| !matches!(item, Item::Stale { stale, .. } if stale.key == key));
    }

    /// Inserts a stale directive (`body` without line ending) above `key`'s entry, or at the end.
    fn insert_stale(&mut self, key: &str, body: &str) {
        let raw = concat(&[body, self.newline()]);
        let Some(Directive::Stale(stale)) = parse_directive(strip_ending(&raw)).ok().flatten()
        else {
            unreachable!("a stale directive built from valid fields parses");
        };
        let item = Item::Stale { raw, stale };
        match self.find_entry(key) {
            Some(i) => self.items.insert(i, item),
            None => self.append(item),
        }
    }

    /// Appends a conflict record unless an identical one exists; fields already valid.
    fn push_conflict(&mut self, key: &str, from: &str, at: &str, value: &str) -> bool {
        let conflict = Conflict {
            key: key.to_owned(),
            from: from.to_owned(),
            at: at.to_owned(),
            value: secret_copy(value),
        };
        if self.has_conflict(&conflict) {
            return false;
        }
        let newline = self.newline();
        let mut raw = SecretBuf::with_capacity(
            DIRECTIVE_PREFIX.len() + 32 + key.len() + from.len() + at.len() + 2 * value.len(),
        );
        for part in [
            DIRECTIVE_PREFIX,
            "conflict ",
            key,
            " from=",
            from,
            " at=",
            at,
        ] {
            raw.push_str(part);
        }
        raw.push_str(" value=\"");
        push_escaped(&mut raw, value);
        raw.push_str("\"");
        raw.push_str(newline);
        self.append(Item::Conflict {
            raw: raw.into_inner(),
            conflict,
        });
        true
    }

    fn has_conflict(&self, conflict: &Conflict) -> bool {
        self.items
            .iter()
            .any(|item| matches!(item, Item::Conflict { conflict: c, .. } if c.same_as(conflict)))
    }

    /// Gives `key` the entry `from` has, bytes and all (its encoding kept), in place or, when
    /// absent, appended together with the comment lines directly above it in `from` that this
    /// file does not already have.
    fn take_entry(&mut self, from: &EnvFile, key: &str) {
        let Some(j) = from.find_entry(key) else {
            return;
        };
        let Item::Entry { raw, value, .. } = &from.items[j] else {
            return;
        };
        let body = strip_ending(raw);
        if let Some(i) = self.find_entry(key) {
            let ending = ending_of(self.items[i].raw());
            self.items[i] = Item::Entry {
                raw: concat(&[body, ending]),
                key: key.to_owned(),
                value: value.clone(),
            };
            return;
        }
        let mut top = j;
        while top > 0 && (from.items[top - 1].is_comment() || is_directive(&from.items[top - 1])) {
            top -= 1;
        }
        for item in &from.items[top..j] {
            if !item.is_comment() {
                continue;
            }
            let comment = strip_ending(item.raw());
            let known = self
                .items
                .iter()
                .any(|mine| mine.is_comment() && strip_ending(mine.raw()) == comment);
            if !known {
                let raw = concat(&[comment, self.newline()]);
                self.append(Item::Trivia(raw));
            }
        }
        let raw = concat(&[body, self.newline()]);
        self.append(Item::Entry {
            raw,
            key: key.to_owned(),
            value: value.clone(),
        });
    }
}

fn is_directive(item: &Item) -> bool {
    matches!(item, Item::Stale { .. } | Item::Conflict { .. })
}

/// Three-way merge of concurrent edits of the secrets file, per key.
///
/// `base` is the common ancestor, `ours` the local version, `theirs` the upstream one (already
/// pushed, so it wins every real conflict). The result starts from `theirs`' layout (its
/// comments, blank lines and order) and, for each key, with `b`, `o`, `t` its value in each
/// version (absent counts as a value):
///
/// | case                                   | result                                             |
/// |----------------------------------------|----------------------------------------------------|
/// | `o == b` or `o == t`                   | `t` (nothing to do)                                |
/// | `t == b` (changed only on our side)    | `o`: added, changed in place, or removed           |
/// | both changed, both have a value        | `t`, and `o` kept as a `conflict` record           |
/// | we deleted, they changed               | `t`, no record (a change beats a deletion)         |
/// | we changed, they deleted               | `o`, re-added at the end (a change beats a deletion) |
///
/// Our value is taken with its own bytes (its encoding kept). A key we add (or re-add) is
/// appended with the comment lines directly above it in `ours` that `theirs` lacks; other
/// comment edits are ours only when `theirs` is unchanged from `base`.
///
/// Directives are unioned three-way: a `stale` (one per key) or `conflict` record present on
/// either side stays unless one side removed it since `base` (a `set`, an `unset`, a
/// `clear_conflicts`); records we added are added (stale ones above their key's entry).
/// New conflict records name `ours_name` as `from=` and `at` as `at=`, each with any
/// whitespace or control character replaced by `_` (an empty one becomes `unknown`), and are
/// not repeated when an identical record exists.
///
/// When one side equals `base` (byte for byte) the result is the other side exactly.
pub fn merge3(
    base: &EnvFile,
    ours: &EnvFile,
    theirs: &EnvFile,
    ours_name: &str,
    at: &str,
) -> EnvFile {
    let (base_text, ours_text, theirs_text) = (base.to_text(), ours.to_text(), theirs.to_text());
    if ours_text == base_text || ours_text == theirs_text {
        return theirs.clone();
    }
    if theirs_text == base_text {
        return ours.clone();
    }

    let mut out = theirs.clone();
    let mut lost: Vec<(&str, &str)> = Vec::new();
    let keys: Vec<&str> = theirs
        .keys()
        .chain(ours.keys().filter(|key| !theirs.contains_key(key)))
        .collect();
    for key in keys {
        let (b, o, t) = (base.get(key), ours.get(key), theirs.get(key));
        if o == b || o == t {
            continue;
        }
        if t == b || t.is_none() {
            match o {
                Some(_) => out.take_entry(ours, key),
                None => {
                    out.remove_entry(key);
                }
            }
        } else if let Some(value) = o {
            lost.push((key, value));
        }
    }

    // Stale directives, one per key.
    let stale_keys = |file: &EnvFile| -> HashSet<String> {
        file.stale().into_iter().map(|stale| stale.key).collect()
    };
    let (base_stale, ours_stale, theirs_stale) =
        (stale_keys(base), stale_keys(ours), stale_keys(theirs));
    for key in &theirs_stale {
        if base_stale.contains(key) && !ours_stale.contains(key) {
            out.remove_stale(key);
        }
    }
    for item in &ours.items {
        if let Item::Stale { raw, stale } = item
            && !base_stale.contains(&stale.key)
            && !out.has_stale(&stale.key)
        {
            out.insert_stale(&stale.key, strip_ending(raw));
        }
    }

    // Conflict records.
    let (base_conflicts, ours_conflicts) = (base.conflicts(), ours.conflicts());
    out.items.retain(|item| match item {
        // Dropped only when ours cleared it since base.
        Item::Conflict { conflict, .. } => {
            !base_conflicts.iter().any(|c| c.same_as(conflict))
                || ours_conflicts.iter().any(|c| c.same_as(conflict))
        }
        _ => true,
    });
    for conflict in &ours_conflicts {
        if !base_conflicts.iter().any(|c| c.same_as(conflict)) {
            out.push_conflict(&conflict.key, &conflict.from, &conflict.at, &conflict.value);
        }
    }
    let (from, at) = (sanitize_word(ours_name), sanitize_word(at));
    for (key, value) in lost {
        out.push_conflict(key, &from, &at, value);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// One parsed item, where it ends (byte index) and the line number after it.
struct Parsed {
    item: Item,
    end: usize,
    next_line: usize,
}

enum Directive {
    Stale(Stale),
    Conflict(Conflict),
}

/// Parses the item that starts at byte `pos`, on line `line`.
fn parse_item(text: &str, pos: usize, line: usize) -> Result<Parsed, ParseError> {
    let (phys_end, next) = line_bounds(text, pos);
    let content = strip_cr(&text[pos..phys_end]);
    let one_line = |item| Parsed {
        item,
        end: next,
        next_line: line + 1,
    };

    if content.bytes().all(|b| b == b' ' || b == b'\t') {
        return Ok(one_line(Item::Trivia(secret_copy(&text[pos..next]))));
    }
    if content.starts_with('#') {
        let directive = parse_directive(content).map_err(|()| ParseError::BadDirective { line })?;
        let raw = secret_copy(&text[pos..next]);
        return Ok(one_line(match directive {
            None => Item::Trivia(raw),
            Some(Directive::Stale(stale)) => Item::Stale { raw, stale },
            Some(Directive::Conflict(conflict)) => Item::Conflict { raw, conflict },
        }));
    }

    let eq = content
        .find('=')
        .ok_or(ParseError::MissingEquals { line })?;
    let key = &content[..eq];
    if !is_valid_key(key) {
        return Err(ParseError::BadKey { line });
    }
    let open = pos + eq + 1;
    let (value, end, next_line) = match text.as_bytes().get(open) {
        Some(b'\'') if open < phys_end => {
            let inner = open + 1;
            let close = inner
                + text[inner..phys_end]
                    .find('\'')
                    .ok_or(ParseError::UnterminatedQuote { line, at: line })?;
            expect_line_end(&text[close + 1..phys_end], line, line)?;
            (secret_copy(&text[inner..close]), next, line + 1)
        }
        Some(b'"') if open < phys_end => {
            let inner = open + 1;
            let scanned = scan_double(&text[inner..]).map_err(|e| e.into_parse_error(line))?;
            let close = inner + scanned.close;
            let at = line + scanned.newlines;
            let (close_end, close_next) = line_bounds(text, close);
            expect_line_end(&text[close + 1..close_end], line, at)?;
            (decode_double(&text[inner..close]), close_next, at + 1)
        }
        _ => (secret_copy(&content[eq + 1..]), next, line + 1),
    };
    Ok(Parsed {
        item: Item::Entry {
            raw: secret_copy(&text[pos..end]),
            key: key.to_owned(),
            value,
        },
        end,
        next_line,
    })
}

/// From byte `from`: (end of the physical line without its `\n`, start of the next line).
fn line_bounds(text: &str, from: usize) -> (usize, usize) {
    match text[from..].find('\n') {
        Some(i) => (from + i, from + i + 1),
        None => (text.len(), text.len()),
    }
}

fn strip_cr(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

/// What may follow a closing quote: nothing, or the `\r` of a line ending.
fn expect_line_end(rest: &str, line: usize, at: usize) -> Result<(), ParseError> {
    if rest.is_empty() || rest == "\r" {
        Ok(())
    } else {
        Err(ParseError::TextAfterQuote { line, at })
    }
}

/// Where a double-quoted value closes (index of the closing `"` in the scanned text) and how
/// many newlines it spans.
struct Scanned {
    close: usize,
    newlines: usize,
}

enum ScanError {
    /// No closing quote; `newlines` up to the last line of the text.
    Unterminated { newlines: usize },
    /// A bad escape, `newlines` after the opening quote.
    UnknownEscape { newlines: usize },
}

impl ScanError {
    fn into_parse_error(self, line: usize) -> ParseError {
        match self {
            Self::Unterminated { newlines } => ParseError::UnterminatedQuote {
                line,
                at: line + newlines,
            },
            Self::UnknownEscape { newlines } => ParseError::UnknownEscape {
                line,
                at: line + newlines,
            },
        }
    }
}

/// Scans a double-quoted value's text, starting after the opening quote.
fn scan_double(s: &str) -> Result<Scanned, ScanError> {
    // Byte-wise is safe: every byte looked at is ASCII, never part of a multi-byte character.
    let bytes = s.as_bytes();
    let mut newlines = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => return Ok(Scanned { close: i, newlines }),
            b'\\' => match bytes.get(i + 1) {
                Some(b'n' | b'"' | b'\\') => i += 2,
                Some(_) => return Err(ScanError::UnknownEscape { newlines }),
                None => break,
            },
            b'\n' => {
                newlines += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    // The last line is the one before a final newline.
    let newlines = newlines - usize::from(newlines > 0 && s.ends_with('\n'));
    Err(ScanError::Unterminated { newlines })
}

/// Decodes the text between double quotes, already validated by [`scan_double`]. A `\r`
/// before a real newline belongs to the CRLF line ending, not to the value.
fn decode_double(span: &str) -> Zeroizing<String> {
    // The decoded value is never longer than its text: no reallocation, nothing left unwiped.
    let mut out = Zeroizing::new(String::with_capacity(span.len()));
    let mut chars = span.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some(escaped) => out.push(escaped),
                None => {}
            },
            '\r' if chars.peek() == Some(&'\n') => {}
            c => out.push(c),
        }
    }
    out
}

/// Parses a comment line (without line ending). `Ok(None)`: a plain comment. `Err`: a
/// recognised directive that is malformed.
fn parse_directive(content: &str) -> Result<Option<Directive>, ()> {
    let Some(rest) = content.strip_prefix(DIRECTIVE_PREFIX) else {
        return Ok(None);
    };
    let (name, args) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    match name {
        "stale" => parse_stale(args)
            .map(|s| Some(Directive::Stale(s)))
            .ok_or(()),
        "conflict" => parse_conflict(args)
            .map(|c| Some(Directive::Conflict(c)))
            .ok_or(()),
        _ => Ok(None),
    }
}

/// `KEY since=YYYY-MM-DD reason=TEXT`
fn parse_stale(args: &str) -> Option<Stale> {
    let (key, rest) = next_word(args)?;
    let (since, rest) = next_word(rest)?;
    let since = since.strip_prefix("since=")?;
    let reason = rest
        .trim_start_matches([' ', '\t'])
        .strip_prefix("reason=")?;
    (is_valid_key(key) && is_valid_date(since)).then(|| Stale {
        key: key.to_owned(),
        since: since.to_owned(),
        reason: reason.to_owned(),
    })
}

/// `KEY from=WORD at=WORD value="ESCAPED"`
fn parse_conflict(args: &str) -> Option<Conflict> {
    let (key, rest) = next_word(args)?;
    let (from, rest) = next_word(rest)?;
    let from = from.strip_prefix("from=")?;
    let (at, rest) = next_word(rest)?;
    let at = at.strip_prefix("at=")?;
    let quoted = rest
        .trim_start_matches([' ', '\t'])
        .strip_prefix("value=\"")?;
    let scanned = scan_double(quoted).ok()?;
    let valid = is_valid_key(key)
        && is_word(from)
        && is_word(at)
        && scanned.newlines == 0
        && quoted.len() == scanned.close + 1;
    valid.then(|| Conflict {
        key: key.to_owned(),
        from: from.to_owned(),
        at: at.to_owned(),
        value: decode_double(&quoted[..scanned.close]),
    })
}

/// Splits off the next word (separated by spaces or tabs): `(word, rest)`.
fn next_word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches([' ', '\t']);
    if s.is_empty() {
        return None;
    }
    Some(s.split_once([' ', '\t']).unwrap_or((s, "")))
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn sanitize_word(s: &str) -> String {
    let word: String = s
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if word.is_empty() {
        "unknown".to_owned()
    } else {
        word
    }
}

/// `YYYY-MM-DD` with a month 01–12 and a day 01–31.
fn is_valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) {
        return false;
    }
    if !digits(5..7) || !digits(8..10) {
        return false;
    }
    let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
    (1..=12).contains(&two(5)) && (1..=31).contains(&two(8))
}

// ---------------------------------------------------------------------------------------------
// Printing

/// The line ending that closes `raw`: `\r\n`, `\n`, a lone final `\r`, or nothing.
fn ending_of(raw: &str) -> &'static str {
    if raw.ends_with("\r\n") {
        "\r\n"
    } else if raw.ends_with('\n') {
        "\n"
    } else if raw.ends_with('\r') {
        "\r"
    } else {
        ""
    }
}

fn strip_ending(raw: &str) -> &str {
    &raw[..raw.len() - ending_of(raw).len()]
}

/// Writes `value` in the simplest encoding that reads back exactly.
fn push_encoded(out: &mut SecretBuf, value: &str) {
    let edge_space = value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace);
    if !value.contains('\n') && !edge_space && !value.starts_with(['\'', '"']) {
        out.push_str(value);
    } else if !value.contains(['\'', '\n']) {
        out.push_str("'");
        out.push_str(value);
        out.push_str("'");
    } else {
        out.push_str("\"");
        push_escaped(out, value);
        out.push_str("\"");
    }
}

/// Writes `value` escaped for double quotes, on one line.
fn push_escaped(out: &mut SecretBuf, value: &str) {
    let mut rest = value;
    while let Some(i) = rest.find(['\n', '"', '\\']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'\n' => "\\n",
            b'"' => "\\\"",
            _ => "\\\\",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

fn push_json_string(out: &mut SecretBuf, s: &str) {
    serde_json::to_writer(out, s).expect("serialising a string into memory cannot fail");
}

/// A copy of `s` in a wiped-on-drop buffer of exactly its size.
fn secret_copy(s: &str) -> Zeroizing<String> {
    Zeroizing::new(s.to_owned())
}

/// The concatenation of `parts` in a wiped-on-drop buffer of exactly its size.
fn concat(parts: &[&str]) -> Zeroizing<String> {
    let mut out = SecretBuf::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out.into_inner()
}

/// A growable plaintext buffer whose every allocation is wiped. `String::push_str` would
/// reallocate and free the old allocation unwiped; this copies into a new zeroizing
/// allocation and wipes the old one instead.
struct SecretBuf(Zeroizing<String>);

impl SecretBuf {
    fn with_capacity(capacity: usize) -> Self {
        Self(Zeroizing::new(String::with_capacity(capacity)))
    }

    fn push_str(&mut self, s: &str) {
        let needed = self.0.len() + s.len();
        if needed > self.0.capacity() {
            let capacity = needed.max(2 * self.0.capacity()).max(64);
            let mut bigger = Zeroizing::new(String::with_capacity(capacity));
            bigger.push_str(&self.0);
            self.0 = bigger; // the old allocation is wiped as it drops
        }
        self.0.push_str(s);
    }

    fn into_inner(self) -> Zeroizing<String> {
        self.0
    }
}

impl io::Write for &mut SecretBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // serde_json writes whole characters and ASCII escapes, so every chunk is UTF-8.
        let s =
            std::str::from_utf8(buf).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        self.push_str(s);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write as _;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn file(text: &str) -> EnvFile {
        match parse(text) {
            Ok(file) => file,
            Err(e) => panic!("{e}"),
        }
    }

    fn text(file: &EnvFile) -> String {
        file.to_text().as_str().to_owned()
    }

    fn round_trips(text: &str) {
        assert_eq!(file(text).to_text().as_str(), text);
    }

    // ---- value forms

    #[test]
    fn a_raw_value_is_everything_after_the_equals_sign_including_hash_and_spaces() {
        let f =
            file("URL=https://x.example/#frag  # not a comment\nEQ=a=b=c\nEMPTY=\nSP= padded \n");
        assert_eq!(
            f.get("URL"),
            Some("https://x.example/#frag  # not a comment")
        );
        assert_eq!(f.get("EQ"), Some("a=b=c"));
        assert_eq!(f.get("EMPTY"), Some(""));
        assert_eq!(f.get("SP"), Some(" padded "));
        assert_eq!(f.get("MISSING"), None);
    }

    #[test]
    fn a_raw_value_keeps_backslashes_and_inner_quotes_literally() {
        let f = file("A=C:\\new\\tab\nB=say \"hi\" it's\n");
        assert_eq!(f.get("A"), Some("C:\\new\\tab"));
        assert_eq!(f.get("B"), Some("say \"hi\" it's"));
    }

    #[test]
    fn a_single_quoted_value_is_literal() {
        let f = file("A='  \\n \"x\" # $HOME \\ '\nB=''\n");
        assert_eq!(f.get("A"), Some("  \\n \"x\" # $HOME \\ "));
        assert_eq!(f.get("B"), Some(""));
    }

    #[test]
    fn a_double_quoted_value_understands_three_escapes() {
        let f = file("A=\"line1\\nsaid \\\"hi\\\" \\\\ end\"\nB=\"\"\nC=\"'single' # hash\"\n");
        assert_eq!(f.get("A"), Some("line1\nsaid \"hi\" \\ end"));
        assert_eq!(f.get("B"), Some(""));
        assert_eq!(f.get("C"), Some("'single' # hash"));
    }

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n";

    #[test]
    fn a_pem_key_spans_several_lines_in_double_quotes() {
        let source = format!("# deploy key\nTLS_KEY=\"{PEM}\"\nAFTER=1\n");
        let f = file(&source);
        assert_eq!(f.get("TLS_KEY"), Some(PEM));
        assert_eq!(f.get("AFTER"), Some("1"));
        assert_eq!(text(&f), source);
        assert_eq!(f.keys().collect::<Vec<_>>(), ["TLS_KEY", "AFTER"]);
    }

    #[test]
    fn a_crlf_file_round_trips_and_its_values_hold_no_carriage_return() {
        let source = "# c\r\nA=raw\r\nB='single'\r\nC=\"dq\"\r\n\r\nPEM=\"l1\r\nl2\r\n\"\r\n";
        let f = file(source);
        assert_eq!(f.get("A"), Some("raw"));
        assert_eq!(f.get("B"), Some("single"));
        assert_eq!(f.get("C"), Some("dq"));
        assert_eq!(f.get("PEM"), Some("l1\nl2\n"));
        assert_eq!(text(&f), source);
    }

    #[test]
    fn a_crlf_file_gets_crlf_lines_when_edited() {
        let mut f = file("A=1\r\nB=2\r\n");
        f.set("A", "one").unwrap();
        f.set("C", "3").unwrap();
        assert_eq!(text(&f), "A=one\r\nB=2\r\nC=3\r\n");
    }

    #[test]
    fn a_carriage_return_inside_a_line_is_part_of_the_value() {
        let f = file("A=a\rb\nB='x\r'\nC=\"y\r\"\r\n");
        assert_eq!(f.get("A"), Some("a\rb"));
        assert_eq!(f.get("B"), Some("x\r"));
        assert_eq!(f.get("C"), Some("y\r"));
    }

    #[test]
    fn a_file_without_final_newline_round_trips() {
        for source in [
            "A=1",
            "A=1\nB='2'",
            "A=1\n# end",
            "A=\"x\ny\"",
            "A=1\r\nB=2\r",
            "",
        ] {
            round_trips(source);
        }
        assert_eq!(file("A=1\nB=2\r").get("B"), Some("2"));
    }

    #[test]
    fn appending_to_a_file_without_final_newline_terminates_its_last_line_first() {
        let mut f = file("A=1\n# last");
        f.set("B", "2").unwrap();
        assert_eq!(text(&f), "A=1\n# last\nB=2\n");
        let mut f = file("A=1\r\nB=2");
        f.set("C", "3").unwrap();
        assert_eq!(text(&f), "A=1\r\nB=2\r\nC=3\r\n");
    }

    #[test]
    fn blank_lines_may_hold_spaces_and_tabs() {
        let source = "A=1\n   \n\t\nB=2\n";
        let f = file(source);
        assert_eq!(f.len(), 2);
        assert_eq!(text(&f), source);
    }

    // ---- editing

    #[test]
    fn comments_and_blank_lines_stay_in_place_through_set_and_unset() {
        let source = "# header\n\nA=1\n# about B\nB=2\n\n# footer\n";
        let mut f = file(source);
        assert_eq!(f.set("B", "two"), Ok(Changed::Replaced));
        assert_eq!(text(&f), "# header\n\nA=1\n# about B\nB=two\n\n# footer\n");
        assert_eq!(f.set("C", "3"), Ok(Changed::Added));
        assert_eq!(
            text(&f),
            "# header\n\nA=1\n# about B\nB=two\n\n# footer\nC=3\n"
        );
        assert!(f.unset("A"));
        assert!(!f.unset("A"));
        assert_eq!(text(&f), "# header\n\n# about B\nB=two\n\n# footer\nC=3\n");
    }

    #[test]
    fn set_rewrites_in_place_and_keeps_the_line_ending() {
        let mut f = file("A=1\r\nB=2\nC=3");
        f.set("A", "x").unwrap();
        f.set("B", "y").unwrap();
        f.set("C", "z").unwrap();
        assert_eq!(text(&f), "A=x\r\nB=y\nC=z");
    }

    #[test]
    fn set_picks_the_simplest_encoding_that_reads_back() {
        let cases = [
            ("plain", "K=plain\n"),
            ("", "K=\n"),
            ("a # b = c", "K=a # b = c\n"),
            ("in\"side", "K=in\"side\n"),
            ("it's", "K=it's\n"),
            ("back\\slash", "K=back\\slash\n"),
            (" lead", "K=' lead'\n"),
            ("trail\t", "K='trail\t'\n"),
            ("\"quoted\"", "K='\"quoted\"'\n"),
            ("'quoted'", "K=\"'quoted'\"\n"),
            (" it's", "K=\" it's\"\n"),
            ("a\nb", "K=\"a\\nb\"\n"),
            ("x\\n\"\n", "K=\"x\\\\n\\\"\\n\"\n"),
            ("cr\r", "K='cr\r'\n"),
        ];
        for (value, expected) in cases {
            let mut f = EnvFile::new();
            f.set("K", value).unwrap();
            assert_eq!(text(&f), expected, "value {value:?}");
            assert_eq!(file(expected).get("K"), Some(value));
        }
    }

    #[test]
    fn set_tells_whether_the_value_changed_and_leaves_an_unchanged_entry_alone() {
        let source = "A='1'\n";
        let mut f = file(source);
        assert_eq!(f.set("A", "1"), Ok(Changed::Unchanged));
        assert!(!Changed::Unchanged.is_changed());
        let nothing_changed = [!Changed::Unchanged, !Changed::Added, !Changed::Replaced];
        assert_eq!(nothing_changed, [true, false, false]);
        assert_eq!(text(&f), source, "the original encoding is kept");
        assert_eq!(f.set("A", "2"), Ok(Changed::Replaced));
        assert!(Changed::Replaced.is_changed());
        assert_eq!(f.set("B", ""), Ok(Changed::Added));
        assert!(Changed::Added.is_changed());
    }

    #[test]
    fn set_rejects_an_invalid_key_and_changes_nothing() {
        let mut f = file("A=1\n");
        for key in ["", "1A", "A-B", "A B", "export A", "É", "A=", "A\n"] {
            assert_eq!(f.set(key, "v"), Err(KeyError), "key {key:?}");
        }
        assert_eq!(text(&f), "A=1\n");
        for key in ["_", "a", "A_1", "_9z"] {
            assert!(is_valid_key(key));
        }
    }

    #[test]
    fn unset_removes_every_line_of_a_multi_line_entry_and_nothing_else() {
        let mut f = file(&format!("A=1\n# key\nKEY=\"{PEM}\"\n\nB=2"));
        assert!(f.unset("KEY"));
        assert_eq!(text(&f), "A=1\n# key\n\nB=2");
        assert!(f.unset("B"));
        assert_eq!(text(&f), "A=1\n# key\n\n");
    }

    #[test]
    fn keys_and_entries_come_in_file_order() {
        let f = file("Z=26\n# x\nA=1\nM='13'\n");
        assert_eq!(f.keys().collect::<Vec<_>>(), ["Z", "A", "M"]);
        assert_eq!(
            f.entries().collect::<Vec<_>>(),
            [("Z", "26"), ("A", "1"), ("M", "13")]
        );
        assert_eq!(f.len(), 3);
        assert!(!f.is_empty());
        assert!(file("# only a comment\n").is_empty());
        assert!(f.contains_key("A") && !f.contains_key("B"));
    }

    // ---- exports

    #[test]
    fn export_env_writes_single_quoted_sh_assignments() {
        let mut f = file("# c\nA=plain\nB=\"it's\\nhere\"\n");
        f.add_conflict("A", "laptop", "2024-01-01T00:00:00Z", "lost")
            .unwrap();
        assert_eq!(f.export_env().as_str(), "A='plain'\nB='it'\\''s\nhere'\n");
        assert_eq!(EnvFile::new().export_env().as_str(), "");
    }

    #[test]
    fn export_json_is_an_object_in_file_order_without_conflicts() {
        let mut f = file("Z=\"a\\\"b\\nc\"\nA=\\x\n");
        f.add_conflict("A", "laptop", "t", "lost").unwrap();
        let json = f.export_json();
        assert_eq!(json.as_str(), "{\"Z\":\"a\\\"b\\nc\",\"A\":\"\\\\x\"}\n");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["Z"], "a\"b\nc");
        assert_eq!(EnvFile::new().export_json().as_str(), "{}\n");
    }

    static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// Sets `FKT_0..` to `values`, exports, sources the export with the real `/bin/sh` under
    /// `set -a`, and returns what sh holds in each variable.
    fn read_back_with_sh(values: &[String]) -> Vec<String> {
        let mut f = EnvFile::new();
        for (i, value) in values.iter().enumerate() {
            f.set(&format!("FKT_{i}"), value).unwrap();
        }
        let path = std::env::temp_dir().join(format!(
            "fleetkey-envfile-test-{}-{}.sh",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut out| out.write_all(f.export_env().as_bytes()))
            .unwrap();
        let vars: String = (0..values.len())
            .map(|i| format!(" \"$FKT_{i}\""))
            .collect();
        let output = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("set -a; . \"$1\"; printf '%s\\0'{vars}"))
            .arg("sh")
            .arg(&path)
            .env_clear()
            .output();
        std::fs::remove_file(&path).unwrap();
        let output = output.unwrap();
        assert!(output.status.success(), "sh failed: {output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let mut read: Vec<String> = stdout.split('\0').map(str::to_owned).collect();
        assert_eq!(read.pop().as_deref(), Some(""), "output ends with NUL");
        read
    }

    #[test]
    fn export_env_is_read_back_exactly_by_sh() {
        let values: Vec<String> = [
            "",
            "plain",
            "it's",
            "'",
            "''''",
            "a\nb",
            "\n",
            "trailing newlines\n\n",
            "  lead and trail  ",
            "$HOME `id` $(id) ${X:-y} \\ \" ! * ?",
            "é 漢字 🔑",
            "\r\n\t",
            PEM,
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(read_back_with_sh(&values), values);
    }

    // ---- errors

    #[test]
    fn each_malformed_line_gives_its_error_and_line_number() {
        let cases: &[(&str, ParseError)] = &[
            ("A=1\nexport B=2\n", ParseError::BadKey { line: 2 }),
            ("A =1\n", ParseError::BadKey { line: 1 }),
            ("1A=x\n", ParseError::BadKey { line: 1 }),
            ("=x\n", ParseError::BadKey { line: 1 }),
            ("A=1\n B=2\n", ParseError::BadKey { line: 2 }),
            (
                "A=1\n\n  # indented comment = x\n",
                ParseError::BadKey { line: 3 },
            ),
            ("A-B=1\n", ParseError::BadKey { line: 1 }),
            ("A=1\nB\n", ParseError::MissingEquals { line: 2 }),
            ("A=1\n  # indented\n", ParseError::MissingEquals { line: 2 }),
            (
                "A=1\n# c\nB=2\nA=3\n",
                ParseError::DuplicateKey {
                    key: "A".into(),
                    line: 4,
                    first: 1,
                },
            ),
            (
                "A=\"multi\nline\"\nA=x\n",
                ParseError::DuplicateKey {
                    key: "A".into(),
                    line: 3,
                    first: 1,
                },
            ),
            (
                "A=1\nB='open\n'\n",
                ParseError::UnterminatedQuote { line: 2, at: 2 },
            ),
            (
                "A='open\r\n",
                ParseError::UnterminatedQuote { line: 1, at: 1 },
            ),
            (
                "A=1\nB=\"open\nx\ny\n",
                ParseError::UnterminatedQuote { line: 2, at: 4 },
            ),
            (
                "B=\"open\nx",
                ParseError::UnterminatedQuote { line: 1, at: 2 },
            ),
            (
                "B=\"open\\",
                ParseError::UnterminatedQuote { line: 1, at: 1 },
            ),
            ("A=\"\\t\"\n", ParseError::UnknownEscape { line: 1, at: 1 }),
            (
                "A=1\nB=\"ok\nok\\nstill\n\\x\"\n",
                ParseError::UnknownEscape { line: 2, at: 4 },
            ),
            (
                "A=\"line\\\nnext\"\n",
                ParseError::UnknownEscape { line: 1, at: 1 },
            ),
            ("A='x' \n", ParseError::TextAfterQuote { line: 1, at: 1 }),
            ("A='x'y\n", ParseError::TextAfterQuote { line: 1, at: 1 }),
            ("A=\"x\"#c\n", ParseError::TextAfterQuote { line: 1, at: 1 }),
            (
                "A=\"x\ny\" \r\n",
                ParseError::TextAfterQuote { line: 1, at: 2 },
            ),
            (
                "A=\"x\"\r\r\n",
                ParseError::TextAfterQuote { line: 1, at: 1 },
            ),
            (
                "A=1\n# fleetkey:stale\n",
                ParseError::BadDirective { line: 2 },
            ),
            (
                "# fleetkey:stale A since=2024-13-01 reason=x\n",
                ParseError::BadDirective { line: 1 },
            ),
            (
                "# fleetkey:stale A since=2024-01-01\n",
                ParseError::BadDirective { line: 1 },
            ),
            (
                "# fleetkey:stale 1A since=2024-01-01 reason=\n",
                ParseError::BadDirective { line: 1 },
            ),
            (
                "\n\n# fleetkey:conflict A from=m at=t value=\"x\" extra\n",
                ParseError::BadDirective { line: 3 },
            ),
            (
                "# fleetkey:conflict A from=m at=t value=\"x\n",
                ParseError::BadDirective { line: 1 },
            ),
            (
                "# fleetkey:conflict A from=m value=\"x\"\n",
                ParseError::BadDirective { line: 1 },
            ),
            (
                "# fleetkey:conflict A from= at=t value=\"x\"\n",
                ParseError::BadDirective { line: 1 },
            ),
            (
                "# fleetkey:conflict A from=m at=t value=\"\\t\"\n",
                ParseError::BadDirective { line: 1 },
            ),
        ];
        for (source, expected) in cases {
            assert_eq!(parse(source).err().as_ref(), Some(expected), "{source:?}");
            assert_eq!(expected.line(), parse(source).unwrap_err().line());
        }
    }

    #[test]
    fn error_messages_never_contain_the_files_content() {
        const CANARY: &str = "CANARY_s3cr3t_VALUE";
        let sources = [
            format!("{CANARY}\n"),
            format!("export {CANARY}=1\n"),
            format!("{CANARY} = x\n"),
            format!("9{CANARY}={CANARY}\n"),
            format!("A='{CANARY}\n"),
            format!("A=\"{CANARY}\n{CANARY}\n"),
            format!("A=\"{CANARY}\\q{CANARY}\"\n"),
            format!("A='{CANARY}'{CANARY}\n"),
            format!("A=\"{CANARY}\"{CANARY}\n"),
            format!("A={CANARY}\nA={CANARY}\n"),
            format!("# fleetkey:stale {CANARY} since=never reason={CANARY}\n"),
            format!("# fleetkey:conflict A from=m at=t value=\"{CANARY}\n"),
            format!("# fleetkey:conflict {CANARY}! from=m at=t value=\"{CANARY}\"\n"),
        ];
        for source in &sources {
            let err = parse(source).unwrap_err();
            for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
                assert!(!shown.contains("CANARY"), "{shown}");
                assert!(!shown.contains("s3cr3t"), "{shown}");
            }
        }
    }

    #[test]
    fn debug_output_shows_key_names_only() {
        let mut f = file("# CANARY comment\nAPI_TOKEN=CANARY_value\nPEM=\"CANARY\nCANARY\"\n");
        f.add_conflict("API_TOKEN", "laptop", "t", "CANARY_lost")
            .unwrap();
        f.mark_stale("PEM", "2024-01-01", "lost").unwrap();
        let shown = format!("{f:?} {f:#?} {:?}", f.conflicts());
        assert!(
            shown.contains("API_TOKEN") && shown.contains("PEM"),
            "{shown}"
        );
        assert!(!shown.contains("CANARY"), "{shown}");
    }

    // ---- directives

    #[test]
    fn mark_stale_puts_one_directive_directly_above_the_entry() {
        let mut f = file("# about A\nA=1\nB=2\n");
        assert_eq!(
            f.mark_stale("A", "2024-05-01", "revoked laptop (compromised)"),
            Ok(true)
        );
        assert_eq!(
            text(&f),
            "# about A\n# fleetkey:stale A since=2024-05-01 reason=revoked laptop (compromised)\nA=1\nB=2\n"
        );
        assert_eq!(f.mark_stale("A", "2024-06-01", "again"), Ok(false));
        assert_eq!(
            f.stale(),
            [Stale {
                key: "A".into(),
                since: "2024-05-01".into(),
                reason: "revoked laptop (compromised)".into(),
            }]
        );
        assert_eq!(file(&text(&f)).stale(), f.stale(), "it parses back");
    }

    #[test]
    fn mark_stale_of_an_absent_key_goes_at_the_end() {
        let mut f = file("A=1");
        f.mark_stale("GONE", "2024-05-01", "").unwrap();
        assert_eq!(
            text(&f),
            "A=1\n# fleetkey:stale GONE since=2024-05-01 reason=\n"
        );
        assert_eq!(f.stale()[0].reason, "");
    }

    #[test]
    fn mark_stale_validates_its_fields() {
        let mut f = EnvFile::new();
        assert_eq!(
            f.mark_stale("1A", "2024-01-01", "r"),
            Err(DirectiveError::Key(KeyError))
        );
        for date in [
            "2024-1-01",
            "24-01-01",
            "2024-00-10",
            "2024-01-32",
            "2024/01/01",
            "today",
        ] {
            assert_eq!(
                f.mark_stale("A", date, "r"),
                Err(DirectiveError::Date),
                "{date}"
            );
        }
        assert_eq!(
            f.mark_stale("A", "2024-01-01", "two\nlines"),
            Err(DirectiveError::Reason)
        );
        assert!(f.to_text().is_empty());
    }

    #[test]
    fn a_new_value_clears_the_stale_mark_and_the_same_value_does_not() {
        let mut f = file("A=1\nB=2\n");
        f.mark_stale("A", "2024-05-01", "x").unwrap();
        f.mark_stale("B", "2024-05-01", "x").unwrap();
        assert_eq!(f.set("A", "1"), Ok(Changed::Unchanged));
        assert_eq!(f.stale().len(), 2);
        f.set("A", "new").unwrap();
        assert_eq!(
            f.stale().iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
            ["B"]
        );
        f.unset("B");
        assert!(f.stale().is_empty());
        assert_eq!(text(&f), "A=new\n");
    }

    #[test]
    fn setting_an_absent_stale_key_clears_its_mark() {
        let mut f = EnvFile::new();
        f.mark_stale("A", "2024-05-01", "x").unwrap();
        f.set("A", "fresh").unwrap();
        assert_eq!(text(&f), "A=fresh\n");
    }

    #[test]
    fn an_unknown_fleetkey_directive_is_a_plain_comment() {
        let source =
            "# fleetkey:future stuff\n# fleetkey:stalewart x\n# fleetkey:\n#fleetkey:stale\nA=1\n";
        let f = file(source);
        assert!(f.stale().is_empty() && f.conflicts().is_empty());
        assert_eq!(text(&f), source);
    }

    #[test]
    fn conflict_records_round_trip_and_are_never_exported() {
        let mut f = file("A=kept\n");
        let lost = "multi\nline \"quoted\" \\ value";
        assert_eq!(
            f.add_conflict("A", "laptop", "2024-05-01T10:00:00Z", lost),
            Ok(true)
        );
        assert_eq!(
            f.add_conflict("A", "laptop", "2024-05-01T10:00:00Z", lost),
            Ok(false)
        );
        f.add_conflict("B", "desktop", "t2", "other").unwrap();
        assert_eq!(
            text(&f),
            "A=kept\n\
             # fleetkey:conflict A from=laptop at=2024-05-01T10:00:00Z value=\"multi\\nline \\\"quoted\\\" \\\\ value\"\n\
             # fleetkey:conflict B from=desktop at=t2 value=\"other\"\n"
        );
        let back = file(&text(&f));
        let conflicts = back.conflicts();
        assert_eq!(conflicts.len(), 2);
        assert_eq!(
            (
                conflicts[0].key.as_str(),
                conflicts[0].from.as_str(),
                conflicts[0].at.as_str()
            ),
            ("A", "laptop", "2024-05-01T10:00:00Z")
        );
        assert_eq!(conflicts[0].value.as_str(), lost);
        assert_eq!(back.export_env().as_str(), "A='kept'\n");
        assert_eq!(back.keys().collect::<Vec<_>>(), ["A"]);

        assert_eq!(f.clear_conflicts("A"), 1);
        assert_eq!(f.clear_conflicts("A"), 0);
        assert_eq!(f.conflicts()[0].key, "B");
    }

    #[test]
    fn add_conflict_validates_its_fields() {
        let mut f = EnvFile::new();
        assert_eq!(f.add_conflict("A B", "m", "t", "v"), Err(KeyError.into()));
        assert_eq!(
            f.add_conflict("A", "my laptop", "t", "v"),
            Err(DirectiveError::Word("from"))
        );
        assert_eq!(
            f.add_conflict("A", "m", "", "v"),
            Err(DirectiveError::Word("at"))
        );
        assert!(f.to_text().is_empty());
    }

    // ---- merge3

    fn merged(base: &str, ours: &str, theirs: &str) -> EnvFile {
        merge3(
            &file(base),
            &file(ours),
            &file(theirs),
            "laptop",
            "2024-05-01T10:00:00Z",
        )
    }

    #[test]
    fn merge_when_one_side_is_unchanged_gives_the_other_side_exactly() {
        let base = "A=1\n";
        let changed = "# new comment\nA='2'\nB=3";
        assert_eq!(text(&merged(base, base, changed)), changed);
        assert_eq!(text(&merged(base, changed, base)), changed);
        assert_eq!(text(&merged(base, changed, changed)), changed);
    }

    #[test]
    fn merge_takes_changes_made_only_on_our_side_into_their_layout() {
        let m = merged(
            "A=1\nB=1\nC=1\n",
            "A=2\nC=1\nNEW='ours'\n",
            "# upstream comment\nA=1\nB=1\nC=9\nUP=1\n",
        );
        assert_eq!(text(&m), "# upstream comment\nA=2\nC=9\nUP=1\nNEW='ours'\n");
        assert!(m.conflicts().is_empty());
    }

    #[test]
    fn merge_keeps_upstreams_value_and_records_ours_when_both_changed_a_key() {
        let m = merged("A=1\nB=1\n", "A=ours\nB=1\n", "A=theirs\nB=2\n");
        assert_eq!(m.get("A"), Some("theirs"));
        assert_eq!(m.get("B"), Some("2"));
        let conflicts = m.conflicts();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].key, "A");
        assert_eq!(conflicts[0].from, "laptop");
        assert_eq!(conflicts[0].at, "2024-05-01T10:00:00Z");
        assert_eq!(conflicts[0].value.as_str(), "ours");
        assert_eq!(m.export_env().as_str(), "A='theirs'\nB='2'\n");
    }

    #[test]
    fn merge_of_a_key_both_sides_added_differently_is_a_conflict() {
        let m = merged("", "X=1\nA=ours\n", "A=theirs\n");
        assert_eq!(m.get("A"), Some("theirs"));
        assert_eq!(m.get("X"), Some("1"));
        assert_eq!(m.conflicts()[0].value.as_str(), "ours");
    }

    #[test]
    fn merge_lets_a_change_beat_a_deletion_on_either_side() {
        let m = merged("A=1\nB=1\nZ=0\n", "B=1\nZ=1\n", "A=2\nB=1\nZ=0\n");
        assert_eq!(m.get("A"), Some("2"), "we deleted, they changed: theirs");
        assert!(m.conflicts().is_empty());

        let m = merged("A=1\nB=1\nZ=0\n", "A=2\nB=1\nZ=0\n", "B=1\nZ=1\n");
        assert_eq!(
            text(&m),
            "B=1\nZ=1\nA=2\n",
            "we changed, they deleted: ours re-added"
        );
        assert!(m.conflicts().is_empty());
    }

    #[test]
    fn merge_keeps_our_value_bytes_and_the_comment_above_a_key_we_added() {
        let m = merged(
            "A=1\n",
            "A=1\n\n# the deploy key\nKEY=\"l1\nl2\"\n",
            "A=1\nB=2",
        );
        assert_eq!(text(&m), "A=1\nB=2\n# the deploy key\nKEY=\"l1\nl2\"\n");
        assert_eq!(m.get("KEY"), Some("l1\nl2"));
    }

    #[test]
    fn merge_unions_stale_marks_three_way() {
        let base = "# fleetkey:stale A since=2024-01-01 reason=old\nA=1\nB=1\nC=1\n";
        // Upstream marks C (revoke elsewhere); we fix A; nobody touches the rest.
        let ours = "A=2\nB=1\nC=1\nD=1\n";
        let theirs = "# fleetkey:stale A since=2024-01-01 reason=old\nA=1\nB=1\n# fleetkey:stale C since=2024-05-01 reason=new\nC=1\n";
        let m = merged(base, ours, theirs);
        assert_eq!(m.get("A"), Some("2"));
        assert_eq!(
            m.stale().iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
            ["C"]
        );
        // We mark B; upstream changes an unrelated key.
        let ours = "# fleetkey:stale A since=2024-01-01 reason=old\nA=1\n# fleetkey:stale B since=2024-05-02 reason=ours\nB=1\nC=1\n";
        let theirs = "# fleetkey:stale A since=2024-01-01 reason=old\nA=1\nB=1\nC=2\n";
        let m = merged(base, ours, theirs);
        assert_eq!(
            text(&m),
            "# fleetkey:stale A since=2024-01-01 reason=old\nA=1\n# fleetkey:stale B since=2024-05-02 reason=ours\nB=1\nC=2\n"
        );
    }

    #[test]
    fn merge_unions_conflict_records_three_way() {
        let base = "A=1\n# fleetkey:conflict A from=x at=t0 value=\"old\"\n";
        let ours = "A=1\n# fleetkey:conflict A from=y at=t1 value=\"mine\"\nB=1\n";
        let theirs = "A=1\n# fleetkey:conflict A from=x at=t0 value=\"old\"\n# fleetkey:conflict A from=z at=t2 value=\"up\"\n";
        let m = merged(base, ours, theirs);
        let values: Vec<String> = m.conflicts().iter().map(|c| c.value.to_string()).collect();
        assert_eq!(values, ["up", "mine"], "ours cleared `old`, both added one");
        assert_eq!(m.get("B"), Some("1"));
    }

    #[test]
    fn merge_sanitises_the_machine_name_and_time_of_new_records() {
        let m = merge3(
            &file("A=1\n"),
            &file("A=2\n"),
            &file("A=3\n"),
            "my laptop",
            "",
        );
        let c = &m.conflicts()[0];
        assert_eq!((c.from.as_str(), c.at.as_str()), ("my_laptop", "unknown"));
        assert_eq!(file(&text(&m)).conflicts().len(), 1);
    }

    #[test]
    fn merging_the_same_edit_twice_records_the_conflict_once() {
        let (base, ours) = (file("A=1\n"), file("A=2\nB=1\n"));
        let once = merge3(&base, &ours, &file("A=3\n"), "laptop", "t");
        let twice = merge3(&base, &ours, &once, "laptop", "t");
        assert_eq!(twice.conflicts().len(), 1);
        assert_eq!(twice.get("A"), Some("3"));
    }

    // ---- properties

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    fn tricky_char() -> impl Strategy<Value = char> {
        prop_oneof![
            6 => any::<char>(),
            1 => Just('\''),
            1 => Just('"'),
            1 => Just('\\'),
            1 => Just('\n'),
            1 => Just('\r'),
            1 => Just(' '),
            1 => Just('\t'),
            1 => Just('#'),
            1 => Just('='),
            1 => Just('$'),
        ]
    }

    fn any_value() -> impl Strategy<Value = String> {
        prop::collection::vec(tricky_char(), 0..24).prop_map(String::from_iter)
    }

    /// One generated line (or multi-line entry) of a secrets file.
    #[derive(Debug, Clone)]
    enum Line {
        Blank(String),
        Comment(String),
        Stale,
        Conflict(String),
        Raw(String),
        Single(String),
        Double(String, bool),
    }

    fn any_line() -> impl Strategy<Value = Line> {
        let blank = prop::collection::vec(prop_oneof![Just(' '), Just('\t')], 0..3)
            .prop_map(|s| Line::Blank(String::from_iter(s)));
        prop_oneof![
            blank,
            any_value().prop_map(|s| Line::Comment(s.replace('\n', " "))),
            Just(Line::Stale),
            any_value().prop_map(Line::Conflict),
            any_value().prop_map(|s| {
                let mut s = s.replace('\n', " ");
                if s.starts_with(['\'', '"']) {
                    s.insert(0, 'x');
                }
                if s.ends_with('\r') {
                    s.push('x');
                }
                Line::Raw(s)
            }),
            any_value().prop_map(|s| Line::Single(s.replace(['\'', '\n'], "x"))),
            (any_value(), any::<bool>()).prop_map(|(s, real)| Line::Double(s, real)),
        ]
    }

    fn escape(value: &str) -> String {
        let mut out = SecretBuf::with_capacity(0);
        push_escaped(&mut out, value);
        out.into_inner().to_string()
    }

    /// A generated file: its text, its entries and its conflict values.
    #[derive(Debug, Clone)]
    struct Generated {
        text: String,
        entries: Vec<(String, String)>,
        conflicts: Vec<String>,
    }

    fn any_file() -> impl Strategy<Value = Generated> {
        let lines = prop::collection::vec((any_line(), any::<bool>()), 0..10);
        (lines, any::<bool>()).prop_map(|(lines, final_newline)| {
            let mut g = Generated {
                text: String::new(),
                entries: Vec::new(),
                conflicts: Vec::new(),
            };
            let mut last_ending = "";
            for (i, (line, crlf)) in lines.into_iter().enumerate() {
                let ending = if crlf { "\r\n" } else { "\n" };
                let key = format!("K{i}");
                let (body, value) = match line {
                    Line::Blank(s) => (s, None),
                    Line::Comment(s) if s.starts_with(" fleetkey:") => (format!("#x{s}"), None),
                    Line::Comment(s) => (format!("#{s}"), None),
                    Line::Stale => (format!("# fleetkey:stale S{i} since=2024-02-29 reason=r {i}"), None),
                    Line::Conflict(v) => {
                        let body = format!(
                            "# fleetkey:conflict C{i} from=m{i} at=2024-01-01T00:00:00Z value=\"{}\"",
                            escape(&v)
                        );
                        g.conflicts.push(v);
                        (body, None)
                    }
                    Line::Raw(v) => (format!("{key}={v}"), Some(v)),
                    Line::Single(v) => (format!("{key}='{v}'"), Some(v)),
                    Line::Double(v, real_newlines) => {
                        let mut body = format!("{key}=\"");
                        let mut previous = None;
                        for c in v.chars() {
                            match c {
                                '\n' if real_newlines && previous != Some('\r') => {
                                    body.push_str(ending)
                                }
                                '\n' => body.push_str("\\n"),
                                '"' => body.push_str("\\\""),
                                '\\' => body.push_str("\\\\"),
                                c => body.push(c),
                            }
                            previous = Some(c);
                        }
                        body.push('"');
                        (body, Some(v))
                    }
                };
                if let Some(value) = value {
                    g.entries.push((key, value));
                }
                g.text.push_str(&body);
                g.text.push_str(ending);
                last_ending = ending;
            }
            if !final_newline {
                g.text.truncate(g.text.len() - last_ending.len());
            }
            g
        })
    }

    fn reparse(text: &str) -> Result<EnvFile, TestCaseError> {
        parse(text).map_err(|e| TestCaseError::fail(format!("{e}: {text:?}")))
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn generated_files_round_trip_byte_for_byte(g in any_file()) {
            let f = reparse(&g.text)?;
            let printed = f.to_text();
            prop_assert_eq!(printed.as_str(), g.text.as_str());
            let entries: Vec<(&str, &str)> = g.entries.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            prop_assert_eq!(f.entries().collect::<Vec<_>>(), entries);
            let conflicts: Vec<String> = f.conflicts().iter().map(|c| c.value.to_string()).collect();
            prop_assert_eq!(conflicts, g.conflicts);
        }

        #[test]
        fn set_then_get_returns_any_value_and_the_file_still_round_trips(
            g in any_file(),
            pick in 0usize..12,
            value in any_value(),
        ) {
            let key = format!("K{pick}");
            let mut f = reparse(&g.text)?;
            let others: Vec<(String, String)> =
                g.entries.iter().filter(|(k, _)| *k != key).cloned().collect();
            let existed = f.contains_key(&key);
            let changed = f.set(&key, &value).unwrap();
            prop_assert_eq!(changed == Changed::Added, !existed);
            prop_assert_eq!(f.get(&key), Some(value.as_str()));

            let printed = f.to_text();
            let back = reparse(&printed)?;
            let reprinted = back.to_text();
            prop_assert_eq!(reprinted.as_str(), printed.as_str());
            prop_assert_eq!(back.get(&key), Some(value.as_str()));
            for (k, v) in &others {
                prop_assert_eq!(back.get(k), Some(v.as_str()));
            }
            prop_assert_eq!(back.conflicts().len(), g.conflicts.len());

            prop_assert!(f.unset(&key));
            prop_assert_eq!(f.get(&key), None);
            prop_assert_eq!(reparse(&f.to_text())?.len(), others.len());
        }

        #[test]
        fn merge3_follows_the_per_key_rules(
            states in prop::collection::vec(
                (0usize..4, 0usize..4, 0usize..4), 1..6),
        ) {
            const VALUES: [Option<&str>; 4] = [None, Some("1"), Some("2"), Some("x y")];
            let (mut base, mut ours, mut theirs) = (EnvFile::new(), EnvFile::new(), EnvFile::new());
            for (i, &(b, o, t)) in states.iter().enumerate() {
                let key = format!("K{i}");
                for (file, state) in [(&mut base, b), (&mut ours, o), (&mut theirs, t)] {
                    if let Some(value) = VALUES[state] {
                        file.set(&key, value).unwrap();
                    }
                }
            }
            let m = merge3(&base, &ours, &theirs, "laptop", "t");
            let printed = m.to_text();
            let back = reparse(&printed)?;
            let reprinted = back.to_text();
            prop_assert_eq!(reprinted.as_str(), printed.as_str());
            let mut expected_conflicts = Vec::new();
            for (i, &(b, o, t)) in states.iter().enumerate() {
                let key = format!("K{i}");
                let (b, o, t) = (VALUES[b], VALUES[o], VALUES[t]);
                let expected = if o == b || o == t {
                    t
                } else if t == b || t.is_none() {
                    o
                } else {
                    if let Some(o) = o {
                        expected_conflicts.push((key.clone(), o.to_owned()));
                    }
                    t
                };
                prop_assert_eq!(back.get(&key), expected, "key {} b={:?} o={:?} t={:?}", key, b, o, t);
            }
            let conflicts: Vec<(String, String)> =
                back.conflicts().iter().map(|c| (c.key.clone(), c.value.to_string())).collect();
            prop_assert_eq!(conflicts, expected_conflicts);
        }
    }

    proptest! {
        #![proptest_config(config(16))]

        #[test]
        fn export_env_read_back_by_sh_gives_the_exact_values(
            values in prop::collection::vec(any_value(), 1..6),
        ) {
            let values: Vec<String> = values.into_iter().map(|v| v.replace('\0', "0")).collect();
            prop_assert_eq!(read_back_with_sh(&values), values);
        }
    }
}

//! Owns the parsed file and its edit API: [`EnvFile`], the file's items (entries, comments,
//! blank lines, directives) each with its exact text, and the edits that get, set and unset
//! keys. Must never: show a value or a line in `Debug`.

use std::fmt;

use zeroize::Zeroizing;

use super::directive::{Conflict, Stale};
use super::encode::{ending_of, push_encoded};
use super::error::KeyError;
use super::parse::is_valid_key;
use super::secret::{SecretBuf, concat, secret_copy};

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

/// One line of the file, or several for a multi-line value. `raw` is the exact text, line
/// ending included, so that printing is concatenation. No `Debug`: it would print values.
#[derive(Clone)]
pub(super) enum Item {
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
    pub(super) fn raw(&self) -> &str {
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

    pub(super) fn is_comment(&self) -> bool {
        matches!(self, Self::Trivia(raw) if raw.starts_with('#'))
    }
}

/// A parsed secrets file: entries, comments, blank lines and directives, in file order.
///
/// `Debug` shows key names only.
#[derive(Clone, Default)]
pub struct EnvFile {
    pub(super) items: Vec<Item>,
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

impl EnvFile {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
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
    #[cfg(test)]
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

    pub(super) fn find_entry(&self, key: &str) -> Option<usize> {
        self.items
            .iter()
            .position(|item| matches!(item, Item::Entry { key: k, .. } if k == key))
    }

    /// The file's line ending for new lines: the ending of its first terminated line, else `\n`.
    pub(super) fn newline(&self) -> &'static str {
        self.items
            .iter()
            .map(|item| ending_of(item.raw()))
            .find(|ending| ending.ends_with('\n'))
            .unwrap_or("\n")
    }

    /// Appends a line, first terminating the last line if the file does not end with `\n`.
    pub(super) fn append(&mut self, item: Item) {
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

    pub(super) fn remove_entry(&mut self, key: &str) -> bool {
        match self.find_entry(key) {
            Some(i) => {
                self.items.remove(i);
                true
            }
            None => false,
        }
    }
}

//! Owns fleetkey's directives, the `# fleetkey:stale` and `# fleetkey:conflict` comment lines:
//! [`Stale`] and [`Conflict`], reading them, and the edits that mark, list and clear them.
//! Must never: show a conflict's value in `Debug`, or write a field that would break its line.

use std::fmt;

use zeroize::Zeroizing;

use super::encode::{push_escaped, strip_ending};
use super::error::{DirectiveError, KeyError};
use super::model::{EnvFile, Item};
use super::parse::{decode_double, is_valid_key, scan_double};
use super::secret::{SecretBuf, concat, secret_copy};

/// Every comment line that starts with this is a fleetkey directive.
const DIRECTIVE_PREFIX: &str = "# fleetkey:";

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
    pub(super) fn same_as(&self, other: &Conflict) -> bool {
        self.key == other.key
            && self.from == other.from
            && self.at == other.at
            && *self.value == *other.value
    }
}

pub(super) enum Directive {
    Stale(Stale),
    Conflict(Conflict),
}

impl EnvFile {
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
    #[cfg(test)]
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

    pub(super) fn has_stale(&self, key: &str) -> bool {
        self.items
            .iter()
            .any(|item| matches!(item, Item::Stale { stale, .. } if stale.key == key))
    }

    pub(super) fn remove_stale(&mut self, key: &str) {
        self.items
            .retain(|item| !matches!(item, Item::Stale { stale, .. } if stale.key == key));
    }

    /// Inserts a stale directive (`body` without line ending) above `key`'s entry, or at the end.
    pub(super) fn insert_stale(&mut self, key: &str, body: &str) {
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
    pub(super) fn push_conflict(&mut self, key: &str, from: &str, at: &str, value: &str) -> bool {
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
}

pub(super) fn is_directive(item: &Item) -> bool {
    matches!(item, Item::Stale { .. } | Item::Conflict { .. })
}

/// Parses a comment line (without line ending). `Ok(None)`: a plain comment. `Err`: a
/// recognised directive that is malformed.
pub(super) fn parse_directive(content: &str) -> Result<Option<Directive>, ()> {
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

pub(super) fn sanitize_word(s: &str) -> String {
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

//! Owns fleetkey's directives, the `# fleetkey:stale` and `# fleetkey:aside` comment lines (and
//! the older `# fleetkey:conflict`, still read): [`Stale`] and [`Conflict`], reading them, and
//! the edits that mark, list and clear them. Must never: show a conflict's value in `Debug`, or
//! write a field that would break its line.
//!
//! A value kept aside by a merge is written as
//!
//! ```text
//! # fleetkey:aside KEY merged_by=M merged_at=T set_by=A set_at=T1 in_force_by=B in_force_at=T2 value="…"
//! ```
//!
//! naming each of the two values by the machine that set it and when it was set there (`-`
//! where that is unknown), and the merge that kept it aside. The older form,
//! `# fleetkey:conflict KEY from=M at=T value="…"`, named only the merge; it still parses, with
//! both setters unknown. A new directive name, not new fields, so that an older fleetkey reads a
//! file holding the new records (as plain comments) instead of refusing it.

use std::fmt;

use zeroize::Zeroizing;

use super::encode::{push_escaped, strip_ending};
use super::error::{DirectiveError, KeyError};
use super::model::{EnvFile, Item};
use super::parse::{decode_double, is_valid_key, scan_double};
#[cfg(test)]
use super::secret::secret_copy;
use super::secret::{SecretBuf, concat};

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

/// Who set a value, and when it was set on that machine, as far as is known. Holds no secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setter {
    /// The machine that set it (a commit's `Fleetkey-Machine`); `None`: unknown.
    pub machine: Option<String>,
    /// When it was set there (RFC 3339, the time of that machine's commit); `None`: unknown.
    pub at: Option<String>,
}

/// The setters of the two values of a conflict: the one kept aside and the one in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    /// Who set the value kept aside.
    pub aside: Setter,
    /// Who set the value that stayed in force.
    pub in_force: Setter,
}

/// A value kept aside by a merge (`# fleetkey:aside …`, or the older `# fleetkey:conflict …`):
/// a concurrent edit of KEY that lost, kept inside the encrypted file so no value is ever lost.
///
/// `Debug` shows everything but the value.
#[derive(Clone)]
pub struct Conflict {
    /// The key both sides changed.
    pub key: String,
    /// The machine whose merge kept the value aside (the side that lost).
    pub from: String,
    /// When that merge happened (one word, e.g. an RFC 3339 timestamp).
    pub at: String,
    /// Who set the two values, and when; both unknown in a record of the older form.
    pub origins: Origins,
    /// The losing value.
    pub value: Zeroizing<String>,
}

impl fmt::Debug for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conflict")
            .field("key", &self.key)
            .field("from", &self.from)
            .field("at", &self.at)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

impl Conflict {
    pub(super) fn same_as(&self, other: &Conflict) -> bool {
        self.key == other.key
            && self.from == other.from
            && self.at == other.at
            && self.origins == other.origins
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

    /// Records a concurrent edit of `key` that lost: appends a `# fleetkey:aside KEY …` record
    /// (value escaped onto one line, setters unknown) at the end of the file. An identical
    /// record is not added twice. Returns whether it was added.
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
        Ok(self.push_conflict(&Conflict {
            key: key.to_owned(),
            from: from.to_owned(),
            at: at.to_owned(),
            origins: Origins::default(),
            value: secret_copy(value),
        }))
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

    /// Appends a conflict record (in the `aside` form) unless an identical one exists; its
    /// key and merge fields already valid words, its setters made valid here.
    pub(super) fn push_conflict(&mut self, conflict: &Conflict) -> bool {
        let word = |w: &Option<String>| {
            w.as_deref()
                .map_or_else(|| UNKNOWN.to_owned(), sanitize_word)
        };
        let origins = &conflict.origins;
        let conflict = Conflict {
            origins: Origins {
                aside: Setter {
                    machine: parse_unknown(&word(&origins.aside.machine)),
                    at: parse_unknown(&word(&origins.aside.at)),
                },
                in_force: Setter {
                    machine: parse_unknown(&word(&origins.in_force.machine)),
                    at: parse_unknown(&word(&origins.in_force.at)),
                },
            },
            ..conflict.clone()
        };
        if self.has_conflict(&conflict) {
            return false;
        }
        let newline = self.newline();
        let o = &conflict.origins;
        let fields = [
            (" merged_by=", conflict.from.clone()),
            (" merged_at=", conflict.at.clone()),
            (" set_by=", word(&o.aside.machine)),
            (" set_at=", word(&o.aside.at)),
            (" in_force_by=", word(&o.in_force.machine)),
            (" in_force_at=", word(&o.in_force.at)),
        ];
        let mut raw = SecretBuf::with_capacity(
            DIRECTIVE_PREFIX.len()
                + 128
                + conflict.key.len()
                + fields.iter().map(|(_, v)| v.len()).sum::<usize>()
                + 2 * conflict.value.len(),
        );
        raw.push_str(DIRECTIVE_PREFIX);
        raw.push_str("aside ");
        raw.push_str(&conflict.key);
        for (name, value) in &fields {
            raw.push_str(name);
            raw.push_str(value);
        }
        raw.push_str(" value=\"");
        push_escaped(&mut raw, &conflict.value);
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
        "aside" => parse_aside(args)
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

/// The older form, `KEY from=WORD at=WORD value="ESCAPED"`: the merge only, setters unknown.
fn parse_conflict(args: &str) -> Option<Conflict> {
    let (key, rest) = next_word(args)?;
    let ([from, at], rest) = named_words(rest, ["from=", "at="])?;
    let value = quoted_value(rest)?;
    is_valid_key(key).then(|| Conflict {
        key: key.to_owned(),
        from: from.to_owned(),
        at: at.to_owned(),
        origins: Origins::default(),
        value,
    })
}

/// `KEY merged_by=W merged_at=W set_by=W set_at=W in_force_by=W in_force_at=W value="ESCAPED"`,
/// each setter word `-` when unknown.
fn parse_aside(args: &str) -> Option<Conflict> {
    let (key, rest) = next_word(args)?;
    let ([from, at, set_by, set_at, in_force_by, in_force_at], rest) = named_words(
        rest,
        [
            "merged_by=",
            "merged_at=",
            "set_by=",
            "set_at=",
            "in_force_by=",
            "in_force_at=",
        ],
    )?;
    let value = quoted_value(rest)?;
    is_valid_key(key).then(|| Conflict {
        key: key.to_owned(),
        from: from.to_owned(),
        at: at.to_owned(),
        origins: Origins {
            aside: Setter {
                machine: parse_unknown(set_by),
                at: parse_unknown(set_at),
            },
            in_force: Setter {
                machine: parse_unknown(in_force_by),
                at: parse_unknown(in_force_at),
            },
        },
        value,
    })
}

/// How an unknown setter field is written.
const UNKNOWN: &str = "-";

fn parse_unknown(word: &str) -> Option<String> {
    (word != UNKNOWN).then(|| word.to_owned())
}

/// The next `N` words, each `NAME=WORD` with the names in this order: the words, and the rest.
fn named_words<'a, const N: usize>(
    mut rest: &'a str,
    names: [&str; N],
) -> Option<([&'a str; N], &'a str)> {
    let mut words = [""; N];
    for (slot, name) in words.iter_mut().zip(names) {
        let (word, after) = next_word(rest)?;
        *slot = word.strip_prefix(name).filter(|w| is_word(w))?;
        rest = after;
    }
    Some((words, rest))
}

/// ` value="ESCAPED"` ending the line: the decoded value.
fn quoted_value(rest: &str) -> Option<Zeroizing<String>> {
    let quoted = rest
        .trim_start_matches([' ', '\t'])
        .strip_prefix("value=\"")?;
    let scanned = scan_double(quoted).ok()?;
    (scanned.newlines == 0 && quoted.len() == scanned.close + 1)
        .then(|| decode_double(&quoted[..scanned.close]))
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

//! Owns the three-way merge of concurrent edits of the secrets file, [`merge3`]: per key, the
//! upstream side wins every real conflict and the losing value is kept as a `conflict` record.
//! Must never: lose a value.

use std::collections::HashSet;

use super::directive::{Conflict, Origins, is_directive, sanitize_word};
use super::encode::{ending_of, strip_ending};
use super::model::{EnvFile, Item};
use super::secret::concat;
use super::secret::secret_copy;

impl EnvFile {
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
/// New conflict records name `ours_name` as the merging machine and `at` as the merge's time,
/// each with any whitespace or control character replaced by `_` (an empty one becomes
/// `unknown`), and `origins(KEY)` as who set the value kept aside and the one in force (the
/// caller reads that from history); they are not repeated when an identical record exists.
///
/// When one side equals `base` (byte for byte) the result is the other side exactly.
pub fn merge3(
    base: &EnvFile,
    ours: &EnvFile,
    theirs: &EnvFile,
    ours_name: &str,
    at: &str,
    origins: &dyn Fn(&str) -> Origins,
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
            out.push_conflict(conflict);
        }
    }
    let (from, at) = (sanitize_word(ours_name), sanitize_word(at));
    for (key, value) in lost {
        out.push_conflict(&Conflict {
            key: key.to_owned(),
            from: from.clone(),
            at: at.clone(),
            origins: origins(key),
            value: secret_copy(value),
        });
    }
    out
}

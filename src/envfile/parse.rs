//! Owns the grammar (see the `envfile` module docs): a file's text read into items, key names,
//! and the double-quoted values that entries and conflict records share. Must never: keep a
//! piece of the text outside a wiped buffer, or put one in an error.

use std::collections::HashMap;

use zeroize::Zeroizing;

use super::directive::{Directive, parse_directive};
use super::error::ParseError;
use super::model::{EnvFile, Item};
use super::secret::secret_copy;

/// Whether `key` is a valid key name, `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses the text of a decrypted secrets file. See [`EnvFile::parse`].
pub fn parse(text: &str) -> Result<EnvFile, ParseError> {
    EnvFile::parse(text)
}

impl EnvFile {
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
}

/// One parsed item, where it ends (byte index) and the line number after it.
struct Parsed {
    item: Item,
    end: usize,
    next_line: usize,
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
                    .ok_or(ParseError::UnterminatedSingleQuote { line })?;
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
pub(super) struct Scanned {
    pub(super) close: usize,
    pub(super) newlines: usize,
}

pub(super) enum ScanError {
    /// No closing quote; `newlines` up to the last line of the text.
    Unterminated { newlines: usize },
    /// A bad escape, `newlines` after the opening quote.
    UnknownEscape { newlines: usize },
}

impl ScanError {
    fn into_parse_error(self, line: usize) -> ParseError {
        match self {
            Self::Unterminated { newlines } => ParseError::UnterminatedDoubleQuote {
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
pub(super) fn scan_double(s: &str) -> Result<Scanned, ScanError> {
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
pub(super) fn decode_double(span: &str) -> Zeroizing<String> {
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

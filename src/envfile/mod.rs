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
//! # fleetkey:aside LITERAL merged_by=laptop merged_at=2024-05-01T10:00:00Z set_by=laptop set_at=2024-05-01T09:58:12Z in_force_by=server in_force_at=2024-05-01T09:59:40Z value="the losing value"
//! # fleetkey:conflict LITERAL from=laptop at=2024-05-01T10:00:00Z value="the older form"
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
//!   the encrypted file, invisible to other readers of the format. `stale`, `aside` and the
//!   older `conflict` are parsed (see [`Stale`] and [`Conflict`]); a malformed one of those is
//!   an error, any other `# fleetkey:` line is a plain comment.
//! - [`EnvFile::to_text`] of a parsed file is the parsed text, byte for byte, always.
//!
//! # What this module must never do
//!
//! It owns the text format only: it never touches the disk, a terminal, a child process, git or
//! a log. Plaintext (values, raw lines, printed text) lives only in [`Zeroizing`] buffers that
//! are wiped on drop, including every intermediate buffer: growth copies into a fresh zeroizing
//! allocation instead of letting `String` reallocate and free an unwiped one. Nothing here has a
//! `Debug` or `Display` that shows a value or a line: `Debug` lists key names, and a
//! `ParseError` (in `error.rs`) carries line numbers and, for a duplicate, the (valid) key name only.
//!
//! [`Zeroizing`]: zeroize::Zeroizing
//!
//! # Parts
//! `model.rs` holds [`EnvFile`] and its edits, `parse.rs` the grammar, `directive.rs` the
//! `stale` and `aside`/`conflict` marks, `merge.rs` the three-way [`merge3`], `encode.rs` how values and
//! exports are written, `secret.rs` the zeroizing buffer every plaintext goes through, and
//! `error.rs` what can go wrong.

mod directive;
mod encode;
mod error;
mod merge;
mod model;
mod parse;
mod secret;

#[cfg(test)]
mod tests;

pub use directive::{Conflict, Origins, Setter};
pub use merge::merge3;
pub use model::EnvFile;
pub use parse::parse;

//! Owns how text is written: a value in the simplest encoding that reads back exactly, the
//! escapes of double quotes, line endings, and the exports ([`EnvFile::export_env`] for
//! dotenv readers, [`EnvFile::export_docker`], [`EnvFile::export_sh`],
//! [`EnvFile::export_fish`], [`EnvFile::export_json`]). Must never: write plaintext into a
//! buffer that is not wiped, or write an export that its reader would read back differently.

use zeroize::Zeroizing;

use super::error::{ExportTarget, Unexportable, Unwritable};
use super::model::EnvFile;
use super::secret::SecretBuf;

impl EnvFile {
    /// Every entry as a dotenv line `KEY='value'` (or `KEY="value"`, or `KEY=value`), one per
    /// line, in file order, in a form that python-dotenv (`dotenv_values`, `load_dotenv`) and
    /// Node's `dotenv` (`parse`, `config`) both read back byte for byte; see [`dotenv_form`]
    /// for the rules. Directives are not exported. A value that no form gives back exactly to
    /// both is refused: the error names every such key (never a value) and nothing is written.
    pub fn export_env(&self) -> Result<Zeroizing<String>, Unexportable> {
        let mut out = SecretBuf::with_capacity(64);
        let mut refused = Vec::new();
        for (key, value) in self.entries() {
            match dotenv_form(value) {
                Ok(form) => {
                    out.push_str(key);
                    out.push_str("=");
                    push_dotenv(&mut out, value, form);
                    out.push_str("\n");
                }
                Err(why) => refused.push((key.to_string(), why)),
            }
        }
        if refused.is_empty() {
            Ok(out.into_inner())
        } else {
            Err(Unexportable::new(ExportTarget::Dotenv, refused))
        }
    }

    /// Every entry as `KEY=value`, raw, one per line, for `docker run --env-file`, which takes
    /// everything after the first `=` literally (no quotes, no escapes) and reads one line per
    /// variable. A value with a line break (LF or CR: docker's line reader also drops a CR that
    /// ends a line) is refused, naming the key, and nothing is written.
    pub fn export_docker(&self) -> Result<Zeroizing<String>, Unexportable> {
        let refused: Vec<(String, Unwritable)> = self
            .entries()
            .filter(|(_, value)| value.contains(['\n', '\r']))
            .map(|(key, _)| (key.to_string(), Unwritable::LineBreak))
            .collect();
        if !refused.is_empty() {
            return Err(Unexportable::new(ExportTarget::Docker, refused));
        }
        let mut out = SecretBuf::with_capacity(64);
        for (key, value) in self.entries() {
            out.push_str(key);
            out.push_str("=");
            out.push_str(value);
            out.push_str("\n");
        }
        Ok(out.into_inner())
    }

    /// Every entry as `export KEY='value'` (a `'` written `'\''`), one per line, in file
    /// order: `eval "$(fleetkey secrets export --format sh)"` in bash, zsh or dash (or `.` of a
    /// file holding it) sets and exports every variable exactly, so child processes see them,
    /// multi-line values included. (A value holding NUL cannot live in an environment.)
    pub fn export_sh(&self) -> Zeroizing<String> {
        let mut out = SecretBuf::with_capacity(64);
        for (key, value) in self.entries() {
            out.push_str("export ");
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

    /// Every entry as fish's `set -gx KEY 'value'` (inside fish's single quotes only `\\` and
    /// `\'` are escapes), one per line: `fleetkey secrets export --format fish | source`.
    pub fn export_fish(&self) -> Zeroizing<String> {
        let mut out = SecretBuf::with_capacity(64);
        for (key, value) in self.entries() {
            out.push_str("set -gx ");
            out.push_str(key);
            out.push_str(" '");
            let mut start = 0;
            for (i, c) in value.char_indices() {
                if c == '\\' || c == '\'' {
                    out.push_str(&value[start..i]);
                    out.push_str(if c == '\\' { "\\\\" } else { "\\'" });
                    start = i + 1;
                }
            }
            out.push_str(&value[start..]);
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
}

/// The line ending that closes `raw`: `\r\n`, `\n`, a lone final `\r`, or nothing.
pub(super) fn ending_of(raw: &str) -> &'static str {
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

pub(super) fn strip_ending(raw: &str) -> &str {
    &raw[..raw.len() - ending_of(raw).len()]
}

/// Writes `value` in the simplest encoding that reads back exactly.
pub(super) fn push_encoded(out: &mut SecretBuf, value: &str) {
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
pub(super) fn push_escaped(out: &mut SecretBuf, value: &str) {
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

/// How [`EnvFile::export_env`] quotes one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DotenvForm {
    /// `'value'`, as it is.
    Single,
    /// `"value"` with a line feed written `\n` and a carriage return `\r`.
    Double,
    /// `value`, bare.
    Bare,
}

/// The first form, of single quotes, double quotes and bare, in which python-dotenv 1.2 and
/// Node's dotenv 18 (either of its parsers) both read `value` back exactly; or why none does.
///
/// What the two readers do, and so the rules:
/// - python-dotenv expands `${NAME}` and `${NAME:-default}` in every form and has no escape
///   for `$`: a value holding one is [`Unwritable::Expands`].
/// - Both read files with CR line endings turned into LF (Python's universal newlines, Node's
///   `\r\n?` replace), so a CR survives only as the `\r` escape of double quotes.
/// - Single quotes: Node takes the content as it is (line breaks included); python-dotenv
///   turns `\\` and `\'` into `\` and `'`. So: no `'`, no CR, and no backslash before a
///   backslash or at the end.
/// - Double quotes: Node turns `\n` and `\r` into LF and CR and nothing else; python-dotenv
///   also turns `\\ \' \" \a \b \f \t \v` into their characters. So: no `"`, and no
///   backslash before any of `\ ' " a b f n r t v`, a line break, or the end.
/// - Bare: python-dotenv cuts at ` #` and strips spaces, Node cuts at any `#` and trims (its
///   whitespace includes U+FEFF, Python's U+001C..U+001F), and Node's quote stripping treats
///   U+2028 and U+2029 as line ends. So: no `#`, no line break of either, not empty, no quote
///   or backtick first, and no whitespace or control character at either end.
pub(super) fn dotenv_form(value: &str) -> Result<DotenvForm, Unwritable> {
    if expands_in_python_dotenv(value) {
        return Err(Unwritable::Expands);
    }
    let backslash_before = |escapes: &[char]| {
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' && chars.peek().is_none_or(|next| escapes.contains(next)) {
                return true;
            }
        }
        false
    };
    if !value.contains(['\'', '\r']) && !backslash_before(&['\\', '\'']) {
        return Ok(DotenvForm::Single);
    }
    let python_escapes = [
        '\\', '\'', '"', 'a', 'b', 'f', 'n', 'r', 't', 'v', '\n', '\r',
    ];
    if !value.contains('"') && !backslash_before(&python_escapes) {
        return Ok(DotenvForm::Double);
    }
    let edge = |c: char| c.is_whitespace() || c.is_control() || c == '\u{feff}';
    let bare = !value.contains(['#', '\n', '\r', '\u{2028}', '\u{2029}'])
        && !value.starts_with(['\'', '"', '`'])
        && value.chars().next().is_some_and(|c| !edge(c))
        && value.chars().next_back().is_some_and(|c| !edge(c));
    if bare {
        Ok(DotenvForm::Bare)
    } else {
        Err(Unwritable::NoCommonQuoting)
    }
}

/// Whether python-dotenv's interpolation (its default) would replace part of `value`: a match
/// of its pattern `\$\{[^}:]*(:-[^}]*)?\}`.
fn expands_in_python_dotenv(value: &str) -> bool {
    value.match_indices("${").any(|(i, _)| {
        let rest = &value[i + 2..];
        let name_end = rest.find(['}', ':']).unwrap_or(rest.len());
        let after = &rest[name_end..];
        after.starts_with('}') || (after.starts_with(":-") && after[2..].contains('}'))
    })
}

/// Writes `value` in `form` (see [`dotenv_form`]).
fn push_dotenv(out: &mut SecretBuf, value: &str, form: DotenvForm) {
    match form {
        DotenvForm::Bare => out.push_str(value),
        DotenvForm::Single => {
            out.push_str("'");
            out.push_str(value);
            out.push_str("'");
        }
        DotenvForm::Double => {
            out.push_str("\"");
            let mut rest = value;
            while let Some(i) = rest.find(['\n', '\r']) {
                out.push_str(&rest[..i]);
                out.push_str(if rest.as_bytes()[i] == b'\n' {
                    "\\n"
                } else {
                    "\\r"
                });
                rest = &rest[i + 1..];
            }
            out.push_str(rest);
            out.push_str("\"");
        }
    }
}

//! Owns how text is written: a value in the simplest encoding that reads back exactly, the
//! escapes of double quotes, line endings, and the exports ([`EnvFile::export_env`],
//! [`EnvFile::export_json`]). Must never: write plaintext into a buffer that is not wiped.

use zeroize::Zeroizing;

use super::model::EnvFile;
use super::secret::SecretBuf;

impl EnvFile {
    /// Every entry as a POSIX sh assignment `KEY='value'` (a `'` written `'\''`), one per line,
    /// in file order, so that `set -a; . FILE` gives every variable exactly its value,
    /// multi-line values included. Directives are not exported. (A value holding NUL cannot live
    /// in an environment; sh drops or cuts it.)
    pub fn export_env(&self) -> Zeroizing<String> {
        let size = self
            .entries()
            .map(|(key, value)| key.len() + value.len() + 4 + 3 * value.matches('\'').count())
            .sum();
        posix_assignments(self, "", size)
    }

    /// Every entry as `export KEY='value'` (a `'` written `'\''`), one per line, in file
    /// order: `eval "$(fleetkey secrets export --format sh)"` in bash, zsh or dash (or `.` of a
    /// file holding it) sets and exports every variable exactly, so child processes see them.
    pub fn export_sh(&self) -> Zeroizing<String> {
        posix_assignments(self, "export ", 64)
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

/// Every entry as `PREFIXKEY='value'` (a `'` written `'\''`), one per line, in file order: what
/// a POSIX shell reads back exactly (`set -a; .` without a prefix, or with `export `).
fn posix_assignments(env: &EnvFile, prefix: &str, capacity: usize) -> Zeroizing<String> {
    let mut out = SecretBuf::with_capacity(capacity);
    for (key, value) in env.entries() {
        out.push_str(prefix);
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

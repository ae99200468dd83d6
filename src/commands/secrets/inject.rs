//! `secrets inject`: a template's `{{fleetkey.secret.KEY}}` references rendered with the
//! secrets' values; the same placeholder grammar as dotfiles ([`crate::sync::placeholder`]),
//! `{{fleetkey.lit}}` included. Any value may be rendered (a template is asked for by name,
//! unlike a dotfile's values, which are found by content).
//!
//! Must never: render a missing key as an empty value, or name a value in an error.

use zeroize::Zeroizing;

use crate::envfile::EnvFile;
use crate::sync::placeholder::{ESCAPE_TOKEN, PREFIX, SECRET_PREFIX, secret_token_at};

/// Why a template cannot be rendered.
#[derive(Debug, PartialEq, Eq)]
pub enum RenderError {
    /// References to keys the secrets do not hold, each with its first line.
    Missing(Vec<(String, usize)>),
    /// A `{{fleetkey.secret.` that is not a reference of the secrets grammar, by line.
    Malformed(usize),
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::Missing(keys) => {
                let list: Vec<String> = keys
                    .iter()
                    .map(|(k, line)| format!("{k} (line {line})"))
                    .collect();
                write!(
                    f,
                    "the template refers to secrets that do not exist: {}",
                    list.join(", ")
                )
            }
            RenderError::Malformed(line) => write!(
                f,
                "line {line} holds {SECRET_PREFIX} without a KEY of letters, digits and '_' closed by }}}}"
            ),
        }
    }
}

/// `template` with every reference replaced by its value from `env`.
pub fn render(template: &[u8], env: &EnvFile) -> Result<Zeroizing<Vec<u8>>, RenderError> {
    let mut out = Zeroizing::new(Vec::with_capacity(template.len()));
    let mut missing: Vec<(String, usize)> = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < template.len() {
        if template[i] == b'\n' {
            line += 1;
        }
        if let Some((key, len)) = secret_token_at(template, i) {
            match env.get(key) {
                Some(value) => out.extend_from_slice(value.as_bytes()),
                None if missing.iter().any(|(k, _)| k == key) => {}
                None => missing.push((key.to_string(), line)),
            }
            i += len;
        } else if template[i..].starts_with(SECRET_PREFIX.as_bytes()) {
            return Err(RenderError::Malformed(line));
        } else if template[i..].starts_with(ESCAPE_TOKEN.as_bytes()) {
            out.extend_from_slice(PREFIX.as_bytes());
            i += ESCAPE_TOKEN.len();
        } else {
            out.push(template[i]);
            i += 1;
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(RenderError::Missing(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_rendered_and_a_missing_key_is_named() {
        let env = crate::envfile::parse("TOKEN=abc123\nPEM=\"a\\nb\"\n").unwrap();
        let out = render(
            b"t={{fleetkey.secret.TOKEN}}\nk={{fleetkey.secret.PEM}}\n{{fleetkey.lit}}x}}\n",
            &env,
        )
        .unwrap();
        assert_eq!(out.as_slice(), b"t=abc123\nk=a\nb\n{{fleetkey.x}}\n");
        let err = render(
            b"a\n{{fleetkey.secret.NOPE}} {{fleetkey.secret.TOKEN}}\n{{fleetkey.secret.NOPE}} {{fleetkey.secret.ALSO}}",
            &env,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the template refers to secrets that do not exist: NOPE (line 2), ALSO (line 3)"
        );
        assert_eq!(
            render(b"\n\n{{fleetkey.secret.9x}}", &env).unwrap_err(),
            RenderError::Malformed(3)
        );
    }
}

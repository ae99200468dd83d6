//! The fleet secrets a machine substitutes in dotfiles: every value that
//! [`crate::tokens::substitutable`] accepts, by key, and the values those keys had when this
//! machine last applied (a rotated value still found in a live file is captured as the
//! placeholder, and apply then writes the new value).
//!
//! Finding a value at a position is a lookup of its first two bytes in a 64 Kib table, then a
//! comparison with the few values that start so (longest first): no copy of a value outside
//! this struct, and every copy wiped on drop.
//!
//! Must never: print a value (no `Debug` of values; [`SecretValues`] shows only a count).

use zeroize::Zeroizing;

use crate::envfile::EnvFile;

/// One substitutable value.
#[derive(Clone)]
struct Value {
    key: String,
    bytes: Zeroizing<Vec<u8>>,
    /// A value the key had before: captured as the placeholder, never written back.
    earlier: bool,
}

/// The values substituted, indexed by their first two bytes.
#[derive(Clone, Default)]
pub struct SecretValues {
    values: Vec<Value>,
    /// Bit `b0 << 8 | b1` is set when some value starts with the bytes `b0 b1`.
    starts: Vec<u64>,
    /// Indices into `values`, longest value first.
    order: Vec<usize>,
    /// An id of the secrets they came from (the ciphertext's blob id), so apply can tell when
    /// the values changed; empty when none were read.
    fingerprint: String,
    /// Keys whose value is too short or uniform to substitute, with why.
    skipped: Vec<(String, &'static str)>,
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValues({} values)", self.values.len())
    }
}

impl SecretValues {
    /// The substitutable values of `env`; `fingerprint` names the ciphertext they came from.
    pub fn new(env: &EnvFile, fingerprint: String) -> SecretValues {
        let mut out = SecretValues {
            fingerprint,
            ..SecretValues::default()
        };
        for (key, value) in env.entries() {
            match crate::tokens::substitutable(value.as_bytes()) {
                Ok(()) => out.values.push(Value {
                    key: key.to_string(),
                    bytes: Zeroizing::new(value.as_bytes().to_vec()),
                    earlier: false,
                }),
                Err(why) => out.skipped.push((key.to_string(), why)),
            }
        }
        out.index();
        out
    }

    /// No value: the secrets (the ciphertext `fingerprint`) cannot be read here.
    pub fn unreadable(fingerprint: &str) -> SecretValues {
        SecretValues {
            fingerprint: format!("{fingerprint} unreadable"),
            ..SecretValues::default()
        }
    }

    /// These values, plus the values `earlier` held for keys whose value has changed since (or
    /// that were removed): those are captured as their key's placeholder too.
    pub fn with_earlier(mut self, earlier: &EnvFile) -> SecretValues {
        for (key, value) in earlier.entries() {
            let value = value.as_bytes();
            if crate::tokens::substitutable(value).is_err()
                || self.values.iter().any(|v| v.bytes.as_slice() == value)
            {
                continue;
            }
            self.values.push(Value {
                key: key.to_string(),
                bytes: Zeroizing::new(value.to_vec()),
                earlier: true,
            });
        }
        self.index();
        self
    }

    fn index(&mut self) {
        self.starts = vec![0u64; 1024];
        for v in &self.values {
            let pair = usize::from(v.bytes[0]) << 8 | usize::from(v.bytes[1]);
            self.starts[pair / 64] |= 1 << (pair % 64);
        }
        self.order = (0..self.values.len()).collect();
        self.order
            .sort_by_key(|i| std::cmp::Reverse(self.values[*i].bytes.len()));
    }

    /// Whether there is no value to substitute.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether the fleet has secrets that this machine cannot read.
    pub fn is_unreadable(&self) -> bool {
        self.fingerprint.ends_with(" unreadable")
    }

    /// The id of the ciphertext these values came from ("" when none was read).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Why `key`'s placeholder is not filled in here.
    pub fn why_not(&self, key: &str) -> String {
        if let Some((_, why)) = self.skipped.iter().find(|(k, _)| k == key) {
            return format!("the value of {key} is not substituted ({why})");
        }
        if self.is_unreadable() {
            return "this machine cannot read the fleet secrets".into();
        }
        if self.fingerprint.is_empty() {
            return "the fleet has no secrets yet".into();
        }
        format!("there is no fleet secret {key} (set it with `fleetkey secrets set {key}`)")
    }

    /// The current value of `key`, when it is substituted.
    pub fn current(&self, key: &str) -> Option<&[u8]> {
        self.values
            .iter()
            .find(|v| !v.earlier && v.key == key)
            .map(|v| v.bytes.as_slice())
    }

    /// The key and length of the longest value (current or earlier) at `at` in `bytes`.
    pub fn value_at(&self, bytes: &[u8], at: usize) -> Option<(&str, usize)> {
        if self.values.is_empty() || at + 1 >= bytes.len() {
            return None;
        }
        let pair = usize::from(bytes[at]) << 8 | usize::from(bytes[at + 1]);
        if self.starts[pair / 64] & (1 << (pair % 64)) == 0 {
            return None;
        }
        self.order.iter().map(|i| &self.values[*i]).find_map(|v| {
            bytes[at..]
                .starts_with(&v.bytes)
                .then_some((v.key.as_str(), v.bytes.len()))
        })
    }

    /// The key of the first value (current or earlier) anywhere in `bytes`.
    pub fn find_any(&self, bytes: &[u8]) -> Option<&str> {
        (0..bytes.len()).find_map(|i| self.value_at(bytes, i).map(|(k, _)| k))
    }
}

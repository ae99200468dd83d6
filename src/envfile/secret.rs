//! Owns the wiped-on-drop plaintext buffers: [`SecretBuf`], which grows into a fresh zeroizing
//! allocation instead of letting `String` reallocate, and exact-size copies and concatenations.
//! Must never: free a plaintext allocation without wiping it.

use std::io;

use zeroize::Zeroizing;

/// A copy of `s` in a wiped-on-drop buffer of exactly its size.
pub(super) fn secret_copy(s: &str) -> Zeroizing<String> {
    Zeroizing::new(s.to_owned())
}

/// The concatenation of `parts` in a wiped-on-drop buffer of exactly its size.
pub(super) fn concat(parts: &[&str]) -> Zeroizing<String> {
    let mut out = SecretBuf::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out.into_inner()
}

/// A growable plaintext buffer whose every allocation is wiped. `String::push_str` would
/// reallocate and free the old allocation unwiped; this copies into a new zeroizing
/// allocation and wipes the old one instead.
pub(super) struct SecretBuf(Zeroizing<String>);

impl SecretBuf {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self(Zeroizing::new(String::with_capacity(capacity)))
    }

    pub(super) fn push_str(&mut self, s: &str) {
        let needed = self.0.len() + s.len();
        if needed > self.0.capacity() {
            let capacity = needed.max(2 * self.0.capacity()).max(64);
            let mut bigger = Zeroizing::new(String::with_capacity(capacity));
            bigger.push_str(&self.0);
            self.0 = bigger; // the old allocation is wiped as it drops
        }
        self.0.push_str(s);
    }

    pub(super) fn into_inner(self) -> Zeroizing<String> {
        self.0
    }
}

impl io::Write for &mut SecretBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // serde_json writes whole characters and ASCII escapes, so every chunk is UTF-8.
        let s =
            std::str::from_utf8(buf).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        self.push_str(s);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

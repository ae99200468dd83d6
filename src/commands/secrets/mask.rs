//! Masking for `secrets exec`: what the child writes to its stdout and stderr passes through a
//! [`Masker`] that replaces every secret value by [`CONCEALED`], as `op run` does.
//!
//! A stream arrives in pieces of any size, so a value may be split across two writes: the
//! masker holds back the end of a piece only while it is the start of some value (at most the
//! longest value's length), and everything else goes out at once, so a prompt or a progress
//! line is not delayed. Values with newlines are masked whole, and each of their lines of 8
//! bytes or more too (a program may print a PEM key line by line). Values shorter than
//! [`MIN_MASKED`] bytes are not masked: they would hide ordinary text.
//!
//! Must never: write a secret value, or a prefix of one that turns out to be a value.

use std::io::{Read, Write};

use zeroize::Zeroizing;

/// What stands in the output where a secret value was.
pub const CONCEALED: &[u8] = b"<concealed by fleetkey>";

/// Values shorter than this are not masked.
pub const MIN_MASKED: usize = 4;

/// A streaming replacer of secret values.
pub struct Masker {
    /// The values, longest first.
    values: Vec<Zeroizing<Vec<u8>>>,
    /// The end of the last piece, held back because it may begin a value.
    carry: Zeroizing<Vec<u8>>,
}

impl Masker {
    /// A masker of `values` (and of the lines of those that span lines).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Masker {
        let mut all: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut add = |v: &[u8]| {
            if v.len() >= MIN_MASKED && !all.iter().any(|x| x.as_slice() == v) {
                all.push(Zeroizing::new(v.to_vec()));
            }
        };
        for v in values {
            add(v);
            if v.contains(&b'\n') {
                for line in v.split(|b| *b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.len() >= 8 {
                        add(line);
                    }
                }
            }
        }
        all.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Masker {
            values: all,
            carry: Zeroizing::new(Vec::new()),
        }
    }

    /// Masks `piece` (after what was held back) into `out`, holding back a tail that may
    /// begin a value.
    pub fn push(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        let mut buf = Zeroizing::new(std::mem::take(&mut *self.carry));
        buf.extend_from_slice(piece);
        let mut i = 0;
        while i < buf.len() {
            let rest = &buf[i..];
            // A longer value may still match once more arrives: wait for it.
            if self
                .values
                .iter()
                .any(|v| v.len() > rest.len() && v.starts_with(rest))
            {
                self.carry.extend_from_slice(rest);
                return;
            }
            match self.values.iter().find(|v| rest.starts_with(v)) {
                Some(v) => {
                    out.extend_from_slice(CONCEALED);
                    i += v.len();
                }
                None => {
                    out.push(buf[i]);
                    i += 1;
                }
            }
        }
    }

    /// The end of the stream: what was held back goes out (it is no value).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let rest = Zeroizing::new(std::mem::take(&mut *self.carry));
        out.extend_from_slice(&rest);
    }
}

/// Copies `from` to `to` through `masker` until the end of `from`, flushing after each piece.
pub fn pump(mut from: impl Read, mut to: impl Write, mut masker: Masker) -> std::io::Result<()> {
    let mut buf = Zeroizing::new(vec![0u8; 64 * 1024]);
    let mut out = Zeroizing::new(Vec::with_capacity(64 * 1024));
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.clear();
        masker.push(&buf[..n], &mut out);
        to.write_all(&out)?;
        to.flush()?;
    }
    out.clear();
    masker.finish(&mut out);
    to.write_all(&out)?;
    to.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(values: &[&[u8]], pieces: &[&[u8]]) -> Vec<u8> {
        let mut m = Masker::new(values.iter().copied());
        let mut out = Vec::new();
        for p in pieces {
            m.push(p, &mut out);
        }
        m.finish(&mut out);
        out
    }

    #[test]
    fn a_value_is_masked_whole_and_across_writes() {
        let v: &[u8] = b"s3cr3t-value-42";
        let c = "<concealed by fleetkey>";
        assert_eq!(
            masked(&[v], &[b"token=s3cr3t-value-42\n"]),
            format!("token={c}\n").as_bytes()
        );
        // Split at every point, and byte by byte.
        let text = b"a s3cr3t-value-42 b s3cr3t-value-42";
        let want = format!("a {c} b {c}");
        for cut in 0..text.len() {
            assert_eq!(
                masked(&[v], &[&text[..cut], &text[cut..]]),
                want.as_bytes(),
                "{cut}"
            );
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(masked(&[v], &bytes), want.as_bytes());
    }

    #[test]
    fn a_near_miss_comes_out_as_it_was() {
        let v: &[u8] = b"s3cr3t-value-42";
        assert_eq!(
            masked(&[v], &[b"s3cr3t-val", b"ue-43 and s3cr3t"]),
            b"s3cr3t-value-43 and s3cr3t"
        );
    }

    #[test]
    fn values_with_newlines_are_masked_whole_and_by_line() {
        let pem: &[u8] =
            b"-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\r\nEEEEFFFFGGGG\n-----END KEY-----";
        let c = "<concealed by fleetkey>";
        assert_eq!(
            masked(&[pem], &[b"x ", &pem[..25], &pem[25..], b" y"]),
            format!("x {c} y").as_bytes()
        );
        // Printed line by line with other line endings: each line is still masked.
        assert_eq!(
            masked(&[pem], &[b"AAAABBBBCCCCDDDD\nEEEEFFFFGGGG\n"]),
            format!("{c}\n{c}\n").as_bytes()
        );
    }

    #[test]
    fn the_longest_value_wins_and_short_values_are_left() {
        let c = "<concealed by fleetkey>";
        assert_eq!(
            masked(
                &[b"abcdef", b"abcdefghij", b"ab"],
                &[b"abcdefghij abcdefx ab"]
            ),
            format!("{c} {c}x ab").as_bytes()
        );
    }
}

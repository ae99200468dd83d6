//! Owns base64: key data decoded as OpenSSH's `b64_pton` does, one table lookup per character,
//! and key blobs encoded for the lines fleetkey writes.

use super::tokenize::is_c_space;

const fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decode base64 into `out` as OpenSSH's `b64_pton` does: whitespace anywhere is skipped,
/// padding is required, nothing but whitespace may follow it, and the unused bits of the last
/// character must be zero.
pub(super) fn decode_base64(text: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    out.reserve(text.len() / 4 * 3 + 3);
    let (mut state, mut partial) = (0u8, 0u8);
    let mut at = 0;
    // Fast path: whole groups of four alphabet characters, three bytes each.
    while let Some(&[a, b, c, d]) = text.get(at..at + 4) {
        let [a, b, c, d] = [a, b, c, d].map(|x| BASE64[usize::from(x)]);
        if (a | b | c | d) >= 64 {
            break;
        }
        out.extend_from_slice(&[a << 2 | b >> 4, b << 4 | c >> 2, c << 6 | d]);
        at += 4;
    }
    let padded = loop {
        let Some(&c) = text.get(at) else {
            break false;
        };
        at += 1;
        let v = BASE64[usize::from(c)];
        match v {
            B64_SPACE => continue,
            B64_PAD => break true,
            B64_INVALID => return false,
            _ => {}
        }
        match state {
            0 => partial = v << 2,
            1 => {
                out.push(partial | v >> 4);
                partial = (v & 0x0f) << 4;
            }
            2 => {
                out.push(partial | v >> 2);
                partial = (v & 0x03) << 6;
            }
            _ => {
                out.push(partial | v);
                partial = 0;
            }
        }
        state = (state + 1) % 4;
    };
    if !padded {
        return state == 0;
    }
    let mut rest = text[at..].iter().copied().filter(|&c| !is_c_space(c));
    match state {
        2 if rest.next() == Some(b'=') => {}
        3 => {}
        _ => return false,
    }
    rest.next().is_none() && partial == 0
}

/// [`BASE64`] marks for whitespace (skipped), `=` and bytes outside the alphabet.
const B64_SPACE: u8 = 0xfe;
const B64_PAD: u8 = 0xfd;
const B64_INVALID: u8 = 0xff;

/// Each byte's base64 value, or one of the marks above: one lookup per character.
const BASE64: [u8; 256] = {
    let mut table = [B64_INVALID; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = match base64_value(b) {
            Some(v) => v,
            None if b == b'=' => B64_PAD,
            None if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) => B64_SPACE,
            None => B64_INVALID,
        };
        c += 1;
    }
    table
};

pub(super) fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = byte(0) << 16 | byte(1) << 8 | byte(2);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            text.push(if i <= chunk.len() {
                char::from(ALPHABET[(n >> shift & 63) as usize])
            } else {
                '='
            });
        }
    }
    text
}

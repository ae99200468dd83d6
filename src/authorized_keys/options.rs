//! Owns reading a line's options as sshd's `sshauthopt_parse` does, reduced to what the merge
//! needs: whether sshd accepts them, and whether they hold `cert-authority`. Must never: judge
//! option values (from= patterns, expiry-time, ports; several depend on the host).

use super::tokenize::is_blank;

/// What the options of a line say, as far as the merge cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Options {
    /// The options hold `cert-authority`: the line trusts certificates signed by the key, and
    /// does not let the key itself log in.
    pub(super) cert_authority: bool,
    /// sshd accepts the options (names, quoting and commas; values are not checked). When
    /// false, sshd ignores the whole line, and `cert_authority` is a best effort.
    pub(super) valid: bool,
}

impl Options {
    pub(super) const BARE: Self = Self {
        cert_authority: false,
        valid: true,
    };
}

/// Flag options in `sshauthopt_parse`'s order, and whether a `no-` prefix negates them.
const FLAG_OPTIONS: [(&str, bool); 9] = [
    ("restrict", false),
    ("cert-authority", false),
    ("port-forwarding", true),
    ("agent-forwarding", true),
    ("x11-forwarding", true),
    ("touch-required", true),
    ("verify-required", true),
    ("pty", true),
    ("user-rc", true),
];

/// Options with a quoted value, in `sshauthopt_parse`'s order. The first three may appear once.
const VALUE_OPTIONS: [&str; 8] = [
    "command",
    "principals",
    "from",
    "expiry-time",
    "environment",
    "permitopen",
    "permitlisten",
    "tunnel",
];

/// `sshauthopt_parse`, reduced to what the merge needs (see [`Options`]).
pub(super) fn parse_options(opts: &[u8]) -> Options {
    let mut out = Options::BARE;
    let mut once = [false; 3];
    let mut o = opts;
    while o.first().is_some_and(|&b| !is_blank(b)) {
        let parsed = one_option(&mut o, &mut once);
        let well_ended = matches!(o.first(), None | Some(b' ' | b'\t' | b','));
        match parsed {
            Parsed::CertAuthority if well_ended => out.cert_authority = true,
            Parsed::Other if well_ended => {}
            _ => {
                // sshd rejects the whole line here ("unknown key option", "missing end quote",
                // …). Read on only to learn whether the user also wrote cert-authority.
                out.valid = false;
                o = skip_past_option(o);
                continue;
            }
        }
        if let Some((b',', rest)) = o.split_first() {
            o = rest;
            if o.is_empty() {
                out.valid = false; // "unexpected end-of-options"
            }
        }
    }
    out
}

enum Parsed {
    CertAuthority,
    /// Another option, or none: `sshauthopt_parse` then only accepts a comma (an empty option).
    Other,
    Bad,
}

/// One step of `sshauthopt_parse`'s option chain: option names are matched as
/// case-insensitive prefixes, and the caller checks what follows.
fn one_option(o: &mut &[u8], once: &mut [bool; 3]) -> Parsed {
    for (name, negatable) in FLAG_OPTIONS {
        let mut s = *o;
        if negatable && starts_with_ignore_case(s, "no-") {
            s = &s[3..];
        }
        if starts_with_ignore_case(s, name) {
            *o = &s[name.len()..];
            return if name == "cert-authority" {
                Parsed::CertAuthority
            } else {
                Parsed::Other
            };
        }
    }
    for (i, name) in VALUE_OPTIONS.into_iter().enumerate() {
        if starts_with_ignore_case(o, name) && o.get(name.len()) == Some(&b'=') {
            *o = &o[name.len() + 1..];
            if let Some(seen) = once.get_mut(i) {
                if *seen {
                    return Parsed::Bad; // "multiple \"command\" clauses"
                }
                *seen = true;
            }
            return match dequote(o) {
                Some(rest) => {
                    *o = rest;
                    Parsed::Other
                }
                None => Parsed::Bad,
            };
        }
    }
    Parsed::Other
}

/// `opt_dequote`: past a double-quoted value (`\"` inside it is a quote). `None` when the
/// value does not start with a quote or never ends.
fn dequote(o: &[u8]) -> Option<&[u8]> {
    let mut rest = o.strip_prefix(b"\"")?;
    loop {
        match rest {
            [] => return None,
            [b'"', tail @ ..] => return Some(tail),
            [b'\\', b'"', tail @ ..] | [_, tail @ ..] => rest = tail,
        }
    }
}

/// Past the next comma outside quotes, or up to the blank that ends the options.
fn skip_past_option(o: &[u8]) -> &[u8] {
    let mut quoted = false;
    let mut rest = o;
    loop {
        match rest {
            [] => return rest,
            [b',', tail @ ..] if !quoted => return tail,
            [b, ..] if !quoted && is_blank(*b) => return rest,
            [b'\\', b'"', tail @ ..] => rest = tail,
            [b'"', tail @ ..] => {
                quoted = !quoted;
                rest = tail;
            }
            [_, tail @ ..] => rest = tail,
        }
    }
}

fn starts_with_ignore_case(s: &[u8], prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

//! The token formats: an anchor (a literal every token of the format holds at a fixed place)
//! and a check of the bytes around it, after gitleaks' `config/gitleaks.toml` and trufflehog's
//! detectors (their regular expressions, read for the formats; the checks below are the same
//! languages written by hand, so a scan is one pass of the anchor automaton plus a few bytes
//! per candidate).

use super::{Kind, entropy};

/// How a candidate found at an anchor is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `gh[pousr]_` + exactly 36 alphanumerics.
    GitHub,
    /// `github_pat_` + 82 of `[A-Za-z0-9_]`.
    GitHubPat,
    /// `glpat-` + 20 or more of `[A-Za-z0-9_.-]`.
    GitLab,
    /// `xox[abposre]-` + 10 or more of `[A-Za-z0-9-]`, digits among them.
    Slack,
    /// `AKIA`, `ASIA`, `ABIA`, `ACCA` + 16 of `[A-Z2-7]`.
    AwsId,
    /// `A3T` + one of `[A-Z0-9]` + 16 of `[A-Z2-7]`.
    AwsIdA3t,
    /// A name saying AWS secret key, `=` or `:`, then 40 of `[A-Za-z0-9/+]`.
    AwsSecret,
    /// `AIza` + exactly 35 of `[A-Za-z0-9_-]`.
    Google,
    /// `sk_live_`, `rk_live_`, `sk_test_`, `rk_test_` + 10 or more alphanumerics.
    Stripe,
    /// `sk-`: Anthropic (`sk-ant-`) or OpenAI (`sk-proj-`, `sk-svcacct-`, `sk-admin-`,
    /// or a body holding `T3BlbkFJ`).
    Sk,
    /// `npm_` + exactly 36 alphanumerics.
    Npm,
    /// `pypi-AgE` + 50 or more of `[A-Za-z0-9_-]`.
    PyPi,
    /// `-----BEGIN ` and `PRIVATE KEY` on the same line.
    PrivateKey,
    /// `eyJ…` `.` `eyJ…` `.` signature.
    Jwt,
    /// `scheme://user:password@host`.
    Url,
}

/// Every anchor and the rule its candidates go through. Several anchors share a rule.
pub const ANCHORS: &[(&str, Rule)] = &[
    ("ghp_", Rule::GitHub),
    ("gho_", Rule::GitHub),
    ("ghu_", Rule::GitHub),
    ("ghs_", Rule::GitHub),
    ("ghr_", Rule::GitHub),
    ("github_pat_", Rule::GitHubPat),
    ("glpat-", Rule::GitLab),
    ("xox", Rule::Slack),
    ("AKIA", Rule::AwsId),
    ("ASIA", Rule::AwsId),
    ("ABIA", Rule::AwsId),
    ("ACCA", Rule::AwsId),
    ("A3T", Rule::AwsIdA3t),
    ("aws_secret", Rule::AwsSecret),
    ("AWS_SECRET", Rule::AwsSecret),
    ("Aws_Secret", Rule::AwsSecret),
    ("secret_access_key", Rule::AwsSecret),
    ("SECRET_ACCESS_KEY", Rule::AwsSecret),
    ("SecretAccessKey", Rule::AwsSecret),
    ("secretAccessKey", Rule::AwsSecret),
    ("AIza", Rule::Google),
    ("sk_live_", Rule::Stripe),
    ("rk_live_", Rule::Stripe),
    ("sk_test_", Rule::Stripe),
    ("rk_test_", Rule::Stripe),
    ("sk-", Rule::Sk),
    ("npm_", Rule::Npm),
    ("pypi-AgE", Rule::PyPi),
    ("-----BEGIN ", Rule::PrivateKey),
    ("eyJ", Rule::Jwt),
    ("://", Rule::Url),
];

/// Characters that continue a token or a base64 run: a token must not start or end inside
/// one of these runs (a base64 image or an integrity hash is not a token).
fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'/')
}

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

/// Nothing token-like right before `at`.
fn starts_alone(bytes: &[u8], at: usize) -> bool {
    at == 0 || !word(bytes[at - 1])
}

/// Nothing token-like at `at`.
fn ends_alone(bytes: &[u8], at: usize) -> bool {
    bytes.get(at).is_none_or(|b| !word(*b) && *b != b'=')
}

/// The end of the run of `class` bytes from `from` (at most `max` of them, so a huge run costs
/// no more than a token).
fn run(bytes: &[u8], from: usize, max: usize, class: fn(u8) -> bool) -> usize {
    let limit = bytes.len().min(from.saturating_add(max));
    let mut i = from;
    while i < limit && class(bytes[i]) {
        i += 1;
    }
    i
}

/// A body of exactly `len` bytes of `class` at `from`, standing alone, random-looking.
fn fixed(bytes: &[u8], from: usize, len: usize, class: fn(u8) -> bool) -> Option<usize> {
    let end = run(bytes, from, len + 1, class);
    (end - from == len && ends_alone(bytes, end) && entropy(&bytes[from..end]) >= 3.0)
        .then_some(end)
}

/// A body of `min..=max` bytes of `class` at `from`, random-looking.
fn ranged(
    bytes: &[u8],
    from: usize,
    min: usize,
    max: usize,
    class: fn(u8) -> bool,
) -> Option<usize> {
    let end = run(bytes, from, max + 1, class);
    (end - from >= min && end - from <= max && entropy(&bytes[from..end]) >= 3.0).then_some(end)
}

/// Checks the candidate of `rule` whose anchor spans `start..end`; returns its kind and the
/// byte range of the value.
pub fn check(rule: Rule, bytes: &[u8], start: usize, end: usize) -> Option<(Kind, usize, usize)> {
    let alone = || starts_alone(bytes, start);
    let whole = |kind: Kind, to: usize| Some((kind, start, to));
    match rule {
        Rule::GitHub if alone() => whole(Kind::GitHub, fixed(bytes, end, 36, alnum)?),
        Rule::GitHubPat if alone() => {
            let to = ranged(bytes, end, 82, 82, |b| alnum(b) || b == b'_')?;
            ends_alone(bytes, to).then_some((Kind::GitHub, start, to))
        }
        Rule::GitLab if alone() => whole(
            Kind::GitLab,
            ranged(bytes, end, 20, 300, |b| b64url(b) || b == b'.')?,
        ),
        Rule::Slack if alone() => {
            let sub = *bytes.get(end)?;
            if !matches!(sub, b'a' | b'b' | b'p' | b'o' | b's' | b'r' | b'e')
                || bytes.get(end + 1) != Some(&b'-')
            {
                return None;
            }
            let to = ranged(bytes, end + 2, 10, 300, |b| alnum(b) || b == b'-')?;
            bytes[end + 2..to]
                .iter()
                .any(u8::is_ascii_digit)
                .then_some((Kind::Slack, start, to))
        }
        Rule::AwsId if alone() => aws_id(bytes, start, end),
        Rule::AwsIdA3t if alone() => {
            let c = *bytes.get(end)?;
            (c.is_ascii_uppercase() || c.is_ascii_digit()).then_some(())?;
            aws_id(bytes, start, end + 1)
        }
        Rule::AwsSecret => aws_secret(bytes, end),
        Rule::Google if alone() => whole(Kind::GoogleApiKey, fixed(bytes, end, 35, b64url)?),
        Rule::Stripe if alone() => {
            let to = ranged(bytes, end, 10, 200, alnum)?;
            ends_alone(bytes, to).then_some((Kind::Stripe, start, to))
        }
        Rule::Sk if alone() => sk(bytes, start, end),
        Rule::Npm if alone() => whole(Kind::Npm, fixed(bytes, end, 36, alnum)?),
        Rule::PyPi if alone() => whole(Kind::PyPi, ranged(bytes, end, 50, 1000, b64url)?),
        Rule::PrivateKey => private_key(bytes, start, end),
        Rule::Jwt if alone() => jwt(bytes, start),
        Rule::Url => url(bytes, start, end),
        _ => None,
    }
}

/// The 16 base32 characters of an AWS access key id at `from`; AWS's documentation ids
/// (`…EXAMPLE`) are not keys.
fn aws_id(bytes: &[u8], start: usize, from: usize) -> Option<(Kind, usize, usize)> {
    let class = |b: u8| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b);
    let end = run(bytes, from, 17, class);
    if end - from != 16 || !ends_alone(bytes, end) || bytes[..end].ends_with(b"EXAMPLE") {
        return None;
    }
    (entropy(&bytes[from..end]) >= 2.5).then_some((Kind::AwsAccessKeyId, start, end))
}

/// After a name that says AWS secret key: the rest of the name, quotes and blanks, `=` or
/// `:` (or `=>`), then a 40-character base64 value standing alone.
fn aws_secret(bytes: &[u8], end: usize) -> Option<(Kind, usize, usize)> {
    let mut i = run(bytes, end, 64, |b| b.is_ascii_alphanumeric() || b == b'_');
    let blank = |b: u8| matches!(b, b' ' | b'\t' | b'"' | b'\'');
    i = run(bytes, i, 8, blank);
    match bytes.get(i) {
        Some(b'=') if bytes.get(i + 1) == Some(&b'>') => i += 2,
        Some(b'=' | b':') => i += 1,
        _ => return None,
    }
    i = run(bytes, i, 8, blank);
    let class = |b: u8| b.is_ascii_alphanumeric() || b == b'/' || b == b'+';
    let to = run(bytes, i, 41, class);
    (to - i == 40 && ends_alone(bytes, to) && entropy(&bytes[i..to]) >= 3.5).then_some((
        Kind::AwsSecretKey,
        i,
        to,
    ))
}

/// `sk-ant-…` (Anthropic) or an OpenAI key.
fn sk(bytes: &[u8], start: usize, end: usize) -> Option<(Kind, usize, usize)> {
    let to = run(bytes, end, 400, b64url);
    let body = &bytes[end..to];
    if !ends_alone(bytes, to) || entropy(body) < 3.0 {
        return None;
    }
    let kind = if let Some(rest) = body.strip_prefix(b"ant-") {
        (rest.len() >= 32).then_some(Kind::Anthropic)?
    } else if [&b"proj-"[..], b"svcacct-", b"admin-"]
        .iter()
        .any(|p| body.strip_prefix(*p).is_some_and(|r| r.len() >= 40))
        || (body.len() >= 40 && body.windows(8).any(|w| w == b"T3BlbkFJ"))
    {
        Kind::OpenAi
    } else {
        return None;
    };
    Some((kind, start, to))
}

/// `-----BEGIN … PRIVATE KEY…-----` on one line; the finding spans the armour up to its END
/// line when there is one.
fn private_key(bytes: &[u8], start: usize, end: usize) -> Option<(Kind, usize, usize)> {
    let eol = bytes[end..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |p| end + p);
    let label = &bytes[end..eol];
    if !label.windows(11).any(|w| w == b"PRIVATE KEY") || !label.windows(5).any(|w| w == b"-----") {
        return None;
    }
    let close = find(&bytes[eol..], b"-----END ")
        .and_then(|p| find(&bytes[eol + p + 9..], b"-----").map(|q| eol + p + 9 + q + 5))
        .unwrap_or(eol);
    Some((Kind::PrivateKey, start, close))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Header `.` payload `.` signature, each base64url, the first two JSON objects.
fn jwt(bytes: &[u8], start: usize) -> Option<(Kind, usize, usize)> {
    let h = run(bytes, start, 4096, b64url);
    if h - start < 13 || bytes.get(h) != Some(&b'.') || !bytes[h + 1..].starts_with(b"eyJ") {
        return None;
    }
    let p = run(bytes, h + 1, 16384, b64url);
    if p - (h + 1) < 13 || bytes.get(p) != Some(&b'.') {
        return None;
    }
    let s = run(bytes, p + 1, 4096, b64url);
    (s - (p + 1) >= 10 && ends_alone(bytes, s)).then_some((Kind::Jwt, start, s))
}

/// Passwords that stand for one in documentation and templates.
const NOT_PASSWORDS: &[&str] = &[
    "password", "passwd", "pass", "pwd", "secret", "token", "changeme", "example",
];

/// `scheme://[user]:password@host`: the finding is the password. A template reference
/// (`${VAR}`, `$VAR`, `{{…}}`, `<…>`, `%(…)s`) or a stand-in (`****`, `xxx`, `password`) is
/// not a password.
fn url(bytes: &[u8], start: usize, end: usize) -> Option<(Kind, usize, usize)> {
    // A scheme: a letter, then letters, digits, `+ . -`.
    let mut s = start;
    while s > 0 && start - s < 32 {
        let b = bytes[s - 1];
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-') {
            s -= 1;
        } else {
            break;
        }
    }
    if s == start || !bytes[s].is_ascii_alphabetic() {
        return None;
    }
    let auth_end = run(bytes, end, 512, |b| {
        !(b.is_ascii_whitespace()
            || matches!(
                b,
                b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'`' | b'\\' | b')' | b']' | b','
            ))
    });
    let authority = &bytes[end..auth_end];
    let at = authority.iter().rposition(|b| *b == b'@')?;
    let userinfo = &authority[..at];
    let colon = userinfo.iter().position(|b| *b == b':')?;
    let password = &userinfo[colon + 1..];
    let templated = matches!(password.first(), Some(b'$' | b'{' | b'<' | b'%' | b'['));
    let stand_in = password
        .iter()
        .all(|b| matches!(b, b'*' | b'x' | b'X' | b'.'))
        || NOT_PASSWORDS
            .iter()
            .any(|p| password.eq_ignore_ascii_case(p.as_bytes()));
    if password.len() < 3 || templated || stand_in {
        return None;
    }
    let from = end + colon + 1;
    Some((Kind::UrlPassword, from, from + password.len()))
}

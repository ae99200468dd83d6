//! Token detection: does a file hold something that looks like a credential?
//!
//! Capture asks [`scan`] about the repo form of every file it would upload (after the fleet's
//! own secrets became `{{fleetkey.secret.KEY}}` placeholders, [`crate::sync::placeholder`]), and
//! holds back a file with a finding: a token that reached a managed file by accident must not
//! reach the forge. The formats are those the rules of gitleaks (`config/gitleaks.toml`) and
//! trufflehog (its detectors) describe, written here as literal anchors found in one pass
//! ([`rules::ANCHORS`], an Aho-Corasick automaton) and a hand-written check of the bytes
//! around each anchor ([`rules`]): GitHub, GitLab, Slack, AWS (access key id, and a secret
//! access key named as such), Google API keys, Stripe secret keys, OpenAI and Anthropic keys,
//! npm and PyPI tokens, private key armour, JSON Web Tokens and URLs with a password.
//!
//! False positives are kept down as those tools do: a token must stand on its own (not inside
//! a longer run of base64 or identifier characters), have its exact length where the format
//! fixes one, and a random-looking body (Shannon entropy); documentation values
//! (`AKIAIOSFODNN7EXAMPLE`, `ghp_xxxx…`) and template references (`${VAR}`, `{{…}}`) are not
//! tokens.
//!
//! Also here: [`substitutable`], whether a fleet secret's value is distinctive enough to be
//! replaced by its placeholder wherever it appears.
//!
//! Owns: the formats, the kinds' names, the proposed key names. Must never: return, log or
//! print a token: a [`Finding`] is a kind, a line and a byte range.

mod rules;

use std::sync::OnceLock;

use aho_corasick::AhoCorasick;

/// The kind of credential a finding looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + 36, or `github_pat_` + 82.
    GitHub,
    /// `glpat-` + 20 or more.
    GitLab,
    /// `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xoxe-`, `xoxo-` tokens.
    Slack,
    /// `AKIA`/`ASIA`/`ABIA`/`ACCA`/`A3T?` + 16 base32 characters.
    AwsAccessKeyId,
    /// 40 base64 characters assigned to a name that says AWS secret (access) key.
    AwsSecretKey,
    /// `AIza` + 35.
    GoogleApiKey,
    /// `sk_live_`, `rk_live_`, `sk_test_`, `rk_test_` + 10 or more.
    Stripe,
    /// `sk-proj-`, `sk-svcacct-`, `sk-admin-`, or `sk-…T3BlbkFJ…`.
    OpenAi,
    /// `sk-ant-` + 32 or more.
    Anthropic,
    /// `npm_` + 36.
    Npm,
    /// `pypi-AgE…` macaroons.
    PyPi,
    /// `-----BEGIN … PRIVATE KEY…-----` armour.
    PrivateKey,
    /// Three base64url segments, the first two JSON objects (`eyJ…`).
    Jwt,
    /// `scheme://user:password@host`.
    UrlPassword,
}

impl Kind {
    /// How messages name it ("line 3 holds what looks like …").
    pub fn describe(self) -> &'static str {
        match self {
            Kind::GitHub => "a GitHub token",
            Kind::GitLab => "a GitLab token",
            Kind::Slack => "a Slack token",
            Kind::AwsAccessKeyId => "an AWS access key id",
            Kind::AwsSecretKey => "an AWS secret access key",
            Kind::GoogleApiKey => "a Google API key",
            Kind::Stripe => "a Stripe secret key",
            Kind::OpenAi => "an OpenAI API key",
            Kind::Anthropic => "an Anthropic API key",
            Kind::Npm => "an npm token",
            Kind::PyPi => "a PyPI token",
            Kind::PrivateKey => "a private key",
            Kind::Jwt => "a JSON Web Token",
            Kind::UrlPassword => "a URL with a password",
        }
    }

    /// The secret name `secrets adopt` proposes for a token of this kind.
    pub fn key_name(self) -> &'static str {
        match self {
            Kind::GitHub => "GITHUB_TOKEN",
            Kind::GitLab => "GITLAB_TOKEN",
            Kind::Slack => "SLACK_TOKEN",
            Kind::AwsAccessKeyId => "AWS_ACCESS_KEY_ID",
            Kind::AwsSecretKey => "AWS_SECRET_ACCESS_KEY",
            Kind::GoogleApiKey => "GOOGLE_API_KEY",
            Kind::Stripe => "STRIPE_SECRET_KEY",
            Kind::OpenAi => "OPENAI_API_KEY",
            Kind::Anthropic => "ANTHROPIC_API_KEY",
            Kind::Npm => "NPM_AUTH_TOKEN",
            Kind::PyPi => "PYPI_TOKEN",
            Kind::PrivateKey => "PRIVATE_KEY",
            Kind::Jwt => "JWT",
            Kind::UrlPassword => "URL_PASSWORD",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// One credential-looking value in a file: what it looks like, where. Never the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// What it looks like.
    pub kind: Kind,
    /// Its line, from 1.
    pub line: usize,
    /// Its byte range in the scanned content (the password alone, for a URL).
    pub start: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
}

fn automaton() -> &'static AhoCorasick {
    static AC: OnceLock<AhoCorasick> = OnceLock::new();
    AC.get_or_init(|| {
        AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(rules::ANCHORS.iter().map(|(a, _)| a))
            .expect("the anchors are a handful of short literals")
    })
}

/// Every credential-looking value in `bytes`, in order.
pub fn scan(bytes: &[u8]) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    let (mut line, mut counted) = (1usize, 0usize);
    for m in automaton().find_iter(bytes) {
        let rule = rules::ANCHORS[m.pattern().as_usize()].1;
        let Some((kind, start, end)) = rules::check(rule, bytes, m.start(), m.end()) else {
            continue;
        };
        // One finding per value (a URL's password may hold a token that is found again).
        if out.last().is_some_and(|f| start < f.end) {
            continue;
        }
        line += newlines(&bytes[counted..start]);
        counted = start;
        out.push(Finding {
            kind,
            line,
            start,
            end,
        });
    }
    out
}

/// How many `\n` bytes `bytes` holds (a small `u8` count per 255 bytes, which the compiler
/// turns into vector compares: the whole file is counted up to the last finding).
fn newlines(bytes: &[u8]) -> usize {
    bytes
        .chunks(255)
        .map(|c| usize::from(c.iter().fold(0u8, |n, b| n + u8::from(*b == b'\n'))))
        .sum()
}

/// Why a value is not replaced by its placeholder in dotfiles, or `None` when it is: shorter
/// than 8 bytes, or of low entropy (a repeated or near-constant text such as `aaaaaaaa` or
/// `12121212`), would match ordinary text.
pub fn substitutable(value: &[u8]) -> Result<(), &'static str> {
    if value.len() < 8 {
        return Err("it is shorter than 8 bytes");
    }
    if entropy(value) < 2.5 {
        return Err("it is too uniform (low entropy)");
    }
    Ok(())
}

/// Shannon entropy of `bytes`, bits per byte.
pub fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for b in bytes {
        counts[*b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The findings of `bytes` as one clause for a held-back line: "line 3: an npm token; line 9:
/// a GitHub token" (the first five, then how many more).
pub fn describe(findings: &[Finding]) -> String {
    let mut parts: Vec<String> = findings
        .iter()
        .take(5)
        .map(|f| format!("line {}: {}", f.line, f.kind))
        .collect();
    if findings.len() > 5 {
        parts.push(format!("and {} more", findings.len() - 5));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests;

use super::*;

/// A deterministic stream of characters from `alphabet` (xorshift), for fake tokens.
fn fake(seed: u64, alphabet: &[u8], len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % alphabet.len() as u64) as usize] as char
        })
        .collect()
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URLSAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

fn kinds(text: &str) -> Vec<(Kind, usize)> {
    scan(text.as_bytes())
        .iter()
        .map(|f| (f.kind, f.line))
        .collect()
}

#[test]
fn each_format_is_found_with_its_kind_and_line() {
    let cases = [
        (
            format!("GITHUB_TOKEN=ghp_{}", fake(1, ALNUM, 36)),
            Kind::GitHub,
        ),
        (format!("token: gho_{}", fake(2, ALNUM, 36)), Kind::GitHub),
        (
            format!("\"github_pat_{}\"", fake(3, ALNUM, 82)),
            Kind::GitHub,
        ),
        (
            format!("GITLAB=glpat-{}", fake(4, URLSAFE, 20)),
            Kind::GitLab,
        ),
        (
            format!("SLACK=xoxb-1234567890-1234567890123-{}", fake(5, ALNUM, 24)),
            Kind::Slack,
        ),
        (
            format!("id = AKIA{}", fake(6, B32, 16)),
            Kind::AwsAccessKeyId,
        ),
        (
            format!("aws_secret_access_key = {}", fake(7, B64, 40)),
            Kind::AwsSecretKey,
        ),
        (
            format!("export AWS_SECRET_ACCESS_KEY=\"{}\"", fake(8, B64, 40)),
            Kind::AwsSecretKey,
        ),
        (
            format!("key: AIza{}", fake(9, URLSAFE, 35)),
            Kind::GoogleApiKey,
        ),
        (
            format!("STRIPE=sk_live_{}", fake(10, ALNUM, 24)),
            Kind::Stripe,
        ),
        (
            format!("OPENAI_API_KEY=sk-proj-{}", fake(11, URLSAFE, 60)),
            Kind::OpenAi,
        ),
        (
            format!(
                "OPENAI=sk-{}T3BlbkFJ{}",
                fake(12, ALNUM, 20),
                fake(13, ALNUM, 20)
            ),
            Kind::OpenAi,
        ),
        (
            format!("ANTHROPIC=sk-ant-api03-{}AA", fake(14, URLSAFE, 93)),
            Kind::Anthropic,
        ),
        (
            format!(
                "//registry.npmjs.org/:_authToken=npm_{}",
                fake(15, ALNUM, 36)
            ),
            Kind::Npm,
        ),
        (
            format!("password = pypi-AgEIcHlwaS5vcmc{}", fake(16, URLSAFE, 60)),
            Kind::PyPi,
        ),
        (
            format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----",
                fake(17, B64, 64)
            ),
            Kind::PrivateKey,
        ),
        (
            format!(
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJ{}.{}",
                fake(18, URLSAFE, 40),
                fake(19, URLSAFE, 43)
            ),
            Kind::Jwt,
        ),
        (
            format!(
                "url = https://alice:{}@git.example.org/x.git",
                fake(20, ALNUM, 12)
            ),
            Kind::UrlPassword,
        ),
        (
            format!(
                "DATABASE_URL=postgres://app:{}@db:5432/app",
                fake(21, ALNUM, 16)
            ),
            Kind::UrlPassword,
        ),
    ];
    for (line, kind) in &cases {
        let text = format!("# a comment\n\n{line}\nafter\n");
        assert_eq!(kinds(&text), [(*kind, 3)], "{line}");
    }
}

#[test]
fn the_range_is_the_value_and_a_url_finding_is_its_password() {
    let pw = fake(30, ALNUM, 12);
    let text = format!("x https://u:{pw}@h/ y");
    let f = scan(text.as_bytes())[0];
    assert_eq!(&text[f.start..f.end], pw);
    let tok = format!("npm_{}", fake(31, ALNUM, 36));
    let text = format!("a\nb\n_authToken={tok}\n");
    let f = scan(text.as_bytes())[0];
    assert_eq!((&text[f.start..f.end], f.line), (tok.as_str(), 3));
}

#[test]
fn look_alikes_are_not_tokens() {
    let sha1 = fake(40, b"0123456789abcdef", 40);
    let sha256 = fake(41, b"0123456789abcdef", 64);
    let png = fake(42, B64, 4000);
    let texts = [
        format!("commit {sha1}"),
        format!("\"integrity\": \"sha512-{}==\"", fake(43, B64, 86)),
        format!("checksum = \"{sha256}\""),
        "id: 123e4567-e89b-12d3-a456-426614174000".to_string(),
        format!("<img src=\"data:image/png;base64,{png}\">"),
        "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE".into(),
        "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".into(),
        "GITHUB_TOKEN=ghp_short".into(),
        "url = https://github.com/me/dotfiles.git".into(),
        "url = ssh://git@github.com:22/me/dotfiles.git".into(),
        "proxy = http://user:${PROXY_PASSWORD}@proxy:3128".into(),
        "proxy = http://user:{{fleetkey.secret.PROXY}}@proxy:3128".into(),
        "db = postgres://user:password@localhost/db".into(),
        "db = postgres://user:****@localhost/db".into(),
        "desk-top and task-list and risk-free".into(),
        "ASIAN food, AKIAS, A3TONE".into(),
        "xoxo-hugs".into(),
        "-----BEGIN PUBLIC KEY-----".into(),
        "-----BEGIN CERTIFICATE-----".into(),
        "eyJ is how base64 JSON starts".into(),
        format!("aws_secret_access_key = {}", fake(44, B64, 39)),
        format!("secret_key = {}", fake(45, B64, 40)),
    ];
    for t in &texts {
        assert_eq!(kinds(t), [], "{t}");
    }
}

#[test]
fn several_findings_are_numbered_by_line_and_described_without_values() {
    let gh = format!("ghp_{}", fake(50, ALNUM, 36));
    let npm = format!("npm_{}", fake(51, ALNUM, 36));
    let text = format!("{gh}\nx\ny {npm} z\n");
    let found = scan(text.as_bytes());
    assert_eq!(
        describe(&found),
        "line 1: a GitHub token; line 3: an npm token"
    );
    assert!(!describe(&found).contains(&gh[4..]));
}

#[test]
fn a_value_is_substituted_only_when_distinctive() {
    assert!(substitutable(b"short").is_err());
    assert!(substitutable(b"aaaaaaaaaaaa").is_err());
    assert!(substitutable(b"12121212").is_err());
    assert!(substitutable(b"correct horse battery").is_ok());
    assert!(substitutable(fake(60, ALNUM, 24).as_bytes()).is_ok());
}

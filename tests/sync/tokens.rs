//! A token never reaches the forge in plaintext: fleet secrets as `{{fleetkey.secret.KEY}}`
//! placeholders in dotfiles (both ways, on three machines), token detection at capture (a
//! corpus of fake tokens held back by kind and line, look-alikes captured), `secrets adopt`,
//! `secrets exec` masking, `secrets inject`, and the attacks of a compromised member that
//! plants placeholders to have a value published.
//!
//! Every token here is made by the test from a seeded generator: none is real.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::util::fleet::Fleet;
use crate::util::forge::Transport;
use crate::util::{Machine, contains, run_program};

/// Characters of fake tokens, by format.
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URLSAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const HEX: &[u8] = b"0123456789abcdef";

/// `len` characters of `alphabet` from `seed` (xorshift): random-looking, reproducible.
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

/// Every object on the forge, as `git cat-file --batch-all-objects --batch` prints them
/// (branches, host branches and unreachable objects alike).
fn forge_objects(fleet: &Fleet) -> Vec<u8> {
    run_program(Command::new("git").arg("-C").arg(fleet.forge.bare()).args([
        "cat-file",
        "--batch-all-objects",
        "--batch",
    ]))
}

fn assert_nowhere_on_the_forge(fleet: &Fleet, values: &[&str]) {
    let objects = forge_objects(fleet);
    assert!(objects.len() > 1000, "the forge holds the fleet's objects");
    for v in values {
        assert!(
            !contains(&objects, v.as_bytes()),
            "a value reached the forge in plaintext"
        );
    }
}

fn held_back(m: &Machine) -> Vec<String> {
    m.last_cycle().unwrap()["held_back"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect()
}

fn mode(m: &Machine, rel: &str) -> u32 {
    std::fs::metadata(m.path(rel)).unwrap().permissions().mode() & 0o777
}

fn npmrc(token: &str, extra: &str) -> String {
    format!(
        "registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken={token}\nsave-exact=true\n{extra}"
    )
}

#[test]
fn a_token_set_as_a_secret_travels_as_its_placeholder_and_reads_right_everywhere() {
    let fleet = Fleet::with_homes(
        Transport::GitDaemon,
        &["alice", "bob", "carol"],
        &["home-alice", "var/deeper/home-bob", "h"],
    );
    fleet.settle(1);
    let (a, b, c) = (fleet.n(0), fleet.n(1), fleet.n(2));
    let token = format!("npm_{}", fake(1, ALNUM, 36));
    // As a person types it: the secret first, then the file that uses it, then track.
    a.ok_with_stdin(&["secrets", "set", "NPM_TOKEN"], token.as_bytes());
    a.write(".npmrc", npmrc(&token, "").as_bytes());
    a.ok(&["track", "~/.npmrc"]);
    let stored = std::fs::read_to_string(a.repo().join("home/.npmrc")).unwrap();
    assert_eq!(stored, npmrc("{{fleetkey.secret.NPM_TOKEN}}", ""));
    fleet.settle(2);
    for m in [a, b, c] {
        assert_eq!(m.text(".npmrc"), npmrc(&token, ""), "{}", m.name);
    }
    // A file given a secret is written private on the machines that apply it.
    assert_eq!(mode(b, ".npmrc"), 0o600);

    // bob edits another line in place; everyone gets the edit, with the token.
    b.write(".npmrc", npmrc(&token, "fund=false\n").as_bytes());
    // diff shows the placeholder, never the value.
    let diff = b.ok(&["diff"]);
    assert!(diff.contains("fund=false"), "{diff}");
    assert!(!diff.contains(&token[4..]), "diff showed the value");
    b.sync();
    a.sync();
    c.sync();
    for m in [a, b, c] {
        assert_eq!(
            m.text(".npmrc"),
            npmrc(&token, "fund=false\n"),
            "{}",
            m.name
        );
    }
    let log = a.ok(&["log", "~/.npmrc"]);
    assert!(!log.contains(&token[4..]), "log showed the value");

    // The token is rotated on carol: every machine's file gets the new value.
    let rotated = format!("npm_{}", fake(2, ALNUM, 36));
    c.ok_with_stdin(&["secrets", "set", "NPM_TOKEN"], rotated.as_bytes());
    fleet.settle(2);
    for m in [a, b, c] {
        assert_eq!(
            m.text(".npmrc"),
            npmrc(&rotated, "fund=false\n"),
            "{}",
            m.name
        );
    }
    // Unset: the placeholder stays and is reported, never an empty credential.
    a.ok(&["secrets", "unset", "NPM_TOKEN"]);
    b.write(".npmrc", npmrc(&rotated, "fund=true\n").as_bytes());
    b.sync();
    a.sync();
    b.sync();
    assert_eq!(
        a.text(".npmrc"),
        npmrc("{{fleetkey.secret.NPM_TOKEN}}", "fund=true\n")
    );
    assert!(
        held_back(a).iter().any(|h| h
            == "~/.npmrc: the placeholder {{fleetkey.secret.NPM_TOKEN}} is left as it is: there is no fleet secret NPM_TOKEN (set it with `fleetkey secrets set NPM_TOKEN`)"),
        "{:?}",
        held_back(a)
    );
    assert_nowhere_on_the_forge(&fleet, &[&token, &rotated]);
}

/// The corpus: 40 fake tokens of every format, each in its own file at its own line, with
/// its kind as capture names it.
fn token_corpus() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for i in 0..3u64 {
        let s = 100 + i * 20;
        out.extend([
            (
                format!("GITHUB_TOKEN=ghp_{}", fake(s, ALNUM, 36)),
                "a GitHub token",
            ),
            (
                format!("oauth: gho_{}", fake(s + 1, ALNUM, 36)),
                "a GitHub token",
            ),
            (
                format!(
                    "token = \"github_pat_{}\"",
                    fake(s + 2, URLSAFE.split_at(63).0, 82)
                ),
                "a GitHub token",
            ),
            (
                format!("GITLAB_TOKEN=glpat-{}", fake(s + 3, URLSAFE, 20)),
                "a GitLab token",
            ),
            (
                format!(
                    "slack_token: xoxb-{}-{}-{}",
                    fake(s + 4, b"0123456789", 12),
                    fake(s + 5, b"0123456789", 13),
                    fake(s + 6, ALNUM, 24)
                ),
                "a Slack token",
            ),
            (
                format!("aws_access_key_id = AKIA{}", fake(s + 7, B32, 16)),
                "an AWS access key id",
            ),
            (
                format!("aws_secret_access_key = {}", fake(s + 8, B64, 40)),
                "an AWS secret access key",
            ),
            (
                format!("maps_key: AIza{}", fake(s + 9, URLSAFE, 35)),
                "a Google API key",
            ),
            (
                format!("STRIPE_KEY=sk_live_{}", fake(s + 10, ALNUM, 24)),
                "a Stripe secret key",
            ),
            (
                format!("OPENAI_API_KEY=sk-proj-{}", fake(s + 11, URLSAFE, 64)),
                "an OpenAI API key",
            ),
            (
                format!(
                    "ANTHROPIC_API_KEY=sk-ant-api03-{}AA",
                    fake(s + 12, URLSAFE, 93)
                ),
                "an Anthropic API key",
            ),
            (
                format!(
                    "//registry.npmjs.org/:_authToken=npm_{}",
                    fake(s + 13, ALNUM, 36)
                ),
                "an npm token",
            ),
            (
                format!(
                    "password = pypi-AgEIcHlwaS5vcmc{}",
                    fake(s + 14, URLSAFE, 70)
                ),
                "a PyPI token",
            ),
        ]);
        out.push((
            format!(
                "auth: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{}.{}",
                fake(s + 15, URLSAFE, 40),
                fake(s + 16, URLSAFE, 43)
            ),
            "a JSON Web Token",
        ));
    }
    out.truncate(38);
    out.push((
        format!(
            "url = https://deploy:{}@git.example.org/x.git",
            fake(300, ALNUM, 20)
        ),
        "a URL with a password",
    ));
    out.push((
        format!(
            "DATABASE_URL=postgres://app:{}@db.internal:5432/app",
            fake(301, ALNUM, 16)
        ),
        "a URL with a password",
    ));
    out
}

/// 40 things that look like tokens and are not.
fn look_alikes() -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..5u64 {
        let s = 500 + i * 10;
        out.extend([
            format!("commit {}", fake(s, HEX, 40)),
            format!("  \"integrity\": \"sha512-{}==\",", fake(s + 1, B64, 86)),
            format!("checksum = \"{}\"", fake(s + 2, HEX, 64)),
            format!(
                "id: {}-{}-4{}-a{}-{}",
                fake(s + 3, HEX, 8),
                fake(s + 4, HEX, 4),
                fake(s + 5, HEX, 3),
                fake(s + 6, HEX, 3),
                fake(s + 7, HEX, 12)
            ),
            format!(
                "<img src=\"data:image/png;base64,{}\">",
                fake(s + 8, B64, 3000)
            ),
            format!(
                "resolved \"https://registry.yarnpkg.com/x/-/x-1.0.{i}.tgz#{}\"",
                fake(s + 9, HEX, 40)
            ),
            format!("url = https://github.com/me/dotfiles-{i}.git"),
            format!("proxy = http://user:${{PROXY_PASSWORD_{i}}}@proxy:3128"),
        ]);
    }
    out
}

#[test]
fn forty_fake_tokens_are_held_back_by_kind_and_line_and_forty_look_alikes_are_captured() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alice"]);
    let a = fleet.n(0);
    a.write(".config/corpus/README", b"tokens and look-alikes\n");
    a.ok(&["track", "~/.config/corpus/"]);
    let tokens = token_corpus();
    let plain = look_alikes();
    assert!(tokens.len() >= 40 && plain.len() >= 40);
    for (i, (line, _)) in tokens.iter().enumerate() {
        let padding = "# config\n".repeat(i % 7);
        a.write(
            &format!(".config/corpus/token-{i:02}"),
            format!("{padding}{line}\nend\n").as_bytes(),
        );
    }
    for (i, line) in plain.iter().enumerate() {
        a.write(
            &format!(".config/corpus/plain-{i:02}"),
            format!("# look-alike\n{line}\n").as_bytes(),
        );
    }
    a.sync();
    let held = held_back(a);
    for (i, (_, kind)) in tokens.iter().enumerate() {
        let want = format!(
            "~/.config/corpus/token-{i:02} not captured: it holds what looks like a credential (line {}: {kind}); move it into the fleet secrets with `fleetkey secrets adopt ~/.config/corpus/token-{i:02}`, or list the file in [sync] allow_tokens",
            i % 7 + 1
        );
        assert!(
            held.contains(&want),
            "missing: {want}\nheld back: {held:#?}"
        );
        assert!(
            !a.repo()
                .join(format!("home/.config/corpus/token-{i:02}"))
                .exists()
        );
    }
    assert_eq!(held.len(), tokens.len(), "{held:#?}");
    for (i, line) in plain.iter().enumerate() {
        assert!(
            a.repo()
                .join(format!("home/.config/corpus/plain-{i:02}"))
                .exists(),
            "look-alike {i} was not captured: {line:?}"
        );
    }
    // status and doctor list them too (by kind and line, never the token).
    let status = a.ok(&["status"]);
    assert!(status.contains("token-07 not captured"), "{status}");
    let values: Vec<&str> = tokens.iter().map(|(l, _)| l.as_str()).collect();
    for v in &values {
        let secret_part = &v[v.len() - 16..];
        assert!(!status.contains(secret_part));
        for h in &held {
            assert!(!h.contains(secret_part));
        }
    }
    assert_nowhere_on_the_forge(
        &fleet,
        &values
            .iter()
            .map(|v| &v[v.len() - 16..])
            .collect::<Vec<_>>(),
    );

    // The per-file opt-out: listed in [sync] allow_tokens, a file is captured.
    a.ok(&["config", "set", "allow_tokens", "~/.config/corpus/token-00"]);
    a.sync();
    assert!(a.repo().join("home/.config/corpus/token-00").exists());
    assert!(!held_back(a).iter().any(|h| h.contains("token-00 ")));
}

#[test]
fn secrets_adopt_turns_a_held_back_file_into_a_synced_one() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alice", "bob"]);
    fleet.settle(1);
    let (a, b) = (fleet.n(0), fleet.n(1));
    a.write(".config/app/settings", b"theme=dark\n");
    a.ok(&["track", "~/.config/app/"]);
    let gh = format!("ghp_{}", fake(700, ALNUM, 36));
    let npm = format!("npm_{}", fake(701, ALNUM, 36));
    let env = format!(
        "export GITHUB_TOKEN={gh}\n//registry.npmjs.org/:_authToken={npm}\nexport AGAIN={gh}\n"
    );
    a.write(".config/app/env", env.as_bytes());
    a.sync();
    assert!(
        held_back(a)
            .iter()
            .any(|h| h.starts_with("~/.config/app/env not captured"))
    );
    let out = a.ok(&["secrets", "adopt", "~/.config/app/env"]);
    assert_eq!(
        out,
        "fleetkey: ~/.config/app/env: line 1 (a GitHub token) is the secret GITHUB_TOKEN\n\
         fleetkey: ~/.config/app/env: line 2 (an npm token) is the secret NPM_AUTH_TOKEN\n\
         fleetkey: ~/.config/app/env: line 3 (a GitHub token) is the secret GITHUB_TOKEN (already stored)\n\
         fleetkey: ~/.config/app/env is synced, with placeholders where the tokens were\n"
    );
    // The live file is untouched; the fleet's copy holds placeholders.
    assert_eq!(a.text(".config/app/env"), env);
    assert_eq!(
        std::fs::read_to_string(a.repo().join("home/.config/app/env")).unwrap(),
        "export GITHUB_TOKEN={{fleetkey.secret.GITHUB_TOKEN}}\n//registry.npmjs.org/:_authToken={{fleetkey.secret.NPM_AUTH_TOKEN}}\nexport AGAIN={{fleetkey.secret.GITHUB_TOKEN}}\n"
    );
    b.sync();
    assert_eq!(b.text(".config/app/env"), env);
    assert_eq!(
        b.ok(&["secrets", "get", "NPM_AUTH_TOKEN"]),
        format!("{npm}\n")
    );
    // Made literal later (stored byte for byte): the fleet's copy keeps the placeholders as
    // text; the values stay off the forge.
    a.ok(&["config", "set", "literal", "~/.config/app/env"]);
    a.sync();
    b.sync();
    a.sync();
    assert_nowhere_on_the_forge(&fleet, &[&gh, &npm]);
}

#[test]
fn exec_masks_secret_values_in_piped_output_even_split_across_writes() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alice"]);
    let a = fleet.n(0);
    let token = format!("ghp_{}", fake(800, ALNUM, 36));
    a.ok_with_stdin(&["secrets", "set", "TOKEN"], token.as_bytes());
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n{}\n-----END PRIVATE KEY-----",
        fake(801, B64, 64),
        fake(802, B64, 40)
    );
    a.ok_with_stdin(&["secrets", "set", "PEM"], pem.as_bytes());
    // Half the token, a pause, the other half: two writes; then the PEM, then to stderr.
    let script = r#"printf '%s' "${TOKEN%????????????????????}"; sleep 0.2; printf '%s\n' "${TOKEN#????????????????????}"; printf '%s\n' "$PEM"; printf 'err %s\n' "$TOKEN" >&2; exit 7"#;
    let out = a.run(&["secrets", "exec", "--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "<concealed by fleetkey>\n<concealed by fleetkey>\n"
    );
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "err <concealed by fleetkey>\n"
    );
    // --no-mask hands the streams to the command.
    let out = a.run(&[
        "secrets",
        "exec",
        "--no-mask",
        "--",
        "sh",
        "-c",
        "printf %s \"$TOKEN\"",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), token);
    // A signal is reported as shells do.
    let out = a.run(&["secrets", "exec", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15));
}

#[test]
fn inject_renders_references_and_names_a_missing_key() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alice"]);
    let a = fleet.n(0);
    a.ok_with_stdin(&["secrets", "set", "API"], b"k-123");
    let out = a.ok_with_stdin(
        &["secrets", "inject"],
        b"api={{fleetkey.secret.API}}\nlit={{fleetkey.lit}}x}}\n",
    );
    assert_eq!(out, "api=k-123\nlit={{fleetkey.x}}\n");
    let template = a.tmp().join("t.tmpl");
    let target = a.tmp().join("out.env");
    std::fs::write(&template, "A={{fleetkey.secret.API}}\n").unwrap();
    a.ok(&[
        "secrets",
        "inject",
        "-i",
        template.to_str().unwrap(),
        "-o",
        target.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "A=k-123\n");
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::write(
        &template,
        "A={{fleetkey.secret.API}}\n\nB={{fleetkey.secret.MISSING}}\n",
    )
    .unwrap();
    let missing = a.tmp().join("missing.env");
    let err = a.fails(
        &[
            "secrets",
            "inject",
            "-i",
            template.to_str().unwrap(),
            "-o",
            missing.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        err.contains("the template refers to secrets that do not exist: MISSING (line 3); nothing was written"),
        "{err}"
    );
    assert!(!err.contains("k-123"));
    assert!(!missing.exists());
}

/// A compromised member (bob, still a member: its commits are authentic) plants placeholders
/// by a plain git push: in a managed file, `{{fleetkey.secret.KEY}}` (apply writes the value
/// into alice's live file) and the escaped form that decodes to `{{fleetkey.secret.VALUE}}`;
/// and it makes the fleet collect that file. Neither alice's capture nor her host branch
/// ever carries the value to the forge.
#[test]
fn planted_placeholders_never_carry_a_value_to_the_forge() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alice", "bob"]);
    fleet.settle(1);
    let (a, b) = (fleet.n(0), fleet.n(1));
    let secret = format!("AKIA{}", fake(900, B32, 16));
    let long = fake(901, ALNUM, 30);
    a.ok_with_stdin(&["secrets", "set", "AWS_SECRET"], long.as_bytes());
    a.ok_with_stdin(&["secrets", "set", "AWS_ID"], secret.as_bytes());
    a.write(".zshrc", b"export EDITOR=vi\n");
    a.ok(&["track", "~/.zshrc"]);
    b.sync();
    // bob's commit, by hand with stock git, pushed by plain git.
    std::fs::write(
        b.repo().join("home/.zshrc"),
        "export EDITOR=vi\nexport X={{fleetkey.secret.AWS_SECRET}}\n# {{fleetkey.lit}}secret.{{fleetkey.secret.AWS_ID}}}}\n",
    )
    .unwrap();
    let toml = b.repo().join("fleet.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("\n[collect]\npaths = [\"~/.zshrc\"]\n");
    std::fs::write(&toml, text).unwrap();
    b.commit_in_clone("bob: nothing to see");
    run_program(Command::new("git").arg("-C").arg(b.repo()).args([
        "push",
        "-q",
        "origin",
        "HEAD:refs/heads/main",
    ]));
    a.sync();
    // alice's live file holds the values (that is what a placeholder is for) ...
    let live = a.text(".zshrc");
    assert!(live.contains(&format!("export X={long}")), "{live}");
    assert!(
        live.contains(&format!("{{{{fleetkey.secret.{secret}}}}}")),
        "{live}"
    );
    // ... her host branch did not publish the file ...
    assert!(
        held_back(a).iter().any(|h| h
            == "[collect] ~/.zshrc not published: it holds the value of the fleet secret AWS_SECRET; set [collect] encrypt = true to publish it sealed to the fleet"),
        "{:?}",
        held_back(a)
    );
    // ... and an edit of hers captures placeholders again.
    a.write(".zshrc", format!("{live}alias ll='ls -l'\n").as_bytes());
    a.sync();
    a.sync();
    let stored = std::fs::read_to_string(a.repo().join("home/.zshrc")).unwrap();
    assert!(stored.ends_with("alias ll='ls -l'\n"), "{stored}");
    assert!(
        stored.contains("export X={{fleetkey.secret.AWS_SECRET}}"),
        "{stored}"
    );
    assert_nowhere_on_the_forge(&fleet, &[&secret, &long]);
}

/// A machine that can no longer read the secrets (its identity became group-readable, so it
/// is refused) cannot tell the values in its live files: an edit of a file whose fleet copy has
/// placeholders is held back, not captured with the value.
#[test]
fn a_machine_that_cannot_read_the_secrets_holds_back_files_with_placeholders() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alice", "bob"]);
    fleet.settle(1);
    let (a, b) = (fleet.n(0), fleet.n(1));
    let value = fake(950, ALNUM, 32);
    a.ok_with_stdin(&["secrets", "set", "API_KEY"], value.as_bytes());
    a.write(".apirc", format!("key={value}\n").as_bytes());
    a.ok(&["track", "~/.apirc"]);
    b.sync();
    assert_eq!(b.text(".apirc"), format!("key={value}\n"));
    std::fs::set_permissions(b.identity(), std::fs::Permissions::from_mode(0o644)).unwrap();
    b.write(".apirc", format!("key={value}\nmore=1\n").as_bytes());
    b.run(&["sync"]);
    assert!(
        held_back(b).iter().any(|h| h
            == "~/.apirc not captured: the fleet's copy has secret placeholders and this machine cannot read the fleet secrets now (see `fleetkey doctor`)"),
        "{:?}",
        held_back(b)
    );
    assert_nowhere_on_the_forge(&fleet, &[&value]);
}

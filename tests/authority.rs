//! Admission and authority end to end (issue 19): a real `git daemon` forge, machines made by
//! the real commands, and attackers who hold forge write access (a plain `git clone` + `git
//! push`) or a member's signing key (stock `git commit -S`). After each attack the honest
//! machines go on working.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::forge::{Forge, Transport};
use crate::util::{Machine, code_in, git_out, require, run_program, signing_config};

/// alpha founded the fleet on a git daemon forge (a secret set); beta is approved and synced.
struct Fleet {
    forge: Forge,
    alpha: Machine,
    beta: Machine,
}

fn fleet() -> Fleet {
    require("age", "age");
    let forge = Forge::start(Transport::GitDaemon);
    let url = forge.url();
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha", "--remote", &url]);
    // These tests watch each refusal and `forge repair`: the forge does not heal itself here
    // (tests/heal.rs tests that it does).
    alpha.ok(&["config", "set", "heal", "false"]);
    alpha.ok_with_stdin(&["secrets", "set", "TOKEN"], b"honest-1\n");
    let beta = Machine::new();
    admit(&alpha, &beta, "beta", &url);
    Fleet { forge, alpha, beta }
}

/// `new` enrolls as `name`; `member` approves it with the code enroll printed; both sync.
fn admit(member: &Machine, new: &Machine, name: &str, url: &str) {
    let out = new.ok(&["enroll", name, "--remote", url]);
    member.ok(&["approve", name, "--code", &code_in(&out, name)]);
    new.ok(&["sync"]);
    member.ok(&["sync"]);
}

/// A plain clone of `branch` of the forge, for the attacker.
fn attacker_clone(f: &Fleet, branch: &str, tag: &str) -> PathBuf {
    let dir = f.alpha.dir.path().join(format!("attacker-{tag}"));
    run_program(
        Command::new("git")
            .args(["clone", "--quiet", "--branch", branch, "--"])
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
            .args(["push", "--quiet", "--force", "origin", refspec]),
    );
}

/// An attacker's ed25519 key pair (private key path; the public line).
fn attacker_key(dir: &Path, name: &str) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join(name);
    run_program(
        Command::new(require("ssh-keygen", "openssh-client"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "mallory", "-f"])
            .arg(&key),
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// An attacker's age recipient.
fn attacker_recipient(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let identity = dir.join("mallory.age");
    let _ = std::fs::remove_file(&identity);
    run_program(
        Command::new(require("age-keygen", "age"))
            .arg("-o")
            .arg(&identity)
            .stderr(std::process::Stdio::piped()),
    );
    recipient_of(&identity)
}

/// The commit the fleet branch of `m`'s clone is at.
fn head(m: &Machine) -> String {
    git_out(&m.repo(), &["rev-parse", "HEAD"])
        .trim()
        .to_string()
}

#[test]
fn a_pending_request_rewritten_on_the_forge_admits_nothing() {
    let f = fleet();
    let url = f.forge.url();
    let gamma = Machine::new();
    let out = gamma.ok(&["enroll", "gamma", "--remote", &url]);
    let code = code_in(&out, "gamma");
    // The code is also in status on the pending machine.
    assert_eq!(crate::util::enrollment_code(&gamma), code);
    let gamma_ssh_fp = gamma.ssh_fingerprint();
    let original = git_out(
        &f.forge.bare(),
        &["rev-parse", "refs/heads/fleetkey/pending/gamma"],
    )
    .trim()
    .to_string();
    f.alpha.ok(&["sync"]);
    let before = head(&f.alpha);

    // The SSH fingerprint enroll printed is not accepted as a code at all.
    let err = f
        .alpha
        .fails(&["approve", "gamma", "--fingerprint", &gamma_ssh_fp], 1);
    assert!(err.contains("enrollment code: "), "{err}");

    // Attack 1: one extra SSH key after gamma's own, nothing else changed.
    let clone = attacker_clone(&f, "fleetkey/pending/gamma", "extra-line");
    let (_, mallory_ssh) = attacker_key(&clone.join("../mallory-1"), "ssh");
    let ssh_file = clone.join("keys/pending/gamma.ssh.pub");
    let mut text = std::fs::read_to_string(&ssh_file).unwrap();
    text.push_str(&format!("{mallory_ssh}\n"));
    std::fs::write(&ssh_file, text).unwrap();
    git_commit(&clone, &[], "gamma", "gamma: enroll, waiting for approval");
    git_push(&clone, "HEAD:refs/heads/fleetkey/pending/gamma");
    let err = f.alpha.fails(&["approve", "gamma", "--code", &code], 1);
    assert!(
        err.contains("keys/pending/gamma.ssh.pub line 2") && err.contains("exactly one"),
        "{err}"
    );
    assert_eq!(head(&f.alpha), before, "nothing may be approved");

    // Attack 2: every key replaced by the attacker's, with a proof the attacker signed itself
    // over its own statement (stock ssh-keygen, namespace fleetkey-enroll): a valid proof, of
    // another statement, so another code.
    let clone = attacker_clone(&f, "fleetkey/pending/gamma", "all-keys");
    let dir = clone.join("../mallory-2");
    let (sign_key, sign_pub) = attacker_key(&dir, "sign");
    let (_, ssh_pub) = attacker_key(&dir, "ssh");
    let (_, poke_pub) = attacker_key(&dir, "poke");
    let age = attacker_recipient(&dir);
    let two = |l: &str| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let proof_text = std::fs::read_to_string(clone.join("keys/pending/gamma.proof")).unwrap();
    let fleet_line = proof_text.lines().nth(1).unwrap().to_string();
    let statement = format!(
        "fleetkey enrollment v1\n{fleet_line}\nname gamma\nage {age}\nssh {}\nsign {}\npoke {}\n",
        two(&ssh_pub),
        two(&sign_pub),
        two(&poke_pub)
    );
    let stmt_file = dir.join("statement");
    std::fs::write(&stmt_file, &statement).unwrap();
    run_program(
        Command::new(require("ssh-keygen", "openssh-client"))
            .args(["-q", "-Y", "sign", "-n", "fleetkey-enroll", "-f"])
            .arg(&sign_key)
            .arg(&stmt_file),
    );
    let sig = std::fs::read_to_string(dir.join("statement.sig")).unwrap();
    let pending = clone.join("keys/pending");
    std::fs::write(pending.join("gamma.age.pub"), format!("{age}\n")).unwrap();
    std::fs::write(pending.join("gamma.ssh.pub"), format!("{ssh_pub}\n")).unwrap();
    std::fs::write(pending.join("gamma.sign.pub"), format!("{sign_pub}\n")).unwrap();
    std::fs::write(pending.join("gamma.poke.pub"), format!("{poke_pub}\n")).unwrap();
    std::fs::write(pending.join("gamma.proof"), format!("{statement}{sig}")).unwrap();
    git_commit(&clone, &[], "gamma", "gamma: enroll, waiting for approval");
    git_push(&clone, "HEAD:refs/heads/fleetkey/pending/gamma");
    let err = f.alpha.fails(&["approve", "gamma", "--code", &code], 1);
    assert!(
        err.contains("the enrollment code does not match gamma's request"),
        "{err}"
    );
    assert_eq!(head(&f.alpha), before, "nothing may be approved");

    // Attack 3: gamma's own keys, but the proof of another statement left beside them.
    let clone = attacker_clone(&f, "fleetkey/pending/gamma", "proof-only");
    run_program(Command::new("git").arg("-C").arg(&clone).args([
        "checkout",
        "-q",
        &original,
        "--",
        "keys/pending",
    ]));
    std::fs::write(
        clone.join("keys/pending/gamma.proof"),
        format!("{statement}{sig}"),
    )
    .unwrap();
    git_commit(&clone, &[], "gamma", "gamma: enroll, waiting for approval");
    git_push(&clone, "HEAD:refs/heads/fleetkey/pending/gamma");
    let err = f.alpha.fails(&["approve", "gamma", "--code", &code], 1);
    assert!(err.contains("is not proven"), "{err}");
    assert_eq!(head(&f.alpha), before, "nothing may be approved");

    // The honest machines go on: a secret set on alpha reaches beta, and a new machine joins.
    f.alpha
        .ok_with_stdin(&["secrets", "set", "TOKEN"], b"honest-2\n");
    f.beta.ok(&["sync"]);
    assert_eq!(f.beta.ok(&["secrets", "get", "TOKEN"]), "honest-2\n");
    let delta = Machine::new();
    admit(&f.alpha, &delta, "delta", &url);
    assert_eq!(delta.ok(&["secrets", "get", "TOKEN"]), "honest-2\n");
    // Everything fleetkey committed still verifies with stock git.
    let signers = f.alpha.ok(&["verify", "--allowed-signers"]);
    let allowed = f.alpha.tmp().join("allowed_signers");
    std::fs::write(&allowed, signers).unwrap();
    f.alpha.ok(&["sync"]);
    run_program(Command::new("git").arg("-C").arg(f.alpha.repo()).args([
        "-c",
        &format!("gpg.ssh.allowedSignersFile={}", allowed.display()),
        "verify-commit",
        "HEAD",
    ]));
}

#[test]
fn enroll_verifies_forward_from_the_founding_commit_and_refuses_a_planted_tip() {
    let f = fleet();
    let url = f.forge.url();
    // The attacker plants one commit on top of the fleet branch, signed by its own key.
    let clone = attacker_clone(&f, "main", "planted");
    let (key, _) = attacker_key(&clone.join("../mallory-p"), "sign");
    std::fs::write(clone.join("planted"), "x\n").unwrap();
    let sign = vec![
        "-c".to_string(),
        "gpg.format=ssh".to_string(),
        "-c".to_string(),
        format!("user.signingkey={}", key.display()),
        "-c".to_string(),
        "commit.gpgsign=true".to_string(),
    ];
    git_commit(&clone, &sign, "alpha", "alpha: nothing to see");
    git_push(&clone, "HEAD:refs/heads/main");
    let gamma = Machine::new();
    let out = gamma.run(&["enroll", "gamma", "--remote", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("does not verify") && stderr.contains("not an active member"),
        "{stderr}"
    );
    assert!(
        !gamma.home.join(".config/fleetkey/config.toml").exists(),
        "nothing may be set up from an unverified history"
    );
    // A member repairs the forge; the enrollment then goes through and pins the founding commit.
    f.alpha.run(&["sync"]);
    f.alpha.ok(&["forge", "repair", "--yes"]);
    let out = gamma.ok(&["enroll", "gamma", "--remote", &url]);
    let founding = git_out(&f.alpha.repo(), &["rev-list", "--max-parents=0", "HEAD"])
        .trim()
        .to_string();
    let config = std::fs::read_to_string(gamma.home.join(".config/fleetkey/config.toml")).unwrap();
    assert!(config.contains(&founding), "{config}");
    f.alpha
        .ok(&["approve", "gamma", "--code", &code_in(&out, "gamma")]);
    gamma.ok(&["sync"]);
    assert_eq!(gamma.ok(&["secrets", "get", "TOKEN"]), "honest-1\n");
}

/// A change an attacker makes in a clone.
type Change<'a> = Box<dyn Fn(&Path) + 'a>;

#[test]
fn a_member_signed_invalid_roster_is_refused_and_revocation_keeps_working() {
    let f = fleet();
    let url = f.forge.url();
    let carol = Machine::new();
    admit(&f.alpha, &carol, "carol", &url);
    f.beta.ok(&["sync"]);
    let beta_key = git_out(&f.beta.repo(), &["show", "HEAD:keys/beta.ssh.pub"]);
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "upper-case",
            Box::new(|c: &Path| {
                std::fs::write(c.join("keys/BETA.ssh.pub"), &beta_key).unwrap();
            }),
            "not a machine name",
        ),
        (
            "ssh-without-age",
            Box::new(|c: &Path| {
                std::fs::write(c.join("keys/zed.ssh.pub"), &beta_key).unwrap();
            }),
            "zed lacks its keys/zed.age.pub",
        ),
        (
            "two-recipients",
            Box::new(|c: &Path| {
                let p = c.join("keys/beta.age.pub");
                let mut t = std::fs::read_to_string(&p).unwrap();
                t.push_str(&t.clone());
                std::fs::write(p, t).unwrap();
            }),
            "more than one recipient",
        ),
        (
            "a-key-of-two-machines",
            Box::new(|c: &Path| {
                let p = c.join("keys/alpha.sign.pub");
                let mut t = std::fs::read_to_string(&p).unwrap();
                t.push_str(&std::fs::read_to_string(c.join("keys/beta.sign.pub")).unwrap());
                std::fs::write(p, t).unwrap();
            }),
            "held by both alpha and beta",
        ),
    ];
    for (tag, change, why) in cases {
        // beta, a member, commits the bad roster with its own signing key (stock git) and pushes.
        let clone = attacker_clone(&f, "main", tag);
        change(&clone);
        git_commit(&clone, &signing_config(&f.beta), "beta", "beta: roster");
        git_push(&clone, "HEAD:refs/heads/main");
        let bad = git_out(&clone, &["rev-parse", "HEAD"]).trim().to_string();
        let out = f.alpha.run(&["sync"]);
        assert_eq!(out.status.code(), Some(3), "{tag}");
        let status: serde_json::Value =
            serde_json::from_str(&f.alpha.ok(&["status", "--json"])).unwrap();
        let refused = status["trust"]["refused"].as_array().unwrap();
        assert!(
            refused.iter().any(|r| r["commit"] == bad.as_str()
                && r["why"].as_str().unwrap().contains("roster is invalid")
                && r["why"].as_str().unwrap().contains(why)),
            "{tag}: {refused:?}"
        );
        f.alpha.ok(&["forge", "repair", "--yes"]);
    }
    // Revocation, status and secrets still work on every honest machine.
    f.alpha.ok(&["revoke", "beta", "--yes"]);
    f.alpha.ok(&["status"]);
    f.alpha
        .ok_with_stdin(&["secrets", "set", "TOKEN"], b"after-revoke\n");
    carol.ok(&["sync"]);
    assert_eq!(carol.ok(&["secrets", "get", "TOKEN"]), "after-revoke\n");
    carol.ok(&["status"]);
}

#[test]
fn revoked_keys_stay_out_of_enroll_and_of_every_commit() {
    let f = fleet();
    let url = f.forge.url();
    let carol = Machine::new();
    admit(&f.alpha, &carol, "carol", &url);
    f.beta.ok(&["sync"]);
    let carol_ssh = git_out(&f.alpha.repo(), &["show", "HEAD:keys/carol.ssh.pub"]);
    let carol_sign = git_out(&f.alpha.repo(), &["show", "HEAD:keys/carol.sign.pub"]);
    f.alpha.ok(&["revoke", "carol", "--yes"]);
    f.beta.ok(&["sync"]);

    // beta (a member) puts carol's revoked keys back under a new name, with stock git.
    let clone = attacker_clone(&f, "main", "comeback");
    let age = attacker_recipient(&clone.join("../mallory-c"));
    std::fs::write(clone.join("keys/carol2.age.pub"), format!("{age}\n")).unwrap();
    std::fs::write(clone.join("keys/carol2.ssh.pub"), &carol_ssh).unwrap();
    std::fs::write(clone.join("keys/carol2.sign.pub"), &carol_sign).unwrap();
    // ... and deletes the lines of keys/revoked that name them.
    let revoked = std::fs::read_to_string(clone.join("keys/revoked")).unwrap();
    let kept: String = revoked
        .lines()
        .filter(|l| l.starts_with("# Revoked") || l.starts_with("# \""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(clone.join("keys/revoked"), kept).unwrap();
    git_commit(&clone, &signing_config(&f.beta), "beta", "beta: add carol2");
    git_push(&clone, "HEAD:refs/heads/main");
    let bad = git_out(&clone, &["rev-parse", "HEAD"]).trim().to_string();
    let out = f.alpha.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3));
    let status: serde_json::Value =
        serde_json::from_str(&f.alpha.ok(&["status", "--json"])).unwrap();
    let refused = status["trust"]["refused"].as_array().unwrap();
    assert!(
        refused
            .iter()
            .any(|r| r["commit"] == bad.as_str()
                && r["why"].as_str().unwrap().contains("revoked key")),
        "{refused:?}"
    );
    f.alpha.ok(&["forge", "repair", "--yes"]);

    // A machine that holds carol's revoked SSH key and signing key (a reinstalled laptop)
    // enrolls: enroll makes fresh keys and says so; the revoked ones never come back.
    let dave = Machine::new();
    std::fs::create_dir_all(dave.home.join(".ssh")).unwrap();
    for d in [".ssh", ".config", ".config/fleetkey"] {
        std::fs::create_dir_all(dave.home.join(d)).unwrap();
        std::fs::set_permissions(
            dave.home.join(d),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
    }
    for (from, to) in [
        (".ssh/id_ed25519", ".ssh/id_ed25519"),
        (".ssh/id_ed25519.pub", ".ssh/id_ed25519.pub"),
        (
            ".config/fleetkey/signing_key",
            ".config/fleetkey/signing_key",
        ),
        (
            ".config/fleetkey/identity.txt",
            ".config/fleetkey/identity.txt",
        ),
    ] {
        std::fs::copy(carol.home.join(from), dave.home.join(to)).unwrap();
    }
    let out = dave.ok(&["enroll", "dave", "--remote", &url]);
    assert!(
        out.contains("is revoked in this fleet; made a new login key")
            && out.contains("signing_key is revoked in this fleet")
            && out.contains("identity.txt is revoked in this fleet"),
        "{out}"
    );
    f.alpha
        .ok(&["approve", "dave", "--code", &code_in(&out, "dave")]);
    dave.ok(&["sync"]);
    let dave_ssh = git_out(&f.alpha.repo(), &["show", "HEAD:keys/dave.ssh.pub"]);
    assert_ne!(
        dave_ssh.split_whitespace().nth(1),
        carol_ssh.split_whitespace().nth(1)
    );
    let dave_sign = git_out(&f.alpha.repo(), &["show", "HEAD:keys/dave.sign.pub"]);
    assert_ne!(
        dave_sign.split_whitespace().nth(1),
        carol_sign.split_whitespace().nth(1)
    );
    assert_eq!(dave.ok(&["secrets", "get", "TOKEN"]), "honest-1\n");
    // The honest machines go on.
    f.alpha
        .ok_with_stdin(&["secrets", "set", "TOKEN"], b"honest-3\n");
    f.beta.ok(&["sync"]);
    assert_eq!(f.beta.ok(&["secrets", "get", "TOKEN"]), "honest-3\n");
}

/// The role `m`'s status gives machine `name`.
fn role_of(m: &Machine, name: &str) -> String {
    let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "--json"])).unwrap();
    status["fleet"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no role for {name}: {status}"))["role"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `m` syncs and refuses the forge's tip, which is `bad`, as outside its signer's authority.
fn refuses_unauthorized(m: &Machine, bad: &str, why: &str) {
    let out = m.run(&["sync"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "--json"])).unwrap();
    let refused = status["trust"]["refused"].as_array().unwrap();
    assert!(
        refused.iter().any(|r| r["commit"] == bad
            && r["why"]
                .as_str()
                .unwrap()
                .contains("outside its signer's authority")
            && r["why"].as_str().unwrap().contains(why)),
        "{refused:?}"
    );
}

#[test]
fn a_member_changes_no_other_machines_keys_nor_the_forge_and_an_admin_role_change_reaches_all() {
    let f = fleet();
    assert_eq!(role_of(&f.alpha, "alpha"), "admin");
    assert_eq!(role_of(&f.alpha, "beta"), "member");
    // beta (a member) plants its own second key in alpha's signing-key file, by stock git.
    let clone = attacker_clone(&f, "main", "plant-sign");
    let (_, planted) = attacker_key(&clone.join("../mallory-s"), "sign");
    let p = clone.join("keys/alpha.sign.pub");
    let mut t = std::fs::read_to_string(&p).unwrap();
    t.push_str(&format!("{planted}\n"));
    std::fs::write(&p, t).unwrap();
    git_commit(&clone, &signing_config(&f.beta), "beta", "beta: keys");
    git_push(&clone, "HEAD:refs/heads/main");
    let bad = git_out(&clone, &["rev-parse", "HEAD"]).trim().to_string();
    refuses_unauthorized(&f.alpha, &bad, "keys/alpha.sign.pub");
    f.alpha.ok(&["forge", "repair", "--yes"]);
    // beta moves the forge in fleet.toml.
    let clone = attacker_clone(&f, "main", "move-forge");
    let p = clone.join("fleet.toml");
    let t = std::fs::read_to_string(&p).unwrap();
    let moved: String = t
        .lines()
        .map(|l| {
            if l.starts_with("forge") {
                "forge = \"git://127.0.0.1:1/evil.git\"".to_string()
            } else {
                l.to_string()
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let moved = if moved.contains("forge =") {
        moved
    } else {
        format!("forge = \"git://127.0.0.1:1/evil.git\"\n{moved}")
    };
    std::fs::write(&p, moved).unwrap();
    git_commit(&clone, &signing_config(&f.beta), "beta", "beta: forge");
    git_push(&clone, "HEAD:refs/heads/main");
    let bad = git_out(&clone, &["rev-parse", "HEAD"]).trim().to_string();
    refuses_unauthorized(&f.alpha, &bad, "only an admin moves the fleet's forge");
    f.alpha.ok(&["forge", "repair", "--yes"]);
    // fleetkey itself refuses admin acts on a member, before committing anything.
    f.beta.ok(&["sync"]);
    let err = f.beta.fails(&["revoke", "alpha", "--yes"], 1);
    assert!(
        err.contains("only an admin may revoke a machine; beta is a member"),
        "{err}"
    );
    let err = f.beta.fails(&["role", "beta", "admin"], 1);
    assert!(err.contains("only an admin may change a role"), "{err}");
    // Whether the forge heals itself is an admin's to change too ([trust] heal).
    let err = f.beta.fails(&["config", "set", "heal", "true"], 1);
    assert!(
        err.contains("only an admin may change whether the forge heals itself"),
        "{err}"
    );
    let clone = attacker_clone(&f, "main", "trust");
    let p = clone.join("fleet.toml");
    let t = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, t.replace("heal = false", "heal = true")).unwrap();
    git_commit(&clone, &signing_config(&f.beta), "beta", "beta: heal");
    git_push(&clone, "HEAD:refs/heads/main");
    let bad = git_out(&clone, &["rev-parse", "HEAD"]).trim().to_string();
    refuses_unauthorized(
        &f.alpha,
        &bad,
        "only an admin changes whether the forge heals itself",
    );
    f.alpha.ok(&["forge", "repair", "--yes"]);
    f.beta.ok(&["sync"]);
    // beta's honest work as a member goes on: a dotfile it tracks reaches alpha.
    std::fs::write(f.beta.home.join(".gitconfig"), "[user]\n\tname = b\n").unwrap();
    f.beta.ok(&["track", "~/.gitconfig"]);
    f.alpha.ok(&["sync"]);
    assert_eq!(
        std::fs::read_to_string(f.alpha.home.join(".gitconfig")).unwrap(),
        "[user]\n\tname = b\n"
    );
    // alpha makes beta an admin: every machine sees it, and beta may now approve.
    f.alpha.ok(&["role", "beta", "admin"]);
    f.beta.ok(&["sync"]);
    assert_eq!(role_of(&f.beta, "beta"), "admin");
    let gamma = Machine::new();
    admit(&f.beta, &gamma, "gamma", &f.forge.url());
    assert_eq!(role_of(&gamma, "gamma"), "member");
    // The last admin is never demoted.
    f.alpha.ok(&["sync"]);
    f.alpha.ok(&["role", "beta", "member"]);
    let err = f.alpha.fails(&["role", "alpha", "member"], 1);
    assert!(err.contains("last admin"), "{err}");
}

#[test]
fn a_receiver_receives_everything_and_its_dotfile_commit_is_refused() {
    let f = fleet();
    std::fs::write(f.alpha.home.join(".zshrc"), "export A=1\n").unwrap();
    f.alpha.ok(&["track", "~/.zshrc"]);
    let server = receiver(&f);
    assert_eq!(role_of(&server, "server"), "receiver");
    assert_eq!(server.ok(&["secrets", "get", "TOKEN"]), "honest-1\n");
    assert_eq!(
        std::fs::read_to_string(server.home.join(".zshrc")).unwrap(),
        "export A=1\n"
    );
    // A local edit on the receiver is not captured: nothing goes to the forge. It is kept
    // aside as a conflict copy ("this machine only receives") and the fleet's version applied.
    let forge_before = f.forge.head();
    std::fs::write(server.home.join(".zshrc"), "export EVIL=1\n").unwrap();
    server.ok(&["sync"]);
    assert_eq!(
        f.forge.head(),
        forge_before,
        "a receiver pushes nothing shared"
    );
    assert_eq!(
        std::fs::read_to_string(server.home.join(".zshrc")).unwrap(),
        "export A=1\n"
    );
    let copies = server.conflict_copies(".zshrc");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(
        std::fs::read_to_string(&copies[0]).unwrap(),
        "export EVIL=1\n"
    );
    let status: serde_json::Value =
        serde_json::from_str(&server.ok(&["status", "--json"])).unwrap();
    let conflicts = status["sync"]["conflicts"].as_array().unwrap();
    assert!(
        conflicts.len() == 1
            && conflicts[0]["reason"] == "this machine only receives"
            && conflicts[0]["copy"] == copies[0].to_str().unwrap(),
        "{conflicts:?}"
    );
    let text = server.ok(&["status"]);
    assert!(
        text.contains(&format!(
            "CONFLICT: {} took the fleet's version; server's is kept in {} (this machine only receives)",
            server.home.join(".zshrc").display(),
            copies[0].display()
        )),
        "{text}"
    );
    // Keeping its own version would only make the next copy: refused, with what to do.
    let err = server.fails(&["resolve", "~/.zshrc", "--keep", "here"], 1);
    assert!(
        err.contains("server only receives (role receiver)")
            && err.contains("make the change on an admin or member machine"),
        "{err}"
    );
    server.ok(&["resolve", "~/.zshrc", "--keep", "fleet"]);
    assert!(server.conflict_copies(".zshrc").is_empty());
    // An edit of the fleet's version reaches the receiver as usual, with no copy.
    std::fs::write(f.alpha.home.join(".zshrc"), "export A=2\n").unwrap();
    f.alpha.ok(&["sync"]);
    server.ok(&["sync"]);
    assert_eq!(
        std::fs::read_to_string(server.home.join(".zshrc")).unwrap(),
        "export A=2\n"
    );
    assert!(server.conflict_copies(".zshrc").is_empty());
    // A compromised receiver pushes a .zshrc with stock git and its own key: refused.
    let clone = attacker_clone(&f, "main", "receiver-zshrc");
    std::fs::write(clone.join("home/.zshrc"), "export EVIL=1\n").unwrap();
    git_commit(&clone, &signing_config(&server), "server", "server: zshrc");
    git_push(&clone, "HEAD:refs/heads/main");
    let bad = git_out(&clone, &["rev-parse", "HEAD"]).trim().to_string();
    refuses_unauthorized(
        &f.alpha,
        &bad,
        "a receiver changes nothing the fleet shares",
    );
    assert_eq!(
        std::fs::read_to_string(f.alpha.home.join(".zshrc")).unwrap(),
        "export A=2\n"
    );
    f.alpha.ok(&["forge", "repair", "--yes"]);
    // The honest machines go on, and an admin's role change reaches every machine.
    f.alpha.ok(&["role", "server", "member"]);
    f.beta.ok(&["sync"]);
    server.ok(&["sync"]);
    assert_eq!(role_of(&f.beta, "server"), "member");
    assert_eq!(role_of(&server, "server"), "member");
}

/// The recipient an identity file names (`# public key: …`).
fn recipient_of(identity: &Path) -> String {
    std::fs::read_to_string(identity)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string()
}

/// `server`, enrolled and approved by alpha as a receiver; it and beta synced.
fn receiver(f: &Fleet) -> Machine {
    let server = Machine::new();
    let out = server.ok(&["enroll", "server", "--remote", &f.forge.url()]);
    f.alpha.ok(&[
        "approve",
        "server",
        "--code",
        &code_in(&out, "server"),
        "--role",
        "receiver",
    ]);
    server.ok(&["sync"]);
    f.beta.ok(&["sync"]);
    server
}

#[test]
fn a_receivers_rotate_is_accepted_and_the_next_member_cycle_moves_it_to_its_new_identity() {
    let f = fleet();
    let server = receiver(&f);
    let old = recipient_of(&server.identity());
    let old_identity = std::fs::read(server.identity()).unwrap();
    let old_ssh = git_out(&f.alpha.repo(), &["show", "HEAD:keys/server.ssh.pub"]);
    let old_sign = git_out(&f.alpha.repo(), &["show", "HEAD:keys/server.sign.pub"]);
    let old_poke = git_out(&f.alpha.repo(), &["show", "HEAD:keys/server.poke.pub"]);
    let body = |line: &str| line.split_whitespace().nth(1).unwrap().to_string();
    f.alpha.ok(&["sync"]);
    assert!(f.alpha.authorized_keys().contains(&body(&old_poke)));

    // The receiver rotates: only its own key files change; the secrets stay as they are.
    let out = server.ok(&["rotate", "--ssh"]);
    assert!(
        out.contains("server only receives: the secrets are re-encrypted to its new identity by the next admin or member sync"),
        "{out}"
    );
    let bare = f.forge.bare();
    let new = git_out(&bare, &["show", "main:keys/server.age.pub"])
        .trim()
        .to_string();
    assert_ne!(new, old);
    let recipients = git_out(&bare, &["show", "main:secrets.recipients"]);
    assert!(
        recipients.contains(&old) && !recipients.contains(&new),
        "{recipients}"
    );
    let changed = git_out(
        &bare,
        &["log", "--format=", "--name-only", "--author=server", "main"],
    );
    assert!(
        !changed.contains("secrets.") && changed.contains("keys/server.sign.pub"),
        "{changed}"
    );
    assert_ne!(
        git_out(&bare, &["show", "main:keys/server.ssh.pub"]),
        old_ssh
    );
    let revoked = git_out(&bare, &["show", "main:keys/revoked"]);
    for key in [&old_ssh, &old_sign] {
        assert!(
            revoked.contains(key.split_whitespace().nth(1).unwrap()),
            "{revoked}"
        );
    }
    // It keeps its old identity (still the one the secrets are encrypted to) beside the new.
    assert_eq!(std::fs::read(server.identity()).unwrap(), old_identity);
    let waiting = server.identity().with_file_name("identity.txt.next");
    assert_eq!(recipient_of(&waiting), new);
    assert_eq!(server.ok(&["secrets", "get", "TOKEN"]), "honest-1\n");
    let text = server.ok(&["status"]);
    assert!(
        text.contains(
            "the next sync of an admin or member re-encrypts them (this machine only receives)"
        ) && text.contains("new identity waiting: this receiver's rotate is done")
            && !text.contains("ROTATION UNFINISHED"),
        "{text}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&server.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["machine"]["new_identity_waiting"], true);
    assert_eq!(status["machine"]["unfinished_rotation"], false);

    // The next member cycle (a fast-forward onto the rotate) re-encrypts and pushes; every
    // machine accepts the receiver's commits and the member's.
    f.beta.ok(&["sync"]);
    let recipients = git_out(&bare, &["show", "main:secrets.recipients"]);
    assert!(
        recipients.contains(&new) && !recipients.contains(&old),
        "{recipients}"
    );
    assert!(
        git_out(&bare, &["log", "-1", "--format=%s", "main"])
            .contains("beta: re-encrypt the secrets to the roster's age keys")
    );
    for m in [&f.alpha, &f.beta, &server] {
        m.ok(&["sync"]);
        let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "--json"])).unwrap();
        assert!(
            status["trust"]["refused"].as_array().unwrap().is_empty()
                && status["secrets"]["stale_recipients"] == false,
            "{status}"
        );
    }
    // Its poke key was rotated too: the others admit the new one only.
    let new_poke = git_out(&bare, &["show", "main:keys/server.poke.pub"]);
    assert_ne!(body(&new_poke), body(&old_poke));
    let admitted = f.alpha.authorized_keys();
    assert!(
        admitted.contains(&body(&new_poke)) && !admitted.contains(&body(&old_poke)),
        "{admitted}"
    );
    // The receiver now reads the secrets with its new identity only: the old one is retired.
    assert!(!waiting.exists());
    let status: serde_json::Value =
        serde_json::from_str(&server.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["machine"]["new_identity_waiting"], false);
    assert_eq!(recipient_of(&server.identity()), new);
    let retired = server
        .identity()
        .with_file_name("retired")
        .join(format!("{old}.txt"));
    let secret_line = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .map(str::to_string)
    };
    assert_eq!(
        secret_line(&std::fs::read(&retired).unwrap()),
        secret_line(&old_identity)
    );
    let ciphertext = server.repo().join("secrets.env.age");
    assert!(crate::util::age_decrypt(&retired, &ciphertext).is_none());
    assert_eq!(
        crate::util::age_decrypt(&server.identity(), &ciphertext).unwrap(),
        b"TOKEN=honest-1\n"
    );
    assert_eq!(server.ok(&["secrets", "get", "TOKEN"]), "honest-1\n");
    // The honest machines go on: a new secret reaches the receiver.
    f.alpha
        .ok_with_stdin(&["secrets", "set", "TOKEN"], b"honest-2\n");
    server.ok(&["sync"]);
    assert_eq!(server.ok(&["secrets", "get", "TOKEN"]), "honest-2\n");
    // And stock git verifies what the receiver signed with its new key (its poke key's
    // rotation) and the member's re-encryption, with the roster's allowed_signers.
    let allowed = f.alpha.tmp().join("allowed_signers");
    std::fs::write(&allowed, f.alpha.ok(&["verify", "--allowed-signers"])).unwrap();
    let last_of = |who: &str| {
        git_out(
            &bare,
            &[
                "log",
                "-1",
                "--format=%H",
                &format!("--author={who}"),
                "main",
            ],
        )
        .trim()
        .to_string()
    };
    for c in [last_of("server"), last_of("beta")] {
        run_program(Command::new("git").arg("-C").arg(&bare).args([
            "-c",
            &format!("gpg.ssh.allowedSignersFile={}", allowed.display()),
            "verify-commit",
            &c,
        ]));
    }
}

#[test]
fn a_receivers_rotate_killed_at_any_step_never_locks_it_out_and_ends_on_its_new_identity() {
    for point in ["rotate:roster-written", "rotate:pushed", "rotate:retired"] {
        let f = fleet();
        let server = receiver(&f);
        server.killed_at(&["rotate"], point);
        assert_eq!(
            server.ok(&["secrets", "get", "TOKEN"]),
            "honest-1\n",
            "locked out after a crash at {point}"
        );
        // A member's cycle in between never takes the half-done rotate for a finished one.
        f.beta.ok(&["sync"]);
        server.ok(&["sync"]);
        assert_eq!(
            server.ok(&["secrets", "get", "TOKEN"]),
            "honest-1\n",
            "{point}"
        );
        server.ok(&["rotate"]);
        f.beta.ok(&["sync"]);
        server.ok(&["sync"]);
        f.alpha.ok(&["sync"]);
        let waiting = server.identity().with_file_name("identity.txt.next");
        assert!(!waiting.exists(), "{point}");
        let new = git_out(&f.forge.bare(), &["show", "main:keys/server.age.pub"]);
        assert_eq!(recipient_of(&server.identity()), new.trim(), "{point}");
        assert_eq!(
            crate::util::age_decrypt(&server.identity(), &server.repo().join("secrets.env.age"))
                .as_deref(),
            Some(&b"TOKEN=honest-1\n"[..]),
            "{point}"
        );
    }
}

#[test]
fn approve_refuses_a_request_holding_a_key_in_the_revoked_set() {
    let f = fleet();
    let url = f.forge.url();
    // Two machines made from one image hold the same keys. One enrolls and waits; the other
    // enrolls too (its keys are nobody's in the roster yet), is admitted, then revoked.
    let dave = Machine::new();
    let out = dave.ok(&["enroll", "dave", "--remote", &url]);
    let dave_code = code_in(&out, "dave");
    let twin = Machine::new();
    for d in [".ssh", ".config", ".config/fleetkey"] {
        std::fs::create_dir_all(twin.home.join(d)).unwrap();
        std::fs::set_permissions(
            twin.home.join(d),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
    }
    for f in [
        ".ssh/id_ed25519",
        ".ssh/id_ed25519.pub",
        ".config/fleetkey/signing_key",
        ".config/fleetkey/identity.txt",
    ] {
        std::fs::copy(dave.home.join(f), twin.home.join(f)).unwrap();
    }
    let out = twin.ok(&["enroll", "twin", "--remote", &url]);
    f.alpha
        .ok(&["approve", "twin", "--code", &code_in(&out, "twin")]);
    f.alpha.ok(&["revoke", "twin", "--yes"]);
    let before = f.forge.head();
    // dave's request holds keys now in the revoked set: approve refuses it, nothing changes.
    let err = f.alpha.fails(&["approve", "dave", "--code", &dave_code], 1);
    assert!(
        err.contains("the enrollment request of dave holds a revoked key")
            && err.contains("nothing was approved")
            && err.contains("a revoked key never comes back"),
        "{err}"
    );
    assert_eq!(f.forge.head(), before);
    assert!(
        !git_out(
            &f.alpha.repo(),
            &["ls-tree", "--name-only", "HEAD", "keys/"]
        )
        .contains("dave")
    );
    // The honest machines go on.
    f.alpha
        .ok_with_stdin(&["secrets", "set", "TOKEN"], b"honest-2\n");
    f.beta.ok(&["sync"]);
    assert_eq!(f.beta.ok(&["secrets", "get", "TOKEN"]), "honest-2\n");
}

#[test]
fn a_commit_made_before_approval_is_replayed_never_pushed_as_it_is() {
    let f = fleet();
    let url = f.forge.url();
    let gamma = Machine::new();
    let out = gamma.ok(&["enroll", "gamma", "--remote", &url]);
    f.alpha
        .ok(&["approve", "gamma", "--code", &code_in(&out, "gamma")]);
    // Approved a moment ago, gamma tracks a file before its first sync: the commit is made on
    // the pre-approval base, where gamma is no member yet.
    std::fs::write(gamma.home.join(".vimrc"), "set nu\n").unwrap();
    gamma.ok(&["track", "~/.vimrc"]);
    gamma.ok(&["sync"]);
    // Every other machine accepts what gamma pushed: the fleet does not freeze.
    f.alpha.ok(&["sync"]);
    f.beta.ok(&["sync"]);
    assert_eq!(
        std::fs::read_to_string(f.beta.home.join(".vimrc")).unwrap(),
        "set nu\n"
    );
    let log = git_out(&f.alpha.repo(), &["log", "-1", "--format=%s", "HEAD"]);
    assert!(
        git_out(&f.alpha.repo(), &["log", "--format=%s"]).contains("gamma: replay"),
        "{log}"
    );
    // And stock git still verifies the replayed commit.
    let signers = f.alpha.ok(&["verify", "--allowed-signers"]);
    let allowed = f.alpha.tmp().join("allowed_signers");
    std::fs::write(&allowed, signers).unwrap();
    let replayed = git_out(
        &f.alpha.repo(),
        &["log", "--format=%H", "--grep=gamma: replay", "-1"],
    );
    run_program(Command::new("git").arg("-C").arg(f.alpha.repo()).args([
        "-c",
        &format!("gpg.ssh.allowedSignersFile={}", allowed.display()),
        "verify-commit",
        replayed.trim(),
    ]));
}

#[test]
fn the_lost_identity_hint_leads_back_into_the_fleet_with_fresh_keys() {
    let f = fleet();
    let url = f.forge.url();
    let old_ssh = git_out(&f.alpha.repo(), &["show", "HEAD:keys/beta.ssh.pub"]);
    let old_sign = git_out(&f.alpha.repo(), &["show", "HEAD:keys/beta.sign.pub"]);
    std::fs::remove_file(f.beta.identity()).unwrap();
    let err = f.beta.fails(&["secrets", "get", "TOKEN"], 1);
    assert!(
        err.contains("move ~/.config/fleetkey/config.toml and the clone")
            && err.contains("fleetkey enroll NEWNAME --remote URL")
            && err.contains("fleetkey revoke OLDNAME"),
        "{err}"
    );
    // The hint, step by step.
    let aside = f.beta.dir.path().join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    std::fs::rename(
        f.beta.home.join(".config/fleetkey/config.toml"),
        aside.join("config.toml"),
    )
    .unwrap();
    std::fs::rename(f.beta.repo(), aside.join("fleet")).unwrap();
    let out = f.beta.ok(&["enroll", "beta2", "--remote", &url]);
    assert!(
        out.contains("signing_key is already a member's key in this fleet")
            && out.contains("is already a member's key in this fleet; made a new login key"),
        "{out}"
    );
    f.alpha.ok(&["sync"]);
    f.alpha
        .ok(&["approve", "beta2", "--code", &code_in(&out, "beta2")]);
    f.alpha.ok(&["revoke", "beta", "--yes"]);
    f.beta.ok(&["sync"]);
    assert_eq!(f.beta.ok(&["secrets", "get", "TOKEN"]), "honest-1\n");
    let new_ssh = git_out(&f.alpha.repo(), &["show", "HEAD:keys/beta2.ssh.pub"]);
    let new_sign = git_out(&f.alpha.repo(), &["show", "HEAD:keys/beta2.sign.pub"]);
    let key = |l: &str| l.split_whitespace().nth(1).map(str::to_string);
    assert_ne!(key(&new_ssh), key(&old_ssh));
    assert_ne!(key(&new_sign), key(&old_sign));
    // beta2 works as a member after the old name's revocation: its edits reach alpha.
    f.beta
        .ok_with_stdin(&["secrets", "set", "TOKEN"], b"from-beta2\n");
    f.alpha.ok(&["sync"]);
    assert_eq!(f.alpha.ok(&["secrets", "get", "TOKEN"]), "from-beta2\n");
}

#[test]
fn the_compromise_report_lists_every_admin_act_with_its_undo() {
    let f = fleet();
    let url = f.forge.url();
    f.alpha.ok(&["role", "beta", "admin"]);
    f.beta.ok(&["sync"]);
    // beta, now admin, admits gamma and makes it a receiver.
    let gamma = Machine::new();
    admit(&f.beta, &gamma, "gamma", &url);
    f.beta.ok(&["role", "gamma", "receiver"]);
    f.alpha.ok(&["sync"]);
    let out = f
        .alpha
        .ok(&["revoke", "beta", "--yes", "--compromised", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let acts = report["admin_acts"].as_array().unwrap();
    let pairs: Vec<(String, String)> = acts
        .iter()
        .map(|a| {
            (
                a["act"].as_str().unwrap().to_string(),
                a["undo"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            (
                "admitted gamma as member".to_string(),
                "fleetkey revoke gamma".to_string()
            ),
            (
                "changed gamma's role from member to receiver".to_string(),
                "fleetkey role gamma member".to_string()
            ),
        ],
        "{report:#}"
    );
    // The undo commands work as printed.
    f.alpha.ok(&["role", "gamma", "member"]);
    f.alpha.ok(&["revoke", "gamma", "--yes"]);
    f.alpha.ok(&["status"]);
}

#[test]
fn only_an_admin_changes_whose_login_keys_the_fleet_admits() {
    let f = fleet();
    assert_eq!(role_of(&f.beta, "beta"), "member");
    // `config set ssh_from` on a member is refused before anything is committed.
    let err = f.beta.fails(
        &["config", "set", "ssh_from", "admin", "member", "receiver"],
        1,
    );
    assert!(
        err.contains("only an admin may change whose login keys the fleet admits (ssh_from); beta is a member"),
        "{err}"
    );
    // A compromised member pushes the change with stock git and its own key: refused.
    let clone = attacker_clone(&f, "main", "member-from");
    let toml = clone.join("fleet.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let fixed = text.replace(
        "[authorized_keys]\n",
        "[authorized_keys]\nfrom = [\"admin\", \"member\", \"receiver\"]\n",
    );
    assert_ne!(
        fixed, text,
        "fleet.toml has an [authorized_keys] table:\n{text}"
    );
    std::fs::write(&toml, fixed).unwrap();
    git_commit(&clone, &signing_config(&f.beta), "beta", "beta: ssh_from");
    git_push(&clone, "HEAD:refs/heads/main");
    let bad = git_out(&clone, &["rev-parse", "HEAD"]).trim().to_string();
    refuses_unauthorized(
        &f.alpha,
        &bad,
        "only an admin changes whose login keys the fleet admits ([authorized_keys] from)",
    );
    assert_eq!(
        f.alpha.ok(&["config", "get", "ssh_from"]),
        "admin\nmember\n"
    );
    f.alpha.ok(&["forge", "repair", "--yes"]);
    // A member writing the default out explicitly changes nothing: accepted.
    let clone = attacker_clone(&f, "main", "member-default");
    let toml = clone.join("fleet.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace(
            "[authorized_keys]\n",
            "[authorized_keys]\nfrom = [\"admin\", \"member\"]\n",
        ),
    )
    .unwrap();
    git_commit(
        &clone,
        &signing_config(&f.beta),
        "beta",
        "beta: the default",
    );
    git_push(&clone, "HEAD:refs/heads/main");
    f.alpha.ok(&["sync"]);
    // The admin changes it: every machine takes it.
    f.alpha
        .ok(&["config", "set", "ssh_from", "admin", "member", "backup-box"]);
    f.beta.ok(&["sync"]);
    assert_eq!(
        f.beta.ok(&["config", "get", "authorized_keys.from"]),
        "admin\nmember\nbackup-box\n"
    );
    // A bad entry is named by key and position, never quoted.
    let err = f
        .alpha
        .fails(&["config", "set", "ssh_from", "admin", "Not_A_Name"], 1);
    assert!(
        err.contains("ssh_from cannot be set")
            && err
                .contains("entry 2 is neither a role (admin, member, receiver) nor a machine name")
            && !err.contains("Not_A_Name"),
        "{err}"
    );
}

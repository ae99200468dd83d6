//! The key lifecycle on simulated machines (one HOME each, the real binary, one shared forge):
//! enroll → approve, bundles, rotate, revoke --compromised with its exposure report, bad input,
//! and crash safety with the process killed at every step.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::fleet::join;
use crate::util::{Machine, age_decrypt, code_in, enrollment_code, run_program, snapshot};

/// Brings `m` up to the forge: one sync cycle.
fn pull(m: &Machine) {
    m.ok(&["sync"]);
}

fn forge_of(first: &Machine) -> String {
    first.forge().to_str().unwrap().to_string()
}

/// A fleet of `alpha` (on its embedded forge) plus `names`, each enrolled, approved by alpha
/// with the fingerprint enroll printed, and synced.
fn fleet(names: &[&str]) -> Vec<Machine> {
    let alpha = Machine::named("alpha");
    alpha.ok(&["init", "--name", "alpha"]);
    let forge = forge_of(&alpha);
    let mut all = vec![alpha];
    for name in names {
        let m = Machine::named(name);
        join(&all[0], &m, &forge);
        all.push(m);
    }
    all
}

fn age_decrypts(identity: &Path, file: &Path) -> bool {
    age_decrypt(identity, file).is_some()
}

#[test]
fn an_approved_machine_reads_the_secrets_and_a_pending_one_cannot() {
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha"]);
    alpha.ok_with_stdin(&["secrets", "set", "TOKEN"], b"t-1\n");
    let beta = Machine::new();
    let out = beta.ok(&["enroll", "beta", "--remote", &forge_of(&alpha)]);
    let fp = beta.ssh_fingerprint();
    assert!(
        out.contains(&fp) && out.contains("age1") && out.contains("[SHA256]"),
        "{out}"
    );
    let err = beta.fails(&["secrets", "get", "TOKEN"], 1);
    assert!(err.contains("cannot decrypt"), "{err}");

    pull(&alpha);
    alpha.ok(&["approve", "beta", "--code", &code_in(&out, "beta")]);
    pull(&beta);
    assert_eq!(beta.ok(&["secrets", "get", "TOKEN"]), "t-1\n");
    assert!(age_decrypts(
        &beta.identity(),
        &beta.repo().join("secrets.env.age")
    ));
    assert!(beta.repo().join("keys/beta.ssh.pub").is_file());
    assert!(beta.repo().join("keys/beta.sign.pub").is_file());
    assert!(!beta.repo().join("keys/pending").exists());
    // The approve commit (beta's first cycle as a member follows it with its poke key).
    let subjects = crate::util::git_out(&beta.repo(), &["log", "--format=%H %s"]);
    let approve = subjects
        .lines()
        .find(|l| {
            l.split_once(' ')
                .unwrap()
                .1
                .starts_with("alpha: approve beta")
        })
        .unwrap_or_else(|| panic!("no approve commit:\n{subjects}"))
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let log = run_program(Command::new("git").arg("-C").arg(beta.repo()).args([
        "show",
        "--name-only",
        "--no-renames",
        "--format=%s",
        &approve,
    ]));
    let log = String::from_utf8(log).unwrap();
    assert!(log.starts_with("alpha: approve beta"), "{log}");
    for f in [
        "keys/beta.age.pub",
        "keys/beta.sign.pub",
        "secrets.env.age",
        "secrets.recipients",
    ] {
        assert!(log.contains(f), "the approve commit must hold {f}: {log}");
    }
}

#[test]
fn a_taken_bad_or_revoked_name_cannot_enroll() {
    let ms = fleet(&["beta"]);
    let forge = forge_of(&ms[0]);
    let err = Machine::new().fails(&["enroll", "beta", "--remote", &forge], 1);
    assert!(err.contains("taken"), "{err}");
    let err = Machine::new().fails(&["enroll", "Bad_Name", "--remote", &forge], 1);
    assert!(err.contains("not a valid machine name"), "{err}");
    ms[0].ok(&["revoke", "beta", "--yes"]);
    let err = Machine::new().fails(&["enroll", "beta", "--remote", &forge], 1);
    assert!(err.contains("revoked"), "{err}");
}

#[test]
fn a_wrong_fingerprint_or_a_tampered_pending_key_approves_nothing() {
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha"]);
    let beta = Machine::new();
    beta.ok(&["enroll", "beta", "--remote", &forge_of(&alpha)]);
    pull(&alpha);
    let before = fleet_state(&alpha);
    let err = alpha.fails(
        &["approve", "beta", "--code", "0000-0000-0000-0000-0000"],
        1,
    );
    assert!(err.contains("does not match"), "{err}");
    assert_eq!(before, fleet_state(&alpha), "nothing may be approved");
    // The SSH fingerprint enroll printed is no code: one key says nothing of the others.
    let err = alpha.fails(
        &["approve", "beta", "--fingerprint", &beta.ssh_fingerprint()],
        1,
    );
    assert!(
        err.contains("a key's fingerprint does not approve beta")
            && err.contains("enrollment code: "),
        "{err}"
    );
    assert_eq!(before, fleet_state(&alpha), "nothing may be approved");
    // Without a terminal and without --code, nothing is approved either.
    let err = alpha.fails(&["approve", "beta"], 1);
    assert!(err.contains("needs --code"), "{err}");
    assert_eq!(before, fleet_state(&alpha), "nothing may be approved");

    // Someone with push access swaps the pending recipient for garbage on the request branch.
    let attacker = alpha.tmp().join("attacker");
    run_program(
        Command::new("git")
            .args([
                "clone",
                "--quiet",
                "--branch",
                "fleetkey/pending/beta",
                "--",
            ])
            .arg(alpha.forge())
            .arg(&attacker),
    );
    std::fs::write(
        attacker.join("keys/pending/beta.age.pub"),
        "age1-not-a-recipient\n",
    )
    .unwrap();
    run_program(Command::new("git").arg("-C").arg(&attacker).args([
        "-c",
        "user.name=x",
        "-c",
        "user.email=x@x",
        "commit",
        "-qam",
        "tamper",
    ]));
    run_program(Command::new("git").arg("-C").arg(&attacker).args([
        "push",
        "--quiet",
        "origin",
        "HEAD:refs/heads/fleetkey/pending/beta",
    ]));
    let before = fleet_state(&alpha);
    let code = enrollment_code(&beta);
    let err = alpha.fails(&["approve", "beta", "--code", &code], 1);
    assert!(err.contains("keys/pending/beta.age.pub line 1"), "{err}");
    assert_eq!(before, fleet_state(&alpha), "nothing may be approved");
}

/// The clone's branch and working tree (fetched objects aside): what an approval would change.
fn fleet_state(m: &Machine) -> (String, Vec<PathBuf>) {
    let head = run_program(
        Command::new("git")
            .arg("-C")
            .arg(m.repo())
            .args(["rev-parse", "HEAD"]),
    );
    let tree = snapshot(&m.repo());
    let files = tree
        .0
        .iter()
        .filter(|(p, _)| !p.components().any(|c| c.as_os_str() == ".git"))
        .map(|(p, b)| p.join(format!("{}", b.len())))
        .collect();
    (String::from_utf8(head).unwrap(), files)
}

#[test]
fn a_bundle_carries_the_keys_and_a_wrong_or_truncated_one_changes_nothing() {
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha"]);
    alpha.ok_with_stdin(&["secrets", "set", "TOKEN"], b"t-2\n");
    let pass = alpha.dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let bundle = alpha.dir.path().join("gamma.bundle");
    alpha.ok(&[
        "enroll",
        "gamma",
        "--bundle",
        bundle.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{text}"
    );
    assert!(!text.contains("AGE-SECRET-KEY"));
    for (_, bytes) in snapshot(&alpha.repo()).0 {
        assert!(!crate::util::contains(&bytes, b"OPENSSH PRIVATE KEY"));
    }

    let gamma = Machine::new();
    let wrong = gamma.dir.path().join("wrong");
    std::fs::write(&wrong, "incorrect\n").unwrap();
    let forge = forge_of(&alpha);
    let before = snapshot(&gamma.home);
    let err = gamma.fails(
        &[
            "join",
            bundle.to_str().unwrap(),
            "--remote",
            &forge,
            "--passphrase-file",
            wrong.to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    let truncated = gamma.dir.path().join("cut.bundle");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    let err = gamma.fails(
        &[
            "join",
            truncated.to_str().unwrap(),
            "--remote",
            &forge,
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("damaged or truncated"), "{err}");
    assert!(before.diff(&snapshot(&gamma.home)).is_empty());

    gamma.ok(&[
        "join",
        bundle.to_str().unwrap(),
        "--remote",
        &forge,
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert_eq!(gamma.ok(&["secrets", "get", "TOKEN"]), "t-2\n");
    assert!(gamma.home.join(".ssh/id_ed25519").is_file());
}

#[test]
fn rotate_gives_a_new_identity_the_old_one_cannot_read_and_others_need_nothing() {
    let ms = fleet(&["beta"]);
    let (alpha, beta) = (&ms[0], &ms[1]);
    alpha.ok_with_stdin(&["secrets", "set", "TOKEN"], b"t-3\n");
    pull(beta);
    let old = beta.dir.path().join("old-identity.txt");
    std::fs::copy(beta.identity(), &old).unwrap();
    let poke_pub = |m: &Machine| {
        std::fs::read_to_string(m.repo().join("keys/beta.poke.pub")).unwrap_or_default()
    };
    let old_poke = poke_pub(beta);
    assert!(
        old_poke.starts_with("ssh-ed25519 "),
        "beta published its poke key: {old_poke:?}"
    );
    beta.ok(&["rotate"]);
    assert!(
        !beta
            .home
            .join(".config/fleetkey/identity.txt.next")
            .exists()
    );
    let secrets = beta.repo().join("secrets.env.age");
    assert!(
        !age_decrypts(&old, &secrets),
        "the old identity must not read the new file"
    );
    assert!(age_decrypts(&beta.identity(), &secrets));
    assert_eq!(beta.ok(&["secrets", "get", "TOKEN"]), "t-3\n");
    pull(alpha);
    assert_eq!(alpha.ok(&["secrets", "get", "TOKEN"]), "t-3\n");
    let revoked = std::fs::read_to_string(alpha.repo().join("keys/revoked")).unwrap();
    assert!(
        revoked.contains("# beta ") && revoked.contains(" rotated"),
        "{revoked}"
    );
    // The poke key is replaced too, and the old one revoked.
    let new_poke = poke_pub(alpha);
    assert!(new_poke.starts_with("ssh-ed25519 ") && new_poke != old_poke);
    let old_blob = old_poke.split_whitespace().nth(1).unwrap();
    assert!(revoked.contains(old_blob), "{revoked}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(beta.home.join(".config/fleetkey/poke_key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the poke key is private");
}

#[test]
fn revoke_compromised_reports_exactly_what_the_key_could_read() {
    let ms = fleet(&["beta", "gamma"]);
    let (alpha, beta, gamma) = (&ms[0], &ms[1], &ms[2]);
    pull(alpha);
    // Every machine's applied authorized_keys admits beta before the revocation.
    let beta_ssh = std::fs::read_to_string(beta.home.join(".ssh/id_ed25519.pub")).unwrap();
    let beta_key = beta_ssh.split_whitespace().nth(1).unwrap().to_string();
    let applied = |m: &Machine| {
        std::fs::read_to_string(m.home.join(".ssh/authorized_keys")).unwrap_or_default()
    };
    assert!(applied(gamma).contains(&beta_key), "{}", applied(gamma));
    alpha.ok_with_stdin(&["secrets", "set", "SEEN_AND_KEPT"], b"a\n");
    alpha.ok_with_stdin(&["secrets", "set", "SEEN_THEN_GONE"], b"b\n");
    alpha.ok(&["secrets", "unset", "SEEN_THEN_GONE"]);
    let stolen = beta.identity();
    let report = alpha.ok(&["revoke", "beta", "--yes", "--compromised", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let names: Vec<&str> = report["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["SEEN_AND_KEPT", "SEEN_THEN_GONE"]);
    assert_eq!(report["machine"], "beta");
    assert!(report["secrets"][0]["first"].as_str().unwrap().len() == 10);

    alpha.ok_with_stdin(&["secrets", "set", "AFTER"], b"c\n");
    let secrets = alpha.repo().join("secrets.env.age");
    assert!(
        !age_decrypts(&stolen, &secrets),
        "the revoked identity must not read the new file"
    );
    assert!(age_decrypts(&alpha.identity(), &secrets));
    let list = alpha.ok(&["secrets", "list"]);
    assert!(list.contains("SEEN_AND_KEPT\tNEEDS A NEW VALUE"), "{list}");
    assert!(!list.contains("AFTER\tNEEDS"), "{list}");
    alpha.ok_with_stdin(&["secrets", "set", "SEEN_AND_KEPT"], b"new\n");
    assert!(!alpha.ok(&["secrets", "list"]).contains("NEEDS A NEW VALUE"));

    pull(gamma);
    assert_eq!(gamma.ok(&["secrets", "get", "AFTER"]), "c\n");
    let revoked = std::fs::read_to_string(gamma.repo().join("keys/revoked")).unwrap();
    let ssh = std::fs::read_to_string(beta.home.join(".ssh/id_ed25519.pub")).unwrap();
    let key = ssh.split_whitespace().nth(1).unwrap();
    assert!(
        revoked.contains(key) && revoked.contains("# beta ") && revoked.contains("compromised"),
        "{revoked}"
    );
    assert!(!gamma.repo().join("keys/beta.ssh.pub").exists());
    // After the next sync, no machine's authorized_keys admits beta.
    pull(alpha);
    for m in [alpha, gamma] {
        let file = applied(m);
        assert!(!file.contains(&beta_key), "{file}");
        assert!(
            file.contains("fleetkey=alpha") && file.contains("fleetkey=gamma"),
            "{file}"
        );
    }
    // Every machine's merge now drops beta's key, even from a line the user wrote.
    let before = format!(
        "# mine\n{} fleetkey=beta\nno-pty {}",
        ssh.trim(),
        ssh.trim()
    );
    let after = gamma.ok_with_stdin(&["authorized-keys"], before.as_bytes());
    assert!(!after.contains(key), "{after}");
    assert!(after.starts_with("# mine\n"), "{after}");
}

#[test]
fn revoking_yourself_or_the_last_machine_is_refused() {
    let ms = fleet(&["beta"]);
    let err = ms[0].fails(&["revoke", "alpha"], 1);
    assert!(err.contains("running on"), "{err}");
    ms[0].ok(&["revoke", "beta", "--yes"]);
    let lone = Machine::new();
    lone.ok(&["init", "--name", "solo"]);
    let err = lone.fails(&["revoke", "solo"], 1);
    assert!(err.contains("running on"), "{err}");
}

/// Checks that in every commit of `repo`, secrets.recipients lists exactly keys/*.age.pub.
fn every_commit_agrees(repo: &Path) {
    let log = run_program(
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["rev-list", "HEAD"]),
    );
    for commit in String::from_utf8(log).unwrap().lines() {
        let files = run_program(Command::new("git").arg("-C").arg(repo).args([
            "ls-tree",
            "--name-only",
            commit,
            "keys/",
        ]));
        let mut roster: Vec<String> = String::from_utf8(files)
            .unwrap()
            .lines()
            .filter(|f| f.ends_with(".age.pub"))
            .map(|f| {
                let out = run_program(
                    Command::new("git")
                        .arg("-C")
                        .arg(repo)
                        .args(["show", &format!("{commit}:{f}")]),
                );
                String::from_utf8(out).unwrap().trim().to_string()
            })
            .collect();
        roster.sort();
        let recorded = run_program(
            Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(["show", &format!("{commit}:secrets.recipients")]),
        );
        let recorded: Vec<String> = String::from_utf8(recorded)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(
            roster, recorded,
            "commit {commit}: the roster and its ciphertext disagree"
        );
    }
}

#[test]
fn approve_killed_at_every_step_leaves_a_consistent_fleet_and_completes_on_rerun() {
    for point in ["approve:moved", "approve:encrypted", "approve:committed"] {
        let alpha = Machine::new();
        alpha.ok(&["init", "--name", "alpha"]);
        alpha.ok_with_stdin(&["secrets", "set", "K"], b"v\n");
        let beta = Machine::new();
        beta.ok(&["enroll", "beta", "--remote", &forge_of(&alpha)]);
        let fp = enrollment_code(&beta);
        alpha.killed_at(&["approve", "beta", "--code", &fp], point);
        assert_eq!(
            alpha.ok(&["secrets", "get", "K"]),
            "v\n",
            "after a crash at {point}"
        );
        every_commit_agrees(&alpha.repo());
        alpha.ok(&["approve", "beta", "--code", &fp]);
        every_commit_agrees(&alpha.repo());
        pull(&beta);
        assert_eq!(
            beta.ok(&["secrets", "get", "K"]),
            "v\n",
            "after re-running from {point}"
        );
        every_commit_agrees(&alpha.forge());
    }
}

#[test]
fn rotate_killed_at_every_step_never_locks_the_machine_out() {
    for point in [
        "rotate:identity-made",
        "rotate:roster-written",
        "rotate:encrypted",
        "rotate:committed",
        "rotate:pushed",
    ] {
        let ms = fleet(&["beta"]);
        let (alpha, beta) = (&ms[0], &ms[1]);
        alpha.ok_with_stdin(&["secrets", "set", "K"], b"v\n");
        pull(beta);
        beta.killed_at(&["rotate"], point);
        assert_eq!(
            beta.ok(&["secrets", "get", "K"]),
            "v\n",
            "beta locked out after a crash at {point}"
        );
        every_commit_agrees(&beta.repo());
        beta.ok(&["rotate"]);
        assert!(
            !beta
                .home
                .join(".config/fleetkey/identity.txt.next")
                .exists(),
            "{point}"
        );
        assert!(
            age_decrypts(&beta.identity(), &beta.repo().join("secrets.env.age")),
            "{point}"
        );
        pull(alpha);
        assert_eq!(alpha.ok(&["secrets", "get", "K"]), "v\n", "{point}");
        every_commit_agrees(&alpha.forge());
    }
}

#[test]
fn revoke_killed_at_every_step_completes_on_rerun() {
    for point in [
        "revoke:roster-written",
        "revoke:encrypted",
        "revoke:committed",
    ] {
        let ms = fleet(&["beta"]);
        let (alpha, beta) = (&ms[0], &ms[1]);
        pull(alpha);
        alpha.ok_with_stdin(&["secrets", "set", "K"], b"v\n");
        alpha.killed_at(&["revoke", "beta", "--yes", "--compromised"], point);
        assert_eq!(alpha.ok(&["secrets", "get", "K"]), "v\n", "{point}");
        every_commit_agrees(&alpha.repo());
        alpha.ok(&["revoke", "beta", "--yes", "--compromised"]);
        every_commit_agrees(&alpha.forge());
        assert!(
            !age_decrypts(&beta.identity(), &alpha.repo().join("secrets.env.age")),
            "{point}"
        );
    }
}

#[test]
fn a_revoked_machine_is_told_when_and_by_whom_by_sync_secrets_and_doctor() {
    let ms = fleet(&["beta", "gamma"]);
    let (alpha, beta) = (&ms[0], &ms[1]);
    alpha.ok_with_stdin(&["secrets", "set", "TOKEN"], b"t-1\n");
    pull(beta);
    alpha.ok(&["revoke", "beta", "--yes"]);
    let today = today();
    let said = format!("this machine was revoked from the fleet on {today} (by alpha)");
    // Each of the three says it, and none says "synced" or sends it to check its approval.
    let err = beta.fails(&["sync"], 1);
    assert!(err.contains(&said), "{err}");
    let rec = beta.last_cycle().unwrap();
    assert_eq!(rec["result"], "error", "{rec}");
    let err = beta.fails(&["secrets", "get", "TOKEN"], 1);
    assert!(err.contains(&said) && !err.contains("approved"), "{err}");
    let out = beta.run(&["doctor"]);
    let doctor = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{doctor}");
    let row = doctor
        .lines()
        .find(|l| l.contains(" roster "))
        .unwrap_or_else(|| panic!("no roster row:\n{doctor}"));
    assert!(row.starts_with("FAIL") && row.contains(&said), "{row}");
    // The members are not affected: gamma syncs and reads the secret.
    pull(&ms[2]);
    assert_eq!(ms[2].ok(&["secrets", "get", "TOKEN"]), "t-1\n");
}

/// Today's date as the machines write it (UTC).
fn today() -> String {
    let out = run_program(Command::new("date").args(["-u", "+%Y-%m-%d"]));
    String::from_utf8(out).unwrap().trim().to_string()
}

#[test]
fn revoke_asks_off_a_terminal_for_yes_and_a_dry_run_changes_nothing() {
    let ms = fleet(&["beta"]);
    let alpha = &ms[0];
    let forge_head = || crate::util::git_out(&alpha.forge(), &["rev-parse", "refs/heads/main"]);
    let before = forge_head();
    let err = alpha.fails(&["revoke", "beta"], 1);
    assert!(err.contains("needs --yes"), "{err}");
    let out = alpha.ok(&["revoke", "beta", "--dry-run"]);
    assert!(
        out.contains("would") && out.contains("Nothing was changed"),
        "{out}"
    );
    assert_eq!(forge_head(), before, "nothing reached the forge");
    assert!(alpha.repo().join("keys/beta.age.pub").is_file());
    alpha.ok(&["revoke", "beta", "--yes"]);
    assert!(!alpha.repo().join("keys/beta.age.pub").exists());
}

#[test]
fn revoke_drops_the_key_from_this_machines_authorized_keys_before_it_returns() {
    let ms = fleet(&["beta"]);
    let (alpha, beta) = (&ms[0], &ms[1]);
    pull(alpha);
    let key = beta.ssh_key();
    let blob = key.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        alpha.authorized_keys().contains(&blob),
        "{}",
        alpha.authorized_keys()
    );
    alpha.ok(&["revoke", "beta", "--yes"]);
    let file = alpha.authorized_keys();
    assert!(
        !file.contains(&blob),
        "no sync ran, and the key must be gone:\n{file}"
    );
    assert!(file.contains("fleetkey=alpha"), "{file}");
}

#[test]
fn revoke_compromised_again_marks_only_values_the_key_could_read() {
    let ms = fleet(&["beta"]);
    let alpha = &ms[0];
    alpha.ok_with_stdin(&["secrets", "set", "REPLACED"], b"old\n");
    alpha.ok_with_stdin(&["secrets", "set", "KEPT"], b"kept\n");
    alpha.ok(&["revoke", "beta", "--yes", "--compromised"]);
    let list = alpha.ok(&["secrets", "list"]);
    assert!(list.contains("REPLACED\tNEEDS A NEW VALUE"), "{list}");
    assert!(list.contains("KEPT\tNEEDS A NEW VALUE"), "{list}");
    // The user replaces one value after the revocation, then asks for the report again.
    alpha.ok_with_stdin(&["secrets", "set", "REPLACED"], b"fresh\n");
    alpha.ok_with_stdin(&["secrets", "set", "LATER"], b"later\n");
    let out = alpha.ok(&["revoke", "beta", "--yes", "--compromised"]);
    assert!(out.contains("REPLACED"), "the report still names it: {out}");
    let list = alpha.ok(&["secrets", "list"]);
    assert!(!list.contains("REPLACED\tNEEDS"), "{list}");
    assert!(!list.contains("LATER\tNEEDS"), "{list}");
    assert!(list.contains("KEPT\tNEEDS A NEW VALUE"), "{list}");
}

#[test]
fn a_failed_enroll_leaves_no_data_directory_and_a_rerun_works() {
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha"]);
    let beta = Machine::named("beta");
    let nowhere = beta.dir.path().join("no-such-forge.git");
    beta.fails(
        &["enroll", "beta", "--remote", nowhere.to_str().unwrap()],
        1,
    );
    let data = beta.home.join(".local/share/fleetkey");
    assert!(!data.exists(), "{} was left behind", data.display());
    // The same command, at the right forge, now goes through.
    crate::util::fleet::join(&alpha, &beta, &forge_of(&alpha));
    assert!(beta.repo().join("keys/beta.age.pub").is_file());
}

#[test]
fn the_first_sync_after_approval_already_works_as_a_member() {
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha"]);
    let beta = Machine::named("beta");
    let fp = crate::util::fleet::enroll(&beta, &forge_of(&alpha));
    // Before approval: a pending machine captures nothing, and says so.
    let out = beta.run(&["sync"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an active member"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    alpha.ok(&["approve", "beta", "--fingerprint", &fp]);
    let out = beta.run(&["sync"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("not an active member"), "{err}");
    // Its poke key went out in that same cycle: it acted as a member at once.
    let published =
        crate::util::git_out(&alpha.forge(), &["ls-tree", "--name-only", "main", "keys/"]);
    assert!(published.contains("keys/beta.poke.pub"), "{published}");
}

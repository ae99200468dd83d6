//! `status` and `doctor` on real fleets: what they show, and that they never show a secret.

use std::os::unix::fs::PermissionsExt;

use crate::util::{Machine, contains, enrollment_code};

const CANARY: &[u8] = b"CANARY-status-0b9e2f";

#[test]
fn status_json_shows_pending_revoked_conflicts_and_exposed_secrets_but_no_value() {
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha"]);
    let forge = alpha.forge().to_str().unwrap().to_string();
    let mut value = CANARY.to_vec();
    value.push(b'\n');
    alpha.ok_with_stdin(&["secrets", "set", "TOKEN"], &value);
    // beta stays; carol is revoked as compromised; gamma waits for approval.
    let beta = Machine::new();
    beta.ok(&["enroll", "beta", "--remote", &forge]);
    alpha.ok(&["approve", "beta", "--code", &enrollment_code(&beta)]);
    let carol = Machine::new();
    carol.ok(&["enroll", "carol", "--remote", &forge]);
    alpha.ok(&["approve", "carol", "--code", &enrollment_code(&carol)]);
    alpha.ok(&["revoke", "carol", "--yes", "--compromised"]);
    let gamma = Machine::new();
    gamma.ok(&["enroll", "gamma", "--remote", &forge]);

    // A file both alpha and beta change: upstream (beta, first to push) wins on alpha.
    std::fs::write(alpha.home.join(".zshrc"), "export A=1\n").unwrap();
    alpha.ok(&["track", "~/.zshrc"]);
    beta.ok(&["sync"]);
    std::fs::write(beta.home.join(".zshrc"), "export A=beta\n").unwrap();
    beta.ok(&["sync"]);
    std::fs::write(alpha.home.join(".zshrc"), "export A=alpha\n").unwrap();
    // The same secret set differently on both: a conflict kept inside the encrypted file.
    beta.ok_with_stdin(&["secrets", "set", "SHARED"], b"from-beta\n");
    alpha.ok_with_stdin(&["secrets", "set", "SHARED", "--no-push"], b"from-alpha\n");
    alpha.ok(&["sync"]);

    let out = alpha.ok(&["status", "--json"]);
    assert!(!contains(out.as_bytes(), CANARY), "{out}");
    assert!(
        !out.contains("from-alpha") && !out.contains("from-beta"),
        "{out}"
    );
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["machine"]["name"], "alpha");
    assert_eq!(s["fleet"]["active"], serde_json::json!(["alpha", "beta"]));
    assert_eq!(s["fleet"]["pending"], serde_json::json!(["gamma"]));
    assert!(
        s["fleet"]["revoked"][0]
            .as_str()
            .unwrap()
            .starts_with("carol "),
        "{s}"
    );
    assert_eq!(s["secrets"]["needs_new_value"][0]["key"], "TOKEN");
    assert_eq!(s["secrets"]["conflicts"][0]["key"], "SHARED");
    assert_eq!(s["secrets"]["conflicts"][0]["from"], "alpha");
    assert_eq!(s["secrets"]["stale_recipients"], false);
    let conflict = &s["sync"]["conflicts"][0];
    assert!(
        conflict["path"].as_str().unwrap().ends_with(".zshrc"),
        "{s}"
    );
    assert!(
        conflict["copy"]
            .as_str()
            .unwrap()
            .contains(".zshrc.conflict-alpha-"),
        "{s}"
    );
    assert_eq!(s["sync"]["last_cycle"]["result"], "ok");
    assert!(
        s["machine"]["ssh_fingerprints"][0]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    let text = alpha.ok(&["status"]);
    assert!(
        text.contains("CONFLICT") && text.contains("pending approval: gamma"),
        "{text}"
    );

    // gamma (pending) sees itself pending and cannot read the secrets, and says so.
    let g: serde_json::Value = serde_json::from_str(&gamma.ok(&["status", "--json"])).unwrap();
    assert_eq!(g["fleet"]["pending"], serde_json::json!(["gamma"]));
    assert!(
        g["secrets"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot decrypt")
    );
}

#[test]
fn doctor_passes_a_healthy_machine_and_names_the_fix_for_each_problem() {
    let m = Machine::new();
    m.ok(&["init", "--name", "alpha"]);
    let out = m.ok(&["doctor"]);
    assert!(out.lines().all(|l| !l.starts_with("FAIL")), "{out}");
    assert!(out.contains("forge") && out.contains("identity"), "{out}");

    std::fs::set_permissions(m.identity(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let moved = m.dir.path().join("away.git");
    std::fs::rename(m.forge(), &moved).unwrap();
    let out = m.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  identity") && text.contains("chmod 600"),
        "{text}"
    );
    assert!(
        text.contains("FAIL  forge") && text.contains("there is no repository at"),
        "{text}"
    );
}

#[test]
fn a_lost_identity_fails_doctor_and_sync_after_the_cycle_did_its_work() {
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha"]);
    alpha.ok_with_stdin(&["secrets", "set", "TOKEN"], b"t-1\n");
    alpha.write(".zshrc", b"# one\n");
    alpha.ok(&["track", "~/.zshrc"]);
    std::fs::rename(alpha.identity(), alpha.dir.path().join("identity-lost.txt")).unwrap();
    let out = alpha.run(&["doctor"]);
    let doctor = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{doctor}");
    let row = doctor
        .lines()
        .find(|l| l.contains(" identity "))
        .unwrap_or_else(|| panic!("no identity row:\n{doctor}"));
    assert!(
        row.starts_with("FAIL") && row.contains("does not exist") && row.contains("enroll NEWNAME"),
        "{row}"
    );
    // The cycle still captures and pushes the edit, then fails instead of saying "synced".
    alpha.write(".zshrc", b"# two\n");
    let err = alpha.fails(&["sync"], 1);
    assert!(
        err.contains("cannot read the identity") && err.contains("enroll NEWNAME"),
        "{err}"
    );
    let forge_file = crate::util::git_out(&alpha.forge(), &["show", "main:home/.zshrc"]);
    assert_eq!(forge_file, "# two", "the edit went out all the same");
}

#[test]
fn doctor_says_a_local_file_too_large_to_capture_is_fixed_here() {
    let a = Machine::new();
    a.write(".config/app/settings", b"a = 1\n");
    a.ok(&["init", "--name", "alpha"]);
    a.ok(&["track", "~/.config/app/"]);
    a.write(".config/app/big.bin", &vec![7u8; 20 << 20]);
    a.ok(&["sync"]);
    let out = a.run(&["doctor"]);
    let doctor = String::from_utf8_lossy(&out.stdout);
    let row = doctor
        .lines()
        .find(|l| l.contains("big.bin"))
        .unwrap_or_else(|| panic!("no held-back row for big.bin:\n{doctor}"));
    assert!(
        row.contains("this machine's own file") && row.contains("fleetkey config add ignore"),
        "{row}"
    );
    assert!(!row.contains("on a member"), "{row}");
}

#[test]
fn fleet_and_status_say_when_the_other_machines_were_fetched() {
    let a = Machine::new();
    a.ok(&["init", "--name", "alpha"]);
    let status = a.ok(&["status"]);
    assert!(!status.contains("silent"), "right after init: {status}");
    assert!(
        status.contains("no other machine in the fleet yet"),
        "{status}"
    );
    let fleet = a.ok(&["fleet"]);
    assert!(fleet.contains("never fetched yet"), "{fleet}");
    a.ok(&["sync"]);
    let fleet = a.ok(&["fleet"]);
    assert!(
        fleet.contains("the other machines as of the last fetch, "),
        "{fleet}"
    );
    let view: serde_json::Value = serde_json::from_str(&a.ok(&["fleet", "--json"])).unwrap();
    assert!(
        view["fetched_at"].as_str().unwrap().ends_with('Z'),
        "{view:#}"
    );
}

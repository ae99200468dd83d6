//! `fleetkey authorized-keys` by chezmoi's `modify_` contract (chezmoi itself cannot be
//! installed here, so the contract is tested exactly): the current file on stdin, empty when the
//! target does not exist; the whole new file on stdout; on any error nothing on stdout and a
//! non-zero exit, because chezmoi deletes a target whose `modify_` output is empty.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::util::{Machine, require, run_program};

fn keygen(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    run_program(
        Command::new(require("ssh-keygen", "openssh-client"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path),
    );
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

struct Keys {
    m: Machine,
    dir: std::path::PathBuf,
    fleet: String,
    revoked: String,
}

fn keys() -> Keys {
    let m = Machine::new();
    let dir = m.dir.path().join("keys");
    std::fs::create_dir(&dir).unwrap();
    let fleet = keygen(m.dir.path(), "mac");
    let revoked = keygen(m.dir.path(), "stolen");
    std::fs::write(dir.join("mac.ssh.pub"), format!("{fleet}\n")).unwrap();
    std::fs::write(
        dir.join("revoked"),
        format!("{revoked}\n# stolen 2026-11-27 compromised\n"),
    )
    .unwrap();
    Keys {
        m,
        dir,
        fleet,
        revoked,
    }
}

#[test]
fn an_absent_target_gets_exactly_the_fleet_lines() {
    let k = keys();
    let out =
        k.m.ok_with_stdin(&["authorized-keys", "--keys", k.dir.to_str().unwrap()], b"");
    assert_eq!(out, format!("{} fleetkey=mac\n", k.fleet));
}

#[test]
fn an_unchanged_file_comes_back_byte_for_byte_and_twice_changes_nothing() {
    let k = keys();
    let input = format!(
        "# mine\r\n{} fleetkey=mac\r\nno-pty ssh-unknown-v9@example.com AAAA future\r\n",
        k.fleet
    );
    let args = ["authorized-keys", "--keys", k.dir.to_str().unwrap()];
    let out = k.m.ok_with_stdin(&args, input.as_bytes());
    assert_eq!(out, input);
    let local = format!("# no final newline\n{}", k.revoked);
    let once = k.m.ok_with_stdin(&args, local.as_bytes());
    assert!(!once.contains(&k.revoked), "{once}");
    assert_eq!(k.m.ok_with_stdin(&args, once.as_bytes()), once);
}

#[test]
fn a_failing_or_empty_roster_prints_nothing_and_fails() {
    let k = keys();
    let args = ["authorized-keys", "--keys", k.dir.to_str().unwrap()];
    // A bad key line: the error names the file and line, stdout stays empty.
    std::fs::write(
        k.dir.join("bad.ssh.pub"),
        "# ok\nssh-ed25519 !!!notbase64 x\n",
    )
    .unwrap();
    let out = k.m.run_with_stdin(&args, b"# my file\n");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "stdout must be empty on error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.ssh.pub") && err.contains("2"), "{err}");
    // No active key at all.
    std::fs::remove_file(k.dir.join("bad.ssh.pub")).unwrap();
    std::fs::remove_file(k.dir.join("mac.ssh.pub")).unwrap();
    let out = k.m.run_with_stdin(&args, b"# my file\n");
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "stdout must be empty with no fleet key"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active SSH key"));
}

#[test]
fn apply_writes_atomically_0600_creates_the_ssh_dir_and_refuses_a_symlink() {
    let k = keys();
    let ssh = k.m.home.join(".ssh");
    let target = ssh.join("authorized_keys");
    let keys_dir = k.dir.to_str().unwrap();
    k.m.ok(&[
        "authorized-keys",
        "--keys",
        keys_dir,
        "--apply",
        target.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::metadata(&ssh).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        format!("{} fleetkey=mac\n", k.fleet)
    );

    let check = k.m.run(&[
        "authorized-keys",
        "--keys",
        keys_dir,
        "--check",
        target.to_str().unwrap(),
    ]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    std::fs::write(&target, format!("{}\n", k.revoked)).unwrap();
    let check = k.m.run(&[
        "authorized-keys",
        "--keys",
        keys_dir,
        "--check",
        target.to_str().unwrap(),
    ]);
    assert_eq!(check.status.code(), Some(1));
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        said.contains("would add") && said.contains("would remove"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        format!("{}\n", k.revoked),
        "--check writes nothing"
    );

    let real = k.m.dir.path().join("elsewhere");
    std::fs::write(&real, "keep\n").unwrap();
    std::fs::remove_file(&target).unwrap();
    std::os::unix::fs::symlink(&real, &target).unwrap();
    let err = k.m.fails(
        &[
            "authorized-keys",
            "--keys",
            keys_dir,
            "--apply",
            target.to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "keep\n");
}

#[test]
fn without_keys_it_reads_the_fleet_repo_of_this_machine() {
    let m = Machine::new();
    m.ok(&["init", "--name", "alpha"]);
    let own = std::fs::read_to_string(m.home.join(".ssh/id_ed25519.pub")).unwrap();
    let out = m.ok_with_stdin(&["authorized-keys"], b"# mine\n");
    assert_eq!(out, format!("# mine\n{} fleetkey=alpha\n", own.trim()));
}

#[test]
fn check_says_which_added_key_logs_in_and_which_only_pokes() {
    let fleet = crate::util::fleet::Fleet::new(
        crate::util::forge::Transport::GitDaemon,
        &["alpha", "beta"],
    );
    // Every member has published its poke key and every clone holds the others'.
    fleet.settle(2);
    let a = fleet.n(0);
    let target = a.dir.path().join("authorized_keys_check");
    std::fs::write(&target, "").unwrap();
    let check = a.run(&["authorized-keys", "--check", target.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    let said = String::from_utf8_lossy(&check.stdout);
    let lines: Vec<&str> = said.lines().collect();
    let with = |s: &str| lines.iter().filter(|l| l.contains(s)).count();
    assert_eq!(with("(beta, login key) at line"), 1, "{said}");
    assert_eq!(
        with("(beta, poke key: may only run `fleetkey poke`) at line"),
        1,
        "{said}"
    );
    // Every change is one `would add` line; after them, why each fleet key is there.
    assert!(
        lines
            .iter()
            .filter(|l| l.contains(" at line "))
            .all(|l| l.starts_with("would add     SHA256:")),
        "{said}"
    );
    assert_eq!(with("would add"), 3, "{said}");
    assert_eq!(with("login keys from: admin, member"), 1, "{said}");
}

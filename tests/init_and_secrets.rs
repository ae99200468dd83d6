//! `init` and `secrets`: interop with Debian's `age` both ways, bad input and faults that leave
//! every file as it was, and a canary secret that must appear nowhere but in the ciphertext.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::util::{Machine, contains, require, run_program, snapshot};

fn machine(name: &str) -> Machine {
    let m = Machine::new();
    m.ok(&["init", "--name", name]);
    m
}

#[test]
fn init_makes_a_private_identity_and_a_fleet_on_the_embedded_forge() {
    let m = machine("alpha");
    let id = m.identity();
    assert_eq!(
        std::fs::metadata(&id).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let dir = id.parent().unwrap();
    assert_eq!(
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in [
        "fleet.toml",
        "keys/alpha.age.pub",
        "keys/alpha.ssh.pub",
        "keys/revoked",
        "secrets.env.age",
        "secrets.recipients",
    ] {
        assert!(m.repo().join(f).is_file(), "{f} is missing");
    }
    let recipient = std::fs::read_to_string(m.repo().join("keys/alpha.age.pub")).unwrap();
    assert_eq!(
        std::fs::read_to_string(m.repo().join("secrets.recipients")).unwrap(),
        recipient
    );
    // The forge holds the same commit as the clone.
    let head = |dir: &std::path::Path| {
        run_program(
            Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["rev-parse", "main"]),
        )
    };
    assert_eq!(head(&m.repo()), head(&m.forge()));
    assert!(m.home.join(".ssh/id_ed25519").is_file());
}

#[test]
fn secrets_fleetkey_writes_decrypt_with_the_stock_age_binary() {
    let age = require("age", "age");
    let m = machine("alpha");
    m.ok_with_stdin(&["secrets", "set", "API_TOKEN"], b"tok-123\n");
    m.ok_with_stdin(
        &["secrets", "set", "PEM"],
        b"-----BEGIN X-----\nabc\n-----END X-----\n",
    );
    let plain = run_program(
        Command::new(age)
            .arg("-d")
            .arg("-i")
            .arg(m.identity())
            .arg(m.repo().join("secrets.env.age")),
    );
    let text = String::from_utf8(plain).unwrap();
    assert!(text.contains("API_TOKEN=tok-123\n"), "{text}");
    assert!(text.contains("PEM="), "{text}");
    assert_eq!(
        m.ok(&["secrets", "get", "PEM"]),
        "-----BEGIN X-----\nabc\n-----END X-----\n"
    );
}

/// Encrypts `plain` with Debian's `age` to the roster, as the fleet's secrets file.
fn age_encrypt_to_roster(age: &std::path::Path, m: &Machine, plain: &std::path::Path) {
    run_program(
        Command::new(age)
            .args(["-a", "-R"])
            .arg(m.repo().join("secrets.recipients"))
            .arg("-o")
            .arg(m.repo().join("secrets.env.age"))
            .arg(plain),
    );
}

#[test]
fn secrets_the_stock_age_binary_encrypts_to_the_roster_are_read_by_fleetkey() {
    let age = require("age", "age");
    let m = machine("alpha");
    let plain = m.dir.path().join("plain.env");
    std::fs::write(
        &plain,
        "# written by age\nDB_URL=postgres://x@y/z # not a comment\nQUOTED='a b'\n",
    )
    .unwrap();
    age_encrypt_to_roster(&age, &m, &plain);
    assert_eq!(
        m.ok(&["secrets", "get", "DB_URL"]),
        "postgres://x@y/z # not a comment\n"
    );
    assert_eq!(m.ok(&["secrets", "get", "QUOTED"]), "a b\n");
    assert_eq!(m.ok(&["secrets", "list"]), "DB_URL\nQUOTED\n");
}

#[test]
fn set_unset_and_export_keep_comments_and_read_back_through_sh() {
    let m = machine("alpha");
    m.ok_with_stdin(&["secrets", "set", "A"], b"it's \"quoted\" $HOME `x`\n");
    m.ok_with_stdin(&["secrets", "set", "B"], b"line1\nline2\n");
    m.ok_with_stdin(&["secrets", "set", "C"], b"gone\n");
    m.ok(&["secrets", "unset", "C"]);
    let export = m.dir.path().join("export.sh");
    std::fs::write(&export, m.ok(&["secrets", "export", "--format", "sh"])).unwrap();
    let out = run_program(
        Command::new("sh")
            .arg("-c")
            .arg("set -a; . \"$1\"; printf '%s|%s|%s' \"$A\" \"$B\" \"${C-unset}\"")
            .arg("sh")
            .arg(&export),
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "it's \"quoted\" $HOME `x`|line1\nline2|unset"
    );
    let json: serde_json::Value =
        serde_json::from_str(&m.ok(&["secrets", "export", "--format", "json"])).unwrap();
    assert_eq!(json["B"], "line1\nline2");
    let second = m.fails(&["secrets", "unset", "C"], 1);
    assert!(second.contains("no secret named C"), "{second}");
}

#[test]
fn exec_passes_the_secrets_in_the_environment_only() {
    let m = machine("alpha");
    m.ok_with_stdin(&["secrets", "set", "TOKEN"], b"s3cr3t\n");
    // Unmasked on request; what the command writes to a pipe is masked by default.
    let out = m.ok(&[
        "secrets",
        "exec",
        "--no-mask",
        "--",
        "sh",
        "-c",
        "printf %s \"$TOKEN\"",
    ]);
    assert_eq!(out, "s3cr3t");
    let out = m.ok(&["secrets", "exec", "--", "sh", "-c", "printf %s \"$TOKEN\""]);
    assert_eq!(out, "<concealed by fleetkey>");
}

#[test]
fn a_value_never_comes_from_argv() {
    let m = machine("alpha");
    let err = m.fails(&["secrets", "set", "K", "value"], 2);
    assert!(
        err.starts_with("fleetkey: error: secrets set takes no value on the command line"),
        "{err}"
    );
    assert!(
        !err.contains("value\n") && !err.contains("`value`"),
        "{err}"
    );
    assert_eq!(m.ok(&["secrets", "list"]), "", "nothing was set");
}

#[test]
fn init_twice_is_an_error_that_points_to_enroll_and_changes_nothing() {
    let m = machine("alpha");
    let before = snapshot(&m.home);
    let err = m.fails(&["init", "--name", "alpha"], 1);
    assert!(
        err.contains("already set up") && err.contains("enroll"),
        "{err}"
    );
    assert_eq!(snapshot(&m.home), before);
}

#[test]
fn init_against_a_forge_that_holds_a_fleet_points_to_enroll() {
    let first = machine("alpha");
    let second = Machine::new();
    let forge = first.forge();
    let before = snapshot(&forge);
    let err = second.fails(
        &[
            "init",
            "--name",
            "beta",
            "--remote",
            forge.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        err.contains("already holds a fleet") && err.contains("fleetkey enroll beta"),
        "{err}"
    );
    assert_eq!(snapshot(&forge), before);
    assert!(!second.home.join(".config/fleetkey/config.toml").exists());
}

/// Runs `args` expecting failure, and checks that the error says `expect` and that no file of
/// the machine changed.
fn fails_and_changes_nothing(m: &Machine, args: &[&str], expect: &str) -> String {
    let before = snapshot(&m.home);
    let err = m.fails(args, 1);
    assert!(err.starts_with("fleetkey: error: "), "{err}");
    assert!(err.contains(expect), "expected {expect:?} in:\n{err}");
    let changed = before.diff(&snapshot(&m.home));
    assert!(
        changed.is_empty(),
        "files changed after a failed {args:?}: {changed:?}"
    );
    err
}

#[test]
fn an_identity_readable_by_others_is_refused() {
    let m = machine("alpha");
    std::fs::set_permissions(m.identity(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails_and_changes_nothing(&m, &["secrets", "get", "X"], "accessible by others");
    assert!(err.contains("chmod go-rwx"), "{err}");
}

#[test]
fn a_missing_or_wrong_identity_is_a_clear_error() {
    let m = machine("alpha");
    m.ok_with_stdin(&["secrets", "set", "K"], b"v\n");
    let saved = std::fs::read(m.identity()).unwrap();
    std::fs::remove_file(m.identity()).unwrap();
    fails_and_changes_nothing(&m, &["secrets", "get", "K"], "identity");

    let other = machine("other");
    std::fs::copy(other.identity(), m.identity()).unwrap();
    let err = fails_and_changes_nothing(&m, &["secrets", "get", "K"], "cannot decrypt");
    assert!(
        err.contains("No matching keys") || err.contains("no matching"),
        "{err}"
    );
    std::fs::write(m.identity(), saved).unwrap();
    assert_eq!(m.ok(&["secrets", "get", "K"]), "v\n");
}

#[test]
fn a_corrupted_or_truncated_ciphertext_is_an_error_and_nothing_is_written() {
    let m = machine("alpha");
    m.ok_with_stdin(&["secrets", "set", "K"], b"v\n");
    let path = m.repo().join("secrets.env.age");
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    fails_and_changes_nothing(&m, &["secrets", "get", "K"], "cannot decrypt");
    fails_and_changes_nothing(&m, &["secrets", "set", "K"], "cannot decrypt");
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    std::fs::write(&path, &flipped).unwrap();
    fails_and_changes_nothing(&m, &["secrets", "list"], "cannot decrypt");
}

#[test]
fn a_malformed_decrypted_file_names_the_line_and_not_its_content() {
    let age = require("age", "age");
    let m = machine("alpha");
    let plain = m.dir.path().join("plain.env");
    std::fs::write(&plain, "OK=1\nCANARY_LEAK=\"unterminated-secret-value\n").unwrap();
    age_encrypt_to_roster(&age, &m, &plain);
    let err = fails_and_changes_nothing(&m, &["secrets", "get", "OK"], "line 2");
    assert!(!err.contains("unterminated-secret-value"), "{err}");
}

#[test]
fn unknown_keys_in_config_files_are_named() {
    let m = machine("alpha");
    let fleet = m.repo().join("fleet.toml");
    let text = std::fs::read_to_string(&fleet).unwrap();
    std::fs::write(
        &fleet,
        text.replace("[secrets]", "[secrets]\nrecipent = \"x\""),
    )
    .unwrap();
    let err = fails_and_changes_nothing(&m, &["secrets", "set", "X"], "fleet.toml");
    assert!(err.contains("recipent"), "{err}");
    std::fs::write(&fleet, text).unwrap();

    let config = m.home.join(".config/fleetkey/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}colour = \"blue\"\n")).unwrap();
    let err = fails_and_changes_nothing(&m, &["secrets", "list"], "config.toml");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn offline_a_change_is_committed_locally_and_exits_75() {
    // A forge that stopped answering (a forge that answers "no such repository" is not
    // offline: that is exit 1, see messages.rs).
    let mut forge = crate::util::forge::Forge::start(crate::util::forge::Transport::GitDaemon);
    let m = forge.machine("alpha");
    m.ok(&["init", "--name", "alpha", "--remote", &forge.url()]);
    forge.stop();
    let out = m.run_with_stdin(&["secrets", "set", "K"], b"v\n");
    crate::util::assert_failure(&out, &["secrets", "set", "K"], 75);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is unreachable")
            && err.contains(
                "hint: 1 commit made here is kept and goes out with the next `fleetkey sync`"
            ),
        "{err}"
    );
    let log =
        run_program(
            Command::new("git")
                .arg("-C")
                .arg(m.repo())
                .args(["log", "--format=%s", "-1"]),
        );
    assert_eq!(
        String::from_utf8(log).unwrap().trim(),
        "alpha: secrets: set K"
    );
    assert_eq!(m.ok(&["secrets", "get", "K"]), "v\n");
}

const CANARY: &[u8] = b"CANARY-7f3a9c1e-do-not-leak";

#[test]
fn a_canary_secret_reaches_no_git_object_file_or_output() {
    let m = machine("alpha");
    let mut value = CANARY.to_vec();
    value.push(b'\n');
    m.ok_with_stdin(&["secrets", "set", "CANARY"], &value);
    m.ok_with_stdin(&["secrets", "set", "OTHER"], b"x\n");
    m.ok(&["secrets", "unset", "OTHER"]);

    for repo in [m.repo(), m.forge()] {
        let objects = run_program(Command::new("git").arg("-C").arg(&repo).args([
            "cat-file",
            "--batch-all-objects",
            "--batch",
        ]));
        assert!(!objects.is_empty());
        assert!(
            !contains(&objects, CANARY),
            "the canary is in a git object of {}",
            repo.display()
        );
    }
    for dir in [m.state(), m.tmp(), m.repo()] {
        for (path, bytes) in snapshot(&dir).0 {
            assert!(
                !contains(&bytes, CANARY),
                "the canary is in {}",
                path.display()
            );
        }
    }
    let list = m.ok(&["secrets", "list"]);
    assert!(!contains(list.as_bytes(), CANARY), "{list}");
    let err = m.fails(&["secrets", "get", "MISSING"], 1);
    assert!(!contains(err.as_bytes(), CANARY), "{err}");
}

/// An `$EDITOR` that runs `script` (sh) on the file it is given.
fn editor(m: &Machine, name: &str, script: &str) -> std::path::PathBuf {
    let path = m.dir.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\nf=\"$1\"\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn head_of(m: &Machine) -> String {
    String::from_utf8(run_program(
        Command::new("git")
            .arg("-C")
            .arg(m.repo())
            .args(["rev-parse", "HEAD"]),
    ))
    .unwrap()
}

#[test]
fn edit_saves_a_change_skips_an_unchanged_file_and_leaves_no_plaintext() {
    let m = machine("alpha");
    m.ok_with_stdin(&["secrets", "set", "A"], b"1\n");
    let runtime = m.dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    // The editor records where it was asked to edit, and the file's mode.
    let seen = m.dir.path().join("seen");
    let add = editor(
        &m,
        "add.sh",
        &format!(
            "stat -c '%a %n' \"$f\" \"$(dirname \"$f\")\" > {}\nprintf '# added\\nB=2\\n' >> \"$f\"",
            seen.display()
        ),
    );
    let out = m
        .cmd(["secrets", "edit"])
        .env("EDITOR", &add)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    crate::util::assert_success(&out, &["secrets", "edit"]);
    let seen = std::fs::read_to_string(&seen).unwrap();
    let mut modes = seen.lines().map(|l| l.split_whitespace().next().unwrap());
    assert_eq!(
        (modes.next(), modes.next()),
        (Some("600"), Some("700")),
        "{seen}"
    );
    assert_eq!(m.ok(&["secrets", "get", "B"]), "2\n");
    assert_eq!(
        std::fs::read_dir(&runtime).unwrap().count(),
        0,
        "the private directory is removed"
    );

    let before = head_of(&m);
    let noop = editor(&m, "noop.sh", "true");
    let out = m
        .cmd(["secrets", "edit"])
        .env("EDITOR", &noop)
        .output()
        .unwrap();
    crate::util::assert_success(&out, &["secrets", "edit"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no change"));
    assert_eq!(head_of(&m), before, "an unchanged file is not re-encrypted");

    let breaks = editor(&m, "break.sh", "printf 'BROKEN=\"open\\n' >> \"$f\"");
    let out = m
        .cmd(["secrets", "edit"])
        .env("EDITOR", &breaks)
        .output()
        .unwrap();
    crate::util::assert_failure(&out, &["secrets", "edit"], 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line"),
        "{out:?}"
    );
    assert_eq!(head_of(&m), before, "a malformed edit changes nothing");
}

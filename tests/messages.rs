//! Messages that must be true and actionable (issue 14): each test pins one corrected
//! diagnosis or behaviour, with real git, git daemon, age and shells.

use std::process::Command;

use crate::util::forge::{Forge, Transport};
use crate::util::server::{self, Server, Spec};
use crate::util::{Machine, require, run_program};

/// A git daemon serving `base` without `--enable=receive-pack`: it serves fetches and refuses
/// every push.
fn read_only_daemon(base: &std::path::Path) -> Server {
    let daemon = require("git", "git");
    let log = base.join("daemon.log");
    let base = base.to_path_buf();
    let command = move |port: u16| {
        let mut c = Command::new(&daemon);
        c.arg("daemon")
            .arg("--reuseaddr")
            .arg("--verbose")
            .arg(format!("--base-path={}", base.display()))
            .args(["--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(&base);
        c
    };
    let spec = Spec {
        what: "git daemon",
        ready: &server::git_daemon_ready,
        command: &command,
    };
    Server::start(&spec, &log, None)
}

#[test]
fn init_at_a_path_that_is_not_a_repository_says_so_and_sets_nothing_up() {
    let m = Machine::new();
    let nowhere = m.dir.path().join("not-a-repo");
    let err = m.fails(
        &["init", "--name", "a", "--remote", nowhere.to_str().unwrap()],
        1,
    );
    assert!(
        err.starts_with(&format!(
            "fleetkey: error: there is no repository at {}\n  hint: nothing was set up; check the URL",
            nowhere.display()
        )),
        "{err}"
    );
    assert!(
        !err.contains("unreachable") && !err.contains("committed locally"),
        "{err}"
    );
    let err = m.fails(&["sync"], 1);
    assert!(err.contains("not part of a fleet yet"), "{err}");
}

#[test]
fn a_git_daemon_without_the_repository_is_no_such_repository() {
    let forge = Forge::start(Transport::GitDaemon);
    let url = forge.url().replace("fleet.git", "nope.git");
    let m = Machine::new();
    let err = m.fails(&["init", "--name", "a", "--remote", &url], 1);
    assert!(
        err.starts_with(&format!(
            "fleetkey: error: there is no repository at {url}\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "git said:\n    fatal: remote error: access denied or repository not exported"
        ),
        "{err}"
    );
    let err = m.fails(&["enroll", "b", "--remote", &url], 1);
    assert!(err.contains("there is no repository at"), "{err}");
}

#[test]
fn a_forge_that_takes_no_pushes_declines_the_push() {
    require("git", "git");
    let dir = tempfile::tempdir().unwrap();
    run_program(
        Command::new("git")
            .args(["init", "--quiet", "--bare", "-b", "main"])
            .arg(dir.path().join("fleet.git")),
    );
    let daemon = read_only_daemon(dir.path());
    let url = format!("git://127.0.0.1:{}/fleet.git", daemon.port);
    let m = Machine::new();
    let err = m.fails(&["init", "--name", "a", "--remote", &url], 1);
    assert!(
        err.starts_with(&format!(
            "fleetkey: error: the forge {url} declined the push\n  hint: nothing was set up (the keys made here are reused by the next try); check that your account may push"
        )),
        "{err}"
    );
    assert!(err.contains("--enable=receive-pack"), "{err}");
}

#[test]
fn a_stopped_forge_is_unreachable_exit_75_and_says_what_waits() {
    let mut forge = Forge::start(Transport::GitDaemon);
    let url = forge.url();
    let a = forge.machine("a");
    a.ok(&["init", "--name", "a", "--remote", &url]);
    forge.stop();
    let err = a.fails(&["sync"], 75);
    assert!(
        err.starts_with(&format!(
            "fleetkey: error: the forge {url} is unreachable\n  hint: nothing made here waits to go out; this is usually temporary"
        )),
        "{err}"
    );
    a.write("note.txt", b"x");
    a.ok(&["track", "--no-push", a.path("note.txt").to_str().unwrap()]);
    let err = a.fails(&["sync"], 75);
    assert!(
        err.contains("hint: 1 commit made here is kept and goes out with the next `fleetkey sync`"),
        "{err}"
    );
    // Never reached: init says so and exits 75 too, claiming nothing was committed.
    let b = Machine::new();
    let err = b.fails(&["init", "--name", "b", "--remote", &url], 75);
    assert!(
        err.starts_with(&format!(
            "fleetkey: error: the forge {url} is unreachable\n  hint: nothing was set up; this is usually temporary"
        )),
        "{err}"
    );
}

#[test]
fn a_broken_gitconfig_is_named_by_init_sync_and_doctor() {
    let fresh = Machine::new();
    let gitconfig = fresh.path(".gitconfig");
    std::fs::write(&gitconfig, "[[[broken\n").unwrap();
    let bare = fresh.dir.path().join("fleet.git");
    run_program(
        Command::new("git")
            .args(["init", "--quiet", "--bare", "-b", "main"])
            .arg(&bare),
    );
    let err = fresh.fails(
        &["init", "--name", "a", "--remote", bare.to_str().unwrap()],
        1,
    );
    assert!(
        err.starts_with(&format!(
            "fleetkey: error: git cannot read its configuration file {}\n  hint: nothing was set up; fix or move {}",
            gitconfig.display(),
            gitconfig.display()
        )),
        "{err}"
    );

    let a = Machine::new();
    a.ok(&["init", "--name", "a"]);
    let gitconfig = a.path(".gitconfig");
    std::fs::write(&gitconfig, "[[[broken\n").unwrap();
    let err = a.fails(&["sync"], 1);
    assert!(
        err.contains(&format!("(in {}:1)", gitconfig.display())),
        "{err}"
    );
    assert!(
        err.contains("hint: a git configuration file is malformed (named above): fix or move it"),
        "{err}"
    );
    let out = a.run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "git cannot read its configuration file {}: fix or move it",
            gitconfig.display()
        )),
        "{text}"
    );
    assert!(!text.contains("not on PATH"), "{text}");
}

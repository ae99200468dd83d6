//! track/untrack rules, per-host overrides, first contact, concurrent tracks merged as sets,
//! and the materialized secrets.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use super::harness::{Fleet, Node, Transport};
use crate::util::run_program;

fn commit_in_clone(n: &Node, message: &str) {
    run_program(Command::new("git").arg("-C").arg(n.repo()).args([
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "add",
        "-A",
    ]));
    run_program(
        Command::new("git")
            .arg("-C")
            .arg(n.repo())
            .args(crate::util::signing_config(&n.m))
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                message,
            ]),
    );
}

#[test]
fn track_refuses_paths_outside_home_through_symlinks_or_into_fleetkeys_own_files() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alpha"]);
    let a = fleet.n(0);
    let outside = a.m.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"x").unwrap();
    std::os::unix::fs::symlink(&outside, a.path("escape")).unwrap();
    std::os::unix::fs::symlink(a.path(".real"), a.path(".linked")).unwrap();
    a.write(".real", b"r\n");
    let cases: Vec<(String, &str)> = vec![
        ("/etc/hostname".into(), "not inside your home"),
        ("~/../outside/secret".into(), "not inside your home"),
        ("~/escape/secret".into(), "leaves your home directory"),
        ("~/.linked".into(), "symbolic link"),
        (
            "~/.local/share/fleetkey/fleet/fleet.toml".into(),
            "fleet clone",
        ),
        (
            "~/.config/fleetkey/config.toml".into(),
            "configuration directory",
        ),
        ("~/.local/state".into(), "state directory"),
        ("~".into(), "whole home directory"),
        ("~/.nope".into(), "does not exist"),
    ];
    let before = std::fs::read_to_string(a.repo().join("fleet.toml")).unwrap();
    for (path, why) in cases {
        let err = a.fails(&["track", &path], 1);
        assert!(err.contains(why), "{path}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(a.repo().join("fleet.toml")).unwrap(),
        before
    );

    // Relative to the current directory.
    a.write("src/proj/.envrc", b"use nix\n");
    let out = a
        .cmd(&["track", ".envrc"])
        .current_dir(a.path("src/proj"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = std::fs::read_to_string(a.repo().join("fleet.toml")).unwrap();
    assert!(toml.contains("\"~/src/proj/.envrc\""), "{toml}");

    // untrack leaves the live file alone.
    a.ok(&["untrack", "~/src/proj/.envrc"]);
    assert_eq!(a.text("src/proj/.envrc"), "use nix\n");
    assert!(!a.repo().join("home/src/proj/.envrc").exists());
    let toml = std::fs::read_to_string(a.repo().join("fleet.toml")).unwrap();
    assert!(!toml.contains(".envrc"), "{toml}");
}

#[test]
fn overrides_first_contact_concurrent_tracks_and_materialized_secrets() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    let (a, b) = (fleet.n(0), fleet.n(1));

    // First contact: beta has its own .gitconfig before the fleet starts managing one.
    b.write(".gitconfig", b"[user]\n  name = beta's own\n");
    a.write(".gitconfig", b"[user]\n  name = fleet\n");
    a.ok(&["track", "~/.gitconfig"]);
    b.sync();
    assert_eq!(b.text(".gitconfig"), "[user]\n  name = fleet\n");
    let copies = b.conflict_copies(".gitconfig");
    assert_eq!(copies.len(), 1);
    assert_eq!(
        std::fs::read(&copies[0]).unwrap(),
        b"[user]\n  name = beta's own\n"
    );

    // A per-host override wins on that host only; beta's edits go into its override.
    let over = a.repo().join("hosts/beta/home/.gitconfig");
    std::fs::create_dir_all(over.parent().unwrap()).unwrap();
    std::fs::write(&over, b"[user]\n  name = beta override\n").unwrap();
    commit_in_clone(a, "test: override for beta");
    a.sync();
    b.sync();
    assert_eq!(b.text(".gitconfig"), "[user]\n  name = beta override\n");
    assert_eq!(a.text(".gitconfig"), "[user]\n  name = fleet\n");
    b.write(".gitconfig", b"[user]\n  name = beta override, edited\n");
    b.sync();
    a.sync();
    assert_eq!(a.text(".gitconfig"), "[user]\n  name = fleet\n");
    assert_eq!(
        std::fs::read_to_string(a.repo().join("hosts/beta/home/.gitconfig")).unwrap(),
        "[user]\n  name = beta override, edited\n"
    );

    // Two machines track different paths at once: fleet.toml merges both.
    a.write(".inputrc", b"set editing-mode vi\n");
    b.write(".tmux.conf", b"set -g mouse on\n");
    a.ok(&["track", "~/.inputrc", "--no-push"]);
    b.ok(&["track", "~/.tmux.conf"]);
    a.sync();
    b.sync();
    for n in [a, b] {
        let toml = std::fs::read_to_string(n.repo().join("fleet.toml")).unwrap();
        assert!(
            toml.contains("\"~/.inputrc\"") && toml.contains("\"~/.tmux.conf\""),
            "{toml}"
        );
        assert_eq!(n.text(".inputrc"), "set editing-mode vi\n");
        assert_eq!(n.text(".tmux.conf"), "set -g mouse on\n");
    }

    // Materialized secrets: written 0600 on apply.
    let toml_path = a.repo().join("fleet.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap().replace(
        "[secrets]\n",
        "[secrets]\nmaterialize = \"~/.config/fleetkey/secrets.env\"\n",
    );
    assert!(toml.contains("materialize"), "{toml}");
    std::fs::write(&toml_path, toml).unwrap();
    commit_in_clone(a, "test: materialize");
    a.ok_with_stdin(&["secrets", "set", "TOKEN"], b"tok-1");
    b.sync();
    let env = b.path(".config/fleetkey/secrets.env");
    assert_eq!(std::fs::read_to_string(&env).unwrap(), "TOKEN=tok-1\n");
    assert_eq!(
        std::fs::metadata(&env).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A rejected push of `secrets set` integrates; a managed file that lost there keeps its
    // local version as a conflict copy at once.
    b.write(".inputrc", b"beta's offline edit\n");
    b.ok(&["sync", "--offline"]);
    a.write(".inputrc", b"alpha's edit\n");
    a.sync();
    b.ok_with_stdin(&["secrets", "set", "AFTER"], b"x");
    let copies = b.conflict_copies(".inputrc");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read(&copies[0]).unwrap(), b"beta's offline edit\n");
    assert_eq!(b.text(".inputrc"), "alpha's edit\n");
    b.sync();
    a.sync();
    assert_eq!(a.text(".inputrc"), "alpha's edit\n");
    assert_eq!(a.ok(&["secrets", "get", "AFTER"]), "x\n");
    a.write(".inputrc", b"set editing-mode vi\n");
    a.sync();
    b.sync();

    // A managed file deleted locally is restored, not deleted fleet-wide.
    std::fs::remove_file(b.path(".inputrc")).unwrap();
    b.sync();
    a.sync();
    assert_eq!(b.text(".inputrc"), "set editing-mode vi\n");
    assert_eq!(a.text(".inputrc"), "set editing-mode vi\n");
    for n in [a, b] {
        n.assert_clean_repo();
    }
}

//! The sync engine end to end over real transports: an edit travels, edits to different files
//! merge, the same file edited on two machines keeps both sides, and secrets set concurrently on
//! two machines both survive.

use std::os::unix::fs::PermissionsExt;

use crate::util::fleet::Fleet;
use crate::util::forge::Transport;
use crate::util::git_out;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn scenario(t: Transport) {
    let fleet = Fleet::new(t, &["alpha", "beta", "gamma"]);
    let (a, b, c) = (fleet.n(0), fleet.n(1), fleet.n(2));

    // track seeds the fleet; the path reaches everyone, byte for byte.
    a.write(
        ".zshrc",
        b"export A=1\n# line 2\n# line 3\n# line 4\n# line 5\n",
    );
    a.write(".local/bin/tool", b"#!/bin/sh\necho tool\n");
    std::fs::set_permissions(
        a.path(".local/bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    a.write(".ssh/extra_config", b"Host *\n  ServerAliveInterval 30\n");
    a.write(".config/app/one.conf", b"one\n");
    a.write(".config/app/sub/two.conf", b"two\n");
    let out = a.ok(&[
        "track",
        "~/.zshrc",
        "~/.local/bin/tool",
        "~/.ssh/extra_config",
        "~/.config/app",
    ]);
    assert!(out.contains("tracking"), "{out}");
    let log = git_out(&a.repo(), &["log", "-1", "--format=%s"]);
    assert!(log.starts_with("alpha: track ~/.zshrc"), "{log}");
    let toml = std::fs::read_to_string(a.repo().join("fleet.toml")).unwrap();
    assert!(toml.contains("\"~/.config/app/\""), "{toml}");
    b.sync();
    c.sync();
    for n in [b, c] {
        assert_eq!(n.read(".zshrc"), a.read(".zshrc"));
        assert_eq!(n.text(".config/app/sub/two.conf"), "two\n");
        assert_eq!(mode(&n.path(".local/bin/tool")), 0o755, "exec bit kept");
        assert_eq!(
            mode(&n.path(".ssh/extra_config")),
            0o600,
            "~/.ssh is private"
        );
        assert_eq!(mode(&n.path(".zshrc")), 0o644);
    }

    // An edit on A reaches B.
    a.write(
        ".zshrc",
        b"export A=2\n# line 2\n# line 3\n# line 4\n# line 5\n",
    );
    a.sync();
    b.sync();
    assert_eq!(b.text(".zshrc"), a.text(".zshrc"));

    // Edits to different files on A and B (and a deletion in a managed directory on C) all end
    // up everywhere.
    a.write(".config/app/one.conf", b"one, edited on alpha\n");
    b.write(".local/bin/tool", b"#!/bin/sh\necho tool v2\n");
    c.sync(); // c is in step before it deletes
    std::fs::remove_file(c.path(".config/app/sub/two.conf")).unwrap();
    c.write(".config/app/three.conf", b"three from gamma\n");
    a.sync();
    b.sync();
    c.sync();
    fleet.settle(1);
    for n in [a, b, c] {
        assert_eq!(
            n.text(".config/app/one.conf"),
            "one, edited on alpha\n",
            "{}",
            n.name
        );
        assert_eq!(
            n.text(".local/bin/tool"),
            "#!/bin/sh\necho tool v2\n",
            "{}",
            n.name
        );
        assert_eq!(
            n.text(".config/app/three.conf"),
            "three from gamma\n",
            "{}",
            n.name
        );
        assert!(
            !n.path(".config/app/sub/two.conf").exists(),
            "{}: deletion propagates",
            n.name
        );
        assert_eq!(mode(&n.path(".local/bin/tool")), 0o755);
    }

    // Different lines of the same file: a three-way text merge, no conflict.
    a.write(
        ".zshrc",
        b"export A=3\n# line 2\n# line 3\n# line 4\n# line 5\n",
    );
    b.write(
        ".zshrc",
        b"export A=2\n# line 2\n# line 3\n# line 4\n# line 5 from beta\n",
    );
    a.sync();
    b.sync();
    a.sync();
    let merged = "export A=3\n# line 2\n# line 3\n# line 4\n# line 5 from beta\n";
    assert_eq!(a.text(".zshrc"), merged);
    assert_eq!(b.text(".zshrc"), merged);
    assert!(b.conflict_copies(".zshrc").is_empty());

    // The same line on both: upstream (alpha pushed first) wins; beta's exact bytes are kept.
    let beta_bytes =
        b"export A=beta\n# line 2\n# line 3\n# line 4\n# line 5 from beta\n\xff\x00raw\n";
    a.write(
        ".zshrc",
        b"export A=alpha\n# line 2\n# line 3\n# line 4\n# line 5 from beta\n",
    );
    b.write(".zshrc", beta_bytes);
    a.sync();
    let out = b.sync();
    assert!(out.contains("1 conflicts"), "{out}");
    fleet.settle(1);
    for n in [a, b, c] {
        assert_eq!(
            n.text(".zshrc"),
            "export A=alpha\n# line 2\n# line 3\n# line 4\n# line 5 from beta\n"
        );
    }
    let copies = b.conflict_copies(".zshrc");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read(&copies[0]).unwrap(), beta_bytes);
    let name = copies[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with(".zshrc.conflict-beta-"), "{name}");
    assert!(a.conflict_copies(".zshrc").is_empty());
    let conflicts = std::fs::read_to_string(b.state().join("conflicts.json")).unwrap();
    assert!(conflicts.contains(&name), "{conflicts}");

    // Secrets set on two machines at the same time, to different keys: both everywhere.
    let spawn = |n: &crate::util::Machine, key: &str, value: &str| {
        let mut cmd = n.cmd(["secrets", "set", key]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        child
    };
    let ca = spawn(a, "FROM_ALPHA", "value-a");
    let cb = spawn(b, "FROM_BETA", "value-b");
    for (child, who) in [(ca, "alpha"), (cb, "beta")] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "secrets set on {who}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fleet.settle(1);
    for n in [a, b, c] {
        assert_eq!(
            n.ok(&["secrets", "get", "FROM_ALPHA"]),
            "value-a\n",
            "{}",
            n.name
        );
        assert_eq!(
            n.ok(&["secrets", "get", "FROM_BETA"]),
            "value-b\n",
            "{}",
            n.name
        );
    }
    // Same key on both (committed locally, then synced): upstream's value, ours kept aside.
    a.ok_with_stdin(&["secrets", "set", "SHARED", "--no-push"], b"from-alpha");
    b.ok_with_stdin(&["secrets", "set", "SHARED", "--no-push"], b"from-beta");
    a.sync();
    b.sync();
    fleet.settle(1);
    for n in [a, b, c] {
        assert_eq!(n.ok(&["secrets", "get", "SHARED"]), "from-alpha\n");
    }
    let list = b.ok(&["secrets", "list"]);
    assert!(list.contains("SHARED\tCONFLICT"), "{list}");

    // Everyone ends identical, on the forge's commit, with clean clones.
    let head = fleet.forge.head();
    for n in [a, b, c] {
        assert_eq!(
            git_out(&n.repo(), &["rev-parse", "HEAD"]),
            head,
            "{}",
            n.name
        );
        n.assert_clean_repo();
        let rec = std::fs::read_to_string(n.state().join("last-cycle.json")).unwrap();
        assert!(rec.contains("\"result\": \"ok\""), "{rec}");
    }
}

#[test]
fn sync_over_git_daemon_merges_edits_and_keeps_both_sides_of_conflicts() {
    scenario(Transport::GitDaemon);
}

#[test]
fn sync_over_sshd_merges_edits_and_keeps_both_sides_of_conflicts() {
    scenario(Transport::Ssh);
}

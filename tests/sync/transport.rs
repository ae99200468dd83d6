//! The sync engine end to end over real transports, on machines that joined with the real
//! `enroll`/`approve` (each its own age identity and SSH key): every machine's authorized_keys
//! admits every member, an edit travels, edits to different files merge, the same file edited on
//! two machines keeps both sides, secrets set concurrently on two machines merge per key and
//! every machine reads them with its own identity, and the same key set on two keeps one value
//! and records the conflict.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::util::fleet::Fleet;
use crate::util::forge::Transport;
use crate::util::{Machine, age_decrypt, git_out, require, run_program};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The age recipients `secrets.recipients` in `m`'s clone lists.
fn recipients(m: &Machine) -> BTreeSet<String> {
    std::fs::read_to_string(m.repo().join("secrets.recipients"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The recipient of each machine's own identity file, as the stock `age-keygen -y` derives it.
fn recipients_of_identities(fleet: &Fleet) -> BTreeSet<String> {
    let keygen = require("age-keygen", "age");
    fleet
        .nodes
        .iter()
        .map(|n| {
            let out = run_program(Command::new(&keygen).arg("-y").arg(n.identity()));
            String::from_utf8(out).unwrap().trim().to_string()
        })
        .collect()
}

/// Each machine joined with its own keys: the roster has one distinct recipient per machine
/// (the one its identity file holds), and after syncing, every machine's applied
/// authorized_keys holds exactly one `fleetkey=NAME` line per member, with that member's key.
fn every_member_is_in_the_roster_and_every_authorized_keys(fleet: &Fleet) {
    let mine = recipients_of_identities(fleet);
    assert_eq!(mine.len(), fleet.nodes.len(), "machines share an identity");
    let keys: BTreeSet<String> = fleet.nodes.iter().map(|n| n.ssh_key()).collect();
    assert_eq!(keys.len(), fleet.nodes.len(), "machines share an SSH key");
    for n in &fleet.nodes {
        assert_eq!(recipients(n), mine, "{}'s secrets.recipients", n.name);
        let file = n.authorized_keys();
        let mut members: Vec<&str> = Vec::new();
        for line in file.lines().filter(|l| l.contains("fleetkey=")) {
            let member = line.rsplit("fleetkey=").next().unwrap();
            let owner = fleet
                .nodes
                .iter()
                .find(|m| m.name == member)
                .unwrap_or_else(|| panic!("{}: a line for a stranger: {line}", n.name));
            assert!(
                line.starts_with(&owner.ssh_key()),
                "{}: {member}'s line holds another key: {line}",
                n.name
            );
            members.push(member);
        }
        members.sort();
        let mut names = fleet.names();
        names.sort();
        assert_eq!(members, names, "{}'s authorized_keys:\n{file}", n.name);
    }
}

fn scenario(t: Transport) {
    let fleet = Fleet::new(t, &["alpha", "beta", "gamma"]);
    let (a, b, c) = (fleet.n(0), fleet.n(1), fleet.n(2));
    // Two rounds: each member's first cycle publishes its poke key; the second brings every
    // machine to the same commit.
    fleet.settle(2);
    every_member_is_in_the_roster_and_every_authorized_keys(&fleet);

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

    // Secrets set on two machines at the same time, to different keys: the push that loses
    // the race integrates, merging per key with that machine's own identity.
    let spawn = |n: &Machine, key: &str, value: &str| {
        let mut cmd = n.cmd(["secrets", "set", key]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
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
    // The stock age reads the merged file with gamma's own identity, and it is encrypted to
    // the three machines' recipients, no other.
    let plain = age_decrypt(&c.identity(), &c.repo().join("secrets.env.age"))
        .expect("age -d -i gamma's identity refused the merged secrets");
    let plain = String::from_utf8(plain).unwrap();
    assert!(
        plain.contains("FROM_ALPHA=value-a\n") && plain.contains("FROM_BETA=value-b\n"),
        "{plain}"
    );
    assert_eq!(recipients(c), recipients_of_identities(&fleet));

    // Same key on both (committed locally, then synced): upstream's value; ours kept aside
    // inside the encrypted file as a conflict entry that every machine shows.
    a.ok_with_stdin(&["secrets", "set", "SHARED", "--no-push"], b"from-alpha");
    b.ok_with_stdin(&["secrets", "set", "SHARED", "--no-push"], b"from-beta");
    a.sync();
    b.sync();
    fleet.settle(1);
    for n in [a, b, c] {
        assert_eq!(
            n.ok(&["secrets", "get", "SHARED"]),
            "from-alpha\n",
            "{}",
            n.name
        );
        let list = n.ok(&["secrets", "list"]);
        assert!(list.contains("SHARED\tCONFLICT"), "{}: {list}", n.name);
        let status: serde_json::Value = serde_json::from_str(&n.ok(&["status", "--json"])).unwrap();
        let conflicts = &status["secrets"]["conflicts"];
        assert_eq!(conflicts[0]["key"], "SHARED", "{}: {status}", n.name);
        assert_eq!(conflicts[0]["from"], "beta", "{}: {status}", n.name);
    }
    let plain = age_decrypt(&b.identity(), &b.repo().join("secrets.env.age"))
        .expect("age -d -i beta's identity refused the merged secrets");
    let plain = String::from_utf8(plain).unwrap();
    assert!(
        plain.contains("SHARED=from-alpha\n") && plain.contains("from-beta"),
        "the losing value is kept inside the encrypted file:\n{plain}"
    );

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

#[test]
fn the_users_global_git_hooks_never_run_on_fleetkeys_clone() {
    use crate::util::forge::Forge;
    let forge = Forge::start(Transport::GitDaemon);
    let url = forge.url();
    let (a, b) = (Machine::named("alpha"), Machine::named("beta"));
    // The user's global git config points every repository at hooks that record each run.
    let hooks = a.dir.path().join("user-hooks");
    let marker = a.dir.path().join("hooks-ran");
    std::fs::create_dir_all(&hooks).unwrap();
    for hook in [
        "pre-commit",
        "post-checkout",
        "post-merge",
        "pre-push",
        "reference-transaction",
    ] {
        let path = hooks.join(hook);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho {hook} >> {}\n", marker.display()),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for m in [&a, &b] {
        std::fs::write(
            m.home.join(".gitconfig"),
            format!("[core]\n\thooksPath = {}\n", hooks.display()),
        )
        .unwrap();
    }
    // Clone (init, enroll), push (track, secrets set, approve), fetch (sync).
    a.ok(&["init", "--name", "alpha", "--remote", &url]);
    std::fs::write(a.home.join(".zshrc"), "one\n").unwrap();
    a.ok(&["track", "~/.zshrc"]);
    a.ok_with_stdin(&["secrets", "set", "TOKEN"], b"t\n");
    let out = b.ok(&["enroll", "beta", "--remote", &url]);
    a.ok(&[
        "approve",
        "beta",
        "--code",
        &crate::util::code_in(&out, "beta"),
    ]);
    b.ok(&["sync"]);
    std::fs::write(b.home.join(".zshrc"), "two\n").unwrap();
    b.ok(&["sync"]);
    a.ok(&["sync"]);
    assert_eq!(std::fs::read(a.home.join(".zshrc")).unwrap(), b"two\n");
    assert!(
        !marker.exists(),
        "a global hook ran on fleetkey's clone: {}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );
    // The same hooks do run for the user's own git (so the check above can fail).
    run_program(
        Command::new("git")
            .env("HOME", &a.home)
            .args(["clone", "--quiet", "--"])
            .arg(&url)
            .arg(a.dir.path().join("by-hand")),
    );
    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    assert!(ran.contains("post-checkout"), "{ran:?}");
}

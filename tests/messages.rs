//! Messages that must be true and actionable (issue 14): each test pins one corrected
//! diagnosis or behaviour, with real git, git daemon, age and shells.

use std::process::Command;

use crate::util::forge::{Forge, Transport};
use crate::util::server::{self, Server, Spec};
use crate::util::{Machine, require, run_program};

/// A git daemon serving `base` without `--enable=receive-pack`: it serves fetches and refuses
/// every push.
fn read_only_daemon(base: &std::path::Path) -> Server {
    // git-daemon itself, not `git daemon`: the wrapper would leave its child running when the
    // server is stopped.
    let daemon = server::git_daemon();
    let log = base.join("daemon.log");
    let base = base.to_path_buf();
    let command = move |port: u16| {
        let mut c = Command::new(&daemon);
        c.arg("--reuseaddr")
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

/// A machine that started a fleet on its embedded forge, and one more approved into it.
fn two_machines() -> (Machine, Machine) {
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha"]);
    let forge = alpha.forge().to_str().unwrap().to_string();
    let beta = Machine::named("beta");
    crate::util::fleet::join(&alpha, &beta, &forge);
    (alpha, beta)
}

#[test]
fn an_empty_stdin_sets_nothing_unless_allow_empty() {
    let a = Machine::new();
    a.ok(&["init", "--name", "a"]);
    let out = a.run_with_stdin(&["secrets", "set", "DB_PASSWORD"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "fleetkey: error: the value for DB_PASSWORD is empty; nothing was changed\n  hint: check the command that feeds stdin; to set an empty value on purpose, run `fleetkey secrets set DB_PASSWORD --allow-empty`\n"
    );
    assert_eq!(a.ok(&["secrets", "list"]), "");
    a.ok_with_stdin(&["secrets", "set", "DB_PASSWORD", "--allow-empty"], b"");
    assert_eq!(a.ok(&["secrets", "get", "DB_PASSWORD"]), "\n");
}

#[test]
fn a_secret_conflict_is_named_listed_and_resolved_and_leaves_no_record() {
    let (alpha, beta) = two_machines();
    beta.ok_with_stdin(&["secrets", "set", "SHARED"], b"from-beta\n");
    beta.ok_with_stdin(&["secrets", "set", "ONLY_BETA"], b"b\n");
    alpha.ok_with_stdin(&["secrets", "set", "SHARED", "--no-push"], b"from-alpha\n");
    alpha.ok_with_stdin(&["secrets", "set", "ONLY_ALPHA", "--no-push"], b"a\n");
    let out = alpha.run(&["sync"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secret SHARED changed here and on the forge: the value set by beta at "),
        "{err}"
    );
    assert!(
        err.contains(" is kept aside (see `fleetkey secrets conflicts`; settle it with `fleetkey secrets resolve SHARED --keep aside|in-force`)"),
        "{err}"
    );
    assert!(!err.contains("secrets.env.age changed here"), "{err}");
    // Other keys of both sides survive.
    assert_eq!(alpha.ok(&["secrets", "get", "ONLY_BETA"]), "b\n");
    assert_eq!(alpha.ok(&["secrets", "get", "ONLY_ALPHA"]), "a\n");

    let listed = alpha.ok(&["secrets", "conflicts"]);
    assert!(
        listed.starts_with("SHARED\tin force: set by beta at "),
        "{listed}"
    );
    assert!(
        listed.contains("; aside: set by alpha (here) at "),
        "{listed}"
    );
    assert!(
        !listed.contains("from-alpha") && !listed.contains("from-beta"),
        "{listed}"
    );
    let shown = alpha.ok(&["secrets", "conflicts", "--show"]);
    assert!(shown.contains("  in force: from-beta\n"), "{shown}");
    assert!(shown.contains("  aside:    from-alpha\n"), "{shown}");

    let said = alpha.ok(&["secrets", "resolve", "SHARED", "--keep", "aside"]);
    assert_eq!(
        said,
        "fleetkey: SHARED: kept the value kept aside; the conflict is settled\n"
    );
    assert_eq!(alpha.ok(&["secrets", "get", "SHARED"]), "from-alpha\n");
    assert_eq!(alpha.ok(&["secrets", "conflicts"]), "no conflicts\n");
    let err = alpha.fails(&["secrets", "resolve", "SHARED", "--keep", "theirs"], 1);
    assert!(err.contains("SHARED has no conflict to resolve"), "{err}");
    beta.ok(&["sync"]);
    assert_eq!(beta.ok(&["secrets", "get", "SHARED"]), "from-alpha\n");
}

/// When `who` set SHARED, as the commit of its `secrets set` in `m`'s clone says (UTC, RFC 3339).
fn set_time(m: &Machine, who: &str) -> String {
    let out = Command::new("git")
        .env("TZ", "UTC")
        .arg("-C")
        .arg(m.repo())
        .args([
            "log",
            "-1",
            "--date=format-local:%Y-%m-%dT%H:%M:%SZ",
            "--format=%ad",
            "--fixed-strings",
        ])
        .arg(format!("--grep={who}: secrets: set SHARED"))
        .output()
        .unwrap();
    let time = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!time.is_empty(), "no commit of {who} setting SHARED");
    time
}

#[test]
fn a_secret_conflict_names_each_value_by_its_setter_and_set_time_on_both_machines() {
    let (alpha, beta) = two_machines();
    alpha.ok_with_stdin(&["secrets", "set", "SHARED", "--no-push"], b"from-alpha\n");
    beta.ok_with_stdin(&["secrets", "set", "SHARED"], b"from-beta\n");
    // alpha merges "two hours later": the skew moves fleetkey's clock (the merge's time), not
    // the commit times git gives the two `secrets set`.
    let out = alpha
        .cmd(["sync"])
        .env("FLEETKEY_CLOCK_SKEW", "7200")
        .output()
        .unwrap();
    crate::util::assert_success(&out, &["sync"]);
    beta.sync();
    let (alpha_set, beta_set) = (set_time(&beta, "alpha"), set_time(&beta, "beta"));

    for (m, name) in [(&alpha, "alpha"), (&beta, "beta")] {
        let here = |who: &str| {
            if who == name {
                format!("{who} (here)")
            } else {
                who.to_string()
            }
        };
        // The same on both machines: the value in force is beta's, the one aside alpha's,
        // each with when it was set there.
        assert_eq!(
            m.ok(&["secrets", "conflicts"]),
            format!(
                "SHARED\tin force: set by {} at {beta_set}; aside: set by {} at {alpha_set}\n\
                 settle each with `fleetkey secrets resolve KEY --keep aside|in-force` (or `secrets set KEY`)\n",
                here("beta"),
                here("alpha")
            ),
            "on {name}"
        );
        let shown = m.ok(&["secrets", "conflicts", "--show"]);
        assert!(
            shown.contains("\n  in force: from-beta\n  aside:    from-alpha\n"),
            "on {name}: {shown}"
        );
        let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "--json"])).unwrap();
        let c = &status["secrets"]["conflicts"][0];
        assert_eq!(
            (
                &c["aside_by"],
                &c["aside_at"],
                &c["in_force_by"],
                &c["in_force_at"]
            ),
            (
                &serde_json::json!("alpha"),
                &serde_json::json!(alpha_set),
                &serde_json::json!("beta"),
                &serde_json::json!(beta_set)
            ),
            "on {name}: {status}"
        );
        // The merge's own time is another: two hours after both values were set.
        assert_ne!(c["at"], serde_json::json!(alpha_set), "{status}");
        assert_ne!(c["at"], serde_json::json!(beta_set), "{status}");
    }

    // `aside` means the same value on the other machine: beta keeps alpha's.
    beta.ok(&["secrets", "resolve", "SHARED", "--keep", "aside"]);
    alpha.sync();
    for m in [&alpha, &beta] {
        assert_eq!(
            m.ok(&["secrets", "get", "SHARED"]),
            "from-alpha\n",
            "{}",
            m.name
        );
        assert_eq!(
            m.ok(&["secrets", "conflicts"]),
            "no conflicts\n",
            "{}",
            m.name
        );
    }
}

#[test]
fn a_conflict_record_of_an_older_fleetkey_shows_its_setters_as_unknown() {
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha"]);
    alpha.ok_with_stdin(&["secrets", "set", "SHARED"], b"in-force\n");
    // An older fleetkey wrote `# fleetkey:conflict KEY from= at= value=`: put one in by editing.
    let editor = alpha.dir.path().join("add-old-record");
    std::fs::write(
        &editor,
        "#!/bin/sh\nprintf '# fleetkey:conflict SHARED from=beta at=2024-05-01T10:00:00Z value=\"old\"\\n' >> \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = alpha
        .cmd(["secrets", "edit"])
        .env("EDITOR", &editor)
        .output()
        .unwrap();
    crate::util::assert_success(&out, &["secrets", "edit"]);
    assert_eq!(
        alpha.ok(&["secrets", "conflicts", "--show"]),
        "SHARED\tin force: set by unknown; aside: set by unknown (an older record: kept aside by a merge on beta at 2024-05-01T10:00:00Z)\n\
         \x20 in force: in-force\n\
         \x20 aside:    old\n\
         settle each with `fleetkey secrets resolve KEY --keep aside|in-force` (or `secrets set KEY`)\n"
    );
    alpha.ok(&["secrets", "resolve", "SHARED", "--keep", "aside"]);
    assert_eq!(alpha.ok(&["secrets", "get", "SHARED"]), "old\n");
}

#[test]
fn unset_removes_a_conflict_record_from_the_ciphertext() {
    let (alpha, beta) = two_machines();
    beta.ok_with_stdin(&["secrets", "set", "SHARED"], b"from-beta\n");
    alpha.ok_with_stdin(&["secrets", "set", "SHARED", "--no-push"], b"from-alpha\n");
    alpha.ok(&["sync"]);
    assert!(alpha.ok(&["secrets", "conflicts"]).starts_with("SHARED\t"));
    alpha.ok(&["secrets", "unset", "SHARED"]);
    assert_eq!(alpha.ok(&["secrets", "conflicts"]), "no conflicts\n");
    // The decrypted file holds no trace of the losing value.
    let plain = crate::util::age_decrypt(&alpha.identity(), &alpha.repo().join("secrets.env.age"))
        .expect("alpha decrypts the secrets");
    let text = String::from_utf8_lossy(&plain);
    assert!(
        !text.contains("from-alpha") && !text.contains("SHARED"),
        "{text}"
    );
}

/// Writes an executable editor script that replaces the file it is given with `content`.
fn editor_writing(m: &Machine, content: &[u8]) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let data = m.dir.path().join("edited");
    std::fs::write(&data, content).unwrap();
    let script = m.dir.path().join("editor.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ndirname \"$1\" > {}/edit-dir\ncat {} > \"$1\"\n",
            m.dir.path().display(),
            data.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn edit_refuses_a_nul_and_cr_only_line_endings_with_the_line() {
    let mut a = Machine::new();
    a.ok(&["init", "--name", "a"]);
    a.ok_with_stdin(&["secrets", "set", "A"], b"1\n");
    let editor = editor_writing(&a, b"A=1\rB=2\r");
    a.set_env("EDITOR", &editor);
    let err = a.fails(&["secrets", "edit"], 1);
    assert!(
        err.contains("the edited secrets were malformed (line 1 holds a carriage return (CR) that does not end a line: use LF or CRLF line endings); nothing was changed"),
        "{err}"
    );
    std::fs::write(a.dir.path().join("edited"), b"A=1\nB=x\0y\n").unwrap();
    let err = a.fails(&["secrets", "edit"], 1);
    assert!(
        err.contains("(line 2 holds a NUL byte, which no environment variable can hold)"),
        "{err}"
    );
    assert_eq!(a.ok(&["secrets", "list"]), "A\n");
}

#[test]
fn edit_works_in_the_runtime_dir_and_a_stale_copy_is_swept_saying_so() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;
    let mut a = Machine::new();
    a.ok(&["init", "--name", "a"]);
    let run = a.dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    a.set_env("XDG_RUNTIME_DIR", &run);
    let editor = editor_writing(&a, b"A=1\n");
    a.set_env("EDITOR", &editor);
    a.ok(&["secrets", "edit"]);
    let used = std::fs::read_to_string(a.dir.path().join("edit-dir")).unwrap();
    assert!(
        used.starts_with(&format!("{}/fleetkey-edit-", run.display())),
        "{used}"
    );
    assert!(
        !std::path::Path::new(used.trim()).exists(),
        "the copy is removed"
    );
    // A copy left by a killed edit (SIGKILL while the editor runs): the next command that
    // takes the lock removes it, saying so.
    let script = a.dir.path().join("killer.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ndirname \"$1\" > {}/edit-dir\nkill -9 $PPID\n",
            a.dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let killed = a
        .cmd(["secrets", "edit"])
        .env("EDITOR", &script)
        .output()
        .unwrap();
    assert_eq!(killed.status.signal(), Some(9));
    let stale = std::path::PathBuf::from(
        std::fs::read_to_string(a.dir.path().join("edit-dir"))
            .unwrap()
            .trim(),
    );
    assert!(
        stale.join("secrets.env").exists(),
        "the kill left the plaintext copy"
    );
    // Another setup of the same user sharing the runtime directory is left alone.
    let other = run.join("fleetkey-edit-0000000-other");
    std::fs::create_dir(&other).unwrap();
    let out = a.run(&["sync"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "removed {}: a decrypted copy of the secrets left by an interrupted `fleetkey secrets edit`",
            stale.display()
        )),
        "{err}"
    );
    assert!(other.exists());
    assert!(!stale.exists());
}

#[test]
fn edit_with_no_editor_and_no_terminal_does_not_run_vi() {
    let a = Machine::new();
    a.ok(&["init", "--name", "a"]);
    let err = a.fails(&["secrets", "edit"], 1);
    assert_eq!(
        err,
        "fleetkey: error: no editor: $VISUAL and $EDITOR are unset and there is no terminal to run vi in\n  hint: set EDITOR (e.g. `EDITOR=nano fleetkey secrets edit`), or change one key with `fleetkey secrets set KEY`\n"
    );
}

/// Values that break naive quoting.
const TRICKY: &[(&str, &str)] = &[
    ("PLAIN", "hello"),
    ("QUOTE", "it's a 'test'"),
    ("SPACES", "we said: hi there"),
    ("DOLLAR", "$HOME `id` $(id) \\n \\\\"),
    ("MULTI", "line one\nline two\n"),
    ("DQ", "\"double\" and \\' mix"),
];

#[test]
fn export_sh_and_fish_are_read_back_exactly_and_exported_to_children() {
    let a = Machine::new();
    a.ok(&["init", "--name", "a"]);
    for (k, v) in TRICKY {
        a.ok_with_stdin(&["secrets", "set", k], format!("{v}\n").as_bytes());
    }
    let sh = a.ok(&["secrets", "export", "--format", "sh"]);
    let file = a.dir.path().join("export.sh");
    std::fs::write(&file, &sh).unwrap();
    let fish_text = a.ok(&["secrets", "export", "--format", "fish"]);
    let fish_file = a.dir.path().join("export.fish");
    std::fs::write(&fish_file, &fish_text).unwrap();
    for (shell, package) in [
        ("bash", "bash"),
        ("dash", "dash"),
        ("zsh", "zsh"),
        ("fish", "fish"),
    ] {
        let program = require(shell, package);
        for (k, v) in TRICKY {
            // printenv is a child process: it sees only exported variables.
            let script = if shell == "fish" {
                format!("source {}; printenv {k}", fish_file.display())
            } else {
                format!("eval \"$(cat {})\"; printenv {k}", file.display())
            };
            let out = Command::new(&program)
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("{v}\n"),
                "{shell} read {k} back wrong: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn materialize_format_sh_is_sourced_exactly() {
    let a = Machine::new();
    a.ok(&["init", "--name", "a"]);
    for (k, v) in TRICKY {
        a.ok_with_stdin(&["secrets", "set", k], format!("{v}\n").as_bytes());
    }
    let fleet_toml = a.repo().join("fleet.toml");
    let text = std::fs::read_to_string(&fleet_toml).unwrap();
    let text = text.replacen(
        "[secrets]\n",
        "[secrets]\nmaterialize = \"~/.secrets.sh\"\nmaterialize_format = \"sh\"\n",
        1,
    );
    assert!(text.contains("materialize_format"), "{text}");
    std::fs::write(&fleet_toml, text).unwrap();
    run_program(
        Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
            .arg(a.repo())
            .args(["commit", "-qam", "materialize as sh"]),
    );
    a.sync();
    let file = a.path(".secrets.sh");
    let bash = require("bash", "bash");
    for (k, v) in TRICKY {
        let out = Command::new(&bash)
            .arg("-c")
            .arg(format!(". {}; printenv {k}", file.display()))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{v}\n"),
            "{k}"
        );
    }
}

#[test]
fn exec_of_a_missing_or_unexecutable_command_exits_127_or_126() {
    let a = Machine::new();
    a.ok(&["init", "--name", "a"]);
    let err = a.fails(&["secrets", "exec", "--", "/nonexistent"], 127);
    assert_eq!(
        err,
        "fleetkey: error: cannot run /nonexistent: command not found\n"
    );
    let plain = a.dir.path().join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    let err = a.fails(&["secrets", "exec", "--", plain.to_str().unwrap()], 126);
    assert_eq!(
        err,
        format!(
            "fleetkey: error: cannot run {}: permission denied (not executable)\n",
            plain.display()
        )
    );
}

#[test]
fn directories_sync_creates_follow_the_users_umask() {
    use std::os::unix::fs::PermissionsExt;
    let (alpha, beta) = two_machines();
    alpha.write(".config/app/settings.conf", b"x=1\n");
    alpha.ok(&["track", alpha.path(".config/app").to_str().unwrap()]);
    // beta syncs under umask 027: the new directories are 0750, not 0700 and not 0755.
    let sync = beta.cmd(["sync"]);
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 027; exec \"$@\"")
        .arg("sh")
        .arg(sync.get_program())
        .arg("sync")
        .env_clear()
        .envs(sync.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |rel: &str| {
        std::fs::metadata(beta.path(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(".config/app"), 0o750);
    assert_eq!(mode(".config/app/settings.conf") & 0o700, 0o600);
    assert_eq!(mode(".ssh"), 0o700);
}

#[test]
fn a_world_writable_authorized_keys_is_rewritten_0600_saying_so() {
    use std::os::unix::fs::PermissionsExt;
    let a = Machine::new();
    a.ok(&["init", "--name", "a"]);
    a.sync();
    let ak = a.path(".ssh/authorized_keys");
    assert!(ak.exists(), "the first sync merged the fleet's key");
    std::fs::set_permissions(&ak, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = a.run(&["sync"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} was mode 666 (writable by others, or not yours), which sshd's StrictModes refuses for every key in it; rewrote it 0600",
            ak.display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(&ak).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // --apply does the same.
    std::fs::set_permissions(&ak, std::fs::Permissions::from_mode(0o646)).unwrap();
    let out = a.run(&["authorized-keys", "--apply", ak.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("was mode 646"));
    assert_eq!(
        std::fs::metadata(&ak).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_symlinked_authorized_keys_is_explained_alike_by_sync_and_doctor() {
    let a = Machine::new();
    a.ok(&["init", "--name", "a"]);
    a.sync();
    let ak = a.path(".ssh/authorized_keys");
    let real = a.path("real_keys");
    std::fs::rename(&ak, &real).unwrap();
    std::os::unix::fs::symlink(&real, &ak).unwrap();
    let hint = format!(
        "fleetkey merges keys only into a regular file (a link could point anywhere): replace the link with the file it points to (`cp --remove-destination \"$(readlink -f {p})\" {p}`), or set `[authorized_keys] path` in fleet.toml to the real file",
        p = ak.display()
    );
    // sync keeps going (the rest of the cycle is fine) and says why and what to do.
    let out = a.run(&["sync"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "held back: authorized_keys was not merged: {} is a symbolic link; fleetkey never reads or writes through one ({hint})",
            ak.display()
        )),
        "{err}"
    );
    let out = a.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "FAIL  authorized_keys      {} is a symbolic link: sync refuses to merge into it; {hint}",
            ak.display()
        )),
        "{text}"
    );
}

#[test]
fn man_out_writes_a_page_for_every_subcommand_the_main_page_names() {
    let m = Machine::new();
    let dir = m.dir.path().join("man1");
    let out = m.ok(&["man", "--out", dir.to_str().unwrap()]);
    assert!(out.starts_with("fleetkey: wrote "), "{out}");
    let main = std::fs::read_to_string(dir.join("fleetkey.1")).unwrap();
    let mut named = 0;
    for word in main.split_whitespace().filter(|w| w.ends_with("(1)")) {
        let file = format!("{}.1", word.trim_end_matches("(1)").replace("\\-", "-"));
        assert!(
            dir.join(&file).is_file(),
            "fleetkey.1 names {word}: no {file}"
        );
        named += 1;
    }
    assert!(named >= 10, "{main}");
    let single = m.ok(&["man"]);
    assert!(!single.contains("(1)\n") || !single.contains("fleetkey\\-init(1)"));
}

/// `fleetkey ARGS` on `m` with the linux agents platform forced, its platform commands recorded
/// to `log` and those starting with a prefix in `fail` (`;`-separated) failing.
fn with_agents(
    m: &Machine,
    args: &[&str],
    log: &std::path::Path,
    fail: &str,
) -> std::process::Output {
    m.cmd(args)
        .env("FLEETKEY_AGENTS_PLATFORM", "linux")
        .env(
            "FLEETKEY_AGENTS_RUNNER",
            format!("record:{}", log.display()),
        )
        .env("FLEETKEY_AGENTS_FAIL", fail)
        .output()
        .unwrap()
}

#[test]
fn doctor_fails_agents_that_do_not_run_or_cannot_be_asked_and_uninstall_reports_failed_calls() {
    let m = Machine::new();
    m.ok(&["init", "--name", "a"]);
    let log = m.dir.path().join("commands.log");
    let out = with_agents(&m, &["agents", "install"], &log, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The recorder answers `is-active` with "inactive": installed files, no running agent.
    let out = with_agents(&m, &["doctor"], &log, "");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "FAIL  agent watch          installed but not running: run `fleetkey agents install`"
        ),
        "{text}"
    );
    // No reachable service manager: unknown is a failure too, never "ok".
    let out = with_agents(&m, &["doctor"], &log, "systemctl --user is-active");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  agent watch          installed, but the service manager could not say whether it runs (`systemctl --user is-active fleetkey-watch.service` said: recorded failure)"),
        "{text}"
    );
    assert!(!text.contains("ok    agent"), "{text}");

    let out = with_agents(
        &m,
        &["agents", "uninstall"],
        &log,
        "systemctl --user disable",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("fleetkey: error: 2 service manager call(s) failed, so the agents may still be running: `systemctl --user disable --now fleetkey-watch.service`: recorded failure; `systemctl --user disable --now fleetkey-pull.timer`: recorded failure\n  hint: the user service manager must be reachable"),
        "{err}"
    );
}

#[test]
fn doctor_says_when_the_binary_an_agent_runs_is_gone() {
    use std::os::unix::fs::PermissionsExt;
    let m = Machine::new();
    m.ok(&["init", "--name", "a"]);
    let log = m.dir.path().join("commands.log");
    // Installed by a copy of the binary, which an "upgrade" then removes.
    let dir = m.dir.path().join("cellar");
    std::fs::create_dir(&dir).unwrap();
    let copy = dir.join("fleetkey");
    std::fs::copy(crate::util::bin(), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut install = m.cmd(["agents", "install"]);
    let install = install.env("FLEETKEY_AGENTS_PLATFORM", "linux").env(
        "FLEETKEY_AGENTS_RUNNER",
        format!("record:{}", log.display()),
    );
    let mut tries = 0;
    let out = loop {
        // A copy made a moment ago can be busy (ETXTBSY) while another test's fork holds it.
        let mut cmd = Command::new(&copy);
        cmd.args(install.get_args()).env_clear();
        cmd.envs(install.get_envs().filter_map(|(k, v)| Some((k, v?))));
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&copy).unwrap();
    let out = with_agents(&m, &["doctor"], &log, "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "FAIL  agent watch          it runs {}, which no longer exists (moved or removed by an upgrade?): run `fleetkey agents install` to record this binary",
            copy.display()
        )),
        "{text}"
    );
}

#[test]
fn an_agents_log_lines_carry_their_time() {
    let m = Machine::new();
    m.ok(&["init", "--name", "a"]);
    let out = m
        .cmd(["sync"])
        .env("FLEETKEY_AGENT", "watch")
        .env("FLEETKEY_AGENTS_PLATFORM", "linux")
        .env("FLEETKEY_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().expect("debug lines");
    // 2026-11-28T11:00:00Z fleetkey: debug: …
    let (stamp, rest) = first.split_once(' ').unwrap();
    assert_eq!(stamp.len(), 20, "{first}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{first}"
    );
    assert!(rest.starts_with("fleetkey: debug: "), "{first}");
    // A command a person runs has no stamp.
    let out = m
        .cmd(["sync"])
        .env("FLEETKEY_LOG", "debug")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().next().unwrap().starts_with("fleetkey: debug: "),
        "{err}"
    );
}

#[test]
fn a_conflict_copy_raises_a_desktop_notification_unless_turned_off() {
    let (alpha, beta) = two_machines();
    let log = alpha.dir.path().join("notify.log");
    let conflict = |round: &str| {
        std::fs::write(
            alpha.home.join(".zshrc"),
            format!("export A=alpha{round}\n"),
        )
        .unwrap();
        std::fs::write(beta.home.join(".zshrc"), format!("export A=beta{round}\n")).unwrap();
        beta.ok(&["sync"]);
        let _ = std::fs::remove_file(&log);
        let out = alpha
            .cmd(["sync"])
            .env("FLEETKEY_AGENTS_PLATFORM", "macos")
            .env(
                "FLEETKEY_AGENTS_RUNNER",
                format!("record:{}", log.display()),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&log).unwrap_or_default()
    };
    std::fs::write(alpha.home.join(".zshrc"), "export A=1\n").unwrap();
    alpha.ok(&["track", alpha.home.join(".zshrc").to_str().unwrap()]);
    beta.ok(&["sync"]);
    let recorded = conflict("1");
    assert!(
        recorded.starts_with("osascript -e 'display notification \"~/.zshrc took the fleet'\\''s version; this machine'\\''s is in ~/.zshrc.conflict-alpha-"),
        "{recorded}"
    );
    assert!(
        recorded.contains("with title \"fleetkey: a conflict copy was made\"'"),
        "{recorded}"
    );
    assert_eq!(alpha.conflict_copies(".zshrc").len(), 1);

    // Off in config.toml: a conflict copy, no notification.
    let config = alpha.path(".config/fleetkey/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}notify = false\n")).unwrap();
    let recorded = conflict("2");
    assert!(!recorded.contains("osascript"), "{recorded}");
    assert_eq!(alpha.conflict_copies(".zshrc").len(), 2);
}

#[test]
fn set_settles_a_conflict() {
    let (alpha, beta) = two_machines();
    beta.ok_with_stdin(&["secrets", "set", "SHARED"], b"from-beta\n");
    alpha.ok_with_stdin(&["secrets", "set", "SHARED", "--no-push"], b"from-alpha\n");
    alpha.ok(&["sync"]);
    assert!(alpha.ok(&["secrets", "list"]).contains("SHARED\tCONFLICT"));
    alpha.ok_with_stdin(&["secrets", "set", "SHARED"], b"agreed\n");
    assert_eq!(alpha.ok(&["secrets", "list"]), "SHARED\n");
    assert_eq!(alpha.ok(&["secrets", "conflicts"]), "no conflicts\n");
}

#[test]
fn commits_are_authored_by_the_users_git_identity_and_name_the_machine() {
    let a = Machine::new();
    std::fs::write(
        a.path(".gitconfig"),
        "[user]\n\tname = Ann Example\n\temail = ann@example.org\n",
    )
    .unwrap();
    a.ok(&["init", "--name", "laptop"]);
    a.ok_with_stdin(&["secrets", "set", "K"], b"v\n");
    let log = crate::util::git_out(&a.repo(), &["log", "-1", "--format=%an <%ae>|%cn|%B"]);
    assert_eq!(
        log.trim(),
        "Ann Example <ann@example.org>|Ann Example|laptop: secrets: set K\n\nFleetkey-Machine: laptop"
    );
    // The history still verifies, and a sync is fine.
    a.sync();
    a.ok(&["verify"]);
    // Without a git identity: fleetkey (NAME), and the same trailer.
    let b = Machine::new();
    b.ok(&["init", "--name", "desk"]);
    let log = crate::util::git_out(&b.repo(), &["log", "-1", "--format=%an <%ae>|%B"]);
    assert_eq!(
        log.trim(),
        "fleetkey (desk) <desk@fleetkey.invalid>|desk: start the fleet\n\nFleetkey-Machine: desk"
    );
}

#[test]
fn enroll_clones_the_fleet_branch_of_a_bare_repo_whose_head_is_master() {
    let alpha = Machine::named("alpha");
    let bare = alpha.dir.path().join("fleet.git");
    run_program(
        Command::new("git")
            .args(["init", "--quiet", "--bare", "-b", "master"])
            .arg(&bare),
    );
    let url = bare.to_str().unwrap();
    alpha.ok(&["init", "--name", "alpha", "--remote", url]);
    let beta = Machine::named("beta");
    crate::util::fleet::join(&alpha, &beta, url);
    assert!(beta.repo().join("fleet.toml").is_file());
    assert!(beta.ok(&["status"]).contains("beta"));
}

#[test]
fn status_shows_a_rotated_key_as_retired_the_fetch_time_and_an_unfinished_rotation() {
    let (alpha, beta) = two_machines();
    beta.ok(&["rotate"]);
    alpha.sync();
    let text = alpha.ok(&["status"]);
    assert!(!text.contains("revoked: beta"), "{text}");
    let retired = text
        .lines()
        .find(|l| l.starts_with("  retired key: beta "))
        .unwrap_or_else(|| panic!("no retired key line:\n{text}"));
    assert!(
        retired.ends_with("(a key rotated away; the machine is active)"),
        "{retired}"
    );
    let sync_line = text.lines().find(|l| l.starts_with("sync ")).unwrap();
    assert!(
        sync_line.starts_with("sync     0 ahead, 0 behind the forge as of the last fetch (20"),
        "{sync_line}"
    );
    let json: serde_json::Value = serde_json::from_str(&alpha.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["fleet"]["revoked"], serde_json::json!([]));
    assert!(
        json["fleet"]["retired_keys"][0]
            .as_str()
            .unwrap()
            .starts_with("beta ")
    );
    assert!(json["sync"]["last_fetch"].as_str().unwrap().ends_with('Z'));

    // A rotate killed after it made the new identity leaves identity.txt.next: status says so.
    alpha.killed_at(&["rotate"], "rotate:identity-made");
    let text = alpha.ok(&["status"]);
    assert!(
        text.contains("  ROTATION UNFINISHED: identity.txt.next is left by a `fleetkey rotate` that was interrupted; run `fleetkey rotate` again to finish it\n"),
        "{text}"
    );
    alpha.ok(&["rotate"]);
    assert!(!alpha.ok(&["status"]).contains("ROTATION UNFINISHED"));
}

#[test]
fn bundles_need_a_strong_passphrase_never_land_in_the_clone_and_join_says_what_next() {
    let alpha = Machine::new();
    alpha.ok(&["init", "--name", "alpha"]);
    let weak = alpha.dir.path().join("weak");
    std::fs::write(&weak, "x\n").unwrap();
    let bundle = alpha.dir.path().join("gamma.bundle");
    let err = alpha.fails(
        &[
            "enroll",
            "gamma",
            "--bundle",
            bundle.to_str().unwrap(),
            "--passphrase-file",
            weak.to_str().unwrap(),
        ],
        1,
    );
    assert_eq!(
        err,
        "fleetkey: error: the bundle passphrase is too weak: a bundle grants full membership to whoever opens it, so use at least 16 characters, not one repeated\n  hint: generate one: `head -c 18 /dev/urandom | base64 > pass.txt`, then pass `--passphrase-file pass.txt` (and send it apart from the bundle)\n"
    );
    assert!(!bundle.exists());

    // A path that reaches into the clone through a symlink is refused too.
    let pass = alpha.dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let link = alpha.dir.path().join("into-clone");
    std::os::unix::fs::symlink(alpha.repo(), &link).unwrap();
    let sneaky = link.join("gamma.bundle");
    let err = alpha.fails(
        &[
            "enroll",
            "gamma",
            "--bundle",
            sneaky.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("is inside the fleet repo"), "{err}");
    assert!(!alpha.repo().join("gamma.bundle").exists());

    alpha.ok(&[
        "enroll",
        "gamma",
        "--bundle",
        bundle.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    let gamma = Machine::new();
    let forge = alpha.forge();
    let out = gamma.ok(&[
        "join",
        bundle.to_str().unwrap(),
        "--remote",
        forge.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert!(
        out.contains(&format!(
            "  the bundle {} holds this machine's private keys: delete it (`rm {}`) once you no longer need it\nnext: run `fleetkey sync` to apply the fleet here, then `fleetkey agents install`\n",
            bundle.display(),
            bundle.display()
        )),
        "{out}"
    );
    gamma.sync();
}

#[test]
fn revoke_compromised_on_a_revoked_machine_still_reports_and_marks() {
    let (alpha, beta) = two_machines();
    alpha.ok_with_stdin(&["secrets", "set", "TOKEN"], b"t\n");
    beta.sync();
    alpha.ok(&["revoke", "beta", "--yes"]);
    let out = alpha.ok(&["revoke", "beta", "--yes", "--compromised"]);
    assert!(
        out.starts_with("fleetkey: beta was already revoked; here is what its keys could read.\n"),
        "{out}"
    );
    assert!(out.contains("\n  TOKEN "), "{out}");
    assert!(!out.contains("INCOMPLETE"), "{out}");
    assert!(
        alpha
            .ok(&["secrets", "list"])
            .contains("TOKEN\tNEEDS A NEW VALUE")
    );
}

#[test]
fn after_a_rotate_the_report_reads_old_history_and_says_when_it_is_incomplete() {
    let (alpha, beta) = two_machines();
    alpha.ok_with_stdin(&["secrets", "set", "OLD_ONE"], b"o\n");
    beta.sync();
    alpha.ok(&["rotate"]);
    let retired = std::fs::read_dir(alpha.path(".config/fleetkey/retired"))
        .unwrap()
        .count();
    assert_eq!(retired, 1, "the old identity is kept for reading history");
    // A machine that joins now cannot read what was encrypted before it joined.
    let carol = Machine::named("carol");
    crate::util::fleet::join(&alpha, &carol, alpha.forge().to_str().unwrap());
    beta.sync();
    let out = alpha.ok(&["revoke", "beta", "--yes", "--compromised"]);
    assert!(out.contains("\n  OLD_ONE "), "{out}");
    assert!(
        !out.contains("INCOMPLETE") && !out.contains("was readable by it"),
        "{out}"
    );
    // carol was not a member when OLD_ONE was set: its report says it is incomplete, once.
    carol.sync();
    let out = carol.ok(&["revoke", "beta", "--yes", "--compromised"]);
    let incomplete: Vec<&str> = out.lines().filter(|l| l.contains("INCOMPLETE")).collect();
    assert_eq!(incomplete.len(), 1, "{out}");
    assert!(
        incomplete[0].starts_with("The report is INCOMPLETE: ")
            && incomplete[0].contains("this machine was not a member then"),
        "{out}"
    );
}

#[test]
fn a_broken_fleet_toml_is_said_once_per_cycle_and_restore_fleet_toml_heals_it() {
    let a = Machine::new();
    a.ok(&["init", "--name", "alpha"]);
    a.ok(&["sync"]);
    let toml = a.repo().join("fleet.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("[secrets]\n", "[secrets]\nrecipent = \"age1\"\n"),
    )
    .unwrap();
    a.commit_in_clone("settings by hand");
    let out = a.run(&["sync"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("is not a valid configuration file").count(),
        1,
        "{err}"
    );
    let line = err.lines().find(|l| l.contains("recipent")).unwrap();
    assert!(
        line.contains("stays in force") && line.contains("fleetkey restore fleet.toml"),
        "one line with the fix: {err}"
    );
    let log = a.ok(&["log", "fleet.toml"]);
    assert!(
        log.lines().count() >= 2 && log.contains("settings by hand"),
        "{log}"
    );
    let out = a.ok(&["restore", "fleet.toml"]);
    assert!(
        out.contains("fleet.toml is back to the version of"),
        "{out}"
    );
    let out = a.run(&["sync"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("not a valid configuration"), "{err}");
    assert!(
        !a.text(".local/share/fleetkey/fleet/fleet.toml")
            .contains("recipent")
    );
}

#[test]
fn secrets_edit_says_which_keys_changed_and_where_they_went() {
    let mut a = Machine::new();
    a.ok(&["init", "--name", "a"]);
    a.ok_with_stdin(&["secrets", "set", "A"], b"1\n");
    a.ok_with_stdin(&["secrets", "set", "B"], b"2\n");
    let editor = editor_writing(&a, b"# mine\nA=10\nC=3\n");
    a.set_env("EDITOR", &editor);
    assert_eq!(
        a.ok(&["secrets", "edit"]),
        "fleetkey: secrets edited (added C; changed A; removed B): encrypted to 1 machine (a) and pushed\n"
    );
    std::fs::write(a.dir.path().join("edited"), b"# mine, again\nA=10\nC=3\n").unwrap();
    assert_eq!(
        a.ok(&["secrets", "edit"]),
        "fleetkey: secrets edited (comments and layout only): encrypted to 1 machine (a) and pushed\n"
    );
    assert_eq!(a.ok(&["secrets", "list"]), "A\nC\n");
}

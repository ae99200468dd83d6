//! What a push to the fleet repo can make a machine do (issue 10, design "Confinement").
//!
//! Every case is an attack by a plain `git clone` + `git push` to a real forge, made as a
//! compromised MEMBER would make it (its commits signed with its own fleetkey signing key when it
//! has one), so the checks here hold even for authentic commits. Three machines: `a` the
//! attacker, `b` the victim, `c` the machine revoked afterwards. After each attack:
//! - nothing outside `b`'s HOME changed (a directory beside it is checksummed);
//! - `b`'s own fleetkey files and its clone's `.git/config` are unchanged;
//! - no private file of `b` and no secret plaintext reached any object on the forge;
//! - `b` keeps syncing: an honest fix, then `revoke c`, reach `b`, whose applied
//!   authorized_keys then lacks `c`'s key.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::fleet::Fleet;
use crate::util::forge::Transport;
use crate::util::{Machine, Snapshot, run_program, snapshot};

/// A secret value every test sets; it must never reach the forge in plaintext.
const SECRET: &str = "CANARY-SECRET-7c1e0f";
/// The contents of b's private files (one per kind the detector must know).
const PRIVATE: &[(&str, &str)] = &[
    (
        ".aws/credentials",
        "[default]\naws_access_key_id = AKIACANARY\naws_secret_access_key = CANARY-AWS-93ab\n",
    ),
    (
        ".git-credentials",
        "https://bob:CANARY-GITCRED-55d0@github.com\n",
    ),
    (
        ".gnupg/private-keys-v1.d/0123456789ABCDEF.key",
        "Created: 20260101T000000\nKey: (private-key (ecc (curve Ed25519)(q #CANARY-GPG-1f2e#)))\n",
    ),
    (
        ".netrc",
        "machine example.org login bob password CANARY-NETRC-77aa\n",
    ),
];

/// The fleet, the victim's private files, and a directory outside every HOME.
struct Scene {
    fleet: Fleet,
    outside: tempfile::TempDir,
    before_outside: Snapshot,
    /// b's own fleetkey files and its clone's git config, with their bytes.
    own: Vec<(PathBuf, Vec<u8>)>,
}

impl Scene {
    fn new() -> Scene {
        let fleet = Fleet::new(Transport::GitDaemon, &["a", "b", "c"]);
        let (a, b) = (fleet.n(0), fleet.n(1));
        a.ok_with_stdin(&["secrets", "set", "API_TOKEN"], SECRET.as_bytes());
        b.sync();
        assert_eq!(b.ok(&["secrets", "get", "API_TOKEN"]).trim(), SECRET);
        for (rel, text) in PRIVATE {
            b.write(rel, text.as_bytes());
        }
        let outside = tempfile::Builder::new()
            .prefix("fleetkey-outside-")
            .tempdir()
            .unwrap();
        std::fs::write(outside.path().join("x"), b"untouched\n").unwrap();
        std::fs::create_dir(outside.path().join("dir")).unwrap();
        std::fs::write(outside.path().join("dir/file"), b"untouched\n").unwrap();
        let own = [
            b.home.join(".config/fleetkey/config.toml"),
            b.identity(),
            b.repo().join(".git/config"),
        ]
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
        let before_outside = snapshot(outside.path());
        Scene {
            fleet,
            outside,
            before_outside,
            own,
        }
    }

    fn a(&self) -> &Machine {
        self.fleet.n(0)
    }

    fn b(&self) -> &Machine {
        self.fleet.n(1)
    }

    fn c(&self) -> &Machine {
        self.fleet.n(2)
    }

    /// A compromised member's push: clone the forge outside every HOME, let `edit` change the
    /// work tree, commit everything and push to the fleet branch.
    fn push_as_member(&self, member: &Machine, message: &str, edit: impl FnOnce(&Path)) {
        let work = tempfile::Builder::new()
            .prefix("fleetkey-attack-")
            .tempdir()
            .unwrap();
        let dir = work.path().join("w");
        run_program(
            git()
                .args(["clone", "--quiet", "--branch", "main"])
                .arg(self.fleet.forge.url())
                .arg(&dir),
        );
        edit(&dir);
        run_program(git().arg("-C").arg(&dir).args(["add", "-A"]));
        let mut commit = git();
        commit.arg("-C").arg(&dir).args([
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@example.invalid",
        ]);
        let signing_key = member.home.join(".config/fleetkey/signing_key");
        if signing_key.exists() {
            commit
                .args(["-c", "gpg.format=ssh", "-c"])
                .arg(format!("user.signingkey={}", signing_key.display()))
                .args(["commit", "-S"]);
        } else {
            commit.arg("commit");
        }
        run_program(commit.args(["--quiet", "-m", message]));
        run_program(
            git()
                .arg("-C")
                .arg(&dir)
                .args(["push", "--quiet", "origin", "HEAD:main"]),
        );
    }

    /// The attack's fleet.toml: `body` after the default settings.
    fn push_fleet_toml(&self, message: &str, body: &str) {
        let body = body.to_string();
        self.push_as_member(self.a(), message, move |dir| {
            std::fs::write(dir.join("fleet.toml"), body).unwrap();
        });
    }

    /// Runs `sync` on b, which must not fail over what the forge holds; returns stderr.
    fn b_syncs(&self) -> String {
        let out = self.b().run(&["sync"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "b's sync failed after the attack (a bad push must never wedge a machine)\nstdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    /// The invariants every attack must leave standing.
    fn assert_confined(&self) {
        let diff = self.before_outside.diff(&snapshot(self.outside.path()));
        assert!(diff.is_empty(), "files outside HOME changed: {diff:?}");
        for (path, bytes) in &self.own {
            assert!(
                std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()),
                "{} is no longer a regular file",
                path.display()
            );
            assert_eq!(
                &std::fs::read(path).unwrap(),
                bytes,
                "{} changed",
                path.display()
            );
        }
        let objects = forge_objects(&self.fleet.forge.bare());
        let identity = std::fs::read_to_string(self.b().identity()).unwrap();
        let secret_key = identity
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .unwrap()
            .to_string();
        let mut canaries = vec![SECRET.to_string(), secret_key];
        for (_, text) in PRIVATE {
            let canary = text
                .split_whitespace()
                .find(|w| w.contains("CANARY"))
                .unwrap();
            canaries.push(canary.trim_matches(|c| c == '#' || c == '@').to_string());
        }
        for canary in canaries {
            assert!(
                !crate::util::contains(&objects, canary.as_bytes()),
                "a private file or secret reached the forge (found {}…)",
                &canary[..canary.len().min(12)]
            );
        }
    }

    /// An honest member heals the fleet with `fix` (a push of the repaired files), revokes c,
    /// and b takes both: its applied authorized_keys lacks c's key and holds a's.
    fn assert_heals(&self, fix: impl FnOnce(&Path)) {
        let a = self.a();
        self.push_as_member(a, "a: the honest fix", fix);
        a.sync();
        a.ok(&["revoke", "c", "--yes"]);
        self.b_syncs();
        let keys = self.b().authorized_keys();
        assert!(
            !keys.contains(self.c().ssh_key().split_whitespace().nth(1).unwrap()),
            "the revoked key is still in b's authorized_keys:\n{keys}"
        );
        assert!(keys.contains("fleetkey=a"), "{keys}");
        let rec = self.b().last_cycle().expect("b recorded its cycle");
        assert_eq!(rec["result"], "ok", "{rec}");
        assert_eq!(
            rec["held_back"].as_array().map(Vec::len).unwrap_or(0),
            0,
            "nothing is held back once the fleet is healed: {rec}"
        );
        self.assert_confined();
    }
}

fn git() -> Command {
    let mut cmd = Command::new("git");
    cmd.env_remove("GIT_DIR").env("GIT_TERMINAL_PROMPT", "0");
    cmd
}

/// The content of every object on the forge.
fn forge_objects(bare: &Path) -> Vec<u8> {
    run_program(
        git()
            .arg("-C")
            .arg(bare)
            .args(["cat-file", "--batch-all-objects", "--batch"]),
    )
}

/// The default fleet.toml of the test fleet, with `[sync] paths` set.
fn paths_toml(paths: &[&str]) -> String {
    let list: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    format!("[sync]\npaths = [{}]\n", list.join(", "))
}

/// Removes the attack's extra files and writes a valid fleet.toml managing `~/.zshrc`.
fn honest(dir: &Path) {
    for extra in ["pwn", "gd", "etc", "home"] {
        let p = dir.join(extra);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink() || m.is_file()) {
            std::fs::remove_file(&p).unwrap();
        } else if p.is_dir() && extra != "home" {
            std::fs::remove_dir_all(&p).unwrap();
        }
    }
    // The attack may have left fleet.toml a symlink: replace it, never write through it.
    let _ = std::fs::remove_file(dir.join("fleet.toml"));
    std::fs::write(dir.join("fleet.toml"), paths_toml(&["~/.zshrc"])).unwrap();
}

#[test]
fn private_files_and_fleetkeys_own_files_never_leave_the_machine() {
    let s = Scene::new();
    s.push_fleet_toml(
        "a: manage everything",
        &format!(
            "{}[secrets]\nmaterialize = \"~/.leak.env\"\n",
            paths_toml(&[
                "~/.aws/",
                "~/.gnupg/",
                "~/.git-credentials",
                "~/.netrc",
                "~/.config/fleetkey/",
                "~/.ssh/",
                "~/.leak.env",
            ])
        ),
    );
    let stderr = s.b_syncs();
    // A second cycle captures what the first one materialized, if anything would.
    s.b_syncs();
    assert!(
        stderr.contains(".config/fleetkey"),
        "the refused path is reported:\n{stderr}"
    );
    let status = s.b().ok(&["status"]);
    assert!(status.contains("HELD BACK"), "{status}");
    s.assert_confined();
    s.assert_heals(honest);
}

#[test]
fn a_committed_symlink_never_lets_a_write_escape_home() {
    let s = Scene::new();
    let outside = s.outside.path().to_path_buf();
    s.push_as_member(s.a(), "a: link out", |dir| {
        std::os::unix::fs::symlink(&outside, dir.join("pwn")).unwrap();
        std::os::unix::fs::symlink(".git", dir.join("gd")).unwrap();
        std::fs::write(
            dir.join("fleet.toml"),
            paths_toml(&[
                "~/.local/share/fleetkey/fleet/pwn/x",
                "~/.local/share/fleetkey/fleet/gd/config",
            ]),
        )
        .unwrap();
    });
    s.b()
        .write(".local/share/fleetkey/fleet/pwn/x", b"would escape\n");
    let stderr = s.b_syncs();
    assert!(
        stderr.contains("symbolic link") || stderr.contains("symlink"),
        "the refused commit is reported:\n{stderr}"
    );
    for link in ["pwn", "gd"] {
        assert!(
            !std::fs::symlink_metadata(s.b().repo().join(link))
                .is_ok_and(|m| m.file_type().is_symlink()),
            "the symlink {link} was checked out into b's clone"
        );
    }
    s.assert_confined();
    s.assert_heals(honest);
}

#[test]
fn paths_outside_home_are_refused_and_the_rest_of_the_cycle_goes_on() {
    let s = Scene::new();
    let target = s.outside.path().join("x");
    s.b().write(".zshrc", b"# b's zshrc\n");
    s.push_fleet_toml(
        "a: reach outside",
        &format!(
            "{}[secrets]\nmaterialize = \"~/../outside/leak.env\"\n[authorized_keys]\npath = {:?}\n",
            paths_toml(&["~/../../../etc/x", "~/.zshrc", "~/.config/app/.git/config"]),
            target.display().to_string()
        ),
    );
    s.b_syncs();
    // The good entry still syncs: a's edit of ~/.zshrc reaches b.
    s.a().sync();
    s.a().write(".zshrc", b"# from a\n");
    s.a().sync();
    s.b_syncs();
    assert_eq!(s.b().text(".zshrc"), "# from a\n");
    let rec = s.b().last_cycle().unwrap();
    let held = rec["held_back"].to_string();
    assert!(held.contains("etc/x"), "{rec}");
    assert!(held.contains("authorized_keys"), "{rec}");
    s.assert_confined();
    s.assert_heals(honest);
}

#[test]
fn settings_out_of_range_keep_the_last_valid_ones() {
    let s = Scene::new();
    for poll in ["18446744073709551615s", "0s"] {
        s.push_fleet_toml(
            "a: absurd poll",
            &format!("[sync]\npaths = [\"~/.zshrc\"]\npoll = {poll:?}\n"),
        );
        let stderr = s.b_syncs();
        assert!(stderr.contains("sync.poll"), "{stderr}");
        let doctor = s.b().run(&["doctor"]);
        let text = String::from_utf8_lossy(&doctor.stdout);
        assert!(
            text.lines().any(|l| l.contains("fleet.toml")
                && l.contains("held back")
                && l.contains("sync.poll")),
            "doctor names the held-back fleet.toml:\n{text}"
        );
        // The agents still render with the last valid poll.
        let units = s.b().ok(&["agents", "print", "--platform", "linux"]);
        assert!(
            units.contains("OnUnitActiveSec=60s") || units.contains("OnUnitActiveSec=15s"),
            "{units}"
        );
    }
    s.assert_confined();
    s.assert_heals(honest);
}

#[test]
fn a_malformed_fleet_toml_never_wedges_and_a_fix_heals_it() {
    let s = Scene::new();
    s.push_fleet_toml("a: broken", "[sync\npaths = [\n");
    s.b_syncs();
    // secrets still work on b
    assert_eq!(s.b().ok(&["secrets", "get", "API_TOKEN"]).trim(), SECRET);
    s.assert_confined();
    s.assert_heals(honest);
}

#[test]
fn a_fleet_file_that_is_a_symlink_is_never_read_or_quoted() {
    let s = Scene::new();
    s.push_as_member(s.a(), "a: fleet.toml points at the identity", |dir| {
        std::fs::remove_file(dir.join("fleet.toml")).unwrap();
        std::os::unix::fs::symlink(
            "../../../../.config/fleetkey/identity.txt",
            dir.join("fleet.toml"),
        )
        .unwrap();
    });
    let stderr = s.b_syncs();
    assert!(!stderr.contains("AGE-SECRET-KEY"), "{stderr}");
    let status = s.b().run(&["status"]);
    let all = [status.stdout, status.stderr].concat();
    assert!(!crate::util::contains(&all, b"AGE-SECRET-KEY"));
    s.assert_confined();
    s.assert_heals(honest);
}

#[test]
fn a_file_where_this_machine_has_a_directory_is_held_back() {
    let s = Scene::new();
    s.b().write(".config/app/settings", b"b's settings\n");
    s.push_fleet_toml(
        "a: manage app",
        &paths_toml(&["~/.config/app/", "~/.zshrc"]),
    );
    s.b_syncs();
    s.push_as_member(s.a(), "a: a file where b has a directory", |dir| {
        std::fs::create_dir_all(dir.join("home")).unwrap();
        let _ = std::fs::remove_dir_all(dir.join("home/.config"));
        std::fs::write(dir.join("home/.config"), b"not a directory\n").unwrap();
    });
    s.b().write(".config/app/settings", b"b's new settings\n");
    s.b_syncs();
    assert_eq!(s.b().text(".config/app/settings"), "b's new settings\n");
    s.b_syncs();
    s.assert_confined();
    s.assert_heals(|dir| {
        // b's merge may have put its directory back already; either way the file goes.
        if dir.join("home/.config").is_file() {
            std::fs::remove_file(dir.join("home/.config")).unwrap();
        }
        std::fs::write(dir.join("fleet.toml"), paths_toml(&["~/.zshrc"])).unwrap();
    });
}

#[test]
fn files_over_the_size_limits_are_refused_without_being_written() {
    let s = Scene::new();
    // One byte over the managed-file limit (16 MiB, docs/sync.md "Confinement and limits").
    let big = vec![0u8; (16 << 20) + 1];
    s.push_as_member(s.a(), "a: a huge dotfile", move |dir| {
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::write(dir.join("home/.big"), &big).unwrap();
        std::fs::write(dir.join("fleet.toml"), paths_toml(&["~/.big"])).unwrap();
    });
    s.b_syncs();
    assert!(
        !s.b().path(".big").exists(),
        "the oversized file was written"
    );
    let rec = s.b().last_cycle().unwrap();
    assert!(rec["held_back"].to_string().contains(".big"), "{rec}");
    s.assert_confined();
    s.assert_heals(|dir| {
        std::fs::remove_file(dir.join("home/.big")).unwrap();
        std::fs::write(dir.join("fleet.toml"), paths_toml(&["~/.zshrc"])).unwrap();
    });
}

#[test]
fn an_oversized_secrets_file_is_refused_with_a_clear_error() {
    let s = Scene::new();
    s.push_as_member(s.a(), "a: a huge ciphertext", |dir| {
        let mut text = String::from("-----BEGIN AGE ENCRYPTED FILE-----\n");
        let line = "A".repeat(64);
        for _ in 0..(8 << 20) / 65 {
            text.push_str(&line);
            text.push('\n');
        }
        text.push_str("-----END AGE ENCRYPTED FILE-----\n");
        std::fs::write(dir.join("secrets.env.age"), text).unwrap();
    });
    s.b_syncs();
    let err = s.b().fails(&["secrets", "list"], 1);
    assert!(err.contains("larger than the limit"), "{err}");
    s.assert_confined();
}

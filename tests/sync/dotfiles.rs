//! Dotfiles across different machines: three machines whose HOME paths differ in length and
//! depth, ignore rules, home-path placeholders, per-machine files, diff/log/restore, settings
//! and forge moves.

use crate::util::fleet::Fleet;
use crate::util::forge::Transport;
use crate::util::{Machine, git_out};

/// alice, bob and carol, each HOME at another depth and length.
fn three() -> Fleet {
    Fleet::with_homes(
        Transport::GitDaemon,
        &["alice", "bob", "carol"],
        &["home-alice", "var/much/deeper/place/home-bob", "h"],
    )
}

fn home(m: &Machine) -> String {
    m.home.to_str().unwrap().to_string()
}

/// The file at `rel` in the forge's clone on `m` (the repo form).
fn in_repo(m: &Machine, rel: &str) -> Option<Vec<u8>> {
    std::fs::read(m.repo().join(rel)).ok()
}

#[test]
fn a_file_holding_the_home_path_reads_right_on_every_machine_and_round_trips() {
    let fleet = three();
    fleet.settle(1);
    let (a, b, c) = (fleet.n(0), fleet.n(1), fleet.n(2));
    let text = |h: &str| {
        format!(
            "source {h}/.config/app/aliases.sh\nexport APP_HOME={h}\n# fleetkey writes {{{{fleetkey.home}}}} in the repo\nnot {h}2/x\n"
        )
    };
    let binary = {
        let mut v = b"\0bin ".to_vec();
        v.extend_from_slice(home(a).as_bytes());
        v
    };
    a.write(".config/app/aliases.sh", text(&home(a)).as_bytes());
    a.write(".config/app/blob.bin", &binary);
    a.ok(&["track", "~/.config/app/"]);
    // The repo holds the placeholder, and the escape for the text that looked like one.
    let stored = String::from_utf8(in_repo(a, "home/.config/app/aliases.sh").unwrap()).unwrap();
    assert_eq!(
        stored,
        format!(
            "source {{{{fleetkey.home}}}}/.config/app/aliases.sh\nexport APP_HOME={{{{fleetkey.home}}}}\n# fleetkey writes {{{{fleetkey.lit}}}}home}}}} in the repo\nnot {}2/x\n",
            home(a)
        )
    );
    assert_eq!(in_repo(a, "home/.config/app/blob.bin").unwrap(), binary);
    fleet.settle(1);
    for m in [a, b, c] {
        let want = text(&home(m)).replace(
            &format!("not {}2/x", home(m)),
            &format!("not {}2/x", home(a)),
        );
        assert_eq!(m.text(".config/app/aliases.sh"), want, "{}", m.name);
        assert_eq!(m.read(".config/app/blob.bin"), binary, "{}", m.name);
    }
    // bob edits his copy (holding his own home path); alice gets the edit with hers.
    let edited = format!(
        "{}alias ll='ls -l {}/bin'\n",
        b.text(".config/app/aliases.sh"),
        home(b)
    );
    b.write(".config/app/aliases.sh", edited.as_bytes());
    b.sync();
    a.sync();
    c.sync();
    let on_a = a.text(".config/app/aliases.sh");
    assert!(on_a.starts_with(&text(&home(a))), "{on_a}");
    assert!(
        on_a.ends_with(&format!("alias ll='ls -l {}/bin'\n", home(a))),
        "{on_a}"
    );
    assert!(
        c.text(".config/app/aliases.sh")
            .contains(&format!("ls -l {}/bin", home(c)))
    );
    // Nothing ping-pongs: a second round changes nothing anywhere.
    let head = fleet.forge.head();
    fleet.settle(1);
    assert_eq!(
        fleet.forge.head(),
        head,
        "a capture undid another machine's"
    );
    for m in [a, b, c] {
        assert!(
            m.conflict_copies(".config/app/aliases.sh").is_empty(),
            "{}",
            m.name
        );
    }
}

#[test]
fn ignored_files_are_neither_captured_nor_deleted_on_any_machine() {
    let fleet = three();
    fleet.settle(1);
    let (a, b, c) = (fleet.n(0), fleet.n(1), fleet.n(2));
    let junk = [
        ".DS_Store",
        "._aliases.sh",
        ".aliases.sh.swp",
        ".aliases.sh.swo",
        "config.toml~",
        ".#config.toml",
        "#config.toml#",
        "4913",
        "Thumbs.db",
    ];
    a.write(".config/app/config.toml", b"x = 1\n");
    for j in junk {
        a.write(&format!(".config/app/{j}"), b"junk from alice");
        b.write(&format!(".config/app/{j}"), b"bob's own junk");
    }
    a.ok(&["track", "~/.config/app/"]);
    fleet.settle(1);
    let files = git_out(&a.repo(), &["ls-files", "home/.config/app"]);
    assert_eq!(files, "home/.config/app/config.toml", "{files}");
    for j in junk {
        let rel = format!(".config/app/{j}");
        assert_eq!(b.read(&rel), b"bob's own junk", "{j} on bob");
        assert_eq!(a.read(&rel), b"junk from alice", "{j} on alice");
        assert!(!c.path(&rel).exists(), "{j} reached carol");
    }
    assert_eq!(c.text(".config/app/config.toml"), "x = 1\n");
    let err = a.fails(&["track", "~/.config/app/.aliases.sh.swp"], 1);
    assert!(
        err.contains("is ignored (the built-in list or [sync] ignore)"),
        "{err}"
    );
    // A fleet pattern on top of the built-in list; the file stays where it is.
    a.write(".config/app/run.log", b"log\n");
    a.ok(&["config", "set", "ignore", "*.log"]);
    a.sync();
    assert!(in_repo(a, "home/.config/app/run.log").is_none());
    assert_eq!(a.text(".config/app/run.log"), "log\n");
}

#[test]
fn config_set_poll_reaches_every_machine_and_a_value_out_of_bounds_is_refused() {
    let fleet = three();
    fleet.settle(1);
    // Every machine in step first (each joiner's first cycle publishes its poke key).
    fleet.settle(1);
    let (a, b, c) = (fleet.n(0), fleet.n(1), fleet.n(2));
    let before = fleet.forge.head();
    let err = a.fails(&["config", "set", "poll", "0s"], 1);
    assert!(
        err.contains("poll cannot be set: 0s is out of range; allowed: 5s to 24h"),
        "{err}"
    );
    let err = b.fails(&["config", "set", "literal", "/etc/passwd"], 1);
    assert!(err.contains("literal cannot be set"), "{err}");
    let err = b.fails(&["config", "set", "recipent", "x"], 1);
    assert!(err.contains("no setting called"), "{err}");
    assert_eq!(fleet.forge.head(), before, "a refused value was pushed");

    a.ok(&["config", "set", "poll", "5s"]);
    let subject = git_out(&fleet.forge.bare(), &["log", "-1", "--format=%s", "main"]);
    assert_eq!(subject, "alice: config set poll 5s");
    b.sync();
    c.sync();
    for m in [a, b, c] {
        assert_eq!(m.ok(&["config", "get", "poll"]), "5s\n", "{}", m.name);
    }
    assert!(a.ok(&["config", "get"]).contains("poll = 5s\n"));
}

#[test]
fn here_overrides_stay_local_and_other_edits_still_travel() {
    let fleet = three();
    fleet.settle(1);
    let (a, b, c) = (fleet.n(0), fleet.n(1), fleet.n(2));
    a.write(".config/app/shared.conf", b"shared 1\n");
    a.write(".config/app/local.conf", b"fleet local\n");
    a.ok(&["track", "~/.config/app/"]);
    fleet.settle(1);
    assert_eq!(b.text(".config/app/local.conf"), "fleet local\n");

    a.write(".config/app/local.conf", b"alice only 1\n");
    let out = a.ok(&["track", "--here", "~/.config/app/local.conf"]);
    assert!(
        out.contains("is now this machine's own (hosts/alice/home/)"),
        "{out}"
    );
    assert!(
        a.repo()
            .join("hosts/alice/home/.config/app/local.conf")
            .is_file()
    );
    fleet.settle(1);
    a.write(".config/app/local.conf", b"alice only 2\n");
    a.write(".config/app/shared.conf", b"shared 2\n");
    a.sync();
    b.sync();
    c.sync();
    for m in [b, c] {
        assert_eq!(
            m.text(".config/app/local.conf"),
            "fleet local\n",
            "{}",
            m.name
        );
        assert_eq!(
            m.text(".config/app/shared.conf"),
            "shared 2\n",
            "{}",
            m.name
        );
    }
    assert_eq!(
        std::fs::read_to_string(a.repo().join("hosts/alice/home/.config/app/local.conf")).unwrap(),
        "alice only 2\n"
    );
    // bob's edit of the fleet's version travels to carol, not to alice's override.
    b.write(".config/app/local.conf", b"bob's edit\n");
    b.sync();
    a.sync();
    c.sync();
    assert_eq!(a.text(".config/app/local.conf"), "alice only 2\n");
    assert_eq!(c.text(".config/app/local.conf"), "bob's edit\n");
    // status and track say so.
    let status = a.ok(&["status"]);
    assert!(
        status.contains("overridden here: ~/.config/app/local.conf (this machine's own version)"),
        "{status}"
    );
    assert!(!b.ok(&["status"]).contains("overridden here"));
    assert_eq!(
        a.ok(&["diff", "--offline", "~/.config/app/"]),
        "outgoing: nothing to capture\nincoming: nothing from the forge\n\
         overridden here: ~/.config/app/local.conf (its edits stay on this machine)\n"
    );
    let out = a.ok(&["track", "~/.config/app/local.conf"]);
    assert!(
        out.contains(
            "its edits go to hosts/alice/home/.config/app/local.conf and reach no other machine"
        ),
        "{out}"
    );
    // untrack --here: the fleet's version comes back.
    a.ok(&["untrack", "--here", "~/.config/app/local.conf"]);
    a.sync();
    assert_eq!(a.text(".config/app/local.conf"), "bob's edit\n");
    assert!(!a.repo().join("hosts/alice").exists());
}

#[test]
fn diff_shows_both_directions_exactly() {
    let fleet = Fleet::with_homes(
        Transport::GitDaemon,
        &["alice", "bob"],
        &["home-alice", "var/much/deeper/place/home-bob"],
    );
    fleet.settle(1);
    let (a, b) = (fleet.n(0), fleet.n(1));
    a.write(
        ".config/app/aliases.sh",
        format!("one\nsource {}/x\nthree\n", home(a)).as_bytes(),
    );
    a.write(".config/app/other", b"keep\n");
    a.ok(&["track", "~/.config/app/"]);
    fleet.settle(1);
    assert_eq!(
        a.ok(&["diff"]),
        "outgoing: nothing to capture\nincoming: nothing from the forge\n"
    );
    // A local edit on alice, not yet synced.
    a.write(
        ".config/app/aliases.sh",
        format!("one\nsource {}/x\nthree\nfour\n", home(a)).as_bytes(),
    );
    // bob changes another file and pushes it.
    b.write(
        ".config/app/other",
        format!("keep\nin {}\n", home(b)).as_bytes(),
    );
    b.sync();
    let ha = home(a);
    assert_eq!(
        a.ok(&["diff"]),
        format!(
            "outgoing: 1 local edit(s) the next sync captures\n\
             diff ~/.config/app/aliases.sh (changed)\n\
             --- fleet/~/.config/app/aliases.sh\n+++ here/~/.config/app/aliases.sh\n\
             @@ -1,3 +1,4 @@\n one\n source {ha}/x\n three\n+four\n\
             incoming: 1 file(s) the next sync changes here\n\
             diff ~/.config/app/other (changed)\n\
             --- here/~/.config/app/other\n+++ forge/~/.config/app/other\n\
             @@ -1 +1,2 @@\n keep\n+in {ha}\n"
        )
    );
    // Only the paths asked for; offline uses the last fetch.
    assert_eq!(
        a.ok(&["diff", "--offline", "~/.config/app/other"]),
        format!(
            "outgoing: nothing to capture\n\
             incoming: 1 file(s) the next sync changes here\n\
             diff ~/.config/app/other (changed)\n\
             --- here/~/.config/app/other\n+++ forge/~/.config/app/other\n\
             @@ -1 +1,2 @@\n keep\n+in {ha}\n"
        )
    );
    // diff changed nothing: the sync does exactly that.
    a.sync();
    assert_eq!(a.text(".config/app/other"), format!("keep\nin {ha}\n"));
    assert_eq!(
        a.ok(&["diff"]),
        "outgoing: nothing to capture\nincoming: nothing from the forge\n"
    );
}

#[test]
fn log_and_restore_work_across_machines() {
    let fleet = three();
    fleet.settle(1);
    let (a, b, c) = (fleet.n(0), fleet.n(1), fleet.n(2));
    a.write(".zshrc", format!("v1 {}/bin\n", home(a)).as_bytes());
    a.ok(&["track", "~/.zshrc"]);
    fleet.settle(1);
    b.write(".zshrc", b"v2\n");
    b.sync();
    c.sync();
    c.write(".zshrc", b"v3\n");
    c.sync();
    let log = c.ok(&["log", "~/.zshrc"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    let field = |line: &str, i: usize| line.split_whitespace().nth(i).unwrap().to_string();
    assert_eq!(
        lines
            .iter()
            .map(|l| (field(l, 2), field(l, 3)))
            .collect::<Vec<_>>(),
        [
            ("carol".to_string(), "edit".to_string()),
            ("bob".into(), "edit".into()),
            ("alice".into(), "track".into())
        ],
        "{log}"
    );
    assert!(lines[0].ends_with("carol: sync ~/.zshrc"), "{log}");
    let first = field(lines[2], 0);
    // The whole fleet's log holds every commit, the roster's too.
    assert!(c.ok(&["log"]).lines().count() > 3);

    let out = c.ok(&["restore", "~/.zshrc", "--at", &first]);
    assert!(
        out.contains(&format!("is back to the version of {first}")),
        "{out}"
    );
    assert_eq!(c.text(".zshrc"), format!("v1 {}/bin\n", home(c)));
    let copies = c.conflict_copies(".zshrc");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read_to_string(&copies[0]).unwrap(), "v3\n");
    assert!(c.ok(&["status"]).contains("replaced by restore"));
    a.sync();
    b.sync();
    assert_eq!(a.text(".zshrc"), format!("v1 {}/bin\n", home(a)));
    assert_eq!(b.text(".zshrc"), format!("v1 {}/bin\n", home(b)));
    let log = a.ok(&["log", "~/.zshrc"]);
    let top = log.lines().next().unwrap();
    assert_eq!(
        (field(top, 2), field(top, 3)),
        ("carol".into(), "restore".into()),
        "{log}"
    );
    // Without --at: the version before the current one (v3, by carol).
    b.ok(&["restore", "~/.zshrc"]);
    assert_eq!(b.text(".zshrc"), "v3\n");
    let err = b.fails(&["restore", "~/.zshrc", "--before", "2000-01-01"], 1);
    assert!(
        err.contains("~/.zshrc has no version before 2000-01-01T00:00:00Z"),
        "{err}"
    );
    let err = b.fails(&["restore", "~/.zshrc", "--before", "yesterday"], 1);
    assert!(err.contains("is not a date"), "{err}");
    let err = b.fails(&["restore", "~/.nope"], 1);
    assert!(err.contains("~/.nope is not managed by the fleet"), "{err}");
}

#[test]
fn log_names_the_machine_even_when_every_machine_shares_one_git_identity() {
    let fleet = three();
    fleet.settle(1);
    let (a, b) = (fleet.n(0), fleet.n(1));
    // One .gitconfig everywhere, as a synced ~/.gitconfig makes it.
    for m in &fleet.nodes {
        m.write(
            ".gitconfig",
            b"[user]\n\tname = Same Person\n\temail = same@example.org\n",
        );
    }
    a.write(".zshrc", b"v1\n");
    a.ok(&["track", "~/.zshrc"]);
    fleet.settle(1);
    b.write(".zshrc", b"v2\n");
    b.sync();
    let log = b.ok(&["log", "~/.zshrc"]);
    let who: Vec<&str> = log
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(who, ["bob", "alice"], "{log}");
    assert!(!log.contains("Same"), "{log}");
}

#[test]
fn log_and_restore_of_a_managed_directory_cover_the_files_under_it() {
    let fleet = three();
    fleet.settle(1);
    let (a, b) = (fleet.n(0), fleet.n(1));
    a.write(".config/app/one", b"one v1\n");
    a.write(".config/app/two", b"two v1\n");
    a.ok(&["track", "~/.config/app/"]);
    fleet.settle(1);
    b.write(".config/app/one", b"one v2\n");
    b.sync();
    b.write(".config/app/two", b"two v2\n");
    b.write(".config/app/three", b"three\n");
    b.sync();
    let log = b.ok(&["log", "~/.config/app"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    let first = lines[2].split_whitespace().next().unwrap().to_string();
    assert!(
        lines[2].contains("alice") && lines[2].contains("track"),
        "{log}"
    );
    // A file under it has its own history, as before.
    assert_eq!(b.ok(&["log", "~/.config/app/one"]).lines().count(), 2);

    let out = b.ok(&["restore", "~/.config/app/", "--at", &first]);
    assert!(out.contains("2 of 2 files changed"), "{out}");
    assert!(
        out.contains("~/.config/app/three did not exist then"),
        "{out}"
    );
    assert_eq!(b.text(".config/app/one"), "one v1\n");
    assert_eq!(b.text(".config/app/two"), "two v1\n");
    assert_eq!(b.text(".config/app/three"), "three\n");
    assert_eq!(b.conflict_copies(".config/app/one").len(), 1);
    a.sync();
    assert_eq!(a.text(".config/app/two"), "two v1\n");
    // A directory has no single "previous" version.
    let err = b.fails(&["restore", "~/.config/app"], 1);
    assert!(err.contains("--at REV or --before DATE"), "{err}");
}

#[test]
fn log_restore_and_diff_refuse_a_path_that_is_not_managed() {
    let fleet = three();
    fleet.settle(1);
    let a = fleet.n(0);
    a.write(".notes", b"x\n");
    for args in [
        &["log", "~/.notes"][..],
        &["restore", "~/.notes", "--at", "HEAD"],
        &["diff", "~/.notes"],
    ] {
        let err = a.fails(args, 1);
        assert!(
            err.contains("~/.notes is not managed by the fleet")
                && err.contains("fleetkey track ~/.notes"),
            "{args:?}: {err}"
        );
    }
}

fn remote_of(m: &Machine) -> String {
    let text = std::fs::read_to_string(m.path(".config/fleetkey/config.toml")).unwrap();
    let v: toml::Table = toml::from_str(&text).unwrap();
    v["remote"].as_str().unwrap().to_string()
}

fn subject(bare: &std::path::Path, rev: &str) -> String {
    git_out(bare, &["log", "-1", "--format=%s", rev])
}

#[test]
fn remote_set_moves_a_live_fleet_and_an_offline_machine_follows() {
    use crate::util::forge::Forge;
    let fleet = three();
    let (a, b, c) = (fleet.n(0), fleet.n(1), fleet.n(2));
    a.write(".zshrc", b"z1\n");
    a.write(".inputrc", b"g1\n");
    a.ok(&["track", "~/.zshrc", "~/.inputrc"]);
    fleet.settle(1);
    let old_url = fleet.forge.url();
    let new = Forge::start(Transport::GitDaemon);
    let new_url = new.url();

    // carol goes offline with a committed edit; alice moves the fleet.
    c.write(".inputrc", b"g2 from carol, made offline\n");
    c.ok(&["sync", "--offline"]);
    let out = a.ok(&["remote", "set", &new_url]);
    assert_eq!(
        out,
        format!(
            "fleetkey: the fleet moved from {old_url} to {new_url}\n  every machine switches on its next cycle\n  the old forge's last commit says where the fleet went\n"
        )
    );
    assert_eq!(
        new.head(),
        fleet.forge.head(),
        "the old forge holds the move commit"
    );
    assert_eq!(
        subject(&new.bare(), "main"),
        format!("alice: remote set {new_url}")
    );
    assert_eq!(remote_of(a), new_url);
    assert!(
        a.ok(&["config", "get"])
            .contains(&format!("forge = {new_url}"))
    );

    // bob follows with his next command that pushes, and his edits go to the new forge only.
    let moved_at = fleet.forge.head();
    b.ok(&["config", "set", "settle", "3s"]);
    assert_eq!(remote_of(b), new_url);
    let log = git_out(&new.bare(), &["log", "-2", "--format=%s", "main"]);
    assert_eq!(
        log, "bob: merge the forge's changes\nbob: config set settle 3s",
        "bob's change went to the new forge"
    );
    b.write(".zshrc", b"z2 from bob\n");
    b.sync();
    assert_eq!(subject(&new.bare(), "main"), "bob: sync ~/.zshrc");
    assert_eq!(
        fleet.forge.head(),
        moved_at,
        "the old forge got more than the move"
    );

    // carol comes back: she finds the move on the old forge and follows it; her commit goes
    // to the new forge only, and the old one keeps the move as its last commit.
    c.sync();
    assert_eq!(remote_of(c), new_url);
    assert_eq!(fleet.forge.head(), moved_at);
    assert_eq!(
        subject(&fleet.forge.bare(), "main"),
        format!("alice: remote set {new_url}")
    );
    assert_eq!(c.text(".zshrc"), "z2 from bob\n");
    let log = git_out(&new.bare(), &["log", "--format=%s", "main"]);
    assert!(log.contains("carol: sync ~/.inputrc"), "{log}");
    a.sync();
    assert_eq!(a.text(".inputrc"), "g2 from carol, made offline\n");

    // doctor says when config.toml and fleet.toml disagree, and how to fix it.
    let cfg = b.path(".config/fleetkey/config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace(&new_url, &old_url)).unwrap();
    let out = b.run(&["doctor"]);
    let doctor = String::from_utf8_lossy(&out.stdout);
    assert!(
        doctor.contains(&format!(
            "config.toml says the forge is {old_url} but fleet.toml says the fleet moved to {new_url}: run `fleetkey sync`"
        )),
        "{doctor}"
    );
    b.sync();
    assert_eq!(remote_of(b), new_url);
    let doctor = b.ok(&["doctor"]);
    assert!(
        doctor.contains(&format!("config.toml and fleet.toml agree on {new_url}")),
        "{doctor}"
    );
}

#[test]
fn merges_work_on_the_placeholder_form_conflict_copies_hold_the_local_form_and_literal_paths_stay_as_they_are()
 {
    let fleet = Fleet::with_homes(
        Transport::GitDaemon,
        &["alice", "bob"],
        &["home-alice", "var/much/deeper/place/home-bob"],
    );
    fleet.settle(1);
    let (a, b) = (fleet.n(0), fleet.n(1));
    let (ha, hb) = (home(a), home(b));
    let lines = |h: &str, first: &str, last: &str| {
        format!("{first}\nA={h}/a\nB={h}/b\nC={h}/c\nD={h}/d\n{last}\n")
    };
    a.write(".profile", lines(&ha, "top", "bottom").as_bytes());
    a.write(".config/lit/paths", format!("{ha}/x\n").as_bytes());
    a.ok(&["track", "~/.profile", "~/.config/lit/"]);
    a.ok(&["config", "set", "literal", "~/.config/lit/"]);
    fleet.settle(1);
    // A literal path travels byte for byte: alice's home path as it is.
    assert_eq!(b.text(".config/lit/paths"), format!("{ha}/x\n"));
    assert_eq!(
        std::fs::read_to_string(a.repo().join("home/.config/lit/paths")).unwrap(),
        format!("{ha}/x\n")
    );
    // Both edit different lines of a file full of home paths: a clean three-way merge.
    a.write(".profile", lines(&ha, "top by alice", "bottom").as_bytes());
    b.write(".profile", lines(&hb, "top", "bottom by bob").as_bytes());
    a.sync();
    b.sync();
    a.sync();
    assert_eq!(
        a.text(".profile"),
        lines(&ha, "top by alice", "bottom by bob")
    );
    assert_eq!(
        b.text(".profile"),
        lines(&hb, "top by alice", "bottom by bob")
    );
    assert!(a.conflict_copies(".profile").is_empty() && b.conflict_copies(".profile").is_empty());
    // The same line on both: upstream wins, and the copy holds bob's own home path.
    a.write(
        ".profile",
        lines(&ha, "alice's", "bottom by bob").as_bytes(),
    );
    b.write(".profile", lines(&hb, "bob's", "bottom by bob").as_bytes());
    a.sync();
    b.sync();
    assert_eq!(b.text(".profile"), lines(&hb, "alice's", "bottom by bob"));
    let copies = b.conflict_copies(".profile");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(
        std::fs::read_to_string(&copies[0]).unwrap(),
        lines(&hb, "bob's", "bottom by bob")
    );
}

#[test]
fn a_forge_url_that_runs_a_command_is_never_followed() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alice", "bob"]);
    fleet.settle(1);
    let (a, b) = (fleet.n(0), fleet.n(1));
    let before = remote_of(b);
    // A commit on the branch that names a git remote helper as the fleet's forge.
    let toml = a.repo().join("fleet.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replacen(
            "[sync]",
            "forge = \"ext::sh -c touch% /tmp/fleetkey-pwned\"\n\n[sync]",
            1,
        ),
    )
    .unwrap();
    a.commit_in_clone("hand edit: forge");
    let pushed = a.run(&["sync"]);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    b.sync();
    assert_eq!(remote_of(b), before, "bob followed a remote helper");
    let cycle = b.last_cycle().unwrap();
    let held = cycle["held_back"].to_string();
    assert!(
        held.contains("fleet.toml: forge is refused (git remote helpers"),
        "{held}"
    );
    assert!(!std::path::Path::new("/tmp/fleetkey-pwned").exists());
}

#[test]
fn conflicts_lists_the_copies_and_resolve_keeps_either_side() {
    let fleet = three();
    fleet.settle(1);
    let (a, b) = (fleet.n(0), fleet.n(1));
    a.write(".zshrc", b"base\n");
    a.ok(&["track", "~/.zshrc"]);
    fleet.settle(1);
    // Both change the one line before they sync: b's version loses the merge.
    a.write(".zshrc", b"from alice\n");
    b.write(".zshrc", b"from bob\n");
    a.sync();
    b.sync();
    assert_eq!(b.text(".zshrc"), "from alice\n");
    let list = b.ok(&["conflicts"]);
    let line = list.lines().next().unwrap();
    assert!(
        line.starts_with("~/.zshrc  bob  ")
            && line.contains("both changed")
            && line.contains("copy ~/.zshrc.conflict-bob-"),
        "{list}"
    );
    assert!(
        b.ok(&["status"])
            .contains("fleetkey resolve PATH --keep here|fleet")
    );
    // bob keeps his own version: it is back in the live file, the copy is gone, and alice
    // gets it from the fleet.
    let out = b.ok(&["resolve", "~/.zshrc", "--keep", "here"]);
    assert!(out.contains("holds this machine's version again"), "{out}");
    assert_eq!(b.text(".zshrc"), "from bob\n");
    assert!(b.conflict_copies(".zshrc").is_empty());
    assert_eq!(b.ok(&["conflicts"]), "fleetkey: no conflict copies\n");
    a.sync();
    assert_eq!(a.text(".zshrc"), "from bob\n");

    // Again, and this time the fleet's version stays.
    a.write(".zshrc", b"alice 2\n");
    b.write(".zshrc", b"bob 2\n");
    a.sync();
    b.sync();
    assert_eq!(b.conflict_copies(".zshrc").len(), 1);
    b.ok(&["resolve", "~/.zshrc", "--keep", "fleet"]);
    assert_eq!(b.text(".zshrc"), "alice 2\n");
    assert!(b.conflict_copies(".zshrc").is_empty());
    let err = b.fails(&["resolve", "~/.zshrc", "--keep", "here"], 1);
    assert!(err.contains("~/.zshrc has no conflict copy"), "{err}");
}

//! The forge heals itself: an attacker who holds only forge write access (a plain `git push`
//! to a real `git daemon` forge) pushes commits that are not authentic, or rewinds the branch;
//! an honest machine's cycle puts the last authentic state back with `--force-with-lease`,
//! keeps every refused commit under `refs/fleetkey/refused/` in its clone, and says so in its
//! output, `status`, `doctor` and `fleet`. At most once a minute per machine; `[trust] heal =
//! false` turns it off.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::sync::watch::{Watcher, set_timing};
use crate::util::fleet::Fleet;
use crate::util::forge::Transport;
use crate::util::{Machine, git_out, run_program, wait_for};

/// A plain clone of the forge's `main` for the attacker, in `m`'s directory.
fn attacker_clone(fleet: &Fleet, tag: &str) -> PathBuf {
    let dir = fleet.n(0).dir.path().join(format!("attacker-{tag}"));
    run_program(
        Command::new("git")
            .args(["clone", "--quiet", "--branch", "main", "--"])
            .arg(fleet.forge.url())
            .arg(&dir),
    );
    dir
}

/// One unsigned commit on top of whatever the forge's `main` holds now, pushed with stock git
/// (claiming to be `alpha`); returns its id, or `None` when the forge moved under the push.
fn push_junk(clone: &Path, n: usize) -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(clone)
            .args([
                "-c",
                "user.name=fleetkey (alpha)",
                "-c",
                "user.email=alpha@fleetkey.invalid",
            ])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        git(&["fetch", "--quiet", "origin", "main"])
            .status
            .success()
    );
    assert!(
        git(&["reset", "--quiet", "--hard", "origin/main"])
            .status
            .success()
    );
    std::fs::create_dir_all(clone.join("home")).unwrap();
    std::fs::write(clone.join("home/.junk"), format!("junk {n}\n")).unwrap();
    assert!(git(&["add", "-A"]).status.success());
    assert!(
        git(&["commit", "--quiet", "-m", &format!("alpha: junk {n}")])
            .status
            .success()
    );
    let pushed = git(&["push", "--quiet", "origin", "HEAD:main"]);
    pushed
        .status
        .success()
        .then(|| git_out(clone, &["rev-parse", "HEAD"]))
}

/// Whether `commit` is an ancestor of (or is) `of` in the git directory `dir`.
fn is_ancestor(dir: &Path, commit: &str, of: &str) -> bool {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["merge-base", "--is-ancestor", commit, of])
        .status()
        .unwrap()
        .success()
}

/// The refs under `refs/fleetkey/refused/` in `m`'s clone, as commit ids.
fn kept_refs(m: &Machine) -> Vec<String> {
    git_out(
        &m.repo(),
        &[
            "for-each-ref",
            "--format=%(objectname)",
            "refs/fleetkey/refused/",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Every commit in `junk` is kept under a ref in `m`'s clone, and none is on the forge.
fn assert_kept_and_gone(fleet: &Fleet, m: &Machine, junk: &[String]) {
    let kept = kept_refs(m);
    let head = fleet.forge.head();
    let bare = fleet.forge.dir.path().join("fleet.git");
    for j in junk {
        assert!(
            kept.iter().any(|k| is_ancestor(&m.repo(), j, k)),
            "refused commit {j} is not kept under refs/fleetkey/refused/ on {}: {kept:?}",
            m.name
        );
        assert!(
            !is_ancestor(&bare, j, &head),
            "the forge's main still holds refused commit {j}"
        );
    }
}

#[test]
fn after_a_junk_loop_stops_the_forge_is_authentic_again_within_one_poll() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    let poll = Duration::from_secs(10);
    set_timing(&fleet, "2s", "10s");
    let (alpha, beta) = (fleet.n(0), fleet.n(1));
    std::fs::write(beta.home.join(".zshrc"), "export EDITOR=vi\n").unwrap();
    beta.ok(&["track", "~/.zshrc"]);
    alpha.ok(&["sync"]);
    let clone = attacker_clone(&fleet, "loop");
    // beta's watcher: its start-up cycle is done; the next cycle is its poll.
    let watcher = Watcher::start(beta);

    // The loop: an unsigned commit every 0.5 s for 3 s, each on top of the forge's tip (well
    // inside beta's poll, so beta's first heal is the one after the loop).
    let mut junk = Vec::new();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(3) {
        n += 1;
        junk.extend(push_junk(&clone, n));
        std::thread::sleep(Duration::from_millis(500));
    }
    let stopped = Instant::now();
    assert!(junk.len() >= 3, "the loop pushed {} commits", junk.len());
    assert_eq!(fleet.forge.head(), *junk.last().unwrap());

    // No person runs anything: beta's next poll heals the forge.
    let bare = fleet.forge.dir.path().join("fleet.git");
    wait_for(
        poll + Duration::from_secs(8),
        || {
            format!(
                "the forge still holds {} after one poll\n{}",
                fleet.forge.head(),
                watcher.log()
            )
        },
        || {
            junk.iter()
                .all(|j| !is_ancestor(&bare, j, &fleet.forge.head()))
                .then_some(())
        },
    );
    let took = stopped.elapsed();
    eprintln!(
        "healed {took:?} after the loop stopped ({} junk commits, poll {poll:?})",
        junk.len()
    );
    assert!(
        took <= poll + Duration::from_secs(8),
        "healed {took:?} after the loop stopped"
    );
    // The healed record says so; every refused commit is kept in beta's clone.
    let rec = wait_for(
        Duration::from_secs(15),
        || format!("no heal recorded\n{}", watcher.log()),
        || {
            beta.last_cycle()
                .filter(|c| c.get("healed").is_some())
                .or_else(|| {
                    std::fs::read(beta.state().join("healed.json"))
                        .ok()
                        .map(|b| serde_json::from_slice(&b).unwrap())
                })
        },
    );
    drop(watcher);
    assert_kept_and_gone(&fleet, beta, &junk);
    let healed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(beta.state().join("healed.json")).unwrap()).unwrap();
    assert_eq!(healed["bad"], *junk.last().unwrap(), "{rec}");
    assert_eq!(healed["head"], fleet.forge.head());
    // The forge's branch is authentic: alpha takes it without a refusal.
    let out = alpha.ok(&["sync"]);
    assert!(!out.contains("refused"), "{out}");
    assert_eq!(alpha.text(".zshrc"), "export EDITOR=vi\n");
    assert!(!alpha.path(".junk").exists());
    // status, doctor and fleet say so.
    let status = beta.ok(&["status"]);
    assert!(status.contains("HEALED the forge at"), "{status}");
    assert!(status.contains("refs/fleetkey/refused/"), "{status}");
    let doctor = String::from_utf8_lossy(&beta.run(&["doctor"]).stdout).to_string();
    assert!(
        doctor.contains("this machine healed the forge at"),
        "{doctor}"
    );
    beta.ok(&["sync"]);
    alpha.ok(&["sync"]);
    let fleet_out = alpha.ok(&["fleet"]);
    assert!(
        fleet_out.contains("HEALED: beta put the fleet branch back on the forge at"),
        "{fleet_out}"
    );
}

#[test]
fn two_honest_machines_healing_at_once_end_in_the_same_authentic_state() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    let (alpha, beta) = (fleet.n(0), fleet.n(1));
    std::fs::write(alpha.home.join(".a"), "a0\n").unwrap();
    alpha.ok(&["track", "~/.a"]);
    std::fs::write(beta.home.join(".b"), "b0\n").unwrap();
    beta.ok(&["track", "~/.b"]);
    fleet.settle(2);
    let clone = attacker_clone(&fleet, "twice");
    let bad = push_junk(&clone, 1).unwrap();
    // Each has work of its own, and both sync at the same moment.
    std::fs::write(alpha.home.join(".a"), "a1\n").unwrap();
    std::fs::write(beta.home.join(".b"), "b1\n").unwrap();
    let (a, b) = (
        alpha.cmd(["sync"]).spawn().unwrap(),
        beta.cmd(["sync"]).spawn().unwrap(),
    );
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "alpha: {a:?}");
    assert!(b.status.success(), "beta: {b:?}");
    fleet.settle(2);
    let head = fleet.forge.head();
    assert_eq!(git_out(&alpha.repo(), &["rev-parse", "HEAD"]), head);
    assert_eq!(git_out(&beta.repo(), &["rev-parse", "HEAD"]), head);
    // No commit lost: both edits are on the forge and on both machines; the junk is not.
    for m in [alpha, beta] {
        assert_eq!(m.text(".a"), "a1\n");
        assert_eq!(m.text(".b"), "b1\n");
        assert!(!m.path(".junk").exists());
    }
    let bare = fleet.forge.dir.path().join("fleet.git");
    assert!(!is_ancestor(&bare, &bad, &head));
    // Whoever healed kept the refused commit.
    assert!(
        [alpha, beta]
            .iter()
            .any(|m| kept_refs(m).iter().any(|k| k == &bad)),
        "the refused commit is kept by the machine that healed"
    );
    for m in [alpha, beta] {
        let out = m.ok(&["sync"]);
        assert!(!out.contains("refused"), "{}: {out}", m.name);
    }
}

#[test]
fn a_rewound_forge_gets_back_the_commits_this_machine_verified() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    let (alpha, beta) = (fleet.n(0), fleet.n(1));
    fleet.settle(1);
    let old = fleet.forge.head();
    alpha.ok_with_stdin(&["secrets", "set", "AFTER"], b"verified\n");
    beta.ok(&["sync"]);
    let verified = fleet.forge.head();
    assert_ne!(old, verified);
    // The attacker rewinds main to the commit before, dropping the new secret.
    let clone = attacker_clone(&fleet, "rewind");
    run_program(Command::new("git").arg("-C").arg(&clone).args([
        "push",
        "--quiet",
        "--force",
        "origin",
        &format!("{old}:refs/heads/main"),
    ]));
    assert_eq!(fleet.forge.head(), old);
    let out = beta.ok(&["sync"]);
    assert!(
        out.contains("HEALED the forge") && out.contains("had lost commits this machine verified"),
        "{out}"
    );
    assert!(out.contains("was rewound"), "{out}");
    let head = fleet.forge.head();
    let bare = fleet.forge.dir.path().join("fleet.git");
    assert!(
        is_ancestor(&bare, &verified, &head),
        "the forge holds the verified commit again"
    );
    let out = alpha.ok(&["sync"]);
    assert!(!out.contains("refused"), "{out}");
    assert_eq!(alpha.ok(&["secrets", "get", "AFTER"]), "verified\n");
}

#[test]
fn a_rewind_with_honest_work_on_top_loses_neither_side() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    let (alpha, beta) = (fleet.n(0), fleet.n(1));
    fleet.settle(1);
    // beta last saw `old`; alpha then pushes a commit beta has not seen.
    let old = fleet.forge.head();
    alpha.ok_with_stdin(&["secrets", "set", "ALPHA"], b"from-alpha\n");
    let verified = fleet.forge.head();
    // alpha's next cycle verifies the forge's tip: from here on the forge must contain it.
    alpha.ok(&["sync"]);
    // The forge is rewound to `old`: for beta that is the tip it verified, so beta builds on it.
    let clone = attacker_clone(&fleet, "rewind-work");
    run_program(Command::new("git").arg("-C").arg(&clone).args([
        "push",
        "--quiet",
        "--force",
        "origin",
        &format!("{old}:refs/heads/main"),
    ]));
    beta.ok_with_stdin(&["secrets", "set", "BETA"], b"from-beta\n");
    let honest = fleet.forge.head();
    assert_ne!(honest, old);
    // alpha finds its verified commit gone and heals: both commits end on the forge.
    let out = alpha.ok(&["sync"]);
    assert!(
        out.contains("HEALED the forge") && out.contains("had lost commits this machine verified"),
        "{out}"
    );
    let bare = fleet.forge.dir.path().join("fleet.git");
    let head = fleet.forge.head();
    assert!(
        is_ancestor(&bare, &verified, &head),
        "alpha's commit is back"
    );
    assert!(is_ancestor(&bare, &honest, &head), "beta's commit is kept");
    let out = beta.ok(&["sync"]);
    assert!(!out.contains("refused"), "{out}");
    alpha.ok(&["sync"]);
    for m in [alpha, beta] {
        assert_eq!(m.ok(&["secrets", "get", "ALPHA"]), "from-alpha\n");
        assert_eq!(m.ok(&["secrets", "get", "BETA"]), "from-beta\n");
        assert_eq!(
            git_out(&m.repo(), &["rev-parse", "HEAD"]),
            fleet.forge.head()
        );
    }
}

#[test]
fn healing_is_limited_to_once_a_minute_and_heal_false_turns_it_off() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    let (alpha, beta) = (fleet.n(0), fleet.n(1));
    fleet.settle(1);
    let clone = attacker_clone(&fleet, "limit");
    let first = push_junk(&clone, 1).unwrap();
    let out = beta.ok(&["sync"]);
    assert!(out.contains("HEALED the forge"), "{out}");
    assert!(out.contains("it is not signed"), "{out}");
    assert_ne!(fleet.forge.head(), first);
    // Junk again at once: beta does not heal twice in a minute, and says why.
    let second = push_junk(&clone, 2).unwrap();
    let out = beta.run(&["sync"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("heals at most once a minute"), "{stdout}");
    assert_eq!(fleet.forge.head(), second, "nothing may be pushed");
    let status = beta.ok(&["status"]);
    assert!(status.contains("heals at most once a minute"), "{status}");
    // A minute later, it does.
    let later = beta
        .cmd(["sync"])
        .env("FLEETKEY_CLOCK_SKEW", "61")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&later.stdout);
    assert!(later.status.success(), "{later:?}");
    assert!(stdout.contains("HEALED the forge"), "{stdout}");
    assert_kept_and_gone(&fleet, beta, &[first, second]);

    // `[trust] heal = false`: the refusal stands until a person repairs the forge.
    alpha.ok(&["sync"]);
    alpha.ok(&["config", "set", "heal", "false"]);
    beta.ok(&["sync"]);
    let third = push_junk(&clone, 3).unwrap();
    let out = alpha.run(&["sync"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("[trust] heal = false"), "{stdout}");
    assert_eq!(fleet.forge.head(), third);
    let doctor = String::from_utf8_lossy(&alpha.run(&["doctor"]).stdout).to_string();
    assert!(doctor.contains("not authentic"), "{doctor}");
    alpha.ok(&["forge", "repair", "--yes"]);
    assert_kept_and_gone(&fleet, alpha, &[third]);
}

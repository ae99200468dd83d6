//! The watcher daemon: an editor-style save (temp file renamed over the original) on one
//! machine reaches another machine's watcher through its poll, with no commit storm from the
//! watchers' own writes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::harness::{Fleet, Node, Transport, git_out};

/// A `fleetkey watch` started by the test; killed when dropped.
pub struct Watcher(pub Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn watch(n: &Node) -> Watcher {
    let log = std::fs::File::create(n.m.dir.path().join("watch.log")).unwrap();
    let child = n
        .cmd(&["watch"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Watcher(child)
}

/// Sets the fleet's settle and poll (committed on the first machine, pushed, pulled by all).
pub fn set_timing(fleet: &Fleet, settle: &str, poll: &str) {
    let a = fleet.n(0);
    let path = a.repo().join("fleet.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace("settle = \"2s\"", &format!("settle = \"{settle}\""))
        .replace("poll = \"60s\"", &format!("poll = \"{poll}\""));
    std::fs::write(&path, text).unwrap();
    let mut commit = Command::new("git");
    commit
        .arg("-C")
        .arg(a.repo())
        .args(crate::util::signing_config(&a.m))
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qam",
            "test: timing",
        ]);
    crate::util::run_program(&mut commit);
    fleet.settle(1);
}

/// Waits until `cond` holds, up to `limit`; returns how long it took.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// An editor's save: write a temp file beside the target, then rename it over.
pub fn editor_save(n: &Node, rel: &str, bytes: &[u8]) {
    let target = n.path(rel);
    let tmp = target.with_file_name(format!(
        ".{}.swp-save",
        target.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &target).unwrap();
}

#[test]
fn the_watcher_sees_an_editor_save_and_a_peer_watcher_applies_it() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    let (a, b) = (fleet.n(0), fleet.n(1));
    a.write(".zshrc", b"before\n");
    a.write(".config/app/x.conf", b"x\n");
    a.ok(&["track", "~/.zshrc", "~/.config/app/"]);
    set_timing(&fleet, "300ms", "1s");
    assert_eq!(b.text(".zshrc"), "before\n");

    let wa = watch(a);
    let wb = watch(b);
    std::thread::sleep(Duration::from_millis(1500)); // both have done their start-up rescan

    editor_save(a, ".zshrc", b"after an editor save\n");
    let took = wait_until(Duration::from_secs(20), || {
        b.text(".zshrc") == "after an editor save\n"
    });
    let log_a = std::fs::read_to_string(a.m.dir.path().join("watch.log")).unwrap_or_default();
    let log_b = std::fs::read_to_string(b.m.dir.path().join("watch.log")).unwrap_or_default();
    assert!(
        took.is_some(),
        "beta never got the save\nalpha:\n{log_a}\nbeta:\n{log_b}"
    );
    eprintln!("propagated in {:?}", took.unwrap());

    // A new file in a managed directory, created by beta, reaches alpha.
    b.write(".config/app/new.conf", b"from beta\n");
    assert!(
        wait_until(Duration::from_secs(20), || a.text(".config/app/new.conf")
            == "from beta\n")
        .is_some(),
        "alpha never got beta's new file"
    );

    // Quiet: the watchers' own writes cause no further commits.
    std::thread::sleep(Duration::from_secs(3));
    let count = || git_out(&fleet.forge.bare(), &["rev-list", "--count", "main"]);
    let settled = count();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        count(),
        settled,
        "the watchers keep committing their own writes"
    );
    drop((wa, wb));
    for n in [a, b] {
        n.assert_clean_repo();
    }
}

#[test]
fn the_watcher_keeps_commits_while_the_forge_is_down_and_backs_off_until_it_returns() {
    let mut fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    {
        let a = fleet.n(0);
        a.write(".zshrc", b"before\n");
        a.ok(&["track", "~/.zshrc"]);
        set_timing(&fleet, "300ms", "1s");
    }
    let wa = watch(fleet.n(0));
    std::thread::sleep(Duration::from_millis(1500));
    let before = fleet.forge.head();
    fleet.forge.stop();
    let a = fleet.n(0);
    editor_save(a, ".zshrc", b"saved while the forge is down\n");
    // The save is committed locally.
    let committed = wait_until(Duration::from_secs(10), || {
        git_out(&a.repo(), &["log", "-1", "--format=%s"]).contains("alpha: sync ~/.zshrc")
    });
    assert!(committed.is_some(), "the watcher did not commit the save");
    std::thread::sleep(Duration::from_secs(2));
    fleet.forge.resume();
    // The first retry comes 5 s (±20 %) after the first failure, then 10 s: within 20 s.
    let pushed = wait_until(Duration::from_secs(20), || fleet.forge.head() != before);
    let log =
        std::fs::read_to_string(fleet.n(0).m.dir.path().join("watch.log")).unwrap_or_default();
    assert!(pushed.is_some(), "the commit never went out\n{log}");
    assert!(log.contains("retrying in"), "{log}");
    drop(wa);
    let b = fleet.n(1);
    b.sync();
    assert_eq!(b.text(".zshrc"), "saved while the forge is down\n");
}

//! The watcher daemon: an editor-style save (temp file renamed over the original) on one
//! machine reaches another machine's watcher through its poll, with no commit storm from the
//! watchers' own writes; with the forge down it keeps the commit and backs off until it returns.
//!
//! No fixed sleeps: a watcher is started by [`Watcher::start`], which waits for the watcher's
//! own signals (`watch-ready` holding its pid once its watches are in place, then the
//! `last-cycle.json` of its start-up rescan), and every later wait is for a file's content or
//! a finished cycle, each with a deadline.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::util::fleet::Fleet;
use crate::util::forge::Transport;
use crate::util::{CycleMark, Machine, git_out, wait_for};

/// How long a watcher may take to be ready, or to finish a cycle.
const CYCLE: Duration = Duration::from_secs(15);

/// A `fleetkey watch` started by the test; killed when dropped.
pub struct Watcher<'a> {
    m: &'a Machine,
    child: Child,
    log: PathBuf,
}

impl<'a> Watcher<'a> {
    /// Starts `fleetkey watch` on `m` and returns once its watches are in place and its
    /// start-up rescan (a full cycle) has finished.
    pub fn start(m: &'a Machine) -> Watcher<'a> {
        let ready = m.state().join("watch-ready");
        let _ = std::fs::remove_file(&ready);
        let mark = m.cycle_mark();
        let log = m.dir.path().join("watch.log");
        let child = m
            .cmd(["watch"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut w = Watcher { m, child, log };
        let pid = format!("{}\n", w.child.id());
        let log_of = |path: &PathBuf| std::fs::read_to_string(path).unwrap_or_default();
        let (child, log) = (&mut w.child, &w.log);
        wait_for(
            CYCLE,
            || {
                format!(
                    "{}'s watcher never wrote {}\n{}",
                    m.name,
                    ready.display(),
                    log_of(log)
                )
            },
            || {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("{}'s watcher exited with {status}\n{}", m.name, log_of(log));
                }
                (std::fs::read_to_string(&ready).ok()? == pid).then_some(())
            },
        );
        m.cycle_after(&mark, CYCLE, || w.log());
        w
    }

    /// What the watcher logged so far.
    pub fn log(&self) -> String {
        format!(
            "{}'s watch.log:\n{}",
            self.m.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// Waits for the next `n` cycles to finish; returns the records seen.
    pub fn cycles(&self, n: usize) -> Vec<serde_json::Value> {
        (0..n)
            .map(|_| {
                let mark: CycleMark = self.m.cycle_mark();
                self.m.cycle_after(&mark, CYCLE, || self.log())
            })
            .collect()
    }
}

impl Drop for Watcher<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the fleet's settle and poll (committed on the first machine, pushed, pulled by all).
pub fn set_timing(fleet: &Fleet, settle: &str, poll: &str) {
    let a = fleet.n(0);
    let path = a.repo().join("fleet.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace("settle = \"2s\"", &format!("settle = \"{settle}\""))
        .replace("poll = \"15s\"", &format!("poll = \"{poll}\""));
    std::fs::write(&path, text).unwrap();
    a.commit_in_clone("test: timing");
    fleet.settle(1);
}

/// An editor's save: write a temp file beside the target, then rename it over.
pub fn editor_save(n: &Machine, rel: &str, bytes: &[u8]) {
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
    set_timing(&fleet, "300ms", "5s");
    assert_eq!(b.text(".zshrc"), "before\n");

    let wa = Watcher::start(a);
    let wb = Watcher::start(b);
    let logs = || format!("{}\n{}", wa.log(), wb.log());

    let start = std::time::Instant::now();
    editor_save(a, ".zshrc", b"after an editor save\n");
    wait_for(
        Duration::from_secs(20),
        || format!("beta never got alpha's save\n{}", logs()),
        || (b.text(".zshrc") == "after an editor save\n").then_some(()),
    );
    eprintln!("propagated in {:?}", start.elapsed());

    // A new file in a managed directory, created by beta, reaches alpha.
    b.write(".config/app/new.conf", b"from beta\n");
    wait_for(
        Duration::from_secs(20),
        || format!("alpha never got beta's new file\n{}", logs()),
        || (a.text(".config/app/new.conf") == "from beta\n").then_some(()),
    );

    // Quiet: the watchers' own writes cause no further commits. Every poll is a cycle; the
    // second cycle each watcher finishes from here started after the count (the first may be
    // one still in flight, e.g. beta's that pushed the file): it captures and pushes nothing,
    // and the forge gets no commit meanwhile.
    let settled = fleet.forge.commits();
    for w in [&wa, &wb] {
        let rec = w.cycles(2).pop().unwrap();
        assert!(
            rec["captured"] == 0 && rec["pushed"] == false,
            "the watchers keep committing their own writes: {rec}\n{}",
            logs()
        );
    }
    assert_eq!(
        fleet.forge.commits(),
        settled,
        "the watchers keep committing their own writes\n{}",
        logs()
    );
    drop((wa, wb));
    for n in [a, b] {
        n.assert_clean_repo();
        assert_eq!(n.text(".zshrc"), "after an editor save\n");
        assert_eq!(n.text(".config/app/new.conf"), "from beta\n");
    }
}

#[test]
fn the_watcher_keeps_commits_while_the_forge_is_down_and_backs_off_until_it_returns() {
    let mut fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    fleet.n(0).write(".zshrc", b"before\n");
    fleet.n(0).ok(&["track", "~/.zshrc"]);
    set_timing(&fleet, "300ms", "5s");
    let Fleet { forge, nodes } = &mut fleet;
    let (a, b) = (&nodes[0], &nodes[1]);
    let wa = Watcher::start(a);
    let before = forge.head();
    forge.stop();
    let mark = a.cycle_mark();
    editor_save(a, ".zshrc", b"saved while the forge is down\n");
    // The cycle after the save captures it, commits it locally and finds the forge unreachable.
    let rec = wait_for(
        CYCLE,
        || format!("the watcher did not capture the save\n{}", wa.log()),
        || {
            let rec = (a.cycle_mark() != mark).then(|| a.last_cycle()).flatten()?;
            (rec["captured"] == 1).then_some(rec)
        },
    );
    assert_eq!(rec["result"], "offline", "{rec}\n{}", wa.log());
    let subject = git_out(&a.repo(), &["log", "-1", "--format=%s"]);
    assert!(subject.contains("alpha: sync ~/.zshrc"), "{subject}");
    assert_eq!(forge.head(), before);

    forge.resume();
    // The first retry comes 5 s (±20 %) after the first failure, the next 10 s after that.
    wait_for(
        Duration::from_secs(20),
        || format!("the commit never went out\n{}", wa.log()),
        || (forge.head() != before).then_some(()),
    );
    assert!(wa.log().contains("retrying in"), "{}", wa.log());
    assert_eq!(
        git_out(&forge.bare(), &["log", "-1", "--format=%s", "main"]),
        subject
    );
    drop(wa);
    b.sync();
    assert_eq!(b.text(".zshrc"), "saved while the forge is down\n");
    a.assert_clean_repo();
}

#[test]
fn the_watcher_never_captures_a_file_still_being_written() {
    // A download grows a managed file in place for about 3 s, well past `settle` (1 s): the
    // cycle that `settle` starts must wait for it (or hold it back), never commit half of it.
    let fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    let a = fleet.n(0);
    a.write(".config/app/seed", b"seed\n");
    a.ok(&["track", "~/.config/app/"]);
    set_timing(&fleet, "1s", "5s");
    a.ok(&["config", "set", "quiet", "1s"]);
    let wa = Watcher::start(a);

    let chunks = 150;
    let mut file = std::fs::File::create(a.path(".config/app/download.bin")).unwrap();
    for _ in 0..chunks {
        std::io::Write::write_all(&mut file, &[b'x'; 4096]).unwrap();
        // The writer's pace (20 ms between writes), not a wait for the watcher.
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(file);
    let whole = (chunks * 4096).to_string();

    let forge = fleet.forge.bare();
    let stored = "main:home/.config/app/download.bin";
    wait_for(
        Duration::from_secs(30),
        || format!("the download never reached the forge\n{}", wa.log()),
        || {
            let out = std::process::Command::new("git")
                .args(["-C", forge.to_str().unwrap(), "cat-file", "-s", stored])
                .output()
                .unwrap();
            (String::from_utf8_lossy(&out.stdout).trim() == whole).then_some(())
        },
    );
    let versions = git_out(
        &forge,
        &[
            "log",
            "--format=%h %s",
            "main",
            "--",
            "home/.config/app/download.bin",
        ],
    );
    assert_eq!(
        versions.lines().count(),
        1,
        "the file was captured before it was whole:\n{versions}\n{}",
        wa.log()
    );
    drop(wa);
    a.assert_clean_repo();
}

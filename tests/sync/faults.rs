//! Faults: the forge going away and coming back, and cycles killed with SIGKILL at each of the
//! cycle's fault points (`FLEETKEY_FAULT`) and at random moments.

use std::time::{Duration, Instant};

use crate::util::fleet::Fleet;
use crate::util::forge::Transport;
use crate::util::{Machine, git_out};

/// A small deterministic generator (xorshift), seeded from the clock and printed, so a failing
/// run can be replayed with FLEETKEY_TEST_SEED.
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> Rng {
        let seed = std::env::var("FLEETKEY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("random seed: FLEETKEY_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn an_unreachable_forge_exits_75_keeps_the_commit_and_catches_up_later() {
    let mut fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    let (a, b) = (fleet.n(0), fleet.n(1));
    a.write(".zshrc", b"v1\n");
    a.ok(&["track", "~/.zshrc"]);
    b.sync();
    let before = fleet.forge.head();

    fleet.forge.stop();
    let (a, b) = (fleet.n(0), fleet.n(1));
    a.write(".zshrc", b"v2 written offline\n");
    let err = a.fails(&["sync"], 75);
    assert!(err.contains("unreachable"), "{err}");
    let log = git_out(&a.repo(), &["log", "-1", "--format=%s"]);
    assert!(
        log.contains("alpha: sync ~/.zshrc"),
        "the local commit is kept: {log}"
    );
    let rec = std::fs::read_to_string(a.state().join("last-cycle.json")).unwrap();
    assert!(rec.contains("\"result\": \"offline\""), "{rec}");
    // A second offline cycle adds nothing and still exits 75.
    a.fails(&["sync"], 75);
    // Offline, track and secrets commit locally and exit 75 too.
    a.write(".vimrc", b"set nu\n");
    a.fails(&["track", "~/.vimrc"], 75);
    b.write(".zshrc", b"v2 from beta, offline too\n");
    b.fails(&["pull"], 75);
    assert_eq!(git_out(&fleet.forge.bare(), &["rev-parse", "main"]), before);

    fleet.forge.resume();
    let (a, b) = (fleet.n(0), fleet.n(1));
    a.sync();
    b.sync();
    a.sync();
    for n in [a, b] {
        assert_eq!(n.text(".zshrc"), "v2 written offline\n");
        assert_eq!(n.text(".vimrc"), "set nu\n");
        assert_eq!(
            git_out(&n.repo(), &["rev-parse", "HEAD"]),
            fleet.forge.head()
        );
        n.assert_clean_repo();
    }
    let copies = b.conflict_copies(".zshrc");
    assert_eq!(copies.len(), 1);
    assert_eq!(
        std::fs::read(&copies[0]).unwrap(),
        b"v2 from beta, offline too\n"
    );
}

#[test]
fn a_cycle_killed_at_random_points_leaves_a_clone_the_next_cycle_repairs() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    let (a, b) = (fleet.n(0), fleet.n(1));
    a.write(".zshrc", b"start\n");
    a.write(".config/app/a.conf", b"a\n");
    a.ok(&["track", "~/.zshrc", "~/.config/app/"]);
    b.sync();
    // How long an ordinary cycle with work to do takes here.
    a.write(".zshrc", b"timing\n");
    let t = Instant::now();
    a.sync();
    let typical = t.elapsed().as_micros() as u64;
    b.sync();

    let mut rng = Rng::from_env();
    let (mut killed, mut orphans, mut repaired) = (0, 0, 0);
    for round in 0..25 {
        // Work on both sides so the cycle captures, merges and pushes.
        b.write(
            &format!(".config/app/b{round}.conf"),
            format!("b {round}\n").as_bytes(),
        );
        b.sync();
        a.write(".zshrc", format!("round {round}\n").as_bytes());
        a.write(
            &format!(".config/app/a{round}.conf"),
            format!("a {round}\n").as_bytes(),
        );
        let mut child = a.cmd(["sync"]).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(typical * 12 / 10)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // The next cycle completes and leaves everything clean.
        let out = a.run(&["sync"]);
        crate::util::assert_success(&out, &["sync"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("waiting for git") {
            orphans += 1;
        }
        if stderr.contains("left by an interrupted command") {
            repaired += 1;
        }
        a.assert_clean_repo();
        assert_eq!(a.text(".zshrc"), format!("round {round}\n"));
    }
    eprintln!(
        "killed {killed} of 25 cycles mid-way (typical cycle {typical} µs); the next cycle found \
         {orphans} orphaned git children and removed stale git locks {repaired} times"
    );
    assert!(killed > 0, "no cycle was interrupted; the timing is off");
    b.sync();
    for n in [a, b] {
        for round in 0..25 {
            assert_eq!(
                n.text(&format!(".config/app/a{round}.conf")),
                format!("a {round}\n")
            );
            assert_eq!(
                n.text(&format!(".config/app/b{round}.conf")),
                format!("b {round}\n")
            );
        }
        n.assert_clean_repo();
    }
}

/// The sync cycle's fault points, in the order a cycle reaches them.
const CYCLE_POINTS: [&str; 4] = [
    "sync:captured",
    "sync:integrated",
    "sync:pushed",
    "sync:applying",
];

/// Whether every token written to `rel` survived on the fleet's machines: in every machine's
/// live file, or (the side that lost a conflict) in a conflict copy of it somewhere.
fn lost_tokens(machines: &[&Machine], rel: &str, tokens: &[String]) -> Vec<String> {
    let copies: String = machines
        .iter()
        .flat_map(|m| m.conflict_copies(rel))
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect();
    tokens
        .iter()
        .filter(|t| !machines.iter().all(|m| m.text(rel).contains(t.as_str())))
        .filter(|t| !copies.contains(t.as_str()))
        .cloned()
        .collect()
}

/// `text` with line `i` replaced by `line`.
fn with_line(text: &str, i: usize, line: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines[i] = line;
    lines.join("\n") + "\n"
}

#[test]
fn a_cycle_killed_at_each_fault_point_completes_on_rerun_and_loses_nothing() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    let (a, b) = (fleet.n(0), fleet.n(1));
    a.write(".zshrc", b"line 1\nline 2\nline 3\nline 4\nline 5\n");
    a.write(".config/app/shared.conf", b"shared\n");
    a.ok(&["track", "~/.zshrc", "~/.config/app/"]);
    b.sync();
    for (round, point) in CYCLE_POINTS.iter().enumerate() {
        // beta, first to push: a new file, the last line of .zshrc, and shared.conf.
        let (b_line, b_shared) = (
            format!("line 5 beta r{round}"),
            format!("shared beta r{round}"),
        );
        b.write(&format!(".config/app/b{round}.conf"), b"from beta\n");
        b.write(
            ".zshrc",
            with_line(&b.text(".zshrc"), 4, &b_line).as_bytes(),
        );
        b.write(
            ".config/app/shared.conf",
            format!("{b_shared}\n").as_bytes(),
        );
        b.sync();
        // alpha: a new file, the first line of .zshrc (a clean merge), and the same line of
        // shared.conf (a conflict). Its cycle captures, is rejected, integrates beta's commit,
        // pushes the merge and applies beta's files: it passes every point.
        let (a_line, a_shared) = (
            format!("line 1 alpha r{round}"),
            format!("shared alpha r{round}"),
        );
        a.write(&format!(".config/app/a{round}.conf"), b"from alpha\n");
        a.write(
            ".zshrc",
            with_line(&a.text(".zshrc"), 0, &a_line).as_bytes(),
        );
        a.write(
            ".config/app/shared.conf",
            format!("{a_shared}\n").as_bytes(),
        );
        a.killed_at(&["sync"], point);

        // The next cycle completes and leaves a clean clone; then beta catches up.
        let out = a.run(&["sync"]);
        crate::util::assert_success(&out, &["sync"]);
        eprintln!(
            "{point}: the cycle after the kill said:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        b.sync();
        let head = fleet.forge.head();
        for n in [a, b] {
            n.assert_clean_repo();
            n.assert_cycle_finished();
            assert_eq!(n.last_cycle().unwrap()["result"], "ok", "{point}");
            assert_eq!(
                git_out(&n.repo(), &["rev-parse", "HEAD"]),
                head,
                "{point}: {} is not on the forge's commit",
                n.name
            );
            for (file, want) in [("a", "from alpha\n"), ("b", "from beta\n")] {
                assert_eq!(
                    n.text(&format!(".config/app/{file}{round}.conf")),
                    want,
                    "{point}: {}'s copy of {file}{round}.conf",
                    n.name
                );
            }
        }
        // Different lines of .zshrc merge cleanly: both reach every live file, and no copy is
        // made, wherever the first cycle died. The same line of shared.conf is a real
        // conflict: exactly one copy of alpha's version per round, never two.
        assert_eq!(
            a.conflict_copies(".zshrc"),
            Vec::<std::path::PathBuf>::new(),
            "{point}: a clean merge made a copy"
        );
        assert_eq!(
            a.conflict_copies(".config/app/shared.conf").len(),
            round + 1,
            "{point}: one copy per conflict: {:?}",
            a.conflict_copies(".config/app/shared.conf")
        );
        for n in [a, b] {
            let text = n.text(".zshrc");
            assert!(
                text.starts_with(&format!("{a_line}\n")) && text.ends_with(&format!("{b_line}\n")),
                "{point}: {}'s .zshrc lacks an edit:\n{text}",
                n.name
            );
            // The same line of shared.conf: beta pushed first, so beta's wins everywhere.
            assert_eq!(
                n.text(".config/app/shared.conf"),
                format!("{b_shared}\n"),
                "{point}: {}",
                n.name
            );
        }
        for (rel, tokens) in [
            (".zshrc", [a_line, b_line]),
            (".config/app/shared.conf", [a_shared, b_shared]),
        ] {
            assert_eq!(a.text(rel), b.text(rel), "{point}: {rel} differs");
            let lost = lost_tokens(&[a, b], rel, &tokens);
            assert!(
                lost.is_empty(),
                "{point}: lost {lost:?} of {rel}: alpha has {:?}, beta has {:?}, copies {:?}",
                a.text(rel),
                b.text(rel),
                [a.conflict_copies(rel), b.conflict_copies(rel)]
            );
        }
    }
}

#[test]
fn an_unreachable_ssh_forge_exits_75_and_the_commit_goes_out_when_it_returns() {
    let mut fleet = Fleet::new(Transport::Ssh, &["alpha"]);
    fleet.n(0).write(".zshrc", b"v1\n");
    fleet.n(0).ok(&["track", "~/.zshrc"]);
    let before = fleet.forge.head();
    fleet.forge.stop();
    let a = fleet.n(0);
    a.write(".zshrc", b"v2 written offline\n");
    let err = a.fails(&["sync"], 75);
    assert!(err.contains("unreachable"), "{err}");
    assert_eq!(a.last_cycle().unwrap()["result"], "offline");
    fleet.forge.resume();
    assert_eq!(fleet.forge.head(), before);
    let a = fleet.n(0);
    a.sync();
    assert_eq!(
        git_out(&fleet.forge.bare(), &["log", "-1", "--format=%s", "main"]),
        "alpha: sync ~/.zshrc"
    );
    a.assert_clean_repo();
}

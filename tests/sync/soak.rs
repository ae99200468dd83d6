//! The soak: three machines make random edits with unique tokens (often to the same file, so
//! conflicts happen), sync at random, sometimes at the same moment, while the forge is stopped
//! and restarted twice; then quiet. Afterwards every machine holds the same managed files and
//! every token is in a final file or in a conflict copy.
//!
//! `cargo test` runs a short form; `scripts/soak [ROUNDS]` runs a long one (FLEETKEY_SOAK_ROUNDS).

use std::collections::BTreeMap;
use std::path::Path;

use super::faults::Rng;
use crate::util::fleet::Fleet;
use crate::util::forge::Transport;
use crate::util::{Machine, git_out};

fn managed_files(n: &Machine) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    out.insert(".zshrc".to_string(), n.read(".zshrc"));
    let dir = n.path(".config/app");
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_str().unwrap().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if !name.contains(".conflict-") {
                let rel = p
                    .strip_prefix(&n.home)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn conflict_copies_text(home: &Path) -> String {
    let mut text = String::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with(".local") {
                stack.push(p);
            } else if e.file_name().to_str().unwrap().contains(".conflict-") {
                text.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
            }
        }
    }
    text
}

fn append(n: &Machine, rel: &str, line: &str) {
    let mut bytes = n.read(rel);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    n.write(rel, &bytes);
}

pub fn soak(rounds: usize) {
    let mut fleet = Fleet::new(Transport::GitDaemon, &["m1", "m2", "m3"]);
    {
        let a = fleet.n(0);
        a.write(".zshrc", b"# shared\n");
        a.write(".config/app/m1.conf", b"# m1\n");
        a.ok(&["track", "~/.zshrc", "~/.config/app/"]);
        fleet.settle(1);
    }
    let mut rng = Rng::from_env();
    let mut tokens: Vec<String> = Vec::new();
    let (mut syncs, mut offline_exits, mut concurrent) = (0usize, 0usize, 0usize);
    let restarts = [rounds / 3, 2 * rounds / 3];
    let mut down_until = None;
    for round in 0..rounds {
        if restarts.contains(&round) {
            fleet.forge.stop();
            down_until = Some(round + 2);
        }
        if down_until == Some(round) {
            fleet.forge.resume();
            down_until = None;
        }
        // Random edits.
        for _ in 0..(1 + rng.below(3)) {
            let i = rng.below(3) as usize;
            let n = fleet.n(i);
            let token = format!("tok-{round}-{}-{}", n.name, tokens.len());
            match rng.below(4) {
                0 | 1 => append(n, ".zshrc", &token),
                2 => append(n, &format!(".config/app/{}.conf", n.name), &token),
                _ => n.write(
                    &format!(".config/app/new-{token}.conf"),
                    format!("{token}\n").as_bytes(),
                ),
            }
            tokens.push(token);
        }
        // Random syncs, sometimes several at once.
        let who: Vec<usize> = (0..3).filter(|_| rng.below(2) == 0).collect();
        if who.len() > 1 {
            concurrent += 1;
        }
        let children: Vec<_> = who
            .iter()
            .map(|&i| (i, fleet.n(i).cmd(["sync"]).output_async()))
            .collect();
        for (i, child) in children {
            let out = child.wait_with_output().unwrap();
            syncs += 1;
            match out.status.code() {
                Some(0) => {}
                Some(75) => offline_exits += 1,
                other => panic!(
                    "sync on {} exited {other:?}: {}",
                    fleet.n(i).name,
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
    }
    if down_until.is_some() {
        fleet.forge.resume();
    }
    // Quiet: everyone syncs until nothing changes.
    fleet.settle(3);

    let reference = managed_files(fleet.n(0));
    for n in &fleet.nodes {
        assert_eq!(managed_files(n), reference, "{} differs from m1", n.name);
        n.assert_clean_repo();
        assert_eq!(
            git_out(&n.repo(), &["rev-parse", "HEAD"]),
            fleet.forge.head()
        );
    }
    let finals: String = reference
        .values()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    let copies: String = fleet
        .nodes
        .iter()
        .map(|n| conflict_copies_text(&n.home))
        .collect();
    let copy_count = fleet
        .nodes
        .iter()
        .map(|n| conflict_copies_text(&n.home).matches("# shared").count())
        .sum::<usize>();
    let (mut in_final, mut in_copy, mut lost) = (0, 0, Vec::new());
    for t in &tokens {
        let line = format!("{t}\n");
        if finals.contains(&line) {
            in_final += 1;
        } else if copies.contains(&line) {
            in_copy += 1;
        } else {
            lost.push(t.clone());
        }
    }
    let commits = git_out(&fleet.forge.bare(), &["rev-list", "--count", "main"]);
    println!(
        "soak: {rounds} rounds, {} tokens: {in_final} in final files, {in_copy} only in conflict copies, {} lost; \
         {syncs} syncs ({concurrent} rounds with concurrent syncs, {offline_exits} exits 75 while the forge was down twice), \
         {copy_count} conflict copies of the shared file, {commits} commits on the forge",
        tokens.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "tokens lost: {lost:?}");
}

trait OutputAsync {
    fn output_async(&mut self) -> std::process::Child;
}

impl OutputAsync for std::process::Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn soak_short_three_machines_random_edits_forge_restarted_twice_nothing_lost() {
    let rounds = std::env::var("FLEETKEY_SOAK_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(12);
    soak(rounds);
}

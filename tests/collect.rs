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
}

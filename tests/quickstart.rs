//! The README's "Quick start for a real fleet", run as written: the five commands are read from
//! the README's fenced block (so the docs cannot drift from what works), with an ssh:// test
//! forge standing in for the GitHub URL and the code `enroll` printed standing in for the
//! placeholder. Each line says in its comment which machine runs it (`# on laptop: …`).

use crate::util::forge::{Forge, Transport};
use crate::util::{Machine, code_in};

/// The README, as the test binary was built with it.
const README: &str = include_str!("../README.md");
/// The forge URL the README shows.
const README_URL: &str = "git@github.com:you/fleet.git";
/// The enrollment code the README shows.
const README_CODE: &str = "XXXX-XXXX-XXXX-XXXX-XXXX";

/// One line of the quick start: the machine that runs it and fleetkey's arguments.
#[derive(Debug, PartialEq)]
struct Step {
    on: String,
    args: Vec<String>,
}

/// The steps of the README's "Quick start for a real fleet" block.
fn quick_start(readme: &str) -> Vec<Step> {
    let section = readme
        .split("\n## Quick start for a real fleet\n")
        .nth(1)
        .expect("the README has a section `## Quick start for a real fleet`");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the quick start holds a ```sh block");
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (command, comment) = line
                .split_once(" # ")
                .unwrap_or_else(|| panic!("a quick-start line says where it runs: {line}"));
            let on = comment
                .trim()
                .strip_prefix("on ")
                .and_then(|c| c.split(|ch: char| !ch.is_ascii_alphanumeric()).next())
                .unwrap_or_else(|| panic!("a quick-start comment starts `on MACHINE`: {line}"));
            let mut words = command.split_whitespace();
            assert_eq!(
                words.next(),
                Some("fleetkey"),
                "not a fleetkey command: {line}"
            );
            Step {
                on: on.to_string(),
                args: words.map(String::from).collect(),
            }
        })
        .collect()
}

#[test]
fn the_readme_block_is_five_commands_on_two_machines() {
    let steps = quick_start(README);
    let firsts: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s.on.as_str(), s.args[0].as_str()))
        .collect();
    assert_eq!(
        firsts,
        [
            ("laptop", "remote"),
            ("server", "enroll"),
            ("laptop", "approve"),
            ("server", "sync"),
            ("server", "agents"),
        ],
        "the quick start changed: {steps:?}"
    );
}

#[test]
fn the_readme_quick_start_makes_a_second_machine_a_member_that_reads_the_secrets() {
    let forge = Forge::start(Transport::Ssh);
    let url = forge.url();
    // The README's first block: a fleet on the embedded forge, with a secret.
    let laptop = forge.machine("laptop");
    laptop.ok(&["init", "--name", "laptop"]);
    laptop.sync();
    laptop.ok_with_stdin(&["secrets", "set", "API_TOKEN"], b"tok-from-laptop\n");
    let server = forge.machine("server");
    let agents_log = server.dir.path().join("agents.log");

    let mut code: Option<String> = None;
    for step in quick_start(README) {
        let machine: &Machine = match step.on.as_str() {
            "laptop" => &laptop,
            "server" => &server,
            other => panic!("the quick start names a machine the test does not know: {other}"),
        };
        let args: Vec<String> = step
            .args
            .iter()
            .map(|a| match a.as_str() {
                README_URL => url.clone(),
                README_CODE => code.clone().expect("approve comes after enroll"),
                _ => a.clone(),
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = machine
            .cmd(&args)
            .env("FLEETKEY_AGENTS_PLATFORM", "linux")
            .env(
                "FLEETKEY_AGENTS_RUNNER",
                format!("record:{}", agents_log.display()),
            )
            .output()
            .unwrap();
        crate::util::assert_success(&out, &args);
        if args[0] == "enroll" {
            code = Some(code_in(&String::from_utf8(out.stdout).unwrap(), "server"));
        }
    }

    // The fleet lives on the forge now, and server is a member that reads laptop's secret.
    assert_eq!(laptop.ok(&["config", "get", "forge"]).trim(), url);
    assert_eq!(
        server.ok(&["secrets", "get", "API_TOKEN"]),
        "tok-from-laptop\n"
    );
    let status = server.ok(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let active: Vec<&str> = status["fleet"]["active"]
        .as_array()
        .expect("status --json lists the active machines")
        .iter()
        .filter_map(|m| m.as_str().or_else(|| m["name"].as_str()))
        .collect();
    assert!(
        active.contains(&"server") && active.contains(&"laptop"),
        "both machines are active: {status}"
    );
    // And its agents were installed (the systemd commands, recorded).
    let recorded = std::fs::read_to_string(&agents_log).unwrap_or_default();
    assert!(
        recorded.contains("systemctl --user") && recorded.contains("enable --now"),
        "agents install ran no systemctl enable --now:\n{recorded}"
    );
}

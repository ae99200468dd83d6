//! What users read, pinned: each case in `tests/cmd/` runs one fleetkey command on fresh
//! machines and must print exactly its expected stdout and stderr and exit with its status.
//!
//! A case is `NAME.toml` (the command, its stdin, the expected status, and setup steps run
//! before it) with `NAME.stdout` and `NAME.stderr` beside it, trycmd-style. Paths and anything
//! that differs from run to run are normalised before the comparison:
//!
//! - `[HOME]`: the HOME of the machine running the command; `[HOME:NAME]`: another machine's;
//!   `[ROOT]` / `[ROOT:NAME]`: the directory around that HOME (TMPDIR is inside it);
//! - `[FORGE]`: alpha's embedded forge (`~/.local/share/fleetkey/forge.git`);
//! - `[AGE1]` an age recipient, `[SHA256]` an SSH fingerprint, `[TIME]` an RFC 3339 time,
//!   `[DATE]` a date (YYYY-MM-DD), `[COMMIT]` a full commit id,
//!   `[STAMP]` a conflict-copy stamp, `[N] ms` a duration.
//!
//! `env = { NAME = VALUE }` sets variables for the command (placeholders expanded).
//!
//! Setup steps (`[[setup]]`, in order; `on` names the machine, `alpha` by default, and the same
//! placeholders may be used in paths and arguments): `run = [ARGS]` (fleetkey, must exit with
//! `status`, 0 when absent; optional `stdin`), `git = [ARGS]` (git, must succeed), `chmod = PATH` with `mode = "644"`,
//! `edit = PATH` with `replace = TEXT` and `with = TEXT`, `rename = PATH` with `to = PATH`,
//! `write = PATH` with `with = TEXT` (a new file, its directories made), `join = NAME` (NAME
//! enrolls at alpha's forge, `on` approves it with the fingerprint enroll printed, NAME syncs).
//!
//! Any difference fails the test with a diff. `FLEETKEY_BLESS=1 cargo test --test tests
//! snapshots` rewrites the expected files (and the status) from what the commands print.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::util::{Machine, output_with_stdin, run_program};

/// One case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// The machine that runs the command.
    #[serde(default = "alpha")]
    on: String,
    /// fleetkey's arguments.
    args: Vec<String>,
    /// What the command reads on stdin (nothing when absent).
    stdin: Option<String>,
    /// The expected exit status.
    status: i32,
    /// Environment variables for the command (values expanded like arguments).
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Steps run first.
    #[serde(default)]
    setup: Vec<Step>,
}

/// One setup step: exactly one of `run`, `git`, `chmod`, `edit`, `rename`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default = "alpha")]
    on: String,
    run: Option<Vec<String>>,
    stdin: Option<String>,
    git: Option<Vec<String>>,
    chmod: Option<String>,
    mode: Option<String>,
    edit: Option<String>,
    replace: Option<String>,
    with: Option<String>,
    rename: Option<String>,
    to: Option<String>,
    write: Option<String>,
    join: Option<String>,
    status: Option<i32>,
}

fn alpha() -> String {
    "alpha".to_string()
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd")
}

/// The machines of one case, by name, made on first use.
struct Machines(BTreeMap<String, Machine>);

impl Machines {
    fn get(&mut self, name: &str) -> &Machine {
        self.0
            .entry(name.to_string())
            .or_insert_with(|| Machine::named(name))
    }

    fn forge(&mut self) -> PathBuf {
        self.get("alpha").forge()
    }

    /// `text` with the placeholders filled in for machine `on`.
    fn expand(&mut self, text: &str, on: &str) -> String {
        let mut out = text.replace("[FORGE]", self.forge().to_str().unwrap());
        let names: Vec<String> = self.0.keys().cloned().collect();
        for name in names.iter().map(String::as_str).chain([on]) {
            let m = self.get(name);
            let (home, root) = (m.home.clone(), m.dir.path().to_path_buf());
            out = out
                .replace(&format!("[HOME:{name}]"), home.to_str().unwrap())
                .replace(&format!("[ROOT:{name}]"), root.to_str().unwrap());
            if name == on {
                out = out
                    .replace("[HOME]", home.to_str().unwrap())
                    .replace("[ROOT]", root.to_str().unwrap());
            }
        }
        out
    }

    /// `text` with every machine's paths (and alpha's forge) replaced by placeholders, as seen
    /// from machine `on`, and the run-to-run variations redacted.
    fn normalize(&mut self, text: &str, on: &str) -> String {
        let mut subs: Vec<(String, String)> = vec![(
            self.forge().to_str().unwrap().to_string(),
            "[FORGE]".to_string(),
        )];
        for (name, m) in &self.0 {
            let (home, root) = if name == on {
                ("[HOME]".to_string(), "[ROOT]".to_string())
            } else {
                (format!("[HOME:{name}]"), format!("[ROOT:{name}]"))
            };
            subs.push((m.home.to_str().unwrap().to_string(), home));
            subs.push((m.dir.path().to_str().unwrap().to_string(), root));
        }
        // The longest path first: the forge is inside a HOME, a HOME inside its root.
        subs.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        let mut out = text.to_string();
        for (path, placeholder) in subs {
            out = out.replace(&path, &placeholder);
        }
        redact(&out)
    }
}

/// Runs one setup step.
fn setup(ms: &mut Machines, step: &Step, case: &str) {
    let on = step.on.as_str();
    let x = |ms: &mut Machines, s: &str| ms.expand(s, on);
    match step {
        Step {
            run: Some(args), ..
        } => {
            let args: Vec<String> = args.iter().map(|a| x(ms, a)).collect();
            let stdin = step.stdin.clone().unwrap_or_default();
            let m = ms.get(on);
            let out = output_with_stdin(m.cmd(&args), stdin.as_bytes());
            assert!(
                out.status.code() == Some(step.status.unwrap_or(0)),
                "{case}: setup `fleetkey {args:?}` on {on} exited with {}\nstdout:\n{}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Step {
            git: Some(args), ..
        } => {
            let args: Vec<String> = args.iter().map(|a| x(ms, a)).collect();
            let home = ms.get(on).home.clone();
            run_program(
                Command::new("git")
                    .env("HOME", home)
                    .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                    .args(&args),
            );
        }
        Step {
            chmod: Some(path),
            mode: Some(mode),
            ..
        } => {
            let path = x(ms, path);
            let mode = u32::from_str_radix(mode, 8).expect("mode is octal");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("{case}: chmod {path}: {e}"));
        }
        Step {
            edit: Some(path),
            replace: Some(from),
            with: Some(to),
            ..
        } => {
            let path = x(ms, path);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{case}: edit {path}: {e}"));
            assert!(
                text.contains(from.as_str()),
                "{case}: {path} lacks {from:?}"
            );
            std::fs::write(&path, text.replacen(from.as_str(), to, 1)).unwrap();
        }
        Step {
            rename: Some(from),
            to: Some(to),
            ..
        } => {
            let (from, to) = (x(ms, from), x(ms, to));
            std::fs::rename(&from, &to)
                .unwrap_or_else(|e| panic!("{case}: rename {from} {to}: {e}"));
        }
        Step {
            write: Some(path),
            with: Some(text),
            ..
        } => {
            let (path, text) = (x(ms, path), x(ms, text));
            let path = Path::new(&path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap_or_else(|e| panic!("{case}: write {path:?}: {e}"));
        }
        Step {
            join: Some(name), ..
        } => {
            let forge = ms.forge();
            ms.get(name);
            let (member, new) = (&ms.0[on], &ms.0[name.as_str()]);
            crate::util::fleet::join(member, new, forge.to_str().unwrap());
        }
        other => panic!(
            "{case}: a setup step needs one of run, git, chmod+mode, edit+replace+with, rename+to, write+with, join: {other:?}"
        ),
    }
}

/// What a case printed.
struct Actual {
    status: i32,
    stdout: String,
    stderr: String,
}

fn run_case(name: &str, case: &Case) -> Actual {
    let mut ms = Machines(BTreeMap::new());
    ms.get("alpha");
    ms.get(&case.on);
    for step in &case.setup {
        setup(&mut ms, step, name);
    }
    let args: Vec<String> = case.args.iter().map(|a| ms.expand(a, &case.on)).collect();
    let stdin = case.stdin.clone().unwrap_or_default();
    let env: Vec<(String, String)> = case
        .env
        .iter()
        .map(|(k, v)| (k.clone(), ms.expand(v, &case.on)))
        .collect();
    let mut cmd = ms.get(&case.on).cmd(&args);
    cmd.envs(env);
    let out = output_with_stdin(cmd, stdin.as_bytes());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Actual {
        status: out.status.code().unwrap_or(-1),
        stdout: ms.normalize(&text(&out.stdout), &case.on),
        stderr: ms.normalize(&text(&out.stderr), &case.on),
    }
}

/// Compares one case with its expected files (or rewrites them when blessing); the problems
/// found, each with a diff.
fn check(name: &str, bless: bool) -> Vec<String> {
    let dir = cases_dir();
    let toml_path = dir.join(format!("{name}.toml"));
    let toml_text = std::fs::read_to_string(&toml_path).unwrap();
    let case: Case =
        toml::from_str(&toml_text).unwrap_or_else(|e| panic!("{}: {e}", toml_path.display()));
    let actual = run_case(name, &case);
    let mut problems = Vec::new();
    if bless {
        if actual.status != case.status {
            let fixed: String = toml_text
                .lines()
                .map(|l| {
                    if l.starts_with("status = ") {
                        format!("status = {}\n", actual.status)
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            std::fs::write(&toml_path, fixed).unwrap();
        }
        std::fs::write(dir.join(format!("{name}.stdout")), &actual.stdout).unwrap();
        std::fs::write(dir.join(format!("{name}.stderr")), &actual.stderr).unwrap();
        return problems;
    }
    if actual.status != case.status {
        problems.push(format!(
            "{name}: exit status {} where {} was expected\nstderr:\n{}",
            actual.status, case.status, actual.stderr
        ));
    }
    for (stream, got) in [("stdout", &actual.stdout), ("stderr", &actual.stderr)] {
        let path = dir.join(format!("{name}.{stream}"));
        match std::fs::read_to_string(&path) {
            Ok(want) if want == *got => {}
            Ok(want) => problems.push(format!(
                "{name}: {stream} differs (- expected in {}, + actual):\n{}",
                path.display(),
                diff(&want, got)
            )),
            Err(e) => problems.push(format!(
                "{name}: cannot read {}: {e}; it printed:\n{got}",
                path.display()
            )),
        }
    }
    problems
}

#[test]
fn every_case_in_tests_cmd_prints_exactly_its_expected_text() {
    let bless = std::env::var_os("FLEETKEY_BLESS").is_some_and(|v| v == "1");
    let mut names: Vec<String> = std::fs::read_dir(cases_dir())
        .expect("tests/cmd")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".toml")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 10,
        "tests/cmd holds only {} cases: {names:?}",
        names.len()
    );
    // Each case on its own machines, a few at a time.
    let problems: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(names.len().div_ceil(4))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .flat_map(|n| check(n, bless))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        problems.is_empty(),
        "{} of {} cases differ:\n\n{}\n\nIf the new text is right: FLEETKEY_BLESS=1 cargo test --test tests snapshots",
        problems.len(),
        names.len(),
        problems.join("\n\n")
    );
}

/// A line diff of `want` and `got`: ` ` both, `-` only expected, `+` only actual.
fn diff(want: &str, got: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (
        want.split_inclusive('\n').collect(),
        got.split_inclusive('\n').collect(),
    );
    // Longest common subsequence table, from the end.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let show = |mark: char, line: &str| {
        let (text, newline) = match line.strip_suffix('\n') {
            Some(t) => (t, ""),
            None => (line, "  (no newline at the end)"),
        };
        format!("{mark} {text}{newline}\n")
    };
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&show(' ', a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] > lcs[i + 1][j]) {
            out.push_str(&show('+', b[j]));
            j += 1;
        } else {
            out.push_str(&show('-', a[i]));
            i += 1;
        }
    }
    out
}

/// One element of a redaction pattern.
enum P {
    /// These exact characters.
    Lit(&'static str),
    /// Between `min` and `max` characters of a class (greedy).
    Run(fn(char) -> bool, usize, usize),
}

const REDACTIONS: &[(&[P], &str)] = &[
    // An age recipient: age1 and 58 bech32 characters.
    (&[P::Lit("age1"), P::Run(is_bech32, 58, 58)], "[AGE1]"),
    // An SSH SHA256 fingerprint: 43 base64 characters.
    (&[P::Lit("SHA256:"), P::Run(is_base64, 43, 43)], "[SHA256]"),
    // An RFC 3339 UTC time.
    (
        &[
            P::Run(is_digit, 4, 4),
            P::Lit("-"),
            P::Run(is_digit, 2, 2),
            P::Lit("-"),
            P::Run(is_digit, 2, 2),
            P::Lit("T"),
            P::Run(is_digit, 2, 2),
            P::Lit(":"),
            P::Run(is_digit, 2, 2),
            P::Lit(":"),
            P::Run(is_digit, 2, 2),
            P::Lit("Z"),
        ],
        "[TIME]",
    ),
    // A full commit id (a fleet's founding commit differs run to run).
    (&[P::Run(is_hex, 40, 40)], "[COMMIT]"),
    // A UTC date (after the time, which starts with one).
    (
        &[
            P::Run(is_digit, 4, 4),
            P::Lit("-"),
            P::Run(is_digit, 2, 2),
            P::Lit("-"),
            P::Run(is_digit, 2, 2),
        ],
        "[DATE]",
    ),
    // A conflict-copy stamp.
    (
        &[
            P::Run(is_digit, 8, 8),
            P::Lit("T"),
            P::Run(is_digit, 6, 6),
            P::Lit("Z"),
        ],
        "[STAMP]",
    ),
    // A duration in milliseconds.
    (&[P::Run(is_digit, 1, 9), P::Lit(" ms")], "[N] ms"),
];

fn is_hex(c: char) -> bool {
    c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn is_bech32(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_base64(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '/'
}

/// The end of a match of `pat` at `chars[i..]`, if any.
fn match_at(chars: &[char], i: usize, pat: &[P]) -> Option<usize> {
    let mut at = i;
    for p in pat {
        match p {
            P::Lit(s) => {
                for c in s.chars() {
                    (chars.get(at) == Some(&c)).then_some(())?;
                    at += 1;
                }
            }
            P::Run(class, min, max) => {
                let n = chars[at..]
                    .iter()
                    .take(*max)
                    .take_while(|c| class(**c))
                    .count();
                (n >= *min).then_some(())?;
                at += n;
            }
        }
    }
    Some(at)
}

/// `text` with every match of [`REDACTIONS`] replaced (a match must not start inside a word).
fn redact(text: &str) -> String {
    // The body of a randomart picture (a `|…|` line of 17 cells) depends on the key.
    let mut out: String = text
        .split_inclusive('\n')
        .map(|line| {
            let body = line.trim_end_matches('\n').trim_start();
            let cells = body.strip_prefix('|').and_then(|b| b.strip_suffix('|'));
            if cells.is_some_and(|c| c.chars().count() == 17) {
                let indent = &line[..line.len() - line.trim_start().len()];
                format!("{indent}|[RANDOMART]      |\n")
            } else {
                line.to_string()
            }
        })
        .collect();
    for (pat, with) in REDACTIONS {
        let chars: Vec<char> = out.chars().collect();
        let mut next = String::with_capacity(out.len());
        let mut i = 0;
        while i < chars.len() {
            let boundary = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
            match match_at(&chars, i, pat).filter(|_| boundary) {
                Some(end) => {
                    next.push_str(with);
                    i = end;
                }
                None => {
                    next.push(chars[i]);
                    i += 1;
                }
            }
        }
        out = next;
    }
    out
}

#[test]
fn the_snapshot_runner_redacts_and_diffs() {
    assert_eq!(
        redact(
            "age1lyl95tg5qkcpwzkdeqrq6fhnvtlnysl70xfyadzhmmycdlqyzsfs0pel8u SHA256:Leq27QNBhLQTSKulUWUwaXajBpYT3tRKUSbbd64Ug6I \
             2026-11-28T10:13:59Z .zshrc.conflict-a-20261127T003735Z (48 ms) v2"
        ),
        "[AGE1] [SHA256] [TIME] .zshrc.conflict-a-[STAMP] ([N] ms) v2"
    );
    assert_eq!(
        diff("a\nb\nc\n", "a\nB\nc"),
        "  a\n- b\n- c\n+ B\n+ c  (no newline at the end)\n"
    );
}

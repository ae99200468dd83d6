//! `secrets export --format env` read back by the real dotenv libraries (python-dotenv from
//! PyPI and `dotenv` from npm, pinned and installed under target/ by scripts/dotenv-readers),
//! and `--format docker`'s raw lines and refusals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Machine, require, run_program};

/// The pinned reader versions (as in scripts/dotenv-readers).
const PYTHON_DOTENV: &str = "1.2.4";
const NODE_DOTENV: &str = "18.0.10";

/// Where scripts/dotenv-readers installed the readers: `(python dir, node dotenv package)`.
/// Fails the test (never skips it) saying how to install them when they are missing.
fn dotenv_readers() -> (PathBuf, PathBuf) {
    require("python3", "python3");
    require("node", "nodejs");
    let dir = std::env::var_os("FLEETKEY_DOTENV_READERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dotenv-readers"));
    let python = dir.join("python");
    let node = dir.join("node/node_modules/dotenv");
    let python_ok = python
        .join(format!("python_dotenv-{PYTHON_DOTENV}.dist-info"))
        .is_dir();
    let node_ok = std::fs::read_to_string(node.join("package.json"))
        .is_ok_and(|p| p.contains(&format!("\"version\": \"{NODE_DOTENV}\"")));
    assert!(
        python_ok && node_ok,
        "this test needs python-dotenv {PYTHON_DOTENV} and npm dotenv {NODE_DOTENV} under {}: run \
         scripts/dotenv-readers (it runs `python3 -m pip install --target {0}/python \
         python-dotenv=={PYTHON_DOTENV}` and `npm install --prefix {0}/node dotenv@{NODE_DOTENV}`)",
        dir.display()
    );
    (python, node)
}

/// What each reader makes of the dotenv file `path`, by name: python-dotenv's `dotenv_values`
/// and Node's `config` (the default parser) and `parse` with `fast`, each with its defaults
/// otherwise (python-dotenv's interpolation on). A reader that warns fails the test.
fn read_with_dotenv_libraries(path: &Path) -> Vec<(&'static str, BTreeMap<String, String>)> {
    let (python, node) = dotenv_readers();
    let py = Command::new("python3")
        .arg("-c")
        .arg(
            "import json, sys\n\
             sys.path.insert(0, sys.argv[1])\n\
             import dotenv\n\
             assert dotenv.__file__.startswith(sys.argv[1]), dotenv.__file__\n\
             sys.stdout.write(json.dumps(dotenv.dotenv_values(sys.argv[2])))\n",
        )
        .arg(&python)
        .arg(path)
        .env_remove("PYTHONPATH")
        .output()
        .unwrap();
    let js = |script: &str| {
        Command::new("node")
            .arg("-e")
            .arg(script)
            .arg(&node)
            .arg(path)
            .output()
            .unwrap()
    };
    let config = js("const d = require(process.argv[1]); const env = {};\n\
         const r = d.config({ path: process.argv[2], processEnv: env, quiet: true });\n\
         if (r.error) throw r.error;\n\
         process.stdout.write(JSON.stringify(env));");
    let fast = js("const d = require(process.argv[1]);\n\
         const text = require('fs').readFileSync(process.argv[2]);\n\
         process.stdout.write(JSON.stringify(d.parse(text, { fast: true })));");
    [
        ("python-dotenv", py),
        ("node dotenv", config),
        ("node dotenv fast", fast),
    ]
    .into_iter()
    .map(|(name, out)| {
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{name} failed or warned: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (name, serde_json::from_slice(&out.stdout).unwrap())
    })
    .collect()
}

/// `value` in the secrets file's own format: double-quoted with `\\`, `\"` and `\n` escapes.
fn secrets_line(key: &str, value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{key}=\"{escaped}\"\n")
}

/// Writes `values` as the whole secrets file, encrypted with stock `age` to the roster.
fn store(m: &Machine, values: &[(String, String)]) {
    let plain = m.dir.path().join("plain.env");
    let text: String = values.iter().map(|(k, v)| secrets_line(k, v)).collect();
    std::fs::write(&plain, text).unwrap();
    run_program(
        Command::new(require("age", "age"))
            .args(["-a", "-R"])
            .arg(m.repo().join("secrets.recipients"))
            .arg("-o")
            .arg(m.repo().join("secrets.env.age"))
            .arg(&plain),
    );
    std::fs::remove_file(&plain).unwrap();
}

/// Values every dotenv user meets, each of which the export must carry.
const EVERYDAY: &[(&str, &str)] = &[
    ("PLAIN", "hello"),
    ("EMPTY", ""),
    ("QUOTE", "it's a 'test'"),
    ("DOUBLE", "say \"hi\""),
    ("DOLLAR", "$HOME `id` $(id) $X ${X"),
    ("HASH", "pa#ss # not a comment"),
    ("SPACES", "  lead and trail  "),
    ("TAB", "\tx\t"),
    ("BACKSLASH", "C:\\path\\new \\n literally"),
    ("ESCAPES", "\\\\ and \\' and \\\""),
    ("MULTI", "line one\nline two\n"),
    (
        "PEM",
        "-----BEGIN PRIVATE KEY-----\nMIIB\n+/=\n-----END PRIVATE KEY-----\n",
    ),
    ("CRLF", "windows\r\nline\r\n"),
    ("UNICODE", "é 漢字 🔑 \u{a0}nbsp\u{a0}"),
    ("JSON", "{\"a\": [1, \"it's\"], \"b\": null}"),
    (
        "LOOKS_LIKE_A_LINE",
        "x\nOTHER=injected\n# comment\nexport Y=1",
    ),
    ("URL", "postgres://user:p%40ss@db:5432/app?sslmode=require"),
];

/// Deterministic values built from the characters the readers treat specially.
fn generated(count: usize) -> Vec<(String, String)> {
    const PIECES: &[&str] = &[
        "a", "Z", "0", " ", "\t", "\n", "\r", "'", "\"", "`", "\\", "#", "$", "{", "}", ":-", "=",
        "n", "r", "t", "é", "🔑", "\u{a0}", "\u{2028}", "\u{feff}", "\u{1c}", "export ",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..count)
        .map(|i| {
            let len = (next() % 9) as usize;
            let value: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            (format!("G{i}"), value)
        })
        .collect()
}

#[test]
fn dotenv_export_is_read_back_exactly_by_python_dotenv_and_node_dotenv() {
    dotenv_readers();
    let m = Machine::new();
    m.ok(&["init", "--name", "alpha"]);
    let mut values: Vec<(String, String)> = EVERYDAY
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    values.extend(generated(600));
    store(&m, &values);
    let json: BTreeMap<String, String> =
        serde_json::from_str(&m.ok(&["secrets", "export", "--format", "json"])).unwrap();
    assert_eq!(json, values.iter().cloned().collect(), "the fixture");

    // What the readers cannot both get back exactly is refused, by key, and nothing printed.
    let out = m.run(&["secrets", "export"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing is written on a refusal");
    let err = String::from_utf8(out.stderr).unwrap();
    let named =
        |key: &str| err.contains(&format!(": {key} ")) || err.contains(&format!("; {key} "));
    for (key, _) in EVERYDAY {
        assert!(!named(key), "{key} is refused: {err}");
    }
    let refused: Vec<String> = values
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| named(k))
        .collect();
    assert!(
        !refused.is_empty() && refused.len() < values.len() / 5,
        "{} of {} refused: {err}",
        refused.len(),
        values.len()
    );
    values.retain(|(k, _)| !refused.contains(k));
    store(&m, &values);

    let text = m.ok(&["secrets", "export", "--format", "env"]);
    let path = m.dir.path().join("exported.env");
    std::fs::write(&path, &text).unwrap();
    // Every form is exercised: single quotes, double quotes (a CR), and bare.
    for form in ["QUOTE=\"", "PLAIN='", "ESCAPES=\\\\"] {
        assert!(text.contains(form), "{form} in {text}");
    }
    let expected: BTreeMap<String, String> = values.iter().cloned().collect();
    for (reader, read) in read_with_dotenv_libraries(&path) {
        for (key, value) in &expected {
            assert_eq!(
                read.get(key),
                Some(value),
                "{reader} reads {key} back wrong from the line(s) {:?}",
                text.lines()
                    .skip_while(|l| !l.starts_with(&format!("{key}=")))
                    .take(3)
                    .collect::<Vec<_>>()
            );
        }
        assert_eq!(read.len(), expected.len(), "{reader} reads extra keys");
    }
}

#[test]
fn docker_export_writes_raw_lines_and_refuses_a_multi_line_value_by_name() {
    let m = Machine::new();
    m.ok(&["init", "--name", "alpha"]);
    m.ok_with_stdin(&["secrets", "set", "RAW"], b" it's \"raw\" # $X \\n \n");
    m.ok_with_stdin(&["secrets", "set", "EMPTY", "--allow-empty"], b"");
    assert_eq!(
        m.ok(&["secrets", "export", "--format", "docker"]),
        "RAW= it's \"raw\" # $X \\n \nEMPTY=\n"
    );
    m.ok_with_stdin(&["secrets", "set", "PEM"], b"line one\nline two\n");
    let out = m.run(&["secrets", "export", "--format", "docker"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing is written on a refusal");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(": PEM spans lines") && !err.contains("line one") && !err.contains("RAW"),
        "{err}"
    );
}

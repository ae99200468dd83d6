//! Unit tests of the authorized_keys merge: the corpus cases, sshd's tokenising and options,
//! base64, keys files, and property tests on arbitrary input.

use super::base64::{base64_encode, decode_base64};
use super::error::KeyLineProblem;
use super::options::{Options, parse_options};
use super::public_keys::ecdsa_supported;
use super::tokenize::{fleetkey_marker, scan};
use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use ssh_key::public::Ed25519PublicKey;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/authorized_keys");

fn key_file(name: &str) -> Result<String, String> {
    fs::read_to_string(format!("{CORPUS}/keys/{name}.pub"))
        .map_err(|e| format!("keys/{name}.pub: {e}"))
}

/// `TYPE BASE64` of a corpus key, as ssh-keygen wrote it.
fn key_text(name: &str) -> Result<String, String> {
    let text = key_file(name)?;
    match text.split_whitespace().collect::<Vec<_>>()[..] {
        [kind, base64, ..] => Ok(format!("{kind} {base64}")),
        _ => Err(format!("keys/{name}.pub is not a key line")),
    }
}

fn corpus_key(name: &str) -> PublicKey {
    let text = key_file(name).unwrap();
    let mut keys = parse_public_keys(&text, Path::new(name)).unwrap();
    assert_eq!(keys.len(), 1, "{name}");
    keys.remove(0)
}

fn fleet(machine: &str, name: &str) -> FleetKey {
    FleetKey {
        machine: machine.to_owned(),
        key: corpus_key(name),
    }
}

/// Lines as the merge sees them: split on `\n`, without it.
fn lines(file: &[u8]) -> Vec<&[u8]> {
    file.split_inclusive(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\n").unwrap_or(l))
        .collect()
}

/// Bytes shown with the corpus escapes, for failure messages.
fn show(file: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(file)
        .replace('\r', "{CR}")
        .replace('\t', "{TAB}")
        .replace('\u{feff}', "{BOM}");
    if !file.is_empty() && !file.ends_with(b"\n") {
        text.push_str("{no-eol}\n");
    }
    text
}

// ---- the corpus (format: tests/data/authorized_keys/README.md) ----

/// Expand the escapes of one corpus line.
fn expand(line: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find('{') {
        out.extend_from_slice(&rest.as_bytes()[..open]);
        rest = &rest[open..];
        let token = rest.find('}').map(|close| &rest[1..close]);
        let expansion = match token {
            Some("CR") => Some(b"\r".to_vec()),
            Some("TAB") => Some(b"\t".to_vec()),
            Some("BOM") => Some("\u{feff}".as_bytes().to_vec()),
            Some(t) if t.starts_with("key:") => Some(key_text(&t[4..])?.into_bytes()),
            Some(t) if t.starts_with("b64:") => {
                let text = key_text(&t[4..])?;
                Some(
                    text.split_once(' ')
                        .map(|(_, b)| b)
                        .unwrap_or_default()
                        .as_bytes()
                        .to_vec(),
                )
            }
            _ => None,
        };
        match (token, expansion) {
            (Some(token), Some(bytes)) => {
                out.extend_from_slice(&bytes);
                rest = &rest[token.len() + 2..];
            }
            _ => {
                out.push(b'{');
                rest = &rest[1..];
            }
        }
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}

const SECTIONS: [&str; 8] = [
    "input",
    "fleet",
    "revoked",
    "expect",
    "expect-error",
    "added",
    "removed",
    "warnings",
];

#[derive(Default)]
struct Case {
    about: String,
    requires_ecdsa: bool,
    sections: HashMap<&'static str, Vec<String>>,
}

impl Case {
    fn parse(text: &str) -> Result<Self, String> {
        let mut case = Case::default();
        let mut current = None;
        let mut raw: Vec<&str> = text.split('\n').collect();
        if raw.last() == Some(&"") {
            raw.pop();
        }
        for line in raw {
            if let Some(name) = line.strip_prefix("--- ") {
                let name = SECTIONS
                    .into_iter()
                    .find(|&s| s == name.trim())
                    .ok_or_else(|| format!("unknown section {name:?}"))?;
                if case.sections.insert(name, Vec::new()).is_some() {
                    return Err(format!("section {name} appears twice"));
                }
                current = Some(name);
            } else if let Some(name) = current {
                case.sections.entry(name).or_default().push(line.to_owned());
            } else if let Some(about) = line.strip_prefix("about:") {
                case.about.push_str(about.trim());
                case.about.push(' ');
            } else if line.trim() == "requires: ecdsa" {
                case.requires_ecdsa = true;
            } else if !line.trim().is_empty() && !line.starts_with('#') {
                return Err(format!("unknown header line {line:?}"));
            }
        }
        if case.about.trim().is_empty() {
            return Err("no about: line".to_owned());
        }
        Ok(case)
    }

    fn section(&self, name: &str) -> &[String] {
        self.sections.get(name).map_or(&[], Vec::as_slice)
    }

    /// An `input` or `expect` section as file bytes.
    fn file(&self, name: &str) -> Result<Vec<u8>, String> {
        let section = self.section(name);
        let mut out = Vec::new();
        for (i, line) in section.iter().enumerate() {
            match line.strip_suffix("{no-eol}") {
                Some(_) if i + 1 != section.len() => {
                    return Err(format!("{{no-eol}} before the end of section {name}"));
                }
                Some(line) => out.extend_from_slice(&expand(line)?),
                None => {
                    out.extend_from_slice(&expand(line)?);
                    out.push(b'\n');
                }
            }
        }
        Ok(out)
    }

    /// The roster; `Ok(Err(_))` when `parse_public_keys` refuses a key.
    #[allow(clippy::type_complexity)]
    fn roster(&self, case: &str) -> Result<Result<(Vec<FleetKey>, Vec<PublicKey>), Error>, String> {
        let mut active = Vec::new();
        for line in self.section("fleet") {
            let (machine, key_line) = line
                .split_once(' ')
                .ok_or_else(|| format!("fleet line {line:?} is not MACHINE KEYLINE"))?;
            let text = String::from_utf8(expand(key_line)?).map_err(|e| e.to_string())?;
            let keys = match parse_public_keys(&text, Path::new(&format!("{case}:fleet"))) {
                Ok(keys) => keys,
                Err(e) => return Ok(Err(e)),
            };
            for key in keys {
                active.push(FleetKey {
                    machine: machine.to_owned(),
                    key,
                });
            }
        }
        let mut revoked_text = Vec::new();
        for line in self.section("revoked") {
            revoked_text.extend_from_slice(&expand(line)?);
            revoked_text.push(b'\n');
        }
        let revoked_text = String::from_utf8(revoked_text).map_err(|e| e.to_string())?;
        Ok(
            parse_public_keys(&revoked_text, Path::new(&format!("{case}:revoked")))
                .map(|revoked| (active, revoked)),
        )
    }

    fn report(&self, name: &str) -> Vec<String> {
        self.section(name)
            .iter()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

fn added_report(merged: &Merge) -> Vec<String> {
    merged
        .added
        .iter()
        .map(|c| format!("{} {}", c.line, c.machine.as_deref().unwrap_or("?")))
        .collect()
}

fn removed_report(merged: &Merge) -> Vec<String> {
    merged
        .removed
        .iter()
        .map(|c| {
            let why = match c.why {
                ChangeReason::Revoked => "revoked",
                ChangeReason::LeftFleet => "left-fleet",
                ChangeReason::FleetKeyAdded | ChangeReason::PokeKeyAdded => "added",
            };
            match &c.machine {
                Some(machine) => format!("{} {why} {machine}", c.line),
                None => format!("{} {why}", c.line),
            }
        })
        .collect()
}

fn warnings_report(merged: &Merge) -> Vec<String> {
    merged
        .warnings
        .iter()
        .map(|w| format!("{} {}", w.line, w.machine))
        .collect()
}

fn run_case(path: &Path) -> Result<(), String> {
    let name = path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let case = Case::parse(&fs::read_to_string(path).map_err(|e| e.to_string())?)?;
    let input = case.file("input")?;
    let (active, revoked) = match case.roster(&name)? {
        Ok(_) if case.requires_ecdsa && !ecdsa_supported() => {
            return Err("requires: ecdsa, yet this build read the roster".to_owned());
        }
        Ok(roster) => roster,
        // Without ECDSA support the case still pins something: the roster is refused,
        // loudly and with file and line, rather than ECDSA keys being silently ignored.
        Err(Error::InvalidKeyLine {
            problem: KeyLineProblem::UnsupportedKeyType,
            ..
        }) if case.requires_ecdsa && !ecdsa_supported() => return Ok(()),
        Err(e) => return Err(format!("the roster does not parse: {e}")),
    };
    let roster = Roster {
        active: &active,
        revoked: &revoked,
        poke: None,
    };
    let result = merge(&input, &roster);
    match (
        case.sections.contains_key("expect"),
        case.sections.get("expect-error"),
    ) {
        (true, None) => {
            let merged = result.map_err(|e| format!("the merge failed: {e}"))?;
            let expect = case.file("expect")?;
            if merged.output != expect {
                return Err(format!(
                    "output differs\n--- expected\n{}--- actual\n{}",
                    show(&expect),
                    show(&merged.output)
                ));
            }
            for (section, actual) in [
                ("added", added_report(&merged)),
                ("removed", removed_report(&merged)),
                ("warnings", warnings_report(&merged)),
            ] {
                let expected = case.report(section);
                if actual != expected {
                    return Err(format!("{section}: expected {expected:?}, got {actual:?}"));
                }
            }
            let again = merge(&merged.output, &roster)
                .map_err(|e| format!("the second merge failed: {e}"))?;
            if again.output != merged.output || again.changed() {
                return Err(format!(
                    "not idempotent: the second merge gave\n{}",
                    show(&again.output)
                ));
            }
            Ok(())
        }
        (false, Some(expected)) => match result {
            Ok(merged) => Err(format!("expected an error, got\n{}", show(&merged.output))),
            Err(e) if e.to_string().contains(expected.join("\n").trim()) => Ok(()),
            Err(e) => Err(format!(
                "expected an error containing {expected:?}, got {:?}",
                e.to_string()
            )),
        },
        _ => Err("a case needs exactly one of `--- expect` and `--- expect-error`".to_owned()),
    }
}

#[test]
fn corpus_cases_merge_as_expected() {
    let mut paths: Vec<PathBuf> = fs::read_dir(CORPUS)
        .unwrap_or_else(|e| panic!("{CORPUS}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 35, "only {} cases in {CORPUS}", paths.len());
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| run_case(p).err().map(|e| format!("{}: {e}", p.display())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed:\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_corpus_key_file_reads_as_sshd_would() {
    let mut names: Vec<String> = fs::read_dir(format!("{CORPUS}/keys"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 20);
    for name in names {
        let text = key_file(&name).unwrap();
        let result = parse_public_keys(&text, Path::new("k.pub"));
        let problem = match result {
            Ok(keys) => {
                assert_eq!(keys.len(), 1, "{name}");
                let key = &keys[0];
                let text = format!(
                    "{} {}",
                    key.algorithm().as_str(),
                    base64_encode(&key.to_bytes().unwrap())
                );
                assert_eq!(text, key_text(&name).unwrap(), "{name}");
                assert!(
                    text.len() + 1 < key_file(&name).unwrap().len() || key.comment().is_empty(),
                    "{name}"
                );
                continue;
            }
            Err(Error::InvalidKeyLine {
                problem, line: 1, ..
            }) => problem,
            Err(e) => panic!("{name}: {e}"),
        };
        let expected = match name.as_str() {
            "future-type" => KeyLineProblem::UnknownKeyType,
            "bob-ed25519-cert" => KeyLineProblem::Certificate,
            n if n.contains("ecdsa") && !ecdsa_supported() => KeyLineProblem::UnsupportedKeyType,
            _ => panic!("{name}: {problem}"),
        };
        assert_eq!(problem, expected, "{name}");
    }
}

// ---- sshd's reading of a line, piece by piece ----

#[test]
fn fingerprints_are_the_ones_ssh_keygen_prints() {
    for (name, expected) in [
        (
            "alice-ed25519",
            "SHA256:Y/ZLqZAgWpJVL7Q+U92OMLxMOm3ZT91DjNKSMXcBIuA",
        ),
        (
            "server-rsa",
            "SHA256:guOQPgyc6ZpTgD/fZptcv5JZwrtut9KFNx2erQ/R6Ik",
        ),
        (
            "yubikey-sk-ed25519",
            "SHA256:FqUBP/w3mWFjKqNzEaC6RSy+o5+FvRKuhlLypm0F98o",
        ),
        (
            "old-dsa",
            "SHA256:+biVl55e74T9QCP4Vj45hbdO5hv8UaOlplSr8zPu/Fo",
        ),
    ] {
        assert_eq!(fingerprint(corpus_key(name).key_data()), expected, "{name}");
    }
}

#[test]
fn fleet_lines_encode_keys_as_ssh_keygen_does() {
    for name in [
        "alice-ed25519",
        "pi-ed25519",
        "server-rsa",
        "user-rsa",
        "yubikey-sk-ed25519",
        "solokey-sk-ed25519",
    ] {
        let key = corpus_key(name);
        let text = format!(
            "{} {}",
            key.algorithm().as_str(),
            base64_encode(&key.to_bytes().unwrap())
        );
        assert_eq!(text, key_text(name).unwrap(), "{name}");
    }
    assert_eq!(base64_encode(b""), "");
    assert_eq!(base64_encode(b"a"), "YQ==");
    assert_eq!(base64_encode(b"ab"), "YWI=");
    assert_eq!(base64_encode(b"abc"), "YWJj");
}

#[test]
fn base64_is_decoded_as_b64_pton_does() {
    let cases: [(&[u8], Option<&[u8]>); 17] = [
        (b"", Some(b"")),
        (b"YQ==", Some(b"a")),
        (b"YWI=", Some(b"ab")),
        (b"YWJj", Some(b"abc")),
        (b"Y\rW\x0bJ\x0cj\r", Some(b"abc")), // CR, VT and FF are skipped anywhere
        (b"YQ=\r=", Some(b"a")),             // even between the pads
        (b"YQ", None),                       // padding is required
        (b"YWI", None),
        (b"YQ=", None),
        (b"YR==", None), // the unused bits must be zero
        (b"YWJ=", None),
        (b"YQ==YQ==", None), // nothing may follow the padding
        (b"=", None),
        (b"Y===", None),
        (b"YWJj=", None),
        (b"YW-j", None), // not in the alphabet
        (b"YW\0j", None),
    ];
    let mut out = Vec::new();
    for (text, expected) in cases {
        let ok = decode_base64(text, &mut out);
        assert_eq!(ok.then_some(out.as_slice()), expected, "{}", show(text));
    }
}

#[test]
fn lines_are_tokenised_as_sshd_does() {
    let k = key_text("alice-ed25519").unwrap();
    let b = k.split_once(' ').unwrap().1;
    let cases: [(String, bool, bool); 16] = [
        // (line, sshd finds the key, with options)
        (k.clone(), true, false),
        (format!(" \t {k} comment"), true, false),
        (format!("ssh-ed25519\t\t{b}\t comment"), true, false),
        (format!("ssh-ed25519 {b}\r"), true, false),
        (format!("#{k}"), false, false),
        (format!("  # {k}"), false, false),
        (format!("no-pty {k}"), true, true),
        (format!("command=\"a b\"\t{k}"), true, true),
        (format!("command=\"a \\\" b\" {k}"), true, true),
        (format!("command=\"a b {k}"), false, false), // an unterminated quote swallows the key
        (format!("\u{feff}{k}"), false, false),       // a BOM makes the type unknown
        (format!("SSH-ED25519 {b}"), false, false),   // type names are case-sensitive
        (format!("{k}\0 anything"), true, false),     // sshd stops at NUL
        (format!("ssh-ed25519\0 {b}"), false, false),
        (format!("ssh-ed25519 ssh-ed25519 {b}"), true, true), // read as options + key
        ("ssh-ed25519".to_owned(), false, false),
    ];
    let mut blob = Vec::new();
    for (line, finds, with_options) in cases {
        let found = scan(line.as_bytes(), &mut blob);
        assert_eq!(found.is_some(), finds, "{}", show(line.as_bytes()));
        assert_eq!(
            found.is_some_and(|f| f.options.is_some()),
            with_options,
            "{}",
            show(line.as_bytes())
        );
    }
}

#[test]
fn options_are_read_as_sshauthopt_parse_reads_them() {
    let cases = [
        // (options, cert-authority, sshd accepts them)
        ("no-pty k", false, true),
        ("cert-authority k", true, true),
        ("Cert-Authority,no-pty k", true, true),
        ("no-pty,CERT-AUTHORITY\tk", true, true),
        ("command=\"cert-authority\" k", false, true),
        ("command=\"a \\\"b\\\", #c\",restrict k", false, true),
        (",,no-pty, k", false, true),
        (
            "No-Port-Forwarding,X11-FORWARDING,no-touch-required,verify-required k",
            false,
            true,
        ),
        (
            "restrict,pty,user-rc,agent-forwarding,port-forwarding k",
            false,
            true,
        ),
        ("environment=\"A=1\",environment=\"B=2\" k", false, true),
        (
            "tunnel=\"1\",expiry-time=\"20991231\",permitopen=\"h:1\",permitlisten=\"8080\" k",
            false,
            true,
        ),
        (
            "principals=\"a,b\",cert-authority,from=\"*.lan\" k",
            true,
            true,
        ),
        ("no-pty,", false, false),
        ("cert-authorityx k", false, false),
        ("no-cert-authority k", false, false),
        ("frobnicate,cert-authority k", true, false),
        ("from=\"a\",from=\"b\" k", false, false),
        ("principals=\"a\",principals=\"b\" k", false, false),
        ("command=unquoted k", false, false),
        ("command=\"never ends", false, false),
    ];
    for (options, cert_authority, valid) in cases {
        assert_eq!(
            parse_options(options.as_bytes()),
            Options {
                cert_authority,
                valid
            },
            "{options}"
        );
    }
}

#[test]
fn the_marker_is_the_last_token_of_the_comment() {
    let cases: [(&[u8], Option<&[u8]>); 8] = [
        (b"me@laptop fleetkey=laptop", Some(b"laptop")),
        (b"fleetkey=laptop", Some(b"laptop")),
        (b"me fleetkey=laptop\r", Some(b"laptop")),
        (b"a\tfleetkey=pi \t", Some(b"pi")),
        (b"fleetkey=laptop and more", None),
        (b"fleetkey=", None),
        (b"myfleetkey=laptop", None),
        (b"", None),
    ];
    for (comment, expected) in cases {
        assert_eq!(fleetkey_marker(comment), expected, "{}", show(comment));
    }
}

// ---- keys files ----

#[test]
fn keys_files_skip_comments_and_blank_lines() {
    let k = key_text("laptop-ed25519").unwrap();
    let text = format!(
        "# laptop\n\n   \r\n  # indented\n{k} me@laptop\r\n{k}\t# laptop 2025-01-01 lost\n"
    );
    let keys = parse_public_keys(&text, Path::new("keys/laptop.ssh.pub")).unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].comment(), "me@laptop");
    assert_eq!(keys[1].comment(), "# laptop 2025-01-01 lost");
    assert_eq!(keys[0].key_data(), corpus_key("laptop-ed25519").key_data());
}

#[test]
fn keys_file_errors_name_the_file_and_line_but_never_the_content() {
    let k = key_text("laptop-ed25519").unwrap();
    let b = k.split_once(' ').unwrap().1;
    let cases = [
        ("ssh-ed25519 SECRETLOOKINGTEXT", KeyLineProblem::BadBase64),
        ("from=\"10.0.0.1\" SECRET", KeyLineProblem::UnknownKeyType),
        ("ssh-ed25519", KeyLineProblem::MissingKeyData),
        ("ssh-ed25519 \r", KeyLineProblem::MissingKeyData),
        ("ssh-ed25519 AAAA", KeyLineProblem::BadKeyData),
        (&format!("ssh-rsa {b} SECRET"), KeyLineProblem::TypeMismatch),
        (
            &format!("ssh-ed25519-cert-v01@openssh.com {b}"),
            KeyLineProblem::Certificate,
        ),
    ];
    for (bad, problem) in cases {
        let text = format!("# laptop\n\n{k} me@laptop\n{bad}\n");
        let err = parse_public_keys(&text, Path::new("keys/laptop.ssh.pub")).unwrap_err();
        let message = err.to_string();
        assert_eq!(
            message,
            format!("keys/laptop.ssh.pub:4: not an OpenSSH public key: {problem}")
        );
        assert!(
            !message.contains("SECRET") && !message.contains(b),
            "{message}"
        );
        assert!(matches!(err, Error::InvalidKeyLine { line: 4, problem: p, .. } if p == problem));
        assert!(!err.hint().is_empty());
    }
}

// ---- the roster ----

#[test]
fn an_inconsistent_roster_is_refused() {
    let laptop = fleet("laptop", "laptop-ed25519");
    let no_revoked: &[PublicKey] = &[];
    let cases: Vec<(Vec<FleetKey>, Vec<PublicKey>, &str)> = vec![
        (vec![], vec![], "no active SSH key"),
        (
            vec![laptop.clone()],
            vec![laptop.key.clone()],
            "both active and revoked",
        ),
        (
            vec![
                laptop.clone(),
                FleetKey {
                    machine: "desktop".into(),
                    key: laptop.key.clone(),
                },
            ],
            vec![],
            "listed for two machines, desktop and laptop",
        ),
        (
            vec![FleetKey {
                machine: String::new(),
                ..laptop.clone()
            }],
            vec![],
            "machine name \"\"",
        ),
        (
            vec![FleetKey {
                machine: "my laptop".into(),
                ..laptop.clone()
            }],
            vec![],
            "machine name \"my laptop\"",
        ),
        (
            vec![FleetKey {
                machine: "a\nb".into(),
                ..laptop.clone()
            }],
            vec![],
            "machine name \"a\\nb\"",
        ),
        (vec![fleet("old", "old-dsa")], vec![], "is a ssh-dss key"),
    ];
    for (active, revoked, message) in cases {
        let roster = Roster {
            active: &active,
            revoked: if revoked.is_empty() {
                no_revoked
            } else {
                &revoked
            },
            poke: None,
        };
        let err = merge(b"# keep me\n", &roster).unwrap_err();
        assert!(
            err.to_string().contains(message),
            "{err} (wanted {message:?})"
        );
        assert!(!err.hint().is_empty());
    }
}

#[test]
fn a_key_listed_twice_for_one_machine_is_written_once() {
    let active = [
        fleet("laptop", "laptop-ed25519"),
        fleet("laptop", "laptop-ed25519"),
    ];
    let merged = merge(
        b"",
        &Roster {
            active: &active,
            revoked: &[],
            poke: None,
        },
    )
    .unwrap();
    assert_eq!(lines(&merged.output).len(), 1);
    assert_eq!(merged.added.len(), 1);
}

#[test]
fn fleet_key_comments_are_trimmed_and_never_break_a_line() {
    let text = key_text("laptop-ed25519").unwrap();
    for (comment, expected) in [
        (
            "me@laptop\nssh-ed25519 AAAA injected",
            format!("{text} fleetkey=laptop\n"),
        ),
        ("me@laptop\r", format!("{text} me@laptop fleetkey=laptop\n")),
        ("me\u{7}@laptop", format!("{text} fleetkey=laptop\n")),
        (
            "  me@laptop\t",
            format!("{text} me@laptop fleetkey=laptop\n"),
        ),
        ("", format!("{text} fleetkey=laptop\n")),
    ] {
        let mut key = fleet("laptop", "laptop-ed25519");
        key.key.set_comment(comment);
        let active = [key];
        let merged = merge(
            b"",
            &Roster {
                active: &active,
                revoked: &[],
                poke: None,
            },
        )
        .unwrap();
        assert_eq!(
            show(&merged.output),
            show(expected.as_bytes()),
            "{comment:?}"
        );
    }
}

#[test]
fn changes_carry_fingerprints() {
    let thief = corpus_key("thief-ed25519");
    let active = [fleet("laptop", "laptop-ed25519")];
    let input = format!("{} x\n", key_text("thief-ed25519").unwrap());
    let merged = merge(
        input.as_bytes(),
        &Roster {
            active: &active,
            revoked: &[thief],
            poke: None,
        },
    )
    .unwrap();
    assert_eq!(
        merged.removed[0].fingerprint(),
        "SHA256:K9Vllh5sJmBec1YKniVjU8F6kxToPUnsG1+aLO+ogGY"
    );
    assert_eq!(
        merged.added[0].fingerprint(),
        "SHA256:c55068ZrupHFaklAteVGiC27zkay2miylhSTsYlH2tU"
    );
    assert_eq!(merged.added[0].why.to_string(), "fleet key added");
    assert!(merged.changed());
}

/// A made-up ed25519 key: the merge never checks a key's curve point, only its data.
fn synthetic_key(i: u32, comment: &str) -> PublicKey {
    let mut bytes = [0u8; 32];
    for (j, b) in bytes.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2_654_435_761) >> (j % 4 * 8)) as u8 ^ j as u8;
    }
    PublicKey::new(KeyData::Ed25519(Ed25519PublicKey(bytes)), comment)
}

/// The issue's benchmark shape, checked for correctness here; time it with
/// `cargo test --release -- --nocapture thousand`.
#[test]
fn a_thousand_line_file_with_two_hundred_fleet_keys() {
    let active: Vec<FleetKey> = (0..200)
        .map(|i| FleetKey {
            machine: format!("machine-{:03}", i / 2),
            key: synthetic_key(i, &format!("me@machine-{}", i / 2)),
        })
        .collect();
    let revoked: Vec<PublicKey> = (1000..1020).map(|i| synthetic_key(i, "")).collect();
    let text = |k: &PublicKey| format!("ssh-ed25519 {}", base64_encode(&k.to_bytes().unwrap()));
    let mut input = String::new();
    for i in 0..1000u32 {
        let line = match i % 10 {
            0 => format!("# comment {i}"),
            1 if i < 400 => format!(
                "{} me fleetkey={}",
                text(&active[i as usize / 2].key),
                active[i as usize / 2].machine
            ),
            2 if i < 200 => format!(
                "from=\"10.0.0.0/8\",no-pty {} restricted",
                text(&revoked[i as usize / 10])
            ),
            3 if i < 300 => format!(
                "{} old fleetkey=gone-{i}",
                text(&synthetic_key(5000 + i, ""))
            ),
            4 => format!(
                "command=\"echo \\\"hi, there\\\" # x\" {} user",
                text(&synthetic_key(9000 + i, ""))
            ),
            _ => format!("{} user-{i}@host", text(&synthetic_key(20_000 + i, ""))),
        };
        input.push_str(&line);
        input.push('\n');
    }
    let roster = Roster {
        active: &active,
        revoked: &revoked,
        poke: None,
    };
    let start = Instant::now();
    let merged = merge(input.as_bytes(), &roster).unwrap();
    let elapsed = start.elapsed();
    println!("merge of 1000 lines, 200 fleet keys, 20 revoked: {elapsed:?}");
    assert_eq!(
        merged
            .removed
            .iter()
            .filter(|c| c.why == ChangeReason::Revoked)
            .count(),
        20
    );
    assert_eq!(
        merged
            .removed
            .iter()
            .filter(|c| c.why == ChangeReason::LeftFleet)
            .count(),
        30
    );
    // Lines 1, 11, …, 391 list 40 fleet keys: active[0], active[5], …
    assert_eq!(merged.added.len(), 200 - 40);
    assert_eq!(lines(&merged.output).len(), 1000 - 50 + 160);
    authorised(&merged.output, &roster).unwrap();
}

// ---- properties ----

/// Every active key is listed as a plain entry and no revoked key is listed at all, as this
/// module's own reading of sshd sees the file.
fn authorised(file: &[u8], roster: &Roster<'_>) -> Result<(), String> {
    let mut blob = Vec::new();
    let mut entries = Vec::new();
    for line in lines(file) {
        if let Some(found) = scan(line, &mut blob) {
            let options = found.options.map_or(Options::BARE, parse_options);
            entries.push((blob.clone(), found.field.kind.blob, options.cert_authority));
        }
    }
    let listed = |key: &PublicKey, plain_only: bool| {
        let data = key.to_bytes().unwrap();
        let algorithm = key.algorithm();
        entries
            .iter()
            .any(|(b, a, ca)| *b == data && *a == algorithm.as_str() && !(plain_only && *ca))
    };
    for fleet in roster.active {
        if !listed(&fleet.key, true) {
            return Err(format!(
                "{} of {} is not authorised",
                fingerprint(fleet.key.key_data()),
                fleet.machine
            ));
        }
    }
    for key in roster.revoked {
        if listed(key, false) {
            return Err(format!("revoked {} survived", fingerprint(key.key_data())));
        }
    }
    Ok(())
}

const POOL: [&str; 13] = [
    "alice-ed25519",
    "bob-ed25519",
    "laptop-ed25519",
    "laptop-ed25519-new",
    "desktop-ed25519",
    "pi-ed25519",
    "thief-ed25519",
    "oldphone-ed25519",
    "ca-ed25519",
    "server-rsa",
    "yubikey-sk-ed25519",
    "solokey-sk-ed25519",
    "old-dsa",
];
/// The last one never has a key in the roster.
const MACHINES: [&str; 5] = ["desktop", "laptop", "pi", "server", "oldbox"];

struct Pool {
    keys: Vec<PublicKey>,
    texts: Vec<String>,
}

fn pool() -> &'static Pool {
    static POOL_KEYS: OnceLock<Pool> = OnceLock::new();
    POOL_KEYS.get_or_init(|| Pool {
        keys: POOL.iter().map(|n| corpus_key(n)).collect(),
        texts: POOL.iter().map(|n| key_text(n).unwrap()).collect(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Absent,
    Active(usize),
    Revoked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    /// sshd finds the key; it is a plain entry (valid options or not).
    Plain,
    /// sshd finds the key; the options hold cert-authority.
    Ca,
    /// sshd finds no key on the line.
    Unreadable,
}

const OPTIONS: [(&str, Opt); 11] = [
    ("", Opt::Plain),
    ("no-pty ", Opt::Plain),
    (
        "from=\"10.0.0.0/8,192.168.1.*\",no-agent-forwarding ",
        Opt::Plain,
    ),
    ("command=\"echo \\\"a b, #c\\\"\" ", Opt::Plain),
    ("restrict,pty\t", Opt::Plain),
    (
        "environment=\"A=b c\",expiry-time=\"20991231\" ",
        Opt::Plain,
    ),
    ("frobnicate ", Opt::Plain),
    ("cert-authority ", Opt::Ca),
    ("no-pty,CERT-Authority,principals=\"me\" ", Opt::Ca),
    ("from=\"unterminated ", Opt::Unreadable),
    ("\u{feff}", Opt::Unreadable),
];

const TEXTS: [&str; 6] = [
    "# a comment",
    "",
    "   ",
    "\t# indented comment",
    "#",
    "ssh-ed25519",
];

#[derive(Clone, Debug)]
enum Plan {
    Text(usize),
    Key {
        key: usize,
        options: usize,
        tab: bool,
    },
    Marked {
        key: usize,
        machine: usize,
        options: usize,
    },
    Malformed {
        key: usize,
        how: usize,
    },
    Bytes(Vec<u8>),
}

fn plan() -> impl Strategy<Value = Plan> {
    let key = 0..POOL.len();
    prop_oneof![
        2 => (0..TEXTS.len()).prop_map(Plan::Text),
        5 => (key.clone(), 0..OPTIONS.len(), any::<bool>())
            .prop_map(|(key, options, tab)| Plan::Key { key, options, tab }),
        4 => (key.clone(), 0..MACHINES.len(), 0..OPTIONS.len())
            .prop_map(|(key, machine, options)| Plan::Marked { key, machine, options }),
        2 => (key, 0..6usize).prop_map(|(key, how)| Plan::Malformed { key, how }),
        1 => vec(any::<u8>(), 0..40).prop_map(|mut bytes| {
            bytes.retain(|&b| b != b'\n');
            Plan::Bytes(bytes)
        }),
    ]
}

/// One generated line and whether the merge must keep or remove it.
fn render(plan: &Plan, roles: &[Role]) -> (Vec<u8>, bool) {
    let pool = pool();
    let removed_if_found =
        |key: usize, opt: Opt| opt != Opt::Unreadable && roles[key] == Role::Revoked;
    match plan {
        Plan::Text(i) => (TEXTS[*i].as_bytes().to_vec(), false),
        Plan::Key { key, options, tab } => {
            let (opts, opt) = OPTIONS[*options];
            let sep = if *tab { "\t" } else { " " };
            let line = format!(
                "{opts}{}{sep}user comment",
                pool.texts[*key].replacen(' ', sep, 1)
            );
            (line.into_bytes(), removed_if_found(*key, opt))
        }
        Plan::Marked {
            key,
            machine,
            options,
        } => {
            let (opts, opt) = OPTIONS[*options];
            let line = format!(
                "{opts}{} me fleetkey={}",
                pool.texts[*key], MACHINES[*machine]
            );
            let removed = opt != Opt::Unreadable && (roles[*key] != Role::Active(*machine));
            (line.into_bytes(), removed)
        }
        Plan::Malformed { key, how } => {
            let (kind, b64) = pool.texts[*key].split_once(' ').unwrap();
            let line = match how {
                0 => format!("{kind} {}", &b64[..20]),
                1 => format!("ecdsa-sha2-nistp256 {b64} wrong type"),
                2 => format!("{b64} no type"),
                3 => format!("{kind} {b64}! bad base64"),
                4 => format!("{kind} AAAA fleetkey=oldbox"), // does not decode
                _ => kind.to_owned(),
            };
            (line.into_bytes(), false)
        }
        Plan::Bytes(bytes) => (bytes.clone(), false),
    }
}

fn roster_strategy() -> impl Strategy<Value = Vec<Role>> {
    vec((0u8..3, 0..MACHINES.len() - 1), POOL.len()).prop_map(|picks| {
        let mut roles: Vec<Role> = picks
            .into_iter()
            .enumerate()
            .map(|(i, (role, machine))| match role {
                // DSA keys may be revoked but are refused as fleet keys.
                1 if POOL[i] == "old-dsa" => Role::Absent,
                1 => Role::Active(machine),
                2 => Role::Revoked,
                _ => Role::Absent,
            })
            .collect();
        if !roles.iter().any(|r| matches!(r, Role::Active(_))) {
            roles[0] = Role::Active(0);
        }
        roles
    })
}

fn build_roster(roles: &[Role]) -> (Vec<FleetKey>, Vec<PublicKey>) {
    let pool = pool();
    let mut active = Vec::new();
    let mut revoked = Vec::new();
    for (key, role) in pool.keys.iter().zip(roles) {
        match role {
            Role::Active(m) => active.push(FleetKey {
                machine: MACHINES[*m].to_owned(),
                key: key.clone(),
            }),
            Role::Revoked => revoked.push(key.clone()),
            Role::Absent => {}
        }
    }
    (active, revoked)
}

fn fixed_roster() -> (Vec<FleetKey>, Vec<PublicKey>) {
    (
        vec![
            fleet("laptop", "laptop-ed25519"),
            fleet("desktop", "desktop-ed25519"),
        ],
        vec![corpus_key("thief-ed25519")],
    )
}

/// The output starts with the input's lines, minus the ones reported removed, verbatim.
fn assert_keeps_unremoved_lines(input: &[u8], merged: &Merge) -> Result<(), TestCaseError> {
    let removed: Vec<usize> = merged.removed.iter().map(|c| c.line).collect();
    let kept: Vec<&[u8]> = lines(input)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !removed.contains(&(i + 1)))
        .map(|(_, l)| l)
        .collect();
    let output = lines(&merged.output);
    prop_assert_eq!(output.len(), kept.len() + merged.added.len());
    prop_assert_eq!(&output[..kept.len()], &kept[..]);
    Ok(())
}

fn assert_idempotent(merged: &Merge, roster: &Roster<'_>) -> Result<(), TestCaseError> {
    let again = merge(&merged.output, roster).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(show(&again.output), show(&merged.output));
    prop_assert!(!again.changed());
    Ok(())
}

proptest! {
    #[test]
    fn the_merge_keeps_user_lines_authorises_the_fleet_and_drops_revoked_keys(
        roles in roster_strategy(),
        plans in vec(plan(), 0..40),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        let (active, revoked) = build_roster(&roles);
        let roster = Roster { active: &active, revoked: &revoked, poke: None };
        let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut input = Vec::new();
        let mut fates = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let (line, removed) = render(plan, &roles);
            let last = i + 1 == plans.len();
            if last && !final_newline && line.is_empty() {
                break; // an empty unterminated last line is no line
            }
            input.extend_from_slice(&line);
            if !last || final_newline {
                input.extend_from_slice(eol);
            }
            fates.push(removed);
        }

        let merged = merge(&input, &roster).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!merged.output.is_empty());

        // Exactly the revoked lines and fleetkey's stale lines are removed...
        let expected_removed: Vec<usize> =
            fates.iter().enumerate().filter(|(_, r)| **r).map(|(i, _)| i + 1).collect();
        let removed: Vec<usize> = merged.removed.iter().map(|c| c.line).collect();
        prop_assert_eq!(removed, expected_removed);
        // ...every other line appears verbatim and in order, followed by the added lines.
        assert_keeps_unremoved_lines(&input, &merged)?;

        authorised(&merged.output, &roster).map_err(TestCaseError::fail)?;
        assert_idempotent(&merged, &roster)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_are_kept(input in vec(any::<u8>(), 0..4096)) {
        let (active, revoked) = fixed_roster();
        let roster = Roster { active: &active, revoked: &revoked, poke: None };
        let merged = merge(&input, &roster).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Random bytes never hold a readable revoked key or a fleetkey line: nothing goes.
        prop_assert!(merged.removed.is_empty());
        prop_assert!(merged.output.starts_with(&input));
        assert_keeps_unremoved_lines(&input, &merged)?;
        authorised(&merged.output, &roster).map_err(TestCaseError::fail)?;
        assert_idempotent(&merged, &roster)?;
    }

    #[test]
    fn lines_made_of_tricky_pieces_never_panic(pieces in vec(0usize..24, 0..80)) {
        let pool = pool();
        let fragments: [&str; 24] = [
            " ", "\t", "\"", "\\\"", ",", "#", "=", "\n", "\r\n", "\r", "\0", "\u{feff}",
            "ssh-ed25519", "rsa-sha2-256", "cert-authority", "CERT-AUTHORITY", "from=\"", "command=",
            " fleetkey=laptop", " fleetkey=gone", &pool.texts[2], &pool.texts[6], &pool.texts[9], "AAAA",
        ];
        let input: String = pieces.into_iter().map(|i| fragments[i]).collect();
        let (active, revoked) = fixed_roster();
        let roster = Roster { active: &active, revoked: &revoked, poke: None };
        let merged = merge(input.as_bytes(), &roster).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!merged.output.is_empty());
        assert_keeps_unremoved_lines(input.as_bytes(), &merged)?;
        authorised(&merged.output, &roster).map_err(TestCaseError::fail)?;
        assert_idempotent(&merged, &roster)?;
    }

    #[test]
    fn keys_files_never_panic(text in any::<String>()) {
        let _ = parse_public_keys(&text, Path::new("keys/x.ssh.pub"));
    }
}

/// A peer's poke key is written restricted to the poke, kept while current, rewritten when the
/// binary moves, and removed when it leaves or is revoked; user lines stay byte for byte.
#[test]
fn poke_keys_are_written_restricted_and_follow_the_roster() {
    let active = [fleet("laptop", "laptop-ed25519")];
    let poke = [fleet("desktop", "desktop-ed25519")];
    let roster = |command, poke: &'static [FleetKey], revoked: &'static [PublicKey]| Roster {
        active: Box::leak(Box::new(active.clone())),
        revoked,
        poke: Some(Poke {
            keys: poke,
            command,
        }),
    };
    let poke: &'static [FleetKey] = Box::leak(Box::new(poke));
    let user = b"# mine\nno-pty ssh-ed25519 AAAA me\n";
    let first = merge(user, &roster("/usr/local/bin/fleetkey", poke, &[])).unwrap();
    let text = String::from_utf8(first.output.clone()).unwrap();
    let desktop = key_text("desktop-ed25519").unwrap();
    assert!(
        text.starts_with("# mine\nno-pty ssh-ed25519 AAAA me\n"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "restrict,command=\"'/usr/local/bin/fleetkey' poke\" {desktop} fleetkey-poke=desktop\n"
        )),
        "{text}"
    );
    assert_eq!(first.added.len(), 2);
    let again = merge(&first.output, &roster("/usr/local/bin/fleetkey", poke, &[])).unwrap();
    assert!(!again.changed(), "running twice changes nothing");

    let moved = merge(
        &first.output,
        &roster("/opt/homebrew/bin/fleetkey", poke, &[]),
    )
    .unwrap();
    let moved_text = String::from_utf8(moved.output.clone()).unwrap();
    assert!(!moved_text.contains("/usr/local/bin"), "{moved_text}");
    assert!(moved_text.contains("command=\"'/opt/homebrew/bin/fleetkey' poke\""));
    assert_eq!(moved.removed.len(), 1);

    let gone = merge(&first.output, &roster("/usr/local/bin/fleetkey", &[], &[])).unwrap();
    assert!(!String::from_utf8_lossy(&gone.output).contains("fleetkey-poke="));
    let revoked: &'static [PublicKey] = Box::leak(Box::new([corpus_key("desktop-ed25519")]));
    let cut = merge(
        &first.output,
        &roster("/usr/local/bin/fleetkey", &[], revoked),
    )
    .unwrap();
    assert_eq!(cut.removed[0].why, ChangeReason::Revoked);
    assert!(cut.output.starts_with(user));

    for bad in ["fleetkey", "/a\\b", "/a\nb", "/a\tb"] {
        assert!(
            matches!(
                merge(
                    user,
                    &roster(Box::leak(bad.to_string().into_boxed_str()), poke, &[])
                ),
                Err(Error::InvalidPokeCommand)
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_poke_line_runs_a_binary_whose_path_has_spaces_and_quotes_in_every_shell() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join("my tools/it's \"here\"");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let bin = bin_dir.join("fleet key");
    std::fs::write(&bin, "#!/bin/sh\necho \"ran $1\"\n").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let command = bin.to_str().unwrap();
    assert!(poke_command_ok(command));
    assert!(!poke_command_ok("/a\\b/fleetkey"));
    let options = poke_options(command);
    // What sshd hands the shell: the option's value with `\"` read back as `"`.
    let value = options
        .strip_prefix("restrict,command=\"")
        .and_then(|v| v.strip_suffix('"'))
        .unwrap()
        .replace("\\\"", "\"");
    for shell in ["sh", "bash", "zsh", "fish"] {
        let out = std::process::Command::new(shell)
            .args(["-c", &value])
            .output()
            .unwrap_or_else(|e| panic!("{shell} is needed (apt-get install {shell}): {e}"));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "ran poke\n",
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

//! Unit tests of the secrets file format: value forms, round trips, edits, directives, the
//! three-way merge, exports read back by sh, and property tests.

use super::directive::Stale;
use super::encode::push_escaped;
use super::error::ParseError;
use super::error::{DirectiveError, KeyError};
use super::model::Changed;
use super::parse::is_valid_key;
use super::secret::SecretBuf;
use super::*;
use proptest::prelude::*;
use std::io::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

fn file(text: &str) -> EnvFile {
    match parse(text) {
        Ok(file) => file,
        Err(e) => panic!("{e}"),
    }
}

fn text(file: &EnvFile) -> String {
    file.to_text().as_str().to_owned()
}

fn round_trips(text: &str) {
    assert_eq!(file(text).to_text().as_str(), text);
}

// ---- value forms

#[test]
fn a_raw_value_is_everything_after_the_equals_sign_including_hash_and_spaces() {
    let f = file("URL=https://x.example/#frag  # not a comment\nEQ=a=b=c\nEMPTY=\nSP= padded \n");
    assert_eq!(
        f.get("URL"),
        Some("https://x.example/#frag  # not a comment")
    );
    assert_eq!(f.get("EQ"), Some("a=b=c"));
    assert_eq!(f.get("EMPTY"), Some(""));
    assert_eq!(f.get("SP"), Some(" padded "));
    assert_eq!(f.get("MISSING"), None);
}

#[test]
fn a_raw_value_keeps_backslashes_and_inner_quotes_literally() {
    let f = file("A=C:\\new\\tab\nB=say \"hi\" it's\n");
    assert_eq!(f.get("A"), Some("C:\\new\\tab"));
    assert_eq!(f.get("B"), Some("say \"hi\" it's"));
}

#[test]
fn a_single_quoted_value_is_literal() {
    let f = file("A='  \\n \"x\" # $HOME \\ '\nB=''\n");
    assert_eq!(f.get("A"), Some("  \\n \"x\" # $HOME \\ "));
    assert_eq!(f.get("B"), Some(""));
}

#[test]
fn a_double_quoted_value_understands_three_escapes() {
    let f = file("A=\"line1\\nsaid \\\"hi\\\" \\\\ end\"\nB=\"\"\nC=\"'single' # hash\"\n");
    assert_eq!(f.get("A"), Some("line1\nsaid \"hi\" \\ end"));
    assert_eq!(f.get("B"), Some(""));
    assert_eq!(f.get("C"), Some("'single' # hash"));
}

const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n";

#[test]
fn a_pem_key_spans_several_lines_in_double_quotes() {
    let source = format!("# deploy key\nTLS_KEY=\"{PEM}\"\nAFTER=1\n");
    let f = file(&source);
    assert_eq!(f.get("TLS_KEY"), Some(PEM));
    assert_eq!(f.get("AFTER"), Some("1"));
    assert_eq!(text(&f), source);
    assert_eq!(f.keys().collect::<Vec<_>>(), ["TLS_KEY", "AFTER"]);
}

#[test]
fn a_crlf_file_round_trips_and_its_values_hold_no_carriage_return() {
    let source = "# c\r\nA=raw\r\nB='single'\r\nC=\"dq\"\r\n\r\nPEM=\"l1\r\nl2\r\n\"\r\n";
    let f = file(source);
    assert_eq!(f.get("A"), Some("raw"));
    assert_eq!(f.get("B"), Some("single"));
    assert_eq!(f.get("C"), Some("dq"));
    assert_eq!(f.get("PEM"), Some("l1\nl2\n"));
    assert_eq!(text(&f), source);
}

#[test]
fn a_crlf_file_gets_crlf_lines_when_edited() {
    let mut f = file("A=1\r\nB=2\r\n");
    f.set("A", "one").unwrap();
    f.set("C", "3").unwrap();
    assert_eq!(text(&f), "A=one\r\nB=2\r\nC=3\r\n");
}

#[test]
fn a_carriage_return_inside_a_line_is_part_of_the_value() {
    let f = file("A=a\rb\nB='x\r'\nC=\"y\r\"\r\n");
    assert_eq!(f.get("A"), Some("a\rb"));
    assert_eq!(f.get("B"), Some("x\r"));
    assert_eq!(f.get("C"), Some("y\r"));
}

#[test]
fn a_file_without_final_newline_round_trips() {
    for source in [
        "A=1",
        "A=1\nB='2'",
        "A=1\n# end",
        "A=\"x\ny\"",
        "A=1\r\nB=2\r",
        "",
    ] {
        round_trips(source);
    }
    assert_eq!(file("A=1\nB=2\r").get("B"), Some("2"));
}

#[test]
fn appending_to_a_file_without_final_newline_terminates_its_last_line_first() {
    let mut f = file("A=1\n# last");
    f.set("B", "2").unwrap();
    assert_eq!(text(&f), "A=1\n# last\nB=2\n");
    let mut f = file("A=1\r\nB=2");
    f.set("C", "3").unwrap();
    assert_eq!(text(&f), "A=1\r\nB=2\r\nC=3\r\n");
}

#[test]
fn blank_lines_may_hold_spaces_and_tabs() {
    let source = "A=1\n   \n\t\nB=2\n";
    let f = file(source);
    assert_eq!(f.len(), 2);
    assert_eq!(text(&f), source);
}

// ---- editing

#[test]
fn comments_and_blank_lines_stay_in_place_through_set_and_unset() {
    let source = "# header\n\nA=1\n# about B\nB=2\n\n# footer\n";
    let mut f = file(source);
    assert_eq!(f.set("B", "two"), Ok(Changed::Replaced));
    assert_eq!(text(&f), "# header\n\nA=1\n# about B\nB=two\n\n# footer\n");
    assert_eq!(f.set("C", "3"), Ok(Changed::Added));
    assert_eq!(
        text(&f),
        "# header\n\nA=1\n# about B\nB=two\n\n# footer\nC=3\n"
    );
    assert!(f.unset("A"));
    assert!(!f.unset("A"));
    assert_eq!(text(&f), "# header\n\n# about B\nB=two\n\n# footer\nC=3\n");
}

#[test]
fn set_rewrites_in_place_and_keeps_the_line_ending() {
    let mut f = file("A=1\r\nB=2\nC=3");
    f.set("A", "x").unwrap();
    f.set("B", "y").unwrap();
    f.set("C", "z").unwrap();
    assert_eq!(text(&f), "A=x\r\nB=y\nC=z");
}

#[test]
fn set_picks_the_simplest_encoding_that_reads_back() {
    let cases = [
        ("plain", "K=plain\n"),
        ("", "K=\n"),
        ("a # b = c", "K=a # b = c\n"),
        ("in\"side", "K=in\"side\n"),
        ("it's", "K=it's\n"),
        ("back\\slash", "K=back\\slash\n"),
        (" lead", "K=' lead'\n"),
        ("trail\t", "K='trail\t'\n"),
        ("\"quoted\"", "K='\"quoted\"'\n"),
        ("'quoted'", "K=\"'quoted'\"\n"),
        (" it's", "K=\" it's\"\n"),
        ("a\nb", "K=\"a\\nb\"\n"),
        ("x\\n\"\n", "K=\"x\\\\n\\\"\\n\"\n"),
        ("cr\r", "K='cr\r'\n"),
    ];
    for (value, expected) in cases {
        let mut f = EnvFile::new();
        f.set("K", value).unwrap();
        assert_eq!(text(&f), expected, "value {value:?}");
        assert_eq!(file(expected).get("K"), Some(value));
    }
}

#[test]
fn set_tells_whether_the_value_changed_and_leaves_an_unchanged_entry_alone() {
    let source = "A='1'\n";
    let mut f = file(source);
    assert_eq!(f.set("A", "1"), Ok(Changed::Unchanged));
    assert!(!Changed::Unchanged.is_changed());
    let nothing_changed = [!Changed::Unchanged, !Changed::Added, !Changed::Replaced];
    assert_eq!(nothing_changed, [true, false, false]);
    assert_eq!(text(&f), source, "the original encoding is kept");
    assert_eq!(f.set("A", "2"), Ok(Changed::Replaced));
    assert!(Changed::Replaced.is_changed());
    assert_eq!(f.set("B", ""), Ok(Changed::Added));
    assert!(Changed::Added.is_changed());
}

#[test]
fn set_rejects_an_invalid_key_and_changes_nothing() {
    let mut f = file("A=1\n");
    for key in ["", "1A", "A-B", "A B", "export A", "É", "A=", "A\n"] {
        assert_eq!(f.set(key, "v"), Err(KeyError), "key {key:?}");
    }
    assert_eq!(text(&f), "A=1\n");
    for key in ["_", "a", "A_1", "_9z"] {
        assert!(is_valid_key(key));
    }
}

#[test]
fn unset_removes_every_line_of_a_multi_line_entry_and_nothing_else() {
    let mut f = file(&format!("A=1\n# key\nKEY=\"{PEM}\"\n\nB=2"));
    assert!(f.unset("KEY"));
    assert_eq!(text(&f), "A=1\n# key\n\nB=2");
    assert!(f.unset("B"));
    assert_eq!(text(&f), "A=1\n# key\n\n");
}

#[test]
fn keys_and_entries_come_in_file_order() {
    let f = file("Z=26\n# x\nA=1\nM='13'\n");
    assert_eq!(f.keys().collect::<Vec<_>>(), ["Z", "A", "M"]);
    assert_eq!(
        f.entries().collect::<Vec<_>>(),
        [("Z", "26"), ("A", "1"), ("M", "13")]
    );
    assert_eq!(f.len(), 3);
    assert!(!f.is_empty());
    assert!(file("# only a comment\n").is_empty());
    assert!(f.contains_key("A") && !f.contains_key("B"));
}

// ---- exports

#[test]
fn export_env_writes_single_quoted_sh_assignments() {
    let mut f = file("# c\nA=plain\nB=\"it's\\nhere\"\n");
    f.add_conflict("A", "laptop", "2024-01-01T00:00:00Z", "lost")
        .unwrap();
    assert_eq!(f.export_env().as_str(), "A='plain'\nB='it'\\''s\nhere'\n");
    assert_eq!(EnvFile::new().export_env().as_str(), "");
}

#[test]
fn export_json_is_an_object_in_file_order_without_conflicts() {
    let mut f = file("Z=\"a\\\"b\\nc\"\nA=\\x\n");
    f.add_conflict("A", "laptop", "t", "lost").unwrap();
    let json = f.export_json();
    assert_eq!(json.as_str(), "{\"Z\":\"a\\\"b\\nc\",\"A\":\"\\\\x\"}\n");
    let back: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(back["Z"], "a\"b\nc");
    assert_eq!(EnvFile::new().export_json().as_str(), "{}\n");
}

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Sets `FKT_0..` to `values`, exports, sources the export with the real `/bin/sh` under
/// `set -a`, and returns what sh holds in each variable.
fn read_back_with_sh(values: &[String]) -> Vec<String> {
    let mut f = EnvFile::new();
    for (i, value) in values.iter().enumerate() {
        f.set(&format!("FKT_{i}"), value).unwrap();
    }
    let path = std::env::temp_dir().join(format!(
        "fleetkey-envfile-test-{}-{}.sh",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut out| out.write_all(f.export_env().as_bytes()))
        .unwrap();
    let vars: String = (0..values.len())
        .map(|i| format!(" \"$FKT_{i}\""))
        .collect();
    let output = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("set -a; . \"$1\"; printf '%s\\0'{vars}"))
        .arg("sh")
        .arg(&path)
        .env_clear()
        .output();
    std::fs::remove_file(&path).unwrap();
    let output = output.unwrap();
    assert!(output.status.success(), "sh failed: {output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut read: Vec<String> = stdout.split('\0').map(str::to_owned).collect();
    assert_eq!(read.pop().as_deref(), Some(""), "output ends with NUL");
    read
}

#[test]
fn export_env_is_read_back_exactly_by_sh() {
    let values: Vec<String> = [
        "",
        "plain",
        "it's",
        "'",
        "''''",
        "a\nb",
        "\n",
        "trailing newlines\n\n",
        "  lead and trail  ",
        "$HOME `id` $(id) ${X:-y} \\ \" ! * ?",
        "é 漢字 🔑",
        "\r\n\t",
        PEM,
    ]
    .map(str::to_owned)
    .to_vec();
    assert_eq!(read_back_with_sh(&values), values);
}

// ---- errors

#[test]
fn each_malformed_line_gives_its_error_and_line_number() {
    let cases: &[(&str, ParseError)] = &[
        ("A=1\nexport B=2\n", ParseError::BadKey { line: 2 }),
        ("A =1\n", ParseError::BadKey { line: 1 }),
        ("1A=x\n", ParseError::BadKey { line: 1 }),
        ("=x\n", ParseError::BadKey { line: 1 }),
        ("A=1\n B=2\n", ParseError::BadKey { line: 2 }),
        (
            "A=1\n\n  # indented comment = x\n",
            ParseError::BadKey { line: 3 },
        ),
        ("A-B=1\n", ParseError::BadKey { line: 1 }),
        ("A=1\nB\n", ParseError::MissingEquals { line: 2 }),
        ("A=1\n  # indented\n", ParseError::MissingEquals { line: 2 }),
        (
            "A=1\n# c\nB=2\nA=3\n",
            ParseError::DuplicateKey {
                key: "A".into(),
                line: 4,
                first: 1,
            },
        ),
        (
            "A=\"multi\nline\"\nA=x\n",
            ParseError::DuplicateKey {
                key: "A".into(),
                line: 3,
                first: 1,
            },
        ),
        (
            "A=1\nB='open\n'\n",
            ParseError::UnterminatedSingleQuote { line: 2 },
        ),
        (
            "A='open\r\n",
            ParseError::UnterminatedSingleQuote { line: 1 },
        ),
        (
            "A=1\nB=\"open\nx\ny\n",
            ParseError::UnterminatedDoubleQuote { line: 2, at: 4 },
        ),
        (
            "B=\"open\nx",
            ParseError::UnterminatedDoubleQuote { line: 1, at: 2 },
        ),
        (
            "B=\"open\\",
            ParseError::UnterminatedDoubleQuote { line: 1, at: 1 },
        ),
        ("A=\"\\t\"\n", ParseError::UnknownEscape { line: 1, at: 1 }),
        (
            "A=1\nB=\"ok\nok\\nstill\n\\x\"\n",
            ParseError::UnknownEscape { line: 2, at: 4 },
        ),
        (
            "A=\"line\\\nnext\"\n",
            ParseError::UnknownEscape { line: 1, at: 1 },
        ),
        ("A='x' \n", ParseError::TextAfterQuote { line: 1, at: 1 }),
        ("A='x'y\n", ParseError::TextAfterQuote { line: 1, at: 1 }),
        ("A=\"x\"#c\n", ParseError::TextAfterQuote { line: 1, at: 1 }),
        (
            "A=\"x\ny\" \r\n",
            ParseError::TextAfterQuote { line: 1, at: 2 },
        ),
        (
            "A=\"x\"\r\r\n",
            ParseError::TextAfterQuote { line: 1, at: 1 },
        ),
        (
            "A=1\n# fleetkey:stale\n",
            ParseError::BadDirective { line: 2 },
        ),
        (
            "# fleetkey:stale A since=2024-13-01 reason=x\n",
            ParseError::BadDirective { line: 1 },
        ),
        (
            "# fleetkey:stale A since=2024-01-01\n",
            ParseError::BadDirective { line: 1 },
        ),
        (
            "# fleetkey:stale 1A since=2024-01-01 reason=\n",
            ParseError::BadDirective { line: 1 },
        ),
        (
            "\n\n# fleetkey:conflict A from=m at=t value=\"x\" extra\n",
            ParseError::BadDirective { line: 3 },
        ),
        (
            "# fleetkey:conflict A from=m at=t value=\"x\n",
            ParseError::BadDirective { line: 1 },
        ),
        (
            "# fleetkey:conflict A from=m value=\"x\"\n",
            ParseError::BadDirective { line: 1 },
        ),
        (
            "# fleetkey:conflict A from= at=t value=\"x\"\n",
            ParseError::BadDirective { line: 1 },
        ),
        (
            "# fleetkey:conflict A from=m at=t value=\"\\t\"\n",
            ParseError::BadDirective { line: 1 },
        ),
    ];
    for (source, expected) in cases {
        assert_eq!(parse(source).err().as_ref(), Some(expected), "{source:?}");
        assert_eq!(expected.line(), parse(source).unwrap_err().line());
    }
}

#[test]
fn error_messages_never_contain_the_files_content() {
    const CANARY: &str = "CANARY_s3cr3t_VALUE";
    let sources = [
        format!("{CANARY}\n"),
        format!("export {CANARY}=1\n"),
        format!("{CANARY} = x\n"),
        format!("9{CANARY}={CANARY}\n"),
        format!("A='{CANARY}\n"),
        format!("A=\"{CANARY}\n{CANARY}\n"),
        format!("A=\"{CANARY}\\q{CANARY}\"\n"),
        format!("A='{CANARY}'{CANARY}\n"),
        format!("A=\"{CANARY}\"{CANARY}\n"),
        format!("A={CANARY}\nA={CANARY}\n"),
        format!("# fleetkey:stale {CANARY} since=never reason={CANARY}\n"),
        format!("# fleetkey:conflict A from=m at=t value=\"{CANARY}\n"),
        format!("# fleetkey:conflict {CANARY}! from=m at=t value=\"{CANARY}\"\n"),
    ];
    for source in &sources {
        let err = parse(source).unwrap_err();
        for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
            assert!(!shown.contains("CANARY"), "{shown}");
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
    }
}

#[test]
fn debug_output_shows_key_names_only() {
    let mut f = file("# CANARY comment\nAPI_TOKEN=CANARY_value\nPEM=\"CANARY\nCANARY\"\n");
    f.add_conflict("API_TOKEN", "laptop", "t", "CANARY_lost")
        .unwrap();
    f.mark_stale("PEM", "2024-01-01", "lost").unwrap();
    let shown = format!("{f:?} {f:#?} {:?}", f.conflicts());
    assert!(
        shown.contains("API_TOKEN") && shown.contains("PEM"),
        "{shown}"
    );
    assert!(!shown.contains("CANARY"), "{shown}");
}

// ---- directives

#[test]
fn mark_stale_puts_one_directive_directly_above_the_entry() {
    let mut f = file("# about A\nA=1\nB=2\n");
    assert_eq!(
        f.mark_stale("A", "2024-05-01", "revoked laptop (compromised)"),
        Ok(true)
    );
    assert_eq!(
        text(&f),
        "# about A\n# fleetkey:stale A since=2024-05-01 reason=revoked laptop (compromised)\nA=1\nB=2\n"
    );
    assert_eq!(f.mark_stale("A", "2024-06-01", "again"), Ok(false));
    assert_eq!(
        f.stale(),
        [Stale {
            key: "A".into(),
            since: "2024-05-01".into(),
            reason: "revoked laptop (compromised)".into(),
        }]
    );
    assert_eq!(file(&text(&f)).stale(), f.stale(), "it parses back");
}

#[test]
fn mark_stale_of_an_absent_key_goes_at_the_end() {
    let mut f = file("A=1");
    f.mark_stale("GONE", "2024-05-01", "").unwrap();
    assert_eq!(
        text(&f),
        "A=1\n# fleetkey:stale GONE since=2024-05-01 reason=\n"
    );
    assert_eq!(f.stale()[0].reason, "");
}

#[test]
fn mark_stale_validates_its_fields() {
    let mut f = EnvFile::new();
    assert_eq!(
        f.mark_stale("1A", "2024-01-01", "r"),
        Err(DirectiveError::Key(KeyError))
    );
    for date in [
        "2024-1-01",
        "24-01-01",
        "2024-00-10",
        "2024-01-32",
        "2024/01/01",
        "today",
    ] {
        assert_eq!(
            f.mark_stale("A", date, "r"),
            Err(DirectiveError::Date),
            "{date}"
        );
    }
    assert_eq!(
        f.mark_stale("A", "2024-01-01", "two\nlines"),
        Err(DirectiveError::Reason)
    );
    assert!(f.to_text().is_empty());
}

#[test]
fn a_new_value_clears_the_stale_mark_and_the_same_value_does_not() {
    let mut f = file("A=1\nB=2\n");
    f.mark_stale("A", "2024-05-01", "x").unwrap();
    f.mark_stale("B", "2024-05-01", "x").unwrap();
    assert_eq!(f.set("A", "1"), Ok(Changed::Unchanged));
    assert_eq!(f.stale().len(), 2);
    f.set("A", "new").unwrap();
    assert_eq!(
        f.stale().iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
        ["B"]
    );
    f.unset("B");
    assert!(f.stale().is_empty());
    assert_eq!(text(&f), "A=new\n");
}

#[test]
fn setting_an_absent_stale_key_clears_its_mark() {
    let mut f = EnvFile::new();
    f.mark_stale("A", "2024-05-01", "x").unwrap();
    f.set("A", "fresh").unwrap();
    assert_eq!(text(&f), "A=fresh\n");
}

#[test]
fn an_unknown_fleetkey_directive_is_a_plain_comment() {
    let source =
        "# fleetkey:future stuff\n# fleetkey:stalewart x\n# fleetkey:\n#fleetkey:stale\nA=1\n";
    let f = file(source);
    assert!(f.stale().is_empty() && f.conflicts().is_empty());
    assert_eq!(text(&f), source);
}

#[test]
fn conflict_records_round_trip_and_are_never_exported() {
    let mut f = file("A=kept\n");
    let lost = "multi\nline \"quoted\" \\ value";
    assert_eq!(
        f.add_conflict("A", "laptop", "2024-05-01T10:00:00Z", lost),
        Ok(true)
    );
    assert_eq!(
        f.add_conflict("A", "laptop", "2024-05-01T10:00:00Z", lost),
        Ok(false)
    );
    f.add_conflict("B", "desktop", "t2", "other").unwrap();
    assert_eq!(
        text(&f),
        "A=kept\n\
         # fleetkey:aside A merged_by=laptop merged_at=2024-05-01T10:00:00Z set_by=- set_at=- in_force_by=- in_force_at=- value=\"multi\\nline \\\"quoted\\\" \\\\ value\"\n\
         # fleetkey:aside B merged_by=desktop merged_at=t2 set_by=- set_at=- in_force_by=- in_force_at=- value=\"other\"\n"
    );
    let back = file(&text(&f));
    let conflicts = back.conflicts();
    assert_eq!(conflicts.len(), 2);
    assert_eq!(
        (
            conflicts[0].key.as_str(),
            conflicts[0].from.as_str(),
            conflicts[0].at.as_str()
        ),
        ("A", "laptop", "2024-05-01T10:00:00Z")
    );
    assert_eq!(conflicts[0].value.as_str(), lost);
    assert_eq!(back.export_env().as_str(), "A='kept'\n");
    assert_eq!(back.keys().collect::<Vec<_>>(), ["A"]);

    assert_eq!(f.clear_conflicts("A"), 1);
    assert_eq!(f.clear_conflicts("A"), 0);
    assert_eq!(f.conflicts()[0].key, "B");
}

#[test]
fn add_conflict_validates_its_fields() {
    let mut f = EnvFile::new();
    assert_eq!(f.add_conflict("A B", "m", "t", "v"), Err(KeyError.into()));
    assert_eq!(
        f.add_conflict("A", "my laptop", "t", "v"),
        Err(DirectiveError::Word("from"))
    );
    assert_eq!(
        f.add_conflict("A", "m", "", "v"),
        Err(DirectiveError::Word("at"))
    );
    assert!(f.to_text().is_empty());
}

// ---- merge3

fn merged(base: &str, ours: &str, theirs: &str) -> EnvFile {
    merge3(
        &file(base),
        &file(ours),
        &file(theirs),
        "laptop",
        "2024-05-01T10:00:00Z",
        &|_| Origins::default(),
    )
}

#[test]
fn merge_when_one_side_is_unchanged_gives_the_other_side_exactly() {
    let base = "A=1\n";
    let changed = "# new comment\nA='2'\nB=3";
    assert_eq!(text(&merged(base, base, changed)), changed);
    assert_eq!(text(&merged(base, changed, base)), changed);
    assert_eq!(text(&merged(base, changed, changed)), changed);
}

#[test]
fn merge_takes_changes_made_only_on_our_side_into_their_layout() {
    let m = merged(
        "A=1\nB=1\nC=1\n",
        "A=2\nC=1\nNEW='ours'\n",
        "# upstream comment\nA=1\nB=1\nC=9\nUP=1\n",
    );
    assert_eq!(text(&m), "# upstream comment\nA=2\nC=9\nUP=1\nNEW='ours'\n");
    assert!(m.conflicts().is_empty());
}

#[test]
fn merge_keeps_upstreams_value_and_records_ours_when_both_changed_a_key() {
    let m = merged("A=1\nB=1\n", "A=ours\nB=1\n", "A=theirs\nB=2\n");
    assert_eq!(m.get("A"), Some("theirs"));
    assert_eq!(m.get("B"), Some("2"));
    let conflicts = m.conflicts();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].key, "A");
    assert_eq!(conflicts[0].from, "laptop");
    assert_eq!(conflicts[0].at, "2024-05-01T10:00:00Z");
    assert_eq!(conflicts[0].value.as_str(), "ours");
    assert_eq!(m.export_env().as_str(), "A='theirs'\nB='2'\n");
}

#[test]
fn merge_of_a_key_both_sides_added_differently_is_a_conflict() {
    let m = merged("", "X=1\nA=ours\n", "A=theirs\n");
    assert_eq!(m.get("A"), Some("theirs"));
    assert_eq!(m.get("X"), Some("1"));
    assert_eq!(m.conflicts()[0].value.as_str(), "ours");
}

#[test]
fn merge_lets_a_change_beat_a_deletion_on_either_side() {
    let m = merged("A=1\nB=1\nZ=0\n", "B=1\nZ=1\n", "A=2\nB=1\nZ=0\n");
    assert_eq!(m.get("A"), Some("2"), "we deleted, they changed: theirs");
    assert!(m.conflicts().is_empty());

    let m = merged("A=1\nB=1\nZ=0\n", "A=2\nB=1\nZ=0\n", "B=1\nZ=1\n");
    assert_eq!(
        text(&m),
        "B=1\nZ=1\nA=2\n",
        "we changed, they deleted: ours re-added"
    );
    assert!(m.conflicts().is_empty());
}

#[test]
fn merge_keeps_our_value_bytes_and_the_comment_above_a_key_we_added() {
    let m = merged(
        "A=1\n",
        "A=1\n\n# the deploy key\nKEY=\"l1\nl2\"\n",
        "A=1\nB=2",
    );
    assert_eq!(text(&m), "A=1\nB=2\n# the deploy key\nKEY=\"l1\nl2\"\n");
    assert_eq!(m.get("KEY"), Some("l1\nl2"));
}

#[test]
fn merge_unions_stale_marks_three_way() {
    let base = "# fleetkey:stale A since=2024-01-01 reason=old\nA=1\nB=1\nC=1\n";
    // Upstream marks C (revoke elsewhere); we fix A; nobody touches the rest.
    let ours = "A=2\nB=1\nC=1\nD=1\n";
    let theirs = "# fleetkey:stale A since=2024-01-01 reason=old\nA=1\nB=1\n# fleetkey:stale C since=2024-05-01 reason=new\nC=1\n";
    let m = merged(base, ours, theirs);
    assert_eq!(m.get("A"), Some("2"));
    assert_eq!(
        m.stale().iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
        ["C"]
    );
    // We mark B; upstream changes an unrelated key.
    let ours = "# fleetkey:stale A since=2024-01-01 reason=old\nA=1\n# fleetkey:stale B since=2024-05-02 reason=ours\nB=1\nC=1\n";
    let theirs = "# fleetkey:stale A since=2024-01-01 reason=old\nA=1\nB=1\nC=2\n";
    let m = merged(base, ours, theirs);
    assert_eq!(
        text(&m),
        "# fleetkey:stale A since=2024-01-01 reason=old\nA=1\n# fleetkey:stale B since=2024-05-02 reason=ours\nB=1\nC=2\n"
    );
}

#[test]
fn merge_unions_conflict_records_three_way() {
    let base = "A=1\n# fleetkey:conflict A from=x at=t0 value=\"old\"\n";
    let ours = "A=1\n# fleetkey:conflict A from=y at=t1 value=\"mine\"\nB=1\n";
    let theirs = "A=1\n# fleetkey:conflict A from=x at=t0 value=\"old\"\n# fleetkey:conflict A from=z at=t2 value=\"up\"\n";
    let m = merged(base, ours, theirs);
    let values: Vec<String> = m.conflicts().iter().map(|c| c.value.to_string()).collect();
    assert_eq!(values, ["up", "mine"], "ours cleared `old`, both added one");
    assert_eq!(m.get("B"), Some("1"));
}

#[test]
fn merge_sanitises_the_machine_name_and_time_of_new_records() {
    let m = merge3(
        &file("A=1\n"),
        &file("A=2\n"),
        &file("A=3\n"),
        "my laptop",
        "",
        &|_| Origins::default(),
    );
    let c = &m.conflicts()[0];
    assert_eq!((c.from.as_str(), c.at.as_str()), ("my_laptop", "unknown"));
    assert_eq!(file(&text(&m)).conflicts().len(), 1);
}

#[test]
fn merge_records_who_set_each_value_and_when() {
    let origins = |key: &str| Origins {
        aside: Setter {
            machine: Some(format!("laptop-{key}")),
            at: Some("2026-11-30T14:02:00Z".into()),
        },
        in_force: Setter {
            machine: Some("server".into()),
            at: None,
        },
    };
    let m = merge3(
        &file("A=1\n"),
        &file("A=ours\n"),
        &file("A=theirs\n"),
        "laptop",
        "2026-11-30T15:00:00Z",
        &origins,
    );
    assert_eq!(
        text(&m),
        "A=theirs\n# fleetkey:aside A merged_by=laptop merged_at=2026-11-30T15:00:00Z \
         set_by=laptop-A set_at=2026-11-30T14:02:00Z in_force_by=server in_force_at=- value=\"ours\"\n"
    );
    let back = file(&text(&m)).conflicts();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].origins, origins("A"));
    assert_eq!(
        (back[0].from.as_str(), back[0].at.as_str()),
        ("laptop", "2026-11-30T15:00:00Z")
    );
    assert_eq!(back[0].value.as_str(), "ours");
}

#[test]
fn a_conflict_record_of_the_older_form_parses_with_its_setters_unknown() {
    let f = file("A=1\n# fleetkey:conflict A from=laptop at=2024-05-01T10:00:00Z value=\"old\"\n");
    let c = &f.conflicts()[0];
    assert_eq!(
        (c.key.as_str(), c.from.as_str(), c.at.as_str()),
        ("A", "laptop", "2024-05-01T10:00:00Z")
    );
    assert_eq!(c.origins, Origins::default());
    assert_eq!(c.value.as_str(), "old");
    // Kept as it was written; a merge carries it on unchanged.
    assert_eq!(
        text(&f),
        "A=1\n# fleetkey:conflict A from=laptop at=2024-05-01T10:00:00Z value=\"old\"\n"
    );
    let m = merged("A=1\n", &text(&f), "A=1\nB=2\n");
    assert_eq!(m.conflicts().len(), 1);
    assert_eq!(m.conflicts()[0].origins, Origins::default());
}

#[test]
fn a_malformed_aside_record_is_an_error_with_its_line() {
    for bad in [
        "# fleetkey:aside A merged_by=m merged_at=t set_by=a set_at=t in_force_by=b value=\"x\"\n",
        "# fleetkey:aside A merged_by=m merged_at=t set_at=t set_by=a in_force_by=b in_force_at=t value=\"x\"\n",
        "# fleetkey:aside A merged_by=m merged_at=t set_by= set_at=t in_force_by=b in_force_at=t value=\"x\"\n",
        "# fleetkey:aside A merged_by=m merged_at=t set_by=a set_at=t in_force_by=b in_force_at=t value=\"x\" more\n",
    ] {
        assert_eq!(
            EnvFile::parse(&format!("A=1\n{bad}")).err(),
            Some(ParseError::BadDirective { line: 2 }),
            "{bad}"
        );
    }
}

#[test]
fn setter_names_are_made_one_word_and_an_unknown_one_stays_unknown() {
    let m = merge3(
        &file("A=1\n"),
        &file("A=2\n"),
        &file("A=3\n"),
        "m",
        "t",
        &|_| Origins {
            aside: Setter {
                machine: Some("two words".into()),
                at: Some("-".into()),
            },
            in_force: Setter::default(),
        },
    );
    let c = &file(&text(&m)).conflicts()[0];
    assert_eq!(c.origins.aside.machine.as_deref(), Some("two_words"));
    assert_eq!(c.origins.aside.at, None);
    assert_eq!(c.origins.in_force, Setter::default());
    assert_eq!(
        m.conflicts()[0].origins,
        c.origins,
        "what is kept is what reads back"
    );
}

#[test]
fn merging_the_same_edit_twice_records_the_conflict_once() {
    let (base, ours) = (file("A=1\n"), file("A=2\nB=1\n"));
    let once = merge3(&base, &ours, &file("A=3\n"), "laptop", "t", &|_| {
        Origins::default()
    });
    let twice = merge3(&base, &ours, &once, "laptop", "t", &|_| Origins::default());
    assert_eq!(twice.conflicts().len(), 1);
    assert_eq!(twice.get("A"), Some("3"));
}

// ---- properties

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => any::<char>(),
        1 => Just('\''),
        1 => Just('"'),
        1 => Just('\\'),
        1 => Just('\n'),
        1 => Just('\r'),
        1 => Just(' '),
        1 => Just('\t'),
        1 => Just('#'),
        1 => Just('='),
        1 => Just('$'),
    ]
}

fn any_value() -> impl Strategy<Value = String> {
    prop::collection::vec(tricky_char(), 0..24).prop_map(String::from_iter)
}

/// One generated line (or multi-line entry) of a secrets file.
#[derive(Debug, Clone)]
enum Line {
    Blank(String),
    Comment(String),
    Stale,
    Conflict(String),
    Raw(String),
    Single(String),
    Double(String, bool),
}

fn any_line() -> impl Strategy<Value = Line> {
    let blank = prop::collection::vec(prop_oneof![Just(' '), Just('\t')], 0..3)
        .prop_map(|s| Line::Blank(String::from_iter(s)));
    prop_oneof![
        blank,
        any_value().prop_map(|s| Line::Comment(s.replace('\n', " "))),
        Just(Line::Stale),
        any_value().prop_map(Line::Conflict),
        any_value().prop_map(|s| {
            let mut s = s.replace('\n', " ");
            if s.starts_with(['\'', '"']) {
                s.insert(0, 'x');
            }
            if s.ends_with('\r') {
                s.push('x');
            }
            Line::Raw(s)
        }),
        any_value().prop_map(|s| Line::Single(s.replace(['\'', '\n'], "x"))),
        (any_value(), any::<bool>()).prop_map(|(s, real)| Line::Double(s, real)),
    ]
}

fn escape(value: &str) -> String {
    let mut out = SecretBuf::with_capacity(0);
    push_escaped(&mut out, value);
    out.into_inner().to_string()
}

/// A generated file: its text, its entries and its conflict values.
#[derive(Debug, Clone)]
struct Generated {
    text: String,
    entries: Vec<(String, String)>,
    conflicts: Vec<String>,
}

fn any_file() -> impl Strategy<Value = Generated> {
    let lines = prop::collection::vec((any_line(), any::<bool>()), 0..10);
    (lines, any::<bool>()).prop_map(|(lines, final_newline)| {
        let mut g = Generated {
            text: String::new(),
            entries: Vec::new(),
            conflicts: Vec::new(),
        };
        let mut last_ending = "";
        for (i, (line, crlf)) in lines.into_iter().enumerate() {
            let ending = if crlf { "\r\n" } else { "\n" };
            let key = format!("K{i}");
            let (body, value) = match line {
                Line::Blank(s) => (s, None),
                Line::Comment(s) if s.starts_with(" fleetkey:") => (format!("#x{s}"), None),
                Line::Comment(s) => (format!("#{s}"), None),
                Line::Stale => (
                    format!("# fleetkey:stale S{i} since=2024-02-29 reason=r {i}"),
                    None,
                ),
                Line::Conflict(v) => {
                    let body = format!(
                        "# fleetkey:conflict C{i} from=m{i} at=2024-01-01T00:00:00Z value=\"{}\"",
                        escape(&v)
                    );
                    g.conflicts.push(v);
                    (body, None)
                }
                Line::Raw(v) => (format!("{key}={v}"), Some(v)),
                Line::Single(v) => (format!("{key}='{v}'"), Some(v)),
                Line::Double(v, real_newlines) => {
                    let mut body = format!("{key}=\"");
                    let mut previous = None;
                    for c in v.chars() {
                        match c {
                            '\n' if real_newlines && previous != Some('\r') => {
                                body.push_str(ending)
                            }
                            '\n' => body.push_str("\\n"),
                            '"' => body.push_str("\\\""),
                            '\\' => body.push_str("\\\\"),
                            c => body.push(c),
                        }
                        previous = Some(c);
                    }
                    body.push('"');
                    (body, Some(v))
                }
            };
            if let Some(value) = value {
                g.entries.push((key, value));
            }
            g.text.push_str(&body);
            g.text.push_str(ending);
            last_ending = ending;
        }
        if !final_newline {
            g.text.truncate(g.text.len() - last_ending.len());
        }
        g
    })
}

fn reparse(text: &str) -> Result<EnvFile, TestCaseError> {
    parse(text).map_err(|e| TestCaseError::fail(format!("{e}: {text:?}")))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn generated_files_round_trip_byte_for_byte(g in any_file()) {
        let f = reparse(&g.text)?;
        let printed = f.to_text();
        prop_assert_eq!(printed.as_str(), g.text.as_str());
        let entries: Vec<(&str, &str)> = g.entries.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        prop_assert_eq!(f.entries().collect::<Vec<_>>(), entries);
        let conflicts: Vec<String> = f.conflicts().iter().map(|c| c.value.to_string()).collect();
        prop_assert_eq!(conflicts, g.conflicts);
    }

    #[test]
    fn set_then_get_returns_any_value_and_the_file_still_round_trips(
        g in any_file(),
        pick in 0usize..12,
        value in any_value(),
    ) {
        let key = format!("K{pick}");
        let mut f = reparse(&g.text)?;
        let others: Vec<(String, String)> =
            g.entries.iter().filter(|(k, _)| *k != key).cloned().collect();
        let existed = f.contains_key(&key);
        let changed = f.set(&key, &value).unwrap();
        prop_assert_eq!(changed == Changed::Added, !existed);
        prop_assert_eq!(f.get(&key), Some(value.as_str()));

        let printed = f.to_text();
        let back = reparse(&printed)?;
        let reprinted = back.to_text();
        prop_assert_eq!(reprinted.as_str(), printed.as_str());
        prop_assert_eq!(back.get(&key), Some(value.as_str()));
        for (k, v) in &others {
            prop_assert_eq!(back.get(k), Some(v.as_str()));
        }
        prop_assert_eq!(back.conflicts().len(), g.conflicts.len());

        prop_assert!(f.unset(&key));
        prop_assert_eq!(f.get(&key), None);
        prop_assert_eq!(reparse(&f.to_text())?.len(), others.len());
    }

    #[test]
    fn merge3_follows_the_per_key_rules(
        states in prop::collection::vec(
            (0usize..4, 0usize..4, 0usize..4), 1..6),
    ) {
        const VALUES: [Option<&str>; 4] = [None, Some("1"), Some("2"), Some("x y")];
        let (mut base, mut ours, mut theirs) = (EnvFile::new(), EnvFile::new(), EnvFile::new());
        for (i, &(b, o, t)) in states.iter().enumerate() {
            let key = format!("K{i}");
            for (file, state) in [(&mut base, b), (&mut ours, o), (&mut theirs, t)] {
                if let Some(value) = VALUES[state] {
                    file.set(&key, value).unwrap();
                }
            }
        }
        let m = merge3(&base, &ours, &theirs, "laptop", "t", &|_| Origins::default());
        let printed = m.to_text();
        let back = reparse(&printed)?;
        let reprinted = back.to_text();
        prop_assert_eq!(reprinted.as_str(), printed.as_str());
        let mut expected_conflicts = Vec::new();
        for (i, &(b, o, t)) in states.iter().enumerate() {
            let key = format!("K{i}");
            let (b, o, t) = (VALUES[b], VALUES[o], VALUES[t]);
            let expected = if o == b || o == t {
                t
            } else if t == b || t.is_none() {
                o
            } else {
                if let Some(o) = o {
                    expected_conflicts.push((key.clone(), o.to_owned()));
                }
                t
            };
            prop_assert_eq!(back.get(&key), expected, "key {} b={:?} o={:?} t={:?}", key, b, o, t);
        }
        let conflicts: Vec<(String, String)> =
            back.conflicts().iter().map(|c| (c.key.clone(), c.value.to_string())).collect();
        prop_assert_eq!(conflicts, expected_conflicts);
    }
}

proptest! {
    #![proptest_config(config(16))]

    #[test]
    fn export_env_read_back_by_sh_gives_the_exact_values(
        values in prop::collection::vec(any_value(), 1..6),
    ) {
        let values: Vec<String> = values.into_iter().map(|v| v.replace('\0', "0")).collect();
        prop_assert_eq!(read_back_with_sh(&values), values);
    }
}

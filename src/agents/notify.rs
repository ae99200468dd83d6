//! A desktop notification when a cycle makes a conflict copy, so a conflict in the background
//! is seen without reading logs: `osascript` on macOS, `notify-send` on Linux when it is
//! installed. Off with `notify = false` in config.toml.
//!
//! Must never: block or fail the cycle (the program is started through the agents'
//! [`Runner::spawn`] and not waited for; a failure is a debug line), or name a secret (it names
//! paths only).

use std::path::Path;

use crate::sync::state::ConflictRecord;

use super::{Platform, Runner};

/// The program and arguments that show `title` and `body` on `platform`; `None` on Linux when
/// `notify-send` is not on `path_var`.
pub fn command(
    platform: Platform,
    title: &str,
    body: &str,
    path_var: Option<&std::ffi::OsStr>,
) -> Option<(&'static str, Vec<String>)> {
    match platform {
        Platform::Macos => {
            let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
            Some((
                "osascript",
                vec![
                    "-e".into(),
                    format!(
                        "display notification {} with title {}",
                        quote(body),
                        quote(title)
                    ),
                ],
            ))
        }
        Platform::Linux => {
            let found = path_var
                .is_some_and(|p| std::env::split_paths(p).any(|d| d.join("notify-send").is_file()));
            found.then(|| {
                (
                    "notify-send",
                    vec![
                        "--app-name=fleetkey".into(),
                        "--".into(),
                        title.to_string(),
                        body.to_string(),
                    ],
                )
            })
        }
    }
}

/// The notification's title and body for the conflict copies `records` made.
pub fn text(records: &[ConflictRecord], home: &Path) -> (String, String) {
    let shown = |p: &Path| match p.strip_prefix(home) {
        Ok(rel) => format!("~/{}", rel.display()),
        Err(_) => p.display().to_string(),
    };
    let title = match records.len() {
        1 => "fleetkey: a conflict copy was made".to_string(),
        n => format!("fleetkey: {n} conflict copies were made"),
    };
    let mut body = String::new();
    for (n, r) in records.iter().enumerate() {
        if n == 3 {
            body.push_str(&format!(
                "… and {} more (fleetkey status)",
                records.len() - 3
            ));
            break;
        }
        if n > 0 {
            body.push('\n');
        }
        body.push_str(&format!(
            "{} took the fleet's version; this machine's is in {}",
            shown(&r.path),
            shown(&r.copy)
        ));
    }
    (title, body)
}

/// Raises the notification for `records` (nothing when empty), through `runner`.
pub fn conflict_copies(
    runner: &dyn Runner,
    platform: Platform,
    records: &[ConflictRecord],
    home: &Path,
) {
    if records.is_empty() {
        return;
    }
    let (title, body) = text(records, home);
    let path_var = std::env::var_os("PATH");
    let Some((program, args)) = command(platform, &title, &body, path_var.as_deref()) else {
        crate::log::debug("no notify-send: no desktop notification for the conflict copies");
        return;
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = runner.spawn(program, &args) {
        crate::log::debug(&format!("cannot raise a desktop notification: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::state::ConflictReason;
    use std::path::PathBuf;

    fn record(rel: &str) -> ConflictRecord {
        ConflictRecord {
            path: PathBuf::from(format!("/h/{rel}")),
            copy: PathBuf::from(format!("/h/{rel}.conflict-a-1")),
            machine: "a".into(),
            at: "2026-11-28T11:00:00Z".into(),
            reason: ConflictReason::BothChanged,
        }
    }

    #[test]
    fn the_notification_names_the_files_and_quotes_for_applescript() {
        let (title, body) = text(&[record(".zshrc")], Path::new("/h"));
        assert_eq!(title, "fleetkey: a conflict copy was made");
        assert_eq!(
            body,
            "~/.zshrc took the fleet's version; this machine's is in ~/.zshrc.conflict-a-1"
        );
        let (program, args) = command(Platform::Macos, "t \"x\"", "b\\y", None).unwrap();
        assert_eq!(program, "osascript");
        assert_eq!(
            args,
            [
                "-e",
                "display notification \"b\\\\y\" with title \"t \\\"x\\\"\""
            ]
        );
        let many: Vec<_> = (0..5).map(|n| record(&format!("f{n}"))).collect();
        let (title, body) = text(&many, Path::new("/h"));
        assert_eq!(title, "fleetkey: 5 conflict copies were made");
        assert!(body.ends_with("… and 2 more (fleetkey status)"), "{body}");
    }

    #[test]
    fn linux_uses_notify_send_only_when_it_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::ffi::OsString::from(dir.path().as_os_str());
        assert_eq!(command(Platform::Linux, "t", "b", Some(&path)), None);
        std::fs::write(dir.path().join("notify-send"), b"").unwrap();
        let (program, args) = command(Platform::Linux, "t", "b", Some(&path)).unwrap();
        assert_eq!(program, "notify-send");
        assert_eq!(args, ["--app-name=fleetkey", "--", "t", "b"]);
    }
}

//! Rendering, escaping and install-if-changed on both platforms, with the commands recorded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::launchd::xml_escape;
use super::render::fill;
use super::runner::{RecordingRunner, SystemRunner};
use super::systemd::{Context, quote};
use super::*;

/// A HOME with the characters that break naive rendering.
const HOME_NAME: &str = "home with spaces & <ampersands> 100% $HOME \"q\"";

struct World {
    _dir: tempfile::TempDir,
    paths: Paths,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join(HOME_NAME);
        std::fs::create_dir(&home).unwrap();
        let paths = Paths {
            config_dir: home.join(".config/fleetkey"),
            data_dir: home.join(".local/share/fleetkey"),
            state_dir: home.join(".local/state/fleetkey"),
            home,
        };
        World { _dir: dir, paths }
    }

    fn input(&self, poll: u64) -> RenderInput {
        RenderInput {
            exe: PathBuf::from("/opt/fleet key/bin/fleetkey"),
            home: self.paths.home.clone(),
            poll: Duration::from_secs(poll),
            xdg: Vec::new(),
        }
    }

    fn setup<'a>(&'a self, platform: Platform, poll: u64, runner: &'a dyn Runner) -> Setup<'a> {
        Setup {
            platform,
            paths: &self.paths,
            input: self.input(poll),
            runner,
            uid: 501,
            running_as: None,
        }
    }
}

#[test]
fn xml_escaping_covers_the_five_entities_and_refuses_control_characters() {
    assert_eq!(
        xml_escape(r#"a&b<c>"d'e"#).unwrap(),
        "a&amp;b&lt;c&gt;&quot;d&apos;e"
    );
    assert_eq!(xml_escape("/Users/x y/ü").unwrap(), "/Users/x y/ü");
    assert!(xml_escape("bell\u{7}").is_err());
    assert!(xml_escape("nul\0").is_err());
}

#[test]
fn systemd_quoting_escapes_specifiers_dollars_quotes_and_backslashes() {
    assert_eq!(
        quote(r#"/a b/100%/$x/"q"\z"#, Context::Argument).unwrap(),
        r#""/a b/100%%/$$x/\"q\"\\z""#
    );
    // systemd expands no variables in the executable's path.
    assert_eq!(
        quote("/a b/100%/$x", Context::Executable).unwrap(),
        r#""/a b/100%%/$x""#
    );
    // Environment= expands no variables: a doubled `$` would stay doubled.
    assert_eq!(
        quote("HOME=/h $x 5%", Context::Environment).unwrap(),
        r#""HOME=/h $x 5%%""#
    );
    assert!(quote("a\nb", Context::Executable).is_err());
}

#[test]
fn placeholders_are_filled_and_unknown_ones_refused() {
    assert_eq!(fill("a {{X}} b {{X}}", &[("X", "1")]).unwrap(), "a 1 b 1");
    assert!(fill("a {{Y}}", &[("X", "1")]).is_err());
    assert!(fill("a {{X", &[("X", "1")]).is_err());
}

fn plist_dict(bytes: &[u8]) -> plist::Dictionary {
    plist::Value::from_reader_xml(bytes)
        .expect("the rendered agent parses as a property list")
        .into_dictionary()
        .expect("a dictionary at the top")
}

fn string<'a>(dict: &'a plist::Dictionary, key: &str) -> &'a str {
    dict.get(key)
        .and_then(plist::Value::as_string)
        .unwrap_or_else(|| panic!("{key} is a string"))
}

#[test]
fn launchd_plists_parse_and_hold_absolute_escaped_paths() {
    let w = World::new();
    let files = render(Platform::Macos, &w.input(90)).unwrap();
    assert_eq!(
        files.iter().map(|f| f.name).collect::<Vec<_>>(),
        ["dev.fleetkey.watch.plist", "dev.fleetkey.pull.plist"]
    );
    let home = w.paths.home.to_str().unwrap();
    let logs = format!("{home}/Library/Logs/fleetkey");
    for f in &files {
        let text = String::from_utf8(f.bytes.clone()).unwrap();
        assert!(text.contains("&amp; &lt;ampersands&gt;"), "{text}");
        let d = plist_dict(&f.bytes);
        assert_eq!(string(&d, "Label"), format!("dev.fleetkey.{}", f.agent));
        let argv: Vec<&str> = d["ProgramArguments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_string().unwrap())
            .collect();
        assert_eq!(argv, ["/opt/fleet key/bin/fleetkey", f.agent.name()]);
        assert_eq!(string(&d, "WorkingDirectory"), home);
        let log = format!("{logs}/{}.log", f.agent);
        assert_eq!(string(&d, "StandardOutPath"), log);
        assert_eq!(string(&d, "StandardErrorPath"), log);
        assert!(Path::new(string(&d, "StandardOutPath")).is_absolute());
        assert_eq!(string(&d, "ProcessType"), "Background");
        assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
        let env = d["EnvironmentVariables"].as_dictionary().unwrap();
        let path = string(env, "PATH");
        assert!(
            path.starts_with("/opt/homebrew/bin:/usr/local/bin:"),
            "{path}"
        );
        assert!(path.contains(":/opt/fleet key/bin"), "{path}");
        assert_eq!(string(env, "HOME"), home);
        assert_eq!(string(env, AGENT_ENV), f.agent.name());
        match f.agent {
            Agent::Watch => {
                assert_eq!(d["KeepAlive"].as_boolean(), Some(true));
                assert_eq!(d["ThrottleInterval"].as_signed_integer(), Some(10));
            }
            Agent::Pull => {
                assert_eq!(d["StartInterval"].as_signed_integer(), Some(90));
                assert!(!d.contains_key("KeepAlive"));
            }
        }
    }
}

#[test]
fn systemd_units_quote_the_binary_and_take_the_interval_from_poll() {
    let w = World::new();
    let mut input = w.input(300);
    input
        .xdg
        .push(("XDG_CONFIG_HOME".into(), w.paths.home.join("cfg 100%")));
    let files = render(Platform::Linux, &input).unwrap();
    let names: Vec<_> = files.iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        [
            "fleetkey-watch.service",
            "fleetkey-pull.service",
            "fleetkey-pull.timer"
        ]
    );
    let text = |i: usize| String::from_utf8(files[i].bytes.clone()).unwrap();
    let watch = text(0);
    assert!(
        watch.contains("\nExecStart=\"/opt/fleet key/bin/fleetkey\" watch\n"),
        "{watch}"
    );
    assert!(watch.contains("\nRestart=on-failure\n"), "{watch}");
    assert!(
        watch.contains("\nEnvironment=\"FLEETKEY_AGENT=watch\"\n"),
        "{watch}"
    );
    assert!(
        watch.contains(r#"Environment="HOME=/"#) && watch.contains(r#"100%% $HOME \"q\"""#),
        "{watch}"
    );
    assert!(watch.contains(r#"/cfg 100%%""#), "{watch}");
    let pull = text(1);
    assert!(pull.contains("\nType=oneshot\n"), "{pull}");
    assert!(pull.contains("\" pull\n"), "{pull}");
    let timer = text(2);
    assert!(timer.contains("\nOnUnitActiveSec=300s\n"), "{timer}");
    assert!(timer.contains("\nOnBootSec="), "{timer}");
    assert!(timer.contains("\nAccuracySec=30s\n"), "{timer}");
}

#[test]
fn a_path_that_is_not_utf8_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let w = World::new();
    let mut input = w.input(60);
    input.home = PathBuf::from(std::ffi::OsStr::from_bytes(b"/home/\xff"));
    for platform in [Platform::Macos, Platform::Linux] {
        let err = render(platform, &input).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}

#[test]
fn sub_second_polls_round_up_to_one_second() {
    let w = World::new();
    let mut input = w.input(0);
    input.poll = Duration::from_millis(1500);
    assert_eq!(input.poll_secs(), 2);
    input.poll = Duration::ZERO;
    assert_eq!(input.poll_secs(), 1);
}

#[test]
fn macos_install_reloads_only_what_changed() {
    let w = World::new();
    let rec = RecordingRunner::new();
    let report = install(&w.setup(Platform::Macos, 60, &rec), Scope::All, false).unwrap();
    let dir = w.paths.home.join("Library/LaunchAgents");
    assert_eq!(
        report.written,
        [
            dir.join("dev.fleetkey.watch.plist"),
            dir.join("dev.fleetkey.pull.plist")
        ]
    );
    assert_eq!(report.reloaded, [Agent::Watch, Agent::Pull]);
    let plist = |a: &str| {
        format!(
            "'{}'",
            dir.join(format!("dev.fleetkey.{a}.plist")).display()
        )
    };
    assert_eq!(
        rec.commands(),
        [
            "launchctl bootout gui/501/dev.fleetkey.watch".to_string(),
            "launchctl print gui/501/dev.fleetkey.watch".to_string(),
            format!("launchctl bootstrap gui/501 {}", plist("watch")),
            "launchctl bootout gui/501/dev.fleetkey.pull".to_string(),
            "launchctl print gui/501/dev.fleetkey.pull".to_string(),
            format!("launchctl bootstrap gui/501 {}", plist("pull")),
        ]
    );
    assert_eq!(report.commands, rec.commands());
    assert!(w.paths.home.join("Library/Logs/fleetkey").is_dir());

    rec.clear();
    let again = install(&w.setup(Platform::Macos, 60, &rec), Scope::All, false).unwrap();
    assert!(!again.changed(), "{again:?}");
    assert!(rec.commands().is_empty(), "{:?}", rec.commands());

    let changed = install(&w.setup(Platform::Macos, 120, &rec), Scope::All, false).unwrap();
    assert_eq!(changed.written, [dir.join("dev.fleetkey.pull.plist")]);
    assert_eq!(changed.reloaded, [Agent::Pull]);
    assert_eq!(
        rec.commands(),
        [
            "launchctl bootout gui/501/dev.fleetkey.pull".to_string(),
            "launchctl print gui/501/dev.fleetkey.pull".to_string(),
            format!("launchctl bootstrap gui/501 {}", plist("pull")),
        ]
    );
}

#[test]
fn linux_install_reloads_only_what_changed() {
    let w = World::new();
    let rec = RecordingRunner::new();
    let report = install(&w.setup(Platform::Linux, 60, &rec), Scope::All, false).unwrap();
    let dir = w.paths.home.join(".config/systemd/user");
    assert_eq!(report.written.len(), 3);
    assert!(report.written.iter().all(|p| p.parent() == Some(&dir)));
    assert_eq!(
        rec.commands(),
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable --now fleetkey-watch.service",
            "systemctl --user enable --now fleetkey-pull.timer",
        ]
    );
    rec.clear();
    let again = install(&w.setup(Platform::Linux, 60, &rec), Scope::All, false).unwrap();
    assert!(!again.changed());
    assert!(rec.commands().is_empty(), "{:?}", rec.commands());

    let changed = install(&w.setup(Platform::Linux, 30, &rec), Scope::All, false).unwrap();
    assert_eq!(changed.written, [dir.join("fleetkey-pull.timer")]);
    assert_eq!(changed.reloaded, [Agent::Pull]);
    assert_eq!(
        rec.commands(),
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable fleetkey-pull.timer",
            "systemctl --user restart fleetkey-pull.timer",
        ]
    );
}

#[test]
fn an_edited_file_is_rewritten_and_only_its_agent_reloaded() {
    let w = World::new();
    let rec = RecordingRunner::new();
    install(&w.setup(Platform::Linux, 60, &rec), Scope::All, false).unwrap();
    let unit = w
        .paths
        .home
        .join(".config/systemd/user/fleetkey-watch.service");
    std::fs::write(&unit, "[Service]\nExecStart=/bin/false\n").unwrap();
    rec.clear();
    let report = install(&w.setup(Platform::Linux, 60, &rec), Scope::All, false).unwrap();
    assert_eq!(report.written, [unit]);
    assert_eq!(
        rec.commands(),
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable fleetkey-watch.service",
            "systemctl --user restart fleetkey-watch.service",
        ]
    );
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.push((p.clone(), Vec::new()));
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn dry_run_writes_nothing_and_runs_nothing() {
    for platform in [Platform::Macos, Platform::Linux] {
        let w = World::new();
        let rec = RecordingRunner::new();
        let before = snapshot(&w.paths.home);
        let report = install(&w.setup(platform, 60, &rec), Scope::All, true).unwrap();
        assert!(report.dry_run);
        let files = match platform {
            Platform::Macos => 2,
            Platform::Linux => 3,
        };
        assert_eq!(report.written.len(), files);
        assert_eq!(report.reloaded, [Agent::Watch, Agent::Pull]);
        assert!(!report.commands.is_empty());
        assert!(rec.commands().is_empty(), "{:?}", rec.commands());
        assert_eq!(snapshot(&w.paths.home), before, "{platform:?}");

        install(&w.setup(platform, 60, &rec), Scope::All, false).unwrap();
        rec.clear();
        let before = snapshot(&w.paths.home);
        let report = install(&w.setup(platform, 45, &rec), Scope::All, true).unwrap();
        assert_eq!(report.reloaded, [Agent::Pull]);
        assert!(rec.commands().is_empty());
        assert_eq!(snapshot(&w.paths.home), before);
    }
}

#[test]
fn a_failed_reload_is_retried_by_the_next_install() {
    let w = World::new();
    let failing = RecordingRunner::new().failing("launchctl bootstrap gui/501 ");
    let err = install(&w.setup(Platform::Macos, 60, &failing), Scope::All, false).unwrap_err();
    assert!(err.to_string().contains("launchctl bootstrap"), "{err}");
    assert!(w.paths.state_dir.join("agents.pending").is_file());

    // The files are in place now, but both agents still need their reload.
    let rec = RecordingRunner::new();
    let report = install(&w.setup(Platform::Macos, 60, &rec), Scope::All, false).unwrap();
    assert!(report.written.is_empty());
    assert_eq!(report.reloaded, [Agent::Watch, Agent::Pull]);
    assert!(!w.paths.state_dir.join("agents.pending").exists());
    rec.clear();
    install(&w.setup(Platform::Macos, 60, &rec), Scope::All, false).unwrap();
    assert!(rec.commands().is_empty());
}

#[test]
fn install_if_changed_leaves_agents_the_user_did_not_install_alone() {
    let w = World::new();
    let rec = RecordingRunner::new();
    let report = install(&w.setup(Platform::Linux, 60, &rec), Scope::Installed, false).unwrap();
    assert!(!report.changed(), "{report:?}");
    assert!(rec.commands().is_empty());
    assert!(!w.paths.home.join(".config/systemd").exists());

    // With only the puller installed, a new poll reloads the puller and installs no watcher.
    install(&w.setup(Platform::Linux, 60, &rec), Scope::All, false).unwrap();
    std::fs::remove_file(
        w.paths
            .home
            .join(".config/systemd/user/fleetkey-watch.service"),
    )
    .unwrap();
    rec.clear();
    let report = install(&w.setup(Platform::Linux, 20, &rec), Scope::Installed, false).unwrap();
    assert_eq!(report.reloaded, [Agent::Pull]);
    assert_eq!(report.written.len(), 1);
    assert!(
        !w.paths
            .home
            .join(".config/systemd/user/fleetkey-watch.service")
            .exists()
    );
}

#[test]
fn a_launchd_agent_does_not_boot_itself_out() {
    let w = World::new();
    let rec = RecordingRunner::new();
    install(&w.setup(Platform::Macos, 60, &rec), Scope::All, false).unwrap();
    rec.clear();
    let mut setup = w.setup(Platform::Macos, 30, &rec);
    setup.running_as = Some(Agent::Pull);
    let report = install(&setup, Scope::Installed, false).unwrap();
    assert_eq!(report.deferred, [Agent::Pull]);
    assert!(report.reloaded.is_empty());
    assert!(rec.commands().is_empty(), "{:?}", rec.commands());
    // The watcher's next call reloads the puller.
    let mut setup = w.setup(Platform::Macos, 30, &rec);
    setup.running_as = Some(Agent::Watch);
    let report = install(&setup, Scope::Installed, false).unwrap();
    assert!(report.written.is_empty());
    assert_eq!(report.reloaded, [Agent::Pull]);
}

#[test]
fn uninstall_stops_the_agents_and_removes_their_files() {
    for platform in [Platform::Macos, Platform::Linux] {
        let w = World::new();
        let rec = RecordingRunner::new();
        let installed = install(&w.setup(platform, 60, &rec), Scope::All, false).unwrap();
        rec.clear();
        let report = uninstall(&w.setup(platform, 60, &rec), false).unwrap();
        assert_eq!(report.removed, installed.written);
        assert!(installed.written.iter().all(|p| !p.exists()));
        let expected: Vec<String> = match platform {
            Platform::Macos => vec![
                "launchctl bootout gui/501/dev.fleetkey.watch".into(),
                "launchctl print gui/501/dev.fleetkey.watch".into(),
                "launchctl bootout gui/501/dev.fleetkey.pull".into(),
                "launchctl print gui/501/dev.fleetkey.pull".into(),
            ],
            Platform::Linux => vec![
                "systemctl --user disable --now fleetkey-watch.service".into(),
                "systemctl --user disable --now fleetkey-pull.timer".into(),
                "systemctl --user daemon-reload".into(),
            ],
        };
        assert_eq!(rec.commands(), expected);
    }
}

#[test]
fn status_reports_installed_up_to_date_and_loaded() {
    let w = World::new();
    let rec = RecordingRunner::new();
    let st = status(&w.setup(Platform::Linux, 60, &rec)).unwrap();
    assert!(st.iter().all(|s| !s.installed && !s.up_to_date));
    install(&w.setup(Platform::Linux, 60, &rec), Scope::All, false).unwrap();
    rec.clear();
    let st = status(&w.setup(Platform::Linux, 60, &rec)).unwrap();
    assert!(st.iter().all(|s| s.installed && s.up_to_date), "{st:?}");
    assert!(
        st.iter()
            .all(|s| s.loaded == Some(false) && s.enabled == Some(false))
    );
    assert_eq!(
        rec.commands(),
        [
            "systemctl --user is-active fleetkey-watch.service",
            "systemctl --user is-enabled fleetkey-watch.service",
            "systemctl --user is-active fleetkey-pull.timer",
            "systemctl --user is-enabled fleetkey-pull.timer",
        ]
    );
    // A manager that cannot be reached gives no state at all: unknown, not "no".
    struct Unreachable;
    impl Runner for Unreachable {
        fn run(&self, _: &str, _: &[&str]) -> Result<RunOutput> {
            Ok(RunOutput {
                success: false,
                stdout: String::new(),
                stderr: "Failed to connect to bus".into(),
            })
        }
    }
    let st = status(&w.setup(Platform::Linux, 60, &Unreachable)).unwrap();
    assert!(st.iter().all(|s| s.loaded.is_none() && s.enabled.is_none()));
    let st = status(&w.setup(Platform::Linux, 61, &rec)).unwrap();
    assert!(st[0].up_to_date && !st[1].up_to_date, "{st:?}");

    let st = status(&w.setup(Platform::Macos, 60, &rec)).unwrap();
    assert!(st.iter().all(|s| !s.installed && s.loaded == Some(false)));
}

#[test]
fn a_reload_waits_until_launchd_has_let_go_of_the_job() {
    /// launchd that still lists the job for two more `print`s after the bootout.
    struct Slow {
        prints_left: std::cell::Cell<u32>,
        log: RecordingRunner,
    }
    impl Runner for Slow {
        fn run(&self, program: &str, args: &[&str]) -> Result<RunOutput> {
            let out = self.log.run(program, args)?;
            if args.first() == Some(&"print") && self.prints_left.get() > 0 {
                self.prints_left.set(self.prints_left.get() - 1);
                return Ok(RunOutput {
                    success: true,
                    ..RunOutput::default()
                });
            }
            Ok(out)
        }
    }
    let w = World::new();
    let slow = Slow {
        prints_left: std::cell::Cell::new(2),
        log: RecordingRunner::new(),
    };
    install(&w.setup(Platform::Macos, 60, &slow), Scope::All, false).unwrap();
    let commands = slow.log.commands();
    let bootstrap = commands
        .iter()
        .position(|c| c.starts_with("launchctl bootstrap"))
        .unwrap();
    assert_eq!(
        commands[..bootstrap],
        [
            "launchctl bootout gui/501/dev.fleetkey.watch",
            "launchctl print gui/501/dev.fleetkey.watch",
            "launchctl print gui/501/dev.fleetkey.watch",
            "launchctl print gui/501/dev.fleetkey.watch",
        ]
    );
}

#[test]
fn the_system_runner_passes_on_only_what_the_service_managers_need() {
    let out = SystemRunner.run("env", &[]).unwrap();
    assert!(out.success, "{}", out.stderr);
    for line in out.stdout.lines() {
        let name = line.split('=').next().unwrap();
        assert!(
            [
                "HOME",
                "PATH",
                "USER",
                "LOGNAME",
                "TMPDIR",
                "XDG_RUNTIME_DIR",
                "DBUS_SESSION_BUS_ADDRESS",
                "LC_ALL",
                "SYSTEMD_PAGER",
            ]
            .contains(&name),
            "{name} reached a platform command"
        );
    }
    assert!(out.stdout.contains("LC_ALL=C\n"), "{}", out.stdout);
    let err = SystemRunner.run("/nonexistent/launchctl", &[]).unwrap_err();
    assert!(err.to_string().contains("cannot run"), "{err}");
}

#[test]
fn the_binary_an_installed_file_runs_is_read_back_on_both_platforms() {
    let w = World::new();
    for exe in [
        "/opt/fleet key/bin/fleetkey",
        "/o/100% $x \"q\" & <b>/fleetkey",
    ] {
        let mut input = w.input(60);
        input.exe = PathBuf::from(exe);
        for platform in [Platform::Macos, Platform::Linux] {
            let files = render(platform, &input).unwrap();
            let runs: Vec<PathBuf> = files
                .iter()
                .filter_map(|f| render::recorded_exe(platform, &String::from_utf8_lossy(&f.bytes)))
                .collect();
            assert!(!runs.is_empty(), "{platform:?}");
            assert!(
                runs.iter().all(|r| r == Path::new(exe)),
                "{platform:?}: {runs:?}"
            );
        }
    }
}

#[test]
fn the_stable_path_the_user_ran_is_recorded_when_it_leads_to_the_same_binary() {
    let dir = tempfile::tempdir().unwrap();
    let cellar = dir.path().join("Cellar/fleetkey/1.0/bin");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&cellar).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let real = cellar.join("fleetkey");
    std::fs::write(&real, b"binary").unwrap();
    std::os::unix::fs::symlink(&real, bin.join("fleetkey")).unwrap();
    std::fs::write(bin.join("other"), b"another").unwrap();
    let canonical = std::fs::canonicalize(&real).unwrap();
    let path_var = std::ffi::OsString::from(bin.as_os_str());
    let stable = |argv0: &str| {
        render::stable_exe(
            Some(std::ffi::OsStr::new(argv0)),
            Some(&path_var),
            Some(dir.path()),
            &canonical,
        )
    };
    // Found on PATH, by absolute path, or relative to the working directory.
    assert_eq!(stable("fleetkey"), bin.join("fleetkey"));
    assert_eq!(
        stable(bin.join("fleetkey").to_str().unwrap()),
        bin.join("fleetkey")
    );
    assert_eq!(stable("bin/fleetkey"), dir.path().join("bin/fleetkey"));
    // A path that leads elsewhere, or nowhere: the canonical path.
    assert_eq!(stable("other"), canonical);
    assert_eq!(stable("missing"), canonical);
}

#[test]
fn a_macos_agent_rotates_the_file_its_plist_logs_to() {
    let w = World::new();
    let files = render(Platform::Macos, &w.input(60)).unwrap();
    for agent in Agent::ALL {
        let log = agent_log_file(Platform::Macos, &w.paths, agent);
        let plist = files
            .iter()
            .find(|f| f.agent == agent && f.name.ends_with(".plist"))
            .unwrap();
        let text = String::from_utf8_lossy(&plist.bytes);
        let escaped = xml_escape(&log.to_string_lossy()).unwrap();
        assert!(
            text.contains(&format!(
                "<key>StandardErrorPath</key>\n\t<string>{escaped}</string>"
            )),
            "{text}"
        );
    }
}

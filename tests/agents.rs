//! `agents`, `completions` and `man` through the real binary: the rendered units pass systemd's
//! own verifier, the rendered plists parse as property lists, and install reloads exactly the
//! agents whose files changed, on both platforms, with the launchctl/systemctl commands
//! recorded through the debug-build test hook `FLEETKEY_AGENTS_RUNNER=record:FILE`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Machine, assert_success, require, snapshot};

/// A directory name that breaks naive quoting in XML and in unit files: spaces, `&`, `<`, a
/// systemd specifier (`%h`) and a variable reference (`$x`).
const AWKWARD: &str = "dir with spaces & <amp> 100%h $x";

/// A machine whose HOME has an awkward name.
fn awkward_home(m: &Machine) -> PathBuf {
    let home = m.dir.path().join(AWKWARD).join("home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// A copy of the fleetkey binary under an awkward directory name (the agents run the
/// canonical path of the binary that rendered them).
fn awkward_binary(m: &Machine) -> PathBuf {
    let dir = m.dir.path().join(format!("bin {AWKWARD}"));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("fleetkey");
    std::fs::copy(crate::util::bin(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

/// Runs `cmd` and asserts success. A binary copied a moment ago can be "text file busy"
/// (ETXTBSY) while another test thread's fork still holds the copy's write descriptor; that
/// passes within moments, so it is retried.
fn run_ok(cmd: &mut Command) -> String {
    let mut tries = 0;
    let out = loop {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other.unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}")),
        }
    };
    assert_success(&out, &[&format!("{cmd:?}")]);
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `systemd-analyze verify --user` on `units`; returns (success, stderr).
fn systemd_verify(home: &Path, runtime: &Path, units: &[PathBuf]) -> (bool, String) {
    let analyze = require("systemd-analyze", "systemd");
    std::fs::create_dir_all(runtime).unwrap();
    std::fs::set_permissions(runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new(analyze)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin")
        .env("XDG_RUNTIME_DIR", runtime)
        .env("SYSTEMD_LOG_COLOR", "0")
        .args(["verify", "--user"])
        .args(units)
        .current_dir(runtime)
        .output()
        .expect("run systemd-analyze");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn agents_systemd_units_pass_systemd_analyze_verify_with_awkward_paths() {
    let m = Machine::new();
    let home = awkward_home(&m);
    let exe = awkward_binary(&m);
    let units_dir = m.dir.path().join("units");
    run_ok(
        Command::new(&exe)
            .env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/bin:/bin")
            .args(["agents", "print", "--platform", "linux", "--out"])
            .arg(&units_dir),
    );
    let units: Vec<PathBuf> = [
        "fleetkey-watch.service",
        "fleetkey-pull.service",
        "fleetkey-pull.timer",
    ]
    .iter()
    .map(|n| units_dir.join(n))
    .collect();
    let watch = std::fs::read_to_string(&units[0]).unwrap();
    assert!(watch.contains("100%%h $x/fleetkey\" watch\n"), "{watch}");
    let runtime = m.dir.path().join("run");
    let (ok, stderr) = systemd_verify(&home, &runtime, &units);
    assert!(ok && stderr.trim().is_empty(), "verify failed:\n{stderr}");

    // The check has teeth: the same unit without the escaping names a binary that is not there.
    let bad_dir = m.dir.path().join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    let bad = bad_dir.join("fleetkey-watch.service");
    std::fs::write(&bad, watch.replace("%%h", "%h")).unwrap();
    let (ok, stderr) = systemd_verify(&home, &runtime, &[bad]);
    assert!(!ok, "an unescaped ExecStart passed verify:\n{stderr}");
    assert!(stderr.contains("not executable"), "{stderr}");
}

/// Splits `agents print` output into (header path, body) pairs.
fn split_printed(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        match line.strip_prefix("# /") {
            Some(path) => out.push((format!("/{}", path.trim_end()), String::new())),
            _ => out.last_mut().expect("a header first").1.push_str(line),
        }
    }
    out
}

#[test]
fn agents_launchd_plists_parse_with_absolute_paths_under_an_awkward_home() {
    let m = Machine::new();
    let home = awkward_home(&m);
    let exe = awkward_binary(&m);
    let text = run_ok(
        Command::new(&exe)
            .env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/bin:/bin")
            .args(["agents", "print", "--platform", "macos"]),
    );
    let files = split_printed(&text);
    let agents_dir = home.join("Library/LaunchAgents");
    assert_eq!(
        files
            .iter()
            .map(|(p, _)| PathBuf::from(p))
            .collect::<Vec<_>>(),
        [
            agents_dir.join("dev.fleetkey.watch.plist"),
            agents_dir.join("dev.fleetkey.pull.plist")
        ],
        "{text}"
    );
    for ((_, body), agent) in files.iter().zip(["watch", "pull"]) {
        let dict = plist::Value::from_reader_xml(body.as_bytes())
            .unwrap_or_else(|e| panic!("{agent}: not a property list: {e}\n{body}"))
            .into_dictionary()
            .unwrap();
        let s = |k: &str| dict[k].as_string().unwrap().to_string();
        assert_eq!(s("Label"), format!("dev.fleetkey.{agent}"));
        let argv: Vec<String> = dict["ProgramArguments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_string().unwrap().to_string())
            .collect();
        assert_eq!(argv, [exe.to_str().unwrap(), agent]);
        let log = home.join(format!("Library/Logs/fleetkey/{agent}.log"));
        assert_eq!(s("StandardOutPath"), log.to_str().unwrap());
        assert_eq!(s("StandardErrorPath"), log.to_str().unwrap());
        for key in ["StandardOutPath", "WorkingDirectory"] {
            assert!(Path::new(&s(key)).is_absolute(), "{key}");
        }
        assert_eq!(s("ProcessType"), "Background");
        assert_eq!(dict["RunAtLoad"].as_boolean(), Some(true));
        let env = dict["EnvironmentVariables"].as_dictionary().unwrap();
        assert_eq!(env["HOME"].as_string(), home.to_str());
        assert!(
            env["PATH"]
                .as_string()
                .unwrap()
                .contains("/opt/homebrew/bin")
        );
        match agent {
            "watch" => {
                assert_eq!(dict["KeepAlive"].as_boolean(), Some(true));
                assert!(dict["ThrottleInterval"].as_signed_integer().unwrap() > 0);
            }
            // The default poll.
            _ => assert_eq!(dict["StartInterval"].as_signed_integer(), Some(15)),
        }
    }
}

/// A machine in a fleet, with the platform forced and the platform commands recorded.
struct Recorded {
    m: Machine,
    log: PathBuf,
    platform: &'static str,
}

impl Recorded {
    fn new(platform: &'static str) -> Recorded {
        let m = Machine::new();
        m.ok(&["init", "--name", "alpha"]);
        let log = m.dir.path().join("commands.log");
        Recorded { m, log, platform }
    }

    /// Runs `fleetkey ARGS` with the platform forced and the platform commands recorded;
    /// returns stdout and the commands it ran.
    fn run(&self, args: &[&str]) -> (String, Vec<String>) {
        let _ = std::fs::remove_file(&self.log);
        let out = self
            .m
            .cmd(args)
            .env("FLEETKEY_AGENTS_PLATFORM", self.platform)
            .env(
                "FLEETKEY_AGENTS_RUNNER",
                format!("record:{}", self.log.display()),
            )
            .output()
            .unwrap();
        assert_success(&out, args);
        let commands = std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        (String::from_utf8(out.stdout).unwrap(), commands)
    }

    /// Runs `fleetkey agents ARGS`; returns stdout and the commands it ran.
    fn agents(&self, args: &[&str]) -> (String, Vec<String>) {
        let mut all = vec!["agents"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Runs `fleetkey sync`; returns the platform commands it ran.
    fn sync(&self) -> Vec<String> {
        self.run(&["sync"]).1
    }

    fn set_poll(&self, poll: &str) {
        let path = self.m.repo().join("fleet.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let new: String = text
            .lines()
            .map(|l| {
                if l.starts_with("poll =") {
                    format!("poll = \"{poll}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert_ne!(new, text, "fleet.toml has a poll line:\n{text}");
        std::fs::write(&path, new).unwrap();
    }
}

fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

#[test]
fn agents_install_on_macos_reloads_only_the_agents_that_changed() {
    let r = Recorded::new("macos");
    let uid = uid();
    let dir = r.m.home.join("Library/LaunchAgents");
    let reload = |agent: &str| {
        vec![
            format!("launchctl bootout gui/{uid}/dev.fleetkey.{agent}"),
            format!("launchctl print gui/{uid}/dev.fleetkey.{agent}"),
            format!(
                "launchctl bootstrap gui/{uid} {}",
                dir.join(format!("dev.fleetkey.{agent}.plist")).display()
            ),
        ]
    };
    let (out, commands) = r.agents(&["install"]);
    assert_eq!(
        commands,
        [reload("watch"), reload("pull")].concat(),
        "{out}"
    );
    assert!(out.contains("reloaded: watch, pull"), "{out}");
    assert!(dir.join("dev.fleetkey.watch.plist").is_file());
    assert!(r.m.home.join("Library/Logs/fleetkey").is_dir());

    let (out, commands) = r.agents(&["install"]);
    assert!(commands.is_empty(), "{commands:?}");
    assert!(out.contains("up to date"), "{out}");

    r.set_poll("5m");
    let (out, commands) = r.agents(&["install"]);
    assert_eq!(commands, reload("pull"), "{out}");
    let plist = std::fs::read_to_string(dir.join("dev.fleetkey.pull.plist")).unwrap();
    assert!(plist.contains("<integer>300</integer>"), "{plist}");

    let (out, commands) = r.agents(&["status"]);
    assert_eq!(
        commands,
        [
            format!("launchctl print gui/{uid}/dev.fleetkey.watch"),
            format!("launchctl print gui/{uid}/dev.fleetkey.pull"),
        ]
    );
    assert!(
        out.contains("watch  installed, up to date, not loaded\n"),
        "{out}"
    );

    let (out, commands) = r.agents(&["uninstall", "--dry-run"]);
    assert!(commands.is_empty(), "{commands:?}");
    assert!(out.contains("would remove "), "{out}");
    assert!(dir.join("dev.fleetkey.pull.plist").is_file());
}

#[test]
fn agents_install_on_linux_reloads_only_the_agents_that_changed() {
    let r = Recorded::new("linux");
    let (out, commands) = r.agents(&["install"]);
    assert_eq!(
        commands,
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable --now fleetkey-watch.service",
            "systemctl --user enable --now fleetkey-pull.timer",
        ],
        "{out}"
    );
    let units = r.m.home.join(".config/systemd/user");
    for f in [
        "fleetkey-watch.service",
        "fleetkey-pull.service",
        "fleetkey-pull.timer",
    ] {
        assert!(units.join(f).is_file(), "{f}");
    }
    let (_, commands) = r.agents(&["install"]);
    assert!(commands.is_empty(), "{commands:?}");

    r.set_poll("90s");
    let (out, commands) = r.agents(&["install"]);
    assert_eq!(
        commands,
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable fleetkey-pull.timer",
            "systemctl --user restart fleetkey-pull.timer",
        ],
        "{out}"
    );
    assert!(out.contains(&format!(
        "wrote {}",
        units.join("fleetkey-pull.timer").display()
    )));
    let timer = std::fs::read_to_string(units.join("fleetkey-pull.timer")).unwrap();
    assert!(timer.contains("OnUnitActiveSec=90s"), "{timer}");

    // status: installed and current; uninstall: stopped and gone.
    let (out, _) = r.agents(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["platform"], "linux");
    for a in json["agents"].as_array().unwrap() {
        assert_eq!(a["installed"], true, "{out}");
        assert_eq!(a["up_to_date"], true, "{out}");
    }
    let (_, commands) = r.agents(&["uninstall"]);
    assert_eq!(
        commands,
        [
            "systemctl --user disable --now fleetkey-watch.service",
            "systemctl --user disable --now fleetkey-pull.timer",
            "systemctl --user daemon-reload",
        ]
    );
    assert!(std::fs::read_dir(&units).unwrap().next().is_none());
}

#[test]
fn agents_install_dry_run_changes_nothing() {
    for platform in ["macos", "linux"] {
        let r = Recorded::new(platform);
        let before = snapshot(&r.m.home);
        let (out, commands) = r.agents(&["install", "--dry-run"]);
        assert!(commands.is_empty(), "{platform}: ran {commands:?}");
        assert_eq!(snapshot(&r.m.home).diff(&before), Vec::<PathBuf>::new());
        assert!(out.contains("would write "), "{out}");
        assert!(out.contains("would run "), "{out}");
        assert!(out.contains("would reload: watch, pull"), "{out}");

        r.agents(&["install"]);
        r.set_poll("2m");
        let before = snapshot(&r.m.home);
        let (out, commands) = r.agents(&["install", "--dry-run"]);
        assert!(commands.is_empty(), "{platform}: ran {commands:?}");
        assert_eq!(snapshot(&r.m.home).diff(&before), Vec::<PathBuf>::new());
        assert!(out.contains("would reload: pull\n"), "{out}");
    }
}

#[test]
fn completions_for_every_shell_and_the_man_page_come_from_the_cli() {
    let m = Machine::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let text = m.ok(&["completions", shell]);
        for word in ["agents", "secrets", "revoke", "completions"] {
            assert!(text.contains(word), "{shell} completions lack {word:?}");
        }
    }
    let bash = require("bash", "bash");
    let script = m.dir.path().join("fleetkey.bash");
    std::fs::write(&script, m.ok(&["completions", "bash"])).unwrap();
    run_ok(Command::new(bash).arg("-n").arg(&script));

    let man = m.ok(&["man"]);
    assert!(man.contains(".TH fleetkey 1"), "{man}");
    for word in ["agents", "authorized\\-keys", "secrets"] {
        assert!(man.contains(word), "man page lacks {word:?}");
    }
    m.fails(&["completions", "tcsh"], 2);
}

#[test]
fn a_sync_that_brings_a_new_poll_reloads_exactly_the_puller() {
    let r = Recorded::new("linux");
    r.agents(&["install"]);
    // Another machine (a plain clone here) changes poll and pushes.
    let other = r.m.dir.path().join("other");
    run_ok(
        Command::new("git")
            .args(["clone", "-q"])
            .arg(r.m.forge())
            .arg(&other),
    );
    let fleet = other.join("fleet.toml");
    let text = std::fs::read_to_string(&fleet).unwrap();
    std::fs::write(&fleet, text.replace("poll = \"15s\"", "poll = \"45s\"")).unwrap();
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(&other)
            .args(crate::util::signing_config(&r.m))
            .args(["-c", "user.name=o", "-c", "user.email=o@o"])
            .args(["commit", "-qam", "poll 45s"]),
    );
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(&other)
            .args(["push", "-q"]),
    );

    let commands = r.sync();
    assert_eq!(
        commands,
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable fleetkey-pull.timer",
            "systemctl --user restart fleetkey-pull.timer",
        ]
    );
    let timer =
        std::fs::read_to_string(r.m.home.join(".config/systemd/user/fleetkey-pull.timer")).unwrap();
    assert!(timer.contains("OnUnitActiveSec=45s"), "{timer}");

    // A cycle with nothing new runs no platform command.
    assert!(r.sync().is_empty());
}

#[test]
fn uninstall_names_the_calls_that_failed_instead_of_saying_it_ran_them() {
    let r = Recorded::new("linux");
    r.agents(&["install"]);
    let out =
        r.m.cmd(["agents", "uninstall"])
            .env("FLEETKEY_AGENTS_PLATFORM", "linux")
            .env(
                "FLEETKEY_AGENTS_RUNNER",
                format!("record:{}", r.log.display()),
            )
            .env(
                "FLEETKEY_AGENTS_FAIL",
                "systemctl --user disable --now fleetkey-watch",
            )
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let home = r.m.home.display().to_string();
    assert_eq!(
        stdout.replace(&home, "[HOME]"),
        "failed: systemctl --user disable --now fleetkey-watch.service\n\
         ran systemctl --user disable --now fleetkey-pull.timer\n\
         ran systemctl --user daemon-reload\n\
         removed [HOME]/.config/systemd/user/fleetkey-watch.service\n\
         removed [HOME]/.config/systemd/user/fleetkey-pull.service\n\
         removed [HOME]/.config/systemd/user/fleetkey-pull.timer\n",
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("fleetkey: error: 1 service manager call(s) failed, so the agents may still be running: `systemctl --user disable --now fleetkey-watch.service`"),
        "{stderr}"
    );
}

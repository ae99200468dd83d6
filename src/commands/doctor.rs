//! `fleetkey doctor`: each check this machine needs to pass, with a concrete fix for each that
//! fails. Exit 1 when any check fails.

use crate::output::outln;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::Result;
use crate::fleet::Machine;
use crate::roster::Roster;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Fine.
    Ok,
    /// Works, but worth fixing.
    Warn,
    /// Broken.
    Fail,
}

/// One check's result.
#[derive(Debug)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// How it came out.
    pub verdict: Verdict,
    /// What was found, and for a problem, the fix.
    pub detail: String,
}

fn check(what: &str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        what: what.into(),
        verdict,
        detail: detail.into(),
    }
}

/// Permission bits of `path` that let others write (or, with `private`, read) it.
fn loose_bits(path: &Path, private: bool) -> Option<(u32, bool)> {
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o7777;
    let mask = if private { 0o077 } else { 0o022 };
    let mine = meta.uid() == rustix::process::geteuid().as_raw();
    Some((mode, mode & mask != 0 || !mine))
}

fn permissions(what: &str, path: &Path, private: bool, fix_mode: &str) -> Check {
    match loose_bits(path, private) {
        None => check(
            what,
            Verdict::Warn,
            format!("{} does not exist", path.display()),
        ),
        Some((mode, false)) => check(what, Verdict::Ok, format!("{} is {mode:o}", path.display())),
        Some((mode, true)) => check(
            what,
            Verdict::Fail,
            format!(
                "{} is {mode:o} or not yours; sshd's StrictModes and fleetkey refuse it: run `chmod {fix_mode} {}`",
                path.display(),
                path.display()
            ),
        ),
    }
}

/// The age identity: present, private, and readable; a missing one is a failure with the
/// way back (the secrets cannot be read without it).
fn identity_check(machine: &Machine) -> Check {
    let path = machine.paths.identity_file();
    if path.exists() {
        return permissions("identity", &path, true, "600");
    }
    match machine.identity() {
        Ok(_) => permissions("identity", &path, true, "600"),
        Err(e) => check(
            "identity",
            Verdict::Fail,
            format!(
                "{} does not exist; {}",
                path.display(),
                e.advice().unwrap_or_default()
            ),
        ),
    }
}

/// The forge row when the forge does not answer: what git's failure means (no repository,
/// unreachable, refused), then what to do, one clause each: never a hint inside parentheses.
fn forge_failure(remote: &str, e: &crate::error::Error) -> String {
    // One row: git's own words (the error's later lines) are for `fleetkey sync` to show.
    let what = e.to_string().lines().next().unwrap_or_default().to_string();
    let what = if what.contains(remote) {
        what
    } else {
        format!("{remote}: {what}")
    };
    match e.advice() {
        Some(advice) => format!("{what}; {advice}"),
        None => {
            format!("{what}; check the URL in config.toml, your network and `ssh -T` to the host")
        }
    }
}

/// Whether config.toml's `remote` and fleet.toml's `forge` (set by `fleetkey remote set`)
/// agree, and how to make them agree when they do not.
pub fn forge_agreement(remote: &str, fleet_forge: Option<&str>) -> Check {
    match fleet_forge {
        None => check(
            "forge setting",
            Verdict::Ok,
            "fleet.toml names no forge: every machine keeps its own config.toml remote",
        ),
        Some(f) if f == remote => check(
            "forge setting",
            Verdict::Ok,
            format!("config.toml and fleet.toml agree on {f}"),
        ),
        Some(f) => check(
            "forge setting",
            Verdict::Fail,
            format!(
                "config.toml says the forge is {remote} but fleet.toml says the fleet moved to {f}: \
                 run `fleetkey sync` (a cycle follows the move), or `fleetkey remote set {f}`; \
                 do not edit `remote` in config.toml by hand"
            ),
        ),
    }
}

/// Runs every check.
pub fn checks(machine: &Machine) -> Vec<Check> {
    let paths = &machine.paths;
    let mut out = vec![
        identity_check(machine),
        permissions("config directory", &paths.config_dir, true, "700"),
        permissions("home directory", &paths.home, false, "go-w"),
        permissions("~/.ssh", &paths.ssh_dir(), false, "700"),
    ];
    out.push(match crate::roster::poke_command_problem() {
        None => check(
            "poke line",
            Verdict::Ok,
            "peers may poke this machine's fleetkey",
        ),
        Some(problem) => check(
            "poke line",
            Verdict::Fail,
            format!("no poke line is written: {problem}"),
        ),
    });
    let settings = machine.fleet_settings();
    let fleet = settings.as_ref().map(|s| s.config.clone());
    if let Ok(f) = &fleet {
        authorized_keys_check(machine, f, &mut out);
    }
    fleet_toml_check(&settings, &mut out);
    git_check(&mut out);
    agents_git_check(&mut out);
    if let Ok(f) = &fleet {
        out.extend(agent_checks(machine, f));
    }
    forge_check(machine, &mut out);
    if let Ok(f) = &fleet {
        out.push(forge_agreement(&machine.config.remote, f.forge.as_deref()));
    }
    out.extend(peer_checks(machine));
    roster_check(machine, &mut out);
    out.push(trust_check(machine));
    secrets_check(machine, &mut out);
    if machine.config.backend == crate::config::Backend::Chezmoi {
        out.push(chezmoi_autocommit(&paths.home));
    }
    fleet_checks(machine, &mut out);
    held_back_checks(machine, &mut out);
    out
}

/// The authorized_keys file: not a symlink, mode 600.
fn authorized_keys_check(machine: &Machine, f: &crate::config::FleetConfig, out: &mut Vec<Check>) {
    let paths = &machine.paths;
    let ak = paths.expand(&f.authorized_keys.path);
    let link = std::fs::symlink_metadata(&ak).is_ok_and(|m| m.file_type().is_symlink());
    if link {
        out.push(check(
            "authorized_keys",
            Verdict::Fail,
            format!(
                "{} is a symbolic link: sync refuses to merge into it; {}",
                ak.display(),
                crate::authorized_keys::symlink_hint(&ak)
            ),
        ));
    } else if ak.exists() {
        out.push(permissions("authorized_keys", &ak, false, "600"));
    }
}

/// fleet.toml: valid, or held back (the last valid one in force).
fn fleet_toml_check(settings: &Result<crate::fleet::InForce>, out: &mut Vec<Check>) {
    match settings {
        Ok(s) if s.held_back.is_some() => out.push(check(
            "fleet.toml",
            Verdict::Fail,
            format!("held back: {}", s.held_back.as_deref().unwrap_or_default()),
        )),
        Ok(_) => out.push(check("fleet.toml", Verdict::Ok, "valid")),
        Err(e) => out.push(check("fleet.toml", Verdict::Fail, crate::error::chain(e))),
    }
}

/// git on this PATH, and its configuration readable.
fn git_check(out: &mut Vec<Check>) {
    match std::process::Command::new("git").arg("--version").output() {
        Ok(o) if o.status.success() => out.push(check(
            "git",
            Verdict::Ok,
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )),
        Ok(o) => {
            let said = String::from_utf8_lossy(&o.stderr).trim().to_string();
            let text = match said.split_once(" in file ") {
                Some((_, file)) if said.contains("bad config") => format!(
                    "git cannot read its configuration file {}: fix or move it ({said})",
                    file.lines().next().unwrap_or_default().trim()
                ),
                _ => format!("`git --version` failed: {said}"),
            };
            out.push(check("git", Verdict::Fail, text))
        }
        Err(_) => out.push(check(
            "git",
            Verdict::Fail,
            "git is not on PATH: install it (apt-get install git, or xcode-select --install)",
        )),
    }
}

/// git on the PATH the background agents run with.
fn agents_git_check(out: &mut Vec<Check>) {
    match crate::agents::Platform::current() {
        Ok(platform) => {
            let dirs = crate::agents::system_path(platform);
            if dirs.iter().any(|d| Path::new(d).join("git").is_file()) {
                out.push(check(
                    "git for the agents",
                    Verdict::Ok,
                    "found on the agents' PATH",
                ));
            } else {
                out.push(check(
                    "git for the agents",
                    Verdict::Fail,
                    format!(
                        "no git in {}; the background agents would fail: install git there",
                        dirs.join(":")
                    ),
                ));
            }
        }
        Err(e) => out.push(check("agents", Verdict::Warn, e.to_string())),
    }
}

/// The forge answers and holds a fleet branch.
fn forge_check(machine: &Machine, out: &mut Vec<Check>) {
    match machine.forge().has_any_branch() {
        Ok(true) => out.push(check(
            "forge",
            Verdict::Ok,
            format!("{} answers", machine.config.remote),
        )),
        Ok(false) => out.push(check(
            "forge",
            Verdict::Fail,
            format!(
                "{} has no fleet branch: push one with `fleetkey sync`",
                machine.config.remote
            ),
        )),
        Err(e) => out.push(check(
            "forge",
            Verdict::Fail,
            forge_failure(&machine.config.remote, &e),
        )),
    }
}

/// This machine in the roster: active, waiting for approval, or gone.
fn roster_check(machine: &Machine, out: &mut Vec<Check>) {
    let revoked = machine.revocation();
    match Roster::load(&machine.config.repo) {
        _ if revoked.is_some() => {
            let r = revoked.expect("checked");
            let e = crate::error::Error::from(r);
            out.push(check(
                "roster",
                Verdict::Fail,
                format!("{e}; {}", e.advice().unwrap_or_default()),
            ))
        }
        Ok(r) if r.active(&machine.config.name).is_some() => {
            out.push(check("roster", Verdict::Ok, format!("{} is active", machine.config.name)))
        }
        Ok(r)
            if !r.is_revoked_name(&machine.config.name)
                && machine
                    .forge()
                    .remote_head(&crate::forge::pending_branch(&machine.config.name))
                .ok()
                .flatten()
                .is_some() =>
        {
            out.push(check(
            "roster",
            Verdict::Warn,
            format!(
                "{} waits for approval: run `fleetkey approve {}` on an enrolled machine, then `fleetkey sync` here",
                machine.config.name, machine.config.name
            ),
        ))
        }
        Ok(_) => out.push(check(
            "roster",
            Verdict::Fail,
            format!(
                "{} is neither active nor waiting for approval in the fleet's roster: enroll it again (`fleetkey enroll NAME --remote URL`)",
                machine.config.name
            ),
        )),
        Err(e) => out.push(check("roster", Verdict::Fail, format!("{e}"))),
    }
}

/// The secrets decrypt here, and none is marked as needing a new value (warn, naming the keys:
/// a value a revoked machine could read is still in force until someone replaces it).
fn secrets_check(machine: &Machine, out: &mut Vec<Check>) {
    match machine.secrets() {
        Ok(env) => {
            let stale: Vec<String> = env.stale().into_iter().map(|s| s.key).collect();
            if stale.is_empty() {
                out.push(check(
                    "secrets",
                    Verdict::Ok,
                    format!("{} readable", env.len()),
                ));
            } else {
                out.push(check(
                    "secrets",
                    Verdict::Warn,
                    stale_message(env.len(), &stale),
                ));
            }
        }
        Err(e) => out.push(check(
            "secrets",
            Verdict::Fail,
            format!("{e}; {}", e.advice().unwrap_or_default()),
        )),
    }
}

/// The doctor line for readable secrets of which `stale` (keys, in file order) need new values.
fn stale_message(readable: usize, stale: &[String]) -> String {
    let (count, verb, them) = match stale.len() {
        1 => ("1 secret".to_string(), "needs", "it"),
        n => (format!("{n} secrets"), "need", "them"),
    };
    let first = &stale[0];
    format!(
        "{readable} readable, but {count} {verb} a new value (a revoked machine could read {them}): {}; give each a new value with `fleetkey secrets set KEY` (e.g. `fleetkey secrets set {first}`)",
        stale.join(", ")
    )
}

/// Every machine reported recently (from the host branches).
fn fleet_checks(machine: &Machine, out: &mut Vec<Check>) {
    if let Ok(view) = crate::commands::fleet::gather(machine) {
        let warnings = crate::commands::fleet::doctor_warnings(&view);
        if warnings.is_empty() {
            out.push(check(
                "fleet",
                Verdict::Ok,
                "every machine reported recently",
            ));
        }
        for w in warnings {
            out.push(check("fleet", Verdict::Warn, w));
        }
    }
}

/// What the last cycle held back.
fn held_back_checks(machine: &Machine, out: &mut Vec<Check>) {
    let paths = &machine.paths;
    let held_back = crate::sync::state::CycleRecord::load(&paths.state_dir)
        .map(|c| c.held_back)
        .unwrap_or_default();
    if held_back.is_empty() {
        out.push(check("held back", Verdict::Ok, "nothing"));
    } else {
        for h in held_back {
            out.push(check(
                "held back",
                Verdict::Warn,
                format!(
                    "{h} (the last cycle skipped this and did the rest; {})",
                    held_back_fix(&h)
                ),
            ));
        }
    }
}

/// The fix for one thing the last cycle held back: a file of this machine that was not
/// captured is fixed here; what came from the fleet is fixed on a member.
pub fn held_back_fix(held: &str) -> &'static str {
    if held.contains(" not captured: ") || held.starts_with("capture stopped at ") {
        "it is this machine's own file: remove it or move it out of the managed directory, or keep it out of the fleet with `fleetkey config add ignore PATTERN`"
    } else if held.contains(crate::fleet::FLEET_TOML_FIX) {
        "see the fix above"
    } else {
        "fix it on a member and sync"
    }
}

/// Each peer with an address: a real poke (harmless: it only makes that peer pull), with the
/// fix for the usual failures. A peer that cannot be poked still gets every change at its next
/// poll, so this is a warning, not a failure.
fn peer_checks(machine: &Machine) -> Vec<Check> {
    let peers = crate::sync::poke::peers(machine);
    let outcomes = crate::sync::poke::poke_peers(machine, &peers);
    peers
        .iter()
        .map(|peer| {
            let what = format!("poke {}", peer.name);
            match outcomes.get(&peer.name) {
                Some(r) if r.reached => {
                    check(&what, Verdict::Ok, format!("{} answers", peer.address))
                }
                other => {
                    let error = other
                        .and_then(|r| r.error.clone())
                        .unwrap_or_else(|| "no answer".into());
                    check(
                        &what,
                        Verdict::Warn,
                        format!(
                            "{} cannot be poked ({error}); {}; until then it catches up at its poll",
                            peer.address,
                            poke_fix(&error, &peer.name, peer.address.as_str())
                        ),
                    )
                }
            }
        })
        .collect()
}

/// The fix for a failed poke, from ssh's error line.
pub fn poke_fix(error: &str, name: &str, address: &str) -> String {
    let e = error.to_ascii_lowercase();
    if e.contains("host key verification failed") || e.contains("no ed25519 host key") {
        format!(
            "its host key is unknown here: run `ssh {address} true` once, compare the fingerprint with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on {name}, and accept it"
        )
    } else if e.contains("connection refused") {
        format!(
            "nothing listens for SSH on {name}: on macOS turn on Remote Login (System Settings > General > Sharing, or `sudo systemsetup -setremotelogin on`); on Linux start sshd"
        )
    } else if e.contains("permission denied") {
        format!(
            "{name} does not admit this machine's poke key yet: run `fleetkey sync` on {name} (its authorized_keys merge adds the key), and check the user in the address"
        )
    } else if e.contains("could not resolve") || e.contains("name or service not known") {
        "the host name does not resolve: check the address (`fleetkey address set DEST` on that machine)".into()
    } else {
        format!("check that {name} is online and that `ssh {address} true` works from here")
    }
}

/// The trust model: a pinned root, a signing key, and whether the last cycle refused commits.
fn trust_check(machine: &Machine) -> Check {
    if let Err(e) = crate::trust::pinned_root(&machine.config) {
        return check(
            "trust",
            Verdict::Fail,
            format!("{e}; {}", e.advice().unwrap_or_default()),
        );
    }
    if let Err(e) = machine.signer() {
        return check(
            "trust",
            Verdict::Fail,
            format!("{e}; {}", e.advice().unwrap_or_default()),
        );
    }
    let refused = crate::sync::state::CycleRecord::load(&machine.paths.state_dir)
        .map(|c| c.refused)
        .unwrap_or_default();
    let healed =
        crate::sync::heal::Healed::recent(&machine.paths.state_dir, crate::clock::now_unix());
    match refused.first() {
        None => match healed {
            None => check(
                "trust",
                Verdict::Ok,
                "the fleet's history is signed by its members".to_string(),
            ),
            Some(h) => check(
                "trust",
                Verdict::Warn,
                format!(
                    "this machine healed the forge at {}: its {} {} (kept under {}); someone can write to the forge without being a member: remove that credential at the forge (`fleetkey revoke` names a revoked machine's)",
                    h.at_text,
                    h.branch,
                    if h.rewound {
                        "had lost commits this machine verified"
                    } else {
                        "held commits that are not authentic"
                    },
                    h.kept
                ),
            ),
        },
        Some(r) => check(
            "trust",
            Verdict::Fail,
            format!(
                "the forge holds commits that are not authentic: {} (claims {}): {} ({} refused); nothing from them is applied. The next cycle heals the forge (at most once a minute, unless [trust] heal = false); after checking, `fleetkey forge repair` does it now",
                r.commit,
                r.machine,
                r.why,
                refused.len()
            ),
        ),
    }
}

/// Installed agents that are stale or not loaded; nothing to say when none is installed.
fn agent_checks(machine: &Machine, fleet: &crate::config::FleetConfig) -> Vec<Check> {
    let statuses = match crate::agents::current_status(&machine.paths, fleet) {
        Ok(s) => s,
        Err(e) => return vec![check("agents", Verdict::Warn, e.to_string())],
    };
    if statuses.iter().all(|s| !s.installed) {
        return vec![check(
            "agents",
            Verdict::Warn,
            "not installed: nothing syncs in the background; run `fleetkey agents install`",
        )];
    }
    statuses
        .iter()
        .map(|s| {
            let what = format!("agent {}", s.agent);
            let gone = s.runs.as_ref().filter(|p| s.installed && !p.exists());
            if let Some(exe) = gone {
                check(
                    &what,
                    Verdict::Fail,
                    format!(
                        "it runs {}, which no longer exists (moved or removed by an upgrade?): run `fleetkey agents install` to record this binary",
                        exe.display()
                    ),
                )
            } else if !s.installed {
                check(
                    &what,
                    Verdict::Warn,
                    "not installed: run `fleetkey agents install`",
                )
            } else if !s.up_to_date {
                check(
                    &what,
                    Verdict::Warn,
                    "out of date: run `fleetkey agents install`",
                )
            } else if s.loaded == Some(false) {
                check(
                    &what,
                    Verdict::Fail,
                    "installed but not running: run `fleetkey agents install` (the agent's log says why it stopped)",
                )
            } else if s.loaded.is_none() {
                check(
                    &what,
                    Verdict::Fail,
                    format!(
                        "installed, but the service manager could not say whether it runs ({}): the agents need a reachable user service manager (a login session, or `loginctl enable-linger $USER` on Linux); then run `fleetkey agents install`",
                        s.unknown.as_deref().unwrap_or("no answer")
                    ),
                )
            } else {
                check(&what, Verdict::Ok, "installed, up to date and running")
            }
        })
        .collect()
}

/// chezmoi's own `git.autoCommit` / `git.autoPush` would commit a second time beside fleetkey.
fn chezmoi_autocommit(home: &Path) -> Check {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| home.join(".config"));
    let path = base.join("chezmoi/chezmoi.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return check("chezmoi auto-commit", Verdict::Ok, "no chezmoi.toml");
    };
    let Ok(value) = text.parse::<toml::Table>() else {
        return check(
            "chezmoi auto-commit",
            Verdict::Warn,
            format!("{} does not parse", path.display()),
        );
    };
    let git = value.get("git").and_then(|g| g.as_table());
    let on = |k: &str| git.and_then(|g| g.get(k)).and_then(|v| v.as_bool()) == Some(true);
    if on("autoCommit") || on("autoPush") {
        check(
            "chezmoi auto-commit",
            Verdict::Warn,
            format!(
                "{} sets git.autoCommit/autoPush: chezmoi and fleetkey would both commit; set them to false",
                path.display()
            ),
        )
    } else {
        check("chezmoi auto-commit", Verdict::Ok, "off")
    }
}

/// `fleetkey doctor`: prints each check; exit 1 when one fails.
pub fn run() -> Result<i32> {
    let machine = Machine::load()?;
    let results = checks(&machine);
    let mut failed = false;
    for c in &results {
        let tag = match c.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => {
                failed = true;
                "FAIL"
            }
        };
        outln!("{tag}  {:<20} {}", c.what, c.detail)?;
    }
    Ok(if failed { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::poke_fix;

    #[test]
    fn each_usual_poke_failure_gets_its_own_fix() {
        let fix = |e: &str| poke_fix(e, "mini", "alice@mini");
        assert!(
            fix("ssh: connect to host mini port 22: Connection refused").contains("Remote Login")
        );
        assert!(fix("Host key verification failed.").contains("ssh alice@mini true"));
        assert!(
            fix("alice@mini: Permission denied (publickey).").contains("`fleetkey sync` on mini")
        );
        assert!(
            fix("ssh: Could not resolve hostname mini: Name or service not known")
                .contains("does not resolve")
        );
        assert!(fix("no answer within 8s").contains("online"));
    }
}

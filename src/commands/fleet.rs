//! `fleetkey fleet [--json]`: every active machine as this machine last gathered it from the
//! host branches (see `crate::sync::collect`): platform, fleetkey version, last seen, last
//! cycle, how far behind the fleet branch, agents, open conflicts; silent machines marked.
//!
//! Reads only what the last cycle verified and recorded: it runs no network and writes
//! nothing. Must never: show a secret's value (the host branches hold names only).

use serde::Serialize;

use crate::error::Result;
use crate::fleet::Machine;
use crate::output::outln;
use crate::roster::Roster;
use crate::sync::collect::status::{AgentState, HostStatus};
use crate::sync::collect::{self, SILENT};

/// Days of silence after which `doctor` warns.
pub const DOCTOR_SILENT_DAYS: i64 = 2;

/// The whole fleet as `fleet --json` prints it.
#[derive(Debug, Serialize)]
pub struct FleetView {
    /// One entry per active machine, by name.
    pub machines: Vec<MachineLine>,
    /// Host branches the last gathering ignored, each with why.
    pub ignored: Vec<String>,
    /// A machine whose last report is older than this many seconds is silent.
    pub silent_after_secs: i64,
    /// When the other machines' reports were last fetched from the forge (RFC 3339; `None`:
    /// never): everything about them is as of then.
    pub fetched_at: Option<String>,
    /// How many seconds ago.
    pub fetched_secs_ago: Option<i64>,
}

/// One machine.
#[derive(Debug, Serialize)]
pub struct MachineLine {
    /// Its name.
    pub name: String,
    /// Whether it is the machine running this command.
    pub this_machine: bool,
    /// Its role: admin, member or receiver.
    pub role: String,
    /// `OS-ARCH`.
    pub platform: Option<String>,
    /// Its fleetkey version.
    pub fleetkey: Option<String>,
    /// When it last published (RFC 3339).
    pub last_seen: Option<String>,
    /// How many seconds ago.
    pub seen_secs_ago: Option<i64>,
    /// Nothing heard from it for longer than `silent_after_secs` (or ever).
    pub silent: bool,
    /// Its last cycle's result.
    pub last_cycle: Option<String>,
    /// Fleet commits it has not applied yet (`None`: its applied commit is unknown here).
    pub behind: Option<usize>,
    /// Its background agents.
    pub agents: Vec<AgentState>,
    /// Its open conflict copies.
    pub conflicts: Vec<String>,
    /// Its secrets with a conflict kept aside (names only).
    pub secret_conflicts: Vec<String>,
    /// How many files it publishes.
    pub files: usize,
    /// When it last healed the forge (RFC 3339), within the last week.
    pub healed: Option<String>,
}

impl MachineLine {
    fn has_conflicts(&self) -> bool {
        !self.conflicts.is_empty() || !self.secret_conflicts.is_empty()
    }
}

/// The fleet as this machine knows it now.
pub fn gather(machine: &Machine) -> Result<FleetView> {
    let roster = Roster::load(&machine.config.repo)?;
    let collect::Known {
        statuses,
        ignored,
        gathered,
    } = collect::known_statuses(machine);
    let poll = machine
        .fleet_config()
        .map(|f| f.poll().as_secs() as i64)
        .unwrap_or(60);
    let silent_after = SILENT.max(3 * poll);
    let now = crate::clock::now_unix();
    let repo = git2::Repository::open(&machine.config.repo).ok();
    let head = repo
        .as_ref()
        .and_then(|r| r.head().ok())
        .and_then(|h| h.target());
    let machines = roster
        .active
        .iter()
        .map(|m| {
            let s: Option<&HostStatus> = statuses.get(&m.name);
            let seen = s.map(|s| now - s.written);
            let behind = match (&repo, head, s.and_then(|s| s.applied.as_deref())) {
                (Some(r), Some(h), Some(applied)) => git2::Oid::from_str(applied)
                    .ok()
                    .and_then(|a| r.graph_ahead_behind(h, a).ok())
                    .map(|(ahead, _)| ahead),
                _ => None,
            };
            MachineLine {
                name: m.name.clone(),
                this_machine: m.name == machine.config.name,
                role: crate::authority::role_in(&machine.config.repo, &m.name).to_string(),
                platform: s.map(|s| s.platform.clone()),
                fleetkey: s.map(|s| s.fleetkey.clone()),
                last_seen: s.map(|s| s.written_at.clone()),
                seen_secs_ago: seen,
                // This machine is never silent to itself.
                silent: m.name != machine.config.name && seen.is_none_or(|ago| ago > silent_after),
                last_cycle: s.and_then(|s| s.last_cycle.as_ref().map(|c| c.result.clone())),
                behind,
                agents: s.map(|s| s.agents.clone()).unwrap_or_default(),
                conflicts: s.map(|s| s.conflicts.clone()).unwrap_or_default(),
                secret_conflicts: s.map(|s| s.secret_conflicts.clone()).unwrap_or_default(),
                files: s.map_or(0, |s| s.files.len()),
                healed: s.and_then(|s| s.healed.clone()),
            }
        })
        .collect();
    Ok(FleetView {
        machines,
        ignored,
        silent_after_secs: silent_after,
        fetched_at: gathered.map(crate::clock::rfc3339),
        fetched_secs_ago: gathered.map(|g| now - g),
    })
}

/// `fleetkey fleet [--json]`.
pub fn run(json: bool) -> Result<()> {
    let machine = Machine::load()?;
    let view = gather(&machine)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&view).expect("the fleet view serializes")
        )?;
    } else {
        crate::output::stdout(render(&view).as_bytes())?;
    }
    Ok(())
}

/// `3d`, `5h`, `12m`, `40s`.
pub fn ago(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s >= 2 * 86_400 => format!("{}d", s / 86_400),
        s if s >= 2 * 3600 => format!("{}h", s / 3600),
        s if s >= 120 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn render(v: &FleetView) -> String {
    let mut out = String::from(
        "MACHINE          ROLE     PLATFORM        FLEETKEY  LAST SEEN     CYCLE      BEHIND  AGENTS         CONFLICTS\n",
    );
    for m in &v.machines {
        let name = if m.this_machine {
            format!("{} (here)", m.name)
        } else {
            m.name.clone()
        };
        let seen = match m.seen_secs_ago {
            Some(s) => format!("{} ago", ago(s)),
            None => "never".into(),
        };
        let seen = if m.silent {
            format!("{seen} SILENT")
        } else {
            seen
        };
        let agents: Vec<&str> = m
            .agents
            .iter()
            .filter(|a| a.installed)
            .map(|a| a.agent.as_str())
            .collect();
        let conflicts = m.conflicts.len() + m.secret_conflicts.len();
        out.push_str(&format!(
            "{:<16} {:<8} {:<15} {:<9} {:<13} {:<10} {:<7} {:<14} {}\n",
            name,
            m.role,
            m.platform.as_deref().unwrap_or("?"),
            m.fleetkey.as_deref().unwrap_or("?"),
            seen,
            m.last_cycle.as_deref().unwrap_or("?"),
            m.behind.map_or("?".to_string(), |b| b.to_string()),
            if agents.is_empty() {
                "none".to_string()
            } else {
                agents.join(",")
            },
            if conflicts == 0 {
                "none".to_string()
            } else {
                let mut names: Vec<&str> = m.conflicts.iter().map(String::as_str).collect();
                names.extend(m.secret_conflicts.iter().map(String::as_str));
                names.join(", ")
            }
        ));
    }
    out.push_str(&format!(
        "silent: nothing heard for over {}\n",
        ago(v.silent_after_secs)
    ));
    out.push_str(&match (&v.fetched_at, v.fetched_secs_ago) {
        (Some(at), Some(s)) => format!(
            "the other machines as of the last fetch, {at} ({} ago); `fleetkey sync` fetches again\n",
            ago(s)
        ),
        _ => "the other machines: never fetched yet; `fleetkey sync` fetches their reports\n"
            .to_string(),
    });
    for i in &v.ignored {
        out.push_str(&format!("IGNORED: {i}\n"));
    }
    for m in &v.machines {
        if let Some(at) = &m.healed {
            out.push_str(&format!(
                "HEALED: {} put the fleet branch back on the forge at {at}: the forge held commits that are not authentic (kept in {}'s clone under refs/fleetkey/refused/)\n",
                m.name, m.name
            ));
        }
    }
    out
}

/// The one-line fleet summary `status` prints.
pub fn summary(v: &FleetView) -> String {
    let names = |pick: &dyn Fn(&MachineLine) -> bool| -> Vec<String> {
        v.machines
            .iter()
            .filter(|m| pick(m))
            .map(|m| m.name.clone())
            .collect()
    };
    let others = v.machines.iter().filter(|m| !m.this_machine).count();
    if others == 0 {
        return "no other machine in the fleet yet (`fleetkey enroll NAME --remote URL` on one)"
            .to_string();
    }
    let silent = names(&|m| m.silent);
    let conflicts = names(&|m| m.has_conflicts());
    let behind = names(&|m| m.behind.is_some_and(|b| b > 0));
    let list = |v: &[String]| {
        if v.is_empty() {
            String::new()
        } else {
            format!(" ({})", v.join(", "))
        }
    };
    let fetched = match v.fetched_secs_ago {
        Some(s) => format!(" (as of the last fetch, {} ago)", ago(s)),
        None => " (never fetched)".to_string(),
    };
    let healed = names(&|m| m.healed.is_some());
    let healed = if healed.is_empty() {
        String::new()
    } else {
        format!(", the forge healed by {}", healed.join(", "))
    };
    format!(
        "{} reporting, {} silent{}, {} with conflicts{}, {} behind{}{}{healed}{fetched}",
        others - silent.len(),
        silent.len(),
        list(&silent),
        conflicts.len(),
        list(&conflicts),
        behind.len(),
        list(&behind),
        if v.ignored.is_empty() {
            String::new()
        } else {
            format!(", {} host branches ignored", v.ignored.len())
        }
    )
}

/// `doctor`'s warnings: machines silent for days, or running an older fleetkey (major or
/// minor version) than this one.
pub fn doctor_warnings(v: &FleetView) -> Vec<String> {
    let mine = version_key(env!("CARGO_PKG_VERSION"));
    let mut out = Vec::new();
    for m in v.machines.iter().filter(|m| !m.this_machine) {
        match m.seen_secs_ago {
            Some(s) if s > DOCTOR_SILENT_DAYS * 86_400 => out.push(format!(
                "{} has been silent for {}: is it off, or is its watcher down? (`fleetkey agents status` on it)",
                m.name,
                ago(s)
            )),
            None => out.push(format!(
                "{} has never reported on its host branch (it may run a fleetkey without `fleet`)",
                m.name
            )),
            _ => {}
        }
        if let (Some(theirs), Some(mine)) = (m.fleetkey.as_deref().and_then(version_key), mine)
            && theirs < mine
        {
            out.push(format!(
                "{} runs fleetkey {}, older than this machine's {}: upgrade it",
                m.name,
                m.fleetkey.as_deref().unwrap_or("?"),
                env!("CARGO_PKG_VERSION")
            ));
        }
    }
    out
}

/// `(major, minor)` of a version; a patch release is not "much older".
fn version_key(v: &str) -> Option<(u64, u64)> {
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(ago(40), "40s");
        assert_eq!(ago(600), "10m");
        assert_eq!(ago(4 * 3600), "4h");
        assert_eq!(ago(3 * 86_400), "3d");
    }

    #[test]
    fn only_a_major_or_minor_version_behind_is_much_older() {
        assert!(version_key("0.1.9") < version_key("0.2.0"));
        assert_eq!(version_key("0.2.1"), version_key("0.2.0"));
        assert_eq!(version_key("x"), None);
    }
}

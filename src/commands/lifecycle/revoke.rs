//! `revoke NAME [--compromised]`: a machine leaves the roster; the secrets are re-encrypted to
//! the others, and with `--compromised` an exposure report says what its keys could read.
//!
//! Owns: the revocation commit and the exposure report. Must never: revoke the machine it runs
//! on, or the last active machine.

use crate::output::outln;

use crate::clock;
use crate::config::FleetConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::exposure;
use crate::fault;
use crate::files;
use crate::fleet::Machine;
use crate::forge;
use crate::identity::Identity;
use crate::paths::Paths;
use crate::repo::FleetRepo;
use crate::roster::{self, Roster, layout};
use crate::secrets::{CIPHERTEXT, RECIPIENTS, SecretsFile};
use crate::sync;

use super::{prepare, read_revoked};

/// `revoke NAME [--compromised] [--json]`.
pub fn revoke(name: &str, compromised: bool, json: bool) -> Result<()> {
    roster::check_name(name)?;
    let machine = Machine::load()?;
    let me = machine.config.name.clone();
    if name == me {
        return Err(ErrorKind::Refused(format!(
            "{name} is the machine you are running on; revoke it from another machine"
        ))
        .hint("to replace this machine's keys instead, run `fleetkey rotate --ssh`"));
    }
    let (_lock, repo, fleet) = prepare(&machine)?;
    crate::authority::require_admin(repo.root(), &machine.config.name, "revoke a machine")?;
    let roster = Roster::load(repo.root())?;
    let member = match (roster.active(name), roster.pending(name)) {
        (Some(m), _) => m.clone(),
        (None, Some(p)) => p.clone(),
        (None, None) if roster.is_revoked_name(name) && compromised => {
            // Revoked already (perhaps not as compromised, or the report was lost): the report
            // and the marks are what the user asks for now.
            return report_again(&machine, &repo, &fleet, &roster, name, json);
        }
        (None, None) if roster.is_revoked_name(name) => {
            crate::log::info(&format!("{name} is already revoked"));
            return sync::push_merging_upstream(&machine, &repo, &fleet);
        }
        (None, None) => {
            // A machine still waiting: drop its request.
            let remote = &machine.config.remote;
            if forge::remote_head(remote, &forge::pending_branch(name))?.is_some() {
                forge::delete_branch(repo.root(), remote, &forge::pending_branch(name))?;
                outln!("fleetkey: dropped the enrollment request of {name}")?;
                return Ok(());
            }
            return Err(
                ErrorKind::Refused(format!("no machine called {name} in this fleet")).into(),
            );
        }
    };
    let was_active = roster.active(name).is_some();
    if was_active && roster.active.len() == 1 {
        return Err(ErrorKind::Refused(format!(
            "{name} is the last active machine; revoking it would lock everyone out"
        ))
        .into());
    }
    let identity = Identity::load(&machine.paths.identity_file())?;
    let mut env = machine.secrets()?;
    let report = if compromised {
        let mut recipients = vec![member.recipient.to_string()];
        // Earlier identities of the same machine, retired by `rotate`, could read older files.
        for r in &roster.revoked {
            if let roster::RevokedKey::Age(a) = &r.key
                && r.machine() == Some(name)
            {
                recipients.push(a.clone());
            }
        }
        let report = exposure::report(
            &repo,
            name,
            &recipients,
            &identity,
            &retired_identities(&machine.paths),
        )?;
        let today = clock::date(clock::now_unix());
        for exposed in &report.secrets {
            if env.contains_key(&exposed.key) {
                env.mark_stale(&exposed.key, &today, &format!("exposed to {name}"))
                    .map_err(|e| ErrorKind::Secret(e.to_string()))?;
            }
        }
        Some(report)
    } else {
        None
    };
    let reason = if compromised {
        "compromised"
    } else {
        "revoked"
    };
    let today = clock::date(clock::now_unix());
    let mut revoked_text = read_revoked(repo.root())?;
    revoked_text.push_str(&roster::revocation_lines(&member, &today, reason));
    files::write_atomic(
        &repo.root().join(layout::REVOKED),
        revoked_text.as_bytes(),
        0o644,
    )?;
    let dir = if was_active {
        layout::KEYS
    } else {
        layout::PENDING
    };
    let key_files = [
        layout::age_pub(dir, name),
        layout::ssh_pub(dir, name),
        layout::sign_pub(dir, name),
        layout::poke_pub(dir, name),
        layout::proof(dir, name),
        layout::role(dir, name),
    ];
    for f in &key_files {
        let p = repo.root().join(f);
        if p.exists() {
            std::fs::remove_file(&p).map_err(Error::io("cannot remove", &p))?;
        }
    }
    fault::point("revoke:roster-written");
    let roster = Roster::load(repo.root())?;
    SecretsFile::new(repo.root()).store(&env, &roster)?;
    fault::point("revoke:encrypted");
    let mut changed: Vec<&str> = key_files.iter().map(String::as_str).collect();
    changed.extend([layout::REVOKED, CIPHERTEXT, RECIPIENTS]);
    repo.commit_paths(
        &changed,
        &format!("{me}: revoke {name} ({reason}); secrets re-encrypted"),
    )?;
    fault::point("revoke:committed");
    if let Some(report) = &report {
        print_report(report, json, false)?;
    } else {
        outln!(
            "fleetkey: revoked {name}; the secrets are re-encrypted to {} machines",
            roster.active.len()
        )?;
    }
    sync::push_merging_upstream(&machine, &repo, &fleet)?;
    poke_remaining_peers(&machine)
}

/// After a revocation (or a change of whose login keys the fleet admits: a role, `ssh_from`)
/// is on the forge, pokes every remaining peer that has an address, so each online machine's
/// authorized_keys follows within seconds instead of at its next poll.
pub fn poke_remaining_peers(machine: &Machine) -> Result<()> {
    let peers = sync::poke::peers(machine);
    if peers.is_empty() {
        return Ok(());
    }
    let outcomes = sync::poke::poke_peers(machine, &peers);
    let reached: Vec<&str> = outcomes
        .iter()
        .filter(|(_, r)| r.reached)
        .map(|(n, _)| n.as_str())
        .collect();
    outln!(
        "fleetkey: poked {} of {} peers{}; the others apply it at their next poll",
        reached.len(),
        peers.len(),
        if reached.is_empty() {
            String::new()
        } else {
            format!(" ({})", reached.join(", "))
        }
    )?;
    Ok(())
}

/// `revoke NAME --compromised` for a machine already revoked: the exposure report over every
/// age key NAME ever had (from keys/revoked), and the "needs a new value" marks on the secrets
/// still present, committed and pushed when they changed.
fn report_again(
    machine: &Machine,
    repo: &FleetRepo,
    fleet: &FleetConfig,
    roster: &Roster,
    name: &str,
    json: bool,
) -> Result<()> {
    let recipients: Vec<String> = roster
        .revoked
        .iter()
        .filter(|r| r.machine() == Some(name))
        .filter_map(|r| match &r.key {
            roster::RevokedKey::Age(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    let identity = Identity::load(&machine.paths.identity_file())?;
    let report = exposure::report(
        repo,
        name,
        &recipients,
        &identity,
        &retired_identities(&machine.paths),
    )?;
    let mut env = machine.secrets()?;
    let before = env.to_text();
    let today = clock::date(clock::now_unix());
    for exposed in &report.secrets {
        if env.contains_key(&exposed.key) {
            env.mark_stale(&exposed.key, &today, &format!("exposed to {name}"))
                .map_err(|e| ErrorKind::Secret(e.to_string()))?;
        }
    }
    if env.to_text() != before {
        SecretsFile::new(repo.root()).store(&env, roster)?;
        let me = &machine.config.name;
        repo.commit_paths(
            &[CIPHERTEXT, RECIPIENTS],
            &format!("{me}: mark the secrets exposed to {name}"),
        )?;
    }
    if !json {
        outln!("fleetkey: {name} was already revoked; here is what its keys could read.")?;
    }
    print_report(&report, json, true)?;
    sync::push_merging_upstream(machine, repo, fleet)
}

/// The identities this machine retired by `rotate` (see [`Paths::retired_dir`]); one that
/// cannot be read is skipped with a warning.
fn retired_identities(paths: &Paths) -> Vec<Identity> {
    let Ok(entries) = std::fs::read_dir(paths.retired_dir()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        match Identity::load(&path) {
            Ok(id) => out.push(id),
            Err(e) => crate::log::warn(&format!(
                "skipping a retired identity: {}",
                crate::error::chain(&e)
            )),
        }
    }
    out
}

fn print_report(report: &exposure::Report, json: bool, again: bool) -> Result<()> {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(report).expect("the report serializes")
        )?;
        return Ok(());
    }
    if !again {
        outln!(
            "fleetkey: revoked {} as compromised; the secrets are re-encrypted.",
            report.machine
        )?;
    }
    if report.secrets.is_empty() {
        outln!("No secret was ever readable by its key.")?;
    } else {
        outln!(
            "Its key could read these secrets in the fleet's history (old ciphertexts stay readable):"
        )?;
        for s in &report.secrets {
            outln!("  {:<32} {} .. {}", s.key, s.first, s.last)?;
        }
        outln!(
            "Each one still present is marked as needing a new value: replace it at its source,"
        )?;
        outln!("then run `fleetkey secrets set KEY`.")?;
    }
    if let (Some(first), Some(last)) = (report.unreadable.last(), report.unreadable.first()) {
        outln!(
            "The report is INCOMPLETE: {} version(s) of the secrets file that {} could read cannot be read here (from {first} to {last}): this machine was not a member then, or rotated its key before fleetkey kept retired identities. Names only those versions held are missing above; run `fleetkey revoke {} --compromised` on a machine that was a member then for them.",
            report.unreadable.len(),
            report.machine,
            report.machine
        )?;
    }
    Ok(())
}

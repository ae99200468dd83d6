//! `revoke NAME [--compromised]`: a machine leaves the roster; the secrets are re-encrypted to
//! the others, and with `--compromised` an exposure report says what its keys could read.
//!
//! Owns: the revocation commit and the exposure report. Must never: revoke the machine it runs
//! on, or the last active machine.

use crate::output::outln;

use crate::clock;
use crate::error::{Error, ErrorKind, Result};
use crate::exposure;
use crate::fault;
use crate::files;
use crate::fleet::Machine;
use crate::forge;
use crate::identity::Identity;
use crate::paths::Paths;
use crate::roster::{self, Roster, layout};
use crate::secrets::{CIPHERTEXT, RECIPIENTS, SecretsFile};
use crate::sync::{self, Begin, FleetChange};

use super::read_revoked;

/// How `revoke` runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RevokeOptions {
    /// Report what the machine's keys could read and mark those secrets (`--compromised`).
    pub compromised: bool,
    /// The report as JSON.
    pub json: bool,
    /// No confirmation (`--yes`).
    pub yes: bool,
    /// Say what would happen, change nothing (`--dry-run`).
    pub dry_run: bool,
}

/// Asks on a terminal for `name` to be typed before it is revoked; off a terminal, `--yes`.
fn confirm_revoke(name: &str, yes: bool) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(ErrorKind::Refused(format!(
            "revoking {name} needs --yes when stdin is not a terminal; nothing was changed"
        ))
        .hint(format!(
            "see what it would do with `fleetkey revoke {name} --dry-run`, then run `fleetkey revoke {name} --yes`"
        )));
    }
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "{name} will lose every key of the fleet, and the secrets are re-encrypted without it.\nType its name to revoke it: "
    );
    let _ = err.flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(Error::io(
        "cannot read the answer from",
        std::path::Path::new("stdin"),
    ))?;
    if answer.trim() == name {
        Ok(())
    } else {
        Err(ErrorKind::Refused(format!("the name typed is not {name}; nothing was revoked")).into())
    }
}

/// `revoke NAME --dry-run`: what the revocation would do.
fn print_revoke_plan(roster: &Roster, member: &roster::Member, compromised: bool) -> Result<()> {
    let name = &member.name;
    let left: Vec<&str> = roster
        .active
        .iter()
        .map(|m| m.name.as_str())
        .filter(|n| n != name)
        .collect();
    outln!("fleetkey: dry run; revoking {name} would:")?;
    outln!(
        "  move its age recipient, SSH, signing and poke keys to keys/revoked (every machine drops its SSH key from authorized_keys, this one at once)"
    )?;
    outln!(
        "  re-encrypt the secrets to the {} remaining machines ({})",
        left.len(),
        left.join(", ")
    )?;
    if compromised {
        outln!(
            "  report every secret its keys could ever read, and mark those whose value it could read as needing a new value"
        )?;
    }
    outln!("Nothing was changed.")?;
    Ok(())
}

/// `revoke NAME [--yes] [--dry-run] [--compromised] [--json]`.
pub fn revoke(name: &str, opts: RevokeOptions) -> Result<()> {
    roster::check_name(name)?;
    let machine = Machine::load()?;
    refuse_self(name, &machine.config.name)?;
    let change = FleetChange::begin(&machine, Begin::InStep)?;
    crate::authority::require_admin(change.repo.root(), &machine.config.name, "revoke a machine")?;
    let roster = Roster::load(change.repo.root())?;
    let member = match (roster.active(name), roster.pending(name)) {
        (Some(m), _) | (None, Some(m)) => m.clone(),
        (None, None) => return not_a_member(&change, &roster, name, opts),
    };
    let was_active = refuse_last_active(&roster, name)?;
    if opts.dry_run {
        return print_revoke_plan(&roster, &member, opts.compromised);
    }
    confirm_revoke(name, opts.yes)?;
    let mut env = machine.secrets()?;
    let credential = forge_credential(&machine, name, &member);
    let report = if opts.compromised {
        Some(compromise_report(
            &change,
            &roster,
            &member,
            &credential,
            &mut env,
        )?)
    } else {
        None
    };
    let remaining = commit_revocation(&change, &member, was_active, opts.compromised, &env)?;
    print_revoked(report.as_ref(), opts.json, name, remaining, &credential)?;
    publish_revocation(&change)
}

/// Never the machine it runs on: its own keys are replaced with `rotate`, not revoked.
fn refuse_self(name: &str, me: &str) -> Result<()> {
    if name == me {
        return Err(ErrorKind::Refused(format!(
            "{name} is the machine you are running on; revoke it from another machine"
        ))
        .hint("to replace this machine's keys instead, run `fleetkey rotate --ssh`"));
    }
    Ok(())
}

/// A NAME in neither the active nor the pending roster: revoked already (with
/// `--compromised`, the report again; else nothing to do but publish), or a machine still
/// waiting (its request is dropped), or no machine of this fleet.
fn not_a_member(
    change: &FleetChange,
    roster: &Roster,
    name: &str,
    opts: RevokeOptions,
) -> Result<()> {
    if roster.is_revoked_name(name) && opts.compromised {
        // Revoked already (perhaps not as compromised, or the report was lost): the report
        // and the marks are what the user asks for now.
        return report_again(change, roster, name, opts.json);
    }
    if roster.is_revoked_name(name) {
        crate::log::info(&format!("{name} is already revoked"));
        return change.publish();
    }
    drop_request(change, name, opts)
}

/// A machine still waiting: its enrollment request (its pending branch on the forge) is
/// dropped, after the same dry run and confirmation as a revocation; none there, NAME is
/// refused as unknown.
fn drop_request(change: &FleetChange, name: &str, opts: RevokeOptions) -> Result<()> {
    let forge = change.forge();
    if forge.remote_head(&forge::pending_branch(name))?.is_none() {
        return Err(ErrorKind::Refused(format!("no machine called {name} in this fleet")).into());
    }
    if opts.dry_run {
        outln!(
            "fleetkey: dry run; the enrollment request of {name} would be dropped. Nothing was changed."
        )?;
        return Ok(());
    }
    confirm_revoke(name, opts.yes)?;
    forge.delete_branch(change.repo.root(), &forge::pending_branch(name))?;
    outln!("fleetkey: dropped the enrollment request of {name}")?;
    Ok(())
}

/// Never the last active machine (that would lock everyone out); returns whether NAME is
/// active (else pending), which says where its key files are.
fn refuse_last_active(roster: &Roster, name: &str) -> Result<bool> {
    let was_active = roster.active(name).is_some();
    if was_active && roster.active.len() == 1 {
        return Err(ErrorKind::Refused(format!(
            "{name} is the last active machine; revoking it would lock everyone out"
        ))
        .into());
    }
    Ok(was_active)
}

/// `--compromised`: the exposure report of `member` (with the forge credential to remove),
/// and the secrets it could read marked in `env` as needing a new value.
fn compromise_report(
    change: &FleetChange,
    roster: &Roster,
    member: &roster::Member,
    credential: &[String],
    env: &mut crate::envfile::EnvFile,
) -> Result<exposure::Report> {
    let name = &member.name;
    let mut report = exposure_of(change, roster, name, Some(member))?;
    report.forge_credential = credential.to_vec();
    mark_exposed(env, &report, name)?;
    Ok(report)
}

/// The revocation commit: `member`'s lines appended to keys/revoked, its key files removed
/// (from keys/ when `was_active`, else keys/pending/), the secrets `env` re-encrypted to the
/// roster left; returns how many machines remain active.
fn commit_revocation(
    change: &FleetChange,
    member: &roster::Member,
    was_active: bool,
    compromised: bool,
    env: &crate::envfile::EnvFile,
) -> Result<usize> {
    let (repo, name) = (&change.repo, &member.name);
    let reason = if compromised {
        "compromised"
    } else {
        "revoked"
    };
    let today = clock::date(clock::now_unix());
    let mut revoked_text = read_revoked(repo.root())?;
    revoked_text.push_str(&roster::revocation_lines(member, &today, reason));
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
    let key_files = remove_key_files(repo.root(), dir, name)?;
    fault::point("revoke:roster-written");
    let roster = Roster::load(repo.root())?;
    SecretsFile::new(repo.root()).store(env, &roster)?;
    fault::point("revoke:encrypted");
    let mut changed: Vec<&str> = key_files.iter().map(String::as_str).collect();
    changed.extend([layout::REVOKED, CIPHERTEXT, RECIPIENTS]);
    let me = &change.machine.config.name;
    change.commit(
        &changed,
        &format!("{me}: revoke {name} ({reason}); secrets re-encrypted"),
    )?;
    fault::point("revoke:committed");
    Ok(roster.active.len())
}

/// What the revocation says: the exposure report with `--compromised`, else the count of
/// machines left and how to remove NAME's forge credential.
fn print_revoked(
    report: Option<&exposure::Report>,
    json: bool,
    name: &str,
    remaining: usize,
    credential: &[String],
) -> Result<()> {
    if let Some(report) = report {
        return print_report(report, json, false);
    }
    outln!("fleetkey: revoked {name}; the secrets are re-encrypted to {remaining} machines")?;
    for line in credential {
        outln!("{line}")?;
    }
    Ok(())
}

/// Publishes the revocation and delivers it to every remaining peer with an address, even
/// when the forge refuses the push or cannot be reached; this machine stops admitting the
/// revoked key at once; then says who has it. The push's outcome is the result.
fn publish_revocation(change: &FleetChange) -> Result<()> {
    let published = change.publish_and_deliver();
    // This machine stops admitting the revoked key now, not at its next cycle.
    if let Err(e) = sync::backend::merge_authorized_keys(change.machine, &change.repo) {
        crate::log::warn(&format!(
            "authorized_keys was not merged: {}{}",
            crate::error::chain(&e),
            e.advice().map(|a| format!(" ({a})")).unwrap_or_default()
        ));
    }
    tell_delivery(&published.delivery)?;
    published.pushed
}

/// Which credential of `member` (being revoked) the forge may still accept, and how to remove
/// it, one step a line (see [`crate::forge::credential`]).
fn forge_credential(machine: &Machine, name: &str, member: &roster::Member) -> Vec<String> {
    let fingerprints: Vec<String> = member
        .ssh_keys
        .iter()
        .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
        .collect();
    crate::forge::credential::advice(&machine.config.remote, name, &fingerprints)
}

/// After a revocation (or a change of whose login keys the fleet admits: a role, `ssh_from`):
/// says which peers have the change now (they took the bundle their poke carried, whatever
/// the forge does) and which get it from the forge: at once when the poke reached them, else
/// at their next poll.
pub fn tell_delivery(delivery: &sync::poke::Delivery) -> Result<()> {
    for line in delivery_lines(delivery) {
        outln!("{line}")?;
    }
    Ok(())
}

/// The lines [`tell_delivery`] prints (none when no peer has an address).
fn delivery_lines(delivery: &sync::poke::Delivery) -> Vec<String> {
    if delivery.outcomes.is_empty() {
        return Vec::new();
    }
    let have = delivery.have_it();
    let mut line = format!(
        "fleetkey: delivered to {} of {} peers",
        have.len(),
        delivery.outcomes.len()
    );
    if !have.is_empty() {
        line.push_str(&format!(" ({})", have.join(", ")));
    }
    let rest: Vec<String> = delivery
        .left_to_the_forge()
        .into_iter()
        .map(|name| {
            let reached = delivery.outcomes.get(name).is_some_and(|r| r.reached);
            format!(
                "{name} ({})",
                if reached {
                    "poked"
                } else {
                    "not reached: at its next poll"
                }
            )
        })
        .collect();
    if !rest.is_empty() {
        line.push_str(&format!("; from the forge: {}", rest.join(", ")));
    }
    let mut lines = vec![line];
    if let Some(why) = &delivery.plain_because {
        lines.push(format!("  nothing was carried: {why}"));
    }
    lines
}

/// `revoke NAME --compromised` for a machine already revoked: the exposure report over every
/// age key NAME ever had (from keys/revoked), and the "needs a new value" marks on the secrets
/// still present, committed and pushed when they changed.
fn report_again(change: &FleetChange, roster: &Roster, name: &str, json: bool) -> Result<()> {
    let (machine, repo) = (change.machine, &change.repo);
    let mut report = exposure_of(change, roster, name, None)?;
    report.forge_credential = crate::forge::credential::advice(&machine.config.remote, name, &[]);
    let mut env = machine.secrets()?;
    let before = env.to_text();
    mark_exposed(&mut env, &report, name)?;
    if env.to_text() != before {
        SecretsFile::new(repo.root()).store(&env, roster)?;
        let me = &machine.config.name;
        change.commit(
            &[CIPHERTEXT, RECIPIENTS],
            &format!("{me}: mark the secrets exposed to {name}"),
        )?;
    }
    if !json {
        outln!("fleetkey: {name} was already revoked; here is what its keys could read.")?;
    }
    print_report(&report, json, true)?;
    change.publish()
}

/// The exposure report of `name`: what every age key it had could read in the fleet's history
/// (its active one, `member`'s, when it still has one, and the earlier ones `rotate` retired,
/// listed in keys/revoked).
fn exposure_of(
    change: &FleetChange,
    roster: &Roster,
    name: &str,
    member: Option<&roster::Member>,
) -> Result<exposure::Report> {
    let machine = change.machine;
    let mut recipients: Vec<String> = member
        .map(|m| m.recipient.to_string())
        .into_iter()
        .collect();
    recipients.extend(
        roster
            .revoked
            .iter()
            .filter(|r| r.machine() == Some(name))
            .filter_map(|r| match &r.key {
                roster::RevokedKey::Age(a) => Some(a.clone()),
                _ => None,
            }),
    );
    let identity = Identity::load(&machine.paths.identity_file())?;
    exposure::report(
        &change.repo,
        name,
        &recipients,
        &identity,
        &retired_identities(&machine.paths),
    )
}

/// Marks each secret of `report` still present in `env` as needing a new value (exposed to
/// `name`, today).
fn mark_exposed(
    env: &mut crate::envfile::EnvFile,
    report: &exposure::Report,
    name: &str,
) -> Result<()> {
    let today = clock::date(clock::now_unix());
    for exposed in &report.secrets {
        // Only a value the key could read: one replaced since (after the revocation, say) is
        // left alone.
        let readable = env
            .get(&exposed.key)
            .is_some_and(|v| report.could_read(&exposed.key, v));
        if readable {
            env.mark_stale(&exposed.key, &today, &format!("exposed to {name}"))
                .map_err(|e| ErrorKind::Secret(e.to_string()))?;
        }
    }
    Ok(())
}

/// Removes `name`'s key files from `dir` (keys/ or keys/pending/) of the clone at `root`;
/// returns their paths, for the commit.
fn remove_key_files(root: &std::path::Path, dir: &str, name: &str) -> Result<[String; 6]> {
    let key_files = [
        layout::age_pub(dir, name),
        layout::ssh_pub(dir, name),
        layout::sign_pub(dir, name),
        layout::poke_pub(dir, name),
        layout::proof(dir, name),
        layout::role(dir, name),
    ];
    for f in &key_files {
        let p = root.join(f);
        if p.exists() {
            std::fs::remove_file(&p).map_err(Error::io("cannot remove", &p))?;
        }
    }
    Ok(key_files)
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
    if !report.admin_acts.is_empty() {
        outln!(
            "As an admin, {} did this; undo what you did not ask for:",
            report.machine
        )?;
        for a in &report.admin_acts {
            outln!(
                "  {} {}: {}",
                &a.date[..10.min(a.date.len())],
                a.act,
                a.undo
            )?;
        }
    }
    for line in &report.forge_credential {
        outln!("{line}")?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use sync::poke::{Delivery, PokeRecord};

    fn record(reached: bool, carried: bool) -> PokeRecord {
        PokeRecord {
            address: "u@h".into(),
            at: "2026-12-03T08:00:00Z".into(),
            reached,
            error: (!reached).then(|| "Connection refused".into()),
            carried: carried.then(|| "ab12".into()),
        }
    }

    #[test]
    fn the_delivery_says_who_has_it_and_who_gets_it_from_the_forge() {
        assert!(delivery_lines(&Delivery::default()).is_empty());
        let mut d = Delivery::default();
        d.outcomes.insert("b".into(), record(true, true));
        d.outcomes.insert("c".into(), record(true, false));
        d.outcomes.insert("d".into(), record(false, false));
        assert_eq!(
            delivery_lines(&d),
            [
                "fleetkey: delivered to 1 of 3 peers (b); from the forge: c (poked), d (not reached: at its next poll)"
            ]
        );
        let mut d = Delivery {
            plain_because: Some("5 MiB is larger than the limit".into()),
            ..Delivery::default()
        };
        d.outcomes.insert("b".into(), record(true, false));
        assert_eq!(
            delivery_lines(&d),
            [
                "fleetkey: delivered to 0 of 1 peers; from the forge: b (poked)",
                "  nothing was carried: 5 MiB is larger than the limit"
            ]
        );
    }
}

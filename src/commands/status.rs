//! `fleetkey status [--json]`: this machine, the fleet, and what needs attention, at a glance.
//!
//! Must never: show a secret's value. It shows names, fingerprints, counts and dates only, and
//! it still reports everything else when the secrets cannot be decrypted.

use crate::output::outln;
use serde::Serialize;

use crate::error::Result;
use crate::fleet::Machine;
use crate::repo::FleetRepo;

use crate::roster::{RevokedKey, Roster};
use crate::secrets::SecretsFile;

/// Everything `status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    /// This machine.
    pub machine: MachineStatus,
    /// The fleet's roster.
    pub fleet: FleetStatus,
    /// The clone against the forge, as of the last fetch.
    pub sync: SyncStatus,
    /// The secrets file.
    pub secrets: SecretsStatus,
    /// The background agents (empty when their state cannot be read).
    pub agents: Vec<crate::agents::AgentStatus>,
    /// What this machine trusts, and what it refused.
    pub trust: TrustStatus,
    /// The fleet from the host branches, in one line (`fleetkey fleet` shows it all).
    pub fleet_summary: Option<String>,
}

/// The trust model as this machine sees it.
#[derive(Debug, Serialize)]
pub struct TrustStatus {
    /// The fleet's fingerprint: founding commit and the founder's signing-key fingerprint
    /// (compare with what `enroll` printed).
    pub fleet_fingerprint: Option<String>,
    /// The commit pinned in config.toml as this machine's trust root.
    pub trust_root: Option<String>,
    /// This machine's signing-key fingerprint.
    pub signing_key: Option<String>,
    /// Forge commits the last cycle refused as not authentic.
    pub refused: Vec<crate::trust::Refusal>,
    /// Why the last cycle did not heal the forge it refused, when it did not.
    pub not_healed: Option<String>,
    /// The last time this machine healed the forge, within the last week.
    pub healed: Option<crate::sync::heal::Healed>,
}

/// This machine's identity.
#[derive(Debug, Serialize)]
pub struct MachineStatus {
    /// Its name.
    pub name: String,
    /// The dotfile backend.
    pub backend: String,
    /// Its age recipient.
    pub age_recipient: Option<String>,
    /// The SHA256 fingerprints of its SSH keys in the roster.
    pub ssh_fingerprints: Vec<String>,
    /// The forge.
    pub remote: String,
    /// `identity.txt.next` is left by a `rotate` that did not finish.
    pub unfinished_rotation: bool,
    /// A receiver's `rotate` finished and its new identity (`identity.txt.next`) waits for an
    /// admin or member to re-encrypt the secrets to it; the old one is kept until then.
    pub new_identity_waiting: bool,
    /// While this machine waits for approval: the enrollment code `enroll` printed, which a
    /// member gives to `fleetkey approve NAME --code`.
    pub enrollment_code: Option<String>,
}

/// The roster.
#[derive(Debug, Serialize)]
pub struct FleetStatus {
    /// Active machines.
    pub active: Vec<String>,
    /// Each active machine's role (admin, member or receiver), by name; a machine from before
    /// roles is an admin until an admin changes it.
    pub roles: Vec<RoleStatus>,
    /// Machines waiting for approval.
    pub pending: Vec<String>,
    /// Revoked machines (from the notes in keys/revoked), with date and reason.
    pub revoked: Vec<String>,
    /// Keys an active machine rotated away (in keys/revoked, but the machine is a member).
    pub retired_keys: Vec<String>,
    /// Each active machine that has an address: where peers poke it, and how this machine's
    /// last poke of it went.
    pub addresses: Vec<AddressStatus>,
    /// Whose login keys this machine's authorized_keys admits, and why (none when the roster's
    /// SSH files cannot be read).
    pub ssh_access: Option<SshAccessStatus>,
}

/// Whose keys the authorized_keys merge admits here (see [`crate::access`]).
#[derive(Debug, Serialize)]
pub struct SshAccessStatus {
    /// `[authorized_keys] from`: roles and machine names.
    pub from: Vec<String>,
    /// Each active machine's login key: admitted or left out, and why.
    pub login: Vec<LoginKeyStatus>,
    /// The machines whose poke key is admitted (only to run `fleetkey poke`; every role).
    pub poke: Vec<String>,
    /// The text `status` shows (the same as `authorized-keys --check`).
    #[serde(skip)]
    pub text: String,
}

/// One machine's login key in the authorized_keys merge.
#[derive(Debug, Serialize)]
pub struct LoginKeyStatus {
    /// The machine.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Whether its login key goes into authorized_keys.
    pub admitted: bool,
    /// Why, in words.
    pub why: String,
}

/// One machine's role.
#[derive(Debug, Serialize)]
pub struct RoleStatus {
    /// The machine.
    pub name: String,
    /// `admin`, `member` or `receiver`.
    pub role: String,
    /// It has no role file: a machine from before roles, an admin until an admin changes it.
    pub from_before_roles: bool,
}

/// One machine's address and this machine's last poke of it.
#[derive(Debug, Serialize)]
pub struct AddressStatus {
    /// The machine.
    pub name: String,
    /// Its address (`[hosts.NAME] address`).
    pub address: String,
    /// This machine's last poke of it (none for this machine itself, or before any push).
    pub last_poke: Option<crate::sync::poke::PokeRecord>,
}

/// The clone against the forge.
#[derive(Debug, Serialize)]
pub struct SyncStatus {
    /// Local commits the forge does not have.
    pub ahead: usize,
    /// Forge commits this clone has not integrated (as of the last fetch).
    pub behind: usize,
    /// When this clone last fetched from the forge (RFC 3339, UTC); `None` if never.
    pub last_fetch: Option<String>,
    /// The last sync cycle: when, how long, its result and error.
    pub last_cycle: Option<crate::sync::state::CycleRecord>,
    /// Conflict copies of managed files still on disk: each holds the version that lost.
    pub conflicts: Vec<crate::sync::state::ConflictRecord>,
    /// Managed files this machine keeps its own version of (`track --here`), relative to HOME.
    pub overridden: Vec<String>,
}

/// The secrets file.
#[derive(Debug, Serialize)]
pub struct SecretsStatus {
    /// How many secrets there are (absent when they cannot be decrypted).
    pub count: Option<usize>,
    /// Why they cannot be decrypted, if so.
    pub error: Option<String>,
    /// Secrets marked as needing a new value.
    pub needs_new_value: Vec<NeedsNewValue>,
    /// Secrets with a concurrent edit kept aside inside the encrypted file.
    pub conflicts: Vec<SecretConflict>,
    /// secrets.recipients differs from the roster: the file needs re-encrypting.
    pub stale_recipients: bool,
}

/// A secret that needs a new value (its old one was exposed).
#[derive(Debug, Serialize)]
pub struct NeedsNewValue {
    /// The secret's name.
    pub key: String,
    /// Since when (YYYY-MM-DD).
    pub since: String,
    /// Why.
    pub reason: String,
}

/// A concurrent edit of a secret, kept aside (its value is not shown).
#[derive(Debug, Serialize)]
pub struct SecretConflict {
    /// The secret's name.
    pub key: String,
    /// The machine whose merge kept a value aside.
    pub from: String,
    /// When that merge happened.
    pub at: String,
    /// The machine that set the value kept aside (`null`: unknown, a record of an older fleetkey).
    pub aside_by: Option<String>,
    /// When that value was set there (RFC 3339; `null`: unknown).
    pub aside_at: Option<String>,
    /// The machine that set the value in force (`null`: unknown).
    pub in_force_by: Option<String>,
    /// When that value was set there (RFC 3339; `null`: unknown).
    pub in_force_at: Option<String>,
    /// The line `status` prints: both values named by who set them.
    #[serde(skip)]
    pub text: String,
}

/// Gathers the status of this machine, one section after the other. The order is the order
/// in which the sections read their state, so any warning they log comes out as it always did.
pub fn gather(machine: &Machine) -> Result<Status> {
    let repo = machine.repo()?;
    let roster = Roster::load(&machine.config.repo)?;
    let machine_status = machine_status(machine, &repo, &roster);
    let pending = pending_enrollments(machine);
    let last_cycle = crate::sync::state::CycleRecord::load(&machine.paths.state_dir);
    let trust = trust_status(machine, &repo, last_cycle.as_ref());
    let sync = sync_status(machine, &repo, last_cycle);
    let secrets = secrets_status(machine, &roster);
    let fleet = fleet_status(machine, &repo, &roster, pending);
    Ok(Status {
        machine: machine_status,
        fleet,
        sync,
        secrets,
        agents: agents(machine),
        trust,
        fleet_summary: fleet_summary(machine),
    })
}

/// The machine section: this machine's name, keys and forge, an unfinished rotation, a new
/// identity waiting, and the enrollment code while it waits for approval.
fn machine_status(machine: &Machine, repo: &FleetRepo, roster: &Roster) -> MachineStatus {
    let me = roster.active(&machine.config.name);
    let age_recipient = machine.identity().ok().map(|id| id.recipient().to_string());
    let ssh_fingerprints = me
        .map(|m| {
            m.ssh_keys
                .iter()
                .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
                .collect()
        })
        .unwrap_or_default();
    // A receiver's finished rotate (its signing key handed over) leaves the new identity
    // waiting for the secrets to be re-encrypted to it: not an interrupted rotate.
    let next_identity = machine.paths.next_identity_file().exists();
    let identity_waiting = next_identity
        && !machine.paths.next_signing_key_file().exists()
        && crate::authority::role_in(repo.root(), &machine.config.name)
            == crate::authority::Role::Receiver;
    MachineStatus {
        name: machine.config.name.clone(),
        backend: machine.config.backend.as_str().into(),
        age_recipient,
        ssh_fingerprints,
        remote: machine.config.remote.clone(),
        unfinished_rotation: next_identity && !identity_waiting,
        new_identity_waiting: identity_waiting,
        enrollment_code: me.is_none().then(|| enrollment_code(machine)).flatten(),
    }
}

/// The machines waiting for approval on the forge (none, with a warning, when they cannot be
/// listed).
fn pending_enrollments(machine: &Machine) -> Vec<String> {
    match crate::commands::approve::pending_names(&machine.forge()) {
        Ok(names) => names,
        Err(e) => {
            crate::log::warn(&format!("cannot list pending enrollments: {e}"));
            Vec::new()
        }
    }
}

/// The trust section: the fleet fingerprint, the trust root, this machine's signing key, what
/// the last cycle refused and why it did not heal the forge, and the last heal.
fn trust_status(
    machine: &Machine,
    repo: &FleetRepo,
    last_cycle: Option<&crate::sync::state::CycleRecord>,
) -> TrustStatus {
    TrustStatus {
        fleet_fingerprint: repo
            .head()
            .and_then(|h| crate::trust::fleet_fingerprint(repo.raw(), h).ok()),
        trust_root: machine.config.trust_root.clone(),
        signing_key: machine.signer().ok().map(|s| s.key().fingerprint()),
        refused: last_cycle.map(|c| c.refused.clone()).unwrap_or_default(),
        not_healed: last_cycle
            .filter(|c| !c.refused.is_empty())
            .and_then(|c| c.not_healed.clone()),
        healed: crate::sync::heal::Healed::recent(
            &machine.paths.state_dir,
            crate::clock::now_unix(),
        ),
    }
}

/// The sync section: ahead and behind the forge, the last fetch and the last cycle, conflict
/// copies still on disk, and the files this machine overrides.
fn sync_status(
    machine: &Machine,
    repo: &FleetRepo,
    last_cycle: Option<crate::sync::state::CycleRecord>,
) -> SyncStatus {
    let last_fetch = last_fetch(repo);
    let (ahead, behind) = ahead_behind(machine, repo);
    SyncStatus {
        ahead,
        behind,
        last_fetch,
        last_cycle,
        conflicts: crate::sync::state::conflicts(&machine.paths.state_dir),
        overridden: overridden(machine),
    }
}

/// When this clone last fetched: git writes FETCH_HEAD on every fetch, so its time is the time
/// of the last one.
fn last_fetch(repo: &FleetRepo) -> Option<String> {
    std::fs::metadata(repo.raw().path().join("FETCH_HEAD"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| crate::clock::rfc3339(d.as_secs() as i64))
}

/// How many commits the clone is ahead of and behind the fleet branch's remote-tracking ref
/// (one ahead when the forge has no such branch yet).
fn ahead_behind(machine: &Machine, repo: &FleetRepo) -> (usize, usize) {
    let branch = machine
        .fleet_config()
        .map(|f| f.sync.branch)
        .unwrap_or_else(|_| "main".into());
    match (repo.head(), repo.remote_tracking(&branch)) {
        (Some(local), Some(remote)) => repo
            .raw()
            .graph_ahead_behind(local, remote)
            .unwrap_or((0, 0)),
        (Some(_), None) => (1, 0),
        _ => (0, 0),
    }
}

/// The managed files this machine keeps its own version of (`track --here`).
fn overridden(machine: &Machine) -> Vec<String> {
    machine
        .repo()
        .ok()
        .and_then(|r| {
            let tree = crate::sync::commit::head_tree(r.raw()).ok()?;
            Some(crate::sync::overrides::list(
                r.raw(),
                &tree,
                &machine.config.name,
            ))
        })
        .unwrap_or_default()
}

/// The fleet section: active machines and their roles, pending, revoked and retired keys,
/// addresses, and SSH access.
fn fleet_status(
    machine: &Machine,
    repo: &FleetRepo,
    roster: &Roster,
    pending: Vec<String>,
) -> FleetStatus {
    let (revoked, retired_keys) = revoked_notes(roster);
    let addresses = addresses(machine, roster);
    let ssh_access = ssh_access(machine, repo);
    FleetStatus {
        active: roster.active.iter().map(|m| m.name.clone()).collect(),
        roles: roles(repo, roster),
        pending,
        revoked,
        retired_keys,
        addresses,
        ssh_access,
    }
}

/// Each active machine's role, and whether it is from before roles (no role file).
fn roles(repo: &FleetRepo, roster: &Roster) -> Vec<RoleStatus> {
    roster
        .active
        .iter()
        .map(|m| RoleStatus {
            name: m.name.clone(),
            role: crate::authority::role_in(repo.root(), &m.name).to_string(),
            from_before_roles: !repo
                .root()
                .join(crate::roster::layout::role(
                    crate::roster::layout::KEYS,
                    &m.name,
                ))
                .exists(),
        })
        .collect()
}

/// The SSH access section: whose login and poke keys the authorized_keys merge admits here,
/// and why (none when fleet.toml or the roster's SSH files cannot be read).
fn ssh_access(machine: &Machine, repo: &FleetRepo) -> Option<SshAccessStatus> {
    let fleet = machine.fleet_config().ok()?;
    let from = fleet.authorized_keys.from;
    let keys = crate::roster::fleet_keys(
        &repo.root().join(crate::roster::layout::KEYS),
        Some(&machine.config.name),
        &from,
    )
    .ok()?;
    let mut poke: Vec<String> = keys.poke.iter().map(|k| k.machine.clone()).collect();
    poke.dedup();
    Some(SshAccessStatus {
        login: keys
            .access
            .iter()
            .map(|(name, a)| LoginKeyStatus {
                name: name.clone(),
                role: a.role().to_string(),
                admitted: a.admitted(),
                why: a.to_string(),
            })
            .collect(),
        poke,
        text: crate::commands::authorized_keys::explain(&keys, &from),
        from,
    })
}

/// The agents section: each background agent's state (none when it cannot be read).
fn agents(machine: &Machine) -> Vec<crate::agents::AgentStatus> {
    machine
        .fleet_config()
        .ok()
        .and_then(|f| crate::agents::current_status(&machine.paths, &f).ok())
        .unwrap_or_default()
}

/// The one-line fleet summary from the host branches (none when they cannot be gathered).
fn fleet_summary(machine: &Machine) -> Option<String> {
    crate::commands::fleet::gather(machine)
        .ok()
        .map(|v| crate::commands::fleet::summary(&v))
}

/// The secrets as this machine reads them.
fn secrets_status(machine: &Machine, roster: &Roster) -> SecretsStatus {
    let file = SecretsFile::new(&machine.config.repo);
    let recorded = file.recorded_recipients().unwrap_or_default();
    let stale_recipients = recorded != roster.recipient_lines();
    match machine.secrets() {
        Ok(env) => SecretsStatus {
            count: Some(env.len()),
            error: None,
            needs_new_value: env
                .stale()
                .into_iter()
                .map(|s| NeedsNewValue {
                    key: s.key,
                    since: s.since,
                    reason: s.reason,
                })
                .collect(),
            conflicts: env
                .conflicts()
                .into_iter()
                .map(|c| SecretConflict {
                    key: c.key.clone(),
                    from: c.from.clone(),
                    at: c.at.clone(),
                    aside_by: c.origins.aside.machine.clone(),
                    aside_at: c.origins.aside.at.clone(),
                    in_force_by: c.origins.in_force.machine.clone(),
                    in_force_at: c.origins.in_force.at.clone(),
                    text: super::secrets::describe_conflict(
                        &c,
                        env.contains_key(&c.key),
                        &machine.config.name,
                    ),
                })
                .collect(),
            stale_recipients,
        },
        Err(e) => SecretsStatus {
            count: None,
            error: Some(e.to_string()),
            needs_new_value: Vec::new(),
            conflicts: Vec::new(),
            stale_recipients,
        },
    }
}

/// The active machines that have an address, with the last poke of each.
fn addresses(machine: &Machine, roster: &Roster) -> Vec<AddressStatus> {
    let pokes = crate::sync::poke::load_state(&machine.paths.state_dir);
    match machine.fleet_config() {
        Ok(fleet) => roster
            .active
            .iter()
            .filter_map(|m| {
                let address = fleet.address(&m.name)?;
                Some(AddressStatus {
                    name: m.name.clone(),
                    address: address.to_string(),
                    last_poke: pokes
                        .get(&m.name)
                        .filter(|p| p.address == address.as_str())
                        .cloned(),
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The notes of the revoked machines and of the keys active machines rotated away.
fn revoked_notes(roster: &Roster) -> (Vec<String>, Vec<String>) {
    // A revoked key of a machine that is still active was rotated away: a retired key, not a
    // revoked machine.
    let is_active = |r: &crate::roster::Revoked| {
        r.machine()
            .is_some_and(|n| roster.active.iter().any(|m| m.name == n))
    };
    let mut revoked: Vec<String> = roster
        .revoked
        .iter()
        .filter(|r| matches!(r.key, RevokedKey::Age(_)) && !is_active(r))
        .map(|r| r.note.clone())
        .collect();
    revoked.dedup();
    let mut retired_keys: Vec<String> = roster
        .revoked
        .iter()
        .filter(|r| matches!(r.key, RevokedKey::Age(_)) && is_active(r))
        .map(|r| r.note.clone())
        .collect();
    retired_keys.dedup();
    (revoked, retired_keys)
}

/// `fleetkey status [--json]`.
pub fn run(json: bool) -> Result<()> {
    let machine = Machine::load()?;
    let status = gather(&machine)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serializes")
        )?;
    } else {
        crate::output::stdout(render(&status).as_bytes())?;
    }
    Ok(())
}

/// The enrollment code kept by `enroll` (see [`crate::commands::lifecycle::ENROLLMENT_CODE`]).
fn enrollment_code(machine: &Machine) -> Option<String> {
    let path = machine
        .paths
        .state_dir
        .join(crate::commands::lifecycle::ENROLLMENT_CODE);
    crate::files::read_text(&path, 256)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The text of `status`, one section after the other.
fn render(s: &Status) -> String {
    let mut out = String::new();
    render_machine(&mut out, &s.machine);
    render_trust(&mut out, &s.trust);
    render_fleet(&mut out, s);
    render_addresses(&mut out, &s.fleet.addresses, &s.machine.name);
    render_ssh_access(&mut out, s.fleet.ssh_access.as_ref());
    render_sync(&mut out, &s.sync);
    render_conflicts(&mut out, &s.sync.conflicts);
    render_secrets(&mut out, &s.secrets);
    render_agents(&mut out, &s.agents);
    render_stale_recipients(&mut out, s);
    out
}

/// The `machine` line and what hangs off it: keys, forge, an unfinished rotation, a new
/// identity waiting, the enrollment code.
fn render_machine(out: &mut String, m: &MachineStatus) {
    out.push_str(&format!("machine  {} ({} backend)\n", m.name, m.backend));
    if let Some(r) = &m.age_recipient {
        out.push_str(&format!("  age    {r}\n"));
    }
    for fp in &m.ssh_fingerprints {
        out.push_str(&format!("  ssh    {fp}\n"));
    }
    out.push_str(&format!("  forge  {}\n", m.remote));
    if m.unfinished_rotation {
        out.push_str("  ROTATION UNFINISHED: identity.txt.next is left by a `fleetkey rotate` that was interrupted; run `fleetkey rotate` again to finish it\n");
    }
    if m.new_identity_waiting {
        out.push_str("  new identity waiting: this receiver's rotate is done; the next sync of an admin or member re-encrypts the secrets to identity.txt.next, and this machine keeps its old identity until then\n");
    }
    if let Some(code) = &m.enrollment_code {
        out.push_str(&format!(
            "  enrollment code: {code}   (waiting for approval: on a member, `fleetkey approve {} --code {code}`)\n",
            m.name
        ));
    }
}

/// The trust lines under the machine: signing key, fleet fingerprint, refused commits and
/// whether the forge is healed, the last heal.
fn render_trust(out: &mut String, t: &TrustStatus) {
    if let Some(fp) = &t.signing_key {
        out.push_str(&format!("  sign   {fp}\n"));
    }
    match &t.fleet_fingerprint {
        Some(fp) => out.push_str(&format!("  fleet fingerprint  {fp}\n")),
        None => out.push_str("  fleet fingerprint  none: this fleet has no signed history\n"),
    }
    for r in &t.refused {
        out.push_str(&format!(
            "  REFUSED: commit {} (claims {}): {}\n",
            r.commit, r.machine, r.why
        ));
    }
    if !t.refused.is_empty() {
        match &t.not_healed {
            Some(why) => out.push_str(&format!(
                "  nothing from refused commits is applied; {why}\n"
            )),
            None => out.push_str("  nothing from refused commits is applied; the next cycle heals the forge (`fleetkey forge repair` does it now)\n"),
        }
    }
    if let Some(h) = &t.healed {
        out.push_str(&format!("  {}\n", h.line()));
    }
}

/// The `fleet` line and the roster under it: machines from before roles, pending, revoked and
/// retired keys, the fleet summary.
fn render_fleet(out: &mut String, s: &Status) {
    out.push_str(&format!(
        "fleet    {} active: {}\n",
        s.fleet.active.len(),
        s.fleet
            .roles
            .iter()
            .map(|r| format!("{} ({})", r.name, r.role))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let legacy: Vec<&str> = s
        .fleet
        .roles
        .iter()
        .filter(|r| r.from_before_roles)
        .map(|r| r.name.as_str())
        .collect();
    if !legacy.is_empty() {
        out.push_str(&format!(
            "  from before roles, admin until changed: {}   (a server only receives: `fleetkey role NAME receiver`)\n",
            legacy.join(", ")
        ));
    }
    if !s.fleet.pending.is_empty() {
        out.push_str(&format!(
            "  pending approval: {}   (fleetkey approve NAME)\n",
            s.fleet.pending.join(", ")
        ));
    }
    for r in &s.fleet.revoked {
        out.push_str(&format!("  revoked: {r}\n"));
    }
    for r in &s.fleet.retired_keys {
        out.push_str(&format!(
            "  retired key: {r} (a key rotated away; the machine is active)\n"
        ));
    }
    if let Some(line) = &s.fleet_summary {
        out.push_str(&format!("  {line}   (fleetkey fleet)\n"));
    }
}

/// One line per machine address, with how this machine's last poke of it went.
fn render_addresses(out: &mut String, addresses: &[AddressStatus], me: &str) {
    for a in addresses {
        let poke = match &a.last_poke {
            _ if a.name == me => "this machine".to_string(),
            None => "not poked yet".to_string(),
            Some(p) if p.reached => format!("last poke reached it at {}", p.at),
            Some(p) => format!(
                "last poke FAILED at {}: {}",
                p.at,
                p.error.as_deref().unwrap_or("no answer")
            ),
        };
        out.push_str(&format!("  {} at {}: {poke}\n", a.name, a.address));
    }
}

/// The `ssh` section: the authorized_keys explanation, its later lines indented.
fn render_ssh_access(out: &mut String, access: Option<&SshAccessStatus>) {
    let Some(access) = access else {
        return;
    };
    out.push_str("ssh      ");
    for (i, line) in access.text.lines().enumerate() {
        if i > 0 {
            out.push_str("  ");
        }
        out.push_str(line);
        out.push('\n');
    }
}

/// The `sync` line and the last cycle under it: its result, what it held back, the files
/// overridden here.
fn render_sync(out: &mut String, sync: &SyncStatus) {
    out.push_str(&format!(
        "sync     {} ahead, {} behind the forge {}\n",
        sync.ahead,
        sync.behind,
        match &sync.last_fetch {
            Some(t) => format!("as of the last fetch ({t})"),
            None => "(never fetched: run `fleetkey sync`)".to_string(),
        }
    ));
    if let Some(c) = &sync.last_cycle {
        out.push_str(&format!(
            "  last cycle {} ({} ms): {}{}\n",
            c.started,
            c.duration_ms,
            c.result,
            c.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    for h in sync.last_cycle.iter().flat_map(|c| &c.held_back) {
        out.push_str(&format!("  HELD BACK: {h}\n"));
    }
    for o in &sync.overridden {
        out.push_str(&format!(
            "  overridden here: ~/{o} (this machine's own version)\n"
        ));
    }
}

/// The conflict copies still on disk, and how to settle them.
fn render_conflicts(out: &mut String, conflicts: &[crate::sync::state::ConflictRecord]) {
    for c in conflicts {
        out.push_str(&format!(
            "  CONFLICT: {} took the fleet's version; {}'s is kept in {} ({})\n",
            c.path.display(),
            c.machine,
            c.copy.display(),
            c.reason
        ));
    }
    if !conflicts.is_empty() {
        out.push_str(
            "  (`fleetkey conflicts` lists them; `fleetkey resolve PATH --keep here|fleet` settles one)\n",
        );
    }
}

/// The `secrets` line (a count, or why they cannot be read), the secrets needing a new value,
/// and the concurrent edits kept aside.
fn render_secrets(out: &mut String, secrets: &SecretsStatus) {
    match (&secrets.count, &secrets.error) {
        (Some(n), _) => out.push_str(&format!("secrets  {n}\n")),
        (None, Some(e)) => out.push_str(&format!("secrets  cannot be read here: {e}\n")),
        _ => {}
    }
    for n in &secrets.needs_new_value {
        out.push_str(&format!(
            "  NEEDS A NEW VALUE: {} (since {}: {})\n",
            n.key, n.since, n.reason
        ));
    }
    for c in &secrets.conflicts {
        out.push_str(&format!("  CONFLICT: {} ({})\n", c.key, c.text));
    }
}

/// One `agent` line per background agent, with its state.
fn render_agents(out: &mut String, agents: &[crate::agents::AgentStatus]) {
    for a in agents {
        let state = match (a.installed, a.up_to_date, a.loaded) {
            (false, _, _) => "not installed",
            (true, false, _) => "out of date (run `fleetkey agents install`)",
            (true, true, Some(true)) => "loaded",
            (true, true, Some(false)) => "installed, not loaded",
            (true, true, None) => "installed",
        };
        out.push_str(&format!("agent    {}: {state}\n", a.agent));
    }
}

/// The stale secrets.recipients line (last, after the agents): who re-encrypts them depends on
/// whether this machine only receives.
fn render_stale_recipients(out: &mut String, s: &Status) {
    if !s.secrets.stale_recipients {
        return;
    }
    let receiver =
        s.fleet.roles.iter().any(|r| {
            r.name == s.machine.name && r.role == crate::authority::Role::Receiver.as_str()
        });
    out.push_str(if receiver {
        "  secrets.recipients differs from the roster: the next sync of an admin or member re-encrypts them (this machine only receives)\n"
    } else {
        "  secrets.recipients differs from the roster: run `fleetkey sync` to re-encrypt\n"
    });
}

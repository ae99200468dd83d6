//! What one cycle may touch, checked once from the fleet.toml in force.
//!
//! Owns: turning fleet.toml's paths (the managed and private lists, `[secrets] materialize`,
//! `[authorized_keys] path`) into checked paths under `$HOME` through [`crate::confine`], the
//! one check `track` uses too, and keeping every refused entry as a report. A bad entry is
//! skipped alone; the rest of the cycle goes on. Must never: hand capture or apply a path that
//! did not pass the check, or quote fleet.toml's content beyond the refused path itself.

use std::collections::BTreeSet;
use std::path::Path;

use crate::config::{Backend, FleetConfig};
use crate::confine::{Confinement, HomeDir, HomeRel};
use crate::error::Result;
use crate::fleet::Machine;

use super::ignore::IgnoreRules;
use super::managed::{self, Managed};
use super::placeholder::{Placeholders, SecretValues};

/// The checked paths of one cycle.
#[derive(Debug)]
pub struct Plan {
    /// The fleet.toml in force.
    pub fleet: FleetConfig,
    /// This machine's `$HOME` and fleetkey's own directories.
    pub confinement: Confinement,
    /// The managed list, bad entries left out.
    pub managed: Vec<Managed>,
    /// The `[sync] private` list, bad entries left out.
    pub private: Vec<Managed>,
    /// Where the decrypted secrets are written, when set and allowed.
    pub materialize: Option<HomeRel>,
    /// Where the authorized_keys merge is applied, when allowed.
    pub authorized_keys: Option<HomeRel>,
    /// Files never synced: the built-in list and `[sync] ignore`.
    pub ignore: IgnoreRules,
    /// The home-path and secrets transform (native backend; `[sync] literal` paths left
    /// out). [`Plan::new`] makes it without the secrets, [`Plan::for_machine`] with them.
    pub placeholders: Placeholders,
    /// The `[sync] allow_tokens` list: files captured even when they hold what looks like a
    /// credential.
    pub allow_tokens: Vec<Managed>,
    /// Every refused entry, with why (for the cycle's report).
    pub held_back: Vec<String>,
}

impl Plan {
    /// Checks `fleet`'s paths for `machine`.
    pub fn new(machine: &Machine, fleet: FleetConfig) -> Plan {
        let confinement = Confinement::for_machine(&machine.paths, &machine.config.repo);
        let (managed, bad_paths) =
            managed::parse_entries("sync.paths", &fleet.sync.paths, &confinement);
        let (private, bad_private) =
            managed::parse_entries("sync.private", &fleet.sync.private, &confinement);
        let (literal, bad_literal) =
            managed::parse_entries("sync.literal", &fleet.sync.literal, &confinement);
        let (allow_tokens, bad_allow) =
            managed::parse_entries("sync.allow_tokens", &fleet.sync.allow_tokens, &confinement);
        let mut held_back: Vec<String> = bad_paths
            .iter()
            .chain(&bad_private)
            .chain(&bad_literal)
            .chain(&bad_allow)
            .map(ToString::to_string)
            .collect();
        let (ignore, bad_ignore) = IgnoreRules::new(&fleet.sync.ignore);
        held_back.extend(bad_ignore);
        let placeholders = match fleet.backend {
            Backend::Native => Placeholders::new(confinement.home(), literal),
            Backend::Chezmoi => Placeholders::off(),
        };
        let mut file_setting = |key: &str, entry: Option<&String>| {
            let entry = entry?;
            let checked = if key == "secrets.materialize" {
                confinement.check_materialize(entry)
            } else {
                confinement.check_file_entry(entry)
            };
            match checked {
                Ok(rel) => Some(rel),
                Err(refusal) => {
                    held_back.push(format!("fleet.toml: {key} {refusal}; it is not written"));
                    None
                }
            }
        };
        let materialize = file_setting("secrets.materialize", fleet.secrets.materialize.as_ref());
        let authorized_keys =
            file_setting("authorized_keys.path", Some(&fleet.authorized_keys.path));
        Plan {
            fleet,
            confinement,
            managed,
            private,
            materialize,
            authorized_keys,
            ignore,
            placeholders,
            allow_tokens,
            held_back,
        }
    }

    /// The plan of the fleet.toml in force on `machine` (its report includes a fleet.toml
    /// held back as invalid).
    pub fn for_machine(machine: &Machine) -> Result<Plan> {
        Ok(Plan::in_force(machine, machine.fleet_settings()?))
    }

    /// The plan of `settings`, the fleet.toml in force on `machine` as the caller read it
    /// (with [`Machine::keep_valid_fleet`], which the cycle calls anyway).
    pub fn in_force(machine: &Machine, settings: crate::fleet::InForce) -> Plan {
        let mut plan = Plan::new(machine, settings.config);
        plan.held_back.splice(0..0, settings.held_back);
        if plan.fleet.backend == Backend::Native {
            let secrets = secret_values(machine);
            plan.placeholders = std::mem::take(&mut plan.placeholders).with_secrets(secrets);
        }
        plan
    }

    /// The transform for a capture: [`Plan::placeholders`], plus the values the secrets had
    /// in `applied` (the tree this machine last applied, from its manifest) where they changed
    /// since, so a live file still holding a rotated value stores its placeholder, never the
    /// old value.
    pub fn placeholders_since(
        &self,
        machine: &Machine,
        repo: &git2::Repository,
        applied: Option<&str>,
    ) -> Placeholders {
        let current = self.placeholders.secrets().fingerprint();
        let earlier = applied
            .and_then(|id| git2::Oid::from_str(id).ok())
            .and_then(|id| repo.find_tree(id).ok())
            .and_then(|tree| tree.get_path(Path::new(crate::secrets::CIPHERTEXT)).ok())
            .filter(|entry| !current.starts_with(&entry.id().to_string()))
            .and_then(|entry| repo.find_blob(entry.id()).ok())
            .and_then(|blob| {
                let label = Path::new(crate::secrets::CIPHERTEXT);
                machine.identities().ok()?.iter().find_map(|id| {
                    let plain = crate::secrets::decrypt(blob.content(), id, label).ok()?;
                    crate::secrets::parse_plaintext(&plain, label).ok()
                })
            });
        match earlier {
            Some(env) => self.placeholders.with_earlier_secrets(&env),
            None => self.placeholders.clone(),
        }
    }

    /// Files capture never reads whatever the managed list says: the ones fleetkey itself
    /// writes from the fleet: the materialized secrets (plaintext), now or ever before on this
    /// machine (`state_dir` remembers them, so a later fleet.toml that drops `materialize` and
    /// manages the old file still cannot upload it), and authorized_keys (the merge's).
    pub fn never_captured(&self, state_dir: &Path) -> BTreeSet<String> {
        let mut out = super::state::materialized(state_dir);
        out.extend(
            self.materialize
                .iter()
                .chain(&self.authorized_keys)
                .map(|r| r.as_str().to_string()),
        );
        out
    }

    /// `$HOME`, open for confined reads and writes.
    pub fn open_home(&self) -> Result<HomeDir> {
        Ok(HomeDir::open(self.confinement.home())?)
    }

    /// What `rel` (a path the user named, relative to `$HOME`) is to the managed list: a
    /// managed file, or a directory (a managed one, one inside it, or one that holds managed
    /// paths or this machine's `overrides`). Anything else is refused as not managed, so
    /// `log`, `restore` and `diff` never answer "no history" about a path they do not manage.
    pub fn managed_kind(&self, rel: &str, overrides: &[String]) -> Result<ManagedKind> {
        let under = |other: &str| {
            other.len() > rel.len() && other.starts_with(rel) && other.as_bytes()[rel.len()] == b'/'
        };
        if self.managed.iter().any(|m| m.dir && m.rel == rel) {
            return Ok(ManagedKind::Dir);
        }
        if self.managed.iter().any(|m| m.dir && m.covers(rel)) {
            let live_dir = std::fs::symlink_metadata(self.confinement.home().join(rel))
                .is_ok_and(|m| m.is_dir());
            return Ok(if live_dir {
                ManagedKind::Dir
            } else {
                ManagedKind::File
            });
        }
        if self.managed.iter().any(|m| m.rel == rel) || overrides.iter().any(|o| o == rel) {
            return Ok(ManagedKind::File);
        }
        if self.managed.iter().any(|m| under(&m.rel)) || overrides.iter().any(|o| under(o)) {
            return Ok(ManagedKind::Dir);
        }
        Err(crate::error::Error::refused(format!(
            "~/{rel} is not managed by the fleet"
        ))
        .hint(format!(
            "`fleetkey config get paths` lists the managed paths; `fleetkey track ~/{rel}` adds it"
        )))
    }
}

/// What a path is to the managed list (see [`Plan::managed_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagedKind {
    /// A managed file.
    File,
    /// A directory with managed files under it.
    Dir,
}

/// The fleet secrets `machine` can read, for the placeholders: none (with the ciphertext's id,
/// so apply notices when they become readable) when it cannot, nothing when the fleet has no
/// secrets file.
pub fn secret_values(machine: &Machine) -> SecretValues {
    let path = crate::secrets::SecretsFile::new(&machine.config.repo).ciphertext_path();
    let Ok(ciphertext) = std::fs::read(&path) else {
        return SecretValues::default();
    };
    let fingerprint = git2::Oid::hash_object(git2::ObjectType::Blob, &ciphertext)
        .map(|o| o.to_string())
        .unwrap_or_default();
    match machine.secrets() {
        Ok(env) => SecretValues::new(&env, fingerprint),
        Err(e) => {
            crate::log::debug(&format!(
                "the secrets cannot be read here, so no secret placeholder is filled in: {e}"
            ));
            SecretValues::unreadable(&fingerprint)
        }
    }
}

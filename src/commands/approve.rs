//! `approve NAME [--code CODE]` and the enrollment request it reads.
//!
//! A request is one commit on the side branch `fleetkey/pending/NAME`, made by `enroll` on top
//! of the fleet tip it fetched, adding `keys/pending/NAME.{age,ssh,sign,poke}.pub` (one key a
//! file) and `keys/pending/NAME.proof` (see [`crate::enrollment`]). It is untrusted data:
//! anyone with forge access can write that branch. So `approve` shows every key, checks the
//! proof against the key files, and admits the keys only when the enrollment code the user
//! gives (typed on a terminal, else `--code`) is the one the statement of these keys makes. It
//! then commits the keys and the proof to the fleet branch (signed), pushes, and deletes the
//! side branch.
//!
//! Owns: reading and checking a request. Must never: admit keys nobody confirmed by their code,
//! admit a revoked key, take one key's fingerprint for the whole request, or read more than a
//! small key file from the request.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use crate::authority::Role;
use crate::enrollment::{self, Statement};
use crate::error::{Error, ErrorKind, Result};
use crate::fault;
use crate::files;
use crate::fleet::Machine;
use crate::forge::{self, Forge};
use crate::output::outln;
use crate::roster::{self, Member, Roster, layout};
use crate::secrets::{CIPHERTEXT, RECIPIENTS, SecretsFile};
use crate::signing::{self, Signer};
use crate::sync::{Begin, FleetChange};

use super::lifecycle::print_key;

/// Largest key file read from a request.
const KEY_LIMIT: usize = 64 * 1024;

/// The local ref a fetched request is kept under.
fn local_ref(name: &str) -> String {
    format!("refs/fleetkey/pending/{name}")
}

/// The public half of a request: what `enroll` puts on the side branch, one key a file.
pub struct RequestKeys<'a> {
    /// The age recipient (`age1…`).
    pub recipient: &'a str,
    /// The SSH login key line.
    pub ssh_line: &'a str,
    /// The poke key line.
    pub poke_line: &'a str,
    /// The proof file's text (see [`crate::enrollment`]).
    pub proof: &'a str,
}

/// Makes the request commit: `base`'s tree plus `keys/pending/NAME.*` (one key a file) and
/// `keys/pending/NAME.proof`, signed by the new machine's own key (not a member's: members
/// never treat it as fleet history).
pub fn request_commit(
    repo: &git2::Repository,
    base: git2::Oid,
    signer: &Signer,
    keys: &RequestKeys<'_>,
) -> Result<git2::Oid> {
    let name = &signer.name;
    let base = repo
        .find_commit(base)
        .map_err(Error::git("cannot read the fleet's tip"))?;
    let base_tree = base.tree().map_err(Error::git("cannot read a tree"))?;
    let mut b = git2::build::TreeUpdateBuilder::new();
    let sign_line = signer.key().public_line();
    for (path, text) in [
        (
            layout::age_pub(layout::PENDING, name),
            format!("{}\n", keys.recipient),
        ),
        (
            layout::ssh_pub(layout::PENDING, name),
            format!("{}\n", keys.ssh_line.trim()),
        ),
        (
            layout::sign_pub(layout::PENDING, name),
            format!("{sign_line}\n"),
        ),
        (
            layout::poke_pub(layout::PENDING, name),
            format!("{}\n", keys.poke_line.trim()),
        ),
        (layout::proof(layout::PENDING, name), keys.proof.to_string()),
    ] {
        let blob = repo
            .blob(text.as_bytes())
            .map_err(Error::git("cannot store a key"))?;
        b.upsert(path.as_str(), blob, git2::FileMode::Blob);
    }
    let tree_id = b
        .create_updated(repo, &base_tree)
        .map_err(Error::git("cannot write the request's tree"))?;
    let tree = repo
        .find_tree(tree_id)
        .map_err(Error::git("cannot read a tree"))?;
    signing::commit(
        repo,
        signer,
        None,
        &format!("{name}: enroll, waiting for approval"),
        &tree,
        &[&base],
    )
}

/// A request as read from its side branch: the keys (one a file) and the proof's text.
pub struct Request {
    /// The machine and its keys.
    pub member: Member,
    /// The text of `NAME.proof`.
    pub proof: String,
}

impl Request {
    /// The statement these keys make in the fleet founded by `fleet`.
    pub fn statement(&self, fleet: &str) -> Statement {
        let m = &self.member;
        Statement::new(
            fleet,
            &m.name,
            &m.recipient.to_string(),
            &m.ssh_keys[0],
            &m.signing[0],
            &m.poke[0],
        )
    }
}

/// Reads the request for `name` from commit `oid`: each key file must hold exactly one key (its
/// files are checked as the roster's are: every error names the file and line, never the
/// content), and the proof must be there.
pub fn read_request(repo: &git2::Repository, oid: git2::Oid, name: &str) -> Result<Request> {
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(Error::git("cannot read the enrollment request"))?;
    let read = |path: &str| -> Result<Option<(String, PathBuf)>> {
        let Ok(entry) = tree.get_path(Path::new(path)) else {
            return Ok(None);
        };
        let blob = repo
            .find_blob(entry.id())
            .map_err(|_| Error::refused(format!("{path} in the request is not a file")))?;
        if blob.content().len() > KEY_LIMIT {
            return Err(Error::refused(format!(
                "{path} in the request is too large"
            )));
        }
        let text = String::from_utf8(blob.content().to_vec())
            .map_err(|_| Error::refused(format!("{path} in the request is not text")))?;
        Ok(Some((text, PathBuf::from(path))))
    };
    let missing = |what: &str| {
        ErrorKind::Refused(format!(
            "the enrollment request of {name} has no {what}; nothing was approved"
        ))
        .hint("the request was made by an older fleetkey or tampered with: run `fleetkey enroll NAME --remote URL` again on the new machine")
    };
    let (age_text, age_path) =
        read(&layout::age_pub(layout::PENDING, name))?.ok_or_else(|| missing("age recipient"))?;
    let recipient = roster::parse_one_recipient(&age_text, &age_path)?;
    let ssh_key = |path: String, what: &str| -> Result<ssh_key::PublicKey> {
        let (text, path) = read(&path)?.ok_or_else(|| missing(what))?;
        roster::parse_one_key(&text, &path)
    };
    let ssh = ssh_key(layout::ssh_pub(layout::PENDING, name), "SSH key")?;
    let signing = ssh_key(layout::sign_pub(layout::PENDING, name), "signing key")?;
    let poke = ssh_key(layout::poke_pub(layout::PENDING, name), "poke key")?;
    for (key, path) in [
        (&signing, layout::sign_pub(layout::PENDING, name)),
        (&poke, layout::poke_pub(layout::PENDING, name)),
    ] {
        if key.algorithm() != ssh_key::Algorithm::Ed25519 {
            return Err(Error::refused(format!(
                "{path}: the key is not ed25519; nothing was approved"
            )));
        }
    }
    let (proof, _) =
        read(&layout::proof(layout::PENDING, name))?.ok_or_else(|| missing("proof"))?;
    Ok(Request {
        member: Member {
            name: name.to_string(),
            recipient,
            ssh_keys: vec![ssh],
            signing: vec![signing],
            poke: vec![poke],
        },
        proof,
    })
}

/// The machines waiting for approval: the forge's `fleetkey/pending/*` branches.
pub fn pending_names(forge: &Forge) -> Result<Vec<String>> {
    let mut names = forge.list_branches("fleetkey/pending/")?;
    names.retain(|n| roster::check_name(n).is_ok());
    names.sort();
    Ok(names)
}

/// `approve NAME [--code CODE] [--role ROLE]`.
pub fn approve(name: &str, code: Option<&str>, role: Role) -> Result<()> {
    roster::check_name(name)?;
    let machine = Machine::load()?;
    let change = FleetChange::begin(&machine, Begin::InStep)?;
    let (repo, forge) = (&change.repo, change.forge());
    let roster = Roster::load(repo.root())?;
    crate::authority::require_admin(repo.root(), &machine.config.name, "approve a machine")?;
    let found =
        forge.fetch_branch_to(repo.root(), &forge::pending_branch(name), &local_ref(name))?;
    if roster.active(name).is_some() {
        crate::log::info(&format!("{name} is already approved"));
        change.publish()?;
        if found {
            drop_request(forge, repo, name);
        }
        return Ok(());
    }
    refuse_unknown(&roster, name, found)?;
    // The fetched request is kept only while it is being approved.
    let forget = || {
        if let Ok(mut r) = repo.raw().find_reference(&local_ref(name)) {
            let _ = r.delete();
        }
    };
    let request = checked_request(repo, &roster, name, role, code).inspect_err(|_| forget())?;
    let count = admit(&change, name, &request, role)?;
    outln!("fleetkey: approved {name} as {role}; the secrets are encrypted to {count} machines")?;
    change.publish()?;
    drop_request(forge, repo, name);
    Ok(())
}

/// A name with no request waiting, or a revoked name, is not approved.
fn refuse_unknown(roster: &Roster, name: &str, found: bool) -> Result<()> {
    if !found {
        return Err(ErrorKind::Refused(format!(
            "no machine called {name} is waiting for approval"
        ))
        .hint("on the new machine, run `fleetkey enroll NAME --remote URL` first"));
    }
    if roster.is_revoked_name(name) {
        return Err(ErrorKind::Refused(format!(
            "{name} was revoked from this fleet; a revoked name is not reused"
        ))
        .into());
    }
    Ok(())
}

/// The fetched request of `name`, read within its limits, holding no revoked key, shown key by
/// key, its proof holding for these keys in this fleet, and confirmed by the enrollment code
/// (typed on a terminal, else `code`).
fn checked_request(
    repo: &crate::repo::FleetRepo,
    roster: &Roster,
    name: &str,
    role: Role,
    code: Option<&str>,
) -> Result<Request> {
    let oid = repo
        .raw()
        .refname_to_id(&local_ref(name))
        .map_err(Error::git("cannot read the fetched request"))?;
    let request = read_request(repo.raw(), oid, name)?;
    refuse_revoked_keys(roster, &request.member)?;
    let head = repo
        .head()
        .ok_or_else(|| Error::refused("the clone has no fleet commit"))?;
    let founding = crate::trust::founding_commit(repo.raw(), head)?;
    let statement = request.statement(&founding.to_string());
    show_request(name, &request.member, role)?;
    if let Err(problem) = statement.check(&request.proof) {
        return Err(ErrorKind::Refused(format!(
            "the enrollment request of {name} is not proven: {problem}; nothing was approved"
        ))
        .hint("the request was changed on the forge after the new machine made it: run `fleetkey enroll NAME --remote URL` again there"));
    }
    confirm(name, role, &statement.code(), code)?;
    Ok(request)
}

/// Every key of the request, and the role it would get.
fn show_request(name: &str, pending: &Member, role: Role) -> Result<()> {
    outln!("fleetkey: {name} asks to join the fleet with these keys:")?;
    outln!("  age recipient:   {}", pending.recipient)?;
    for key in &pending.ssh_keys {
        print_key("ssh fingerprint", key)?;
    }
    for key in &pending.signing {
        outln!("  signing key:     {}", signing::fingerprint(key))?;
    }
    for key in &pending.poke {
        outln!("  poke key:        {}", signing::fingerprint(key))?;
    }
    outln!("  role:            {role} ({})", role.describe())?;
    Ok(())
}

/// Writes the request's keys, proof and role into `keys/`, re-encrypts the secrets to the new
/// roster and commits both (signed). Returns how many machines the secrets are encrypted to.
fn admit(change: &FleetChange, name: &str, request: &Request, role: Role) -> Result<usize> {
    let repo = &change.repo;
    let pending = &request.member;
    let env = change.machine.secrets()?;
    let line = |k: &ssh_key::PublicKey| format!("{}\n", roster::key_line(k));
    let mut touched: Vec<String> = Vec::new();
    for (path, text) in [
        (
            layout::age_pub(layout::KEYS, name),
            format!("{}\n", pending.recipient),
        ),
        (
            layout::ssh_pub(layout::KEYS, name),
            line(&pending.ssh_keys[0]),
        ),
        (
            layout::sign_pub(layout::KEYS, name),
            line(&pending.signing[0]),
        ),
        (layout::poke_pub(layout::KEYS, name), line(&pending.poke[0])),
        (layout::proof(layout::KEYS, name), request.proof.clone()),
        (layout::role(layout::KEYS, name), format!("{role}\n")),
    ] {
        files::write_atomic(&repo.root().join(&path), text.as_bytes(), 0o644)?;
        touched.push(path);
    }
    fault::point("approve:moved");
    let roster = Roster::load(repo.root())?;
    SecretsFile::new(repo.root()).store(&env, &roster)?;
    fault::point("approve:encrypted");
    touched.push(CIPHERTEXT.into());
    touched.push(RECIPIENTS.into());
    let refs: Vec<&str> = touched.iter().map(String::as_str).collect();
    change.commit(
        &refs,
        &format!(
            "{}: approve {name} as {role}; secrets re-encrypted to {} machines",
            change.machine.config.name,
            roster.active.len()
        ),
    )?;
    fault::point("approve:committed");
    Ok(roster.active.len())
}

/// `role NAME ROLE`: an admin changes an active machine's role (`keys/NAME.role`), in one
/// signed commit. The last admin is never demoted: the fleet would have no one to approve or
/// revoke.
pub fn set_role(name: &str, role: Role) -> Result<()> {
    roster::check_name(name)?;
    let machine = Machine::load()?;
    let change = FleetChange::begin(&machine, Begin::InStep)?;
    let repo = &change.repo;
    let me = &machine.config.name;
    crate::authority::require_admin(repo.root(), me, "change a role")?;
    let roster = Roster::load(repo.root())?;
    if roster.active(name).is_none() {
        return Err(
            ErrorKind::Refused(format!("{name} is not an active machine of this fleet"))
                .hint("`fleetkey status` lists the machines"),
        );
    }
    let current = crate::authority::role_in(repo.root(), name);
    if current == role {
        outln!("fleetkey: {name} is already {role}")?;
        return Ok(());
    }
    let admins = roster
        .active
        .iter()
        .filter(|m| crate::authority::role_in(repo.root(), &m.name) == Role::Admin)
        .count();
    if current == Role::Admin && admins <= 1 {
        return Err(ErrorKind::Refused(format!(
            "{name} is the fleet's last admin; a fleet without an admin can approve and revoke no one"
        ))
        .hint("make another machine admin first: `fleetkey role OTHER admin`"));
    }
    let path = layout::role(layout::KEYS, name);
    files::write_atomic(
        &repo.root().join(&path),
        format!("{role}\n").as_bytes(),
        0o644,
    )?;
    change.commit(
        &[&path],
        &format!("{me}: {name} becomes {role} (was {current})"),
    )?;
    outln!("fleetkey: {name} is now {role}: {}", role.describe())?;
    // Whose login keys every authorized_keys admits follows the role (`[authorized_keys] from`):
    // the poke carries it to the online peers at once, as after a revocation.
    let published = change.publish_and_deliver();
    crate::commands::lifecycle::revoke::tell_delivery(&published.delivery)?;
    published.pushed
}

/// Refuses a request that holds a key of `roster`'s revoked set: a revoked key never comes back.
fn refuse_revoked_keys(roster: &Roster, member: &Member) -> Result<()> {
    let age = member.recipient.to_string();
    let hit = roster.revoked.iter().find(|r| match &r.key {
        roster::RevokedKey::Age(a) => *a == age,
        roster::RevokedKey::Ssh(k) => member
            .ssh_keys
            .iter()
            .chain(&member.signing)
            .chain(&member.poke)
            .any(|m| m.key_data() == k.key_data()),
    });
    match hit {
        None => Ok(()),
        Some(r) => Err(ErrorKind::Refused(format!(
            "the enrollment request of {} holds a revoked key (revoked: {}); nothing was approved",
            member.name,
            r.note.trim()
        ))
        .hint("a revoked key never comes back: on the new machine, move the old keys aside and run `fleetkey enroll NAME --remote URL` again (it makes fresh keys); see docs/rotation.md")),
    }
}

/// Deletes the request's side branch on the forge and its local copy; a failure is a warning
/// (the branch is harmless once the keys are in the roster).
fn drop_request(forge: &Forge, repo: &crate::repo::FleetRepo, name: &str) {
    if let Err(e) = forge.delete_branch(repo.root(), &forge::pending_branch(name)) {
        crate::log::warn(&format!("cannot delete the request branch of {name}: {e}"));
    }
    if let Ok(mut r) = repo.raw().find_reference(&local_ref(name)) {
        let _ = r.delete();
    }
}

/// The ceremony: the enrollment code `enroll` printed on the new machine must be given, by
/// `--code` or typed on a terminal; an SSH fingerprint alone is no code.
fn confirm(name: &str, role: Role, expected: &str, code: Option<&str>) -> Result<()> {
    let where_hint = "`fleetkey enroll` printed the line `enrollment code: …` on the new machine; `fleetkey status` there shows it again";
    let typed = match code {
        Some(c) => c.to_string(),
        None => {
            let stdin = std::io::stdin();
            if !stdin.is_terminal() {
                return Err(ErrorKind::Refused(format!(
                    "approving {name} needs --code when stdin is not a terminal"
                ))
                .hint(format!(
                    "{where_hint}; then run `fleetkey approve {name} --code CODE`"
                )));
            }
            let mut err = std::io::stderr();
            let _ = writeln!(
                err,
                "{name} is approved as {role} (`--role` changes it). The roles:"
            );
            for r in [Role::Admin, Role::Member, Role::Receiver] {
                let _ = writeln!(err, "  {:<9} {}", r.as_str(), r.describe());
            }
            let _ = write!(
                err,
                "Type the enrollment code that `fleetkey enroll` printed on {name} (empty: approve nothing): "
            );
            let _ = err.flush();
            let mut answer = String::new();
            stdin
                .lock()
                .read_line(&mut answer)
                .map_err(Error::io("cannot read the answer from", Path::new("stdin")))?;
            if answer.trim().is_empty() {
                return Err(ErrorKind::Refused(format!("{name} was not approved")).into());
            }
            answer
        }
    };
    if enrollment::looks_like_fingerprint(&typed) {
        return Err(ErrorKind::Refused(format!(
            "a key's fingerprint does not approve {name}: one key says nothing of the others in the request; nothing was approved"
        ))
        .hint(format!("{where_hint}; give that code to `--code`")));
    }
    if enrollment::code_matches(expected, &typed) {
        return Ok(());
    }
    Err(ErrorKind::Refused(format!(
        "the enrollment code does not match {name}'s request; nothing was approved"
    ))
    .hint(format!(
        "{where_hint}; a mismatch may mean the request was tampered with on the forge"
    )))
}

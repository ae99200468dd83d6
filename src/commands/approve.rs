//! `approve NAME [--fingerprint FP]` and the enrollment request it reads.
//!
//! A request is one commit on the side branch `fleetkey/pending/NAME`, made by `enroll` on top
//! of the fleet tip it fetched, adding `keys/pending/NAME.{age,ssh,sign}.pub`. It is untrusted
//! data: anyone with forge access can write that branch. So `approve` shows every fingerprint
//! (with randomart) and admits the keys only when the user confirmed them: on a terminal by a
//! "yes" (default no), otherwise by `--fingerprint` matching one of them. It then commits the
//! keys to the fleet branch (signed), pushes, and deletes the side branch.
//!
//! Must never: admit keys nobody confirmed, or read more than a small key file from the
//! request.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

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

use super::lifecycle::{print_fingerprints, print_key};

/// Largest key file read from a request.
const KEY_LIMIT: usize = 64 * 1024;

/// The local ref a fetched request is kept under.
fn local_ref(name: &str) -> String {
    format!("refs/fleetkey/pending/{name}")
}

/// Makes the request commit: `base`'s tree plus `keys/pending/NAME.*`, signed by the new
/// machine's own key (not a member's: members never treat it as fleet history).
pub fn request_commit(
    repo: &git2::Repository,
    base: git2::Oid,
    signer: &Signer,
    recipient: &str,
    ssh_line: &str,
    sign_line: &str,
) -> Result<git2::Oid> {
    let name = &signer.name;
    let base = repo
        .find_commit(base)
        .map_err(Error::git("cannot read the fleet's tip"))?;
    let base_tree = base.tree().map_err(Error::git("cannot read a tree"))?;
    let mut b = git2::build::TreeUpdateBuilder::new();
    for (path, line) in [
        (layout::age_pub(layout::PENDING, name), recipient),
        (layout::ssh_pub(layout::PENDING, name), ssh_line),
        (layout::sign_pub(layout::PENDING, name), sign_line),
    ] {
        let blob = repo
            .blob(format!("{line}\n").as_bytes())
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

/// Reads the request for `name` from commit `oid` (its files are checked as the roster's are:
/// every error names the file and line, never the content).
pub fn read_request(repo: &git2::Repository, oid: git2::Oid, name: &str) -> Result<Member> {
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
        Error::refused(format!(
            "the enrollment request of {name} has no {what}; nothing was approved"
        ))
    };
    let (age_text, age_path) =
        read(&layout::age_pub(layout::PENDING, name))?.ok_or_else(|| missing("age recipient"))?;
    let line = age_text
        .lines()
        .position(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .ok_or_else(|| missing("age recipient"))?;
    let recipient = crate::identity::parse_recipient(
        age_text.lines().nth(line).unwrap_or_default(),
        &age_path,
        line + 1,
    )?;
    let ssh_keys = match read(&layout::ssh_pub(layout::PENDING, name))? {
        Some((text, path)) => roster::parse_ssh_keys(&text, &path)?,
        None => Vec::new(),
    };
    let (sign_text, sign_path) =
        read(&layout::sign_pub(layout::PENDING, name))?.ok_or_else(|| missing("signing key"))?;
    let signing = roster::parse_ssh_keys(&sign_text, &sign_path)?
        .into_iter()
        .next()
        .ok_or_else(|| missing("signing key"))?;
    if signing.algorithm() != ssh_key::Algorithm::Ed25519 {
        return Err(Error::refused(format!(
            "{}: the signing key is not ed25519; nothing was approved",
            sign_path.display()
        )));
    }
    Ok(Member {
        name: name.to_string(),
        recipient,
        ssh_keys,
        signing: vec![signing],
        // A new member publishes its poke key itself, with its first cycle as a member.
        poke: Vec::new(),
    })
}

/// The machines waiting for approval: the forge's `fleetkey/pending/*` branches.
pub fn pending_names(forge: &Forge) -> Result<Vec<String>> {
    let mut names = forge.list_branches("fleetkey/pending/")?;
    names.retain(|n| roster::check_name(n).is_ok());
    names.sort();
    Ok(names)
}

/// `approve NAME [--fingerprint FP]`.
pub fn approve(name: &str, fingerprint: Option<&str>) -> Result<()> {
    roster::check_name(name)?;
    let machine = Machine::load()?;
    let change = FleetChange::begin(&machine, Begin::InStep)?;
    let (repo, forge) = (&change.repo, change.forge());
    let roster = Roster::load(repo.root())?;
    let me = &machine.config.name;
    let branch = forge::pending_branch(name);
    let found = forge.fetch_branch_to(repo.root(), &branch, &local_ref(name))?;
    if roster.active(name).is_some() {
        crate::log::info(&format!("{name} is already approved"));
        change.publish()?;
        if found {
            drop_request(forge, repo, name);
        }
        return Ok(());
    }
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
    let oid = repo
        .raw()
        .refname_to_id(&local_ref(name))
        .map_err(Error::git("cannot read the fetched request"))?;
    // The fetched request is kept only while it is being approved.
    let forget = || {
        if let Ok(mut r) = repo.raw().find_reference(&local_ref(name)) {
            let _ = r.delete();
        }
    };
    let pending = read_request(repo.raw(), oid, name).inspect_err(|_| forget())?;
    outln!("fleetkey: {name} asks to join the fleet with these keys:")?;
    print_fingerprints(
        &pending.recipient.to_string(),
        &pending
            .ssh_keys
            .first()
            .and_then(|k| k.to_openssh().ok())
            .unwrap_or_default(),
    )?;
    for key in &pending.signing {
        print_key("signing key", key)?;
    }
    confirm(&pending, fingerprint).inspect_err(|_| forget())?;

    let env = machine.secrets()?;
    let sign_line = pending
        .signing
        .first()
        .and_then(|k| k.to_openssh().ok())
        .unwrap_or_default();
    let ssh_text: String = pending
        .ssh_keys
        .iter()
        .filter_map(|k| k.to_openssh().ok())
        .map(|l| format!("{l}\n"))
        .collect();
    let mut touched: Vec<String> = Vec::new();
    for (path, text) in [
        (
            layout::age_pub(layout::KEYS, name),
            format!("{}\n", pending.recipient),
        ),
        (layout::ssh_pub(layout::KEYS, name), ssh_text),
        (
            layout::sign_pub(layout::KEYS, name),
            format!("{sign_line}\n"),
        ),
    ] {
        if text.trim().is_empty() {
            continue;
        }
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
            "{me}: approve {name}; secrets re-encrypted to {} machines",
            roster.active.len()
        ),
    )?;
    fault::point("approve:committed");
    outln!(
        "fleetkey: approved {name}; the secrets are encrypted to {} machines",
        roster.active.len()
    )?;
    change.publish()?;
    drop_request(forge, repo, name);
    Ok(())
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

/// The ceremony: `--fingerprint` must match one of the request's keys; without it, a terminal
/// must answer "yes"; without a terminal, nothing is approved.
fn confirm(member: &Member, fingerprint: Option<&str>) -> Result<()> {
    if let Some(fp) = fingerprint {
        return check_fingerprint(member, fp);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(ErrorKind::Refused(format!(
            "approving {} needs --fingerprint when stdin is not a terminal",
            member.name
        ))
        .hint("compare the fingerprints `fleetkey enroll` printed on the new machine, then run `fleetkey approve NAME --fingerprint SHA256:…`"));
    }
    let question = format!(
        "Do these match what `fleetkey enroll` printed on {}? Approve it? [y/N]",
        member.name
    );
    if crate::output::ask_yes(&question)? {
        Ok(())
    } else {
        Err(ErrorKind::Refused(format!("{} was not approved", member.name)).into())
    }
}

/// Whether `fp` is the SHA256 fingerprint of one of `member`'s SSH keys or its signing key, or
/// its age recipient.
fn check_fingerprint(member: &Member, fp: &str) -> Result<()> {
    let fp = fp.trim();
    let sha = |k: &ssh_key::PublicKey| k.fingerprint(ssh_key::HashAlg::Sha256).to_string() == fp;
    let matches = member.ssh_keys.iter().any(sha)
        || member.signing.iter().any(sha)
        || member.recipient.to_string() == fp;
    if matches {
        return Ok(());
    }
    Err(ErrorKind::Refused(format!(
        "the fingerprint does not match {}'s pending keys; nothing was approved",
        member.name
    ))
    .hint("compare the fingerprint `fleetkey enroll` printed on the new machine; a mismatch may mean the enrollment was tampered with"))
}

//! The key lifecycle: `enroll`, `approve`, `join`, `rotate` and `revoke`.
//!
//! Each step that touches several files commits them together, so a roster and its ciphertext
//! never disagree in a commit. Every command first puts fleetkey's own files (keys/, secrets.*)
//! back as HEAD has them, so one interrupted half-way is simply run again. A private key never
//! leaves its machine, except inside a passphrase-encrypted bundle the user asked for.

use crate::output::outln;
use std::path::Path;

use crate::bundle::{self, Bundle};
use crate::clock;
use crate::enrollment::Statement;
use crate::error::{Error, ErrorKind, Result};
use crate::exposure;
use crate::files;
use crate::fleet::Machine;
use crate::forge::{self, PushOutcome};
use crate::identity::{self, Identity};
use crate::paths::Paths;
use crate::repo::FleetRepo;
use crate::roster::{self, Roster, layout};
use crate::secrets::{CIPHERTEXT, RECIPIENTS, SecretsFile};
use crate::setup::{check_not_set_up, machine_keys, settle_in, staging_dir};
use crate::signing::{Signer, SigningKey};
use crate::trust::{self, TrustState, Verdict, Verifier};

use super::approve;
use crate::{config::FleetConfig, fault, sync};

/// fleetkey's own files in the repo, restored from HEAD before a lifecycle command.
pub(crate) const OWN_FILES: &[&str] = &["keys", CIPHERTEXT, RECIPIENTS];

/// Clones the fleet branch explicitly (`main`, the branch `init` creates): a bare repository
/// whose HEAD names another branch (`master`, a forge's default) would otherwise give an empty
/// checkout. A forge without that branch is cloned at its default branch.
fn clone_fleet(remote: &str, root: &std::path::Path) -> Result<()> {
    let branch = FleetConfig::default().sync.branch;
    match forge::clone(remote, root, Some(&branch)) {
        Err(e)
            if matches!(e.kind(), ErrorKind::ForgeFailed { stderr, .. }
                if stderr.contains("not found in upstream")) =>
        {
            forge::clone(remote, root, None)
        }
        other => other,
    }
}

/// The state file holding the enrollment code of this machine's request, for `status` while
/// it waits for approval.
pub const ENROLLMENT_CODE: &str = "enrollment-code";

/// `enroll NAME --remote URL`, on the new machine: verifies the fetched history forward from
/// its founding commit (the trust root it pins), makes its keys, and pushes its request (the
/// public keys and the proof binding them, signed by its new signing key) to the side branch
/// `fleetkey/pending/NAME`. The fleet branch is not touched: this machine is not a member until
/// someone approves it.
pub fn enroll_here(name: &str, remote: &str) -> Result<()> {
    roster::check_name(name)?;
    let paths = Paths::from_env()?;
    check_not_set_up(&paths)?;
    let staging = staging_dir(&paths)?;
    let root = staging.path().join("fleet");
    clone_fleet(remote, &root)?;
    let repo = FleetRepo::open(&root)?;
    let fetched = repo
        .head()
        .ok_or_else(|| Error::refused(format!("the forge {remote} holds no fleet")))?;
    // Refuses a fleet made before signed history.
    let fleet_fp = trust::fleet_fingerprint(repo.raw(), fetched)?;
    let founding = trust::founding_commit(repo.raw(), fetched)?;
    verify_from_founding(repo.raw(), founding, fetched)?;
    let fleet = FleetConfig::load(&root)?;
    let roster = Roster::load(&root)?;
    if roster.active(name).is_some() {
        return Err(
            ErrorKind::Refused(format!("the name {name} is taken in this fleet"))
                .hint("pick another name"),
        );
    }
    if roster.is_revoked_name(name) {
        return Err(ErrorKind::Refused(format!(
            "{name} was revoked from this fleet; a revoked name is not reused"
        ))
        .hint("pick another name"));
    }
    set_aside_known_keys(&paths, &roster)?;
    let (identity, mut ssh, signing) = machine_keys(&paths, name)?;
    let poke = crate::setup::poke_key(&paths, name)?;
    if let Some(fresh) = fresh_ssh_key_if_known(&paths, &roster, &ssh, name)? {
        ssh = fresh;
    }
    let ssh_key = ssh_key::PublicKey::from_openssh(ssh.public_line.trim()).map_err(|_| {
        Error::refused(format!(
            "{} is not an OpenSSH public key",
            ssh.public_path.display()
        ))
    })?;
    let statement = Statement::new(
        &founding.to_string(),
        name,
        &identity.recipient().to_string(),
        &ssh_key,
        signing.public(),
        poke.public(),
    );
    let proof = statement.prove(&signing)?;
    let sign_fp = signing.fingerprint();
    let request = approve::request_commit(
        repo.raw(),
        fetched,
        &Signer::new(name, signing),
        &approve::RequestKeys {
            recipient: &identity.recipient().to_string(),
            ssh_line: &ssh.public_line,
            poke_line: &poke.public_line(),
            proof: &proof,
        },
    )?;
    match forge::push_to(
        &root,
        remote,
        &request.to_string(),
        &forge::pending_branch(name),
        None,
        true,
    )? {
        PushOutcome::Pushed => {}
        PushOutcome::Rejected => {
            return Err(ErrorKind::Refused(format!(
                "the forge {remote} refused the enrollment request"
            ))
            .hint("run the same command again"));
        }
    }
    drop(repo);
    let code = statement.code();
    files::ensure_private_dir(&paths.state_dir)?;
    files::write_atomic(
        &paths.state_dir.join(ENROLLMENT_CODE),
        format!("{code}\n").as_bytes(),
        0o600,
    )?;
    settle_in(
        &paths,
        &root,
        name,
        fleet.backend,
        remote,
        &founding.to_string(),
    )?;
    outln!("fleetkey: {name} is enrolled and waits for approval.")?;
    print_fingerprints(&identity.recipient().to_string(), &ssh.public_line)?;
    outln!("  signing key:     {sign_fp}")?;
    outln!("  poke key:        {}", poke.fingerprint())?;
    outln!("  fleet:           {fleet_fp}")?;
    outln!("Check that the fleet line matches `fleetkey status` on a member (this machine trusts")?;
    outln!("commit {founding} and what members signed after it, verified up to {fetched}).")?;
    outln!("enrollment code: {code}")?;
    outln!(
        "On a machine already in the fleet, give it this code (it binds the name and all four keys):"
    )?;
    outln!("  fleetkey approve {name} --code {code}")?;
    outln!("and then here: fleetkey sync")?;
    Ok(())
}

/// Whether `roster` already knows `key` (SSH-type): a member's key, or a revoked one.
fn known_key(roster: &Roster, key: &ssh_key::PublicKey) -> Option<&'static str> {
    let data = key.key_data();
    if roster.active.iter().any(|m| {
        m.ssh_keys
            .iter()
            .chain(&m.signing)
            .chain(&m.poke)
            .any(|k| k.key_data() == data)
    }) {
        return Some("already a member's key");
    }
    roster
        .revoked
        .iter()
        .any(|r| matches!(&r.key, roster::RevokedKey::Ssh(k) if k.key_data() == data))
        .then_some("revoked")
}

/// Before `enroll` makes or reuses this machine's keys: an age identity, signing key or poke
/// key that the fleet already knows (revoked, or a member's: a machine that lost its config and
/// enrolls again) is moved aside (`FILE.known-STAMP`, never deleted), so a fresh one is made.
/// A revoked key never comes back.
fn set_aside_known_keys(paths: &Paths, roster: &Roster) -> Result<()> {
    let stamp = clock::compact(clock::now_unix());
    let aside = |path: &Path, why: &str| -> Result<()> {
        let to = path.with_file_name(format!(
            "{}.known-{stamp}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("key")
        ));
        std::fs::rename(path, &to).map_err(Error::io("cannot move aside", path))?;
        outln!(
            "fleetkey: {} is {why} in this fleet; it is kept as {} and a fresh key is made",
            path.display(),
            to.display()
        )
    };
    let identity_path = paths.identity_file();
    if identity_path.exists() {
        let recipient = Identity::load(&identity_path)?.recipient().to_string();
        let revoked = roster
            .revoked
            .iter()
            .any(|r| matches!(&r.key, roster::RevokedKey::Age(a) if *a == recipient));
        if revoked {
            aside(&identity_path, "revoked")?;
        } else if roster
            .active
            .iter()
            .any(|m| m.recipient.to_string() == recipient)
        {
            aside(&identity_path, "already a member's key")?;
        }
    }
    for path in [paths.signing_key_file(), paths.poke_key_file()] {
        if path.exists()
            && let Some(why) = known_key(roster, SigningKey::load(&path)?.public())
        {
            aside(&path, why)?;
        }
    }
    Ok(())
}

/// When this machine's SSH login key is one the fleet already knows (revoked, or a member's),
/// makes a new pair `~/.ssh/fleetkey_NAME_ed25519` (the user's own key is left alone) and says
/// so; `None` when `ssh` may be used.
fn fresh_ssh_key_if_known(
    paths: &Paths,
    roster: &Roster,
    ssh: &identity::SshKey,
    name: &str,
) -> Result<Option<identity::SshKey>> {
    let Ok(key) = ssh_key::PublicKey::from_openssh(ssh.public_line.trim()) else {
        return Ok(None);
    };
    let Some(why) = known_key(roster, &key) else {
        return Ok(None);
    };
    let dir = paths.ssh_dir();
    let private = dir.join(format!("fleetkey_{name}_ed25519"));
    let public = dir.join(format!("fleetkey_{name}_ed25519.pub"));
    let line = if public.exists() {
        files::read_text(&public, 16 * 1024)?.trim().to_string()
    } else {
        let (private_text, public_line) = identity::new_ssh_keypair(&format!("fleetkey@{name}"))?;
        files::ensure_private_dir(&dir)?;
        files::create_new_private(&private, private_text.as_bytes())?;
        files::write_atomic(&public, format!("{public_line}\n").as_bytes(), 0o644)?;
        public_line
    };
    if ssh_key::PublicKey::from_openssh(&line)
        .ok()
        .and_then(|k| known_key(roster, &k))
        .is_some()
    {
        return Err(ErrorKind::Refused(format!(
            "{} is a key this fleet already knows",
            public.display()
        ))
        .hint("move it aside and run the same command again"));
    }
    outln!(
        "fleetkey: your SSH key {} is {why} in this fleet; made a new login key {} for it (use it with `ssh -i` or an IdentityFile line)",
        ssh.public_path.display(),
        private.display()
    )?;
    Ok(Some(identity::SshKey {
        public_line: line,
        public_path: public,
        created: true,
    }))
}

/// Verifies every commit from the fleet's founding commit `founding` up to `tip` exactly as a
/// member does; refuses (exit 3) a history that does not verify, before any of it is used.
fn verify_from_founding(
    repo: &git2::Repository,
    founding: git2::Oid,
    tip: git2::Oid,
) -> Result<()> {
    let mut state = TrustState::fresh(repo, founding);
    match Verifier::new(repo).verify(&mut state, tip, true)? {
        Verdict::Authentic { .. } => Ok(()),
        Verdict::Refused(refusals) => {
            let first = &refusals[0];
            Err(ErrorKind::NotAuthentic {
                commit: first.commit.clone(),
                machine: first.machine.clone(),
                why: first.why.clone(),
            }
            .hint("the forge holds commits no member signed after the founding commit: ask a member to run `fleetkey forge repair`, then enroll again"))
        }
    }
}

/// Prints an age recipient and an SSH key's fingerprint with its randomart.
pub(crate) fn print_fingerprints(recipient: &str, ssh_line: &str) -> Result<()> {
    outln!("  age recipient:   {recipient}")?;
    if let Ok(key) = ssh_key::PublicKey::from_openssh(ssh_line.trim()) {
        print_key("ssh fingerprint", &key)?;
    }
    Ok(())
}

/// Prints `label: FINGERPRINT` and the key's randomart.
pub(crate) fn print_key(label: &str, key: &ssh_key::PublicKey) -> Result<()> {
    let fp = key.fingerprint(ssh_key::HashAlg::Sha256);
    outln!("  {label}: {fp}")?;
    let header = format!(
        "{} 256",
        key.algorithm()
            .as_str()
            .trim_start_matches("ssh-")
            .to_uppercase()
    );
    for line in fp.to_randomart(&header).lines() {
        outln!("  {line}")?;
    }
    Ok(())
}

/// Loads the machine, takes the lock, brings the clone up to the forge's branch when that is a
/// fast-forward, and puts fleetkey's own files back as HEAD has them.
pub(crate) fn prepare(machine: &Machine) -> Result<(crate::lock::Lock, FleetRepo, FleetConfig)> {
    let lock = machine.lock()?;
    let repo = machine.repo()?;
    repo.restore_paths(OWN_FILES)?;
    let fleet = machine.fleet_config()?;
    match sync::exchange::fetch_verified(machine, &repo, &fleet.sync.branch) {
        Ok(refused) => {
            if !refused.is_empty() {
                crate::log::warn(&format!(
                    "the forge holds {} commits that are not authentic; working from the last authentic state",
                    refused.len()
                ));
            }
            if let Some(target) = repo.remote_tracking(&fleet.sync.branch) {
                repo.fast_forward(target)?;
            }
        }
        Err(e) if e.is_unreachable() => {
            crate::log::warn(&format!(
                "{e}; working from the last fetch{}",
                e.advice().map(|a| format!(" ({a})")).unwrap_or_default()
            ));
        }
        Err(e) => return Err(e),
    }
    Ok((lock, repo, fleet))
}

/// `enroll NAME --bundle FILE`, on an enrolled machine: makes NAME's keys here, approves them at
/// once, and writes them passphrase-encrypted to FILE for a secure channel.
pub fn enroll_bundle(name: &str, file: &Path, passphrase_file: Option<&Path>) -> Result<()> {
    roster::check_name(name)?;
    let machine = Machine::load()?;
    if file.exists() {
        return Err(ErrorKind::Refused(format!(
            "{} exists; a bundle never overwrites a file",
            file.display()
        ))
        .into());
    }
    let absolute = std::path::absolute(file).map_err(Error::io("cannot resolve", file))?;
    // Resolved through any symlink: the directory the bundle lands in, and the clone.
    let real_parent = absolute
        .parent()
        .and_then(|p| std::fs::canonicalize(p).ok());
    let real_repo =
        std::fs::canonicalize(&machine.config.repo).unwrap_or_else(|_| machine.config.repo.clone());
    if absolute.starts_with(&machine.config.repo)
        || real_parent.is_some_and(|p| p.starts_with(&real_repo))
    {
        return Err(ErrorKind::Refused(format!(
            "{} is inside the fleet repo {} (through a symlink or not): a bundle holds private keys and must never be written where a commit could take it",
            file.display(),
            machine.config.repo.display()
        ))
        .hint("write it outside the clone, e.g. `--bundle ~/NAME.bundle`"));
    }
    let passphrase = bundle::passphrase(passphrase_file, true)?;
    let (_lock, repo, fleet) = prepare(&machine)?;
    let roster = Roster::load(repo.root())?;
    if roster.active(name).is_some() || roster.pending(name).is_some() {
        return Err(ErrorKind::Refused(format!("the name {name} is taken in this fleet")).into());
    }
    if roster.is_revoked_name(name) {
        return Err(ErrorKind::Refused(format!(
            "{name} was revoked from this fleet; a revoked name is not reused"
        ))
        .into());
    }
    let env = machine.secrets()?;
    let head = repo
        .head()
        .ok_or_else(|| Error::refused("the fleet clone has no commit"))?;
    // The new machine pins the founding commit and verifies everything after it, as a member.
    let founding = trust::founding_commit(repo.raw(), head)?;
    let new = Bundle::generate(name, &founding.to_string())?;
    new.write(file, passphrase)?;
    let age_path = layout::age_pub(layout::KEYS, name);
    let ssh_path = layout::ssh_pub(layout::KEYS, name);
    let sign_path = layout::sign_pub(layout::KEYS, name);
    files::write_atomic(
        &repo.root().join(&sign_path),
        format!("{}\n", new.signing.public_line()).as_bytes(),
        0o644,
    )?;
    files::write_atomic(
        &repo.root().join(&age_path),
        format!("{}\n", new.identity.recipient()).as_bytes(),
        0o644,
    )?;
    files::write_atomic(
        &repo.root().join(&ssh_path),
        format!("{}\n", new.ssh_public).as_bytes(),
        0o644,
    )?;
    let roster = Roster::load(repo.root())?;
    SecretsFile::new(repo.root()).store(&env, &roster)?;
    let me = &machine.config.name;
    repo.commit_paths(
        &[&age_path, &ssh_path, &sign_path, CIPHERTEXT, RECIPIENTS],
        &format!("{me}: enroll and approve {name} (bundle)"),
    )?;
    outln!(
        "fleetkey: {name} is in the fleet; its keys are in {} (passphrase-encrypted).",
        file.display()
    )?;
    print_fingerprints(&new.identity.recipient().to_string(), &new.ssh_public)?;
    outln!("Carry the bundle over a secure channel, then on the new machine run:")?;
    outln!(
        "  fleetkey join {} --remote {}",
        file.display(),
        machine.config.remote
    )?;
    sync::push_merging_upstream(&machine, &repo, &fleet)
}

/// `join FILE --remote URL`, on the new machine: installs the keys from a bundle.
pub fn join(file: &Path, remote: &str, passphrase_file: Option<&Path>) -> Result<()> {
    let paths = Paths::from_env()?;
    check_not_set_up(&paths)?;
    for key in [paths.identity_file(), paths.signing_key_file()] {
        if key.exists() {
            return Err(ErrorKind::Refused(format!(
                "{} exists; joining would replace this machine's keys",
                key.display()
            ))
            .into());
        }
    }
    let passphrase = bundle::passphrase(passphrase_file, false)?;
    let b = Bundle::read(file, passphrase)?;
    let staging = staging_dir(&paths)?;
    let root = staging.path().join("fleet");
    clone_fleet(remote, &root)?;
    let fleet = FleetConfig::load(&root)?;
    let roster = Roster::load(&root)?;
    let recipient = b.identity.recipient().to_string();
    let trust_root = git2::Oid::from_str(&b.trust_root)
        .map_err(|_| Error::refused("the bundle's trust root is not a commit id"))?;
    let cloned = FleetRepo::open(&root)?;
    let holds_root = cloned.head().is_some_and(|h| {
        h == trust_root
            || cloned
                .raw()
                .graph_descendant_of(h, trust_root)
                .unwrap_or(false)
    });
    let verdict = match cloned.head() {
        Some(head) if holds_root => {
            let mut state = TrustState::load(cloned.raw(), &paths.state_dir, trust_root)?;
            let v = Verifier::new(cloned.raw()).verify(&mut state, head, true)?;
            if matches!(v, Verdict::Authentic { .. }) {
                state.save(&paths.state_dir)?;
            }
            Some(v)
        }
        _ => None,
    };
    drop(cloned);
    if let Some(Verdict::Refused(r)) = verdict {
        return Err(ErrorKind::Untrusted { refused: r.len() }.hint(format!(
            "commit {} (claims {}) was refused: {}; run `fleetkey forge repair` on a member, then join again",
            r[0].commit, r[0].machine, r[0].why
        )));
    }
    if !holds_root {
        return Err(ErrorKind::Refused(format!(
            "the forge {remote} does not hold the fleet commit the bundle pins ({trust_root})"
        ))
        .hint("check the remote URL; if the forge was tampered with, run `fleetkey forge repair` on a member"));
    }
    if roster.active(&b.name).map(|m| m.recipient.to_string()) != Some(recipient) {
        return Err(ErrorKind::Refused(format!(
            "the bundle's identity is not {}'s active key in the fleet at {remote}",
            b.name
        ))
        .hint(
            "make a new bundle with `fleetkey enroll NAME --bundle FILE` on an enrolled machine",
        ));
    }
    files::ensure_private_dir(&paths.config_dir)?;
    b.identity
        .create(&paths.identity_file(), &clock::rfc3339(clock::now_unix()))?;
    b.signing.create(&paths.signing_key_file())?;
    let ssh_dir = paths.ssh_dir();
    files::ensure_private_dir(&ssh_dir)?;
    let (private, public) =
        if ssh_dir.join("id_ed25519").exists() || ssh_dir.join("id_ed25519.pub").exists() {
            (
                ssh_dir.join(format!("fleetkey_{}_ed25519", b.name)),
                ssh_dir.join(format!("fleetkey_{}_ed25519.pub", b.name)),
            )
        } else {
            (ssh_dir.join("id_ed25519"), ssh_dir.join("id_ed25519.pub"))
        };
    files::create_new_private(&private, b.ssh_private.as_bytes())?;
    files::write_atomic(&public, format!("{}\n", b.ssh_public).as_bytes(), 0o644)?;
    settle_in(&paths, &root, &b.name, fleet.backend, remote, &b.trust_root)?;
    outln!("fleetkey: this machine joined the fleet as {}", b.name)?;
    outln!("  identity: {}", paths.identity_file().display())?;
    outln!("  ssh key:  {}", private.display())?;
    // The bundle is a bearer credential for this machine's membership: it should not outlive
    // the join.
    let delete = std::io::IsTerminal::is_terminal(&std::io::stdin())
        && rpassword::prompt_password(format!(
            "delete the bundle {} now (it holds this machine's private keys)? [Y/n] ",
            file.display()
        ))
        .is_ok_and(|a| !a.trim().eq_ignore_ascii_case("n"));
    if delete {
        std::fs::remove_file(file).map_err(Error::io("cannot remove", file))?;
        outln!("  deleted the bundle {}", file.display())?;
    } else {
        outln!(
            "  the bundle {} holds this machine's private keys: delete it (`rm {}`) once you no longer need it",
            file.display(),
            file.display()
        )?;
    }
    outln!("next: run `fleetkey sync` to apply the fleet here, then `fleetkey agents install`")?;
    Ok(())
}

/// `rotate [--ssh]`: a new identity for this machine (and a new SSH key with `--ssh`).
///
/// The new identity is written to `identity.txt.next` first and used to re-encrypt; the old one
/// is retired (replaced by the new) only after the new roster is pushed. A crash or failed push
/// at any step leaves both identities, and every command tries both, so nothing locks out.
pub fn rotate(ssh: bool) -> Result<()> {
    let machine = Machine::load()?;
    let (_lock, repo, fleet) = prepare(&machine)?;
    let me = machine.config.name.clone();
    let next_path = machine.paths.next_identity_file();
    let next = if next_path.exists() {
        Identity::load(&next_path)?
    } else {
        let id = Identity::generate();
        id.create(&next_path, &clock::rfc3339(clock::now_unix()))?;
        id
    };
    let next_sign_path = machine.paths.next_signing_key_file();
    let next_sign = if next_sign_path.exists() {
        SigningKey::load(&next_sign_path)?
    } else {
        let key = SigningKey::generate(&format!("fleetkey-sign@{me}"))?;
        key.create(&next_sign_path)?;
        key
    };
    fault::point("rotate:identity-made");
    let roster = Roster::load(repo.root())?;
    let current = roster
        .active(&me)
        .ok_or_else(|| ErrorKind::Refused(format!("{me} is not an active machine of this fleet")))?
        .clone();
    let new_recipient = next.recipient().to_string();
    let today = clock::date(clock::now_unix());
    let is_new = |k: &ssh_key::PublicKey| k.key_data() == next_sign.public().key_data();
    let sign_path = layout::sign_pub(layout::KEYS, &me);
    let sign_text = |keys: &[&ssh_key::PublicKey]| -> String {
        keys.iter()
            .map(|k| format!("{}\n", k.to_openssh().expect("a parsed key encodes")))
            .collect()
    };
    // Step 1: the new identity, and the new signing key listed BESIDE the old one, in one commit
    // signed by the old key (the one members know from its parent). A merge this machine has to
    // make before step 2 is pushed is signed by the old key, which both parents list.
    if current.recipient.to_string() != new_recipient || !current.signing.iter().any(is_new) {
        let env = machine.secrets()?;
        let age_path = layout::age_pub(layout::KEYS, &me);
        files::write_atomic(
            &repo.root().join(&age_path),
            format!("{new_recipient}\n").as_bytes(),
            0o644,
        )?;
        let mut listed: Vec<&ssh_key::PublicKey> =
            current.signing.iter().filter(|k| !is_new(k)).collect();
        listed.push(next_sign.public());
        files::write_atomic(
            &repo.root().join(&sign_path),
            sign_text(&listed).as_bytes(),
            0o644,
        )?;
        let mut revoked_text = read_revoked(repo.root())?;
        if current.recipient.to_string() != new_recipient {
            revoked_text.push_str(&format!("{}\n# {me} {today} rotated\n", current.recipient));
        }
        let mut paths_changed = vec![
            age_path.clone(),
            sign_path.clone(),
            layout::REVOKED.to_string(),
        ];
        if ssh {
            let new_line = rotate_ssh_key(&machine.paths, &me)?;
            for key in &current.ssh_keys {
                let line = key.to_openssh().expect("a parsed key encodes");
                revoked_text.push_str(&format!("{line}\n# {me} {today} rotated\n"));
            }
            let ssh_path = layout::ssh_pub(layout::KEYS, &me);
            files::write_atomic(
                &repo.root().join(&ssh_path),
                format!("{new_line}\n").as_bytes(),
                0o644,
            )?;
            paths_changed.push(ssh_path);
        }
        files::write_atomic(
            &repo.root().join(layout::REVOKED),
            revoked_text.as_bytes(),
            0o644,
        )?;
        fault::point("rotate:roster-written");
        let roster = Roster::load(repo.root())?;
        SecretsFile::new(repo.root()).store(&env, &roster)?;
        fault::point("rotate:encrypted");
        paths_changed.push(CIPHERTEXT.into());
        paths_changed.push(RECIPIENTS.into());
        let refs: Vec<&str> = paths_changed.iter().map(String::as_str).collect();
        let what = if ssh {
            "age identity, signing key and SSH key"
        } else {
            "age identity and signing key"
        };
        repo.commit_paths(
            &refs,
            &format!("{me}: rotate its {what}; secrets re-encrypted"),
        )?;
        fault::point("rotate:committed");
    }
    sync::push_merging_upstream(&machine, &repo, &fleet)?;
    fault::point("rotate:pushed");
    // Step 2, once step 1 is on the forge: the old signing key leaves the roster for
    // keys/revoked; from here on this machine signs with the new key.
    let roster = Roster::load(repo.root())?;
    let old: Vec<ssh_key::PublicKey> = roster
        .active(&me)
        .map(|m| m.signing.iter().filter(|k| !is_new(k)).cloned().collect())
        .unwrap_or_default();
    if !old.is_empty() {
        files::write_atomic(
            &repo.root().join(&sign_path),
            sign_text(&[next_sign.public()]).as_bytes(),
            0o644,
        )?;
        retire_keys(repo.root(), &old, &me, &today)?;
        repo.commit_paths(
            &[&sign_path, layout::REVOKED],
            &format!("{me}: retire its old signing key"),
        )?;
        fault::point("rotate:retired");
    }
    let repo = repo.with_signer(machine.signer()?);
    sync::push_merging_upstream(&machine, &repo, &fleet)?;
    // The new roster is on the forge: retire the old identity and signing key. The old
    // identity is kept under retired/ (named by its recipient, so a re-run keeps one copy) for
    // reading the history it encrypted, which a `revoke --compromised` report needs.
    if let Ok(old) = Identity::load(&machine.paths.identity_file()) {
        let retired = machine
            .paths
            .retired_dir()
            .join(format!("{}.txt", old.recipient()));
        if !retired.exists() {
            old.create(&retired, &clock::rfc3339(clock::now_unix()))?;
        }
    }
    std::fs::rename(&next_path, machine.paths.identity_file()).map_err(Error::io(
        "cannot retire the old identity at",
        &machine.paths.identity_file(),
    ))?;
    std::fs::rename(&next_sign_path, machine.paths.signing_key_file()).map_err(Error::io(
        "cannot retire the old signing key at",
        &machine.paths.signing_key_file(),
    ))?;
    outln!("fleetkey: {me} has a new age identity: {new_recipient}")?;
    outln!("  signing key: {}", next_sign.fingerprint())?;
    rotate_poke_key(&machine, &repo, &fleet)
}

/// Step 3 of `rotate`: a new poke key replaces the old, which goes to keys/revoked. The new key
/// takes the old one's place on disk first (one rename), so a crash at any later point leaves
/// a key that the next cycle publishes; the old key's lines go from every authorized_keys
/// either way (a `fleetkey-poke=` line whose key left the roster is removed).
fn rotate_poke_key(machine: &Machine, repo: &FleetRepo, fleet: &FleetConfig) -> Result<()> {
    let me = &machine.config.name;
    let path = machine.paths.poke_key_file();
    let next = path.with_file_name("poke_key.next");
    let _ = std::fs::remove_file(&next);
    let key = SigningKey::generate(&format!("fleetkey-poke@{me}"))?;
    key.create(&next)?;
    std::fs::rename(&next, &path).map_err(Error::io("cannot replace the poke key at", &path))?;
    let roster = Roster::load(repo.root())?;
    let old: Vec<ssh_key::PublicKey> = roster
        .active(me)
        .map(|m| m.poke.clone())
        .unwrap_or_default();
    let poke_path = layout::poke_pub(layout::KEYS, me);
    files::write_atomic(
        &repo.root().join(&poke_path),
        format!("{}\n", key.public_line()).as_bytes(),
        0o644,
    )?;
    retire_keys(repo.root(), &old, me, &clock::date(clock::now_unix()))?;
    repo.commit_paths(
        &[&poke_path, layout::REVOKED],
        &format!("{me}: rotate its poke key"),
    )?;
    outln!("  poke key:    {}", key.fingerprint())?;
    sync::push_merging_upstream(machine, repo, fleet)
}

/// Replaces `~/.ssh/id_ed25519` with a new pair; the old pair is kept aside with a suffix (it
/// may still be in use outside the fleet). Returns the new public line. Idempotent: a pair made
/// by an interrupted rotate (`id_ed25519.next`) is reused.
fn rotate_ssh_key(paths: &Paths, name: &str) -> Result<String> {
    let dir = paths.ssh_dir();
    let staged = dir.join("fleetkey-next");
    files::ensure_private_dir(&staged)?;
    let made = identity::ensure_ssh_key(&staged, &format!("fleetkey@{name}"))?;
    let stamp = clock::compact(clock::now_unix());
    for f in ["id_ed25519", "id_ed25519.pub"] {
        let live = dir.join(f);
        if live.exists() {
            let aside = dir.join(format!("{f}.rotated-{stamp}"));
            std::fs::rename(&live, &aside).map_err(Error::io("cannot move aside", &live))?;
        }
        std::fs::rename(staged.join(f), &live).map_err(Error::io("cannot install", &live))?;
    }
    let _ = std::fs::remove_dir(&staged);
    Ok(made.public_line)
}

/// Adds `keys` to keys/revoked as rotated away by `me` on `today` (each followed by its
/// `# NAME DATE rotated` line).
fn retire_keys(root: &Path, keys: &[ssh_key::PublicKey], me: &str, today: &str) -> Result<()> {
    let mut revoked_text = read_revoked(root)?;
    for key in keys {
        let line = key.to_openssh().expect("a parsed key encodes");
        revoked_text.push_str(&format!("{line}\n# {me} {today} rotated\n"));
    }
    files::write_atomic(&root.join(layout::REVOKED), revoked_text.as_bytes(), 0o644)
}

fn read_revoked(root: &Path) -> Result<String> {
    let path = root.join(layout::REVOKED);
    match files::read_text(&path, 1 << 20) {
        Ok(t) => Ok(if t.is_empty() || t.ends_with('\n') {
            t
        } else {
            format!("{t}\n")
        }),
        Err(e) if e.is_not_found() => Ok(roster::REVOKED_HEADER.to_string()),
        Err(e) => Err(e),
    }
}

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

/// After a revocation is on the forge, pokes every remaining peer that has an address, so each
/// online machine drops the revoked key within seconds instead of at its next poll.
fn poke_remaining_peers(machine: &Machine) -> Result<()> {
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

//! Commit signing: this machine's signing key (`~/.config/fleetkey/signing_key`, OpenSSH
//! ed25519) and the ONE function that makes every commit fleetkey writes on the fleet branch.
//!
//! A signed commit is exactly what `git commit -S` writes with `gpg.format=ssh`: the commit
//! buffer is signed as an SSHSIG (namespace `git`, SHA-512), armored as
//! `-----BEGIN SSH SIGNATURE-----`, and stored in the commit's `gpgsig` header. Stock
//! `git verify-commit` checks it, and a commit a member makes by hand with stock git and this
//! key is read back here.
//!
//! Owns: making, storing and loading the signing key (created with `create_new`, 0600 in a 0700
//! directory; refused when others can read it or someone else owns it, as ssh does), signing
//! commit buffers, and reading a commit's signature back. Must never: print, log or put the
//! private key in an error message, or write a commit without a signature.

use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::files;

/// The SSHSIG namespace git uses for commits.
pub const NAMESPACE: &str = "git";

/// The commit header git keeps the signature in.
pub const HEADER: &str = "gpgsig";

/// Largest signing key file fleetkey reads.
const KEY_LIMIT: u64 = 64 * 1024;

/// A machine's commit-signing key. It has no `Debug` or `Display`: only its public half is
/// shown.
pub struct SigningKey {
    key: ssh_key::PrivateKey,
}

impl SigningKey {
    /// Makes a fresh ed25519 signing key with `comment`.
    pub fn generate(comment: &str) -> Result<SigningKey> {
        let mut key =
            ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
                .map_err(|e| ErrorKind::Refused(format!("cannot make a signing key: {e}")))?;
        key.set_comment(comment);
        Ok(SigningKey { key })
    }

    /// Parses an OpenSSH private key (unencrypted ed25519); `path` only names it in errors.
    pub fn from_openssh(text: &str, path: &Path) -> Result<SigningKey> {
        let bad = |problem: &str| {
            Error::refused(format!(
                "{} is not a usable signing key ({problem})",
                path.display()
            ))
        };
        let key = ssh_key::PrivateKey::from_openssh(text)
            .map_err(|_| bad("not an OpenSSH private key"))?;
        if key.is_encrypted() {
            return Err(bad("it has a passphrase; fleetkey's signing key has none"));
        }
        if key.algorithm() != ssh_key::Algorithm::Ed25519 {
            return Err(bad("not an ed25519 key"));
        }
        Ok(SigningKey { key })
    }

    /// Loads the key at `path`, refusing it (and its directory) when others can read it.
    pub fn load(path: &Path) -> Result<SigningKey> {
        if !path.exists() {
            return Err(ErrorKind::Io {
                action: "cannot read the signing key",
                path: path.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }
            .hint(
                "this machine has no commit-signing key; fleets made before signed history are \
                 not supported: start a new fleet with `fleetkey init` (see docs/rotation.md)",
            ));
        }
        files::check_private(path)?;
        if let Some(dir) = path.parent() {
            files::check_private(dir)?;
        }
        let bytes = Zeroizing::new(files::read_limited(path, KEY_LIMIT)?);
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::refused(format!("{} is not text", path.display())))?;
        SigningKey::from_openssh(text, path)
    }

    /// Writes the key to the new file `path` (0600 in a 0700 directory); never overwrites.
    pub fn create(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            files::ensure_private_dir(dir)?;
        }
        files::create_new_private(path, self.to_openssh()?.as_bytes())
    }

    /// The private key in OpenSSH format (for a bundle), zeroized on drop.
    pub fn to_openssh(&self) -> Result<Zeroizing<String>> {
        self.key
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(|e| ErrorKind::Refused(format!("cannot encode the signing key: {e}")).into())
    }

    /// The public key.
    pub fn public(&self) -> &ssh_key::PublicKey {
        self.key.public_key()
    }

    /// The public key line (`ssh-ed25519 AAAA… comment`), as `keys/NAME.sign.pub` holds it.
    pub fn public_line(&self) -> String {
        self.key
            .public_key()
            .to_openssh()
            .expect("an ed25519 public key encodes")
    }

    /// The SHA256 fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
    }

    /// Signs `msg` as `ssh-keygen -Y sign -n git` does; returns the armored signature.
    pub fn sign(&self, msg: &[u8]) -> Result<String> {
        self.sign_for(NAMESPACE, msg)
    }

    /// Signs `msg` as `ssh-keygen -Y sign -n NAMESPACE` does; returns the armored signature.
    pub fn sign_for(&self, namespace: &str, msg: &[u8]) -> Result<String> {
        let sig = self
            .key
            .sign(namespace, ssh_key::HashAlg::Sha512, msg)
            .map_err(|e| ErrorKind::Refused(format!("cannot sign: {e}")))?;
        sig.to_pem(ssh_key::LineEnding::LF)
            .map_err(|e| ErrorKind::Refused(format!("cannot encode a signature: {e}")).into())
    }
}

/// Who signs the commits this process makes: the machine's name (author and committer) and its
/// signing key.
pub struct Signer {
    /// The machine's name.
    pub name: String,
    key: SigningKey,
}

impl Signer {
    /// A signer for `name` with `key`.
    pub fn new(name: &str, key: SigningKey) -> Signer {
        Signer {
            name: name.to_string(),
            key,
        }
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }
}

/// The trailer naming the machine that made a commit (the author may be the user's own git
/// identity, shared by all of them).
pub const MACHINE_TRAILER: &str = "Fleetkey-Machine";

/// `message` ending with a `Fleetkey-Machine: NAME` trailer (added once).
fn with_machine_trailer(message: &str, machine: &str) -> String {
    let trailer = format!("{MACHINE_TRAILER}: {machine}");
    if message.lines().any(|l| l == trailer) {
        return message.to_string();
    }
    format!("{}\n\n{trailer}\n", message.trim_end())
}

/// The machine a commit's `Fleetkey-Machine:` trailer names, if any (and a valid name).
pub fn machine_of(message: &str) -> Option<&str> {
    message
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(MACHINE_TRAILER)?.strip_prefix(": "))
        .filter(|n| crate::roster::check_name(n).is_ok())
}

/// The author and committer of fleetkey's commits: the user's git identity (`user.name` and
/// `user.email`, as `git commit` reads them) when both are set, else `fleetkey (NAME)
/// <NAME@fleetkey.invalid>`. The machine is named in the message's trailer either way.
fn author(repo: &git2::Repository, machine: &str) -> Result<git2::Signature<'static>> {
    let user = repo
        .config()
        .ok()
        .and_then(|mut c| c.snapshot().ok())
        .and_then(|c| {
            let name = c.get_string("user.name").ok()?;
            let email = c.get_string("user.email").ok()?;
            (!name.trim().is_empty() && !email.trim().is_empty()).then_some((name, email))
        });
    let who = match &user {
        Some((name, email)) => git2::Signature::now(name, email),
        None => git2::Signature::now(
            &format!("fleetkey ({machine})"),
            &format!("{machine}@fleetkey.invalid"),
        ),
    };
    who.map_err(Error::git("cannot make a commit signature"))
}

/// Makes a signed commit: the commit buffer is built by libgit2, signed with `signer`'s key
/// and written with the signature in its `gpgsig` header. With `update_ref` (`"HEAD"` or a full
/// ref name), that ref (for `HEAD`: the branch it names) is then moved to the new commit.
///
/// Every commit fleetkey makes on the fleet branch goes through here.
pub fn commit(
    repo: &git2::Repository,
    signer: &Signer,
    update_ref: Option<&str>,
    message: &str,
    tree: &git2::Tree<'_>,
    parents: &[&git2::Commit<'_>],
) -> Result<git2::Oid> {
    let who = author(repo, &signer.name)?;
    let message = with_machine_trailer(message, &signer.name);
    let message = message.as_str();
    let buffer = repo
        .commit_create_buffer(&who, &who, message, tree, parents)
        .map_err(Error::git("cannot build a commit"))?;
    let content = buffer
        .as_str()
        .map_err(|_| Error::refused("a commit buffer is not UTF-8"))?;
    let armored = signer.key.sign(content.as_bytes())?;
    // git writes the armor without its last newline; libgit2 continues every line it finds.
    let oid = repo
        .commit_signed(content, armored.trim_end_matches('\n'), Some(HEADER))
        .map_err(Error::git("cannot write a signed commit"))?;
    if let Some(name) = update_ref {
        let target = if name == "HEAD" {
            repo.find_reference("HEAD")
                .ok()
                .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_string))
                .unwrap_or_else(|| "HEAD".to_string())
        } else {
            name.to_string()
        };
        let first = message.lines().next().unwrap_or_default();
        repo.reference(&target, oid, true, &format!("commit: {first}"))
            .map_err(Error::git("cannot move the branch to the new commit"))?;
    }
    Ok(oid)
}

/// Why a commit's signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureProblem {
    /// No `gpgsig` header.
    Unsigned,
    /// A signature that is not an SSHSIG (a GPG one, or damaged).
    NotSsh,
    /// An SSHSIG for another namespace than `git`.
    WrongNamespace,
    /// The signature does not verify under the key it names.
    Invalid,
}

impl std::fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureProblem::Unsigned => "not signed",
            SignatureProblem::NotSsh => "the signature is not an SSH signature",
            SignatureProblem::WrongNamespace => "the signature is not for git commits",
            SignatureProblem::Invalid => "the signature does not verify (the commit was altered)",
        })
    }
}

/// Reads and checks commit `oid`'s signature: returns the public key that made it when the
/// signature verifies under that key (whether the key may sign is the caller's question).
pub fn verified_signer(
    repo: &git2::Repository,
    oid: git2::Oid,
) -> std::result::Result<ssh_key::PublicKey, SignatureProblem> {
    let (sig, signed) = match repo.extract_signature(&oid, Some(HEADER)) {
        Ok(pair) => pair,
        Err(_) => return Err(SignatureProblem::Unsigned),
    };
    let sig = ssh_key::SshSig::from_pem(&*sig).map_err(|_| SignatureProblem::NotSsh)?;
    if sig.namespace() != NAMESPACE {
        return Err(SignatureProblem::WrongNamespace);
    }
    let key = ssh_key::PublicKey::new(sig.public_key().clone(), "");
    key.verify(NAMESPACE, &signed, &sig)
        .map_err(|_| SignatureProblem::Invalid)?;
    Ok(key)
}

/// The SHA256 fingerprint of a public key.
pub fn fingerprint(key: &ssh_key::PublicKey) -> String {
    key.fingerprint(ssh_key::HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn repo_with_tree() -> (tempfile::TempDir, git2::Repository, git2::Oid) {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let blob = repo.blob(b"hello\n").unwrap();
        let tree = {
            let mut tb = repo.treebuilder(None).unwrap();
            tb.insert("a.txt", blob, 0o100644).unwrap();
            tb.write().unwrap()
        };
        (dir, repo, tree)
    }

    #[test]
    fn a_signed_commit_verifies_under_its_key_and_a_tampered_one_does_not() {
        let (_dir, repo, tree_id) = repo_with_tree();
        let signer = Signer::new("mbp", SigningKey::generate("fleetkey-sign@mbp").unwrap());
        let tree = repo.find_tree(tree_id).unwrap();
        let oid = commit(&repo, &signer, Some("HEAD"), "mbp: test", &tree, &[]).unwrap();
        assert_eq!(repo.head().unwrap().target(), Some(oid));
        let key = verified_signer(&repo, oid).unwrap();
        assert_eq!(fingerprint(&key), signer.key().fingerprint());

        // Change the message, keep the signature: it no longer verifies.
        let raw = repo.find_object(oid, None).unwrap();
        let odb = repo.odb().unwrap();
        let obj = odb.read(raw.id()).unwrap();
        let text = String::from_utf8(obj.data().to_vec()).unwrap();
        let forged = text.replace("mbp: test", "mbp: evil");
        let bad = odb
            .write(git2::ObjectType::Commit, forged.as_bytes())
            .unwrap();
        assert_eq!(
            verified_signer(&repo, bad).unwrap_err(),
            SignatureProblem::Invalid
        );
    }

    #[test]
    fn an_unsigned_commit_is_reported_as_such() {
        let (_dir, repo, tree_id) = repo_with_tree();
        let tree = repo.find_tree(tree_id).unwrap();
        let sig = git2::Signature::now("x", "x@y").unwrap();
        let oid = repo.commit(None, &sig, &sig, "m", &tree, &[]).unwrap();
        assert_eq!(
            verified_signer(&repo, oid).unwrap_err(),
            SignatureProblem::Unsigned
        );
    }

    #[test]
    fn a_readable_signing_key_is_refused_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg").join("signing_key");
        let key = SigningKey::generate("c").unwrap();
        key.create(&path).unwrap();
        assert!(key.create(&path).is_err(), "create_new must refuse");
        let back = SigningKey::load(&path).unwrap();
        assert_eq!(back.fingerprint(), key.fingerprint());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKey::load(&path).err().unwrap();
        assert!(
            matches!(err.kind(), ErrorKind::InsecurePermissions { .. }),
            "{err}"
        );
    }
}

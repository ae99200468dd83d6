//! Integrating upstream: a three-way merge of HEAD and `origin/BRANCH`, done in memory with
//! libgit2 (`merge_trees`), every conflict resolved by the design's rules, then ONE commit and
//! one move of the branch. No rebase, no MERGE_HEAD, no conflict markers ever reach the disk:
//! a crash leaves the old HEAD or the new one.
//!
//! Rules for a path changed on both sides:
//! - a managed file (`home/…`, `hosts/…/home/…`): libgit2's line merge; on a real conflict the
//!   upstream version wins and ours is returned as a conflict copy for apply to write beside the
//!   live file. A change beats a deletion on either side.
//! - `secrets.env.age`: base, ours and theirs are decrypted with this machine's identity and
//!   merged per key ([`crate::envfile::merge3`]), then encrypted to the merged roster, with
//!   `secrets.recipients` rewritten in the same commit. Plaintext stays in memory.
//! - `keys/revoked`: union of the entries. `fleet.toml`: upstream's, with the managed list (and
//!   the private, ignore and literal lists) merged as sets ([`super::managed::merge_sets`]).
//! - anything else (roster files, …): upstream wins; ours is logged.
//!
//! After the merge, when the roster (`keys/*.age.pub`) differs from `secrets.recipients`, the
//! secrets are re-encrypted to the roster in the same merge commit. Without a merge (a
//! fast-forward onto a receiver's `rotate`, which changes only its own keys), an admin or
//! member re-encrypts them in a commit of its own on top.

pub use crate::repo::tracking_ref;
use std::path::Path;

use crate::config::{Backend, FleetConfig};
use crate::envfile::EnvFile;
use crate::error::{Error, ErrorKind, Result};
use crate::identity::Identity;
use crate::roster::{self, Roster};
use crate::secrets::{self, CIPHERTEXT, RECIPIENTS};

use super::managed;
use super::tree;

/// A managed file whose local version lost a conflict.
#[derive(Debug, Clone)]
pub struct LostFile {
    /// Its repo path (`home/REL` or `hosts/NAME/home/REL`).
    pub repo_path: String,
    /// Our version's blob.
    pub ours: git2::Oid,
}

/// What integration did.
#[derive(Debug, Default)]
pub struct Integrated {
    /// Whether HEAD moved.
    pub moved: bool,
    /// Managed files whose local version lost (conflict copies to write).
    pub lost: Vec<LostFile>,
    /// Other conflicts resolved (secrets keys kept aside, roster files, …), for the record.
    pub other_conflicts: usize,
}

/// Merges `origin/BRANCH` into HEAD. `identity` decrypts the secrets for a per-key merge.
/// Then, when HEAD's secrets are not encrypted to its roster (a receiver's `rotate` lists a
/// new key and leaves the secrets to an admin or member), an admin or member re-encrypts them
/// in a commit of its own on top, which the exchange pushes; a receiver never does.
pub fn integrate(
    repo: &git2::Repository,
    branch: &str,
    machine: &str,
    identity: Option<&Identity>,
    at: &str,
    backend: Backend,
    signer: &crate::signing::Signer,
) -> Result<Integrated> {
    let upstream = Upstream {
        refname: &tracking_ref(branch),
        whose: "the forge's",
    };
    integrate_from(&upstream, repo, machine, identity, at, backend, signer)
}

/// Where the commits to integrate are: a verified ref and, for the merge commit's message,
/// whose changes they are ("the forge's", "a peer's").
pub struct Upstream<'a> {
    /// The ref (verified by the gate before this is called).
    pub refname: &'a str,
    /// Whose changes, for the message.
    pub whose: &'a str,
}

/// Merges the commits at `upstream` into HEAD by the rules of [`integrate`], then re-encrypts
/// the secrets on top when the roster asks for it: what a forge fetch and a bundle a peer
/// handed over both go through.
pub fn integrate_from(
    upstream: &Upstream<'_>,
    repo: &git2::Repository,
    machine: &str,
    identity: Option<&Identity>,
    at: &str,
    backend: Backend,
    signer: &crate::signing::Signer,
) -> Result<Integrated> {
    let mut done = merge_upstream(upstream, repo, machine, identity, at, backend, signer)?;
    if reencrypt_head(repo, machine, identity, signer)? {
        done.moved = true;
    }
    Ok(done)
}

/// The merge of [`integrate_from`].
fn merge_upstream(
    upstream: &Upstream<'_>,
    repo: &git2::Repository,
    machine: &str,
    identity: Option<&Identity>,
    at: &str,
    backend: Backend,
    signer: &crate::signing::Signer,
) -> Result<Integrated> {
    let mut done = Integrated::default();
    let Some(theirs) = repo.refname_to_id(upstream.refname).ok() else {
        return Ok(done);
    };
    let ours = repo
        .head()
        .ok()
        .and_then(|h| h.target())
        .ok_or_else(|| ErrorKind::Refused("the fleet clone has no commit".into()))?;
    if ours == theirs
        || repo
            .graph_descendant_of(ours, theirs)
            .map_err(Error::git("cannot compare histories"))?
    {
        return Ok(done);
    }
    if repo
        .graph_descendant_of(theirs, ours)
        .map_err(Error::git("cannot compare histories"))?
    {
        move_to(repo, theirs)?;
        done.moved = true;
        return Ok(done);
    }
    let sides = Sides::of(repo, ours, theirs)?;
    let mut opts = git2::MergeOptions::new();
    opts.find_renames(false);
    let mut index = repo
        .merge_trees(
            &sides.base_tree,
            &sides.our_tree,
            &sides.their_tree,
            Some(&opts),
        )
        .map_err(Error::git("cannot merge with the forge's commits"))?;
    merge_fleet_toml(repo, &sides, &mut index, &mut done)?;
    merge_revoked(repo, &sides, &mut index)?;
    let secrets_merged =
        merge_secrets_in(repo, &sides, &mut index, identity, machine, at, &mut done)?;
    resolve_the_rest(&mut index, backend, secrets_merged.is_some(), &mut done)?;

    let mut tree_id = index
        .write_tree_to(repo)
        .map_err(Error::git("cannot write the merged tree"))?;
    // A receiver's merge never changes the secrets (the fleet would refuse it): an admin or
    // member re-encrypts them.
    if secrets_merged.is_some() || may_reencrypt(repo, &sides.our_tree, machine) {
        tree_id = reencrypt_if_needed(repo, tree_id, identity, secrets_merged)?;
    }
    let tree = repo
        .find_tree(tree_id)
        .map_err(Error::git("cannot read a tree"))?;
    let parents = [
        &repo
            .find_commit(ours)
            .map_err(Error::git("cannot read HEAD"))?,
        &repo
            .find_commit(theirs)
            .map_err(Error::git("cannot read the forge's commit"))?,
    ];
    let n = done.lost.len() + done.other_conflicts;
    let message = if n == 0 {
        format!("{machine}: merge {} changes", upstream.whose)
    } else {
        format!(
            "{machine}: merge {} changes ({n} conflicts resolved, upstream wins)",
            upstream.whose
        )
    };
    let merge = crate::signing::commit(repo, signer, None, &message, &tree, &parents)?;
    move_to(repo, merge)?;
    done.moved = true;
    Ok(done)
}

/// The three sides of a merge: the commits and their trees.
struct Sides<'r> {
    base: git2::Oid,
    ours: git2::Oid,
    theirs: git2::Oid,
    base_tree: git2::Tree<'r>,
    our_tree: git2::Tree<'r>,
    their_tree: git2::Tree<'r>,
}

impl<'r> Sides<'r> {
    fn of(repo: &'r git2::Repository, ours: git2::Oid, theirs: git2::Oid) -> Result<Sides<'r>> {
        let base = repo
            .merge_base(ours, theirs)
            .map_err(Error::git("the fleet clone and the forge share no history"))?;
        let tree_of = |oid: git2::Oid| -> Result<git2::Tree<'r>> {
            repo.find_commit(oid)
                .and_then(|c| c.tree())
                .map_err(Error::git("cannot read a commit"))
        };
        Ok(Sides {
            base,
            ours,
            theirs,
            base_tree: tree_of(base)?,
            our_tree: tree_of(ours)?,
            their_tree: tree_of(theirs)?,
        })
    }

    /// Whether both sides changed `path`, each differently.
    fn changed_both(&self, path: &str) -> bool {
        let (b, o, t) = (
            tree::blob_at(&self.base_tree, path),
            tree::blob_at(&self.our_tree, path),
            tree::blob_at(&self.their_tree, path),
        );
        o != b && t != b && o != t
    }
}

/// fleet.toml changed on both sides: upstream's settings, the managed lists merged as sets
/// (what either side added stays, what either removed goes); an unreadable side: upstream's
/// file, counted as a conflict.
fn merge_fleet_toml(
    repo: &git2::Repository,
    sides: &Sides<'_>,
    index: &mut git2::Index,
    done: &mut Integrated,
) -> Result<()> {
    if !sides.changed_both(FleetConfig::FILE) {
        return Ok(());
    }
    let parse = |t: &git2::Tree<'_>| -> Option<FleetConfig> {
        let bytes = tree::read_at(repo, t, FleetConfig::FILE)?;
        toml::from_str(std::str::from_utf8(&bytes).ok()?).ok()
    };
    match (parse(&sides.our_tree), parse(&sides.their_tree)) {
        (Some(o), Some(mut t)) => {
            let b = parse(&sides.base_tree).unwrap_or_default();
            t.sync.paths = managed::merge_sets(&b.sync.paths, &o.sync.paths, &t.sync.paths);
            t.sync.private = managed::merge_sets(&b.sync.private, &o.sync.private, &t.sync.private);
            t.sync.ignore = managed::merge_sets(&b.sync.ignore, &o.sync.ignore, &t.sync.ignore);
            t.sync.literal = managed::merge_sets(&b.sync.literal, &o.sync.literal, &t.sync.literal);
            t.hosts = crate::config::merge_hosts(&b.hosts, &o.hosts, &t.hosts);
            let text = t.file_text();
            put(repo, index, FleetConfig::FILE, text.as_bytes(), false)
        }
        _ => {
            take_theirs(repo, index, &sides.their_tree, FleetConfig::FILE)?;
            done.other_conflicts += 1;
            Ok(())
        }
    }
}

/// keys/revoked changed on both sides: the union (a revocation is never lost to a merge).
fn merge_revoked(
    repo: &git2::Repository,
    sides: &Sides<'_>,
    index: &mut git2::Index,
) -> Result<()> {
    if !sides.changed_both(roster::layout::REVOKED) {
        return Ok(());
    }
    let text = |t: &git2::Tree<'_>| {
        String::from_utf8_lossy(
            &tree::read_at(repo, t, roster::layout::REVOKED).unwrap_or_default(),
        )
        .into_owned()
    };
    let merged = managed::union_revoked(&text(&sides.our_tree), &text(&sides.their_tree));
    put(
        repo,
        index,
        roster::layout::REVOKED,
        merged.as_bytes(),
        false,
    )
}

/// secrets.env.age changed on both sides: merged per key inside the encryption (a key both
/// changed keeps the forge's value in force and this machine's aside, named by who set each);
/// without an identity or when a side cannot be read, the forge's version wins (a conflict).
/// Returns the merged secrets, to be encrypted into the merge's tree.
fn merge_secrets_in(
    repo: &git2::Repository,
    sides: &Sides<'_>,
    index: &mut git2::Index,
    identity: Option<&Identity>,
    machine: &str,
    at: &str,
    done: &mut Integrated,
) -> Result<Option<EnvFile>> {
    if !sides.changed_both(CIPHERTEXT) {
        return Ok(None);
    }
    let merged = identity.map(|id| {
        merge_secrets(
            repo,
            [&sides.base_tree, &sides.our_tree, &sides.their_tree],
            [sides.base, sides.ours, sides.theirs],
            id,
            machine,
            at,
        )
    });
    match merged {
        Some(Ok(env)) => {
            // Name each key both sides changed: the forge's value is in force, this
            // machine's is kept aside as a conflict record; every other key of both
            // sides survives.
            let kept: Vec<crate::envfile::Conflict> = env
                .conflicts()
                .into_iter()
                .filter(|c| c.from == machine && c.at == at)
                .collect();
            for c in &kept {
                let key = &c.key;
                crate::log::warn(&format!(
                    "secret {key} changed here and on the forge: the value {} is in force and the one {} is kept aside (see `fleetkey secrets conflicts`; settle it with `fleetkey secrets resolve {key} --keep aside|in-force`)",
                    set_by(&c.origins.in_force),
                    set_by(&c.origins.aside),
                ));
            }
            done.other_conflicts += kept.len();
            Ok(Some(env))
        }
        Some(Err(e)) => {
            crate::log::warn(&format!(
                "cannot merge the secrets per key ({e}); the forge's version wins"
            ));
            take_theirs(repo, index, &sides.their_tree, CIPHERTEXT)?;
            take_theirs(repo, index, &sides.their_tree, RECIPIENTS)?;
            done.other_conflicts += 1;
            Ok(None)
        }
        None => {
            take_theirs(repo, index, &sides.their_tree, CIPHERTEXT)?;
            take_theirs(repo, index, &sides.their_tree, RECIPIENTS)?;
            done.other_conflicts += 1;
            Ok(None)
        }
    }
}

/// Every other conflict of the merge: the forge's side is taken; a managed file's side from
/// here is recorded in `done.lost` (apply keeps it as a conflict copy), anything else is
/// counted; a change beats a deletion on either side. The secrets' entries are no conflict when
/// `secrets_merged` (the merged secrets replace them).
fn resolve_the_rest(
    index: &mut git2::Index,
    backend: Backend,
    secrets_merged: bool,
    done: &mut Integrated,
) -> Result<()> {
    let conflicts: Vec<git2::IndexConflict> = index
        .conflicts()
        .map_err(Error::git("cannot read merge conflicts"))?
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::git("cannot read merge conflicts"))?;
    for c in conflicts {
        let path = [&c.their, &c.our, &c.ancestor]
            .into_iter()
            .flatten()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .next()
            .unwrap_or_default();
        // The secrets were merged per key (and are re-encrypted after): not a conflict.
        let merged_here = secrets_merged && (path == CIPHERTEXT || path == RECIPIENTS);
        let managed_file = match backend {
            Backend::Native => {
                path.starts_with("home/")
                    || (path.starts_with("hosts/") && path.split('/').nth(2) == Some("home"))
            }
            Backend::Chezmoi => !super::chezmoi::is_own(&path),
        };
        index
            .conflict_remove(Path::new(&path))
            .map_err(Error::git("cannot resolve a conflict"))?;
        match (&c.our, &c.their) {
            (Some(o), Some(t)) => {
                index
                    .add(&stage0(t))
                    .map_err(Error::git("cannot resolve a conflict"))?;
                if merged_here {
                    // Nothing lost: the merged secrets replace this entry.
                } else if managed_file {
                    done.lost.push(LostFile {
                        repo_path: path.clone(),
                        ours: o.id,
                    });
                } else {
                    crate::log::warn(&format!(
                        "{path} changed here and on the forge; the forge's version wins"
                    ));
                    done.other_conflicts += 1;
                }
            }
            // A change beats a deletion, on either side.
            (Some(o), None) => index
                .add(&stage0(o))
                .map_err(Error::git("cannot resolve a conflict"))?,
            (None, Some(t)) => index
                .add(&stage0(t))
                .map_err(Error::git("cannot resolve a conflict"))?,
            (None, None) => {}
        }
    }
    Ok(())
}

/// "set by M at T", for a log line (what is unknown said so).
pub fn set_by(setter: &crate::envfile::Setter) -> String {
    format!(
        "set by {} at {}",
        setter.machine.as_deref().unwrap_or("an unknown machine"),
        setter.at.as_deref().unwrap_or("an unknown time")
    )
}

/// Re-encrypts HEAD's secrets to HEAD's roster in a commit on top, when `secrets.recipients`
/// differs from the roster's age keys and this machine, active in that roster, is an admin or
/// a member (a receiver's commit changing the secrets would be refused). Returns whether it
/// committed. The check reads git objects only, so a cycle with nothing to do stays cheap.
fn reencrypt_head(
    repo: &git2::Repository,
    machine: &str,
    identity: Option<&Identity>,
    signer: &crate::signing::Signer,
) -> Result<bool> {
    let Some(head) = repo.head().ok().and_then(|h| h.target()) else {
        return Ok(false);
    };
    let commit = repo
        .find_commit(head)
        .map_err(Error::git("cannot read HEAD"))?;
    let tree = commit.tree().map_err(Error::git("cannot read HEAD"))?;
    if tree.get_name(CIPHERTEXT).is_none() {
        return Ok(false);
    }
    let keys = tree.get_name(roster::layout::KEYS).map(|e| e.id());
    let Ok(roster) = crate::authority::read_tree(repo, keys) else {
        return Ok(false);
    };
    if roster
        .members
        .get(machine)
        .is_none_or(|m| m.role() == crate::authority::Role::Receiver)
    {
        return Ok(false);
    }
    let mut lines: Vec<String> = roster
        .members
        .values()
        .filter_map(|m| m.age.clone())
        .collect();
    lines.sort();
    lines.dedup();
    let recorded = roster::recipients_file_text(&lines);
    if lines.is_empty()
        || tree::read_at(repo, &tree, RECIPIENTS).as_deref() == Some(recorded.as_bytes())
    {
        return Ok(false);
    }
    let new_tree = reencrypt_if_needed(repo, tree.id(), identity, None)?;
    if new_tree == tree.id() {
        return Ok(false);
    }
    let new_tree = repo
        .find_tree(new_tree)
        .map_err(Error::git("cannot read a tree"))?;
    let message = format!("{machine}: re-encrypt the secrets to the roster's age keys");
    let oid = crate::signing::commit(repo, signer, None, &message, &new_tree, &[&commit])?;
    move_to(repo, oid)?;
    crate::log::info("the roster's age keys changed: the secrets are re-encrypted to them");
    Ok(true)
}

/// Whether `machine` may change the secrets by the roster of `tree`: it is active there, as an
/// admin or a member.
fn may_reencrypt(repo: &git2::Repository, tree: &git2::Tree<'_>, machine: &str) -> bool {
    let keys = tree.get_name(roster::layout::KEYS).map(|e| e.id());
    crate::authority::read_tree(repo, keys).is_ok_and(|r| {
        r.members
            .get(machine)
            .is_some_and(|m| m.role() != crate::authority::Role::Receiver)
    })
}

/// Decrypts the three versions of the secrets and merges them per key; a value kept aside is
/// recorded with who set it and who set the one in force ([`super::setter`]).
fn merge_secrets(
    repo: &git2::Repository,
    [base, ours, theirs]: [&git2::Tree<'_>; 3],
    [base_id, ours_id, theirs_id]: [git2::Oid; 3],
    identity: &Identity,
    machine: &str,
    at: &str,
) -> Result<EnvFile> {
    let load = |t: &git2::Tree<'_>| -> Result<EnvFile> {
        match tree::read_at(repo, t, CIPHERTEXT) {
            None => Ok(EnvFile::new()),
            Some(ct) => {
                let path = Path::new(CIPHERTEXT);
                secrets::parse_plaintext(&secrets::decrypt(&ct, identity, path)?, path)
            }
        }
    };
    let (b, o, t) = (load(base)?, load(ours)?, load(theirs)?);
    let history = std::cell::RefCell::new(super::setter::History::new(repo, identity));
    let origins = |key: &str| {
        let mut h = history.borrow_mut();
        crate::envfile::Origins {
            aside: h.setter(ours_id, base_id, key),
            in_force: h.setter(theirs_id, base_id, key),
        }
    };
    Ok(crate::envfile::merge3(&b, &o, &t, machine, at, &origins))
}

/// Encrypts the secrets of `tree_id` (or `merged`, when the secrets were merged) to the roster
/// the tree holds, when that roster differs from `secrets.recipients` or the secrets were
/// merged. Returns the (possibly new) tree.
fn reencrypt_if_needed(
    repo: &git2::Repository,
    tree_id: git2::Oid,
    identity: Option<&Identity>,
    merged: Option<EnvFile>,
) -> Result<git2::Oid> {
    let tree = repo
        .find_tree(tree_id)
        .map_err(Error::git("cannot read a tree"))?;
    let roster = roster_of(repo, &tree)?;
    let lines = roster.recipient_lines();
    let recorded = roster::recipients_file_text(&lines);
    let current = tree::read_at(repo, &tree, RECIPIENTS).unwrap_or_default();
    if merged.is_none() && current == recorded.as_bytes() {
        return Ok(tree_id);
    }
    if lines.is_empty() {
        return Ok(tree_id);
    }
    let env = match merged {
        Some(env) => env,
        None => {
            let (Some(id), Some(ct)) = (identity, tree::read_at(repo, &tree, CIPHERTEXT)) else {
                return Ok(tree_id);
            };
            let path = Path::new(CIPHERTEXT);
            match secrets::decrypt(&ct, id, path).and_then(|p| secrets::parse_plaintext(&p, path)) {
                Ok(env) => env,
                Err(e) => {
                    crate::log::warn(&format!(
                        "the roster changed but this machine cannot re-encrypt the secrets ({e})"
                    ));
                    return Ok(tree_id);
                }
            }
        }
    };
    let recipients: Vec<age::x25519::Recipient> =
        roster.active.iter().map(|m| m.recipient.clone()).collect();
    let ciphertext = secrets::encrypt(env.to_text().as_bytes(), &recipients)?;
    let mut b = git2::build::TreeUpdateBuilder::new();
    let ct_blob = repo
        .blob(&ciphertext)
        .map_err(Error::git("cannot store the secrets"))?;
    let rc_blob = repo
        .blob(recorded.as_bytes())
        .map_err(Error::git("cannot store the recipients"))?;
    b.upsert(CIPHERTEXT, ct_blob, git2::FileMode::Blob);
    b.upsert(RECIPIENTS, rc_blob, git2::FileMode::Blob);
    b.create_updated(repo, &tree)
        .map_err(Error::git("cannot write the re-encrypted tree"))
}

/// The roster a tree holds, read through a temporary copy of its `keys/`.
pub fn roster_of(repo: &git2::Repository, tree: &git2::Tree<'_>) -> Result<Roster> {
    let tmp = tempfile::Builder::new()
        .prefix(".fleetkey-roster-")
        .tempdir()
        .map_err(Error::io(
            "cannot create a temporary directory",
            &std::env::temp_dir(),
        ))?;
    for (rel, (oid, _)) in tree::blobs_under(repo, tree, roster::layout::KEYS)? {
        let path = tmp.path().join(roster::layout::KEYS).join(&rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io("cannot create", dir))?;
        }
        let blob = repo
            .find_blob(oid)
            .map_err(Error::git("cannot read a roster file"))?;
        std::fs::write(&path, blob.content()).map_err(Error::io("cannot write", &path))?;
    }
    Roster::load(tmp.path())
}

fn stage0(e: &git2::IndexEntry) -> git2::IndexEntry {
    git2::IndexEntry {
        ctime: e.ctime,
        mtime: e.mtime,
        dev: e.dev,
        ino: e.ino,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        file_size: e.file_size,
        id: e.id,
        flags: e.flags & !0x3000, // the stage bits
        flags_extended: e.flags_extended,
        path: e.path.clone(),
    }
}

fn take_theirs(
    repo: &git2::Repository,
    index: &mut git2::Index,
    theirs: &git2::Tree<'_>,
    path: &str,
) -> Result<()> {
    let _ = index.conflict_remove(Path::new(path));
    match tree::read_at(repo, theirs, path) {
        Some(bytes) => put(repo, index, path, &bytes, false),
        None => {
            let _ = index.remove_path(Path::new(path));
            Ok(())
        }
    }
}

/// Sets `path` in `index` to `bytes` at stage 0, clearing any conflict there.
fn put(
    repo: &git2::Repository,
    index: &mut git2::Index,
    path: &str,
    bytes: &[u8],
    exec: bool,
) -> Result<()> {
    let _ = index.conflict_remove(Path::new(path));
    let id = repo
        .blob(bytes)
        .map_err(Error::git("cannot store a merged file"))?;
    let entry = git2::IndexEntry {
        ctime: git2::IndexTime::new(0, 0),
        mtime: git2::IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: if exec { 0o100755 } else { 0o100644 },
        uid: 0,
        gid: 0,
        file_size: bytes.len() as u32,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    };
    index
        .add(&entry)
        .map_err(Error::git("cannot stage a merged file"))
}

/// Points the branch HEAD names at `commit` and makes the index and the working tree match it.
/// The commit object exists before the branch moves; the working tree is fleetkey's own and is
/// also reset at the start of every cycle, so a crash in between is repaired by the next one.
pub fn move_to(repo: &git2::Repository, commit: git2::Oid) -> Result<()> {
    let obj = repo
        .find_object(commit, Some(git2::ObjectType::Commit))
        .map_err(Error::git("cannot read a commit"))?;
    let mut co = git2::build::CheckoutBuilder::new();
    co.force();
    repo.reset(&obj, git2::ResetType::Hard, Some(&mut co))
        .map_err(Error::git("cannot update the fleet clone"))
}

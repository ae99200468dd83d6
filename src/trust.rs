//! Which commits of the fleet's history this machine believes: the forge is untrusted storage.
//!
//! A commit is **authentic** when
//! - its SSH signature (the `gpgsig` header, SSHSIG, namespace `git`) verifies,
//! - under the signing key of a machine that is active (`keys/NAME.sign.pub`) in EVERY parent's
//!   tree,
//! - that key is not in this machine's revoked set (the union of `keys/revoked` over every
//!   authentic commit this machine has seen, kept in the state directory, never shrinking),
//! - and every parent is authentic, back to this machine's trust root (pinned in config.toml:
//!   the founding commit: `init`'s own, the one the bundle carries for `join`, and for `enroll`
//!   the founding commit of the history it cloned, verified forward from there).
//!
//! A forge tip that does not contain the last forge tip verified here (a rewind) is not
//! authentic either, nor is one that does not descend from the trust root.
//!
//! Verification is native (libgit2 reads the objects, ssh-key checks the signatures: no process
//! per commit) and incremental: `trust.json` in the state directory remembers the verified tips,
//! and a walk from a new tip stops at them.
//!
//! Owns: the rule above, the state file, and the refusal records. Must never: count a commit as
//! verified that it did not verify, forget a revoked key, or read a private key.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::authority::{self, TreeRoster};
use crate::error::{Error, ErrorKind, Result};
use crate::files;
use crate::signing::{self, SignatureProblem};

/// The state file.
pub const STATE_FILE: &str = "trust.json";

/// Where a refused forge tip is kept, for `forge repair`'s lease.
pub const REFUSED_TIP_REF: &str = "refs/fleetkey/forge-refused";

/// How many verified tips are remembered.
const TIPS_KEPT: usize = 16;

/// Largest state file read.
const STATE_LIMIT: u64 = 64 << 20;

/// A commit this machine refused, and why. Never holds file content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The commit id (hex).
    pub commit: String,
    /// The machine it claims to come from (its author), as written in the commit.
    pub machine: String,
    /// Why it is not authentic (written out as its sentence in records and `--json`).
    #[serde(with = "reason_text")]
    pub why: Reason,
}

impl Refusal {
    /// A refusal of `commit` in `repo` (naming the machine it claims) for `why`.
    pub fn of(repo: &git2::Repository, commit: git2::Oid, why: Reason) -> Refusal {
        Refusal {
            commit: commit.to_string(),
            machine: claimed_machine(repo, commit),
            why,
        }
    }
}

/// Why a commit of the forge is refused. `Display` is the sentence `status`, `verify` and the
/// logs show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The commit is not in the clone (the forge named a commit it did not send).
    Missing,
    /// The forge's branch no longer holds `verified`, a commit this machine verified there.
    Rewound {
        /// The forge tip verified earlier (hex).
        verified: String,
    },
    /// The tip does not descend from this machine's trust root `root` (a rewind or a foreign
    /// history).
    OutsideRoot {
        /// The trust root (hex).
        root: String,
    },
    /// A commit with no parent other than the trust root: an unrelated history.
    Unrelated,
    /// A parent is refused; the commit is refused with it (and not examined further).
    ParentRefused,
    /// The commit carries no signature.
    Unsigned,
    /// The commit's signature does not hold.
    BadSignature(SignatureProblem),
    /// The commit is signed by a key in this machine's revoked set.
    RevokedKey {
        /// The key's SHA256 fingerprint.
        fingerprint: String,
    },
    /// The commit is signed by a key that is not an active member's signing key in `parent`.
    NotAMember {
        /// The key's SHA256 fingerprint.
        fingerprint: String,
        /// The parent whose roster does not list it (hex).
        parent: String,
    },
    /// The commit is authentic, but its tree holds entries fleetkey never checks out (a
    /// symlink, `.git`, `.gitmodules`, …): the first few, and how many more there are.
    Tree {
        /// The first violations, each as [`crate::confine`] words it.
        violations: Vec<String>,
        /// How many more there are.
        more: usize,
    },
    /// The commit's tree holds an invalid roster (see [`crate::authority`]): the problem,
    /// naming the file, never its content.
    InvalidRoster(String),
    /// The commit makes a key of this machine's revoked set active again.
    RevokedKeyBack {
        /// The machine that would hold it.
        machine: String,
        /// The key's SHA256 fingerprint, or `an age recipient`.
        key: String,
    },
    /// The commit changes a path outside its signer's role (see [`crate::authority`]).
    Unauthorized(String),
    /// The commit admits `machine` with a `keys/NAME.proof` that does not bind its keys.
    ProofDoesNotHold {
        /// The machine admitted.
        machine: String,
        /// What is wrong with the proof.
        problem: crate::enrollment::ProofProblem,
    },
    /// A refusal read back from a record written earlier, as it was shown then.
    Recorded(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Missing => f.write_str("the commit is missing from the clone"),
            Reason::Rewound { verified } => write!(
                f,
                "the forge's branch was rewound: it no longer holds commit {verified}, which this machine verified"
            ),
            Reason::OutsideRoot { root } => write!(
                f,
                "it does not descend from this machine's trust root {root} (a rewind or a foreign history)"
            ),
            Reason::Unrelated => f.write_str(
                "it does not descend from this machine's trust root (an unrelated history)",
            ),
            Reason::ParentRefused => f.write_str("it builds on commits that are not authentic"),
            Reason::Unsigned => f.write_str("it is not signed"),
            Reason::BadSignature(p) => p.fmt(f),
            Reason::RevokedKey { fingerprint } => {
                write!(f, "it is signed by a revoked key ({fingerprint})")
            }
            Reason::NotAMember {
                fingerprint,
                parent,
            } => write!(
                f,
                "it is signed by {fingerprint}, which is not an active member's signing key in its parent {parent}"
            ),
            Reason::Tree { violations, more } => {
                f.write_str(&violations.join("; "))?;
                if *more > 0 {
                    write!(f, " (+{more} more)")?;
                }
                Ok(())
            }
            Reason::InvalidRoster(problem) => write!(f, "its roster is invalid: {problem}"),
            Reason::Unauthorized(why) => write!(f, "outside its signer's authority: {why}"),
            Reason::RevokedKeyBack { machine, key } => write!(
                f,
                "it makes a revoked key of {machine} ({key}) active again; a revoked key never comes back"
            ),
            Reason::ProofDoesNotHold { machine, problem } => write!(
                f,
                "it admits {machine} with keys/{machine}.proof that does not hold: {problem}"
            ),
            Reason::Recorded(text) => f.write_str(text),
        }
    }
}

/// A [`Reason`] in records and `--json` output: its sentence (read back as
/// [`Reason::Recorded`]).
mod reason_text {
    use super::Reason;

    pub fn serialize<S: serde::Serializer>(why: &Reason, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(why)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(Reason::Recorded)
    }
}

/// What this machine remembers between verifications.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustState {
    /// The trust root this state belongs to.
    pub root: String,
    /// Verified commits: everything they reach is authentic (most recent first).
    #[serde(default)]
    pub tips: Vec<String>,
    /// The last forge tip verified (a later tip must contain it).
    #[serde(default)]
    pub forge_tip: Option<String>,
    /// SHA256 fingerprints of every SSH-type key, and every age recipient, listed in
    /// `keys/revoked` of an authentic commit.
    #[serde(default)]
    pub revoked: BTreeSet<String>,
    /// `keys/revoked` blobs already read into `revoked`.
    #[serde(default)]
    pub revoked_blobs: BTreeSet<String>,
}

impl TrustState {
    /// Loads the state for `root` from `state_dir`; a missing state, or one for another root,
    /// starts afresh from the root (whose `keys/revoked` is read at once).
    ///
    /// Fails closed: a state file that exists but cannot be read or parsed is an error, never
    /// a fresh start (which would forget the revoked keys and the last verified forge tip, and
    /// so let a rewind past a revocation through).
    pub fn load(repo: &git2::Repository, state_dir: &Path, root: git2::Oid) -> Result<TrustState> {
        let path = state_dir.join(STATE_FILE);
        let bytes = match files::read_limited(&path, STATE_LIMIT) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(TrustState::fresh(repo, root)),
            Err(e) => {
                return Err(ErrorKind::TrustStateDamaged {
                    path,
                    problem: crate::error::chain(&e),
                }
                .into());
            }
        };
        let saved: TrustState =
            serde_json::from_slice(&bytes).map_err(|e| ErrorKind::TrustStateDamaged {
                path: path.clone(),
                problem: format!(
                    "not a trust state (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        if saved.root == root.to_string() {
            return Ok(saved);
        }
        Ok(TrustState::fresh(repo, root))
    }

    /// A state that knows only `root` (and the revocations in its tree).
    pub fn fresh(repo: &git2::Repository, root: git2::Oid) -> TrustState {
        let mut state = TrustState {
            root: root.to_string(),
            tips: vec![root.to_string()],
            ..TrustState::default()
        };
        if let Ok(commit) = repo.find_commit(root) {
            state.learn_revoked(repo, &commit);
        }
        state
    }

    /// Writes the state atomically (0600).
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        files::ensure_private_dir(state_dir)?;
        let text = serde_json::to_vec(self).expect("trust state serializes");
        files::write_atomic(&state_dir.join(STATE_FILE), &text, 0o600)
    }

    /// The trust root.
    pub fn root_oid(&self) -> Option<git2::Oid> {
        git2::Oid::from_str(&self.root).ok()
    }

    /// The last authentic forge tip, or the root.
    pub fn last_authentic(&self) -> Option<git2::Oid> {
        self.forge_tip
            .as_deref()
            .and_then(|t| git2::Oid::from_str(t).ok())
            .or_else(|| self.root_oid())
    }

    /// Remembers `tip` as verified: everything it reaches is authentic.
    pub fn remember_tip(&mut self, tip: git2::Oid) {
        let t = tip.to_string();
        self.tips.retain(|x| x != &t);
        self.tips.insert(0, t);
        self.tips.truncate(TIPS_KEPT);
    }

    /// Adds the keys of `commit`'s `keys/revoked` to the revoked set.
    fn learn_revoked(&mut self, repo: &git2::Repository, commit: &git2::Commit<'_>) {
        let Ok(tree) = commit.tree() else { return };
        let Ok(entry) = tree.get_path(Path::new(crate::roster::layout::REVOKED)) else {
            return;
        };
        let id = entry.id().to_string();
        if self.revoked_blobs.contains(&id) {
            return;
        }
        if let Ok(blob) = repo.find_blob(entry.id()) {
            let text = String::from_utf8_lossy(blob.content());
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if line.starts_with("age1") {
                    // Age recipients are kept as themselves (no fingerprint can look alike).
                    if let Some(r) = line.split('#').next() {
                        self.revoked.insert(r.trim().to_string());
                    }
                    continue;
                }
                if let Some(fp) = key_fingerprint(line) {
                    self.revoked.insert(fp);
                }
            }
        }
        self.revoked_blobs.insert(id);
    }
}

/// The fingerprint of the `TYPE BASE64` key in an OpenSSH public key line (options before it
/// are skipped, as sshd would).
fn key_fingerprint(line: &str) -> Option<String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    for i in 0..fields.len().saturating_sub(1) {
        if let Ok(key) =
            ssh_key::PublicKey::from_openssh(&format!("{} {}", fields[i], fields[i + 1]))
        {
            return Some(signing::fingerprint(&key));
        }
    }
    None
}

/// The outcome of verifying a tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The tip and everything up to it is authentic; `checked` commits were new.
    Authentic {
        /// How many commits were verified now.
        checked: usize,
    },
    /// Not authentic: the commits that are refused for a reason of their own (descendants of
    /// a refused commit are refused too, without a record each).
    Refused(Vec<Refusal>),
}

/// Verifies commits, caching the signing keys of each `keys/` tree it reads.
pub struct Verifier<'r> {
    repo: &'r git2::Repository,
    members: HashMap<git2::Oid, Rc<HashMap<String, String>>>,
    rosters: HashMap<Option<git2::Oid>, Rc<std::result::Result<TreeRoster, String>>>,
    founding: Option<String>,
    /// After a refused [`Verifier::verify`]: the newest authentic commit among the new ones
    /// (honest work that members made before the refused commits), if any.
    pub best_authentic: Option<git2::Oid>,
    /// With [`Verifier::recording`]: each commit found authentic, with its signer.
    accepted: Option<Vec<Accepted>>,
}

/// A commit [`Verifier::verify`] found authentic: who signed it, with which key, and the
/// committer time it claims (what stock git checks a key's validity window against).
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The signing key.
    pub key: ssh_key::PublicKey,
    /// The machine whose signing key it is, in the parents' rosters.
    pub machine: String,
    /// The commit's committer time, in seconds since the epoch.
    pub time: i64,
}

impl<'r> Verifier<'r> {
    /// A verifier over `repo`.
    pub fn new(repo: &'r git2::Repository) -> Verifier<'r> {
        Verifier {
            repo,
            members: HashMap::new(),
            rosters: HashMap::new(),
            founding: None,
            best_authentic: None,
            accepted: None,
        }
    }

    /// This verifier, keeping a record of every commit it finds authentic (see
    /// [`Verifier::take_accepted`]).
    pub fn recording(mut self) -> Verifier<'r> {
        self.accepted = Some(Vec::new());
        self
    }

    /// The commits found authentic since [`Verifier::recording`], in the order verified
    /// (parents first).
    pub fn take_accepted(&mut self) -> Vec<Accepted> {
        self.accepted
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The active signing keys (fingerprint → machine name) in `commit`'s tree.
    pub fn signing_keys_in(&mut self, commit: &git2::Commit<'_>) -> Rc<HashMap<String, String>> {
        self.signers_of(commit)
    }

    /// The active signing keys (fingerprint → machine name) in `commit`'s tree.
    fn signers_of(&mut self, commit: &git2::Commit<'_>) -> Rc<HashMap<String, String>> {
        let keys_tree = commit
            .tree()
            .ok()
            .and_then(|t| t.get_name("keys").map(|e| e.id()));
        let Some(id) = keys_tree else {
            return Rc::new(HashMap::new());
        };
        if let Some(m) = self.members.get(&id) {
            return m.clone();
        }
        let mut map = HashMap::new();
        if let Ok(tree) = self.repo.find_tree(id) {
            for entry in tree.iter() {
                let Some(name) = entry.name().ok().and_then(|n| n.strip_suffix(".sign.pub")) else {
                    continue;
                };
                if crate::roster::check_name(name).is_err()
                    || entry.kind() != Some(git2::ObjectType::Blob)
                {
                    continue;
                }
                let Ok(blob) = self.repo.find_blob(entry.id()) else {
                    continue;
                };
                let text = String::from_utf8_lossy(blob.content());
                for fp in text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .filter_map(key_fingerprint)
                {
                    map.insert(fp, name.to_string());
                }
            }
        }
        let map = Rc::new(map);
        self.members.insert(id, map.clone());
        map
    }

    /// The roster of `commit`'s tree, checked whole (see [`crate::authority`]).
    fn roster_of(
        &mut self,
        commit: &git2::Commit<'_>,
    ) -> Rc<std::result::Result<TreeRoster, String>> {
        let keys = commit
            .tree()
            .ok()
            .and_then(|t| t.get_name("keys").map(|e| e.id()));
        if let Some(r) = self.rosters.get(&keys) {
            return r.clone();
        }
        let r = Rc::new(authority::read_tree(self.repo, keys));
        self.rosters.insert(keys, r.clone());
        r
    }

    /// The fleet's founding commit as seen from `root` (computed once).
    fn founding(&mut self, root: &str) -> String {
        if let Some(f) = &self.founding {
            return f.clone();
        }
        let f = git2::Oid::from_str(root)
            .ok()
            .and_then(|r| founding_commit(self.repo, r).ok())
            .map(|o| o.to_string())
            .unwrap_or_else(|| root.to_string());
        self.founding = Some(f.clone());
        f
    }

    /// Why `commit`'s roster may not follow its parents' (already authentic) ones: an invalid
    /// roster, a key of the revoked set made active again, or a machine admitted without a
    /// proof that binds its keys.
    fn roster_refusal(&mut self, state: &TrustState, commit: &git2::Commit<'_>) -> Option<Reason> {
        let mine = self.roster_of(commit);
        let roster = match &*mine {
            Err(problem) => return Some(Reason::InvalidRoster(problem.clone())),
            Ok(r) => r,
        };
        let parents: Vec<Rc<std::result::Result<TreeRoster, String>>> =
            commit.parents().map(|p| self.roster_of(&p)).collect();
        let in_every_parent = |pred: &dyn Fn(&TreeRoster) -> bool| {
            parents.iter().all(|p| p.as_ref().as_ref().is_ok_and(pred))
        };
        for (fp, name) in roster.active_fingerprints() {
            if state.revoked.contains(&fp)
                && !in_every_parent(&|r| r.active_fingerprints().contains_key(&fp))
            {
                return Some(Reason::RevokedKeyBack {
                    machine: name,
                    key: fp,
                });
            }
        }
        for (name, m) in &roster.members {
            if let Some(age) = &m.age
                && state.revoked.contains(age)
                && !in_every_parent(&|r| {
                    r.members.get(name).and_then(|p| p.age.as_ref()) == Some(age)
                })
            {
                return Some(Reason::RevokedKeyBack {
                    machine: name.clone(),
                    key: "an age recipient".into(),
                });
            }
        }
        let root = state.root.clone();
        for (name, m) in &roster.members {
            if in_every_parent(&|r| r.members.contains_key(name)) {
                continue;
            }
            // A new machine: a proof, when it carries one, must bind exactly these keys.
            let Some(proof) = &m.proof else { continue };
            let fleet = self.founding(&root);
            let checked = roster
                .statement(&fleet, name)
                .ok_or(crate::enrollment::ProofProblem::OtherStatement)
                .and_then(|st| st.check(proof));
            if let Err(problem) = checked {
                return Some(Reason::ProofDoesNotHold {
                    machine: name.clone(),
                    problem,
                });
            }
        }
        None
    }

    /// Verifies `tip` against `state` (updating it: verified tips, revoked keys). With
    /// `forge`, `tip` is the forge's branch: it must also contain the last forge tip verified.
    pub fn verify(
        &mut self,
        state: &mut TrustState,
        tip: git2::Oid,
        forge: bool,
    ) -> Result<Verdict> {
        let repo = self.repo;
        let root = state
            .root_oid()
            .ok_or_else(|| Error::refused("the trust root in the state is not a commit id"))?;
        let refuse_tip = |why: Reason| Verdict::Refused(vec![Refusal::of(repo, tip, why)]);
        if repo.find_commit(tip).is_err() {
            return Ok(refuse_tip(Reason::Missing));
        }
        let tip_text = tip.to_string();
        let known = tip == root || state.tips.contains(&tip_text);
        // Nothing new: a verified tip (the forge's, when it is the forge's branch).
        if known && (!forge || state.forge_tip.as_deref().is_none_or(|f| f == tip_text)) {
            if forge {
                state.forge_tip = Some(tip_text);
            }
            return Ok(Verdict::Authentic { checked: 0 });
        }
        if forge && let Some(prev) = rewound_from(repo, state, tip)? {
            return Ok(refuse_tip(Reason::Rewound {
                verified: prev.to_string(),
            }));
        }
        let todo = unverified(repo, state, tip, root)?;
        // Nothing to walk: the tip is the root, a verified tip or an ancestor of one. Only the
        // root's descendants count (an ancestor of the root is not part of this fleet's history).
        if todo.is_empty()
            && !known
            && !repo
                .graph_descendant_of(tip, root)
                .map_err(Error::git("cannot compare histories"))?
        {
            return Ok(refuse_tip(Reason::OutsideRoot {
                root: root.to_string(),
            }));
        }
        let refusals = self.check_each(state, tip, &todo)?;
        if let Some(refusals) = refusals {
            if let Some(best) = self.best_authentic {
                state.remember_tip(best);
            }
            return Ok(Verdict::Refused(refusals));
        }
        state.remember_tip(tip);
        if forge {
            state.forge_tip = Some(tip.to_string());
        }
        Ok(Verdict::Authentic {
            checked: todo.len(),
        })
    }

    /// Checks each commit of `todo` (parents first, up to `tip`), learning the revocations of
    /// the authentic ones as it goes and keeping the last authentic one in `best_authentic`.
    /// Returns the refusals when any commit is refused (one for `tip` when every refused
    /// commit was refused only because a parent was), `None` when all are authentic.
    fn check_each(
        &mut self,
        state: &mut TrustState,
        tip: git2::Oid,
        todo: &[git2::Oid],
    ) -> Result<Option<Vec<Refusal>>> {
        let repo = self.repo;
        let mut bad: HashSet<git2::Oid> = HashSet::new();
        let mut refusals = Vec::new();
        self.best_authentic = None;
        for &oid in todo {
            let commit = repo
                .find_commit(oid)
                .map_err(Error::git("cannot read a commit"))?;
            let (key, machine) = match self.check(state, &commit, &bad) {
                Ok(signer) => signer,
                Err(why) => {
                    bad.insert(oid);
                    // A commit refused only because a parent is gets no record of its own.
                    if why != Reason::ParentRefused {
                        refusals.push(Refusal::of(repo, oid, why));
                    }
                    continue;
                }
            };
            if let Some(accepted) = &mut self.accepted {
                accepted.push(Accepted {
                    key,
                    machine,
                    time: commit.committer().when().seconds(),
                });
            }
            state.learn_revoked(repo, &commit);
            self.best_authentic = Some(oid);
        }
        if bad.is_empty() {
            return Ok(None);
        }
        if refusals.is_empty() {
            refusals.push(Refusal::of(repo, tip, Reason::ParentRefused));
        }
        Ok(Some(refusals))
    }

    /// Whether `commit` is authentic, given the commits already refused (`bad`): its signing
    /// key and the machine it belongs to; otherwise why not ([`Reason::ParentRefused`] when
    /// only a parent is).
    fn check(
        &mut self,
        state: &TrustState,
        commit: &git2::Commit<'_>,
        bad: &HashSet<git2::Oid>,
    ) -> std::result::Result<(ssh_key::PublicKey, String), Reason> {
        if commit.parent_count() == 0 {
            return Err(Reason::Unrelated);
        }
        if commit.parent_ids().any(|p| bad.contains(&p)) {
            return Err(Reason::ParentRefused);
        }
        let key = signing::verified_signer(self.repo, commit.id()).map_err(|p| match p {
            SignatureProblem::Unsigned => Reason::Unsigned,
            p => Reason::BadSignature(p),
        })?;
        let fp = signing::fingerprint(&key);
        if state.revoked.contains(&fp) {
            return Err(Reason::RevokedKey { fingerprint: fp });
        }
        // The key must be an active member's in EVERY parent's roster.
        let mut signer = String::new();
        for parent in commit.parents() {
            match self.signers_of(&parent).get(&fp) {
                Some(name) => signer = name.clone(),
                None => {
                    return Err(Reason::NotAMember {
                        fingerprint: fp,
                        parent: parent.id().to_string(),
                    });
                }
            }
        }
        if let Some(reason) = self.roster_refusal(state, commit) {
            return Err(reason);
        }
        self.authorize(commit, &signer)?;
        Ok((key, signer))
    }

    /// Whether every path `commit` changes is within its signer's role in each parent's roster
    /// (see [`crate::authority::may_change`]).
    fn authorize(
        &mut self,
        commit: &git2::Commit<'_>,
        signer: &str,
    ) -> std::result::Result<(), Reason> {
        let repo = self.repo;
        let paths = authority::changed_paths(repo, commit).map_err(Reason::InvalidRoster)?;
        if paths.is_empty() {
            return Ok(());
        }
        let tree = commit.tree().map_err(|_| Reason::Missing)?;
        for parent in commit.parents() {
            let role = match &*self.roster_of(&parent) {
                Ok(r) => r.members.get(signer).map(|m| m.role()),
                Err(_) => None,
            }
            .unwrap_or(authority::Role::Receiver);
            if role == authority::Role::Admin {
                continue;
            }
            let ptree = parent.tree().map_err(|_| Reason::Missing)?;
            for path in &paths {
                if let Err(why) = authority::may_change(repo, signer, role, path, &ptree, &tree) {
                    return Err(Reason::Unauthorized(why));
                }
            }
        }
        Ok(())
    }
}

/// The machine a commit claims to come from: its `Fleetkey-Machine:` trailer, the NAME of a
/// `NAME@fleetkey.invalid` author, or the author's name (shortened, printable characters only).
pub fn claimed_machine(repo: &git2::Repository, oid: git2::Oid) -> String {
    let Ok(commit) = repo.find_commit(oid) else {
        return "unknown".into();
    };
    if let Some(name) = commit.message().ok().and_then(crate::signing::machine_of) {
        return name.to_string();
    }
    let author = commit.author();
    if let Some(name) = author
        .email()
        .ok()
        .and_then(|e| e.strip_suffix("@fleetkey.invalid"))
        .filter(|n| crate::roster::check_name(n).is_ok())
    {
        return name.to_string();
    }
    let name: String = String::from_utf8_lossy(author.name_bytes())
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

/// The fleet's fingerprint: its founding commit (the root of the history) and the founder's
/// signing-key fingerprint, as `enroll` prints it and `status` shows it on every member.
pub fn fleet_fingerprint(repo: &git2::Repository, from: git2::Oid) -> Result<String> {
    let (oid, key) = founding(repo, from)?;
    Ok(format!("{oid} {}", signing::fingerprint(&key)))
}

/// The fleet's founding commit, seen from `from`: the first commit fleetkey signed.
pub fn founding_commit(repo: &git2::Repository, from: git2::Oid) -> Result<git2::Oid> {
    Ok(founding(repo, from)?.0)
}

fn founding(repo: &git2::Repository, from: git2::Oid) -> Result<(git2::Oid, ssh_key::PublicKey)> {
    let mut walk = repo
        .revwalk()
        .map_err(Error::git("cannot walk the history"))?;
    walk.push(from)
        .map_err(Error::git("cannot walk the history"))?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
        .map_err(Error::git("cannot walk the history"))?;
    // The founding commit is the first commit fleetkey signed: the first one with a signing
    // key in its own tree (a chezmoi source has the user's history before it).
    for oid in walk {
        let oid = oid.map_err(Error::git("cannot walk the history"))?;
        if let Ok(key) = signing::verified_signer(repo, oid) {
            return Ok((oid, key));
        }
    }
    Err(ErrorKind::Refused(
        "this fleet has no signed commit: it was made before fleetkey signed its history".into(),
    )
    .hint("start a new fleet with `fleetkey init` on one machine and enroll the others (see docs/rotation.md)"))
}

/// Whether `key` is an active member's signing key in HEAD's tree (normally `name`'s own:
/// `keys/NAME.sign.pub`).
pub fn signs_for(repo: &git2::Repository, name: &str, key: &ssh_key::PublicKey) -> bool {
    let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
        return false;
    };
    let fp = signing::fingerprint(key);
    let members = Verifier::new(repo).signers_of(&head);
    members.get(&fp).is_some_and(|owner| owner == name) || members.contains_key(&fp)
}

/// The fingerprints of `name`'s signing keys in HEAD's tree (`keys/NAME.sign.pub`).
pub fn head_signing_keys(repo: &git2::Repository, name: &str) -> Vec<String> {
    let path = crate::roster::layout::sign_pub(crate::roster::layout::KEYS, name);
    let Some(blob) = repo
        .head()
        .and_then(|h| h.peel_to_tree())
        .ok()
        .and_then(|t| t.get_path(Path::new(&path)).ok())
        .and_then(|e| repo.find_blob(e.id()).ok())
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(blob.content())
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(key_fingerprint)
        .collect()
}

/// The trust root pinned in config.toml, refusing a machine set up before signed history.
pub fn pinned_root(config: &crate::config::MachineConfig) -> Result<git2::Oid> {
    config
        .trust_root
        .as_deref()
        .and_then(|r| git2::Oid::from_str(r).ok())
        .ok_or_else(|| {
            ErrorKind::Refused(
                "this machine has no trust root: its fleet was set up before fleetkey signed its history, so nothing from the forge can be authenticated".into(),
            )
            .hint("start a new fleet: `fleetkey init` on one machine, then `fleetkey enroll NAME --remote URL` and `fleetkey approve NAME` for the others (docs/rotation.md)")
        })
}

/// The last forge tip verified here, when the forge's `tip` no longer contains it (a rewind).
fn rewound_from(
    repo: &git2::Repository,
    state: &TrustState,
    tip: git2::Oid,
) -> Result<Option<git2::Oid>> {
    let Some(prev) = state
        .forge_tip
        .as_deref()
        .and_then(|t| git2::Oid::from_str(t).ok())
    else {
        return Ok(None);
    };
    let contains = prev == tip
        || repo
            .graph_descendant_of(tip, prev)
            .map_err(Error::git("cannot compare histories"))?;
    Ok((!contains).then_some(prev))
}

/// The commits from `root` (excluded) to `tip` not under a tip verified before, parents first.
fn unverified(
    repo: &git2::Repository,
    state: &TrustState,
    tip: git2::Oid,
    root: git2::Oid,
) -> Result<Vec<git2::Oid>> {
    let mut walk = repo
        .revwalk()
        .map_err(Error::git("cannot walk the history"))?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
        .map_err(Error::git("cannot walk the history"))?;
    walk.push(tip)
        .map_err(Error::git("cannot walk the history"))?;
    let _ = walk.hide(root);
    for t in &state.tips {
        if let Ok(oid) = git2::Oid::from_str(t)
            && repo.find_commit(oid).is_ok()
        {
            let _ = walk.hide(oid);
        }
    }
    walk.collect::<std::result::Result<_, _>>()
        .map_err(Error::git("cannot walk the history"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{Signer, SigningKey};

    struct Fleet {
        _dir: tempfile::TempDir,
        repo: git2::Repository,
    }

    /// A machine's age recipient and SSH key line, the same for a name all through a test.
    fn other_keys(name: &str) -> (String, String) {
        use std::sync::Mutex;
        static KEYS: Mutex<Vec<(String, String, String)>> = Mutex::new(Vec::new());
        let mut keys = KEYS.lock().unwrap();
        if let Some((_, a, s)) = keys.iter().find(|(n, _, _)| n == name) {
            return (a.clone(), s.clone());
        }
        let age = crate::identity::Identity::generate()
            .recipient()
            .to_string();
        let ssh = SigningKey::generate(name).unwrap().public_line();
        keys.push((name.to_string(), age.clone(), ssh.clone()));
        (age, ssh)
    }

    /// A tree of `files`; each machine with a `keys/NAME.sign.pub` also gets its age and SSH
    /// key files (a valid roster), unless `files` gives them.
    fn tree_with(repo: &git2::Repository, files: &[(&str, &str)]) -> git2::Oid {
        let mut keys = repo.treebuilder(None).unwrap();
        let mut top = repo.treebuilder(None).unwrap();
        let mut all: Vec<(String, String)> = files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        for (path, _) in files {
            let Some(name) = path
                .strip_prefix("keys/")
                .and_then(|n| n.strip_suffix(".sign.pub"))
            else {
                continue;
            };
            let (age, ssh) = other_keys(name);
            for (p, t) in [
                (format!("keys/{name}.age.pub"), age),
                (format!("keys/{name}.ssh.pub"), ssh),
            ] {
                if !all.iter().any(|(x, _)| *x == p) {
                    all.push((p, format!("{t}\n")));
                }
            }
        }
        for (path, text) in &all {
            let (path, text) = (path.as_str(), text.as_str());
            let blob = repo.blob(text.as_bytes()).unwrap();
            match path.strip_prefix("keys/") {
                Some(name) => keys.insert(name, blob, 0o100644).unwrap(),
                None => top.insert(path, blob, 0o100644).unwrap(),
            };
        }
        let keys_id = keys.write().unwrap();
        top.insert("keys", keys_id, 0o040000).unwrap();
        top.write().unwrap()
    }

    fn commit(
        repo: &git2::Repository,
        signer: &Signer,
        files: &[(&str, &str)],
        parents: &[git2::Oid],
    ) -> git2::Oid {
        let tree = repo.find_tree(tree_with(repo, files)).unwrap();
        let parents: Vec<git2::Commit> = parents
            .iter()
            .map(|p| repo.find_commit(*p).unwrap())
            .collect();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        signing::commit(repo, signer, None, "m", &tree, &refs).unwrap()
    }

    fn fleet() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        Fleet { _dir: dir, repo }
    }

    fn signer(name: &str) -> Signer {
        Signer::new(name, SigningKey::generate(name).unwrap())
    }

    #[test]
    fn members_commits_verify_and_a_strangers_do_not() {
        let f = fleet();
        let a = signer("a");
        let b = signer("b");
        let mallory = signer("mallory");
        let a_pub = a.key().public_line();
        let b_pub = b.key().public_line();
        let root = commit(&f.repo, &a, &[("keys/a.sign.pub", &a_pub)], &[]);
        let mut state = TrustState {
            root: root.to_string(),
            ..Default::default()
        };
        let mut v = Verifier::new(&f.repo);
        let two = commit(
            &f.repo,
            &a,
            &[("keys/a.sign.pub", &a_pub), ("keys/b.sign.pub", &b_pub)],
            &[root],
        );
        let three = commit(
            &f.repo,
            &b,
            &[
                ("keys/a.sign.pub", &a_pub),
                ("keys/b.sign.pub", &b_pub),
                ("x", "1"),
            ],
            &[two],
        );
        assert_eq!(
            v.verify(&mut state, three, true).unwrap(),
            Verdict::Authentic { checked: 2 }
        );
        // Incremental: nothing new to check.
        assert_eq!(
            v.verify(&mut state, three, true).unwrap(),
            Verdict::Authentic { checked: 0 }
        );
        // A stranger adds itself.
        let m_pub = mallory.key().public_line();
        let evil = commit(
            &f.repo,
            &mallory,
            &[
                ("keys/a.sign.pub", &a_pub),
                ("keys/b.sign.pub", &b_pub),
                ("keys/mallory.sign.pub", &m_pub),
            ],
            &[three],
        );
        let Verdict::Refused(r) = v.verify(&mut state, evil, true).unwrap() else {
            panic!("a stranger's commit must be refused");
        };
        assert_eq!(r[0].commit, evil.to_string());
        assert!(
            matches!(r[0].why, Reason::NotAMember { .. }),
            "{}",
            r[0].why
        );
        assert!(r[0].why.to_string().contains("not an active member"));
        // ... and a member's commit on top of it is refused too.
        let on_top = commit(&f.repo, &a, &[("keys/a.sign.pub", &a_pub)], &[evil]);
        assert!(matches!(
            v.verify(&mut state, on_top, true).unwrap(),
            Verdict::Refused(_)
        ));
        // A rewind to an older commit is refused.
        let Verdict::Refused(r) = v.verify(&mut state, two, true).unwrap() else {
            panic!("a rewind must be refused");
        };
        assert_eq!(
            r[0].why,
            Reason::Rewound {
                verified: three.to_string()
            }
        );
    }

    #[test]
    fn a_revoked_key_stays_revoked_even_on_a_branch_before_the_revocation() {
        let f = fleet();
        let a = signer("a");
        let b = signer("b");
        let a_pub = a.key().public_line();
        let b_pub = b.key().public_line();
        let both = [
            ("keys/a.sign.pub", a_pub.as_str()),
            ("keys/b.sign.pub", b_pub.as_str()),
        ];
        let root = commit(&f.repo, &a, &both, &[]);
        let mut state = TrustState {
            root: root.to_string(),
            ..Default::default()
        };
        let revoked = format!("{b_pub}\n# b 2026-01-01 compromised\n");
        let revoke = commit(
            &f.repo,
            &a,
            &[("keys/a.sign.pub", &a_pub), ("keys/revoked", &revoked)],
            &[root],
        );
        let mut v = Verifier::new(&f.repo);
        assert!(matches!(
            v.verify(&mut state, revoke, true).unwrap(),
            Verdict::Authentic { .. }
        ));
        // b signs on top of the root (where it was active), merged with the revoke.
        let side = commit(&f.repo, &b, &both, &[root]);
        let Verdict::Refused(r) = v.verify(&mut state, side, false).unwrap() else {
            panic!("a revoked key must be refused");
        };
        assert!(
            matches!(r[0].why, Reason::RevokedKey { .. }),
            "{}",
            r[0].why
        );
    }

    #[test]
    fn an_invalid_roster_or_a_revoked_key_made_active_again_is_refused() {
        let f = fleet();
        let a = signer("a");
        let b = signer("b");
        let a_pub = a.key().public_line();
        let b_pub = b.key().public_line();
        let root = commit(&f.repo, &a, &[("keys/a.sign.pub", &a_pub)], &[]);
        let fresh = || TrustState {
            root: root.to_string(),
            ..Default::default()
        };
        let refused = |state: &mut TrustState, tip| match Verifier::new(&f.repo)
            .verify(state, tip, false)
            .unwrap()
        {
            Verdict::Refused(r) => r[0].why.clone(),
            v => panic!("must be refused: {v:?}"),
        };
        // Two SSH keys in one file.
        let (_, a_ssh) = other_keys("a");
        let two = format!("{a_ssh}\n{b_pub}\n");
        let bad = commit(
            &f.repo,
            &a,
            &[("keys/a.sign.pub", &a_pub), ("keys/a.ssh.pub", &two)],
            &[root],
        );
        let why = refused(&mut fresh(), bad);
        assert!(
            matches!(&why, Reason::InvalidRoster(p) if p.contains("keys/a.ssh.pub line 2")),
            "{why}"
        );
        // b admitted, revoked, then added again under another name by a.
        let with_b = commit(
            &f.repo,
            &a,
            &[("keys/a.sign.pub", &a_pub), ("keys/b.sign.pub", &b_pub)],
            &[root],
        );
        let revoked = format!("{b_pub}\n# b 2026-01-01 lost\n");
        let revoke = commit(
            &f.repo,
            &a,
            &[("keys/a.sign.pub", &a_pub), ("keys/revoked", &revoked)],
            &[with_b],
        );
        let mut state = fresh();
        assert!(matches!(
            Verifier::new(&f.repo)
                .verify(&mut state, revoke, false)
                .unwrap(),
            Verdict::Authentic { .. }
        ));
        let back = commit(
            &f.repo,
            &a,
            &[("keys/a.sign.pub", &a_pub), ("keys/c.sign.pub", &b_pub)],
            &[revoke],
        );
        let why = refused(&mut state, back);
        assert!(
            matches!(&why, Reason::RevokedKeyBack { machine, .. } if machine == "c"),
            "{why}"
        );
    }

    #[test]
    fn an_unsigned_commit_is_refused() {
        let f = fleet();
        let a = signer("a");
        let a_pub = a.key().public_line();
        let root = commit(&f.repo, &a, &[("keys/a.sign.pub", &a_pub)], &[]);
        let mut state = TrustState {
            root: root.to_string(),
            ..Default::default()
        };
        let tree = f
            .repo
            .find_tree(tree_with(
                &f.repo,
                &[("keys/a.sign.pub", &a_pub), ("x", "evil")],
            ))
            .unwrap();
        let sig = git2::Signature::now("fleetkey (a)", "a@fleetkey.invalid").unwrap();
        let parent = f.repo.find_commit(root).unwrap();
        let unsigned = f
            .repo
            .commit(None, &sig, &sig, "m", &tree, &[&parent])
            .unwrap();
        let Verdict::Refused(r) = Verifier::new(&f.repo)
            .verify(&mut state, unsigned, true)
            .unwrap()
        else {
            panic!("unsigned must be refused");
        };
        assert_eq!(r[0].machine, "a");
        assert_eq!(r[0].why, Reason::Unsigned);
        assert_eq!(r[0].why.to_string(), "it is not signed");
    }

    #[test]
    fn a_damaged_trust_state_is_an_error_and_never_a_fresh_start() {
        let f = fleet();
        let a = signer("a");
        let a_pub = a.key().public_line();
        let root = commit(&f.repo, &a, &[("keys/a.sign.pub", &a_pub)], &[]);
        let dir = tempfile::tempdir().unwrap();
        // Missing: a fresh start from the root.
        let fresh = TrustState::load(&f.repo, dir.path(), root).unwrap();
        assert_eq!(fresh.tips, vec![root.to_string()]);
        // Present but not JSON (a truncated write, a disk error): refused, naming the file.
        let path = dir.path().join(STATE_FILE);
        std::fs::write(&path, b"{\"root\": \"").unwrap();
        let e = TrustState::load(&f.repo, dir.path(), root).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::TrustStateDamaged { path: p, .. } if *p == path),
            "{e:?}"
        );
        assert!(e.to_string().contains("trust.json"), "{e}");
        assert!(e.advice().unwrap().contains("fleetkey verify"), "{e:?}");
        // Valid JSON of another shape: refused too.
        std::fs::write(&path, b"[1, 2]").unwrap();
        assert!(TrustState::load(&f.repo, dir.path(), root).is_err());
        // A saved state comes back as it was.
        let mut saved = TrustState::fresh(&f.repo, root);
        saved.revoked.insert("SHA256:x".into());
        saved.save(dir.path()).unwrap();
        assert_eq!(TrustState::load(&f.repo, dir.path(), root).unwrap(), saved);
    }

    #[test]
    fn a_refusal_is_recorded_as_its_sentence() {
        let r = Refusal {
            commit: "c".into(),
            machine: "m".into(),
            why: Reason::RevokedKey {
                fingerprint: "SHA256:k".into(),
            },
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"commit":"c","machine":"m","why":"it is signed by a revoked key (SHA256:k)"}"#
        );
        let back: Refusal = serde_json::from_str(&json).unwrap();
        assert_eq!(back.why.to_string(), r.why.to_string());
    }
}

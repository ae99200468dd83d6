//! The local clone of the fleet repo, through libgit2: staging, commits, history. Network
//! operations live in [`crate::forge`].
//!
//! Owns: every commit fleetkey makes. A commit names the machine and what changed; files that
//! must agree (a roster and its ciphertext) are staged and committed together. Must never: commit
//! plaintext of a secret (only `secrets.env.age` ever holds secret values).

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::signing::Signer;

/// The fleet clone.
pub struct FleetRepo {
    repo: git2::Repository,
    root: PathBuf,
    signer: Option<Signer>,
}

impl FleetRepo {
    /// Opens the clone at `root`.
    pub fn open(root: &Path) -> Result<FleetRepo> {
        let repo = git2::Repository::open(root).map_err(Error::git(format!(
            "cannot open the fleet repo {}",
            root.display()
        )))?;
        Ok(FleetRepo {
            repo,
            root: root.to_path_buf(),
            signer: None,
        })
    }

    /// This clone, making its commits signed by `signer`.
    pub fn with_signer(mut self, signer: Signer) -> FleetRepo {
        self.signer = Some(signer);
        self
    }

    /// Signs this clone's next commits with `signer`.
    pub fn set_signer(&mut self, signer: Signer) {
        self.signer = Some(signer);
    }

    /// Who signs this clone's commits; an error when this machine has no signing key.
    pub fn signer(&self) -> Result<&Signer> {
        self.signer.as_ref().ok_or_else(|| {
            ErrorKind::Refused("this machine has no commit-signing key".into()).hint(
                "fleets made before signed history are not supported: start a new fleet with \
                 `fleetkey init` (see docs/rotation.md)",
            )
        })
    }

    /// Makes a new, empty clone at `root` on `branch` with `origin` pointing at `remote`.
    pub fn init(root: &Path, branch: &str, remote: &str) -> Result<FleetRepo> {
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head(branch).no_reinit(true);
        let repo = git2::Repository::init_opts(root, &opts)
            .map_err(Error::git(format!("cannot create {}", root.display())))?;
        let fleet = FleetRepo {
            repo,
            root: root.to_path_buf(),
            signer: None,
        };
        if !remote.is_empty() {
            fleet.set_origin(remote)?;
        }
        Ok(fleet)
    }

    /// Makes a bare repository on `branch` at `path` (the embedded forge).
    pub fn init_bare(path: &Path, branch: &str) -> Result<()> {
        let mut opts = git2::RepositoryInitOptions::new();
        opts.bare(true).initial_head(branch).no_reinit(true);
        git2::Repository::init_opts(path, &opts).map_err(Error::git(format!(
            "cannot create the forge {}",
            path.display()
        )))?;
        Ok(())
    }

    /// The working tree's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The libgit2 repository, for the modules that walk history or merge.
    pub fn raw(&self) -> &git2::Repository {
        &self.repo
    }

    /// The commit HEAD points to, if any.
    pub fn head(&self) -> Option<git2::Oid> {
        self.repo.head().ok().and_then(|h| h.target())
    }

    /// Stages exactly `paths` (relative to the root; a missing file is staged as deleted) and
    /// commits them on HEAD with `message`, signed by this clone's signer. Returns `None` when they were already committed as
    /// they are.
    pub fn commit_paths(&self, paths: &[&str], message: &str) -> Result<Option<git2::Oid>> {
        let mut index = self
            .repo
            .index()
            .map_err(Error::git("cannot read the index"))?;
        for path in paths {
            let rel = Path::new(path);
            if self.root.join(rel).exists() {
                index
                    .add_path(rel)
                    .map_err(Error::git(format!("cannot stage {path}")))?;
            } else {
                let _ = index.remove_path(rel);
            }
        }
        self.commit_index(&mut index, message)
    }

    /// Stages every change in the working tree (`git add -A` under `pathspecs`) and commits.
    pub fn commit_all(&self, pathspecs: &[&str], message: &str) -> Result<Option<git2::Oid>> {
        let mut index = self
            .repo
            .index()
            .map_err(Error::git("cannot read the index"))?;
        index
            .add_all(pathspecs.iter(), git2::IndexAddOption::DEFAULT, None)
            .map_err(Error::git("cannot stage changes"))?;
        index
            .update_all(pathspecs.iter(), None)
            .map_err(Error::git("cannot stage deletions"))?;
        self.commit_index(&mut index, message)
    }

    fn commit_index(&self, index: &mut git2::Index, message: &str) -> Result<Option<git2::Oid>> {
        let tree_id = index
            .write_tree()
            .map_err(Error::git("cannot write a tree"))?;
        let parent = match self.head() {
            Some(oid) => Some(
                self.repo
                    .find_commit(oid)
                    .map_err(Error::git("cannot read HEAD"))?,
            ),
            None => None,
        };
        if let Some(p) = &parent
            && p.tree_id() == tree_id
        {
            index
                .write()
                .map_err(Error::git("cannot write the index"))?;
            return Ok(None);
        }
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(Error::git("cannot read a tree"))?;
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = crate::signing::commit(
            &self.repo,
            self.signer()?,
            Some("HEAD"),
            message,
            &tree,
            &parents,
        )?;
        index
            .write()
            .map_err(Error::git("cannot write the index"))?;
        Ok(Some(oid))
    }

    /// Puts `paths` (files or directories, relative to the root) back as HEAD has them,
    /// dropping uncommitted changes and untracked files there. Only for fleetkey's own files
    /// (keys/, secrets.*), after an interrupted command left them half-changed.
    pub fn restore_paths(&self, paths: &[&str]) -> Result<()> {
        if self.head().is_none() {
            return Ok(());
        }
        let mut opts = git2::build::CheckoutBuilder::new();
        opts.force().remove_untracked(true);
        for p in paths {
            opts.path(*p);
        }
        self.repo
            .checkout_head(Some(&mut opts))
            .map_err(Error::git("cannot restore fleetkey's files from HEAD"))
    }

    /// Moves HEAD forward to `target` when HEAD is its ancestor (or there is no HEAD), updating
    /// the working tree; returns whether it moved. Never touches a diverged history.
    pub fn fast_forward(&self, target: git2::Oid) -> Result<bool> {
        let head = self.head();
        if head == Some(target) {
            return Ok(false);
        }
        if let Some(h) = head
            && !self
                .repo
                .graph_descendant_of(target, h)
                .map_err(Error::git("cannot compare histories"))?
        {
            return Ok(false);
        }
        let commit = self
            .repo
            .find_commit(target)
            .map_err(Error::git("cannot read the forge's commit"))?;
        let mut opts = git2::build::CheckoutBuilder::new();
        opts.safe();
        self.repo
            .checkout_tree(commit.as_object(), Some(&mut opts))
            .map_err(Error::git("cannot update the working tree"))?;
        let branch = self
            .repo
            .find_reference("HEAD")
            .ok()
            .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_string))
            .unwrap_or_else(|| "refs/heads/main".to_string());
        self.repo
            .reference(&branch, target, true, "fleetkey: fast-forward")
            .map_err(Error::git("cannot move the branch"))?;
        Ok(true)
    }

    /// The commit `refs/remotes/origin/BRANCH` points to.
    pub fn remote_tracking(&self, branch: &str) -> Option<git2::Oid> {
        self.repo.refname_to_id(&tracking_ref(branch)).ok()
    }

    /// Points `origin` at `url`, adding it when missing, and makes the current branch track it.
    pub fn set_origin(&self, url: &str) -> Result<()> {
        match self.repo.find_remote("origin") {
            Ok(r) if r.url().ok() == Some(url) => {}
            Ok(_) => self
                .repo
                .remote_set_url("origin", url)
                .map_err(Error::git("cannot set the origin remote"))?,
            Err(_) => {
                self.repo
                    .remote("origin", url)
                    .map_err(Error::git("cannot add the origin remote"))?;
            }
        }
        // Track origin's branch, so a plain `git pull` works in the manual fallback.
        let branch = self
            .repo
            .find_reference("HEAD")
            .ok()
            .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_string))
            .and_then(|t| t.strip_prefix("refs/heads/").map(str::to_string));
        if let Some(branch) = branch {
            let mut config = self
                .repo
                .config()
                .map_err(Error::git("cannot read the repo config"))?;
            let key = format!("branch.{branch}.remote");
            if config.get_string(&key).is_err() {
                config
                    .set_str(&key, "origin")
                    .and_then(|()| {
                        config.set_str(
                            &format!("branch.{branch}.merge"),
                            &format!("refs/heads/{branch}"),
                        )
                    })
                    .map_err(Error::git("cannot set the upstream branch"))?;
            }
        }
        Ok(())
    }

    /// The URL of `origin`.
    pub fn origin_url(&self) -> Option<String> {
        self.repo
            .find_remote("origin")
            .ok()
            .and_then(|r| r.url().ok().map(str::to_string))
    }
}

/// The remote-tracking ref of `branch`: `refs/remotes/origin/BRANCH`.
pub fn tracking_ref(branch: &str) -> String {
    format!("refs/remotes/origin/{branch}")
}

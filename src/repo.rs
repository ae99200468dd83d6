//! The local clone of the fleet repo, through libgit2: staging, commits, history. Network
//! operations live in [`crate::forge`].
//!
//! Owns: every commit fleetkey makes. A commit names the machine and what changed; files that
//! must agree (a roster and its ciphertext) are staged and committed together. Must never: commit
//! plaintext of a secret (only `secrets.env.age` ever holds secret values).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The fleet clone.
pub struct FleetRepo {
    repo: git2::Repository,
    root: PathBuf,
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
        })
    }

    /// Makes a new, empty clone at `root` on `branch` with `origin` pointing at `remote`.
    pub fn init(root: &Path, branch: &str, remote: &str) -> Result<FleetRepo> {
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head(branch).no_reinit(true);
        let repo = git2::Repository::init_opts(root, &opts)
            .map_err(Error::git(format!("cannot create {}", root.display())))?;
        repo.remote("origin", remote)
            .map_err(Error::git("cannot add the origin remote"))?;
        Ok(FleetRepo {
            repo,
            root: root.to_path_buf(),
        })
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

    /// The signature of commits made on `machine`.
    pub fn signature(machine: &str) -> Result<git2::Signature<'static>> {
        git2::Signature::now(
            &format!("fleetkey ({machine})"),
            &format!("{machine}@fleetkey.invalid"),
        )
        .map_err(Error::git("cannot make a commit signature"))
    }

    /// Stages exactly `paths` (relative to the root; a missing file is staged as deleted) and
    /// commits them on HEAD with `message`. Returns `None` when they were already committed as
    /// they are.
    pub fn commit_paths(
        &self,
        paths: &[&str],
        machine: &str,
        message: &str,
    ) -> Result<Option<git2::Oid>> {
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
        self.commit_index(&mut index, machine, message)
    }

    /// Stages every change in the working tree (`git add -A` under `pathspecs`) and commits.
    pub fn commit_all(
        &self,
        pathspecs: &[&str],
        machine: &str,
        message: &str,
    ) -> Result<Option<git2::Oid>> {
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
        self.commit_index(&mut index, machine, message)
    }

    fn commit_index(
        &self,
        index: &mut git2::Index,
        machine: &str,
        message: &str,
    ) -> Result<Option<git2::Oid>> {
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
        let sig = Self::signature(machine)?;
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = self
            .repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .map_err(Error::git("cannot commit"))?;
        index
            .write()
            .map_err(Error::git("cannot write the index"))?;
        Ok(Some(oid))
    }

    /// The URL of `origin`.
    pub fn origin_url(&self) -> Option<String> {
        self.repo
            .find_remote("origin")
            .ok()
            .and_then(|r| r.url().ok().map(str::to_string))
    }
}

//! Reads and writes under `$HOME` that no symlink can redirect.
//!
//! Every operation starts from a descriptor of `$HOME` and opens the directories of a
//! [`HomeRel`] one component at a time with `O_NOFOLLOW | O_DIRECTORY`: a component that is a
//! symlink is a refusal, and once a directory is open, renaming or replacing it by a symlink
//! changes nothing for this walk (the descriptor is the directory). So the check made on disk
//! IS the walk that writes; there is no window between them. Missing directories are created
//! with the mode the caller asks for, set exactly on the directories created here and on no
//! other. A write goes to a temp file created in the target's directory descriptor, is fsynced
//! and renamed over the target (which must not be a symlink or a directory), then the directory
//! is fsynced. A read refuses a symlink and reads at most the limit plus one byte.
//!
//! Must never: follow a symlink below `$HOME`, chmod an existing directory, leave a temp file
//! behind on an error, or put file content in an error.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::HomeRel;
use crate::limits::{Limit, TooLarge};

/// The mode of directories a write creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirMode {
    /// 0700: only this user (`~/.ssh`, directories of private files).
    Private,
    /// 0755 less the user's umask (see [`crate::harden::user_umask`]): the mode the user's own
    /// `mkdir` would give (0755 with the usual umask 022, 0750 with 027).
    Shared,
}

impl DirMode {
    /// The permission bits.
    pub fn bits(self) -> u32 {
        Self::bits_with(self, crate::harden::user_umask())
    }

    /// The permission bits under the user's umask `umask`; a private directory is 0700
    /// whatever the umask.
    pub fn bits_with(self, umask: u32) -> u32 {
        match self {
            DirMode::Private => 0o700,
            DirMode::Shared => (0o755 & !umask) | 0o700,
        }
    }
}

/// Why a confined read or write did not happen. Holds paths only, never content.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// A component (or the target) is a symlink.
    #[error("{} is a symbolic link; fleetkey never reads or writes through one", .path.display())]
    Symlink {
        /// The symlink.
        path: PathBuf,
    },
    /// A component that must be a directory is something else (a file/directory clash).
    #[error("{} is not a directory here, so nothing below it can be read or written", .path.display())]
    NotADirectory {
        /// The component.
        path: PathBuf,
    },
    /// The target is a directory.
    #[error("{} is a directory here; not replacing it with a file", .path.display())]
    IsADirectory {
        /// The target.
        path: PathBuf,
    },
    /// The target is a device, FIFO or socket.
    #[error("{} is not a regular file", .path.display())]
    NotRegular {
        /// The target.
        path: PathBuf,
    },
    /// The target or one of its directories does not exist.
    #[error("{} does not exist", .path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// The file is larger than its limit.
    #[error("{}: {limit}", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit it broke.
        limit: TooLarge,
    },
    /// The operating system refused.
    #[error("{action} {}", .path.display())]
    Io {
        /// What was being done ("cannot create directory").
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl WalkError {
    /// Whether the path simply does not exist (not a refusal).
    pub fn is_not_found(&self) -> bool {
        matches!(self, WalkError::NotFound { .. })
    }
}

impl From<WalkError> for crate::Error {
    fn from(e: WalkError) -> crate::Error {
        match e {
            WalkError::Io {
                action,
                path,
                source,
            } => crate::error::ErrorKind::Io {
                action,
                path,
                source,
            }
            .into(),
            other => crate::Error::refused(other.to_string()),
        }
    }
}

/// A confined file's content and the metadata of the very file it was read from.
#[derive(Debug)]
pub struct Contents {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// `fstat` of the open file.
    pub metadata: std::fs::Metadata,
}

/// What tells a file changed without reading it: size, modification time, inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Inode number (a rename-over save changes it).
    pub ino: u64,
}

impl Stamp {
    /// The stamp of `meta` (an `fstat` of an open file, or a walk's stat).
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ino: meta.ino(),
        }
    }
}

/// A step of a walk, for tests that change the tree while a walk runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The directory at this depth (1 = the first component) is open.
    Opened(usize),
    /// The temp file is written; the rename comes next.
    BeforeRename,
}

/// Permission bits as rustix takes them (`mode_t` is 16 bits on macOS).
#[allow(clippy::unnecessary_cast)]
fn mode_of(bits: u32) -> Mode {
    Mode::from_raw_mode(bits as rustix::fs::RawMode)
}

/// `$HOME`, open: the root of every confined operation.
#[derive(Debug)]
pub struct HomeDir {
    fd: OwnedFd,
    path: PathBuf,
}

fn io_err(action: &'static str, path: PathBuf) -> impl FnOnce(Errno) -> WalkError {
    move |e| WalkError::Io {
        action,
        path,
        source: e.into(),
    }
}

/// Opens the directory `name` in `parent` without following a symlink.
fn open_dir(parent: BorrowedFd<'_>, name: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// What `name` in `parent` is, without following it (`None`: it does not exist).
fn kind_of(parent: BorrowedFd<'_>, name: &str) -> Result<Option<FileType>, Errno> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Turns a failed open of a directory component into the reason, by looking at it.
fn classify_dir(parent: BorrowedFd<'_>, name: &str, err: Errno, path: PathBuf) -> WalkError {
    match kind_of(parent, name) {
        Ok(None) => WalkError::NotFound { path },
        Ok(Some(FileType::Symlink)) => WalkError::Symlink { path },
        Ok(Some(FileType::Directory)) => io_err("cannot open directory", path)(err),
        Ok(Some(_)) => WalkError::NotADirectory { path },
        Err(e) => io_err("cannot inspect", path)(e),
    }
}

impl HomeDir {
    /// Opens `home` (following links in `home` itself: it is the user's; nothing below it is
    /// followed).
    pub fn open(home: &Path) -> Result<HomeDir, WalkError> {
        let fd = rustix::fs::openat(
            rustix::fs::CWD,
            home,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(
            "cannot open your home directory",
            home.to_path_buf(),
        ))?;
        Ok(HomeDir {
            fd,
            path: home.to_path_buf(),
        })
    }

    /// The path `$HOME` was opened at (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The full path of the first `n` components of `rel`, for messages.
    fn shown(&self, comps: &[&str], n: usize) -> PathBuf {
        let mut p = self.path.clone();
        for c in &comps[..n] {
            p.push(c);
        }
        p
    }

    /// Opens the directories `comps` one by one from `$HOME`, creating missing ones with
    /// `create` (and setting that mode exactly on those only). `hook` runs after each open.
    fn open_dirs(
        &self,
        comps: &[&str],
        create: Option<DirMode>,
        hook: &mut dyn FnMut(Step),
    ) -> Result<OwnedFd, WalkError> {
        let mut cur: OwnedFd = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
            .map_err(io_err("cannot open", self.path.clone()))?;
        for (i, name) in comps.iter().enumerate() {
            let path = || self.shown(comps, i + 1);
            let next = match open_dir(cur.as_fd(), name) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create.is_some() => {
                    let mode = create.expect("checked").bits();
                    match rustix::fs::mkdirat(cur.as_fd(), *name, mode_of(mode)) {
                        Ok(()) => {
                            let fd = open_dir(cur.as_fd(), name)
                                .map_err(|e| classify_dir(cur.as_fd(), name, e, path()))?;
                            // The umask narrowed the mode; this directory is ours to set.
                            rustix::fs::fchmod(&fd, mode_of(mode))
                                .map_err(io_err("cannot set permissions on", path()))?;
                            fd
                        }
                        // Created meanwhile by someone else: use it as it is.
                        Err(Errno::EXIST) => open_dir(cur.as_fd(), name)
                            .map_err(|e| classify_dir(cur.as_fd(), name, e, path()))?,
                        Err(e) => return Err(io_err("cannot create directory", path())(e)),
                    }
                }
                Err(e) => return Err(classify_dir(cur.as_fd(), name, e, path())),
            };
            cur = next;
            hook(Step::Opened(i + 1));
        }
        Ok(cur)
    }

    /// Creates the directory `rel` (and its missing parents) with `mode`, never following a
    /// symlink. Existing directories keep their mode.
    #[cfg(test)]
    pub fn create_dir(&self, rel: &HomeRel, mode: DirMode) -> Result<(), WalkError> {
        let comps: Vec<&str> = rel.components().collect();
        self.open_dirs(&comps, Some(mode), &mut |_| {})?;
        Ok(())
    }

    /// Writes `bytes` to `rel` atomically with permission bits `mode`, creating missing
    /// directories with `dirs`. Refuses when a component or the target is a symlink, or the
    /// target is a directory or a special file.
    pub fn write_file(
        &self,
        rel: &HomeRel,
        bytes: &[u8],
        mode: u32,
        dirs: DirMode,
    ) -> Result<(), WalkError> {
        self.write_file_hooked(rel, bytes, mode, dirs, &mut |_| {})
    }

    pub(crate) fn write_file_hooked(
        &self,
        rel: &HomeRel,
        bytes: &[u8],
        mode: u32,
        dirs: DirMode,
        hook: &mut dyn FnMut(Step),
    ) -> Result<(), WalkError> {
        let comps: Vec<&str> = rel.components().collect();
        let (name, parents) = comps.split_last().expect("a HomeRel is never empty");
        let dir = self.open_dirs(parents, Some(dirs), hook)?;
        let target = || self.shown(&comps, comps.len());
        match kind_of(dir.as_fd(), name).map_err(io_err("cannot inspect", target()))? {
            None | Some(FileType::RegularFile) => {}
            Some(FileType::Symlink) => return Err(WalkError::Symlink { path: target() }),
            Some(FileType::Directory) => return Err(WalkError::IsADirectory { path: target() }),
            Some(_) => return Err(WalkError::NotRegular { path: target() }),
        }
        let (tmp_name, tmp) = create_temp(dir.as_fd(), mode).map_err(io_err(
            "cannot create a temporary file in",
            self.shown(parents, parents.len()),
        ))?;
        let remove_tmp = || {
            let _ = rustix::fs::unlinkat(dir.as_fd(), tmp_name.as_str(), AtFlags::empty());
        };
        let mut file = std::fs::File::from(tmp);
        let written = file
            .write_all(bytes)
            .and_then(|()| rustix::fs::fchmod(&file, mode_of(mode)).map_err(Into::into))
            .and_then(|()| file.sync_all());
        if let Err(source) = written {
            remove_tmp();
            return Err(WalkError::Io {
                action: "cannot write",
                path: target(),
                source,
            });
        }
        drop(file);
        hook(Step::BeforeRename);
        if let Err(e) = rustix::fs::renameat(dir.as_fd(), tmp_name.as_str(), dir.as_fd(), *name) {
            remove_tmp();
            return Err(match e {
                Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST => {
                    WalkError::IsADirectory { path: target() }
                }
                e => io_err("cannot replace", target())(e),
            });
        }
        rustix::fs::fsync(&dir).map_err(io_err(
            "cannot sync directory",
            self.shown(parents, parents.len()),
        ))
    }

    /// Reads `rel`, refusing a symlink (at any component) and anything but a regular file, and
    /// reading at most `limit` bytes: a larger file is [`WalkError::TooLarge`].
    pub fn read_file(&self, rel: &HomeRel, limit: Limit) -> Result<Contents, WalkError> {
        let comps: Vec<&str> = rel.components().collect();
        let (name, parents) = comps.split_last().expect("a HomeRel is never empty");
        let dir = self.open_dirs(parents, None, &mut |_| {})?;
        let target = || self.shown(&comps, comps.len());
        // O_NONBLOCK: opening a FIFO must not hang; it is refused below.
        let fd = rustix::fs::openat(
            dir.as_fd(),
            *name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match kind_of(dir.as_fd(), name) {
            Ok(None) => WalkError::NotFound { path: target() },
            Ok(Some(FileType::Symlink)) => WalkError::Symlink { path: target() },
            Ok(Some(FileType::RegularFile | FileType::Directory)) | Err(_) => {
                io_err("cannot read", target())(e)
            }
            Ok(Some(_)) => WalkError::NotRegular { path: target() },
        })?;
        let mut file = std::fs::File::from(fd);
        let metadata = file.metadata().map_err(|source| WalkError::Io {
            action: "cannot inspect",
            path: target(),
            source,
        })?;
        if metadata.is_dir() {
            return Err(WalkError::IsADirectory { path: target() });
        }
        if !metadata.is_file() {
            return Err(WalkError::NotRegular { path: target() });
        }
        let too_large = |size| WalkError::TooLarge {
            path: target(),
            limit: limit.check(size).expect_err("over the limit"),
        };
        if metadata.len() > limit.bytes {
            return Err(too_large(metadata.len()));
        }
        let mut bytes = Vec::with_capacity(metadata.len() as usize);
        (&mut file)
            .take(limit.bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|source| WalkError::Io {
                action: "cannot read",
                path: target(),
                source,
            })?;
        if bytes.len() as u64 > limit.bytes {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(Contents { bytes, metadata })
    }

    /// The size, modification time and inode of the regular file `rel`, without reading it
    /// (a symlink at any component is refused): tells an unchanged file from a changed one.
    pub fn stamp(&self, rel: &HomeRel) -> Result<Stamp, WalkError> {
        let comps: Vec<&str> = rel.components().collect();
        let (name, parents) = comps.split_last().expect("a HomeRel is never empty");
        let dir = self.open_dirs(parents, None, &mut |_| {})?;
        let target = || self.shown(&comps, comps.len());
        let st = match rustix::fs::statat(dir.as_fd(), *name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Err(WalkError::NotFound { path: target() }),
            Err(e) => return Err(io_err("cannot inspect", target())(e)),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Symlink => return Err(WalkError::Symlink { path: target() }),
            FileType::Directory => return Err(WalkError::IsADirectory { path: target() }),
            _ => return Err(WalkError::NotRegular { path: target() }),
        }
        Ok(Stamp {
            size: st.st_size as u64,
            mtime_ns: (st.st_mtime as i64)
                .saturating_mul(1_000_000_000)
                .saturating_add(st.st_mtime_nsec as i64),
            ino: st.st_ino as u64,
        })
    }

    /// Removes the regular file `rel`. `Ok(false)` when it (or a directory above it) does not
    /// exist; a symlink or directory there is refused, not removed.
    pub fn remove_file(&self, rel: &HomeRel) -> Result<bool, WalkError> {
        let comps: Vec<&str> = rel.components().collect();
        let (name, parents) = comps.split_last().expect("a HomeRel is never empty");
        let dir = match self.open_dirs(parents, None, &mut |_| {}) {
            Ok(dir) => dir,
            Err(WalkError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let target = || self.shown(&comps, comps.len());
        match kind_of(dir.as_fd(), name).map_err(io_err("cannot inspect", target()))? {
            None => return Ok(false),
            Some(FileType::RegularFile) => {}
            Some(FileType::Symlink) => return Err(WalkError::Symlink { path: target() }),
            Some(FileType::Directory) => return Err(WalkError::IsADirectory { path: target() }),
            Some(_) => return Err(WalkError::NotRegular { path: target() }),
        }
        match rustix::fs::unlinkat(dir.as_fd(), *name, AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(io_err("cannot remove", target())(e)),
        }
        rustix::fs::fsync(&dir).map_err(io_err(
            "cannot sync directory",
            self.shown(parents, parents.len()),
        ))?;
        Ok(true)
    }

    /// Checks that no existing component of `rel` (the target included) is a symlink or a
    /// non-directory where a directory is needed; missing components are fine. What `track`
    /// asks before it seeds a path.
    pub fn probe(&self, rel: &HomeRel) -> Result<(), WalkError> {
        let comps: Vec<&str> = rel.components().collect();
        let (name, parents) = comps.split_last().expect("a HomeRel is never empty");
        let dir = match self.open_dirs(parents, None, &mut |_| {}) {
            Ok(dir) => dir,
            Err(WalkError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        match kind_of(dir.as_fd(), name) {
            Ok(Some(FileType::Symlink)) => Err(WalkError::Symlink {
                path: self.shown(&comps, comps.len()),
            }),
            Ok(_) => Ok(()),
            Err(e) => Err(io_err("cannot inspect", self.shown(&comps, comps.len()))(e)),
        }
    }
}

/// Creates `.fleetkey-RANDOM.tmp` in `dir` (exclusive, not following links) with `mode`.
fn create_temp(dir: BorrowedFd<'_>, mode: u32) -> Result<(String, OwnedFd), Errno> {
    use rand_core::RngCore;
    let mut last = Errno::EXIST;
    for _ in 0..16 {
        let name = format!(".fleetkey-{:016x}.tmp", rand_core::OsRng.next_u64());
        match rustix::fs::openat(
            dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode_of(mode),
        ) {
            Ok(fd) => return Ok((name, fd)),
            Err(Errno::EXIST) => last = Errno::EXIST,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

//! Safe file primitives: atomic writes, private directories, and the permission checks ssh makes
//! before it trusts a key file.
//!
//! Owns: every write of user data. A write goes to a temp file in the target's directory, is
//! fsynced, renamed over the target, and the directory is fsynced; a crash leaves the old or the
//! new content, never a mix. Must never: follow a symlink at the target of a private write, or
//! leave a temp file with secret content behind on an error path.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// Writes `bytes` to `path` atomically with permission bits `mode`.
///
/// The parent directory must exist. A symlink at `path` is replaced by a regular file when
/// `refuse_symlink` is false, and refused otherwise.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = parent_of(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".fleetkey-")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(Error::io("cannot create a temporary file in", dir))?;
    // The umask may have narrowed the mode; set it exactly.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))
        .map_err(Error::io("cannot set permissions on", tmp.path()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(Error::io("cannot write", path))?;
    tmp.persist(path)
        .map_err(|e| Error::io("cannot replace", path)(e.error))?;
    sync_dir(dir)
}

/// Like [`write_atomic`], but refuses when `path` is a symlink (a private file must be exactly
/// where the user expects it).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path)
        && meta.file_type().is_symlink()
    {
        return Err(ErrorKind::Refused(format!(
            "{} is a symbolic link; refusing to write a private file through it",
            path.display()
        ))
        .into());
    }
    write_atomic(path, bytes, 0o600)
}

/// Creates a new file with mode 0600 that must not exist yet (never overwrites a key).
pub fn create_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io("cannot create", path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(Error::io("cannot write", path))?;
    sync_dir(parent_of(path))
}

/// Creates `dir` and its missing parents, each one it creates with mode 0700. An existing
/// directory keeps its mode: fleetkey changes the mode only of what it creates (a shared
/// `1777` directory must stay one; `doctor` reports a loose one instead).
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io("cannot create directory", dir))
}

/// Creates `dir` and its parents with the process umask.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(Error::io("cannot create directory", dir))
}

/// Refuses a private file (or its directory) that others can access or that someone else owns,
/// as ssh does for private keys.
pub fn check_private(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(Error::io("cannot read", path))?;
    let mode = meta.permissions().mode() & 0o7777;
    let uid = rustix::process::geteuid().as_raw();
    if mode & 0o077 != 0 || meta.uid() != uid {
        return Err(ErrorKind::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        }
        .into());
    }
    Ok(())
}

/// Reads at most `limit` bytes of `path`; a longer file is an error (key and roster files are
/// small, and an unbounded read of a hostile file is a denial of service).
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let mut file = File::open(path).map_err(Error::io("cannot read", path))?;
    // Room for a typical key or config file up front: one read for the data, one for EOF.
    let mut buf = Vec::with_capacity(limit.min(8192) as usize);
    (&mut file)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(Error::io("cannot read", path))?;
    if buf.len() as u64 > limit {
        return Err(too_large(path, limit));
    }
    Ok(buf)
}

/// Reads a file of the fleet repo (fleet.toml, keys/, secrets): it must be a regular file,
/// not a symlink (a symlinked fleet.toml could point at an identity and have its content
/// quoted in an error), and at most `limit` bytes.
pub fn read_regular(path: &Path, limit: crate::limits::Limit) -> Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            Error::refused(format!(
                "{} is a symbolic link; fleetkey reads the fleet's files only as regular files",
                path.display()
            ))
        } else {
            Error::io("cannot read", path)(e.into())
        }
    })?;
    let mut file = File::from(fd);
    let meta = file.metadata().map_err(Error::io("cannot inspect", path))?;
    if !meta.is_file() {
        return Err(Error::refused(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let over = |size: u64| {
        limit
            .check(size)
            .map_err(|e| Error::refused(format!("{}: {e}", path.display())))
    };
    over(meta.len())?;
    let mut buf = Vec::with_capacity(meta.len().min(limit.bytes) as usize);
    (&mut file)
        .take(limit.bytes.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(Error::io("cannot read", path))?;
    over(buf.len() as u64)?;
    Ok(buf)
}

/// [`read_regular`] for a file that must be UTF-8 text.
pub fn read_regular_text(path: &Path, limit: crate::limits::Limit) -> Result<String> {
    String::from_utf8(read_regular(path, limit)?)
        .map_err(|_| Error::refused(format!("{} is not UTF-8 text", path.display())))
}

fn too_large(path: &Path, limit: u64) -> Error {
    Error::refused(format!(
        "{} is larger than {limit} bytes; refusing to read it",
        path.display()
    ))
}

/// Reads a file that is expected to hold text (UTF-8).
pub fn read_text(path: &Path, limit: u64) -> Result<String> {
    let bytes = read_limited(path, limit)?;
    String::from_utf8(bytes)
        .map_err(|_| Error::refused(format!("{} is not UTF-8 text", path.display())))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes a directory entry change (a rename) to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("cannot sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_are_made_0700_and_existing_ones_keep_their_mode() {
        let t = tempfile::tempdir().unwrap();
        let shared = t.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        let new = shared.join("a/b");
        ensure_private_dir(&new).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            mode(&shared),
            0o1777,
            "an existing directory is never chmodded"
        );
        assert_eq!(mode(&shared.join("a")), 0o700);
        assert_eq!(mode(&new), 0o700);
        ensure_private_dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o1777);
    }

    #[test]
    fn atomic_write_replaces_content_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"old", 0o644).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
    }

    #[test]
    fn private_write_refuses_a_symlinked_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = write_private(&link, b"x").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read(&real).unwrap(), b"keep");
    }

    #[test]
    fn create_new_private_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        create_new_private(&path, b"one").unwrap();
        assert!(create_new_private(&path, b"two").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }

    #[test]
    fn group_readable_private_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        fs::write(&path, b"x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = check_private(&path).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::InsecurePermissions { mode: 0o640, .. }
            ),
            "{err}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        check_private(&path).unwrap();
    }

    #[test]
    fn fleet_files_must_be_regular_capped_and_not_symlinks() {
        let limit = crate::limits::Limit {
            what: "a test file",
            bytes: 10,
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fleet.toml");
        fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_regular(&file, limit).unwrap(), b"0123456789");
        fs::write(&file, b"0123456789a").unwrap();
        let err = read_regular(&file, limit).unwrap_err().to_string();
        assert!(
            err.contains("larger than the limit for a test file"),
            "{err}"
        );
        assert!(!err.contains("0123"), "{err}");
        let secret = dir.path().join("identity.txt");
        fs::write(&secret, b"AGE-SECRET-KEY-1QQQ").unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let err = read_regular_text(&link, limit).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!err.contains("AGE-SECRET"), "{err}");
        let err = read_regular(dir.path(), limit).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(read_regular(&dir.path().join("missing"), limit).is_err());
    }

    #[test]
    fn oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, vec![b'a'; 11]).unwrap();
        assert!(read_limited(&path, 10).is_err());
        assert_eq!(read_limited(&path, 11).unwrap().len(), 11);
    }
}

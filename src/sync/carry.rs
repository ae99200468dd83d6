//! What a poke carries: a git bundle of the commits the pusher just made, so a peer gets a
//! change (a revocation above all) even when the forge is down, spammed or withholding.
//!
//! - **Making** ([`make`]): `git bundle create` of `refs/heads/BRANCH` over the base, the last
//!   fleet commit the pusher fetched (what the peers most likely hold), in a private temporary
//!   file in the state directory. A bundle larger than [`limits::POKE_BUNDLE`] is not sent: the
//!   peers are poked plainly and fetch from the forge.
//! - **Receiving** ([`read_bounded`], [`spool`]): `fleetkey poke` reads at most
//!   [`limits::POKE_BUNDLE`] bytes of its stdin within [`limits::POKE_READ`], checks that they
//!   start as a git bundle does, and writes them atomically (0600) into the inbox, a 0700
//!   directory in the state directory that keeps at most [`limits::POKE_INBOX`] bundles.
//!   Empty stdin is a plain poke.
//! - **Taking** ([`take_inbox`]): in the cycle, under the lock, each bundle of the inbox, oldest
//!   first: `git bundle verify` (the base is here), `git fetch` of its fleet branch into
//!   [`QUARANTINE`] (hooks off, objects checked by git's fsck), then the same gate as a forge
//!   fetch ([`crate::gate::verify_handed_over`]: signatures, authority, revocations, the tree),
//!   then integrated into HEAD by the rules of a forge fetch ([`super::integrate`]). A bundle
//!   that fails any step changes nothing: it is logged and dropped, its objects stay
//!   unreferenced, and the cycle fetches from the forge as always.
//!
//! Must never: run anything a bundle holds (git only reads it, with hooks off and an
//! environment cleaned as for the forge), let a commit reach HEAD that the gate did not
//! verify, keep a bundle after the cycle that took it, or hold more than the limits allow.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::mpsc;
use std::time::Duration;

use crate::config::FleetConfig;
use crate::error::{Error, Result};
use crate::fleet::Machine;
use crate::forge::Forge;
use crate::identity::Identity;
use crate::limits::{self, Limit, TooLarge};
use crate::repo::FleetRepo;
use crate::trust::Refusal;

use super::integrate::{self, LostFile, Upstream};

/// The inbox directory in the state directory.
pub const INBOX: &str = "inbox";

/// Where a bundle's fleet branch is fetched before the gate has verified it.
pub const QUARANTINE: &str = "refs/fleetkey/quarantine";

/// What `fleetkey poke` prints when it took a bundle: how the sender knows the peer has it
/// (an older fleetkey ignores its stdin and prints nothing).
pub const ACK: &str = "fleetkey poke: bundle taken";

/// The first line of every git bundle (format v2 or v3).
const HEADERS: [&[u8]; 2] = [b"# v2 git bundle\n", b"# v3 git bundle\n"];

/// A bundle made to be carried, removed when dropped.
pub struct Outgoing {
    file: tempfile::TempPath,
    /// The commit it brings (the pusher's HEAD).
    pub tip: git2::Oid,
    /// Its size in bytes.
    pub bytes: u64,
}

impl Outgoing {
    /// The bundle file.
    pub fn path(&self) -> &Path {
        &self.file
    }
}

/// What [`make`] made.
pub enum Made {
    /// A bundle within the limit.
    Bundle(Outgoing),
    /// Nothing new over the base: nothing to carry, nobody to poke.
    Nothing,
    /// No bundle, for the reason given (too large, no base known, git failed): the peers are
    /// poked plainly and fetch from the forge.
    Plain(String),
}

/// Bundles HEAD (the branch `refs/heads/BRANCH`) over `base`, in the state directory.
pub fn make(
    forge: &Forge,
    repo: &FleetRepo,
    state_dir: &Path,
    branch: &str,
    base: Option<git2::Oid>,
) -> Made {
    let Some(head) = repo.head() else {
        return Made::Nothing;
    };
    let Some(base) = base else {
        return Made::Plain("no fleet commit fetched yet to build a bundle on".into());
    };
    if head == base {
        return Made::Nothing;
    }
    let local = format!("refs/heads/{branch}");
    let on_branch = match repo.raw().head() {
        Ok(h) => h.name().ok().map(str::to_string),
        Err(_) => None,
    };
    if on_branch.as_deref() != Some(local.as_str()) {
        return Made::Plain(format!("the clone is not on {local}"));
    }
    match create(forge, repo, state_dir, &local, head, base) {
        Ok(Ok(bundle)) => Made::Bundle(bundle),
        Ok(Err(too_large)) => Made::Plain(too_large.to_string()),
        Err(e) => Made::Plain(format!("no bundle: {}", crate::error::chain(&e))),
    }
}

/// `git bundle create` of `local` (at `head`) over `base`; the size checked.
fn create(
    forge: &Forge,
    repo: &FleetRepo,
    state_dir: &Path,
    local: &str,
    head: git2::Oid,
    base: git2::Oid,
) -> Result<std::result::Result<Outgoing, TooLarge>> {
    crate::files::ensure_private_dir(state_dir)?;
    let file = tempfile::Builder::new()
        .prefix(".fleetkey-bundle-")
        .tempfile_in(state_dir)
        .map_err(Error::io("cannot create a temporary file in", state_dir))?
        .into_temp_path();
    let mut cmd = forge.git(Some(repo.root()));
    cmd.args(["bundle", "create", "--quiet"])
        .arg(&*file)
        .args([local, &format!("^{base}")]);
    let out = run_git(cmd)?;
    if !out.status.success() {
        return Err(Error::refused(format!(
            "git bundle failed: {}",
            git_said(&out)
        )));
    }
    let bytes = std::fs::metadata(&file)
        .map_err(Error::io("cannot read", &file))?
        .len();
    if let Err(too_large) = limits::POKE_BUNDLE.check(bytes) {
        return Ok(Err(too_large));
    }
    Ok(Ok(Outgoing {
        file,
        tip: head,
        bytes,
    }))
}

/// Why `fleetkey poke` did not take what came on its stdin.
#[derive(Debug, thiserror::Error)]
pub enum NotTaken {
    /// More than the limit.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// Stdin did not end in time.
    #[error("stdin did not end within {} s", .0.as_secs())]
    TooSlow(Duration),
    /// It does not start as a git bundle does.
    #[error("what came on stdin is not a git bundle")]
    NotABundle,
    /// Reading failed.
    #[error("cannot read stdin: {0}")]
    Read(std::io::Error),
}

/// Reads `input` to its end, at most `limit` bytes within `within`: `None` for an empty input,
/// the bytes when they start as a git bundle does. The read runs on a thread of its own; when
/// time runs out it is left blocked (the process exits soon after).
pub fn read_bounded<R: Read + Send + 'static>(
    input: R,
    limit: Limit,
    within: Duration,
) -> std::result::Result<Option<Vec<u8>>, NotTaken> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let read = input
            .take(limit.bytes.saturating_add(1))
            .read_to_end(&mut buf);
        let _ = tx.send(read.map(|_| buf));
    });
    let bytes = match rx.recv_timeout(within) {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return Err(NotTaken::Read(e)),
        Err(_) => return Err(NotTaken::TooSlow(within)),
    };
    limit.check(bytes.len() as u64)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    if !HEADERS.iter().any(|h| bytes.starts_with(h)) {
        return Err(NotTaken::NotABundle);
    }
    Ok(Some(bytes))
}

/// The inbox of `state_dir`.
pub fn inbox(state_dir: &Path) -> PathBuf {
    state_dir.join(INBOX)
}

/// Writes `bytes` into the inbox atomically (0600 in a 0700 directory), then drops the oldest
/// bundles beyond [`limits::POKE_INBOX`]. Returns the new file.
pub fn spool(state_dir: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let dir = inbox(state_dir);
    crate::files::ensure_private_dir(state_dir)?;
    crate::files::ensure_private_dir(&dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let path = dir.join(format!(
        "{:020}-{}.bundle",
        now.as_nanos(),
        std::process::id()
    ));
    crate::files::write_atomic(&path, bytes, 0o600)?;
    let spooled = spooled(state_dir);
    for old in spooled
        .iter()
        .take(spooled.len().saturating_sub(limits::POKE_INBOX))
    {
        crate::log::debug(&format!("the inbox is full: dropped {}", old.display()));
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}

/// The bundles in the inbox, oldest first.
pub fn spooled(state_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(inbox(state_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "bundle")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

/// What taking the inbox did.
#[derive(Debug, Default)]
pub struct Taken {
    /// Bundles whose commits were verified and integrated.
    pub integrated: usize,
    /// Bundles dropped: their base is missing here, they are damaged, or they did not verify.
    pub dropped: usize,
    /// The commits refused by the gate (nothing of them was used).
    pub refused: Vec<Refusal>,
    /// Managed files whose local side lost a conflict in the merge.
    pub lost: Vec<LostFile>,
    /// Other conflicts resolved in the merge.
    pub other_conflicts: usize,
}

/// Takes every bundle of the inbox (see the module's doc), oldest first; each one is removed
/// whatever became of it. Only an error that would fail any cycle (the trust state damaged,
/// the clone unwritable) is returned; a bundle's own problem is logged and the bundle dropped.
pub fn take_inbox(
    machine: &Machine,
    forge: &Forge,
    repo: &FleetRepo,
    fleet: &FleetConfig,
    identity: Option<&Identity>,
    at: &str,
) -> Result<Taken> {
    let mut taken = Taken::default();
    for file in spooled(&machine.paths.state_dir) {
        let outcome = take_one(machine, forge, repo, fleet, identity, at, &file);
        let _ = std::fs::remove_file(&file);
        if let Ok(mut r) = repo.raw().find_reference(QUARANTINE) {
            let _ = r.delete();
        }
        match outcome {
            Ok(One::Integrated(done)) => {
                taken.integrated += 1;
                taken.lost.extend(done.lost);
                taken.other_conflicts += done.other_conflicts;
            }
            Ok(One::Dropped(why)) => {
                crate::log::warn(&format!(
                    "a bundle a peer handed over was dropped: {why}; the forge brings what it held"
                ));
                taken.dropped += 1;
            }
            Ok(One::Refused(refused)) => {
                for r in &refused {
                    crate::log::warn(&format!(
                        "a bundle a peer handed over holds a commit that is not authentic: {} (claims {}): {}; nothing of it was used",
                        r.commit, r.machine, r.why
                    ));
                }
                taken.dropped += 1;
                taken.refused.extend(refused);
            }
            Err(e) if matches!(e.kind(), crate::error::ErrorKind::TrustStateDamaged { .. }) => {
                return Err(e);
            }
            Err(e) => {
                crate::log::warn(&format!(
                    "a bundle a peer handed over was dropped: {}; the forge brings what it held",
                    crate::error::chain(&e)
                ));
                taken.dropped += 1;
            }
        }
    }
    Ok(taken)
}

/// What became of one bundle.
enum One {
    Integrated(integrate::Integrated),
    Dropped(String),
    Refused(Vec<Refusal>),
}

fn take_one(
    machine: &Machine,
    forge: &Forge,
    repo: &FleetRepo,
    fleet: &FleetConfig,
    identity: Option<&Identity>,
    at: &str,
    file: &Path,
) -> Result<One> {
    let size = std::fs::symlink_metadata(file)
        .map_err(Error::io("cannot read", file))?
        .len();
    if let Err(e) = limits::POKE_BUNDLE.check(size) {
        return Ok(One::Dropped(e.to_string()));
    }
    // Its base must be here (git reads the header and checks the prerequisites).
    let mut verify = forge.git(Some(repo.root()));
    verify.args(["bundle", "verify", "--quiet"]).arg(file);
    let out = run_git(verify)?;
    if !out.status.success() {
        return Ok(One::Dropped(format!(
            "its base is not here or it is damaged ({})",
            git_said(&out)
        )));
    }
    let branch = &fleet.sync.branch;
    let mut fetch = forge.git(Some(repo.root()));
    fetch
        .args(["-c", "transfer.fsckObjects=true", "-c", "gc.auto=0"])
        .args([
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
        ])
        .arg(file)
        .arg(format!("+refs/heads/{branch}:{QUARANTINE}"));
    let out = run_git(fetch)?;
    if !out.status.success() {
        return Ok(One::Dropped(format!(
            "git could not read it ({})",
            git_said(&out)
        )));
    }
    let refused = crate::gate::verify_handed_over(machine, repo, QUARANTINE)?;
    if !refused.is_empty() {
        return Ok(One::Refused(refused));
    }
    let raw = repo.raw();
    let tip = raw
        .refname_to_id(QUARANTINE)
        .map_err(Error::git("cannot read the commits a peer handed over"))?;
    // A bundle that revokes this machine: the forge path says so and stops this machine's
    // work, as it does after any fetch; the bundle adds nothing to that.
    if crate::roster::revocation(raw, tip, &machine.config.name).is_some() {
        return Ok(One::Dropped(
            "it revokes this machine (the forge brings that)".into(),
        ));
    }
    let upstream = Upstream {
        refname: QUARANTINE,
        whose: "a peer's",
    };
    let done = integrate::integrate_from(
        &upstream,
        raw,
        &machine.config.name,
        identity,
        at,
        fleet.backend,
        repo.signer()?,
    )?;
    crate::log::info(&format!(
        "took a bundle a peer handed over: its commit {} is verified{}",
        &tip.to_string()[..12],
        if done.moved {
            " and integrated"
        } else {
            " and here already"
        }
    ));
    Ok(One::Integrated(done))
}

/// Runs a local `git` (no network), logging its argument list.
fn run_git(mut cmd: std::process::Command) -> Result<Output> {
    let line: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    crate::log::debug(&format!("running git {}", line.join(" ")));
    cmd.output().map_err(|source| {
        crate::error::ErrorKind::Spawn {
            program: "git".into(),
            source,
        }
        .into()
    })
}

/// git's last error lines, printable characters only and bounded (what a bundle names, such as
/// its refs, reaches a log only this way).
fn git_said(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let said: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(300)
        .collect();
    if said.is_empty() {
        format!("git exited with {}", out.status)
    } else {
        said
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limit = Limit {
        what: "a test bundle",
        bytes: 64,
    };

    #[test]
    fn an_empty_stdin_is_a_plain_poke() {
        let got = read_bounded(std::io::empty(), SMALL, Duration::from_secs(5)).unwrap();
        assert!(got.is_none());
    }

    #[test]
    fn only_a_git_bundle_within_the_limit_is_taken() {
        let bundle = b"# v2 git bundle\nabc refs/heads/main\n\nPACK".to_vec();
        let got = read_bounded(
            std::io::Cursor::new(bundle.clone()),
            SMALL,
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(got, Some(bundle));
        let not = read_bounded(
            std::io::Cursor::new(b"#!/bin/sh\nrm -rf ~\n".to_vec()),
            SMALL,
            Duration::from_secs(5),
        );
        assert!(matches!(not, Err(NotTaken::NotABundle)), "{not:?}");
        // An endless stream stops at the limit (plus one byte, to tell it is over).
        let big = read_bounded(std::io::repeat(b'x'), SMALL, Duration::from_secs(5));
        match big {
            Err(NotTaken::TooLarge(t)) => assert_eq!(t.limit, limits::Size(64)),
            other => panic!("{other:?}"),
        }
    }

    /// A reader that never ends and never gives anything.
    struct Never;
    impl Read for Never {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(0)
        }
    }

    #[test]
    fn a_stdin_that_never_ends_is_given_up_in_time() {
        let started = std::time::Instant::now();
        let got = read_bounded(Never, SMALL, Duration::from_millis(200));
        assert!(matches!(got, Err(NotTaken::TooSlow(_))), "{got:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn the_inbox_keeps_the_newest_bundles_privately() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut written = Vec::new();
        for i in 0..limits::POKE_INBOX + 3 {
            written.push(spool(&state, format!("# v2 git bundle\n{i}").as_bytes()).unwrap());
        }
        let kept = spooled(&state);
        assert_eq!(kept, written[3..].to_vec(), "the oldest go first");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&inbox(&state)), 0o700);
        assert_eq!(mode(&kept[0]), 0o600);
    }
}

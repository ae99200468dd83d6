//! Pokes that carry history (a git bundle of the commits just made), against a real sshd, real
//! local users and a git daemon forge, with the poke tests' harness ([`crate::poke`]).
//!
//! - While a loop pushes an unsigned commit to the forge every 0.5 s, `revoke c` on A reaches
//!   B through the bundle its poke carries: within 3 s of `revoke` returning, B has dropped
//!   c's key and reads the secrets re-encrypted without c.
//! - A peer handed bundles that do not verify (unsigned, signed by a non-member, a receiver's
//!   change of a dotfile), too large, or on a stdin that never ends changes nothing, and then
//!   still takes a good one at once.
//! - A peer that lacks a bundle's base drops it, fetches from the forge and converges.
//! - A change made while the forge is down (`secrets set`, exit 75) reaches a poked peer all
//!   the same, and the forge once it is back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::poke::{PokeFleet, SSH_BATCH, User};
use crate::util::{bin, require, run_program, wait_for};

/// What `fleetkey poke` prints when it took a bundle.
const ACK: &str = "fleetkey poke: bundle taken";

fn clone_of(u: &User) -> PathBuf {
    u.path(".local/share/fleetkey/fleet")
}

/// `git ARGS` in `u`'s clone, as `u` (the clone is theirs).
fn git_in_clone(u: &User, args: &[&str]) -> String {
    let out = u
        .command("git")
        .arg("-C")
        .arg(clone_of(u))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} as {}: {out:?}",
        u.machine
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn head_of(u: &User) -> String {
    git_in_clone(u, &["rev-parse", "HEAD"])
}

/// `fleetkey ARGS` as `u` with `stdin`, which must succeed.
fn ok_with_stdin(u: &User, args: &[&str], stdin: &[u8]) -> String {
    let mut child = u
        .command(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "fleetkey {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// ssh as `from`, with its poke key, to `to`'s account, `stdin` on ssh's stdin: what a peer's
/// poke does (the forced command runs `fleetkey poke` whatever is asked for).
fn poke_with(from: &User, to: &User, port: u16, stdin: Stdio) -> std::process::Child {
    from.command(require("ssh", "openssh-client"))
        .args(SSH_BATCH)
        .args(["-T", "-i"])
        .arg(from.path(".config/fleetkey/poke_key"))
        .args(["-p", &port.to_string(), "--"])
        .arg(format!("{}@127.0.0.1", to.name))
        .arg("fleetkey-poke")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends the file `bundle` to `to` as `from`'s poke would.
fn send_bundle(from: &User, to: &User, port: u16, bundle: &Path) -> Output {
    let file = std::fs::File::open(bundle).unwrap();
    poke_with(from, to, port, Stdio::from(file))
        .wait_with_output()
        .unwrap()
}

/// A scratch clone of the forge (owned by the test, so nothing it makes reaches a machine's
/// clone), where hostile commits are made and bundled over the forge's `main`.
struct Workshop {
    dir: tempfile::TempDir,
    base: String,
}

impl Workshop {
    fn new(forge_bare: &Path) -> Workshop {
        let dir = tempfile::tempdir().unwrap();
        run_program(
            Command::new("git")
                .args(["clone", "-q"])
                .arg(forge_bare)
                .arg(dir.path().join("w")),
        );
        let w = Workshop {
            dir,
            base: String::new(),
        };
        let base = w.git(&["rev-parse", "HEAD"]);
        Workshop { base, ..w }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("w")
    }

    fn git(&self, args: &[&str]) -> String {
        let out = run_program(Command::new("git").arg("-C").arg(self.work()).args(args));
        String::from_utf8(out).unwrap().trim().to_string()
    }

    /// A commit on the base changing `home/.zshrc` to `text`, signed with `key` (unsigned
    /// without one), bundled over the base into `NAME.bundle`; the work tree goes back to the
    /// base.
    fn bundle(&self, name: &str, text: &str, key: Option<&Path>) -> PathBuf {
        std::fs::write(self.work().join("home/.zshrc"), text).unwrap();
        let mut args: Vec<String> = ["-c", "user.name=intruder", "-c", "user.email=i@x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        match key {
            Some(k) => args.extend([
                "-c".into(),
                "gpg.format=ssh".into(),
                "-c".into(),
                format!("user.signingkey={}", k.display()),
                "-c".into(),
                "commit.gpgsign=true".into(),
            ]),
            None => args.extend(["-c".into(), "commit.gpgsign=false".into()]),
        }
        args.extend(["commit", "-qam", name].map(String::from));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        self.git(&argv);
        let file = self.dir.path().join(format!("{name}.bundle"));
        self.git(&[
            "bundle",
            "create",
            "--quiet",
            file.to_str().unwrap(),
            "main",
            &format!("^{}", self.base),
        ]);
        self.git(&["reset", "-q", "--hard", &self.base]);
        file
    }

    /// A copy of `key` owned by the test, 0600 (what ssh-keygen signs with).
    fn key_copy(&self, key: &Path, name: &str) -> PathBuf {
        let copy = self.dir.path().join(name);
        std::fs::copy(key, &copy).unwrap();
        std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        copy
    }
}

/// Pushes an unsigned commit on top of the forge's `main` every 0.5 s until dropped: a stolen
/// forge credential in a loop. Counts what it pushed.
struct Spam {
    stop: Arc<AtomicBool>,
    pushed: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spam {
    fn start(bare: PathBuf) -> Spam {
        let stop = Arc::new(AtomicBool::new(false));
        let pushed = Arc::new(AtomicUsize::new(0));
        let (s, p) = (stop.clone(), pushed.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let git = |args: &[&str]| -> String {
                    let out = Command::new("git")
                        .arg("-C")
                        .arg(&bare)
                        .args(args)
                        .env("GIT_AUTHOR_NAME", "junk")
                        .env("GIT_AUTHOR_EMAIL", "junk@x")
                        .env("GIT_COMMITTER_NAME", "junk")
                        .env("GIT_COMMITTER_EMAIL", "junk@x")
                        .output()
                        .unwrap();
                    String::from_utf8(out.stdout).unwrap().trim().to_string()
                };
                let tip = git(&["rev-parse", "main"]);
                let tree = git(&["rev-parse", "main^{tree}"]);
                let junk = git(&["commit-tree", &tree, "-p", &tip, "-m", "junk"]);
                git(&["update-ref", "refs/heads/main", &junk, &tip]);
                p.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Spam {
            stop,
            pushed,
            thread: Some(thread),
        }
    }
}

impl Drop for Spam {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn revoke_reaches_an_addressable_peer_within_seconds_while_the_forge_is_spammed() {
    let mut fleet = PokeFleet::new(&["a", "b", "c"]);
    let value = "s3cret-Value-0f-the-fleet";
    ok_with_stdin(
        &fleet.users[0],
        &["secrets", "set", "TOKEN"],
        format!("{value}\n").as_bytes(),
    );
    let c_key = {
        let line = fleet.users[2].text(".ssh/id_ed25519.pub");
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    fleet.set_poll("1h");
    let c_age = fleet.users[1]
        .text(".local/share/fleetkey/fleet/keys/c.age.pub")
        .trim()
        .to_string();
    assert!(c_age.starts_with("age1"), "{c_age}");
    assert!(fleet.users[1].text(".ssh/authorized_keys").contains(&c_key));
    fleet.users[1].start_watcher();
    let (a, b) = (&fleet.users[0], &fleet.users[1]);

    let forge_before = fleet.forge.head();
    let spam = Spam::start(fleet.forge.bare());
    wait_for(
        Duration::from_secs(5),
        || "the spam loop pushed nothing".into(),
        || (fleet.forge.head() != forge_before).then_some(()),
    );
    let out = a.run(&["revoke", "c", "--yes"]);
    let returned = Instant::now();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The forge holds commits that are not authentic: the push is refused (exit 3), unless a
    // machine healed the forge between two junk pushes and the revocation went on top (exit 0).
    // Either way the peer must have it from the poke's bundle within seconds.
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "revoke during the spam:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("delivered to 1 of 1 peers (b)"),
        "revoke says which peers have it:\n{stdout}\n{stderr}"
    );
    wait_for(
        Duration::from_secs(3),
        || {
            format!(
                "within 3 s of revoke returning, b should have dropped c's key and read the re-encrypted secrets\nauthorized_keys:\n{}\nwatcher:\n{}",
                b.text(".ssh/authorized_keys"),
                b.log()
            )
        },
        || {
            if b.text(".ssh/authorized_keys").contains(&c_key) {
                return None;
            }
            let recipients = b.text(".local/share/fleetkey/fleet/secrets.recipients");
            if recipients.contains(&c_age) || recipients.lines().count() != 2 {
                return None;
            }
            let got = b.run(&["secrets", "get", "TOKEN"]);
            (got.status.success() && got.stdout == format!("{value}\n").as_bytes()).then_some(())
        },
    );
    let took = returned.elapsed();
    eprintln!("b had the revocation {took:?} after revoke returned");
    assert!(spam.pushed.load(Ordering::Relaxed) >= 1);
    drop(spam);
    assert!(
        b.log().contains("took a bundle a peer handed over"),
        "b got the revocation from the bundle ({took:?}):\n{}",
        b.log()
    );
    // b's clone holds a's revocation commit, and nothing of the spam.
    let revocation = head_of(a);
    assert_eq!(
        git_in_clone(b, &["merge-base", "--is-ancestor", &revocation, "HEAD"]),
        ""
    );
    assert!(!b.text(".ssh/authorized_keys").contains("fleetkey-poke=c"));
}

#[test]
fn a_peer_handed_bundles_that_do_not_verify_changes_nothing_and_stays_responsive() {
    let mut fleet = PokeFleet::with_roles(&[("a", "admin"), ("b", "admin"), ("r", "receiver")]);
    let port = fleet.port();
    fleet.track(".zshrc", "one\n");
    fleet.set_poll("1h");
    fleet.users[1].start_watcher();
    let (a, b, r) = (&fleet.users[0], &fleet.users[1], &fleet.users[2]);
    let before = head_of(b);

    let shop = Workshop::new(&fleet.forge.bare());
    assert_eq!(shop.base, before, "b holds the forge's main");
    let stranger = shop.dir.path().join("stranger");
    run_program(
        Command::new(require("ssh-keygen", "openssh-client"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "stranger", "-f"])
            .arg(&stranger),
    );
    let receiver_key = shop.key_copy(&r.path(".config/fleetkey/signing_key"), "receiver");
    let hostile = [
        (
            shop.bundle("unsigned", "unsigned\n", None),
            "it is not signed",
        ),
        (
            shop.bundle("stranger", "stranger\n", Some(&stranger)),
            "which is not an active member's signing key",
        ),
        (
            shop.bundle("receiver", "receiver\n", Some(&receiver_key)),
            "outside its signer's authority",
        ),
    ];
    for (bundle, _) in &hostile {
        let out = send_bundle(a, b, port, bundle);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(ACK),
            "b takes the bundle into its inbox (the gate comes next): {out:?}"
        );
    }
    // b's cycles verify each one and refuse it.
    wait_for(
        Duration::from_secs(20),
        || format!("b did not refuse every hostile bundle:\n{}", b.log()),
        || {
            let log = b.log();
            let refused = hostile.iter().all(|(_, why)| {
                log.lines().any(|l| {
                    l.contains("a bundle a peer handed over holds a commit that is not authentic")
                        && l.contains(why)
                })
            });
            let inbox_empty = std::fs::read_dir(b.state().join("inbox"))
                .map(|d| d.count() == 0)
                .unwrap_or(true);
            (refused && inbox_empty).then_some(())
        },
    );

    // Too large: refused while it is read, nothing kept.
    let large = shop.dir.path().join("large.bundle");
    {
        let mut f = std::fs::File::create(&large).unwrap();
        f.write_all(b"# v2 git bundle\n").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..5 {
            f.write_all(&chunk).unwrap();
        }
    }
    let out = send_bundle(a, b, port, &large);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains("was not taken") && stderr.contains("larger than the limit"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(ACK));

    // A stdin that never ends: the poke gives up within its time limit (10 s).
    let started = Instant::now();
    let mut child = poke_with(a, b, port, Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"# v2 git bundle\n").unwrap();
    let status = wait_for(
        Duration::from_secs(25),
        || "a poke whose stdin never ends never returned".into(),
        || child.try_wait().unwrap(),
    );
    let gave_up = started.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    drop(stdin);
    assert!(!status.success());
    assert!(err.contains("did not end within 10 s"), "{err}");
    assert!(gave_up < Duration::from_secs(20), "{gave_up:?}");

    // Nothing changed on b: its clone, its file, its inbox.
    assert_eq!(head_of(b), before);
    assert_eq!(b.text(".zshrc"), "one\n");
    wait_for(
        Duration::from_secs(10),
        || "b's inbox is not empty".into(),
        || {
            std::fs::read_dir(b.state().join("inbox"))
                .map(|d| d.count() == 0)
                .unwrap_or(true)
                .then_some(())
        },
    );

    // And b still takes a good change at once (its poll is an hour).
    a.write(".zshrc", "two\n");
    a.ok(&["sync"]);
    wait_for(
        Duration::from_secs(10),
        || format!("b never took a's change:\n{}", b.log()),
        || (b.text(".zshrc") == "two\n").then_some(()),
    );
    assert!(
        b.log().contains("took a bundle a peer handed over"),
        "{}",
        b.log()
    );
    let pokes = a.text(".local/state/fleetkey/pokes.json");
    let v: serde_json::Value = serde_json::from_str(&pokes).unwrap();
    assert_eq!(
        v["b"]["carried"].as_str(),
        Some(head_of(a).as_str()),
        "{pokes}"
    );
}

#[test]
fn a_peer_missing_the_bundles_base_falls_back_to_the_forge_and_converges() {
    let mut fleet = PokeFleet::new(&["a", "b"]);
    fleet.track(".zshrc", "one\n");
    fleet.set_poll("1h");
    fleet.users[1].start_watcher();
    let (a, b) = (&fleet.users[0], &fleet.users[1]);
    // A commit b never hears of: made offline on a, pushed to the forge by hand (no poke).
    a.write(".zshrc", "two\n");
    a.ok(&["sync", "--offline"]);
    git_in_clone(a, &["push", "-q", "origin", "main"]);
    assert_eq!(fleet.forge.head(), head_of(a));
    assert_eq!(b.text(".zshrc"), "one\n");
    // The next change's bundle is built over that commit, which b lacks.
    a.write(".zshrc", "three\n");
    a.ok(&["sync"]);
    wait_for(
        Duration::from_secs(10),
        || format!("b never converged:\n{}", b.log()),
        || (b.text(".zshrc") == "three\n").then_some(()),
    );
    assert!(
        b.log()
            .contains("a bundle a peer handed over was dropped: its base is not here"),
        "{}",
        b.log()
    );
    assert_eq!(head_of(b), head_of(a));
    assert_eq!(fleet.forge.head(), head_of(a));
}

#[test]
fn a_change_made_while_the_forge_is_down_reaches_a_poked_peer_and_later_the_forge() {
    let mut fleet = PokeFleet::new(&["a", "b"]);
    fleet.set_poll("1h");
    fleet.users[1].start_watcher();
    fleet.forge.stop();
    let (a, b) = (&fleet.users[0], &fleet.users[1]);
    let value = "made-while-the-forge-is-down-42";
    let mut child = a
        .command(bin())
        .args(["secrets", "set", "TOKEN"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{value}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "the forge is down: the change stays local ({out:?})"
    );
    // The secret is readable as soon as b's clone moved; the cycle logs where it came from a
    // moment later (after the re-encryption check), so both are waited for.
    wait_for(
        Duration::from_secs(10),
        || {
            format!(
                "b never read the new secret from a peer's bundle:\n{}",
                b.log()
            )
        },
        || {
            let got = b.run(&["secrets", "get", "TOKEN"]);
            (got.stdout == format!("{value}\n").as_bytes()
                && b.log().contains("took a bundle a peer handed over"))
            .then_some(())
        },
    );
    // Back online, the forge gets the change from either machine.
    fleet.forge.resume();
    let (a, _) = (&fleet.users[0], &fleet.users[1]);
    a.ok(&["sync"]);
    assert_eq!(fleet.forge.head(), head_of(a));
}

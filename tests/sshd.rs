//! A real OpenSSH server on 127.0.0.1 with StrictModes on and fleetkey's merged file as its
//! AuthorizedKeysFile: a fleet key logs in, a local key still logs in, a revoked key is
//! refused, and a `from=`-restricted local key is not widened by the merge.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::server::{self, Server, Spec};
use crate::util::{Machine, require, run_program};

/// An sshd started by the test (on a port it confirmed it bound) and stopped when dropped.
struct Sshd {
    server: Server,
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    run_program(
        Command::new(require("ssh-keygen", "openssh-client"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path),
    );
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_string())
}

impl Sshd {
    fn start(dir: &Path, authorized_keys: &Path) -> Sshd {
        let (host_key, _) = keygen(dir, "host_key");
        let config = |port: u16| {
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 StrictModes yes\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
                 PidFile {}\nLogLevel VERBOSE\n",
                host_key.display(),
                authorized_keys.display(),
                dir.join("sshd.pid").display()
            )
        };
        let command = server::sshd_spec(dir, config);
        let spec = Spec {
            what: "sshd",
            ready: &server::sshd_ready,
            command: &command,
        };
        Sshd {
            server: Server::start(&spec, &dir.join("sshd.log"), None),
        }
    }

    /// Whether `key` logs in as the current user and runs a command.
    fn logs_in(&self, key: &Path) -> bool {
        let user = String::from_utf8(run_program(Command::new("id").arg("-un"))).unwrap();
        let out = Command::new(require("ssh", "openssh-client"))
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
            ])
            .args([
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg("-i")
            .arg(key)
            .arg("-p")
            .arg(self.server.port.to_string())
            .arg(format!("{}@127.0.0.1", user.trim()))
            .arg("echo logged-in")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let ok = out.status.success() && String::from_utf8_lossy(&out.stdout).contains("logged-in");
        if !ok {
            eprintln!(
                "ssh with {} refused; sshd log:\n{}",
                key.display(),
                self.server.log_text()
            );
        }
        ok
    }
}

#[test]
fn sshd_accepts_fleet_and_local_keys_and_refuses_revoked_and_unwidened_ones() {
    let dir = crate::util::strict_modes_dir();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let (fleet_key, fleet_pub) = keygen(dir.path(), "fleet-mac");
    let (local_key, local_pub) = keygen(dir.path(), "github-deploy");
    let (revoked_key, revoked_pub) = keygen(dir.path(), "stolen-laptop");
    let (restricted_key, restricted_pub) = keygen(dir.path(), "restricted");
    std::fs::write(keys.join("mac.ssh.pub"), format!("{fleet_pub}\n")).unwrap();
    std::fs::write(keys.join("other.ssh.pub"), format!("{restricted_pub}\n")).unwrap();
    std::fs::write(
        keys.join("revoked"),
        format!("{revoked_pub}\n# stolen-laptop 2026-11-27 compromised\n"),
    )
    .unwrap();

    let ssh_dir = dir.path().join("ssh");
    std::fs::create_dir(&ssh_dir).unwrap();
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let authorized = ssh_dir.join("authorized_keys");
    let original =
        format!("# my own keys\n{local_pub}\n{revoked_pub}\nfrom=\"10.9.9.9\" {restricted_pub}\n");
    std::fs::write(&authorized, &original).unwrap();

    let m = Machine::new();
    m.ok(&[
        "authorized-keys",
        "--keys",
        keys.to_str().unwrap(),
        "--apply",
        authorized.to_str().unwrap(),
    ]);
    let merged = std::fs::read_to_string(&authorized).unwrap();
    assert!(
        merged.starts_with(&format!(
            "# my own keys\n{local_pub}\nfrom=\"10.9.9.9\" {restricted_pub}\n"
        )),
        "{merged}"
    );
    assert!(!merged.contains(&revoked_pub), "{merged}");
    assert_eq!(
        std::fs::metadata(&authorized).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let sshd = Sshd::start(dir.path(), &authorized);
    assert!(sshd.logs_in(&fleet_key), "the fleet key must log in");
    assert!(
        sshd.logs_in(&local_key),
        "the user's own key must still log in"
    );
    assert!(
        !sshd.logs_in(&revoked_key),
        "the revoked key must be refused"
    );
    assert!(
        !sshd.logs_in(&restricted_key),
        "from= must still restrict the fleet key the user listed"
    );

    // Positive control: the same restriction naming 127.0.0.1 lets that key in, so the refusal
    // above is sshd applying from=, not a broken key.
    let widened = merged.replace("from=\"10.9.9.9\"", "from=\"127.0.0.1\"");
    std::fs::write(&authorized, widened).unwrap();
    assert!(sshd.logs_in(&restricted_key));
}

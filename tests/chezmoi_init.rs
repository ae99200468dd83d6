//! `init` for chezmoi users, tested by chezmoi's contract (chezmoi itself cannot be installed on
//! the build machines): a fake `chezmoi` on PATH answers `source-path`, and the installed
//! `modify_` hook is run exactly as chezmoi runs it: `sh HOOK` with the current target on stdin.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{Machine, run_program, snapshot};

const FAKE: &str = r#"#!/bin/sh
# A stand-in for chezmoi: `source-path` prints the default source directory.
printf '%s\n' "$*" >> "$HOME/chezmoi-argv.log"
case "$1" in
  source-path) echo "$HOME/.local/share/chezmoi" ;;
  *) echo "fake chezmoi: unexpected $*" >&2; exit 2 ;;
esac
"#;

/// A machine with chezmoi "installed" and a chezmoi source repo holding one dotfile.
fn chezmoi_user() -> (Machine, PathBuf, PathBuf) {
    let m = Machine::new();
    let bin = m.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("chezmoi"), FAKE).unwrap();
    std::fs::set_permissions(bin.join("chezmoi"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let source = m.home.join(".local/share/chezmoi");
    std::fs::create_dir_all(&source).unwrap();
    let git = |args: &[&str]| {
        run_program(
            Command::new("git")
                .arg("-C")
                .arg(&source)
                .args(["-c", "user.name=u", "-c", "user.email=u@u"])
                .args(args),
        )
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(source.join("dot_zshrc"), "export EDITOR=vi\n").unwrap();
    git(&["add", "dot_zshrc"]);
    git(&["commit", "-qm", "my dotfiles"]);
    (m, bin, source)
}

fn path_with(bin: &Path) -> String {
    let fleetkey_dir = crate::util::bin().parent().unwrap().to_path_buf();
    format!(
        "{}:{}:{}",
        bin.display(),
        fleetkey_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn init_adopts_the_chezmoi_source_and_installs_the_authorized_keys_hook() {
    let (m, bin, source) = chezmoi_user();
    // Uncommitted work of the user's own stays uncommitted.
    std::fs::write(source.join("dot_bashrc"), "work in progress\n").unwrap();
    let out = m
        .cmd(["init", "--name", "alpha"])
        .env("PATH", path_with(&bin))
        .output()
        .unwrap();
    crate::util::assert_success(&out, &["init"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("using the chezmoi backend"), "{said}");

    let config = std::fs::read_to_string(m.home.join(".config/fleetkey/config.toml")).unwrap();
    assert!(config.contains("backend = \"chezmoi\""), "{config}");
    assert!(
        config.contains(&format!("repo = \"{}\"", source.display())),
        "{config}"
    );
    let fleet = std::fs::read_to_string(source.join("fleet.toml")).unwrap();
    assert!(fleet.contains("backend = \"chezmoi\""), "{fleet}");
    let ignore = std::fs::read_to_string(source.join(".chezmoiignore")).unwrap();
    for own in [
        "fleet.toml",
        "keys",
        "secrets.env.age",
        "secrets.recipients",
    ] {
        assert!(
            ignore.lines().any(|l| l == own),
            "{own} not ignored:\n{ignore}"
        );
    }
    let hook = source.join("private_dot_ssh/modify_private_authorized_keys");
    assert!(
        std::fs::read_to_string(&hook)
            .unwrap()
            .contains("exec fleetkey authorized-keys")
    );
    assert!(std::fs::metadata(&hook).unwrap().permissions().mode() & 0o111 != 0);
    let status = run_program(
        Command::new("git")
            .arg("-C")
            .arg(&source)
            .args(["status", "--porcelain"]),
    );
    assert_eq!(String::from_utf8(status).unwrap(), "?? dot_bashrc\n");

    // chezmoi runs the hook with the current target on stdin and takes stdout as the new file.
    let mut child = Command::new("sh")
        .arg(&hook)
        .env_clear()
        .env("HOME", &m.home)
        .env("PATH", path_with(&bin))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"# my laptop\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let own = std::fs::read_to_string(m.home.join(".ssh/id_ed25519.pub")).unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("# my laptop\n{} fleetkey=alpha\n", own.trim())
    );
    // The fleet is usable: a secret round-trips and the forge has the commit.
    let out = m
        .cmd(["secrets", "set", "K"])
        .env("PATH", path_with(&bin))
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"v\n")?;
            c.wait_with_output()
        })
        .unwrap();
    crate::util::assert_success(&out, &["secrets", "set", "K"]);
    assert_eq!(m.ok(&["secrets", "get", "K"]), "v\n");
}

#[test]
fn init_refuses_a_source_that_already_manages_authorized_keys_and_changes_nothing() {
    let (m, bin, source) = chezmoi_user();
    std::fs::create_dir_all(source.join("private_dot_ssh")).unwrap();
    std::fs::write(
        source.join("private_dot_ssh/authorized_keys"),
        "ssh-ed25519 AAAA x\n",
    )
    .unwrap();
    let before = snapshot(&m.home);
    let out = m
        .cmd(["init", "--name", "alpha", "--backend", "chezmoi"])
        .env("PATH", path_with(&bin))
        .output()
        .unwrap();
    crate::util::assert_failure(&out, &["init"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already manages ~/.ssh/authorized_keys"),
        "{err}"
    );
    let changed: Vec<_> = before
        .diff(&snapshot(&m.home))
        .into_iter()
        .filter(|p| !p.ends_with("chezmoi-argv.log"))
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
}

#[test]
fn init_with_the_chezmoi_backend_but_no_chezmoi_says_what_to_do() {
    let m = Machine::new();
    let err = m.fails(&["init", "--backend", "chezmoi"], 1);
    assert!(err.contains("chezmoi is not installed"), "{err}");
    assert!(!m.home.join(".config/fleetkey").exists());
}

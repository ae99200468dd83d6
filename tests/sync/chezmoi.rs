//! The chezmoi backend, tested by contract: chezmoi cannot be installed on the build machines,
//! so a fake `chezmoi` on PATH records every argument list and does the little the contract
//! needs (add: copy `~/.NAME` to `SRC/dot_NAME`; apply: the reverse; target-path: the mapping).

use std::os::unix::fs::PermissionsExt;

use crate::util::Machine;
use crate::util::fleet::Fleet;
use crate::util::forge::Transport;

const FAKE: &str = r#"#!/bin/sh
# A stand-in for chezmoi: logs its argv, then plays its part for dotfiles at the top of $HOME.
printf '%s\n' "$*" >> "$HOME/chezmoi-argv.log"
[ "$1" = "--source" ] || { echo "fake chezmoi: expected --source first" >&2; exit 2; }
src=$2; cmd=$3; shift 3
case "$cmd" in
  add)
    for p in "$@"; do
      name=$(basename "$p"); cp "$p" "$src/dot_${name#.}"
    done ;;
  apply)
    [ "$*" = "--force --no-tty" ] || { echo "fake chezmoi: apply $*" >&2; exit 2; }
    for f in "$src"/dot_*; do
      [ -e "$f" ] || continue
      name=$(basename "$f"); cp "$f" "$HOME/.${name#dot_}"
    done ;;
  target-path)
    name=$(basename "$1"); echo "$HOME/.${name#dot_}" ;;
  *) echo "fake chezmoi: unexpected $cmd" >&2; exit 2 ;;
esac
"#;

fn argv_log(n: &Machine) -> String {
    std::fs::read_to_string(n.path("chezmoi-argv.log")).unwrap_or_default()
}

#[test]
fn chezmoi_backend_runs_chezmoi_s_exact_commands_and_keeps_both_sides_of_a_conflict() {
    let fleet = Fleet::new(Transport::GitDaemon, &["alpha", "beta"]);
    let (a, b) = (fleet.n(0), fleet.n(1));
    let bin = fleet.forge.dir.path().join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("chezmoi"), FAKE).unwrap();
    std::fs::set_permissions(bin.join("chezmoi"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let with_fake = |n: &Machine, args: &[&str]| {
        let mut c = n.cmd(args);
        c.env("PATH", &path);
        let out = c.output().unwrap();
        crate::util::assert_success(&out, args);
        String::from_utf8(out.stdout).unwrap()
    };

    // Switch the fleet to chezmoi (init --backend chezmoi is not on this branch).
    let toml = a.repo().join("fleet.toml");
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("backend = \"native\"", "backend = \"chezmoi\"");
    std::fs::write(&toml, text).unwrap();
    a.commit_in_clone("test: chezmoi backend");
    with_fake(a, &["sync"]);
    with_fake(b, &["sync"]);

    // track: `chezmoi --source REPO add PATH`, fleetkey's files in .chezmoiignore.
    a.write(".zshrc", b"from alpha\n");
    with_fake(a, &["track", "~/.zshrc"]);
    let repo_a = a.repo();
    assert!(
        argv_log(a).contains(&format!(
            "--source {} add {}\n",
            repo_a.display(),
            a.path(".zshrc").display()
        )),
        "{}",
        argv_log(a)
    );
    assert_eq!(
        std::fs::read(repo_a.join("dot_zshrc")).unwrap(),
        b"from alpha\n"
    );
    let ignore = std::fs::read_to_string(repo_a.join(".chezmoiignore")).unwrap();
    for l in [
        "fleet.toml",
        "keys",
        "keys/**",
        "secrets.env.age",
        "secrets.recipients",
    ] {
        assert!(ignore.lines().any(|x| x == l), "{ignore}");
    }

    // beta: `chezmoi --source REPO apply --force --no-tty`.
    with_fake(b, &["sync"]);
    assert!(
        argv_log(b).contains(&format!(
            "--source {} apply --force --no-tty\n",
            b.repo().display()
        )),
        "{}",
        argv_log(b)
    );
    assert_eq!(b.text(".zshrc"), "from alpha\n");
    // Nothing changed locally: no `add`.
    assert!(!argv_log(b).contains(" add "), "{}", argv_log(b));

    // The same file changed on both: upstream wins, beta's bytes kept beside its live file.
    a.write(".zshrc", b"alpha again\n");
    b.write(".zshrc", b"beta's version\n");
    with_fake(a, &["sync"]);
    let out = with_fake(b, &["sync"]);
    assert!(out.contains("1 conflicts"), "{out}");
    with_fake(a, &["sync"]);
    assert_eq!(a.text(".zshrc"), "alpha again\n");
    assert_eq!(b.text(".zshrc"), "alpha again\n");
    let copies = b.conflict_copies(".zshrc");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read(&copies[0]).unwrap(), b"beta's version\n");
    assert!(argv_log(b).contains("target-path"), "{}", argv_log(b));

    // beta becomes a receiver: it captures nothing, and its local edit is kept aside (reason
    // "this machine only receives") before `chezmoi apply --force` puts the fleet's back.
    with_fake(a, &["role", "beta", "receiver"]);
    with_fake(b, &["sync"]);
    let head = fleet.forge.head();
    b.write(".zshrc", b"edited on a receiver\n");
    with_fake(b, &["sync"]);
    assert_eq!(b.text(".zshrc"), "alpha again\n");
    assert_eq!(fleet.forge.head(), head);
    let kept: Vec<_> = b
        .conflict_copies(".zshrc")
        .into_iter()
        .filter(|c| std::fs::read(c).unwrap() == b"edited on a receiver\n")
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", b.conflict_copies(".zshrc"));
    let status: serde_json::Value =
        serde_json::from_str(&with_fake(b, &["status", "--json"])).unwrap();
    assert!(
        status["sync"]["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["copy"] == kept[0].to_str().unwrap()
                && c["reason"] == "this machine only receives"),
        "{status}"
    );
    for n in [a, b] {
        n.assert_clean_repo();
    }
}

//! SSH access follows roles (issue 23), against a real sshd and a git daemon forge: machines
//! are real local users (see `poke.rs`), each logging in with its own login key
//! (`~/.ssh/id_ed25519`) and poking with its own poke key. A fleet of an admin, a member and
//! two receivers:
//! - the receivers log into no one; the admin and the member log into every machine;
//! - `role r member` lets r in after one cycle, `role r receiver` takes it out again;
//! - `ssh_from` naming one receiver admits that one only;
//! - every poke key reaches every machine throughout, the receivers' included, and runs
//!   nothing but the poke.

use crate::poke::{PokeFleet, User, ssh_as};

/// Whether `from` logs into `to`'s account with its own login key and runs a command.
fn logs_in(from: &User, to: &User, port: u16) -> bool {
    let out = ssh_as(
        from,
        &from.path(".ssh/id_ed25519"),
        to,
        port,
        &[],
        "echo logged-in",
    );
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("logged-in")
}

/// Whether `from`'s poke key is admitted by `to`: sshd accepts it and runs only the poke (the
/// command asked for never runs).
fn pokes(from: &User, to: &User, port: u16) -> bool {
    let out = ssh_as(
        from,
        &from.path(".config/fleetkey/poke_key"),
        to,
        port,
        &[],
        "echo logged-in",
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("logged-in"),
        "{}'s poke key ran a command on {}: {out:?}",
        from.machine,
        to.machine
    );
    out.status.success()
}

/// Every machine logs into every other exactly when it is in `admitted`, and every poke key
/// reaches every other machine.
fn assert_access(fleet: &PokeFleet, admitted: &[&str], when: &str) {
    let port = fleet.port();
    let mut wrong = Vec::new();
    for from in &fleet.users {
        for to in fleet.users.iter().filter(|u| u.name != from.name) {
            let expected = admitted.contains(&from.machine.as_str());
            if logs_in(from, to, port) != expected {
                wrong.push(format!(
                    "{} {} log into {}",
                    from.machine,
                    if expected { "cannot" } else { "CAN" },
                    to.machine
                ));
            }
            if !pokes(from, to, port) {
                wrong.push(format!("{} cannot poke {}", from.machine, to.machine));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{when}: {}\n{}",
        wrong.join("; "),
        fleet
            .users
            .iter()
            .map(|u| format!(
                "{}'s authorized_keys:\n{}",
                u.machine,
                u.text(".ssh/authorized_keys")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// One cycle on every machine.
fn cycle(fleet: &PokeFleet) {
    for u in &fleet.users {
        u.ok(&["sync"]);
    }
}

#[test]
fn a_receiver_is_reached_but_reaches_no_one_until_its_role_or_from_says_so() {
    let fleet = PokeFleet::with_roles(&[
        ("a", "admin"),
        ("m", "member"),
        ("r", "receiver"),
        ("s", "receiver"),
    ]);
    let (a, m) = (&fleet.users[0], &fleet.users[1]);
    assert_access(&fleet, &["a", "m"], "at the start");
    // fleetkey's own line for a receiver's login key is nowhere; its poke line is everywhere.
    let a_keys = a.text(".ssh/authorized_keys");
    assert!(!a_keys.contains("fleetkey=r\n"), "{a_keys}");
    assert!(a_keys.contains("fleetkey-poke=r\n"), "{a_keys}");

    // status and authorized-keys --check say why each key is there or left out.
    let status = a.ok(&["status"]);
    let line = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")) && l.contains("SHA256:"))
            .unwrap_or_else(|| panic!("no line for {name}:\n{text}"))
            .to_string()
    };
    assert!(
        status.contains("ssh      login keys from: admin, member   ([authorized_keys] from)"),
        "{status}"
    );
    assert!(
        line(&status, "a").ends_with("admitted: admin (from names its role)"),
        "{status}"
    );
    assert!(
        line(&status, "r").ends_with("left out: receiver (from names neither its role nor it)"),
        "{status}"
    );
    assert!(
        status.contains("poke keys (only `fleetkey poke`, every role): m, r, s"),
        "{status}"
    );
    let check = m.ok(&["authorized-keys", "--check"]);
    assert!(check.contains("up to date"), "{check}");
    assert!(
        line(&check, "s").ends_with("left out: receiver (from names neither its role nor it)"),
        "{check}"
    );
    assert!(
        line(&check, "m").ends_with("admitted: member (from names its role)"),
        "{check}"
    );

    // Promoted: in after one cycle. Demoted: out again after one cycle.
    a.ok(&["role", "r", "member"]);
    cycle(&fleet);
    assert_access(
        &fleet,
        &["a", "m", "r"],
        "after `role r member` and one cycle",
    );
    a.ok(&["role", "r", "receiver"]);
    cycle(&fleet);
    assert_access(&fleet, &["a", "m"], "after `role r receiver` and one cycle");
    let check = m.run(&["authorized-keys", "--check"]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");

    // `from` naming one receiver admits that one only.
    a.ok(&["config", "set", "ssh_from", "admin", "member", "r"]);
    cycle(&fleet);
    assert_access(&fleet, &["a", "m", "r"], "with ssh_from = admin, member, r");
    let status = m.ok(&["status"]);
    assert!(
        line(&status, "r").ends_with("admitted: receiver, named in from"),
        "{status}"
    );
    assert!(
        line(&status, "s").ends_with("left out: receiver (from names neither its role nor it)"),
        "{status}"
    );
    // And back: r's key leaves with the reason named (a's clone has the change, its file not
    // yet).
    a.ok(&["config", "set", "ssh_from", "admin", "member"]);
    let check = a.run(&["authorized-keys", "--check"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    assert!(
        text.lines().any(|l| l.starts_with("would remove  SHA256:")
            && l.ends_with("(not admitted by [authorized_keys] from, r)")),
        "{text}"
    );
    cycle(&fleet);
    assert_access(&fleet, &["a", "m"], "with ssh_from back to admin, member");
}

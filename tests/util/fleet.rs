//! A fleet of simulated machines around a test forge, each made by the real commands: the
//! first runs `init --name NAME --remote URL`; every other runs `enroll NAME --remote URL`, is
//! approved with the enrollment code enroll printed by the member that joined before it, and syncs.
//! So each machine has its own age identity and SSH key, and the roster lists them all.

use super::Machine;
use super::forge::{Forge, Transport};

/// A forge and its machines, all in step with it.
pub struct Fleet {
    pub forge: Forge,
    pub nodes: Vec<Machine>,
}

impl Fleet {
    /// A forge over `transport` and machines named `names`: the first starts the fleet, the
    /// others join it in turn. The machines that joined before the last approval have not
    /// applied it yet (their next command fetches it): [`Fleet::settle`] brings everyone to
    /// the forge's commit with the whole roster applied.
    pub fn new(transport: Transport, names: &[&str]) -> Fleet {
        Fleet::with_homes(transport, names, &[])
    }

    /// [`Fleet::new`], with machine `i`'s `$HOME` at `homes[i]` inside its directory (see
    /// [`Machine::home_at`]; missing or empty: the default `home`).
    pub fn with_homes(transport: Transport, names: &[&str], homes: &[&str]) -> Fleet {
        let forge = Forge::start(transport);
        let url = forge.url();
        let make = |i: usize| {
            let mut m = forge.machine(names[i]);
            if let Some(h) = homes.get(i).filter(|h| !h.is_empty()) {
                m.home_at(h);
            }
            m
        };
        let first = make(0);
        first.ok(&["init", "--name", names[0], "--remote", &url]);
        let mut nodes = vec![first];
        for i in 1..names.len() {
            let new = make(i);
            join(nodes.last().unwrap(), &new, &url);
            nodes.push(new);
        }
        Fleet { forge, nodes }
    }

    /// Machine `i`.
    pub fn n(&self, i: usize) -> &Machine {
        &self.nodes[i]
    }

    /// Syncs every machine in order, `rounds` times.
    pub fn settle(&self, rounds: usize) {
        for _ in 0..rounds {
            for n in &self.nodes {
                n.sync();
            }
        }
    }

    /// The names of the machines.
    pub fn names(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.name.as_str()).collect()
    }
}

/// `new` enrolls as `new.name` at `remote`; `member` approves it with the enrollment code
/// enroll printed; `new` syncs.
pub fn join(member: &Machine, new: &Machine, remote: &str) {
    let code = enroll(new, remote);
    // Each machine approves the next: every one is an admin, as machines were before roles.
    member.ok(&["approve", &new.name, "--code", &code, "--role", "admin"]);
    new.sync();
}

/// `new` runs `enroll NAME --remote URL`; returns the enrollment code enroll printed (on its
/// `enrollment code: ` line, and in the approve command it suggests).
pub fn enroll(new: &Machine, remote: &str) -> String {
    let out = new.ok(&["enroll", &new.name, "--remote", remote]);
    super::code_in(&out, &new.name)
}

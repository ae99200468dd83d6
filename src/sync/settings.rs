//! `fleetkey config get KEY` / `config set KEY VALUE…`: the fleet.toml settings a user may
//! change, by name, each validated with the very rules a cycle applies to what it reads from
//! the forge (bounded durations through [`crate::config::parse_bounded`], paths through
//! [`crate::confine::Confinement`], ignore patterns through [`super::ignore::check_pattern`]).
//!
//! Owns: the names ([`KEYS`]), reading a value out of a [`FleetConfig`] and writing one into a
//! copy of it. Committing and pushing is the command's (one commit that names the setting).
//! Must never: accept a value a cycle would hold back: what `set` writes is in force on every
//! machine.

use crate::config::{FleetConfig, parse_bounded};
use crate::confine::Confinement;
use crate::error::{Error, Result};
use crate::limits;

use super::ignore::check_pattern;

/// A setting `config` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// What the user types (`poll`).
    pub name: &'static str,
    /// Where it lives in fleet.toml (`sync.poll`).
    pub toml: &'static str,
    /// A list (`set` takes any number of values, none to clear it) or one value.
    pub list: bool,
    /// What it means, for `config get` without a key and for errors.
    pub about: &'static str,
}

/// Every setting, in the order `config get` shows them.
pub const KEYS: &[Key] = &[
    Key {
        name: "poll",
        toml: "sync.poll",
        list: false,
        about: "how often every machine checks the forge (5s to 24h)",
    },
    Key {
        name: "settle",
        toml: "sync.settle",
        list: false,
        about: "quiet time after a change before the watcher commits (100ms to 1m)",
    },
    Key {
        name: "paths",
        toml: "sync.paths",
        list: true,
        about: "the managed list (read only: use track and untrack)",
    },
    Key {
        name: "ignore",
        toml: "sync.ignore",
        list: true,
        about: "gitignore patterns never synced, on top of the built-in list",
    },
    Key {
        name: "literal",
        toml: "sync.literal",
        list: true,
        about: "managed paths synced byte for byte, without the home-path placeholder",
    },
    Key {
        name: "private",
        toml: "sync.private",
        list: true,
        about: "managed paths written 0600",
    },
    Key {
        name: "materialize",
        toml: "secrets.materialize",
        list: false,
        about: "where the decrypted secrets are written (none: nowhere)",
    },
    Key {
        name: "authorized_keys",
        toml: "authorized_keys.path",
        list: false,
        about: "the authorized_keys file the fleet's SSH keys are merged into",
    },
    Key {
        name: "ssh_from",
        toml: "authorized_keys.from",
        list: true,
        about: "whose login keys every machine admits: roles (admin, member, receiver) and machine names (admin only)",
    },
];

/// The key called `name` (`poll` or `sync.poll`).
pub fn key(name: &str) -> Result<Key> {
    KEYS.iter()
        .find(|k| k.name == name || k.toml == name)
        .copied()
        .ok_or_else(|| {
            let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
            Error::refused(format!("there is no setting called {name:?}"))
                .hint(format!("the settings are: {}", known.join(", ")))
        })
}

/// The value of `key` in `fleet`, one line per list entry.
pub fn get(fleet: &FleetConfig, key: Key) -> Vec<String> {
    let s = &fleet.sync;
    match key.name {
        "poll" => vec![s.poll.clone()],
        "settle" => vec![s.settle.clone()],
        "paths" => s.paths.clone(),
        "ignore" => s.ignore.clone(),
        "literal" => s.literal.clone(),
        "private" => s.private.clone(),
        "materialize" => fleet.secrets.materialize.iter().cloned().collect(),
        "authorized_keys" => vec![fleet.authorized_keys.path.clone()],
        "ssh_from" => fleet.authorized_keys.from.clone(),
        _ => Vec::new(),
    }
}

/// `fleet` with `key` set to `values`, checked as a cycle checks it. `confinement` is this
/// machine's (every machine runs the same path rules; a path that passes here passes there,
/// HOME aside).
pub fn set(
    fleet: &FleetConfig,
    key: Key,
    values: &[String],
    confinement: &Confinement,
) -> Result<FleetConfig> {
    let bad = |problem: String| Error::refused(format!("{} cannot be set: {problem}", key.name));
    let one = || -> Result<&String> {
        match values {
            [v] => Ok(v),
            _ => Err(bad("it takes exactly one value".into())),
        }
    };
    let mut out = fleet.clone();
    match key.name {
        "poll" | "settle" => {
            let bounds = if key.name == "poll" {
                limits::POLL
            } else {
                limits::SETTLE
            };
            let v = one()?;
            parse_bounded(v, bounds).map_err(bad)?;
            if key.name == "poll" {
                out.sync.poll = v.clone();
            } else {
                out.sync.settle = v.clone();
            }
        }
        "paths" => {
            return Err(
                bad("the managed list changes with `fleetkey track` and `untrack`".into())
                    .hint("`fleetkey track PATH` seeds the fleet with the file first"),
            );
        }
        "ignore" => {
            for (i, v) in values.iter().enumerate() {
                if let Some(why) = check_pattern(v) {
                    return Err(bad(format!("pattern {} {why}", i + 1)));
                }
            }
            out.sync.ignore = dedup(values);
        }
        "literal" | "private" => {
            for v in values {
                confinement
                    .check_entry(v)
                    .map_err(|r| bad(format!("{r}")))?;
            }
            if key.name == "literal" {
                out.sync.literal = dedup(values);
            } else {
                out.sync.private = dedup(values);
            }
        }
        "materialize" => {
            out.secrets.materialize = match values {
                [] => None,
                [v] if v == "none" => None,
                [v] => {
                    confinement
                        .check_materialize(v)
                        .map_err(|r| bad(format!("{r}")))?;
                    Some(v.clone())
                }
                _ => return Err(bad("it takes one path, or none".into())),
            };
        }
        "authorized_keys" => {
            let v = one()?;
            confinement
                .check_file_entry(v)
                .map_err(|r| bad(format!("{r}")))?;
            out.authorized_keys.path = v.clone();
        }
        "ssh_from" => {
            crate::access::check_from(values).map_err(bad)?;
            out.authorized_keys.from = dedup(values);
        }
        _ => return Err(bad("unknown setting".into())),
    }
    out.validate(std::path::Path::new(FleetConfig::FILE))?;
    Ok(out)
}

/// The stored files whose repo form changes when the transform goes from `old` to `new` (a
/// `literal` change): each is read back as this machine's live form under `old` and stored
/// again under `new`, so a path that becomes literal holds real paths, and one that stops
/// being literal holds the placeholder. Returns the upserts (repo path, blob, exec) and the
/// manifest rows to move with them (path relative to `$HOME`, new blob).
#[allow(clippy::type_complexity)]
pub fn restore_for_transform(
    repo: &git2::Repository,
    head: &git2::Tree<'_>,
    machine: &str,
    old: &super::placeholder::Placeholders,
    new: &super::placeholder::Placeholders,
) -> Result<(Vec<(String, git2::Oid, bool)>, Vec<(String, git2::Oid)>)> {
    let mut upserts = Vec::new();
    let mut rows = Vec::new();
    for prefix in [
        super::tree::HOME_DIR.to_string(),
        super::tree::host_dir(machine),
    ] {
        for (rel, (oid, exec)) in super::tree::blobs_under(repo, head, &prefix)? {
            if old.covers(&rel) == new.covers(&rel) {
                continue;
            }
            let blob = repo
                .find_blob(oid)
                .map_err(Error::git("cannot read a stored file"))?;
            let live = old.to_live(&rel, blob.content());
            let stored = new.to_repo(&rel, &live);
            if stored.as_ref() == blob.content() {
                continue;
            }
            let id = repo
                .blob(&stored)
                .map_err(Error::git("cannot store a file in the fleet repo"))?;
            upserts.push((format!("{prefix}/{rel}"), id, exec));
            if prefix == super::tree::HOME_DIR
                || super::tree::lookup(head, machine, &rel)
                    .is_some_and(|s| s.repo_path == format!("{prefix}/{rel}"))
            {
                rows.push((rel, id));
            }
        }
    }
    Ok((upserts, rows))
}

fn dedup(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confinement() -> (tempfile::TempDir, Confinement) {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let paths = crate::paths::Paths {
            config_dir: home.join(".config/fleetkey"),
            data_dir: home.join(".local/share/fleetkey"),
            state_dir: home.join(".local/state/fleetkey"),
            home: home.clone(),
        };
        let c = Confinement::for_machine(&paths, &home.join(".local/share/fleetkey/fleet"));
        (dir, c)
    }

    #[test]
    fn durations_are_bounded_as_the_cycle_bounds_them() {
        let (_d, c) = confinement();
        let f = FleetConfig::default();
        let poll = key("poll").unwrap();
        assert_eq!(set(&f, poll, &["5s".into()], &c).unwrap().sync.poll, "5s");
        for bad in ["0s", "4s", "25h", "5", "18446744073709551615s"] {
            let e = set(&f, poll, &[bad.into()], &c).unwrap_err().to_string();
            assert!(e.starts_with("poll cannot be set: "), "{bad}: {e}");
            assert!(e.contains("allowed: 5s to 24h"), "{bad}: {e}");
        }
        let settle = key("sync.settle").unwrap();
        assert!(set(&f, settle, &["50ms".into()], &c).is_err());
        assert_eq!(
            set(&f, settle, &["1m".into()], &c).unwrap().sync.settle,
            "1m"
        );
    }

    #[test]
    fn paths_follow_the_confinement_rules_and_lists_can_be_cleared() {
        let (_d, c) = confinement();
        let f = FleetConfig::default();
        let literal = key("literal").unwrap();
        let set_to = |v: &[&str]| {
            let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            set(&f, literal, &v, &c)
        };
        assert_eq!(
            set_to(&["~/.config/app/", "~/.zshrc", "~/.zshrc"])
                .unwrap()
                .sync
                .literal,
            ["~/.config/app/", "~/.zshrc"]
        );
        for bad in [
            "/etc/passwd",
            "~/../x",
            "~/.config/fleetkey/identity.txt",
            "~/.git/x",
        ] {
            assert!(set_to(&[bad]).is_err(), "{bad}");
        }
        assert!(set_to(&[]).unwrap().sync.literal.is_empty());
        let m = key("materialize").unwrap();
        assert!(set(&f, m, &["/tmp/x".into()], &c).is_err());
        assert_eq!(
            set(&f, m, &["none".into()], &c)
                .unwrap()
                .secrets
                .materialize,
            None
        );
        let ak = key("authorized_keys").unwrap();
        assert!(set(&f, ak, &["~/.ssh/".into()], &c).is_err());
        assert!(set(&f, key("ignore").unwrap(), &["a\u{1}".into()], &c).is_err());
        assert!(set(&f, key("paths").unwrap(), &["~/.x".into()], &c).is_err());
        assert!(key("recipent").is_err());
    }
}

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
        name: "quiet",
        toml: "sync.quiet",
        list: false,
        about: "how long the watcher waits after the last change before a cycle (10ms to 5s)",
    },
    Key {
        name: "settle",
        toml: "sync.settle",
        list: false,
        about: "the longest the watcher waits after the first change of a burst (100ms to 1m)",
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
        name: "allow_tokens",
        toml: "sync.allow_tokens",
        list: true,
        about: "managed paths captured even when they hold what looks like a token",
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
        name: "materialize_format",
        toml: "secrets.materialize_format",
        list: false,
        about: "how the materialized secrets are written: env (the secrets file's own form) or sh (export lines)",
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
    Key {
        name: "heal",
        toml: "trust.heal",
        list: false,
        about: "whether a machine puts the last authentic state back on a forge that holds commits that are not authentic (true or false; at most once a minute; admin only)",
    },
    Key {
        name: "forge",
        toml: "forge",
        list: false,
        about: "the fleet-wide forge (read only: use `fleetkey remote set URL`)",
    },
];

/// The key called `name` (`poll` or `sync.poll`). An unknown name is refused with the nearest
/// known one, when one is near.
pub fn key(name: &str) -> Result<Key> {
    KEYS.iter()
        .find(|k| k.name == name || k.toml == name)
        .copied()
        .ok_or_else(|| {
            let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
            let hint = match nearest(name) {
                Some(k) => format!("did you mean {k}? The settings are: {}", known.join(", ")),
                None => format!("the settings are: {}", known.join(", ")),
            };
            Error::refused(format!("there is no setting called {name:?}")).hint(hint)
        })
}

/// The known setting nearest to `name` (by edit distance, at most a third of its length, and
/// at most 3), if any.
fn nearest(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    KEYS.iter()
        .flat_map(|k| [(k.name, k.name), (k.name, k.toml)])
        .map(|(shown, candidate)| (edit_distance(&name, candidate), shown))
        .filter(|(d, shown)| *d <= (shown.len() / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, shown)| shown)
}

/// Levenshtein distance between `a` and `b`, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// `values` added to (`add`) or removed from (`remove`) the list `key` of `fleet`, as the
/// values of a `set`: a value already there is not added twice; removing one that is not
/// there is refused, naming what the list holds.
pub fn edit_list(
    fleet: &FleetConfig,
    key: Key,
    values: &[String],
    add: bool,
) -> Result<Vec<String>> {
    let verb = if add { "add" } else { "remove" };
    if !key.list {
        return Err(Error::refused(format!(
            "{} is not a list: `config {verb}` changes ignore, literal or private",
            key.name
        ))
        .hint(format!("`fleetkey config set {} VALUE` sets it", key.name)));
    }
    if key.name == "paths" {
        return Err(
            Error::refused("the managed list changes with `fleetkey track` and `untrack`")
                .hint("`fleetkey track PATH` seeds the fleet with the file first"),
        );
    }
    let mut list = get(fleet, key);
    for v in values {
        match (add, list.iter().position(|x| x == v)) {
            (true, None) => list.push(v.clone()),
            (true, Some(_)) => {}
            (false, Some(i)) => {
                list.remove(i);
            }
            (false, None) => {
                return Err(Error::refused(format!(
                    "{} holds no {v:?}; nothing was changed",
                    key.name
                ))
                .hint(if list.is_empty() {
                    format!("{} is empty", key.name)
                } else {
                    format!("{} holds: {}", key.name, list.join(", "))
                }));
            }
        }
    }
    Ok(list)
}

/// The value of `key` in `fleet`, one line per list entry.
pub fn get(fleet: &FleetConfig, key: Key) -> Vec<String> {
    let s = &fleet.sync;
    match key.name {
        "poll" => vec![s.poll.clone()],
        "quiet" => vec![s.quiet.clone()],
        "settle" => vec![s.settle.clone()],
        "paths" => s.paths.clone(),
        "ignore" => s.ignore.clone(),
        "literal" => s.literal.clone(),
        "private" => s.private.clone(),
        "allow_tokens" => s.allow_tokens.clone(),
        "materialize" => fleet.secrets.materialize.iter().cloned().collect(),
        "materialize_format" => vec![match fleet.secrets.materialize_format {
            crate::config::MaterializeFormat::Env => "env".to_string(),
            crate::config::MaterializeFormat::Sh => "sh".to_string(),
        }],
        "authorized_keys" => vec![fleet.authorized_keys.path.clone()],
        "ssh_from" => fleet.authorized_keys.from.clone(),
        "heal" => vec![fleet.trust.heal.to_string()],
        "forge" => fleet.forge.iter().cloned().collect(),
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
        "poll" | "quiet" | "settle" => {
            let (bounds, field) = match key.name {
                "poll" => (limits::POLL, &mut out.sync.poll),
                "quiet" => (limits::QUIET, &mut out.sync.quiet),
                _ => (limits::SETTLE, &mut out.sync.settle),
            };
            let v = one()?;
            parse_bounded(v, bounds).map_err(bad)?;
            *field = v.clone();
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
        "literal" | "private" | "allow_tokens" => {
            for v in values {
                confinement
                    .check_entry(v)
                    .map_err(|r| bad(format!("{r}")))?;
            }
            match key.name {
                "literal" => out.sync.literal = dedup(values),
                "private" => out.sync.private = dedup(values),
                _ => out.sync.allow_tokens = dedup(values),
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
        "materialize_format" => {
            out.secrets.materialize_format = match one()?.as_str() {
                "env" => crate::config::MaterializeFormat::Env,
                "sh" => crate::config::MaterializeFormat::Sh,
                other => return Err(bad(format!("{other:?} is not a format: use env or sh"))),
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
        "heal" => {
            out.trust.heal = match one()?.as_str() {
                "true" => true,
                "false" => false,
                other => return Err(bad(format!("{other:?} is neither true nor false"))),
            };
        }
        "forge" => {
            return Err(bad(
                "the fleet moves to another forge with `fleetkey remote set URL`".into(),
            )
            .hint("it pushes the whole fleet there first, then records the new forge"));
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
            // The live form without the secrets' values: a file that becomes literal keeps
            // its placeholders as text, never a value in plain.
            let live = old.to_shown(&rel, blob.content());
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
        let quiet = key("quiet").unwrap();
        assert_eq!(
            set(&f, quiet, &["10ms".into()], &c).unwrap().sync.quiet,
            "10ms"
        );
        for bad in ["9ms", "6s", "150"] {
            let e = set(&f, quiet, &[bad.into()], &c).unwrap_err().to_string();
            assert!(e.contains("allowed: 10ms to 5s"), "{bad}: {e}");
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

    #[test]
    fn an_unknown_name_suggests_the_nearest_setting() {
        let hint = |n: &str| key(n).unwrap_err().advice().unwrap();
        assert!(
            hint("pol").starts_with("did you mean poll?"),
            "{}",
            hint("pol")
        );
        assert!(hint("ignor").starts_with("did you mean ignore?"));
        assert!(hint("sync.setle").starts_with("did you mean settle?"));
        assert!(hint("materialise_format").starts_with("did you mean materialize_format?"));
        assert!(hint("zzzzzzzz").starts_with("the settings are: "));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn lists_take_add_and_remove_and_forge_and_format_are_known() {
        let (_d, c) = confinement();
        let mut f = FleetConfig::default();
        let ignore = key("ignore").unwrap();
        f.sync.ignore = vec!["*.log".into()];
        let added = edit_list(&f, ignore, &["*.tmp".into(), "*.log".into()], true).unwrap();
        assert_eq!(added, ["*.log", "*.tmp"]);
        let f2 = set(&f, ignore, &added, &c).unwrap();
        assert_eq!(
            edit_list(&f2, ignore, &["*.log".into()], false).unwrap(),
            ["*.tmp"]
        );
        let e = edit_list(&f2, ignore, &["*.bak".into()], false).unwrap_err();
        assert!(e.to_string().contains("holds no \"*.bak\""), "{e}");
        assert!(edit_list(&f2, key("poll").unwrap(), &["5s".into()], true).is_err());
        let fmt = key("materialize_format").unwrap();
        assert_eq!(get(&f, fmt), ["env"]);
        assert_eq!(get(&set(&f, fmt, &["sh".into()], &c).unwrap(), fmt), ["sh"]);
        assert!(set(&f, fmt, &["json".into()], &c).is_err());
        assert!(set(&f, key("forge").unwrap(), &["/x".into()], &c).is_err());
    }
}

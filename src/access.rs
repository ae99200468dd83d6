//! SSH access follows roles: whose login key goes into the other machines' authorized_keys.
//!
//! fleet.toml's `[authorized_keys] from` lists roles (`admin`, `member`, `receiver`) and
//! machine names; the default is `["admin", "member"]`. A machine's login key
//! (`keys/NAME.ssh.pub`) is admitted when `from` names its role or its name; otherwise it is
//! left out, and a line fleetkey wrote for it before is removed. So a receiver (a server) is
//! reached but does not reach: whoever takes it over holds no key that opens the laptops. An
//! entry spelled like a role is the role: a machine called `admin` is named through its role.
//!
//! Poke keys are not login keys (they run only `fleetkey poke`): every member's poke key is
//! admitted whatever `from` says, receivers' included, so pokes go both ways.
//!
//! Only an admin changes `from` ([`crate::authority::may_change`] refuses a member's commit
//! that does).
//!
//! Owns: the `from` rule ([`check_from`], [`access`]) and the reason for each machine
//! ([`Access`]). Must never: admit a login key `from` does not name, or leave a poke key out.

use crate::authority::Role;

/// The most entries `from` may hold.
pub const FROM_LIMIT: usize = 256;

/// `[authorized_keys] from` when fleet.toml does not set it: admins and members.
pub fn default_from() -> Vec<String> {
    vec![Role::Admin.as_str().into(), Role::Member.as_str().into()]
}

/// Whether `from` is the default (fleet.toml then leaves it out).
pub fn is_default_from(from: &Vec<String>) -> bool {
    *from == default_from()
}

/// Checks `from`: every entry is a role word or a machine name. The problem names the entry
/// by its position, never quoting it.
pub fn check_from(from: &[String]) -> Result<(), String> {
    if from.len() > FROM_LIMIT {
        return Err(format!("more than {FROM_LIMIT} entries"));
    }
    for (i, entry) in from.iter().enumerate() {
        if Role::parse(entry).is_some_and(|r| r.as_str() == entry) {
            continue;
        }
        if crate::roster::check_name(entry).is_err() {
            return Err(format!(
                "entry {} is neither a role (admin, member, receiver) nor a machine name",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Why a machine's login key is in every authorized_keys, or left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `from` names its role.
    ByRole(Role),
    /// `from` names the machine (its role is not named).
    ByName(Role),
    /// `from` names neither its role nor the machine.
    LeftOut(Role),
}

impl Access {
    /// Whether its login key is admitted.
    pub fn admitted(self) -> bool {
        !matches!(self, Access::LeftOut(_))
    }

    /// The machine's role.
    pub fn role(self) -> Role {
        match self {
            Access::ByRole(r) | Access::ByName(r) | Access::LeftOut(r) => r,
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::ByRole(r) => write!(f, "admitted: {r} (from names its role)"),
            Access::ByName(r) => write!(f, "admitted: {r}, named in from"),
            Access::LeftOut(r) => write!(f, "left out: {r} (from names neither its role nor it)"),
        }
    }
}

/// The access `from` gives machine `name` with `role`.
pub fn access(from: &[String], name: &str, role: Role) -> Access {
    if from.iter().any(|f| f == role.as_str()) {
        Access::ByRole(role)
    } else if from.iter().any(|f| f == name && Role::parse(f).is_none()) {
        Access::ByName(role)
    } else {
        Access::LeftOut(role)
    }
}

/// `from` as `status` and `authorized-keys --check` show it: `admin, member` (`nobody` when
/// empty).
pub fn show_from(from: &[String]) -> String {
    if from.is_empty() {
        "nobody".into()
    } else {
        from.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roles_and_names_admit_and_everything_else_is_left_out() {
        let from = default_from();
        assert_eq!(access(&from, "a", Role::Admin), Access::ByRole(Role::Admin));
        assert_eq!(
            access(&from, "m", Role::Member),
            Access::ByRole(Role::Member)
        );
        assert_eq!(
            access(&from, "srv", Role::Receiver),
            Access::LeftOut(Role::Receiver)
        );
        let from = v(&["admin", "member", "backup-box"]);
        assert_eq!(
            access(&from, "backup-box", Role::Receiver),
            Access::ByName(Role::Receiver)
        );
        assert!(!access(&from, "web", Role::Receiver).admitted());
        let from = v(&["receiver"]);
        assert!(access(&from, "web", Role::Receiver).admitted());
        assert!(!access(&from, "laptop", Role::Admin).admitted());
        // A machine called like a role is not named by the role word.
        assert!(!access(&v(&["member"]), "member", Role::Receiver).admitted());
        assert!(!access(&[], "a", Role::Admin).admitted());
    }

    #[test]
    fn a_bad_entry_is_named_by_position_never_quoted() {
        check_from(&default_from()).unwrap();
        check_from(&v(&["receiver", "backup-box"])).unwrap();
        check_from(&[]).unwrap();
        let e = check_from(&v(&["admin", "Backup_Box"])).unwrap_err();
        assert_eq!(
            e,
            "entry 2 is neither a role (admin, member, receiver) nor a machine name"
        );
        let e = check_from(&v(&[" admin"])).unwrap_err();
        assert!(e.starts_with("entry 1 "), "{e}");
        let many = vec!["a".to_string(); FROM_LIMIT + 1];
        assert!(check_from(&many).unwrap_err().contains("more than"));
    }
}

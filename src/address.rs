//! A machine's SSH address (`[hosts.NAME] address` in fleet.toml): where its peers poke it.
//!
//! Owns: the one check every address passes, whether it comes from `--address`,
//! `fleetkey address set` or a fleet.toml fetched from the forge. An address is an ssh
//! destination, `[user@]host` or `ssh://[user@]host[:port]`, and nothing else.
//!
//! Must never: let an address reach ssh as an option. The address is read from the forge
//! (hostile until checked) and ends up in ssh's argv, where `-oProxyCommand=…` would run a
//! command. So: no leading `-` in any part, only `[A-Za-z0-9._-]` in the user and host (an
//! IPv6 literal in brackets inside `ssh://`), a numeric port, no whitespace, quotes, `%`, `/`
//! or any other shell or ssh-token metacharacter; and every caller puts `--` before it.

use std::fmt;

/// Longest address accepted (a DNS name is at most 253 bytes; a user name and port fit beside).
const MAX_LEN: usize = 320;

/// A checked ssh destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address(String);

impl Address {
    /// Checks `text`; the error says what is wrong without quoting it.
    pub fn parse(text: &str) -> Result<Address, String> {
        if text.is_empty() {
            return Err("empty".into());
        }
        if text.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} bytes"));
        }
        if text.starts_with('-') {
            return Err("starts with `-` (ssh would read it as an option)".into());
        }
        let (rest, url) = match text.strip_prefix("ssh://") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let (user, hostport) = match rest.split_once('@') {
            Some((user, hostport)) => (Some(user), hostport),
            None => (None, rest),
        };
        if let Some(user) = user {
            check_word(user, "the user name")?;
        }
        let (host, port) = if url {
            split_port(hostport)?
        } else {
            (hostport, None)
        };
        match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) if url => {
                if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                    return Err("the bracketed host is not an IPv6 address".into());
                }
            }
            _ => check_word(host, "the host")?,
        }
        if let Some(port) = port {
            match port.parse::<u16>() {
                Ok(p) if p > 0 && port.chars().all(|c| c.is_ascii_digit()) => {}
                _ => return Err("the port is not a number from 1 to 65535".into()),
            }
        }
        Ok(Address(text.to_string()))
    }

    /// The destination as ssh takes it (after `--`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `host[:port]` of an `ssh://` address; an IPv6 host keeps its brackets.
fn split_port(hostport: &str) -> Result<(&str, Option<&str>), String> {
    if hostport.starts_with('[') {
        let end = hostport.find(']').ok_or("an opening `[` without its `]`")?;
        let (host, rest) = hostport.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => match rest.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("text after the bracketed host".into()),
            },
        };
    }
    Ok(match hostport.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (hostport, None),
    })
}

/// A user or host name: `[A-Za-z0-9._-]`, not empty, not starting with `-`.
fn check_word(word: &str, what: &str) -> Result<(), String> {
    if word.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if word.starts_with('-') {
        return Err(format!("{what} starts with `-`"));
    }
    if !word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "{what} holds a character other than letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Address;

    #[test]
    fn ssh_destinations_are_accepted() {
        for ok in [
            "alice@mbp.tailnet.ts.net",
            "mbp",
            "ssh://alice@host:2222",
            "ssh://host",
            "ssh://bob@[::1]:22",
            "user_1@10.0.0.2",
        ] {
            assert_eq!(Address::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn options_commands_and_odd_characters_are_refused() {
        for bad in [
            "",
            "-oProxyCommand=touch /tmp/x",
            "-oProxyCommand=x",
            "alice@-oProxyCommand=x",
            "-l@host",
            "alice@host evil",
            "alice@host\tx",
            "alice@host\n",
            "alice@host;touch",
            "alice@ho$t",
            "a`b`@host",
            "alice@host%h",
            "alice@host/x",
            "al'ice@host",
            "alice@host:22",
            "ssh://alice@host:0",
            "ssh://alice@host:99999",
            "ssh://alice@host:2x",
            "ssh://alice@[::1",
            "ssh://alice@[zz]",
            "ssh://-oProxyCommand=x",
            "ssh://@host",
            "a@b@c",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Address::parse(&"a".repeat(400)).is_err());
    }

    #[test]
    fn an_error_never_quotes_the_address() {
        let err = Address::parse("alice@secret-token;x").unwrap_err();
        assert!(!err.contains("secret-token"), "{err}");
    }
}

//! Which credential of a revoked machine the forge still accepts, and where to remove it.
//!
//! Revoking a machine takes it out of the fleet, but not off the forge: whatever it pushed
//! with (its SSH login key, or a token the user gave it) still writes there, so a stolen
//! laptop can keep pushing junk (the fleet refuses and heals it, see `crate::sync::heal`) until
//! that credential is gone. Only the user can remove it, at the forge: this module says which
//! one and where, for GitHub, GitLab, Gitea/Forgejo and a plain SSH forge (the kind guessed
//! from the remote URL: `github.com`, `gitlab.com`, otherwise guidance naming the others).
//!
//! Owns: the text. Must never: name a secret (fingerprints and URLs only) or reach the network.

/// The forge kind, as the remote URL shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeKind {
    /// `github.com`.
    GitHub,
    /// `gitlab.com`.
    GitLab,
    /// Anything else: a self-hosted Gitea/Forgejo (or GitLab), or a plain SSH host.
    Other,
}

/// How the machine reaches the forge: with an SSH key or over HTTPS (a token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `ssh://`, scp-like `host:path`.
    Ssh,
    /// `https://`, `http://`.
    Token,
    /// A local path or `file://`: whoever can write the directory can push.
    Path,
    /// `git://`: no credential at all.
    Anonymous,
}

/// The remote `url` split into its kind, access, host and repository path (`owner/repo`,
/// without `.git`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The forge kind.
    pub kind: ForgeKind,
    /// How it is reached.
    pub access: Access,
    /// The host (without user or port), empty for a local path.
    pub host: String,
    /// The repository path on the host (`owner/repo`), without `.git`.
    pub path: String,
    /// The account that logs in over SSH (`git` in `git@host:path`), if the URL names one.
    pub user: Option<String>,
}

/// Splits a remote URL as [`crate::forge::check_url`] allows it.
pub fn parse(url: &str) -> Remote {
    let (access, rest) = if let Some(r) = url
        .strip_prefix("ssh://")
        .or_else(|| url.strip_prefix("git+ssh://"))
    {
        (Access::Ssh, r)
    } else if let Some(r) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    {
        (Access::Token, r)
    } else if let Some(r) = url.strip_prefix("git://") {
        (Access::Anonymous, r)
    } else if super::is_ssh_remote(url) {
        // scp-like [user@]host:path
        let (h, p) = url.split_once(':').unwrap_or((url, ""));
        return finish(Access::Ssh, h, p);
    } else {
        (Access::Path, "")
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    finish(access, authority, path)
}

fn finish(access: Access, authority: &str, path: &str) -> Remote {
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, authority),
    };
    let host = hostport
        .split(':')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let path = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .to_string();
    let kind = match host.as_str() {
        "github.com" | "www.github.com" | "ssh.github.com" => ForgeKind::GitHub,
        "gitlab.com" | "www.gitlab.com" | "altssh.gitlab.com" => ForgeKind::GitLab,
        _ => ForgeKind::Other,
    };
    Remote {
        kind,
        access,
        host,
        path,
        user,
    }
}

/// What to tell the user after revoking `machine`, whose SSH login keys in the roster have
/// the fingerprints `ssh_fingerprints`, on a fleet whose forge is `url`: one line a step.
pub fn advice(url: &str, machine: &str, ssh_fingerprints: &[String]) -> Vec<String> {
    let r = parse(url);
    let key = if ssh_fingerprints.is_empty() {
        format!("{machine}'s SSH login key")
    } else {
        format!(
            "{machine}'s SSH login key ({})",
            ssh_fingerprints.join(", ")
        )
    };
    let token = format!("the token you gave {machine}");
    let mut out = vec![format!(
        "The forge may still accept {machine}'s credential: until it is removed there, {machine} can push to {} (the fleet refuses and heals what it pushes, but only removing the credential stops it).",
        if r.host.is_empty() { url } else { &r.host }
    )];
    let repo_page = |base: &str, tail: &str| {
        if r.path.is_empty() {
            format!("the repository's {tail}")
        } else {
            format!("{base}/{}/{tail}", r.path)
        }
    };
    let authorized_keys = |host: &str, user: &str| {
        format!(
            "delete the line of {key} from ~{user}/.ssh/authorized_keys on {host} (`ssh-keygen -lf ~/.ssh/authorized_keys` there lists each line's fingerprint; when {host} is a member of this fleet, its next cycle drops the key from the authorized_keys fleetkey merges)"
        )
    };
    match (r.kind, r.access) {
        (_, Access::Path) => out.push(format!(
            "This forge is a directory ({url}): whoever can write it can push. If {machine} reaches it over SSH, {}.",
            authorized_keys("this host", "")
        )),
        (_, Access::Anonymous) => out.push(format!(
            "git:// asks for no credential: anyone who reaches {} can push when its git daemon allows it. Turn pushing off there (no --enable=receive-pack), or move the fleet to an ssh:// or https:// forge (`fleetkey remote set URL`).",
            r.host
        )),
        (ForgeKind::GitHub, Access::Ssh) => {
            out.push(format!(
                "GitHub: remove {key} from the account it used, Settings > SSH and GPG keys (https://github.com/settings/keys), and from the repository's deploy keys ({}).",
                repo_page("https://github.com", "settings/keys")
            ));
        }
        (ForgeKind::GitHub, Access::Token) => {
            out.push(format!(
                "GitHub: revoke {token}: fine-grained tokens at https://github.com/settings/personal-access-tokens, classic ones at https://github.com/settings/tokens (and any deploy key of {machine} at {}).",
                repo_page("https://github.com", "settings/keys")
            ));
        }
        (ForgeKind::GitLab, Access::Ssh) => {
            out.push(format!(
                "GitLab: remove {key} from the account it used, User settings > SSH Keys (https://gitlab.com/-/user_settings/ssh_keys), and from the project's deploy keys ({}).",
                repo_page("https://gitlab.com", "-/settings/repository")
            ));
        }
        (ForgeKind::GitLab, Access::Token) => {
            out.push(format!(
                "GitLab: revoke {token}: personal tokens at https://gitlab.com/-/user_settings/personal_access_tokens, project tokens at {}.",
                repo_page("https://gitlab.com", "-/settings/access_tokens")
            ));
        }
        (ForgeKind::Other, access) => {
            let what = match access {
                Access::Ssh => key.clone(),
                _ => token.clone(),
            };
            out.push(format!(
                "Gitea or Forgejo: remove {what}: SSH keys under Settings > SSH / GPG Keys (https://{}/user/settings/keys), tokens under Settings > Applications (https://{}/user/settings/applications), deploy keys under the repository's Settings > Deploy Keys.",
                r.host, r.host
            ));
            if access == Access::Ssh {
                out.push(format!(
                    "A plain SSH forge: {}.",
                    authorized_keys(&r.host, r.user.as_deref().unwrap_or(""))
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forge_kind_comes_from_the_url() {
        let r = parse("git@github.com:me/dots.git");
        assert_eq!(
            (r.kind, r.access, r.host.as_str(), r.path.as_str()),
            (ForgeKind::GitHub, Access::Ssh, "github.com", "me/dots")
        );
        let r = parse("https://gitlab.com/me/dots");
        assert_eq!(
            (r.kind, r.access, r.path.as_str()),
            (ForgeKind::GitLab, Access::Token, "me/dots")
        );
        let r = parse("ssh://fleet@forge.home:2222/srv/fleet.git");
        assert_eq!(
            (r.kind, r.access, r.host.as_str(), r.user.as_deref()),
            (ForgeKind::Other, Access::Ssh, "forge.home", Some("fleet"))
        );
        assert_eq!(parse("/srv/fleet.git").access, Access::Path);
        assert_eq!(parse("file:///srv/fleet.git").access, Access::Path);
        let r = parse("git://127.0.0.1:9418/fleet.git");
        assert_eq!(
            (r.access, r.host.as_str()),
            (Access::Anonymous, "127.0.0.1")
        );
    }

    #[test]
    fn each_forge_gets_its_own_steps() {
        let fp = vec!["SHA256:abc".to_string()];
        let gh = advice("git@github.com:me/dots.git", "c", &fp).join("\n");
        assert!(gh.contains("https://github.com/settings/keys"), "{gh}");
        assert!(
            gh.contains("https://github.com/me/dots/settings/keys"),
            "{gh}"
        );
        assert!(gh.contains("SHA256:abc"), "{gh}");
        let gh = advice("https://github.com/me/dots.git", "c", &fp).join("\n");
        assert!(gh.contains("the token you gave c"), "{gh}");
        assert!(gh.contains("personal-access-tokens"), "{gh}");
        let gl = advice("git@gitlab.com:me/dots.git", "c", &fp).join("\n");
        assert!(gl.contains("gitlab.com/-/user_settings/ssh_keys"), "{gl}");
        let other = advice("ssh://git@forge.home/fleet.git", "c", &fp).join("\n");
        assert!(other.contains("Gitea or Forgejo"), "{other}");
        assert!(other.contains("plain SSH forge"), "{other}");
        assert!(other.contains("~git/.ssh/authorized_keys"), "{other}");
        let tea = advice("https://forge.home/me/dots.git", "c", &fp).join("\n");
        assert!(tea.contains("the token you gave c"), "{tea}");
        assert!(!tea.contains("plain SSH"), "{tea}");
    }
}

//! The errors a fleetkey command ends with, each with a message that names the file, line or key
//! at fault and, where there is one, a concrete next step.
//!
//! Must never: carry a secret's value. Variants hold paths, line numbers, key names and the
//! wrapped error of a library that never sees plaintext; parse errors of the secrets file carry
//! line numbers only.

use std::io;
use std::path::{Path, PathBuf};

/// Exit code for a forge that could not be reached (`EX_TEMPFAIL`): local work is kept.
pub const EXIT_TEMPFAIL: i32 = 75;

/// Exit code for a forge that holds commits that are not authentic: nothing from them was
/// applied, local work is kept (committed, not pushed).
pub const EXIT_UNTRUSTED: i32 = 3;

/// What went wrong: every kind of error that can stop a fleetkey command. Callers branch on
/// this (through [`Error::kind`]); a hint added to an [`Error`] never hides it.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// A file or directory operation failed.
    #[error("{action} {path}")]
    Io {
        /// What fleetkey was doing, e.g. "cannot read".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A TOML configuration file is malformed or holds an unknown key.
    #[error("{path} is not a valid configuration file")]
    Config {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the line and the key.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value in a configuration file is out of range or malformed.
    #[error("{path}: {key}: {problem}")]
    ConfigValue {
        /// The file.
        path: PathBuf,
        /// The key holding the bad value.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// fleetkey has not been set up on this machine.
    #[error("this machine is not part of a fleet yet ({path} does not exist)")]
    NotInitialized {
        /// The missing configuration file.
        path: PathBuf,
    },
    /// `init` found an existing setup or fleet.
    #[error("{what}")]
    AlreadyInitialized {
        /// What already exists.
        what: String,
    },
    /// A file holding a private key may be read by others or belongs to someone else.
    #[error(
        "{path} is accessible by others (mode {mode:o}) or not owned by you; refusing to use it"
    )]
    InsecurePermissions {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The identity file holds no usable age identity.
    #[error("{path} line {line}: not an age identity (AGE-SECRET-KEY-1…)")]
    BadIdentity {
        /// The identity file.
        path: PathBuf,
        /// The 1-based line that failed (0 when the file holds no identity at all).
        line: usize,
    },
    /// A roster file under keys/ is malformed.
    #[error("{path} line {line}: {problem}")]
    BadRoster {
        /// The file under keys/.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong, never the line's content beyond a public key.
        problem: String,
    },
    /// A machine name does not match `[a-z0-9][a-z0-9-]{0,62}`.
    #[error(
        "{name:?} is not a valid machine name: use 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit"
    )]
    BadName {
        /// The rejected name.
        name: String,
    },
    /// The secrets file could not be decrypted.
    #[error("cannot decrypt {path}")]
    Decrypt {
        /// The ciphertext file.
        path: PathBuf,
        /// age's reason.
        #[source]
        source: age::DecryptError,
    },
    /// The secrets file could not be encrypted.
    #[error("cannot encrypt the secrets")]
    Encrypt(#[source] age::EncryptError),
    /// The decrypted secrets file does not follow the grammar.
    #[error("{path} (decrypted) is malformed")]
    SecretsGrammar {
        /// The ciphertext file.
        path: PathBuf,
        /// The grammar error (an `envfile::ParseError`): line numbers only.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A secret name is invalid or absent.
    #[error("{0}")]
    Secret(String),
    /// The command line asks for something fleetkey never does (exit status 2, as clap's own
    /// usage errors).
    #[error("{0}")]
    Usage(String),
    /// A local git operation failed.
    #[error("git: {context}")]
    Git {
        /// What fleetkey was doing.
        context: String,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },
    /// A `git` command (network operations) failed for a reason other than reachability.
    #[error("`{command}` failed: {stderr}")]
    GitCommand {
        /// The command line as run (no secrets ever appear in it).
        command: String,
        /// What git said.
        stderr: String,
    },
    /// The forge could not be reached (unknown host, connection refused or timed out): a
    /// transient failure, exit 75; local commits are kept.
    #[error("the forge {remote} is unreachable")]
    ForgeUnreachable {
        /// The remote URL.
        remote: String,
        /// What git said.
        stderr: String,
    },
    /// The forge answered but holds no repository at that path (or hides it from this account).
    #[error("there is no repository at {remote}")]
    ForgeNoRepository {
        /// The remote URL.
        remote: String,
        /// What git said.
        stderr: String,
    },
    /// The forge refused this account's credentials (ssh key, token, password).
    #[error("the forge {remote} refused this machine's credentials")]
    ForgeAuth {
        /// The remote URL.
        remote: String,
        /// What git said.
        stderr: String,
    },
    /// The forge refused to take a push: a hook, a protected branch, or an account that may
    /// read but not write.
    #[error("the forge {remote} declined the push")]
    PushDeclined {
        /// The remote URL.
        remote: String,
        /// What git said.
        stderr: String,
    },
    /// git cannot run at all because one of its configuration files is malformed.
    #[error("git cannot read its configuration file {file}")]
    GitConfig {
        /// The configuration file git named.
        file: String,
        /// What git said.
        stderr: String,
    },
    /// Another git holds a ref lock in the fleet clone (a spurious failure: retried, see
    /// `crate::forge::retry`).
    #[error(
        "git failed talking to the forge {remote}: another git holds a lock in the fleet clone"
    )]
    RefLocked {
        /// The remote URL.
        remote: String,
        /// What git said.
        stderr: String,
    },
    /// A `git` command talking to the forge failed in a way fleetkey does not recognise.
    #[error("git failed talking to the forge {remote}")]
    ForgeFailed {
        /// The remote URL.
        remote: String,
        /// What git said.
        stderr: String,
    },
    /// A child program is missing or failed to start.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `secrets exec` could not start its command: exit 127 when it is not found, 126 when it
    /// cannot be run, as shells do.
    #[error("cannot run {program}: {}", exec_reason(error))]
    Exec {
        /// The command as given.
        program: String,
        /// Why exec failed (in the message, so not a chained cause).
        error: io::Error,
    },
    /// Another fleetkey cycle holds the lock.
    #[error("another fleetkey command is running (lock {path})")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The user's request cannot be carried out as asked.
    #[error("{0}")]
    Refused(String),
    /// The forge holds commits that are not authentic (see `crate::trust`).
    #[error(
        "the forge holds commits that are not authentic ({refused} refused); nothing from them was applied and your work stays local"
    )]
    Untrusted {
        /// How many commits were refused for a reason of their own.
        refused: usize,
    },
    /// A history to be trusted from its founding commit holds a commit that is not authentic
    /// (`enroll` verifies before it pins anything).
    #[error(
        "the forge's history does not verify: commit {commit} (claims {machine}) is refused: {why}; nothing was trusted"
    )]
    NotAuthentic {
        /// The refused commit.
        commit: String,
        /// The machine it claims.
        machine: String,
        /// Why it is refused.
        why: String,
    },
    /// The trust state (`trust.json`) exists but cannot be read or parsed. fleetkey never starts
    /// afresh over it: that would forget the revoked keys and the last verified forge tip.
    #[error("{path} (this machine's trust state) is damaged: {problem}")]
    TrustStateDamaged {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it (never its content).
        problem: String,
    },
    /// The authorized_keys merge or a keys file was refused (an `authorized_keys::Error`,
    /// which converts into this one where it is defined).
    #[error("{error}")]
    AuthorizedKeys {
        /// The refusal.
        error: Box<dyn std::error::Error + Send + Sync>,
        /// Its one-line hint.
        hint: &'static str,
    },
    /// This machine was revoked from the fleet: its keys read no secret and sign nothing the
    /// fleet accepts.
    #[error("this machine was revoked from the fleet on {date}{}", by.as_ref().map(|b| format!(" (by {b})")).unwrap_or_default())]
    Revoked {
        /// This machine's name.
        name: String,
        /// When (YYYY-MM-DD, as keys/revoked records it).
        date: String,
        /// The machine that revoked it, when history says.
        by: Option<String>,
    },
}

/// An error as a command ends with it: its [`ErrorKind`] and, beside it, an optional "try
/// this" line. Adding a hint never changes the kind, so `match err.kind()` keeps working.
pub struct Error {
    kind: Box<ErrorKind>,
    hint: Option<String>,
}

impl Error {
    /// Wraps an I/O error with what was being done and to which path.
    pub fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
        let path = path.to_path_buf();
        move |source| {
            ErrorKind::Io {
                action,
                path,
                source,
            }
            .into()
        }
    }

    /// Wraps a git2 error with what was being done.
    pub fn git(context: impl Into<String>) -> impl FnOnce(git2::Error) -> Error {
        let context = context.into();
        move |source| ErrorKind::Git { context, source }.into()
    }

    /// A refusal of what the user asked, in words that say why.
    pub fn refused(message: impl Into<String>) -> Error {
        ErrorKind::Refused(message.into()).into()
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Sets the "try this" line, replacing any earlier one.
    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// Puts `first` before the hint (or the built-in advice), `; `-separated.
    pub fn hint_before(self, first: &str) -> Error {
        let hint = match self.advice() {
            Some(advice) => format!("{first}; {advice}"),
            None => first.to_string(),
        };
        self.hint(hint)
    }

    /// Whether the forge could not be reached (local work is kept; retry later).
    pub fn is_unreachable(&self) -> bool {
        matches!(*self.kind, ErrorKind::ForgeUnreachable { .. })
    }

    /// Whether a `git` command talking to the forge failed, for any reason.
    pub fn is_forge_failure(&self) -> bool {
        matches!(
            *self.kind,
            ErrorKind::ForgeUnreachable { .. }
                | ErrorKind::ForgeNoRepository { .. }
                | ErrorKind::ForgeAuth { .. }
                | ErrorKind::PushDeclined { .. }
                | ErrorKind::GitConfig { .. }
                | ErrorKind::ForgeFailed { .. }
                | ErrorKind::RefLocked { .. }
        )
    }

    /// Whether a file operation failed because the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(&*self.kind, ErrorKind::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The process exit code this error ends with.
    pub fn exit_code(&self) -> i32 {
        match &*self.kind {
            ErrorKind::ForgeUnreachable { .. } => EXIT_TEMPFAIL,
            ErrorKind::Exec { error, .. } if error.kind() == io::ErrorKind::NotFound => 127,
            ErrorKind::Exec { .. } => 126,
            ErrorKind::Untrusted { .. } | ErrorKind::NotAuthentic { .. } => EXIT_UNTRUSTED,
            ErrorKind::Usage(_) => 2,
            _ => 1,
        }
    }

    /// The hint, if any, and otherwise the built-in advice for this kind of error.
    pub fn advice(&self) -> Option<String> {
        self.hint.clone().or_else(|| self.kind.advice())
    }
}

impl ErrorKind {
    /// This error with a "try this" line.
    pub fn hint(self, hint: impl Into<String>) -> Error {
        Error::from(self).hint(hint)
    }

    /// The built-in advice for this kind of error.
    fn advice(&self) -> Option<String> {
        match self {
            ErrorKind::AuthorizedKeys { hint, .. } => Some(hint.to_string()),
            ErrorKind::NotInitialized { .. } => Some(
                "run `fleetkey init` to start a fleet, or `fleetkey enroll NAME --remote URL` to join one"
                    .into(),
            ),
            ErrorKind::InsecurePermissions { path, .. } => {
                Some(format!("run `chmod go-rwx {}`", path.display()))
            }
            ErrorKind::Locked { .. } => Some("wait for it to finish and try again".into()),
            ErrorKind::Revoked { name, .. } => Some(format!(
                "its keys no longer read the secrets and its commits are refused; to bring it back, set it up under a new name: move ~/.config/fleetkey and ~/.local/share/fleetkey aside, run `fleetkey enroll NEWNAME --remote URL` and approve it on a member ({} cannot come back)",
                name
            )),
            ErrorKind::Decrypt {
                source: age::DecryptError::NoMatchingKeys,
                ..
            } => Some(
                "check that this machine is approved and its identity (~/.config/fleetkey/identity.txt) is the one in keys/"
                    .into(),
            ),
            ErrorKind::Decrypt {
                source: age::DecryptError::UnknownFormat,
                ..
            } => Some("the file was written by a newer age or fleetkey: upgrade fleetkey".into()),
            ErrorKind::Decrypt { path, .. } => {
                let dir = path.parent().unwrap_or(Path::new(".")).display();
                let file = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Some(format!(
                    "the file is damaged or was not written by fleetkey: find a good version with `git -C {dir} log --oneline -- {file}`, then `git -C {dir} checkout COMMIT -- {file} && git -C {dir} commit -m 'restore {file}'`"
                ))
            }
            ErrorKind::Git { source, .. } if source.class() == git2::ErrorClass::Config => Some(
                "a git configuration file is malformed (named above): fix or move it; `git config --list` shows the same error until it is fixed"
                    .into(),
            ),
            ErrorKind::ForgeUnreachable { stderr, .. } if name_did_not_resolve(stderr) => {
                Some(format!(
                    "the forge's host name did not resolve: check the URL for a typo; if it is right, check the network (DNS, VPN) and retry{}",
                    git_said(stderr)
                ))
            }
            ErrorKind::ForgeUnreachable { stderr, .. } => Some(format!(
                "this is usually temporary: check the network and retry later{}",
                git_said(stderr)
            )),
            ErrorKind::ForgeNoRepository { stderr, .. } => Some(format!(
                "check the URL; the repository must exist on the forge (an empty one will do: `git init --bare`) and your account must be able to read it{}",
                git_said(stderr)
            )),
            ErrorKind::ForgeAuth { stderr, .. } => Some(format!(
                "check that `git ls-remote URL` works for you in a shell (ssh key loaded in ssh-agent, or a credential helper for https){}",
                git_said(stderr)
            )),
            ErrorKind::PushDeclined { stderr, .. } => Some(format!(
                "check that your account may push to the fleet branch (protected branches, pre-receive hooks, read-only deploy keys; a git daemon needs --enable=receive-pack){}",
                git_said(stderr)
            )),
            ErrorKind::GitConfig { file, stderr } => Some(format!(
                "fix or move {file}: `git config --list` shows the same error until it is fixed{}",
                git_said(stderr)
            )),
            ErrorKind::RefLocked { stderr, .. } => Some(format!(
                "wait for the other git to finish and run the command again; if none is running, remove the `.lock` file git names{}",
                git_said(stderr)
            )),
            ErrorKind::ForgeFailed { stderr, .. } => Some(format!(
                "run the same git command in a shell to see more{}",
                git_said(stderr)
            )),
            ErrorKind::TrustStateDamaged { path, .. } => Some(format!(
                "restore {} from a backup; or, once `fleetkey verify` on another member shows the forge holds every commit you know of (no rewind), move it aside: the next cycle verifies the whole history again from the trust root",
                path.display()
            )),
            ErrorKind::Untrusted { .. } => Some(
                "`fleetkey status` names each refused commit; once you know what happened, `fleetkey forge repair` puts the last authentic state back on the forge"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// Whether git (or ssh under it) said the forge's host name did not resolve.
fn name_did_not_resolve(stderr: &str) -> bool {
    [
        "Could not resolve host",
        "Could not resolve hostname",
        "Name or service not known",
        "nodename nor servname",
        "unable to look up",
        "Temporary failure in name resolution",
    ]
    .iter()
    .any(|n| stderr.contains(n))
}

/// Why exec failed, in a shell's words.
fn exec_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "command not found".into(),
        io::ErrorKind::PermissionDenied => "permission denied (not executable)".into(),
        _ => e.to_string(),
    }
}

/// What git said, on its own indented lines below a hint (empty when git said nothing).
fn git_said(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut text = String::from("\n  git said:");
    for line in lines {
        text.push_str("\n    ");
        text.push_str(line.trim_end());
    }
    text
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error {
            kind: Box::new(kind),
            hint: None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("hint", &self.hint)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kind.source()
    }
}

/// An error and its causes on one line, `: `-separated (error messages never hold a file's
/// content or a secret, so neither does this).
pub fn chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The result type of fleetkey's library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_secrets_file_is_not_blamed_on_approval() {
        let damaged: Error = ErrorKind::Decrypt {
            path: PathBuf::from("/r/fleet/secrets.env.age"),
            source: age::DecryptError::InvalidMac,
        }
        .into();
        let advice = damaged.advice().unwrap();
        assert!(advice.starts_with("the file is damaged or was not written by fleetkey: find a good version with `git -C /r/fleet log --oneline -- secrets.env.age`"), "{advice}");
        assert!(!advice.contains("approved"), "{advice}");
        let not_ours: Error = ErrorKind::Decrypt {
            path: PathBuf::from("/r/fleet/secrets.env.age"),
            source: age::DecryptError::NoMatchingKeys,
        }
        .into();
        assert!(not_ours.advice().unwrap().contains("approved"));
    }
}

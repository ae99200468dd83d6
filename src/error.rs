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

/// Everything that can stop a fleetkey command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
        /// The grammar error: line numbers only.
        #[source]
        source: crate::envfile::ParseError,
    },
    /// A secret name is invalid or absent.
    #[error("{0}")]
    Secret(String),
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
    /// The forge could not be reached; local commits are kept.
    #[error(
        "the forge {remote} is unreachable; your change is committed locally and goes out with the next `fleetkey sync`"
    )]
    ForgeUnreachable {
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
    /// Another fleetkey cycle holds the lock.
    #[error("another fleetkey command is running (lock {path})")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The user's request cannot be carried out as asked.
    #[error("{0}")]
    Refused(String),
    /// The authorized_keys merge or a keys file was refused.
    #[error(transparent)]
    AuthorizedKeys(#[from] crate::authorized_keys::Error),
    /// An error with a hint line appended.
    #[error("{error}")]
    Hinted {
        /// The underlying error.
        #[source]
        error: Box<Error>,
        /// The "try this" line.
        hint: String,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done and to which path.
    pub fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
        let path = path.to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    /// Wraps a git2 error with what was being done.
    pub fn git(context: impl Into<String>) -> impl FnOnce(git2::Error) -> Error {
        let context = context.into();
        move |source| Error::Git { context, source }
    }

    /// Adds a "try this" line.
    pub fn hint(self, hint: impl Into<String>) -> Error {
        Error::Hinted {
            error: Box::new(self),
            hint: hint.into(),
        }
    }

    /// The process exit code this error ends with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ForgeUnreachable { .. } => EXIT_TEMPFAIL,
            Error::Hinted { error, .. } => error.exit_code(),
            _ => 1,
        }
    }

    /// The hint, if any, and otherwise the built-in advice for this kind of error.
    pub fn advice(&self) -> Option<String> {
        match self {
            Error::Hinted { hint, .. } => Some(hint.clone()),
            Error::AuthorizedKeys(e) => Some(e.hint().to_string()),
            Error::NotInitialized { .. } => Some(
                "run `fleetkey init` to start a fleet, or `fleetkey enroll NAME --remote URL` to join one"
                    .into(),
            ),
            Error::InsecurePermissions { path, .. } => {
                Some(format!("run `chmod go-rwx {}`", path.display()))
            }
            Error::Locked { .. } => Some("wait for it to finish and try again".into()),
            Error::Decrypt { .. } => Some(
                "check that this machine is approved and its identity (~/.config/fleetkey/identity.txt) is the one in keys/"
                    .into(),
            ),
            Error::ForgeUnreachable { stderr, .. } => {
                Some(format!("git said: {}", stderr.trim()))
            }
            _ => None,
        }
    }
}

/// The result type of fleetkey's library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

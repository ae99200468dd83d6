//! Owns what can go wrong in a merge or when reading a keys file: [`Error`], each with a
//! one-line hint, and [`KeyLineProblem`]. Must never: quote a line's content in a message.

use std::path::PathBuf;

/// Why a line of a keys file is not a public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyLineProblem {
    /// The first field is not a key type sshd reads (options are not allowed in keys files).
    #[error("the key type is not one sshd reads")]
    UnknownKeyType,
    /// The line holds an OpenSSH certificate, not a plain public key.
    #[error("it is a certificate, not a public key")]
    Certificate,
    /// The key type is not followed by key data.
    #[error("the key data is missing")]
    MissingKeyData,
    /// The key data is not valid base64.
    #[error("the key data is not valid base64")]
    BadBase64,
    /// The key data does not decode as a key.
    #[error("the key data does not decode as a key")]
    BadKeyData,
    /// The key type at the start of the line does not match the type inside the key data.
    #[error("the key type does not match the key data")]
    TypeMismatch,
    /// A key type sshd reads but this build of fleetkey cannot decode (ECDSA without ssh-key's
    /// `ecdsa` feature).
    #[error("this build of fleetkey cannot decode this key type")]
    UnsupportedKeyType,
}

/// Why a merge or a keys file was refused. Messages never quote a line's content.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A line of a keys file is not one OpenSSH public key.
    #[error("{}:{line}: not an OpenSSH public key: {problem}", .path.display())]
    InvalidKeyLine {
        /// The file, as the caller named it.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        problem: KeyLineProblem,
    },
    /// The roster has no active SSH key. The caller must print nothing: an empty `modify_`
    /// output makes chezmoi delete `authorized_keys`.
    #[error("the fleet has no active SSH key, so authorized_keys is left as it is")]
    NoActiveFleetKey,
    /// A key is both active and revoked.
    #[error("key {fingerprint} of machine {machine} is both active and revoked")]
    RevokedKeyIsActive {
        /// The key's `SHA256:…` fingerprint.
        fingerprint: String,
        /// The machine that lists it as active.
        machine: String,
    },
    /// One key is listed as active for two machines, so its `fleetkey=NAME` is ambiguous.
    #[error("key {fingerprint} is listed for two machines, {first} and {second}")]
    KeySharedByMachines {
        /// The key's `SHA256:…` fingerprint.
        fingerprint: String,
        /// One machine listing it (first by name).
        first: String,
        /// The other machine listing it.
        second: String,
    },
    /// The fleetkey path cannot be written inside a poke line's `command="…"`.
    #[error("the fleetkey binary's path cannot be written as a forced command in authorized_keys")]
    InvalidPokeCommand,
    /// A machine name cannot be written as a `fleetkey=NAME` marker.
    #[error("machine name {machine:?} cannot be written to authorized_keys")]
    InvalidMachineName {
        /// The name, as given.
        machine: String,
    },
    /// An active key of a type fleetkey will not write to authorized_keys (DSA, which OpenSSH
    /// disables since 7.0 and removed in 10.0, or a type sshd does not know).
    #[error(
        "key {fingerprint} of machine {machine} is a {algorithm} key, which fleetkey does not write to authorized_keys"
    )]
    UnsupportedFleetKey {
        /// The machine.
        machine: String,
        /// The key's `SHA256:…` fingerprint.
        fingerprint: String,
        /// The key's algorithm name.
        algorithm: String,
    },
    /// A roster key could not be encoded (a field over 4 GiB; never happens for keys read from
    /// text).
    #[error("a key of {owner} cannot be encoded")]
    UnencodableKey {
        /// "machine NAME" or "the revoked keys".
        owner: String,
    },
    /// The merge would produce an empty file. Unreachable while the roster has an active key;
    /// kept so that an empty output can never be printed.
    #[error("the merged authorized_keys would be empty, so it is left as it is")]
    EmptyOutput,
}

impl From<Error> for crate::error::Error {
    fn from(e: Error) -> crate::error::Error {
        crate::error::ErrorKind::AuthorizedKeys {
            hint: e.hint(),
            error: Box::new(e),
        }
        .into()
    }
}

impl Error {
    /// A one-line suggestion of what to do about the error.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::InvalidKeyLine { .. } => {
                "each line must be one public key as `ssh-keygen -y -f KEYFILE` prints it: TYPE BASE64 [COMMENT]"
            }
            Self::NoActiveFleetKey => {
                "check that the fleet repo has keys/NAME.ssh.pub files, or approve a machine with `fleetkey approve NAME`"
            }
            Self::RevokedKeyIsActive { .. } => {
                "remove the key from keys/NAME.ssh.pub, or from keys/revoked if revoking it was a mistake"
            }
            Self::KeySharedByMachines { .. } => {
                "give each machine its own key: run `fleetkey rotate` on one of them"
            }
            Self::InvalidMachineName { .. } => {
                "machine names must be non-empty, without spaces or control characters"
            }
            Self::UnsupportedFleetKey { .. } => {
                "give the machine an ed25519 key: run `fleetkey rotate` on it"
            }
            Self::InvalidPokeCommand => {
                "install fleetkey at an absolute path without quotes, backslashes or control characters"
            }
            Self::UnencodableKey { .. } | Self::EmptyOutput => {
                "this is a bug in fleetkey; please report it"
            }
        }
    }
}

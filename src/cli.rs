//! The command line, as clap derive definitions. The `///` comments are the help text.
//!
//! Parsing has no side effects; [`crate::run`] resolves and runs what was parsed.

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::commands::secrets::ExportFormat;
use crate::config::Backend;

/// Keeps a fleet of personal machines in step through a git forge: dotfiles, age-encrypted
/// secrets and SSH access.
///
/// Exit codes: 0 done; 1 error; 2 usage; 75 the forge was unreachable (local work kept, retry
/// later).
#[derive(Debug, Parser)]
#[command(
    name = "fleetkey",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start a fleet with this machine: identity, SSH key, fleet repo, first push.
    ///
    /// Without --remote the fleet lives in an embedded forge, a local bare repository under
    /// ~/.local/share/fleetkey/forge.git.
    Init {
        /// This machine's name (default: its host name).
        #[arg(long)]
        name: Option<String>,
        /// The forge URL (ssh://, https://, or a path to a bare repository).
        #[arg(long)]
        remote: Option<String>,
        /// How dotfiles are captured and applied.
        #[arg(long, value_enum)]
        backend: Option<Backend>,
    },
    /// Read and change the fleet's secrets (values never travel through argv).
    Secrets {
        /// The secrets action.
        #[command(subcommand)]
        action: SecretsCmd,
    },
    /// Add paths under $HOME to the managed list, seeding the fleet with their current content.
    Track {
        /// Files or directories (a directory syncs with everything in it).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Commit locally only; the change goes out with the next sync.
        #[arg(long)]
        no_push: bool,
    },
    /// Remove paths from the managed list (the live files are left as they are).
    Untrack {
        /// Files or directories in the managed list.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Commit locally only; the change goes out with the next sync.
        #[arg(long)]
        no_push: bool,
    },
    /// One cycle: capture, commit, fetch, integrate, push, apply.
    Sync {
        /// Leave the forge alone: capture, commit and apply only.
        #[arg(long)]
        offline: bool,
    },
    /// The puller: one cycle, or one every DURATION (e.g. 60s, 5m); fetches only when the
    /// forge moved.
    Pull {
        /// Run forever, one cycle per DURATION.
        #[arg(long, value_name = "DURATION")]
        every: Option<String>,
    },
    /// The watcher daemon: a cycle after each settled change, and a pull every `poll`.
    Watch,
}

/// `fleetkey secrets …`.
#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Set KEY: the value is read from stdin, or prompted for twice on a terminal.
    Set {
        /// The secret's name: letters, digits and '_', not starting with a digit.
        key: String,
        /// Commit locally only; the change goes out with the next sync.
        #[arg(long)]
        no_push: bool,
    },
    /// Print KEY's value.
    Get {
        /// The secret's name.
        key: String,
    },
    /// List the secrets' names (never their values), with any marks.
    List,
    /// Remove KEY.
    Unset {
        /// The secret's name.
        key: String,
        /// Commit locally only; the change goes out with the next sync.
        #[arg(long)]
        no_push: bool,
    },
    /// Edit the decrypted file in $VISUAL or $EDITOR (a private temporary file).
    Edit,
    /// Print every secret, as shell assignments or JSON.
    Export {
        /// The output format.
        #[arg(long, value_enum, default_value = "env")]
        format: ExportFormat,
    },
    /// Run a command with the secrets in its environment.
    Exec {
        /// The command and its arguments.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "CMD"
        )]
        command: Vec<OsString>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn exec_takes_everything_after_the_double_dash() {
        let args =
            Args::try_parse_from(["fleetkey", "secrets", "exec", "--", "env", "-i"]).unwrap();
        match args.command {
            Cmd::Secrets {
                action: SecretsCmd::Exec { command },
            } => assert_eq!(command, ["env", "-i"]),
            other => panic!("{other:?}"),
        }
    }
}

//! fleetkey keeps a fleet of personal machines in step through a git forge: a managed list of
//! dotfiles, one age-encrypted secrets file, and the fleet's SSH keys in every authorized_keys.
//!
//! The binary is a thin shell over [`run`]; each module owns one concern.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod envfile;
pub mod error;
pub mod files;
pub mod fleet;
pub mod forge;
pub mod harden;
pub mod identity;
pub mod lock;
pub mod log;
pub mod paths;
pub mod repo;
pub mod roster;
pub mod secrets;
pub mod sync;

pub use error::{Error, Result};

use clap::Parser;

use cli::{Args, Cmd, SecretsCmd};

/// Parses the command line, runs the command, prints any error, and returns the exit code.
pub fn run() -> i32 {
    log::init();
    let args = Args::parse();
    match dispatch(args) {
        Ok(()) => 0,
        Err(e) => {
            report(&e);
            e.exit_code()
        }
    }
}

fn dispatch(args: Args) -> Result<()> {
    match args.command {
        Cmd::Init {
            name,
            remote,
            backend,
        } => commands::init::run(commands::init::InitOptions {
            name,
            remote,
            backend,
        }),
        Cmd::Secrets { action } => match action {
            SecretsCmd::Set { key, no_push } => commands::secrets::set(&key, !no_push),
            SecretsCmd::Get { key } => commands::secrets::get(&key),
            SecretsCmd::List => commands::secrets::list(),
            SecretsCmd::Unset { key, no_push } => commands::secrets::unset(&key, !no_push),
            SecretsCmd::Edit => commands::secrets::edit(),
            SecretsCmd::Export { format } => commands::secrets::export(format),
            SecretsCmd::Exec { command } => commands::secrets::exec(&command),
        },
        Cmd::Track { paths, no_push } => commands::track::track(&paths, !no_push),
        Cmd::Untrack { paths, no_push } => commands::track::untrack(&paths, !no_push),
        Cmd::Sync { offline } => commands::sync::sync(offline),
        Cmd::Pull { every } => commands::sync::pull(every.as_deref()),
        Cmd::Watch => commands::sync::watch(),
    }
}

/// Prints `fleetkey: error: …`, then each cause, then the hint.
fn report(e: &Error) {
    let mut text = format!("fleetkey: error: {e}\n");
    let mut source = std::error::Error::source(e);
    // A hinted error's own message repeats its inner error; skip that first level.
    if let Error::Hinted { .. } = e {
        source = source.and_then(std::error::Error::source);
    }
    while let Some(cause) = source {
        text.push_str(&format!("  caused by: {cause}\n"));
        source = cause.source();
    }
    if let Some(advice) = e.advice() {
        text.push_str(&format!("  hint: {advice}\n"));
    }
    eprint!("{text}");
}

//! fleetkey keeps a fleet of personal machines in step through a git forge: a managed list of
//! dotfiles, one age-encrypted secrets file, and the fleet's SSH keys in every authorized_keys.
//!
//! The binary is a thin shell over [`run`]; each module owns one concern, and data flows one
//! way: config and roster → secrets, authorized_keys, the clone → the sync cycle → the agents
//! → the commands. The map of the code, module by module, is in the README ("Map of the code").

#![forbid(unsafe_code)]
#![deny(missing_docs)]

// Layers point one way: each module uses only those listed above it, and nothing below
// `commands` imports it.
//
// The base: where things are, how they are written, what can go wrong.
pub(crate) mod child;
pub(crate) mod clock;
pub(crate) mod error;
pub(crate) mod fault;
pub(crate) mod files;
pub mod harden;
#[cfg(test)]
mod layers;
pub(crate) mod limits;
pub(crate) mod lock;
pub(crate) mod log;
pub(crate) mod output;
pub(crate) mod paths;
// The fleet's data: settings, keys and the roster, the secrets and their grammar, the
// authorized_keys merge, the clone.
pub(crate) mod access;
pub(crate) mod address;
pub(crate) mod authority;
pub(crate) mod authorized_keys;
pub(crate) mod bundle;
pub(crate) mod config;
pub(crate) mod confine;
pub(crate) mod enrollment;
pub(crate) mod envfile;
pub(crate) mod exposure;
pub(crate) mod forge;
pub(crate) mod identity;
pub(crate) mod private;
pub(crate) mod repo;
pub(crate) mod roster;
pub(crate) mod secrets;
pub(crate) mod signers;
pub(crate) mod signing;
pub(crate) mod tokens;
pub(crate) mod trust;
// This machine as a member, and its setup.
pub(crate) mod fleet;
pub(crate) mod gate;
pub(crate) mod setup;
// The sync cycle (capture, exchange with the forge, apply).
pub(crate) mod sync;
// The background agents (launchd, systemd, notifications): the cycle reaches them only through
// the hooks a command gives it (`sync::CycleHooks`).
pub(crate) mod agents;
// The top: the command line and one module per command.
pub(crate) mod cli;
pub(crate) mod commands;

pub use error::{Error, Result};

use clap::Parser;

use cli::{AddressCmd, AgentsCmd, Args, Cmd, ConfigCmd, ForgeCmd, RemoteCmd, SecretsCmd};

/// Parses the command line, runs the command, prints any error, and returns the exit code.
pub fn run() -> i32 {
    log::init();
    agents::set_up_logging();
    let args = Args::parse();
    match dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            e.exit_code()
        }
    }
}

/// Runs the parsed command; returns the exit code of a command that succeeded.
fn dispatch(args: Args) -> Result<i32> {
    let done = match args.command {
        Cmd::AuthorizedKeys { apply, check, keys } => {
            use commands::authorized_keys::Mode;
            let mode = match (apply, check) {
                (Some(path), _) => Mode::Apply(path),
                (None, Some(path)) => Mode::Check(path),
                (None, None) => Mode::Filter,
            };
            return commands::authorized_keys::run(mode, keys.as_deref());
        }
        Cmd::Doctor => return commands::doctor::run(),
        Cmd::Init {
            name,
            remote,
            backend,
            address,
        } => {
            let address = parse_address(address.as_deref())?;
            commands::init::run(commands::init::InitOptions {
                name,
                remote,
                backend,
            })
            .and_then(|()| want_address(address.as_ref()))
        }
        Cmd::Enroll {
            name,
            remote,
            bundle,
            passphrase_file,
            address,
        } => {
            let address = parse_address(address.as_deref())?;
            match (remote, bundle) {
                (_, Some(file)) => {
                    if address.is_some() {
                        return Err(Error::refused(
                            "--address belongs to the new machine: give it to `fleetkey join` there",
                        ));
                    }
                    commands::lifecycle::enroll_bundle(&name, &file, passphrase_file.as_deref())
                }
                (Some(remote), None) => commands::lifecycle::enroll_here(&name, &remote)
                    .and_then(|()| want_address(address.as_ref())),
                (None, None) => unreachable!("clap requires --remote or --bundle"),
            }
        }
        Cmd::Approve { name, code, role } => {
            commands::approve::approve(&name, code.as_deref(), role)
        }
        Cmd::Role { name, role } => commands::approve::set_role(&name, role),
        Cmd::Join {
            file,
            remote,
            passphrase_file,
            address,
        } => {
            let address = parse_address(address.as_deref())?;
            commands::lifecycle::join(&file, &remote, passphrase_file.as_deref())
                .and_then(|()| want_address(address.as_ref()))
        }
        Cmd::Rotate { ssh } => commands::lifecycle::rotate(ssh),
        Cmd::Status { json } => commands::status::run(json),
        Cmd::Fleet { json } => commands::fleet::run(json),
        Cmd::Verify { allowed_signers } => commands::verify::verify(allowed_signers),
        Cmd::Forge { action } => match action {
            ForgeCmd::Repair { yes } => commands::verify::repair(yes),
        },
        Cmd::Revoke {
            name,
            yes,
            dry_run,
            compromised,
            json,
        } => commands::lifecycle::revoke(
            &name,
            commands::lifecycle::RevokeOptions {
                compromised,
                json,
                yes,
                dry_run,
            },
        ),
        // `exec` and `scan` return their own exit code.
        Cmd::Secrets {
            action:
                SecretsCmd::Exec {
                    command,
                    mask,
                    no_mask,
                },
        } => {
            let masking = match (mask, no_mask) {
                (true, _) => commands::secrets::Masking::Always,
                (_, true) => commands::secrets::Masking::Never,
                _ => commands::secrets::Masking::Auto,
            };
            return commands::secrets::exec(&command, masking);
        }
        Cmd::Secrets {
            action: SecretsCmd::Scan { paths },
        } => return commands::secrets::scan(&paths),
        Cmd::Secrets { action } => secrets(action),
        Cmd::Track {
            paths,
            here: false,
            no_push,
        } => commands::track::track(&paths, !no_push),
        Cmd::Track {
            paths,
            here: true,
            no_push,
        } => commands::track::track_here(&paths, !no_push),
        Cmd::Untrack {
            paths,
            here: false,
            no_push,
        } => commands::track::untrack(&paths, !no_push),
        Cmd::Untrack {
            paths,
            here: true,
            no_push,
        } => commands::track::untrack_here(&paths, !no_push),
        Cmd::Diff { paths, offline } => commands::diff::run(&paths, offline),
        Cmd::Log { path, max_count } => commands::history::log(path.as_deref(), max_count),
        Cmd::Restore {
            path,
            at,
            before,
            no_push,
        } => commands::history::restore(&path, at.as_deref(), before.as_deref(), !no_push),
        Cmd::Remote {
            action: RemoteCmd::Set { url },
        } => commands::remote::set(&url),
        Cmd::Config { action } => config(action),
        Cmd::Conflicts => commands::conflicts::list(),
        Cmd::Resolve { path, keep } => commands::conflicts::resolve(&path, keep),
        Cmd::Sync { offline } => commands::sync::sync(offline),
        Cmd::Pull { every } => commands::sync::pull(every.as_deref()),
        Cmd::Watch => commands::sync::watch(),
        Cmd::Poke => commands::address::poke(),
        Cmd::Address { action } => address(action),
        Cmd::Agents { action } => agents(action),
        Cmd::Completions { shell } => commands::manual::completions(shell),
        Cmd::Man { out } => commands::manual::man(out.as_deref()),
    };
    done.map(|()| 0)
}

/// `fleetkey secrets …`.
fn secrets(action: SecretsCmd) -> Result<()> {
    match action {
        SecretsCmd::Set {
            key,
            value_in_argv,
            no_push,
            allow_empty,
        } => {
            if !value_in_argv.is_empty() {
                drop(zeroize::Zeroizing::new(value_in_argv));
                return Err(commands::secrets::value_in_argv(&key));
            }
            commands::secrets::set(&key, !no_push, allow_empty)
        }
        SecretsCmd::Conflicts { show } => commands::secrets::conflicts(show),
        SecretsCmd::Resolve { key, keep, no_push } => {
            commands::secrets::resolve(&key, keep, !no_push)
        }
        SecretsCmd::Get { key } => commands::secrets::get(&key),
        SecretsCmd::List => commands::secrets::list(),
        SecretsCmd::Unset { key, no_push } => commands::secrets::unset(&key, !no_push),
        SecretsCmd::Edit => commands::secrets::edit(),
        SecretsCmd::Export { format } => commands::secrets::export(format),
        SecretsCmd::Inject { input, output } => {
            commands::secrets::inject(input.as_deref(), output.as_deref())
        }
        SecretsCmd::Adopt { path, key, no_push } => {
            commands::secrets::adopt(&path, key.as_deref(), !no_push)
        }
        SecretsCmd::Exec { .. } | SecretsCmd::Scan { .. } => {
            unreachable!("dispatched with their exit codes")
        }
    }
}

/// `fleetkey config …`.
fn config(action: ConfigCmd) -> Result<()> {
    match action {
        ConfigCmd::Get { key } => commands::config::get(key.as_deref()),
        ConfigCmd::Set {
            key,
            values,
            no_push,
        } => commands::config::change(commands::config::Change::Set, &key, &values, !no_push),
        ConfigCmd::Add(e) => {
            commands::config::change(commands::config::Change::Add, &e.key, &e.values, !e.no_push)
        }
        ConfigCmd::Remove(e) => commands::config::change(
            commands::config::Change::Remove,
            &e.key,
            &e.values,
            !e.no_push,
        ),
    }
}

/// `fleetkey address …`.
fn address(action: AddressCmd) -> Result<()> {
    match action {
        AddressCmd::Set {
            destination,
            no_push,
        } => commands::address::set(Some(&destination), !no_push),
        AddressCmd::Clear { no_push } => commands::address::set(None, !no_push),
    }
}

/// `fleetkey agents …`.
fn agents(action: AgentsCmd) -> Result<()> {
    match action {
        AgentsCmd::Install { dry_run } => commands::agents::install(dry_run),
        AgentsCmd::Uninstall { dry_run } => commands::agents::uninstall(dry_run),
        AgentsCmd::Status { json } => commands::agents::status(json),
        AgentsCmd::Print { platform, out } => commands::agents::print(platform, out.as_deref()),
    }
}

/// `--address DEST` of `init`, `enroll` and `join`, checked before anything is done.
fn parse_address(address: Option<&str>) -> Result<Option<address::Address>> {
    address.map(commands::address::parse).transpose()
}

/// `--address` of `init`, `enroll` and `join`: kept for this machine's first cycle as a member
/// to commit (see [`commands::address`]).
fn want_address(address: Option<&address::Address>) -> Result<()> {
    match address {
        Some(a) => commands::address::want(&paths::Paths::from_env()?, a),
        None => Ok(()),
    }
}

/// Prints `fleetkey: error: …`, then each cause, then the hint.
fn report(e: &Error) {
    let mut text = format!("fleetkey: error: {e}\n");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!("  caused by: {cause}\n"));
        source = cause.source();
    }
    if let Some(advice) = e.advice() {
        text.push_str(&format!("  hint: {advice}\n"));
    }
    eprint!("{text}");
}

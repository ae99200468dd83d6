//! The command line, as clap derive definitions. The `///` comments are the help text.
//!
//! Parsing has no side effects; [`crate::run`] resolves and runs what was parsed.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Backend;
use crate::secrets::ExportFormat;

/// Keeps a fleet of personal machines in step through a git forge: dotfiles, age-encrypted
/// secrets and SSH access.
///
/// Exit codes: 0 done; 1 error; 2 usage; 3 the forge holds commits that are not authentic
/// (nothing from them applied, local work kept; see `fleetkey status`); 75 the forge was
/// unreachable (local work kept, retry later).
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
        /// The SSH address peers poke this machine at (`user@host`, `ssh://user@host:port`).
        #[arg(long, value_name = "DEST")]
        address: Option<String>,
    },
    /// Join a fleet: on a new machine with --remote, or make a bundle on an enrolled one.
    ///
    /// With --remote: clone the fleet, make this machine's keys (the private key never leaves
    /// it), and push a pending enrollment for `fleetkey approve`. With --bundle: on a machine
    /// already in the fleet, make NAME's keys, approve them at once, and write them
    /// passphrase-encrypted to FILE for `fleetkey join`.
    #[command(group(clap::ArgGroup::new("how").required(true).args(["remote", "bundle"])))]
    Enroll {
        /// The new machine's name.
        name: String,
        /// The forge URL (on the new machine).
        #[arg(long)]
        remote: Option<String>,
        /// Where to write the bundle (on an enrolled machine).
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// Read the bundle passphrase from the first line of FILE instead of prompting.
        #[arg(long, value_name = "FILE", requires = "bundle")]
        passphrase_file: Option<PathBuf>,
        /// The SSH address peers poke the new machine at; set once it is approved.
        #[arg(long, value_name = "DEST")]
        address: Option<String>,
    },
    /// Admit a pending machine: its keys join the roster and the secrets are re-encrypted.
    Approve {
        /// The pending machine.
        name: String,
        /// The enrollment code `fleetkey enroll` printed on the new machine (the line
        /// `enrollment code: …`; `fleetkey status` there shows it again). It binds the name and
        /// all four keys of the request; an SSH fingerprint alone is refused. Required when stdin
        /// is not a terminal (on a terminal it is typed). `--fingerprint` is an old alias.
        #[arg(long, value_name = "CODE", alias = "fingerprint")]
        code: Option<String>,
        /// What the new machine may change: `admin` (approve, revoke, roles, the forge, and all
        /// a member may do), `member` (dotfiles, settings, secrets, its own hosts/NAME/) or
        /// `receiver` (receives everything, changes only its own keys and hosts/NAME/: servers).
        #[arg(long, value_name = "ROLE", default_value = "member")]
        role: crate::authority::Role,
    },
    /// Change a machine's role: admin, member or receiver (admin only).
    Role {
        /// The machine.
        name: String,
        /// Its new role: `admin`, `member` or `receiver` (see `approve --role`).
        role: crate::authority::Role,
    },
    /// Set up this machine from a bundle made by `fleetkey enroll NAME --bundle FILE`.
    Join {
        /// The bundle.
        file: PathBuf,
        /// The forge URL.
        #[arg(long)]
        remote: String,
        /// Read the passphrase from the first line of FILE instead of prompting.
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// The SSH address peers poke this machine at.
        #[arg(long, value_name = "DEST")]
        address: Option<String>,
    },
    /// Give this machine a new age identity (and a new SSH key with --ssh).
    ///
    /// On a receiver only its own key files change: the next admin or member sync re-encrypts
    /// the secrets to the new identity, and the receiver keeps its old one until then.
    Rotate {
        /// Also replace ~/.ssh/id_ed25519; the old key is revoked fleet-wide.
        #[arg(long)]
        ssh: bool,
    },
    /// Remove a machine from the fleet and re-encrypt the secrets without it.
    ///
    /// On a terminal it asks you to type the machine's name; otherwise --yes is required.
    /// This machine's own authorized_keys drops the revoked key before the command returns.
    Revoke {
        /// The machine to remove.
        name: String,
        /// Do not ask (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Say what would be revoked, re-encrypted and marked; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Its key was stolen or leaked: report every secret it could ever read, and mark
        /// those that remain as needing a new value.
        #[arg(long)]
        compromised: bool,
        /// Print the report as JSON.
        #[arg(long, requires = "compromised")]
        json: bool,
    },
    /// Merge the fleet's SSH keys into an authorized_keys file, keeping every local line.
    ///
    /// Without options it is a chezmoi `modify_` script: the current file on stdin, the new one
    /// on stdout, nothing at all on any error. Revoked keys are removed wherever they appear.
    #[command(name = "authorized-keys")]
    AuthorizedKeys {
        /// Merge into PATH itself: atomic, mode 0600, a symlinked target refused.
        #[arg(long, value_name = "PATH", conflicts_with = "check")]
        apply: Option<PathBuf>,
        /// Say what a merge would add and remove, and why each fleet login key is admitted or
        /// left out (its role and `[authorized_keys] from`); exit 1 when the file would change.
        #[arg(long, value_name = "PATH", num_args = 0..=1)]
        check: Option<Option<PathBuf>>,
        /// Read the roster from this keys/ directory instead of the fleet repo.
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
    },
    /// Check the fleet branch's signatures back to this machine's trust root.
    ///
    /// With --allowed-signers, print every signing key of the history as a git allowed_signers
    /// file instead (principal = machine name; a rotated or revoked key valid until its last
    /// commit fleetkey accepted), for `git -c gpg.ssh.allowedSignersFile=FILE verify-commit` or
    /// `log --show-signature` over the whole branch. Exits 3 when a commit is not authentic.
    Verify {
        /// Print an allowed_signers file for stock git.
        #[arg(long)]
        allowed_signers: bool,
    },
    /// Work on the forge itself.
    Forge {
        /// The forge action.
        #[command(subcommand)]
        action: ForgeCmd,
    },
    /// Show every machine of the fleet from its host branch: last seen, last cycle, behind,
    /// agents, conflicts; silent machines marked.
    Fleet {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show this machine, the fleet, and what needs attention (never a secret's value).
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check this machine's setup, with a fix for each problem; exit 1 when one fails.
    Doctor,
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
        /// This machine's own version: kept in hosts/NAME/home/, its edits reach no other machine.
        #[arg(long)]
        here: bool,
        /// Commit locally only; the change goes out with the next sync.
        #[arg(long)]
        no_push: bool,
    },
    /// Remove paths from the managed list (the live files are left as they are).
    Untrack {
        /// Files or directories in the managed list.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Remove only this machine's own version: the fleet's comes back on the next cycle.
        #[arg(long)]
        here: bool,
        /// Commit locally only; the change goes out with the next sync.
        #[arg(long)]
        no_push: bool,
    },
    /// What the next sync would do: local edits it captures, and what the forge's latest
    /// changes here (fetched first). Secrets and private-looking files are never shown.
    Diff {
        /// Only these managed files or directories.
        #[arg(value_name = "PATH")]
        paths: Vec<String>,
        /// Do not fetch: compare with the forge's commit as last fetched.
        #[arg(long)]
        offline: bool,
    },
    /// The history of a managed file (or of the whole fleet): machine, date, what happened.
    Log {
        /// A managed file.
        #[arg(value_name = "PATH")]
        path: Option<String>,
        /// At most N entries.
        #[arg(short = 'n', long, value_name = "N", default_value_t = 50)]
        max_count: usize,
    },
    /// Put an earlier version of a managed file back; it syncs as a normal edit, and the
    /// version it replaces is kept beside it as a conflict copy.
    ///
    /// Without --at or --before: the version before the current one.
    Restore {
        /// The managed file.
        #[arg(value_name = "PATH")]
        path: String,
        /// The version in this commit (as `fleetkey log PATH` lists them).
        #[arg(long, value_name = "REV", conflicts_with = "before")]
        at: Option<String>,
        /// The version in force just before DATE (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC).
        #[arg(long, value_name = "DATE")]
        before: Option<String>,
        /// Commit locally only; the change goes out with the next sync.
        #[arg(long)]
        no_push: bool,
    },
    /// List the file conflict copies on this machine: file, machine, time, why, copy.
    Conflicts,
    /// Settle a file conflict: keep this machine's version (`here`, from the copy) or the
    /// fleet's (`fleet`, in the live file now); the copies are removed and the fleet synced.
    Resolve {
        /// The live file (as `fleetkey conflicts` lists it).
        #[arg(value_name = "PATH")]
        path: String,
        /// Which version stays.
        #[arg(long, value_enum)]
        keep: crate::commands::conflicts::Keep,
    },
    /// Move the fleet to another forge.
    Remote {
        /// The remote action.
        #[command(subcommand)]
        action: RemoteCmd,
    },
    /// Show or change the fleet's settings in fleet.toml (validated, committed, pushed).
    Config {
        /// The config action.
        #[command(subcommand)]
        action: ConfigCmd,
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
        /// Run forever, one cycle per DURATION (5s to 24h, with a unit: 90s, 5m, 1h).
        #[arg(long, value_name = "DURATION", value_parser = crate::config::check_every)]
        every: Option<String>,
    },
    /// The watcher daemon: a cycle after each settled change, and a pull every `poll`.
    ///
    /// A cycle starts `quiet` (default 150ms) after the last change to a managed file, but never
    /// later than `settle` (default 2s) after the first change of a burst; a file still being
    /// written is captured once it stands still (`fleetkey config set quiet|settle DURATION`).
    Watch,
    /// Take the bundle on stdin, if any, and ask this machine's running watcher to pull now.
    ///
    /// Peers run it over SSH after each push, through a forced command in authorized_keys that
    /// admits their poke key for this and nothing else. Stdin is empty (a plain poke) or a git
    /// bundle of the peer's new commits (at most 4 MiB, read within 10 s), kept in the inbox
    /// for the next cycle, which verifies it as it verifies a fetch. The command the client
    /// asked for is ignored.
    Poke,
    /// Set or clear the SSH address peers poke this machine at (`[hosts.NAME] address`).
    Address {
        /// The address action.
        #[command(subcommand)]
        action: AddressCmd,
    },
    /// Install, inspect and remove the background agents (launchd on macOS, systemd on Linux).
    ///
    /// The watcher runs `fleetkey watch` all the time; the puller runs `fleetkey pull` every
    /// `poll` of fleet.toml. On macOS they are launchd agents in ~/Library/LaunchAgents, on
    /// Linux systemd user units in ~/.config/systemd/user.
    Agents {
        /// The agents action.
        #[command(subcommand)]
        action: AgentsCmd,
    },
    /// Print a completion script for SHELL to stdout.
    ///
    /// bash: `fleetkey completions bash > ~/.local/share/bash-completion/completions/fleetkey`;
    /// zsh: write `_fleetkey` into a directory on $fpath; fish:
    /// `fleetkey completions fish > ~/.config/fish/completions/fleetkey.fish`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual (roff, one page holding every subcommand): `fleetkey man | man -l -`.
    ///
    /// With --out DIR, write fleetkey.1 and one page per subcommand (fleetkey-secrets-set.1, …)
    /// there instead: `fleetkey man --out ~/.local/share/man/man1`, then `man fleetkey-sync`.
    Man {
        /// Write one page per subcommand into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// `fleetkey remote …`.
#[derive(Debug, Subcommand)]
pub enum RemoteCmd {
    /// Move the fleet to the forge at URL (an empty repository, or the one it already moved to).
    ///
    /// Pushes the whole fleet branch there and checks it arrived, records `forge = URL` in
    /// fleet.toml so every machine switches on its next cycle, switches this machine, and leaves
    /// that commit on the old forge for machines that were offline.
    Set {
        /// ssh://, git://, https://, file://, an absolute path, or [user@]host:path.
        url: String,
    },
}

/// `fleetkey config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print KEY's value (one line per entry of a list), or every setting.
    Get {
        /// poll, quiet, settle, paths, ignore, literal, allow_tokens, private, materialize,
        /// materialize_format, authorized_keys, ssh_from, heal or forge.
        key: Option<String>,
    },
    /// Set KEY for the whole fleet: checked as every cycle checks it, committed and pushed.
    ///
    /// A list (ignore, literal, allow_tokens, private, ssh_from) takes every value it should
    /// hold, or none to clear it; what it replaced is printed. `config add` and `config remove`
    /// change one entry. ssh_from (`[authorized_keys] from`: whose login keys every machine
    /// admits, roles and machine names, default `admin member`) is an admin's to change.
    Set {
        /// poll, quiet, settle, ignore, literal, allow_tokens, private, materialize,
        /// materialize_format (env or sh), authorized_keys, ssh_from or heal (true or false).
        key: String,
        /// The new value (durations with a unit: 5s, 2m; paths as ~/REL or ~/REL/).
        #[arg(value_name = "VALUE", allow_hyphen_values = true)]
        values: Vec<String>,
        /// Commit locally only; the change goes out with the next sync.
        #[arg(long)]
        no_push: bool,
    },
    /// Add values to a list setting (ignore, literal, private), keeping what it holds.
    Add(ListEdit),
    /// Remove values from a list setting (ignore, literal, private).
    Remove(ListEdit),
}

/// `fleetkey config add|remove`: one list, some values.
#[derive(Debug, clap::Args)]
pub struct ListEdit {
    /// ignore, literal or private.
    pub key: String,
    /// The values to add or remove.
    #[arg(value_name = "VALUE", required = true, allow_hyphen_values = true)]
    pub values: Vec<String>,
    /// Commit locally only; the change goes out with the next sync.
    #[arg(long)]
    pub no_push: bool,
}

/// `fleetkey agents …`.
#[derive(Debug, Subcommand)]
pub enum AgentsCmd {
    /// Write the agents' files and reload the agents whose files changed.
    ///
    /// A file is written only when its rendered bytes differ from the installed one, and only
    /// the agents with a written file are reloaded; a second run does nothing. A reload that
    /// failed is retried by the next run.
    Install {
        /// Say what would be written and run; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop and disable both agents and remove their files.
    Uninstall {
        /// Say what would be removed and run; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show for each agent whether it is installed, up to date and loaded.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the agents' files as `agents install` would write them for this machine.
    Print {
        /// Render for this platform instead of the one fleetkey runs on.
        #[arg(long, value_enum)]
        platform: Option<crate::agents::Platform>,
        /// Write the files into DIR instead of printing them.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// `fleetkey secrets …`.
#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Set KEY: the value is read from stdin, or prompted for twice on a terminal.
    ///
    /// An empty value is refused (an empty stdin is usually a command that failed upstream of
    /// the pipe) unless --allow-empty is given. Setting a key settles its conflict, if any.
    Set {
        /// The secret's name: letters, digits and '_', not starting with a digit.
        key: String,
        /// Never given: a value on the command line is refused with an explanation (other
        /// users can read a command line, and shells keep it in their history).
        #[arg(hide = true, value_name = "VALUE", allow_hyphen_values = true)]
        value_in_argv: Vec<String>,
        /// Commit locally only; the change goes out with the next sync.
        #[arg(long)]
        no_push: bool,
        /// Accept an empty value.
        #[arg(long)]
        allow_empty: bool,
    },
    /// List the values kept aside by merges: key, and who set each value and when.
    ///
    /// When two machines change one key before they sync, the forge's value is in force and
    /// the other is kept aside (inside the encryption) until `secrets resolve` or `secrets set`
    /// settles it. Each value is named by the machine that set it and the time it was set
    /// there, so every machine shows the same lines.
    Conflicts {
        /// Also print the values (the one in force and the one kept aside).
        #[arg(long)]
        show: bool,
    },
    /// Settle KEY's conflict: keep the value in force or the one kept aside.
    Resolve {
        /// The secret's name.
        key: String,
        /// `in-force`: the value in force (the one that won the merge); `aside`: the value
        /// kept aside. `secrets conflicts` names the machine that set each.
        /// `theirs` and `ours` are accepted as the old spellings of `in-force` and `aside`.
        #[arg(long, value_enum)]
        keep: crate::secrets::Keep,
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
    /// Print every secret, as dotenv, for docker, as shell assignments or as JSON.
    ///
    /// Which format fits: `env` (the default) for a `.env` file that python-dotenv and Node's
    /// dotenv read back exactly; `docker` for `docker run --env-file`; `--format sh` for `eval
    /// "$(fleetkey secrets export --format sh)"` (bash, zsh, dash: exported, so programs started
    /// from the shell see them); `--format fish` for `fleetkey secrets export --format fish |
    /// source`; `json` for programs. A value a format cannot carry exactly (a multi-line value
    /// for docker) is refused, naming the key, and nothing is printed. `fleetkey secrets exec --
    /// CMD` passes the secrets to one command without a file.
    Export {
        /// The output format.
        #[arg(long, value_enum, default_value = "env")]
        format: ExportFormat,
    },
    /// Run a command with the secrets in its environment.
    ///
    /// The exit status is CMD's (128 + N when signal N ended it); when CMD cannot be run it
    /// exits 127 (not found) or 126 (not executable), as shells do. Secret values that CMD
    /// writes to its stdout or stderr are replaced by `<concealed by fleetkey>` when that
    /// stream is not a terminal (a pipe, a file, a CI log), or always with --mask; a value
    /// split across two writes is masked too. Values shorter than 4 bytes are not masked.
    /// With --no-mask (or both streams on a terminal) fleetkey replaces itself with CMD.
    Exec {
        /// Mask secret values on both streams, terminal or not.
        #[arg(long, conflicts_with = "no_mask")]
        mask: bool,
        /// Never mask: CMD writes to the streams directly.
        #[arg(long)]
        no_mask: bool,
        /// The command and its arguments.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "CMD"
        )]
        command: Vec<OsString>,
    },
    /// Render `{{fleetkey.secret.KEY}}` references in a template.
    ///
    /// Reads the template from stdin (or -i FILE) and writes it with every reference replaced
    /// by the secret's value to stdout (or -o FILE, written 0600 atomically, never through a
    /// symlink). A reference to a key the secrets do not hold is an error naming it, and
    /// nothing is written. `{{fleetkey.lit}}` stands for a literal `{{fleetkey.`.
    Inject {
        /// The template (default: stdin).
        #[arg(short = 'i', long = "in", value_name = "TEMPLATE")]
        input: Option<PathBuf>,
        /// Where the result goes (default: stdout).
        #[arg(short = 'o', long = "out", value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// List what looks like a credential in files, as capture would hold them back.
    ///
    /// One line per finding, `PATH:LINE: KIND` (never the value); exits 1 when anything is
    /// found, 0 otherwise, so a hook or a script can ask before a file is tracked. Reads stdin
    /// when no PATH is given. The formats: GitHub, GitLab, Slack, AWS, Google, Stripe, OpenAI,
    /// Anthropic, npm and PyPI tokens, private keys, JSON Web Tokens, URLs with a password.
    Scan {
        /// The files to scan (default: stdin).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Move the tokens of a held-back file into the secrets, leaving placeholders.
    ///
    /// Each credential-looking value that capture found in PATH (a managed file) becomes a
    /// fleet secret, under a name proposed from the file and the kind of token (or --key NAME
    /// when there is one token); the secrets are re-encrypted and pushed, and the next cycle
    /// captures the file with `{{fleetkey.secret.NAME}}` where the token was. The live file is
    /// not changed: it keeps working.
    Adopt {
        /// The file, as `~/PATH` or a path under $HOME.
        path: String,
        /// The secret's name, when the file holds one token.
        #[arg(long, value_name = "NAME")]
        key: Option<String>,
        /// Commit locally only; the change goes out with the next sync.
        #[arg(long)]
        no_push: bool,
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
    fn pull_every_is_checked_while_parsing() {
        let every = |v: &str| {
            Args::try_parse_from(["fleetkey", "pull", "--every", v]).map(|a| match a.command {
                Cmd::Pull { every } => every,
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(every("5s").unwrap().as_deref(), Some("5s"));
        assert_eq!(every("24h").unwrap().as_deref(), Some("24h"));
        for bad in ["5", "4s", "25h", "18446744073709551615s", "0s"] {
            let err = every(bad).unwrap_err().to_string();
            assert!(err.contains("--every"), "{bad}: {err}");
            assert!(err.contains("allowed: 5s to 24h"), "{bad}: {err}");
        }
    }

    #[test]
    fn exec_takes_everything_after_the_double_dash() {
        let args =
            Args::try_parse_from(["fleetkey", "secrets", "exec", "--", "env", "-i"]).unwrap();
        match args.command {
            Cmd::Secrets {
                action: SecretsCmd::Exec { command, .. },
            } => assert_eq!(command, ["env", "-i"]),
            other => panic!("{other:?}"),
        }
    }
}

/// `fleetkey address …`.
#[derive(Debug, Subcommand)]
pub enum AddressCmd {
    /// Set this machine's address: an ssh destination, `user@host` or `ssh://user@host:port`.
    Set {
        /// The destination peers run `ssh` against.
        destination: String,
        /// Commit locally only; the next cycle pushes it.
        #[arg(long)]
        no_push: bool,
    },
    /// Remove this machine's address: peers no longer poke it (it still polls).
    Clear {
        /// Commit locally only; the next cycle pushes it.
        #[arg(long)]
        no_push: bool,
    },
}

/// `fleetkey forge …`.
#[derive(Debug, Subcommand)]
pub enum ForgeCmd {
    /// Put the last authentic state (plus local work) back on a tampered forge.
    ///
    /// Shows the commits the forge will lose, asks on a terminal, pushes with
    /// --force-with-lease against the refused tip, and keeps the refused commits under
    /// refs/fleetkey/refused/ in the clone. A cycle does the same by itself at most once a
    /// minute unless `[trust] heal = false`; this is for a person, with no limit.
    Repair {
        /// Do not ask (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
}

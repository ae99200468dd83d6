//! `fleetkey secrets …`: read and change the fleet's secrets.
//!
//! A value never comes from argv: `set` reads stdin, or prompts twice without echo on a
//! terminal. Every change re-encrypts to the whole active roster, rewrites secrets.recipients,
//! commits both in one commit and pushes.

mod adopt;
mod inject;
mod mask;

pub use adopt::adopt;

use std::io::{IsTerminal, Read};
use std::process::{Command, Stdio};

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::envfile::{Conflict, EnvFile, Origins, Setter};
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Machine;
use crate::output::{self, outln};
use crate::roster::Roster;
use crate::secrets::{CIPHERTEXT, ExportFormat, Keep, RECIPIENTS, Sealer, SecretsFile, check_key};
use crate::sync::{Begin, FleetChange};

/// Largest value `set` reads from stdin.
const VALUE_LIMIT: u64 = 1 << 20;

fn load(machine: &Machine) -> Result<EnvFile> {
    machine.secrets()
}

/// A change of the secrets under way: the fleet change begun (lock, repair, fleet.toml), the
/// roster read and the encryption to it started before the secrets are decrypted, so the key
/// wrapping overlaps the rest. Everything that can fail on bad input is read here, before
/// anything is written.
pub struct Prepared<'m> {
    change: FleetChange<'m>,
    roster: Roster,
    sealer: Sealer,
}

/// Begins the change ([`Begin::AsIs`]), reads the roster and starts the encryption to it.
pub fn prepare(machine: &Machine) -> Result<Prepared<'_>> {
    let change = FleetChange::begin(machine, Begin::AsIs)?;
    let roster = Roster::load(change.repo.root())?;
    let sealer = Sealer::for_roster(&roster)?;
    Ok(Prepared {
        change,
        roster,
        sealer,
    })
}

/// Where a change of the secrets went, for the line `set`, `unset` and `edit` print:
/// `encrypted to 2 machines (alpha, beta) and pushed`.
fn went_to(roster: &Roster, push: bool) -> String {
    let names: Vec<&str> = roster.active.iter().map(|m| m.name.as_str()).collect();
    let machines = match names.len() {
        1 => "1 machine".to_string(),
        n => format!("{n} machines"),
    };
    let to = format!("encrypted to {machines} ({})", names.join(", "));
    if push {
        format!("{to} and pushed")
    } else {
        format!("{to}, committed here; it goes out with the next sync")
    }
}

/// The error for a key this machine's copy of the secrets does not hold: when that copy is
/// from, and how to get a newer one.
fn no_such_key(machine: &Machine, key: &str) -> Error {
    let as_of = match crate::sync::state::CycleRecord::load(&machine.paths.state_dir) {
        Some(rec) if rec.result == crate::sync::state::CycleResult::Ok => {
            format!("as of its last sync, {}", rec.started)
        }
        Some(rec) => format!(
            "its last sync, {}, ended {}: the copy may be older",
            rec.started, rec.result
        ),
        None => "this machine has not synced yet".to_string(),
    };
    ErrorKind::Secret(format!(
        "no secret named {key} in this machine's copy of the secrets ({as_of})"
    ))
    .hint("`fleetkey sync` fetches the fleet's latest secrets; `fleetkey secrets list` shows the names this copy holds")
}

/// Re-encrypts `env` to the roster, commits the ciphertext and its recipient list together, and
/// publishes when `push` is set.
pub fn save_prepared(prepared: Prepared, env: &EnvFile, what: &str, push: bool) -> Result<()> {
    let change = &prepared.change;
    SecretsFile::new(change.repo.root()).store_sealed(env, &prepared.roster, prepared.sealer)?;
    let name = &change.machine.config.name;
    change.commit(
        &[CIPHERTEXT, RECIPIENTS],
        &format!("{name}: secrets: {what}"),
    )?;
    if push {
        change.publish()?;
    }
    Ok(())
}

/// `secrets get KEY`: prints the value and a newline.
pub fn get(key: &str) -> Result<()> {
    check_key(key)?;
    let machine = Machine::load()?;
    let env = load(&machine)?;
    let value = env.get(key).ok_or_else(|| no_such_key(&machine, key))?;
    let mut line = Zeroizing::new(Vec::with_capacity(value.len() + 1));
    line.extend_from_slice(value.as_bytes());
    line.push(b'\n');
    output::stdout(&line)
}

/// `secrets list`: names only, with the marks of stale values and conflicts.
pub fn list() -> Result<()> {
    let machine = Machine::load()?;
    let env = load(&machine)?;
    let stale = env.stale();
    let conflicts = env.conflicts();
    let mut text = String::new();
    for key in env.keys() {
        text.push_str(key);
        if let Some(s) = stale.iter().find(|s| s.key == key) {
            text.push_str(&format!("\tNEEDS A NEW VALUE (exposed; since {})", s.since));
        }
        for c in conflicts.iter().filter(|c| c.key == key) {
            text.push_str(&format!(
                "\tCONFLICT ({})",
                describe_conflict(c, true, &machine.config.name)
            ));
        }
        text.push('\n');
    }
    output::stdout(text.as_bytes())
}

/// The refusal of `secrets set KEY VALUE`: a value is never taken from argv (exit status 2, a
/// usage error).
pub fn value_in_argv(key: &str) -> Error {
    ErrorKind::Usage(
        "secrets set takes no value on the command line: other users can read a command line (ps), and shells keep it in their history".into(),
    )
    .hint(format!(
        "run `fleetkey secrets set {key}` on a terminal and type the value at the prompt, or give it on stdin: `fleetkey secrets set {key} < FILE`, `pbpaste | fleetkey secrets set {key}`"
    ))
}

/// `secrets set KEY`: the value from stdin, or prompted twice on a terminal. An empty value is
/// refused unless `allow_empty` (an empty stdin is far more often a broken pipe than a wish).
pub fn set(key: &str, push: bool, allow_empty: bool) -> Result<()> {
    check_key(key)?;
    let machine = Machine::load()?;
    let value = read_value(key)?;
    let prepared = prepare(&machine)?;
    let mut env = load(&machine)?;
    if value.is_empty() && !allow_empty {
        return Err(ErrorKind::Secret(format!(
            "the value for {key} is empty; nothing was changed"
        ))
        .hint(format!(
            "check the command that feeds stdin; to set an empty value on purpose, run `fleetkey secrets set {key} --allow-empty`"
        )));
    }
    let existed = env.contains_key(key);
    let changed = env
        .set(key, &value)
        .map_err(|e| ErrorKind::Secret(e.to_string()))?;
    // Setting a value settles any concurrent edit kept aside for the key.
    let settled = env.clear_conflicts(key);
    if !changed.is_changed() && settled == 0 {
        outln!("fleetkey: {key} already has that value; nothing changed")?;
        return Ok(());
    }
    let went = went_to(&prepared.roster, push);
    save_prepared(prepared, &env, &format!("set {key}"), push)?;
    let what = match (existed, changed.is_changed()) {
        (false, _) => "added",
        (true, true) => "changed",
        (true, false) => "kept; its conflict is settled",
    };
    outln!("fleetkey: {key} {what}: {went}")?;
    if let Err(why) = crate::tokens::substitutable(value.as_bytes()) {
        crate::log::info(&format!(
            "{key}'s value is never replaced by {{{{fleetkey.secret.{key}}}}} in dotfiles: {why}"
        ));
    }
    Ok(())
}

/// `secrets unset KEY`.
pub fn unset(key: &str, push: bool) -> Result<()> {
    check_key(key)?;
    let machine = Machine::load()?;
    let prepared = prepare(&machine)?;
    let mut env = load(&machine)?;
    // A conflict record of the key goes with it (it holds a value of the key).
    let settled = env.clear_conflicts(key);
    if !env.unset(key) && settled == 0 {
        return Err(no_such_key(&machine, key));
    }
    let went = went_to(&prepared.roster, push);
    save_prepared(prepared, &env, &format!("unset {key}"), push)?;
    outln!("fleetkey: {key} removed: {went}")?;
    Ok(())
}

/// `secrets conflicts [--show]`: each value kept aside by a merge, with the key and both values
/// named by the machine that set each and when it was set there (the same on every machine);
/// the values themselves (the one in force and the one kept aside) only with `show`.
pub fn conflicts(show: bool) -> Result<()> {
    let machine = Machine::load()?;
    let env = load(&machine)?;
    let conflicts = env.conflicts();
    if conflicts.is_empty() {
        return output::stdout(b"no conflicts\n");
    }
    let mut text = Zeroizing::new(String::new());
    for c in &conflicts {
        text.push_str(&format!(
            "{}\t{}\n",
            c.key,
            describe_conflict(c, env.contains_key(&c.key), &machine.config.name)
        ));
        if show {
            text.push_str(&format!(
                "  in force: {}\n",
                env.get(&c.key).map(shown).unwrap_or_default().as_str()
            ));
            text.push_str(&format!("  aside:    {}\n", shown(&c.value).as_str()));
        }
    }
    text.push_str(
        "settle each with `fleetkey secrets resolve KEY --keep aside|in-force` (or `secrets set KEY`)\n",
    );
    output::stdout(text.as_bytes())
}

/// One value kept aside, both values named by who set them and when:
/// `in force: set by server at T2; aside: set by laptop (here) at T1`. `in_force` says whether
/// the key still has a value. A record written by an older fleetkey knows neither setter: it
/// says so, and names the merge that kept the value aside instead.
pub fn describe_conflict(c: &Conflict, in_force: bool, here: &str) -> String {
    let in_force = if in_force {
        set_by(&c.origins.in_force, here)
    } else {
        "none (the key was removed)".to_string()
    };
    let mut text = format!(
        "in force: {in_force}; aside: {}",
        set_by(&c.origins.aside, here)
    );
    if c.origins == Origins::default() {
        text.push_str(&format!(
            " (an older record: kept aside by a merge on {} at {})",
            c.from, c.at
        ));
    }
    text
}

/// `set by M at T`, with `(here)` after this machine's name, and `unknown` for what is.
fn set_by(setter: &Setter, here: &str) -> String {
    let who = match setter.machine.as_deref() {
        Some(m) if m == here => format!("{m} (here)"),
        Some(m) => m.to_string(),
        None => "unknown".to_string(),
    };
    match setter.at.as_deref() {
        Some(at) => format!("set by {who} at {at}"),
        None if setter.machine.is_none() => format!("set by {who}"),
        None => format!("set by {who} at an unknown time"),
    }
}

/// A value for `conflicts --show`: as it is when it is one printable line, else quoted with
/// escapes so a newline or a control character cannot break the listing.
fn shown(value: &str) -> Zeroizing<String> {
    if value.chars().all(|c| !c.is_control()) {
        Zeroizing::new(value.to_string())
    } else {
        Zeroizing::new(format!("{value:?}"))
    }
}

/// `secrets resolve KEY --keep aside|in-force`: settles a conflict of KEY, keeping the value in
/// force (`in-force`) or the one kept aside (`aside`), and removes the conflict records.
pub fn resolve(key: &str, keep: Keep, push: bool) -> Result<()> {
    check_key(key)?;
    let machine = Machine::load()?;
    let prepared = prepare(&machine)?;
    let mut env = load(&machine)?;
    let records: Vec<_> = env
        .conflicts()
        .into_iter()
        .filter(|c| c.key == key)
        .collect();
    if records.is_empty() {
        return Err(
            ErrorKind::Secret(format!("{key} has no conflict to resolve"))
                .hint("`fleetkey secrets conflicts` lists the keys that have one"),
        );
    }
    if keep == Keep::Aside {
        if records.len() > 1 {
            return Err(ErrorKind::Secret(format!(
                "{key} has {} values kept aside; say which by setting it",
                records.len()
            ))
            .hint(format!(
                "see them with `fleetkey secrets conflicts --show`, then `fleetkey secrets set {key}`"
            )));
        }
        env.set(key, &records[0].value)
            .map_err(|e| ErrorKind::Secret(e.to_string()))?;
    }
    env.clear_conflicts(key);
    let what = match keep {
        Keep::Aside => "the value kept aside",
        Keep::InForce => "the value in force",
    };
    save_prepared(prepared, &env, &format!("resolve {key}"), push)?;
    outln!("fleetkey: {key}: kept {what}; the conflict is settled")?;
    Ok(())
}

/// `secrets export`: every value, for `set -a; . FILE` or as JSON.
pub fn export(format: ExportFormat) -> Result<()> {
    let machine = Machine::load()?;
    let env = load(&machine)?;
    let text = match format {
        ExportFormat::Env => env.export_env(),
        ExportFormat::Sh => env.export_sh(),
        ExportFormat::Fish => env.export_fish(),
        ExportFormat::Json => env.export_json(),
    };
    output::stdout(text.as_bytes())
}

/// Whether `secrets exec` masks the secret values in its command's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masking {
    /// Mask what goes to a pipe or a file, not what goes to a terminal (the default).
    Auto,
    /// Mask both streams, terminal or not (`--mask`).
    Always,
    /// Never mask (`--no-mask`): fleetkey replaces itself with the command.
    Never,
}

/// `secrets exec -- CMD ARGS…`: runs CMD with the secrets added to its environment and returns
/// its exit code (128 + the signal's number when a signal ended it, as shells report it).
/// Without masking on either stream, fleetkey replaces itself with CMD; with it, CMD's stdout
/// and stderr go through a [`mask::Masker`] each.
pub fn exec(command: &[std::ffi::OsString], masking: Masking) -> Result<i32> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| ErrorKind::Refused("secrets exec needs a command after --".into()))?;
    let machine = Machine::load()?;
    let env = load(&machine)?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (key, value) in env.entries() {
        if value.contains('\0') {
            return Err(ErrorKind::Secret(format!(
                "{key} holds a NUL byte and cannot be passed in an environment"
            ))
            .into());
        }
        cmd.env(key, value);
    }
    let mask_out = match masking {
        Masking::Always => true,
        Masking::Never => false,
        Masking::Auto => !std::io::stdout().is_terminal(),
    };
    let mask_err = match masking {
        Masking::Always => true,
        Masking::Never => false,
        Masking::Auto => !std::io::stderr().is_terminal(),
    };
    let spawn_error = |err: std::io::Error| -> Error {
        ErrorKind::Exec {
            program: program.to_string_lossy().into_owned(),
            error: err,
        }
        .into()
    };
    if !mask_out && !mask_err {
        drop(env);
        return Err(spawn_error(std::os::unix::process::CommandExt::exec(
            &mut cmd,
        )));
    }
    let masker = || mask::Masker::new(env.entries().map(|(_, v)| v.as_bytes()));
    if mask_out {
        cmd.stdout(Stdio::piped());
    }
    if mask_err {
        cmd.stderr(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(spawn_error)?;
    let pumps: Vec<std::thread::JoinHandle<std::io::Result<()>>> = [
        child.stdout.take().map(|out| {
            let m = masker();
            std::thread::spawn(move || mask::pump(out, std::io::stdout(), m))
        }),
        child.stderr.take().map(|err| {
            let m = masker();
            std::thread::spawn(move || mask::pump(err, std::io::stderr(), m))
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    drop(env);
    let status = child
        .wait()
        .map_err(Error::io("cannot wait for", std::path::Path::new(program)))?;
    for p in pumps {
        // A reader that went away (a closed pipe downstream) is no failure of the command.
        let _ = p.join();
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

/// Largest file `scan` reads.
const SCAN_LIMIT: u64 = 1 << 30;

/// `secrets scan [PATH…]`: `PATH:LINE: KIND` for each credential-looking value; returns 1 when
/// anything was found.
pub fn scan(paths: &[std::path::PathBuf]) -> Result<i32> {
    let mut found_any = false;
    let mut report = |name: &str, bytes: &[u8]| -> Result<()> {
        let mut text = String::new();
        for f in crate::tokens::scan(bytes) {
            text.push_str(&format!("{name}:{}: {}\n", f.line, f.kind));
            found_any = true;
        }
        output::stdout(text.as_bytes())
    };
    if paths.is_empty() {
        let mut bytes = Zeroizing::new(Vec::new());
        std::io::stdin()
            .lock()
            .take(SCAN_LIMIT)
            .read_to_end(&mut bytes)
            .map_err(Error::io("cannot read", std::path::Path::new("stdin")))?;
        report("stdin", &bytes)?;
    }
    for path in paths {
        let bytes = Zeroizing::new(crate::files::read_limited(path, SCAN_LIMIT)?);
        report(&path.display().to_string(), &bytes)?;
    }
    Ok(i32::from(found_any))
}

/// Largest template `inject` reads.
const TEMPLATE_LIMIT: u64 = 16 << 20;

/// `secrets inject [-i TEMPLATE] [-o OUT]`: renders the template's references; OUT is written
/// 0600, atomically, never through a symlink, and only when every reference resolved.
pub fn inject(input: Option<&std::path::Path>, output: Option<&std::path::Path>) -> Result<()> {
    let template = Zeroizing::new(match input {
        Some(path) => crate::files::read_limited(path, TEMPLATE_LIMIT)?,
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .take(TEMPLATE_LIMIT + 1)
                .read_to_end(&mut bytes)
                .map_err(Error::io(
                    "cannot read the template from",
                    std::path::Path::new("stdin"),
                ))?;
            if bytes.len() as u64 > TEMPLATE_LIMIT {
                return Err(ErrorKind::Refused(format!(
                    "the template on stdin is larger than {TEMPLATE_LIMIT} bytes"
                ))
                .into());
            }
            bytes
        }
    });
    let machine = Machine::load()?;
    let env = load(&machine)?;
    let shown = input.map_or("stdin".to_string(), |p| p.display().to_string());
    let rendered = inject::render(&template, &env).map_err(|e| {
        ErrorKind::Secret(format!("{shown}: {e}; nothing was written"))
            .hint("set each missing secret with `fleetkey secrets set KEY`, or fix the reference")
    })?;
    match output {
        Some(path) => crate::files::write_private(path, &rendered),
        None => output::stdout(&rendered),
    }
}

/// `secrets edit`: decrypts into a 0600 file in a private 0700 directory, runs `$VISUAL` or
/// `$EDITOR`, and re-encrypts only when the text changed. The file is removed afterwards, also
/// on error. A result that does not parse is offered for another edit on a terminal.
pub fn edit() -> Result<()> {
    let machine = Machine::load()?;
    let prepared = prepare(&machine)?;
    let env = load(&machine)?;
    let before = env.to_text();
    let dir = private_scratch_dir(&machine)?;
    crate::log::debug(&format!(
        "editing a decrypted copy in {}",
        dir.path().display()
    ));
    let path = dir.path().join("secrets.env");
    crate::files::write_private(&path, before.as_bytes())?;
    let editor = match std::env::var("VISUAL").or_else(|_| std::env::var("EDITOR")) {
        Ok(e) if !e.trim().is_empty() => e,
        // vi without a terminal would hang or scribble; say what to do instead.
        _ if !std::io::stdin().is_terminal() => {
            return Err(ErrorKind::Refused(
                "no editor: $VISUAL and $EDITOR are unset and there is no terminal to run vi in"
                    .into(),
            )
            .hint("set EDITOR (e.g. `EDITOR=nano fleetkey secrets edit`), or change one key with `fleetkey secrets set KEY`"));
        }
        _ => "vi".into(),
    };
    let mut words = editor.split_whitespace();
    let program = words.next().unwrap_or("vi").to_string();
    let extra: Vec<&str> = words.collect();
    loop {
        let status = Command::new(&program)
            .args(&extra)
            .arg(&path)
            .status()
            .map_err(|source| ErrorKind::Spawn {
                program: program.clone(),
                source,
            })?;
        if !status.success() {
            return Err(ErrorKind::Refused(format!(
                "{program} exited with {status}; nothing was changed"
            ))
            .into());
        }
        let after = Zeroizing::new(crate::files::read_text(&path, VALUE_LIMIT * 64)?);
        if bool::from(after.as_bytes().ct_eq(before.as_bytes())) {
            crate::log::info("no change; nothing re-encrypted");
            return Ok(());
        }
        match check_edited(&after)
            .and_then(|()| crate::envfile::parse(&after).map_err(|e| e.to_string()))
        {
            Ok(new_env) => {
                let went = went_to(&prepared.roster, true);
                let changes = edit_summary(&env, &new_env);
                save_prepared(prepared, &new_env, "edit", true)?;
                outln!("fleetkey: secrets edited ({changes}): {went}")?;
                return Ok(());
            }
            Err(e) => {
                // Off a terminal there is no second try: the error alone says it, once.
                if !std::io::stdin().is_terminal() {
                    return Err(ErrorKind::Refused(format!(
                        "the edited secrets were malformed ({e}); nothing was changed"
                    ))
                    .into());
                }
                crate::log::warn(&format!("the edited file is malformed: {e}"));
                if !confirm("edit again? [Y/n] ")? {
                    return Err(ErrorKind::Refused(
                        "the edited secrets were malformed; nothing was changed".into(),
                    )
                    .into());
                }
            }
        }
    }
}

/// What an edit changed, by key name (never a value): `added A; changed B, C; removed D`, or
/// `comments and layout only`.
fn edit_summary(before: &EnvFile, after: &EnvFile) -> String {
    let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for key in after.keys() {
        match before.get(key) {
            None => added.push(key),
            Some(old)
                if !bool::from(
                    old.as_bytes()
                        .ct_eq(after.get(key).unwrap_or("").as_bytes()),
                ) =>
            {
                changed.push(key)
            }
            Some(_) => {}
        }
    }
    for key in before.keys() {
        if !after.contains_key(key) {
            removed.push(key);
        }
    }
    let parts: Vec<String> = [("added", added), ("changed", changed), ("removed", removed)]
        .into_iter()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(what, keys)| format!("{what} {}", keys.join(", ")))
        .collect();
    if parts.is_empty() {
        "comments and layout only".to_string()
    } else {
        parts.join("; ")
    }
}

/// Refuses what `secrets set` would refuse and what the parser would misread, naming the line
/// (never its content): a NUL byte (no environment can hold it), and a carriage return that
/// does not end a CRLF line (a file with CR-only line endings would become one key).
fn check_edited(text: &str) -> std::result::Result<(), String> {
    for (n, line) in text.split('\n').enumerate() {
        let line_no = n + 1;
        if line.contains('\0') {
            return Err(format!(
                "line {line_no} holds a NUL byte, which no environment variable can hold"
            ));
        }
        let body = line.strip_suffix('\r').unwrap_or(line);
        if body.contains('\r') {
            return Err(format!(
                "line {line_no} holds a carriage return (CR) that does not end a line: use LF or CRLF line endings"
            ));
        }
    }
    Ok(())
}

/// A private 0700 directory for the decrypted copy, on the first of
/// [`crate::secrets::scratch_bases`] where one can be made.
fn private_scratch_dir(machine: &Machine) -> Result<tempfile::TempDir> {
    let state_dir = &machine.paths.state_dir;
    let mut last = None;
    for base in crate::secrets::scratch_bases(state_dir) {
        if &base == state_dir {
            crate::files::ensure_private_dir(&base)?;
        }
        match tempfile::Builder::new()
            .prefix(&crate::secrets::edit_prefix(state_dir))
            .tempdir_in(&base)
        {
            Ok(dir) => {
                crate::files::ensure_private_dir(dir.path())?;
                return Ok(dir);
            }
            Err(e) => last = Some(Error::io("cannot create a private directory in", &base)(e)),
        }
    }
    Err(last.unwrap_or_else(|| Error::refused("no directory for the decrypted copy")))
}

fn confirm(prompt: &str) -> Result<bool> {
    let answer = rpassword::prompt_password(prompt).unwrap_or_default();
    Ok(!answer.trim().eq_ignore_ascii_case("n"))
}

/// Reads a secret value: from stdin when it is not a terminal (one trailing newline removed),
/// else prompted twice without echo.
fn read_value(key: &str) -> Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let raw = if stdin.is_terminal() {
        let first = Zeroizing::new(
            rpassword::prompt_password(format!("value for {key}: ")).map_err(Error::io(
                "cannot read the value from",
                std::path::Path::new("/dev/tty"),
            ))?,
        );
        let second = Zeroizing::new(
            rpassword::prompt_password(format!("value for {key} (again): ")).map_err(Error::io(
                "cannot read the value from",
                std::path::Path::new("/dev/tty"),
            ))?,
        );
        if !bool::from(first.as_bytes().ct_eq(second.as_bytes())) {
            return Err(
                ErrorKind::Secret("the two values differ; nothing was changed".into()).into(),
            );
        }
        first
    } else {
        let mut bytes = Zeroizing::new(Vec::new());
        stdin
            .lock()
            .take(VALUE_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(Error::io(
                "cannot read the value from",
                std::path::Path::new("stdin"),
            ))?;
        if bytes.len() as u64 > VALUE_LIMIT {
            return Err(ErrorKind::Secret(format!(
                "the value for {key} is larger than {VALUE_LIMIT} bytes"
            ))
            .into());
        }
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ErrorKind::Secret(format!("the value for {key} is not UTF-8 text")))?;
        Zeroizing::new(text.to_string())
    };
    if raw.contains('\0') {
        return Err(ErrorKind::Secret(format!("the value for {key} holds a NUL byte")).into());
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_with_a_nul_or_a_lone_cr_is_refused_with_its_line() {
        assert_eq!(check_edited("A=1\nB=2\r\n"), Ok(()));
        assert_eq!(check_edited("A=1\r"), Ok(()));
        assert_eq!(
            check_edited("A=1\rB=2\r").unwrap_err(),
            "line 1 holds a carriage return (CR) that does not end a line: use LF or CRLF line endings"
        );
        assert_eq!(
            check_edited("A=1\nB=x\0y\n").unwrap_err(),
            "line 2 holds a NUL byte, which no environment variable can hold"
        );
    }
}

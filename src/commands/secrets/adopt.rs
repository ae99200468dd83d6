//! `secrets adopt PATH [--key NAME]`: from "held back" to "synced safely" in one command.
//!
//! Each credential-looking value capture finds in PATH ([`crate::tokens::scan`] over the
//! file's repo form, so values that already are fleet secrets are placeholders and not found
//! again) becomes a fleet secret; the secrets are re-encrypted and committed, and a cycle then
//! captures the file, whose token is now `{{fleetkey.secret.NAME}}` in the fleet's copy (a file
//! not managed yet is left for `fleetkey track`, which then stores it so). The live file is not
//! written: it keeps working as it is.
//!
//! Names: `--key NAME` for a file with one token; else the name the line assigns the token to
//! when it is an environment-style name (`export GITHUB_TOKEN=…` → `GITHUB_TOKEN`), else the
//! kind's usual name (`NPM_AUTH_TOKEN`, [`crate::tokens::Kind::key_name`]); a name already
//! holding another value gets `_2`, `_3`…, and a value already stored under some name keeps it.
//!
//! Must never: print a token, or change the secrets when any step before the commit fails.

use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Machine;
use crate::output::outln;
use crate::sync;
use crate::tokens::{self, Finding};

/// One token of the file and the secret it becomes.
struct Adopted {
    finding: Finding,
    key: String,
    /// Whether the value is new to the secrets (else it is already stored under `key`).
    new: bool,
}

/// `fleetkey secrets adopt PATH [--key NAME]`.
pub fn adopt(path: &str, key: Option<&str>, push: bool) -> Result<()> {
    if let Some(k) = key {
        crate::secrets::check_key(k)?;
    }
    let machine = Machine::load()?;
    let cwd = std::env::current_dir().map_err(Error::io(
        "cannot read the current directory",
        std::path::Path::new("."),
    ))?;
    let rel = sync::managed::normalize(path, &machine.paths.home, &cwd)?;
    // Begins the fleet change (the lock, a repaired clone) before anything is read.
    let prepared = super::prepare(&machine)?;
    let plan = sync::plan::Plan::for_machine(&machine)?;
    let managed = plan.managed.iter().any(|m| m.covers(&rel));
    let checked = plan
        .confinement
        .check_rel(&rel)
        .map_err(|r| Error::refused(r.to_string()))?;
    let home = plan.open_home()?;
    let live = home.read_file(&checked, crate::limits::MANAGED_FILE)?;
    let bytes = Zeroizing::new(plan.placeholders.to_repo(&rel, &live.bytes).into_owned());
    let found = tokens::scan(&bytes);
    if found.is_empty() {
        outln!("fleetkey: ~/{rel} holds nothing that looks like a token; nothing to adopt")?;
        return Ok(());
    }
    let mut env = super::load(&machine)?;
    let adopted = name_tokens(&bytes, &found, key, &env)?;
    let mut names = Vec::new();
    for a in &adopted {
        let value = std::str::from_utf8(&bytes[a.finding.start..a.finding.end])
            .map_err(|_| ErrorKind::Secret(format!("line {} is not UTF-8 text", a.finding.line)))?;
        if let Err(why) = tokens::substitutable(value.as_bytes()) {
            return Err(ErrorKind::Secret(format!(
                "the {} on line {} cannot become a placeholder: {why}; nothing was changed",
                a.finding.kind, a.finding.line
            ))
            .into());
        }
        if a.new {
            env.set(&a.key, value)
                .map_err(|e| ErrorKind::Secret(e.to_string()))?;
        }
        if !names.contains(&a.key) {
            names.push(a.key.clone());
        }
    }
    super::save_prepared(
        prepared,
        &env,
        &format!("adopt {} from ~/{rel}", names.join(", ")),
        push && !managed,
    )?;
    drop(env);
    for a in &adopted {
        outln!(
            "fleetkey: ~/{rel}: line {} ({}) is the secret {}{}",
            a.finding.line,
            a.finding.kind,
            a.key,
            if a.new { "" } else { " (already stored)" }
        )?;
    }
    if !managed {
        outln!(
            "fleetkey: ~/{rel} is not managed yet: `fleetkey track ~/{rel}` now stores it with placeholders where the tokens were"
        )?;
        return Ok(());
    }
    if !push {
        outln!("fleetkey: the next sync captures ~/{rel} with placeholders where the tokens were")?;
        return Ok(());
    }
    // The same cycle as `fleetkey sync` (the change above has let go of the lock): it
    // captures the file with its placeholders, pushes the secrets and the file together, and
    // applies.
    let rec = sync::cycle_by_hand(&machine, sync::Network::Full, &crate::agents::AgentHooks)?;
    if let Some(h) = rec
        .held_back
        .iter()
        .find(|h| h.starts_with(&format!("~/{rel} ")))
    {
        return Err(Error::refused(format!("~/{rel} is still held back: {h}")));
    }
    outln!("fleetkey: ~/{rel} is synced, with placeholders where the tokens were")?;
    Ok(())
}

/// The secret each finding becomes.
fn name_tokens(
    bytes: &[u8],
    found: &[Finding],
    key: Option<&str>,
    env: &crate::envfile::EnvFile,
) -> Result<Vec<Adopted>> {
    let value = |f: &Finding| &bytes[f.start..f.end];
    let distinct = {
        let mut v: Vec<&[u8]> = found.iter().map(value).collect();
        v.sort();
        v.dedup();
        v.len()
    };
    if key.is_some() && distinct > 1 {
        return Err(Error::refused(format!(
            "the file holds {distinct} different tokens; --key names one"
        ))
        .hint("run `fleetkey secrets adopt PATH` without --key: each gets a name from its line"));
    }
    let mut out: Vec<Adopted> = Vec::new();
    for f in found {
        let v = value(f);
        // The same value met before in this file, or already a secret: its name.
        if let Some(a) = out.iter().find(|a| value(&a.finding) == v) {
            out.push(Adopted {
                finding: *f,
                key: a.key.clone(),
                new: false,
            });
            continue;
        }
        if let Some((k, _)) = env.entries().find(|(_, x)| x.as_bytes() == v) {
            out.push(Adopted {
                finding: *f,
                key: k.to_string(),
                new: false,
            });
            continue;
        }
        let base = key
            .map(str::to_string)
            .or_else(|| assigned_name(bytes, f.start))
            .unwrap_or_else(|| f.kind.key_name().to_string());
        let mut name = base.clone();
        let mut n = 2;
        while env.contains_key(&name) || out.iter().any(|a| a.key == name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        out.push(Adopted {
            finding: *f,
            key: name,
            new: true,
        });
    }
    Ok(out)
}

/// The environment-style name the line assigns the value at `at` to (`GITHUB_TOKEN=` or
/// `"GITHUB_TOKEN": "`), if any.
fn assigned_name(bytes: &[u8], at: usize) -> Option<String> {
    let line_start = bytes[..at]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let before = &bytes[line_start..at];
    let before = before
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'"' | b'\''))
        .map(|p| &before[..=p])?;
    let before = before
        .strip_suffix(b"=")
        .or_else(|| before.strip_suffix(b":"))?;
    let end = before
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'"' | b'\''))?
        + 1;
    let start = before[..end]
        .iter()
        .rposition(|b| !(b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_'))
        .map_or(0, |p| p + 1);
    let name = std::str::from_utf8(&before[start..end]).ok()?;
    (name.len() >= 3
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && crate::secrets::check_key(name).is_ok())
    .then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_comes_from_the_assignment_when_it_is_environment_style() {
        let at =
            |text: &str, token: &str| assigned_name(text.as_bytes(), text.find(token).unwrap());
        assert_eq!(
            at("export GITHUB_TOKEN=ghp_x", "ghp_").as_deref(),
            Some("GITHUB_TOKEN")
        );
        assert_eq!(
            at("a\n  \"OPENAI_KEY\": \"sk-x\"", "sk-").as_deref(),
            Some("OPENAI_KEY")
        );
        assert_eq!(at("//registry.npmjs.org/:_authToken=npm_x", "npm_"), None);
        assert_eq!(at("token ghp_x", "ghp_"), None);
        assert_eq!(at("url = https://u:pw@h", "pw@"), None);
    }
}

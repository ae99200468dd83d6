//! `fleetkey diff`: what the next cycle would do, both ways, without doing it.
//!
//! - outgoing: the local edits the next capture would commit ([`super::capture::capture`] run
//!   on a copy of the manifest: the same rules, so what is shown is what goes out), shown from
//!   the fleet's version (in this machine's live form) to the live file;
//! - incoming: what the forge's latest commit (fetched first, unless offline) would change in
//!   the live files: this machine's effective version in HEAD against the one in
//!   `origin/BRANCH`, both in the live form (home path back in place).
//!
//! Text is shown as a unified diff (libgit2's), a binary file as one line. Never shown: the
//! secrets (they are not managed files), the materialized secrets file, authorized_keys, and
//! any private-looking file (by path or content; it is listed as such). Control characters
//! other than tab in a shown line are escaped (`\x1b`), so a hostile file cannot drive the
//! terminal. Must never: write a live file, move a branch, or change the manifest on disk (the
//! capture may add blobs to the clone's object database, which a later cycle reuses).

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::limits;

use super::capture;
use super::plan::Plan;
use super::state::Manifest;
use super::tree;

/// One file that would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Relative to `$HOME`.
    pub rel: String,
    /// The content before (live form), `None` when the file is new.
    pub old: Option<Vec<u8>>,
    /// The content after (live form), `None` when the file goes.
    pub new: Option<Vec<u8>>,
    /// A private-looking file: its content is never shown.
    pub private: bool,
    /// This machine keeps its own version of it (`track --here`).
    pub overridden: bool,
}

/// Both directions.
#[derive(Debug, Default)]
pub struct Preview {
    /// Local edits the next cycle captures.
    pub outgoing: Vec<Change>,
    /// What the forge's latest changes in the live files.
    pub incoming: Vec<Change>,
    /// The selected managed files this machine keeps its own version of (`track --here`).
    pub overridden: Vec<String>,
}

/// Whether `rel` is one of `only` or inside one (everything when `only` is empty).
fn wanted(rel: &str, only: &[String]) -> bool {
    only.is_empty()
        || only
            .iter()
            .any(|p| rel == p || (rel.starts_with(p.as_str()) && rel.as_bytes()[p.len()] == b'/'))
}

/// What a preview reads once and every part of it shares: the clone, the plan of the
/// fleet.toml in force, this machine, its manifest, the files capture never reads and the
/// paths asked for.
pub struct Inputs<'a> {
    /// The clone's repository.
    pub repo: &'a git2::Repository,
    /// The plan of the fleet.toml in force.
    pub plan: &'a Plan,
    /// This machine's name.
    pub machine: &'a str,
    /// This machine's manifest (only a copy of it is changed).
    pub manifest: &'a Manifest,
    /// The files capture never reads ([`Plan::never_captured`]).
    pub never: &'a BTreeSet<String>,
    /// The paths asked for (relative to `$HOME`; everything when empty).
    pub only: &'a [String],
}

/// Computes the preview. `head` is the clone's HEAD tree; `forge` the trees of the merge base
/// and of the forge's latest commit (already fetched and checked by the caller) when the forge
/// has commits HEAD lacks: what changed between those two is what comes in (upstream's
/// version, as the cycle's merge gives it on a conflict).
pub fn preview(
    cx: &Inputs<'_>,
    head: &git2::Tree<'_>,
    forge: Option<(&git2::Tree<'_>, &git2::Tree<'_>)>,
) -> Result<Preview> {
    let overridden: BTreeSet<String> = super::overrides::list(cx.repo, head, cx.machine)
        .into_iter()
        .collect();
    let mut out = Preview {
        overridden: overridden
            .iter()
            .filter(|rel| wanted(rel, cx.only))
            .cloned()
            .collect(),
        outgoing: outgoing(cx, head, &overridden)?,
        ..Preview::default()
    };
    if let Some((base, theirs)) = forge {
        out.incoming = incoming(cx, head, base, theirs, &overridden)?;
    }
    Ok(out)
}

/// Whether a file's content must never be shown (by its path or its content).
fn is_private(rel: &str, bytes: &[u8]) -> bool {
    crate::private::detect(rel, bytes).is_some()
}

/// Reads a stored file, refusing one larger than a managed file may be (checked from the
/// object's header, before its content is read).
fn read_blob(repo: &git2::Repository, oid: git2::Oid) -> Result<Vec<u8>> {
    let size = repo
        .odb()
        .and_then(|o| o.read_header(oid))
        .map_err(Error::git("cannot read a stored file"))?
        .0;
    limits::MANAGED_FILE
        .check(size as u64)
        .map_err(|e| Error::refused(e.to_string()))?;
    Ok(repo
        .find_blob(oid)
        .map_err(Error::git("cannot read a stored file"))?
        .content()
        .to_vec())
}

/// The stored file at `path` of `head`, in the live form of `rel` (placeholders shown), or
/// `None` when `head` has none.
fn shown_at(
    cx: &Inputs<'_>,
    head: &git2::Tree<'_>,
    path: &str,
    rel: &str,
) -> Result<Option<Vec<u8>>> {
    tree::blob_at(head, path)
        .map(|oid| read_blob(cx.repo, oid))
        .transpose()
        .map(|b| b.map(|b| cx.plan.placeholders.to_shown(rel, &b).into_owned()))
}

/// Rule for outgoing: the next capture, run with the cycle's own rules on a copy of the
/// manifest (so what is shown is what goes out), each captured or removed file shown from
/// HEAD's version to the live one; only the files asked for, and only this machine's files
/// (`home/` or its own `hosts/NAME/home/`).
fn outgoing(
    cx: &Inputs<'_>,
    head: &git2::Tree<'_>,
    overridden: &BTreeSet<String>,
) -> Result<Vec<Change>> {
    let plan = cx.plan;
    let home = plan.open_home()?;
    let mut scratch = cx.manifest.clone();
    let scope = capture::Scope {
        home: &home,
        confinement: &plan.confinement,
        managed: &plan.managed,
        skip: cx.never,
        machine: cx.machine,
        first_contact: capture::FirstContact::FleetWins,
        ignore: &plan.ignore,
        placeholders: &plan.placeholders,
        allow_tokens: &plan.allow_tokens,
        patience: None,
    };
    let captured = capture::capture(cx.repo, head, &scope, &mut scratch)?;
    let host = format!("{}/", tree::host_dir(cx.machine));
    let rel_of = |repo_path: &str| -> Option<String> {
        repo_path
            .strip_prefix("home/")
            .or_else(|| repo_path.strip_prefix(host.as_str()))
            .filter(|rel| wanted(rel, cx.only))
            .map(str::to_string)
    };
    let mut out = Vec::new();
    for (path, blob, _) in &captured.upserts {
        let Some(rel) = rel_of(path) else { continue };
        let old = shown_at(cx, head, path, &rel)?;
        let new = plan
            .placeholders
            .to_shown(&rel, &read_blob(cx.repo, *blob)?)
            .into_owned();
        out.push(Change {
            private: is_private(&rel, &new),
            overridden: overridden.contains(&rel),
            rel,
            old,
            new: Some(new),
        });
    }
    for path in &captured.removals {
        let Some(rel) = rel_of(path) else { continue };
        let old = shown_at(cx, head, path, &rel)?;
        out.push(Change {
            private: old.as_deref().is_some_and(|b| is_private(&rel, b)),
            overridden: overridden.contains(&rel),
            rel,
            old,
            new: None,
        });
    }
    Ok(out)
}

/// Rule for incoming: HEAD's effective versions against what the merge would give them: each
/// file the forge changed since the merge base takes the forge's version (upstream's, as the
/// cycle's merge gives it on a conflict); a file that changes is shown unless it is not asked
/// for, ignored, never captured, or outside the confinement. Sorted by path.
fn incoming(
    cx: &Inputs<'_>,
    head: &git2::Tree<'_>,
    base: &git2::Tree<'_>,
    theirs: &git2::Tree<'_>,
    overridden: &BTreeSet<String>,
) -> Result<Vec<Change>> {
    let (repo, plan, machine) = (cx.repo, cx.plan, cx.machine);
    let before = tree::effective(repo, head, machine, &plan.managed)?;
    let base = tree::effective(repo, base, machine, &plan.managed)?;
    let theirs = tree::effective(repo, theirs, machine, &plan.managed)?;
    let key = |s: Option<&tree::Stored>| s.map(|s| (s.oid, s.exec));
    let mut after = before.clone();
    for rel in base.keys().chain(theirs.keys()) {
        if key(base.get(rel)) == key(theirs.get(rel)) {
            continue;
        }
        match theirs.get(rel) {
            Some(t) => after.insert(rel.clone(), t.clone()),
            None => after.remove(rel),
        };
    }
    let rels: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut changes = BTreeMap::new();
    for rel in rels {
        let (b, a) = (before.get(rel), after.get(rel));
        if key(b) == key(a)
            || !wanted(rel, cx.only)
            || plan.ignore.is_ignored(rel, false)
            || cx.never.contains(rel)
            || plan.confinement.check_rel(rel).is_err()
        {
            continue;
        }
        let load = |s: Option<&tree::Stored>| -> Result<Option<Vec<u8>>> {
            s.map(|s| read_blob(repo, s.oid))
                .transpose()
                .map(|o| o.map(|b| plan.placeholders.to_shown(rel, &b).into_owned()))
        };
        let (old, new) = (load(b)?, load(a)?);
        let private = crate::private::by_path(rel).is_some()
            || [&old, &new]
                .into_iter()
                .flatten()
                .any(|c| is_private(rel, c));
        changes.insert(
            rel.clone(),
            Change {
                rel: rel.clone(),
                old,
                new,
                private,
                overridden: overridden.contains(rel),
            },
        );
    }
    Ok(changes.into_values().collect())
}

/// Whether git would call `bytes` binary: a NUL in the first 8000 bytes.
fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(8000)].contains(&0)
}

/// A line as shown: control characters other than tab escaped.
fn shown_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' && c != '\n' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The text of one change: a `diff ~/REL` header, then a unified diff (text), one line
/// (binary or private), or `new file` / `deleted` with the diff.
pub fn render_change(c: &Change, from: &str, to: &str) -> Result<String> {
    let mut out = String::new();
    let note = if c.overridden {
        " (overridden here: this machine only)"
    } else {
        ""
    };
    let what = match (&c.old, &c.new) {
        (None, Some(_)) => "new file",
        (Some(_), None) => "deleted",
        _ => "changed",
    };
    out.push_str(&format!("diff ~/{} ({what}){note}\n", c.rel));
    let (old, new) = (
        c.old.as_deref().unwrap_or_default(),
        c.new.as_deref().unwrap_or_default(),
    );
    if c.private {
        out.push_str("  private-looking content: not shown\n");
        return Ok(out);
    }
    if looks_binary(old) || looks_binary(new) {
        out.push_str(&format!(
            "  binary file: {} bytes -> {} bytes\n",
            old.len(),
            new.len()
        ));
        return Ok(out);
    }
    out.push_str(&format!("--- {from}/~/{}\n+++ {to}/~/{}\n", c.rel, c.rel));
    let mut opts = git2::DiffOptions::new();
    opts.context_lines(3);
    let patch = git2::Patch::from_buffers(old, None, new, None, Some(&mut opts))
        .map_err(Error::git("cannot compute a diff"))?;
    for h in 0..patch.num_hunks() {
        let (hunk, lines) = patch.hunk(h).map_err(Error::git("cannot compute a diff"))?;
        out.push_str(&shown_line(hunk.header()));
        if !hunk.header().ends_with(b"\n") {
            out.push('\n');
        }
        for l in 0..lines {
            let line = patch
                .line_in_hunk(h, l)
                .map_err(Error::git("cannot compute a diff"))?;
            let origin = line.origin();
            match origin {
                '+' | '-' | ' ' => {
                    out.push(origin);
                    out.push_str(&shown_line(line.content()));
                    if !line.content().ends_with(b"\n") {
                        out.push('\n');
                    }
                }
                _ => out.push_str("\\ No newline at end of file\n"),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(old: Option<&[u8]>, new: Option<&[u8]>) -> Change {
        Change {
            rel: ".zshrc".into(),
            old: old.map(<[u8]>::to_vec),
            new: new.map(<[u8]>::to_vec),
            private: false,
            overridden: false,
        }
    }

    #[test]
    fn text_is_a_unified_diff_and_binary_one_line() {
        let text =
            render_change(&change(Some(b"a\nb\n"), Some(b"a\nc\n")), "fleet", "here").unwrap();
        assert_eq!(
            text,
            "diff ~/.zshrc (changed)\n--- fleet/~/.zshrc\n+++ here/~/.zshrc\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
        );
        let bin = render_change(&change(Some(b"\0ab"), Some(b"\0abc")), "fleet", "here").unwrap();
        assert_eq!(
            bin,
            "diff ~/.zshrc (changed)\n  binary file: 3 bytes -> 4 bytes\n"
        );
        let new = render_change(&change(None, Some(b"x")), "fleet", "here").unwrap();
        assert!(new.starts_with("diff ~/.zshrc (new file)\n"), "{new}");
        assert!(new.ends_with("+x\n\\ No newline at end of file\n"), "{new}");
    }

    #[test]
    fn control_characters_are_escaped_and_private_content_never_shown() {
        let esc =
            render_change(&change(Some(b"a\n"), Some(b"\x1b]0;pwned\x07\n")), "f", "h").unwrap();
        assert!(esc.contains("+\\x1b]0;pwned\\x07\n"), "{esc}");
        let mut p = change(Some(b"a\n"), Some(b"-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        p.private = true;
        let shown = render_change(&p, "f", "h").unwrap();
        assert_eq!(
            shown,
            "diff ~/.zshrc (changed)\n  private-looking content: not shown\n"
        );
    }

    #[test]
    fn paths_select_files_and_what_is_inside_directories() {
        let only = vec![".config/app".to_string()];
        assert!(wanted(".config/app/x", &only));
        assert!(wanted(".config/app", &only));
        assert!(!wanted(".config/apple", &only));
        assert!(wanted(".zshrc", &[]));
    }
}

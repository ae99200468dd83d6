//! `fleetkey completions SHELL` and `fleetkey man`: both generated from the clap definitions in
//! [`crate::cli`], so they never drift from the real command line.

use crate::output::stdout as write_stdout;

use clap::CommandFactory;

use crate::cli::Args;
use crate::error::Result;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    write_stdout(&completion_script(shell))
}

/// The completion script for `shell`.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "fleetkey", &mut buf);
    buf
}

/// `fleetkey man [--out DIR]`: prints one page that holds every subcommand, or writes
/// `fleetkey.1` and one page per subcommand (`fleetkey-secrets-set.1`, …) into DIR.
pub fn man(out: Option<&std::path::Path>) -> Result<()> {
    let Some(dir) = out else {
        return write_stdout(&man_page());
    };
    crate::files::ensure_dir(dir)?;
    let pages = pages();
    for (name, roff) in &pages {
        crate::files::write_atomic(&dir.join(name), roff, 0o644)?;
    }
    crate::output::outln!(
        "fleetkey: wrote {} manual pages to {} (fleetkey.1 and one per subcommand)",
        pages.len(),
        dir.display()
    )?;
    crate::output::outln!(
        "  read one with `man -l {}/fleetkey.1`, or write them into a man1 directory on the manual path (e.g. --out ~/.local/share/man/man1) for `man fleetkey-secrets-set`",
        dir.display()
    )?;
    Ok(())
}

/// The built command line, as the pages see it (subcommands named `fleetkey-secrets-set`).
fn built() -> clap::Command {
    let mut cmd = Args::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Every page: `fleetkey.1` and one per subcommand at every depth, as (file name, roff).
pub fn pages() -> Vec<(String, Vec<u8>)> {
    fn walk(cmd: &clap::Command, out: &mut Vec<(String, Vec<u8>)>) {
        let man = clap_mangen::Man::new(cmd.clone());
        let mut buf = Vec::new();
        man.render(&mut buf)
            .expect("rendering into memory cannot fail");
        out.push((man.get_filename(), buf));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&built(), &mut out);
    out
}

/// One manual page that holds them all: fleetkey(1) followed by a section per subcommand, its
/// references to `fleetkey-NAME(1)` pointing to those sections (so none dangles when only this
/// page is installed).
pub fn man_page() -> Vec<u8> {
    let mut text = String::new();
    for (n, (file, roff)) in pages().into_iter().enumerate() {
        let roff = String::from_utf8(roff).expect("clap_mangen writes UTF-8");
        if n == 0 {
            text.push_str(&roff);
            continue;
        }
        let name = file.trim_end_matches(".1").to_uppercase();
        text.push_str(&format!(".SH \"{name}\"\n"));
        // The sub-page without its preamble and title, its sections one level down.
        let body = roff.split_once("\n.TH ").map(|(_, b)| b).unwrap_or(&roff);
        let body = body.split_once('\n').map(|(_, b)| b).unwrap_or_default();
        for line in body.lines() {
            match line.strip_prefix(".SH ") {
                Some(heading) => text.push_str(&format!(".SS {heading}\n")),
                None => {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    // A reference `fleetkey\-x(1)` names a section of this page.
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("(1)") {
        let before = &rest[..at];
        let word_start = before
            .rfind(|c: char| c.is_whitespace())
            .map(|i| i + 1)
            .unwrap_or(0);
        let is_ref = before[word_start..].starts_with("fleetkey\\-");
        out.push_str(before);
        if is_ref {
            out.push_str(" (below)");
        } else {
            out.push_str("(1)");
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_shell_gets_a_script_that_knows_the_subcommands() {
        for shell in clap_complete::Shell::value_variants() {
            let text = String::from_utf8(completion_script(*shell)).unwrap();
            for word in [
                "fleetkey",
                "agents",
                "secrets",
                "authorized-keys",
                "install",
            ] {
                assert!(text.contains(word), "{shell}: no {word:?}");
            }
        }
    }

    #[test]
    fn one_page_per_subcommand_and_the_single_page_has_no_dangling_reference() {
        let pages = pages();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "fleetkey.1",
            "fleetkey-init.1",
            "fleetkey-secrets.1",
            "fleetkey-secrets-set.1",
            "fleetkey-secrets-resolve.1",
            "fleetkey-agents-install.1",
        ] {
            assert!(names.contains(&want), "no {want} in {names:?}");
        }
        // Every page a page refers to exists.
        for (_, roff) in &pages {
            let text = String::from_utf8_lossy(roff);
            for word in text.split_whitespace().filter(|w| w.ends_with("(1)")) {
                let file = format!("{}.1", word.trim_end_matches("(1)").replace("\\-", "-"));
                assert!(names.contains(&file.as_str()), "{word} has no page");
            }
        }
        let single = String::from_utf8(man_page()).unwrap();
        assert!(
            !single.contains("fleetkey\\-init(1)"),
            "a dangling reference"
        );
        assert!(single.contains(".SH \"FLEETKEY-SECRETS-SET\""));
        assert!(single.contains("fleetkey\\-init (below)"));
        assert!(single.contains("allow\\-empty"));
    }

    #[test]
    fn the_man_page_is_roff_and_lists_the_subcommands() {
        let text = String::from_utf8(man_page()).unwrap();
        assert!(text.starts_with(".ie \\n(.g .ds Aq"), "{}", &text[..80]);
        assert!(text.contains(".TH fleetkey 1"), "{text}");
        for word in ["agents", "secrets", "revoke", "completions"] {
            assert!(text.contains(word), "no {word:?}");
        }
    }
}

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

/// Prints the manual page.
pub fn man() -> Result<()> {
    write_stdout(&man_page())
}

/// The manual page, as roff.
pub fn man_page() -> Vec<u8> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Args::command())
        .render(&mut buf)
        .expect("rendering into memory cannot fail");
    buf
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
    fn the_man_page_is_roff_and_lists_the_subcommands() {
        let text = String::from_utf8(man_page()).unwrap();
        assert!(text.starts_with(".ie \\n(.g .ds Aq"), "{}", &text[..80]);
        assert!(text.contains(".TH fleetkey 1"), "{text}");
        for word in ["agents", "secrets", "revoke", "completions"] {
            assert!(text.contains(word), "no {word:?}");
        }
    }
}

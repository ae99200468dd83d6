//! What commands print on stdout.
//!
//! Owns: the one way a command writes its output, where a closed pipe (`fleetkey status |
//! head -1`) ends the output quietly instead of panicking as `println!` would. Must never:
//! print a secret's value unless printing it is the command's job (`secrets get`, `export`).

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `out` and flushes, treating a closed pipe as success.
pub fn write_to(out: &mut impl Write, bytes: &[u8]) -> Result<()> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("cannot write to", Path::new("stdout"))(e))
        }
        _ => Ok(()),
    }
}

/// Writes `bytes` to stdout, treating a closed pipe as success.
pub fn stdout(bytes: &[u8]) -> Result<()> {
    write_to(&mut std::io::stdout().lock(), bytes)
}

/// `println!` for commands: formats a line and writes it with [`stdout`], returning its
/// `Result` (a closed pipe is success).
macro_rules! outln {
    () => {
        $crate::output::stdout(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::output::stdout(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}
pub(crate) use outln;

/// Asks `question` (ending in `[y/N]`) on stderr and reads one line from stdin: whether the
/// answer is "y" or "yes". The caller has checked that stdin is a terminal.
pub fn ask_yes(question: &str) -> crate::error::Result<bool> {
    use std::io::{BufRead, Write as _};
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(crate::error::Error::io(
            "cannot read the answer from",
            std::path::Path::new("stdin"),
        ))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader has gone away.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_ends_the_output_without_an_error() {
        assert!(write_to(&mut ClosedPipe, b"line\n").is_ok());
    }

    #[test]
    fn other_write_errors_are_reported() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let err = write_to(&mut Full, b"x").unwrap_err();
        assert_eq!(err.to_string(), "cannot write to stdout");
    }
}

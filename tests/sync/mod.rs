//! The sync engine end to end: real forges (git daemon, sshd) started by the tests on
//! 127.0.0.1, several machines (one HOME each) running the real binary.

mod chezmoi;
mod dotfiles;
mod faults;
mod paths;
mod soak;
mod tokens;
mod transport;
pub mod watch;

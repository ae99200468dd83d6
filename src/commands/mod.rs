//! The commands: each submodule turns one part of the command line into work on the modules
//! that own the concerns.

pub mod init;
pub mod secrets;
pub mod sync;
pub mod track;

//! The commands: each submodule turns one part of the command line into work on the modules
//! that own the concerns.

pub mod address;
pub mod agents;
pub mod approve;
pub mod authorized_keys;
pub mod config;
pub mod conflicts;
pub mod diff;
pub mod doctor;
pub mod fleet;
pub mod history;
pub mod init;
pub mod lifecycle;
pub mod manual;
pub mod remote;
pub mod secrets;
pub mod status;
pub mod sync;
pub mod track;
pub mod verify;

//! fleetkey's end-to-end tests: one binary, every module below, each test on fresh machines
//! (one HOME each) running the real `fleetkey` binary against real `age` and `git`.

mod util;

mod adversarial;
mod agents;
mod authority;
mod authorized_keys_cli;
mod carry;
mod chezmoi_init;
mod collect;
mod exports;
mod heal;
mod init_and_secrets;
mod lifecycle;
mod messages;
mod poke;
mod quickstart;
mod snapshots;
mod ssh_roles;
mod sshd;
mod status_doctor;
mod sync;
mod trust;

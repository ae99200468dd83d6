//! fleetkey's end-to-end tests: one binary, every module below, each test on fresh machines
//! (one HOME each) running the real `fleetkey` binary against real `age` and `git`.

mod util;

mod init_and_secrets;
mod sync;

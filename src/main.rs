//! The `fleetkey` binary: harden the process, then hand over to the library.

#![forbid(unsafe_code)]

fn main() {
    fleetkey::harden::at_start();
    std::process::exit(fleetkey::run());
}

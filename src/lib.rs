//! The `oxh` and `oxhd` binaries' shared code: daemon wiring and the command-line tools.
//! Everything of substance lives in the crates under `crates/`; this is argument parsing,
//! wiring and printing.

pub mod cli;
pub mod daemon;
pub mod file_copy;
pub mod file_daemon;

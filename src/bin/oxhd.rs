//! `oxhd`: the device daemon.

use clap::Parser;

fn main() {
    oxh_kal::keep_freed_memory(oxh_kal::MemoryRole::Server);
    let a = oxharmony::cli::OxhdArgs::parse();
    if let Err(e) = oxharmony::cli::run_daemon(&a.global, &a.up) {
        eprintln!("oxhd: {e:#}");
        std::process::exit(1);
    }
}

//! `oxh`: the oxharmony command line (and, through links, `hilog`, `param`, `hidumper`).

fn main() {
    oxh_kal::keep_freed_memory(oxh_kal::MemoryRole::Tool);
    match oxharmony::cli::main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

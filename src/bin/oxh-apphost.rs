//! `oxh-apphost`: the program every app process runs in its sandbox (see `oxh_ability::host`).

fn main() {
    oxh_kal::keep_freed_memory(oxh_kal::MemoryRole::Tool);
    if let Err(e) = oxh_ability::host::run() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

//! Builds `libhilog_ndk.z.so`, OpenHarmony's hilog NDK library under its own name, from
//! `src/log.c`: C can walk a `va_list`, stable Rust cannot, and a Rust cdylib does not export
//! the C functions it links. It sits beside the binaries (`target/<profile>/`), where the
//! daemon finds it for the app sandboxes; it calls into `liboxh_ndk.so`, which the app host
//! loads first.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/log.c");
    println!("cargo:rerun-if-changed=include/hilog/log.h");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liboxh_ndk.so");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let lib = out.join("libhilog_ndk.z.so");
    let mut cc = cc::Build::new()
        .include("include")
        .warnings(true)
        .pic(true)
        .get_compiler()
        .to_command();
    cc.args(["-shared", "-Wl,-soname,libhilog_ndk.z.so", "-o"])
        .arg(&lib)
        .arg("src/log.c");
    let st = cc
        .status()
        .expect("a C compiler (gcc or clang) for the NDK's log.c");
    assert!(st.success(), "compiling src/log.c failed");
    // <target>/<profile>/build/<pkg>-<hash>/out -> <target>/<profile>
    if let Some(profile_dir) = out.ancestors().nth(3) {
        let _ = std::fs::copy(&lib, profile_dir.join("libhilog_ndk.z.so"));
    }
}

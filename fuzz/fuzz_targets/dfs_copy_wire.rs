//! Cross-device copy's messages from a peer daemon: decoded against the limits, re-encoded
//! and decoded to the same message, each named path checked as a served path, and the
//! progress core fed the sizes a peer claims. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_dfs::copy::{MAX_FILES_PER_COPY, Progress, Wire};

fuzz_target!(|data: &[u8]| {
    let Ok(w) = Wire::decode(data) else {
        return;
    };
    assert_eq!(Wire::decode(&w.encode()).expect("an encoded message decodes"), w);
    match &w {
        Wire::Open { paths, .. } => {
            assert!(paths.len() <= MAX_FILES_PER_COPY);
            for p in paths {
                let _ = oxh_dfs::beneath::check(p);
            }
        }
        Wire::Opened(sizes) => {
            assert!(sizes.len() <= MAX_FILES_PER_COPY);
            let total = sizes
                .iter()
                .filter_map(|s| s.as_ref().ok())
                .fold(0u64, |a, b| a.saturating_add(*b));
            let mut p = Progress::new(total);
            for s in sizes.iter().filter_map(|s| s.as_ref().ok()) {
                let _ = p.advance(*s);
            }
            let _ = p.complete();
            assert!(p.processed() <= total);
        }
        _ => {}
    }
});

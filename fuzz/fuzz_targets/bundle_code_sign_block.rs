//! Fuzzes the code-signing block parser (OpenHarmony's code signatures): the input as a
//! code-signing block (header, segments, SignInfos, extensions, library table), then as the
//! property block of a signing block (its records walked to the code-signing one), and what
//! reads the parsed block (the code region's Merkle tree, the PKCS#7 of each signature).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_bundle::{codesign, signing};

fuzz_target!(|data: &[u8]| {
    codesign::fuzz_one(data);
    // An empty zip whose signing block holds `data` as its property block.
    let empty = [
        0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let Ok(z) = signing::zip_layout(&empty) else {
        return;
    };
    let file = signing::insert_block(&empty, &z, &[(signing::BLOCK_PROPERTY, data)]);
    if let Ok(z) = signing::zip_layout(&file)
        && let Ok(Some(b)) = signing::find_block(&file, &z)
        && let Ok(Some(csb)) = codesign::find(&file, &b)
    {
        let _ = codesign::hap_digest(&file, &csb.hap, b.start);
        for l in &csb.libs {
            let _ = codesign::verify_lib(l.name, &[], &l.info, &codesign::Expect::default());
        }
    }
});

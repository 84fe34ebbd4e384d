//! Fuzzes the signing-block parser and what reads its values: the input is used as the bytes
//! before a zip's end record (so the footer, headers and sub-blocks are fuzzed), then each
//! sub-block goes through the PKCS#7 parser/verifier and the profile parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_bundle::signing;

fuzz_target!(|data: &[u8]| {
    // data as the whole "entries + block + central directory" region of an empty-CD zip.
    let mut file = data.to_vec();
    let cd = file.len() as u32;
    file.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0]);
    file.extend_from_slice(&cd.to_le_bytes());
    file.extend_from_slice(&[0, 0]);
    if let Ok(z) = signing::zip_layout(&file)
        && let Ok(Some(b)) = signing::find_block(&file, &z)
    {
        let _ = signing::content_digest(&file, &z, b.start, &b.optional_values(&file));
        for sb in &b.blocks {
            let v = &file[sb.offset..sb.offset + sb.len];
            oxh_bundle::pkcs7::fuzz_one(v);
            let _ = oxh_bundle::verify::parse_profile(v);
            let _ = signing::parse_signed_content(v);
        }
    }
    oxh_bundle::pkcs7::fuzz_one(data);
});

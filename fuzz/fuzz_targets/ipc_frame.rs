//! Fuzzes the daemon's IPC frame decoder with arbitrary bytes, fed in arbitrary chunks, and the
//! request/reply body parsers on whatever frames come out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_ipc::frame::{
    Decoded, FrameDecoder, MAX_SKIP, MAX_TRANSACTION, parse_reply, parse_request,
};

fuzz_target!(|data: &[u8]| {
    // First byte picks the chunk size, so that split reads are explored too.
    let (chunk, rest) = match data.split_first() {
        Some((c, r)) => (usize::from(*c).max(1), r),
        None => return,
    };
    let mut dec = FrameDecoder::new();
    for piece in rest.chunks(chunk) {
        dec.extend(piece);
        loop {
            match dec.decode_next() {
                Ok(Some(Decoded::Frame(f))) => {
                    assert!(f.body.len() <= MAX_TRANSACTION);
                    let _ = parse_request(&f.body);
                    let _ = parse_reply(&f.body);
                }
                Ok(Some(Decoded::Oversize { len, .. })) => assert!(len <= MAX_SKIP),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});

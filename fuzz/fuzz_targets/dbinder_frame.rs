//! Fuzzes dbinder frames: the input is what a trusted peer writes on a remote-call stream
//! (a call with the caller's token state, a call that carries a stream (a service
//! connection, whose stream then goes on as relayed bytes nobody here parses), a reply, a
//! token push). A frame that decodes must
//! encode back to itself; the stream reader must stop at the frame limit without buffering
//! past it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_softbus::dbinder::{DbFrame, MAX_DBINDER_FRAME, fuzz_decode_frame};

fuzz_target!(|data: &[u8]| {
    if let Some(f) = fuzz_decode_frame(data) {
        let again = postcard::to_allocvec(&f).expect("encode");
        assert_eq!(fuzz_decode_frame(&again), Some(f));
    }
    oxh_fuzz::read_frames::<DbFrame>(data, MAX_DBINDER_FRAME);
});

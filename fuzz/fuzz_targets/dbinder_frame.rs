//! Fuzzes dbinder frames: the input is what a trusted peer writes on a remote-call stream
//! (a call with the caller's token state, a reply, a token push). A frame that decodes must
//! encode back to itself; the stream reader must stop at the frame limit without buffering
//! past it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_softbus::dbinder::{DbFrame, MAX_DBINDER_FRAME, fuzz_decode_frame};
use oxh_softbus::transport::wire::{WireError, read_frame};

fuzz_target!(|data: &[u8]| {
    if let Some(f) = fuzz_decode_frame(data) {
        let again = postcard::to_allocvec(&f).expect("encode");
        assert_eq!(fuzz_decode_frame(&again), Some(f));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut r = data;
        for _ in 0..64 {
            match read_frame::<_, DbFrame>(&mut r, MAX_DBINDER_FRAME).await {
                Ok(Some(_)) => {}
                Err(WireError::TooLarge { len, max }) => {
                    assert!(len > max);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
    });
});

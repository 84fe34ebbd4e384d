//! Fuzzes the soft bus control stream: the input is what a trusted peer writes on it. The
//! control-message decoder gets the whole input and each frame body in it (`len:u32 LE |
//! body`, within the control-frame limit); the bus's frame reader reads the input as a
//! stream. A message that decodes must encode back to something that decodes to the same
//! encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_softbus::transport::wire::MAX_CONTROL_FRAME;
use oxh_softbus::transport::{NodeInfo, fuzz_decode_control};

fuzz_target!(|data: &[u8]| {
    // The body decoder on the whole input.
    if let Some(again) = fuzz_decode_control(data) {
        assert_eq!(fuzz_decode_control(&again).as_deref(), Some(&again[..]));
    }
    // The bodies of the frames in the input, split as the stream framing does.
    let mut rest = data;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > MAX_CONTROL_FRAME || len > rest.len() - 4 {
            break;
        }
        let _ = fuzz_decode_control(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    // The bus's own frame reader on the input as a stream (with the device info that hello
    // and info updates carry as the body).
    oxh_fuzz::read_frames::<NodeInfo>(data, MAX_CONTROL_FRAME);
});

//! Fuzzes hdc's packet decoder with arbitrary bytes in arbitrary chunks, and the message
//! decoders (requests, control messages, exits, hellos) on every payload that comes out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_hdc::bytes::BytesMut;
use oxh_hdc::frame::{Kind, MAX_PAYLOAD, decode};
use oxh_hdc::proto::{Ctrl, Exit, Hello, Request, from_bytes};

fuzz_target!(|data: &[u8]| {
    let (chunk, rest) = match data.split_first() {
        Some((c, r)) => (usize::from(*c).max(1), r),
        None => return,
    };
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decode(&mut buf) {
                Ok(Some(p)) => {
                    assert!(p.payload.len() <= MAX_PAYLOAD);
                    assert_eq!(
                        p.channel == 0,
                        matches!(p.kind, Kind::Ping | Kind::Pong | Kind::Hello)
                    );
                    let b = &p.payload[..];
                    let _ = from_bytes::<Request>(b);
                    let _ = from_bytes::<Ctrl>(b);
                    let _ = from_bytes::<Exit>(b);
                    let _ = Hello::from_handshake(b);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});

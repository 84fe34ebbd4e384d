//! Fuzzes the host server's OpenHarmony client protocol: length-prefixed bodies in arbitrary
//! chunks, then each body as a client handshake, a command line and a tagged message of our
//! extension, both ways. None may panic, and a body is never larger than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_hdc::bytes::BytesMut;
use oxh_hdc::channel::{self, MAX_BODY, ToClient, ToServer};
use oxh_hdc::command;

fuzz_target!(|data: &[u8]| {
    let (chunk, rest) = match data.split_first() {
        Some((c, r)) => (usize::from(*c).max(1), r),
        None => return,
    };
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match channel::take_body(&mut buf) {
                Ok(Some(b)) => {
                    assert!(b.len() <= MAX_BODY);
                    let _ = channel::parse_client_handshake(&b, 7);
                    let _ = channel::parse_server_handshake(&b);
                    let line = channel::command_text(&b);
                    let _ = command::parse(&line);
                    if let Ok(m) = ToServer::decode(&b) {
                        assert_eq!(ToServer::decode(&m.encode()), Ok(m));
                    }
                    if let Ok(m) = ToClient::decode(&b) {
                        assert_eq!(ToClient::decode(&m.encode()), Ok(m));
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});

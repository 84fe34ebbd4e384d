//! Fuzzes the binding message decoder (device_auth's peer-to-peer binding, carried on the
//! binding QUIC stream): anything that decodes must encode back to the same bytes, since the
//! frame is `version | postcard` with nothing left over.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_devauth::decode_bind_msg;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode_bind_msg(data) {
        let _ = m.kind();
        let again = m.encode();
        assert_eq!(
            decode_bind_msg(&again).expect("re-encoded message decodes"),
            m
        );
    }
});

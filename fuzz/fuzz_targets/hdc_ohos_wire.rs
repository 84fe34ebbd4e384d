//! Fuzzes the decoders of OpenHarmony's hdc session wire (oxh_hdc::ohos): packets and the
//! protobuf-style structs inside them; then every handshake that decodes drives the device's
//! authentication state machine (TLV parsing, every step) and the oxharmony hello reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_hdc::bytes::BytesMut;
use oxh_hdc::ohos::{SessionHandShake, decode_packet};
use oxh_hdc::ohos_auth::{DeviceAuth, DevicePolicy, KeyVerdict, tlv_parse};

struct Policy(u8);

impl DevicePolicy for Policy {
    fn bypass(&self) -> bool {
        self.0 & 1 == 1
    }
    fn verdict(&mut self, _pem: &str, _host: &str) -> KeyVerdict {
        [KeyVerdict::Known, KeyVerdict::Unknown, KeyVerdict::Denied][usize::from(self.0 >> 1) % 3]
    }
    fn verify(&self, _pem: &str, _token: &[u8], sig: &str) -> bool {
        sig.len() % 2 == 0
    }
    fn token(&mut self) -> String {
        "0123456789abcdef0123".into()
    }
    fn device_name(&self) -> String {
        "fuzz".into()
    }
    fn features(&self) -> Vec<String> {
        Vec::new()
    }
}

fuzz_target!(|data: &[u8]| {
    oxh_hdc::ohos::fuzz_one(data);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut auth = DeviceAuth::default();
    let mut policy = Policy(mode);
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(p)) = decode_packet(&mut buf) {
        let _ = oxh_hdc::proto::Hello::from_handshake(&p.payload);
        if let Ok(h) = SessionHandShake::decode(&p.payload) {
            let _ = tlv_parse(&h.buf);
            let _ = auth.on_handshake(h, &mut policy);
        }
    }
});

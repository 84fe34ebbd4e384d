//! Fuzzes the decoders of OpenHarmony's hdc session wire (oxh_hdc::ohos): packets and the
//! protobuf-style structs inside them; then every handshake that decodes drives both
//! authentication state machines (TLV parsing, every step, the TLS-PSK steps with
//! OpenSSL's real engines fed the bufs as TLS flights) and the oxharmony hello reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_hdc::bytes::BytesMut;
use oxh_hdc::ohos::{SessionHandShake, decode_packet};
use oxh_hdc::ohos_auth::{
    Action, DeviceAuth, DevicePolicy, FEATURE_ENCRYPT_TCP, HostAuth, HostPolicy, KeyVerdict,
    tlv_parse,
};
use oxh_hdc::ohos_tls::{PSK_LEN, PskTls, Role, TlsEngine};

/// The mode byte: bit 0 bypass, bits 1-2 the verdict, bit 3 encryption required, bit 4
/// TLS-PSK offered.
struct Policy(u8);

impl DevicePolicy for Policy {
    fn encryption_required(&self) -> bool {
        self.0 & 8 != 0
    }
    fn offers_psk(&self) -> bool {
        self.0 & 16 != 0
    }
    fn psk_session(&mut self, _pem: &str) -> Result<(String, Box<dyn TlsEngine>), String> {
        let t = PskTls::new(Role::Server, &[0x11; PSK_LEN]).map_err(|e| e.to_string())?;
        Ok(("QUJD".repeat(128), Box::new(t)))
    }
    fn bypass(&self) -> bool {
        self.0 & 1 == 1
    }
    fn verdict(&mut self, _pem: &str, _host: &str) -> KeyVerdict {
        [KeyVerdict::Known, KeyVerdict::Unknown, KeyVerdict::Denied]
            [usize::from((self.0 >> 1) & 3) % 3]
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

struct Host;

impl HostPolicy for Host {
    fn public_key_message(&self) -> String {
        "fuzz\x0cPEM".into()
    }
    fn sign(&self, _token: &[u8]) -> String {
        "sig".into()
    }
    fn psk_client(&self, _encrypted: &[u8]) -> Result<Box<dyn TlsEngine>, String> {
        let t = PskTls::new(Role::Client, &[0x11; PSK_LEN]).map_err(|e| e.to_string())?;
        Ok(Box::new(t))
    }
}

/// After a switch, the remaining bytes go through the engine as records.
fn drive(actions: Vec<Action>, rest: &[u8]) {
    for a in actions {
        if let Action::Switch(mut t) = a {
            t.feed(rest);
            let _ = t.decrypt(&mut BytesMut::new());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    oxh_hdc::ohos::fuzz_one(data);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut auth = DeviceAuth::default();
    let mut policy = Policy(mode);
    let (mut host, _) = HostAuth::start(1, "fuzz", &[FEATURE_ENCRYPT_TCP]);
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(p)) = decode_packet(&mut buf) {
        let _ = oxh_hdc::proto::Hello::from_handshake(&p.payload);
        if let Ok(h) = SessionHandShake::decode(&p.payload) {
            let _ = tlv_parse(&h.buf);
            if let Ok(a) = auth.on_handshake(h.clone(), &mut policy) {
                drive(a, &buf);
            }
            if let Ok(a) = host.on_handshake(h, &Host) {
                drive(a, &buf);
            }
        }
    }
});

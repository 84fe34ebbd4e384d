//! Fuzzes the binding state machines with arbitrary frames from the peer: a target session
//! (with a PIN issued, as when the user shows one) and an initiator session each get the same
//! sequence of frames. The input is split into frames by a length byte before each one. No
//! frame sequence may panic, and none may make either side report success, since that needs
//! the PIN-keyed PAKE and a signature by the peer's key.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use oxh_devauth::{Channel, Initiator, LocalDevice, PinManager, Progress, Target};
use std::time::Duration;

fn device(seed: u8, name: &str) -> (LocalDevice, [u8; 32]) {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let public = key.verifying_key().to_bytes();
    let advert_key = oxh_devauth::AdvertKey([seed ^ 0x5a; 32]);
    (
        LocalDevice::new(key, advert_key, name, "phone", 0x0E),
        public,
    )
}

fn frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((&n, rest)) = data.split_first() {
        let n = usize::from(n).min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
        if out.len() >= 16 {
            break;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let ((t_dev, t_pub), (i_dev, i_pub)) = (device(1, "target"), device(2, "initiator"));
    let exporter = [9u8; 32];
    let now = Duration::from_secs(1);

    let mut pins = PinManager::new();
    let pin = pins.issue(now).expect("a PIN");
    let mut target = Target::new_seeded(
        t_dev,
        Channel {
            exporter,
            peer_key: i_pub,
        },
        now,
        [3; 32],
    );
    let (mut initiator, _start) = Initiator::start_seeded(
        i_dev,
        Channel {
            exporter,
            peer_key: t_pub,
        },
        pin,
        now,
        [4; 32],
    );
    for f in frames(data) {
        let st = target.handle(f, now, &mut pins);
        assert!(
            !matches!(st.progress, Progress::Bound(_)),
            "target bound: {st:?}"
        );
        let si = initiator.handle(f, now);
        assert!(
            !matches!(si.progress, Progress::Bound(_)),
            "initiator bound: {si:?}"
        );
    }
});

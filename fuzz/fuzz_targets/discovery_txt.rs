//! Fuzzes the discovery advert decoder on TXT records as mDNS carries them: the input is
//! DNS TXT wire format (a length byte, then that many bytes, repeated), each string split at
//! its first `=` into key and value (no `=`: a key without value), as mdns-sd hands them to us.
//! An advert that decodes must survive its own TXT form unchanged, and its id, resolved as a
//! bound peer resolves it, must only ever resolve to a device whose key derives that id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_devauth::AdvertKey;
use oxh_softbus::discovery::{Advert, AdvertId, EPOCH_SKEW, Resolver};

/// A bound device's key and the epoch the resolver runs in.
const KEY: AdvertKey = AdvertKey([0x42; 32]);
const EPOCH: u64 = 1_978_000;

fuzz_target!(|data: &[u8]| {
    let mut strings = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        strings.push(&tail[..n]);
        rest = &tail[n..];
    }
    let entries: Vec<(&str, Option<&[u8]>)> = strings
        .iter()
        .filter_map(|s| {
            let (k, v) = match s.iter().position(|&b| b == b'=') {
                Some(i) => (&s[..i], Some(&s[i + 1..])),
                None => (&s[..], None),
            };
            Some((std::str::from_utf8(k).ok()?, v))
        })
        .collect();
    if let Ok(a) = Advert::from_txt(entries) {
        let txt = a.to_txt();
        for (k, v) in &txt {
            assert!(k.len() + 1 + v.len() <= 255, "TXT string too long: {k}={v}");
        }
        let back = Advert::from_txt(txt.iter().map(|(k, v)| (k.as_str(), Some(v.as_bytes()))))
            .expect("our own TXT record decodes");
        assert_eq!(back, a);
        let r = Resolver::new(EPOCH, [("bound", KEY)]);
        if r.resolve(&a.id).is_some() {
            let ours = (EPOCH - EPOCH_SKEW..=EPOCH + EPOCH_SKEW)
                .any(|e| AdvertId::derive(&KEY, e) == a.id);
            assert!(ours, "{:?} resolved without being the key's id", a.id);
        }
    }
});

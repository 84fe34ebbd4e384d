//! The KV sync wire decoder and the sync engine behind it: arbitrary bytes from a peer, cut
//! into fragments, joined, decoded, and handed to a sync engine over an in-memory replica.
//! Nothing may panic, and a message the engine takes must leave the replica usable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_kvstore::limits::{SecurityLevel, StoreType};
use oxh_kvstore::sync::{MemReplica, Replica, SyncConfig, SyncEngine, SyncMode};
use oxh_kvstore::wire::{self, Reassembler, StoreDesc};

fuzz_target!(|data: &[u8]| {
    let _ = wire::decode(data);
    let desc = StoreDesc {
        bundle: "com.example".into(),
        store_id: "s".into(),
        kind: StoreType::SingleVersion,
        level: SecurityLevel::S1,
    };
    let mut eng = SyncEngine::new(desc, 3, SyncConfig::default());
    let mut rep = MemReplica::new("me", [1; 16], false);
    rep.put(b"k", Some(b"v".to_vec()), 1_000);
    let mut out = Vec::new();
    // A round of our own is running, so replies to it are handled too.
    eng.sync(&mut rep, "peer", SyncMode::PushPull, 0, &mut out);
    let mut r = Reassembler::default();
    let mut now = 0u64;
    // Each fragment: one length byte, then that many bytes.
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        let (frag, t) = tail.split_at(n);
        rest = t;
        if let Ok(Some(env)) = r.push(frag) {
            out.clear();
            eng.handle(&mut rep, "peer", env.msg, now, &mut out);
            now += 700;
            eng.tick(&mut rep, now, &mut out);
        }
    }
    let _ = rep.changes_since(0, "", 10, 1 << 20);
});

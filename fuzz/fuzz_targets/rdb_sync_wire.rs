//! The relational store's sync messages from a peer: arbitrary bytes cut into fragments of
//! the data service's session, joined on the relational store's channel, decoded, and the
//! sync messages handed to the sync engine over a real store with a distributed table.
//! Nothing may panic, and the store must still answer afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_kvstore::limits::{SecurityLevel as KvLevel, StoreType};
use oxh_kvstore::sync::{SyncConfig, SyncEngine, SyncMode};
use oxh_kvstore::wire::{Frame, Reassembler, StoreDesc};
use oxh_rdb::sync::{RdbMsg, Side, decode};
use oxh_rdb::{RdbStore, SecurityLevel, StoreConfig};
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    store: RdbStore,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = StoreConfig::new("fuzz.db", SecurityLevel::S1);
        let store = RdbStore::open(dir.path(), &cfg, "me").expect("store");
        store
            .execute("CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT)", &[])
            .expect("table");
        store
            .set_distributed_tables(&["note"])
            .expect("distributed");
        store
            .execute("INSERT INTO note VALUES (1, 'x')", &[])
            .expect("row");
        Fixture { _dir: dir, store }
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = decode(data);
    let store = &fixture().store;
    let desc = StoreDesc {
        bundle: "com.example".into(),
        store_id: "fuzz.db".into(),
        kind: StoreType::SingleVersion,
        level: KvLevel::S1,
    };
    let mut eng = SyncEngine::new(desc, 3, SyncConfig::default());
    let mut side = Side::new(store, None).expect("side");
    let mut out = Vec::new();
    eng.sync(&mut side, "peer", SyncMode::PushPull, 0, &mut out);
    let mut r = Reassembler::default();
    let mut now = 0u64;
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        let (frag, t) = tail.split_at(n);
        rest = t;
        if let Ok(Some(Frame::Other(_, bytes))) = r.push_frame(frag)
            && let Ok(RdbMsg::Sync { msg, .. }) = decode(&bytes)
        {
            out.clear();
            eng.handle(&mut side, "peer", msg, now, &mut out);
            now += 700;
            eng.tick(&mut side, now, &mut out);
        }
    }
    store.changes_since(0, 10).expect("the store still answers");
});

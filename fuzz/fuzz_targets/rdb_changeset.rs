//! A relational store changeset from a peer: arbitrary bytes decoded, and what decodes
//! applied to a store with a distributed table. Nothing may panic; a refused changeset must
//! leave the store as it was, and the store must still answer afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_rdb::{Changeset, RdbStore, SecurityLevel, StoreConfig};
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
            .execute(
                "CREATE TABLE note(id INTEGER, part TEXT, title TEXT, n REAL, PRIMARY KEY (id, part))",
                &[],
            )
            .expect("table");
        store.set_distributed_tables(&["note"]).expect("distributed");
        Fixture { _dir: dir, store }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(cs) = Changeset::decode(data) else {
        return;
    };
    let s = &fixture().store;
    let before = s.changes_since(0, usize::MAX).expect("read");
    if s.apply_changeset(&cs).is_err() {
        assert_eq!(s.changes_since(0, usize::MAX).expect("read"), before);
    }
    // Applying it again changes nothing more.
    if let Ok(again) = s.apply_changeset(&cs) {
        assert!(again.is_empty(), "{again:?}");
    }
});

//! The auto-sync tick policy: on each tick of the service's driver, which online peers a
//! store pushes its new local writes to, when those writes count as handed over, and when
//! tombstones are collected. Pure: it reads the engine and decides; the driver acts.

use super::SyncEngine;

/// Tombstones are collected on every this many ticks of the driver (10 s at the service's
/// 50 ms `TICK`).
pub const GC_EVERY_TICKS: u64 = 200;

/// What tick `n` of the driver does for one store, decided by [`plan_tick`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickPlan {
    /// Online peers to start a [`super::SyncMode::Push`] round with, in the order given.
    pub push: Vec<String>,
    /// Every online peer got a round for the store's writes: its dirty mark is cleared.
    pub clear_dirty: bool,
    /// Collect the tombstones every trusted device has seen.
    pub gc: bool,
}

/// The tick policy, run after [`SyncEngine::tick`] on tick `n`. Auto sync is batched: a store
/// with `auto_sync` and writes since its last push (`dirty`) starts one push round with each
/// peer in `online` that it has no round with; a peer still busy gets the rest in its next
/// round, so the store stays dirty until every online peer got a round (with no peer online
/// nothing is owed: a device that comes online is caught up by a push-pull round).
pub fn plan_tick(
    engine: &SyncEngine,
    n: u64,
    auto_sync: bool,
    dirty: bool,
    online: &[String],
) -> TickPlan {
    let mut plan = TickPlan {
        gc: n.is_multiple_of(GC_EVERY_TICKS),
        ..TickPlan::default()
    };
    if auto_sync && dirty {
        plan.push = online
            .iter()
            .filter(|p| !engine.busy_with(p))
            .cloned()
            .collect();
        plan.clear_dirty = plan.push.len() == online.len();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{SecurityLevel, StoreType};
    use crate::sync::{MemReplica, SyncConfig, SyncMode};
    use crate::wire::StoreDesc;

    /// The driver's tick period in virtual ms (the service's `TICK`).
    const TICK_MS: u64 = 50;

    fn engine() -> SyncEngine {
        let desc = StoreDesc {
            bundle: "com.example".into(),
            store_id: "s1".into(),
            kind: StoreType::SingleVersion,
            level: SecurityLevel::S1,
        };
        let cfg = SyncConfig {
            rto_ms: 500,
            timeout_ms: 2_000,
            ..SyncConfig::default()
        };
        SyncEngine::new(desc, 1, cfg)
    }

    fn peers(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    /// Runs the driver's tick `n` at virtual time `n * TICK_MS` as the service does: the
    /// engine's tick, the plan, its pushes; returns the plan.
    fn tick(
        e: &mut SyncEngine,
        r: &mut MemReplica,
        n: u64,
        dirty: &mut bool,
        online: &[String],
    ) -> TickPlan {
        let now = n * TICK_MS;
        let mut out = Vec::new();
        e.tick(r, now, &mut out);
        let plan = plan_tick(e, n, true, *dirty, online);
        for p in &plan.push {
            e.sync(r, p, SyncMode::Push, now, &mut out);
        }
        if plan.clear_dirty {
            *dirty = false;
        }
        plan
    }

    #[test]
    fn nothing_to_push_without_auto_sync_or_writes() {
        let e = engine();
        let online = peers(&["b", "c"]);
        assert_eq!(plan_tick(&e, 1, false, true, &online), TickPlan::default());
        assert_eq!(plan_tick(&e, 1, true, false, &online), TickPlan::default());
    }

    #[test]
    fn a_busy_peer_gets_its_push_in_its_next_round() {
        let mut e = engine();
        let mut r = MemReplica::new("a", [1; 16], false);
        let online = peers(&["b", "c"]);
        // A round with b runs (nobody answers in this test): tick 1 pushes to c only, and the
        // writes stay owed to b.
        e.sync(&mut r, "b", SyncMode::PushPull, 0, &mut Vec::new());
        r.put(b"k", Some(b"v".to_vec()), 0);
        let mut dirty = true;
        let p = tick(&mut e, &mut r, 1, &mut dirty, &online);
        assert_eq!((p.push, p.clear_dirty), (peers(&["c"]), false));
        // Both busy until b's round times out (2 s after t = 0: tick 40), then b gets its push.
        for n in 2..40 {
            let p = tick(&mut e, &mut r, n, &mut dirty, &online);
            assert_eq!((p.push, p.clear_dirty), (vec![], false), "tick {n}");
        }
        let p = tick(&mut e, &mut r, 40, &mut dirty, &online);
        assert_eq!((p.push, p.clear_dirty), (peers(&["b"]), false));
        assert!(dirty);
    }

    #[test]
    fn the_store_is_clean_once_every_online_peer_got_a_round() {
        let mut e = engine();
        let mut r = MemReplica::new("a", [1; 16], false);
        let online = peers(&["b", "c"]);
        for p in ["b", "c"] {
            e.sync(&mut r, p, SyncMode::PushPull, 0, &mut Vec::new());
        }
        r.put(b"k", Some(b"v".to_vec()), 0);
        let mut dirty = true;
        for n in 1..40 {
            let p = tick(&mut e, &mut r, n, &mut dirty, &online);
            assert_eq!((p.push, p.clear_dirty), (vec![], false), "tick {n}");
        }
        // Both rounds time out at tick 40 (2 s): one push round each, and nothing is owed.
        let p = tick(&mut e, &mut r, 40, &mut dirty, &online);
        assert_eq!((p.push, p.clear_dirty), (peers(&["b", "c"]), true));
        assert!(!dirty && e.busy_with("b") && e.busy_with("c"));
        // Clean: the next ticks start nothing.
        let p = tick(&mut e, &mut r, 41, &mut dirty, &online);
        assert_eq!(p, TickPlan::default());
    }

    #[test]
    fn with_no_peer_online_the_writes_are_owed_to_nobody() {
        let e = engine();
        let p = plan_tick(&e, 7, true, true, &[]);
        assert_eq!((p.push, p.clear_dirty), (vec![], true));
    }

    #[test]
    fn tombstones_are_collected_every_200_ticks() {
        let e = engine();
        let gc: Vec<u64> = (1..=600)
            .filter(|&n| plan_tick(&e, n, false, false, &[]).gc)
            .collect();
        assert_eq!(gc, vec![200, 400, 600]);
    }
}

//! Durability: an acknowledged `persist.*` write survives `kill -9` of the daemon.

use crate::common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_1000_concurrent_persist_sets_loses_no_acknowledged_write() {
    const CALLS: usize = 1000;
    const CONNS: usize = 8;
    let mut dev = TestDevice::start();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let (first_acks_tx, mut first_acks_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = Vec::new();
    for c in 0..CONNS {
        let sdk = dev.sdk().await;
        for i in (c..CALLS).step_by(CONNS) {
            let sdk = sdk.clone();
            let acked = acked.clone();
            let done = done.clone();
            let tx = first_acks_tx.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("persist.crash.k{i}");
                let value = format!("v{i}");
                let r = sdk.param().set(&key, &value).await;
                done.fetch_add(1, Ordering::Relaxed);
                if r.is_ok() {
                    acked.lock().unwrap().push((key, value));
                    let _ = tx.send(());
                }
            }));
        }
    }
    drop(first_acks_tx);
    // Kill once a good share of the calls has been acknowledged, while others are in flight.
    within("100 acknowledged writes", Duration::from_secs(60), async {
        for _ in 0..100 {
            first_acks_rx.recv().await.expect("calls still running");
        }
    })
    .await;
    dev.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), CALLS, "every call returned");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 100, "{} acknowledged", acked.len());
    eprintln!(
        "{} of {CALLS} sets acknowledged before kill -9",
        acked.len()
    );

    dev.restart();
    let sdk = dev.sdk().await;
    let all = sdk.param().list("persist.crash", true).await.unwrap();
    let stored: std::collections::HashMap<_, _> = all.into_iter().collect();
    for (k, v) in &acked {
        assert_eq!(
            stored.get(k),
            Some(v),
            "acknowledged write {k}={v} survived kill -9"
        );
    }
}

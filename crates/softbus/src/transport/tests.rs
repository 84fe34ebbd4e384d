//! The bus over loopback: trust, online/offline, info updates, simultaneous dials.

use super::*;
use std::collections::HashSet;
use support::node;

struct Keys(Mutex<HashSet<[u8; 32]>>);
impl TrustView for Keys {
    fn is_trusted(&self, key: &[u8; 32]) -> bool {
        self.0.lock().unwrap().contains(key)
    }
}

struct Dev {
    bus: Arc<Bus>,
    trust: Arc<Keys>,
    key: [u8; 32],
    _ch: BusChannels,
}

fn dev(name: &str, seed: u8) -> Dev {
    let sk = SigningKey::from_bytes(&[seed; 32]);
    let key = sk.verifying_key().to_bytes();
    let trust = Arc::new(Keys(Mutex::new(HashSet::new())));
    let cfg = BusConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        heartbeat: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(500),
    };
    let (bus, ch) = Bus::start(&cfg, sk, node(name), trust.clone()).unwrap();
    Dev {
        bus,
        trust,
        key,
        _ch: ch,
    }
}

async fn next_event(rx: &mut broadcast::Receiver<BusEvent>) -> BusEvent {
    support::within_5s(rx.recv()).await.expect("channel open")
}

#[tokio::test]
async fn trusted_pair_goes_online_then_offline() {
    let a = dev("a", 1);
    // b lives on its own runtime, so that dropping the runtime makes it vanish without a
    // goodbye, as a crashed or unplugged device does.
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let a_key = a.key;
    let th = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let b = rt.block_on(async { dev("b", 2) });
        b.trust.0.lock().unwrap().insert(a_key);
        tx.send((b.key, b.bus.local_addr().unwrap(), b.bus.clone()))
            .unwrap();
        let _ = stop_rx.recv();
        drop(rt);
    });
    let (b_key, b_addr, b_bus) = rx.recv().unwrap();
    a.trust.0.lock().unwrap().insert(b_key);
    let mut ea = a.bus.subscribe();
    let mut eb = b_bus.subscribe();
    let info = a.bus.connect(b_addr, Some(b_key)).await.unwrap();
    assert_eq!(info.name, "b");
    assert!(matches!(next_event(&mut ea).await, BusEvent::Online(i) if i.name == "b"));
    assert!(matches!(next_event(&mut eb).await, BusEvent::Online(i) if i.name == "a"));
    assert_eq!(b_bus.local_info().listen_port, b_addr.port());
    // Info changes reach the peer.
    let b2 = b_bus.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(b2.update_local_info(|i| i.name = "b2".into()));
        let _ = done_tx.send(());
    });
    let ev = next_event(&mut ea).await;
    assert!(
        matches!(ev, BusEvent::InfoChanged(ref i) if i.name == "b2"),
        "{ev:?}"
    );
    let _ = done_rx.await;
    // b vanishes: a sees OFFLINE after the idle timeout (500 ms here).
    let t = std::time::Instant::now();
    stop_tx.send(()).unwrap();
    th.join().unwrap();
    let ev = next_event(&mut ea).await;
    assert!(
        matches!(ev, BusEvent::Offline(ref i) if i.name == "b2"),
        "{ev:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(a.bus.online().is_empty());
}

#[tokio::test]
async fn untrusted_devices_are_refused_both_ways() {
    let a = dev("a", 3);
    let b = dev("b", 4);
    // a trusts b, b does not trust a: b refuses the connection after the handshake.
    a.trust.0.lock().unwrap().insert(b.key);
    let e = a
        .bus
        .connect(b.bus.local_addr().unwrap(), Some(b.key))
        .await;
    assert!(matches!(e, Err(BusError::Refused(_))), "{:?}", e.err());
    assert!(b.bus.online().is_empty());
    assert!(a.bus.online().is_empty());
    // c trusts nobody; a trusts c: c refuses a's certificate itself.
    let c = dev("c", 5);
    a.trust.0.lock().unwrap().insert(c.key);
    let e = c.bus.connect(a.bus.local_addr().unwrap(), None).await;
    assert!(matches!(e, Err(BusError::Untrusted(_))), "{:?}", e.err());
    // Pinning another key than the server's fails in the TLS handshake.
    c.trust.0.lock().unwrap().insert(a.key);
    let e = c
        .bus
        .connect(a.bus.local_addr().unwrap(), Some(b.key))
        .await;
    assert!(matches!(e, Err(BusError::Connect { .. })), "{:?}", e.err());
    // And with the right pin it works.
    c.bus
        .connect(a.bus.local_addr().unwrap(), Some(a.key))
        .await
        .unwrap();
}

#[tokio::test]
async fn simultaneous_dials_converge_on_one_connection() {
    // Several rounds: which connection each side registers first varies run to run.
    for round in 0..8u8 {
        let a = dev("a", 6 + 2 * round);
        let b = dev("b", 7 + 2 * round);
        a.trust.0.lock().unwrap().insert(b.key);
        b.trust.0.lock().unwrap().insert(a.key);
        let (mut ea, mut eb) = (a.bus.subscribe(), b.bus.subscribe());
        let (ra, rb) = tokio::join!(
            a.bus.connect(b.bus.local_addr().unwrap(), Some(b.key)),
            b.bus.connect(a.bus.local_addr().unwrap(), Some(a.key))
        );
        assert!(ra.is_ok() && rb.is_ok(), "round {round}: {ra:?} {rb:?}");
        // Converged: both sides hold a live connection, the same one (same dialer).
        let dialer = |d: &Dev| {
            let s = d.bus.state.lock().unwrap();
            let (_, l) = s.core.links().next()?;
            let live = s.conns.get(&l.conn)?.close_reason().is_none();
            live.then_some(l.dialer)
        };
        let wait = async {
            loop {
                if let (Some(x), Some(y)) = (dialer(&a), dialer(&b))
                    && x == y
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .unwrap();
        assert_eq!(a.bus.online().len(), 1);
        assert_eq!(b.bus.online().len(), 1);
        // Each side said ONLINE once and never OFFLINE: the race is invisible above.
        for (name, rx) in [("a", &mut ea), ("b", &mut eb)] {
            let mut seen = Vec::new();
            // Only presence counts here: an info update (e.g. a learned advert key) may
            // come too.
            while let Ok(ev) = rx.try_recv() {
                match ev {
                    BusEvent::Online(_) => seen.push("online"),
                    BusEvent::Offline(_) => seen.push("offline"),
                    _ => {}
                }
            }
            assert_eq!(seen, ["online"], "round {round}, side {name}");
        }
    }
}

/// Two trusted buses on loopback, connected, with their socket tables (for tests).
pub(crate) mod support {
    use crate::transport::session::Sessions;
    use crate::transport::*;
    use ed25519_dalek::SigningKey;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    struct All;
    impl TrustView for All {
        fn is_trusted(&self, _key: &[u8; 32]) -> bool {
            true
        }
    }

    /// A node's info, named `name`.
    pub(crate) fn node(name: &str) -> NodeInfo {
        NodeInfo {
            network_id: format!("net-{name}"),
            udid: format!("udid-{name}"),
            name: name.into(),
            device_type: "pc".into(),
            device_type_id: 0x0C,
            os_version: "test".into(),
            capabilities: vec![],
            sa_list: vec![],
            listen_port: 0,
            advert_key: oxh_devauth::AdvertKey([7; 32]),
        }
    }

    /// What `f` gives, failing the test after 5 s.
    pub(crate) async fn within_5s<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .expect("within 5 s")
    }

    /// a and b, online to each other.
    pub(crate) async fn pair() -> (Arc<Bus>, Arc<Bus>, Arc<Sessions>, Arc<Sessions>) {
        let cfg = BusConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Default::default()
        };
        let start = |seed, name| {
            let key = SigningKey::from_bytes(&[seed; 32]);
            Bus::start(&cfg, key, node(name), Arc::new(All)).unwrap()
        };
        let ((a, ca), (b, cb)) = (start(11, "a"), start(12, "b"));
        let sa = Sessions::start(a.clone(), ca.streams);
        let sb = Sessions::start(b.clone(), cb.streams);
        a.connect(b.local_addr().unwrap(), None).await.unwrap();
        // b registers a when its side of the hello completes.
        let mut rx = b.subscribe();
        if !b.is_online(&a.own_key) {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        }
        (a, b, sa, sb)
    }
}

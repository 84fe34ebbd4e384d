//! The sync driver: SYNC calls, auto sync (on the tick and when a device comes online), and
//! routing each store's engine events to peers, waiters and subscribers.

use super::events::notify_sync_complete;
use super::{KvService, OpenStore, StoreKey, lock};
use crate::api::{self, DeviceSyncResult};
use crate::error::KvError;
use crate::limits::{check_bundle_name, check_store_id};
use crate::store::{Store, StoreMeta};
use crate::sync::{Event, SyncMode, plan_tick, sync_targets};
use crate::wire::{Envelope, Msg, SyncStatus};
use oxh_ipc::Caller;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;

/// How often the driver ticks the engines and starts auto syncs: local writes reach online
/// devices within this (the goal is 100 ms).
pub const TICK: Duration = Duration::from_millis(50);

impl KvService {
    /// sync: runs a round with each target device and waits for them (or `timeout`).
    pub async fn sync(
        &self,
        caller: &Caller,
        a: &api::SyncArgs,
    ) -> Result<Vec<DeviceSyncResult>, KvError> {
        let key = self.key(caller, &a.store)?;
        let o = self.existing(&key)?;
        // The bus's view, not the one fed by state events: right after a device comes back,
        // its ONLINE event may not have reached this service yet; it is applied here first.
        let online: HashMap<String, String> = self.online_devices().into_iter().collect();
        let targets = sync_targets(&online, &a.devices, |d| self.resolve_device(d));
        if targets.is_empty() {
            return Err(KvError::NotFound(
                "no online trusted device to sync with".into(),
            ));
        }
        let mut results = Vec::new();
        let mut pending = Vec::new();
        for (asked, udid, net) in targets {
            let Some(net) = net else {
                results.push(DeviceSyncResult {
                    network_id: asked,
                    device_id: udid,
                    status: SyncStatus::DeviceOffline,
                });
                continue;
            };
            let mut out = Vec::new();
            let req = {
                let mut e = lock(&o.engine);
                let mut s = lock(&o.store);
                e.sync(&mut *s, &udid, a.mode, self.now(), &mut out)
            };
            let (tx, rx) = oneshot::channel();
            lock(&self.waiters)
                .entry((key.clone(), udid.clone(), req))
                .or_default()
                .push(tx);
            self.dispatch(&key, &o, out);
            pending.push((net, udid, rx));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(a.timeout_ms.max(1));
        for (net, udid, rx) in pending {
            let status = match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(s)) => s,
                _ => SyncStatus::Timeout,
            };
            results.push(DeviceSyncResult {
                network_id: net,
                device_id: udid,
                status,
            });
        }
        Ok(results)
    }

    fn dispatch(&self, key: &StoreKey, o: &OpenStore, evs: Vec<Event>) {
        for e in evs {
            match e {
                Event::Send { to, msg } => self.send_to(
                    &to,
                    &Envelope {
                        store: o.desc.clone(),
                        msg,
                    },
                ),
                Event::Complete { peer, req, status } => {
                    if let Some(ws) = lock(&self.waiters).remove(&(key.clone(), peer.clone(), req))
                    {
                        for w in ws {
                            let _ = w.send(status.clone());
                        }
                    }
                    let net_id = self
                        .net
                        .get()
                        .and_then(|n| lock(&n.online).get(&peer).cloned())
                        .unwrap_or_default();
                    notify_sync_complete(
                        o,
                        DeviceSyncResult {
                            network_id: net_id,
                            device_id: peer,
                            status,
                        },
                    );
                }
                Event::Changed { from, changes } => self.notify(o, &from, true, &changes),
                Event::Superseded { peer, old, new } => {
                    let mut w = lock(&self.waiters);
                    if let Some(ws) = w.remove(&(key.clone(), peer.clone(), old)) {
                        w.entry((key.clone(), peer, new)).or_default().extend(ws);
                    }
                }
            }
        }
    }

    pub(super) fn on_envelope(&self, from: &str, env: Envelope) {
        let key = (env.store.bundle.clone(), env.store.store_id.clone());
        if check_bundle_name(&key.0).is_err() || check_store_id(&key.1).is_err() {
            return;
        }
        let want = StoreMeta {
            kind: env.store.kind,
            level: env.store.level,
            auto_sync: false,
        };
        // A store a peer syncs with us is made here with the peer's options if it is missing.
        let existing = lock(&self.stores).get(&key).cloned();
        let o = match existing {
            Some(o) => Some(o),
            None => {
                let path = self.store_path(&key);
                let meta = Store::peek_meta(&path).unwrap_or(want);
                self.open_store(&key, Some(meta), true).ok()
            }
        };
        let o = match o {
            Some(o) if o.desc.kind == env.store.kind && o.desc.level == env.store.level => o,
            _ => {
                if let Msg::Hello { req, .. } = env.msg {
                    self.send_to(
                        from,
                        &Envelope {
                            store: env.store,
                            msg: Msg::HelloAck {
                                req,
                                epoch: [0; 16],
                                device_level: self.cfg.device_level,
                                status: SyncStatus::StoreMismatch,
                            },
                        },
                    );
                }
                return;
            }
        };
        let mut out = Vec::new();
        {
            let mut e = lock(&o.engine);
            let mut s = lock(&o.store);
            e.handle(&mut *s, from, env.msg, self.now(), &mut out);
        }
        self.dispatch(&key, &o, out);
    }

    pub(super) fn peer_online(&self, udid: &str, network_id: &str) {
        let Some(net) = self.net.get() else { return };
        // Known online under this networkId already (applied by `sync` ahead of its event).
        if lock(&net.online)
            .insert(udid.to_string(), network_id.to_string())
            .is_some_and(|n| n == network_id)
        {
            return;
        }
        lock(&net.links).remove(udid);
        let features: Vec<_> = lock(&self.features).values().cloned().collect();
        for f in features {
            f.on_online(udid, network_id);
        }
        // Catch up: every auto-sync store syncs both ways with the device that came online.
        let stores = self.open_stores();
        for (k, o) in stores {
            let mut out = Vec::new();
            {
                let mut e = lock(&o.engine);
                let mut s = lock(&o.store);
                if !s.meta().auto_sync {
                    continue;
                }
                e.sync(&mut *s, udid, SyncMode::PushPull, self.now(), &mut out);
            }
            self.dispatch(&k, &o, out);
        }
    }

    /// The open stores now, taken out of the lock so each can be worked on alone.
    fn open_stores(&self) -> Vec<(StoreKey, Arc<OpenStore>)> {
        lock(&self.stores)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub(super) fn peer_offline(&self, udid: &str) {
        let Some(net) = self.net.get() else { return };
        lock(&net.online).remove(udid);
        lock(&net.links).remove(udid);
        lock(&net.sockets).retain(|_, (u, _)| u != udid);
        let features: Vec<_> = lock(&self.features).values().cloned().collect();
        for f in features {
            f.on_offline(udid);
        }
        let stores = self.open_stores();
        for (k, o) in stores {
            let mut out = Vec::new();
            lock(&o.engine).peer_offline(udid, &mut out);
            self.dispatch(&k, &o, out);
        }
    }

    fn tick(&self, n: u64) {
        let now = self.now();
        let stores = self.open_stores();
        let online: Vec<String> = self
            .net
            .get()
            .map(|n| lock(&n.online).keys().cloned().collect())
            .unwrap_or_default();
        for (k, o) in stores {
            let mut out = Vec::new();
            {
                let mut e = lock(&o.engine);
                let mut s = lock(&o.store);
                e.tick(&mut *s, now, &mut out);
                let plan = plan_tick(
                    &e,
                    n,
                    s.meta().auto_sync,
                    o.dirty.load(Ordering::Relaxed),
                    &online,
                );
                for p in &plan.push {
                    e.sync(&mut *s, p, SyncMode::Push, now, &mut out);
                }
                if plan.clear_dirty {
                    o.dirty.store(false, Ordering::Relaxed);
                }
                if plan.gc
                    && let Some(net) = self.net.get()
                {
                    let peers: Vec<String> =
                        net.softbus.trusted().into_iter().map(|t| t.udid).collect();
                    let _ = s.gc_tombstones(&peers);
                }
            }
            self.dispatch(&k, &o, out);
        }
    }

    /// Ticks the engines every [`TICK`] while the service lives.
    pub(super) fn spawn_ticker(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(TICK);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                iv.tick().await;
                let Some(me) = me.upgrade() else { return };
                n += 1;
                me.tick(n);
            }
        });
    }
}

//! The sessions with remote devices on the soft bus: one outgoing socket per peer, the
//! incoming sockets and their reassembly, online devices, and attaching to the bus.

use super::{Feature, KvService, Net, lock};
use crate::api;
use crate::error::KvError;
use crate::wire::{self, Envelope, Frame, Msg, Reassembler};
use oxh_ipc::{Caller, ConnHandle, TokenType};
use oxh_softbus::Softbus;
use oxh_softbus::transport::session::{DataType, MAX_BYTES, Owner, SocketEvent, event_channel};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The soft-bus socket owner of the KV service: `u64::MAX - 1301`, out of the range of IPC
/// connection ids (which count up from 1), so no client can take or close its sockets.
pub const KV_OWNER: Owner = u64::MAX - 1301;

impl KvService {
    /// The trusted devices online now, `(udid, networkId)`, as the bus sees them (ahead of
    /// its state events), each made known to the sync first.
    pub fn online_devices(&self) -> Vec<(String, String)> {
        let Some(n) = self.net.get() else {
            return Vec::new();
        };
        let now: Vec<(String, String)> = n
            .softbus
            .trusted()
            .into_iter()
            .filter_map(|t| t.network_id.map(|nid| (t.udid, nid)))
            .collect();
        for (u, nid) in &now {
            self.peer_online(u, nid);
        }
        now
    }

    /// Every device bound to this one (udids), online or not.
    pub fn trusted_devices(&self) -> Vec<String> {
        self.net
            .get()
            .map(|n| n.softbus.trusted().into_iter().map(|t| t.udid).collect())
            .unwrap_or_default()
    }

    /// Lets `feature` share the sync session on `channel`: it gets the messages peers send
    /// on it and hears of devices going online and offline.
    pub fn attach_feature(&self, channel: u8, feature: Arc<dyn Feature>) {
        lock(&self.features).insert(channel, feature);
    }

    /// The device id a caller's device name means: a networkId of an online device, a
    /// trusted udid, `local`, or as given.
    pub fn resolve_device(&self, d: &str) -> String {
        if d == "local" {
            return self.cfg.device_id.clone();
        }
        if let Some(net) = self.net.get() {
            if let Some((u, _)) = lock(&net.online).iter().find(|(_, n)| n.as_str() == d) {
                return u.clone();
            }
            if let Some(t) = net.softbus.trusted().into_iter().find(|t| {
                t.network_id.as_deref() == Some(d) || t.udid.starts_with(d) && d.len() >= 6
            }) {
                return t.udid;
            }
        }
        d.to_string()
    }

    pub(super) fn send_to(&self, udid: &str, env: &Envelope) {
        let Some(net) = self.net.get() else { return };
        let bytes = wire::encode(env);
        let payload: usize = match &env.msg {
            Msg::Data { batch, .. } => batch
                .entries
                .iter()
                .map(|e| e.key.len() + e.value.as_ref().map_or(0, Vec::len))
                .sum(),
            _ => 0,
        };
        let frags = bytes.len().div_ceil(MAX_BYTES - 1).max(1);
        self.sent[0].fetch_add(1, Ordering::Relaxed);
        self.sent[1].fetch_add((bytes.len() + frags) as u64, Ordering::Relaxed);
        self.sent[2].fetch_add(payload as u64, Ordering::Relaxed);
        self.send_fragments(net, udid, wire::fragment(&bytes, MAX_BYTES));
    }

    /// Sends one message of another feature of the data service (`channel`, see
    /// [`wire::CHANNEL_RDB`]) to the online device `udid`, on the session the KV sync uses.
    /// Like the KV store's own messages, it may be lost: the feature's protocol resends.
    pub fn send_feature(&self, udid: &str, channel: u8, bytes: &[u8]) {
        let Some(net) = self.net.get() else { return };
        self.send_fragments(net, udid, wire::fragment_on(channel, bytes, MAX_BYTES));
    }

    /// Queues one message's fragments, together, on the peer's link.
    fn send_fragments(&self, net: &Net, udid: &str, frags: Vec<Vec<u8>>) {
        let mut links = lock(&net.links);
        let tx = match links.get(udid).filter(|t| !t.is_closed()) {
            Some(t) => t.clone(),
            None => {
                let Some(network_id) = lock(&net.online).get(udid).cloned() else {
                    return;
                };
                let (tx, rx) = mpsc::unbounded_channel();
                links.insert(udid.to_string(), tx.clone());
                let sb = net.softbus.clone();
                tokio::spawn(link_task(sb, network_id, rx));
                tx
            }
        };
        for f in frags {
            let _ = tx.send(f);
        }
    }

    fn on_socket_event(&self, ev: SocketEvent) {
        let Some(net) = self.net.get() else { return };
        match ev {
            SocketEvent::Bind {
                socket,
                peer_network_id,
                ..
            } => {
                let udid = lock(&net.online)
                    .iter()
                    .find(|(_, n)| **n == peer_network_id)
                    .map(|(u, _)| u.clone())
                    .or_else(|| {
                        net.softbus
                            .trusted()
                            .into_iter()
                            .find(|t| t.network_id.as_deref() == Some(&peer_network_id))
                            .map(|t| t.udid)
                    });
                if let Some(u) = udid {
                    lock(&net.sockets).insert(socket, (u, Reassembler::default()));
                }
            }
            SocketEvent::Bytes { socket, data } => {
                let got = {
                    let mut socks = lock(&net.sockets);
                    let Some((udid, r)) = socks.get_mut(&socket) else {
                        return;
                    };
                    match r.push_frame(&data) {
                        Ok(Some(frame)) => Some((udid.clone(), frame)),
                        Ok(None) => None,
                        Err(e) => {
                            tracing::warn!(tag = "kvstore", "dropping a bad sync message: {e}");
                            None
                        }
                    }
                };
                match got {
                    Some((udid, Frame::Kv(env))) => self.on_envelope(&udid, env),
                    Some((udid, Frame::Other(channel, bytes))) => {
                        let f = lock(&self.features).get(&channel).cloned();
                        if let Some(f) = f {
                            f.on_message(&udid, bytes);
                        }
                    }
                    None => {}
                }
            }
            SocketEvent::Shutdown { socket, .. } => {
                lock(&net.sockets).remove(&socket);
            }
            _ => {}
        }
    }

    /// Starts the sync driver on the soft bus: listens on [`api::SESSION_NAME`], follows
    /// devices going online and offline, ticks the engines.
    pub fn attach_softbus(self: &Arc<Self>, softbus: Arc<Softbus>) -> Result<(), KvError> {
        let (tx, mut rx) = event_channel();
        softbus
            .sessions()
            .listen(api::SESSION_NAME, KV_OWNER, tx)
            .map_err(|e| KvError::Storage(format!("cannot listen for sync: {e}")))?;
        let online: HashMap<String, String> = softbus
            .trusted()
            .into_iter()
            .filter_map(|t| t.network_id.map(|n| (t.udid, n)))
            .collect();
        let _ = self.net.set(Net {
            softbus: softbus.clone(),
            links: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
            online: Mutex::new(online),
        });
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let Some(me) = me.upgrade() else { return };
                me.on_socket_event(ev);
            }
        });
        // Online / offline: the bus center's state events, through an in-process connection.
        let (conn, mut states) = ConnHandle::detached(Caller {
            pid: std::process::id() as i32,
            uid: 0,
            gid: 0,
            token_id: 0,
            token_type: TokenType::Native,
            process_name: "distributeddata".into(),
        });
        softbus.subscribe_state(conn, 1);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut dec = oxh_ipc::frame::FrameDecoder::new();
            while let Some(bytes) = states.recv().await {
                let Some(me) = me.upgrade() else { return };
                dec.extend(&bytes);
                while let Ok(Some(oxh_ipc::frame::Decoded::Frame(f))) = dec.decode_next() {
                    match oxh_ipc::decode::<oxh_softbus::api::StateEvent>(&f.body) {
                        Ok(oxh_softbus::api::StateEvent::Online(v)) => {
                            if let Some(n) = v.network_id {
                                me.peer_online(&v.udid, &n);
                            }
                        }
                        Ok(oxh_softbus::api::StateEvent::Offline(v)) => me.peer_offline(&v.udid),
                        _ => {}
                    }
                }
            }
        });
        self.spawn_ticker();
        Ok(())
    }
}

/// Sends one peer's queued fragments in order on a socket of ours; ends (and is replaced on
/// the next send) when the socket breaks. Lost messages are the engine's to resend.
async fn link_task(
    softbus: Arc<Softbus>,
    network_id: String,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let sessions = softbus.sessions().clone();
    // Replies come on the peer's own socket; what arrives on ours is dropped.
    let (tx, mut drain) = event_channel();
    tokio::spawn(async move { while drain.recv().await.is_some() {} });
    let socket = match sessions
        .bind(
            &network_id,
            api::SESSION_NAME,
            api::SESSION_NAME,
            DataType::Bytes,
            KV_OWNER,
            tx,
        )
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(tag = "kvstore", "cannot reach {network_id} for sync: {e}");
            return;
        }
    };
    while let Some(frag) = rx.recv().await {
        if let Err(e) = sessions.send(socket, KV_OWNER, DataType::Bytes, frag).await {
            tracing::info!(tag = "kvstore", "sync send to {network_id} failed: {e}");
            break;
        }
    }
    let _ = sessions.shutdown(socket, KV_OWNER).await;
}

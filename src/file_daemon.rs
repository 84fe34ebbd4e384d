//! The distributed file daemon (SA 5201, OpenHarmony's DistributedFileDaemon) wired to the soft
//! bus: it serves this device's account tree to each bound peer that asks, on a soft-bus
//! socket of [`SESSION_NAME`] (authenticated by the binding, one per viewer and owner), and
//! mounts the device views over FUSE with a link to every trusted online peer.
//!
//! Without /dev/fuse or fusermount3 it still serves its peers, and says why it mounts nothing.

use oxh_dfs::link::{Remote, serve_link};
use oxh_dfs::proto::{MAX_IN_FLIGHT, Reply, Request, VERSION};
use oxh_dfs::serve::Server;
use oxh_dfs::views::{self, Mounted, Views};
use oxh_ipc::{Caller, ConnHandle, TokenType};
use oxh_samgr::{CallContext, Method, SystemAbility};
use oxh_softbus::Softbus;
use oxh_softbus::transport::session::{DataType, Owner, SocketEvent, event_channel};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The soft-bus session the file daemons speak on.
pub const SESSION_NAME: &str = "ohos.storage.distributedfile.daemon";
/// The daemon's soft-bus socket owner: out of the range of IPC connection ids (which count up
/// from 1), so no client can take or close its sockets.
pub const OWNER: Owner = u64::MAX - 5201;
/// The user whose account tree is served and viewed (OpenHarmony's first user).
pub const USER: u32 = 100;
/// The first wait before a link to an online peer is tried again (its daemon may still be
/// starting its listener, or the bus replacing a duplicate connection); it doubles up to
/// [`RETRY_MAX`] while the peer stays online.
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two tries at a link.
const RETRY_MAX: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running file daemon.
pub struct FileDaemon {
    softbus: Arc<Softbus>,
    tree: PathBuf,
    level: u8,
    views: Arc<Views>,
    mounted: Mutex<Option<Mounted>>,
    /// Why nothing is mounted, when nothing is.
    unmounted: Mutex<Option<String>>,
    /// The links to peers' daemons, by networkId: the client and its socket.
    remotes: Mutex<HashMap<String, (Arc<Remote>, u64)>>,
    /// Online peers' networkIds, by udid (what OFFLINE events name them by).
    online: Mutex<HashMap<String, String>>,
    /// The peers whose link a task keeps, by networkId, each with its wake-up (an ONLINE
    /// cuts its backoff short). Locked after `online`.
    linking: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// The owner side: each peer socket's queue of calls.
    served: Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>,
    /// Cross-device copies (PrepareSession, RequestSendFile, CancelCopyTask).
    copy: Arc<crate::file_copy::FileCopy>,
}

impl FileDaemon {
    /// Where the views are and which peers they show (GetDeviceViews, the dump).
    fn device_views(&self) -> oxh_dfs::api::DeviceViews {
        oxh_dfs::api::DeviceViews {
            account_tree: self.tree.display().to_string(),
            mount: lock(&self.mounted)
                .as_ref()
                .map(|m| m.path().display().to_string()),
            unmounted_reason: lock(&self.unmounted).clone(),
            peers: self.views.peers(),
        }
    }

    /// Starts serving `<data>/service/el2/100/hmdfs/account` to peers (whose device level
    /// they declare; this device's is `level`) and mounts the views when FUSE is here.
    pub async fn start(
        softbus: Arc<Softbus>,
        data_dir: &Path,
        level: u8,
        bundle_of: crate::file_copy::BundleOfToken,
    ) -> anyhow::Result<Arc<Self>> {
        let tree = views::account_tree(data_dir, USER);
        std::fs::create_dir_all(&tree)?;
        let local = Arc::new(Server::local(&tree)?);
        let copy =
            crate::file_copy::FileCopy::start(softbus.clone(), tree.clone(), level, bundle_of)?;
        let me = Arc::new(Self {
            softbus: softbus.clone(),
            tree,
            level,
            views: Views::new(local),
            mounted: Mutex::new(None),
            unmounted: Mutex::new(None),
            remotes: Mutex::new(HashMap::new()),
            online: Mutex::new(HashMap::new()),
            linking: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
            copy,
        });
        me.listen()?;
        me.follow_peers();
        let at = views::mount_point(data_dir, USER);
        match views::unavailable() {
            Some(why) => {
                tracing::warn!(
                    tag = "hmdfs",
                    "device views not mounted: {why}; peers are still served"
                );
                *lock(&me.unmounted) = Some(why);
            }
            None => {
                let v = me.views.clone();
                let a = at.clone();
                match tokio::task::spawn_blocking(move || views::mount(v, &a)).await? {
                    Ok(m) => {
                        tracing::info!(tag = "hmdfs", "device views at {}", at.display());
                        *lock(&me.mounted) = Some(m);
                    }
                    Err(e) => {
                        let why = format!("cannot mount {}: {e}", at.display());
                        tracing::warn!(tag = "hmdfs", "device views not mounted: {why}");
                        *lock(&me.unmounted) = Some(why);
                    }
                }
            }
        }
        Ok(me)
    }

    /// Whether the device views are mounted.
    pub fn is_mounted(&self) -> bool {
        lock(&self.mounted).is_some()
    }

    /// Unmounts the views and closes the links (daemon shutdown).
    pub async fn shutdown(&self) {
        for (_, (r, _)) in lock(&self.remotes).drain() {
            r.close();
        }
        let m = lock(&self.mounted).take();
        if let Some(m) = m {
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = m.unmount() {
                    tracing::warn!(tag = "hmdfs", "unmounting the device views: {e}");
                }
            })
            .await;
        }
    }

    /// The owner's side: peers bind to [`SESSION_NAME`]; each socket gets its own server.
    fn listen(self: &Arc<Self>) -> anyhow::Result<()> {
        let (tx, mut rx) = event_channel();
        self.softbus
            .sessions()
            .listen(SESSION_NAME, OWNER, tx)
            .map_err(|e| anyhow::anyhow!("cannot listen on {SESSION_NAME}: {e}"))?;
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let Some(me) = me.upgrade() else { return };
                me.on_served_event(ev);
            }
        });
        Ok(())
    }

    fn on_served_event(self: &Arc<Self>, ev: SocketEvent) {
        match ev {
            SocketEvent::Bind { socket, .. } => {
                let server = match Server::new(&self.tree) {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        tracing::warn!(tag = "hmdfs", "cannot serve a peer: {e}");
                        return;
                    }
                };
                let (in_tx, in_rx) = mpsc::channel(MAX_IN_FLIGHT);
                let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT);
                lock(&self.served).insert(socket, in_tx);
                tokio::spawn(serve_link(server, in_rx, out_tx));
                let sessions = self.softbus.sessions().clone();
                let me = Arc::downgrade(self);
                tokio::spawn(async move {
                    while let Some(b) = out_rx.recv().await {
                        if sessions
                            .send(socket, OWNER, DataType::Bytes, b)
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    // The server ended (the peer's socket closed or it broke the protocol).
                    let _ = sessions.shutdown(socket, OWNER).await;
                    if let Some(me) = me.upgrade() {
                        lock(&me.served).remove(&socket);
                    }
                });
            }
            SocketEvent::Bytes { socket, data } => {
                let tx = lock(&self.served).get(&socket).cloned();
                // An honest peer has at most MAX_IN_FLIGHT calls out, which the queue holds;
                // one that sends more loses its link.
                if let Some(tx) = tx
                    && tx.try_send(data).is_err()
                {
                    tracing::warn!(tag = "hmdfs", "a peer exceeded its calls in flight");
                    lock(&self.served).remove(&socket);
                }
            }
            SocketEvent::Shutdown { socket, .. } => {
                lock(&self.served).remove(&socket);
            }
            _ => {}
        }
    }

    /// The viewer's side: a link to every trusted online peer, as they come and go.
    fn follow_peers(self: &Arc<Self>) {
        let (conn, mut states) = ConnHandle::detached(Caller {
            pid: std::process::id() as i32,
            uid: 0,
            gid: 0,
            token_id: 0,
            token_type: TokenType::Native,
            process_name: "distributedfiledaemon".into(),
        });
        self.softbus.subscribe_state(conn, 1);
        for t in self.softbus.trusted() {
            if let Some(n) = t.network_id {
                self.peer_online(t.udid, n);
            }
        }
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
                                me.peer_online(v.udid, n);
                            }
                        }
                        Ok(oxh_softbus::api::StateEvent::Offline(v)) => me.peer_offline(&v.udid),
                        _ => {}
                    }
                }
            }
        });
    }

    /// A peer is online: it gets a link, made by one supervising task per peer (so two
    /// ONLINE events, or an ONLINE while a link is being made, never make two links).
    fn peer_online(self: &Arc<Self>, udid: String, network_id: String) {
        let mut online = lock(&self.online);
        online.insert(udid, network_id.clone());
        let mut linking = lock(&self.linking);
        if let Some(wake) = linking.get(&network_id) {
            // Its supervisor may be waiting out a backoff: try again now.
            wake.notify_one();
            return;
        }
        let wake = Arc::new(tokio::sync::Notify::new());
        linking.insert(network_id.clone(), wake.clone());
        let me = self.clone();
        tokio::spawn(async move { me.supervise(network_id, wake).await });
    }

    fn peer_offline(&self, udid: &str) {
        let Some(nid) = lock(&self.online).remove(udid) else {
            return;
        };
        let gone = lock(&self.remotes).remove(&nid);
        self.views.remove_peer(&nid);
        if let Some((r, socket)) = gone {
            r.close();
            let sessions = self.softbus.sessions().clone();
            tokio::spawn(async move {
                let _ = sessions.shutdown(socket, OWNER).await;
            });
        }
        tracing::info!(tag = "hmdfs", "device view of {nid} gone (offline)");
    }

    fn still_online(&self, network_id: &str) -> bool {
        lock(&self.online).values().any(|n| n == network_id)
    }

    /// Keeps one link to the peer while it is online: binds (its daemon may still be
    /// starting, or the bus may be replacing a duplicate connection under us), says Hello,
    /// and when the link ends or a try fails, tries again after a backoff of
    /// [`RETRY_FIRST`] doubling to [`RETRY_MAX`]. Ends when the peer goes offline.
    async fn supervise(self: Arc<Self>, network_id: String, wake: Arc<tokio::sync::Notify>) {
        let mut wait = RETRY_FIRST;
        loop {
            {
                // Checked under both locks, in peer_online's order: an ONLINE after this
                // finds no supervisor and starts one.
                let online = lock(&self.online);
                if !online.values().any(|n| n == &network_id) {
                    lock(&self.linking).remove(&network_id);
                    return;
                }
            }
            match self.connect(&network_id).await {
                Ok(ended) => {
                    let _ = ended.await;
                    wait = RETRY_FIRST;
                    if self.still_online(&network_id) {
                        tracing::info!(
                            tag = "hmdfs",
                            "link to {network_id} ended while it is online: relinking"
                        );
                    }
                }
                Err(e) => {
                    tracing::debug!(
                        tag = "hmdfs",
                        "no file daemon link to {network_id} yet: {e}"
                    );
                    let _ = tokio::time::timeout(wait, wake.notified()).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// One try at a link: binds to the peer's daemon, says Hello and shows its view. The
    /// receiver hears when the link ends.
    async fn connect(
        self: &Arc<Self>,
        network_id: &str,
    ) -> Result<tokio::sync::oneshot::Receiver<()>, String> {
        let sessions = self.softbus.sessions().clone();
        let (ev_tx, mut events) = event_channel();
        let socket = sessions
            .bind(
                network_id,
                SESSION_NAME,
                SESSION_NAME,
                DataType::Bytes,
                OWNER,
                ev_tx,
            )
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let (remote, mut out) = Remote::new();
        lock(&self.remotes).insert(network_id.to_string(), (remote.clone(), socket));
        let s = sessions.clone();
        tokio::spawn(async move {
            while let Some(b) = out.recv().await {
                if s.send(socket, OWNER, DataType::Bytes, b).await.is_err() {
                    break;
                }
            }
        });
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        let (me, r, nid) = (Arc::downgrade(self), remote.clone(), network_id.to_string());
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                match ev {
                    SocketEvent::Bytes { data, .. } => {
                        if let Err(e) = r.on_message(&data) {
                            tracing::warn!(tag = "hmdfs", "{nid} broke the file protocol: {e}");
                            break;
                        }
                    }
                    SocketEvent::Shutdown { .. } => break,
                    _ => {}
                }
            }
            r.close();
            if let Some(me) = me.upgrade() {
                me.link_ended(&nid, &r);
            }
            let _ = ended_tx.send(());
        });
        let hello = remote
            .call_async(Request::Hello {
                version: VERSION,
                device_level: self.level,
            })
            .await;
        let shown = match &hello {
            Ok(Reply::Hello { .. }) => {
                // Shown only if the link is still the peer's (not closed by an OFFLINE).
                let remotes = lock(&self.remotes);
                let current = remotes
                    .get(network_id)
                    .is_some_and(|(cur, _)| Arc::ptr_eq(cur, &remote));
                if current && !remote.is_closed() {
                    self.views.add_peer(network_id, remote.clone());
                }
                current
            }
            _ => false,
        };
        if shown {
            tracing::info!(tag = "hmdfs", "device view of {network_id} up");
            return Ok(ended);
        }
        remote.close();
        self.link_ended(network_id, &remote);
        let _ = sessions.shutdown(socket, OWNER).await;
        Err(format!("Hello: {hello:?}"))
    }

    /// A link ended (the peer's socket closed, or its Hello failed): its view goes, unless a
    /// newer link replaced it.
    fn link_ended(&self, network_id: &str, r: &Arc<Remote>) {
        let mut remotes = lock(&self.remotes);
        if remotes
            .get(network_id)
            .is_some_and(|(cur, _)| Arc::ptr_eq(cur, r))
        {
            remotes.remove(network_id);
            self.views.remove_peer(network_id);
        }
    }
}

#[async_trait::async_trait]
impl SystemAbility for FileDaemon {
    fn methods(&self) -> &'static [Method] {
        use oxh_dfs::api::PERMISSION_DATASYNC as P;
        const METHODS: &[Method] = &[
            Method::with_permission(oxh_dfs::api::GET_DEVICE_VIEWS, "GetDeviceViews", P),
            Method::with_permission(oxh_dfs::api::PREPARE_SESSION, "PrepareSession", P),
            Method::with_permission(oxh_dfs::api::RECV_FILE, "RequestSendFile", P),
            Method::with_permission(oxh_dfs::api::CANCEL_COPY_TASK, "CancelCopyTask", P),
        ];
        METHODS
    }

    async fn call(
        &self,
        ctx: CallContext,
        code: u32,
        data: bytes::Bytes,
    ) -> Result<Vec<u8>, oxh_ipc::RemoteError> {
        match code {
            oxh_dfs::api::GET_DEVICE_VIEWS => Ok(oxh_ipc::encode(&self.device_views())),
            oxh_dfs::api::PREPARE_SESSION
            | oxh_dfs::api::RECV_FILE
            | oxh_dfs::api::CANCEL_COPY_TASK => self.copy.call(ctx, code, &data).await,
            _ => Err(oxh_ipc::RemoteError::new(
                401,
                format!("no method {code} on the distributed file daemon"),
            )),
        }
    }

    fn dump(&self, _args: &[String]) -> String {
        let v = self.device_views();
        let mount = match (&v.mount, &v.unmounted_reason) {
            (Some(m), _) => format!("mounted at {m}"),
            (None, Some(why)) => format!("not mounted: {why}"),
            (None, None) => "not mounted".into(),
        };
        format!(
            "DistributedFileDaemon\n  account tree: {}\n  device views: {mount}\n  peers: {}\n  \
             peers served: {}\n  copies running: {}\n",
            v.account_tree,
            v.peers.join(", "),
            lock(&self.served).len(),
            self.copy.running()
        )
    }

    fn on_client_died(&self, conn: &ConnHandle) {
        self.copy.client_died(conn);
    }
}

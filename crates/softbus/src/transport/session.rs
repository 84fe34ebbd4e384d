//! Sockets (OpenHarmony's Socket API): named endpoints on trusted devices, each socket one
//! QUIC stream on the pair's shared connection.
//!
//! A socket opens with `Open{name, from, data_type}`; the peer answers `Accept` if a listener
//! owns that name, else `Reject`. Then `Message` (≤ 4 KiB) and `Bytes` (≤ 4 MiB) frames flow
//! either way until `Shutdown` or the stream ends. A session name belongs to the local client
//! that first listens on it; another client cannot take it over.

use super::wire::{read_frame, write_frame};
use super::{Bus, IncomingStream, NodeInfo};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// OpenHarmony's limit for one message (SendMessage): 4 KiB.
pub const MAX_MESSAGE: usize = 4 * 1024;
/// OpenHarmony's limit for one bytes payload (SendBytes): 4 MiB.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Largest frame on a socket stream: a bytes payload and its framing.
const MAX_SOCKET_FRAME: usize = MAX_BYTES + 64;
/// Longest session name (OpenHarmony's SESSION_NAME_SIZE_MAX is 256 with the NUL).
pub const MAX_NAME: usize = 255;

/// Who owns a listener or socket: a local IPC connection id.
pub type Owner = u64;

/// OpenHarmony's socket data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataType {
    /// DATA_TYPE_MESSAGE.
    Message,
    /// DATA_TYPE_BYTES.
    Bytes,
    /// DATA_TYPE_FILE.
    File,
}

#[derive(Debug, Serialize, Deserialize)]
enum Frame {
    Open {
        name: String,
        from: String,
        data_type: DataType,
    },
    Accept,
    Reject {
        reason: String,
    },
    Message(Vec<u8>),
    Bytes(Vec<u8>),
    Shutdown {
        reason: String,
    },
}

/// What a socket's owner hears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SocketEvent {
    /// A peer bound to our listener (OnBind).
    Bind {
        /// The new socket.
        socket: u64,
        /// The listener's name.
        name: String,
        /// The peer's socket name.
        peer_name: String,
        /// The peer device's networkId.
        peer_network_id: String,
        /// The peer device's name.
        peer_device: String,
    },
    /// OnMessage.
    Message {
        /// Socket.
        socket: u64,
        /// Payload.
        data: Vec<u8>,
    },
    /// OnBytes.
    Bytes {
        /// Socket.
        socket: u64,
        /// Payload.
        data: Vec<u8>,
    },
    /// OnShutdown.
    Shutdown {
        /// Socket.
        socket: u64,
        /// Why.
        reason: String,
    },
}

/// Socket errors, with OpenHarmony-style meanings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Bad name, oversize payload, wrong data type.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Another client owns the name.
    #[error("session name {0:?} is already taken by another client")]
    NameTaken(String),
    /// No such socket, or not the caller's.
    #[error("no socket {0} owned by this client")]
    NoSocket(u64),
    /// The device is not online.
    #[error("device {0} is not online")]
    Offline(String),
    /// The peer refused.
    #[error("peer refused the socket: {0}")]
    Refused(String),
    /// The stream broke.
    #[error("socket failed: {0}")]
    Io(String),
}

struct Listener {
    owner: Owner,
    tx: mpsc::UnboundedSender<SocketEvent>,
}

struct Socket {
    owner: Owner,
    data_type: DataType,
    send: Arc<tokio::sync::Mutex<quinn::SendStream>>,
    peer: NodeInfo,
}

/// The socket table of one device.
pub struct Sessions {
    bus: Arc<Bus>,
    listeners: Mutex<HashMap<String, Listener>>,
    sockets: Mutex<HashMap<u64, Socket>>,
    next: AtomicU64,
}

fn check_name(name: &str) -> Result<(), SessionError> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(|c| c.is_control()) {
        return Err(SessionError::Invalid(format!(
            "session name must be 1..={MAX_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

impl Sessions {
    /// The socket table, serving incoming streams from `streams`.
    pub fn start(bus: Arc<Bus>, mut streams: mpsc::Receiver<IncomingStream>) -> Arc<Self> {
        let me = Arc::new(Self {
            bus,
            listeners: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        let m = me.clone();
        tokio::spawn(async move {
            while let Some(s) = streams.recv().await {
                let m = m.clone();
                tokio::spawn(async move { m.incoming(s).await });
            }
        });
        me
    }

    /// Listens on `name` for `owner`; events go to `tx`.
    pub fn listen(
        &self,
        name: &str,
        owner: Owner,
        tx: mpsc::UnboundedSender<SocketEvent>,
    ) -> Result<(), SessionError> {
        check_name(name)?;
        let mut l = self
            .listeners
            .lock()
            .map_err(|_| SessionError::Io("poisoned".into()))?;
        if let Some(existing) = l.get(name)
            && existing.owner != owner
            && !existing.tx.is_closed()
        {
            return Err(SessionError::NameTaken(name.into()));
        }
        l.insert(name.into(), Listener { owner, tx });
        Ok(())
    }

    /// Drops everything a client owned (its IPC connection is gone).
    pub fn forget_owner(&self, owner: Owner) {
        if let Ok(mut l) = self.listeners.lock() {
            l.retain(|_, v| v.owner != owner);
        }
        let gone: Vec<_> = self
            .sockets
            .lock()
            .map(|mut s| {
                let ids: Vec<u64> = s
                    .iter()
                    .filter(|(_, v)| v.owner == owner)
                    .map(|(k, _)| *k)
                    .collect();
                ids.into_iter().filter_map(|k| s.remove(&k)).collect()
            })
            .unwrap_or_default();
        for s in gone {
            tokio::spawn(async move {
                let mut w = s.send.lock().await;
                let _ = write_frame(
                    &mut *w,
                    &Frame::Shutdown {
                        reason: "peer closed".into(),
                    },
                )
                .await;
                let _ = w.finish();
            });
        }
    }

    /// Opens a socket to `name` on device `network_id` (Bind).
    pub async fn bind(
        self: &Arc<Self>,
        network_id: &str,
        name: &str,
        own_name: &str,
        data_type: DataType,
        owner: Owner,
        tx: mpsc::UnboundedSender<SocketEvent>,
    ) -> Result<u64, SessionError> {
        check_name(name)?;
        check_name(own_name)?;
        let (conn, peer) = self
            .bus
            .connection(network_id)
            .ok_or_else(|| SessionError::Offline(network_id.into()))?;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| SessionError::Io(e.to_string()))?;
        write_frame(
            &mut send,
            &Frame::Open {
                name: name.into(),
                from: own_name.into(),
                data_type,
            },
        )
        .await
        .map_err(|e| SessionError::Io(e.to_string()))?;
        match read_frame::<_, Frame>(&mut recv, 4096).await {
            Ok(Some(Frame::Accept)) => {}
            Ok(Some(Frame::Reject { reason })) => return Err(SessionError::Refused(reason)),
            Ok(_) => return Err(SessionError::Io("peer sent no answer".into())),
            Err(e) => return Err(SessionError::Io(e.to_string())),
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.add_socket(id, owner, data_type, send, recv, peer, tx);
        Ok(id)
    }

    #[allow(clippy::too_many_arguments)]
    fn add_socket(
        self: &Arc<Self>,
        id: u64,
        owner: Owner,
        data_type: DataType,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        peer: NodeInfo,
        tx: mpsc::UnboundedSender<SocketEvent>,
    ) {
        let send = Arc::new(tokio::sync::Mutex::new(send));
        if let Ok(mut s) = self.sockets.lock() {
            s.insert(
                id,
                Socket {
                    owner,
                    data_type,
                    send,
                    peer,
                },
            );
        }
        let me = self.clone();
        tokio::spawn(async move { me.read_socket(id, recv, tx).await });
    }

    async fn read_socket(
        self: Arc<Self>,
        id: u64,
        mut recv: quinn::RecvStream,
        tx: mpsc::UnboundedSender<SocketEvent>,
    ) {
        let reason = loop {
            match read_frame::<_, Frame>(&mut recv, MAX_SOCKET_FRAME).await {
                Ok(Some(Frame::Message(data))) if data.len() <= MAX_MESSAGE => {
                    let _ = tx.send(SocketEvent::Message { socket: id, data });
                }
                Ok(Some(Frame::Bytes(data))) if data.len() <= MAX_BYTES => {
                    let _ = tx.send(SocketEvent::Bytes { socket: id, data });
                }
                Ok(Some(Frame::Shutdown { reason })) => break reason,
                Ok(None) => break "peer closed the socket".to_string(),
                Ok(Some(_)) => break "protocol error".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        let existed = self
            .sockets
            .lock()
            .map(|mut s| s.remove(&id).is_some())
            .unwrap_or(false);
        if existed {
            let _ = tx.send(SocketEvent::Shutdown { socket: id, reason });
        }
    }

    async fn incoming(self: Arc<Self>, s: IncomingStream) {
        let IncomingStream {
            from,
            mut send,
            mut recv,
        } = s;
        let (name, peer_name, data_type) = match read_frame::<_, Frame>(&mut recv, 4096).await {
            Ok(Some(Frame::Open {
                name,
                from,
                data_type,
            })) => (name, from, data_type),
            _ => return,
        };
        let tx = self
            .listeners
            .lock()
            .ok()
            .and_then(|l| l.get(&name).map(|l| (l.owner, l.tx.clone())));
        let Some((owner, tx)) = tx.filter(|(_, tx)| !tx.is_closed()) else {
            let _ = write_frame(
                &mut send,
                &Frame::Reject {
                    reason: format!("no listener for session {name:?}"),
                },
            )
            .await;
            let _ = send.finish();
            return;
        };
        if write_frame(&mut send, &Frame::Accept).await.is_err() {
            return;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(SocketEvent::Bind {
            socket: id,
            name,
            peer_name,
            peer_network_id: from.network_id.clone(),
            peer_device: from.name.clone(),
        });
        self.add_socket(id, owner, data_type, send, recv, from, tx);
    }

    /// Sends a message (≤ 4 KiB) or bytes (≤ 4 MiB) on a socket the caller owns.
    pub async fn send(
        &self,
        socket: u64,
        owner: Owner,
        kind: DataType,
        data: Vec<u8>,
    ) -> Result<(), SessionError> {
        let (send, _dt) = {
            let s = self
                .sockets
                .lock()
                .map_err(|_| SessionError::Io("poisoned".into()))?;
            let e = s
                .get(&socket)
                .filter(|e| e.owner == owner)
                .ok_or(SessionError::NoSocket(socket))?;
            (e.send.clone(), e.data_type)
        };
        let frame = match kind {
            DataType::Message if data.len() > MAX_MESSAGE => {
                return Err(SessionError::Invalid(format!(
                    "message of {} bytes exceeds the {MAX_MESSAGE}-byte (4 KiB) limit",
                    data.len()
                )));
            }
            DataType::Bytes if data.len() > MAX_BYTES => {
                return Err(SessionError::Invalid(format!(
                    "bytes of {} exceed the {MAX_BYTES}-byte (4 MiB) limit",
                    data.len()
                )));
            }
            DataType::Message => Frame::Message(data),
            DataType::Bytes => Frame::Bytes(data),
            DataType::File => {
                return Err(SessionError::Invalid("use send_file for files".into()));
            }
        };
        let mut w = send.lock().await;
        write_frame(&mut *w, &frame)
            .await
            .map_err(|e| SessionError::Io(e.to_string()))
    }

    /// Closes a socket the caller owns (Shutdown).
    pub async fn shutdown(&self, socket: u64, owner: Owner) -> Result<(), SessionError> {
        let s = self
            .sockets
            .lock()
            .map_err(|_| SessionError::Io("poisoned".into()))?
            .remove(&socket);
        let s = s
            .filter(|s| s.owner == owner)
            .ok_or(SessionError::NoSocket(socket))?;
        let mut w = s.send.lock().await;
        let _ = write_frame(
            &mut *w,
            &Frame::Shutdown {
                reason: "closed by peer".into(),
            },
        )
        .await;
        let _ = w.finish();
        Ok(())
    }

    /// Sockets and listeners, for dumps.
    pub fn dump(&self) -> String {
        let l: Vec<String> = self
            .listeners
            .lock()
            .map(|l| l.keys().cloned().collect())
            .unwrap_or_default();
        let s: Vec<String> = self
            .sockets
            .lock()
            .map(|s| {
                s.iter()
                    .map(|(k, v)| format!("{k}->{}({:?})", v.peer.name, v.data_type))
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "  listeners: {}\n  sockets: {}\n",
            l.join(", "),
            s.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::pair;
    use super::*;
    use std::time::Duration;

    async fn ev(rx: &mut mpsc::UnboundedReceiver<SocketEvent>) -> SocketEvent {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("event in 5 s")
            .expect("open")
    }

    #[tokio::test]
    async fn message_and_bytes_both_ways_with_limits() {
        let (a, b, sa, sb) = pair().await;
        let (ltx, mut lrx) = mpsc::unbounded_channel();
        sb.listen("chat", 7, ltx).unwrap();
        // Another client cannot take the name.
        let (otx, _orx) = mpsc::unbounded_channel();
        assert_eq!(
            sb.listen("chat", 8, otx),
            Err(SessionError::NameTaken("chat".into()))
        );
        let (btx, mut brx) = mpsc::unbounded_channel();
        let b_net = b.local_info().network_id;
        let s = sa
            .bind(&b_net, "chat", "me", DataType::Bytes, 1, btx)
            .await
            .unwrap();
        let SocketEvent::Bind {
            socket: peer_sock,
            peer_network_id,
            ..
        } = ev(&mut lrx).await
        else {
            panic!()
        };
        assert_eq!(peer_network_id, a.local_info().network_id);
        sa.send(s, 1, DataType::Message, b"hi".to_vec())
            .await
            .unwrap();
        assert_eq!(
            ev(&mut lrx).await,
            SocketEvent::Message {
                socket: peer_sock,
                data: b"hi".to_vec()
            }
        );
        let big = vec![9u8; MAX_BYTES];
        sa.send(s, 1, DataType::Bytes, big.clone()).await.unwrap();
        assert_eq!(
            ev(&mut lrx).await,
            SocketEvent::Bytes {
                socket: peer_sock,
                data: big
            }
        );
        assert!(matches!(
            sa.send(s, 1, DataType::Bytes, vec![0; MAX_BYTES + 1]).await,
            Err(SessionError::Invalid(_))
        ));
        assert!(matches!(
            sa.send(s, 1, DataType::Message, vec![0; MAX_MESSAGE + 1])
                .await,
            Err(SessionError::Invalid(_))
        ));
        // Only the owner may use a socket.
        assert_eq!(
            sa.send(s, 2, DataType::Message, b"x".to_vec()).await,
            Err(SessionError::NoSocket(s))
        );
        // The listener answers on the same socket.
        sb.send(peer_sock, 7, DataType::Message, b"yo".to_vec())
            .await
            .unwrap();
        assert_eq!(
            ev(&mut brx).await,
            SocketEvent::Message {
                socket: s,
                data: b"yo".to_vec()
            }
        );
        sa.shutdown(s, 1).await.unwrap();
        assert!(
            matches!(ev(&mut lrx).await, SocketEvent::Shutdown { socket, .. } if socket == peer_sock)
        );
        // No listener: refused with a reason.
        let (ntx, _nrx) = mpsc::unbounded_channel();
        let e = sa
            .bind(&b_net, "nobody-here", "me", DataType::Message, 1, ntx)
            .await
            .unwrap_err();
        assert!(
            matches!(e, SessionError::Refused(ref r) if r.contains("nobody-here")),
            "{e}"
        );
    }
}

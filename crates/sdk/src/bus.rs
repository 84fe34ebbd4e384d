//! Soft bus sockets (OpenHarmony's Socket API): listen on a name, bind to a peer's name, send
//! messages (≤ 4 KiB) and bytes (≤ 4 MiB).

use crate::{Device, Error};
use oxh_ipc::Subscription;
use oxh_softbus::api::{
    self, BindSocketArgs, IPC_PART, ListenArgs, SOFTBUS_SA_ID, SendArgs, SocketEventView,
};
pub use oxh_softbus::transport::session::{DataType, MAX_BYTES, MAX_MESSAGE};

/// Proxy for the soft bus SA.
pub struct Bus<'a> {
    pub(crate) dev: &'a Device,
}

/// A socket event, with bytes reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketEvent {
    /// OnBind: a peer bound to our listener.
    Bind {
        /// New socket.
        socket: u64,
        /// Peer's socket name.
        peer_name: String,
        /// Peer networkId.
        peer_network_id: String,
        /// Peer device name.
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

/// Events of a listener or a bound socket.
pub struct SocketEvents {
    sub: Subscription,
    partial: std::collections::HashMap<u64, Vec<u8>>,
}

impl SocketEvents {
    /// The next event; `None` once the connection closed.
    pub async fn next(&mut self) -> Option<SocketEvent> {
        loop {
            let b = self.sub.recv().await?;
            let v: SocketEventView = oxh_ipc::decode(&b).ok()?;
            return Some(match v {
                SocketEventView::Bind {
                    socket,
                    peer_name,
                    peer_network_id,
                    peer_device,
                } => SocketEvent::Bind {
                    socket,
                    peer_name,
                    peer_network_id,
                    peer_device,
                },
                SocketEventView::Message { socket, data } => SocketEvent::Message { socket, data },
                SocketEventView::BytesPart { socket, data, last } => {
                    let buf = self.partial.entry(socket).or_default();
                    buf.extend_from_slice(&data);
                    if !last {
                        continue;
                    }
                    let data = self.partial.remove(&socket).unwrap_or_default();
                    SocketEvent::Bytes { socket, data }
                }
                SocketEventView::Shutdown { socket, reason } => {
                    self.partial.remove(&socket);
                    SocketEvent::Shutdown { socket, reason }
                }
            });
        }
    }
}

impl Bus<'_> {
    /// Listens on session `name`; peers bind to it by this name.
    pub async fn listen(&self, name: &str) -> Result<SocketEvents, Error> {
        let sub = self.dev.client.subscribe();
        let a = ListenArgs {
            name: name.into(),
            sub: sub.id(),
        };
        self.dev
            .client
            .call::<_, ()>(SOFTBUS_SA_ID, api::bus::LISTEN, &a)
            .await?;
        Ok(SocketEvents {
            sub,
            partial: Default::default(),
        })
    }

    /// Opens a socket to session `name` on the device `network_id`.
    pub async fn bind(
        &self,
        network_id: &str,
        name: &str,
        own_name: &str,
        data_type: DataType,
    ) -> Result<(u64, SocketEvents), Error> {
        let sub = self.dev.client.subscribe();
        let a = BindSocketArgs {
            network_id: network_id.into(),
            name: name.into(),
            own_name: own_name.into(),
            data_type,
            sub: sub.id(),
        };
        let socket: u64 = self
            .dev
            .client
            .call(SOFTBUS_SA_ID, api::bus::BIND, &a)
            .await?;
        Ok((
            socket,
            SocketEvents {
                sub,
                partial: Default::default(),
            },
        ))
    }

    /// Sends a message (≤ 4 KiB).
    pub async fn send_message(&self, socket: u64, data: &[u8]) -> Result<(), Error> {
        let a = SendArgs {
            socket,
            kind: DataType::Message,
            data: data.to_vec(),
            more: false,
        };
        self.dev
            .client
            .call(SOFTBUS_SA_ID, api::bus::SEND, &a)
            .await
    }

    /// Sends bytes (≤ 4 MiB), in parts under the IPC transaction limit.
    pub async fn send_bytes(&self, socket: u64, data: &[u8]) -> Result<(), Error> {
        let n = data.len().div_ceil(IPC_PART).max(1);
        for i in 0..n {
            let part = data
                .get(i * IPC_PART..((i + 1) * IPC_PART).min(data.len()))
                .unwrap_or(&[]);
            let a = SendArgs {
                socket,
                kind: DataType::Bytes,
                data: part.to_vec(),
                more: i + 1 < n,
            };
            self.dev
                .client
                .call::<_, ()>(SOFTBUS_SA_ID, api::bus::SEND, &a)
                .await?;
        }
        Ok(())
    }

    /// Closes a socket.
    pub async fn shutdown(&self, socket: u64) -> Result<(), Error> {
        self.dev
            .client
            .call(SOFTBUS_SA_ID, api::bus::SHUTDOWN, &socket)
            .await
    }
}

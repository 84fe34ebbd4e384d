//! Socket events written to a client's IPC connection, the data-carrying ones encoded by hand.

use crate::api::SocketEventView;
use crate::transport::session::SocketEvent;
use oxh_ipc::{ConnHandle, encode};

/// Socket events of one subscription, written to the owner's IPC connection by the socket's
/// reader itself (no forwarding task: one task wake-up less per message).
pub(super) struct IpcSink {
    pub(super) conn: ConnHandle,
    pub(super) sub: u64,
}

/// postcard's variant indexes in [`SocketEventView`] of the events encoded by hand.
const VIEW_MESSAGE: u8 = 1;
const VIEW_BYTES_PART: u8 = 2;
const VIEW_STREAM: u8 = 5;

/// The head of a [`SocketEventView`] carrying `data` (variant, socket, data length); `data`
/// and, for bytes parts, the `last` flag follow. Encoded by hand so that payloads are copied
/// once, into the IPC frame, instead of into a view and then its encoding.
fn view_head(tag: u8, socket: u64, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.push(tag);
    crate::proto::put_varint(socket, &mut h);
    crate::proto::put_varint(len as u64, &mut h);
    h
}

impl IpcSink {
    async fn push_data(&self, tag: u8, socket: u64, data: &[u8]) -> bool {
        let head = view_head(tag, socket, data.len());
        self.conn
            .push_event_parts_wait(self.sub, &[&head, data])
            .await
    }

    async fn push_bytes(&self, socket: u64, data: &[u8]) -> bool {
        if data.is_empty() {
            let head = view_head(VIEW_BYTES_PART, socket, 0);
            return self
                .conn
                .push_event_parts_wait(self.sub, &[&head, &[1]])
                .await;
        }
        let n = data.len().div_ceil(crate::api::IPC_PART);
        for (i, part) in data.chunks(crate::api::IPC_PART).enumerate() {
            let head = view_head(VIEW_BYTES_PART, socket, part.len());
            let last = [u8::from(i + 1 == n)];
            if !self
                .conn
                .push_event_parts_wait(self.sub, &[&head, part, &last])
                .await
            {
                return false;
            }
        }
        true
    }

    fn view(ev: SocketEvent) -> Option<SocketEventView> {
        Some(match ev {
            SocketEvent::Bind {
                socket,
                peer_name,
                peer_network_id,
                peer_device,
                ..
            } => SocketEventView::Bind {
                socket,
                peer_name,
                peer_network_id,
                peer_device,
            },
            SocketEvent::FileBegin { socket, name, size } => {
                SocketEventView::FileBegin { socket, name, size }
            }
            SocketEvent::FileRefused {
                socket,
                name,
                reason,
            } => SocketEventView::FileRefused {
                socket,
                name,
                reason,
            },
            SocketEvent::Shutdown { socket, reason } => {
                SocketEventView::Shutdown { socket, reason }
            }
            SocketEvent::Message { .. }
            | SocketEvent::Bytes { .. }
            | SocketEvent::Stream { .. } => {
                return None;
            }
        })
    }
}

#[async_trait::async_trait]
impl crate::transport::session::EventSink for IpcSink {
    async fn deliver(&self, ev: SocketEvent) -> bool {
        match ev {
            SocketEvent::Message { socket, data } => {
                self.push_data(VIEW_MESSAGE, socket, &data).await
            }
            SocketEvent::Stream { socket, data } => {
                self.push_data(VIEW_STREAM, socket, &data).await
            }
            SocketEvent::Bytes { socket, data } => self.push_bytes(socket, &data).await,
            other => match Self::view(other) {
                Some(v) => self.conn.push_event_wait(self.sub, &encode(&v)).await,
                None => true,
            },
        }
    }

    fn try_deliver(&self, ev: SocketEvent) -> bool {
        match ev {
            SocketEvent::Stream { socket, data } => {
                let mut d = view_head(VIEW_STREAM, socket, data.len());
                d.extend_from_slice(&data);
                self.conn.push_event(self.sub, &d)
            }
            other => match Self::view(other) {
                Some(v) => self.conn.push_event(self.sub, &encode(&v)),
                None => false,
            },
        }
    }

    fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }
}

#[cfg(test)]
mod view_tests {
    use super::*;

    #[test]
    fn hand_encoded_views_are_postcards() {
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let socket = 1u64 << 40;
        let mut m = view_head(VIEW_MESSAGE, socket, data.len());
        m.extend_from_slice(&data);
        assert_eq!(
            m,
            encode(&SocketEventView::Message {
                socket,
                data: data.clone()
            })
        );
        let mut s = view_head(VIEW_STREAM, socket, data.len());
        s.extend_from_slice(&data);
        assert_eq!(
            s,
            encode(&SocketEventView::Stream {
                socket,
                data: data.clone()
            })
        );
        for last in [false, true] {
            let mut b = view_head(VIEW_BYTES_PART, socket, data.len());
            b.extend_from_slice(&data);
            b.push(u8::from(last));
            assert_eq!(
                b,
                encode(&SocketEventView::BytesPart {
                    socket,
                    data: data.clone(),
                    last
                })
            );
        }
    }
}

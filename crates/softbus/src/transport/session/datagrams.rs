//! Stream frames (SendStream) as unreliable QUIC datagrams:
//! `kind:u8 = 1 | receiver's socket id:u64 LE | frame`. A datagram counts only on the
//! connection its socket lives on, so a peer can reach only sockets it is a party to.

use super::{Owner, Sessions, io};
use crate::proto::{STREAM_HEADER, SessionError, SocketEvent};
use bytes::Bytes;

/// Datagram kind byte of a socket stream frame.
const DGRAM_STREAM: u8 = 1;

/// The largest stream frame `conn` carries now: its datagram size less our header.
fn max_frame(conn: &quinn::Connection) -> usize {
    conn.max_datagram_size()
        .unwrap_or(0)
        .saturating_sub(STREAM_HEADER)
}

impl Sessions {
    /// The connection of a socket the caller owns, and the peer's id for the socket.
    fn stream_path(
        &self,
        socket: u64,
        owner: Owner,
    ) -> Result<(quinn::Connection, u64), SessionError> {
        self.owned(socket, owner, |s| (s.conn.clone(), s.peer_socket))
    }

    /// The largest frame [`Sessions::send_stream`] can send on a socket now: the path's
    /// datagram size less our header.
    pub fn max_stream(&self, socket: u64, owner: Owner) -> Result<usize, SessionError> {
        Ok(max_frame(&self.stream_path(socket, owner)?.0))
    }

    /// Sends one stream frame as an unreliable datagram (SendStream): it may be lost, never
    /// split; a frame over [`Sessions::max_stream`] is an error.
    pub fn send_stream(&self, socket: u64, owner: Owner, data: &[u8]) -> Result<(), SessionError> {
        let (conn, peer_socket) = self.stream_path(socket, owner)?;
        let max = max_frame(&conn);
        if data.len() > max {
            return Err(SessionError::Invalid(format!(
                "stream frame of {} bytes exceeds the path's {max}-byte datagram limit",
                data.len()
            )));
        }
        let mut d = Vec::with_capacity(STREAM_HEADER + data.len());
        d.push(DGRAM_STREAM);
        d.extend_from_slice(&peer_socket.to_le_bytes());
        d.extend_from_slice(data);
        conn.send_datagram(Bytes::from(d)).map_err(|e| match e {
            quinn::SendDatagramError::TooLarge => {
                SessionError::Invalid("stream frame exceeds the path's datagram limit".into())
            }
            e => io(e),
        })
    }

    /// Reads the datagrams of a connection, once per connection.
    pub(super) fn ensure_datagram_reader(&self, conn: &quinn::Connection) {
        let id = conn.stable_id();
        let fresh = self
            .dgram_readers
            .lock()
            .map(|mut r| r.insert(id))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        let me = self.me.clone();
        let conn = conn.clone();
        tokio::spawn(async move {
            while let Ok(d) = conn.read_datagram().await {
                let Some(m) = me.upgrade() else { return };
                m.on_datagram(&conn, &d);
            }
            if let Some(m) = me.upgrade()
                && let Ok(mut r) = m.dgram_readers.lock()
            {
                r.remove(&id);
            }
        });
    }

    fn on_datagram(&self, conn: &quinn::Connection, d: &[u8]) {
        let (Some(&DGRAM_STREAM), Some(id)) = (d.first(), d.get(1..STREAM_HEADER)) else {
            return;
        };
        let mut b = [0u8; 8];
        b.copy_from_slice(id);
        let socket = u64::from_le_bytes(b);
        let tx = self.sockets.lock().ok().and_then(|s| {
            s.get(&socket)
                .filter(|s| s.conn.stable_id() == conn.stable_id())
                .map(|s| s.tx.clone())
        });
        if let Some(tx) = tx {
            // Streams are unreliable by contract: a client that is behind loses frames.
            let _ = tx.try_send(SocketEvent::Stream {
                socket,
                data: d[STREAM_HEADER..].to_vec(),
            });
        }
    }
}

//! The soft bus socket API handlers of IPC clients.

use crate::transport::session::SessionError;
use oxh_ipc::{ConnHandle, RemoteError};
use std::sync::Arc;

// OpenHarmony's device-manager failure code (JS level), defined with the other DM codes.
use oxh_devauth::bind::code::DM_ERR_FAILED;

use super::events::IpcSink;
use super::{Softbus, err};

impl Softbus {
    fn forward(conn: ConnHandle, sub: u64) -> crate::transport::session::EventTx {
        crate::transport::session::EventTx::Sink(Arc::new(IpcSink { conn, sub }))
    }

    /// Listen on a session name for a client.
    pub fn listen(&self, conn: &ConnHandle, name: &str, sub: u64) -> Result<(), RemoteError> {
        self.sessions
            .listen(name, conn.id(), Self::forward(conn.clone(), sub))
            .map_err(session_err)
    }

    /// Open a socket for a client.
    pub async fn bind_socket(
        &self,
        conn: &ConnHandle,
        a: crate::api::BindSocketArgs,
    ) -> Result<u64, RemoteError> {
        self.sessions
            .bind(
                &a.network_id,
                &a.name,
                &a.own_name,
                a.data_type,
                conn.id(),
                Self::forward(conn.clone(), a.sub),
            )
            .await
            .map_err(session_err)
    }

    /// Send on a client's socket; bytes may come in parts, which are kept as they arrived
    /// (not copied together) and handed to the socket with the last one.
    pub async fn send(
        &self,
        conn: &ConnHandle,
        socket: u64,
        kind: crate::proto::DataType,
        data: bytes::Bytes,
        more: bool,
    ) -> Result<(), RemoteError> {
        let key = (conn.id(), socket);
        let parts = {
            let mut p = self
                .pending_bytes
                .lock()
                .map_err(|_| err(DM_ERR_FAILED, "poisoned"))?;
            let parts = p.entry(key).or_default();
            let have: usize = parts.iter().map(|b| b.len()).sum();
            if have + data.len() > crate::transport::session::MAX_BYTES {
                p.remove(&key);
                return Err(err(
                    401,
                    format!(
                        "bytes exceed the {}-byte (4 MiB) limit",
                        crate::transport::session::MAX_BYTES
                    ),
                ));
            }
            parts.push(data);
            if more {
                return Ok(());
            }
            p.remove(&key).unwrap_or_default()
        };
        self.sessions
            .send_parts(socket, conn.id(), kind, parts)
            .await
            .map_err(session_err)
    }

    /// One step of sending a file from a client that reads the file itself.
    pub async fn send_file(
        &self,
        conn: &ConnHandle,
        a: crate::api::SendFileArgs,
    ) -> Result<(), RemoteError> {
        self.sessions
            .send_file(a.socket, conn.id(), a.op)
            .await
            .map_err(session_err)
    }

    /// The next piece of a file arriving on a client's socket.
    pub async fn recv_file(
        &self,
        conn: &ConnHandle,
        socket: u64,
    ) -> Result<crate::api::FilePiece, RemoteError> {
        self.sessions
            .recv_file(socket, conn.id())
            .await
            .map_err(session_err)
    }

    /// A receiving client's verdict on a file.
    pub async fn file_result(
        &self,
        conn: &ConnHandle,
        a: crate::api::FileResultArgs,
    ) -> Result<(), RemoteError> {
        self.sessions
            .file_result(a.socket, conn.id(), a.seq, a.error)
            .await
            .map_err(session_err)
    }

    /// One unreliable stream frame on a client's socket.
    pub fn send_stream(
        &self,
        conn: &ConnHandle,
        a: &crate::api::SendStreamArgs,
    ) -> Result<(), RemoteError> {
        self.sessions
            .send_stream(a.socket, conn.id(), &a.data)
            .map_err(session_err)
    }

    /// The largest stream frame a client's socket takes now.
    pub fn max_stream(&self, conn: &ConnHandle, socket: u64) -> Result<usize, RemoteError> {
        self.sessions
            .max_stream(socket, conn.id())
            .map_err(session_err)
    }

    /// Close a client's socket.
    pub async fn shutdown_socket(&self, conn: &ConnHandle, socket: u64) -> Result<(), RemoteError> {
        self.sessions
            .shutdown(socket, conn.id())
            .await
            .map_err(session_err)
    }

    /// A client is gone: its listeners, sockets and subscriptions go too.
    pub fn client_died(&self, conn: &ConnHandle) {
        self.sessions.forget_owner(conn.id());
        if let Ok(mut p) = self.pending_bytes.lock() {
            p.retain(|(o, _), _| *o != conn.id());
        }
        if let Ok(mut f) = self.fd_sends.lock() {
            f.retain(|(o, _), _| *o != conn.id());
        }
        if let Ok(mut f) = self.fd_recvs.lock() {
            f.retain(|(o, _), _| *o != conn.id());
        }
        if let Ok(mut s) = self.state_subs.lock() {
            s.retain(|(c, _)| c.id() != conn.id());
        }
    }
}

pub(super) fn session_err(e: SessionError) -> RemoteError {
    let code = match &e {
        SessionError::Invalid(_) => 401,
        // SOFTBUS_* failures surface as OpenHarmony's generic soft bus error.
        _ => 32_390_000,
    };
    RemoteError::new(code, e.to_string())
}

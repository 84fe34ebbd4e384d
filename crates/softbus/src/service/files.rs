//! Files through a caller's descriptor: reading, writing and hashing on blocking threads.

use oxh_ipc::{ConnHandle, RemoteError};

// OpenHarmony's device-manager failure code (JS level), defined with the other DM codes.
use oxh_devauth::bind::code::DM_ERR_FAILED;

use super::sockets::session_err;
use super::{Softbus, err};

/// A file being sent from a caller's descriptor: its size, how far it went, its hash so far.
pub(super) struct FdSend {
    size: u64,
    sent: u64,
    hash: crate::proto::FileHasher,
}

/// A file being received into a caller's descriptor, between steps: its writer (which may
/// hold a gathered, not yet written tail) and the hash of what arrived.
pub(super) struct FdRecv {
    writer: oxh_kal::direct::SeqWriter,
    hash: crate::proto::FileHasher,
}

impl Softbus {
    /// One step of sending a file through the caller's descriptor: begins it (when `a.name`
    /// is set), then reads, hashes and sends it up to `a.upto`; at its end, sends the hash
    /// and waits for the receiver's verdict. Reading and hashing run on a blocking thread
    /// while the previous chunk goes out.
    pub async fn send_file_fd(
        &self,
        conn: &ConnHandle,
        a: crate::api::SendFileFdArgs,
        fd: std::os::fd::OwnedFd,
    ) -> Result<crate::api::FileFdSent, RemoteError> {
        use crate::proto::{FileHasher, FileOp, MAX_FILE_CHUNK};
        let file = std::fs::File::from(fd);
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(err(
                oxh_ipc::code::INVALID_PARAM,
                "SendFile needs a regular file",
            ));
        }
        let (owner, socket) = (conn.id(), a.socket);
        let key = (owner, socket);
        let lock_err = || err(DM_ERR_FAILED, "poisoned");
        if let Some(name) = a.name {
            let size = file
                .metadata()
                .map_err(|e| {
                    err(
                        oxh_ipc::code::INVALID_PARAM,
                        format!("cannot read the file: {e}"),
                    )
                })?
                .len();
            self.sessions
                .send_file(socket, owner, FileOp::Begin { name, size })
                .await
                .map_err(session_err)?;
            let st = FdSend {
                size,
                sent: 0,
                hash: FileHasher::new(),
            };
            self.fd_sends
                .lock()
                .map_err(|_| lock_err())?
                .insert(key, st);
        }
        let FdSend { size, sent, hash } = self
            .fd_sends
            .lock()
            .map_err(|_| lock_err())?
            .remove(&key)
            .ok_or_else(|| err(oxh_ipc::code::INVALID_PARAM, "no file begun on this socket"))?;
        let upto = a.upto.clamp(sent, size);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let reader = tokio::task::spawn_blocking(move || {
            let mut hash = hash;
            let mut at = sent;
            while at < upto {
                let n = (upto - at).min(MAX_FILE_CHUNK as u64) as usize;
                let buf = oxh_kal::read_exact_at(&file, n, at)?;
                hash.update(&buf);
                at += n as u64;
                if tx.blocking_send(buf).is_err() {
                    break;
                }
            }
            Ok::<_, std::io::Error>((hash, at))
        });
        let mut done = sent;
        let mut failed = None;
        while let Some(buf) = rx.recv().await {
            let n = buf.len() as u64;
            let op = FileOp::Data {
                offset: done,
                data: buf,
            };
            if let Err(e) = self.sessions.send_file(socket, owner, op).await {
                failed = Some(session_err(e));
                break;
            }
            done += n;
        }
        drop(rx);
        let read = reader.await;
        let hash = match (failed, read) {
            (None, Ok(Ok((hash, at)))) if at == done => hash,
            (failed, read) => {
                let e = failed.unwrap_or_else(|| match read {
                    Ok(Err(e)) => err(
                        oxh_ipc::code::INVALID_PARAM,
                        format!("cannot read the file: {e}"),
                    ),
                    _ => err(DM_ERR_FAILED, "file reader failed"),
                });
                let reason = e.message.clone();
                let _ = self
                    .sessions
                    .send_file(socket, owner, FileOp::Abort { reason })
                    .await;
                return Err(e);
            }
        };
        if done < size {
            let st = FdSend {
                size,
                sent: done,
                hash,
            };
            self.fd_sends
                .lock()
                .map_err(|_| lock_err())?
                .insert(key, st);
            return Ok(crate::api::FileFdSent {
                sent: done,
                size,
                checksum: None,
            });
        }
        let checksum = hash.finish();
        self.sessions
            .send_file(socket, owner, FileOp::End { checksum })
            .await
            .map_err(session_err)?;
        Ok(crate::api::FileFdSent {
            sent: done,
            size,
            checksum: Some(checksum),
        })
    }

    /// One step of receiving a file into the caller's descriptor (its temp file): writes and
    /// hashes the pieces on a blocking thread while the next ones arrive; at the end, syncs
    /// the file and reports both hashes. The caller checks them, renames, and answers with
    /// [`Softbus::file_result`].
    pub async fn recv_file_fd(
        &self,
        conn: &ConnHandle,
        a: crate::api::RecvFileFdArgs,
        fd: std::os::fd::OwnedFd,
    ) -> Result<crate::api::FileFdReceived, RemoteError> {
        use crate::api::FileFdReceived;
        use crate::proto::{FileHasher, FilePiece};
        let file = std::fs::File::from(fd);
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(err(
                oxh_ipc::code::INVALID_PARAM,
                "RecvFile needs a regular file",
            ));
        }
        let (owner, socket) = (conn.id(), a.socket);
        let key = (owner, socket);
        let lock_err = || err(DM_ERR_FAILED, "poisoned");
        let state = self.fd_recvs.lock().map_err(|_| lock_err())?.remove(&key);
        // The first step's descriptor is the one written through; later steps pass the same
        // temp file again, and the writer keeps what it gathered between them. A state left
        // from a file whose steps stopped early belongs to another file: never write into it.
        let same_file = |w: &oxh_kal::direct::SeqWriter| {
            use std::os::unix::fs::MetadataExt;
            match (w.file().metadata(), file.metadata()) {
                (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
                _ => false,
            }
        };
        let (writer, hash) = match state {
            Some(FdRecv { writer, hash }) if same_file(&writer) => (writer, hash),
            _ => (oxh_kal::direct::SeqWriter::new(file, 0), FileHasher::new()),
        };
        let got = writer.position();
        let mut hash = hash;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        // The writing thread only copies and writes (direct writes block for the device);
        // the hash is taken here, as each piece arrives and is still in cache.
        let writer = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            while let Some(d) = rx.blocking_recv() {
                writer.write(&d)?;
            }
            Ok::<_, std::io::Error>(writer)
        });
        let mut received = got;
        let mut write_failed = false;
        let outcome = loop {
            if received >= a.upto {
                break None;
            }
            match self.sessions.recv_file(socket, owner).await {
                Ok(FilePiece::Data(d)) => {
                    received += d.len() as u64;
                    hash.update(&d);
                    if !write_failed && tx.send(d).await.is_err() {
                        // The writer failed; keep draining the file, its error comes at the end.
                        write_failed = true;
                    }
                }
                Ok(end @ FilePiece::End { .. }) => break Some(Ok(end)),
                Ok(FilePiece::Broken { reason }) => break Some(Ok(FilePiece::Broken { reason })),
                Err(e) => break Some(Err(session_err(e))),
            }
        };
        drop(tx);
        let written = writer.await;
        match outcome {
            None => match written {
                Ok(Ok(writer)) => {
                    let st = FdRecv { writer, hash };
                    self.fd_recvs
                        .lock()
                        .map_err(|_| lock_err())?
                        .insert(key, st);
                    Ok(FileFdReceived::Progress { received })
                }
                // Keep draining on later steps, so that the end reports the error.
                Ok(Err(e)) => Err(err(DM_ERR_FAILED, format!("cannot write the file: {e}"))),
                Err(_) => Err(err(DM_ERR_FAILED, "file writer failed")),
            },
            Some(Err(e)) => Err(e),
            Some(Ok(FilePiece::Broken { reason })) => Ok(FileFdReceived::Broken { reason }),
            Some(Ok(FilePiece::End { checksum, seq })) => {
                let synced = match written {
                    Ok(Ok(writer)) => tokio::task::spawn_blocking(move || {
                        writer.finish()?.sync_all().map(|_| hash.finish())
                    })
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|r| r),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(std::io::Error::other(e.to_string())),
                };
                let (actual, error) = match synced {
                    Ok(h) => (Some(h), None),
                    Err(e) => (None, Some(format!("cannot write the file: {e}"))),
                };
                Ok(FileFdReceived::End {
                    seq,
                    checksum,
                    actual,
                    error,
                    received,
                })
            }
            Some(Ok(FilePiece::Data(_))) => Err(err(DM_ERR_FAILED, "unexpected file piece")),
        }
    }
}

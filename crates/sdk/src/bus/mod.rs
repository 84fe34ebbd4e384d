//! Soft bus sockets (OpenHarmony's Socket API): listen on a name, bind to a peer's name, send
//! messages (≤ 4 KiB), bytes (≤ 4 MiB), files of any size and unreliable stream frames.
//!
//! Files: the daemon never opens a path its caller names, so [`Bus::send_file`] opens the
//! files here and passes their descriptors (SCM_RIGHTS) to the daemon, which reads and hashes
//! them itself (the contents do not cross IPC). On the receiving side
//! [`SocketEvents::save_files_into`] creates each incoming file here under a temp name and
//! passes its descriptor to the daemon, which writes, hashes and syncs it; this side renames
//! it to its final name only once it is complete and its checksum (XXH3-128) matches the
//! sender's, and removes the temp file otherwise.

use crate::{Device, Error};
use oxh_ipc::RemoteError;
use oxh_softbus::api::{
    self, BindSocketArgs, FILE_FD_STEP, FileFdSent, IPC_PART, ListenArgs, SOFTBUS_SA_ID,
    SendFileFdArgs, SendStreamArgs,
};
pub use oxh_softbus::proto::{DataType, MAX_BYTES, MAX_MESSAGE, sanitize_file_name};
use oxh_softbus::proto::{FileHasher, put_varint};
use std::io::Read;
use std::path::{Path, PathBuf};

mod events;
pub use events::{SocketEvent, SocketEvents};

/// Proxy for the soft bus SA.
pub struct Bus<'a> {
    pub(crate) dev: &'a Device,
}

/// Progress of [`Bus::send_file`], after each chunk handed to the soft bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendProgress {
    /// Which file (0-based) of `count`.
    pub index: usize,
    /// How many files.
    pub count: usize,
    /// Destination name.
    pub name: String,
    /// Bytes of this file sent so far.
    pub sent: u64,
    /// Its size.
    pub size: u64,
}

/// A file the receiver confirmed: saved with a matching checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFile {
    /// Destination name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Its checksum (XXH3-128), lower-case hex.
    pub checksum: String,
}

/// Lower-case hex of a digest.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A file's checksum (XXH3-128), lower-case hex, as the file transfer computes it (for
/// callers that want to compare a source with what arrived).
pub fn checksum_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = FileHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finish()))
}

fn local(code: i32, msg: String) -> Error {
    Error::Remote(RemoteError::new(code, msg))
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
        Ok(SocketEvents::new(sub, self.dev.client.clone()))
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
        Ok((socket, SocketEvents::new(sub, self.dev.client.clone())))
    }

    /// Sends a message (≤ 4 KiB).
    pub async fn send_message(&self, socket: u64, data: &[u8]) -> Result<(), Error> {
        let r = self
            .send_part(socket, DataType::Message, data, false)
            .await?
            .reply()
            .await?;
        oxh_ipc::decode::<()>(&r).map_err(|e| Error::Decode(e.message))
    }

    /// Writes one [`api::bus::SEND`] request, its [`api::SendArgs`] encoded by hand around
    /// `data` so that the payload is copied once, into the request frame, and returns without
    /// waiting for its reply.
    async fn send_part(
        &self,
        socket: u64,
        kind: DataType,
        data: &[u8],
        more: bool,
    ) -> Result<oxh_ipc::PendingReply, Error> {
        let mut head = Vec::with_capacity(24);
        put_varint(socket, &mut head);
        // postcard's variant index of the DataType.
        head.push(match kind {
            DataType::Message => 0,
            DataType::Bytes => 1,
            DataType::File => 2,
        });
        put_varint(data.len() as u64, &mut head);
        let more = [u8::from(more)];
        self.dev
            .client
            .send_parts(SOFTBUS_SA_ID, api::bus::SEND, &[&head, data, &more])
            .await
    }

    /// Sends bytes (≤ 4 MiB), in parts under the IPC transaction limit. Each part is copied
    /// once, into its request frame: the [`api::SendArgs`] around it are encoded by hand.
    /// All parts are written before any reply is awaited (the daemon takes them in order and
    /// answers a part that is not the last at once), so a payload costs one round trip to
    /// the daemon, not one per part.
    pub async fn send_bytes(&self, socket: u64, data: &[u8]) -> Result<(), Error> {
        if data.len() > MAX_BYTES {
            return Err(local(
                401,
                format!("bytes exceed the {MAX_BYTES}-byte (4 MiB) limit"),
            ));
        }
        let n = data.len().div_ceil(IPC_PART).max(1);
        let mut replies = Vec::with_capacity(n);
        let writing = self.dev.bytes_send.lock().await;
        for i in 0..n {
            let part = data
                .get(i * IPC_PART..((i + 1) * IPC_PART).min(data.len()))
                .unwrap_or(&[]);
            replies.push(
                self.send_part(socket, DataType::Bytes, part, i + 1 < n)
                    .await?,
            );
        }
        drop(writing);
        for r in replies {
            let r = r.reply().await?;
            oxh_ipc::decode::<()>(&r).map_err(|e| Error::Decode(e.message))?;
        }
        Ok(())
    }

    /// Sends files (SendFile), each under its own file name; see [`Bus::send_files_as`].
    pub async fn send_file<P: AsRef<Path>>(
        &self,
        socket: u64,
        paths: &[P],
        progress: impl FnMut(&SendProgress),
    ) -> Result<Vec<SentFile>, Error> {
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            let p = p.as_ref();
            let name = p.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                local(
                    oxh_ipc::code::INVALID_PARAM,
                    format!("{} names no UTF-8 file name", p.display()),
                )
            })?;
            files.push((p.to_path_buf(), name.to_string()));
        }
        self.send_files_as(socket, &files, progress).await
    }

    /// Sends files (SendFile with OpenHarmony's sFileList/dFileList): each `(source,
    /// destination name)` in turn. This process reads the sources; each returns once the
    /// receiver has saved it with a matching checksum, and the first failure stops the rest.
    /// `progress` is called after each chunk.
    pub async fn send_files_as(
        &self,
        socket: u64,
        files: &[(PathBuf, String)],
        mut progress: impl FnMut(&SendProgress),
    ) -> Result<Vec<SentFile>, Error> {
        let mut done = Vec::with_capacity(files.len());
        for (index, (path, name)) in files.iter().enumerate() {
            let mut report = |sent, size| {
                progress(&SendProgress {
                    index,
                    count: files.len(),
                    name: name.clone(),
                    sent,
                    size,
                })
            };
            done.push(self.send_one(socket, path, name, &mut report).await?);
        }
        Ok(done)
    }

    /// Sends one file: the daemon reads it through this process's descriptor (the contents
    /// never cross IPC), a step at a time so that `progress` hears how far it got.
    async fn send_one(
        &self,
        socket: u64,
        path: &Path,
        name: &str,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<SentFile, Error> {
        use std::os::fd::AsFd;
        let cant = |e: std::io::Error| {
            local(
                oxh_ipc::code::INVALID_PARAM,
                format!("cannot read {}: {e}", path.display()),
            )
        };
        let file = std::fs::File::open(path).map_err(cant)?;
        let meta = file.metadata().map_err(cant)?;
        if !meta.is_file() {
            return Err(local(
                oxh_ipc::code::INVALID_PARAM,
                format!("{} is not a file", path.display()),
            ));
        }
        let size = meta.len();
        progress(0, size);
        let mut sent = 0u64;
        let mut first = true;
        loop {
            let args = SendFileFdArgs {
                socket,
                name: first.then(|| name.to_string()),
                upto: sent.saturating_add(FILE_FD_STEP),
            };
            let r: FileFdSent = self
                .dev
                .client
                .call_with_fd(SOFTBUS_SA_ID, api::bus::SEND_FILE_FD, &args, file.as_fd())
                .await?;
            first = false;
            progress(r.sent, r.size);
            if let Some(checksum) = r.checksum {
                return Ok(SentFile {
                    name: name.into(),
                    size: r.size,
                    checksum: hex(&checksum),
                });
            }
            if r.sent <= sent {
                return Err(local(
                    32_390_000,
                    format!("sending {} made no progress", path.display()),
                ));
            }
            sent = r.sent;
        }
    }

    /// Sends one stream frame (SendStream) as an unreliable datagram: it may be lost, and a
    /// frame over [`Bus::max_stream`] fails with 401.
    pub async fn send_stream(&self, socket: u64, data: &[u8]) -> Result<(), Error> {
        let a = SendStreamArgs {
            socket,
            data: data.to_vec(),
        };
        self.dev
            .client
            .call(SOFTBUS_SA_ID, api::bus::SEND_STREAM, &a)
            .await
    }

    /// The largest stream frame the socket's path takes now (it can grow as the path MTU is
    /// discovered).
    pub async fn max_stream(&self, socket: u64) -> Result<usize, Error> {
        let n: u64 = self
            .dev
            .client
            .call(SOFTBUS_SA_ID, api::bus::MAX_STREAM, &socket)
            .await?;
        Ok(n as usize)
    }

    /// Closes a socket.
    pub async fn shutdown(&self, socket: u64) -> Result<(), Error> {
        self.dev
            .client
            .call(SOFTBUS_SA_ID, api::bus::SHUTDOWN, &socket)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::events::parse_bytes_part;
    use super::*;
    use oxh_softbus::api::SocketEventView;

    #[test]
    fn hand_encoded_send_args_and_parsed_parts_match_postcard() {
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let socket = 1u64 << 33;
        let mut head = Vec::new();
        put_varint(socket, &mut head);
        head.push(1);
        put_varint(data.len() as u64, &mut head);
        let mut mine = head.clone();
        mine.extend_from_slice(&data);
        mine.push(1);
        let a = api::SendArgs {
            socket,
            kind: DataType::Bytes,
            data: data.clone(),
            more: true,
        };
        assert_eq!(mine, oxh_ipc::encode(&a));
        for last in [false, true] {
            let v = oxh_ipc::encode(&SocketEventView::BytesPart {
                socket,
                data: data.clone(),
                last,
            });
            assert_eq!(parse_bytes_part(&v), Some((socket, &data[..], last)));
            assert_eq!(parse_bytes_part(&v[..v.len() - 1]), None);
        }
        let m = oxh_ipc::encode(&SocketEventView::Message { socket, data });
        assert_eq!(parse_bytes_part(&m), None);
    }
}

//! A connection in OpenHarmony's client protocol ([`crate::channel`]) on a TCP stream, both
//! ends: the host server's ([`ServerConn`]) and the `hdc` tool's ([`ClientConn`]). Each has a
//! reading half and a writing half, so a shell's input and output run at once.

use crate::channel::{self, ChannelError, MAX_BODY, ToClient, ToServer};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// How long a peer may take over its handshake and its command line: a connection that says
/// nothing holds a slot of the server's.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads bodies; cancel-safe (bytes read stay in the buffer).
pub struct Reader {
    rd: OwnedReadHalf,
    buf: BytesMut,
}

impl Reader {
    /// The next body, or `None` when the peer closed.
    pub async fn body(&mut self) -> Result<Option<BytesMut>, ChannelError> {
        loop {
            if let Some(b) = channel::take_body(&mut self.buf)? {
                return Ok(Some(b));
            }
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }
}

/// Writes bodies.
pub struct Writer {
    wr: OwnedWriteHalf,
}

impl Writer {
    /// Sends one body (at most [`MAX_BODY`]).
    pub async fn raw(&mut self, body: &[u8]) -> std::io::Result<()> {
        self.tagged(None, body).await
    }

    /// Sends one body made of an optional tag byte and `data`, framed in one copy (output
    /// is the bulk of what a connection carries).
    async fn tagged(&mut self, tag: Option<u8>, data: &[u8]) -> std::io::Result<()> {
        let len = data.len() + usize::from(tag.is_some());
        let mut b = Vec::with_capacity(4 + len);
        b.extend_from_slice(&(len as u32).to_be_bytes());
        b.extend(tag);
        b.extend_from_slice(data);
        self.wr.write_all(&b).await
    }

    /// Closes the sending direction (the peer reads EOF).
    pub async fn finish(&mut self) {
        let _ = self.wr.shutdown().await;
    }
}

fn split(tcp: TcpStream) -> (Reader, Writer) {
    let (rd, wr) = tcp.into_split();
    (
        Reader {
            rd,
            buf: BytesMut::with_capacity(64 * 1024),
        },
        Writer { wr },
    )
}

/// The host server's end of one client connection.
pub struct ServerConn {
    /// Client bodies.
    pub reader: Reader,
    /// Server bodies.
    pub writer: ServerWriter,
    /// The client's handshake.
    pub hello: channel::ClientHello,
}

/// The server's writing half: plain OpenHarmony bodies, or tagged ones in the extension.
pub struct ServerWriter {
    w: Writer,
    ext: bool,
}

impl ServerConn {
    /// Sends the handshake (`ext`: offering the extension) and reads the client's.
    pub async fn accept(tcp: TcpStream, ext: bool) -> Result<ServerConn, String> {
        let mut id = [0u8; 4];
        let _ = getrandom::fill(&mut id);
        let id = u32::from_be_bytes(id);
        let (mut reader, mut w) = split(tcp);
        w.raw(&channel::server_handshake(id, ext))
            .await
            .map_err(|e| e.to_string())?;
        let b = tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.body())
            .await
            .map_err(|_| "no handshake".to_string())?
            .map_err(|e| e.to_string())?
            .ok_or("closed before its handshake")?;
        let mut hello = channel::parse_client_handshake(&b, id).map_err(|e| e.to_string())?;
        hello.ext &= ext;
        Ok(ServerConn {
            reader,
            writer: ServerWriter { w, ext: hello.ext },
            hello,
        })
    }

    /// The next message from the client (a plain body is input, or the command line when
    /// `command` is set), or `None` when it closed.
    pub async fn next(&mut self, command: bool) -> Result<Option<ToServer>, ChannelError> {
        let Some(b) = self.reader.body().await? else {
            return Ok(None);
        };
        Ok(Some(decode_to_server(&b, self.writer.ext, command)?))
    }
}

/// A client body as a message: tagged in the extension; else a command line or input.
pub fn decode_to_server(b: &[u8], ext: bool, command: bool) -> Result<ToServer, ChannelError> {
    if ext {
        ToServer::decode(b)
    } else if command {
        if b.len() > channel::MAX_COMMAND {
            return Err(ChannelError::TooLarge(b.len()));
        }
        Ok(ToServer::Command(channel::command_text(b)))
    } else {
        Ok(ToServer::In(b.to_vec()))
    }
}

impl ServerWriter {
    /// Whether the client speaks the extension.
    pub fn ext(&self) -> bool {
        self.ext
    }

    /// Output for the client's stdout, in bodies of at most [`MAX_BODY`].
    pub async fn out(&mut self, d: &[u8]) -> std::io::Result<()> {
        self.data(d, false).await
    }

    /// Output for the client's stderr (stdout for OpenHarmony's clients, which have one).
    pub async fn err(&mut self, d: &[u8]) -> std::io::Result<()> {
        self.data(d, true).await
    }

    async fn data(&mut self, d: &[u8], err: bool) -> std::io::Result<()> {
        let room = if self.ext { MAX_BODY - 1 } else { MAX_BODY };
        let tag = self.ext.then_some(if err {
            channel::TAG_ERR
        } else {
            channel::TAG_OUT
        });
        for c in d.chunks(room) {
            self.w.tagged(tag, c).await?;
        }
        Ok(())
    }

    /// A line of text for stdout. OpenHarmony's server ends a message that has no newline
    /// with CRLF (its `EchoClient`); our tool gets a plain newline.
    pub async fn line(&mut self, t: &str) -> std::io::Result<()> {
        let end = match (t.ends_with('\n'), self.ext) {
            (true, _) => "",
            (false, true) => "\n",
            (false, false) => "\r\n",
        };
        self.out(format!("{t}{end}").as_bytes()).await
    }

    /// OpenHarmony's `checkserver` answer, a body that starts with a command id: OpenHarmony's
    /// clients get it as is; ours gets the version as text.
    pub async fn check_server(&mut self, body: &[u8]) {
        if self.ext {
            let text = String::from_utf8_lossy(body.get(2..).unwrap_or_default()).into_owned();
            let _ = self.line(&text).await;
            self.exit(0, "").await;
        } else {
            let _ = self.w.raw(body).await;
            self.w.finish().await;
        }
    }

    /// A transfer's progress (the extension only).
    pub async fn progress(&mut self, done: u64, total: u64) -> std::io::Result<()> {
        if self.ext {
            self.w
                .raw(&ToClient::Progress { done, total }.encode())
                .await?;
        }
        Ok(())
    }

    /// The command ended: the extension gets the status, OpenHarmony's clients the message;
    /// then the connection closes, which ends the command for them.
    pub async fn exit(&mut self, code: i32, message: &str) {
        if self.ext {
            let m = ToClient::Exit {
                code,
                message: message.to_string(),
            };
            let _ = self.w.raw(&m.encode()).await;
        } else if !message.is_empty() {
            let _ = self.line(message).await;
        }
        self.w.finish().await;
    }
}

/// The `hdc` tool's end of a connection to the host server.
pub struct ClientConn {
    /// Server bodies.
    pub reader: Reader,
    /// Client bodies.
    pub writer: ClientWriter,
}

/// The tool's writing half.
pub struct ClientWriter {
    w: Writer,
    ext: bool,
}

impl ClientConn {
    /// Reads the server's handshake and answers it with `connect_key`, offering the extension.
    pub async fn handshake(tcp: TcpStream, connect_key: &str) -> Result<ClientConn, String> {
        let (mut reader, mut w) = split(tcp);
        let b = tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.body())
            .await
            .map_err(|_| "[Fail]the hdc server did not answer".to_string())?
            .map_err(|e| e.to_string())?
            .ok_or("[Fail]the hdc server closed the connection")?;
        let s = channel::parse_server_handshake(&b).map_err(|e| e.to_string())?;
        w.raw(&channel::client_handshake(
            s.channel_id,
            connect_key,
            false,
            s.ext,
        ))
        .await
        .map_err(|e| format!("[Fail]hdc server: {e}"))?;
        Ok(ClientConn {
            reader,
            writer: ClientWriter { w, ext: s.ext },
        })
    }

    /// The next message from the server (plain bodies are output), or `None` at its close.
    pub async fn next(&mut self) -> Result<Option<ToClient>, ChannelError> {
        next_to_client(&mut self.reader, self.writer.ext).await
    }

    /// The reading half on its own, when the writing half goes to another task.
    pub fn reader_only(reader: Reader, ext: bool) -> ClientReader {
        ClientReader { reader, ext }
    }
}

/// The tool's reading half.
pub struct ClientReader {
    reader: Reader,
    ext: bool,
}

impl ClientReader {
    /// Whether the server speaks the extension.
    pub fn ext(&self) -> bool {
        self.ext
    }

    /// As [`ClientConn::next`].
    pub async fn next(&mut self) -> Result<Option<ToClient>, ChannelError> {
        next_to_client(&mut self.reader, self.ext).await
    }
}

async fn next_to_client(r: &mut Reader, ext: bool) -> Result<Option<ToClient>, ChannelError> {
    let Some(b) = r.body().await? else {
        return Ok(None);
    };
    if ext {
        Ok(Some(ToClient::decode(&b)?))
    } else {
        Ok(Some(ToClient::Out(b.to_vec())))
    }
}

impl ClientWriter {
    /// Whether the server speaks the extension.
    pub fn ext(&self) -> bool {
        self.ext
    }

    /// Sends a message; without the extension only the command line and input have a plain
    /// form (the rest is dropped, as OpenHarmony's server would not know it).
    pub async fn send(&mut self, m: &ToServer) -> std::io::Result<()> {
        if self.ext {
            return self.w.raw(&m.encode()).await;
        }
        match m {
            ToServer::Command(c) => {
                let mut b = c.as_bytes().to_vec();
                b.push(0);
                self.w.raw(&b).await
            }
            ToServer::In(d) => {
                for c in d.chunks(MAX_BODY) {
                    self.w.raw(c).await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn extension_is_used_only_when_both_ends_offer_it() {
        for (server_ext, want) in [(true, true), (false, false)] {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let srv = tokio::spawn(async move {
                let (t, _) = l.accept().await.unwrap();
                let mut c = ServerConn::accept(t, server_ext).await.unwrap();
                let cmd = c.next(true).await.unwrap();
                c.writer.out(b"hi").await.unwrap();
                c.writer.exit(3, "bye").await;
                (c.hello, cmd)
            });
            let t = TcpStream::connect(addr).await.unwrap();
            let mut c = ClientConn::handshake(t, "dev:1").await.unwrap();
            assert_eq!(c.writer.ext(), want);
            c.writer
                .send(&ToServer::Command("shell ls".into()))
                .await
                .unwrap();
            let mut got = Vec::new();
            while let Some(m) = c.next().await.unwrap() {
                got.push(m);
            }
            let (hello, cmd) = srv.await.unwrap();
            assert_eq!(hello.connect_key, "dev:1");
            assert_eq!(cmd, Some(ToServer::Command("shell ls".into())));
            if want {
                assert_eq!(
                    got,
                    vec![
                        ToClient::Out(b"hi".to_vec()),
                        ToClient::Exit {
                            code: 3,
                            message: "bye".into()
                        }
                    ]
                );
            } else {
                assert_eq!(
                    got,
                    vec![
                        ToClient::Out(b"hi".to_vec()),
                        ToClient::Out(b"bye\r\n".to_vec())
                    ]
                );
            }
        }
    }
}

//! The byte stream of an OpenHarmony hdc session, both roles: `"HW"` packets in plaintext,
//! and after the TLS-PSK switch the same packets inside TLS records (the whole stream; hdc
//! frames nothing outside TLS then). [`PacketRx`] yields packets, [`PacketTx`] takes whole
//! encoded packets; both switch at the exact byte where the handshake says so
//! ([`crate::ohos_auth::Action::Switch`]): what the reader already holds past the switch
//! packet is ciphertext.
//!
//! The two halves share one TLS engine (one TLS connection has one state), each holding
//! its lock only to encrypt or decrypt, never across I/O.

use crate::ohos::{self, Packet, WireError};
use crate::ohos_tls::{TlsEngine, TlsError};
use bytes::BytesMut;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 256 * 1024;

/// The engine both halves use after the switch.
pub type SharedTls = Arc<Mutex<Box<dyn TlsEngine>>>;

/// Errors of the session's stream.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not hdc packets.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Not our TLS.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

fn lock(t: &SharedTls) -> MutexGuard<'_, Box<dyn TlsEngine>> {
    // A panic elsewhere under this lock leaves nothing half-done that matters here: the
    // engine refuses what it cannot decrypt.
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// Packets off the stream.
pub struct PacketRx<R = OwnedReadHalf> {
    rd: R,
    /// Plaintext not yet parsed.
    buf: BytesMut,
    tls: Option<SharedTls>,
    /// Ciphertext as read (after the switch).
    raw: Vec<u8>,
    /// The peer ended its TLS (close_notify): the stream's end.
    closed: bool,
}

impl<R: AsyncRead + Unpin> PacketRx<R> {
    /// A plaintext reader over `rd`.
    pub fn new(rd: R) -> Self {
        PacketRx {
            rd,
            buf: BytesMut::with_capacity(64 * 1024),
            tls: None,
            raw: Vec::new(),
            closed: false,
        }
    }

    /// The next packet; `None` at the end of the stream.
    pub async fn next(&mut self) -> Result<Option<Packet>, LinkError> {
        loop {
            if let Some(p) = ohos::decode_packet(&mut self.buf)? {
                return Ok(Some(p));
            }
            if self.closed {
                return Ok(None);
            }
            match &self.tls {
                None => {
                    self.buf.reserve(READ_CHUNK);
                    if self.rd.read_buf(&mut self.buf).await? == 0 {
                        return Ok(None);
                    }
                }
                Some(t) => {
                    self.raw.resize(READ_CHUNK, 0);
                    let n = self.rd.read(&mut self.raw).await?;
                    if n == 0 {
                        return Ok(None);
                    }
                    let mut t = lock(t);
                    t.feed(&self.raw[..n]);
                    match t.decrypt(&mut self.buf) {
                        Err(TlsError::Closed) => self.closed = true,
                        r => r?,
                    }
                }
            }
        }
    }

    /// From here on the stream is TLS through `tls`; what was read past the last packet
    /// returned is its first ciphertext.
    pub fn switch(&mut self, tls: SharedTls) -> Result<(), LinkError> {
        if !self.buf.is_empty() {
            let rest = self.buf.split();
            let mut t = lock(&tls);
            t.feed(&rest);
            t.decrypt(&mut self.buf)?;
        }
        self.tls = Some(tls);
        Ok(())
    }

    /// Whether the stream is TLS.
    pub fn is_encrypted(&self) -> bool {
        self.tls.is_some()
    }
}

/// Packets onto the stream.
pub struct PacketTx<W = OwnedWriteHalf> {
    wr: W,
    tls: Option<SharedTls>,
    /// Records waiting to be written (kept, so its allocation is reused).
    out: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> PacketTx<W> {
    /// A plaintext writer over `wr`.
    pub fn new(wr: W) -> Self {
        PacketTx {
            wr,
            tls: None,
            out: Vec::new(),
        }
    }

    /// Writes one whole encoded packet (in one TLS write after the switch: one packet's
    /// records leave together, as hdc's `WriteUvSslFd` sends them).
    pub async fn send(&mut self, packet: &[u8]) -> Result<(), LinkError> {
        let Some(t) = &self.tls else {
            self.wr.write_all(packet).await?;
            return Ok(());
        };
        {
            let mut t = lock(t);
            t.encrypt(packet)?;
            t.take_output(&mut self.out);
        }
        let r = self.wr.write_all(&self.out).await;
        self.out.clear();
        Ok(r?)
    }

    /// From here on what is sent is TLS through `tls`.
    pub fn switch(&mut self, tls: SharedTls) {
        self.tls = Some(tls);
    }

    /// Whether the stream is TLS.
    pub fn is_encrypted(&self) -> bool {
        self.tls.is_some()
    }

    /// Ends the stream (the socket's write side).
    pub async fn shutdown(&mut self) -> Result<(), LinkError> {
        Ok(self.wr.shutdown().await?)
    }
}

/// Switches both halves of one stream to `tls` (the handshake's
/// [`Switch`](crate::ohos_auth::Action::Switch)).
pub fn switch<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    rx: &mut PacketRx<R>,
    tx: &mut PacketTx<W>,
    tls: Box<dyn TlsEngine>,
) -> Result<(), LinkError> {
    let shared: SharedTls = Arc::new(Mutex::new(tls));
    tx.switch(shared.clone());
    rx.switch(shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ohos::{PayloadProtect, encode_packet};
    use crate::ohos_tls::{PSK_LEN, PskTls, Role};

    fn pkt(channel: u32, cmd: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_packet(&mut v, &PayloadProtect::new(channel, cmd), payload);
        v
    }

    fn pair() -> (PskTls, PskTls) {
        let psk = [9u8; PSK_LEN];
        let mut c = PskTls::new(Role::Client, &psk).unwrap();
        let mut s = PskTls::new(Role::Server, &psk).unwrap();
        let mut buf = Vec::new();
        for _ in 0..4 {
            c.handshake().unwrap();
            c.take_output(&mut buf);
            s.feed(&buf);
            buf.clear();
            s.handshake().unwrap();
            s.take_output(&mut buf);
            c.feed(&buf);
            buf.clear();
        }
        assert!(c.is_finished() && s.is_finished());
        (c, s)
    }

    /// The switch packet and the first ciphertext arrive in one read: the reader returns
    /// the packet, then decrypts the rest; the writer's packets after its switch are
    /// records the peer's engine opens.
    #[tokio::test]
    async fn the_reader_switches_mid_buffer_and_the_writer_encrypts_whole_packets() {
        let (client, mut server) = pair();
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let (ra, wa) = tokio::io::split(a);
        let mut rx = PacketRx::new(ra);
        let mut tx = PacketTx::new(wa);

        let mut wire = pkt(0, 1, b"the last plaintext packet");
        let big = vec![0x5a; 300 * 1024];
        server.encrypt(&pkt(0, 4, b"first encrypted")).unwrap();
        server.encrypt(&pkt(7, 10, &big)).unwrap();
        server.take_output(&mut wire);
        b.write_all(&wire).await.unwrap();

        let p = rx.next().await.unwrap().unwrap();
        assert_eq!(&p.payload[..], b"the last plaintext packet");
        switch(&mut rx, &mut tx, Box::new(client)).unwrap();
        assert!(rx.is_encrypted() && tx.is_encrypted());
        let p = rx.next().await.unwrap().unwrap();
        assert_eq!(
            (p.protect.command_flag, &p.payload[..]),
            (4, &b"first encrypted"[..])
        );
        let p = rx.next().await.unwrap().unwrap();
        assert_eq!((p.protect.channel_id, p.payload.len()), (7, big.len()));

        tx.send(&pkt(3, 1001, b"ls")).await.unwrap();
        tx.shutdown().await.unwrap();
        let mut ct = Vec::new();
        b.read_to_end(&mut ct).await.unwrap();
        assert!(!ct.windows(2).any(|w| w == b"HW"), "plaintext on the wire");
        server.feed(&ct);
        let mut pt = BytesMut::new();
        server.decrypt(&mut pt).unwrap();
        assert_eq!(&pt[..], &pkt(3, 1001, b"ls")[..]);
        drop(b);
        assert!(rx.next().await.unwrap().is_none());
    }

    /// The peer's close_notify after its last packet is the stream's clean end.
    #[tokio::test]
    async fn close_notify_is_the_end_of_the_stream() {
        let (client, mut server) = pair();
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let (ra, wa) = tokio::io::split(a);
        let (mut rx, mut tx) = (PacketRx::new(ra), PacketTx::new(wa));
        switch(&mut rx, &mut tx, Box::new(client)).unwrap();
        server.encrypt(&pkt(5, 2, &[1])).unwrap();
        server.close_notify().unwrap();
        let mut ct = Vec::new();
        server.take_output(&mut ct);
        b.write_all(&ct).await.unwrap();
        let p = rx.next().await.unwrap().unwrap();
        assert_eq!((p.protect.channel_id, p.payload.to_vec()), (5, vec![1]));
        assert!(rx.next().await.unwrap().is_none());
    }

    /// Tampered records end the stream with an error, not with packets.
    #[tokio::test]
    async fn a_tampered_record_is_an_error() {
        let (client, mut server) = pair();
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let (ra, wa) = tokio::io::split(a);
        let (mut rx, mut tx) = (PacketRx::new(ra), PacketTx::new(wa));
        switch(&mut rx, &mut tx, Box::new(client)).unwrap();
        server.encrypt(&pkt(0, 4, b"x")).unwrap();
        let mut ct = Vec::new();
        server.take_output(&mut ct);
        let at = ct.len() - 3;
        ct[at] ^= 0x80;
        b.write_all(&ct).await.unwrap();
        assert!(matches!(rx.next().await, Err(LinkError::Tls(_))));
    }
}

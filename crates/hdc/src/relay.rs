//! Pumping bytes: a TCP connection to a channel (port forwarding), a channel to a channel
//! (the host server between a client and a device).

use crate::proto::{Ctrl, Exit};
use crate::session::{Channel, Event};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Relays a TCP connection and a channel until both directions ended; then closes the channel.
pub async fn tcp(mut ch: Channel, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let (mut r, mut w) = tcp.into_split();
    let tx = ch.sender();
    let up = tokio::spawn(async move {
        loop {
            let mut buf = BytesMut::with_capacity(256 * 1024);
            match r.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.ctrl(&Ctrl::Eof);
                    return;
                }
                Ok(_) => {
                    if tx.send(buf.freeze()).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let exit = loop {
        match ch.recv().await {
            Event::Data(d) => {
                if w.write_all(&d).await.is_err() {
                    break Exit::fail("[Fail]connection reset");
                }
            }
            Event::Ctrl(Ctrl::Eof) => {
                let _ = w.shutdown().await;
                break Exit::ok();
            }
            Event::Ctrl(_) => {}
            Event::Close(_) => {
                up.abort();
                return;
            }
        }
    };
    // Half-closed by the peer: keep sending until our reader ends, then close.
    let _ = up.await;
    ch.close(&exit);
}

/// Relays two channels both ways (Data, Ctrl, Close) until one side closes.
pub async fn channels(mut a: Channel, mut b: Channel) {
    let (ta, tb) = (a.sender(), b.sender());
    let ab = tokio::spawn(async move {
        loop {
            match a.recv().await {
                Event::Data(d) => {
                    if tb.send(d).await.is_err() {
                        break;
                    }
                }
                Event::Ctrl(c) => {
                    if tb.ctrl(&c).is_err() {
                        break;
                    }
                }
                Event::Close(e) => {
                    tb.close(&e);
                    break;
                }
            }
        }
        a
    });
    loop {
        match b.recv().await {
            Event::Data(d) => {
                if ta.send(d).await.is_err() {
                    break;
                }
            }
            Event::Ctrl(c) => {
                if ta.ctrl(&c).is_err() {
                    break;
                }
            }
            Event::Close(e) => {
                ta.close(&e);
                break;
            }
        }
    }
    if let Ok(a) = ab.await {
        drop(a);
    }
}

//! Calls that carry a stream, over two loopback buses: the relay moves bytes both ways,
//! ends with either end or the bus connection, refuses descriptors, and a refused call
//! relays nothing.

use super::*;
use crate::transport::tests_support::{pair, within_5s};
use std::os::fd::AsFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every token is known, at revision 1, and holds every permission.
struct Tokens;

impl TokenBridge for Tokens {
    fn export(&self, _token_id: u32) -> Option<(u64, Vec<u8>)> {
        Some((1, Vec::new()))
    }
    fn import(
        &self,
        _udid: &str,
        token_id: u32,
        _rev: u64,
        _state: &[u8],
    ) -> Result<(u32, TokenType, String), String> {
        Ok((token_id + 1000, TokenType::Hap, "com.example.client".into()))
    }
    fn lookup(&self, _udid: &str, token_id: u32, _rev: u64) -> Option<(u32, TokenType, String)> {
        Some((token_id + 1000, TokenType::Hap, "com.example.client".into()))
    }
    fn forget(&self, _udid: &str, _token_id: u32) {}
    fn forget_device(&self, _udid: &str) {}
    fn verify(&self, _token_id: u32, _permission: &str) -> bool {
        true
    }
}

/// Code 1: echoes what arrives on the call's socket (on a thread, as an app host serves a
/// connection) and answers the device the call came from; code 2: refuses.
struct Echo;

#[async_trait::async_trait]
impl Dispatcher for Echo {
    async fn dispatch(
        &self,
        conn: ConnHandle,
        _sa: i32,
        code_: u32,
        _data: Bytes,
    ) -> Result<Vec<u8>, RemoteError> {
        if code_ != 1 {
            return Err(RemoteError::new(code::PERMISSION_DENIED, "refused"));
        }
        let fd = conn
            .take_fd()
            .ok_or_else(|| RemoteError::invalid("no socket"))?;
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut s = std::os::unix::net::UnixStream::from(fd);
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        Ok(conn.remote_device().unwrap_or("local").as_bytes().to_vec())
    }
    fn on_disconnect(&self, _conn: &ConnHandle) {}
}

fn caller() -> Caller {
    Caller {
        pid: 4242,
        uid: 20_010_000,
        gid: 20_010_000,
        token_id: 7,
        token_type: TokenType::Hap,
        process_name: "client".into(),
    }
}

/// Two buses online to each other, each with a dbinder that serves [`Echo`].
async fn two() -> (Arc<Bus>, Arc<Bus>, Arc<Dbinder>) {
    let (a, b, sa, sb) = pair().await;
    let (da, db) = (Dbinder::new(a.clone()), Dbinder::new(b.clone()));
    for (d, s) in [(&da, &sa), (&db, &sb)] {
        d.set_bridge(Arc::new(Tokens));
        d.set_dispatcher(Arc::new(Echo));
        s.set_dbinder(d.clone());
    }
    (a, b, da)
}

/// The client's end (tokio) and the end handed to dbinder.
fn socket() -> (tokio::net::UnixStream, OwnedFd) {
    let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    mine.set_nonblocking(true).unwrap();
    (
        tokio::net::UnixStream::from_std(mine).unwrap(),
        OwnedFd::from(theirs),
    )
}

/// Reads until end of file (bounded), and returns what came.
async fn read_to_end(s: &mut tokio::net::UnixStream) -> Vec<u8> {
    let mut got = Vec::new();
    within_5s(s.read_to_end(&mut got)).await.unwrap();
    got
}

#[tokio::test]
async fn a_relayed_connection_carries_bytes_both_ways_and_ends_with_its_client() {
    let (_a, b, da) = two().await;
    let (mut client, theirs) = socket();
    let (reply, end) = da
        .connect(
            &caller(),
            &b.local_info().network_id,
            1401,
            1,
            vec![],
            theirs,
        )
        .await
        .unwrap();
    // The SA on b heard the call from a's device, as the bus connection says.
    assert_eq!(reply, b"net-a");
    // Bigger than a relay chunk, so that it crosses in pieces, both ways.
    let big: Vec<u8> = (0..3 * RELAY_CHUNK + 5).map(|i| (i % 251) as u8).collect();
    let (mut rd, mut wr) = client.split();
    let send = async {
        wr.write_all(&big).await.unwrap();
        wr.shutdown().await.unwrap();
    };
    let recv = async {
        let mut got = Vec::new();
        within_5s(rd.read_to_end(&mut got)).await.unwrap();
        got
    };
    let ((), got) = tokio::join!(send, recv);
    assert_eq!(got.len(), big.len());
    assert!(got == big, "the bytes came back unchanged");
    let why = within_5s(end.wait()).await;
    assert!(why.contains("closed"), "{why}");
}

#[tokio::test]
async fn a_descriptor_cannot_cross_and_ends_the_connection() {
    let (_a, b, da) = two().await;
    let (mut client, theirs) = socket();
    let (_, end) = da
        .connect(
            &caller(),
            &b.local_info().network_id,
            1401,
            1,
            vec![],
            theirs,
        )
        .await
        .unwrap();
    let f = std::fs::File::open("/dev/null").unwrap();
    let n = oxh_kal::send_with_fd(client.as_fd(), b"x", f.as_fd()).unwrap();
    assert_eq!(n, 1);
    assert_eq!(within_5s(end.wait()).await, DESCRIPTOR_REFUSED);
    // The client's end closed with it: nothing (not the byte) came back.
    assert_eq!(read_to_end(&mut client).await, b"");
}

#[tokio::test]
async fn the_bus_connection_going_ends_the_relay_and_closes_the_client_end() {
    let (a, b, da) = two().await;
    let (mut client, theirs) = socket();
    let (_, end) = da
        .connect(
            &caller(),
            &b.local_info().network_id,
            1401,
            1,
            vec![],
            theirs,
        )
        .await
        .unwrap();
    client.write_all(b"ping").await.unwrap();
    let mut four = [0u8; 4];
    within_5s(client.read_exact(&mut four)).await.unwrap();
    assert_eq!(&four, b"ping");
    // b goes away (its endpoint closes every connection): a's relay ends at once.
    b.shutdown();
    let why = within_5s(end.wait()).await;
    assert!(why.contains("gone"), "{why}");
    assert_eq!(read_to_end(&mut client).await, b"");
    drop(a);
}

#[tokio::test]
async fn a_refused_call_relays_nothing_and_an_offline_device_is_11600102() {
    let (_a, b, da) = two().await;
    let (mut client, theirs) = socket();
    let e = da
        .connect(
            &caller(),
            &b.local_info().network_id,
            1401,
            2,
            vec![],
            theirs,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, code::PERMISSION_DENIED, "{e}");
    assert_eq!(
        read_to_end(&mut client).await,
        b"",
        "the client's end is closed"
    );
    let (_c, theirs) = socket();
    let e = da
        .connect(&caller(), "net-nobody", 1401, 1, vec![], theirs)
        .await
        .unwrap_err();
    assert_eq!(e.code, ERR_DEVICE_OFFLINE, "{e}");
    // Only a stream socket can be relayed.
    let f = std::fs::File::open("/dev/null").unwrap();
    let e = da
        .connect(
            &caller(),
            &b.local_info().network_id,
            1401,
            1,
            vec![],
            OwnedFd::from(f),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, code::INVALID_PARAM, "{e}");
}

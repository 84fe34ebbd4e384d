//! A service connection's wire (see [`crate::api`]): blocking calls on one Unix stream socket
//! between two apps, in local IPC's frames. The client writes a request frame (SA
//! [`REMOTE_OBJECT_SA`]) and reads the reply with its id; the service's host reads requests
//! and answers each in order. A frame over [`MAX_TRANSACTION`] is refused, and its bytes
//! skipped, as the daemon does.

use crate::api::REMOTE_OBJECT_SA;
use oxh_ipc::frame::{self, Decoded, FrameDecoder, Kind};
use oxh_ipc::{MAX_TRANSACTION, RemoteError, code};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

/// Why a call did not get an answer from the remote object.
#[derive(Debug, thiserror::Error)]
pub enum RemoteCallError {
    /// The service answered with an error code.
    #[error("the remote object answered {0}")]
    Remote(RemoteError),
    /// The connection is gone, or the bytes on it were not frames.
    #[error("the connection is gone: {0}")]
    Gone(String),
}

impl RemoteCallError {
    /// The code an app gets: the service's own, or 16000050 for a lost connection.
    pub fn code(&self) -> i32 {
        match self {
            RemoteCallError::Remote(r) => r.code,
            RemoteCallError::Gone(_) => crate::code::INTERNAL,
        }
    }
}

/// Reads from `sock` until `dec` yields something, or end of file.
fn next(sock: &mut UnixStream, dec: &mut FrameDecoder) -> Result<Option<Decoded>, String> {
    loop {
        if let Some(d) = dec.decode_next().map_err(|e| e.to_string())? {
            return Ok(Some(d));
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = sock.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(None);
        }
        dec.extend(&chunk[..n]);
    }
}

/// One client's end of a connection: calls go one at a time.
#[derive(Debug)]
pub struct Proxy {
    sock: UnixStream,
    dec: FrameDecoder,
    next_id: u64,
}

impl Proxy {
    /// The client's end.
    pub fn new(sock: UnixStream) -> Self {
        Proxy {
            sock,
            dec: FrameDecoder::new(),
            next_id: 1,
        }
    }

    /// `sendRequest(code, data)`: the remote object's answer.
    pub fn send_request(&mut self, code: u32, data: &[u8]) -> Result<Vec<u8>, RemoteCallError> {
        let size = frame::request_body_len(data);
        if size > MAX_TRANSACTION {
            return Err(RemoteCallError::Remote(RemoteError::new(
                code::TRANSACTION_TOO_LARGE,
                format!("a request of {size} bytes is over the {MAX_TRANSACTION}-byte limit"),
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.sock
            .write_all(&frame::request(id, REMOTE_OBJECT_SA, code, data))
            .map_err(|e| RemoteCallError::Gone(e.to_string()))?;
        loop {
            match next(&mut self.sock, &mut self.dec).map_err(RemoteCallError::Gone)? {
                None => return Err(RemoteCallError::Gone("the service closed it".into())),
                Some(Decoded::Frame(f)) if f.kind == Kind::Reply && f.id == id => {
                    return match frame::parse_reply(&f.body) {
                        Ok(b) => Ok(b.to_vec()),
                        Err(oxh_ipc::IpcError::Remote(r)) => Err(RemoteCallError::Remote(r)),
                        Err(e) => Err(RemoteCallError::Gone(e.to_string())),
                    };
                }
                // Anything else (a stale reply, an oversize frame) is not this answer.
                Some(_) => {}
            }
        }
    }
}

/// Serves a connection until the client closes it: `handle(code, data)` answers each request.
/// Returns why it ended (None: the client closed it).
pub fn serve(
    mut sock: UnixStream,
    mut handle: impl FnMut(u32, &[u8]) -> Result<Vec<u8>, RemoteError>,
) -> Option<String> {
    let mut dec = FrameDecoder::new();
    loop {
        let reply = match next(&mut sock, &mut dec) {
            Err(e) => return Some(e),
            Ok(None) => return None,
            Ok(Some(Decoded::Oversize { kind, id, len })) => {
                if kind != Kind::Request {
                    return Some(format!("unexpected frame kind {kind:?}"));
                }
                frame::reply(
                    id,
                    &Err(RemoteError::new(
                        code::TRANSACTION_TOO_LARGE,
                        format!(
                            "a request of {len} bytes is over the {MAX_TRANSACTION}-byte limit"
                        ),
                    )),
                )
            }
            Ok(Some(Decoded::Frame(f))) => {
                if f.kind != Kind::Request {
                    return Some(format!("unexpected frame kind {:?}", f.kind));
                }
                let result = match frame::parse_request(&f.body) {
                    Some((REMOTE_OBJECT_SA, code, data)) => handle(code, &data),
                    _ => Err(RemoteError::invalid("not a remote object request")),
                };
                frame::reply(f.id, &result)
            }
        };
        if let Err(e) = sock.write_all(&reply) {
            return Some(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_cross_and_errors_and_oversize_requests_come_back_as_codes() {
        let (a, b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            serve(b, |code, data| match code {
                1 => Ok([data, b"!"].concat()),
                _ => Err(RemoteError::new(7, "no such code")),
            })
        });
        let mut p = Proxy::new(a);
        assert_eq!(p.send_request(1, b"hi").unwrap(), b"hi!");
        let e = p.send_request(2, b"").unwrap_err();
        assert_eq!(e.code(), 7);
        let big = vec![0u8; MAX_TRANSACTION];
        assert_eq!(
            p.send_request(1, &big).unwrap_err().code(),
            code::TRANSACTION_TOO_LARGE,
            "refused before it is sent"
        );
        // A peer that sends an oversize frame anyway is answered, and the stream goes on.
        let mut raw = p.sock.try_clone().unwrap();
        raw.write_all(&frame::header(Kind::Request, 99, MAX_TRANSACTION + 1))
            .unwrap();
        raw.write_all(&vec![0u8; MAX_TRANSACTION + 1]).unwrap();
        let mut dec = FrameDecoder::new();
        match next(&mut raw, &mut dec).unwrap() {
            Some(Decoded::Frame(f)) => {
                assert_eq!(f.id, 99);
                let Err(oxh_ipc::IpcError::Remote(r)) = frame::parse_reply(&f.body) else {
                    panic!("an error reply");
                };
                assert_eq!(r.code, code::TRANSACTION_TOO_LARGE);
            }
            other => panic!("a reply, not {other:?}"),
        }
        assert_eq!(p.send_request(1, b"again").unwrap(), b"again!");
        drop(p);
        drop(raw);
        assert_eq!(server.join().unwrap(), None, "the client closed it");
    }

    #[test]
    fn a_service_that_goes_away_is_16000050_to_its_client() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let mut p = Proxy::new(a);
        let e = p.send_request(1, b"x").unwrap_err();
        assert!(matches!(e, RemoteCallError::Gone(_)));
        assert_eq!(e.code(), crate::code::INTERNAL);
    }
}

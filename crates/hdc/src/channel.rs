//! OpenHarmony's client protocol between `hdc` clients and the host server (127.0.0.1:8710),
//! as developtools_hdc's `channel.cpp` and `server_for_client.cpp` speak it, so OpenHarmony's
//! own `hdc`, hdc-rs-py, hdctool and xdevice drive our server. Pure: bytes in, values out.
//!
//! - Every message each way is a **u32 big-endian length** and a body.
//! - Right after accepting, the server sends a `ChannelHandShake`: banner `"OHOS HDC"` NUL
//!   padded to 12 bytes (byte 11 `'H'`: huge buffers) and the channel id (u32 big-endian) in
//!   a 32-byte union with the connect key: 44 bytes, without the 64-byte version that only
//!   builds with `HDC_VERSION_CHECK` send (OpenHarmony's xdevice reads exactly 48 bytes).
//! - The client echoes it with the connect key (`-t KEY`; empty: the only target) in the union
//!   and byte 11 `'W'` for `hdc wait`; old clients send 36 or 44 bytes.
//! - The client sends its command line as text (OpenHarmony's client includes the C string's
//!   NUL); the server answers with plain text bodies and closes the connection when the
//!   command is done. In an interactive shell, later client bodies are the shell's input.
//!
//! **oxharmony's extension**, negotiated so that clients nobody here wrote see only
//! OpenHarmony's protocol: the server offers it with [`EXT_TAG`] in the banner's padding
//! (byte 10, beside OpenHarmony's own feature tag in byte 11; clients check only the first 8
//! bytes); a client that speaks the extension answers with [`CLIENT_EXT`] after the NUL of its
//! version string (OpenHarmony's clients echo the server's bytes or send no version, so they
//! never say it). Then
//! every body both ways starts with a tag byte ([`ToClient`], [`ToServer`]): output and errors
//! apart, the shell's exit status, the pty's size, signals and transfer progress.

use bytes::{Buf, BufMut, BytesMut};

/// The banner's first bytes, checked by both sides.
pub const BANNER: &[u8; 8] = b"OHOS HDC";
/// Where the banner carries a feature tag.
pub const BANNER_TAG_OFFSET: usize = 11;
/// Banner tag from the server: it takes bodies up to [`MAX_BODY`].
pub const HUGE_BUF_TAG: u8 = b'H';
/// Banner tag from a client: `hdc wait` (wait for a device).
pub const WAIT_TAG: u8 = b'W';
/// Size of a connect key in the handshake.
pub const MAX_CONNECTKEY_SIZE: usize = 32;
/// The full handshake: banner, key union, version.
pub const HANDSHAKE_LEN: usize = 12 + MAX_CONNECTKEY_SIZE + 64;
/// The handshake of clients built without the version field.
pub const HANDSHAKE_LEN_NO_VERSION: usize = 12 + MAX_CONNECTKEY_SIZE;
/// The oldest form: banner and a 24-byte key.
pub const HANDSHAKE_LEN_OLD: usize = 36;
/// The version hdc reports (OpenHarmony's protocol version we follow).
pub const VERSION: &str = "Ver: 3.2.0f";
/// Where the banner carries our feature tag.
pub const BANNER_EXT_OFFSET: usize = 10;
/// Banner tag from the server: it speaks oxharmony's extension.
pub const EXT_TAG: u8 = b'X';
/// After the NUL of the client's version: the client speaks it too.
pub const CLIENT_EXT: &[u8] = b"oxh-client/1";
/// Largest body either side sends or takes: OpenHarmony's huge-buffer size (511 KiB), which
/// clients such as hdc-rs refuse to exceed. A bigger length is a broken or hostile peer.
pub const MAX_BODY: usize = 511 * 1024;
/// Longest command line a client may send (OpenHarmony's clients send a few hundred bytes).
pub const MAX_COMMAND: usize = 64 * 1024;

/// Errors of the client protocol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    /// The peer's handshake is not OpenHarmony's.
    #[error("[Fail]Channel handshake failed: {0}")]
    Handshake(&'static str),
    /// A length past [`MAX_BODY`].
    #[error("[Fail]message of {0} bytes is larger than the limit ({MAX_BODY})")]
    TooLarge(usize),
    /// A tagged body with an unknown tag or a short payload.
    #[error("[Fail]bad message: {0}")]
    Bad(&'static str),
}

/// The server's handshake, with `channel_id`; `ext` offers the extension ([`EXT_TAG`]).
pub fn server_handshake(channel_id: u32, ext: bool) -> Vec<u8> {
    let mut b = vec![0u8; HANDSHAKE_LEN_NO_VERSION];
    b[..BANNER.len()].copy_from_slice(BANNER);
    b[BANNER_TAG_OFFSET] = HUGE_BUF_TAG;
    if ext {
        b[BANNER_EXT_OFFSET] = EXT_TAG;
    }
    b[12..16].copy_from_slice(&channel_id.to_be_bytes());
    b
}

fn put_version(field: &mut [u8], ext: &[u8]) {
    let v = VERSION.as_bytes();
    field[..v.len()].copy_from_slice(v);
    if !ext.is_empty() {
        field[v.len() + 1..v.len() + 1 + ext.len()].copy_from_slice(ext);
    }
}

/// What the server's handshake tells a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// The channel id.
    pub channel_id: u32,
    /// Byte 11 said huge buffers.
    pub huge_buf: bool,
    /// The server speaks the extension.
    pub ext: bool,
}

/// Parses the server's handshake (client side).
pub fn parse_server_handshake(b: &[u8]) -> Result<ServerHello, ChannelError> {
    if b.len() < 16 || &b[..BANNER.len()] != BANNER {
        return Err(ChannelError::Handshake("not an hdc server"));
    }
    let channel_id = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
    let ext = b[BANNER_EXT_OFFSET] == EXT_TAG;
    Ok(ServerHello {
        channel_id,
        huge_buf: b[BANNER_TAG_OFFSET] == HUGE_BUF_TAG,
        ext,
    })
}

/// The client's answer to the server's handshake (what [`parse_client_handshake`] reads).
pub fn client_handshake(channel_id: u32, connect_key: &str, wait: bool, ext: bool) -> Vec<u8> {
    let mut b = vec![0u8; HANDSHAKE_LEN];
    b[..BANNER.len()].copy_from_slice(BANNER);
    if wait {
        b[BANNER_TAG_OFFSET] = WAIT_TAG;
    }
    let key = connect_key.as_bytes();
    if key.is_empty() {
        b[12..16].copy_from_slice(&channel_id.to_be_bytes());
    } else {
        let n = key.len().min(MAX_CONNECTKEY_SIZE);
        b[12..12 + n].copy_from_slice(&key[..n]);
    }
    put_version(&mut b[44..], if ext { CLIENT_EXT } else { b"" });
    b
}

/// What a client's handshake tells the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// `-t KEY`, or empty for the only target.
    pub connect_key: String,
    /// `hdc wait`.
    pub wait: bool,
    /// The client speaks the extension.
    pub ext: bool,
}

/// Parses a client's handshake; `channel_id` is the one the server sent, which a client with
/// no key leaves in the union (so it is not a key).
pub fn parse_client_handshake(b: &[u8], channel_id: u32) -> Result<ClientHello, ChannelError> {
    if b.len() < HANDSHAKE_LEN_OLD {
        return Err(ChannelError::Handshake("too short"));
    }
    if &b[..BANNER.len()] != BANNER {
        return Err(ChannelError::Handshake("wrong banner"));
    }
    let key_end = b.len().min(12 + MAX_CONNECTKEY_SIZE);
    let union = &b[12..key_end];
    let connect_key =
        if union[..4] == channel_id.to_be_bytes() && union[4..].iter().all(|&c| c == 0) {
            String::new()
        } else {
            let raw = union.split(|&c| c == 0).next().unwrap_or_default();
            String::from_utf8_lossy(raw).trim().to_string()
        };
    let ext = b.len() >= HANDSHAKE_LEN && after_nul(&b[44..HANDSHAKE_LEN]) == CLIENT_EXT;
    Ok(ClientHello {
        connect_key,
        wait: b[BANNER_TAG_OFFSET] == WAIT_TAG,
        ext,
    })
}

/// The bytes after a C string's NUL, up to the next NUL.
fn after_nul(field: &[u8]) -> &[u8] {
    let Some(i) = field.iter().position(|&c| c == 0) else {
        return b"";
    };
    let rest = &field[i + 1..];
    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
    &rest[..end]
}

/// A length-prefixed body for the wire.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + body.len());
    b.put_u32(body.len() as u32);
    b.extend_from_slice(body);
    b
}

/// Takes one whole body off the front of `buf`, if it holds one.
pub fn take_body(buf: &mut BytesMut) -> Result<Option<BytesMut>, ChannelError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_BODY {
        return Err(ChannelError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len)))
}

/// A command line as text: OpenHarmony's client sends its NUL, and a body is not UTF-8 by
/// contract, so both are taken gently.
pub fn command_text(body: &[u8]) -> String {
    let end = body.iter().position(|&c| c == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).trim().to_string()
}

/// Splits a command line into arguments as hdc does: blanks separate, double quotes group
/// (and are removed). An unclosed quote runs to the end.
pub fn split_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Quotes one argument for a command line [`split_args`] reads back.
pub fn quote_arg(a: &str) -> String {
    if !a.is_empty() && !a.chars().any(|c| c.is_whitespace() || c == '"') {
        a.to_string()
    } else {
        format!("\"{}\"", a.replace('"', ""))
    }
}

/// The extension's tag of output for stdout ([`ToClient::Out`]).
pub const TAG_OUT: u8 = 0;
/// The extension's tag of output for stderr ([`ToClient::Err`]).
pub const TAG_ERR: u8 = 1;

/// Server to client, in the extension: what a tagged body carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToClient {
    /// Bytes for stdout.
    Out(Vec<u8>),
    /// Bytes for stderr.
    Err(Vec<u8>),
    /// The command ended: its exit status and a message (stdout when 0, else stderr).
    Exit {
        /// Exit status.
        code: i32,
        /// Message, possibly empty.
        message: String,
    },
    /// A transfer's progress: bytes done and expected.
    Progress {
        /// Done.
        done: u64,
        /// Expected.
        total: u64,
    },
}

/// Client to server, in the extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToServer {
    /// The command line (the first body).
    Command(String),
    /// Options of an interactive shell, before its command: run on a pty of this size.
    Pty {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
        /// TERM.
        term: String,
    },
    /// Input bytes.
    In(Vec<u8>),
    /// End of input.
    Eof,
    /// The terminal's new size.
    WinSize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Deliver this signal to the command.
    Signal(i32),
}

impl ToClient {
    /// The tagged body.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            ToClient::Out(d) => {
                b.push(TAG_OUT);
                b.extend_from_slice(d);
            }
            ToClient::Err(d) => {
                b.push(TAG_ERR);
                b.extend_from_slice(d);
            }
            ToClient::Exit { code, message } => {
                b.push(2);
                b.put_i32(*code);
                b.extend_from_slice(message.as_bytes());
            }
            ToClient::Progress { done, total } => {
                b.push(3);
                b.put_u64(*done);
                b.put_u64(*total);
            }
        }
        b
    }

    /// Reads a tagged body.
    pub fn decode(b: &[u8]) -> Result<ToClient, ChannelError> {
        let (&tag, mut rest) = b.split_first().ok_or(ChannelError::Bad("empty"))?;
        Ok(match tag {
            TAG_OUT => ToClient::Out(rest.to_vec()),
            TAG_ERR => ToClient::Err(rest.to_vec()),
            2 if rest.len() >= 4 => {
                let code = rest.get_i32();
                ToClient::Exit {
                    code,
                    message: String::from_utf8_lossy(rest).into_owned(),
                }
            }
            3 if rest.len() == 16 => ToClient::Progress {
                done: rest.get_u64(),
                total: rest.get_u64(),
            },
            _ => return Err(ChannelError::Bad("unknown server message")),
        })
    }
}

impl ToServer {
    /// The tagged body.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            ToServer::Command(c) => {
                b.push(0);
                b.extend_from_slice(c.as_bytes());
            }
            ToServer::Pty { rows, cols, term } => {
                b.push(1);
                b.put_u16(*rows);
                b.put_u16(*cols);
                b.extend_from_slice(term.as_bytes());
            }
            ToServer::In(d) => {
                b.push(2);
                b.extend_from_slice(d);
            }
            ToServer::Eof => b.push(3),
            ToServer::WinSize { rows, cols } => {
                b.push(4);
                b.put_u16(*rows);
                b.put_u16(*cols);
            }
            ToServer::Signal(s) => {
                b.push(5);
                b.put_i32(*s);
            }
        }
        b
    }

    /// Reads a tagged body.
    pub fn decode(b: &[u8]) -> Result<ToServer, ChannelError> {
        let (&tag, mut rest) = b.split_first().ok_or(ChannelError::Bad("empty"))?;
        Ok(match tag {
            0 if rest.len() <= MAX_COMMAND => ToServer::Command(command_text(rest)),
            1 if rest.len() >= 4 => ToServer::Pty {
                rows: rest.get_u16(),
                cols: rest.get_u16(),
                term: String::from_utf8_lossy(rest).into_owned(),
            },
            2 => ToServer::In(rest.to_vec()),
            3 if rest.is_empty() => ToServer::Eof,
            4 if rest.len() == 4 => ToServer::WinSize {
                rows: rest.get_u16(),
                cols: rest.get_u16(),
            },
            5 if rest.len() == 4 => ToServer::Signal(rest.get_i32()),
            _ => return Err(ChannelError::Bad("unknown client message")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's handshake as OpenHarmony's `ChannelHandShake` lays it out: written here
    /// byte by byte from channel.h, not from our encoder.
    #[test]
    fn server_handshake_bytes() {
        let b = server_handshake(0x0102_0304, false);
        assert_eq!(b.len(), 44, "xdevice reads exactly 4 + 44 bytes");
        assert_eq!(&b[..12], b"OHOS HDC\0\0\0H");
        assert_eq!(&b[12..16], &[1, 2, 3, 4]);
        assert!(b[16..44].iter().all(|&c| c == 0));
        let e = server_handshake(7, true);
        assert_eq!(&e[..12], b"OHOS HDC\0\0XH");
        assert_eq!(
            parse_server_handshake(&e),
            Ok(ServerHello {
                channel_id: 7,
                huge_buf: true,
                ext: true
            })
        );
        assert!(!parse_server_handshake(&b).unwrap().ext);
    }

    #[test]
    fn client_handshakes_of_every_size() {
        // hdctool: banner + key (44 bytes), the key NUL padded.
        let mut h = b"OHOS HDC\0\0\0H".to_vec();
        let mut key = b"127.0.0.1:8711".to_vec();
        key.resize(32, 0);
        h.extend_from_slice(&key);
        let c = parse_client_handshake(&h, 9).unwrap();
        assert_eq!(c.connect_key, "127.0.0.1:8711");
        assert!(!c.ext && !c.wait);
        // hdc-rs: the server's bytes echoed, no key: the channel id stays in the union.
        let echo = server_handshake(9, true);
        let c = parse_client_handshake(&echo, 9).unwrap();
        assert_eq!(c.connect_key, "");
        assert!(
            !c.ext,
            "an echo of the server's extension is not a client's"
        );
        // xdevice: banner and a 256-byte key field, 268 bytes.
        let mut x = b"OHOS HDC\0\0\0\0".to_vec();
        let mut key = b"127.0.0.1:8711".to_vec();
        key.resize(256, 0);
        x.extend_from_slice(&key);
        let c = parse_client_handshake(&x, 9).unwrap();
        assert_eq!((c.connect_key.as_str(), c.ext), ("127.0.0.1:8711", false));
        // Ours, waiting.
        let ours = client_handshake(9, "dev", true, true);
        let c = parse_client_handshake(&ours, 9).unwrap();
        assert_eq!((c.connect_key.as_str(), c.wait, c.ext), ("dev", true, true));
        // The oldest: 36 bytes.
        assert!(parse_client_handshake(&h[..36], 9).is_ok());
        assert!(parse_client_handshake(&h[..35], 9).is_err());
        let mut bad = h.clone();
        bad[0] = b'X';
        assert!(parse_client_handshake(&bad, 9).is_err());
    }

    #[test]
    fn bodies_are_length_prefixed_and_bounded() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame(b"list targets\0"));
        buf.extend_from_slice(&frame(b"x")[..3]);
        let b = take_body(&mut buf).unwrap().unwrap();
        assert_eq!(command_text(&b), "list targets");
        assert_eq!(take_body(&mut buf), Ok(None));
        let mut big = BytesMut::new();
        big.put_u32(MAX_BODY as u32 + 1);
        assert_eq!(
            take_body(&mut big),
            Err(ChannelError::TooLarge(MAX_BODY + 1))
        );
    }

    #[test]
    fn arguments_split_as_hdc_does() {
        assert_eq!(
            split_args(r#"file send -cwd "/home/a b" x.txt  /data/local/tmp"#),
            vec![
                "file",
                "send",
                "-cwd",
                "/home/a b",
                "x.txt",
                "/data/local/tmp"
            ]
        );
        assert_eq!(split_args(r#"install "" a"#), vec!["install", "", "a"]);
        assert_eq!(split_args("  "), Vec::<String>::new());
        for a in ["plain", "with space", ""] {
            assert_eq!(split_args(&quote_arg(a)), vec![a.to_string()]);
        }
    }

    #[test]
    fn extension_messages_round_trip_and_bad_ones_fail() {
        for m in [
            ToClient::Out(b"x".to_vec()),
            ToClient::Err(vec![]),
            ToClient::Exit {
                code: -3,
                message: "m".into(),
            },
            ToClient::Progress { done: 1, total: 2 },
        ] {
            assert_eq!(ToClient::decode(&m.encode()), Ok(m));
        }
        for m in [
            ToServer::Command("shell ls".into()),
            ToServer::Pty {
                rows: 24,
                cols: 80,
                term: "xterm".into(),
            },
            ToServer::In(b"ls\n".to_vec()),
            ToServer::Eof,
            ToServer::WinSize { rows: 1, cols: 2 },
            ToServer::Signal(2),
        ] {
            assert_eq!(ToServer::decode(&m.encode()), Ok(m));
        }
        assert!(ToClient::decode(&[]).is_err());
        assert!(ToClient::decode(&[2, 0]).is_err());
        assert!(ToServer::decode(&[9]).is_err());
        assert!(ToServer::decode(&[4, 0, 1]).is_err());
    }
}

//! What travels in the packets: postcard-encoded requests, control messages and exits.

use serde::{Deserialize, Serialize};

/// Protocol version in the hello; a peer with another version is refused.
pub const VERSION: u32 = 1;

/// First packet each way on a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`VERSION`].
    pub version: u32,
    /// The sender's name (device name, host name).
    pub name: String,
    /// Empty when the sender accepts the session; otherwise why not (the session then closes).
    pub refused: String,
}

/// The feature an oxharmony peer lists in the handshake's `supportfeatures`, with
/// [`VERSION`] after the slash.
pub const OXH_FEATURE: &str = "oxh";

impl Hello {
    /// As OpenHarmony's SessionHandShake: the opener's (`accepting` false) is AUTH_NONE, the
    /// acceptor's AUTH_OK (`daemonauthstatus` SUCCESS, or DAEMON_UNAUTH with the refusal in
    /// `emgmsg`); the name travels as `devname`, our version as the `oxh/N` feature.
    pub fn to_handshake(&self, accepting: bool) -> crate::ohos::SessionHandShake {
        use crate::ohos_auth::{self as a, tag, tlv_append};
        let refused = !self.refused.is_empty();
        let mut buf = String::new();
        if accepting || refused {
            tlv_append(&mut buf, tag::EMGMSG, &self.refused);
        }
        tlv_append(&mut buf, tag::DEVNAME, &self.name);
        if accepting || refused {
            let st = if refused {
                a::AUTH_UNAUTHORIZED
            } else {
                a::AUTH_SUCCESS
            };
            tlv_append(&mut buf, tag::DAEMON_AUTH_STATUS, st);
        }
        let feats = format!("{OXH_FEATURE}/{}", self.version);
        tlv_append(&mut buf, tag::SUPPORT_FEATURES, &feats);
        crate::ohos::SessionHandShake {
            banner: crate::ohos::HANDSHAKE_BANNER.into(),
            auth_type: if accepting || refused {
                a::auth_type::OK
            } else {
                a::auth_type::NONE
            },
            session_id: 0,
            connect_key: String::new(),
            buf: buf.into_bytes(),
            version: a::VERSION.into(),
        }
    }

    /// Reads a peer's handshake; a peer without the `oxh` feature has version 0.
    pub fn from_handshake(b: &[u8]) -> Result<Hello, crate::ohos::WireError> {
        use crate::ohos_auth::{self as a, tag};
        let h = crate::ohos::SessionHandShake::decode(b)?;
        if h.banner != crate::ohos::HANDSHAKE_BANNER {
            return Err(crate::ohos::WireError::Malformed("not an hdc handshake"));
        }
        let tlv = a::tlv_parse(&h.buf).map_err(|_| crate::ohos::WireError::Malformed("bad TLV"))?;
        let version = a::features(&tlv)
            .iter()
            .find_map(|f| f.strip_prefix(OXH_FEATURE)?.strip_prefix('/')?.parse().ok())
            .unwrap_or(0);
        let unauth =
            tlv.get(tag::DAEMON_AUTH_STATUS).map(String::as_str) == Some(a::AUTH_UNAUTHORIZED);
        let refused = match tlv.get(tag::EMGMSG) {
            Some(m) if !m.is_empty() => m.clone(),
            _ if unauth => a::msg::UNAUTHORIZED.to_string(),
            _ => String::new(),
        };
        Ok(Hello {
            version,
            name: tlv.get(tag::DEVNAME).cloned().unwrap_or_default(),
            refused,
        })
    }
}

/// Options of `file send` / `file recv`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOpts {
    /// `-a`: keep modification times and modes.
    pub keep_attrs: bool,
    /// `-z`: compress chunks (zstd).
    pub compress: bool,
    /// `-sync`: send only files newer than the receiver's copy.
    pub sync: bool,
}

/// A pty's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// What a channel is for: the payload of an Open packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A shell: interactive (`command` None) or one command; on a pty when `pty` is given.
    Shell {
        /// The command line, run by `/bin/sh -c`.
        command: Option<String>,
        /// Pty size; `None` runs on pipes (stdout as Data, stderr as Ctrl::Stderr).
        pty: Option<WinSize>,
        /// TERM for the pty.
        term: String,
    },
    /// `hdc shell -b BUNDLE CMD`: one command on pipes, in the bundle's directory (as
    /// OpenHarmony's CMD_UNITY_EXECUTE_EX: the same identity, another working directory).
    ShellIn {
        /// The bundle (7 to 128 of `[0-9a-zA-Z_.]`).
        bundle: String,
        /// The command line, run by `/bin/sh -c`.
        command: String,
    },
    /// Files from the opener to the acceptor, written under `remote`.
    FileSend {
        /// Destination path on the receiving side.
        remote: String,
        /// Options.
        opts: FileOpts,
    },
    /// Files from the acceptor to the opener, read from `remote`.
    FileRecv {
        /// Source path on the sending side.
        remote: String,
        /// Options.
        opts: FileOpts,
    },
    /// Open a TCP connection to 127.0.0.1:`port` on the accepting side and relay bytes.
    Connect {
        /// Port.
        port: u16,
    },
    /// Device only: listen on 127.0.0.1:`port`; each accepted connection opens a Connect
    /// channel back to the host with `host_port`. Closing this channel stops the listener.
    ReverseListen {
        /// Device port.
        port: u16,
        /// Host port the connections go to.
        host_port: u16,
    },
    /// The device's hilog with `hilog`'s own arguments.
    Hilog {
        /// Arguments.
        args: Vec<String>,
    },
    /// Restart the device daemon.
    Boot,
    /// Install a package (a .hap, .hsp, .app or a directory of them): the files follow as in
    /// [`Request::FileSend`], then the device runs `bm install` on them.
    Install {
        /// `-r`: replace an installed bundle.
        replace: bool,
    },
    /// Uninstall a bundle (`bm uninstall`).
    Uninstall {
        /// Bundle name.
        name: String,
        /// `-k`: keep its data.
        keep: bool,
    },
    /// `hdc smode` (`root` true) runs host commands as the daemon's user (root) from now on;
    /// `hdc smode -r` (false) as the shell user again.
    Smode {
        /// Root mode on or off.
        root: bool,
    },
}

/// One file (or directory) in a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Path relative to the transfer's root ("" when the root is a single file).
    pub rel: String,
    /// A directory (no data follows).
    pub dir: bool,
    /// Size in bytes.
    pub size: u64,
    /// Mode bits.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub mtime_ns: u32,
}

/// Control messages on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ctrl {
    /// The client's terminal changed size.
    WindowSize(WinSize),
    /// Deliver this signal to the shell's process group.
    Signal(i32),
    /// The sender will send no more Data (stdin closed).
    Eof,
    /// Bytes of the command's stderr.
    Stderr(Vec<u8>),
    /// A file or directory starts; for a file, Data chunks follow, then [`Ctrl::FileEnd`].
    FileBegin(FileMeta),
    /// The file's chunks are all sent; XXH3-128 of its bytes.
    FileEnd {
        /// Checksum of the uncompressed bytes.
        hash: u128,
    },
    /// Receiver to sender after a FileBegin with `-sync`: send it (true) or skip it (false).
    Want(bool),
    /// All files are sent.
    Done,
    /// Text to print on the client's stdout.
    Text(String),
}

/// The payload of a Close packet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Exit status for the client (0 ok; a shell's own status; 128+signal when killed).
    pub code: i32,
    /// Printed on the client's stderr when not empty.
    pub message: String,
}

impl Exit {
    /// Success without a message.
    pub fn ok() -> Exit {
        Exit::default()
    }
    /// Failure with a message (OpenHarmony's `[Fail]` prefix is added by the caller).
    pub fn fail(message: impl Into<String>) -> Exit {
        Exit {
            code: 1,
            message: message.into(),
        }
    }
}

/// Postcard encode (infallible for our types).
pub fn to_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

/// Postcard decode of outside bytes.
pub fn from_bytes<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(b)
}

/// Parses `tcp:PORT`.
pub fn parse_tcp(spec: &str) -> Option<u16> {
    spec.strip_prefix("tcp:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let r = Request::FileSend {
            remote: "/data/x".into(),
            opts: FileOpts {
                keep_attrs: true,
                compress: true,
                sync: false,
            },
        };
        let b = to_bytes(&r);
        assert_eq!(from_bytes::<Request>(&b).unwrap(), r);
        assert!(from_bytes::<Request>(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn tcp_specs() {
        assert_eq!(parse_tcp("tcp:9000"), Some(9000));
        assert_eq!(parse_tcp("tcp:x"), None);
        assert_eq!(parse_tcp("udp:9000"), None);
    }
}

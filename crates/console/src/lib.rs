//! The web console of the super device (issue 20): a page and a JSON API on loopback, acting
//! through the SDK with the rights of the user who started it (never around a permission
//! check: every datum comes from the daemon's SAs as that user's shell token sees it).
//!
//! **Security.** Binds 127.0.0.1 unless told otherwise. A random token is printed once in the
//! URL (`/?token=...`, as Jupyter does); the first visit trades it for an HttpOnly,
//! SameSite=Strict cookie. Every request needs the token (cookie, or the query on the first
//! visit), a `Host` that is the console's own address (so a DNS-rebinding page cannot reach
//! it), and, when it has an `Origin`, the console's own origin; there are no CORS headers.
//! The page builds its DOM with `textContent` only: device names are outside input.
//!
//! **A daemon that goes away** is a state, not an error: `/api/devices` answers
//! `{"daemon": "offline"}` and the page shows it.

mod api;
mod bounded;
mod live;
mod rdb;
pub mod request;
mod server;
mod transfer;

pub use live::LogQuery;
pub use server::{Config, Connector, serve};

use std::time::Duration;

/// The user whose bundles the console shows and installs (OpenHarmony's first user).
pub const DEFAULT_USER: i32 = 100;
/// Largest package upload (a HAP or .app), so one request cannot make the console hold more.
pub const MAX_UPLOAD: usize = 256 * 1024 * 1024;
/// Connections the console holds open at once (before and after the token is checked).
pub const MAX_CONNECTIONS: usize = 64;
/// Live views (device and log streams) open at once, over every page.
pub const MAX_STREAMS: usize = 16;
/// Event batches one live view may have queued for a slow page; beyond, batches are dropped
/// and counted.
pub const STREAM_QUEUE: usize = 256;
/// How often the devices view is refreshed when nothing changed (the links' round trips).
pub const DEVICES_REFRESH: Duration = Duration::from_secs(2);
/// How often another device's log is read for new lines.
pub const LOG_POLL: Duration = Duration::from_millis(300);
/// Lines a log view starts with.
pub const MAX_LOG_TAIL: u64 = 200;
/// Parameters one search shows.
pub const MAX_PARAMS_SHOWN: usize = 500;
/// Rows one relational-store query shows.
pub const MAX_RDB_ROWS_SHOWN: usize = 1000;
/// KV entries one listing shows.
pub const MAX_KV_ENTRIES_SHOWN: usize = 1000;
/// How long the round-trip probe of one link may take before it counts as failed.
pub const RTT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The limits above, as the page (and `/api/about`) shows them.
pub(crate) fn limits() -> serde_json::Value {
    serde_json::json!({
        "maxUpload": MAX_UPLOAD, "maxStreams": MAX_STREAMS, "streamQueue": STREAM_QUEUE,
        "devicesRefreshMs": DEVICES_REFRESH.as_millis() as u64,
        "logPollMs": LOG_POLL.as_millis() as u64, "maxLogTail": MAX_LOG_TAIL,
    })
}

/// The token's length in random bytes (hex in the URL).
pub const TOKEN_BYTES: usize = 24;
/// The cookie the token is kept in.
pub const COOKIE: &str = "oxh_console";

/// Errors of the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No randomness for the token.
    #[error("no randomness for the console's token: {0}")]
    Random(String),
    /// The socket failed.
    #[error("the console's socket: {0}")]
    Io(#[from] std::io::Error),
}

/// A fresh random token, as hex.
pub fn new_token() -> Result<String, ConsoleError> {
    let mut b = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut b).map_err(|e| ConsoleError::Random(e.to_string()))?;
    Ok(hex::encode(b))
}

//! Local IPC, the Binder of oxharmony.
//!
//! Tools and apps reach the device daemon over one Unix stream socket. Each message is a
//! length-prefixed frame (see [`frame`]); requests and replies are matched by id so that many
//! calls can be in flight on one connection, and the daemon can push events for subscriptions.
//! Who the caller is comes from the kernel (SO_PEERCRED) when the connection is accepted and is
//! turned into a [`Caller`] with an access token; nothing the caller sends can change it.

pub mod budget;
pub mod caller;
/// Send/receive buffer asked for on every IPC connection, both ends: bulk calls (soft-bus
/// bytes in ~1 MiB parts) then cross in one write and one wake-up instead of five.
pub const SOCKET_BUFFER: usize = 4 << 20;
pub mod client;
pub mod error;
pub mod frame;
pub mod sa_id;
pub mod server;

pub use caller::{AppRefused, Caller, TokenResolver, TokenType, ToolTokenResolver};
pub use client::{Client, PendingReply, Subscription};
pub use error::{IpcError, RemoteError, code};
pub use frame::MAX_TRANSACTION;
pub use server::{ConnHandle, Dispatcher, Server, WaitSlot, too_busy};

/// Encodes a request or reply payload: every SA method's arguments and results travel as
/// postcard, a compact serde format, so a 64-byte request stays about 64 bytes on the wire.
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain data into a Vec cannot fail for our types (no maps with non-string
    // keys restrictions in postcard); fall back to an empty payload rather than panic.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Decodes a payload that came from the other side; a bad payload is an invalid argument (401).
pub fn decode<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, RemoteError> {
    postcard::from_bytes(bytes).map_err(|e| {
        RemoteError::new(
            code::INVALID_PARAM,
            format!("invalid argument: cannot decode message: {e}"),
        )
    })
}

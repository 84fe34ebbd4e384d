//! The IPC contracts of the device manager (SA 4802) and the soft bus (SA 4700): method codes
//! and serde argument/result types, shared by the services, the SDK and the CLI.

use serde::{Deserialize, Serialize};

/// OpenHarmony's device manager SA.
pub const DM_SA_ID: i32 = 4802;
/// OpenHarmony's soft bus server SA.
pub const SOFTBUS_SA_ID: i32 = 4700;

/// Device manager methods (4802).
pub mod dm {
    /// `()` → [`super::LocalDevice`].
    pub const GET_LOCAL_DEVICE_INFO: u32 = 1;
    /// `()` → `Vec<`[`super::SeenView`]`>`: devices seen on the network.
    pub const DISCOVER: u32 = 2;
    /// `()` → [`super::PinView`]: a fresh one-time PIN for binding (target side).
    pub const ISSUE_PIN: u32 = 3;
    /// [`super::BindArgs`] → [`super::TrustedView`]: bind with the target's PIN.
    pub const BIND: u32 = 4;
    /// `String` (udid, networkId, name or discover id) → `()`: remove trust on both sides.
    pub const UNBIND: u32 = 5;
    /// `()` → `Vec<`[`super::TrustedView`]`>`.
    pub const LIST_TRUSTED: u32 = 6;
    /// `u64` subscription → `()`; events are [`super::StateEvent`].
    pub const SUBSCRIBE_STATE: u32 = 7;
    /// `String` HOST:PORT → `()`: a static peer, for networks without multicast.
    pub const ADD_PEER: u32 = 8;
}

/// Soft bus socket methods (4700).
pub mod bus {
    /// [`super::ListenArgs`] → `()`; events [`super::SocketEventView`] on the subscription.
    pub const LISTEN: u32 = 1;
    /// [`super::BindSocketArgs`] → `u64` socket id; events on the subscription.
    pub const BIND: u32 = 2;
    /// [`super::SendArgs`] → `()`.
    pub const SEND: u32 = 3;
    /// `u64` socket → `()`.
    pub const SHUTDOWN: u32 = 4;
}

/// This device, as `oxh device info` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalDevice {
    /// udid, name, type, OS.
    pub info: oxh_devauth::DeviceInfo,
    /// networkId of this daemon run.
    pub network_id: String,
    /// UDP address of the bus.
    pub bus_addr: String,
}

/// A device seen on the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenView {
    /// What `oxh device bind <id>` takes: the short udid hash.
    pub id: String,
    /// Device name.
    pub name: String,
    /// Device type name.
    pub device_type: String,
    /// Addresses with the bus port.
    pub addresses: Vec<String>,
    /// Bound to this device?
    pub trusted: bool,
    /// Online now?
    pub online: bool,
}

/// A PIN for binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinView {
    /// Six digits.
    pub pin: String,
    /// Seconds it stays valid.
    pub valid_secs: u64,
}

/// Arguments of [`dm::BIND`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindArgs {
    /// The target: discover id, or HOST:PORT.
    pub id: String,
    /// The PIN the target shows.
    pub pin: String,
}

/// A trusted device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedView {
    /// Its udid.
    pub udid: String,
    /// Name.
    pub name: String,
    /// Type name.
    pub device_type: String,
    /// Online now?
    pub online: bool,
    /// networkId while online.
    pub network_id: Option<String>,
}

/// Device state changes (OpenHarmony's DeviceStateChange).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateEvent {
    /// ONLINE.
    Online(TrustedView),
    /// OFFLINE.
    Offline(TrustedView),
    /// INFO_CHANGED.
    InfoChanged(TrustedView),
}

/// Arguments of [`bus::LISTEN`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenArgs {
    /// Session name.
    pub name: String,
    /// Subscription for events.
    pub sub: u64,
}

/// Arguments of [`bus::BIND`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindSocketArgs {
    /// Peer device.
    pub network_id: String,
    /// Peer session name.
    pub name: String,
    /// Our socket's name.
    pub own_name: String,
    /// Data type.
    pub data_type: crate::transport::session::DataType,
    /// Subscription for events.
    pub sub: u64,
}

/// Arguments of [`bus::SEND`]. Bytes over the 1 MiB IPC limit are sent in parts: every part but
/// the last has `more` set, and the soft bus sends the whole once the last part arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendArgs {
    /// Socket.
    pub socket: u64,
    /// Message or bytes.
    pub kind: crate::transport::session::DataType,
    /// This part.
    pub data: Vec<u8>,
    /// More parts follow.
    pub more: bool,
}

/// Socket events as IPC carries them: bytes over 1 MiB arrive in parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SocketEventView {
    /// A peer bound to our listener.
    Bind {
        /// Socket.
        socket: u64,
        /// Peer's socket name.
        peer_name: String,
        /// Peer networkId.
        peer_network_id: String,
        /// Peer device name.
        peer_device: String,
    },
    /// A message.
    Message {
        /// Socket.
        socket: u64,
        /// Payload.
        data: Vec<u8>,
    },
    /// Part of a bytes payload; `last` ends it.
    BytesPart {
        /// Socket.
        socket: u64,
        /// This part.
        data: Vec<u8>,
        /// Final part.
        last: bool,
    },
    /// The socket closed.
    Shutdown {
        /// Socket.
        socket: u64,
        /// Why.
        reason: String,
    },
}

/// IPC part size for bytes: under the 1 MiB transaction limit with room for framing.
pub const IPC_PART: usize = 512 * 1024;

//! The IPC contracts of the device manager (SA 4802) and the soft bus (SA 4700): method codes
//! and serde argument/result types, shared by the services, the SDK and the CLI.

use serde::{Deserialize, Serialize};

/// OpenHarmony's device manager SA.
pub const DM_SA_ID: i32 = oxh_ipc::sa_id::DEVICE_MANAGER;
/// OpenHarmony's soft bus server SA.
pub const SOFTBUS_SA_ID: i32 = oxh_ipc::sa_id::SOFTBUS;

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
    /// [`super::SendFileArgs`] → `()`: one step of SendFile. The client reads its files and
    /// streams them in parts (the daemon never opens a path a caller names); `End` returns
    /// once the receiver has checked and saved the file.
    pub const SEND_FILE: u32 = 5;
    /// `u64` socket → [`super::FilePiece`]: the next piece of an incoming file (after a
    /// [`super::SocketEventView::FileBegin`]); waits for it. Pulling paces the transfer.
    pub const RECV_FILE: u32 = 6;
    /// [`super::FileResultArgs`] → `()`: the receiver's verdict on a file, sent to the sender.
    pub const FILE_RESULT: u32 = 7;
    /// [`super::SendStreamArgs`] → `()`: one unreliable stream frame (SendStream).
    pub const SEND_STREAM: u32 = 8;
    /// `u64` socket → `u64`: the largest stream frame the socket's path takes now.
    pub const MAX_STREAM: u32 = 9;
    /// [`super::SendFileFdArgs`], with a descriptor of the file (opened by the caller for
    /// reading) attached → [`super::FileFdSent`]: SendFile where the daemon reads the file
    /// through the caller's descriptor (never by path), so its contents do not cross IPC.
    pub const SEND_FILE_FD: u32 = 10;
    /// [`super::RecvFileFdArgs`], with a descriptor of the caller's temp file (opened for
    /// writing) attached → [`super::FileFdReceived`]: the daemon writes the incoming file
    /// there and hashes it; the caller checks, renames and answers with [`FILE_RESULT`].
    pub const RECV_FILE_FD: u32 = 11;
}

pub use crate::proto::{Checksum, FileOp, FilePiece};

/// This device, as `oxh device info` shows it: the identity's [`oxh_devauth::DeviceInfo`]
/// (udid, deviceName, deviceType, deviceTypeId, osFullName) with this run's networkId and bus
/// address, in one flat object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalDevice {
    /// Hex SHA-256 of the device key.
    pub udid: String,
    /// Device name.
    #[serde(rename = "deviceName")]
    pub name: String,
    /// Product type (`const.product.devicetype`).
    pub device_type: oxh_devauth::DeviceType,
    /// DmDeviceType id.
    pub device_type_id: u16,
    /// OS full name and version.
    #[serde(rename = "osFullName")]
    pub os_version: String,
    /// networkId of this daemon run.
    pub network_id: String,
    /// UDP address of the bus.
    pub bus_addr: String,
}

impl LocalDevice {
    /// The identity's info with this run's networkId and bus address.
    pub fn new(info: oxh_devauth::DeviceInfo, network_id: String, bus_addr: String) -> Self {
        Self {
            udid: info.udid,
            name: info.name,
            device_type: info.device_type,
            device_type_id: info.device_type_id,
            os_version: info.os_version,
            network_id,
            bus_addr,
        }
    }
}

/// A device seen on the network; JSON names as distributedDeviceManager's DeviceBasicInfo
/// where it has the field (deviceName, deviceType, deviceTypeId).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeenView {
    /// What `oxh device bind <id>` takes: the device's advert id of the moment (it rotates
    /// every epoch, so a stranger cannot follow the device by it).
    pub id: String,
    /// Device name.
    #[serde(rename = "deviceName")]
    pub name: String,
    /// Device type as device manager names it ([`oxh_devauth::dm_type_name`]).
    pub device_type: String,
    /// DmDeviceType id.
    pub device_type_id: u16,
    /// Addresses with the bus port.
    pub addresses: Vec<String>,
    /// Bound to this device?
    pub trusted: bool,
    /// Online now?
    pub online: bool,
}

/// A PIN for binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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

/// A trusted device; JSON names as distributedDeviceManager's DeviceBasicInfo (deviceName,
/// deviceType, networkId) with the DmDeviceInfo's deviceTypeId and the udid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustedView {
    /// Its udid.
    pub udid: String,
    /// Name.
    #[serde(rename = "deviceName")]
    pub name: String,
    /// Device type as device manager names it ([`oxh_devauth::dm_type_name`]).
    pub device_type: String,
    /// DmDeviceType id.
    pub device_type_id: u16,
    /// Online now?
    pub online: bool,
    /// networkId while online.
    pub network_id: Option<String>,
}

impl TrustedView {
    /// A view of a device whose DmDeviceType id is `device_type_id`; its `device_type` is the
    /// name device manager gives that id.
    pub fn new(
        udid: String,
        name: String,
        device_type_id: u16,
        online: bool,
        network_id: Option<String>,
    ) -> Self {
        Self {
            udid,
            name,
            device_type: oxh_devauth::dm_type_name(device_type_id).to_string(),
            device_type_id,
            online,
            network_id,
        }
    }
}

/// OpenHarmony's DeviceStateChange of a state event: AVAILABLE (online and ready),
/// UNAVAILABLE (offline); INFO_CHANGED is DmDeviceState's name for a changed device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeviceStateChange {
    /// The device came online.
    Available,
    /// The device went offline.
    Unavailable,
    /// Its name or type changed.
    InfoChanged,
}

/// One state event as distributedDeviceManager's `deviceStateChange` callback gives it:
/// `{action, device}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStateChangeResult {
    /// What happened.
    pub action: DeviceStateChange,
    /// The device.
    pub device: TrustedView,
}

impl From<StateEvent> for DeviceStateChangeResult {
    fn from(e: StateEvent) -> Self {
        let (action, device) = match e {
            StateEvent::Online(d) => (DeviceStateChange::Available, d),
            StateEvent::Offline(d) => (DeviceStateChange::Unavailable, d),
            StateEvent::InfoChanged(d) => (DeviceStateChange::InfoChanged, d),
        };
        Self { action, device }
    }
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
    pub data_type: crate::proto::DataType,
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
    pub kind: crate::proto::DataType,
    /// This part.
    #[serde(with = "crate::proto::blob")]
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
        #[serde(with = "crate::proto::blob")]
        data: Vec<u8>,
    },
    /// Part of a bytes payload; `last` ends it.
    BytesPart {
        /// Socket.
        socket: u64,
        /// This part.
        #[serde(with = "crate::proto::blob")]
        data: Vec<u8>,
        /// Final part.
        last: bool,
    },
    /// A file starts arriving (OnFile start): pull it with [`bus::RECV_FILE`].
    FileBegin {
        /// Socket.
        socket: u64,
        /// Checked name to save it under.
        name: String,
        /// Size in bytes.
        size: u64,
    },
    /// The peer offered a file under a name this device refuses; it was skipped.
    FileRefused {
        /// Socket.
        socket: u64,
        /// The name as sent.
        name: String,
        /// Why.
        reason: String,
    },
    /// One stream frame (OnStream).
    Stream {
        /// Socket.
        socket: u64,
        /// The frame.
        #[serde(with = "crate::proto::blob")]
        data: Vec<u8>,
    },
    /// The socket closed.
    Shutdown {
        /// Socket.
        socket: u64,
        /// Why.
        reason: String,
    },
}

/// IPC part size for bytes: as close to the 1 MiB transaction limit as framing allows (fewer
/// calls and events per payload).
pub const IPC_PART: usize = 1024 * 1024 - 16 * 1024;

/// Chunk size for file contents over IPC and on the wire: under the 1 MiB IPC transaction
/// limit with room for framing, and large enough that per-chunk costs stay small.
pub const FILE_PART: usize = 1024 * 1024 - 16 * 1024;

/// Arguments of [`bus::SEND_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendFileArgs {
    /// Socket.
    pub socket: u64,
    /// The step.
    pub op: FileOp,
}

/// Arguments of [`bus::FILE_RESULT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileResultArgs {
    /// Socket.
    pub socket: u64,
    /// The file's `seq` from [`FilePiece::End`].
    pub seq: u64,
    /// `None`: saved with a matching checksum; else why not.
    pub error: Option<String>,
}

/// Arguments of [`bus::SEND_STREAM`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendStreamArgs {
    /// Socket.
    pub socket: u64,
    /// The frame.
    #[serde(with = "crate::proto::blob")]
    pub data: Vec<u8>,
}

/// Arguments of [`bus::SEND_FILE_FD`]. Calls go in steps, so the caller can show progress:
/// each returns once the file is sent up to `upto` bytes (or whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendFileFdArgs {
    /// Socket.
    pub socket: u64,
    /// On the first step: the destination name (begins the file; its size is the
    /// descriptor's). `None` on later steps.
    pub name: Option<String>,
    /// Send up to this offset in this step.
    pub upto: u64,
}

/// Result of [`bus::SEND_FILE_FD`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFdSent {
    /// Bytes sent so far.
    pub sent: u64,
    /// The file's size.
    pub size: u64,
    /// Once the whole file is sent and the receiver confirmed it: its checksum (XXH3-128).
    pub checksum: Option<Checksum>,
}

/// Arguments of [`bus::RECV_FILE_FD`]: returns once `upto` bytes of the incoming file are
/// written, or the file ended or broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvFileFdArgs {
    /// Socket.
    pub socket: u64,
    /// Write up to this many bytes of the file in this step.
    pub upto: u64,
}

/// Result of [`bus::RECV_FILE_FD`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileFdReceived {
    /// `received` bytes written so far; call again.
    Progress {
        /// Bytes written.
        received: u64,
    },
    /// All bytes arrived and are written and synced to the descriptor.
    End {
        /// The file's number on the socket, for [`bus::FILE_RESULT`].
        seq: u64,
        /// The sender's checksum.
        checksum: Checksum,
        /// Checksum of what was written; `None` when writing failed (see `error`).
        actual: Option<Checksum>,
        /// Why the file could not be written.
        error: Option<String>,
        /// Bytes written.
        received: u64,
    },
    /// The transfer broke: discard the temp file.
    Broken {
        /// Why.
        reason: String,
    },
}

/// Bytes of a file moved per [`bus::SEND_FILE_FD`] / [`bus::RECV_FILE_FD`] step: large enough
/// that the calls cost nothing beside the data, small enough for progress reports.
pub const FILE_FD_STEP: u64 = 64 << 20;

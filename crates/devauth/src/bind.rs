//! PIN binding: two devices that share nothing but a 6-digit PIN, shown on one and typed on the
//! other, learn each other's long-term Ed25519 key, so that every later connection between them
//! is pinned, and each other's advert identity key ([`crate::AdvertKey`]), so that each
//! recognises the other's rotating mDNS adverts. OpenHarmony's device_auth does this for its peer-to-peer group; here the PIN keys a
//! real PAKE (SPAKE2), so that an eavesdropper or a man in the middle learns nothing it could
//! test PINs against offline, and every online guess costs one of the target's three tries.
//!
//! Sans-IO: [`Initiator`] (device A, `oxh device bind <id> --pin 123456`) and [`Target`]
//! (device B, which showed the PIN) take bytes and the time and return a [`Step`]: bytes to send,
//! if any, and whether binding finished. Randomness comes from getrandom, or from a seed in
//! tests. They run over an established QUIC/TLS 1.3 connection and take two facts from it
//! (a [`Channel`]): the TLS exporter value, equal on both ends of one TLS session and different
//! on the two sessions of a man in the middle, and the Ed25519 key that the peer's certificate
//! carried.
//!
//! # Flow
//!
//! ```text
//!  Initiator A (knows PIN)                          Target B (shows PIN)
//!  Start {X, pk_A}               ───────────────▶   pk_A == TLS peer key?  PIN valid, not locked out?
//!                                ◀───────────────   Challenge {Y, pk_B}
//!  pk_B == TLS peer key?
//!  Confirm {rec_A, sig_A, mac_A, ak_A}  ────────▶   mac_A ok? (else: wrong PIN, one failure counted)
//!                                                   sig_A ok, rec_A.udid == H(pk_A)?  PIN consumed
//!                                ◀────────────────  Accept {rec_B, sig_B, mac_B, ak_B} → bound to A
//!  mac_B, sig_B, rec_B ok?  → bound to B
//! ```
//!
//! Either side may instead send `Abort {reason}` and stop; the target does so on a wrong PIN,
//! an expired PIN, a lockout (with the seconds left), a timeout or a protocol error, so that the
//! initiator can tell its user why. Any message out of order, repeated, from another session or
//! of an unknown version ends the session with an error; nothing but the exact flow above ends
//! in success.
//!
//! The target is bound once it sends `Accept` (the soft bus stores the trust before it sends
//! it, so an initiator that heard `Accept` may count on the target keeping it, even across an
//! immediate restart); should that frame be lost, the initiator fails
//! (timeout) while the target already trusts it. The user sees the failure and binds again,
//! which replaces the entry ([`crate::TrustStore::add`] replaces by udid).
//!
//! # Cryptography
//!
//! - `E`: the 32-byte TLS exporter value (label and context are the transport's choice).
//! - SPAKE2 (crate `spake2` 0.4, Ed25519 group, asymmetric): A is side A, B side B;
//!   password = the 6 ASCII digits; identities
//!   `idA = "oxh-bind-v1 initiator" || E || pk_A`, `idB = "oxh-bind-v1 target" || E || pk_B`.
//!   `X`, `Y` are the 33-byte SPAKE2 messages (side byte `'A'`/`'B'` + 32-byte point); only the
//!   32-byte point travels, the side byte is implied by the message type. `K` = SPAKE2 key.
//! - Transcript hash `TH = SHA-256("oxh-bind-v1 transcript" || E || pk_A || pk_B || X || Y)`
//!   (all fixed length): it covers the exporter, both SPAKE2 messages and both long-term keys.
//! - `HKDF-SHA256(salt = TH, ikm = K)`; `kA = Expand("oxh-bind-v1 confirm initiator", 32)`,
//!   `kB = Expand("oxh-bind-v1 confirm target", 32)`; the pads that seal the advert keys,
//!   `pA = Expand("oxh-bind-v2 advert key initiator", 32)`,
//!   `pB = Expand("oxh-bind-v2 advert key target", 32)`.
//! - `ak_A = advert_key_A XOR pA`, `ak_B = advert_key_B XOR pB`: each pad is used once, and
//!   only the holders of the PIN-keyed `K` can derive it. The initiator sends `ak_A` before it
//!   knows that the target holds the PIN; sealed, it is useless to a target that does not (a
//!   bare advert key would let such a target follow the initiator's adverts).
//! - `R(rec) = SHA-256(u32be len || udid || u32be len || name || u32be len || device_type ||
//!   u16be device_type_id)`.
//! - `sig_A = Ed25519_skA("oxh-bind-v1 sig initiator" || TH || R(rec_A))`,
//!   `mac_A = HMAC-SHA256(kA, "oxh-bind-v1 mac initiator" || TH || R(rec_A) || sig_A || ak_A)`.
//! - `sig_B = Ed25519_skB("oxh-bind-v1 sig target" || TH || mac_A || R(rec_B))`,
//!   `mac_B = HMAC-SHA256(kB, "oxh-bind-v1 mac target" || TH || mac_A || R(rec_B) || sig_B
//!   || ak_B)`.
//!
//! A wrong PIN, or a different `E` (a relay between two TLS sessions), gives different `K` or
//! `TH` on the two sides and the MAC fails. Each side checks that the peer's `pk` in the protocol
//! is the key that authenticated the TLS connection, that the peer signed the transcript with
//! it, and that the peer's udid is the hex SHA-256 of it.
//!
//! # Bytes on the wire
//!
//! One message per transport frame, at most [`MAX_BIND_MSG`] (4096) bytes:
//!
//! ```text
//! frame      = version:u8 (= 2) || postcard(BindMsg)
//! BindMsg    = varint type || fields, by type:
//!   0 Start     spake:[32] public_key:[32]                   (raw bytes, no length)
//!   1 Challenge spake:[32] public_key:[32]
//!   2 Confirm   device:DeviceRecord signature:bytes mac:[32] advert_key:[32] (sealed)
//!   3 Accept    device:DeviceRecord signature:bytes mac:[32] advert_key:[32] (sealed)
//!   4 Abort     reason:AbortReason
//! DeviceRecord = udid:string name:string device_type:string device_type_id:varint(u16)
//! string, bytes = varint length || bytes (UTF-8 for string); signature must be 64 bytes
//! AbortReason  = varint: 0 WrongPin | 1 Expired | 2 LockedOut retry_after:varint(u64)
//!                | 3 Timeout | 4 Protocol | 5 Cancelled
//! ```
//!
//! varint is postcard's (LEB128, zigzag for signed). A frame with trailing bytes is rejected.
//! A different version byte is rejected before the rest is parsed, so a later version can
//! change everything after it. Version 2 added the sealed advert keys; version 1 peers are
//! refused with [`ProtocolError::BadVersion`].

#[cfg(feature = "service")]
use crate::DeviceIdentity;
use crate::pin::{Pin, PinManager, PinTicket};
use crate::{AdvertKey, udid_of};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use std::ops::ControlFlow;
use std::time::Duration;

/// The protocol version this code speaks, the first byte of every frame.
pub const BIND_VERSION: u8 = 2;
/// Largest frame accepted (OpenHarmony's 4 KiB message limit).
pub const MAX_BIND_MSG: usize = 4096;
/// How long one binding session may take from its start before it fails with
/// [`BindError::Timeout`]; the user typed the PIN before it started, so this is round trips.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest device name accepted in a record, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest device type name accepted in a record, in bytes.
pub const MAX_TYPE_LEN: usize = 32;

const LABEL_ID_I: &[u8] = b"oxh-bind-v1 initiator";
const LABEL_ID_T: &[u8] = b"oxh-bind-v1 target";
const LABEL_TRANSCRIPT: &[u8] = b"oxh-bind-v1 transcript";
const LABEL_CONFIRM_I: &[u8] = b"oxh-bind-v1 confirm initiator";
const LABEL_CONFIRM_T: &[u8] = b"oxh-bind-v1 confirm target";
const LABEL_SIG_I: &[u8] = b"oxh-bind-v1 sig initiator";
const LABEL_SIG_T: &[u8] = b"oxh-bind-v1 sig target";
const LABEL_MAC_I: &[u8] = b"oxh-bind-v1 mac initiator";
const LABEL_MAC_T: &[u8] = b"oxh-bind-v1 mac target";
const LABEL_PAD_I: &[u8] = b"oxh-bind-v2 advert key initiator";
const LABEL_PAD_T: &[u8] = b"oxh-bind-v2 advert key target";

/// Error codes for binding failures, OpenHarmony's, documented here once.
pub mod code {
    /// JS-level DM code: OpenHarmony's NAPI reports every bind failure (wrong PIN, timeout,
    /// rejection) as this one, with the native reason beside it.
    pub const DM_ERR_FAILED: i32 = 11_600_101;
    /// JS-level DM code: another authentication is still in progress.
    pub const DM_ERR_AUTHENTICATION_INVALID: i32 = 11_600_103;
    /// Native DM reason `ERR_DM_FAILED`.
    pub const ERR_DM_FAILED: i32 = 96_929_744;
    /// Native DM reason `ERR_DM_TIME_OUT`: the PIN's display time ran out.
    pub const ERR_DM_TIME_OUT: i32 = 96_929_745;
    /// Native DM reason `ERR_DM_AUTH_REJECT`: the target refuses (used for the lockout).
    pub const ERR_DM_AUTH_REJECT: i32 = 96_929_764;
    /// Native DM reason `ERR_DM_AUTH_FAILED`: the authentication protocol failed.
    pub const ERR_DM_AUTH_FAILED: i32 = 96_929_765;
    /// Native DM reason `ERR_DM_BIND_PIN_CODE_ERROR`: wrong PIN.
    pub const ERR_DM_BIND_PIN_CODE_ERROR: i32 = 96_929_779;
    /// Native DM reason `ERR_DM_BIND_TIMEOUT_FAILED`: the bind session timed out.
    pub const ERR_DM_BIND_TIMEOUT_FAILED: i32 = 96_929_781;
}

/// Why a message or session broke the protocol (as opposed to a wrong PIN or a policy refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A frame with no bytes.
    #[error("empty message")]
    Empty,
    /// A frame over [`MAX_BIND_MSG`].
    #[error("message of {0} bytes exceeds the {MAX_BIND_MSG}-byte limit")]
    TooLarge(usize),
    /// A version this device does not speak.
    #[error("unsupported bind protocol version {0} (this device speaks version {BIND_VERSION})")]
    BadVersion(u8),
    /// Bytes that are not a message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A valid message at the wrong moment: replayed, reordered or from a confused peer.
    #[error("unexpected {got} message while waiting for {expected} (replayed or out of order)")]
    Unexpected {
        /// What the state machine waited for.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
    /// Input after the session ended.
    #[error("the binding session has already finished")]
    Finished,
    /// The peer's device record is inconsistent with its key or over the limits.
    #[error("invalid device record: {0}")]
    BadRecord(String),
    /// The peer did not sign the transcript with the key it claims.
    #[error("bad signature from the peer's device key")]
    BadSignature,
    /// The peer's SPAKE2 message is not a valid point.
    #[error("invalid SPAKE2 message: {0}")]
    Spake(String),
    /// The peer ended the session for a reason of its own.
    #[error("the peer aborted binding ({0})")]
    PeerAborted(&'static str),
}

/// Why binding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The key confirmation failed: the two sides did not use the same PIN (or, which looks the
    /// same, the messages were relayed between two TLS sessions).
    #[error("wrong PIN")]
    WrongPin,
    /// The target has no valid PIN: never shown, expired, replaced or already used.
    #[error(
        "no valid PIN on the target (expired or already used); run `oxh device pin` on the target for a new one"
    )]
    Expired,
    /// Too many wrong PINs: the target refuses binding for a while.
    #[error("too many wrong PINs: the target refuses binding for {retry_after} more seconds")]
    LockedOut {
        /// Seconds until binding is possible again.
        retry_after: u64,
    },
    /// The session took longer than [`SESSION_TIMEOUT`].
    #[error("binding timed out")]
    Timeout,
    /// The key in the protocol is not the key that authenticated the TLS connection.
    #[error(
        "the peer's device key in the binding differs from the key that authenticated the connection"
    )]
    PeerKeyMismatch,
    /// The PIN typed is not 6 digits.
    #[error("invalid PIN: a PIN is 6 digits")]
    InvalidPin,
    /// The peer broke the protocol.
    #[error("binding protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The OS random source failed.
    #[error("no randomness for binding: {0}")]
    Random(String),
}

impl BindError {
    /// The JS-level device-manager code, as OpenHarmony's NAPI reports it: 401 for a malformed
    /// PIN, 11600101 for every failed binding.
    pub fn code(&self) -> i32 {
        match self {
            BindError::InvalidPin => oxh_ipc::code::INVALID_PARAM,
            _ => code::DM_ERR_FAILED,
        }
    }

    /// OpenHarmony DM's native reason code, which tells the failures apart.
    pub fn reason(&self) -> i32 {
        match self {
            BindError::WrongPin => code::ERR_DM_BIND_PIN_CODE_ERROR,
            BindError::Expired => code::ERR_DM_TIME_OUT,
            BindError::LockedOut { .. } => code::ERR_DM_AUTH_REJECT,
            BindError::Timeout => code::ERR_DM_BIND_TIMEOUT_FAILED,
            BindError::PeerKeyMismatch | BindError::Protocol(_) => code::ERR_DM_AUTH_FAILED,
            BindError::InvalidPin => oxh_ipc::code::INVALID_PARAM,
            BindError::Random(_) => code::ERR_DM_FAILED,
        }
    }
}

/// What a device tells the device it binds with about itself; stored by the peer as trusted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Hex SHA-256 of the device's public key.
    pub udid: String,
    /// Human-readable name.
    pub name: String,
    /// Device type name (`phone`, `tv`, ...), a string so that new types need no new version.
    pub device_type: String,
    /// OpenHarmony DmDeviceType id.
    pub device_type_id: u16,
}

impl DeviceRecord {
    /// Checks the record against the key it came with, and its limits.
    pub fn validate_for(&self, public_key: &[u8; 32]) -> Result<(), ProtocolError> {
        if self.udid != udid_of(public_key) {
            return Err(ProtocolError::BadRecord(
                "udid is not the hex SHA-256 of the device key".into(),
            ));
        }
        if self.name.len() > MAX_NAME_LEN {
            return Err(ProtocolError::BadRecord(format!(
                "name longer than {MAX_NAME_LEN} bytes"
            )));
        }
        if self.device_type.len() > MAX_TYPE_LEN {
            return Err(ProtocolError::BadRecord(format!(
                "device type longer than {MAX_TYPE_LEN} bytes"
            )));
        }
        Ok(())
    }

    /// `R(rec)` of the module doc: an unambiguous hash of the record for the MACs.
    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for s in [&self.udid, &self.name, &self.device_type] {
            h.update((s.len() as u32).to_be_bytes());
            h.update(s.as_bytes());
        }
        h.update(self.device_type_id.to_be_bytes());
        h.finalize().into()
    }
}

/// This device, as binding needs it: the signing key, the advert key and the record sent to
/// the peer.
#[derive(Clone)]
pub struct LocalDevice {
    key: SigningKey,
    advert_key: AdvertKey,
    record: DeviceRecord,
}

impl std::fmt::Debug for LocalDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDevice")
            .field("record", &self.record)
            .finish()
    }
}

impl LocalDevice {
    /// Builds from the keys and the name and type to announce; the udid is derived from the
    /// key, so it cannot disagree with it.
    pub fn new(
        key: SigningKey,
        advert_key: AdvertKey,
        name: &str,
        device_type: &str,
        device_type_id: u16,
    ) -> Self {
        let udid = udid_of(&key.verifying_key().to_bytes());
        Self {
            key,
            advert_key,
            record: DeviceRecord {
                udid,
                name: name.to_string(),
                device_type: device_type.to_string(),
                device_type_id,
            },
        }
    }

    #[cfg(feature = "service")]
    /// This device's identity as loaded from the data dir.
    pub fn from_identity(id: &DeviceIdentity) -> Self {
        let info = id.info();
        Self::new(
            id.signing_key().clone(),
            id.advert_key(),
            &info.name,
            info.device_type.as_str(),
            info.device_type_id,
        )
    }

    /// The record sent to the peer.
    pub fn record(&self) -> &DeviceRecord {
        &self.record
    }

    fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
}

/// What the TLS session underneath says, the facts binding is tied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// The TLS exporter value for binding: same on both ends of one TLS session only.
    pub exporter: [u8; 32],
    /// The Ed25519 public key the peer's certificate carried (the peer proved possession of
    /// it in the TLS handshake).
    pub peer_key: [u8; 32],
}

/// The result of a successful binding: the peer to store as trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPeer {
    /// What the peer said about itself (checked: its udid is the hash of `public_key`).
    pub record: DeviceRecord,
    /// The peer's long-term key, which authenticated the TLS connection.
    pub public_key: [u8; 32],
    /// The peer's advert identity key, unsealed with the PAKE key.
    pub advert_key: AdvertKey,
}

impl BoundPeer {
    #[cfg(feature = "service")]
    /// The trust-store entry for this peer, bound at `bound_at` (unix seconds).
    pub fn to_trusted(&self, bound_at: u64) -> crate::TrustedDevice {
        crate::TrustedDevice {
            udid: self.record.udid.clone(),
            public_key: self.public_key,
            name: self.record.name.clone(),
            device_type: self.record.device_type.clone(),
            device_type_id: self.record.device_type_id,
            bound_at,
            advert_key: Some(self.advert_key),
        }
    }
}

/// First message, initiator → target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    /// SPAKE2 side-A point `X` (without the side byte).
    pub spake: [u8; 32],
    /// The initiator's long-term Ed25519 key.
    pub public_key: [u8; 32],
}

/// Second message, target → initiator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// SPAKE2 side-B point `Y` (without the side byte).
    pub spake: [u8; 32],
    /// The target's long-term Ed25519 key.
    pub public_key: [u8; 32],
}

/// Third message (initiator → target) and fourth (target → initiator): key confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    /// The sender's record.
    pub device: DeviceRecord,
    /// Ed25519 signature by the sender's long-term key (64 bytes).
    pub signature: Vec<u8>,
    /// HMAC-SHA256 key confirmation.
    pub mac: [u8; 32],
    /// The sender's advert key XOR a pad only the PIN holders can derive.
    pub advert_key: [u8; 32],
}

/// Why a side ended the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbortReason {
    /// The key confirmation failed.
    WrongPin,
    /// No valid PIN on the target.
    Expired,
    /// The target is locked out.
    LockedOut {
        /// Seconds left.
        retry_after: u64,
    },
    /// The session took too long.
    Timeout,
    /// A protocol error.
    Protocol,
    /// A user cancelled.
    Cancelled,
}

impl AbortReason {
    fn of(e: &BindError) -> Self {
        match e {
            BindError::WrongPin => AbortReason::WrongPin,
            BindError::Expired => AbortReason::Expired,
            BindError::LockedOut { retry_after } => AbortReason::LockedOut {
                retry_after: *retry_after,
            },
            BindError::Timeout => AbortReason::Timeout,
            _ => AbortReason::Protocol,
        }
    }

    fn into_error(self) -> BindError {
        match self {
            AbortReason::WrongPin => BindError::WrongPin,
            AbortReason::Expired => BindError::Expired,
            AbortReason::LockedOut { retry_after } => BindError::LockedOut { retry_after },
            AbortReason::Timeout => BindError::Timeout,
            AbortReason::Protocol => ProtocolError::PeerAborted("protocol error").into(),
            AbortReason::Cancelled => ProtocolError::PeerAborted("cancelled").into(),
        }
    }
}

/// One binding message. The variant order is the wire's message type; append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindMsg {
    /// Type 0.
    Start(Start),
    /// Type 1.
    Challenge(Challenge),
    /// Type 2.
    Confirm(Confirm),
    /// Type 3.
    Accept(Confirm),
    /// Type 4.
    Abort(AbortReason),
}

impl BindMsg {
    /// The frame: version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![BIND_VERSION];
        // Serializing these plain types into a Vec cannot fail.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// The message type's name, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            BindMsg::Start(_) => "Start",
            BindMsg::Challenge(_) => "Challenge",
            BindMsg::Confirm(_) => "Confirm",
            BindMsg::Accept(_) => "Accept",
            BindMsg::Abort(_) => "Abort",
        }
    }
}

/// Parses one frame of outside bytes; never panics, and rejects oversize frames, unknown
/// versions, unknown types and trailing bytes.
pub fn decode_bind_msg(bytes: &[u8]) -> Result<BindMsg, BindError> {
    if bytes.len() > MAX_BIND_MSG {
        return Err(ProtocolError::TooLarge(bytes.len()).into());
    }
    let (&version, body) = bytes.split_first().ok_or(ProtocolError::Empty)?;
    if version != BIND_VERSION {
        return Err(ProtocolError::BadVersion(version).into());
    }
    let (msg, rest) = postcard::take_from_bytes::<BindMsg>(body)
        .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ProtocolError::Malformed(format!("{} trailing bytes", rest.len())).into());
    }
    Ok(msg)
}

/// What handling one input produced.
#[derive(Debug)]
#[must_use]
pub struct Step {
    /// A frame to send to the peer, if any (also on failure: an `Abort` telling it why).
    pub send: Option<Vec<u8>>,
    /// Whether the session goes on, succeeded or failed.
    pub progress: Progress,
}

/// Where a session stands after a step.
#[derive(Debug)]
pub enum Progress {
    /// Waiting for the peer's next message.
    Continue,
    /// Bound: store the peer as trusted. The session is over; stop feeding it.
    Bound(BoundPeer),
    /// Failed; the session is over.
    Failed(BindError),
}

impl Step {
    fn next(send: Vec<u8>) -> Self {
        Self {
            send: Some(send),
            progress: Progress::Continue,
        }
    }

    /// Whether the session is over (bound or failed).
    pub fn is_finished(&self) -> bool {
        !matches!(self.progress, Progress::Continue)
    }

    /// The bound peer, if this step finished binding.
    pub fn bound(&self) -> Option<&BoundPeer> {
        match &self.progress {
            Progress::Bound(p) => Some(p),
            _ => None,
        }
    }

    /// The error, if this step failed.
    pub fn error(&self) -> Option<&BindError> {
        match &self.progress {
            Progress::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// A deterministic CSPRNG (SHA-512 in counter mode over a 32-byte seed) for SPAKE2's scalar,
/// so that randomness can be injected in simulations.
struct SeedRng {
    seed: [u8; 32],
    counter: u64,
}

impl rand_core::RngCore for SeedRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(64) {
            let block = Sha512::new()
                .chain_update(b"oxh-bind-v1 rng")
                .chain_update(self.seed)
                .chain_update(self.counter.to_le_bytes())
                .finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
            self.counter += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for SeedRng {}

fn os_seed() -> Result<[u8; 32], BindError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| BindError::Random(e.to_string()))?;
    Ok(seed)
}

fn spake_ids(exporter: &[u8; 32], pk_i: &[u8; 32], pk_t: &[u8; 32]) -> (Identity, Identity) {
    let id = |label: &[u8], pk: &[u8; 32]| Identity::new(&[label, exporter, pk].concat());
    (id(LABEL_ID_I, pk_i), id(LABEL_ID_T, pk_t))
}

fn with_side(side: u8, point: &[u8; 32]) -> [u8; 33] {
    let mut m = [0u8; 33];
    m[0] = side;
    m[1..].copy_from_slice(point);
    m
}

fn point_of(msg: &[u8]) -> [u8; 32] {
    let mut p = [0u8; 32];
    if let Some(tail) = msg.get(1..33) {
        p.copy_from_slice(tail);
    }
    p
}

/// The session keys both sides derive.
struct Keys {
    th: [u8; 32],
    k_i: [u8; 32],
    k_t: [u8; 32],
    pad_i: [u8; 32],
    pad_t: [u8; 32],
}

impl Keys {
    fn derive(
        exporter: &[u8; 32],
        pk_i: &[u8; 32],
        pk_t: &[u8; 32],
        x: &[u8; 33],
        y: &[u8; 33],
        k: &[u8],
    ) -> Self {
        let th: [u8; 32] = Sha256::new()
            .chain_update(LABEL_TRANSCRIPT)
            .chain_update(exporter)
            .chain_update(pk_i)
            .chain_update(pk_t)
            .chain_update(x)
            .chain_update(y)
            .finalize()
            .into();
        let hk = Hkdf::<Sha256>::new(Some(&th), k);
        let mut k_i = [0u8; 32];
        let mut k_t = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(LABEL_CONFIRM_I, &mut k_i);
        let _ = hk.expand(LABEL_CONFIRM_T, &mut k_t);
        let mut pad_i = [0u8; 32];
        let mut pad_t = [0u8; 32];
        let _ = hk.expand(LABEL_PAD_I, &mut pad_i);
        let _ = hk.expand(LABEL_PAD_T, &mut pad_t);
        Self {
            th,
            k_i,
            k_t,
            pad_i,
            pad_t,
        }
    }
}

/// Seals or unseals an advert key with a one-time pad.
fn xor_pad(key: &[u8; 32], pad: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| key[i] ^ pad[i])
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m
}

fn verify_sig(pk: &[u8; 32], msg: &[&[u8]], sig: &[u8]) -> Result<(), ProtocolError> {
    let vk = VerifyingKey::from_bytes(pk).map_err(|_| ProtocolError::BadSignature)?;
    let sig = Signature::from_slice(sig).map_err(|_| ProtocolError::BadSignature)?;
    vk.verify_strict(&msg.concat(), &sig)
        .map_err(|_| ProtocolError::BadSignature)
}

fn fail(e: BindError) -> Step {
    Step {
        send: Some(BindMsg::Abort(AbortReason::of(&e)).encode()),
        progress: Progress::Failed(e),
    }
}

fn peer_aborted(reason: AbortReason) -> Step {
    Step {
        send: None,
        progress: Progress::Failed(reason.into_error()),
    }
}

fn finished() -> Step {
    Step {
        send: None,
        progress: Progress::Failed(ProtocolError::Finished.into()),
    }
}

/// A machine's state: the initiator and the target end a session the same way.
trait State: Sized {
    /// The state once the session is over (bound, failed, timed out or cancelled).
    const FINISHED: Self;
    fn is_finished(&self) -> bool;
}

impl State for IState {
    const FINISHED: Self = IState::Finished;
    fn is_finished(&self) -> bool {
        matches!(self, IState::Finished)
    }
}

impl State for TState {
    const FINISHED: Self = TState::Finished;
    fn is_finished(&self) -> bool {
        matches!(self, TState::Finished)
    }
}

/// A machine as `Debug` shows it: whose it is and whether it has finished (no keys).
fn fmt_machine(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    me: &LocalDevice,
    state: &impl State,
) -> std::fmt::Result {
    f.debug_struct(name)
        .field("me", &me.record.udid)
        .field("finished", &state.is_finished())
        .finish()
}

/// `deadline`, unless the session has finished.
fn live_deadline(state: &impl State, deadline: Duration) -> Option<Duration> {
    (!state.is_finished()).then_some(deadline)
}

/// Fails the session if `now` is past its `deadline`.
fn time_out<S: State>(state: &mut S, deadline: Duration, now: Duration) -> Option<Step> {
    if state.is_finished() || now < deadline {
        return None;
    }
    *state = S::FINISHED;
    Some(fail(BindError::Timeout))
}

/// Ends the session; the `Abort` frame to send, unless it had finished.
fn cancel<S: State>(state: &mut S) -> Option<Vec<u8>> {
    if state.is_finished() {
        return None;
    }
    *state = S::FINISHED;
    Some(BindMsg::Abort(AbortReason::Cancelled).encode())
}

/// The state a frame received at `now` meets (the machine is left finished until the frame's
/// handler sets the next one) and the frame decoded; or the step that ends the call.
fn take_with_frame<S: State>(
    state: &mut S,
    deadline: Duration,
    now: Duration,
    bytes: &[u8],
) -> ControlFlow<Step, (S, BindMsg)> {
    let state = std::mem::replace(state, S::FINISHED);
    if state.is_finished() {
        return ControlFlow::Break(finished());
    }
    if now >= deadline {
        return ControlFlow::Break(fail(BindError::Timeout));
    }
    match decode_bind_msg(bytes) {
        Ok(m) => ControlFlow::Continue((state, m)),
        Err(e) => ControlFlow::Break(fail(e)),
    }
}

enum IState {
    AwaitChallenge {
        spake: Spake2<Ed25519Group>,
        x: [u8; 33],
    },
    AwaitAccept {
        keys: Keys,
        pk_t: [u8; 32],
        mac_i: [u8; 32],
    },
    Finished,
}

/// Device A: the user typed the target's PIN here.
pub struct Initiator {
    me: LocalDevice,
    chan: Channel,
    deadline: Duration,
    state: IState,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fmt_machine(f, "Initiator", &self.me, &self.state)
    }
}

impl Initiator {
    /// Starts binding with `pin` at `now`; returns the machine and the `Start` frame to send.
    pub fn start(
        me: LocalDevice,
        chan: Channel,
        pin: Pin,
        now: Duration,
    ) -> Result<(Self, Vec<u8>), BindError> {
        Ok(Self::start_seeded(me, chan, pin, now, os_seed()?))
    }

    /// As [`Initiator::start`], with the SPAKE2 randomness derived from `seed` (simulations).
    pub fn start_seeded(
        me: LocalDevice,
        chan: Channel,
        pin: Pin,
        now: Duration,
        seed: [u8; 32],
    ) -> (Self, Vec<u8>) {
        let pk_i = me.public_key();
        let (id_i, id_t) = spake_ids(&chan.exporter, &pk_i, &chan.peer_key);
        let (spake, msg) = Spake2::<Ed25519Group>::start_a_with_rng(
            &Password::new(pin.digits()),
            &id_i,
            &id_t,
            SeedRng { seed, counter: 0 },
        );
        let x = with_side(b'A', &point_of(&msg));
        let frame = BindMsg::Start(Start {
            spake: point_of(&msg),
            public_key: pk_i,
        })
        .encode();
        let me_ = Self {
            me,
            chan,
            deadline: now + SESSION_TIMEOUT,
            state: IState::AwaitChallenge { spake, x },
        };
        (me_, frame)
    }

    /// When the session times out, unless it has finished; call [`Initiator::on_timeout`] then.
    pub fn deadline(&self) -> Option<Duration> {
        live_deadline(&self.state, self.deadline)
    }

    /// Fails the session if `now` is past its deadline.
    pub fn on_timeout(&mut self, now: Duration) -> Option<Step> {
        time_out(&mut self.state, self.deadline, now)
    }

    /// The user gave up: ends the session and returns the `Abort` frame to send.
    pub fn cancel(&mut self) -> Option<Vec<u8>> {
        cancel(&mut self.state)
    }

    /// Handles one frame from the target at `now`.
    pub fn handle(&mut self, bytes: &[u8], now: Duration) -> Step {
        let (state, msg) = match take_with_frame(&mut self.state, self.deadline, now, bytes) {
            ControlFlow::Continue(v) => v,
            ControlFlow::Break(step) => return step,
        };
        match (state, msg) {
            (_, BindMsg::Abort(r)) => peer_aborted(r),
            (IState::AwaitChallenge { spake, x }, BindMsg::Challenge(c)) => {
                self.on_challenge(spake, x, c)
            }
            (IState::AwaitAccept { keys, pk_t, mac_i }, BindMsg::Accept(a)) => {
                Self::on_accept(&keys, pk_t, &mac_i, a)
            }
            (state, msg) => fail(
                ProtocolError::Unexpected {
                    expected: match state {
                        IState::AwaitChallenge { .. } => "Challenge",
                        _ => "Accept",
                    },
                    got: msg.kind(),
                }
                .into(),
            ),
        }
    }

    fn on_challenge(&mut self, spake: Spake2<Ed25519Group>, x: [u8; 33], c: Challenge) -> Step {
        if c.public_key != self.chan.peer_key {
            return fail(BindError::PeerKeyMismatch);
        }
        let y = with_side(b'B', &c.spake);
        let k = match spake.finish(&y) {
            Ok(k) => k,
            Err(e) => return fail(ProtocolError::Spake(e.to_string()).into()),
        };
        let pk_i = self.me.public_key();
        let keys = Keys::derive(&self.chan.exporter, &pk_i, &c.public_key, &x, &y, &k);
        let r = self.me.record.digest();
        let sig = self
            .me
            .key
            .sign(&[LABEL_SIG_I, &keys.th, &r].concat())
            .to_bytes();
        let ak = xor_pad(&self.me.advert_key.0, &keys.pad_i);
        let mac_i: [u8; 32] = hmac(&keys.k_i, &[LABEL_MAC_I, &keys.th, &r, &sig, &ak])
            .finalize()
            .into_bytes()
            .into();
        let frame = BindMsg::Confirm(Confirm {
            device: self.me.record.clone(),
            signature: sig.to_vec(),
            mac: mac_i,
            advert_key: ak,
        })
        .encode();
        self.state = IState::AwaitAccept {
            keys,
            pk_t: c.public_key,
            mac_i,
        };
        Step::next(frame)
    }

    fn on_accept(keys: &Keys, pk_t: [u8; 32], mac_i: &[u8; 32], a: Confirm) -> Step {
        let r = a.device.digest();
        if hmac(
            &keys.k_t,
            &[
                LABEL_MAC_T,
                &keys.th,
                mac_i,
                &r,
                &a.signature,
                &a.advert_key,
            ],
        )
        .verify_slice(&a.mac)
        .is_err()
        {
            return fail(BindError::WrongPin);
        }
        if let Err(e) = a.device.validate_for(&pk_t) {
            return fail(e.into());
        }
        if let Err(e) = verify_sig(&pk_t, &[LABEL_SIG_T, &keys.th, mac_i, &r], &a.signature) {
            return fail(e.into());
        }
        Step {
            send: None,
            progress: Progress::Bound(BoundPeer {
                record: a.device,
                public_key: pk_t,
                advert_key: AdvertKey(xor_pad(&a.advert_key, &keys.pad_t)),
            }),
        }
    }
}

enum TState {
    AwaitStart,
    AwaitConfirm {
        /// Boxed: the keys and pads are most of the state, and only this variant has them.
        keys: Box<Keys>,
        pk_i: [u8; 32],
        ticket: PinTicket,
    },
    Finished,
}

/// Device B: it showed the PIN. Each attempt is checked against, and counted in, the device's
/// one [`PinManager`], passed in on every call.
pub struct Target {
    me: LocalDevice,
    chan: Channel,
    deadline: Duration,
    seed: [u8; 32],
    state: TState,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fmt_machine(f, "Target", &self.me, &self.state)
    }
}

impl Target {
    /// A target session on a connection accepted at `now`.
    pub fn new(me: LocalDevice, chan: Channel, now: Duration) -> Result<Self, BindError> {
        Ok(Self::new_seeded(me, chan, now, os_seed()?))
    }

    /// As [`Target::new`], with the SPAKE2 randomness derived from `seed` (simulations).
    pub fn new_seeded(me: LocalDevice, chan: Channel, now: Duration, seed: [u8; 32]) -> Self {
        Self {
            me,
            chan,
            deadline: now + SESSION_TIMEOUT,
            seed,
            state: TState::AwaitStart,
        }
    }

    /// When the session times out, unless it has finished; call [`Target::on_timeout`] then.
    pub fn deadline(&self) -> Option<Duration> {
        live_deadline(&self.state, self.deadline)
    }

    /// Fails the session if `now` is past its deadline.
    pub fn on_timeout(&mut self, now: Duration) -> Option<Step> {
        time_out(&mut self.state, self.deadline, now)
    }

    /// The user gave up: ends the session and returns the `Abort` frame to send.
    pub fn cancel(&mut self) -> Option<Vec<u8>> {
        cancel(&mut self.state)
    }

    /// Handles one frame from the initiator at `now`, checking and counting against `pins`.
    pub fn handle(&mut self, bytes: &[u8], now: Duration, pins: &mut PinManager) -> Step {
        let (state, msg) = match take_with_frame(&mut self.state, self.deadline, now, bytes) {
            ControlFlow::Continue(v) => v,
            ControlFlow::Break(step) => return step,
        };
        match (state, msg) {
            (_, BindMsg::Abort(r)) => peer_aborted(r),
            (TState::AwaitStart, BindMsg::Start(s)) => self.on_start(s, now, pins),
            (TState::AwaitConfirm { keys, pk_i, ticket }, BindMsg::Confirm(c)) => {
                self.on_confirm(&keys, pk_i, &ticket, c, now, pins)
            }
            (state, msg) => fail(
                ProtocolError::Unexpected {
                    expected: match state {
                        TState::AwaitStart => "Start",
                        _ => "Confirm",
                    },
                    got: msg.kind(),
                }
                .into(),
            ),
        }
    }

    fn on_start(&mut self, s: Start, now: Duration, pins: &mut PinManager) -> Step {
        if s.public_key != self.chan.peer_key {
            return fail(BindError::PeerKeyMismatch);
        }
        let ticket = match pins.begin_attempt(now) {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        let pk_t = self.me.public_key();
        let (id_i, id_t) = spake_ids(&self.chan.exporter, &s.public_key, &pk_t);
        let (spake, msg) = Spake2::<Ed25519Group>::start_b_with_rng(
            &Password::new(ticket.pin.digits()),
            &id_i,
            &id_t,
            SeedRng {
                seed: self.seed,
                counter: 0,
            },
        );
        let x = with_side(b'A', &s.spake);
        let y = with_side(b'B', &point_of(&msg));
        let k = match spake.finish(&x) {
            Ok(k) => k,
            Err(e) => return fail(ProtocolError::Spake(e.to_string()).into()),
        };
        let keys = Keys::derive(&self.chan.exporter, &s.public_key, &pk_t, &x, &y, &k);
        self.state = TState::AwaitConfirm {
            keys: Box::new(keys),
            pk_i: s.public_key,
            ticket,
        };
        Step::next(
            BindMsg::Challenge(Challenge {
                spake: point_of(&msg),
                public_key: pk_t,
            })
            .encode(),
        )
    }

    fn on_confirm(
        &mut self,
        keys: &Keys,
        pk_i: [u8; 32],
        ticket: &PinTicket,
        c: Confirm,
        now: Duration,
        pins: &mut PinManager,
    ) -> Step {
        // Checked again here: attempts run in parallel, and a lockout or a success on another
        // connection must stop this one before its guess is judged.
        if let Err(e) = pins.check_ticket(ticket, now) {
            return fail(e);
        }
        let r_i = c.device.digest();
        if hmac(
            &keys.k_i,
            &[LABEL_MAC_I, &keys.th, &r_i, &c.signature, &c.advert_key],
        )
        .verify_slice(&c.mac)
        .is_err()
        {
            pins.record_failure(now);
            return fail(BindError::WrongPin);
        }
        if let Err(e) = c.device.validate_for(&pk_i) {
            return fail(e.into());
        }
        if let Err(e) = verify_sig(&pk_i, &[LABEL_SIG_I, &keys.th, &r_i], &c.signature) {
            return fail(e.into());
        }
        pins.record_success(ticket);
        let r_t = self.me.record.digest();
        let sig = self
            .me
            .key
            .sign(&[LABEL_SIG_T, &keys.th, &c.mac, &r_t].concat())
            .to_bytes();
        let ak = xor_pad(&self.me.advert_key.0, &keys.pad_t);
        let mac_t: [u8; 32] = hmac(&keys.k_t, &[LABEL_MAC_T, &keys.th, &c.mac, &r_t, &sig, &ak])
            .finalize()
            .into_bytes()
            .into();
        let frame = BindMsg::Accept(Confirm {
            device: self.me.record.clone(),
            signature: sig.to_vec(),
            mac: mac_t,
            advert_key: ak,
        })
        .encode();
        Step {
            send: Some(frame),
            progress: Progress::Bound(BoundPeer {
                record: c.device,
                public_key: pk_i,
                advert_key: AdvertKey(xor_pad(&c.advert_key, &keys.pad_i)),
            }),
        }
    }
}

#[cfg(test)]
#[path = "bind_tests.rs"]
mod tests;

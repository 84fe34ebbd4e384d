//! hdc, the device connector (OpenHarmony's developtools_hdc, on oxharmony).
//!
//! - [`frame`] and [`proto`]: the sans-IO packet codec and the messages (pure, fuzzed).
//! - [`session`]: many channels over one connection, with credits and a heartbeat.
//! - [`keys`]: the host key pair (`~/.harmony/hdckey`), pinned device keys, the device's
//!   authorised host list, TLS 1.3 configurations.
//! - [`device`]: the device side (run inside oxhd), [`server`]: the host server (127.0.0.1:8710),
//!   [`client`]: what the `hdc` tool uses to talk to the server.
//! - [`local`]: which local user a loopback connection comes from (the host server serves
//!   only its own); [`limits`]: how many connections the listeners hold.

pub use bytes;

pub mod channel;
pub mod client;
pub mod command;
pub mod conn;
pub mod core;
pub mod device;
pub mod frame;
pub mod hostkey;
pub mod keys;
pub mod limits;
pub mod local;
pub mod ohos;
pub mod ohos_auth;
pub mod ohos_device;
pub mod ohos_discovery;
pub mod ohos_file;
pub mod ohos_forward;
pub mod proto;
pub mod relay;
pub mod server;
pub mod session;
pub mod shell;
pub mod transfer;

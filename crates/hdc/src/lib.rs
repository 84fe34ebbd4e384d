//! hdc, the device connector (OpenHarmony's developtools_hdc, on oxharmony).
//!
//! - [`frame`] and [`proto`]: the sans-IO packet codec and the messages (pure, fuzzed).
//! - [`session`]: many channels over one connection, with credits and a heartbeat.
//! - [`keys`]: the host key pair (`~/.harmony/hdckey`), pinned device keys, the device's
//!   authorised host list, TLS 1.3 configurations.
//! - [`device`]: the device side (run inside oxhd), [`server`]: the host server (127.0.0.1:8710),
//!   [`client`]: what the `hdc` tool uses to talk to the server.
//! - [`ohos`], [`ohos_auth`], [`ohos_tls`], [`ohos_link`]: OpenHarmony's own session wire,
//!   its handshake, its TLS-PSK channel and the packet stream over both;
//!   [`ohos_device`] and [`ohos_file`] serve OpenHarmony's hosts; [`ohos_connect`] opens a
//!   session to OpenHarmony's devices, whose commands [`ohos_host`] drives for our host
//!   server; [`ohos_tar`] is the tar hdc installs directories with.
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
pub mod ohos_connect;
pub mod ohos_device;
pub mod ohos_discovery;
pub mod ohos_file;
pub mod ohos_forward;
pub mod ohos_host;
pub mod ohos_link;
pub mod ohos_tar;
pub mod ohos_tls;
pub mod proto;
pub mod relay;
pub mod server;
pub mod session;
pub mod shell;
pub mod transfer;

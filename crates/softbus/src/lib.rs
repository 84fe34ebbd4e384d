//! Soft bus (OpenHarmony's DSoftBus, SA 4700) and the device manager (SA 4802): how devices
//! find each other ([`discovery`]), bind once with a PIN ([`binding`]), connect over mutually
//! authenticated QUIC ([`transport`]), go online and offline (the bus center: its pure core in [`center`], its adapters in
//! [`transport`] and [`service`]),
//! and talk over sockets ([`transport::session`]).

pub mod api;
pub mod proto;

#[cfg(feature = "service")]
pub mod binding;
#[cfg(feature = "service")]
pub mod center;
#[cfg(feature = "service")]
pub mod dbinder;
#[cfg(feature = "service")]
pub mod discovery;
#[cfg(feature = "service")]
pub mod sa;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "service")]
pub mod transport;

#[cfg(feature = "service")]
pub use sa::{DeviceManagerSa, SoftbusSa};
#[cfg(feature = "service")]
pub use service::{Softbus, SoftbusConfig};

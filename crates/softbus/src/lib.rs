//! Soft bus (OpenHarmony's DSoftBus, SA 4700) and the device manager (SA 4802): how devices
//! find each other ([`discovery`]), bind once with a PIN ([`binding`]), connect over mutually
//! authenticated QUIC ([`transport`]), go online and offline (the bus center in [`service`]),
//! and talk over sockets ([`transport::session`]).

pub mod api;
pub mod binding;
pub mod dbinder;
pub mod discovery;
pub mod sa;
pub mod service;
pub mod transport;

pub use sa::{DeviceManagerSa, SoftbusSa};
pub use service::{Softbus, SoftbusConfig};

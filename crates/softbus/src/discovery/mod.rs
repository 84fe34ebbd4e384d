//! Device discovery over mDNS/DNS-SD (RFC 6762/6763), DSoftBus's discovery module.
//!
//! OpenHarmony discovers over CoAP (its nstackx) and BLE; we use the standard instead, so that
//! avahi-browse, python-zeroconf and Bonjour see oxharmony devices. Each device advertises
//! [`SERVICE_TYPE`] with an [`Advert`] in its TXT record and browses for the same type, keeping
//! a [`DeviceTable`] of the others. For networks without multicast, the transport adds static
//! peers by address and fills in their adverts after probing them.
//!
//! - [`advert`]: the advert, its TXT form, its rotating id and the resolver that recognises
//!   bound devices' ids (pure).
//! - [`table`]: the seen-device table and its events (pure).
//! - [`mdns`]: the adapter over the `mdns-sd` crate.

pub mod advert;
pub mod mdns;
pub mod table;

pub use advert::{
    ADVERT_EPOCH, Advert, AdvertId, Capabilities, EPOCH_SKEW, Epochs, Resolver, SERVICE_TYPE,
    TxtError,
};
pub use mdns::{Discovery, DiscoveryConfig, DiscoveryError, Found, Interfaces, browse};
pub use table::{DeviceTable, DiscoveryEvent, SeenDevice, TableError};

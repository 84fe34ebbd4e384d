//! Our rotating advert id: what mDNS adverts and probe replies carry.

use crate::binding;
use crate::discovery::AdvertId;
use std::time::{Duration, SystemTime};

use super::Softbus;

/// Longest wait between checks of the advert epoch, so that a wall-clock jump is noticed.
const EPOCH_CHECK_MAX: Duration = Duration::from_secs(60);

impl Softbus {
    /// Adds the device connector's port to this device's mDNS advert (`hdc discover`).
    pub fn advertise_hdc_port(&self, port: u16) {
        if let Some(d) = &self.discovery
            && let Err(e) = d.modify_advert(|a| a.hdc = Some(port))
        {
            tracing::warn!(tag = "softbus", "hdc port not advertised: {e}");
        }
    }

    /// Our advert id at `now`.
    fn advert_id_at(&self, now: SystemTime) -> AdvertId {
        AdvertId::derive(&self.advert_key, self.epochs.at(now))
    }

    /// Advertises the id of the epoch `now` falls in, if it is not already; returns how long
    /// until the next check (the next epoch, or sooner so that clock jumps are noticed).
    pub(super) fn rotate_advert(&self, now: SystemTime) -> Duration {
        if let Some(d) = &self.discovery {
            let id = self.advert_id_at(now);
            if d.advert().id != id {
                match d.modify_advert(|a| a.id = id) {
                    Ok(()) => tracing::debug!(tag = "softbus", "advert id rotated"),
                    Err(e) => tracing::warn!(tag = "softbus", "advert id not rotated: {e}"),
                }
            }
        }
        self.epochs.until_next(now).min(EPOCH_CHECK_MAX)
    }

    /// What a probe is told: what the advert says now.
    pub(super) fn probe_info(&self) -> binding::ProbeInfo {
        binding::ProbeInfo {
            name: self.own_name.clone(),
            device_type: self.info.device_type.as_str().to_string(),
            id: self.advert_id_at(SystemTime::now()).to_hex(),
        }
    }
}

//! The device manager: this device's identity (later: discovery, binding, trusted devices).

use crate::{Device, Error};
use oxh_devauth::{DeviceInfo, dm_method};
use oxh_samgr::sa_id::DEVICE_MANAGER;

/// Proxy for the device manager SA.
pub struct DeviceManager<'a> {
    pub(crate) dev: &'a Device,
}

impl DeviceManager<'_> {
    /// This device's udid, name, type and OS version.
    pub async fn local_device_info(&self) -> Result<DeviceInfo, Error> {
        self.dev
            .client
            .call(DEVICE_MANAGER, dm_method::GET_LOCAL_DEVICE_INFO, &())
            .await
    }
}

//! The device manager SA (4802), local part: this device's info. The soft bus adds discovery,
//! binding and the trusted-device list.

use crate::DeviceInfo;
use bytes::Bytes;
use oxh_ipc::{RemoteError, encode};
use oxh_samgr::{CallContext, Method, SystemAbility};

/// Method codes of the device manager.
pub mod dm_method {
    /// `()` → [`crate::DeviceInfo`]. Needs ohos.permission.ACCESS_SERVICE_DM.
    pub const GET_LOCAL_DEVICE_INFO: u32 = 1;
}

/// OpenHarmony's permission for device-manager calls.
pub const ACCESS_SERVICE_DM: &str = "ohos.permission.ACCESS_SERVICE_DM";

const METHODS: &[Method] = &[Method::with_permission(
    dm_method::GET_LOCAL_DEVICE_INFO,
    "GetLocalDeviceInfo",
    ACCESS_SERVICE_DM,
)];

/// The device manager SA.
pub struct DeviceManagerSa {
    info: DeviceInfo,
}

impl DeviceManagerSa {
    /// Serves `info` as this device's.
    pub fn new(info: DeviceInfo) -> Self {
        Self { info }
    }
}

#[async_trait::async_trait]
impl SystemAbility for DeviceManagerSa {
    fn methods(&self) -> &'static [Method] {
        METHODS
    }

    async fn call(
        &self,
        _ctx: CallContext,
        code: u32,
        _data: Bytes,
    ) -> Result<Vec<u8>, RemoteError> {
        match code {
            dm_method::GET_LOCAL_DEVICE_INFO => Ok(encode(&self.info)),
            _ => Err(RemoteError::invalid(format!("unknown code {code}"))),
        }
    }

    fn dump(&self, _args: &[String]) -> String {
        format!(
            "DeviceManagerService (4802)\n  local device: {} ({}, type {:#04x})\n  udid: {}\n  os: {}\n",
            self.info.name,
            self.info.device_type.as_str(),
            self.info.device_type_id,
            self.info.udid,
            self.info.os_version
        )
    }
}

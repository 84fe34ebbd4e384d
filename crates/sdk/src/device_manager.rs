//! The device manager (`@ohos.distributedDeviceManager`): this device, discovery, PIN
//! binding, trusted devices and their online/offline changes.

use crate::{Device, Error};
use oxh_ipc::Subscription;
use oxh_softbus::api::{
    self, BindArgs, DM_SA_ID, LocalDevice, PinView, SeenView, StateEvent, TrustedView,
};

/// Proxy for the device manager SA.
pub struct DeviceManager<'a> {
    pub(crate) dev: &'a Device,
}

/// Device state changes as they happen.
pub struct StateWatch {
    sub: Subscription,
}

impl StateWatch {
    /// The next change; `None` once the connection closed.
    pub async fn next(&mut self) -> Option<StateEvent> {
        let b = self.sub.recv().await?;
        oxh_ipc::decode(&b).ok()
    }
}

impl DeviceManager<'_> {
    /// This device: udid, name, type, OS, networkId, bus address.
    pub async fn local_device_info(&self) -> Result<LocalDevice, Error> {
        self.dev
            .client
            .call(DM_SA_ID, api::dm::GET_LOCAL_DEVICE_INFO, &())
            .await
    }
    /// Devices seen on the network.
    pub async fn discover(&self) -> Result<Vec<SeenView>, Error> {
        self.dev.client.call(DM_SA_ID, api::dm::DISCOVER, &()).await
    }
    /// A fresh one-time PIN that another device can bind with (valid 60 s).
    pub async fn issue_pin(&self) -> Result<PinView, Error> {
        self.dev
            .client
            .call(DM_SA_ID, api::dm::ISSUE_PIN, &())
            .await
    }
    /// Binds with a device (discover id or HOST:PORT) using the PIN it shows.
    pub async fn bind(&self, id: &str, pin: &str) -> Result<TrustedView, Error> {
        let a = BindArgs {
            id: id.into(),
            pin: pin.into(),
        };
        self.dev.client.call(DM_SA_ID, api::dm::BIND, &a).await
    }
    /// Removes the trust with a device, on both sides when it is reachable.
    pub async fn unbind(&self, id: &str) -> Result<(), Error> {
        self.dev
            .client
            .call(DM_SA_ID, api::dm::UNBIND, &id.to_string())
            .await
    }
    /// Trusted devices with their online state.
    pub async fn trusted_devices(&self) -> Result<Vec<TrustedView>, Error> {
        self.dev
            .client
            .call(DM_SA_ID, api::dm::LIST_TRUSTED, &())
            .await
    }
    /// ONLINE / OFFLINE / INFO_CHANGED events from now on (`on('deviceStateChange')`).
    pub async fn on_state_change(&self) -> Result<StateWatch, Error> {
        let sub = self.dev.client.subscribe();
        self.dev
            .client
            .call::<_, ()>(DM_SA_ID, api::dm::SUBSCRIBE_STATE, &sub.id())
            .await?;
        Ok(StateWatch { sub })
    }
    /// Adds a static peer (HOST:PORT) for networks without multicast.
    pub async fn add_peer(&self, addr: &str) -> Result<(), Error> {
        self.dev
            .client
            .call(DM_SA_ID, api::dm::ADD_PEER, &addr.to_string())
            .await
    }
}

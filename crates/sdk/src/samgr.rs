//! The system ability manager: list, dump, method tables, and client-death notices.

use crate::{Device, Error};
use oxh_ipc::{Caller, Subscription};
use oxh_samgr::samgr_method::{self as m, ClientDied, DumpArgs, MethodInfo};
use oxh_samgr::{SAMGR_SA_ID, SaInfo};

/// Proxy for samgr.
pub struct Samgr<'a> {
    pub(crate) dev: &'a Device,
}

/// A stream of client-death notices.
pub struct DeathWatch {
    sub: Subscription,
}

impl DeathWatch {
    /// The next client that went away; `None` once our own connection closed.
    pub async fn next(&mut self) -> Option<ClientDied> {
        let b = self.sub.recv().await?;
        oxh_ipc::decode(&b).ok()
    }
}

impl Samgr<'_> {
    /// Every SA with its state.
    pub async fn list(&self) -> Result<Vec<SaInfo>, Error> {
        self.dev.client.call(SAMGR_SA_ID, m::LIST, &()).await
    }
    /// One SA's dump (what `hidumper -s ID` prints). Needs ohos.permission.DUMP.
    pub async fn dump(&self, sa: i32, args: Vec<String>) -> Result<String, Error> {
        self.dev
            .client
            .call(SAMGR_SA_ID, m::DUMP, &DumpArgs { sa, args })
            .await
    }
    /// Who the daemon sees calling: identity from the kernel, and the token derived from it.
    pub async fn whoami(&self) -> Result<Caller, Error> {
        self.dev.client.call(SAMGR_SA_ID, m::WHOAMI, &()).await
    }
    /// Sends bytes through the whole dispatch path and back.
    pub async fn echo(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self
            .dev
            .client
            .call_raw(SAMGR_SA_ID, m::ECHO, data)
            .await?
            .to_vec())
    }
    /// SA `sa`'s methods with the permission each declares (starts an on-demand SA).
    pub async fn list_methods(&self, sa: i32) -> Result<Vec<MethodInfo>, Error> {
        self.dev
            .client
            .call(SAMGR_SA_ID, m::LIST_METHODS, &sa)
            .await
    }
    /// Like [`Self::echo`], through a method gated by ohos.permission.DUMP.
    pub async fn echo_checked(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self
            .dev
            .client
            .call_raw(SAMGR_SA_ID, m::ECHO_CHECKED, data)
            .await?
            .to_vec())
    }
    /// Subscribes to notices of other clients' deaths (system processes only).
    pub async fn watch_deaths(&self) -> Result<DeathWatch, Error> {
        let sub = self.dev.client.subscribe();
        self.dev
            .client
            .call::<_, ()>(SAMGR_SA_ID, m::SUBSCRIBE_DEATHS, &sub.id())
            .await?;
        Ok(DeathWatch { sub })
    }
}

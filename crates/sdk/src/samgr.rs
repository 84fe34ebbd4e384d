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
    /// Every SA with its state on the trusted device `network_id` (through
    /// [`Self::call_remote`]: the caller needs ohos.permission.DISTRIBUTED_DATASYNC).
    pub async fn list_remote(&self, network_id: &str) -> Result<Vec<SaInfo>, Error> {
        self.call_remote(network_id, SAMGR_SA_ID, m::LIST, &())
            .await
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
        self.echo_through(m::ECHO, data).await
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
        self.echo_through(m::ECHO_CHECKED, data).await
    }
    async fn echo_through(&self, code: u32, data: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self
            .dev
            .client
            .call_raw(SAMGR_SA_ID, code, data)
            .await?
            .to_vec())
    }
    /// Calls method `code` of SA `sa` on the trusted device `network_id` (OpenHarmony's remote
    /// SA proxy, dbinder), with `data` encoded as for a local call; returns the raw reply.
    /// That device checks this caller's token as synced from here: the caller needs
    /// ohos.permission.DISTRIBUTED_DATASYNC and whatever the method needs.
    pub async fn call_remote_raw(
        &self,
        network_id: &str,
        sa: i32,
        code: u32,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let args = m::RemoteCallArgs {
            network_id: network_id.to_string(),
            sa,
            code,
            data,
        };
        Ok(self
            .dev
            .client
            .call_raw(SAMGR_SA_ID, m::CALL_REMOTE, &oxh_ipc::encode(&args))
            .await?
            .to_vec())
    }
    /// [`Self::call_remote_raw`] with typed arguments and reply.
    pub async fn call_remote<A: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        network_id: &str,
        sa: i32,
        code: u32,
        args: &A,
    ) -> Result<R, Error> {
        let b = self
            .call_remote_raw(network_id, sa, code, oxh_ipc::encode(args))
            .await?;
        Ok(oxh_ipc::decode(&b)?)
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

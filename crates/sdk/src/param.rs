//! System parameters, as `@ohos.systemParameterEnhance`: get, set, list, wait.

use crate::{Device, Error};
use oxh_param::api::{self, GetArgs, ListArgs, SetArgs, WaitArgs};
use std::time::Duration;

pub use oxh_param::api::code;

/// Proxy for the parameter service.
pub struct Param<'a> {
    pub(crate) dev: &'a Device,
}

impl Param<'_> {
    /// The value of `key`; error 14700101 when it is not set.
    pub async fn get(&self, key: &str) -> Result<String, Error> {
        let args = GetArgs { key: key.into() };
        self.dev.client.call(api::SA_ID, api::GET, &args).await
    }
    /// Sets `key`; for `persist.*` the call returns once the value is on disk.
    pub async fn set(&self, key: &str, value: &str) -> Result<(), Error> {
        let args = SetArgs {
            key: key.into(),
            value: value.into(),
        };
        self.dev.client.call(api::SA_ID, api::SET, &args).await
    }
    /// Parameters named `prefix` or, with `recursive`, every one starting with it.
    pub async fn list(
        &self,
        prefix: &str,
        recursive: bool,
    ) -> Result<Vec<(String, String)>, Error> {
        let args = ListArgs {
            prefix: prefix.into(),
            recursive,
        };
        self.dev.client.call(api::SA_ID, api::LIST, &args).await
    }
    /// Waits until `key` exists (and matches `value`, where `*` matches anything), up to
    /// `timeout`; returns the value, or error 14700105 at the timeout.
    pub async fn wait(
        &self,
        key: &str,
        value: Option<&str>,
        timeout: Duration,
    ) -> Result<String, Error> {
        let args = WaitArgs {
            key: key.into(),
            value: value.map(String::from),
            timeout_ms: timeout.as_millis().min(u128::from(u64::MAX)) as u64,
        };
        self.dev.client.call(api::SA_ID, api::WAIT, &args).await
    }
    /// The service's dump (`param dump`); `verbose` lists every parameter.
    pub async fn dump(&self, verbose: bool) -> Result<String, Error> {
        let args = api::DumpArgs { verbose };
        self.dev.client.call(api::SA_ID, api::DUMP, &args).await
    }
}

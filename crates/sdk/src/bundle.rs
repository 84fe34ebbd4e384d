//! The bundle manager, as `@ohos.bundle.installer` and `@ohos.bundle.bundleManager`: install
//! (the package bytes are streamed from this process, never opened by the daemon), uninstall,
//! queries and the device's trust roots.

use crate::{Device, Error};
use oxh_bundle::api::{
    self, BeginArgs, InstallArgs, InstallResult, TrustRoot, UninstallArgs, WriteArgs,
};

pub use oxh_bundle::api::code;

/// Proxy for the bundle manager (SA 401).
pub struct Bundle<'a> {
    pub(crate) dev: &'a Device,
}

impl Bundle<'_> {
    /// Installs the given package files (HAPs of one bundle, or one `.app`) for `user_id`:
    /// streams each in chunks of at most [`api::CHUNK`], then asks for the install. A failure
    /// leaves any installed version as it was.
    pub async fn install(
        &self,
        files: &[&[u8]],
        user_id: i32,
        skip_verify: bool,
    ) -> Result<InstallResult, Error> {
        let c = &self.dev.client;
        let begin = BeginArgs {
            files: files.len() as u32,
            total_bytes: files.iter().map(|f| f.len() as u64).sum(),
        };
        let session: u64 = c.call(api::SA_ID, api::BEGIN, &begin).await?;
        for (i, f) in files.iter().enumerate() {
            for chunk in f.chunks(api::CHUNK) {
                let w = WriteArgs {
                    session,
                    file: i as u32,
                    data: chunk.to_vec(),
                };
                if let Err(e) = c.call::<_, ()>(api::SA_ID, api::WRITE, &w).await {
                    let _ = c.call::<_, ()>(api::SA_ID, api::ABORT, &session).await;
                    return Err(e);
                }
            }
        }
        let a = InstallArgs {
            session,
            user_id,
            replace: true,
            skip_verify,
        };
        c.call(api::SA_ID, api::INSTALL, &a).await
    }

    /// Uninstalls a bundle; `keep_data` keeps its data dirs (`bm uninstall -k`).
    pub async fn uninstall(
        &self,
        bundle_name: &str,
        user_id: i32,
        keep_data: bool,
    ) -> Result<(), Error> {
        let a = UninstallArgs {
            bundle_name: bundle_name.into(),
            user_id,
            keep_data,
        };
        self.dev.client.call(api::SA_ID, api::UNINSTALL, &a).await
    }

    /// Installed bundle names for a user.
    pub async fn names(&self, user_id: i32) -> Result<Vec<String>, Error> {
        self.dev.client.call(api::SA_ID, api::LIST, &user_id).await
    }

    /// A bundle's info as JSON (`bm dump -n`).
    pub async fn dump(&self, bundle_name: &str, user_id: i32) -> Result<String, Error> {
        let a = (bundle_name.to_string(), user_id);
        self.dev.client.call(api::SA_ID, api::DUMP, &a).await
    }

    /// Adds a trust root (one PEM certificate); returns its name.
    pub async fn trust_add(&self, pem: &str) -> Result<String, Error> {
        self.dev
            .client
            .call(api::SA_ID, api::TRUST_ADD, &pem.to_string())
            .await
    }

    /// The device's trust roots.
    pub async fn trust_list(&self) -> Result<Vec<TrustRoot>, Error> {
        self.dev.client.call(api::SA_ID, api::TRUST_LIST, &()).await
    }

    /// Removes a trust root by name.
    pub async fn trust_remove(&self, name: &str) -> Result<(), Error> {
        self.dev
            .client
            .call(api::SA_ID, api::TRUST_REMOVE, &name.to_string())
            .await
    }
}

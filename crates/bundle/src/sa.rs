//! The bundle manager as system ability [`crate::api::SA_ID`]. Every method names its
//! permission; samgr checks it against the caller's token before the call runs.

use crate::api::{self, BeginArgs, InstallArgs, UninstallArgs, WriteArgs};
use crate::service::BundleManager;
use bytes::Bytes;
use oxh_ipc::{ConnHandle, RemoteError, decode, encode};
use oxh_samgr::{CallContext, Method, SystemAbility};

const INSTALL_BUNDLE: &str = "ohos.permission.INSTALL_BUNDLE";
const GET_PRIVILEGED: &str = "ohos.permission.GET_BUNDLE_INFO_PRIVILEGED";

const METHODS: &[Method] = &[
    Method::with_permission(api::BEGIN, "BeginInstall", INSTALL_BUNDLE),
    Method::with_permission(api::WRITE, "WriteFile", INSTALL_BUNDLE),
    Method::with_permission(api::INSTALL, "Install", INSTALL_BUNDLE),
    Method::with_permission(api::ABORT, "AbortInstall", INSTALL_BUNDLE),
    Method::with_permission(api::UNINSTALL, "Uninstall", INSTALL_BUNDLE),
    Method::with_permission(api::LIST, "GetBundleNames", GET_PRIVILEGED),
    Method::with_permission(api::DUMP, "GetBundleInfo", GET_PRIVILEGED),
    Method::with_permission(api::TRUST_ADD, "AddTrustRoot", INSTALL_BUNDLE),
    Method::with_permission(api::TRUST_LIST, "ListTrustRoots", GET_PRIVILEGED),
    Method::with_permission(api::TRUST_REMOVE, "RemoveTrustRoot", INSTALL_BUNDLE),
];

#[async_trait::async_trait]
impl SystemAbility for BundleManager {
    fn methods(&self) -> &'static [Method] {
        METHODS
    }

    async fn call(&self, ctx: CallContext, code: u32, data: Bytes) -> Result<Vec<u8>, RemoteError> {
        let conn = ctx.conn.id();
        match code {
            api::BEGIN => {
                let a: BeginArgs = decode(&data)?;
                Ok(encode(&self.begin(conn, a.files, a.total_bytes)?))
            }
            api::WRITE => {
                let a: WriteArgs = decode(&data)?;
                self.write(conn, a.session, a.file, &a.data)?;
                Ok(encode(&()))
            }
            api::INSTALL => {
                let a: InstallArgs = decode(&data)?;
                // Parsing, hashing and file writes take a while for big packages: on the
                // daemon's multi-thread runtime, tell it this worker blocks.
                let multi = tokio::runtime::Handle::try_current().is_ok_and(|h| {
                    h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                });
                let r = if multi {
                    tokio::task::block_in_place(|| self.install(conn, &a))
                } else {
                    self.install(conn, &a)
                };
                if let Err(e) = &r {
                    tracing::info!(
                        tag = "bms",
                        public_pid = ctx.caller().pid,
                        public_code = e.code,
                        "install refused: {}",
                        e.reason
                    );
                }
                Ok(encode(&r?))
            }
            api::ABORT => {
                let s: u64 = decode(&data)?;
                self.abort(conn, s);
                Ok(encode(&()))
            }
            api::UNINSTALL => {
                let a: UninstallArgs = decode(&data)?;
                self.uninstall(&a)?;
                Ok(encode(&()))
            }
            api::LIST => {
                let user: i32 = decode(&data)?;
                Ok(encode(&self.names(user)?))
            }
            api::DUMP => {
                let (name, user): (String, i32) = decode(&data)?;
                Ok(encode(&self.dump_json(&name, user)?))
            }
            api::TRUST_ADD => {
                let pem: String = decode(&data)?;
                Ok(encode(&self.trust_add(&pem)?))
            }
            api::TRUST_LIST => Ok(encode(&self.trust_list())),
            api::TRUST_REMOVE => {
                let name: String = decode(&data)?;
                self.trust_remove(&name)?;
                Ok(encode(&()))
            }
            _ => Err(RemoteError::invalid(format!(
                "BundleMgrService has no method {code}"
            ))),
        }
    }

    fn dump(&self, _args: &[String]) -> String {
        self.dump_text()
    }

    /// Drops the install sessions the client left half-written, with their staged bytes.
    fn on_client_died(&self, conn: &ConnHandle) {
        self.drop_sessions_of(conn.id());
    }
}

//! samgr's own methods: list, dump, echo, whoami, client-death events, and each SA's method
//! table with what it takes to call each method.

use crate::{CallContext, Method, Samgr, SystemAbility};
use bytes::Bytes;
use oxh_ipc::{ConnHandle, RemoteError, decode, encode};

use std::sync::{Mutex, OnceLock, Weak};

/// samgr's SA id.
pub const SAMGR_SA_ID: i32 = crate::sa_id::SAMGR;

/// Method codes of samgr, and their argument types.
pub mod samgr_method {
    use serde::{Deserialize, Serialize};
    /// `()` → `Vec<SaInfo>`.
    pub const LIST: u32 = 1;
    /// [`DumpArgs`] → `String`.
    pub const DUMP: u32 = 2;
    /// `Vec<u8>` → the same bytes: a round trip through the whole dispatch path.
    pub const ECHO: u32 = 3;
    /// `()` → `Caller`: who the daemon thinks the caller is.
    pub const WHOAMI: u32 = 4;
    /// `u64` subscription id → `()`; events are [`ClientDied`]. System processes only.
    pub const SUBSCRIBE_DEATHS: u32 = 5;
    /// `i32` SA id → `Vec<MethodInfo>`: the SA's methods with the permission each declares
    /// (what samgr's gate checks). Starts an on-demand SA, as any call to it does. Open: the
    /// method tables are part of the published API, as OpenHarmony's permission list is.
    pub const LIST_METHODS: u32 = 6;
    /// `Vec<u8>` → the same bytes, like [`ECHO`] but gated by `ohos.permission.DUMP`: the
    /// benchmark of the permission check's cost on a round trip compares the two.
    pub const ECHO_CHECKED: u32 = 7;
    /// [`RemoteCallArgs`] → the remote method's reply: calls an SA on another trusted device
    /// (OpenHarmony's GetSystemAbility(saId, networkId) proxy, dbinder). Open here: the device
    /// that runs the method checks the caller's synced token, including
    /// `ohos.permission.DISTRIBUTED_DATASYNC`.
    pub const CALL_REMOTE: u32 = 8;

    /// Arguments of [`CALL_REMOTE`].
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct RemoteCallArgs {
        /// The device, by networkId.
        pub network_id: String,
        /// SA id there.
        pub sa: i32,
        /// Method code.
        pub code: u32,
        /// The method's arguments, encoded as for a local call.
        pub data: Vec<u8>,
    }

    /// One row of [`LIST_METHODS`].
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct MethodInfo {
        /// Transaction code.
        pub code: u32,
        /// Method name.
        pub name: String,
        /// The permission the caller must hold, if any.
        pub permission: Option<String>,
        /// Only system processes (native tokens) may call it.
        pub system_only: bool,
    }

    impl From<&crate::Method> for MethodInfo {
        fn from(m: &crate::Method) -> Self {
            Self {
                code: m.code,
                name: m.name.to_string(),
                permission: m.permission.map(str::to_string),
                system_only: m.system_only,
            }
        }
    }

    /// Arguments of [`DUMP`].
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct DumpArgs {
        /// SA id to dump.
        pub sa: i32,
        /// Extra arguments for the SA's dump.
        pub args: Vec<String>,
    }

    /// Event of [`SUBSCRIBE_DEATHS`]: a client connection went away.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ClientDied {
        /// Its pid.
        pub pid: i32,
        /// Its uid.
        pub uid: u32,
        /// Its connection id.
        pub conn: u64,
    }
}

use samgr_method::*;

const METHODS: &[Method] = &[
    Method::open(LIST, "ListSystemAbilities"),
    Method::with_permission(DUMP, "Dump", "ohos.permission.DUMP"),
    Method::open(ECHO, "Echo"),
    Method::open(WHOAMI, "WhoAmI"),
    Method::system(SUBSCRIBE_DEATHS, "SubscribeClientDeaths"),
    Method::open(LIST_METHODS, "ListMethods"),
    Method::with_permission(ECHO_CHECKED, "EchoChecked", "ohos.permission.DUMP"),
    Method::open(CALL_REMOTE, "CallRemote"),
];

/// samgr's own method table.
pub(crate) fn own_methods() -> &'static [Method] {
    METHODS
}

/// samgr as an SA.
#[derive(Default)]
pub struct SamgrSa {
    samgr: OnceLock<Weak<Samgr>>,
    death_subs: Mutex<Vec<(ConnHandle, u64)>>,
}

impl SamgrSa {
    pub(crate) fn attach(&self, s: Weak<Samgr>) {
        let _ = self.samgr.set(s);
    }

    fn samgr(&self) -> Result<std::sync::Arc<Samgr>, RemoteError> {
        self.samgr
            .get()
            .and_then(|w| w.upgrade())
            .ok_or_else(|| RemoteError::new(oxh_ipc::code::SA_INTERNAL, "samgr is shutting down"))
    }

    pub(crate) fn dump_text(&self, s: &Samgr) -> String {
        let mut out = String::from("SystemAbilityManager (0)\n  system abilities:\n");
        for i in s.list() {
            out.push_str(&format!(
                "    {:>5}  {:<28} {:?} ({})\n",
                i.id,
                i.name,
                i.state,
                if i.run_on_create {
                    "run-on-create"
                } else {
                    "on-demand"
                }
            ));
        }
        let clients = s.clients();
        out.push_str(&format!("  clients: {}\n", clients.len()));
        for (id, c) in clients {
            out.push_str(&format!(
                "    conn {id}: pid {} uid {} {} token {:#010x} ({})\n",
                c.pid,
                c.uid,
                c.process_name,
                c.token_id,
                c.token_type.as_str()
            ));
        }
        let subs = self.death_subs.lock().map(|s| s.len()).unwrap_or(0);
        out.push_str(&format!("  death subscriptions: {subs}\n"));
        out
    }
}

#[async_trait::async_trait]
impl SystemAbility for SamgrSa {
    fn methods(&self) -> &'static [Method] {
        METHODS
    }

    async fn call(&self, ctx: CallContext, code: u32, data: Bytes) -> Result<Vec<u8>, RemoteError> {
        match code {
            LIST => Ok(encode(&self.samgr()?.list())),
            DUMP => {
                let a: DumpArgs = decode(&data)?;
                Ok(encode(&self.samgr()?.dump(a.sa, &a.args)?))
            }
            ECHO | ECHO_CHECKED => Ok(data.to_vec()),
            LIST_METHODS => {
                let sa: i32 = decode(&data)?;
                let methods = self.samgr()?.methods_of(sa).await?;
                Ok(encode(
                    &methods.iter().map(MethodInfo::from).collect::<Vec<_>>(),
                ))
            }
            WHOAMI => Ok(encode(ctx.caller())),
            CALL_REMOTE => {
                let a: RemoteCallArgs = decode(&data)?;
                let remote = self.samgr()?.remote().ok_or_else(|| {
                    RemoteError::new(
                        oxh_ipc::code::NOT_SUPPORTED,
                        "this device has no soft bus: no remote calls",
                    )
                })?;
                remote
                    .call_remote(ctx.caller(), &a.network_id, a.sa, a.code, a.data)
                    .await
            }
            SUBSCRIBE_DEATHS => {
                let sub: u64 = decode(&data)?;
                if let Ok(mut s) = self.death_subs.lock() {
                    s.push((ctx.conn.clone(), sub));
                }
                Ok(encode(&()))
            }
            _ => Err(RemoteError::invalid(format!("unknown code {code}"))),
        }
    }

    fn dump(&self, _args: &[String]) -> String {
        self.samgr().map(|s| self.dump_text(&s)).unwrap_or_default()
    }

    fn on_client_died(&self, conn: &ConnHandle) {
        let event = encode(&ClientDied {
            pid: conn.caller().pid,
            uid: conn.caller().uid,
            conn: conn.id(),
        });
        if let Ok(mut subs) = self.death_subs.lock() {
            subs.retain(|(c, _)| c.id() != conn.id() && !c.is_closed());
            for (c, sub) in subs.iter() {
                c.push_event(*sub, &event);
            }
        }
    }
}

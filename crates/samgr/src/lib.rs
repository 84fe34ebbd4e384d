//! samgr, the system ability manager.
//!
//! Every service of the device is a system ability (SA) registered here under OpenHarmony's SA
//! id. samgr is the IPC [`Dispatcher`]: for each call it finds the SA, starts it if it is an
//! on-demand SA that has not run yet, checks the permission the method names (through a
//! [`PermissionChecker`] that the daemon wires in, so that samgr does not depend on the
//! access-token manager), then runs the method. It forwards death notices, and dumps each SA's
//! state for `hidumper`.

use bytes::Bytes;
use oxh_ipc::{Caller, ConnHandle, Dispatcher, RemoteError, TokenType, code};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

mod samgr_sa;
pub use samgr_method::MethodInfo;
pub use samgr_sa::{SAMGR_SA_ID, SamgrSa, samgr_method};

/// SA ids (defined in the IPC layer, where every contract can name them).
pub use oxh_ipc::sa_id;

/// Describes one method of an SA: what it is called and what it takes to call it.
#[derive(Debug, Clone, Copy)]
pub struct Method {
    /// The transaction code.
    pub code: u32,
    /// Its name, for dumps and error messages.
    pub name: &'static str,
    /// The permission the caller must hold, checked before the method runs.
    pub permission: Option<&'static str>,
    /// Only system processes (native tokens) may call it, as OpenHarmony's system APIs.
    pub system_only: bool,
}

impl Method {
    /// A method anyone may call.
    pub const fn open(code: u32, name: &'static str) -> Self {
        Self {
            code,
            name,
            permission: None,
            system_only: false,
        }
    }
    /// A method that needs `permission`.
    pub const fn with_permission(code: u32, name: &'static str, permission: &'static str) -> Self {
        Self {
            code,
            name,
            permission: Some(permission),
            system_only: false,
        }
    }
    /// A method for system processes only.
    pub const fn system(code: u32, name: &'static str) -> Self {
        Self {
            code,
            name,
            permission: None,
            system_only: true,
        }
    }
}

/// One call as an SA sees it.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The client connection (caller identity, event push).
    pub conn: ConnHandle,
}

impl CallContext {
    /// The caller, from kernel credentials.
    pub fn caller(&self) -> &Caller {
        self.conn.caller()
    }
}

/// A system ability: a service hosted by the daemon.
#[async_trait::async_trait]
pub trait SystemAbility: Send + Sync + 'static {
    /// Its methods; a call to a code not listed here is refused before [`Self::call`].
    fn methods(&self) -> &'static [Method];
    /// Runs one method. Arguments and results are postcard bytes (see [`oxh_ipc::decode`]).
    async fn call(&self, ctx: CallContext, code: u32, data: Bytes) -> Result<Vec<u8>, RemoteError>;
    /// Its state for `hidumper -s ID`.
    fn dump(&self, args: &[String]) -> String;
    /// Death notice: a client connection went away; drop what it subscribed or held.
    fn on_client_died(&self, _conn: &ConnHandle) {}
}

/// Builds an SA when it starts: at daemon start for run-on-create SAs, on first call otherwise.
pub type Factory = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Arc<dyn SystemAbility>, String>> + Send>>
        + Send
        + Sync,
>;

/// How an SA is registered.
pub struct SaProfile {
    /// SA id.
    pub id: i32,
    /// Name shown by `oxh sa list` and hidumper.
    pub name: &'static str,
    /// Start with the daemon (true) or on the first call (false).
    pub run_on_create: bool,
    /// Creates the running SA.
    pub factory: Factory,
}

impl SaProfile {
    /// A profile whose factory runs `f`.
    pub fn new<F, Fut>(id: i32, name: &'static str, run_on_create: bool, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<dyn SystemAbility>, String>> + Send + 'static,
    {
        Self {
            id,
            name,
            run_on_create,
            factory: Box::new(move || Box::pin(f())),
        }
    }

    /// A profile for an SA already built, started with the daemon.
    pub fn running(id: i32, name: &'static str, sa: Arc<dyn SystemAbility>) -> Self {
        Self::new(id, name, true, move || {
            let sa = sa.clone();
            async move { Ok(sa) }
        })
    }
}

/// Decides whether a caller holds a permission. The access-token manager implements it.
pub trait PermissionChecker: Send + Sync + 'static {
    /// True when `caller` holds `permission`.
    fn verify(&self, caller: &Caller, permission: &str) -> bool;
    /// Called after each check, so that usage can be recorded.
    fn record(&self, _caller: &Caller, _permission: &str, _granted: bool) {}
}

/// The checker used until the access-token manager is wired in: system processes hold every
/// permission, the shell holds `shell_permissions`, anyone else none.
#[derive(Debug, Clone, Default)]
pub struct BasicPermissionChecker {
    /// Permissions of the shell token.
    pub shell_permissions: Vec<String>,
}

impl PermissionChecker for BasicPermissionChecker {
    fn verify(&self, caller: &Caller, permission: &str) -> bool {
        match caller.token_type {
            TokenType::Native => true,
            TokenType::Shell => self.shell_permissions.iter().any(|p| p == permission),
            TokenType::Hap | TokenType::Invalid => false,
        }
    }
}

/// Whether an SA is running, as `oxh sa list` shows it; serialized as samgr's
/// SystemAbilityState names it (LOADED, NOT_LOADED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaState {
    /// Started and serving.
    #[serde(rename = "LOADED", alias = "Running")]
    Running,
    /// Registered, starts on its first call.
    #[serde(rename = "NOT_LOADED", alias = "NotStarted")]
    NotStarted,
}

/// One row of `oxh sa list`; JSON names as samgr's SaProfile (saId, runOnCreate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaInfo {
    /// SA id.
    #[serde(rename = "saId", alias = "id")]
    pub id: i32,
    /// SA name.
    pub name: String,
    /// State.
    pub state: SaState,
    /// Start mode: run-on-create or on-demand.
    #[serde(alias = "run_on_create")]
    pub run_on_create: bool,
}

/// One SA's dump, as `hidumper -s ID --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaDump {
    /// SA id.
    pub sa_id: i32,
    /// What the SA's Dump wrote.
    pub dump: String,
}

struct Entry {
    profile: SaProfile,
    cell: OnceCell<Arc<dyn SystemAbility>>,
}

/// The registry and dispatcher.
pub struct Samgr {
    entries: BTreeMap<i32, Entry>,
    checker: Arc<dyn PermissionChecker>,
    samgr_sa: Arc<SamgrSa>,
    clients: Mutex<BTreeMap<u64, Caller>>,
    remote: std::sync::OnceLock<Arc<dyn RemoteSaCaller>>,
}

/// Calls SAs on other devices (dbinder). The soft bus implements it and the daemon wires it
/// in, so that samgr does not depend on the soft bus.
#[async_trait::async_trait]
pub trait RemoteSaCaller: Send + Sync + 'static {
    /// Calls method `code` of SA `sa` on device `network_id` on behalf of local `caller`.
    async fn call_remote(
        &self,
        caller: &Caller,
        network_id: &str,
        sa: i32,
        code: u32,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, RemoteError>;
}

/// Errors from registration and start.
#[derive(Debug, thiserror::Error)]
pub enum SamgrError {
    /// Two SAs with one id.
    #[error("system ability {0} is registered twice")]
    Duplicate(i32),
    /// A run-on-create SA failed to start.
    #[error("system ability {id} ({name}) failed to start: {reason}")]
    Start {
        /// SA id.
        id: i32,
        /// SA name.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

impl Samgr {
    /// A registry holding only samgr itself.
    pub fn new(checker: Arc<dyn PermissionChecker>) -> Self {
        Self {
            entries: BTreeMap::new(),
            checker,
            samgr_sa: Arc::new(SamgrSa::default()),
            clients: Mutex::new(BTreeMap::new()),
            remote: std::sync::OnceLock::new(),
        }
    }

    /// Registers an SA; call before [`Samgr::start`].
    pub fn register(&mut self, profile: SaProfile) -> Result<(), SamgrError> {
        if profile.id == SAMGR_SA_ID || self.entries.contains_key(&profile.id) {
            return Err(SamgrError::Duplicate(profile.id));
        }
        self.entries.insert(
            profile.id,
            Entry {
                profile,
                cell: OnceCell::new(),
            },
        );
        Ok(())
    }

    /// Starts the run-on-create SAs and makes samgr ready to dispatch.
    pub async fn start(self) -> Result<Arc<Self>, SamgrError> {
        for e in self.entries.values() {
            if e.profile.run_on_create {
                start_entry(e).await.map_err(|reason| SamgrError::Start {
                    id: e.profile.id,
                    name: e.profile.name,
                    reason,
                })?;
            }
        }
        let me = Arc::new(self);
        me.samgr_sa.attach(Arc::downgrade(&me));
        Ok(me)
    }

    /// Wires in remote calls (the soft bus's dbinder); once.
    pub fn set_remote(&self, r: Arc<dyn RemoteSaCaller>) {
        let _ = self.remote.set(r);
    }

    pub(crate) fn remote(&self) -> Option<Arc<dyn RemoteSaCaller>> {
        self.remote.get().cloned()
    }

    /// Every registered SA with its state, samgr first.
    pub fn list(&self) -> Vec<SaInfo> {
        let mut v = vec![SaInfo {
            id: SAMGR_SA_ID,
            name: "SystemAbilityManager".into(),
            state: SaState::Running,
            run_on_create: true,
        }];
        v.extend(self.entries.values().map(|e| SaInfo {
            id: e.profile.id,
            name: e.profile.name.into(),
            state: if e.cell.initialized() {
                SaState::Running
            } else {
                SaState::NotStarted
            },
            run_on_create: e.profile.run_on_create,
        }));
        v
    }

    /// The dump of one SA for `hidumper -s`; a not-started SA is reported, not started.
    /// samgr's own dump with `-m` (or `methods`) adds every running SA's method table.
    pub fn dump(&self, id: i32, args: &[String]) -> Result<String, RemoteError> {
        if id == SAMGR_SA_ID {
            let mut out = self.samgr_sa.dump_text(self);
            if args.iter().any(|a| matches!(a.as_str(), "-m" | "methods")) {
                out.push_str(&self.methods_text());
            }
            return Ok(out);
        }
        let e = self.entries.get(&id).ok_or_else(|| not_found(id))?;
        Ok(match e.cell.get() {
            Some(sa) => sa.dump(args),
            None => format!(
                "{} ({}) is not started; it starts on its first call.\n",
                e.profile.name, id
            ),
        })
    }

    /// The method table of SA `id` (what each method is called and what it takes to call
    /// it), starting the SA if it is on-demand and not started yet.
    pub async fn methods_of(&self, id: i32) -> Result<&'static [Method], RemoteError> {
        if id == SAMGR_SA_ID {
            return Ok(samgr_sa::own_methods());
        }
        let e = self.entries.get(&id).ok_or_else(|| not_found(id))?;
        let running = start_entry(e)
            .await
            .map_err(|reason| start_failed(id, e, reason))?;
        Ok(running.methods())
    }

    /// Every running SA's method table, for `hidumper -s 0 -a -m`.
    fn methods_text(&self) -> String {
        let mut tables: Vec<(i32, &str, Option<&'static [Method]>)> = vec![(
            SAMGR_SA_ID,
            "SystemAbilityManager",
            Some(samgr_sa::own_methods()),
        )];
        tables.extend(self.entries.values().map(|e| {
            (
                e.profile.id,
                e.profile.name,
                e.cell.get().map(|sa| sa.methods()),
            )
        }));
        let mut out = String::from("  methods (code name: who may call):\n");
        for (id, name, methods) in tables {
            out.push_str(&format!("    {name} ({id})\n"));
            let Some(methods) = methods else {
                out.push_str("      not started; its table is known once it runs\n");
                continue;
            };
            for m in methods {
                let who = match (m.permission, m.system_only) {
                    (Some(p), true) => format!("system processes with {p}"),
                    (Some(p), false) => p.to_string(),
                    (None, true) => "system processes".to_string(),
                    (None, false) => "everyone".to_string(),
                };
                out.push_str(&format!("      {:>3} {}: {who}\n", m.code, m.name));
            }
        }
        out
    }

    /// Connected clients, for the samgr dump.
    pub fn clients(&self) -> Vec<(u64, Caller)> {
        self.clients
            .lock()
            .map(|c| c.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }

    fn find_method(methods: &'static [Method], code: u32) -> Option<&'static Method> {
        methods.iter().find(|m| m.code == code)
    }

    fn gate(&self, sa_name: &str, m: &Method, caller: &Caller) -> Result<(), RemoteError> {
        if m.system_only && caller.token_type != TokenType::Native {
            return Err(RemoteError::new(
                code::NOT_SYSTEM,
                format!(
                    "{sa_name}.{} is a system API: the caller ({} token) is not a system process",
                    m.name,
                    caller.token_type.as_str()
                ),
            ));
        }
        if let Some(p) = m.permission {
            let ok = self.checker.verify(caller, p);
            self.checker.record(caller, p, ok);
            if !ok {
                tracing::warn!(
                    tag = "samgr",
                    public_method = m.name,
                    public_pid = caller.pid,
                    public_permission = p,
                    "permission denied"
                );
                return Err(RemoteError::permission_denied(p));
            }
        }
        Ok(())
    }
}

fn not_found(id: i32) -> RemoteError {
    RemoteError::new(
        code::SA_NOT_FOUND,
        format!("system ability {id} is not registered on this device"),
    )
}

fn start_failed(id: i32, e: &Entry, reason: String) -> RemoteError {
    RemoteError::new(
        code::SA_INTERNAL,
        format!(
            "system ability {id} ({}) failed to start: {reason}",
            e.profile.name
        ),
    )
}

async fn start_entry(e: &Entry) -> Result<&Arc<dyn SystemAbility>, String> {
    e.cell
        .get_or_try_init(|| async {
            let t = std::time::Instant::now();
            let sa = (e.profile.factory)().await?;
            tracing::info!(
                tag = "samgr",
                public_sa = e.profile.id,
                public_name = e.profile.name,
                public_us = t.elapsed().as_micros() as u64,
                "system ability started"
            );
            Ok(sa)
        })
        .await
}

#[async_trait::async_trait]
impl Dispatcher for Samgr {
    async fn dispatch(
        &self,
        conn: ConnHandle,
        sa: i32,
        code_: u32,
        data: Bytes,
    ) -> Result<Vec<u8>, RemoteError> {
        if sa == SAMGR_SA_ID {
            let m = Self::find_method(self.samgr_sa.methods(), code_)
                .ok_or_else(|| unknown_method("SystemAbilityManager", code_))?;
            self.gate("SystemAbilityManager", m, conn.caller())?;
            return self.samgr_sa.call(CallContext { conn }, code_, data).await;
        }
        let e = self.entries.get(&sa).ok_or_else(|| not_found(sa))?;
        let running = start_entry(e)
            .await
            .map_err(|reason| start_failed(sa, e, reason))?;
        let m = Self::find_method(running.methods(), code_)
            .ok_or_else(|| unknown_method(e.profile.name, code_))?;
        self.gate(e.profile.name, m, conn.caller())?;
        running.call(CallContext { conn }, code_, data).await
    }

    fn on_connect(&self, conn: &ConnHandle) {
        if let Ok(mut c) = self.clients.lock() {
            c.insert(conn.id(), conn.caller().clone());
        }
    }

    fn on_disconnect(&self, conn: &ConnHandle) {
        if let Ok(mut c) = self.clients.lock() {
            c.remove(&conn.id());
        }
        tracing::debug!(
            tag = "samgr",
            public_pid = conn.caller().pid,
            public_conn = conn.id(),
            "client died"
        );
        for e in self.entries.values() {
            if let Some(sa) = e.cell.get() {
                sa.on_client_died(conn);
            }
        }
        self.samgr_sa.on_client_died(conn);
    }
}

fn unknown_method(name: &str, code_: u32) -> RemoteError {
    RemoteError::new(
        code::UNKNOWN_METHOD,
        format!("{name} has no method with code {code_}"),
    )
}

//! Abilities (`@ohos.app.ability.*`): the ability manager's proxy, and what a native app
//! implements: an [`Ability`] (UIAbility) or a [`ServiceExtension`], exported to the app host
//! with [`export_abilities!`](crate::export_abilities).
//!
//! ```no_run
//! use oxh_sdk::ability::{Ability, Context, LaunchReason, Want};
//!
//! #[derive(Default)]
//! struct EntryAbility;
//!
//! impl Ability for EntryAbility {
//!     fn on_create(&mut self, _ctx: &Context, want: &Want, _reason: LaunchReason) {
//!         eprintln!("started for {}", want.bundle_name);
//!     }
//! }
//!
//! oxh_sdk::export_abilities!(ability "EntryAbility" => EntryAbility);
//! ```

use crate::{Device, Error};
use oxh_ability::abi::{
    self, OxhAbilityCallbacks, OxhCaller, OxhConnectOptions, OxhElement, OxhHost, OxhReply, OxhWant,
};
pub use oxh_ability::api::OnContinueResult;
pub use oxh_ability::api::{RecordDump, StartArgs, StartReply, StartedInfo};
pub use oxh_ability::dms_api::{ContinueArgs, MissionEvent, MissionInfo};
pub use oxh_ability::{AbilityError, Element, LaunchReason, Want, WantParam};

/// What `onContinue` fills for the target device (OpenHarmony's `wantParam`): the target's
/// `onCreate` finds it in its Want's parameters.
pub type WantParams = std::collections::BTreeMap<String, WantParam>;

/// `AbilityConstant.ContinueState`: whether a mission may move to another device now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContinueState {
    /// ACTIVE (0): it may (the default).
    Active,
    /// INACTIVE (1): a continuation of it is refused (16300501).
    Inactive,
}
use oxh_ability::{api, dms_api};
use std::ffi::{CStr, c_char, c_void};
use std::sync::Arc;

/// Another device's movable missions as they change
/// ([`AbilityManager::watch_missions`]).
pub struct MissionWatch {
    sub: oxh_ipc::Subscription,
}

impl MissionWatch {
    /// The next event; `None` once the connection closed.
    pub async fn next(&mut self) -> Option<MissionEvent> {
        let b = self.sub.recv().await?;
        oxh_ipc::decode(&b).ok()
    }
}

/// The ability manager (`@ohos.app.ability.abilityManager`, `aa`).
pub struct AbilityManager<'a> {
    pub(crate) dev: &'a Device,
}

impl AbilityManager<'_> {
    /// Starts what `want` names; with `wait`, answers once it is in the foreground. With
    /// `want.device_id` naming another trusted device, it starts there (the caller needs
    /// ohos.permission.DISTRIBUTED_DATASYNC, checked there too, and the ability must be
    /// exported).
    pub async fn start_ability(&self, want: Want, wait: bool) -> Result<StartReply, Error> {
        self.dev
            .client
            .call(api::SA_ID, api::START_ABILITY, &StartArgs { want, wait })
            .await
    }

    /// Stops a started service extension.
    pub async fn stop_service(&self, element: Element) -> Result<(), Error> {
        self.dev
            .client
            .call(api::SA_ID, api::STOP_SERVICE, &element)
            .await
    }

    /// Kills a bundle's processes (`aa force-stop`).
    pub async fn force_stop(&self, bundle: &str) -> Result<(), Error> {
        self.dev
            .client
            .call(api::SA_ID, api::FORCE_STOP, &bundle.to_string())
            .await
    }

    /// Missions and running abilities (`aa dump -l`).
    pub async fn dump(&self) -> Result<Vec<RecordDump>, Error> {
        self.dev
            .client
            .call(api::SA_ID, api::DUMP_MISSIONS, &())
            .await
    }

    /// The missions of another trusted device (`distributedMissionManager.getMissionInfos`,
    /// `aa dump -l -d`), each with whether its ability is `continuable`. Needs
    /// ohos.permission.GET_RUNNING_INFO here and there, and DISTRIBUTED_DATASYNC there.
    pub async fn remote_missions(&self, network_id: &str) -> Result<Vec<MissionInfo>, Error> {
        self.dev
            .client
            .call(
                dms_api::SA_ID,
                dms_api::GET_REMOTE_MISSIONS,
                &network_id.to_string(),
            )
            .await
    }

    /// Moves mission `mission_id` of this device to the trusted device `network_id`
    /// (`distributedMissionManager.continueMission`, `aa continue`): answers once it runs
    /// there, or with DistributedSchedule's error (16300501 ... 16300509), the mission then
    /// still running here. Needs ohos.permission.DISTRIBUTED_DATASYNC.
    pub async fn continue_mission(&self, mission_id: i32, network_id: &str) -> Result<(), Error> {
        self.continue_mission_with(&ContinueArgs {
            mission_id,
            dst_device_id: network_id.to_string(),
            free_install: false,
        })
        .await
    }

    /// Follows the missions of the trusted device `network_id` that may move now (continuable,
    /// continue state ACTIVE): the list at once if known, after each change, and the device's
    /// disconnect (`distributedMissionManager.registerMissionListener`). Needs
    /// ohos.permission.GET_RUNNING_INFO, and an app MANAGE_MISSIONS too.
    pub async fn watch_missions(&self, network_id: &str) -> Result<MissionWatch, Error> {
        let sub = self.dev.client.subscribe();
        self.dev
            .client
            .call::<_, ()>(
                dms_api::SA_ID,
                dms_api::REGISTER_MISSION_LISTENER,
                &dms_api::MissionListenerArgs {
                    network_id: network_id.to_string(),
                    sub: sub.id(),
                },
            )
            .await?;
        Ok(MissionWatch { sub })
    }

    /// [`AbilityManager::continue_mission`] with every option: `free_install` lets the target
    /// install the app on demand from this device's signed HAPs if it lacks it and its policy
    /// allows (without it, such a target answers 16300504).
    pub async fn continue_mission_with(&self, args: &ContinueArgs) -> Result<(), Error> {
        self.dev
            .client
            .call(dms_api::SA_ID, dms_api::CONTINUE_MISSION, args)
            .await
    }
}

impl Device {
    /// The ability manager.
    pub fn ability(&self) -> AbilityManager<'_> {
        AbilityManager { dev: self }
    }

    /// Connects an app to its device from inside its sandbox, where the daemon's socket is
    /// where the spawner said (`OXH_SOCKET`).
    pub async fn connect_in_app() -> Result<Self, Error> {
        let socket = std::env::var_os(api::IPC_SOCKET_ENV)
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| api::IPC_SOCKET.into());
        Self::connect_socket(&socket).await
    }
}

/// An ability's context: what it may ask of the system while it lives.
pub struct Context {
    host: *const OxhHost,
}

// SAFETY: the host's functions may be called from any thread; the pointer stays valid for
// the instance's life, which the Context does not outlive.
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

impl Context {
    /// `startAbility(want)`: returns once the ability manager accepted the start.
    pub fn start_ability(&self, want: &Want) -> Result<(), i32> {
        let data = oxh_ipc::encode(want);
        let w = OxhWant {
            json: std::ptr::null(),
            data: data.as_ptr(),
            len: data.len(),
        };
        // SAFETY: the host pointer is valid while the instance lives (ABI contract).
        let rc = unsafe {
            let h = &*self.host;
            (h.start_ability)(h.ctx, &w)
        };
        if rc == 0 { Ok(()) } else { Err(rc) }
    }

    /// `setMissionContinueState(state)`: an INACTIVE mission refuses to move to another
    /// device (16300501) until it is ACTIVE again. 16000050 from a host of ABI 1.
    pub fn set_mission_continue_state(&self, state: ContinueState) -> Result<(), i32> {
        // SAFETY: as above; the field exists from ABI 2 on, checked first.
        let rc = unsafe {
            let h = &*self.host;
            if h.version < 2 {
                return Err(oxh_ability::code::INTERNAL);
            }
            (h.set_mission_continue_state)(h.ctx, i32::from(state == ContinueState::Active))
        };
        if rc == 0 { Ok(()) } else { Err(rc) }
    }

    /// `terminateSelf()`: `onBackground` and `onDestroy` follow.
    pub fn terminate_self(&self) -> Result<(), i32> {
        // SAFETY: as above.
        let rc = unsafe {
            let h = &*self.host;
            (h.terminate_self)(h.ctx)
        };
        if rc == 0 { Ok(()) } else { Err(rc) }
    }

    /// `connectServiceExtensionAbility(want, options)`: the connection's id at once; then
    /// `options` hears, on the main thread, `on_connect` with the service's remote object
    /// (or `on_failed`), and later `on_disconnect` if the service goes away.
    pub fn connect_service_extension(
        &self,
        want: &Want,
        options: impl ConnectOptions,
    ) -> Result<u64, i32> {
        let data = oxh_ipc::encode(want);
        let w = OxhWant {
            json: std::ptr::null(),
            data: data.as_ptr(),
            len: data.len(),
        };
        let boxed = Box::new(OptionsBox {
            host: self.host,
            inner: Box::new(options),
        });
        let raw = OxhConnectOptions {
            data: Box::into_raw(boxed).cast(),
            on_connect: Some(options_on_connect),
            on_disconnect: Some(options_on_disconnect),
            on_failed: Some(options_on_failed),
            release: Some(options_release),
        };
        let mut conn = 0u64;
        // SAFETY: as above; the host keeps `raw` (a copy) until it calls `release`.
        let rc = unsafe {
            let h = &*self.host;
            (h.connect_service_extension)(h.ctx, &w, &raw, &mut conn)
        };
        if rc == 0 {
            Ok(conn)
        } else {
            // SAFETY: refused: the host did not keep the options, which are ours to free.
            unsafe { options_release(raw.data) };
            Err(rc)
        }
    }

    /// `disconnectServiceExtensionAbility(conn)`: the service's host sees the connection end.
    pub fn disconnect_service_extension(&self, conn: u64) -> Result<(), i32> {
        // SAFETY: as above.
        let rc = unsafe {
            let h = &*self.host;
            (h.disconnect_service_extension)(h.ctx, conn)
        };
        if rc == 0 { Ok(()) } else { Err(rc) }
    }

    /// Runs `f` to completion on the app's own runtime (SDK calls are async; lifecycle
    /// callbacks are not).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        block_on(f)
    }
}

/// Runs `f` to completion on the app's own runtime, from any callback (a connection's
/// options have no [`Context`]).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    app_runtime().block_on(f)
}

fn app_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the app")
    })
}

/// A connection's client side (`ConnectOptions`): its callbacks run on the main thread.
pub trait ConnectOptions: Send + 'static {
    /// `onConnect(elementName, remote)`.
    fn on_connect(&mut self, element: &Element, remote: RemoteProxy);
    /// `onDisconnect(elementName)`: the service went away.
    fn on_disconnect(&mut self, _element: &Element) {}
    /// `onFailed(code)`: 16000001, 16000004 ...
    fn on_failed(&mut self, _code: i32) {}
}

/// A connected service's remote object, as its client calls it (`rpc.RemoteProxy`).
#[derive(Debug, Clone)]
pub struct RemoteProxy {
    host: *const OxhHost,
    conn: u64,
}

// SAFETY: the ABI lets any thread call send_request; the host pointer lives as long as the
// ability that made the connection.
unsafe impl Send for RemoteProxy {}
unsafe impl Sync for RemoteProxy {}

impl RemoteProxy {
    /// The connection's id (for `disconnect_service_extension`).
    pub fn connection(&self) -> u64 {
        self.conn
    }

    /// `sendRequest(code, data)`: blocks until the service answers; its answer, or its error
    /// code (16000050 once the connection is gone).
    pub fn send_request(&self, code: u32, data: &[u8]) -> Result<Vec<u8>, i32> {
        let mut out: Vec<u8> = Vec::new();
        let reply = OxhReply::to_vec(&mut out);
        // SAFETY: the host pointer is valid (see above); data and reply live through the call.
        let rc = unsafe {
            let h = &*self.host;
            (h.send_request)(h.ctx, self.conn, code, data.as_ptr(), data.len(), &reply)
        };
        if rc == 0 { Ok(out) } else { Err(rc) }
    }
}

/// Who calls a remote object: the kernel's credentials of the client's socket and its token.
/// A client on another device ([`RemoteCaller::is_remote`]) has pid 0, the overflow uid and
/// the local copy of its synced token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCaller {
    /// `getCallingPid()`.
    pub pid: i32,
    /// `getCallingUid()`.
    pub uid: u32,
    /// `getCallingTokenId()`.
    pub token_id: u32,
    /// The client's bundle (empty: not an app).
    pub bundle_name: String,
}

impl RemoteCaller {
    /// The client runs on another device (its connection is relayed by the daemons).
    pub fn is_remote(&self) -> bool {
        self.pid == 0
    }
}

/// A service's remote object (`rpc.RemoteObject`): `on_remote_request` runs on the calling
/// connection's thread, so it takes `&self`.
pub trait RemoteObject: Send + Sync + 'static {
    /// `onRemoteRequest(code, data)`: the answer, or an error code for the client.
    fn on_remote_request(
        &self,
        caller: &RemoteCaller,
        code: u32,
        data: &[u8],
    ) -> Result<Vec<u8>, i32>;
}

/// # Safety
/// `p` is null or a NUL-terminated string.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// # Safety
/// `e` is null or a valid [`OxhElement`].
unsafe fn element_of(e: *const OxhElement) -> Element {
    // SAFETY: the caller's contract.
    match unsafe { e.as_ref() } {
        None => Element::default(),
        // SAFETY: its strings are NUL-terminated (the ABI).
        Some(e) => unsafe {
            Element {
                bundle_name: text(e.bundle_name),
                module_name: text(e.module_name),
                ability_name: text(e.ability_name),
            }
        },
    }
}

/// What a connection's options pointer is: the client's options and the context they came
/// from (its proxy calls through it).
struct OptionsBox {
    host: *const OxhHost,
    inner: Box<dyn ConnectOptions>,
}

/// # Safety
/// `data` is the options pointer [`Context::connect_service_extension`] made, not released.
unsafe fn options<'a>(data: *mut c_void) -> &'a mut OptionsBox {
    // SAFETY: the caller's contract.
    unsafe { &mut *data.cast::<OptionsBox>() }
}

unsafe extern "C" fn options_on_connect(data: *mut c_void, conn: u64, e: *const OxhElement) {
    // SAFETY: the ABI's contract.
    let (o, e) = unsafe { (options(data), element_of(e)) };
    let remote = RemoteProxy { host: o.host, conn };
    o.inner.on_connect(&e, remote);
}

unsafe extern "C" fn options_on_disconnect(data: *mut c_void, _conn: u64, e: *const OxhElement) {
    // SAFETY: the ABI's contract.
    let (o, e) = unsafe { (options(data), element_of(e)) };
    o.inner.on_disconnect(&e);
}

unsafe extern "C" fn options_on_failed(data: *mut c_void, _conn: u64, code: i32) {
    // SAFETY: the ABI's contract.
    unsafe { options(data) }.inner.on_failed(code);
}

unsafe extern "C" fn options_release(data: *mut c_void) {
    // SAFETY: the ABI: called once, last, on what connect_service_extension boxed.
    drop(unsafe { Box::from_raw(data.cast::<OptionsBox>()) });
}

/// A UIAbility's lifecycle (`@ohos.app.ability.UIAbility`). Every callback has a default
/// that does nothing.
pub trait Ability: Send + 'static {
    /// A `specified` ability's `onAcceptWant(want)` (OpenHarmony's AbilityStage callback),
    /// before any instance: the key of the instance this start goes to (a start with the
    /// key of a running instance reaches it with `onNewWant`).
    fn on_accept_want(_want: &Want) -> String
    where
        Self: Sized,
    {
        String::new()
    }
    /// `onCreate(want, launchParam)`.
    fn on_create(&mut self, _ctx: &Context, _want: &Want, _reason: LaunchReason) {}
    /// `onNewWant(want)`: a singleton started again.
    fn on_new_want(&mut self, _ctx: &Context, _want: &Want) {}
    /// `onForeground()`.
    fn on_foreground(&mut self, _ctx: &Context) {}
    /// `onBackground()`.
    fn on_background(&mut self, _ctx: &Context) {}
    /// `onDestroy()`.
    fn on_destroy(&mut self, _ctx: &Context) {}
    /// `onContinue(wantParam)`: the mission is about to move to another device; put what
    /// the target needs in `want_param` (at most 100 KiB in all) and answer Agree. The
    /// default answers Reject, as OpenHarmony's UIAbility does when it has no `onContinue`
    /// (JsUIAbility::OnContinue): an ability that did not say what to carry stays here.
    /// Setting `ohos.extra.param.key.supportContinueSourceExit` to false keeps the mission
    /// here after it moved.
    fn on_continue(&mut self, _want_param: &mut WantParams) -> OnContinueResult {
        OnContinueResult::Reject
    }
}

/// A ServiceExtensionAbility's lifecycle.
pub trait ServiceExtension: Send + 'static {
    /// `onCreate(want)`.
    fn on_create(&mut self, _ctx: &Context, _want: &Want) {}
    /// `onRequest(want, startId)`: a start.
    fn on_request(&mut self, _ctx: &Context, _want: &Want, _start_id: i32) {}
    /// `onConnect(want)`, for the first client: the remote object every client then calls
    /// (None refuses connections).
    fn on_connect(&mut self, _ctx: &Context, _want: &Want) -> Option<Arc<dyn RemoteObject>> {
        None
    }
    /// `onDisconnect(want)`: the last client went.
    fn on_disconnect(&mut self, _ctx: &Context, _want: &Want) {}
    /// `onDestroy()`.
    fn on_destroy(&mut self, _ctx: &Context) {}
}

fn reason_of(r: i32) -> LaunchReason {
    match r {
        1 => LaunchReason::StartAbility,
        2 => LaunchReason::Call,
        3 => LaunchReason::Continuation,
        4 => LaunchReason::AppRecovery,
        5 => LaunchReason::Share,
        8 => LaunchReason::AutoStartup,
        9 => LaunchReason::InsightIntent,
        _ => LaunchReason::Unknown,
    }
}

/// # Safety
/// `w` is null or a valid [`OxhWant`].
unsafe fn want_of(w: *const OxhWant) -> Want {
    // SAFETY: the caller's contract.
    let Some(w) = (unsafe { w.as_ref() }) else {
        return Want::default();
    };
    if w.data.is_null() {
        return Want::default();
    }
    // SAFETY: the host passes postcard bytes valid for `len`.
    let bytes = unsafe { std::slice::from_raw_parts(w.data, w.len) };
    oxh_ipc::decode(bytes).unwrap_or_default()
}

struct Instance<T> {
    ability: T,
    ctx: Context,
    /// A service's remote object while bound (a `Box<Arc<dyn RemoteObject>>`).
    remote: *mut c_void,
}

impl<T> Instance<T> {
    /// Frees the remote object (the host no longer uses it).
    fn drop_remote(&mut self) {
        if !self.remote.is_null() {
            // SAFETY: made by ServiceTable::on_connect with Box::into_raw, freed once.
            drop(unsafe { Box::from_raw(self.remote.cast::<Arc<dyn RemoteObject>>()) });
            self.remote = std::ptr::null_mut();
        }
    }
}

/// # Safety
/// `this` is what `create` returned and has not been destroyed.
unsafe fn instance<'a, T>(this: *mut c_void) -> &'a mut Instance<T> {
    // SAFETY: the caller's contract.
    unsafe { &mut *this.cast::<Instance<T>>() }
}

/// Makes an instance of `T` for `host`, runs its `onCreate` through `f`, and hands the
/// host the pointer every later callback gets.
///
/// # Safety
/// `want` is null or a valid [`OxhWant`].
unsafe fn create<T: Default>(
    host: *const OxhHost,
    want: *const OxhWant,
    f: impl FnOnce(&mut T, &Context, &Want),
) -> *mut c_void {
    let mut i = Box::new(Instance {
        ability: T::default(),
        ctx: Context { host },
        remote: std::ptr::null_mut(),
    });
    // SAFETY: the caller's contract.
    let w = unsafe { want_of(want) };
    let Instance { ability, ctx, .. } = &mut *i;
    f(ability, ctx, &w);
    Box::into_raw(i).cast()
}

/// Runs `onDestroy` through `f` and frees the instance.
///
/// # Safety
/// `this` is what [`create`] returned for this `T`; no callback follows.
unsafe fn destroy<T>(this: *mut c_void, f: impl FnOnce(&mut T, &Context)) {
    // SAFETY: the caller's contract.
    let mut i = unsafe { Box::from_raw(this.cast::<Instance<T>>()) };
    let Instance { ability, ctx, .. } = &mut *i;
    f(ability, ctx);
    i.drop_remote();
}

/// Callback tables for a UIAbility type (used by [`export_abilities!`](crate::export_abilities)).
#[doc(hidden)]
pub struct UiTable<T>(std::marker::PhantomData<T>);

impl<T: Ability + Default> UiTable<T> {
    /// The table the host calls.
    pub const CALLBACKS: OxhAbilityCallbacks = OxhAbilityCallbacks {
        version: abi::ABI_VERSION,
        on_create: Some(Self::on_create),
        on_new_want: Some(Self::on_new_want),
        on_foreground: Some(Self::on_foreground),
        on_background: Some(Self::on_background),
        on_destroy: Some(Self::on_destroy),
        on_request: None,
        on_connect: None,
        on_disconnect: None,
        on_accept_want: Some(Self::on_accept_want),
        on_remote_request: None,
        on_continue: Some(Self::on_continue),
    };

    unsafe extern "C" fn on_continue(
        this: *mut c_void,
        want_param: *const OxhWant,
        out_data: *const OxhReply,
        _out_json: *const OxhReply,
    ) -> i32 {
        // SAFETY: the ABI's contract.
        let (i, mut w) = unsafe { (instance::<T>(this), want_of(want_param)) };
        let r = i.ability.on_continue(&mut w.parameters);
        let bytes = oxh_ipc::encode(&w);
        // SAFETY: the ABI: `out_data` is valid through the call.
        unsafe {
            if let Some(o) = out_data.as_ref() {
                (o.write)(o.ctx, bytes.as_ptr(), bytes.len());
            }
        }
        match r {
            OnContinueResult::Agree => api::ON_CONTINUE_AGREE,
            OnContinueResult::Reject => api::ON_CONTINUE_REJECT,
            OnContinueResult::Mismatch => api::ON_CONTINUE_MISMATCH,
        }
    }

    unsafe extern "C" fn on_accept_want(want: *const OxhWant, key: *const OxhReply) {
        // SAFETY: the ABI's contract for `want` and `key`.
        unsafe {
            let k = T::on_accept_want(&want_of(want));
            if let Some(r) = key.as_ref() {
                (r.write)(r.ctx, k.as_ptr(), k.len());
            }
        }
    }

    unsafe extern "C" fn on_create(
        host: *const OxhHost,
        want: *const OxhWant,
        reason: i32,
    ) -> *mut c_void {
        // SAFETY: the ABI's contract for `want`.
        unsafe { create::<T>(host, want, |a, c, w| a.on_create(c, w, reason_of(reason))) }
    }

    unsafe extern "C" fn on_new_want(this: *mut c_void, want: *const OxhWant) {
        // SAFETY: the ABI's contract.
        let (i, w) = unsafe { (instance::<T>(this), want_of(want)) };
        i.ability.on_new_want(&i.ctx, &w);
    }

    unsafe extern "C" fn on_foreground(this: *mut c_void) {
        // SAFETY: the ABI's contract.
        let i = unsafe { instance::<T>(this) };
        i.ability.on_foreground(&i.ctx);
    }

    unsafe extern "C" fn on_background(this: *mut c_void) {
        // SAFETY: the ABI's contract.
        let i = unsafe { instance::<T>(this) };
        i.ability.on_background(&i.ctx);
    }

    unsafe extern "C" fn on_destroy(this: *mut c_void) {
        // SAFETY: the ABI's contract: the last call on this instance.
        unsafe { destroy::<T>(this, |a, c| a.on_destroy(c)) }
    }
}

/// Callback tables for a service extension type.
#[doc(hidden)]
pub struct ServiceTable<T>(std::marker::PhantomData<T>);

impl<T: ServiceExtension + Default> ServiceTable<T> {
    /// The table the host calls.
    pub const CALLBACKS: OxhAbilityCallbacks = OxhAbilityCallbacks {
        version: abi::ABI_VERSION,
        on_create: Some(Self::on_create),
        on_new_want: None,
        on_foreground: None,
        on_background: None,
        on_destroy: Some(Self::on_destroy),
        on_request: Some(Self::on_request),
        on_connect: Some(Self::on_connect),
        on_disconnect: Some(Self::on_disconnect),
        on_accept_want: None,
        on_remote_request: Some(Self::on_remote_request),
        on_continue: None,
    };

    unsafe extern "C" fn on_create(
        host: *const OxhHost,
        want: *const OxhWant,
        _reason: i32,
    ) -> *mut c_void {
        // SAFETY: the ABI's contract for `want`.
        unsafe { create::<T>(host, want, |a, c, w| a.on_create(c, w)) }
    }

    unsafe extern "C" fn on_request(this: *mut c_void, want: *const OxhWant, start_id: i32) {
        // SAFETY: the ABI's contract.
        let (i, w) = unsafe { (instance::<T>(this), want_of(want)) };
        i.ability.on_request(&i.ctx, &w, start_id);
    }

    unsafe extern "C" fn on_connect(this: *mut c_void, want: *const OxhWant) -> *mut c_void {
        // SAFETY: the ABI's contract.
        let (i, w) = unsafe { (instance::<T>(this), want_of(want)) };
        i.drop_remote();
        if let Some(r) = i.ability.on_connect(&i.ctx, &w) {
            i.remote = Box::into_raw(Box::new(r)).cast();
        }
        i.remote
    }

    unsafe extern "C" fn on_disconnect(this: *mut c_void, want: *const OxhWant) {
        // SAFETY: the ABI's contract.
        let (i, w) = unsafe { (instance::<T>(this), want_of(want)) };
        i.ability.on_disconnect(&i.ctx, &w);
        i.drop_remote();
    }

    /// Runs on connection threads: it touches only the remote object, never the instance.
    unsafe extern "C" fn on_remote_request(
        _this: *mut c_void,
        remote: *mut c_void,
        caller: *const OxhCaller,
        code: u32,
        data: *const u8,
        len: usize,
        reply: *const OxhReply,
    ) -> i32 {
        // SAFETY: the ABI: `remote` is what on_connect returned, live until onDisconnect;
        // `caller`, `data` and `reply` are valid during the call.
        unsafe {
            let Some(r) = remote.cast::<Arc<dyn RemoteObject>>().as_ref() else {
                return oxh_ability::code::INTERNAL;
            };
            let who = match caller.as_ref() {
                Some(c) => RemoteCaller {
                    pid: c.pid,
                    uid: c.uid,
                    token_id: c.token_id,
                    bundle_name: text(c.bundle_name),
                },
                None => return oxh_ability::code::INTERNAL,
            };
            let bytes = if data.is_null() || len == 0 {
                &[][..]
            } else {
                std::slice::from_raw_parts(data, len)
            };
            match r.on_remote_request(&who, code, bytes) {
                Ok(answer) => {
                    if let Some(rp) = reply.as_ref() {
                        (rp.write)(rp.ctx, answer.as_ptr(), answer.len());
                    }
                    0
                }
                Err(0) => oxh_ability::code::INTERNAL,
                Err(e) => e,
            }
        }
    }

    unsafe extern "C" fn on_destroy(this: *mut c_void) {
        // SAFETY: the ABI's contract: the last call on this instance.
        unsafe { destroy::<T>(this, |a, c| a.on_destroy(c)) }
    }
}

/// Exports a library's abilities to the app host: one `OxhAbility_Entry` that returns each
/// named ability's callbacks. Each type implements `Default` and [`Ability`] (`ability`) or
/// [`ServiceExtension`] (`service`); the names are module.json's ability names.
///
/// ```ignore
/// oxh_sdk::export_abilities!(ability "EntryAbility" => Notes, service "CounterService" => Counter);
/// ```
#[macro_export]
macro_rules! export_abilities {
    ($($kind:ident $name:literal => $ty:ty),+ $(,)?) => {
        /// The native ability entry (see `oxh_ability::abi`).
        ///
        /// # Safety
        /// `name` is null or a NUL-terminated string.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn OxhAbility_Entry(
            name: *const ::std::ffi::c_char,
        ) -> *const $crate::ability::Callbacks {
            if name.is_null() {
                return ::std::ptr::null();
            }
            // SAFETY: the host passes a NUL-terminated name.
            let name = unsafe { ::std::ffi::CStr::from_ptr(name) }.to_bytes();
            $(
                if name == $name.as_bytes() {
                    return $crate::export_abilities!(@table $kind $ty);
                }
            )+
            ::std::ptr::null()
        }
    };
    (@table ability $ty:ty) => { &$crate::ability::UiTable::<$ty>::CALLBACKS };
    (@table service $ty:ty) => { &$crate::ability::ServiceTable::<$ty>::CALLBACKS };
}

/// The callback table type the export macro returns.
pub type Callbacks = OxhAbilityCallbacks;

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::sync::Mutex;

    static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

    #[derive(Default)]
    struct Probe;

    impl Ability for Probe {
        fn on_create(&mut self, _ctx: &Context, want: &Want, reason: LaunchReason) {
            LOG.lock()
                .unwrap()
                .push(format!("create {} {reason:?}", want.bundle_name));
        }
        fn on_foreground(&mut self, _ctx: &Context) {
            LOG.lock().unwrap().push("foreground".into());
        }
        fn on_destroy(&mut self, _ctx: &Context) {
            LOG.lock().unwrap().push("destroy".into());
        }
    }

    #[derive(Default)]
    struct Svc;
    struct Echo;
    impl RemoteObject for Echo {
        fn on_remote_request(
            &self,
            caller: &RemoteCaller,
            code: u32,
            data: &[u8],
        ) -> Result<Vec<u8>, i32> {
            match code {
                1 => Ok([data, caller.bundle_name.as_bytes()].concat()),
                _ => Err(401),
            }
        }
    }
    impl ServiceExtension for Svc {
        fn on_request(&mut self, _ctx: &Context, _want: &Want, start_id: i32) {
            LOG.lock().unwrap().push(format!("request {start_id}"));
        }
        fn on_connect(&mut self, _ctx: &Context, _want: &Want) -> Option<Arc<dyn RemoteObject>> {
            Some(Arc::new(Echo))
        }
    }

    crate::export_abilities!(ability "Probe" => Probe, service "Svc" => Svc);

    unsafe extern "C" fn no_start(_: *mut c_void, _: *const OxhWant) -> i32 {
        16_000_001
    }
    unsafe extern "C" fn no_terminate(_: *mut c_void) -> i32 {
        0
    }
    unsafe extern "C" fn no_connect(
        _: *mut c_void,
        _: *const OxhWant,
        _: *const OxhConnectOptions,
        _: *mut u64,
    ) -> i32 {
        16_000_001
    }
    unsafe extern "C" fn no_disconnect(_: *mut c_void, _: u64) -> i32 {
        16_000_050
    }
    unsafe extern "C" fn no_send(
        _: *mut c_void,
        _: u64,
        _: u32,
        _: *const u8,
        _: usize,
        _: *const OxhReply,
    ) -> i32 {
        16_000_050
    }

    unsafe extern "C" fn no_state(_: *mut c_void, _: i32) -> i32 {
        16_000_050
    }

    /// A host whose every function refuses.
    fn stub_host() -> OxhHost {
        OxhHost {
            version: abi::ABI_VERSION,
            ctx: std::ptr::null_mut(),
            start_ability: no_start,
            terminate_self: no_terminate,
            connect_service_extension: no_connect,
            disconnect_service_extension: no_disconnect,
            send_request: no_send,
            set_mission_continue_state: no_state,
        }
    }

    #[test]
    fn a_service_remote_object_answers_through_the_c_abi_until_unbound() {
        let host = stub_host();
        let svc = CString::new("Svc").unwrap();
        let bundle = CString::new("com.client").unwrap();
        let caller = OxhCaller {
            pid: 1,
            uid: 20010001,
            token_id: 7,
            bundle_name: bundle.as_ptr(),
        };
        // SAFETY: the ABI's order: create, connect, requests, disconnect, destroy.
        unsafe {
            let t = &*OxhAbility_Entry(svc.as_ptr());
            let this = (t.on_create.unwrap())(&host, std::ptr::null(), 1);
            let remote = (t.on_connect.unwrap())(this, std::ptr::null());
            assert!(!remote.is_null(), "on_connect gave a remote object");
            let mut out: Vec<u8> = Vec::new();
            let reply = OxhReply::to_vec(&mut out);
            let rq = t.on_remote_request.unwrap();
            assert_eq!(rq(this, remote, &caller, 1, b"hi ".as_ptr(), 3, &reply), 0);
            assert_eq!(out, b"hi com.client");
            assert_eq!(
                rq(this, remote, &caller, 9, std::ptr::null(), 0, &reply),
                401
            );
            (t.on_disconnect.unwrap())(this, std::ptr::null());
            assert!(
                instance::<Svc>(this).remote.is_null(),
                "freed at onDisconnect"
            );
            (t.on_destroy.unwrap())(this);
        }
        let ctx = Context { host: &host };
        assert_eq!(
            ctx.connect_service_extension(&Want::default(), Nothing),
            Err(16_000_001),
            "a refused connect frees its options (miri/asan would see a leak or double free)"
        );
        let p = RemoteProxy {
            host: &host,
            conn: 3,
        };
        assert_eq!(p.send_request(1, b"x"), Err(16_000_050));
    }

    struct Nothing;
    impl ConnectOptions for Nothing {
        fn on_connect(&mut self, _element: &Element, _remote: RemoteProxy) {}
    }

    #[test]
    fn the_exported_entry_drives_the_trait_through_the_c_abi() {
        let host = stub_host();
        let name = CString::new("Probe").unwrap();
        // SAFETY: calling our own exported entry as the host would.
        let t = unsafe { &*OxhAbility_Entry(name.as_ptr()) };
        assert_eq!(t.version, abi::ABI_VERSION);
        assert!(t.on_request.is_none(), "a UIAbility has no onRequest");
        let data = oxh_ipc::encode(&Want::explicit("com.x", "Probe"));
        let w = OxhWant {
            json: std::ptr::null(),
            data: data.as_ptr(),
            len: data.len(),
        };
        // SAFETY: the ABI's order: create, then steps, then destroy.
        unsafe {
            let this = (t.on_create.unwrap())(&host, &w, 1);
            assert!(!this.is_null());
            let i = instance::<Probe>(this);
            assert_eq!(i.ctx.start_ability(&Want::default()), Err(16_000_001));
            (t.on_foreground.unwrap())(this);
            (t.on_destroy.unwrap())(this);
        }
        let svc = CString::new("Svc").unwrap();
        // SAFETY: as above.
        unsafe {
            let t = &*OxhAbility_Entry(svc.as_ptr());
            let this = (t.on_create.unwrap())(&host, &w, 1);
            (t.on_request.unwrap())(this, &w, 2);
            (t.on_destroy.unwrap())(this);
            let none = CString::new("Nope").unwrap();
            assert!(OxhAbility_Entry(none.as_ptr()).is_null());
        }
        let log = LOG.lock().unwrap().clone();
        assert_eq!(
            log,
            [
                "create com.x StartAbility",
                "foreground",
                "destroy",
                "request 2"
            ]
        );
    }
}

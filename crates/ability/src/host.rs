//! The app host: the program every app process runs inside its sandbox. It attaches to the
//! ability manager as the process the spawner started, loads the app's native ability
//! libraries and runs their lifecycle callbacks over the [`crate::abi`] C ABI on its main
//! thread, one at a time, reporting each step when it returns.

use crate::abi::{
    self, EntryFn, OxhAbilityCallbacks, OxhCaller, OxhConnectOptions, OxhElement, OxhHost,
    OxhReply, OxhWant,
};
use crate::api::{
    self, AttachArgs, ConnectArgs, ConnectReply, HostControl, HostEvent, Peer, StartArgs, Step,
    StepDone,
};
use crate::codesign;
use crate::layout;
use crate::remote::{self, Proxy};
use crate::want::{Element, Want, WantParam};
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_void};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why the host stops.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Its environment lacks what the spawner sets.
    #[error("app host: {0}")]
    Setup(String),
    /// The daemon refused or went away.
    #[error("app host: {0}")]
    Ipc(#[from] oxh_ipc::IpcError),
}

/// A Want as OpenHarmony's JSON (`parameters` values as plain JSON values).
pub fn want_to_json(w: &Want) -> String {
    use serde_json::{Map, Value, json};
    let params: Map<String, Value> = w
        .parameters
        .iter()
        .map(|(k, v)| {
            let v = match v {
                WantParam::Bool(b) => json!(b),
                WantParam::Int(i) => json!(i),
                WantParam::Float(f) => json!(f),
                WantParam::String(s) => json!(s),
            };
            (k.clone(), v)
        })
        .collect();
    json!({
        "deviceId": w.device_id,
        "bundleName": w.bundle_name,
        "abilityName": w.ability_name,
        "moduleName": w.module_name,
        "uri": w.uri,
        "type": w.mime_type,
        "action": w.action,
        "entities": w.entities,
        "parameters": params,
        "flags": w.flags,
    })
    .to_string()
}

/// A Want from OpenHarmony's JSON; unknown fields are ignored, wrong types refused.
pub fn want_from_json(s: &str) -> Result<Want, String> {
    use serde_json::Value;
    let v: Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
    let o = v.as_object().ok_or("a Want is a JSON object")?;
    let text = |k: &str| -> Result<String, String> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("{k} must be a string")),
        }
    };
    let mut w = Want {
        device_id: text("deviceId")?,
        bundle_name: text("bundleName")?,
        ability_name: text("abilityName")?,
        module_name: text("moduleName")?,
        uri: text("uri")?,
        mime_type: text("type")?,
        action: text("action")?,
        ..Want::default()
    };
    if let Some(e) = o.get("entities") {
        w.entities = serde_json::from_value(e.clone()).map_err(|_| "entities must be strings")?;
    }
    if let Some(f) = o.get("flags") {
        w.flags = f
            .as_u64()
            .and_then(|f| u32::try_from(f).ok())
            .ok_or("flags must be a u32")?;
    }
    if let Some(p) = o.get("parameters") {
        let p = p.as_object().ok_or("parameters must be an object")?;
        for (k, v) in p {
            let v = match v {
                Value::Bool(b) => WantParam::Bool(*b),
                Value::String(s) => WantParam::String(s.clone()),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => WantParam::Int(i),
                    None => WantParam::Float(n.as_f64().unwrap_or(0.0)),
                },
                _ => {
                    return Err(format!(
                        "parameter {k}: only bool, number and string values"
                    ));
                }
            };
            w.parameters.insert(k.clone(), v);
        }
    }
    Ok(w)
}

/// A Want in both encodings, alive while a callback runs.
struct WantArg {
    json: CString,
    data: Vec<u8>,
}

impl WantArg {
    fn new(w: &Want) -> Self {
        WantArg {
            json: CString::new(want_to_json(w)).unwrap_or_default(),
            data: oxh_ipc::encode(w),
        }
    }

    fn raw(&self) -> OxhWant {
        OxhWant {
            json: self.json.as_ptr(),
            data: self.data.as_ptr(),
            len: self.data.len(),
        }
    }
}

/// Reads a Want an app passed: postcard if given, else JSON.
///
/// # Safety
/// `w` is null or points to an [`OxhWant`] whose pointers are null or valid for its lengths.
unsafe fn read_want(w: *const OxhWant) -> Result<Want, String> {
    // SAFETY: the caller's contract.
    let Some(w) = (unsafe { w.as_ref() }) else {
        return Err("no Want".into());
    };
    if !w.data.is_null() {
        // SAFETY: the caller's contract.
        let bytes = unsafe { std::slice::from_raw_parts(w.data, w.len) };
        return oxh_ipc::decode(bytes).map_err(|e| e.to_string());
    }
    if !w.json.is_null() {
        // SAFETY: the caller's contract: NUL-terminated.
        let s = unsafe { CStr::from_ptr(w.json) }.to_string_lossy();
        return want_from_json(&s);
    }
    Err("an empty Want".into())
}

/// What the app's calls need: the IPC client and the runtime that drives it, and the
/// service connections of this process (as client and as service).
struct Link {
    client: oxh_ipc::Client,
    rt: tokio::runtime::Handle,
    /// Connections this process's abilities made, by the id the app got.
    clients: Mutex<HashMap<u64, ClientConn>>,
    next_local: AtomicU64,
    /// Connect results, for the main thread.
    local_tx: tokio::sync::mpsc::UnboundedSender<Local>,
    /// Bound services' remote objects, by record.
    remotes: Mutex<HashMap<u64, Remote>>,
}

/// A connection an ability of this process made.
struct ClientConn {
    /// The record that made it (it ends with it).
    owner: u64,
    options: OxhConnectOptions,
    /// Once connected: its end, and what the ability manager said of it.
    up: Option<(Arc<Mutex<Proxy>>, ConnectReply)>,
}

// SAFETY: the options' pointer is the app's, used only on the main thread (callbacks) or
// through the functions the ABI says any thread may call.
unsafe impl Send for ClientConn {}

/// A bound service's remote object.
#[derive(Clone, Copy)]
struct Remote {
    callbacks: OxhAbilityCallbacks,
    this: *mut c_void,
    remote: *mut c_void,
}

// SAFETY: the ABI says `on_remote_request` runs on connection threads.
unsafe impl Send for Remote {}

/// What other threads hand the main thread.
enum Local {
    /// A connect call came back.
    ConnectDone {
        local: u64,
        result: Result<(ConnectReply, UnixStream), i32>,
    },
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An element as the C ABI passes it, alive while it is borrowed.
struct ElementArg([CString; 4]);

impl ElementArg {
    fn new(e: &Element) -> Self {
        let c = |s: &str| CString::new(s).unwrap_or_default();
        ElementArg([
            c(""),
            c(&e.bundle_name),
            c(&e.module_name),
            c(&e.ability_name),
        ])
    }

    fn raw(&self) -> OxhElement {
        OxhElement {
            device_id: self.0[0].as_ptr(),
            bundle_name: self.0[1].as_ptr(),
            module_name: self.0[2].as_ptr(),
            ability_name: self.0[3].as_ptr(),
        }
    }
}

impl Link {
    /// A line in hilog (tag `AppHost`): the host's own failures, since its stdio is /dev/null.
    fn log_error(&self, msg: String) {
        let w = oxh_hilog::api::WriteArgs {
            level: oxh_hilog::Level::Error,
            log_type: oxh_hilog::LogType::App,
            domain: 0,
            tag: "AppHost".into(),
            fmt: "%{public}s".into(),
            args: vec![oxh_hilog::LogArg::Str(msg)],
            tid: 0,
        };
        let _: Result<(), _> = self.rt.block_on(self.client.call(
            oxh_hilog::api::SA_ID,
            oxh_hilog::api::WRITE,
            &w,
        ));
    }

    fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        code: u32,
        req: &Req,
    ) -> Result<Resp, oxh_ipc::IpcError> {
        self.rt.block_on(self.client.call(api::SA_ID, code, req))
    }
}

/// One ability instance's context, handed to the library as [`OxhHost::ctx`].
struct InstanceCtx {
    link: Arc<Link>,
    record: u64,
}

fn code_of(e: &oxh_ipc::IpcError) -> i32 {
    e.code().unwrap_or(crate::code::INTERNAL)
}

unsafe extern "C" fn host_start_ability(ctx: *mut c_void, want: *const OxhWant) -> i32 {
    // SAFETY: ctx is the InstanceCtx the host gave this instance; it outlives the instance.
    let Some(c) = (unsafe { ctx.cast::<InstanceCtx>().as_ref() }) else {
        return crate::code::CONTEXT_NOT_EXIST;
    };
    // SAFETY: the ABI's contract for `want`.
    let want = match unsafe { read_want(want) } {
        Ok(w) => w,
        Err(_) => return crate::code::INVALID_PARAM,
    };
    match c
        .link
        .call::<_, api::StartReply>(api::START_ABILITY, &StartArgs { want, wait: false })
    {
        Ok(_) => 0,
        Err(e) => code_of(&e),
    }
}

unsafe extern "C" fn host_terminate_self(ctx: *mut c_void) -> i32 {
    // SAFETY: as above.
    let Some(c) = (unsafe { ctx.cast::<InstanceCtx>().as_ref() }) else {
        return crate::code::CONTEXT_NOT_EXIST;
    };
    match c.link.call::<_, ()>(api::TERMINATE_SELF, &c.record) {
        Ok(()) => 0,
        Err(e) => code_of(&e),
    }
}

unsafe extern "C" fn host_set_continue_state(ctx: *mut c_void, active: i32) -> i32 {
    // SAFETY: as above.
    let Some(c) = (unsafe { ctx.cast::<InstanceCtx>().as_ref() }) else {
        return crate::code::CONTEXT_NOT_EXIST;
    };
    let args = api::ContinueStateArgs {
        record: c.record,
        active: active != 0,
    };
    match c.link.call::<_, ()>(api::SET_CONTINUE_STATE, &args) {
        Ok(()) => 0,
        Err(e) => code_of(&e),
    }
}

unsafe extern "C" fn host_connect(
    ctx: *mut c_void,
    want: *const OxhWant,
    options: *const OxhConnectOptions,
    conn: *mut u64,
) -> i32 {
    // SAFETY: as above.
    let Some(c) = (unsafe { ctx.cast::<InstanceCtx>().as_ref() }) else {
        return crate::code::CONTEXT_NOT_EXIST;
    };
    // SAFETY: the ABI's contract for `want` and `options`.
    let (want, options) = match (unsafe { read_want(want) }, unsafe { options.as_ref() }) {
        (Ok(w), Some(o)) if !conn.is_null() => (w, *o),
        _ => return crate::code::INVALID_PARAM,
    };
    let Ok((mine, theirs)) = UnixStream::pair() else {
        return crate::code::INTERNAL;
    };
    let link = c.link.clone();
    let local = link.next_local.fetch_add(1, Ordering::Relaxed);
    lock(&link.clients).insert(
        local,
        ClientConn {
            owner: c.record,
            options,
            up: None,
        },
    );
    // SAFETY: `conn` is non-null (checked) and the caller's to write.
    unsafe { *conn = local };
    c.link.rt.spawn(async move {
        let r = link
            .client
            .call_with_fd::<_, ConnectReply>(
                api::SA_ID,
                api::CONNECT,
                &ConnectArgs { want },
                theirs.as_fd(),
            )
            .await;
        // The daemon holds its own copy now (or refused it).
        drop(theirs);
        let result = r.map(|rep| (rep, mine)).map_err(|e| code_of(&e));
        let _ = link.local_tx.send(Local::ConnectDone { local, result });
    });
    0
}

unsafe extern "C" fn host_disconnect(ctx: *mut c_void, conn: u64) -> i32 {
    // SAFETY: as above.
    let Some(c) = (unsafe { ctx.cast::<InstanceCtx>().as_ref() }) else {
        return crate::code::CONTEXT_NOT_EXIST;
    };
    let gone = {
        let mut g = lock(&c.link.clients);
        match g.get(&conn) {
            Some(cc) if cc.owner == c.record => g.remove(&conn),
            _ => None,
        }
    };
    match gone {
        // Its socket closes with it: the service's host sees the end.
        Some(cc) => {
            release(&cc.options);
            0
        }
        None => crate::code::INTERNAL,
    }
}

unsafe extern "C" fn host_send_request(
    ctx: *mut c_void,
    conn: u64,
    code: u32,
    data: *const u8,
    len: usize,
    reply: *const OxhReply,
) -> i32 {
    // SAFETY: as above.
    let Some(c) = (unsafe { ctx.cast::<InstanceCtx>().as_ref() }) else {
        return crate::code::CONTEXT_NOT_EXIST;
    };
    let proxy = lock(&c.link.clients)
        .get(&conn)
        .and_then(|cc| cc.up.as_ref().map(|(p, _)| p.clone()));
    let Some(proxy) = proxy else {
        return crate::code::INTERNAL;
    };
    let bytes = if data.is_null() || len == 0 {
        &[][..]
    } else {
        // SAFETY: the ABI: `data` is valid for `len` bytes during the call.
        unsafe { std::slice::from_raw_parts(data, len) }
    };
    let r = lock(&proxy).send_request(code, bytes);
    match r {
        Ok(answer) => {
            // SAFETY: the ABI: `reply` is null or valid during the call.
            if let Some(rp) = unsafe { reply.as_ref() } {
                // SAFETY: `write` copies from our buffer, valid during the call.
                unsafe { (rp.write)(rp.ctx, answer.as_ptr(), answer.len()) };
            }
            0
        }
        Err(e) => e.code(),
    }
}

/// The client's options are done with.
fn release(o: &OxhConnectOptions) {
    if let Some(f) = o.release {
        // SAFETY: the ABI: called once, last.
        unsafe { f(o.data) };
    }
}

/// Reads the control socket: each packet hands over one connection to serve.
fn control_loop(link: Arc<Link>, sock: OwnedFd) {
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); api::MAX_CONTROL_MESSAGE];
    loop {
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own.
        if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let mut fds = Vec::new();
        let n = match oxh_kal::recv_with_fds(sock.as_fd(), &mut buf, &mut fds) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        // SAFETY: recvmsg initialised the first `n` bytes.
        let msg = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        let Ok(HostControl::Serve {
            record,
            conn,
            client,
        }) = oxh_ipc::decode::<HostControl>(msg)
        else {
            continue;
        };
        let mut fds = fds.into_iter();
        let Some(fd) = fds.next() else { continue };
        serve_connection(&link, record, conn, client, fd);
    }
}

/// Serves one client of a bound service on a thread of its own, then reports its end.
fn serve_connection(link: &Arc<Link>, record: u64, conn: u64, client: Peer, fd: OwnedFd) {
    let remote = lock(&link.remotes).get(&record).copied();
    let for_thread = link.clone();
    let run = move || {
        let link = for_thread;
        let sock = UnixStream::from(fd);
        // The kernel's word on who is at the other end, beside the ability manager's: the
        // client itself made a local connection's socket; the daemon made a remote one's
        // (its relay's end), and the client is the ability manager's word alone.
        let remote_client = !client.device_id.is_empty();
        let made_by = |cred: &oxh_kal::PeerCred| {
            if remote_client {
                link.client
                    .server_cred()
                    .is_some_and(|d| (d.pid, d.uid) == (cred.pid, cred.uid))
                    && client.pid == 0
            } else {
                cred.uid == client.uid && cred.pid == client.pid
            }
        };
        match (remote, oxh_kal::peer_cred(sock.as_fd())) {
            (Some(r), Ok(cred)) if made_by(&cred) => {
                let bundle = CString::new(client.bundle).unwrap_or_default();
                let caller = OxhCaller {
                    pid: client.pid,
                    uid: client.uid,
                    token_id: client.token_id,
                    bundle_name: bundle.as_ptr(),
                };
                let why = remote::serve(sock, |code, data| {
                    let Some(f) = r.callbacks.on_remote_request else {
                        return Err(oxh_ipc::RemoteError::new(
                            crate::code::INTERNAL,
                            "the service has no onRemoteRequest",
                        ));
                    };
                    let mut out: Vec<u8> = Vec::new();
                    let reply = OxhReply::to_vec(&mut out);
                    // SAFETY: the ABI: the remote object is live until onDisconnect, which
                    // runs only after this connection's end is reported.
                    let rc = unsafe {
                        f(
                            r.this,
                            r.remote,
                            &caller,
                            code,
                            data.as_ptr(),
                            data.len(),
                            &reply,
                        )
                    };
                    if rc == 0 {
                        Ok(out)
                    } else {
                        Err(oxh_ipc::RemoteError::new(
                            rc,
                            format!("the remote object refused request {code}"),
                        ))
                    }
                });
                if let Some(why) = why {
                    link.log_error(format!("connection {conn}: {why}"));
                }
            }
            (None, _) => link.log_error(format!(
                "connection {conn}: the service has no remote object (its onConnect returned none)"
            )),
            (Some(_), _) => link.log_error(format!(
                "connection {conn}: its socket is not the connecting client's"
            )),
        }
        let _ = link.call::<_, ()>(api::CONNECTION_CLOSED, &conn);
    };
    if let Err(e) = std::thread::Builder::new()
        .name(format!("conn-{conn}"))
        .spawn(run)
    {
        // The closure (and its socket) is gone with the error: the client sees the end,
        // and the ability manager must too.
        link.log_error(format!("connection {conn}: no thread for it: {e}"));
        let _ = link.call::<_, ()>(api::CONNECTION_CLOSED, &conn);
    }
}

/// A SOCK_SEQPACKET socketpair: the host's control socket and the end for the daemon.
fn control_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: socketpair writes two descriptors into `fds`, which are then ours.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

struct Instance {
    callbacks: OxhAbilityCallbacks,
    this: *mut c_void,
    /// Kept alive while the instance lives: the library holds pointers to both.
    _host: Box<OxhHost>,
    _ctx: Box<InstanceCtx>,
}

/// Runs the host: attach, then serve lifecycle steps until the daemon goes away.
pub fn run() -> Result<(), HostError> {
    let name = std::env::args().next().unwrap_or_default();
    set_process_name(&name);
    let socket = std::env::var(layout::IPC_SOCKET_ENV)
        .map_err(|_| HostError::Setup(format!("{} is not set", layout::IPC_SOCKET_ENV)))?;
    let proc: u64 = std::env::var(layout::PROC_ENV)
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| HostError::Setup(format!("{} is not set", layout::PROC_ENV)))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| HostError::Setup(e.to_string()))?;
    let client = rt.block_on(oxh_ipc::Client::connect(std::path::Path::new(&socket)))?;
    let (local_tx, mut local_rx) = tokio::sync::mpsc::unbounded_channel();
    let link = Arc::new(Link {
        client,
        rt: rt.handle().clone(),
        clients: Mutex::new(HashMap::new()),
        next_local: AtomicU64::new(1),
        local_tx,
        remotes: Mutex::new(HashMap::new()),
    });
    let mut sub = link.client.subscribe();
    let (control, theirs) = control_pair().map_err(|e| HostError::Setup(e.to_string()))?;
    rt.block_on(link.client.call_with_fd::<_, ()>(
        api::SA_ID,
        api::ATTACH,
        &AttachArgs {
            proc,
            sub: sub.id(),
        },
        theirs.as_fd(),
    ))?;
    drop(theirs);
    {
        let link = link.clone();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || control_loop(link, control))
            .map_err(|e| HostError::Setup(e.to_string()))?;
    }
    // A release device checks each library's code signature before it loads it.
    let debuggable: Option<String> = rt
        .block_on(link.client.call(
            oxh_param::api::SA_ID,
            oxh_param::api::GET,
            &oxh_param::api::GetArgs {
                key: codesign::DEBUGGABLE_PARAM.into(),
            },
        ))
        .ok();
    let mut libs = Libs {
        loaded: HashMap::new(),
        enforce_code_sign: codesign::enforced(debuggable.as_deref()),
        refused: false,
    };
    // C apps call the NDK (OH_LOG_Print ...): loaded first, its symbols global, so an app
    // library finds them whether or not it linked -loxh_ndk.
    let _ndk = load_ndk(&link);
    let mut instances: HashMap<u64, Instance> = HashMap::new();
    loop {
        let next = rt.block_on(async {
            tokio::select! {
                b = sub.recv() => b.map(Ok),
                l = local_rx.recv() => l.map(Err),
            }
        });
        let bytes = match next {
            None => break,
            Some(Err(local)) => {
                on_local(&link, local);
                continue;
            }
            Some(Ok(bytes)) => bytes,
        };
        let (record, element, entry, step) = match oxh_ipc::decode::<HostEvent>(&bytes) {
            Ok(HostEvent::Schedule {
                record,
                element,
                entry,
                step,
            }) => (record, element, entry, *step),
            Ok(HostEvent::ConnectionLost { conn }) => {
                connection_lost(&link, conn);
                continue;
            }
            Err(_) => continue,
        };
        let done = step.name();
        let mut key = None;
        let mut continued = None;
        match step {
            Step::Continue => {
                let Some(i) = instances.get(&record) else {
                    continue;
                };
                continued = Some(on_continue(i));
            }
            Step::AcceptWant { want } => {
                match accept_want(&mut libs, &element.ability_name, &entry, &want) {
                    Ok(k) => key = Some(k),
                    Err(e) => {
                        link.log_error(format!("{name}: {e}"));
                        refused_ends_process(&libs);
                        continue;
                    }
                }
            }
            Step::Create { want, reason } => {
                match create(
                    &link,
                    &mut libs,
                    record,
                    &element.ability_name,
                    &entry,
                    &want,
                    reason as i32,
                ) {
                    Ok(i) => {
                        instances.insert(record, i);
                    }
                    Err(e) => {
                        // Not reporting the step lets its deadline end the process: the
                        // caller is told by the ability manager.
                        link.log_error(format!(
                            "{name}: {} cannot be created: {e}",
                            element.ability_name
                        ));
                        refused_ends_process(&libs);
                        continue;
                    }
                }
            }
            other => {
                let Some(i) = instances.get(&record) else {
                    continue;
                };
                if matches!(other, Step::Disconnect { .. } | Step::Destroy) {
                    // No connection thread uses it any more (each reported its end first).
                    lock(&link.remotes).remove(&record);
                }
                if let Some(remote) = run_step(i, &other) {
                    lock(&link.remotes).insert(
                        record,
                        Remote {
                            callbacks: i.callbacks,
                            this: i.this,
                            remote,
                        },
                    );
                }
                if matches!(other, Step::Destroy) {
                    instances.remove(&record);
                    // Its own connections end with it, without callbacks.
                    let mine: Vec<ClientConn> = {
                        let mut g = lock(&link.clients);
                        let ids: Vec<u64> = g
                            .iter()
                            .filter(|(_, c)| c.owner == record)
                            .map(|(id, _)| *id)
                            .collect();
                        ids.iter().filter_map(|id| g.remove(id)).collect()
                    };
                    for c in mine {
                        release(&c.options);
                    }
                }
            }
        }
        let _ = link.call::<_, ()>(
            api::STEP_DONE,
            &StepDone {
                record,
                step: done.into(),
                key,
                continued,
            },
        );
    }
    Ok(())
}

/// A connect came back: the client's `onConnect` or `onFailed`, on the main thread.
fn on_local(link: &Link, local: Local) {
    let Local::ConnectDone { local, result } = local;
    let mut g = lock(&link.clients);
    let Some(cc) = g.get_mut(&local) else {
        // Disconnected meanwhile: its socket closes here.
        return;
    };
    let o = cc.options;
    match result {
        Ok((rep, sock)) => {
            let e = ElementArg::new(&rep.element);
            cc.up = Some((Arc::new(Mutex::new(Proxy::new(sock))), rep));
            drop(g);
            if let Some(f) = o.on_connect {
                // SAFETY: the ABI: the options' callbacks run on the main thread.
                unsafe { f(o.data, local, &e.raw()) };
            }
        }
        Err(code) => {
            g.remove(&local);
            drop(g);
            if let Some(f) = o.on_failed {
                // SAFETY: as above.
                unsafe { f(o.data, local, code) };
            }
            release(&o);
        }
    }
}

/// The service of a connection went away: the client's `onDisconnect`.
fn connection_lost(link: &Link, conn: u64) {
    let gone = {
        let mut g = lock(&link.clients);
        let id = g
            .iter()
            .find(|(_, c)| c.up.as_ref().is_some_and(|(_, r)| r.conn == conn))
            .map(|(id, _)| *id);
        id.and_then(|id| g.remove(&id).map(|c| (id, c)))
    };
    let Some((local, c)) = gone else { return };
    if let (Some(f), Some((_, rep))) = (c.options.on_disconnect, c.up.as_ref()) {
        let e = ElementArg::new(&rep.element);
        // SAFETY: as above.
        unsafe { f(c.options.data, local, &e.raw()) };
    }
    release(&c.options);
}

fn load_ndk(link: &Link) -> Vec<libloading::os::unix::Library> {
    let mut v = Vec::new();
    for lib in layout::NDK_LIBS {
        let path = std::path::Path::new(layout::NDK_DIR).join(lib);
        if !path.exists() {
            // Each may use the ones before it: without this one, the rest cannot load.
            break;
        }
        // SAFETY: the NDK's initialisers are ours; RTLD_GLOBAL makes its symbols visible to
        // the libraries loaded after it.
        match unsafe {
            libloading::os::unix::Library::open(
                Some(&path),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
            )
        } {
            Ok(l) => v.push(l),
            Err(e) => {
                link.log_error(format!("{}: {e}", path.display()));
                break;
            }
        }
    }
    v
}

/// The app's libraries, loaded once each, and whether their code signatures are enforced.
struct Libs {
    loaded: HashMap<String, libloading::Library>,
    enforce_code_sign: bool,
    /// A library was refused for its code signature.
    refused: bool,
}

/// A library refused for its code signature ends the app process, as a failed mapping
/// does on OpenHarmony: the ability manager sees it die and tells the caller at once.
fn refused_ends_process(libs: &Libs) {
    if libs.refused {
        std::process::exit(1);
    }
}

/// Loads `entry` from the bundle's `libs/<abi>/`: as it is on a debuggable device; on a
/// release one only from a sealed copy of the bytes whose code signature verified.
fn load(libs: &mut Libs, entry: &str) -> Result<libloading::Library, String> {
    let rel = format!("libs/{}/{entry}", abi::abi_dir());
    let path = format!("{}/{rel}", layout::CODE_DIR);
    if !libs.enforce_code_sign {
        // SAFETY: loading the app's own library runs its initialisers, in its own sandbox.
        return unsafe { libloading::Library::new(&path) }.map_err(|e| format!("{path}: {e}"));
    }
    let fd = codesign::verified_copy(
        std::path::Path::new(layout::CODE_DIR),
        std::path::Path::new(&path),
        &rel,
    )
    .map_err(|e| {
        libs.refused = true;
        format!(
            "refused to load {path} ({}=0): {e}",
            codesign::DEBUGGABLE_PARAM
        )
    })?;
    // SAFETY: as above; the loader maps the sealed copy, which nothing can change.
    let lib = unsafe { libloading::Library::new(codesign::fd_path(&fd)) }
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(lib)
}

/// The callback table of `ability` in the library `entry` (loaded once).
fn table(libs: &mut Libs, ability: &str, entry: &str) -> Result<OxhAbilityCallbacks, String> {
    if !abi::is_native_entry(entry) {
        return Err(format!(
            "srcEntry {entry:?} is not a native library (ArkTS needs the Ark runtime, which oxharmony does not have)"
        ));
    }
    if !libs.loaded.contains_key(entry) {
        let lib = load(libs, entry)?;
        libs.loaded.insert(entry.to_string(), lib);
    }
    let lib = libs.loaded.get(entry).ok_or("library vanished")?;
    // SAFETY: the symbol has the ABI's type by the ABI's contract.
    let entry_fn: libloading::Symbol<EntryFn> =
        unsafe { lib.get(abi::ENTRY_SYMBOL.as_bytes()) }.map_err(|e| format!("{entry}: {e}"))?;
    let cname = CString::new(ability).map_err(|e| e.to_string())?;
    // SAFETY: calling the library's entry with a NUL-terminated name.
    let table = unsafe { entry_fn(cname.as_ptr()) };
    if table.is_null() {
        return Err(format!("{entry} has no ability {ability}"));
    }
    // SAFETY: the entry returns a pointer to a static table of the version it declares.
    unsafe { OxhAbilityCallbacks::read(table) }.ok_or_else(|| {
        // SAFETY: non-null, and every version starts with its version.
        let v = unsafe { std::ptr::addr_of!((*table).version).read() };
        format!(
            "{entry} speaks ABI {v} (this host: {}..={})",
            abi::MIN_ABI_VERSION,
            abi::ABI_VERSION
        )
    })
}

/// `onAcceptWant(want)`: the instance key a `specified` ability names for a start.
fn accept_want(libs: &mut Libs, ability: &str, entry: &str, want: &Want) -> Result<String, String> {
    let callbacks = table(libs, ability, entry)?;
    let mut out: Vec<u8> = Vec::new();
    if let Some(f) = callbacks.on_accept_want {
        let w = WantArg::new(want);
        let reply = OxhReply::to_vec(&mut out);
        // SAFETY: the ABI: want and reply live through the call.
        unsafe { f(&w.raw(), &reply) };
    }
    String::from_utf8(out).map_err(|_| format!("{ability}'s onAcceptWant key is not UTF-8"))
}

fn create(
    link: &Arc<Link>,
    libs: &mut Libs,
    record: u64,
    ability: &str,
    entry: &str,
    want: &Want,
    reason: i32,
) -> Result<Instance, String> {
    let callbacks = table(libs, ability, entry)?;
    let mut ctx = Box::new(InstanceCtx {
        link: link.clone(),
        record,
    });
    let host = Box::new(OxhHost {
        version: abi::ABI_VERSION,
        ctx: (&mut *ctx as *mut InstanceCtx).cast(),
        start_ability: host_start_ability,
        terminate_self: host_terminate_self,
        connect_service_extension: host_connect,
        disconnect_service_extension: host_disconnect,
        send_request: host_send_request,
        set_mission_continue_state: host_set_continue_state,
    });
    let w = WantArg::new(want);
    let raw = w.raw();
    let this = match callbacks.on_create {
        // SAFETY: the ABI: host and want live through the call; host until on_destroy.
        Some(f) => unsafe { f(&*host, &raw, reason) },
        None => std::ptr::null_mut(),
    };
    if this.is_null() && callbacks.on_create.is_some() {
        return Err(format!("{ability}'s onCreate failed"));
    }
    Ok(Instance {
        callbacks,
        this,
        _host: host,
        _ctx: ctx,
    })
}

/// Runs a step; for `onConnect`, returns the remote object the service gave.
fn run_step(i: &Instance, step: &Step) -> Option<*mut c_void> {
    let c = &i.callbacks;
    // SAFETY (each call): `this` is what on_create returned; Wants live through the call.
    unsafe {
        match step {
            Step::NewWant { want } => {
                let w = WantArg::new(want);
                if let Some(f) = c.on_new_want {
                    f(i.this, &w.raw());
                }
            }
            Step::Foreground => c.on_foreground.map_or((), |f| f(i.this)),
            Step::Background => c.on_background.map_or((), |f| f(i.this)),
            Step::Destroy => c.on_destroy.map_or((), |f| f(i.this)),
            Step::Request { want, start_id } => {
                let w = WantArg::new(want);
                if let Some(f) = c.on_request {
                    f(i.this, &w.raw(), *start_id as i32);
                }
            }
            Step::Connect { want } => {
                let w = WantArg::new(want);
                return c
                    .on_connect
                    .map(|f| f(i.this, &w.raw()))
                    .filter(|r| !r.is_null());
            }
            Step::Disconnect { want } => {
                let w = WantArg::new(want);
                if let Some(f) = c.on_disconnect {
                    f(i.this, &w.raw());
                }
            }
            Step::Create { .. } | Step::AcceptWant { .. } | Step::Continue => {}
        }
    }
    None
}

/// `onContinue(wantParam)`: the app's answer and the wantParam it filled (postcard of its
/// parameters). A library of ABI 1, or one without `on_continue`, answers REJECT: it did not
/// say what to carry.
fn on_continue(i: &Instance) -> api::ContinueReport {
    let reject = api::ContinueReport {
        result: api::ON_CONTINUE_REJECT,
        want_param: Vec::new(),
    };
    let Some(f) = i.callbacks.on_continue.filter(|_| i.callbacks.version >= 2) else {
        return reject;
    };
    let w = WantArg::new(&Want::default());
    let (mut data, mut json) = (Vec::new(), Vec::new());
    let (rd, rj) = (OxhReply::to_vec(&mut data), OxhReply::to_vec(&mut json));
    // SAFETY: the ABI: `this` is what on_create returned; the Want and replies live through
    // the call.
    let result = unsafe { f(i.this, &w.raw(), &rd, &rj) };
    let filled = if !data.is_empty() {
        oxh_ipc::decode::<Want>(&data).map_err(|e| e.to_string())
    } else if !json.is_empty() {
        want_from_json(&String::from_utf8_lossy(&json))
    } else {
        Ok(Want::default())
    };
    match filled {
        Ok(w) => api::ContinueReport {
            result,
            want_param: oxh_ipc::encode(&w.parameters),
        },
        Err(_) => reject,
    }
}

/// Names the process by its bundle, as `ps` shows OpenHarmony's apps (the kernel keeps 15
/// bytes: the end of the name, as appspawn does).
fn set_process_name(name: &str) {
    let bytes = name.as_bytes();
    let tail = &bytes[bytes.len().saturating_sub(15)..];
    if let Ok(c) = CString::new(tail) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as *const c_char, 0, 0, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants_cross_as_openharmony_json_both_ways() {
        let mut w = Want::explicit("com.example.notes", "EntryAbility");
        w.parameters.insert("n".into(), WantParam::Int(7));
        w.parameters.insert("on".into(), WantParam::Bool(true));
        w.parameters
            .insert("s".into(), WantParam::String("x".into()));
        w.entities = vec!["entity.system.home".into()];
        let json = want_to_json(&w);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["bundleName"], "com.example.notes");
        assert_eq!(v["parameters"]["n"], 7);
        assert_eq!(v["parameters"]["on"], true);
        assert_eq!(want_from_json(&json).unwrap(), w);
        assert!(want_from_json(r#"{"bundleName": 3}"#).is_err());
        assert!(want_from_json(r#"{"parameters": {"a": [1]}}"#).is_err());
        assert!(want_from_json("[]").is_err());
        let min = want_from_json(r#"{"bundleName":"a.b","abilityName":"M"}"#).unwrap();
        assert_eq!(min, Want::explicit("a.b", "M"));
    }
}

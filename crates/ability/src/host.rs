//! The app host: the program every app process runs inside its sandbox. It attaches to the
//! ability manager as the process the spawner started, loads the app's native ability
//! libraries and runs their lifecycle callbacks over the [`crate::abi`] C ABI on its main
//! thread, one at a time, reporting each step when it returns.

use crate::abi::{self, EntryFn, OxhAbilityCallbacks, OxhHost, OxhWant};
use crate::api::{self, AttachArgs, HostEvent, StartArgs, Step, StepDone};
use crate::layout;
use crate::want::{Want, WantParam};
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_void};
use std::sync::Arc;

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

/// What the app's calls need: the IPC client and the runtime that drives it.
struct Link {
    client: oxh_ipc::Client,
    rt: tokio::runtime::Handle,
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
    let link = Arc::new(Link {
        client,
        rt: rt.handle().clone(),
    });
    let mut sub = link.client.subscribe();
    link.call::<_, ()>(
        api::ATTACH,
        &AttachArgs {
            proc,
            sub: sub.id(),
        },
    )?;
    let mut libs: HashMap<String, libloading::Library> = HashMap::new();
    // C apps call the NDK (OH_LOG_Print ...): loaded first, its symbols global, so an app
    // library finds them whether or not it linked -loxh_ndk.
    let _ndk = load_ndk(&link);
    let mut instances: HashMap<u64, Instance> = HashMap::new();
    while let Some(bytes) = rt.block_on(sub.recv()) {
        let Ok(HostEvent::Schedule {
            record,
            element,
            entry,
            step,
        }) = oxh_ipc::decode::<HostEvent>(&bytes)
        else {
            continue;
        };
        let done = step.name();
        match step {
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
                        continue;
                    }
                }
            }
            other => {
                let Some(i) = instances.get(&record) else {
                    continue;
                };
                run_step(i, &other);
                if matches!(other, Step::Destroy) {
                    instances.remove(&record);
                }
            }
        }
        let _ = link.call::<_, ()>(
            api::STEP_DONE,
            &StepDone {
                record,
                step: done.into(),
            },
        );
    }
    Ok(())
}

fn load_ndk(link: &Link) -> Vec<libloading::os::unix::Library> {
    let mut v = Vec::new();
    for lib in layout::NDK_LIBS {
        let path = std::path::Path::new(layout::NDK_DIR).join(lib);
        if !path.exists() {
            continue;
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
            Err(e) => link.log_error(format!("{}: {e}", path.display())),
        }
    }
    v
}

fn create(
    link: &Arc<Link>,
    libs: &mut HashMap<String, libloading::Library>,
    record: u64,
    ability: &str,
    entry: &str,
    want: &Want,
    reason: i32,
) -> Result<Instance, String> {
    if !abi::is_native_entry(entry) {
        return Err(format!(
            "srcEntry {entry:?} is not a native library (ArkTS needs the Ark runtime, which oxharmony does not have)"
        ));
    }
    if !libs.contains_key(entry) {
        let path = format!("{}/libs/{}/{entry}", layout::CODE_DIR, abi::abi_dir());
        // SAFETY: loading the app's own library runs its initialisers, in its own sandbox.
        let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| format!("{path}: {e}"))?;
        libs.insert(entry.to_string(), lib);
    }
    let lib = libs.get(entry).ok_or("library vanished")?;
    // SAFETY: the symbol has the ABI's type by the ABI's contract.
    let entry_fn: libloading::Symbol<EntryFn> =
        unsafe { lib.get(abi::ENTRY_SYMBOL.as_bytes()) }.map_err(|e| format!("{entry}: {e}"))?;
    let cname = CString::new(ability).map_err(|e| e.to_string())?;
    // SAFETY: calling the library's entry with a NUL-terminated name.
    let table = unsafe { entry_fn(cname.as_ptr()) };
    // SAFETY: the entry returns null or a pointer to a static table.
    let callbacks =
        *unsafe { table.as_ref() }.ok_or(format!("{entry} has no ability {ability}"))?;
    if callbacks.version != abi::ABI_VERSION {
        return Err(format!(
            "{entry} speaks ABI {} (this host: {})",
            callbacks.version,
            abi::ABI_VERSION
        ));
    }
    let mut ctx = Box::new(InstanceCtx {
        link: link.clone(),
        record,
    });
    let host = Box::new(OxhHost {
        version: abi::ABI_VERSION,
        ctx: (&mut *ctx as *mut InstanceCtx).cast(),
        start_ability: host_start_ability,
        terminate_self: host_terminate_self,
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

fn run_step(i: &Instance, step: &Step) {
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
            Step::Connect { want, .. } => {
                let w = WantArg::new(want);
                if let Some(f) = c.on_connect {
                    f(i.this, &w.raw());
                }
            }
            Step::Disconnect { .. } => {
                let w = WantArg::new(&Want::default());
                if let Some(f) = c.on_disconnect {
                    f(i.this, &w.raw());
                }
            }
            Step::Create { .. } => {}
        }
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

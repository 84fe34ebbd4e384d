//! The notes example: a native UIAbility in Rust. It logs each lifecycle callback to hilog
//! (tag `Notes`, so a test can read the order), keeps a count of its starts in a KV store of
//! its own, and obeys Want parameters: `crash` (abort in onForeground, to show a fault
//! record), `hang` (never return from onForeground, to show the 5 s deadline) and `probe`
//! (try, from inside the sandbox, what an app must not be able to do, and log each result),
//! and `sync` (sync its KV store, which needs DISTRIBUTED_DATASYNC: the log says the result).
//! `connect` connects to the counter example's service and calls its remote object (each
//! answer logged as `counter <answer>`), or, with `connect_to` = `bundle/ability`, to that
//! ability; `connect_on` = a networkId connects to it on that device (the Want's deviceId:
//! its calls run there, which needs DISTRIBUTED_DATASYNC); `disconnect` ends the connection. With `bench_calls` = N it then times N calls
//! of the remote object and N calls of the daemon (a parameter read) from the same thread,
//! and logs `bench remote_p50_us=.. remote_p99_us=.. ipc_p50_us=.. ipc_p99_us=..`.
//! `dfs_write` = `name=text` writes the text to `name` in its distributed files
//! (`/data/storage/el2/distributedfiles`, merged across trusted devices) and `dfs_read` = `name`
//! reads one back, each logged as `dfs write|read name=<text or error>`. `dfs_copy` = a file
//! URI with a networkId copies that file from the peer (fs.copy) into
//! `/data/storage/el2/base/copied_<file name>` and logs `dfs copy <uri>=ok <its text>` or
//! `dfs copy <uri>=error <code> ...`.
//! `start_on` = a networkId starts its NoteAbility on that device (startAbility with the
//! Want's deviceId, which needs DISTRIBUTED_DATASYNC) and logs `remoteStart=<0 or code>`.
//!
//! Continuation: the note being edited is the Want parameter `note` (of the start, or of a
//! later start's onNewWant). `onContinue` puts it in the wantParam and answers AGREE, or what
//! the parameter `continue` says (`reject`, `mismatch`); `continue_keep` = true asks to keep
//! the source mission (supportContinueSourceExit false). Created with launchReason
//! CONTINUATION, it logs `continued note=<the note>`. `continue_state` = `inactive` or
//! `active` (onNewWant) calls setMissionContinueState and logs `continueState=<0 or code>`.
//! `continue_mission` = a mission id with `continue_to` = a networkId: the app itself asks
//! to move that mission (continueMission, a system API) and logs `continueMission=<0 or code>`.
//! `continue_create_delay_ms` = N is carried in the wantParam too: the target's onCreate
//! then takes N ms (at most 5000) after logging, so a test can cut the link while the
//! target's instance is pending.

use oxh_sdk::Device;
use oxh_sdk::ability::{
    Ability, ConnectOptions, Context, ContinueState, Element, LaunchReason, OnContinueResult,
    RemoteProxy, Want, WantParam, WantParams,
};
use oxh_sdk::hilog::LogArg;
use oxh_sdk::kv::{KVManager, Options};

/// The hilog domain of this app.
const DOMAIN: u32 = 0x0001;

/// One instance of an ability of this app.
pub struct Notes {
    name: &'static str,
    dev: Option<Device>,
    crash: bool,
    hang: bool,
    probe: bool,
    connect_at_start: bool,
    bench_calls: u32,
    kv: Option<oxh_sdk::kv::SingleKVStore>,
    /// The connection to the counter service, once asked for.
    conn: Option<u64>,
    /// What to connect to instead of the counter (`connect_to`).
    connect_to: Option<Want>,
    /// The device to connect on (`connect_on`; empty: this one).
    connect_device: String,
    /// The note being edited (`note`), carried by onContinue.
    note: String,
    /// What onContinue answers (`continue`: agree, reject, mismatch).
    on_continue: OnContinueResult,
    /// Keep the source mission after a continuation (`continue_keep`).
    keep_source: bool,
    /// How long the target's onCreate takes (`continue_create_delay_ms`).
    create_delay_ms: i64,
    /// A file to write in its distributed files, and its text (`dfs_write` = `name=text`).
    dfs_write: Option<(String, String)>,
    /// A file to read from its distributed files (`dfs_read`).
    dfs_read: Option<String>,
    /// A remote file URI to copy here (`dfs_copy`).
    dfs_copy: Option<String>,
}

impl Default for Notes {
    fn default() -> Self {
        Notes {
            name: "",
            dev: None,
            crash: false,
            hang: false,
            probe: false,
            connect_at_start: false,
            bench_calls: 0,
            kv: None,
            conn: None,
            connect_to: None,
            connect_device: String::new(),
            note: String::new(),
            on_continue: OnContinueResult::Agree,
            keep_source: false,
            create_delay_ms: 0,
            dfs_write: None,
            dfs_read: None,
            dfs_copy: None,
        }
    }
}

fn continue_answer(want: &Want) -> Option<OnContinueResult> {
    match want.parameters.get("continue") {
        Some(WantParam::String(s)) if s == "reject" => Some(OnContinueResult::Reject),
        Some(WantParam::String(s)) if s == "mismatch" => Some(OnContinueResult::Mismatch),
        Some(WantParam::String(s)) if s == "agree" => Some(OnContinueResult::Agree),
        _ => None,
    }
}

/// Reads the continuation parameters of a start into `n`.
fn read_continue_params(n: &mut Notes, want: &Want) {
    if let Some(WantParam::String(s)) = want.parameters.get("note") {
        n.note = s.clone();
    }
    if let Some(r) = continue_answer(want) {
        n.on_continue = r;
    }
    if let Some(WantParam::Bool(b)) = want.parameters.get("continue_keep") {
        n.keep_source = *b;
    }
    if let Some(WantParam::Int(ms)) = want.parameters.get("continue_create_delay_ms") {
        n.create_delay_ms = (*ms).clamp(0, 5000);
    }
}

/// The counter service (examples/counter).
fn counter_want() -> Want {
    Want::explicit("com.example.counter", "CounterService")
}

/// Logs a line to hilog as the ability `name` (tag `Notes`).
fn log_as(dev: &Device, name: &str, what: &str) {
    let line = format!("{name} {what}");
    let _ = oxh_sdk::ability::block_on(dev.hilog().info(
        DOMAIN,
        "Notes",
        "%{public}s",
        &[LogArg::Str(line)],
    ));
}

/// The connection's callbacks: on connect, count twice through the remote object, then
/// ask for a code it does not have.
struct CounterConn {
    dev: Option<Device>,
    name: &'static str,
    bench_calls: u32,
}

/// The p50 and p99 of `n` runs of `f`, in microseconds.
fn time_calls(n: u32, mut f: impl FnMut()) -> (u128, u128) {
    let mut v: Vec<u128> = (0..n.max(1))
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_micros()
        })
        .collect();
    v.sort_unstable();
    let at = |p: usize| v[(v.len() * p / 100).min(v.len() - 1)];
    (at(50), at(99))
}

impl CounterConn {
    fn log(&self, what: &str) {
        if let Some(dev) = &self.dev {
            log_as(dev, self.name, what);
        }
    }
}

impl ConnectOptions for CounterConn {
    fn on_connect(&mut self, element: &Element, remote: RemoteProxy) {
        self.log(&format!("onConnect {}", element.ability_name));
        for code in [1, 1, 9] {
            match remote.send_request(code, b"") {
                Ok(a) => self.log(&format!("counter {}", String::from_utf8_lossy(&a))),
                Err(e) => self.log(&format!("counter code {code} error={e}")),
            }
        }
        if let (n @ 1.., Some(dev)) = (self.bench_calls, &self.dev) {
            let (r50, r99) = time_calls(n, || {
                let _ = remote.send_request(2, b"");
            });
            let (i50, i99) = time_calls(n, || {
                let _ = oxh_sdk::ability::block_on(dev.param().get("const.product.name"));
            });
            self.log(&format!(
                "bench remote_p50_us={r50} remote_p99_us={r99} ipc_p50_us={i50} ipc_p99_us={i99}"
            ));
        }
    }
    fn on_disconnect(&mut self, element: &Element) {
        self.log(&format!("onDisconnect {}", element.ability_name));
    }
    fn on_failed(&mut self, code: i32) {
        self.log(&format!("onFailed {code}"));
    }
}

/// `errno` of the last failed call, as its name.
fn errno() -> String {
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(libc::EROFS) => "EROFS".into(),
        Some(libc::ESRCH) => "ESRCH".into(),
        Some(e) => format!("errno {e}"),
        None => "?".into(),
    }
}

/// A file in the app's distributed files (no path out of them: a name with `/` stays in).
fn distributed_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/data/storage/el2/distributedfiles").join(name.replace('/', "_"))
}

/// What the sandbox must refuse, each as `name=result` (`ok` means the app got through).
fn probes() -> Vec<String> {
    let mut v = Vec::new();
    let mut rec = |name: &str, r: Result<(), String>| {
        v.push(format!("{name}={}", r.err().unwrap_or_else(|| "ok".into())));
    };
    let open = |p: &str| {
        std::fs::read(p)
            .map(|_| ())
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT) => "ENOENT".to_string(),
                Some(libc::EACCES) => "EACCES".to_string(),
                Some(libc::EPERM) => "EPERM".to_string(),
                _ => e.to_string(),
            })
    };
    rec("shadow", open("/etc/shadow"));
    rec(
        "other_app",
        open("/data/app/el2/100/base/com.example.helloc"),
    );
    rec(
        "init_root",
        std::fs::read_dir("/proc/1/root")
            .map(|_| ())
            .map_err(|_| errno()),
    );
    // SAFETY: plain system calls whose failure is the point.
    unsafe {
        let parent = libc::getppid();
        rec(
            "ptrace",
            if libc::ptrace(libc::PTRACE_ATTACH, parent, 0, 0) == 0 {
                Ok(())
            } else {
                Err(errno())
            },
        );
        rec(
            "setuid0",
            if libc::setuid(0) == 0 {
                Ok(())
            } else {
                Err(errno())
            },
        );
        // A user namespace through clone(2) (unshare(2) is denied outright).
        let pid = libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        );
        if pid == 0 {
            libc::_exit(0);
        }
        let r = if pid > 0 {
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            Ok(())
        } else {
            Err(errno())
        };
        rec("clone_newuser", r);
        // Threads still start: clone3 says ENOSYS and the C library falls back to clone.
        let t = std::thread::spawn(|| ()).join();
        rec("thread", t.map_err(|_| "panicked".to_string()));
        rec(
            "mount",
            if libc::mount(
                c"none".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ) == 0
            {
                Ok(())
            } else {
                Err(errno())
            },
        );
    }
    rec(
        "write_code",
        std::fs::write("/data/storage/el1/bundle/x", b"x").map_err(|e| match e.raw_os_error() {
            Some(libc::EROFS) => "EROFS".to_string(),
            _ => e.to_string(),
        }),
    );
    rec(
        "write_own",
        std::fs::write("/data/storage/el2/base/probe.txt", b"x").map_err(|e| e.to_string()),
    );
    v
}

impl Notes {
    fn log(&self, _ctx: &Context, what: &str) {
        if let Some(dev) = &self.dev {
            log_as(dev, self.name, what);
        }
    }

    /// fs.copy of the remote file `uri` into its own base dir: `ok <text>` or `error ...`.
    fn dfs_copy(&self, uri: &str) -> String {
        let Some(dev) = &self.dev else {
            return "error no device".into();
        };
        let name = uri.split('?').next().and_then(|p| p.rsplit('/').next());
        let dst = std::path::Path::new("/data/storage/el2/base")
            .join(format!("copied_{}", name.unwrap_or("file")));
        let signal = oxh_sdk::fs::TaskSignal::default();
        let r = oxh_sdk::ability::block_on(dev.fs().copy(uri, &dst, &signal, |_| {}));
        match r {
            Ok(_) => match std::fs::read_to_string(&dst) {
                Ok(t) => format!("ok {t}"),
                Err(e) => format!("error reading the copy: {e}"),
            },
            Err(e) => format!("error {} {e}", e.code().unwrap_or(-1)),
        }
    }

    /// Connects to the counter service (once).
    fn connect(&mut self, ctx: &Context) {
        if self.conn.is_some() {
            return;
        }
        let opts = CounterConn {
            dev: self.dev.clone(),
            name: self.name,
            bench_calls: self.bench_calls,
        };
        let mut want = self.connect_to.clone().unwrap_or_else(counter_want);
        want.device_id = self.connect_device.clone();
        match ctx.connect_service_extension(&want, opts) {
            Ok(c) => self.conn = Some(c),
            Err(e) => self.log(ctx, &format!("connect error={e}")),
        }
    }

    fn disconnect(&mut self, ctx: &Context) {
        if let Some(c) = self.conn.take() {
            let r = ctx.disconnect_service_extension(c);
            self.log(ctx, &format!("disconnect={}", r.err().unwrap_or(0)));
        }
    }

    fn create(&mut self, name: &'static str, ctx: &Context, want: &Want) {
        self.name = name;
        read_continue_params(self, want);
        self.crash = want.parameters.get("crash") == Some(&WantParam::Bool(true));
        self.hang = want.parameters.get("hang") == Some(&WantParam::Bool(true));
        self.probe = want.parameters.get("probe") == Some(&WantParam::Bool(true));
        if let Some(WantParam::String(w)) = want.parameters.get("dfs_write") {
            self.dfs_write = w
                .split_once('=')
                .map(|(n, t)| (n.to_string(), t.to_string()));
        }
        if let Some(WantParam::String(r)) = want.parameters.get("dfs_read") {
            self.dfs_read = Some(r.clone());
        }
        if let Some(WantParam::String(u)) = want.parameters.get("dfs_copy") {
            self.dfs_copy = Some(u.clone());
        }
        self.connect_at_start = want.parameters.get("connect") == Some(&WantParam::Bool(true));
        if let Some(WantParam::Int(n)) = want.parameters.get("bench_calls") {
            self.bench_calls = u32::try_from(*n).unwrap_or(0).min(100_000);
        }
        if let Some(WantParam::String(to)) = want.parameters.get("connect_to") {
            if let Some((b, a)) = to.split_once('/') {
                self.connect_to = Some(Want::explicit(b, a));
            }
            self.connect_at_start = true;
        }
        if let Some(WantParam::String(device)) = want.parameters.get("connect_on") {
            self.connect_device = device.clone();
            self.connect_at_start = true;
        }
        self.dev = ctx.block_on(Device::connect_in_app()).ok();
        if let Some(dev) = &self.dev {
            // Its own KV store: the count of its creations.
            self.kv = ctx.block_on(async {
                let kv = KVManager::new(dev, None)
                    .get_single_kv_store("notes", Options::default())
                    .await
                    .ok()?;
                let n = kv
                    .get(b"starts")
                    .await
                    .ok()
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                kv.put(b"starts", (n + 1).to_string().as_bytes())
                    .await
                    .ok()?;
                Some(kv)
            });
        }
    }
}

impl Notes {
    /// Syncs its store with every device (none are online: the permission check comes first)
    /// and logs `sync=ok` or `sync=<error code>`.
    fn sync(&self, ctx: &Context) {
        let Some(kv) = &self.kv else { return };
        let r = ctx.block_on(kv.sync(
            &[],
            oxh_sdk::kv::SyncMode::PushPull,
            std::time::Duration::from_secs(1),
        ));
        let what = match r {
            Ok(_) => "ok".to_string(),
            Err(e) => e
                .code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| e.to_string()),
        };
        self.log(ctx, &format!("sync={what}"));
    }
}

macro_rules! ability {
    ($ty:ident, $name:literal) => {
        /// An ability of this app (see the crate doc).
        #[derive(Default)]
        pub struct $ty(Notes);

        impl Ability for $ty {
            fn on_accept_want(want: &Want) -> String {
                match want.parameters.get("doc") {
                    Some(WantParam::String(d)) => d.clone(),
                    _ => String::new(),
                }
            }
            fn on_create(&mut self, ctx: &Context, want: &Want, reason: LaunchReason) {
                self.0.create($name, ctx, want);
                self.0.log(ctx, &format!("onCreate {reason:?}"));
                if reason == LaunchReason::Continuation {
                    self.0.log(ctx, &format!("continued note={}", self.0.note));
                    let ms = std::mem::take(&mut self.0.create_delay_ms);
                    std::thread::sleep(std::time::Duration::from_millis(ms as u64));
                }
            }
            fn on_continue(&mut self, want_param: &mut WantParams) -> OnContinueResult {
                want_param.insert("note".into(), WantParam::String(self.0.note.clone()));
                if self.0.create_delay_ms > 0 {
                    want_param.insert(
                        "continue_create_delay_ms".into(),
                        WantParam::Int(self.0.create_delay_ms),
                    );
                }
                if self.0.keep_source {
                    want_param.insert(
                        "ohos.extra.param.key.supportContinueSourceExit".into(),
                        WantParam::Bool(false),
                    );
                }
                let r = self.0.on_continue;
                if let Some(dev) = &self.0.dev {
                    log_as(dev, self.0.name, &format!("onContinue {r:?}"));
                }
                r
            }
            fn on_new_want(&mut self, ctx: &Context, want: &Want) {
                read_continue_params(&mut self.0, want);
                if let (Some(WantParam::Int(m)), Some(WantParam::String(to))) = (
                    want.parameters.get("continue_mission"),
                    want.parameters.get("continue_to"),
                ) && let Some(dev) = &self.0.dev
                {
                    let r = ctx.block_on(dev.ability().continue_mission(*m as i32, to));
                    let code = match r {
                        Ok(()) => 0,
                        Err(e) => e.code().unwrap_or(-1),
                    };
                    self.0.log(ctx, &format!("continueMission={code}"));
                }
                if let Some(WantParam::String(st)) = want.parameters.get("continue_state") {
                    let state = if st == "inactive" {
                        ContinueState::Inactive
                    } else {
                        ContinueState::Active
                    };
                    let r = ctx.set_mission_continue_state(state);
                    self.0
                        .log(ctx, &format!("continueState={}", r.err().unwrap_or(0)));
                }
                if want.parameters.get("sync") == Some(&WantParam::Bool(true)) {
                    self.0.sync(ctx);
                }
                if want.parameters.get("disconnect") == Some(&WantParam::Bool(true)) {
                    self.0.disconnect(ctx);
                }
                if let Some(WantParam::String(device)) = want.parameters.get("connect_on") {
                    self.0.connect_device = device.clone();
                    self.0.connect(ctx);
                }
                if want.parameters.get("connect") == Some(&WantParam::Bool(true)) {
                    self.0.connect(ctx);
                }
                if let Some(WantParam::String(device)) = want.parameters.get("start_on") {
                    // startAbility on another device: NoteAbility there.
                    let mut w = Want::explicit("com.example.notes", "NoteAbility");
                    w.device_id = device.clone();
                    let r = ctx.start_ability(&w);
                    self.0
                        .log(ctx, &format!("remoteStart={}", r.err().unwrap_or(0)));
                }
                let note = match want.parameters.get("note") {
                    Some(WantParam::String(s)) => s.clone(),
                    _ => String::new(),
                };
                self.0.log(ctx, &format!("onNewWant {note}"));
                if want.parameters.get("finish") == Some(&WantParam::Bool(true)) {
                    let _ = ctx.terminate_self();
                }
            }
            fn on_foreground(&mut self, ctx: &Context) {
                self.0.log(ctx, "onForeground");
                if std::mem::take(&mut self.0.connect_at_start) {
                    self.0.connect(ctx);
                }
                if let Some((name, text)) = self.0.dfs_write.take() {
                    let r = std::fs::write(distributed_file(&name), text.as_bytes());
                    let r = r.map(|()| text).unwrap_or_else(|e| format!("error {e}"));
                    self.0.log(ctx, &format!("dfs write {name}={r}"));
                }
                if let Some(name) = self.0.dfs_read.take() {
                    let r = std::fs::read_to_string(distributed_file(&name))
                        .unwrap_or_else(|e| format!("error {e}"));
                    self.0.log(ctx, &format!("dfs read {name}={r}"));
                }
                if let Some(uri) = self.0.dfs_copy.take() {
                    let r = self.0.dfs_copy(&uri);
                    self.0.log(ctx, &format!("dfs copy {uri}={r}"));
                }
                if self.0.probe {
                    for p in probes() {
                        self.0.log(ctx, &format!("probe {p}"));
                    }
                }
                if self.0.crash {
                    std::process::abort();
                }
                while self.0.hang {
                    std::thread::park();
                }
            }
            fn on_background(&mut self, ctx: &Context) {
                self.0.log(ctx, "onBackground");
            }
            fn on_destroy(&mut self, ctx: &Context) {
                self.0.log(ctx, "onDestroy");
            }
        }
    };
}

ability!(EntryAbility, "EntryAbility");
ability!(NoteAbility, "NoteAbility");
ability!(HiddenAbility, "HiddenAbility");
ability!(DocAbility, "DocAbility");

oxh_sdk::export_abilities!(
    ability "EntryAbility" => EntryAbility,
    ability "NoteAbility" => NoteAbility,
    ability "HiddenAbility" => HiddenAbility,
    ability "DocAbility" => DocAbility,
);

//! The C ABI between the app host and a native ability library (docs/DESIGN.md, "Native
//! abilities"). Version [`ABI_VERSION`]; the host also runs libraries built for version
//! [`MIN_ABI_VERSION`] (1), whose callback table ends before `on_continue`: the host reads
//! the fields of version 2 only from a table that declares version 2.
//!
//! A module.json ability whose `srcEntry` names a library (`libnotes.so`) is native: the
//! host loads `/data/storage/el1/bundle/libs/<abi>/<srcEntry>` and calls its
//! [`ENTRY_SYMBOL`] with the ability's name, which returns that ability's
//! [`OxhAbilityCallbacks`] (or null: no such ability in the library). Each callback runs on
//! the host's main thread, one at a time, as OpenHarmony runs lifecycle callbacks on an
//! app's main thread; each must return before the ability manager's deadline for its step.
//!
//! Wants cross as [`OxhWant`]: the same Want as JSON (OpenHarmony's field names, for C) and
//! as postcard bytes (for the Rust SDK, which then needs no JSON parser).
//!
//! Service connections (`connectServiceExtensionAbility`): the service's `on_connect` returns
//! a remote object; the host serves each client's connection (a socket of its own, straight
//! from the client's process) by calling `on_remote_request` on a thread of that
//! connection, concurrently with the lifecycle callbacks, as OpenHarmony runs
//! `onRemoteRequest` on IPC threads. A client connects with [`OxhHost::connect_service_extension`]
//! and is told through its [`OxhConnectOptions`], on its main thread; it calls the remote
//! object with [`OxhHost::send_request`].

use core::ffi::{c_char, c_void};

/// The ABI version (2: `on_continue`, `set_mission_continue_state`); a library built for a
/// version outside [`MIN_ABI_VERSION`]..=[`ABI_VERSION`] is refused.
pub const ABI_VERSION: u32 = 2;
/// The oldest ABI version the host still runs (1: no continuation).
pub const MIN_ABI_VERSION: u32 = 1;
/// The symbol a native ability library exports ([`EntryFn`]).
pub const ENTRY_SYMBOL: &str = "OxhAbility_Entry";

/// A Want, in the two encodings (either may be null when it comes from an app: the host
/// reads whichever is there, postcard first).
#[repr(C)]
#[derive(Debug)]
pub struct OxhWant {
    /// NUL-terminated JSON: `{"bundleName": ..., "abilityName": ..., "parameters": {...}}`.
    pub json: *const c_char,
    /// postcard bytes of [`crate::Want`].
    pub data: *const u8,
    /// Their length.
    pub len: usize,
}

/// What the host offers an ability instance: its context (valid from `on_create` until
/// `on_destroy` returns).
#[repr(C)]
#[derive(Debug)]
pub struct OxhHost {
    /// [`ABI_VERSION`].
    pub version: u32,
    /// The host's handle for this instance; pass it back to the functions below.
    pub ctx: *mut c_void,
    /// `context.startAbility(want)`: 0 once the ability manager accepted it, else an error
    /// code (16000001 ...). Does not wait for the target to reach the foreground.
    pub start_ability: unsafe extern "C" fn(ctx: *mut c_void, want: *const OxhWant) -> i32,
    /// `context.terminateSelf()`: 0, or an error code. The ability's `onBackground` and
    /// `onDestroy` follow after the current callback returns.
    pub terminate_self: unsafe extern "C" fn(ctx: *mut c_void) -> i32,
    /// `context.connectServiceExtensionAbility(want, options)`: 0 and the connection's id in
    /// `*conn`, or an error code. Returns at once; `options` then hears on the main thread
    /// (`on_connect`, or `on_failed`), and the host keeps `options` until it calls its
    /// `release`.
    pub connect_service_extension: unsafe extern "C" fn(
        ctx: *mut c_void,
        want: *const OxhWant,
        options: *const OxhConnectOptions,
        conn: *mut u64,
    ) -> i32,
    /// `context.disconnectServiceExtensionAbility(conn)`: 0, or 16000050 for a connection
    /// this ability does not have. No callback follows but `release`.
    pub disconnect_service_extension: unsafe extern "C" fn(ctx: *mut c_void, conn: u64) -> i32,
    /// `remote.sendRequest(code, data, reply)` on a connected remote object: blocks until the
    /// service answers; 0 with the answer given to `reply.write`, the service's own nonzero
    /// result, or 16000050 once the connection is gone. Any thread may call it.
    pub send_request: unsafe extern "C" fn(
        ctx: *mut c_void,
        conn: u64,
        code: u32,
        data: *const u8,
        len: usize,
        reply: *const OxhReply,
    ) -> i32,
    /// (Version 2.) `context.setMissionContinueState(state)`: 1 ACTIVE, 0 INACTIVE; returns 0,
    /// or an error code. An INACTIVE mission refuses to move to another device (16300501).
    /// Read it only when `version` ≥ 2.
    pub set_mission_continue_state: unsafe extern "C" fn(ctx: *mut c_void, active: i32) -> i32,
}

/// Where an answer's bytes go: `write` copies `len` bytes at `data` (valid during the call
/// only) for `ctx`; it may be called more than once, each call appending.
#[repr(C)]
#[derive(Debug)]
pub struct OxhReply {
    /// The receiver's own pointer.
    pub ctx: *mut c_void,
    /// Appends bytes to the answer.
    pub write: unsafe extern "C" fn(ctx: *mut c_void, data: *const u8, len: usize),
}

impl OxhReply {
    /// A reply that appends to `out` (which must outlive every use of the reply).
    pub fn to_vec(out: &mut Vec<u8>) -> Self {
        OxhReply {
            ctx: (out as *mut Vec<u8>).cast(),
            write: append_to_vec,
        }
    }
}

/// [`OxhReply::to_vec`]'s `write`.
unsafe extern "C" fn append_to_vec(ctx: *mut c_void, data: *const u8, len: usize) {
    // SAFETY: `ctx` is the Vec `to_vec` was given; `data` is valid for `len` bytes.
    unsafe {
        if let Some(v) = ctx.cast::<Vec<u8>>().as_mut()
            && !data.is_null()
        {
            v.extend_from_slice(std::slice::from_raw_parts(data, len));
        }
    }
}

/// An ability, as OpenHarmony's ElementName (NUL-terminated strings, valid during the call).
#[repr(C)]
#[derive(Debug)]
pub struct OxhElement {
    /// The device's networkId (empty: this device).
    pub device_id: *const c_char,
    /// The bundle.
    pub bundle_name: *const c_char,
    /// The module.
    pub module_name: *const c_char,
    /// The ability.
    pub ability_name: *const c_char,
}

/// Who calls a remote object: the kernel's credentials of the client's socket and the
/// access token the ability manager resolved for that process (OpenHarmony's
/// `IPCSkeleton.getCallingUid()`, `getCallingTokenId()` ...). A client on another device
/// (a remote connection, relayed by the daemons) has pid 0, the overflow uid 65534 and the
/// local copy of its synced token, whose permissions `verify` answers as its own device does.
#[repr(C)]
#[derive(Debug)]
pub struct OxhCaller {
    /// Process id.
    pub pid: i32,
    /// User id (an app's: userId * 200000 + its bundle's id).
    pub uid: u32,
    /// AccessTokenID.
    pub token_id: u32,
    /// The caller's bundle (empty for a process that is not an app).
    pub bundle_name: *const c_char,
}

/// A client's `ConnectOptions`: each callback runs on the client's main thread.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OxhConnectOptions {
    /// The client's own pointer, passed back to each callback.
    pub data: *mut c_void,
    /// `onConnect(elementName, remote)`: the connection `conn` is up; call it with
    /// [`OxhHost::send_request`].
    pub on_connect:
        Option<unsafe extern "C" fn(data: *mut c_void, conn: u64, element: *const OxhElement)>,
    /// `onDisconnect(elementName)`: the service went away (it died, or was stopped).
    pub on_disconnect:
        Option<unsafe extern "C" fn(data: *mut c_void, conn: u64, element: *const OxhElement)>,
    /// `onFailed(code)`: the connection could not be made (16000001, 16000004 ...).
    pub on_failed: Option<unsafe extern "C" fn(data: *mut c_void, conn: u64, code: i32)>,
    /// Called once, last: the host no longer holds `data`.
    pub release: Option<unsafe extern "C" fn(data: *mut c_void)>,
}

/// An ability's lifecycle callbacks. Null entries are callbacks the ability does not have.
/// `on_create` returns the instance pointer every later callback receives (null: failed).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OxhAbilityCallbacks {
    /// [`ABI_VERSION`].
    pub version: u32,
    /// `onCreate(want, launchParam.launchReason)`.
    pub on_create: Option<
        unsafe extern "C" fn(
            host: *const OxhHost,
            want: *const OxhWant,
            reason: i32,
        ) -> *mut c_void,
    >,
    /// `onNewWant(want)`.
    pub on_new_want: Option<unsafe extern "C" fn(ability: *mut c_void, want: *const OxhWant)>,
    /// `onForeground()`.
    pub on_foreground: Option<unsafe extern "C" fn(ability: *mut c_void)>,
    /// `onBackground()`.
    pub on_background: Option<unsafe extern "C" fn(ability: *mut c_void)>,
    /// `onDestroy()`; the instance is gone after it.
    pub on_destroy: Option<unsafe extern "C" fn(ability: *mut c_void)>,
    /// A service's `onRequest(want, startId)`.
    pub on_request:
        Option<unsafe extern "C" fn(ability: *mut c_void, want: *const OxhWant, start_id: i32)>,
    /// A service's `onConnect(want)`, for its first connection: returns its remote object
    /// (null: it refuses connections). Later clients share it, until `onDisconnect`.
    pub on_connect:
        Option<unsafe extern "C" fn(ability: *mut c_void, want: *const OxhWant) -> *mut c_void>,
    /// A service's `onDisconnect(want)`: its last client went. The remote object is no longer
    /// used once it returns.
    pub on_disconnect: Option<unsafe extern "C" fn(ability: *mut c_void, want: *const OxhWant)>,
    /// A `specified` ability's `onAcceptWant(want)` (OpenHarmony's AbilityStage callback),
    /// before any instance: writes the instance's key to `key` (nothing written: the key
    /// is empty). A start with a key an instance has goes to that instance (`on_new_want`).
    pub on_accept_want: Option<unsafe extern "C" fn(want: *const OxhWant, key: *const OxhReply)>,
    /// A remote object's `onRemoteRequest(code, data, reply)`, on the calling connection's
    /// thread: returns 0 with the answer written to `reply`, or an error code the client
    /// gets back.
    pub on_remote_request: Option<
        unsafe extern "C" fn(
            ability: *mut c_void,
            remote: *mut c_void,
            caller: *const OxhCaller,
            code: u32,
            data: *const u8,
            len: usize,
            reply: *const OxhReply,
        ) -> i32,
    >,
    /// (Version 2; a table of version 1 ends before it.) A UIAbility's `onContinue(wantParam)`:
    /// the mission is about to move to another device. `want_param` holds the parameters the
    /// app may extend (a Want whose `parameters` are the wantParam); the app writes the
    /// filled Want to `out_data` (postcard, as the Rust SDK does) or to `out_json` (JSON, as
    /// [`OxhWant::json`]); nothing written keeps `want_param` as it was. Returns
    /// `OnContinueResult`: 0 AGREE, 1 REJECT, 2 MISMATCH. Null: the ability refuses (REJECT,
    /// since it did not say what to carry).
    pub on_continue: Option<
        unsafe extern "C" fn(
            ability: *mut c_void,
            want_param: *const OxhWant,
            out_data: *const OxhReply,
            out_json: *const OxhReply,
        ) -> i32,
    >,
}

impl OxhAbilityCallbacks {
    /// The bytes of a version-1 table: everything before `on_continue`.
    pub const V1_SIZE: usize = std::mem::offset_of!(OxhAbilityCallbacks, on_continue);

    /// A table with every callback null, of version `version`.
    pub const fn empty(version: u32) -> Self {
        OxhAbilityCallbacks {
            version,
            on_create: None,
            on_new_want: None,
            on_foreground: None,
            on_background: None,
            on_destroy: None,
            on_request: None,
            on_connect: None,
            on_disconnect: None,
            on_accept_want: None,
            on_remote_request: None,
            on_continue: None,
        }
    }

    /// Reads a library's table: its version first, then as many bytes as that version has
    /// (a version-1 table is shorter). `None` for a version this host does not run.
    ///
    /// # Safety
    /// `table` points to a table of at least the size its `version` field declares.
    pub unsafe fn read(table: *const OxhAbilityCallbacks) -> Option<Self> {
        // SAFETY: the caller's contract: `version` is the table's first field.
        let version = unsafe { std::ptr::addr_of!((*table).version).read() };
        match version {
            // SAFETY: the caller's contract: a version-2 table is whole.
            ABI_VERSION => Some(unsafe { table.read() }),
            MIN_ABI_VERSION => {
                let mut t = Self::empty(version);
                // SAFETY: a version-1 table has the V1_SIZE leading bytes of this layout.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        table.cast::<u8>(),
                        (&mut t as *mut Self).cast::<u8>(),
                        Self::V1_SIZE,
                    )
                };
                Some(t)
            }
            _ => None,
        }
    }
}

/// [`ENTRY_SYMBOL`]'s type: the callbacks of the ability named `ability_name`, or null.
pub type EntryFn = unsafe extern "C" fn(ability_name: *const c_char) -> *const OxhAbilityCallbacks;

/// The ABI directory name of this machine under a HAP's `libs/` (OpenHarmony's names).
pub fn abi_dir() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64-v8a",
        "arm" => "armeabi-v7a",
        other => other,
    }
}

/// True when a `srcEntry` names a native library rather than ArkTS code.
pub fn is_native_entry(src_entry: &str) -> bool {
    src_entry.ends_with(".so") && !src_entry.contains('/') && !src_entry.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_entries_are_bare_library_names() {
        assert!(is_native_entry("libnotes.so"));
        assert!(!is_native_entry("./ets/entryability/EntryAbility.ets"));
        assert!(
            !is_native_entry("../libx.so"),
            "no paths: the host resolves it in libs/<abi>"
        );
        assert!(!is_native_entry("libs/x86_64/libx.so"));
        assert!(!is_native_entry(".so"));
    }

    #[test]
    fn a_version_1_table_is_read_without_the_version_2_fields() {
        unsafe extern "C" fn fg(_: *mut c_void) {}
        unsafe extern "C" fn cont(
            _: *mut c_void,
            _: *const OxhWant,
            _: *const OxhReply,
            _: *const OxhReply,
        ) -> i32 {
            0
        }
        // A version-1 table followed by bytes that are not its own (here: a pointer that
        // must not be taken for `on_continue`).
        let mut v1 = OxhAbilityCallbacks::empty(MIN_ABI_VERSION);
        v1.on_foreground = Some(fg);
        v1.on_continue = Some(cont);
        // SAFETY: a whole table.
        let t = unsafe { OxhAbilityCallbacks::read(&v1) }.expect("v1 runs");
        assert_eq!(t.version, 1);
        assert!(t.on_foreground.is_some() && t.on_continue.is_none());
        let mut v2 = v1;
        v2.version = ABI_VERSION;
        // SAFETY: a whole table.
        let t = unsafe { OxhAbilityCallbacks::read(&v2) }.expect("v2 runs");
        assert!(t.on_continue.is_some());
        let mut bad = OxhAbilityCallbacks::empty(7);
        bad.on_foreground = Some(fg);
        // SAFETY: a whole table.
        assert!(unsafe { OxhAbilityCallbacks::read(&bad) }.is_none());
    }
}

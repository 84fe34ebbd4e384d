//! The C ABI between the app host and a native ability library (docs/DESIGN.md, "Native
//! abilities"). Version [`ABI_VERSION`].
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

use core::ffi::{c_char, c_void};

/// The ABI version; a library built for another one is refused.
pub const ABI_VERSION: u32 = 1;
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
    /// A service's `onConnect(want)`.
    pub on_connect: Option<unsafe extern "C" fn(ability: *mut c_void, want: *const OxhWant)>,
    /// A service's `onDisconnect(want)`.
    pub on_disconnect: Option<unsafe extern "C" fn(ability: *mut c_void, want: *const OxhWant)>,
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
}

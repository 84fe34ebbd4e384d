//! SA ids: OpenHarmony's where the service exists there, documented ones of ours otherwise.
//! Here, in the IPC layer, so that samgr and every SA's contract name the same constant.

/// samgr itself (binder handle 0 in OpenHarmony).
pub const SAMGR: i32 = 0;
/// Ability manager service.
pub const ABILITY_MGR: i32 = 180;
/// Bundle manager service.
pub const BUNDLE_MGR: i32 = 401;
/// Distributed KV data service.
pub const DISTRIBUTED_KV: i32 = 1301;
/// Distributed scheduler.
pub const DISTRIBUTED_SCHED: i32 = 1401;
/// hilog. Not an SA in OpenHarmony (hilogd is a plain daemon): an id of ours, in the DFX
/// range next to hiview (1201) and hidumper (1212).
pub const HILOG: i32 = 1290;
/// Access token manager.
pub const ACCESS_TOKEN: i32 = 3503;
/// System parameters. OpenHarmony's param service is init's, not an SA; its param watcher
/// SA has 3901, which we use for the whole param service.
pub const PARAM: i32 = 3901;
/// Soft bus server.
pub const SOFTBUS: i32 = 4700;
/// Device authentication.
pub const DEVICE_AUTH: i32 = 4701;
/// Device manager.
pub const DEVICE_MANAGER: i32 = 4802;
/// Distributed file daemon.
pub const DISTRIBUTED_FILE: i32 = 5201;

//! The JSON API: what the page reads and changes, each call through the SDK with the
//! console user's shell token; another device's state through the remote SA calls, which that
//! device checks against the same token as synced there.

use crate::server::AppState;
use crate::{
    DEFAULT_USER, MAX_KV_ENTRIES_SHOWN, MAX_LOG_TAIL, MAX_PARAMS_SHOWN, RTT_PROBE_TIMEOUT, limits,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oxh_sdk::Device;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An SDK error as the page shows it: OpenHarmony's code where the daemon gave one.
pub(crate) fn err_json(e: &oxh_sdk::Error) -> Value {
    match e {
        oxh_sdk::Error::Remote(r) => json!({ "error": r.message, "code": r.code }),
        other => json!({ "error": other.to_string() }),
    }
}

fn failed(status: StatusCode, v: Value) -> Response {
    (status, Json(v)).into_response()
}

/// Why a request got no answer of its own.
pub(crate) enum Refusal {
    /// The local daemon is not there (a state the page shows, not a failure).
    Offline(String),
    /// Every live-view slot is taken.
    TooManyStreams,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Offline(e) => failed(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "daemon": "offline", "error": e }),
            ),
            Refusal::TooManyStreams => failed(
                StatusCode::TOO_MANY_REQUESTS,
                json!({ "error": "too many live views open: close a console tab" }),
            ),
        }
    }
}

/// A handler's answer.
pub(crate) type Reply = Result<Response, Refusal>;

/// The daemon, or why not: one connection shared by every request and live view, made
/// again once it closed (a daemon that restarted is simply reached again).
pub(crate) async fn daemon(st: &AppState) -> Result<Arc<Device>, Refusal> {
    st.device().await.map_err(Refusal::Offline)
}

/// `local`, empty or absent: this device; anything else is a networkId.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct On {
    #[serde(default)]
    device: String,
}

impl On {
    fn remote(&self) -> Option<&str> {
        match self.device.as_str() {
            "" | "local" => None,
            n => Some(n),
        }
    }
}

/// The devices as the topology draws them: this one, every trusted one (online or not, with
/// the round trip of a remote call for those online).
pub(crate) async fn devices_json(st: &AppState) -> Value {
    let dev = match st.device().await {
        Ok(d) => d,
        Err(e) => return json!({ "daemon": "offline", "error": e }),
    };
    let dm = dev.device_manager();
    let (local, trusted) = match (dm.local_device_info().await, dm.trusted_devices().await) {
        (Ok(l), Ok(t)) => (l, t),
        (Err(e), _) | (_, Err(e)) => {
            return json!({ "daemon": "offline", "error": e.to_string() });
        }
    };
    // The probes run side by side: the view takes one round trip, not one per device.
    let dev = &dev;
    let peers = futures_util::future::join_all(trusted.into_iter().map(|t| async move {
        let mut v = serde_json::to_value(&t).unwrap_or(Value::Null);
        if let (true, Some(nid)) = (t.online, t.network_id.as_deref()) {
            // The link's round trip, as an app sees it: one remote samgr call there and back.
            let t0 = Instant::now();
            let probe = tokio::time::timeout(
                RTT_PROBE_TIMEOUT,
                dev.samgr().call_remote_raw(
                    nid,
                    oxh_samgr::SAMGR_SA_ID,
                    oxh_samgr::samgr_method::ECHO,
                    oxh_ipc::encode(&Vec::<u8>::new()),
                ),
            )
            .await;
            if let Some(o) = v.as_object_mut() {
                match probe {
                    Ok(Ok(_)) => {
                        o.insert("rttMs".into(), json!(t0.elapsed().as_secs_f64() * 1e3));
                    }
                    Ok(Err(e)) => {
                        o.insert("linkError".into(), err_json(&e));
                    }
                    Err(_) => {
                        o.insert("linkError".into(), json!({ "error": "no answer in 2 s" }));
                    }
                }
            }
        }
        v
    }))
    .await;
    json!({ "daemon": "online", "local": local, "trusted": peers })
}

pub(crate) async fn devices(State(st): State<AppState>) -> impl IntoResponse {
    Json(devices_json(&st).await)
}

/// Devices seen by discovery, to bind.
pub(crate) async fn discover(State(st): State<AppState>) -> Reply {
    let dev = daemon(&st).await?;
    Ok(match dev.device_manager().discover().await {
        Ok(v) => Json(json!({ "seen": v })).into_response(),
        Err(e) => failed(StatusCode::BAD_GATEWAY, err_json(&e)),
    })
}

#[derive(Deserialize)]
pub(crate) struct BindReq {
    id: String,
    #[serde(default)]
    pin: String,
}

/// Binds a discovered device with the PIN it shows.
pub(crate) async fn bind(State(st): State<AppState>, Json(b): Json<BindReq>) -> Reply {
    let dev = daemon(&st).await?;
    Ok(match dev.device_manager().bind(&b.id, &b.pin).await {
        Ok(t) => Json(json!({ "bound": t })).into_response(),
        Err(e) => failed(StatusCode::BAD_REQUEST, err_json(&e)),
    })
}

/// Unbinds a trusted device (by udid or networkId).
pub(crate) async fn unbind(State(st): State<AppState>, Json(b): Json<BindReq>) -> Reply {
    let dev = daemon(&st).await?;
    Ok(match dev.device_manager().unbind(&b.id).await {
        Ok(()) => Json(json!({ "unbound": b.id })).into_response(),
        Err(e) => failed(StatusCode::BAD_REQUEST, err_json(&e)),
    })
}

/// Calls `sa`/`code` here or on the named device, typed.
async fn call<A: serde::Serialize, R: serde::de::DeserializeOwned>(
    dev: &Device,
    on: &On,
    sa: i32,
    code: u32,
    args: &A,
) -> Result<R, oxh_sdk::Error> {
    match on.remote() {
        None => dev.client().call(sa, code, args).await,
        Some(nid) => dev.samgr().call_remote(nid, sa, code, args).await,
    }
}

/// One device's system abilities, bundles and missions (the device panel).
pub(crate) async fn device_detail(State(st): State<AppState>, Query(on): Query<On>) -> Reply {
    let dev = daemon(&st).await?;
    Ok({
        let sas = match on.remote() {
            None => dev.samgr().list().await,
            Some(nid) => dev.samgr().list_remote(nid).await,
        };
        let bundles: Result<Vec<String>, _> = call(
            &dev,
            &on,
            oxh_bundle::api::SA_ID,
            oxh_bundle::api::LIST,
            &DEFAULT_USER,
        )
        .await;
        let missions: Result<Vec<oxh_ability::api::RecordDump>, _> = call(
            &dev,
            &on,
            oxh_ability::api::SA_ID,
            oxh_ability::api::DUMP_MISSIONS,
            &(),
        )
        .await;
        let tokens: Result<Vec<oxh_atm::api::TokenInfo>, _> = call(
            &dev,
            &on,
            oxh_atm::api::SA_ID,
            oxh_atm::api::LIST_TOKENS,
            &(),
        )
        .await;
        let part = |r: Result<Value, oxh_sdk::Error>| r.unwrap_or_else(|e| err_json(&e));
        Json(json!({
            "device": if on.remote().is_some() { on.device.as_str() } else { "local" },
            "sas": part(sas.map(|v| json!(v))),
            "bundles": part(bundles.map(|v| json!(v))),
            "missions": part(missions.map(|v| json!(v))),
        "tokens": part(tokens.map(|v| json!(v))),
        }))
        .into_response()
    })
}

#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    #[serde(default)]
    device: String,
    id: u32,
}

/// One token's permissions and their grant state (`atm dump -t -i ID`).
pub(crate) async fn token(State(st): State<AppState>, Query(q): Query<TokenQuery>) -> Reply {
    let dev = daemon(&st).await?;
    let on = On { device: q.device };
    let r: Result<oxh_atm::api::TokenDetail, _> = call(
        &dev,
        &on,
        oxh_atm::api::SA_ID,
        oxh_atm::api::TOKEN_PERMISSIONS,
        &oxh_atm::api::TokenTarget::Id(q.id),
    )
    .await;
    Ok(match r {
        Ok(d) => Json(json!({ "token": d })).into_response(),
        Err(e) => failed(StatusCode::BAD_GATEWAY, err_json(&e)),
    })
}

#[derive(Deserialize)]
pub(crate) struct ParamQuery {
    #[serde(default)]
    device: String,
    #[serde(default)]
    q: String,
}

/// Parameters whose name contains `q` (all of them, up to a bound, when `q` is empty).
pub(crate) async fn params(State(st): State<AppState>, Query(p): Query<ParamQuery>) -> Reply {
    let dev = daemon(&st).await?;
    Ok({
        let on = On { device: p.device };
        let args = oxh_param::api::ListArgs {
            prefix: String::new(),
            recursive: true,
        };
        let all: Result<Vec<(String, String)>, _> = call(
            &dev,
            &on,
            oxh_param::api::SA_ID,
            oxh_param::api::LIST,
            &args,
        )
        .await;
        match all {
            Ok(all) => {
                let hits: Vec<_> = all
                    .into_iter()
                    .filter(|(k, _)| k.contains(&p.q))
                    .take(MAX_PARAMS_SHOWN)
                    .map(|(k, v)| json!({ "name": k, "value": v }))
                    .collect();
                Json(json!({ "params": hits })).into_response()
            }
            Err(e) => failed(StatusCode::BAD_GATEWAY, err_json(&e)),
        }
    })
}

#[derive(Deserialize)]
pub(crate) struct ParamSet {
    #[serde(default)]
    device: String,
    name: String,
    value: String,
}

/// Sets a parameter; the param service decides whether this user may (its DAC and SELinux-like
/// rules), and its refusal is shown as it is.
pub(crate) async fn param_set(State(st): State<AppState>, Json(p): Json<ParamSet>) -> Reply {
    let dev = daemon(&st).await?;
    Ok({
        let on = On { device: p.device };
        let args = oxh_param::api::SetArgs {
            key: p.name.clone(),
            value: p.value,
        };
        let r: Result<(), _> =
            call(&dev, &on, oxh_param::api::SA_ID, oxh_param::api::SET, &args).await;
        match r {
            Ok(()) => Json(json!({ "set": p.name })).into_response(),
            Err(e) => failed(StatusCode::BAD_REQUEST, err_json(&e)),
        }
    })
}

#[derive(Deserialize)]
pub(crate) struct StoreQuery {
    app: String,
    #[serde(default)]
    store: String,
}

fn kv_store(dev: &Device, app: &str, store: &str) -> oxh_sdk::kv::SingleKVStore {
    oxh_sdk::kv::KVManager::new(dev, Some(app)).existing_kv_store(store)
}

/// An app's store ids.
pub(crate) async fn kv_stores(State(st): State<AppState>, Query(q): Query<StoreQuery>) -> Reply {
    let dev = daemon(&st).await?;
    Ok(
        match oxh_sdk::kv::KVManager::new(&dev, Some(&q.app))
            .get_all_kv_store_id()
            .await
        {
            Ok(v) => Json(json!({ "stores": v })).into_response(),
            Err(e) => failed(StatusCode::BAD_REQUEST, err_json(&e)),
        },
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A store's entries (this device's and what synced from others), bounded.
pub(crate) async fn kv_entries(State(st): State<AppState>, Query(q): Query<StoreQuery>) -> Reply {
    let dev = daemon(&st).await?;
    Ok({
        let store = kv_store(&dev, &q.app, &q.store);
        match store
            .list_entries(None, &oxh_sdk::kv::Query::default())
            .await
        {
            Ok(l) => {
                let total = l.entries.len();
                let v: Vec<_> = l
                    .entries
                    .iter()
                    .enumerate()
                    .take(MAX_KV_ENTRIES_SHOWN)
                    .map(|(i, e)| {
                        let value = if l.large.contains(&i) {
                            "<large value>".to_string()
                        } else {
                            text(&e.value)
                        };
                        json!({ "deviceId": e.device, "key": text(&e.key), "value": value })
                    })
                    .collect();
                Json(json!({ "entries": v, "total": total })).into_response()
            }
            Err(e) => failed(StatusCode::BAD_REQUEST, err_json(&e)),
        }
    })
}

#[derive(Deserialize)]
pub(crate) struct KvPut {
    app: String,
    store: String,
    key: String,
    #[serde(default)]
    value: String,
}

/// Puts one entry, creating the store (single version, S1) when the app has none by that id,
/// as `oxh kv put` does.
pub(crate) async fn kv_put(State(st): State<AppState>, Json(p): Json<KvPut>) -> Reply {
    let dev = daemon(&st).await?;
    Ok({
        let store = kv_store(&dev, &p.app, &p.store);
        let r = match store.put(p.key.as_bytes(), p.value.as_bytes()).await {
            Err(oxh_sdk::Error::Remote(e)) if e.code == oxh_sdk::kv::code::NOT_FOUND => {
                let o = oxh_sdk::kv::Options {
                    create_if_missing: true,
                    ..Default::default()
                };
                match oxh_sdk::kv::KVManager::new(&dev, Some(&p.app))
                    .get_kv_store(&p.store, o)
                    .await
                {
                    Ok(s) => s.put(p.key.as_bytes(), p.value.as_bytes()).await,
                    Err(e) => Err(e),
                }
            }
            r => r,
        };
        match r {
            Ok(()) => Json(json!({ "put": p.key })).into_response(),
            Err(e) => failed(StatusCode::BAD_REQUEST, err_json(&e)),
        }
    })
}

/// Deletes one entry.
pub(crate) async fn kv_delete(State(st): State<AppState>, Json(p): Json<KvPut>) -> Reply {
    let dev = daemon(&st).await?;
    Ok(
        match kv_store(&dev, &p.app, &p.store)
            .delete(p.key.as_bytes())
            .await
        {
            Ok(()) => Json(json!({ "deleted": p.key })).into_response(),
            Err(e) => failed(StatusCode::BAD_REQUEST, err_json(&e)),
        },
    )
}

/// Syncs a store with every online trusted device (push and pull); the result per device.
pub(crate) async fn kv_sync(State(st): State<AppState>, Json(q): Json<StoreQuery>) -> Reply {
    let dev = daemon(&st).await?;
    Ok({
        let t0 = Instant::now();
        match kv_store(&dev, &q.app, &q.store)
            .sync(
                &[],
                oxh_sdk::kv::SyncMode::PushPull,
                Duration::from_secs(10),
            )
            .await
        {
            Ok(res) => {
                let v: Vec<_> = res
                    .iter()
                    .map(|r| {
                        json!({ "networkId": r.network_id, "deviceId": r.device_id,
                            "status": r.status.as_str() })
                    })
                    .collect();
                Json(json!({ "results": v, "ms": t0.elapsed().as_millis() as u64 })).into_response()
            }
            Err(e) => failed(StatusCode::BAD_REQUEST, err_json(&e)),
        }
    })
}

/// Installs the uploaded package (one HAP or .app) and answers the bundle manager's verdict:
/// what was verified and installed, or the check that failed with its code.
pub(crate) async fn bundle_install(State(st): State<AppState>, body: Bytes) -> Reply {
    if body.is_empty() {
        return Ok(failed(
            StatusCode::BAD_REQUEST,
            json!({ "verdict": "refused", "error": "empty upload: choose a .hap or .app file" }),
        ));
    }
    let dev = daemon(&st).await?;
    Ok(
        match dev.bundle().install(&[&body], DEFAULT_USER, false).await {
            Ok(r) => Json(json!({
                "verdict": if r.skipped.is_empty() { "signature verified, installed" }
                           else { "installed without some checks" },
                "result": r,
            }))
            .into_response(),
            Err(e) => {
                let mut v = err_json(&e);
                if let Some(o) = v.as_object_mut() {
                    o.insert("verdict".into(), json!("refused"));
                }
                failed(StatusCode::UNPROCESSABLE_ENTITY, v)
            }
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct BundleReq {
    #[serde(rename = "bundleName")]
    bundle_name: String,
}

/// Uninstalls a bundle (its data too, as `bm uninstall` without -k).
pub(crate) async fn bundle_uninstall(
    State(st): State<AppState>,
    Json(b): Json<BundleReq>,
) -> Reply {
    let dev = daemon(&st).await?;
    Ok(
        match dev
            .bundle()
            .uninstall(&b.bundle_name, DEFAULT_USER, false)
            .await
        {
            Ok(()) => Json(json!({ "uninstalled": b.bundle_name })).into_response(),
            Err(e) => failed(StatusCode::BAD_REQUEST, err_json(&e)),
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct StartReq {
    #[serde(rename = "bundleName")]
    bundle_name: String,
    #[serde(rename = "abilityName", default)]
    ability_name: String,
    #[serde(default)]
    device: String,
}

/// Starts an ability here (or, with a device, asks that device's ability manager).
pub(crate) async fn ability_start(State(st): State<AppState>, Json(s): Json<StartReq>) -> Reply {
    let dev = daemon(&st).await?;
    Ok({
        let on = On { device: s.device };
        let args = oxh_ability::api::StartArgs {
            want: oxh_ability::want::Want::explicit(&s.bundle_name, &s.ability_name),
            // As `aa start -W`: answered once the ability is in the foreground, so the page's
            // refresh right after shows its mission with its process (a spawn may take a
            // while: its distributed files are looked up through the merged view).
            wait: true,
        };
        let r: Result<oxh_ability::api::StartReply, _> = call(
            &dev,
            &on,
            oxh_ability::api::SA_ID,
            oxh_ability::api::START_ABILITY,
            &args,
        )
        .await;
        match r {
            Ok(r) => Json(json!({ "started": r })).into_response(),
            Err(e) => failed(StatusCode::BAD_REQUEST, err_json(&e)),
        }
    })
}

/// Force-stops a bundle's processes (`aa force-stop`).
pub(crate) async fn ability_force_stop(
    State(st): State<AppState>,
    Json(s): Json<StartReq>,
) -> Reply {
    let dev = daemon(&st).await?;
    Ok({
        let on = On { device: s.device };
        let r: Result<(), _> = call(
            &dev,
            &on,
            oxh_ability::api::SA_ID,
            oxh_ability::api::FORCE_STOP,
            &s.bundle_name,
        )
        .await;
        match r {
            Ok(()) => Json(json!({ "stopped": s.bundle_name })).into_response(),
            Err(e) => failed(StatusCode::BAD_REQUEST, err_json(&e)),
        }
    })
}

/// The last lines of one device's log (the live view starts from them).
pub(crate) async fn logs_tail(State(st): State<AppState>, Query(on): Query<On>) -> Reply {
    let dev = daemon(&st).await?;
    Ok({
        let args = oxh_hilog::api::ReadArgs {
            tail: Some(MAX_LOG_TAIL),
            ..Default::default()
        };
        let r: Result<oxh_hilog::api::ReadReply, _> = call(
            &dev,
            &on,
            oxh_hilog::api::SA_ID,
            oxh_hilog::api::READ,
            &args,
        )
        .await;
        match r {
        Ok(r) => Json(
            json!({ "lines": r.entries.iter().map(crate::live::line_json).collect::<Vec<_>>() }),
        )
        .into_response(),
        Err(e) => failed(StatusCode::BAD_GATEWAY, err_json(&e)),
    }
    })
}

/// The console's own limits, for the page to show (and tests to read).
pub(crate) async fn about() -> impl IntoResponse {
    Json(json!({ "limits": limits() }))
}

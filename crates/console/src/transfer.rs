//! File sends from the page: an uploaded file goes to a session on another device over the
//! soft bus (SendFile), with its progress kept here for the page's Transfers panel. The
//! upload is held in a 0600 temp file for the send and removed after it; at most
//! [`MAX_SENDS`] are in flight and the last [`MAX_TRANSFERS_KEPT`] are remembered.

use crate::api::{Reply, daemon, err_json};
use crate::server::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex};

/// Sends in flight at once.
pub const MAX_SENDS: usize = 4;
/// Transfers remembered for the page (finished ones are dropped oldest first).
pub const MAX_TRANSFERS_KEPT: usize = 32;

/// One transfer as the page draws it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Transfer {
    id: u64,
    what: String,
    sent: u64,
    total: u64,
    /// `running`, `done` or `failed`.
    state: &'static str,
    result: String,
}

/// The transfers the page started.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    next: u64,
    list: VecDeque<Transfer>,
}

impl Transfers {
    fn running(&self) -> usize {
        self.list.iter().filter(|t| t.state == "running").count()
    }
    fn update(&mut self, id: u64, f: impl FnOnce(&mut Transfer)) {
        if let Some(t) = self.list.iter_mut().find(|t| t.id == id) {
            f(t);
        }
    }
}

fn lock(t: &Mutex<Transfers>) -> std::sync::MutexGuard<'_, Transfers> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// `GET /api/transfers`.
pub(crate) async fn list(State(st): State<AppState>) -> impl IntoResponse {
    let t = lock(&st.transfers);
    Json(json!({ "transfers": t.list }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SendQuery {
    /// The receiving device's networkId.
    device: String,
    /// Its session name (someone there listens on it: `oxh bus listen NAME`).
    session: String,
    /// The name the file gets there.
    name: String,
}

/// A private temp file holding `data`, removed when dropped.
struct Held(std::path::PathBuf);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn hold(data: &[u8], id: u64) -> std::io::Result<Held> {
    let p = std::env::temp_dir().join(format!(
        "oxh-console-{}-{id}-{:016x}",
        std::process::id(),
        rand_u64()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)?;
    let held = Held(p);
    f.write_all(data)?;
    f.sync_all()?;
    Ok(held)
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// `POST /api/bus/send?device=&session=&name=` with the file as the body: starts the send and
/// answers its transfer id; the page follows it in `/api/transfers`.
pub(crate) async fn send(
    State(st): State<AppState>,
    Query(q): Query<SendQuery>,
    body: Bytes,
) -> Reply {
    let name = match oxh_sdk::bus::sanitize_file_name(&q.name) {
        Ok(n) => n,
        Err(e) => {
            return Ok((
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": format!("file name {:?}: {e}", q.name) })),
            )
                .into_response());
        }
    };
    if q.session.is_empty() || q.device.is_empty() {
        return Ok((
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "a device and a session name are needed" })),
        )
            .into_response());
    }
    let dev = daemon(&st).await?;
    let id = {
        let mut t = lock(&st.transfers);
        if t.running() >= MAX_SENDS {
            return Ok((
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({ "error": format!("{MAX_SENDS} sends are in flight: wait for one") })),
            )
                .into_response());
        }
        t.next += 1;
        let id = t.next;
        t.list.push_back(Transfer {
            id,
            what: format!("send {name} to {} / {}", short(&q.device), q.session),
            sent: 0,
            total: body.len() as u64,
            state: "running",
            result: String::new(),
        });
        while t.list.len() > MAX_TRANSFERS_KEPT {
            match t.list.iter().position(|x| x.state != "running") {
                Some(i) => {
                    t.list.remove(i);
                }
                None => break,
            }
        }
        id
    };
    let held = match hold(&body, id) {
        Ok(h) => h,
        Err(e) => {
            let msg = format!("cannot hold the upload: {e}");
            lock(&st.transfers).update(id, |t| {
                t.state = "failed";
                t.result = msg.clone();
            });
            return Ok((
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": msg })),
            )
                .into_response());
        }
    };
    drop(body);
    let transfers = st.transfers.clone();
    tokio::spawn(async move {
        let r = run_send(&dev, &q, &name, &held, id, &transfers).await;
        lock(&transfers).update(id, |t| match r {
            Ok(f) => {
                t.sent = t.total;
                t.state = "done";
                t.result = format!("received with a matching checksum (xxh128 {})", f.checksum);
            }
            Err(e) => {
                t.state = "failed";
                t.result = err_json(&e)["error"]
                    .as_str()
                    .unwrap_or("failed")
                    .to_string();
            }
        });
        drop(held);
    });
    Ok(Json(json!({ "id": id })).into_response())
}

fn short(s: &str) -> &str {
    &s[..s.len().min(8)]
}

async fn run_send(
    dev: &oxh_sdk::Device,
    q: &SendQuery,
    name: &str,
    held: &Held,
    id: u64,
    transfers: &Arc<Mutex<Transfers>>,
) -> Result<oxh_sdk::bus::SentFile, oxh_sdk::Error> {
    let bus = dev.bus();
    let own = format!("oxh-console-{}-{id}", std::process::id());
    let (socket, _events) = bus
        .bind(&q.device, &q.session, &own, oxh_sdk::bus::DataType::File)
        .await?;
    let files = [(held.0.clone(), name.to_string())];
    let r = bus
        .send_files_as(socket, &files, |p| {
            lock(transfers).update(id, |t| t.sent = p.sent);
        })
        .await;
    let _ = bus.shutdown(socket).await;
    let mut sent = r?;
    sent.pop().ok_or_else(|| {
        oxh_sdk::Error::Remote(oxh_sdk::RemoteError::new(
            oxh_ipc::code::SA_INTERNAL,
            "the bus reported no file sent",
        ))
    })
}

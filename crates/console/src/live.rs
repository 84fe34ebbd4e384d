//! Live data as server-sent events: the devices (pushed on every ONLINE/OFFLINE/INFO_CHANGED
//! the daemon reports, and refreshed every [`DEVICES_REFRESH`] for the round trips) and hilog
//! lines (followed on this device, read page by page from others through remote SA calls).
//!
//! Each stream holds at most [`STREAM_QUEUE`] batches for a slow page: beyond that a batch is
//! dropped and counted, and the next one says how many lines were lost, so a page that cannot
//! keep up is told rather than making the console hold without bound.

use crate::api::{Refusal, Reply, devices_json, err_json};
use crate::server::AppState;
use crate::{DEVICES_REFRESH, LOG_POLL, MAX_LOG_TAIL, STREAM_QUEUE};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use oxh_hilog::{Filter, Level, LogEntry};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// One log line as the page shows it (hilog's fields; the text is outside input, escaped by
/// the page).
pub(crate) fn line_json(e: &LogEntry) -> Value {
    json!({
        "seq": e.seq, "sec": e.sec, "nsec": e.nsec, "pid": e.pid, "tid": e.tid,
        "level": e.level.letter().to_string(), "type": e.log_type, "domain": format!("{:05X}", e.domain & 0xFFFFF),
        "tag": e.tag, "msg": e.msg,
    })
}

/// A bounded sender of events for one page; counts what it had to drop.
#[derive(Clone)]
struct Tx {
    tx: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

impl Tx {
    /// Queues `data` as event `name`; false once the page has gone.
    fn send(&self, name: &str, data: &Value, lines: u64) -> bool {
        let ev = Event::default().event(name).data(data.to_string());
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(lines, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
    fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
    fn closed(&self) -> bool {
        self.tx.is_closed()
    }
}

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

/// A stream slot (at most [`crate::MAX_STREAMS`] at once), or 429.
fn slot(st: &AppState) -> Result<OwnedSemaphorePermit, Refusal> {
    st.streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| Refusal::TooManyStreams)
}

/// The stream a page reads, fed by `task` until the page goes.
fn stream<F, Fut>(permit: OwnedSemaphorePermit, task: F) -> Response
where
    F: FnOnce(Tx) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let tx = Tx {
        tx,
        dropped: Arc::new(AtomicU64::new(0)),
    };
    tokio::spawn(task(tx));
    let s = futures_util::stream::unfold((rx, permit), |(mut rx, p)| async move {
        let ev = rx.recv().await?;
        Some((Ok::<_, Infallible>(ev), (rx, p)))
    });
    let s: Events = Box::pin(s);
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}

/// `GET /api/events`: the devices, live.
pub(crate) async fn events(State(st): State<AppState>) -> Reply {
    let permit = slot(&st)?;
    Ok(stream(permit, move |tx| devices_task(st, tx)))
}

async fn devices_task(st: AppState, tx: Tx) {
    let mut tick = tokio::time::interval(DEVICES_REFRESH);
    while !tx.closed() {
        let watch = match st.device().await {
            Ok(dev) => match dev.device_manager().on_state_change().await {
                Ok(w) => Some((dev, w)),
                Err(_) => None,
            },
            Err(_) => None,
        };
        let Some((_dev, mut watch)) = watch else {
            if !tx.send("devices", &json!({ "daemon": "offline" }), 0) {
                return;
            }
            tick.tick().await;
            continue;
        };
        if !tx.send("devices", &devices_json(&st).await, 0) {
            return;
        }
        loop {
            tokio::select! {
                ev = watch.next() => {
                    if ev.is_none() {
                        // The daemon went away: say so now, then try again each tick.
                        if !tx.send("devices", &json!({ "daemon": "offline" }), 0) { return; }
                        break;
                    }
                }
                _ = tick.tick() => {}
            }
            if !tx.send("devices", &devices_json(&st).await, 0) {
                return;
            }
        }
        tick.tick().await;
    }
}

/// hilog's filters, as the page sends them.
#[derive(Debug, Deserialize, Default)]
pub struct LogQuery {
    /// `local` (default), a networkId, or `all`.
    #[serde(default)]
    pub device: String,
    /// Levels, letters or names, comma separated (`-L`).
    #[serde(default)]
    pub level: String,
    /// Tags, comma separated (`-T`).
    #[serde(default)]
    pub tag: String,
    /// Domains in hex, comma separated (`-D`).
    #[serde(default)]
    pub domain: String,
    /// Pids, comma separated (`-P`).
    #[serde(default)]
    pub pid: String,
}

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

impl LogQuery {
    /// The filter, or what in it is wrong.
    pub fn filter(&self) -> Result<Filter, String> {
        let mut f = Filter::default();
        for l in list(&self.level) {
            f.levels.push(
                l.parse::<Level>()
                    .map_err(|_| format!("level {l:?}: D, I, W, E or F"))?,
            );
        }
        f.tags = list(&self.tag).map(String::from).collect();
        for d in list(&self.domain) {
            let h = d.trim_start_matches("0x").trim_start_matches("0X");
            f.domains
                .push(u32::from_str_radix(h, 16).map_err(|_| format!("domain {d:?}: hex"))?);
        }
        for p in list(&self.pid) {
            f.pids
                .push(p.parse().map_err(|_| format!("pid {p:?}: a number"))?);
        }
        Ok(f)
    }
}

/// `GET /api/logs?device=..&level=..`: hilog lines, live.
pub(crate) async fn logs(State(st): State<AppState>, Query(q): Query<LogQuery>) -> Reply {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => {
            return Ok((StatusCode::BAD_REQUEST, axum::Json(json!({ "error": e }))).into_response());
        }
    };
    let permit = slot(&st)?;
    let device = q.device.clone();
    Ok(stream(permit, move |tx| logs_task(st, tx, device, filter)))
}

async fn logs_task(st: AppState, tx: Tx, device: String, filter: Filter) {
    let local = device.is_empty() || device == "local" || device == "all";
    let mut tasks = tokio::task::JoinSet::new();
    if local {
        tasks.spawn(follow_local(st.clone(), tx.clone(), filter.clone()));
    }
    let remotes: Vec<String> = if device == "all" {
        match st.device().await {
            Ok(dev) => dev
                .device_manager()
                .trusted_devices()
                .await
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.network_id)
                .collect(),
            Err(_) => Vec::new(),
        }
    } else if local {
        Vec::new()
    } else {
        vec![device]
    };
    for nid in remotes {
        tasks.spawn(poll_remote(st.clone(), tx.clone(), nid, filter.clone()));
    }
    // The tasks end when the page goes (a send fails); dropping the set stops the rest.
    let _ = tasks.join_next().await;
}

fn batch(tx: &Tx, device: &str, lines: &[LogEntry]) -> bool {
    if lines.is_empty() {
        return true;
    }
    let v = json!({
        "device": device,
        "dropped": tx.take_dropped(),
        "lines": lines.iter().map(line_json).collect::<Vec<_>>(),
    });
    tx.send("log", &v, lines.len() as u64)
}

async fn follow_local(st: AppState, tx: Tx, filter: Filter) {
    while !tx.closed() {
        let dev = match st.device().await {
            Ok(d) => d,
            Err(e) => {
                if !tx.send("logerror", &json!({ "device": "local", "error": e }), 0) {
                    return;
                }
                tokio::time::sleep(DEVICES_REFRESH).await;
                continue;
            }
        };
        match dev.hilog().follow(filter.clone(), Some(MAX_LOG_TAIL)).await {
            Ok((first, mut f)) => {
                if !batch(&tx, "local", &first) {
                    return;
                }
                while let Some(lines) = f.next().await {
                    if !batch(&tx, "local", &lines) {
                        return;
                    }
                }
            }
            Err(e) => {
                if !tx.send(
                    "logerror",
                    &json!({ "device": "local", "detail": err_json(&e) }),
                    0,
                ) {
                    return;
                }
            }
        }
        tokio::time::sleep(DEVICES_REFRESH).await;
    }
}

/// Another device's lines: its hilog read through a remote SA call, from the last seq seen,
/// every [`LOG_POLL`] (a remote call carries no subscription).
async fn poll_remote(st: AppState, tx: Tx, nid: String, filter: Filter) {
    let mut after: Option<u64> = None;
    while !tx.closed() {
        if let Ok(dev) = st.device().await {
            loop {
                let args = oxh_hilog::api::ReadArgs {
                    filter: filter.clone(),
                    tail: after.is_none().then_some(MAX_LOG_TAIL),
                    after,
                    ..Default::default()
                };
                let r: Result<oxh_hilog::api::ReadReply, _> = dev
                    .samgr()
                    .call_remote(&nid, oxh_hilog::api::SA_ID, oxh_hilog::api::READ, &args)
                    .await;
                match r {
                    Ok(r) => {
                        after = Some(
                            r.entries
                                .last()
                                .map_or(r.last_seq, |e| e.seq)
                                .max(after.unwrap_or(0)),
                        );
                        if !batch(&tx, &nid, &r.entries) {
                            return;
                        }
                        if !r.more {
                            break;
                        }
                    }
                    Err(e) => {
                        if !tx.send(
                            "logerror",
                            &json!({ "device": nid, "detail": err_json(&e) }),
                            0,
                        ) {
                            return;
                        }
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(LOG_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(level: &str, tag: &str, domain: &str, pid: &str) -> LogQuery {
        LogQuery {
            device: String::new(),
            level: level.into(),
            tag: tag.into(),
            domain: domain.into(),
            pid: pid.into(),
        }
    }

    #[test]
    fn filters_parse_as_hilog_takes_them() {
        let f = q("E, W", "a,b", "0xD001510,01510", "7").filter().unwrap();
        assert_eq!(f.levels, vec![Level::Error, Level::Warn]);
        assert_eq!(f.tags, vec!["a", "b"]);
        assert_eq!(f.domains, vec![0xD001510, 0x1510]);
        assert_eq!(f.pids, vec![7]);
        assert_eq!(q("", "", "", "").filter().unwrap(), Filter::default());
    }

    #[test]
    fn bad_filters_say_which_part() {
        assert!(q("X", "", "", "").filter().unwrap_err().contains("level"));
        assert!(q("", "", "zz", "").filter().unwrap_err().contains("domain"));
        assert!(q("", "", "", "p").filter().unwrap_err().contains("pid"));
    }
}

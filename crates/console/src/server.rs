//! The HTTP side: the guard every request passes, the page, and the API.

use crate::request::{cookie_token, query_token};
use crate::{COOKIE, ConsoleError};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// Opens a connection to the local daemon (a new one per request: a daemon that restarted
/// is simply reached again).
pub type Connector = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<oxh_sdk::Device, String>> + Send>> + Send + Sync,
>;

/// How the console runs.
#[derive(Clone)]
pub struct Config {
    /// The token a request must carry.
    pub token: String,
    /// Reaches the local daemon.
    pub connect: Connector,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) cfg: Config,
    /// The `Host` values that are ours: `127.0.0.1:PORT`, `localhost:PORT`, the bound one.
    hosts: Arc<Vec<String>>,
    /// Slots for live views.
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
    /// The file sends the page started.
    pub(crate) transfers: Arc<std::sync::Mutex<crate::transfer::Transfers>>,
    /// The connection to the daemon, while it is open.
    conn: Arc<tokio::sync::Mutex<Option<Arc<oxh_sdk::Device>>>>,
}

impl AppState {
    /// The open connection to the daemon, or a new one.
    pub(crate) async fn device(&self) -> Result<Arc<oxh_sdk::Device>, String> {
        let mut c = self.conn.lock().await;
        if let Some(d) = c.as_ref().filter(|d| d.client().closed_reason().is_none()) {
            return Ok(d.clone());
        }
        *c = None;
        let d = Arc::new((self.cfg.connect)().await?);
        *c = Some(d.clone());
        Ok(d)
    }
}

/// Compares in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !st.hosts.iter().any(|x| x == host) {
        return (
            StatusCode::FORBIDDEN,
            "this console answers only its own address",
        )
            .into_response();
    }
    let own = format!("http://{host}");
    match h.get(header::ORIGIN) {
        Some(origin) if origin.to_str().ok() != Some(own.as_str()) => {
            return (
                StatusCode::FORBIDDEN,
                "requests from other origins are refused",
            )
                .into_response();
        }
        // A change of state must say where it comes from: browsers send Origin with every
        // POST, so one without it is not our page's (CSRF: with the SameSite cookie, twice).
        None if !matches!(*req.method(), Method::GET | Method::HEAD) => {
            return (
                StatusCode::FORBIDDEN,
                "a change needs the console's own Origin",
            )
                .into_response();
        }
        _ => {}
    }
    let by_cookie = cookie_token(h).is_some_and(|t| same(&t, &st.cfg.token));
    let by_query = query_token(req.uri().query()).is_some_and(|t| same(&t, &st.cfg.token));
    if by_query && !by_cookie && req.uri().path() == "/" {
        // The first visit: the token becomes a cookie and leaves the URL (and the history).
        let mut r = Redirect::to("/").into_response();
        let c = format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            st.cfg.token
        );
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }
    if !by_cookie {
        return (
            StatusCode::UNAUTHORIZED,
            "open the console with the URL it printed (it carries the token)",
        )
            .into_response();
    }
    let mut r = next.run(req).await;
    let hs = r.headers_mut();
    hs.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    hs.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    hs.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    r
}

async fn page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("static/index.html"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/app.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/style.css"),
    )
}

/// Serves the console on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: Config,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ConsoleError> {
    let addr: SocketAddr = listener.local_addr()?;
    let port = addr.port();
    let mut hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")];
    if !addr.ip().is_loopback() {
        hosts.push(addr.to_string());
    }
    let st = AppState {
        cfg,
        hosts: Arc::new(hosts),
        streams: Arc::new(tokio::sync::Semaphore::new(crate::MAX_STREAMS)),
        conn: Arc::default(),
        transfers: Arc::default(),
    };
    use crate::{api, live, rdb, transfer};
    let app = Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/style.css", get(style))
        .route("/api/about", get(api::about))
        .route("/api/devices", get(api::devices))
        .route("/api/events", get(live::events))
        .route("/api/discover", get(api::discover))
        .route("/api/bind", post(api::bind))
        .route("/api/unbind", post(api::unbind))
        .route("/api/device", get(api::device_detail))
        .route("/api/token", get(api::token))
        .route("/api/params", get(api::params))
        .route("/api/params/set", post(api::param_set))
        .route("/api/kv/stores", get(api::kv_stores))
        .route("/api/kv", get(api::kv_entries))
        .route("/api/kv/put", post(api::kv_put))
        .route("/api/kv/delete", post(api::kv_delete))
        .route("/api/kv/sync", post(api::kv_sync))
        .route(
            "/api/bundles/install",
            post(api::bundle_install).layer(DefaultBodyLimit::max(crate::MAX_UPLOAD)),
        )
        .route("/api/bundles/uninstall", post(api::bundle_uninstall))
        .route("/api/transfers", get(transfer::list))
        .route(
            "/api/bus/send",
            post(transfer::send).layer(DefaultBodyLimit::max(crate::MAX_UPLOAD)),
        )
        .route("/api/rdb/tables", post(rdb::tables))
        .route("/api/rdb/query", post(rdb::query))
        .route("/api/rdb/exec", post(rdb::exec))
        .route("/api/rdb/sync", post(rdb::sync))
        .route("/api/abilities/start", post(api::ability_start))
        .route("/api/abilities/force-stop", post(api::ability_force_stop))
        .route("/api/logs", get(live::logs))
        .route("/api/logs/tail", get(api::logs_tail))
        .layer(middleware::from_fn_with_state(st.clone(), guard))
        .with_state(st);
    let listener = crate::bounded::Bounded::new(listener, crate::MAX_CONNECTIONS);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}

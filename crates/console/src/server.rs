//! The HTTP side: the guard every request passes, the page, and the API.

use crate::{COOKIE, ConsoleError};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
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
struct AppState {
    cfg: Config,
    /// The `Host` values that are ours: `127.0.0.1:PORT`, `localhost:PORT`, the bound one.
    hosts: Arc<Vec<String>>,
}

fn cookie_token(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn query_token(q: Option<&str>) -> Option<String> {
    q?.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_string())
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
    if let Some(origin) = h.get(header::ORIGIN) {
        let own = format!("http://{host}");
        if origin.to_str().ok() != Some(own.as_str()) {
            return (
                StatusCode::FORBIDDEN,
                "requests from other origins are refused",
            )
                .into_response();
        }
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

async fn devices(State(st): State<AppState>) -> impl IntoResponse {
    let v = match (st.cfg.connect)().await {
        Err(e) => serde_json::json!({ "daemon": "offline", "error": e }),
        Ok(dev) => {
            let dm = dev.device_manager();
            match (dm.local_device_info().await, dm.trusted_devices().await) {
                (Ok(local), Ok(trusted)) => serde_json::json!({
                    "daemon": "online",
                    "local": local,
                    "trusted": trusted,
                }),
                (Err(e), _) | (_, Err(e)) => {
                    serde_json::json!({ "daemon": "offline", "error": e.to_string() })
                }
            }
        }
    };
    axum::Json(v)
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
    };
    let app = Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/api/devices", get(devices))
        .layer(middleware::from_fn_with_state(st.clone(), guard))
        .with_state(st);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}

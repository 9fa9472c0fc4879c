//! The HTTP endpoint: `GET /metrics` (Prometheus text format) and a small
//! read-only API, `GET /api/banned` and `GET /api/status`, answered by the
//! engine through the same path as the control socket.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use axum::Router;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::server::Call;
use crate::control::Request;
use crate::telemetry::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    calls: mpsc::Sender<Call>,
}

/// The HTTP listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("http {addr}: {source}")]
pub struct HttpError {
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    pub source: std::io::Error,
}

async fn metrics_page(State(s): State<AppState>) -> HttpResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn ask(s: &AppState, req: Request) -> HttpResponse {
    let (tx, rx) = oneshot::channel();
    if s.calls.send((req, tx)).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(r) if r.ok => axum::Json(r.data).into_response(),
        Ok(r) => (StatusCode::BAD_REQUEST, r.error.unwrap_or_default()).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn banned(State(s): State<AppState>) -> HttpResponse {
    ask(&s, Request::Banned).await
}

async fn status(State(s): State<AppState>) -> HttpResponse {
    ask(&s, Request::Status { jail: None }).await
}

/// Binds and serves until cancelled. Returns the bound address.
pub async fn start(
    addr: SocketAddr,
    metrics: Metrics,
    calls: mpsc::Sender<Call>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<SocketAddr, HttpError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| HttpError { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/api/banned", get(banned))
        .route("/api/status", get(status))
        .with_state(AppState { metrics, calls });
    tracing::info!(addr = %local, "http listening (/metrics, /api/banned, /api/status)");
    tracker.spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!("http server: {e}");
        }
    });
    Ok(local)
}

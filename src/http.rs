//! The operations endpoints: `/metrics` (Prometheus text format), `/healthz` (the process
//! answers) and `/readyz` (every part connected and consuming; 503 otherwise, with which part is
//! not).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::context::Context;

/// Why the endpoints could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} for /metrics, /healthz and /readyz")]
pub struct HttpError {
    /// The configured address.
    pub address: SocketAddr,
    /// Cause.
    #[source]
    pub source: std::io::Error,
}

/// Binds the configured address now (so a taken port fails start-up) and serves until shutdown.
/// Returns the bound address (the real port when the configuration says 0).
pub async fn spawn(context: &Context) -> Result<SocketAddr, HttpError> {
    let address = context.settings.http.listen;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| HttpError { address, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| HttpError { address, source })?;
    let shutdown = context.shutdown.clone();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(context.clone());
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "operations endpoint stopped");
        }
    });
    tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");
    Ok(bound)
}

async fn metrics(State(context): State<Context>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        context.metrics.encode(),
    )
}

async fn readyz(State(context): State<Context>) -> impl IntoResponse {
    let (ready, parts) = context.health.readiness();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({ "ready": ready, "parts": parts })),
    )
}

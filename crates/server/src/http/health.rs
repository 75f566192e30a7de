//! Liveness, readiness and metrics. These need no token: they reveal no
//! tenant data, and orchestrators and scrapers call them without one.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::ApiState;

/// Liveness: the process answers.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers and every migration is applied.
pub async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    let store = &state.app.store;
    let backend = store.backend().as_str();
    let (status, body) = match (store.ping().await, store.schema_status().await) {
        (Ok(()), Ok(schema)) if schema.is_current() => (
            StatusCode::OK,
            json!({ "status": "ready", "database": backend,
                    "migrations": { "applied": schema.applied, "known": schema.known } }),
        ),
        (Ok(()), Ok(schema)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "migrations_pending", "database": backend,
                    "migrations": { "applied": schema.applied, "known": schema.known } }),
        ),
        (Err(err), _) | (_, Err(err)) => {
            tracing::warn!(error = %err, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "database_unreachable", "database": backend }),
            )
        }
    };
    (status, axum::Json(body))
}

/// Prometheus metrics. The engine's are read now, at scrape time.
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    state.metrics.refresh(&state.app).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

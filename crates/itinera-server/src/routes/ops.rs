//! Operations: `/healthz`, Prometheus `/metrics`, and the OpenAPI document.

use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// The OpenAPI document's own route, documented in it.
pub fn docs() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(openapi))
}

pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let errors: Vec<serde_json::Value> = state
        .app
        .opened_backends()
        .into_iter()
        .filter_map(|(p, b)| {
            b.write_error()
                .map(|e| serde_json::json!({"project": p, "error": e}))
        })
        .collect();
    Json(serde_json::json!({
        "status": if errors.is_empty() { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "write_errors": errors,
    }))
}

async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, crate::ApiError> {
    if let Some(want) = &state.app.config.metrics_token {
        use axum_extra::headers::{authorization::Bearer, Authorization, HeaderMapExt};
        let given = headers.typed_get::<Authorization<Bearer>>();
        // compared as digests, so the time taken says nothing about the token
        let digest = |t: &str| sha2::Sha256::digest(t.as_bytes());
        use sha2::Digest;
        if given.is_none_or(|g| digest(g.token()) != digest(want)) {
            return Err(crate::ApiError::Unauthorized(
                "/metrics needs the metrics token: Authorization: Bearer …",
            ));
        }
    }
    for (project, backend) in state.app.opened_backends() {
        if let Ok(s) = backend.size() {
            let labels = vec![("project".to_string(), project)];
            state
                .metrics
                .store_events
                .get_or_create(&labels)
                .set(s.events as i64);
            state
                .metrics
                .store_bytes
                .get_or_create(&labels)
                .set(s.bytes as i64);
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    ))
}

/// This document
///
/// Needs no token.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
}

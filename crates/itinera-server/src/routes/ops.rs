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
    // every project is opened (once; then kept open), so that one whose store cannot open
    // shows here rather than on its first query
    let app = state.app.clone();
    let errors: Vec<serde_json::Value> = tokio::task::spawn_blocking(move || {
        let projects = app.meta().projects().unwrap_or_default();
        let mut errors = Vec::new();
        for p in projects {
            match app.backend(&p.name) {
                Ok(b) => {
                    if let Some(e) = b.write_error() {
                        errors.push(serde_json::json!({
                            "project": p.name,
                            "error": crate::error::redact_paths(&e),
                        }));
                    }
                }
                Err(e) => errors.push(serde_json::json!({
                    "project": p.name,
                    "error": crate::error::redact_paths(&e.to_string()),
                })),
            }
        }
        errors
    })
    .await
    .unwrap_or_default();
    Json(serde_json::json!({
        "status": if errors.is_empty() { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "errors": errors,
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
                "/metrics needs the metrics token: Authorization: Bearer …".into(),
            ));
        }
    }
    for (project, backend) in state.app.opened_backends() {
        if let Ok(s) = backend.size() {
            for (part, bytes) in &s.memory {
                let labels = vec![
                    ("project".to_string(), project.clone()),
                    ("part".to_string(), part.to_string()),
                ];
                state
                    .metrics
                    .store_memory
                    .get_or_create(&labels)
                    .set(*bytes as i64);
            }
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

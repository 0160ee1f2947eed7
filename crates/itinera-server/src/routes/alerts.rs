//! Alert rules on survey answers (`/api/v1/alerts/rules/{name}`), evaluating them on request, and
//! the alerts that fired with their deliveries.

use super::definitions::delete;
use super::{blocking, json_body};
use crate::auth::ReadProject;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use itinera_app::{alerts, now_ms};
use itinera_meta::DefinitionKind;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/evaluate", post(evaluate))
        .route("/api/v1/alerts/rules", get(list_rules))
        .route(
            "/api/v1/alerts/rules/{name}",
            put(save_rule).delete(|s, p, n| delete(s, p, n, DefinitionKind::Alert)),
        )
}

async fn list_rules(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Value>, ApiError> {
    let rules: Vec<_> = alerts::load_rules(&state.app, &project)?
        .iter()
        .map(|r| r.redacted())
        .collect();
    Ok(Json(json!({ "rules": rules })))
}

async fn save_rule(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    let app = state.app.clone();
    let rule = blocking(move || Ok(alerts::save_rule(&app, &project, &name, body)?)).await?;
    Ok(Json(
        serde_json::to_value(rule.redacted()).expect("rules serialize"),
    ))
}

async fn evaluate(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Value>, ApiError> {
    let app = state.app.clone();
    let fired = blocking(move || Ok(alerts::evaluate_project(&app, &project, now_ms())?)).await?;
    Ok(Json(json!({ "fired": fired })))
}

async fn list_alerts(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Value>, ApiError> {
    let alerts = state.app.meta().alerts(&project, 500)?;
    Ok(Json(json!({ "alerts": alerts })))
}

//! Alert rules on survey answers (`/api/v1/alerts/rules/{name}`), evaluating them on request, and
//! the alerts that fired with their deliveries.

use super::definitions::{delete, Deleted};
use super::{blocking, json_body};
use crate::auth::{EditProject, ReadProject};
use crate::error::ApiError;
use crate::openapi::{Forbidden, Invalid, NotFound, Unauthorized};
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use itinera_app::alerts::{self, Fired};
use itinera_app::now_ms;
use itinera_engine::alerts::AlertRule;
use itinera_meta::{AlertRecord, DefinitionKind};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_alerts))
        .routes(routes!(evaluate))
        .routes(routes!(list_rules))
        .routes(routes!(save_rule, delete_rule))
}

/// The project's alert rules, webhook secrets shown as `***`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rules {
    pub rules: Vec<AlertRule>,
}

/// The alerts an evaluation fired.
#[derive(Debug, Serialize, ToSchema)]
pub struct FiredAlerts {
    pub fired: Vec<Fired>,
}

/// Fired alerts, newest first, with their delivery attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alerts {
    pub alerts: Vec<AlertRecord>,
}

/// Alert rules (webhook secrets shown as ***)
#[utoipa::path(
    get,
    path = "/api/v1/alerts/rules",
    tag = "alerts",
    responses((status = 200, description = "Rules", body = Rules), Unauthorized)
)]
async fn list_rules(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Rules>, ApiError> {
    let rules = alerts::load_rules(&state.app, &project)?
        .iter()
        .map(|r| r.redacted())
        .collect();
    Ok(Json(Rules { rules }))
}

/// Create or replace an alert rule
///
/// A webhook secret sent as `***` keeps the saved one. Semantics: docs/alerts.md.
#[utoipa::path(
    put,
    path = "/api/v1/alerts/rules/{name}",
    security(("token" = ["edit"])),
    tag = "alerts",
    params(("name" = String, Path, description = "The rule's name")),
    request_body = AlertRule,
    responses((status = 200, description = "The rule as saved, secrets redacted", body = AlertRule), Invalid, Unauthorized, Forbidden)
)]
async fn save_rule(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<AlertRule>, ApiError> {
    let body = json_body(body)?;
    let app = state.app.clone();
    let rule = blocking(move || Ok(alerts::save_rule(&app, &project, &name, body)?)).await?;
    Ok(Json(rule.redacted()))
}

/// Delete an alert rule
#[utoipa::path(
    delete,
    path = "/api/v1/alerts/rules/{name}",
    security(("token" = ["edit"])),
    tag = "alerts",
    params(("name" = String, Path, description = "The rule's name")),
    responses((status = 200, description = "Deleted", body = Deleted), Unauthorized, Forbidden, NotFound)
)]
async fn delete_rule(
    state: State<Arc<AppState>>,
    EditProject(project): EditProject,
    name: Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    delete(state, project, name, DefinitionKind::Alert).await
}

/// Evaluate the project's alert rules now
#[utoipa::path(
    post,
    path = "/api/v1/alerts/evaluate",
    security(("token" = ["edit"])),
    tag = "alerts",
    responses((status = 200, description = "The alerts that fired", body = FiredAlerts), Unauthorized, Forbidden)
)]
async fn evaluate(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
) -> Result<Json<FiredAlerts>, ApiError> {
    let app = state.app.clone();
    let fired = blocking(move || Ok(alerts::evaluate_project(&app, &project, now_ms())?)).await?;
    Ok(Json(FiredAlerts { fired }))
}

/// Fired alerts with their delivery attempts
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    responses((status = 200, description = "The latest 500 alerts", body = Alerts), Unauthorized)
)]
async fn list_alerts(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Alerts>, ApiError> {
    let alerts = state.app.meta().alerts(&project, 500)?;
    Ok(Json(Alerts { alerts }))
}

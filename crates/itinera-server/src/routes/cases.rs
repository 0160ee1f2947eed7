//! Cases that close the loop (`/api/v1/cases`): listed, opened, updated, followed up.

use super::{blocking, json_body, query_params, to_json};
use crate::auth::{EditProject, ReadProject};
use crate::error::ApiError;
use crate::openapi::{Forbidden, Invalid, NotFound, Unauthorized};
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use itinera_app::cases::{self, FollowUp, FollowUpResult, NewCase};
use itinera_meta::{Case, CaseUpdate};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_cases, create_case))
        .routes(routes!(update_case))
        .routes(routes!(follow_up))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CaseFilter {
    /// Only cases in this status (`open`, `in_progress`, `waiting_on_customer`, `closed`).
    status: Option<String>,
}

/// The project's cases, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cases {
    pub cases: Vec<Case>,
}

/// Cases, newest first
#[utoipa::path(
    get,
    path = "/api/v1/cases",
    tag = "cases",
    params(CaseFilter),
    responses((status = 200, description = "Cases", body = Cases), Invalid, Unauthorized)
)]
async fn list_cases(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    filter: Result<Query<CaseFilter>, QueryRejection>,
) -> Result<Json<Cases>, ApiError> {
    let filter = query_params("query string", filter)?;
    let cases = state.app.meta().cases(&project, filter.status.as_deref())?;
    Ok(Json(Cases { cases }))
}

/// Open a case by hand
///
/// Answers `null` when an open case for the same person and source already exists.
#[utoipa::path(
    post,
    path = "/api/v1/cases",
    security(("token" = ["edit"])),
    tag = "cases",
    request_body = NewCase,
    responses((status = 200, description = "The case opened", body = Option<Case>), Invalid, Unauthorized, Forbidden)
)]
async fn create_case(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    body: Result<Json<NewCase>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let c = json_body(body)?;
    Ok(to_json(&cases::create(&state.app, &project, &c)?))
}

/// Update a case
#[utoipa::path(
    patch,
    path = "/api/v1/cases/{id}",
    security(("token" = ["edit"])),
    tag = "cases",
    params(("id" = i64, Path, description = "The case's id")),
    request_body = CaseUpdate,
    responses((status = 200, description = "The case after the update", body = Case), Invalid, Unauthorized, Forbidden, NotFound)
)]
async fn update_case(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    Path(id): Path<i64>,
    body: Result<Json<CaseUpdate>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let u = json_body(body)?;
    Ok(to_json(&cases::update(&state.app, &project, id, &u)?))
}

/// A follow-up survey to the case's customer
///
/// A signed survey link for the case's customer, recorded on the case and e-mailed to them when
/// the SMTP relay is set and their e-mail trait is known.
#[utoipa::path(
    post,
    path = "/api/v1/cases/{id}/follow-up",
    security(("token" = ["edit"])),
    tag = "cases",
    params(("id" = i64, Path, description = "The case's id")),
    request_body = FollowUp,
    responses((status = 200, description = "The link and whether it was e-mailed", body = FollowUpResult), Invalid, Unauthorized, Forbidden, NotFound)
)]
async fn follow_up(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    Path(id): Path<i64>,
    body: Result<Json<FollowUp>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let f = json_body(body)?;
    let app = state.app.clone();
    let r = blocking(move || Ok(cases::follow_up(&app, &project, id, &f)?)).await?;
    Ok(to_json(&r))
}

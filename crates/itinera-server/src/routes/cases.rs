//! Cases that close the loop (`/api/v1/cases`): listed, opened, updated, followed up.

use super::{blocking, json_body, query_params, to_json};
use crate::auth::ReadProject;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use itinera_app::cases::{self, FollowUp, NewCase};
use itinera_meta::CaseUpdate;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/cases", get(list).post(create))
        .route("/api/v1/cases/{id}", patch(update))
        .route("/api/v1/cases/{id}/follow-up", post(follow_up))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFilter {
    status: Option<String>,
}

async fn list(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    filter: Result<Query<CaseFilter>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let filter = query_params("query string", filter)?;
    let cases = state.app.meta().cases(&project, filter.status.as_deref())?;
    Ok(Json(json!({ "cases": cases })))
}

async fn create(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    body: Result<Json<NewCase>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let c = json_body(body)?;
    Ok(to_json(&cases::create(&state.app, &project, &c)?))
}

async fn update(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(id): Path<i64>,
    body: Result<Json<CaseUpdate>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let u = json_body(body)?;
    Ok(to_json(&cases::update(&state.app, &project, id, &u)?))
}

/// `POST /api/v1/cases/{id}/follow-up`: a signed survey link for the case's customer, recorded on
/// the case and e-mailed to them when the SMTP relay is set and their e-mail trait is known.
async fn follow_up(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(id): Path<i64>,
    body: Result<Json<FollowUp>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let f = json_body(body)?;
    let app = state.app.clone();
    let r = blocking(move || Ok(cases::follow_up(&app, &project, id, &f)?)).await?;
    Ok(to_json(&r))
}

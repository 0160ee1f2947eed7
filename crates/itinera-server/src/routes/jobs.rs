//! Analyses as jobs: `POST /api/v1/queries` starts one (`202` with its id), `GET
//! /api/v1/queries/{id}` polls progress and fetches the result, `DELETE` cancels it.

use super::{json_body, query_params, to_json};
use crate::auth::ReadProject;
use crate::error::ApiError;
use crate::openapi::{Busy, Invalid, NotFound, Unauthorized, Unavailable};
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use itinera_app::jobs::JobStatus;
use itinera_app::{AnalysisRequest, Population};
use serde_json::Value;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(start_job))
        .routes(routes!(job_status, cancel_job))
}

/// Start an analysis as a job
///
/// The body is exactly one analysis (`{"funnel": {…}}`, `{"attribution": {…}}`, …); the answer,
/// `202`, carries the job's id to poll at `/api/v1/queries/{id}`.
#[utoipa::path(
    post,
    path = "/api/v1/queries",
    tag = "jobs",
    params(Population),
    request_body = AnalysisRequest,
    responses(
        (status = 202, description = "The job, started", body = JobStatus),
        Invalid,
        Unauthorized,
        Busy,
        Unavailable
    )
)]
async fn start_job(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    pop: Result<Query<Population>, QueryRejection>,
    body: Result<Json<AnalysisRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let pop = query_params("query string", pop)?;
    let request = json_body(body)?;
    // the project's backend opens before the job is accepted: a broken store answers now
    state.app.backend(&project)?;
    let (id, control) = state.app.jobs.start(&project)?;
    let (app, project2) = (state.app.clone(), project.clone());
    let run = super::budgeted(&state, control, move |opts| {
        app.run_analysis(&project2, &request, &pop, opts)
    });
    let (app, id2) = (state.app.clone(), id.clone());
    tokio::task::spawn_blocking(move || app.jobs.finish(&id2, run()));
    let status = state.app.jobs.status(&project, &id)?;
    Ok((StatusCode::ACCEPTED, to_json(&status)))
}

/// Progress or result of a job
#[utoipa::path(
    get,
    path = "/api/v1/queries/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job's state, with its result when done", body = JobStatus),
        Unauthorized,
        NotFound
    )
)]
async fn job_status(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(to_json(&state.app.jobs.status(&project, &id)?))
}

/// Cancel a job
#[utoipa::path(
    delete,
    path = "/api/v1/queries/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job's state after the request to cancel", body = JobStatus),
        Unauthorized,
        NotFound
    )
)]
async fn cancel_job(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(to_json(&state.app.jobs.cancel(&project, &id)?))
}

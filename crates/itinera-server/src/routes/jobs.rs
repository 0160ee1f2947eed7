//! Analyses as jobs: `POST /api/v1/queries` starts one (`202` with its id), `GET
//! /api/v1/queries/{id}` polls progress and fetches the result, `DELETE` cancels it.

use super::{json_body, query_params, to_json};
use crate::auth::ReadProject;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use itinera_app::{AnalysisRequest, Population};
use itinera_engine::ScanOptions;
use serde_json::Value;
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/queries", post(start))
        .route("/api/v1/queries/{id}", get(status).delete(cancel))
}

async fn start(
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
    let app = state.app.clone();
    let (id2, project2) = (id.clone(), project.clone());
    tokio::task::spawn_blocking(move || {
        let opts = ScanOptions {
            control: Some(control),
            ..Default::default()
        };
        let outcome = app.run_analysis(&project2, &request, &pop, &opts);
        app.jobs.finish(&id2, outcome);
    });
    let status = state.app.jobs.status(&project, &id)?;
    Ok((StatusCode::ACCEPTED, to_json(&status)))
}

async fn status(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(to_json(&state.app.jobs.status(&project, &id)?))
}

async fn cancel(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(to_json(&state.app.jobs.cancel(&project, &id)?))
}

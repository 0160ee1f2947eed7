//! Saved segments and personas (`/api/v1/segments`, `/api/v1/personas/{name}`) and their sizes,
//! and the stage models a project can name (`/api/v1/models`).

use super::{blocking, json_body, to_json};
use crate::auth::{EditProject, ReadProject};
use crate::error::ApiError;
use crate::openapi::{Forbidden, Invalid, NotFound, Unauthorized, Unavailable};
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use itinera_app::definitions::{self, DefinitionBody};
use itinera_engine::segments::SegmentsReport;
use itinera_engine::stages::StageModel;
use itinera_engine::SegmentDef;
use itinera_meta::DefinitionKind;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_definitions))
        .routes(routes!(segments_report))
        .routes(routes!(save_segment, delete_segment))
        .routes(routes!(save_persona, delete_persona))
        .routes(routes!(list_models))
}

/// A stage model a map or a stage funnel can name.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSummary {
    pub name: String,
    /// Built in (`customer-journey`, …) rather than saved in the project.
    pub builtin: bool,
    pub stages: Vec<String>,
}

/// The stage models of the project: the built-in ones, then the saved ones
#[utoipa::path(
    get,
    path = "/api/v1/models",
    tag = "definitions",
    responses((status = 200, description = "Models", body = [ModelSummary]), Unauthorized)
)]
async fn list_models(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Vec<ModelSummary>>, ApiError> {
    let summary = |name: &str, builtin: bool, m: &StageModel| ModelSummary {
        name: name.to_string(),
        builtin,
        stages: m.stages.iter().map(|s| s.name.clone()).collect(),
    };
    let mut out: Vec<ModelSummary> = StageModel::BUILTIN
        .iter()
        .filter_map(|n| StageModel::builtin(n).map(|m| summary(n, true, &m)))
        .collect();
    let saved = state
        .app
        .meta()
        .definitions(&project, DefinitionKind::StageModel)?;
    for d in saved {
        if let Ok(m) = serde_json::from_str::<StageModel>(&d.body) {
            out.push(summary(&d.name, false, &m));
        }
    }
    Ok(Json(out))
}

/// The project's saved segments and personas (personas in their order).
#[derive(Debug, Serialize, ToSchema)]
pub struct Definitions {
    pub segments: Vec<SegmentDef>,
    pub personas: Vec<SegmentDef>,
}

/// The name of what was deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: String,
}

/// The project's saved segments and personas
#[utoipa::path(
    get,
    path = "/api/v1/segments",
    tag = "definitions",
    responses((status = 200, description = "Segments and personas", body = Definitions), Unauthorized)
)]
async fn list_definitions(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Definitions>, ApiError> {
    let meta = state.app.meta();
    Ok(Json(Definitions {
        segments: definitions::load_segments(&meta, &project, DefinitionKind::Segment)?,
        personas: definitions::load_segments(&meta, &project, DefinitionKind::Persona)?,
    }))
}

/// Persons per segment and per persona
#[utoipa::path(
    post,
    path = "/api/v1/segments/report",
    tag = "definitions",
    responses(
        (status = 200, description = "Sizes", body = SegmentsReport),
        Unauthorized,
        Unavailable
    )
)]
async fn segments_report(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Value>, ApiError> {
    let app = state.app.clone();
    let r = super::scan_now(&state, move |opts| app.segments_report(&project, opts)).await?;
    Ok(to_json(&r))
}

/// Create or replace a segment
///
/// Semantics of rules: docs/segments.md.
#[utoipa::path(
    put,
    path = "/api/v1/segments/{name}",
    security(("token" = ["edit"])),
    tag = "definitions",
    params(("name" = String, Path, description = "The segment's name")),
    request_body = DefinitionBody,
    responses((status = 200, description = "The segment as saved", body = SegmentDef), Invalid, Unauthorized, Forbidden)
)]
async fn save_segment(
    state: State<Arc<AppState>>,
    EditProject(project): EditProject,
    name: Path<String>,
    body: Result<Json<DefinitionBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    save(state, project, name, body, DefinitionKind::Segment).await
}

/// Delete a segment
#[utoipa::path(
    delete,
    path = "/api/v1/segments/{name}",
    security(("token" = ["edit"])),
    tag = "definitions",
    params(("name" = String, Path, description = "The segment's name")),
    responses((status = 200, description = "Deleted", body = Deleted), Unauthorized, Forbidden, NotFound)
)]
async fn delete_segment(
    state: State<Arc<AppState>>,
    EditProject(project): EditProject,
    name: Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    delete(state, project, name, DefinitionKind::Segment).await
}

/// Create or replace a persona
///
/// `position` orders the personas: a person belongs to the first persona whose rule matches.
#[utoipa::path(
    put,
    path = "/api/v1/personas/{name}",
    security(("token" = ["edit"])),
    tag = "definitions",
    params(("name" = String, Path, description = "The persona's name")),
    request_body = DefinitionBody,
    responses((status = 200, description = "The persona as saved", body = SegmentDef), Invalid, Unauthorized, Forbidden)
)]
async fn save_persona(
    state: State<Arc<AppState>>,
    EditProject(project): EditProject,
    name: Path<String>,
    body: Result<Json<DefinitionBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    save(state, project, name, body, DefinitionKind::Persona).await
}

/// Delete a persona
#[utoipa::path(
    delete,
    path = "/api/v1/personas/{name}",
    security(("token" = ["edit"])),
    tag = "definitions",
    params(("name" = String, Path, description = "The persona's name")),
    responses((status = 200, description = "Deleted", body = Deleted), Unauthorized, Forbidden, NotFound)
)]
async fn delete_persona(
    state: State<Arc<AppState>>,
    EditProject(project): EditProject,
    name: Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    delete(state, project, name, DefinitionKind::Persona).await
}

async fn save(
    State(state): State<Arc<AppState>>,
    project: String,
    Path(name): Path<String>,
    body: Result<Json<DefinitionBody>, JsonRejection>,
    kind: DefinitionKind,
) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    let app = state.app.clone();
    let def = blocking(move || Ok(app.save_segment(&project, kind, &name, body)?)).await?;
    Ok(to_json(&def))
}

/// Deletes a saved definition of any kind (segments, personas, surveys, alert rules).
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    project: String,
    Path(name): Path<String>,
    kind: DefinitionKind,
) -> Result<Json<Deleted>, ApiError> {
    definitions::delete(&state.app.meta(), &project, kind, &name)?;
    Ok(Json(Deleted { deleted: name }))
}

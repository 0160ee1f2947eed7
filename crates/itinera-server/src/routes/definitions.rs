//! Saved segments and personas (`/api/v1/segments`, `/api/v1/personas/{name}`) and their sizes.

use super::{blocking, json_body, to_json};
use crate::auth::ReadProject;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use itinera_app::definitions::{self, DefinitionBody};
use itinera_meta::DefinitionKind;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/segments", get(list))
        .route("/api/v1/segments/report", post(report))
        .route(
            "/api/v1/segments/{name}",
            put(|s, p, n, b| save(s, p, n, b, DefinitionKind::Segment))
                .delete(|s, p, n| delete(s, p, n, DefinitionKind::Segment)),
        )
        .route(
            "/api/v1/personas/{name}",
            put(|s, p, n, b| save(s, p, n, b, DefinitionKind::Persona))
                .delete(|s, p, n| delete(s, p, n, DefinitionKind::Persona)),
        )
}

async fn list(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Value>, ApiError> {
    let meta = state.app.meta();
    Ok(Json(json!({
        "segments": definitions::load_segments(&meta, &project, DefinitionKind::Segment)?,
        "personas": definitions::load_segments(&meta, &project, DefinitionKind::Persona)?,
    })))
}

async fn save(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
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
    ReadProject(project): ReadProject,
    Path(name): Path<String>,
    kind: DefinitionKind,
) -> Result<Json<Value>, ApiError> {
    definitions::delete(&state.app.meta(), &project, kind, &name)?;
    Ok(Json(json!({ "deleted": name })))
}

async fn report(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Value>, ApiError> {
    let app = state.app.clone();
    let r = blocking(move || Ok(app.segments_report(&project)?)).await?;
    Ok(to_json(&r))
}

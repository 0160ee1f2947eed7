//! Survey definitions (`/api/v1/surveys`) and signed links for one person to answer.

use super::definitions::delete;
use super::{json_body, to_json};
use crate::auth::ReadProject;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use itinera_app::surveys::{self, SurveyDef};
use itinera_meta::DefinitionKind;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/surveys", get(list))
        .route(
            "/api/v1/surveys/{id}",
            put(save).delete(|s, p, n| delete(s, p, n, DefinitionKind::Survey)),
        )
        .route("/api/v1/surveys/{id}/link", post(link))
}

async fn list(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "surveys": surveys::load(&state.app.meta(), &project)? }),
    ))
}

async fn save(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(id): Path<String>,
    body: Result<Json<SurveyDef>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let mut def = json_body(body)?;
    def.id = id;
    surveys::save(&state.app.meta(), &project, &def)?;
    Ok(to_json(&def))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkRequest {
    person: String,
    #[serde(default = "thirty")]
    days: u32,
}

fn thirty() -> u32 {
    30
}

async fn link(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(id): Path<String>,
    body: Result<Json<LinkRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = json_body(body)?;
    let link = surveys::mint_link(&state.app, &project, &id, &req.person, req.days)?;
    Ok(to_json(&link))
}

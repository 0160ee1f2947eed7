//! Survey definitions (`/api/v1/surveys`) and signed links for one person to answer.

use super::definitions::{delete, Deleted};
use super::{json_body, to_json};
use crate::auth::{EditProject, ReadProject};
use crate::error::ApiError;
use crate::openapi::{Forbidden, Invalid, NotFound, Unauthorized};
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use itinera_app::surveys::{self, SignedLink, SurveyDef};
use itinera_meta::DefinitionKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_surveys))
        .routes(routes!(save_survey, delete_survey))
        .routes(routes!(survey_link))
}

/// The project's surveys.
#[derive(Debug, Serialize, ToSchema)]
pub struct Surveys {
    pub surveys: Vec<SurveyDef>,
}

/// Survey definitions
#[utoipa::path(
    get,
    path = "/api/v1/surveys",
    tag = "surveys",
    responses((status = 200, description = "Surveys", body = Surveys), Unauthorized)
)]
async fn list_surveys(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Surveys>, ApiError> {
    Ok(Json(Surveys {
        surveys: surveys::load(&state.app.meta(), &project)?,
    }))
}

/// Create or replace a survey
///
/// The path's id wins over an `id` in the body. Semantics: docs/surveys.md.
#[utoipa::path(
    put,
    path = "/api/v1/surveys/{id}",
    security(("token" = ["edit"])),
    tag = "surveys",
    params(("id" = String, Path, description = "The survey's id")),
    request_body = SurveyDef,
    responses((status = 200, description = "The survey as saved", body = SurveyDef), Invalid, Unauthorized, Forbidden)
)]
async fn save_survey(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    Path(id): Path<String>,
    body: Result<Json<SurveyDef>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let mut def = json_body(body)?;
    def.id = id;
    surveys::save(&state.app.meta(), &project, &def)?;
    Ok(to_json(&def))
}

/// Delete a survey
#[utoipa::path(
    delete,
    path = "/api/v1/surveys/{id}",
    security(("token" = ["edit"])),
    tag = "surveys",
    params(("id" = String, Path, description = "The survey's id")),
    responses((status = 200, description = "Deleted", body = Deleted), Unauthorized, Forbidden, NotFound)
)]
async fn delete_survey(
    state: State<Arc<AppState>>,
    EditProject(project): EditProject,
    id: Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    delete(state, project, id, DefinitionKind::Survey).await
}

/// Whom a signed survey link is for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LinkRequest {
    /// The person's id (their user id or anonymous id).
    person: String,
    /// Days the link stays valid.
    #[serde(default = "thirty")]
    #[schema(default = 30)]
    days: u32,
}

fn thirty() -> u32 {
    30
}

/// A signed link to the hosted survey page for one person
#[utoipa::path(
    post,
    path = "/api/v1/surveys/{id}/link",
    security(("token" = ["edit"])),
    tag = "surveys",
    params(("id" = String, Path, description = "The survey's id")),
    request_body = LinkRequest,
    responses((status = 200, description = "The link", body = SignedLink), Invalid, Unauthorized, Forbidden, NotFound)
)]
async fn survey_link(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    Path(id): Path<String>,
    body: Result<Json<LinkRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = json_body(body)?;
    let link = surveys::mint_link(&state.app, &project, &id, &req.person, req.days)?;
    Ok(to_json(&link))
}

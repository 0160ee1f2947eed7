//! Journey maps (`/api/v1/maps`): read by anyone who may read, saved as a new version by
//! editors, with every version listed and restorable, and an export that imports as the same
//! map (`docs/map-schema.json`). The map's live figures come from `/api/v1/stages` and
//! `/api/v1/scores`, which the web app calls with the same filters.

use super::{blocking, json_body};
use crate::auth::{Caller, EditProject, ReadProject};
use crate::error::ApiError;
use crate::openapi::{Conflict, Forbidden, Invalid, NotFound, Unauthorized};
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use itinera_app::maps::{MapSummary, MapView, NewShare};
use itinera_engine::map::{JourneyMap, MapExport};
use itinera_meta::{MapShare, MapVersion};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_maps))
        .routes(routes!(get_map, save_map, delete_map))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
        .routes(routes!(restore_version))
        .routes(routes!(export_map))
        .routes(routes!(import_map))
        .routes(routes!(list_shares, create_share))
        .routes(routes!(revoke_share))
        .routes(routes!(what_is_shared))
}

/// A share link to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// How long the link works: `7d`, `12h`, … (at most 90 days).
    #[schema(value_type = String)]
    pub expires_in: itinera_engine::Span,
}

/// What a share link shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct SharedInfo {
    pub project: String,
    pub name: String,
    pub expires_at_ms: i64,
}

/// A save: the document, the version it was edited from, and a note for the history.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MapSave {
    pub map: JourneyMap,
    /// The version the editor started from; a later save by someone else answers 409.
    /// Leave it out to overwrite.
    #[serde(default)]
    pub base_version: Option<i64>,
    #[serde(default)]
    pub note: String,
}

/// The version a save or restore made.
#[derive(Debug, Serialize, ToSchema)]
pub struct Saved {
    pub name: String,
    pub version: i64,
}

/// The project's maps
#[utoipa::path(get, path = "/api/v1/maps", tag = "maps",
    responses((status = 200, description = "Maps (the default map is always listed)", body = [MapSummary]), Unauthorized))]
async fn list_maps(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Vec<MapSummary>>, ApiError> {
    let app = state.app.clone();
    blocking(move || Ok(Json(app.maps(&project)?))).await
}

/// A map: its document, version and resolved stage model
///
/// `default` always exists: until it is saved, a blank map over the built-in customer-journey model.
#[utoipa::path(get, path = "/api/v1/maps/{name}", tag = "maps",
    params(("name" = String, Path, description = "The map's name")),
    responses((status = 200, description = "The map", body = MapView), Unauthorized, NotFound))]
async fn get_map(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(name): Path<String>,
) -> Result<Json<MapView>, ApiError> {
    let app = state.app.clone();
    blocking(move || Ok(Json(app.map(&project, &name)?))).await
}

/// Save a map as a new version
#[utoipa::path(put, path = "/api/v1/maps/{name}", tag = "maps",
    security(("token" = ["edit"]), ("session" = ["edit"])),
    params(("name" = String, Path, description = "The map's name")),
    request_body = MapSave,
    responses((status = 200, description = "The new version", body = Saved), Invalid, Unauthorized, Forbidden, Conflict))]
async fn save_map(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    who: Caller,
    Path(name): Path<String>,
    body: Result<Json<MapSave>, JsonRejection>,
) -> Result<Json<Saved>, ApiError> {
    let save = json_body(body)?;
    let app = state.app.clone();
    blocking(move || {
        let version = app.save_map(
            &project,
            &name,
            &save.map,
            save.base_version,
            &who.name(),
            &save.note,
        )?;
        Ok(Json(Saved { name, version }))
    })
    .await
}

/// Delete a map and its versions
#[utoipa::path(delete, path = "/api/v1/maps/{name}", tag = "maps",
    security(("token" = ["edit"]), ("session" = ["edit"])),
    params(("name" = String, Path, description = "The map's name")),
    responses((status = 204, description = "Deleted"), Unauthorized, Forbidden, NotFound))]
async fn delete_map(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    Path(name): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    let app = state.app.clone();
    blocking(move || Ok(app.delete_map(&project, &name)?)).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Every saved version of a map, newest first
#[utoipa::path(get, path = "/api/v1/maps/{name}/versions", tag = "maps",
    params(("name" = String, Path, description = "The map's name")),
    responses((status = 200, description = "Versions", body = [MapVersion]), Unauthorized))]
async fn list_versions(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(name): Path<String>,
) -> Result<Json<Vec<MapVersion>>, ApiError> {
    let app = state.app.clone();
    blocking(move || Ok(Json(app.map_versions(&project, &name)?))).await
}

/// One saved version's document (to compare with the current one)
#[utoipa::path(get, path = "/api/v1/maps/{name}/versions/{version}", tag = "maps",
    params(("name" = String, Path, description = "The map's name"), ("version" = i64, Path, description = "The version")),
    responses((status = 200, description = "The document", body = JourneyMap), Unauthorized, NotFound))]
async fn get_version(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path((name, version)): Path<(String, i64)>,
) -> Result<Json<JourneyMap>, ApiError> {
    let app = state.app.clone();
    blocking(move || Ok(Json(app.map_version(&project, &name, version)?))).await
}

/// Make an old version current again (saved as a new version; history is kept)
#[utoipa::path(post, path = "/api/v1/maps/{name}/versions/{version}/restore", tag = "maps",
    security(("token" = ["edit"]), ("session" = ["edit"])),
    params(("name" = String, Path, description = "The map's name"), ("version" = i64, Path, description = "The version to restore")),
    responses((status = 200, description = "The new version", body = Saved), Unauthorized, Forbidden, NotFound))]
async fn restore_version(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    who: Caller,
    Path((name, version)): Path<(String, i64)>,
) -> Result<Json<Saved>, ApiError> {
    let app = state.app.clone();
    blocking(move || {
        let v = app.restore_map(&project, &name, version, &who.name())?;
        Ok(Json(Saved { name, version: v }))
    })
    .await
}

/// Export a map (docs/map-schema.json)
#[utoipa::path(get, path = "/api/v1/maps/{name}/export", tag = "maps",
    params(("name" = String, Path, description = "The map's name")),
    responses((status = 200, description = "The export", body = MapExport), Unauthorized, NotFound))]
async fn export_map(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(name): Path<String>,
) -> Result<Json<MapExport>, ApiError> {
    let app = state.app.clone();
    blocking(move || Ok(Json(app.export_map(&project, &name)?))).await
}

/// Import an exported map as a new version (of the map named in the export)
#[utoipa::path(post, path = "/api/v1/maps/import", tag = "maps",
    security(("token" = ["edit"]), ("session" = ["edit"])),
    request_body = MapExport,
    responses((status = 200, description = "The new version", body = Saved), Invalid, Unauthorized, Forbidden))]
async fn import_map(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    who: Caller,
    body: Result<Json<MapExport>, JsonRejection>,
) -> Result<Json<Saved>, ApiError> {
    let export = json_body(body)?;
    let app = state.app.clone();
    blocking(move || {
        let version = app.import_map(&project, &export, None, &who.name())?;
        Ok(Json(Saved {
            name: export.name,
            version,
        }))
    })
    .await
}

/// A map's share links (prefixes only)
#[utoipa::path(get, path = "/api/v1/maps/{name}/shares", tag = "maps",
    security(("token" = ["edit"]), ("session" = ["edit"])),
    params(("name" = String, Path, description = "The map's name")),
    responses((status = 200, description = "Links, newest first", body = [MapShare]), Unauthorized, Forbidden))]
async fn list_shares(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    Path(name): Path<String>,
) -> Result<Json<Vec<MapShare>>, ApiError> {
    let app = state.app.clone();
    blocking(move || Ok(Json(app.map_shares(&project, &name)?))).await
}

/// Make a read-only link to the map with its live figures (shown once)
#[utoipa::path(post, path = "/api/v1/maps/{name}/shares", tag = "maps",
    security(("token" = ["edit"]), ("session" = ["edit"])),
    params(("name" = String, Path, description = "The map's name")),
    request_body = ShareRequest,
    responses((status = 200, description = "The link", body = NewShare), Invalid, Unauthorized, Forbidden, NotFound))]
async fn create_share(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    who: Caller,
    Path(name): Path<String>,
    body: Result<Json<ShareRequest>, JsonRejection>,
) -> Result<Json<NewShare>, ApiError> {
    let req = json_body(body)?;
    let app = state.app.clone();
    blocking(move || {
        Ok(Json(app.share_map(
            &project,
            &name,
            req.expires_in,
            &who.name(),
        )?))
    })
    .await
}

/// Revoke a share link
#[utoipa::path(delete, path = "/api/v1/maps/{name}/shares/{id}", tag = "maps",
    security(("token" = ["edit"]), ("session" = ["edit"])),
    params(("name" = String, Path, description = "The map's name"), ("id" = i64, Path, description = "The link's id")),
    responses((status = 204, description = "Revoked"), Unauthorized, Forbidden, NotFound))]
async fn revoke_share(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    Path((name, id)): Path<(String, i64)>,
) -> Result<axum::http::StatusCode, ApiError> {
    let app = state.app.clone();
    blocking(move || Ok(app.revoke_map_share(&project, &name, id)?)).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// What the share link in `X-Itinera-Share` shows
#[utoipa::path(get, path = "/api/v1/share", tag = "maps",
    security(("share" = [])),
    responses((status = 200, description = "The shared map", body = SharedInfo), Invalid, Unauthorized))]
async fn what_is_shared(who: Caller) -> Result<Json<SharedInfo>, ApiError> {
    match who {
        Caller::Share(m) => Ok(Json(SharedInfo {
            project: m.project,
            name: m.name,
            expires_at_ms: m.expires_at_ms,
        })),
        _ => Err(ApiError::BadRequest {
            field: "x-itinera-share".into(),
            reason: "send a share link's secret".into(),
        }),
    }
}

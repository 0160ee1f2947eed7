//! A project's credentials (`/api/v1/keys`): listed, created and revoked by its admins (admin
//! tokens of the project, or logged-in admin users). Secrets are shown once, when created.

use super::{blocking, json_body};
use crate::auth::{AdminProject, Caller};
use crate::error::ApiError;
use crate::openapi::{Forbidden, Invalid, NotFound, Unauthorized};
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use itinera_meta::{KeyInfo, Scope};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// What to create: a write key (ingests only; public in pages and apps) or a token of a scope.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    /// `write` for a write key, `token` for a token.
    pub kind: CredentialKind,
    /// A token's scope (default `read`).
    #[serde(default)]
    pub scope: Option<Scope>,
    #[serde(default)]
    pub label: String,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    Write,
    Token,
}

/// A new credential's secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedCredential {
    pub secret: String,
    pub key: KeyInfo,
}

/// The project's write keys and tokens (prefixes only)
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "credentials",
    security(("token" = ["admin"]), ("session" = ["admin"])),
    responses((status = 200, description = "Keys", body = [KeyInfo]), Unauthorized, Forbidden)
)]
async fn list_keys(
    State(state): State<Arc<AppState>>,
    AdminProject(project): AdminProject,
) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    Ok(Json(state.app.meta().keys(Some(&project))?))
}

/// Create a write key or a token
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "credentials",
    security(("token" = ["admin"]), ("session" = ["admin"])),
    request_body = NewCredential,
    responses((status = 200, description = "The secret, shown once", body = CreatedCredential), Invalid, Unauthorized, Forbidden)
)]
async fn create_key(
    State(state): State<Arc<AppState>>,
    AdminProject(project): AdminProject,
    who: Caller,
    body: Result<Json<NewCredential>, JsonRejection>,
) -> Result<Json<CreatedCredential>, ApiError> {
    let new = json_body(body)?;
    let app = state.app.clone();
    let by = who.name();
    blocking(move || {
        let meta = app.meta();
        let label = if new.label.trim().is_empty() {
            format!("created by {by}")
        } else {
            new.label
        };
        let secret = match new.kind {
            CredentialKind::Write => meta.create_write_key(&project, &label)?,
            CredentialKind::Token => {
                meta.create_token(&project, new.scope.unwrap_or(Scope::Read), &label)?
            }
        };
        let key = meta
            .keys(Some(&project))?
            .into_iter()
            .find(|k| secret.starts_with(&k.prefix) && k.label == label && k.revoked_at.is_none())
            .ok_or_else(|| ApiError::Internal("the new key is not listed".into()))?;
        tracing::info!(project, by, prefix = key.prefix, "credential created");
        Ok(Json(CreatedCredential { secret, key }))
    })
    .await
}

/// Revoke a write key or token of the project
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "credentials",
    security(("token" = ["admin"]), ("session" = ["admin"])),
    params(("id" = i64, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked"), Unauthorized, Forbidden, NotFound)
)]
async fn revoke_key(
    State(state): State<Arc<AppState>>,
    AdminProject(project): AdminProject,
    who: Caller,
    Path(id): Path<i64>,
) -> Result<axum::http::StatusCode, ApiError> {
    let app = state.app.clone();
    blocking(move || Ok(app.meta().revoke_in(&project, id)?)).await?;
    tracing::info!(id, by = who.name(), "credential revoked");
    Ok(axum::http::StatusCode::NO_CONTENT)
}

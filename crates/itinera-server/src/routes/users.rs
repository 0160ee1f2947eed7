//! Users of the web app (`/api/v1/users`), managed by logged-in admins; tokens cannot manage
//! users, because a user's role holds in every project and a token belongs to one.

use super::{blocking, json_body};
use crate::auth::AdminUser;
use crate::error::ApiError;
use crate::openapi::{Forbidden, Invalid, NotFound, Unauthorized};
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use itinera_meta::{Role, User};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(update_user, delete_user))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    pub role: Role,
    /// At least 10 characters.
    pub password: String,
}

/// A change to a user: a new role, a new password, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub password: Option<String>,
}

/// The users of this Itinera
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    security(("session" = ["admin"])),
    responses((status = 200, description = "Users", body = [User]), Unauthorized, Forbidden)
)]
async fn list_users(
    State(state): State<Arc<AppState>>,
    _admin: AdminUser,
) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(state.app.users()?))
}

/// Create a user
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    security(("session" = ["admin"])),
    request_body = NewUser,
    responses((status = 200, description = "The user", body = User), Invalid, Unauthorized, Forbidden)
)]
async fn create_user(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    let u = json_body(body)?;
    let app = state.app.clone();
    let user = blocking(move || Ok(app.create_user(&u.email, u.role, &u.password)?)).await?;
    tracing::info!(
        by = admin.user.email,
        email = user.email,
        role = user.role.as_str(),
        "user created"
    );
    Ok(Json(user))
}

/// Change a user's role or password (a new password ends their sessions)
#[utoipa::path(
    patch,
    path = "/api/v1/users/{email}",
    tag = "users",
    security(("session" = ["admin"])),
    params(("email" = String, Path, description = "The user's e-mail")),
    request_body = UserChange,
    responses((status = 200, description = "The user", body = User), Invalid, Unauthorized, Forbidden, NotFound)
)]
async fn update_user(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Path(email): Path<String>,
    body: Result<Json<UserChange>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    let change = json_body(body)?;
    let app = state.app.clone();
    let user = blocking(move || {
        if let Some(p) = &change.password {
            app.set_password(&email, p)?;
        }
        let user = match change.role {
            Some(r) => app.set_role(&email, r)?,
            None => app
                .users()?
                .into_iter()
                .find(|u| u.email.eq_ignore_ascii_case(email.trim()))
                .ok_or_else(|| ApiError::NotFound(format!("no user {email}")))?,
        };
        Ok(user)
    })
    .await?;
    tracing::info!(
        by = admin.user.email,
        email = user.email,
        role = user.role.as_str(),
        "user changed"
    );
    Ok(Json(user))
}

/// Delete a user (the last admin cannot be deleted)
#[utoipa::path(
    delete,
    path = "/api/v1/users/{email}",
    tag = "users",
    security(("session" = ["admin"])),
    params(("email" = String, Path, description = "The user's e-mail")),
    responses((status = 204, description = "Deleted"), Invalid, Unauthorized, Forbidden)
)]
async fn delete_user(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Path(email): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    let app = state.app.clone();
    let e = email.clone();
    blocking(move || Ok(app.delete_user(&e)?)).await?;
    tracing::info!(by = admin.user.email, email, "user deleted");
    Ok(axum::http::StatusCode::NO_CONTENT)
}

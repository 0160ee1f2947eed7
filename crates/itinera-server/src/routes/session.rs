//! Logging in to the web app and out (`/api/v1/session`): a login checks the password (argon2id,
//! off the async threads), is rate-limited per client address and per e-mail, and sets the
//! session cookie (HttpOnly, SameSite=Strict, Secure when configured); its answer carries the
//! CSRF token the page echoes on every state-changing request.

use super::{blocking, json_body};
use crate::auth::{caller, session_secret, Caller, SESSION_COOKIE};
use crate::error::ApiError;
use crate::openapi::{Invalid, Unauthorized};
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::extract::cookie::{Cookie, SameSite};
use itinera_meta::User;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(whoami, login, logout))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
}

/// The logged-in user, the CSRF token to echo in `X-CSRF-Token`, and the projects to switch
/// between (a user's role holds in every project).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    pub user: User,
    pub csrf: String,
    pub projects: Vec<String>,
    pub expires_at_ms: i64,
}

fn info(
    state: &AppState,
    user: User,
    csrf: String,
    expires_at_ms: i64,
) -> Result<SessionInfo, ApiError> {
    let projects = state
        .app
        .meta()
        .projects()?
        .into_iter()
        .map(|p| p.name)
        .collect();
    Ok(SessionInfo {
        user,
        csrf,
        projects,
        expires_at_ms,
    })
}

/// Log in: sets the session cookie
#[utoipa::path(
    post,
    path = "/api/v1/session",
    tag = "session",
    security(()),
    request_body = Login,
    responses(
        (status = 200, description = "Logged in; the cookie is set", body = SessionInfo),
        Invalid,
        Unauthorized,
        (status = 429, description = "Too many attempts from this address or for this e-mail")
    )
)]
async fn login(
    State(state): State<Arc<AppState>>,
    ClientAddr(remote): ClientAddr,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response, ApiError> {
    let login = json_body(body)?;
    if let Some(ip) = remote {
        state.login_limit.check(&format!("login-ip:{ip}"))?;
    }
    state.login_limit.check(&format!(
        "login-email:{}",
        login.email.trim().to_lowercase()
    ))?;
    let app = state.app.clone();
    let (user, session) = blocking(move || Ok(app.login(&login.email, &login.password)?)).await?;
    let hours = state.app.config.session_hours.max(1);
    let cookie = Cookie::build((SESSION_COOKIE, session.secret))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.app.config.secure_cookies)
        .path("/")
        .max_age(cookie::time::Duration::hours(hours as i64))
        .build();
    let expires = itinera_app::now_ms() + hours as i64 * 3_600_000;
    let body = info(&state, user, session.csrf, expires)?;
    let mut resp = Json(body).into_response();
    set_cookie(resp.headers_mut(), &cookie.to_string());
    Ok(resp)
}

fn set_cookie(headers: &mut HeaderMap, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.append(header::SET_COOKIE, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The logged-in user
#[utoipa::path(
    get,
    path = "/api/v1/session",
    tag = "session",
    security(("session" = [])),
    responses((status = 200, description = "The session", body = SessionInfo), Unauthorized)
)]
async fn whoami(
    State(state): State<Arc<AppState>>,
    who: SessionCaller,
) -> Result<Response, ApiError> {
    let s = who.0;
    let body = info(&state, s.user, s.csrf, s.expires_at_ms)?;
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Log out: ends the session and clears the cookie
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    tag = "session",
    security(("session" = [])),
    responses((status = 204, description = "Logged out"), Unauthorized)
)]
async fn logout(
    State(state): State<Arc<AppState>>,
    _who: SessionCaller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(secret) = session_secret(&headers) {
        let app = state.app.clone();
        blocking(move || Ok(app.logout(&secret)?)).await?;
    }
    let gone = Cookie::build((SESSION_COOKIE, ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build();
    let mut resp = axum::http::StatusCode::NO_CONTENT.into_response();
    set_cookie(resp.headers_mut(), &gone.to_string());
    Ok(resp)
}

/// The client's address, when the connection gave one (it always does in `serve`).
struct ClientAddr(Option<std::net::IpAddr>);

impl FromRequestParts<Arc<AppState>> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<AppState>) -> Result<Self, ApiError> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// A logged-in user (tokens have no session), CSRF checked on state-changing methods.
struct SessionCaller(itinera_meta::Session);

impl FromRequestParts<Arc<AppState>> for SessionCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        match caller(parts, state)? {
            Caller::User(s) => Ok(SessionCaller(s)),
            Caller::Token { .. } | Caller::Share(_) => Err(ApiError::BadRequest {
                field: "Authorization".into(),
                reason: "tokens and share links have no session; this is for the web app's logged-in users".into(),
            }),
        }
    }
}

//! Who is calling and what they may do, in one place (the model is `docs/security.md`).
//!
//! - **Tokens** for programs (`Authorization: Bearer …`), each of one project with a scope: read,
//!   edit or admin.
//! - **Sessions** for people in the web app: a cookie set by logging in (`POST /api/v1/session`)
//!   names a user whose role (viewer, editor, admin) gives the same three levels, in every
//!   project; the project is the `X-Itinera-Project` header (`default` without it). A browser's
//!   state-changing request must echo the session's CSRF token in `X-CSRF-Token`.
//! - **Share links** for people without a login: `X-Itinera-Share: sh_…` shows one map of one
//!   project with its live figures, read-only, until the link expires or is revoked; it may call
//!   only what that map needs ([`SHARE_ROUTES`]).
//! - **Write keys** for tracking (HTTP Basic user name, or `writeKey` in the body), which are
//!   never tokens.
//!
//! The [`ReadProject`], [`EditProject`] and [`AdminProject`] extractors run the check before
//! anything else of the request is read. Token lookups are cached briefly so a revoked token
//! stops working within `auth_cache_seconds`; sessions are looked up on every request, so a
//! logout, a deleted user or a changed role takes effect at once.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum_extra::extract::cookie::CookieJar;
use axum_extra::headers::authorization::{Basic, Bearer};
use axum_extra::headers::{Authorization, HeaderMapExt};
use itinera_meta::{KeyKind, Scope, Session, SharedMap, DEFAULT_PROJECT};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The cookie holding a web-app session's secret.
pub const SESSION_COOKIE: &str = "itinera_session";
/// The header in which the web app echoes the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The header naming the project a session's request is about.
pub const PROJECT_HEADER: &str = "x-itinera-project";
/// The header carrying a share link's secret.
pub const SHARE_HEADER: &str = "x-itinera-share";

/// What a share link may call besides reading its own map (`GET /api/v1/maps/{its name}`) and
/// what it is (`GET /api/v1/share`): the analyses the map's figures come from.
pub const SHARE_ROUTES: [(&str, &str); 3] = [
    ("POST", "/api/v1/stages"),
    ("POST", "/api/v1/scores"),
    ("POST", "/api/v1/funnel"),
];

/// A recently authenticated credential: its project, its scope (tokens only) and when it was
/// looked up.
type Cached = (String, Option<Scope>, Instant);

/// Recently authenticated secrets.
#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<(String, KeyKind), Cached>>,
}

impl AppState {
    /// The project (and, for a token, the scope) of a live credential; cached briefly.
    fn lookup(&self, secret: &str, kind: KeyKind) -> Result<(String, Option<Scope>), ApiError> {
        let ttl = Duration::from_secs(self.app.config.auth_cache_seconds);
        let cache_key = (secret.to_string(), kind);
        if let Some((project, scope, at)) = self.auth.entries.lock().get(&cache_key) {
            if at.elapsed() < ttl {
                return Ok((project.clone(), *scope));
            }
        }
        let meta = self.app.meta();
        let found = match kind {
            KeyKind::Write => meta.authenticate(secret, kind)?.map(|p| (p, None)),
            KeyKind::Read => meta.authenticate_token(secret)?.map(|(p, s)| (p, Some(s))),
        };
        match found {
            Some((p, scope)) => {
                let mut cache = self.auth.entries.lock();
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(cache_key, (p.clone(), scope, Instant::now()));
                Ok((p, scope))
            }
            None => Err(ApiError::Unauthorized(
                match kind {
                    KeyKind::Write => "unknown or revoked write key",
                    KeyKind::Read => "unknown or revoked token",
                }
                .into(),
            )),
        }
    }

    /// The project of a live write key.
    pub fn authenticate(&self, secret: &str, kind: KeyKind) -> Result<String, ApiError> {
        self.lookup(secret, kind).map(|(p, _)| p)
    }
}

/// Who made a request, resolved once per request.
#[derive(Clone)]
pub enum Caller {
    /// A token of one project.
    Token {
        project: String,
        scope: Scope,
        prefix: String,
    },
    /// A logged-in user of the web app.
    User(Session),
    /// A share link: one map, read-only.
    Share(SharedMap),
}

impl Caller {
    pub fn scope(&self) -> Scope {
        match self {
            Caller::Token { scope, .. } => *scope,
            Caller::User(s) => s.user.role.scope(),
            Caller::Share(_) => Scope::Read,
        }
    }

    /// How the caller is named in what they change (`updated_by`).
    pub fn name(&self) -> String {
        match self {
            Caller::Token { prefix, .. } => format!("token {prefix}…"),
            Caller::User(s) => s.user.email.clone(),
            Caller::Share(m) => format!("a share link of map {}", m.name),
        }
    }
}

/// The caller of a request: a token, else a session cookie (with its CSRF token on
/// state-changing methods); `401` without either.
pub fn caller(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
    if let Some(c) = parts.extensions.get::<Caller>() {
        return Ok(c.clone());
    }
    let resolved = if let Some(token) = parts.headers.typed_get::<Authorization<Bearer>>() {
        let secret = token.token().trim();
        let (project, scope) = state.lookup(secret, KeyKind::Read)?;
        // counted after the token checks out: made-up tokens cannot use up a real one's budget
        state.token_limit.check(secret)?;
        Caller::Token {
            project,
            scope: scope.unwrap_or(Scope::Read),
            prefix: secret.chars().take(10).collect(),
        }
    } else if let Some(secret) = parts
        .headers
        .get(SHARE_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        let secret = secret.trim().to_string();
        let shared = state
            .app
            .shared_map(&secret)?
            .ok_or(ApiError::Unauthorized(
                "this share link has expired or was revoked".into(),
            ))?;
        state.token_limit.check(&secret)?;
        Caller::Share(shared)
    } else if let Some(secret) = session_secret(&parts.headers) {
        let session = state.app.session(&secret)?.ok_or(ApiError::Unauthorized(
            "the session has ended (logged out or expired): log in again".into(),
        ))?;
        if !is_safe(&parts.method) {
            check_csrf(&parts.headers, &session)?;
        }
        state
            .token_limit
            .check(&format!("user {}", session.user.id))?;
        Caller::User(session)
    } else {
        return Err(ApiError::Unauthorized(
            "log in, or send a token: Authorization: Bearer rt_… (read), et_… (edit) or at_… (admin)"
                .into(),
        ));
    };
    parts.extensions.insert(resolved.clone());
    Ok(resolved)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The session secret in the request's cookie, if any.
pub fn session_secret(headers: &HeaderMap) -> Option<String> {
    CookieJar::from_headers(headers)
        .get(SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
}

/// A state-changing request from a browser must carry the session's CSRF token in a header
/// (another site's page can make the browser send the cookie, not read the token).
fn check_csrf(headers: &HeaderMap, session: &Session) -> Result<(), ApiError> {
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if sent.is_empty() || !bool::from(sent.as_bytes().ct_eq(session.csrf.as_bytes())) {
        return Err(ApiError::Forbidden(format!(
            "a state-changing request of a logged-in user needs the session's CSRF token in {CSRF_HEADER} (docs/security.md)"
        )));
    }
    Ok(())
}

/// The project of the request, if its caller holds at least `needed` there: the one check every
/// query-API route goes through (401 without a live credential, 403 with a lesser one).
fn caller_project(parts: &mut Parts, state: &AppState, needed: Scope) -> Result<String, ApiError> {
    let who = caller(parts, state)?;
    if let Caller::Share(m) = &who {
        let project = share_project(parts, m, needed)?;
        // the analyses it may run are checked on their bodies too: see `SharedCaller`
        parts.extensions.insert(SharedCaller(m.clone()));
        return Ok(project);
    }
    let scope = who.scope();
    if scope < needed {
        let what = match &who {
            Caller::Token { .. } => format!("this {} token", scope.as_str()),
            Caller::User(s) => format!("a user with the {} role", s.user.role.as_str()),
            Caller::Share(_) => unreachable!("share links are checked apart"),
        };
        return Err(ApiError::Forbidden(format!(
            "{what} may not do this: {} {} needs the {} scope (docs/security.md)",
            parts.method,
            parts.uri.path(),
            needed.as_str()
        )));
    }
    match who {
        Caller::Token { project, .. } => Ok(project),
        Caller::Share(m) => Ok(m.project),
        Caller::User(_) => {
            let project = parts
                .headers
                .get(PROJECT_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(DEFAULT_PROJECT)
                .to_string();
            // a user's role holds in every project; the project must exist
            state.app.meta().project(&project)?;
            Ok(project)
        }
    }
}

/// Set on a request made with a share link: the analysis routes check their body against the
/// link's map ([`itinera_app::App::check_shared_request`]).
#[derive(Clone)]
pub struct SharedCaller(pub SharedMap);

/// The project of a share link's request, if the link may make it: reading its own map, or
/// running one of [`SHARE_ROUTES`]; `403` for anything else.
fn share_project(parts: &Parts, m: &SharedMap, needed: Scope) -> Result<String, ApiError> {
    let path = parts.uri.path();
    let own_map = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .is_ok_and(|p| p == format!("/api/v1/maps/{}", m.name));
    let allowed = needed == Scope::Read
        && ((parts.method == Method::GET && own_map)
            || SHARE_ROUTES
                .iter()
                .any(|(method, route)| parts.method.as_str() == *method && path == *route));
    if allowed {
        Ok(m.project.clone())
    } else {
        Err(ApiError::Forbidden(format!(
            "a share link shows one map, read-only: {} {} is not part of it (docs/security.md)",
            parts.method, path
        )))
    }
}

/// The write key of a tracking request: the HTTP Basic user name, else `writeKey` in the body.
pub fn write_key(headers: &HeaderMap, in_body: Option<&str>) -> Option<String> {
    headers
        .typed_get::<Authorization<Basic>>()
        .map(|a| a.username().to_string())
        .filter(|u| !u.is_empty())
        .or_else(|| in_body.filter(|s| !s.is_empty()).map(str::to_string))
}

macro_rules! scoped_extractor {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        pub struct $name(pub String);

        impl FromRequestParts<Arc<AppState>> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &Arc<AppState>,
            ) -> Result<Self, Self::Rejection> {
                caller_project(parts, state, $scope).map($name)
            }
        }
    };
}

scoped_extractor!(
    /// The project of a caller that may read (any token, any user).
    ReadProject,
    Scope::Read
);
scoped_extractor!(
    /// The project of a caller that may edit maps, definitions, surveys, alert rules and cases.
    EditProject,
    Scope::Edit
);
scoped_extractor!(
    /// The project of a caller that may also manage credentials.
    AdminProject,
    Scope::Admin
);

/// The caller, once a scoped extractor has checked it (for `updated_by`).
impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        caller(parts, state)
    }
}

/// A logged-in user with the admin role: managing users is for people, not project tokens (a
/// user's role holds in every project, a token belongs to one).
pub struct AdminUser(pub Session);

impl FromRequestParts<Arc<AppState>> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        match caller(parts, state)? {
            Caller::User(s) if s.user.role == itinera_meta::Role::Admin => Ok(AdminUser(s)),
            _ => Err(ApiError::Forbidden(format!(
                "{} {} is for a logged-in admin user (users are managed in the web app or with `itinera users`)",
                parts.method,
                parts.uri.path()
            ))),
        }
    }
}

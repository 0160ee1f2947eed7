//! Who is calling and what they may do, in one place (the model is `docs/security.md`): tokens for
//! the query API (`Authorization: Bearer …`), each with a scope — read, edit or admin — checked by
//! the [`ReadProject`], [`EditProject`] and [`AdminProject`] extractors before anything else of the
//! request is read; write keys for tracking (HTTP Basic user name, or `writeKey` in the body),
//! which are never tokens. Successful lookups are cached briefly so a revoked credential stops
//! working within `auth_cache_seconds`.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum_extra::headers::authorization::{Basic, Bearer};
use axum_extra::headers::{Authorization, HeaderMapExt};
use itinera_meta::{KeyKind, Scope};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
            None => Err(ApiError::Unauthorized(match kind {
                KeyKind::Write => "unknown or revoked write key",
                KeyKind::Read => "unknown or revoked token",
            })),
        }
    }

    /// The project of a live write key.
    pub fn authenticate(&self, secret: &str, kind: KeyKind) -> Result<String, ApiError> {
        self.lookup(secret, kind).map(|(p, _)| p)
    }
}

/// The project of the request's token, if the token holds at least `needed`: the one check every
/// query-API route goes through (401 without a live token, 403 with one of a lesser scope).
fn token_project(parts: &Parts, state: &AppState, needed: Scope) -> Result<String, ApiError> {
    let token =
        parts
            .headers
            .typed_get::<Authorization<Bearer>>()
            .ok_or(ApiError::Unauthorized(
            "a token is required: Authorization: Bearer rt_… (read), et_… (edit) or at_… (admin)",
        ))?;
    let (project, scope) = state.lookup(token.token().trim(), KeyKind::Read)?;
    // counted after the token checks out: made-up tokens cannot use up a real one's budget
    state.token_limit.check(token.token().trim())?;
    let scope = scope.unwrap_or(Scope::Read);
    if scope < needed {
        return Err(ApiError::Forbidden(format!(
            "this {} token may not do this: {} {} needs a token with the {} scope (docs/security.md)",
            scope.as_str(),
            parts.method,
            parts.uri.path(),
            needed.as_str()
        )));
    }
    Ok(project)
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
                token_project(parts, state, $scope).map($name)
            }
        }
    };
}

scoped_extractor!(
    /// The project of a token that may read (any token).
    ReadProject,
    Scope::Read
);
scoped_extractor!(
    /// The project of a token that may edit definitions, surveys, alert rules and cases.
    EditProject,
    Scope::Edit
);
scoped_extractor!(
    /// The project of a token that may also manage credentials and users.
    AdminProject,
    Scope::Admin
);

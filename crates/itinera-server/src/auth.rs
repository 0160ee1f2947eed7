//! Who is calling, in one place: read tokens for the query API (`Authorization: Bearer rt_…`, the
//! [`ReadProject`] extractor), write keys for tracking (HTTP Basic user name, or `writeKey` in the
//! body). Successful lookups are cached briefly so a revoked key stops working within
//! `auth_cache_seconds`.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum_extra::headers::authorization::{Basic, Bearer};
use axum_extra::headers::{Authorization, HeaderMapExt};
use itinera_meta::KeyKind;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Recently authenticated secrets and their project.
#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<(String, KeyKind), (String, Instant)>>,
}

impl AppState {
    /// The project of a live credential of the given kind; cached briefly.
    pub fn authenticate(&self, secret: &str, kind: KeyKind) -> Result<String, ApiError> {
        let ttl = Duration::from_secs(self.app.config.auth_cache_seconds);
        let cache_key = (secret.to_string(), kind);
        if let Some((project, at)) = self.auth.entries.lock().get(&cache_key) {
            if at.elapsed() < ttl {
                return Ok(project.clone());
            }
        }
        match self.app.meta().authenticate(secret, kind)? {
            Some(p) => {
                let mut cache = self.auth.entries.lock();
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(cache_key, (p.clone(), Instant::now()));
                Ok(p)
            }
            None => Err(ApiError::Unauthorized(match kind {
                KeyKind::Write => "unknown or revoked write key",
                KeyKind::Read => "unknown or revoked read token",
            })),
        }
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

/// The project of the request's read token; rejects the request (401) before anything else of it
/// is read.
pub struct ReadProject(pub String);

impl FromRequestParts<Arc<AppState>> for ReadProject {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token =
            parts
                .headers
                .typed_get::<Authorization<Bearer>>()
                .ok_or(ApiError::Unauthorized(
                    "a read token is required: Authorization: Bearer rt_…",
                ))?;
        state
            .authenticate(token.token().trim(), KeyKind::Read)
            .map(ReadProject)
    }
}

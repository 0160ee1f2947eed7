//! API errors, mapped to HTTP statuses at this edge. Bodies are JSON naming the field and reason.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use itinera_app::AppError;
use itinera_core::ingest::IndexedError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {reason}")]
    BadRequest { field: String, reason: String },
    #[error("no message could be stored")]
    Invalid(Vec<IndexedError>),
    #[error("{0}")]
    Unauthorized(std::borrow::Cow<'static, str>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedEncoding(String),
    #[error("rate limit exceeded; retry after {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Invalid { field, reason } => ApiError::BadRequest { field, reason },
            AppError::NotFound(m) => ApiError::NotFound(m),
            AppError::Unauthorized(m) => ApiError::Unauthorized(m.into()),
            AppError::Forbidden(m) => ApiError::Forbidden(m),
            AppError::Conflict(m) => ApiError::Conflict(m),
            AppError::TooLarge(m) => ApiError::TooLarge(m),
            AppError::Busy { retry_after_s } => ApiError::RateLimited(retry_after_s),
            AppError::Cancelled | AppError::TimedOut { .. } | AppError::OverMemory { .. } => {
                ApiError::Unavailable(e.to_string())
            }
            AppError::Unavailable(m) => ApiError::Unavailable(m),
            AppError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<itinera_app::DataDirError> for ApiError {
    fn from(e: itinera_app::DataDirError) -> Self {
        AppError::from(e).into()
    }
}

impl From<itinera_meta::MetaError> for ApiError {
    fn from(e: itinera_meta::MetaError) -> Self {
        AppError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest { .. } | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        // `code` and `message` are what the Segment SDKs read from an error answer
        let code = status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
            .replace(' ', "_");
        // the server's own paths are for its log, not for callers (anyone with a public write
        // key): 5xx answers name the reason without them
        let public = if status.is_server_error() {
            redact_paths(&self.to_string())
        } else {
            self.to_string()
        };
        let body = match &self {
            ApiError::BadRequest { field, reason } => json!({
                "success": false, "error": self.to_string(), "code": code, "message": self.to_string(),
                "errors": [{"index": 0, "field": field, "reason": reason}]
            }),
            ApiError::Invalid(errors) => {
                json!({"success": false, "error": self.to_string(), "errors": errors})
            }
            _ => json!({"success": false, "error": public}),
        };
        let mut resp = (status, Json(body)).into_response();
        if let ApiError::RateLimited(s) = self {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// `text` with every absolute path replaced by `[path]` (a trailing `:` or `,` kept).
pub(crate) fn redact_paths(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let bare = word.trim_start_matches(['"', '\'', '(']);
            if bare.starts_with('/') && bare.len() > 1 {
                let tail = &word[word.trim_end_matches([':', ',', ')', '"']).len()..];
                format!("[path]{tail}")
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_are_redacted() {
        assert_eq!(
            super::redact_paths(
                "the store is read-only: a write failed: i/o error on /tmp/x/wal/1.log: No space left on device (os error 28)"
            ),
            "the store is read-only: a write failed: i/o error on [path]: No space left on device (os error 28)"
        );
    }
}

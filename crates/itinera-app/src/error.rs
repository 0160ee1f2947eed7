//! Errors of the application layer. Each face maps them to its own terms (HTTP statuses in the
//! server, exit messages in the CLI); the variants say what went wrong, not how to show it.

use crate::datadir::DataDirError;
use itinera_engine::EngineError;
use itinera_meta::MetaError;
use itinera_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is wrong: names the field and why.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    /// Credentials are missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// The change was based on a state that someone else changed meanwhile.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// Too many requests or jobs; worth retrying after this many seconds.
    #[error("too many requests; retry after {retry_after_s} s")]
    Busy { retry_after_s: u64 },
    /// A query was cancelled (by its owner, or because its client went away).
    #[error("query cancelled")]
    Cancelled,
    /// A query used up its time budget and was stopped.
    #[error("the query took longer than its budget of {seconds} s (query_timeout_seconds) and was stopped; narrow its date range, population or settings")]
    TimedOut { seconds: u64 },
    /// A query went over its memory budget and was stopped.
    #[error("the query needed more memory than its budget of {mib} MiB (query_memory_mb) and was stopped; narrow its date range, population or settings")]
    OverMemory { mib: u64 },
    /// A dependency cannot serve now (the store is read-only or closed, an SMTP relay failed).
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;

impl AppError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> AppError {
        AppError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Invalid { field, reason } => AppError::Invalid { field, reason },
            EngineError::Cancelled => AppError::Cancelled,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ReadOnly(_) | StoreError::Closed => AppError::Unavailable(e.to_string()),
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<MetaError> for AppError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::NoProject(_) | MetaError::NoKey(_) => AppError::NotFound(e.to_string()),
            MetaError::BadValue(reason) => AppError::invalid("value", reason),
            MetaError::Invalid { field, reason } => AppError::invalid(field, reason),
            MetaError::Stale => AppError::Conflict(e.to_string()),
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<DataDirError> for AppError {
    fn from(e: DataDirError) -> Self {
        match e {
            DataDirError::Meta(m) => m.into(),
            DataDirError::Store(s) => s.into(),
            DataDirError::OpenFailed { .. } => AppError::Unavailable(e.to_string()),
            other => AppError::Internal(other.to_string()),
        }
    }
}

//! Errors of the engine: always about the query, never about storage.

/// A query the engine cannot run, naming the field at fault and why.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EngineError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("query cancelled")]
    Cancelled,
}

impl EngineError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        EngineError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;

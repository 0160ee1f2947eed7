use std::path::PathBuf;

/// Errors of the journey store. Corruption is reported with what and where, never mis-read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("data directory format {found} is newer than this binary supports ({supported}); upgrade itinera")]
    TooNew { found: u32, supported: u32 },
    #[error("the store is read-only: {0}")]
    ReadOnly(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("data directory {0} is in use by another itinera process (stop it, or query it through its server with --server)")]
    InUse(PathBuf),
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

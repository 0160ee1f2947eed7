//! A data directory: the metadata database and one journey store per project, opened on demand.
//! Used by the server and by the CLI commands that work on data without a server; as
//! [`Backends`] it hands out each project's embedded backend.

use crate::backend::{Backend, Backends};
use crate::embedded::Embedded;
use itinera_meta::{Meta, MetaError};
use itinera_store::{Store, StoreConfig, StoreError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the directory layout (meta database + `projects/<name>/`).
pub const LAYOUT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot use data directory {path}: {reason}")]
    Dir { path: PathBuf, reason: String },
    /// A project's store failed to open a moment ago; it is not tried again before
    /// [`RETRY_OPEN`] has passed.
    #[error("the store of project {project} could not be opened ({reason}); trying again {retry_in_s} s from now")]
    OpenFailed {
        project: String,
        reason: String,
        retry_in_s: u64,
    },
}

/// How long a store that failed to open is left alone: opening replays its log, and a damaged
/// one must not be replayed on every request (`/healthz` opens every project).
pub const RETRY_OPEN: std::time::Duration = std::time::Duration::from_secs(30);

pub struct DataDir {
    root: PathBuf,
    store_config: StoreConfig,
    pub meta: Mutex<Meta>,
    stores: Mutex<HashMap<String, Store>>,
    /// Stores that failed to open: when, and why.
    failed: Mutex<HashMap<String, (std::time::Instant, String)>>,
}

impl DataDir {
    pub fn open(root: &Path, store_config: StoreConfig) -> Result<Arc<DataDir>, DataDirError> {
        let dir_err = |reason: String| DataDirError::Dir {
            path: root.to_path_buf(),
            reason,
        };
        let new = !root.exists();
        std::fs::create_dir_all(root.join("projects")).map_err(|e| dir_err(e.to_string()))?;
        if new {
            // the metadata holds secrets (the survey-link key, webhook secrets): only the owner
            restrict(root, 0o700).map_err(|e| dir_err(e.to_string()))?;
        }
        let layout = root.join("LAYOUT");
        match std::fs::read_to_string(&layout) {
            Ok(s) => {
                let v: u32 = s
                    .trim()
                    .parse()
                    .map_err(|_| dir_err(format!("unreadable LAYOUT file {s:?}")))?;
                if v > LAYOUT_VERSION {
                    return Err(dir_err(format!(
                        "layout version {v} is newer than this binary supports ({LAYOUT_VERSION}); upgrade itinera"
                    )));
                }
            }
            Err(_) => std::fs::write(&layout, format!("{LAYOUT_VERSION}\n"))
                .map_err(|e| dir_err(e.to_string()))?,
        }
        let meta_path = root.join("meta.sqlite");
        let new_meta = !meta_path.exists();
        let meta = Meta::open(&meta_path)?;
        if new_meta {
            restrict(&meta_path, 0o600).map_err(|e| dir_err(e.to_string()))?;
        }
        Ok(Arc::new(DataDir {
            root: root.to_path_buf(),
            store_config,
            meta: Mutex::new(meta),
            stores: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
        }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a project's store lives.
    pub fn project_dir(&self, project: &str) -> PathBuf {
        self.root.join("projects").join(project)
    }

    /// Sets damaged parts of a project's write-ahead log aside so that its store opens again
    /// (`itinera recover`); the store must not be open in any process.
    pub fn recover_log(
        &self,
        project: &str,
    ) -> Result<itinera_store::wal::RecoverReport, DataDirError> {
        self.meta.lock().project(project)?;
        if self.stores.lock().contains_key(project) {
            return Err(DataDirError::from(itinera_store::StoreError::InUse(
                self.project_dir(project),
            )));
        }
        Ok(Store::recover(&self.project_dir(project))?)
    }

    /// The store of a project, opened (and its log replayed) on first use.
    pub fn store(&self, project: &str) -> Result<Store, DataDirError> {
        if let Some(s) = self.stores.lock().get(project) {
            return Ok(s.clone());
        }
        self.meta.lock().project(project)?;
        let mut stores = self.stores.lock();
        if let Some(s) = stores.get(project) {
            return Ok(s.clone());
        }
        if let Some((at, reason)) = self.failed.lock().get(project) {
            if at.elapsed() < RETRY_OPEN {
                return Err(DataDirError::OpenFailed {
                    project: project.to_string(),
                    reason: reason.clone(),
                    retry_in_s: (RETRY_OPEN - at.elapsed()).as_secs().max(1),
                });
            }
        }
        match Store::open(&self.project_dir(project), self.store_config.clone()) {
            Ok(s) => {
                self.failed.lock().remove(project);
                stores.insert(project.to_string(), s.clone());
                Ok(s)
            }
            Err(e) => {
                tracing::error!(project, error = %e, "the project's store could not be opened");
                self.failed.lock().insert(
                    project.to_string(),
                    (std::time::Instant::now(), e.to_string()),
                );
                Err(e.into())
            }
        }
    }

    /// Stores opened so far.
    pub fn open_stores(&self) -> Vec<(String, Store)> {
        let mut v: Vec<_> = self
            .stores
            .lock()
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Flushes and closes every open store.
    pub fn close(&self) {
        for (name, s) in self.stores.lock().drain() {
            if let Err(e) = s.flush() {
                tracing::warn!(project = %name, error = %e, "flush at shutdown failed; the log keeps the data");
            }
            s.close();
        }
    }
}

impl Backends for DataDir {
    fn project(&self, project: &str) -> crate::Result<Backend> {
        Ok(std::sync::Arc::new(Embedded(self.store(project)?)))
    }

    fn opened(&self) -> Vec<(String, Backend)> {
        self.open_stores()
            .into_iter()
            .map(|(name, s)| (name, std::sync::Arc::new(Embedded(s)) as Backend))
            .collect()
    }
}

/// Sets `path`'s permission bits (Unix); elsewhere nothing.
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that cannot open is not replayed again on every request: the failure is kept for
    /// a while and told as such (what `/healthz`, which opens every project, relies on).
    #[test]
    fn a_store_that_failed_to_open_is_left_alone_for_a_while() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path(), StoreConfig::default()).unwrap();
        dir.meta.lock().ensure_project("broken").unwrap();
        std::fs::create_dir_all(tmp.path().join("projects")).unwrap();
        // a file where the project's directory belongs
        std::fs::write(dir.project_dir("broken"), b"not a store").unwrap();
        let first = dir.store("broken").err().expect("a file is no store");
        assert!(!matches!(first, DataDirError::OpenFailed { .. }), "{first}");
        let again = dir.store("broken").err().expect("still broken");
        assert!(
            matches!(&again, DataDirError::OpenFailed { project, retry_in_s, .. } if project == "broken" && *retry_in_s <= 30),
            "{again}"
        );
        assert!(dir.store("default").is_ok(), "other projects open");
    }
}

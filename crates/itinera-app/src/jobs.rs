//! Analyses run in the background: started, polled for progress, cancelled, their results kept
//! for a while for their owner. A job belongs to its project; other projects cannot see it.

use crate::error::{AppError, Result};
use itinera_engine::QueryControl;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Finished jobs are kept this long for their owner to fetch.
pub const JOB_TTL: Duration = Duration::from_secs(600);
/// At most this many jobs (running or finished) are kept in all.
pub const MAX_JOBS: usize = 256;
/// At most this many per project, so that one project cannot take every other's place (and its
/// kept results bound its memory).
pub const MAX_JOBS_PER_PROJECT: usize = 32;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    /// Cancelled by its owner, not yet stopped.
    Cancelling,
    Done,
    Cancelled,
    Failed,
}

/// A job as its owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobStatus {
    pub id: String,
    pub status: JobState,
    pub progress: f64,
    pub elapsed_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

struct Job {
    project: String,
    control: Arc<QueryControl>,
    started: Instant,
    finished: Option<(Instant, Result<Value>)>,
}

impl Job {
    fn status(&self, id: &str) -> JobStatus {
        let (status, result, error, elapsed) = match &self.finished {
            None if self.control.is_cancelled() => {
                (JobState::Cancelling, None, None, self.started.elapsed())
            }
            None => (JobState::Running, None, None, self.started.elapsed()),
            Some((at, Ok(v))) => (JobState::Done, Some(v.clone()), None, *at - self.started),
            Some((at, Err(e @ AppError::Cancelled))) => (
                JobState::Cancelled,
                None,
                Some(e.to_string()),
                *at - self.started,
            ),
            Some((at, Err(e))) => (
                JobState::Failed,
                None,
                Some(e.to_string()),
                *at - self.started,
            ),
        };
        JobStatus {
            id: id.to_string(),
            status,
            progress: if self.finished.is_some() {
                1.0
            } else {
                self.control.progress()
            },
            elapsed_ms: elapsed.as_millis(),
            result,
            error,
        }
    }
}

/// The jobs of a process.
#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<HashMap<String, Job>>,
}

impl Jobs {
    /// Registers a new job of `project`; its id and the control its run must honour.
    pub fn start(&self, project: &str) -> Result<(String, Arc<QueryControl>)> {
        let id = format!("q_{:016x}", rand::random::<u64>());
        let control = QueryControl::new();
        let mut jobs = self.jobs.lock();
        jobs.retain(|_, j| {
            j.finished
                .as_ref()
                .is_none_or(|(at, _)| at.elapsed() < JOB_TTL)
        });
        let mine: Vec<&Job> = jobs.values().filter(|j| j.project == project).collect();
        if mine.len() >= MAX_JOBS_PER_PROJECT || jobs.len() >= MAX_JOBS {
            // a true Retry-After: when the project's oldest kept result expires (a slot frees
            // then at the latest), or soon when its jobs are all still running
            let pool: Vec<&Job> = if mine.len() >= MAX_JOBS_PER_PROJECT {
                mine
            } else {
                jobs.values().collect()
            };
            let retry_after_s = pool
                .iter()
                .filter_map(|j| {
                    j.finished
                        .as_ref()
                        .map(|(at, _)| JOB_TTL.saturating_sub(at.elapsed()))
                })
                .min()
                .map_or(5, |d| d.as_secs().max(1));
            return Err(AppError::Busy { retry_after_s });
        }
        jobs.insert(
            id.clone(),
            Job {
                project: project.to_string(),
                control: control.clone(),
                started: Instant::now(),
                finished: None,
            },
        );
        Ok((id, control))
    }

    /// Asks every job to stop (the server is shutting down).
    pub fn cancel_all(&self) {
        for j in self.jobs.lock().values() {
            j.control.cancel();
        }
    }

    /// Records a job's outcome.
    pub fn finish(&self, id: &str, outcome: Result<Value>) {
        if let Some(job) = self.jobs.lock().get_mut(id) {
            job.finished = Some((Instant::now(), outcome));
        }
    }

    /// The status of `project`'s job `id`; another project's job is as invisible as a missing one.
    pub fn status(&self, project: &str, id: &str) -> Result<JobStatus> {
        self.with(project, id, |j| j.status(id))
    }

    /// Asks `project`'s job `id` to stop; its status after asking.
    pub fn cancel(&self, project: &str, id: &str) -> Result<JobStatus> {
        self.with(project, id, |j| {
            j.control.cancel();
            j.status(id)
        })
    }

    fn with<T>(&self, project: &str, id: &str, f: impl FnOnce(&Job) -> T) -> Result<T> {
        match self.jobs.lock().get(id) {
            Some(j) if j.project == project => Ok(f(j)),
            _ => Err(AppError::NotFound(format!("no query {id}"))),
        }
    }
}

#[cfg(test)]
mod fairness_tests {
    use super::*;

    /// One project filling its share of jobs does not stop another's, and the refusal says
    /// when a slot frees: when its oldest kept result expires.
    #[test]
    fn one_project_cannot_take_every_slot() {
        let jobs = Jobs::default();
        for _ in 0..MAX_JOBS_PER_PROJECT {
            let (id, _) = jobs.start("busy").unwrap();
            jobs.finish(&id, Ok(Value::Null));
        }
        match jobs.start("busy") {
            Err(AppError::Busy { retry_after_s }) => {
                assert!(
                    retry_after_s > JOB_TTL.as_secs() - 60 && retry_after_s <= JOB_TTL.as_secs()
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(jobs.start("quiet").is_ok());
        jobs.cancel_all();
    }
}

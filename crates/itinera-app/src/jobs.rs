//! Analyses run in the background: started, polled for progress, cancelled, their results kept
//! for a while for their owner. A job belongs to its project; other projects cannot see it.
//! Results are kept as compressed JSON, at most [`MAX_RESULT_BYTES_PER_PROJECT`] per project:
//! a parsed answer takes several times its text in memory, and forty kept CLV answers once held
//! more than a gigabyte.

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
/// Compressed result bytes kept per project; beyond it the oldest results are let go first.
pub const MAX_RESULT_BYTES_PER_PROJECT: usize = 64 << 20;

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
    /// Done, but its result was let go to keep the project's results within their bound.
    Expired,
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
    finished: Option<(Instant, Result<Kept>)>,
}

/// A finished job's result as kept.
enum Kept {
    /// The answer's JSON, zstd-compressed.
    Result(Vec<u8>),
    /// Let go to bound the project's memory.
    Expired,
}

impl Kept {
    fn compress(value: &Value, cap: usize) -> Result<Kept> {
        let json = serde_json::to_vec(value).map_err(|e| AppError::Internal(e.to_string()))?;
        let packed =
            zstd::bulk::compress(&json, 3).map_err(|e| AppError::Internal(e.to_string()))?;
        if packed.len() > cap {
            return Err(AppError::TooLarge(format!(
                "the result is {:.1} MiB compressed, more than the {:.1} MiB kept per project; narrow the query",
                packed.len() as f64 / 1048576.0,
                cap as f64 / 1048576.0
            )));
        }
        Ok(Kept::Result(packed))
    }

    fn bytes(&self) -> usize {
        match self {
            Kept::Result(b) => b.len(),
            Kept::Expired => 0,
        }
    }

    fn value(packed: &[u8]) -> Result<Value> {
        let json =
            zstd::stream::decode_all(packed).map_err(|e| AppError::Internal(e.to_string()))?;
        serde_json::from_slice(&json).map_err(|e| AppError::Internal(e.to_string()))
    }
}

impl Job {
    fn status(&self, id: &str) -> JobStatus {
        let (status, result, error, elapsed) = match &self.finished {
            None if self.control.is_cancelled() => {
                (JobState::Cancelling, None, None, self.started.elapsed())
            }
            None => (JobState::Running, None, None, self.started.elapsed()),
            Some((at, Ok(Kept::Result(packed)))) => match Kept::value(packed) {
                Ok(v) => (JobState::Done, Some(v), None, *at - self.started),
                Err(e) => (JobState::Failed, None, Some(e.to_string()), *at - self.started),
            },
            Some((at, Ok(Kept::Expired))) => (
                JobState::Expired,
                None,
                Some(format!(
                    "the result was let go to keep this project's kept results under {} MiB; run the query again",
                    MAX_RESULT_BYTES_PER_PROJECT >> 20
                )),
                *at - self.started,
            ),
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
pub struct Jobs {
    jobs: Mutex<HashMap<String, Job>>,
    /// Compressed result bytes kept per project.
    result_bytes_cap: usize,
}

impl Default for Jobs {
    fn default() -> Jobs {
        Jobs {
            jobs: Default::default(),
            result_bytes_cap: MAX_RESULT_BYTES_PER_PROJECT,
        }
    }
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

    /// Records a job's outcome, compressed; older results of its project are let go, oldest
    /// first, while the project keeps more than [`MAX_RESULT_BYTES_PER_PROJECT`].
    pub fn finish(&self, id: &str, outcome: Result<Value>) {
        // compressed before the lock: other jobs' polls need not wait for it
        let kept = outcome.and_then(|v| Kept::compress(&v, self.result_bytes_cap));
        let mut jobs = self.jobs.lock();
        let Some(job) = jobs.get_mut(id) else {
            return;
        };
        job.finished = Some((Instant::now(), kept));
        let project = job.project.clone();
        let size = |j: &Job| match &j.finished {
            Some((_, Ok(k))) => k.bytes(),
            _ => 0,
        };
        let mut held: Vec<(Instant, &mut Job)> = jobs
            .values_mut()
            .filter(|j| j.project == project && size(j) > 0)
            .map(|j| (j.finished.as_ref().map_or(j.started, |f| f.0), j))
            .collect();
        let mut total: usize = held.iter().map(|(_, j)| size(j)).sum();
        held.sort_by_key(|(at, _)| *at);
        for (_, j) in held {
            if total <= self.result_bytes_cap {
                break;
            }
            total -= size(j);
            if let Some((_, kept)) = &mut j.finished {
                *kept = Ok(Kept::Expired);
            }
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

    /// Results are kept compressed and within the project's bound: the oldest go first and
    /// say so; the newest, and other projects' results, stay.
    #[test]
    fn kept_results_are_bounded_per_project() {
        let jobs = Jobs {
            result_bytes_cap: 1 << 20,
            ..Default::default()
        };
        // random letters (about 0.6 bytes each compressed): 0.3 MiB of the 1 MiB bound each
        let big = |seed: u64| {
            let mut x = seed | 1;
            let s: String = (0..1usize << 19)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'a' + (x % 26) as u8)
                })
                .collect();
            serde_json::json!({ "text": s })
        };
        let (other, _) = jobs.start("other").unwrap();
        jobs.finish(&other, Ok(big(99)));
        let ids: Vec<String> = (0..5)
            .map(|k| {
                let (id, _) = jobs.start("busy").unwrap();
                jobs.finish(&id, Ok(big(2 * k + 1)));
                std::thread::sleep(Duration::from_millis(2));
                id
            })
            .collect();
        let states: Vec<JobState> = ids
            .iter()
            .map(|id| jobs.status("busy", id).unwrap().status)
            .collect();
        assert_eq!(
            states,
            [
                JobState::Expired,
                JobState::Expired,
                JobState::Done,
                JobState::Done,
                JobState::Done
            ]
        );
        let last = jobs.status("busy", &ids[4]).unwrap();
        assert_eq!(
            last.result,
            Some(big(9)),
            "a kept result reads back as it was"
        );
        assert!(jobs
            .status("busy", &ids[0])
            .unwrap()
            .error
            .unwrap()
            .contains("let go"));
        assert_eq!(jobs.status("other", &other).unwrap().status, JobState::Done);
        // a small answer is kept compressed
        let (id, _) = jobs.start("small").unwrap();
        jobs.finish(&id, Ok(serde_json::json!({ "rows": vec![1.5; 10_000] })));
        let held = match &jobs.jobs.lock()[&id].finished {
            Some((_, Ok(k))) => k.bytes(),
            _ => unreachable!(),
        };
        assert!(held < 1_000, "40 KB of JSON kept as {held} bytes");
        // a result larger than the bound is refused with the reason
        let (id, _) = jobs.start("small").unwrap();
        jobs.finish(
            &id,
            Ok(serde_json::json!([big(5), big(7), big(9), big(11)])),
        );
        let status = jobs.status("small", &id).unwrap();
        assert_eq!(status.status, JobState::Failed);
        assert!(status.error.unwrap().contains("kept per project"));
    }
}

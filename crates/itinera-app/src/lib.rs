//! Itinera's application layer: what every face (the HTTP server, the CLI, the web app through
//! the server) shares. Typed analysis requests and their resolution against the project's saved
//! definitions, populations, jobs, surveys, alerts and cases, run on a backend through the seam
//! in [`backend`]. Nothing here knows HTTP or command lines; errors are [`AppError`]s the faces
//! map to their own terms.

pub mod alerts;
pub mod analysis;
pub mod backend;
pub mod breakdown;
pub mod cases;
pub mod config;
pub mod datadir;
pub mod definitions;
pub mod demo;
pub mod destinations;
pub mod embedded;
pub mod error;
pub mod jobs;
pub mod maps;
pub mod message_ids;
pub mod outbound;
pub mod population;
pub mod surveys;
pub mod triggers;
pub mod users;

pub use analysis::{AnalysisRequest, PersonStagesRequest};
pub use backend::{Backend, Backends, EventSink, JourneyBackend};
pub use config::Config;
pub use datadir::{DataDir, DataDirError};
pub use error::{AppError, Result};
pub use itinera_core::clock::now_ms;
pub use message_ids::new_message_id;
pub use population::{Population, PopulationDef};

use itinera_engine::segments::SegmentsReport;
use itinera_engine::{PersonJourney, ScanOptions};
use itinera_meta::{DefinitionKind, Meta};
use serde_json::Value;
use std::sync::Arc;

/// The application: configuration, the data directory's metadata, the projects' backends and
/// the jobs. One per process, shared by every face.
pub struct App {
    pub config: Config,
    pub data: Arc<DataDir>,
    backends: Arc<dyn Backends>,
    pub jobs: jobs::Jobs,
    /// Trigger rules evaluated as touchpoints arrive (started by the server).
    pub triggers: triggers::Triggers,
    /// Analyses answered while the client waits, so that a shutdown can stop them too.
    running: parking_lot::Mutex<Vec<std::sync::Weak<itinera_engine::QueryControl>>>,
}

impl App {
    /// The application over a data directory, its projects on the embedded backend.
    pub fn new(config: Config, data: Arc<DataDir>) -> Arc<App> {
        let backends: Arc<dyn Backends> = data.clone();
        App::with_backends(config, data, backends)
    }

    /// The application with the projects' journeys on other backends.
    pub fn with_backends(
        config: Config,
        data: Arc<DataDir>,
        backends: Arc<dyn Backends>,
    ) -> Arc<App> {
        Arc::new(App {
            config,
            data,
            backends,
            jobs: jobs::Jobs::default(),
            triggers: Default::default(),
            running: Default::default(),
        })
    }

    /// A control for an analysis a client waits for; [`App::stop_all`] cancels it.
    pub fn query_control(&self) -> Arc<itinera_engine::QueryControl> {
        let control = itinera_engine::QueryControl::new();
        let mut running = self.running.lock();
        running.retain(|w| w.strong_count() > 0);
        running.push(Arc::downgrade(&control));
        control
    }

    /// Stops every analysis in progress, jobs included: the process is shutting down and must
    /// not wait for scans or chain solves nobody will read.
    pub fn stop_all(&self) {
        self.jobs.cancel_all();
        for c in self.running.lock().iter().filter_map(|w| w.upgrade()) {
            c.cancel();
        }
    }

    /// The metadata database (held briefly: no scans under this lock).
    pub fn meta(&self) -> parking_lot::MutexGuard<'_, Meta> {
        self.data.meta.lock()
    }

    /// The backend of a project.
    pub fn backend(&self, project: &str) -> Result<Backend> {
        self.backends.project(project)
    }

    /// Appends touchpoints to a project and waits until they are durable; the acknowledged
    /// arrivals go on to the trigger evaluator. Every face that ingests goes through here.
    pub async fn append(
        &self,
        project: &str,
        batch: Vec<itinera_core::Touchpoint>,
    ) -> Result<backend::Appended> {
        let backend = self.backend(project)?;
        let received_ms = batch.iter().map(|t| t.received_at_ms).max().unwrap_or(0);
        let ids: Option<Vec<String>> = self.triggers.watching(self, project).then(|| {
            let mut ids: Vec<String> = batch
                .iter()
                .filter_map(|t| t.user_id.clone().or_else(|| t.anonymous_id.clone()))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        backend.append(
            batch,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        let appended = rx
            .await
            .map_err(|_| AppError::Unavailable("the store closed".into()))??;
        if let Some(ids) = ids {
            self.triggers.arrived(project, ids, received_ms);
        }
        Ok(appended)
    }

    /// Appends one Segment message the server writes itself (a survey answer, a trigger's
    /// trait), normalized as tracked ones are.
    pub async fn append_message(
        &self,
        project: &str,
        message: &Value,
        kind: itinera_core::MessageType,
    ) -> Result<backend::Appended> {
        let opts = itinera_core::message::NormalizeOptions {
            received_at_ms: now_ms(),
            max_future_ms: self.config.max_future_hours * 3_600_000,
            ip_policy: self.config.ip_policy,
            remote_ip: None,
        };
        let tp = itinera_core::ingest::parse_one(
            &message.to_string(),
            Some(kind),
            &opts,
            &self.config.channels,
            &mut new_message_id,
        )
        .map_err(|e| AppError::invalid(e.field, e.reason))?;
        self.append(project, vec![tp]).await
    }

    /// The backends opened so far (health, metrics).
    pub fn opened_backends(&self) -> Vec<(String, Backend)> {
        self.backends.opened()
    }

    /// Runs an analysis for `population` of `project`. Blocking: call it off async threads.
    pub fn run_analysis(
        &self,
        project: &str,
        request: &AnalysisRequest,
        population: &Population,
        opts: &ScanOptions,
    ) -> Result<Value> {
        request.check_range()?;
        let backend = self.backend(project)?;
        let (request, population) = {
            let meta = self.meta();
            (
                request.resolve(&meta, project)?,
                population.resolve(&meta, project)?,
            )
        };
        let mut answer = backend.run(&request, &population, now_ms(), opts)?;
        // a name the data does not have matches no one: said next to the answer, with the
        // closest stored names, so that a typo is not read as a real drop-off
        let warnings = backend.unknown_names(&request.selectors());
        if !warnings.is_empty() {
            if let Some(o) = answer.as_object_mut() {
                o.insert(
                    "warnings".into(),
                    serde_json::to_value(warnings).expect("warnings serialize"),
                );
            }
        }
        Ok(answer)
    }

    /// One person's stage history. Blocking.
    pub fn person_stages(
        &self,
        project: &str,
        request: &PersonStagesRequest,
    ) -> Result<PersonJourney> {
        let backend = self.backend(project)?;
        let model = definitions::resolve_model(&self.meta(), project, &request.model)?;
        backend.person_stages(&model, &request.person)
    }

    /// Sizes of the saved segments and personas. Blocking.
    pub fn segments_report(&self, project: &str, opts: &ScanOptions) -> Result<SegmentsReport> {
        let backend = self.backend(project)?;
        let (segments, personas) = {
            let meta = self.meta();
            (
                definitions::load_segments(&meta, project, DefinitionKind::Segment)?,
                definitions::load_segments(&meta, project, DefinitionKind::Persona)?,
            )
        };
        backend.segments_report(&segments, &personas, now_ms(), opts)
    }

    /// Saves a segment or persona after compiling its rule against the project's data (unknown
    /// fields, bad regexes and selectors are refused).
    pub fn save_segment(
        &self,
        project: &str,
        kind: DefinitionKind,
        name: &str,
        body: definitions::DefinitionBody,
    ) -> Result<itinera_engine::SegmentDef> {
        definitions::valid_name(name)?;
        let def = itinera_engine::SegmentDef {
            name: name.to_string(),
            description: body.description,
            rule: body.rule,
        };
        self.backend(project)?.check_rule(&def.rule)?;
        definitions::save(&self.meta(), project, kind, name, &def, body.position)?;
        Ok(def)
    }
}

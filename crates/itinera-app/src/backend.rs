//! The seam between the application and where journeys live. A backend runs whole analyses
//! ([`JourneyBackend`]) and takes new touchpoints ([`EventSink`]); the embedded store is one
//! (`crate::embedded`), a ClickHouse cluster that runs each analysis as SQL where the data is can
//! be another. Everything above this seam (the server, the CLI, jobs, alerts) is typed to these
//! traits, not to a store.

use crate::analysis::AnalysisRequest;
use crate::error::Result;
use crate::population::PopulationDef;
use itinera_core::Touchpoint;
use itinera_engine::alerts::{AggregateCheck, AlertRule};
use itinera_engine::scores::{Answer, ScoresQuery};
use itinera_engine::segments::{SegmentDef, SegmentRule, SegmentsReport};
use itinera_engine::selector::QueryWarning;
use itinera_engine::stages::StageModel;
use itinera_engine::triggers::{DryRun, Due, TriggerWhen};
use itinera_engine::{ModelRef, PersonJourney, ScanOptions};
use serde_json::Value;
use std::sync::Arc;

/// One project's journeys: every read the application makes of them.
pub trait JourneyBackend: Send + Sync {
    /// Runs a resolved analysis on the persons of `population`; `as_of_ms` is "now" for the
    /// population's relative windows. The answer is the analysis's result as JSON.
    fn run(
        &self,
        analysis: &AnalysisRequest,
        population: &PopulationDef,
        as_of_ms: i64,
        opts: &ScanOptions,
    ) -> Result<Value>;

    /// One person's stage history under a (resolved) model.
    fn person_stages(&self, model: &ModelRef, person: &str) -> Result<PersonJourney>;

    /// Sizes of the saved segments and personas.
    fn segments_report(
        &self,
        segments: &[SegmentDef],
        personas: &[SegmentDef],
        as_of_ms: i64,
        opts: &ScanOptions,
    ) -> Result<SegmentsReport>;

    /// Checks that a segment rule compiles against this project's data (no scan).
    fn check_rule(&self, rule: &SegmentRule) -> Result<()>;

    /// The names the selectors ask for that no stored touchpoint has, with the closest stored
    /// names (no scan).
    fn unknown_names(
        &self,
        selectors: &[(String, &itinera_engine::EventSelector)],
    ) -> Vec<QueryWarning>;

    /// Checks that a scores query compiles against this project's data (no scan).
    fn check_scores(&self, query: &ScoresQuery) -> Result<()>;

    /// Survey answers that fire a per-response alert rule, answered in `[from_ms, to_ms)`.
    fn firing_answers(&self, rule: &AlertRule, from_ms: i64, to_ms: i64) -> Result<Vec<Answer>>;

    /// The aggregate an aggregate alert rule watches, at `now_ms`.
    fn check_aggregate(&self, rule: &AlertRule, now_ms: i64) -> Result<Option<AggregateCheck>>;

    /// A person's latest value of a trait or property path (e.g. `traits.email`).
    fn person_trait(&self, person: &str, path: &str) -> Option<String>;

    /// The trigger rules due for the persons with these distinct ids (each person once, under
    /// the id their journey is known by), given what the application knows of each rule and
    /// person (`prior`); with the (rule, person) pairs found settled, which no later touchpoint
    /// can fire.
    fn triggers_due(
        &self,
        rules: &[PreparedTrigger],
        ids: &[String],
        prior: &dyn Fn(usize, &str) -> Prior,
    ) -> Result<TriggerLook>;

    /// The persons a sweep rule (a stall) is due for, due in `[since_ms, as_of_ms]`; each
    /// [`TriggerDue::rule`] is 0. A scan.
    fn triggers_sweep(&self, rule: &PreparedTrigger, opts: &ScanOptions)
        -> Result<Vec<TriggerDue>>;

    /// Who a rule would have triggered in `[from_ms, to_ms)`.
    fn trigger_dry_run(
        &self,
        rule: &PreparedTrigger,
        from_ms: i64,
        to_ms: i64,
        opts: &ScanOptions,
    ) -> Result<DryRun>;

    /// Whether a rule's firings (person, touchpoint time, held out) were followed by `outcome`
    /// within `within`, acted on against held out.
    fn trigger_effect(
        &self,
        firings: &[(String, i64, bool)],
        outcome: &itinera_engine::EventSelector,
        within: itinera_engine::Span,
        now_ms: i64,
        confidence: f64,
        opts: &ScanOptions,
    ) -> Result<itinera_engine::triggers::TriggerEffect>;

    /// Distinct ids of touchpoints received after `received_ms` (trigger recovery).
    fn ids_received_since(&self, received_ms: i64) -> Result<Vec<String>>;

    /// Why the backend refuses writes, if it does (reads keep working).
    fn write_error(&self) -> Option<String>;

    /// Stored events and bytes, for metrics.
    fn size(&self) -> Result<BackendSize>;
}

/// A trigger rule resolved for a backend: its condition, its model, its population.
#[derive(Debug, Clone)]
pub struct PreparedTrigger {
    pub when: TriggerWhen,
    /// The resolved model of an `enters_stage` rule.
    pub model: Option<StageModel>,
    pub population: PopulationDef,
    /// Touchpoints from this time on can trigger it.
    pub since_ms: i64,
    pub reentry_after: Option<itinera_engine::Span>,
    /// About accounts (their buying group entering the stage), not persons.
    pub account: Option<itinera_engine::stages::AccountStageRule>,
    /// "Now" for the population's relative windows.
    pub as_of_ms: i64,
}

/// What the application knows of a rule and a person before the journey is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// The rule never fired for the person.
    Never,
    /// It fired for the person's touchpoint at this time.
    FiredAt(i64),
    /// Nothing can fire it for the person again (found before): not looked at.
    Settled,
}

/// What one look at arriving persons found: the rules due, and the (rule index, person) pairs
/// that no later touchpoint can fire.
pub type TriggerLook = (Vec<TriggerDue>, Vec<(usize, String)>);

/// A rule due for a person.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerDue {
    /// Index of the rule in the slice asked about.
    pub rule: usize,
    pub person: String,
    pub due: Due,
}

/// How much a backend holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendSize {
    pub events: u64,
    pub bytes: u64,
    /// Bytes held in this process's memory, by part (empty for a backend on another server).
    pub memory: Vec<(&'static str, u64)>,
}

/// What an append stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    pub stored: usize,
    /// Messages whose id was already stored (acknowledged, not stored twice).
    pub duplicates: usize,
}

/// Called once an append is durable, or has failed.
pub type AppendDone = Box<dyn FnOnce(Result<Appended>) + Send>;

/// Where new touchpoints go: the write side of a backend.
pub trait EventSink: Send + Sync {
    /// Appends a batch; `done` is called once every stored message is durable.
    fn append(&self, batch: Vec<Touchpoint>, done: AppendDone);
}

/// Both sides of one project's backend.
pub trait ProjectBackend: JourneyBackend + EventSink {}
impl<T: JourneyBackend + EventSink> ProjectBackend for T {}

/// A project's backend, shared.
pub type Backend = Arc<dyn ProjectBackend>;

/// Opens projects' backends.
pub trait Backends: Send + Sync {
    /// The backend of a project (opened on first use).
    fn project(&self, project: &str) -> Result<Backend>;
    /// The backends opened so far, by project name.
    fn opened(&self) -> Vec<(String, Backend)>;
}

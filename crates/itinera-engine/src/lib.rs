//! Itinera's journey engine.
//!
//! Analyses are backend-neutral descriptions ([`FunnelQuery`], …) that serialize to the JSON of
//! the HTTP API. A backend hands the engine each person's touchpoints as one time-ordered sequence
//! ([`JourneySource`]); the engine's kernels compute the answer in one pass per person, in
//! parallel. No I/O happens here: the embedded store and, later, ClickHouse are the backends.

pub mod advocacy;
pub mod alerts;
pub mod attribution;
pub mod b2b;
pub mod calendar;
pub mod clv;
pub mod duration;
pub mod error;
pub mod funnel;
pub mod handoff;
pub mod journey;
pub mod map;
pub mod memory;
pub mod metered;
pub mod paths;
pub mod retention;
pub mod revenue;
pub mod scores;
pub mod segments;
pub mod selector;
pub mod sentiment;
pub mod stages;
pub mod stats;
pub mod timezone;
pub mod triggers;

pub use advocacy::{run_advocacy, AdvocacyQuery, AdvocacyResult};
pub use attribution::{run_attribution, AttributionQuery, AttributionResult};
pub use b2b::{run_accounts, AccountsQuery, AccountsResult};
pub use calendar::Period;
pub use clv::{run_clv, ClvQuery, ClvResult};
pub use duration::Span;
pub use error::{EngineError, Result};
pub use funnel::{run_funnel, FunnelOrder, FunnelQuery, FunnelResult, FunnelStep};
pub use journey::{
    CountBy, Field, Journey, JourneyBatch, JourneyColumns, JourneyRows, JourneySource, PieceBatch,
    QueryControl, ScanOptions, Vocabulary, NO_ACCOUNT,
};
pub use paths::{run_paths, PathQuery, PathResult};
pub use retention::{run_retention, RetentionQuery, RetentionResult};
pub use revenue::{run_revenue, RevenueQuery, RevenueResult};
pub use scores::{run_scores, ScoresQuery, ScoresResult};
pub use segments::{Filter, Filtered, SegmentDef, SegmentRule};
pub use selector::{EventSelector, Matcher};
pub use stages::{
    run_person_stages, run_stage_funnel, ModelRef, PersonJourney, StageFunnelQuery,
    StageFunnelResult, StageModel,
};

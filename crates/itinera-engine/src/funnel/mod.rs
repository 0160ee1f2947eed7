//! Event funnels: how many persons (or accounts) did step 1, then step 2, … within a window.
//!
//! One pass over each person's time-ordered touchpoints, with state per step: the cost is linear
//! in events whatever the number of steps. The `ordered` order and the three strict modes give
//! exactly the levels of ClickHouse's `windowFunnel` (tested against it); the other orders and the
//! extras (optional steps, per-step windows, exclusions) are defined in `docs/funnels.md`.
//!
//! `query` is the request and `result` the answer; `rows` adapts a journey to the kernels;
//! `kernel` holds the per-person state machines (one variant per order and size, kept apart so
//! each stays a tight loop); `durations` the exact time statistics; `runner` drives the scan over
//! the backend in parallel and `render` turns the merged totals into the answer.

/// Most steps in one funnel (plus exclusions, at most 64 selectors in all).
pub const MAX_STEPS: usize = 48;

mod durations;
mod kernel;
mod query;
mod render;
mod result;
mod rows;
mod runner;

pub use kernel::{FunnelKernel, Outcome, Scratch, SlotTable};
pub use query::{
    Attribution, Breakdown, BreakdownField, CohortOutcome, CohortRequest, Exclusion, FunnelOrder,
    FunnelQuery, FunnelStep, TagSource,
};
pub use result::{BreakdownRow, FunnelResult, StepResult, TimeToConvert};
pub use rows::{Entry, MatchedJourney, Rows};
pub use runner::run_funnel;

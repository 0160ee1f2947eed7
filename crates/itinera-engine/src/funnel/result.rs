use super::*;
use crate::journey::CountBy;
use serde::{Deserialize, Serialize};

/// Figures for one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepResult {
    pub step: usize,
    pub name: String,
    pub optional: bool,
    /// Persons (or accounts) who reached this step.
    pub count: u64,
    /// Reached the previous required step but not this one.
    pub dropped: u64,
    /// `count / count of the previous required step`.
    pub conversion_from_previous: Option<f64>,
    /// `count / count of step 1`.
    pub conversion_from_first: Option<f64>,
    /// Median and 90th percentile time since the previous step done, in seconds.
    pub median_seconds_from_previous: Option<f64>,
    pub p90_seconds_from_previous: Option<f64>,
    /// Median time since step 1, in seconds.
    pub median_seconds_from_first: Option<f64>,
}

/// Counts of one breakdown value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BreakdownRow {
    pub value: String,
    /// Reached count per step.
    pub counts: Vec<u64>,
    pub conversion: Option<f64>,
}

/// How long converters took from step 1 to the last step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimeToConvert {
    pub converted: u64,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub mean_seconds: Option<f64>,
    /// Counts per bucket: `[upper bound in seconds (None = no bound), count]`.
    pub histogram: Vec<(Option<f64>, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunnelResult {
    pub counted: CountBy,
    pub order: FunnelOrder,
    pub window_seconds: f64,
    pub steps: Vec<StepResult>,
    pub time_to_convert: TimeToConvert,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakdown: Vec<BreakdownRow>,
    /// The persons (or accounts) asked for by the query's `cohort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<Vec<String>>,
    /// Distribution of levels, as ClickHouse's `windowFunnel` returns them: `levels[k]` persons
    /// reached exactly the first `k` steps (a prefix; optional steps count when done).
    pub levels: Vec<u64>,
}

//! Event funnels: how many persons (or accounts) did step 1, then step 2, … within a window.
//!
//! One pass over each person's time-ordered touchpoints, with state per step: the cost is linear
//! in events whatever the number of steps. The `ordered` order and the three strict modes give
//! exactly the levels of ClickHouse's `windowFunnel` (tested against it); the other orders and the
//! extras (optional steps, per-step windows, exclusions) are defined in `docs/funnels.md`.

use crate::duration::Span;
use crate::error::{EngineError, Result};
use crate::journey::{
    Field, Journey, JourneySource, RowPrefetch, ScanOptions, Vocabulary, NO_ACCOUNT,
};
use crate::selector::{EventSelector, Matcher};
use crate::stats::ratio;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Most steps in one funnel (plus exclusions, at most 64 selectors in all).
pub const MAX_STEPS: usize = 48;

/// How the steps must follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunnelOrder {
    /// Steps in this order, other touchpoints allowed in between (`windowFunnel` default mode).
    #[default]
    Ordered,
    /// Steps in this order as consecutive touchpoints: any other touchpoint breaks the chain,
    /// which may start again later.
    Strict,
    /// Steps in any order within the window.
    Unordered,
    /// `windowFunnel` mode `strict_deduplication`: a repeat of a reached step stops the search.
    StrictDeduplication,
    /// `windowFunnel` mode `strict_order`: the first touchpoint that is not the next step stops
    /// the search.
    StrictOrder,
    /// `windowFunnel` mode `strict_increase`: each step strictly later than the previous one.
    StrictIncrease,
}

impl FunnelOrder {
    pub fn parse(s: &str) -> Result<FunnelOrder> {
        serde_json::from_value(serde_json::Value::String(s.replace('-', "_"))).map_err(|_| {
            EngineError::invalid(
                "order",
                format!(
                    "`{s}` is not one of ordered, strict, unordered, strict_deduplication, strict_order, strict_increase"
                ),
            )
        })
    }

    fn sees_all_rows(self) -> bool {
        matches!(self, FunnelOrder::Strict | FunnelOrder::StrictOrder)
    }
}

/// One step of a funnel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelStep {
    #[serde(rename = "match")]
    pub selector: EventSelector,
    /// A label for reports (defaults to the selector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A person may skip an optional step; it is counted for those who did it.
    #[serde(default)]
    pub optional: bool,
    /// Longest time allowed since the previous step done, on top of the funnel's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Span>,
}

impl FunnelStep {
    pub fn new(selector: EventSelector) -> Self {
        FunnelStep {
            selector,
            name: None,
            optional: false,
            within: None,
        }
    }

    fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => self.selector.to_string(),
        }
    }
}

/// A touchpoint that breaks a chain between two steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    #[serde(rename = "match")]
    pub selector: EventSelector,
    /// Chains that reached step `from_step` (1-based, default 1) but not yet `to_step` (default:
    /// the last step) are broken when the excluded touchpoint happens.
    #[serde(default)]
    pub from_step: Option<usize>,
    #[serde(default)]
    pub to_step: Option<usize>,
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountBy {
    #[default]
    Person,
    /// The touchpoints of every member of a B2B account form one journey.
    Account,
}

/// Which touchpoint of the chain gives the breakdown value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "step")]
pub enum Attribution {
    /// The touchpoint of step 1.
    #[default]
    FirstTouch,
    /// The touchpoint of the last step reached.
    LastTouch,
    /// The touchpoint of step N (1-based); persons who did not reach it get `(none)`.
    Step(usize),
}

/// A field to break results down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakdownField {
    Channel,
    Touchpoint,
    Event,
    /// A typed property of the touchpoint (`property` names it, e.g. `properties.plan` or
    /// `campaign.name`); touchpoints without it give `(none)`.
    Property,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Breakdown {
    pub field: BreakdownField,
    #[serde(default)]
    pub attribution: Attribution,
    /// With `field: property`: the property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
}

/// Where a row's breakdown value comes from, resolved against the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagSource {
    Channel,
    Touchpoint,
    Event,
    /// The property-key code (`None`: no touchpoint has it).
    Property(Option<u32>),
}

/// Which persons to list (a cohort to export).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CohortRequest {
    /// 1-based step.
    pub step: usize,
    pub outcome: CohortOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CohortOutcome {
    /// Reached the step.
    Reached,
    /// Reached the step before it (the previous required step) but not this one.
    Dropped,
}

/// A funnel analysis, independent of the backend that runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelQuery {
    pub steps: Vec<FunnelStep>,
    /// Longest time from step 1 to the last step.
    pub window: Span,
    #[serde(default)]
    pub order: FunnelOrder,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<Exclusion>,
    #[serde(default)]
    pub count_by: CountBy,
    /// Only chains whose step 1 happens in `[from, to)` (ms since the epoch); later steps may
    /// follow up to the window after `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Breakdown>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortRequest>,
}

impl FunnelQuery {
    /// An ordered funnel over event names.
    pub fn events(names: &[&str], window: Span) -> FunnelQuery {
        FunnelQuery {
            steps: names
                .iter()
                .map(|n| FunnelStep::new(EventSelector::event(n)))
                .collect(),
            window,
            order: FunnelOrder::Ordered,
            exclusions: Vec::new(),
            count_by: CountBy::Person,
            from_ms: None,
            to_ms: None,
            breakdown: None,
            cohort: None,
        }
    }

    fn validate(&self) -> Result<()> {
        let n = self.steps.len();
        if n == 0 {
            return Err(EngineError::invalid(
                "steps",
                "a funnel needs at least one step",
            ));
        }
        if n > MAX_STEPS {
            return Err(EngineError::invalid(
                "steps",
                format!("{n} steps; at most {MAX_STEPS}"),
            ));
        }
        if n + self.exclusions.len() > 64 {
            return Err(EngineError::invalid(
                "exclusions",
                "steps and exclusions together are at most 64",
            ));
        }
        if self.steps[0].optional {
            return Err(EngineError::invalid(
                "steps[0].optional",
                "step 1 cannot be optional",
            ));
        }
        if self.steps[n - 1].optional {
            return Err(EngineError::invalid(
                format!("steps[{}].optional", n - 1),
                "the last step cannot be optional",
            ));
        }
        if self.window.ms() <= 0 {
            return Err(EngineError::invalid("window", "must be longer than zero"));
        }
        let extras = !self.exclusions.is_empty()
            || self.steps.iter().any(|s| s.optional || s.within.is_some());
        let ch_mode = matches!(
            self.order,
            FunnelOrder::StrictDeduplication
                | FunnelOrder::StrictOrder
                | FunnelOrder::StrictIncrease
        );
        if extras && ch_mode {
            return Err(EngineError::invalid(
                "order",
                "optional steps, per-step windows and exclusions work with ordered, strict and unordered funnels",
            ));
        }
        if self.order == FunnelOrder::Unordered
            && (!self.exclusions.is_empty() || self.steps.iter().any(|s| s.within.is_some()))
        {
            return Err(EngineError::invalid(
                "order",
                "unordered funnels take no exclusions or per-step windows",
            ));
        }
        for (i, e) in self.exclusions.iter().enumerate() {
            let from = e.from_step.unwrap_or(1);
            let to = e.to_step.unwrap_or(n);
            if from < 1 || to > n || from >= to {
                return Err(EngineError::invalid(
                    format!("exclusions[{i}]"),
                    format!("from_step {from} and to_step {to} must satisfy 1 <= from < to <= {n}"),
                ));
            }
        }
        if let Some(b) = &self.breakdown {
            let named = b
                .property
                .as_deref()
                .is_some_and(crate::selector::is_prop_key);
            if (b.field == BreakdownField::Property) != named {
                return Err(EngineError::invalid(
                    "breakdown.property",
                    "a property breakdown names one (properties.NAME, traits.NAME or campaign.NAME), and only it",
                ));
            }
        }
        if let Some(Breakdown {
            attribution: Attribution::Step(k),
            ..
        }) = self.breakdown
        {
            if k < 1 || k > n {
                return Err(EngineError::invalid(
                    "breakdown.attribution.step",
                    format!("{k} is not a step (1..={n})"),
                ));
            }
        }
        if let Some(c) = self.cohort {
            if c.step < 1 || c.step > n {
                return Err(EngineError::invalid(
                    "cohort.step",
                    format!("{} is not a step (1..={n})", c.step),
                ));
            }
            if c.step == 1 && c.outcome == CohortOutcome::Dropped {
                return Err(EngineError::invalid(
                    "cohort",
                    "nobody drops at step 1; ask for those who reached it",
                ));
            }
        }
        Ok(())
    }
}

/// Figures for one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakdownRow {
    pub value: String,
    /// Reached count per step.
    pub counts: Vec<u64>,
    pub conversion: Option<f64>,
}

/// How long converters took from step 1 to the last step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeToConvert {
    pub converted: u64,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub mean_seconds: Option<f64>,
    /// Counts per bucket: `[upper bound in seconds (None = no bound), count]`.
    pub histogram: Vec<(Option<f64>, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// One touchpoint as the kernels see it.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub ts: i64,
    /// Steps matched (bits 0..n) and exclusions (bits n..).
    pub mask: u64,
    /// Breakdown code, or `u32::MAX`.
    pub tag: u32,
}

/// Touchpoints as a kernel reads them: the prepared entries of an account, or a person's
/// journey matched on the fly (no copy: the hot path).
pub trait Rows {
    fn row_count(&self) -> usize;
    fn ts(&self, i: usize) -> i64;
    fn mask(&self, i: usize) -> u64;
    fn tag(&self, i: usize) -> u32;
}

impl Rows for [Entry] {
    #[inline(always)]
    fn row_count(&self) -> usize {
        self.len()
    }
    #[inline(always)]
    fn ts(&self, i: usize) -> i64 {
        self[i].ts
    }
    #[inline(always)]
    fn mask(&self, i: usize) -> u64 {
        self[i].mask
    }
    #[inline(always)]
    fn tag(&self, i: usize) -> u32 {
        self[i].tag
    }
}

/// A journey seen through a compiled matcher.
pub struct MatchedJourney<'a, 'j> {
    pub journey: &'a Journey<'j>,
    pub matcher: &'a Matcher,
    pub breakdown: Option<TagSource>,
}

impl Rows for MatchedJourney<'_, '_> {
    #[inline(always)]
    fn row_count(&self) -> usize {
        self.journey.len()
    }
    #[inline(always)]
    fn ts(&self, i: usize) -> i64 {
        self.journey.ts[i]
    }
    #[inline(always)]
    fn mask(&self, i: usize) -> u64 {
        self.matcher.row_mask(self.journey, i)
    }
    #[inline(always)]
    fn tag(&self, i: usize) -> u32 {
        tag_of(self.journey, i, self.breakdown)
    }
}

#[inline(always)]
fn tag_of(j: &Journey<'_>, i: usize, field: Option<TagSource>) -> u32 {
    match field {
        None => u32::MAX,
        Some(TagSource::Channel) => j.channel[i],
        Some(TagSource::Touchpoint) => j.touchpoint[i],
        Some(TagSource::Event) => j.event[i],
        Some(TagSource::Property(k)) => k.and_then(|k| j.props.get(i, k)).unwrap_or(u32::MAX),
    }
}

/// A journey whose rows are matched by an event-code table (funnels over event names only).
/// Rows `lo..hi` of `journey` (a batch's shared columns) are one person's.
struct EventMasks<'a, 'j> {
    journey: &'a Journey<'j>,
    lo: usize,
    hi: usize,
    masks: &'a [u64],
    breakdown: Option<TagSource>,
}

impl Rows for EventMasks<'_, '_> {
    #[inline(always)]
    fn row_count(&self) -> usize {
        self.hi - self.lo
    }
    #[inline(always)]
    fn ts(&self, i: usize) -> i64 {
        self.journey.ts[self.lo + i]
    }
    #[inline(always)]
    fn mask(&self, i: usize) -> u64 {
        self.masks
            .get(self.journey.event[self.lo + i] as usize)
            .copied()
            .unwrap_or(0)
    }
    #[inline(always)]
    fn tag(&self, i: usize) -> u32 {
        tag_of(self.journey, self.lo + i, self.breakdown)
    }
}

/// For each event code, the steps it matches (see [`FunnelKernel::run_slots`]).
#[derive(Debug, Clone)]
pub struct SlotTable {
    stride: usize,
    slots: Vec<u8>,
    none: Vec<u8>,
    /// When every event matches at most one step of at most [`SlotTable::SINGLE_STEPS`]: the
    /// step of each event code (the dummy [`SlotTable::SINGLE_NONE`] when it matches none).
    single: Option<Vec<u8>>,
}

impl SlotTable {
    /// Most steps one event may match for the table to pay off.
    const MAX_STRIDE: usize = 8;

    fn new(masks: &[u64], n: usize) -> Option<SlotTable> {
        let stride = masks
            .iter()
            .map(|m| m.count_ones() as usize)
            .max()
            .unwrap_or(0)
            .max(1);
        if stride > Self::MAX_STRIDE {
            return None;
        }
        let dummy = (n + 1) as u8;
        let mut slots = Vec::with_capacity(masks.len() * stride);
        for m in masks {
            let mut b = *m;
            for _ in 0..stride {
                if b == 0 {
                    slots.push(dummy);
                } else {
                    slots.push(b.trailing_zeros() as u8);
                    b &= b - 1;
                }
            }
        }
        let single = (stride == 1 && n <= Self::SINGLE_STEPS).then(|| {
            masks
                .iter()
                .map(|m| match m.count_ones() {
                    0 => Self::SINGLE_NONE,
                    _ => m.trailing_zeros() as u8,
                })
                .collect()
        });
        Some(SlotTable {
            stride,
            slots,
            none: vec![dummy; stride],
            single,
        })
    }

    /// Most steps of the single-step table: its state fits 32 slots with room for the dummy.
    const SINGLE_STEPS: usize = 29;
    /// The dummy step of the single-step table (its state slot is never read).
    const SINGLE_NONE: u8 = 30;
    /// Most steps for the single-step kernel's small state (8 slots, the dummy reading slot 6).
    const SMALL_STEPS: usize = 5;
}

/// What one person (or account) achieved.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Steps reached.
    pub reached: u64,
    /// Highest prefix of steps reached (required steps in order; optional ones when done).
    pub level: usize,
    /// Timestamps of the steps in the best chain (`i64::MIN` when skipped or unknown).
    pub times: Vec<i64>,
    /// Tags of the steps in the best chain.
    pub tags: Vec<u32>,
}

/// A funnel ready to run: the query plus its per-step parameters.
#[derive(Debug, Clone)]
pub struct FunnelKernel {
    n: usize,
    order: FunnelOrder,
    window: i64,
    within: Vec<i64>,
    optional: Vec<bool>,
    /// Exclusion bit → (from, to) 0-based step range whose partial chains it breaks.
    exclusions: Vec<(u64, usize, usize)>,
    exclusion_bits: u64,
    /// Step 1 only counts before this time.
    entry_before: i64,
    /// No optional steps, per-step windows or exclusions.
    plain: bool,
}

impl FunnelKernel {
    pub fn new(q: &FunnelQuery) -> Result<FunnelKernel> {
        q.validate()?;
        let n = q.steps.len();
        let exclusions: Vec<(u64, usize, usize)> = q
            .exclusions
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    1u64 << (n + i),
                    e.from_step.unwrap_or(1) - 1,
                    e.to_step.unwrap_or(n) - 1,
                )
            })
            .collect();
        Ok(FunnelKernel {
            n,
            order: q.order,
            window: q.window.ms(),
            within: q
                .steps
                .iter()
                .map(|s| s.within.map(|w| w.ms()).unwrap_or(i64::MAX))
                .collect(),
            optional: q.steps.iter().map(|s| s.optional).collect(),
            exclusion_bits: exclusions.iter().fold(0, |a, e| a | e.0),
            exclusions,
            entry_before: q.to_ms.unwrap_or(i64::MAX),
            plain: q.exclusions.is_empty()
                && q.steps.iter().all(|s| !s.optional && s.within.is_none()),
        })
    }

    /// True when rows matching nothing still matter (they break strict chains).
    pub fn sees_all_rows(&self) -> bool {
        self.order.sees_all_rows()
    }

    /// True when [`FunnelKernel::run_plain`] applies.
    pub fn is_plain(&self) -> bool {
        self.plain && self.order == FunnelOrder::Ordered
    }

    /// Runs the funnel over one journey's entries (time-ordered; ties in arrival order).
    pub fn run(&self, entries: &[Entry], scratch: &mut Scratch, out: &mut Outcome) {
        out.reached = 0;
        out.level = 0;
        out.times.clear();
        out.times.resize(self.n, i64::MIN);
        out.tags.clear();
        out.tags.resize(self.n, u32::MAX);
        if entries.is_empty() {
            return;
        }
        match self.order {
            FunnelOrder::Ordered if self.plain => {
                if !self.run_plain(entries, out) {
                    self.run_ordered(entries, scratch, out)
                }
            }
            FunnelOrder::Strict => self.run_strict(entries, scratch, out),
            FunnelOrder::Unordered => self.run_unordered(entries, scratch, out),
            _ => self.run_ordered(entries, scratch, out),
        }
        out.level = 0;
        while out.level < self.n && out.reached & (1 << out.level) != 0 {
            out.level += 1;
        }
    }

    /// The ordered funnel without extras, on a journey without equal times: the hot loop of the
    /// engine. Keeps per step only the latest start of a chain reaching it (a later start leaves
    /// more of the window). Returns false, having done nothing, when two entries share a time
    /// (the general kernel orders those by step).
    #[inline]
    pub fn run_plain<R: Rows + ?Sized>(&self, rows: &R, out: &mut Outcome) -> bool {
        let n = self.n;
        let step_mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let mut start = [0i64; MAX_STEPS];
        let mut set = 0u64;
        let mut best = 0usize;
        let mut prev_ts = i64::MIN;
        let len = rows.row_count();
        'rows: for i in 0..len {
            let mut m = rows.mask(i) & step_mask;
            if m == 0 {
                continue;
            }
            let ts = rows.ts(i);
            if ts == prev_ts {
                return false;
            }
            prev_ts = ts;
            while m != 0 {
                let st = m.trailing_zeros() as usize;
                m &= m - 1;
                if st == 0 {
                    if ts < self.entry_before {
                        start[0] = ts;
                        set |= 1;
                        best = best.max(1);
                    }
                } else if set & (1 << (st - 1)) != 0
                    && ts <= start[st - 1].saturating_add(self.window)
                {
                    start[st] = start[st - 1];
                    set |= 1 << st;
                    if st + 1 > best {
                        best = st + 1;
                        if best == n {
                            break 'rows;
                        }
                    }
                }
            }
        }
        out.reached = 0;
        out.level = best;
        if best == 0 {
            return true;
        }
        self.report_chain(rows, best, start[best - 1], out);
        true
    }

    /// Fills `out` for a chain of `best` steps starting at `t0` (see [`FunnelKernel::walk_chain`]).
    fn report_chain<R: Rows + ?Sized>(&self, rows: &R, best: usize, t0: i64, out: &mut Outcome) {
        let n = self.n;
        out.level = best;
        out.times.resize(n, i64::MIN);
        out.times.fill(i64::MIN);
        out.tags.resize(n, u32::MAX);
        out.tags.fill(u32::MAX);
        out.reached = if best == 64 {
            u64::MAX
        } else {
            (1u64 << best) - 1
        };
        self.walk_chain(rows, best, t0, |k, i, ts| {
            out.times[k] = ts;
            out.tags[k] = rows.tag(i);
        });
    }

    /// Calls `step(k, row, time)` for each step `k < best` of the chain that starts at `t0`: from
    /// that start, each step as early as possible (a chain from the latest start exists; this is
    /// its fastest form).
    #[inline(always)]
    fn walk_chain<R: Rows + ?Sized>(
        &self,
        rows: &R,
        best: usize,
        t0: i64,
        mut step: impl FnMut(usize, usize, i64),
    ) {
        let end = t0.saturating_add(self.window);
        // the chain starts late in most journeys: find its first row by a branch-free bisection
        let (mut base, mut size) = (0, rows.row_count());
        if size == 0 {
            return;
        }
        while size > 1 {
            let half = size / 2;
            base = std::hint::select_unpredictable(rows.ts(base + half) < t0, base + half, base);
            size -= half;
        }
        let lo = base + (rows.ts(base) < t0) as usize;
        let mut k = 0usize;
        for i in lo..rows.row_count() {
            let ts = rows.ts(i);
            if ts > end || k == best {
                break;
            }
            let m = rows.mask(i);
            if k == 0 && (ts != t0 || m & 1 == 0) {
                continue;
            }
            // a touchpoint may serve several consecutive steps
            while k < best && m & (1 << k) != 0 {
                step(k, i, ts);
                k += 1;
            }
        }
        debug_assert_eq!(k, best, "a chain from the latest start exists");
    }

    /// [`FunnelKernel::run_plain`] for funnels over event names only, with no branch that
    /// depends on the data. `slots` lists for each event code the steps it matches, ascending,
    /// padded to `stride` with the dummy step `n + 1`; `s[k + 1]` holds the latest start of a
    /// chain reaching step k and `s[0]` the current touchpoint's time, so step k extends from
    /// `s[k]`. Returns the steps reached and the start of the best chain (see
    /// [`FunnelKernel::walk_chain`]), or None when two touchpoints share a time (the general
    /// kernel orders those by step).
    fn run_slots(
        &self,
        rows: &EventMasks<'_, '_>,
        slots: &SlotTable,
        ties: bool,
    ) -> Option<(usize, i64)> {
        if let Some(single) = &slots.single {
            return self.run_single_slots(rows, single, ties);
        }
        // the checks a journey needs, and a state just big enough, as constants of the loop
        let checks = ties || self.entry_before != i64::MAX;
        match (self.n + 3 <= 32, slots.stride, checks) {
            (true, 2, false) => self.stride_slots::<32, 2, false>(rows, slots),
            (true, 3, false) => self.stride_slots::<32, 3, false>(rows, slots),
            (true, 4, false) => self.stride_slots::<32, 4, false>(rows, slots),
            (true, _, false) => self.stride_slots::<32, 0, false>(rows, slots),
            (true, _, true) => self.stride_slots::<32, 0, true>(rows, slots),
            (false, _, _) => self.stride_slots::<{ MAX_STEPS + 3 }, 0, true>(rows, slots),
        }
    }

    /// The loop of [`FunnelKernel::run_slots`] with a state of `SIZE` slots, `STRIDE` steps per
    /// event (0: the table's stride, read at run time), looking for ties and checking the entry
    /// bound only when `CHECKS`.
    #[inline(always)]
    fn stride_slots<const SIZE: usize, const STRIDE: usize, const CHECKS: bool>(
        &self,
        rows: &EventMasks<'_, '_>,
        slots: &SlotTable,
    ) -> Option<(usize, i64)> {
        const UNSET: i64 = i64::MIN / 2;
        debug_assert!(self.n + 3 <= SIZE);
        let mut s = [UNSET; SIZE];
        let w = self.window.min(i64::MAX / 4);
        let stride = if STRIDE == 0 { slots.stride } else { STRIDE };
        debug_assert_eq!(stride, slots.stride);
        let none = &slots.none[..stride];
        let mut tie = false;
        let mut prev = i64::MIN;
        let (lo, hi) = (rows.lo, rows.hi);
        for (&ts, &code) in rows.journey.ts[lo..hi]
            .iter()
            .zip(&rows.journey.event[lo..hi])
        {
            let at = code as usize * stride;
            let steps = slots.slots.get(at..at + stride).unwrap_or(none);
            if CHECKS {
                tie |= ts == prev;
                prev = ts;
            }
            s[0] = if !CHECKS || ts < self.entry_before {
                ts
            } else {
                UNSET
            };
            // the window subtracted off the dependency chain
            let earliest = ts - w;
            for &p in steps {
                let p = p as usize;
                let (pred, cur) = (s[p], s[p + 1]);
                // a conditional move, not a branch: whether a touchpoint extends a chain is
                // unpredictable
                s[p + 1] = std::hint::select_unpredictable(earliest <= pred, pred, cur);
            }
        }
        (!tie).then(|| self.chain_end(&s, UNSET))
    }

    /// [`FunnelKernel::run_slots`] when every event matches at most one step: one table load,
    /// two state loads and one store per touchpoint, with indices masked so that no bounds check
    /// remains. Returns the steps reached and the start of the best chain (see
    /// [`FunnelKernel::walk_chain`]), or None when two touchpoints share a time. `ties` says
    /// whether the rows may hold equal times (see
    /// [`crate::journey::JourneyBatch::distinct_times`]); when not, the loop does not look for
    /// them.
    fn run_single_slots(
        &self,
        rows: &EventMasks<'_, '_>,
        single: &[u8],
        ties: bool,
    ) -> Option<(usize, i64)> {
        let bounded = self.entry_before != i64::MAX;
        // few steps: a state of 8 slots, cheaper to reset per person
        match (self.n <= SlotTable::SMALL_STEPS, bounded, ties) {
            (true, false, false) => self.single_slots::<8, false, false>(rows, single),
            (true, _, _) => self.single_slots::<8, true, true>(rows, single),
            (false, false, false) => self.single_slots::<32, false, false>(rows, single),
            (false, _, _) => self.single_slots::<32, true, true>(rows, single),
        }
    }

    /// True when the hot loop of [`run_funnel`] may call the small single-step kernel
    /// ([`FunnelKernel::single_slots`] with 8 slots, no entry bound, no tie check) directly for
    /// every person of a batch, without choosing a kernel per person.
    fn small_single(&self, slots: &SlotTable, ties: bool) -> bool {
        slots.single.is_some()
            && self.n <= SlotTable::SMALL_STEPS
            && self.entry_before == i64::MAX
            && !ties
    }

    /// The loop of [`FunnelKernel::run_single_slots`] with a state of `SIZE` slots (the dummy
    /// step [`SlotTable::SINGLE_NONE`] reads slot `30 % SIZE` and writes the next one, both
    /// beyond the steps), checking the entry bound only when `BOUNDED` and ties only when
    /// `TIES`.
    #[inline(always)]
    fn single_slots<const SIZE: usize, const BOUNDED: bool, const TIES: bool>(
        &self,
        rows: &EventMasks<'_, '_>,
        single: &[u8],
    ) -> Option<(usize, i64)> {
        const UNSET: i64 = i64::MIN / 2;
        debug_assert!(self.n < (SlotTable::SINGLE_NONE as usize) % SIZE);
        let (lo, hi) = (rows.lo, rows.hi);
        let mut s = [UNSET; SIZE];
        let w = self.window.min(i64::MAX / 4);
        let entry_before = self.entry_before;
        let ts = &rows.journey.ts[lo..hi];
        let events = &rows.journey.event[lo..hi];
        let mut tie = false;
        let mut prev = i64::MIN;
        for (&t, &code) in ts.iter().zip(events) {
            let p = single
                .get(code as usize)
                .copied()
                .unwrap_or(SlotTable::SINGLE_NONE) as usize;
            if TIES {
                tie |= t == prev;
                prev = t;
            }
            // s[k + 1] is the latest start of a chain reaching step k (0-based); s[0] is the
            // touchpoint itself, the start of a chain at step 1 when it may still enter
            let own = if !BOUNDED || t < entry_before {
                t
            } else {
                UNSET
            };
            // through the state rather than a select: the compiler turns a select next to a
            // load into a branch, and whether a touchpoint is step 1 is unpredictable
            s[0] = own;
            // the window subtracted off the dependency chain: load, compare, move, store
            let earliest = t - w;
            let pred = s[p & (SIZE - 1)];
            let next = (p + 1) & (SIZE - 1);
            s[next] = std::hint::select_unpredictable(earliest <= pred, pred, s[next]);
        }
        (!tie).then(|| self.chain_end(&s, UNSET))
    }

    /// The steps reached and the start of the best chain, from the state of the slot kernels
    /// (`s[k]`: the latest start of a chain reaching step k, or `unset`). The steps reached are
    /// a prefix (a chain reaching step k reaches step k - 1 from the same start), found by a
    /// branch-free bisection with one 8-byte read per probe. A count over the slots compiles to
    /// 16-byte reads of slots the loop has just written 8 bytes at a time, which the processor
    /// cannot forward from its pending stores: the profile showed them stalled.
    #[inline(always)]
    fn chain_end(&self, s: &[i64], unset: i64) -> (usize, i64) {
        // s[1..=best] are set: best lies in base..=base + size
        let (mut base, mut size) = (0, self.n);
        while size > 0 {
            let half = size.div_ceil(2);
            base = std::hint::select_unpredictable(s[base + half] != unset, base + half, base);
            size -= half;
        }
        (base, s[base])
    }

    /// The `windowFunnel` family. Entries at the same time are taken by step number, as
    /// ClickHouse sorts them; a row that matches several steps counts for each.
    fn run_ordered(&self, entries: &[Entry], s: &mut Scratch, out: &mut Outcome) {
        let n = self.n;
        s.reset(n);
        let step_mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let strict_order = self.order == FunnelOrder::StrictOrder;
        let dedup = self.order == FunnelOrder::StrictDeduplication;
        let increase = self.order == FunnelOrder::StrictIncrease;
        let mut first_event = false;
        let mut best: usize = 0; // highest step index + 1 reached by a chain
        let mut i = 0;
        'outer: while i < entries.len() {
            // the group of entries with the same time
            let t = entries[i].ts;
            let mut j = i + 1;
            while j < entries.len() && entries[j].ts == t {
                j += 1;
            }
            s.group.clear();
            for (k, e) in entries[i..j].iter().enumerate() {
                let ex = e.mask & self.exclusion_bits;
                if ex != 0 {
                    for (bit, from, to) in &self.exclusions {
                        if ex & bit != 0 {
                            for l in *from..*to {
                                s.set[l] = false;
                            }
                        }
                    }
                }
                let m = e.mask & step_mask;
                if m == 0 {
                    if strict_order {
                        s.group.push((0, (i + k) as u32));
                    }
                    continue;
                }
                let mut b = m;
                while b != 0 {
                    let st = b.trailing_zeros() as usize;
                    s.group.push((st as u32 + 1, (i + k) as u32));
                    b &= b - 1;
                }
            }
            if j - i > 1 {
                s.group.sort_by_key(|g| g.0);
            }
            for gi in 0..s.group.len() {
                let (code, row) = s.group[gi];
                let e = entries[row as usize];
                if code == 0 {
                    // strict_order: a touchpoint that is no step
                    if first_event {
                        break 'outer;
                    }
                    continue;
                }
                let st = code as usize - 1;
                if st == 0 {
                    if e.ts >= self.entry_before {
                        continue;
                    }
                    s.set[0] = true;
                    s.start[0] = e.ts;
                    s.last[0] = e.ts;
                    s.chain_times[0] = e.ts;
                    s.chain_tags[0] = e.tag;
                    s.ever |= 1;
                    first_event = true;
                    best = best.max(1);
                } else if dedup && s.set[st] {
                    // a repeat of a step already reached ends the search
                    break 'outer;
                } else if strict_order && first_event && !s.set[st - 1] {
                    let level = (0..n).find(|l| !s.set[*l]).unwrap_or(n);
                    self.finish_prefix(level, s, out);
                    return;
                } else if let Some(p) = self.predecessor(st, &s.set) {
                    let ok = e.ts <= s.start[p].saturating_add(self.window)
                        && e.ts - s.last[p] <= self.within[st]
                        && (!increase || s.last[p] < e.ts);
                    if ok {
                        s.set[st] = true;
                        s.start[st] = s.start[p];
                        s.last[st] = e.ts;
                        s.extend_chain(n, p, st, &e);
                        s.ever |= 1 << st;
                        if st + 1 > best {
                            best = st + 1;
                        }
                        if st + 1 == n {
                            break 'outer;
                        }
                    }
                }
            }
            i = j;
        }
        self.finish_best(best, s, out);
    }

    /// The nearest earlier step with a chain that `st` may extend: the previous step, or an
    /// earlier one when every step in between is optional.
    #[inline]
    fn predecessor(&self, st: usize, set: &[bool]) -> Option<usize> {
        let mut p = st - 1;
        loop {
            if set[p] {
                return Some(p);
            }
            if !self.optional[p] || p == 0 {
                return None;
            }
            p -= 1;
        }
    }

    /// Result when ClickHouse stops early with `level`: the prefix of steps `0..level`.
    fn finish_prefix(&self, level: usize, s: &Scratch, out: &mut Outcome) {
        let level = level.min(self.n);
        if level == 0 {
            return;
        }
        out.reached = if level == 64 {
            u64::MAX
        } else {
            (1u64 << level) - 1
        };
        let top = level - 1;
        if s.set[top] {
            let base = top * self.n;
            out.times[..level].copy_from_slice(&s.chain_times[base..base + level]);
            out.tags[..level].copy_from_slice(&s.chain_tags[base..base + level]);
        }
    }

    fn finish_best(&self, best: usize, s: &Scratch, out: &mut Outcome) {
        if best == 0 {
            return;
        }
        let top = best - 1;
        // steps reached: every required step up to the best one, and optional steps done
        let mut reached = 0u64;
        for l in 0..best {
            if !self.optional[l] || s.ever & (1 << l) != 0 {
                reached |= 1 << l;
            }
        }
        out.reached = reached;
        if s.set[top] {
            let base = top * self.n;
            out.times[..best].copy_from_slice(&s.chain_times[base..base + best]);
            out.tags[..best].copy_from_slice(&s.chain_tags[base..base + best]);
        }
    }

    /// Consecutive touchpoints: a chain grows only with the very next touchpoint. A touchpoint
    /// can extend one chain and start another, so every chain length alive at the previous
    /// touchpoint is tracked; for each, the latest start (all of them end at the same touchpoint,
    /// so a later start dominates).
    fn run_strict(&self, entries: &[Entry], s: &mut Scratch, out: &mut Outcome) {
        let n = self.n;
        s.reset(n);
        let step_mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        // bit k: a chain whose last step is k ends at the previous touchpoint
        let mut alive = 0u64;
        let mut best = 0usize;
        for e in entries {
            let m = e.mask & step_mask;
            let mut next = 0u64;
            if m != 0 {
                // longest chains first: a destination is always longer than its source, so no
                // source is overwritten before it is read
                let mut src = alive;
                while src != 0 {
                    let k = 63 - src.leading_zeros() as usize;
                    src &= !(1u64 << k);
                    let broken = self
                        .exclusions
                        .iter()
                        .any(|(bit, from, to)| e.mask & bit != 0 && k >= *from && k < *to);
                    if broken {
                        continue;
                    }
                    let mut st = k + 1;
                    while st < n {
                        if m & (1 << st) != 0 {
                            let ok = e.ts <= s.start[k].saturating_add(self.window)
                                && e.ts - s.last[k] <= self.within[st];
                            if ok && (next & (1 << st) == 0 || s.start[st] < s.start[k]) {
                                next |= 1 << st;
                                s.start[st] = s.start[k];
                                s.extend_chain(n, k, st, e);
                            }
                            break;
                        }
                        if !self.optional[st] {
                            break;
                        }
                        st += 1;
                    }
                }
                if m & 1 != 0 && e.ts < self.entry_before {
                    next |= 1;
                    s.start[0] = e.ts;
                    s.chain_times[0] = e.ts;
                    s.chain_tags[0] = e.tag;
                }
            }
            let mut b = next;
            while b != 0 {
                let st = b.trailing_zeros() as usize;
                b &= b - 1;
                s.last[st] = e.ts;
            }
            alive = next;
            if alive != 0 {
                let top = 63 - alive.leading_zeros() as usize;
                if top + 1 > best {
                    best = top + 1;
                    let base = top * n;
                    out.times[..best].copy_from_slice(&s.chain_times[base..base + best]);
                    out.tags[..best].copy_from_slice(&s.chain_tags[base..base + best]);
                    // required steps are never skipped: the steps with a time are the ones done
                    out.reached = out.times[..best]
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| **t != i64::MIN)
                        .fold(0u64, |acc, (l, _)| acc | 1 << l);
                    if best == n {
                        break;
                    }
                }
            }
        }
    }

    /// Any order: the best window `[t, t + window]` starting at a step touchpoint, by the
    /// longest prefix of steps all done in it (optional steps need not be).
    fn run_unordered(&self, entries: &[Entry], s: &mut Scratch, out: &mut Outcome) {
        let n = self.n;
        let step_mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        s.reset(n);
        let counts = &mut s.counts;
        counts.iter_mut().for_each(|c| *c = 0);
        let mut present = 0u64;
        let mut best_prefix = 0usize;
        let mut best_anchor = usize::MAX;
        let mut r = 0usize;
        for a in 0..entries.len() {
            let anchor = entries[a];
            if anchor.mask & step_mask != 0 && anchor.ts < self.entry_before {
                let end = anchor.ts.saturating_add(self.window);
                while r < entries.len() && entries[r].ts <= end {
                    let mut b = entries[r].mask & step_mask;
                    while b != 0 {
                        let st = b.trailing_zeros() as usize;
                        counts[st] += 1;
                        present |= 1 << st;
                        b &= b - 1;
                    }
                    r += 1;
                }
                let mut prefix = 0;
                while prefix < n && (present & (1 << prefix) != 0 || self.optional[prefix]) {
                    prefix += 1;
                }
                // trailing optional steps without their required successor do not count
                while prefix > 0 && self.optional[prefix - 1] && present & (1 << (prefix - 1)) == 0
                {
                    prefix -= 1;
                }
                if prefix > best_prefix {
                    best_prefix = prefix;
                    best_anchor = a;
                    if prefix == n {
                        break;
                    }
                }
            }
            // the anchor leaves the window
            if a < r {
                let mut b = anchor.mask & step_mask;
                while b != 0 {
                    let st = b.trailing_zeros() as usize;
                    counts[st] -= 1;
                    if counts[st] == 0 {
                        present &= !(1 << st);
                    }
                    b &= b - 1;
                }
            }
        }
        if best_anchor == usize::MAX {
            return;
        }
        let a = entries[best_anchor];
        let end = a.ts.saturating_add(self.window);
        for e in entries[best_anchor..].iter().take_while(|e| e.ts <= end) {
            let mut b = e.mask & step_mask;
            while b != 0 {
                let st = b.trailing_zeros() as usize;
                if st < best_prefix && out.times[st] == i64::MIN {
                    out.times[st] = e.ts;
                    out.tags[st] = e.tag;
                    out.reached |= 1 << st;
                }
                b &= b - 1;
            }
        }
        out.reached |= required_up_to(&self.optional, best_prefix);
    }
}

fn required_up_to(optional: &[bool], upto: usize) -> u64 {
    let mut m = 0u64;
    for (l, o) in optional.iter().enumerate().take(upto) {
        if !o {
            m |= 1 << l;
        }
    }
    m
}

/// Per-thread working memory of the kernels.
#[derive(Debug)]
pub struct Scratch {
    set: Vec<bool>,
    start: Vec<i64>,
    last: Vec<i64>,
    ever: u64,
    /// `chain_times[l * n + k]`: time of step k in the chain that reached step l.
    chain_times: Vec<i64>,
    chain_tags: Vec<u32>,
    group: Vec<(u32, u32)>,
    counts: Vec<u32>,
    /// The times of a chain walked by [`PersonRunner::record_table_chain`], kept across persons
    /// so that nothing is reset per person.
    chain: [i64; CHAIN_SLOTS],
}

/// Slots of [`Scratch::chain`]: every step and a dummy.
const CHAIN_SLOTS: usize = MAX_STEPS + 1;

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            set: Vec::new(),
            start: Vec::new(),
            last: Vec::new(),
            ever: 0,
            chain_times: Vec::new(),
            chain_tags: Vec::new(),
            group: Vec::new(),
            counts: Vec::new(),
            chain: [0; CHAIN_SLOTS],
        }
    }
}

impl Scratch {
    /// The chain of step `st` becomes the chain of step `p` (an earlier step), the optional
    /// steps between them skipped, and `e` as step `st`.
    #[inline]
    fn extend_chain(&mut self, n: usize, p: usize, st: usize, e: &Entry) {
        let (src, dst) = (p * n, st * n);
        self.chain_times.copy_within(src..=src + p, dst);
        self.chain_tags.copy_within(src..=src + p, dst);
        for l in p + 1..st {
            self.chain_times[dst + l] = i64::MIN;
            self.chain_tags[dst + l] = u32::MAX;
        }
        self.chain_times[dst + st] = e.ts;
        self.chain_tags[dst + st] = e.tag;
    }

    fn reset(&mut self, n: usize) {
        self.set.clear();
        self.set.resize(n, false);
        self.start.resize(n, 0);
        self.last.resize(n, 0);
        self.ever = 0;
        if self.chain_times.len() != n * n {
            self.chain_times = vec![i64::MIN; n * n];
            self.chain_tags = vec![u32::MAX; n * n];
        }
        self.counts.resize(n, 0);
    }
}

/// Durations in ms, kept exactly: those from 0 to `u32::MAX` ms (49 days) in 32 bits, the
/// others in 64. Funnels record millions of times per query; half the bytes are half the
/// memory traffic of recording, merging and selecting quantiles.
#[derive(Debug, Default, Clone)]
struct Durations {
    short: Vec<u32>,
    long: Vec<i64>,
}

impl Durations {
    #[inline]
    fn push(&mut self, ms: i64) {
        match u32::try_from(ms) {
            Ok(v) => self.short.push(v),
            Err(_) => self.long.push(ms),
        }
    }

    fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    fn append(&mut self, o: &Durations) {
        self.short.extend_from_slice(&o.short);
        self.long.extend_from_slice(&o.long);
    }

    fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        self.short
            .iter()
            .map(|v| *v as i64)
            .chain(self.long.iter().copied())
    }

    /// The nearest-rank quantiles (as [`crate::stats::quantile`]) for ascending `qs`: each
    /// selection after the first only looks above the previous one.
    fn quantiles<const K: usize>(&mut self, qs: [f64; K]) -> [Option<i64>; K] {
        debug_assert!(qs.is_sorted());
        let n = self.len();
        let mut out = [None; K];
        if n == 0 {
            return out;
        }
        let ranks = qs.map(|q| ((q * n as f64).ceil() as usize).clamp(1, n) - 1);
        if self.long.iter().any(|v| *v < 0) {
            // not ordered after the short ones: select over all
            let mut all: Vec<i64> = self.iter().collect();
            select_ranks(&mut all, &ranks, &mut out, |v| v);
            return out;
        }
        // every long duration is above every short one
        let short = self.short.len();
        let (low, high) = ranks.split_at(ranks.partition_point(|r| *r < short));
        let (out_low, out_high) = out.split_at_mut(low.len());
        select_ranks(&mut self.short, low, out_low, |v| v as i64);
        let high: Vec<usize> = high.iter().map(|r| r - short).collect();
        select_ranks(&mut self.long, &high, out_high, |v| v);
        out
    }

    /// The nearest-rank quantile (as [`crate::stats::quantile`]).
    #[cfg(test)]
    fn quantile(&mut self, q: f64) -> Option<i64> {
        self.quantiles([q])[0]
    }
}

/// Places the values of ascending `ranks` of `v` into `out`, each selection in the part above the
/// previous rank.
fn select_ranks<T: Ord + Copy>(
    v: &mut [T],
    ranks: &[usize],
    out: &mut [Option<i64>],
    widen: impl Fn(T) -> i64,
) {
    let mut from = 0;
    for (r, o) in ranks.iter().zip(out) {
        let r = (*r).max(from);
        *o = Some(widen(*v[from..].select_nth_unstable(r - from).1));
        from = r;
    }
}

/// One statistic to compute in [`StepTimes::of_steps`]: its number and every thread's durations.
type Job = (usize, Vec<Durations>);

/// The time statistics of one step, from the durations of every thread.
#[derive(Debug, Default, Clone)]
struct StepTimes {
    median: Option<i64>,
    p90: Option<i64>,
    count: u64,
    sum: i64,
    /// Counts per [`TTC_BOUNDS`] bucket, the last one unbounded (filled for time to convert).
    histogram: Vec<u64>,
}

impl StepTimes {
    /// Merges `parts` and computes their statistics; the 90th percentile and the histogram only
    /// when asked for.
    fn of(mut parts: Vec<Durations>, p90: bool, histogram: bool) -> StepTimes {
        // into the part with the most room, grown at most once
        parts.sort_by_key(|p| std::cmp::Reverse(p.short.capacity()));
        let mut parts = parts.into_iter();
        let mut all = parts.next().unwrap_or_default();
        let rest: Vec<Durations> = parts.collect();
        all.short.reserve(rest.iter().map(|p| p.short.len()).sum());
        for p in rest {
            all.append(&p);
        }
        let (median, p90) = if p90 {
            let [m, p] = all.quantiles([0.5, 0.9]);
            (m, p)
        } else {
            (all.quantiles([0.5])[0], None)
        };
        let mut t = StepTimes {
            median,
            p90,
            count: all.len() as u64,
            sum: all.iter().sum(),
            histogram: Vec::new(),
        };
        if histogram {
            t.histogram = vec![0; TTC_BOUNDS.len() + 1];
            // whole seconds: compared in ms without a division per duration
            let bounds = TTC_BOUNDS.map(|b| (b * 1000.0) as i64);
            for ms in all.iter() {
                t.histogram[bounds.partition_point(|b| *b < ms)] += 1;
            }
        }
        t
    }

    /// Per step, the statistics of the times from the previous step and from the first, with the
    /// histogram of the last step's time from the first. `parts` holds each thread's durations;
    /// merging and selecting run on up to `threads` threads, the biggest steps first.
    fn of_steps(
        parts: Vec<(Vec<Durations>, Vec<Durations>)>,
        n: usize,
        threads: usize,
    ) -> (Vec<StepTimes>, Vec<StepTimes>) {
        // job 2k: from the previous step to step k; job 2k + 1: from the first step to step k
        // (none for step 2: that is job 2, see [`Totals::from_prev`])
        let mut jobs: Vec<Job> = (0..2 * n).map(|j| (j, Vec::new())).collect();
        for (prev, first) in parts {
            for (k, (a, b)) in prev.into_iter().zip(first).enumerate() {
                jobs[2 * k].1.push(a);
                jobs[2 * k + 1].1.push(b);
            }
        }
        if n > 1 {
            jobs.remove(3);
        }
        let size = |j: &Job| j.1.iter().map(|d| d.len()).sum::<usize>();
        jobs.sort_by_key(|j| std::cmp::Reverse(size(j)));
        let total: usize = jobs.iter().map(size).sum();
        let threads = if total < 200_000 { 1 } else { threads.max(1) };
        // the biggest job to the least loaded thread
        let mut lanes: Vec<(usize, Vec<Job>)> = (0..threads).map(|_| (0, Vec::new())).collect();
        for j in jobs {
            let lane = lanes.iter_mut().min_by_key(|l| l.0).expect("one lane");
            lane.0 += size(&j);
            lane.1.push(j);
        }
        // time to convert: to the last step from the first
        let last = if n == 2 { 2 } else { 2 * n - 1 };
        let run = |lane: Vec<Job>| {
            lane.into_iter()
                .map(|(j, d)| (j, StepTimes::of(d, j % 2 == 0 || j == last, j == last)))
                .collect::<Vec<_>>()
        };
        let mut lanes = lanes.into_iter().map(|l| l.1);
        let mine = lanes.next().unwrap_or_default();
        let mut done: Vec<(usize, StepTimes)> = std::thread::scope(|s| {
            let others: Vec<_> = lanes.map(|l| s.spawn(move || run(l))).collect();
            let mut done = run(mine);
            for h in others {
                done.extend(h.join().expect("time statistics thread panicked"));
            }
            done
        });
        done.sort_by_key(|d| d.0);
        if n > 1 {
            let to_second = done[2].1.clone();
            done.insert(3, (3, to_second));
        }
        let (mut prev, mut first) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (j, t) in done {
            if j % 2 == 0 {
                prev.push(t);
            } else {
                first.push(t);
            }
        }
        (prev, first)
    }
}

/// Per-thread totals.
#[derive(Debug, Default)]
struct Totals {
    counts: Vec<u64>,
    levels: Vec<u64>,
    /// Per step: seconds-from-previous and seconds-from-first of those who reached it (ms). To
    /// step 2, the time from the first step is the time from the previous: only that is kept.
    from_prev: Vec<Durations>,
    from_first: Vec<Durations>,
    breakdown: FxHashMap<u32, Vec<u64>>,
    cohort: Vec<u32>,
}

impl Totals {
    fn new(n: usize) -> Totals {
        Totals {
            counts: vec![0; n],
            levels: vec![0; n + 1],
            from_prev: vec![Durations::default(); n],
            from_first: vec![Durations::default(); n],
            ..Default::default()
        }
    }

    /// Adds the counts of `o` (its durations are merged by [`StepTimes::of_steps`]).
    fn merge(&mut self, o: Totals) {
        for (a, b) in self.counts.iter_mut().zip(o.counts) {
            *a += b;
        }
        for (a, b) in self.levels.iter_mut().zip(o.levels) {
            *a += b;
        }
        for (k, v) in o.breakdown {
            let e = self.breakdown.entry(k).or_insert_with(|| vec![0; v.len()]);
            for (a, b) in e.iter_mut().zip(v) {
                *a += b;
            }
        }
        self.cohort.extend(o.cohort);
    }
}

/// Everything a thread needs to turn a journey into an outcome.
struct PersonRunner<'q> {
    q: &'q FunnelQuery,
    kernel: &'q FunnelKernel,
    matcher: &'q Matcher,
    breakdown: Option<TagSource>,
}

impl PersonRunner<'_> {
    fn entries(&self, j: &Journey<'_>, out: &mut Vec<Entry>) {
        out.clear();
        let all = self.kernel.sees_all_rows();
        for i in 0..j.len() {
            let mask = self.matcher.row_mask(j, i);
            if mask == 0 && !all {
                continue;
            }
            out.push(Entry {
                ts: j.ts[i],
                mask,
                tag: tag_of(j, i, self.breakdown),
            });
        }
    }

    /// True when recording needs more than the times of the chain (a breakdown or a cohort).
    fn needs_outcome(&self) -> bool {
        self.q.breakdown.is_some() || self.q.cohort.is_some()
    }

    /// [`PersonRunner::record`] for a chain of `best` steps from `t0` found by
    /// [`FunnelKernel::run_slots`] (no breakdown, no cohort): the chain is walked once, its
    /// times recorded on the way. From the chain's start, each step is the first touchpoint of
    /// that step (the fastest form of the chain, as [`FunnelKernel::walk_chain`]; a touchpoint
    /// may serve consecutive steps); it ends within the window since a chain from that start
    /// does. The journey has no equal times, so the start is the one touchpoint at `t0`.
    /// `MULTI` when an event may match several steps (else each matches at most one, and a
    /// touchpoint serves at most one step of the chain).
    #[inline]
    fn record_table_chain<const MULTI: bool>(
        &self,
        rows: &EventMasks<'_, '_>,
        best: usize,
        t0: i64,
        times: &mut [i64; CHAIN_SLOTS],
        t: &mut Totals,
    ) {
        t.levels[best] += 1;
        // one branch for the persons with no time between steps to record
        t.counts[0] += (best > 0) as u64;
        if best < 2 {
            return;
        }
        let ts = &rows.journey.ts[rows.lo..rows.hi];
        let events = &rows.journey.event[rows.lo..rows.hi];
        // the chain starts late in most journeys: its first row is the number of rows before
        // it, counted without a branch in short journeys and found by a branch-free bisection
        // in long ones
        let first = if ts.len() <= Self::SHORT_JOURNEY {
            ts.iter().map(|x| (*x < t0) as usize).sum()
        } else {
            let (mut base, mut size) = (0, ts.len());
            while size > 1 {
                let half = size / 2;
                base = std::hint::select_unpredictable(ts[base + half] < t0, base + half, base);
                size -= half;
            }
            base + (ts[base] < t0) as usize
        };
        // without a branch on whether a touchpoint is the next step: one that is not writes to
        // a dummy slot
        const DUMMY: usize = CHAIN_SLOTS - 1;
        debug_assert!(best < DUMMY);
        times[0] = t0;
        let mut k = 1;
        for (&x, &code) in ts[first..].iter().zip(&events[first..]) {
            let later = rows.masks.get(code as usize).copied().unwrap_or(0) >> k;
            let served = if MULTI {
                (later.trailing_ones() as usize).min(best - k)
            } else {
                (later & 1) as usize
            };
            times[if served > 0 { k } else { DUMMY }] = x;
            if MULTI {
                for slot in &mut times[k + 1..k + served.max(1)] {
                    *slot = x; // rare: the touchpoint serves the steps after too
                }
            }
            k += served;
            if k == best {
                break;
            }
        }
        debug_assert_eq!(k, best, "a chain from the latest start exists");
        for k in 1..best {
            t.counts[k] += 1;
            t.from_prev[k].push(times[k] - times[k - 1]);
            if k > 1 {
                t.from_first[k].push(times[k] - t0);
            }
        }
    }

    /// Journeys up to this long find their chain's start by counting (see
    /// [`PersonRunner::record_table_chain`]).
    const SHORT_JOURNEY: usize = 64;

    fn record(&self, who: u32, o: &Outcome, t: &mut Totals) {
        if o.reached == 0 {
            t.levels[0] += 1;
            return;
        }
        t.levels[o.level] += 1;
        let n = self.q.steps.len();
        let mut prev_time: Option<i64> = None;
        for st in 0..n {
            if o.reached & (1 << st) == 0 {
                continue;
            }
            t.counts[st] += 1;
            let time = o.times[st];
            if time != i64::MIN {
                if let Some(p) = prev_time {
                    t.from_prev[st].push(time - p);
                }
                if st > 1 && o.times[0] != i64::MIN {
                    t.from_first[st].push(time - o.times[0]);
                }
                prev_time = Some(time);
            }
        }
        if let Some(b) = &self.q.breakdown {
            let tag = match b.attribution {
                Attribution::FirstTouch => o.tags[0],
                Attribution::LastTouch => (0..n)
                    .rev()
                    .find(|s| o.reached & (1 << s) != 0 && o.tags[*s] != u32::MAX)
                    .map(|s| o.tags[s])
                    .unwrap_or(u32::MAX),
                Attribution::Step(k) => o.tags[k - 1],
            };
            let row = t.breakdown.entry(tag).or_insert_with(|| vec![0; n]);
            for (st, c) in row.iter_mut().enumerate() {
                if o.reached & (1 << st) != 0 {
                    *c += 1;
                }
            }
        }
        if let Some(c) = self.q.cohort {
            let k = c.step - 1;
            let hit = match c.outcome {
                CohortOutcome::Reached => o.reached & (1 << k) != 0,
                CohortOutcome::Dropped => {
                    let prev = (0..k)
                        .rev()
                        .find(|p| !self.q.steps[*p].optional)
                        .unwrap_or(0);
                    o.reached & (1 << prev) != 0 && o.reached & (1 << k) == 0
                }
            };
            if hit {
                t.cohort.push(who);
            }
        }
    }
}

/// Runs a funnel on a backend.
pub fn run_funnel<S: JourneySource>(
    source: &S,
    q: &FunnelQuery,
    opts: &ScanOptions,
) -> Result<FunnelResult> {
    let kernel = FunnelKernel::new(q)?;
    let n = q.steps.len();
    let mut selectors: Vec<EventSelector> = q.steps.iter().map(|s| s.selector.clone()).collect();
    selectors.extend(q.exclusions.iter().map(|e| e.selector.clone()));
    let (matcher, tags) = source.with_vocabulary(|v| {
        let tags = q.breakdown.as_ref().map(|b| match b.field {
            BreakdownField::Channel => TagSource::Channel,
            BreakdownField::Touchpoint => TagSource::Touchpoint,
            BreakdownField::Event => TagSource::Event,
            BreakdownField::Property => TagSource::Property(
                b.property
                    .as_deref()
                    .and_then(|p| v.code(Field::PropKey, p)),
            ),
        });
        Matcher::compile(&selectors, v).map(|m| (m, tags))
    })?;
    let runner = PersonRunner {
        q,
        kernel: &kernel,
        matcher: &matcher,
        breakdown: tags,
    };
    let mut scan_opts = opts.clone();
    // per person, counts and sets of durations: the same whichever thread sees a person (per
    // account, the order in which equal times of different persons arrive may matter)
    scan_opts.order_free = q.count_by == CountBy::Person;
    scan_opts.from_ms = max_opt(opts.from_ms, q.from_ms);
    scan_opts.to_ms = min_opt(
        opts.to_ms,
        q.to_ms
            .map(|t| t.saturating_add(q.window.ms()).saturating_add(1)),
    );
    // steps over event names only: the branch-free kernels, with the step mask of each event code
    let event_masks = matcher.event_masks().unwrap_or(&[]);
    let slot_table = if kernel.is_plain() {
        matcher.event_masks().and_then(|m| SlotTable::new(m, n))
    } else {
        None
    };
    let mut totals = Totals::new(n);
    let mut durations = Vec::new();
    match q.count_by {
        CountBy::Person => {
            let parts = source.scan_batches(
                &scan_opts,
                || {
                    (
                        Totals::new(n),
                        Vec::new(),
                        Scratch::default(),
                        Outcome::default(),
                    )
                },
                |(t, entries, scratch, outcome), b| {
                    let ties = !b.distinct_times;
                    let mut prefetch = RowPrefetch::default();
                    // a person's rows as the table kernels read them, asked for ahead of time
                    let mut rows_of = |lo: u32, hi: u32| {
                        prefetch.ahead(&b.rows, lo as usize);
                        EventMasks {
                            journey: &b.rows,
                            lo: lo as usize,
                            hi: hi as usize,
                            masks: event_masks,
                            breakdown: runner.breakdown,
                        }
                    };
                    // the hottest path: small funnels over event names, on rows without equal
                    // times, one kernel for the whole batch, inlined into this loop
                    if let Some(slots) = slot_table
                        .as_ref()
                        .filter(|s| kernel.small_single(s, ties) && !runner.needs_outcome())
                    {
                        let single = slots.single.as_deref().expect("a single-step table");
                        for &(lo, hi) in b.ranges {
                            let rows = rows_of(lo, hi);
                            let (best, t0) = kernel
                                .single_slots::<8, false, false>(&rows, single)
                                .expect("no ties looked for");
                            runner.record_table_chain::<false>(
                                &rows,
                                best,
                                t0,
                                &mut scratch.chain,
                                t,
                            );
                        }
                        return;
                    }
                    for (k, &(lo, hi)) in b.ranges.iter().enumerate() {
                        // the hot path: the batch's columns read in place
                        if let Some(slots) = &slot_table {
                            let rows = rows_of(lo, hi);
                            if let Some((best, t0)) = kernel.run_slots(&rows, slots, ties) {
                                if runner.needs_outcome() {
                                    outcome.reached = 0;
                                    outcome.level = 0;
                                    if best > 0 {
                                        kernel.report_chain(&rows, best, t0, outcome);
                                    }
                                    runner.record(b.persons[k], outcome, t);
                                } else if slots.single.is_some() {
                                    runner.record_table_chain::<false>(
                                        &rows,
                                        best,
                                        t0,
                                        &mut scratch.chain,
                                        t,
                                    );
                                } else {
                                    runner.record_table_chain::<true>(
                                        &rows,
                                        best,
                                        t0,
                                        &mut scratch.chain,
                                        t,
                                    );
                                }
                                continue;
                            }
                        }
                        let j = b.journey(k);
                        let matched = MatchedJourney {
                            journey: &j,
                            matcher: &matcher,
                            breakdown: runner.breakdown,
                        };
                        let done = slot_table.is_none()
                            && kernel.is_plain()
                            && kernel.run_plain(&matched, outcome);
                        if !done {
                            runner.entries(&j, entries);
                            kernel.run(entries, scratch, outcome);
                        }
                        runner.record(b.persons[k], outcome, t);
                    }
                },
            );
            for (mut t, ..) in parts {
                durations.push((
                    std::mem::take(&mut t.from_prev),
                    std::mem::take(&mut t.from_first),
                ));
                totals.merge(t);
            }
        }
        CountBy::Account => {
            let parts = source.scan(
                &scan_opts,
                || (Vec::<(u32, Entry)>::new(), Vec::new()),
                |(acc, entries), j| {
                    let account = j.account();
                    if account == NO_ACCOUNT {
                        return;
                    }
                    runner.entries(j, entries);
                    acc.extend(entries.iter().map(|e| (account, *e)));
                },
            );
            let mut all: Vec<(u32, Entry)> = parts.into_iter().flat_map(|p| p.0).collect();
            // stable: the arrival order of ties within a person is kept
            all.sort_by_key(|(a, e)| (*a, e.ts));
            let (mut scratch, mut outcome) = (Scratch::default(), Outcome::default());
            let mut entries = Vec::new();
            for group in all.chunk_by(|a, b| a.0 == b.0) {
                entries.clear();
                entries.extend(group.iter().map(|(_, e)| *e));
                kernel.run(&entries, &mut scratch, &mut outcome);
                runner.record(group[0].0, &outcome, &mut totals);
            }
            durations.push((
                std::mem::take(&mut totals.from_prev),
                std::mem::take(&mut totals.from_first),
            ));
        }
    }
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |t| t.get()),
        t => t,
    };
    let times = StepTimes::of_steps(durations, n, threads);
    Ok(source.with_vocabulary(|v| render(q, totals, times, v)))
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) | (None, x) => x,
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) | (None, x) => x,
    }
}

fn secs(ms: Option<i64>) -> Option<f64> {
    ms.map(|v| v as f64 / 1000.0)
}

/// Bucket bounds of the time-to-convert histogram, in seconds.
const TTC_BOUNDS: [f64; 9] = [
    60.0, 600.0, 3600.0, 21600.0, 86400.0, 259200.0, 604800.0, 1209600.0, 2592000.0,
];

fn render(
    q: &FunnelQuery,
    t: Totals,
    (from_prev, from_first): (Vec<StepTimes>, Vec<StepTimes>),
    v: &dyn Vocabulary,
) -> FunnelResult {
    let n = q.steps.len();
    let first = t.counts[0];
    let mut steps = Vec::with_capacity(n);
    let mut prev_required: Option<usize> = None;
    for st in 0..n {
        let step = &q.steps[st];
        let count = t.counts[st];
        let prev_count = prev_required.map(|p| t.counts[p]);
        steps.push(StepResult {
            step: st + 1,
            name: step.label(),
            optional: step.optional,
            count,
            dropped: prev_count.map(|p| p.saturating_sub(count)).unwrap_or(0),
            conversion_from_previous: prev_count.and_then(|p| ratio(count, p)),
            conversion_from_first: ratio(count, first),
            median_seconds_from_previous: secs(from_prev[st].median),
            p90_seconds_from_previous: secs(from_prev[st].p90),
            median_seconds_from_first: secs(from_first[st].median),
        });
        if !step.optional {
            prev_required = Some(st);
        }
    }
    let ttc = &from_first[n - 1];
    let time_to_convert = TimeToConvert {
        converted: if n == 1 { first } else { ttc.count },
        median_seconds: secs(ttc.median),
        p90_seconds: secs(ttc.p90),
        mean_seconds: (ttc.count > 0).then(|| ttc.sum as f64 / ttc.count as f64 / 1000.0),
        histogram: TTC_BOUNDS
            .iter()
            .map(|b| Some(*b))
            .chain(std::iter::once(None))
            .zip(ttc.histogram.iter().copied())
            .collect(),
    };
    let field = match q.count_by {
        CountBy::Person => Field::DistinctId,
        CountBy::Account => Field::Account,
    };
    let breakdown = q
        .breakdown
        .as_ref()
        .map(|b| {
            let f = match b.field {
                BreakdownField::Channel => Field::Channel,
                BreakdownField::Touchpoint => Field::Touchpoint,
                BreakdownField::Event => Field::Event,
                BreakdownField::Property => Field::PropValue,
            };
            let mut rows: Vec<BreakdownRow> = t
                .breakdown
                .iter()
                .map(|(code, counts)| BreakdownRow {
                    value: if *code == u32::MAX {
                        "(none)".to_string()
                    } else {
                        v.name(f, *code).to_string()
                    },
                    conversion: ratio(counts[n - 1], counts[0]),
                    counts: counts.clone(),
                })
                .collect();
            rows.sort_by(|a, b| b.counts[0].cmp(&a.counts[0]).then(a.value.cmp(&b.value)));
            rows
        })
        .unwrap_or_default();
    let cohort = q.cohort.map(|_| {
        let mut names: Vec<String> = t
            .cohort
            .iter()
            .map(|c| v.name(field, *c).to_string())
            .collect();
        names.sort();
        names
    });
    FunnelResult {
        counted: q.count_by,
        order: q.order,
        window_seconds: q.window.ms() as f64 / 1000.0,
        steps,
        time_to_convert,
        breakdown,
        cohort,
        levels: t.levels,
    }
}

#[cfg(test)]
mod durations_tests {
    use super::*;
    use crate::stats::quantile;

    /// The time-to-convert histogram puts a duration on a bound in that bound's bucket, from
    /// every thread's part, long durations included.
    #[test]
    fn histogram_buckets_are_closed_above() {
        let mut a = Durations::default();
        let mut b = Durations::default();
        for ms in [0, 60_000, 60_001, 600_000] {
            a.push(ms);
        }
        for ms in [2_592_000_000, 2_592_000_001, 5_000_000_000] {
            b.push(ms);
        }
        let t = StepTimes::of(vec![a, b], true, true);
        assert_eq!(t.histogram, [2, 2, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(t.count, 7);
        assert_eq!(t.median, Some(600_000));
        assert_eq!(t.p90, Some(5_000_000_000));
    }
    use proptest::prelude::*;

    proptest! {
        /// Split storage gives the quantiles of the plain values, long and negative ones included.
        #[test]
        fn durations_quantiles_are_exact(
            values in prop::collection::vec(
                prop_oneof![0i64..1_000, 4_294_967_000i64..4_294_968_000, -5i64..0, 5_000_000_000i64..6_000_000_000],
                0..40,
            ),
            q in prop_oneof![Just(0.5), Just(0.9), Just(0.01), Just(1.0)],
        ) {
            let mut d = Durations::default();
            for v in &values {
                d.push(*v);
            }
            let mut plain = values.clone();
            prop_assert_eq!(d.quantile(q), quantile(&mut plain, q));
            // several ascending ranks at once, each selected above the previous
            let qs = [0.01, 0.5, 0.5, 0.9, 1.0];
            let expected = qs.map(|q| quantile(&mut plain, q));
            prop_assert_eq!(d.quantiles(qs), expected);
            prop_assert_eq!(d.iter().sum::<i64>(), values.iter().sum::<i64>());
        }
    }
}

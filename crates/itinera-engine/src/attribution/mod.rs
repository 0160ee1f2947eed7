//! Attribution: which channels (or touchpoints, or events) earn the credit for conversions and
//! their revenue. Every model runs from one scan: rule-based models split each conversion as it
//! is met, and the scan also gathers the distinct paths (with conversions, value and nulls) from
//! which the Markov and Shapley models are solved. The same path table can come from a file in
//! the ChannelAttribution format instead ([`PathTable::parse`]).

pub mod heuristic;
pub mod markov;
pub mod shapley;

use crate::error::{EngineError, Result};
use crate::journey::CountBy;
use crate::journey::{Field, Journey, JourneySource, ScanOptions, NO_ACCOUNT};
use crate::selector::{Conjunction, EventSelector, Matcher, Pattern};
use crate::Span;
pub use heuristic::{AttributionModel, HeuristicParams, Touch};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a touch is credited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttributionKey {
    #[default]
    Channel,
    Touchpoint,
    Event,
    /// The UTM campaign (`campaign_property`, default `campaign.name`); touchpoints without one
    /// continue the visit of the campaign before them, as direct ones do for channels.
    Campaign,
}

impl AttributionKey {
    fn field(self) -> Field {
        match self {
            AttributionKey::Channel => Field::Channel,
            AttributionKey::Touchpoint => Field::Touchpoint,
            AttributionKey::Event => Field::Event,
            AttributionKey::Campaign => Field::PropValue,
        }
    }
}

/// Where a row's key comes from: a coded column, or a property (rows without it get `none`).
#[derive(Clone, Copy)]
enum KeySource {
    Column(AttributionKey),
    Prop { key: Option<u32>, none: u32 },
}

impl KeySource {
    fn key(&self, j: &Journey<'_>, i: usize) -> u32 {
        match *self {
            KeySource::Column(AttributionKey::Channel) => j.channel[i],
            KeySource::Column(AttributionKey::Touchpoint) => j.touchpoint[i],
            KeySource::Column(AttributionKey::Event) => j.event[i],
            KeySource::Column(AttributionKey::Campaign) => unreachable!("campaigns are properties"),
            KeySource::Prop { key, none } => key.and_then(|k| j.props.get(i, k)).unwrap_or(none),
        }
    }
}

/// An attribution analysis over the stored journeys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributionQuery {
    /// The conversion; its revenue is the conversion value.
    #[serde(default = "default_conversion")]
    pub conversion: EventSelector,
    /// Touchpoints that can earn credit (default: every `page`, `screen` and `track` that is not
    /// a conversion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touch: Option<EventSelector>,
    #[serde(default)]
    pub by: AttributionKey,
    /// Touches older than this before the conversion earn nothing.
    #[serde(default = "default_lookback")]
    pub lookback: Span,
    #[serde(default)]
    pub count_by: CountBy,
    /// Models to run (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<AttributionModel>,
    #[serde(default = "default_half_life")]
    pub half_life: Span,
    /// Position-based shares of the first and last touch.
    #[serde(default = "default_edge_share")]
    pub first_share: f64,
    #[serde(default = "default_edge_share")]
    pub last_share: f64,
    /// With `by: channel`, touchpoints are grouped into visits: a visit ends after this much
    /// inactivity or when a touchpoint names another channel than direct; the visit is one touch
    /// of its first channel (as web analytics tools count sessions).
    #[serde(default = "default_session_gap")]
    pub session_gap: Span,
    /// Markov chain order, 1–4.
    #[serde(default = "default_order")]
    pub markov_order: usize,
    /// The key name that last-non-direct skips.
    #[serde(default = "default_direct")]
    pub direct: String,
    /// With `by: campaign`: the property naming the campaign.
    #[serde(default = "default_campaign_property")]
    pub campaign_property: String,
    /// Random orders drawn when `shapley_markov` has more than 15 players.
    #[serde(default = "default_samples")]
    pub shapley_samples: usize,
    #[serde(default)]
    pub seed: u64,
    /// Only conversions (and, for nulls, last touches) with `from_ms <= ts < to_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
}

/// Most distinct keys Markov and Shapley take: one chain solve per key (per coalition for exact
/// Shapley), so the work is bounded before it starts.
pub const MAX_CHAIN_KEYS: usize = 1000;
/// Most random orders Shapley sampling draws.
pub const MAX_SHAPLEY_SAMPLES: usize = 1_000_000;

fn default_conversion() -> EventSelector {
    EventSelector::event("Order Completed")
}
fn default_lookback() -> Span {
    Span(30 * Span::DAY.ms())
}
fn default_half_life() -> Span {
    Span(7 * Span::DAY.ms())
}
fn default_edge_share() -> f64 {
    0.4
}
fn default_session_gap() -> Span {
    Span(30 * 60_000)
}
fn default_order() -> usize {
    1
}
fn default_direct() -> String {
    "direct".into()
}
fn default_campaign_property() -> String {
    "campaign.name".into()
}
fn default_samples() -> usize {
    20_000
}

impl Default for AttributionQuery {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

/// Settings shared by the journey and the path-table forms.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub models: Vec<AttributionModel>,
    pub half_life: Span,
    pub first_share: f64,
    pub last_share: f64,
    pub markov_order: usize,
    pub shapley_samples: usize,
    pub seed: u64,
    pub direct: String,
}

impl AttributionQuery {
    pub fn settings(&self) -> ModelSettings {
        ModelSettings {
            models: self.models.clone(),
            half_life: self.half_life,
            first_share: self.first_share,
            last_share: self.last_share,
            markov_order: self.markov_order,
            shapley_samples: self.shapley_samples,
            seed: self.seed,
            direct: self.direct.clone(),
        }
    }
}

impl ModelSettings {
    fn validate(&mut self, times_known: bool) -> Result<()> {
        if self.models.is_empty() {
            self.models = AttributionModel::ALL
                .into_iter()
                .filter(|m| times_known || *m != AttributionModel::TimeDecay)
                .collect();
        } else if !times_known && self.models.contains(&AttributionModel::TimeDecay) {
            return Err(EngineError::invalid(
                "models",
                "time_decay needs the time of each touch, which a path table does not have",
            ));
        }
        let mut seen = Vec::new();
        self.models.retain(|m| {
            let new = !seen.contains(m);
            seen.push(*m);
            new
        });
        if !(1..=4).contains(&self.markov_order) {
            return Err(EngineError::invalid(
                "markov_order",
                format!("{} is not between 1 and 4", self.markov_order),
            ));
        }
        let (f, l) = (self.first_share, self.last_share);
        if !(0.0..=1.0).contains(&f) || !(0.0..=1.0).contains(&l) || f + l > 1.0 {
            return Err(EngineError::invalid(
                "first_share",
                format!("first {f} and last {l} must be shares in 0…1 adding up to at most 1"),
            ));
        }
        if self.half_life.ms() <= 0 {
            return Err(EngineError::invalid("half_life", "must be positive"));
        }
        if !(2..=MAX_SHAPLEY_SAMPLES).contains(&self.shapley_samples) {
            return Err(EngineError::invalid(
                "shapley_samples",
                format!(
                    "{} is not between 2 and {MAX_SHAPLEY_SAMPLES}",
                    self.shapley_samples
                ),
            ));
        }
        Ok(())
    }

    fn params(&self, direct: Option<u32>) -> HeuristicParams {
        HeuristicParams {
            half_life_ms: self.half_life.ms() as f64,
            first_share: self.first_share,
            last_share: self.last_share,
            direct,
        }
    }

    fn heuristics(&self) -> Vec<AttributionModel> {
        self.models
            .iter()
            .copied()
            .filter(|m| m.is_heuristic())
            .collect()
    }
}

/// One distinct path: its keys in order and what the journeys that followed it did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PathRow {
    pub keys: Vec<u32>,
    pub conversions: f64,
    pub value: f64,
    /// Journeys on this path that did not convert.
    pub nulls: f64,
}

/// Paths with names: the input of the ChannelAttribution package, or what a scan gathered.
#[derive(Debug, Clone, Default)]
pub struct PathTable {
    pub names: Vec<String>,
    pub rows: Vec<PathRow>,
}

impl PathTable {
    /// Parses `path;conversions[;value[;nulls]]` lines, keys in a path joined by `>`. A first
    /// line whose second column is not a number is a header; with a header, columns are found by
    /// name (`path`, `total_conversions`, `total_conversion_value`, `total_null`).
    pub fn parse(text: &str) -> Result<PathTable> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let mut table = PathTable::default();
        let mut ids: FxHashMap<String, u32> = FxHashMap::default();
        let mut cols = [0usize, 1, 2, 3];
        let mut first = lines.next();
        if let Some((_, l)) = first {
            let fields: Vec<&str> = l.split(';').map(|f| f.trim().trim_matches('"')).collect();
            if fields.get(1).is_some_and(|f| f.parse::<f64>().is_err()) {
                let find = |names: &[&str], dflt: usize| {
                    fields
                        .iter()
                        .position(|f| names.contains(f))
                        .unwrap_or(dflt)
                };
                cols = [
                    find(&["path"], 0),
                    find(&["total_conversions", "conversions"], 1),
                    find(&["total_conversion_value", "value"], usize::MAX),
                    find(&["total_null", "nulls", "null"], usize::MAX),
                ];
                first = None;
            }
        }
        for (n, line) in first.into_iter().chain(lines) {
            let fields: Vec<&str> = line
                .split(';')
                .map(|f| f.trim().trim_matches('"'))
                .collect();
            let at = |what: &str, i: usize| -> Result<f64> {
                match fields.get(i) {
                    None => Ok(0.0),
                    Some(&"") => Ok(0.0),
                    Some(f) => f
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .ok_or_else(|| {
                            EngineError::invalid(
                                "paths",
                                format!(
                                    "line {}: {what} `{f}` is not a non-negative number",
                                    n + 1
                                ),
                            )
                        }),
                }
            };
            let path = fields.get(cols[0]).copied().unwrap_or("");
            let mut keys = Vec::new();
            for name in path.split('>').map(str::trim) {
                if name.is_empty() {
                    return Err(EngineError::invalid(
                        "paths",
                        format!("line {}: empty channel in path `{path}`", n + 1),
                    ));
                }
                let next = ids.len() as u32;
                let id = *ids.entry(name.to_string()).or_insert_with(|| {
                    table.names.push(name.to_string());
                    next
                });
                keys.push(id);
            }
            table.rows.push(PathRow {
                keys,
                conversions: at("conversions", cols[1])?,
                value: at("value", cols[2])?,
                nulls: at("nulls", cols[3])?,
            });
        }
        Ok(table)
    }
}

/// Credit of one key under one model.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Credit {
    pub conversions: f64,
    pub value: f64,
}

/// One key's row of the side-by-side table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyCredit {
    pub name: String,
    /// Model name → credit.
    pub credit: BTreeMap<String, Credit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal_effect: Option<Credit>,
    /// Standard error of the sampled `shapley_markov` credit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shapley_markov_std_error: Option<Credit>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttributionTotals {
    /// Conversions with at least one touch in the lookback window (the ones credited).
    pub conversions: f64,
    pub value: f64,
    /// Conversions without a touch in the lookback window: no model credits them.
    pub unattributed_conversions: f64,
    pub unattributed_value: f64,
    /// Paths that ended without a conversion (inputs of Markov and Shapley).
    pub null_paths: f64,
    /// Distinct paths gathered for Markov and Shapley (0 when neither runs).
    pub distinct_paths: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MarkovSummary {
    pub order: usize,
    pub states: usize,
    pub conversion_probability: f64,
    pub value_per_journey: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShapleySummary {
    pub players: usize,
    pub exact: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
}

/// All models side by side, with their definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttributionResult {
    pub by: String,
    pub models: Vec<AttributionModel>,
    pub totals: AttributionTotals,
    pub keys: Vec<KeyCredit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markov: Option<MarkovSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shapley_markov: Option<ShapleySummary>,
    /// Model name → what its numbers mean.
    pub definitions: BTreeMap<String, String>,
}

/// Credit per model and key, gathered per thread.
struct Gathered {
    heuristic: Vec<Vec<Credit>>,
    paths: FxHashMap<Box<[u32]>, PathRow>,
    totals: AttributionTotals,
}

impl Gathered {
    fn new(models: usize, keys: usize) -> Gathered {
        Gathered {
            heuristic: vec![vec![Credit::default(); keys]; models],
            paths: FxHashMap::default(),
            totals: AttributionTotals::default(),
        }
    }

    fn add_path(&mut self, keys: &[u32], conversions: f64, value: f64, nulls: f64) {
        let row = match self.paths.get_mut(keys) {
            Some(r) => r,
            None => self.paths.entry(keys.into()).or_insert_with(|| PathRow {
                keys: keys.to_vec(),
                ..Default::default()
            }),
        };
        row.conversions += conversions;
        row.value += value;
        row.nulls += nulls;
    }

    fn merge(&mut self, o: Gathered) {
        for (m, credits) in o.heuristic.into_iter().enumerate() {
            for (k, c) in credits.into_iter().enumerate() {
                self.heuristic[m][k].conversions += c.conversions;
                self.heuristic[m][k].value += c.value;
            }
        }
        for (k, r) in o.paths {
            self.add_path(&k, r.conversions, r.value, r.nulls);
        }
        let t = &mut self.totals;
        t.conversions += o.totals.conversions;
        t.value += o.totals.value;
        t.unattributed_conversions += o.totals.unattributed_conversions;
        t.unattributed_value += o.totals.unattributed_value;
        t.null_paths += o.totals.null_paths;
    }
}

/// A touchpoint reduced to what attribution needs.
#[derive(Debug, Clone, Copy)]
struct Row {
    ts: i64,
    key: u32,
    conversion: bool,
    revenue: f64,
}

/// Walks one journey: touches accumulate into the open path; a conversion credits the path's
/// touches within the lookback window and starts a new path; what is left at the end is a null.
struct Walker<'q> {
    heuristics: &'q [AttributionModel],
    /// Gather the distinct paths (for Markov and Shapley).
    need_paths: bool,
    params: HeuristicParams,
    /// Visits for channels; `None`: a run of rows with the same key is one touch.
    session_gap: Option<i64>,
    lookback: i64,
    from: i64,
    to: i64,
}

impl Walker<'_> {
    fn walk(&self, rows: impl Iterator<Item = Row>, path: &mut Vec<Touch>, g: &mut Gathered) {
        path.clear();
        let mut keys = Vec::new();
        let mut last_row = i64::MIN;
        for r in rows {
            if !r.conversion {
                let same = match (path.last_mut(), self.session_gap) {
                    (Some(t), Some(gap)) => {
                        r.ts - last_row <= gap
                            && (r.key == t.key || Some(r.key) == self.params.direct)
                    }
                    // a run of touches on the same key is one touch, timed by its latest row
                    (Some(t), None) if t.key == r.key => {
                        t.ts = Some(r.ts);
                        true
                    }
                    _ => false,
                };
                if !same {
                    path.push(Touch {
                        key: r.key,
                        ts: Some(r.ts),
                    });
                }
                last_row = r.ts;
                continue;
            }
            let start = path.partition_point(|t| t.ts.unwrap_or(0) < r.ts - self.lookback);
            let window = &path[start..];
            let value = if r.revenue.is_nan() { 0.0 } else { r.revenue };
            if (self.from..self.to).contains(&r.ts) {
                if window.is_empty() {
                    g.totals.unattributed_conversions += 1.0;
                    g.totals.unattributed_value += value;
                } else {
                    g.totals.conversions += 1.0;
                    g.totals.value += value;
                    for (m, model) in self.heuristics.iter().enumerate() {
                        let credit = &mut g.heuristic[m];
                        heuristic::split(*model, &self.params, window, Some(r.ts), 1.0, |k, c| {
                            credit[k as usize].conversions += c;
                            credit[k as usize].value += c * value;
                        });
                    }
                    if self.need_paths {
                        keys.clear();
                        keys.extend(window.iter().map(|t| t.key));
                        g.add_path(&keys, 1.0, value, 0.0);
                    }
                }
            }
            path.clear();
        }
        if let Some(last) = path.last().and_then(|t| t.ts) {
            if (self.from..self.to).contains(&last) {
                g.totals.null_paths += 1.0;
                if self.need_paths {
                    let start = path.partition_point(|t| t.ts.unwrap_or(0) < last - self.lookback);
                    keys.clear();
                    keys.extend(path[start..].iter().map(|t| t.key));
                    g.add_path(&keys, 0.0, 0.0, 1.0);
                }
            }
        }
    }
}

/// Runs an attribution analysis over every journey of `source`.
pub fn run_attribution<S: JourneySource>(
    source: &S,
    q: &AttributionQuery,
    opts: &ScanOptions,
) -> Result<AttributionResult> {
    let mut settings = q.settings();
    settings.validate(true)?;
    if q.lookback.ms() <= 0 {
        return Err(EngineError::invalid("lookback", "must be positive"));
    }
    let touch = q.touch.clone().unwrap_or_else(|| {
        EventSelector::All(Conjunction {
            kind: Some(Pattern::AnyOf(vec![
                "page".into(),
                "screen".into(),
                "track".into(),
            ])),
            ..Default::default()
        })
    });
    let field = q.by.field();
    let (matcher, keys, direct, source_of_key) = source.with_vocabulary(|v| {
        Matcher::compile(&[q.conversion.clone(), touch], v).map(|m| {
            let n = v.names(field).len();
            if q.by == AttributionKey::Campaign {
                // one more key for touchpoints without a campaign: the "direct" of campaigns
                let none = n as u32;
                let key = v.code(Field::PropKey, &q.campaign_property);
                (m, n + 1, Some(none), KeySource::Prop { key, none })
            } else {
                (m, n, v.code(field, &q.direct), KeySource::Column(q.by))
            }
        })
    })?;
    let heuristics = settings.heuristics();
    let walker = Walker {
        heuristics: &heuristics,
        need_paths: settings.models.len() > heuristics.len(),
        params: settings.params(direct),
        session_gap: matches!(q.by, AttributionKey::Channel | AttributionKey::Campaign)
            .then_some(q.session_gap.ms()),
        lookback: q.lookback.ms(),
        from: q.from_ms.unwrap_or(i64::MIN),
        to: q.to_ms.unwrap_or(i64::MAX),
    };
    let mut scan = opts.clone();
    scan.from_ms = q
        .from_ms
        .map(|f| f.saturating_sub(q.lookback.ms()))
        .max(opts.from_ms);
    scan.to_ms = match (q.to_ms, opts.to_ms) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut gathered = Gathered::new(heuristics.len(), keys);
    match q.count_by {
        CountBy::Person => {
            let parts = source.scan(
                &scan,
                || (Gathered::new(heuristics.len(), keys), Vec::new()),
                |(g, path), j| walker.walk(rows_of(j, source_of_key, &matcher), path, g),
            );
            for (g, _) in parts {
                gathered.merge(g);
            }
        }
        CountBy::Account => {
            let parts = source.scan(&scan, Vec::new, |acc: &mut Vec<(u32, Row)>, j| {
                let account = j.account();
                if account != NO_ACCOUNT {
                    acc.extend(rows_of(j, source_of_key, &matcher).map(|r| (account, r)));
                }
            });
            let mut all: Vec<(u32, Row)> = parts.into_iter().flatten().collect();
            all.sort_by_key(|(a, r)| (*a, r.ts));
            let mut path = Vec::new();
            for group in all.chunk_by(|a, b| a.0 == b.0) {
                walker.walk(group.iter().map(|(_, r)| *r), &mut path, &mut gathered);
            }
        }
    }
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let Gathered {
        heuristic,
        paths,
        mut totals,
    } = gathered;
    let rows: Vec<PathRow> = paths.into_values().collect();
    totals.distinct_paths = rows.len();
    let names = source.with_vocabulary(|v| v.names(field).to_vec());
    let table = PathTable { names, rows };
    let stop = || opts.control.as_ref().is_some_and(|c| c.is_cancelled());
    finish(&settings, &q.by_name(), table, heuristic, totals, &stop)
}

/// The touches (selector 2) and conversions (selector 1, which wins) of a journey.
fn rows_of<'a>(
    j: &'a Journey<'a>,
    by: KeySource,
    matcher: &'a Matcher,
) -> impl Iterator<Item = Row> + 'a {
    (0..j.len()).filter_map(move |i| {
        let mask = matcher.row_mask(j, i);
        (mask != 0).then(|| Row {
            ts: j.ts[i],
            key: by.key(j, i),
            conversion: mask & 1 != 0,
            revenue: j.revenue[i],
        })
    })
}

impl AttributionQuery {
    fn by_name(&self) -> String {
        match self.by {
            AttributionKey::Channel => "channel",
            AttributionKey::Touchpoint => "touchpoint",
            AttributionKey::Event => "event",
            AttributionKey::Campaign => "campaign",
        }
        .into()
    }
}

/// Runs the models on a path table (the ChannelAttribution input format). Time decay needs
/// touch times and is not available here.
pub fn run_on_paths(table: PathTable, settings: &ModelSettings) -> Result<AttributionResult> {
    let mut settings = settings.clone();
    settings.validate(false)?;
    let direct = table
        .names
        .iter()
        .position(|n| *n == settings.direct)
        .map(|i| i as u32);
    let params = settings.params(direct);
    let heuristics = settings.heuristics();
    let mut credit = vec![vec![Credit::default(); table.names.len()]; heuristics.len()];
    let mut totals = AttributionTotals {
        distinct_paths: table.rows.len(),
        ..Default::default()
    };
    let mut path = Vec::new();
    for row in &table.rows {
        totals.null_paths += row.nulls;
        if row.keys.is_empty() || row.conversions <= 0.0 {
            continue;
        }
        totals.conversions += row.conversions;
        totals.value += row.value;
        path.clear();
        path.extend(row.keys.iter().map(|&key| Touch { key, ts: None }));
        for (m, model) in heuristics.iter().enumerate() {
            let c = &mut credit[m];
            heuristic::split(*model, &params, &path, None, 1.0, |k, share| {
                c[k as usize].conversions += share * row.conversions;
                c[k as usize].value += share * row.value;
            });
        }
    }
    finish(&settings, "channel", table, credit, totals, &|| false)
}

/// Solves the path-based models and lays all models out side by side.
fn finish(
    settings: &ModelSettings,
    by: &str,
    table: PathTable,
    heuristic: Vec<Vec<Credit>>,
    totals: AttributionTotals,
    stop: &dyn Fn() -> bool,
) -> Result<AttributionResult> {
    let chains = settings.models.contains(&AttributionModel::Markov)
        || settings.models.contains(&AttributionModel::ShapleyMarkov);
    if chains {
        // bounded before any chain is solved: one solve per key
        let mut keys: Vec<u32> = table
            .rows
            .iter()
            .flat_map(|r| r.keys.iter().copied())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.len() > MAX_CHAIN_KEYS {
            return Err(EngineError::invalid(
                "models",
                format!(
                    "markov and shapley_markov handle at most {MAX_CHAIN_KEYS} distinct keys; these paths have {} (attribute `by` channel or campaign, or leave markov and shapley_markov out)",
                    keys.len()
                ),
            ));
        }
        if settings.models.contains(&AttributionModel::ShapleyMarkov)
            && keys.len() > shapley::MAX_PLAYERS
        {
            return Err(EngineError::invalid(
                "models",
                format!(
                    "shapley_markov supports at most {} keys; the paths have {} (shapley, the subset game, takes any number)",
                    shapley::MAX_PLAYERS,
                    keys.len()
                ),
            ));
        }
    }
    let heuristics = settings.heuristics();
    let mut rows: BTreeMap<u32, KeyCredit> = BTreeMap::new();
    let names = &table.names;
    fn entry<'r>(
        rows: &'r mut BTreeMap<u32, KeyCredit>,
        names: &[String],
        k: u32,
    ) -> &'r mut KeyCredit {
        rows.entry(k).or_insert_with(|| KeyCredit {
            name: names
                .get(k as usize)
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| "(none)".into()),
            credit: BTreeMap::new(),
            removal_effect: None,
            shapley_markov_std_error: None,
        })
    }
    for (m, credits) in heuristic.iter().enumerate() {
        for (k, c) in credits.iter().enumerate() {
            if c.conversions != 0.0 || c.value != 0.0 {
                entry(&mut rows, names, k as u32)
                    .credit
                    .insert(heuristics[m].name().into(), *c);
            }
        }
    }
    let mut markov_summary = None;
    if settings.models.contains(&AttributionModel::Markov) {
        let s = markov::solve(&table.rows, settings.markov_order, stop)?;
        let sum_c: f64 = s.removal_conversions.iter().sum();
        let sum_v: f64 = s.removal_value.iter().sum();
        let share = |x: f64, sum: f64, total: f64| if sum > 0.0 { total * x / sum } else { 0.0 };
        for (i, &k) in s.keys.iter().enumerate() {
            let e = entry(&mut rows, names, k);
            e.credit.insert(
                "markov".into(),
                Credit {
                    conversions: share(s.removal_conversions[i], sum_c, totals.conversions),
                    value: share(s.removal_value[i], sum_v, totals.value),
                },
            );
            e.removal_effect = Some(Credit {
                conversions: s.removal_conversions[i],
                value: s.removal_value[i],
            });
        }
        markov_summary = Some(MarkovSummary {
            order: settings.markov_order,
            states: s.states,
            conversion_probability: s.conversion_probability,
            value_per_journey: s.value_per_journey,
        });
    }
    let mut shapley_summary = None;
    if settings.models.contains(&AttributionModel::ShapleyMarkov) {
        let s = shapley::solve(
            &table.rows,
            settings.markov_order,
            settings.shapley_samples,
            settings.seed,
            stop,
        )?;
        let scale =
            |x: f64, worth: f64, total: f64| if worth > 0.0 { total * x / worth } else { 0.0 };
        for (i, &k) in s.keys.iter().enumerate() {
            let e = entry(&mut rows, names, k);
            e.credit.insert(
                "shapley_markov".into(),
                Credit {
                    conversions: scale(
                        s.phi_conversions[i],
                        s.conversion_probability,
                        totals.conversions,
                    ),
                    value: scale(s.phi_value[i], s.value_per_journey, totals.value),
                },
            );
            if let Some((c, v)) = &s.std_error {
                e.shapley_markov_std_error = Some(Credit {
                    conversions: scale(c[i], s.conversion_probability, totals.conversions),
                    value: scale(v[i], s.value_per_journey, totals.value),
                });
            }
        }
        shapley_summary = Some(ShapleySummary {
            players: s.keys.len(),
            exact: s.samples.is_none(),
            samples: s.samples,
        });
    }
    let mut keys: Vec<KeyCredit> = rows.into_values().collect();
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(AttributionResult {
        by: by.into(),
        definitions: settings
            .models
            .iter()
            .map(|m| (m.name().to_string(), m.definition().to_string()))
            .collect(),
        models: settings.models.clone(),
        totals,
        keys,
        markov: markov_summary,
        shapley_markov: shapley_summary,
    })
}

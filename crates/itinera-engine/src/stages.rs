//! Stage models (the buyer and customer journey as data) and the stage funnel.
//!
//! A model is an ordered list of stages, each with an entry rule (an event selector, optionally
//! counted only after the person entered another stage). Journeys are not linear, so progress is
//! defined on what a person *reached*, not on the order they went in:
//!
//! - a person **enters** stage k at their first touchpoint matching its rule;
//! - a person **reached** stage k when they entered k or any later stage (skipped stages count as
//!   passed through: someone who buys in the store without browsing has decided);
//! - the **furthest** stage is the last one reached; the **current** stage is the stage of the
//!   latest touchpoint that matched any rule (people go back), or `churned` after the model's
//!   inactivity period;
//! - **time in stage** k runs from entering k to first entering any later stage.
//!
//! Models apply to all stored history at query time: changing a model changes the answers at once.

use crate::duration::Span;
use crate::error::{EngineError, Result};
use crate::journey::{Journey, JourneySource, ScanOptions};
use crate::selector::{EventSelector, Matcher, KIND_NAMES};
use crate::stats::{quantile, ratio};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// One stage of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    /// The touchpoints that put a person in this stage.
    pub enter: EventSelector,
    /// Only touchpoints after the person entered this (earlier) stage count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// A stage model: stages in order, the purchase (buyer → customer handoff) and churn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageModel {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub stages: Vec<Stage>,
    /// The stage whose entry is the purchase: the buyer journey ends and the customer journey
    /// begins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_stage: Option<String>,
    /// A person inactive this long (at the end of the data) is churned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn_after: Option<Span>,
}

fn stage(name: &str, enter: &str, after: Option<&str>) -> Stage {
    Stage {
        name: name.into(),
        enter: EventSelector::parse(enter).expect("built-in selectors parse"),
        after: after.map(Into::into),
    }
}

const FIRST_TOUCH: &str = "kind=page|kind=screen|Store Visit|Email Opened|Call Completed";
const RESEARCH: &str = "Product Viewed|Whitepaper Downloaded|Webinar Attended";
const INTENT: &str = "Product Added|Checkout Started|Demo Requested|Trial Started";
const PURCHASE: &str = "Order Completed|Deal Won|Subscription Started";
const REPEAT: &str = "Order Completed|Subscription Renewed";
const ADVOCACY: &str = "Referral Sent|Review Submitted";

impl StageModel {
    /// The built-in models, over the event names of the Segment e-commerce and B2B specs.
    pub fn builtin(name: &str) -> Option<StageModel> {
        let purchase_after = Some("Decision");
        let (stages, purchase, description) = match name {
            "buyer-journey" => (
                vec![
                    stage("Awareness", FIRST_TOUCH, None),
                    stage("Consideration", RESEARCH, None),
                    stage("Decision", PURCHASE, None),
                ],
                "Decision",
                "The path to a purchase: Awareness, Consideration, Decision.",
            ),
            "customer-journey" => (
                vec![
                    stage("Awareness", FIRST_TOUCH, None),
                    stage("Consideration", &format!("{RESEARCH}|{INTENT}"), None),
                    stage("Decision", PURCHASE, None),
                    stage("Retention", REPEAT, purchase_after),
                    stage("Advocacy", ADVOCACY, purchase_after),
                ],
                "Decision",
                "The whole relationship: Awareness, Consideration, Decision, Retention (a repeat purchase or renewal after the first), Advocacy (a referral or review).",
            ),
            "seven-stage" => (
                vec![
                    stage("Pre-Awareness", "channel=display|channel=social|channel=paid_search", None),
                    stage("Awareness", FIRST_TOUCH, None),
                    stage("Consideration", RESEARCH, None),
                    stage("Preference", INTENT, None),
                    stage("Purchase", PURCHASE, None),
                    stage("After-Sale", "Survey Responded|Email Opened|Ticket Created", Some("Purchase")),
                    stage("Loyalty", &format!("{REPEAT}|{ADVOCACY}"), Some("Purchase")),
                ],
                "Purchase",
                "Pre-Awareness, Awareness, Consideration, Preference (the user journey), Purchase, After-Sale, Loyalty (the customer journey).",
            ),
            "aida" => (
                vec![
                    stage("Attention", FIRST_TOUCH, None),
                    stage("Interest", RESEARCH, None),
                    stage("Desire", INTENT, None),
                    stage("Action", PURCHASE, None),
                ],
                "Action",
                "Attention, Interest, Desire, Action.",
            ),
            _ => return None,
        };
        Some(StageModel {
            name: name.into(),
            description: description.into(),
            stages,
            purchase_stage: Some(purchase.into()),
            churn_after: Some(Span(90 * 86_400_000)),
        })
    }

    pub const BUILTIN: [&'static str; 4] =
        ["buyer-journey", "customer-journey", "seven-stage", "aida"];

    /// Checks names and references; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.stages.is_empty() {
            return Err(EngineError::invalid(
                "model.stages",
                "a model needs at least one stage",
            ));
        }
        if self.stages.len() > 32 {
            return Err(EngineError::invalid("model.stages", "at most 32 stages"));
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.name.trim().is_empty() {
                return Err(EngineError::invalid(
                    format!("model.stages[{i}].name"),
                    "empty",
                ));
            }
            if self.stages[..i].iter().any(|o| o.name == s.name) {
                return Err(EngineError::invalid(
                    format!("model.stages[{i}].name"),
                    format!("`{}` is used twice", s.name),
                ));
            }
            if let Some(a) = &s.after {
                if !self.stages[..i].iter().any(|o| &o.name == a) {
                    return Err(EngineError::invalid(
                        format!("model.stages[{i}].after"),
                        format!("`{a}` is not an earlier stage"),
                    ));
                }
            }
        }
        if let Some(p) = &self.purchase_stage {
            if !self.stages.iter().any(|s| &s.name == p) {
                return Err(EngineError::invalid(
                    "model.purchase_stage",
                    format!("`{p}` is not a stage of the model"),
                ));
            }
        }
        Ok(())
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }
}

/// A model by name (built-in) or given whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ModelRef {
    Builtin(String),
    Inline(StageModel),
}

impl ModelRef {
    pub fn resolve(&self) -> Result<StageModel> {
        let m = match self {
            ModelRef::Builtin(n) => StageModel::builtin(n).ok_or_else(|| {
                EngineError::invalid(
                    "model",
                    format!(
                        "no built-in model `{n}` (built-in: {})",
                        StageModel::BUILTIN.join(", ")
                    ),
                )
            })?,
            ModelRef::Inline(m) => m.clone(),
        };
        m.validate()?;
        Ok(m)
    }
}

/// One stage entry of a person's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageVisit {
    pub stage: String,
    /// First entry, ms since the epoch.
    pub entered_ms: i64,
    /// First entry into any later stage (None: still there, or left by going no further).
    pub exited_ms: Option<i64>,
}

/// What a model says about one person.
#[derive(Debug, Clone, Default)]
pub struct PersonStages {
    /// First entry time per stage (i64::MIN when never entered).
    pub entered: Vec<i64>,
    /// Index of the stage of the latest matching touchpoint.
    pub current: Option<usize>,
    pub last_seen: i64,
}

impl PersonStages {
    pub fn furthest(&self) -> Option<usize> {
        self.entered.iter().rposition(|t| *t != i64::MIN)
    }

    /// When the person left stage `s`: their first entry into any later stage.
    pub fn exit_of(&self, s: usize) -> Option<i64> {
        self.entered[s + 1..]
            .iter()
            .copied()
            .filter(|t| *t != i64::MIN)
            .min()
    }
}

/// A model compiled against one vocabulary.
pub struct CompiledModel {
    pub model: StageModel,
    matcher: Matcher,
    after: Vec<Option<usize>>,
}

impl CompiledModel {
    pub fn compile(model: StageModel, vocab: &dyn crate::journey::Vocabulary) -> Result<Self> {
        let selectors: Vec<EventSelector> = model.stages.iter().map(|s| s.enter.clone()).collect();
        let matcher = Matcher::compile(&selectors, vocab)?;
        let after = model
            .stages
            .iter()
            .map(|s| s.after.as_deref().and_then(|a| model.index_of(a)))
            .collect();
        Ok(CompiledModel {
            model,
            matcher,
            after,
        })
    }

    /// Applies the model to one journey.
    pub fn person(&self, j: &Journey<'_>, out: &mut PersonStages) {
        let n = self.model.stages.len();
        out.entered.clear();
        out.entered.resize(n, i64::MIN);
        out.current = None;
        out.last_seen = j.ts.last().copied().unwrap_or(i64::MIN);
        for i in 0..j.len() {
            let mut m = self.matcher.row_mask(j, i);
            let ts = j.ts[i];
            while m != 0 {
                let s = m.trailing_zeros() as usize;
                m &= m - 1;
                if let Some(a) = self.after[s] {
                    // only strictly after entering the stage it follows
                    if out.entered[a] == i64::MIN || out.entered[a] >= ts {
                        continue;
                    }
                }
                if out.entered[s] == i64::MIN {
                    out.entered[s] = ts;
                }
                out.current = Some(s);
            }
        }
    }

    /// A person's stage history: each stage entered, with its exit (first entry into a later
    /// stage).
    pub fn history(&self, p: &PersonStages) -> Vec<StageVisit> {
        let n = p.entered.len();
        (0..n)
            .filter(|s| p.entered[*s] != i64::MIN)
            .map(|s| StageVisit {
                stage: self.model.stages[s].name.clone(),
                entered_ms: p.entered[s],
                exited_ms: p.exit_of(s),
            })
            .collect()
    }
}

/// What to break the stage funnel down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StageBreakdown {
    /// The channel of the person's first touchpoint.
    Channel,
    /// `b2b` (the person belongs to an account) or `b2c`.
    B2b,
}

/// The stage funnel of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageFunnelQuery {
    pub model: ModelRef,
    /// Only touchpoints in `[from, to)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<StageBreakdown>,
    /// Also stage B2B accounts by their buying group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<AccountStageRule>,
    /// Also the top this-many touchpoints and channels of each stage (0, the default: none; at
    /// most 50): what persons did while in the stage.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub top_touchpoints: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The most touchpoints or channels a stage lists.
pub const MAX_TOP_TOUCHPOINTS: u32 = 50;

/// A touchpoint or channel of a stage: the persons who had it while in the stage (from entering
/// the stage, that touchpoint included, until entering a later one), and their share of the
/// persons who entered the stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageTouch {
    pub key: String,
    pub persons: u64,
    pub share: Option<f64>,
}

/// When an account is in a stage: when at least `min_share` of its members (persons with
/// touchpoints naming the account) reached it (0, the default, means any one member), and, with
/// `required_role`, when a member holding that role reached it too.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountStageRule {
    #[serde(default)]
    pub min_share: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_role: Option<String>,
    /// The trait that names a member's role (their latest value of it).
    #[serde(default = "default_role_property")]
    pub role_property: String,
}

pub fn default_role_property() -> String {
    "traits.role".into()
}

impl AccountStageRule {
    pub fn any_member() -> AccountStageRule {
        AccountStageRule {
            min_share: 0.0,
            required_role: None,
            role_property: default_role_property(),
        }
    }

    /// (property key, value) codes of the required role; `Some(None)` when no one holds it.
    pub(crate) fn role_codes(
        &self,
        vocab: &dyn crate::journey::Vocabulary,
    ) -> Option<Option<(u32, u32)>> {
        let role = self.required_role.as_deref()?;
        Some(
            vocab
                .code(crate::Field::PropKey, &self.role_property)
                .zip(vocab.code(crate::Field::PropValue, role)),
        )
    }
}

/// The stage funnel of accounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountStages {
    pub rule: AccountStageRule,
    pub accounts: u64,
    /// Accounts in each stage or a later one, by the rule.
    pub reached: Vec<u64>,
    pub cumulative_conversion: Vec<Option<f64>>,
}

/// Figures of one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageRow {
    pub stage: String,
    /// Persons whose rule for this stage matched.
    pub entered: u64,
    /// Persons who reached this stage or a later one.
    pub reached: u64,
    /// Reached this stage, not the next.
    pub dropped: u64,
    /// Reached the next stage / reached this one.
    pub next_stage_conversion: Option<f64>,
    /// Reached this stage / reached the first.
    pub cumulative_conversion: Option<f64>,
    /// Persons whose current stage this is (the stage of their latest matching touchpoint;
    /// churned persons included, see `churned`).
    pub current: u64,
    /// From entering this stage to entering a later one, for those who went on (seconds).
    pub median_seconds_in_stage: Option<f64>,
    pub p90_seconds_in_stage: Option<f64>,
    /// With `top_touchpoints`: the stage's top touchpoints (event names and page/screen names,
    /// as paths name them), by persons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub touchpoints: Vec<StageTouch>,
    /// With `top_touchpoints`: the stage's top channels, by persons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<StageTouch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageFunnelResult {
    pub model: StageModel,
    pub persons: u64,
    pub stages: Vec<StageRow>,
    /// Persons inactive for the model's churn period at the end of the data.
    pub churned: u64,
    /// Reached the purchase stage (the buyer → customer handoff).
    pub customers: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakdown: Vec<StageBreakdownRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<AccountStages>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageBreakdownRow {
    pub value: String,
    /// Reached count per stage.
    pub reached: Vec<u64>,
}

#[derive(Default)]
struct StageTotals {
    persons: u64,
    entered: Vec<u64>,
    reached: Vec<u64>,
    current: Vec<u64>,
    in_stage: Vec<Vec<i64>>,
    churn_candidates: Vec<i64>,
    customers: u64,
    breakdown: FxHashMap<u32, Vec<u64>>,
    /// Per account: members, members who reached each stage, and members holding the required
    /// role who reached each stage.
    accounts: FxHashMap<u32, (u32, Vec<u32>, Vec<u32>)>,
    /// Persons per (stage, touchpoint code) and per (stage, channel code).
    touchpoints: FxHashMap<(usize, u32), u64>,
    channels: FxHashMap<(usize, u32), u64>,
}

/// Per-thread scratch that tells whether a person already had a code in a stage, without sorting:
/// for each code, the person it was last seen for and the stages (bits) it was seen in.
#[derive(Default)]
struct Seen {
    person: u32,
    stamp: Vec<u32>,
    stages: Vec<u64>,
}

impl Seen {
    /// True the first time this person has `code` in stage `s`.
    fn first(&mut self, code: u32, s: usize) -> bool {
        let c = code as usize;
        if c >= self.stamp.len() {
            self.stamp.resize(c + 1, 0);
            self.stages.resize(c + 1, 0);
        }
        if self.stamp[c] != self.person {
            self.stamp[c] = self.person;
            self.stages[c] = 0;
        }
        let bit = 1u64 << s;
        let new = self.stages[c] & bit == 0;
        self.stages[c] |= bit;
        new
    }
}

/// Kinds of rows that are something a person did (track, page, screen), not who they are
/// (identify, group, alias).
fn is_action(kind: u8) -> bool {
    matches!(
        KIND_NAMES.get(kind as usize),
        Some(&("track" | "page" | "screen"))
    )
}

/// Counts once per person each touchpoint and channel they had while in each stage.
fn count_stage_touches(
    j: &Journey<'_>,
    p: &PersonStages,
    n: usize,
    t: &mut StageTotals,
    seen: &mut (Seen, Seen),
) {
    // a new person: stamps start at 1, so 0 is never a person
    seen.0.person = seen.0.person.wrapping_add(1).max(1);
    seen.1.person = seen.0.person;
    if seen.0.person == 1 {
        seen.0.stamp.iter_mut().for_each(|x| *x = 0);
        seen.1.stamp.iter_mut().for_each(|x| *x = 0);
    }
    // models have at most 32 stages: each fits a bit of `Seen::stages`
    for s in 0..n {
        let from = p.entered[s];
        if from == i64::MIN {
            continue;
        }
        let until = p.exit_of(s).unwrap_or(i64::MAX);
        let lo = j.ts.partition_point(|x| *x < from);
        let hi = j.ts.partition_point(|x| *x < until);
        for i in lo..hi {
            if !is_action(j.kind[i]) {
                continue;
            }
            if seen.0.first(j.touchpoint[i], s) {
                *t.touchpoints.entry((s, j.touchpoint[i])).or_default() += 1;
            }
            if seen.1.first(j.channel[i], s) {
                *t.channels.entry((s, j.channel[i])).or_default() += 1;
            }
        }
    }
}

/// Runs the stage funnel of a model on a backend.
pub fn run_stage_funnel<S: JourneySource>(
    source: &S,
    q: &StageFunnelQuery,
    opts: &ScanOptions,
) -> Result<StageFunnelResult> {
    let model = q.model.resolve()?;
    if q.top_touchpoints > MAX_TOP_TOUCHPOINTS {
        return Err(EngineError::invalid(
            "top_touchpoints",
            format!("{} asked, at most {MAX_TOP_TOUCHPOINTS}", q.top_touchpoints),
        ));
    }
    let (compiled, role) = source.with_vocabulary(|v| {
        CompiledModel::compile(model, v)
            .map(|c| (c, q.accounts.as_ref().and_then(|a| a.role_codes(v))))
    })?;
    let n = compiled.model.stages.len();
    let purchase = compiled
        .model
        .purchase_stage
        .as_deref()
        .and_then(|p| compiled.model.index_of(p));
    let mut scan_opts = opts.clone();
    scan_opts.from_ms = q.from_ms.or(opts.from_ms);
    scan_opts.to_ms = q.to_ms.or(opts.to_ms);
    let parts = source.scan(
        &scan_opts,
        || {
            (
                StageTotals {
                    entered: vec![0; n],
                    reached: vec![0; n],
                    current: vec![0; n],
                    in_stage: vec![Vec::new(); n],
                    ..Default::default()
                },
                PersonStages::default(),
                i64::MIN,
                (Seen::default(), Seen::default()),
            )
        },
        |(t, p, latest, seen), j| {
            compiled.person(j, p);
            *latest = (*latest).max(p.last_seen);
            let Some(furthest) = p.furthest() else {
                return;
            };
            t.persons += 1;
            for s in 0..n {
                if p.entered[s] != i64::MIN {
                    t.entered[s] += 1;
                    if let Some(next) = p.exit_of(s) {
                        t.in_stage[s].push(next - p.entered[s]);
                    }
                }
                if s <= furthest {
                    t.reached[s] += 1;
                }
            }
            if purchase.is_some_and(|k| furthest >= k) {
                t.customers += 1;
            }
            t.churn_candidates.push(p.last_seen);
            if let Some(c) = p.current {
                t.current[c] += 1;
            }
            if q.accounts.is_some() {
                let a = j.account();
                if a != crate::NO_ACCOUNT {
                    let e = t
                        .accounts
                        .entry(a)
                        .or_insert_with(|| (0, vec![0; n], vec![0; n]));
                    e.0 += 1;
                    for r in e.1.iter_mut().take(furthest + 1) {
                        *r += 1;
                    }
                    let holds_role = role
                        .flatten()
                        .is_some_and(|(k, v)| j.latest_prop(k) == Some(v));
                    if holds_role {
                        for r in e.2.iter_mut().take(furthest + 1) {
                            *r += 1;
                        }
                    }
                }
            }
            if q.top_touchpoints > 0 {
                count_stage_touches(j, p, n, t, seen);
            }
            if let Some(b) = q.breakdown {
                let key = match b {
                    StageBreakdown::Channel => j.channel.first().copied().unwrap_or(u32::MAX),
                    StageBreakdown::B2b => u32::from(j.account() != crate::NO_ACCOUNT),
                };
                let row = t.breakdown.entry(key).or_insert_with(|| vec![0; n]);
                for r in row.iter_mut().take(furthest + 1) {
                    *r += 1;
                }
            }
        },
    );
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let mut total = StageTotals {
        entered: vec![0; n],
        reached: vec![0; n],
        current: vec![0; n],
        in_stage: vec![Vec::new(); n],
        ..Default::default()
    };
    let mut latest = i64::MIN;
    for (t, _, l, _) in parts {
        latest = latest.max(l);
        total.persons += t.persons;
        total.customers += t.customers;
        for s in 0..n {
            total.entered[s] += t.entered[s];
            total.reached[s] += t.reached[s];
            total.current[s] += t.current[s];
        }
        for (a, b) in total.in_stage.iter_mut().zip(t.in_stage) {
            a.extend(b);
        }
        total.churn_candidates.extend(t.churn_candidates);
        for (k, (members, reached, with_role)) in t.accounts {
            let e = total
                .accounts
                .entry(k)
                .or_insert_with(|| (0, vec![0; n], vec![0; n]));
            e.0 += members;
            for (a, b) in e.1.iter_mut().zip(reached) {
                *a += b;
            }
            for (a, b) in e.2.iter_mut().zip(with_role) {
                *a += b;
            }
        }
        for (k, v) in t.breakdown {
            let e = total.breakdown.entry(k).or_insert_with(|| vec![0; n]);
            for (a, b) in e.iter_mut().zip(v) {
                *a += b;
            }
        }
        for (k, v) in t.touchpoints {
            *total.touchpoints.entry(k).or_default() += v;
        }
        for (k, v) in t.channels {
            *total.channels.entry(k).or_default() += v;
        }
    }
    let top = |counts: &FxHashMap<(usize, u32), u64>, field: crate::Field, s: usize| {
        let mut rows: Vec<(u64, String)> = source.with_vocabulary(|v| {
            counts
                .iter()
                .filter(|((stage, _), _)| *stage == s)
                .map(|((_, code), persons)| (*persons, v.name(field, *code).to_string()))
                .collect()
        });
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        rows.truncate(q.top_touchpoints as usize);
        rows.into_iter()
            .map(|(persons, key)| StageTouch {
                key,
                persons,
                share: ratio(persons, total.entered[s]),
            })
            .collect::<Vec<_>>()
    };
    // churn is judged against the end of the data, not the clock: history stays reproducible
    let churned = compiled
        .model
        .churn_after
        .map(|c| {
            total
                .churn_candidates
                .iter()
                .filter(|t| latest - **t >= c.ms())
                .count() as u64
        })
        .unwrap_or(0);
    let first = total.reached[0];
    let stages = (0..n)
        .map(|s| {
            let next = total.reached.get(s + 1).copied();
            StageRow {
                stage: compiled.model.stages[s].name.clone(),
                entered: total.entered[s],
                reached: total.reached[s],
                dropped: total.reached[s] - next.unwrap_or(0),
                next_stage_conversion: next.and_then(|x| ratio(x, total.reached[s])),
                cumulative_conversion: ratio(total.reached[s], first),
                current: total.current[s],
                median_seconds_in_stage: quantile(&mut total.in_stage[s], 0.5)
                    .map(|v| v as f64 / 1000.0),
                p90_seconds_in_stage: quantile(&mut total.in_stage[s], 0.9)
                    .map(|v| v as f64 / 1000.0),
                touchpoints: top(&total.touchpoints, crate::Field::Touchpoint, s),
                channels: top(&total.channels, crate::Field::Channel, s),
            }
        })
        .collect();
    let breakdown = source.with_vocabulary(|v| {
        let mut rows: Vec<StageBreakdownRow> = total
            .breakdown
            .iter()
            .map(|(k, r)| StageBreakdownRow {
                value: match q.breakdown {
                    Some(StageBreakdown::B2b) => if *k == 1 { "b2b" } else { "b2c" }.into(),
                    _ if *k == u32::MAX => "(none)".into(),
                    _ => v.name(crate::Field::Channel, *k).to_string(),
                },
                reached: r.clone(),
            })
            .collect();
        rows.sort_by(|a, b| b.reached[0].cmp(&a.reached[0]).then(a.value.cmp(&b.value)));
        rows
    });
    let accounts = q.accounts.clone().map(|rule| {
        let mut reached = vec![0u64; n];
        for (members, r, with_role) in total.accounts.values() {
            for s in 0..n {
                let ok = if rule.min_share <= 0.0 {
                    r[s] > 0
                } else {
                    r[s] as f64 >= rule.min_share * *members as f64
                };
                if ok && (rule.required_role.is_none() || with_role[s] > 0) {
                    reached[s] += 1;
                }
            }
        }
        AccountStages {
            rule,
            accounts: total.accounts.len() as u64,
            cumulative_conversion: reached.iter().map(|r| ratio(*r, reached[0])).collect(),
            reached,
        }
    });
    Ok(StageFunnelResult {
        accounts,
        model: compiled.model,
        persons: total.persons,
        stages,
        churned,
        customers: total.customers,
        breakdown,
    })
}

/// One person's stages under a model: current, furthest, churned, and the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PersonJourney {
    pub person: String,
    pub current_stage: Option<String>,
    pub furthest_stage: Option<String>,
    pub churned: bool,
    pub history: Vec<StageVisit>,
}

/// The stages of the person with distinct id `id` (any id stitched to them).
pub fn run_person_stages<S: JourneySource>(
    source: &S,
    model: &ModelRef,
    id: &str,
) -> Result<PersonJourney> {
    let model = model.resolve()?;
    let (compiled, code) = source.with_vocabulary(|v| {
        let code = v
            .code(crate::Field::DistinctId, id)
            .ok_or_else(|| EngineError::invalid("person", format!("no person with id `{id}`")))?;
        Ok::<_, EngineError>((CompiledModel::compile(model, v)?, code))
    })?;
    let parts = source.scan(
        &ScanOptions::default(),
        || (None::<(u32, PersonStages)>, i64::MIN),
        |(found, latest), j| {
            if let Some(last) = j.ts.last() {
                *latest = (*latest).max(*last);
            }
            if j.did.contains(&code) {
                let mut p = PersonStages::default();
                compiled.person(j, &mut p);
                *found = Some((j.person, p));
            }
        },
    );
    let latest = parts.iter().map(|p| p.1).max().unwrap_or(i64::MIN);
    let (person, p) = parts
        .into_iter()
        .find_map(|p| p.0)
        .ok_or_else(|| EngineError::invalid("person", format!("no touchpoints for `{id}`")))?;
    let churned = compiled
        .model
        .churn_after
        .is_some_and(|c| latest - p.last_seen >= c.ms());
    let name = |s: Option<usize>| s.map(|s| compiled.model.stages[s].name.clone());
    Ok(PersonJourney {
        person: source.with_vocabulary(|v| v.name(crate::Field::DistinctId, person).to_string()),
        current_stage: if churned {
            Some("churned".into())
        } else {
            name(p.current)
        },
        furthest_stage: name(p.furthest()),
        churned,
        history: compiled.history(&p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemorySource, Row};

    #[test]
    fn builtins_validate() {
        for name in StageModel::BUILTIN {
            StageModel::builtin(name).unwrap().validate().unwrap();
        }
    }

    /// Each stage lists what persons did while in it: from the touchpoint that entered it until
    /// entering a later stage, once per person, identify messages left out.
    #[test]
    fn stages_list_their_touchpoints_and_channels_by_persons() {
        let r = |p: &str, ts: i64, e: &str, ch: &str, kind: u8| Row {
            touchpoint: e.into(),
            channel: ch.into(),
            kind,
            ..Row::new(p, ts, e)
        };
        let rows = vec![
            r("a", 1_000, "Home", "paid_search", 2),
            r("a", 1_500, "Home", "paid_search", 2),
            r("a", 1_600, "identify", "", 1),
            r("a", 2_000, "Product Viewed", "direct", 0),
            r("a", 5_000, "Order Completed", "direct", 0),
            r("b", 1_000, "Store Visit", "store", 0),
            r("b", 1_500, "Order Completed", "store", 0),
            r("c", 1_000, "Home", "social", 2),
        ];
        let src = MemorySource::new(&rows);
        let q = StageFunnelQuery {
            model: ModelRef::Builtin("customer-journey".into()),
            from_ms: None,
            to_ms: None,
            breakdown: None,
            accounts: None,
            top_touchpoints: 5,
        };
        let res = run_stage_funnel(&src, &q, &Default::default()).unwrap();
        let list = |v: &[StageTouch]| -> Vec<(String, u64)> {
            v.iter().map(|t| (t.key.clone(), t.persons)).collect()
        };
        let s = |k: &str, n: u64| (k.to_string(), n);
        assert_eq!(
            list(&res.stages[0].touchpoints),
            [s("Home", 2), s("Store Visit", 1)]
        );
        assert_eq!(res.stages[0].touchpoints[0].share, Some(2.0 / 3.0));
        assert_eq!(
            list(&res.stages[0].channels),
            [s("paid_search", 1), s("social", 1), s("store", 1)]
        );
        assert_eq!(list(&res.stages[1].touchpoints), [s("Product Viewed", 1)]);
        assert_eq!(list(&res.stages[2].touchpoints), [s("Order Completed", 2)]);
        assert_eq!(res.stages[2].touchpoints[0].share, Some(1.0));
        // without asking, nothing is listed (and the answer stays as it was)
        let plain = run_stage_funnel(
            &src,
            &StageFunnelQuery {
                top_touchpoints: 0,
                ..q
            },
            &Default::default(),
        )
        .unwrap();
        assert!(plain
            .stages
            .iter()
            .all(|s| s.touchpoints.is_empty() && s.channels.is_empty()));
    }

    #[test]
    fn skips_count_as_passed_and_retention_needs_a_second_purchase() {
        let mut rows = vec![
            // a: browses, buys, buys again
            Row::new("a", 1_000, "x"),
            Row::new("a", 2_000, "Product Viewed"),
            Row::new("a", 5_000, "Order Completed"),
            Row::new("a", 9_000, "Order Completed"),
            // b: buys in the store at once (skips Consideration)
            Row::new("b", 1_000, "Store Visit"),
            Row::new("b", 1_500, "Order Completed"),
            // c: only looks
            Row::new("c", 1_000, "x"),
        ];
        rows[0].kind = 2; // page
        rows[6].kind = 2;
        let src = MemorySource::new(&rows);
        let q = StageFunnelQuery {
            model: ModelRef::Builtin("customer-journey".into()),
            from_ms: None,
            to_ms: None,
            breakdown: None,
            accounts: None,
            top_touchpoints: 0,
        };
        let r = run_stage_funnel(&src, &q, &Default::default()).unwrap();
        let reached: Vec<u64> = r.stages.iter().map(|s| s.reached).collect();
        let entered: Vec<u64> = r.stages.iter().map(|s| s.entered).collect();
        assert_eq!(reached, vec![3, 2, 2, 1, 0]);
        assert_eq!(entered, vec![3, 1, 2, 1, 0]);
        assert_eq!(r.customers, 2);
        assert_eq!(r.stages[0].next_stage_conversion, Some(2.0 / 3.0));
        // a spent 4 s in Decision before the repeat purchase
        assert_eq!(r.stages[2].median_seconds_in_stage, Some(4.0));
        let bad = StageFunnelQuery {
            model: ModelRef::Builtin("nope".into()),
            ..q
        };
        assert!(run_stage_funnel(&src, &bad, &Default::default())
            .unwrap_err()
            .to_string()
            .contains("built-in"));
    }

    #[test]
    fn accounts_by_any_member_or_a_share() {
        let mut rows = vec![
            Row::new("ann", 1, "Product Viewed"),
            Row::new("ann", 2, "Order Completed"),
            Row::new("bob", 1, "Product Viewed"),
            Row::new("cy", 1, "Product Viewed"),
            Row::new("dee", 1, "Product Viewed"),
        ];
        for (r, a) in rows
            .iter_mut()
            .zip(["acme", "acme", "acme", "acme", "globex"])
        {
            r.account = Some(a.into());
        }
        let src = MemorySource::new(&rows);
        let mut q = StageFunnelQuery {
            model: ModelRef::Builtin("buyer-journey".into()),
            from_ms: None,
            to_ms: None,
            breakdown: None,
            accounts: Some(AccountStageRule::any_member()),
            top_touchpoints: 0,
        };
        let r = run_stage_funnel(&src, &q, &Default::default()).unwrap();
        let a = r.accounts.unwrap();
        assert_eq!(a.accounts, 2);
        // Awareness reached by skipping: every member who researched passed through it
        assert_eq!(a.reached, vec![2, 2, 1]);
        q.accounts = Some(AccountStageRule {
            min_share: 0.5,
            ..AccountStageRule::any_member()
        });
        let a = run_stage_funnel(&src, &q, &Default::default())
            .unwrap()
            .accounts
            .unwrap();
        // one of acme's three members bought: not half of the buying group
        assert_eq!(a.reached, vec![2, 2, 0]);

        // a required role: ann bought, but only when the buyer must be the decision maker
        let mut with_roles = rows.clone();
        let mut identify = Row::new("bob", 0, "identify");
        identify.account = Some("acme".into());
        identify.props = vec![("traits.role".into(), "decision_maker".into())];
        with_roles.push(identify);
        let mut identify = Row::new("ann", 0, "identify");
        identify.account = Some("acme".into());
        identify.props = vec![("traits.role".into(), "user".into())];
        with_roles.push(identify);
        let src = MemorySource::new(&with_roles);
        q.accounts = Some(AccountStageRule {
            required_role: Some("decision_maker".into()),
            ..AccountStageRule::any_member()
        });
        let a = run_stage_funnel(&src, &q, &Default::default())
            .unwrap()
            .accounts
            .unwrap();
        // acme is in Consideration (bob researched) but not in Decision (bob did not buy);
        // globex has no decision maker at all
        assert_eq!(a.reached, vec![1, 1, 0]);
    }

    #[test]
    fn custom_models_are_data() {
        let json = r#"{"name": "mine", "stages": [
            {"name": "Seen", "enter": "x"},
            {"name": "Bought", "enter": {"event": "Order Completed"}},
            {"name": "Again", "enter": "Order Completed", "after": "Bought"}],
            "purchase_stage": "Bought", "churn_after": "30d"}"#;
        let m: StageModel = serde_json::from_str(json).unwrap();
        m.validate().unwrap();
        let bad: StageModel = serde_json::from_str(
            r#"{"name": "m", "stages": [{"name": "A", "enter": "x", "after": "B"}, {"name": "B", "enter": "y"}]}"#,
        )
        .unwrap();
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "invalid model.stages[0].after: `B` is not an earlier stage"
        );
    }
}

//! The buyer → customer handoff, measured: of the persons who became customers (entered a
//! model's purchase stage), how many got the onboarding touch (a selector: the welcome e-mail
//! event, the trigger's own event, a call) within a time after the purchase, how long it took,
//! and whether those who got it were retained and bought again more often than those who did not,
//! with Wilson intervals and Newcombe's interval for each difference. The comparison is
//! observational: for a fair one, give the trigger a hold-out (`docs/triggers.md`).

use crate::duration::Span;
use crate::error::{EngineError, Result};
use crate::journey::{JourneySource, ScanOptions};
use crate::selector::{EventSelector, Matcher};
use crate::stages::{CompiledModel, ModelRef, PersonStages};
use crate::stats::{newcombe_difference, quantile, wilson, z_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffQuery {
    /// The stage model; its `purchase_stage` is the handoff.
    pub model: ModelRef,
    /// The onboarding touch: the first touchpoint matching this at or after the purchase.
    pub touch: EventSelector,
    /// Handed off: the touch came within this of the purchase (default 7d).
    #[serde(default = "week")]
    pub within: Span,
    /// Retained: a touchpoint at least this long after the purchase (default 30d). Customers
    /// whose purchase is more recent than this before `as_of` are not judged on retention.
    #[serde(default = "month")]
    pub retained_after: Span,
    /// Only customers whose purchase lies in `[from, to)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
    /// Confidence level of the intervals (default 0.95).
    #[serde(default = "confidence")]
    pub confidence: f64,
}

fn week() -> Span {
    Span(7 * 86_400_000)
}
fn month() -> Span {
    Span(30 * 86_400_000)
}
fn confidence() -> f64 {
    0.95
}

/// A share with its interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Share {
    pub n: u64,
    pub k: u64,
    pub share: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

impl Share {
    /// `k` of `n`, with its Wilson interval at normal quantile `z`.
    pub fn of(k: u64, n: u64, z: f64) -> Share {
        let ci = wilson(k, n, z);
        Share {
            n,
            k,
            share: crate::stats::ratio(k, n),
            ci_low: ci.map(|c| c.0),
            ci_high: ci.map(|c| c.1),
        }
    }
}

/// The outcomes of one group of customers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupOutcomes {
    pub customers: u64,
    /// Of those whose purchase is at least `retained_after` old.
    pub retained: Share,
    /// Customers with two or more purchases (entries of the purchase stage's touchpoints).
    pub repeat_purchase: Share,
}

/// A difference of two shares (with the touch − without) and its interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Difference {
    pub difference: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

impl Difference {
    /// `a − b`, with Newcombe's interval at normal quantile `z`.
    pub fn of(a: &Share, b: &Share, z: f64) -> Difference {
        let ci = newcombe_difference(a.k, a.n, b.k, b.n, z);
        Difference {
            difference: a.share.zip(b.share).map(|(x, y)| x - y),
            ci_low: ci.map(|c| c.0),
            ci_high: ci.map(|c| c.1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HandoffResult {
    pub model: String,
    pub purchase_stage: String,
    /// Persons who entered the purchase stage (in the range).
    pub customers: u64,
    /// Got the touch within `within` of their purchase.
    pub handed_off: Share,
    pub median_seconds_to_touch: Option<i64>,
    pub p90_seconds_to_touch: Option<i64>,
    pub with_touch: GroupOutcomes,
    pub without_touch: GroupOutcomes,
    pub retained_difference: Difference,
    pub repeat_purchase_difference: Difference,
    pub definitions: Vec<String>,
}

#[derive(Default)]
struct Acc {
    customers: u64,
    handed_off: u64,
    to_touch: Vec<i64>,
    /// [without, with] × (judged, retained, repeat)
    groups: [(u64, u64, u64, u64); 2],
}

/// Measures the handoff of `q.model` at `as_of_ms` (for retention's judgement).
pub fn run_handoff<S: JourneySource>(
    source: &S,
    q: &HandoffQuery,
    as_of_ms: i64,
    opts: &ScanOptions,
) -> Result<HandoffResult> {
    if !(0.5..1.0).contains(&q.confidence) {
        return Err(EngineError::invalid("confidence", "must be in [0.5, 1)"));
    }
    let model = q.model.resolve()?;
    let purchase_name = model.purchase_stage.clone().ok_or_else(|| {
        EngineError::invalid(
            "model",
            format!(
                "model {} has no purchase_stage: the handoff is its entry",
                model.name
            ),
        )
    })?;
    let purchase = model
        .index_of(&purchase_name)
        .ok_or_else(|| EngineError::invalid("model.purchase_stage", "not one of its stages"))?;
    let purchase_enter = model.stages[purchase].enter.clone();
    let (compiled, matcher) = source.with_vocabulary(|v| {
        Ok::<_, EngineError>((
            CompiledModel::compile(model, v)?,
            Matcher::compile(&[q.touch.clone(), purchase_enter], v)?,
        ))
    })?;
    let parts = source.scan(opts, Acc::default, |acc, j| {
        let mut p = PersonStages::default();
        compiled.person(j, &mut p);
        let bought = p.entered[purchase];
        if bought == i64::MIN
            || q.from_ms.is_some_and(|f| bought < f)
            || q.to_ms.is_some_and(|t| bought >= t)
        {
            return;
        }
        acc.customers += 1;
        let start = j.ts.partition_point(|t| *t < bought);
        let mut touch = None;
        let mut purchases = 0u32;
        for i in start..j.len() {
            let m = matcher.row_mask(j, i);
            if m & 1 != 0 && touch.is_none() {
                touch = Some(j.ts[i]);
            }
            if m & 2 != 0 {
                purchases += 1;
            }
        }
        let got = touch.is_some_and(|t| t - bought <= q.within.ms());
        if got {
            acc.handed_off += 1;
            acc.to_touch.push((touch.unwrap_or(bought) - bought) / 1000);
        }
        let judged = bought.saturating_add(q.retained_after.ms()) <= as_of_ms;
        let retained = judged
            && j.ts
                .last()
                .is_some_and(|t| *t >= bought + q.retained_after.ms());
        let g = &mut acc.groups[usize::from(got)];
        g.0 += 1;
        g.1 += u64::from(judged);
        g.2 += u64::from(retained);
        g.3 += u64::from(purchases >= 2);
    });
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let mut total = Acc::default();
    for a in parts {
        total.customers += a.customers;
        total.handed_off += a.handed_off;
        total.to_touch.extend(a.to_touch);
        for (t, g) in total.groups.iter_mut().zip(a.groups) {
            t.0 += g.0;
            t.1 += g.1;
            t.2 += g.2;
            t.3 += g.3;
        }
    }
    let z = z_for(q.confidence);
    let group = |g: (u64, u64, u64, u64)| GroupOutcomes {
        customers: g.0,
        retained: Share::of(g.2, g.1, z),
        repeat_purchase: Share::of(g.3, g.0, z),
    };
    let (without, with) = (group(total.groups[0]), group(total.groups[1]));
    Ok(HandoffResult {
        model: compiled.model.name.clone(),
        purchase_stage: purchase_name.clone(),
        customers: total.customers,
        handed_off: Share::of(total.handed_off, total.customers, z),
        median_seconds_to_touch: quantile(&mut total.to_touch, 0.5),
        p90_seconds_to_touch: quantile(&mut total.to_touch, 0.9),
        retained_difference: Difference::of(&with.retained, &without.retained, z),
        repeat_purchase_difference: Difference::of(&with.repeat_purchase, &without.repeat_purchase, z),
        with_touch: with,
        without_touch: without,
        definitions: vec![
            format!("customers: persons who entered {purchase_name} (the purchase stage)"),
            format!("handed off: the first touch at or after the purchase came within {}", q.within),
            "time to touch: from the purchase to that touch, median and p90 (nearest rank)".into(),
            format!(
                "retained: a touchpoint at least {} after the purchase; customers whose purchase is more recent than that are not judged",
                q.retained_after
            ),
            format!("repeat purchase: two or more touchpoints that enter {purchase_name}"),
            format!(
                "intervals: Wilson at {:.0} %; differences (with − without the touch): Newcombe's hybrid score interval. Observational: use a trigger's hold-out for a fair comparison",
                q.confidence * 100.0
            ),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemorySource, Row};

    const DAY: i64 = 86_400_000;

    /// Counted by hand: four customers, two welcomed in time (one late), retention judged only
    /// on purchases old enough, repeat purchases per group.
    #[test]
    fn counts_by_hand() {
        let rows = vec![
            // welcomed after 1 h, back after 40 d, bought twice
            Row::new("a", 0, "Order Completed"),
            Row::new("a", 3_600_000, "Welcome Sent"),
            Row::new("a", 40 * DAY, "Order Completed"),
            // welcomed after 2 d, never back
            Row::new("b", 0, "Order Completed"),
            Row::new("b", 2 * DAY, "Welcome Sent"),
            // welcomed after 9 d: too late; back after 31 d
            Row::new("c", 0, "Order Completed"),
            Row::new("c", 9 * DAY, "Welcome Sent"),
            Row::new("c", 31 * DAY, "Product Viewed"),
            // a welcome before buying does not count; bought recently: not judged on retention
            Row::new("d", 49 * DAY, "Welcome Sent"),
            Row::new("d", 50 * DAY, "Order Completed"),
            // never bought
            Row::new("e", 0, "Welcome Sent"),
        ];
        let src = MemorySource::new(&rows);
        let q: HandoffQuery = serde_json::from_value(serde_json::json!({
            "model": "customer-journey", "touch": "Welcome Sent"
        }))
        .unwrap();
        let r = run_handoff(&src, &q, 60 * DAY, &Default::default()).unwrap();
        assert_eq!(r.purchase_stage, "Decision");
        assert_eq!(r.customers, 4);
        assert_eq!((r.handed_off.k, r.handed_off.n), (2, 4));
        assert_eq!(r.median_seconds_to_touch, Some(3_600));
        assert_eq!(r.p90_seconds_to_touch, Some(2 * 86_400));
        assert_eq!(r.with_touch.customers, 2);
        assert_eq!((r.with_touch.retained.k, r.with_touch.retained.n), (1, 2));
        assert_eq!(
            (r.without_touch.retained.k, r.without_touch.retained.n),
            (1, 1)
        );
        assert_eq!(r.with_touch.repeat_purchase.k, 1);
        assert_eq!(
            (
                r.without_touch.repeat_purchase.k,
                r.without_touch.repeat_purchase.n
            ),
            (0, 2)
        );
        assert_eq!(r.retained_difference.difference, Some(-0.5));
    }
}

use super::durations::{StepTimes, TTC_BOUNDS};
use super::runner::Totals;
use super::*;
use crate::journey::CountBy;
use crate::journey::{Field, Vocabulary};
use crate::stats::ratio;

pub(super) fn secs(ms: Option<i64>) -> Option<f64> {
    ms.map(|v| v as f64 / 1000.0)
}

/// The answer to a funnel query, from every thread's totals merged.
pub(super) fn render(
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

//! Retention: of the persons who first did X in a period (their cohort), how many came back in
//! each later period.
//!
//! Periods are calendar days, ISO weeks (Monday first) or months in the project's time zone,
//! given as a fixed offset from UTC. A person's cohort is the period of their first cohort
//! touchpoint in the date range; "came back in period N" means a return touchpoint in the N-th
//! period after the cohort's period (period 0 is the cohort itself, 100 % by definition).

use crate::calendar::{Period, DAY_MS};
use crate::error::{EngineError, Result};
use crate::journey::{Journey, JourneySource, ScanOptions};
use crate::selector::{EventSelector, Matcher};
use crate::stats::ratio;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetentionMode {
    /// Returned during period N.
    #[default]
    On,
    /// Returned during period N or any later one (of those counted).
    OnOrAfter,
}

/// A retention analysis, independent of the backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionQuery {
    /// The touchpoint that puts a person in a cohort (their first one counts).
    pub cohort: EventSelector,
    /// The touchpoint that counts as coming back; any touchpoint when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_event: Option<EventSelector>,
    #[serde(default)]
    pub period: Period,
    /// Periods after the cohort's to count (1…N).
    #[serde(default = "default_periods")]
    pub periods: usize,
    #[serde(default)]
    pub mode: RetentionMode,
    /// Cohorts entered in `[from, to)` (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
    /// The project's time zone as minutes east of UTC (0 = UTC).
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// The project's time zone by IANA name (`Europe/Berlin`), following daylight saving time;
    /// wins over `utc_offset_minutes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Purchases, for the repeat purchase rate of the cohorts (none: not computed).
    #[serde(default = "default_purchase")]
    pub purchase: Option<EventSelector>,
    /// A cohort member with no touchpoint in this span before the latest one seen has churned.
    #[serde(default = "default_churn_after")]
    pub churn_after: crate::Span,
}

fn default_periods() -> usize {
    12
}
fn default_purchase() -> Option<EventSelector> {
    Some(EventSelector::event("Order Completed"))
}
fn default_churn_after() -> crate::Span {
    crate::Span(30 * DAY_MS)
}

/// One cohort's row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CohortRow {
    /// First day of the cohort's period.
    pub cohort: String,
    pub size: u64,
    /// `returned[n]`: persons counted in period n (`returned[0]` = size).
    pub returned: Vec<u64>,
    pub rates: Vec<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetentionResult {
    pub period: Period,
    pub mode: RetentionMode,
    pub cohorts: Vec<CohortRow>,
    /// Over all cohorts, period n's rate among the cohorts old enough to have a period n (as of
    /// the latest touchpoint seen).
    pub overall: Vec<Option<f64>>,
    /// Cohort members with at least one purchase, and with at least two.
    pub customers: u64,
    pub repeat_customers: u64,
    /// Repeat customers / customers.
    pub repeat_purchase_rate: Option<f64>,
    /// Cohort members without a touchpoint in the `churn_after` before the latest one seen.
    pub churned: u64,
    /// Churned / cohort members.
    pub churn_rate: Option<f64>,
}

/// Runs a retention analysis on a backend.
pub fn run_retention<S: JourneySource>(
    source: &S,
    q: &RetentionQuery,
    opts: &ScanOptions,
) -> Result<RetentionResult> {
    if q.periods == 0 || q.periods > 400 {
        return Err(EngineError::invalid("periods", "between 1 and 400"));
    }
    let zone = crate::timezone::Zone::new(q.time_zone.as_deref(), q.utc_offset_minutes)?;
    let mut selectors = vec![q.cohort.clone()];
    if let Some(r) = &q.return_event {
        selectors.push(r.clone());
    }
    let return_bit = if q.return_event.is_some() { 2 } else { 0 };
    let purchase_bit = match &q.purchase {
        Some(p) => {
            selectors.push(p.clone());
            1u64 << (selectors.len() - 1)
        }
        None => 0,
    };
    let matcher = source.with_vocabulary(|v| Matcher::compile(&selectors, v))?;
    let n = q.periods;
    let mut scan_opts = opts.clone();
    // returns may come after `to`; nothing before `from` matters
    scan_opts.from_ms = q.from_ms;
    // times and what the selectors read: a person in pieces is copied together without the rest
    scan_opts.columns = matcher.columns();
    // per part: table, latest touchpoint, scratch, (customers, repeat), members' last touchpoints
    type Part = (
        FxHashMap<i64, Vec<u64>>,
        i64,
        Vec<bool>,
        (u64, u64),
        Vec<i64>,
    );
    // each person's rows `lo..hi` of a batch's shared columns, read in place
    let person = |(acc, latest, back, buyers, last_seen): &mut Part, j: &Journey<'_>, lo, hi| {
        let Some(&last) = j.ts[lo..hi].last() else {
            return;
        };
        *latest = (*latest).max(last);
        let in_range = |t: i64| q.from_ms.is_none_or(|f| t >= f) && q.to_ms.is_none_or(|e| t < e);
        let Some(first) = (lo..hi).find(|&i| matcher.row_mask(j, i) & 1 != 0 && in_range(j.ts[i]))
        else {
            return;
        };
        let cohort = q.period.index(zone.local_ms(j.ts[first]));
        if purchase_bit != 0 {
            let purchases = (first..hi)
                .filter(|&i| matcher.row_mask(j, i) & purchase_bit != 0)
                .take(2)
                .count();
            buyers.0 += u64::from(purchases >= 1);
            buyers.1 += u64::from(purchases >= 2);
        }
        last_seen.push(last);
        back.clear();
        back.resize(n + 1, false);
        for i in first + 1..hi {
            if return_bit != 0 && matcher.row_mask(j, i) & return_bit == 0 {
                continue;
            }
            let k = q.period.index(zone.local_ms(j.ts[i])) - cohort;
            if k >= 1 && k as usize <= n {
                back[k as usize] = true;
            } else if k > n as i64 + 1 {
                // rows are in time order, and local time steps back by less than a period
                // (a daylight-saving change): no later row falls in a counted period
                break;
            }
        }
        let row = acc.entry(cohort).or_insert_with(|| vec![0; n + 1]);
        row[0] += 1;
        let mut later = false;
        for k in (1..=n).rev() {
            later |= back[k];
            let hit = match q.mode {
                RetentionMode::On => back[k],
                RetentionMode::OnOrAfter => later,
            };
            if hit {
                row[k] += 1;
            }
        }
    };
    // batches of persons, their rows read in place: no journey sliced per person
    let parts = source.scan_batches(&scan_opts, Part::default, |part: &mut Part, b| {
        for &(lo, hi) in b.ranges {
            person(part, &b.rows, lo as usize, hi as usize);
        }
    });
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let mut table: FxHashMap<i64, Vec<u64>> = FxHashMap::default();
    let mut latest = i64::MIN;
    let (mut customers, mut repeat_customers) = (0, 0);
    let mut last_seen = Vec::new();
    for (part, l, _, (c, r), seen) in parts {
        latest = latest.max(l);
        customers += c;
        repeat_customers += r;
        last_seen.extend(seen);
        for (k, v) in part {
            let e = table.entry(k).or_insert_with(|| vec![0; n + 1]);
            for (a, b) in e.iter_mut().zip(v) {
                *a += b;
            }
        }
    }
    let latest_period = q.period.index(zone.local_ms(latest));
    let mut keys: Vec<i64> = table.keys().copied().collect();
    keys.sort_unstable();
    let mut sums = vec![(0u64, 0u64); n + 1];
    let cohorts = keys
        .iter()
        .map(|k| {
            let row = &table[k];
            let size = row[0];
            for (p, s) in sums.iter_mut().enumerate() {
                if k + p as i64 <= latest_period {
                    s.0 += row[p];
                    s.1 += size;
                }
            }
            CohortRow {
                cohort: q.period.label(*k),
                size,
                returned: row.clone(),
                rates: row.iter().map(|r| ratio(*r, size)).collect(),
            }
        })
        .collect();
    let members = last_seen.len() as u64;
    let churned = last_seen
        .iter()
        .filter(|t| **t < latest.saturating_sub(q.churn_after.ms()))
        .count() as u64;
    Ok(RetentionResult {
        period: q.period,
        mode: q.mode,
        cohorts,
        overall: sums.iter().map(|(r, s)| ratio(*r, *s)).collect(),
        customers,
        repeat_customers,
        repeat_purchase_rate: ratio(repeat_customers, customers),
        churned,
        churn_rate: ratio(churned, members),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::days_from_civil;
    use crate::memory::{MemorySource, Row};

    const D: i64 = DAY_MS;

    #[test]
    fn named_time_zones_follow_daylight_saving_time() {
        // 2024-07-01 22:30 UTC is 00:30 on July 2 in Berlin (CEST, +2), 23:30 on July 1 at +1
        let rows = vec![Row::new("a", 1_719_873_000_000, "signup")];
        let src = MemorySource::new(&rows);
        let mut q: RetentionQuery = serde_json::from_value(
            serde_json::json!({"cohort": "signup", "period": "day", "utc_offset_minutes": 60}),
        )
        .unwrap();
        let day = |q: &RetentionQuery| {
            run_retention(&src, q, &Default::default()).unwrap().cohorts[0]
                .cohort
                .clone()
        };
        assert_eq!(day(&q), "2024-07-01");
        q.time_zone = Some("Europe/Berlin".into());
        assert_eq!(day(&q), "2024-07-02");
        q.time_zone = Some("Europe/Nowhere".into());
        let e = run_retention(&src, &q, &Default::default()).unwrap_err();
        assert!(e.to_string().contains("time_zone"));
    }

    #[test]
    fn repeat_purchase_and_churn_rates() {
        let rows = vec![
            Row::new("a", 0, "Order Completed"),
            Row::new("a", 5 * D, "Order Completed"),
            Row::new("a", 95 * D, "visit"),
            Row::new("b", D, "Order Completed"),
            Row::new("b", 10 * D, "visit"),
            Row::new("c", 2 * D, "Order Completed"),
            Row::new("c", 100 * D, "Order Completed"),
            Row::new("d", 3 * D, "visit"),
        ];
        let q: RetentionQuery =
            serde_json::from_value(serde_json::json!({"cohort": "Order Completed"})).unwrap();
        let r = run_retention(&MemorySource::new(&rows), &q, &Default::default()).unwrap();
        assert_eq!((r.customers, r.repeat_customers), (3, 2));
        assert_eq!(r.repeat_purchase_rate, Some(2.0 / 3.0));
        // the latest touchpoint is at day 100: b (last seen day 10) has churned, a and c have not
        assert_eq!(r.churned, 1);
        assert_eq!(r.churn_rate, Some(1.0 / 3.0));
    }

    /// Daily cohorts of `signup`, coming back = a `visit` during each of `periods` days.
    fn signups_coming_back(periods: usize) -> RetentionQuery {
        RetentionQuery {
            cohort: EventSelector::event("signup"),
            return_event: Some(EventSelector::event("visit")),
            period: Period::Day,
            periods,
            mode: RetentionMode::On,
            from_ms: None,
            to_ms: None,
            utc_offset_minutes: 0,
            time_zone: None,
            purchase: None,
            churn_after: crate::Span(30 * D),
        }
    }

    proptest::proptest! {
        /// Cohort tables equal a direct count over every row, rows long after the counted
        /// periods and returns in the cohort's own period included, in both modes and in
        /// pieces (which copy only the columns the selectors read).
        #[test]
        fn tables_equal_a_direct_count(
            journeys in proptest::collection::vec(
                proptest::collection::vec((0i64..60 * D, proptest::bool::ANY), 1..30),
                1..12,
            ),
            periods in 1usize..6,
            on_or_after in proptest::bool::ANY,
            pieces in 1usize..8,
        ) {
            let mut rows = Vec::new();
            let mut expected: std::collections::BTreeMap<i64, Vec<u64>> = Default::default();
            for (p, journey) in journeys.iter().enumerate() {
                let mut journey = journey.clone();
                journey.sort();
                for &(t, signup) in &journey {
                    rows.push(Row::new(&format!("p{p}"), t, if signup { "signup" } else { "visit" }));
                }
                let Some(first) = journey.iter().position(|&(_, signup)| signup) else {
                    continue;
                };
                let cohort = journey[first].0.div_euclid(D);
                let mut back = vec![false; periods + 1];
                for &(t, signup) in &journey[first + 1..] {
                    let k = t.div_euclid(D) - cohort;
                    if !signup && (1..=periods as i64).contains(&k) {
                        back[k as usize] = true;
                    }
                }
                let row = expected.entry(cohort).or_insert_with(|| vec![0; periods + 1]);
                row[0] += 1;
                for k in 1..=periods {
                    let hit = match on_or_after {
                        false => back[k],
                        true => back[k..].contains(&true),
                    };
                    row[k] += u64::from(hit);
                }
            }
            let mut q = signups_coming_back(periods);
            if on_or_after {
                q.mode = RetentionMode::OnOrAfter;
            }
            let expected: Vec<Vec<u64>> = expected.into_values().collect();
            for src in [MemorySource::new(&rows), MemorySource::new(&rows).in_pieces(pieces)] {
                let r = run_retention(&src, &q, &Default::default()).unwrap();
                let got: Vec<Vec<u64>> = r.cohorts.into_iter().map(|c| c.returned).collect();
                proptest::prop_assert_eq!(&got, &expected);
            }
        }
    }

    #[test]
    fn cohorts_by_first_touch_on_and_on_or_after() {
        let base = days_from_civil(2024, 1, 1) * D;
        let rows = vec![
            Row::new("a", base + 3_600_000, "signup"),
            Row::new("a", base + D, "visit"),
            Row::new("a", base + 3 * D, "visit"),
            Row::new("b", base + 2_000, "signup"),
            Row::new("b", base + 3 * D, "visit"),
            Row::new("c", base + D, "signup"),
            Row::new("c", base + D + 5, "signup"),
        ];
        let src = MemorySource::new(&rows);
        let mut q = signups_coming_back(3);
        let r = run_retention(&src, &q, &Default::default()).unwrap();
        assert_eq!(r.cohorts.len(), 2);
        assert_eq!(r.cohorts[0].cohort, "2024-01-01");
        assert_eq!(r.cohorts[0].returned, vec![2, 1, 0, 2]);
        assert_eq!(r.cohorts[1].returned, vec![1, 0, 0, 0]);
        q.mode = RetentionMode::OnOrAfter;
        let r = run_retention(&src, &q, &Default::default()).unwrap();
        assert_eq!(r.cohorts[0].returned, vec![2, 2, 2, 2]);
        // two hours west of UTC, a's 01:00 and b's 00:00:02 signups fall on Dec 31
        q.utc_offset_minutes = -120;
        let r = run_retention(&src, &q, &Default::default()).unwrap();
        assert_eq!(r.cohorts[0].cohort, "2023-12-31");
    }
}

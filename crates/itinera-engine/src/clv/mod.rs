//! Customer lifetime value: what each customer has brought (revenue to date, orders, average
//! order value, purchase frequency, tenure) and what they are expected to bring (BG/NBD repeat
//! purchases and probability alive, Gamma-Gamma spend, discounted CLV over a horizon).
//!
//! Purchases are counted per calendar day (in the query's UTC offset), as the model literature
//! and the `lifetimes` package do: several orders on one day are one purchase occasion whose
//! spend is their sum.

pub mod models;

use crate::error::{EngineError, Result};
use crate::journey::CountBy;
use crate::journey::{Field, JourneySource, ScanOptions, NO_ACCOUNT};
use crate::selector::{EventSelector, Matcher};
pub use models::{BgNbd, GammaGamma, Rfm};
use serde::{Deserialize, Serialize};

const DAY_MS: i64 = 86_400_000;

/// The time unit of recency, age, the horizon and the discount rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    Day,
    #[default]
    Week,
}

impl TimeUnit {
    fn days(self) -> f64 {
        match self {
            TimeUnit::Day => 1.0,
            TimeUnit::Week => 7.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClvQuery {
    /// Purchases; their revenue is the spend.
    #[serde(default = "default_purchase")]
    pub purchase: EventSelector,
    /// Refunds, whose revenue is subtracted from the revenue to date.
    #[serde(default = "default_refund")]
    pub refund: Option<EventSelector>,
    /// The last day of the calibration period (ms of any time on that day): purchases on or
    /// before it fit the models; later ones are the holdout. Absent: today, when the query
    /// runs (every purchase fits the models and there is no holdout); the application fills it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_end_ms: Option<i64>,
    #[serde(default)]
    pub time_unit: TimeUnit,
    /// Prediction horizon, in time units.
    #[serde(default = "default_horizon")]
    pub horizon: u32,
    /// Discount rate per time unit.
    #[serde(default = "default_discount")]
    pub discount: f64,
    /// Calendar days in this offset from UTC.
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// Calendar days in this IANA time zone (`Europe/Berlin`); wins over the offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub count_by: CountBy,
    /// A customer alive with a probability below this is at churn risk.
    #[serde(default = "default_churn_threshold")]
    pub churn_threshold: f64,
    /// At most this many customers in the answer, by predicted CLV (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

fn default_purchase() -> EventSelector {
    EventSelector::event("Order Completed")
}
fn default_refund() -> Option<EventSelector> {
    Some(EventSelector::event("Order Refunded"))
}
fn default_horizon() -> u32 {
    52
}
fn default_discount() -> f64 {
    0.01
}
fn default_churn_threshold() -> f64 {
    0.5
}

impl ClvQuery {
    pub fn new(calibration_end_ms: i64) -> ClvQuery {
        serde_json::from_value(
            serde_json::json!({ "calibration_end_ms": Some(calibration_end_ms) }),
        )
        .expect("defaults")
    }
}

/// One customer: history and predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Customer {
    pub id: String,
    /// Repeat purchase occasions in the calibration period (x).
    pub frequency: f64,
    /// First to last purchase, in time units (t_x).
    pub recency: f64,
    /// First purchase to the calibration end, in time units (T): the tenure.
    pub age: f64,
    /// Mean spend of the repeat purchase occasions (m).
    pub monetary_value: f64,
    pub orders: u64,
    /// Purchases minus refunds, up to the calibration end.
    pub revenue_to_date: f64,
    pub average_order_value: f64,
    /// Repeat purchase occasions per time unit of tenure.
    pub purchase_frequency: f64,
    pub probability_alive: f64,
    pub expected_purchases: f64,
    pub expected_spend: f64,
    /// Σ over the horizon's periods of expected purchases × expected spend / (1+discount)^period.
    pub predicted_clv: f64,
    pub churn_risk: bool,
    /// `high` (top 20 % by predicted CLV), `medium` (next 30 %) or `low`.
    pub value_tier: String,
    /// Purchase occasions and revenue after the calibration end (for checking predictions).
    pub holdout_purchases: u64,
    pub holdout_revenue: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClvTotals {
    pub customers: u64,
    pub repeat_customers: u64,
    /// Customers with ≥ 2 purchase occasions / customers with ≥ 1.
    pub repeat_purchase_rate: f64,
    pub revenue_to_date: f64,
    pub refunds: f64,
    pub predicted_clv: f64,
    pub churn_risk: u64,
    pub holdout_purchases: u64,
    pub expected_purchases: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClvResult {
    pub time_unit: TimeUnit,
    pub horizon: u32,
    pub discount: f64,
    pub bg_nbd: BgNbd,
    /// Absent when too few customers bought twice with a positive spend.
    pub gamma_gamma: Option<GammaGamma>,
    pub totals: ClvTotals,
    pub customers: Vec<Customer>,
    pub definitions: std::collections::BTreeMap<String, String>,
}

/// What the scan keeps per customer.
#[derive(Debug, Default)]
struct History {
    id: u32,
    /// (day, spend) per purchase day, ascending, calibration period only.
    days: Vec<(i64, f64)>,
    orders: u64,
    revenue: f64,
    refunds: f64,
    holdout_days: Vec<i64>,
    holdout_revenue: f64,
}

/// A purchase or refund row.
#[derive(Debug, Clone, Copy)]
struct Sale {
    ts: i64,
    refund: bool,
    revenue: f64,
}

fn history(
    id: u32,
    sales: impl Iterator<Item = Sale>,
    end_day: i64,
    zone: &crate::timezone::Zone,
) -> History {
    let mut h = History {
        id,
        ..Default::default()
    };
    for s in sales {
        let day = zone.local_ms(s.ts).div_euclid(DAY_MS);
        let value = if s.revenue.is_nan() { 0.0 } else { s.revenue };
        if day > end_day {
            if !s.refund {
                if h.holdout_days.last() != Some(&day) {
                    h.holdout_days.push(day);
                }
                h.holdout_revenue += value;
            }
            continue;
        }
        if s.refund {
            h.refunds += value.abs();
            continue;
        }
        h.orders += 1;
        h.revenue += value;
        match h.days.last_mut() {
            Some((d, spend)) if *d == day => *spend += value,
            _ => h.days.push((day, value)),
        }
    }
    h
}

impl History {
    fn rfm(&self, end_day: i64, unit_days: f64) -> Rfm {
        let first = self.days[0].0;
        let last = self.days[self.days.len() - 1].0;
        let repeats = &self.days[1..];
        Rfm {
            frequency: repeats.len() as f64,
            recency: (last - first) as f64 / unit_days,
            age: (end_day - first) as f64 / unit_days,
            monetary: if repeats.is_empty() {
                0.0
            } else {
                repeats.iter().map(|d| d.1).sum::<f64>() / repeats.len() as f64
            },
        }
    }
}

pub fn run_clv<S: JourneySource>(
    source: &S,
    q: &ClvQuery,
    opts: &ScanOptions,
) -> Result<ClvResult> {
    if !(0.0..1.0).contains(&q.discount) {
        return Err(EngineError::invalid(
            "discount",
            format!("{} is not a rate in 0…1", q.discount),
        ));
    }
    if q.horizon == 0 || q.horizon > 10_000 {
        return Err(EngineError::invalid(
            "horizon",
            "must be 1…10000 time units",
        ));
    }
    let zone = crate::timezone::Zone::new(q.time_zone.as_deref(), q.utc_offset_minutes)?;
    let calibration_end = q.calibration_end_ms.ok_or_else(|| {
        EngineError::invalid(
            "calibration_end_ms",
            "the last day of the calibration period",
        )
    })?;
    let end_day = zone.local_ms(calibration_end).div_euclid(DAY_MS);
    let mut selectors = vec![q.purchase.clone()];
    selectors.extend(q.refund.clone());
    let matcher = source.with_vocabulary(|v| Matcher::compile(&selectors, v))?;
    let sales_of = |j: &crate::Journey<'_>, out: &mut Vec<Sale>| {
        for i in 0..j.len() {
            let mask = matcher.row_mask(j, i);
            if mask != 0 {
                out.push(Sale {
                    ts: j.ts[i],
                    refund: mask & 1 == 0,
                    revenue: j.revenue[i],
                });
            }
        }
    };
    let mut histories: Vec<History> = Vec::new();
    match q.count_by {
        CountBy::Person => {
            let parts = source.scan(
                opts,
                || (Vec::new(), Vec::new()),
                |(acc, buf): &mut (Vec<History>, Vec<Sale>), j| {
                    buf.clear();
                    sales_of(j, buf);
                    if !buf.is_empty() {
                        let h = history(j.person, buf.iter().copied(), end_day, &zone);
                        if !h.days.is_empty() {
                            acc.push(h);
                        }
                    }
                },
            );
            histories.extend(parts.into_iter().flat_map(|p| p.0));
        }
        CountBy::Account => {
            let parts = source.scan(
                opts,
                || (Vec::new(), Vec::new()),
                |(acc, buf): &mut (Vec<(u32, Sale)>, Vec<Sale>), j| {
                    let account = j.account();
                    if account != NO_ACCOUNT {
                        buf.clear();
                        sales_of(j, buf);
                        acc.extend(buf.iter().map(|s| (account, *s)));
                    }
                },
            );
            let mut all: Vec<(u32, Sale)> = parts.into_iter().flat_map(|p| p.0).collect();
            all.sort_by_key(|(a, s)| (*a, s.ts));
            for g in all.chunk_by(|a, b| a.0 == b.0) {
                let h = history(g[0].0, g.iter().map(|x| x.1), end_day, &zone);
                if !h.days.is_empty() {
                    histories.push(h);
                }
            }
        }
    }
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let unit = q.time_unit.days();
    let rfm: Vec<Rfm> = histories.iter().map(|h| h.rfm(end_day, unit)).collect();
    let stop = || opts.control.as_ref().is_some_and(|c| c.is_cancelled());
    let bg = BgNbd::fit_or_stop(&rfm, &stop)?;
    let gg = match GammaGamma::fit_or_stop(&rfm, &stop) {
        Err(EngineError::Cancelled) => return Err(EngineError::Cancelled),
        r => r.ok(),
    };
    let field = match q.count_by {
        CountBy::Person => Field::DistinctId,
        CountBy::Account => Field::Account,
    };
    let mut customers: Vec<Customer> = source.with_vocabulary(|v| {
        histories
            .iter()
            .zip(&rfm)
            .map(|(h, c)| predict(q, &bg, gg.as_ref(), h, c, v.name(field, h.id).to_string()))
            .collect()
    });
    customers.sort_by(|a, b| {
        b.predicted_clv
            .total_cmp(&a.predicted_clv)
            .then(a.id.cmp(&b.id))
    });
    let n = customers.len();
    for (rank, c) in customers.iter_mut().enumerate() {
        c.value_tier = if rank * 5 < n {
            "high"
        } else if rank * 2 < n {
            "medium"
        } else {
            "low"
        }
        .into();
    }
    let repeat = customers.iter().filter(|c| c.frequency > 0.0).count() as u64;
    let totals = ClvTotals {
        customers: n as u64,
        repeat_customers: repeat,
        repeat_purchase_rate: if n > 0 { repeat as f64 / n as f64 } else { 0.0 },
        revenue_to_date: customers.iter().map(|c| c.revenue_to_date).sum(),
        refunds: histories.iter().map(|h| h.refunds).sum(),
        predicted_clv: customers.iter().map(|c| c.predicted_clv).sum(),
        churn_risk: customers.iter().filter(|c| c.churn_risk).count() as u64,
        holdout_purchases: customers.iter().map(|c| c.holdout_purchases).sum(),
        expected_purchases: customers.iter().map(|c| c.expected_purchases).sum(),
    };
    if let Some(l) = q.limit {
        customers.truncate(l);
    }
    Ok(ClvResult {
        time_unit: q.time_unit,
        horizon: q.horizon,
        discount: q.discount,
        bg_nbd: bg,
        gamma_gamma: gg,
        totals,
        customers,
        definitions: definitions(),
    })
}

fn predict(
    q: &ClvQuery,
    bg: &BgNbd,
    gg: Option<&GammaGamma>,
    h: &History,
    c: &Rfm,
    id: String,
) -> Customer {
    let horizon = q.horizon as f64;
    let spend = match gg {
        Some(g) => g.expected_spend(c),
        // without a spend model: the customer's own average order value
        None => h.revenue / h.orders.max(1) as f64,
    };
    let mut clv = 0.0;
    let mut before = 0.0;
    for i in 1..=q.horizon {
        let cum = bg.expected_purchases(c, i as f64);
        clv += (cum - before) * spend / (1.0 + q.discount).powi(i as i32);
        before = cum;
    }
    let alive = bg.probability_alive(c);
    Customer {
        id,
        frequency: c.frequency,
        recency: c.recency,
        age: c.age,
        monetary_value: c.monetary,
        orders: h.orders,
        revenue_to_date: h.revenue - h.refunds,
        average_order_value: h.revenue / h.orders.max(1) as f64,
        purchase_frequency: if c.age > 0.0 {
            c.frequency / c.age
        } else {
            0.0
        },
        probability_alive: alive,
        expected_purchases: bg.expected_purchases(c, horizon),
        expected_spend: spend,
        predicted_clv: clv,
        churn_risk: alive < q.churn_threshold,
        value_tier: String::new(),
        holdout_purchases: h.holdout_days.len() as u64,
        holdout_revenue: h.holdout_revenue,
    }
}

fn definitions() -> std::collections::BTreeMap<String, String> {
    [
        ("frequency", "repeat purchase occasions (days with a purchase after the first) up to the calibration end"),
        ("recency", "time units from the first to the last purchase occasion"),
        ("age", "time units from the first purchase to the calibration end (tenure)"),
        ("monetary_value", "mean spend of the repeat purchase occasions"),
        ("revenue_to_date", "purchases minus refunds up to the calibration end"),
        ("probability_alive", "BG/NBD: 1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)), 1 without repeat purchases"),
        ("expected_purchases", "BG/NBD conditional expectation of purchases in the horizon"),
        ("expected_spend", "Gamma-Gamma conditional expectation of spend per purchase"),
        ("predicted_clv", "sum over the horizon's time units i of (E[purchases by i] - E[purchases by i-1]) x expected_spend / (1+discount)^i"),
        ("repeat_purchase_rate", "customers with at least 2 purchase occasions / customers with at least 1"),
        ("churn_risk", "probability_alive below the churn threshold"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

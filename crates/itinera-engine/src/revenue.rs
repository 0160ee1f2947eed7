//! Orders and revenue from purchase events (Segment e-commerce `Order Completed` with
//! `revenue`/`total`, by default), refunds subtracted, per period and currency.

use crate::calendar::Period;
use crate::error::{EngineError, Result};
use crate::journey::{Field, JourneySource, ScanOptions};
use crate::selector::{EventSelector, Matcher};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevenueQuery {
    #[serde(default = "default_purchase")]
    pub purchase: EventSelector,
    #[serde(default = "default_refund")]
    pub refund: Option<EventSelector>,
    /// The property naming the currency (rows without one are reported under `""`).
    #[serde(default = "default_currency")]
    pub currency_property: String,
    #[serde(default = "default_period")]
    pub period: Period,
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// IANA time zone (`Europe/Berlin`), following daylight saving time; wins over the offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
}

fn default_purchase() -> EventSelector {
    EventSelector::event("Order Completed")
}
fn default_refund() -> Option<EventSelector> {
    Some(EventSelector::event("Order Refunded"))
}
fn default_currency() -> String {
    "properties.currency".into()
}
fn default_period() -> Period {
    Period::Month
}

impl Default for RevenueQuery {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

/// Figures of one period and currency (or of a currency over the whole range).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevenueRow {
    /// First day of the period (absent in totals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    pub currency: String,
    pub orders: u64,
    /// Orders without a numeric revenue or total.
    pub orders_without_value: u64,
    pub gross_revenue: f64,
    pub refunds: u64,
    pub refunded: f64,
    /// Gross revenue minus refunded amounts.
    pub net_revenue: f64,
    /// Gross revenue / orders with a value.
    pub average_order_value: Option<f64>,
    /// Distinct persons with an order.
    pub customers: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevenueResult {
    pub period: Period,
    pub rows: Vec<RevenueRow>,
    /// Per currency over the whole range.
    pub totals: Vec<RevenueRow>,
}

#[derive(Default, Clone)]
struct Acc {
    orders: u64,
    no_value: u64,
    gross: f64,
    refunds: u64,
    refunded: f64,
    customers: u64,
}

impl Acc {
    fn add(&mut self, o: &Acc) {
        self.orders += o.orders;
        self.no_value += o.no_value;
        self.gross += o.gross;
        self.refunds += o.refunds;
        self.refunded += o.refunded;
        self.customers += o.customers;
    }

    fn row(&self, period: Option<String>, currency: String) -> RevenueRow {
        let valued = self.orders - self.no_value;
        RevenueRow {
            period,
            currency,
            orders: self.orders,
            orders_without_value: self.no_value,
            gross_revenue: self.gross,
            refunds: self.refunds,
            refunded: self.refunded,
            net_revenue: self.gross - self.refunded,
            average_order_value: (valued > 0).then(|| self.gross / valued as f64),
            customers: self.customers,
        }
    }
}

pub fn run_revenue<S: JourneySource>(
    source: &S,
    q: &RevenueQuery,
    opts: &ScanOptions,
) -> Result<RevenueResult> {
    let zone = crate::timezone::Zone::new(q.time_zone.as_deref(), q.utc_offset_minutes)?;
    let mut sels = vec![q.purchase.clone()];
    sels.extend(q.refund.clone());
    let (matcher, currency_key) = source.with_vocabulary(|v| {
        Matcher::compile(&sels, v).map(|m| (m, v.code(Field::PropKey, &q.currency_property)))
    })?;
    let mut scan = opts.clone();
    scan.from_ms = q.from_ms.or(opts.from_ms);
    scan.to_ms = q.to_ms.or(opts.to_ms);
    // (period, currency value code or u32::MAX) → figures; per person: the keys they bought in
    type Key = (i64, u32);
    type Part = (FxHashMap<Key, Acc>, Vec<Key>, FxHashMap<u32, u64>, Vec<u32>);
    let parts = source.scan(
        &scan,
        Part::default,
        |(acc, bought, customers, currencies): &mut Part, j| {
            bought.clear();
            currencies.clear();
            for i in 0..j.len() {
                let m = matcher.row_mask(j, i);
                if m == 0 {
                    continue;
                }
                let currency = currency_key
                    .and_then(|k| j.props.get(i, k))
                    .unwrap_or(u32::MAX);
                let key = (q.period.index(zone.local_ms(j.ts[i])), currency);
                let a = acc.entry(key).or_default();
                let value = j.revenue[i];
                if m & 1 != 0 {
                    a.orders += 1;
                    if value.is_nan() {
                        a.no_value += 1;
                    } else {
                        a.gross += value;
                    }
                    if !bought.contains(&key) {
                        bought.push(key);
                        a.customers += 1;
                    }
                    if !currencies.contains(&currency) {
                        currencies.push(currency);
                        *customers.entry(currency).or_default() += 1;
                    }
                } else {
                    a.refunds += 1;
                    if !value.is_nan() {
                        a.refunded += value.abs();
                    }
                }
            }
        },
    );
    let mut all: FxHashMap<Key, Acc> = FxHashMap::default();
    let mut customers: FxHashMap<u32, u64> = FxHashMap::default();
    for (p, _, c, _) in parts {
        for (k, a) in p {
            all.entry(k).or_default().add(&a);
        }
        for (k, n) in c {
            *customers.entry(k).or_default() += n;
        }
    }
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let name = |c: u32| {
        source.with_vocabulary(|v| {
            if c == u32::MAX {
                String::new()
            } else {
                v.name(Field::PropValue, c).to_string()
            }
        })
    };
    let mut keys: Vec<Key> = all.keys().copied().collect();
    keys.sort_by_key(|k| (k.0, name(k.1)));
    let rows = keys
        .iter()
        .map(|k| all[k].row(Some(q.period.label(k.0)), name(k.1)))
        .collect();
    let mut per_currency: FxHashMap<u32, Acc> = FxHashMap::default();
    for (k, a) in &all {
        per_currency.entry(k.1).or_default().add(a);
    }
    let mut totals: Vec<RevenueRow> = per_currency
        .iter()
        .map(|(c, a)| {
            // a customer counts once per currency over the whole range, not once per period
            let mut row = a.row(None, name(*c));
            row.customers = customers.get(c).copied().unwrap_or(0);
            row
        })
        .collect();
    totals.sort_by(|a, b| a.currency.cmp(&b.currency));
    Ok(RevenueResult {
        period: q.period,
        rows,
        totals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemorySource, Row};

    #[test]
    fn orders_refunds_and_currencies() {
        let day = 86_400_000;
        let order = |p: &str, ts: i64, rev: Option<f64>, cur: &str| Row {
            revenue: rev,
            props: vec![("properties.currency".into(), cur.into())],
            ..Row::new(p, ts, "Order Completed")
        };
        let rows = [
            order("a", 0, Some(100.0), "EUR"),
            order("a", day, Some(50.0), "EUR"),
            order("b", 40 * day, Some(20.0), "USD"),
            order("c", 40 * day, None, "EUR"),
            Row {
                revenue: Some(-30.0),
                props: vec![("properties.currency".into(), "EUR".into())],
                ..Row::new("a", 41 * day, "Order Refunded")
            },
        ];
        let r = run_revenue(
            &MemorySource::new(&rows),
            &RevenueQuery::default(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(r.rows.len(), 3);
        assert_eq!(r.rows[0].period.as_deref(), Some("1970-01-01"));
        assert_eq!(
            (
                r.rows[0].orders,
                r.rows[0].customers,
                r.rows[0].gross_revenue
            ),
            (2, 1, 150.0)
        );
        let eur = r.totals.iter().find(|t| t.currency == "EUR").unwrap();
        assert_eq!(eur.orders, 3);
        assert_eq!(eur.orders_without_value, 1);
        assert_eq!(eur.net_revenue, 120.0);
        assert_eq!(eur.average_order_value, Some(75.0));
        assert_eq!(eur.customers, 2);
        let usd = r.totals.iter().find(|t| t.currency == "USD").unwrap();
        assert_eq!((usd.orders, usd.customers, usd.net_revenue), (1, 1, 20.0));
    }
}

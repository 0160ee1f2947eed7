//! The advocacy loop as one report: promoters → referrals sent → referrals accepted → new
//! customers, with the share of customers who refer, the share of new customers acquired by
//! referral, the viral coefficient, value and repeat purchase of referred customers against the
//! others, and the NPS of referrers.
//!
//! A referred person is linked to their advocate by the referrer's id on the accepted referral
//! (`properties.referrer_id`, a user or anonymous id) or, without it, by the referral code the
//! advocate sent (`properties.referral_code` on both events).

use crate::error::Result;
use crate::journey::{Field, JourneySource, ScanOptions};
use crate::selector::{Conjunction, EventSelector, Matcher, Pattern, PropPattern};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvocacyQuery {
    #[serde(default = "default_purchase")]
    pub purchase: EventSelector,
    #[serde(default = "default_sent")]
    pub referral_sent: EventSelector,
    #[serde(default = "default_accepted")]
    pub referral_accepted: EventSelector,
    #[serde(default = "default_referrer")]
    pub referrer_property: String,
    #[serde(default = "default_code")]
    pub code_property: String,
    /// An NPS answer; its score is `score_property` (0–10).
    #[serde(default = "default_nps")]
    pub nps: EventSelector,
    #[serde(default = "default_score")]
    pub score_property: String,
}

fn default_purchase() -> EventSelector {
    EventSelector::event("Order Completed")
}
fn default_sent() -> EventSelector {
    EventSelector::event("Referral Sent")
}
fn default_accepted() -> EventSelector {
    EventSelector::event("Referral Accepted")
}
fn default_referrer() -> String {
    "properties.referrer_id".into()
}
fn default_code() -> String {
    "properties.referral_code".into()
}
fn default_nps() -> EventSelector {
    EventSelector::All(Conjunction {
        event: Some(Pattern::One("Survey Responded".into())),
        props: [(
            "properties.survey_kind".to_string(),
            PropPattern::Text(Pattern::One("nps".into())),
        )]
        .into(),
        ..Default::default()
    })
}
fn default_score() -> String {
    "properties.score".into()
}

impl Default for AdvocacyQuery {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

/// NPS with its parts: % promoters (9–10) − % detractors (0–6), passives in the denominator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Nps {
    pub n: u64,
    pub promoters: u64,
    pub passives: u64,
    pub detractors: u64,
    pub nps: Option<f64>,
}

impl Nps {
    fn add(&mut self, score: f64) {
        self.n += 1;
        if score >= 9.0 {
            self.promoters += 1;
        } else if score >= 7.0 {
            self.passives += 1;
        } else {
            self.detractors += 1;
        }
        self.nps = Some(100.0 * (self.promoters as f64 - self.detractors as f64) / self.n as f64);
    }
}

/// Customers of one origin, compared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CustomerGroup {
    pub customers: u64,
    pub revenue: f64,
    /// Mean revenue to date per customer (historic CLV).
    pub mean_revenue: f64,
    /// Customers with ≥ 2 purchase days / customers.
    pub repeat_purchase_rate: f64,
    pub nps: Nps,
}

/// One step of the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoopStep {
    pub step: String,
    pub count: u64,
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdvocacyResult {
    pub customers: u64,
    pub referrers: u64,
    /// Customers who sent a referral / customers.
    pub share_of_customers_who_refer: Option<f64>,
    pub referrals_sent: u64,
    pub referred_persons: u64,
    /// Referred persons linked to a known advocate.
    pub referred_linked: u64,
    pub referred_customers: u64,
    /// Referred customers / customers.
    pub share_of_customers_acquired_by_referral: Option<f64>,
    /// Converted referrals / customers.
    pub viral_coefficient: Option<f64>,
    /// Referred customers / referred persons.
    pub referral_conversion: Option<f64>,
    pub referred: CustomerGroup,
    pub others: CustomerGroup,
    /// NPS (latest answer per person) of customers who sent a referral.
    pub nps_of_referrers: Nps,
    /// The loop: promoters → referrers → referrals sent → referred persons → referred customers.
    pub cycle: Vec<LoopStep>,
    /// Advocates by the customers they brought (top 20).
    pub top_advocates: Vec<(String, u64)>,
}

#[derive(Debug, Default, Clone)]
struct Person {
    person: u32,
    dids: Vec<u32>,
    purchase_days: Vec<i64>,
    revenue: f64,
    sent: u32,
    sent_codes: Vec<u32>,
    accepted: bool,
    referrer: Option<u32>,
    accepted_code: Option<u32>,
    nps: Option<u32>,
}

pub fn run_advocacy<S: JourneySource>(
    source: &S,
    q: &AdvocacyQuery,
    opts: &ScanOptions,
) -> Result<AdvocacyResult> {
    let sels = [
        q.purchase.clone(),
        q.referral_sent.clone(),
        q.referral_accepted.clone(),
        q.nps.clone(),
    ];
    let (matcher, keys) = source.with_vocabulary(|v| -> Result<_> {
        let key = |k: &str| v.code(Field::PropKey, k);
        Ok((
            Matcher::compile(&sels, v)?,
            (
                key(&q.referrer_property),
                key(&q.code_property),
                key(&q.score_property),
            ),
        ))
    })?;
    let (referrer_key, code_key, score_key) = keys;
    let parts = source.scan(opts, Vec::new, |out: &mut Vec<Person>, j| {
        let mut p = Person {
            person: j.person,
            ..Default::default()
        };
        for i in 0..j.len() {
            let m = matcher.row_mask(j, i);
            if m == 0 {
                continue;
            }
            let prop = |k: Option<u32>| k.and_then(|k| j.props.get(i, k));
            if m & 1 != 0 {
                let day = j.ts[i].div_euclid(86_400_000);
                if p.purchase_days.last() != Some(&day) {
                    p.purchase_days.push(day);
                }
                if !j.revenue[i].is_nan() {
                    p.revenue += j.revenue[i];
                }
            }
            if m & 2 != 0 {
                p.sent += 1;
                p.sent_codes.extend(prop(code_key));
            }
            if m & 4 != 0 && !p.accepted {
                p.accepted = true;
                p.referrer = prop(referrer_key);
                p.accepted_code = prop(code_key);
            }
            if m & 8 != 0 {
                p.nps = prop(score_key).or(p.nps);
            }
        }
        if p.purchase_days.is_empty() && p.sent == 0 && !p.accepted {
            return;
        }
        p.dids = j.did.to_vec();
        p.dids.sort_unstable();
        p.dids.dedup();
        out.push(p);
    });
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(crate::EngineError::Cancelled);
    }
    let persons: Vec<Person> = parts.into_iter().flatten().collect();
    Ok(source.with_vocabulary(|v| render(&persons, v)))
}

fn render(persons: &[Person], v: &dyn crate::journey::Vocabulary) -> AdvocacyResult {
    // who is whom: distinct ids and referral codes → the advocate's index
    let mut by_did: FxHashMap<u32, usize> = FxHashMap::default();
    let mut by_code: FxHashMap<u32, usize> = FxHashMap::default();
    for (i, p) in persons.iter().enumerate() {
        for d in &p.dids {
            by_did.insert(*d, i);
        }
        for c in &p.sent_codes {
            by_code.insert(*c, i);
        }
    }
    let score = |c: u32| v.name(Field::PropValue, c).parse::<f64>().ok();
    let mut referred_by: Vec<Option<usize>> = vec![None; persons.len()];
    for (i, p) in persons.iter().enumerate() {
        if !p.accepted {
            continue;
        }
        let via_id = p
            .referrer
            .and_then(|r| v.code(Field::DistinctId, v.name(Field::PropValue, r)))
            .and_then(|d| by_did.get(&d).copied());
        let via_code = p.accepted_code.and_then(|c| by_code.get(&c).copied());
        referred_by[i] = via_id.or(via_code).filter(|a| *a != i);
    }
    let is_customer = |p: &Person| !p.purchase_days.is_empty();
    let customers = persons.iter().filter(|p| is_customer(p)).count() as u64;
    let referrers: Vec<&Person> = persons
        .iter()
        .filter(|p| is_customer(p) && p.sent > 0)
        .collect();
    let mut referred = CustomerGroup::default();
    let mut others = CustomerGroup::default();
    let mut brought: FxHashMap<usize, u64> = FxHashMap::default();
    let mut promoters = 0u64;
    let mut promoters_who_refer = 0u64;
    for (i, p) in persons.iter().enumerate() {
        let promoter = p.nps.and_then(score).is_some_and(|s| s >= 9.0);
        if is_customer(p) && promoter {
            promoters += 1;
            promoters_who_refer += u64::from(p.sent > 0);
        }
        if !is_customer(p) {
            continue;
        }
        let g = if p.accepted {
            if let Some(a) = referred_by[i] {
                *brought.entry(a).or_default() += 1;
            }
            &mut referred
        } else {
            &mut others
        };
        g.customers += 1;
        g.revenue += p.revenue;
        g.repeat_purchase_rate += f64::from(u8::from(p.purchase_days.len() >= 2));
        if let Some(s) = p.nps.and_then(score) {
            g.nps.add(s);
        }
    }
    for g in [&mut referred, &mut others] {
        if g.customers > 0 {
            g.mean_revenue = g.revenue / g.customers as f64;
            g.repeat_purchase_rate /= g.customers as f64;
        }
    }
    let mut nps_of_referrers = Nps::default();
    for p in &referrers {
        if let Some(s) = p.nps.and_then(score) {
            nps_of_referrers.add(s);
        }
    }
    let referred_persons = persons.iter().filter(|p| p.accepted).count() as u64;
    let referred_linked = referred_by.iter().filter(|r| r.is_some()).count() as u64;
    let referrals_sent: u64 = persons.iter().map(|p| p.sent as u64).sum();
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    let mut top: Vec<(String, u64)> = brought
        .into_iter()
        .map(|(a, n)| (v.name(Field::DistinctId, persons[a].person).to_string(), n))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(20);
    let step = |s: &str, count: u64, d: &str| LoopStep {
        step: s.into(),
        count,
        definition: d.into(),
    };
    AdvocacyResult {
        customers,
        referrers: referrers.len() as u64,
        share_of_customers_who_refer: ratio(referrers.len() as u64, customers),
        referrals_sent,
        referred_persons,
        referred_linked,
        referred_customers: referred.customers,
        share_of_customers_acquired_by_referral: ratio(referred.customers, customers),
        viral_coefficient: ratio(referred.customers, customers),
        referral_conversion: ratio(referred.customers, referred_persons),
        cycle: vec![
            step(
                "promoters",
                promoters,
                "customers whose latest NPS answer is 9 or 10",
            ),
            step(
                "promoters who refer",
                promoters_who_refer,
                "promoters who sent a referral",
            ),
            step("referrals sent", referrals_sent, "referral-sent events"),
            step(
                "referred persons",
                referred_persons,
                "persons who accepted a referral",
            ),
            step(
                "referred customers",
                referred.customers,
                "referred persons who purchased",
            ),
        ],
        referred,
        others,
        nps_of_referrers,
        top_advocates: top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemorySource, Row};

    fn row(p: &str, ts: i64, event: &str, props: &[(&str, &str)]) -> Row {
        Row {
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Row::new(p, ts, event)
        }
    }

    #[test]
    fn referrals_link_by_id_or_by_code() {
        let day = 86_400_000;
        let rows = [
            row("ann", 0, "Order Completed", &[]),
            row(
                "ann",
                day,
                "Survey Responded",
                &[
                    ("properties.survey_kind", "nps"),
                    ("properties.score", "10"),
                ],
            ),
            row(
                "ann",
                day,
                "Referral Sent",
                &[("properties.referral_code", "R1")],
            ),
            // bob names ann as referrer; cy only has the code; dee refers herself
            row(
                "bob",
                2 * day,
                "Referral Accepted",
                &[("properties.referrer_id", "ann")],
            ),
            row("bob", 3 * day, "Order Completed", &[]),
            row("bob", 9 * day, "Order Completed", &[]),
            row(
                "cy",
                2 * day,
                "Referral Accepted",
                &[("properties.referral_code", "R1")],
            ),
            row(
                "dee",
                0,
                "Referral Sent",
                &[("properties.referral_code", "D")],
            ),
            row(
                "dee",
                day,
                "Referral Accepted",
                &[("properties.referral_code", "D")],
            ),
            row("dee", day, "Order Completed", &[]),
            row(
                "eve",
                0,
                "Survey Responded",
                &[("properties.survey_kind", "nps"), ("properties.score", "3")],
            ),
        ];
        let r = run_advocacy(
            &MemorySource::new(&rows),
            &AdvocacyQuery::default(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(r.customers, 3);
        assert_eq!(r.referrers, 2, "ann and dee sent referrals and bought");
        assert_eq!(r.referred_persons, 3);
        assert_eq!(
            r.referred_linked, 2,
            "bob by id, cy by code; dee's own code does not count"
        );
        assert_eq!(r.referred_customers, 2);
        assert_eq!(r.referred.repeat_purchase_rate, 0.5);
        assert_eq!(r.top_advocates, vec![("ann".to_string(), 1)]);
        assert_eq!(r.nps_of_referrers.n, 1);
        assert_eq!(r.nps_of_referrers.nps, Some(100.0));
        assert_eq!(r.cycle[0].count, 1, "one promoter customer");
    }
}

//! A deterministic synthetic world of customer journeys, streamed with bounded memory.
//!
//! Two businesses share the world: a B2C shop (web, app, social, search, e-mail, store, call
//! center) and a B2B SaaS (accounts whose buying groups of 3–8 stakeholders request demos, take
//! calls, trial and renew). People progress through stages with drop-off that depends on their
//! persona and first channel, buy again, answer NPS/CSAT/CES surveys, and promoters refer new
//! people. The parameters and the realized counts are written down as [`GroundTruth`], so analyses
//! can be checked against what the data was made from.

use rand::distributions::WeightedIndex;
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_distr::Exp;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};

/// What to generate.
#[derive(Debug, Clone)]
pub struct WorldSpec {
    /// People to start journeys for (referred people come on top).
    pub customers: u64,
    /// Stop once this many events were produced (0: no limit).
    pub max_events: u64,
    pub seed: u64,
    /// First day of the world, ms since the epoch.
    pub start_ms: i64,
    /// Length of the acquisition period in days.
    pub days: i64,
}

impl Default for WorldSpec {
    fn default() -> Self {
        WorldSpec {
            customers: 10_000,
            max_events: 0,
            seed: 42,
            start_ms: 1_704_067_200_000, // 2024-01-01
            days: 365,
        }
    }
}

/// A buyer persona with its behaviour parameters.
#[derive(Debug, Clone, Serialize)]
pub struct Persona {
    pub name: &'static str,
    pub share: f64,
    /// Probability of going from each buyer stage to the next: awareness→consideration,
    /// consideration→decision (add to cart), decision→purchase.
    pub progress: [f64; 3],
    /// Probability of each further purchase after one.
    pub repeat: f64,
}

/// The parameters the world was generated from, and what came out.
#[derive(Debug, Clone, Serialize, Default)]
pub struct GroundTruth {
    pub seed: u64,
    pub personas: Vec<Persona>,
    /// Channel of the first touch → multiplier on every progress probability.
    pub channel_effect: BTreeMap<String, f64>,
    pub first_channel_share: BTreeMap<String, f64>,
    pub b2b_share: f64,
    /// Probability that a purchaser who is a promoter refers one new person.
    pub promoter_referral_rate: f64,
    /// Days of inactivity after which a customer counts as churned.
    pub churn_after_days: i64,
    pub realized: Realized,
}

/// Counts of what was generated.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Realized {
    pub persons: u64,
    pub b2c_persons: u64,
    pub b2b_persons: u64,
    pub accounts: u64,
    pub events: u64,
    /// People reaching each buyer stage: awareness, consideration, decision, purchase.
    pub reached: [u64; 4],
    pub reached_by_persona: BTreeMap<String, [u64; 4]>,
    pub reached_by_first_channel: BTreeMap<String, [u64; 4]>,
    pub purchasers: u64,
    pub repeat_purchasers: u64,
    pub orders: u64,
    pub revenue: f64,
    pub referrals_sent: u64,
    pub referred_persons: u64,
    pub survey_responses: u64,
    pub nps_promoters: u64,
    pub nps_detractors: u64,
    pub nps_responses: u64,
    pub accounts_won: u64,
}

fn personas() -> Vec<Persona> {
    vec![
        Persona {
            name: "bargain_hunter",
            share: 0.35,
            progress: [0.55, 0.35, 0.45],
            repeat: 0.25,
        },
        Persona {
            name: "researcher",
            share: 0.25,
            progress: [0.75, 0.30, 0.55],
            repeat: 0.30,
        },
        Persona {
            name: "impulse_buyer",
            share: 0.25,
            progress: [0.45, 0.55, 0.70],
            repeat: 0.35,
        },
        Persona {
            name: "loyal_regular",
            share: 0.15,
            progress: [0.70, 0.50, 0.75],
            repeat: 0.60,
        },
    ]
}

const CHANNELS: [(&str, f64, f64); 7] = [
    // channel, share of first touches, effect on progress
    ("organic_search", 0.28, 1.00),
    ("paid_search", 0.20, 1.10),
    ("social", 0.20, 0.80),
    ("display", 0.08, 0.60),
    ("email", 0.06, 1.20),
    ("direct", 0.13, 1.15),
    ("store", 0.05, 1.30),
];

const PRODUCTS: [(&str, f64); 6] = [
    ("trail-shoes", 129.0),
    ("rain-jacket", 189.0),
    ("wool-socks", 19.0),
    ("backpack-30l", 99.0),
    ("headlamp", 39.0),
    ("tent-2p", 349.0),
];

const ROLES: [&str; 5] = ["decision_maker", "champion", "user", "finance", "it"];
const DAY: i64 = 86_400_000;
const MIN: i64 = 60_000;

/// The generator: an iterator of Segment messages, grouped by person, each person's messages in
/// time order.
pub struct World {
    spec: WorldSpec,
    rng: ChaCha8Rng,
    personas: Vec<Persona>,
    persona_pick: WeightedIndex<f64>,
    channel_pick: WeightedIndex<f64>,
    started: u64,
    message_seq: u64,
    buffer: VecDeque<Value>,
    /// (advocate user id, referral code, time) of referrals still to turn into people
    referrals: VecDeque<(String, String, i64)>,
    truth: GroundTruth,
}

struct Ctx<'a> {
    anon: String,
    user: Option<String>,
    t: i64,
    out: &'a mut Vec<Value>,
}

impl World {
    pub fn new(spec: WorldSpec) -> World {
        let personas = personas();
        let persona_pick =
            WeightedIndex::new(personas.iter().map(|p| p.share)).expect("shares are positive");
        let channel_pick =
            WeightedIndex::new(CHANNELS.iter().map(|c| c.1)).expect("shares are positive");
        let truth = GroundTruth {
            seed: spec.seed,
            personas: personas.clone(),
            channel_effect: CHANNELS.iter().map(|c| (c.0.to_string(), c.2)).collect(),
            first_channel_share: CHANNELS.iter().map(|c| (c.0.to_string(), c.1)).collect(),
            b2b_share: 0.15,
            promoter_referral_rate: 0.4,
            churn_after_days: 90,
            ..Default::default()
        };
        World {
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
            spec,
            personas,
            persona_pick,
            channel_pick,
            started: 0,
            message_seq: 0,
            buffer: VecDeque::new(),
            referrals: VecDeque::new(),
            truth,
        }
    }

    /// What the world was made from and what it holds so far (complete once the iterator ends).
    pub fn truth(&self) -> &GroundTruth {
        &self.truth
    }

    fn next_id(&mut self) -> String {
        self.message_seq += 1;
        format!("m{:x}-{}", self.spec.seed, self.message_seq)
    }

    fn emit(&mut self, c: &mut Ctx<'_>, mut msg: Value) {
        let id = self.next_id();
        let m = msg.as_object_mut().expect("messages are objects");
        m.insert("messageId".into(), json!(id));
        m.insert("timestamp".into(), json!(fmt_ts(c.t)));
        match &c.user {
            Some(u) => {
                m.insert("userId".into(), json!(u));
            }
            None => {
                m.insert("anonymousId".into(), json!(c.anon));
            }
        }
        c.out.push(msg);
    }

    fn gap(&mut self, mean_minutes: f64) -> i64 {
        let e = Exp::new(1.0 / mean_minutes).expect("positive mean");
        (e.sample(&mut self.rng) * MIN as f64) as i64 + 1000
    }

    fn page(&mut self, c: &mut Ctx<'_>, path: &str, channel: Option<&str>) {
        let mut ctx = json!({"page": {"path": path, "url": format!("https://shop.example{path}")}, "library": {"name": "analytics.js"}});
        if let Some(ch) = channel {
            match ch {
                "organic_search" => ctx["page"]["referrer"] = json!("https://www.google.com/"),
                "social" => ctx["page"]["referrer"] = json!("https://www.instagram.com/"),
                "paid_search" => {
                    ctx["campaign"] =
                        json!({"source": "google", "medium": "cpc", "name": "spring-sale"})
                }
                "display" => {
                    ctx["campaign"] =
                        json!({"source": "adnet", "medium": "display", "name": "banner-q2"})
                }
                "email" => {
                    ctx["campaign"] =
                        json!({"source": "newsletter", "medium": "email", "name": "weekly"})
                }
                "referral" => ctx["campaign"] = json!({"source": "friend", "medium": "referral"}),
                _ => {}
            }
        }
        self.emit(
            c,
            json!({"type": "page", "properties": {"path": path}, "context": ctx}),
        );
    }

    fn track(&mut self, c: &mut Ctx<'_>, event: &str, props: Value) {
        self.emit(
            c,
            json!({"type": "track", "event": event, "properties": props}),
        );
    }

    fn b2c_person(&mut self, out: &mut Vec<Value>, referral: Option<(String, String, i64)>) {
        let n = self.truth.realized.persons;
        self.truth.realized.persons += 1;
        self.truth.realized.b2c_persons += 1;
        let persona = self.personas[self.persona_pick.sample(&mut self.rng)].clone();
        let (channel, effect) = match &referral {
            Some(_) => ("referral", 1.4),
            None => {
                let c = CHANNELS[self.channel_pick.sample(&mut self.rng)];
                (c.0, c.2)
            }
        };
        let start = match &referral {
            Some((_, _, t)) => *t + self.gap(60.0 * 24.0),
            None => self.spec.start_ms + self.rng.gen_range(0..self.spec.days * DAY),
        };
        let mut c = Ctx {
            anon: format!("anon-{:x}-{n}", self.spec.seed),
            user: None,
            t: start,
            out,
        };
        let user_id = format!("c{n}");
        let mut reached = [1u64, 0, 0, 0];
        // awareness
        if channel == "store" {
            c.user = Some(user_id.clone());
            self.emit(&mut c, json!({"type":"track","event":"Store Visit","properties":{"store":"berlin-mitte"},"context":{"library":{"name":"itinera-pos-import"}}}));
        } else {
            let landing = if self.rng.gen_bool(0.5) {
                "/"
            } else {
                "/blog/packing-list"
            };
            self.page(&mut c, landing, Some(channel));
        }
        if let Some((advocate, code, _)) = &referral {
            self.track(
                &mut c,
                "Referral Accepted",
                json!({"referrer_id": advocate, "referral_code": code}),
            );
        }
        let p = |k: usize| (persona.progress[k] * effect).min(0.97);
        // consideration
        if self.rng.gen_bool(p(0)) {
            reached[1] = 1;
            c.t += self.gap(30.0);
            let views = 1 + self.rng.gen_range(0..4);
            let mut product = PRODUCTS[0];
            for _ in 0..views {
                product = PRODUCTS[self.rng.gen_range(0..PRODUCTS.len())];
                c.t += self.gap(3.0);
                let sku = self.rng.gen_range(1000..1100);
                self.page(&mut c, &format!("/products/{sku}"), None);
                self.track(
                    &mut c,
                    "Product Viewed",
                    json!({"product_id": product.0, "price": product.1}),
                );
            }
            // decision
            if self.rng.gen_bool(p(1)) {
                reached[2] = 1;
                c.t += self.gap(5.0);
                self.track(
                    &mut c,
                    "Product Added",
                    json!({"product_id": product.0, "price": product.1}),
                );
                c.t += self.gap(600.0);
                c.user = Some(user_id.clone());
                let traits = json!({"email": format!("{user_id}@example.com"), "persona": persona.name, "segment": "b2c"});
                let anon = c.anon.clone();
                self.emit(
                    &mut c,
                    json!({"type":"identify","anonymousId": anon,"traits": traits}),
                );
                if self.rng.gen_bool(p(2)) {
                    reached[3] = 1;
                    self.purchase_cycle(&mut c, &persona, product);
                }
            }
        }
        let r = &mut self.truth.realized;
        for (k, hit) in reached.iter().enumerate() {
            r.reached[k] += hit;
            r.reached_by_persona.entry(persona.name.into()).or_default()[k] += hit;
            r.reached_by_first_channel
                .entry(channel.into())
                .or_default()[k] += hit;
        }
    }

    fn purchase_cycle(&mut self, c: &mut Ctx<'_>, persona: &Persona, first: (&str, f64)) {
        let user = c.user.clone().expect("buyers are identified");
        self.truth.realized.purchasers += 1;
        let mut product = first;
        let mut orders = 0;
        loop {
            orders += 1;
            c.t += self.gap(10.0);
            self.track(c, "Checkout Started", json!({"value": product.1}));
            c.t += self.gap(4.0);
            let qty = 1 + (self.rng.gen_range(0..10) / 8) as i64;
            let revenue = (product.1 * qty as f64 * 100.0).round() / 100.0;
            let order_id = format!("o-{user}-{orders}");
            self.track(
                c,
                "Order Completed",
                json!({"order_id": order_id, "revenue": revenue, "currency": "EUR",
                "products": [{"product_id": product.0, "price": product.1, "quantity": qty}]}),
            );
            self.truth.realized.orders += 1;
            self.truth.realized.revenue += revenue;
            if orders == 1 {
                c.t += self.gap(2.0);
                self.track(
                    c,
                    "Email Opened",
                    json!({"email_subject": "Welcome! Here is what happens next"}),
                );
            }
            // CSAT after delivery
            c.t += 2 * DAY + self.gap(600.0);
            let csat = (4.2 + self.rng.gen_range(-2.2..1.0f64))
                .round()
                .clamp(1.0, 5.0) as i64;
            self.survey(c, "csat-delivery", "csat", csat);
            if self.rng.gen_bool(0.15) {
                c.t += self.gap(120.0);
                self.emit(c, json!({"type":"track","event":"Call Completed","properties":{"reason":"delivery"},"context":{"library":{"name":"call-center-import"}}}));
                let ces = self.rng.gen_range(2..=7);
                self.survey(c, "ces-support", "ces", ces);
            }
            if !self.rng.gen_bool(persona.repeat) {
                break;
            }
            c.t += self.gap(60.0 * 24.0 * 30.0);
            product = PRODUCTS[self.rng.gen_range(0..PRODUCTS.len())];
            if self.rng.gen_bool(0.5) {
                self.emit(c, json!({"type":"screen","name":"Home","context":{"library":{"name":"analytics-ios"}}}));
            } else {
                self.page(c, "/", Some("email"));
            }
            self.track(
                c,
                "Product Viewed",
                json!({"product_id": product.0, "price": product.1}),
            );
            self.track(
                c,
                "Product Added",
                json!({"product_id": product.0, "price": product.1}),
            );
        }
        if orders > 1 {
            self.truth.realized.repeat_purchasers += 1;
        }
        // NPS a month after the last order
        c.t += 30 * DAY + self.gap(600.0);
        let base = 6.0 + orders.min(4) as f64 * 0.8;
        let nps = (base + self.rng.gen_range(-4.0..3.5f64))
            .round()
            .clamp(0.0, 10.0) as i64;
        self.survey(c, "nps-relationship", "nps", nps);
        if nps >= 9 && self.rng.gen_bool(self.truth.promoter_referral_rate) {
            c.t += self.gap(600.0);
            let code = format!("ref-{user}");
            self.track(c, "Referral Sent", json!({"referral_code": code}));
            self.truth.realized.referrals_sent += 1;
            self.referrals.push_back((user.clone(), code, c.t));
        }
    }

    fn survey(&mut self, c: &mut Ctx<'_>, survey: &str, kind: &str, score: i64) {
        self.truth.realized.survey_responses += 1;
        if kind == "nps" {
            self.truth.realized.nps_responses += 1;
            if score >= 9 {
                self.truth.realized.nps_promoters += 1;
            } else if score <= 6 {
                self.truth.realized.nps_detractors += 1;
            }
        }
        self.track(
            c,
            "Survey Responded",
            json!({"survey_id": survey, "survey_kind": kind, "score": score}),
        );
    }

    fn b2b_account(&mut self, out: &mut Vec<Value>) {
        let a = self.truth.realized.accounts;
        self.truth.realized.accounts += 1;
        let account = format!("acct-{a}");
        let size = self.rng.gen_range(3..=8usize);
        let start = self.spec.start_ms + self.rng.gen_range(0..self.spec.days * DAY);
        let won = self.rng.gen_bool(0.3);
        let close = start + self.rng.gen_range(30..120) * DAY;
        if won {
            self.truth.realized.accounts_won += 1;
        }
        for s in 0..size {
            let n = self.truth.realized.persons;
            self.truth.realized.persons += 1;
            self.truth.realized.b2b_persons += 1;
            let role = ROLES[s % ROLES.len()];
            let user = format!("b{a}-{s}");
            let mut c = Ctx {
                anon: format!("anon-b{a}-{s}-{n}"),
                user: None,
                t: start + self.rng.gen_range(0..20) * DAY,
                out,
            };
            self.page(
                &mut c,
                "/solutions/journey-analytics",
                Some(if s == 0 { "paid_search" } else { "direct" }),
            );
            c.t += self.gap(20.0);
            self.track(
                &mut c,
                "Whitepaper Downloaded",
                json!({"title": "ROI of journey analytics"}),
            );
            c.user = Some(user.clone());
            let anon = c.anon.clone();
            self.emit(&mut c, json!({"type":"identify","anonymousId": anon,"traits":{"email": format!("{user}@{account}.example"),"role": role,"segment":"b2b"}}));
            self.emit(&mut c, json!({"type":"group","groupId": account,"traits":{"name": format!("Account {a}"),"industry":"retail","employees": 50 + a % 5000}}));
            if role == "decision_maker" || role == "champion" {
                c.t += self.gap(60.0 * 24.0 * 3.0);
                self.track(&mut c, "Demo Requested", json!({"account": account}));
                c.t += self.gap(60.0 * 24.0 * 2.0);
                self.emit(&mut c, json!({"type":"track","event":"Call Completed","properties":{"kind":"sales","duration_minutes": 30},"context":{"library":{"name":"call-center-import"},"groupId": account}}));
                self.track(&mut c, "Trial Started", json!({"plan": "business"}));
            }
            if role == "decision_maker" {
                c.t = c.t.max(close);
                if won {
                    let revenue = 12_000.0 + (a % 7) as f64 * 3_000.0;
                    self.track(&mut c, "Order Completed", json!({"order_id": format!("deal-{account}"), "revenue": revenue, "currency": "EUR", "account": account}));
                    self.truth.realized.orders += 1;
                    self.truth.realized.revenue += revenue;
                    c.t += 365 * DAY;
                    if self.rng.gen_bool(0.8) {
                        self.track(
                            &mut c,
                            "Subscription Renewed",
                            json!({"revenue": revenue, "account": account}),
                        );
                    }
                } else {
                    self.track(
                        &mut c,
                        "Deal Lost",
                        json!({"account": account, "reason": "budget"}),
                    );
                }
            }
        }
    }

    fn refill(&mut self) -> bool {
        let mut out = Vec::new();
        if let Some(r) = self.referrals.pop_front() {
            self.truth.realized.referred_persons += 1;
            self.b2c_person(&mut out, Some(r));
        } else if self.started < self.spec.customers {
            if self.rng.gen_bool(self.truth.b2b_share / 5.5) {
                self.b2b_account(&mut out);
                self.started += 5;
            } else {
                self.b2c_person(&mut out, None);
                self.started += 1;
            }
        } else {
            return false;
        }
        self.buffer.extend(out);
        true
    }
}

impl Iterator for World {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        if self.spec.max_events > 0 && self.truth.realized.events >= self.spec.max_events {
            return None;
        }
        while self.buffer.is_empty() {
            if !self.refill() {
                return None;
            }
        }
        self.truth.realized.events += 1;
        self.buffer.pop_front()
    }
}

fn fmt_ts(ms: i64) -> String {
    itinera_core::message::format_ts(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed() {
        let a: Vec<Value> = World::new(WorldSpec {
            customers: 200,
            ..Default::default()
        })
        .collect();
        let b: Vec<Value> = World::new(WorldSpec {
            customers: 200,
            ..Default::default()
        })
        .collect();
        assert_eq!(a, b);
        let c: Vec<Value> = World::new(WorldSpec {
            customers: 200,
            seed: 7,
            ..Default::default()
        })
        .collect();
        assert_ne!(a, c);
    }

    #[test]
    fn every_message_is_valid_and_truth_adds_up() {
        let mut w = World::new(WorldSpec {
            customers: 2_000,
            ..Default::default()
        });
        let opts = itinera_core::NormalizeOptions::at(2_000_000_000_000);
        let mut n = 0u64;
        let mut purchases = 0u64;
        for m in w.by_ref() {
            let text = m.to_string();
            let msg = itinera_core::message::normalize(&text, None, None, &opts, || {
                unreachable!("ids are set")
            })
            .unwrap();
            n += 1;
            if msg.event.as_deref() == Some("Order Completed") {
                purchases += 1;
            }
        }
        let t = w.truth();
        assert_eq!(t.realized.events, n);
        assert_eq!(t.realized.orders, purchases);
        assert!(
            t.realized.reached[0] >= t.realized.reached[1]
                && t.realized.reached[1] >= t.realized.reached[2]
        );
        assert!(t.realized.referred_persons > 0, "promoters refer people");
        assert!(t.realized.accounts > 0);
    }

    #[test]
    fn max_events_bounds_the_stream() {
        assert_eq!(
            World::new(WorldSpec {
                customers: 1_000_000,
                max_events: 1234,
                ..Default::default()
            })
            .count(),
            1234
        );
    }
}

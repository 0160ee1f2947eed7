//! B2B buying groups: each account's journey from its members' touchpoints — the stakeholders
//! engaged per role, the roles not reached yet, the account's stage, the time from first touch to
//! a closed deal, the share of personal or phone contact — and won, lost and open accounts
//! compared.

use crate::error::Result;
use crate::journey::{Field, JourneySource, ScanOptions, NO_ACCOUNT};
use crate::selector::{Conjunction, EventSelector, Matcher, Pattern};
use crate::stages::{default_role_property, CompiledModel, ModelRef, PersonStages};
use crate::stats::quantile;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const DAY_MS: f64 = 86_400_000.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountsQuery {
    /// A closed-won deal.
    #[serde(default = "default_won")]
    pub won: EventSelector,
    /// A closed-lost deal.
    #[serde(default = "default_lost")]
    pub lost: EventSelector,
    /// The trait naming a member's role (their latest value).
    #[serde(default = "default_role_property")]
    pub role_property: String,
    /// The buying group's roles; coverage is measured against them (every role seen in any
    /// account when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Channels that are personal or phone contact.
    #[serde(default = "default_personal")]
    pub personal_channels: Vec<String>,
    /// The stage model that stages an account (by its furthest member).
    #[serde(default = "default_model")]
    pub model: ModelRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
}

fn default_won() -> EventSelector {
    EventSelector::event("Order Completed")
}
fn default_lost() -> EventSelector {
    EventSelector::event("Deal Lost")
}
fn default_personal() -> Vec<String> {
    ["call_center", "store", "sales", "event", "phone"]
        .map(String::from)
        .to_vec()
}
fn default_model() -> ModelRef {
    ModelRef::Builtin("buyer-journey".into())
}

impl Default for AccountsQuery {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DealStatus {
    Won,
    Lost,
    Open,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountRow {
    pub account: String,
    pub status: DealStatus,
    pub stage: Option<String>,
    pub members: u32,
    /// Role → members holding it (`(none)` for members without a role).
    pub roles: BTreeMap<String, u32>,
    /// Buying-group roles no member holds.
    pub missing_roles: Vec<String>,
    /// Share of the buying-group roles held by some member.
    pub coverage: f64,
    pub touchpoints: u64,
    /// Touchpoints on personal or phone channels / all touchpoints.
    pub personal_share: f64,
    pub first_touch_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_ms: Option<i64>,
    /// First touch to the won or lost deal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_to_close: Option<f64>,
}

/// Accounts of one status, compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusSummary {
    pub status: DealStatus,
    pub accounts: u64,
    pub mean_members: f64,
    pub mean_coverage: f64,
    pub mean_personal_share: f64,
    pub mean_touchpoints: f64,
    pub median_days_to_close: Option<f64>,
    /// Role → share of these accounts with a member holding it.
    pub role_presence: BTreeMap<String, f64>,
}

/// The buying groups of the accounts whose furthest stage is one stage of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageCoverage {
    pub stage: String,
    pub accounts: u64,
    /// Mean share of the roles engaged (`coverage`) over these accounts.
    pub mean_coverage: f64,
    /// Role → share of these accounts with a member holding it.
    pub role_presence: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountsResult {
    pub roles: Vec<String>,
    pub comparison: Vec<StatusSummary>,
    /// Per stage of the model, in order: accounts at that stage (their furthest) and their
    /// buying groups. Counted before `limit` cuts the account list.
    #[serde(default)]
    pub by_stage: Vec<StageCoverage>,
    pub accounts: Vec<AccountRow>,
    pub definitions: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone)]
struct Acc {
    members: u32,
    /// Role value code per member (u32::MAX: none).
    roles: Vec<u32>,
    touchpoints: u64,
    personal: u64,
    first: i64,
    won: Option<i64>,
    lost: Option<i64>,
    furthest: Option<usize>,
}

impl Acc {
    fn merge(&mut self, o: Acc) {
        self.members += o.members;
        self.roles.extend(o.roles);
        self.touchpoints += o.touchpoints;
        self.personal += o.personal;
        self.first = self.first.min(o.first);
        self.won = min_opt(self.won, o.won);
        self.lost = min_opt(self.lost, o.lost);
        self.furthest = self.furthest.max(o.furthest);
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

pub fn run_accounts<S: JourneySource>(
    source: &S,
    q: &AccountsQuery,
    opts: &ScanOptions,
) -> Result<AccountsResult> {
    let model = q.model.resolve()?;
    let personal = EventSelector::All(Conjunction {
        channel: Some(Pattern::AnyOf(q.personal_channels.clone())),
        ..Default::default()
    });
    let (matcher, compiled, role_key) = source.with_vocabulary(|v| -> Result<_> {
        Ok((
            Matcher::compile(&[q.won.clone(), q.lost.clone(), personal], v)?,
            CompiledModel::compile(model, v)?,
            v.code(Field::PropKey, &q.role_property),
        ))
    })?;
    let mut scan = opts.clone();
    scan.from_ms = q.from_ms.or(opts.from_ms);
    scan.to_ms = q.to_ms.or(opts.to_ms);
    let parts = source.scan(
        &scan,
        || (FxHashMap::<u32, Acc>::default(), PersonStages::default()),
        |(accs, stages), j| {
            let account = j.account();
            if account == NO_ACCOUNT || j.is_empty() {
                return;
            }
            let mut a = Acc {
                members: 1,
                roles: vec![role_key.and_then(|k| j.latest_prop(k)).unwrap_or(u32::MAX)],
                first: j.ts[0],
                ..Default::default()
            };
            for i in 0..j.len() {
                let m = matcher.row_mask(j, i);
                if m & 1 != 0 && a.won.is_none() {
                    a.won = Some(j.ts[i]);
                }
                if m & 2 != 0 && a.lost.is_none() {
                    a.lost = Some(j.ts[i]);
                }
                if j.kind[i] != 1 && j.kind[i] < 4 {
                    // track, page, screen: contacts (not identify, group, alias)
                    a.touchpoints += 1;
                    a.personal += u64::from(m & 4 != 0);
                }
            }
            compiled.person(j, stages);
            a.furthest = stages.furthest();
            match accs.get_mut(&account) {
                Some(e) => e.merge(a),
                None => {
                    accs.insert(account, a);
                }
            }
        },
    );
    let mut all: FxHashMap<u32, Acc> = FxHashMap::default();
    for (p, _) in parts {
        for (k, a) in p {
            match all.get_mut(&k) {
                Some(e) => e.merge(a),
                None => {
                    all.insert(k, a);
                }
            }
        }
    }
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(crate::EngineError::Cancelled);
    }
    Ok(source.with_vocabulary(|v| render(q, &compiled, all, v)))
}

fn render(
    q: &AccountsQuery,
    compiled: &CompiledModel,
    all: FxHashMap<u32, Acc>,
    v: &dyn crate::journey::Vocabulary,
) -> AccountsResult {
    let role_name = |c: u32| {
        if c == u32::MAX {
            "(none)".to_string()
        } else {
            v.name(Field::PropValue, c).to_string()
        }
    };
    let roles: Vec<String> = if q.roles.is_empty() {
        let mut r: Vec<String> = all
            .values()
            .flat_map(|a| a.roles.iter())
            .filter(|c| **c != u32::MAX)
            .map(|c| role_name(*c))
            .collect();
        r.sort();
        r.dedup();
        r
    } else {
        q.roles.clone()
    };
    let mut rows: Vec<AccountRow> = all
        .into_iter()
        .map(|(k, a)| {
            let mut held: BTreeMap<String, u32> = BTreeMap::new();
            for c in &a.roles {
                *held.entry(role_name(*c)).or_default() += 1;
            }
            let missing: Vec<String> = roles
                .iter()
                .filter(|r| !held.contains_key(*r))
                .cloned()
                .collect();
            let (status, closed) = match (a.won, a.lost) {
                (Some(w), _) => (DealStatus::Won, Some(w)),
                (None, Some(l)) => (DealStatus::Lost, Some(l)),
                _ => (DealStatus::Open, None),
            };
            AccountRow {
                account: v.name(Field::Account, k).to_string(),
                status,
                stage: a.furthest.map(|s| compiled.model.stages[s].name.clone()),
                members: a.members,
                coverage: if roles.is_empty() {
                    1.0
                } else {
                    (roles.len() - missing.len()) as f64 / roles.len() as f64
                },
                roles: held,
                missing_roles: missing,
                touchpoints: a.touchpoints,
                personal_share: if a.touchpoints > 0 {
                    a.personal as f64 / a.touchpoints as f64
                } else {
                    0.0
                },
                first_touch_ms: a.first,
                closed_ms: closed,
                days_to_close: closed.map(|c| (c - a.first) as f64 / DAY_MS),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.status.cmp(&b.status).then(a.account.cmp(&b.account)));
    let comparison = [DealStatus::Won, DealStatus::Lost, DealStatus::Open]
        .into_iter()
        .filter_map(|status| {
            let group: Vec<&AccountRow> = rows.iter().filter(|r| r.status == status).collect();
            if group.is_empty() {
                return None;
            }
            let n = group.len() as f64;
            let mean = |f: &dyn Fn(&AccountRow) -> f64| group.iter().map(|r| f(r)).sum::<f64>() / n;
            let mut days: Vec<i64> = group
                .iter()
                .filter_map(|r| r.days_to_close.map(|d| (d * 1000.0) as i64))
                .collect();
            Some(StatusSummary {
                status,
                accounts: group.len() as u64,
                mean_members: mean(&|r| r.members as f64),
                mean_coverage: mean(&|r| r.coverage),
                mean_personal_share: mean(&|r| r.personal_share),
                mean_touchpoints: mean(&|r| r.touchpoints as f64),
                median_days_to_close: quantile(&mut days, 0.5).map(|d| d as f64 / 1000.0),
                role_presence: roles
                    .iter()
                    .map(|role| {
                        let with = group.iter().filter(|r| r.roles.contains_key(role)).count();
                        (role.clone(), with as f64 / n)
                    })
                    .collect(),
            })
        })
        .collect();
    let by_stage = compiled
        .model
        .stages
        .iter()
        .map(|st| {
            let group: Vec<&AccountRow> = rows
                .iter()
                .filter(|r| r.stage.as_deref() == Some(st.name.as_str()))
                .collect();
            let n = group.len() as f64;
            StageCoverage {
                stage: st.name.clone(),
                accounts: group.len() as u64,
                mean_coverage: if group.is_empty() {
                    0.0
                } else {
                    group.iter().map(|r| r.coverage).sum::<f64>() / n
                },
                role_presence: roles
                    .iter()
                    .map(|role| {
                        let with = group.iter().filter(|r| r.roles.contains_key(role)).count();
                        (
                            role.clone(),
                            if group.is_empty() {
                                0.0
                            } else {
                                with as f64 / n
                            },
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    if let Some(l) = q.limit {
        rows.truncate(l);
    }
    AccountsResult {
        roles,
        comparison,
        by_stage,
        accounts: rows,
        definitions: [
            (
                "members",
                "persons whose touchpoints name the account (their latest account)",
            ),
            (
                "roles",
                "members per role: each member's latest value of the role trait",
            ),
            (
                "coverage",
                "buying-group roles held by at least one member / buying-group roles",
            ),
            (
                "stage",
                "the furthest stage any member reached under the stage model",
            ),
            (
                "status",
                "won: a won event; lost: a lost event and no won one; open: neither",
            ),
            (
                "days_to_close",
                "from the account's first touchpoint to its first won (else lost) event",
            ),
            (
                "personal_share",
                "track, page and screen touchpoints on personal or phone channels / all of them",
            ),
        ]
        .into_iter()
        .map(|(k, d)| (k.to_string(), d.to_string()))
        .collect(),
    }
}

#[cfg(test)]
mod stage_coverage_tests {
    use super::*;
    use crate::memory::{MemorySource, Row};

    /// Accounts are summed at their furthest stage: how many, how complete their buying groups
    /// are, and which roles they have; limiting the account list does not change it.
    #[test]
    fn buying_groups_are_summed_per_stage() {
        let member = |p: &str, ts: i64, e: &str, account: &str, role: &str| Row {
            account: Some(account.into()),
            props: vec![("traits.role".into(), role.into())],
            ..Row::new(p, ts, e)
        };
        let rows = vec![
            // acme: a decision maker and a user, ordered (Decision)
            member("a1", 1_000, "Product Viewed", "acme", "decision_maker"),
            member("a2", 2_000, "Order Completed", "acme", "user"),
            // beta: only a user, researching (Consideration)
            member("b1", 1_000, "Product Viewed", "beta", "user"),
            // gamma: a decision maker, researching (Consideration)
            member("c1", 1_000, "Product Viewed", "gamma", "decision_maker"),
        ];
        let src = MemorySource::new(&rows);
        let mut q = AccountsQuery::default();
        let r = run_accounts(&src, &q, &Default::default()).unwrap();
        let by: Vec<(&str, u64, f64)> = r
            .by_stage
            .iter()
            .map(|s| (s.stage.as_str(), s.accounts, s.mean_coverage))
            .collect();
        assert_eq!(
            by,
            [
                ("Awareness", 0, 0.0),
                ("Consideration", 2, 0.5),
                ("Decision", 1, 1.0)
            ]
        );
        assert_eq!(r.by_stage[1].role_presence["user"], 0.5);
        q.limit = Some(1);
        let limited = run_accounts(&src, &q, &Default::default()).unwrap();
        assert_eq!(limited.accounts.len(), 1);
        assert_eq!(limited.by_stage, r.by_stage);
    }
}

//! Alert rules on survey answers: per answer (e.g. a detractor in Onboarding) or on a group's
//! aggregate (a stage's NPS below a threshold, or dropped against the previous period, only with
//! at least a minimum n). This module decides what fires; delivery, deduplication and cool-down
//! are the server's.

use crate::duration::Span;
use crate::error::{EngineError, Result};
use crate::journey::{JourneySource, ScanOptions};
use crate::scores::{find_answers, run_scores, Answer, ScoreKind, ScoreRow, ScoresQuery};
use serde::{Deserialize, Serialize};

/// Where an alert is delivered: a webhook signed with HMAC-SHA256 of the body under `secret`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// Every new answer with a score in `[min_score, max_score]`.
    Response {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_score: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_score: Option<f64>,
    },
    /// The metric over the last `window` (NPS in points, CSAT/CES good share in %) below
    /// `below`, or fallen by at least `drop` against the window before; only with `min_n`
    /// answers (in both windows for a drop).
    Aggregate {
        window: Span,
        #[serde(default = "default_min_n")]
        min_n: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drop: Option<f64>,
    },
}

fn default_min_n() -> u64 {
    30
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    /// The answers the rule looks at: kind, survey, `by` (stage, touchpoint, …) and scale.
    pub scores: ScoresQuery,
    /// Only this group under `scores.by` (e.g. the stage `Onboarding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub trigger: Trigger,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// E-mail recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<String>,
    /// No second aggregate alert, and no second answer alert for the same person, within this.
    #[serde(default = "default_cooldown")]
    pub cooldown: Span,
    /// Open a case for every alert.
    #[serde(default)]
    pub open_case: bool,
}

fn default_cooldown() -> Span {
    Span(3_600_000)
}

impl AlertRule {
    pub fn validate(&self) -> Result<()> {
        if self.group.is_some() && self.scores.by.is_none() {
            return Err(EngineError::invalid("group", "a group needs scores.by"));
        }
        if let Trigger::Aggregate {
            below,
            drop,
            window,
            ..
        } = &self.trigger
        {
            if below.is_none() && drop.is_none() {
                return Err(EngineError::invalid(
                    "trigger",
                    "an aggregate trigger needs below or drop",
                ));
            }
            if window.ms() <= 0 {
                return Err(EngineError::invalid("window", "must be positive"));
            }
        }
        for to in &self.email {
            let ok = to.len() <= 254
                && to
                    .split_once('@')
                    .is_some_and(|(u, d)| !u.is_empty() && (d.contains('.') || d == "localhost"));
            if !ok {
                return Err(EngineError::invalid(
                    "email",
                    format!("`{to}` is not an e-mail address"),
                ));
            }
        }
        if let Some(w) = &self.webhook {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(EngineError::invalid(
                    "webhook.url",
                    "must be an http(s) URL",
                ));
            }
            if w.secret.len() < 16 {
                return Err(EngineError::invalid(
                    "webhook.secret",
                    "use at least 16 characters",
                ));
            }
        }
        Ok(())
    }

    /// The rule as shown to readers: the webhook secret is never given back.
    pub fn redacted(&self) -> AlertRule {
        let mut r = self.clone();
        if let Some(w) = &mut r.webhook {
            w.secret = "***".into();
        }
        r
    }
}

/// The answers in `[from_ms, to_ms)` that fire a response rule.
pub fn firing_answers<S: JourneySource>(
    source: &S,
    rule: &AlertRule,
    from_ms: i64,
    to_ms: i64,
    opts: &ScanOptions,
) -> Result<Vec<Answer>> {
    let Trigger::Response {
        min_score,
        max_score,
    } = rule.trigger
    else {
        return Ok(Vec::new());
    };
    let mut q = rule.scores.clone();
    q.from_ms = Some(from_ms);
    q.to_ms = Some(to_ms);
    Ok(find_answers(source, &q, opts)?
        .into_iter()
        .filter(|a| {
            min_score.is_none_or(|m| a.score >= m) && max_score.is_none_or(|m| a.score <= m)
        })
        .filter(|a| rule.group.is_none() || a.group == rule.group)
        .collect())
}

/// What an aggregate rule saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AggregateCheck {
    pub metric: Option<f64>,
    pub n: u64,
    pub previous_metric: Option<f64>,
    pub previous_n: u64,
    pub firing: bool,
    pub reason: String,
}

fn metric(kind: ScoreKind, row: &ScoreRow) -> Option<f64> {
    match kind {
        ScoreKind::Nps => row.nps.as_ref().map(|n| n.nps),
        _ => row.good_share.as_ref().map(|g| 100.0 * g.share),
    }
}

/// Evaluates an aggregate rule over the window ending at `now_ms` (and the one before it).
pub fn check_aggregate<S: JourneySource>(
    source: &S,
    rule: &AlertRule,
    now_ms: i64,
    opts: &ScanOptions,
) -> Result<Option<AggregateCheck>> {
    let Trigger::Aggregate {
        window,
        min_n,
        below,
        drop,
    } = rule.trigger
    else {
        return Ok(None);
    };
    let w = window.ms();
    let figures = |from: i64, to: i64| -> Result<(Option<f64>, u64)> {
        let mut q = rule.scores.clone();
        q.from_ms = Some(from);
        q.to_ms = Some(to);
        let r = run_scores(source, &q, opts)?;
        let row = match &rule.group {
            None => Some(r.overall),
            Some(g) => r
                .groups
                .into_iter()
                .find(|x| x.key.as_deref() == Some(g.as_str())),
        };
        Ok(row.map_or((None, 0), |row| (metric(rule.scores.kind, &row), row.n)))
    };
    let (m, n) = figures(now_ms - w, now_ms)?;
    let (pm, pn) = if drop.is_some() {
        figures(now_ms - 2 * w, now_ms - w)?
    } else {
        (None, 0)
    };
    let mut reasons = Vec::new();
    if n >= min_n {
        if let (Some(b), Some(m)) = (below, m) {
            if m < b {
                reasons.push(format!("{m:.1} is below {b} (n = {n})"));
            }
        }
        if let (Some(d), Some(m), Some(pm)) = (drop, m, pm) {
            if pn >= min_n && pm - m >= d {
                reasons.push(format!(
                    "{m:.1} fell by {:.1} from {pm:.1} (n = {n} and {pn})",
                    pm - m
                ));
            }
        }
    }
    Ok(Some(AggregateCheck {
        metric: m,
        n,
        previous_metric: pm,
        previous_n: pn,
        firing: !reasons.is_empty(),
        reason: if reasons.is_empty() {
            format!("not firing (n = {n}, at least {min_n} needed)")
        } else {
            reasons.join("; ")
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemorySource, Row};
    use crate::scores::ScoreBy;

    const DAY: i64 = 86_400_000;

    fn answer(p: &str, day: i64, score: u32) -> Row {
        Row {
            props: vec![
                ("properties.survey_kind".into(), "nps".into()),
                ("properties.score".into(), score.to_string()),
            ],
            ..Row::new(p, day * DAY, "Survey Responded")
        }
    }

    fn rule(trigger: Trigger) -> AlertRule {
        AlertRule {
            name: "r".into(),
            scores: ScoresQuery::new(ScoreKind::Nps),
            group: None,
            trigger,
            webhook: None,
            email: Vec::new(),
            cooldown: Span(DAY),
            open_case: false,
        }
    }

    #[test]
    fn detractor_answers_fire_once_each() {
        let rows = [
            answer("a", 1, 3),
            answer("b", 1, 9),
            answer("c", 2, 6),
            answer("d", 5, 0),
        ];
        let src = MemorySource::new(&rows);
        let r = rule(Trigger::Response {
            min_score: None,
            max_score: Some(6.0),
        });
        let hits = firing_answers(&src, &r, 0, 3 * DAY, &Default::default()).unwrap();
        assert_eq!(
            hits.iter().map(|a| a.person.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        // by stage, only one stage
        let mut r = r;
        r.scores.by = Some(ScoreBy::Stage);
        r.group = Some("Retention".into());
        assert!(firing_answers(&src, &r, 0, 10 * DAY, &Default::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn aggregates_need_their_minimum_n_and_see_drops() {
        let mut rows = Vec::new();
        // last week: 4 detractors, 1 promoter (NPS −60); the week before: 4 promoters, 1 detractor
        for i in 0..5 {
            rows.push(answer(&format!("now{i}"), 10, if i == 0 { 10 } else { 2 }));
            rows.push(answer(&format!("then{i}"), 2, if i == 0 { 2 } else { 10 }));
        }
        let src = MemorySource::new(&rows);
        let r = rule(Trigger::Aggregate {
            window: Span(7 * DAY),
            min_n: 5,
            below: Some(0.0),
            drop: Some(50.0),
        });
        let c = check_aggregate(&src, &r, 11 * DAY, &Default::default())
            .unwrap()
            .unwrap();
        assert!(c.firing, "{c:?}");
        assert_eq!((c.n, c.previous_n), (5, 5));
        assert!((c.metric.unwrap() + 60.0).abs() < 1e-9);
        assert!((c.previous_metric.unwrap() - 60.0).abs() < 1e-9);
        assert!(c.reason.contains("below") && c.reason.contains("fell by 120.0"));
        let r = rule(Trigger::Aggregate {
            window: Span(7 * DAY),
            min_n: 6,
            below: Some(0.0),
            drop: None,
        });
        assert!(
            !check_aggregate(&src, &r, 11 * DAY, &Default::default())
                .unwrap()
                .unwrap()
                .firing
        );
        assert!(rule(Trigger::Aggregate {
            window: Span(DAY),
            min_n: 1,
            below: None,
            drop: None
        })
        .validate()
        .is_err());
    }
}

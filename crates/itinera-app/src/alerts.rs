//! Alerts that close the loop: rules on survey answers are evaluated continuously (every
//! `alert_interval_seconds`, or on request), each firing alert is recorded once (deduplicated,
//! with a cool-down), delivered to a webhook signed with HMAC-SHA256 (retried with exponential
//! backoff, every attempt logged), and can open a case. Webhook secrets are never logged nor
//! given back by the API.

use crate::definitions;
use crate::error::{AppError, Result};
use crate::outbound;
use crate::App;
use itinera_core::clock::now_ms;
use itinera_engine::alerts::{AlertRule, Trigger};
use itinera_meta::DefinitionKind;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Answers arriving this late (by event time) after an evaluation are still seen by the next.
const OVERLAP_MS: i64 = 15 * 60_000;

/// An alert fired by one evaluation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Fired {
    pub id: i64,
    pub rule: String,
    pub payload: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<i64>,
}

pub fn load_rules(app: &App, project: &str) -> Result<Vec<AlertRule>> {
    definitions::load(&app.meta(), project, DefinitionKind::Alert)
}

/// Validates and saves an alert rule named `name` (the body's JSON, its name set from `name`).
pub fn save_rule(app: &App, project: &str, name: &str, mut body: Value) -> Result<AlertRule> {
    definitions::valid_name(name)?;
    if let Some(o) = body.as_object_mut() {
        o.insert("name".into(), Value::String(name.to_string()));
    }
    let rule: AlertRule =
        serde_json::from_value(body).map_err(|e| AppError::invalid("body", e.to_string()))?;
    rule.validate()?;
    if let Some(w) = &rule.webhook {
        crate::destinations::check("webhook.url", &w.url, &app.config.outbound)?;
    }
    if !rule.email.is_empty() && app.config.smtp.host.is_empty() {
        return Err(AppError::invalid(
            "email",
            "e-mail alerts need an SMTP relay: set [smtp] host (ITINERA_SMTP_HOST)",
        ));
    }
    // the rule's answers query must compile against the project's data (no scan)
    app.backend(project)?.check_scores(&rule.scores)?;
    definitions::save(&app.meta(), project, DefinitionKind::Alert, name, &rule, 0)?;
    Ok(rule)
}

/// Evaluates every rule of `project` at `now_ms`; returns the alerts that fired. Blocking (scans).
pub fn evaluate_project(app: &Arc<App>, project: &str, now_ms: i64) -> Result<Vec<Fired>> {
    let rules = load_rules(app, project)?;
    if rules.is_empty() {
        return Ok(Vec::new());
    }
    let backend = app.backend(project)?;
    let engine = |e: AppError| match e {
        AppError::Invalid { reason, .. } => AppError::invalid("rule", reason),
        other => other,
    };
    let mut fired = Vec::new();
    for rule in rules {
        let state = app.meta().alert_state(project, &rule.name)?;
        let (watermark, last_fired) = match state {
            Some(s) => s,
            None => {
                // a new rule watches answers from now on; it does not fire for the past
                app.meta()
                    .set_alert_state(project, &rule.name, now_ms, None)?;
                if matches!(rule.trigger, Trigger::Response { .. }) {
                    continue;
                }
                (now_ms, None)
            }
        };
        let mut new_last = last_fired;
        match &rule.trigger {
            Trigger::Response { .. } => {
                let answers = backend
                    .firing_answers(&rule, watermark, now_ms)
                    .map_err(engine)?;
                for a in answers {
                    let cutoff = now_ms - rule.cooldown.ms();
                    let key = format!("{}|{}", a.person, a.ts_ms);
                    let meta = app.meta();
                    if meta.recent_alert(project, &rule.name, &format!("{}|", a.person), cutoff)? {
                        continue;
                    }
                    drop(meta);
                    let payload = json!({
                        "rule": rule.name, "project": project, "type": "response",
                        "kind": rule.scores.kind, "person": a.person, "score": a.score,
                        "group": a.group, "answered_at_ms": a.ts_ms, "fired_at_ms": now_ms,
                    });
                    if let Some(f) =
                        fire(app, project, &rule, &key, payload, a.person.as_str().into())?
                    {
                        fired.push(f);
                    }
                }
            }
            Trigger::Aggregate { .. } => {
                let check = backend
                    .check_aggregate(&rule, now_ms)
                    .map_err(engine)?
                    .expect("an aggregate rule");
                let cooled = last_fired.is_none_or(|t| now_ms - t >= rule.cooldown.ms());
                if check.firing && cooled {
                    let payload = json!({
                        "rule": rule.name, "project": project, "type": "aggregate",
                        "kind": rule.scores.kind, "group": rule.group, "check": check,
                        "fired_at_ms": now_ms,
                    });
                    let key = format!("aggregate|{now_ms}");
                    if let Some(f) = fire(app, project, &rule, &key, payload, None)? {
                        fired.push(f);
                        new_last = Some(now_ms);
                    }
                }
            }
        }
        // the next window starts a little before now (answers can arrive late), never before
        // the rule started watching; answers seen twice are deduplicated by their key
        let next = watermark.max(now_ms - OVERLAP_MS);
        app.meta()
            .set_alert_state(project, &rule.name, next, new_last)?;
    }
    Ok(fired)
}

/// Records an alert (once per rule and key), opens its case and starts its delivery.
fn fire(
    app: &Arc<App>,
    project: &str,
    rule: &AlertRule,
    key: &str,
    payload: Value,
    person: Option<&str>,
) -> Result<Option<Fired>> {
    let meta = app.meta();
    let delivery = if rule.webhook.is_some() {
        "pending"
    } else {
        "none"
    };
    let Some(id) = meta.insert_alert(project, &rule.name, key, &payload, delivery)? else {
        return Ok(None);
    };
    let case = if rule.open_case {
        let title = format!("{}: {}", rule.name, person.unwrap_or("aggregate"));
        Some(meta.open_case(project, Some(id), person, &title)?)
    } else {
        None
    };
    drop(meta);
    tracing::info!(project, rule = rule.name, alert = id, "alert fired");
    if let Some(w) = &rule.webhook {
        let body = json!({"alert_id": id, "alert": payload, "case_id": case}).to_string();
        tokio::spawn(outbound::deliver_webhook(app.clone(), id, w.clone(), body));
    }
    if !rule.email.is_empty() {
        let (app2, to) = (app.clone(), rule.email.clone());
        let (subject, text) = email_text(rule, &payload, case);
        tokio::task::spawn_blocking(move || {
            outbound::deliver_email(&app2, id, &to, &subject, &text)
        });
    }
    Ok(Some(Fired {
        id,
        rule: rule.name.clone(),
        payload,
        case,
    }))
}

/// Subject and plain-text body of an alert e-mail.
fn email_text(rule: &AlertRule, payload: &Value, case: Option<i64>) -> (String, String) {
    let what = match payload["type"].as_str() {
        Some("response") => format!(
            "{} answered {} ({})",
            payload["person"].as_str().unwrap_or("someone"),
            payload["score"],
            payload["kind"].as_str().unwrap_or("score"),
        ),
        _ => payload["check"]["reason"]
            .as_str()
            .unwrap_or("aggregate")
            .to_string(),
    };
    let subject = format!("[Itinera] {}: {what}", rule.name);
    let mut text = format!("Alert rule: {}\n{what}\n", rule.name);
    if let Some(g) = &rule.group {
        text.push_str(&format!("Group: {g}\n"));
    }
    if let Some(c) = case {
        text.push_str(&format!("Case: {c}\n"));
    }
    text.push_str(&format!(
        "\nDetails:\n{}\n",
        serde_json::to_string_pretty(payload).unwrap_or_default()
    ));
    (subject, text)
}

/// Evaluates every project's rules every `alert_interval_seconds`.
pub fn spawn_loop(app: Arc<App>) {
    let every = app.config.alert_interval_seconds;
    if every == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let app2 = app.clone();
            let done = tokio::task::spawn_blocking(move || -> Result<usize> {
                let projects = app2.data.meta.lock().projects()?;
                let mut n = 0;
                for p in projects {
                    n += evaluate_project(&app2, &p.name, now_ms())?.len();
                }
                Ok(n)
            })
            .await;
            match done {
                Ok(Ok(n)) if n > 0 => tracing::info!(alerts = n, "alert rules evaluated"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "alert evaluation failed"),
                Err(e) => tracing::warn!(error = %e, "alert evaluation panicked"),
            }
        }
    });
}

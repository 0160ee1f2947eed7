//! Alerts that close the loop: rules on survey answers are evaluated continuously (every
//! `alert_interval_seconds`, or on request), each firing alert is recorded once (deduplicated,
//! with a cool-down), delivered to a webhook signed with HMAC-SHA256 (retried with exponential
//! backoff, every attempt logged), and can open a case. Webhook secrets are never logged nor
//! given back by the API.

use crate::error::ApiError;
use crate::population;
use crate::AppState;
use hmac::{Hmac, Mac};
use itinera_engine::alerts::{check_aggregate, firing_answers, AlertRule, Trigger, Webhook};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

/// Definition kind of alert rules in the metadata database.
pub const ALERT: &str = "alert";

/// Answers arriving this late (by event time) after an evaluation are still seen by the next.
const OVERLAP_MS: i64 = 15 * 60_000;

/// An alert fired by one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Fired {
    pub id: i64,
    pub rule: String,
    pub payload: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<i64>,
}

pub fn load_rules(app: &AppState, project: &str) -> Result<Vec<AlertRule>, ApiError> {
    app.data
        .meta
        .lock()
        .definitions(project, ALERT)?
        .into_iter()
        .map(|d| {
            serde_json::from_str(&d.body)
                .map_err(|e| ApiError::Internal(format!("saved alert rule {}: {e}", d.name)))
        })
        .collect()
}

/// `sha256=HEX` of HMAC-SHA256(secret, body): the `X-Itinera-Signature` header.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Evaluates every rule of `project` at `now_ms`; returns the alerts that fired. Blocking (scans).
pub fn evaluate_project(
    app: &Arc<AppState>,
    project: &str,
    now_ms: i64,
) -> Result<Vec<Fired>, ApiError> {
    let rules = load_rules(app, project)?;
    if rules.is_empty() {
        return Ok(Vec::new());
    }
    let store = app.data.store(project)?;
    let view = store.view();
    let engine = |e: itinera_engine::EngineError| ApiError::BadRequest {
        field: "rule".into(),
        reason: e.to_string(),
    };
    let mut fired = Vec::new();
    for rule in rules {
        let state = app.data.meta.lock().alert_state(project, &rule.name)?;
        let (watermark, last_fired) = match state {
            Some(s) => s,
            None => {
                // a new rule watches answers from now on; it does not fire for the past
                app.data
                    .meta
                    .lock()
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
                let answers = firing_answers(&view, &rule, watermark, now_ms, &Default::default())
                    .map_err(engine)?;
                for a in answers {
                    let cutoff = now_ms - rule.cooldown.ms();
                    let key = format!("{}|{}", a.person, a.ts_ms);
                    let meta = app.data.meta.lock();
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
                let check = check_aggregate(&view, &rule, now_ms, &Default::default())
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
        app.data
            .meta
            .lock()
            .set_alert_state(project, &rule.name, next, new_last)?;
    }
    Ok(fired)
}

/// Records an alert (once per rule and key), opens its case and starts its delivery.
fn fire(
    app: &Arc<AppState>,
    project: &str,
    rule: &AlertRule,
    key: &str,
    payload: Value,
    person: Option<&str>,
) -> Result<Option<Fired>, ApiError> {
    let meta = app.data.meta.lock();
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
        tokio::spawn(deliver(app.clone(), id, w.clone(), body));
    }
    if !rule.email.is_empty() {
        let (app2, to) = (app.clone(), rule.email.clone());
        let (subject, text) = email_text(rule, &payload, case);
        tokio::task::spawn_blocking(move || deliver_email(&app2, id, &to, &subject, &text));
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

/// Sends one plain-text e-mail through the configured SMTP relay; the reply code on success.
/// Blocking.
pub fn send_mail(app: &AppState, to: &[String], subject: &str, text: &str) -> Result<u16, String> {
    use lettre::message::{header::ContentType, Mailbox};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{Message, SmtpTransport, Transport};
    let smtp = &app.config.smtp;
    if smtp.host.is_empty() {
        return Err("no SMTP relay is configured ([smtp] host)".into());
    }
    let mut m = Message::builder()
        .from(
            smtp.from
                .parse::<Mailbox>()
                .map_err(|e| format!("smtp.from: {e}"))?,
        )
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for t in to {
        m = m.to(t.parse::<Mailbox>().map_err(|e| format!("{t}: {e}"))?);
    }
    let message = m.body(text.to_string()).map_err(|e| e.to_string())?;
    let mut transport = SmtpTransport::builder_dangerous(&smtp.host).port(smtp.port);
    if let (Some(u), Some(p)) = (&smtp.username, &smtp.password) {
        transport = transport.credentials(Credentials::new(u.clone(), p.clone()));
    }
    let mailer = transport.timeout(Some(Duration::from_secs(10))).build();
    mailer
        .send(&message)
        .map(|r| u16::from(r.code()))
        .map_err(|e| e.to_string())
}

/// Sends the alert e-mail with the webhook's retry policy, logging every attempt. Blocking.
fn deliver_email(app: &AppState, id: i64, to: &[String], subject: &str, text: &str) {
    let attempts = app.config.webhook_attempts.max(1) as i64;
    for attempt in 1..=attempts {
        let result = send_mail(app, to, subject, text);
        let (status, error) = match &result {
            Ok(code) => (Some(i64::from(*code)), None),
            Err(e) => (None, Some(e.clone())),
        };
        let last = result.is_ok() || attempt == attempts;
        let outcome = match (&result, last) {
            (Ok(_), _) => Some("delivered"),
            (Err(_), true) => Some("failed"),
            _ => None,
        };
        let logged = app.data.meta.lock().log_delivery(
            id,
            "email",
            attempt,
            status,
            error.as_deref(),
            outcome,
        );
        if let Err(e) = logged {
            tracing::warn!(alert = id, error = %e, "cannot log an e-mail delivery");
        }
        if last {
            return;
        }
        tracing::warn!(
            alert = id,
            attempt,
            error = error.as_deref().unwrap_or(""),
            "alert e-mail failed"
        );
        let delay = app
            .config
            .webhook_backoff_ms
            .saturating_mul(1 << (attempt - 1).min(20));
        std::thread::sleep(Duration::from_millis(delay));
    }
}

/// Posts the alert to its webhook until a 2xx answer, with exponential backoff.
async fn deliver(app: Arc<AppState>, id: i64, hook: Webhook, body: String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let attempts = app.config.webhook_attempts.max(1) as i64;
    let sig = signature(&hook.secret, body.as_bytes());
    for attempt in 1..=attempts {
        let res = client
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-itinera-signature", &sig)
            .header("x-itinera-delivery", id.to_string())
            .body(body.clone())
            .send()
            .await;
        let (status, error) = match &res {
            Ok(r) => (
                Some(r.status().as_u16() as i64),
                (!r.status().is_success()).then(|| format!("HTTP {}", r.status())),
            ),
            Err(e) => (None, Some(e.to_string())),
        };
        let ok = error.is_none();
        let outcome = if ok {
            Some("delivered")
        } else if attempt == attempts {
            Some("failed")
        } else {
            None
        };
        let logged = app.data.meta.lock().log_delivery(
            id,
            "webhook",
            attempt,
            status,
            error.as_deref(),
            outcome,
        );
        if let Err(e) = logged {
            tracing::warn!(alert = id, error = %e, "cannot log a webhook delivery");
        }
        if ok {
            return;
        }
        tracing::warn!(alert = id, attempt, status, "webhook delivery failed");
        if attempt < attempts {
            let delay = app
                .config
                .webhook_backoff_ms
                .saturating_mul(1 << (attempt - 1).min(20));
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }
}

/// Evaluates every project's rules every `alert_interval_seconds`.
pub fn spawn_loop(app: Arc<AppState>) {
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
            let done = tokio::task::spawn_blocking(move || -> Result<usize, ApiError> {
                let projects = app2.data.meta.lock().projects()?;
                let mut n = 0;
                for p in projects {
                    n += evaluate_project(&app2, &p.name, population::now_ms())?.len();
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

//! Outbound requests: alert webhooks (signed with HMAC-SHA256, retried with exponential backoff,
//! every attempt logged) and e-mail through the configured SMTP relay. Every request the server
//! sends goes through this module.

use crate::App;
use hmac::{Hmac, Mac};
use itinera_engine::alerts::Webhook;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

/// `sha256=HEX` of HMAC-SHA256(secret, body): the `X-Itinera-Signature` header.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends one plain-text e-mail through the configured SMTP relay; the reply code on success.
/// Blocking.
pub fn send_mail(app: &App, to: &[String], subject: &str, text: &str) -> Result<u16, String> {
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
pub fn deliver_email(app: &App, id: i64, to: &[String], subject: &str, text: &str) {
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
        let logged =
            app.meta()
                .log_delivery(id, "email", attempt, status, error.as_deref(), outcome);
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

/// What one POST to a webhook gave.
pub enum Posted {
    /// The destination is not one the server may reach: not sent, not worth retrying.
    Refused(String),
    /// Sent: the status, if an answer came, and the error unless it was a 2xx.
    Sent {
        status: Option<i64>,
        error: Option<String>,
    },
}

/// POSTs `body` as JSON to `url` once. The destination is checked first
/// ([`crate::destinations`]) and the connection goes to the checked address; redirects are not
/// followed (a 3xx is an error). Every webhook the server sends goes through here.
pub async fn post_json(app: &App, url: &str, body: &str, headers: &[(&str, String)]) -> Posted {
    let (policy, url) = (app.config.outbound.clone(), url.to_string());
    let checked = tokio::task::spawn_blocking(move || {
        crate::destinations::check("webhook.url", &url, &policy)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    let checked = match checked {
        Ok(c) => c,
        Err(reason) => return Posted::Refused(reason),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&checked.host, checked.addr)
        .build()
        .expect("http client");
    let mut req = client
        .post(checked.url.as_str())
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    match req.body(body.to_string()).send().await {
        Ok(r) => Posted::Sent {
            status: Some(r.status().as_u16() as i64),
            error: (!r.status().is_success()).then(|| format!("HTTP {}", r.status())),
        },
        Err(e) => Posted::Sent {
            status: None,
            error: Some(e.to_string()),
        },
    }
}

/// Posts the alert to its webhook until a 2xx answer, with exponential backoff. The destination
/// is checked again before every attempt.
pub async fn deliver_webhook(app: Arc<App>, id: i64, hook: Webhook, body: String) {
    let attempts = app.config.webhook_attempts.max(1) as i64;
    let headers = [
        (
            "x-itinera-signature",
            signature(&hook.secret, body.as_bytes()),
        ),
        ("x-itinera-delivery", id.to_string()),
    ];
    for attempt in 1..=attempts {
        let (status, error) = match post_json(&app, &hook.url, &body, &headers).await {
            Posted::Sent { status, error } => (status, error),
            Posted::Refused(reason) => {
                // refused, not retried: the destination is not one the server may reach
                let logged = app.meta().log_delivery(
                    id,
                    "webhook",
                    attempt,
                    None,
                    Some(&format!("refused: {reason}")),
                    Some("failed"),
                );
                if let Err(e) = logged {
                    tracing::warn!(alert = id, error = %e, "cannot log a webhook delivery");
                }
                tracing::warn!(alert = id, %reason, "webhook destination refused");
                return;
            }
        };
        let ok = error.is_none();
        let outcome = if ok {
            Some("delivered")
        } else if attempt == attempts {
            Some("failed")
        } else {
            None
        };
        let logged =
            app.meta()
                .log_delivery(id, "webhook", attempt, status, error.as_deref(), outcome);
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

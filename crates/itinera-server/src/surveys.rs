//! Surveys: definitions (kind, scale, question per language, follow-up, trigger), a hosted survey
//! page reachable by a signed link (for e-mail and SMS), the public definition and script the
//! embeddable widget uses, and answers stored as `Survey Responded` events like any other.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use hmac::{Hmac, Mac};
use itinera_core::ingest;
use itinera_core::message::{new_message_id, NormalizeOptions};
use itinera_core::MessageType;
use itinera_engine::scores::ScoreKind;
use itinera_engine::{EventSelector, Span};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Definition kind of surveys in the metadata database.
pub const SURVEY: &str = "survey";
/// Longest open answer kept.
pub const MAX_COMMENT: usize = 2_000;

/// When the widget asks: after a touchpoint, with a delay, for a share of persons, at most once
/// per throttle period per person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyTrigger {
    pub after: EventSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Span>,
    #[serde(default = "one")]
    pub sample_rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Span>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyDef {
    #[serde(default)]
    pub id: String,
    pub kind: ScoreKind,
    /// `[min, max]` (NPS 0–10, CES 1–7, CSAT 1–5 unless declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<[u32; 2]>,
    /// CES: the low end means easy.
    #[serde(default)]
    pub low_is_good: bool,
    /// Language code → question (`en` required; `de` and others optional).
    pub question: BTreeMap<String, String>,
    /// Language code → open follow-up question.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub follow_up: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<SurveyTrigger>,
    /// The stage and touchpoint the survey measures (for the journey map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touchpoint: Option<String>,
}

impl SurveyDef {
    pub fn scale(&self) -> [u32; 2] {
        self.scale.unwrap_or(match self.kind {
            ScoreKind::Nps => [0, 10],
            ScoreKind::Csat => [1, 5],
            ScoreKind::Ces => [1, 7],
        })
    }

    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = |field: &str, reason: &str| ApiError::BadRequest {
            field: field.into(),
            reason: reason.into(),
        };
        if !self.question.contains_key("en") {
            return Err(bad("question", "an English question (`en`) is required"));
        }
        if self
            .question
            .values()
            .chain(self.follow_up.values())
            .any(|q| q.len() > 500)
        {
            return Err(bad("question", "at most 500 characters"));
        }
        let [lo, hi] = self.scale();
        if hi <= lo || hi - lo > 20 {
            return Err(bad("scale", "max above min, at most 20 points"));
        }
        if let Some(t) = &self.trigger {
            if !(0.0..=1.0).contains(&t.sample_rate) {
                return Err(bad("trigger.sample_rate", "a share in 0…1"));
            }
        }
        Ok(())
    }

    /// The text in `lang` (the language's primary subtag), else English.
    fn text<'a>(map: &'a BTreeMap<String, String>, lang: &str) -> Option<&'a str> {
        let primary = lang
            .split(['-', '_'])
            .next()
            .unwrap_or("en")
            .to_ascii_lowercase();
        map.get(&primary)
            .or_else(|| map.get("en"))
            .map(String::as_str)
    }
}

pub fn load(app: &AppState, project: &str) -> Result<Vec<SurveyDef>, ApiError> {
    load_from(&app.data.meta.lock(), project)
}

pub fn load_from(meta: &itinera_meta::Meta, project: &str) -> Result<Vec<SurveyDef>, ApiError> {
    meta.definitions(project, SURVEY)?
        .into_iter()
        .map(|d| {
            serde_json::from_str(&d.body)
                .map_err(|e| ApiError::Internal(format!("saved survey {}: {e}", d.name)))
        })
        .collect()
}

fn find(app: &AppState, project: &str, id: &str) -> Result<SurveyDef, ApiError> {
    load(app, project)?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("no survey {id}")))
}

/// The link token: HMAC-SHA256 under the server's link key of project, survey, person and expiry.
/// It names the person, so a link cannot answer for anyone else.
pub fn link_token(key: &str, project: &str, survey: &str, person: &str, expires_ms: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("{project}\n{survey}\n{person}\n{expires_ms}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `/s/{project}/{survey}?p=…&e=…&t=…` for one person, valid until `expires_ms`.
pub fn signed_link(
    meta: &itinera_meta::Meta,
    project: &str,
    survey: &str,
    person: &str,
    expires_ms: i64,
) -> Result<String, ApiError> {
    let key = meta.secret("survey-links")?;
    let t = link_token(&key, project, survey, person, expires_ms);
    Ok(format!(
        "/s/{project}/{survey}?p={}&e={expires_ms}&t={t}",
        url_encode(person)
    ))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[derive(Debug, Deserialize)]
pub struct LinkParams {
    p: String,
    e: i64,
    t: String,
    #[serde(default)]
    lang: Option<String>,
}

/// Checks a link's token and expiry (constant-time comparison).
fn check_link(app: &AppState, project: &str, survey: &str, p: &LinkParams) -> Result<(), ApiError> {
    let key = app.data.meta.lock().secret("survey-links")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("{project}\n{survey}\n{}\n{}", p.p, p.e).as_bytes());
    let given = hex::decode(&p.t).map_err(|_| ApiError::Forbidden("invalid survey link".into()))?;
    mac.verify_slice(&given)
        .map_err(|_| ApiError::Forbidden("invalid survey link".into()))?;
    if p.e < crate::population::now_ms() {
        return Err(ApiError::Forbidden("this survey link has expired".into()));
    }
    Ok(())
}

fn lang_of(params: Option<&str>, headers: &HeaderMap) -> String {
    params
        .map(str::to_string)
        .or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "en".into())
}

fn labels(lang: &str) -> (&'static str, &'static str, &'static str, &'static str) {
    if lang.to_ascii_lowercase().starts_with("de") {
        (
            "Absenden",
            "Danke für Ihre Antwort!",
            "überhaupt nicht",
            "äußerst",
        )
    } else {
        (
            "Send",
            "Thank you for your answer!",
            "not at all",
            "extremely",
        )
    }
}

fn page(lang: &str, title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}}fieldset{{border:0;padding:0}}.scale{{display:flex;flex-wrap:wrap;gap:.25rem}}.scale label{{display:inline-flex;flex-direction:column;align-items:center;min-width:2.5rem;padding:.4rem;border:1px solid #888;border-radius:.3rem;cursor:pointer}}.scale input:focus-visible+span{{outline:2px solid #0b57d0}}textarea{{width:100%;min-height:6rem}}button{{margin-top:1rem;padding:.5rem 1.2rem;font-size:1rem}}</style></head><body>{body}</body></html>"#,
        lang = escape(lang),
        title = escape(title),
    ))
}

/// `GET /s/{project}/{survey}`: the survey form for the person the link names.
pub async fn show(
    State(app): State<Arc<AppState>>,
    Path((project, survey)): Path<(String, String)>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<LinkParams>,
) -> Result<Response, ApiError> {
    app.rate_limit_at(
        &format!("survey-ip:{}", remote.ip()),
        app.config.survey_rate_per_minute,
    )?;
    check_link(&app, &project, &survey, &params)?;
    let def = find(&app, &project, &survey)?;
    let lang = lang_of(params.lang.as_deref(), &headers);
    let (send, _, low, high) = labels(&lang);
    let question = SurveyDef::text(&def.question, &lang).unwrap_or("");
    let [lo, hi] = def.scale();
    let mut options = String::new();
    for v in lo..=hi {
        options.push_str(&format!(
            r#"<label><input type="radio" name="score" value="{v}" required><span>{v}</span></label>"#
        ));
    }
    let follow_up = SurveyDef::text(&def.follow_up, &lang)
        .map(|f| {
            format!(
                r#"<p><label for="comment">{}</label></p><textarea id="comment" name="comment" maxlength="{MAX_COMMENT}"></textarea>"#,
                escape(f)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"<form method="post"><fieldset><legend><h1>{q}</h1></legend><p aria-hidden="true">{lo} = {low} · {hi} = {high}</p><div class="scale" role="radiogroup">{options}</div></fieldset>{follow_up}<input type="hidden" name="p" value="{p}"><input type="hidden" name="e" value="{e}"><input type="hidden" name="t" value="{t}"><input type="hidden" name="lang" value="{lang}"><button type="submit">{send}</button></form>"#,
        q = escape(question),
        low = escape(low),
        high = escape(high),
        p = escape(&params.p),
        e = params.e,
        t = escape(&params.t),
        lang = escape(&lang),
    );
    Ok(page(&lang, question, &body).into_response())
}

#[derive(Debug, Deserialize)]
pub struct AnswerForm {
    p: String,
    e: i64,
    t: String,
    score: String,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

/// `POST /s/{project}/{survey}`: stores the answer as a `Survey Responded` event of the person
/// the link names (once per link: answering again replaces nothing and is acknowledged).
pub async fn answer(
    State(app): State<Arc<AppState>>,
    Path((project, survey)): Path<(String, String)>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<AnswerForm>,
) -> Result<Response, ApiError> {
    let per_minute = app.config.survey_rate_per_minute;
    app.rate_limit_at(&format!("survey-ip:{}", remote.ip()), per_minute)?;
    app.rate_limit_at(&format!("survey-person:{project}:{}", f.p), per_minute)?;
    let link = LinkParams {
        p: f.p.clone(),
        e: f.e,
        t: f.t.clone(),
        lang: f.lang.clone(),
    };
    check_link(&app, &project, &survey, &link)?;
    let def = find(&app, &project, &survey)?;
    let [lo, hi] = def.scale();
    let score: u32 = f
        .score
        .trim()
        .parse()
        .ok()
        .filter(|s| (lo..=hi).contains(s))
        .ok_or_else(|| ApiError::BadRequest {
            field: "score".into(),
            reason: format!("a whole number from {lo} to {hi}"),
        })?;
    let comment = f
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.len() > MAX_COMMENT) {
        return Err(ApiError::TooLarge(format!(
            "comment: at most {MAX_COMMENT} bytes"
        )));
    }
    let kind = match def.kind {
        ScoreKind::Nps => "nps",
        ScoreKind::Csat => "csat",
        ScoreKind::Ces => "ces",
    };
    let mut props = json!({"survey_id": survey, "survey_kind": kind, "score": score});
    if let Some(c) = comment {
        props["comment"] = json!(c);
    }
    let message = json!({
        "type": "track", "userId": f.p, "event": "Survey Responded",
        "messageId": format!("survey-link-{}", &f.t[..f.t.len().min(32)]),
        "properties": props,
        "context": {"library": {"name": "itinera-survey-page"}, "channel": "survey"},
    });
    let store = app.data.store(&project)?;
    let opts = NormalizeOptions {
        received_at_ms: crate::population::now_ms(),
        max_future_ms: app.config.max_future_hours * 3_600_000,
        ip_policy: app.config.ip_policy,
        remote_ip: None,
    };
    let tp = ingest::parse_one(
        &message.to_string(),
        Some(MessageType::Track),
        &opts,
        &app.config.channels,
        &mut || new_message_id(rand::random()),
    )
    .map_err(|e| ApiError::BadRequest {
        field: e.field,
        reason: e.reason,
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    store.append_async(vec![tp], move |r| {
        let _ = tx.send(r);
    });
    rx.await
        .map_err(|_| ApiError::Unavailable("the store closed".into()))??;
    let lang = lang_of(f.lang.as_deref(), &headers);
    let (_, thanks, _, _) = labels(&lang);
    Ok((
        StatusCode::OK,
        page(&lang, thanks, &format!("<h1>{}</h1>", escape(thanks))),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct WriteKeyParam {
    #[serde(rename = "writeKey")]
    write_key: String,
}

/// `GET /v1/surveys/{id}?writeKey=…`: what the widget needs (write keys are public in pages).
pub async fn public_definition(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(k): Query<WriteKeyParam>,
) -> Result<axum::Json<SurveyDef>, ApiError> {
    let project = app.authenticate(&k.write_key, itinera_meta::KeyKind::Write)?;
    app.rate_limit(&k.write_key)?;
    Ok(axum::Json(find(&app, &project, &id)?))
}

/// `GET /widget.js`: the embeddable survey widget (no framework, a few KB).
pub async fn widget() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../assets/widget.js"),
    )
}

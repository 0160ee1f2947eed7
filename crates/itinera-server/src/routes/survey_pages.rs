//! The public survey surfaces: the hosted survey page a signed link opens (for e-mail and SMS),
//! and the public definition and script the embeddable widget uses. Rate-limited per client
//! address and per person; the survey logic is the application layer's.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use itinera_app::surveys::{self, LinkParams, SurveyDef, MAX_COMMENT};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    // the widget and its survey are fetched by web pages from their own origin
    let widget = Router::new()
        .route("/v1/surveys/{id}", get(public_definition))
        .route("/widget.js", get(widget))
        .layer(super::tracking::cors());
    Router::new()
        .route("/s/{project}/{survey}", get(show).post(answer))
        .merge(widget)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
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
async fn show(
    State(app): State<Arc<AppState>>,
    Path((project, survey)): Path<(String, String)>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<LinkParams>,
) -> Result<Response, ApiError> {
    app.survey_limit
        .check(&format!("survey-ip:{}", remote.ip()))?;
    let def = {
        let meta = app.app.meta();
        surveys::check_link(&meta, &project, &survey, &params)?;
        surveys::find(&meta, &project, &survey)?
    };
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
async fn answer(
    State(app): State<Arc<AppState>>,
    Path((project, survey)): Path<(String, String)>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<AnswerForm>,
) -> Result<Response, ApiError> {
    app.survey_limit
        .check(&format!("survey-ip:{}", remote.ip()))?;
    let link = LinkParams {
        p: f.p.clone(),
        e: f.e,
        t: f.t.clone(),
        lang: f.lang.clone(),
    };
    // a person's limit counts only answers through a genuine link of theirs: forged ones must
    // not use it up before the real answer arrives
    surveys::check_link(&app.app.meta(), &project, &survey, &link)?;
    app.survey_limit
        .check(&format!("survey-person:{project}:{}", f.p))?;
    surveys::answer(
        &app.app,
        &project,
        &survey,
        &link,
        &f.score,
        f.comment.as_deref(),
    )
    .await?;
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
async fn public_definition(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(k): Query<WriteKeyParam>,
) -> Result<axum::Json<SurveyDef>, ApiError> {
    let project = app.authenticate(&k.write_key, itinera_meta::KeyKind::Write)?;
    app.write_limit.check(&k.write_key)?;
    Ok(axum::Json(surveys::find(&app.app.meta(), &project, &id)?))
}

/// `GET /widget.js`: the embeddable survey widget (no framework, a few KB).
async fn widget() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../../assets/widget.js"),
    )
}

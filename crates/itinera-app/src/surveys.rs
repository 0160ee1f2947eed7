//! Surveys: definitions (kind, scale, question per language, follow-up, trigger), signed links
//! that let one person answer (for e-mail and SMS), and answers stored as `Survey Responded`
//! events like any other. The hosted page and the widget's script are the server's.

use crate::backend::Appended;
use crate::definitions;
use crate::error::{AppError, Result};
use crate::App;
use hmac::{Hmac, Mac};
use itinera_core::clock::now_ms;
use itinera_core::MessageType;
use itinera_engine::scores::ScoreKind;
use itinera_engine::{EventSelector, Span};
use itinera_meta::{DefinitionKind, Meta};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use std::collections::BTreeMap;

/// Longest open answer kept.
pub const MAX_COMMENT: usize = 2_000;

/// What stays as it is in a link's query value (RFC 3986 unreserved characters).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// When the widget asks: after a touchpoint, with a delay, for a share of persons, at most once
/// per throttle period per person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

    pub fn validate(&self) -> Result<()> {
        let bad = AppError::invalid;
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
    pub fn text<'a>(map: &'a BTreeMap<String, String>, lang: &str) -> Option<&'a str> {
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

/// The project's surveys.
pub fn load(meta: &Meta, project: &str) -> Result<Vec<SurveyDef>> {
    definitions::load(meta, project, DefinitionKind::Survey)
}

/// One survey of the project.
pub fn find(meta: &Meta, project: &str, id: &str) -> Result<SurveyDef> {
    load(meta, project)?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| AppError::NotFound(format!("no survey {id}")))
}

/// Validates and saves a survey definition.
pub fn save(meta: &Meta, project: &str, def: &SurveyDef) -> Result<()> {
    definitions::valid_name(&def.id)?;
    def.validate()?;
    definitions::save(meta, project, DefinitionKind::Survey, &def.id, def, 0)
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
    meta: &Meta,
    project: &str,
    survey: &str,
    person: &str,
    expires_ms: i64,
) -> Result<String> {
    let key = meta.secret("survey-links")?;
    let t = link_token(&key, project, survey, person, expires_ms);
    Ok(format!(
        "/s/{project}/{survey}?p={}&e={expires_ms}&t={t}",
        utf8_percent_encode(person, QUERY_VALUE)
    ))
}

/// What a signed link carries.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct LinkParams {
    pub p: String,
    pub e: i64,
    pub t: String,
    #[serde(default)]
    pub lang: Option<String>,
}

/// Checks a link's token and expiry (constant-time comparison). The token must be in the one
/// form links are minted in (64 lower-case hex digits), so that one link cannot be answered
/// again under another spelling of its token.
pub fn check_link(meta: &Meta, project: &str, survey: &str, p: &LinkParams) -> Result<()> {
    let canonical = p.t.len() == 64
        && p.t
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !canonical {
        return Err(AppError::Forbidden("invalid survey link".into()));
    }
    let key = meta.secret("survey-links")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("{project}\n{survey}\n{}\n{}", p.p, p.e).as_bytes());
    let given = hex::decode(&p.t).map_err(|_| AppError::Forbidden("invalid survey link".into()))?;
    mac.verify_slice(&given)
        .map_err(|_| AppError::Forbidden("invalid survey link".into()))?;
    if p.e < now_ms() {
        return Err(AppError::Forbidden("this survey link has expired".into()));
    }
    Ok(())
}

/// A signed survey link for a person, valid for `days`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignedLink {
    pub path: String,
    pub expires_ms: i64,
}

/// Mints a link for `person` to answer survey `id`, valid for 1-365 days.
pub fn mint_link(
    app: &App,
    project: &str,
    id: &str,
    person: &str,
    days: u32,
) -> Result<SignedLink> {
    let meta = app.meta();
    find(&meta, project, id)?;
    if person.is_empty() || person.len() > 200 || days == 0 || days > 365 {
        return Err(AppError::invalid(
            "person",
            "a person id (1-200 bytes) and 1-365 days",
        ));
    }
    let expires_ms = now_ms() + days as i64 * 86_400_000;
    let path = signed_link(&meta, project, id, person, expires_ms)?;
    Ok(SignedLink { path, expires_ms })
}

/// Stores an answer given through a signed link as a `Survey Responded` event of the person the
/// link names (once per link: answering again stores nothing new and is acknowledged).
pub async fn answer(
    app: &App,
    project: &str,
    survey: &str,
    link: &LinkParams,
    score: &str,
    comment: Option<&str>,
) -> Result<Appended> {
    let def = {
        let meta = app.meta();
        check_link(&meta, project, survey, link)?;
        find(&meta, project, survey)?
    };
    let [lo, hi] = def.scale();
    let score: u32 = score
        .trim()
        .parse()
        .ok()
        .filter(|s| (lo..=hi).contains(s))
        .ok_or_else(|| AppError::invalid("score", format!("a whole number from {lo} to {hi}")))?;
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.len() > MAX_COMMENT) {
        return Err(AppError::TooLarge(format!(
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
        "type": "track", "userId": link.p, "event": "Survey Responded",
        "messageId": format!("survey-link-{}", &link.t[..link.t.len().min(32)]),
        "properties": props,
        "context": {"library": {"name": "itinera-survey-page"}, "channel": "survey"},
    });
    app.append_message(project, &message, MessageType::Track)
        .await
}

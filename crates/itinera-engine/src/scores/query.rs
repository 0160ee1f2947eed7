use crate::segments::SegmentDef;
use crate::selector::EventSelector;
use crate::stages::ModelRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    Nps,
    Csat,
    Ces,
}

impl ScoreKind {
    pub(super) fn name(self) -> &'static str {
        match self {
            ScoreKind::Nps => "nps",
            ScoreKind::Csat => "csat",
            ScoreKind::Ces => "ces",
        }
    }
}

/// What a score is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoreBy {
    /// The stage the person was in when answering: the furthest stage of the model they had
    /// reached by then (a customer who browses again is still a customer).
    Stage,
    /// The last touchpoint before the answer.
    Touchpoint,
    /// The channel of that touchpoint.
    Channel,
    /// The person's B2B account.
    Account,
    /// The person's persona (first matching rule of `personas`, judged on their whole history).
    Persona,
    /// The survey (`properties.survey_id`).
    Survey,
    /// The step of `steps` the person did last before answering (a journey map's steps): the
    /// first step whose selector matches the latest touchpoint before the answer that any step
    /// matches.
    Step,
    Day,
    Week,
    Month,
}

/// One step of `by: step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreStep {
    #[serde(rename = "match")]
    pub selector: EventSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ScoreStep {
    pub(super) fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => self.selector.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoresQuery {
    pub kind: ScoreKind,
    /// Survey answers.
    #[serde(default = "default_response")]
    pub response: EventSelector,
    #[serde(default = "default_score_property")]
    pub score_property: String,
    /// The property naming the kind of an answer (`nps`, `csat`, `ces`).
    #[serde(default = "default_kind_property")]
    pub kind_property: String,
    #[serde(default = "default_survey_property")]
    pub survey_property: String,
    /// Only answers to this survey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survey_id: Option<String>,
    /// The scale `[min, max]`: NPS is 0–10, CES 1–7, CSAT 1–5 unless declared otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<[f64; 2]>,
    /// CES only: true when the scale's low end means easy (the default is 7 = strongly agree
    /// that it was easy).
    #[serde(default)]
    pub low_is_good: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<ScoreBy>,
    /// The stage model for `by: stage`.
    #[serde(default = "default_model")]
    pub model: ModelRef,
    /// The steps for `by: step`, each a selector with an optional label (the selector's text
    /// when absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ScoreStep>,
    /// The personas for `by: persona`, in order (the server and CLI fill in the saved ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub personas: Vec<SegmentDef>,
    /// Two-sided confidence level of the intervals.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// IANA time zone (`Europe/Berlin`) for periods, following daylight saving time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
}

pub(super) fn default_response() -> EventSelector {
    EventSelector::event("Survey Responded")
}
pub(super) fn default_score_property() -> String {
    "properties.score".into()
}
pub(super) fn default_kind_property() -> String {
    "properties.survey_kind".into()
}
pub(super) fn default_survey_property() -> String {
    "properties.survey_id".into()
}
pub(super) fn default_model() -> ModelRef {
    ModelRef::Builtin("customer-journey".into())
}
pub(super) fn default_confidence() -> f64 {
    0.95
}

impl ScoresQuery {
    pub fn new(kind: ScoreKind) -> ScoresQuery {
        serde_json::from_value(serde_json::json!({ "kind": kind })).expect("defaults")
    }

    pub(super) fn scale(&self) -> [f64; 2] {
        self.scale.unwrap_or(match self.kind {
            ScoreKind::Nps => [0.0, 10.0],
            ScoreKind::Csat => [1.0, 5.0],
            ScoreKind::Ces => [1.0, 7.0],
        })
    }

    /// Whether a score counts as good: promoter (9–10), top-2-box, or "easy" (5–7 on 1–7).
    pub(super) fn good(&self, s: f64) -> bool {
        let [min, max] = self.scale();
        match self.kind {
            ScoreKind::Nps => s >= 9.0,
            ScoreKind::Csat => s >= max - 1.0,
            ScoreKind::Ces if self.low_is_good => s <= min + 2.0,
            ScoreKind::Ces => s >= max - 2.0,
        }
    }
}

/// NPS with its parts and interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NpsFigures {
    pub nps: f64,
    pub promoters: u64,
    pub passives: u64,
    pub detractors: u64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Share of good answers (CSAT top-2-box, CES 5–7) with its Wilson interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShareFigures {
    pub share: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScoreRow {
    /// The group (absent for the overall row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub n: u64,
    pub mean: f64,
    /// Score → answers.
    pub distribution: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nps: Option<NpsFigures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good_share: Option<ShareFigures>,
    /// −2…+2: the mean's place on the scale (direction-adjusted for CES).
    pub emotion: f64,
    /// The mean's confidence interval on the emotion scale (at `confidence`; the whole scale
    /// for a single answer); absent without answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emotion_band: Option<[f64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScoresResult {
    pub kind: ScoreKind,
    pub scale: [f64; 2],
    pub confidence: f64,
    pub overall: ScoreRow,
    pub groups: Vec<ScoreRow>,
    /// Answers outside the scale or without a numeric score (not counted).
    pub rejected: u64,
    pub definition: String,
}

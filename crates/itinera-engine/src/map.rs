//! The journey map as data: a document a team edits (steps, lanes, cards, typed emotion curves,
//! decisions on flagged pain points) over a stage model whose live figures come from the
//! analyses (`stages`, `scores`). The document only holds what people type; every measured
//! number is computed when the map is shown, so the map cannot go stale.
//!
//! The exported form ([`MapExport`]) is documented in `docs/map-schema.json`; importing an
//! export gives the same map.

use crate::error::{EngineError, Result};
use crate::selector::EventSelector;
use crate::stages::StageModel;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// The format name of an exported map.
pub const MAP_FORMAT: &str = "itinera-map/1";

/// Bounds that keep a map a document people read (and a request the server can check).
pub const MAX_CARDS: usize = 2_000;
pub const MAX_STEPS: usize = 200;
pub const MAX_LANES: usize = 40;
pub const MAX_PERSONAS: usize = 5;
pub const MAX_TEXT: usize = 4_000;

/// A journey map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JourneyMap {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// The stage model: a built-in name (`customer-journey`, …) or a saved model's name.
    pub model: String,
    /// Saved personas the map is about (at most five); figures and curves are shown per persona.
    #[serde(default)]
    pub personas: Vec<String>,
    /// Steps within stages, each bound to the touchpoints that make it.
    #[serde(default)]
    pub steps: Vec<MapStep>,
    /// The rows of the map, in order.
    #[serde(default)]
    pub lanes: Vec<Lane>,
    #[serde(default)]
    pub cards: Vec<Card>,
    /// The emotion curves typed in by the team: stage name → -2 (very negative) … +2.
    #[serde(default)]
    pub emotions: TypedEmotions,
    /// The team's decisions on pain points the data flagged.
    #[serde(default)]
    pub flags: Vec<FlagDecision>,
    /// Measured scores with fewer answers than this are not drawn.
    #[serde(default = "default_min_answers")]
    pub min_answers: u64,
}

fn default_min_answers() -> u64 {
    10
}

/// A step within a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MapStep {
    pub id: String,
    pub stage: String,
    pub name: String,
    /// The touchpoints that make this step.
    pub selector: EventSelector,
}

/// What a lane holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LaneKind {
    /// Measured: the top touchpoints and channels of each stage.
    Touchpoints,
    Actions,
    Thoughts,
    /// The emotion curve: typed as-is and to-be, and measured from survey answers.
    Emotions,
    PainPoints,
    Opportunities,
    /// Measured: the stage's figures (entering, conversion, time, scores).
    Metrics,
    Backstage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Lane {
    pub id: String,
    pub kind: LaneKind,
    pub title: String,
}

/// Which journey a card describes: as it is, or as it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    #[default]
    AsIs,
    ToBe,
}

/// The state of an opportunity (or any card that is work to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Open,
    InProgress,
    Done,
    Dropped,
}

/// A card in a lane, in a stage (and optionally a step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Card {
    pub id: String,
    pub lane: String,
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default)]
    pub variant: Variant,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CardStatus>,
    /// Due date (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// The flagged pain point this card was accepted from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_flag: Option<String>,
}

/// Typed emotion curves per stage, -2 … +2.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypedEmotions {
    #[serde(default)]
    pub as_is: BTreeMap<String, f64>,
    #[serde(default)]
    pub to_be: BTreeMap<String, f64>,
}

/// A decision on a pain point the data flagged (`key` names the flag, e.g.
/// `drop-off:Consideration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagDecision {
    pub key: String,
    pub decision: FlagOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlagOutcome {
    Accepted,
    Dismissed,
}

/// A map as exported and imported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MapExport {
    /// Always `itinera-map/1`.
    pub format: String,
    pub name: String,
    pub map: JourneyMap,
}

/// The lanes of a new map, in the order maps are drawn.
pub const DEFAULT_LANES: [(LaneKind, &str); 8] = [
    (LaneKind::Metrics, "Metrics"),
    (LaneKind::Touchpoints, "Touchpoints and channels"),
    (LaneKind::Actions, "Customer actions"),
    (LaneKind::Thoughts, "Thoughts"),
    (LaneKind::Emotions, "Emotion curve"),
    (LaneKind::PainPoints, "Pain points"),
    (LaneKind::Opportunities, "Opportunities"),
    (LaneKind::Backstage, "Backstage / owner"),
];

impl JourneyMap {
    /// A new map over a model: every lane, no cards yet.
    pub fn blank(model_name: &str, model: &StageModel) -> JourneyMap {
        JourneyMap {
            title: format!("{} map", model.name),
            description: model.description.clone(),
            model: model_name.to_string(),
            personas: vec![],
            steps: vec![],
            lanes: DEFAULT_LANES
                .iter()
                .map(|(kind, title)| Lane {
                    id: serde_json::to_value(kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    kind: *kind,
                    title: (*title).into(),
                })
                .collect(),
            cards: vec![],
            emotions: TypedEmotions::default(),
            flags: vec![],
            min_answers: default_min_answers(),
        }
    }

    /// Checks the document against its model: every reference resolves, ids are unique, values
    /// are in range, sizes are bounded. Errors name the field.
    pub fn validate(&self, model: &StageModel) -> Result<()> {
        let stages: HashSet<&str> = model.stages.iter().map(|s| s.name.as_str()).collect();
        let stage_ok = |field: String, s: &str| -> Result<()> {
            if stages.contains(s) {
                Ok(())
            } else {
                Err(EngineError::invalid(
                    field,
                    format!(
                        "no stage `{s}` in model `{}` (stages: {})",
                        model.name,
                        model
                            .stages
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        };
        text("title", &self.title, true)?;
        text("description", &self.description, false)?;
        if self.personas.len() > MAX_PERSONAS {
            return Err(EngineError::invalid(
                "personas",
                format!("at most {MAX_PERSONAS}"),
            ));
        }
        bounded("steps", self.steps.len(), MAX_STEPS)?;
        bounded("lanes", self.lanes.len(), MAX_LANES)?;
        bounded("cards", self.cards.len(), MAX_CARDS)?;
        let mut step_ids = HashSet::new();
        for (i, s) in self.steps.iter().enumerate() {
            id(&format!("steps[{i}].id"), &s.id, &mut step_ids)?;
            stage_ok(format!("steps[{i}].stage"), &s.stage)?;
            text(&format!("steps[{i}].name"), &s.name, true)?;
        }
        let mut lane_ids = HashSet::new();
        for (i, l) in self.lanes.iter().enumerate() {
            id(&format!("lanes[{i}].id"), &l.id, &mut lane_ids)?;
            text(&format!("lanes[{i}].title"), &l.title, true)?;
        }
        let mut card_ids = HashSet::new();
        for (i, c) in self.cards.iter().enumerate() {
            id(&format!("cards[{i}].id"), &c.id, &mut card_ids)?;
            if !lane_ids.contains(c.lane.as_str()) {
                return Err(EngineError::invalid(
                    format!("cards[{i}].lane"),
                    format!("no lane `{}`", c.lane),
                ));
            }
            stage_ok(format!("cards[{i}].stage"), &c.stage)?;
            if let Some(step) = &c.step {
                let known = self
                    .steps
                    .iter()
                    .any(|s| s.id == *step && s.stage == c.stage);
                if !known {
                    return Err(EngineError::invalid(
                        format!("cards[{i}].step"),
                        format!("no step `{step}` in stage `{}`", c.stage),
                    ));
                }
            }
            text(&format!("cards[{i}].text"), &c.text, true)?;
            if let Some(due) = &c.due {
                if chrono_like_date(due).is_none() {
                    return Err(EngineError::invalid(
                        format!("cards[{i}].due"),
                        "use YYYY-MM-DD",
                    ));
                }
            }
        }
        for (curve, values) in [
            ("as_is", &self.emotions.as_is),
            ("to_be", &self.emotions.to_be),
        ] {
            for (stage, v) in values {
                stage_ok(format!("emotions.{curve}"), stage)?;
                if !(-2.0..=2.0).contains(v) {
                    return Err(EngineError::invalid(
                        format!("emotions.{curve}.{stage}"),
                        format!("{v} is outside -2 … +2"),
                    ));
                }
            }
        }
        let mut flags = HashSet::new();
        for (i, f) in self.flags.iter().enumerate() {
            id(&format!("flags[{i}].key"), &f.key, &mut flags)?;
        }
        Ok(())
    }
}

fn bounded(field: &str, n: usize, max: usize) -> Result<()> {
    if n > max {
        return Err(EngineError::invalid(
            field,
            format!("{n} given, at most {max}"),
        ));
    }
    Ok(())
}

fn text(field: &str, s: &str, required: bool) -> Result<()> {
    if required && s.trim().is_empty() {
        return Err(EngineError::invalid(field, "must not be empty"));
    }
    if s.chars().count() > MAX_TEXT {
        return Err(EngineError::invalid(
            field,
            format!("at most {MAX_TEXT} characters"),
        ));
    }
    Ok(())
}

fn id<'a>(field: &str, v: &'a str, seen: &mut HashSet<&'a str>) -> Result<()> {
    if v.is_empty() || v.len() > 200 {
        return Err(EngineError::invalid(field, "1-200 characters"));
    }
    if !seen.insert(v) {
        return Err(EngineError::invalid(field, format!("`{v}` is used twice")));
    }
    Ok(())
}

/// `YYYY-MM-DD` with a real month and day.
fn chrono_like_date(s: &str) -> Option<(i32, u32, u32)> {
    let mut it = s.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    let real = crate::calendar::civil_from_days(crate::calendar::days_from_civil(y, m, d));
    (s.len() == 10 && real == (y, m, d)).then_some((y as i32, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> StageModel {
        StageModel::builtin("customer-journey").unwrap()
    }

    #[test]
    fn a_blank_map_validates_and_round_trips() {
        let m = JourneyMap::blank("customer-journey", &model());
        m.validate(&model()).unwrap();
        let back: JourneyMap = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(m.lanes.len(), 8);
        assert_eq!(m.lanes[4].id, "emotions");
    }

    #[test]
    fn references_ranges_and_ids_are_checked_by_field() {
        let mut m = JourneyMap::blank("customer-journey", &model());
        m.cards.push(Card {
            id: "c1".into(),
            lane: "thoughts".into(),
            stage: "Decisoin".into(),
            step: None,
            variant: Variant::AsIs,
            text: "Is it worth it?".into(),
            owner: None,
            status: None,
            due: None,
            from_flag: None,
        });
        let e = m.validate(&model()).unwrap_err().to_string();
        assert!(e.contains("cards[0].stage: no stage `Decisoin`"), "{e}");
        m.cards[0].stage = "Decision".into();
        m.validate(&model()).unwrap();
        m.cards[0].due = Some("2026-02-30".into());
        assert!(m
            .validate(&model())
            .unwrap_err()
            .to_string()
            .contains("cards[0].due"));
        m.cards[0].due = None;
        m.cards.push(m.cards[0].clone());
        assert!(m
            .validate(&model())
            .unwrap_err()
            .to_string()
            .contains("used twice"));
        m.cards.pop();
        m.emotions.as_is.insert("Awareness".into(), 3.0);
        assert!(m
            .validate(&model())
            .unwrap_err()
            .to_string()
            .contains("emotions.as_is.Awareness"));
        let unknown =
            serde_json::from_str::<JourneyMap>(r#"{"title":"t","model":"aida","lanez":[]}"#);
        assert!(unknown.unwrap_err().to_string().contains("lanez"));
    }
}

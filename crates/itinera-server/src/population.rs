//! Whom an analysis covers: everyone, one of the project's saved segments, or one of its
//! personas. Definitions live in the metadata database as JSON; they are compiled against the
//! store's dictionaries for each query.

use crate::error::ApiError;
use crate::DataDir;
use itinera_engine::segments::{Filter, SegmentDef};
use itinera_engine::Vocabulary;
use itinera_meta::Meta;
use serde::{Deserialize, Serialize};

/// Definition kinds in the metadata database.
pub const SEGMENT: &str = "segment";
pub const PERSONA: &str = "persona";

/// `?segment=NAME` or `?persona=NAME` (or neither: everyone).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
}

/// The saved definitions of `kind`, in order.
pub fn load(meta: &Meta, project: &str, kind: &str) -> Result<Vec<SegmentDef>, ApiError> {
    meta.definitions(project, kind)?
        .into_iter()
        .map(|d| {
            serde_json::from_str(&d.body)
                .map_err(|e| ApiError::Internal(format!("saved {kind} {}: {e}", d.name)))
        })
        .collect()
}

/// Milliseconds since the epoch: the as-of time of "in the last D days".
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Population {
    pub fn is_everyone(&self) -> bool {
        self.segment.is_none() && self.persona.is_none()
    }

    /// The filter for this population, compiled against `vocab`.
    pub fn filter(
        &self,
        data: &DataDir,
        project: &str,
        vocab: &dyn Vocabulary,
    ) -> Result<Filter, ApiError> {
        let bad = |field: &str, reason: String| ApiError::BadRequest {
            field: field.into(),
            reason,
        };
        let engine = |e: itinera_engine::EngineError| bad("rule", e.to_string());
        match (&self.segment, &self.persona) {
            (None, None) => Ok(Filter::All),
            (Some(_), Some(_)) => Err(bad(
                "segment",
                "give a segment or a persona, not both".into(),
            )),
            (Some(name), None) => {
                let defs = load(&data.meta.lock(), project, SEGMENT)?;
                let def = defs
                    .iter()
                    .find(|d| d.name == *name)
                    .ok_or_else(|| bad("segment", format!("no segment named `{name}`")))?;
                Filter::segment(def, vocab).map_err(engine)
            }
            (None, Some(name)) => {
                let defs = load(&data.meta.lock(), project, PERSONA)?;
                Filter::persona(&defs, name, vocab).map_err(|e| bad("persona", e.to_string()))
            }
        }
    }
}

/// Definition kind of saved stage models.
pub const STAGE_MODEL: &str = "stage_model";

/// A model reference with saved models resolved: a name that is not built in is looked up among
/// the project's saved models and given whole.
pub fn resolve_model(
    meta: &Meta,
    project: &str,
    model: &itinera_engine::stages::ModelRef,
) -> Result<itinera_engine::stages::ModelRef, ApiError> {
    use itinera_engine::stages::{ModelRef, StageModel};
    match model {
        ModelRef::Builtin(name) if !StageModel::BUILTIN.contains(&name.as_str()) => {
            let saved = meta
                .definitions(project, STAGE_MODEL)?
                .into_iter()
                .find(|d| d.name == *name)
                .ok_or_else(|| ApiError::BadRequest {
                    field: "model".into(),
                    reason: format!(
                        "no built-in or saved model `{name}` (built-in: {})",
                        StageModel::BUILTIN.join(", ")
                    ),
                })?;
            let m: StageModel = serde_json::from_str(&saved.body)
                .map_err(|e| ApiError::Internal(format!("saved model {name}: {e}")))?;
            Ok(ModelRef::Inline(m))
        }
        other => Ok(other.clone()),
    }
}

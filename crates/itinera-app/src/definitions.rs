//! A project's saved definitions (segments, personas, stage models, surveys, alert rules): names,
//! loading, saving after validation, deleting, and resolving model names.

use crate::error::{AppError, Result};
use itinera_engine::segments::{SegmentDef, SegmentRule};
use itinera_engine::stages::{ModelRef, StageModel};
use itinera_meta::{DefinitionKind, Meta};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Names are path segments and CLI arguments: keep them plain.
pub fn valid_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            "name",
            format!("`{name}`: use 1-100 letters, digits, spaces, '-', '_' or '.'"),
        ))
    }
}

/// The saved definitions of `kind`, in order, decoded.
pub fn load<T: DeserializeOwned>(
    meta: &Meta,
    project: &str,
    kind: DefinitionKind,
) -> Result<Vec<T>> {
    meta.definitions(project, kind)?
        .into_iter()
        .map(|d| {
            serde_json::from_str(&d.body)
                .map_err(|e| AppError::Internal(format!("saved {kind} {}: {e}", d.name)))
        })
        .collect()
}

/// The saved segments or personas, in order.
pub fn load_segments(meta: &Meta, project: &str, kind: DefinitionKind) -> Result<Vec<SegmentDef>> {
    load(meta, project, kind)
}

/// Saves `body` (already validated by the caller) as the definition `name` of `kind`.
pub fn save<T: serde::Serialize>(
    meta: &Meta,
    project: &str,
    kind: DefinitionKind,
    name: &str,
    body: &T,
    position: i64,
) -> Result<()> {
    valid_name(name)?;
    let json = serde_json::to_string(body).expect("definitions serialize");
    meta.put_definition(project, kind, name, &json, position)?;
    Ok(())
}

/// Deletes a definition; `NotFound` when there was none.
pub fn delete(meta: &Meta, project: &str, kind: DefinitionKind, name: &str) -> Result<()> {
    if meta.delete_definition(project, kind, name)? {
        Ok(())
    } else {
        Err(AppError::NotFound(format!("no {kind} named {name}")))
    }
}

/// A segment or persona as sent to `PUT /api/v1/{segments,personas}/{name}`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefinitionBody {
    #[serde(default)]
    pub description: Option<String>,
    pub rule: SegmentRule,
    /// Personas: the place in the ordered list (the first matching persona wins).
    #[serde(default)]
    pub position: i64,
}

/// A model reference with saved models resolved: a name that is not built in is looked up among
/// the project's saved models and given whole.
pub fn resolve_model(meta: &Meta, project: &str, model: &ModelRef) -> Result<ModelRef> {
    match model {
        ModelRef::Builtin(name) if !StageModel::BUILTIN.contains(&name.as_str()) => {
            let all = meta.definitions(project, DefinitionKind::StageModel)?;
            let known: Vec<&str> = StageModel::BUILTIN
                .iter()
                .copied()
                .chain(all.iter().map(|d| d.name.as_str()))
                .collect();
            let hint = itinera_engine::selector::did_you_mean(name, &known);
            let saved = all.iter().find(|d| d.name == *name).ok_or_else(|| {
                AppError::invalid(
                    "model",
                    format!(
                        "no built-in or saved model `{name}` (built-in: {}){hint}",
                        StageModel::BUILTIN.join(", ")
                    ),
                )
            })?;
            let m: StageModel = serde_json::from_str(&saved.body)
                .map_err(|e| AppError::Internal(format!("saved model {name}: {e}")))?;
            Ok(ModelRef::Inline(m))
        }
        other => Ok(other.clone()),
    }
}

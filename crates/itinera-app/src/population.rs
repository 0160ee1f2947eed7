//! Whom an analysis covers: everyone, one of the project's saved segments, or one of its
//! personas. The faces name a population ([`Population`]); the application resolves the names to
//! their saved definitions ([`PopulationDef`]), which a backend compiles against its own data.

use crate::definitions;
use crate::error::{AppError, Result};
use itinera_engine::segments::{Filter, SegmentDef};
use itinera_engine::Vocabulary;
use itinera_meta::{DefinitionKind, Meta};
use serde::{Deserialize, Serialize};

/// `?segment=NAME` or `?persona=NAME` (or neither: everyone).
#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams,
)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Population {
    /// Only the persons in this saved segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Only the persons of this saved persona.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
}

/// A population with its definitions loaded: what a backend needs to select the persons.
#[derive(Debug, Clone, PartialEq)]
pub enum PopulationDef {
    Everyone,
    Segment(SegmentDef),
    /// All personas in order (a person is the first whose rule matches) and the one wanted
    /// (`(none)`: persons no persona matches).
    Persona {
        personas: Vec<SegmentDef>,
        name: String,
    },
    /// The persons of a segment who are of a persona.
    SegmentAndPersona {
        segment: SegmentDef,
        personas: Vec<SegmentDef>,
        name: String,
    },
}

impl Population {
    pub fn everyone() -> Population {
        Population::default()
    }

    pub fn is_everyone(&self) -> bool {
        self.segment.is_none() && self.persona.is_none()
    }

    /// Looks the names up among the project's saved segments and personas.
    pub fn resolve(&self, meta: &Meta, project: &str) -> Result<PopulationDef> {
        match (&self.segment, &self.persona) {
            (None, None) => Ok(PopulationDef::Everyone),
            (Some(segment), Some(persona)) => Ok(PopulationDef::SegmentAndPersona {
                segment: find_segment(meta, project, segment)?,
                personas: definitions::load_segments(meta, project, DefinitionKind::Persona)?,
                name: persona.clone(),
            }),
            (Some(name), None) => find_segment(meta, project, name).map(PopulationDef::Segment),
            (None, Some(name)) => Ok(PopulationDef::Persona {
                personas: definitions::load_segments(meta, project, DefinitionKind::Persona)?,
                name: name.clone(),
            }),
        }
    }
}

fn find_segment(meta: &Meta, project: &str, name: &str) -> Result<SegmentDef> {
    let saved = definitions::load_segments(meta, project, DefinitionKind::Segment)?;
    let names: Vec<&str> = saved.iter().map(|d| d.name.as_str()).collect();
    let hint = itinera_engine::selector::did_you_mean(name, &names);
    saved
        .iter()
        .find(|d| d.name == *name)
        .cloned()
        .ok_or_else(|| AppError::invalid("segment", format!("no segment named `{name}`{hint}")))
}

impl PopulationDef {
    /// The filter for this population, compiled against a backend's vocabulary.
    pub fn compile(&self, vocab: &dyn Vocabulary) -> Result<Filter> {
        match self {
            PopulationDef::Everyone => Ok(Filter::All),
            PopulationDef::Segment(def) => {
                Filter::segment(def, vocab).map_err(|e| AppError::invalid("rule", e.to_string()))
            }
            PopulationDef::Persona { personas, name } => Filter::persona(personas, name, vocab)
                .map_err(|e| AppError::invalid("persona", e.to_string())),
            PopulationDef::SegmentAndPersona {
                segment,
                personas,
                name,
            } => Ok(Filter::And(vec![
                PopulationDef::Segment(segment.clone()).compile(vocab)?,
                PopulationDef::Persona {
                    personas: personas.clone(),
                    name: name.clone(),
                }
                .compile(vocab)?,
            ])),
        }
    }
}

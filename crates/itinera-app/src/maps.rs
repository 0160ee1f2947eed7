//! Journey maps of a project: reading (a project without a saved map gets its default map over
//! the built-in customer-journey model), saving a validated document as a new version, listing
//! and restoring versions, exporting and importing. Shared by the server and the CLI.

use crate::definitions::{load, resolve_model, valid_name};
use crate::error::{AppError, Result};
use crate::{AnalysisRequest, App, Population};
use itinera_engine::map::{JourneyMap, MapExport, MAP_FORMAT};
use itinera_engine::scores::ScoreBy;
use itinera_engine::segments::SegmentDef;
use itinera_engine::selector::EventSelector;
use itinera_engine::stages::{ModelRef, StageModel};
use itinera_engine::Span;
use itinera_meta::{DefinitionKind, MapShare, MapVersion, Meta, SharedMap};
use serde::{Deserialize, Serialize};

/// The map `/` shows.
pub const DEFAULT_MAP: &str = "default";
/// The model of a project's default map until someone saves another.
pub const DEFAULT_MODEL: &str = "customer-journey";

/// A map as read: its document and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MapView {
    pub name: String,
    /// 0 for a default map that was never saved.
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    pub map: JourneyMap,
    /// The stage model the map is drawn over, resolved (built-in or saved).
    pub model: StageModel,
}

/// The longest a share link lives.
pub const MAX_SHARE: Span = Span(90 * 86_400_000);

/// A new share link: the link itself (its secret is in it, shown this once) and its record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewShare {
    pub url: String,
    pub share: MapShare,
}

/// A map in a listing.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MapSummary {
    pub name: String,
    pub title: String,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// The stage model a map names, resolved among the built-in and the project's saved models.
fn model_of(meta: &Meta, project: &str, map: &JourneyMap) -> Result<StageModel> {
    let r = resolve_model(meta, project, &ModelRef::Builtin(map.model.clone())).map_err(
        |e| match e {
            AppError::Invalid { reason, .. } => AppError::invalid("map.model", reason),
            other => other,
        },
    )?;
    Ok(r.resolve()?)
}

/// Steps typed as the command line's selector form (`Review Submitted|Referral Sent`,
/// `kind=page&channel=email`) are stored parsed, as structured selectors; a plain name stays an
/// event name.
fn with_parsed_selectors(map: &JourneyMap) -> Result<JourneyMap> {
    let mut map = map.clone();
    for (i, step) in map.steps.iter_mut().enumerate() {
        if let itinera_engine::EventSelector::Event(text) = &step.selector {
            if text.contains(['|', '&', '=', '~', '<', '>']) {
                step.selector = itinera_engine::EventSelector::parse(text).map_err(|e| {
                    AppError::invalid(format!("steps[{i}].selector"), e.to_string())
                })?;
            }
        }
    }
    Ok(map)
}

fn decode(name: &str, body: &str) -> Result<JourneyMap> {
    serde_json::from_str(body).map_err(|e| AppError::Internal(format!("saved map {name}: {e}")))
}

/// The lanes of a new map, as JSON (for documents built by hand, like the demo's).
pub fn default_lanes() -> serde_json::Value {
    let model = StageModel::builtin(DEFAULT_MODEL).expect("built in");
    serde_json::to_value(JourneyMap::blank(DEFAULT_MODEL, &model).lanes).expect("lanes serialize")
}

fn blank_default() -> JourneyMap {
    let model = StageModel::builtin(DEFAULT_MODEL).expect("built in");
    JourneyMap::blank(DEFAULT_MODEL, &model)
}

impl App {
    pub fn maps(&self, project: &str) -> Result<Vec<MapSummary>> {
        let meta = self.meta();
        let mut out: Vec<MapSummary> = meta
            .maps(project)?
            .into_iter()
            .map(|m| {
                let title = decode(&m.name, &m.body)
                    .map(|d| d.title)
                    .unwrap_or_default();
                MapSummary {
                    name: m.name,
                    title,
                    version: m.version,
                    updated_at: Some(m.updated_at),
                }
            })
            .collect();
        if !out.iter().any(|m| m.name == DEFAULT_MAP) {
            out.insert(
                0,
                MapSummary {
                    name: DEFAULT_MAP.into(),
                    title: blank_default().title,
                    version: 0,
                    updated_at: None,
                },
            );
        }
        Ok(out)
    }

    pub fn map(&self, project: &str, name: &str) -> Result<MapView> {
        let meta = self.meta();
        let (version, updated_at, updated_by, map) = match meta.map(project, name)? {
            Some(m) => (
                m.version,
                Some(m.updated_at),
                Some(m.updated_by),
                decode(name, &m.body)?,
            ),
            None if name == DEFAULT_MAP => (0, None, None, blank_default()),
            None => return Err(AppError::NotFound(format!("no map named {name}"))),
        };
        let model = model_of(&meta, project, &map)?;
        Ok(MapView {
            name: name.into(),
            version,
            updated_at,
            updated_by,
            map,
            model,
        })
    }

    /// Saves a new version after checking the document against its model and the project's
    /// personas. `base` is the version the editor started from; a later save by someone else
    /// refuses this one (`version` names the conflict) instead of overwriting it.
    pub fn save_map(
        &self,
        project: &str,
        name: &str,
        map: &JourneyMap,
        base: Option<i64>,
        by: &str,
        note: &str,
    ) -> Result<i64> {
        valid_name(name)?;
        let map = &with_parsed_selectors(map)?;
        let meta = self.meta();
        let model = model_of(&meta, project, map)?;
        map.validate(&model)?;
        let personas: Vec<SegmentDef> = load(&meta, project, DefinitionKind::Persona)?;
        for (i, p) in map.personas.iter().enumerate() {
            if !personas.iter().any(|d| d.name == *p) {
                return Err(AppError::invalid(
                    format!("map.personas[{i}]"),
                    format!(
                        "no saved persona `{p}` (saved: {})",
                        personas
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let body = serde_json::to_string(map).expect("maps serialize");
        meta.save_map(project, name, &body, base, by, note)
            .map_err(|e| match e {
                itinera_meta::MetaError::Stale => AppError::Conflict(format!(
                    "the map was saved by someone else after version {}: reload it and edit again",
                    base.unwrap_or(0)
                )),
                other => other.into(),
            })
    }

    pub fn map_versions(&self, project: &str, name: &str) -> Result<Vec<MapVersion>> {
        Ok(self.meta().map_versions(project, name)?)
    }

    /// One saved version's document.
    pub fn map_version(&self, project: &str, name: &str, version: i64) -> Result<JourneyMap> {
        let body = self
            .meta()
            .map_version(project, name, version)?
            .ok_or_else(|| AppError::NotFound(format!("map {name} has no version {version}")))?;
        decode(name, &body)
    }

    /// Makes an old version the current one, as a new version (history is never rewritten).
    pub fn restore_map(&self, project: &str, name: &str, version: i64, by: &str) -> Result<i64> {
        let old = self.map_version(project, name, version)?;
        self.save_map(
            project,
            name,
            &old,
            None,
            by,
            &format!("restored version {version}"),
        )
    }

    pub fn delete_map(&self, project: &str, name: &str) -> Result<()> {
        if self.meta().delete_map(project, name)? {
            Ok(())
        } else {
            Err(AppError::NotFound(format!("no map named {name}")))
        }
    }

    /// A read-only link to the map that shows it with live figures until `expires_in` has
    /// passed (at most [`MAX_SHARE`]) or it is revoked.
    pub fn share_map(
        &self,
        project: &str,
        name: &str,
        expires_in: Span,
        by: &str,
    ) -> Result<NewShare> {
        if expires_in.ms() <= 0 || expires_in > MAX_SHARE {
            return Err(AppError::invalid("expires_in", "between 1 s and 90 days"));
        }
        self.map(project, name)?;
        let until = crate::now_ms() + expires_in.ms();
        let (share, secret) = self.meta().create_share(project, name, until, by)?;
        Ok(NewShare {
            url: format!(
                "{}/share/{secret}",
                self.config.public_url.trim_end_matches('/')
            ),
            share,
        })
    }

    pub fn map_shares(&self, project: &str, name: &str) -> Result<Vec<MapShare>> {
        Ok(self.meta().shares(project, name)?)
    }

    pub fn revoke_map_share(&self, project: &str, name: &str, id: i64) -> Result<()> {
        if self.meta().revoke_share(project, name, id)? {
            Ok(())
        } else {
            Err(AppError::NotFound(format!(
                "map {name} has no live share link {id}"
            )))
        }
    }

    /// What a share link's secret shows now, if it is live.
    pub fn shared_map(&self, secret: &str) -> Result<Option<SharedMap>> {
        Ok(self.meta().shared_map(secret, crate::now_ms())?)
    }

    pub fn export_map(&self, project: &str, name: &str) -> Result<MapExport> {
        let view = self.map(project, name)?;
        Ok(MapExport {
            format: MAP_FORMAT.into(),
            name: view.name,
            map: view.map,
        })
    }

    /// Saves an exported map (under its own name, or `rename`) as a new version.
    pub fn import_map(
        &self,
        project: &str,
        export: &MapExport,
        rename: Option<&str>,
        by: &str,
    ) -> Result<i64> {
        if export.format != MAP_FORMAT {
            return Err(AppError::invalid(
                "format",
                format!(
                    "`{}` is not a map export this version reads ({MAP_FORMAT})",
                    export.format
                ),
            ));
        }
        self.save_map(
            project,
            rename.unwrap_or(&export.name),
            &export.map,
            None,
            by,
            "imported",
        )
    }
}

impl App {
    /// Whether a share link of map `share` may run `request` for `population`: only the
    /// analyses its map's figures come from. The stage funnel and scores by stage of the map's
    /// model (no inline models or personas), the funnel and scores by step over exactly the
    /// map's steps, for everyone or one of the map's personas. Date ranges and display settings
    /// are free.
    pub fn check_shared_request(
        &self,
        share: &SharedMap,
        request: &AnalysisRequest,
        population: &Population,
    ) -> Result<()> {
        let map = self.map(&share.project, &share.name)?.map;
        let deny = |what: &str| {
            Err(AppError::Forbidden(format!(
                "a share link shows map {}, read-only: {what} (docs/security.md)",
                share.name
            )))
        };
        let model = ModelRef::Builtin(map.model.clone());
        let map_steps = |selectors: Vec<&EventSelector>| {
            selectors.len() == map.steps.len()
                && selectors
                    .iter()
                    .zip(&map.steps)
                    .all(|(a, b)| **a == b.selector)
        };
        match request {
            AnalysisRequest::Stages(q) if q.model != model => {
                return deny("the stage funnel of another model is not part of it")
            }
            AnalysisRequest::Stages(_) => {}
            AnalysisRequest::Scores(q) if !q.personas.is_empty() => {
                return deny("personas inline are not part of it")
            }
            AnalysisRequest::Scores(q) if q.by == Some(ScoreBy::Step) => {
                if !map_steps(q.steps.iter().map(|s| &s.selector).collect()) {
                    return deny("only scores by the map's steps are part of it");
                }
            }
            AnalysisRequest::Scores(q) if q.model != model || q.by != Some(ScoreBy::Stage) => {
                return deny("only scores by stage of the map's model are part of it")
            }
            AnalysisRequest::Scores(_) => {}
            AnalysisRequest::Funnel(q)
                if !map_steps(q.steps.iter().map(|s| &s.selector).collect()) =>
            {
                return deny("only the funnel over the map's steps is part of it")
            }
            AnalysisRequest::Funnel(_) => {}
            _ => return deny(&format!("{} is not part of it", request.kind())),
        }
        if population.segment.is_some() {
            return deny("segments are not part of it");
        }
        if let Some(p) = &population.persona {
            if !map.personas.contains(p) {
                return deny(&format!("persona {p} is not one of the map's"));
            }
        }
        Ok(())
    }
}

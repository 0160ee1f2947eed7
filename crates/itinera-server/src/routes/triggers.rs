//! Trigger rules (`/api/v1/triggers/{name}`): act when a person enters a stage or does an event.
//! Listing, dry runs and firings need a read credential; saving and deleting need `edit`.
//! Semantics: docs/triggers.md.

use super::{blocking, json_body, query_params, scan_now};
use crate::auth::{EditProject, ReadProject};
use crate::error::ApiError;
use crate::openapi::{Forbidden, Invalid, NotFound, Unauthorized, Unavailable};
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use itinera_app::triggers::{self, EffectRequest, NamedTrigger};
use itinera_engine::triggers::{DryRun, TriggerEffect, TriggerRule};
use itinera_meta::Firing;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_triggers))
        .routes(routes!(save_trigger, delete_trigger))
        .routes(routes!(dry_run))
        .routes(routes!(list_firings))
        .routes(routes!(effect))
}

/// The project's trigger rules, webhook secrets shown as `***`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Triggers {
    pub rules: Vec<NamedTrigger>,
}

/// A dry run: a saved rule by name, or a rule given whole, over a past period.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub rule: Option<TriggerRule>,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// How many firings to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FiringsParams {
    /// At most this many, newest first (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A rule's latest firings.
#[derive(Debug, Serialize, ToSchema)]
pub struct Firings {
    pub firings: Vec<Firing>,
}

/// Trigger rules (webhook secrets shown as ***)
#[utoipa::path(
    get,
    path = "/api/v1/triggers",
    tag = "triggers",
    responses((status = 200, description = "Rules", body = Triggers), Unauthorized)
)]
async fn list_triggers(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
) -> Result<Json<Triggers>, ApiError> {
    let rules = triggers::redacted(triggers::rules(&state.app, &project)?);
    Ok(Json(Triggers { rules }))
}

/// Create or replace a trigger rule
///
/// Switched off unless `enabled` is true; switching it on starts it from now (or from
/// `backfill_from_ms`). A webhook secret sent as `***` keeps the saved one. Semantics:
/// docs/triggers.md.
#[utoipa::path(
    put,
    path = "/api/v1/triggers/{name}",
    security(("token" = ["edit"])),
    tag = "triggers",
    params(("name" = String, Path, description = "The rule's name")),
    request_body = TriggerRule,
    responses((status = 200, description = "The rule as saved, secrets redacted", body = NamedTrigger), Invalid, Unauthorized, Forbidden)
)]
async fn save_trigger(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    Path(name): Path<String>,
    body: Result<Json<TriggerRule>, JsonRejection>,
) -> Result<Json<NamedTrigger>, ApiError> {
    let rule = json_body(body)?;
    let app = state.app.clone();
    let saved = blocking(move || {
        let rule = triggers::save(&app, &project, &name, rule)?;
        Ok(NamedTrigger { name, rule })
    })
    .await?;
    Ok(Json(triggers::redacted(vec![saved]).remove(0)))
}

/// Delete a trigger rule (its actions not sent yet are cancelled)
#[utoipa::path(
    delete,
    path = "/api/v1/triggers/{name}",
    security(("token" = ["edit"])),
    tag = "triggers",
    params(("name" = String, Path, description = "The rule's name")),
    responses((status = 200, description = "Deleted", body = super::definitions::Deleted), Unauthorized, Forbidden, NotFound)
)]
async fn delete_trigger(
    State(state): State<Arc<AppState>>,
    EditProject(project): EditProject,
    Path(name): Path<String>,
) -> Result<Json<super::definitions::Deleted>, ApiError> {
    let app = state.app.clone();
    let deleted = name.clone();
    blocking(move || Ok(triggers::delete(&app, &project, &name)?)).await?;
    Ok(Json(super::definitions::Deleted { deleted }))
}

/// Who a rule would have triggered over a past period
///
/// Nothing is recorded or sent. Give `name` (a saved rule) or `rule` (one not saved yet).
#[utoipa::path(
    post,
    path = "/api/v1/triggers/dry-run",
    tag = "triggers",
    request_body = DryRunRequest,
    responses((status = 200, description = "Persons it would have triggered", body = DryRun), Invalid, Unauthorized, NotFound, Unavailable)
)]
async fn dry_run(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    body: Result<Json<DryRunRequest>, JsonRejection>,
) -> Result<Json<DryRun>, ApiError> {
    let req = json_body(body)?;
    let app = state.app.clone();
    let rule = match (req.rule, req.name) {
        (Some(rule), None) => rule,
        (None, Some(name)) => {
            let (app, project) = (app.clone(), project.clone());
            blocking(move || {
                triggers::rules(&app, &project)?
                    .into_iter()
                    .find(|r| r.name == name)
                    .map(|r| r.rule)
                    .ok_or_else(|| ApiError::NotFound(format!("no trigger rule named {name}")))
            })
            .await?
        }
        _ => {
            return Err(ApiError::BadRequest {
                field: "body".into(),
                reason: "give either `name` (a saved rule) or `rule`".into(),
            })
        }
    };
    let answer = scan_now(&state, move |opts| {
        triggers::dry_run(&app, &project, &rule, req.from_ms, req.to_ms, opts)
    })
    .await?;
    Ok(Json(answer))
}

/// A rule's latest firings, with each action's delivery state
#[utoipa::path(
    get,
    path = "/api/v1/triggers/{name}/firings",
    tag = "triggers",
    params(("name" = String, Path, description = "The rule's name"), FiringsParams),
    responses((status = 200, description = "Firings, newest first", body = Firings), Unauthorized, NotFound)
)]
async fn list_firings(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(name): Path<String>,
    params: Result<Query<FiringsParams>, QueryRejection>,
) -> Result<Json<Firings>, ApiError> {
    let limit = query_params("query string", params)?.limit.unwrap_or(100);
    let app = state.app.clone();
    let firings = blocking(move || Ok(triggers::firings(&app, &project, &name, limit)?)).await?;
    Ok(Json(Firings { firings }))
}

/// Did acting help? Persons acted on against those held out
///
/// The share of each group who did `outcome` within `within` after the rule fired for them,
/// with Wilson intervals, and the difference with Newcombe's interval. Needs a hold-out
/// (`holdout_percent`) for a fair comparison.
#[utoipa::path(
    post,
    path = "/api/v1/triggers/{name}/effect",
    tag = "triggers",
    params(("name" = String, Path, description = "The rule's name")),
    request_body = EffectRequest,
    responses((status = 200, description = "Acted on against held out", body = TriggerEffect), Invalid, Unauthorized, NotFound)
)]
async fn effect(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    Path(name): Path<String>,
    body: Result<Json<EffectRequest>, JsonRejection>,
) -> Result<Json<TriggerEffect>, ApiError> {
    let req = json_body(body)?;
    let app = state.app.clone();
    // a lookup per firing: under the time and memory budgets of every analysis, cancellable
    let answer = scan_now(&state, move |opts| {
        triggers::effect(&app, &project, &name, &req, opts)
    })
    .await?;
    Ok(Json(answer))
}

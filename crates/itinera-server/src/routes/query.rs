//! The analyses (`POST /api/v1/funnel`, `/retention`, …): the body is the query, the answer its
//! result; `?segment=`/`?persona=` choose the population. A request's scan is cancelled when its
//! client goes away. Also one person's stages and the breakdown by persona or segment.

use super::{blocking, json_body, query_params, to_json};
use crate::auth::ReadProject;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::routing::{post, MethodRouter};
use axum::{Json, Router};
use itinera_app::breakdown::BreakdownBy;
use itinera_app::{AnalysisRequest, PersonStagesRequest, Population};
use itinera_engine::{QueryControl, ScanOptions};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/funnel", analysis(AnalysisRequest::Funnel))
        .route("/api/v1/retention", analysis(AnalysisRequest::Retention))
        .route("/api/v1/stages", analysis(AnalysisRequest::Stages))
        .route("/api/v1/paths", analysis(AnalysisRequest::Paths))
        .route(
            "/api/v1/attribution",
            analysis(AnalysisRequest::Attribution),
        )
        .route("/api/v1/clv", analysis(AnalysisRequest::Clv))
        .route("/api/v1/accounts", analysis(AnalysisRequest::Accounts))
        .route("/api/v1/advocacy", analysis(AnalysisRequest::Advocacy))
        .route("/api/v1/revenue", analysis(AnalysisRequest::Revenue))
        .route("/api/v1/scores", analysis(AnalysisRequest::Scores))
        .route("/api/v1/promoters", analysis(AnalysisRequest::Promoters))
        .route("/api/v1/comments", analysis(AnalysisRequest::Comments))
        .route("/api/v1/stages/person", post(person_stages))
        .route("/api/v1/breakdown", post(breakdown))
}

/// `POST` of one analysis.
fn analysis<Q>(wrap: fn(Q) -> AnalysisRequest) -> MethodRouter<Arc<AppState>>
where
    Q: serde::de::DeserializeOwned + Send + 'static,
{
    post(
        move |State(state): State<Arc<AppState>>,
              ReadProject(project): ReadProject,
              pop: Result<Query<Population>, QueryRejection>,
              body: Result<Json<Q>, JsonRejection>| async move {
            let pop = query_params("query string", pop)?;
            let q = json_body(body)?;
            run_now(state, project, wrap(q), pop).await
        },
    )
}

/// Cancels a query when the request that runs it is dropped (the client went away).
struct CancelOnDrop(Arc<QueryControl>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn run_now(
    state: Arc<AppState>,
    project: String,
    request: AnalysisRequest,
    pop: Population,
) -> Result<Json<Value>, ApiError> {
    let control = QueryControl::new();
    // dropped with this future: when the client disconnects, the scan stops
    let _guard = CancelOnDrop(control.clone());
    let opts = ScanOptions {
        control: Some(control),
        ..Default::default()
    };
    let started = Instant::now();
    let app = state.app.clone();
    let kind = request.kind();
    let project2 = project.clone();
    let result = blocking(move || Ok(app.run_analysis(&project2, &request, &pop, &opts)?)).await?;
    tracing::debug!(
        project,
        analysis = kind,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "query done"
    );
    Ok(Json(result))
}

async fn person_stages(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    body: Result<Json<PersonStagesRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = json_body(body)?;
    let app = state.app.clone();
    let r = blocking(move || Ok(app.person_stages(&project, &q)?)).await?;
    Ok(to_json(&r))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakdownParams {
    by: String,
}

/// `POST /api/v1/breakdown?by=persona|segment`: any analysis (the body as for
/// `/api/v1/queries`), once per persona or saved segment.
async fn breakdown(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    params: Result<Query<BreakdownParams>, QueryRejection>,
    body: Result<Json<AnalysisRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let by: BreakdownBy = query_params("by", params)?.by.parse()?;
    let request = json_body(body)?;
    let app = state.app.clone();
    let r = blocking(move || Ok(app.breakdown(&project, by, &request)?)).await?;
    Ok(to_json(&r))
}

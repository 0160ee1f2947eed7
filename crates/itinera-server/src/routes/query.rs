//! The analyses (`POST /api/v1/funnel`, `/retention`, …): the body is the query, the answer its
//! result; `?segment=`/`?persona=` choose the population. A request's scan is cancelled when its
//! client goes away. Also one person's stages and the breakdown by persona or segment.

use super::{blocking, json_body, query_params, to_json};
use crate::auth::{ReadProject, SharedCaller};
use crate::error::ApiError;
use crate::openapi::{Invalid, NotFound, Unauthorized, Unavailable};
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::{Extension, Json};
use itinera_app::breakdown::{BreakdownBy, BreakdownResult};
use itinera_app::{AnalysisRequest, PersonStagesRequest, Population};
use itinera_engine::handoff::{HandoffQuery, HandoffResult};
use itinera_engine::scores::{CommentsQuery, CommentsResult, PromotersQuery, PromotersResult};
use itinera_engine::stages::PersonJourney;
use itinera_engine::{
    AccountsQuery, AccountsResult, AdvocacyQuery, AdvocacyResult, AttributionQuery,
    AttributionResult, ClvQuery, ClvResult, FunnelQuery, FunnelResult, PathQuery, PathResult,
    RetentionQuery, RetentionResult, RevenueQuery, RevenueResult, ScoresQuery, ScoresResult,
    StageFunnelQuery, StageFunnelResult,
};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(funnel))
        .routes(routes!(retention))
        .routes(routes!(stages))
        .routes(routes!(paths))
        .routes(routes!(attribution))
        .routes(routes!(clv))
        .routes(routes!(accounts))
        .routes(routes!(advocacy))
        .routes(routes!(revenue))
        .routes(routes!(scores))
        .routes(routes!(handoff))
        .routes(routes!(promoters))
        .routes(routes!(comments))
        .routes(routes!(person_stages))
        .routes(routes!(breakdown))
}

/// One analysis's `POST` handler: the body is its query, the query string its population.
macro_rules! analysis {
    ($(#[doc = $doc:tt])* $name:ident, $path:tt, $variant:ident, $query:ident, $result:ident) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            post,
            path = $path,
            tag = "analyses",
            params(Population),
            request_body = $query,
            responses(
                (status = 200, description = "The answer", body = $result),
                Invalid,
                Unauthorized,
                Unavailable
            )
        )]
        async fn $name(
            State(state): State<Arc<AppState>>,
            ReadProject(project): ReadProject,
            shared: Option<Extension<SharedCaller>>,
            pop: Result<Query<Population>, QueryRejection>,
            body: Result<Json<$query>, JsonRejection>,
        ) -> Result<Json<Value>, ApiError> {
            let pop = query_params("query string", pop)?;
            let q = json_body(body)?;
            run_now(state, project, AnalysisRequest::$variant(q), pop, shared).await
        }
    };
}

analysis!(
    /// Run an event funnel and wait for the answer
    ///
    /// Cancelled when the client disconnects. Semantics: docs/funnels.md.
    funnel, "/api/v1/funnel", Funnel, FunnelQuery, FunnelResult
);
analysis!(
    /// Run a retention analysis (cohort table) and wait for the answer
    ///
    /// Semantics: docs/retention.md.
    retention, "/api/v1/retention", Retention, RetentionQuery, RetentionResult
);
analysis!(
    /// Stage funnel of a stage model
    ///
    /// Persons per stage, conversion, drop-off and time in stage. Semantics: docs/stages.md.
    stages, "/api/v1/stages", Stages, StageFunnelQuery, StageFunnelResult
);
analysis!(
    /// Paths and flows (Sankey nodes and links, top complete paths)
    ///
    /// Semantics: docs/paths.md.
    paths, "/api/v1/paths", Paths, PathQuery, PathResult
);
analysis!(
    /// Attribution: credit for conversions and revenue under every model, side by side
    ///
    /// Semantics: docs/attribution.md.
    attribution, "/api/v1/attribution", Attribution, AttributionQuery, AttributionResult
);
analysis!(
    /// Customer lifetime value: history, BG/NBD and Gamma-Gamma predictions per customer
    ///
    /// Semantics: docs/clv.md.
    clv, "/api/v1/clv", Clv, ClvQuery, ClvResult
);
analysis!(
    /// B2B buying groups: per account and won/lost/open compared
    accounts, "/api/v1/accounts", Accounts, AccountsQuery, AccountsResult
);
analysis!(
    /// The advocacy loop: promoters to referred customers
    advocacy, "/api/v1/advocacy", Advocacy, AdvocacyQuery, AdvocacyResult
);
analysis!(
    /// Orders and revenue per period and currency, refunds subtracted
    revenue, "/api/v1/revenue", Revenue, RevenueQuery, RevenueResult
);
analysis!(
    /// NPS, CSAT or CES with n, interval, distribution and emotion value
    ///
    /// Semantics: docs/scores.md.
    scores, "/api/v1/scores", Scores, ScoresQuery, ScoresResult
);
analysis!(
    /// Promoters (latest NPS 9-10) with consent and contact traits
    promoters, "/api/v1/promoters", Promoters, PromotersQuery, PromotersResult
);
analysis!(
    /// The buyer-to-customer handoff: who got the onboarding touch, how soon, and did it help
    ///
    /// Semantics: docs/triggers.md.
    handoff, "/api/v1/handoff", Handoff, HandoffQuery, HandoffResult
);
analysis!(
    /// Open answers: search, sentiment, keywords
    comments, "/api/v1/comments", Comments, CommentsQuery, CommentsResult
);

async fn run_now(
    state: Arc<AppState>,
    project: String,
    request: AnalysisRequest,
    pop: Population,
    shared: Option<Extension<SharedCaller>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(Extension(SharedCaller(share))) = &shared {
        let (app, share, request, pop) = (
            state.app.clone(),
            share.clone(),
            request.clone(),
            pop.clone(),
        );
        blocking(move || Ok(app.check_shared_request(&share, &request, &pop)?)).await?;
    }
    let started = Instant::now();
    let kind = request.kind();
    let (app, project2) = (state.app.clone(), project.clone());
    let result = super::scan_now(&state, move |opts| {
        app.run_analysis(&project2, &request, &pop, opts)
    })
    .await?;
    tracing::debug!(
        project,
        analysis = kind,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "query done"
    );
    Ok(Json(result))
}

/// One person's current stage and stage history under a model
#[utoipa::path(
    post,
    path = "/api/v1/stages/person",
    tag = "analyses",
    request_body = PersonStagesRequest,
    responses(
        (status = 200, description = "The person's journey", body = PersonJourney),
        Invalid,
        Unauthorized,
        NotFound
    )
)]
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct BreakdownParams {
    /// `persona` or `segment`.
    by: String,
}

/// Any analysis once per persona or saved segment
///
/// The body is exactly one analysis, as for `/api/v1/queries`. Semantics: docs/segments.md.
#[utoipa::path(
    post,
    path = "/api/v1/breakdown",
    tag = "analyses",
    params(BreakdownParams),
    request_body = AnalysisRequest,
    responses(
        (status = 200, description = "One answer per group", body = BreakdownResult),
        Invalid,
        Unauthorized,
        Unavailable
    )
)]
async fn breakdown(
    State(state): State<Arc<AppState>>,
    ReadProject(project): ReadProject,
    params: Result<Query<BreakdownParams>, QueryRejection>,
    body: Result<Json<AnalysisRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let by: BreakdownBy = query_params("by", params)?.by.parse()?;
    let request = json_body(body)?;
    let app = state.app.clone();
    let r = super::scan_now(&state, move |opts| {
        app.breakdown(&project, by, &request, opts)
    })
    .await?;
    Ok(to_json(&r))
}

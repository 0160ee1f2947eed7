//! The query API under `/api/v1/`, authorized by a read token (`Authorization: Bearer rt_…`).
//!
//! Each analysis has a synchronous endpoint (`POST /api/v1/funnel`) that answers when done and is
//! cancelled when the client goes away, and can run as a job (`POST /api/v1/queries`) whose
//! progress is polled and which can be cancelled (`DELETE /api/v1/queries/{id}`).

use crate::error::ApiError;
use crate::population::{self, Population};
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, put, MethodRouter};
use axum::{Json, Router};
use itinera_engine::segments::{Filter, Filtered, SegmentDef, SegmentRule};
use itinera_engine::JourneySource;
use itinera_engine::{
    AccountsQuery, AdvocacyQuery, AttributionQuery, ClvQuery, EngineError, FunnelQuery, ModelRef,
    PathQuery, QueryControl, RetentionQuery, RevenueQuery, ScanOptions, ScoresQuery,
    StageFunnelQuery,
};
use itinera_meta::KeyKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Finished jobs are kept this long for their owner to fetch.
const JOB_TTL: Duration = Duration::from_secs(600);
/// At most this many jobs (running or finished) are kept.
const MAX_JOBS: usize = 256;

/// One analysis, as the job API and the CLI send it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AnalysisRequest {
    Funnel(FunnelQuery),
    Retention(RetentionQuery),
    Stages(StageFunnelQuery),
    Paths(PathQuery),
    Attribution(AttributionQuery),
    Clv(ClvQuery),
    Accounts(AccountsQuery),
    Advocacy(AdvocacyQuery),
    Revenue(RevenueQuery),
    Scores(ScoresQuery),
    Promoters(itinera_engine::scores::PromotersQuery),
    Comments(itinera_engine::scores::CommentsQuery),
}

/// One person's stages under a model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonStagesRequest {
    pub model: ModelRef,
    pub person: String,
}

impl AnalysisRequest {
    /// Runs the analysis on the persons `filter` keeps.
    fn run(
        &self,
        view: &itinera_store::StoreView,
        filter: Filter,
        opts: &ScanOptions,
    ) -> Result<Value, EngineError> {
        let view = Filtered {
            inner: view,
            filter,
            as_of_ms: population::now_ms(),
        };
        fn json<T: Serialize>(r: Result<T, EngineError>) -> Result<Value, EngineError> {
            r.map(|r| serde_json::to_value(r).expect("results serialize"))
        }
        match self {
            AnalysisRequest::Funnel(q) => json(itinera_engine::run_funnel(&view, q, opts)),
            AnalysisRequest::Retention(q) => json(itinera_engine::run_retention(&view, q, opts)),
            AnalysisRequest::Paths(q) => json(itinera_engine::run_paths(&view, q, opts)),
            AnalysisRequest::Stages(q) => json(itinera_engine::run_stage_funnel(&view, q, opts)),
            AnalysisRequest::Attribution(q) => {
                json(itinera_engine::run_attribution(&view, q, opts))
            }
            AnalysisRequest::Clv(q) => json(itinera_engine::run_clv(&view, q, opts)),
            AnalysisRequest::Accounts(q) => json(itinera_engine::run_accounts(&view, q, opts)),
            AnalysisRequest::Advocacy(q) => json(itinera_engine::run_advocacy(&view, q, opts)),
            AnalysisRequest::Revenue(q) => json(itinera_engine::run_revenue(&view, q, opts)),
            AnalysisRequest::Scores(q) => json(itinera_engine::run_scores(&view, q, opts)),
            AnalysisRequest::Promoters(q) => {
                json(itinera_engine::scores::find_promoters(&view, q, opts))
            }
            AnalysisRequest::Comments(q) => {
                json(itinera_engine::scores::find_comments(&view, q, opts))
            }
        }
    }
}

/// A query running or done in the background.
pub struct Job {
    project: String,
    control: Arc<QueryControl>,
    started: Instant,
    finished: Option<(Instant, Result<Value, String>)>,
}

/// The jobs of a server.
#[derive(Default)]
pub struct Jobs {
    jobs: parking_lot::Mutex<HashMap<String, Job>>,
}

#[derive(Serialize)]
struct JobStatus {
    id: String,
    status: &'static str,
    progress: f64,
    elapsed_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Job {
    fn status(&self, id: &str) -> JobStatus {
        let (status, result, error, elapsed) = match &self.finished {
            None if self.control.is_cancelled() => {
                ("cancelling", None, None, self.started.elapsed())
            }
            None => ("running", None, None, self.started.elapsed()),
            Some((at, Ok(v))) => ("done", Some(v.clone()), None, *at - self.started),
            Some((at, Err(e))) if e == "query cancelled" => {
                ("cancelled", None, Some(e.clone()), *at - self.started)
            }
            Some((at, Err(e))) => ("failed", None, Some(e.clone()), *at - self.started),
        };
        JobStatus {
            id: id.to_string(),
            status,
            progress: if self.finished.is_some() {
                1.0
            } else {
                self.control.progress()
            },
            elapsed_ms: elapsed.as_millis(),
            result,
            error,
        }
    }
}

pub fn routes() -> Router<Arc<AppState>> {
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
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/evaluate", post(evaluate_alerts))
        .route("/api/v1/alerts/rules", get(list_alert_rules))
        .route(
            "/api/v1/alerts/rules/{name}",
            put(put_alert_rule).delete(|s, h, p| delete_definition(s, h, p, crate::alerts::ALERT)),
        )
        .route("/api/v1/surveys", get(list_surveys))
        .route(
            "/api/v1/surveys/{id}",
            put(put_survey).delete(|s, h, p| delete_definition(s, h, p, crate::surveys::SURVEY)),
        )
        .route("/api/v1/surveys/{id}/link", post(survey_link))
        .route("/api/v1/cases", get(list_cases).post(create_case))
        .route("/api/v1/cases/{id}", axum::routing::patch(update_case))
        .route("/api/v1/cases/{id}/follow-up", post(case_follow_up))
        .route("/api/v1/segments", get(list_definitions))
        .route("/api/v1/segments/report", post(segments_report))
        .route(
            "/api/v1/segments/{name}",
            put(|s, h, p, b| put_definition(s, h, p, b, population::SEGMENT))
                .delete(|s, h, p| delete_definition(s, h, p, population::SEGMENT)),
        )
        .route(
            "/api/v1/personas/{name}",
            put(|s, h, p, b| put_definition(s, h, p, b, population::PERSONA))
                .delete(|s, h, p| delete_definition(s, h, p, population::PERSONA)),
        )
        .route("/api/v1/breakdown", post(breakdown))
        .route("/api/v1/queries", post(start_job))
        .route("/api/v1/queries/{id}", get(job_status).delete(cancel_job))
        .route("/api/v1/openapi.json", get(openapi))
}

/// `POST` of one analysis: the body is its query, the answer its result.
fn analysis<Q>(wrap: fn(Q) -> AnalysisRequest) -> MethodRouter<Arc<AppState>>
where
    Q: serde::de::DeserializeOwned + Send + 'static,
{
    post(
        move |State(app): State<Arc<AppState>>,
              headers: HeaderMap,
              pop: Result<Query<Population>, QueryRejection>,
              body: Result<Json<Q>, JsonRejection>| async move {
            let pop = population_param(pop)?;
            let q = json_body(body)?;
            run_now(app, headers, wrap(q), pop).await
        },
    )
}

/// The project of the request's read token.
fn read_project(app: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized(
            "a read token is required: Authorization: Bearer rt_…",
        ))?;
    app.authenticate(token, KeyKind::Read)
}

fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Invalid { field, reason } => ApiError::BadRequest { field, reason },
        EngineError::Cancelled => ApiError::Unavailable("query cancelled".into()),
    }
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|e| ApiError::BadRequest {
        field: "body".into(),
        reason: e.body_text(),
    })
}

/// Cancels a query when the request that runs it is dropped (the client went away).
struct CancelOnDrop(Arc<QueryControl>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn population_param(p: Result<Query<Population>, QueryRejection>) -> Result<Population, ApiError> {
    p.map(|Query(p)| p).map_err(|e| ApiError::BadRequest {
        field: "query string".into(),
        reason: e.body_text(),
    })
}

/// Runs `request` on the project's store for `pop`, on a blocking thread.
pub fn run_blocking(
    app: &AppState,
    project: &str,
    store: &itinera_store::Store,
    request: &AnalysisRequest,
    pop: &Population,
    opts: &ScanOptions,
) -> Result<Value, ApiError> {
    let view = store.view();
    let filter = view.with_vocabulary(|v| pop.filter(&app.data, project, v))?;
    let mut request = request.clone();
    {
        let meta = app.data.meta.lock();
        let resolve = |m: &mut ModelRef| -> Result<(), ApiError> {
            *m = population::resolve_model(&meta, project, m)?;
            Ok(())
        };
        match &mut request {
            AnalysisRequest::Scores(q) => {
                if q.by == Some(itinera_engine::scores::ScoreBy::Persona) && q.personas.is_empty() {
                    q.personas = population::load(&meta, project, population::PERSONA)?;
                }
                resolve(&mut q.model)?;
            }
            AnalysisRequest::Stages(q) => resolve(&mut q.model)?,
            AnalysisRequest::Accounts(q) => resolve(&mut q.model)?,
            _ => {}
        }
    }
    request.run(&view, filter, opts).map_err(engine_error)
}

async fn run_now(
    app: Arc<AppState>,
    headers: HeaderMap,
    request: AnalysisRequest,
    pop: Population,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let store = app.data.store(&project)?;
    let control = QueryControl::new();
    // dropped with this future: when the client disconnects, the scan stops
    let _guard = CancelOnDrop(control.clone());
    let opts = ScanOptions {
        control: Some(control),
        ..Default::default()
    };
    let started = Instant::now();
    let app2 = app.clone();
    let project2 = project.clone();
    let result = tokio::task::spawn_blocking(move || {
        run_blocking(&app2, &project2, &store, &request, &pop, &opts)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    tracing::debug!(
        project,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "query done"
    );
    Ok(Json(result))
}

async fn person_stages(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<PersonStagesRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = json_body(body)?;
    let project = read_project(&app, &headers)?;
    let store = app.data.store(&project)?;
    let model = population::resolve_model(&app.data.meta.lock(), &project, &q.model)?;
    let r = tokio::task::spawn_blocking(move || {
        itinera_engine::run_person_stages(&store.view(), &model, &q.person)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(engine_error)?;
    Ok(Json(serde_json::to_value(r).expect("results serialize")))
}

async fn start_job(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    pop: Result<Query<Population>, QueryRejection>,
    body: Result<Json<AnalysisRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let pop = population_param(pop)?;
    let request = json_body(body)?;
    let project = read_project(&app, &headers)?;
    let store = app.data.store(&project)?;
    let id = format!("q_{:016x}", rand::random::<u64>());
    let control = QueryControl::new();
    {
        let mut jobs = app.jobs.jobs.lock();
        jobs.retain(|_, j| {
            j.finished
                .as_ref()
                .is_none_or(|(at, _)| at.elapsed() < JOB_TTL)
        });
        if jobs.len() >= MAX_JOBS {
            return Err(ApiError::RateLimited(10));
        }
        jobs.insert(
            id.clone(),
            Job {
                project: project.clone(),
                control: control.clone(),
                started: Instant::now(),
                finished: None,
            },
        );
    }
    let app2 = app.clone();
    let id2 = id.clone();
    tokio::task::spawn_blocking(move || {
        let opts = ScanOptions {
            control: Some(control),
            ..Default::default()
        };
        let outcome =
            run_blocking(&app2, &project, &store, &request, &pop, &opts).map_err(|e| e.to_string());
        if let Some(job) = app2.jobs.jobs.lock().get_mut(&id2) {
            job.finished = Some((Instant::now(), outcome));
        }
    });
    let status = app.jobs.jobs.lock().get(&id).map(|j| j.status(&id));
    Ok((StatusCode::ACCEPTED, Json(status)))
}

fn find_job<T>(
    app: &AppState,
    headers: &HeaderMap,
    id: &str,
    f: impl FnOnce(&Job) -> T,
) -> Result<T, ApiError> {
    let project = read_project(app, headers)?;
    let jobs = app.jobs.jobs.lock();
    match jobs.get(id) {
        // another project's job is as invisible as a missing one
        Some(j) if j.project == project => Ok(f(j)),
        _ => Err(ApiError::NotFound(format!("no query {id}"))),
    }
}

async fn job_status(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let status = find_job(&app, &headers, &id, |j| j.status(&id))?;
    Ok(Json(
        serde_json::to_value(status).expect("status serializes"),
    ))
}

async fn cancel_job(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let status = find_job(&app, &headers, &id, |j| {
        j.control.cancel();
        j.status(&id)
    })?;
    Ok(Json(
        serde_json::to_value(status).expect("status serializes"),
    ))
}

/// The OpenAPI document of the query API.
async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../../docs/openapi.json"),
    )
}

/// A segment or persona as sent to `PUT /api/v1/{segments,personas}/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefinitionBody {
    #[serde(default)]
    pub description: Option<String>,
    pub rule: SegmentRule,
    /// Personas: the place in the ordered list (the first matching persona wins).
    #[serde(default)]
    pub position: i64,
}

async fn list_definitions(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let meta = app.data.meta.lock();
    Ok(Json(serde_json::json!({
        "segments": population::load(&meta, &project, population::SEGMENT)?,
        "personas": population::load(&meta, &project, population::PERSONA)?,
    })))
}

async fn put_definition(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<DefinitionBody>, JsonRejection>,
    kind: &'static str,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let body = json_body(body)?;
    let def = SegmentDef {
        name: name.clone(),
        description: body.description,
        rule: body.rule,
    };
    valid_definition_name(&name)?;
    // compiles against the project's data: unknown fields, bad regexes and selectors are refused
    let store = app.data.store(&project)?;
    store
        .view()
        .with_vocabulary(|v| {
            itinera_engine::segments::CompiledRule::compile(&def.rule, v).map(|_| ())
        })
        .map_err(engine_error)?;
    let json = serde_json::to_string(&def).expect("definitions serialize");
    app.data
        .meta
        .lock()
        .put_definition(&project, kind, &name, &json, body.position)?;
    Ok(Json(
        serde_json::to_value(&def).expect("definitions serialize"),
    ))
}

/// Names are path segments and CLI arguments: keep them plain.
pub fn valid_definition_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest {
            field: "name".into(),
            reason: format!("`{name}`: use 1-100 letters, digits, spaces, '-', '_' or '.'"),
        })
    }
}

async fn delete_definition(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    kind: &'static str,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    if !app
        .data
        .meta
        .lock()
        .delete_definition(&project, kind, &name)?
    {
        return Err(ApiError::NotFound(format!("no {kind} named {name}")));
    }
    Ok(Json(serde_json::json!({ "deleted": name })))
}

async fn segments_report(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let store = app.data.store(&project)?;
    let (segments, personas) = {
        let meta = app.data.meta.lock();
        (
            population::load(&meta, &project, population::SEGMENT)?,
            population::load(&meta, &project, population::PERSONA)?,
        )
    };
    let r = tokio::task::spawn_blocking(move || {
        itinera_engine::segments::run_segments_report(
            &store.view(),
            &segments,
            &personas,
            population::now_ms(),
            &Default::default(),
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(engine_error)?;
    Ok(Json(serde_json::to_value(r).expect("results serialize")))
}

async fn list_alert_rules(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let rules: Vec<_> = crate::alerts::load_rules(&app, &project)?
        .iter()
        .map(|r| r.redacted())
        .collect();
    Ok(Json(serde_json::json!({ "rules": rules })))
}

async fn put_alert_rule(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    valid_definition_name(&name)?;
    let mut body = json_body(body)?;
    if let Some(o) = body.as_object_mut() {
        o.insert("name".into(), Value::String(name.clone()));
    }
    let rule: itinera_engine::alerts::AlertRule =
        serde_json::from_value(body).map_err(|e| ApiError::BadRequest {
            field: "body".into(),
            reason: e.to_string(),
        })?;
    rule.validate().map_err(engine_error)?;
    if !rule.email.is_empty() && app.config.smtp.host.is_empty() {
        return Err(ApiError::BadRequest {
            field: "email".into(),
            reason: "e-mail alerts need an SMTP relay: set [smtp] host (ITINERA_SMTP_HOST)".into(),
        });
    }
    // the rule's answers query must compile against the project's data (no scan)
    let store = app.data.store(&project)?;
    itinera_engine::scores::check_scores(&store.view(), &rule.scores).map_err(engine_error)?;
    let json = serde_json::to_string(&rule).expect("rules serialize");
    app.data
        .meta
        .lock()
        .put_definition(&project, crate::alerts::ALERT, &name, &json, 0)?;
    Ok(Json(
        serde_json::to_value(rule.redacted()).expect("rules serialize"),
    ))
}

async fn evaluate_alerts(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let app2 = app.clone();
    let fired = tokio::task::spawn_blocking(move || {
        crate::alerts::evaluate_project(&app2, &project, population::now_ms())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(serde_json::json!({ "fired": fired })))
}

async fn list_alerts(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let alerts = app.data.meta.lock().alerts(&project, 500)?;
    Ok(Json(serde_json::json!({ "alerts": alerts })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFilter {
    status: Option<String>,
}

async fn list_cases(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    filter: Result<Query<CaseFilter>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let filter = filter.map(|Query(f)| f).map_err(|e| ApiError::BadRequest {
        field: "query string".into(),
        reason: e.body_text(),
    })?;
    let cases = app
        .data
        .meta
        .lock()
        .cases(&project, filter.status.as_deref())?;
    Ok(Json(serde_json::json!({ "cases": cases })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCase {
    title: String,
    #[serde(default)]
    person: Option<String>,
}

async fn create_case(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<NewCase>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let c = json_body(body)?;
    if c.title.trim().is_empty() || c.title.len() > 500 {
        return Err(ApiError::BadRequest {
            field: "title".into(),
            reason: "1-500 characters".into(),
        });
    }
    let meta = app.data.meta.lock();
    let id = meta.open_case(&project, None, c.person.as_deref(), &c.title)?;
    let case = meta.cases(&project, None)?.into_iter().find(|x| x.id == id);
    Ok(Json(serde_json::to_value(case).expect("cases serialize")))
}

async fn update_case(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<itinera_meta::CaseUpdate>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let u = json_body(body)?;
    let updated = app.data.meta.lock().update_case(&project, id, &u);
    match updated {
        Ok(Some(c)) => Ok(Json(serde_json::to_value(c).expect("cases serialize"))),
        Ok(None) => Err(ApiError::NotFound(format!("no case {id}"))),
        Err(itinera_meta::MetaError::BadValue(reason)) => Err(ApiError::BadRequest {
            field: "status".into(),
            reason,
        }),
        Err(e) => Err(e.into()),
    }
}

async fn list_surveys(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    Ok(Json(
        serde_json::json!({ "surveys": crate::surveys::load(&app, &project)? }),
    ))
}

async fn put_survey(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<crate::surveys::SurveyDef>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    valid_definition_name(&id)?;
    let mut def = json_body(body)?;
    def.id = id.clone();
    save_survey(&app.data.meta.lock(), &project, &def)?;
    Ok(Json(serde_json::to_value(&def).expect("surveys serialize")))
}

/// Validates and saves a survey definition (API and CLI).
pub fn save_survey(
    meta: &itinera_meta::Meta,
    project: &str,
    def: &crate::surveys::SurveyDef,
) -> Result<(), ApiError> {
    valid_definition_name(&def.id)?;
    def.validate()?;
    let json = serde_json::to_string(def).expect("surveys serialize");
    meta.put_definition(project, crate::surveys::SURVEY, &def.id, &json, 0)?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkRequest {
    person: String,
    #[serde(default = "thirty")]
    days: u32,
}

fn thirty() -> u32 {
    30
}

async fn survey_link(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<LinkRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let req = json_body(body)?;
    if !crate::surveys::load(&app, &project)?
        .iter()
        .any(|s| s.id == id)
    {
        return Err(ApiError::NotFound(format!("no survey {id}")));
    }
    if req.person.is_empty() || req.person.len() > 200 || req.days == 0 || req.days > 365 {
        return Err(ApiError::BadRequest {
            field: "person".into(),
            reason: "a person id (1-200 bytes) and 1-365 days".into(),
        });
    }
    let expires = population::now_ms() + req.days as i64 * 86_400_000;
    let url =
        crate::surveys::signed_link(&app.data.meta.lock(), &project, &id, &req.person, expires)?;
    Ok(Json(
        serde_json::json!({ "path": url, "expires_ms": expires }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowUp {
    survey: String,
    #[serde(default = "thirty")]
    days: u32,
    /// The trait holding the customer's e-mail address.
    #[serde(default = "email_trait")]
    email_property: String,
}

fn email_trait() -> String {
    "traits.email".into()
}

/// `POST /api/v1/cases/{id}/follow-up`: a signed survey link for the case's customer, recorded on
/// the case and e-mailed to them when the SMTP relay is set and their e-mail trait is known.
async fn case_follow_up(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<FollowUp>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let f = json_body(body)?;
    if f.days == 0 || f.days > 365 {
        return Err(ApiError::BadRequest {
            field: "days".into(),
            reason: "1-365".into(),
        });
    }
    let case = app
        .data
        .meta
        .lock()
        .case(&project, id)?
        .ok_or_else(|| ApiError::NotFound(format!("no case {id}")))?;
    let person = case.person.clone().ok_or_else(|| ApiError::BadRequest {
        field: "person".into(),
        reason: "the case names no customer".into(),
    })?;
    let survey = crate::surveys::load(&app, &project)?
        .into_iter()
        .find(|s| s.id == f.survey)
        .ok_or_else(|| ApiError::NotFound(format!("no survey {}", f.survey)))?;
    let expires = population::now_ms() + f.days as i64 * 86_400_000;
    let path = crate::surveys::signed_link(
        &app.data.meta.lock(),
        &project,
        &survey.id,
        &person,
        expires,
    )?;
    let app2 = app.clone();
    let (project2, person2, path2) = (project.clone(), person.clone(), path.clone());
    let question = survey.question.get("en").cloned().unwrap_or_default();
    let emailed = tokio::task::spawn_blocking(move || -> Result<Option<String>, ApiError> {
        if app2.config.smtp.host.is_empty() {
            return Ok(None);
        }
        let store = app2.data.store(&project2)?;
        let Some(to) =
            itinera_engine::segments::person_trait(&store.view(), &person2, &f.email_property)
        else {
            return Ok(None);
        };
        let text = format!(
            "{question}\n\nPlease tell us here: {}{path2}\n",
            app2.config.public_url.trim_end_matches('/')
        );
        crate::alerts::send_mail(
            &app2,
            std::slice::from_ref(&to),
            "A quick question from us",
            &text,
        )
        .map_err(ApiError::Unavailable)?;
        Ok(Some(to))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let note = format!(
        "survey {} sent{}: {path}",
        survey.id,
        emailed
            .as_deref()
            .map(|t| format!(" to {t}"))
            .unwrap_or_default()
    );
    let update = itinera_meta::CaseUpdate {
        follow_up: Some(note),
        status: (case.status == "open").then(|| "waiting_on_customer".to_string()),
        ..Default::default()
    };
    let case = app.data.meta.lock().update_case(&project, id, &update)?;
    Ok(Json(
        serde_json::json!({ "case": case, "path": path, "emailed_to": emailed }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakdownParams {
    by: String,
}

/// The groups of a breakdown by `persona` (every persona, then `(none)`) or `segment` (every saved
/// segment), as populations.
pub fn breakdown_groups(
    meta: &itinera_meta::Meta,
    project: &str,
    by: &str,
) -> Result<Vec<(String, Population)>, ApiError> {
    match by {
        "persona" => Ok(population::load(meta, project, population::PERSONA)?
            .into_iter()
            .map(|d| d.name)
            .chain(["(none)".to_string()])
            .map(|n| {
                let p = Population {
                    segment: None,
                    persona: Some(n.clone()),
                };
                (n, p)
            })
            .collect()),
        "segment" => Ok(population::load(meta, project, population::SEGMENT)?
            .into_iter()
            .map(|d| {
                let p = Population {
                    segment: Some(d.name.clone()),
                    persona: None,
                };
                (d.name, p)
            })
            .collect()),
        other => Err(ApiError::BadRequest {
            field: "by".into(),
            reason: format!("`{other}`: expected persona or segment"),
        }),
    }
}

/// `POST /api/v1/breakdown?by=persona|segment`: any analysis (the body as for
/// `/api/v1/queries`), once per persona or saved segment.
async fn breakdown(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<BreakdownParams>, QueryRejection>,
    body: Result<Json<AnalysisRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let project = read_project(&app, &headers)?;
    let by = params
        .map(|Query(p)| p.by)
        .map_err(|e| ApiError::BadRequest {
            field: "by".into(),
            reason: e.body_text(),
        })?;
    let request = json_body(body)?;
    let groups = breakdown_groups(&app.data.meta.lock(), &project, &by)?;
    let store = app.data.store(&project)?;
    let app2 = app.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let mut out = Vec::new();
        for (name, pop) in groups {
            let r = run_blocking(&app2, &project, &store, &request, &pop, &Default::default())?;
            out.push(serde_json::json!({ "name": name, "result": r }));
        }
        Ok(serde_json::json!({ "by": by, "groups": out }))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(result))
}

//! One module per API surface, each with its own router. Handlers read HTTP (paths, bodies,
//! headers), call the application layer and write HTTP; nothing else lives here.

pub mod alerts;
pub mod cases;
pub mod credentials;
pub mod definitions;
pub mod jobs;
pub mod maps;
pub mod ops;
pub mod query;
pub mod session;
pub mod survey_pages;
pub mod surveys;
pub mod tracking;
pub mod triggers;
pub mod users;
pub mod web;

use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Json, Query};
use axum::Router;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// The query API under `/api/v1`: every route registered through its OpenAPI annotation.
pub fn api() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(query::router())
        .merge(jobs::router())
        .merge(definitions::router())
        .merge(surveys::router())
        .merge(alerts::router())
        .merge(triggers::router())
        .merge(cases::router())
        .merge(maps::router())
        .merge(session::router())
        .merge(users::router())
        .merge(credentials::router())
        .merge(ops::docs())
}

/// Every surface's routes: the tracking API, the survey pages, operations and the query API.
pub fn router() -> Router<Arc<AppState>> {
    let (api, _) = api().split_for_parts();
    Router::new()
        .merge(tracking::router())
        .merge(survey_pages::router())
        .merge(ops::router())
        .merge(web::router())
        .merge(api)
}

/// A JSON body, or a `400` naming it.
pub(crate) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("body: {}", e.body_text()))
        } else {
            ApiError::BadRequest {
                field: "body".into(),
                reason: e.body_text(),
            }
        }
    })
}

/// Query-string parameters, or a `400` naming `field`.
pub(crate) fn query_params<T>(
    field: &str,
    q: Result<Query<T>, QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| ApiError::BadRequest {
        field: field.into(),
        reason: e.body_text(),
    })
}

/// Runs blocking application work (scans, SQLite, SMTP) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// A value as a JSON answer.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Json<serde_json::Value> {
    Json(serde_json::to_value(v).expect("answers serialize"))
}

/// Scan work (an analysis, a breakdown, segment sizes), ready to run off the async threads: with
/// `control` (cancellation, progress) and the time budget, a stop by the budget told as such.
/// Every route and job that scans runs through this.
pub(crate) fn budgeted<T: Send + 'static>(
    state: &AppState,
    control: Arc<itinera_engine::QueryControl>,
    work: impl FnOnce(&itinera_engine::ScanOptions) -> Result<T, itinera_app::AppError> + Send + 'static,
) -> impl FnOnce() -> Result<T, itinera_app::AppError> + Send + 'static {
    let budget = Budget::start(state, &control);
    move || {
        // what this thread and the scan's threads allocate counts against the memory budget
        let _charged = itinera_engine::metered::charge_to(&control);
        let opts = itinera_engine::ScanOptions {
            control: Some(control.clone()),
            ..Default::default()
        };
        budget.outcome(&control, work(&opts))
    }
}

/// Scan work a client waits for: run off the async threads under the time budget, cancelled
/// when the request is dropped (the client went away) or the server stops.
pub(crate) async fn scan_now<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&itinera_engine::ScanOptions) -> Result<T, itinera_app::AppError> + Send + 'static,
) -> Result<T, ApiError> {
    let control = state.app.query_control();
    // dropped with this future: when the client disconnects, the scan stops
    let _guard = CancelOnDrop(control.clone());
    let run = budgeted(state, control, work);
    blocking(move || Ok(run()?)).await
}

/// Cancels a query when the request that runs it is dropped.
struct CancelOnDrop(Arc<itinera_engine::QueryControl>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The budgets of one analysis: its time (`query_timeout_seconds`), a timer that stops the
/// query when it runs out, dropped (and so disarmed) with the run; and its memory
/// (`query_memory_mb`), charged by the allocator while the run's threads work for it.
struct Budget {
    timer: Option<tokio::task::JoinHandle<()>>,
    seconds: u64,
    mib: u64,
}

impl Budget {
    fn start(state: &AppState, control: &Arc<itinera_engine::QueryControl>) -> Budget {
        let (seconds, mib) = (
            state.app.config.query_timeout_seconds,
            state.app.config.query_memory_mb,
        );
        control.set_memory_limit(mib.saturating_mul(1 << 20));
        let timer = (seconds > 0).then(|| {
            let control = control.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
                control.time_out();
            })
        });
        Budget {
            timer,
            seconds,
            mib,
        }
    }

    /// The outcome of the query, a stop by this budget told as such.
    fn outcome<T>(
        &self,
        control: &itinera_engine::QueryControl,
        r: Result<T, itinera_app::AppError>,
    ) -> Result<T, itinera_app::AppError> {
        tracing::debug!(peak_memory_bytes = control.peak_memory(), "query finished");
        // over its memory budget, a query is an error even when it got to its end before its
        // next cancellation check noticed: the budget means the same for every analysis
        if control.out_of_memory() {
            return Err(itinera_app::AppError::OverMemory { mib: self.mib });
        }
        match r {
            Err(itinera_app::AppError::Cancelled) if control.timed_out() => {
                Err(itinera_app::AppError::TimedOut {
                    seconds: self.seconds,
                })
            }
            other => other,
        }
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        if let Some(h) = &self.timer {
            h.abort();
        }
    }
}

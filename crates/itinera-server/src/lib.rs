//! Itinera's HTTP edge: the Segment-compatible tracking API, the query API under `/api/v1/`, the
//! survey pages, health and Prometheus metrics. Each API surface is a module of [`routes`] with
//! its own router; authentication ([`auth`]) and rate limits ([`rate_limit`]) are apart. Everything
//! beyond HTTP is the application layer's (`itinera-app`).

pub mod auth;
pub mod connections;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod routes;

pub use error::ApiError;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use itinera_app::App;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Shared state of a running server: the application and what only HTTP needs.
pub struct AppState {
    pub app: Arc<App>,
    pub metrics: metrics::Metrics,
    auth: auth::AuthCache,
    /// Requests per write key.
    pub write_limit: rate_limit::KeyedLimit,
    /// Requests to the public survey pages, per client address and per person.
    pub survey_limit: rate_limit::KeyedLimit,
    /// Query-API requests per token.
    pub token_limit: rate_limit::KeyedLimit,
    /// Login attempts per client address and per e-mail.
    pub login_limit: rate_limit::KeyedLimit,
}

impl AppState {
    pub fn new(app: Arc<App>) -> Arc<AppState> {
        Arc::new(AppState {
            write_limit: rate_limit::KeyedLimit::per_second(app.config.rate_limit_per_key),
            survey_limit: rate_limit::KeyedLimit::per_minute(app.config.survey_rate_per_minute),
            token_limit: rate_limit::KeyedLimit::per_second(app.config.token_rate_per_second),
            login_limit: rate_limit::KeyedLimit::per_minute(app.config.login_attempts_per_minute),
            app,
            metrics: metrics::Metrics::default(),
            auth: auth::AuthCache::default(),
        })
    }
}

async fn track_latency(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    let labels = vec![
        ("route".to_string(), route),
        ("status".to_string(), resp.status().as_u16().to_string()),
    ];
    app.metrics
        .request_seconds
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// The router with every API surface.
pub fn router(state: Arc<AppState>) -> Router {
    routes::router()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            track_latency,
        ))
        .with_state(state)
}

/// Serves until `shutdown` completes, then stops accepting, finishes requests in flight, flushes
/// the stores and returns.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let data = state.app.data.clone();
    let app = state.app.clone();
    itinera_app::alerts::spawn_loop(state.app.clone());
    itinera_app::triggers::spawn(state.app.clone());
    // every project's store is opened now, in the background, so that the first person to open
    // the app does not wait for it (opening a store of 10M events takes about a second)
    let warm = state.app.clone();
    tokio::task::spawn_blocking(move || {
        let projects = warm.meta().projects().unwrap_or_default();
        for p in projects {
            if let Err(e) = warm.backend(&p.name) {
                tracing::warn!(project = p.name, error = %e, "the project's store could not be opened");
            }
        }
    });
    let limits = connections::Limits::from_config(&app.config);
    // on the signal, analyses in progress stop (their clients get 503), so that requests in
    // flight finish at once and the process exits within seconds
    let shutdown = async move {
        shutdown.await;
        app.stop_all();
    };
    connections::serve_connections(listener, router(state.clone()), state, limits, shutdown).await;
    tokio::task::spawn_blocking(move || data.close()).await.ok();
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: no new connections, finishing requests, flushing");
}

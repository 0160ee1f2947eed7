//! Itinera's HTTP server: the Segment-compatible tracking API, the query API under `/api/v1/`,
//! health and Prometheus metrics. The web app is mounted here as it is built.

pub mod alerts;
pub mod api;
pub mod config;
pub mod datadir;
pub mod error;
pub mod metrics;
pub mod population;
pub mod surveys;
pub mod tracking;

pub use config::ServerConfig;
pub use datadir::{DataDir, DataDirError};
pub use error::ApiError;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use itinera_meta::KeyKind;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

/// Shared state of a running server.
pub struct AppState {
    pub config: ServerConfig,
    pub data: Arc<DataDir>,
    pub metrics: metrics::Metrics,
    pub jobs: api::Jobs,
    auth_cache: Mutex<HashMap<(String, bool), (String, Instant)>>,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl AppState {
    pub fn new(config: ServerConfig, data: Arc<DataDir>) -> Arc<AppState> {
        Arc::new(AppState {
            config,
            data,
            metrics: metrics::Metrics::default(),
            jobs: api::Jobs::default(),
            auth_cache: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The project of a live credential of the given kind; cached briefly.
    pub fn authenticate(&self, secret: &str, kind: KeyKind) -> Result<String, ApiError> {
        let ttl = Duration::from_secs(self.config.auth_cache_seconds);
        let cache_key = (secret.to_string(), kind == KeyKind::Write);
        if let Some((project, at)) = self.auth_cache.lock().get(&cache_key) {
            if at.elapsed() < ttl {
                return Ok(project.clone());
            }
        }
        let project = self.data.meta.lock().authenticate(secret, kind)?;
        match project {
            Some(p) => {
                let mut cache = self.auth_cache.lock();
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(cache_key, (p.clone(), Instant::now()));
                Ok(p)
            }
            None => Err(ApiError::Unauthorized(match kind {
                KeyKind::Write => "unknown or revoked write key",
                KeyKind::Read => "unknown or revoked read token",
            })),
        }
    }

    /// Token bucket per key: `rate_limit_per_key` per second, bursts of twice that.
    pub fn rate_limit(&self, key: &str) -> Result<(), ApiError> {
        let rate = self.config.rate_limit_per_key as f64;
        self.bucket(key, rate, rate * 2.0)
    }

    /// Token bucket per key at `per_minute` requests a minute, a minute's worth at once; 0 = off.
    pub fn rate_limit_at(&self, key: &str, per_minute: u32) -> Result<(), ApiError> {
        self.bucket(key, per_minute as f64 / 60.0, per_minute as f64)
    }

    fn bucket(&self, key: &str, rate: f64, burst: f64) -> Result<(), ApiError> {
        if rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock();
        if buckets.len() > 100_000 {
            // keyed by client addresses too: forget idle buckets rather than grow without bound
            buckets.retain(|_, (_, last)| last.elapsed() < Duration::from_secs(120));
        }
        let now = Instant::now();
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens < 1.0 {
            return Err(ApiError::RateLimited(1));
        }
        *tokens -= 1.0;
        Ok(())
    }
}

async fn healthz(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let errors: Vec<serde_json::Value> = app
        .data
        .open_stores()
        .into_iter()
        .filter_map(|(p, s)| {
            s.write_error()
                .map(|e| serde_json::json!({"project": p, "error": e}))
        })
        .collect();
    Json(serde_json::json!({
        "status": if errors.is_empty() { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "write_errors": errors,
    }))
}

async fn metrics_handler(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    for (project, store) in app.data.open_stores() {
        if let Ok(s) = store.stats() {
            let labels = vec![("project".to_string(), project)];
            app.metrics
                .store_events
                .get_or_create(&labels)
                .set(s.events as i64);
            app.metrics
                .store_bytes
                .get_or_create(&labels)
                .set(s.bytes_on_disk as i64);
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
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
pub fn router(app: Arc<AppState>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .allow_credentials(true)
        .max_age(Duration::from_secs(3600));
    let tracking = Router::new()
        .route("/v1/{kind}", post(tracking::ingest))
        .route("/v1/projects/{key}/settings", get(tracking::settings))
        .route("/v1/surveys/{id}", get(surveys::public_definition))
        .route("/widget.js", get(surveys::widget))
        .layer(cors)
        // compressed bodies are checked again after decompression
        .layer(DefaultBodyLimit::max(
            itinera_core::message::MAX_BATCH_BYTES + 64 * 1024,
        ));
    Router::new()
        .merge(tracking)
        .merge(api::routes())
        .route(
            "/s/{project}/{survey}",
            get(surveys::show).post(surveys::answer),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_handler))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            track_latency,
        ))
        .with_state(app)
}

/// Serves until `shutdown` completes, then stops accepting, finishes requests in flight, flushes
/// the stores and returns.
pub async fn serve(
    app: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let data = app.data.clone();
    alerts::spawn_loop(app.clone());
    let svc = router(app).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, svc)
        .with_graceful_shutdown(shutdown)
        .await?;
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

//! The accept loop: connections are capped, and every connection must send its request headers
//! within `header_timeout_seconds` (an idle keep-alive connection too) and its body within
//! `body_timeout_seconds`, so that slow or idle clients cannot hold the server's sockets.
//! Beyond the cap a small overflow pool still answers `/healthz` (and `503` to anything else),
//! so that monitoring sees a full server as full, not as dead.

use crate::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Connections served beyond the cap, only for `/healthz`.
const OVERFLOW_CONNECTIONS: usize = 64;
/// How long the overflow pool waits for a request's headers.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Limits of the accept loop (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

impl Limits {
    pub fn from_config(c: &itinera_app::Config) -> Limits {
        Limits {
            max_connections: c.max_connections.max(1),
            header_timeout: Duration::from_secs(c.header_timeout_seconds.max(1)),
            body_timeout: Duration::from_secs(c.body_timeout_seconds.max(1)),
        }
    }
}

/// What a connection beyond the cap may ask.
fn overflow_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(crate::routes::ops::healthz))
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                axum::Json(serde_json::json!({
                    "success": false,
                    "error": "the server is at its connection limit; retry shortly",
                })),
            )
                .into_response()
        })
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight finish.
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    state: Arc<AppState>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let overflow = overflow_router(state);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let spare = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of file descriptors and the like: wait instead of spinning
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let (router, permit, header_timeout) = match permits.clone().try_acquire_owned() {
            Ok(p) => (app.clone(), p, limits.header_timeout),
            Err(_) => match spare.clone().try_acquire_owned() {
                Ok(p) => (overflow.clone(), p, OVERFLOW_HEADER_TIMEOUT),
                Err(_) => {
                    drop(stream);
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.map_request(move |mut req: Request<_>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(remote));
            req.map(Body::new)
        }));
        // HTTP/1 only: detecting the version would read the first bytes with no timeout
        let mut builder = Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // hyper times the headers from their first byte: a socket that sends nothing at
            // all is closed here
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, %remote, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    // requests in flight finish (analyses were told to stop); a connection that does not is
    // not waited for beyond this
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s of shutdown; closing");
    }
}

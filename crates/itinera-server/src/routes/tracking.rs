//! The Segment-compatible tracking API (`/v1/track`, `/v1/batch`, the browser short forms, ...).
//!
//! A 200 answer means every stored message is on stable storage. In a batch, good messages are
//! stored and bad ones reported by index, field and reason; a request in which nothing could be
//! stored is a 400.

use crate::auth::write_key;
use crate::error::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::Json;
use axum::Router;
use itinera_core::clock::now_ms;
use itinera_core::ingest::{self, IndexedError, Parsed};
use itinera_core::json::{JsonType, RawObject};
use itinera_core::message::{MAX_BATCH_BYTES, MAX_MESSAGE_BYTES};
use itinera_core::{MessageType, NormalizeOptions};
use itinera_meta::KeyKind;
use serde::Serialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

/// `/v1/{kind}` and the settings analytics.js fetches; CORS open (they are called from pages).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/{kind}", post(ingest))
        .route("/v1/projects/{key}/settings", get(settings))
        .layer(cors())
        // compressed bodies are checked again after decompression
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES + 64 * 1024))
}

/// CORS for what web pages call from their own origin (tracking, the widget and its survey).
pub(crate) fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .allow_credentials(true)
        .max_age(Duration::from_secs(3600))
}

#[derive(Debug, Serialize)]
pub struct IngestResponse {
    pub success: bool,
    pub stored: usize,
    pub duplicates: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<IndexedError>,
}

/// Which endpoint: a single message of a type, or a batch.
fn endpoint(name: &str) -> Option<Option<MessageType>> {
    match name {
        "batch" | "b" | "import" => Some(None),
        other => MessageType::parse(other).map(Some),
    }
}

/// Reads the body, gunzipping when asked, refusing more than `limit` bytes after decompression.
fn read_body<'a>(
    headers: &HeaderMap,
    body: &'a Bytes,
    limit: usize,
) -> Result<Cow<'a, [u8]>, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let gzip = match encoding.as_deref() {
        None | Some("" | "identity") => false,
        Some("gzip" | "x-gzip") => true,
        Some(other) => {
            return Err(ApiError::UnsupportedEncoding(format!(
                "Content-Encoding {other} is not supported; send gzip or no encoding"
            )))
        }
    };
    if !gzip {
        if body.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "body is {} bytes; the limit is {limit}",
                body.len()
            )));
        }
        return Ok(Cow::Borrowed(&body[..]));
    }
    let mut out = Vec::with_capacity(body.len() * 4);
    flate2::read::GzDecoder::new(&body[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest {
            field: "body".into(),
            reason: format!("invalid gzip: {e}"),
        })?;
    if out.len() > limit {
        return Err(ApiError::TooLarge(format!(
            "body is over {limit} bytes after decompression"
        )));
    }
    Ok(Cow::Owned(out))
}

async fn ingest(
    State(app): State<Arc<AppState>>,
    Path(kind): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<IngestResponse>, ApiError> {
    // a body over the transport limit gets the same JSON error as one over the batch limit
    let body = body.map_err(|e| ApiError::TooLarge(format!("body: {}", e.body_text())))?;
    let forced =
        endpoint(&kind).ok_or_else(|| ApiError::NotFound(format!("no endpoint /v1/{kind}")))?;
    let limit = if forced.is_some() {
        MAX_MESSAGE_BYTES
    } else {
        MAX_BATCH_BYTES
    };
    let raw = read_body(&headers, &body, limit)?;
    let bad = |e: itinera_core::MessageError| ApiError::BadRequest {
        field: e.field,
        reason: e.reason,
    };
    // the envelope (or the single message's members) is read first, so the key is checked
    // before the messages are parsed
    let (single, envelope) = match forced {
        Some(_) => {
            let text = std::str::from_utf8(&raw).map_err(|e| ApiError::BadRequest {
                field: "body".into(),
                reason: format!("invalid JSON: {e}"),
            })?;
            let obj = RawObject::parse(text).map_err(|e| {
                if e.is_data() {
                    ApiError::BadRequest {
                        field: String::new(),
                        reason: format!(
                            "a message must be a JSON object, got {}",
                            JsonType::of(text.trim_start()).name()
                        ),
                    }
                } else {
                    ApiError::BadRequest {
                        field: "body".into(),
                        reason: format!("invalid JSON: {e}"),
                    }
                }
            })?;
            (Some(obj), None)
        }
        None => (None, Some(ingest::BatchEnvelope::parse(&raw).map_err(bad)?)),
    };
    let key = match (&single, &envelope) {
        (Some(obj), _) => write_key(&headers, obj.get_str("writeKey").as_deref()),
        (_, Some(env)) => write_key(&headers, env.write_key.as_deref()),
        _ => None,
    }
    .ok_or(ApiError::Unauthorized(
        "a write key is required (HTTP Basic user name, or writeKey in the body)".into(),
    ))?;
    let project = app.authenticate(&key, KeyKind::Write)?;
    app.write_limit.check(&key)?;
    // a store that cannot open answers before the body is parsed
    app.app.backend(&project)?;
    let opts = NormalizeOptions {
        received_at_ms: now_ms(),
        max_future_ms: app.app.config.max_future_hours * 3_600_000,
        ip_policy: app.app.config.ip_policy,
        remote_ip: Some(remote.ip().to_string()),
    };
    let mut new_id = itinera_app::new_message_id;
    let parsed = match (single, envelope) {
        (Some(obj), _) => {
            let mut p = Parsed::default();
            match ingest::parse_object(
                obj,
                raw.len(),
                forced,
                &opts,
                &app.app.config.channels,
                &mut new_id,
            ) {
                Ok(tp) => p.touchpoints.push(tp),
                Err(e) => p.errors.push(IndexedError::new(0, e)),
            }
            p
        }
        (_, Some(env)) => env.into_parsed(&opts, &app.app.config.channels, new_id),
        _ => Parsed::default(),
    };
    let received = parsed.touchpoints.len() + parsed.errors.len();
    app.metrics.events_received.inc_by(received as u64);
    app.metrics
        .events_rejected
        .inc_by(parsed.errors.len() as u64);
    if parsed.touchpoints.is_empty() {
        return Err(ApiError::Invalid(parsed.errors));
    }
    let outcome = app.app.append(&project, parsed.touchpoints).await?;
    app.metrics.events_accepted.inc_by(outcome.stored as u64);
    app.metrics
        .events_duplicate
        .inc_by(outcome.duplicates as u64);
    Ok(Json(IngestResponse {
        success: true,
        stored: outcome.stored,
        duplicates: outcome.duplicates,
        errors: parsed.errors,
    }))
}

/// What analytics.js fetches at start: where to send events.
async fn settings(
    State(app): State<Arc<AppState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    app.authenticate(&key, KeyKind::Write)?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    Ok(Json(json!({
        "integrations": {
            "Segment.io": {
                "apiKey": key,
                "apiHost": format!("{host}/v1"),
                "protocol": "http",
                "addBundledMetadata": true,
                "unbundledIntegrations": [],
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]}
            }
        },
        "plan": {"track": {"__default": {"enabled": true, "integrations": {}}}, "identify": {"__default": {"enabled": true}}, "group": {"__default": {"enabled": true}}},
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": []
    })))
}

//! The web app, embedded in the binary (built from `web/` by `build.rs`; debug builds read
//! `web/dist` from disk, so a rebuilt app shows without recompiling). Its pages answer with a
//! strict Content-Security-Policy; hashed assets are cached for a year.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;
use std::sync::Arc;

#[derive(RustEmbed)]
#[folder = "../../web/dist"]
struct Assets;

/// The app's pages (every path the app routes to answers its `index.html`) and assets.
pub fn router() -> Router<Arc<crate::AppState>> {
    Router::new()
        .route("/", get(index))
        .route("/admin", get(index))
        .route("/triggers", get(index))
        .route("/maps/{name}", get(index))
        .route("/share/{secret}", get(index))
        .route("/assets/{*path}", get(asset))
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    frame-ancestors 'none'; form-action 'self'";

async fn index() -> Response {
    let Some(file) = Assets::get("index.html") else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the web app was not built into this binary (see web/ and docs/web.md)",
        )
            .into_response();
    };
    let mut resp = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        file.data.into_owned(),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn asset(Path(path): Path<String>) -> Response {
    match Assets::get(&format!("assets/{path}")) {
        Some(file) => {
            let mime = file.metadata.mimetype().to_string();
            let mut resp = ([(header::CONTENT_TYPE, mime)], file.data.into_owned()).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            // file names carry a hash of their content
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            resp
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

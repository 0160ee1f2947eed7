//! The OpenAPI document is generated from the handlers and their types; these tests keep what is
//! published (`docs/openapi.json`) equal to it, keep every `/api/v1` route inside it, and check
//! that every documented operation is routed and asks for a read token before anything else.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use itinera_app::{App, Config, DataDir};
use itinera_server::AppState;
use tower::ServiceExt;

fn document() -> serde_json::Value {
    serde_json::from_str(itinera_server::openapi::document()).expect("the document is JSON")
}

/// `docs/openapi.json` is the generated document; `ITINERA_BLESS=1` rewrites it after a change.
#[test]
fn the_published_document_is_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let generated = itinera_server::openapi::document();
    if std::env::var_os("ITINERA_BLESS").is_some() {
        std::fs::write(path, generated).unwrap();
    }
    let published = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        published == generated,
        "docs/openapi.json differs from the document the server generates; \
         run `ITINERA_BLESS=1 cargo test -p itinera-server --test openapi` and review the diff"
    );
}

/// Routes under `/api/v1` are registered through their annotations (`routes!`), never with a
/// plain `.route(`, which would leave them out of the document.
#[test]
fn no_api_route_bypasses_the_document() {
    let sources = [
        ("mod.rs", include_str!("../src/routes/mod.rs")),
        ("query.rs", include_str!("../src/routes/query.rs")),
        ("jobs.rs", include_str!("../src/routes/jobs.rs")),
        (
            "definitions.rs",
            include_str!("../src/routes/definitions.rs"),
        ),
        ("surveys.rs", include_str!("../src/routes/surveys.rs")),
        ("alerts.rs", include_str!("../src/routes/alerts.rs")),
        ("cases.rs", include_str!("../src/routes/cases.rs")),
        ("ops.rs", include_str!("../src/routes/ops.rs")),
        ("tracking.rs", include_str!("../src/routes/tracking.rs")),
        (
            "survey_pages.rs",
            include_str!("../src/routes/survey_pages.rs"),
        ),
    ];
    for (file, src) in sources {
        let compact: String = src.split_whitespace().collect();
        assert!(
            !compact.contains(".route(\"/api/"),
            "{file} routes an /api path without documenting it"
        );
    }
    let doc = document();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 25, "{} paths", paths.len());
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has no summary"
            );
        }
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_needs_a_read_token() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path(), Default::default()).unwrap();
    let router = itinera_server::router(AppState::new(App::new(Config::default(), dir)));
    let doc = document();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{name}", "x").replace("{id}", "1");
        for method in ops.as_object().unwrap().keys() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            if method == Method::from_bytes(b"PARAMETERS").unwrap() {
                continue;
            }
            let req = Request::builder()
                .method(method.clone())
                .uri(&concrete)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let resp = router.clone().oneshot(req).await.unwrap();
            let expected = if path == "/api/v1/openapi.json" {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(resp.status(), expected, "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked > 30, "checked {checked} operations");
}

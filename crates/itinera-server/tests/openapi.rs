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
        ("maps.rs", include_str!("../src/routes/maps.rs")),
        ("session.rs", include_str!("../src/routes/session.rs")),
        ("users.rs", include_str!("../src/routes/users.rs")),
        (
            "credentials.rs",
            include_str!("../src/routes/credentials.rs"),
        ),
        ("web.rs", include_str!("../src/routes/web.rs")),
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
        let concrete = path
            .replace("{name}", "x")
            .replace("{id}", "1")
            .replace("{version}", "1")
            .replace("{email}", "a@b.c");
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
            if resp.status().is_server_error() {
                let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
                    .await
                    .unwrap();
                panic!("{method} {path}: {}", String::from_utf8_lossy(&body));
            }
            let expected = if path == "/api/v1/openapi.json" {
                StatusCode::OK
            } else if path == "/api/v1/session" && method == Method::POST {
                // logging in needs no credential; an empty body names its missing field
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(resp.status(), expected, "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked > 30, "checked {checked} operations");
}

/// `docs/map-schema.json`: the JSON Schema (2020-12) of an exported map, made from the same
/// types the server validates with; `ITINERA_BLESS=1` rewrites it.
#[test]
fn the_map_schema_is_the_generated_one() {
    let doc = document();
    let all = doc["components"]["schemas"].as_object().unwrap();
    // the schemas MapExport reaches, with references pointing into $defs
    let mut defs = serde_json::Map::new();
    let mut todo = vec!["MapExport".to_string()];
    while let Some(name) = todo.pop() {
        if defs.contains_key(&name) {
            continue;
        }
        let text = serde_json::to_string(&all[&name]).unwrap();
        for part in text.split("#/components/schemas/").skip(1) {
            todo.push(part.split('"').next().unwrap().to_string());
        }
        let rewritten = text.replace("#/components/schemas/", "#/$defs/");
        defs.insert(name, serde_json::from_str(&rewritten).unwrap());
    }
    let schema = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://itinera.invalid/schemas/itinera-map-1.json",
        "title": "An exported Itinera journey map (format itinera-map/1)",
        "description": "Written by `itinera maps export` and GET /api/v1/maps/{name}/export; read by `itinera maps import` and POST /api/v1/maps/import. Generated from the server's types (crates/itinera-engine/src/map.rs).",
        "$ref": "#/$defs/MapExport",
        "$defs": defs,
    });
    let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/map-schema.json");
    if std::env::var_os("ITINERA_BLESS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let published = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        published == generated,
        "docs/map-schema.json differs from the generated schema; run \
         `ITINERA_BLESS=1 cargo test -p itinera-server --test openapi` and review the diff"
    );
}

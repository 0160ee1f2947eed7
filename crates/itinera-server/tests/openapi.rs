//! The served OpenAPI document and the router cannot drift apart: every documented operation is
//! routed (and asks for a read token before anything else), and every `/api/v1` path the route
//! modules register is documented.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use itinera_app::{App, Config, DataDir};
use itinera_server::AppState;
use std::collections::BTreeSet;
use tower::ServiceExt;

fn document() -> serde_json::Value {
    serde_json::from_str(itinera_server::openapi::document()).expect("the document is JSON")
}

/// `/api/v1` paths registered in the route modules' source (`.route("/api/v1/…"`).
fn routed_paths() -> BTreeSet<String> {
    let sources = [
        include_str!("../src/routes/query.rs"),
        include_str!("../src/routes/jobs.rs"),
        include_str!("../src/routes/definitions.rs"),
        include_str!("../src/routes/surveys.rs"),
        include_str!("../src/routes/alerts.rs"),
        include_str!("../src/routes/cases.rs"),
        include_str!("../src/routes/ops.rs"),
    ];
    let mut out = BTreeSet::new();
    for src in sources {
        for part in src.split(".route(").skip(1) {
            let path = part.trim_start().trim_start_matches('"');
            let path = &path[..path.find('"').expect("a quoted path")];
            if path.starts_with("/api/v1/") {
                out.insert(path.to_string());
            }
        }
    }
    out
}

#[test]
fn every_routed_api_path_is_documented_and_the_other_way_round() {
    let doc = document();
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routed = routed_paths();
    assert!(routed.len() > 20, "the route scan found {routed:?}");
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routed, not documented: {undocumented:?}"
    );
    assert!(unrouted.is_empty(), "documented, not routed: {unrouted:?}");
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

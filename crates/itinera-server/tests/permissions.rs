//! The permission model of `docs/security.md`, route by route: every query-API operation is sent
//! with every kind of credential, and each answer is allowed or refused as the table below says.
//! The table is written here, apart from the handlers; the OpenAPI document's security
//! requirements must say the same.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use itinera_app::{App, Config, DataDir};
use itinera_meta::Scope;
use itinera_server::AppState;
use std::collections::BTreeSet;
use tower::ServiceExt;

/// Every operation of the query API and the scope it needs.
const TABLE: &[(&str, &str, Scope)] = &[
    ("POST", "/api/v1/funnel", Scope::Read),
    ("POST", "/api/v1/retention", Scope::Read),
    ("POST", "/api/v1/stages", Scope::Read),
    ("POST", "/api/v1/stages/person", Scope::Read),
    ("POST", "/api/v1/paths", Scope::Read),
    ("POST", "/api/v1/attribution", Scope::Read),
    ("POST", "/api/v1/clv", Scope::Read),
    ("POST", "/api/v1/accounts", Scope::Read),
    ("POST", "/api/v1/advocacy", Scope::Read),
    ("POST", "/api/v1/revenue", Scope::Read),
    ("POST", "/api/v1/scores", Scope::Read),
    ("POST", "/api/v1/promoters", Scope::Read),
    ("POST", "/api/v1/comments", Scope::Read),
    ("POST", "/api/v1/breakdown", Scope::Read),
    ("POST", "/api/v1/queries", Scope::Read),
    ("GET", "/api/v1/queries/{id}", Scope::Read),
    ("DELETE", "/api/v1/queries/{id}", Scope::Read),
    ("GET", "/api/v1/segments", Scope::Read),
    ("POST", "/api/v1/segments/report", Scope::Read),
    ("PUT", "/api/v1/segments/{name}", Scope::Edit),
    ("DELETE", "/api/v1/segments/{name}", Scope::Edit),
    ("PUT", "/api/v1/personas/{name}", Scope::Edit),
    ("DELETE", "/api/v1/personas/{name}", Scope::Edit),
    ("GET", "/api/v1/surveys", Scope::Read),
    ("PUT", "/api/v1/surveys/{id}", Scope::Edit),
    ("DELETE", "/api/v1/surveys/{id}", Scope::Edit),
    ("POST", "/api/v1/surveys/{id}/link", Scope::Edit),
    ("GET", "/api/v1/alerts", Scope::Read),
    ("POST", "/api/v1/alerts/evaluate", Scope::Edit),
    ("GET", "/api/v1/alerts/rules", Scope::Read),
    ("PUT", "/api/v1/alerts/rules/{name}", Scope::Edit),
    ("DELETE", "/api/v1/alerts/rules/{name}", Scope::Edit),
    ("GET", "/api/v1/cases", Scope::Read),
    ("POST", "/api/v1/cases", Scope::Edit),
    ("PATCH", "/api/v1/cases/{id}", Scope::Edit),
    ("POST", "/api/v1/cases/{id}/follow-up", Scope::Edit),
];

fn document() -> serde_json::Value {
    serde_json::from_str(itinera_server::openapi::document()).unwrap()
}

/// The scope an operation of the document asks for: its own security requirement, else the
/// document's (`read`); `None` for an operation that needs no token.
fn documented_scope(doc: &serde_json::Value, op: &serde_json::Value) -> Option<Scope> {
    let security = op.get("security").unwrap_or(&doc["security"]);
    let first = security.as_array()?.first()?.as_object()?;
    let scopes = first.get("token")?.as_array()?;
    Some(scopes[0].as_str().unwrap().parse().unwrap())
}

#[test]
fn the_table_and_the_openapi_document_agree() {
    let doc = document();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if let Some(scope) = documented_scope(&doc, op) {
                documented.insert((method.to_uppercase(), path.clone(), scope));
            }
        }
    }
    let table: BTreeSet<_> = TABLE
        .iter()
        .map(|(m, p, s)| (m.to_string(), p.to_string(), *s))
        .collect();
    assert_eq!(documented, table);
}

#[tokio::test]
async fn every_route_allows_exactly_the_credentials_of_its_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path(), Default::default()).unwrap();
    let (pair, edit, admin, other_edit) = {
        let meta = dir.meta.lock();
        (
            meta.create_keys("default", "").unwrap(),
            meta.create_token("default", Scope::Edit, "").unwrap(),
            meta.create_token("default", Scope::Admin, "").unwrap(),
            meta.create_token("other", Scope::Edit, "").unwrap(),
        )
    };
    let router = itinera_server::router(AppState::new(App::new(Config::default(), dir)));
    // (credential, what it is: None = not a token)
    let credentials: Vec<(&str, Option<&str>, Option<Scope>)> = vec![
        ("no credential", None, None),
        ("a write key", Some(&pair.write_key), None),
        (
            "a made-up token",
            Some("et_0000000000000000000000000000000"),
            None,
        ),
        ("a read token", Some(&pair.read_token), Some(Scope::Read)),
        ("an edit token", Some(&edit), Some(Scope::Edit)),
        ("an admin token", Some(&admin), Some(Scope::Admin)),
        (
            "another project's edit token",
            Some(&other_edit),
            Some(Scope::Edit),
        ),
    ];
    let mut checked = 0;
    for (method, path, needed) in TABLE {
        let concrete = path.replace("{name}", "x").replace("{id}", "1");
        for (what, secret, scope) in &credentials {
            let mut req = Request::builder()
                .method(method.parse::<Method>().unwrap())
                .uri(&concrete)
                .header("content-type", "application/json");
            if let Some(s) = secret {
                req = req.header("authorization", format!("Bearer {s}"));
            }
            let resp = router
                .clone()
                .oneshot(req.body(Body::from("{}")).unwrap())
                .await
                .unwrap();
            let status = resp.status();
            let expected = match scope {
                None => "401",
                Some(s) if s < needed => "403",
                Some(_) => "allowed",
            };
            let got = match status {
                StatusCode::UNAUTHORIZED => "401",
                StatusCode::FORBIDDEN => "403",
                _ => "allowed",
            };
            assert_eq!(
                got, expected,
                "{method} {path} with {what}: {status} (needs {needed:?})"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, TABLE.len() * credentials.len());
}

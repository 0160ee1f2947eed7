//! The permission model of `docs/security.md`, route by route: every query-API operation is sent
//! with every kind of credential, and each answer is allowed or refused as the table below says.
//! The table is written here, apart from the handlers; the OpenAPI document's security
//! requirements must say the same.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use itinera_app::{App, Config, DataDir};
use itinera_meta::{Role, Scope};
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
    ("POST", "/api/v1/handoff", Scope::Read),
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
    ("GET", "/api/v1/triggers", Scope::Read),
    ("PUT", "/api/v1/triggers/{name}", Scope::Edit),
    ("DELETE", "/api/v1/triggers/{name}", Scope::Edit),
    ("POST", "/api/v1/triggers/dry-run", Scope::Read),
    ("GET", "/api/v1/triggers/{name}/firings", Scope::Read),
    ("POST", "/api/v1/triggers/{name}/effect", Scope::Read),
    ("GET", "/api/v1/models", Scope::Read),
    ("GET", "/api/v1/maps", Scope::Read),
    ("GET", "/api/v1/maps/{name}", Scope::Read),
    ("PUT", "/api/v1/maps/{name}", Scope::Edit),
    ("DELETE", "/api/v1/maps/{name}", Scope::Edit),
    ("GET", "/api/v1/maps/{name}/versions", Scope::Read),
    ("GET", "/api/v1/maps/{name}/versions/{version}", Scope::Read),
    (
        "POST",
        "/api/v1/maps/{name}/versions/{version}/restore",
        Scope::Edit,
    ),
    ("GET", "/api/v1/maps/{name}/export", Scope::Read),
    ("POST", "/api/v1/maps/import", Scope::Edit),
    ("GET", "/api/v1/maps/{name}/shares", Scope::Edit),
    ("POST", "/api/v1/maps/{name}/shares", Scope::Edit),
    ("DELETE", "/api/v1/maps/{name}/shares/{id}", Scope::Edit),
    ("GET", "/api/v1/keys", Scope::Admin),
    ("POST", "/api/v1/keys", Scope::Admin),
    ("DELETE", "/api/v1/keys/{id}", Scope::Admin),
];

/// Operations for logged-in admins only (users hold in every project; tokens belong to one).
const ADMIN_USERS_ONLY: &[(&str, &str)] = &[
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("PATCH", "/api/v1/users/{email}"),
    ("DELETE", "/api/v1/users/{email}"),
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

/// What an operation needs: a scope (tokens or users), or a logged-in admin user.
#[derive(Debug, Clone, Copy)]
enum Need {
    Scope(Scope),
    AdminUser,
}

/// A credential to try: how it is sent, and what it may do.
struct Credential {
    what: &'static str,
    bearer: Option<String>,
    /// A session cookie, and the CSRF token sent with it (if any).
    session: Option<(String, Option<String>)>,
    /// None: not a live credential (401).
    scope: Option<Scope>,
    /// A logged-in admin user.
    admin_user: bool,
    /// Sent without the CSRF token: state-changing requests are refused (403).
    no_csrf: bool,
    /// A share link of map `x`: only reading that map and the analyses it shows.
    share: Option<String>,
}

impl Credential {
    fn token(what: &'static str, secret: Option<&str>, scope: Option<Scope>) -> Credential {
        Credential {
            what,
            bearer: secret.map(str::to_string),
            session: None,
            scope,
            admin_user: false,
            no_csrf: false,
            share: None,
        }
    }

    fn share(what: &'static str, secret: &str, live: bool) -> Credential {
        Credential {
            share: Some(secret.to_string()),
            scope: live.then_some(Scope::Read),
            ..Credential::token(what, None, None)
        }
    }

    /// What this credential should get: `401`, `403` or allowed.
    fn expected(&self, method: &str, path: &str, need: Need) -> &'static str {
        match (self.scope, need) {
            (None, _) => "401",
            (Some(_), _) if self.share.is_some() && !Credential::share_allows(method, path) => {
                "403"
            }
            (Some(_), _) if self.no_csrf && method != "GET" => "403",
            (Some(s), Need::Scope(needed)) if s < needed => "403",
            (Some(_), Need::AdminUser) if !self.admin_user => "403",
            (Some(_), _) => "allowed",
        }
    }

    /// What a share link of map `x` may call.
    fn share_allows(method: &str, path: &str) -> bool {
        (method == "GET" && path == "/api/v1/maps/{name}")
            || itinera_server::auth::SHARE_ROUTES
                .iter()
                .any(|(m, p)| *m == method && *p == path)
    }

    fn user(
        what: &'static str,
        s: &itinera_meta::NewSession,
        role: Role,
        csrf: bool,
    ) -> Credential {
        Credential {
            what,
            bearer: None,
            session: Some((s.secret.clone(), csrf.then(|| s.csrf.clone()))),
            scope: Some(role.scope()),
            admin_user: role == Role::Admin,
            no_csrf: !csrf,
            share: None,
        }
    }

    fn request(&self, method: &str, path: &str) -> Request<Body> {
        let mut req = Request::builder()
            .method(method.parse::<Method>().unwrap())
            .uri(path)
            .header("content-type", "application/json");
        if let Some(s) = &self.bearer {
            req = req.header("authorization", format!("Bearer {s}"));
        }
        if let Some(s) = &self.share {
            req = req.header("x-itinera-share", s);
        }
        if let Some((secret, csrf)) = &self.session {
            req = req.header("cookie", format!("itinera_session={secret}"));
            if let Some(c) = csrf {
                req = req.header("x-csrf-token", c);
            }
        }
        req.body(Body::from("{}")).unwrap()
    }
}

fn outcome(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "401",
        StatusCode::FORBIDDEN => "403",
        _ => "allowed",
    }
}

fn concrete(path: &str) -> String {
    path.replace("{name}", "x")
        .replace("{id}", "1")
        .replace("{version}", "1")
        .replace("{email}", "nobody@example.org")
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
    let app = App::new(Config::default(), dir);
    let mut sessions = Vec::new();
    for (email, role) in [
        ("viewer@example.org", Role::Viewer),
        ("editor@example.org", Role::Editor),
        ("admin@example.org", Role::Admin),
    ] {
        app.create_user(email, role, "a long enough password")
            .unwrap();
        sessions.push((role, app.login(email, "a long enough password").unwrap().1));
    }
    let ended = app
        .login("viewer@example.org", "a long enough password")
        .unwrap()
        .1;
    app.logout(&ended.secret).unwrap();
    let (live_share, expired_share) = {
        let meta = app.meta();
        let far = itinera_app::now_ms() + 3_600_000;
        // id 1, the `{id}` the table's requests name: the allowed revocations revoke this one
        meta.create_share("default", "x", far, "t").unwrap();
        (
            meta.create_share("default", "x", far, "t").unwrap().1,
            meta.create_share("default", "x", 1, "t").unwrap().1,
        )
    };
    let router = itinera_server::router(AppState::new(app));
    let credentials = vec![
        Credential::token("no credential", None, None),
        Credential::token("a write key", Some(&pair.write_key), None),
        Credential::token(
            "a made-up token",
            Some("et_0000000000000000000000000000000"),
            None,
        ),
        Credential::token("a read token", Some(&pair.read_token), Some(Scope::Read)),
        Credential::token("an edit token", Some(&edit), Some(Scope::Edit)),
        Credential::token("an admin token", Some(&admin), Some(Scope::Admin)),
        Credential::token(
            "another project's edit token",
            Some(&other_edit),
            Some(Scope::Edit),
        ),
        Credential::user("a viewer's session", &sessions[0].1, Role::Viewer, true),
        Credential::user("an editor's session", &sessions[1].1, Role::Editor, true),
        Credential::user("an admin's session", &sessions[2].1, Role::Admin, true),
        Credential::user(
            "an admin's session without the CSRF token",
            &sessions[2].1,
            Role::Admin,
            false,
        ),
        Credential {
            scope: None,
            ..Credential::user("a logged-out session", &ended, Role::Viewer, true)
        },
        Credential::share("a share link of map x", &live_share, true),
        Credential::share("an expired share link", &expired_share, false),
    ];
    let cases = TABLE
        .iter()
        .map(|(m, p, s)| (*m, *p, Need::Scope(*s)))
        .chain(
            ADMIN_USERS_ONLY
                .iter()
                .map(|(m, p)| (*m, *p, Need::AdminUser)),
        );
    let mut checked = 0;
    for (method, path, need) in cases {
        for c in &credentials {
            let resp = router
                .clone()
                .oneshot(c.request(method, &concrete(path)))
                .await
                .unwrap();
            let status = resp.status();
            assert_eq!(
                outcome(status),
                c.expected(method, path, need),
                "{method} {path} with {}: {status} (needs {need:?})",
                c.what
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        (TABLE.len() + ADMIN_USERS_ONLY.len()) * credentials.len()
    );
}

/// A session's project is the one its request names; a project that does not exist is refused.
#[tokio::test]
async fn a_session_works_in_every_project_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path(), Default::default()).unwrap();
    dir.meta.lock().ensure_project("shop").unwrap();
    let app = App::new(Config::default(), dir);
    app.create_user("v@example.org", Role::Viewer, "a long enough password")
        .unwrap();
    let s = app
        .login("v@example.org", "a long enough password")
        .unwrap()
        .1;
    let router = itinera_server::router(AppState::new(app));
    for (project, expected) in [
        ("default", StatusCode::OK),
        ("shop", StatusCode::OK),
        ("nope", StatusCode::NOT_FOUND),
    ] {
        let req = Request::get("/api/v1/maps")
            .header("cookie", format!("itinera_session={}", s.secret))
            .header("x-itinera-project", project)
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            router.clone().oneshot(req).await.unwrap().status(),
            expected,
            "{project}"
        );
    }
}

/// A share link runs only the analyses its map's figures come from: the map's model, its steps,
/// its personas; anything else in the same routes is refused (403), however it is phrased.
#[tokio::test]
async fn a_share_link_runs_only_its_maps_analyses() {
    use itinera_engine::map::{JourneyMap, MapStep};
    use itinera_engine::stages::StageModel;
    use serde_json::json;
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path(), Default::default()).unwrap();
    itinera_app::demo::seed_definitions(&dir.meta.lock(), "default").unwrap();
    let app = App::new(Config::default(), dir);
    let model = StageModel::builtin("customer-journey").unwrap();
    let mut map = JourneyMap::blank("customer-journey", &model);
    map.personas = vec!["researcher".into()];
    for (k, event) in ["Product Viewed", "Order Completed"].iter().enumerate() {
        map.steps.push(MapStep {
            id: format!("s{k}"),
            stage: model.stages[k].name.clone(),
            name: event.to_string(),
            selector: serde_json::from_value(json!(event)).unwrap(),
        });
    }
    app.save_map("default", "m", &map, None, "test", "")
        .unwrap();
    let secret = {
        let meta = app.meta();
        meta.create_share("default", "m", itinera_app::now_ms() + 3_600_000, "t")
            .unwrap()
            .1
    };
    let router = itinera_server::router(AppState::new(app));
    let ask = |path: &str, body: serde_json::Value| {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/json")
            .header("x-itinera-share", &secret)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let steps =
        json!([{"match": "Product Viewed"}, {"match": "Order Completed", "name": "bought"}]);
    let cases = [
        (
            "/api/v1/stages",
            json!({"model": "customer-journey", "top_touchpoints": 5}),
            200,
        ),
        ("/api/v1/stages", json!({"model": "aida"}), 403),
        (
            "/api/v1/scores",
            json!({"kind": "nps", "by": "stage", "model": "customer-journey"}),
            200,
        ),
        (
            "/api/v1/scores",
            json!({"kind": "nps", "by": "touchpoint"}),
            403,
        ),
        (
            "/api/v1/scores",
            json!({"kind": "nps", "by": "step", "steps": steps}),
            200,
        ),
        (
            "/api/v1/scores",
            json!({"kind": "nps", "by": "step", "steps": [{"match": "Signed Up"}]}),
            403,
        ),
        (
            "/api/v1/funnel",
            json!({"steps": steps, "window": "90d", "from_ms": 0}),
            200,
        ),
        (
            "/api/v1/funnel",
            json!({"steps": [{"match": "Product Viewed"}], "window": "90d"}),
            403,
        ),
        (
            "/api/v1/funnel",
            json!({"steps": [{"match": "Product Viewed"}, {"match": "Signed Up"}], "window": "90d"}),
            403,
        ),
        (
            "/api/v1/stages?persona=researcher",
            json!({"model": "customer-journey"}),
            200,
        ),
        (
            "/api/v1/stages?persona=impulse_buyer",
            json!({"model": "customer-journey"}),
            403,
        ),
        (
            "/api/v1/stages?segment=b2b",
            json!({"model": "customer-journey"}),
            403,
        ),
    ];
    for (path, body, want) in cases {
        let resp = router
            .clone()
            .oneshot(ask(path, body.clone()))
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(
            status,
            want,
            "{path} {body}: {}",
            String::from_utf8_lossy(&text)
        );
    }
}

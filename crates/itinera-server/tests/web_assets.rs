//! The web app the binary embeds is the one built from the sources in `web/` (the build script
//! rebuilds it when they change; this fails when `web/dist` was built from other sources), and
//! it is served with its security headers.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use itinera_app::{App, Config, DataDir};
use itinera_server::AppState;
use tower::ServiceExt;

include!("../src/web_sources.rs");

fn web() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

#[test]
fn what_is_embedded_was_built_from_the_sources() {
    let recorded = std::fs::read_to_string(web().join("dist/.source-hash"))
        .expect("web/dist/.source-hash: the web app was not built by the build script");
    assert_eq!(
        recorded,
        source_hash(&web()),
        "web/dist was built from other sources than web/ holds: build again (cargo build runs npm)"
    );
}

#[tokio::test]
async fn the_app_and_its_assets_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path(), Default::default()).unwrap();
    let router = itinera_server::router(AppState::new(App::new(Config::default(), dir)));
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    for page in ["/", "/admin", "/maps/default"] {
        let resp = router.clone().oneshot(get(page)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{page}");
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        // every asset the page loads is served, with its type and a long cache life
        let assets: Vec<&str> = html
            .split(['"', '\''])
            .filter(|s| s.starts_with("/assets/"))
            .collect();
        assert!(assets.iter().any(|a| a.ends_with(".js")), "{html}");
        for a in assets {
            let resp = router.clone().oneshot(get(a)).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{a}");
            let ty = resp.headers()["content-type"].to_str().unwrap();
            assert!(ty.contains("javascript") || ty.contains("css"), "{a}: {ty}");
            assert!(resp.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable"));
        }
    }
    let missing = router
        .clone()
        .oneshot(get("/assets/nope.js"))
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

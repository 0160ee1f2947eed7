//! The tracking API end to end, against the real binary.

mod common;

use common::*;
use serde_json::{json, Value};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

#[test]
fn segment_endpoints_errors_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let keys = create_keys(dir.path(), "default");
    let s = Server::start(dir.path(), &[("ITINERA_AUTH_CACHE_SECONDS", "0")]);
    let c = client();
    let k = &keys.write_key;

    for (path, body) in [
        (
            "/v1/track",
            json!({"userId":"u1","event":"Signed Up","messageId":"t-1"}),
        ),
        (
            "/v1/identify",
            json!({"userId":"u1","anonymousId":"a1","traits":{"role":"champion"},"messageId":"i-1"}),
        ),
        (
            "/v1/page",
            json!({"anonymousId":"a1","name":"Pricing","messageId":"p-1"}),
        ),
        (
            "/v1/screen",
            json!({"userId":"u1","name":"Home","messageId":"s-1"}),
        ),
        (
            "/v1/group",
            json!({"userId":"u1","groupId":"acme","traits":{"name":"Acme"},"messageId":"g-1"}),
        ),
        (
            "/v1/alias",
            json!({"userId":"u1","previousId":"old-1","messageId":"al-1"}),
        ),
    ] {
        let (st, b) = post(&c, &s.url(path), k, &body);
        assert_eq!(st, 200, "{path}: {b}");
        assert_eq!(b["stored"], 1, "{path}");
    }
    // a retry of the same message id is stored once
    let (_, b) = post(
        &c,
        &s.url("/v1/track"),
        k,
        &json!({"userId":"u1","event":"Signed Up","messageId":"t-1"}),
    );
    assert_eq!(
        (b["stored"].clone(), b["duplicates"].clone()),
        (json!(0), json!(1))
    );

    // batch with bad messages: good ones stored, bad ones reported by index, field and reason
    let (st, b) = post(
        &c,
        &s.url("/v1/batch"),
        k,
        &json!({"batch":[
            {"type":"track","userId":"u2","event":"ok","messageId":"b-1"},
            {"type":"track","event":"no id"},
            {"type":"teleport","userId":"u2"},
            {"type":"track","userId":"u2","event":"e","properties":"not an object"},
            {"type":"track","userId":"u2","event":"future","timestamp":"2999-01-01T00:00:00Z"},
            {"type":"track","userId":"u2","event":"big","properties":{"x":"y".repeat(33_000)}}
        ]}),
    );
    assert_eq!(st, 200);
    assert_eq!(b["stored"], 1);
    let errs: Vec<(u64, String)> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        errs,
        vec![
            (1, "userId".into()),
            (2, "type".into()),
            (3, "properties".into()),
            (4, "timestamp".into()),
            (5, "".into())
        ]
    );
    for e in b["errors"].as_array().unwrap() {
        assert!(!e["reason"].as_str().unwrap().is_empty());
    }

    // nothing storable: 400
    let (st, b) = post(&c, &s.url("/v1/track"), k, &json!({"userId":"u2"}));
    assert_eq!((st, b["errors"][0]["field"].as_str()), (400, Some("event")));
    let r = c
        .post(s.url("/v1/track"))
        .basic_auth(k, Some(""))
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // sizes: 413
    let (st, _) = post(
        &c,
        &s.url("/v1/track"),
        k,
        &json!({"userId":"u","event":"e","properties":{"x":"y".repeat(40_000)}}),
    );
    assert_eq!(st, 413);
    let big: Vec<Value> = (0..60).map(|i| json!({"type":"track","userId":"u","event":"e","messageId":format!("big-{i}"),"properties":{"x":"y".repeat(10_000)}})).collect();
    let (st, _) = post(&c, &s.url("/v1/batch"), k, &json!({"batch": big}));
    assert_eq!(st, 413);
    // auth: missing, wrong, write key in body, revoked
    let r = c
        .post(s.url("/v1/track"))
        .json(&json!({"userId":"u","event":"e"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (st, _) = post(
        &c,
        &s.url("/v1/track"),
        "wk_wrong",
        &json!({"userId":"u","event":"e"}),
    );
    assert_eq!(st, 401);
    let (st, _) = post(
        &c,
        &s.url("/v1/track"),
        &keys.read_token,
        &json!({"userId":"u","event":"e"}),
    );
    assert_eq!(st, 401, "a read token cannot ingest");
    let r = c.post(s.url("/v1/t")).header("content-type", "text/plain").body(json!({"writeKey": k, "anonymousId":"browser","event":"Clicked","messageId":"body-key"}).to_string()).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let other = create_keys(dir.path(), "default");
    let prefix = &other.write_key[..10];
    run(&[
        "keys",
        "revoke",
        "--data",
        dir.path().to_str().unwrap(),
        prefix,
    ]);
    let (st, _) = post(
        &c,
        &s.url("/v1/track"),
        &other.write_key,
        &json!({"userId":"u","event":"e"}),
    );
    assert_eq!(st, 401, "revoked keys stop working");

    assert_eq!(s.terminate(), Some(0), "SIGTERM exits cleanly");
    let stored = export(dir.path(), "default");
    let ids: Vec<&str> = stored
        .iter()
        .map(|m| m["messageId"].as_str().unwrap())
        .collect();
    for id in ["t-1", "i-1", "p-1", "s-1", "g-1", "al-1", "b-1", "body-key"] {
        assert_eq!(
            ids.iter().filter(|x| **x == id).count(),
            1,
            "{id} stored once: {ids:?}"
        );
    }
    assert_eq!(stored.len(), 8);
    let identify = stored.iter().find(|m| m["messageId"] == "i-1").unwrap();
    assert_eq!(identify["traits"]["role"], "champion");
    assert!(identify["receivedAt"].is_string() && identify["timestamp"].is_string());
    assert!(identify.get("writeKey").is_none());
    let body_key = stored
        .iter()
        .find(|m| m["messageId"] == "body-key")
        .unwrap();
    assert!(
        body_key.get("writeKey").is_none(),
        "write keys are never stored"
    );
}

#[test]
fn gzip_projects_apart_and_kill9_keeps_acknowledged_events() {
    let dir = tempfile::tempdir().unwrap();
    let a = create_keys(dir.path(), "shop");
    let b = create_keys(dir.path(), "saas");
    let s = Server::start(dir.path(), &[]);
    let c = client();
    let body = json!({"batch": (0..100).map(|i| json!({"type":"track","userId":format!("u{i}"),"event":"Order Completed","messageId":format!("gz-{i}"),"properties":{"revenue": i}})).collect::<Vec<_>>()});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, body.to_string().as_bytes()).unwrap();
    let r = c
        .post(s.url("/v1/batch"))
        .basic_auth(&a.write_key, Some(""))
        .header("content-encoding", "gzip")
        .header("content-type", "application/json")
        .body(gz.finish().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().unwrap()["stored"], 100);
    let (st, _) = post(
        &c,
        &s.url("/v1/track"),
        &b.write_key,
        &json!({"userId":"x","event":"Demo Requested","messageId":"saas-1"}),
    );
    assert_eq!(st, 200);
    s.kill9();
    assert_eq!(
        export(dir.path(), "shop").len(),
        100,
        "acknowledged events survive kill -9"
    );
    let saas = export(dir.path(), "saas");
    assert_eq!(saas.len(), 1, "projects are kept apart");
    assert_eq!(saas[0]["event"], "Demo Requested");
}

/// One request per second (a burst of two): twelve requests sent at once get at most the burst
/// plus what the elapsed time refills, whatever the speed of the build, and the rest a 429 with
/// `Retry-After`.
#[test]
fn rate_limit_answers_429() {
    let dir = tempfile::tempdir().unwrap();
    let keys = create_keys(dir.path(), "default");
    let s = Server::start(dir.path(), &[("ITINERA_RATE_LIMIT_PER_KEY", "1")]);
    let url = s.url("/v1/track");
    let started = std::time::Instant::now();
    let answers: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let (url, key) = (&url, &keys.write_key);
                scope.spawn(move || {
                    let r = client()
                        .post(url)
                        .basic_auth(key, Some(""))
                        .json(&json!({"userId":"u","event":"e","messageId":format!("r{i}")}))
                        .send()
                        .unwrap();
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    (r.status().as_u16(), retry)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let limited: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert_eq!(ok + limited.len(), 12, "{answers:?}");
    assert!(
        ok >= 1 && ok as f64 <= 2.0 + elapsed.ceil(),
        "{ok} accepted in {elapsed:.2} s"
    );
    assert!(!limited.is_empty(), "{answers:?}");
    assert!(limited
        .iter()
        .all(|a| a.1.as_deref().is_some_and(|v| v.parse::<u64>().is_ok())));
}

#[test]
fn export_import_round_trip_is_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("w.jsonl");
    let d1 = dir.path().join("d1");
    let d2 = dir.path().join("d2");
    run(&[
        "generate",
        "--out",
        world.to_str().unwrap(),
        "--customers",
        "300",
        "--seed",
        "5",
    ]);
    let truth: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("w.jsonl.truth.json")).unwrap())
            .unwrap();
    let out = run(&[
        "import",
        "--data",
        d1.to_str().unwrap(),
        world.to_str().unwrap(),
        "--quiet",
        "--output",
        "json",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["stored"], truth["realized"]["events"]);
    assert_eq!(report["rejected"], 0);
    let first = export(&d1, "default");
    let file = dir.path().join("export.jsonl");
    std::fs::write(
        &file,
        first
            .iter()
            .map(|m| m.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    run(&[
        "import",
        "--data",
        d2.to_str().unwrap(),
        file.to_str().unwrap(),
        "--quiet",
    ]);
    let second = export(&d2, "default");
    let strip = |v: &Vec<Value>| {
        let mut v: Vec<Value> = v
            .iter()
            .cloned()
            .map(|mut m| {
                m.as_object_mut().unwrap().remove("receivedAt");
                m
            })
            .collect();
        v.sort_by_key(|m| m["messageId"].as_str().unwrap().to_string());
        v
    };
    assert_eq!(strip(&first), strip(&second), "re-import keeps every field");
}

#[test]
fn csv_import_maps_columns_and_reports_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("calls.csv");
    std::fs::write(
        &csv,
        "customer,when,event,properties.duration_minutes,context.library.name\n\
        c1,2025-03-01T10:00:00Z,Call Completed,12,call-center-import\n\
        ,2025-03-01T11:00:00Z,Call Completed,3,call-center-import\n\
        c2,not-a-date,Call Completed,5,call-center-import\n\
        c3,2025-03-02T09:30:00Z,Store Visit,,pos\n",
    )
    .unwrap();
    let reject = dir.path().join("rejects.jsonl");
    let d = dir.path().join("d");
    let out = run(&[
        "import",
        "--data",
        d.to_str().unwrap(),
        csv.to_str().unwrap(),
        "--map",
        "customer=userId",
        "--map",
        "when=timestamp",
        "--reject",
        reject.to_str().unwrap(),
        "--quiet",
        "--output",
        "json",
    ]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (r["stored"].as_u64(), r["rejected"].as_u64()),
        (Some(2), Some(2))
    );
    let rejects: Vec<Value> = std::fs::read_to_string(&reject)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rejects
            .iter()
            .map(|r| (
                r["line"].as_u64().unwrap(),
                r["field"].as_str().unwrap().to_string()
            ))
            .collect::<Vec<_>>(),
        vec![(3, "userId".into()), (4, "timestamp".into())]
    );
    let stored = export(&d, "default");
    let call = stored.iter().find(|m| m["userId"] == "c1").unwrap();
    assert_eq!(call["properties"]["duration_minutes"], 12);
    assert_eq!(call["timestamp"], "2025-03-01T10:00:00.000Z");
}

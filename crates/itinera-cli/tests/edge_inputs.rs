//! Inputs at the edges get a clear answer naming the field, as JSON: encodings the server does
//! not speak, bodies over the limit, ids beyond 2^53, ranges that end before they start, and a
//! time-zone offset at the end of its type.

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn edge_inputs_get_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let s = Server::start(&data, &[]);
    let c = reqwest::blocking::Client::new();

    // Content-Encoding other than gzip: 415 naming it, not taken as plain
    let r = c
        .post(s.url("/v1/track"))
        .basic_auth(&keys.write_key, Some(""))
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body(r#"{"userId":"u","event":"e"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    let body: Value = r.json().unwrap();
    assert!(body["error"].as_str().unwrap().contains("br"), "{body}");

    // a body over the transport limit: 413 as JSON, like one over the batch limit
    let huge = format!(
        r#"{{"batch":[{{"userId":"u","event":"{}"}}]}}"#,
        "x".repeat(3 << 20)
    );
    // a connection of its own: the server answers before reading the rest and closes it
    let r = reqwest::blocking::Client::new()
        .post(s.url("/v1/batch"))
        .basic_auth(&keys.write_key, Some(""))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().expect("a JSON error");
    assert_eq!(body["success"], false, "{body}");

    // ids beyond 2^53 keep every digit: two people stay two
    for (id, m) in [
        ("12345678901234567890123", "n1"),
        ("12345678901234567890124", "n2"),
    ] {
        let r = c
            .post(s.url("/v1/identify"))
            .basic_auth(&keys.write_key, Some(""))
            .header("content-type", "application/json")
            .body(format!(r#"{{"userId":{id},"messageId":"{m}"}}"#))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // a range that ends before it starts: 400 naming the field
    let r: Value = c
        .post(s.url("/api/v1/funnel"))
        .bearer_auth(&keys.read_token)
        .json(&json!({"steps": [{"match": "e"}], "window": "1d", "from_ms": 2000, "to_ms": 1000}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["errors"][0]["field"], "from_ms", "{r}");

    // the smallest i32 is no offset: refused, not wrapped past the 14-hour check
    let r = c
        .post(s.url("/api/v1/retention"))
        .bearer_auth(&keys.read_token)
        .json(&json!({"cohort": "e", "utc_offset_minutes": i32::MIN}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r: Value = r.json().unwrap();
    assert_eq!(r["errors"][0]["field"], "utc_offset_minutes", "{r}");

    assert_eq!(s.terminate(), Some(0));
    let ids: Vec<String> = export(&data, "default")
        .iter()
        .filter_map(|m| m["userId"].as_str().map(str::to_string))
        .collect();
    assert!(
        ids.contains(&"12345678901234567890123".to_string()),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"12345678901234567890124".to_string()),
        "{ids:?}"
    );
}

/// A new data directory is the owner's alone: it holds the survey-link key and webhook secrets.
#[cfg(unix)]
#[test]
fn a_new_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_keys(&data, "default");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("meta.sqlite")), 0o600);
}

/// With a metrics token configured, `/metrics` answers only with it.
#[test]
fn metrics_can_require_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_keys(&data, "default");
    let s = Server::start(&data, &[("ITINERA_METRICS_TOKEN", "m-secret-token")]);
    let c = reqwest::blocking::Client::new();
    assert_eq!(c.get(s.url("/metrics")).send().unwrap().status(), 401);
    let wrong = c.get(s.url("/metrics")).bearer_auth("nope").send().unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = c
        .get(s.url("/metrics"))
        .bearer_auth("m-secret-token")
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().unwrap().contains("itinera"));
    assert_eq!(
        c.get(s.url("/healthz")).send().unwrap().status(),
        200,
        "health stays open"
    );
}

/// `/metrics` tells what each project's store holds in memory, by part: rows just taken in are
/// counted with their columns and their messages.
#[test]
fn metrics_show_the_memory_of_each_store_by_part() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let s = Server::start(&data, &[]);
    let c = reqwest::blocking::Client::new();
    let batch: Vec<Value> = (0..50)
        .map(|i| serde_json::json!({"type": "track", "userId": format!("u{}", i % 5), "event": "e", "messageId": format!("m{i}")}))
        .collect();
    let (status, _) = common::post(
        &c,
        &s.url("/v1/batch"),
        &keys.write_key,
        &serde_json::json!({"batch": batch}),
    );
    assert_eq!(status, 200);
    let text = c.get(s.url("/metrics")).send().unwrap().text().unwrap();
    let bytes = |part: &str| -> u64 {
        let line = format!("itinera_store_memory_bytes{{project=\"default\",part=\"{part}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {part} in {text}"))
            .parse()
            .unwrap()
    };
    assert!(bytes("memory_columns") > 0 && bytes("memory_messages") > 0);
    assert!(bytes("duplicate_check") > 0 && bytes("dictionaries") > 0);
    assert_eq!(bytes("segment_columns"), 0, "nothing flushed yet");
}

/// A project whose store cannot open makes the server report itself degraded at once, naming
/// the project, not only on that project's first query.
#[test]
fn health_reports_a_project_that_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_keys(&data, "default");
    create_keys(&data, "broken");
    let store = data.join("projects/broken");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("MANIFEST"), b"{ not json").unwrap();
    let s = Server::start(&data, &[]);
    let health: Value = reqwest::blocking::get(s.url("/healthz"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["errors"][0]["project"], "broken", "{health}");
    assert!(
        !health.to_string().contains(data.to_str().unwrap()),
        "no paths: {health}"
    );
}

//! Work the server takes on can be stopped: a long attribution job is cancelled on request, and
//! SIGTERM stops the server while one runs (it once kept a core busy for minutes after both).

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Journeys over forty distinct events, so that Shapley must sample.
fn seed(server: &Server, keys: &Keys) {
    let client = reqwest::blocking::Client::new();
    let mut batch = Vec::new();
    for p in 0..60 {
        for k in 0..40 {
            if (p + k) % 3 == 0 {
                batch.push(
                    json!({"type": "track", "userId": format!("p{p}"), "event": format!("e{k}"),
                                  "timestamp": format!("2025-01-01T00:{:02}:{:02}Z", k, p % 60),
                                  "messageId": format!("m{p}-{k}")}),
                );
            }
        }
        if p % 2 == 0 {
            batch.push(
                json!({"type": "track", "userId": format!("p{p}"), "event": "Order Completed",
                              "timestamp": "2025-01-01T01:00:00Z", "messageId": format!("o{p}"),
                              "properties": {"revenue": 10}}),
            );
        }
    }
    let (status, body) = post(
        &client,
        &server.url("/v1/batch"),
        &keys.write_key,
        &json!({"batch": batch}),
    );
    assert_eq!(status, 200, "{body}");
}

fn start_long_job(server: &Server, keys: &Keys) -> String {
    let r: Value = reqwest::blocking::Client::new()
        .post(server.url("/api/v1/queries"))
        .bearer_auth(&keys.read_token)
        .json(&json!({"attribution": {"by": "event", "models": ["shapley_markov"], "shapley_samples": 1_000_000,
                                       "lookback": "3650d"}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    r["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string()
}

fn status(server: &Server, keys: &Keys, id: &str) -> Value {
    get_json(
        &reqwest::blocking::Client::new(),
        &server.url(&format!("/api/v1/queries/{id}")),
        &keys.read_token,
    )
}

#[test]
fn a_long_job_stops_when_cancelled_and_the_server_when_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let server = Server::start(&data, &[]);
    seed(&server, &keys);

    // cancelled on request: the job ends as cancelled, not after its million samples
    let id = start_long_job(&server, &keys);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        status(&server, &keys, &id)["status"],
        "running",
        "the job is long enough to cancel"
    );
    reqwest::blocking::Client::new()
        .delete(server.url(&format!("/api/v1/queries/{id}")))
        .bearer_auth(&keys.read_token)
        .send()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&server, &keys, &id);
        if s["status"] == "cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "still not stopped: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // SIGTERM while another one runs: the server stops it and exits cleanly
    let id = start_long_job(&server, &keys);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(status(&server, &keys, &id)["status"], "running");
    let asked = Instant::now();
    assert_eq!(server.terminate(), Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "exited after {:?}",
        asked.elapsed()
    );
}

/// A query that outlives its time budget is stopped and answered with the reason.
#[test]
fn a_query_over_its_time_budget_is_stopped_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let server = Server::start(&data, &[("ITINERA_QUERY_TIMEOUT_SECONDS", "1")]);
    seed(&server, &keys);
    let r = reqwest::blocking::Client::new()
        .post(server.url("/api/v1/attribution"))
        .bearer_auth(&keys.read_token)
        .json(
            &json!({"by": "event", "models": ["shapley_markov"], "shapley_samples": 1_000_000,
                      "lookback": "3650d"}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("budget of 1 s"),
        "{body}"
    );
    // a breakdown runs its analyses under the same budget
    let client = reqwest::blocking::Client::new();
    let put = client
        .put(server.url("/api/v1/segments/everyone"))
        .bearer_auth(&keys.edit_token)
        .json(&json!({"rule": {"did": {"match": "e0", "at_least": 0}}}))
        .send()
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().unwrap());
    let r = client
        .post(server.url("/api/v1/breakdown?by=segment"))
        .bearer_auth(&keys.read_token)
        .json(&json!({"attribution": {"by": "event", "models": ["shapley_markov"], "shapley_samples": 1_000_000,
                                       "lookback": "3650d"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("budget of 1 s"),
        "{body}"
    );
}

/// A query that needs more memory than its budget is stopped and answered with the reason,
/// while a small one under the same budget is answered.
#[test]
fn a_query_over_its_memory_budget_is_stopped_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let server = Server::start(&data, &[("ITINERA_QUERY_MEMORY_MB", "2")]);
    // 6,000 persons with journeys of eight events each out of 500: about as many distinct paths
    let client = reqwest::blocking::Client::new();
    for chunk in 0..12 {
        let batch: Vec<Value> = (chunk * 500..(chunk + 1) * 500)
            .flat_map(|p: usize| {
                (0..8).map(move |k| {
                    json!({"type": "track", "userId": format!("p{p}"),
                           "event": format!("e{}", (p * 31 + k * 7) % 500),
                           "timestamp": format!("2025-01-01T00:00:{k:02}Z"),
                           "messageId": format!("m{p}-{k}")})
                })
            })
            .collect();
        let (status, body) = post(
            &client,
            &server.url("/v1/batch"),
            &keys.write_key,
            &json!({"batch": batch}),
        );
        assert_eq!(status, 200, "{body}");
    }
    let ask = |path: &str, body: Value| {
        client
            .post(server.url(path))
            .bearer_auth(&keys.read_token)
            .json(&body)
            .send()
            .unwrap()
    };
    let small = ask(
        "/api/v1/funnel",
        json!({"steps": [{"match": "e1"}, {"match": "e8"}], "window": "1d"}),
    );
    assert_eq!(small.status(), 200, "{}", small.text().unwrap());
    let big = ask("/api/v1/paths", json!({"steps": 8, "top": 100000}));
    assert_eq!(big.status(), 503);
    let body: Value = big.json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("memory than its budget of 2 MiB"),
        "{body}"
    );
}

/// Tokens are rate-limited once they check out: many requests at once get 429 with the wait,
/// while made-up tokens (401) do not use up a real one's budget.
#[test]
fn tokens_are_rate_limited_after_they_check_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let server = Server::start(&data, &[("ITINERA_TOKEN_RATE_PER_SECOND", "1")]);
    let client = reqwest::blocking::Client::new();
    let get = |token: &str| {
        client
            .get(server.url("/api/v1/segments"))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    for _ in 0..10 {
        assert_eq!(get("rt_made_up_000000000000000000000000").status(), 401);
    }
    assert_eq!(
        get(&keys.read_token).status(),
        200,
        "made-up tokens used nothing up"
    );
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10).map(|_| s.spawn(|| get(&keys.read_token))).collect();
        handles
            .into_iter()
            .map(|h| {
                let r = h.join().unwrap();
                if r.status() == 429 {
                    assert!(r.headers().get("retry-after").is_some());
                }
                r.status().as_u16()
            })
            .collect()
    });
    assert!(statuses.contains(&429), "{statuses:?}");
}

//! `itinera demo` is alive: its history ends now, and a trickle of new journeys reaches the store
//! through the tracking API while it runs.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_demo_history_ends_now_and_live_journeys_arrive_through_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_str().unwrap();
    let mut child = Command::new(common::bin())
        .args([
            "demo",
            "--data",
            data,
            "--customers",
            "200",
            "--live-rate",
            "50",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("ITINERA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut base, mut token) = (String::new(), String::new());
    let mut line = String::new();
    while token.is_empty() {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the demo stopped before serving"
        );
        if let Some(rest) = line.strip_prefix("Itinera is running at ") {
            base = rest.trim().trim_end_matches('/').to_string();
        }
        if let Some(t) = line.trim().strip_prefix("read token (query): ") {
            token = t.to_string();
        }
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    // live people are named live<round>-…; the stage funnel's person count grows with them
    let client = reqwest::blocking::Client::new();
    let persons = || -> u64 {
        let r: serde_json::Value = client
            .post(format!("{base}/api/v1/stages"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"model": "customer-journey"}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        r["persons"].as_u64().unwrap()
    };
    let before = persons();
    let deadline = Instant::now() + Duration::from_secs(60);
    while persons() <= before {
        assert!(
            Instant::now() < deadline,
            "no live journey arrived within a minute"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
    let now = itinera_app::now_ms();
    let messages = common::export(tmp.path(), "default");
    let ts = |m: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(m["timestamp"].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    let live: Vec<_> = messages
        .iter()
        .filter(|m| {
            m["userId"]
                .as_str()
                .or(m["anonymousId"].as_str())
                .unwrap_or("")
                .starts_with("live")
        })
        .collect();
    assert!(!live.is_empty(), "live messages are stored");
    for m in &live {
        assert!(
            (now - ts(m)).abs() < 120_000,
            "live messages are dated now: {m}"
        );
    }
    let history_last = messages
        .iter()
        .filter(|m| {
            !m["userId"]
                .as_str()
                .or(m["anonymousId"].as_str())
                .unwrap_or("")
                .starts_with("live")
        })
        .map(ts)
        .max()
        .unwrap();
    assert!(
        now - history_last < 2 * 86_400_000,
        "the history ends now, not months ago"
    );
}

//! What a newcomer meets first: a selector naming something the data does not have still gets
//! its answer, with a warning that names the field and the closest stored names (on the CLI, a
//! line under the table; in the API's JSON, `warnings`); CLV runs without a calibration date.

mod common;

use common::{create_keys, post, Server};
use std::process::Command;

#[test]
fn a_misspelt_step_is_answered_with_a_did_you_mean() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_str().unwrap();
    let keys = create_keys(tmp.path(), "default");
    let server = Server::start(tmp.path(), &[]);
    let client = reqwest::blocking::Client::new();
    let batch = serde_json::json!({"batch": [
        {"type": "track", "userId": "ada", "event": "Product Viewed", "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "track", "userId": "ada", "event": "Order Completed", "timestamp": "2026-01-02T00:00:00Z"},
    ]});
    let (status, _) = post(&client, &server.url("/v1/batch"), &keys.write_key, &batch);
    assert_eq!(status, 200);
    let answer: serde_json::Value = client
        .post(server.url("/api/v1/funnel"))
        .bearer_auth(&keys.read_token)
        .json(&serde_json::json!({"steps": [{"match": "Product Viewd"}, {"match": "Order Completed"}], "window": "7d"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(answer["steps"][0]["count"], 0, "the answer is still given");
    assert_eq!(answer["warnings"][0]["field"], "steps[0].match");
    assert_eq!(answer["warnings"][0]["suggestions"][0], "Product Viewed");
    assert_eq!(
        answer["warnings"].as_array().unwrap().len(),
        1,
        "known names say nothing"
    );
    drop(server);

    let out = Command::new(common::bin())
        .args([
            "query",
            "funnel",
            "--data",
            data,
            "--step",
            "Product Viewd",
            "--step",
            "Order Completed",
        ])
        .env("ITINERA_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: steps[0].match:")
            && stderr.contains("did you mean 'Product Viewed'?"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Product Viewd"),
        "the table is printed"
    );
}

#[test]
fn clv_without_a_calibration_date_fits_all_history_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_str().unwrap();
    let world = tmp.path().join("world.jsonl");
    common::run(&[
        "generate",
        "--out",
        world.to_str().unwrap(),
        "--customers",
        "3000",
        "--seed",
        "5",
    ]);
    common::run(&["import", "--data", data, world.to_str().unwrap()]);
    let out = Command::new(common::bin())
        .args([
            "query", "clv", "--data", data, "--format", "json", "--limit", "5",
        ])
        .env("ITINERA_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("fitting on every purchase up to today"));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // every purchase is in the calibration: nothing is held out
    assert_eq!(r["totals"]["holdout_purchases"], 0);
    assert!(r["totals"]["customers"].as_u64().unwrap() > 100);
    assert!(r["totals"]["predicted_clv"].as_f64().unwrap() > 0.0);
    // the API answers the same question without a date, as the CLI does
    let keys = create_keys(tmp.path(), "default");
    let server = Server::start(tmp.path(), &[]);
    let api = reqwest::blocking::Client::new()
        .post(server.url("/api/v1/clv"))
        .bearer_auth(&keys.read_token)
        .json(&serde_json::json!({"limit": 5}))
        .send()
        .unwrap();
    assert_eq!(api.status(), 200);
    let a: serde_json::Value = api.json().unwrap();
    assert_eq!(a["totals"]["holdout_purchases"], 0);
    assert_eq!(a["totals"]["customers"], r["totals"]["customers"]);
}

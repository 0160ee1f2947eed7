//! The query API and `itinera query` end to end: the CLI on a data directory and through a
//! server give the same answer; tokens are checked; jobs report progress and can be cancelled.

mod common;

use common::*;
use serde_json::{json, Value};

fn world(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("data");
    let w = dir.join("w.jsonl");
    run(&[
        "generate",
        "--out",
        w.to_str().unwrap(),
        "--customers",
        "800",
    ]);
    run(&[
        "import",
        "--data",
        data.to_str().unwrap(),
        w.to_str().unwrap(),
        "--quiet",
    ]);
    data
}

const STEPS: [&str; 4] = [
    "page_view",
    "Product Viewed",
    "Product Added",
    "Order Completed",
];

fn cli_funnel(extra: &[&str]) -> Value {
    let mut args = vec!["query", "funnel", "--window", "7d", "--format", "json"];
    for s in STEPS {
        args.extend(["--step", s]);
    }
    args.extend(extra);
    serde_json::from_str(&run(&args)).unwrap()
}

#[test]
fn funnel_locally_and_through_the_server_agree() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let d = data.to_str().unwrap();
    let local = cli_funnel(&["--data", d]);
    let steps = local["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    let first = steps[0]["count"].as_u64().unwrap();
    assert!(first > 100, "{local}");
    for w in steps.windows(2) {
        assert!(w[1]["count"].as_u64() <= w[0]["count"].as_u64());
    }
    // the engine recovers the ground truth the generator wrote down: consideration, decision and
    // purchase of the B2C journeys (B2B buyers never view products)
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("w.jsonl.truth.json")).unwrap(),
    )
    .unwrap();
    let full: Value = serde_json::from_str(&run(&[
        "query",
        "funnel",
        "--data",
        d,
        "--window",
        "365d",
        "--format",
        "json",
        "--step",
        "page_view|Store Visit",
        "--step",
        "Product Viewed",
        "--step",
        "Product Added",
        "--step",
        "Order Completed",
    ]))
    .unwrap();
    for k in 1..4 {
        assert_eq!(
            full["steps"][k]["count"],
            truth["realized"]["reached"][k],
            "step {}",
            k + 1
        );
    }

    let keys = create_keys(&data, "default");
    let server = Server::start(&data, &[]);
    let url = server.url("");
    let remote = cli_funnel(&["--server", &url, "--token", &keys.read_token]);
    assert_eq!(local, remote);

    // retention: the same through the server
    let retention = |extra: &[&str]| -> Value {
        let mut args = vec![
            "query",
            "retention",
            "--cohort",
            "Product Viewed",
            "--return",
            "page_view",
            "--period",
            "week",
            "--periods",
            "4",
            "--format",
            "json",
        ];
        args.extend(extra);
        serde_json::from_str(&run(&args)).unwrap()
    };
    let local_r = retention(&["--data", d]);
    assert!(
        local_r["cohorts"].as_array().unwrap().len() > 10,
        "{local_r}"
    );
    let total: u64 = local_r["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .sum();
    assert_eq!(total, truth["realized"]["reached"][1].as_u64().unwrap());
    assert_eq!(
        local_r,
        retention(&["--server", &url, "--token", &keys.read_token])
    );

    // repeat purchase rate of the purchase cohorts: the generator's repeat purchasers
    let buyers: Value = serde_json::from_str(&run(&[
        "query",
        "retention",
        "--cohort",
        "Order Completed",
        "--period",
        "month",
        "--data",
        d,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        buyers["repeat_customers"],
        truth["realized"]["repeat_purchasers"]
    );
    let members: u64 = buyers["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .sum();
    assert_eq!(buyers["customers"].as_u64().unwrap(), members);
    assert!(buyers["churn_rate"].as_f64().unwrap() > 0.0);

    // stage models: built-in and custom (TOML), locally and through the server
    let model = dir.path().join("m.toml");
    std::fs::write(
        &model,
        r#"name = "shop"
purchase_stage = "Bought"
churn_after = "60d"
[[stages]]
name = "Looked"
enter = "Product Viewed"
[[stages]]
name = "Bought"
enter = "Order Completed"
[[stages]]
name = "Again"
enter = "Order Completed"
after = "Bought"
"#,
    )
    .unwrap();
    let stages = |extra: &[&str]| -> Value {
        let mut args = vec!["query", "stages", "--format", "json"];
        args.extend(extra);
        serde_json::from_str(&run(&args)).unwrap()
    };
    for m in ["customer-journey", "seven-stage", model.to_str().unwrap()] {
        let local_s = stages(&["--data", d, "--model", m]);
        let reached: Vec<u64> = local_s["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["reached"].as_u64().unwrap())
            .collect();
        assert!(reached.windows(2).all(|w| w[1] <= w[0]), "{m}: {reached:?}");
        assert!(reached[0] > 0);
        assert_eq!(
            local_s,
            stages(&["--server", &url, "--token", &keys.read_token, "--model", m])
        );
    }
    // B2B: accounts staged by their buying group recover the generator's accounts and deals won
    let acc = stages(&["--data", d, "--model", "buyer-journey", "--by-account"]);
    assert_eq!(acc["accounts"]["accounts"], truth["realized"]["accounts"]);
    assert_eq!(
        acc["accounts"]["reached"][2],
        truth["realized"]["accounts_won"]
    );
    let custom = stages(&["--data", d, "--model", model.to_str().unwrap()]);
    // `Looked` is entered by exactly the persons the generator sent to product pages
    assert_eq!(
        custom["stages"][0]["entered"],
        truth["realized"]["reached"][1]
    );
    // saved in the project, the model is used by name, locally and through the server
    run(&[
        "models",
        "set",
        "shop",
        "--file",
        model.to_str().unwrap(),
        "--data",
        d,
    ]);
    assert_eq!(stages(&["--data", d, "--model", "shop"]), custom);
    assert_eq!(
        stages(&[
            "--server",
            &url,
            "--token",
            &keys.read_token,
            "--model",
            "shop"
        ]),
        custom
    );
    let unknown = run_fails(&["query", "stages", "--data", d, "--model", "nope"]);
    assert!(unknown.contains("no built-in or saved model"), "{unknown}");

    // paths: the same locally and through the server; every counted path starts at the start
    let paths = |extra: &[&str]| -> Value {
        let mut args = vec![
            "query",
            "paths",
            "--start",
            "Product Viewed",
            "--steps",
            "4",
            "--node",
            "touchpoint",
            "--clean",
            "^/products/.*=>/products/:id",
            "--conversion",
            "Order Completed",
            "--format",
            "json",
        ];
        args.extend(extra);
        serde_json::from_str(&run(&args)).unwrap()
    };
    let local_p = paths(&["--data", d]);
    assert_eq!(local_p["paths_counted"], truth["realized"]["reached"][1]);
    for p in local_p["top_paths"].as_array().unwrap() {
        assert_eq!(p["path"][0], "Product Viewed", "{p}");
    }
    assert_eq!(
        local_p,
        paths(&["--server", &url, "--token", &keys.read_token])
    );

    let c = reqwest::blocking::Client::new();
    // a write key cannot read
    let r = c
        .post(server.url("/api/v1/funnel"))
        .bearer_auth(&keys.write_key)
        .json(&json!({"steps": [{"match": "page_view"}], "window": "1d"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // invalid queries name the field
    let r = c
        .post(server.url("/api/v1/funnel"))
        .bearer_auth(&keys.read_token)
        .json(&json!({"steps": [{"match": "page_view"}], "window": "1d", "order": "sideways"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().unwrap();
    assert!(
        body["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("order"),
        "{body}"
    );
    let r = c
        .post(server.url("/api/v1/funnel"))
        .bearer_auth(&keys.read_token)
        .json(&json!({"steps": [{"match": "page_view", "optional": true}, {"match": "x"}], "window": "1d"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().unwrap();
    assert_eq!(body["errors"][0]["field"], "steps[0].optional", "{body}");

    // as a job
    let q = json!({"funnel": {"steps": STEPS.iter().map(|s| json!({"match": s})).collect::<Vec<_>>(), "window": "7d"}});
    let r = c
        .post(server.url("/api/v1/queries"))
        .bearer_auth(&keys.read_token)
        .json(&q)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // polled until done; the bound only keeps a hung job from hanging the test run
    let mut status = Value::Null;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        status = c
            .get(server.url(&format!("/api/v1/queries/{id}")))
            .bearer_auth(&keys.read_token)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if status["status"] == "done" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(status["status"], "done", "{status}");
    assert_eq!(status["progress"], 1.0);
    assert_eq!(status["result"], local);
    // cancelling a finished job leaves its result; unknown ids are 404
    let r = c
        .delete(server.url("/api/v1/queries/q_nope"))
        .bearer_auth(&keys.read_token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);

    let doc: Value = c
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    // the served document is the published one (generated from the code, OpenAPI 3.1)
    let published: Value =
        serde_json::from_str(include_str!("../../../docs/openapi.json")).unwrap();
    assert_eq!(doc, published);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/funnel"]["post"].is_object());
}

/// Attribution and CLV: the same answer locally and through the server, and the generator's
/// orders, revenue and repeat purchasers recovered.
#[test]
fn value_analyses_locally_and_through_the_server_agree() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let d = data.to_str().unwrap();
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("w.jsonl.truth.json")).unwrap(),
    )
    .unwrap();
    let keys = create_keys(&data, "default");
    let server = Server::start(&data, &[]);
    let url = server.url("");
    let both = |args: &[&str]| -> Value {
        let mut local = args.to_vec();
        local.extend(["--format", "json", "--data", d]);
        let mut remote = args.to_vec();
        remote.extend([
            "--format",
            "json",
            "--server",
            &url,
            "--token",
            &keys.read_token,
        ]);
        let l: Value = serde_json::from_str(&run(&local)).unwrap();
        let r: Value = serde_json::from_str(&run(&remote)).unwrap();
        assert_eq!(l, r, "{args:?}");
        l
    };

    let attribution = both(&["query", "attribution"]);
    let t = &attribution["totals"];
    let orders =
        t["conversions"].as_f64().unwrap() + t["unattributed_conversions"].as_f64().unwrap();
    assert_eq!(orders, truth["realized"]["orders"].as_f64().unwrap());
    let revenue = t["value"].as_f64().unwrap() + t["unattributed_value"].as_f64().unwrap();
    assert!((revenue - truth["realized"]["revenue"].as_f64().unwrap()).abs() < 1e-6);
    assert_eq!(attribution["models"].as_array().unwrap().len(), 9);
    for model in ["first_touch", "markov", "shapley", "shapley_markov"] {
        let credited: f64 = attribution["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["credit"][model]["conversions"].as_f64().unwrap_or(0.0))
            .sum();
        assert!(
            (credited - t["conversions"].as_f64().unwrap()).abs() < 1e-6,
            "{model}"
        );
    }
    let accounts = both(&["query", "attribution", "--by-account", "--model", "linear"]);
    assert!(accounts["totals"]["conversions"].as_f64().unwrap() > 0.0);

    // after the last event: every purchase is in the calibration period
    let clv = both(&[
        "query",
        "clv",
        "--calibration-end",
        "2100-01-01",
        "--limit",
        "10",
    ]);
    let t = &clv["totals"];
    assert!(
        (t["revenue_to_date"].as_f64().unwrap() - truth["realized"]["revenue"].as_f64().unwrap())
            .abs()
            < 1e-6
    );
    assert_eq!(
        t["repeat_customers"],
        truth["realized"]["repeat_purchasers"]
    );
    assert_eq!(clv["customers"].as_array().unwrap().len(), 10);
    assert!(clv["bg_nbd"]["log_likelihood"].as_f64().unwrap() < 0.0);

    // revenue: the generator's orders and revenue, per currency
    let revenue = both(&["query", "revenue", "--period", "week"]);
    let orders: u64 = revenue["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["orders"].as_u64().unwrap())
        .sum();
    assert_eq!(orders, truth["realized"]["orders"].as_u64().unwrap());
    let gross: f64 = revenue["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["gross_revenue"].as_f64().unwrap())
        .sum();
    assert!((gross - truth["realized"]["revenue"].as_f64().unwrap()).abs() < 1e-6);

    // B2B buying groups and the advocacy loop recover the generator's accounts, deals and referrals
    let accounts = both(&["query", "accounts"]);
    let won = accounts["comparison"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "won")
        .unwrap();
    assert_eq!(won["accounts"], truth["realized"]["accounts_won"]);
    assert_eq!(
        accounts["accounts"].as_array().unwrap().len() as u64,
        truth["realized"]["accounts"].as_u64().unwrap()
    );
    assert!(accounts["roles"]
        .as_array()
        .unwrap()
        .contains(&json!("decision_maker")));
    let advocacy = both(&["query", "advocacy"]);
    assert_eq!(
        advocacy["referrals_sent"],
        truth["realized"]["referrals_sent"]
    );
    assert_eq!(
        advocacy["referred_persons"],
        truth["realized"]["referred_persons"]
    );
    assert_eq!(advocacy["referred_linked"], advocacy["referred_persons"]);
    assert_eq!(
        advocacy["cycle"][0]["count"],
        truth["realized"]["nps_promoters"]
    );

    // typed properties: NPS promoters and responses as the generator wrote them down
    let persons = |step: &str| -> u64 {
        let r: Value = serde_json::from_str(&run(&[
            "query", "funnel", "--data", d, "--format", "json", "--step", step,
        ]))
        .unwrap();
        r["steps"][0]["count"].as_u64().unwrap()
    };
    assert_eq!(
        persons("Survey Responded&properties.survey_kind=nps&properties.score>=9"),
        truth["realized"]["nps_promoters"].as_u64().unwrap()
    );
    assert_eq!(
        persons("Survey Responded&properties.survey_kind=nps"),
        truth["realized"]["nps_responses"].as_u64().unwrap()
    );

    // bad input names the field
    let out = run_fails(&["query", "attribution", "--data", d, "--order", "7"]);
    assert!(out.contains("markov_order"), "{out}");
}

/// Segments and personas: saved in the metadata, applied to any analysis locally and through the
/// server; the generator's purchasers per persona recovered.
#[test]
fn segments_and_personas_filter_every_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let d = data.to_str().unwrap();
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("w.jsonl.truth.json")).unwrap(),
    )
    .unwrap();
    let by_persona = truth["realized"]["reached_by_persona"].as_object().unwrap();
    for (i, name) in by_persona.keys().enumerate() {
        let rule = format!(r#"{{"trait": {{"key": "traits.persona", "is": "{name}"}}}}"#);
        let pos = i.to_string();
        run(&[
            "personas",
            "set",
            name,
            "--rule",
            &rule,
            "--position",
            &pos,
            "--data",
            d,
        ]);
    }
    run(&[
        "segments",
        "set",
        "repeat buyers",
        "--data",
        d,
        "--rule",
        r#"{"did": {"match": "Order Completed", "at_least": 2}}"#,
    ]);
    let bad = run_fails(&[
        "segments",
        "set",
        "bad",
        "--data",
        d,
        "--rule",
        r#"{"trait": {"key": "plan", "is": "x"}}"#,
    ]);
    assert!(bad.contains("not a property"), "{bad}");

    let keys = create_keys(&data, "default");
    let server = Server::start(&data, &[]);
    let url = server.url("");
    let purchasers = |extra: &[&str]| -> u64 {
        let mut args = vec![
            "query",
            "funnel",
            "--step",
            "Order Completed",
            "--format",
            "json",
        ];
        args.extend(extra);
        let r: Value = serde_json::from_str(&run(&args)).unwrap();
        r["steps"][0]["count"].as_u64().unwrap()
    };
    for (name, reached) in by_persona {
        let expected = reached[3].as_u64().unwrap();
        assert_eq!(
            purchasers(&["--data", d, "--persona", name]),
            expected,
            "{name}"
        );
        assert_eq!(
            purchasers(&[
                "--server",
                &url,
                "--token",
                &keys.read_token,
                "--persona",
                name
            ]),
            expected,
            "{name} through the server"
        );
    }
    let repeat = purchasers(&["--data", d, "--segment", "repeat buyers"]);
    assert_eq!(
        repeat,
        truth["realized"]["repeat_purchasers"].as_u64().unwrap()
    );
    let report: Value = serde_json::from_str(&run(&[
        "query", "segments", "--data", d, "--format", "json",
    ]))
    .unwrap();
    assert_eq!(report["segments"][0][1].as_u64().unwrap(), repeat);
    let remote: Value = serde_json::from_str(&run(&[
        "query",
        "segments",
        "--server",
        &url,
        "--token",
        &keys.read_token,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(report, remote);
    let out = run_fails(&[
        "query",
        "funnel",
        "--step",
        "a",
        "--data",
        d,
        "--segment",
        "nope",
    ]);
    assert!(out.contains("no segment named"), "{out}");

    // the API: define, use, delete
    let client = reqwest::blocking::Client::new();
    let put = client
        .put(server.url("/api/v1/segments/b2b"))
        .bearer_auth(&keys.edit_token)
        .json(&json!({"rule": {"trait": {"key": "traits.segment", "is": "b2b"}}}))
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    let b2b: Value = client
        .post(server.url("/api/v1/stages?segment=b2b"))
        .bearer_auth(&keys.read_token)
        .json(&json!({"model": "buyer-journey"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(b2b["persons"], truth["realized"]["b2b_persons"], "{b2b}");
    let del = client
        .delete(server.url("/api/v1/segments/b2b"))
        .bearer_auth(&keys.edit_token)
        .send()
        .unwrap();
    assert_eq!(del.status(), 200);
    let gone = client
        .post(server.url("/api/v1/stages?segment=b2b"))
        .bearer_auth(&keys.read_token)
        .json(&json!({"model": "buyer-journey"}))
        .send()
        .unwrap();
    assert_eq!(gone.status(), 400);
}

/// NPS, CSAT and CES from the CLI equal the same figures computed here from the raw events the
/// generator wrote (and the generator's own NPS counts).
#[test]
fn scores_match_the_raw_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let d = data.to_str().unwrap();
    let mut answers: std::collections::HashMap<String, Vec<f64>> = Default::default();
    for line in std::fs::read_to_string(dir.path().join("w.jsonl"))
        .unwrap()
        .lines()
    {
        let m: Value = serde_json::from_str(line).unwrap();
        if m["event"] == "Survey Responded" {
            let kind = m["properties"]["survey_kind"].as_str().unwrap().to_string();
            answers
                .entry(kind)
                .or_default()
                .push(m["properties"]["score"].as_f64().unwrap());
        }
    }
    let scores = |kind: &str| -> Value {
        serde_json::from_str(&run(&[
            "query", "scores", "--kind", kind, "--data", d, "--format", "json",
        ]))
        .unwrap()
    };
    let share = |v: &[f64], good: &dyn Fn(f64) -> bool| {
        v.iter().filter(|s| good(**s)).count() as f64 / v.len() as f64
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;

    let nps = &answers["nps"];
    let r = scores("nps");
    let expected = 100.0 * (share(nps, &|s| s >= 9.0) - share(nps, &|s| s <= 6.0));
    assert!((r["overall"]["nps"]["nps"].as_f64().unwrap() - expected).abs() < 1e-9);
    assert_eq!(r["overall"]["n"].as_u64().unwrap() as usize, nps.len());
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("w.jsonl.truth.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        r["overall"]["nps"]["promoters"],
        truth["realized"]["nps_promoters"]
    );
    assert_eq!(
        r["overall"]["nps"]["detractors"],
        truth["realized"]["nps_detractors"]
    );
    let (lo, hi) = (
        r["overall"]["nps"]["ci_low"].as_f64().unwrap(),
        r["overall"]["nps"]["ci_high"].as_f64().unwrap(),
    );
    assert!(lo < expected && expected < hi);

    for (kind, good) in [("csat", 4.0), ("ces", 5.0)] {
        let v = &answers[kind];
        let r = scores(kind);
        let o = &r["overall"];
        assert_eq!(o["n"].as_u64().unwrap() as usize, v.len(), "{kind}");
        assert!(
            (o["good_share"]["share"].as_f64().unwrap() - share(v, &|s| s >= good)).abs() < 1e-12,
            "{kind}"
        );
        assert!(
            (o["mean"].as_f64().unwrap() - mean(v)).abs() < 1e-9,
            "{kind}"
        );
        let dist: u64 = o["distribution"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c.as_u64().unwrap())
            .sum();
        assert_eq!(dist as usize, v.len());
    }
}

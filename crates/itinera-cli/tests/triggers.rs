//! Triggers end to end, through the real binary: a stage-entry rule fires once per person for
//! entries after it was switched on (not for history), its webhook is signed and retried with the
//! same idempotency key; a dry run shows who it would have triggered; hold-outs are recorded
//! without a send; and after kill -9 every due action is still sent, each person's with one key.

mod common;

use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const SECRET: &str = "a-trigger-secret-of-some-length";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        // the sink listens on loopback, which an admin must allow (docs/security.md)
        ("ITINERA_OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32"),
        ("ITINERA_WEBHOOK_BACKOFF_MS", "50"),
        ("ITINERA_ALERT_INTERVAL_SECONDS", "0"),
    ]
}

/// A fresh data directory with a project's keys.
struct Project {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    keys: Keys,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let keys = create_keys(&data, "default");
        Project {
            _dir: dir,
            data,
            keys,
        }
    }

    /// `itinera serve` on it with the tests' settings and `extra` ones.
    fn serve(&self, extra: &[(&str, &str)]) -> Server {
        let mut env = env();
        env.extend_from_slice(extra);
        Server::start(&self.data, &env)
    }
}

struct Api<'a> {
    server: &'a Server,
    keys: &'a Keys,
    client: reqwest::blocking::Client,
}

impl<'a> Api<'a> {
    fn new(server: &'a Server, keys: &'a Keys) -> Api<'a> {
        Api {
            server,
            keys,
            client: reqwest::blocking::Client::new(),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .client
            .request(method, self.server.url(path))
            .bearer_auth(&self.keys.edit_token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    fn track(&self, batch: Vec<Value>) {
        let r = self
            .client
            .post(self.server.url("/v1/batch"))
            .basic_auth(&self.keys.write_key, Some(""))
            .json(&json!({ "batch": batch }))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

fn event(user: &str, name: &str, id: &str) -> Value {
    json!({"type": "track", "userId": user, "event": name, "messageId": id})
}

/// Waits until `done` holds for what the sink received, or fails after a generous bound.
fn wait_for(
    received: &Received,
    what: &str,
    done: impl Fn(&[(Vec<(String, String)>, String)]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if done(&received.lock().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited a minute for {what}: {:?}",
            received.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn person_of(request: &(Vec<(String, String)>, String)) -> String {
    let body: Value = serde_json::from_str(&request.1).unwrap();
    body["person"].as_str().unwrap().to_string()
}

#[test]
fn a_stage_entry_fires_once_signed_and_retried_with_one_key() {
    let project = Project::new();
    let server = project.serve(&[]);
    let api = Api::new(&server, &project.keys);
    let (hook, received) = sink(1);
    // history: `old` became a customer before the rule existed
    api.track(vec![event("old", "Order Completed", "h1")]);
    let rule = json!({
        "when": {"enters_stage": {"model": "customer-journey", "stage": "Decision"}},
        "actions": [{"webhook": {"url": hook, "secret": SECRET}}],
        "enabled": true
    });
    let (s, saved) = api.call(reqwest::Method::PUT, "/api/v1/triggers/welcome", Some(rule));
    assert_eq!(s, 200, "{saved}");
    assert_eq!(
        saved["actions"][0]["webhook"]["secret"], "***",
        "secrets are never given back"
    );
    assert!(
        saved["since_ms"].as_i64().is_some(),
        "switched on from now: {saved}"
    );

    // a misspelt stage names the field and the stages there are
    let (s, bad) = api.call(
        reqwest::Method::PUT,
        "/api/v1/triggers/typo",
        Some(
            json!({"when": {"enters_stage": {"model": "customer-journey", "stage": "Decison"}},
                    "actions": [{"webhook": {"url": "http://127.0.0.1:9/x"}}]}),
        ),
    );
    assert_eq!(s, 400, "{bad}");
    assert!(bad.to_string().contains("Decision"), "{bad}");

    api.track(vec![
        event("new1", "Product Viewed", "a1"),
        event("new1", "Order Completed", "a2"),
        event("old", "Order Completed", "a3"),
        event("browser", "Product Viewed", "a4"),
    ]);
    // the first delivery fails (500), the retry carries the same key
    wait_for(&received, "the retried welcome of new1", |r| r.len() >= 2);
    // a second purchase by new1, then a new customer: once new2's webhook came, the evaluator
    // has seen new1's second purchase (arrivals are evaluated in order)
    api.track(vec![event("new1", "Order Completed", "b1")]);
    api.track(vec![event("new2", "Order Completed", "b2")]);
    wait_for(&received, "new2's welcome", |r| {
        r.iter().any(|q| person_of(q) == "new2")
    });
    let got = received.lock().unwrap().clone();
    let persons: Vec<String> = got.iter().map(person_of).collect();
    assert_eq!(
        persons,
        ["new1", "new1", "new2"],
        "once per person, history left alone"
    );
    let keys_of_new1: BTreeSet<&str> = got[..2]
        .iter()
        .map(|q| header(q, "idempotency-key").unwrap())
        .collect();
    assert_eq!(keys_of_new1.len(), 1, "a retry keeps its key");
    for q in &got {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(q.1.as_bytes());
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(header(q, "x-itinera-signature"), Some(want.as_str()));
        let body: Value = serde_json::from_str(&q.1).unwrap();
        assert_eq!(body["because"], "Decision");
        assert_eq!(body["rule"], "welcome");
    }

    // the log: each firing with its action's fate
    let (_, log) = api.call(
        reqwest::Method::GET,
        "/api/v1/triggers/welcome/firings",
        None,
    );
    let firings = log["firings"].as_array().unwrap();
    assert_eq!(firings.len(), 2, "{log}");
    let new1 = firings.iter().find(|f| f["person"] == "new1").unwrap();
    assert_eq!(new1["actions"][0]["status"], "delivered", "{log}");
    assert_eq!(new1["actions"][0]["attempts"], 2, "{log}");

    // a dry run over all history counts everyone who entered Decision, `old` included
    let (s, dry) = api.call(
        reqwest::Method::POST,
        "/api/v1/triggers/dry-run",
        Some(json!({"name": "welcome", "from_ms": 0, "to_ms": 4_102_444_800_000i64})),
    );
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["persons"], 3, "{dry}");

    // a read token may list and dry-run, not change
    let r = api
        .client
        .put(server.url("/api/v1/triggers/welcome"))
        .bearer_auth(&project.keys.read_token)
        .json(&json!({"when": {"event": {"event": "x"}}, "actions": []}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[test]
fn held_out_persons_are_recorded_and_not_sent() {
    let project = Project::new();
    let server = project.serve(&[]);
    let api = Api::new(&server, &project.keys);
    let (hook, received) = sink(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let hours_ago = |h: i64| {
        chrono::DateTime::from_timestamp_millis(now - h * 3_600_000)
            .unwrap()
            .to_rfc3339()
    };
    // sign-ups two hours ago, back-filled; every third person orders an hour later
    let (s, saved) = api.call(
        reqwest::Method::PUT,
        "/api/v1/triggers/signup",
        Some(
            json!({"when": {"event": {"event": "Signed Up"}}, "holdout_percent": 50,
                    "actions": [{"webhook": {"url": hook, "secret": SECRET}}], "enabled": true,
                    "backfill_from_ms": now - 3 * 3_600_000}),
        ),
    );
    assert_eq!(s, 200, "{saved}");
    let mut batch: Vec<Value> = Vec::new();
    for k in 0..40 {
        batch.push(
            json!({"type": "track", "userId": format!("p{k}"), "event": "Signed Up",
                          "messageId": format!("s{k}"), "timestamp": hours_ago(2)}),
        );
        if k % 3 == 0 {
            batch.push(
                json!({"type": "track", "userId": format!("p{k}"), "event": "Order Completed",
                              "messageId": format!("o{k}"), "timestamp": hours_ago(1)}),
            );
        }
    }
    api.track(batch);
    let firings = || {
        api.call(
            reqwest::Method::GET,
            "/api/v1/triggers/signup/firings",
            None,
        )
        .1["firings"]
            .as_array()
            .unwrap()
            .clone()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while firings().len() < 40 {
        assert!(Instant::now() < deadline, "not every sign-up fired");
        std::thread::sleep(Duration::from_millis(50));
    }
    let all = firings();
    let held: BTreeSet<String> = all
        .iter()
        .filter(|f| f["held_out"] == true)
        .map(|f| f["person"].as_str().unwrap().to_string())
        .collect();
    assert!(
        (8..=32).contains(&held.len()),
        "about half of 40 held out, got {}",
        held.len()
    );
    wait_for(&received, "the sends of those not held out", |r| {
        r.len() >= 40 - held.len()
    });
    let sent: BTreeSet<String> = received.lock().unwrap().iter().map(person_of).collect();
    assert_eq!(sent.len(), 40 - held.len());
    assert!(
        sent.is_disjoint(&held),
        "a held-out person was sent an action"
    );

    // did acting help? orders within 90 min of the sign-up, acted on against held out
    let ordered = |p: &&String| p[1..].parse::<u32>().unwrap() % 3 == 0;
    let (s, effect) = api.call(
        reqwest::Method::POST,
        "/api/v1/triggers/signup/effect",
        Some(json!({"outcome": "Order Completed", "within": "90min"})),
    );
    assert_eq!(s, 200, "{effect}");
    assert_eq!(effect["acted"]["n"], sent.len() as u64, "{effect}");
    assert_eq!(
        effect["acted"]["k"],
        sent.iter().filter(ordered).count() as u64
    );
    assert_eq!(effect["held_out"]["n"], held.len() as u64);
    assert_eq!(
        effect["held_out"]["k"],
        held.iter().filter(ordered).count() as u64
    );
    // within 30 min nobody had ordered yet
    let (_, none) = api.call(
        reqwest::Method::POST,
        "/api/v1/triggers/signup/effect",
        Some(json!({"outcome": "Order Completed", "within": "30min"})),
    );
    assert_eq!(none["acted"]["k"], 0, "{none}");
}

/// kill -9 twice: once right after the arrivals are acknowledged (the evaluator has not seen
/// them: they are found again from the store), once while the actions are being sent (the
/// outbox holds the rest). After each restart every person's action arrives, each person's with
/// one idempotency key (repeats allowed: at-least-once).
#[test]
fn due_actions_survive_kill_9_with_their_keys() {
    let project = Project::new();
    let (hook, received) = sink(0);
    let persons_of =
        |r: &[(Vec<(String, String)>, String)]| r.iter().map(person_of).collect::<BTreeSet<_>>();
    let sign_ups = |api: &Api, round: usize| {
        for chunk in 0..10 {
            let batch: Vec<Value> = (chunk * 20..(chunk + 1) * 20)
                .map(|k| {
                    event(
                        &format!("r{round}p{k}"),
                        "Signed Up",
                        &format!("r{round}s{k}"),
                    )
                })
                .collect();
            api.track(batch);
        }
    };
    let mut server = project.serve(&[]);
    {
        let api = Api::new(&server, &project.keys);
        let (s, saved) = api.call(
            reqwest::Method::PUT,
            "/api/v1/triggers/signup",
            Some(json!({"when": {"event": {"event": "Signed Up"}}, "max_per_minute": 100000,
                        "actions": [{"webhook": {"url": hook, "secret": SECRET}}], "enabled": true})),
        );
        assert_eq!(s, 200, "{saved}");
        sign_ups(&api, 1);
    }
    // round 1: killed as soon as every sign-up is acknowledged
    server.kill9();
    let sent_before_1 = received.lock().unwrap().len();
    server = project.serve(&[]);
    wait_for(&received, "round 1 after the restart", |r| {
        persons_of(r).len() >= 200
    });
    // round 2: killed while the actions are being sent
    {
        let api = Api::new(&server, &project.keys);
        sign_ups(&api, 2);
    }
    wait_for(&received, "some of round 2", |r| persons_of(r).len() >= 220);
    server.kill9();
    let sent_before_2 = persons_of(&received.lock().unwrap()).len() - 200;
    let _server = project.serve(&[]);
    wait_for(&received, "round 2 after the restart", |r| {
        persons_of(r).len() >= 400
    });
    let got = received.lock().unwrap().clone();
    let mut keys_by_person: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for q in &got {
        keys_by_person
            .entry(person_of(q))
            .or_default()
            .insert(header(q, "idempotency-key").unwrap().to_string());
    }
    assert_eq!(keys_by_person.len(), 400);
    assert!(
        keys_by_person.values().all(|k| k.len() == 1),
        "a person's action changed its key across a crash"
    );
    eprintln!(
        "kill -9: round 1 {sent_before_1} of 200 sent before the kill; round 2 {sent_before_2} of 200; {} repeats in all (same key)",
        got.len() - 400
    );
}

/// A stall rule: persons in Consideration for a minute without moving on are found by the
/// sweep; one who moved on in time, and one not stalled long enough yet, are not.
#[test]
fn a_stall_is_found_by_the_sweep() {
    let project = Project::new();
    let server = project.serve(&[("ITINERA_TRIGGER_SWEEP_SECONDS", "1")]);
    let api = Api::new(&server, &project.keys);
    let (hook, received) = sink(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let at = |user: &str, name: &str, id: &str, ago_s: i64| {
        let ts = chrono::DateTime::from_timestamp_millis(now - ago_s * 1000).unwrap();
        json!({"type": "track", "userId": user, "event": name, "messageId": id,
               "timestamp": ts.to_rfc3339()})
    };
    api.track(vec![
        at("stuck", "Product Viewed", "v1", 120),
        at("mover", "Product Viewed", "v2", 120),
        at("mover", "Order Completed", "o2", 110),
        at("fresh", "Product Viewed", "v3", 10),
    ]);
    let (s, saved) = api.call(
        reqwest::Method::PUT,
        "/api/v1/triggers/nudge",
        Some(json!({
            "when": {"stalled_in_stage": {"model": "customer-journey", "stage": "Consideration", "after": "1min"}},
            "actions": [{"webhook": {"url": hook, "secret": SECRET}}],
            "enabled": true,
            "backfill_from_ms": now - 600_000
        })),
    );
    assert_eq!(s, 200, "{saved}");
    wait_for(&received, "the stalled person's nudge", |r| !r.is_empty());
    // a second stalled person, found by a later sweep, which saw the others too
    api.track(vec![at("stuck2", "Product Viewed", "v4", 100)]);
    wait_for(&received, "the second nudge", |r| {
        r.iter().any(|q| person_of(q) == "stuck2")
    });
    let persons: BTreeSet<String> = received.lock().unwrap().iter().map(person_of).collect();
    assert_eq!(persons, BTreeSet::from(["stuck".into(), "stuck2".into()]));
    let body: Value = serde_json::from_str(&received.lock().unwrap()[0].1).unwrap();
    assert_eq!(body["because"], "Consideration for 1m", "{body}");
    assert_eq!(
        body["at_ms"],
        now - 120_000 + 60_000,
        "due a minute after the entry"
    );
}

/// The CLI: a rule saved, listed, dry-run over history and its firings read, on a data
/// directory; a refused destination is named.
#[test]
fn the_cli_saves_lists_and_dry_runs_rules() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let lines = dir.path().join("history.jsonl");
    std::fs::write(
        &lines,
        [
            json!({"type": "track", "userId": "a", "event": "Order Completed", "messageId": "1", "timestamp": "2025-03-01T10:00:00Z"}),
            json!({"type": "track", "userId": "b", "event": "Order Completed", "messageId": "2", "timestamp": "2025-03-02T10:00:00Z"}),
            json!({"type": "track", "userId": "c", "event": "Product Viewed", "messageId": "3", "timestamp": "2025-03-02T11:00:00Z"}),
        ]
        .map(|v| v.to_string())
        .join("\n"),
    )
    .unwrap();
    run(&["import", "--data", d, lines.to_str().unwrap()]);
    let refused = run_fails(&[
        "triggers",
        "set",
        "welcome",
        "--data",
        d,
        "--rule",
        r#"{"when": {"enters_stage": {"model": "customer-journey", "stage": "Decision"}}, "actions": [{"webhook": {"url": "http://127.0.0.1:9/hook"}}]}"#,
    ]);
    assert!(refused.contains("actions[0].webhook.url"), "{refused}");
    let out = std::process::Command::new(bin())
        .args([
            "triggers", "set", "welcome", "--data", d, "--rule",
            r#"{"when": {"enters_stage": {"model": "customer-journey", "stage": "Decision"}}, "actions": [{"webhook": {"url": "http://127.0.0.1:9/hook", "secret": "s3cret-s3cret"}}], "enabled": true}"#,
        ])
        .env("ITINERA_OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value =
        serde_json::from_str(&run(&["triggers", "list", "--data", d, "--format", "json"])).unwrap();
    assert_eq!(list[0]["name"], "welcome");
    assert_eq!(list[0]["actions"][0]["webhook"]["secret"], "***");
    let dry: Value = serde_json::from_str(&run(&[
        "triggers",
        "dry-run",
        "welcome",
        "--from",
        "2025-03-02",
        "--to",
        "2025-04-01",
        "--data",
        d,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        dry["persons"], 1,
        "only b became a customer in the period: {dry}"
    );
    assert_eq!(dry["sample"][0]["person"], "b");
    let firings = run(&[
        "triggers", "firings", "welcome", "--data", d, "--format", "json",
    ]);
    assert_eq!(firings.trim(), "[]", "history is not back-filled");
    run(&["triggers", "delete", "welcome", "--data", d]);
}

/// E-mail and case actions: the welcome goes to the person's address with their traits filled
/// in, and a case is opened for them, once.
#[test]
fn email_and_case_actions_reach_the_person() {
    let project = Project::new();
    let (port, mails) = smtp_sink();
    let port = port.to_string();
    let server = project.serve(&[
        ("ITINERA_SMTP_HOST", "127.0.0.1"),
        ("ITINERA_SMTP_PORT", port.as_str()),
        ("ITINERA_SMTP_FROM", "hello@itinera.example"),
    ]);
    let api = Api::new(&server, &project.keys);
    let (s, saved) = api.call(
        reqwest::Method::PUT,
        "/api/v1/triggers/welcome",
        Some(json!({
            "when": {"enters_stage": {"model": "customer-journey", "stage": "Decision"}},
            "actions": [
                {"email": {"subject": "Welcome, {{traits.first_name}}", "body": "Your next steps, {{traits.first_name}}."}},
                {"case": {"title": "Onboarding call for {{person}} ({{traits.company}})"}},
                {"set_trait": {"name": "welcomed", "value": "yes"}}
            ],
            "enabled": true
        })),
    );
    assert_eq!(s, 200, "{saved}");
    api.track(vec![
        json!({"type": "identify", "userId": "ada", "messageId": "i1",
               "traits": {"email": "ada@example.org", "first_name": "Ada", "company": "Analytical"}}),
        event("ada", "Order Completed", "o1"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let firings = loop {
        let (_, log) = api.call(
            reqwest::Method::GET,
            "/api/v1/triggers/welcome/firings",
            None,
        );
        let done = log["firings"][0]["actions"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|x| x["status"] != "pending"));
        if done {
            break log;
        }
        assert!(Instant::now() < deadline, "actions still pending: {log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let actions = &firings["firings"][0]["actions"];
    assert_eq!(actions[0]["status"], "delivered", "{firings}");
    assert_eq!(actions[1]["status"], "delivered", "{firings}");
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("To: ada@example.org"), "{}", mails[0]);
    assert!(mails[0].contains("Subject: Welcome, Ada"), "{}", mails[0]);
    assert!(mails[0].contains("Your next steps, Ada."), "{}", mails[0]);
    let (_, cases) = api.call(reqwest::Method::GET, "/api/v1/cases", None);
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0]["title"], "Onboarding call for ada (Analytical)");
    assert_eq!(cases[0]["person"], "ada");
    // the trait puts her in a saved segment that asks for it
    assert_eq!(actions[2]["status"], "delivered", "{firings}");
    let (s, body) = api.call(
        reqwest::Method::PUT,
        "/api/v1/segments/welcomed",
        Some(json!({"rule": {"trait": {"key": "traits.welcomed", "is": "yes"}}})),
    );
    assert_eq!(s, 200, "{body}");
    let (s, stages) = api.call(
        reqwest::Method::POST,
        "/api/v1/stages?segment=welcomed",
        Some(json!({"model": "customer-journey"})),
    );
    assert_eq!(s, 200, "{stages}");
    assert_eq!(stages["persons"], 1, "{stages}");
}

/// A persona rule fires only for the persona's persons; beyond the rule's rate its actions
/// wait their turn, none dropped.
#[test]
fn a_persona_rule_fires_for_its_persons_at_the_rules_rate() {
    let project = Project::new();
    let server = project.serve(&[]);
    let api = Api::new(&server, &project.keys);
    let (hook, received) = sink(0);
    let (s, body) = api.call(
        reqwest::Method::PUT,
        "/api/v1/personas/vip",
        Some(json!({"rule": {"trait": {"key": "traits.tier", "is": "vip"}}})),
    );
    assert_eq!(s, 200, "{body}");
    let (s, saved) = api.call(
        reqwest::Method::PUT,
        "/api/v1/triggers/vip-signup",
        Some(
            json!({"when": {"event": {"event": "Signed Up"}}, "persona": "vip", "max_per_minute": 2,
                    "actions": [{"webhook": {"url": hook, "secret": SECRET}}], "enabled": true}),
        ),
    );
    assert_eq!(s, 200, "{saved}");
    let mut batch = Vec::new();
    for k in 0..7 {
        let tier = if k < 5 { "vip" } else { "basic" };
        batch.push(
            json!({"type": "identify", "userId": format!("u{k}"), "messageId": format!("i{k}"),
                          "traits": {"tier": tier}}),
        );
        batch.push(event(&format!("u{k}"), "Signed Up", &format!("s{k}")));
    }
    api.track(batch);
    wait_for(&received, "the first two sends", |r| r.len() >= 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    let firings = loop {
        let (_, log) = api.call(
            reqwest::Method::GET,
            "/api/v1/triggers/vip-signup/firings",
            None,
        );
        if log["firings"].as_array().is_some_and(|f| f.len() >= 5) {
            break log["firings"].as_array().unwrap().clone();
        }
        assert!(Instant::now() < deadline, "not every vip fired: {log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let persons: BTreeSet<&str> = firings
        .iter()
        .map(|f| f["person"].as_str().unwrap())
        .collect();
    assert_eq!(
        persons,
        BTreeSet::from(["u0", "u1", "u2", "u3", "u4"]),
        "only the persona"
    );
    let states: Vec<&str> = firings
        .iter()
        .map(|f| f["actions"][0]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "delivered").count(),
        2,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "pending").count(),
        3,
        "the rest wait their turn"
    );
    assert_eq!(received.lock().unwrap().len(), 2);
}

/// An account rule: the account fires once its buying group reached the stage (here: all of
/// its members), found by the sweep; a dry run counts accounts.
#[test]
fn an_account_fires_when_its_buying_group_reaches_the_stage() {
    let project = Project::new();
    let server = project.serve(&[("ITINERA_TRIGGER_SWEEP_SECONDS", "1")]);
    let api = Api::new(&server, &project.keys);
    let (hook, received) = sink(0);
    let (s, saved) = api.call(
        reqwest::Method::PUT,
        "/api/v1/triggers/deal",
        Some(
            json!({"when": {"enters_stage": {"model": "customer-journey", "stage": "Decision"}},
                    "account": {"min_share": 1.0},
                    "actions": [{"webhook": {"url": hook, "secret": SECRET}}], "enabled": true}),
        ),
    );
    assert_eq!(s, 200, "{saved}");
    let (s, bad) = api.call(
        reqwest::Method::PUT,
        "/api/v1/triggers/bad",
        Some(
            json!({"when": {"enters_stage": {"model": "customer-journey", "stage": "Decision"}},
                    "account": {}, "actions": [{"email": {"subject": "x", "body": "y"}}]}),
        ),
    );
    assert_eq!(s, 400, "{bad}");
    assert!(bad.to_string().contains("actions[0]"), "{bad}");
    let member = |user: &str, event: &str, id: &str| {
        json!({"type": "track", "userId": user, "event": event, "messageId": id,
               "context": {"groupId": "acct-1"}})
    };
    // one of the two members buys: the group has not reached Decision yet
    api.track(vec![
        member("alice", "Product Viewed", "a1"),
        member("bob", "Product Viewed", "b1"),
        member("alice", "Order Completed", "a2"),
    ]);
    // a single-member account that buys, as a marker that a sweep has run since
    api.track(vec![
        json!({"type": "track", "userId": "carol", "event": "Order Completed",
                          "messageId": "c1", "context": {"groupId": "acct-2"}}),
    ]);
    wait_for(&received, "acct-2", |r| {
        r.iter().any(|q| person_of(q) == "acct-2")
    });
    assert!(
        !received
            .lock()
            .unwrap()
            .iter()
            .any(|q| person_of(q) == "acct-1"),
        "acct-1 fired with half its group"
    );
    api.track(vec![member("bob", "Order Completed", "b2")]);
    wait_for(&received, "acct-1", |r| {
        r.iter().any(|q| person_of(q) == "acct-1")
    });
    let got = received.lock().unwrap().clone();
    let body: Value =
        serde_json::from_str(&got.iter().find(|q| person_of(q) == "acct-1").unwrap().1).unwrap();
    assert_eq!(body["about"], "account");
    assert_eq!(body["because"], "Decision (account)");
    let (s, dry) = api.call(
        reqwest::Method::POST,
        "/api/v1/triggers/dry-run",
        Some(json!({"name": "deal", "from_ms": 0, "to_ms": 4_102_444_800_000i64})),
    );
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["persons"], 2, "two accounts: {dry}");
}

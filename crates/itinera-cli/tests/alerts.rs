//! Alerts end to end: a rule on detractor answers fires once per new answer (not for history,
//! not twice for the same person within the cool-down), is delivered to a webhook signed with
//! HMAC-SHA256 and retried after a failure, logs every attempt and opens a case; an aggregate
//! rule fires once within its cool-down; secrets are never given back.

mod common;

use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

fn nps_answer(user: &str, score: u32, id: &str) -> Value {
    json!({"type": "track", "userId": user, "event": "Survey Responded", "messageId": id,
           "properties": {"survey_id": "nps-relationship", "survey_kind": "nps", "score": score}})
}

#[test]
fn detractor_alerts_are_signed_retried_logged_and_open_cases() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    // the webhook sink listens on loopback, which an admin must allow (docs/security.md)
    let server = Server::start(
        &data,
        &[
            ("ITINERA_ALERT_INTERVAL_SECONDS", "0"),
            ("ITINERA_WEBHOOK_BACKOFF_MS", "50"),
            ("ITINERA_OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32"),
        ],
    );
    let client = reqwest::blocking::Client::new();
    let api = |method: reqwest::Method, path: &str, body: Option<Value>| -> (u16, Value) {
        let mut r = client
            .request(method, server.url(path))
            .bearer_auth(&keys.edit_token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    };
    let track = |batch: Vec<Value>| {
        let r = client
            .post(server.url("/v1/batch"))
            .basic_auth(&keys.write_key, Some(""))
            .json(&json!({"batch": batch}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    let (hook, received) = sink(1);
    let secret = "a-webhook-secret-of-some-length";
    // history before the rule: never alerted
    track(vec![nps_answer("old", 0, "h1")]);
    let (s, rule) = api(
        reqwest::Method::PUT,
        "/api/v1/alerts/rules/detractors",
        Some(
            json!({"scores": {"kind": "nps"}, "trigger": {"response": {"max_score": 6}},
                    "webhook": {"url": hook, "secret": secret}, "open_case": true}),
        ),
    );
    assert_eq!(s, 200, "{rule}");
    assert_eq!(rule["webhook"]["secret"], "***");
    let (_, fired) = api(reqwest::Method::POST, "/api/v1/alerts/evaluate", None);
    assert_eq!(
        fired["fired"].as_array().unwrap().len(),
        0,
        "the first evaluation only starts watching"
    );

    track(vec![
        nps_answer("x", 3, "a1"),
        nps_answer("y", 10, "a2"),
        nps_answer("x", 2, "a3"),
    ]);
    let (_, fired) = api(reqwest::Method::POST, "/api/v1/alerts/evaluate", None);
    let fired = fired["fired"].as_array().unwrap().clone();
    assert_eq!(
        fired.len(),
        1,
        "x once (cool-down), y is a promoter: {fired:?}"
    );
    assert_eq!(fired[0]["payload"]["person"], "x");
    let (_, again) = api(reqwest::Method::POST, "/api/v1/alerts/evaluate", None);
    assert!(
        again["fired"].as_array().unwrap().is_empty(),
        "deduplicated"
    );

    // delivery: a failure, then success after the backoff
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while received.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    for (headers, body) in &got {
        let sig = headers
            .iter()
            .find(|(k, _)| k == "x-itinera-signature")
            .unwrap()
            .1
            .clone();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        let b: Value = serde_json::from_str(body).unwrap();
        assert_eq!(b["alert"]["score"], 3.0);
    }
    let mut delivered = Value::Null;
    while std::time::Instant::now() < deadline {
        let (_, alerts) = api(reqwest::Method::GET, "/api/v1/alerts", None);
        delivered = alerts["alerts"][0].clone();
        if delivered["delivery"] == "delivered" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(delivered["delivery"], "delivered", "{delivered}");
    assert_eq!(delivered["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(delivered["attempts"][0]["status"], 500);

    // the case, and closing the loop
    let (_, cases) = api(reqwest::Method::GET, "/api/v1/cases?status=open", None);
    let case = cases["cases"][0].clone();
    assert_eq!(case["person"], "x");
    let path = format!("/api/v1/cases/{}", case["id"]);
    let (s, updated) = api(
        reqwest::Method::PATCH,
        &path,
        Some(
            json!({"status": "closed", "assignee": "kim", "root_cause": "late delivery", "action": "refund"}),
        ),
    );
    assert_eq!(s, 200);
    assert_eq!(updated["status"], "closed");
    let (s, bad) = api(
        reqwest::Method::PATCH,
        &path,
        Some(json!({"status": "done"})),
    );
    assert_eq!(s, 400, "{bad}");

    // an aggregate rule: NPS below 50 with at least 2 answers in 7 days; once per cool-down
    let (s, _) = api(
        reqwest::Method::PUT,
        "/api/v1/alerts/rules/nps-low",
        Some(
            json!({"scores": {"kind": "nps"}, "trigger": {"aggregate": {"window": "7d", "min_n": 2, "below": 50}}, "cooldown": "1d"}),
        ),
    );
    assert_eq!(s, 200);
    let (_, fired) = api(reqwest::Method::POST, "/api/v1/alerts/evaluate", None);
    let agg: Vec<&Value> = fired["fired"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "nps-low")
        .collect();
    assert_eq!(agg.len(), 1, "{fired}");
    assert!(agg[0]["payload"]["check"]["reason"]
        .as_str()
        .unwrap()
        .contains("below 50"));
    let (_, fired) = api(reqwest::Method::POST, "/api/v1/alerts/evaluate", None);
    assert!(fired["fired"].as_array().unwrap().is_empty(), "cool-down");

    let (s, bad) = api(
        reqwest::Method::PUT,
        "/api/v1/alerts/rules/bad",
        Some(json!({"scores": {"kind": "nps"}, "trigger": {"aggregate": {"window": "7d"}}})),
    );
    assert_eq!(s, 400);
    assert!(bad.to_string().contains("below or drop"), "{bad}");
    let (_, rules) = api(reqwest::Method::GET, "/api/v1/alerts/rules", None);
    assert!(
        !rules.to_string().contains(secret),
        "secrets are never given back"
    );
}

#[test]
fn alert_emails_go_through_smtp() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let client = reqwest::blocking::Client::new();
    // without a relay, e-mail rules are refused
    {
        let server = Server::start(&data, &[("ITINERA_ALERT_INTERVAL_SECONDS", "0")]);
        let r = client
            .put(server.url("/api/v1/alerts/rules/mail"))
            .bearer_auth(&keys.edit_token)
            .json(&json!({"scores": {"kind": "csat"}, "trigger": {"response": {"max_score": 2}}, "email": ["cx@example.com"]}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let (port, mails) = smtp_sink();
    let port = port.to_string();
    let server = Server::start(
        &data,
        &[
            ("ITINERA_ALERT_INTERVAL_SECONDS", "0"),
            ("ITINERA_SMTP_HOST", "127.0.0.1"),
            ("ITINERA_SMTP_PORT", &port),
            ("ITINERA_SMTP_FROM", "alerts@itinera.example"),
        ],
    );
    let put = client
        .put(server.url("/api/v1/alerts/rules/unhappy-delivery"))
        .bearer_auth(&keys.edit_token)
        .json(&json!({"scores": {"kind": "csat"}, "trigger": {"response": {"max_score": 2}}, "email": ["cx@example.com", "lead@example.com"], "open_case": true}))
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    let evaluate = || -> Value {
        client
            .post(server.url("/api/v1/alerts/evaluate"))
            .bearer_auth(&keys.edit_token)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    // the first evaluation starts the new rule's watch; it must have run (not failed)
    let first = evaluate();
    assert!(first["fired"].is_array(), "first evaluation: {first}");
    let r = client
        .post(server.url("/v1/identify"))
        .basic_auth(&keys.write_key, Some(""))
        .json(&json!({"userId": "maria", "traits": {"email": "maria@example.org"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(server.url("/v1/track"))
        .basic_auth(&keys.write_key, Some(""))
        .json(&json!({"userId": "maria", "event": "Survey Responded",
                      "properties": {"survey_id": "csat-delivery", "survey_kind": "csat", "score": 1}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let second = evaluate();
    assert_eq!(
        second["fired"].as_array().map(Vec::len),
        Some(1),
        "after the first: {first}; then: {second}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while mails.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mail = mails
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("an e-mail arrived");
    assert!(
        mail.contains("Subject: [Itinera] unhappy-delivery: maria answered 1"),
        "{mail}"
    );
    assert!(mail.contains("From: alerts@itinera.example"));
    assert!(mail.contains("cx@example.com") && mail.contains("lead@example.com"));
    let mut attempt = Value::Null;
    while std::time::Instant::now() < deadline {
        let alerts: Value = get_json(&client, &server.url("/api/v1/alerts"), &keys.read_token);
        attempt = alerts["alerts"][0]["attempts"][0].clone();
        if !attempt.is_null() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(attempt["channel"], "email");
    assert_eq!(attempt["status"], 250);

    // closing the loop: a follow-up survey to the customer, by e-mail, recorded on the case
    let put = client
        .put(server.url("/api/v1/surveys/csat-follow-up"))
        .bearer_auth(&keys.edit_token)
        .json(&json!({"kind": "csat", "question": {"en": "Did we solve your problem?"}}))
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    let cases: Value = get_json(&client, &server.url("/api/v1/cases"), &keys.read_token);
    let case_id = cases["cases"][0]["id"].as_i64().unwrap();
    let follow: Value = client
        .post(server.url(&format!("/api/v1/cases/{case_id}/follow-up")))
        .bearer_auth(&keys.edit_token)
        .json(&json!({"survey": "csat-follow-up"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(follow["emailed_to"], "maria@example.org", "{follow}");
    assert_eq!(follow["case"]["status"], "waiting_on_customer");
    let path = follow["path"].as_str().unwrap();
    assert!(follow["case"]["follow_up"].as_str().unwrap().contains(path));
    while mails.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mail = mails.lock().unwrap()[1].clone();
    assert!(
        mail.contains("maria@example.org") && mail.contains("Did we solve your problem?"),
        "{mail}"
    );
    // the link in the e-mail opens the survey for maria
    let page = client.get(server.url(path)).send().unwrap();
    assert_eq!(page.status(), 200);
}

/// A loopback receiver that answers every request with a redirect to `location`, counting them.
fn redirecting_sink(location: &str) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hits = Arc::new(Mutex::new(0));
    let (hits2, location) = (hits.clone(), location.to_string());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            read_request(&stream);
            *hits2.lock().unwrap() += 1;
            write!(
                stream,
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
        }
    });
    (url, hits)
}

/// Webhooks reach only what an admin allowed: loopback, private, link-local (metadata) and
/// mapped addresses are refused when a rule is saved, naming the field; with loopback allowed,
/// a redirect is not followed (a failed attempt) and its target receives nothing.
#[test]
fn webhooks_reach_only_allowed_destinations_and_follow_no_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let client = reqwest::blocking::Client::new();
    let put_rule = |server: &Server, url: &str| -> (u16, Value) {
        let r = client
            .put(server.url("/api/v1/alerts/rules/hook"))
            .bearer_auth(&keys.edit_token)
            .json(
                &json!({"scores": {"kind": "nps"}, "trigger": {"response": {"max_score": 6}},
                          "webhook": {"url": url, "secret": "a-webhook-secret-of-some-length"}}),
            )
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    };
    let (target, target_got) = sink(1);
    {
        let server = Server::start(&data, &[("ITINERA_ALERT_INTERVAL_SECONDS", "0")]);
        // the data the rule's query needs
        let r = client
            .post(server.url("/v1/batch"))
            .basic_auth(&keys.write_key, Some(""))
            .json(&json!({"batch": [nps_answer("p", 9, "seed")]}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        for url in [
            target.as_str(),
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]/hook",
            "http://10.0.0.7/hook",
            "file:///etc/passwd",
        ] {
            let (status, body) = put_rule(&server, url);
            assert_eq!(status, 400, "{url}: {body}");
            assert_eq!(body["errors"][0]["field"], "webhook.url", "{url}: {body}");
        }
    }
    let server = Server::start(
        &data,
        &[
            ("ITINERA_ALERT_INTERVAL_SECONDS", "0"),
            ("ITINERA_WEBHOOK_ATTEMPTS", "1"),
            ("ITINERA_OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32"),
        ],
    );
    let (redirect, hits) = redirecting_sink(&target);
    let (status, body) = put_rule(&server, &redirect);
    assert_eq!(status, 200, "{body}");
    let evaluate = || {
        client
            .post(server.url("/api/v1/alerts/evaluate"))
            .bearer_auth(&keys.edit_token)
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()
    };
    evaluate(); // the first evaluation only starts watching
    let r = client
        .post(server.url("/v1/batch"))
        .basic_auth(&keys.write_key, Some(""))
        .json(&json!({"batch": [nps_answer("q", 2, "detractor")]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(evaluate()["fired"].as_array().unwrap().len(), 1);
    // the one attempt ends as failed with the redirect's status; the target never hears of it
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let alert = loop {
        let alerts = get_json(&client, &server.url("/api/v1/alerts"), &keys.read_token);
        if alerts["alerts"][0]["delivery"] == "failed" {
            break alerts["alerts"][0].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery outcome: {alerts}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(alert["attempts"][0]["status"], 307, "{alert}");
    assert_eq!(alert["attempts"].as_array().unwrap().len(), 1, "{alert}");
    assert_eq!(*hits.lock().unwrap(), 1);
    assert!(
        target_got.lock().unwrap().is_empty(),
        "the redirect was followed"
    );
}

/// Every file under `dir` whose bytes (with segments' messages and deltas' names decoded) contain
/// `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
            continue;
        }
        // segments and dictionary deltas are compressed: look into them decoded too
        let hay = itinera_store::inspect::readable_bytes(&p).unwrap();
        if hay.windows(needle.len()).any(|w| w == needle) {
            hits.push(p.display().to_string());
        }
    }
    hits
}

/// `itinera delete --person` reaches the metadata too: the alerts the person's answers fired,
/// their deliveries and their cases are gone from the answers and from every file.
#[test]
fn erasure_reaches_alerts_and_cases() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let person = "erase-me@example.org";
    {
        let server = Server::start(&data, &[("ITINERA_ALERT_INTERVAL_SECONDS", "0")]);
        let client = reqwest::blocking::Client::new();
        let send = |batch: Value| {
            let (status, body) = post(&client, &server.url("/v1/batch"), &keys.write_key, &batch);
            assert_eq!(status, 200, "{body}");
        };
        send(json!({"batch": [nps_answer("someone-else", 9, "seed")]}));
        let rule = client
            .put(server.url("/api/v1/alerts/rules/detractors"))
            .bearer_auth(&keys.edit_token)
            .json(
                &json!({"scores": {"kind": "nps"}, "trigger": {"response": {"max_score": 6}},
                          "open_case": true}),
            )
            .send()
            .unwrap();
        assert_eq!(rule.status(), 200);
        let evaluate = || {
            client
                .post(server.url("/api/v1/alerts/evaluate"))
                .bearer_auth(&keys.edit_token)
                .send()
                .unwrap()
                .json::<Value>()
                .unwrap()
        };
        evaluate();
        send(json!({"batch": [
            {"type": "identify", "userId": person, "anonymousId": "anon-erase",
             "traits": {"email": person}, "messageId": "i1"},
            nps_answer("anon-erase", 1, "a1"),
            nps_answer("kept", 2, "a2"),
        ]}));
        assert_eq!(evaluate()["fired"].as_array().unwrap().len(), 2);
        let cases = get_json(&client, &server.url("/api/v1/cases"), &keys.read_token);
        assert_eq!(cases["cases"].as_array().unwrap().len(), 2, "{cases}");
        assert_eq!(server.terminate(), Some(0));
    }
    assert!(
        !files_containing(&data, b"anon-erase").is_empty(),
        "the test sees the id before"
    );
    let said = run(&[
        "delete",
        "--data",
        data.to_str().unwrap(),
        "--person",
        person,
    ]);
    let _ = said;
    for needle in [person.as_bytes(), b"anon-erase"] {
        assert_eq!(
            files_containing(&data, needle),
            Vec::<String>::new(),
            "{} is still in a file",
            String::from_utf8_lossy(needle)
        );
    }
    let server = Server::start(&data, &[("ITINERA_ALERT_INTERVAL_SECONDS", "0")]);
    let client = reqwest::blocking::Client::new();
    let cases = get_json(&client, &server.url("/api/v1/cases"), &keys.read_token);
    let alerts = get_json(&client, &server.url("/api/v1/alerts"), &keys.read_token);
    assert_eq!(cases["cases"].as_array().unwrap().len(), 1, "{cases}");
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(alerts["alerts"][0]["payload"]["person"], "kept");
}

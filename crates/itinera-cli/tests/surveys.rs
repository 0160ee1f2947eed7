//! Surveys end to end: a definition, a signed link to the hosted page (in English and German),
//! an answer stored as a `Survey Responded` event and counted in the scores; a link cannot answer
//! for someone else; bad answers get clear 4xx errors; the public endpoints are rate-limited; the
//! widget's script and public definition are served.

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn hosted_survey_page_and_widget() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let server = Server::start(&data, &[("ITINERA_SURVEY_RATE_PER_MINUTE", "8")]);
    let client = reqwest::blocking::Client::new();
    let survey = json!({
        "kind": "nps",
        "question": {"en": "How likely are you to recommend us?", "de": "Wie wahrscheinlich empfehlen Sie uns weiter?"},
        "follow_up": {"en": "Why?", "de": "Warum?"},
        "trigger": {"after": "Order Completed", "delay": "1d", "sample_rate": 0.5, "throttle": "90d"},
        "stage": "Retention"
    });
    let put = client
        .put(server.url("/api/v1/surveys/nps-after-order"))
        .bearer_auth(&keys.edit_token)
        .json(&survey)
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    let bad = client
        .put(server.url("/api/v1/surveys/no-english"))
        .bearer_auth(&keys.edit_token)
        .json(&json!({"kind": "csat", "question": {"de": "Zufrieden?"}}))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("English"));

    let link: Value = client
        .post(server.url("/api/v1/surveys/nps-after-order/link"))
        .bearer_auth(&keys.edit_token)
        .json(&json!({"person": "customer-7", "days": 7}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let path = link["path"].as_str().unwrap().to_string();
    let page = client
        .get(server.url(&format!("{path}&lang=de")))
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    assert!(
        html.contains("Wie wahrscheinlich")
            && html.contains("Warum?")
            && html.contains("lang=\"de\"")
    );
    assert_eq!(html.matches("type=\"radio\"").count(), 11, "0 to 10");
    let en = client
        .get(server.url(&path))
        .header("accept-language", "en-GB,en;q=0.8")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(en.contains("How likely"));

    // the link's fields, as the form posts them back
    let q: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(path.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    let post = |person: &str, score: &str| {
        client
            .post(server.url("/s/default/nps-after-order"))
            .form(&[
                ("p", person),
                ("e", &q["e"]),
                ("t", &q["t"]),
                ("score", score),
                ("comment", "fast delivery"),
            ])
            .send()
            .unwrap()
    };
    assert_eq!(
        post("someone-else", "10").status(),
        403,
        "a link answers only for its person"
    );
    assert_eq!(post("customer-7", "11").status(), 400, "outside the scale");
    let ok = post("customer-7", "9");
    assert_eq!(ok.status(), 200);
    assert!(ok.text().unwrap().contains("Thank you"));
    let tampered = client
        .get(server.url(&path.replace(&q["e"], "99999999999999")))
        .send()
        .unwrap();
    assert_eq!(tampered.status(), 403);

    // the answer is a journey event like any other
    let scores: Value = client
        .post(server.url("/api/v1/scores"))
        .bearer_auth(&keys.read_token)
        .json(&json!({"kind": "nps", "by": "survey"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(scores["overall"]["n"], 1, "{scores}");
    assert_eq!(scores["groups"][0]["key"], "nps-after-order");
    assert_eq!(scores["overall"]["nps"]["promoters"], 1);

    // the open answer: searchable, with its sentiment
    let comments: Value = client
        .post(server.url("/api/v1/comments"))
        .bearer_auth(&keys.read_token)
        .json(&json!({"scores": {"kind": "nps"}, "search": "DELIVERY"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(comments["n"], 1, "{comments}");
    assert_eq!(comments["comments"][0]["comment"], "fast delivery");
    let none: Value = client
        .post(server.url("/api/v1/comments"))
        .bearer_auth(&keys.read_token)
        .json(&json!({"scores": {"kind": "nps"}, "search": "refund"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(none["n"], 0);

    // rate limit: 8 a minute per client address
    let mut limited = false;
    for _ in 0..12 {
        if client.get(server.url(&path)).send().unwrap().status() == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "the public survey page is rate-limited");

    // the widget
    let js = client.get(server.url("/widget.js")).send().unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    let js = js.text().unwrap();
    assert!(js.contains("Survey Responded") && js.len() < 12_000);
    let def: Value = client
        .get(server.url(&format!(
            "/v1/surveys/nps-after-order?writeKey={}",
            keys.write_key
        )))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(def["trigger"]["throttle"], "90d");
    let denied = client
        .get(server.url("/v1/surveys/nps-after-order?writeKey=wk_nope"))
        .send()
        .unwrap();
    assert_eq!(denied.status(), 401);
}

#[test]
fn surveys_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    run(&[
        "surveys",
        "set",
        "csat-delivery",
        "--data",
        d,
        "--definition",
        r#"{"kind": "csat", "question": {"en": "How satisfied are you with the delivery?", "de": "Wie zufrieden sind Sie mit der Lieferung?"}}"#,
    ]);
    let bad = run_fails(&[
        "surveys",
        "set",
        "x",
        "--data",
        d,
        "--definition",
        r#"{"kind": "csat"}"#,
    ]);
    assert!(bad.contains("question"), "{bad}");
    let list: Value =
        serde_json::from_str(&run(&["surveys", "list", "--data", d, "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], "csat-delivery");
    let server = Server::start(&data, &[]);
    let base = format!("http://127.0.0.1:{}", server.port);
    let link = run(&[
        "surveys",
        "link",
        "csat-delivery",
        "--person",
        "ana",
        "--data",
        d,
        "--base-url",
        &base,
    ]);
    let page = reqwest::blocking::get(link.trim()).unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    assert!(html.contains("How satisfied"));
    assert_eq!(html.matches("type=\"radio\"").count(), 5, "CSAT 1 to 5");
    drop(server);
    run(&["surveys", "delete", "csat-delivery", "--data", d]);
    assert!(run_fails(&["surveys", "delete", "csat-delivery", "--data", d]).contains("no survey"));
}

/// One link, one answer: the token in another spelling (upper case) is refused, so it cannot
/// count again; and answers with a forged token, from another address, do not use up the
/// person's rate limit before their genuine answer arrives.
#[test]
fn a_link_answers_once_and_forgeries_do_not_block_the_person() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let server = Server::start(&data, &[("ITINERA_SURVEY_RATE_PER_MINUTE", "4")]);
    let client = reqwest::blocking::Client::new();
    let put = client
        .put(server.url("/api/v1/surveys/nps"))
        .bearer_auth(&keys.edit_token)
        .json(&json!({"kind": "nps", "question": {"en": "How likely?"}}))
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    let link: Value = client
        .post(server.url("/api/v1/surveys/nps/link"))
        .bearer_auth(&keys.edit_token)
        .json(&json!({"person": "ana"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let q: std::collections::HashMap<String, String> = url::form_urlencoded::parse(
        link["path"]
            .as_str()
            .unwrap()
            .split_once('?')
            .unwrap()
            .1
            .as_bytes(),
    )
    .into_owned()
    .collect();
    let answer = |client: &reqwest::blocking::Client, token: &str| {
        client
            .post(server.url("/s/default/nps"))
            .form(&[("p", "ana"), ("e", &q["e"]), ("t", token), ("score", "0")])
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    // forgeries from another loopback address, more than the per-minute limit
    let elsewhere = reqwest::blocking::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let forged = "0".repeat(64);
    let statuses: Vec<u16> = (0..6).map(|_| answer(&elsewhere, &forged)).collect();
    assert!(
        statuses.iter().all(|s| *s == 403 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&403));
    // the genuine answer still gets in; the upper-case spelling of the same token does not
    assert_eq!(answer(&client, &q["t"]), 200);
    assert_eq!(answer(&client, &q["t"].to_uppercase()), 403);
    assert_eq!(
        answer(&client, &q["t"]),
        200,
        "answering again is acknowledged"
    );
    let scores: Value = client
        .post(server.url("/api/v1/scores"))
        .bearer_auth(&keys.read_token)
        .json(&json!({"kind": "nps"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(scores["overall"]["n"], 1, "one link, one answer: {scores}");
}

//! `itinera users …` and `itinera maps …`: users created on the command line log in through the
//! API with their role; a map exported and imported is the same map, and a broken one is refused
//! naming its field.

mod common;

use common::{run, run_fails, Server};
use std::io::Write;
use std::process::{Command, Stdio};

fn create_user(data: &str, email: &str, role: &str, password: &str) -> std::process::Output {
    let mut child = Command::new(common::bin())
        .args([
            "users", "create", "--email", email, "--role", role, "--data", data,
        ])
        .env("ITINERA_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn users_from_the_cli_log_in_with_their_role() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_str().unwrap();
    assert!(
        create_user(data, "ed@example.org", "editor", "a long enough password")
            .status
            .success()
    );
    let short = create_user(data, "al@example.org", "admin", "short");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("password"));
    let again = create_user(data, "ED@example.org", "viewer", "a long enough password");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let listed: serde_json::Value =
        serde_json::from_str(&run(&["users", "list", "--data", data, "--format", "json"])).unwrap();
    assert_eq!(listed[0]["email"], "ed@example.org");
    assert_eq!(listed[0]["role"], "editor");
    assert!(
        !listed.to_string().contains("argon2"),
        "hashes are never listed"
    );

    let server = Server::start(tmp.path(), &[]);
    let client = reqwest::blocking::Client::new();
    let login = |password: &str| {
        client
            .post(server.url("/api/v1/session"))
            .json(&serde_json::json!({"email": "ed@example.org", "password": password}))
            .send()
            .unwrap()
    };
    assert_eq!(login("wrong password!").status(), 401);
    let ok = login("a long enough password");
    assert_eq!(ok.status(), 200);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "not Secure unless configured");
    let body: serde_json::Value = ok.json().unwrap();
    assert_eq!(body["user"]["role"], "editor");
    // the login limit (10 a minute per address and e-mail): the 11th attempt is refused
    let statuses: Vec<u16> = (0..10)
        .map(|_| login("wrong password!").status().as_u16())
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    drop(server);

    run(&[
        "users",
        "set-role",
        "ed@example.org",
        "viewer",
        "--data",
        data,
    ]);
    let listed = run(&["users", "list", "--data", data]);
    assert!(listed.contains("viewer"), "{listed}");
    run(&["users", "delete", "ed@example.org", "--data", data]);
    assert!(!run(&["users", "list", "--data", data]).contains("ed@example.org"));
}

#[test]
fn a_map_exported_and_imported_is_the_same_map() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_str().unwrap();
    // the default map exists before anyone saves it
    let blank: serde_json::Value =
        serde_json::from_str(&run(&["maps", "export", "--data", data])).unwrap();
    assert_eq!(blank["format"], "itinera-map/1");
    assert_eq!(blank["map"]["model"], "customer-journey");
    let mut edited = blank.clone();
    edited["name"] = "launch".into();
    edited["map"]["cards"] = serde_json::json!([
        {"id": "c1", "lane": "thoughts", "stage": "Decision", "text": "Lohnt sich das?"},
        {"id": "c2", "lane": "opportunities", "stage": "Retention", "text": "Welcome e-mail",
         "owner": "CRM", "status": "open", "due": "2027-03-01", "variant": "to_be"}
    ]);
    edited["map"]["emotions"]["as_is"] = serde_json::json!({"Decision": -1.5});
    let file = tmp.path().join("launch.json");
    std::fs::write(&file, edited.to_string()).unwrap();
    assert!(run(&["maps", "import", file.to_str().unwrap(), "--data", data]).contains("version 1"));
    let back: serde_json::Value =
        serde_json::from_str(&run(&["maps", "export", "launch", "--data", data])).unwrap();
    let normalise = |v: &serde_json::Value| -> serde_json::Value {
        serde_json::from_value::<itinera_engine::map::MapExport>(v.clone())
            .map(|m| serde_json::to_value(m).unwrap())
            .unwrap()
    };
    assert_eq!(normalise(&back), normalise(&edited));
    assert!(run(&["maps", "list", "--data", data]).contains("launch"));
    // steps typed in the selector form are stored parsed; a broken one is refused by field
    edited["map"]["steps"] = serde_json::json!([
        {"id": "s1", "stage": "Decision", "name": "Orders or trials", "selector": "Order Completed|Trial Started"}
    ]);
    std::fs::write(&file, edited.to_string()).unwrap();
    run(&["maps", "import", file.to_str().unwrap(), "--data", data]);
    let back: serde_json::Value =
        serde_json::from_str(&run(&["maps", "export", "launch", "--data", data])).unwrap();
    assert_eq!(
        back["map"]["steps"][0]["selector"],
        serde_json::json!({"any": [{"event": "Order Completed"}, {"event": "Trial Started"}]})
    );
    edited["map"]["steps"][0]["selector"] = "channel=".into();
    std::fs::write(&file, edited.to_string()).unwrap();
    let err = run_fails(&["maps", "import", file.to_str().unwrap(), "--data", data]);
    assert!(err.contains("steps[0].selector"), "{err}");
    edited["map"]["steps"] = serde_json::json!([]);
    // a card in a stage the model does not have is refused, naming the field
    edited["map"]["cards"][0]["stage"] = "Decisoin".into();
    std::fs::write(&file, edited.to_string()).unwrap();
    let err = run_fails(&["maps", "import", file.to_str().unwrap(), "--data", data]);
    assert!(
        err.contains("cards[0].stage") && err.contains("Decisoin"),
        "{err}"
    );
}

//! A damaged write-ahead log, from outside: a flipped byte in the middle of the newest log is
//! reported (file and offset) by every command that opens the store, nothing is cut or skipped,
//! and `itinera recover` sets exactly the damaged batch aside, keeping every other one.

mod common;

use common::*;
use serde_json::json;
use std::collections::BTreeSet;

#[test]
fn a_damaged_log_is_reported_and_recovered_without_losing_the_good_batches() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let server = Server::start(&data, &[]);
    let client = reqwest::blocking::Client::new();
    for b in 0..5 {
        let batch: Vec<_> = (0..20)
            .map(|i| {
                json!({"type": "track", "userId": format!("u{i}"), "event": "Tick",
                            "messageId": format!("b{b}-m{i}")})
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
    // a crash: the five batches are in the log only
    server.kill9();
    let wal = data.join("projects/default/wal");
    let log = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    // walk the frames ([u32 length][u32 crc][payload]) to the middle of the third batch's
    let mut starts = vec![0usize];
    while *starts.last().unwrap() < bytes.len() {
        let at = *starts.last().unwrap();
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        starts.push(at + 8 + len);
    }
    assert_eq!(
        starts.len(),
        6,
        "one frame per acknowledged batch: {starts:?}"
    );
    let third = starts[2];
    bytes[(third + 8 + starts[3]) / 2] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();

    let d = data.to_str().unwrap();
    for args in [
        vec![
            "export",
            "--data",
            d,
            dir.path().join("x.jsonl").to_str().unwrap(),
        ],
        vec!["stats", "--data", d],
    ] {
        let err = run_fails(&args);
        assert!(
            err.contains("write-ahead log") && err.contains(&format!("at byte {third}")),
            "{args:?}: {err}"
        );
    }
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "nothing was cut");

    let said = run_stderr(&["recover", "--data", d]);
    assert!(said.contains("1 damaged region(s) set aside"), "{said}");
    let kept = wal.join(format!(
        "{}.damaged-{third}",
        log.file_name().unwrap().to_str().unwrap()
    ));
    assert_eq!(std::fs::read(&kept).unwrap(), &bytes[third..starts[3]]);
    let ids: BTreeSet<String> = export(&data, "default")
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = (0..5)
        .filter(|b| *b != 2)
        .flat_map(|b| (0..20).map(move |i| format!("b{b}-m{i}")))
        .collect();
    assert_eq!(ids, expected, "every batch but the damaged one");
}

/// Runs `itinera ARGS` that must succeed; its standard error (where recover reports).
fn run_stderr(args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(args)
        .env("ITINERA_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// Exports beside a serving process that flushes and compacts all the time: each one succeeds
/// (starting again when a compaction removed a segment it was about to read) and holds at least
/// what was acknowledged before it began.
#[test]
fn exports_beside_a_compacting_server_succeed_and_are_complete() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = create_keys(&data, "default");
    let cfg = dir.path().join("itinera.toml");
    std::fs::write(
        &cfg,
        "[store]\nflush_rows = 200\ncompact_after_segments = 2\n",
    )
    .unwrap();
    let server = Server::start_with(&data, &["--config", cfg.to_str().unwrap()], &[]);
    let (acked, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let writer = {
        let (acked, stop, url, key) = (
            acked.clone(),
            stop.clone(),
            server.url("/v1/batch"),
            keys.write_key.clone(),
        );
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut b = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<_> = (0..50)
                    .map(|i| {
                        json!({"type": "track", "userId": format!("u{}", i % 7), "event": "Tick",
                                    "messageId": format!("w{b}-{i}")})
                    })
                    .collect();
                let (status, _) = post(&client, &url, &key, &json!({"batch": batch}));
                assert_eq!(status, 200);
                acked.fetch_add(50, Ordering::SeqCst);
                b += 1;
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 1000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for _ in 0..8 {
        let before = acked.load(Ordering::SeqCst);
        let n = export(&data, "default").len();
        assert!(
            n >= before,
            "an export held {n} messages, {before} were acknowledged before it"
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

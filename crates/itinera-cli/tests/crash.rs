//! Crash harness: under concurrent ingest the server is killed with SIGKILL at random moments
//! (flushes and compactions run often, so kills land in them too), restarted, and clients retry
//! what was not acknowledged. At the end every acknowledged message id is stored exactly once and
//! every batch that was never acknowledged is all there or not there at all.

mod common;

use common::*;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 3;
const BATCH: usize = 25;
const ROUNDS: usize = 6;

#[derive(Default)]
struct Ledger {
    acked: Vec<String>,
    /// batches never acknowledged: their ids
    unacked: Vec<Vec<String>>,
}

#[test]
fn sigkill_during_ingest_flush_and_compaction_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = dir.path().join("itinera.toml");
    std::fs::write(
        &cfg,
        "[store]\nflush_rows = 300\ncompact_after_segments = 3\n",
    )
    .unwrap();
    let keys = create_keys(&data, "default");
    let port = free_port();
    let args = ["--config", cfg.to_str().unwrap()];
    let start = |data: &std::path::Path| Server::start_on(data, port, &args, &[]);
    let mut server = start(&data);
    let stop = Arc::new(AtomicBool::new(false));
    let ledgers: Vec<Arc<Mutex<Ledger>>> = (0..CLIENTS)
        .map(|_| Arc::new(Mutex::new(Ledger::default())))
        .collect();
    let url = format!("http://127.0.0.1:{port}/v1/batch");
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, ledger, url, key) = (stop.clone(), ledgers[c].clone(), url.clone(), keys.write_key.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                let mut seq = 0usize;
                let mut retry: Option<Vec<String>> = None;
                while !stop.load(Ordering::Relaxed) {
                    let ids = retry.take().unwrap_or_else(|| {
                        (0..BATCH).map(|_| { seq += 1; format!("c{c}-{seq}") }).collect()
                    });
                    let batch: Vec<_> = ids.iter().map(|id| json!({"type":"track","userId":format!("user-{}", seq % 50),"event":"Tick","messageId":id,"properties":{"pad":"x".repeat(200)}})).collect();
                    match client.post(&url).basic_auth(&key, Some("")).json(&json!({"batch": batch})).send() {
                        Ok(r) if r.status().is_success() => ledger.lock().unwrap().acked.extend(ids),
                        _ => {
                            // not acknowledged: retry once the server is back (dedup keeps it single)
                            std::thread::sleep(Duration::from_millis(20));
                            retry = Some(ids);
                        }
                    }
                }
                if let Some(ids) = retry {
                    ledger.lock().unwrap().unacked.push(ids);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seed = 0x9e37_79b9_u64;
    for _round in 0..ROUNDS {
        if Instant::now() > deadline {
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 450));
        server.kill9();
        server = start(&data);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(server.terminate(), Some(0));

    let stored = export(&data, "default");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in &stored {
        *counts
            .entry(m["messageId"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dupes.is_empty(),
        "stored more than once: {:?}",
        &dupes[..dupes.len().min(5)]
    );
    let mut acked_total = 0;
    for l in &ledgers {
        let l = l.lock().unwrap();
        acked_total += l.acked.len();
        let missing: Vec<_> = l
            .acked
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "acknowledged but lost: {:?}",
            &missing[..missing.len().min(5)]
        );
        for batch in &l.unacked {
            let present: HashSet<_> = batch.iter().filter(|id| counts.contains_key(*id)).collect();
            assert!(
                present.is_empty() || present.len() == batch.len(),
                "half of an unacknowledged batch is stored"
            );
        }
    }
    assert!(
        acked_total > 500,
        "the harness ingested too little to mean anything: {acked_total}"
    );
    assert!(stored.len() >= acked_total);
}

//! Crash harness: under concurrent ingest the server is killed with SIGKILL at random moments
//! (flushes and compactions run often, so kills land in them too) and restarted on a new port.
//!
//! What it holds the server to, and fails on:
//! - any answer other than 200 is a failure (a 4xx or 5xx from a server that should be healthy),
//!   while a connection refused, reset or timed out is what a kill looks like and is retried;
//! - after every restart, every client must get acknowledgments again within a bound (a server
//!   that comes back dead or refusing fails the test);
//! - every batch's fate is in the ledger: acknowledged (then stored exactly once), or abandoned
//!   after a failed attempt (then stored entirely or not at all);
//! - identify and alias messages are in the mix, so persons are merged across kills;
//! - at the end `itinera export`, `itinera stats` and a funnel all agree with the ledger,
//!   recomputed here independently (message ids, events, persons by union-find, funnel counts).

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const CLIENTS: usize = 3;
const BATCH: usize = 20;
const KILLS: usize = 6;
/// Acknowledged batches each client needs after a (re)start before the next kill.
const ACKS_PER_EPOCH: usize = 3;
/// Every `ABANDON_EVERY`-th batch is given up after a failed attempt instead of retried.
const ABANDON_EVERY: usize = 4;
const BASE_MS: i64 = 1_714_000_000_000;

/// One message as sent, kept for the independent recomputation.
#[derive(Clone, Debug)]
struct Sent {
    id: String,
    kind: &'static str,
    /// The message's ids: `userId` first, then `anonymousId` or `previousId`.
    ids: Vec<String>,
    event: Option<&'static str>,
    ts: i64,
}

impl Sent {
    fn to_json(&self) -> Value {
        let ts = chrono_like(self.ts);
        match self.kind {
            "track" => json!({"type": "track", "userId": self.ids[0], "event": self.event,
                              "timestamp": ts, "messageId": self.id, "properties": {"pad": "x".repeat(120)}}),
            "identify" => {
                json!({"type": "identify", "userId": self.ids[0], "anonymousId": self.ids[1],
                                 "timestamp": ts, "messageId": self.id, "traits": {"plan": "pro"}})
            }
            _ => json!({"type": "alias", "userId": self.ids[0], "previousId": self.ids[1],
                        "timestamp": ts, "messageId": self.id}),
        }
    }
}

/// ISO 8601 UTC with milliseconds, without a date crate: days from the civil calendar.
fn chrono_like(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[derive(Default)]
struct Ledger {
    acked: Vec<Vec<Sent>>,
    abandoned: Vec<Vec<Sent>>,
    /// Unexpected answers: status and body.
    failures: Vec<String>,
}

/// The batch a client sends as its `seq`-th. Message `n` is in round `n / 40` for user `n % 40`,
/// ten seconds after message `n - 1`: users first appear by anonymous id, are identified in round
/// 2 (and aliased again every seventh round), and alternate Tick and Tock from round to round.
fn make_batch(c: usize, seq: usize) -> Vec<Sent> {
    (0..BATCH)
        .map(|i| {
            let n = seq * BATCH + i;
            let (round, u) = (n / 40, n % 40);
            let user = format!("c{c}-u{u}");
            let anon = format!("c{c}-anon{u}");
            let ts = BASE_MS + (n as i64) * 10_000;
            let id = format!("c{c}-m{n}");
            if round == 2 {
                Sent {
                    id,
                    kind: "identify",
                    ids: vec![user, anon],
                    event: None,
                    ts,
                }
            } else if round % 7 == 3 {
                Sent {
                    id,
                    kind: "alias",
                    ids: vec![user, anon],
                    event: None,
                    ts,
                }
            } else {
                let event = if round % 2 == 0 { "Tick" } else { "Tock" };
                let who = if round < 2 { anon } else { user };
                Sent {
                    id,
                    kind: "track",
                    ids: vec![who],
                    event: Some(event),
                    ts,
                }
            }
        })
        .collect()
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
    let args = ["--config", cfg.to_str().unwrap()];
    let mut server = Server::start_with(&data, &args, &[]);
    let url = Arc::new(RwLock::new(server.url("/v1/batch")));
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Vec<Arc<AtomicUsize>> = (0..CLIENTS)
        .map(|_| Arc::new(AtomicUsize::new(0)))
        .collect();
    let ledgers: Vec<Arc<Mutex<Ledger>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, ledger, url, key, acks) = (
                stop.clone(),
                ledgers[c].clone(),
                url.clone(),
                keys.write_key.clone(),
                acks[c].clone(),
            );
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut seq = 0;
                let mut pending: Option<Vec<Sent>> = None;
                loop {
                    let batch = match pending.take() {
                        Some(b) => b,
                        None if stop.load(Ordering::Relaxed) => break,
                        None => {
                            seq += 1;
                            make_batch(c, seq - 1)
                        }
                    };
                    let body =
                        json!({"batch": batch.iter().map(Sent::to_json).collect::<Vec<_>>()});
                    let target = url.read().unwrap().clone();
                    match client
                        .post(&target)
                        .basic_auth(&key, Some(""))
                        .json(&body)
                        .send()
                    {
                        Ok(r) if r.status() == 200 => {
                            ledger.lock().unwrap().acked.push(batch);
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let text = r.text().unwrap_or_default();
                            ledger
                                .lock()
                                .unwrap()
                                .failures
                                .push(format!("{status}: {text}"));
                            ledger.lock().unwrap().abandoned.push(batch);
                        }
                        Err(_) if seq % ABANDON_EVERY == 0 && !stop.load(Ordering::Relaxed) => {
                            // given up: this batch must now be stored entirely or not at all
                            ledger.lock().unwrap().abandoned.push(batch);
                        }
                        Err(_) => {
                            // the server is down (killed) or coming up: retry the same batch;
                            // its message ids make a second copy a duplicate
                            std::thread::sleep(Duration::from_millis(20));
                            pending = Some(batch);
                        }
                    }
                }
            })
        })
        .collect();

    let mut seed = 0x9e37_79b9_u64;
    for epoch in 0..=KILLS {
        // every client is acknowledged again after each (re)start, within a bound
        let floor: Vec<usize> = acks.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while acks
            .iter()
            .zip(&floor)
            .any(|(a, f)| a.load(Ordering::Relaxed) < f + ACKS_PER_EPOCH)
        {
            assert!(
                Instant::now() < deadline,
                "after start {epoch}, a client got no acknowledgment within 30 s: {:?} (from {floor:?}); failures: {:?}",
                acks.iter().map(|a| a.load(Ordering::Relaxed)).collect::<Vec<_>>(),
                ledgers.iter().flat_map(|l| l.lock().unwrap().failures.clone()).take(3).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        if epoch == KILLS {
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % 300));
        server.kill9();
        server = Server::start_with(&data, &args, &[]);
        *url.write().unwrap() = server.url("/v1/batch");
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let failures: Vec<String> = ledgers
        .iter()
        .flat_map(|l| l.lock().unwrap().failures.clone())
        .collect();
    assert!(
        failures.is_empty(),
        "answers other than 200: {:?}",
        &failures[..failures.len().min(5)]
    );
    let stats_live: Value = serde_json::from_str(&run(&[
        "stats",
        "--data",
        data.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(server.terminate(), Some(0));

    // the export against the ledger: acknowledged exactly once, abandoned all or nothing
    let stored = export(&data, "default");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in &stored {
        *counts.entry(m["messageId"].as_str().unwrap()).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dupes.is_empty(),
        "stored more than once: {:?}",
        &dupes[..dupes.len().min(5)]
    );
    let mut expected: Vec<Sent> = Vec::new();
    let (mut acked_batches, mut abandoned_stored, mut abandoned_lost) = (0, 0, 0);
    for l in &ledgers {
        let l = l.lock().unwrap();
        for batch in &l.acked {
            acked_batches += 1;
            let missing: Vec<_> = batch
                .iter()
                .filter(|s| !counts.contains_key(s.id.as_str()))
                .collect();
            assert!(
                missing.is_empty(),
                "acknowledged but lost: {:?}",
                &missing[..missing.len().min(3)]
            );
            expected.extend(batch.iter().cloned());
        }
        for batch in &l.abandoned {
            let present = batch
                .iter()
                .filter(|s| counts.contains_key(s.id.as_str()))
                .count();
            assert!(
                present == 0 || present == batch.len(),
                "{present} of {} of an abandoned batch stored",
                batch.len()
            );
            if present > 0 {
                abandoned_stored += 1;
                expected.extend(batch.iter().cloned());
            } else {
                abandoned_lost += 1;
            }
        }
    }
    assert!(acked_batches >= CLIENTS * ACKS_PER_EPOCH * (KILLS + 1));
    assert_eq!(
        stored.len(),
        expected.len(),
        "stored messages vs the ledger"
    );
    eprintln!(
        "crash harness: {KILLS} kills, {acked_batches} batches acknowledged, abandoned after a failed attempt: \
         {abandoned_stored} stored whole, {abandoned_lost} not at all"
    );

    // stats and a funnel against an independent recomputation from the ledger
    let persons = persons_of(&expected);
    let stats: Value = serde_json::from_str(&run(&[
        "stats",
        "--data",
        data.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(stats["events"], expected.len(), "{stats}");
    assert_eq!(
        stats["persons"],
        persons.values().collect::<HashSet<_>>().len(),
        "{stats}"
    );
    assert_eq!(
        stats_live["events"], stats["events"],
        "stats before and after the clean stop"
    );
    let funnel: Value = serde_json::from_str(&run(&[
        "query",
        "funnel",
        "--data",
        data.to_str().unwrap(),
        "--step",
        "Tick",
        "--step",
        "Tock",
        "--window",
        "10m",
        "--format",
        "json",
    ]))
    .unwrap();
    let (ticked, converted) = tick_tock(&expected, &persons, 600_000);
    assert_eq!(funnel["steps"][0]["count"], ticked, "{funnel}");
    assert_eq!(funnel["steps"][1]["count"], converted, "{funnel}");
    assert!(converted > 0, "the funnel converts somebody");
}

/// Each id's person: ids joined by identify and alias messages (union-find), the smallest id
/// naming the person.
fn persons_of(sent: &[Sent]) -> BTreeMap<String, String> {
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    fn find(parent: &mut BTreeMap<String, String>, x: &str) -> String {
        let mut x = x.to_string();
        loop {
            let p = parent.entry(x.clone()).or_insert_with(|| x.clone()).clone();
            if p == x {
                return x;
            }
            x = p;
        }
    }
    for s in sent {
        let a = find(&mut parent, &s.ids[0]);
        for other in &s.ids[1..] {
            let b = find(&mut parent, other);
            if a != b {
                let (lo, hi) = if a < b {
                    (a.clone(), b)
                } else {
                    (b, a.clone())
                };
                parent.insert(hi, lo);
            }
        }
    }
    let ids: Vec<String> = parent.keys().cloned().collect();
    ids.into_iter()
        .map(|id| (id.clone(), find(&mut parent, &id)))
        .collect()
}

/// Persons with a Tick, and those with a Tock within `window_ms` after one of their Ticks (the
/// first Tick starts the best chain for a two-step funnel).
fn tick_tock(sent: &[Sent], persons: &BTreeMap<String, String>, window_ms: i64) -> (usize, usize) {
    let mut by_person: HashMap<&str, Vec<(i64, &str)>> = HashMap::new();
    for s in sent {
        if let Some(e) = s.event {
            by_person
                .entry(persons[&s.ids[0]].as_str())
                .or_default()
                .push((s.ts, e));
        }
    }
    let (mut ticked, mut converted) = (0, 0);
    for rows in by_person.values() {
        let ticks: Vec<i64> = rows.iter().filter(|r| r.1 == "Tick").map(|r| r.0).collect();
        if ticks.is_empty() {
            continue;
        }
        ticked += 1;
        if rows
            .iter()
            .any(|&(ts, e)| e == "Tock" && ticks.iter().any(|&t| ts >= t && ts - t <= window_ms))
        {
            converted += 1;
        }
    }
    (ticked, converted)
}

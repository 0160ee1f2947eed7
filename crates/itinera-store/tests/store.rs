use itinera_core::{message, ChannelRules, NormalizeOptions, Touchpoint};
use itinera_store::{ScanOptions, Store, StoreConfig, StoreError};
use serde_json::{json, Value};
use std::path::Path;

fn tp(v: Value) -> Touchpoint {
    let text = v.to_string();
    let m = message::normalize(&text, None, None, &NormalizeOptions::at(now()), || {
        "gen".into()
    })
    .unwrap();
    Touchpoint::from_message(m, &ChannelRules::default())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn track(id: &str, user: &str, event: &str, minute: i64) -> Touchpoint {
    tp(
        json!({"type":"track","messageId":id,"userId":user,"event":event,
        "timestamp": message::format_ts(1_699_000_000_000 + minute * 60_000)}),
    )
}

fn small() -> StoreConfig {
    StoreConfig {
        flush_rows: 1_000_000,
        ..Default::default()
    }
}

/// (person id string, [event names in order]) for every person. Checks on the way that the
/// batch scan gives what the per-person scan gives, whole and over a time range.
fn journeys(store: &Store) -> Vec<(String, Vec<String>)> {
    let snap = store.snapshot();
    let by_person = |opts: &ScanOptions| {
        let parts = snap.scan_persons(opts, Vec::new, |acc, p| {
            acc.push((p.person, p.ts.to_vec(), p.event.to_vec()))
        });
        let mut all: Vec<_> = parts.into_iter().flatten().collect();
        all.sort();
        all
    };
    let by_batch = |opts: &ScanOptions| {
        let parts = snap.scan_batches(opts, Vec::new, |acc, b| {
            for k in 0..b.persons.len() {
                let j = b.journey(k);
                acc.push((j.person, j.ts.to_vec(), j.event.to_vec()))
            }
        });
        let mut all: Vec<_> = parts.into_iter().flatten().collect();
        all.sort();
        all
    };
    // persons in time-ordered pieces come to the second closure, read where they lie
    let by_piece = |opts: &ScanOptions| {
        let parts = snap.scan_pieces(
            opts,
            Vec::new,
            |acc, b| {
                for k in 0..b.persons.len() {
                    let j = b.journey(k);
                    acc.push((j.person, j.ts.to_vec(), j.event.to_vec()))
                }
            },
            |acc, b| {
                for k in 0..b.persons.len() {
                    let (ts, ev): (Vec<i64>, Vec<u32>) = b
                        .pieces(k)
                        .flat_map(|(t, e)| t.iter().copied().zip(e.iter().copied()))
                        .unzip();
                    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "pieces in time order");
                    acc.push((b.persons[k], ts, ev))
                }
            },
        );
        let mut all: Vec<_> = parts.into_iter().flatten().collect();
        all.sort();
        all
    };
    let ranged = ScanOptions {
        from_ms: Some(1_699_000_000_000 + 2 * 60_000),
        to_ms: Some(1_699_000_000_000 + 6 * 60_000),
        ..Default::default()
    };
    // order-free scans of the whole history take whole blocks of persons, whose batches the
    // snapshot builds once and reuses: twice, so that the second comes from the cache
    let free = ScanOptions {
        order_free: true,
        ..Default::default()
    };
    for opts in [ScanOptions::default(), ranged, free.clone(), free] {
        let expected = by_person(&opts);
        assert_eq!(expected, by_batch(&opts), "batches differ: {opts:?}");
        assert_eq!(expected, by_piece(&opts), "pieces differ: {opts:?}");
    }
    let parts = snap.scan_persons(&ScanOptions::default(), Vec::new, |acc, p| {
        acc.push((p.person, p.event.to_vec()))
    });
    let d = store.dicts();
    let mut out: Vec<(String, Vec<String>)> = parts
        .into_iter()
        .flatten()
        .map(|(p, ev)| {
            (
                d.ids().name(p).to_string(),
                ev.iter().map(|e| d.events().name(*e).to_string()).collect(),
            )
        })
        .collect();
    out.sort();
    out
}

fn all_files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in walk(dir) {
        // segments and dictionary deltas are compressed: look into them decoded too
        let hay = itinera_store::inspect::readable_bytes(&e).unwrap();
        if hay.windows(needle.len()).any(|w| w == needle) {
            hits.push(e.display().to_string());
        }
    }
    hits
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[test]
fn append_dedup_recover_flush() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path(), small()).unwrap();
        let o = s
            .append(vec![
                track("m1", "u1", "a", 1),
                track("m2", "u1", "b", 2),
                track("m1", "u1", "a", 1),
            ])
            .unwrap();
        assert_eq!((o.stored, o.duplicates), (2, 1));
        let o = s
            .append(vec![track("m2", "u1", "b", 2), track("m3", "u2", "a", 0)])
            .unwrap();
        assert_eq!((o.stored, o.duplicates), (1, 1));
        s.close();
    }
    // restart: replayed from the log, dedup still knows m1..m3
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(
        journeys(&s),
        vec![
            ("u1".into(), vec!["a".into(), "b".into()]),
            ("u2".into(), vec!["a".into()])
        ]
    );
    assert_eq!(
        s.append(vec![track("m3", "u2", "a", 0)])
            .unwrap()
            .duplicates,
        1
    );
    s.flush().unwrap();
    s.append(vec![track("m4", "u1", "c", 0)]).unwrap();
    s.close();
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(
        journeys(&s)[0],
        ("u1".into(), vec!["c".into(), "a".into(), "b".into()]),
        "rows from segment and log merge by time"
    );
    assert_eq!(
        s.append(vec![track("m1", "u1", "a", 1)])
            .unwrap()
            .duplicates,
        1,
        "dedup survives a flush and restart"
    );
    let stats = s.stats().unwrap();
    assert_eq!(stats.events, 4);
    assert_eq!(stats.persons, 2);
}

/// The files in the store's segment directory, sorted.
fn segment_dir_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("seg"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every close flushes; a store opened and closed without a write leaves its files as they
/// were, while an erasure alone (no rows) is still written.
#[test]
fn flushing_nothing_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    s.append(vec![track("n1", "u1", "a", 1), track("n2", "u2", "b", 2)])
        .unwrap();
    s.flush().unwrap();
    let after_write = segment_dir_files(dir.path());
    let deltas = manifest(dir.path()).deltas.len();
    s.flush().unwrap();
    s.close();
    for _ in 0..3 {
        let s = Store::open(dir.path(), small()).unwrap();
        assert_eq!(journeys(&s).len(), 2);
        s.flush().unwrap();
        s.close();
    }
    assert_eq!(segment_dir_files(dir.path()), after_write);
    assert_eq!(manifest(dir.path()).deltas.len(), deltas);
    // an erasure of rows already in a segment changes nothing in memory, and is flushed
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(s.erase_person("u1").unwrap(), 1);
    s.flush().unwrap();
    s.close();
    assert_eq!(manifest(dir.path()).deltas.len(), deltas + 1);
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(
        journeys(&s),
        vec![("u2".into(), vec!["b".into()])],
        "the erasure outlives a restart"
    );
}

#[test]
fn late_identify_joins_anonymous_history_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let page = |id: &str, anon: &str, m: i64| {
        tp(json!({"type":"page","messageId":id,"anonymousId":anon,
        "timestamp": message::format_ts(1_699_000_000_000 + m * 60_000)}))
    };
    s.append(vec![page("p1", "anon-1", 1), page("p2", "anon-2", 2)])
        .unwrap();
    s.flush().unwrap();
    s.append(vec![track("t1", "user-9", "Signed Up", 5)])
        .unwrap();
    assert_eq!(journeys(&s).len(), 3);
    // identify links anon-1 to user-9; alias links anon-2 too
    s.append(vec![tp(json!({"type":"identify","messageId":"i1","userId":"user-9","anonymousId":"anon-1","timestamp":message::format_ts(1_699_000_000_000 + 6 * 60_000)}))]).unwrap();
    s.append(vec![tp(json!({"type":"alias","messageId":"al","userId":"user-9","previousId":"anon-2","timestamp":message::format_ts(1_699_000_000_000 + 7 * 60_000)}))]).unwrap();
    let j = journeys(&s);
    assert_eq!(j.len(), 1, "{j:?}");
    assert_eq!(
        j[0].1,
        vec!["page_view", "page_view", "Signed Up", "identify", "alias"]
    );
    s.close();
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(journeys(&s).len(), 1, "stitching survives restart");
    s.compact().unwrap();
    s.close();
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(journeys(&s)[0].1.len(), 5, "and compaction");
}

#[test]
fn erasure_removes_the_person_from_queries_then_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let secret = "erase-me@example.org";
    s.append(vec![
        tp(json!({"type":"identify","messageId":"e1","userId":secret,"anonymousId":"anon-secret","traits":{"email":secret},"timestamp":"2024-01-01T00:00:00Z"})),
        track("e2", "keep-me", "a", 1),
    ])
    .unwrap();
    s.flush().unwrap();
    s.append(vec![track("e3", secret, "later", 3)]).unwrap();
    assert_eq!(s.erase_person("anon-secret").unwrap(), 1);
    assert_eq!(
        journeys(&s)
            .iter()
            .map(|j| j.0.as_str())
            .collect::<Vec<_>>(),
        vec!["keep-me"],
        "gone from queries at once"
    );
    let mut exported = Vec::new();
    s.for_each_message(|m| {
        exported.push(m.to_string());
        Ok(())
    })
    .unwrap();
    assert_eq!(exported.len(), 1);
    assert!(
        !all_files_contain(dir.path(), secret.as_bytes()).is_empty(),
        "the test can see the id in files before compaction"
    );
    s.compact().unwrap();
    assert_eq!(
        all_files_contain(dir.path(), secret.as_bytes()),
        Vec::<String>::new(),
        "gone from every file"
    );
    assert_eq!(
        all_files_contain(dir.path(), b"anon-secret"),
        Vec::<String>::new()
    );
    s.close();
    let s = Store::open(dir.path(), small()).unwrap();
    assert_eq!(journeys(&s).len(), 1);
    // the person may come back later; that is a new journey
    s.append(vec![track("e4", secret, "back", 9)]).unwrap();
    assert_eq!(journeys(&s).len(), 2);
}

#[test]
fn newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path(), small()).unwrap().close();
    let p = dir.path().join("MANIFEST");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    m["format"] = json!(99);
    std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
    match Store::open(dir.path(), small()) {
        Err(StoreError::TooNew { found: 99, .. }) => {}
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened a newer format"),
    }
}

/// Small flushes and frequent background merges.
fn merging() -> StoreConfig {
    StoreConfig {
        flush_rows: 500,
        max_memory_rows: 2_000,
        compact_after_segments: 3,
        ..Default::default()
    }
}

#[test]
fn background_flush_and_auto_compaction_keep_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = merging();
    let s = Store::open(dir.path(), cfg.clone()).unwrap();
    let n = append_batches(&s, 40);
    s.flush().unwrap();
    let total: usize = journeys(&s).iter().map(|j| j.1.len()).sum();
    assert_eq!(total, n);
    s.close();
    let s = Store::open(dir.path(), cfg).unwrap();
    let j = journeys(&s);
    assert_eq!(j.iter().map(|j| j.1.len()).sum::<usize>(), n);
    assert_eq!(j.len(), 37);
    assert!(s.stats().unwrap().segments <= 4);
}

/// Rows of one person with the same time in different segments come in the order they were
/// received, whichever segment was written first: both ways round, so that a tie decided by
/// the segments' receive-time ranges is checked against the rows' own receive times.
#[test]
fn equal_times_in_two_segments_keep_the_order_received() {
    let at = |id: &str, event: &str| {
        let t = track(id, "u", event, 5);
        // the next message is received at least a millisecond later
        std::thread::sleep(std::time::Duration::from_millis(3));
        t
    };
    for first_segment_received_first in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), small()).unwrap();
        let (early, late) = (at("m1", "received first"), at("m2", "received second"));
        let (one, two) = match first_segment_received_first {
            true => (early, late),
            false => (late, early),
        };
        s.append(vec![one]).unwrap();
        s.flush().unwrap();
        s.append(vec![two]).unwrap();
        s.flush().unwrap();
        assert_eq!(s.stats().unwrap().segments, 2);
        let events = journeys(&s).remove(0).1;
        assert_eq!(events, ["received first", "received second"]);
    }
}

/// Rows in memory are flushed once writes stop for `flush_when_quiet_ms`, and not before:
/// a quiet server keeps no log records in memory and no log files on disk.
#[test]
fn rows_in_memory_are_flushed_when_writes_stop() {
    let rows_in_memory = |cfg: StoreConfig, wait: std::time::Duration| {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg).unwrap();
        let n = append_batches(&s, 3);
        assert_eq!(
            s.stats().unwrap().memory_rows as usize,
            n,
            "nothing flushed yet"
        );
        let deadline = std::time::Instant::now() + wait;
        // a flush is done when its segment is in and the log it replaces is gone
        let flushed = |st: &itinera_store::StoreStats| st.segments > 0 && st.wal_bytes == 0;
        while !flushed(&s.stats().unwrap()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let stats = s.stats().unwrap();
        assert_eq!(journeys(&s).iter().map(|j| j.1.len()).sum::<usize>(), n);
        (n, stats)
    };
    let quiet = StoreConfig {
        flush_when_quiet_ms: 100,
        ..small()
    };
    // a generous bound for a loaded machine: the flush comes 0.1 s after the last write
    let (n, stats) = rows_in_memory(quiet, std::time::Duration::from_secs(60));
    assert_eq!(stats.memory_rows, 0, "flushed after the writes stopped");
    assert_eq!(stats.segments, 1);
    assert_eq!(stats.events as usize, n);
    assert_eq!(stats.wal_bytes, 0, "the flushed rows' log files are gone");
    let never = StoreConfig {
        flush_when_quiet_ms: 0,
        ..small()
    };
    let (n, stats) = rows_in_memory(never, std::time::Duration::from_millis(500));
    assert_eq!(stats.memory_rows as usize, n, "0: only flush_rows flushes");
    assert_eq!(stats.segments, 0);
}

/// Background compactions leave segments past `compact_max_rows` alone (their memory is
/// bounded); `compact` still merges everything.
#[test]
fn background_compaction_respects_the_size_bound() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        flush_rows: 500,
        max_memory_rows: 2_000,
        compact_after_segments: 2,
        compact_max_rows: 1_200,
        ..Default::default()
    };
    let s = Store::open(dir.path(), cfg).unwrap();
    let n = append_batches(&s, 60);
    s.flush().unwrap();
    let mut sizes: Vec<u64> = manifest(dir.path())
        .segments
        .iter()
        .map(|name| segment_file(dir.path(), name).footer.rows)
        .collect();
    sizes.sort();
    assert!(sizes.len() >= 3, "{sizes:?}");
    assert!(sizes.iter().all(|r| *r <= 2 * 1_200), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<u64>() as usize, n);
    assert_eq!(journeys(&s).iter().map(|j| j.1.len()).sum::<usize>(), n);
    s.compact().unwrap();
    assert_eq!(s.stats().unwrap().segments, 1);
    assert_eq!(journeys(&s).iter().map(|j| j.1.len()).sum::<usize>(), n);
}

fn manifest(dir: &Path) -> itinera_store::manifest::Manifest {
    itinera_store::manifest::Manifest::load(dir)
        .unwrap()
        .unwrap()
}

fn segment_file(dir: &Path, name: &str) -> itinera_store::segment::SegmentFile {
    itinera_store::segment::SegmentFile::open(&dir.join("seg").join(name)).unwrap()
}

/// Every stored message, sorted.
fn messages(s: &Store) -> Vec<String> {
    let mut out = messages_in_order(s);
    out.sort();
    out
}

/// Background compactions rewrite only the columns: the merged segments point to the messages
/// in the files the flushes wrote, which stay (as holders) until a full compaction rewrites
/// every message into one self-contained segment. Every message is exported, also across
/// restarts; after the full compaction, exactly once (a late duplicate is dropped).
#[test]
fn background_compactions_leave_messages_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        // late duplicates reach the segments; a merge keeps one copy
        dedup_window_ms: 0,
        ..merging()
    };
    let s = Store::open(dir.path(), cfg.clone()).unwrap();
    let n = append_batches(&s, 40);
    s.append(batch_of_100("", 3, 37)).unwrap();
    s.flush().unwrap();
    // closing waits for the background merges
    s.close();
    let s = Store::open(dir.path(), cfg.clone()).unwrap();
    let m = manifest(dir.path());
    assert!(!m.holders.is_empty(), "no background compaction ran: {m:?}");
    assert_eq!(s.stats().unwrap().holders, m.holders.len());
    let located = m
        .segments
        .iter()
        .filter(|name| !segment_file(dir.path(), name).footer.holds_bodies())
        .count();
    assert!(located > 0, "{m:?}");
    for h in &m.holders {
        assert!(
            !m.segments.contains(h),
            "{h} is both a segment and a holder"
        );
    }
    // the messages by id: a late duplicate is exported until a merge drops it
    let ids = |s: &Store| -> Vec<String> {
        let mut v: Vec<String> = messages(s)
            .iter()
            .map(|m| serde_json::from_str::<Value>(m).unwrap()["messageId"].to_string())
            .collect();
        v.sort();
        v
    };
    let mut expected = ids(&s);
    expected.dedup();
    assert_eq!(expected.len(), n);
    let bodies = messages(&s);
    s.close();

    let s = Store::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(messages(&s), bodies, "the same messages after a restart");
    s.compact().unwrap();
    let m = manifest(dir.path());
    assert_eq!(m.holders, Vec::<String>::new());
    assert_eq!(s.stats().unwrap().holders, 0);
    assert_eq!(m.segments.len(), 1);
    assert!(segment_file(dir.path(), &m.segments[0])
        .footer
        .holds_bodies());
    let on_disk: Vec<String> = std::fs::read_dir(dir.path().join("seg"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|f| f.ends_with(".seg"))
        .collect();
    assert_eq!(on_disk, m.segments, "the holders are removed");
    assert_eq!(ids(&s), expected, "after a full compaction, once each");
    let compacted = messages(&s);
    assert!(compacted.iter().all(|m| bodies.binary_search(m).is_ok()));
    s.close();
    let s = Store::open(dir.path(), cfg).unwrap();
    assert_eq!(messages(&s), compacted);
    assert_eq!(journeys(&s).iter().map(|j| j.1.len()).sum::<usize>(), n);
}

/// Appends `batches` batches of 100 tracks of 37 users; returns the number of rows.
fn append_batches(s: &Store, batches: usize) -> usize {
    for b in 0..batches {
        s.append(batch_of_100("", b, 37)).unwrap();
    }
    batches * 100
}

/// Batch `b` of 100 tracks of `users` users, message ids starting with `prefix`.
fn batch_of_100(prefix: &str, b: usize, users: usize) -> Vec<Touchpoint> {
    (0..100)
        .map(|i| {
            track(
                &format!("{prefix}b{b}-{i}"),
                &format!("u{}", i % users),
                "e",
                (b * 100 + i) as i64,
            )
        })
        .collect()
}

/// Appends at full speed with memory bounded tightly: the writer's backpressure must never wait
/// on a flush that itself waits on the writer (it once did, and ingest hung for good).
#[test]
fn backpressure_never_deadlocks_with_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        flush_rows: 300,
        max_memory_rows: 600,
        compact_after_segments: 4,
        ..Default::default()
    };
    let s = Store::open(dir.path(), cfg).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let s = s.clone();
            let done_tx = done_tx.clone();
            std::thread::spawn(move || {
                for b in 0..150 {
                    s.append(batch_of_100(&format!("w{w}-"), b, 53)).unwrap();
                }
                done_tx.send(()).unwrap();
            })
        })
        .collect();
    for _ in 0..3 {
        done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("ingest hung: the writer and a flush wait on each other");
    }
    for w in writers {
        w.join().unwrap();
    }
    s.flush().unwrap();
    let total: usize = journeys(&s).iter().map(|j| j.1.len()).sum();
    assert_eq!(total, 3 * 150 * 100);
}

/// An order-free scan hands ranges of persons to whichever thread is free: every person is
/// still seen exactly once, in whole, in batches or one by one, with many ranges per thread.
#[test]
fn order_free_scans_see_every_person_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    let persons = 20_000;
    let batch: Vec<Touchpoint> = (0..persons)
        .flat_map(|p| (0..2).map(move |k| track(&format!("m{p}-{k}"), &format!("u{p}"), "a", k)))
        .collect();
    s.append(batch).unwrap();
    s.flush().unwrap();
    let snap = s.snapshot();
    let fixed = ScanOptions {
        threads: 2,
        ..Default::default()
    };
    let free = ScanOptions {
        order_free: true,
        ..fixed.clone()
    };
    let seen = |opts: &ScanOptions| {
        let parts = snap.scan_persons(opts, Vec::new, |acc, p| acc.push((p.person, p.len())));
        assert_eq!(parts.len(), 2);
        let mut all: Vec<_> = parts.into_iter().flatten().collect();
        all.sort();
        all
    };
    let batched = |opts: &ScanOptions| {
        let parts = snap.scan_batches(opts, Vec::new, |acc, b| {
            acc.extend(
                b.persons
                    .iter()
                    .zip(b.ranges)
                    .map(|(p, r)| (*p, (r.1 - r.0) as usize)),
            )
        });
        let mut all: Vec<_> = parts.into_iter().flatten().collect();
        all.sort();
        all
    };
    let expected = seen(&fixed);
    assert_eq!(expected.len(), persons);
    assert!(expected.iter().all(|(_, n)| *n == 2));
    assert_eq!(seen(&free), expected);
    assert_eq!(batched(&free), expected);
}

/// Threads share the rows, not the persons: the bots and big accounts that hold most rows
/// get the lowest codes, and a split by persons gave one thread nearly all the work.
#[test]
fn heavy_persons_are_shared_over_threads() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    // 8 heavy persons first (the lowest codes), 3,000 rows each, then 2,000 with 2 rows each
    let heavy = (0..8).flat_map(|p| (0..3000).map(move |k| (format!("h{p}"), k)));
    let light = (0..2000).flat_map(|p| (0..2).map(move |k| (format!("l{p}"), k)));
    let batch: Vec<Touchpoint> = heavy
        .chain(light)
        .map(|(u, k)| track(&format!("{u}-{k}"), &u, "a", k))
        .collect();
    let total = batch.len();
    s.append(batch).unwrap();
    s.flush().unwrap();
    let snap = s.snapshot();
    let opts = ScanOptions {
        threads: 2,
        ..Default::default()
    };
    let rows = |parts: Vec<(usize, usize)>| parts.into_iter().map(|p| p.0).collect::<Vec<_>>();
    let per_thread = rows(snap.scan_persons(&opts, || (0, 0), |acc, p| acc.0 += p.len()));
    assert_eq!(per_thread.iter().sum::<usize>(), total);
    assert!(
        per_thread.iter().all(|r| *r * 10 <= total * 6),
        "each thread's share of {total} rows: {per_thread:?}"
    );
    let batched = rows(snap.scan_batches(
        &opts,
        || (0, 0),
        |acc, b| acc.0 += b.ranges.iter().map(|r| (r.1 - r.0) as usize).sum::<usize>(),
    ));
    assert_eq!(batched, per_thread);
}

/// A second opening of a directory in use is refused (it would replay the same log and remove
/// the files the first has not committed yet), except for reading only; once the first is
/// closed, it opens.
#[test]
fn a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small()).unwrap();
    s.append(batch_of_100("", 0, 7)).unwrap();
    match Store::open(dir.path(), small()) {
        Err(StoreError::InUse(p)) => assert_eq!(p, dir.path()),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened a directory in use"),
    }
    // a reader beside the owner sees what the owner stored (segments and log), changes nothing
    // and takes no appends
    s.flush().unwrap();
    s.append(batch_of_100("late-", 1, 7)).unwrap();
    let files = |d: &Path| {
        let mut v: Vec<(String, u64)> = walk(d)
            .iter()
            .map(|p| (p.display().to_string(), std::fs::metadata(p).unwrap().len()))
            .collect();
        v.sort();
        v
    };
    let before = files(dir.path());
    let reader = Store::open(
        dir.path(),
        StoreConfig {
            read_only: true,
            ..small()
        },
    )
    .unwrap();
    assert_eq!(
        journeys(&reader).iter().map(|j| j.1.len()).sum::<usize>(),
        200
    );
    let err = reader
        .append(batch_of_100("r-", 2, 7))
        .unwrap_err()
        .to_string();
    assert!(err.contains("reading only"), "{err}");
    reader.close();
    assert_eq!(files(dir.path()), before, "the reader wrote nothing");
    s.close();
    let again = Store::open(dir.path(), small()).unwrap();
    assert_eq!(
        journeys(&again).iter().map(|j| j.1.len()).sum::<usize>(),
        200
    );
}

/// A reader opened beside a live writer (`itinera query --data` on a served directory) sees every
/// row acknowledged before it opened, while flushes and compactions commit new manifests and
/// delete the log files and segments the old ones named.
#[test]
fn readers_beside_a_flushing_writer_see_every_acknowledged_row() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    // a flush every five batches, a compaction every third flush
    let cfg = StoreConfig {
        flush_rows: 500,
        max_memory_rows: 1_000,
        compact_after_segments: 3,
        ..Default::default()
    };
    let s = Store::open(dir.path(), cfg.clone()).unwrap();
    let acked = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (s, acked) = (s.clone(), acked.clone());
        std::thread::spawn(move || {
            for b in 0..400 {
                s.append(batch_of_100("", b, 37)).unwrap();
                acked.fetch_add(100, Ordering::SeqCst);
            }
        })
    };
    let read_only = StoreConfig {
        read_only: true,
        ..cfg
    };
    let mut opens = 0;
    while !writer.is_finished() {
        let before = acked.load(Ordering::SeqCst) as u64;
        let r = Store::open(dir.path(), read_only.clone()).unwrap();
        let seen = r.stats().unwrap().events;
        assert!(
            seen >= before,
            "a reader saw {seen} rows, {before} were acknowledged before it opened"
        );
        opens += 1;
    }
    writer.join().unwrap();
    assert!(
        opens > 3,
        "only {opens} readers opened while the writer ran"
    );
}

/// Snapshots taken while rows arrive (each one built from the last: memory rows merged into
/// sorted copies, the segments' index kept until a flush or compaction commits) give every
/// person's whole journey in time order, as reading everything anew does; with identities
/// linked on the way, times arriving out of order, flushes and background compactions between.
#[test]
fn snapshots_taken_while_appending_give_whole_journeys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = merging();
    let s = Store::open(dir.path(), cfg.clone()).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // the test's own identity graph: every id linked by an identify is one person
    let mut links: Vec<(String, String)> = Vec::new();
    let mut rows: Vec<(String, i64, String)> = Vec::new(); // (id, minute, event)
    let mut minutes: Vec<i64> = (0..4000).collect();
    for i in (1..minutes.len()).rev() {
        minutes.swap(i, next(i as u64 + 1) as usize);
    }
    let mut n = 0usize;
    for batch in 0..60 {
        let mut b = Vec::new();
        for _ in 0..1 + next(60) {
            let minute = minutes[n];
            let event = format!("e{n}");
            if next(10) == 0 {
                // an identify linking an anonymous id to a user
                let (anon, user) = (format!("a{}", next(30)), format!("u{}", next(8)));
                links.push((anon.clone(), user.clone()));
                b.push(tp(json!({"type":"identify","messageId":format!("m{n}"),"userId":user,"anonymousId":anon,
                    "timestamp": message::format_ts(1_699_000_000_000 + minute * 60_000)})));
                rows.push((user, minute, "identify".into()));
            } else if next(2) == 0 {
                let anon = format!("a{}", next(30));
                b.push(tp(json!({"type":"track","messageId":format!("m{n}"),"anonymousId":anon,"event":event,
                    "timestamp": message::format_ts(1_699_000_000_000 + minute * 60_000)})));
                rows.push((anon, minute, event));
            } else {
                let user = format!("u{}", next(8));
                b.push(track(&format!("m{n}"), &user, &event, minute));
                rows.push((user, minute, event));
            }
            n += 1;
        }
        s.append(b).unwrap();
        if batch % 3 == 0 {
            let expected = expected_journeys(&rows, &links);
            assert_eq!(sequences(&s), expected, "after batch {batch}");
        }
    }
    let expected = expected_journeys(&rows, &links);
    assert_eq!(sequences(&s), expected);
    assert!(s.stats().unwrap().segments >= 1, "flushes happened");
    s.close();
    let s = Store::open(dir.path(), cfg).unwrap();
    assert_eq!(sequences(&s), expected, "after reopening");
}

/// A store being written to is scanned in blocks of persons, each block's person index merged
/// from the segments' and the sorted copies of memory rows as a scan thread takes it. With
/// thousands of persons in every part (several blocks, persons in several segments and copies,
/// identities linked after their rows were flushed, one person alone bigger than a block,
/// persons only in the newest rows), every person comes once and whole, in every kind of scan,
/// and alone by `journey_of`.
#[test]
fn persons_in_many_blocks_and_parts_come_once_and_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        compact_after_segments: 100,
        ..small()
    };
    let s = Store::open(dir.path(), cfg).unwrap();
    let persons = 9_000usize;
    let mut rows = Vec::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let mut n = 0usize;
    type Rows = Vec<(String, i64, String)>;
    fn add(b: &mut Vec<Touchpoint>, rows: &mut Rows, n: &mut usize, id: &str) {
        // times out of order within and between rounds, each its own (no ties to order)
        let minute = ((*n * 7919) % 1_000_003) as i64;
        let event = format!("e{}", *n % 13);
        b.push(track(&format!("m{n}"), id, &event, minute));
        rows.push((id.to_string(), minute, event));
        *n += 1;
    }
    for round in 0..6 {
        let mut b = Vec::new();
        for p in (0..persons).filter(|p| (p + round) % 3 != 0) {
            let id = match round {
                0 | 1 if p % 5 == 0 => format!("a{p}"),
                _ => format!("u{p}"),
            };
            add(&mut b, &mut rows, &mut n, &id);
        }
        // one person with more rows than a block holds
        for _ in 0..3_000 {
            add(&mut b, &mut rows, &mut n, "big");
        }
        if round == 2 {
            // anonymous rows flushed in rounds 0 and 1 join their users' rows
            for p in (0..persons).filter(|p| p % 10 == 0) {
                let (anon, user) = (format!("a{p}"), format!("u{p}"));
                b.push(tp(
                    json!({"type":"identify","messageId":format!("m{n}"),"userId":user,
                    "anonymousId":anon,"timestamp": message::format_ts(1_698_999_940_000)}),
                ));
                rows.push((user.clone(), -1, "identify".into()));
                links.push((anon, user));
                n += 1;
            }
        }
        // appended in two halves with a snapshot between: the rows in memory are in a large
        // sorted copy and tails
        let mut half = b.split_off(b.len() / 2);
        if round == 5 {
            // persons only in the newest rows in memory: blocks of one copy's persons alone
            for p in 0..5_000 {
                add(&mut half, &mut rows, &mut n, &format!("n{p}"));
            }
        }
        s.append(b).unwrap();
        s.snapshot();
        s.append(half).unwrap();
        if round < 3 {
            s.flush().unwrap();
        }
    }
    let st = s.stats().unwrap();
    assert!(st.segments >= 3 && st.memory_rows > 0, "{st:?}");
    let expected = expected_journeys(&rows, &links);
    assert_eq!(st.persons as usize, expected.len());
    assert_eq!(sequences(&s), expected);
    // both threads get blocks; journey_of finds each person in every part
    let snap = s.snapshot();
    let opts = ScanOptions {
        threads: 2,
        ..Default::default()
    };
    let parts = snap.scan_persons(&opts, Vec::new, |acc, p| {
        acc.push((p.person, p.ts.to_vec(), p.event.to_vec()))
    });
    assert!(
        parts.iter().all(|p| !p.is_empty()),
        "two threads with blocks"
    );
    for (person, ts, event) in parts.into_iter().flatten().step_by(7) {
        let alone = snap.journey_of(person, |j| (j.ts.to_vec(), j.event.to_vec()));
        assert_eq!(alone, Some((ts, event)), "person {person}");
    }
}

/// Every person's events in order, the persons sorted.
fn sequences(s: &Store) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = journeys(s).into_iter().map(|(_, e)| e).collect();
    out.sort();
    out
}

fn expected_journeys(
    rows: &[(String, i64, String)],
    links: &[(String, String)],
) -> Vec<Vec<String>> {
    let mut parent: std::collections::HashMap<&str, &str> = Default::default();
    fn find<'a>(parent: &std::collections::HashMap<&'a str, &'a str>, mut x: &'a str) -> &'a str {
        while let Some(p) = parent.get(x) {
            x = p;
        }
        x
    }
    for (a, b) in links {
        let (ra, rb) = (find(&parent, a), find(&parent, b));
        if ra != rb {
            parent.insert(ra, rb);
        }
    }
    let mut by_person: std::collections::BTreeMap<&str, Vec<(i64, &str)>> = Default::default();
    for (id, minute, event) in rows {
        let person = find(&parent, id);
        by_person.entry(person).or_default().push((*minute, event));
    }
    let mut out: Vec<Vec<String>> = by_person
        .into_values()
        .map(|mut v| {
            v.sort();
            v.into_iter().map(|(_, e)| e.to_string()).collect()
        })
        .collect();
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        match e.file_type().unwrap().is_dir() {
            true => copy_dir(&e.path(), &to.join(e.file_name())),
            false => {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
}

/// Every stored message, in the order the store holds them.
fn messages_in_order(s: &Store) -> Vec<String> {
    let mut out = Vec::new();
    s.for_each_message(|m| {
        out.push(m.to_string());
        Ok(())
    })
    .unwrap();
    out
}

/// A full compaction within a small memory budget writes several segments, each of whole
/// persons in person order (a person over the budget split by time), and the store holds then
/// exactly what one merge of everything gives: the same journeys (identities linked after the rows were stored, a repeated message
/// id, an erased person) and the same messages in the same order. The same compaction on a
/// store opened only to compact (persons and times read from the files a merge at a time)
/// gives the same again, and that store refuses appends.
#[test]
fn a_compaction_within_a_small_budget_writes_persons_apart_with_the_same_rows() {
    let (dir, one, lean) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // several flushed segments and a background merge among them
    let config = StoreConfig {
        flush_rows: 300,
        compact_after_segments: 4,
        ..Default::default()
    };
    // events named by their time: a journey's order shows
    let page = |id: String, anon: String, m: i64| {
        tp(
            json!({"type":"track","messageId":id,"anonymousId":anon,"event":format!("e{m}"),
        "properties": {"path": format!("/p{}", m % 7)},
        "timestamp": message::format_ts(1_699_000_000_000 + m * 60_000)}),
        )
    };
    let s = Store::open(dir.path(), config.clone()).unwrap();
    for b in 0..6i64 {
        let rows = (0..250i64)
            .map(|i| {
                let k = b * 250 + i;
                // a heavy person beside many light ones
                let who = if k % 3 == 0 { 0 } else { k % 60 };
                page(format!("m{k}"), format!("anon-{who}"), k % 97)
            })
            .collect();
        s.append(rows).unwrap();
    }
    // ids linked after their rows were stored: persons' roots are not their rows' ids
    for u in 0..20 {
        s.append(vec![tp(
            json!({"type":"identify","messageId":format!("i{u}"),
            "userId":format!("user-{u}"),"anonymousId":format!("anon-{}", u * 3 + 1),
            "timestamp":message::format_ts(1_699_000_000_000 + u * 60_000)}),
        )])
        .unwrap();
    }
    assert_eq!(s.erase_person("anon-7").unwrap(), 1);
    // what the queries see before any compaction
    let expected = journeys(&s);
    s.close();
    // a message stored again once the duplicate check's window has passed it
    let s = Store::open(
        dir.path(),
        StoreConfig {
            dedup_window_ms: 1,
            ..config.clone()
        },
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(
        s.append(vec![page("m5".into(), "anon-5".into(), 5)])
            .unwrap()
            .stored,
        1
    );
    s.close();
    copy_dir(dir.path(), one.path());
    copy_dir(dir.path(), lean.path());

    let s = Store::open(dir.path(), config.clone()).unwrap();
    s.compact().unwrap();
    assert_eq!(manifest(dir.path()).segments.len(), 1);
    assert_eq!(journeys(&s), expected);
    let expected_messages = messages_in_order(&s);
    // anon-7's 25 pages and user-2's identify (which linked anon-7) are erased; the repeat goes
    assert_eq!(expected_messages.len(), 1500 + 20 - 26);
    s.close();

    // no background merge after it (that one would leave the messages where they are)
    let budget = StoreConfig {
        compact_memory_bytes: 64 * 150,
        compact_after_segments: 1_000,
        ..config.clone()
    };
    let s = Store::open(one.path(), budget.clone()).unwrap();
    s.compact().unwrap();
    let written = manifest(one.path()).segments;
    // none over the budget's 150 rows: the heavy person (anon-0, a third of the rows) is
    // split by time
    let rows: Vec<u64> = (written.iter())
        .map(|n| segment_file(one.path(), n).footer.rows)
        .collect();
    assert!(
        rows.len() >= 10 && rows.iter().all(|r| *r <= 150),
        "{rows:?}"
    );
    // each output in time order within every id (its person's order, whatever the person)
    for name in &written {
        let f = segment_file(one.path(), name);
        let (did, ts) = (f.persons().unwrap(), f.times().unwrap());
        let mut last = std::collections::HashMap::new();
        for (d, t) in did.iter().zip(&ts) {
            assert!(
                *last.entry(*d).or_insert(*t) <= *t,
                "{name}: id {d} out of order"
            );
            last.insert(*d, *t);
        }
    }
    assert_eq!(journeys(&s), expected);
    assert_eq!(messages_in_order(&s), expected_messages);
    // background merges within the same budget write one segment each: those a flush starts
    // end, with fewer segments than they found
    s.close();
    let s = Store::open(
        one.path(),
        StoreConfig {
            compact_after_segments: 4,
            ..budget.clone()
        },
    )
    .unwrap();
    let more = (0..200)
        .map(|k| page(format!("n{k}"), format!("anon-{}", k % 60), k))
        .collect();
    s.append(more).unwrap();
    s.flush().unwrap();
    s.close();
    let m = manifest(one.path());
    assert!(
        m.segments.len() <= written.len() && m.generation < 40,
        "{m:?}"
    );

    let s = Store::open(
        lean.path(),
        StoreConfig {
            compaction_only: true,
            ..budget
        },
    )
    .unwrap();
    assert!(matches!(
        s.append(vec![track("x", "u", "a", 1)]),
        Err(StoreError::ReadOnly(_))
    ));
    s.compact().unwrap();
    s.close();
    assert_eq!(manifest(lean.path()).segments, written);
    let s = Store::open(lean.path(), config).unwrap();
    assert_eq!(journeys(&s), expected);
    assert_eq!(messages_in_order(&s), expected_messages);
}

//! Golden tests: every analysis, from the request JSON in `tests/golden/NAME.query.json` to the
//! answer in `tests/golden/NAME.result.json`, on a fixed generator seed. Each case runs twice: on
//! a store built the way a serving store is (many small flushes, background merges, a memory
//! table) and on the same store after a full compaction; both must give the recorded answer.
//!
//! After an intended change of an answer, regenerate the files and review the diff:
//! `ITINERA_BLESS=1 cargo test -p itinera-app --test golden`.

use itinera_app::{AnalysisRequest, App, Config, DataDir, Population};
use itinera_core::message::{new_message_id, NormalizeOptions};
use itinera_core::{ingest, ChannelRules, IpPolicy};
use itinera_meta::DEFAULT_PROJECT;
use itinera_store::StoreConfig;
use itinera_synth::{World, WorldSpec};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    request: AnalysisRequest,
    #[serde(default)]
    population: Population,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

/// A data directory holding the generator's world (seed 11, 300 customers), built in small
/// batches with small flushes so that it has many segments, merged ones and a memory table.
fn build(root: &Path) -> std::sync::Arc<DataDir> {
    // a segment per 400 rows, flushed here rather than when a background flush gets to it (a
    // slower flush took more rows at once and left a single segment), and no background merge
    let store_config = StoreConfig {
        flush_rows: 100_000,
        max_memory_rows: 200_000,
        compact_after_segments: 1_000,
        ..Default::default()
    };
    let dir = DataDir::open(root, store_config).unwrap();
    let store = dir.store(DEFAULT_PROJECT).unwrap();
    let world = World::new(WorldSpec {
        customers: 300,
        seed: 11,
        ..Default::default()
    });
    let opts = NormalizeOptions {
        // after the world's last event, so nothing is refused as from the future
        received_at_ms: 1_900_000_000_000,
        max_future_ms: 0,
        ip_policy: IpPolicy::default(),
        remote_ip: None,
    };
    let rules = ChannelRules::default();
    let mut batch = Vec::new();
    for (n, message) in world.enumerate() {
        let tp = ingest::parse_one(&message.to_string(), None, &opts, &rules, &mut || {
            new_message_id(n as u128 + 1)
        })
        .expect("generated messages are valid");
        batch.push(tp);
        if batch.len() == 400 {
            store.append(std::mem::take(&mut batch)).unwrap();
            store.flush().unwrap();
        }
    }
    store.append(batch).unwrap();
    itinera_app::demo::seed_definitions(&dir.meta.lock(), DEFAULT_PROJECT).unwrap();
    dir
}

/// Equal as JSON, numbers within a relative 1e-9 (sums may be added in another order when the
/// persons are split differently over threads and segments).
fn same(a: &Value, b: &Value, at: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0) {
                Ok(())
            } else {
                Err(format!("{at}: {x} != {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .try_for_each(|(i, (x, y))| same(x, y, &format!("{at}[{i}]"))),
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() => x
            .iter()
            .try_for_each(|(k, v)| same(v, y.get(k).unwrap_or(&Value::Null), &format!("{at}.{k}"))),
        _ if a == b => Ok(()),
        _ => Err(format!("{at}: {a} != {b}")),
    }
}

fn cases() -> Vec<(String, Case)> {
    let mut out: Vec<_> = std::fs::read_dir(golden_dir())
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".query.json")?
                .to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let case: Case =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Some((name, case))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_analysis_gives_its_recorded_answer_before_and_after_compaction() {
    let bless = std::env::var_os("ITINERA_BLESS").is_some();
    let cases = cases();
    let kinds: std::collections::BTreeSet<_> =
        cases.iter().map(|(_, c)| c.request.kind()).collect();
    for kind in [
        "funnel",
        "retention",
        "stages",
        "paths",
        "attribution",
        "clv",
        "accounts",
        "advocacy",
        "revenue",
        "scores",
        "promoters",
        "comments",
    ] {
        assert!(kinds.contains(kind), "no golden case for {kind}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = build(tmp.path());
    let store = dir.store(DEFAULT_PROJECT).unwrap();
    let stats = store.stats().unwrap();
    assert!(
        stats.segments > 1,
        "the store must be built of several segments: {stats:?}"
    );
    let app = App::new(Config::default(), dir.clone());
    let run = |name: &str, case: &Case| -> Value {
        app.run_analysis(
            DEFAULT_PROJECT,
            &case.request,
            &case.population,
            &Default::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let mut failures = Vec::new();
    let mut first = Vec::new();
    for (name, case) in &cases {
        let answer = run(name, case);
        let path = golden_dir().join(format!("{name}.result.json"));
        if bless {
            std::fs::write(&path, serde_json::to_string_pretty(&answer).unwrap() + "\n").unwrap();
        }
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|_| {
                panic!("{}: missing; run with ITINERA_BLESS=1", path.display())
            }))
            .unwrap();
        if let Err(e) = same(&answer, &expected, name) {
            failures.push(format!("live store: {e}"));
        }
        first.push(answer);
    }
    store.compact().unwrap();
    assert_eq!(store.stats().unwrap().segments, 1);
    for ((name, case), before) in cases.iter().zip(&first) {
        if let Err(e) = same(&run(name, case), before, name) {
            failures.push(format!("compacted store: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

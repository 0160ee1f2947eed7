//! The serving state: a store filled over the tracking API as users fill it (segments from
//! flushes, rows in memory, background compactions on their own schedule), queried while idle,
//! while ingesting at a steady rate, and after `itinera compact`.

use crate::load::{percentile_ms, run_load, LoadPlan};
use itinera_engine::{FunnelQuery, Span};
use itinera_store::StoreConfig;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The 4-step funnel over the realistic messages' events.
const STEPS: [&str; 4] = [
    "page_view",
    "Products Searched",
    "Product Viewed",
    "Product Added",
];

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(clap::Args)]
pub struct ServingPlan {
    /// Data directory (a temporary one when omitted); loads go into project `default`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Realistic events loaded before measuring (0: measure what the directory holds).
    #[arg(long, default_value_t = 6_000_000)]
    pub events: u64,
    /// Events a second sent while querying under load (0 seconds: no load).
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    #[arg(long, default_value_t = 11)]
    pub runs: usize,
    /// Leave the store as it is at the end (no full compaction): to measure it again.
    #[arg(long)]
    pub keep: bool,
    /// Realistic events sent before each idle query (0: none), so that every query builds a
    /// new snapshot as it does under load, without a load competing for the cores: what the
    /// live state costs a query, measured alone and repeatably (on a copy of a kept store).
    #[arg(long, default_value_t = 0)]
    pub append_between: u64,
    /// Segments beyond which a background compaction starts (the store's default when omitted).
    #[arg(long)]
    pub compact_after_segments: Option<usize>,
}

pub fn serving_bench(plan: ServingPlan) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let data_path = plan.data.clone().unwrap_or_else(|| tmp.path().join("data"));
    let defaults = StoreConfig::default();
    let store_config = StoreConfig {
        compact_after_segments: plan
            .compact_after_segments
            .unwrap_or(defaults.compact_after_segments),
        ..defaults
    };
    println!(
        "store: flush every {} rows, background compaction past {} segments",
        store_config.flush_rows, store_config.compact_after_segments
    );
    let data = itinera_app::DataDir::open(&data_path, store_config)?;
    let cfg = itinera_app::Config {
        rate_limit_per_key: 0,
        ..Default::default()
    };
    let (url, write_key) = crate::in_process_server_with(data.clone(), cfg)?;
    let read_token = data
        .meta
        .lock()
        .create_keys("default", "reader")?
        .read_token;
    let host = url.trim_start_matches("http://").to_string();
    let store = data.store("default")?;
    let zipf = *crate::PERSON_ZIPF.get().unwrap_or(&0.0);
    println!(
        "serving bench: realistic messages, persons {}",
        if zipf > 1.0 {
            format!("heavy-tailed (Zipf {zipf})")
        } else {
            "evenly spread (200k)".into()
        }
    );
    if plan.events > 0 {
        let r = run_load(LoadPlan {
            host: host.clone(),
            write_key: write_key.clone(),
            events: plan.events,
            batch: 100,
            concurrency: 8,
            realistic: true,
            rate: None,
            stop: None,
            started: None,
            first_message: 0,
        })?;
        println!(
            "loaded {} events in {:.1} s ({:.0} events/s)",
            r.acked,
            r.seconds,
            r.events_per_second()
        );
    }
    let body = serde_json::to_string(&FunnelQuery::events(&STEPS, Span(7 * 86_400_000)))?;
    let query = Query::new(&url, &read_token, body)?;
    let state = |label: &str| -> Result<(), Box<dyn std::error::Error>> {
        let s = store.stats()?;
        println!(
            "{label}: {} events, {} persons, {} segments, {} rows in memory, {:.1} bytes/event on disk",
            s.events, s.persons, s.segments, s.memory_rows, s.bytes_per_event
        );
        let m = store.memory();
        let parts: Vec<String> = m
            .parts()
            .iter()
            .map(|(part, bytes)| format!("{part} {:.1}", *bytes as f64 / 1e6))
            .collect();
        println!(
            "  store memory {:.1} MB ({:.1} bytes/event): {}",
            m.total() as f64 / 1e6,
            m.total() as f64 / s.events.max(1) as f64,
            parts.join(", ")
        );
        Ok(())
    };

    state("serving store, idle")?;
    let idle = query.repeat(plan.runs)?;
    println!("  funnel: {}", idle.summary());
    if plan.append_between > 0 {
        store.take_snapshot_builds();
        let mut sent = 0;
        let appended = query.repeat_after(plan.runs, || {
            let r = run_load(LoadPlan {
                host: host.clone(),
                write_key: write_key.clone(),
                events: plan.append_between,
                batch: 100,
                concurrency: 1,
                realistic: true,
                rate: None,
                stop: None,
                started: None,
                // times go on after the first load's
                first_message: plan.events.max(10_000_000) + sent,
            })?;
            sent += r.acked;
            Ok(())
        })?;
        println!(
            "  funnel after {} new events each: {}",
            plan.append_between,
            appended.summary()
        );
        print_snapshot_builds(store.take_snapshot_builds());
    }

    let (loaded, after) = match plan.seconds {
        0 => (None, None),
        _ => {
            store.take_snapshot_builds();
            let loaded = under_load(&plan, &host, &write_key, &query)?;
            println!("  funnel under load: {}", loaded.summary());
            print_snapshot_builds(store.take_snapshot_builds());
            state("serving store after the load, idle")?;
            let after = query.repeat(plan.runs)?;
            println!("  funnel: {}", after.summary());
            (Some(loaded), Some(after))
        }
    };
    if plan.keep {
        return Ok(());
    }
    let t = Instant::now();
    store.compact()?;
    println!("compacted in {:.1} s", t.elapsed().as_secs_f64());
    state("compacted store, idle")?;
    let compacted = query.repeat(plan.runs)?;
    println!("  funnel: {}", compacted.summary());
    // the same load on the machine, sent to another project: what the compacted store's
    // funnel costs when the cores are shared with ingestion as much
    let beside = match plan.seconds {
        0 => None,
        _ => {
            let other = data.meta.lock().create_keys("other", "bench")?.write_key;
            let t = under_load(&plan, &host, &other, &query)?;
            println!(
                "  funnel while another project ingests at the same rate: {}",
                t.summary()
            );
            Some(t)
        }
    };
    let base = compacted.median();
    print!(
        "ratios to the compacted store's median: serving idle {:.2}×",
        idle.median() / base
    );
    if let (Some(loaded), Some(after), Some(beside)) = (loaded, after, beside) {
        print!(
            ", under load p50 {:.2}× (p90 {:.2}×), after the load {:.2}×",
            loaded.median() / base,
            loaded.percentile(0.9) / base,
            after.median() / base
        );
        print!(
            "; under load against the compacted store under the same load: p50 {:.2}×, p90 {:.2}×",
            loaded.median() / beside.median(),
            loaded.percentile(0.9) / beside.percentile(0.9)
        );
    }
    println!();
    Ok(())
}

/// Every query on a store being written to builds a snapshot, on one thread, before its scan
/// (a flush or compaction builds one on its own thread: counted too).
fn print_snapshot_builds(b: itinera_store::SnapshotBuilds) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = |d: Duration| ms(d) / b.built.max(1) as f64;
    println!(
        "  snapshots built: {}, sorting and merging rows in memory {:.1} ms a snapshot (max {:.1}), the person index {:.1} ms (max {:.1})",
        b.built,
        mean(b.copies),
        ms(b.copies_max),
        mean(b.index),
        ms(b.index_max)
    );
}

/// Queries while ingesting at the plan's rate, then once the load is over.
fn under_load(
    plan: &ServingPlan,
    host: &str,
    write_key: &str,
    query: &Query,
) -> BenchResult<Timings> {
    // the senders pace themselves; one query at a time
    let stop = Arc::new(AtomicBool::new(false));
    let (started, sending) = std::sync::mpsc::channel();
    let loader = {
        let (host, write_key, stop) = (host.to_string(), write_key.to_string(), stop.clone());
        let events = plan.rate * plan.seconds;
        let rate = plan.rate as f64;
        // live traffic: times go on after the first load's
        let first_message = plan.events;
        std::thread::spawn(move || {
            run_load(LoadPlan {
                host,
                write_key,
                events,
                batch: 100,
                concurrency: 8,
                realistic: true,
                rate: Some(rate),
                stop: Some(stop),
                started: Some(started),
                first_message,
            })
            .map_err(|e| e.to_string())
        })
    };
    // the queries start with the load: not while its requests are being built
    if sending.recv().is_err() {
        let r = loader.join().map_err(|_| "load thread panicked")??;
        return Err(format!("the load ended before sending ({} acknowledged)", r.acked).into());
    }
    let until = Instant::now() + Duration::from_secs(plan.seconds);
    let mut loaded = Timings::default();
    // a pause between queries, so that the load keeps its rate
    while Instant::now() < until {
        loaded.push(query.once()?);
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let r = loader.join().map_err(|_| "load thread panicked")??;
    println!(
        "while ingesting: {:.0} events/s acknowledged (asked {}), request p99 {:.1} ms",
        r.events_per_second(),
        plan.rate,
        r.percentile_ms(0.99)
    );
    Ok(loaded)
}

/// Funnel latencies in seconds.
#[derive(Default)]
struct Timings(Vec<Duration>);

impl Timings {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.0.clone();
        v.sort();
        v
    }

    fn percentile(&self, p: f64) -> f64 {
        percentile_ms(&self.sorted(), p)
    }

    fn median(&self) -> f64 {
        self.percentile(0.5)
    }

    fn summary(&self) -> String {
        format!(
            "{} runs, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.0.len(),
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
            self.percentile(1.0)
        )
    }
}

/// The funnel through the HTTP API.
struct Query {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: String,
    token: String,
    body: String,
}

impl Query {
    fn new(base: &str, token: &str, body: String) -> Result<Query, Box<dyn std::error::Error>> {
        Ok(Query {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            // the server closes a keep-alive connection idle for `header_timeout_seconds` (30 s);
            // a pooled one kept longer (over a full compaction) would be reused as it closes
            client: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(10))
                .build()?,
            url: format!("{base}/api/v1/funnel"),
            token: token.to_string(),
            body,
        })
    }

    fn once(&self) -> Result<Duration, Box<dyn std::error::Error>> {
        let t = Instant::now();
        let resp = self.rt.block_on(
            self.client
                .post(&self.url)
                .bearer_auth(&self.token)
                .header("content-type", "application/json")
                .body(self.body.clone())
                .send(),
        )?;
        let status = resp.status();
        let text = self.rt.block_on(resp.text())?;
        if !status.is_success() {
            return Err(format!("funnel answered {status}: {text}").into());
        }
        Ok(t.elapsed())
    }

    /// `runs` warm runs after one that warms the server.
    fn repeat(&self, runs: usize) -> Result<Timings, Box<dyn std::error::Error>> {
        self.repeat_after(runs, || Ok(()))
    }

    /// [`Query::repeat`], calling `before` (not timed) before each run.
    fn repeat_after(
        &self,
        runs: usize,
        mut before: impl FnMut() -> BenchResult<()>,
    ) -> BenchResult<Timings> {
        self.once()?;
        let mut t = Timings::default();
        for _ in 0..runs {
            before()?;
            t.push(self.once()?);
        }
        Ok(t)
    }
}

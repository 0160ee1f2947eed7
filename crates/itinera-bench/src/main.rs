//! `itinera-bench`: the measurements published in `docs/benchmarks.md`.
//!
//! - `store`: ingest a synthetic 4-column stream (person, time, event, channel) into the store
//!   without HTTP, then report events/s, peak memory, bytes on disk per event for the core columns,
//!   and warm full-scan time. `--csv` also writes the stream for the ClickHouse/DuckDB comparison
//!   (`bench/compare_storage.py`).
//! - `http`: a load generator for the tracking API: batches of Segment messages over loopback,
//!   counted only when acknowledged (durable); reports events/s and request latency percentiles.

/// mimalloc: the glibc allocator was a quarter of the CPU time of HTTP ingestion (measured with perf).
/// Built without transparent huge pages (the workspace's `no_thp` feature): the kernel zeroes a
/// fresh 2 MiB page far slower than 4 KiB ones on the machines measured, which made page zeroing
/// the largest cost of ingestion, while warm scans ran no faster with huge pages.
/// Metered as in the `itinera` binary, so that what is measured includes the memory budget's cost.
#[global_allocator]
static GLOBAL: itinera_engine::metered::Metered<mimalloc::MiMalloc> =
    itinera_engine::metered::Metered(mimalloc::MiMalloc);

use clap::{Parser, Subcommand};

mod analyses;
mod load;
mod serving;
mod triggers;
mod value;
use itinera_core::{MessageType, Touchpoint};
use itinera_store::{ScanOptions, Store, StoreConfig};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Turn the store's duplicate check off while building a store (`itinera import` and the
    /// tracking API keep it on, as the benches do by default).
    #[arg(long, global = true)]
    no_dedup: bool,
    /// Heavy-tailed persons, as bots, shared devices and big accounts make them: the person of
    /// rank k gets about events/ζ(S) · k^-S events (at least one), so with S = 1.3 and 10M
    /// events the largest has about 2.5M and most have one. 0 (the default): evenly spread,
    /// `--events-per-person` on average.
    #[arg(long, global = true, default_value_t = 0.0)]
    person_zipf: f64,
}

/// Set once from `--no-dedup`.
static NO_DEDUP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
/// Set once from `--person-zipf`.
static PERSON_ZIPF: std::sync::OnceLock<f64> = std::sync::OnceLock::new();

/// The store settings the benches build with: the defaults, which `itinera import` uses, unless
/// `--no-dedup`; printed so that every published figure says which it had.
fn bench_store_config() -> StoreConfig {
    let d = StoreConfig::default();
    let off = *NO_DEDUP.get().unwrap_or(&false);
    println!(
        "duplicate check: {}",
        if off {
            "off (--no-dedup)".to_string()
        } else {
            format!(
                "on, {} h window (as itinera import)",
                d.dedup_window_ms / 3_600_000
            )
        }
    );
    StoreConfig {
        dedup_window_ms: if off { 0 } else { d.dedup_window_ms },
        ..d
    }
}

#[derive(Subcommand)]
enum Command {
    /// Store ingest, bytes per event and warm scans, without HTTP.
    Store {
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 20)]
        events_per_person: u64,
        /// Store directory (a temporary one when omitted).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Also write the 4-column stream as CSV (person,ts,event,channel).
        #[arg(long)]
        csv: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        scan_runs: usize,
    },
    /// Funnels over the store's stream: in-process and through the HTTP API (warm), 4 vs 20 steps.
    /// Builds the data directory first when it is empty (and writes the CSV for the references).
    Funnel {
        /// Data directory (a project `default` is filled when empty).
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 20)]
        events_per_person: u64,
        #[arg(long)]
        csv: Option<PathBuf>,
        #[arg(long, default_value_t = 11)]
        runs: usize,
        /// Only the funnel of this many steps (4 or 20); both by default.
        #[arg(long)]
        steps: Option<usize>,
        /// Skip the HTTP API part (in-process only, e.g. under a profiler).
        #[arg(long)]
        no_http: bool,
    },
    /// Attribution over many short journeys: rule-based models, Markov order 1, Shapley.
    Attribution {
        /// Data directory (a project `default` is filled when empty).
        #[arg(long)]
        data: PathBuf,
        /// Events to generate when the directory is empty (about 2.5 per person).
        #[arg(long, default_value_t = 30_000_000)]
        events: u64,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Stage funnel, Sankey paths and retention over the store bench's stream.
    Analyses {
        /// Data directory (a project `default` is filled when empty).
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 20)]
        events_per_person: u64,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// BG/NBD and Gamma-Gamma fits over simulated customers.
    Clv {
        #[arg(long, default_value_t = 1_000_000)]
        customers: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Trigger latency: acknowledged stage entry → webhook received, under background load.
    Triggers {
        /// Background events a second (batches of 100 realistic track calls).
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Persons entering the rule's stage a second.
        #[arg(long, default_value_t = 20)]
        entries: u64,
    },
    /// HTTP ingestion load generator.
    Http {
        /// Server to load; an in-process server on a temporary directory when omitted.
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        key: Option<String>,
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 100)]
        batch: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Messages as analytics.js sends them (context with page, user agent, locale and
        /// campaign, English and German text, ~700 bytes, each different) instead of the
        /// padded ones.
        #[arg(long)]
        realistic: bool,
    },
    /// Funnels on a store filled over the tracking API (segments, rows in memory, background
    /// compactions): idle, while ingesting at `--rate`, and after a full compaction.
    Serving(serving::ServingPlan),
    /// Parsing and normalization alone: the `http` bench's request bodies through
    /// `ingest::parse_batch` on one thread (no HTTP, no store).
    Parse {
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        #[arg(long, default_value_t = 100)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The realistic load's analytics.js messages instead of the padded track calls.
        #[arg(long)]
        realistic: bool,
    },
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// CPU seconds (user, system) of each thread of this process by thread name, summed over
/// threads of the same name: where the cores went during a phase.
fn thread_cpu() -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut out = std::collections::BTreeMap::new();
    let ticks = 100.0; // USER_HZ on Linux
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    // the process's own line counts threads that have exited too (flushes run on short-lived
    // threads): named "process"
    let stats = std::iter::once(("process".to_string(), "/proc/self/stat".into())).chain(
        tasks
            .flatten()
            .map(|t| (String::new(), t.path().join("stat"))),
    );
    for (name, path) in stats {
        let Ok(stat) = std::fs::read_to_string::<std::path::PathBuf>(path) else {
            continue;
        };
        // pid (comm) state ppid ... utime(14) stime(15)
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = match name.is_empty() {
            true => stat[open + 1..close].to_string(),
            false => name,
        };
        let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
        let field = |i: usize| {
            rest.get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let e = out.entry(comm).or_insert((0.0, 0.0));
        e.0 += field(11) / ticks;
        e.1 += field(12) / ticks;
    }
    out
}

/// Prints the CPU each thread name used between two [`thread_cpu`] readings.
fn print_thread_cpu(
    phase: &str,
    before: &std::collections::BTreeMap<String, (f64, f64)>,
    wall_s: f64,
) {
    let after = thread_cpu();
    // a name whose threads exited meanwhile counts only in "process"
    let parts: Vec<String> = after
        .iter()
        .filter_map(|(name, (u, s))| {
            let (u0, s0) = before.get(name).copied().unwrap_or((0.0, 0.0));
            (u >= &u0 && s >= &s0).then(|| format!("{name} {:.1}+{:.1}", u - u0, s - s0))
        })
        .collect();
    println!(
        "  cpu during {phase} ({wall_s:.1} s wall), user+system s per thread: {}",
        parts.join(", ")
    );
}

const BATCH: usize = 50_000;
/// Batches in flight in the store bench, as `itinera import` keeps them.
const PIPELINE_WINDOW: usize = 3;
const PREGENERATE_MAX: u64 = 20_000_000;
/// Events built and stored at a time beyond [`PREGENERATE_MAX`].
const CHUNK_EVENTS: u64 = 10_000_000;

const EVENTS: [&str; 12] = [
    "page_view",
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Order Completed",
    "Signed Up",
    "Email Opened",
    "Survey Responded",
    "Store Visit",
    "Call Completed",
    "Referral Sent",
    "screen_view",
];
const CHANNELS: [&str; 8] = [
    "direct",
    "organic_search",
    "paid_search",
    "social",
    "email",
    "app",
    "store",
    "referral",
];

/// The synthetic 4-column stream, person by person: (person, ts ms, event, channel).
struct Stream {
    rng: ChaCha8Rng,
    per_person: u64,
    /// Zipf exponent of the persons' sizes (0: evenly spread), and events/ζ(exponent).
    zipf: f64,
    zipf_scale: f64,
    /// Gaps are shrunk for persons so big that their history would span centuries.
    gap_scale: f64,
    left: u64,
    person: u64,
    in_person: u64,
    t: i64,
    channel: usize,
}

impl Stream {
    fn new(events: u64, per_person: u64) -> Stream {
        Stream::shaped(events, per_person, *PERSON_ZIPF.get().unwrap_or(&0.0))
    }

    /// The stream with persons evenly spread (`zipf` 0) or heavy-tailed (`zipf` > 1).
    fn shaped(events: u64, per_person: u64, zipf: f64) -> Stream {
        Stream {
            rng: ChaCha8Rng::seed_from_u64(7),
            per_person,
            zipf,
            zipf_scale: if zipf > 1.0 {
                events as f64 / zeta(zipf)
            } else {
                0.0
            },
            gap_scale: 1.0,
            left: events,
            person: 0,
            in_person: 0,
            t: 0,
            channel: 0,
        }
    }
}

impl Iterator for Stream {
    type Item = (u64, i64, usize, usize);
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        if self.in_person == 0 {
            self.person += 1;
            self.in_person = if self.zipf > 1.0 {
                ((self.zipf_scale * (self.person as f64).powf(-self.zipf)) as u64).max(1)
            } else {
                1 + self.rng.gen_range(0..self.per_person * 2)
            };
            // the mean gap below is about 22,100 s: a person's history stays within a year
            self.gap_scale =
                (365.0 * 86_400_000.0 / (self.in_person as f64 * 22_100_000.0)).min(1.0);
            self.t = 1_704_067_200_000 + self.rng.gen_range(0..365 * 86_400_000i64);
            self.channel = self.rng.gen_range(0..CHANNELS.len());
        }
        self.in_person -= 1;
        // gaps: mostly seconds to minutes within a session, sometimes days
        let gap = if self.rng.gen_bool(0.1) {
            self.rng.gen_range(3_600_000..5 * 86_400_000)
        } else {
            self.rng.gen_range(1_000..300_000)
        };
        self.t += ((gap as f64 * self.gap_scale) as i64).max(1);
        if self.rng.gen_bool(0.2) {
            self.channel = self.rng.gen_range(0..CHANNELS.len());
        }
        let event = (self.rng.gen::<f64>().powi(2) * EVENTS.len() as f64) as usize;
        Some((self.person, self.t, event, self.channel))
    }
}

/// Riemann's ζ(s) for s > 1: the sum to a million and the integral of the rest.
fn zeta(s: f64) -> f64 {
    const N: u32 = 1_000_000;
    (1..=N).map(|k| (k as f64).powf(-s)).sum::<f64>() + (N as f64).powf(1.0 - s) / (s - 1.0)
}

fn touchpoint(person: u64, ts: i64, event: usize, channel: usize, seq: u64) -> Touchpoint {
    let user = format!("p{person}");
    let message_id = format!("b{seq}");
    let body = format!(
        r#"{{"type":"track","event":"{}","userId":"{user}","messageId":"{message_id}","timestamp":"{}"}}"#,
        EVENTS[event],
        itinera_core::message::format_ts(ts)
    );
    Touchpoint {
        kind: MessageType::Track,
        message_id,
        timestamp_ms: ts,
        received_at_ms: ts,
        user_id: Some(user),
        anonymous_id: None,
        previous_id: None,
        group_id: None,
        event: EVENTS[event].to_string(),
        channel: CHANNELS[channel].to_string(),
        touchpoint: EVENTS[event].to_string(),
        revenue: None,
        props: Vec::new(),
        body,
    }
}

fn store_bench(
    events: u64,
    per_person: u64,
    dir: Option<PathBuf>,
    csv: Option<PathBuf>,
    scan_runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| tmp.path().join("store"));
    let store = Store::open(&dir, bench_store_config())?;
    let mut csv_out = match &csv {
        Some(p) => {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(p)?);
            writeln!(w, "person,ts,event,channel")?;
            Some(w)
        }
        None => None,
    };
    // The batches are built before the clock starts, so the figure is the store's own rate;
    // beyond `PREGENERATE_MAX` events they are built and stored `CHUNK_EVENTS` at a time (the
    // clock stopped while a chunk is built), so memory stays bounded. Background flushes and
    // compactions run on regardless, also while a chunk is built.
    let chunk = if events <= PREGENERATE_MAX {
        events
    } else {
        CHUNK_EVENTS
    };
    let mut stream = Stream::new(events, per_person).enumerate();
    let mut ingest_s = 0.0;
    let mut stored = 0u64;
    loop {
        let mut batches: Vec<Vec<Touchpoint>> = Vec::new();
        let mut batch = Vec::with_capacity(BATCH);
        for (seq, (p, t, e, c)) in stream.by_ref().take(chunk as usize) {
            if let Some(w) = &mut csv_out {
                writeln!(w, "{p},{t},{e},{c}")?;
            }
            batch.push(touchpoint(p, t, e, c, seq as u64));
            if batch.len() == BATCH {
                batches.push(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
            }
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        if batches.is_empty() {
            break;
        }
        let start = Instant::now();
        let cpu = thread_cpu();
        let mut pipeline = store.pipeline(PIPELINE_WINDOW);
        for batch in batches {
            pipeline.append(batch)?;
        }
        stored += pipeline.finish()?.stored as u64;
        let took = start.elapsed().as_secs_f64();
        ingest_s += took;
        print_thread_cpu("appends", &cpu, took);
    }
    drop(csv_out);
    let ingest_peak = peak_rss_mib();
    let mode = if chunk == events {
        "batches built before timing".to_string()
    } else {
        format!("batches built before timing, {chunk} events at a time")
    };
    let t = Instant::now();
    store.flush()?;
    let flush_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    store.compact()?;
    let compact_s = t.elapsed().as_secs_f64();
    let stats = store.stats()?;
    println!("store ingest ({mode}, batches of {BATCH}, durable): {stored} events in {ingest_s:.2} s = {:.0} events/s (final flush {flush_s:.2} s, compaction {compact_s:.2} s)", stored as f64 / ingest_s);
    println!(
        "peak memory (VmHWM): {ingest_peak:.0} MiB while appending (built batches included), {:.0} MiB at the end (the full compaction holds old and new columns)",
        peak_rss_mib()
    );
    println!(
        "bytes on disk per event, core columns (person, time, event, channel): {:.3}",
        stats.core_bytes_per_event
    );
    println!(
        "bytes on disk per event, everything (all columns + full messages): {:.1}",
        stats.bytes_per_event
    );
    let snap = store.snapshot();
    let mut times = Vec::new();
    for _ in 0..scan_runs {
        let t = Instant::now();
        let counts = snap.scan_persons(
            &ScanOptions::default(),
            || 0u64,
            |acc, p| {
                // touch person, time and event of every row
                let mut x = p.person as u64;
                for (ts, e) in p.ts.iter().zip(p.event) {
                    x = x.wrapping_add(*ts as u64 ^ *e as u64);
                }
                *acc += p.len() as u64;
                std::hint::black_box(x);
            },
        );
        let total: u64 = counts.iter().sum();
        assert_eq!(total, stored);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "warm full scan per person (person, time, event) of {} events: median {:.3} s, best {:.3} s over {scan_runs} runs",
        stored,
        times[times.len() / 2],
        times[0]
    );
    store.close();
    Ok(())
}

fn http_bench(
    url: Option<String>,
    key: Option<String>,
    events: u64,
    batch: usize,
    concurrency: usize,
    realistic: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let (url, key) = match (url, key) {
        (Some(u), Some(k)) => (u, k),
        // the server gets a runtime of its own, as `itinera serve` has (the load generator's
        // tasks would otherwise be scheduled on the server's workers)
        _ => in_process_server(tmp.path())?,
    };
    let report = load::run_load(load::LoadPlan {
        host: url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string(),
        write_key: key,
        events,
        batch,
        concurrency,
        realistic,
        rate: None,
        stop: None,
        started: None,
        first_message: 0,
    })?;
    println!(
        "http ingestion{}: {} events acknowledged (durable) in {:.2} s = {:.0} events/s; batches of {batch}, {concurrency} connections; request latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        if realistic { " (realistic analytics.js messages)" } else { "" },
        report.acked,
        report.seconds,
        report.events_per_second(),
        report.percentile_ms(0.5),
        report.percentile_ms(0.99),
        report.percentile_ms(1.0),
    );
    Ok(())
}

/// Starts a server on a temporary data directory in threads of its own; returns its URL and a
/// write key.
fn in_process_server(
    dir: &std::path::Path,
) -> Result<(String, String), Box<dyn std::error::Error>> {
    let data = itinera_app::DataDir::open(dir, StoreConfig::default())?;
    let cfg = itinera_app::Config {
        rate_limit_per_key: 0,
        ..Default::default()
    };
    in_process_server_with(data, cfg)
}

/// [`in_process_server`] on an opened data directory with a configuration.
pub(crate) fn in_process_server_with(
    data: Arc<itinera_app::DataDir>,
    cfg: itinera_app::Config,
) -> Result<(String, String), Box<dyn std::error::Error>> {
    let keys = data.meta.lock().create_keys("default", "bench")?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = itinera_server::AppState::new(itinera_app::App::new(cfg, data));
            itinera_server::serve(app, listener, std::future::pending()).await
        })
    });
    Ok((format!("http://{addr}"), keys.write_key))
}

/// Request `r` of the ingestion benches: a `batch` of `track` messages of ~500 bytes each, like
/// a typical track call from a browser SDK.
/// Request `r` of a load run: `batch` track messages, their ids unique to `run`.
pub(crate) fn track_batch_body(run: u64, r: u64, batch: usize) -> String {
    let pad = "x".repeat(260);
    let mut body = String::with_capacity(batch * 520 + 32);
    body.push_str(r#"{"batch":["#);
    for i in 0..batch {
        if i > 0 {
            body.push(',');
        }
        let n = r * batch as u64 + i as u64;
        body.push_str(&format!(
            r#"{{"type":"track","event":"Product Viewed","userId":"user-{}","messageId":"lg-{run}-{n}","timestamp":"2025-06-01T12:00:00.000Z","properties":{{"product_id":"sku-{}","price":19.9,"note":"{pad}"}},"context":{{"library":{{"name":"analytics.js","version":"2.11.1"}},"page":{{"path":"/products/{}"}}}}}}"#,
            n % 100_000,
            n % 997,
            n % 997
        ));
    }
    body.push_str("]}");
    body
}

/// Request `r` of a realistic load run: `batch` messages as analytics.js sends them, every one
/// different (pages, products, search terms in English and German, user agents, locales,
/// campaigns), with page and track calls mixed and persons heavy-tailed when `--person-zipf`.
pub(crate) fn realistic_batch_body(run: u64, r: u64, batch: usize) -> String {
    const PAGES: [(&str, &str); 6] = [
        ("/", "Home"),
        ("/produkte/wanderschuhe", "Wanderschuhe für jedes Wetter"),
        (
            "/products/trail-runner",
            "Trail Runner – lightweight running shoes",
        ),
        (
            "/blog/so-finden-sie-die-richtige-groesse",
            "So finden Sie die richtige Größe",
        ),
        ("/checkout", "Kasse"),
        ("/help/returns", "Returns and refunds"),
    ];
    const AGENTS: [&str; 4] = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    ];
    const CAMPAIGNS: [(&str, &str, &str); 4] = [
        ("google", "cpc", "sommer-sale-2026"),
        ("newsletter", "email", "winter-arrivals"),
        ("facebook", "paid_social", "retargeting_de"),
        ("", "", ""),
    ];
    const SEARCHES: [&str; 4] = [
        "wasserdichte wanderschuhe",
        "trail running shoes women",
        "größe 42 breit",
        "gift card",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(run ^ (r << 20));
    let zipf = *PERSON_ZIPF.get().unwrap_or(&0.0);
    let persons = 200_000u64;
    let person_dist = (zipf > 1.0).then(|| rand_distr::Zipf::new(persons, zipf).expect("valid"));
    let mut body = String::with_capacity(batch * 800 + 32);
    body.push_str(r#"{"batch":["#);
    for i in 0..batch {
        if i > 0 {
            body.push(',');
        }
        let n = r * batch as u64 + i as u64;
        let person = match &person_dist {
            Some(z) => rand_distr::Distribution::sample(z, &mut rng) as u64,
            None => rng.gen_range(0..persons),
        };
        let (path, title) = PAGES[rng.gen_range(0..PAGES.len())];
        let agent = AGENTS[rng.gen_range(0..AGENTS.len())];
        let (source, medium, campaign) = CAMPAIGNS[rng.gen_range(0..CAMPAIGNS.len())];
        let locale = if rng.gen_bool(0.6) { "de-DE" } else { "en-GB" };
        let ts = 1_780_000_000_000i64 + n as i64 * 37;
        // the library sends a batch a little after its events happened
        let sent = ts + rng.gen_range(5..1_500);
        let [ts, sent] = [ts, sent].map(|t| {
            chrono::DateTime::from_timestamp_millis(t)
                .expect("valid")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        });
        let context = format!(
            r#""context":{{"library":{{"name":"analytics.js","version":"npm:next-1.70.0"}},"page":{{"path":"{path}","referrer":"https://www.google.de/","search":"","title":"{title}","url":"https://shop.example.de{path}"}},"userAgent":"{agent}","locale":"{locale}","campaign":{{"source":"{source}","medium":"{medium}","name":"{campaign}"}},"timezone":"Europe/Berlin"}}"#
        );
        // a person's anonymous id is a random-looking uuid, the same in all their messages; the
        // message id is random, as analytics.js makes it ("ajs-next-" and 32 hex digits)
        let anonymous = {
            let mut person_rng = ChaCha8Rng::seed_from_u64(person ^ 0x5eed_a11d);
            let (a, b): (u64, u64) = (person_rng.gen(), person_rng.gen());
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                0x8000 | (b >> 48) & 0x3fff,
                b & 0xffff_ffff_ffff
            )
        };
        let message_id = format!("ajs-next-{:032x}", rng.gen::<u128>());
        let common = format!(
            r#""anonymousId":"{anonymous}","messageId":"{message_id}","timestamp":"{ts}","sentAt":"{sent}""#
        );
        if rng.gen_bool(0.5) {
            body.push_str(&format!(
                r#"{{"type":"page","name":"{title}","properties":{{"path":"{path}","title":"{title}"}},{context},{common}}}"#
            ));
        } else {
            let (event, props) = match rng.gen_range(0..3) {
                0 => (
                    "Product Viewed",
                    format!(
                        r#"{{"product_id":"sku-{}","name":"{title}","price":{}.95,"currency":"EUR"}}"#,
                        n % 997,
                        20 + n % 180
                    ),
                ),
                1 => (
                    "Products Searched",
                    format!(
                        r#"{{"query":"{}"}}"#,
                        SEARCHES[rng.gen_range(0..SEARCHES.len())]
                    ),
                ),
                _ => (
                    "Product Added",
                    format!(
                        r#"{{"product_id":"sku-{}","quantity":1,"price":{}.95,"currency":"EUR"}}"#,
                        n % 997,
                        20 + n % 180
                    ),
                ),
            };
            body.push_str(&format!(
                r#"{{"type":"track","event":"{event}","properties":{props},{context},{common}}}"#
            ));
        }
    }
    body.push_str("]}");
    body
}

fn parse_bench(
    events: u64,
    batch: usize,
    runs: usize,
    realistic: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let bodies: Vec<String> = (0..events.div_ceil(batch as u64))
        .map(|r| match realistic {
            true => realistic_batch_body(0, r, batch),
            false => track_batch_body(0, r, batch),
        })
        .collect();
    let bytes: usize = bodies.iter().map(String::len).sum();
    let rules = itinera_core::ChannelRules::default();
    let opts = itinera_core::NormalizeOptions::at(1_750_000_000_000);
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut n = 0usize;
        for b in &bodies {
            let parsed =
                itinera_core::ingest::parse_batch(b.as_bytes(), &opts, &rules, || unreachable!())?;
            n += parsed.touchpoints.len();
            std::hint::black_box(parsed);
        }
        assert_eq!(n as u64, events.div_ceil(batch as u64) * batch as u64);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let per_event = times[times.len() / 2] / (bodies.len() * batch) as f64;
    println!(
        "parse + normalize, one thread: {:.2} µs per event (median of {runs}), {:.0} events/s, {:.0} bytes per event",
        per_event * 1e6,
        1.0 / per_event,
        bytes as f64 / (bodies.len() * batch) as f64
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    NO_DEDUP.set(cli.no_dedup).expect("set once");
    if cli.person_zipf != 0.0 && cli.person_zipf <= 1.0 {
        return Err(
            "--person-zipf: give an exponent above 1 (e.g. 1.3), or 0 for evenly spread persons"
                .into(),
        );
    }
    PERSON_ZIPF.set(cli.person_zipf).expect("set once");
    match cli.command {
        Command::Store {
            events,
            events_per_person,
            dir,
            csv,
            scan_runs,
        } => store_bench(events, events_per_person, dir, csv, scan_runs),
        Command::Http {
            url,
            key,
            events,
            batch,
            concurrency,
            realistic,
        } => http_bench(url, key, events, batch, concurrency, realistic),
        Command::Serving(plan) => serving::serving_bench(plan),
        Command::Parse {
            events,
            batch,
            runs,
            realistic,
        } => parse_bench(events, batch, runs, realistic),
        Command::Triggers {
            rate,
            seconds,
            entries,
        } => triggers::triggers_bench(rate, seconds, entries, cli.person_zipf),
        Command::Funnel {
            data,
            events,
            events_per_person,
            csv,
            runs,
            steps,
            no_http,
        } => funnel_bench(data, events, events_per_person, csv, runs, steps, no_http),
        Command::Attribution { data, events, runs } => {
            let dir = open_or_build(&data, events, 2, None)?;
            value::attribution_bench(&dir, runs)
        }
        Command::Clv { customers, runs } => value::clv_bench(customers, runs),
        Command::Analyses {
            data,
            events,
            events_per_person,
            runs,
        } => {
            let dir = open_or_build(&data, events, events_per_person, None)?;
            analyses::analyses_bench(&dir, runs)
        }
    }
}

/// The 4-step funnel of the published comparison, and a 20-step one over the same events.
pub const FUNNEL_4: [&str; 4] = [
    "page_view",
    "Product Viewed",
    "Product Added",
    "Order Completed",
];

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2] * 1000.0
}

/// Opens the bench data directory, filling its `default` project with the synthetic stream first
/// when it is empty.
fn open_or_build(
    data: &std::path::Path,
    events: u64,
    per_person: u64,
    csv: Option<PathBuf>,
) -> Result<std::sync::Arc<itinera_app::DataDir>, Box<dyn std::error::Error>> {
    let store_config = bench_store_config();
    let dir = itinera_app::DataDir::open(data, store_config.clone())?;
    if dir.store("default")?.stats()?.events == 0 {
        dir.close();
        drop(dir);
        println!("building {events} events into {}", data.display());
        store_bench(
            events,
            per_person,
            Some(data.join("projects").join("default")),
            csv,
            1,
        )?;
    } else {
        dir.close();
    }
    Ok(itinera_app::DataDir::open(data, store_config)?)
}

/// The bench project's store, its size printed.
fn default_store(
    dir: &itinera_app::DataDir,
) -> Result<itinera_store::Store, Box<dyn std::error::Error>> {
    let store = dir.store("default")?;
    let stats = store.stats()?;
    println!("data: {} events, {} persons", stats.events, stats.persons);
    Ok(store)
}

fn funnel_bench(
    data: PathBuf,
    events: u64,
    per_person: u64,
    csv: Option<PathBuf>,
    runs: usize,
    only_steps: Option<usize>,
    no_http: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    use itinera_engine::{run_funnel, FunnelQuery, Span};
    let dir = open_or_build(&data, events, per_person, csv)?;
    let store = default_store(&dir)?;
    let q4 = FunnelQuery::events(&FUNNEL_4, Span(7 * 86_400_000));
    {
        let mut t_snap = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let v = store.view();
            t_snap.push(t.elapsed().as_secs_f64());
            std::hint::black_box(&v);
        }
        let v = store.view();
        let mut t_run = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            run_funnel(&v, &q4, &Default::default())?;
            t_run.push(t.elapsed().as_secs_f64());
        }
        println!(
            "snapshot: median {:.1} ms; 4-step funnel on a held snapshot: median {:.1} ms",
            median_ms(t_snap),
            median_ms(t_run)
        );
    }
    let steps20: Vec<&str> = (0..20).map(|i| EVENTS[i % 5]).collect();
    let q20 = FunnelQuery::events(&steps20, Span(7 * 86_400_000));
    let wanted = |steps: usize| only_steps.is_none_or(|n| n == steps);
    for (name, q) in [("4-step", &q4), ("20-step", &q20)] {
        if !wanted(q.steps.len()) {
            continue;
        }
        let mut times = Vec::new();
        let mut first = None;
        for _ in 0..runs {
            let t = Instant::now();
            let r = run_funnel(&store.view(), q, &Default::default())?;
            times.push(t.elapsed().as_secs_f64());
            first.get_or_insert(r);
        }
        let r = first.unwrap();
        let counts: Vec<u64> = r.steps.iter().map(|s| s.count).collect();
        let fastest = times.iter().copied().fold(f64::INFINITY, f64::min) * 1000.0;
        println!(
            "in-process {name} ordered funnel, 7-day window: median {:.1} ms (fastest {fastest:.1}) over {runs} runs (snapshot included); counts {:?}",
            median_ms(times),
            &counts[..counts.len().min(6)]
        );
    }
    if no_http {
        return Ok(());
    }
    // through the HTTP API, warm
    let keys = dir.meta.lock().create_keys("default", "bench")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let app = itinera_server::AppState::new(itinera_app::App::new(
        itinera_app::Config::default(),
        dir.clone(),
    ));
    let (url, body4, body20) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(itinera_server::serve(app, listener, std::future::pending()));
        Ok::<_, Box<dyn std::error::Error>>((
            format!("http://{addr}/api/v1/funnel"),
            serde_json::to_string(&q4)?,
            serde_json::to_string(&q20)?,
        ))
    })?;
    let client = reqwest::Client::new();
    for (name, steps, body) in [("4-step", 4, body4), ("20-step", 20, body20)] {
        if !wanted(steps) {
            continue;
        }
        let mut times = Vec::new();
        for _ in 0..runs + 1 {
            let t = Instant::now();
            let resp = rt.block_on(
                client
                    .post(&url)
                    .bearer_auth(&keys.read_token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send(),
            )?;
            let status = resp.status();
            let text = rt.block_on(resp.text())?;
            assert!(status.is_success(), "{status}: {text}");
            times.push(t.elapsed().as_secs_f64());
        }
        times.remove(0); // the first request warms the server
        println!(
            "HTTP API {name} ordered funnel, 7-day window (warm): median {:.1} ms over {runs} runs",
            median_ms(times)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(zipf: f64) -> Vec<u64> {
        let mut sizes: Vec<u64> = Vec::new();
        let mut last = 0;
        for (person, ..) in Stream::shaped(100_000, 20, zipf) {
            if person != last {
                sizes.push(0);
                last = person;
            }
            *sizes.last_mut().unwrap() += 1;
        }
        sizes
    }

    /// Zipf 1.3: the largest person holds events/ζ(1.3) (about a quarter), most have one event;
    /// evenly spread: every person near the mean.
    #[test]
    fn persons_are_heavy_tailed_when_asked() {
        let heavy = sizes(1.3);
        assert_eq!(heavy.iter().sum::<u64>(), 100_000);
        let expected_top = 100_000.0 / zeta(1.3);
        assert!(
            (heavy[0] as f64 - expected_top).abs() < 0.01 * expected_top,
            "{}",
            heavy[0]
        );
        let mut sorted = heavy.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted[sorted.len() / 2],
            1,
            "the median person has one event"
        );
        let even = sizes(0.0);
        assert!(
            even.iter().all(|&n| n <= 40),
            "evenly spread: at most twice the mean"
        );
    }
}

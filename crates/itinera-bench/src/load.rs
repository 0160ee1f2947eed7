//! The tracking-API load generator shared by the ingestion and serving benches: prebuilt
//! `/v1/batch` requests sent over keep-alive connections, counted only when acknowledged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to send and how fast.
pub struct LoadPlan {
    /// Server address, `host:port`.
    pub host: String,
    pub write_key: String,
    pub events: u64,
    pub batch: usize,
    pub concurrency: usize,
    pub realistic: bool,
    /// Events a second to pace at; as fast as acknowledged when `None`.
    pub rate: Option<f64>,
    /// Makes the senders stop early (the rest of the plan is not sent).
    pub stop: Option<Arc<AtomicBool>>,
    /// Told when the requests are built and sending starts: building them takes a core for
    /// seconds, which must not be counted as load.
    pub started: Option<std::sync::mpsc::Sender<()>>,
    /// Numbers the first message as if this many had been sent before: realistic messages'
    /// times go on from there, as live traffic's do after an earlier load.
    pub first_message: u64,
}

/// What was acknowledged and how long each request took.
pub struct LoadReport {
    pub acked: u64,
    pub seconds: f64,
    /// Sorted request latencies.
    pub latencies: Vec<Duration>,
}

impl LoadReport {
    pub fn events_per_second(&self) -> f64 {
        self.acked as f64 / self.seconds
    }

    /// The latency at quantile `p`, in ms.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies, p)
    }
}

/// The value at quantile `p` of sorted durations, in ms (0 when empty).
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted
        .get(i)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Sends the plan's requests and waits for every answer. Requests are built before the clock
/// starts, so the generator spends its CPU on sending, not formatting (it shares the machine's
/// cores with the server); one thread is enough for it.
pub fn run_load(plan: LoadPlan) -> Result<LoadReport, Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // message ids new to the server in every run: repeated runs against one `itinera serve`
    // would otherwise measure the duplicate path (ids it has stored already)
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let requests = plan.events.div_ceil(plan.batch as u64);
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:", plan.write_key),
    );
    let host = plan.host.clone();
    let requests_bytes: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..requests)
            .map(|r| r + plan.first_message / plan.batch as u64)
            .map(|r| {
                let body = if plan.realistic {
                    crate::realistic_batch_body(run, r, plan.batch)
                } else {
                    crate::track_batch_body(run, r, plan.batch)
                };
                format!(
                    "POST /v1/batch HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            })
            .collect(),
    );
    if let Some(started) = &plan.started {
        let _ = started.send(());
    }
    let per_request = plan
        .rate
        .map(|r| Duration::from_secs_f64(plan.batch as f64 / r.max(1.0)));
    rt.block_on(async move {
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..plan.concurrency {
            let (next, host, requests_bytes) = (next.clone(), host.clone(), requests_bytes.clone());
            let stop = plan.stop.clone();
            let batch = plan.batch as u64;
            tasks.push(tokio::spawn(async move {
                let mut conn = tokio::io::BufReader::new(
                    tokio::net::TcpStream::connect(&host)
                        .await
                        .map_err(|e| e.to_string())?,
                );
                let mut lat = Vec::new();
                let mut acked = 0u64;
                loop {
                    let r = next.fetch_add(1, Ordering::Relaxed);
                    if r >= requests || stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                        break;
                    }
                    if let Some(gap) = per_request {
                        tokio::time::sleep_until((start + gap * r as u32).into()).await;
                    }
                    let t = Instant::now();
                    let status = post_raw(&mut conn, &requests_bytes[r as usize])
                        .await
                        .map_err(|e| e.to_string())?;
                    if status != 200 {
                        return Err(format!("server answered {status}"));
                    }
                    acked += batch;
                    lat.push(t.elapsed());
                }
                Ok::<_, String>((acked, lat))
            }));
        }
        let mut acked = 0;
        let mut latencies: Vec<Duration> = Vec::new();
        for t in tasks {
            let (a, l) = t.await.map_err(|e| e.to_string())??;
            acked += a;
            latencies.extend(l);
        }
        latencies.sort();
        Ok(LoadReport {
            acked,
            seconds: start.elapsed().as_secs_f64(),
            latencies,
        })
    })
}

/// Sends one prebuilt HTTP/1.1 request on a keep-alive connection and reads the answer; returns
/// the status. No HTTP client library: the generator does as little as it can.
pub(crate) async fn post_raw(
    conn: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    request: &[u8],
) -> std::io::Result<u16> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    conn.get_mut().write_all(request).await?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    let mut status = None;
    let mut length = None;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(bad("connection closed"));
        }
        if line == "\r\n" {
            break;
        }
        if status.is_none() {
            status = line.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
        } else if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = vec![0; length.ok_or_else(|| bad("no content-length"))?];
    conn.read_exact(&mut body).await?;
    status.ok_or_else(|| bad("no status line"))
}

//! Trigger latency: from the acknowledgment of the touchpoint that moves a person into a stage
//! to the rule's webhook arriving at a receiver, while the server ingests background traffic at
//! a given rate (evenly spread persons, or heavy-tailed with `--person-zipf`).

use crate::in_process_server_with;
use crate::load::post_raw;
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// When each person's webhook arrived.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// A webhook receiver on loopback that notes when each person's first request came.
async fn receiver(listener: tokio::net::TcpListener, got: Arrivals) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let got = got.clone();
        tokio::spawn(async move {
            let mut conn = tokio::io::BufReader::new(stream);
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                if conn.read_exact(&mut body).await.is_err() {
                    return;
                }
                let at = Instant::now();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    if let Some(p) = v["person"].as_str() {
                        got.lock().unwrap().entry(p.to_string()).or_insert(at);
                    }
                }
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                if conn.get_mut().write_all(ok).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn batch_request(host: &str, auth: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /v1/batch HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Runs the bench: `rate` background events/s for `seconds`, `entries` persons a second
/// entering the rule's stage; prints the latency percentiles.
pub fn triggers_bench(
    rate: u64,
    seconds: u64,
    entries: u64,
    zipf: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let data = itinera_app::DataDir::open(tmp.path(), itinera_store::StoreConfig::default())?;
    let edit = data
        .meta
        .lock()
        .create_token("default", itinera_meta::Scope::Edit, "bench")?;
    let mut cfg = itinera_app::Config {
        rate_limit_per_key: 0,
        token_rate_per_second: 0,
        ..Default::default()
    };
    cfg.outbound.allow_networks = vec!["127.0.0.1/32".into()];
    let (url, key) = in_process_server_with(data, cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let got: Arrivals = Default::default();
        let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let hook = format!("http://{}/hook", sink.local_addr()?);
        tokio::spawn(receiver(sink, got.clone()));
        let rule = serde_json::json!({
            "when": {"enters_stage": {"model": "customer-journey", "stage": "Decision"}},
            "actions": [{"webhook": {"url": hook, "secret": "bench-secret"}}],
            "max_per_minute": 100000,
            "enabled": true
        });
        let client = reqwest::Client::new();
        let r = client
            .put(format!("{url}/api/v1/triggers/bench"))
            .bearer_auth(&edit)
            .header("content-type", "application/json")
            .body(rule.to_string())
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("saving the rule: {}", r.text().await?).into());
        }
        let host = url.trim_start_matches("http://").to_string();
        let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{key}:"));
        // background: batches of 100 realistic-size track calls, paced to `rate`
        let persons = 100_000u64;
        let zipf_dist = (zipf > 1.0)
            .then(|| rand_distr::Zipf::new(persons, zipf))
            .transpose()?;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let batches = (rate * seconds).div_ceil(100);
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
        let background: Vec<Vec<u8>> = (0..batches)
            .map(|b| {
                let msgs: Vec<String> = (0..100)
                    .map(|i| {
                        let p = match &zipf_dist {
                            Some(z) => z.sample(&mut rng) as u64,
                            None => rng.gen_range(0..persons),
                        };
                        format!(
                            r#"{{"type":"track","event":"Product Viewed","userId":"bg-{p}","messageId":"bg-{run}-{b}-{i}","properties":{{"product_id":"sku-{}","price":19.9}},"context":{{"library":{{"name":"analytics.js","version":"2.11.1"}},"page":{{"path":"/products/{}","referrer":"https://www.google.com/"}},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36","locale":"de-DE","campaign":{{"source":"newsletter","medium":"email","name":"winter"}}}}}}"#,
                            i % 997,
                            i % 997
                        )
                    })
                    .collect();
                batch_request(&host, &auth, &format!(r#"{{"batch":[{}]}}"#, msgs.join(",")))
            })
            .collect();
        let interval = Duration::from_secs_f64(100.0 / rate as f64);
        let loads = 4;
        let started = Instant::now();
        let mut tasks = Vec::new();
        let background = Arc::new(background);
        for w in 0..loads {
            let (host, background) = (host.clone(), background.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = tokio::io::BufReader::new(tokio::net::TcpStream::connect(&host).await?);
                let mut sent = 0u64;
                for (k, req) in background.iter().enumerate().skip(w).step_by(loads) {
                    let due = started + interval * k as u32;
                    tokio::time::sleep_until(due.into()).await;
                    if post_raw(&mut conn, req).await? != 200 {
                        return Err(std::io::Error::other("background batch refused"));
                    }
                    sent += 100;
                }
                Ok::<_, std::io::Error>(sent)
            }));
        }
        // persons entering the stage: a product view, then an order, each acknowledged alone
        let mut conn = tokio::io::BufReader::new(tokio::net::TcpStream::connect(&host).await?);
        let mut acked: HashMap<String, Instant> = HashMap::new();
        let every = Duration::from_secs_f64(1.0 / entries as f64);
        let n = entries * seconds;
        for k in 0..n {
            tokio::time::sleep_until((started + every * k as u32).into()).await;
            let person = format!("entry-{run}-{k}");
            let body = format!(
                r#"{{"batch":[{{"type":"track","event":"Product Viewed","userId":"{person}","messageId":"{person}-v"}},{{"type":"track","event":"Order Completed","userId":"{person}","messageId":"{person}-o","properties":{{"revenue":42}}}}]}}"#
            );
            if post_raw(&mut conn, &batch_request(&host, &auth, &body)).await? != 200 {
                return Err("an entry was refused".into());
            }
            acked.insert(person, Instant::now());
        }
        let mut background_sent = 0;
        for t in tasks {
            background_sent += t.await??;
        }
        let load_secs = started.elapsed().as_secs_f64();
        // the last webhooks: wait at most 30 s
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.lock().unwrap().len() < acked.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let got = got.lock().unwrap().clone();
        let mut lat: Vec<f64> = acked
            .iter()
            .filter_map(|(p, a)| got.get(p).map(|g| g.saturating_duration_since(*a).as_secs_f64() * 1000.0))
            .collect();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let pct = |q: f64| lat.get(((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len().max(1)) - 1).copied().unwrap_or(f64::NAN);
        println!(
            "trigger latency (acknowledged order → webhook received), {}: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} of {} webhooks arrived",
            if zipf > 1.0 { format!("heavy-tailed background persons (Zipf {zipf})") } else { "evenly spread background persons".into() },
            pct(0.5),
            pct(0.9),
            pct(0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            lat.len(),
            acked.len()
        );
        println!(
            "background: {background_sent} events in {load_secs:.1} s = {:.0} events/s (asked {rate}/s); {} stage entries a second",
            background_sent as f64 / load_secs,
            entries
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

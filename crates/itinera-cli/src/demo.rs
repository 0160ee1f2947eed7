//! `itinera demo`: a synthetic world whose history ends now, and a live trickle of new journeys
//! sent through the tracking API like real traffic, so that the live map, alerts and cases have
//! something to show.

use crate::import::Importer;
use crate::{CliResult, ServerConfig};
use itinera_store::Store;
use itinera_synth::{World, WorldSpec};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// People a round of the live trickle starts journeys for.
const LIVE_PEOPLE: u64 = 400;

fn timestamp_ms(m: &Value) -> i64 {
    m["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .unwrap_or(i64::MIN)
}

/// Days over which the demo's people arrive, up to today.
const ARRIVAL_DAYS: i64 = 730;

/// The demo world's messages, its history ending now: people arrive over the two years before
/// `now_ms` (whole days, so weekdays and times of day keep their pattern), and what the
/// generator simulates after now has not happened yet and is left out, so that journeys are in
/// progress as in a real project: people became customers last week, and some are stuck in a
/// stage today.
fn until_now(customers: u64, seed: u64, now_ms: i64) -> impl Iterator<Item = Value> {
    const DAY: i64 = 86_400_000;
    let spec = WorldSpec {
        customers,
        seed,
        start_ms: (now_ms - ARRIVAL_DAYS * DAY).div_euclid(DAY) * DAY,
        days: ARRIVAL_DAYS - 1,
        ..Default::default()
    };
    World::new(spec).filter(move |m| timestamp_ms(m) <= now_ms - 60_000)
}

/// Fills an empty store with the demo world, its history ending now.
pub fn fill(store: &Store, cfg: &ServerConfig, customers: u64, seed: u64) -> CliResult {
    eprintln!(
        "generating a demo world of {customers} people into {} ...",
        cfg.data.display()
    );
    let started = Instant::now();
    let mut imp = Importer::new(
        store,
        &cfg.channels,
        cfg.max_future_hours * 3_600_000,
        None,
        false,
    )?;
    imp.progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} events {per_sec}").expect("valid"),
    );
    for (i, m) in until_now(customers, seed, itinera_app::now_ms()).enumerate() {
        imp.add("demo", i as u64 + 1, &m.to_string(), "")?;
        imp.progress.inc(1);
    }
    let r = imp.finish(started)?;
    store.flush()?;
    eprintln!("stored {} events in {:.1} s", r.stored, r.seconds);
    Ok(())
}

/// A generated message as a new live one: its people renamed for this round (they must not
/// merge with the history's), its id made unique, its time now.
fn live(mut m: Value, round: u64, now_ms: i64) -> Value {
    let prefix = format!("live{round}-");
    let rename = |v: &mut Value| {
        if let Some(s) = v.as_str() {
            *v = json!(format!("{prefix}{s}"));
        }
    };
    for field in [
        "userId",
        "anonymousId",
        "previousId",
        "groupId",
        "messageId",
    ] {
        if let Some(v) = m.get_mut(field) {
            rename(v);
        }
    }
    if let Some(v) = m.pointer_mut("/context/groupId") {
        rename(v);
    }
    if let Some(v) = m.pointer_mut("/properties/referrer_id") {
        rename(v);
    }
    m["timestamp"] = json!(itinera_core::message::format_ts(now_ms));
    m
}

/// Sends new journeys to the server's tracking API at `rate` events a second, for as long as the
/// process runs: generated journeys in time order, each message sent when its turn comes, dated
/// now. Some answer surveys; the detractors among them fire the demo's alert.
pub fn spawn_trickle(addr: SocketAddr, write_key: String, rate: f64, seed: u64) {
    if rate <= 0.0 {
        return;
    }
    std::thread::Builder::new()
        .name("demo-trickle".into())
        .spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client");
            let url = format!("http://{addr}/v1/batch");
            let mut due = 0.0f64;
            for round in 1u64.. {
                let mut messages: Vec<Value> = World::new(WorldSpec {
                    customers: LIVE_PEOPLE,
                    seed: seed.wrapping_add(round.wrapping_mul(7_919)),
                    ..Default::default()
                })
                .collect();
                messages.sort_by_key(timestamp_ms);
                let mut queue = messages.into_iter();
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    due += rate;
                    let n = due.floor() as usize;
                    due -= n as f64;
                    let now = itinera_app::now_ms();
                    let batch: Vec<Value> = queue.by_ref().take(n).map(|m| live(m, round, now)).collect();
                    let exhausted = batch.len() < n;
                    if !batch.is_empty() {
                        let sent = client
                            .post(&url)
                            .basic_auth(&write_key, Some(""))
                            .json(&json!({ "batch": batch }))
                            .send();
                        match sent {
                            Ok(r) if r.status().is_success() => {}
                            Ok(r) => tracing::warn!(status = %r.status(), "the demo's live trickle was refused"),
                            Err(e) => tracing::warn!(error = %e, "the demo's live trickle could not reach the server"),
                        }
                    }
                    if exhausted {
                        break;
                    }
                }
            }
        })
        .expect("the trickle thread starts");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_world_can_end_now_and_live_messages_are_new_people_dated_now() {
        let now = 1_800_000_000_000;
        let times: Vec<i64> = until_now(200, 7, now).map(|m| timestamp_ms(&m)).collect();
        let last = *times.iter().max().unwrap();
        assert!(
            last <= now - 60_000 && last > now - 7 * 86_400_000,
            "{last} vs {now}"
        );
        // people keep arriving: some of the history lies in the last month
        let recent = times.iter().filter(|t| **t > now - 30 * 86_400_000).count();
        assert!(
            recent * 50 > times.len(),
            "{recent} of {} in the last 30 days",
            times.len()
        );
        let m = json!({"type": "track", "userId": "u1", "messageId": "m1", "event": "Referral Sent",
                       "timestamp": "2024-01-01T00:00:00Z", "properties": {"referrer_id": "u9"}});
        let l = live(m, 3, now);
        assert_eq!(l["userId"], "live3-u1");
        assert_eq!(l["messageId"], "live3-m1");
        assert_eq!(l["properties"]["referrer_id"], "live3-u9");
        assert_eq!(timestamp_ms(&l), now);
    }
}

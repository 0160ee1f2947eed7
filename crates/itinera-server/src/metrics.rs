//! Prometheus metrics: events received/accepted/rejected, request latency, store sizes.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub events_received: Counter,
    pub events_accepted: Counter,
    pub events_rejected: Counter,
    pub events_duplicate: Counter,
    pub request_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub store_events: Family<Labels, Gauge>,
    pub store_bytes: Family<Labels, Gauge>,
    pub store_memory: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("itinera");
        let events_received = Counter::default();
        let events_accepted = Counter::default();
        let events_rejected = Counter::default();
        let events_duplicate = Counter::default();
        let request_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let store_events = Family::default();
        let store_bytes = Family::default();
        let store_memory = Family::default();
        registry.register(
            "events_received",
            "Messages received by the tracking API",
            events_received.clone(),
        );
        registry.register(
            "events_accepted",
            "Messages stored durably",
            events_accepted.clone(),
        );
        registry.register(
            "events_rejected",
            "Messages refused as invalid",
            events_rejected.clone(),
        );
        registry.register(
            "events_duplicate",
            "Messages dropped as retries of a stored message id",
            events_duplicate.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status",
            request_seconds.clone(),
        );
        registry.register(
            "store_events",
            "Events stored per project",
            store_events.clone(),
        );
        registry.register(
            "store_bytes_on_disk",
            "Bytes on disk per project",
            store_bytes.clone(),
        );
        registry.register(
            "store_memory_bytes",
            "Bytes a project's store holds in memory, by part (estimated from its structures)",
            store_memory.clone(),
        );
        Metrics {
            registry,
            events_received,
            events_accepted,
            events_rejected,
            events_duplicate,
            request_seconds,
            store_events,
            store_bytes,
            store_memory,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a string cannot fail");
        out
    }
}

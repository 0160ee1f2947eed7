//! The process configuration, read by the CLI from a TOML file, `ITINERA_*` environment variables
//! and flags (flags win). Every field has a documented default (see `docs/configuration.md`).

use itinera_core::{ChannelRules, IpPolicy};
use itinera_store::StoreConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory: metadata database and one store per project.
    pub data: PathBuf,
    /// Address to listen on.
    pub listen: String,
    /// What to keep of client IP addresses: `full`, `anonymize` (default) or `drop`.
    pub ip_policy: IpPolicy,
    /// Messages timestamped further than this many hours ahead of the server clock are refused.
    pub max_future_hours: i64,
    /// Requests per second allowed per write key (a burst of twice as many is allowed).
    pub rate_limit_per_key: u32,
    /// Seconds a successful key lookup is cached (a revoked key stops working after at most this).
    pub auth_cache_seconds: u64,
    /// Seconds between evaluations of the alert rules (0: only on `POST /api/v1/alerts/evaluate`).
    pub alert_interval_seconds: u64,
    /// Webhook delivery: attempts, and the delay before the second one (doubling after each).
    pub webhook_attempts: u32,
    pub webhook_backoff_ms: u64,
    /// Requests per minute to the public survey pages, per client IP and per person.
    pub survey_rate_per_minute: u32,
    pub store: StoreSettings,
    pub channels: ChannelRules,
    /// Where alert e-mails go out.
    pub smtp: SmtpSettings,
    /// The address customers reach this server at (for links in e-mails).
    pub public_url: String,
    /// Where the server may send requests (alert webhooks): see `docs/security.md`.
    pub outbound: OutboundSettings,
    /// Open connections at most (beyond it, a small pool answers only `/healthz`).
    pub max_connections: usize,
    /// A connection must send a request's headers within this (idle keep-alive ones too).
    pub header_timeout_seconds: u64,
    /// A request's body must arrive within this.
    pub body_timeout_seconds: u64,
    /// When set, `/metrics` answers only `Authorization: Bearer <this>` (it shows project names
    /// and volumes); unset, it is open to whoever reaches the port.
    pub metrics_token: Option<String>,
    /// Query-API requests per second allowed per token (bursts of twice as many); 0 = off.
    pub token_rate_per_second: u32,
    /// An analysis is stopped after this many seconds with a clear error; 0 = no budget.
    pub query_timeout_seconds: u64,
    /// An analysis holding more than this many MiB at once is stopped with a clear error;
    /// 0 = no budget.
    pub query_memory_mb: u64,
    /// Stall rules of triggers (`stalled_in_stage`) are looked for this often.
    pub trigger_sweep_seconds: u64,
    /// A web-app login lasts this long.
    pub session_hours: u64,
    /// Session cookies carry `Secure` (set it when users reach the server over HTTPS, e.g.
    /// through a TLS-terminating proxy).
    pub secure_cookies: bool,
    /// Login attempts allowed per minute per client address and per e-mail.
    pub login_attempts_per_minute: u32,
}

/// Destinations an admin allows for requests the server sends. A webhook's host must resolve
/// to public addresses only, unless its network is listed in `allow_networks`; when
/// `allow_hosts` is not empty, the host must also match one of its entries (`hooks.example.com`,
/// `*.example.com`, or an address).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    pub allow_hosts: Vec<String>,
    /// CIDR networks otherwise refused (loopback, private, link-local, …) that destinations may
    /// be in, e.g. `["10.20.0.0/16"]` for an internal receiver.
    pub allow_networks: Vec<String>,
}

impl OutboundSettings {
    /// The allowed networks; entries that do not parse were refused when the configuration was
    /// loaded (`validate`).
    pub fn networks(&self) -> Vec<ipnet::IpNet> {
        self.allow_networks
            .iter()
            .filter_map(|n| parse_network(n).ok())
            .collect()
    }

    /// Checks every entry, naming the bad one.
    pub fn validate(&self) -> Result<(), String> {
        for n in &self.allow_networks {
            parse_network(n).map_err(|e| format!("outbound.allow_networks: {n:?}: {e}"))?;
        }
        Ok(())
    }
}

/// A CIDR network, or a single address as its /32 or /128.
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let t = text.trim();
    t.parse::<ipnet::IpNet>()
        .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| "not a network (CIDR like 10.0.0.0/8) or an address".to_string())
}

/// An SMTP relay for alert e-mails (plain SMTP, optionally with a login, e.g. to a local relay
/// that handles TLS onwards).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    /// Host of the relay; empty: e-mail alerts are refused.
    pub host: String,
    pub port: u16,
    pub from: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            host: String::new(),
            port: 25,
            from: "itinera@localhost".into(),
            username: None,
            password: None,
        }
    }
}

/// Store tuning, mirrored from [`StoreConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    pub flush_rows: usize,
    pub flush_when_quiet_seconds: u64,
    pub max_memory_rows: usize,
    pub dedup_window_hours: i64,
    pub compact_after_segments: usize,
    pub compact_max_rows: usize,
    /// Memory a compaction plans to use for merging, in MiB.
    pub compact_memory_mb: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        let d = StoreConfig::default();
        StoreSettings {
            flush_rows: d.flush_rows,
            flush_when_quiet_seconds: d.flush_when_quiet_ms / 1000,
            max_memory_rows: d.max_memory_rows,
            dedup_window_hours: d.dedup_window_ms / 3_600_000,
            compact_after_segments: d.compact_after_segments,
            compact_max_rows: d.compact_max_rows,
            compact_memory_mb: d.compact_memory_bytes >> 20,
        }
    }
}

impl StoreSettings {
    pub fn to_store_config(&self) -> StoreConfig {
        StoreConfig {
            flush_rows: self.flush_rows.max(1),
            flush_when_quiet_ms: self.flush_when_quiet_seconds.saturating_mul(1000),
            max_memory_rows: self.max_memory_rows.max(self.flush_rows.max(1)),
            dedup_window_ms: self.dedup_window_hours * 3_600_000,
            compact_after_segments: self.compact_after_segments.max(1),
            compact_max_rows: self.compact_max_rows.max(2),
            compact_memory_bytes: self.compact_memory_mb.max(16) << 20,
            compaction_only: false,
            read_only: false,
        }
    }
}

/// The default data directory: `$ITINERA_DATA`, else `./itinera-data`.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("itinera-data")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: default_data_dir(),
            listen: "127.0.0.1:8460".into(),
            ip_policy: IpPolicy::default(),
            max_future_hours: 24,
            rate_limit_per_key: 5_000,
            auth_cache_seconds: 5,
            alert_interval_seconds: 30,
            webhook_attempts: 5,
            webhook_backoff_ms: 1_000,
            survey_rate_per_minute: 30,
            store: StoreSettings::default(),
            channels: ChannelRules::default(),
            smtp: SmtpSettings::default(),
            public_url: "http://127.0.0.1:8460".into(),
            outbound: OutboundSettings::default(),
            max_connections: 4096,
            header_timeout_seconds: 30,
            body_timeout_seconds: 60,
            metrics_token: None,
            token_rate_per_second: 50,
            query_timeout_seconds: 600,
            query_memory_mb: 2048,
            trigger_sweep_seconds: 60,
            session_hours: 12,
            secure_cookies: false,
            login_attempts_per_minute: 10,
        }
    }
}

//! Segment Spec messages: validation and normalization.
//!
//! Every message kept by Itinera is the client's message with every field it sent, plus the fields
//! the server owns (`receivedAt`, a corrected `timestamp`, `originalTimestamp`, a `messageId` when
//! the client sent none). Secrets (`writeKey`) are removed and `context.ip` follows the privacy
//! policy. Errors name the field and the reason so that a client can fix its payload.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Largest single message accepted, as in the Segment HTTP API.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Largest batch accepted, as in the Segment HTTP API.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

/// The six message types of the Segment Spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl MessageType {
    pub const ALL: [MessageType; 6] = [
        MessageType::Track,
        MessageType::Identify,
        MessageType::Page,
        MessageType::Screen,
        MessageType::Group,
        MessageType::Alias,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Track => "track",
            MessageType::Identify => "identify",
            MessageType::Page => "page",
            MessageType::Screen => "screen",
            MessageType::Group => "group",
            MessageType::Alias => "alias",
        }
    }

    /// Parses the spec's type name; the browser short forms (`t`, `i`, ...) are accepted too.
    pub fn parse(s: &str) -> Option<MessageType> {
        Some(match s {
            "track" | "t" => MessageType::Track,
            "identify" | "i" => MessageType::Identify,
            "page" | "p" => MessageType::Page,
            "screen" | "s" => MessageType::Screen,
            "group" | "g" => MessageType::Group,
            "alias" | "a" => MessageType::Alias,
            _ => return None,
        })
    }

    /// Stable one-byte code used by storage formats.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<MessageType> {
        MessageType::ALL.get(code as usize).copied()
    }

    /// The event name Itinera gives messages that carry none: `page_view`, `screen_view`, ...
    /// Track messages keep their own `event`.
    pub fn implicit_event_name(self) -> &'static str {
        match self {
            MessageType::Track => "track",
            MessageType::Identify => "identify",
            MessageType::Page => "page_view",
            MessageType::Screen => "screen_view",
            MessageType::Group => "group",
            MessageType::Alias => "alias",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message was refused: the field and the reason, both meant for the client developer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{field}: {reason}")]
pub struct MessageError {
    pub field: String,
    pub reason: String,
}

impl MessageError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        MessageError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What to do with the client IP address (`context.ip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IpPolicy {
    /// Keep the address the client sent, or the connection's address when it sent none.
    Full,
    /// Keep it with the last octet (IPv4) or the last 80 bits (IPv6) zeroed.
    #[default]
    Anonymize,
    /// Drop it.
    Drop,
}

/// Server-side inputs to normalization.
#[derive(Debug, Clone)]
pub struct NormalizeOptions {
    /// When the server received the message, in ms since the epoch.
    pub received_at_ms: i64,
    /// Messages whose corrected timestamp is further than this in the future are refused.
    pub max_future_ms: i64,
    pub ip_policy: IpPolicy,
    /// The connection's remote address, used when the message has no `context.ip`.
    pub remote_ip: Option<String>,
}

impl NormalizeOptions {
    pub fn at(received_at_ms: i64) -> Self {
        NormalizeOptions {
            received_at_ms,
            max_future_ms: 24 * 3600 * 1000,
            ip_policy: IpPolicy::default(),
            remote_ip: None,
        }
    }
}

/// A validated, normalized message: the full JSON object and the facts parsed out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: MessageType,
    pub message_id: String,
    /// Corrected event time in ms since the epoch.
    pub timestamp_ms: i64,
    pub received_at_ms: i64,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub previous_id: Option<String>,
    pub group_id: Option<String>,
    /// `event` for track messages, the page/screen `name` otherwise.
    pub event: Option<String>,
    pub name: Option<String>,
    /// The whole normalized message.
    pub body: Map<String, Value>,
}

impl Message {
    /// The id the journey is keyed on before stitching: the user id when known.
    pub fn distinct_id(&self) -> &str {
        self.user_id
            .as_deref()
            .or(self.anonymous_id.as_deref())
            .expect("validated messages carry an id")
    }

    pub fn properties(&self) -> Option<&Map<String, Value>> {
        self.body.get("properties").and_then(Value::as_object)
    }

    pub fn traits(&self) -> Option<&Map<String, Value>> {
        // identify/group carry traits at the top level; other calls may carry context.traits.
        self.body
            .get("traits")
            .and_then(Value::as_object)
            .or_else(|| {
                self.context()
                    .and_then(|c| c.get("traits"))
                    .and_then(Value::as_object)
            })
    }

    pub fn context(&self) -> Option<&Map<String, Value>> {
        self.body.get("context").and_then(Value::as_object)
    }

    /// `context.<a>.<b>` as a string, if present.
    pub fn context_str(&self, path: &[&str]) -> Option<&str> {
        let mut v = self.body.get("context")?;
        for p in path {
            v = v.get(p)?;
        }
        v.as_str()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.body).expect("json map serializes")
    }
}

/// Formats ms since the epoch as the RFC 3339 form Segment uses (`2024-01-02T03:04:05.678Z`).
pub fn format_ts(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Parses an ISO-8601 timestamp (with offset, or naive as UTC, or a date) into ms since the epoch.
pub fn parse_ts(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    None
}

fn id_field(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, MessageError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() > 512 => {
            Err(MessageError::new(field, "must be at most 512 characters"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // SDKs in typed languages sometimes send numeric ids; Segment accepts them as strings.
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(MessageError::new(
            field,
            format!("must be a string, got {}", json_type(other)),
        )),
    }
}

fn opt_string(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, MessageError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(MessageError::new(
            field,
            format!("must be a string, got {}", json_type(other)),
        )),
    }
}

fn opt_ts(obj: &Map<String, Value>, field: &str) -> Result<Option<i64>, MessageError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_ts(s).map(Some).ok_or_else(|| {
            MessageError::new(field, format!("is not an ISO-8601 timestamp: {s:?}"))
        }),
        Some(other) => Err(MessageError::new(
            field,
            format!("must be an ISO-8601 string, got {}", json_type(other)),
        )),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A fresh message id for clients that sent none (UUID v4 layout from the given entropy).
pub fn new_message_id(entropy: u128) -> String {
    let mut b = entropy.to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}

/// Validates and normalizes one message.
///
/// `forced_type` is the type implied by the endpoint (`/v1/track` ...); `None` for batches and
/// imports, where the message's own `type` decides. `fallback_id` supplies a message id when the
/// client sent none.
pub fn normalize(
    value: Value,
    forced_type: Option<MessageType>,
    opts: &NormalizeOptions,
    fallback_id: impl FnOnce() -> String,
) -> Result<Message, MessageError> {
    let mut obj = match value {
        Value::Object(o) => o,
        other => {
            return Err(MessageError::new(
                "",
                format!("a message must be a JSON object, got {}", json_type(&other)),
            ))
        }
    };
    obj.remove("writeKey");
    let kind = match forced_type {
        Some(t) => t,
        None => match obj.get("type") {
            Some(Value::String(s)) => MessageType::parse(s).ok_or_else(|| {
                MessageError::new(
                    "type",
                    format!(
                        "unknown type {s:?}; expected track, identify, page, screen, group or alias"
                    ),
                )
            })?,
            None | Some(Value::Null) => {
                return Err(MessageError::new("type", "is required in a batch"))
            }
            Some(other) => {
                return Err(MessageError::new(
                    "type",
                    format!("must be a string, got {}", json_type(other)),
                ))
            }
        },
    };
    obj.insert("type".into(), Value::String(kind.as_str().into()));

    let user_id = id_field(&obj, "userId")?;
    let anonymous_id = id_field(&obj, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(MessageError::new(
            "userId",
            "either userId or anonymousId is required",
        ));
    }
    if let Some(u) = &user_id {
        obj.insert("userId".into(), Value::String(u.clone()));
    }
    if let Some(a) = &anonymous_id {
        obj.insert("anonymousId".into(), Value::String(a.clone()));
    }
    for field in ["properties", "traits", "context", "integrations"] {
        match obj.get(field) {
            None | Some(Value::Object(_)) => {}
            Some(Value::Null) => {
                obj.remove(field);
            }
            Some(other) => {
                return Err(MessageError::new(
                    field,
                    format!("must be an object, got {}", json_type(other)),
                ))
            }
        }
    }
    let event = opt_string(&obj, "event")?;
    let name = opt_string(&obj, "name")?;
    opt_string(&obj, "category")?;
    let previous_id = id_field(&obj, "previousId")?;
    let group_id = id_field(&obj, "groupId")?;
    match kind {
        MessageType::Track if event.as_deref().is_none_or(str::is_empty) => {
            return Err(MessageError::new("event", "is required for track"))
        }
        MessageType::Track if event.as_deref().map_or(0, str::len) > 200 => {
            return Err(MessageError::new("event", "must be at most 200 characters"))
        }
        MessageType::Group if group_id.is_none() => {
            return Err(MessageError::new("groupId", "is required for group"))
        }
        MessageType::Alias if previous_id.is_none() => {
            return Err(MessageError::new("previousId", "is required for alias"))
        }
        MessageType::Alias if user_id.is_none() => {
            return Err(MessageError::new("userId", "is required for alias"))
        }
        _ => {}
    }
    if let Some(g) = &group_id {
        obj.insert("groupId".into(), Value::String(g.clone()));
    }
    if let Some(p) = &previous_id {
        obj.insert("previousId".into(), Value::String(p.clone()));
    }

    let message_id = match obj.get("messageId") {
        None | Some(Value::Null) => fallback_id(),
        Some(Value::String(s)) if s.is_empty() => fallback_id(),
        Some(Value::String(s)) if s.len() > 256 => {
            return Err(MessageError::new(
                "messageId",
                "must be at most 256 characters",
            ))
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(MessageError::new(
                "messageId",
                format!("must be a string, got {}", json_type(other)),
            ))
        }
    };
    obj.insert("messageId".into(), Value::String(message_id.clone()));

    // Clock skew (Segment Spec, "Timestamps"): the client's time is `originalTimestamp` (or the
    // `timestamp` it sent); with `sentAt`, the corrected time is receivedAt - (sentAt - original).
    let received = opts.received_at_ms;
    let client_ts = opt_ts(&obj, "timestamp")?;
    let original = opt_ts(&obj, "originalTimestamp")?.or(client_ts);
    let sent_at = opt_ts(&obj, "sentAt")?;
    let timestamp = match (original, sent_at) {
        (Some(o), Some(s)) => received - (s - o),
        (Some(o), None) => o,
        (None, _) => received,
    };
    if timestamp > received + opts.max_future_ms {
        return Err(MessageError::new(
            "timestamp",
            format!(
                "{} is more than {} h in the future",
                format_ts(timestamp),
                opts.max_future_ms / 3_600_000
            ),
        ));
    }
    if timestamp < 0 {
        return Err(MessageError::new("timestamp", "is before 1970"));
    }
    if let Some(o) = original {
        if !obj.contains_key("originalTimestamp") {
            obj.insert("originalTimestamp".into(), Value::String(format_ts(o)));
        }
    }
    obj.insert("timestamp".into(), Value::String(format_ts(timestamp)));
    obj.insert("receivedAt".into(), Value::String(format_ts(received)));

    apply_ip_policy(&mut obj, opts);

    Ok(Message {
        kind,
        message_id,
        timestamp_ms: timestamp,
        received_at_ms: received,
        user_id,
        anonymous_id,
        previous_id,
        group_id,
        event,
        name,
        body: obj,
    })
}

fn apply_ip_policy(obj: &mut Map<String, Value>, opts: &NormalizeOptions) {
    let ctx = obj
        .entry("context")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(ctx) = ctx else { return };
    let ip = ctx
        .get("ip")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| opts.remote_ip.clone());
    match (opts.ip_policy, ip) {
        (IpPolicy::Drop, _) | (_, None) => {
            ctx.remove("ip");
        }
        (IpPolicy::Full, Some(ip)) => {
            ctx.insert("ip".into(), Value::String(ip));
        }
        (IpPolicy::Anonymize, Some(ip)) => match anonymize_ip(&ip) {
            Some(a) => {
                ctx.insert("ip".into(), Value::String(a));
            }
            None => {
                ctx.remove("ip");
            }
        },
    }
    if ctx.is_empty() {
        obj.remove("context");
    }
}

/// Zeroes the host part of an address: the last octet of IPv4, the last 80 bits of IPv6.
pub fn anonymize_ip(ip: &str) -> Option<String> {
    match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(std::net::Ipv4Addr::new(o[0], o[1], o[2], 0).to_string())
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(v: Value) -> Result<Message, MessageError> {
        normalize(v, None, &NormalizeOptions::at(1_700_000_000_000), || {
            "gen".into()
        })
    }

    #[test]
    fn keeps_every_field_and_sets_server_fields() {
        let m = norm(json!({
            "type": "track", "event": "Order Completed", "userId": "u1",
            "properties": {"revenue": 12.5}, "integrations": {"All": true},
            "context": {"campaign": {"source": "google"}}, "custom": 1, "writeKey": "secret"
        }))
        .unwrap();
        assert_eq!(m.kind, MessageType::Track);
        assert_eq!(m.body["custom"], json!(1));
        assert_eq!(m.body["integrations"], json!({"All": true}));
        assert_eq!(m.body["messageId"], json!("gen"));
        assert_eq!(m.body["receivedAt"], json!("2023-11-14T22:13:20.000Z"));
        assert!(
            m.body.get("writeKey").is_none(),
            "write keys are never stored"
        );
    }

    #[test]
    fn corrects_clock_skew_with_sent_at() {
        // The device clock is one hour fast: sent at 11:00 device time, received at 10:00.
        let received = parse_ts("2024-01-01T10:00:00Z").unwrap();
        let m = normalize(
            json!({"type":"page","anonymousId":"a","timestamp":"2024-01-01T10:59:00Z","sentAt":"2024-01-01T11:00:00Z"}),
            None,
            &NormalizeOptions::at(received),
            || "x".into(),
        )
        .unwrap();
        assert_eq!(m.body["timestamp"], json!("2024-01-01T09:59:00.000Z"));
        assert_eq!(
            m.body["originalTimestamp"],
            json!("2024-01-01T10:59:00.000Z")
        );
    }

    #[test]
    fn errors_name_field_and_reason() {
        let e = norm(json!({"type": "track", "event": "x"})).unwrap_err();
        assert_eq!(e.field, "userId");
        let e = norm(json!({"type": "boom", "userId": "u"})).unwrap_err();
        assert_eq!(e.field, "type");
        assert!(e.reason.contains("boom"));
        let e = norm(json!({"type": "track", "userId": "u"})).unwrap_err();
        assert_eq!(e.field, "event");
        let e = norm(json!({"type": "track", "userId": "u", "event": "e", "properties": [1]}))
            .unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("properties", "must be an object, got array")
        );
        let e = norm(json!({"type": "identify", "userId": {"a": 1}})).unwrap_err();
        assert_eq!(e.field, "userId");
        let e = norm(json!({"type":"identify","userId":"u","timestamp":"2999-01-01T00:00:00Z"}))
            .unwrap_err();
        assert_eq!(e.field, "timestamp");
        let e = norm(json!({"type":"identify","userId":"u","timestamp":"yesterday"})).unwrap_err();
        assert_eq!(e.field, "timestamp");
        let e = norm(json!({"type":"alias","previousId":"a"})).unwrap_err();
        assert_eq!(e.field, "userId");
        let e = norm(json!({"type":"group","userId":"a"})).unwrap_err();
        assert_eq!(e.field, "groupId");
    }

    #[test]
    fn numeric_ids_become_strings() {
        let m = norm(json!({"type":"identify","userId": 42})).unwrap();
        assert_eq!(m.user_id.as_deref(), Some("42"));
        assert_eq!(m.body["userId"], json!("42"));
    }

    #[test]
    fn ip_policy() {
        let mut o = NormalizeOptions::at(0);
        o.remote_ip = Some("10.1.2.3".into());
        let m = normalize(
            json!({"type":"identify","userId":"u","timestamp":"1970-01-01T00:00:00Z"}),
            None,
            &o,
            || "x".into(),
        )
        .unwrap();
        assert_eq!(m.body["context"]["ip"], json!("10.1.2.0"));
        o.ip_policy = IpPolicy::Drop;
        let m = normalize(json!({"type":"identify","userId":"u","context":{"ip":"1.2.3.4"},"timestamp":"1970-01-01T00:00:00Z"}), None, &o, || "x".into()).unwrap();
        assert!(m.body.get("context").is_none());
    }

    #[test]
    fn message_ids_look_like_uuids() {
        let id = new_message_id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}

//! Segment Spec messages: validation and normalization.
//!
//! Every message kept by Itinera is the client's message with every field it sent, plus the fields
//! the server owns (`receivedAt`, a corrected `timestamp`, `originalTimestamp`, a `messageId` when
//! the client sent none). Secrets (`writeKey`) are removed and `context.ip` follows the privacy
//! policy. Errors name the field and the reason so that a client can fix its payload.

use crate::json::{json_str, JsonType, Nested, RawObject, SplitMessage};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
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

/// A validated, normalized message: the facts parsed out of it, the stored JSON, and the objects
/// that touchpoint derivation reads (borrowed from the input text).
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
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
    /// The whole normalized message as minified JSON.
    pub body: String,
    properties: Option<RawObject<'a>>,
    traits: Option<RawObject<'a>>,
    context: Option<RawObject<'a>>,
    /// `context.page` and `context.campaign`, split once: both the channel rules and the
    /// touchpoint's name and properties read them.
    page: Option<RawObject<'a>>,
    campaign: Option<RawObject<'a>>,
}

impl<'a> Message<'a> {
    /// The id the journey is keyed on before stitching: the user id when known.
    pub fn distinct_id(&self) -> &str {
        self.user_id
            .as_deref()
            .or(self.anonymous_id.as_deref())
            .expect("validated messages carry an id")
    }

    pub fn properties(&self) -> Option<&RawObject<'a>> {
        self.properties.as_ref()
    }

    /// The message's own `traits` (identify, group).
    pub fn traits(&self) -> Option<&RawObject<'a>> {
        self.traits.as_ref()
    }

    /// `context`, after the batch's shared context and the IP policy were applied.
    pub fn context(&self) -> Option<&RawObject<'a>> {
        self.context.as_ref()
    }

    /// `context.page`, when it is an object.
    pub fn page(&self) -> Option<&RawObject<'a>> {
        self.page.as_ref()
    }

    /// `context.campaign` (the UTM parameters), when it is an object.
    pub fn campaign(&self) -> Option<&RawObject<'a>> {
        self.campaign.as_ref()
    }

    /// `context.<key>` split again when it is an object (`library`, `traits`, ...).
    pub fn context_object(&self, key: &str) -> Option<RawObject<'_>> {
        self.context.as_ref()?.get_object(key)
    }

    /// `context.<a>.<b>` as a string, if present.
    pub fn context_str(&self, a: &str, b: &str) -> Option<String> {
        self.context_object(a)?.get_str(b).map(Cow::into_owned)
    }
}

/// What a `batch` request shares with each of its messages: top-level `context` and
/// `integrations` fill in keys a message lacks, and a top-level `sentAt` applies to messages
/// without their own (as in the Segment HTTP API).
#[derive(Debug, Clone, Default)]
pub struct BatchDefaults<'a> {
    pub context: Option<RawObject<'a>>,
    pub integrations: Option<RawObject<'a>>,
    /// Raw JSON text of the batch's `sentAt`.
    pub sent_at: Option<&'a str>,
}

/// Formats ms since the epoch as the RFC 3339 form Segment uses (`2024-01-02T03:04:05.678Z`).
pub fn format_ts(ms: i64) -> String {
    // every stored message gets two or three of these: written by hand for years 1970-9999
    // (the civil-from-days algorithm), by chrono otherwise
    match ts_bytes(ms) {
        Some(b) => String::from_utf8(b.to_vec()).expect("ascii"),
        None => Utc
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_else(|| ms.to_string()),
    }
}

/// [`format_ts`] for years 1970–9999, without allocating: `None` outside them.
pub fn ts_bytes(ms: i64) -> Option<[u8; 24]> {
    if !(0..=253_402_300_799_999).contains(&ms) {
        return None;
    }
    let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, ms_of_day / 3_600_000);
    put(14, 2, ms_of_day / 60_000 % 60);
    put(17, 2, ms_of_day / 1_000 % 60);
    put(20, 3, ms_of_day % 1_000);
    Some(b)
}

/// The time printed by [`ts_bytes`] as `text`, if `text` is exactly what it prints for that
/// time: the stored form of a message can then keep the number instead of the text.
pub fn canonical_ts(text: &[u8]) -> Option<i64> {
    let b: &[u8; 24] = text.try_into().ok()?;
    let num = |at: usize, width: usize| -> Option<i64> {
        b[at..at + width].iter().try_fold(0i64, |v, c| {
            c.is_ascii_digit().then(|| v * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second, milli) = (num(11, 2)?, num(14, 2)?, num(17, 2)?, num(20, 3)?);
    if !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // days from the civil date (the inverse of the algorithm in `ts_bytes`)
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1_000 + milli;
    // a day past the month's end, or a year before 1970, does not print back the same
    (ts_bytes(ms)? == *b).then_some(ms)
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

fn type_error(field: &str, expected: &str, text: &str) -> MessageError {
    MessageError::new(
        field,
        format!("must be {expected}, got {}", JsonType::of(text).name()),
    )
}

/// A member's raw text unless it is absent or `null` (which mean the same for every field).
fn given<'o>(obj: &'o RawObject<'_>, field: &str) -> Option<&'o str> {
    obj.get(field).filter(|t| JsonType::of(t) != JsonType::Null)
}

fn id_field(obj: &RawObject<'_>, field: &str) -> Result<Option<String>, MessageError> {
    let Some(text) = given(obj, field) else {
        return Ok(None);
    };
    match JsonType::of(text) {
        JsonType::String => {
            let s = decoded(field, text)?;
            if s.is_empty() {
                Ok(None)
            } else if s.len() > 512 {
                Err(MessageError::new(field, "must be at most 512 characters"))
            } else {
                Ok(Some(s.into_owned()))
            }
        }
        // SDKs in typed languages sometimes send numeric ids; Segment accepts them as strings.
        JsonType::Number => Ok(Some(id_number_text(text))),
        _ => Err(type_error(field, "a string", text)),
    }
}

/// A JSON string's value; a string that does not decode (a lone surrogate such as `\ud800`, a bad
/// escape) is an error naming the field, not taken as absent.
fn decoded<'a>(field: &str, text: &'a str) -> Result<Cow<'a, str>, MessageError> {
    json_str(text).ok_or_else(|| {
        MessageError::new(
            field,
            "is not a valid string: it has a lone surrogate (\\ud800-\\udfff) or a bad escape",
        )
    })
}

/// A numeric id as text: an integer exactly as written (ids beyond 2^53 keep every digit, so
/// that two people never share an id), any other number as [`number_text`] writes it.
pub fn id_number_text(text: &str) -> String {
    let t = text.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        t.to_string()
    } else {
        number_text(t)
    }
}

/// A JSON number as `serde_json` writes it (`1.50` is `1.5`, `1e2` is `100.0`), so that the
/// same number always reads as the same text.
pub fn number_text(text: &str) -> String {
    serde_json::from_str::<serde_json::Number>(text)
        .map(|n| n.to_string())
        .unwrap_or_else(|_| text.to_string())
}

fn opt_string(obj: &RawObject<'_>, field: &str) -> Result<Option<String>, MessageError> {
    let Some(text) = given(obj, field) else {
        return Ok(None);
    };
    match JsonType::of(text) {
        JsonType::String => decoded(field, text).map(|s| Some(s.into_owned())),
        _ => Err(type_error(field, "a string", text)),
    }
}

fn opt_ts(obj: &RawObject<'_>, field: &str) -> Result<Option<i64>, MessageError> {
    let Some(text) = given(obj, field) else {
        return Ok(None);
    };
    match JsonType::of(text) {
        JsonType::String => {
            let s = decoded(field, text)?;
            parse_ts(&s).map(Some).ok_or_else(|| {
                MessageError::new(field, format!("is not an ISO-8601 timestamp: {s:?}"))
            })
        }
        _ => Err(type_error(field, "an ISO-8601 string", text)),
    }
}

/// A fresh message id for clients that sent none (UUID v4 layout from the given entropy).
pub fn new_message_id(entropy: u128) -> String {
    let mut b = entropy.to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    uuid_text(&b)
}

/// A message id for a message that came without one, made at `ms`: a UUID version 7 (RFC 9562)
/// whose 74 bits after the time are `node` (42 bits, random per process) and `sequence` (a
/// counter). Ids made close in time share their first bytes, so a segment keeps them in a few
/// bytes each where random ones take 16; the time and node keep them unique across processes.
pub fn time_ordered_message_id(ms: i64, sequence: u32, node: u64) -> String {
    let tail = (u128::from(node & ((1 << 42) - 1)) << 32) | u128::from(sequence);
    let rand_a = (tail >> 62) as u16 & 0x0fff;
    let rand_b = (tail as u64) & ((1 << 62) - 1);
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&(ms as u64).to_be_bytes()[2..]);
    b[6] = 0x70 | (rand_a >> 8) as u8; // version 7
    b[7] = rand_a as u8;
    b[8..].copy_from_slice(&(rand_b | 1 << 63).to_be_bytes()); // RFC 4122 variant
    uuid_text(&b)
}

/// The 16 bytes as a UUID's text (lower-case hex, dashes after bytes 4, 6, 8 and 10): one
/// allocation, as it runs for every message that came without an id.
fn uuid_text(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[(byte >> 4) as usize] as char);
        out.push(HEX[(byte & 15) as usize] as char);
    }
    out
}

/// Validates and normalizes one message, given as JSON text.
///
/// `forced_type` is the type implied by the endpoint (`/v1/track` ...); `None` for batches and
/// imports, where the message's own `type` decides. `defaults` are what a batch shares with its
/// messages. `fallback_id` supplies a message id when the client sent none.
pub fn normalize<'a>(
    text: &'a str,
    forced_type: Option<MessageType>,
    defaults: Option<&BatchDefaults<'a>>,
    opts: &NormalizeOptions,
    fallback_id: impl FnOnce() -> String,
) -> Result<Message<'a>, MessageError> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => MessageError::new(
                "",
                format!(
                    "a message must be a JSON object, got {}",
                    JsonType::of(trimmed).name()
                ),
            ),
            Err(e) => MessageError::new("", format!("invalid JSON: {e}")),
        });
    }
    let obj =
        RawObject::parse(text).map_err(|e| MessageError::new("", format!("invalid JSON: {e}")))?;
    normalize_object(
        SplitMessage::from_object(obj),
        forced_type,
        defaults,
        opts,
        fallback_id,
    )
}

/// [`normalize`] for a message already split into members.
pub fn normalize_object<'a>(
    message: SplitMessage<'a>,
    forced_type: Option<MessageType>,
    defaults: Option<&BatchDefaults<'a>>,
    opts: &NormalizeOptions,
    fallback_id: impl FnOnce() -> String,
) -> Result<Message<'a>, MessageError> {
    let SplitMessage {
        members: mut obj,
        mut context,
    } = message;
    obj.remove("writeKey");
    let kind = match forced_type {
        Some(t) => t,
        None => match obj.get("type") {
            None => return Err(MessageError::new("type", "is required in a batch")),
            Some(t) => match JsonType::of(t) {
                JsonType::Null => return Err(MessageError::new("type", "is required in a batch")),
                JsonType::String => {
                    let s = decoded("type", t)?;
                    MessageType::parse(&s).ok_or_else(|| {
                        MessageError::new(
                            "type",
                            format!(
                                "unknown type {s:?}; expected track, identify, page, screen, group or alias"
                            ),
                        )
                    })?
                }
                _ => return Err(type_error("type", "a string", t)),
            },
        },
    };
    obj.set_str("type", kind.as_str());

    let user_id = id_field(&obj, "userId")?;
    let anonymous_id = id_field(&obj, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(MessageError::new(
            "userId",
            "either userId or anonymousId is required",
        ));
    }
    if let Some(u) = &user_id {
        obj.set_str("userId", u);
    }
    if let Some(a) = &anonymous_id {
        obj.set_str("anonymousId", a);
    }
    // the batch's shared objects fill in keys the message lacks
    fn fill(own: &mut RawObject<'_>, shared: &RawObject<'_>) {
        for (k, v) in shared.iter() {
            own.set_default(Cow::Owned(k.to_string()), Cow::Owned(v.to_string()));
        }
    }
    if let Some(shared) = defaults
        .and_then(|d| d.context.as_ref())
        .filter(|s| !s.is_empty())
    {
        match &mut context {
            None => {
                obj.set("context", "{}");
                context = Some(Nested::Object(shared.clone()));
            }
            Some(Nested::Object(own)) => fill(own, shared),
            Some(Nested::Other(_)) => {}
        }
    }
    if let Some(shared) = defaults
        .and_then(|d| d.integrations.as_ref())
        .filter(|s| !s.is_empty())
    {
        match obj.get("integrations").map(|t| (JsonType::of(t), t)) {
            None => obj.set("integrations", shared.to_json()),
            Some((JsonType::Object, own)) => {
                let mut own = RawObject::parse(own).expect("a raw object splits");
                fill(&mut own, shared);
                let merged = own.to_json();
                obj.set("integrations", merged);
            }
            Some(_) => {}
        }
    }
    if let Some(sent_at) = defaults.and_then(|d| d.sent_at) {
        obj.set_default(Cow::Borrowed("sentAt"), Cow::Borrowed(sent_at));
    }
    // `context` in the members is its placeholder, of its type
    for field in ["properties", "traits", "context", "integrations"] {
        match obj.get(field).map(JsonType::of) {
            None | Some(JsonType::Object) => {}
            Some(JsonType::Null) => obj.remove(field),
            Some(_) => return Err(type_error(field, "an object", obj.get(field).unwrap_or(""))),
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
        obj.set_str("groupId", g);
    }
    if let Some(p) = &previous_id {
        obj.set_str("previousId", p);
    }

    let message_id = match obj.get("messageId").map(|t| (JsonType::of(t), t)) {
        None | Some((JsonType::Null, _)) => fallback_id(),
        Some((JsonType::String, t)) => {
            let s = decoded("messageId", t)?;
            if s.is_empty() {
                fallback_id()
            } else if s.len() > 256 {
                return Err(MessageError::new(
                    "messageId",
                    "must be at most 256 characters",
                ));
            } else {
                s.into_owned()
            }
        }
        Some((JsonType::Number, t)) => id_number_text(t),
        Some((_, t)) => return Err(type_error("messageId", "a string", t)),
    };
    obj.set_str("messageId", &message_id);

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
        if !obj.contains("originalTimestamp") {
            obj.set_str("originalTimestamp", &format_ts(o));
        }
    }
    obj.set_str("timestamp", &format_ts(timestamp));
    obj.set_str("receivedAt", &format_ts(received));

    let context = match context {
        Some(Nested::Object(c)) if obj.contains("context") => Some(c),
        _ => None,
    };
    let context = apply_ip_policy(&mut obj, context, opts);
    let context_part = |key: &str| {
        context
            .as_ref()
            .and_then(|c| c.get_cow(key))
            .and_then(RawObject::of_cow)
    };
    let (page, campaign) = (context_part("page"), context_part("campaign"));
    let properties = obj.get_cow("properties").and_then(RawObject::of_cow);
    let traits = obj.get_cow("traits").and_then(RawObject::of_cow);
    let body = obj.to_json();
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
        body,
        properties,
        traits,
        context,
        page,
        campaign,
    })
}

/// Applies the IP policy to `context.ip` (adding `context` when needed, removing it when it ends
/// up empty) and returns the resulting context.
fn apply_ip_policy<'a>(
    obj: &mut RawObject<'a>,
    context: Option<RawObject<'a>>,
    opts: &NormalizeOptions,
) -> Option<RawObject<'a>> {
    let mut ctx = context.unwrap_or_default();
    let ip = ctx
        .get_str("ip")
        .map(Cow::into_owned)
        .or_else(|| opts.remote_ip.clone());
    match (opts.ip_policy, ip) {
        (IpPolicy::Drop, _) | (_, None) => ctx.remove("ip"),
        (IpPolicy::Full, Some(ip)) => ctx.set_str("ip", &ip),
        (IpPolicy::Anonymize, Some(ip)) => match anonymize_ip(&ip) {
            Some(a) => ctx.set_str("ip", &a),
            None => ctx.remove("ip"),
        },
    }
    if ctx.is_empty() {
        obj.remove("context");
        None
    } else {
        obj.set("context", ctx.to_json());
        Some(ctx)
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
    use serde_json::{json, Value};

    /// A normalized message with its body parsed back, for assertions.
    #[derive(Debug)]
    struct Normalized {
        kind: MessageType,
        user_id: Option<String>,
        body: Value,
    }

    fn norm_with(v: Value, opts: &NormalizeOptions) -> Result<Normalized, MessageError> {
        let text = v.to_string();
        let m = normalize(&text, None, None, opts, || "gen".into())?;
        assert!(!m.body.contains('\n'), "a stored message is one line");
        Ok(Normalized {
            kind: m.kind,
            user_id: m.user_id.clone(),
            body: serde_json::from_str(&m.body).expect("the body is JSON"),
        })
    }

    fn norm(v: Value) -> Result<Normalized, MessageError> {
        norm_with(v, &NormalizeOptions::at(1_700_000_000_000))
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
        let m = norm_with(json!({"type":"page","anonymousId":"a","timestamp":"2024-01-01T10:59:00Z","sentAt":"2024-01-01T11:00:00Z"}), &NormalizeOptions::at(received))
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

    /// A lone surrogate is not an absent field: the error says what is wrong with it.
    #[test]
    fn undecodable_strings_are_named() {
        let parse = |text: &str| {
            crate::ingest::parse_one(
                text,
                None,
                &NormalizeOptions::at(0),
                &crate::ChannelRules::default(),
                &mut || "m".to_string(),
            )
        };
        for (text, field) in [
            (r#"{"type":"track","userId":"u","event":"\ud800"}"#, "event"),
            (
                r#"{"type":"track","userId":"\udfff","event":"e"}"#,
                "userId",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}");
            assert!(e.reason.contains("lone surrogate"), "{}", e.reason);
        }
    }

    #[test]
    fn numeric_ids_become_strings() {
        let m = norm(json!({"type":"identify","userId": 42})).unwrap();
        assert_eq!(m.user_id.as_deref(), Some("42"));
        assert_eq!(m.body["userId"], json!("42"));
        // beyond 2^53 every digit is kept: two ids that a float would merge stay two
        let parse = |text: &str| {
            crate::ingest::parse_one(
                text,
                None,
                &NormalizeOptions::at(0),
                &crate::ChannelRules::default(),
                &mut || "m".to_string(),
            )
            .unwrap()
        };
        let a = parse(
            r#"{"type":"identify","userId":12345678901234567890123,"timestamp":"1970-01-01T00:00:00Z"}"#,
        );
        let b = parse(
            r#"{"type":"identify","userId":12345678901234567890124,"timestamp":"1970-01-01T00:00:00Z"}"#,
        );
        assert_eq!(a.user_id.as_deref(), Some("12345678901234567890123"));
        assert_ne!(a.user_id, b.user_id);
    }

    #[test]
    fn ip_policy() {
        let mut o = NormalizeOptions::at(0);
        o.remote_ip = Some("10.1.2.3".into());
        let m = norm_with(
            json!({"type":"identify","userId":"u","timestamp":"1970-01-01T00:00:00Z"}),
            &o,
        )
        .unwrap();
        assert_eq!(m.body["context"]["ip"], json!("10.1.2.0"));
        o.ip_policy = IpPolicy::Drop;
        let m = norm_with(json!({"type":"identify","userId":"u","context":{"ip":"1.2.3.4"},"timestamp":"1970-01-01T00:00:00Z"}), &o).unwrap();
        assert!(m.body.get("context").is_none());
    }

    proptest::proptest! {
        #[test]
        fn timestamps_format_as_chrono_does(ms in 0i64..=253_402_300_799_999) {
            let chrono = Utc
                .timestamp_millis_opt(ms)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            proptest::prop_assert_eq!(format_ts(ms), chrono);
        }
    }

    proptest::proptest! {
        #[test]
        fn canonical_times_read_back(ms in 0i64..253_402_300_799_999) {
            let text = format_ts(ms);
            proptest::prop_assert_eq!(canonical_ts(text.as_bytes()), Some(ms));
        }
    }

    #[test]
    fn only_the_printed_form_is_canonical() {
        assert_eq!(
            canonical_ts(b"2024-02-29T23:59:59.999Z"),
            Some(1_709_251_199_999)
        );
        for other in [
            "2023-02-29T00:00:00.000Z",
            "2024-13-01T00:00:00.000Z",
            "2024-01-01T24:00:00.000Z",
            "2024-01-01T00:00:00.000+00:00",
            "2024-01-01T00:00:00.00Z",
            "2024-01-01 00:00:00.000Z",
            "2024-01-01T00:00:00.000z",
        ] {
            assert_eq!(canonical_ts(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn generated_ids_are_time_ordered_uuids() {
        let a = time_ordered_message_id(1_765_000_000_000, 7, 0x3ff_ffff_ffff);
        let b = time_ordered_message_id(1_765_000_000_001, 8, 0x3ff_ffff_ffff);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert!("89ab".contains(&a[19..20]), "{a}");
        assert!(a < b, "{a} {b}");
        // the time is the first 48 bits
        assert_eq!(&a[..13], "019af232-b200");
        assert_ne!(
            time_ordered_message_id(5, 1, 1),
            time_ordered_message_id(5, 1, 2)
        );
        assert_ne!(
            time_ordered_message_id(5, 1, 1),
            time_ordered_message_id(5, 2, 1)
        );
    }

    #[test]
    fn message_ids_look_like_uuids() {
        assert_eq!(format_ts(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_ts(-1), "1969-12-31T23:59:59.999Z");
        let id = new_message_id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(id, "01234567-89ab-4def-8123-456789abcdef");
    }
}

//! Turning incoming JSON (one message, or a `batch`) into touchpoints, with an error per bad
//! message. Shared by the HTTP API and bulk import so both accept exactly the same input.

use crate::channel::ChannelRules;
use crate::message::{self, MessageError, MessageType, NormalizeOptions, MAX_MESSAGE_BYTES};
use crate::touchpoint::Touchpoint;
use serde::Serialize;
use serde_json::Value;

/// A refused message: its position in the request (or line in a file), the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexedError {
    pub index: usize,
    pub field: String,
    pub reason: String,
}

impl IndexedError {
    pub fn new(index: usize, e: MessageError) -> Self {
        IndexedError {
            index,
            field: e.field,
            reason: e.reason,
        }
    }
}

/// The result of parsing a request or a chunk of a file.
#[derive(Debug, Default)]
pub struct Parsed {
    pub touchpoints: Vec<Touchpoint>,
    pub errors: Vec<IndexedError>,
}

/// Parses one message. `raw_len` is its serialized size, checked against the 32 KB limit.
pub fn parse_one(
    value: Value,
    raw_len: usize,
    forced_type: Option<MessageType>,
    opts: &NormalizeOptions,
    rules: &ChannelRules,
    new_id: &mut impl FnMut() -> String,
) -> Result<Touchpoint, MessageError> {
    if raw_len > MAX_MESSAGE_BYTES {
        return Err(MessageError::new(
            "",
            format!("message is {raw_len} bytes; the limit is {MAX_MESSAGE_BYTES}"),
        ));
    }
    let m = message::normalize(value, forced_type, opts, new_id)?;
    Ok(Touchpoint::from_message(&m, rules))
}

/// A `batch` body, read without parsing its messages yet: `{"batch": [...], "context": {...},
/// "integrations": {...}, "sentAt": "...", "writeKey": "..."}`. Each message is kept as raw JSON
/// so its size is known without serializing it again.
#[derive(Debug, serde::Deserialize)]
pub struct BatchEnvelope<'a> {
    #[serde(borrow)]
    batch: Option<Vec<&'a serde_json::value::RawValue>>,
    context: Option<Value>,
    integrations: Option<Value>,
    #[serde(rename = "sentAt")]
    sent_at: Option<Value>,
    #[serde(rename = "writeKey")]
    pub write_key: Option<String>,
}

impl<'a> BatchEnvelope<'a> {
    pub fn parse(body: &'a [u8]) -> Result<BatchEnvelope<'a>, MessageError> {
        let env: BatchEnvelope<'a> = serde_json::from_slice(body).map_err(|e| {
            let field = if e.is_data() { "batch" } else { "body" };
            MessageError::new(field, format!("invalid JSON: {e}"))
        })?;
        if env.batch.is_none() {
            return Err(MessageError::new("batch", "is required"));
        }
        Ok(env)
    }

    /// Parses every message. Top-level `context` and `integrations` fill in messages that lack
    /// them, and a top-level `sentAt` applies to each, as in the Segment HTTP API.
    pub fn into_parsed(
        self,
        opts: &NormalizeOptions,
        rules: &ChannelRules,
        mut new_id: impl FnMut() -> String,
    ) -> Parsed {
        let shared_context = self.context.filter(Value::is_object);
        let shared_integrations = self.integrations.filter(Value::is_object);
        let mut out = Parsed::default();
        for (index, raw) in self.batch.unwrap_or_default().into_iter().enumerate() {
            let raw_len = raw.get().len();
            let mut item: Value = match serde_json::from_str(raw.get()) {
                Ok(v) => v,
                Err(e) => {
                    out.errors.push(IndexedError::new(
                        index,
                        MessageError::new("", e.to_string()),
                    ));
                    continue;
                }
            };
            if let Value::Object(m) = &mut item {
                merge_default(m, "context", &shared_context);
                merge_default(m, "integrations", &shared_integrations);
                if let Some(s) = &self.sent_at {
                    m.entry("sentAt").or_insert_with(|| s.clone());
                }
            }
            match parse_one(item, raw_len, None, opts, rules, &mut new_id) {
                Ok(t) => out.touchpoints.push(t),
                Err(e) => out.errors.push(IndexedError::new(index, e)),
            }
        }
        out
    }
}

/// Parses a whole `batch` body (see [`BatchEnvelope`]).
pub fn parse_batch(
    body: &[u8],
    opts: &NormalizeOptions,
    rules: &ChannelRules,
    new_id: impl FnMut() -> String,
) -> Result<Parsed, MessageError> {
    Ok(BatchEnvelope::parse(body)?.into_parsed(opts, rules, new_id))
}

fn merge_default(m: &mut serde_json::Map<String, Value>, key: &str, shared: &Option<Value>) {
    let Some(Value::Object(shared)) = shared else {
        return;
    };
    match m.get_mut(key) {
        Some(Value::Object(own)) => {
            for (k, v) in shared {
                own.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        None => {
            m.insert(key.into(), Value::Object(shared.clone()));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batch_keeps_good_reports_bad() {
        let body = serde_json::to_vec(&json!({"batch": [
            {"type":"track","userId":"u","event":"a"},
            {"type":"track","event":"no id"},
            {"type":"page","anonymousId":"x"},
            {"type":"nope","userId":"u"}
        ], "context": {"library": {"name": "analytics-python"}}}))
        .unwrap();
        let mut n = 0;
        let p = parse_batch(
            &body,
            &NormalizeOptions::at(0),
            &ChannelRules::default(),
            || {
                n += 1;
                format!("id{n}")
            },
        )
        .unwrap();
        assert_eq!(p.touchpoints.len(), 2);
        assert_eq!(
            p.errors
                .iter()
                .map(|e| (e.index, e.field.as_str()))
                .collect::<Vec<_>>(),
            vec![(1, "userId"), (3, "type")]
        );
        assert!(
            p.touchpoints[0].body.contains("analytics-python"),
            "batch context is merged"
        );
    }

    #[test]
    fn oversized_message() {
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        let p = parse_batch(
            &serde_json::to_vec(&json!({"batch":[{"type":"track","userId":"u","event":"a","properties":{"b":big}}]})).unwrap(),
            &NormalizeOptions::at(0),
            &ChannelRules::default(),
            || "i".into(),
        )
        .unwrap();
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].reason.contains("limit"));
    }
}

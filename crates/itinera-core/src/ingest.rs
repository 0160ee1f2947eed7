//! Turning incoming JSON (one message, or a `batch`) into touchpoints, with an error per bad
//! message. Shared by the HTTP API and bulk import so both accept exactly the same input.

use crate::channel::ChannelRules;
use crate::json::{ObjectOr, RawObject, ReadObject, SplitMessage};
use crate::message::{
    self, BatchDefaults, MessageError, MessageType, NormalizeOptions, MAX_MESSAGE_BYTES,
};
use crate::touchpoint::Touchpoint;
use serde::de::MapAccess;
use serde::Serialize;
use serde_json::value::RawValue;

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

/// Parses one message given as JSON text, checked against the 32 KB limit.
pub fn parse_one(
    text: &str,
    forced_type: Option<MessageType>,
    opts: &NormalizeOptions,
    rules: &ChannelRules,
    new_id: &mut impl FnMut() -> String,
) -> Result<Touchpoint, MessageError> {
    check_size(text.len())?;
    let m = message::normalize(text, forced_type, None, opts, new_id)?;
    Ok(Touchpoint::from_message(m, rules))
}

/// Parses one message already split into members (the single-message endpoints read
/// `writeKey` from it first). `raw_len` is its size as sent.
pub fn parse_object(
    obj: RawObject<'_>,
    raw_len: usize,
    forced_type: Option<MessageType>,
    opts: &NormalizeOptions,
    rules: &ChannelRules,
    new_id: &mut impl FnMut() -> String,
) -> Result<Touchpoint, MessageError> {
    check_size(raw_len)?;
    let m = message::normalize_object(
        SplitMessage::from_object(obj),
        forced_type,
        None,
        opts,
        new_id,
    )?;
    Ok(Touchpoint::from_message(m, rules))
}

fn check_size(raw_len: usize) -> Result<(), MessageError> {
    if raw_len > MAX_MESSAGE_BYTES {
        return Err(MessageError::new(
            "",
            format!("message is {raw_len} bytes; the limit is {MAX_MESSAGE_BYTES}"),
        ));
    }
    Ok(())
}

/// A `batch` body, read without normalizing its messages yet: `{"batch": [...], "context":
/// {...}, "integrations": {...}, "sentAt": "...", "writeKey": "..."}`. Each message is split into
/// members whose values stay raw JSON, so its size is known without serializing it again.
#[derive(Debug)]
pub struct BatchEnvelope<'a> {
    batch: Option<Vec<BatchItem<'a>>>,
    context: Option<&'a RawValue>,
    integrations: Option<&'a RawValue>,
    sent_at: Option<&'a RawValue>,
    pub write_key: Option<String>,
}

/// [`BatchEnvelope`] as read, its messages read as `M`.
#[derive(serde::Deserialize)]
#[serde(bound(deserialize = "M: ReadObject<'de>"))]
struct Envelope<'a, M> {
    batch: Option<Vec<ObjectOr<M>>>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    integrations: Option<&'a RawValue>,
    #[serde(borrow, rename = "sentAt")]
    sent_at: Option<&'a RawValue>,
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
}

impl<'a, M: Into<SplitMessage<'a>>> From<Envelope<'a, M>> for BatchEnvelope<'a> {
    fn from(e: Envelope<'a, M>) -> Self {
        let item = |i: ObjectOr<M>| match i {
            ObjectOr::Object(m) => ObjectOr::Object(m.into()),
            ObjectOr::Other(t) => ObjectOr::Other(t),
        };
        BatchEnvelope {
            batch: e.batch.map(|items| items.into_iter().map(item).collect()),
            context: e.context,
            integrations: e.integrations,
            sent_at: e.sent_at,
            write_key: e.write_key,
        }
    }
}

/// A message read whole, its `context` split after it.
struct ReadWhole<'a>(SplitMessage<'a>);

impl<'de: 'a, 'a> ReadObject<'de> for ReadWhole<'a> {
    fn read<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        RawObject::from_map(map)
            .map(SplitMessage::from_object)
            .map(ReadWhole)
    }
}

impl<'a> From<ReadWhole<'a>> for SplitMessage<'a> {
    fn from(m: ReadWhole<'a>) -> Self {
        m.0
    }
}

impl<'a> BatchEnvelope<'a> {
    pub fn parse(body: &'a [u8]) -> Result<BatchEnvelope<'a>, MessageError> {
        // checked as UTF-8 once, in one pass: parsed from bytes, every string and raw value
        // would be checked on its own
        let text = std::str::from_utf8(body)
            .map_err(|e| MessageError::new("body", format!("invalid JSON: {e}")))?;
        // splitting a context as it is read decodes its strings when it is no object, and a
        // string that does not decode (a lone surrogate) would fail the whole body: such a body
        // is read again with each message's context split after it, so that only that message
        // is refused, naming its field
        let env: BatchEnvelope<'a> = match serde_json::from_str::<Envelope<'a, SplitMessage>>(text)
        {
            Ok(env) => env.into(),
            Err(_) => serde_json::from_str::<Envelope<'a, ReadWhole>>(text)
                .map_err(|e| {
                    let field = if e.is_data() { "batch" } else { "body" };
                    MessageError::new(field, format!("invalid JSON: {e}"))
                })?
                .into(),
        };
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
        let defaults = BatchDefaults {
            context: self.context.and_then(|c| RawObject::of_value(c.get())),
            integrations: self.integrations.and_then(|c| RawObject::of_value(c.get())),
            sent_at: self.sent_at.map(RawValue::get),
        };
        let batch = self.batch.unwrap_or_default();
        let mut out = Parsed {
            touchpoints: Vec::with_capacity(batch.len()),
            errors: Vec::new(),
        };
        for (index, item) in batch.into_iter().enumerate() {
            let parsed = match item {
                ObjectOr::Object(m) => check_size(m.json_len()).and_then(|()| {
                    message::normalize_object(m, None, Some(&defaults), opts, &mut new_id)
                }),
                ObjectOr::Other(t) => Err(MessageError::new(
                    "",
                    format!("a message must be a JSON object, got {}", t.name()),
                )),
            }
            .map(|m| Touchpoint::from_message(m, rules));
            match parsed {
                Ok(t) => out.touchpoints.push(t),
                Err(e) => out.errors.push(IndexedError::new(index, e)),
            }
        }
        out
    }
}

/// One element of `batch`: a message split into members as it is read (one pass over its
/// text, its `context` split in the same pass), or the type of whatever else was there.
type BatchItem<'a> = ObjectOr<SplitMessage<'a>>;

/// Parses a whole `batch` body (see [`BatchEnvelope`]).
pub fn parse_batch(
    body: &[u8],
    opts: &NormalizeOptions,
    rules: &ChannelRules,
    new_id: impl FnMut() -> String,
) -> Result<Parsed, MessageError> {
    Ok(BatchEnvelope::parse(body)?.into_parsed(opts, rules, new_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::tests::arb_json;
    use crate::message::format_ts;
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    /// A valid message with random extra fields, and the batch's shared context.
    fn arb_message() -> impl Strategy<Value = (Map<String, Value>, Option<Value>, bool)> {
        (
            proptest::sample::select(vec!["track", "identify", "page", "screen"]),
            prop_oneof![
                "[a-z0-9 \"]{1,8}".prop_map(Value::from),
                (0u32..1000).prop_map(Value::from)
            ],
            proptest::collection::btree_map("x[a-z ]{0,4}", arb_json(), 0..4),
            proptest::option::of(prop_oneof![
                Just(Value::Null),
                proptest::collection::btree_map("[a-z]{1,3}", arb_json(), 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect()))
            ]),
            proptest::option::of(proptest::collection::btree_map(
                "[a-z]{1,3}|ip",
                arb_json(),
                0..3,
            )),
            proptest::option::of(
                proptest::collection::btree_map("[a-z]{1,3}", arb_json(), 1..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ),
            any::<bool>(),
        )
            .prop_map(|(kind, user, extra, props, context, shared, pretty)| {
                let mut m: Map<String, Value> = extra.into_iter().collect();
                m.insert("type".into(), kind.into());
                m.insert("userId".into(), user);
                m.insert("event".into(), "Clicked".into());
                m.insert("messageId".into(), "m1".into());
                m.insert("timestamp".into(), "2024-05-01T10:00:00Z".into());
                m.insert("writeKey".into(), "secret".into());
                if let Some(p) = props {
                    m.insert("properties".into(), p);
                }
                if let Some(mut c) = context {
                    if c.contains_key("ip") {
                        c.insert("ip".into(), "10.1.2.3".into());
                    }
                    m.insert("context".into(), Value::Object(c.into_iter().collect()));
                }
                (m, shared, pretty)
            })
    }

    /// What the Segment Spec and docs/api.md say the stored message is, built on a
    /// `serde_json::Value` tree (independently of the raw-text normalizer).
    fn expected_body(mut m: Map<String, Value>, shared: &Option<Value>, received: i64) -> Value {
        m.remove("writeKey");
        if let Some(Value::Number(n)) = m.get("userId").cloned() {
            m.insert("userId".into(), n.to_string().into());
        }
        if m.get("properties") == Some(&Value::Null) {
            m.remove("properties");
        }
        let mut ctx = match m.remove("context") {
            Some(Value::Object(c)) => c,
            _ => Map::new(),
        };
        if let Some(Value::Object(s)) = shared {
            if !m.contains_key("context") {
                for (k, v) in s {
                    ctx.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        // the IP policy (anonymize, no remote address): an address loses its host part; an ip
        // that is no address (a shared context may carry any value) is dropped
        match ctx
            .get("ip")
            .and_then(Value::as_str)
            .and_then(crate::message::anonymize_ip)
        {
            Some(a) => ctx.insert("ip".into(), a.into()),
            None => ctx.remove("ip"),
        };
        if !ctx.is_empty() {
            m.insert("context".into(), Value::Object(ctx));
        }
        m.insert(
            "originalTimestamp".into(),
            "2024-05-01T10:00:00.000Z".into(),
        );
        m.insert("timestamp".into(), "2024-05-01T10:00:00.000Z".into());
        m.insert("receivedAt".into(), format_ts(received).into());
        Value::Object(m)
    }

    proptest! {
        /// Every field a client sends is stored as sent (whatever its formatting), plus the
        /// server's fields, with the batch's shared context filling in.
        #[test]
        fn batch_messages_are_stored_as_sent((m, shared, pretty) in arb_message()) {
            let text = if pretty {
                serde_json::to_string_pretty(&m).unwrap()
            } else {
                serde_json::to_string(&m).unwrap()
            };
            let mut body = format!("{{\"batch\": [{text}]");
            if let Some(s) = &shared {
                body.push_str(&format!(", \"context\": {s}"));
            }
            body.push('}');
            let received = 1_714_560_000_000;
            let p = parse_batch(body.as_bytes(), &NormalizeOptions::at(received), &ChannelRules::default(), || unreachable!()).unwrap();
            prop_assert!(p.errors.is_empty(), "{:?}", p.errors);
            let stored = &p.touchpoints[0].body;
            prop_assert!(!stored.contains('\n'));
            if shared.is_none() {
                // the context split as the batch is read, and split after the message was read
                // whole, write the same text
                let one = parse_one(&text, None, &NormalizeOptions::at(received), &ChannelRules::default(), &mut || unreachable!()).unwrap();
                prop_assert_eq!(&one.body, stored);
            }
            let got: Value = serde_json::from_str(stored).unwrap();
            prop_assert_eq!(got, expected_body(m, &shared, received));
        }
    }

    #[test]
    fn batch_keeps_good_reports_bad() {
        let body = serde_json::to_vec(&json!({"batch": [
            {"type":"track","userId":"u","event":"a"},
            {"type":"track","event":"no id"},
            {"type":"page","anonymousId":"x"},
            {"type":"nope","userId":"u"},
            [1, {"a": 2}],
            "text"
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
            vec![(1, "userId"), (3, "type"), (4, ""), (5, "")]
        );
        assert_eq!(
            p.errors[2].reason,
            "a message must be a JSON object, got array"
        );
        assert!(
            p.touchpoints[0].body.contains("analytics-python"),
            "batch context is merged"
        );
    }

    #[test]
    fn a_context_that_is_no_object_is_refused_and_a_repeated_one_keeps_its_last_value() {
        let body = r#"{"batch": [
            {"type":"track","userId":"u","event":"a","context":"web"},
            {"type":"track","userId":"u","event":"a","context":[1, {"b": 2}]},
            {"type":"track","userId":"u","event":"a","context":12.5},
            {"type":"track","userId":"u","event":"a","context":null},
            {"context":{"locale":"de-DE"},"type":"track","userId":"u","event":"a","context":{"locale":"en-GB"}},
            {"context":{"locale":"de-DE"},"type":"track","userId":"u","event":"a","context":true}
        ], "context": {"library": {"name": "analytics-python"}}}"#;
        let p = parse_batch(
            body.as_bytes(),
            &NormalizeOptions::at(0),
            &ChannelRules::default(),
            || "id".into(),
        )
        .unwrap();
        let refused: Vec<(usize, &str, &str)> = p
            .errors
            .iter()
            .map(|e| (e.index, e.field.as_str(), e.reason.as_str()))
            .collect();
        assert_eq!(
            refused,
            vec![
                (0, "context", "must be an object, got string"),
                (1, "context", "must be an object, got array"),
                (2, "context", "must be an object, got number"),
                (5, "context", "must be an object, got boolean"),
            ]
        );
        assert_eq!(p.touchpoints.len(), 2);
        // null: as absent from the stored message, and the batch's context does not fill it in
        assert!(
            !p.touchpoints[0].body.contains("context"),
            "{}",
            p.touchpoints[0].body
        );
        // repeated: the first position, the last value, the batch's context merged into it
        assert!(p.touchpoints[1].body.starts_with(
            r#"{"context":{"locale":"en-GB","library":{"name":"analytics-python"}},"type":"track""#
        ), "{}", p.touchpoints[1].body);
    }

    #[test]
    fn a_context_string_that_does_not_decode_refuses_only_its_message() {
        let body = br#"{"batch":[{"type":"track","userId":"u","event":"a","context":"\ud800"},{"type":"track","userId":"u","event":"a","context":{"locale":"de-DE"}}]}"#;
        let p = parse_batch(
            body,
            &NormalizeOptions::at(0),
            &ChannelRules::default(),
            || "i".into(),
        )
        .unwrap();
        assert_eq!(p.touchpoints.len(), 1);
        assert!(p.touchpoints[0]
            .body
            .contains(r#""context":{"locale":"de-DE"}"#));
        assert_eq!(
            (
                p.errors[0].index,
                p.errors[0].field.as_str(),
                p.errors[0].reason.as_str()
            ),
            (0, "context", "must be an object, got string")
        );
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_naming_the_body() {
        let mut body = br#"{"batch":[{"type":"track","userId":"u","event":"x"}]}"#.to_vec();
        body[45] = 0xff;
        let e = parse_batch(
            &body,
            &NormalizeOptions::at(0),
            &ChannelRules::default(),
            || "i".into(),
        )
        .unwrap_err();
        assert_eq!(e.field, "body");
        assert!(
            e.reason.starts_with("invalid JSON: invalid utf-8"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn oversized_message() {
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        // in the properties, and in the context (split as the batch is read)
        for message in [
            json!({"type":"track","userId":"u","event":"a","properties":{"b":big}}),
            json!({"type":"track","userId":"u","event":"a","context":{"page":{"title":big}}}),
        ] {
            let p = parse_batch(
                &serde_json::to_vec(&json!({ "batch": [message] })).unwrap(),
                &NormalizeOptions::at(0),
                &ChannelRules::default(),
                || "i".into(),
            )
            .unwrap();
            assert_eq!(p.errors.len(), 1);
            assert!(p.errors[0].reason.contains("limit"));
        }
    }
}

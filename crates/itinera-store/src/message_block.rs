//! How a segment keeps a block of messages: each message's text with the fields the server
//! fills in cut out, and those fields kept beside the texts in a compact form.
//!
//! Why: in a stored message the message id and the four times (`timestamp`, `receivedAt`,
//! `sentAt`, `originalTimestamp`) are the parts that change from one message to the next; the
//! rest (context, page, user agent, properties) repeats. Printed inside the text they take most
//! of a compressed block. Kept apart (the ids one after another, the times as small numbers
//! relative to each other) the same messages take a third of the bytes (see
//! `docs/benchmarks.md`).
//!
//! Exactness: a message reads back byte for byte. A field is cut only at the first `"name":"`
//! of the text, only when a closing quote follows with no backslash before it, and a time only
//! when it is printed exactly as the server prints that time. Reading puts the value back after
//! the first `"name":"` of the cut text, which is where it was: nothing before it changed, so no
//! earlier match can appear. Fields are put back in the reverse order of cutting, each step
//! undoing one cut. Nothing here assumes the text is valid JSON.

use crate::codec::{self, Reader};
use crate::error::{Result, StoreError};
use crate::message_ids;
use itinera_core::json::RawObject;
use itinera_core::message::{canonical_ts, ts_bytes};
use memchr::memmem::Finder;
use std::borrow::Cow;
use std::sync::LazyLock;

/// The message id, cut as text.
const ID: &[u8] = b"\"messageId\":\"";
/// The times, cut as numbers, in the order they are cut.
const TIMES: [&[u8]; 4] = [
    b"\"timestamp\":\"",
    b"\"receivedAt\":\"",
    b"\"originalTimestamp\":\"",
    b"\"sentAt\":\"",
];
/// Flag bits of a row: bit 0 the id, bits 1..=4 the times in [`TIMES`]' order.
const ID_BIT: u8 = 1;

/// Searchers for the keys, built once: the id's, then the times' in [`TIMES`]' order.
static FINDERS: LazyLock<[Finder<'static>; 5]> = LazyLock::new(|| {
    let f = Finder::new;
    [f(ID), f(TIMES[0]), f(TIMES[1]), f(TIMES[2]), f(TIMES[3])]
});

/// Where the value after the first key of `text` is (start, end), when it can be cut; `key`
/// indexes [`FINDERS`].
fn value_at(text: &[u8], key: usize) -> Option<(usize, usize)> {
    let finder = &FINDERS[key];
    let start = finder.find(text)? + finder.needle().len();
    let len = memchr::memchr2(b'"', b'\\', &text[start..])?;
    (text[start + len] == b'"').then_some((start, start + len))
}

/// The id of a stored message whose id hashes to `hash` (the row's `msg_hash`): the first
/// `"messageId":"` value when it is that id (what the server writes), else the top-level
/// `messageId` read as JSON. `None` when neither hashes to `hash`: the file then keeps the hashes.
pub fn message_id(text: &str, hash: u64) -> Option<Cow<'_, str>> {
    if let Some((s, e)) = value_at(text.as_bytes(), 0) {
        let first = &text[s..e];
        if codec::hash64(first) == hash {
            return Some(Cow::Borrowed(first));
        }
    }
    let id = RawObject::parse(text)
        .ok()?
        .get_str("messageId")?
        .into_owned();
    (codec::hash64(&id) == hash).then_some(Cow::Owned(id))
}

/// A block of messages encoded for a segment (compressed by the caller): the messages with
/// their fields cut, and their ids, apart so that the ids (the duplicate check's source) read
/// without the messages.
pub struct Encoded {
    pub messages: Vec<u8>,
    pub ids: Vec<u8>,
}

/// Encodes `(id, message)` pairs; the id, when known, is cut from the message where it is the
/// first `"messageId":"` value.
///
/// Layout of the messages: the row count; each row's cut text; each row's flags; then, for each
/// time of [`TIMES`], one number per row that has it cut: `timestamp` as the difference from the
/// block's previous cut `timestamp`, `receivedAt` and `originalTimestamp` as the difference from
/// the row's `timestamp` (the delivery delay and the device's clock skew: small, and often equal
/// from one row to the next), `sentAt` as the difference from what the server's clock-skew rule
/// makes it (see [`reference`]: zero in a normalized message). Where a reference is not cut,
/// the difference is from zero. Layout of the ids: the
/// row count, then each row's id as an optional string.
pub fn encode<'a>(messages: impl IntoIterator<Item = (Option<&'a str>, &'a str)>) -> Encoded {
    let mut texts = Vec::new();
    let mut ids: Vec<Option<&str>> = Vec::new();
    let mut flags = Vec::new();
    let mut times: [Vec<i64>; 4] = Default::default();
    let mut rows = 0u64;
    let mut cut = Vec::new();
    let mut previous = 0i64;
    for (id, m) in messages {
        rows += 1;
        cut.clear();
        cut.extend_from_slice(m.as_bytes());
        let mut row_flags = 0u8;
        ids.push(id);
        if let (Some(id), Some((s, e))) = (id, value_at(&cut, 0)) {
            if &cut[s..e] == id.as_bytes() {
                row_flags |= ID_BIT;
                cut.drain(s..e);
            }
        }
        let mut row_times = [None; 4];
        for (k, time) in row_times.iter_mut().enumerate() {
            if let Some((s, e)) = value_at(&cut, k + 1) {
                if let Some(ms) = canonical_ts(&cut[s..e]) {
                    row_flags |= 2 << k;
                    *time = Some(ms);
                    cut.drain(s..e);
                }
            }
        }
        for (k, t) in row_times.iter().enumerate() {
            if let Some(t) = t {
                times[k].push(t.wrapping_sub(reference(k, &row_times, previous)));
            }
        }
        previous = row_times[0].unwrap_or(previous);
        codec::put_uvarint(&mut texts, cut.len() as u64);
        texts.extend_from_slice(&cut);
        flags.push(row_flags);
    }
    let mut out = Vec::with_capacity(texts.len() + flags.len() + 8 * rows as usize);
    codec::put_uvarint(&mut out, rows);
    out.extend_from_slice(&texts);
    out.extend_from_slice(&flags);
    for column in &times {
        for v in column {
            codec::put_ivarint(&mut out, *v);
        }
    }
    Encoded {
        messages: out,
        ids: message_ids::encode(&ids),
    }
}

/// What time `k` of a row is kept relative to (see [`encode`]); `previous` is the block's last
/// cut `timestamp` before this row. `sentAt` is kept relative to what the server's clock-skew
/// rule (`timestamp = receivedAt - (sentAt - originalTimestamp)`) says it was, so it costs
/// nothing in a message the server normalized.
fn reference(k: usize, row: &[Option<i64>; 4], previous: i64) -> i64 {
    match (k, row) {
        (0, _) => previous,
        (1 | 2, [timestamp, ..]) => timestamp.unwrap_or(0),
        (_, [Some(t), Some(received), Some(original), _]) => {
            original.wrapping_add(received.wrapping_sub(*t))
        }
        (_, [_, _, original, _]) => original.unwrap_or(0),
    }
}

/// The messages of a decoded block: one buffer holding every text and where each one is.
#[derive(Debug, Default)]
pub struct Decoded {
    pub text: Vec<u8>,
    pub spans: Vec<(usize, usize)>,
}

impl Decoded {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Message `i`; its bytes were checked to be UTF-8 when the block was decoded.
    pub fn get(&self, i: usize) -> Option<&str> {
        let (lo, hi) = *self.spans.get(i)?;
        std::str::from_utf8(&self.text[lo..hi]).ok()
    }
}

/// Reads a block written by [`encode`] from its two parts. Damage is reported, never patched
/// over.
pub fn decode(raw: &[u8], id_block: &[u8]) -> Result<Decoded> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("segment message block: {why}"));
    let ids = message_ids::decode(id_block)?;
    let mut r = Reader::new(raw, "segment message block");
    let rows = r.uvarint()?;
    if rows != ids.len() as u64 {
        return Err(corrupt("as many ids as messages expected"));
    }
    let rows = rows as usize;
    let mut texts = Vec::with_capacity(rows);
    for _ in 0..rows {
        let n = r.len()?;
        texts.push(r.bytes(n)?);
    }
    let flags = r.bytes(rows)?;
    let mut times: [Vec<i64>; 4] = Default::default();
    for (k, column) in times.iter_mut().enumerate() {
        let count = flags.iter().filter(|f| *f & (2 << k) != 0).count();
        column.reserve(count);
        for _ in 0..count {
            column.push(r.ivarint()?);
        }
    }
    if !r.is_empty() {
        return Err(corrupt("bytes after the last time"));
    }
    let mut next = [0usize; 4];
    let mut out = Decoded {
        text: Vec::with_capacity(texts.iter().map(|t| t.len() + 80).sum()),
        spans: Vec::with_capacity(rows),
    };
    let mut message = Vec::new();
    let mut previous = 0i64;
    for (i, text) in texts.into_iter().enumerate() {
        let f = flags[i];
        if f >> 5 != 0 || (f & ID_BIT != 0 && ids.get(i).is_none()) {
            return Err(corrupt("unknown flags"));
        }
        let mut row_times = [None; 4];
        for k in 0..4 {
            if f & (2 << k) != 0 {
                let diff = times[k][next[k]];
                next[k] += 1;
                row_times[k] = Some(diff.wrapping_add(reference(k, &row_times, previous)));
            }
        }
        previous = row_times[0].unwrap_or(previous);
        message.clear();
        message.extend_from_slice(text);
        for k in (0..4).rev() {
            if let Some(t) = row_times[k] {
                let printed = ts_bytes(t).ok_or_else(|| corrupt("time out of range"))?;
                put_back(&mut message, k + 1, &printed)?;
            }
        }
        if let (true, Some(id)) = (f & ID_BIT != 0, ids.get(i)) {
            put_back(&mut message, 0, id.as_bytes())?;
        }
        std::str::from_utf8(&message).map_err(|_| corrupt("invalid utf-8"))?;
        let lo = out.text.len();
        out.text.extend_from_slice(&message);
        out.spans.push((lo, out.text.len()));
    }
    Ok(out)
}

/// Reads a block of files written before messages were cut: each text as it is.
pub fn decode_plain(raw: Vec<u8>) -> Result<Decoded> {
    let mut r = Reader::new(&raw, "segment bodies");
    let mut out = Decoded::default();
    while !r.is_empty() {
        let len = r.str()?.len();
        let end = raw.len() - r.remaining();
        out.spans.push((end - len, end));
    }
    out.text = raw;
    Ok(out)
}

/// Puts `value` back after the first `key` of `message` (undoes one cut of [`encode`]).
fn put_back(message: &mut Vec<u8>, key: usize, value: &[u8]) -> Result<()> {
    let key = &FINDERS[key];
    let at = key.find(message).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "segment message block: a cut field {} is not in its message",
            String::from_utf8_lossy(key.needle())
        ))
    })? + key.needle().len();
    message.splice(at..at, value.iter().copied());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The id a writer passes for `m`: its first `"messageId":"` value, when there is one.
    fn first_id(m: &str) -> Option<&str> {
        value_at(m.as_bytes(), 0).map(|(s, e)| &m[s..e])
    }

    fn encoded(messages: &[String]) -> Encoded {
        encode(messages.iter().map(|m| (first_id(m), m.as_str())))
    }

    fn round_trip(messages: &[String]) {
        let raw = encoded(messages);
        let back = decode(&raw.messages, &raw.ids).unwrap();
        assert_eq!(back.len(), messages.len());
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(back.get(i).unwrap(), m);
        }
        let ids = message_ids::decode(&raw.ids).unwrap();
        let ids: Vec<Option<&str>> = (0..ids.len()).map(|i| ids.get(i)).collect();
        let expected: Vec<Option<&str>> = messages.iter().map(|m| first_id(m)).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn a_stored_message_reads_back_and_its_fields_are_cut() {
        let m = r#"{"type":"track","event":"Order Completed","properties":{"messageId":"nested","timestamp":"soon"},"messageId":"ajs-next-0123456789abcdef","timestamp":"2026-12-06T20:37:23.214Z","sentAt":"2026-12-06T20:37:23.100Z","originalTimestamp":"2026-12-06T20:37:23.050Z","receivedAt":"2026-12-06T20:37:23.300Z"}"#;
        // the id is cut only where it is the first `"messageId":"` value: not here
        let top = "ajs-next-0123456789abcdef";
        assert_eq!(message_id(m, codec::hash64(top)).as_deref(), Some(top));
        let raw = encode([(Some(top), m)]);
        assert_eq!(message_ids::decode(&raw.ids).unwrap().get(0), Some(top));
        assert_eq!(decode(&raw.messages, &raw.ids).unwrap().get(0), Some(m));
        let raw = raw.messages;
        assert!(memchr::memmem::find(&raw, top.as_bytes()).is_some());
        // only the first `"timestamp":"` can be cut: here the nested one, which is not a time,
        // so the top-level timestamp stays in the text and the other three times are cut
        let dates = raw.windows(10).filter(|w| w == b"2026-12-06").count();
        assert_eq!(dates, 1);
        assert!(memchr::memmem::find(&raw, b"soon").is_some());
        round_trip(&[m.to_string()]);
    }

    #[test]
    fn fields_that_cannot_be_cut_stay_in_the_text() {
        round_trip(&[
            r#"{"messageId":"a\"b","timestamp":"2026-12-06T20:37:23.214+01:00"}"#.to_string(),
            r#"{"messageId":"","timestamp":"2026-02-30T00:00:00.000Z"}"#.to_string(),
            r#"{"messageId":"unterminated"#.to_string(),
            r#""messageId":"x"messageId":"y""timestamp":"1970-01-01T00:00:00.000Z""#.to_string(),
            "größe 42 breit \"timestamp\":\"".to_string(),
            String::new(),
        ]);
    }

    #[test]
    fn blocks_written_before_the_cut_read_as_they_are() {
        let mut raw = Vec::new();
        for m in ["{\"a\":1}", "", "größe"] {
            codec::put_str(&mut raw, m);
        }
        let back = decode_plain(raw).unwrap();
        let back: Vec<&str> = (0..back.len()).map(|i| back.get(i).unwrap()).collect();
        assert_eq!(back, ["{\"a\":1}", "", "größe"]);
        assert!(decode_plain(vec![5, b'a']).is_err());
    }

    #[test]
    fn the_id_is_found_by_its_hash() {
        let m = r#"{"properties":{"messageId":"p"},"messageId":"m\u0031","event":"x"}"#;
        assert_eq!(message_id(m, codec::hash64("m1")).as_deref(), Some("m1"));
        assert_eq!(message_id(m, codec::hash64("p")).as_deref(), Some("p"));
        assert_eq!(message_id(m, codec::hash64("other")), None);
        assert_eq!(message_id("not json", codec::hash64("m1")), None);
    }

    #[test]
    fn damage_is_reported() {
        let raw = encoded(&[r#"{"messageId":"m1","timestamp":"2026-12-06T20:37:23.214Z"}"#.into()]);
        for cut in 0..raw.messages.len() {
            assert!(
                decode(&raw.messages[..cut], &raw.ids).is_err(),
                "cut at {cut}"
            );
        }
        for cut in 0..raw.ids.len() {
            assert!(
                decode(&raw.messages, &raw.ids[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut more = raw.messages.clone();
        more.push(0);
        assert!(decode(&more, &raw.ids).is_err());
        let other = encoded(&["{}".into(), "{}".into()]);
        assert!(decode(&raw.messages, &other.ids).is_err());
    }

    fn arb_field() -> impl Strategy<Value = String> {
        prop_oneof![
            (0i64..4_000_000_000_000).prop_map(itinera_core::message::format_ts),
            "[a-z0-9\\-]{0,12}",
            Just("2026-12-06T20:37:23.214+01:00".to_string()),
            Just("a\\\"b".to_string()),
        ]
    }

    fn arb_message() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("messageId"),
            Just("timestamp"),
            Just("receivedAt"),
            Just("sentAt"),
            Just("originalTimestamp"),
            Just("event"),
        ];
        proptest::collection::vec((key, arb_field(), "[ ,{}\":é]{0,3}"), 0..8).prop_map(|fields| {
            fields
                .into_iter()
                .map(|(k, v, sep)| format!("\"{k}\":\"{v}\"{sep}"))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn any_text_reads_back_byte_for_byte(
            messages in proptest::collection::vec(arb_message(), 0..20)
        ) {
            round_trip(&messages);
        }

        #[test]
        fn damaged_blocks_never_panic(
            messages in proptest::collection::vec(arb_message(), 1..5),
            at in any::<usize>(),
            byte in any::<u8>(),
        ) {
            let mut raw = encoded(&messages);
            let at = at % raw.messages.len();
            raw.messages[at] = byte;
            let _ = decode(&raw.messages, &raw.ids);
            let at = at % raw.ids.len();
            raw.ids[at] = byte;
            let _ = decode(&raw.messages, &raw.ids);
        }
    }
}

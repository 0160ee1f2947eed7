//! The in-memory columnar form of rows, shared by the memtable and decoded segments, and the
//! self-contained row encoding of the write-ahead log.

use crate::codec::{self, put_ivarint, put_opt_str, put_str, Reader};
use crate::error::{Result, StoreError};
use crate::lazy::Col;
use itinera_core::{MessageType, Touchpoint};
use std::borrow::Cow::Borrowed;
use std::sync::Arc;

/// Code meaning "no account" in the `group` column.
pub const NO_GROUP: u32 = u32::MAX;

/// Rows as parallel columns. Codes index the store's dictionaries. Persons and times are always
/// in memory; the other columns of a segment are decoded when first read ([`Col`]).
#[derive(Debug, Default, Clone)]
pub struct Columns {
    /// Distinct id (user or anonymous) code; the person is `identity.root(did)`.
    pub did: Vec<u32>,
    /// Event time, ms since the epoch.
    pub ts: Vec<i64>,
    pub event: Col<u32>,
    pub channel: Col<u32>,
    pub touchpoint: Col<u32>,
    /// [`MessageType::code`].
    pub kind: Col<u8>,
    /// Account code or [`NO_GROUP`].
    pub group: Col<u32>,
    /// Revenue or NaN.
    pub revenue: Col<f64>,
    /// Hash of the message id, for deduplication.
    pub msg_hash: Col<u64>,
    pub received_at: Col<i64>,
    /// Typed properties: row i holds pairs `prop_end[i-1]..prop_end[i]` (from 0 for row 0) of
    /// `prop_key` (property-key dictionary code) and `prop_val` (property-value code).
    pub prop_end: Col<u32>,
    pub prop_key: Col<u32>,
    pub prop_val: Col<u32>,
    /// [`Columns::distinct_times`], once computed.
    pub(crate) distinct_times: std::sync::OnceLock<bool>,
    /// [`Columns::received_range`], once computed.
    pub(crate) received_range: std::sync::OnceLock<Option<(i64, i64)>>,
    /// [`Columns::receive_lag`]'s values, once computed.
    pub(crate) receive_lags: std::sync::OnceLock<ReceiveLags>,
}

/// Each row's receive time less its event time, in the narrowest integers that hold them all.
/// Rows of equal time are ordered by receive time; for them the lags order the same, and the
/// lags are small (an SDK's send delay: milliseconds to seconds, hours for a device that was
/// offline), so they take 2 bytes a row where the receive times take 8.
#[derive(Debug, Clone)]
pub(crate) enum ReceiveLags {
    Short(Box<[i16]>),
    Int(Box<[i32]>),
    Long(Box<[i64]>),
}

impl ReceiveLags {
    fn of(received_at: &[i64], ts: &[i64]) -> ReceiveLags {
        let lags = received_at.iter().zip(ts).map(|(r, t)| r.wrapping_sub(*t));
        let (lo, hi) = lags
            .clone()
            .fold((0i64, 0i64), |(lo, hi), l| (lo.min(l), hi.max(l)));
        let within = |min: i64, max: i64| lo >= min && hi <= max;
        if within(i16::MIN.into(), i16::MAX.into()) {
            ReceiveLags::Short(lags.map(|l| l as i16).collect())
        } else if within(i32::MIN.into(), i32::MAX.into()) {
            ReceiveLags::Int(lags.map(|l| l as i32).collect())
        } else {
            ReceiveLags::Long(lags.collect())
        }
    }

    fn get(&self, i: usize) -> i64 {
        match self {
            ReceiveLags::Short(v) => v[i].into(),
            ReceiveLags::Int(v) => v[i].into(),
            ReceiveLags::Long(v) => v[i],
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            ReceiveLags::Short(v) => v.len() * 2,
            ReceiveLags::Int(v) => v.len() * 4,
            ReceiveLags::Long(v) => v.len() * 8,
        }
    }
}

impl Columns {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    pub fn with_capacity(n: usize) -> Self {
        Columns {
            did: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
            event: Vec::with_capacity(n).into(),
            channel: Vec::with_capacity(n).into(),
            touchpoint: Vec::with_capacity(n).into(),
            kind: Vec::with_capacity(n).into(),
            group: Vec::with_capacity(n).into(),
            revenue: Vec::with_capacity(n).into(),
            msg_hash: Vec::with_capacity(n).into(),
            received_at: Vec::with_capacity(n).into(),
            prop_end: Vec::with_capacity(n).into(),
            prop_key: Vec::new().into(),
            prop_val: Vec::new().into(),
            distinct_times: Default::default(),
            received_range: Default::default(),
            receive_lags: Default::default(),
        }
    }

    /// True when no two neighbouring rows share a time: computed on the first call, for columns
    /// that no longer change (decoded segments, a snapshot's sorted copies).
    pub fn distinct_times(&self) -> bool {
        *self
            .distinct_times
            .get_or_init(|| itinera_engine::journey::distinct_times(&self.ts))
    }

    /// The lowest and highest receive time of the rows (None when there are none), computed on
    /// the first call without keeping that column decoded, for columns that no longer change:
    /// rows of chunks whose ranges do not overlap are ordered without reading the column.
    pub fn received_range(&self) -> Option<(i64, i64)> {
        *self.received_range.get_or_init(|| {
            let r = self.received_at.peek();
            Some((*r.iter().min()?, *r.iter().max()?))
        })
    }

    /// Row `i`'s receive time less its time: what orders rows of equal time (see
    /// [`ReceiveLags`]). Read from the receive times when they are in memory anyway (the rows
    /// in memory); for a segment, from lags computed on the first call without keeping the
    /// receive times decoded, for columns that no longer change.
    pub(crate) fn receive_lag(&self, i: usize) -> i64 {
        if self.received_at.is_decoded() {
            return self.received_at[i].wrapping_sub(self.ts[i]);
        }
        self.receive_lags
            .get_or_init(|| ReceiveLags::of(&self.received_at.peek(), &self.ts))
            .get(i)
    }

    /// Row `i`'s receive time, read as [`Columns::receive_lag`] reads it: a segment keeps its
    /// lags (2 bytes a row, mostly), not its receive times (8), for rows checked one at a time
    /// (against an erasure's time).
    pub(crate) fn received_at_of(&self, i: usize) -> i64 {
        self.ts[i].wrapping_add(self.receive_lag(i))
    }

    /// The range of row `i`'s properties in `prop_key`/`prop_val`.
    pub fn prop_range(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 {
            0
        } else {
            self.prop_end[i - 1] as usize
        };
        start..self.prop_end[i] as usize
    }

    /// Ends the current row's properties (after pushing its pairs).
    pub fn end_props(&mut self) {
        self.prop_end.push(self.prop_key.len() as u32);
    }

    /// Appends row `i` of `other`.
    pub fn push_from(&mut self, other: &Columns, i: usize) {
        self.distinct_times.take();
        self.received_range.take();
        self.receive_lags.take();
        self.did.push(other.did[i]);
        self.ts.push(other.ts[i]);
        self.event.push(other.event[i]);
        self.channel.push(other.channel[i]);
        self.touchpoint.push(other.touchpoint[i]);
        self.kind.push(other.kind[i]);
        self.group.push(other.group[i]);
        self.revenue.push(other.revenue[i]);
        self.msg_hash.push(other.msg_hash[i]);
        self.received_at.push(other.received_at[i]);
        let r = other.prop_range(i);
        self.prop_key.extend_from_slice(&other.prop_key[r.clone()]);
        self.prop_val.extend_from_slice(&other.prop_val[r]);
        self.end_props();
    }

    /// The rows `order` names (input, row) of `inputs`, in that order, built a column at a
    /// time from columns peeked, not kept ([`Col::peek`]): a compaction holds its output and
    /// one column of its inputs at a time, where copying row by row decoded every column of
    /// every input, kept beside the output until the inputs were dropped.
    pub fn merged(inputs: &[&Columns], order: &[(u32, u32)]) -> Columns {
        let mut out = Columns {
            did: column(inputs, order, |c| Borrowed(&c.did[..])),
            ts: column(inputs, order, |c| Borrowed(&c.ts[..])),
            event: column(inputs, order, |c| c.event.peek()).into(),
            channel: column(inputs, order, |c| c.channel.peek()).into(),
            touchpoint: column(inputs, order, |c| c.touchpoint.peek()).into(),
            kind: column(inputs, order, |c| c.kind.peek()).into(),
            group: column(inputs, order, |c| c.group.peek()).into(),
            revenue: column(inputs, order, |c| c.revenue.peek()).into(),
            msg_hash: column(inputs, order, |c| c.msg_hash.peek()).into(),
            received_at: column(inputs, order, |c| c.received_at.peek()).into(),
            ..Default::default()
        };
        // properties: each input's ends with its keys, then with its values
        let ends: Vec<_> = inputs.iter().map(|c| c.prop_end.peek()).collect();
        let range = |s: usize, i: usize| {
            let start = if i == 0 { 0 } else { ends[s][i - 1] as usize };
            start..ends[s][i] as usize
        };
        let mut end = 0u32;
        let mut prop_end = Vec::with_capacity(order.len());
        for &(s, i) in order {
            end += range(s as usize, i as usize).len() as u32;
            prop_end.push(end);
        }
        let props = |col: fn(&Columns) -> &Col<u32>| -> Vec<u32> {
            let peeked: Vec<_> = inputs.iter().map(|c| col(c).peek()).collect();
            let mut all = Vec::with_capacity(end as usize);
            for &(s, i) in order {
                all.extend_from_slice(&peeked[s as usize][range(s as usize, i as usize)]);
            }
            all
        };
        out.prop_key = props(|c| &c.prop_key).into();
        out.prop_val = props(|c| &c.prop_val).into();
        out.prop_end = prop_end.into();
        out
    }

    /// The rows `order` names (source, row) of `hot`, in that order, for queries over rows in
    /// memory: persons, times, events and receive times (what a journey query and the sorting
    /// read) are copied now; every other column is gathered from the memory chunks when first
    /// read, by `origin` (chunk, row in it) of each row. A copy of every column doubled the
    /// memory of the rows waiting for their flush.
    pub fn take_hot(
        hot: &[&Columns],
        order: &[(u32, u32)],
        chunks: &Arc<[SharedChunk]>,
        origin: &Arc<Vec<(u32, u32)>>,
    ) -> Columns {
        fn gathered<T: Copy + Send + Sync + 'static>(
            chunks: &Arc<[SharedChunk]>,
            origin: &Arc<Vec<(u32, u32)>>,
            held: usize,
            col: fn(&Columns) -> &[T],
        ) -> Col<T> {
            let (chunks, origin) = (chunks.clone(), origin.clone());
            Col::lazy_holding(held, move || {
                origin
                    .iter()
                    .map(|&(c, i)| col(&chunks[c as usize].cols)[i as usize])
                    .collect()
            })
        }
        let prop_end: Col<u32> = {
            let (chunks, origin) = (chunks.clone(), origin.clone());
            Col::lazy(move || {
                let mut end = 0u32;
                origin
                    .iter()
                    .map(|&(c, i)| {
                        end += chunks[c as usize].cols.prop_range(i as usize).len() as u32;
                        end
                    })
                    .collect()
            })
        };
        let props = |value: fn(&Columns) -> &[u32]| -> Col<u32> {
            let (chunks, origin) = (chunks.clone(), origin.clone());
            Col::lazy(move || {
                let mut out = Vec::new();
                for &(c, i) in origin.iter() {
                    let cols = &chunks[c as usize].cols;
                    out.extend_from_slice(&value(cols)[cols.prop_range(i as usize)]);
                }
                out
            })
        };
        Columns {
            did: column(hot, order, |c| Borrowed(&c.did[..])),
            ts: column(hot, order, |c| Borrowed(&c.ts[..])),
            event: column(hot, order, |c| Borrowed(&c.event[..])).into(),
            received_at: column(hot, order, |c| Borrowed(&c.received_at[..])).into(),
            // the origins, shared by every gathering column, are counted once, here
            channel: gathered(chunks, origin, origin.capacity() * 8, |c| &c.channel),
            touchpoint: gathered(chunks, origin, 0, |c| &c.touchpoint),
            kind: gathered(chunks, origin, 0, |c| &c.kind),
            group: gathered(chunks, origin, 0, |c| &c.group),
            revenue: gathered(chunks, origin, 0, |c| &c.revenue),
            msg_hash: gathered(chunks, origin, 0, |c| &c.msg_hash),
            prop_key: props(|c| &c.prop_key),
            prop_val: props(|c| &c.prop_val),
            prop_end,
            distinct_times: Default::default(),
            received_range: Default::default(),
            receive_lags: Default::default(),
        }
    }

    /// Heap bytes held: decoded values, and blocks waiting to be decoded (without decoding
    /// any column).
    pub fn heap_bytes(&self) -> usize {
        self.did.capacity() * 4
            + self.ts.capacity() * 8
            + self.event.heap_bytes()
            + self.channel.heap_bytes()
            + self.touchpoint.heap_bytes()
            + self.kind.heap_bytes()
            + self.group.heap_bytes()
            + self.revenue.heap_bytes()
            + self.msg_hash.heap_bytes()
            + self.received_at.heap_bytes()
            + self.prop_end.heap_bytes()
            + self.prop_key.heap_bytes()
            + self.prop_val.heap_bytes()
            + self.receive_lags.get().map_or(0, ReceiveLags::heap_bytes)
    }
}

/// Column values of the rows `order` names (input, row), each input's column read once by
/// `read` (borrowed, or a copy that is dropped here).
fn column<'a, T: Copy + 'a>(
    inputs: &[&'a Columns],
    order: &[(u32, u32)],
    read: impl Fn(&'a Columns) -> std::borrow::Cow<'a, [T]>,
) -> Vec<T> {
    let read: Vec<_> = inputs.iter().map(|c| read(c)).collect();
    order
        .iter()
        .map(|&(s, i)| read[s as usize][i as usize])
        .collect()
}

/// A block of rows in memory with the full messages beside them.
#[derive(Debug, Default)]
pub struct MemChunk {
    pub cols: Columns,
    /// The chunk's log record as it was written (framed, LZ4-compressed), which holds the
    /// normalized Segment message of each row. Rows wait up to a million at a time for their
    /// flush; kept as text, their messages were most of a server's memory (about 700 bytes a
    /// realistic message, against about 115 for its share of the record). They are read back
    /// when needed: by the flush and by exports.
    pub record: Box<[u8]>,
}

impl MemChunk {
    /// The messages of the chunk's rows, in row order.
    pub fn bodies(&self) -> crate::error::Result<Texts> {
        crate::wal::record::bodies_of(&self.record)
    }
}

/// Many strings in one buffer: one allocation per chunk of rows instead of one per message,
/// so the memory table grows by large blocks (a string per message was most of the allocator's
/// work while ingesting).
#[derive(Debug, Default, Clone)]
pub struct Texts {
    text: String,
    ends: Vec<u32>,
}

impl Texts {
    pub fn with_capacity(strings: usize, bytes: usize) -> Self {
        Texts {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(strings),
        }
    }

    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len() as u32);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of text held.
    pub fn byte_len(&self) -> usize {
        self.text.len()
    }

    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

pub type SharedChunk = Arc<MemChunk>;

// ---- log encoding of touchpoints -----------------------------------------------------------

/// Appends one touchpoint in the log's self-contained form (strings, not codes); `body` is its
/// message (the store keeps bodies apart from the touchpoints).
pub fn encode_touchpoint(out: &mut Vec<u8>, t: &Touchpoint, body: &str) {
    out.push(t.kind.code());
    put_ivarint(out, t.timestamp_ms);
    put_ivarint(out, t.received_at_ms);
    put_str(out, &t.message_id);
    put_opt_str(out, t.user_id.as_deref());
    put_opt_str(out, t.anonymous_id.as_deref());
    put_opt_str(out, t.previous_id.as_deref());
    put_opt_str(out, t.group_id.as_deref());
    put_str(out, &t.event);
    put_str(out, &t.channel);
    put_str(out, &t.touchpoint);
    match t.revenue {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    put_str(out, body);
}

/// Reads past the fields [`encode_touchpoint`] writes before the message.
pub(crate) fn skip_to_body(r: &mut Reader<'_>) -> Result<()> {
    r.u8()?;
    r.ivarint()?;
    r.ivarint()?;
    r.str()?;
    for _ in 0..4 {
        r.opt_str()?;
    }
    for _ in 0..3 {
        r.str()?;
    }
    match r.u8()? {
        0 => {}
        1 => {
            r.f64_le()?;
        }
        _ => return Err(StoreError::Corrupt("log: bad revenue tag".into())),
    }
    Ok(())
}

pub fn decode_touchpoint(r: &mut Reader<'_>) -> Result<Touchpoint> {
    let (mut t, message_id, body) = decode_touchpoint_parts(r)?;
    t.message_id = message_id.to_string();
    t.body = body.to_string();
    Ok(t)
}

/// Reads one touchpoint as [`encode_touchpoint`] wrote it, its typed properties derived from
/// its message. Its message id and message are borrowed from the record (the touchpoint's own
/// are left empty): a replay of the log hashes the id and keeps the messages in the record, so
/// copying them would be wasted.
pub(crate) fn decode_touchpoint_parts<'a>(
    r: &mut Reader<'a>,
) -> Result<(Touchpoint, &'a str, &'a str)> {
    let kind = MessageType::from_code(r.u8()?)
        .ok_or_else(|| StoreError::Corrupt("log: unknown message type".into()))?;
    let timestamp_ms = r.ivarint()?;
    let received_at_ms = r.ivarint()?;
    let message_id = r.str()?;
    let user_id = r.opt_str()?.map(str::to_string);
    let anonymous_id = r.opt_str()?.map(str::to_string);
    let previous_id = r.opt_str()?.map(str::to_string);
    let group_id = r.opt_str()?.map(str::to_string);
    let event = r.str()?.to_string();
    let channel = r.str()?.to_string();
    let touchpoint = r.str()?.to_string();
    let revenue = match r.u8()? {
        0 => None,
        1 => Some(r.f64_le()?),
        _ => return Err(StoreError::Corrupt("log: bad revenue tag".into())),
    };
    let body = r.str()?;
    // the log keeps the message; its typed properties are derived from it again
    let props = Touchpoint::props_from_body(body);
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(StoreError::Corrupt("log: touchpoint without an id".into()));
    }
    let t = Touchpoint {
        kind,
        message_id: String::new(),
        timestamp_ms,
        received_at_ms,
        user_id,
        anonymous_id,
        previous_id,
        group_id,
        event,
        channel,
        touchpoint,
        revenue,
        props,
        body: String::new(),
    };
    Ok((t, message_id, body))
}

/// Hash of a message id as kept in the `msg_hash` column.
pub fn message_hash(message_id: &str) -> u64 {
    codec::hash64(message_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Lags are kept exactly, in the narrowest integers that hold every one of them.
    #[test]
    fn receive_lags_take_the_narrowest_width_and_keep_every_value() {
        let ts = [1_700_000_000_000i64; 3];
        for (lags, width) in [
            ([0i64, -32_768, 32_767], 2),
            ([0, 32_768, -5], 4),
            ([0, 3_000_000_000, -5], 8),
            ([0, -2_147_483_649, 5], 8),
        ] {
            let received: Vec<i64> = ts.iter().zip(lags).map(|(t, l)| t + l).collect();
            let got = ReceiveLags::of(&received, &ts);
            assert_eq!(got.heap_bytes(), 3 * width, "{lags:?}");
            assert_eq!([0, 1, 2].map(|i| got.get(i)), lags);
        }
    }

    fn arb_touchpoint() -> impl Strategy<Value = Touchpoint> {
        (
            0u8..6,
            any::<i64>(),
            any::<i64>(),
            ".{0,20}",
            proptest::option::of(".{0,10}"),
            proptest::option::of(".{0,10}"),
            proptest::option::of(".{0,10}"),
            ".{0,10}",
            proptest::option::of(any::<f64>()),
            ".{0,50}",
        )
            .prop_map(|(k, ts, rx, mid, u, p, g, e, rev, body)| Touchpoint {
                kind: MessageType::from_code(k).unwrap(),
                message_id: mid,
                timestamp_ms: ts,
                received_at_ms: rx,
                user_id: u.clone().or(Some("anon".into())),
                anonymous_id: u,
                previous_id: p,
                group_id: g,
                event: e.clone(),
                channel: "web".into(),
                touchpoint: e,
                revenue: rev.filter(|v| !v.is_nan()),
                props: Touchpoint::props_from_body(&body),
                body,
            })
    }

    proptest! {
        #[test]
        fn touchpoints_round_trip(ts in proptest::collection::vec(arb_touchpoint(), 0..10)) {
            let mut b = Vec::new();
            for t in &ts { encode_touchpoint(&mut b, t, &t.body); }
            let mut r = Reader::new(&b, "t");
            for t in &ts { prop_assert_eq!(&decode_touchpoint(&mut r).unwrap(), t); }
            prop_assert!(r.is_empty());
        }
    }
}

//! The merge of a compaction, within a memory budget.
//!
//! The rows of the chosen segments are written as segments of whole persons in person order
//! (each a range of person roots), each merged on its own: its rows' sort keys, then one output
//! column at a time gathered from the inputs' columns, read for the purpose and not kept, then
//! its messages streamed from the files that hold them. A compaction's memory is therefore set
//! by the rows of one output ([`rows_within`]), not by the store: merging everything into one
//! segment in memory took 1.8 GiB at 10M events.

use crate::columns::Columns;
use crate::error::{Result, StoreError};
use crate::segment::{BodyFiles, BodyLoc, SegmentWriter};
use itinera_core::Touchpoint;
use parking_lot::RwLock;
use rustc_hash::FxHashSet;
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use super::state::{Dicts, LoadedSegment};
use super::{DICT_PROP_KEYS, DICT_PROP_VALUES};

/// Working memory planned per row of an output: its sort key (32 bytes) and, once sorted, its
/// place by input (8), one output column of up to 8 bytes and that column's encoding.
const GROUP_BYTES_PER_ROW: usize = 64;

/// The rows one merge may hold within `budget` bytes.
pub(super) fn rows_within(budget: usize) -> usize {
    (budget / GROUP_BYTES_PER_ROW).max(1)
}

/// A merge of `segments` (in their store order, which breaks ties between equal rows).
pub(super) struct Merge<'a> {
    pub segments: &'a [Arc<LoadedSegment>],
    /// Person (root id) of every id.
    pub roots: &'a [u32],
    /// Erased ids with the time of their erasure: their rows received before it are dropped.
    pub erased: &'a HashMap<u32, i64>,
    /// Bytes the merge plans to use (besides the messages being streamed).
    pub budget: usize,
    /// Whether the written outputs keep their persons, times and events decoded (a serving
    /// store, which would decode them for its next query) or are opened lean.
    pub keep_decoded: bool,
}

/// One output of a merge: the rows of the persons (roots) in `persons` with times in `times`
/// (the last part of a person ends with no bound), about `rows` of them.
pub(super) struct Part {
    pub persons: Range<u32>,
    pub times: Range<i64>,
    pub rows: usize,
}

impl Part {
    pub fn new(persons: Range<u32>, times: Range<i64>, rows: usize) -> Part {
        Part {
            persons,
            times,
            rows,
        }
    }

    /// Every row of every person in `persons`.
    pub fn persons(persons: Range<u32>, rows: usize) -> Part {
        Part::new(persons, i64::MIN..i64::MAX, rows)
    }

    fn holds(&self, root: u32, ts: i64) -> bool {
        self.persons.contains(&root)
            && ts >= self.times.start
            && (ts < self.times.end || self.times.end == i64::MAX)
    }
}

/// Rows (input, row) left out as later copies of a message id.
pub(super) type Dropped = FxHashSet<(u32, u32)>;

impl Merge<'_> {
    fn root(&self, did: u32) -> u32 {
        self.roots.get(did as usize).copied().unwrap_or(did)
    }

    fn erased(&self, did: u32, received_at: impl FnOnce() -> i64) -> bool {
        self.erased.get(&did).is_some_and(|t| received_at() <= *t)
    }

    /// The later copies of every message id that occurs more than once (the first copy in
    /// store order stays; an erased row is no copy). The hashes are sorted in passes over
    /// parts of the hash space, each within half the budget, so that finding the (usually no)
    /// repeats holds 8 bytes a row of one part rather than a hash set of every row.
    pub fn duplicates_to_drop(&self) -> Result<Dropped> {
        let total: usize = self.segments.iter().map(|s| rows(s)).sum();
        let passes = (total * 16).div_ceil(self.budget).max(1) as u64;
        let mut repeated: FxHashSet<u64> = FxHashSet::default();
        for pass in 0..passes {
            let mut part: Vec<u64> = Vec::with_capacity(total / passes as usize + 1);
            for s in self.segments {
                let hashes = s.cols.msg_hash.peek();
                part.extend(hashes.iter().filter(|h| **h % passes == pass));
            }
            part.sort_unstable();
            repeated.extend(part.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]));
        }
        let mut dropped = Dropped::default();
        if repeated.is_empty() {
            return Ok(dropped);
        }
        let mut seen = FxHashSet::default();
        for (si, s) in self.segments.iter().enumerate() {
            let (hashes, did) = (s.cols.msg_hash.peek(), persons_of(s)?);
            let mut received = None;
            for (i, h) in hashes.iter().enumerate() {
                if !repeated.contains(h) {
                    continue;
                }
                let r = || received.get_or_insert_with(|| s.cols.received_at.peek())[i];
                if self.erased(did[i], r) {
                    continue;
                }
                if !seen.insert(*h) {
                    dropped.insert((si as u32, i as u32));
                }
            }
        }
        Ok(dropped)
    }

    /// The outputs, in order: ranges of person roots, each of whole persons and at most the
    /// budget's rows; a person with more rows than that (a bot, a shared device) is split by
    /// time into outputs of at most the budget's rows, rows of one time kept together, so that
    /// the person's pieces follow each other in time.
    pub fn parts(&self) -> Result<Vec<Part>> {
        let max_rows = rows_within(self.budget);
        let mut count: Vec<usize> = vec![0; self.roots.len()];
        for s in self.segments {
            for d in persons_of(s)?.iter() {
                let r = self.root(*d) as usize;
                if r >= count.len() {
                    count.resize(r + 1, 0);
                }
                count[r] += 1;
            }
        }
        let mut parts = Vec::new();
        let (mut start, mut rows) = (0u32, 0usize);
        for (r, c) in count.iter().enumerate() {
            let r = r as u32;
            if rows > 0 && (rows + c > max_rows || *c > max_rows) {
                parts.push(Part::persons(start..r, rows));
                (start, rows) = (r, 0);
            }
            if *c > max_rows {
                parts.extend(self.split_by_time(r, *c, max_rows)?);
                start = r + 1;
                continue;
            }
            rows += c;
        }
        if rows > 0 {
            parts.push(Part::persons(start..count.len() as u32, rows));
        }
        Ok(parts)
    }

    /// The parts of one person's rows, by time, of at most `max_rows` rows unless one time has
    /// more (its 8-byte times are collected and sorted to find where to cut).
    fn split_by_time(&self, root: u32, rows: usize, max_rows: usize) -> Result<Vec<Part>> {
        let mut times = Vec::with_capacity(rows);
        for s in self.segments {
            let (did, ts) = (persons_of(s)?, times_of(s)?);
            let mine = did
                .iter()
                .zip(ts.iter())
                .filter(|(d, _)| self.root(**d) == root);
            times.extend(mine.map(|(_, t)| *t));
        }
        times.sort_unstable();
        let mut parts = Vec::new();
        let (mut from, mut i) = (i64::MIN, 0usize);
        while i < times.len() {
            // the next cut: at most max_rows on, moved back to where a time begins (or on, past
            // a time that alone holds more)
            let mut end = (i + max_rows).min(times.len());
            if end < times.len() {
                let cut = times[end];
                let back = times[i..end].partition_point(|t| *t < cut) + i;
                end = match back > i {
                    true => back,
                    false => times[end..].partition_point(|t| *t == cut) + end,
                };
            }
            let to = times.get(end).copied().unwrap_or(i64::MAX);
            parts.push(Part::new(root..root + 1, from..to, end - i));
            (from, i) = (to, end);
        }
        Ok(parts)
    }

    /// Writes the rows of `part` to `path`: with their messages (`inline`), or pointing to
    /// where they are. Returns the persons, times and events written (kept decoded for a
    /// serving store, else empty), or `None` when no row was left to write.
    pub fn write(
        &self,
        part: &Part,
        dropped: &Dropped,
        path: &Path,
        inline: bool,
        files: &mut BodyFiles<'_>,
        dicts: &RwLock<Dicts>,
    ) -> Result<Option<Columns>> {
        // by (person, time, receive time, input, row): rows of equal time in the order they
        // arrived, whichever segments they were in (the order every read merges them in);
        // reserved whole (grown by doubling, they took up to three times their size)
        let mut keys: Vec<(u32, i64, i64, u32, u32)> = Vec::with_capacity(part.rows);
        for (si, s) in self.segments.iter().enumerate() {
            let (did, ts, received) = (persons_of(s)?, times_of(s)?, s.cols.received_at.peek());
            for i in 0..did.len() {
                let (d, root) = (did[i], self.root(did[i]));
                if !part.holds(root, ts[i])
                    || self.erased(d, || received[i])
                    || (!dropped.is_empty() && dropped.contains(&(si as u32, i as u32)))
                {
                    continue;
                }
                keys.push((root, ts[i], received[i], si as u32, i as u32));
            }
        }
        if keys.is_empty() {
            return Ok(None);
        }
        keys.sort_unstable();
        let n = keys.len();
        let mut out = SegmentWriter::create(path, n)?;
        let ts: Vec<i64> = keys.iter().map(|k| k.1).collect();
        out.times(&ts)?;
        let ts = self.keep_decoded.then_some(ts);
        out.received_times(&keys.iter().map(|k| k.2).collect::<Vec<_>>())?;
        // each input's rows with their places in the output
        let mut of_input = vec![0usize; self.segments.len()];
        for k in &keys {
            of_input[k.3 as usize] += 1;
        }
        let mut places: Vec<Vec<(u32, u32)>> =
            of_input.into_iter().map(Vec::with_capacity).collect();
        for (p, k) in keys.iter().enumerate() {
            places[k.3 as usize].push((p as u32, k.4));
        }
        drop(keys);
        let gather = Gather { places: &places, n };
        let did = gather.column(|si| persons_of(&self.segments[si]))?;
        out.persons(&did)?;
        let did = self.keep_decoded.then_some(did);
        let event = gather.column(|si| Ok(self.segments[si].cols.event.peek()))?;
        out.codes("event", &event)?;
        let event = self.keep_decoded.then_some(event);
        let channel = gather.column(|si| Ok(self.segments[si].cols.channel.peek()))?;
        out.codes("channel", &channel)?;
        drop(channel);
        let touchpoint = gather.column(|si| Ok(self.segments[si].cols.touchpoint.peek()))?;
        out.codes("touchpoint", &touchpoint)?;
        drop(touchpoint);
        out.kinds(&gather.column(|si| Ok(self.segments[si].cols.kind.peek()))?)?;
        out.groups(&gather.column(|si| Ok(self.segments[si].cols.group.peek()))?)?;
        out.revenues(&gather.column(|si| Ok(self.segments[si].cols.revenue.peek()))?)?;
        let locs = gather.column(|si| {
            let s = &self.segments[si];
            s.file.load_body_locs(s.generation()).map(Cow::Owned)
        })?;
        self.properties(&gather, &locs, files, dicts, &mut out)?;
        let hashes = gather.column(|si| Ok(self.segments[si].cols.msg_hash.peek()))?;
        match inline {
            true => out.messages(
                locs.iter().map(|l| files.get(*l).map(str::to_string)),
                &hashes,
            )?,
            false => out.located(&locs)?,
        }
        out.finish(&hashes)?;
        Ok(Some(Columns {
            did: did.unwrap_or_default(),
            ts: ts.unwrap_or_default(),
            event: event.unwrap_or_default().into(),
            ..Default::default()
        }))
    }

    /// The typed properties of the output: each input's pairs, or for a segment written before
    /// typed properties (format 1) the pairs its messages give.
    fn properties(
        &self,
        gather: &Gather<'_>,
        locs: &[BodyLoc],
        files: &mut BodyFiles<'_>,
        dicts: &RwLock<Dicts>,
        out: &mut SegmentWriter,
    ) -> Result<()> {
        // per input: the end of each row's pairs and the pairs, as stored or from the messages
        let mut derived: Vec<Option<[Vec<u32>; 3]>> = vec![None; self.segments.len()];
        for (si, s) in self.segments.iter().enumerate() {
            if s.file.footer.column("prop_count").is_some() || gather.places[si].is_empty() {
                continue;
            }
            let mut d = dicts.write();
            let mut ends = vec![0u32; rows(s)];
            let (mut key, mut val) = (Vec::new(), Vec::new());
            let mut by_row: Vec<(u32, u32)> =
                gather.places[si].iter().map(|&(p, r)| (r, p)).collect();
            by_row.sort_unstable();
            let mut last = 0usize;
            for (r, p) in by_row {
                for e in &mut ends[last..r as usize] {
                    *e = key.len() as u32;
                }
                for (k, v) in Touchpoint::props_from_body(files.get(locs[p as usize])?) {
                    key.push(d.all[DICT_PROP_KEYS].intern(&k));
                    val.push(d.all[DICT_PROP_VALUES].intern(&v));
                }
                ends[r as usize] = key.len() as u32;
                last = r as usize + 1;
            }
            for e in &mut ends[last..] {
                *e = key.len() as u32;
            }
            derived[si] = Some([ends, key, val]);
        }
        let part = |si: usize, k: usize| -> Cow<'_, [u32]> {
            match &derived[si] {
                Some(d) => Cow::Borrowed(&d[k][..]),
                None => {
                    let c = &self.segments[si].cols;
                    [&c.prop_end, &c.prop_key, &c.prop_val][k].peek()
                }
            }
        };
        let range = |ends: &[u32], r: usize| {
            let start = if r == 0 { 0 } else { ends[r - 1] as usize };
            start..ends[r] as usize
        };
        // the output's ends, then its keys and its values input by input
        let mut counts = vec![0u32; gather.n];
        for (si, places) in gather.places.iter().enumerate() {
            if places.is_empty() {
                continue;
            }
            let ends = part(si, 0);
            for &(p, r) in places {
                counts[p as usize] = range(&ends, r as usize).len() as u32;
            }
        }
        let mut end = 0u32;
        let ends: Vec<u32> = counts
            .iter()
            .map(|c| {
                end += c;
                end
            })
            .collect();
        drop(counts);
        let pairs = |k: usize| -> Vec<u32> {
            let mut all = vec![0u32; end as usize];
            for (si, places) in gather.places.iter().enumerate() {
                if places.is_empty() {
                    continue;
                }
                let (in_ends, values) = (part(si, 0), part(si, k));
                for &(p, r) in places {
                    let to = range(&ends, p as usize);
                    all[to].copy_from_slice(&values[range(&in_ends, r as usize)]);
                }
            }
            all
        };
        let keys = pairs(1);
        let values = pairs(2);
        out.properties(&ends, &keys, &values)
    }
}

/// The places of each input's rows in one output.
struct Gather<'a> {
    places: &'a [Vec<(u32, u32)>],
    n: usize,
}

impl Gather<'_> {
    /// An output column from the inputs' columns, each read (by `input`) only if the output
    /// has rows of it, and dropped before the next.
    fn column<'c, T: Copy + Default + 'c>(
        &self,
        mut input: impl FnMut(usize) -> Result<Cow<'c, [T]>>,
    ) -> Result<Vec<T>> {
        let mut out = vec![T::default(); self.n];
        for (si, places) in self.places.iter().enumerate() {
            if places.is_empty() {
                continue;
            }
            let values = input(si)?;
            for &(p, r) in places {
                out[p as usize] = *values.get(r as usize).ok_or_else(|| {
                    StoreError::Corrupt(format!("merge: input {si} has no row {r}"))
                })?;
            }
        }
        Ok(out)
    }
}

fn rows(s: &LoadedSegment) -> usize {
    s.file.footer.rows as usize
}

/// An input's persons: as the store holds them, or read from its file for this pass (a store
/// opened for compaction only holds none).
fn persons_of(s: &LoadedSegment) -> Result<Cow<'_, [u32]>> {
    match s.cols.did.len() == rows(s) {
        true => Ok(Cow::Borrowed(&s.cols.did)),
        false => s.file.persons().map(Cow::Owned),
    }
}

/// An input's times, as [`persons_of`].
fn times_of(s: &LoadedSegment) -> Result<Cow<'_, [i64]>> {
    match s.cols.ts.len() == rows(s) {
        true => Ok(Cow::Borrowed(&s.cols.ts)),
        false => s.file.times().map(Cow::Owned),
    }
}

//! What the engine reads: each person's touchpoints as one time-ordered sequence of dictionary
//! codes, and the dictionaries that name the codes. A backend (the embedded store now, ClickHouse
//! later) implements [`JourneySource`]; analyses never see files or SQL.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// Code meaning "no account" in [`Journey::group`].
pub const NO_ACCOUNT: u32 = u32::MAX;

/// One person's touchpoints in time order (ties keep arrival order). Parallel columns of codes.
#[derive(Debug, Clone, Copy)]
pub struct Journey<'a> {
    /// The person: the smallest distinct-id code linked to them.
    pub person: u32,
    /// Distinct id (user or anonymous id) code of each row.
    pub did: &'a [u32],
    /// Event time, ms since the epoch.
    pub ts: &'a [i64],
    pub event: &'a [u32],
    pub channel: &'a [u32],
    pub touchpoint: &'a [u32],
    /// Segment message type code (track, page, identify, ...).
    pub kind: &'a [u8],
    /// Account code or [`NO_ACCOUNT`].
    pub group: &'a [u32],
    /// Revenue or NaN.
    pub revenue: &'a [f64],
    pub props: Props<'a>,
}

/// A journey's columns, owned: rows a source builds itself (the in-memory source, a person
/// gathered from several places in a store), read as a [`Journey`].
#[derive(Debug, Default, Clone)]
pub struct JourneyRows {
    pub did: Vec<u32>,
    pub ts: Vec<i64>,
    pub event: Vec<u32>,
    pub channel: Vec<u32>,
    pub touchpoint: Vec<u32>,
    pub kind: Vec<u8>,
    pub group: Vec<u32>,
    pub revenue: Vec<f64>,
    /// Row i's properties are `prop_key`/`prop_val[prop_end[i-1]..prop_end[i]]` (from 0).
    pub prop_end: Vec<u32>,
    pub prop_key: Vec<u32>,
    pub prop_val: Vec<u32>,
}

impl JourneyRows {
    /// Empties every column, keeping their memory.
    pub fn clear(&mut self) {
        self.did.clear();
        self.ts.clear();
        self.event.clear();
        self.channel.clear();
        self.touchpoint.clear();
        self.kind.clear();
        self.group.clear();
        self.revenue.clear();
        self.prop_end.clear();
        self.prop_key.clear();
        self.prop_val.clear();
    }

    /// Every row, as the journey of `person`.
    pub fn journey(&self, person: u32) -> Journey<'_> {
        Journey {
            person,
            did: &self.did,
            ts: &self.ts,
            event: &self.event,
            channel: &self.channel,
            touchpoint: &self.touchpoint,
            kind: &self.kind,
            group: &self.group,
            revenue: &self.revenue,
            props: Props {
                start: 0,
                end: &self.prop_end,
                key: &self.prop_key,
                val: &self.prop_val,
            },
        }
    }
}

/// The typed properties of a journey's rows: row i holds the (key, value) code pairs
/// `key[start_of(i)..end[i]]`, `val[…]`, where `start_of(0)` is `start`. `key`/`val` are the
/// backend's whole arrays; only the offsets are sliced with the rows.
#[derive(Debug, Clone, Copy)]
pub struct Props<'a> {
    pub start: u32,
    pub end: &'a [u32],
    pub key: &'a [u32],
    pub val: &'a [u32],
}

impl<'a> Props<'a> {
    /// The (key, value) codes of row `i`.
    pub fn row(&self, i: usize) -> (&'a [u32], &'a [u32]) {
        let lo = if i == 0 { self.start } else { self.end[i - 1] } as usize;
        let hi = self.end[i] as usize;
        (&self.key[lo..hi], &self.val[lo..hi])
    }

    /// The value code of property `key` on row `i`.
    pub fn get(&self, i: usize, key: u32) -> Option<u32> {
        let (k, v) = self.row(i);
        k.iter().position(|x| *x == key).map(|p| v[p])
    }

    fn slice(&self, lo: usize, hi: usize) -> Props<'a> {
        if self.end.is_empty() {
            return *self; // not read by the analysis (see [`JourneyColumns`])
        }
        Props {
            start: if lo == 0 {
                self.start
            } else {
                self.end[lo - 1]
            },
            end: &self.end[lo..hi],
            key: self.key,
            val: self.val,
        }
    }
}

impl<'a> Journey<'a> {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Rows `lo..hi` of this journey. Columns the analysis does not read may be empty (see
    /// [`JourneyColumns`]); they stay empty.
    pub fn slice(&self, lo: usize, hi: usize) -> Journey<'a> {
        fn part<T>(c: &[T], lo: usize, hi: usize) -> &[T] {
            match c.is_empty() {
                true => c,
                false => &c[lo..hi],
            }
        }
        Journey {
            person: self.person,
            did: part(self.did, lo, hi),
            ts: &self.ts[lo..hi],
            event: &self.event[lo..hi],
            channel: part(self.channel, lo, hi),
            touchpoint: part(self.touchpoint, lo, hi),
            kind: part(self.kind, lo, hi),
            group: part(self.group, lo, hi),
            revenue: part(self.revenue, lo, hi),
            props: self.props.slice(lo, hi),
        }
    }

    /// The rows with `from_ms <= ts < to_ms` (time-ordered rows: two binary searches), or None
    /// when there are none.
    pub fn within(&self, from_ms: Option<i64>, to_ms: Option<i64>) -> Option<Journey<'a>> {
        let r = rows_within(self.ts, from_ms, to_ms);
        (!r.is_empty()).then(|| self.slice(r.start, r.end))
    }

    /// The latest value code of property `key` on this journey (e.g. a trait such as the role).
    pub fn latest_prop(&self, key: u32) -> Option<u32> {
        (0..self.len()).rev().find_map(|i| self.props.get(i, key))
    }

    /// The account this person belongs to: the last account named on their touchpoints.
    pub fn account(&self) -> u32 {
        self.group
            .iter()
            .rev()
            .copied()
            .find(|g| *g != NO_ACCOUNT)
            .unwrap_or(NO_ACCOUNT)
    }
}

/// Dictionary-coded fields of a touchpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Event,
    Channel,
    Touchpoint,
    Account,
    /// Distinct ids: persons are named by their smallest linked id.
    DistinctId,
    /// Property keys: `properties.NAME`, `traits.NAME`.
    PropKey,
    /// Property values, as text.
    PropValue,
}

/// The names behind the codes of one backend, at the time of the query.
pub trait Vocabulary {
    /// All names of a field, indexed by code (erased names are empty).
    fn names(&self, field: Field) -> &[String];

    fn code(&self, field: Field, name: &str) -> Option<u32>;

    fn name(&self, field: Field, code: u32) -> &str {
        self.names(field)
            .get(code as usize)
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Progress and cancellation shared between a running query and whoever started it.
#[derive(Debug, Default)]
pub struct QueryControl {
    cancelled: AtomicBool,
    /// Cancelled because the query used up its time budget.
    timed_out: AtomicBool,
    work_done: AtomicU64,
    work_total: AtomicU64,
    /// Bytes the query may hold at once; 0 = no budget. Charged by [`crate::metered`].
    memory_limit: AtomicU64,
    /// Bytes allocated and not yet freed by the threads working for the query.
    memory_used: AtomicI64,
    memory_peak: AtomicU64,
    /// Cancelled because the query went over its memory budget.
    out_of_memory: AtomicBool,
}

impl QueryControl {
    pub fn new() -> Arc<QueryControl> {
        Arc::new(QueryControl::default())
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Stops the query because its time budget is spent (told apart from a cancellation).
    pub fn time_out(&self) {
        self.timed_out.store(true, Ordering::Relaxed);
        self.cancel();
    }

    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// Fraction of the scan's work done so far, 0…1 (the store counts rows).
    pub fn progress(&self) -> f64 {
        let total = self.work_total.load(Ordering::Relaxed);
        if total == 0 {
            return 0.0;
        }
        (self.work_done.load(Ordering::Relaxed) as f64 / total as f64).min(1.0)
    }

    pub fn add_total(&self, n: u64) {
        self.work_total.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_done(&self, n: u64) {
        self.work_done.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the memory budget in bytes (0 = none). Enforced only where the process installs
    /// [`crate::metered::Metered`] as its allocator and the work runs under
    /// [`crate::metered::charge_to`].
    pub fn set_memory_limit(&self, bytes: u64) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit.load(Ordering::Relaxed)
    }

    /// True when the query was stopped for going over its memory budget.
    pub fn out_of_memory(&self) -> bool {
        self.out_of_memory.load(Ordering::Relaxed)
    }

    /// The most bytes the query's threads held at once (0 when not metered).
    pub fn peak_memory(&self) -> u64 {
        self.memory_peak.load(Ordering::Relaxed)
    }

    /// Counts `bytes` allocated (negative: freed) for the query; over the budget, the query is
    /// cancelled and stops at its next cancellation check. Called from the allocator: it must
    /// neither allocate nor panic.
    #[inline]
    pub(crate) fn charge_memory(&self, bytes: i64) {
        let used = self.memory_used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if used <= 0 {
            return;
        }
        let used = used as u64;
        if used > self.memory_peak.load(Ordering::Relaxed) {
            self.memory_peak.fetch_max(used, Ordering::Relaxed);
            let limit = self.memory_limit.load(Ordering::Relaxed);
            if limit != 0 && used > limit && !self.out_of_memory.load(Ordering::Relaxed) {
                self.out_of_memory.store(true, Ordering::Relaxed);
                self.cancel();
            }
        }
    }
}

/// What a scan reads.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Only rows with `from_ms <= ts < to_ms`.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Threads to use; 0 means all cores.
    pub threads: usize,
    /// The analysis does not depend on which thread sees which person (integer counts, sets of
    /// values): persons may go to whichever thread is free, which keeps both cores busy to the
    /// end when one is slowed down. Sums of floats must leave it false, so that their rounding
    /// stays the same from run to run.
    pub order_free: bool,
    /// Progress reporting and cancellation; a cancelled scan stops early and the caller discards
    /// its partial result.
    pub control: Option<Arc<QueryControl>>,
    /// The columns the analysis reads (every one by default).
    pub columns: JourneyColumns,
}

/// The columns of a journey an analysis reads besides times and events. A backend that gathers
/// a person's rows from several places (segments written at different times, rows in memory)
/// copies only these, and leaves the others empty: copying every column was most of the cost of
/// a funnel on a store being written to. Rows read in place have every column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JourneyColumns(u8);

impl JourneyColumns {
    pub const NONE: JourneyColumns = JourneyColumns(0);
    pub const DID: JourneyColumns = JourneyColumns(1);
    pub const CHANNEL: JourneyColumns = JourneyColumns(2);
    pub const TOUCHPOINT: JourneyColumns = JourneyColumns(4);
    pub const KIND: JourneyColumns = JourneyColumns(8);
    pub const GROUP: JourneyColumns = JourneyColumns(16);
    pub const REVENUE: JourneyColumns = JourneyColumns(32);
    pub const PROPS: JourneyColumns = JourneyColumns(64);
    pub const ALL: JourneyColumns = JourneyColumns(127);

    pub fn with(self, other: JourneyColumns) -> JourneyColumns {
        JourneyColumns(self.0 | other.0)
    }

    pub fn has(self, other: JourneyColumns) -> bool {
        self.0 & other.0 == other.0
    }
}

impl Default for JourneyColumns {
    /// Every column: what an analysis gets unless it says what it reads.
    fn default() -> Self {
        JourneyColumns::ALL
    }
}

/// The rows of time-ordered `ts` with `from_ms <= ts < to_ms` (two binary searches).
pub fn rows_within(ts: &[i64], from_ms: Option<i64>, to_ms: Option<i64>) -> std::ops::Range<usize> {
    let lo = from_ms.map_or(0, |a| ts.partition_point(|t| *t < a));
    let hi = to_ms.map_or(ts.len(), |b| ts.partition_point(|t| *t < b));
    lo..hi.max(lo)
}

/// True when no two neighbouring times are equal. One pass without an early exit, so that it
/// runs in vector registers; stores compute it once per immutable chunk of rows.
pub fn distinct_times(ts: &[i64]) -> bool {
    let (Some(a), Some(b)) = (ts.get(..ts.len().saturating_sub(1)), ts.get(1..)) else {
        return true;
    };
    !a.iter().zip(b).fold(false, |acc, (x, y)| acc | (x == y))
}

/// The journeys of several persons whose rows lie in the same columns: person `persons[k]`
/// owns rows `ranges[k].0..ranges[k].1` of `rows`. Handing kernels many persons at once spares
/// them a call, a dozen slices and a state reset per person, which on journeys of ~20
/// touchpoints costs as much as the touchpoints themselves.
#[derive(Debug, Clone, Copy)]
pub struct JourneyBatch<'a> {
    /// The shared columns (`rows.person` is meaningless).
    pub rows: Journey<'a>,
    pub persons: &'a [u32],
    pub ranges: &'a [(u32, u32)],
    /// No two neighbouring rows of `rows` share a time (see [`distinct_times`]); false when
    /// unknown. Kernels that treat equal times apart skip looking for them when true.
    pub distinct_times: bool,
}

impl<'a> JourneyBatch<'a> {
    /// A batch of one journey.
    pub fn single(j: &'a Journey<'a>, range: &'a [(u32, u32)]) -> JourneyBatch<'a> {
        debug_assert_eq!(range, [(0, j.len() as u32)]);
        JourneyBatch {
            rows: *j,
            persons: std::slice::from_ref(&j.person),
            ranges: range,
            distinct_times: false,
        }
    }

    /// The journey of the k-th person.
    pub fn journey(&self, k: usize) -> Journey<'a> {
        let (lo, hi) = self.ranges[k];
        let mut j = self.rows.slice(lo as usize, hi as usize);
        j.person = self.persons[k];
        j
    }
}

/// Asks the CPU for the time and event columns of a batch's rows a few hundred rows ahead of the
/// kernel reading them. The rows are read in order, but person by person in short runs; the
/// general funnel kernels spend long enough on a row for these hints to pay, the small
/// single-step kernel does not use them (measured in docs/benchmarks.md).
#[derive(Debug, Default)]
pub struct RowPrefetch {
    /// Rows below these have been asked for already.
    ts_done: usize,
    event_done: usize,
}

impl RowPrefetch {
    /// How far ahead of the row being read the hint goes: enough rows to cover the memory
    /// latency, few enough that they are still in cache when read.
    pub const AHEAD: usize = 384;

    /// Asks for the rows from `row` up to `row + AHEAD` not asked for yet, one hint per cache
    /// line.
    #[inline(always)]
    pub fn ahead(&mut self, rows: &Journey<'_>, row: usize) {
        let target = row + Self::AHEAD;
        self.ts_done = self.ts_done.max(row);
        self.event_done = self.event_done.max(row);
        while self.ts_done < target {
            prefetch(rows.ts.as_ptr().wrapping_add(self.ts_done));
            self.ts_done += 64 / std::mem::size_of::<i64>();
        }
        while self.event_done < target {
            prefetch(rows.event.as_ptr().wrapping_add(self.event_done));
            self.event_done += 64 / std::mem::size_of::<u32>();
        }
    }
}

/// Persons whose rows lie in several pieces of a store's chunks (segments written at different
/// times, the rows in memory), each piece ordered by time and each before the next: read where
/// they lie instead of copied together. Person `persons[k]` has the pieces
/// `pieces[spans[k].0..spans[k].1]`, each (chunk, first row, end row) of `chunks`. Only the
/// times and events are set in `chunks` (see [`JourneySource::scan_pieces`]).
#[derive(Debug, Clone, Copy)]
pub struct PieceBatch<'a> {
    pub chunks: &'a [Journey<'a>],
    pub persons: &'a [u32],
    pub spans: &'a [(u32, u32)],
    pub pieces: &'a [(u32, u32, u32)],
    /// For each chunk, whether no two neighbouring rows share a time (see [`distinct_times`];
    /// false when unknown).
    pub distinct: &'a [bool],
}

impl<'a> PieceBatch<'a> {
    /// The times and events of the k-th person's pieces, in order.
    pub fn pieces(
        &self,
        k: usize,
    ) -> impl DoubleEndedIterator<Item = (&'a [i64], &'a [u32])> + Clone + 'a {
        let (chunks, (lo, hi)) = (self.chunks, self.spans[k]);
        self.pieces[lo as usize..hi as usize]
            .iter()
            .map(move |&(c, start, end)| {
                let j = &chunks[c as usize];
                let rows = start as usize..end as usize;
                (&j.ts[rows.clone()], &j.event[rows])
            })
    }

    /// True when two of the k-th person's touchpoints share a time: only pieces of chunks that
    /// may hold equal times are read, and the edges between pieces.
    pub fn has_ties(&self, k: usize) -> bool {
        let (lo, hi) = self.spans[k];
        let mut last = None;
        for &(c, start, end) in &self.pieces[lo as usize..hi as usize] {
            let ts = &self.chunks[c as usize].ts[start as usize..end as usize];
            if ts.first().is_some_and(|t| last == Some(*t))
                || (!self.distinct[c as usize] && !distinct_times(ts))
            {
                return true;
            }
            last = ts.last().copied().or(last);
        }
        false
    }

    /// The k-th person's times and events copied into `rows` (emptied first).
    pub fn gather_into(&self, k: usize, rows: &mut JourneyRows) {
        rows.clear();
        for (ts, event) in self.pieces(k) {
            rows.ts.extend_from_slice(ts);
            rows.event.extend_from_slice(event);
        }
    }
}

/// A hint that the cache line at `p` is read soon; never faults, whatever the address.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch hint reads nothing and never faults, for any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A backend that can hand the engine every person's journey.
pub trait JourneySource: Sync {
    /// Calls `f(acc, journey)` for every person, in parallel, each thread with its own
    /// accumulator from `init`; returns the accumulators.
    fn scan<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &Journey<'_>) + Sync,
    ) -> Vec<A>;

    /// [`JourneySource::scan`] by batches of persons (each person in exactly one batch, with the
    /// same rows `scan` gives). Backends that keep persons side by side in columns override it;
    /// by default every journey is a batch of its own.
    fn scan_batches<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &JourneyBatch<'_>) + Sync,
    ) -> Vec<A> {
        self.scan(opts, init, |acc, j| {
            let range = [(0, j.len() as u32)];
            f(acc, &JourneyBatch::single(j, &range))
        })
    }

    /// [`JourneySource::scan_batches`] for analyses that read only times and events
    /// (`opts.columns` is [`JourneyColumns::NONE`]): persons whose rows lie in several
    /// time-ordered pieces may come to `g` as a [`PieceBatch`], read where they lie, instead of
    /// copied together into a batch for `f`. Each person comes once, to one of them. By default
    /// every person goes to `f`.
    fn scan_pieces<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &JourneyBatch<'_>) + Sync,
        g: impl Fn(&mut A, &PieceBatch<'_>) + Sync,
    ) -> Vec<A> {
        let _ = g;
        self.scan_batches(opts, init, f)
    }

    /// Runs `f` with the dictionaries (held briefly: compile and render phases only).
    fn with_vocabulary<R>(&self, f: impl FnOnce(&dyn Vocabulary) -> R) -> R;

    /// Runs `f` on the whole journey of the person with distinct-id code `did` (every id
    /// stitched to them); None when they have no rows. By default a scan; backends with a
    /// person index find the person directly.
    fn journey_of<R: Send>(&self, did: u32, f: impl Fn(&Journey<'_>) -> R + Sync) -> Option<R> {
        let opts = ScanOptions {
            threads: 1,
            ..Default::default()
        };
        self.scan(
            &opts,
            || None,
            |acc, j| {
                if acc.is_none() && j.did.contains(&did) {
                    *acc = Some(f(j));
                }
            },
        )
        .into_iter()
        .flatten()
        .next()
    }
}

/// Whose journey an analysis counts: each person's, or each B2B account's (all members together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CountBy {
    #[default]
    Person,
    /// The touchpoints of every member of a B2B account form one journey.
    Account,
}

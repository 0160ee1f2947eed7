//! Scans for the journey engine: each person's touchpoints as one time-ordered sequence, across
//! segments, the in-memory table, and identities merged after the rows were written.
//!
//! Segment rows are sorted by the person their id belonged to when written; identity merges only
//! join persons, so a person's rows form a few contiguous runs. The scan collects the runs of every
//! person; a person with a single run is read in place, others are gathered and merged by time.
//! Persons are split over threads in contiguous ranges.

use crate::columns::Columns;
use crate::gather::{in_merge_order, Gathered, Piece as RunPiece};
use itinera_engine::journey::JourneyColumns;
use itinera_engine::{
    Field, Journey, JourneyBatch, JourneySource, PieceBatch, ScanOptions, Vocabulary,
};
use std::collections::HashMap;
use std::sync::Arc;

/// The journey of one person, as the engine reads it.
pub type PersonEvents<'a> = Journey<'a>;

/// Rows `start..end` of `c` as person `person`'s journey, with the columns `cols` asks for (the
/// others empty: a segment's columns are decoded when first read, so those no analysis asked
/// for are never decoded).
fn journey_of(
    person: u32,
    c: &Columns,
    start: usize,
    end: usize,
    cols: JourneyColumns,
) -> Journey<'_> {
    // a column is only touched (and so decoded) when asked for
    fn pick<T>(on: bool, v: &crate::lazy::Col<T>) -> &[T] {
        if on {
            v
        } else {
            &[]
        }
    }
    let props = cols.has(JourneyColumns::PROPS);
    Journey {
        person,
        did: &c.did,
        ts: &c.ts,
        event: &c.event,
        channel: pick(cols.has(JourneyColumns::CHANNEL), &c.channel),
        touchpoint: pick(cols.has(JourneyColumns::TOUCHPOINT), &c.touchpoint),
        kind: pick(cols.has(JourneyColumns::KIND), &c.kind),
        group: pick(cols.has(JourneyColumns::GROUP), &c.group),
        revenue: pick(cols.has(JourneyColumns::REVENUE), &c.revenue),
        props: itinera_engine::journey::Props {
            start: 0,
            end: pick(props, &c.prop_end),
            key: pick(props, &c.prop_key),
            val: pick(props, &c.prop_val),
        },
    }
    .slice(start, end)
}

/// Rows `start..end` of chunk `chunk`: some of a person's rows, ordered by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Run {
    person: u32,
    chunk: u32,
    start: u32,
    end: u32,
}

/// Chunks of rows and their runs sorted by (person, chunk, row): the person index of part of a
/// store. Built once for the segments, and once for each sorted copy of the rows in memory; a
/// snapshot is made of such parts, and its scan threads merge them block by block.
pub(crate) struct RunIndex {
    chunks: Vec<Arc<Columns>>,
    runs: Vec<Run>,
    /// Index into `runs` where each person starts, plus the end.
    person_starts: Vec<usize>,
    /// The rows of the persons before each person, plus all rows: blocks are cut by rows.
    rows_before: Vec<u64>,
}

impl RunIndex {
    /// The index of `chunks`, whose rows are grouped by the person their id belonged to when
    /// written (identities merged since then join persons, so a person may have several runs
    /// in one chunk).
    pub(crate) fn build(chunks: Vec<Arc<Columns>>, roots: &[u32]) -> RunIndex {
        let mut lists: Vec<Vec<Run>> = Vec::with_capacity(chunks.len());
        for (ci, c) in chunks.iter().enumerate() {
            let mut runs = Vec::new();
            runs_of(ci as u32, c, roots, &mut runs);
            lists.push(runs);
        }
        // each chunk's runs are in person order unless identities were merged since it was
        // written: then they are sorted, all together
        let (runs, person_starts) = if lists.len() == 1 && lists[0].is_sorted() {
            let runs = lists.pop().expect("one list");
            let starts = person_starts_of(&runs);
            (runs, starts)
        } else if lists.iter().all(|l| l.is_sorted()) {
            let starts: Vec<Vec<usize>> = lists.iter().map(|l| person_starts_of(l)).collect();
            let refs: Vec<RunList<'_>> = lists
                .iter()
                .zip(&starts)
                .map(|(runs, starts)| RunList {
                    runs,
                    starts,
                    offset: 0,
                })
                .collect();
            merge_by_person(&refs, Default::default())
        } else {
            let mut all: Vec<Run> = lists.into_iter().flatten().collect();
            all.sort_unstable();
            let starts = person_starts_of(&all);
            (all, starts)
        };
        let mut rows_before = Vec::with_capacity(person_starts.len());
        let mut rows = 0u64;
        rows_before.push(0);
        for w in person_starts.windows(2) {
            rows += runs[w[0]..w[1]]
                .iter()
                .map(|r| u64::from(r.end - r.start))
                .sum::<u64>();
            rows_before.push(rows);
        }
        RunIndex {
            chunks,
            runs,
            person_starts,
            rows_before,
        }
    }

    /// All rows of its chunks (every row is in a run).
    pub(crate) fn rows(&self) -> usize {
        self.rows_before.last().copied().unwrap_or(0) as usize
    }

    /// The first chunk (an index of memory rows has one).
    pub(crate) fn chunk(&self) -> &Columns {
        &self.chunks[0]
    }

    /// Heap bytes of the index itself: its runs, where each person starts and the rows before
    /// each (its chunks are counted where they belong).
    pub(crate) fn index_bytes(&self) -> usize {
        std::mem::size_of_val(&self.runs[..])
            + std::mem::size_of_val(&self.person_starts[..])
            + std::mem::size_of_val(&self.rows_before[..])
    }

    fn persons(&self) -> usize {
        self.person_starts.len().saturating_sub(1)
    }

    /// The code of the `k`-th person.
    fn person_at(&self, k: usize) -> u32 {
        self.runs[self.person_starts[k]].person
    }

    /// The index of the first person from the `from`-th on whose code is not below `code`,
    /// looking at most `limit` persons ahead (`from + limit` when none of them is).
    fn first_from(&self, code: u64, from: usize, limit: usize) -> usize {
        let end = self.persons().min(from.saturating_add(limit));
        from + self.person_starts[from..end]
            .partition_point(|&start| u64::from(self.runs[start].person) < code)
    }
}

/// Appends the runs of chunk `chunk` (`c`) in row order: rows of one person, ordered by time.
fn runs_of(chunk: u32, c: &Columns, roots: &[u32], out: &mut Vec<Run>) {
    let root = |d: u32| roots.get(d as usize).copied().unwrap_or(d);
    let mut i = 0usize;
    let n = c.len();
    while i < n {
        let p = root(c.did[i]);
        let mut j = i + 1;
        // a run is ordered by (time, receive time): rows of ids merged after they were
        // written may not be. Rows of one id are (flushes, compactions and the sorted copies
        // of memory order each person's rows so), so receive times are compared, and that
        // column decoded, only where a tie falls between two ids.
        while j < n
            && (c.did[j] == c.did[i] || root(c.did[j]) == p)
            && (c.ts[j] > c.ts[j - 1]
                || (c.ts[j] == c.ts[j - 1]
                    && (c.did[j] == c.did[j - 1] || c.received_at[j] >= c.received_at[j - 1])))
        {
            j += 1;
        }
        out.push(Run {
            person: p,
            chunk,
            start: i as u32,
            end: j as u32,
        });
        i = j;
    }
}

/// Where each person's runs start in `runs` (sorted by person), plus the end.
fn person_starts_of(runs: &[Run]) -> Vec<usize> {
    let mut starts: Vec<usize> = (0..runs.len())
        .filter(|&i| i == 0 || runs[i - 1].person != runs[i].person)
        .collect();
    starts.push(runs.len());
    starts
}

/// Buffers for a merged run list and its person starts.
pub(crate) type RunBuffers = (Vec<Run>, Vec<usize>);

/// A run list sorted by (person, chunk, row), where each of some consecutive persons starts in
/// it (plus where the last ends), and the shift of its chunk numbers in the merged list.
struct RunList<'a> {
    runs: &'a [Run],
    starts: &'a [usize],
    offset: u32,
}

/// Merges run lists, each on chunks numbered below the next list's once shifted, into one list
/// sorted by (person, chunk, row), with where each person starts. A scan of a store being
/// written to does this block by block in its threads: a person's runs are copied list by
/// list, found by the lists' own person starts, never compared one by one. The merged list is
/// written into `buffers` (emptied first), which a scan thread reuses from block to block.
fn merge_by_person(lists: &[RunList<'_>], buffers: RunBuffers) -> RunBuffers {
    const DONE: u64 = u64::MAX;
    let total = lists
        .iter()
        .map(|l| l.starts.last().map_or(0, |end| end - l.starts[0]))
        .sum();
    let persons: usize = lists.iter().map(|l| l.starts.len().saturating_sub(1)).sum();
    let (mut out, mut starts) = buffers;
    out.clear();
    starts.clear();
    out.reserve(total);
    starts.reserve(persons.min(total) + 1);
    // per list, the index of its next person in its starts, and that person (DONE at the end)
    let mut next = vec![0usize; lists.len()];
    // the person at a list's `at`-th start, DONE past its last
    let head = |l: &RunList<'_>, at: usize| match at + 1 < l.starts.len() {
        true => u64::from(l.runs[l.starts[at]].person),
        false => DONE,
    };
    let mut heads: Vec<u64> = lists.iter().map(|l| head(l, 0)).collect();
    loop {
        let person = heads.iter().copied().min().unwrap_or(DONE);
        if person == DONE {
            break;
        }
        starts.push(out.len());
        for ((list, next_head), at) in lists.iter().zip(heads.iter_mut()).zip(next.iter_mut()) {
            if *next_head != person {
                continue;
            }
            let span = &list.runs[list.starts[*at]..list.starts[*at + 1]];
            *at += 1;
            *next_head = head(list, *at);
            match list.offset {
                0 => out.extend_from_slice(span),
                off => out.extend(span.iter().map(|r| Run {
                    chunk: r.chunk + off,
                    ..*r
                })),
            }
        }
    }
    starts.push(out.len());
    (out, starts)
}

/// A consistent, immutable view of the store. Cheap to clone.
#[derive(Clone)]
pub struct Snapshot {
    /// Segment columns (sorted by person at write) followed by sorted copies of memory chunks.
    chunks: Vec<Arc<Columns>>,
    roots: Arc<Vec<u32>>,
    erased: Arc<HashMap<u32, i64>>,
    /// The person indexes the snapshot is made of: the segments' first, then one per sorted
    /// copy of memory rows, each with the number of chunks before its own in `chunks`. They
    /// are merged block by block as the scan threads take the blocks, never as a whole.
    parts: Arc<[(Arc<RunIndex>, u32)]>,
    /// The blocks scan threads take (see [`Blocks`]).
    blocks: Arc<Blocks>,
    /// The number of persons, counted when first asked (see [`Snapshot::person_count`]).
    persons: Arc<std::sync::OnceLock<usize>>,
}

/// At most this many persons (of one part) in a block.
const STRIDE: usize = 4096;
/// A block is closed before it would pass a 64th of the rows, within these bounds (a person
/// with more is a block alone).
const BLOCK_ROWS: std::ops::RangeInclusive<u64> = 4096..=1 << 17;

/// The persons split into blocks of consecutive persons, the unit a scan thread takes at a
/// time: at most [`STRIDE`] persons of each part and a bounded number of rows ([`BLOCK_ROWS`]).
/// Counting rows, not persons, keeps both cores busy on heavy-tailed data: the bots and big
/// accounts that hold most rows have the lowest codes, and a split by persons left one thread
/// with most of the rows. A block is a range of person codes; where it starts in each part's
/// index is found by bisection, so cutting the blocks reads a few entries of each index per
/// block, not every person.
struct Blocks {
    /// Per block bound (the number of blocks plus one), per part, the index of the part's first
    /// person at or past the bound: block `b`'s persons in part `k` are
    /// `bounds[b * parts + k]..bounds[(b + 1) * parts + k]`.
    bounds: Vec<usize>,
    parts: usize,
    /// The rows before each block, then all rows.
    rows_before: Vec<u64>,
    /// Per block, the batches a scan of the whole history hands out, built by the first such
    /// scan and reused by the next ones (see [`BlockBatches`]).
    whole: Vec<std::sync::OnceLock<BlockBatches>>,
}

impl Blocks {
    fn of(parts: &[(Arc<RunIndex>, u32)]) -> Blocks {
        let all: u64 = parts.iter().map(|(p, _)| p.rows() as u64).sum();
        let cap = (all / 64).clamp(*BLOCK_ROWS.start(), *BLOCK_ROWS.end());
        let mut at = vec![0usize; parts.len()];
        let mut bounds = at.clone();
        let mut rows_before = vec![0u64];
        // the rows and the most persons of one part with codes from the block's start up to
        // `end` (excluded); a block holds at most STRIDE persons of a part, so no part is
        // searched further (which keeps the search within a few pages of each index)
        let span = |at: &[usize], end: u64| {
            let (mut rows, mut persons) = (0u64, 0usize);
            for ((p, _), &k) in parts.iter().zip(at) {
                let e = p.first_from(end, k, STRIDE + 1);
                rows += p.rows_before[e] - p.rows_before[k];
                persons = persons.max(e - k);
            }
            (rows, persons)
        };
        loop {
            let first = parts
                .iter()
                .zip(&at)
                .filter(|((p, _), &k)| k < p.persons())
                .map(|((p, _), &k)| p.person_at(k))
                .min();
            let Some(first) = first else { break };
            let fits = |end: u64| {
                let (rows, persons) = span(&at, end);
                rows <= cap && persons <= STRIDE
            };
            // the block ends at the largest code that fits, and holds its first person even
            // when that one alone does not fit; no end past a part's next STRIDE persons fits
            let (mut lo, mut hi) = (u64::from(first) + 1, 1u64 << 32);
            for ((p, _), &k) in parts.iter().zip(&at) {
                if k + STRIDE < p.persons() {
                    hi = hi.min(u64::from(p.person_at(k + STRIDE)) + 1);
                }
            }
            if fits(hi) {
                lo = hi;
            }
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                match fits(mid) {
                    true => lo = mid,
                    false => hi = mid,
                }
            }
            // the block taken: each part moves past its persons in it
            let mut rows = 0u64;
            for ((p, _), k) in parts.iter().zip(at.iter_mut()) {
                let e = p.first_from(lo, *k, STRIDE + 1);
                rows += p.rows_before[e] - p.rows_before[*k];
                *k = e;
            }
            bounds.extend_from_slice(&at);
            rows_before.push(rows_before.last().expect("a first bound") + rows);
        }
        let whole = (0..rows_before.len() - 1)
            .map(|_| Default::default())
            .collect();
        Blocks {
            bounds,
            parts: parts.len(),
            rows_before,
            whole,
        }
    }

    fn len(&self) -> usize {
        self.whole.len()
    }

    /// The persons of block `b` in part `k`, as indexes into the part's persons.
    fn persons(&self, b: usize, k: usize) -> std::ops::Range<usize> {
        self.bounds[b * self.parts + k]..self.bounds[(b + 1) * self.parts + k]
    }

    /// The rows of block `b`.
    fn rows(&self, b: usize) -> u64 {
        self.rows_before[b + 1] - self.rows_before[b]
    }

    /// The blocks thread `t` of `threads` takes when each takes a fixed share: consecutive
    /// blocks holding about a `threads`-th of the rows.
    fn share(&self, t: usize, threads: usize) -> std::ops::Range<usize> {
        let total = self.rows_before.last().copied().unwrap_or(0);
        let first_at = |k: usize| {
            let rows = (u128::from(total) * k as u128 / threads as u128) as u64;
            self.rows_before[..self.len()].partition_point(|&r| r < rows)
        };
        let end = if t + 1 == threads {
            self.len()
        } else {
            first_at(t + 1)
        };
        first_at(t).min(end)..end
    }

    /// Heap bytes of the bounds (the batches kept for whole scans are not counted).
    fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&self.bounds[..]) + std::mem::size_of_val(&self.rows_before[..])
    }
}

/// The person index of one block: its persons' runs, and where each person starts in them
/// (plus where the last ends).
struct BlockIndex<'a> {
    runs: &'a [Run],
    starts: &'a [usize],
}

impl BlockIndex<'_> {
    fn persons(&self) -> usize {
        self.starts.len() - 1
    }

    fn runs_of(&self, p: usize) -> &[Run] {
        &self.runs[self.starts[p]..self.starts[p + 1]]
    }
}

/// The batches of a range of persons: persons read in place from one chunk go together, the
/// others are gathered one by one. For a scan of the whole history the snapshot keeps those of
/// each of its [`Blocks`]: finding each person's run and collecting the batches was
/// 8 % of a warm funnel's samples, and the snapshot does not change.
#[derive(Default)]
struct BlockBatches {
    persons: Vec<u32>,
    ranges: Vec<(u32, u32)>,
    pieces: Vec<Piece>,
    /// The runs of the gathered persons.
    runs: Vec<Run>,
}

/// One part of a [`BlockBatches`], in person order.
enum Piece {
    /// `persons[lo..hi]` and `ranges[lo..hi]`, rows of chunk `chunk`.
    Batch { chunk: u32, lo: u32, hi: u32 },
    /// A person whose rows are gathered from the runs `runs[lo..hi]`.
    Gather { lo: u32, hi: u32 },
}

impl Snapshot {
    /// Heap bytes of the snapshot's own blocks (its person indexes belong to the segments and
    /// the sorted copies of memory rows).
    pub(crate) fn index_bytes(&self) -> usize {
        self.blocks.heap_bytes()
    }

    /// The snapshot of a store whose segments are indexed by `base` and whose rows in memory
    /// are in the sorted copies indexed by `mem`.
    pub(crate) fn assemble(
        base: &Arc<RunIndex>,
        mem: &[Arc<RunIndex>],
        roots: Arc<Vec<u32>>,
        erased: Arc<HashMap<u32, i64>>,
    ) -> Snapshot {
        let mut chunks = base.chunks.clone();
        let mut parts = vec![(base.clone(), 0)];
        for m in mem {
            parts.push((m.clone(), chunks.len() as u32));
            chunks.extend(m.chunks.iter().cloned());
        }
        Snapshot {
            chunks,
            roots,
            erased,
            blocks: Arc::new(Blocks::of(&parts)),
            parts: parts.into(),
            persons: Default::default(),
        }
    }

    /// The person index of block `b`: a part's own when only that part has persons in it
    /// and its chunks come first, otherwise the parts' merged into `buffers`.
    fn block_index<'a>(&'a self, b: usize, buffers: &'a mut RunBuffers) -> BlockIndex<'a> {
        let lists: Vec<RunList<'_>> = self
            .parts
            .iter()
            .enumerate()
            .filter_map(|(k, (part, offset))| {
                let persons = self.blocks.persons(b, k);
                (!persons.is_empty()).then(|| RunList {
                    runs: &part.runs,
                    starts: &part.person_starts[persons.start..=persons.end],
                    offset: *offset,
                })
            })
            .collect();
        if let [only] = &lists[..] {
            if only.offset == 0 {
                return BlockIndex {
                    runs: only.runs,
                    starts: only.starts,
                };
            }
        }
        *buffers = merge_by_person(&lists, std::mem::take(buffers));
        BlockIndex {
            runs: &buffers.0,
            starts: &buffers.1,
        }
    }

    /// Persons with at least one row (erased persons may still count until compaction): the
    /// blocks' indexes merged, one at a time, when first asked.
    pub fn person_count(&self) -> usize {
        *self.persons.get_or_init(|| {
            let mut buffers = RunBuffers::default();
            (0..self.blocks.len())
                .map(|b| self.block_index(b, &mut buffers).persons())
                .sum()
        })
    }

    pub fn rows(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    fn hidden(&self, c: &Columns, i: usize) -> bool {
        !self.erased.is_empty()
            && self
                .erased
                .get(&c.did[i])
                .is_some_and(|t| c.received_at_of(i) <= *t)
    }

    /// Rows visible to queries (erased persons left out).
    pub fn visible_rows(&self) -> usize {
        if self.erased.is_empty() {
            return self.rows();
        }
        self.chunks
            .iter()
            .map(|c| (0..c.len()).filter(|i| !self.hidden(c, *i)).count())
            .sum()
    }

    /// The person a distinct id belongs to.
    pub fn person_of(&self, did: u32) -> u32 {
        self.roots.get(did as usize).copied().unwrap_or(did)
    }

    /// Runs `f` on the whole journey of the person with distinct-id code `did`: a binary
    /// search of each part's person index, not a scan.
    pub fn journey_of<R>(&self, did: u32, f: impl Fn(&PersonEvents<'_>) -> R) -> Option<R> {
        let person = self.person_of(did);
        // the person's runs in each part, merged as a block's are
        let lists: Vec<RunList<'_>> = self
            .parts
            .iter()
            .filter_map(|(part, offset)| {
                let k = part.first_from(u64::from(person), 0, usize::MAX);
                (k < part.persons() && part.person_at(k) == person).then(|| RunList {
                    runs: &part.runs,
                    starts: &part.person_starts[k..=k + 1],
                    offset: *offset,
                })
            })
            .collect();
        let (runs, _) = merge_by_person(&lists, Default::default());
        if runs.is_empty() {
            return None;
        }
        let mut out = None;
        let mut gathered = Gathered::default();
        self.visit(&runs, &ScanOptions::default(), &mut gathered, |j| {
            out = Some(f(j))
        });
        out
    }

    /// Calls `f(acc, person)` for every person, in parallel over `opts.threads` threads, each with
    /// its own accumulator from `init`; returns the accumulators.
    pub fn scan_persons<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &PersonEvents<'_>) + Sync,
    ) -> Vec<A> {
        self.split_persons(opts, init, |acc, block, scratch| {
            let index = self.block_index(block, &mut scratch.index);
            for p in 0..index.persons() {
                self.visit(index.runs_of(p), opts, &mut scratch.gathered, |ev| {
                    f(acc, ev)
                });
            }
        })
    }

    /// [`Snapshot::scan_persons`] by batches: the persons read in place from one chunk go
    /// together, and so do persons whose rows are gathered.
    pub fn scan_batches<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &JourneyBatch<'_>) + Sync,
    ) -> Vec<A> {
        self.scan_batches_or_pieces(opts, init, f, None::<&fn(&mut A, &PieceBatch<'_>)>)
    }

    /// [`JourneySource::scan_pieces`]: a person whose rows lie in pieces that follow one
    /// another in time (live traffic leaves them so: each flush holds a later stretch of it)
    /// goes to `g` without being copied; other gathered persons are merged and go to `f`.
    pub fn scan_pieces<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &JourneyBatch<'_>) + Sync,
        g: impl Fn(&mut A, &PieceBatch<'_>) + Sync,
    ) -> Vec<A> {
        self.scan_batches_or_pieces(opts, init, f, Some(&g))
    }

    fn scan_batches_or_pieces<A: Send, G: Fn(&mut A, &PieceBatch<'_>) + Sync>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &JourneyBatch<'_>) + Sync,
        g: Option<&G>,
    ) -> Vec<A> {
        let whole = opts.from_ms.is_none() && opts.to_ms.is_none() && self.erased.is_empty();
        self.split_persons(opts, init, |acc, block, scratch| {
            let index = &mut scratch.index;
            let built;
            let b = if whole {
                self.blocks.whole[block]
                    .get_or_init(|| self.batches(&self.block_index(block, index), opts))
            } else {
                built = self.batches(&self.block_index(block, index), opts);
                &built
            };
            for piece in &b.pieces {
                match *piece {
                    Piece::Batch { chunk, lo, hi } => {
                        let c = &self.chunks[chunk as usize];
                        let (lo, hi) = (lo as usize, hi as usize);
                        f(
                            acc,
                            &JourneyBatch {
                                rows: journey_of(0, c, 0, c.len(), opts.columns),
                                persons: &b.persons[lo..hi],
                                ranges: &b.ranges[lo..hi],
                                distinct_times: c.distinct_times(),
                            },
                        )
                    }
                    Piece::Gather { lo, hi } => {
                        let runs = &b.runs[lo as usize..hi as usize];
                        let Some(person) = self.pieces_of(runs, opts, &mut scratch.gathered.input)
                        else {
                            continue;
                        };
                        if let Some(g) = g {
                            let input = &mut scratch.gathered.input;
                            if !in_time_order(&self.chunks, input) {
                                // overlapping pieces (events that arrived late) are read in
                                // the order of their merge, in more pieces, not copied
                                let merged = &mut scratch.merged;
                                in_merge_order(&self.chunks, input, &mut scratch.heads, merged);
                                std::mem::swap(input, merged);
                            }
                            scratch.pieces.add(person, &scratch.gathered.input);
                            if scratch.pieces.persons.len() >= PIECE_BATCH_PERSONS {
                                scratch.pieces.flush(acc, g, &self.chunks, opts);
                            }
                            continue;
                        }
                        // gathered persons go together too, up to a batch's worth of rows
                        let g = &mut scratch.gathered;
                        let range = g.append(&self.chunks, opts.columns);
                        if range.1 > range.0 {
                            scratch.persons.push(person);
                            scratch.ranges.push(range);
                        }
                        if g.rows() >= GATHERED_BATCH_ROWS {
                            scratch.flush(acc, &f);
                        }
                    }
                }
            }
            scratch.flush(acc, &f);
            if let Some(g) = g {
                scratch.pieces.flush(acc, g, &self.chunks, opts);
            }
        })
    }

    /// The batches of the persons of `index` (see [`BlockBatches`]), their rows within the
    /// scan's time range; persons with no row in it are left out of the batches.
    fn batches(&self, index: &BlockIndex<'_>, opts: &ScanOptions) -> BlockBatches {
        let mut b = BlockBatches::default();
        let mut open: Option<(u32, u32)> = None; // chunk and first index of the open batch
        let close = |b: &mut BlockBatches, open: &mut Option<(u32, u32)>| {
            if let Some((chunk, lo)) = open.take() {
                let hi = b.persons.len() as u32;
                if hi > lo {
                    b.pieces.push(Piece::Batch { chunk, lo, hi });
                }
            }
        };
        for p in 0..index.persons() {
            let runs = index.runs_of(p);
            let single = (runs.len() == 1 && self.erased.is_empty()).then(|| runs[0]);
            if open.is_some_and(|(chunk, _)| single.is_none_or(|r| r.chunk != chunk)) {
                close(&mut b, &mut open);
            }
            match single {
                Some(r) => {
                    open.get_or_insert((r.chunk, b.persons.len() as u32));
                    let ts = &self.chunks[r.chunk as usize].ts[r.start as usize..r.end as usize];
                    let rows = itinera_engine::journey::rows_within(ts, opts.from_ms, opts.to_ms);
                    if !rows.is_empty() {
                        b.persons.push(r.person);
                        b.ranges
                            .push((r.start + rows.start as u32, r.start + rows.end as u32));
                    }
                }
                None => {
                    let lo = b.runs.len() as u32;
                    b.runs.extend_from_slice(runs);
                    let hi = b.runs.len() as u32;
                    b.pieces.push(Piece::Gather { lo, hi });
                }
            }
        }
        close(&mut b, &mut open);
        b
    }

    /// Runs `work(acc, block, scratch)` over the [`Blocks`] of persons, in parallel over
    /// `opts.threads` threads, reporting progress and stopping when the query is cancelled.
    /// Each thread takes a fixed share of the rows (consecutive blocks, so that the persons a
    /// thread sees and the order of its accumulator do not depend on timing), or, when the
    /// analysis is [`ScanOptions::order_free`], the next block not taken yet.
    fn split_persons<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        work: impl Fn(&mut A, usize, &mut Scratch) + Sync,
    ) -> Vec<A> {
        let blocks = &*self.blocks;
        let threads = match opts.threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        }
        .clamp(1, blocks.len().max(1));
        if let Some(c) = &opts.control {
            c.add_total(blocks.rows_before.last().copied().unwrap_or(0));
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (init, work, next) = (&init, &work, &next);
                    s.spawn(move || {
                        // the scan's threads work for the query: its memory budget counts them
                        let _charged =
                            itinera_engine::metered::charge_to_opt(opts.control.as_ref());
                        let mut acc = init();
                        let mut scratch = Scratch::default();
                        let share = match opts.order_free {
                            true => 0..blocks.len(),
                            false => blocks.share(t, threads),
                        };
                        let mut at = share.start;
                        let control = opts.control.as_deref();
                        loop {
                            if opts.order_free {
                                at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            if at >= share.end || control.is_some_and(|c| c.is_cancelled()) {
                                break;
                            }
                            work(&mut acc, at, &mut scratch);
                            if let Some(c) = control {
                                c.add_done(blocks.rows(at));
                            }
                            at += 1;
                        }
                        acc
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("scan thread panicked"))
                .collect()
        })
    }

    /// Calls `f` on the journey of the person whose runs are `runs`, gathered in `g` when they
    /// are several.
    fn visit(
        &self,
        runs: &[Run],
        opts: &ScanOptions,
        g: &mut Gathered,
        mut f: impl FnMut(&PersonEvents<'_>),
    ) {
        let person = runs[0].person;
        let needs_filter = !self.erased.is_empty();
        if runs.len() == 1 && !needs_filter {
            let r = runs[0];
            let c = &self.chunks[r.chunk as usize];
            if let Some(j) = journey_of(person, c, r.start as usize, r.end as usize, opts.columns)
                .within(opts.from_ms, opts.to_ms)
            {
                f(&j);
            }
            return;
        }
        // several runs (rows in several segments, merged identities) or erased rows: the
        // visible rows in range of each run, gathered in time order
        g.clear();
        if self.pieces_of(runs, opts, &mut g.input).is_some() {
            g.append(&self.chunks, opts.columns);
            f(&g.journey(person));
        }
    }

    /// The pieces of the rows of a person (its runs `runs`) that a scan with `opts` reads:
    /// each run's rows within the time range, without erased rows. Returns the person, or None
    /// when nothing is left.
    fn pieces_of(
        &self,
        runs: &[Run],
        opts: &ScanOptions,
        input: &mut Vec<RunPiece>,
    ) -> Option<u32> {
        input.clear();
        for r in runs {
            let c = &self.chunks[r.chunk as usize];
            let (start, end) = (r.start as usize, r.end as usize);
            let rows =
                itinera_engine::journey::rows_within(&c.ts[start..end], opts.from_ms, opts.to_ms);
            let (lo, hi) = (start + rows.start, start + rows.end);
            if self.erased.is_empty() {
                if hi > lo {
                    input.push(RunPiece {
                        chunk: r.chunk,
                        start: lo as u32,
                        end: hi as u32,
                    });
                }
                continue;
            }
            let mut i = lo;
            while i < hi {
                while i < hi && self.hidden(c, i) {
                    i += 1;
                }
                let from = i;
                while i < hi && !self.hidden(c, i) {
                    i += 1;
                }
                if i > from {
                    input.push(RunPiece {
                        chunk: r.chunk,
                        start: from as u32,
                        end: i as u32,
                    });
                }
            }
        }
        (!input.is_empty()).then_some(runs[0].person)
    }
}

/// Rows gathered before a batch of gathered persons goes to the analysis.
const GATHERED_BATCH_ROWS: usize = 1 << 14;

/// A scan thread's buffers for gathered persons, reused from batch to batch.
#[derive(Default)]
struct Scratch {
    /// The block's person index, when its parts' are merged.
    index: RunBuffers,
    gathered: Gathered,
    persons: Vec<u32>,
    ranges: Vec<(u32, u32)>,
    pieces: Pieces,
    /// Pieces cut into the order of their merge, and the merge's heads.
    merged: Vec<RunPiece>,
    heads: Vec<(u32, u32, u32)>,
}

/// Persons handed over in pieces before a [`PieceBatch`] goes to the analysis.
const PIECE_BATCH_PERSONS: usize = 1024;

/// True when the pieces (each ordered by time) follow one another in time, each piece's last
/// time before the next one's first, once sorted by their first times: then the journey is the
/// pieces one after the other, and no equal times meet at their edges.
fn in_time_order(chunks: &[Arc<Columns>], pieces: &mut [RunPiece]) -> bool {
    let first = |p: &RunPiece| chunks[p.chunk as usize].ts[p.start as usize];
    let last = |p: &RunPiece| chunks[p.chunk as usize].ts[p.end as usize - 1];
    let ordered = |pieces: &[RunPiece]| pieces.windows(2).all(|w| last(&w[0]) < first(&w[1]));
    ordered(pieces) || {
        pieces.sort_unstable_by_key(first);
        ordered(pieces)
    }
}

/// A scan thread's persons in pieces, waiting to go to the analysis as a [`PieceBatch`].
#[derive(Default)]
struct Pieces {
    persons: Vec<u32>,
    spans: Vec<(u32, u32)>,
    pieces: Vec<(u32, u32, u32)>,
}

impl Pieces {
    fn add(&mut self, person: u32, pieces: &[RunPiece]) {
        let from = self.pieces.len() as u32;
        self.pieces
            .extend(pieces.iter().map(|p| (p.chunk, p.start, p.end)));
        self.persons.push(person);
        self.spans.push((from, self.pieces.len() as u32));
    }

    /// Hands the persons to `g` as one batch over `chunks` and empties the buffers.
    fn flush<A>(
        &mut self,
        acc: &mut A,
        g: &impl Fn(&mut A, &PieceBatch<'_>),
        chunks: &[Arc<Columns>],
        opts: &ScanOptions,
    ) {
        if self.persons.is_empty() {
            return;
        }
        let rows: Vec<Journey<'_>> = chunks
            .iter()
            .map(|c| journey_of(0, c, 0, c.len(), opts.columns))
            .collect();
        // known once per chunk (and already asked by the batches of the same chunks)
        let distinct: Vec<bool> = chunks.iter().map(|c| c.distinct_times()).collect();
        g(
            acc,
            &PieceBatch {
                chunks: &rows,
                persons: &self.persons,
                spans: &self.spans,
                pieces: &self.pieces,
                distinct: &distinct,
            },
        );
        self.persons.clear();
        self.spans.clear();
        self.pieces.clear();
    }
}

impl Scratch {
    /// Hands the gathered persons to `f` as one batch and empties the buffers.
    fn flush<A>(&mut self, acc: &mut A, f: &impl Fn(&mut A, &JourneyBatch<'_>)) {
        if !self.persons.is_empty() {
            let rows = self.gathered.journey(0);
            f(
                acc,
                &JourneyBatch {
                    distinct_times: itinera_engine::journey::distinct_times(rows.ts),
                    rows,
                    persons: &self.persons,
                    ranges: &self.ranges,
                },
            );
        }
        self.gathered.clear();
        self.persons.clear();
        self.ranges.clear();
    }
}

/// A snapshot together with the store's dictionaries: what the journey engine queries.
pub struct StoreView {
    pub snapshot: Snapshot,
    store: crate::Store,
}

impl StoreView {
    pub(crate) fn new(snapshot: Snapshot, store: crate::Store) -> StoreView {
        StoreView { snapshot, store }
    }
}

struct DictsVocabulary<'a>(&'a crate::Dicts);

impl crate::Store {
    /// The store's names and their codes, without taking a snapshot: checks of names read no
    /// rows, and on a store being written to each snapshot costs a sort of the newest rows.
    pub fn with_vocabulary<R>(&self, f: impl FnOnce(&dyn Vocabulary) -> R) -> R {
        f(&DictsVocabulary(&self.dicts()))
    }
}

impl DictsVocabulary<'_> {
    fn dict(&self, field: Field) -> &crate::dict::Dict {
        match field {
            Field::Event => self.0.events(),
            Field::Channel => self.0.channels(),
            Field::Touchpoint => self.0.touchpoints(),
            Field::Account => self.0.groups(),
            Field::DistinctId => self.0.ids(),
            Field::PropKey => self.0.prop_keys(),
            Field::PropValue => self.0.prop_values(),
        }
    }
}

impl Vocabulary for DictsVocabulary<'_> {
    fn names(&self, field: Field) -> &[String] {
        self.dict(field).strings_from(0)
    }

    fn code(&self, field: Field, name: &str) -> Option<u32> {
        self.dict(field).get(name)
    }
}

impl JourneySource for StoreView {
    fn scan<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &Journey<'_>) + Sync,
    ) -> Vec<A> {
        self.snapshot.scan_persons(opts, init, f)
    }

    fn scan_batches<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &JourneyBatch<'_>) + Sync,
    ) -> Vec<A> {
        self.snapshot.scan_batches(opts, init, f)
    }

    fn scan_pieces<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &JourneyBatch<'_>) + Sync,
        g: impl Fn(&mut A, &PieceBatch<'_>) + Sync,
    ) -> Vec<A> {
        self.snapshot.scan_pieces(opts, init, f, g)
    }

    fn with_vocabulary<R>(&self, f: impl FnOnce(&dyn Vocabulary) -> R) -> R {
        self.store.with_vocabulary(f)
    }

    fn journey_of<R: Send>(&self, did: u32, f: impl Fn(&Journey<'_>) -> R + Sync) -> Option<R> {
        self.snapshot.journey_of(did, f)
    }
}

//! Snapshots built incrementally, so that a store being written to answers queries almost as
//! fast as a compacted one.
//!
//! A snapshot needs every person's rows in time order. The segments' person index changes only
//! when a flush or compaction commits (or identities merge, or a person is erased): it is kept
//! between snapshots. The rows in memory arrive in group commits of a few hundred; they are
//! kept as sorted copies: a large one, and tails that take the rows committed since, each at
//! least twice the size of the next. A new snapshot sorts only the rows committed since the last
//! one into a new tail, then merges the newest two tails while the older is less than twice the
//! newer (as a binary counter carries), and the oldest tail into the large copy when it reaches
//! a quarter of its size: a snapshot copies about as many rows as arrived since the last one,
//! not the whole tail, and there are a handful of tails however many snapshots are taken.
//!
//! The snapshot keeps the parts' person indexes as they are (the segments' and one per sorted
//! copy) and only cuts them into blocks of persons by bisection; each scan thread merges the
//! indexes of the blocks it takes (see `scan.rs`).

use super::*;
use crate::scan::RunIndex;
use std::time::{Duration, Instant};

/// What building snapshots has cost since it was last asked ([`Store::take_snapshot_builds`]):
/// under load every query builds one before its scan starts, on one thread.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SnapshotBuilds {
    /// Snapshots built (one reused while nothing changed is not counted).
    pub built: u64,
    /// Sorting the rows that arrived since the last one and merging sorted copies.
    pub copies: Duration,
    pub copies_max: Duration,
    /// Cutting the snapshot's blocks from the parts' person indexes (the scan threads merge
    /// the indexes, block by block).
    pub index: Duration,
    pub index_max: Duration,
}

impl SnapshotBuilds {
    fn add(&mut self, copies: Duration, index: Duration) {
        self.built += 1;
        self.copies += copies;
        self.copies_max = self.copies_max.max(copies);
        self.index += index;
        self.index_max = self.index_max.max(index);
    }
}

/// What the store keeps from one snapshot to the next.
#[derive(Default)]
pub(crate) struct SnapshotCache {
    /// The cost of the snapshots built since it was last asked.
    builds: SnapshotBuilds,
    /// The last snapshot and the addresses of what it was built from.
    last: Option<(Vec<usize>, Snapshot)>,
    /// The segments' index, and the addresses of the segments, roots and erasures it is for
    /// (the roots and erasures held, so that their addresses cannot be reused meanwhile).
    base: Option<(Vec<usize>, BaseHeld, Arc<RunIndex>)>,
    /// The rows of the chunks being flushed, and of the chunks still taking rows: apart, so
    /// that a flush's commit drops the first without sorting the second again.
    frozen: Option<MemoryRuns>,
    mem: Option<MemoryRuns>,
}

/// What a base key names, kept alive with it.
type BaseHeld = (Arc<Vec<u32>>, Arc<std::collections::HashMap<u32, i64>>);

/// The rows in memory as sorted copies.
struct MemoryRuns {
    /// The roots the copies were sorted by.
    roots: Arc<Vec<u32>>,
    /// The memory chunks the copies hold, in arrival order (kept alive: their addresses are
    /// compared with the store's).
    covered: Vec<SharedChunk>,
    large: Option<Copy>,
    /// Oldest first, each at least twice the size of the next.
    tails: Vec<Copy>,
}

/// A sorted copy of memory rows, and where each of its rows is in the covered chunks (its
/// columns other than the hot ones are gathered from there when first read).
struct Copy {
    index: Arc<RunIndex>,
    origin: Arc<Vec<(u32, u32)>>,
}

impl MemoryRuns {
    /// True when these copies hold a prefix of `chunks` sorted by `roots`.
    fn fits(&self, chunks: &[SharedChunk], roots: &Arc<Vec<u32>>) -> bool {
        Arc::ptr_eq(&self.roots, roots)
            && self.covered.len() <= chunks.len()
            && self
                .covered
                .iter()
                .zip(chunks)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// The copies brought up to `chunks` (the store's memory chunks, in arrival order), or
    /// built anew when the roots changed or chunks left memory (a flush committed).
    fn update(
        this: Option<MemoryRuns>,
        chunks: &[SharedChunk],
        roots: &Arc<Vec<u32>>,
    ) -> MemoryRuns {
        let Some(mut m) = this.filter(|m| m.fits(chunks, roots)) else {
            let all: Arc<[SharedChunk]> = chunks.into();
            return MemoryRuns {
                roots: roots.clone(),
                covered: chunks.to_vec(),
                large: sorted(&all, 0, roots),
                tails: Vec::new(),
            };
        };
        let first_new = m.covered.len();
        if first_new == chunks.len() {
            return m;
        }
        m.covered.extend(chunks[first_new..].iter().cloned());
        let all: Arc<[SharedChunk]> = m.covered.as_slice().into();
        let Some(new) = sorted(&all, first_new, roots) else {
            return m;
        };
        let Some(large) = m.large.take() else {
            m.large = Some(new);
            return m;
        };
        m.tails.push(new);
        // carry: the newest two merge while the older is not twice the newer
        while let [.., older, newer] = &m.tails[..] {
            if older.index.rows() >= 2 * newer.index.rows() {
                break;
            }
            let merged = merge(older, newer, &all, roots);
            m.tails.truncate(m.tails.len() - 2);
            m.tails.push(merged);
        }
        m.large = match m.tails.first() {
            Some(oldest) if oldest.index.rows() * 4 >= large.index.rows() => {
                let oldest = m.tails.remove(0);
                Some(merge(&large, &oldest, &all, roots))
            }
            _ => Some(large),
        };
        m
    }

    fn parts(&self) -> Vec<Arc<RunIndex>> {
        self.large
            .iter()
            .chain(&self.tails)
            .map(|c| c.index.clone())
            .collect()
    }

    /// Heap bytes of the copies and their indexes.
    fn heap_bytes(&self) -> usize {
        self.parts()
            .iter()
            .map(|p| p.chunk().heap_bytes() + p.index_bytes())
            .sum()
    }
}

impl SnapshotCache {
    /// Heap bytes held for queries beyond the store's own rows: the sorted copies of the rows
    /// in memory and the person indexes.
    pub(crate) fn heap_bytes(&self) -> usize {
        let copies: usize = self
            .frozen
            .iter()
            .chain(&self.mem)
            .map(MemoryRuns::heap_bytes)
            .sum();
        let indexes = self.base.as_ref().map_or(0, |(_, _, b)| b.index_bytes())
            + self.last.as_ref().map_or(0, |(_, snap)| snap.index_bytes());
        copies + indexes
    }

    /// The sorted copies of the rows still taking appends.
    #[cfg(test)]
    pub(crate) fn memory_copies(&self) -> Vec<Arc<RunIndex>> {
        self.mem.as_ref().map_or(Vec::new(), |m| m.parts())
    }
}

fn copy(
    hot: &[&Columns],
    order: &[(u32, u32)],
    all: &Arc<[SharedChunk]>,
    origin: Vec<(u32, u32)>,
    roots: &[u32],
) -> Copy {
    let origin = Arc::new(origin);
    let cols = Columns::take_hot(hot, order, all, &origin);
    Copy {
        index: Arc::new(RunIndex::build(vec![Arc::new(cols)], roots)),
        origin,
    }
}

/// The person a row's id belongs to.
fn person(roots: &[u32], d: u32) -> u32 {
    roots.get(d as usize).copied().unwrap_or(d)
}

/// The rows of the chunks of `all` from `first` on, sorted by (person, time, receive time,
/// arrival); None when there are none.
fn sorted(all: &Arc<[SharedChunk]>, first: usize, roots: &[u32]) -> Option<Copy> {
    let mut idx: Vec<(u32, i64, i64, u32, u32)> = Vec::new();
    for (k, m) in all.iter().enumerate().skip(first) {
        let c = &m.cols;
        idx.extend((0..c.len()).map(|i| {
            (
                person(roots, c.did[i]),
                c.ts[i],
                c.received_at[i],
                k as u32,
                i as u32,
            )
        }));
    }
    if idx.is_empty() {
        return None;
    }
    idx.sort_unstable();
    let order: Vec<(u32, u32)> = idx.into_iter().map(|(_, _, _, k, i)| (k, i)).collect();
    let sources: Vec<&Columns> = all.iter().map(|c| &c.cols).collect();
    Some(copy(&sources, &order, all, order.clone(), roots))
}

/// Two copies sorted by (person, time, receive time, arrival) merged into one; on equal keys
/// the rows of `older` (which arrived first) come first.
fn merge(older: &Copy, newer: &Copy, all: &Arc<[SharedChunk]>, roots: &[u32]) -> Copy {
    let (o, n) = (older.index.chunk(), newer.index.chunk());
    let key = |c: &Columns, i: usize| (person(roots, c.did[i]), c.ts[i], c.received_at[i]);
    let mut order: Vec<(u32, u32)> = Vec::with_capacity(o.len() + n.len());
    let (mut i, mut j) = (0, 0);
    while i < o.len() && j < n.len() {
        if key(n, j) < key(o, i) {
            order.push((1, j as u32));
            j += 1;
        } else {
            order.push((0, i as u32));
            i += 1;
        }
    }
    order.extend((i..o.len()).map(|k| (0, k as u32)));
    order.extend((j..n.len()).map(|k| (1, k as u32)));
    let origins = [&older.origin, &newer.origin];
    let origin = order
        .iter()
        .map(|&(s, i)| origins[s as usize][i as usize])
        .collect();
    copy(&[o, n], &order, all, origin, roots)
}

impl Inner {
    /// Builds the next snapshot's segment index now, on a background flush's or compaction's
    /// thread, so that the first query after the commit does not wait for it. Only for a store
    /// that is being queried (one that never was keeps no index).
    pub(super) fn warm_snapshot(self: &Arc<Self>) {
        if self.snapshot_cache.lock().last.is_some() {
            Store {
                inner: self.clone(),
            }
            .snapshot();
        }
    }
}

impl Store {
    /// What building snapshots has cost since the last call (the serving bench reports it).
    pub fn take_snapshot_builds(&self) -> SnapshotBuilds {
        std::mem::take(&mut self.inner.snapshot_cache.lock().builds)
    }

    /// A consistent view for queries, built from what changed since the last one (see the
    /// module's documentation). Reused as a whole while nothing changed.
    pub fn snapshot(&self) -> Snapshot {
        // its segments' persons and times are not loaded: a query would see no rows
        assert!(
            !self.inner.config.compaction_only,
            "a store opened to compact answers no queries"
        );
        // shared by every query until the next change: no one query's memory
        let _shared = itinera_engine::metered::uncharged();
        let mut st = self.inner.state.write();
        let version = st.identity_version;
        let roots = match &st.roots_cache {
            // ids added since have no link (a link changes the version): each is its own
            // person, which a lookup past the end of the roots gives; a new visitor must not
            // make the next query rebuild the segments' index
            Some((v, r)) if *v == version => r.clone(),
            _ => {
                let r = Arc::new(st.identity.roots());
                st.roots_cache = Some((version, r.clone()));
                r
            }
        };
        let segments: Vec<Arc<Columns>> = st.segments.iter().map(|s| s.cols.clone()).collect();
        let frozen: Vec<SharedChunk> = st.frozen.clone();
        let mem: Vec<SharedChunk> = st.mem.clone();
        let erased = st.erased.clone();
        drop(st);
        // chunks are immutable once shared: their addresses name the data
        let base_key: Vec<usize> = segments
            .iter()
            .map(|c| Arc::as_ptr(c) as usize)
            .chain([
                Arc::as_ptr(&roots) as usize,
                Arc::as_ptr(&erased) as usize,
                erased.len(),
            ])
            .collect();
        let mut key = base_key.clone();
        key.extend(frozen.iter().chain(&mem).map(|m| Arc::as_ptr(m) as usize));
        let mut cache = self.inner.snapshot_cache.lock();
        if let Some((k, snap)) = &cache.last {
            if *k == key {
                return snap.clone();
            }
        }
        let base = match &cache.base {
            Some((k, _, b)) if *k == base_key => b.clone(),
            _ => {
                // every scan reads the events: decoded beside the index, on the core its
                // build leaves idle (nothing to do where the server's background decode has)
                let b = std::thread::scope(|s| {
                    s.spawn(|| segments.iter().for_each(|c| _ = c.event.len()));
                    Arc::new(RunIndex::build(segments.clone(), &roots))
                });
                cache.base = Some((base_key, (roots.clone(), erased.clone()), b.clone()));
                b
            }
        };
        // when chunks were frozen for a flush since the last snapshot, the copies of the
        // chunks taking rows then are the copies of the frozen ones now
        let (old_frozen, old_mem) = (cache.frozen.take(), cache.mem.take());
        let (old_frozen, old_mem) = match (old_frozen, old_mem) {
            (f, Some(m))
                if !frozen.is_empty()
                    && f.as_ref().is_none_or(|f| f.covered.is_empty())
                    && m.fits(&frozen, &roots) =>
            {
                (Some(m), None)
            }
            (f, m) => (f, m),
        };
        let started = Instant::now();
        let frozen_runs = MemoryRuns::update(old_frozen, &frozen, &roots);
        let runs = MemoryRuns::update(old_mem, &mem, &roots);
        let parts: Vec<Arc<RunIndex>> = frozen_runs
            .parts()
            .into_iter()
            .chain(runs.parts())
            .collect();
        let copied = Instant::now();
        let snap = Snapshot::assemble(&base, &parts, roots, erased);
        cache.builds.add(copied - started, copied.elapsed());
        cache.frozen = Some(frozen_runs);
        cache.mem = Some(runs);
        cache.last = Some((key, snap.clone()));
        snap
    }
}

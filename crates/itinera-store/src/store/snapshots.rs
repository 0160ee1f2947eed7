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

use super::*;
use crate::scan::RunIndex;

/// What the store keeps from one snapshot to the next.
#[derive(Default)]
pub(crate) struct SnapshotCache {
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
    large: Option<Arc<RunIndex>>,
    /// Oldest first, each at least twice the size of the next.
    tails: Vec<Arc<RunIndex>>,
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
            return MemoryRuns {
                roots: roots.clone(),
                covered: chunks.to_vec(),
                large: sorted(chunks, roots).map(|c| index(c, roots)),
                tails: Vec::new(),
            };
        };
        let Some(new) = sorted(&chunks[m.covered.len()..], roots) else {
            return m;
        };
        m.covered.extend(chunks[m.covered.len()..].iter().cloned());
        let Some(large) = m.large.take() else {
            m.large = Some(index(new, roots));
            return m;
        };
        m.tails.push(index(new, roots));
        // carry: the newest two merge while the older is not twice the newer
        while let [.., older, newer] = &m.tails[..] {
            if older.rows() >= 2 * newer.rows() {
                break;
            }
            let merged = index(merge(older.chunk(), newer.chunk(), roots), roots);
            m.tails.truncate(m.tails.len() - 2);
            m.tails.push(merged);
        }
        m.large = match m.tails.first() {
            Some(oldest) if oldest.rows() * 4 >= large.rows() => {
                let oldest = m.tails.remove(0);
                Some(index(merge(large.chunk(), oldest.chunk(), roots), roots))
            }
            _ => Some(large),
        };
        m
    }

    fn parts(&self) -> Vec<&RunIndex> {
        self.large.iter().chain(&self.tails).map(|r| &**r).collect()
    }
}

fn index(c: Columns, roots: &[u32]) -> Arc<RunIndex> {
    Arc::new(RunIndex::build(vec![Arc::new(c)], roots))
}

/// The person a row's id belongs to.
fn person(roots: &[u32], d: u32) -> u32 {
    roots.get(d as usize).copied().unwrap_or(d)
}

/// The rows of `chunks` sorted by (person, time, receive time, arrival); None when there are
/// none.
fn sorted(chunks: &[SharedChunk], roots: &[u32]) -> Option<Columns> {
    let mut idx: Vec<(u32, i64, i64, u32, u32)> = Vec::new();
    for (k, m) in chunks.iter().enumerate() {
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
    let sources: Vec<&Columns> = chunks.iter().map(|c| &c.cols).collect();
    Some(Columns::take(&sources, &order))
}

/// Two copies sorted by (person, time, receive time, arrival) merged into one; on equal keys
/// the rows of `older` (which arrived first) come first.
fn merge(older: &Columns, newer: &Columns, roots: &[u32]) -> Columns {
    let key = |c: &Columns, i: usize| (person(roots, c.did[i]), c.ts[i], c.received_at[i]);
    let mut order: Vec<(u32, u32)> = Vec::with_capacity(older.len() + newer.len());
    let (mut i, mut j) = (0, 0);
    while i < older.len() && j < newer.len() {
        if key(newer, j) < key(older, i) {
            order.push((1, j as u32));
            j += 1;
        } else {
            order.push((0, i as u32));
            i += 1;
        }
    }
    order.extend((i..older.len()).map(|k| (0, k as u32)));
    order.extend((j..newer.len()).map(|k| (1, k as u32)));
    Columns::take(&[older, newer], &order)
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
    /// A consistent view for queries, built from what changed since the last one (see the
    /// module's documentation). Reused as a whole while nothing changed.
    pub fn snapshot(&self) -> Snapshot {
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
                let b = Arc::new(RunIndex::build(segments, &roots));
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
        let frozen_runs = MemoryRuns::update(old_frozen, &frozen, &roots);
        let runs = MemoryRuns::update(old_mem, &mem, &roots);
        let parts: Vec<&RunIndex> = frozen_runs
            .parts()
            .into_iter()
            .chain(runs.parts())
            .collect();
        let snap = Snapshot::assemble(&base, &parts, roots, erased);
        cache.frozen = Some(frozen_runs);
        cache.mem = Some(runs);
        cache.last = Some((key, snap.clone()));
        snap
    }
}

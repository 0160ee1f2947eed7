//! The duplicate check of writes: the message ids received within the dedup window.
//!
//! Only the ids' 8-byte hashes are kept. Most of them sit in one sorted array, found through a
//! directory of their top bits (8 bytes an id, and a quarter byte for the directory); the ids
//! entered since the array was last built are in a hash set, which the next flush folds into
//! a new array once it holds an eighth of it (the writer only looks both up). A hash set of all of them took 10–21 bytes an id (a bucket of 9 bytes,
//! at most 7/8 full, doubling): the largest part of a serving store's memory after its columns.
//!
//! Without the times, ids are not dropped one by one as they leave the window: the check keeps
//! the oldest receive time it holds, and is built again from the stored rows once that time is
//! an eighth of the window behind it. Until then a message whose id was seen a little longer
//! ago than the window is still taken as a duplicate, which is what the window is for.

use rustc_hash::FxHashSet;
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct RecentIds {
    /// Hashes entered before the last fold.
    sorted: Arc<SortedIds>,
    /// Hashes being folded into a new sorted array, off the write path (see
    /// [`RecentIds::fold_job`]); still checked until the new array replaces `sorted`.
    folding: Option<Arc<FxHashSet<u64>>>,
    /// Hashes entered since.
    recent: FxHashSet<u64>,
    /// The oldest receive time entered, if any.
    oldest: Option<i64>,
    /// The least size of the hash set that is folded ([`RecentIds::MIN_FOLD`]; less in tests).
    min_fold: usize,
}

impl Default for RecentIds {
    fn default() -> Self {
        RecentIds {
            sorted: Default::default(),
            folding: None,
            recent: FxHashSet::default(),
            oldest: None,
            min_fold: Self::MIN_FOLD,
        }
    }
}

/// Hashes in ascending order without repeats, found through a directory of their top bits.
#[derive(Debug, Default)]
pub(crate) struct SortedIds {
    hashes: Vec<u64>,
    /// `dir[b]`: the first index of `hashes` whose top `bits` bits are `b` or more
    /// (`2^bits + 1` entries, or none while `hashes` is empty).
    dir: Vec<u32>,
    bits: u32,
}

impl SortedIds {
    /// Hashes per directory entry, about: a search within one touches a cache line or two.
    const PER_BUCKET: usize = 16;

    fn new(hashes: Vec<u64>) -> SortedIds {
        debug_assert!(hashes.windows(2).all(|w| w[0] < w[1]));
        let buckets = (hashes.len() / Self::PER_BUCKET).max(1).next_power_of_two();
        let mut ids = SortedIds {
            hashes,
            dir: Vec::new(),
            bits: buckets.trailing_zeros(),
        };
        if !ids.hashes.is_empty() {
            ids.dir.reserve_exact(buckets + 1);
            let mut at = 0usize;
            for b in 0..buckets {
                while at < ids.hashes.len() && ids.bucket(ids.hashes[at]) < b {
                    at += 1;
                }
                ids.dir.push(at as u32);
            }
            ids.dir.push(ids.hashes.len() as u32);
        }
        ids
    }

    fn bucket(&self, hash: u64) -> usize {
        match self.bits {
            0 => 0,
            bits => (hash >> (64 - bits)) as usize,
        }
    }

    fn contains(&self, hash: u64) -> bool {
        if self.hashes.is_empty() {
            return false;
        }
        let b = self.bucket(hash);
        let (lo, hi) = (self.dir[b] as usize, self.dir[b + 1] as usize);
        self.hashes[lo..hi].binary_search(&hash).is_ok()
    }

    /// These hashes and `more` (none of them among these) as a new array.
    pub(crate) fn merged(&self, more: &FxHashSet<u64>) -> SortedIds {
        let mut new: Vec<u64> = more.iter().copied().collect();
        new.sort_unstable();
        let mut out = Vec::with_capacity(self.hashes.len() + new.len());
        let (mut i, mut j) = (0, 0);
        while i < self.hashes.len() && j < new.len() {
            if self.hashes[i] < new[j] {
                out.push(self.hashes[i]);
                i += 1;
            } else {
                out.push(new[j]);
                j += 1;
            }
        }
        out.extend_from_slice(&self.hashes[i..]);
        out.extend_from_slice(&new[j..]);
        SortedIds::new(out)
    }

    fn heap_bytes(&self) -> usize {
        self.hashes.capacity() * 8 + self.dir.capacity() * 4
    }
}

/// The work of a fold, done without holding the store's state: the array and the hash set that
/// [`RecentIds::fold_job`] set aside, to be merged and handed to [`RecentIds::finish_fold`].
pub(crate) struct FoldJob {
    pub sorted: Arc<SortedIds>,
    pub set: Arc<FxHashSet<u64>>,
}

/// Collects stored rows' hashes for [`RecentIds`] built at once: 8 bytes an id while
/// collecting (pairs with their receive times took 16, at open of a large store).
#[derive(Default)]
pub(crate) struct RecentIdsBuilder {
    hashes: Vec<u64>,
    oldest: Option<i64>,
}

impl RecentIdsBuilder {
    pub(crate) fn extend(&mut self, entries: impl IntoIterator<Item = (u64, i64)>) {
        let oldest = &mut self.oldest;
        self.hashes.extend(entries.into_iter().map(|(h, r)| {
            *oldest = Some(oldest.map_or(r, |o| o.min(r)));
            h
        }));
    }

    pub(crate) fn build(mut self) -> RecentIds {
        self.hashes.sort_unstable();
        self.hashes.dedup();
        RecentIds {
            sorted: Arc::new(SortedIds::new(self.hashes)),
            oldest: self.oldest,
            ..Default::default()
        }
    }
}

impl RecentIds {
    /// The hash set is folded into the array once it holds this many, or an eighth of the
    /// array: each hash is copied a bounded number of times as the array grows.
    const MIN_FOLD: usize = 1 << 16;

    /// The check built at once from stored rows' (hash, receive time) pairs (for tests).
    #[cfg(test)]
    fn from_entries(entries: impl IntoIterator<Item = (u64, i64)>) -> RecentIds {
        let mut b = RecentIdsBuilder::default();
        b.extend(entries);
        b.build()
    }

    /// Enters a message id's hash; false when it was already there (a duplicate).
    pub(crate) fn insert(&mut self, hash: u64, received_at: i64) -> bool {
        if self.sorted.contains(hash)
            || self.folding.as_ref().is_some_and(|f| f.contains(&hash))
            || !self.recent.insert(hash)
        {
            return false;
        }
        if self.oldest.is_none_or(|o| received_at < o) {
            self.oldest = Some(received_at);
        }
        true
    }

    /// When the hash set is due to be folded (and no fold is under way): sets it aside, still
    /// checked, and returns what the fold merges. The merge is the caller's, outside the lock
    /// the check is under: at 10M ids it copies 80 MB, which writes should not wait for.
    pub(crate) fn fold_job(&mut self) -> Option<FoldJob> {
        let due = self.recent.len() >= self.min_fold.max(self.sorted.hashes.len() / 8);
        if self.folding.is_some() || !due {
            return None;
        }
        let set = Arc::new(std::mem::take(&mut self.recent));
        self.folding = Some(set.clone());
        Some(FoldJob {
            sorted: self.sorted.clone(),
            set,
        })
    }

    /// Puts the merged array of `job` in place of the two it was made from, unless the check
    /// was built again meanwhile.
    pub(crate) fn finish_fold(&mut self, job: &FoldJob, merged: SortedIds) {
        if self
            .folding
            .as_ref()
            .is_some_and(|f| Arc::ptr_eq(f, &job.set))
        {
            self.sorted = Arc::new(merged);
            self.folding = None;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.sorted.hashes.len() + self.folding.as_ref().map_or(0, |f| f.len()) + self.recent.len()
    }

    /// Whether the set holds ids received more than an eighth of `window_ms` before the
    /// window's start at `horizon`: then it is due to be built again.
    pub(crate) fn is_stale(&self, horizon: i64, window_ms: i64) -> bool {
        self.oldest
            .is_some_and(|o| o < horizon.saturating_sub(window_ms / 8))
    }

    /// Heap bytes held: the array, its directory, and the hash sets' buckets and control
    /// bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        let set = |s: &FxHashSet<u64>| s.capacity() * (std::mem::size_of::<u64>() + 1);
        self.sorted.heap_bytes() + self.folding.as_deref().map_or(0, set) + set(&self.recent)
    }

    /// Hashes in the sorted array (for tests).
    #[cfg(test)]
    pub(crate) fn sorted_len(&self) -> usize {
        self.sorted.hashes.len()
    }

    /// Folds now, in place (for tests).
    #[cfg(test)]
    fn fold_now(&mut self) {
        if let Some(job) = self.fold_job() {
            let merged = job.sorted.merged(&job.set);
            self.finish_fold(&job, merged);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    impl RecentIds {
        /// Whether `hash` is entered, without entering it.
        fn holds(&self, hash: u64) -> bool {
            self.sorted.contains(hash)
                || self.folding.as_ref().is_some_and(|f| f.contains(&hash))
                || self.recent.contains(&hash)
        }
    }

    #[test]
    fn a_second_entry_of_an_id_is_a_duplicate_and_the_oldest_time_is_kept() {
        let mut ids = RecentIds::default();
        assert!(!ids.is_stale(0, 1000));
        assert!(ids.insert(1, 500));
        assert!(ids.insert(2, 300));
        assert!(!ids.insert(1, 100), "an id seen before");
        assert_eq!(ids.len(), 2);
        // the duplicate's time is not entered: the oldest is 300
        assert!(!ids.is_stale(400, 800), "300 is within 400 - 800/8");
        assert!(ids.is_stale(500, 800), "300 is behind 500 - 800/8");
    }

    /// Past a few folds, the check holds about 8 bytes an id, not the hash set's 10–21.
    #[test]
    fn a_million_ids_take_about_eight_bytes_each() {
        let mut ids = RecentIds::default();
        let n = 1_000_000u64;
        for i in 0..n {
            assert!(ids.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), 0));
            ids.fold_now();
        }
        assert_eq!(ids.len(), n as usize);
        let sorted = ids.sorted.hashes.len();
        assert!(sorted > 0 && ids.recent.len() < sorted / 8);
        let per_id = ids.heap_bytes() as f64 / n as f64;
        assert!(per_id < 9.5, "{per_id} bytes an id");
    }

    proptest! {
        /// Whatever the order and the repeats, and however the hashes spread over the
        /// directory, an id is new exactly once: as a set of every id entered says, through
        /// any number of folds, and in a check built at once from the same ids.
        #[test]
        fn the_check_agrees_with_a_set(
            entries in proptest::collection::vec(0u64..3_000, 0..6_000),
            high in any::<bool>(),
            min_fold in 1usize..200,
        ) {
            // the hashes in a narrow band (many per directory entry) or spread over the top bits
            let hash = |k: u64| if high { k.wrapping_mul(0x9e37_79b9_7f4a_7c15) } else { k };
            let mut ids = RecentIds { min_fold, ..Default::default() };
            let mut set = std::collections::HashSet::new();
            let mut job = None;
            for (i, k) in entries.iter().enumerate() {
                prop_assert_eq!(ids.insert(hash(*k), 0), set.insert(hash(*k)));
                // a fold set aside now, merged and put in place some entries later
                match (i % 7, job.take()) {
                    (0, None) => job = ids.fold_job(),
                    (0, Some(j)) => {
                        let FoldJob { sorted, set } = &j;
                        ids.finish_fold(&j, sorted.merged(set));
                    }
                    (_, j) => job = j,
                }
            }
            prop_assert_eq!(ids.len(), set.len());
            let built = RecentIds::from_entries(entries.iter().map(|k| (hash(*k), 0)));
            prop_assert_eq!(built.len(), set.len());
            for k in 0..3_100u64 {
                let known = set.contains(&hash(k));
                prop_assert_eq!(built.sorted.contains(hash(k)), known);
                prop_assert_eq!(ids.holds(hash(k)), known);
            }
        }
    }
}

//! The duplicate check of writes: the message ids received within the dedup window.
//!
//! Only the ids' 8-byte hashes are kept, in a set: about 10–21 bytes a message (a bucket of 9 bytes, at most 7/8 full, doubling), where a map to
//! each message's receive time took 17–34, and that map was the largest part of a serving
//! store's memory after its columns. Without the times, ids are not dropped one by one as they
//! leave the window: the set keeps the oldest receive time it holds, and is built again from
//! the stored rows once that time is an eighth of the window behind it. Until then a message
//! whose id was seen a little longer ago than the window is still taken as a duplicate, which
//! is what the window is for.

use rustc_hash::FxHashSet;

#[derive(Debug, Default)]
pub(crate) struct RecentIds {
    hashes: FxHashSet<u64>,
    /// The oldest receive time entered, if any.
    oldest: Option<i64>,
}

impl RecentIds {
    /// Enters a message id's hash; false when it was already there (a duplicate).
    pub(crate) fn insert(&mut self, hash: u64, received_at: i64) -> bool {
        let new = self.hashes.insert(hash);
        if new && self.oldest.is_none_or(|o| received_at < o) {
            self.oldest = Some(received_at);
        }
        new
    }

    pub(crate) fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the set holds ids received more than an eighth of `window_ms` before the
    /// window's start at `horizon`: then it is due to be built again.
    pub(crate) fn is_stale(&self, horizon: i64, window_ms: i64) -> bool {
        self.oldest
            .is_some_and(|o| o < horizon.saturating_sub(window_ms / 8))
    }

    /// Heap bytes held (the set's buckets and their control bytes).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.hashes.capacity() * (std::mem::size_of::<u64>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

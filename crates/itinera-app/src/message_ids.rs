//! Ids for messages that came without one (the tracking API, the CLI's import, the app's own
//! events): time-ordered, so that the store keeps them in a few bytes each (see
//! `itinera_core::message::time_ordered_message_id`).

use itinera_core::clock::now_ms;
use itinera_core::message::time_ordered_message_id;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::LazyLock;

/// This process's node bits and counter, both starting random, so that two processes (or two
/// starts of one) do not make the same id in the same millisecond.
static NODE: LazyLock<u64> = LazyLock::new(rand::random);
static SEQUENCE: LazyLock<AtomicU32> = LazyLock::new(|| AtomicU32::new(rand::random()));

/// A fresh message id.
pub fn new_message_id() -> String {
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    time_ordered_message_id(now_ms(), sequence, *NODE)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_differ_and_follow_time() {
        let ids: Vec<String> = (0..1000).map(|_| super::new_message_id()).collect();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        assert!(ids.iter().all(|id| id.len() == 36 && &id[14..15] == "7"));
    }
}

//! Itinera's embedded journey store.
//!
//! Files in one directory per project, no other service: a write-ahead log with group commit
//! (an acknowledged event is on stable storage), immutable columnar segments in which rows are
//! grouped by person and sorted by time, dictionary deltas, and a manifest swapped atomically.
//! [`Store::snapshot`] gives the journey engine each person's touchpoints as one time-ordered
//! sequence, with identities merged after the fact already applied.

pub mod codec;
pub mod columns;
pub mod delta;
pub mod dict;
pub mod error;
mod gather;
pub mod inspect;
pub mod lazy;
pub mod manifest;
pub mod message_block;
pub mod message_ids;
pub mod scan;
pub mod segment;
mod store;
pub mod wal;

pub use columns::{Columns, NO_GROUP};
pub use error::{Result, StoreError};
pub use itinera_engine::ScanOptions;
pub use manifest::FORMAT_VERSION;
pub use scan::{PersonEvents, Snapshot, StoreView};
pub use store::{
    check_log_record, AppendOutcome, AppendPipeline, Dicts, SnapshotBuilds, Store, StoreConfig,
    StoreMemory, StoreStats, DICT_CHANNELS, DICT_EVENTS, DICT_GROUPS, DICT_IDS, DICT_PROP_KEYS,
    DICT_PROP_VALUES, DICT_TOUCHPOINTS,
};

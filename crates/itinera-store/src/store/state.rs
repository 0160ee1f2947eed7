use crate::columns::{Columns, SharedChunk};
use crate::delta::DICTS;
use crate::dict::Dict;
use crate::error::Result;
use crate::manifest::Manifest;
use crate::segment::{self, BodyFiles, SegmentFile};
use itinera_core::IdentityGraph;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::*;

/// The dictionaries of one store. Append-only: a code once given keeps its meaning.
#[derive(Debug, Default)]
pub struct Dicts {
    pub all: [Dict; DICTS],
}

impl Dicts {
    pub fn ids(&self) -> &Dict {
        &self.all[DICT_IDS]
    }
    pub fn events(&self) -> &Dict {
        &self.all[DICT_EVENTS]
    }
    pub fn channels(&self) -> &Dict {
        &self.all[DICT_CHANNELS]
    }
    pub fn touchpoints(&self) -> &Dict {
        &self.all[DICT_TOUCHPOINTS]
    }
    pub fn groups(&self) -> &Dict {
        &self.all[DICT_GROUPS]
    }
    pub fn prop_keys(&self) -> &Dict {
        &self.all[DICT_PROP_KEYS]
    }
    pub fn prop_values(&self) -> &Dict {
        &self.all[DICT_PROP_VALUES]
    }
}

/// A segment in use: its file and its decoded columns.
#[derive(Debug)]
pub struct LoadedSegment {
    pub name: String,
    pub file: SegmentFile,
    pub cols: Arc<Columns>,
}

impl LoadedSegment {
    pub(super) fn generation(&self) -> u32 {
        generation_of(&self.name)
    }
}

/// A segment file kept only for the messages it holds (see [`Manifest::holders`]).
#[derive(Debug)]
pub struct HolderFile {
    pub name: String,
    pub file: SegmentFile,
}

/// The generation of a file this store named (`{generation:010}.seg`).
pub(super) fn generation_of(name: &str) -> u32 {
    segment::generation_of(name).expect("segment names are generations")
}

/// The files holding messages among `segments` and `holders`, by generation.
pub(super) fn message_files<'a>(
    segments: &'a [Arc<LoadedSegment>],
    holders: &'a [Arc<HolderFile>],
) -> Result<BodyFiles<'a>> {
    BodyFiles::new(
        segments
            .iter()
            .filter(|s| s.file.footer.holds_bodies())
            .map(|s| (s.generation(), &s.file))
            .chain(holders.iter().map(|h| (generation_of(&h.name), &h.file))),
    )
}

pub(crate) struct State {
    pub identity: IdentityGraph,
    pub identity_version: u64,
    pub roots_cache: Option<(u64, Arc<Vec<u32>>)>,
    pub(super) pending_links: Vec<(u32, u32)>,
    pub erased: Arc<HashMap<u32, i64>>,
    pub(super) pending_erased: Vec<(u32, i64)>,
    pub segments: Vec<Arc<LoadedSegment>>,
    pub(super) holders: Vec<Arc<HolderFile>>,
    pub mem: Vec<SharedChunk>,
    pub frozen: Vec<SharedChunk>,
    pub(super) mem_rows: usize,
    /// The hashes of the message ids received within the dedup window.
    pub(super) dedup: super::recent_ids::RecentIds,
    pub(super) manifest: Manifest,
    pub(super) delta_starts: [usize; DICTS],
}

pub(super) struct Inner {
    pub(super) dir: PathBuf,
    pub(super) config: StoreConfig,
    pub(super) dicts: RwLock<Dicts>,
    pub(super) state: RwLock<State>,
    pub(super) tx: Mutex<Option<SyncSender<Request>>>,
    pub(super) writer: Mutex<Option<JoinHandle<()>>>,
    pub(super) flusher: Mutex<Option<JoinHandle<()>>>,
    /// Held by flushes, by the commit of a compaction and by backups: one of them changes the
    /// manifest at a time.
    pub(super) flush_lock: Mutex<()>,
    pub(super) flush_wanted: AtomicBool,
    /// Held for the whole of a compaction: one at a time. A background compaction merges
    /// without the flush lock, so ingestion goes on being flushed meanwhile (taken before the
    /// flush lock, never after).
    pub(super) compact_lock: Mutex<()>,
    pub(super) compactor: Mutex<Option<JoinHandle<()>>>,
    pub(super) compact_wanted: AtomicBool,
    /// The last generation given to a new file (flushes and compactions draw from it).
    pub(super) generation: AtomicU64,
    /// The store directory's `LOCK` file, locked while this store may write: a second process
    /// opening the directory would replay the same log and remove the files this one has not
    /// committed yet. Released by [`Store::close`] (and by the OS when the process dies).
    pub(super) dir_lock: Mutex<Option<std::fs::File>>,
    pub(super) write_error: Mutex<Option<String>>,
    /// When a write was last let through to probe whether a failed log became writable again
    /// (ms since the epoch).
    pub(super) write_probe_ms: std::sync::atomic::AtomicI64,
    pub(super) appended: AtomicU64,
    pub(super) duplicates: AtomicU64,
    /// The last snapshot and what it was built from.
    /// The memory chunks are held too, so no address in the key can be reused while cached.
    pub(super) snapshot_cache: Mutex<super::snapshots::SnapshotCache>,
}

/// Size and content figures for `itinera stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreStats {
    pub events: u64,
    pub persons: u64,
    pub distinct_ids: u64,
    pub accounts: u64,
    pub segments: usize,
    /// Segment files kept only for the messages merged segments point to (until a full
    /// compaction).
    pub holders: usize,
    pub memory_rows: u64,
    pub bytes_on_disk: u64,
    pub segment_bytes: u64,
    pub wal_bytes: u64,
    /// Compressed bytes of person, time, event and channel per segment row.
    pub core_bytes_per_event: f64,
    pub bytes_per_event: f64,
}

/// What a store holds in memory, in bytes, by part (estimated from the structures' sizes, not
/// measured from the allocator): where a server's memory goes, for `/metrics` and the benches.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreMemory {
    /// Segment columns: decoded, or compressed blocks waiting for their first read.
    pub segment_columns: u64,
    /// Columns of the rows waiting in memory for their flush.
    pub memory_columns: u64,
    /// The log records holding those rows' messages.
    pub memory_messages: u64,
    /// Sorted copies of the rows in memory and the person indexes, kept for queries.
    pub query_copies: u64,
    /// The duplicate check: hashes of the message ids received within the window.
    pub duplicate_check: u64,
    /// Dictionaries of ids, names and property values.
    pub dictionaries: u64,
    /// Which id belongs to which person.
    pub identities: u64,
}

impl StoreMemory {
    pub fn total(&self) -> u64 {
        self.parts().iter().map(|(_, b)| b).sum()
    }

    /// Each part with its name, as `/metrics` labels it.
    pub fn parts(&self) -> [(&'static str, u64); 7] {
        [
            ("segment_columns", self.segment_columns),
            ("memory_columns", self.memory_columns),
            ("memory_messages", self.memory_messages),
            ("query_copies", self.query_copies),
            ("duplicate_check", self.duplicate_check),
            ("dictionaries", self.dictionaries),
            ("identities", self.identities),
        ]
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.lock().take();
    }
}

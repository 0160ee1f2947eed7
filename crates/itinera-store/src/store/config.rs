/// Dictionary numbers, as in the delta files.
pub const DICT_IDS: usize = 0;
pub const DICT_EVENTS: usize = 1;
pub const DICT_CHANNELS: usize = 2;
pub const DICT_TOUCHPOINTS: usize = 3;
pub const DICT_GROUPS: usize = 4;
/// Property keys (`properties.plan`, `traits.role`) and property values (as text).
pub const DICT_PROP_KEYS: usize = 5;
pub const DICT_PROP_VALUES: usize = 6;

/// Tuning of the store; the defaults suit a small server.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Rows in memory before a flush to a segment starts.
    pub flush_rows: usize,
    /// Rows in memory are flushed once no write has come for this long (0: only by
    /// `flush_rows`): a server that goes quiet then holds no log records and no row columns
    /// in memory (about 260 bytes a realistic row), and its log files go away.
    pub flush_when_quiet_ms: u64,
    /// Rows in memory at which appends wait for the flush (bounds memory while ingesting).
    pub max_memory_rows: usize,
    /// Message ids received within this window are deduplicated on arrival; compaction removes
    /// any duplicate that is older.
    pub dedup_window_ms: i64,
    /// Segments beyond this number trigger a compaction after a flush.
    pub compact_after_segments: usize,
    /// Background compactions merge only segments smaller than this (and than
    /// `compact_memory_bytes` / 64 rows), into one segment of about this size at most, so the
    /// memory a compaction needs stays bounded however much data there is (`itinera compact`
    /// merges everything).
    pub compact_max_rows: usize,
    /// Memory a compaction plans to use for merging: it writes segments of whole persons of at
    /// most this / 64 rows each, so a full compaction of any store stays within it (plus the
    /// messages it streams: one decoded block per file that holds them).
    pub compact_memory_bytes: usize,
    /// Opens the store to compact it (`itinera compact`): segments' columns are read a merge at
    /// a time and not held, no duplicate check is built, and appends and queries are refused.
    pub compaction_only: bool,
    /// Opens the store for reading only, beside the process that owns the directory (a CLI
    /// query while `itinera serve` runs): no lock, nothing written or removed, the log read up
    /// to a torn tail without cutting it, and appends refused.
    pub read_only: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            flush_rows: 1_000_000,
            flush_when_quiet_ms: 10_000,
            max_memory_rows: 4_000_000,
            dedup_window_ms: 7 * 24 * 3600 * 1000,
            compact_after_segments: 8,
            compact_max_rows: 16_000_000,
            compact_memory_bytes: 1 << 30,
            compaction_only: false,
            read_only: false,
        }
    }
}

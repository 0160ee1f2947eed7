//! The store: a writer thread with group commit in front of a write-ahead log, an in-memory table
//! of recent rows, and immutable segments behind an atomically swapped manifest.
//!
//! Write path: `append` sends touchpoints to the writer thread, which takes every request waiting
//! at that moment, drops duplicates (same message id), writes one log write and one `fdatasync` for
//! all of them, applies them to the in-memory table, and only then answers. An answered append is
//! therefore on stable storage.
//!
//! Flush: when the in-memory table is large, the writer moves on to a new log file and hands the
//! frozen rows to a flush, which sorts them by person and time into a segment, writes the
//! dictionary delta, commits a new manifest, and only then deletes the old log files. A crash
//! before the manifest commit replays the log; after it, the segment is there.

use crate::codec::{put_ivarint, put_str, Reader};
use crate::columns::{
    encode_touchpoint, message_hash, Columns, MemChunk, SharedChunk, Texts, NO_GROUP,
};
use crate::delta::{Delta, DICTS};
use crate::dict::Dict;
use crate::error::{Result, StoreError};
use crate::manifest::Manifest;
use crate::scan::Snapshot;
use crate::segment::{self, BodyFiles, BodyLoc, SegmentFile};
use crate::wal::{self, frame_with, WalWriter};
use itinera_core::clock::now_ms;
use itinera_core::{IdentityGraph, Touchpoint};
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

const REC_TOUCHPOINTS: u8 = 1;
const REC_ERASE: u8 = 2;
/// A `REC_TOUCHPOINTS` record compressed with LZ4: `[3][uvarint raw length][LZ4 block]`. The
/// log is most of what ingestion writes (the messages and their typed fields, which repeat
/// names and ids), and compressing it in the appending thread took most of the writer
/// thread's system time (copying into the page cache and syncing) away.
const REC_LZ4: u8 = 3;
/// Records up to this size (before compression) are compressed.
const LZ4_MAX_RAW: usize = 1 << 30;

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
    /// Rows in memory at which appends wait for the flush (bounds memory while ingesting).
    pub max_memory_rows: usize,
    /// Message ids received within this window are deduplicated on arrival; compaction removes
    /// any duplicate that is older.
    pub dedup_window_ms: i64,
    /// Segments beyond this number trigger a compaction after a flush.
    pub compact_after_segments: usize,
    /// Background compactions merge only segments smaller than this, into segments of about
    /// this size at most, so the memory a compaction needs stays bounded however much data
    /// there is (`itinera compact` merges everything).
    pub compact_max_rows: usize,
    /// Opens the store for reading only, beside the process that owns the directory (a CLI
    /// query while `itinera serve` runs): no lock, nothing written or removed, the log read up
    /// to a torn tail without cutting it, and appends refused.
    pub read_only: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            flush_rows: 1_000_000,
            max_memory_rows: 4_000_000,
            dedup_window_ms: 7 * 24 * 3600 * 1000,
            compact_after_segments: 8,
            compact_max_rows: 16_000_000,
            read_only: false,
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub stored: usize,
    pub duplicates: usize,
}

type Reply = Box<dyn FnOnce(Result<AppendOutcome>) + Send>;

enum Op {
    Append(Prepared),
    Erase {
        id: String,
        at_ms: i64,
    },
    /// Rotate the log and freeze the in-memory table; replies with the new log number in `stored`.
    Freeze,
}

struct Request {
    op: Op,
    reply: Reply,
}

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
    fn generation(&self) -> u32 {
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
fn generation_of(name: &str) -> u32 {
    segment::generation_of(name).expect("segment names are generations")
}

/// The files holding messages among `segments` and `holders`, by generation.
fn message_files<'a>(
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
    pending_links: Vec<(u32, u32)>,
    pub erased: Arc<HashMap<u32, i64>>,
    pending_erased: Vec<(u32, i64)>,
    pub segments: Vec<Arc<LoadedSegment>>,
    holders: Vec<Arc<HolderFile>>,
    pub mem: Vec<SharedChunk>,
    pub frozen: Vec<SharedChunk>,
    mem_rows: usize,
    /// message id hash → received at, for rows within the dedup window
    dedup: FxHashMap<u64, i64>,
    manifest: Manifest,
    delta_starts: [usize; DICTS],
}

/// A snapshot, the addresses it was built from, and the memory chunks among them.
type CachedSnapshot = (Vec<usize>, Vec<SharedChunk>, Snapshot);

struct Inner {
    dir: PathBuf,
    config: StoreConfig,
    dicts: RwLock<Dicts>,
    state: RwLock<State>,
    tx: Mutex<Option<SyncSender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    /// Held by flushes, by the commit of a compaction and by backups: one of them changes the
    /// manifest at a time.
    flush_lock: Mutex<()>,
    flush_wanted: AtomicBool,
    /// Held for the whole of a compaction: one at a time. A background compaction merges
    /// without the flush lock, so ingestion goes on being flushed meanwhile (taken before the
    /// flush lock, never after).
    compact_lock: Mutex<()>,
    compactor: Mutex<Option<JoinHandle<()>>>,
    compact_wanted: AtomicBool,
    /// The last generation given to a new file (flushes and compactions draw from it).
    generation: AtomicU64,
    /// The store directory's `LOCK` file, locked while this store may write: a second process
    /// opening the directory would replay the same log and remove the files this one has not
    /// committed yet. Released by [`Store::close`] (and by the OS when the process dies).
    dir_lock: Mutex<Option<std::fs::File>>,
    write_error: Mutex<Option<String>>,
    appended: AtomicU64,
    duplicates: AtomicU64,
    /// The last snapshot and what it was built from.
    /// The memory chunks are held too, so no address in the key can be reused while cached.
    snapshot_cache: Mutex<Option<CachedSnapshot>>,
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

/// Bulk appends with several batches in flight, for importers: the caller prepares the next
/// batch while the writer writes and syncs the previous ones, and batches that wait together
/// share one sync. A batch counts once it is durable; [`AppendPipeline::finish`] waits for
/// all of them and returns the first error, if any.
pub struct AppendPipeline<'a> {
    store: &'a Store,
    window: usize,
    in_flight: std::collections::VecDeque<std::sync::mpsc::Receiver<Result<AppendOutcome>>>,
    done: AppendOutcome,
}

impl AppendPipeline<'_> {
    /// Sends a batch, first waiting for the oldest one in flight when the window is full.
    pub fn append(&mut self, batch: Vec<Touchpoint>) -> Result<()> {
        while self.in_flight.len() >= self.window {
            self.wait_oldest()?;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.store.append_async(batch, move |r| {
            let _ = tx.send(r);
        });
        self.in_flight.push_back(rx);
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        if let Some(rx) = self.in_flight.pop_front() {
            let out = rx.recv().unwrap_or(Err(StoreError::Closed))?;
            self.done.stored += out.stored;
            self.done.duplicates += out.duplicates;
        }
        Ok(())
    }

    /// Waits until every batch sent is durable.
    pub fn finish(mut self) -> Result<AppendOutcome> {
        let mut first_error = None;
        while !self.in_flight.is_empty() {
            if let Err(e) = self.wait_oldest() {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(self.done), Err)
    }
}

/// A handle to one store (one project's data). Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens the store in `dir`, creating it if empty, replaying the log.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store> {
        for sub in ["", "wal", "seg"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(StoreError::io(dir.join(sub)))?;
        }
        let lock_path = dir.join("LOCK");
        let dir_lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StoreError::io(&lock_path))?;
        match dir_lock.try_lock() {
            _ if config.read_only => {}
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::InUse(dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io(&lock_path)(e)),
        }
        let manifest = match Manifest::load(dir)? {
            // format 1 files read as format 2 without properties; the next commit (which adds
            // format-2 files) records format 2, so older binaries then refuse the directory
            Some(mut m) => {
                m.format = crate::manifest::FORMAT_VERSION;
                m
            }
            None => {
                let m = Manifest::new();
                if !config.read_only {
                    m.commit(dir)?;
                }
                m
            }
        };
        let mut dicts = Dicts::default();
        let mut identity = IdentityGraph::new();
        let mut erased = HashMap::new();
        for name in &manifest.deltas {
            let d = Delta::read(&dir.join("seg").join(name))?;
            for (k, (start, strings)) in d.dicts.into_iter().enumerate() {
                let have = dicts.all[k].len() as u64;
                if start > have {
                    return Err(StoreError::Corrupt(format!(
                        "{name}: dictionary {k} starts at {start}, have {have}"
                    )));
                }
                // deltas may overlap (a delta holds strings added up to its writing)
                let skip = (have - start) as usize;
                dicts.all[k].extend_loaded(strings.into_iter().skip(skip));
            }
            identity.grow(dicts.all[DICT_IDS].len() as u32);
            for (a, b) in d.links {
                identity.link(a, b);
            }
            erased.extend(d.erased);
        }
        identity.grow(dicts.all[DICT_IDS].len() as u32);
        let locked = (!config.read_only).then_some(dir_lock);
        let mut segments = Vec::new();
        let mut dedup = FxHashMap::default();
        let horizon = now_ms() - config.dedup_window_ms;
        for name in manifest.segments.iter().chain(&manifest.holders) {
            if segment::generation_of(name).is_none() {
                return Err(StoreError::Corrupt(format!(
                    "manifest: {name} is not a segment name"
                )));
            }
        }
        let holders = manifest
            .holders
            .iter()
            .map(|name| {
                Ok(Arc::new(HolderFile {
                    name: name.clone(),
                    file: SegmentFile::open(&dir.join("seg").join(name))?,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        for name in &manifest.segments {
            let file = SegmentFile::open(&dir.join("seg").join(name))?;
            let cols = file.load_columns()?;
            for (h, r) in cols.msg_hash.iter().zip(&cols.received_at) {
                if *r >= horizon {
                    dedup.insert(*h, *r);
                }
            }
            segments.push(Arc::new(LoadedSegment {
                name: name.clone(),
                file,
                cols: Arc::new(cols),
            }));
        }
        if !config.read_only {
            remove_orphans(dir, &manifest)?;
        }
        let delta_starts = std::array::from_fn(|k| dicts.all[k].len());
        let state = State {
            identity,
            identity_version: 0,
            roots_cache: None,
            pending_links: Vec::new(),
            erased: Arc::new(erased),
            pending_erased: Vec::new(),
            segments,
            holders,
            mem: Vec::new(),
            frozen: Vec::new(),
            mem_rows: 0,
            dedup,
            manifest: manifest.clone(),
            delta_starts,
        };
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            config,
            dicts: RwLock::new(dicts),
            state: RwLock::new(state),
            tx: Mutex::new(None),
            writer: Mutex::new(None),
            flusher: Mutex::new(None),
            flush_lock: Mutex::new(()),
            flush_wanted: AtomicBool::new(false),
            compact_lock: Mutex::new(()),
            compactor: Mutex::new(None),
            compact_wanted: AtomicBool::new(false),
            generation: AtomicU64::new(manifest.generation),
            dir_lock: Mutex::new(locked),
            write_error: Mutex::new(None),
            appended: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            snapshot_cache: Mutex::new(None),
        });

        // replay the log into the in-memory table
        let wal_dir = dir.join("wal");
        let mut replayed = 0u64;
        let report = wal::replay(
            &wal_dir,
            manifest.wal_from,
            !inner.config.read_only,
            |payload| {
                let rec = decode_record(payload)?;
                replayed += 1;
                inner.apply(rec, true);
                Ok(())
            },
        )?;
        if report.frames > 0 || report.truncated_bytes > 0 {
            tracing::info!(
                frames = report.frames,
                files = report.files,
                truncated_bytes = report.truncated_bytes,
                "replayed write-ahead log"
            );
        }
        if inner.config.read_only {
            *inner.write_error.lock() = Some("opened for reading only".into());
            return Ok(Store { inner });
        }
        let writer = WalWriter::open(&wal_dir, report.last_seq.max(manifest.wal_from))?;
        let (tx, rx) = sync_channel::<Request>(1024);
        *inner.tx.lock() = Some(tx);
        let w = inner.clone();
        let handle = std::thread::Builder::new()
            .name("itinera-wal".into())
            .spawn(move || w.writer_loop(rx, writer))
            .map_err(StoreError::io(dir))?;
        *inner.writer.lock() = Some(handle);
        Ok(Store { inner })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends touchpoints; `reply` is called once they are durable (or failed).
    pub fn append_async(
        &self,
        batch: Vec<Touchpoint>,
        reply: impl FnOnce(Result<AppendOutcome>) + Send + 'static,
    ) {
        self.send(Op::Append(Prepared::new(batch)), Box::new(reply));
    }

    /// Appends touchpoints and waits until they are durable.
    pub fn append(&self, batch: Vec<Touchpoint>) -> Result<AppendOutcome> {
        self.call(Op::Append(Prepared::new(batch)))
    }

    /// A pipeline for bulk appends that keeps up to `window` batches in flight (see
    /// [`AppendPipeline`]).
    pub fn pipeline(&self, window: usize) -> AppendPipeline<'_> {
        AppendPipeline {
            store: self,
            window: window.max(1),
            in_flight: std::collections::VecDeque::new(),
            done: AppendOutcome::default(),
        }
    }

    /// Erases a person (every id linked to `id`): gone from queries at once, from files after
    /// [`Store::compact`].
    pub fn erase_person(&self, id: &str) -> Result<usize> {
        let known = self.inner.dicts.read().ids().get(id).is_some();
        if !known {
            return Ok(0);
        }
        self.call(Op::Erase {
            id: id.to_string(),
            at_ms: now_ms(),
        })
        .map(|o| o.stored)
    }

    fn send(&self, op: Op, reply: Reply) {
        if let Some(e) = self.inner.write_error.lock().clone() {
            return reply(Err(StoreError::ReadOnly(e)));
        }
        let tx = self.inner.tx.lock().clone();
        match tx {
            Some(tx) => {
                if let Err(e) = tx.send(Request { op, reply }) {
                    (e.0.reply)(Err(StoreError::Closed));
                }
            }
            None => reply(Err(StoreError::Closed)),
        }
    }

    fn call(&self, op: Op) -> Result<AppendOutcome> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.send(
            op,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Writes everything in memory to a segment now.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush(self)
    }

    /// Rewrites all segments into one: identities folded in, erased persons and duplicates
    /// removed from the files.
    pub fn compact(&self) -> Result<()> {
        self.flush()?;
        self.inner.compact(true).map(|_| ())
    }

    /// A consistent view for queries. Reused while nothing changed (no append, flush,
    /// compaction, identity merge or erasure): the snapshot's person index costs a pass over the
    /// rows to build.
    pub fn snapshot(&self) -> Snapshot {
        let mut st = self.inner.state.write();
        let version = st.identity_version;
        let roots = match &st.roots_cache {
            Some((v, r)) if *v == version && r.len() == st.identity.len() => r.clone(),
            _ => {
                let r = Arc::new(st.identity.roots());
                st.roots_cache = Some((version, r.clone()));
                r
            }
        };
        let chunks: Vec<Arc<Columns>> = st.segments.iter().map(|s| s.cols.clone()).collect();
        let mem: Vec<SharedChunk> = st.frozen.iter().chain(st.mem.iter()).cloned().collect();
        // chunks are immutable once shared: their addresses name the data
        let key: Vec<usize> = chunks
            .iter()
            .map(|c| Arc::as_ptr(c) as usize)
            .chain(mem.iter().map(|m| Arc::as_ptr(m) as usize))
            .chain([
                Arc::as_ptr(&roots) as usize,
                Arc::as_ptr(&st.erased) as usize,
                st.erased.len(),
            ])
            .collect();
        let erased = st.erased.clone();
        drop(st);
        let mut cache = self.inner.snapshot_cache.lock();
        if let Some((k, _, snap)) = cache.as_ref() {
            if *k == key {
                return snap.clone();
            }
        }
        let snap = Snapshot::new(chunks, mem.clone(), roots, erased);
        *cache = Some((key, mem, snap.clone()));
        snap
    }

    /// A consistent view for the journey engine: a snapshot and the dictionaries naming its codes.
    pub fn view(&self) -> crate::StoreView {
        crate::StoreView::new(self.snapshot(), self.clone())
    }

    pub fn dicts(&self) -> parking_lot::RwLockReadGuard<'_, Dicts> {
        self.inner.dicts.read()
    }

    /// Calls `f` with every stored message (normalized Segment JSON), segment rows first.
    /// Erased persons are left out.
    pub fn for_each_message(&self, mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
        let (segments, holders, mem, erased) = {
            let st = self.inner.state.read();
            let mem: Vec<SharedChunk> = st.frozen.iter().chain(st.mem.iter()).cloned().collect();
            (
                st.segments.clone(),
                st.holders.clone(),
                mem,
                st.erased.clone(),
            )
        };
        let hidden = |c: &Columns, i: usize| {
            erased
                .get(&c.did[i])
                .is_some_and(|t| c.received_at[i] <= *t)
        };
        let mut files = message_files(&segments, &holders)?;
        for s in &segments {
            if s.file.footer.holds_bodies() {
                s.file.for_each_body(|row, body| {
                    if hidden(&s.cols, row) {
                        Ok(())
                    } else {
                        f(body)
                    }
                })?;
                continue;
            }
            // messages elsewhere: read in the order of the files holding them
            let mut locs: Vec<BodyLoc> = s
                .file
                .load_body_locs(s.generation())?
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !hidden(&s.cols, *i))
                .map(|(_, l)| l)
                .collect();
            locs.sort_unstable();
            for l in locs {
                f(files.get(l)?)?;
            }
        }
        for c in &mem {
            for (i, b) in c.bodies.iter().enumerate() {
                if !hidden(&c.cols, i) {
                    f(b)?;
                }
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> Result<StoreStats> {
        let snap = self.snapshot();
        // lock order everywhere: dictionaries, then state
        let dicts = self.inner.dicts.read();
        let st = self.inner.state.read();
        let mut s = StoreStats {
            events: snap.visible_rows() as u64,
            distinct_ids: dicts.ids().len() as u64,
            accounts: dicts.groups().len() as u64,
            segments: st.segments.len(),
            holders: st.holders.len(),
            memory_rows: st.mem_rows as u64,
            ..Default::default()
        };
        s.persons = snap.person_count() as u64;
        let mut core = 0u64;
        let mut seg_rows = 0u64;
        for seg in &st.segments {
            core += seg.file.footer.bytes_of(&["did", "ts", "event", "channel"]);
            seg_rows += seg.file.footer.rows;
        }
        s.segment_bytes = dir_size(&self.inner.dir.join("seg"));
        s.wal_bytes = dir_size(&self.inner.dir.join("wal"));
        s.bytes_on_disk = s.segment_bytes + s.wal_bytes;
        if seg_rows > 0 {
            s.core_bytes_per_event = core as f64 / seg_rows as f64;
        }
        if s.events > 0 {
            s.bytes_per_event = s.bytes_on_disk as f64 / s.events as f64;
        }
        Ok(s)
    }

    /// The error that made the store refuse writes, if any (reads keep working).
    pub fn write_error(&self) -> Option<String> {
        self.inner.write_error.lock().clone()
    }

    /// Stops the writer after the requests already sent; everything answered is durable.
    pub fn close(&self) {
        self.inner.tx.lock().take();
        if let Some(h) = self.inner.writer.lock().take() {
            let _ = h.join();
        }
        if let Some(h) = self.inner.flusher.lock().take() {
            let _ = h.join();
        }
        if let Some(h) = self.inner.compactor.lock().take() {
            let _ = h.join();
        }
        // nothing writes any more (flushes and compactions need the writer): another process
        // may open the directory
        self.inner.dir_lock.lock().take();
    }

    /// Copies a consistent state of the store into `out` (an online backup).
    pub fn backup(&self, out: &Path) -> Result<()> {
        self.flush()?;
        let _g = self.inner.flush_lock.lock();
        let manifest = self.inner.state.read().manifest.clone();
        std::fs::create_dir_all(out.join("seg")).map_err(StoreError::io(out))?;
        std::fs::create_dir_all(out.join("wal")).map_err(StoreError::io(out))?;
        let files = manifest.segments.iter().chain(&manifest.holders);
        for name in files.chain(&manifest.deltas) {
            let from = self.inner.dir.join("seg").join(name);
            let to = out.join("seg").join(name);
            std::fs::copy(&from, &to).map_err(StoreError::io(&from))?;
        }
        let mut m = manifest;
        m.wal_from = 1;
        m.commit(out)
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn remove_orphans(dir: &Path, m: &Manifest) -> Result<()> {
    let seg = dir.join("seg");
    let keep: HashSet<&String> = m
        .segments
        .iter()
        .chain(&m.deltas)
        .chain(&m.holders)
        .collect();
    for e in std::fs::read_dir(&seg).map_err(StoreError::io(&seg))? {
        let e = e.map_err(StoreError::io(&seg))?;
        let name = e.file_name().to_string_lossy().to_string();
        if !keep.contains(&name) {
            tracing::info!(file = %name, "removing file left by an interrupted flush");
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_file(dir.join("MANIFEST.tmp"));
    Ok(())
}

enum Record {
    Touchpoints(Prepared),
    Erase { id: String, at_ms: i64 },
}

/// A batch of touchpoints made ready for the writer by the thread that appends it: its log
/// record encoded, its message-id hashes and its bodies gathered. The writer thread is the one
/// serial step of ingestion, so it only checks duplicates, writes, syncs and interns.
pub(crate) struct Prepared {
    /// The touchpoints, their bodies moved to `bodies`.
    touchpoints: Vec<Touchpoint>,
    bodies: Texts,
    hashes: Vec<u64>,
    /// The whole batch as one framed log record.
    framed: Vec<u8>,
}

impl Prepared {
    fn new(mut touchpoints: Vec<Touchpoint>) -> Prepared {
        let mut bodies = Texts::with_capacity(
            touchpoints.len(),
            touchpoints.iter().map(|t| t.body.len()).sum(),
        );
        for t in &mut touchpoints {
            bodies.push(&std::mem::take(&mut t.body));
        }
        let hashes = touchpoints
            .iter()
            .map(|t| message_hash(&t.message_id))
            .collect();
        Prepared::encoded(touchpoints, bodies, hashes)
    }

    fn encoded(touchpoints: Vec<Touchpoint>, bodies: Texts, hashes: Vec<u64>) -> Prepared {
        let framed = encode_record(&touchpoints, &bodies);
        Prepared {
            touchpoints,
            bodies,
            hashes,
            framed,
        }
    }

    /// The rows for which `keep` holds, as a batch of their own.
    fn retain(self, keep: &[bool]) -> Prepared {
        let mut bodies = Texts::default();
        let mut touchpoints = Vec::new();
        let mut hashes = Vec::new();
        for (i, t) in self.touchpoints.into_iter().enumerate() {
            if keep[i] {
                bodies.push(self.bodies.get(i));
                touchpoints.push(t);
                hashes.push(self.hashes[i]);
            }
        }
        Prepared::encoded(touchpoints, bodies, hashes)
    }
}

thread_local! {
    /// The raw record and its compressed frame, kept by each appending thread across batches.
    /// Fresh buffers of a batch's size at every append cost more than the encoding: their pages
    /// came back from the allocator zeroed by the kernel (about a fifth of the samples of an HTTP
    /// ingestion profile, 2026-12-02).
    static RECORD_SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = Default::default();
}

/// One framed `REC_TOUCHPOINTS` log record, compressed (`REC_LZ4`), in a buffer of its size.
fn encode_record(touchpoints: &[Touchpoint], bodies: &Texts) -> Vec<u8> {
    RECORD_SCRATCH.with(|scratch| {
        let (raw, out) = &mut *scratch.borrow_mut();
        raw.clear();
        out.clear();
        raw.push(REC_TOUCHPOINTS);
        crate::codec::put_uvarint(raw, touchpoints.len() as u64);
        for (i, t) in touchpoints.iter().enumerate() {
            encode_touchpoint(raw, t, bodies.get(i));
        }
        frame_with(out, |p| {
            if raw.len() > LZ4_MAX_RAW {
                p.extend_from_slice(raw);
                return;
            }
            p.push(REC_LZ4);
            crate::codec::put_uvarint(p, raw.len() as u64);
            let start = p.len();
            p.resize(
                start + lz4_flex::block::get_maximum_output_size(raw.len()),
                0,
            );
            let n = lz4_flex::block::compress_into(raw, &mut p[start..])
                .expect("the output has the maximum compressed size");
            p.truncate(start + n);
        });
        // a batch far larger than usual does not keep its buffers for good
        if raw.capacity() > SCRATCH_KEPT_BYTES {
            *raw = Vec::new();
        }
        let framed = out.to_vec();
        if out.capacity() > SCRATCH_KEPT_BYTES {
            *out = Vec::new();
        }
        framed
    })
}

/// Largest scratch buffer an appending thread keeps between batches.
const SCRATCH_KEPT_BYTES: usize = 4 << 20;

/// Decodes one log record payload and drops it: the entry point of the log fuzz target.
pub fn check_log_record(payload: &[u8]) -> Result<()> {
    decode_record(payload).map(|_| ())
}

fn decode_record(payload: &[u8]) -> Result<Record> {
    let mut r = Reader::new(payload, "log record");
    match r.u8()? {
        REC_LZ4 => {
            let raw_len = usize::try_from(r.uvarint()?).unwrap_or(usize::MAX);
            let comp = &payload[payload.len() - r.remaining()..];
            // LZ4 expands at most 255-fold: a larger length is damage, not a record
            if raw_len > LZ4_MAX_RAW || raw_len > comp.len().saturating_mul(255) {
                return Err(StoreError::Corrupt(format!(
                    "log record: compressed length {raw_len} out of range"
                )));
            }
            let raw = lz4_flex::block::decompress(comp, raw_len)
                .map_err(|e| StoreError::Corrupt(format!("log record: {e}")))?;
            if raw.first() != Some(&REC_TOUCHPOINTS) {
                return Err(StoreError::Corrupt(
                    "log record: compressed record is not touchpoints".into(),
                ));
            }
            decode_record(&raw)
        }
        REC_TOUCHPOINTS => {
            let n = r.len()?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(crate::columns::decode_touchpoint(&mut r)?);
            }
            Ok(Record::Touchpoints(Prepared::new(v)))
        }
        REC_ERASE => {
            let id = r.str()?.to_string();
            let at_ms = r.ivarint()?;
            Ok(Record::Erase { id, at_ms })
        }
        t => Err(StoreError::Corrupt(format!("log record: unknown type {t}"))),
    }
}

impl Inner {
    fn writer_loop(self: Arc<Self>, rx: Receiver<Request>, mut wal: WalWriter) {
        let mut pending: Vec<Request> = Vec::new();
        let mut framed: Vec<u8> = Vec::new();
        let mut open = true;
        while open || !pending.is_empty() {
            if pending.is_empty() {
                match rx.recv() {
                    Ok(r) => pending.push(r),
                    Err(_) => break,
                }
            }
            while pending.len() < 256 {
                match rx.try_recv() {
                    Ok(r) => pending.push(r),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.commit_group(&mut wal, &mut framed, std::mem::take(&mut pending));
            // backpressure: appends wait until a flush frees memory, so memory stays bounded.
            // Freezes go on meanwhile: the flush that frees the memory starts with one (waiting
            // for the flush itself here once deadlocked ingest).
            let mut nudged: Option<std::time::Instant> = None;
            while open
                && self.state.read().mem_rows >= self.config.max_memory_rows
                && self.write_error.lock().is_none()
            {
                match rx.recv_timeout(std::time::Duration::from_millis(2)) {
                    Ok(r) if matches!(r.op, Op::Freeze) => {
                        self.commit_group(&mut wal, &mut framed, vec![r])
                    }
                    Ok(r) => pending.push(r),
                    Err(RecvTimeoutError::Timeout) => {
                        // rows committed during the last flush may need one more (a failing
                        // flush is retried, not more often than this)
                        if nudged.is_none_or(|t| t.elapsed().as_millis() >= 200) {
                            nudged = Some(std::time::Instant::now());
                            self.maybe_start_flush();
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
        }
    }

    /// One group commit: dedup, one log write + sync, apply, answer.
    ///
    /// `framed` is the writer's buffer for the log bytes, kept across groups: a fresh buffer
    /// per group was megabytes of new pages to fault in (and zero) every time.
    fn commit_group(
        self: &Arc<Self>,
        wal: &mut WalWriter,
        framed: &mut Vec<u8>,
        group: Vec<Request>,
    ) {
        framed.clear();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut records = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        let mut freeze_replies = Vec::new();
        {
            // message ids are entered into the dedup map as they are checked: one lookup per
            // row. Should the log write fail, the store turns read-only and takes no more
            // appends, so the entries of the failed group need no undoing.
            let mut st = self.state.write();
            let window = self.config.dedup_window_ms > 0;
            let mut seen = rustc_hash::FxHashSet::default();
            for req in group {
                match req.op {
                    Op::Append(batch) => {
                        let keep: Vec<bool> = match window {
                            true => batch
                                .hashes
                                .iter()
                                .zip(&batch.touchpoints)
                                .map(|(h, t)| match st.dedup.entry(*h) {
                                    std::collections::hash_map::Entry::Occupied(_) => false,
                                    std::collections::hash_map::Entry::Vacant(v) => {
                                        v.insert(t.received_at_ms);
                                        true
                                    }
                                })
                                .collect(),
                            false => batch.hashes.iter().map(|h| seen.insert(*h)).collect(),
                        };
                        let stored = keep.iter().filter(|k| **k).count();
                        let out = AppendOutcome {
                            stored,
                            duplicates: keep.len() - stored,
                        };
                        if stored == keep.len() {
                            framed.extend_from_slice(&batch.framed);
                            records.push(Record::Touchpoints(batch));
                        } else if stored > 0 {
                            let kept = batch.retain(&keep);
                            framed.extend_from_slice(&kept.framed);
                            records.push(Record::Touchpoints(kept));
                        }
                        outcomes.push(out);
                        replies.push(req.reply);
                    }
                    Op::Erase { id, at_ms } => {
                        frame_with(framed, |p| {
                            p.push(REC_ERASE);
                            put_str(p, &id);
                            put_ivarint(p, at_ms);
                        });
                        records.push(Record::Erase { id, at_ms });
                        outcomes.push(AppendOutcome {
                            stored: 1,
                            duplicates: 0,
                        });
                        replies.push(req.reply);
                    }
                    Op::Freeze => freeze_replies.push(req.reply),
                }
            }
        }
        if !framed.is_empty() {
            if let Err(e) = wal.append_durable(framed) {
                let msg = format!("a write failed: {e}");
                tracing::error!(error = %msg, "write-ahead log write failed; the store is now read-only");
                *self.write_error.lock() = Some(msg.clone());
                for r in replies.into_iter().chain(freeze_replies) {
                    r(Err(StoreError::ReadOnly(msg.clone())));
                }
                return;
            }
        }
        let mut stored = 0u64;
        let mut dups = 0u64;
        for rec in records {
            self.apply(rec, false);
        }
        for (reply, out) in replies.into_iter().zip(outcomes) {
            stored += out.stored as u64;
            dups += out.duplicates as u64;
            reply(Ok(out));
        }
        self.appended.fetch_add(stored, Ordering::Relaxed);
        self.duplicates.fetch_add(dups, Ordering::Relaxed);
        for reply in freeze_replies {
            reply(self.freeze(wal));
        }
        self.maybe_start_flush();
    }

    /// Starts a background flush when enough rows are in memory and none is running.
    fn maybe_start_flush(self: &Arc<Self>) {
        let rows = self.state.read().mem_rows;
        if rows >= self.config.flush_rows && !self.flush_wanted.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            let h = std::thread::Builder::new()
                .name("itinera-flush".into())
                .spawn(move || {
                    let store = Store { inner: me.clone() };
                    if let Err(e) = me.flush(&store) {
                        tracing::error!(error = %e, "background flush failed");
                    }
                    me.flush_wanted.store(false, Ordering::Release);
                });
            if let Ok(h) = h {
                if let Some(old) = self.flusher.lock().replace(h) {
                    let _ = old.join();
                }
            }
        }
    }

    /// Starts a background compaction when none is running; it runs while segments are over
    /// the limit.
    fn maybe_start_compaction(self: &Arc<Self>) {
        if self.compact_wanted.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        let h = std::thread::Builder::new()
            .name("itinera-compact".into())
            .spawn(move || {
                while me.state.read().segments.len() > me.config.compact_after_segments {
                    match me.compact(false) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            tracing::error!(error = %e, "background compaction failed");
                            break;
                        }
                    }
                }
                me.compact_wanted.store(false, Ordering::Release);
            });
        match h {
            Ok(h) => {
                if let Some(old) = self.compactor.lock().replace(h) {
                    let _ = old.join();
                }
            }
            Err(_) => self.compact_wanted.store(false, Ordering::Release),
        }
    }

    /// A generation for a new file.
    fn new_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn freeze(&self, wal: &mut WalWriter) -> Result<AppendOutcome> {
        let seq = wal.rotate()?;
        let mut st = self.state.write();
        let mem = std::mem::take(&mut st.mem);
        st.frozen.extend(mem);
        st.mem_rows = 0;
        Ok(AppendOutcome {
            stored: seq as usize,
            duplicates: 0,
        })
    }

    /// Applies a durable record to the in-memory state (used by the writer and by replay).
    /// `replayed`: the message ids are not in the dedup map yet (the writer enters them as it
    /// checks them).
    fn apply(&self, rec: Record, replayed: bool) {
        match rec {
            Record::Touchpoints(batch) => self.apply_touchpoints(batch, replayed),
            Record::Erase { id, at_ms } => {
                let dicts = self.dicts.read();
                let Some(did) = dicts.ids().get(&id) else {
                    return;
                };
                let mut st = self.state.write();
                let root = st.identity.root(did);
                let members: Vec<u32> = (0..st.identity.len() as u32)
                    .filter(|d| st.identity.root(*d) == root)
                    .collect();
                let mut erased = (*st.erased).clone();
                for m in members {
                    erased.insert(m, at_ms);
                    st.pending_erased.push((m, at_ms));
                }
                st.erased = Arc::new(erased);
            }
        }
    }

    fn apply_touchpoints(&self, batch: Prepared, replayed: bool) {
        let Prepared {
            touchpoints,
            bodies,
            hashes,
            ..
        } = batch;
        let mut cols = Columns::with_capacity(touchpoints.len());
        let mut links = Vec::new();
        // the dictionaries stay locked until the rows are in the table, so that a compaction
        // (which takes both locks) sees every code in use when it blanks erased values
        let mut d = self.dicts.write();
        // neighbouring rows mostly share their person, event, channel, touchpoint and account
        // (a batch comes from one client): the last string of each dictionary is compared
        // before the dictionary is searched
        let mut last: [Option<(&str, u32)>; DICTS] = [None; DICTS];
        fn intern<'a>(
            d: &mut Dicts,
            last: &mut [Option<(&'a str, u32)>],
            k: usize,
            s: &'a str,
        ) -> u32 {
            match last[k] {
                Some((l, c)) if l == s => c,
                _ => {
                    let c = d.all[k].intern(s);
                    last[k] = Some((s, c));
                    c
                }
            }
        }
        for (t, hash) in touchpoints.iter().zip(hashes) {
            let did = intern(&mut d, &mut last, DICT_IDS, t.distinct_id());
            for (a, b) in t.identity_links() {
                let (a, b) = (d.all[DICT_IDS].intern(a), d.all[DICT_IDS].intern(b));
                links.push((a, b));
            }
            cols.did.push(did);
            cols.ts.push(t.timestamp_ms);
            cols.event
                .push(intern(&mut d, &mut last, DICT_EVENTS, &t.event));
            cols.channel
                .push(intern(&mut d, &mut last, DICT_CHANNELS, &t.channel));
            cols.touchpoint
                .push(intern(&mut d, &mut last, DICT_TOUCHPOINTS, &t.touchpoint));
            cols.kind.push(t.kind.code());
            cols.group.push(
                t.group_id
                    .as_deref()
                    .map_or(NO_GROUP, |g| intern(&mut d, &mut last, DICT_GROUPS, g)),
            );
            cols.revenue.push(t.revenue.unwrap_or(f64::NAN));
            cols.msg_hash.push(hash);
            cols.received_at.push(t.received_at_ms);
            for (k, v) in &t.props {
                cols.prop_key.push(d.all[DICT_PROP_KEYS].intern(k));
                cols.prop_val.push(d.all[DICT_PROP_VALUES].intern(v));
            }
            cols.end_props();
        }
        let ids_len = d.ids().len() as u32;
        let mut st = self.state.write();
        drop(d);
        st.identity.grow(ids_len);
        let mut changed = false;
        for (a, b) in links {
            if st.identity.link(a, b) {
                st.pending_links.push((a, b));
                changed = true;
            }
        }
        if changed {
            st.identity_version += 1;
        }
        if replayed && self.config.dedup_window_ms > 0 {
            for (h, r) in cols.msg_hash.iter().zip(&cols.received_at) {
                st.dedup.insert(*h, *r);
            }
        }
        st.mem_rows += cols.len();
        st.mem.push(Arc::new(MemChunk { cols, bodies }));
    }

    fn flush(self: &Arc<Self>, store: &Store) -> Result<()> {
        let _g = self.flush_lock.lock();
        let seq = store.call(Op::Freeze)?.stored as u64;
        let frozen: Vec<SharedChunk> = self.state.read().frozen.clone();
        let rows: usize = frozen.iter().map(|c| c.cols.len()).sum();
        let roots = Arc::new(self.state.read().identity.roots());
        let mut st_manifest = self.state.read().manifest.clone();
        let gen = self.new_generation();
        st_manifest.generation = st_manifest.generation.max(gen);
        let seg_dir = self.dir.join("seg");
        let mut new_segment = None;
        if rows > 0 {
            // sort all frozen rows by (person, time, arrival)
            let mut order: Vec<(u32, i64, u32, u32)> = Vec::with_capacity(rows);
            for (ci, c) in frozen.iter().enumerate() {
                for i in 0..c.cols.len() {
                    let d = c.cols.did[i] as usize;
                    let root = roots.get(d).copied().unwrap_or(d as u32);
                    order.push((root, c.cols.ts[i], ci as u32, i as u32));
                }
            }
            order.sort_unstable();
            let mut cols = Columns::with_capacity(rows);
            for &(_, _, ci, i) in &order {
                cols.push_from(&frozen[ci as usize].cols, i as usize);
            }
            let name = format!("{gen:010}.seg");
            let path = seg_dir.join(&name);
            let bodies = order
                .iter()
                .map(|&(_, _, ci, i)| Ok(frozen[ci as usize].bodies.get(i as usize).to_string()));
            segment::write(&path, &cols, bodies)?;
            let file = SegmentFile::open(&path)?;
            new_segment = Some(Arc::new(LoadedSegment {
                name: name.clone(),
                file,
                cols: Arc::new(cols),
            }));
            st_manifest.segments.push(name);
        }
        // the delta: strings, links and erasures since the last one
        let (delta, new_starts) = {
            // lock order everywhere: dictionaries, then state
            let d = self.dicts.read();
            let mut st = self.state.write();
            let mut delta = Delta {
                links: std::mem::take(&mut st.pending_links),
                erased: std::mem::take(&mut st.pending_erased),
                ..Default::default()
            };
            for (k, slot) in delta.dicts.iter_mut().enumerate() {
                let from = st.delta_starts[k];
                *slot = (from as u64, d.all[k].strings_from(from).to_vec());
            }
            let starts: [usize; DICTS] = std::array::from_fn(|k| d.all[k].len());
            (delta, starts)
        };
        let delta_name = format!("{gen:010}.delta");
        delta.write(&seg_dir.join(&delta_name))?;
        st_manifest.deltas.push(delta_name);
        st_manifest.wal_from = seq;
        wal::sync_dir(&seg_dir)?;
        st_manifest.commit(&self.dir)?;
        {
            let mut st = self.state.write();
            if let Some(s) = new_segment {
                st.segments.push(s);
            }
            let n = frozen.len();
            st.frozen.drain(..n);
            st.manifest = st_manifest;
            st.delta_starts = new_starts;
            let horizon = now_ms() - self.config.dedup_window_ms;
            if st.dedup.len() > 1_000_000 {
                st.dedup.retain(|_, r| *r >= horizon);
            }
        }
        wal::remove_before(&self.dir.join("wal"), seq)?;
        tracing::debug!(rows, generation = gen, "flushed memory to segment");
        let segs = self.state.read().segments.len();
        drop(_g);
        if segs > self.config.compact_after_segments {
            self.maybe_start_compaction();
        }
        Ok(())
    }

    /// Merges segments. `full`: all of them, with erased ids blanked from the dictionary for
    /// good, holding the flush lock throughout. Otherwise (after a flush) size-tiered: the
    /// smallest segments are merged until about half the limit is left, so each row is
    /// rewritten a logarithmic number of times, and flushes go on until the commit. Returns
    /// whether it merged anything.
    fn compact(&self, full: bool) -> Result<bool> {
        let _one_at_a_time = self.compact_lock.lock();
        let flush_guard = self.flush_lock.lock();
        let (all_segments, holders, erased, roots) = {
            let st = self.state.read();
            (
                st.segments.clone(),
                st.holders.clone(),
                st.erased.clone(),
                Arc::new(st.identity.roots()),
            )
        };
        let segments: Vec<Arc<LoadedSegment>> = if full {
            all_segments.clone()
        } else {
            let keep = (self.config.compact_after_segments / 2).max(1);
            if all_segments.len() <= keep {
                return Ok(false);
            }
            // the smallest segments, leaving `keep` - 1 segments out, up to the size bound
            let cap = self.config.compact_max_rows as u64;
            let mut by_size = all_segments.clone();
            by_size.retain(|s| s.file.footer.rows < cap);
            by_size.sort_by_key(|s| s.file.footer.rows);
            by_size.truncate((all_segments.len() + 1).saturating_sub(keep));
            let mut rows = 0u64;
            let fit = by_size
                .iter()
                .take_while(|s| {
                    rows += s.file.footer.rows;
                    rows <= cap
                })
                .count();
            by_size.truncate(fit.max(2));
            by_size
        };
        if segments.is_empty() || (!full && segments.len() < 2) {
            return Ok(false);
        }
        // the chosen segments stay in the store until this commits (compactions are one at a
        // time); a background merge lets flushes commit meanwhile
        let flush_guard = match full {
            true => Some(flush_guard),
            false => {
                drop(flush_guard);
                None
            }
        };
        // gather the rows to keep: not erased, first copy of each message id
        let total: usize = segments.iter().map(|s| s.cols.len()).sum();
        let mut seen = rustc_hash::FxHashSet::default();
        seen.reserve(total);
        let mut order: Vec<(u32, i64, u32, u32)> = Vec::new();
        for (si, s) in segments.iter().enumerate() {
            let c = &s.cols;
            for i in 0..c.len() {
                let d = c.did[i];
                if erased.get(&d).is_some_and(|t| c.received_at[i] <= *t) {
                    continue;
                }
                if !seen.insert(c.msg_hash[i]) {
                    continue;
                }
                let root = roots.get(d as usize).copied().unwrap_or(d);
                order.push((root, c.ts[i], si as u32, i as u32));
            }
        }
        order.sort_unstable();
        let mut cols = Columns::with_capacity(order.len());
        for &(_, _, si, i) in &order {
            cols.push_from(&segments[si as usize].cols, i as usize);
        }
        // where each input row's message is; a full compaction streams them in the output's
        // order, one decoded block per file in memory (each file is sorted by person, so its
        // rows are read mostly in order): memory does not grow with the data
        let locs_in: Vec<Vec<BodyLoc>> = segments
            .iter()
            .map(|s| s.file.load_body_locs(s.generation()))
            .collect::<Result<_>>()?;
        let loc_of = |si: u32, i: u32| locs_in[si as usize][i as usize];
        let mut files = message_files(&segments, &holders)?;
        // segments written before typed properties (format 1): derive them from the messages
        let legacy: Vec<bool> = segments
            .iter()
            .map(|s| s.file.footer.column("prop_count").is_none())
            .collect();
        if legacy.iter().any(|l| *l) {
            let mut d = self.dicts.write();
            let (mut key, mut val) = (Vec::new(), Vec::new());
            let mut end = Vec::with_capacity(order.len());
            for (row, &(_, _, si, i)) in order.iter().enumerate() {
                match legacy[si as usize] {
                    true => {
                        let b = files.get(loc_of(si, i))?;
                        for (k, v) in Touchpoint::props_from_body(b) {
                            key.push(d.all[DICT_PROP_KEYS].intern(&k));
                            val.push(d.all[DICT_PROP_VALUES].intern(&v));
                        }
                    }
                    false => {
                        let r = cols.prop_range(row);
                        key.extend_from_slice(&cols.prop_key[r.clone()]);
                        val.extend_from_slice(&cols.prop_val[r]);
                    }
                }
                end.push(key.len() as u32);
            }
            (cols.prop_key, cols.prop_val, cols.prop_end) = (key, val, end);
        }
        let gen = self.new_generation();
        let seg_dir = self.dir.join("seg");
        let name = format!("{gen:010}.seg");
        let path = seg_dir.join(&name);
        if full {
            let it = order
                .iter()
                .map(|&(_, _, si, i)| files.get(loc_of(si, i)).map(str::to_string));
            segment::write(&path, &cols, it)?;
        } else {
            // a background compaction rewrites the columns only: the messages stay where they
            // are, each compressed once, and the merged rows point to them
            let locs: Vec<BodyLoc> = order.iter().map(|&(_, _, si, i)| loc_of(si, i)).collect();
            segment::write_located(&path, &cols, &locs)?;
        }
        drop(files);
        drop(locs_in);
        let file = SegmentFile::open(&path)?;
        // the commit: against the manifest as it is now (flushes may have added segments)
        let _commit = match flush_guard {
            Some(g) => g,
            None => self.flush_lock.lock(),
        };
        let mut manifest = self.state.read().manifest.clone();
        manifest.generation = manifest.generation.max(gen);
        // one full dictionary with erased ids blanked, replacing all deltas
        let (delta, erased_dids) = {
            let mut d = self.dicts.write();
            let mut st = self.state.write();
            // after a full compaction no row of an erased id is left: blank the id strings for good
            let erased_dids: Vec<u32> = if full {
                st.erased.keys().copied().collect()
            } else {
                Vec::new()
            };
            for did in &erased_dids {
                d.all[DICT_IDS].erase(*did);
            }
            if !erased_dids.is_empty() {
                // property values no row uses any more (an erased person's email, name…) go too
                let mut used = vec![false; d.all[DICT_PROP_VALUES].len()];
                let chunks = st.mem.iter().chain(&st.frozen).map(|c| &c.cols);
                for c in std::iter::once(&cols).chain(chunks) {
                    for v in &c.prop_val {
                        used[*v as usize] = true;
                    }
                }
                for (code, used) in used.iter().enumerate() {
                    if !used {
                        d.all[DICT_PROP_VALUES].erase(code as u32);
                    }
                }
            }
            let mut delta = Delta::default();
            for k in 0..DICTS {
                delta.dicts[k] = (0, d.all[k].strings_from(0).to_vec());
                st.delta_starts[k] = d.all[k].len();
            }
            delta.links = st.identity.edges().collect();
            st.pending_links.clear();
            st.pending_erased.clear();
            delta.erased = st.erased.iter().map(|(k, v)| (*k, *v)).collect();
            (delta, erased_dids)
        };
        let delta_name = format!("{gen:010}.delta");
        delta.write(&seg_dir.join(&delta_name))?;
        wal::sync_dir(&seg_dir)?;
        let compacted: HashSet<&str> = segments.iter().map(|s| s.name.as_str()).collect();
        // after a background compaction, the inputs that hold messages stay for them; a full
        // compaction rewrote every message, so no holder is left
        let new_holders: Vec<Arc<HolderFile>> = match full {
            true => Vec::new(),
            false => segments
                .iter()
                .filter(|s| s.file.footer.holds_bodies())
                .map(|s| {
                    Arc::new(HolderFile {
                        name: s.name.clone(),
                        file: s.file.clone(),
                    })
                })
                .collect(),
        };
        let kept: HashSet<&str> = new_holders.iter().map(|h| h.name.as_str()).collect();
        let dropped_holders: &[String] = if full { &manifest.holders } else { &[] };
        let old: Vec<String> = manifest
            .segments
            .iter()
            .filter(|s| compacted.contains(s.as_str()) && !kept.contains(s.as_str()))
            .chain(&manifest.deltas)
            .chain(dropped_holders)
            .cloned()
            .collect();
        if full {
            manifest.holders.clear();
        }
        manifest
            .holders
            .extend(new_holders.iter().map(|h| h.name.clone()));
        manifest.segments = std::iter::once(name.clone())
            .chain(
                manifest
                    .segments
                    .iter()
                    .filter(|s| !compacted.contains(s.as_str()))
                    .cloned(),
            )
            .collect();
        manifest.deltas = vec![delta_name];
        manifest.commit(&self.dir)?;
        {
            let mut st = self.state.write();
            // the segments not chosen stay; the compacted ones are replaced
            let rest: Vec<Arc<LoadedSegment>> = st
                .segments
                .iter()
                .filter(|s| !compacted.contains(s.name.as_str()))
                .cloned()
                .collect();
            st.segments = std::iter::once(Arc::new(LoadedSegment {
                name,
                file,
                cols: Arc::new(cols),
            }))
            .chain(rest)
            .collect();
            if full {
                st.holders.clear();
            }
            st.holders.extend(new_holders);
            st.manifest = manifest;
        }
        for f in old {
            let _ = std::fs::remove_file(seg_dir.join(f));
        }
        wal::sync_dir(&seg_dir)?;
        tracing::info!(
            generation = gen,
            segments = segments.len(),
            full,
            erased_ids = erased_dids.len(),
            "compacted segments"
        );
        Ok(true)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.lock().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use itinera_core::MessageType;

    fn touchpoints(n: usize) -> Vec<Touchpoint> {
        (0..n)
            .map(|i| Touchpoint {
                kind: MessageType::Track,
                message_id: format!("m{i}"),
                timestamp_ms: 1_700_000_000_000 + i as i64,
                received_at_ms: 1_700_000_000_000,
                user_id: Some(format!("u{}", i % 7)),
                anonymous_id: None,
                previous_id: None,
                group_id: None,
                event: "Product Viewed".into(),
                channel: "search".into(),
                touchpoint: "Product Viewed".into(),
                revenue: (i % 3 == 0).then_some(9.5),
                props: Vec::new(),
                body: format!(r#"{{"type":"track","event":"Product Viewed","messageId":"m{i}"}}"#),
            })
            .collect()
    }

    /// The payload of the one frame `encode_record` writes.
    fn payload(framed: &[u8]) -> &[u8] {
        let len = u32::from_le_bytes(framed[..4].try_into().unwrap()) as usize;
        assert_eq!(framed.len(), 8 + len);
        &framed[8..]
    }

    #[test]
    fn log_records_are_compressed_and_read_back() {
        let p = Prepared::new(touchpoints(500));
        let rec = payload(&p.framed);
        assert_eq!(rec[0], REC_LZ4);
        let raw_size: usize = p.bodies.byte_len() + 500 * 40;
        assert!(rec.len() * 3 < raw_size, "{} of {raw_size}", rec.len());
        let Record::Touchpoints(back) = decode_record(rec).unwrap() else {
            panic!("not touchpoints")
        };
        assert_eq!(back.hashes, p.hashes);
        assert_eq!(back.touchpoints.len(), 500);
        assert_eq!(back.touchpoints[42].message_id, "m42");
        assert_eq!(back.touchpoints[42].revenue, Some(9.5));
        assert_eq!(back.bodies.get(42), p.bodies.get(42));
    }

    #[test]
    fn damaged_compressed_records_are_errors() {
        let p = Prepared::new(touchpoints(200));
        let rec = payload(&p.framed).to_vec();
        // every truncation and a flipped byte anywhere: an error or a record, never a panic
        for cut in 0..rec.len() {
            let _ = decode_record(&rec[..cut]);
        }
        for at in 0..rec.len() {
            let mut bad = rec.clone();
            bad[at] ^= 0x5a;
            let _ = decode_record(&bad);
        }
        // a claimed length beyond what LZ4 can expand to is refused before any allocation
        let mut huge = vec![REC_LZ4];
        crate::codec::put_uvarint(&mut huge, 1 << 29);
        huge.extend_from_slice(&[0x10, 0x41]);
        let err = decode_record(&huge).err().expect("refused").to_string();
        assert!(err.contains("out of range"), "{err}");
        // a compressed record must hold touchpoints, not another compressed record
        let mut nested = vec![REC_LZ4];
        crate::codec::put_uvarint(&mut nested, rec.len() as u64);
        nested.extend_from_slice(&lz4_flex::block::compress(&rec));
        assert!(decode_record(&nested).is_err());
    }
}

use crate::delta::Delta;
use crate::error::{Result, StoreError};
use crate::manifest::Manifest;
use crate::segment::{self, SegmentFile};
use crate::wal::{self, WalWriter};
use itinera_core::clock::now_ms;
use itinera_core::IdentityGraph;
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use super::*;

/// Times a reader beside a live writer opens again when a flush or compaction committed while it
/// was opening, waiting a little longer each time (a reader short of CPU beside a busy writer
/// must get through between two commits).
const READ_ONLY_ATTEMPTS: usize = 50;

impl Store {
    /// Opens the store in `dir`, creating it if empty, replaying the log.
    ///
    /// Opened for reading only beside a serving process, a flush or compaction may commit a new
    /// manifest and delete the log files or segments the old one named while this opens. The
    /// reader keeps the state it read when every file its manifest names was still there — the
    /// segments, and the log from the manifest's first file on without a gap — and otherwise
    /// starts again: it never combines the segments of one state with the log of a later one,
    /// which would miss rows.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store> {
        if !config.read_only {
            return Store::open_once(dir, config).map(|(s, _)| s);
        }
        for attempt in 1..=READ_ONLY_ATTEMPTS {
            match Store::open_once(dir, config.clone()) {
                Ok((store, true)) => return Ok(store),
                Ok((_, false)) => {
                    tracing::debug!(attempt, "log files went away while opening; opening again");
                }
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    tracing::debug!(attempt, "a file went away while opening; opening again");
                }
                Err(e) => return Err(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(attempt as u64 * 5));
        }
        Err(StoreError::Invalid(format!(
            "{} kept changing while it was opened for reading ({READ_ONLY_ATTEMPTS} attempts); try again",
            dir.display()
        )))
    }

    /// Takes damaged regions out of the write-ahead log of the store in `dir` and keeps them
    /// beside it ([`wal::recover`]), so that the store opens again. Refused while another process
    /// has the store open.
    pub fn recover(dir: &Path) -> Result<wal::RecoverReport> {
        let lock_path = dir.join("LOCK");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StoreError::io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::InUse(dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io(&lock_path)(e)),
        }
        let report = wal::recover(&dir.join("wal"))?;
        for (from, kept, bytes) in &report.set_aside {
            tracing::warn!(log = %from.display(), kept = %kept.display(), bytes, "damaged log bytes set aside");
        }
        Ok(report)
    }

    /// Opens once; with whether the log read was the whole log the manifest names.
    fn open_once(dir: &Path, config: StoreConfig) -> Result<(Store, bool)> {
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
        // the log files the manifest names, held open before the slow part (loading segments),
        // so that a flush deleting them meanwhile cannot make a reader start again
        let wal_dir = dir.join("wal");
        let pinned_log = wal::pin(&wal_dir, manifest.wal_from)?;
        let locked = (!config.read_only).then_some(dir_lock);
        // the deltas (dictionaries, identities: one thread) are decoded while the segments load
        let (read, loaded) = std::thread::scope(|s| {
            let loaded = s.spawn(|| load_segments(dir, &manifest, &config));
            let read = read_deltas(dir, &manifest);
            (read, loaded.join().expect("loading the segments"))
        });
        let (dicts, identity, erased) = read?;
        let LoadedFiles {
            segments,
            holders,
            recent,
        } = loaded?;
        if !config.read_only {
            remove_orphans(dir, &manifest)?;
        }
        if !config.read_only && !config.compaction_only {
            // a server's first queries should not wait for decoding: it decodes the events,
            // which every journey query reads, in the background (the other columns when a
            // query first reads them; a reader decodes only what its query reads)
            let decode: Vec<Arc<LoadedSegment>> = segments.clone();
            std::thread::Builder::new()
                .name("itinera-decode".into())
                .spawn(move || {
                    for s in decode {
                        let _ = s.cols.event.len();
                    }
                })
                .map_err(|e| StoreError::Io {
                    path: dir.to_path_buf(),
                    source: e,
                })?;
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
            dedup: recent.build(),
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
            write_probe_ms: std::sync::atomic::AtomicI64::new(0),
            appended: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            snapshot_cache: Mutex::new(Default::default()),
        });

        let report = inner.replay(pinned_log)?;
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
            return Ok((Store { inner }, report.complete));
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
        Ok((Store { inner }, true))
    }
}

/// The dictionaries, identity links and erasures of the manifest's deltas, in order.
fn read_deltas(
    dir: &Path,
    manifest: &Manifest,
) -> Result<(Dicts, IdentityGraph, HashMap<u32, i64>)> {
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
    Ok((dicts, identity, erased))
}

/// The files a manifest names, opened.
struct LoadedFiles {
    /// With their columns loaded.
    segments: Vec<Arc<LoadedSegment>>,
    /// Files kept for the messages in them.
    holders: Vec<Arc<HolderFile>>,
    /// The hashes of the stored rows within the duplicate window (for a writer's check).
    recent: super::recent_ids::RecentIdsBuilder,
}

/// The manifest's segments with their columns loaded, its holders of messages, and the hashes
/// of the stored rows within the duplicate window.
fn load_segments(dir: &Path, manifest: &Manifest, config: &StoreConfig) -> Result<LoadedFiles> {
    let mut segments = Vec::new();
    // the hashes of the stored rows within the window, for the duplicate check
    let mut recent = super::recent_ids::RecentIdsBuilder::default();
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
        // the duplicate check guards writes: a reader (a query, an export) never writes,
        // and building it was a tenth of a cold query on 10M recent events. A writer skips
        // files whose rows were all received before its window.
        let in_window = !config.read_only
            && !config.compaction_only
            && file
                .footer
                .max_received_at
                .is_none_or(|latest| latest >= horizon);
        // a file in the window has its hashes read (and checked) just below: once is enough
        let cols = match config.compaction_only {
            true => file.load_columns_lean()?,
            false => file.load_columns_for(!config.read_only && !in_window)?,
        };
        if in_window {
            let (hashes, received) = file.hashes_and_receive_times()?;
            recent.extend(
                hashes
                    .into_iter()
                    .zip(received)
                    .filter(|(_, r)| *r >= horizon),
            );
        }
        segments.push(Arc::new(LoadedSegment {
            name: name.clone(),
            file,
            cols: Arc::new(cols),
        }));
    }
    Ok(LoadedFiles {
        segments,
        holders,
        recent,
    })
}

pub(super) fn remove_orphans(dir: &Path, m: &Manifest) -> Result<()> {
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

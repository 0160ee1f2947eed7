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
//!
//! Files: `config` (tuning, dictionary numbers), `state` (what the writer, flushes and readers
//! share), `open` (opening and replaying the log), `writer` (the writer thread, group commit and
//! the in-memory table), `flush`, `compaction`; the log record format is in `crate::wal::record`.

use crate::columns::{Columns, SharedChunk};
use crate::error::{Result, StoreError};
use crate::scan::Snapshot;
use crate::segment::BodyLoc;
use itinera_core::clock::now_ms;
use itinera_core::Touchpoint;
use std::path::Path;
use std::sync::Arc;

mod coded;
mod compaction;
mod config;
mod flush;
mod merge;
mod open;
mod priority;
mod recent_ids;
mod replay;
mod snapshots;
mod state;
mod writer;

pub use crate::wal::record::check_log_record;
use crate::wal::record::*;
pub use config::{
    StoreConfig, DICT_CHANNELS, DICT_EVENTS, DICT_GROUPS, DICT_IDS, DICT_PROP_KEYS,
    DICT_PROP_VALUES, DICT_TOUCHPOINTS,
};
pub use snapshots::SnapshotBuilds;
use state::*;
pub use state::{Dicts, HolderFile, LoadedSegment, StoreMemory, StoreStats};
use writer::*;
pub use writer::{AppendOutcome, AppendPipeline};

/// A handle to one store (one project's data). Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends touchpoints; `reply` is called once they are durable (or failed).
    pub fn append_async(
        &self,
        batch: Vec<Touchpoint>,
        reply: impl FnOnce(Result<AppendOutcome>) + Send + 'static,
    ) {
        if self.inner.config.compaction_only {
            return reply(Err(StoreError::ReadOnly("opened to compact".into())));
        }
        self.send(Op::Append(Prepared::new(batch)), Box::new(reply));
    }

    /// Appends touchpoints and waits until they are durable.
    pub fn append(&self, batch: Vec<Touchpoint>) -> Result<AppendOutcome> {
        if self.inner.config.compaction_only {
            return Err(StoreError::ReadOnly("opened to compact".into()));
        }
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
    /// Every id linked to `id` (itself included): the person as erasure reaches them.
    pub fn linked_ids(&self, id: &str) -> Vec<String> {
        let dicts = self.inner.dicts.read();
        let Some(did) = dicts.ids().get(id) else {
            return Vec::new();
        };
        let st = self.inner.state.read();
        let root = st.identity.root(did);
        (0..st.identity.len() as u32)
            .filter(|d| st.identity.root(*d) == root)
            .map(|d| dicts.ids().name(d).to_string())
            .collect()
    }

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
            // after a failed write, one request a second goes through to find out whether the
            // log is writable again (a full disk freed); the rest are refused meanwhile
            let (now, probe) = (now_ms(), &self.inner.write_probe_ms);
            let last = probe.load(std::sync::atomic::Ordering::Relaxed);
            let probing = !self.inner.config.read_only
                && now - last >= 1000
                && probe
                    .compare_exchange(
                        last,
                        now,
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    )
                    .is_ok();
            if !probing {
                return reply(Err(StoreError::ReadOnly(e)));
            }
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

    /// Rewrites all segments into segments of whole persons within the compaction's memory
    /// budget (one, up to `compact_memory_bytes` / 64 rows): identities folded in, erased
    /// persons and duplicates removed from the files.
    pub fn compact(&self) -> Result<()> {
        self.flush()?;
        self.inner.compact(true).map(|_| ())
    }

    /// The distinct ids of rows received after `received_ms` (segments and memory), each once:
    /// what a trigger evaluator must look at again after a crash.
    pub fn ids_received_since(&self, received_ms: i64) -> Vec<String> {
        let mut codes = std::collections::BTreeSet::new();
        {
            let st = self.inner.state.read();
            // segments received wholly before are passed over by their footers; the others'
            // receive times are read once, not kept (this runs at every start of a server with
            // triggers)
            let segments = st
                .segments
                .iter()
                .filter(|s| {
                    (s.file.footer.max_received_at).is_none_or(|latest| latest > received_ms)
                })
                .map(|s| &*s.cols);
            let chunks = segments.chain(st.frozen.iter().chain(st.mem.iter()).map(|m| &m.cols));
            for c in chunks {
                for (i, r) in c.received_at.peek().iter().enumerate() {
                    if *r > received_ms {
                        codes.insert(c.did[i]);
                    }
                }
            }
        }
        let dicts = self.dicts();
        codes
            .into_iter()
            .map(|d| dicts.ids().strings_from(0)[d as usize].clone())
            .filter(|s| !s.is_empty())
            .collect()
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
            for (i, b) in c.bodies()?.iter().enumerate() {
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

    /// What the store holds in memory, by part. Takes no snapshot and decodes nothing.
    pub fn memory(&self) -> StoreMemory {
        let cache = self.inner.snapshot_cache.lock().heap_bytes();
        // lock order everywhere: dictionaries, then state
        let dictionaries = self
            .inner
            .dicts
            .read()
            .all
            .iter()
            .map(|d| d.heap_bytes())
            .sum();
        let st = self.inner.state.read();
        let chunks = || st.frozen.iter().chain(&st.mem);
        let bytes = |n: usize| n as u64;
        StoreMemory {
            segment_columns: bytes(st.segments.iter().map(|s| s.cols.heap_bytes()).sum()),
            memory_columns: bytes(chunks().map(|c| c.cols.heap_bytes()).sum()),
            memory_messages: bytes(chunks().map(|c| c.record.len()).sum()),
            query_copies: bytes(cache),
            duplicate_check: bytes(st.dedup.heap_bytes()),
            dictionaries: bytes(dictionaries),
            identities: bytes(
                st.identity.heap_bytes()
                    + st.roots_cache.as_ref().map_or(0, |(_, r)| r.capacity() * 4),
            ),
        }
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

pub(super) fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use itinera_core::{message, ChannelRules, NormalizeOptions};
    use itinera_engine::journey::JourneyColumns;
    use itinera_engine::ScanOptions;

    fn track(id: &str, user: &str, event: &str, minute: i64) -> Touchpoint {
        let text = serde_json::json!({"type": "track", "messageId": id, "userId": user,
            "event": event, "properties": {"plan": "pro"},
            "timestamp": message::format_ts(1_699_000_000_000 + minute * 60_000)})
        .to_string();
        let m = message::normalize(
            &text,
            None,
            None,
            &NormalizeOptions::at(1_700_000_000_000),
            || "gen".into(),
        )
        .unwrap();
        Touchpoint::from_message(m, &ChannelRules::default())
    }

    #[test]
    fn a_writer_leaves_the_duplicate_check_of_files_received_before_its_window() {
        // the rows were received in 2023, long before the 7-day window
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
            let rows = (0..20)
                .map(|i| track(&format!("m{i}"), "u", "a", i))
                .collect();
            s.append(rows).unwrap();
            s.flush().unwrap();
            s.close();
        }
        let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
        {
            let st = s.inner.state.read();
            let c = &st.segments[0].cols;
            assert_eq!(
                st.segments[0].file.footer.max_received_at,
                Some(1_700_000_000_000)
            );
            assert!(!c.msg_hash.is_decoded() && !c.received_at.is_decoded());
            assert_eq!(st.dedup.len(), 0);
        }
        // within the window (a window reaching back to 2023), the check is built
        s.close();
        let wide = StoreConfig {
            dedup_window_ms: i64::MAX / 2,
            ..Default::default()
        };
        let s = Store::open(dir.path(), wide).unwrap();
        assert_eq!(s.inner.state.read().dedup.len(), 20);
    }

    /// A flush folds the ids entered since into the duplicate check's sorted array (off the
    /// writer), and those ids are still duplicates afterwards, in the array.
    #[test]
    fn a_flush_folds_the_duplicate_check_and_it_still_catches_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let n = 70_000;
        let row = |i: usize| {
            let mut t = track(&format!("m{i}"), &format!("u{}", i % 100), "a", 1);
            t.received_at_ms = now_ms();
            t
        };
        for from in (0..n).step_by(10_000) {
            s.append((from..from + 10_000).map(row).collect()).unwrap();
        }
        let sorted = |s: &Store| s.inner.state.read().dedup.sorted_len();
        assert_eq!(sorted(&s), 0, "nothing folded before the flush");
        s.flush().unwrap();
        assert_eq!(sorted(&s), n, "the flush folded every id");
        let again = s.append((0..n).step_by(7).map(row).collect()).unwrap();
        assert_eq!((again.stored, again.duplicates), (0, n.div_ceil(7)));
        let new = s.append(vec![row(n)]).unwrap();
        assert_eq!(new.stored, 1);
    }

    /// An erasure hides a person's rows received before it, and a person who comes back after
    /// it is seen again, without the segments' receive times being kept in memory by the
    /// queries that check each row; the trigger recovery's scan of recent ids reads them once.
    #[test]
    fn erasures_and_recent_ids_keep_no_receive_times_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let at = |id: &str, user: &str, event: &str, received: i64| {
            let mut t = track(id, user, event, 5);
            t.received_at_ms = received;
            t
        };
        let now = now_ms();
        let before = vec![
            at("m1", "u", "gone", now - 10_000),
            at("m2", "v", "kept", now - 10_000),
        ];
        s.append(before).unwrap();
        s.flush().unwrap();
        assert_eq!(s.erase_person("u").unwrap(), 1);
        s.append(vec![at("m3", "u", "back", now + 60_000)]).unwrap();
        s.flush().unwrap();
        let snap = s.snapshot();
        let parts = snap.scan_persons(&ScanOptions::default(), Vec::new, |acc, p| {
            acc.push(p.event.to_vec())
        });
        let d = s.dicts();
        let mut events: Vec<String> = parts
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| d.events().name(e).to_string())
            .collect();
        drop(d);
        events.sort();
        assert_eq!(events, ["back", "kept"]);
        assert_eq!(s.ids_received_since(now - 5_000), ["u"]);
        let st = s.inner.state.read();
        assert_eq!(st.segments.len(), 2);
        for seg in &st.segments {
            assert!(!seg.cols.received_at.is_decoded(), "receive times not kept");
        }
    }

    /// Rows of equal time in segments whose receive times overlap (so the segments' ranges
    /// cannot decide) come in the order received, both ways round, and the query keeps lags
    /// behind the rows' times, not the segments' receive times, decoded.
    #[test]
    fn equal_times_in_overlapping_segments_are_ordered_by_receive_time() {
        let at = |id: &str, user: &str, event: &str, lag: i64| {
            let mut t = track(id, user, event, 5);
            t.received_at_ms = t.timestamp_ms + lag;
            t
        };
        // the first segment's rows were received 0 and 30 ms after the time; the second's one
        // row 15 ms after: its range lies within the first's
        for (lag, want) in [(5, ["first", "second"]), (25, ["second", "first"])] {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
            let first = vec![
                at("m1", "u", "first", lag),
                at("m2", "v", "early", 0),
                at("m3", "v", "late", 30),
            ];
            s.append(first).unwrap();
            s.flush().unwrap();
            s.append(vec![at("m4", "u", "second", 15)]).unwrap();
            s.flush().unwrap();
            let snap = s.snapshot();
            let parts = snap.scan_persons(&ScanOptions::default(), Vec::new, |acc, p| {
                acc.push(p.event.to_vec())
            });
            let d = s.dicts();
            let name = |e: &u32| d.events().name(*e).to_string();
            let u = d.ids().get("u").unwrap();
            let journeys: Vec<Vec<String>> = parts
                .into_iter()
                .flatten()
                .map(|events| events.iter().map(name).collect())
                .filter(|events: &Vec<String>| events.len() == 2 && events[0] != "early")
                .collect();
            assert_eq!(journeys, [want], "lag {lag} (person u is code {u})");
            let st = s.inner.state.read();
            assert_eq!(st.segments.len(), 2);
            for seg in &st.segments {
                assert!(!seg.cols.received_at.is_decoded(), "receive times not kept");
            }
            assert!(
                st.segments
                    .iter()
                    .any(|seg| seg.cols.receive_lags.get().is_some()),
                "the tie was decided by the lags"
            );
        }
    }

    #[test]
    fn a_scan_decodes_only_the_columns_it_asks_for() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
            // each person has rows of equal time (minute i / 14 for rows i and i + 7)
            let rows = (0..50)
                .map(|i| track(&format!("m{i}"), &format!("u{}", i % 7), "a", i / 14))
                .collect();
            s.append(rows).unwrap();
            s.flush().unwrap();
        }
        let config = StoreConfig {
            read_only: true,
            ..Default::default()
        };
        let s = Store::open(dir.path(), config).unwrap();
        let decoded = |s: &Store| {
            let st = s.inner.state.read();
            let c = &st.segments[0].cols;
            [
                c.event.is_decoded(),
                c.channel.is_decoded(),
                c.msg_hash.is_decoded(),
                c.received_at.is_decoded(),
                c.prop_key.is_decoded(),
            ]
        };
        // rows with exactly one property, over every journey a scan of `columns` hands over
        let one_prop_rows = |columns: JourneyColumns| -> usize {
            let opts = ScanOptions {
                columns,
                ..Default::default()
            };
            let parts = s.snapshot().scan_batches(
                &opts,
                || 0,
                |n, b| {
                    for k in 0..b.persons.len() {
                        let j = b.journey(k);
                        let props = !j.props.end.is_empty();
                        *n += (0..j.len())
                            .filter(|&i| !props || j.props.row(i).0.len() == 1)
                            .count()
                    }
                },
            );
            parts.iter().sum()
        };
        assert_eq!(decoded(&s), [false; 5], "nothing decoded at open");
        assert_eq!(one_prop_rows(JourneyColumns::NONE), 50);
        // ties within one id need no receive times
        assert_eq!(
            decoded(&s),
            [true, false, false, false, false],
            "events read"
        );
        assert_eq!(one_prop_rows(JourneyColumns::PROPS), 50);
        assert!(decoded(&s)[4], "properties decoded on demand");
        // a reader does not even read the message hashes at open; read later, they are right
        assert!(!s.inner.state.read().segments[0].cols.msg_hash.is_decoded());
        let mut hashes = s.inner.state.read().segments[0].cols.msg_hash.to_vec();
        hashes.sort_unstable();
        let mut want: Vec<u64> = (0..50)
            .map(|i| crate::columns::message_hash(&format!("m{i}")))
            .collect();
        want.sort_unstable();
        assert_eq!(hashes, want);
    }

    /// Every row of every journey a scan of all columns hands over, as text (codes are the
    /// store's own, so two states of one store compare).
    fn every_column(s: &Store) -> Vec<String> {
        every_column_of(&s.snapshot())
    }

    fn every_column_of(snapshot: &Snapshot) -> Vec<String> {
        let parts = snapshot.scan_batches(
            &ScanOptions::default(),
            Vec::new,
            |out: &mut Vec<String>, b| {
                for k in 0..b.persons.len() {
                    let j = b.journey(k);
                    for i in 0..j.len() {
                        out.push(format!(
                            "{} {} {} {} {} {} {} {:?} {:?}",
                            j.person,
                            j.ts[i],
                            j.event[i],
                            j.channel[i],
                            j.touchpoint[i],
                            j.kind[i],
                            j.group[i],
                            j.revenue[i],
                            j.props.row(i)
                        ));
                    }
                }
            },
        );
        let mut rows: Vec<String> = parts.into_iter().flatten().collect();
        rows.sort();
        rows
    }

    /// Rows of several persons over several appends (so that sorting them moves them between
    /// chunks), with properties, channels and revenue that differ from row to row.
    fn varied_rows(from: usize, n: usize) -> Vec<Touchpoint> {
        (from..from + n)
            .map(|i| {
                let mut t = track(&format!("m{i}"), &format!("u{}", i % 5), "a", i as i64);
                t.channel = format!("c{}", i % 3);
                t.touchpoint = format!("t{}", i % 4);
                t.revenue = (i % 2 == 0).then_some(i as f64);
                t.props = (0..i % 3)
                    .map(|k| (format!("k{k}"), format!("v{i}")))
                    .collect();
                t
            })
            .collect()
    }

    #[test]
    fn sorted_copies_of_memory_rows_gather_their_other_columns_when_first_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
        for k in 0..6 {
            s.append(varied_rows(k * 7, 7)).unwrap();
            // a snapshot between appends: the copies grow by tails that merge
            s.snapshot();
        }
        let copies_hold = |s: &Store| {
            let cache = s.inner.snapshot_cache.lock();
            let copies = cache.memory_copies();
            assert!(!copies.is_empty(), "copies of the rows in memory");
            copies
                .iter()
                .map(|p| {
                    [
                        p.chunk().channel.is_decoded(),
                        p.chunk().prop_key.is_decoded(),
                    ]
                })
                .collect::<Vec<_>>()
        };
        assert!(
            copies_hold(&s).iter().all(|d| *d == [false, false]),
            "nothing but the hot columns copied"
        );
        let m = s.memory();
        assert!(
            m.query_copies < m.memory_columns,
            "copies of 4 columns are smaller than the rows: {m:?}"
        );
        let in_memory = every_column(&s);
        assert!(copies_hold(&s).iter().all(|d| *d == [true, true]));
        s.flush().unwrap();
        assert_eq!(
            every_column(&s),
            in_memory,
            "as the flushed segment has them"
        );
        assert_eq!(in_memory.len(), 42);
    }

    /// A snapshot's person index is written into the buffers of the one before when no query
    /// holds that any more: one still held keeps its own, and every snapshot reads what was
    /// stored when it was taken.
    #[test]
    fn a_snapshot_held_by_a_query_keeps_its_index_while_newer_ones_are_built() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
        s.append(varied_rows(0, 20)).unwrap();
        s.flush().unwrap();
        s.append(varied_rows(20, 9)).unwrap();
        let held = s.snapshot();
        let first = every_column_of(&held);
        assert_eq!(first.len(), 29);
        let mut counts = Vec::new();
        for k in 0..4 {
            s.append(varied_rows(29 + k * 6, 6)).unwrap();
            // each snapshot dropped before the next is built: its buffers are taken
            counts.push(every_column(&s).len());
        }
        assert_eq!(counts, [35, 41, 47, 53]);
        assert_eq!(
            every_column_of(&held),
            first,
            "the held snapshot is unchanged"
        );
        s.flush().unwrap();
        let all = every_column(&s);
        assert_eq!(all.len(), 53);
        assert!(first.iter().all(|row| all.contains(row)));
        let builds = s.take_snapshot_builds();
        // the held one, the four between appends, the one after the flush; none reused
        assert_eq!(builds.built, 6, "{builds:?}");
        s.snapshot();
        assert_eq!(
            s.take_snapshot_builds(),
            SnapshotBuilds::default(),
            "nothing changed: the last one is reused, not built"
        );
    }

    #[test]
    fn a_flushed_segment_keeps_decoded_only_what_every_journey_query_reads() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
        s.append(varied_rows(0, 40)).unwrap();
        let in_memory = every_column(&s);
        s.flush().unwrap();
        let decoded = |s: &Store| {
            let st = s.inner.state.read();
            let c = &st.segments[0].cols;
            [
                c.event.is_decoded(),
                c.channel.is_decoded(),
                c.prop_key.is_decoded(),
                c.msg_hash.is_decoded(),
            ]
        };
        assert_eq!(decoded(&s), [true, false, false, false]);
        let before = s.memory().segment_columns;
        // the cold columns are read back from the file when first read, as they were
        assert_eq!(every_column(&s), in_memory);
        assert_eq!(decoded(&s), [true, true, true, false]);
        assert!(s.memory().segment_columns > before);
    }

    #[test]
    fn a_compaction_merges_every_column_without_keeping_its_inputs_decoded() {
        let (dir, reference_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
        // the same rows, left in memory (scanning the store itself would decode its columns)
        let reference = Store::open(reference_dir.path(), StoreConfig::default()).unwrap();
        for k in 0..3 {
            s.append(varied_rows(k * 30, 30)).unwrap();
            reference.append(varied_rows(k * 30, 30)).unwrap();
            s.flush().unwrap();
        }
        // a retry of a stored message, which the merge drops
        let mut again = varied_rows(5, 1);
        again[0].received_at_ms += 1;
        let mut expected = every_column(&reference);
        s.inner.state.write().dedup = Default::default();
        s.append(again).unwrap();
        s.flush().unwrap();
        let inputs: Vec<Arc<Columns>> = s
            .inner
            .state
            .read()
            .segments
            .iter()
            .map(|seg| seg.cols.clone())
            .collect();
        assert_eq!(inputs.len(), 4);
        s.compact().unwrap();
        assert_eq!(s.inner.state.read().segments.len(), 1);
        assert!(
            inputs
                .iter()
                .all(|c| !c.channel.is_decoded() && !c.prop_key.is_decoded()),
            "the inputs' columns were read without being kept"
        );
        let mut merged = every_column(&s);
        expected.sort();
        merged.sort();
        assert_eq!(merged, expected);
    }

    /// A background merge writes one segment whatever the budget (a full compaction writes
    /// persons apart within it): a merge that wrote as many segments as it read would start
    /// the next one on the same segments, without end.
    #[test]
    fn a_background_merge_within_a_small_budget_writes_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            compact_memory_bytes: 64 * 40,
            compact_after_segments: 1_000,
            ..Default::default()
        };
        let s = Store::open(dir.path(), config.clone()).unwrap();
        for k in 0..4 {
            s.append(varied_rows(k * 30, 30)).unwrap();
            s.flush().unwrap();
        }
        let expected = every_column(&s);
        s.close();
        let config = StoreConfig {
            compact_after_segments: 2,
            ..config
        };
        let s = Store::open(dir.path(), config).unwrap();
        let segments = |s: &Store| s.inner.state.read().segments.len();
        assert_eq!(segments(&s), 4);
        // the two smallest (30 rows each, 60 together: more than the budget's 40)
        assert!(s.inner.compact(false).unwrap());
        assert_eq!(segments(&s), 3);
        assert_eq!(every_column(&s), expected);
    }

    #[test]
    fn the_duplicate_check_forgets_ids_received_long_before_its_window_at_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
        // received in 2023, long before the 7-day window, and two received now
        let mut rows: Vec<Touchpoint> = (0..20)
            .map(|i| track(&format!("m{i}"), "u", "a", i))
            .collect();
        for (i, t) in (20..22).map(|i| (i, track(&format!("m{i}"), "u", "a", i))) {
            rows.push(Touchpoint {
                received_at_ms: now_ms() - i,
                ..t
            });
        }
        s.append(rows).unwrap();
        let again = |id: &str| s.append(vec![track(id, "u", "a", 0)]).unwrap();
        assert_eq!(
            again("m3").duplicates,
            1,
            "entered on arrival, whatever their age"
        );
        s.flush().unwrap();
        assert_eq!(
            s.inner.state.read().dedup.len(),
            2,
            "only those received now"
        );
        assert_eq!(again("m3").stored, 1, "outside the window: not a retry");
        assert_eq!(again("m21").duplicates, 1, "within it: a retry");
    }
}

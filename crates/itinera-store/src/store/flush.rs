use crate::columns::{Columns, SharedChunk};
use crate::delta::{Delta, DICTS};
use crate::error::Result;
use crate::segment::{self, SegmentFile};
use crate::wal;
use itinera_core::clock::now_ms;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::recent_ids::RecentIdsBuilder;
use super::*;

impl Inner {
    /// Starts a background flush when enough rows are in memory and none is running.
    pub(super) fn maybe_start_flush(self: &Arc<Self>) {
        if self.state.read().mem_rows >= self.config.flush_rows {
            self.start_flush();
        }
    }

    /// Starts a background flush of whatever is in memory, unless one is running.
    pub(super) fn start_flush(self: &Arc<Self>) {
        if !self.flush_wanted.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            let h = std::thread::Builder::new()
                .name("itinera-flush".into())
                .spawn(move || {
                    let store = Store { inner: me.clone() };
                    // below the foreground while the flushes keep up with the writes; at normal
                    // priority when rows have piled up past half a flush more (memory stays
                    // within a few flushes' rows however long the load lasts). The next
                    // query's snapshot is prepared at normal priority: one may wait for it.
                    let behind = me.state.read().mem_rows > me.config.flush_rows * 3 / 2;
                    match super::priority::in_background_unless(behind, || me.flush(&store)) {
                        Ok(()) => me.warm_snapshot(),
                        Err(e) => tracing::error!(error = %e, "background flush failed"),
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

    pub(super) fn flush(self: &Arc<Self>, store: &Store) -> Result<()> {
        let _g = self.flush_lock.lock();
        if self.nothing_to_flush() {
            // every close flushes: a store opened and closed without a write must not leave
            // one more (empty) delta file that every later open reads
            return Ok(());
        }
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
            // sort all frozen rows by (person, time, arrival): the receive time first, so that
            // rows of equal time keep one order in every segment and merge (see `scan`)
            let mut order: Vec<(u32, i64, i64, u32, u32)> = Vec::with_capacity(rows);
            for (ci, c) in frozen.iter().enumerate() {
                for i in 0..c.cols.len() {
                    let d = c.cols.did[i] as usize;
                    let root = roots.get(d).copied().unwrap_or(d as u32);
                    order.push((
                        root,
                        c.cols.ts[i],
                        c.cols.received_at[i],
                        ci as u32,
                        i as u32,
                    ));
                }
            }
            order.sort_unstable();
            let mut cols = Columns::with_capacity(rows);
            for &(_, _, _, ci, i) in &order {
                cols.push_from(&frozen[ci as usize].cols, i as usize);
            }
            let name = format!("{gen:010}.seg");
            let path = seg_dir.join(&name);
            // the messages are read back from the chunks' log records for the time of the write
            let texts = frozen
                .iter()
                .map(|c| c.bodies())
                .collect::<Result<Vec<_>>>()?;
            let bodies = order
                .iter()
                .map(|&(_, _, _, ci, i)| Ok(texts[ci as usize].get(i as usize).to_string()));
            segment::write(&path, &cols, bodies)?;
            let file = SegmentFile::open(&path)?;
            let cols = file.columns_after_write(cols)?;
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
        }
        // the flush has committed: a check that cannot be built again now keeps the one in use
        if let Err(e) = self.renew_recent_ids() {
            tracing::warn!(error = %e, "duplicate check not built again; the current one stays");
        }
        // the ids entered since the last flush into the check's sorted array, merged here
        // rather than by the writer that enters them
        let fold = self.state.write().dedup.fold_job();
        if let Some(job) = fold {
            let merged = job.sorted.merged(&job.set);
            self.state.write().dedup.finish_fold(&job, merged);
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

    /// Whether a flush would write neither a segment nor a delta: no rows in memory or frozen,
    /// no identity links, erasures or strings since the last delta.
    fn nothing_to_flush(&self) -> bool {
        // lock order everywhere: dictionaries, then state
        let d = self.dicts.read();
        let st = self.state.read();
        st.mem.iter().chain(&st.frozen).all(|c| c.cols.is_empty())
            && st.pending_links.is_empty()
            && st.pending_erased.is_empty()
            && (0..DICTS).all(|k| d.all[k].len() == st.delta_starts[k])
    }

    /// Builds the duplicate check again from the rows received within the window, when the
    /// one in use holds ids long past it (see `recent_ids`). Runs in a flush, under its lock:
    /// the segments and the frozen rows do not change meanwhile, and rows appended while the
    /// files are read are entered when the new check replaces the old.
    fn renew_recent_ids(&self) -> Result<()> {
        let window = self.config.dedup_window_ms;
        let horizon = now_ms().saturating_sub(window);
        let (segments, chunks) = {
            let st = self.state.read();
            if window <= 0 || !st.dedup.is_stale(horizon, window) {
                return Ok(());
            }
            let chunks: Vec<SharedChunk> = st.frozen.iter().chain(&st.mem).cloned().collect();
            (st.segments.clone(), chunks)
        };
        let mut entries = RecentIdsBuilder::default();
        let mut enter = |hashes: &[u64], received: &[i64]| {
            let within = hashes.iter().zip(received).filter(|(_, r)| **r >= horizon);
            entries.extend(within.map(|(h, r)| (*h, *r)));
        };
        for s in &segments {
            if s.file.footer.max_received_at.is_none_or(|l| l >= horizon) {
                let (hashes, received) = s.file.hashes_and_receive_times()?;
                enter(&hashes, &received);
            }
        }
        for c in &chunks {
            enter(&c.cols.msg_hash, &c.cols.received_at);
        }
        // sorted before the state is locked: writes wait only for the rows appended since
        let mut fresh = entries.build();
        let mut st = self.state.write();
        let seen = chunks.len() - st.frozen.len();
        for c in st.mem.get(seen..).unwrap_or_default() {
            for (h, r) in c.cols.msg_hash.iter().zip(c.cols.received_at.iter()) {
                if *r >= horizon {
                    fresh.insert(*h, *r);
                }
            }
        }
        tracing::debug!(
            before = st.dedup.len(),
            after = fresh.len(),
            "duplicate check built again"
        );
        st.dedup = fresh;
        Ok(())
    }
}

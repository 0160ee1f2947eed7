use crate::codec::{put_ivarint, put_str};
use crate::columns::MemChunk;
use crate::error::{Result, StoreError};
use crate::wal::{frame_with, WalWriter};
use itinera_core::Touchpoint;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;

use super::coded::Coded;
use super::*;

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub stored: usize,
    pub duplicates: usize,
}

pub(super) type Reply = Box<dyn FnOnce(Result<AppendOutcome>) + Send>;

pub(super) enum Op {
    Append(Prepared),
    Erase {
        id: String,
        at_ms: i64,
    },
    /// Rotate the log and freeze the in-memory table; replies with the new log number in `stored`.
    Freeze,
}

pub(super) struct Request {
    pub(super) op: Op,
    pub(super) reply: Reply,
}

/// Bulk appends with several batches in flight, for importers: the caller prepares the next
/// batch while the writer writes and syncs the previous ones, and batches that wait together
/// share one sync. A batch counts once it is durable; [`AppendPipeline::finish`] waits for
/// all of them and returns the first error, if any.
pub struct AppendPipeline<'a> {
    pub(super) store: &'a Store,
    pub(super) window: usize,
    pub(super) in_flight:
        std::collections::VecDeque<std::sync::mpsc::Receiver<Result<AppendOutcome>>>,
    pub(super) done: AppendOutcome,
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

    pub(super) fn wait_oldest(&mut self) -> Result<()> {
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

impl Inner {
    pub(super) fn writer_loop(self: Arc<Self>, rx: Receiver<Request>, mut wal: WalWriter) {
        let mut pending: Vec<Request> = Vec::new();
        let mut framed: Vec<u8> = Vec::new();
        let mut open = true;
        while open || !pending.is_empty() {
            if pending.is_empty() {
                match self.next_request(&rx) {
                    Ok(r) => pending.push(r),
                    Err(RecvTimeoutError::Timeout) => {
                        self.start_flush();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
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

    /// The next request, waiting for it; a timeout when rows are in memory and none has come
    /// for `flush_when_quiet_ms` (time to flush them).
    fn next_request(
        &self,
        rx: &Receiver<Request>,
    ) -> std::result::Result<Request, RecvTimeoutError> {
        let quiet = self.config.flush_when_quiet_ms;
        let idle_rows = self.state.read().mem_rows > 0 && self.write_error.lock().is_none();
        if quiet > 0 && idle_rows {
            rx.recv_timeout(std::time::Duration::from_millis(quiet))
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        }
    }

    /// One group commit: dedup, one log write + sync, apply, answer.
    ///
    /// `framed` is the writer's buffer for the log bytes, kept across groups: a fresh buffer
    /// per group was megabytes of new pages to fault in (and zero) every time.
    pub(super) fn commit_group(
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
                                .map(|(h, t)| st.dedup.insert(*h, t.received_at_ms))
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
                            records.push(Record::Touchpoints(batch.rows()));
                        } else if stored > 0 {
                            let kept = batch.retain(&keep);
                            framed.extend_from_slice(&kept.framed);
                            records.push(Record::Touchpoints(kept.rows()));
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
        if !framed.is_empty() && self.write_error.lock().is_some() {
            // a probe after a failed write: the log is cut back to its last durable frame; if
            // that works, writing goes on
            match wal.truncate_to_durable() {
                Ok(()) => {
                    tracing::info!("write-ahead log writable again; writes resume");
                    *self.write_error.lock() = None;
                }
                Err(e) => {
                    let msg = format!("a write failed: {e}");
                    for r in replies.into_iter().chain(freeze_replies) {
                        r(Err(StoreError::ReadOnly(msg.clone())));
                    }
                    return;
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

    /// A generation for a new file.
    pub(super) fn new_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub(super) fn freeze(&self, wal: &mut WalWriter) -> Result<AppendOutcome> {
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
    pub(super) fn apply(&self, rec: Record, replayed: bool) {
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

    pub(super) fn apply_touchpoints(&self, batch: Rows, replayed: bool) {
        // the dictionaries stay locked until the rows are in the table, so that a compaction
        // (which takes both locks) sees every code in use when it blanks erased values
        let d = self.dicts.write();
        let coded = Coded::code(&d, &batch.touchpoints, batch.hashes);
        self.enter_rows(d, coded, batch.framed, replayed);
    }

    /// Enters coded rows into the memory table, with `framed`, the log record holding them.
    /// `d` has been locked since the rows were coded, or nothing else has changed the
    /// dictionaries meanwhile (a replay: no flush or compaction runs while a store opens).
    pub(super) fn enter_rows(
        &self,
        mut d: parking_lot::RwLockWriteGuard<'_, Dicts>,
        coded: Coded,
        framed: Vec<u8>,
        replayed: bool,
    ) {
        let (cols, links) = coded.enter(&mut d);
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
        st.mem.push(Arc::new(MemChunk {
            cols,
            record: framed.into_boxed_slice(),
        }));
    }
}

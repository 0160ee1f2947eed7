use crate::columns::Columns;
use crate::delta::{Delta, DICTS};
use crate::error::Result;
use crate::segment::{self, BodyLoc, SegmentFile};
use crate::wal;
use itinera_core::Touchpoint;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;

impl Inner {
    /// Starts a background compaction when none is running; it runs while segments are over
    /// the limit.
    pub(super) fn maybe_start_compaction(self: &Arc<Self>) {
        if self.compact_wanted.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        let h = std::thread::Builder::new()
            .name("itinera-compact".into())
            .spawn(move || {
                while me.state.read().segments.len() > me.config.compact_after_segments {
                    match me.compact(false) {
                        Ok(true) => me.warm_snapshot(),
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

    /// Merges segments. `full`: all of them, with erased ids blanked from the dictionary for
    /// good, holding the flush lock throughout. Otherwise (after a flush) size-tiered: the
    /// smallest segments are merged until about half the limit is left, so each row is
    /// rewritten a logarithmic number of times, and flushes go on until the commit. Returns
    /// whether it merged anything.
    pub(super) fn compact(&self, full: bool) -> Result<bool> {
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
        // by (person, time, receive time, segment, row): rows of equal time in the order they
        // arrived, whichever segments they were in (the order every read merges them in)
        let mut order: Vec<(u32, i64, i64, u32, u32)> = Vec::new();
        for (si, s) in segments.iter().enumerate() {
            let c = &s.cols;
            // read once here: peeked, not kept with the segment
            let (received_at, msg_hash) = (c.received_at.peek(), c.msg_hash.peek());
            for i in 0..c.len() {
                let d = c.did[i];
                if erased.get(&d).is_some_and(|t| received_at[i] <= *t) {
                    continue;
                }
                if !seen.insert(msg_hash[i]) {
                    continue;
                }
                let root = roots.get(d as usize).copied().unwrap_or(d);
                order.push((root, c.ts[i], received_at[i], si as u32, i as u32));
            }
        }
        drop(seen);
        order.sort_unstable();
        let order: Vec<(u32, u32)> = order.into_iter().map(|(.., si, i)| (si, i)).collect();
        let inputs: Vec<&Columns> = segments.iter().map(|s| &*s.cols).collect();
        let mut cols = Columns::merged(&inputs, &order);
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
            for (row, &(si, i)) in order.iter().enumerate() {
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
            (cols.prop_key, cols.prop_val, cols.prop_end) = (key.into(), val.into(), end.into());
        }
        let gen = self.new_generation();
        let seg_dir = self.dir.join("seg");
        let name = format!("{gen:010}.seg");
        let path = seg_dir.join(&name);
        if full {
            let it = order
                .iter()
                .map(|&(si, i)| files.get(loc_of(si, i)).map(str::to_string));
            segment::write(&path, &cols, it)?;
        } else {
            // a background compaction rewrites the columns only: the messages stay where they
            // are, each compressed once, and the merged rows point to them
            let locs: Vec<BodyLoc> = order.iter().map(|&(si, i)| loc_of(si, i)).collect();
            segment::write_located(&path, &cols, &locs)?;
        }
        drop(files);
        drop(locs_in);
        let file = SegmentFile::open(&path)?;
        let cols = file.columns_after_write(cols)?;
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

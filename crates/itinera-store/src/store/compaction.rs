use crate::delta::{Delta, DICTS};
use crate::error::Result;
use crate::segment::SegmentFile;
use crate::wal;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::merge::{rows_within, Merge, Part};
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
                    // below the foreground unless segments have piled up to twice the limit
                    let behind =
                        me.state.read().segments.len() > 2 * me.config.compact_after_segments;
                    match super::priority::in_background_unless(behind, || me.compact(false)) {
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
            // within the merge's budget too: a background merge writes one segment
            let budget_rows = rows_within(self.config.compact_memory_bytes);
            let cap = self.config.compact_max_rows.min(budget_rows.max(2)) as u64;
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
        // rows to keep: not erased, the first copy of each message id; written as segments
        // of whole persons, each merged within the memory budget (see `merge`)
        let merge = Merge {
            segments: &segments,
            roots: &roots,
            erased: &erased,
            budget: self.config.compact_memory_bytes.max(1),
            keep_decoded: !self.config.compaction_only,
        };
        let dropped = merge.duplicates_to_drop()?;
        // a full compaction writes segments of whole persons within the budget; a background
        // one writes one segment, so that each one leaves fewer segments than it found
        let parts = match full {
            true => merge.parts()?,
            false => vec![Part::persons(0..u32::MAX, total_rows(&segments))],
        };
        let seg_dir = self.dir.join("seg");
        let mut outputs = Vec::with_capacity(parts.len());
        for part in parts {
            let gen = self.new_generation();
            let name = format!("{gen:010}.seg");
            let path = seg_dir.join(&name);
            // readers of the messages for this output only: the blocks they keep decoded (one
            // per file, about 5 MB each) are let go before the next output's keys are built
            let mut files = message_files(&segments, &holders)?;
            let hot = merge.write(&part, &dropped, &path, full, &mut files, &self.dicts)?;
            drop(files);
            let Some(hot) = hot else { continue };
            let file = SegmentFile::open(&path)?;
            let cols = match self.config.compaction_only {
                true => file.load_columns_lean()?,
                false => file.columns_after_write(hot)?,
            };
            outputs.push(LoadedSegment {
                name,
                file,
                cols: Arc::new(cols),
            });
        }
        let written = outputs.len();
        let gen = self.new_generation();
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
                for c in outputs.iter().map(|s| &*s.cols).chain(chunks) {
                    for v in c.prop_val.peek().iter() {
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
        manifest.segments = outputs
            .iter()
            .map(|s| s.name.clone())
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
            let outputs = std::mem::take(&mut outputs).into_iter().map(Arc::new);
            st.segments = outputs.chain(rest).collect();
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
            written,
            full,
            erased_ids = erased_dids.len(),
            "compacted segments"
        );
        Ok(true)
    }
}

fn total_rows(segments: &[Arc<LoadedSegment>]) -> usize {
    segments.iter().map(|s| s.file.footer.rows as usize).sum()
}

//! A person's rows gathered from several sorted runs into one time-ordered journey.
//!
//! A person whose rows lie in several chunks (segments written at different times, the rows in
//! memory, identities merged later) is read by gathering. Each run is already ordered by time,
//! so the journey is their merge by (time, receive time, chunk, row): the order a compaction
//! gives them, whichever segments hold them.
//! Rows arriving in time order, as live traffic does, leave runs that do not overlap in time:
//! those are copied a column at a time. Only the columns the analysis reads are copied.

use crate::columns::Columns;
use itinera_engine::{Journey, JourneyColumns, JourneyRows};

/// Appends `src` to `dst`. Most pieces are a few rows: a loop the compiler inlines costs less
/// than a call to `memcpy` for them.
#[inline(always)]
fn append<T: Copy>(dst: &mut Vec<T>, src: &[T]) {
    if src.len() <= 16 {
        dst.reserve(src.len());
        for x in src {
            dst.push(*x);
        }
    } else {
        dst.extend_from_slice(src);
    }
}

/// True when row `a` (chunk, row) comes before row `b` in a journey: by time, then receive
/// time, so that rows of equal time are in the order they arrived whichever segments they are
/// in (flushes and compactions sort so), then chunk and row. The receive time is read only for
/// equal times: it is another column, and most comparisons do not need it.
#[inline]
fn before(chunks: &[std::sync::Arc<Columns>], a: (u32, u32), b: (u32, u32)) -> bool {
    let (ca, cb) = (&chunks[a.0 as usize], &chunks[b.0 as usize]);
    let (ta, tb) = (ca.ts[a.1 as usize], cb.ts[b.1 as usize]);
    ta < tb || (ta == tb && received_before(ca, a, cb, b))
}

/// The tie-break of [`before`], for rows of equal time. Between chunks whose receive times do
/// not overlap (most segments: each flush holds the rows received after the previous one) the
/// chunks' ranges decide. Else the receive times do; the time being equal, their lags behind it
/// order the same, and a segment keeps those (2 bytes a row, mostly) rather than its receive
/// times (8).
#[cold]
fn received_before(ca: &Columns, a: (u32, u32), cb: &Columns, b: (u32, u32)) -> bool {
    if a.0 != b.0 {
        if let (Some(ra), Some(rb)) = (ca.received_range(), cb.received_range()) {
            if ra.1 < rb.0 {
                return true;
            }
            if rb.1 < ra.0 {
                return false;
            }
        }
    }
    (ca.receive_lag(a.1 as usize), a) < (cb.receive_lag(b.1 as usize), b)
}

/// Merges pieces of one person (`heads`: each piece's chunk, next row and end; each ordered by
/// time) by [`before`], handing each range of rows to `emit` (chunk, first row, end) in the
/// journey's order: the head with the smallest key goes next, with the rows after it in its
/// piece that still come before every other head (a person has few pieces, so a scan of the
/// heads beats a heap). Leaves every head at its end.
fn merge_ranges(
    chunks: &[std::sync::Arc<Columns>],
    heads: &mut [(u32, u32, u32)],
    mut emit: impl FnMut(u32, u32, u32),
) {
    loop {
        let (mut best, mut second) = (None::<usize>, None::<usize>);
        for k in 0..heads.len() {
            let (chunk, row, end) = heads[k];
            if row == end {
                continue;
            }
            match best {
                Some(b) if before(chunks, (heads[b].0, heads[b].1), (chunk, row)) => {
                    if second.is_none_or(|s| before(chunks, (chunk, row), (heads[s].0, heads[s].1)))
                    {
                        second = Some(k);
                    }
                }
                _ => {
                    second = best;
                    best = Some(k);
                }
            }
        }
        let Some(b) = best else { break };
        let (chunk, start, end) = heads[b];
        let mut stop = start + 1;
        match second {
            None => stop = end,
            Some(s) => {
                let next = (heads[s].0, heads[s].1);
                while stop < end && before(chunks, (chunk, stop), next) {
                    stop += 1;
                }
            }
        }
        emit(chunk, start, stop);
        heads[b].1 = stop;
    }
}

/// Pieces of one person that overlap in time, cut into `out` as ranges in the journey's order
/// (see [`merge_ranges`]): read one after the other, they are the journey, without copying its
/// rows. `heads` is scratch.
pub(crate) fn in_merge_order(
    chunks: &[std::sync::Arc<Columns>],
    pieces: &[Piece],
    heads: &mut Vec<(u32, u32, u32)>,
    out: &mut Vec<Piece>,
) {
    heads.clear();
    heads.extend(pieces.iter().map(|p| (p.chunk, p.start, p.end)));
    out.clear();
    merge_ranges(chunks, heads, |chunk, start, end| {
        out.push(Piece { chunk, start, end })
    });
}

/// One run of a person's rows: `chunk`'s rows `start..end`, ordered by time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece {
    pub chunk: u32,
    pub start: u32,
    pub end: u32,
}

/// The columns of gathered journeys, reused from batch to batch by a scan thread.
#[derive(Debug, Default)]
pub(crate) struct Gathered {
    rows: JourneyRows,
    /// The pieces to gather next, filled by the caller.
    pub(crate) input: Vec<Piece>,
    /// Pieces of the person being gathered, with their first and last time.
    pieces: Vec<(i64, i64, Piece)>,
    /// Per piece being merged: its chunk, its next row and its end.
    heads: Vec<(u32, u32, u32)>,
}

impl Gathered {
    /// Empties the buffers (their memory is kept).
    pub(crate) fn clear(&mut self) {
        self.rows.clear();
    }

    /// Rows gathered so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows.ts.len()
    }

    /// Appends the journey made of the pieces in [`Gathered::input`] (each ordered by time,
    /// none empty) of `chunks`, the columns in `cols` only; returns its rows.
    pub(crate) fn append(
        &mut self,
        chunks: &[std::sync::Arc<Columns>],
        cols: JourneyColumns,
    ) -> (u32, u32) {
        let first = self.rows() as u32;
        let mut list = std::mem::take(&mut self.pieces);
        list.clear();
        list.extend(self.input.iter().map(|p| {
            let ts = &chunks[p.chunk as usize].ts;
            (ts[p.start as usize], ts[p.end as usize - 1], *p)
        }));
        // an order to try; whether it is the merge's order is checked next
        list.sort_unstable_by_key(|(first, _, p)| (*first, p.chunk, p.start));
        let disjoint = list.windows(2).all(|w| {
            let (a, b) = (&w[0].2, &w[1].2);
            before(chunks, (a.chunk, a.end - 1), (b.chunk, b.start))
        });
        if disjoint {
            for (_, _, p) in &list {
                self.extend(
                    &chunks[p.chunk as usize],
                    p.start as usize..p.end as usize,
                    cols,
                );
            }
        } else {
            self.merge(chunks, &list, cols);
        }
        self.pieces = list;
        (first, self.rows() as u32)
    }

    /// Copies rows `rows` of `c`, a column at a time, the columns in `cols` only.
    #[inline]
    fn extend(&mut self, c: &Columns, rows: std::ops::Range<usize>, cols: JourneyColumns) {
        let out = &mut self.rows;
        append(&mut out.ts, &c.ts[rows.clone()]);
        append(&mut out.event, &c.event[rows.clone()]);
        if cols == JourneyColumns::NONE {
            return;
        }
        if cols.has(JourneyColumns::DID) {
            append(&mut out.did, &c.did[rows.clone()]);
        }
        if cols.has(JourneyColumns::CHANNEL) {
            append(&mut out.channel, &c.channel[rows.clone()]);
        }
        if cols.has(JourneyColumns::TOUCHPOINT) {
            append(&mut out.touchpoint, &c.touchpoint[rows.clone()]);
        }
        if cols.has(JourneyColumns::KIND) {
            append(&mut out.kind, &c.kind[rows.clone()]);
        }
        if cols.has(JourneyColumns::GROUP) {
            append(&mut out.group, &c.group[rows.clone()]);
        }
        if cols.has(JourneyColumns::REVENUE) {
            append(&mut out.revenue, &c.revenue[rows.clone()]);
        }
        if cols.has(JourneyColumns::PROPS) {
            let first = c.prop_range(rows.start).start;
            let last = match rows.is_empty() {
                true => first,
                false => c.prop_end[rows.end - 1] as usize,
            };
            let shift = out.prop_key.len() as i64 - first as i64;
            out.prop_end
                .extend(c.prop_end[rows].iter().map(|e| (*e as i64 + shift) as u32));
            append(&mut out.prop_key, &c.prop_key[first..last]);
            append(&mut out.prop_val, &c.prop_val[first..last]);
        }
    }

    /// Merges overlapping pieces by (time, receive time, chunk, row), copying each range
    /// [`merge_ranges`] gives.
    fn merge(
        &mut self,
        chunks: &[std::sync::Arc<Columns>],
        list: &[(i64, i64, Piece)],
        cols: JourneyColumns,
    ) {
        let mut heads = std::mem::take(&mut self.heads);
        heads.clear();
        heads.extend(list.iter().map(|(_, _, p)| (p.chunk, p.start, p.end)));
        merge_ranges(chunks, &mut heads, |chunk, start, stop| {
            self.extend(&chunks[chunk as usize], start as usize..stop as usize, cols)
        });
        self.heads = heads;
    }

    /// The gathered rows (every journey appended since [`Gathered::clear`]) as the journey of
    /// `person`.
    pub(crate) fn journey(&self, person: u32) -> Journey<'_> {
        self.rows.journey(person)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A chunk of rows with the given times (already ordered), each with one property whose
    /// value names its chunk and row.
    fn chunk(id: u32, times: &[i64]) -> Arc<Columns> {
        let mut c = Columns::default();
        for (i, t) in times.iter().enumerate() {
            c.did.push(1);
            c.ts.push(*t);
            c.event.push(id * 1000 + i as u32);
            c.channel.push(0);
            c.touchpoint.push(0);
            c.kind.push(0);
            c.group.push(u32::MAX);
            c.revenue.push(f64::NAN);
            c.msg_hash.push(0);
            c.received_at.push(0);
            for _ in 0..(i % 3) {
                c.prop_key.push(id);
                c.prop_val.push(i as u32);
            }
            c.end_props();
        }
        Arc::new(c)
    }

    proptest! {
        /// Gathering equals sorting every row by (time, chunk, row), with the properties that
        /// belong to each row, whether the pieces overlap in time or not.
        #[test]
        fn gather_equals_a_sort(
            runs in proptest::collection::vec(proptest::collection::vec(0i64..50, 1..12), 1..6),
            offsets in proptest::collection::vec(0i64..3, 6),
        ) {
            let chunks: Vec<Arc<Columns>> = runs
                .iter()
                .enumerate()
                .map(|(k, r)| {
                    let mut t: Vec<i64> = r.iter().map(|x| x + offsets[k] * 40 * k as i64).collect();
                    t.sort();
                    chunk(k as u32, &t)
                })
                .collect();
            // a piece of each chunk: its middle part
            let pieces: Vec<Piece> = chunks
                .iter()
                .enumerate()
                .map(|(k, c)| Piece { chunk: k as u32, start: (c.len() / 4) as u32, end: c.len() as u32 })
                .filter(|p| p.end > p.start)
                .collect();
            let mut expected: Vec<(i64, u32, u32)> = pieces
                .iter()
                .flat_map(|p| (p.start..p.end).map(|i| (chunks[p.chunk as usize].ts[i as usize], p.chunk, i)).collect::<Vec<_>>())
                .collect();
            expected.sort();
            // only the times and events, as a funnel over event names asks: the same rows,
            // the other columns left empty
            let mut g = Gathered::default();
            g.input.extend_from_slice(&pieces);
            g.append(&chunks, JourneyColumns::NONE);
            let j = g.journey(1);
            let times: Vec<i64> = expected.iter().map(|e| e.0).collect();
            let events: Vec<u32> = expected.iter().map(|e| e.1 * 1000 + e.2).collect();
            prop_assert_eq!(j.ts, &times[..]);
            prop_assert_eq!(j.event, &events[..]);
            prop_assert!(j.channel.is_empty() && j.props.end.is_empty() && j.did.is_empty());
            let mut g = Gathered::default();
            // twice: the second reuses the first's buffers
            for _ in 0..2 {
                g.clear();
                g.input.clear();
                g.input.extend_from_slice(&pieces);
                g.append(&chunks, JourneyColumns::ALL);
                let j = g.journey(1);
                prop_assert_eq!(j.ts.len(), expected.len());
                for (row, (t, c, i)) in expected.iter().enumerate() {
                    prop_assert_eq!(j.ts[row], *t);
                    prop_assert_eq!(j.event[row], c * 1000 + i);
                    let (keys, vals) = j.props.row(row);
                    prop_assert_eq!(keys.len(), *i as usize % 3);
                    prop_assert!(keys.iter().all(|k| k == c) && vals.iter().all(|v| v == i));
                }
            }
        }
    }
}

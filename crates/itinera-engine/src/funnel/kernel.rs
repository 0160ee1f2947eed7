use super::rows::EventMasks;
use super::*;
use crate::error::Result;

/// For each event code, the steps it matches (see [`FunnelKernel::run_slots`]).
#[derive(Debug, Clone)]
pub struct SlotTable {
    stride: usize,
    slots: Vec<u8>,
    none: Vec<u8>,
    /// When every event matches at most one step of at most [`SlotTable::SINGLE_STEPS`].
    pub(super) single: Option<SingleSteps>,
}

/// The step of each event code, for funnels where every event matches at most one step.
#[derive(Debug, Clone)]
pub struct SingleSteps {
    /// Steps numbered from the first (the dummy [`SlotTable::SINGLE_NONE`] for no step).
    pub(super) forward: Vec<u8>,
    /// Steps numbered from the last: the funnel as [`FunnelKernel::latest_full_chain`] reads
    /// a journey, from its end.
    reversed: Vec<u8>,
}

impl SlotTable {
    /// Most steps one event may match for the table to pay off.
    const MAX_STRIDE: usize = 8;

    pub(super) fn new(masks: &[u64], n: usize) -> Option<SlotTable> {
        let stride = masks
            .iter()
            .map(|m| m.count_ones() as usize)
            .max()
            .unwrap_or(0)
            .max(1);
        if stride > Self::MAX_STRIDE {
            return None;
        }
        let dummy = (n + 1) as u8;
        let mut slots = Vec::with_capacity(masks.len() * stride);
        for m in masks {
            let mut b = *m;
            for _ in 0..stride {
                if b == 0 {
                    slots.push(dummy);
                } else {
                    slots.push(b.trailing_zeros() as u8);
                    b &= b - 1;
                }
            }
        }
        let single = (stride == 1 && n <= Self::SINGLE_STEPS).then(|| {
            let numbered = |from_last: bool| {
                masks
                    .iter()
                    .map(|m| match (m.count_ones(), from_last) {
                        (0, _) => Self::SINGLE_NONE,
                        (_, false) => m.trailing_zeros() as u8,
                        (_, true) => (n - 1) as u8 - m.trailing_zeros() as u8,
                    })
                    .collect()
            };
            SingleSteps {
                forward: numbered(false),
                reversed: numbered(true),
            }
        });
        Some(SlotTable {
            stride,
            slots,
            none: vec![dummy; stride],
            single,
        })
    }

    /// Most steps of the single-step table: its state fits 32 slots with room for the dummy.
    const SINGLE_STEPS: usize = 29;
    /// The dummy step of the single-step table (its state slot is never read).
    const SINGLE_NONE: u8 = 30;
    /// Most steps for the single-step kernel's small state (8 slots, the dummy reading slot 6).
    const SMALL_STEPS: usize = 5;
}

/// What one person (or account) achieved.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Steps reached.
    pub reached: u64,
    /// Highest prefix of steps reached (required steps in order; optional ones when done).
    pub level: usize,
    /// Timestamps of the steps in the best chain (`i64::MIN` when skipped or unknown).
    pub times: Vec<i64>,
    /// Tags of the steps in the best chain.
    pub tags: Vec<u32>,
}

/// A funnel ready to run: the query plus its per-step parameters.
#[derive(Debug, Clone)]
pub struct FunnelKernel {
    n: usize,
    order: FunnelOrder,
    window: i64,
    within: Vec<i64>,
    optional: Vec<bool>,
    /// Exclusion bit → (from, to) 0-based step range whose partial chains it breaks.
    exclusions: Vec<(u64, usize, usize)>,
    exclusion_bits: u64,
    /// Step 1 only counts before this time.
    entry_before: i64,
    /// No optional steps, per-step windows or exclusions.
    plain: bool,
}

impl FunnelKernel {
    pub fn new(q: &FunnelQuery) -> Result<FunnelKernel> {
        q.validate()?;
        let n = q.steps.len();
        let exclusions: Vec<(u64, usize, usize)> = q
            .exclusions
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    1u64 << (n + i),
                    e.from_step.unwrap_or(1) - 1,
                    e.to_step.unwrap_or(n) - 1,
                )
            })
            .collect();
        Ok(FunnelKernel {
            n,
            order: q.order,
            window: q.window.ms(),
            within: q
                .steps
                .iter()
                .map(|s| s.within.map(|w| w.ms()).unwrap_or(i64::MAX))
                .collect(),
            optional: q.steps.iter().map(|s| s.optional).collect(),
            exclusion_bits: exclusions.iter().fold(0, |a, e| a | e.0),
            exclusions,
            entry_before: q.to_ms.unwrap_or(i64::MAX),
            plain: q.exclusions.is_empty()
                && q.steps.iter().all(|s| !s.optional && s.within.is_none()),
        })
    }

    /// True when rows matching nothing still matter (they break strict chains).
    pub fn sees_all_rows(&self) -> bool {
        self.order.sees_all_rows()
    }

    /// True when [`FunnelKernel::run_plain`] applies.
    pub fn is_plain(&self) -> bool {
        self.plain && self.order == FunnelOrder::Ordered
    }

    /// Runs the funnel over one journey's entries (time-ordered; ties in arrival order).
    pub fn run(&self, entries: &[Entry], scratch: &mut Scratch, out: &mut Outcome) {
        out.reached = 0;
        out.level = 0;
        out.times.clear();
        out.times.resize(self.n, i64::MIN);
        out.tags.clear();
        out.tags.resize(self.n, u32::MAX);
        if entries.is_empty() {
            return;
        }
        match self.order {
            FunnelOrder::Ordered if self.plain => {
                if !self.run_plain(entries, out) {
                    self.run_ordered(entries, scratch, out)
                }
            }
            FunnelOrder::Strict => self.run_strict(entries, scratch, out),
            FunnelOrder::Unordered => self.run_unordered(entries, scratch, out),
            _ => self.run_ordered(entries, scratch, out),
        }
        out.level = 0;
        while out.level < self.n && out.reached & (1 << out.level) != 0 {
            out.level += 1;
        }
    }

    /// The ordered funnel without extras, on a journey without equal times: the hot loop of the
    /// engine. Keeps per step only the latest start of a chain reaching it (a later start leaves
    /// more of the window). Returns false, having done nothing, when two entries share a time
    /// (the general kernel orders those by step).
    #[inline]
    pub fn run_plain<R: Rows + ?Sized>(&self, rows: &R, out: &mut Outcome) -> bool {
        let n = self.n;
        let step_mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let mut start = [0i64; MAX_STEPS];
        let mut set = 0u64;
        let mut best = 0usize;
        let mut prev_ts = i64::MIN;
        let len = rows.row_count();
        'rows: for i in 0..len {
            let mut m = rows.mask(i) & step_mask;
            if m == 0 {
                continue;
            }
            let ts = rows.ts(i);
            if ts == prev_ts {
                return false;
            }
            prev_ts = ts;
            while m != 0 {
                let st = m.trailing_zeros() as usize;
                m &= m - 1;
                if st == 0 {
                    if ts < self.entry_before {
                        start[0] = ts;
                        set |= 1;
                        best = best.max(1);
                    }
                } else if set & (1 << (st - 1)) != 0
                    && ts <= start[st - 1].saturating_add(self.window)
                {
                    start[st] = start[st - 1];
                    set |= 1 << st;
                    if st + 1 > best {
                        best = st + 1;
                        if best == n {
                            break 'rows;
                        }
                    }
                }
            }
        }
        out.reached = 0;
        out.level = best;
        if best == 0 {
            return true;
        }
        self.report_chain(rows, best, start[best - 1], out);
        true
    }

    /// Fills `out` for a chain of `best` steps starting at `t0` (see [`FunnelKernel::walk_chain`]).
    pub(super) fn report_chain<R: Rows + ?Sized>(
        &self,
        rows: &R,
        best: usize,
        t0: i64,
        out: &mut Outcome,
    ) {
        let n = self.n;
        out.level = best;
        out.times.resize(n, i64::MIN);
        out.times.fill(i64::MIN);
        out.tags.resize(n, u32::MAX);
        out.tags.fill(u32::MAX);
        out.reached = if best == 64 {
            u64::MAX
        } else {
            (1u64 << best) - 1
        };
        self.walk_chain(rows, best, t0, |k, i, ts| {
            out.times[k] = ts;
            out.tags[k] = rows.tag(i);
        });
    }

    /// Calls `step(k, row, time)` for each step `k < best` of the chain that starts at `t0`: from
    /// that start, each step as early as possible (a chain from the latest start exists; this is
    /// its fastest form).
    #[inline(always)]
    fn walk_chain<R: Rows + ?Sized>(
        &self,
        rows: &R,
        best: usize,
        t0: i64,
        mut step: impl FnMut(usize, usize, i64),
    ) {
        let end = t0.saturating_add(self.window);
        // the chain starts late in most journeys: find its first row by a branch-free bisection
        let (mut base, mut size) = (0, rows.row_count());
        if size == 0 {
            return;
        }
        while size > 1 {
            let half = size / 2;
            base = std::hint::select_unpredictable(rows.ts(base + half) < t0, base + half, base);
            size -= half;
        }
        let lo = base + (rows.ts(base) < t0) as usize;
        let mut k = 0usize;
        for i in lo..rows.row_count() {
            let ts = rows.ts(i);
            if ts > end || k == best {
                break;
            }
            let m = rows.mask(i);
            if k == 0 && (ts != t0 || m & 1 == 0) {
                continue;
            }
            // a touchpoint may serve several consecutive steps
            while k < best && m & (1 << k) != 0 {
                step(k, i, ts);
                k += 1;
            }
        }
        debug_assert_eq!(k, best, "a chain from the latest start exists");
    }

    /// [`FunnelKernel::run_plain`] for funnels over event names only, with no branch that
    /// depends on the data. `slots` lists for each event code the steps it matches, ascending,
    /// padded to `stride` with the dummy step `n + 1`; `s[k + 1]` holds the latest start of a
    /// chain reaching step k and `s[0]` the current touchpoint's time, so step k extends from
    /// `s[k]`. Returns the steps reached and the start of the best chain (see
    /// [`FunnelKernel::walk_chain`]), or None when two touchpoints share a time (the general
    /// kernel orders those by step).
    pub(super) fn run_slots(
        &self,
        rows: &EventMasks<'_, '_>,
        slots: &SlotTable,
        ties: bool,
    ) -> Option<(usize, i64)> {
        if let Some(single) = &slots.single {
            return self.run_single_slots(rows, single, ties);
        }
        // the checks a journey needs, and a state just big enough, as constants of the loop
        let checks = ties || self.entry_before != i64::MAX;
        match (self.n + 3 <= 32, slots.stride, checks) {
            (true, 2, false) => self.stride_slots::<32, 2, false>(rows, slots),
            (true, 3, false) => self.stride_slots::<32, 3, false>(rows, slots),
            (true, 4, false) => self.stride_slots::<32, 4, false>(rows, slots),
            (true, _, false) => self.stride_slots::<32, 0, false>(rows, slots),
            (true, _, true) => self.stride_slots::<32, 0, true>(rows, slots),
            (false, _, _) => self.stride_slots::<{ MAX_STEPS + 3 }, 0, true>(rows, slots),
        }
    }

    /// The loop of [`FunnelKernel::run_slots`] with a state of `SIZE` slots, `STRIDE` steps per
    /// event (0: the table's stride, read at run time), looking for ties and checking the entry
    /// bound only when `CHECKS`.
    #[inline(always)]
    fn stride_slots<const SIZE: usize, const STRIDE: usize, const CHECKS: bool>(
        &self,
        rows: &EventMasks<'_, '_>,
        slots: &SlotTable,
    ) -> Option<(usize, i64)> {
        const UNSET: i64 = i64::MIN / 2;
        debug_assert!(self.n + 3 <= SIZE);
        let mut s = [UNSET; SIZE];
        let w = self.window.min(i64::MAX / 4);
        let stride = if STRIDE == 0 { slots.stride } else { STRIDE };
        debug_assert_eq!(stride, slots.stride);
        let none = &slots.none[..stride];
        let mut tie = false;
        let mut prev = i64::MIN;
        let (lo, hi) = (rows.lo, rows.hi);
        for (&ts, &code) in rows.journey.ts[lo..hi]
            .iter()
            .zip(&rows.journey.event[lo..hi])
        {
            let at = code as usize * stride;
            let steps = slots.slots.get(at..at + stride).unwrap_or(none);
            if CHECKS {
                tie |= ts == prev;
                prev = ts;
            }
            s[0] = if !CHECKS || ts < self.entry_before {
                ts
            } else {
                UNSET
            };
            // the window subtracted off the dependency chain
            let earliest = ts - w;
            for &p in steps {
                let p = p as usize;
                let (pred, cur) = (s[p], s[p + 1]);
                // a conditional move, not a branch: whether a touchpoint extends a chain is
                // unpredictable
                s[p + 1] = std::hint::select_unpredictable(earliest <= pred, pred, cur);
            }
        }
        (!tie).then(|| self.chain_end(&s, UNSET))
    }

    /// [`FunnelKernel::run_slots`] when every event matches at most one step: one table load,
    /// two state loads and one store per touchpoint, with indices masked so that no bounds check
    /// remains. Returns the steps reached and the start of the best chain (see
    /// [`FunnelKernel::walk_chain`]), or None when two touchpoints share a time. `ties` says
    /// whether the rows may hold equal times (see
    /// [`crate::journey::JourneyBatch::distinct_times`]); when not, the loop does not look for
    /// them.
    fn run_single_slots(
        &self,
        rows: &EventMasks<'_, '_>,
        single: &SingleSteps,
        ties: bool,
    ) -> Option<(usize, i64)> {
        let bounded = self.entry_before != i64::MAX;
        // few steps: a state of 8 slots, cheaper to reset per person
        match (self.n <= SlotTable::SMALL_STEPS, bounded, ties) {
            (true, false, false) => self.single_slots::<8, false, false>(rows, single),
            (true, _, _) => self.single_slots::<8, true, true>(rows, single),
            (false, false, false) => self.single_slots::<32, false, false>(rows, single),
            (false, _, _) => self.single_slots::<32, true, true>(rows, single),
        }
    }

    /// True when the hot loop of [`run_funnel`] may call the small single-step kernel
    /// ([`FunnelKernel::single_slots`] with 8 slots, no entry bound, no tie check) directly for
    /// every person of a batch, without choosing a kernel per person.
    pub(super) fn small_single(&self, slots: &SlotTable, ties: bool) -> bool {
        slots.single.is_some()
            && self.n <= SlotTable::SMALL_STEPS
            && self.entry_before == i64::MAX
            && !ties
    }

    /// The loop of [`FunnelKernel::run_single_slots`] with a state of `SIZE` slots (the dummy
    /// step [`SlotTable::SINGLE_NONE`] reads slot `30 % SIZE` and writes the next one, both
    /// beyond the steps), checking the entry bound only when `BOUNDED` and ties only when
    /// `TIES`. A long journey is first read from its end (see
    /// [`FunnelKernel::latest_full_chain`]).
    #[inline(always)]
    pub(super) fn single_slots<const SIZE: usize, const BOUNDED: bool, const TIES: bool>(
        &self,
        rows: &EventMasks<'_, '_>,
        single: &SingleSteps,
    ) -> Option<(usize, i64)> {
        let (lo, hi) = (rows.lo, rows.hi);
        let (ts, events) = (&rows.journey.ts[lo..hi], &rows.journey.event[lo..hi]);
        // with an entry bound the latest chain may start too late; ties need every row seen
        if !BOUNDED && !TIES && ts.len() >= Self::FROM_THE_END_ROWS {
            let budget = ts.len() / Self::FROM_THE_END_SHARE;
            let one = std::iter::once((ts, events));
            if let Some(t0) = self.latest_full_chain::<SIZE>(one, &single.reversed, budget) {
                return Some((self.n, t0));
            }
        }
        let one = (ts, events);
        self.single_slots_over::<SIZE, BOUNDED, TIES, false>(std::iter::once(one), &single.forward)
    }

    /// [`FunnelKernel::single_slots`] (8 slots, no entry bound, no ties) for a short journey
    /// ([`FunnelKernel::SHORT_ROWS`] rows at most) whose times lie within
    /// ±[`FunnelKernel::SHORT_TIMES`]: the steps reached, the start of the best chain and the
    /// start's row. Each start is kept with its row in the low bits (time × 64 + row), which
    /// compares with a time × 64 as the time alone would: the walk of the chain's times then
    /// begins at that row instead of counting the rows before it. None for other journeys.
    #[inline(always)]
    pub(super) fn single_slots_short(
        &self,
        ts: &[i64],
        events: &[u32],
        single: &[u8],
    ) -> Option<(usize, i64, usize)> {
        let (&first, &last) = (ts.first()?, ts.last()?);
        if ts.len() > Self::SHORT_ROWS || first < -Self::SHORT_TIMES || last > Self::SHORT_TIMES {
            return None;
        }
        let one = std::iter::once((ts, events));
        let (best, start) = self
            .single_slots_over::<8, false, false, true>(one, single)
            .expect("no ties looked for");
        Some((best, start >> 6, (start & 63) as usize))
    }

    /// Most rows of [`FunnelKernel::single_slots_short`]: the start's row fits six bits.
    const SHORT_ROWS: usize = 64;
    /// Largest time (ms, either sign) of [`FunnelKernel::single_slots_short`]: times × 64,
    /// less a window of up to twice this, stay above the unset state (about 570,000 years
    /// from 1970).
    const SHORT_TIMES: i64 = 1 << 54;

    /// Journeys at least this long are first read from their end.
    const FROM_THE_END_ROWS: usize = 1024;
    /// The share of a long journey read from its end before it is read from its start: what a
    /// journey that never completes the funnel pays at most (an eighth more).
    const FROM_THE_END_SHARE: usize = 8;

    /// [`FunnelKernel::single_slots`] (8 slots, no entry bound, ties looked for) over a
    /// journey in pieces (see [`FunnelKernel::single_slots_over`]): a long one is first read
    /// from its end, and that answer stands when no two of its touchpoints share a time
    /// (`has_ties`, asked only then).
    pub(super) fn single_slots_pieces<'p>(
        &self,
        pieces: impl DoubleEndedIterator<Item = (&'p [i64], &'p [u32])> + Clone,
        has_ties: impl FnOnce() -> bool,
        single: &SingleSteps,
    ) -> Option<(usize, i64)> {
        let rows: usize = pieces.clone().map(|(ts, _)| ts.len()).sum();
        if rows >= Self::FROM_THE_END_ROWS {
            let budget = rows / Self::FROM_THE_END_SHARE;
            if let Some(t0) = self.latest_full_chain::<8>(pieces.clone(), &single.reversed, budget)
            {
                // with equal times the forward kernel gives up too: the general one decides
                return (!has_ties()).then_some((self.n, t0));
            }
        }
        self.single_slots_over::<8, false, true, false>(pieces, &single.forward)
    }

    /// The start of the latest chain through every step, looked for among the last `budget`
    /// rows of a journey without equal times, given as time-ordered pieces
    /// (`reversed`: [`SingleSteps::reversed`]); None when no such chain starts there.
    ///
    /// When a journey completes the funnel, what the forward kernels answer is that start
    /// alone (the steps reached are all of them, and the chain is walked from it), and in a
    /// long journey that converts again and again it lies near the end: a person with
    /// millions of touchpoints (a bot, a shared device, a big account) then costs a few rows
    /// instead of all of them. Read from the end, the funnel is the same funnel with time
    /// negated and the steps numbered from the last: slot k + 1 holds the earliest end of a
    /// chain from step n - k to the last, and the first touchpoint of step 1 (read from the
    /// end) that completes such a chain within the window is the latest start.
    #[inline(always)]
    pub(super) fn latest_full_chain<'p, const SIZE: usize>(
        &self,
        pieces: impl DoubleEndedIterator<Item = (&'p [i64], &'p [u32])>,
        reversed: &[u8],
        mut budget: usize,
    ) -> Option<i64> {
        const UNSET: i64 = i64::MIN / 2;
        debug_assert!(self.n < (SlotTable::SINGLE_NONE as usize) % SIZE);
        let mut s = [UNSET; SIZE];
        let w = self.window.min(i64::MAX / 4);
        let full = self.n & (SIZE - 1);
        for (ts, events) in pieces.rev() {
            let from = ts.len().saturating_sub(budget);
            budget -= ts.len() - from;
            for (&t, &code) in ts[from..].iter().zip(&events[from..]).rev() {
                let p = reversed
                    .get(code as usize)
                    .copied()
                    .unwrap_or(SlotTable::SINGLE_NONE) as usize;
                // time read backwards
                let back = 0i64.saturating_sub(t);
                s[0] = back;
                let pred = s[p & (SIZE - 1)];
                let next = (p + 1) & (SIZE - 1);
                s[next] = std::hint::select_unpredictable(back - w <= pred, pred, s[next]);
                if s[full] != UNSET {
                    return Some(t);
                }
            }
            if budget == 0 {
                break;
            }
        }
        None
    }

    /// [`FunnelKernel::single_slots`] over a journey in pieces (times and events), each
    /// ordered by time and before the next: the state goes on from piece to piece, and ties
    /// are looked for across them too. With `ROWS` (for [`FunnelKernel::single_slots_short`])
    /// each start is kept as time × 64 + row and the start is returned so.
    #[inline(always)]
    pub(super) fn single_slots_over<
        'p,
        const SIZE: usize,
        const BOUNDED: bool,
        const TIES: bool,
        const ROWS: bool,
    >(
        &self,
        pieces: impl Iterator<Item = (&'p [i64], &'p [u32])>,
        single: &[u8],
    ) -> Option<(usize, i64)> {
        const UNSET: i64 = i64::MIN / 2;
        debug_assert!(self.n < (SlotTable::SINGLE_NONE as usize) % SIZE);
        let mut s = [UNSET; SIZE];
        let w = match ROWS {
            // no two of the short kernel's times are further apart than twice its bound
            true => self.window.min(2 * Self::SHORT_TIMES) << 6,
            false => self.window.min(i64::MAX / 4),
        };
        let entry_before = self.entry_before;
        let mut tie = false;
        let mut prev = i64::MIN;
        let mut row = 0i64;
        for (ts, events) in pieces {
            for (&t, &code) in ts.iter().zip(events) {
                let p = single
                    .get(code as usize)
                    .copied()
                    .unwrap_or(SlotTable::SINGLE_NONE) as usize;
                if TIES {
                    tie |= t == prev;
                    prev = t;
                }
                // s[k + 1] is the latest start of a chain reaching step k (0-based); s[0] is
                // the touchpoint itself, the start of a chain at step 1 when it may still enter
                let scaled = if ROWS { t << 6 } else { t };
                let own = if !BOUNDED || t < entry_before {
                    if ROWS {
                        scaled | row
                    } else {
                        t
                    }
                } else {
                    UNSET
                };
                row += 1;
                // through the state rather than a select: the compiler turns a select next to
                // a load into a branch, and whether a touchpoint is step 1 is unpredictable
                s[0] = own;
                // the window subtracted off the dependency chain: load, compare, move, store
                let earliest = scaled - w;
                let pred = s[p & (SIZE - 1)];
                let next = (p + 1) & (SIZE - 1);
                s[next] = std::hint::select_unpredictable(earliest <= pred, pred, s[next]);
            }
        }
        (!tie).then(|| self.chain_end(&s, UNSET))
    }

    /// The steps reached and the start of the best chain, from the state of the slot kernels
    /// (`s[k]`: the latest start of a chain reaching step k, or `unset`). The steps reached are
    /// a prefix (a chain reaching step k reaches step k - 1 from the same start), found by a
    /// branch-free bisection with one 8-byte read per probe. A count over the slots compiles to
    /// 16-byte reads of slots the loop has just written 8 bytes at a time, which the processor
    /// cannot forward from its pending stores: the profile showed them stalled.
    #[inline(always)]
    fn chain_end(&self, s: &[i64], unset: i64) -> (usize, i64) {
        // s[1..=best] are set: best lies in base..=base + size
        let (mut base, mut size) = (0, self.n);
        while size > 0 {
            let half = size.div_ceil(2);
            base = std::hint::select_unpredictable(s[base + half] != unset, base + half, base);
            size -= half;
        }
        (base, s[base])
    }

    /// The `windowFunnel` family. Entries at the same time are taken by step number, as
    /// ClickHouse sorts them; a row that matches several steps counts for each.
    fn run_ordered(&self, entries: &[Entry], s: &mut Scratch, out: &mut Outcome) {
        let n = self.n;
        s.reset(n);
        let step_mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let strict_order = self.order == FunnelOrder::StrictOrder;
        let dedup = self.order == FunnelOrder::StrictDeduplication;
        let increase = self.order == FunnelOrder::StrictIncrease;
        let mut first_event = false;
        let mut best: usize = 0; // highest step index + 1 reached by a chain
        let mut i = 0;
        'outer: while i < entries.len() {
            // the group of entries with the same time
            let t = entries[i].ts;
            let mut j = i + 1;
            while j < entries.len() && entries[j].ts == t {
                j += 1;
            }
            s.group.clear();
            for (k, e) in entries[i..j].iter().enumerate() {
                let ex = e.mask & self.exclusion_bits;
                if ex != 0 {
                    for (bit, from, to) in &self.exclusions {
                        if ex & bit != 0 {
                            for l in *from..*to {
                                s.set[l] = false;
                            }
                        }
                    }
                }
                let m = e.mask & step_mask;
                if m == 0 {
                    if strict_order {
                        s.group.push((0, (i + k) as u32));
                    }
                    continue;
                }
                let mut b = m;
                while b != 0 {
                    let st = b.trailing_zeros() as usize;
                    s.group.push((st as u32 + 1, (i + k) as u32));
                    b &= b - 1;
                }
            }
            if j - i > 1 {
                s.group.sort_by_key(|g| g.0);
            }
            for gi in 0..s.group.len() {
                let (code, row) = s.group[gi];
                let e = entries[row as usize];
                if code == 0 {
                    // strict_order: a touchpoint that is no step
                    if first_event {
                        break 'outer;
                    }
                    continue;
                }
                let st = code as usize - 1;
                if st == 0 {
                    if e.ts >= self.entry_before {
                        continue;
                    }
                    s.set[0] = true;
                    s.start[0] = e.ts;
                    s.last[0] = e.ts;
                    s.chain_times[0] = e.ts;
                    s.chain_tags[0] = e.tag;
                    s.ever |= 1;
                    first_event = true;
                    best = best.max(1);
                } else if dedup && s.set[st] {
                    // a repeat of a step already reached ends the search
                    break 'outer;
                } else if strict_order && first_event && !s.set[st - 1] {
                    let level = (0..n).find(|l| !s.set[*l]).unwrap_or(n);
                    self.finish_prefix(level, s, out);
                    return;
                } else if let Some(p) = self.predecessor(st, &s.set) {
                    let ok = e.ts <= s.start[p].saturating_add(self.window)
                        && e.ts - s.last[p] <= self.within[st]
                        && (!increase || s.last[p] < e.ts);
                    if ok {
                        s.set[st] = true;
                        s.start[st] = s.start[p];
                        s.last[st] = e.ts;
                        s.extend_chain(n, p, st, &e);
                        s.ever |= 1 << st;
                        if st + 1 > best {
                            best = st + 1;
                        }
                        if st + 1 == n {
                            break 'outer;
                        }
                    }
                }
            }
            i = j;
        }
        self.finish_best(best, s, out);
    }

    /// The nearest earlier step with a chain that `st` may extend: the previous step, or an
    /// earlier one when every step in between is optional.
    #[inline]
    fn predecessor(&self, st: usize, set: &[bool]) -> Option<usize> {
        let mut p = st - 1;
        loop {
            if set[p] {
                return Some(p);
            }
            if !self.optional[p] || p == 0 {
                return None;
            }
            p -= 1;
        }
    }

    /// Result when ClickHouse stops early with `level`: the prefix of steps `0..level`.
    fn finish_prefix(&self, level: usize, s: &Scratch, out: &mut Outcome) {
        let level = level.min(self.n);
        if level == 0 {
            return;
        }
        out.reached = if level == 64 {
            u64::MAX
        } else {
            (1u64 << level) - 1
        };
        let top = level - 1;
        if s.set[top] {
            let base = top * self.n;
            out.times[..level].copy_from_slice(&s.chain_times[base..base + level]);
            out.tags[..level].copy_from_slice(&s.chain_tags[base..base + level]);
        }
    }

    fn finish_best(&self, best: usize, s: &Scratch, out: &mut Outcome) {
        if best == 0 {
            return;
        }
        let top = best - 1;
        // steps reached: every required step up to the best one, and optional steps done
        let mut reached = 0u64;
        for l in 0..best {
            if !self.optional[l] || s.ever & (1 << l) != 0 {
                reached |= 1 << l;
            }
        }
        out.reached = reached;
        if s.set[top] {
            let base = top * self.n;
            out.times[..best].copy_from_slice(&s.chain_times[base..base + best]);
            out.tags[..best].copy_from_slice(&s.chain_tags[base..base + best]);
        }
    }

    /// Consecutive touchpoints: a chain grows only with the very next touchpoint. A touchpoint
    /// can extend one chain and start another, so every chain length alive at the previous
    /// touchpoint is tracked; for each, the latest start (all of them end at the same touchpoint,
    /// so a later start dominates).
    fn run_strict(&self, entries: &[Entry], s: &mut Scratch, out: &mut Outcome) {
        let n = self.n;
        s.reset(n);
        let step_mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        // bit k: a chain whose last step is k ends at the previous touchpoint
        let mut alive = 0u64;
        let mut best = 0usize;
        for e in entries {
            let m = e.mask & step_mask;
            let mut next = 0u64;
            if m != 0 {
                // longest chains first: a destination is always longer than its source, so no
                // source is overwritten before it is read
                let mut src = alive;
                while src != 0 {
                    let k = 63 - src.leading_zeros() as usize;
                    src &= !(1u64 << k);
                    let broken = self
                        .exclusions
                        .iter()
                        .any(|(bit, from, to)| e.mask & bit != 0 && k >= *from && k < *to);
                    if broken {
                        continue;
                    }
                    let mut st = k + 1;
                    while st < n {
                        if m & (1 << st) != 0 {
                            let ok = e.ts <= s.start[k].saturating_add(self.window)
                                && e.ts - s.last[k] <= self.within[st];
                            if ok && (next & (1 << st) == 0 || s.start[st] < s.start[k]) {
                                next |= 1 << st;
                                s.start[st] = s.start[k];
                                s.extend_chain(n, k, st, e);
                            }
                            break;
                        }
                        if !self.optional[st] {
                            break;
                        }
                        st += 1;
                    }
                }
                if m & 1 != 0 && e.ts < self.entry_before {
                    next |= 1;
                    s.start[0] = e.ts;
                    s.chain_times[0] = e.ts;
                    s.chain_tags[0] = e.tag;
                }
            }
            let mut b = next;
            while b != 0 {
                let st = b.trailing_zeros() as usize;
                b &= b - 1;
                s.last[st] = e.ts;
            }
            alive = next;
            if alive != 0 {
                let top = 63 - alive.leading_zeros() as usize;
                if top + 1 > best {
                    best = top + 1;
                    let base = top * n;
                    out.times[..best].copy_from_slice(&s.chain_times[base..base + best]);
                    out.tags[..best].copy_from_slice(&s.chain_tags[base..base + best]);
                    // required steps are never skipped: the steps with a time are the ones done
                    out.reached = out.times[..best]
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| **t != i64::MIN)
                        .fold(0u64, |acc, (l, _)| acc | 1 << l);
                    if best == n {
                        break;
                    }
                }
            }
        }
    }

    /// Any order: the best window `[t, t + window]` starting at a step touchpoint, by the
    /// longest prefix of steps all done in it (optional steps need not be).
    fn run_unordered(&self, entries: &[Entry], s: &mut Scratch, out: &mut Outcome) {
        let n = self.n;
        let step_mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        s.reset(n);
        let counts = &mut s.counts;
        counts.iter_mut().for_each(|c| *c = 0);
        let mut present = 0u64;
        let mut best_prefix = 0usize;
        let mut best_anchor = usize::MAX;
        let mut r = 0usize;
        for a in 0..entries.len() {
            let anchor = entries[a];
            if anchor.mask & step_mask != 0 && anchor.ts < self.entry_before {
                let end = anchor.ts.saturating_add(self.window);
                while r < entries.len() && entries[r].ts <= end {
                    let mut b = entries[r].mask & step_mask;
                    while b != 0 {
                        let st = b.trailing_zeros() as usize;
                        counts[st] += 1;
                        present |= 1 << st;
                        b &= b - 1;
                    }
                    r += 1;
                }
                let mut prefix = 0;
                while prefix < n && (present & (1 << prefix) != 0 || self.optional[prefix]) {
                    prefix += 1;
                }
                // trailing optional steps without their required successor do not count
                while prefix > 0 && self.optional[prefix - 1] && present & (1 << (prefix - 1)) == 0
                {
                    prefix -= 1;
                }
                if prefix > best_prefix {
                    best_prefix = prefix;
                    best_anchor = a;
                    if prefix == n {
                        break;
                    }
                }
            }
            // the anchor leaves the window
            if a < r {
                let mut b = anchor.mask & step_mask;
                while b != 0 {
                    let st = b.trailing_zeros() as usize;
                    counts[st] -= 1;
                    if counts[st] == 0 {
                        present &= !(1 << st);
                    }
                    b &= b - 1;
                }
            }
        }
        if best_anchor == usize::MAX {
            return;
        }
        let a = entries[best_anchor];
        let end = a.ts.saturating_add(self.window);
        for e in entries[best_anchor..].iter().take_while(|e| e.ts <= end) {
            let mut b = e.mask & step_mask;
            while b != 0 {
                let st = b.trailing_zeros() as usize;
                if st < best_prefix && out.times[st] == i64::MIN {
                    out.times[st] = e.ts;
                    out.tags[st] = e.tag;
                    out.reached |= 1 << st;
                }
                b &= b - 1;
            }
        }
        out.reached |= required_up_to(&self.optional, best_prefix);
    }
}

pub(super) fn required_up_to(optional: &[bool], upto: usize) -> u64 {
    let mut m = 0u64;
    for (l, o) in optional.iter().enumerate().take(upto) {
        if !o {
            m |= 1 << l;
        }
    }
    m
}

/// Per-thread working memory of the kernels.
#[derive(Debug)]
pub struct Scratch {
    set: Vec<bool>,
    start: Vec<i64>,
    last: Vec<i64>,
    ever: u64,
    /// `chain_times[l * n + k]`: time of step k in the chain that reached step l.
    chain_times: Vec<i64>,
    chain_tags: Vec<u32>,
    group: Vec<(u32, u32)>,
    counts: Vec<u32>,
    /// The times of a chain walked by [`PersonRunner::record_table_chain`], kept across persons
    /// so that nothing is reset per person.
    pub(super) chain: [i64; CHAIN_SLOTS],
}

/// Slots of [`Scratch::chain`]: every step and a dummy.
pub(super) const CHAIN_SLOTS: usize = MAX_STEPS + 1;

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            set: Vec::new(),
            start: Vec::new(),
            last: Vec::new(),
            ever: 0,
            chain_times: Vec::new(),
            chain_tags: Vec::new(),
            group: Vec::new(),
            counts: Vec::new(),
            chain: [0; CHAIN_SLOTS],
        }
    }
}

impl Scratch {
    /// The chain of step `st` becomes the chain of step `p` (an earlier step), the optional
    /// steps between them skipped, and `e` as step `st`.
    #[inline]
    fn extend_chain(&mut self, n: usize, p: usize, st: usize, e: &Entry) {
        let (src, dst) = (p * n, st * n);
        self.chain_times.copy_within(src..=src + p, dst);
        self.chain_tags.copy_within(src..=src + p, dst);
        for l in p + 1..st {
            self.chain_times[dst + l] = i64::MIN;
            self.chain_tags[dst + l] = u32::MAX;
        }
        self.chain_times[dst + st] = e.ts;
        self.chain_tags[dst + st] = e.tag;
    }

    fn reset(&mut self, n: usize) {
        self.set.clear();
        self.set.resize(n, false);
        self.start.resize(n, 0);
        self.last.resize(n, 0);
        self.ever = 0;
        if self.chain_times.len() != n * n {
            self.chain_times = vec![i64::MIN; n * n];
            self.chain_tags = vec![u32::MAX; n * n];
        }
        self.counts.resize(n, 0);
    }
}

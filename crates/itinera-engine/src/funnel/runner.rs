use super::durations::{Durations, StepTimes};
use super::kernel::{SingleSteps, CHAIN_SLOTS};
use super::render::render;
use super::rows::{tag_of, EventMasks};
use super::*;
use crate::error::{EngineError, Result};
use crate::journey::CountBy;
use crate::journey::{
    Field, Journey, JourneyBatch, JourneyColumns, JourneyRows, JourneySource, PieceBatch,
    RowPrefetch, ScanOptions, NO_ACCOUNT,
};
use crate::selector::{EventSelector, Matcher};
use rustc_hash::FxHashMap;

/// Per-thread totals.
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub(super) counts: Vec<u64>,
    pub(super) levels: Vec<u64>,
    /// Per step: seconds-from-previous and seconds-from-first of those who reached it (ms). To
    /// step 2, the time from the first step is the time from the previous: only that is kept.
    pub(super) from_prev: Vec<Durations>,
    pub(super) from_first: Vec<Durations>,
    pub(super) breakdown: FxHashMap<u32, Vec<u64>>,
    pub(super) cohort: Vec<u32>,
}

impl Totals {
    fn new(n: usize) -> Totals {
        Totals {
            counts: vec![0; n],
            levels: vec![0; n + 1],
            from_prev: vec![Durations::default(); n],
            from_first: vec![Durations::default(); n],
            ..Default::default()
        }
    }

    /// Adds the counts of `o` (its durations are merged by [`StepTimes::of_steps`]).
    fn merge(&mut self, o: Totals) {
        for (a, b) in self.counts.iter_mut().zip(o.counts) {
            *a += b;
        }
        for (a, b) in self.levels.iter_mut().zip(o.levels) {
            *a += b;
        }
        for (k, v) in o.breakdown {
            let e = self.breakdown.entry(k).or_insert_with(|| vec![0; v.len()]);
            for (a, b) in e.iter_mut().zip(v) {
                *a += b;
            }
        }
        self.cohort.extend(o.cohort);
    }
}

/// Everything a thread needs to turn a journey into an outcome.
pub(super) struct PersonRunner<'q> {
    pub(super) q: &'q FunnelQuery,
    pub(super) kernel: &'q FunnelKernel,
    pub(super) matcher: &'q Matcher,
    pub(super) breakdown: Option<TagSource>,
}

impl PersonRunner<'_> {
    fn entries(&self, j: &Journey<'_>, out: &mut Vec<Entry>) {
        out.clear();
        let all = self.kernel.sees_all_rows();
        for i in 0..j.len() {
            let mask = self.matcher.row_mask(j, i);
            if mask == 0 && !all {
                continue;
            }
            out.push(Entry {
                ts: j.ts[i],
                mask,
                tag: tag_of(j, i, self.breakdown),
            });
        }
    }

    /// True when recording needs more than the times of the chain (a breakdown or a cohort).
    fn needs_outcome(&self) -> bool {
        self.q.breakdown.is_some() || self.q.cohort.is_some()
    }

    /// [`PersonRunner::record`] for a chain of `best` steps from `t0` found by
    /// [`FunnelKernel::run_slots`] (no breakdown, no cohort): the chain is walked once, its
    /// times recorded on the way. From the chain's start, each step is the first touchpoint of
    /// that step (the fastest form of the chain, as [`FunnelKernel::walk_chain`]; a touchpoint
    /// may serve consecutive steps); it ends within the window since a chain from that start
    /// does. The journey has no equal times, so the start is the one touchpoint at `t0`.
    /// `MULTI` when an event may match several steps (else each matches at most one, and a
    /// touchpoint serves at most one step of the chain).
    #[inline]
    fn record_table_chain<const MULTI: bool>(
        &self,
        rows: &EventMasks<'_, '_>,
        best: usize,
        t0: i64,
        times: &mut [i64; CHAIN_SLOTS],
        t: &mut Totals,
    ) {
        if !Self::count_reached(best, t) {
            return;
        }
        let ts = &rows.journey.ts[rows.lo..rows.hi];
        let events = &rows.journey.event[rows.lo..rows.hi];
        // the chain starts late in most journeys: its first row is the number of rows before
        // it, counted without a branch in short journeys and found by a branch-free bisection
        // in long ones
        let first = if ts.len() <= Self::SHORT_JOURNEY {
            ts.iter().map(|x| (*x < t0) as usize).sum()
        } else {
            let (mut base, mut size) = (0, ts.len());
            while size > 1 {
                let half = size / 2;
                base = std::hint::select_unpredictable(ts[base + half] < t0, base + half, base);
                size -= half;
            }
            base + (ts[base] < t0) as usize
        };
        let after = ts[first..].iter().zip(&events[first..]);
        Self::walk_table_chain::<MULTI>(rows.masks, after, best, t0, times, t);
    }

    /// The chain's walk of [`PersonRunner::record_table_chain`], over the touchpoints from the
    /// chain's start on (`after`: times and event codes, the start first).
    #[inline(always)]
    fn walk_table_chain<'r, const MULTI: bool>(
        masks: &[u64],
        after: impl Iterator<Item = (&'r i64, &'r u32)>,
        best: usize,
        t0: i64,
        times: &mut [i64; CHAIN_SLOTS],
        t: &mut Totals,
    ) {
        // without a branch on whether a touchpoint is the next step: one that is not writes to
        // a dummy slot
        const DUMMY: usize = CHAIN_SLOTS - 1;
        debug_assert!(best < DUMMY);
        times[0] = t0;
        let mut k = 1;
        for (&x, &code) in after {
            let later = masks.get(code as usize).copied().unwrap_or(0) >> k;
            let served = if MULTI {
                (later.trailing_ones() as usize).min(best - k)
            } else {
                (later & 1) as usize
            };
            times[if served > 0 { k } else { DUMMY }] = x;
            if MULTI {
                for slot in &mut times[k + 1..k + served.max(1)] {
                    *slot = x; // rare: the touchpoint serves the steps after too
                }
            }
            k += served;
            if k == best {
                break;
            }
        }
        debug_assert_eq!(k, best, "a chain from the latest start exists");
        for k in 1..best {
            t.counts[k] += 1;
            t.from_prev[k].push(times[k] - times[k - 1]);
            if k > 1 {
                t.from_first[k].push(times[k] - t0);
            }
        }
    }

    /// [`PersonRunner::record_table_chain`] for the chain found by
    /// [`FunnelKernel::single_slots_short`] (steps reached, start, the start's row): the walk
    /// begins at that row.
    #[inline(always)]
    fn record_chain_from(
        masks: &[u64],
        ts: &[i64],
        events: &[u32],
        (best, t0, first): (usize, i64, usize),
        times: &mut [i64; CHAIN_SLOTS],
        t: &mut Totals,
    ) {
        if Self::count_reached(best, t) {
            let after = ts[first..].iter().zip(&events[first..]);
            Self::walk_table_chain::<false>(masks, after, best, t0, times, t);
        }
    }

    /// Counts a person whose chain reached `best` steps; true when it has times between steps
    /// to record (one branch for the persons without).
    #[inline(always)]
    fn count_reached(best: usize, t: &mut Totals) -> bool {
        t.levels[best] += 1;
        t.counts[0] += (best > 0) as u64;
        best >= 2
    }

    /// [`PersonRunner::record_table_chain`] for a journey in pieces (each ordered by time and
    /// before the next), for tables where an event matches at most one step.
    fn record_table_chain_pieces<'p>(
        masks: &[u64],
        pieces: impl Iterator<Item = (&'p [i64], &'p [u32])>,
        best: usize,
        t0: i64,
        times: &mut [i64; CHAIN_SLOTS],
        t: &mut Totals,
    ) {
        if !Self::count_reached(best, t) {
            return;
        }
        // the chain starts late in most journeys: whole pieces before it are passed over
        let mut rest = pieces.skip_while(|(ts, _)| ts.last().is_some_and(|&x| x < t0));
        let Some((ts, events)) = rest.next() else {
            debug_assert!(false, "the chain's start is in a piece");
            return;
        };
        let first = ts.partition_point(|&x| x < t0);
        let after = (ts[first..].iter().zip(&events[first..]))
            .chain(rest.flat_map(|(ts, events)| ts.iter().zip(events)));
        Self::walk_table_chain::<false>(masks, after, best, t0, times, t);
    }

    /// Journeys up to this long find their chain's start by counting (see
    /// [`PersonRunner::record_table_chain`]).
    const SHORT_JOURNEY: usize = 64;

    fn record(&self, who: u32, o: &Outcome, t: &mut Totals) {
        if o.reached == 0 {
            t.levels[0] += 1;
            return;
        }
        t.levels[o.level] += 1;
        let n = self.q.steps.len();
        let mut prev_time: Option<i64> = None;
        for st in 0..n {
            if o.reached & (1 << st) == 0 {
                continue;
            }
            t.counts[st] += 1;
            let time = o.times[st];
            if time != i64::MIN {
                if let Some(p) = prev_time {
                    t.from_prev[st].push(time - p);
                }
                if st > 1 && o.times[0] != i64::MIN {
                    t.from_first[st].push(time - o.times[0]);
                }
                prev_time = Some(time);
            }
        }
        if let Some(b) = &self.q.breakdown {
            let tag = match b.attribution {
                Attribution::FirstTouch => o.tags[0],
                Attribution::LastTouch => (0..n)
                    .rev()
                    .find(|s| o.reached & (1 << s) != 0 && o.tags[*s] != u32::MAX)
                    .map(|s| o.tags[s])
                    .unwrap_or(u32::MAX),
                Attribution::Step(k) => o.tags[k - 1],
            };
            let row = t.breakdown.entry(tag).or_insert_with(|| vec![0; n]);
            for (st, c) in row.iter_mut().enumerate() {
                if o.reached & (1 << st) != 0 {
                    *c += 1;
                }
            }
        }
        if let Some(c) = self.q.cohort {
            let k = c.step - 1;
            let hit = match c.outcome {
                CohortOutcome::Reached => o.reached & (1 << k) != 0,
                CohortOutcome::Dropped => {
                    let prev = (0..k)
                        .rev()
                        .find(|p| !self.q.steps[*p].optional)
                        .unwrap_or(0);
                    o.reached & (1 << prev) != 0 && o.reached & (1 << k) == 0
                }
            };
            if hit {
                t.cohort.push(who);
            }
        }
    }
}

/// Runs a funnel on a backend.
/// A scan thread's accumulator for a funnel counted by person: totals, entries, kernel scratch,
/// an outcome and rows copied together.
type PersonAcc = (Totals, Vec<Entry>, Scratch, Outcome, JourneyRows);

pub fn run_funnel<S: JourneySource>(
    source: &S,
    q: &FunnelQuery,
    opts: &ScanOptions,
) -> Result<FunnelResult> {
    let kernel = FunnelKernel::new(q)?;
    let n = q.steps.len();
    let mut selectors: Vec<EventSelector> = q.steps.iter().map(|s| s.selector.clone()).collect();
    selectors.extend(q.exclusions.iter().map(|e| e.selector.clone()));
    let (matcher, tags) = source.with_vocabulary(|v| {
        let tags = q.breakdown.as_ref().map(|b| match b.field {
            BreakdownField::Channel => TagSource::Channel,
            BreakdownField::Touchpoint => TagSource::Touchpoint,
            BreakdownField::Event => TagSource::Event,
            BreakdownField::Property => TagSource::Property(
                b.property
                    .as_deref()
                    .and_then(|p| v.code(Field::PropKey, p)),
            ),
        });
        // a property no touchpoint has would put everyone in `(none)`: a typo, said as one
        if let (Some(TagSource::Property(None)), Some(p)) = (
            tags,
            q.breakdown.as_ref().and_then(|b| b.property.as_deref()),
        ) {
            return Err(EngineError::invalid(
                "breakdown.property",
                format!(
                    "no stored touchpoint has the property `{p}`{}",
                    crate::selector::did_you_mean(p, v.names(Field::PropKey))
                ),
            ));
        }
        Matcher::compile(&selectors, v).map(|m| (m, tags))
    })?;
    let runner = PersonRunner {
        q,
        kernel: &kernel,
        matcher: &matcher,
        breakdown: tags,
    };
    let mut scan_opts = opts.clone();
    // per person, counts and sets of durations: the same whichever thread sees a person (per
    // account, the order in which equal times of different persons arrive may matter)
    scan_opts.order_free = q.count_by == CountBy::Person;
    scan_opts.columns = matcher.columns().with(match runner.breakdown {
        None | Some(TagSource::Event) => JourneyColumns::NONE,
        Some(TagSource::Channel) => JourneyColumns::CHANNEL,
        Some(TagSource::Touchpoint) => JourneyColumns::TOUCHPOINT,
        Some(TagSource::Property(_)) => JourneyColumns::PROPS,
    });
    if q.count_by == CountBy::Account {
        scan_opts.columns = scan_opts.columns.with(JourneyColumns::GROUP);
    }
    scan_opts.from_ms = max_opt(opts.from_ms, q.from_ms);
    scan_opts.to_ms = min_opt(
        opts.to_ms,
        q.to_ms
            .map(|t| t.saturating_add(q.window.ms()).saturating_add(1)),
    );
    // steps over event names only: the branch-free kernels, with the step mask of each event code
    let event_masks = matcher.event_masks().unwrap_or(&[]);
    let slot_table = if kernel.is_plain() {
        matcher.event_masks().and_then(|m| SlotTable::new(m, n))
    } else {
        None
    };
    let mut totals = Totals::new(n);
    let mut durations = Vec::new();
    match q.count_by {
        CountBy::Person => {
            let init = || {
                (
                    Totals::new(n),
                    Vec::new(),
                    Scratch::default(),
                    Outcome::default(),
                    JourneyRows::default(),
                )
            };
            let batch = |(t, entries, scratch, outcome, _): &mut PersonAcc,
                         b: &JourneyBatch<'_>| {
                let ties = !b.distinct_times;
                // a person's rows as the table kernels read them, asked for ahead of time (the
                // general kernels are slow enough per row for the hints to pay)
                let mut prefetch = RowPrefetch::default();
                let mut rows_of = |lo: u32, hi: u32| {
                    prefetch.ahead(&b.rows, lo as usize);
                    EventMasks {
                        journey: &b.rows,
                        lo: lo as usize,
                        hi: hi as usize,
                        masks: event_masks,
                        breakdown: runner.breakdown,
                    }
                };
                // the hottest path: small funnels over event names, on rows without equal
                // times, one kernel for the whole batch, inlined into this loop
                if let Some(slots) = slot_table
                    .as_ref()
                    .filter(|s| kernel.small_single(s, ties) && !runner.needs_outcome())
                {
                    let single = slots.single.as_ref().expect("a single-step table");
                    for &(lo, hi) in b.ranges {
                        let (lo, hi) = (lo as usize, hi as usize);
                        let (ts, events) = (&b.rows.ts[lo..hi], &b.rows.event[lo..hi]);
                        // most journeys: the chain's start comes with its row
                        if let Some(chain) = kernel.single_slots_short(ts, events, &single.forward)
                        {
                            let times = &mut scratch.chain;
                            PersonRunner::record_chain_from(
                                event_masks,
                                ts,
                                events,
                                chain,
                                times,
                                t,
                            );
                            continue;
                        }
                        // not asked for ahead: the processor's own prefetcher keeps up with this
                        // kernel, and the hints cost it more than they saved (docs/benchmarks.md)
                        let rows = EventMasks {
                            journey: &b.rows,
                            lo,
                            hi,
                            masks: event_masks,
                            breakdown: runner.breakdown,
                        };
                        let (best, t0) = kernel
                            .single_slots::<8, false, false>(&rows, single)
                            .expect("no ties looked for");
                        runner.record_table_chain::<false>(&rows, best, t0, &mut scratch.chain, t);
                    }
                    return;
                }
                for (k, &(lo, hi)) in b.ranges.iter().enumerate() {
                    // the hot path: the batch's columns read in place
                    if let Some(slots) = &slot_table {
                        let rows = rows_of(lo, hi);
                        if let Some((best, t0)) = kernel.run_slots(&rows, slots, ties) {
                            if runner.needs_outcome() {
                                outcome.reached = 0;
                                outcome.level = 0;
                                if best > 0 {
                                    kernel.report_chain(&rows, best, t0, outcome);
                                }
                                runner.record(b.persons[k], outcome, t);
                            } else if slots.single.is_some() {
                                runner.record_table_chain::<false>(
                                    &rows,
                                    best,
                                    t0,
                                    &mut scratch.chain,
                                    t,
                                );
                            } else {
                                runner.record_table_chain::<true>(
                                    &rows,
                                    best,
                                    t0,
                                    &mut scratch.chain,
                                    t,
                                );
                            }
                            continue;
                        }
                    }
                    let j = b.journey(k);
                    let matched = MatchedJourney {
                        journey: &j,
                        matcher: &matcher,
                        breakdown: runner.breakdown,
                    };
                    let done = slot_table.is_none()
                        && kernel.is_plain()
                        && kernel.run_plain(&matched, outcome);
                    if !done {
                        runner.entries(&j, entries);
                        kernel.run(entries, scratch, outcome);
                    }
                    runner.record(b.persons[k], outcome, t);
                }
            };
            // persons whose rows lie in pieces (a store being written to): the hottest kernel
            // reads them where they lie; a person with equal times is copied together and goes
            // as a batch of one. Funnels that kernel does not cover let the source copy
            // persons together in batches, as before.
            let single = slot_table
                .as_ref()
                .filter(|s| kernel.small_single(s, false) && !runner.needs_outcome())
                .and_then(|s| s.single.as_ref())
                .filter(|_| scan_opts.columns == JourneyColumns::NONE);
            let pieces = |acc: &mut PersonAcc, b: &PieceBatch<'_>, single: &SingleSteps| {
                // a person's pieces as slices, found once for the kernel and the walk
                let mut slices = Vec::new();
                for k in 0..b.persons.len() {
                    slices.clear();
                    slices.extend(b.pieces(k));
                    let chain = kernel.single_slots_pieces(
                        slices.iter().copied(),
                        || b.has_ties(k),
                        single,
                    );
                    if let Some((best, t0)) = chain {
                        let (t, scratch) = (&mut acc.0, &mut acc.2);
                        PersonRunner::record_table_chain_pieces(
                            event_masks,
                            slices.iter().copied(),
                            best,
                            t0,
                            &mut scratch.chain,
                            t,
                        );
                        continue;
                    }
                    let mut rows = std::mem::take(&mut acc.4);
                    b.gather_into(k, &mut rows);
                    let range = [(0, rows.ts.len() as u32)];
                    let one = JourneyBatch {
                        rows: rows.journey(b.persons[k]),
                        persons: &b.persons[k..k + 1],
                        ranges: &range,
                        distinct_times: false,
                    };
                    batch(acc, &one);
                    acc.4 = rows;
                }
            };
            let parts = match single {
                Some(single) => {
                    source.scan_pieces(&scan_opts, init, batch, |acc, b| pieces(acc, b, single))
                }
                None => source.scan_batches(&scan_opts, init, batch),
            };
            for (mut t, ..) in parts {
                durations.push((
                    std::mem::take(&mut t.from_prev),
                    std::mem::take(&mut t.from_first),
                ));
                totals.merge(t);
            }
        }
        CountBy::Account => {
            let parts = source.scan(
                &scan_opts,
                || (Vec::<(u32, Entry)>::new(), Vec::new()),
                |(acc, entries), j| {
                    let account = j.account();
                    if account == NO_ACCOUNT {
                        return;
                    }
                    runner.entries(j, entries);
                    acc.extend(entries.iter().map(|e| (account, *e)));
                },
            );
            let mut all: Vec<(u32, Entry)> = parts.into_iter().flat_map(|p| p.0).collect();
            // stable: the arrival order of ties within a person is kept
            all.sort_by_key(|(a, e)| (*a, e.ts));
            let (mut scratch, mut outcome) = (Scratch::default(), Outcome::default());
            let mut entries = Vec::new();
            for group in all.chunk_by(|a, b| a.0 == b.0) {
                entries.clear();
                entries.extend(group.iter().map(|(_, e)| *e));
                kernel.run(&entries, &mut scratch, &mut outcome);
                runner.record(group[0].0, &outcome, &mut totals);
            }
            durations.push((
                std::mem::take(&mut totals.from_prev),
                std::mem::take(&mut totals.from_first),
            ));
        }
    }
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |t| t.get()),
        t => t,
    };
    let times = StepTimes::of_steps(durations, n, threads);
    Ok(source.with_vocabulary(|v| render(q, totals, times, v)))
}

pub(super) fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) | (None, x) => x,
    }
}

pub(super) fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) | (None, x) => x,
    }
}

/// Upper bounds, in seconds, of the time-to-convert histogram's buckets (bucket bounds are inclusive).
pub(super) const TTC_BOUNDS: [f64; 9] = [
    60.0, 600.0, 3600.0, 21600.0, 86400.0, 259200.0, 604800.0, 1209600.0, 2592000.0,
];

/// Durations in ms, kept exactly: those from 0 to `u32::MAX` ms (49 days) in 32 bits, the
/// others in 64. Funnels record millions of times per query; half the bytes are half the
/// memory traffic of recording, merging and selecting quantiles.
#[derive(Debug, Default, Clone)]
pub(super) struct Durations {
    pub(super) short: Vec<u32>,
    pub(super) long: Vec<i64>,
}

impl Durations {
    #[inline]
    pub(super) fn push(&mut self, ms: i64) {
        match u32::try_from(ms) {
            Ok(v) => self.short.push(v),
            Err(_) => self.long.push(ms),
        }
    }

    fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    fn append(&mut self, o: &Durations) {
        self.short.extend_from_slice(&o.short);
        self.long.extend_from_slice(&o.long);
    }

    fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        self.short
            .iter()
            .map(|v| *v as i64)
            .chain(self.long.iter().copied())
    }

    /// The nearest-rank quantiles (as [`crate::stats::quantile`]) for ascending `qs`: each
    /// selection after the first only looks above the previous one.
    fn quantiles<const K: usize>(&mut self, qs: [f64; K]) -> [Option<i64>; K] {
        debug_assert!(qs.is_sorted());
        let n = self.len();
        let mut out = [None; K];
        if n == 0 {
            return out;
        }
        let ranks = qs.map(|q| ((q * n as f64).ceil() as usize).clamp(1, n) - 1);
        if self.long.iter().any(|v| *v < 0) {
            // not ordered after the short ones: select over all
            let mut all: Vec<i64> = self.iter().collect();
            select_ranks(&mut all, &ranks, &mut out, |v| v);
            return out;
        }
        // every long duration is above every short one
        let short = self.short.len();
        let (low, high) = ranks.split_at(ranks.partition_point(|r| *r < short));
        let (out_low, out_high) = out.split_at_mut(low.len());
        select_ranks(&mut self.short, low, out_low, |v| v as i64);
        let high: Vec<usize> = high.iter().map(|r| r - short).collect();
        select_ranks(&mut self.long, &high, out_high, |v| v);
        out
    }

    /// The nearest-rank quantile (as [`crate::stats::quantile`]).
    #[cfg(test)]
    fn quantile(&mut self, q: f64) -> Option<i64> {
        self.quantiles([q])[0]
    }
}

/// Places the values of ascending `ranks` of `v` into `out`, each selection in the part above the
/// previous rank.
pub(super) fn select_ranks<T: Ord + Copy>(
    v: &mut [T],
    ranks: &[usize],
    out: &mut [Option<i64>],
    widen: impl Fn(T) -> i64,
) {
    let mut from = 0;
    for (r, o) in ranks.iter().zip(out) {
        let r = (*r).max(from);
        *o = Some(widen(*v[from..].select_nth_unstable(r - from).1));
        from = r;
    }
}

/// One statistic to compute in [`StepTimes::of_steps`]: its number and every thread's durations.
pub(super) type Job = (usize, Vec<Durations>);

/// The time statistics of one step, from the durations of every thread.
#[derive(Debug, Default, Clone)]
pub(super) struct StepTimes {
    pub(super) median: Option<i64>,
    pub(super) p90: Option<i64>,
    pub(super) count: u64,
    pub(super) sum: i64,
    /// Counts per [`TTC_BOUNDS`] bucket, the last one unbounded (filled for time to convert).
    pub(super) histogram: Vec<u64>,
}

impl StepTimes {
    /// Merges `parts` and computes their statistics; the 90th percentile and the histogram only
    /// when asked for.
    fn of(mut parts: Vec<Durations>, p90: bool, histogram: bool) -> StepTimes {
        // into the part with the most room, grown at most once
        parts.sort_by_key(|p| std::cmp::Reverse(p.short.capacity()));
        let mut parts = parts.into_iter();
        let mut all = parts.next().unwrap_or_default();
        let rest: Vec<Durations> = parts.collect();
        all.short.reserve(rest.iter().map(|p| p.short.len()).sum());
        for p in rest {
            all.append(&p);
        }
        let (median, p90) = if p90 {
            let [m, p] = all.quantiles([0.5, 0.9]);
            (m, p)
        } else {
            (all.quantiles([0.5])[0], None)
        };
        let mut t = StepTimes {
            median,
            p90,
            count: all.len() as u64,
            sum: all.iter().sum(),
            histogram: Vec::new(),
        };
        if histogram {
            t.histogram = vec![0; TTC_BOUNDS.len() + 1];
            // whole seconds: compared in ms without a division per duration
            let bounds = TTC_BOUNDS.map(|b| (b * 1000.0) as i64);
            for ms in all.iter() {
                t.histogram[bounds.partition_point(|b| *b < ms)] += 1;
            }
        }
        t
    }

    /// Per step, the statistics of the times from the previous step and from the first, with the
    /// histogram of the last step's time from the first. `parts` holds each thread's durations;
    /// merging and selecting run on up to `threads` threads, the biggest steps first.
    pub(super) fn of_steps(
        parts: Vec<(Vec<Durations>, Vec<Durations>)>,
        n: usize,
        threads: usize,
    ) -> (Vec<StepTimes>, Vec<StepTimes>) {
        // job 2k: from the previous step to step k; job 2k + 1: from the first step to step k
        // (none for step 2: that is job 2, see [`Totals::from_prev`])
        let mut jobs: Vec<Job> = (0..2 * n).map(|j| (j, Vec::new())).collect();
        for (prev, first) in parts {
            for (k, (a, b)) in prev.into_iter().zip(first).enumerate() {
                jobs[2 * k].1.push(a);
                jobs[2 * k + 1].1.push(b);
            }
        }
        if n > 1 {
            jobs.remove(3);
        }
        let size = |j: &Job| j.1.iter().map(|d| d.len()).sum::<usize>();
        jobs.sort_by_key(|j| std::cmp::Reverse(size(j)));
        let total: usize = jobs.iter().map(size).sum();
        let threads = if total < 200_000 { 1 } else { threads.max(1) };
        // the biggest job to the least loaded thread
        let mut lanes: Vec<(usize, Vec<Job>)> = (0..threads).map(|_| (0, Vec::new())).collect();
        for j in jobs {
            let lane = lanes.iter_mut().min_by_key(|l| l.0).expect("one lane");
            lane.0 += size(&j);
            lane.1.push(j);
        }
        // time to convert: to the last step from the first
        let last = if n == 2 { 2 } else { 2 * n - 1 };
        let run = |lane: Vec<Job>| {
            lane.into_iter()
                .map(|(j, d)| (j, StepTimes::of(d, j % 2 == 0 || j == last, j == last)))
                .collect::<Vec<_>>()
        };
        let mut lanes = lanes.into_iter().map(|l| l.1);
        let mine = lanes.next().unwrap_or_default();
        let mut done: Vec<(usize, StepTimes)> = std::thread::scope(|s| {
            let others: Vec<_> = lanes.map(|l| s.spawn(move || run(l))).collect();
            let mut done = run(mine);
            for h in others {
                done.extend(h.join().expect("time statistics thread panicked"));
            }
            done
        });
        done.sort_by_key(|d| d.0);
        if n > 1 {
            let to_second = done[2].1.clone();
            done.insert(3, (3, to_second));
        }
        let (mut prev, mut first) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (j, t) in done {
            if j % 2 == 0 {
                prev.push(t);
            } else {
                first.push(t);
            }
        }
        (prev, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::quantile;

    /// The time-to-convert histogram puts a duration on a bound in that bound's bucket, from
    /// every thread's part, long durations included.
    #[test]
    fn histogram_buckets_are_closed_above() {
        let mut a = Durations::default();
        let mut b = Durations::default();
        for ms in [0, 60_000, 60_001, 600_000] {
            a.push(ms);
        }
        for ms in [2_592_000_000, 2_592_000_001, 5_000_000_000] {
            b.push(ms);
        }
        let t = StepTimes::of(vec![a, b], true, true);
        assert_eq!(t.histogram, [2, 2, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(t.count, 7);
        assert_eq!(t.median, Some(600_000));
        assert_eq!(t.p90, Some(5_000_000_000));
    }
    use proptest::prelude::*;

    proptest! {
        /// Split storage gives the quantiles of the plain values, long and negative ones included.
        #[test]
        fn durations_quantiles_are_exact(
            values in prop::collection::vec(
                prop_oneof![0i64..1_000, 4_294_967_000i64..4_294_968_000, -5i64..0, 5_000_000_000i64..6_000_000_000],
                0..40,
            ),
            q in prop_oneof![Just(0.5), Just(0.9), Just(0.01), Just(1.0)],
        ) {
            let mut d = Durations::default();
            for v in &values {
                d.push(*v);
            }
            let mut plain = values.clone();
            prop_assert_eq!(d.quantile(q), quantile(&mut plain, q));
            // several ascending ranks at once, each selected above the previous
            let qs = [0.01, 0.5, 0.5, 0.9, 1.0];
            let expected = qs.map(|q| quantile(&mut plain, q));
            prop_assert_eq!(d.quantiles(qs), expected);
            prop_assert_eq!(d.iter().sum::<i64>(), values.iter().sum::<i64>());
        }
    }
}

//! Funnel semantics: golden edge cases, a brute-force reference and properties.

use itinera_engine::funnel::{
    Attribution, Breakdown, BreakdownField, CohortOutcome, CohortRequest, Exclusion,
};
use itinera_engine::journey::CountBy;
use itinera_engine::memory::{MemorySource, Row};
use itinera_engine::{run_funnel, EventSelector, FunnelOrder, FunnelQuery, Span};
use proptest::prelude::*;

fn rows(spec: &[(&str, i64, &str)]) -> Vec<Row> {
    spec.iter().map(|(p, t, e)| Row::new(p, *t, e)).collect()
}

fn funnel<S: AsRef<str>>(steps: &[S], window_ms: i64, order: FunnelOrder) -> FunnelQuery {
    let names: Vec<&str> = steps.iter().map(AsRef::as_ref).collect();
    let mut q = FunnelQuery::events(&names, Span(window_ms));
    q.order = order;
    q
}

fn counts(src: &MemorySource, q: &FunnelQuery) -> Vec<u64> {
    run_funnel(src, q, &Default::default())
        .unwrap()
        .steps
        .iter()
        .map(|s| s.count)
        .collect()
}

fn level_of(seq: &[(i64, &str)], steps: &[&str], window: i64, order: FunnelOrder) -> usize {
    let r: Vec<Row> = seq.iter().map(|(t, e)| Row::new("p", *t, e)).collect();
    let src = MemorySource::new(&r);
    let res = run_funnel(&src, &funnel(steps, window, order), &Default::default()).unwrap();
    res.levels.iter().rposition(|n| *n > 0).unwrap_or(0)
}

#[test]
fn ordered_allows_other_touchpoints_in_between_and_respects_the_window() {
    let seq = [(1, "a"), (2, "x"), (3, "b"), (50, "c")];
    assert_eq!(
        level_of(&seq, &["a", "b", "c"], 100, FunnelOrder::Ordered),
        3
    );
    assert_eq!(
        level_of(&seq, &["a", "b", "c"], 10, FunnelOrder::Ordered),
        2
    );
    // the window is inclusive
    assert_eq!(
        level_of(&seq, &["a", "b", "c"], 49, FunnelOrder::Ordered),
        3
    );
    assert_eq!(
        level_of(&seq, &["a", "b", "c"], 48, FunnelOrder::Ordered),
        2
    );
}

#[test]
fn a_later_start_can_rescue_a_chain() {
    // the first `a` is too early for `c`; the second one is not
    let seq = [(0, "a"), (5, "b"), (20, "a"), (25, "b"), (28, "c")];
    assert_eq!(
        level_of(&seq, &["a", "b", "c"], 10, FunnelOrder::Ordered),
        3
    );
}

#[test]
fn strict_needs_consecutive_touchpoints_but_may_restart() {
    let seq = [(1, "a"), (2, "x"), (3, "b"), (4, "a"), (5, "b"), (6, "c")];
    assert_eq!(
        level_of(&seq, &["a", "b", "c"], 100, FunnelOrder::Strict),
        3
    );
    let seq = [(1, "a"), (2, "b"), (3, "x"), (4, "c")];
    assert_eq!(
        level_of(&seq, &["a", "b", "c"], 100, FunnelOrder::Strict),
        2
    );
    // windowFunnel's strict_order stops at the first intruder
    let seq = [(1, "a"), (2, "x"), (3, "a"), (4, "b")];
    assert_eq!(
        level_of(&seq, &["a", "b"], 100, FunnelOrder::StrictOrder),
        1
    );
    assert_eq!(level_of(&seq, &["a", "b"], 100, FunnelOrder::Strict), 2);
}

#[test]
fn unordered_counts_steps_in_any_order_within_the_window() {
    let seq = [(1, "c"), (2, "b"), (3, "a")];
    assert_eq!(
        level_of(&seq, &["a", "b", "c"], 10, FunnelOrder::Unordered),
        3
    );
    assert_eq!(
        level_of(&seq, &["a", "b", "c"], 10, FunnelOrder::Ordered),
        1
    );
    assert_eq!(
        level_of(&seq, &["a", "b", "c"], 1, FunnelOrder::Unordered),
        2
    );
}

#[test]
fn clickhouse_modes_on_repeats_and_ties() {
    // equal times are taken by step number
    let seq = [(1, "b"), (1, "a")];
    assert_eq!(level_of(&seq, &["a", "b"], 10, FunnelOrder::Ordered), 2);
    assert_eq!(
        level_of(&seq, &["a", "b"], 10, FunnelOrder::StrictIncrease),
        1
    );
    // a touchpoint counts for every step it matches
    assert_eq!(
        level_of(&[(1, "a")], &["a", "a"], 10, FunnelOrder::Ordered),
        2
    );
    // a repeat of a reached step ends strict_deduplication, a repeat of step 1 restarts
    let seq = [(1, "a"), (2, "b"), (3, "a"), (4, "b"), (5, "c")];
    assert_eq!(
        level_of(
            &seq,
            &["a", "b", "c"],
            100,
            FunnelOrder::StrictDeduplication
        ),
        2
    );
    let seq = [(1, "a"), (2, "a"), (3, "b")];
    assert_eq!(
        level_of(
            &seq,
            &["a", "b", "c"],
            100,
            FunnelOrder::StrictDeduplication
        ),
        2
    );
}

/// Equal times in a person handed over in pieces send the person to the general kernel, which
/// takes them by step number: `b` then `a` at the same time still make the chain a → b.
#[test]
fn ties_in_pieces_are_taken_by_step_number() {
    let spec = rows(&[("p", 5, "b"), ("p", 5, "a"), ("p", 9, "x"), ("q", 1, "a")]);
    let q = funnel(&["a", "b"], 10, FunnelOrder::Ordered);
    let whole = MemorySource::new(&spec);
    assert_eq!(counts(&whole, &q), [2, 1]);
    for every in 1..4 {
        assert_eq!(
            counts(&MemorySource::new(&spec).in_pieces(every), &q),
            [2, 1]
        );
    }
}

#[test]
fn optional_steps_may_be_skipped() {
    let src = MemorySource::new(&rows(&[
        ("p1", 1, "a"),
        ("p1", 2, "b"),
        ("p1", 3, "c"),
        ("p2", 1, "a"),
        ("p2", 3, "c"),
        ("p3", 1, "a"),
    ]));
    let mut q = funnel(&["a", "b", "c"], 100, FunnelOrder::Ordered);
    q.steps[1].optional = true;
    let r = run_funnel(&src, &q, &Default::default()).unwrap();
    let c: Vec<u64> = r.steps.iter().map(|s| s.count).collect();
    assert_eq!(c, vec![3, 1, 2]);
    // conversion of step 3 is from the previous required step (1)
    assert_eq!(r.steps[2].conversion_from_previous, Some(2.0 / 3.0));
    q.order = FunnelOrder::Strict;
    assert_eq!(counts(&src, &q), vec![3, 1, 2]);
    q.order = FunnelOrder::Unordered;
    assert_eq!(counts(&src, &q), vec![3, 1, 2]);
}

#[test]
fn per_step_windows_and_exclusions() {
    let src = MemorySource::new(&rows(&[
        ("p1", 0, "a"),
        ("p1", 50, "b"),
        ("p2", 0, "a"),
        ("p2", 5, "b"),
        ("p3", 0, "a"),
        ("p3", 2, "cancel"),
        ("p3", 4, "b"),
        ("p4", 0, "a"),
        ("p4", 2, "cancel"),
        ("p4", 3, "a"),
        ("p4", 4, "b"),
    ]));
    let mut q = funnel(&["a", "b"], 100, FunnelOrder::Ordered);
    q.steps[1].within = Some(Span(10));
    assert_eq!(counts(&src, &q), vec![4, 3]);
    q.exclusions.push(Exclusion {
        selector: EventSelector::event("cancel"),
        from_step: None,
        to_step: None,
    });
    // p3's chain is broken; p4 starts again after the exclusion
    assert_eq!(counts(&src, &q), vec![4, 2]);
    q.order = FunnelOrder::Strict;
    assert_eq!(counts(&src, &q), vec![4, 2]);
}

#[test]
fn accounts_are_counted_over_all_members() {
    let mut r = rows(&[("alice", 1, "a"), ("bob", 2, "b"), ("carol", 1, "a")]);
    r[0].account = Some("acme".into());
    r[1].account = Some("acme".into());
    r[2].account = Some("globex".into());
    let src = MemorySource::new(&r);
    let mut q = funnel(&["a", "b"], 100, FunnelOrder::Ordered);
    assert_eq!(counts(&src, &q), vec![2, 0]);
    q.count_by = CountBy::Account;
    assert_eq!(counts(&src, &q), vec![2, 1]);
    q.cohort = Some(CohortRequest {
        step: 2,
        outcome: CohortOutcome::Dropped,
    });
    let res = run_funnel(&src, &q, &Default::default()).unwrap();
    assert_eq!(res.cohort.unwrap(), vec!["globex".to_string()]);
}

#[test]
fn breakdown_attributes_the_value_of_the_chosen_touchpoint() {
    let mut r = rows(&[
        ("p1", 1, "a"),
        ("p1", 2, "b"),
        ("p2", 1, "a"),
        ("p2", 2, "b"),
    ]);
    r[0].channel = "email".into();
    r[1].channel = "direct".into();
    r[2].channel = "social".into();
    r[3].channel = "direct".into();
    let src = MemorySource::new(&r);
    let mut q = funnel(&["a", "b"], 100, FunnelOrder::Ordered);
    q.breakdown = Some(Breakdown {
        field: BreakdownField::Channel,
        property: None,
        attribution: Attribution::FirstTouch,
    });
    let res = run_funnel(&src, &q, &Default::default()).unwrap();
    let vals: Vec<(String, Vec<u64>)> = res
        .breakdown
        .iter()
        .map(|b| (b.value.clone(), b.counts.clone()))
        .collect();
    assert_eq!(
        vals,
        vec![("email".into(), vec![1, 1]), ("social".into(), vec![1, 1])]
    );
    q.breakdown = Some(Breakdown {
        field: BreakdownField::Channel,
        property: None,
        attribution: Attribution::LastTouch,
    });
    let res = run_funnel(&src, &q, &Default::default()).unwrap();
    assert_eq!(res.breakdown.len(), 1);
    assert_eq!(res.breakdown[0].value, "direct");
    assert_eq!(res.breakdown[0].counts, vec![2, 2]);
}

#[test]
fn times_between_steps_and_time_to_convert() {
    let src = MemorySource::new(&rows(&[
        ("p1", 0, "a"),
        ("p1", 10_000, "b"),
        ("p1", 40_000, "c"),
        ("p2", 0, "a"),
        ("p2", 20_000, "b"),
    ]));
    let res = run_funnel(
        &src,
        &funnel(&["a", "b", "c"], 100_000, FunnelOrder::Ordered),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(res.steps[1].median_seconds_from_previous, Some(10.0));
    assert_eq!(res.steps[1].p90_seconds_from_previous, Some(20.0));
    assert_eq!(res.steps[2].median_seconds_from_first, Some(40.0));
    assert_eq!(res.time_to_convert.converted, 1);
    assert_eq!(res.time_to_convert.median_seconds, Some(40.0));
}

#[test]
fn invalid_queries_name_the_field() {
    let src = MemorySource::new(&rows(&[("p", 1, "a")]));
    let mut q = funnel(&["a", "b"], 100, FunnelOrder::StrictOrder);
    q.steps[1].within = Some(Span(5));
    let err = run_funnel(&src, &q, &Default::default()).unwrap_err();
    assert!(err.to_string().starts_with("invalid order"), "{err}");
    let q = funnel::<&str>(&[], 100, FunnelOrder::Ordered);
    assert!(run_funnel(&src, &q, &Default::default())
        .unwrap_err()
        .to_string()
        .contains("steps"));
    assert!(EventSelector::parse("colour=red").is_err());
}

/// The longest chain by exhaustive search: entries sorted by (time, step); a chain takes
/// entries at increasing positions matching steps 1, 2, … with the last within the window of
/// the first.
fn brute_force_ordered(seq: &[(i64, u8)], steps: &[u8], window: i64) -> usize {
    let mut entries: Vec<(i64, usize)> = Vec::new();
    for (t, e) in seq {
        for (s, st) in steps.iter().enumerate() {
            if st == e {
                entries.push((*t, s));
            }
        }
    }
    entries.sort();
    fn extend(
        entries: &[(i64, usize)],
        from: usize,
        step: usize,
        start: i64,
        window: i64,
        n: usize,
    ) -> usize {
        if step == n {
            return n;
        }
        let mut best = step;
        for i in from..entries.len() {
            let (t, s) = entries[i];
            if s == step && t <= start + window {
                best = best.max(extend(entries, i + 1, step + 1, start, window, n));
            }
        }
        best
    }
    let mut best = 0;
    for (i, (t, s)) in entries.iter().enumerate() {
        if *s == 0 {
            best = best.max(extend(&entries, i + 1, 1, *t, window, steps.len()));
        }
    }
    best
}

fn source(seqs: &[Vec<(i64, u8)>]) -> MemorySource {
    let mut r = Vec::new();
    for (p, seq) in seqs.iter().enumerate() {
        for (t, e) in seq {
            r.push(Row::new(&format!("p{p}"), *t, &format!("e{e}")));
        }
    }
    MemorySource::new(&r)
}

fn names(steps: &[u8]) -> Vec<String> {
    steps.iter().map(|s| format!("e{s}")).collect()
}

fn journeys() -> impl Strategy<Value = Vec<Vec<(i64, u8)>>> {
    prop::collection::vec(
        prop::collection::vec((0i64..40, 0u8..4), 0..14).prop_map(|mut v| {
            v.sort_by_key(|x| x.0);
            v
        }),
        1..12,
    )
}

/// Journeys with distinct times per person (the fast kernels' domain; ties take the general one),
/// some longer than the 64 touchpoints below which the chain is walked whole.
fn journeys_without_ties() -> impl Strategy<Value = Vec<Vec<(i64, u8)>>> {
    let journey = prop_oneof![
        4 => prop::collection::btree_map(0i64..60, 0u8..5, 0..16),
        1 => prop::collection::btree_map(0i64..400, 0u8..5, 60..120),
    ];
    prop::collection::vec(
        journey.prop_map(|m| m.into_iter().collect::<Vec<_>>()),
        1..12,
    )
}

/// Long journeys without ties (at least the 1,024 touchpoints from which the fast kernel reads
/// a journey from its end first): events drawn from `mix` (weights of e0..e4), times a second
/// or more apart. `early` keeps e0..e2 out of the journey's last seven eighths, so that its
/// only complete chains start before the part read from the end.
fn long_journey(seed: u64, len: usize, mix: [u32; 5], early: bool) -> Vec<(i64, u8)> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let total: u32 = mix.iter().sum();
    let mut t = 0;
    (0..len)
        .map(|i| {
            t += 1_000 + (next() % 600_000) as i64;
            let mut r = (next() % total as u64) as u32;
            let mut e = 0;
            while r >= mix[e] {
                r -= mix[e];
                e += 1;
            }
            if early && i > len / 8 && e < 3 {
                e = 4;
            }
            (t, e as u8)
        })
        .collect()
}

/// The same funnel sent down the general kernel: an exclusion that never matches.
fn general_kernel(q: &FunnelQuery) -> FunnelQuery {
    let mut general = q.clone();
    general.exclusions.push(Exclusion {
        selector: EventSelector::event("never"),
        from_step: None,
        to_step: None,
    });
    general
}

fn step_counts_and_levels(src: &MemorySource, q: &FunnelQuery) -> (Vec<u64>, Vec<u64>) {
    let r = run_funnel(src, q, &Default::default()).unwrap();
    (r.steps.iter().map(|s| s.count).collect(), r.levels)
}

/// The documented times of one journey: among the chains reaching the highest step, the one
/// that starts latest, each step as early as possible from that start (a touchpoint may serve
/// consecutive steps). Returns the times of its steps.
fn documented_chain(seq: &[(i64, u8)], steps: &[u8], window: i64) -> Vec<i64> {
    let mut best: Vec<i64> = Vec::new();
    for (i, &(t0, e0)) in seq.iter().enumerate() {
        if e0 != steps[0] {
            continue;
        }
        let mut chain = vec![t0];
        let mut row = i;
        while chain.len() < steps.len() {
            let k = chain.len();
            // the same touchpoint first, then the following ones
            let next = (row..seq.len()).find(|&r| {
                seq[r].1 == steps[k]
                    && seq[r].0 <= t0 + window
                    && (r > row || seq[r].1 == steps[k - 1])
            });
            match next {
                Some(r) => {
                    chain.push(seq[r].0);
                    row = r;
                }
                None => break,
            }
        }
        if chain.len() >= best.len() {
            best = chain;
        }
    }
    best
}

/// Touchpoints as far apart as the short kernel's times go (and one beyond them), in windows
/// up to and beyond that span: the fast kernels count what the general one counts.
#[test]
fn times_far_apart_count_as_the_general_kernel_counts() {
    const BOUND: i64 = 1 << 54;
    let journeys = [
        vec![(-BOUND, 0u8), (BOUND - 1, 1), (BOUND, 2)],
        vec![(-BOUND - 1, 0), (0, 1), (BOUND, 2)],
        vec![(-BOUND, 0), (-BOUND + 1, 1), (BOUND + 1, 2)],
        vec![(0, 0), (1, 1), (2, 2)],
    ];
    for window in [
        1,
        2 * BOUND - 2,
        2 * BOUND - 1,
        2 * BOUND,
        2 * BOUND + 1,
        i64::MAX / 2,
    ] {
        for journey in &journeys {
            let src = source(std::slice::from_ref(journey));
            let q = funnel(&names(&[0, 1, 2]), window, FunnelOrder::Ordered);
            let fast = run_funnel(&src, &q, &Default::default()).unwrap();
            let general = run_funnel(&src, &general_kernel(&q), &Default::default()).unwrap();
            assert_eq!(
                serde_json::to_value(&fast).unwrap(),
                serde_json::to_value(&general).unwrap(),
                "window {window}, journey {journey:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Long journeys, read from their end first by the fast kernels, reach what the general
    /// kernel reaches and report the documented chain, each journey alone: journeys that
    /// complete the funnel near their end, only early (before the part read from the end),
    /// never (a bot that only views pages), and short ones beside them. In pieces (a store
    /// being written to) they get the funnel of whole ones, also when two touchpoints share a
    /// time before the part read from the end (which sends the journey to the general kernel).
    #[test]
    fn long_journeys_read_from_the_end_report_the_documented_chain(
        seed in any::<u64>(),
        len in 1024usize..1600,
        steps in prop::collection::vec(0u8..5, 2..6),
        window_s in prop::sample::select(vec![60i64, 3_600, 86_400, 7 * 86_400]),
        short in journeys_without_ties(),
        every in prop::sample::select(vec![100usize, 700, 5_000]),
        tie_at in 1usize..512,
    ) {
        let mut tied = long_journey(seed ^ 5, len, [1, 1, 1, 1, 1], false);
        tied[tie_at].0 = tied[tie_at - 1].0;
        let long = [
            long_journey(seed, len, [1, 1, 1, 1, 1], false),
            long_journey(seed ^ 1, len, [8, 4, 2, 1, 1], false),
            long_journey(seed ^ 2, len, [1, 1, 1, 1, 1], true),
            long_journey(seed ^ 3, len, [1, 0, 0, 0, 0], false),
            long_journey(seed ^ 4, len * 2, [1, 1, 1, 0, 1], false),
        ];
        let window = window_s * 1_000;
        let q = funnel(&names(&steps), window, FunnelOrder::Ordered);
        for seq in &long {
            let r = run_funnel(&source(std::slice::from_ref(seq)), &q, &Default::default()).unwrap();
            let c = documented_chain(seq, &steps, window);
            let reached = r.steps.iter().filter(|s| s.count == 1).count();
            prop_assert_eq!(reached, c.len());
            for k in 1..c.len() {
                let seconds = |ms: i64| Some(ms as f64 / 1000.0);
                prop_assert_eq!(r.steps[k].median_seconds_from_previous, seconds(c[k] - c[k - 1]));
                prop_assert_eq!(r.steps[k].median_seconds_from_first, seconds(c[k] - c[0]));
            }
        }
        let mut seqs = long.to_vec();
        seqs.push(tied);
        seqs.extend(short.into_iter().map(|j| j.into_iter().map(|(t, e)| (t * 1_000, e)).collect()));
        let whole = run_funnel(&source(&seqs), &q, &Default::default()).unwrap();
        let cut = run_funnel(&source(&seqs).in_pieces(every), &q, &Default::default()).unwrap();
        prop_assert_eq!(serde_json::to_value(whole).unwrap(), serde_json::to_value(cut).unwrap());
        let src = source(&seqs);
        prop_assert_eq!(step_counts_and_levels(&src, &q), step_counts_and_levels(&src, &general_kernel(&q)));
    }
}

proptest! {
    /// The branch-free kernels over event-code tables (one step per event, or several) and
    /// the fused recording reach exactly the steps the general kernel reaches; an exclusion
    /// that never matches sends the same funnel down the general path.
    #[test]
    fn fast_kernels_reach_what_the_general_one_reaches(
        seqs in journeys_without_ties(),
        steps in prop::collection::vec(0u8..5, 2..7),
        window in 1i64..40,
        from in prop::option::of(0i64..30),
    ) {
        let src = source(&seqs);
        let n = names(&steps);
        let mut fast = funnel(&n, window, FunnelOrder::Ordered);
        fast.from_ms = from;
        prop_assert_eq!(step_counts_and_levels(&src, &fast), step_counts_and_levels(&src, &general_kernel(&fast)));
    }

    /// Persons handed over in pieces (a store being written to) get the funnel, its times and
    /// its levels, of the same persons handed over whole: on journeys with and without ties,
    /// with single-step and multi-step tables, and with a breakdown (which reads them whole).
    #[test]
    fn persons_in_pieces_get_the_funnel_of_whole_ones(
        seqs in prop_oneof![journeys_without_ties(), journeys()],
        steps in prop::collection::vec(0u8..5, 2..6),
        window in 1i64..40,
        from in prop::option::of(0i64..30),
        every in 1usize..6,
        by_event in any::<bool>(),
    ) {
        let whole = source(&seqs);
        let cut = source(&seqs).in_pieces(every);
        let n = names(&steps);
        let mut q = funnel(&n, window, FunnelOrder::Ordered);
        q.from_ms = from;
        if by_event {
            q.breakdown = Some(Breakdown {
                field: BreakdownField::Event,
                property: None,
                attribution: Attribution::default(),
            });
        }
        let a = run_funnel(&whole, &q, &Default::default()).unwrap();
        let b = run_funnel(&cut, &q, &Default::default()).unwrap();
        prop_assert_eq!(serde_json::to_value(a).unwrap(), serde_json::to_value(b).unwrap());
    }

    /// The fast kernels report the documented chain's times: the medians over persons equal
    /// those of [`documented_chain`].
    #[test]
    fn fast_kernels_report_the_documented_chain(
        seqs in journeys_without_ties(),
        steps in prop::collection::vec(0u8..5, 2..6),
        window in 1i64..40,
        // anywhere in time: before 1970, and beyond what the short kernel takes
        offset in prop_oneof![
            4 => Just(0i64),
            1 => -(1i64 << 40)..(1i64 << 40),
            1 => Just(-(1i64 << 54)),
            1 => Just((1i64 << 54) - 400),
            1 => Just(1i64 << 58),
            1 => Just(-(1i64 << 58)),
        ],
    ) {
        let seqs: Vec<Vec<(i64, u8)>> = seqs
            .into_iter()
            .map(|seq| seq.into_iter().map(|(t, e)| (t + offset, e)).collect())
            .collect();
        let src = source(&seqs);
        let q = funnel(&names(&steps), window, FunnelOrder::Ordered);
        let r = run_funnel(&src, &q, &Default::default()).unwrap();
        for k in 1..steps.len() {
            let mut from_prev = Vec::new();
            let mut from_first = Vec::new();
            for seq in &seqs {
                let c = documented_chain(seq, &steps, window);
                if c.len() > k {
                    from_prev.push(c[k] - c[k - 1]);
                    from_first.push(c[k] - c[0]);
                }
            }
            // nearest rank, as documented
            let quantile = |v: &mut Vec<i64>, q: f64| {
                v.sort();
                let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
                (!v.is_empty()).then(|| v[rank - 1] as f64 / 1000.0)
            };
            prop_assert_eq!(r.steps[k].count as usize, from_prev.len());
            prop_assert_eq!(r.steps[k].median_seconds_from_previous, quantile(&mut from_prev, 0.5));
            prop_assert_eq!(r.steps[k].p90_seconds_from_previous, quantile(&mut from_prev, 0.9));
            prop_assert_eq!(r.steps[k].median_seconds_from_first, quantile(&mut from_first, 0.5));
            if k == steps.len() - 1 {
                prop_assert_eq!(r.time_to_convert.p90_seconds, quantile(&mut from_first, 0.9));
            }
        }
    }

    #[test]
    fn ordered_equals_the_exhaustive_search(
        seq in prop::collection::vec((0i64..30, 0u8..4), 0..12),
        steps in prop::collection::vec(0u8..4, 1..5),
        window in 0i64..20,
    ) {
        let mut seq = seq;
        seq.sort_by_key(|x| x.0);
        let named: Vec<(i64, String)> = seq.iter().map(|(t, e)| (*t, format!("e{e}"))).collect();
        let named_ref: Vec<(i64, &str)> = named.iter().map(|(t, e)| (*t, e.as_str())).collect();
        let n = names(&steps);
        let n_ref: Vec<&str> = n.iter().map(String::as_str).collect();
        let ours = level_of(&named_ref, &n_ref, window.max(1), FunnelOrder::Ordered);
        prop_assert_eq!(ours, brute_force_ordered(&seq, &steps, window.max(1)));
    }

    #[test]
    fn unordered_at_least_ordered_at_least_strict(
        seqs in journeys(),
        steps in prop::collection::vec(0u8..4, 1..5),
        window in 1i64..30,
    ) {
        let src = source(&seqs);
        let n = names(&steps);
        let u = counts(&src, &funnel(&n, window, FunnelOrder::Unordered));
        let o = counts(&src, &funnel(&n, window, FunnelOrder::Ordered));
        let s = counts(&src, &funnel(&n, window, FunnelOrder::Strict));
        let so = counts(&src, &funnel(&n, window, FunnelOrder::StrictOrder));
        let si = counts(&src, &funnel(&n, window, FunnelOrder::StrictIncrease));
        let sd = counts(&src, &funnel(&n, window, FunnelOrder::StrictDeduplication));
        for k in 0..steps.len() {
            prop_assert!(u[k] >= o[k], "unordered {:?} < ordered {:?}", u, o);
            prop_assert!(o[k] >= s[k], "ordered {:?} < strict {:?}", o, s);
            prop_assert!(o[k] >= so[k] && o[k] >= si[k] && o[k] >= sd[k]);
        }
    }

    #[test]
    fn a_longer_window_never_lowers_conversion(
        seqs in journeys(),
        steps in prop::collection::vec(0u8..4, 1..5),
        window in 1i64..20,
        extra in 0i64..20,
    ) {
        let src = source(&seqs);
        let n = names(&steps);
        for order in [FunnelOrder::Ordered, FunnelOrder::Strict, FunnelOrder::Unordered] {
            let a = counts(&src, &funnel(&n, window, order));
            let b = counts(&src, &funnel(&n, window + extra, order));
            for k in 0..steps.len() {
                prop_assert!(b[k] >= a[k], "{:?}: {:?} then {:?}", order, a, b);
            }
        }
    }

    #[test]
    fn adding_a_step_never_raises_conversion(
        seqs in journeys(),
        steps in prop::collection::vec(0u8..4, 1..5),
        added in 0u8..4,
        window in 1i64..30,
    ) {
        let src = source(&seqs);
        let n = names(&steps);
        let mut longer = n.clone();
        longer.push(format!("e{added}"));
        for order in [FunnelOrder::Ordered, FunnelOrder::Strict, FunnelOrder::Unordered] {
            let a = counts(&src, &funnel(&n, window, order));
            let b = counts(&src, &funnel(&longer, window, order));
            prop_assert!(b[steps.len()] <= a[steps.len() - 1], "{:?}: {:?} then {:?}", order, a, b);
        }
    }
}

#[test]
fn breakdown_by_a_property() {
    let row = |p: &str, t: i64, e: &str, plan: Option<&str>| Row {
        props: plan
            .map(|v| vec![("properties.plan".to_string(), v.to_string())])
            .unwrap_or_default(),
        ..Row::new(p, t, e)
    };
    let src = MemorySource::new(&[
        row("p1", 1, "a", Some("pro")),
        row("p1", 2, "b", None),
        row("p2", 1, "a", Some("free")),
        row("p3", 1, "a", None),
        row("p3", 2, "b", Some("pro")),
    ]);
    let mut q = funnel(&["a", "b"], 100, FunnelOrder::Ordered);
    q.breakdown = Some(Breakdown {
        field: BreakdownField::Property,
        property: Some("properties.plan".into()),
        attribution: Attribution::FirstTouch,
    });
    let res = run_funnel(&src, &q, &Default::default()).unwrap();
    let mut vals: Vec<(String, Vec<u64>)> = res
        .breakdown
        .iter()
        .map(|b| (b.value.clone(), b.counts.clone()))
        .collect();
    vals.sort();
    assert_eq!(
        vals,
        vec![
            ("(none)".into(), vec![1, 1]),
            ("free".into(), vec![1, 0]),
            ("pro".into(), vec![1, 1])
        ]
    );
    q.breakdown = Some(Breakdown {
        field: BreakdownField::Property,
        property: None,
        attribution: Attribution::FirstTouch,
    });
    let e = run_funnel(&src, &q, &Default::default()).unwrap_err();
    assert!(e.to_string().contains("breakdown.property"), "{e}");
    // a property no touchpoint has is a typo, refused with the closest stored name
    q.breakdown = Some(Breakdown {
        field: BreakdownField::Property,
        property: Some("properties.plna".into()),
        attribution: Attribution::FirstTouch,
    });
    let e = run_funnel(&src, &q, &Default::default()).unwrap_err();
    assert!(
        e.to_string().contains("breakdown.property")
            && e.to_string().contains("did you mean `properties.plan`?"),
        "{e}"
    );
}

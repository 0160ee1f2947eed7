//! Segments and personas: rules on traits and behaviour, evaluated on whole histories; any
//! analysis filtered through them.

use itinera_engine::memory::{MemorySource, Row};
use itinera_engine::segments::{run_segments_report, Filter, Filtered, SegmentDef, SegmentRule};
use itinera_engine::{run_funnel, FunnelQuery, JourneySource, Span};

const DAY: i64 = 86_400_000;

fn rows() -> Vec<Row> {
    let r = |p: &str, day: i64, e: &str, props: &[(&str, &str)]| Row {
        props: props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Row::new(p, day * DAY, e)
    };
    vec![
        r("ann", 0, "identify", &[("traits.plan", "free")]),
        r("ann", 5, "identify", &[("traits.plan", "pro")]),
        r("ann", 6, "Order Completed", &[]),
        r("ann", 50, "Order Completed", &[]),
        r("bob", 1, "identify", &[("traits.plan", "pro")]),
        r("bob", 2, "Order Completed", &[]),
        r("cy", 40, "Order Completed", &[]),
        r("cy", 45, "Order Completed", &[]),
        r("dee", 3, "page_view", &[]),
    ]
}

fn rule(json: &str) -> SegmentRule {
    serde_json::from_str(json).unwrap()
}

fn members(src: &MemorySource, r: &SegmentRule, as_of: i64) -> Vec<String> {
    let def = SegmentDef {
        name: "s".into(),
        description: None,
        rule: r.clone(),
    };
    let f = Filtered {
        inner: src,
        filter: src.with_vocabulary(|v| Filter::segment(&def, v)).unwrap(),
        as_of_ms: as_of,
    };
    let names = src.with_vocabulary(|v| v.names(itinera_engine::Field::DistinctId).to_vec());
    let mut out: Vec<String> = f
        .scan(&Default::default(), Vec::new, |acc, j| {
            acc.push(names[j.person as usize].clone())
        })
        .concat();
    out.sort();
    // the batch scan keeps the same persons, with the same rows, over any date range
    for (from_ms, to_ms) in [(None, None), (Some(4 * DAY), Some(46 * DAY))] {
        let opts = itinera_engine::ScanOptions {
            from_ms,
            to_ms,
            ..Default::default()
        };
        let mut by_person = f
            .scan(&opts, Vec::new, |acc, j| {
                acc.push((j.person, j.ts.to_vec()))
            })
            .concat();
        let mut by_batch = f
            .scan_batches(&opts, Vec::new, |acc, b| {
                for k in 0..b.persons.len() {
                    let j = b.journey(k);
                    acc.push((j.person, j.ts.to_vec()));
                }
            })
            .concat();
        by_person.sort();
        by_batch.sort();
        assert_eq!(by_person, by_batch);
    }
    out
}

#[test]
fn rules_on_traits_and_behaviour() {
    let src = MemorySource::new(&rows());
    let now = 60 * DAY;
    // latest trait: ann moved from free to pro
    let pro = rule(r#"{"trait": {"key": "traits.plan", "is": "pro"}}"#);
    assert_eq!(members(&src, &pro, now), ["ann", "bob"]);
    // as of day 3, ann was still on the free plan
    assert_eq!(members(&src, &pro, 3 * DAY), ["bob"]);
    let repeat = rule(r#"{"did": {"match": "Order Completed", "at_least": 2}}"#);
    assert_eq!(members(&src, &repeat, now), ["ann", "cy"]);
    let recent = rule(r#"{"did": {"match": "Order Completed", "at_least": 2, "within": "30d"}}"#);
    assert_eq!(members(&src, &recent, now), ["cy"]);
    let never = rule(r#"{"did": {"match": "Order Completed", "at_least": 0, "at_most": 0}}"#);
    assert_eq!(members(&src, &never, now), ["dee"]);
    let both = rule(
        r#"{"all": [{"trait": {"key": "traits.plan", "is": "pro"}}, {"not": {"did": {"match": "Order Completed", "at_least": 2}}}]}"#,
    );
    assert_eq!(members(&src, &both, now), ["bob"]);
    let list = rule(
        r#"{"any": [{"persons": ["dee", "nobody"]}, {"trait": {"key": "traits.plan", "is": {"regex": "^fr"}}}]}"#,
    );
    assert_eq!(members(&src, &list, 4 * DAY), ["ann", "dee"]);
}

#[test]
fn analyses_run_on_a_segment_over_their_own_date_range() {
    let src = MemorySource::new(&rows());
    let def = SegmentDef {
        name: "repeat".into(),
        description: None,
        rule: rule(r#"{"did": {"match": "Order Completed", "at_least": 2}}"#),
    };
    let f = Filtered {
        inner: &src,
        filter: src.with_vocabulary(|v| Filter::segment(&def, v)).unwrap(),
        as_of_ms: i64::MAX,
    };
    let mut q = FunnelQuery::events(&["Order Completed"], Span(DAY));
    assert_eq!(
        run_funnel(&f, &q, &Default::default()).unwrap().steps[0].count,
        2
    );
    // the segment is judged on the whole history, the funnel on its range: only cy bought then
    q.from_ms = Some(30 * DAY);
    q.to_ms = Some(48 * DAY);
    assert_eq!(
        run_funnel(&f, &q, &Default::default()).unwrap().steps[0].count,
        1
    );
}

#[test]
fn personas_take_the_first_matching_rule() {
    let src = MemorySource::new(&rows());
    let personas = vec![
        SegmentDef {
            name: "pro".into(),
            description: Some("paying plan".into()),
            rule: rule(r#"{"trait": {"key": "traits.plan", "is": "pro"}}"#),
        },
        SegmentDef {
            name: "buyer".into(),
            description: None,
            rule: rule(r#"{"did": {"match": "Order Completed"}}"#),
        },
    ];
    let r = run_segments_report(
        &src,
        &personas[1..],
        &personas,
        i64::MAX,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(r.persons, 4);
    assert_eq!(r.segments, vec![("buyer".to_string(), 3)]);
    assert_eq!(
        r.personas,
        vec![
            ("pro".to_string(), 2),
            ("buyer".to_string(), 1),
            ("(none)".to_string(), 1)
        ]
    );
    let f = Filtered {
        inner: &src,
        filter: src
            .with_vocabulary(|v| Filter::persona(&personas, "buyer", v))
            .unwrap(),
        as_of_ms: i64::MAX,
    };
    let q = FunnelQuery::events(&["Order Completed"], Span(DAY));
    assert_eq!(
        run_funnel(&f, &q, &Default::default()).unwrap().steps[0].count,
        1
    );
    // a segment within a persona: persons both keep (pro persons who ordered twice: ann)
    let twice = SegmentDef {
        name: "twice".into(),
        description: None,
        rule: rule(r#"{"did": {"match": "Order Completed", "at_least": 2}}"#),
    };
    for (persona, expected) in [("pro", 1), ("buyer", 1), ("(none)", 0)] {
        let both = Filtered {
            inner: &src,
            filter: src
                .with_vocabulary(|v| {
                    Ok::<_, itinera_engine::EngineError>(Filter::And(vec![
                        Filter::segment(&twice, v)?,
                        Filter::persona(&personas, persona, v)?,
                    ]))
                })
                .unwrap(),
            as_of_ms: i64::MAX,
        };
        let persons = both
            .scan(&Default::default(), || 0u64, |n, _| *n += 1)
            .iter()
            .sum::<u64>();
        assert_eq!(persons, expected, "twice-orderers of persona {persona}");
    }
    assert!(src
        .with_vocabulary(|v| Filter::persona(&personas, "nope", v))
        .is_err());
    let typo = src
        .with_vocabulary(|v| Filter::persona(&personas, "byer", v))
        .err()
        .unwrap()
        .to_string();
    assert!(typo.contains("did you mean `buyer`?"), "{typo}");
    let bad = rule(r#"{"trait": {"key": "plan", "is": "pro"}}"#);
    let def = SegmentDef {
        name: "bad".into(),
        description: None,
        rule: bad,
    };
    let e = run_segments_report(&src, &[def], &[], 0, &Default::default()).unwrap_err();
    assert!(
        e.to_string().contains("bad: `plan` is not a property"),
        "{e}"
    );
}

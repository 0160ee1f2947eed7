//! Attribution on journeys: touches, visits, the lookback window, nulls, accounts, and the
//! properties every model must keep.

use itinera_engine::attribution::{
    run_on_paths, AttributionKey, AttributionModel, AttributionQuery, AttributionResult, PathRow,
    PathTable,
};
use itinera_engine::journey::CountBy;
use itinera_engine::memory::{MemorySource, Row};
use itinera_engine::{run_attribution, Span};
use proptest::prelude::*;

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;

fn page(person: &str, ts: i64, channel: &str) -> Row {
    Row {
        channel: channel.into(),
        kind: 2,
        ..Row::new(person, ts, "Page Viewed")
    }
}

fn order(person: &str, ts: i64, revenue: f64) -> Row {
    Row {
        channel: "direct".into(),
        revenue: Some(revenue),
        ..Row::new(person, ts, "Order Completed")
    }
}

fn credit(r: &AttributionResult, model: &str, key: &str) -> f64 {
    r.keys
        .iter()
        .find(|k| k.name == key)
        .and_then(|k| k.credit.get(model))
        .map_or(0.0, |c| c.conversions)
}

fn run(rows: &[Row], q: &AttributionQuery) -> AttributionResult {
    run_attribution(&MemorySource::new(rows), q, &Default::default()).unwrap()
}

#[test]
fn a_visit_is_one_touch_of_its_first_channel() {
    // an ad click, then pages of the same visit (direct), the order in the same visit
    let rows = [
        page("p", 0, "email"),
        page("p", DAY, "paid_search"),
        page("p", DAY + MIN, "direct"),
        page("p", DAY + 2 * MIN, "direct"),
        order("p", DAY + 3 * MIN, 50.0),
    ];
    let r = run(&rows, &AttributionQuery::default());
    assert_eq!(r.totals.conversions, 1.0);
    assert_eq!(r.totals.value, 50.0);
    assert_eq!(credit(&r, "first_touch", "email"), 1.0);
    assert_eq!(credit(&r, "last_touch", "paid_search"), 1.0);
    assert_eq!(credit(&r, "linear", "direct"), 0.0);
    assert_eq!(credit(&r, "linear", "email"), 0.5);
    let value = r.keys.iter().find(|k| k.name == "email").unwrap().credit["linear"].value;
    assert_eq!(value, 25.0);
    // a later direct visit after the gap is its own touch
    let mut later = rows.to_vec();
    later.insert(4, page("p", DAY + 2 * 3_600_000, "direct"));
    later[5].ts = DAY + 2 * 3_600_000 + MIN;
    let r = run(&later, &AttributionQuery::default());
    assert_eq!(credit(&r, "last_touch", "direct"), 1.0);
    assert_eq!(credit(&r, "last_non_direct", "paid_search"), 1.0);
}

#[test]
fn lookback_window_and_unattributed_conversions() {
    let rows = [
        page("a", 0, "social"),
        page("a", 40 * DAY, "email"),
        order("a", 41 * DAY, 10.0),
        page("b", 0, "social"),
        order("b", 60 * DAY, 7.0),
    ];
    let r = run(&rows, &AttributionQuery::default());
    assert_eq!(credit(&r, "first_touch", "email"), 1.0);
    assert_eq!(credit(&r, "first_touch", "social"), 0.0);
    assert_eq!(r.totals.conversions, 1.0);
    assert_eq!(r.totals.unattributed_conversions, 1.0);
    assert_eq!(r.totals.unattributed_value, 7.0);
}

#[test]
fn each_conversion_has_its_own_path_and_what_follows_is_a_null() {
    let rows = [
        page("a", 0, "social"),
        order("a", MIN, 10.0),
        page("a", DAY, "email"),
        order("a", DAY + MIN, 20.0),
        page("a", 2 * DAY, "display"),
    ];
    let r = run(&rows, &AttributionQuery::default());
    assert_eq!(r.totals.conversions, 2.0);
    assert_eq!(credit(&r, "first_touch", "email"), 1.0);
    assert_eq!(credit(&r, "first_touch", "social"), 1.0);
    assert_eq!(r.totals.null_paths, 1.0);
    assert_eq!(r.totals.distinct_paths, 3);
}

#[test]
fn the_date_range_bounds_conversions_but_not_their_touches() {
    let rows = [
        page("a", 0, "social"),
        order("a", 10 * DAY, 10.0),
        page("b", 0, "email"),
        order("b", 3 * DAY, 10.0),
    ];
    let q = AttributionQuery {
        from_ms: Some(5 * DAY),
        ..Default::default()
    };
    let r = run(&rows, &q);
    assert_eq!(r.totals.conversions, 1.0);
    assert_eq!(credit(&r, "first_touch", "social"), 1.0);
}

#[test]
fn account_journeys_join_their_members() {
    let member = |p: &str, ts: i64, ch: &str| Row {
        account: Some("acme".into()),
        ..page(p, ts, ch)
    };
    let rows = [
        member("a", 0, "event"),
        member("b", DAY, "call_center"),
        Row {
            account: Some("acme".into()),
            ..order("b", 2 * DAY, 1000.0)
        },
        page("c", 0, "social"),
    ];
    let q = AttributionQuery {
        count_by: CountBy::Account,
        ..Default::default()
    };
    let r = run(&rows, &q);
    assert_eq!(r.totals.conversions, 1.0);
    assert_eq!(credit(&r, "first_touch", "event"), 1.0);
    assert_eq!(credit(&r, "last_touch", "call_center"), 1.0);
    assert_eq!(
        r.totals.null_paths, 0.0,
        "persons outside accounts are not journeys here"
    );
}

#[test]
fn by_event_and_custom_conversion() {
    let rows = [
        Row::new("a", 0, "Webinar Joined"),
        Row::new("a", DAY, "Demo Requested"),
        Row::new("a", 2 * DAY, "Trial Started"),
    ];
    let q = AttributionQuery {
        conversion: itinera_engine::EventSelector::event("Trial Started"),
        by: AttributionKey::Event,
        models: vec![AttributionModel::FirstTouch, AttributionModel::Markov],
        ..Default::default()
    };
    let r = run(&rows, &q);
    assert_eq!(credit(&r, "first_touch", "Webinar Joined"), 1.0);
    assert_eq!(r.models, q.models);
    assert!(r.keys.iter().all(|k| !k.credit.contains_key("linear")));
}

#[test]
fn bad_settings_name_the_field() {
    let src = MemorySource::new(&[]);
    for (q, field) in [
        (
            AttributionQuery {
                markov_order: 5,
                ..Default::default()
            },
            "markov_order",
        ),
        (
            AttributionQuery {
                first_share: 0.7,
                last_share: 0.7,
                ..Default::default()
            },
            "first_share",
        ),
        (
            AttributionQuery {
                lookback: Span(0),
                ..Default::default()
            },
            "lookback",
        ),
        (
            AttributionQuery {
                shapley_samples: 200_000_000,
                ..Default::default()
            },
            "shapley_samples",
        ),
    ] {
        let e = run_attribution(&src, &q, &Default::default()).unwrap_err();
        assert!(e.to_string().contains(field), "{e}");
    }
    let table = PathTable::parse("a > b;1;2;3").unwrap();
    let mut s = AttributionQuery::default().settings();
    s.models = vec![AttributionModel::TimeDecay];
    assert!(run_on_paths(table, &s)
        .unwrap_err()
        .to_string()
        .contains("time"));
    assert!(PathTable::parse("a > > b;1").is_err());
    assert!(PathTable::parse("a;x").is_ok(), "a header line");
    assert!(PathTable::parse("path;conv\na;-1").is_err());
}

fn table_strategy() -> impl Strategy<Value = PathTable> {
    let row = (
        prop::collection::vec(0u32..5, 1..6),
        0u32..5,
        0u32..5,
        0u32..100,
    );
    prop::collection::vec(row, 1..25).prop_map(|rows| PathTable {
        names: (0..5).map(|i| format!("c{i}")).collect(),
        rows: rows
            .into_iter()
            .map(|(keys, c, n, v)| PathRow {
                keys,
                conversions: c as f64,
                value: (c * v) as f64,
                nulls: n as f64,
            })
            .collect(),
    })
}

proptest! {
    /// Every model gives out exactly the conversions and value there are, never less than zero
    /// (removal effects and Markov-Shapley values are non-negative).
    #[test]
    fn every_model_distributes_the_total(table in table_strategy(), order in 1usize..4) {
        let mut s = AttributionQuery::default().settings();
        s.markov_order = order;
        let r = run_on_paths(table, &s).unwrap();
        for m in &r.models {
            let (mut c, mut v) = (0.0, 0.0);
            for k in &r.keys {
                let x = k.credit.get(m.name()).copied().unwrap_or_default();
                prop_assert!(x.conversions >= -1e-9 && x.value >= -1e-9, "{} {:?}", m.name(), x);
                c += x.conversions;
                v += x.value;
            }
            let any_removal = r.keys.iter().any(|k| k.removal_effect.is_some_and(|e| e.conversions > 0.0));
            if m.is_heuristic() || any_removal {
                prop_assert!((c - r.totals.conversions).abs() < 1e-6, "{}: {} vs {}", m.name(), c, r.totals.conversions);
            }
            if m.is_heuristic() {
                prop_assert!((v - r.totals.value).abs() < 1e-6, "{}: {} vs {}", m.name(), v, r.totals.value);
            }
        }
    }

    /// A journey through one channel gives that channel everything under every model.
    #[test]
    fn a_single_channel_takes_all(n in 1usize..5, conv in 1u32..10, nulls in 0u32..10) {
        let table = PathTable {
            names: vec!["only".into()],
            rows: vec![PathRow { keys: vec![0; n], conversions: conv as f64, value: 3.0 * conv as f64, nulls: nulls as f64 }],
        };
        let r = run_on_paths(table, &AttributionQuery::default().settings()).unwrap();
        for m in &r.models {
            prop_assert!((r.keys[0].credit[m.name()].conversions - conv as f64).abs() < 1e-9, "{}", m.name());
        }
    }
}

#[test]
fn campaigns_are_credited_by_visit() {
    let with_campaign = |p: &str, ts: i64, c: &str| Row {
        props: vec![("campaign.name".into(), c.into())],
        ..page(p, ts, "paid_search")
    };
    let rows = [
        with_campaign("p", 0, "spring-sale"),
        page("p", MIN, "direct"),
        with_campaign("p", DAY, "weekly"),
        page("p", DAY + MIN, "direct"),
        order("p", DAY + 2 * MIN, 10.0),
        page("q", 0, "organic_search"),
        order("q", MIN, 5.0),
    ];
    let q = AttributionQuery {
        by: AttributionKey::Campaign,
        ..Default::default()
    };
    let r = run(&rows, &q);
    assert_eq!(r.by, "campaign");
    assert_eq!(credit(&r, "first_touch", "spring-sale"), 1.0);
    assert_eq!(credit(&r, "last_touch", "weekly"), 1.0);
    assert_eq!(
        credit(&r, "linear", "spring-sale"),
        0.5,
        "pages of the visit are not touches"
    );
    assert_eq!(
        credit(&r, "first_touch", "(none)"),
        1.0,
        "q came without a campaign"
    );
}

/// Markov and Shapley are bounded before any chain is solved (keys), and stop when asked:
/// the attribution that once ran for minutes after its client left now answers "cancelled".
#[test]
fn chains_are_bounded_and_stop_when_asked() {
    use itinera_engine::attribution::{markov, shapley, MAX_CHAIN_KEYS};
    use itinera_engine::EngineError;
    use std::cell::Cell;
    // more keys than any chain takes: refused before solving, naming the models
    let text: String = (0..=MAX_CHAIN_KEYS)
        .map(|k| format!("k{k} > k{};1;1;1\n", k + 1))
        .collect();
    let table = PathTable::parse(&text).unwrap();
    let mut s = AttributionQuery::default().settings();
    s.models = vec![AttributionModel::Markov];
    let e = run_on_paths(table, &s).unwrap_err().to_string();
    assert!(e.contains("models") && e.contains("distinct keys"), "{e}");
    // forty keys and a million samples: the stop asked for is honoured within one block
    let rows: Vec<PathRow> = (0..40u32)
        .map(|k| PathRow {
            keys: vec![k, (k + 1) % 40],
            conversions: 1.0,
            value: 1.0,
            nulls: 1.0,
        })
        .collect();
    let asked = Cell::new(0u32);
    let stop = || {
        asked.set(asked.get() + 1);
        asked.get() > 3
    };
    assert!(matches!(
        shapley::solve(&rows, 1, 1_000_000, 1, &stop),
        Err(EngineError::Cancelled)
    ));
    assert_eq!(
        asked.get(),
        4,
        "stopped at the first check after the request"
    );
    asked.set(0);
    assert!(matches!(
        markov::solve(&rows, 1, &stop),
        Err(EngineError::Cancelled)
    ));
    assert_eq!(asked.get(), 4);
}

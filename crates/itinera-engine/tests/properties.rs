//! Property conditions in selectors: text, lists, regexes, numbers and ranges, on the typed
//! properties of touchpoints; parsing of the command-line form and errors naming the property.

use itinera_engine::memory::{MemorySource, Row};
use itinera_engine::selector::{EventSelector, Matcher};
use itinera_engine::{JourneySource, ScanOptions};

fn row(person: &str, ts: i64, event: &str, props: &[(&str, &str)]) -> Row {
    Row {
        props: props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Row::new(person, ts, event)
    }
}

/// Rows matched by each selector, as (person, ts) per selector.
fn matches(rows: &[Row], selectors: &[&str]) -> Vec<Vec<(String, i64)>> {
    let src = MemorySource::new(rows);
    let sels: Vec<EventSelector> = selectors
        .iter()
        .map(|s| EventSelector::parse(s).unwrap())
        .collect();
    let m = src.with_vocabulary(|v| Matcher::compile(&sels, v)).unwrap();
    let names = src.with_vocabulary(|v| v.names(itinera_engine::Field::DistinctId).to_vec());
    let found = src.scan(&ScanOptions::default(), Vec::new, |acc, j| {
        for i in 0..j.len() {
            acc.push((names[j.person as usize].clone(), j.ts[i], m.row_mask(j, i)));
        }
    });
    (0..sels.len())
        .map(|s| {
            found
                .iter()
                .flatten()
                .filter(|(_, _, mask)| mask & (1 << s) != 0)
                .map(|(p, t, _)| (p.clone(), *t))
                .collect()
        })
        .collect()
}

#[test]
fn conditions_on_properties_and_traits() {
    let rows = [
        row(
            "a",
            1,
            "Survey Responded",
            &[("properties.score", "9"), ("properties.survey_kind", "nps")],
        ),
        row(
            "a",
            2,
            "Survey Responded",
            &[("properties.score", "4"), ("properties.survey_kind", "nps")],
        ),
        row(
            "b",
            1,
            "Survey Responded",
            &[
                ("properties.score", "10"),
                ("properties.survey_kind", "csat"),
            ],
        ),
        row("b", 2, "identify", &[("traits.role", "champion")]),
        row("c", 1, "identify", &[("traits.role", "decision_maker")]),
        row(
            "c",
            2,
            "Order Completed",
            &[("properties.plan", "pro-annual")],
        ),
    ];
    let m = matches(
        &rows,
        &[
            "Survey Responded&properties.score>=9",
            "Survey Responded&properties.score>=9&properties.survey_kind=nps",
            "properties.score<5|traits.role=decision_maker",
            "traits.role=champion",
            "properties.plan~^pro-",
            "properties.missing=x",
            r#"{"event": "Survey Responded", "where": {"properties.score": {"gt": 8, "lte": 9}}}"#,
            r#"{"where": {"properties.score": 10}}"#,
            r#"{"where": {"traits.role": ["champion", "decision_maker"]}}"#,
        ],
    );
    let p = |v: &[(&str, i64)]| {
        v.iter()
            .map(|(p, t)| (p.to_string(), *t))
            .collect::<Vec<_>>()
    };
    assert_eq!(m[0], p(&[("a", 1), ("b", 1)]));
    assert_eq!(m[1], p(&[("a", 1)]));
    assert_eq!(m[2], p(&[("a", 2), ("c", 1)]));
    assert_eq!(m[3], p(&[("b", 2)]));
    assert_eq!(m[4], p(&[("c", 2)]));
    assert!(m[5].is_empty(), "an unknown key matches nothing");
    assert_eq!(m[6], p(&[("a", 1)]));
    assert_eq!(m[7], p(&[("b", 1)]));
    assert_eq!(m[8], p(&[("b", 2), ("c", 1)]));
}

#[test]
fn the_text_form_round_trips_and_bad_conditions_are_named() {
    let s = EventSelector::parse("Survey Responded&properties.score>=9").unwrap();
    assert_eq!(
        s.to_string(),
        "event=Survey Responded & properties.score>=9"
    );
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<EventSelector>(&json).unwrap(), s);
    for (text, needle) in [
        ("properties.score>=high", "not a number"),
        ("properties.score=", "empty value"),
        ("properties.score", "expected KEY=VALUE"),
        ("a&properties.x=1&properties.x=2", "given twice"),
    ] {
        let e = EventSelector::parse(text).unwrap_err().to_string();
        assert!(e.contains(needle), "{text}: {e}");
    }
    let src = MemorySource::new(&[]);
    let bad: EventSelector = serde_json::from_str(r#"{"where": {"score": "1"}}"#).unwrap();
    let e = src
        .with_vocabulary(|v| Matcher::compile(&[bad], v))
        .unwrap_err()
        .to_string();
    assert!(e.contains("properties.NAME"), "{e}");
}

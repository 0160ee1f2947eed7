//! Memory budgets: with the metering allocator installed (as the `itinera` binary does), a
//! query's allocations are charged to it and a query over its budget is stopped and told apart
//! from a cancellation.

use itinera_engine::memory::{MemorySource, Row};
use itinera_engine::metered::{charge_to, Metered};
use itinera_engine::{run_paths, PathQuery, QueryControl, ScanOptions};

#[global_allocator]
static ALLOCATOR: Metered<std::alloc::System> = Metered(std::alloc::System);

#[test]
fn allocations_are_charged_only_while_the_guard_lives() {
    let control = QueryControl::new();
    let before = {
        let _charged = charge_to(&control);
        let v: Vec<u8> = Vec::with_capacity(1 << 20);
        let peak = control.peak_memory();
        drop(v);
        peak
    };
    assert!(
        before >= 1 << 20,
        "a 1 MiB vector was not charged: {before}"
    );
    let unmetered: Vec<u8> = Vec::with_capacity(8 << 20);
    assert!(
        control.peak_memory() < 2 << 20,
        "work outside the guard was charged"
    );
    drop(unmetered);
    assert!(!control.out_of_memory() && !control.is_cancelled());
}

#[test]
fn a_query_over_its_budget_stops_and_says_why() {
    // 20,000 persons with journeys of distinct events: a path tree of about 200,000 nodes
    let rows: Vec<Row> = (0..20_000)
        .flat_map(|p| {
            (0..10).map(move |k| Row::new(&format!("p{p}"), k, &format!("e{}", (p * 7 + k) % 997)))
        })
        .collect();
    let src = MemorySource::new(&rows);
    let query: PathQuery = serde_json::from_value(serde_json::json!({"steps": 10})).unwrap();
    let run = |limit: u64| {
        let control = QueryControl::new();
        control.set_memory_limit(limit);
        let opts = ScanOptions {
            control: Some(control.clone()),
            ..Default::default()
        };
        let _charged = charge_to(&control);
        (run_paths(&src, &query, &opts).map(|_| ()), control)
    };
    let (unbounded, control) = run(0);
    assert_eq!(unbounded, Ok(()));
    let peak = control.peak_memory();
    assert!(peak > 4 << 20, "the paths query used only {peak} bytes");
    // over the budget, the query is cancelled (it stops at its next check) and says why
    let (_, control) = run(peak / 2);
    assert!(control.out_of_memory(), "went over its budget unnoticed");
    assert!(control.is_cancelled(), "over its budget, yet not stopped");
    let (roomy, control) = run(peak * 2);
    assert_eq!(roomy, Ok(()));
    assert!(!control.out_of_memory());
}

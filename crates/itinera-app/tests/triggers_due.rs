//! What a look at arriving persons decides, on the embedded store: a rule due for a person who
//! entered the stage after its start; persons that no later touchpoint can fire reported as
//! settled (entered before the start; fired once with no re-entry) and, once settled, not looked
//! at again; an event rule with re-entry due again after its gap.

use itinera_app::backend::{PreparedTrigger, Prior};
use itinera_app::{App, Config, DataDir, PopulationDef};
use itinera_engine::stages::StageModel;
use itinera_engine::triggers::TriggerWhen;
use itinera_engine::{EventSelector, Span};
use serde_json::json;

const T0: i64 = 1_780_000_000_000;

fn rule(when: TriggerWhen, since_ms: i64, reentry_after: Option<Span>) -> PreparedTrigger {
    PreparedTrigger {
        model: when.stage().and_then(|(m, _)| StageModel::builtin(m)),
        when,
        population: PopulationDef::Everyone,
        since_ms,
        reentry_after,
        account: None,
        as_of_ms: i64::MAX,
    }
}

#[test]
fn settled_persons_are_reported_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let app = App::new(
        Config {
            max_future_hours: 876_000,
            ..Default::default()
        },
        DataDir::open(tmp.path(), Default::default()).unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let at = |ms: i64| itinera_core::message::format_ts(ms);
    for (user, event, ms) in [
        ("old", "Order Completed", T0),
        ("new", "Order Completed", T0 + 10_000),
        ("fan", "Signed Up", T0 + 10_000),
        ("fan", "Signed Up", T0 + 90_000_000),
    ] {
        let m = json!({"type": "track", "userId": user, "event": event, "timestamp": at(ms),
                       "messageId": format!("{user}-{ms}")});
        rt.block_on(app.append_message("default", &m, itinera_core::MessageType::Track))
            .unwrap();
    }
    let backend = app.backend("default").unwrap();
    let stage = rule(
        TriggerWhen::EntersStage {
            model: "customer-journey".into(),
            stage: "Decision".into(),
        },
        T0 + 5_000,
        None,
    );
    let ids: Vec<String> = ["old", "new", "fan"].map(String::from).to_vec();
    let (due, settled) = backend
        .triggers_due(std::slice::from_ref(&stage), &ids, &|_, _| Prior::Never)
        .unwrap();
    let due: Vec<&str> = due.iter().map(|d| d.person.as_str()).collect();
    assert_eq!(due, ["new"]);
    assert_eq!(
        settled,
        [(0, "old".to_string())],
        "entered before the rule's start"
    );

    // fired once, no re-entry: settled without a look; settled ones are skipped
    let (due, settled) = backend
        .triggers_due(std::slice::from_ref(&stage), &ids, &|_, p| match p {
            "new" => Prior::FiredAt(T0 + 10_000),
            "old" => Prior::Settled,
            _ => Prior::Never,
        })
        .unwrap();
    assert!(due.is_empty());
    assert_eq!(settled, [(0, "new".to_string())]);

    // an event rule with re-entry after a day: due again for the second sign-up
    let event = rule(
        TriggerWhen::Event {
            event: EventSelector::event("Signed Up"),
        },
        T0,
        Some(Span(86_400_000)),
    );
    let (due, settled) = backend
        .triggers_due(std::slice::from_ref(&event), &["fan".into()], &|_, _| {
            Prior::FiredAt(T0 + 10_000)
        })
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].due.at_ms, T0 + 90_000_000);
    assert!(settled.is_empty(), "re-entry: never settled");
}

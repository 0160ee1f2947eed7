//! What a demo world starts with besides its data: the generator's four personas, two segments,
//! the NPS survey and an alert rule on detractors (no delivery: see them with GET /api/v1/alerts).
//! Used by `itinera demo` and by the golden tests, so both see the same definitions.

use crate::error::Result;
use itinera_meta::{DefinitionKind, Meta};

pub fn seed_definitions(meta: &Meta, project: &str) -> Result<()> {
    let personas = [
        "impulse_buyer",
        "loyal_regular",
        "researcher",
        "bargain_hunter",
    ];
    for (i, p) in personas.iter().enumerate() {
        let def =
            serde_json::json!({"name": p, "rule": {"trait": {"key": "traits.persona", "is": p}}});
        meta.put_definition(
            project,
            DefinitionKind::Persona,
            p,
            &def.to_string(),
            i as i64,
        )?;
    }
    let segments = [
        (
            "repeat buyers",
            serde_json::json!({"did": {"match": "Order Completed", "at_least": 2}}),
        ),
        (
            "b2b",
            serde_json::json!({"trait": {"key": "traits.segment", "is": "b2b"}}),
        ),
    ];
    for (name, rule) in segments {
        let def = serde_json::json!({"name": name, "rule": rule});
        meta.put_definition(project, DefinitionKind::Segment, name, &def.to_string(), 0)?;
    }
    let survey = serde_json::json!({
        "id": "nps-relationship", "kind": "nps",
        "question": {"en": "How likely are you to recommend us to a friend?",
                     "de": "Wie wahrscheinlich empfehlen Sie uns einem Freund?"},
        "follow_up": {"en": "What is the main reason for your score?",
                      "de": "Was ist der wichtigste Grund für Ihre Bewertung?"},
        "trigger": {"after": "Order Completed", "delay": "30d", "throttle": "90d"},
        "stage": "Retention"
    });
    meta.put_definition(
        project,
        DefinitionKind::Survey,
        "nps-relationship",
        &survey.to_string(),
        0,
    )?;
    let rule = serde_json::json!({
        "name": "detractors", "scores": {"kind": "nps", "by": "stage"},
        "trigger": {"response": {"max_score": 6}}, "open_case": true
    });
    meta.put_definition(
        project,
        DefinitionKind::Alert,
        "detractors",
        &rule.to_string(),
        0,
    )?;
    Ok(())
}

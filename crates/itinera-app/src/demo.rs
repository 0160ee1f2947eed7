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
    seed_map(meta, project)?;
    Ok(())
}

/// The demo's default map: steps bound to the shop's touchpoints and the cards a team would
/// type in a workshop, over the built-in customer-journey model.
fn seed_map(meta: &Meta, project: &str) -> Result<()> {
    let map = serde_json::json!({
        "title": "Online shop: customer journey",
        "description": "As-is journey of the shop's customers, with the to-be we are working towards.",
        "model": "customer-journey",
        "personas": ["impulse_buyer", "researcher", "loyal_regular"],
        "steps": [
            {"id": "browse", "stage": "Consideration", "name": "Views products", "selector": "Product Viewed"},
            {"id": "cart", "stage": "Consideration", "name": "Adds to cart", "selector": "Product Added"},
            {"id": "checkout", "stage": "Decision", "name": "Checks out", "selector": "Checkout Started"},
            {"id": "order", "stage": "Decision", "name": "Orders", "selector": "Order Completed"}
        ],
        "lanes": crate::maps::default_lanes(),
        "cards": [
            {"id": "a1", "lane": "actions", "stage": "Awareness", "text": "Sees an ad or a friend's post, lands on the home page"},
            {"id": "a2", "lane": "actions", "stage": "Consideration", "step": "browse", "text": "Compares two or three products, reads reviews"},
            {"id": "a3", "lane": "actions", "stage": "Decision", "step": "checkout", "text": "Enters address and payment"},
            {"id": "a4", "lane": "actions", "stage": "Retention", "text": "Reorders consumables every few weeks"},
            {"id": "t1", "lane": "thoughts", "stage": "Consideration", "text": "Which one fits me? Is the price fair?"},
            {"id": "t2", "lane": "thoughts", "stage": "Decision", "text": "Why do I need an account to pay?"},
            {"id": "t3", "lane": "thoughts", "stage": "Advocacy", "text": "My friends would like this"},
            {"id": "p1", "lane": "pain_points", "stage": "Decision", "step": "checkout", "text": "Shipping costs appear only at the last step"},
            {"id": "o1", "lane": "opportunities", "stage": "Decision", "text": "Show shipping costs on the product page", "owner": "Web team", "status": "in_progress", "due": "2027-01-31"},
            {"id": "o2", "lane": "opportunities", "stage": "Retention", "text": "Welcome e-mail with next steps after the first order", "owner": "CRM", "status": "open", "variant": "to_be"},
            {"id": "b1", "lane": "backstage", "stage": "Decision", "text": "Payment provider, fraud checks", "owner": "Finance"},
            {"id": "b2", "lane": "backstage", "stage": "Retention", "text": "Customer service, returns", "owner": "CX"}
        ],
        "emotions": {
            "as_is": {"Awareness": 0.5, "Consideration": 0.0, "Decision": -1.0, "Retention": 1.0, "Advocacy": 1.5},
            "to_be": {"Awareness": 1.0, "Consideration": 0.5, "Decision": 0.5, "Retention": 1.5, "Advocacy": 2.0}
        }
    });
    let doc: itinera_engine::map::JourneyMap =
        serde_json::from_value(map).expect("the demo map is a map");
    let model = itinera_engine::StageModel::builtin("customer-journey").expect("built in");
    doc.validate(&model)?;
    if meta.map(project, crate::maps::DEFAULT_MAP)?.is_none() {
        meta.save_map(
            project,
            crate::maps::DEFAULT_MAP,
            &serde_json::to_string(&doc).expect("maps serialize"),
            Some(0),
            "demo",
            "the demo's map",
        )?;
    }
    Ok(())
}

/// The demo's admin user, with a new random password each time the demo starts (only its hash
/// is stored, so it cannot be shown again): (e-mail, password).
pub fn demo_admin(meta: &Meta) -> Result<(String, String)> {
    use rand::Rng;
    const EMAIL: &str = "admin@demo.itinera";
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    let password: String = (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    let phc = crate::users::hash_password(&password)?;
    if meta.user_by_email(EMAIL)?.is_some() {
        meta.set_password(EMAIL, &phc)?;
    } else {
        meta.create_user(EMAIL, itinera_meta::Role::Admin, &phc)?;
    }
    Ok((EMAIL.into(), password))
}

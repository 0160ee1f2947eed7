use super::answers::AnswerScan;
use super::*;
use crate::error::{EngineError, Result};
use crate::journey::{Field, JourneySource, ScanOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who to invite into advocacy and referral programmes: persons whose latest NPS answer is a 9
/// or 10, with their contact traits and their consent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotersQuery {
    /// Only answers to this survey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survey_id: Option<String>,
    /// The trait recording consent to be contacted (its latest value is reported).
    #[serde(default = "default_consent")]
    pub consent_property: String,
    /// Only persons whose consent trait is `true`, `yes` or `1`.
    #[serde(default)]
    pub require_consent: bool,
    /// Traits reported for contact (latest values).
    #[serde(default = "default_contact")]
    pub contact_properties: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
}

pub(super) fn default_consent() -> String {
    "traits.marketing_consent".into()
}
pub(super) fn default_contact() -> Vec<String> {
    vec!["traits.email".into(), "traits.name".into()]
}

impl Default for PromotersQuery {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Promoter {
    pub person: String,
    pub score: f64,
    pub answered_at_ms: i64,
    /// The latest value of the consent trait, if any.
    pub consent: Option<String>,
    pub contact: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PromotersResult {
    pub promoters: Vec<Promoter>,
    /// Promoters left out for want of consent (with `require_consent`).
    pub without_consent: u64,
    pub definition: String,
}

pub fn find_promoters<S: JourneySource>(
    source: &S,
    q: &PromotersQuery,
    opts: &ScanOptions,
) -> Result<PromotersResult> {
    let mut sq = ScoresQuery::new(ScoreKind::Nps);
    sq.survey_id = q.survey_id.clone();
    let a = AnswerScan::compile(source, &sq)?;
    let (consent_key, contact_keys) = source.with_vocabulary(|v| {
        (
            v.code(Field::PropKey, &q.consent_property),
            q.contact_properties
                .iter()
                .map(|k| (k.clone(), v.code(Field::PropKey, k)))
                .collect::<Vec<_>>(),
        )
    });
    let mut scan = opts.clone();
    scan.from_ms = q.from_ms.or(opts.from_ms);
    scan.to_ms = q.to_ms.or(opts.to_ms);
    type Found = (u32, i64, f64, Option<u32>, Vec<(usize, u32)>);
    let parts = source.scan(&scan, Vec::new, |out: &mut Vec<Found>, j| {
        let latest = (0..j.len())
            .rev()
            .find_map(|i| a.answer(j, i).flatten().map(|s| (i, s)));
        if let Some((i, score)) = latest.filter(|(_, s)| *s >= 9.0) {
            let consent = consent_key.and_then(|k| j.latest_prop(k));
            let contact = contact_keys
                .iter()
                .enumerate()
                .filter_map(|(n, (_, k))| k.and_then(|k| j.latest_prop(k)).map(|v| (n, v)))
                .collect();
            out.push((j.person, j.ts[i], score, consent, contact));
        }
    });
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let consenting = |c: Option<&str>| {
        c.is_some_and(|c| matches!(c.to_ascii_lowercase().as_str(), "true" | "yes" | "1"))
    };
    let mut without_consent = 0;
    let mut promoters: Vec<Promoter> = source.with_vocabulary(|v| {
        parts
            .into_iter()
            .flatten()
            .filter_map(|(person, ts, score, consent, contact)| {
                let consent = consent.map(|c| v.name(Field::PropValue, c).to_string());
                if q.require_consent && !consenting(consent.as_deref()) {
                    without_consent += 1;
                    return None;
                }
                Some(Promoter {
                    person: v.name(Field::DistinctId, person).to_string(),
                    score,
                    answered_at_ms: ts,
                    consent,
                    contact: contact
                        .into_iter()
                        .map(|(n, c)| {
                            (
                                contact_keys[n].0.clone(),
                                v.name(Field::PropValue, c).to_string(),
                            )
                        })
                        .collect(),
                })
            })
            .collect()
    });
    promoters.sort_by(|x, y| {
        y.answered_at_ms
            .cmp(&x.answered_at_ms)
            .then(x.person.cmp(&y.person))
    });
    Ok(PromotersResult {
        promoters,
        without_consent,
        definition: "persons whose latest NPS answer is 9 or 10; consent and contact are the latest values of those traits".into(),
    })
}

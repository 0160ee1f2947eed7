//! The analyses every face can ask for, as one typed request, and their resolution: saved model
//! names become models, persona breakdowns get the project's personas, before a backend runs them.

use crate::definitions;
use crate::error::Result;
use itinera_engine::handoff::HandoffQuery;
use itinera_engine::scores::{CommentsQuery, PromotersQuery, ScoreBy};
use itinera_engine::{
    AccountsQuery, AdvocacyQuery, AttributionQuery, ClvQuery, EventSelector, FunnelQuery, ModelRef,
    PathQuery, RetentionQuery, RevenueQuery, ScoresQuery, StageFunnelQuery,
};
use itinera_meta::{DefinitionKind, Meta};
use serde::{Deserialize, Serialize};

/// One analysis, as `POST /api/v1/queries`, the breakdown and the CLI send it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AnalysisRequest {
    Funnel(FunnelQuery),
    Retention(RetentionQuery),
    Stages(StageFunnelQuery),
    Paths(PathQuery),
    Attribution(AttributionQuery),
    Clv(ClvQuery),
    Accounts(AccountsQuery),
    Advocacy(AdvocacyQuery),
    Revenue(RevenueQuery),
    Scores(ScoresQuery),
    Promoters(PromotersQuery),
    Comments(CommentsQuery),
    Handoff(HandoffQuery),
}

/// The refund event CLV and revenue assume when none is given.
fn is_default_refund(r: &EventSelector) -> bool {
    RevenueQuery::default().refund.as_ref() == Some(r)
}

/// One person's stages under a model (`POST /api/v1/stages/person`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonStagesRequest {
    pub model: ModelRef,
    pub person: String,
}

impl AnalysisRequest {
    /// The request's date range, `[from, to)` in ms since the epoch (CLV and advocacy have none).
    pub fn range(&self) -> (Option<i64>, Option<i64>) {
        match self {
            AnalysisRequest::Funnel(q) => (q.from_ms, q.to_ms),
            AnalysisRequest::Retention(q) => (q.from_ms, q.to_ms),
            AnalysisRequest::Stages(q) => (q.from_ms, q.to_ms),
            AnalysisRequest::Paths(q) => (q.from_ms, q.to_ms),
            AnalysisRequest::Attribution(q) => (q.from_ms, q.to_ms),
            AnalysisRequest::Accounts(q) => (q.from_ms, q.to_ms),
            AnalysisRequest::Revenue(q) => (q.from_ms, q.to_ms),
            AnalysisRequest::Scores(q) => (q.from_ms, q.to_ms),
            AnalysisRequest::Promoters(q) => (q.from_ms, q.to_ms),
            AnalysisRequest::Comments(q) => (q.scores.from_ms, q.scores.to_ms),
            AnalysisRequest::Handoff(q) => (q.from_ms, q.to_ms),
            AnalysisRequest::Clv(_) | AnalysisRequest::Advocacy(_) => (None, None),
        }
    }

    /// A date range that ends before it starts is an error, not an empty answer.
    pub fn check_range(&self) -> Result<()> {
        if let (Some(from), Some(to)) = self.range() {
            if from >= to {
                return Err(crate::AppError::invalid(
                    "from_ms",
                    format!(
                        "the range starts at {from} and ends at {to}: it must start before it ends"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The selectors the request names, with where they are in it, for the warnings about names
    /// the data does not have. Stage models are left out: built-in models name touchpoints of
    /// every business, most of which a project never has.
    pub fn selectors(&self) -> Vec<(String, &EventSelector)> {
        fn add<'a>(
            out: &mut Vec<(String, &'a EventSelector)>,
            field: &str,
            s: Option<&'a EventSelector>,
        ) {
            if let Some(s) = s {
                out.push((field.to_string(), s));
            }
        }
        let mut out: Vec<(String, &EventSelector)> = Vec::new();
        match self {
            AnalysisRequest::Funnel(q) => {
                for (i, s) in q.steps.iter().enumerate() {
                    add(&mut out, &format!("steps[{i}].match"), Some(&s.selector));
                }
                for (i, e) in q.exclusions.iter().enumerate() {
                    add(
                        &mut out,
                        &format!("exclusions[{i}].match"),
                        Some(&e.selector),
                    );
                }
            }
            AnalysisRequest::Handoff(q) => add(&mut out, "touch", Some(&q.touch)),
            AnalysisRequest::Retention(q) => {
                add(&mut out, "cohort", Some(&q.cohort));
                add(&mut out, "return_event", q.return_event.as_ref());
                add(&mut out, "purchase", q.purchase.as_ref());
            }
            AnalysisRequest::Paths(q) => {
                add(&mut out, "start", q.start.as_ref());
                add(&mut out, "end", q.end.as_ref());
                add(&mut out, "conversion", q.conversion.as_ref());
            }
            AnalysisRequest::Attribution(q) => {
                add(&mut out, "conversion", Some(&q.conversion));
                add(&mut out, "touch", q.touch.as_ref());
            }
            // refunds are optional by nature: only a refund selector someone chose is judged
            AnalysisRequest::Clv(q) => {
                add(&mut out, "purchase", Some(&q.purchase));
                add(
                    &mut out,
                    "refund",
                    q.refund.as_ref().filter(|r| !is_default_refund(r)),
                );
            }
            AnalysisRequest::Revenue(q) => {
                add(&mut out, "purchase", Some(&q.purchase));
                add(
                    &mut out,
                    "refund",
                    q.refund.as_ref().filter(|r| !is_default_refund(r)),
                );
            }
            AnalysisRequest::Scores(q) => {
                add(&mut out, "response", Some(&q.response));
                for (i, s) in q.steps.iter().enumerate() {
                    add(&mut out, &format!("steps[{i}].match"), Some(&s.selector));
                }
            }
            AnalysisRequest::Comments(q) => {
                add(&mut out, "scores.response", Some(&q.scores.response))
            }
            // defaults that name a business's usual events (won, lost, referral) would warn on
            // every project that lacks one; they are stated in the answer's definitions instead
            AnalysisRequest::Accounts(_)
            | AnalysisRequest::Advocacy(_)
            | AnalysisRequest::Stages(_)
            | AnalysisRequest::Promoters(_) => {}
        }
        out
    }

    /// The analysis's name, as in the request's JSON and the API's path.
    pub fn kind(&self) -> &'static str {
        match self {
            AnalysisRequest::Funnel(_) => "funnel",
            AnalysisRequest::Retention(_) => "retention",
            AnalysisRequest::Stages(_) => "stages",
            AnalysisRequest::Paths(_) => "paths",
            AnalysisRequest::Attribution(_) => "attribution",
            AnalysisRequest::Clv(_) => "clv",
            AnalysisRequest::Accounts(_) => "accounts",
            AnalysisRequest::Advocacy(_) => "advocacy",
            AnalysisRequest::Revenue(_) => "revenue",
            AnalysisRequest::Scores(_) => "scores",
            AnalysisRequest::Promoters(_) => "promoters",
            AnalysisRequest::Comments(_) => "comments",
            AnalysisRequest::Handoff(_) => "handoff",
        }
    }

    /// The request with the project's saved names resolved: saved stage models given whole,
    /// and the personas a breakdown by persona needs.
    pub fn resolve(&self, meta: &Meta, project: &str) -> Result<AnalysisRequest> {
        let mut request = self.clone();
        let resolve = |m: &mut ModelRef| -> Result<()> {
            *m = definitions::resolve_model(meta, project, m)?;
            Ok(())
        };
        match &mut request {
            AnalysisRequest::Scores(q) => {
                if q.by == Some(ScoreBy::Persona) && q.personas.is_empty() {
                    q.personas =
                        definitions::load_segments(meta, project, DefinitionKind::Persona)?;
                }
                resolve(&mut q.model)?;
            }
            AnalysisRequest::Stages(q) => resolve(&mut q.model)?,
            AnalysisRequest::Accounts(q) => resolve(&mut q.model)?,
            AnalysisRequest::Handoff(q) => resolve(&mut q.model)?,
            // without a calibration end, every purchase up to now fits the models
            AnalysisRequest::Clv(q) if q.calibration_end_ms.is_none() => {
                q.calibration_end_ms = Some(crate::now_ms())
            }
            _ => {}
        }
        Ok(request)
    }
}

use super::*;
use crate::duration::Span;
use crate::error::{EngineError, Result};
use crate::journey::CountBy;
use crate::selector::EventSelector;
use serde::{Deserialize, Serialize};

/// How the steps must follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FunnelOrder {
    /// Steps in this order, other touchpoints allowed in between (`windowFunnel` default mode).
    #[default]
    Ordered,
    /// Steps in this order as consecutive touchpoints: any other touchpoint breaks the chain,
    /// which may start again later.
    Strict,
    /// Steps in any order within the window.
    Unordered,
    /// `windowFunnel` mode `strict_deduplication`: a repeat of a reached step stops the search.
    StrictDeduplication,
    /// `windowFunnel` mode `strict_order`: the first touchpoint that is not the next step stops
    /// the search.
    StrictOrder,
    /// `windowFunnel` mode `strict_increase`: each step strictly later than the previous one.
    StrictIncrease,
}

impl FunnelOrder {
    pub fn parse(s: &str) -> Result<FunnelOrder> {
        serde_json::from_value(serde_json::Value::String(s.replace('-', "_"))).map_err(|_| {
            EngineError::invalid(
                "order",
                format!(
                    "`{s}` is not one of ordered, strict, unordered, strict_deduplication, strict_order, strict_increase"
                ),
            )
        })
    }

    pub(super) fn sees_all_rows(self) -> bool {
        matches!(self, FunnelOrder::Strict | FunnelOrder::StrictOrder)
    }
}

/// One step of a funnel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunnelStep {
    #[serde(rename = "match")]
    pub selector: EventSelector,
    /// A label for reports (defaults to the selector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A person may skip an optional step; it is counted for those who did it.
    #[serde(default)]
    pub optional: bool,
    /// Longest time allowed since the previous step done, on top of the funnel's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Span>,
}

impl FunnelStep {
    pub fn new(selector: EventSelector) -> Self {
        FunnelStep {
            selector,
            name: None,
            optional: false,
            within: None,
        }
    }

    pub(super) fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => self.selector.to_string(),
        }
    }
}

/// A touchpoint that breaks a chain between two steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    #[serde(rename = "match")]
    pub selector: EventSelector,
    /// Chains that reached step `from_step` (1-based, default 1) but not yet `to_step` (default:
    /// the last step) are broken when the excluded touchpoint happens.
    #[serde(default)]
    pub from_step: Option<usize>,
    #[serde(default)]
    pub to_step: Option<usize>,
}

/// Which touchpoint of the chain gives the breakdown value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "step")]
pub enum Attribution {
    /// The touchpoint of step 1.
    #[default]
    FirstTouch,
    /// The touchpoint of the last step reached.
    LastTouch,
    /// The touchpoint of step N (1-based); persons who did not reach it get `(none)`.
    Step(usize),
}

/// A field to break results down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakdownField {
    Channel,
    Touchpoint,
    Event,
    /// A typed property of the touchpoint (`property` names it, e.g. `properties.plan` or
    /// `campaign.name`); touchpoints without it give `(none)`.
    Property,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Breakdown {
    pub field: BreakdownField,
    #[serde(default)]
    pub attribution: Attribution,
    /// With `field: property`: the property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
}

/// Where a row's breakdown value comes from, resolved against the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagSource {
    Channel,
    Touchpoint,
    Event,
    /// The property-key code (`None`: no touchpoint has it).
    Property(Option<u32>),
}

/// Which persons to list (a cohort to export).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CohortRequest {
    /// 1-based step.
    pub step: usize,
    pub outcome: CohortOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CohortOutcome {
    /// Reached the step.
    Reached,
    /// Reached the step before it (the previous required step) but not this one.
    Dropped,
}

/// A funnel analysis, independent of the backend that runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunnelQuery {
    pub steps: Vec<FunnelStep>,
    /// Longest time from step 1 to the last step.
    pub window: Span,
    #[serde(default)]
    pub order: FunnelOrder,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<Exclusion>,
    #[serde(default)]
    pub count_by: CountBy,
    /// Only chains whose step 1 happens in `[from, to)` (ms since the epoch); later steps may
    /// follow up to the window after `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Breakdown>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortRequest>,
}

impl FunnelQuery {
    /// An ordered funnel over event names.
    pub fn events(names: &[&str], window: Span) -> FunnelQuery {
        FunnelQuery {
            steps: names
                .iter()
                .map(|n| FunnelStep::new(EventSelector::event(n)))
                .collect(),
            window,
            order: FunnelOrder::Ordered,
            exclusions: Vec::new(),
            count_by: CountBy::Person,
            from_ms: None,
            to_ms: None,
            breakdown: None,
            cohort: None,
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        let n = self.steps.len();
        if n == 0 {
            return Err(EngineError::invalid(
                "steps",
                "a funnel needs at least one step",
            ));
        }
        if n > MAX_STEPS {
            return Err(EngineError::invalid(
                "steps",
                format!("{n} steps; at most {MAX_STEPS}"),
            ));
        }
        if n + self.exclusions.len() > 64 {
            return Err(EngineError::invalid(
                "exclusions",
                "steps and exclusions together are at most 64",
            ));
        }
        if self.steps[0].optional {
            return Err(EngineError::invalid(
                "steps[0].optional",
                "step 1 cannot be optional",
            ));
        }
        if self.steps[n - 1].optional {
            return Err(EngineError::invalid(
                format!("steps[{}].optional", n - 1),
                "the last step cannot be optional",
            ));
        }
        if self.window.ms() <= 0 {
            return Err(EngineError::invalid("window", "must be longer than zero"));
        }
        let extras = !self.exclusions.is_empty()
            || self.steps.iter().any(|s| s.optional || s.within.is_some());
        let ch_mode = matches!(
            self.order,
            FunnelOrder::StrictDeduplication
                | FunnelOrder::StrictOrder
                | FunnelOrder::StrictIncrease
        );
        if extras && ch_mode {
            return Err(EngineError::invalid(
                "order",
                "optional steps, per-step windows and exclusions work with ordered, strict and unordered funnels",
            ));
        }
        if self.order == FunnelOrder::Unordered
            && (!self.exclusions.is_empty() || self.steps.iter().any(|s| s.within.is_some()))
        {
            return Err(EngineError::invalid(
                "order",
                "unordered funnels take no exclusions or per-step windows",
            ));
        }
        for (i, e) in self.exclusions.iter().enumerate() {
            let from = e.from_step.unwrap_or(1);
            let to = e.to_step.unwrap_or(n);
            if from < 1 || to > n || from >= to {
                return Err(EngineError::invalid(
                    format!("exclusions[{i}]"),
                    format!("from_step {from} and to_step {to} must satisfy 1 <= from < to <= {n}"),
                ));
            }
        }
        if let Some(b) = &self.breakdown {
            let named = b
                .property
                .as_deref()
                .is_some_and(crate::selector::is_prop_key);
            if (b.field == BreakdownField::Property) != named {
                return Err(EngineError::invalid(
                    "breakdown.property",
                    "a property breakdown names one (properties.NAME, traits.NAME or campaign.NAME), and only it",
                ));
            }
        }
        if let Some(Breakdown {
            attribution: Attribution::Step(k),
            ..
        }) = self.breakdown
        {
            if k < 1 || k > n {
                return Err(EngineError::invalid(
                    "breakdown.attribution.step",
                    format!("{k} is not a step (1..={n})"),
                ));
            }
        }
        if let Some(c) = self.cohort {
            if c.step < 1 || c.step > n {
                return Err(EngineError::invalid(
                    "cohort.step",
                    format!("{} is not a step (1..={n})", c.step),
                ));
            }
            if c.step == 1 && c.outcome == CohortOutcome::Dropped {
                return Err(EngineError::invalid(
                    "cohort",
                    "nobody drops at step 1; ask for those who reached it",
                ));
            }
        }
        Ok(())
    }
}

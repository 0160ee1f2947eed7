//! Any analysis once per persona or per saved segment.

use crate::analysis::AnalysisRequest;
use crate::definitions;
use crate::error::{AppError, Result};
use crate::population::Population;
use crate::App;
use itinera_engine::ScanOptions;
use itinera_meta::{DefinitionKind, Meta};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a breakdown splits by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakdownBy {
    Persona,
    Segment,
}

impl std::str::FromStr for BreakdownBy {
    type Err = AppError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "persona" => Ok(BreakdownBy::Persona),
            "segment" => Ok(BreakdownBy::Segment),
            other => Err(AppError::invalid(
                "by",
                format!("`{other}`: expected persona or segment"),
            )),
        }
    }
}

/// One group's answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BreakdownGroup {
    pub name: String,
    pub result: Value,
}

/// Every group's answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BreakdownResult {
    pub by: BreakdownBy,
    pub groups: Vec<BreakdownGroup>,
}

/// The groups of a breakdown: every persona then `(none)`, or every saved segment.
pub fn groups(meta: &Meta, project: &str, by: BreakdownBy) -> Result<Vec<(String, Population)>> {
    Ok(match by {
        BreakdownBy::Persona => definitions::load_segments(meta, project, DefinitionKind::Persona)?
            .into_iter()
            .map(|d| d.name)
            .chain(["(none)".to_string()])
            .map(|n| {
                let p = Population {
                    segment: None,
                    persona: Some(n.clone()),
                };
                (n, p)
            })
            .collect(),
        BreakdownBy::Segment => definitions::load_segments(meta, project, DefinitionKind::Segment)?
            .into_iter()
            .map(|d| {
                let p = Population {
                    segment: Some(d.name.clone()),
                    persona: None,
                };
                (d.name, p)
            })
            .collect(),
    })
}

impl App {
    /// Runs `request` once per group. Blocking.
    pub fn breakdown(
        &self,
        project: &str,
        by: BreakdownBy,
        request: &AnalysisRequest,
        opts: &ScanOptions,
    ) -> Result<BreakdownResult> {
        let groups = groups(&self.meta(), project, by)?;
        let mut out = Vec::with_capacity(groups.len());
        for (name, population) in groups {
            let result = self.run_analysis(project, request, &population, opts)?;
            out.push(BreakdownGroup { name, result });
        }
        Ok(BreakdownResult { by, groups: out })
    }
}

//! `itinera query attribution` (and the value analyses): on stored journeys, on a server, or on
//! a path table in the ChannelAttribution format.

use super::{enum_arg, execute, span, DateRange, Target};
use crate::output::{print_records, Format};
use crate::CliResult;
use clap::Args;
use itinera_engine::attribution::{
    run_on_paths, AttributionKey, AttributionModel, AttributionQuery, AttributionResult, PathTable,
};
use itinera_engine::funnel::CountBy;
use itinera_engine::EventSelector;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct AttributionArgs {
    /// A path table instead of stored journeys: `path;conversions;value;nulls` lines, channels
    /// joined by ` > ` (the ChannelAttribution format; a header line is optional).
    #[arg(long)]
    paths: Option<PathBuf>,
    /// A model to run (repeatable; all when omitted): first_touch, last_touch, last_non_direct,
    /// linear, time_decay, position_based, markov, shapley.
    #[arg(long = "model")]
    models: Vec<String>,
    /// Markov chain order, 1–4.
    #[arg(long, default_value_t = 1)]
    order: usize,
    /// The conversion (its revenue is the conversion value).
    #[arg(long, default_value = "Order Completed")]
    conversion: String,
    /// Touchpoints that can earn credit (default: every page, screen and track).
    #[arg(long)]
    touch: Option<String>,
    /// Credit channels, touchpoints or events.
    #[arg(long, default_value = "channel")]
    by: String,
    /// Touches older than this before a conversion earn nothing.
    #[arg(long, default_value = "30d")]
    lookback: String,
    /// With `--by channel`: a visit (one touch) ends after this much inactivity or at another
    /// channel than direct.
    #[arg(long, default_value = "30m")]
    session_gap: String,
    /// Time-decay half-life.
    #[arg(long, default_value = "7d")]
    half_life: String,
    /// Position-based shares in percent, FIRST/MIDDLE/LAST.
    #[arg(long, default_value = "40/20/40")]
    position: String,
    /// The channel last-non-direct skips.
    #[arg(long, default_value = "direct")]
    direct: String,
    /// Credit B2B account journeys (all members' touchpoints together) instead of persons.
    #[arg(long)]
    by_account: bool,
    /// Random orders drawn when Shapley has more than 15 channels.
    #[arg(long, default_value_t = 20_000)]
    shapley_samples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    range: DateRange,
    #[command(flatten)]
    target: Target,
}

fn attribution_query(a: &AttributionArgs) -> CliResult<AttributionQuery> {
    let models = a
        .models
        .iter()
        .map(|m| {
            AttributionModel::parse(m).ok_or_else(|| {
                format!(
                    "--model {m}: expected one of {}",
                    AttributionModel::ALL.map(|m| m.name()).join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shares: Vec<f64> = a
        .position
        .split('/')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()
        .filter(|v: &Vec<f64>| v.len() == 3 && (v.iter().sum::<f64>() - 100.0).abs() < 1e-9)
        .ok_or_else(|| {
            format!(
                "--position {}: expected FIRST/MIDDLE/LAST percentages adding up to 100",
                a.position
            )
        })?;
    Ok(AttributionQuery {
        conversion: EventSelector::parse(&a.conversion)?,
        touch: a.touch.as_deref().map(EventSelector::parse).transpose()?,
        by: enum_arg::<AttributionKey>("by", &a.by, "channel, touchpoint, event")?,
        lookback: span("lookback", &a.lookback)?,
        count_by: if a.by_account {
            CountBy::Account
        } else {
            CountBy::Person
        },
        models,
        half_life: span("half-life", &a.half_life)?,
        first_share: shares[0] / 100.0,
        last_share: shares[2] / 100.0,
        session_gap: span("session-gap", &a.session_gap)?,
        markov_order: a.order,
        direct: a.direct.clone(),
        shapley_samples: a.shapley_samples,
        seed: a.seed,
        from_ms: a.range.start_ms()?,
        to_ms: a.range.end_ms()?,
    })
}

pub fn run_attribution(a: &AttributionArgs) -> CliResult {
    let q = attribution_query(a)?;
    let result: AttributionResult = match &a.paths {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("--paths {}: {e}", file.display()))?;
            let table =
                PathTable::parse(&text).map_err(|e| format!("--paths {}: {e}", file.display()))?;
            run_on_paths(table, &q.settings())?
        }
        None => execute(&a.target, "attribution", &q, |view| {
            itinera_engine::run_attribution(view, &q, &Default::default())
        })?,
    };
    print_attribution(a.target.format, &result)
}

/// One row per key: conversions credited by each model, then the value credited by each model.
fn print_attribution(format: Format, r: &AttributionResult) -> CliResult {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let mut cols = vec![r.by.clone()];
    cols.extend(r.models.iter().map(|m| m.name().to_string()));
    cols.extend(r.models.iter().map(|m| format!("{}_value", m.name())));
    let rows: Vec<_> = r
        .keys
        .iter()
        .map(|k| {
            let mut o = serde_json::Map::new();
            o.insert(r.by.clone(), json!(k.name));
            for m in &r.models {
                let c = k.credit.get(m.name()).copied().unwrap_or_default();
                o.insert(m.name().into(), json!(c.conversions));
                o.insert(format!("{}_value", m.name()), json!(c.value));
            }
            serde_json::Value::Object(o)
        })
        .collect();
    let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
    print_records(format, &cols, &rows)?;
    if format == Format::Table {
        let t = &r.totals;
        println!(
            "{} conversions credited (value {:.2}); {} without a touch in the lookback window; {} paths without conversion",
            t.conversions, t.value, t.unattributed_conversions, t.null_paths
        );
        for (m, d) in &r.definitions {
            println!("  {m}: {d}");
        }
    }
    Ok(())
}

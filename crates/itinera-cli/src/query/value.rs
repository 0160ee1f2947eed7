//! `itinera query attribution` (and the value analyses): on stored journeys, on a server, or on
//! a path table in the ChannelAttribution format.

use super::{analyze, enum_arg, span, DateRange, Target};
use crate::output::{print_records, printed_as_json, Format};
use crate::CliResult;
use clap::Args;
use itinera_app::AnalysisRequest;
use itinera_engine::advocacy::{AdvocacyQuery, AdvocacyResult};
use itinera_engine::attribution::{
    run_on_paths, AttributionKey, AttributionModel, AttributionQuery, AttributionResult, PathTable,
};
use itinera_engine::b2b::{AccountsQuery, AccountsResult};
use itinera_engine::calendar::Period;
use itinera_engine::clv::{ClvQuery, ClvResult, TimeUnit};
use itinera_engine::handoff::{Difference, HandoffQuery, HandoffResult, Share};
use itinera_engine::journey::CountBy;
use itinera_engine::revenue::{RevenueQuery, RevenueResult};
use itinera_engine::scores::{
    CommentsQuery, CommentsResult, PromotersQuery, PromotersResult, ScoreBy, ScoreKind, ScoreStep,
    ScoresQuery, ScoresResult,
};
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
    /// linear, time_decay, position_based, markov, shapley (the subset game), shapley_markov.
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
    /// Credit channels, touchpoints, events or campaigns (UTM `campaign.name`).
    #[arg(long, default_value = "channel")]
    by: String,
    /// With `--by campaign`: the property naming the campaign.
    #[arg(long, default_value = "campaign.name")]
    campaign_property: String,
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
    /// What the table shows per model: `conversions` (credited conversions), `value` (credited
    /// revenue) or `both`; CSV and JSON always hold both, exact.
    #[arg(long, default_value = "conversions")]
    show: String,
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
        by: enum_arg::<AttributionKey>("by", &a.by, "channel, touchpoint, event, campaign")?,
        campaign_property: a.campaign_property.clone(),
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
        None => analyze(&a.target, AnalysisRequest::Attribution(q.clone()))?,
    };
    let show = match (a.target.format, a.show.as_str()) {
        (Format::Table, "conversions") => (true, false),
        (Format::Table, "value") => (false, true),
        (_, "conversions" | "value" | "both") => (true, true),
        (_, other) => {
            return Err(format!("--show {other}: expected conversions, value or both").into())
        }
    };
    print_attribution(a.target.format, &result, show)
}

/// One row per key: conversions credited by each model, then the value credited by each model
/// (`show`: which of the two a table prints; rounded there, exact in CSV and JSON).
fn print_attribution(format: Format, r: &AttributionResult, show: (bool, bool)) -> CliResult {
    if printed_as_json(format, r)? {
        return Ok(());
    }
    let table = format == Format::Table;
    let round = |v: f64, places: i32| {
        if table {
            let f = 10f64.powi(places);
            json!((v * f).round() / f)
        } else {
            json!(v)
        }
    };
    let mut cols = vec![r.by.clone()];
    if show.0 {
        cols.extend(r.models.iter().map(|m| m.name().to_string()));
    }
    if show.1 {
        cols.extend(r.models.iter().map(|m| format!("{}_value", m.name())));
    }
    let rows: Vec<_> = r
        .keys
        .iter()
        .map(|k| {
            let mut o = serde_json::Map::new();
            o.insert(r.by.clone(), json!(k.name));
            for m in &r.models {
                let c = k.credit.get(m.name()).copied().unwrap_or_default();
                o.insert(m.name().into(), round(c.conversions, 1));
                o.insert(format!("{}_value", m.name()), round(c.value, 2));
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

#[derive(Args)]
pub struct ClvArgs {
    /// The last day of the calibration period (YYYY-MM-DD): purchases up to it fit the models,
    /// later ones are the holdout the predictions are compared with. Without it: every purchase
    /// up to today fits the models, and the predictions are for the horizon from today.
    #[arg(long)]
    calibration_end: Option<String>,
    /// day or week: the unit of recency, age, the horizon and the discount rate.
    #[arg(long, default_value = "week")]
    time_unit: String,
    /// Prediction horizon in time units.
    #[arg(long, default_value_t = 52)]
    horizon: u32,
    /// Discount rate per time unit.
    #[arg(long, default_value_t = 0.01)]
    discount: f64,
    /// Purchases (their revenue is the spend).
    #[arg(long, default_value = "Order Completed")]
    purchase: String,
    /// Refunds, subtracted from the revenue to date (`none` to ignore refunds).
    #[arg(long, default_value = "Order Refunded")]
    refund: String,
    /// Probability alive below which a customer is at churn risk.
    #[arg(long, default_value_t = 0.5)]
    churn_threshold: f64,
    /// Customers printed, by predicted CLV (all when omitted).
    #[arg(long)]
    limit: Option<usize>,
    /// B2B accounts as the customers.
    #[arg(long)]
    by_account: bool,
    /// Calendar days in this offset from UTC, e.g. +01:00.
    #[arg(long, default_value = "+00:00")]
    utc_offset: String,
    /// Calendar days in this IANA time zone (e.g. Europe/Berlin).
    #[arg(long)]
    time_zone: Option<String>,
    /// Save customers as a segment of this name (a person list usable with `--segment`):
    /// `NAME=churn-risk`, `NAME=high`, `NAME=medium` or `NAME=low` (value tier).
    #[arg(long)]
    save_segment: Vec<String>,
    #[command(flatten)]
    target: Target,
}

/// Saves the customers of a churn-risk or value-tier selection as person-list segments.
fn save_clv_segments(a: &ClvArgs, r: &ClvResult) -> CliResult {
    for spec in &a.save_segment {
        let (name, which) = spec.split_once('=').ok_or_else(|| {
            format!("--save-segment {spec}: expected NAME=churn-risk|high|medium|low")
        })?;
        if !["churn-risk", "high", "medium", "low"].contains(&which) {
            return Err(
                format!("--save-segment {spec}: expected churn-risk, high, medium or low").into(),
            );
        }
        let ids: Vec<String> = r
            .customers
            .iter()
            .filter(|c| match which {
                "churn-risk" => c.churn_risk,
                tier => c.value_tier == tier,
            })
            .map(|c| c.id.clone())
            .collect();
        let what = format!(
            "CLV {which} customers, calibration end {}",
            a.calibration_end.as_deref().unwrap_or("today")
        );
        super::save_person_segment(&a.target, name, &ids, &what)?;
    }
    Ok(())
}

pub fn run_clv(a: &ClvArgs) -> CliResult {
    let calibration_end = match &a.calibration_end {
        Some(d) => super::parse_date("calibration-end", d)?,
        None => {
            let today = itinera_core::message::format_ts(itinera_app::now_ms());
            eprintln!(
                "fitting on every purchase up to today ({}) and predicting from today; \
                 --calibration-end DATE holds out the purchases after DATE to compare the predictions with",
                &today[..10]
            );
            itinera_app::now_ms()
        }
    };
    let mut q = ClvQuery::new(calibration_end);
    q.time_unit = enum_arg::<TimeUnit>("time-unit", &a.time_unit, "day, week")?;
    q.horizon = a.horizon;
    q.discount = a.discount;
    q.purchase = EventSelector::parse(&a.purchase)?;
    q.refund = (a.refund != "none")
        .then(|| EventSelector::parse(&a.refund))
        .transpose()?;
    q.churn_threshold = a.churn_threshold;
    // every customer is needed to save a segment; the print is cut to --limit below
    q.limit = if a.save_segment.is_empty() {
        a.limit
    } else {
        None
    };
    q.utc_offset_minutes = super::parse_offset(&a.utc_offset)?;
    q.time_zone = a.time_zone.clone();
    if a.by_account {
        q.count_by = CountBy::Account;
    }
    let mut r: ClvResult = analyze(&a.target, AnalysisRequest::Clv(q.clone()))?;
    save_clv_segments(a, &r)?;
    if let Some(l) = a.limit {
        r.customers.truncate(l);
    }
    if printed_as_json(a.target.format, &r)? {
        return Ok(());
    }
    if a.target.format == Format::Table {
        let b = &r.bg_nbd;
        println!(
            "BG/NBD: r = {:.4}, alpha = {:.4}, a = {:.4}, b = {:.4} (log-likelihood {:.2})",
            b.r, b.alpha, b.a, b.b, b.log_likelihood
        );
        match &r.gamma_gamma {
            Some(g) => println!(
                "Gamma-Gamma: p = {:.4}, q = {:.4}, gamma = {:.4} (log-likelihood {:.2})",
                g.p, g.q, g.gamma, g.log_likelihood
            ),
            None => println!("Gamma-Gamma: not fitted (too few repeat customers with spend)"),
        }
        let t = &r.totals;
        println!(
            "{} customers, repeat purchase rate {:.1} %, revenue to date {:.2}, predicted CLV {:.2} over {} {:?}s, {} at churn risk",
            t.customers,
            100.0 * t.repeat_purchase_rate,
            t.revenue_to_date,
            t.predicted_clv,
            r.horizon,
            r.time_unit,
            t.churn_risk
        );
    }
    print_records(
        a.target.format,
        &[
            "id",
            "frequency",
            "recency",
            "age",
            "monetary_value",
            "orders",
            "revenue_to_date",
            "probability_alive",
            "expected_purchases",
            "expected_spend",
            "predicted_clv",
            "value_tier",
            "churn_risk",
        ],
        &r.customers,
    )
}

#[derive(Args)]
pub struct AccountsArgs {
    /// The won-deal event.
    #[arg(long, default_value = "Order Completed")]
    won: String,
    /// The lost-deal event.
    #[arg(long, default_value = "Deal Lost")]
    lost: String,
    /// A buying-group role (repeatable; default: every role seen).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// The trait naming a member's role.
    #[arg(long, default_value = "traits.role")]
    role_property: String,
    /// A personal or phone channel (repeatable; default call_center, store, sales, event, phone).
    #[arg(long = "personal-channel")]
    personal_channels: Vec<String>,
    /// Stage model that stages an account (built-in name or file).
    #[arg(long, default_value = "buyer-journey")]
    model: String,
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    range: DateRange,
    #[command(flatten)]
    target: Target,
}

pub fn run_accounts(a: &AccountsArgs) -> CliResult {
    let mut q = AccountsQuery {
        won: EventSelector::parse(&a.won)?,
        lost: EventSelector::parse(&a.lost)?,
        role_property: a.role_property.clone(),
        roles: a.roles.clone(),
        model: super::model_ref(&a.model, &a.target)?,
        limit: a.limit,
        from_ms: a.range.start_ms()?,
        to_ms: a.range.end_ms()?,
        ..Default::default()
    };
    if !a.personal_channels.is_empty() {
        q.personal_channels = a.personal_channels.clone();
    }
    let r: AccountsResult = analyze(&a.target, AnalysisRequest::Accounts(q.clone()))?;
    if printed_as_json(a.target.format, &r)? {
        return Ok(());
    }
    let rows: Vec<_> = r
        .comparison
        .iter()
        .map(|c| {
            json!({
                "status": c.status,
                "accounts": c.accounts,
                "members": c.mean_members,
                "coverage": c.mean_coverage,
                "personal share": c.mean_personal_share,
                "touchpoints": c.mean_touchpoints,
                "median days to close": c.median_days_to_close,
            })
        })
        .collect();
    print_records(
        a.target.format,
        &[
            "status",
            "accounts",
            "members",
            "coverage",
            "personal share",
            "touchpoints",
            "median days to close",
        ],
        &rows,
    )?;
    let rows: Vec<_> = r
        .accounts
        .iter()
        .map(|x| {
            json!({
                "account": x.account,
                "status": x.status,
                "stage": x.stage,
                "members": x.members,
                "coverage": x.coverage,
                "missing roles": x.missing_roles.join(" "),
                "personal share": x.personal_share,
                "days to close": x.days_to_close,
            })
        })
        .collect();
    print_records(
        a.target.format,
        &[
            "account",
            "status",
            "stage",
            "members",
            "coverage",
            "missing roles",
            "personal share",
            "days to close",
        ],
        &rows,
    )
}

#[derive(Args)]
pub struct AdvocacyArgs {
    #[arg(long, default_value = "Order Completed")]
    purchase: String,
    #[arg(long, default_value = "Referral Sent")]
    referral_sent: String,
    #[arg(long, default_value = "Referral Accepted")]
    referral_accepted: String,
    /// The property of an accepted referral naming the advocate's id.
    #[arg(long, default_value = "properties.referrer_id")]
    referrer_property: String,
    /// The referral-code property (on sent and accepted referrals).
    #[arg(long, default_value = "properties.referral_code")]
    code_property: String,
    #[command(flatten)]
    target: Target,
}

pub fn run_advocacy(a: &AdvocacyArgs) -> CliResult {
    let q = AdvocacyQuery {
        purchase: EventSelector::parse(&a.purchase)?,
        referral_sent: EventSelector::parse(&a.referral_sent)?,
        referral_accepted: EventSelector::parse(&a.referral_accepted)?,
        referrer_property: a.referrer_property.clone(),
        code_property: a.code_property.clone(),
        ..Default::default()
    };
    let r: AdvocacyResult = analyze(&a.target, AnalysisRequest::Advocacy(q.clone()))?;
    if printed_as_json(a.target.format, &r)? {
        return Ok(());
    }
    print_records(a.target.format, &["step", "count", "definition"], &r.cycle)?;
    let pct = |v: Option<f64>| v.map_or("".to_string(), |v| format!("{:.1} %", 100.0 * v));
    let rows = vec![
        json!({"measure": "customers", "value": r.customers}),
        json!({"measure": "share of customers who refer", "value": pct(r.share_of_customers_who_refer)}),
        json!({"measure": "share of customers acquired by referral", "value": pct(r.share_of_customers_acquired_by_referral)}),
        json!({"measure": "viral coefficient (referred customers / customers)", "value": r.viral_coefficient}),
        json!({"measure": "mean revenue, referred / other customers", "value": format!("{:.2} / {:.2}", r.referred.mean_revenue, r.others.mean_revenue)}),
        json!({"measure": "repeat purchase rate, referred / other customers", "value": format!("{} / {}", pct(Some(r.referred.repeat_purchase_rate)), pct(Some(r.others.repeat_purchase_rate)))}),
        json!({"measure": "NPS of referrers (n)", "value": format!("{} ({})", r.nps_of_referrers.nps.map_or("".into(), |v| format!("{v:.1}")), r.nps_of_referrers.n)}),
    ];
    print_records(a.target.format, &["measure", "value"], &rows)
}

#[derive(Args)]
pub struct RevenueArgs {
    /// day, week (ISO) or month.
    #[arg(long, default_value = "month")]
    period: String,
    #[arg(long, default_value = "Order Completed")]
    purchase: String,
    /// Refunds, subtracted (`none` to ignore).
    #[arg(long, default_value = "Order Refunded")]
    refund: String,
    #[arg(long, default_value = "properties.currency")]
    currency_property: String,
    #[arg(long, default_value = "+00:00")]
    utc_offset: String,
    /// IANA time zone (e.g. Europe/Berlin), following daylight saving time.
    #[arg(long)]
    time_zone: Option<String>,
    #[command(flatten)]
    range: DateRange,
    #[command(flatten)]
    target: Target,
}

pub fn run_revenue(a: &RevenueArgs) -> CliResult {
    let q = RevenueQuery {
        purchase: EventSelector::parse(&a.purchase)?,
        refund: (a.refund != "none")
            .then(|| EventSelector::parse(&a.refund))
            .transpose()?,
        currency_property: a.currency_property.clone(),
        period: enum_arg::<Period>("period", &a.period, "day, week, month")?,
        utc_offset_minutes: super::parse_offset(&a.utc_offset)?,
        time_zone: a.time_zone.clone(),
        from_ms: a.range.start_ms()?,
        to_ms: a.range.end_ms()?,
    };
    let r: RevenueResult = analyze(&a.target, AnalysisRequest::Revenue(q.clone()))?;
    if printed_as_json(a.target.format, &r)? {
        return Ok(());
    }
    let cols = [
        "period",
        "currency",
        "orders",
        "gross_revenue",
        "refunds",
        "refunded",
        "net_revenue",
        "average_order_value",
        "customers",
    ];
    print_records(a.target.format, &cols, &r.rows)?;
    print_records(a.target.format, &cols[1..], &r.totals)
}

#[derive(Args)]
pub struct HandoffArgs {
    /// The onboarding touch, e.g. "Welcome Email Opened".
    #[arg(long)]
    touch: String,
    /// The stage model (built-in name, saved model or FILE); its purchase stage is the handoff.
    #[arg(long, default_value = "customer-journey")]
    model: String,
    /// Handed off: the touch within this of the purchase.
    #[arg(long, default_value = "7d")]
    within: String,
    /// Retained: a touchpoint at least this long after the purchase.
    #[arg(long, default_value = "30d")]
    retained_after: String,
    /// Only customers whose purchase lies in the range.
    #[command(flatten)]
    range: DateRange,
    #[command(flatten)]
    target: Target,
}

pub fn run_handoff(a: &HandoffArgs) -> CliResult {
    let q = HandoffQuery {
        model: super::model_ref(&a.model, &a.target)?,
        touch: EventSelector::parse(&a.touch)?,
        within: span("--within", &a.within)?,
        retained_after: span("--retained-after", &a.retained_after)?,
        from_ms: a.range.start_ms()?,
        to_ms: a.range.end_ms()?,
        confidence: 0.95,
    };
    let r: HandoffResult = analyze(&a.target, AnalysisRequest::Handoff(q))?;
    if printed_as_json(a.target.format, &r)? {
        return Ok(());
    }
    let share = |s: &Share| match (s.share, s.ci_low, s.ci_high) {
        (Some(p), Some(l), Some(h)) => format!(
            "{:.1} % ({:.1}–{:.1} %) of {}",
            p * 100.0,
            l * 100.0,
            h * 100.0,
            s.n
        ),
        _ => "–".into(),
    };
    let diff = |d: &Difference| match (d.difference, d.ci_low, d.ci_high) {
        (Some(x), Some(l), Some(h)) => format!(
            "{:+.1} points ({:+.1} to {:+.1})",
            x * 100.0,
            l * 100.0,
            h * 100.0
        ),
        _ => "–".into(),
    };
    let rows = vec![
        json!({"group": "with the touch", "customers": r.with_touch.customers,
               "retained": share(&r.with_touch.retained), "repeat_purchase": share(&r.with_touch.repeat_purchase)}),
        json!({"group": "without", "customers": r.without_touch.customers,
               "retained": share(&r.without_touch.retained), "repeat_purchase": share(&r.without_touch.repeat_purchase)}),
        json!({"group": "difference", "customers": "",
               "retained": diff(&r.retained_difference), "repeat_purchase": diff(&r.repeat_purchase_difference)}),
    ];
    let time = |s: Option<i64>| s.map_or("–".into(), |s| super::human_duration(s as f64));
    println!(
        "{} customers entered {} ({}); handed off: {}; time to the touch: median {}, p90 {}",
        r.customers,
        r.purchase_stage,
        r.model,
        share(&r.handed_off),
        time(r.median_seconds_to_touch),
        time(r.p90_seconds_to_touch)
    );
    print_records(
        a.target.format,
        &["group", "customers", "retained", "repeat_purchase"],
        &rows,
    )?;
    for d in &r.definitions {
        println!("  {d}");
    }
    Ok(())
}

#[derive(Args)]
pub struct ScoresArgs {
    /// nps, csat or ces.
    #[arg(long)]
    kind: String,
    /// Group by stage, step, touchpoint, channel, persona, account, survey, day, week or month.
    #[arg(long)]
    by: Option<String>,
    /// For `--by step`: a step's touchpoints (a selector, as the funnel's `--step`), in order;
    /// an answer falls in the step done last before it.
    #[arg(long = "step")]
    steps: Vec<String>,
    /// Only answers to this survey (`properties.survey_id`).
    #[arg(long)]
    survey: Option<String>,
    /// The scale, MIN-MAX (CSAT default 1-5; NPS is 0-10, CES 1-7).
    #[arg(long)]
    scale: Option<String>,
    /// CES: the low end of the scale means easy.
    #[arg(long)]
    low_is_good: bool,
    /// Stage model for `--by stage`.
    #[arg(long, default_value = "customer-journey")]
    model: String,
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// IANA time zone for the periods of --by day|week|month (e.g. Europe/Berlin).
    #[arg(long)]
    time_zone: Option<String>,
    #[command(flatten)]
    range: DateRange,
    #[command(flatten)]
    target: Target,
}

/// The answers a scores or comments command looks at: kind, grouping, survey and range.
fn answers_query(
    kind: &str,
    by: Option<&str>,
    survey: Option<&str>,
    range: &DateRange,
) -> CliResult<ScoresQuery> {
    let mut q = ScoresQuery::new(enum_arg::<ScoreKind>("kind", kind, "nps, csat, ces")?);
    q.by = by
        .map(|b| {
            enum_arg::<ScoreBy>(
                "by",
                b,
                "stage, step, touchpoint, channel, persona, account, survey, day, week, month",
            )
        })
        .transpose()?;
    q.survey_id = survey.map(str::to_string);
    q.from_ms = range.start_ms()?;
    q.to_ms = range.end_ms()?;
    Ok(q)
}

pub fn run_scores(a: &ScoresArgs) -> CliResult {
    let mut q = answers_query(&a.kind, a.by.as_deref(), a.survey.as_deref(), &a.range)?;
    q.scale = match &a.scale {
        None => None,
        Some(s) => {
            let bad = || format!("--scale {s}: expected MIN-MAX, e.g. 1-5");
            let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
            Some([
                lo.trim().parse().map_err(|_| bad())?,
                hi.trim().parse().map_err(|_| bad())?,
            ])
        }
    };
    q.low_is_good = a.low_is_good;
    q.model = super::model_ref(&a.model, &a.target)?;
    q.steps = a
        .steps
        .iter()
        .map(|s| {
            EventSelector::parse(s)
                .map(|selector| ScoreStep {
                    selector,
                    name: None,
                })
                .map_err(|e| format!("--step {s}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    q.confidence = a.confidence;
    q.time_zone = a.time_zone.clone();
    // a breakdown by persona gets the project's personas where it runs (AnalysisRequest::resolve)
    let r: ScoresResult = analyze(&a.target, AnalysisRequest::Scores(q.clone()))?;
    if printed_as_json(a.target.format, &r)? {
        return Ok(());
    }
    let pct = |v: f64| format!("{:.1} %", 100.0 * v);
    let row = |x: &itinera_engine::scores::ScoreRow| {
        let (score, ci) = match (&x.nps, &x.good_share) {
            (Some(n), _) => (
                format!("{:.1}", n.nps),
                format!("{:.1} … {:.1}", n.ci_low, n.ci_high),
            ),
            (None, Some(g)) => (
                pct(g.share),
                format!("{} … {}", pct(g.ci_low), pct(g.ci_high)),
            ),
            _ => (String::new(), String::new()),
        };
        json!({
            "group": x.key.clone().unwrap_or_else(|| "all".into()),
            "n": x.n,
            "score": score,
            "interval": ci,
            "mean": x.mean,
            "emotion": x.emotion,
        })
    };
    let rows: Vec<_> = std::iter::once(&r.overall)
        .chain(&r.groups)
        .map(row)
        .collect();
    print_records(
        a.target.format,
        &["group", "n", "score", "interval", "mean", "emotion"],
        &rows,
    )?;
    if a.target.format == Format::Table {
        println!(
            "{} ({:.0} % intervals); {} answers not counted (no score or outside the scale)",
            r.definition,
            100.0 * r.confidence,
            r.rejected
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct PromotersArgs {
    /// Only answers to this survey.
    #[arg(long)]
    survey: Option<String>,
    /// The trait recording consent to be contacted.
    #[arg(long, default_value = "traits.marketing_consent")]
    consent_property: String,
    /// Only promoters whose consent trait is true, yes or 1.
    #[arg(long)]
    require_consent: bool,
    /// Contact traits to export (repeatable; default traits.email and traits.name).
    #[arg(long = "contact")]
    contact: Vec<String>,
    #[command(flatten)]
    range: DateRange,
    #[command(flatten)]
    target: Target,
}

pub fn run_promoters(a: &PromotersArgs) -> CliResult {
    let mut q = PromotersQuery {
        survey_id: a.survey.clone(),
        consent_property: a.consent_property.clone(),
        require_consent: a.require_consent,
        from_ms: a.range.start_ms()?,
        to_ms: a.range.end_ms()?,
        ..Default::default()
    };
    if !a.contact.is_empty() {
        q.contact_properties = a.contact.clone();
    }
    let r: PromotersResult = analyze(&a.target, AnalysisRequest::Promoters(q.clone()))?;
    if printed_as_json(a.target.format, &r)? {
        return Ok(());
    }
    let mut cols = vec![
        "person".to_string(),
        "score".into(),
        "answered_at".into(),
        "consent".into(),
    ];
    cols.extend(q.contact_properties.iter().cloned());
    let rows: Vec<_> = r
        .promoters
        .iter()
        .map(|p| {
            let mut o = serde_json::Map::new();
            o.insert("person".into(), json!(p.person));
            o.insert("score".into(), json!(p.score));
            let at = chrono::DateTime::from_timestamp_millis(p.answered_at_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            o.insert("answered_at".into(), json!(at));
            o.insert("consent".into(), json!(p.consent));
            for k in &q.contact_properties {
                o.insert(k.clone(), json!(p.contact.get(k)));
            }
            serde_json::Value::Object(o)
        })
        .collect();
    let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
    print_records(a.target.format, &cols, &rows)
}

#[derive(Args)]
pub struct CommentsArgs {
    /// nps, csat or ces.
    #[arg(long)]
    kind: String,
    /// Words that must all occur in the comment.
    #[arg(long)]
    search: Option<String>,
    /// Group by stage, touchpoint, channel, persona, account, survey, day, week or month.
    #[arg(long)]
    by: Option<String>,
    #[arg(long)]
    survey: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    range: DateRange,
    #[command(flatten)]
    target: Target,
}

pub fn run_comments(a: &CommentsArgs) -> CliResult {
    let scores = answers_query(&a.kind, a.by.as_deref(), a.survey.as_deref(), &a.range)?;
    let q = CommentsQuery {
        scores,
        comment_property: "properties.comment".into(),
        search: a.search.clone(),
        limit: a.limit,
    };
    let r: CommentsResult = analyze(&a.target, AnalysisRequest::Comments(q.clone()))?;
    if printed_as_json(a.target.format, &r)? {
        return Ok(());
    }
    print_records(
        a.target.format,
        &["person", "score", "group", "sentiment", "comment"],
        &r.comments,
    )?;
    if a.target.format == Format::Table {
        print_records(
            a.target.format,
            &["term", "comments", "mean_score", "mean_sentiment"],
            &r.keywords,
        )?;
        println!("{} comments; {}", r.n, r.definition);
    }
    Ok(())
}

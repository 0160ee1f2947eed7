//! `itinera query …`: analyses on a data directory, or on a running server with a read token.
//! Both paths build the same backend-neutral query; the JSON printed is the API's answer.

use crate::output::{print_records, printed_as_json, Format};
use crate::{load_config, open_data_for_reading, CliResult, DataArgs, ProjectArg};
use clap::{Args, Subcommand};
use itinera_app::breakdown::BreakdownBy;
use itinera_app::{AnalysisRequest, App, PersonStagesRequest, Population};
use itinera_client::Client;
use itinera_engine::funnel::{
    Attribution, Breakdown, BreakdownField, CohortOutcome, CohortRequest, Exclusion,
};
use itinera_engine::journey::CountBy;
use itinera_engine::paths::CleaningRule;
use itinera_engine::stages::ModelRef;
use itinera_engine::{
    EventSelector, FunnelOrder, FunnelQuery, FunnelResult, FunnelStep, PathQuery, PathResult,
    PersonJourney, RetentionQuery, RetentionResult, Span, StageFunnelQuery, StageFunnelResult,
    StageModel,
};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::path::PathBuf;

pub(crate) mod value;

#[derive(Subcommand)]
pub enum QueryCommand {
    /// Event funnel: persons (or accounts) reaching each step, conversion, time between steps.
    Funnel(Box<FunnelArgs>),
    /// Retention: cohorts by the period of their first cohort touchpoint, and how many came back
    /// in each later period.
    Retention(Box<RetentionArgs>),
    /// Stage funnel of a stage model (buyer journey, customer journey, seven-stage, AIDA or your
    /// own), or one person's stage history with `--person`.
    Stages(Box<StagesArgs>),
    /// Paths and flows: forward from a touchpoint, backward from one, or between two; top
    /// complete paths, or Sankey links with `--sankey`.
    Paths(Box<PathsArgs>),
    /// Attribution: credit for conversions and revenue to channels, touchpoints or events, all
    /// models side by side (first/last touch, last non-direct, linear, time decay, position
    /// based, Markov, Shapley); on stored journeys or a path table (`--paths`).
    Attribution(Box<value::AttributionArgs>),
    /// Customer lifetime value: revenue to date, and BG/NBD + Gamma-Gamma predictions
    /// (purchases, probability alive, spend, discounted CLV) per customer.
    Clv(Box<value::ClvArgs>),
    /// B2B buying groups: per account the roles engaged and missing, stage, deal status, time
    /// to close and share of personal contact; won, lost and open accounts compared.
    Accounts(Box<value::AccountsArgs>),
    /// The advocacy loop: promoters → referrals → referred customers, viral coefficient,
    /// referred vs other customers, NPS of referrers.
    Advocacy(Box<value::AdvocacyArgs>),
    /// Orders and revenue per period and currency, refunds subtracted.
    Revenue(Box<value::RevenueArgs>),
    /// The buyer → customer handoff: new customers who got the onboarding touch, how soon, and
    /// their retention and repeat purchases with and without it.
    Handoff(Box<value::HandoffArgs>),
    /// Sizes of the saved segments and personas.
    Segments(Box<SegmentsArgs>),
    /// Any analysis once per persona or per saved segment: `--query '{"funnel": {…}}'` (the
    /// body of `POST /api/v1/queries`); prints JSON.
    Breakdown(Box<BreakdownArgs>),
    /// NPS, CSAT or CES with n, interval, distribution and emotion value; per stage, touchpoint,
    /// channel, persona, account, survey or period.
    Scores(Box<value::ScoresArgs>),
    /// Promoters (latest NPS answer 9-10) with consent and contact traits, for advocacy and
    /// referral programmes (`--format csv` to export).
    Promoters(Box<value::PromotersArgs>),
    /// Open answers: search, sentiment, keywords.
    Comments(Box<value::CommentsArgs>),
}

#[derive(Args)]
pub struct BreakdownArgs {
    /// persona or segment.
    #[arg(long)]
    by: String,
    /// The analysis as JSON, or `@FILE`: `{"stages": {"model": "customer-journey"}}`.
    #[arg(long)]
    query: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct SegmentsArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct PathsArgs {
    /// Forward from the first touchpoint matching this selector.
    #[arg(long)]
    start: Option<String>,
    /// Backward from the last touchpoint matching this (with --start: paths between the two).
    #[arg(long)]
    end: Option<String>,
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// What a node names: event, touchpoint or channel.
    #[arg(long, default_value = "event")]
    node: String,
    /// Count sessions split at gaps this long (e.g. 30m) instead of persons.
    #[arg(long)]
    session_gap: Option<String>,
    /// Keep repeats of the same node in a row.
    #[arg(long)]
    keep_repeats: bool,
    /// Group node names: `REGEX=>REPLACEMENT` (repeatable), e.g. `^/products/.*=>/products/:id`.
    #[arg(long = "clean")]
    clean: Vec<String>,
    #[arg(long, default_value_t = 1)]
    min_weight: u64,
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Show, for each top path, the share who later did this.
    #[arg(long)]
    conversion: Option<String>,
    /// Print the Sankey links instead of the top paths.
    #[arg(long)]
    sankey: bool,
    #[command(flatten)]
    range: DateRange,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct StagesArgs {
    /// A built-in model (buyer-journey, customer-journey, seven-stage, aida) or a TOML/JSON file.
    #[arg(long, default_value = "customer-journey")]
    model: String,
    /// Break down by `channel` (of the first touchpoint) or `b2b` (B2B vs B2C).
    #[arg(long)]
    breakdown: Option<String>,
    #[command(flatten)]
    range: DateRange,
    /// Print this person's current stage and stage history instead.
    #[arg(long)]
    person: Option<String>,
    /// Also stage B2B accounts by their buying group.
    #[arg(long)]
    by_account: bool,
    /// With --by-account: an account is in a stage when this share of its members reached it
    /// (0: any member).
    #[arg(long, default_value_t = 0.0)]
    min_share: f64,
    /// With --by-account: an account is in a stage only when a member with this role
    /// (`traits.role`, their latest value) reached it, e.g. `decision_maker`.
    #[arg(long)]
    required_role: Option<String>,
    /// Also list each stage's top N touchpoints and channels (what persons did while in it).
    #[arg(long, default_value_t = 0)]
    top_touchpoints: u32,
    /// Print the model (built-in or the file, validated) instead.
    #[arg(long)]
    show_model: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct RetentionArgs {
    /// The touchpoint that puts a person in a cohort (selector, as for funnel steps).
    #[arg(long)]
    cohort: String,
    /// What counts as coming back (any touchpoint when omitted).
    #[arg(long = "return")]
    return_event: Option<String>,
    /// day, week (ISO, Monday first) or month.
    #[arg(long, default_value = "week")]
    period: String,
    #[arg(long, default_value_t = 12)]
    periods: usize,
    /// `on` (came back in period N) or `on_or_after` (in N or later).
    #[arg(long, default_value = "on")]
    mode: String,
    /// The project's time zone as an offset from UTC, e.g. +01:00 (default UTC).
    #[arg(long, default_value = "+00:00")]
    utc_offset: String,
    /// The project's time zone by IANA name, following daylight saving time (e.g.
    /// Europe/Berlin); wins over --utc-offset.
    #[arg(long)]
    time_zone: Option<String>,
    /// Purchases, for the repeat purchase rate (`none` to leave it out).
    #[arg(long, default_value = "Order Completed")]
    purchase: String,
    /// A member without a touchpoint in this span before the latest one has churned.
    #[arg(long, default_value = "30d")]
    churn_after: String,
    #[command(flatten)]
    range: DateRange,
    #[command(flatten)]
    target: Target,
}

/// Where a query runs: a local data directory, or a server.
#[derive(Args, Clone)]
pub struct Target {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    project: ProjectArg,
    /// Run on this server (e.g. http://127.0.0.1:8460) instead of a data directory.
    #[arg(long, env = "ITINERA_SERVER")]
    server: Option<String>,
    /// Read token for `--server` (`rt_…`).
    #[arg(long, env = "ITINERA_TOKEN")]
    token: Option<String>,
    /// Only the persons of this saved segment (`itinera segments set`).
    #[arg(long)]
    segment: Option<String>,
    /// Only the persons of this persona (`itinera personas set`; `(none)`: persons without one).
    #[arg(long)]
    persona: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Args)]
pub struct FunnelArgs {
    /// A step (repeat, in order): an event name, or `field=value` conditions joined by `&`,
    /// alternatives by `|` (fields: event, channel, touchpoint, kind; `field~regex`).
    #[arg(long = "step")]
    steps: Vec<String>,
    /// Longest time from step 1 to the last step.
    #[arg(long, default_value = "7d")]
    window: String,
    /// ordered, strict, unordered, strict_deduplication, strict_order, strict_increase.
    #[arg(long, default_value = "ordered")]
    order: String,
    /// Steps a person may skip (1-based, repeatable).
    #[arg(long = "optional")]
    optional: Vec<usize>,
    /// A per-step window, `STEP=DURATION`: longest time since the previous step (repeatable).
    #[arg(long = "step-window")]
    step_windows: Vec<String>,
    /// Exclusion: `SELECTOR` or `SELECTOR@FROM-TO` (steps, 1-based): breaks chains in between.
    #[arg(long = "exclude")]
    exclusions: Vec<String>,
    /// Count B2B accounts (all members' touchpoints together) instead of persons.
    #[arg(long)]
    by_account: bool,
    /// Break down by `channel`, `touchpoint`, `event` or a property (`properties.plan`,
    /// `campaign.name`), with `:first` (default), `:last` or `:step=N` attribution of the value.
    #[arg(long)]
    breakdown: Option<String>,
    #[command(flatten)]
    range: DateRange,
    /// List the persons who `reached:N` or `dropped:N` (step N) instead of the step table.
    #[arg(long)]
    cohort: Option<String>,
    /// With --cohort: save the persons as a segment of this name, e.g. to see what the people
    /// who dropped at a step did next (`itinera query paths --segment NAME`).
    #[arg(long, requires = "cohort")]
    save_segment: Option<String>,
    /// The whole query as JSON (the API's body); other query flags are ignored.
    #[arg(long)]
    query_file: Option<PathBuf>,
    #[command(flatten)]
    target: Target,
}

pub fn run(cmd: QueryCommand) -> CliResult {
    match cmd {
        QueryCommand::Funnel(args) => {
            let q = match &args.query_file {
                Some(p) => serde_json::from_str(
                    &std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
                )
                .map_err(|e| format!("{}: {e}", p.display()))?,
                None => funnel_query(&args)?,
            };
            let result: FunnelResult = analyze(&args.target, AnalysisRequest::Funnel(q.clone()))?;
            if let (Some(name), Some(persons)) = (&args.save_segment, &result.cohort) {
                save_person_segment(
                    &args.target,
                    name,
                    persons,
                    args.cohort.as_deref().unwrap_or(""),
                )?;
            }
            print_funnel(args.target.format, &result)
        }
        QueryCommand::Stages(args) => run_stages(&args),
        QueryCommand::Paths(args) => run_path_query(&args),
        QueryCommand::Attribution(args) => value::run_attribution(&args),
        QueryCommand::Clv(args) => value::run_clv(&args),
        QueryCommand::Accounts(args) => value::run_accounts(&args),
        QueryCommand::Advocacy(args) => value::run_advocacy(&args),
        QueryCommand::Revenue(args) => value::run_revenue(&args),
        QueryCommand::Handoff(args) => value::run_handoff(&args),
        QueryCommand::Segments(args) => run_segments_report(&args.target),
        QueryCommand::Breakdown(args) => run_breakdown(&args),
        QueryCommand::Scores(args) => value::run_scores(&args),
        QueryCommand::Promoters(args) => value::run_promoters(&args),
        QueryCommand::Comments(args) => value::run_comments(&args),
        QueryCommand::Retention(args) => {
            let q = retention_query(&args)?;
            let result: RetentionResult =
                analyze(&args.target, AnalysisRequest::Retention(q.clone()))?;
            print_retention(args.target.format, &result)
        }
    }
}

fn enum_arg<T: DeserializeOwned>(flag: &str, value: &str, allowed: &str) -> CliResult<T> {
    serde_json::from_value(serde_json::Value::String(value.replace('-', "_")))
        .map_err(|_| format!("--{flag}: `{value}` is not one of {allowed}").into())
}

/// `+01:00`, `-05:30`, `Z` → minutes east of UTC.
fn parse_offset(s: &str) -> CliResult<i32> {
    if s == "Z" || s == "UTC" {
        return Ok(0);
    }
    let bad = || format!("--utc-offset: `{s}` is not an offset like +01:00");
    let sign = match s.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(bad().into()),
    };
    let (h, m) = s[1..].split_once(':').unwrap_or((&s[1..], "0"));
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    Ok(sign * (h * 60 + m))
}

fn retention_query(a: &RetentionArgs) -> CliResult<RetentionQuery> {
    Ok(RetentionQuery {
        cohort: EventSelector::parse(&a.cohort).map_err(|e| format!("--cohort: {e}"))?,
        return_event: a
            .return_event
            .as_deref()
            .map(EventSelector::parse)
            .transpose()
            .map_err(|e| format!("--return: {e}"))?,
        period: enum_arg("period", &a.period, "day, week, month")?,
        periods: a.periods,
        mode: enum_arg("mode", &a.mode, "on, on_or_after")?,
        from_ms: a.range.start_ms()?,
        to_ms: a.range.end_ms()?,
        purchase: (a.purchase != "none")
            .then(|| EventSelector::parse(&a.purchase))
            .transpose()
            .map_err(|e| format!("--purchase: {e}"))?,
        churn_after: span("churn-after", &a.churn_after)?,
        utc_offset_minutes: parse_offset(&a.utc_offset)?,
        time_zone: a.time_zone.clone(),
    })
}

fn print_retention(format: Format, r: &RetentionResult) -> CliResult {
    if printed_as_json(format, r)? {
        return Ok(());
    }
    let periods = r.overall.len();
    let mut cols: Vec<String> = vec!["cohort".into(), "size".into()];
    cols.extend((1..periods).map(|p| format!("{p}")));
    let cell = |count: u64, rate: Option<f64>| {
        if format == Format::Csv {
            json!(count)
        } else {
            json!(rate
                .map(|x| format!("{:.1}%", x * 100.0))
                .unwrap_or_default())
        }
    };
    let mut rows: Vec<serde_json::Value> = r
        .cohorts
        .iter()
        .map(|c| {
            let mut o = serde_json::Map::new();
            o.insert("cohort".into(), json!(c.cohort));
            o.insert("size".into(), json!(c.size));
            for p in 1..periods {
                o.insert(format!("{p}"), cell(c.returned[p], c.rates[p]));
            }
            serde_json::Value::Object(o)
        })
        .collect();
    if format == Format::Table {
        let mut o = serde_json::Map::new();
        o.insert("cohort".into(), json!("all"));
        o.insert(
            "size".into(),
            json!(r.cohorts.iter().map(|c| c.size).sum::<u64>()),
        );
        for p in 1..periods {
            o.insert(format!("{p}"), pct(r.overall[p]));
        }
        rows.push(serde_json::Value::Object(o));
    }
    let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
    print_records(format, &cols, &rows)?;
    if format == Format::Table {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} %", 100.0 * v));
        println!(
            "repeat purchase rate {} ({} of {} customers with 2+ purchases); churn rate {} ({} members without a touchpoint in the last churn period)",
            pct(r.repeat_purchase_rate),
            r.repeat_customers,
            r.customers,
            pct(r.churn_rate),
            r.churned
        );
    }
    Ok(())
}

impl Target {
    /// The population the query covers (`--segment`, `--persona`).
    fn population(&self) -> Population {
        Population {
            segment: self.segment.clone(),
            persona: self.persona.clone(),
        }
    }

    /// The typed client of `--server`, with `--token`.
    fn client(&self) -> CliResult<Option<Client>> {
        let Some(server) = &self.server else {
            return Ok(None);
        };
        let token = self
            .token
            .as_deref()
            .ok_or("--server needs --token (a read token, rt_…)")?;
        Ok(Some(Client::new(server, token)))
    }

    /// The application over `--data`, opened for reading.
    fn local_app(&self) -> CliResult<std::sync::Arc<App>> {
        let cfg = load_config(&self.data, None)?;
        let dir = open_data_for_reading(&cfg)?;
        Ok(App::new(cfg, dir))
    }
}

/// Runs an analysis on the data directory, or on the server with `--server`; the same request
/// and the same answer either way.
/// Warnings of the answers this run printed, shown under the output by `main`.
static WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The warnings collected so far, as lines (`steps[1].match: no stored touchpoint …`).
pub fn take_warnings() -> Vec<String> {
    std::mem::take(&mut *WARNINGS.lock().unwrap_or_else(|e| e.into_inner()))
}

fn note_warnings(answer: &serde_json::Value) {
    if let Some(list) = answer.get("warnings").and_then(|w| w.as_array()) {
        let mut all = WARNINGS.lock().unwrap_or_else(|e| e.into_inner());
        for w in list {
            all.push(format!(
                "{}: {}",
                w["field"].as_str().unwrap_or("query"),
                w["message"].as_str().unwrap_or("")
            ));
        }
    }
}

fn analyze<R: DeserializeOwned>(target: &Target, request: AnalysisRequest) -> CliResult<R> {
    let population = target.population();
    let answer: serde_json::Value = match target.client()? {
        Some(client) => client.analysis(&request, &population)?,
        None => target.local_app()?.run_analysis(
            &target.project.project,
            &request,
            &population,
            &Default::default(),
        )?,
    };
    note_warnings(&answer);
    Ok(serde_json::from_value(answer)?)
}

/// `--from` / `--to`: what the range bounds depends on the analysis (chain starts, cohort
/// entries, touchpoints); see each command's help.
#[derive(Args, Clone)]
pub struct DateRange {
    /// On or after this date (YYYY-MM-DD, midnight UTC, or RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Before this date.
    #[arg(long)]
    to: Option<String>,
}

impl DateRange {
    fn start_ms(&self) -> CliResult<Option<i64>> {
        self.from
            .as_deref()
            .map(|d| parse_date("from", d))
            .transpose()
    }

    fn end_ms(&self) -> CliResult<Option<i64>> {
        self.to.as_deref().map(|d| parse_date("to", d)).transpose()
    }
}

/// Parses `YYYY-MM-DD` (midnight UTC) or RFC 3339 into ms since the epoch.
pub fn parse_date(flag: &str, s: &str) -> CliResult<i64> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|_| format!("--{flag}: `{s}` is not a date (YYYY-MM-DD or RFC 3339)").into())
}

fn span(flag: &str, s: &str) -> CliResult<Span> {
    Span::parse(s).map_err(|e| format!("--{flag}: {e}").into())
}

fn funnel_query(a: &FunnelArgs) -> CliResult<FunnelQuery> {
    if a.steps.is_empty() {
        return Err("give the steps with --step (at least one)".into());
    }
    let mut steps = Vec::new();
    for s in &a.steps {
        steps.push(FunnelStep::new(
            EventSelector::parse(s).map_err(|e| format!("--step {s}: {e}"))?,
        ));
    }
    for k in &a.optional {
        steps
            .get_mut(k.wrapping_sub(1))
            .ok_or_else(|| format!("--optional {k}: no such step"))?
            .optional = true;
    }
    for sw in &a.step_windows {
        let (k, d) = sw
            .split_once('=')
            .ok_or_else(|| format!("--step-window {sw}: expected STEP=DURATION"))?;
        let k: usize = k
            .trim()
            .parse()
            .map_err(|_| format!("--step-window {sw}: `{k}` is not a step number"))?;
        steps
            .get_mut(k.wrapping_sub(1))
            .ok_or_else(|| format!("--step-window {sw}: no step {k}"))?
            .within = Some(span("step-window", d)?);
    }
    let mut exclusions = Vec::new();
    for e in &a.exclusions {
        let (sel, range) = match e.rsplit_once('@') {
            Some((sel, r)) if r.contains('-') => (sel, Some(r)),
            _ => (e.as_str(), None),
        };
        let (from_step, to_step) = match range {
            Some(r) => {
                let (f, t) = r.split_once('-').unwrap();
                let num = |x: &str| {
                    x.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("--exclude {e}: `{x}` is not a step number"))
                };
                (Some(num(f)?), Some(num(t)?))
            }
            None => (None, None),
        };
        exclusions.push(Exclusion {
            selector: EventSelector::parse(sel).map_err(|err| format!("--exclude {e}: {err}"))?,
            from_step,
            to_step,
        });
    }
    let breakdown = match &a.breakdown {
        None => None,
        Some(b) => {
            let (field, attr) = b.split_once(':').unwrap_or((b, "first"));
            let mut property = None;
            let field = match field {
                "channel" => BreakdownField::Channel,
                "touchpoint" => BreakdownField::Touchpoint,
                "event" => BreakdownField::Event,
                p if itinera_engine::selector::is_prop_key(p) => {
                    property = Some(p.to_string());
                    BreakdownField::Property
                }
                other => {
                    return Err(format!(
                        "--breakdown: `{other}` is not channel, touchpoint, event or a property (properties.NAME, traits.NAME, campaign.NAME)"
                    )
                    .into())
                }
            };
            let attribution = match attr {
                "first" => Attribution::FirstTouch,
                "last" => Attribution::LastTouch,
                s if s.starts_with("step=") => Attribution::Step(
                    s[5..]
                        .parse()
                        .map_err(|_| format!("--breakdown: `{s}` needs a step number"))?,
                ),
                other => {
                    return Err(format!(
                        "--breakdown: attribution `{other}` is not first, last or step=N"
                    )
                    .into())
                }
            };
            Some(Breakdown {
                field,
                attribution,
                property,
            })
        }
    };
    let cohort = match &a.cohort {
        None => None,
        Some(c) => {
            let (o, k) = c
                .split_once(':')
                .ok_or_else(|| format!("--cohort {c}: expected reached:N or dropped:N"))?;
            let outcome = match o {
                "reached" => CohortOutcome::Reached,
                "dropped" => CohortOutcome::Dropped,
                _ => return Err(format!("--cohort {c}: expected reached:N or dropped:N").into()),
            };
            let step = k
                .parse()
                .map_err(|_| format!("--cohort {c}: `{k}` is not a step number"))?;
            Some(CohortRequest { step, outcome })
        }
    };
    Ok(FunnelQuery {
        steps,
        window: span("window", &a.window)?,
        order: FunnelOrder::parse(&a.order).map_err(|e| format!("--order: {e}"))?,
        exclusions,
        count_by: if a.by_account {
            CountBy::Account
        } else {
            CountBy::Person
        },
        from_ms: a.range.start_ms()?,
        to_ms: a.range.end_ms()?,
        breakdown,
        cohort,
    })
}

fn pct(v: Option<f64>) -> serde_json::Value {
    v.map(|x| json!(format!("{:.1}%", x * 100.0)))
        .unwrap_or(serde_json::Value::Null)
}

fn duration(v: Option<f64>) -> serde_json::Value {
    v.map(|s| json!(human_duration(s)))
        .unwrap_or(serde_json::Value::Null)
}

/// Seconds in the unit a person reads them in: `32.9 d`, `5.2 h`, `21 min`, `45 s`, `0.8 s`
/// (tables only; JSON and CSV keep the exact seconds).
pub(crate) fn human_duration(seconds: f64) -> String {
    const MIN: f64 = 60.0;
    const HOUR: f64 = 3600.0;
    const DAY: f64 = 86_400.0;
    match seconds.abs() {
        s if s >= DAY => format!("{:.1} d", seconds / DAY),
        s if s >= HOUR => format!("{:.1} h", seconds / HOUR),
        s if s >= MIN => format!("{:.0} min", seconds / MIN),
        s if s >= 10.0 => format!("{seconds:.0} s"),
        _ => format!("{seconds:.1} s"),
    }
}

fn print_funnel(format: Format, r: &FunnelResult) -> CliResult {
    if printed_as_json(format, r)? {
        return Ok(());
    }
    if let Some(cohort) = &r.cohort {
        let rows: Vec<_> = cohort.iter().map(|p| json!({ "id": p })).collect();
        return print_records(format, &["id"], &rows);
    }
    if !r.breakdown.is_empty() {
        let mut cols: Vec<String> = vec!["value".into()];
        cols.extend(r.steps.iter().map(|s| format!("{}. {}", s.step, s.name)));
        cols.push("conversion".into());
        let rows: Vec<_> = r
            .breakdown
            .iter()
            .map(|b| {
                let mut o = serde_json::Map::new();
                o.insert("value".into(), json!(b.value));
                for (s, c) in r.steps.iter().zip(&b.counts) {
                    o.insert(format!("{}. {}", s.step, s.name), json!(c));
                }
                o.insert("conversion".into(), pct(b.conversion));
                serde_json::Value::Object(o)
            })
            .collect();
        let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
        return print_records(format, &cols, &rows);
    }
    let rows: Vec<_> = r
        .steps
        .iter()
        .map(|s| {
            json!({
                "step": s.step,
                "name": if s.optional { format!("{} (optional)", s.name) } else { s.name.clone() },
                "count": s.count,
                "dropped": s.dropped,
                "from previous": if format == Format::Csv { json!(s.conversion_from_previous) } else { pct(s.conversion_from_previous) },
                "from first": if format == Format::Csv { json!(s.conversion_from_first) } else { pct(s.conversion_from_first) },
                "median time": if format == Format::Csv { json!(s.median_seconds_from_previous) } else { duration(s.median_seconds_from_previous) },
            })
        })
        .collect();
    print_records(
        format,
        &[
            "step",
            "name",
            "count",
            "dropped",
            "from previous",
            "from first",
            "median time",
        ],
        &rows,
    )
}

/// A built-in model name, or a model file (TOML or JSON by extension).
/// A built-in model, a model file, or a saved model (resolved here on a data directory, by the
/// server otherwise).
pub(crate) fn model_ref(arg: &str, target: &Target) -> CliResult<ModelRef> {
    if StageModel::BUILTIN.contains(&arg) {
        return Ok(ModelRef::Builtin(arg.to_string()));
    }
    let path = std::path::Path::new(arg);
    if !path.exists() {
        let named = ModelRef::Builtin(arg.to_string());
        if target.server.is_some() {
            return Ok(named);
        }
        let dir = open_data_for_reading(&load_config(&target.data, None)?)?;
        let resolved = itinera_app::definitions::resolve_model(
            &dir.meta.lock(),
            &target.project.project,
            &named,
        )
        .map_err(|e| format!("--model: {e}"))?;
        return Ok(resolved);
    }
    model_file(arg)
}

/// A model from a TOML or JSON file.
pub(crate) fn model_file(arg: &str) -> CliResult<ModelRef> {
    let text = std::fs::read_to_string(arg).map_err(|e| format!("{arg}: {e}"))?;
    let model: StageModel = if arg.ends_with(".toml") {
        toml::from_str(&text).map_err(|e| format!("{arg}: {e}"))?
    } else {
        serde_json::from_str(&text).map_err(|e| format!("{arg}: {e}"))?
    };
    model.validate().map_err(|e| format!("{arg}: {e}"))?;
    Ok(ModelRef::Inline(model))
}

fn run_stages(a: &StagesArgs) -> CliResult {
    let model = model_ref(&a.model, &a.target)?;
    let format = a.target.format;
    if a.show_model {
        let m = model.resolve()?;
        println!("{}", serde_json::to_string_pretty(&m)?);
        return Ok(());
    }
    if let Some(id) = &a.person {
        let q = PersonStagesRequest {
            model: model.clone(),
            person: id.clone(),
        };
        let r: PersonJourney = match a.target.client()? {
            Some(client) => client.person_stages(&q)?,
            None => a
                .target
                .local_app()?
                .person_stages(&a.target.project.project, &q)?,
        };
        if printed_as_json(format, &r)? {
            return Ok(());
        }
        println!(
            "{}: current stage {}, furthest {}",
            r.person,
            r.current_stage.as_deref().unwrap_or("-"),
            r.furthest_stage.as_deref().unwrap_or("-")
        );
        let rows: Vec<_> = r
            .history
            .iter()
            .map(|v| {
                json!({
                    "stage": v.stage,
                    "entered": itinera_core::message::format_ts(v.entered_ms),
                    "exited": v.exited_ms.map(itinera_core::message::format_ts),
                })
            })
            .collect();
        return print_records(format, &["stage", "entered", "exited"], &rows);
    }
    let breakdown = match a.breakdown.as_deref() {
        None => None,
        Some(b) => Some(enum_arg("breakdown", b, "channel, b2b")?),
    };
    let q = StageFunnelQuery {
        model,
        from_ms: a.range.start_ms()?,
        to_ms: a.range.end_ms()?,
        breakdown,
        accounts: a
            .by_account
            .then(|| itinera_engine::stages::AccountStageRule {
                min_share: a.min_share,
                required_role: a.required_role.clone(),
                ..itinera_engine::stages::AccountStageRule::any_member()
            }),
        top_touchpoints: a.top_touchpoints,
    };
    let r: StageFunnelResult = analyze(&a.target, AnalysisRequest::Stages(q.clone()))?;
    if printed_as_json(format, &r)? {
        return Ok(());
    }
    let csv = format == Format::Csv;
    let p = |v: Option<f64>| if csv { json!(v) } else { pct(v) };
    let d = |v: Option<f64>| if csv { json!(v) } else { duration(v) };
    let mut rows: Vec<serde_json::Value> = r
        .stages
        .iter()
        .map(|s| {
            json!({
                "stage": s.stage, "entered": s.entered, "reached": s.reached, "dropped": s.dropped,
                "next stage": p(s.next_stage_conversion), "cumulative": p(s.cumulative_conversion),
                "current": s.current, "median time in stage": d(s.median_seconds_in_stage),
            })
        })
        .collect();
    for b in &r.breakdown {
        let mut o = serde_json::Map::new();
        o.insert("stage".into(), json!(format!("[{}]", b.value)));
        o.insert("reached".into(), json!(b.reached.first()));
        o.insert(
            "cumulative".into(),
            p(b.reached
                .last()
                .and_then(|l| itinera_engine::stats::ratio(*l, b.reached[0]))),
        );
        rows.push(serde_json::Value::Object(o));
    }
    if let Some(acc) = &r.accounts {
        for (s, reached) in r.stages.iter().zip(&acc.reached) {
            let mut o = serde_json::Map::new();
            o.insert("stage".into(), json!(format!("{} [accounts]", s.stage)));
            o.insert("reached".into(), json!(reached));
            o.insert(
                "cumulative".into(),
                p(itinera_engine::stats::ratio(*reached, acc.reached[0])),
            );
            rows.push(serde_json::Value::Object(o));
        }
    }
    if !csv {
        println!(
            "{} ({} persons, {} customers, {} churned{})",
            r.model.name,
            r.persons,
            r.customers,
            r.churned,
            r.accounts
                .as_ref()
                .map(|a| format!(", {} accounts", a.accounts))
                .unwrap_or_default()
        );
    }
    print_records(
        format,
        &[
            "stage",
            "entered",
            "reached",
            "dropped",
            "next stage",
            "cumulative",
            "current",
            "median time in stage",
        ],
        &rows,
    )?;
    if !csv {
        if let Some(c) = r.model.churn_after {
            println!(
                "churned: persons without a touchpoint in the {c} before the data's latest touchpoint; current: the stage of a person's latest matching touchpoint"
            );
        }
    }
    if a.top_touchpoints == 0 {
        return Ok(());
    }
    let touches: Vec<serde_json::Value> = r
        .stages
        .iter()
        .flat_map(|s| {
            let of = |what: &'static str, list: &[itinera_engine::stages::StageTouch]| {
                list.iter()
                    .map(|t| {
                        json!({"stage": s.stage, "what": what, "key": t.key,
                               "persons": t.persons, "share": p(t.share)})
                    })
                    .collect::<Vec<_>>()
            };
            let mut rows = of("touchpoint", &s.touchpoints);
            rows.extend(of("channel", &s.channels));
            rows
        })
        .collect();
    if !csv {
        println!("\ntop touchpoints and channels per stage (persons while in the stage, share of those entering)");
    }
    print_records(
        format,
        &["stage", "what", "key", "persons", "share"],
        &touches,
    )
}

fn selector_arg(flag: &str, v: &Option<String>) -> CliResult<Option<EventSelector>> {
    v.as_deref()
        .map(EventSelector::parse)
        .transpose()
        .map_err(|e| format!("--{flag}: {e}").into())
}

fn run_path_query(a: &PathsArgs) -> CliResult {
    let clean = a
        .clean
        .iter()
        .map(|c| {
            c.split_once("=>")
                .map(|(r, p)| CleaningRule {
                    regex: r.to_string(),
                    replace: p.to_string(),
                })
                .ok_or_else(|| format!("--clean {c}: expected REGEX=>REPLACEMENT"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let q = PathQuery {
        start: selector_arg("start", &a.start)?,
        end: selector_arg("end", &a.end)?,
        steps: a.steps,
        node: enum_arg("node", &a.node, "event, touchpoint, channel")?,
        session_gap: a
            .session_gap
            .as_deref()
            .map(|g| span("session-gap", g))
            .transpose()?,
        collapse_repeats: !a.keep_repeats,
        clean,
        min_weight: a.min_weight,
        top: a.top,
        conversion: selector_arg("conversion", &a.conversion)?,
        from_ms: a.range.start_ms()?,
        to_ms: a.range.end_ms()?,
    };
    let r: PathResult = analyze(&a.target, AnalysisRequest::Paths(q.clone()))?;
    let format = a.target.format;
    if printed_as_json(format, &r)? {
        return Ok(());
    }
    if a.sankey {
        let rows: Vec<_> = r
            .links
            .iter()
            .map(|l| json!({"source": l.source, "target": l.target, "value": l.value}))
            .collect();
        return print_records(format, &["source", "target", "value"], &rows);
    }
    let rows: Vec<_> = r
        .top_paths
        .iter()
        .map(|p| {
            json!({
                "path": p.path.join(" > "),
                "count": p.count,
                "share": pct(itinera_engine::stats::ratio(p.count, r.paths_counted)),
                "conversion": pct(p.conversion),
            })
        })
        .collect();
    let cols: &[&str] = if q.conversion.is_some() {
        &["path", "count", "share", "conversion"]
    } else {
        &["path", "count", "share"]
    };
    print_records(format, cols, &rows)
}

/// `itinera query segments`: persons per saved segment and per persona.
fn run_segments_report(target: &Target) -> CliResult {
    let r = match target.client()? {
        Some(client) => client.segments_report()?,
        None => target
            .local_app()?
            .segments_report(&target.project.project, &Default::default())?,
    };
    if printed_as_json(target.format, &r)? {
        return Ok(());
    }
    let share = |n: u64| {
        if r.persons > 0 {
            format!("{:.1} %", 100.0 * n as f64 / r.persons as f64)
        } else {
            String::new()
        }
    };
    let rows: Vec<_> =
        r.segments
            .iter()
            .map(|(n, c)| json!({"kind": "segment", "name": n, "persons": c, "share": share(*c)}))
            .chain(r.personas.iter().map(
                |(n, c)| json!({"kind": "persona", "name": n, "persons": c, "share": share(*c)}),
            ))
            .collect();
    print_records(target.format, &["kind", "name", "persons", "share"], &rows)
}

/// Saves `persons` as a person-list segment of the target's project (data directories only).
pub(crate) fn save_person_segment(
    target: &Target,
    name: &str,
    persons: &[String],
    what: &str,
) -> CliResult {
    if target.server.is_some() {
        return Err("--save-segment works on a data directory (use PUT /api/v1/segments/{name} on a server)".into());
    }
    itinera_app::definitions::valid_name(name)?;
    let def = itinera_engine::SegmentDef {
        name: name.to_string(),
        description: Some(what.to_string()),
        rule: itinera_engine::SegmentRule::Persons(persons.to_vec()),
    };
    let dir = open_data_for_reading(&load_config(&target.data, None)?)?;
    dir.meta.lock().put_definition(
        &target.project.project,
        itinera_meta::DefinitionKind::Segment,
        name,
        &serde_json::to_string(&def)?,
        0,
    )?;
    eprintln!("saved segment {name}: {} persons", persons.len());
    Ok(())
}

/// `itinera query breakdown`: the analysis once per persona or segment.
fn run_breakdown(a: &BreakdownArgs) -> CliResult {
    let text = match a.query.strip_prefix('@') {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("--query {p}: {e}"))?,
        None => a.query.clone(),
    };
    let request: AnalysisRequest =
        serde_json::from_str(&text).map_err(|e| format!("--query: {e}"))?;
    let by: BreakdownBy = a.by.parse()?;
    let result = match a.target.client()? {
        Some(client) => client.breakdown(by, &request)?,
        None => a.target.local_app()?.breakdown(
            &a.target.project.project,
            by,
            &request,
            &Default::default(),
        )?,
    };
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_in_the_unit_people_use() {
        assert_eq!(human_duration(2_839_814.0), "32.9 d");
        assert_eq!(human_duration(1_280.0), "21 min");
        assert_eq!(human_duration(28_625.0), "8.0 h");
        assert_eq!(human_duration(45.2), "45 s");
        assert_eq!(human_duration(0.84), "0.8 s");
    }
}

//! `itinera triggers …`: trigger rules on a data directory (with a server running, use its
//! API: `/api/v1/triggers`). Semantics: docs/triggers.md.

use crate::output::{print_records, printed_as_json, Format};
use crate::query::parse_date;
use crate::{load_config, open_data, open_data_for_reading, CliResult, DataArgs, ProjectArg};
use clap::Subcommand;
use itinera_app::{triggers, App};
use itinera_engine::triggers::TriggerRule;
use serde_json::json;

#[derive(Subcommand)]
pub enum TriggerCommand {
    /// The project's rules (webhook secrets shown as ***).
    List {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Create or replace a rule. The rule is JSON (or `@FILE`), e.g. `{"when": {"enters_stage":
    /// {"model": "customer-journey", "stage": "Decision"}}, "actions": [{"webhook": {"url":
    /// "https://hooks.example.com/welcome", "secret": "…"}}], "enabled": true}`.
    Set {
        name: String,
        #[arg(long)]
        rule: String,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Delete a rule; its actions not sent yet are cancelled.
    Delete {
        name: String,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Who a saved rule would have triggered over a past period (nothing is recorded or sent).
    DryRun {
        name: String,
        /// On or after this date (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// A rule's latest firings with each action's delivery state.
    Firings {
        name: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

fn app(data: &DataArgs, read_only: bool) -> CliResult<std::sync::Arc<App>> {
    let cfg = load_config(data, None)?;
    let dir = if read_only {
        open_data_for_reading(&cfg)?
    } else {
        open_data(&cfg)?
    };
    Ok(App::new(cfg, dir))
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or(ms.to_string(), |t| t.to_rfc3339())
}

pub fn run(cmd: TriggerCommand) -> CliResult {
    match cmd {
        TriggerCommand::List {
            data,
            project,
            format,
        } => {
            let rules = triggers::redacted(triggers::rules(&*app(&data, true)?, &project.project)?);
            if printed_as_json(format, &rules)? {
                return Ok(());
            }
            let rows: Vec<_> = rules
                .iter()
                .map(|r| {
                    json!({"name": r.name, "enabled": r.rule.enabled,
                           "since": r.rule.since_ms.map(time),
                           "when": serde_json::to_string(&r.rule.when).unwrap_or_default(),
                           "actions": r.rule.actions.len(), "holdout_percent": r.rule.holdout_percent})
                })
                .collect();
            print_records(
                format,
                &[
                    "name",
                    "enabled",
                    "since",
                    "when",
                    "actions",
                    "holdout_percent",
                ],
                &rows,
            )
        }
        TriggerCommand::Set {
            name,
            rule,
            data,
            project,
        } => {
            let text = match rule.strip_prefix('@') {
                Some(p) => std::fs::read_to_string(p).map_err(|e| format!("--rule {p}: {e}"))?,
                None => rule,
            };
            let rule: TriggerRule =
                serde_json::from_str(&text).map_err(|e| format!("--rule: {e}"))?;
            let saved = triggers::save(&*app(&data, false)?, &project.project, &name, rule)?;
            eprintln!(
                "saved trigger rule {name}: {}",
                match saved.since_ms {
                    Some(t) => format!("on, acting on touchpoints from {}", time(t)),
                    None => "off (\"enabled\": true switches it on)".into(),
                }
            );
            Ok(())
        }
        TriggerCommand::Delete {
            name,
            data,
            project,
        } => {
            triggers::delete(&*app(&data, false)?, &project.project, &name)?;
            eprintln!("deleted trigger rule {name}");
            Ok(())
        }
        TriggerCommand::DryRun {
            name,
            from,
            to,
            data,
            project,
            format,
        } => {
            let app = app(&data, true)?;
            let rule = triggers::rules(&app, &project.project)?
                .into_iter()
                .find(|r| r.name == name)
                .ok_or_else(|| format!("no trigger rule named {name}"))?
                .rule;
            let r = triggers::dry_run(
                &app,
                &project.project,
                &rule,
                parse_date("from", &from)?,
                parse_date("to", &to)?,
                &Default::default(),
            )?;
            if printed_as_json(format, &r)? {
                return Ok(());
            }
            println!("{} persons would have been triggered", r.persons);
            let rows: Vec<_> = r
                .sample
                .iter()
                .map(|p| json!({"person": p.person, "at": time(p.at_ms), "because": p.because}))
                .collect();
            print_records(format, &["person", "at", "because"], &rows)
        }
        TriggerCommand::Firings {
            name,
            limit,
            data,
            project,
            format,
        } => {
            let firings = triggers::firings(&*app(&data, true)?, &project.project, &name, limit)?;
            if printed_as_json(format, &firings)? {
                return Ok(());
            }
            let rows: Vec<_> = firings
                .iter()
                .map(|f| {
                    let states: Vec<String> = f.actions.iter().map(|a| a.status.clone()).collect();
                    json!({"person": f.person, "at": time(f.at_ms), "fired": time(f.fired_at_ms),
                           "because": f.because, "held_out": f.held_out, "actions": states.join(" ")})
                })
                .collect();
            print_records(
                format,
                &["person", "at", "fired", "because", "held_out", "actions"],
                &rows,
            )
        }
    }
}

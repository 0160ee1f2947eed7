//! `itinera surveys …`: survey definitions and signed links, on a data directory.

use crate::output::{print_records, printed_as_json, Format};
use crate::{load_config, open_data, CliResult, DataArgs, ProjectArg};
use clap::Subcommand;
use itinera_app::surveys::{load as load_from, signed_link, SurveyDef};
use serde_json::json;

#[derive(Subcommand)]
pub enum SurveyCommand {
    List {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Create or replace a survey. The definition is JSON (or `@FILE`), e.g.
    /// `{"kind": "nps", "question": {"en": "How likely…?", "de": "Wie wahrscheinlich…?"},
    /// "trigger": {"after": "Order Completed", "delay": "1d", "sample_rate": 0.5, "throttle": "90d"}}`.
    Set {
        id: String,
        #[arg(long)]
        definition: String,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
    },
    Delete {
        id: String,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// A signed link to the hosted survey page for one person (for e-mail or SMS).
    Link {
        id: String,
        #[arg(long)]
        person: String,
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// The server's public address.
        #[arg(long, default_value = "http://127.0.0.1:8460")]
        base_url: String,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
    },
}

pub fn run(cmd: SurveyCommand) -> CliResult {
    match cmd {
        SurveyCommand::List {
            data,
            project,
            format,
        } => {
            let dir = open_data(&load_config(&data, None)?)?;
            let surveys = load_from(&dir.meta.lock(), &project.project)?;
            if printed_as_json(format, &surveys)? {
                return Ok(());
            }
            let rows: Vec<_> = surveys
                .iter()
                .map(|s| {
                    json!({"id": s.id, "kind": s.kind, "question": s.question.get("en"),
                           "languages": s.question.keys().cloned().collect::<Vec<_>>().join(" ")})
                })
                .collect();
            print_records(format, &["id", "kind", "question", "languages"], &rows)
        }
        SurveyCommand::Set {
            id,
            definition,
            data,
            project,
        } => {
            let text = match definition.strip_prefix('@') {
                Some(p) => {
                    std::fs::read_to_string(p).map_err(|e| format!("--definition {p}: {e}"))?
                }
                None => definition,
            };
            let mut def: SurveyDef =
                serde_json::from_str(&text).map_err(|e| format!("--definition: {e}"))?;
            def.id = id.clone();
            let dir = open_data(&load_config(&data, None)?)?;
            itinera_app::surveys::save(&dir.meta.lock(), &project.project, &def)?;
            eprintln!("saved survey {id}");
            Ok(())
        }
        SurveyCommand::Delete { id, data, project } => crate::definitions::delete_saved(
            &data,
            &project,
            itinera_meta::DefinitionKind::Survey,
            &id,
        ),
        SurveyCommand::Link {
            id,
            person,
            days,
            base_url,
            data,
            project,
        } => {
            if days == 0 || days > 365 {
                return Err("--days: 1 to 365".into());
            }
            let dir = open_data(&load_config(&data, None)?)?;
            let meta = dir.meta.lock();
            if !load_from(&meta, &project.project)?
                .iter()
                .any(|s| s.id == id)
            {
                return Err(format!("no survey {id}").into());
            }
            let expires = itinera_app::now_ms() + days as i64 * 86_400_000;
            let path = signed_link(&meta, &project.project, &id, &person, expires)?;
            println!("{}{path}", base_url.trim_end_matches('/'));
            Ok(())
        }
    }
}

#[derive(Subcommand)]
pub enum CaseCommand {
    /// Cases, newest first.
    List {
        /// open, in_progress, waiting_on_customer or closed.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Change a case; fields left out stay as they are.
    Update {
        id: i64,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        root_cause: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

pub fn run_cases(cmd: CaseCommand) -> CliResult {
    let columns = [
        "id",
        "status",
        "person",
        "title",
        "assignee",
        "root_cause",
        "action",
        "follow_up",
        "updated_at",
    ];
    match cmd {
        CaseCommand::List {
            status,
            data,
            project,
            format,
        } => {
            let dir = open_data(&load_config(&data, None)?)?;
            let cases = dir.meta.lock().cases(&project.project, status.as_deref())?;
            print_records(format, &columns, &cases)
        }
        CaseCommand::Update {
            id,
            status,
            assignee,
            root_cause,
            action,
            data,
            project,
            format,
        } => {
            let dir = open_data(&load_config(&data, None)?)?;
            let update = itinera_meta::CaseUpdate {
                status,
                assignee,
                root_cause,
                action,
                follow_up: None,
            };
            let case = dir
                .meta
                .lock()
                .update_case(&project.project, id, &update)?
                .ok_or_else(|| format!("no case {id}"))?;
            print_records(format, &columns, &[case])
        }
    }
}

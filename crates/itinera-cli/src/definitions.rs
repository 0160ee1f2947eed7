//! `itinera segments …` and `itinera personas …`: saved rules in the project's metadata.

use crate::output::{print_records, printed_as_json, Format};
use crate::{load_config, open_data, CliResult, DataArgs, ProjectArg};
use clap::Subcommand;
use itinera_app::definitions;
use itinera_engine::segments::{CompiledRule, SegmentDef, SegmentRule};
use itinera_engine::JourneySource;
use itinera_meta::DefinitionKind;
use serde_json::json;

#[derive(Subcommand)]
pub enum DefinitionCommand {
    /// The saved definitions, in order.
    List {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Create or replace one. The rule is JSON (or `@FILE`), e.g.
    /// `{"all": [{"trait": {"key": "traits.plan", "is": "pro"}}, {"did": {"match": "Order Completed", "at_least": 2, "within": "90d"}}]}`.
    Set {
        name: String,
        #[arg(long)]
        rule: String,
        #[arg(long)]
        description: Option<String>,
        /// Personas: place in the list (the first matching persona wins).
        #[arg(long, default_value_t = 0)]
        position: i64,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
    },
    Delete {
        name: String,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
    },
}

pub fn run(kind: DefinitionKind, cmd: DefinitionCommand) -> CliResult {
    match cmd {
        DefinitionCommand::List {
            data,
            project,
            format,
        } => {
            let dir = open_data(&load_config(&data, None)?)?;
            let defs = definitions::load_segments(&dir.meta.lock(), &project.project, kind)?;
            let rows: Vec<_> = defs
                .iter()
                .map(|d| {
                    json!({
                        "name": d.name,
                        "description": d.description,
                        "rule": serde_json::to_string(&d.rule).expect("rules serialize"),
                    })
                })
                .collect();
            if printed_as_json(format, &defs)? {
                return Ok(());
            }
            print_records(format, &["name", "description", "rule"], &rows)
        }
        DefinitionCommand::Set {
            name,
            rule,
            description,
            position,
            data,
            project,
        } => {
            definitions::valid_name(&name)?;
            let text = match rule.strip_prefix('@') {
                Some(path) => {
                    std::fs::read_to_string(path).map_err(|e| format!("--rule {path}: {e}"))?
                }
                None => rule,
            };
            let rule: SegmentRule =
                serde_json::from_str(&text).map_err(|e| format!("--rule: {e}"))?;
            let dir = open_data(&load_config(&data, None)?)?;
            let store = dir.store(&project.project)?;
            store
                .view()
                .with_vocabulary(|v| CompiledRule::compile(&rule, v).map(|_| ()))?;
            let def = SegmentDef {
                name: name.clone(),
                description,
                rule,
            };
            dir.meta.lock().put_definition(
                &project.project,
                kind,
                &name,
                &serde_json::to_string(&def)?,
                position,
            )?;
            eprintln!("saved {kind} {name}");
            Ok(())
        }
        DefinitionCommand::Delete {
            name,
            data,
            project,
        } => delete_saved(&data, &project, kind, &name),
    }
}

/// Deletes a saved definition of `kind` (segment, persona, survey, stage model); an error names
/// it when there is none.
pub fn delete_saved(
    data: &DataArgs,
    project: &ProjectArg,
    kind: DefinitionKind,
    name: &str,
) -> CliResult {
    let dir = open_data(&load_config(data, None)?)?;
    definitions::delete(&dir.meta.lock(), &project.project, kind, name)?;
    eprintln!("deleted {kind} {name}");
    Ok(())
}

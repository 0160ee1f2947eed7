//! `itinera models …`: stage models saved in the project, usable as `--model NAME` (and by name
//! in the API) like the built-in ones.

use crate::output::{print_records, Format};
use crate::{load_config, open_data, CliResult, DataArgs, ProjectArg};
use clap::Subcommand;
use itinera_engine::stages::{ModelRef, StageModel};
use itinera_meta::DefinitionKind;

const STAGE_MODEL: DefinitionKind = DefinitionKind::StageModel;
use serde_json::json;

#[derive(Subcommand)]
pub enum ModelCommand {
    List {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Save a model from a TOML or JSON file (see docs/stages.md) under NAME.
    Set {
        name: String,
        #[arg(long)]
        file: String,
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

pub fn run(cmd: ModelCommand) -> CliResult {
    match cmd {
        ModelCommand::List {
            data,
            project,
            format,
        } => {
            let dir = open_data(&load_config(&data, None)?)?;
            let defs = dir.meta.lock().definitions(&project.project, STAGE_MODEL)?;
            let rows: Vec<_> = defs
                .iter()
                .map(|d| {
                    let m: Option<StageModel> = serde_json::from_str(&d.body).ok();
                    let stages = m
                        .map(|m| {
                            m.stages
                                .iter()
                                .map(|s| s.name.clone())
                                .collect::<Vec<_>>()
                                .join(" > ")
                        })
                        .unwrap_or_default();
                    json!({"name": d.name, "stages": stages, "updated_at": d.updated_at})
                })
                .collect();
            print_records(format, &["name", "stages", "updated_at"], &rows)
        }
        ModelCommand::Set {
            name,
            file,
            data,
            project,
        } => {
            if StageModel::BUILTIN.contains(&name.as_str()) {
                return Err(format!("`{name}` is a built-in model's name").into());
            }
            itinera_app::definitions::valid_name(&name)?;
            let ModelRef::Inline(model) = crate::query::model_file(&file)? else {
                unreachable!("a file gives a whole model")
            };
            let dir = open_data(&load_config(&data, None)?)?;
            dir.meta.lock().put_definition(
                &project.project,
                STAGE_MODEL,
                &name,
                &serde_json::to_string(&model)?,
                0,
            )?;
            eprintln!("saved model {name}");
            Ok(())
        }
        ModelCommand::Delete {
            name,
            data,
            project,
        } => crate::definitions::delete_saved(&data, &project, STAGE_MODEL, &name),
    }
}

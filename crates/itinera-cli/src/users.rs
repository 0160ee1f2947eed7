//! `itinera users …` (people who log in to the web app) and `itinera maps …` (journey maps:
//! list, export, import), on the same application layer as the server.

use crate::output::{print_records, Format};
use crate::{load_config, open_data, CliResult, DataArgs, ProjectArg};
use clap::Subcommand;
use itinera_app::App;
use itinera_engine::map::MapExport;
use itinera_meta::Role;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password is read from stdin (one line) or prompted for.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        data: DataArgs,
    },
    List {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Change a user's role (takes effect on their next request).
    SetRole {
        email: String,
        #[arg(value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Set a new password (read like `create`'s); ends the user's sessions.
    SetPassword {
        email: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Delete a user and end their sessions (the last admin stays).
    Delete {
        email: String,
        #[command(flatten)]
        data: DataArgs,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn app(data: &DataArgs) -> CliResult<Arc<App>> {
    let cfg = load_config(data, None)?;
    let dir = open_data(&cfg)?;
    Ok(App::new(cfg, dir))
}

/// A password from stdin when it is piped, else from a prompt that does not echo.
fn read_password() -> CliResult<String> {
    let stdin = std::io::stdin();
    let pw = if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            return Err("the two passwords differ".into());
        }
        first
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    Ok(pw)
}

pub fn run(cmd: UsersCommand) -> CliResult {
    match cmd {
        UsersCommand::Create { email, role, data } => {
            let app = app(&data)?;
            let pw = read_password()?;
            let u = app.create_user(&email, role, &pw)?;
            println!("created {} ({})", u.email, u.role.as_str());
        }
        UsersCommand::List { data, format } => {
            let users = app(&data)?.users()?;
            print_records(format, &["email", "role", "created_at"], &users)?;
        }
        UsersCommand::SetRole { email, role, data } => {
            let u = app(&data)?.set_role(&email, role)?;
            println!("{} is now {}", u.email, u.role.as_str());
        }
        UsersCommand::SetPassword { email, data } => {
            let app = app(&data)?;
            let pw = read_password()?;
            app.set_password(&email, &pw)?;
            println!("password of {email} changed; their sessions ended");
        }
        UsersCommand::Delete { email, data } => {
            app(&data)?.delete_user(&email)?;
            println!("deleted {email}");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum MapsCommand {
    List {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Write a map as JSON (docs/map-schema.json) to stdout or `--output`.
    Export {
        #[arg(default_value = itinera_app::maps::DEFAULT_MAP)]
        name: String,
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Save an exported map as a new version (under its own name, or `--name`).
    Import {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
    },
}

pub fn run_maps(cmd: MapsCommand) -> CliResult {
    match cmd {
        MapsCommand::List {
            data,
            project,
            format,
        } => {
            let maps = app(&data)?.maps(&project.project)?;
            print_records(format, &["name", "title", "version", "updated_at"], &maps)?;
        }
        MapsCommand::Export {
            name,
            output,
            data,
            project,
        } => {
            let export = app(&data)?.export_map(&project.project, &name)?;
            let text = serde_json::to_string_pretty(&export)? + "\n";
            match output {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?
                }
                None => print!("{text}"),
            }
        }
        MapsCommand::Import {
            file,
            name,
            data,
            project,
        } => {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let export: MapExport = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not a map export: {e}", file.display()))?;
            let v =
                app(&data)?.import_map(&project.project, &export, name.as_deref(), "cli import")?;
            println!(
                "saved {} version {v}",
                name.as_deref().unwrap_or(&export.name)
            );
        }
    }
    Ok(())
}

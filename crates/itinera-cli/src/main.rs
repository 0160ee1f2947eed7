//! `itinera`: the single binary. Serves the tracking API, runs the demo, imports, generates,
//! exports and administers a data directory.

mod allocator;
mod definitions;
mod demo;
mod import;
mod models;
mod output;
mod parquet_io;
mod query;
mod surveys;
mod triggers;
mod users;

use clap::{Args, Parser, Subcommand};
use itinera_app::{App, Config as ServerConfig, DataDir};
use itinera_meta::DefinitionKind;
use itinera_meta::DEFAULT_PROJECT;
use itinera_server::AppState;
use itinera_synth::{World, WorldSpec};
use output::{print_record, print_records, Format};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Result of a command; errors are printed once by `main`.
pub type CliResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser)]
#[command(
    name = "itinera",
    version,
    about = "Customer journey analytics: collect touchpoints, stitch journeys, measure every stage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub(crate) struct DataArgs {
    /// Data directory (metadata database and one journey store per project).
    #[arg(
        long,
        env = "ITINERA_DATA",
        default_value = "itinera-data",
        global = true
    )]
    data: PathBuf,
    /// Configuration file (TOML); see docs/configuration.md.
    #[arg(long, env = "ITINERA_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub(crate) struct ProjectArg {
    /// Project (the default project when omitted).
    #[arg(long, default_value = DEFAULT_PROJECT)]
    project: String,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the tracking API, the query API under /api/v1 and the survey pages.
    Serve {
        #[command(flatten)]
        data: DataArgs,
        /// Address to listen on [default: 127.0.0.1:8460].
        #[arg(long, env = "ITINERA_LISTEN")]
        listen: Option<String>,
    },
    /// Generate a demo world into an empty data directory, then serve it.
    Demo {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, env = "ITINERA_LISTEN")]
        listen: Option<String>,
        /// People to generate when the data directory is empty.
        #[arg(long, default_value_t = 20_000)]
        customers: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// New touchpoints per second sent through the tracking API while the demo runs (new
        /// journeys, dated now; some answer surveys). 0 switches the trickle off.
        #[arg(long, env = "ITINERA_DEMO_LIVE_RATE", default_value_t = 2.0)]
        live_rate: f64,
    },
    /// Saved segments: rules on traits, properties and behaviour; any query takes `--segment NAME`.
    Segments {
        #[command(subcommand)]
        command: definitions::DefinitionCommand,
    },
    /// Personas: an ordered list of rules, the first match is a person's persona; any query
    /// takes `--persona NAME`.
    Personas {
        #[command(subcommand)]
        command: definitions::DefinitionCommand,
    },
    /// Survey definitions and signed links to the hosted survey page.
    Surveys {
        #[command(subcommand)]
        command: surveys::SurveyCommand,
    },
    /// Cases opened by alerts (or by hand): list them, update status, assignee, root cause, action.
    Cases {
        #[command(subcommand)]
        command: surveys::CaseCommand,
    },
    /// Trigger rules: act when a person enters a stage, stalls in one or does an event
    /// (docs/triggers.md).
    Triggers {
        #[command(subcommand)]
        command: triggers::TriggerCommand,
    },
    /// Stage models saved in the project (custom buyer or customer journeys), usable by name.
    Models {
        #[command(subcommand)]
        command: models::ModelCommand,
    },
    /// People who log in to the web app, with a role for every project: viewer, editor, admin.
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// Journey maps: list, export as JSON (docs/map-schema.json), import.
    Maps {
        #[command(subcommand)]
        command: users::MapsCommand,
    },
    /// Projects and their credentials.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Import Segment-shaped JSON lines, CSV or Parquet (offline touchpoints, history).
    Import {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        /// Files to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Input format; guessed from the file extension when omitted.
        #[arg(long, value_enum)]
        format: Option<import::ImportFormat>,
        /// CSV column mapping, `column=field.path` (repeatable).
        #[arg(long = "map", value_parser = parse_mapping)]
        mapping: Vec<(String, String)>,
        /// Message type of CSV rows without a `type` column.
        #[arg(long, default_value = "track")]
        csv_type: String,
        /// Write rejected rows (with line number, field and reason) to this JSON-lines file.
        #[arg(long)]
        reject: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Write a synthetic world as Segment JSON lines, plus its ground truth (`OUT.truth.json`).
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        customers: u64,
        /// Stop after this many events (0: when every customer's journey is written).
        #[arg(long, default_value_t = 0)]
        events: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Export stored messages: Segment-shaped JSON lines, or Parquet; both import again losslessly.
    Export {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Events, persons, accounts and bytes on disk.
    Stats {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Flush memory and merge all segments (into segments of whole persons within `compact_memory_mb`).
    Compact {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Erase a person (right to erasure): gone from queries and, after compaction, from every file.
    Delete {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        /// A user id or anonymous id of the person; every id linked to it is erased.
        #[arg(long)]
        person: String,
    },
    /// Analyses: funnels, retention, stages, paths, attribution, CLV, accounts, advocacy, revenue,
    /// scores, promoters, comments, segment sizes and breakdowns; on a data directory or a server.
    Query {
        #[command(subcommand)]
        command: query::QueryCommand,
    },
    /// Set damaged parts of a project's write-ahead log aside (kept beside it as
    /// FILE.damaged-OFFSET) so that its store opens again; run it with the server stopped.
    Recover {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Copy a consistent state of a project's store to DIR.
    Backup {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a write key (ingest only) and a read token (query only) for a project; with
    /// `--scope edit|admin`, one token of that scope instead (docs/security.md).
    Create {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        project: ProjectArg,
        #[arg(long, default_value = "")]
        label: String,
        /// `read` (a write key and a read token), `edit` (a token that also changes definitions,
        /// surveys, alert rules and cases) or `admin` (also credentials and users).
        #[arg(long, default_value = "read")]
        scope: itinera_meta::Scope,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List keys (prefixes only; secrets are never stored).
    List {
        #[command(flatten)]
        data: DataArgs,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Revoke a key by id or prefix.
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        key: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
    Parquet,
}

fn parse_mapping(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| format!("expected column=field.path, got {s:?}"))
}

/// Configuration: defaults < TOML file < `ITINERA_*` environment < flags.
pub(crate) fn load_config(args: &DataArgs, listen: Option<&str>) -> CliResult<ServerConfig> {
    let mut cfg = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| format!("config {}: {e}", p.display()))?;
            toml::from_str::<ServerConfig>(&text)
                .map_err(|e| format!("config {}: {e}", p.display()))?
        }
        None => ServerConfig::default(),
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(v) = env("ITINERA_SMTP_HOST") {
        cfg.smtp.host = v;
    }
    if let Some(v) = env("ITINERA_PUBLIC_URL") {
        cfg.public_url = v;
    }
    if let Some(v) = env("ITINERA_SMTP_FROM") {
        cfg.smtp.from = v;
    }
    if let Some(v) = env("ITINERA_SMTP_PASSWORD") {
        cfg.smtp.password = Some(v);
    }
    let list = |v: String| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    if let Some(v) = env("ITINERA_METRICS_TOKEN") {
        cfg.metrics_token = Some(v);
    }
    if let Some(v) = env("ITINERA_OUTBOUND_ALLOW_HOSTS") {
        cfg.outbound.allow_hosts = list(v);
    }
    if let Some(v) = env("ITINERA_OUTBOUND_ALLOW_NETWORKS") {
        cfg.outbound.allow_networks = list(v);
    }
    cfg.outbound.validate()?;
    if let Some(v) = env("ITINERA_IP_POLICY") {
        cfg.ip_policy =
            serde_json::from_value(serde_json::Value::String(v.clone())).map_err(|_| {
                format!("ITINERA_IP_POLICY: expected full, anonymize or drop, got {v:?}")
            })?;
    }
    for (key, slot) in [
        (
            "ITINERA_RATE_LIMIT_PER_KEY",
            &mut cfg.rate_limit_per_key as &mut dyn SetFromStr,
        ),
        ("ITINERA_MAX_FUTURE_HOURS", &mut cfg.max_future_hours),
        ("ITINERA_MAX_CONNECTIONS", &mut cfg.max_connections),
        (
            "ITINERA_TOKEN_RATE_PER_SECOND",
            &mut cfg.token_rate_per_second,
        ),
        (
            "ITINERA_QUERY_TIMEOUT_SECONDS",
            &mut cfg.query_timeout_seconds,
        ),
        ("ITINERA_QUERY_MEMORY_MB", &mut cfg.query_memory_mb),
        (
            "ITINERA_TRIGGER_SWEEP_SECONDS",
            &mut cfg.trigger_sweep_seconds,
        ),
        (
            "ITINERA_HEADER_TIMEOUT_SECONDS",
            &mut cfg.header_timeout_seconds,
        ),
        (
            "ITINERA_BODY_TIMEOUT_SECONDS",
            &mut cfg.body_timeout_seconds,
        ),
        ("ITINERA_FLUSH_ROWS", &mut cfg.store.flush_rows),
        ("ITINERA_AUTH_CACHE_SECONDS", &mut cfg.auth_cache_seconds),
        (
            "ITINERA_ALERT_INTERVAL_SECONDS",
            &mut cfg.alert_interval_seconds,
        ),
        ("ITINERA_WEBHOOK_ATTEMPTS", &mut cfg.webhook_attempts),
        ("ITINERA_WEBHOOK_BACKOFF_MS", &mut cfg.webhook_backoff_ms),
        (
            "ITINERA_SURVEY_RATE_PER_MINUTE",
            &mut cfg.survey_rate_per_minute,
        ),
        ("ITINERA_SMTP_PORT", &mut cfg.smtp.port),
        ("ITINERA_SESSION_HOURS", &mut cfg.session_hours),
        ("ITINERA_SECURE_COOKIES", &mut cfg.secure_cookies),
        (
            "ITINERA_LOGIN_ATTEMPTS_PER_MINUTE",
            &mut cfg.login_attempts_per_minute,
        ),
    ] {
        if let Some(v) = env(key) {
            slot.set(&v).map_err(|e| format!("{key}: {e}"))?;
        }
    }
    // the data flag has a default; it only overrides the file when given (flag or environment)
    let data_given = std::env::args().any(|a| a == "--data" || a.starts_with("--data="))
        || env("ITINERA_DATA").is_some();
    if data_given || args.config.is_none() {
        cfg.data = args.data.clone();
    }
    if let Some(l) = listen {
        cfg.listen = l.to_string();
    }
    Ok(cfg)
}

trait SetFromStr {
    fn set(&mut self, s: &str) -> Result<(), String>;
}

macro_rules! set_from_str {
    ($($t:ty),*) => {$(
        impl SetFromStr for $t {
            fn set(&mut self, s: &str) -> Result<(), String> {
                *self = s.trim().parse().map_err(|e| format!("{e}: {s:?}"))?;
                Ok(())
            }
        }
    )*};
}
set_from_str!(u16, u32, u64, i64, usize, bool);

pub(crate) fn open_data(cfg: &ServerConfig) -> CliResult<Arc<DataDir>> {
    Ok(DataDir::open(&cfg.data, cfg.store.to_store_config())?)
}

/// The data directory for commands that only read the stores (queries, stats, export): they
/// run beside an `itinera serve` that owns the directory, without writing to it.
pub(crate) fn open_data_for_reading(cfg: &ServerConfig) -> CliResult<Arc<DataDir>> {
    let store = itinera_store::StoreConfig {
        read_only: true,
        ..cfg.store.to_store_config()
    };
    Ok(DataDir::open(&cfg.data, store)?)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ITINERA_LOG")
        .unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("ITINERA_LOG_FORMAT").as_deref() == Ok("json") {
        fmt.json().init();
    } else {
        fmt.init();
    }
}

fn main() {
    init_tracing();
    let cli = Cli::parse();
    let result = run(cli);
    // warnings about the query (names the data does not have) go under what was printed
    for w in query::take_warnings() {
        eprintln!("warning: {w}");
    }
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Serve { data, listen } => {
            let cfg = load_config(&data, listen.as_deref())?;
            let dir = open_data(&cfg)?;
            serve(cfg, dir, None)
        }
        Command::Demo {
            data,
            listen,
            customers,
            seed,
            live_rate,
        } => {
            let cfg = load_config(&data, listen.as_deref())?;
            let dir = open_data(&cfg)?;
            let store = dir.store(DEFAULT_PROJECT)?;
            if store.stats()?.events == 0 {
                demo::fill(&store, &cfg, customers, seed)?;
                itinera_app::demo::seed_definitions(&dir.meta.lock(), DEFAULT_PROJECT)?;
            }
            let login = {
                let meta = dir.meta.lock();
                let keys = meta.create_keys(DEFAULT_PROJECT, "demo")?;
                let edit = meta.create_token(DEFAULT_PROJECT, itinera_meta::Scope::Edit, "demo")?;
                let (email, password) = itinera_app::demo::demo_admin(&meta)?;
                DemoLogin {
                    keys,
                    edit,
                    email,
                    password,
                    live_rate,
                    seed,
                }
            };
            serve(cfg, dir, Some(login))
        }
        Command::Keys { command } => keys(command),
        Command::Users { command } => users::run(command),
        Command::Maps { command } => users::run_maps(command),
        Command::Surveys { command } => surveys::run(command),
        Command::Cases { command } => surveys::run_cases(command),
        Command::Triggers { command } => triggers::run(command),
        Command::Models { command } => models::run(command),
        Command::Segments { command } => definitions::run(DefinitionKind::Segment, command),
        Command::Personas { command } => definitions::run(DefinitionKind::Persona, command),
        Command::Import {
            data,
            project,
            files,
            format,
            mapping,
            csv_type,
            reject,
            output,
            quiet,
        } => {
            let cfg = load_config(&data, None)?;
            let dir = open_data(&cfg)?;
            let store = dir.store(&project.project)?;
            let started = std::time::Instant::now();
            let mut imp = import::Importer::new(
                &store,
                &cfg.channels,
                cfg.max_future_hours * 3_600_000,
                reject.as_deref(),
                quiet,
            )?;
            for f in &files {
                match format.unwrap_or_else(|| import::ImportFormat::guess(f)) {
                    import::ImportFormat::Jsonl => imp.import_jsonl(f)?,
                    import::ImportFormat::Csv => imp.import_csv(f, &mapping, &csv_type)?,
                    import::ImportFormat::Parquet => imp.import_parquet(f, &mapping, &csv_type)?,
                }
            }
            let report = imp.finish(started)?;
            dir.close();
            print_record(output, &report)
        }
        Command::Generate {
            out,
            customers,
            events,
            seed,
        } => generate(&out, customers, events, seed),
        Command::Export {
            data,
            project,
            out,
            format,
        } => {
            let cfg = load_config(&data, None)?;
            // written beside the output and renamed when complete: a failed export leaves no
            // file that looks like a (short) export
            let final_out = out;
            let out = partial_path(&final_out);
            let export_once = || -> CliResult<u64> {
                let dir = open_data_for_reading(&cfg)?;
                let store = dir.store(&project.project)?;
                let n = match format {
                    ExportFormat::Jsonl => {
                        let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
                        let mut n = 0u64;
                        store.for_each_message(|m| {
                            writeln!(w, "{m}").map_err(itinera_store::StoreError::io(&out))?;
                            n += 1;
                            Ok(())
                        })?;
                        w.flush()?;
                        n
                    }
                    ExportFormat::Parquet => {
                        let mut p = parquet_io::ParquetExport::create(&out)?;
                        let mut failed = None;
                        store.for_each_message(|m| {
                            if let Err(e) = p.add(m) {
                                failed.get_or_insert(e.to_string());
                            }
                            Ok(())
                        })?;
                        if let Some(e) = failed {
                            return Err(e.into());
                        }
                        p.finish()?
                    }
                };
                Ok(n)
            };
            // beside a serving process, a compaction may remove a segment the export was about
            // to read: the export then starts again from a fresh view (ten times at most)
            let mut written = export_once();
            for _ in 0..10 {
                let vanished = written.as_ref().err().is_some_and(|e| {
                    matches!(
                        e.downcast_ref::<itinera_store::StoreError>(),
                        Some(itinera_store::StoreError::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound
                    )
                });
                if !vanished {
                    break;
                }
                written = export_once();
            }
            let n = match written {
                Ok(n) => n,
                Err(e) => {
                    let _ = std::fs::remove_file(&out);
                    return Err(e);
                }
            };
            std::fs::rename(&out, &final_out)?;
            eprintln!("exported {n} messages to {}", final_out.display());
            Ok(())
        }
        Command::Query { command } => query::run(command),
        Command::Stats {
            data,
            project,
            format,
        } => {
            let cfg = load_config(&data, None)?;
            let dir = open_data_for_reading(&cfg)?;
            let stats = dir.store(&project.project)?.stats()?;
            print_record(format, &stats)
        }
        Command::Compact { data, project } => {
            allocator::return_freed_memory_soon();
            let cfg = load_config(&data, None)?;
            // the store opened lean: the merge reads the segments' columns a part at a time
            let store = itinera_store::StoreConfig {
                compaction_only: true,
                ..cfg.store.to_store_config()
            };
            let dir = DataDir::open(&cfg.data, store)?;
            dir.store(&project.project)?.compact()?;
            dir.close();
            Ok(())
        }
        Command::Delete {
            data,
            project,
            person,
        } => {
            let cfg = load_config(&data, None)?;
            let dir = open_data(&cfg)?;
            let store = dir.store(&project.project)?;
            let ids = store.linked_ids(&person);
            if store.erase_person(&person)? == 0 {
                return Err(format!(
                    "no person with id {person:?} in project {}",
                    project.project
                )
                .into());
            }
            store.compact()?;
            let (alerts, cases) = dir.meta.lock().erase_person(&project.project, &ids)?;
            dir.close();
            eprintln!(
                "erased {person:?} and every id linked to it ({} ids): their touchpoints (compacted away), {alerts} alert(s), {cases} case(s)",
                ids.len()
            );
            Ok(())
        }
        Command::Recover { data, project } => {
            let cfg = load_config(&data, None)?;
            let report = open_data(&cfg)?.recover_log(&project.project)?;
            for (from, kept, bytes) in &report.set_aside {
                eprintln!(
                    "{}: {bytes} damaged bytes set aside in {}",
                    from.display(),
                    kept.display()
                );
            }
            eprintln!(
                "{} damaged region(s) set aside; {} good log frames kept",
                report.set_aside.len(),
                report.frames
            );
            Ok(())
        }
        Command::Backup {
            data,
            project,
            dir: out,
        } => {
            let cfg = load_config(&data, None)?;
            let dir = open_data(&cfg)?;
            dir.store(&project.project)?.backup(&out)?;
            eprintln!("backup written to {}", out.display());
            Ok(())
        }
    }
}

fn keys(cmd: KeysCommand) -> CliResult {
    match cmd {
        KeysCommand::Create {
            data,
            project,
            label,
            scope,
            format,
        } => {
            let cfg = load_config(&data, None)?;
            let dir = open_data(&cfg)?;
            let meta = dir.meta.lock();
            if scope == itinera_meta::Scope::Read {
                return print_record(format, &meta.create_keys(&project.project, &label)?);
            }
            let token = meta.create_token(&project.project, scope, &label)?;
            print_record(
                format,
                &serde_json::json!({"project": project.project, "scope": scope, "token": token}),
            )
        }
        KeysCommand::List {
            data,
            project,
            format,
        } => {
            let cfg = load_config(&data, None)?;
            let keys = open_data(&cfg)?.meta.lock().keys(project.as_deref())?;
            print_records(
                format,
                &[
                    "id",
                    "project",
                    "kind",
                    "scope",
                    "prefix",
                    "label",
                    "created_at",
                    "revoked_at",
                ],
                &keys,
            )
        }
        KeysCommand::Revoke { data, key } => {
            let cfg = load_config(&data, None)?;
            let n = open_data(&cfg)?.meta.lock().revoke(&key)?;
            eprintln!("revoked {n} key(s)");
            Ok(())
        }
    }
}

/// `OUT.partial` beside `OUT`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

fn generate(out: &Path, customers: u64, events: u64, seed: u64) -> CliResult {
    let started = std::time::Instant::now();
    let mut world = World::new(WorldSpec {
        customers,
        max_events: events,
        seed,
        ..Default::default()
    });
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let bar = indicatif::ProgressBar::new(if events > 0 { events } else { 0 });
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} events {per_sec} ETA {eta}")
            .expect("valid"),
    );
    let mut n = 0u64;
    for m in world.by_ref() {
        serde_json::to_writer(&mut w, &m)?;
        w.write_all(b"\n")?;
        n += 1;
        if n.is_multiple_of(10_000) {
            bar.set_position(n);
        }
    }
    w.flush()?;
    bar.finish_and_clear();
    let truth_path = PathBuf::from(format!("{}.truth.json", out.display()));
    std::fs::write(&truth_path, serde_json::to_vec_pretty(world.truth())?)?;
    eprintln!(
        "wrote {n} events to {} in {:.1} s; ground truth in {}",
        out.display(),
        started.elapsed().as_secs_f64(),
        truth_path.display()
    );
    Ok(())
}

/// What `itinera demo` prints and starts besides serving.
struct DemoLogin {
    keys: itinera_meta::NewKeys,
    edit: String,
    email: String,
    password: String,
    live_rate: f64,
    seed: u64,
}

fn serve(cfg: ServerConfig, dir: Arc<DataDir>, demo: Option<DemoLogin>) -> CliResult {
    allocator::spawn_upkeep();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(listen = %addr, data = %cfg.data.display(), "itinera is serving");
        println!("Itinera is running at http://{addr}/");
        println!("  tracking API: http://{addr}/v1/batch   health: http://{addr}/healthz   metrics: http://{addr}/metrics");
        if let Some(d) = &demo {
            let k = &d.keys;
            println!(
                "  web app: http://{addr}/  log in as {} with password {}",
                d.email, d.password
            );
            println!("  write key (ingest): {}", k.write_key);
            println!("  read token (query): {}", k.read_token);
            println!(
                "  edit token (change surveys, segments, alert rules, cases): {}",
                d.edit
            );
            println!("  try: curl -u {}: http://{addr}/v1/track -d '{{\"userId\":\"me\",\"event\":\"Hello\"}}' -H 'content-type: application/json'", k.write_key);
            if d.live_rate > 0.0 {
                println!(
                    "  live: {} new touchpoints a second arrive through the tracking API (--live-rate, 0 = off)",
                    d.live_rate
                );
            }
            demo::spawn_trickle(addr, k.write_key.clone(), d.live_rate, d.seed);
        }
        std::io::stdout().flush()?;
        let app = AppState::new(App::new(cfg, dir));
        itinera_server::serve(app, listener, itinera_server::shutdown_signal()).await?;
        CliResult::Ok(())
    });
    // analyses were asked to stop; one that cannot (a model fit) is not waited for beyond this
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    served
}

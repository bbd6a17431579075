//! The command line: `targeting demo` and `targeting run`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use tracing::info;

use crate::db::Db;
use crate::demo::{self, DemoSpec};
use crate::pipeline::{self, cutoff_of, RunRequest};
use crate::report::Summary;
use crate::settings::{self, Overrides, Settings};
use crate::telemetry::{self, LogFormat};

/// Nightly campaign targeting: scores users by the purchases a message would cause and
/// publishes each campaign's target list for CRM tools.
#[derive(Debug, Parser)]
#[command(name = "targeting", version)]
pub struct Cli {
    /// Settings file. Default: config/targeting.toml when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a synthetic source database and run the whole nightly job on it.
    Demo(DemoArgs),
    /// Run the nightly job on the configured source database (the one-shot entry for an
    /// external scheduler: exit code 0 only when every due campaign succeeded).
    Run(RunArgs),
    /// The daemon: run each campaign on its own schedule, and retrain on the settings'
    /// schedule, until SIGTERM or SIGINT. Serves /healthz and /metrics on scheduler.listen.
    Schedule(TargetFlags),
    /// Evaluate the uplift learners on a CSV (held-out Qini, AUUC, uplift@30%).
    Evaluate(crate::evaluate::EvaluateArgs),
    /// Train the models on the configured source and store them as the new `current`.
    Train(TrainArgs),
    /// The model store.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Check campaign files and report every problem at once (default: targeting.campaigns_dir).
    Validate(ValidateArgs),
    /// What campaign files may contain.
    Campaigns {
        #[command(subcommand)]
        command: CampaignsCommand,
    },
    /// The run ledger.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Recent campaign runs, newest first: status, sizes, export URI and any error.
    List(RunsListArgs),
}

#[derive(Debug, Args)]
pub struct RunsListArgs {
    /// Only the runs of this campaign.
    #[arg(long, value_name = "ID")]
    pub campaign: Option<String>,
    /// Most runs to show.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// State database (default: the settings' state.database_url).
    #[arg(long, value_name = "URL")]
    pub state_database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Campaign files or folders of them.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CampaignsCommand {
    /// Print the JSON Schema of a campaign file (for editors).
    Schema,
    /// List the names eligibility rules may use, with their types.
    Fields,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every stored version with its headline metrics; `*` marks `current`.
    List,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Train as of this date (default: today, UTC): only exposures whose attribution window
    /// closed before it are used.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<NaiveDate>,
    /// The one model to train: conversion_uplift, discount_uplift or discount_sensitivity
    /// (default: all three). The others keep their `current` version.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Source database URL (overrides source.database_url).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Threads for LightGBM and polars (overrides runtime.threads; 0 = one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Flags shared by the commands that run the job.
#[derive(Debug, Args)]
pub struct JobFlags {
    #[command(flatten)]
    pub target: TargetFlags,
    /// Run date, YYYY-MM-DD (default: today, UTC). Features see only data before it.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<NaiveDate>,
    /// Only publish this campaign, due or not (repeatable; default: every campaign due on the
    /// date). The night's other campaigns still take part in arbitration, so the audience is
    /// the one a full night gives.
    #[arg(long = "campaign", value_name = "ID", conflicts_with = "all")]
    pub campaigns: Vec<String>,
    /// Every campaign due on the date (the default when no --campaign is given).
    #[arg(long)]
    pub all: bool,
}

/// Where a job reads, records and publishes, overriding the settings.
#[derive(Debug, Args)]
pub struct TargetFlags {
    /// Source database URL (overrides source.database_url).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// State database URL (overrides state.database_url; default: the source database).
    #[arg(long, value_name = "URL")]
    pub state_database_url: Option<String>,
    /// Export destination URI (overrides export.destination).
    #[arg(long, value_name = "URI")]
    pub exports: Option<String>,
    /// Threads for LightGBM and polars (overrides runtime.threads; 0 = one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Users to generate.
    #[arg(long, default_value_t = 100_000)]
    pub users: usize,
    /// Folder of the demo: source.db (SQLite), models/, exports/ and summary.json.
    #[arg(long, default_value = "demo")]
    pub dir: PathBuf,
    /// Seed of the generated data (the same seed gives the same data).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[command(flatten)]
    pub job: JobFlags,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub job: JobFlags,
    /// Train a new model instead of scoring with the store's `current` one (a run trains
    /// anyway when the store has none).
    #[arg(long)]
    pub retrain: bool,
    /// Preview: the funnel, audience and holdout sizes, expected incremental conversions and
    /// discount cost, and the overlap with the night's other campaigns. Publishes and records
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs the parsed command line.
pub fn main(cli: Cli) -> Result<()> {
    telemetry::init(cli.log_format);
    let (overrides, threads_hint) = match &cli.command {
        Command::Demo(a) => (demo_overrides(a), a.job.target.threads),
        Command::Run(a) => (job_overrides(&a.job.target), a.job.target.threads),
        Command::Schedule(a) => (job_overrides(a), a.threads),
        Command::Evaluate(a) => (
            Overrides {
                threads: a.threads,
                ..Overrides::default()
            },
            a.threads,
        ),
        Command::Train(a) => (
            Overrides {
                database_url: a.database_url.clone(),
                threads: a.threads,
                ..Overrides::default()
            },
            a.threads,
        ),
        Command::Runs {
            command: RunsCommand::List(a),
        } => (
            Overrides {
                state_database_url: a.state_database_url.clone(),
                ..Overrides::default()
            },
            None,
        ),
        Command::Models { .. } | Command::Validate(_) | Command::Campaigns { .. } => {
            (Overrides::default(), None)
        }
    };
    let settings = settings::load(cli.config.as_deref(), &overrides)?;
    // Polars reads its thread count once, from the environment, before its pool starts.
    if std::env::var_os("POLARS_MAX_THREADS").is_none() || threads_hint.is_some() {
        std::env::set_var("POLARS_MAX_THREADS", settings.threads.to_string());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads.max(2))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Demo(a) => run_demo(&settings, &a).await,
            Command::Run(a) => run_job(&settings, &a.job, a.retrain, a.dry_run).await,
            Command::Schedule(_) => crate::daemon::serve(&settings).await,
            Command::Train(a) => run_train(&settings, &a).await,
            Command::Models {
                command: ModelsCommand::List,
            } => list_models(&settings).await,
            Command::Validate(a) => validate(&settings, &a),
            Command::Runs {
                command: RunsCommand::List(a),
            } => list_runs(&settings, &a).await,
            Command::Campaigns {
                command: CampaignsCommand::Schema,
            } => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&segments::campaign::schema())?
                );
                Ok(())
            }
            Command::Campaigns {
                command: CampaignsCommand::Fields,
            } => {
                print!("{}", crate::campaigns::fields_table());
                Ok(())
            }
            Command::Evaluate(a) => {
                let result = tokio::task::block_in_place(|| {
                    crate::evaluate::evaluate(&a, settings.threads)
                })?;
                if a.json {
                    println!("{}", serde_json::to_string(&result)?);
                } else {
                    print!("{}", result.table());
                }
                Ok(())
            }
        }
    })
}

/// `targeting validate`: every campaign file checked, every problem reported; a summary line
/// per valid campaign.
fn validate(settings: &Settings, a: &ValidateArgs) -> Result<()> {
    let paths = if a.paths.is_empty() {
        vec![settings.campaigns_dir.clone()]
    } else {
        a.paths.clone()
    };
    let campaigns = crate::campaigns::load(&paths)?;
    for c in &campaigns {
        let schedule = c.schedule.as_ref().map_or("every night".to_string(), |s| {
            format!("{} ({})", s.cron, s.timezone)
        });
        println!(
            "ok  {:<28} {:<12} priority {:<4} holdout {:<5} max_audience {:<8} rules {}  {}",
            c.id,
            c.kind.name(),
            c.priority,
            c.holdout,
            c.max_audience,
            c.eligibility.len(),
            schedule
        );
    }
    println!("{} campaign files valid", campaigns.len());
    Ok(())
}

fn job_overrides(j: &TargetFlags) -> Overrides {
    Overrides {
        database_url: j.database_url.clone(),
        state_database_url: j.state_database_url.clone(),
        exports: j.exports.clone(),
        model_store: None,
        threads: j.threads,
    }
}

/// The demo runs on its own folder unless told otherwise: SQLite at DIR/source.db, exports in
/// DIR/exports, models in DIR/models.
fn demo_overrides(a: &DemoArgs) -> Overrides {
    let mut o = job_overrides(&a.job.target);
    let dir = a.dir.display().to_string();
    o.database_url
        .get_or_insert_with(|| format!("sqlite://{dir}/source.db"));
    o.exports
        .get_or_insert_with(|| format!("file://{dir}/exports"));
    o.model_store = Some(a.dir.join("models"));
    o
}

fn run_date(flag: Option<NaiveDate>) -> NaiveDate {
    flag.unwrap_or_else(|| chrono::Utc::now().date_naive())
}

async fn run_demo(settings: &Settings, a: &DemoArgs) -> Result<()> {
    if a.users < 1_000 {
        bail!("--users must be at least 1000 for the models to have data to learn from");
    }
    let campaigns = crate::campaigns::load(std::slice::from_ref(&settings.campaigns_dir))?;
    crate::campaigns::check_ids(&campaigns, &a.job.campaigns)?;
    let date = run_date(a.job.date);
    let source = Db::connect(&settings.source_url, true).await?;
    let spec = DemoSpec {
        users: a.users,
        seed: a.seed,
        anchor: cutoff_of(date),
    };
    let generated = demo::ensure(&source, spec).await?;
    info!(
        generated,
        users = a.users,
        seed = a.seed,
        "demo source ready"
    );
    let state = state_db(settings, &source).await?;
    let truth = demo::truth(&source).await?;
    let report = pipeline::run(
        RunRequest {
            settings,
            date,
            campaigns,
            only: a.job.campaigns.clone(),
            dry_run: false,
            // The demo shows what a model learns: it always trains.
            retrain: true,
            known_effects: Some(truth.uplift.clone()),
        },
        &source,
        &state,
    )
    .await?;
    let summary = Summary::new(&report, Some(demo::against_truth(&truth, &report)));
    std::fs::create_dir_all(&a.dir)?;
    summary.write_json(&a.dir.join("summary.json"))?;
    print!("{}", summary.table());
    fail_on_campaign_errors(&report)
}

async fn run_job(settings: &Settings, j: &JobFlags, retrain: bool, dry_run: bool) -> Result<()> {
    let campaigns = crate::campaigns::load(std::slice::from_ref(&settings.campaigns_dir))?;
    crate::campaigns::check_ids(&campaigns, &j.campaigns)?;
    let date = run_date(j.date);
    let campaigns = crate::campaigns::night(&campaigns, date, &j.campaigns);
    if campaigns.is_empty() {
        println!("no campaign is due on {date}");
        return Ok(());
    }
    let source = Db::connect(&settings.source_url, false).await?;
    let state = state_db(settings, &source).await?;
    let report = pipeline::run(
        RunRequest {
            settings,
            date,
            campaigns,
            only: j.campaigns.clone(),
            dry_run,
            retrain,
            known_effects: None,
        },
        &source,
        &state,
    )
    .await?;
    let summary = Summary::new(&report, None);
    if dry_run {
        print!("{}", summary.preview());
    } else {
        print!("{}", summary.table());
    }
    fail_on_campaign_errors(&report)
}

/// The state database (the source's pool when they are the same database), with its tables
/// created or updated: the one place the state is migrated.
pub(crate) async fn state_db(settings: &Settings, source: &Db) -> Result<Db> {
    let state = if settings.state_url == settings.source_url {
        source.clone()
    } else {
        Db::connect(&settings.state_url, true).await?
    };
    state.migrate_state().await?;
    Ok(state)
}

fn fail_on_campaign_errors(report: &pipeline::RunReport) -> Result<()> {
    let failed = report.failed();
    if failed.is_empty() {
        return Ok(());
    }
    let details: Vec<String> = failed
        .iter()
        .map(|c| format!("{}: {}", c.campaign_id, c.error.as_deref().unwrap_or("")))
        .collect();
    bail!(
        "{} of {} campaigns failed: {}",
        failed.len(),
        report.campaigns.len(),
        details.join("; ")
    )
}

async fn run_train(settings: &Settings, a: &TrainArgs) -> Result<()> {
    use models::metrics::Interval;
    use models::ModelArtifact;
    // Checked before the extraction, which takes a minute at a million users.
    pipeline::check_model_name(a.model.as_deref())?;
    let as_of = run_date(a.as_of);
    let source = Db::connect(&settings.source_url, false).await?;
    let state = state_db(settings, &source).await?;
    let src = crate::extract::extract(&source, Some(&state), settings).await?;
    let as_of_cutoff = cutoff_of(as_of);
    // Each stored model with its held-out metric; the conversion model's interval when the
    // whole set was trained (the bootstrap runs there).
    let stored: Vec<(ModelArtifact, Option<Interval>)> = match a.model.as_deref() {
        Some(name) => {
            let m = pipeline::train_and_store_one(settings, &src, as_of_cutoff, name).await?;
            vec![(m, None)]
        }
        None => {
            let m = pipeline::train_and_store(settings, &src, as_of_cutoff, None).await?;
            let ci = m.used.qini_auc;
            vec![
                (m.uplift, Some(ci)),
                (m.discount_uplift, None),
                (m.sensitivity, None),
            ]
        }
    };
    println!("trained as of {as_of}, stored in {}:", settings.model_store);
    for (artifact, ci) in &stored {
        let meta = &artifact.metadata;
        let (metric, value) = meta.headline();
        let interval = ci.map_or(String::new(), |ci| {
            format!(" (95% CI {:.4} to {:.4})", ci.low, ci.high)
        });
        println!(
            "  {} {} ({}): held-out {metric} {value:.4}{interval}",
            meta.name,
            meta.version,
            meta.learner.name(),
        );
    }
    Ok(())
}

async fn list_runs(settings: &Settings, a: &RunsListArgs) -> Result<()> {
    let state = Db::connect(&settings.state_url, false).await?;
    state.migrate_state().await?;
    let runs = crate::ledger::runs(&state, a.campaign.as_deref(), a.limit).await?;
    if runs.is_empty() {
        println!("no runs in {}", state.display);
        return Ok(());
    }
    print!("{}", crate::report::runs_table(&runs));
    Ok(())
}

async fn list_models(settings: &Settings) -> Result<()> {
    let store = crate::model_store::open(settings).await?;
    let listed = crate::model_store::list(&store).await?;
    if listed.is_empty() {
        println!("no models in {}", settings.model_store);
        return Ok(());
    }
    println!(
        "  {:<20} {:<26} {:<10} {:<21} {:>10} {:>9} {:>7}",
        "model", "version", "learner", "created", "rows", "held-out", ""
    );
    for l in listed {
        let m = &l.metadata;
        let (metric, value) = m.headline();
        println!(
            "{} {:<20} {:<26} {:<10} {:<21} {:>10} {:>9} {value:>7.4}",
            if l.current { "*" } else { " " },
            m.name,
            m.version,
            m.learner.name(),
            m.created_at,
            m.rows_train + m.rows_valid,
            metric,
        );
    }
    Ok(())
}

//! The command line: the arguments of every command, and the dispatch to them. The commands'
//! bodies are in [`commands`], their printouts in [`summary`].

mod commands;
pub mod exit;
pub mod summary;
pub mod telemetry;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use models::{ModelName, RunDate};

pub use crate::config::campaigns::CampaignProblems;
use crate::config::{self, Overrides};
use commands::{
    list_runs, models_command, report, run_demo, run_job, run_train, score_shard, validate,
};
use telemetry::LogFormat;

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
    /// Warnings and errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Debug events, and every span's end with its timing (the human format otherwise says
    /// when each stage ends).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a synthetic source database and run the whole nightly job on it.
    Demo(DemoArgs),
    /// Run the nightly job on the configured source database (the one-shot entry for an
    /// external scheduler: exit code 0 only when every due campaign succeeded; 3 when some
    /// failed, 75 when it may succeed if tried again, 78 when the configuration is invalid).
    Run(RunArgs),
    /// Score and rank one shard of a night's users with the store's current models and write
    /// its output to the object store, for `targeting run --from-shards N` (scale-out: one job
    /// per shard, e.g. a Kubernetes Indexed Job).
    ScoreShard(ScoreShardArgs),
    /// The daemon: run each campaign on its own schedule, and retrain on the settings'
    /// schedule, until SIGTERM or SIGINT. Serves /healthz and /metrics on scheduler.listen.
    Schedule(TargetFlags),
    /// Evaluate the uplift learners on a CSV (held-out Qini, AUUC, uplift@30%).
    Evaluate(crate::tools::evaluate::EvaluateArgs),
    /// Time the native scorer against LightGBM's predict on the store's current models and a
    /// large one, over the source's users; fails if any output differs.
    BenchScore(crate::tools::bench_score::BenchScoreArgs),
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
    /// Did the campaigns work? Per campaign-day, treatment against holdout over the
    /// attribution window: incremental conversions, revenue and profit with 95% intervals,
    /// beside the forecast the run recorded; then the global control group.
    Report(ReportArgs),
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
    /// Only the runs with this status: running, succeeded, failed or aborted.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<crate::state::ledger::Status>,
    /// Only the runs for this run date or later (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub since: Option<RunDate>,
    /// Most runs to show.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// One JSON array of the runs on stdout, for scripts and monitors, instead of the table.
    #[arg(long)]
    pub json: bool,
    /// State database (default: the settings' state.database_url).
    #[arg(long, value_name = "URL")]
    pub state_database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Only this campaign (repeatable; default: every campaign).
    #[arg(long = "campaign", value_name = "ID")]
    pub campaigns: Vec<String>,
    /// First run date, YYYY-MM-DD (default: 90 days before --to).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: Option<RunDate>,
    /// Last run date, YYYY-MM-DD (default: --as-of).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub to: Option<RunDate>,
    /// Outcomes are complete up to this date's midnight, UTC (default: today): campaign-days
    /// whose attribution window ends later are reported as partial.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<RunDate>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page with charts to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Source database URL, where the purchases are (overrides source.database_url).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// State database URL, where the assignments are (overrides state.database_url).
    #[arg(long, value_name = "URL")]
    pub state_database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Campaign files or folders of them.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Check the files alone: do not read the source's items to check each drop's `item_id`
    /// (for a pull request's checks, where the source cannot be reached).
    #[arg(long)]
    pub offline: bool,
    /// Source database whose items the drops are checked against (default: the settings'
    /// source.database_url).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
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
    List {
        /// One JSON array of the versions on stdout (with every metric and the age of each),
        /// instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Point a model's `current` at a stored version (recorded with who and when).
    Promote {
        /// conversion_uplift, discount_uplift or discount_sensitivity.
        #[arg(value_name = "NAME")]
        name: ModelName,
        /// A version `models list` shows.
        #[arg(value_name = "VERSION")]
        version: String,
    },
    /// Put back the version before `current` (the newest stored one older than it).
    Rollback {
        /// conversion_uplift, discount_uplift or discount_sensitivity.
        #[arg(value_name = "NAME")]
        name: ModelName,
    },
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Train as of this date (default: today, UTC): only exposures whose attribution window
    /// closed before it are used.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<RunDate>,
    /// The one model to train: conversion_uplift, discount_uplift or discount_sensitivity
    /// (default: all three). The others keep their `current` version.
    #[arg(long, value_name = "NAME")]
    pub model: Option<ModelName>,
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
    pub date: Option<RunDate>,
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
    /// Score the users in this many shards, one after another (overrides runtime.shards;
    /// default: as many as runtime.memory_mb requires). The lists are the same for any number.
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
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
    /// Days after the night to simulate from the truth (0: none; else at least the 7 days of
    /// the attribution window the truth is defined on): the purchases the messages caused and
    /// the others, so that the lift report after the run shows real lift.
    #[arg(long, default_value_t = 14, value_name = "N")]
    pub outcome_days: i64,
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
    /// discount cost, and the overlap with the night's other campaigns. Publishes and stores
    /// nothing; records only the forecast, marked as a dry run, for `targeting report`.
    #[arg(long)]
    pub dry_run: bool,
    /// Publish campaign-days that already succeeded again (their ledger rows say so). Without
    /// it a campaign-day with a succeeded run is skipped. (A dry run claims nothing.)
    #[arg(long)]
    pub force: bool,
    /// Do not score: select, publish and record the night from the outputs of N
    /// `targeting score-shard` jobs of the same date (under export.destination/_shards/),
    /// after checking that every shard is there, complete, and scored with the store's
    /// current models.
    #[arg(long, value_name = "N", conflicts_with_all = ["retrain", "shards"])]
    pub from_shards: Option<u32>,
    /// Also write what happened to each campaign (published, previewed, already published,
    /// adopted, running elsewhere, failed, with sizes, export URIs and errors) and the exit
    /// code to this JSON file, whether the run succeeded or not.
    #[arg(long, value_name = "FILE")]
    pub result_json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ScoreShardArgs {
    #[command(flatten)]
    pub job: JobFlags,
    /// This job's shard, 0 to N-1 (default: JOB_COMPLETION_INDEX, as a Kubernetes Indexed Job
    /// sets it, or AWS_BATCH_JOB_ARRAY_INDEX, as an AWS Batch array job does).
    #[arg(long, value_name = "I")]
    pub shard: Option<u32>,
    /// How many shards the night is split into.
    #[arg(long, value_name = "N")]
    pub of: u32,
}

/// Runs the parsed command line.
pub fn main(cli: Cli) -> Result<()> {
    let verbosity = match (cli.quiet, cli.verbose) {
        (true, _) => telemetry::Verbosity::Quiet,
        (_, true) => telemetry::Verbosity::Verbose,
        _ => telemetry::Verbosity::Normal,
    };
    telemetry::init(cli.log_format, verbosity);
    let (overrides, threads_hint) = match &cli.command {
        Command::Demo(a) => (demo_overrides(a), a.job.target.threads),
        Command::Run(a) => (job_overrides(&a.job.target), a.job.target.threads),
        Command::ScoreShard(a) => (job_overrides(&a.job.target), a.job.target.threads),
        Command::Schedule(a) => (job_overrides(a), a.threads),
        Command::Evaluate(a) => (
            Overrides {
                threads: a.threads,
                ..Overrides::default()
            },
            a.threads,
        ),
        Command::BenchScore(a) => (
            Overrides {
                database_url: a.database_url.clone(),
                model_store: a.model_store.clone(),
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
        Command::Validate(a) => (
            Overrides {
                database_url: a.database_url.clone(),
                ..Overrides::default()
            },
            None,
        ),
        Command::Report(a) => (
            Overrides {
                database_url: a.database_url.clone(),
                state_database_url: a.state_database_url.clone(),
                ..Overrides::default()
            },
            None,
        ),
        Command::Models { .. } | Command::Campaigns { .. } => (Overrides::default(), None),
    };
    let settings = config::load(cli.config.as_deref(), &overrides).map_err(exit::invalid)?;
    // Polars reads its thread count once, from the environment, before its pool starts.
    if std::env::var_os("POLARS_MAX_THREADS").is_none() || threads_hint.is_some() {
        std::env::set_var("POLARS_MAX_THREADS", settings.threads.to_string());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads.max(2))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        telemetry::heartbeat(settings.heartbeat);
        match cli.command {
            Command::Demo(a) => run_demo(&settings, &a).await,
            Command::Run(a) => run_job(&settings, &a).await,
            Command::ScoreShard(a) => score_shard(&settings, &a).await,
            Command::Schedule(_) => crate::daemon::serve(&settings).await,
            Command::Train(a) => run_train(&settings, &a).await,
            Command::Models { command } => models_command(&settings, command).await,
            Command::Validate(a) => validate(&settings, &a).await,
            Command::Report(a) => report(&settings, &a).await,
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
                print!("{}", crate::config::campaigns::fields_table());
                Ok(())
            }
            Command::BenchScore(a) => {
                let report = crate::tools::bench_score::run(&settings, &a).await?;
                if a.json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    print!("{}", report.table());
                }
                Ok(())
            }
            Command::Evaluate(a) => {
                let result = tokio::task::block_in_place(|| {
                    crate::tools::evaluate::evaluate(&a, settings.threads, settings.scorer)
                })?;
                if a.json {
                    println!("{}", serde_json::to_string(&result)?);
                } else {
                    print!("{}", result.table());
                }
                Ok(())
            }
        }
    });
    telemetry::finish();
    result
}

fn job_overrides(j: &TargetFlags) -> Overrides {
    Overrides {
        database_url: j.database_url.clone(),
        state_database_url: j.state_database_url.clone(),
        exports: j.exports.clone(),
        model_store: None,
        threads: j.threads,
        shards: j.shards,
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

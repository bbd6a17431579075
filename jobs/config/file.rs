//! The settings file as written: every section and key optional, unknown keys refused. Each
//! field's doc comment is the operator's documentation of that key (`config/targeting.toml`
//! repeats it); the defaults are applied, and values checked, when a section is validated in
//! [`super`].

use std::path::PathBuf;

use serde::Deserialize;

/// The settings file as written. Every section and key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    #[serde(default)]
    pub source: SourceSection,
    #[serde(default)]
    pub state: StateSection,
    #[serde(default)]
    pub models: ModelsSection,
    #[serde(default)]
    pub export: ExportSection,
    #[serde(default)]
    pub targeting: TargetingSection,
    #[serde(default)]
    pub runtime: RuntimeSection,
    #[serde(default)]
    pub s3: S3Section,
    #[serde(default)]
    pub scheduler: SchedulerSection,
}

/// `[source]`: where user and commerce data are read from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// sqlx URL of the source database: `sqlite://PATH` or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`. Default `sqlite://demo/source.db`.
    pub database_url: Option<String>,
    /// Folder of the extraction queries (`<table>.sql`, one per contract table). Default: the
    /// queries built into the binary, identical to `sql/queries/`.
    pub queries_dir: Option<PathBuf>,
    /// Rows fetched per batch while streaming a query into a frame. Default 50000.
    pub batch_rows: Option<usize>,
}

/// `[state]`: where the project's own tables (run ledger, assignments) live.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// sqlx URL of the state database. Default: the source database, so that a deployment can
    /// point the source at a read-only replica and keep state elsewhere.
    pub database_url: Option<String>,
}

/// `[models]`: where trained models are stored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsSection {
    /// The model store (`<model>/<version>/…` and `<model>/current`): a folder, a `file://`
    /// URI or `s3://bucket/prefix` (reached like `s3://` exports). Default `demo/models`.
    pub store: Option<String>,
    /// Days after an exposure in which a purchase counts as its outcome. Default 7.
    pub attribution_days: Option<i64>,
    /// Seed of LightGBM and of the train/validation/test split. Default 42.
    pub seed: Option<u64>,
    /// Train on the assignments of past runs too (the state database's history, in the shape
    /// of `campaign_exposures`), so each night's holdouts become training data. Turn it off
    /// when the source's `campaign_exposures` already holds them. Default true.
    pub own_exposures: Option<bool>,
    /// The most exposures training learns from. When the source (with the assignment history)
    /// holds more, training reads a sample of the users instead, cut by the same fixed hash of
    /// `user_id` as shards (see `targeting run --shards`): every exposure of a sampled user,
    /// and every row its features read (friends' orders, gifts received), so that training's
    /// time and memory stay bounded at any number of users. At least 10000. Default 2000000.
    pub max_training_exposures: Option<u64>,
}

/// `[export]`: where target lists are published.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    /// Destination URI of the exports: `file:///absolute/path`, `file://relative/path` or
    /// `s3://bucket/prefix`. Default `file://demo/exports`. A campaign's own
    /// `export.destination` wins.
    pub destination: Option<String>,
    /// Where campaign files may send their lists: URIs (`s3://bucket/prefix`, `file:///path`)
    /// a campaign's own `[export] destination` must equal or lie under. Default: `destination`
    /// alone, so a campaign file can pick a sub-prefix of it and nothing else.
    pub allowed_destinations: Option<Vec<String>>,
    /// Most rows in one part file (1 to 2,000,000). Default 1,000,000.
    pub max_part_rows: Option<usize>,
    /// Most bytes in one part file before compression, in MB (1 to 500). Default 256.
    pub max_part_mb: Option<usize>,
    /// Size of one upload part when a file goes to S3 in parts, in MB (5 to 512). A file
    /// larger than this is uploaded as a multipart upload. Default 8.
    pub upload_part_mb: Option<usize>,
    /// Attempts per object-store request before the campaign fails (1 to 20); transient errors
    /// only (unreachable server, timeouts, 5xx, throttling). Default 5.
    pub attempts: Option<u32>,
    /// Wait before the first retry, in milliseconds, doubled for each further one. Default 200.
    pub retry_backoff_ms: Option<u64>,
}

/// `[s3]`: how `s3://` destinations are reached. Credentials always come from the standard
/// AWS chain (environment, profile, web identity, instance role), never from this file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:9000`. Default: the
    /// standard `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint_url: Option<String>,
    /// Region. Default: the standard chain (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
    /// Address buckets by path (`http://host/bucket/key`), as most S3-compatible servers need.
    /// Default false.
    pub force_path_style: Option<bool>,
}

/// `[scheduler]`: the `targeting schedule` daemon.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSection {
    /// Address of `/healthz` and `/metrics` (Prometheus). Default `127.0.0.1:9184`.
    pub listen: Option<String>,
    /// When campaigns without a `[schedule]` run: a cron expression (optional seconds field)
    /// in `timezone`. Default `"0 2 * * *"` (02:00 every night).
    pub default_cron: Option<String>,
    /// IANA time zone of `default_cron` and `retrain_cron`. Default `"UTC"`.
    pub timezone: Option<String>,
    /// When the models are retrained: a cron expression in `timezone`; `""`: never. Default
    /// `"0 1 * * SUN"` (Sundays at 01:00).
    pub retrain_cron: Option<String>,
    /// On start, a campaign whose last due run in this many hours has not succeeded runs once
    /// (not once per missed firing). 0: no catch-up. Default 24.
    pub catch_up_hours: Option<i64>,
    /// Attempts of a campaign's run when it fails transiently (database or object store
    /// unreachable), the first included. Default 3.
    pub attempts: Option<u32>,
    /// Wait before the second attempt, in seconds, doubled for each further one. Default 60.
    pub retry_backoff_secs: Option<u64>,
    /// At shutdown (SIGTERM, SIGINT), how long a run in progress may take to finish before it
    /// is aborted, in seconds. Default 300.
    pub grace_secs: Option<u64>,
    /// Where the state database is SQLite: how long a campaign's lease lasts without renewal,
    /// in seconds (a crashed holder's lease expires after this). Default 300.
    pub lease_secs: Option<u64>,
}

/// `[targeting]`: rules that hold for every campaign.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetingSection {
    /// Share of all users that no campaign ever reaches (0 to 0.5), for measuring total lift.
    /// Default 0.05.
    pub global_control_share: Option<f64>,
    /// Salt of the global control hash. Changing it reshuffles the global control group, so
    /// set it once per deployment. Default `global-control-v1`.
    pub global_control_salt: Option<String>,
    /// Folder of the campaign files (`*.toml`). Default `config/campaigns`.
    pub campaigns_dir: Option<PathBuf>,
    /// Frequency cap: at most this many messages per user in any window of `cap_days` days,
    /// across all campaigns (0: no cap). Default 3.
    pub max_messages: Option<usize>,
    /// Length of the frequency-cap window, in days (1 to 365). Default 7.
    pub cap_days: Option<i64>,
    /// No discount to a user who got one in the last this many days (0: none), so users are
    /// not trained to wait for deals. Default 14.
    pub discount_cooldown_days: Option<i64>,
    /// Who gets a user wanted by several campaigns on the same night: `priority` (the
    /// campaign's `priority`, default) or `expected_value` (the campaign with the highest
    /// expected incremental profit for that user).
    pub arbitration: Option<segments::Arbitration>,
}

/// `[runtime]`: how the job uses the machine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Threads for LightGBM and polars; 0 = one per core. Default 0.
    pub threads: Option<usize>,
    /// Memory a nightly run may use, in megabytes: the run scores its users in as many shards
    /// as keep it under this, of at most 500k users each (unless `shards` says how many).
    /// Default 2048.
    pub memory_mb: Option<usize>,
    /// Shards a nightly run scores its users in, one after another (1 to 4096); a shard's
    /// users are those of `models::shard::shard_of`. The lists are the same for any number.
    /// Default: as `memory_mb` requires.
    pub shards: Option<u32>,
    /// What evaluates the LightGBM models: `"native"` (the project's own scorer, many times
    /// faster) or `"lightgbm"` (LightGBM's predict). Both give the same scores, bit for bit, and
    /// the same lists; `"lightgbm"` is there to check that, and to score a model the native
    /// scorer refuses (it names what it cannot read). Default `"native"`.
    pub scorer: Option<models::Scorer>,
    /// When the logs do not go to a terminal (a CronJob's, a log collector's), a line at least
    /// this often, in seconds, saying which stage is running and for how long, so that a long
    /// training or extraction is not mistaken for a hang (1 to 3600). Default 60.
    pub heartbeat_secs: Option<u64>,
}

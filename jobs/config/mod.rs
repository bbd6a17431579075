//! Runtime settings: `config/targeting.toml`, overridden by `TARGETING__SECTION__KEY` environment
//! variables, overridden by command-line flags; and the campaign files ([`campaigns`]).
//!
//! The file is parsed into [`SettingsFile`] (which mirrors it and rejects unknown keys, see
//! [`file`]), the overrides are merged in, and each section is validated into its own type here,
//! where its defaults are written, once. A validated section builds what it configures: the
//! source database, the model store, the selection context. Secrets (passwords in database URLs)
//! never appear in messages: [`redact`] is applied to every URL we print.

pub mod campaigns;
mod file;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use segments::rules::Catalog;
use segments::{Campaign, SelectionContext};

pub use file::SettingsFile;
use file::{
    ExportSection, ModelsSection, RuntimeSection, S3Section, SchedulerSection, SourceSection,
    StateSection, TargetingSection,
};

use crate::redact::redact;
use crate::state::db::Db;
use crate::store::{Location, ObjectStore, StoreOptions, MIN_PART_BYTES};

/// Prefix of the environment variables that override settings, e.g.
/// `TARGETING__SOURCE__DATABASE_URL`.
pub const ENV_PREFIX: &str = "TARGETING__";

/// The settings file used when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "config/targeting.toml";

/// A megabyte, as the settings count part and upload sizes.
const MB: usize = 1024 * 1024;

/// Validated settings, by section.
#[derive(Debug, Clone)]
pub struct Settings {
    pub source: SourceSettings,
    /// sqlx URL of the state database (the run ledger, assignments, leases).
    pub state_url: String,
    pub models: ModelSettings,
    pub export: ExportSettings,
    /// How the object store (exports and the model store) connects and retries.
    pub store: StoreOptions,
    pub targeting: TargetingSettings,
    /// The daemon's schedules, retries and shutdown.
    pub scheduler: SchedulerSettings,
    /// Threads for LightGBM and polars.
    pub threads: usize,
    /// How many shards a nightly run scores its users in.
    pub shards: ShardPlan,
    /// What evaluates the LightGBM models.
    pub scorer: models::Scorer,
    /// How often the logs say which stage is running, when they do not go to a terminal.
    pub heartbeat: std::time::Duration,
}

/// How many shards a nightly run scores its users in, one after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardPlan {
    /// Exactly this many (`runtime.shards`, `--shards`).
    Fixed(u32),
    /// As many as keep the run's memory under this many megabytes (`runtime.memory_mb`).
    Budget { memory_mb: usize },
}

/// Memory a run needs per user when scored in one shard, in bytes, and of the process besides
/// (the binary, the models, polars' pools): the demo's nightly run with stored models peaked
/// at 1,445–1,532 MB with 1M users in one shard (`run --dry-run --shards 1`), so 1,500 bytes a
/// user over about 100 MB.
const BYTES_PER_USER: u64 = 1_500;
const BASE_MB: u64 = 100;
/// Of those bytes, what selection keeps of every user until the end of the run, whatever the
/// shards: the sorted ids of each campaign's eligible users (8 bytes each, 1.4 a user in the
/// demo), twice while a shard's are merged in. The candidates kept are cut to what arbitration
/// can reach, a number that does not grow with the users.
const KEPT_BYTES_PER_USER: u64 = 24;
/// Kept besides on a night with a gift campaign: the sorted ids of the users who may be named
/// as a recipient, which every shard reads (`models::features::FriendSignals`).
const GIFT_KEPT_BYTES_PER_USER: u64 = 8;
/// Most users in a shard, whatever the budget. Smaller shards cost no time down to this size:
/// at 1M users, `run --dry-run --shards N` took 11.9–12.7 s for N = 1, 2, 4 and 8 alike, while
/// its peak fell from 1.5 GB to 0.86, 0.55 and 0.42 GB. So memory a run does not need is not
/// taken just because the budget allows it.
const MAX_SHARD_USERS: u64 = 500_000;

impl ShardPlan {
    /// The shards for `users` users (on a night with a gift campaign when `gifts`): with a
    /// budget, the memory left beside what the night keeps of every user is shared out so that
    /// one shard's tables fit in it, and no shard holds more than [`MAX_SHARD_USERS`].
    pub fn shards(self, users: u64, gifts: bool) -> u32 {
        match self {
            ShardPlan::Fixed(n) => n,
            ShardPlan::Budget { memory_mb } => {
                let budget = (memory_mb as u64).saturating_sub(BASE_MB) * MB as u64;
                let kept = KEPT_BYTES_PER_USER + u64::from(gifts) * GIFT_KEPT_BYTES_PER_USER;
                // When what is kept fills the budget (past ~85M users on 2 GB), the most shards
                // keep a shard's share as small as it gets.
                let room = budget.saturating_sub(users * kept).max(1);
                let need = users * (BYTES_PER_USER - KEPT_BYTES_PER_USER);
                need.div_ceil(room)
                    .max(users.div_ceil(MAX_SHARD_USERS))
                    .clamp(1, u64::from(models::shard::MAX_SHARDS)) as u32
            }
        }
    }
}

/// Validated `[source]`.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// sqlx URL of the source database.
    pub url: String,
    /// Folder of the deployment's own extraction queries; `None`: the built-in ones.
    pub queries_dir: Option<PathBuf>,
    /// Rows fetched per batch while streaming a query into a frame.
    pub batch_rows: usize,
}

impl SourceSettings {
    /// Connects to the source database (creating a SQLite file when `create`).
    pub async fn connect(&self, create: bool) -> Result<Db> {
        Db::connect(&self.url, create).await
    }
}

/// Validated `[models]`.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// URI of the model store (`file://…` or `s3://…`).
    pub store: String,
    /// Days after an exposure in which a purchase counts as its outcome.
    pub attribution_days: i64,
    /// Seed of LightGBM and of the train/validation/test split.
    pub seed: u64,
    /// Add the state database's assignment history to the training exposures.
    pub own_exposures: bool,
    /// Above this many exposures, training reads a sample of the users.
    pub max_training_exposures: u64,
}

impl ModelSettings {
    /// The model store, reached like the exports.
    pub async fn open_store(&self, options: &StoreOptions) -> Result<ObjectStore> {
        ObjectStore::open(&self.store, options)
            .await
            .with_context(|| format!("cannot open the model store {}", self.store))
    }
}

/// Validated `[export]`.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// Destination URI of the exports, unless a campaign names its own.
    pub destination: String,
    /// Where parts are cut.
    pub part_limits: PartLimits,
    /// The roots a campaign's own destination must lie under.
    pub allowed: Vec<String>,
}

impl ExportSettings {
    /// Refuses a location a campaign file names (its `field`: `export.destination` or
    /// `export.deliver_to`) outside the allowed roots: the operator, not a campaign file,
    /// decides where the job may write.
    pub fn check_destination(
        &self,
        campaign_id: &str,
        field: &str,
        destination: &str,
    ) -> Result<()> {
        let location = Location::parse(destination)
            .with_context(|| format!("campaign {campaign_id}: {field}"))?;
        let permitted = self
            .allowed
            .iter()
            .any(|root| Location::parse(root).is_ok_and(|root| location.within(&root)));
        if !permitted {
            bail!(
                "campaign {campaign_id}: {field} {} is not under an allowed destination \
                 (export.allowed_destinations: {})",
                redact(destination),
                self.allowed
                    .iter()
                    .map(|d| redact(d))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(())
    }
}

/// Where parts are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartLimits {
    /// Most rows in a part.
    pub max_rows: usize,
    /// Most bytes in a part, counted before compression (so a compressed part is smaller).
    pub max_bytes: usize,
}

impl Default for PartLimits {
    /// Well under the CRM limits (Braze: 500 MB per file; many tools: 2,000,000 rows).
    fn default() -> Self {
        PartLimits {
            max_rows: 1_000_000,
            max_bytes: 256 * MB,
        }
    }
}

/// Validated `[targeting]`.
#[derive(Debug, Clone)]
pub struct TargetingSettings {
    pub global_control_share: f64,
    pub global_control_salt: String,
    pub campaigns_dir: PathBuf,
    /// Frequency cap, discount cooldown and arbitration across campaigns.
    pub limits: segments::Limits,
}

impl TargetingSettings {
    /// What selection needs besides the candidates: these rules, the rule catalogue and the
    /// run's day number.
    pub fn selection_context(&self, catalog: Catalog, run_day: i64) -> SelectionContext {
        SelectionContext {
            global_control_share: self.global_control_share,
            global_control_salt: self.global_control_salt.clone(),
            catalog,
            run_day,
            limits: self.limits,
        }
    }
}

/// Validated `[scheduler]`.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    pub listen: std::net::SocketAddr,
    pub default_schedule: segments::campaign::Schedule,
    pub retrain: Option<segments::campaign::Schedule>,
    pub catch_up: chrono::Duration,
    pub attempts: u32,
    pub retry_backoff: Duration,
    pub grace: Duration,
    pub lease: Duration,
}

/// Overrides given on the command line; `None` leaves the setting alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub database_url: Option<String>,
    pub state_database_url: Option<String>,
    pub exports: Option<String>,
    pub model_store: Option<PathBuf>,
    pub threads: Option<usize>,
    pub shards: Option<u32>,
}

/// Loads settings: the file (`--config`, or `config/targeting.toml` when it exists), then the
/// environment, then the flags.
pub fn load(config: Option<&Path>, overrides: &Overrides) -> Result<Settings> {
    let (path, explicit) = match config {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => bail!("cannot read settings file {}: {e}", path.display()),
    };
    let origin = path.display().to_string();
    let mut table: toml::Table = parse_located(&origin, &text)?;
    // Check the file alone first, so that its errors carry a line and column.
    parse_located::<SettingsFile>(&origin, &text)?;
    // One variable at a time, so that an error names the variable at fault.
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (key, value) in &vars {
        let path = &key[ENV_PREFIX.len()..];
        let mut typed = table.clone();
        apply_env(&mut typed, key, path, value, true)?;
        if fits(&typed).is_ok() {
            table = typed;
            continue;
        }
        // A value that reads as a number or a boolean may be meant as text (a salt `2024`).
        let mut text = table.clone();
        apply_env(&mut text, key, path, value, false)?;
        if let Err(e) = fits(&text) {
            bail!("environment variable {key}: {}", e.message().trim());
        }
        table = text;
    }
    let file = fits(&table).map_err(|e| anyhow::anyhow!("settings: {}", e.message().trim()))?;
    file.validate(overrides)
        .with_context(|| format!("invalid settings ({origin} and {ENV_PREFIX}* variables)"))
}

/// Parses TOML, reporting errors as `origin:line:column: message` on one line.
pub fn parse_located<T: serde::de::DeserializeOwned>(origin: &str, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let at = segments::campaign::locate(origin, text, e.span());
        anyhow::anyhow!("{at}: {}", e.message().trim())
    })
}

/// The settings file a table of settings makes, if it makes one.
fn fits(table: &toml::Table) -> Result<SettingsFile, toml::de::Error> {
    table.clone().try_into()
}

/// Sets `section.key` from `TARGETING__SECTION__KEY`. With `typed`, the value is read as a TOML
/// value when it is one (numbers, booleans, arrays), else as a string; without, as a string.
fn apply_env(
    table: &mut toml::Table,
    var: &str,
    path: &str,
    value: &str,
    typed: bool,
) -> Result<()> {
    let parts: Vec<String> = path.split("__").map(str::to_lowercase).collect();
    let [section, key] = parts.as_slice() else {
        bail!("environment variable {var} must look like {ENV_PREFIX}SECTION__KEY");
    };
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .filter(|_| typed)
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let section = table
        .entry(section.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(section) = section.as_table_mut() else {
        bail!("environment variable {var}: {} is not a section", parts[0]);
    };
    section.insert(key.clone(), parsed);
    Ok(())
}

/// Refuses a database URL sqlx cannot reach.
fn check_database_url(field: &str, url: &str) -> Result<()> {
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        bail!(
            "{field} {} must start with sqlite: or postgres://",
            redact(url)
        );
    }
    Ok(())
}

impl SettingsFile {
    fn validate(self, o: &Overrides) -> Result<Settings> {
        let source = self.source.validate(o)?;
        let state_url = self.state.validate(o, &source.url)?;
        let store = self.s3.validate(&self.export)?;
        Ok(Settings {
            state_url,
            export: self.export.validate(o)?,
            store,
            models: self.models.validate(o)?,
            targeting: self.targeting.validate()?,
            scheduler: self.scheduler.validate()?,
            threads: self.runtime.threads(o)?,
            shards: self.runtime.shards(o)?,
            scorer: self.runtime.scorer.unwrap_or_default(),
            heartbeat: self.runtime.heartbeat()?,
            source,
        })
    }
}

impl SourceSection {
    fn validate(self, o: &Overrides) -> Result<SourceSettings> {
        let url = o
            .database_url
            .clone()
            .or(self.database_url)
            .unwrap_or_else(|| "sqlite://demo/source.db".into());
        check_database_url("source.database_url", &url)?;
        let batch_rows = self.batch_rows.unwrap_or(50_000);
        if batch_rows == 0 {
            bail!("source.batch_rows must be at least 1");
        }
        Ok(SourceSettings {
            url,
            queries_dir: self.queries_dir,
            batch_rows,
        })
    }
}

impl StateSection {
    /// The state database's URL: the source's unless set.
    fn validate(self, o: &Overrides, source_url: &str) -> Result<String> {
        let url = o
            .state_database_url
            .clone()
            .or(self.database_url)
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| source_url.to_string());
        check_database_url("state.database_url", &url)?;
        Ok(url)
    }
}

impl ExportSection {
    fn validate(self, o: &Overrides) -> Result<ExportSettings> {
        let destination = o
            .exports
            .clone()
            .or(self.destination)
            .unwrap_or_else(|| "file://demo/exports".into());
        Location::parse(&destination)
            .context("export.destination must be a file:// or s3:// URI")?;
        let defaults = PartLimits::default();
        let max_rows = self.max_part_rows.unwrap_or(defaults.max_rows);
        if !(1..=2_000_000).contains(&max_rows) {
            bail!("export.max_part_rows must be between 1 and 2000000, got {max_rows}");
        }
        let max_mb = self.max_part_mb.unwrap_or(defaults.max_bytes / MB);
        if !(1..=500).contains(&max_mb) {
            bail!("export.max_part_mb must be between 1 and 500, got {max_mb}");
        }
        let allowed = self
            .allowed_destinations
            .unwrap_or_else(|| vec![destination.clone()]);
        for root in &allowed {
            Location::parse(root).with_context(|| {
                format!(
                    "export.allowed_destinations: {} must be a file:// or s3:// URI",
                    redact(root)
                )
            })?;
        }
        Ok(ExportSettings {
            destination,
            allowed,
            part_limits: PartLimits {
                max_rows,
                max_bytes: max_mb * MB,
            },
        })
    }
}

impl S3Section {
    /// The object store's options: how `[s3]` reaches a server, and the upload and retry
    /// settings of `[export]`.
    fn validate(self, export: &ExportSection) -> Result<StoreOptions> {
        let defaults = StoreOptions::default();
        let upload_mb = export.upload_part_mb.unwrap_or(defaults.part_bytes / MB);
        // S3 refuses parts smaller than its minimum (except an upload's last).
        let min_mb = MIN_PART_BYTES / MB;
        if !(min_mb..=512).contains(&upload_mb) {
            bail!("export.upload_part_mb must be between {min_mb} and 512, got {upload_mb}");
        }
        let attempts = export.attempts.unwrap_or(defaults.attempts);
        if !(1..=20).contains(&attempts) {
            bail!("export.attempts must be between 1 and 20, got {attempts}");
        }
        if let Some(endpoint) = &self.endpoint_url {
            if url::Url::parse(endpoint).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                bail!(
                    "s3.endpoint_url {} must be an http(s) URL",
                    redact(endpoint)
                );
            }
        }
        Ok(StoreOptions {
            endpoint_url: self.endpoint_url,
            region: self.region,
            force_path_style: self.force_path_style.unwrap_or(defaults.force_path_style),
            part_bytes: upload_mb * MB,
            attempts,
            initial_backoff: export
                .retry_backoff_ms
                .map_or(defaults.initial_backoff, Duration::from_millis),
        })
    }
}

impl ModelsSection {
    fn validate(self, o: &Overrides) -> Result<ModelSettings> {
        let store = o
            .model_store
            .as_ref()
            .map(|p| p.display().to_string())
            .or(self.store)
            .unwrap_or_else(|| "demo/models".into());
        // A plain folder is a `file://` store.
        let store = if store.starts_with("s3://") || store.starts_with("file://") {
            store
        } else {
            format!("file://{store}")
        };
        Location::parse(&store)
            .context("models.store must be a folder, a file:// URI or an s3:// URI")?;
        let attribution_days = self.attribution_days.unwrap_or(7);
        if !(1..=90).contains(&attribution_days) {
            bail!("models.attribution_days must be between 1 and 90, got {attribution_days}");
        }
        let max_training_exposures = self.max_training_exposures.unwrap_or(2_000_000);
        if max_training_exposures < 10_000 {
            bail!("models.max_training_exposures must be at least 10000, got {max_training_exposures}");
        }
        Ok(ModelSettings {
            store,
            attribution_days,
            seed: self.seed.unwrap_or(42),
            own_exposures: self.own_exposures.unwrap_or(true),
            max_training_exposures,
        })
    }
}

impl TargetingSection {
    fn validate(self) -> Result<TargetingSettings> {
        let share = self.global_control_share.unwrap_or(0.05);
        if !(0.0..=0.5).contains(&share) {
            bail!("targeting.global_control_share must be between 0 and 0.5, got {share}");
        }
        let cap_days = self.cap_days.unwrap_or(7);
        if !(1..=365).contains(&cap_days) {
            bail!("targeting.cap_days must be between 1 and 365, got {cap_days}");
        }
        let cooldown = self.discount_cooldown_days.unwrap_or(14);
        if !(0..=365).contains(&cooldown) {
            bail!("targeting.discount_cooldown_days must be between 0 and 365, got {cooldown}");
        }
        Ok(TargetingSettings {
            global_control_share: share,
            global_control_salt: self
                .global_control_salt
                .unwrap_or_else(|| "global-control-v1".into()),
            campaigns_dir: self
                .campaigns_dir
                .unwrap_or_else(|| PathBuf::from("config/campaigns")),
            limits: segments::Limits {
                max_messages: self.max_messages.unwrap_or(3),
                cap_days,
                discount_cooldown_days: cooldown,
                arbitration: self.arbitration.unwrap_or_default(),
            },
        })
    }
}

impl SchedulerSection {
    fn validate(self) -> Result<SchedulerSettings> {
        let listen = self.listen.as_deref().unwrap_or("127.0.0.1:9184");
        let listen = listen.parse().map_err(|_| {
            anyhow::anyhow!(
                "scheduler.listen {listen:?} must be an IP address and port, e.g. \"127.0.0.1:9184\""
            )
        })?;
        let schedule = |field: &str, cron: &str| {
            segments::campaign::Schedule::parse(cron, self.timezone.as_deref())
                .map_err(|(_, message)| anyhow::anyhow!("scheduler.{field}: {message}"))
        };
        let default_schedule = schedule(
            "default_cron",
            self.default_cron.as_deref().unwrap_or("0 2 * * *"),
        )?;
        let retrain = match self.retrain_cron.as_deref().unwrap_or("0 1 * * SUN") {
            "" => None,
            cron => Some(schedule("retrain_cron", cron)?),
        };
        let catch_up_hours = self.catch_up_hours.unwrap_or(24);
        if !(0..=24 * 31).contains(&catch_up_hours) {
            bail!("scheduler.catch_up_hours must be between 0 and 744, got {catch_up_hours}");
        }
        let attempts = self.attempts.unwrap_or(3);
        if !(1..=10).contains(&attempts) {
            bail!("scheduler.attempts must be between 1 and 10, got {attempts}");
        }
        let lease = self.lease_secs.unwrap_or(300);
        if lease < 3 {
            bail!("scheduler.lease_secs must be at least 3, got {lease}");
        }
        Ok(SchedulerSettings {
            listen,
            default_schedule,
            retrain,
            catch_up: chrono::Duration::hours(catch_up_hours),
            attempts,
            retry_backoff: Duration::from_secs(self.retry_backoff_secs.unwrap_or(60)),
            grace: Duration::from_secs(self.grace_secs.unwrap_or(300)),
            lease: Duration::from_secs(lease),
        })
    }
}

/// Most threads a job may ask for: far above any machine's cores, far below what exhausts one.
const MAX_THREADS: usize = 512;

impl RuntimeSection {
    /// Shards: the flag, else the setting, else as the memory budget requires.
    fn heartbeat(&self) -> Result<std::time::Duration> {
        match self.heartbeat_secs.unwrap_or(60) {
            secs @ 1..=3600 => Ok(std::time::Duration::from_secs(secs)),
            secs => bail!("runtime.heartbeat_secs must be between 1 and 3600, got {secs}"),
        }
    }

    fn shards(&self, o: &Overrides) -> Result<ShardPlan> {
        let max = models::shard::MAX_SHARDS;
        match o.shards.or(self.shards) {
            Some(n) if n == 0 || n > max => {
                bail!("runtime.shards (or --shards) must be between 1 and {max}, got {n}")
            }
            Some(n) => Ok(ShardPlan::Fixed(n)),
            None => match self.memory_mb.unwrap_or(2048) {
                m if m < 256 => bail!("runtime.memory_mb must be at least 256, got {m}"),
                memory_mb => Ok(ShardPlan::Budget { memory_mb }),
            },
        }
    }

    /// Threads: the flag, else the setting; 0 is one per core.
    fn threads(&self, o: &Overrides) -> Result<usize> {
        match o.threads.or(self.threads).unwrap_or(0) {
            0 => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
            n if n > MAX_THREADS => {
                bail!("runtime.threads (or --threads) must be between 0 and {MAX_THREADS}, got {n}")
            }
            n => Ok(n),
        }
    }
}

impl Settings {
    /// Every campaign file of `targeting.campaigns_dir`, validated, with each campaign's own
    /// destination checked against `export.allowed_destinations`.
    pub fn campaigns(&self) -> Result<Vec<Campaign>> {
        let all = campaigns::load(std::slice::from_ref(&self.targeting.campaigns_dir))?;
        self.check_destinations(&all)?;
        Ok(all)
    }

    /// The campaigns of `targeting.campaigns_dir` that validate, and the broken files (see
    /// [`campaigns::load_each`]).
    pub fn campaigns_each(&self) -> Result<(Vec<Campaign>, Vec<campaigns::BrokenFile>)> {
        let (all, broken) =
            campaigns::load_each(std::slice::from_ref(&self.targeting.campaigns_dir))?;
        self.check_destinations(&all)?;
        Ok((all, broken))
    }

    /// Checks every campaign's own destination, and the prefix it delivers to, against
    /// `export.allowed_destinations`; and that no delivery prefix overlaps a campaign's run
    /// folders, whose manifests and markers the CRM watching it would ingest as data.
    pub fn check_destinations(&self, campaigns: &[Campaign]) -> Result<()> {
        for c in campaigns {
            if let Some(d) = &c.destination {
                self.export
                    .check_destination(&c.id, "export.destination", d)?;
            }
        }
        for c in campaigns {
            let Some(to) = &c.deliver_to else { continue };
            self.export
                .check_destination(&c.id, "export.deliver_to", to)?;
            let watched = Location::parse(to)
                .with_context(|| format!("campaign {}: export.deliver_to", c.id))?;
            for other in campaigns {
                let destination = other
                    .destination
                    .as_deref()
                    .unwrap_or(&self.export.destination);
                let folders = format!("{}/{}", destination.trim_end_matches('/'), other.id);
                let Ok(folders_at) = Location::parse(&folders) else {
                    continue;
                };
                if watched.within(&folders_at) || folders_at.within(&watched) {
                    bail!(
                        "campaign {}: export.deliver_to {} overlaps the run folders of campaign \
                         {} ({folders}): the CRM watching it would ingest their manifests and \
                         markers; deliver to a prefix of its own",
                        c.id,
                        redact(to),
                        other.id,
                    );
                }
            }
        }
        Ok(())
    }

    /// The state database (the source's pool when they are the same database), with its tables
    /// created or updated: the one place the state is migrated.
    pub async fn state_db(&self, source: &Db) -> Result<Db> {
        let state = if self.state_url == self.source.url {
            source.clone()
        } else {
            Db::connect(&self.state_url, true).await?
        };
        state.migrate_state().await?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_typed() {
        let mut t = toml::Table::new();
        apply_env(&mut t, "TARGETING__SHARE", "SHARE", "0.1", true).unwrap_err();
        apply_env(&mut t, "V", "TARGETING__GLOBAL_CONTROL_SHARE", "0.1", true).unwrap();
        apply_env(&mut t, "V", "SOURCE__DATABASE_URL", "postgres://x/y", true).unwrap();
        let f: SettingsFile = t.try_into().unwrap();
        assert_eq!(f.targeting.global_control_share, Some(0.1));
        assert_eq!(f.source.database_url.as_deref(), Some("postgres://x/y"));
    }

    #[test]
    fn shards_follow_the_flag_the_setting_or_the_memory_budget() {
        let mut f = SettingsFile::default();
        let s = f.clone().validate(&Overrides::default()).unwrap();
        assert_eq!(s.shards, ShardPlan::Budget { memory_mb: 2048 });
        assert_eq!(s.shards.shards(100_000, false), 1);
        assert_eq!(s.shards.shards(500_000, false), 1);
        // No shard holds more than 500k users, whatever the budget.
        assert_eq!(s.shards.shards(1_000_000, false), 2);
        assert_eq!(
            ShardPlan::Budget { memory_mb: 65_536 }.shards(10_000_000, false),
            20
        );
        // A small budget takes more shards: 1M users in 512 MB, of which ~24 MB is what
        // selection keeps, take about four.
        let n = ShardPlan::Budget { memory_mb: 512 }.shards(1_000_000, false);
        assert!((4..=6).contains(&n), "{n}");
        // A night with a gift campaign keeps 8 bytes a user more: at 60M users on 2 GB, what
        // is kept (1.44 GB, or 1.92 GB) leaves a shard a fifth of the room.
        let plain = ShardPlan::Budget { memory_mb: 2048 }.shards(60_000_000, false);
        let gifts = ShardPlan::Budget { memory_mb: 2048 }.shards(60_000_000, true);
        assert!(
            gifts > plain,
            "{plain} shards, {gifts} with a gift campaign"
        );
        // Past ~85M users on 2 GB, what is kept fills the budget: the most shards there may be.
        let max = models::shard::MAX_SHARDS;
        assert_eq!(s.shards.shards(100_000_000, false), max);
        f.runtime.shards = Some(3);
        assert_eq!(
            f.clone().validate(&Overrides::default()).unwrap().shards,
            ShardPlan::Fixed(3)
        );
        let o = Overrides {
            shards: Some(8),
            ..Overrides::default()
        };
        assert_eq!(f.clone().validate(&o).unwrap().shards.shards(5, false), 8);
        let o = Overrides {
            shards: Some(0),
            ..Overrides::default()
        };
        let e = f.validate(&o).unwrap_err().to_string();
        assert_eq!(
            e,
            "runtime.shards (or --shards) must be between 1 and 4096, got 0"
        );
    }

    #[test]
    fn runaway_thread_counts_are_refused() {
        let o = Overrides {
            threads: Some(100_000),
            ..Overrides::default()
        };
        let e = SettingsFile::default().validate(&o).unwrap_err();
        assert_eq!(
            e.to_string(),
            "runtime.threads (or --threads) must be between 0 and 512, got 100000"
        );
    }

    /// A prefix a CRM watches must be somewhere the job may write, and apart from every
    /// campaign's run folders (their manifests and markers would be ingested as data).
    #[test]
    fn a_delivery_prefix_stays_apart_from_run_folders() {
        let s = SettingsFile::default()
            .validate(&Overrides::default())
            .unwrap();
        let dir = std::env::temp_dir().join(format!("deliver-to-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let campaign = |id: &str, export: &str| {
            let path = dir.join(format!("{id}.toml"));
            std::fs::write(
                &path,
                format!(
                    "format_version = 1\nid = \"{id}\"\nkind = \"new_buyer\"\nholdout = 0.1\n\
                     max_audience = 100\n[export]\n{export}\n"
                ),
            )
            .unwrap();
            campaigns::load(&[path]).unwrap().remove(0)
        };
        let check = |to: &str| {
            let cdi = campaign(
                "cdi",
                &format!("columns = \"braze_cdi\"\ndeliver_to = \"{to}\""),
            );
            s.check_destinations(&[campaign("other", ""), cdi])
                .map_err(|e| format!("{e:#}"))
        };
        assert!(check("file://demo/exports/braze-cdi").is_ok());
        let err = check("file://demo/exports").unwrap_err();
        assert_eq!(
            err,
            "campaign cdi: export.deliver_to file://demo/exports overlaps the run folders of \
             campaign other (file://demo/exports/other): the CRM watching it would ingest their \
             manifests and markers; deliver to a prefix of its own"
        );
        let err = check("file://demo/exports/cdi/watched").unwrap_err();
        assert!(
            err.contains("overlaps the run folders of campaign cdi"),
            "{err}"
        );
        let err = check("file://elsewhere").unwrap_err();
        assert!(
            err.starts_with("campaign cdi: export.deliver_to file://elsewhere")
                && err.contains("is not under an allowed destination"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let s = SettingsFile::default()
            .validate(&Overrides::default())
            .unwrap();
        assert_eq!(s.source.url, "sqlite://demo/source.db");
        assert_eq!(s.state_url, s.source.url);
        assert_eq!(s.source.batch_rows, 50_000);
        assert_eq!(s.models.store, "file://demo/models");
        assert_eq!((s.models.attribution_days, s.models.seed), (7, 42));
        assert_eq!(s.export.destination, "file://demo/exports");
        assert_eq!(s.export.part_limits, PartLimits::default());
        assert_eq!(s.store, StoreOptions::default());
        assert_eq!(s.targeting.global_control_share, 0.05);
        assert_eq!(s.targeting.limits.max_messages, 3);
        assert_eq!(
            s.targeting.limits.arbitration,
            segments::Arbitration::Priority
        );
        assert_eq!(s.scheduler.attempts, 3);
    }
}

//! Runtime settings: `config/targeting.toml`, overridden by `TARGETING__SECTION__KEY` environment
//! variables, overridden by command-line flags.
//!
//! The file is parsed into [`SettingsFile`] (which mirrors it and rejects unknown keys), the
//! overrides are merged in, and the result is validated into [`Settings`]. Secrets (passwords
//! in database URLs) never appear in messages: [`redact`] is applied to every URL we print.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Prefix of the environment variables that override settings, e.g.
/// `TARGETING__SOURCE__DATABASE_URL`.
pub const ENV_PREFIX: &str = "TARGETING__";

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
}

/// `[export]`: where target lists are published.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    /// Destination URI of the exports: `file:///absolute/path`, `file://relative/path` or
    /// `s3://bucket/prefix`. Default `file://demo/exports`. A campaign's own
    /// `export.destination` wins.
    pub destination: Option<String>,
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

/// Validated `[scheduler]` settings.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    pub listen: std::net::SocketAddr,
    pub default_schedule: segments::campaign::Schedule,
    pub retrain: Option<segments::campaign::Schedule>,
    pub catch_up: chrono::Duration,
    pub attempts: u32,
    pub retry_backoff: std::time::Duration,
    pub grace: std::time::Duration,
    pub lease: std::time::Duration,
}

impl SchedulerSection {
    fn validate(self) -> Result<SchedulerSettings> {
        let listen = self.listen.as_deref().unwrap_or("127.0.0.1:9184");
        let listen = listen.parse().map_err(|_| {
            anyhow::anyhow!("scheduler.listen {listen:?} must be an IP address and port, e.g. \"127.0.0.1:9184\"")
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
            retry_backoff: std::time::Duration::from_secs(self.retry_backoff_secs.unwrap_or(60)),
            grace: std::time::Duration::from_secs(self.grace_secs.unwrap_or(300)),
            lease: std::time::Duration::from_secs(lease),
        })
    }
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
    pub arbitration: Option<String>,
}

/// `[runtime]`: how the job uses the machine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Threads for LightGBM and polars; 0 = one per core. Default 0.
    pub threads: Option<usize>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub source_url: String,
    pub state_url: String,
    pub queries_dir: Option<PathBuf>,
    pub batch_rows: usize,
    /// URI of the model store (`file://…` or `s3://…`).
    pub model_store: String,
    pub attribution_days: i64,
    pub seed: u64,
    /// Add the state database's assignment history to the training exposures.
    pub own_exposures: bool,
    pub export_destination: String,
    /// Where parts are cut.
    pub part_limits: crate::publish::PartLimits,
    /// How the object store connects and retries.
    pub store: crate::store::StoreOptions,
    /// The daemon's schedules, retries and shutdown.
    pub scheduler: SchedulerSettings,
    pub global_control_share: f64,
    pub global_control_salt: String,
    pub campaigns_dir: PathBuf,
    /// Frequency cap, discount cooldown and arbitration across campaigns.
    pub limits: segments::Limits,
    pub threads: usize,
}

/// Overrides given on the command line; `None` leaves the setting alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub database_url: Option<String>,
    pub state_database_url: Option<String>,
    pub exports: Option<String>,
    pub model_store: Option<PathBuf>,
    pub threads: Option<usize>,
}

/// The settings file used when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "config/targeting.toml";

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
    for (key, value) in std::env::vars() {
        if let Some(path) = key.strip_prefix(ENV_PREFIX) {
            apply_env(&mut table, &key, path, &value)?;
        }
    }
    let file: SettingsFile = table
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("environment override: {}", e.message()))?;
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

/// Sets `section.key` from `TARGETING__SECTION__KEY`. The value is read as a TOML value when it
/// is one (numbers, booleans), else as a string.
fn apply_env(table: &mut toml::Table, var: &str, path: &str, value: &str) -> Result<()> {
    let parts: Vec<String> = path.split("__").map(str::to_lowercase).collect();
    let [section, key] = parts.as_slice() else {
        bail!("environment variable {var} must look like {ENV_PREFIX}SECTION__KEY");
    };
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
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

impl SettingsFile {
    fn validate(self, o: &Overrides) -> Result<Settings> {
        let source_url = o
            .database_url
            .clone()
            .or(self.source.database_url)
            .unwrap_or_else(|| "sqlite://demo/source.db".into());
        let state_url = o
            .state_database_url
            .clone()
            .or(self.state.database_url)
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| source_url.clone());
        for (field, url) in [
            ("source.database_url", &source_url),
            ("state.database_url", &state_url),
        ] {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                bail!(
                    "{field} {} must start with sqlite: or postgres://",
                    redact(url)
                );
            }
        }
        let export_destination = o
            .exports
            .clone()
            .or(self.export.destination)
            .unwrap_or_else(|| "file://demo/exports".into());
        crate::store::Location::parse(&export_destination)
            .context("export.destination must be a file:// or s3:// URI")?;
        let max_rows = self.export.max_part_rows.unwrap_or(1_000_000);
        if !(1..=2_000_000).contains(&max_rows) {
            bail!("export.max_part_rows must be between 1 and 2000000, got {max_rows}");
        }
        let max_mb = self.export.max_part_mb.unwrap_or(256);
        if !(1..=500).contains(&max_mb) {
            bail!("export.max_part_mb must be between 1 and 500, got {max_mb}");
        }
        let upload_mb = self.export.upload_part_mb.unwrap_or(8);
        if !(5..=512).contains(&upload_mb) {
            bail!("export.upload_part_mb must be between 5 and 512, got {upload_mb}");
        }
        let attempts = self.export.attempts.unwrap_or(5);
        if !(1..=20).contains(&attempts) {
            bail!("export.attempts must be between 1 and 20, got {attempts}");
        }
        if let Some(endpoint) = &self.s3.endpoint_url {
            if url::Url::parse(endpoint).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                bail!(
                    "s3.endpoint_url {} must be an http(s) URL",
                    redact(endpoint)
                );
            }
        }
        let model_store = o
            .model_store
            .as_ref()
            .map(|p| p.display().to_string())
            .or(self.models.store)
            .unwrap_or_else(|| "demo/models".into());
        let model_store = if model_store.starts_with("s3://") || model_store.starts_with("file://")
        {
            model_store
        } else {
            format!("file://{model_store}")
        };
        crate::store::Location::parse(&model_store)
            .context("models.store must be a folder, a file:// URI or an s3:// URI")?;
        const MB: usize = 1024 * 1024;
        let store = crate::store::StoreOptions {
            endpoint_url: self.s3.endpoint_url,
            region: self.s3.region,
            force_path_style: self.s3.force_path_style.unwrap_or(false),
            part_bytes: upload_mb * MB,
            attempts,
            initial_backoff: std::time::Duration::from_millis(
                self.export.retry_backoff_ms.unwrap_or(200),
            ),
        };
        let share = self.targeting.global_control_share.unwrap_or(0.05);
        if !(0.0..=0.5).contains(&share) {
            bail!("targeting.global_control_share must be between 0 and 0.5, got {share}");
        }
        let batch_rows = self.source.batch_rows.unwrap_or(50_000);
        if batch_rows == 0 {
            bail!("source.batch_rows must be at least 1");
        }
        let attribution_days = self.models.attribution_days.unwrap_or(7);
        if !(1..=90).contains(&attribution_days) {
            bail!("models.attribution_days must be between 1 and 90, got {attribution_days}");
        }
        let cap_days = self.targeting.cap_days.unwrap_or(7);
        if !(1..=365).contains(&cap_days) {
            bail!("targeting.cap_days must be between 1 and 365, got {cap_days}");
        }
        let cooldown = self.targeting.discount_cooldown_days.unwrap_or(14);
        if !(0..=365).contains(&cooldown) {
            bail!("targeting.discount_cooldown_days must be between 0 and 365, got {cooldown}");
        }
        let arbitration = match self.targeting.arbitration.as_deref() {
            None | Some("priority") => segments::Arbitration::Priority,
            Some("expected_value") => segments::Arbitration::ExpectedValue,
            Some(other) => bail!(
                "targeting.arbitration {other:?} is not one of \"priority\", \"expected_value\""
            ),
        };
        let limits = segments::Limits {
            max_messages: self.targeting.max_messages.unwrap_or(3),
            cap_days,
            discount_cooldown_days: cooldown,
            arbitration,
        };
        let threads = match o.threads.or(self.runtime.threads).unwrap_or(0) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(Settings {
            source_url,
            state_url,
            queries_dir: self.source.queries_dir,
            batch_rows,
            model_store,
            attribution_days,
            seed: self.models.seed.unwrap_or(42),
            own_exposures: self.models.own_exposures.unwrap_or(true),
            export_destination,
            part_limits: crate::publish::PartLimits {
                max_rows,
                max_bytes: max_mb * MB,
            },
            store,
            scheduler: self.scheduler.validate()?,
            global_control_share: share,
            global_control_salt: self
                .targeting
                .global_control_salt
                .unwrap_or_else(|| "global-control-v1".into()),
            campaigns_dir: self
                .targeting
                .campaigns_dir
                .unwrap_or_else(|| PathBuf::from("config/campaigns")),
            limits,
            threads,
        })
    }
}

/// The URL with any password (user-info or `password=` parameter) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Not a URL we can take apart: print nothing after the scheme rather than a secret.
        return match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***"),
            None => "***".into(),
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let secret =
                k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword");
            (
                k.into_owned(),
                if secret { "***".into() } else { v.into_owned() },
            )
        })
        .collect();
    if !pairs.is_empty() {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/shop"),
            "postgres://app:***@db:5432/shop"
        );
        assert_eq!(
            redact("postgres://db/shop?user=app&password=s3cret"),
            "postgres://db/shop?user=app&password=***"
        );
        assert_eq!(redact("sqlite://demo/source.db"), "sqlite://demo/source.db");
    }

    #[test]
    fn env_values_are_typed() {
        let mut t = toml::Table::new();
        apply_env(&mut t, "TARGETING__SHARE", "SHARE", "0.1").unwrap_err();
        apply_env(&mut t, "V", "TARGETING__GLOBAL_CONTROL_SHARE", "0.1").unwrap();
        apply_env(&mut t, "V", "SOURCE__DATABASE_URL", "postgres://x/y").unwrap();
        let f: SettingsFile = t.try_into().unwrap();
        assert_eq!(f.targeting.global_control_share, Some(0.1));
        assert_eq!(f.source.database_url.as_deref(), Some("postgres://x/y"));
    }
}

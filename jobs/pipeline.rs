//! The nightly run: `extract → featurize → score → select → publish → record`.
//!
//! Every campaign of the run gets a ledger row before any work starts, so a run that dies in an
//! early stage still says so. Each campaign is then published on its own: its parts and
//! manifest, its assignments, and only then `_SUCCESS`; a campaign that fails leaves no files
//! and a `failed` ledger row, and the others still publish.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{NaiveDate, Utc};
use models::metrics::{bootstrap, qini_auc_score, Interval};
use models::training::{
    score_users, train_discount_sensitivity, train_uplift, HeldOut, Scorers, TrainedClassifier,
    TrainedUplift, UpliftTarget, CONVERSION_UPLIFT, DISCOUNT_SENSITIVITY, DISCOUNT_UPLIFT,
    MODEL_NAMES,
};
use models::uplift::Classifier;
use models::{
    CategoricalLevels, ModelArtifact, ScoredFrame, SourceTables, TrainingOptions, UpliftModel,
    UpliftParams,
};
use polars::prelude::*;
use rand::Rng;
use segments::{select_night, Arm, Audience, Campaign, CampaignKind, FunnelStep, SelectionContext};
use tracing::{info, info_span, warn, Instrument};

use crate::db::Db;
use crate::extract::extract;
use crate::ledger::{self, Finish, Status};
use crate::publish::{self, ExportRequest};
use crate::settings::Settings;
use crate::store::ObjectStore;

/// What to run.
#[derive(Debug)]
pub struct RunRequest<'a> {
    pub settings: &'a Settings,
    pub date: NaiveDate,
    /// The night's campaigns: all of them take part in arbitration, so a user's campaign for a
    /// night does not depend on how the night is split into runs.
    pub campaigns: Vec<Campaign>,
    /// The campaigns this run publishes (ids); empty: all of them.
    pub only: Vec<String>,
    /// Preview only: select and report, but publish and record nothing.
    pub dry_run: bool,
    /// Train a new model instead of scoring with the store's `current` one.
    pub retrain: bool,
    /// True effects by user (the demo's truth), for the feature-ceiling diagnostic of training.
    pub known_effects: Option<KnownEffects>,
}

/// True individual effects by user: see [`TrainingOptions::known_effects`].
pub type KnownEffects = std::sync::Arc<std::collections::HashMap<i64, f64>>;

/// The model a run scored with.
#[derive(Debug, Clone)]
pub struct ModelUsed {
    pub version: String,
    pub learner: &'static str,
    /// Trained by this run (else loaded from the store).
    pub trained: bool,
    /// Held-out Qini AUC: with its bootstrap interval when trained now, from the metadata (no
    /// interval) when loaded.
    pub qini_auc: Interval,
    /// The held-out exposures, when trained now.
    pub test: HeldOut,
    /// Version and held-out Qini AUC of the discount uplift model.
    pub discount_version: String,
    pub discount_qini_auc: f64,
    /// Version and held-out AUC of the discount-sensitivity model.
    pub sensitivity_version: String,
    pub sensitivity_auc: f64,
}

/// How one campaign of the run ended.
#[derive(Debug, Clone)]
pub struct CampaignReport {
    pub campaign_id: String,
    pub kind: &'static str,
    pub funnel: Vec<FunnelStep>,
    pub eligible: usize,
    /// Users exported (treatment arm).
    pub audience: usize,
    pub holdout: usize,
    /// Expected incremental purchases from the exported users (the sum of their uplift).
    pub expected_conversions: f64,
    /// Expected discount given to the exported users, in list prices of a purchase.
    pub expected_discount_cost: f64,
    /// For each other campaign of the night, how many eligible users both wanted.
    pub overlap: Vec<(String, usize)>,
    pub export_uri: Option<String>,
    pub error: Option<String>,
    /// The error may go away on its own (the database or the object store was unreachable):
    /// a scheduler may try again.
    pub transient: bool,
}

/// Whether a failure may go away on its own: the object store or the database could not be
/// reached, or timed out.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::store::StoreError>()
            .is_some_and(|s| s.is_transient())
            || c.downcast_ref::<sqlx::Error>().is_some_and(|s| {
                matches!(
                    s,
                    sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
                )
            })
    })
}

impl CampaignReport {
    fn new(c: &Campaign, audience: Option<Audience>, export_uri: Option<String>) -> Self {
        let a = audience.unwrap_or_else(|| Audience {
            campaign_id: c.id.clone(),
            funnel: vec![],
            members: vec![],
            overlap: vec![],
        });
        CampaignReport {
            campaign_id: c.id.clone(),
            kind: c.kind.name(),
            eligible: a.eligible(),
            audience: a.count(Arm::Treatment),
            holdout: a.count(Arm::Holdout),
            expected_conversions: a.expected_conversions(),
            expected_discount_cost: a.expected_discount_cost(),
            overlap: a.overlap,
            funnel: a.funnel,
            export_uri,
            error: None,
            transient: false,
        }
    }
}

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    pub run_id: String,
    pub run_date: NaiveDate,
    pub users: usize,
    pub model: ModelUsed,
    /// Every user's predicted discount sensitivity, by user id.
    pub sensitivity: (Vec<i64>, Vec<f64>),
    pub campaigns: Vec<CampaignReport>,
}

impl RunReport {
    pub fn failed(&self) -> Vec<&CampaignReport> {
        self.campaigns
            .iter()
            .filter(|c| c.error.is_some())
            .collect()
    }
}

/// Midnight UTC of a date, as Unix seconds: the cutoff of everything computed for that date.
pub fn cutoff_of(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp()
}

/// A new run id: UTC time and a random suffix, sortable and unique across processes.
fn new_run_id() -> String {
    let suffix: u32 = rand::rng().random_range(0..0x100_0000);
    format!("{}-{suffix:06x}", Utc::now().format("%Y%m%dT%H%M%SZ"))
}

impl RunRequest<'_> {
    /// The campaigns this run publishes.
    fn published(&self) -> impl Iterator<Item = &Campaign> {
        self.campaigns
            .iter()
            .filter(|c| self.only.is_empty() || self.only.contains(&c.id))
    }
}

/// Runs every requested campaign for the date, recording each in the state database (or, for
/// a dry run, only reporting what it would do). The state database's tables must exist
/// (`cli::state_db` creates them).
pub async fn run(req: RunRequest<'_>, source: &Db, state: &Db) -> Result<RunReport> {
    let run_id = new_run_id();
    let run_date = req.date.format("%Y-%m-%d").to_string();
    let span = info_span!(
        "run",
        run_id = %run_id,
        run_date = %run_date,
        campaigns = req.published().count(),
        dry_run = req.dry_run
    );
    async {
        let started = Utc::now().timestamp();
        if req.dry_run {
            let prepared = prepare(&req, source, state).await?;
            return publish_all(&req, state, &run_id, &run_date, prepared).await;
        }
        for c in req.published() {
            ledger::start(state, &run_id, &c.id, &run_date, started).await?;
        }
        match prepare(&req, source, state).await {
            Ok(prepared) => publish_all(&req, state, &run_id, &run_date, prepared).await,
            Err(e) => {
                let error = format!("{e:#}");
                for c in req.published() {
                    let failed = Finish {
                        status: Status::Failed,
                        finished_at: Utc::now().timestamp(),
                        audience_size: None,
                        holdout_size: None,
                        model_versions: "{}",
                        export_uri: None,
                        error: Some(&error),
                    };
                    ledger::finish(state, &run_id, &c.id, &failed).await?;
                }
                Err(e)
            }
        }
    }
    .instrument(span)
    .await
}

/// Everything computed before publishing.
struct Prepared {
    src: SourceTables,
    scored: ScoredFrame,
    model: ModelUsed,
    /// Categorical levels of the scoring model: text values in rules compile to its codes.
    levels: CategoricalLevels,
    /// Email addresses of consenting users, when a published preset needs them.
    emails: Option<std::collections::HashMap<i64, String>>,
}

/// The models a run scores with.
pub struct Models {
    pub uplift: UpliftModel,
    pub discount_uplift: UpliftModel,
    pub sensitivity: Classifier,
    pub levels: CategoricalLevels,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models").finish_non_exhaustive()
    }
}

/// The three models as stored (LightGBM text and metadata), and how they came to be used.
/// Unlike [`Models`] it can cross an `.await` (LightGBM's handles cannot).
#[derive(Debug, Clone)]
pub struct ModelSet {
    pub uplift: ModelArtifact,
    pub discount_uplift: ModelArtifact,
    pub sensitivity: ModelArtifact,
    pub used: ModelUsed,
}

impl ModelSet {
    /// The three models and what a report says of them. `fresh` holds the conversion model's
    /// bootstrap interval and held-out exposures when this run trained it; a stored model has
    /// its metadata's point estimate only.
    fn new(
        uplift: ModelArtifact,
        discount_uplift: ModelArtifact,
        sensitivity: ModelArtifact,
        fresh: Option<(Interval, HeldOut)>,
    ) -> Self {
        let (um, dm, sm) = (
            &uplift.metadata,
            &discount_uplift.metadata,
            &sensitivity.metadata,
        );
        let trained = fresh.is_some();
        let (qini_auc, test) = fresh.unwrap_or_else(|| {
            let estimate = um.metric("qini_auc");
            let point = Interval {
                estimate,
                low: f64::NAN,
                high: f64::NAN,
            };
            (point, HeldOut::default())
        });
        let used = ModelUsed {
            version: um.version.clone(),
            learner: um.learner.name(),
            trained,
            qini_auc,
            test,
            discount_version: dm.version.clone(),
            discount_qini_auc: dm.metric("qini_auc"),
            sensitivity_version: sm.version.clone(),
            sensitivity_auc: sm.metric("auc"),
        };
        Self {
            uplift,
            discount_uplift,
            sensitivity,
            used,
        }
    }

    /// LightGBM models from the texts. A run that trained scores with them too, so that it
    /// scores exactly as a later run with the stored models does.
    pub fn load(&self, store: &str) -> Result<Models> {
        let context =
            |m: &models::ModelMetadata| format!("model {} {} in {store}", m.name, m.version);
        let (um, dm, sm) = (
            &self.uplift.metadata,
            &self.discount_uplift.metadata,
            &self.sensitivity.metadata,
        );
        Ok(Models {
            uplift: self.uplift.model().with_context(|| context(um))?,
            discount_uplift: self.discount_uplift.model().with_context(|| context(dm))?,
            sensitivity: self.sensitivity.classifier().with_context(|| context(sm))?,
            levels: um.categorical_levels.clone(),
        })
    }
}

/// Trains the conversion uplift, discount uplift and discount-sensitivity models as of `as_of`
/// and stores them as the new `current` versions.
pub async fn train_and_store(
    s: &Settings,
    src: &SourceTables,
    as_of: i64,
    known_effects: Option<KnownEffects>,
) -> Result<ModelSet> {
    let set = train(s, src, as_of, known_effects)?;
    crate::model_store::save_all(s, &[&set.uplift, &set.discount_uplift, &set.sensitivity]).await?;
    Ok(set)
}

/// Refuses a model name that is not one of [`MODEL_NAMES`], listing them.
pub fn check_model_name(name: Option<&str>) -> Result<()> {
    match name {
        Some(n) if !MODEL_NAMES.contains(&n) => {
            anyhow::bail!("unknown model {n:?} (known: {})", MODEL_NAMES.join(", "))
        }
        _ => Ok(()),
    }
}

/// Trains one model (`conversion_uplift`, `discount_uplift` or `discount_sensitivity`) as of
/// `as_of` and stores it as its new `current` version; the other models keep theirs.
pub async fn train_and_store_one(
    s: &Settings,
    src: &SourceTables,
    as_of: i64,
    name: &str,
) -> Result<ModelArtifact> {
    check_model_name(Some(name))?;
    let opts = training_options(s, as_of, None);
    let artifact = match name {
        CONVERSION_UPLIFT => fit_uplift(src, UpliftTarget::Conversion, &opts)?.artifact,
        DISCOUNT_UPLIFT => fit_uplift(src, UpliftTarget::Discount, &opts)?.artifact,
        // The name was checked: this is DISCOUNT_SENSITIVITY.
        _ => fit_sensitivity(src, &opts)?.artifact,
    };
    crate::model_store::save_all(s, &[&artifact]).await?;
    Ok(artifact)
}

fn training_options(
    s: &Settings,
    as_of: i64,
    known_effects: Option<KnownEffects>,
) -> TrainingOptions {
    TrainingOptions {
        params: UpliftParams {
            num_threads: s.threads,
            seed: s.seed,
            ..UpliftParams::default()
        },
        learner: None,
        attribution_days: s.attribution_days,
        as_of,
        created_at: Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        code_version: env!("CARGO_PKG_VERSION").into(),
        known_effects,
    }
}

/// Trains one uplift model in its own span (on a blocking thread: LightGBM holds it for a
/// while) and logs its headline figures.
fn fit_uplift(
    src: &SourceTables,
    target: UpliftTarget,
    opts: &TrainingOptions,
) -> Result<TrainedUplift> {
    let trained = info_span!("train", model = target.name())
        .in_scope(|| tokio::task::block_in_place(|| train_uplift(src, target, opts)))?;
    let meta = &trained.artifact.metadata;
    info!(
        version = %meta.version,
        learner = meta.learner.name(),
        rows_train = meta.rows_train,
        rows_test = meta.rows_test,
        qini_auc = meta.metric("qini_auc"),
        "trained"
    );
    Ok(trained)
}

/// Trains the discount-sensitivity model in its own span and logs its headline figures.
fn fit_sensitivity(src: &SourceTables, opts: &TrainingOptions) -> Result<TrainedClassifier> {
    let trained = info_span!("train", model = DISCOUNT_SENSITIVITY)
        .in_scope(|| tokio::task::block_in_place(|| train_discount_sensitivity(src, opts)))?;
    let meta = &trained.artifact.metadata;
    info!(
        version = %meta.version,
        rows_train = meta.rows_train,
        auc = trained.test_auc,
        "trained"
    );
    Ok(trained)
}

/// The training itself: the fitted LightGBM handles are dropped here, their texts kept.
fn train(
    s: &Settings,
    src: &SourceTables,
    as_of: i64,
    known_effects: Option<KnownEffects>,
) -> Result<ModelSet> {
    let opts = training_options(s, as_of, known_effects);
    let trained = fit_uplift(src, UpliftTarget::Conversion, &opts)?;
    let t = &trained.test;
    let qini_auc = bootstrap(
        &t.outcome,
        &t.uplift,
        &t.treated,
        qini_auc_score,
        200,
        s.seed,
    );
    let discount = fit_uplift(src, UpliftTarget::Discount, &opts)?;
    let sensitivity = fit_sensitivity(src, &opts)?;
    Ok(ModelSet::new(
        trained.artifact,
        discount.artifact,
        sensitivity.artifact,
        Some((qini_auc, trained.test)),
    ))
}

/// The store's `current` models, or `None` when one of them is missing.
async fn load_stored(s: &Settings) -> Result<Option<ModelSet>> {
    let store = crate::model_store::open(s).await?;
    let (Some(uplift), Some(discount), Some(sensitivity)) = (
        crate::model_store::load_current(&store, CONVERSION_UPLIFT).await?,
        crate::model_store::load_current(&store, DISCOUNT_UPLIFT).await?,
        crate::model_store::load_current(&store, DISCOUNT_SENSITIVITY).await?,
    ) else {
        return Ok(None);
    };
    let um = &uplift.metadata;
    info!(version = %um.version, learner = um.learner.name(), "using the stored model");
    Ok(Some(ModelSet::new(uplift, discount, sensitivity, None)))
}

async fn prepare(req: &RunRequest<'_>, source: &Db, state: &Db) -> Result<Prepared> {
    let s = req.settings;
    let src = extract(source, Some(state), s)
        .instrument(info_span!("extract"))
        .await?;
    // Email addresses stay in the database unless a list needs them.
    let emails = if !req.dry_run && req.published().any(|c| publish::needs_emails(c.columns)) {
        Some(crate::extract::contact_emails(source, s).await?)
    } else {
        None
    };
    let cutoff = cutoff_of(req.date);

    let stored = if req.retrain {
        None
    } else {
        load_stored(s).await?
    };
    let set = match stored {
        Some(set) => set,
        None => train_and_store(s, &src, cutoff, req.known_effects.clone()).await?,
    };
    let m = set.load(&s.model_store)?;
    let scored = info_span!("score", users = src.users.height()).in_scope(|| {
        tokio::task::block_in_place(|| {
            let scorers = Scorers {
                uplift: &m.uplift,
                discount_uplift: &m.discount_uplift,
                sensitivity: &m.sensitivity,
            };
            score_users(&src, scorers, &m.levels, cutoff, s.threads)
        })
    })?;
    info!(rows = scored.frame.height(), "scored");
    Ok(Prepared {
        model: set.used,
        levels: m.levels,
        src,
        scored,
        emails,
    })
}

/// The frame a campaign selects from: the scored users, plus the affinity to the dropped item
/// for a drop.
fn candidates(c: &Campaign, p: &Prepared, cutoff: i64) -> Result<DataFrame> {
    // Derived names of the rule catalogue (see `campaigns::catalog`).
    let scored = p.scored.frame.clone().lazy().with_column(
        col("orders_total")
            .eq(lit(0.0))
            .cast(DataType::Float64)
            .alias(crate::campaigns::NEW_BUYER_COLUMN),
    );
    match c.kind {
        CampaignKind::Drop { item_id } => {
            let affinity = models::features::drop_affinity(&p.src, item_id, cutoff)
                .with_context(|| format!("campaign {}", c.id))?;
            Ok(scored
                .join(
                    affinity.lazy(),
                    [col("user_id")],
                    [col("user_id")],
                    JoinArgs::new(JoinType::Left),
                )
                .with_column(col("affinity").fill_null(lit(0.0)))
                .collect()?)
        }
        _ => Ok(scored.collect()?),
    }
}

async fn publish_all(
    req: &RunRequest<'_>,
    state: &Db,
    run_id: &str,
    run_date: &str,
    p: Prepared,
) -> Result<RunReport> {
    let s = req.settings;
    let cutoff = cutoff_of(req.date);
    let ctx = SelectionContext {
        global_control_share: s.global_control_share,
        global_control_salt: s.global_control_salt.clone(),
        catalog: crate::campaigns::catalog(Some(&p.levels)),
        run_day: cutoff.div_euclid(models::DAY),
        limits: s.limits,
    };
    let versions: BTreeMap<String, String> = [
        (CONVERSION_UPLIFT.to_string(), p.model.version.clone()),
        (
            DISCOUNT_UPLIFT.to_string(),
            p.model.discount_version.clone(),
        ),
        (
            DISCOUNT_SENSITIVITY.to_string(),
            p.model.sensitivity_version.clone(),
        ),
    ]
    .into();
    let versions_json = serde_json::to_string(&versions)?;

    // Select the whole night at once: arbitration, caps and cooldowns span campaigns.
    let window = s.limits.cap_days.max(s.limits.discount_cooldown_days);
    let history = ledger::history(state, req.date, window).await?;
    let mut selected: BTreeMap<String, Result<Audience, String>> = BTreeMap::new();
    let mut frames = Vec::new();
    for c in &req.campaigns {
        match candidates(c, &p, cutoff) {
            Ok(f) => frames.push((c, f)),
            Err(e) => {
                selected.insert(c.id.clone(), Err(format!("{e:#}")));
            }
        }
    }
    let pairs: Vec<(&Campaign, &DataFrame)> = frames.iter().map(|(c, f)| (*c, f)).collect();
    let night = info_span!(
        "select",
        campaigns = pairs.len(),
        history_users = history.by_user.len()
    )
    .in_scope(|| select_night(&pairs, &ctx, &history));
    match night {
        Ok(audiences) => {
            for a in audiences {
                info!(
                    campaign = %a.campaign_id,
                    eligible = a.eligible(),
                    rows = a.count(Arm::Treatment),
                    holdout = a.count(Arm::Holdout),
                    "selected"
                );
                selected.insert(a.campaign_id.clone(), Ok(a));
            }
        }
        Err(e) => {
            for (c, _) in &pairs {
                selected.insert(c.id.clone(), Err(format!("selection failed: {e}")));
            }
        }
    }

    // One store per destination, opened once: loading the AWS configuration probes the
    // credential chain.
    let mut stores: BTreeMap<String, Result<ObjectStore, String>> = BTreeMap::new();
    if !req.dry_run {
        for c in req.published() {
            let destination = c.destination.as_deref().unwrap_or(&s.export_destination);
            if !stores.contains_key(destination) {
                let store = ObjectStore::open(destination, &s.store)
                    .await
                    .map_err(|e| e.to_string());
                stores.insert(destination.to_string(), store);
            }
        }
    }

    let mut reports = Vec::new();
    for c in req.published() {
        let audience = selected
            .remove(&c.id)
            .unwrap_or_else(|| Err("not selected".into()));
        if req.dry_run {
            reports.push(match audience {
                Ok(a) => CampaignReport::new(c, Some(a), None),
                Err(e) => CampaignReport {
                    error: Some(e),
                    ..CampaignReport::new(c, None, None)
                },
            });
            continue;
        }
        let span = info_span!("campaign", campaign = %c.id, kind = c.kind.name());
        let outcome = async {
            let audience = audience.map_err(|e| anyhow::anyhow!(e))?;
            let created_at = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            let destination = c.destination.as_deref().unwrap_or(&s.export_destination);
            let store = match stores.get(destination) {
                Some(Ok(store)) => store,
                Some(Err(e)) => anyhow::bail!("{e}"),
                None => anyhow::bail!("no object store for {destination}"),
            };
            let request = ExportRequest {
                campaign: c,
                audience: &audience,
                run_id,
                run_date,
                model_versions: &versions,
                created_at: &created_at,
                limits: s.part_limits,
                emails: p.emails.as_ref(),
            };
            let staged = publish::stage(store, &request)
                .instrument(info_span!("publish"))
                .await?;
            // Assignments are recorded before `_SUCCESS`: a list a CRM can see always has its
            // history.
            let recorded = async {
                ledger::record_assignments(
                    state,
                    run_id,
                    &audience,
                    c.offer.discount_pct,
                    Utc::now().timestamp(),
                )
                .await?;
                publish::commit(store, &staged).await
            }
            .instrument(info_span!("record", rows = audience.members.len()))
            .await;
            if let Err(e) = recorded {
                publish::discard(store, &staged).await;
                return Err(e);
            }
            info!(uri = %staged.uri, rows = staged.manifest.row_count, "published");
            Ok((audience, staged.uri))
        }
        .instrument(span)
        .await;
        let finished_at = Utc::now().timestamp();
        let report = match outcome {
            Ok((audience, uri)) => {
                let finish = Finish {
                    status: Status::Succeeded,
                    finished_at,
                    audience_size: Some(audience.count(Arm::Treatment)),
                    holdout_size: Some(audience.count(Arm::Holdout)),
                    model_versions: &versions_json,
                    export_uri: Some(&uri),
                    error: None,
                };
                ledger::finish(state, run_id, &c.id, &finish).await?;
                CampaignReport::new(c, Some(audience), Some(uri))
            }
            Err(e) => {
                let error = format!("{e:#}");
                let transient = is_transient(&e);
                warn!(campaign = %c.id, error = %error, transient, "campaign failed");
                let finish = Finish {
                    status: Status::Failed,
                    finished_at,
                    audience_size: None,
                    holdout_size: None,
                    model_versions: &versions_json,
                    export_uri: None,
                    error: Some(&error),
                };
                ledger::finish(state, run_id, &c.id, &finish).await?;
                CampaignReport {
                    error: Some(error),
                    transient,
                    ..CampaignReport::new(c, None, None)
                }
            }
        };
        reports.push(report);
    }
    Ok(RunReport {
        run_id: run_id.into(),
        run_date: req.date,
        users: p.src.users.height(),
        sensitivity: (
            p.scored
                .frame
                .column("user_id")?
                .i64()?
                .iter()
                .map(|v| v.unwrap_or_default())
                .collect(),
            p.scored
                .frame
                .column("discount_sensitivity")?
                .f64()?
                .iter()
                .map(|v| v.unwrap_or(f64::NAN))
                .collect(),
        ),
        model: p.model,
        campaigns: reports,
    })
}

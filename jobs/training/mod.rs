//! Training: the conversion uplift, discount uplift and discount-sensitivity models, and the
//! gift recipient model when the source has gifts enough to learn from, fitted on the
//! extracted tables (by `models`), and kept in the model store as versions with a `current`
//! pointer. `targeting train`, the daemon's retraining and a run whose store is empty all train
//! through here; the stages above only ask for a [`ModelSet`].

pub mod model_store;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::Utc;
use models::gifts::{RecipientFigures, RecipientModel, Recipients};
use models::metrics::{bootstrap, qini_auc_score, Interval};
use models::training::train_recipient;
use models::training::{
    profile_population, train_discount_sensitivity, train_uplift, HeldOut, TrainedClassifier,
    TrainedUplift, UpliftTarget,
};
use models::{
    ModelArtifact, ModelName, RunDate, Scorers, SourceTables, TrainingOptions, UpliftParams,
};
use tracing::{info, info_span, instrument, warn};

use crate::config::Settings;

/// What a report says of the models a run scored with.
#[derive(Debug, Clone)]
pub struct ModelUsed {
    pub version: String,
    pub learner: &'static str,
    /// Trained by this run (else loaded from the store).
    pub trained: bool,
    /// Held-out Qini AUC: with its bootstrap interval when trained now, from the metadata (no
    /// interval) when loaded.
    pub qini_auc: Interval,
    /// Held-out exposures the interval was computed on (0 for a stored model).
    pub test_exposures: usize,
    /// Version and held-out Qini AUC of the discount uplift model.
    pub discount_version: String,
    pub discount_qini_auc: f64,
    /// Version and held-out AUC of the discount-sensitivity model.
    pub sensitivity_version: String,
    pub sensitivity_auc: f64,
}

/// The three models as stored (LightGBM text and metadata), the gift recipient model when
/// there is one, and what a report says of them. Unlike [`Scorers`] it can cross an `.await`
/// (LightGBM's handles cannot).
#[derive(Debug, Clone)]
pub struct ModelSet {
    pub uplift: ModelArtifact,
    pub discount_uplift: ModelArtifact,
    pub sensitivity: ModelArtifact,
    /// Only a gift campaign needs it, and a source with few gifts has none.
    pub gift_recipient: Option<ModelArtifact>,
    pub used: ModelUsed,
}

impl ModelSet {
    /// The three models and what a report says of them. `fresh` holds the conversion model's
    /// bootstrap interval and held-out exposures when they were trained now; a stored model
    /// has its metadata's point estimate only.
    fn new(
        uplift: ModelArtifact,
        discount_uplift: ModelArtifact,
        sensitivity: ModelArtifact,
        fresh: Option<(Interval, &HeldOut)>,
    ) -> Self {
        let (um, dm, sm) = (
            &uplift.metadata,
            &discount_uplift.metadata,
            &sensitivity.metadata,
        );
        let trained = fresh.is_some();
        let (qini_auc, test_exposures) = match fresh {
            Some((interval, test)) => (interval, test.user_id.len()),
            None => {
                let point = Interval {
                    estimate: um.metric("qini_auc"),
                    low: f64::NAN,
                    high: f64::NAN,
                };
                (point, 0)
            }
        };
        let used = ModelUsed {
            version: um.version.clone(),
            learner: um.learner.name(),
            trained,
            qini_auc,
            test_exposures,
            discount_version: dm.version.clone(),
            discount_qini_auc: dm.metric("qini_auc"),
            sensitivity_version: sm.version.clone(),
            sensitivity_auc: sm.metric("auc"),
        };
        Self {
            uplift,
            discount_uplift,
            sensitivity,
            gift_recipient: None,
            used,
        }
    }

    /// The set's artifacts, in [`ModelName::ALL`]'s order.
    pub fn artifacts(&self) -> [&ModelArtifact; 3] {
        [&self.uplift, &self.discount_uplift, &self.sensitivity]
    }

    /// The version of each model by its name, as manifests and the ledger record them.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.artifacts()
            .into_iter()
            .chain(self.gift_recipient.as_ref())
            .map(|a| (a.metadata.name.clone(), a.metadata.version.clone()))
            .collect()
    }

    /// The models from their texts, for the settings' scorer (`runtime.scorer`). A run that
    /// trained scores with them too, so that it scores exactly as a later run with the stored
    /// models does.
    pub fn load(&self, s: &Settings) -> Result<Scorers> {
        let (store, scorer) = (&s.models.store, s.scorer);
        let context =
            |m: &models::ModelMetadata| format!("model {} {} in {store}", m.name, m.version);
        let (um, dm, sm) = (
            &self.uplift.metadata,
            &self.discount_uplift.metadata,
            &self.sensitivity.metadata,
        );
        Ok(Scorers {
            uplift: self.uplift.model(scorer).with_context(|| context(um))?,
            discount_uplift: self
                .discount_uplift
                .model(scorer)
                .with_context(|| context(dm))?,
            sensitivity: self
                .sensitivity
                .classifier(scorer)
                .with_context(|| context(sm))?,
            levels: um.categorical_levels.clone(),
            gift_recipient: self
                .gift_recipient
                .as_ref()
                .map(|a| Recipients::from_artifact(a, scorer).with_context(|| context(&a.metadata)))
                .transpose()?,
            profiles: ModelName::ALL
                .into_iter()
                .zip(self.artifacts())
                .filter_map(|(name, a)| Some((name, a.metadata.profile.clone()?)))
                .collect(),
        })
    }
}

/// A model set trained now, with the conversion model's held-out exposures and scores.
#[derive(Debug)]
pub struct Trained {
    pub set: ModelSet,
    pub held_out: HeldOut,
    /// The gift recipient model's training and test figures, when there is one.
    pub gift_figures: Option<RecipientFigures>,
}

/// Trains the conversion uplift, discount uplift and discount-sensitivity models as of `as_of`
/// and stores them as the new `current` versions.
pub async fn train_and_store(s: &Settings, src: &SourceTables, as_of: RunDate) -> Result<Trained> {
    let trained = train(s, src, as_of)?;
    let set = &trained.set;
    let mut artifacts = vec![&set.uplift, &set.discount_uplift, &set.sensitivity];
    artifacts.extend(set.gift_recipient.as_ref());
    model_store::save_all(s, &artifacts).await?;
    Ok(trained)
}

/// Trains one model as of `as_of` and stores it as its new `current` version; the other models
/// keep theirs.
pub async fn train_and_store_one(
    s: &Settings,
    src: &SourceTables,
    as_of: RunDate,
    name: ModelName,
) -> Result<ModelArtifact> {
    let opts = options(s, as_of);
    let artifact = match name {
        ModelName::ConversionUplift => fit_uplift(src, UpliftTarget::Conversion, &opts)?.artifact,
        ModelName::DiscountUplift => fit_uplift(src, UpliftTarget::Discount, &opts)?.artifact,
        ModelName::DiscountSensitivity => fit_sensitivity(src, &opts)?.artifact,
        ModelName::GiftRecipient => fit_recipient(src, &opts)?.artifact,
    };
    model_store::save_all(s, &[&artifact]).await?;
    Ok(artifact)
}

/// The training options the settings give, as of a date, stamped with the current time.
pub fn options(s: &Settings, as_of: RunDate) -> TrainingOptions {
    TrainingOptions {
        params: UpliftParams {
            num_threads: s.threads,
            seed: s.models.seed,
            ..UpliftParams::default()
        },
        learner: None,
        attribution_days: s.models.attribution_days,
        as_of,
        created_at: Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        code_version: env!("CARGO_PKG_VERSION").into(),
        scorer: s.scorer,
    }
}

/// Trains one uplift model in its own span (on a blocking thread: LightGBM holds it for a
/// while) and logs its headline figures.
fn fit_uplift(
    src: &SourceTables,
    target: UpliftTarget,
    opts: &TrainingOptions,
) -> Result<TrainedUplift> {
    let trained = info_span!("train", model = %target.name())
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
    log_choice(&trained.skipped, trained.single_split.as_deref());
    Ok(trained)
}

/// Warns of each learner that choosing among all passed over, with why, and of a choice made on
/// one validation split instead of by cross-validation (see [`models::UpliftModel::fit`]):
/// training and `evaluate` alike.
pub fn log_choice(skipped: &[(models::Learner, String)], single_split: Option<&str>) {
    for (learner, why) in skipped {
        warn!(
            learner = learner.name(),
            "learner passed over, it could not be trained: {why}"
        );
    }
    if let Some(why) = single_split {
        warn!("{why}");
    }
}

/// Trains the discount-sensitivity model in its own span and logs its headline figures.
fn fit_sensitivity(src: &SourceTables, opts: &TrainingOptions) -> Result<TrainedClassifier> {
    let trained = info_span!("train", model = %ModelName::DiscountSensitivity)
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

/// Trains the gift recipient model in its own span and logs its top-1 accuracy beside the
/// rules'.
fn fit_recipient(src: &SourceTables, opts: &TrainingOptions) -> Result<RecipientModel> {
    let trained = info_span!("train", model = %ModelName::GiftRecipient)
        .in_scope(|| tokio::task::block_in_place(|| train_recipient(src, opts)))?;
    let t = trained.figures.top_one;
    info!(
        version = %trained.artifact.metadata.version,
        gifts = trained.figures.trained_on,
        top1_model = t.model,
        top1_most_recent_friend = t.most_recent_friend,
        top1_most_active_friend = t.most_active_friend,
        chosen = ?t.chosen,
        "trained"
    );
    Ok(trained)
}

/// Trains the three models as of `as_of` without storing them (a dry run's, which must change
/// nothing). The fitted LightGBM handles are dropped here, their texts kept.
pub fn train(s: &Settings, src: &SourceTables, as_of: RunDate) -> Result<Trained> {
    let opts = options(s, as_of);
    let mut trained = fit_uplift(src, UpliftTarget::Conversion, &opts)?;
    let t = &trained.test;
    let qini_auc = bootstrap(
        &t.outcome,
        &t.uplift,
        &t.treated,
        qini_auc_score,
        200,
        s.models.seed,
    );
    let mut discount = fit_uplift(src, UpliftTarget::Discount, &opts)?;
    let mut sensitivity = fit_sensitivity(src, &opts)?;
    info_span!("profile").in_scope(|| {
        tokio::task::block_in_place(|| {
            profile_population(
                src,
                as_of,
                &mut trained,
                &mut discount,
                &mut sensitivity,
                s.threads,
            )
        })
    })?;
    let mut set = ModelSet::new(
        trained.artifact,
        discount.artifact,
        sensitivity.artifact,
        Some((qini_auc, &trained.test)),
    );
    // A source without gifts enough trains the other models all the same: only a gift
    // campaign needs this one, and it fails without it, saying why.
    let gift_figures = match fit_recipient(src, &opts) {
        Ok(m) => {
            set.gift_recipient = Some(m.artifact);
            Some(m.figures)
        }
        Err(e) => {
            warn!(model = %ModelName::GiftRecipient, "not trained: {e:#}");
            None
        }
    };
    Ok(Trained {
        set,
        held_out: trained.test,
        gift_figures,
    })
}

/// The store's `current` models, or `None` when one of them is missing.
#[instrument(name = "load_models", skip_all)]
pub async fn load_stored(s: &Settings) -> Result<Option<ModelSet>> {
    let store = s.models.open_store(&s.store).await?;
    let (Some(uplift), Some(discount), Some(sensitivity)) = (
        model_store::load_current(&store, ModelName::ConversionUplift).await?,
        model_store::load_current(&store, ModelName::DiscountUplift).await?,
        model_store::load_current(&store, ModelName::DiscountSensitivity).await?,
    ) else {
        return Ok(None);
    };
    let um = &uplift.metadata;
    info!(version = %um.version, learner = um.learner.name(), "using the stored model");
    let mut set = ModelSet::new(uplift, discount, sensitivity, None);
    set.gift_recipient = model_store::load_current(&store, ModelName::GiftRecipient).await?;
    Ok(Some(set))
}

//! Training the uplift models from past randomized exposures, and scoring users with them.
//!
//! The conversion model's rows are the exposures of message-only campaigns (`discount_pct = 0`),
//! the discount model's those of discount campaigns, with the level each row was offered (the
//! dose learner, [`crate::uplift::Offered`]): features as of `assigned_at`, outcome = a purchase
//! within the attribution window after it. Users, not rows, are split into train / validation /
//! test by a seeded hash, so no user's history leaks from the fit into the evaluation.

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::artifact::fingerprint;
use crate::drift::{self, Profile, Tally};
use crate::features::check_schema;
use crate::features::{
    categorical_indices, feature_names, featurize, purchased_within, AffinityTables,
};
use crate::forest::Scorer;
use crate::gifts::{self, Pick, RecipientFigures, RecipientModel, TopOne};
use crate::metrics::{
    calibration_by_decile, log_loss, max_calibration_gap, qini_auc_score, roc_auc, DecileRow,
};
use crate::uplift::{Classifier, Learner, Offered, Tried, GRID};
use crate::{
    CategoricalLevels, FeatureFrame, ModelArtifact, ModelError, ModelMetadata, Result, RunDate,
    SourceTables, TrainingSet, UpliftModel, UpliftParams,
};

/// Every model a run scores with, as the model store names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelName {
    /// The purchase probability a message adds.
    ConversionUplift,
    /// The purchase probability a discount offer adds.
    DiscountUplift,
    /// The probability that a user's next purchases are discounted.
    DiscountSensitivity,
    /// Which friend receives a user's gift (see [`crate::gifts`]); a source with too few gifts
    /// has none, and only a gift campaign needs it.
    GiftRecipient,
}

impl ModelName {
    /// Every model, in the order runs train and report them.
    pub const ALL: [ModelName; 4] = [
        ModelName::ConversionUplift,
        ModelName::DiscountUplift,
        ModelName::DiscountSensitivity,
        ModelName::GiftRecipient,
    ];

    /// The name in the model store, the ledger and the manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::ConversionUplift => "conversion_uplift",
            ModelName::DiscountUplift => "discount_uplift",
            ModelName::DiscountSensitivity => "discount_sensitivity",
            ModelName::GiftRecipient => "gift_recipient",
        }
    }
}

impl std::fmt::Display for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for ModelName {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        ModelName::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ModelError::UnknownModel {
                name: s.into(),
                known: ModelName::ALL.map(ModelName::as_str).join(", "),
            })
    }
}

/// What training needs besides the data.
#[derive(Debug, Clone)]
pub struct TrainingOptions {
    pub params: UpliftParams,
    /// The meta-learner; `None` trains all four and keeps the best on validation Qini.
    pub learner: Option<Learner>,
    /// Days after an exposure in which a purchase counts as its outcome.
    pub attribution_days: i64,
    /// Train as of this date: only exposures whose attribution window closed before its
    /// midnight (UTC) are used, so a model trained later on the same data is the same.
    pub as_of: RunDate,
    /// Training time, `YYYY-MM-DDTHH:MM:SSZ`; part of the version. The caller owns the clock.
    pub created_at: String,
    pub code_version: String,
    /// What scores the held-out rows: the native scorer or LightGBM (the same numbers).
    pub scorer: Scorer,
}

/// Held-out test exposures with the trained model's uplift scores.
#[derive(Debug, Clone, Default)]
pub struct HeldOut {
    pub user_id: Vec<i64>,
    pub treated: Vec<bool>,
    pub outcome: Vec<bool>,
    pub uplift: Vec<f64>,
}

/// A trained model with its artifact and its held-out evaluation.
#[derive(Debug)]
pub struct TrainedUplift {
    pub model: UpliftModel,
    pub artifact: ModelArtifact,
    pub test: HeldOut,
    /// The learners that could not be trained on these rows when the learner was chosen among
    /// all, with why (see [`UpliftModel::fit`]).
    pub skipped: Vec<(Learner, String)>,
    /// Why the learner was chosen on one validation split instead of by cross-validation, if
    /// it was (too few buying rows per fold).
    pub single_split: Option<String>,
}

/// Numbers the rows of a frame `0..n` in an `Int64` column `row_id`, the key features and
/// outcomes are joined back on.
fn numbered(frame: LazyFrame) -> LazyFrame {
    frame
        .with_row_index("row_id", None)
        .with_column(col("row_id").cast(DataType::Int64))
}

/// Which part of the data a user belongs to: a seeded hash of the user id, so the split is the
/// same on every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Valid,
    Test,
}

pub fn split_of(user_id: i64, seed: u64) -> Split {
    // splitmix64 finaliser: a well-mixed, platform-independent hash.
    let mut z = (user_id as u64) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    match (z >> 11) as f64 / (1u64 << 53) as f64 {
        u if u < 0.60 => Split::Train,
        u if u < 0.75 => Split::Valid,
        _ => Split::Test,
    }
}

/// Row indices of the train, validation and test parts, by each row's user.
fn split_by_user(users: &[i64], seed: u64) -> [Vec<usize>; 3] {
    let mut parts: [Vec<usize>; 3] = Default::default();
    for (i, &u) in users.iter().enumerate() {
        let k = match split_of(u, seed) {
            Split::Train => 0,
            Split::Valid => 1,
            Split::Test => 2,
        };
        parts[k].push(i);
    }
    parts
}

/// `YYYY-MM-DD` of a Unix time.
pub fn date_of(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The metadata of a model trained on `set`, whose rows had `cutoffs`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn metadata(
    name: ModelName,
    learner: Learner,
    opts: &TrainingOptions,
    set: &TrainingSet,
    levels: CategoricalLevels,
    cutoffs: &[i64],
    [rows_train, rows_valid, rows_test]: [usize; 3],
    metrics: Vec<(String, f64)>,
    calibration: Vec<DecileRow>,
    probability_calibration: crate::calibration::Platt,
) -> ModelMetadata {
    let data_fingerprint = fingerprint(set);
    let stamp: String = opts
        .created_at
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    ModelMetadata {
        name: name.to_string(),
        version: format!("{stamp}-{}", &data_fingerprint[..8]),
        learner,
        feature_names: feature_names(),
        categorical_levels: levels,
        training_window: (
            date_of(cutoffs.iter().copied().min().unwrap_or_default()),
            date_of(cutoffs.iter().copied().max().unwrap_or_default()),
        ),
        rows_train,
        rows_valid,
        rows_test,
        params: opts.params.clone(),
        metrics,
        calibration,
        probability_calibration,
        arm_shift: None,
        discount_levels: Vec::new(),
        recipient_pick: None,
        data_fingerprint,
        profile: None,
        code_version: opts.code_version.clone(),
        created_at: opts.created_at.clone(),
    }
}

/// Which exposures an uplift model learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpliftTarget {
    /// Message-only campaigns (`discount_pct = 0`): the effect of being messaged.
    Conversion,
    /// Discount campaigns (`discount_pct > 0`): the effect of each discount level offered.
    Discount,
}

impl UpliftTarget {
    /// The model's name in the store.
    pub fn name(self) -> ModelName {
        match self {
            UpliftTarget::Conversion => ModelName::ConversionUplift,
            UpliftTarget::Discount => ModelName::DiscountUplift,
        }
    }

    fn exposures(self) -> (Expr, &'static str) {
        match self {
            UpliftTarget::Conversion => (
                col("discount_pct").eq(lit(0.0)),
                "message-only (discount_pct = 0)",
            ),
            UpliftTarget::Discount => (
                col("discount_pct").gt(lit(0.0)),
                "discount (discount_pct > 0)",
            ),
        }
    }
}

/// The exposures an uplift model learns from, as features and outcomes, split by user.
struct UpliftData {
    levels: CategoricalLevels,
    names: Vec<String>,
    all: TrainingSet,
    users: Vec<i64>,
    cutoffs: Vec<i64>,
    /// The discount each row was offered, in percent (both arms).
    offered: Vec<f64>,
    /// Row indices of the train, validation and test parts.
    parts: [Vec<usize>; 3],
}

impl UpliftData {
    /// The exposures of `target` whose attribution window closed before `opts.as_of`.
    fn build(src: &SourceTables, target: UpliftTarget, opts: &TrainingOptions) -> Result<Self> {
        let name = target.name();
        let (which, described) = target.exposures();
        let exposures = src
            .campaign_exposures
            .clone()
            .lazy()
            .filter(which)
            .filter(
                (col("assigned_at") + lit(opts.attribution_days * crate::DAY))
                    .lt_eq(lit(opts.as_of.cutoff()).cast(DataType::Int64)),
            )
            .select([
                col("user_id"),
                col("assigned_at").alias("cutoff"),
                col("arm"),
                col("discount_pct"),
            ]);
        let exposures = numbered(exposures).collect()?;
        if exposures.height() == 0 {
            return Err(ModelError::Training {
                what: name.to_string(),
                why: format!(
                    "campaign_exposures has no {described} rows whose attribution window closed \
                     before the training date"
                ),
            });
        }
        let levels = CategoricalLevels::from_users(&src.users)?;
        let features = featurize(src, &exposures, &levels, opts.params.num_threads)?;
        let outcome = purchased_within(src, &exposures, opts.attribution_days)?;
        let offered: Vec<f64> = exposures
            .column("discount_pct")?
            .f64()?
            .iter()
            .map(|v| v.unwrap_or_default())
            .collect();
        let treated: Vec<bool> = exposures
            .column("arm")?
            .str()?
            .iter()
            .map(|a| a == Some("treatment"))
            .collect();
        let names = feature_names();
        let all = TrainingSet {
            x: features.matrix(&names)?,
            n_features: names.len(),
            treated,
            outcome,
        };
        let users = features.ints("user_id")?;
        let cutoffs = features.ints("cutoff")?;
        let parts = split_by_user(&users, opts.params.seed);
        Ok(UpliftData {
            levels,
            names,
            all,
            users,
            cutoffs,
            offered,
            parts,
        })
    }
}

/// Trains an uplift model on the exposures of its target.
pub fn train_uplift(
    src: &SourceTables,
    target: UpliftTarget,
    opts: &TrainingOptions,
) -> Result<TrainedUplift> {
    let UpliftData {
        levels,
        names,
        all,
        users,
        cutoffs,
        offered,
        parts: [train_idx, valid_idx, test_idx],
    } = UpliftData::build(src, target, opts)?;
    let (train, valid, test) = (
        all.subset(&train_idx),
        all.subset(&valid_idx),
        all.subset(&test_idx),
    );
    let offered_in = |idx: &[usize]| -> Vec<f64> { idx.iter().map(|&i| offered[i]).collect() };
    let categorical = categorical_indices();
    let (model, selection) = match target {
        UpliftTarget::Conversion => UpliftModel::fit(
            opts.learner,
            &train,
            &valid,
            &names,
            &categorical,
            &opts.params,
        )?,
        // One learner, on the first setting of the grid: the only one that knows the levels.
        UpliftTarget::Discount => {
            let params = opts.params.with(&GRID[0]);
            let model = UpliftModel::fit_dose(
                &train,
                &valid,
                Offered {
                    train: &offered_in(&train_idx),
                    valid: &offered_in(&valid_idx),
                },
                &names,
                &categorical,
                &params,
            )?;
            let tried = Tried {
                params,
                setting: GRID[0].name,
                ..Tried::default()
            };
            (model, tried)
        }
    };
    let model = model.scored_by(opts.scorer)?;
    // Each test row is scored at the level it was offered (the conversion model has none).
    let test_offered = offered_in(&test_idx);
    let scores = model.predict_offered(&test.x, &test_offered, opts.params.num_threads)?;
    let qini = qini_auc_score(&test.outcome, &scores.uplift, &test.treated);
    // The baseline is the probability of buying without a message: check it on control rows.
    let control: Vec<usize> = (0..test.len()).filter(|&i| !test.treated[i]).collect();
    let calibration = calibration_by_decile(
        &control.iter().map(|&i| test.outcome[i]).collect::<Vec<_>>(),
        &control
            .iter()
            .map(|&i| scores.p_control[i])
            .collect::<Vec<_>>(),
    );
    let mut metrics = vec![
        ("qini_auc".to_string(), qini),
        (
            "baseline_calibration_max_gap".to_string(),
            max_calibration_gap(&calibration),
        ),
    ];
    // Each discount level's Qini on the test rows offered it.
    for &level in &model.discount_levels {
        let rows: Vec<usize> = (0..test.len())
            .filter(|&i| test_offered[i].round() as u32 == level)
            .collect();
        let pick = |v: &[bool]| -> Vec<bool> { rows.iter().map(|&i| v[i]).collect() };
        let uplift: Vec<f64> = rows.iter().map(|&i| scores.uplift[i]).collect();
        metrics.push((
            format!("qini_auc_{level}"),
            qini_auc_score(&pick(&test.outcome), &uplift, &pick(&test.treated)),
        ));
    }
    // The mean held-out Qini of every candidate, named by learner and setting.
    metrics.extend(selection.scores.iter().map(|s| {
        (
            format!("valid_qini_auc_{}_{}", s.learner.name(), s.setting.name),
            s.mean(),
        )
    }));

    let mut metadata = metadata(
        target.name(),
        model.learner,
        opts,
        &all,
        levels,
        &cutoffs,
        [train.len(), valid.len(), test.len()],
        metrics,
        calibration,
        model.baseline_calibration,
    );
    // The tree shape cross-validation chose, and the odds learner's effect.
    metadata.params = selection.params.clone();
    metadata.arm_shift = model.arm_shift;
    metadata.discount_levels = model.discount_levels.clone();
    let artifact = ModelArtifact::new(metadata, &model)?;
    Ok(TrainedUplift {
        model,
        artifact,
        test: HeldOut {
            user_id: test_idx.iter().map(|&i| users[i]).collect(),
            treated: test.treated,
            outcome: test.outcome,
            uplift: scores.uplift,
        },
        single_split: selection.single_split,
        skipped: selection.failed,
    })
}

/// The *feature ceiling* of an uplift model, for synthetic data whose true individual effects
/// are known (the demo): the held-out scores of a regressor fitted on the training rows' true
/// effects instead of their outcomes, on exactly the rows and split [`train_uplift`] uses. No
/// model that learns from outcomes can rank better with these features, so its Qini tells how
/// much of the oracle's Qini the features can reach at all.
pub fn feature_ceiling(
    src: &SourceTables,
    target: UpliftTarget,
    opts: &TrainingOptions,
    effects: &std::collections::HashMap<i64, f64>,
) -> Result<Vec<f64>> {
    let data = UpliftData::build(src, target, opts)?;
    let [train_idx, valid_idx, test_idx] = &data.parts;
    let known = |idx: &[usize]| -> Vec<f64> {
        idx.iter()
            .map(|&i| effects.get(&data.users[i]).copied().unwrap_or(0.0))
            .collect()
    };
    crate::uplift::regress(
        (&data.all.subset(train_idx).x, &known(train_idx)),
        (&data.all.subset(valid_idx).x, &known(valid_idx)),
        &data.all.subset(test_idx).x,
        &data.names,
        &categorical_indices(),
        &opts.params,
    )
}

/// Days after a cutoff whose purchases say whether a user buys at a discount.
const SENSITIVITY_HORIZON_DAYS: i64 = 60;

/// A trained classifier with its artifact and held-out AUC.
#[derive(Debug)]
pub struct TrainedClassifier {
    pub classifier: Classifier,
    pub artifact: ModelArtifact,
    pub test_auc: f64,
}

/// Trains the discount-sensitivity model: the probability that at least half of a user's
/// purchases in the next 60 days are discounted. Rows are (user, cutoff) for three cutoffs 60,
/// 120 and 180 days before `as_of` and every user who bought in the 60 days after the cutoff;
/// features are as of the cutoff.
pub fn train_discount_sensitivity(
    src: &SourceTables,
    opts: &TrainingOptions,
) -> Result<TrainedClassifier> {
    let opts = &TrainingOptions {
        params: opts.params.for_classifier(),
        ..opts.clone()
    };
    let h = SENSITIVITY_HORIZON_DAYS * crate::DAY;
    let mut rows: Option<DataFrame> = None;
    for k in 1..=3 {
        let c = opts.as_of.cutoff() - k * h;
        let part = src
            .purchases
            .clone()
            .lazy()
            .filter(col("purchased_at").gt_eq(lit(c).cast(DataType::Int64)))
            .filter(col("purchased_at").lt(lit(c + h).cast(DataType::Int64)))
            .group_by([col("user_id")])
            .agg([col("paid_cents")
                .lt(col("list_price_cents"))
                .cast(DataType::Float64)
                .mean()
                .alias("discounted_share")])
            .with_column(lit(c).cast(DataType::Int64).alias("cutoff"))
            .collect()?;
        match &mut rows {
            Some(r) => {
                r.vstack_mut_owned(part)?;
            }
            None => rows = Some(part),
        }
    }
    let cutoffs = numbered(
        rows.unwrap_or_default()
            .lazy()
            .sort(["cutoff", "user_id"], SortMultipleOptions::default()),
    )
    .collect()?;
    if cutoffs.height() == 0 {
        return Err(ModelError::Training {
            what: ModelName::DiscountSensitivity.to_string(),
            why: "no purchases in the 180 days before the training date".into(),
        });
    }
    let label: Vec<bool> = cutoffs
        .column("discounted_share")?
        .f64()?
        .iter()
        .map(|v| v.unwrap_or(0.0) >= 0.5)
        .collect();
    let levels = CategoricalLevels::from_users(&src.users)?;
    let features = featurize(src, &cutoffs, &levels, opts.params.num_threads)?;
    let names = feature_names();
    let all = TrainingSet {
        x: features.matrix(&names)?,
        n_features: names.len(),
        treated: vec![false; label.len()],
        outcome: label,
    };
    let users = features.ints("user_id")?;
    let [train_idx, valid_idx, test_idx] = split_by_user(&users, opts.params.seed);
    let (train, valid, test) = (
        all.subset(&train_idx),
        all.subset(&valid_idx),
        all.subset(&test_idx),
    );
    let categorical = categorical_indices();
    let classifier = Classifier::train(
        (&train.x, &train.outcome),
        (&valid.x, &valid.outcome),
        &names,
        &categorical,
        &opts.params,
    )?
    .scored_by(opts.scorer)?;
    let predicted = classifier.predict(&test.x, opts.params.num_threads)?;
    let test_auc = roc_auc(&test.outcome, &predicted);
    let calibration = calibration_by_decile(&test.outcome, &predicted);
    let metadata = metadata(
        ModelName::DiscountSensitivity,
        Learner::Classifier,
        opts,
        &all,
        levels,
        &features.ints("cutoff")?,
        [train.len(), valid.len(), test.len()],
        vec![
            ("auc".into(), test_auc),
            ("log_loss".into(), log_loss(&test.outcome, &predicted)),
            (
                "calibration_max_gap".into(),
                max_calibration_gap(&calibration),
            ),
        ],
        calibration,
        classifier.calibration,
    );
    Ok(TrainedClassifier {
        artifact: ModelArtifact {
            models: classifier.to_texts()?,
            metadata,
        },
        classifier,
        test_auc,
    })
}

/// Trains the recipient model on the gifts before the training date: train and validation
/// senders fit it (early stopping on validation), test senders measure it.
pub fn train_recipient(src: &SourceTables, opts: &TrainingOptions) -> Result<RecipientModel> {
    let cutoff = opts.as_of.cutoff();
    let pairs = gifts::gift_pairs(src, cutoff)?;
    let width = gifts::PAIR_FEATURES.len();
    let mut parts: [(Vec<f64>, Vec<bool>, Vec<usize>); 3] = Default::default();
    for (g, rows) in pairs.rows.iter().enumerate() {
        let k = match split_of(pairs.sender[g], opts.params.seed) {
            Split::Train => 0,
            Split::Valid => 1,
            Split::Test => 2,
        };
        parts[k]
            .0
            .extend_from_slice(&pairs.x[rows.start * width..rows.end * width]);
        parts[k].1.extend_from_slice(&pairs.label[rows.clone()]);
        parts[k].2.push(g);
    }
    let [train, valid, test] = parts;
    let positives = |labels: &[bool]| labels.iter().filter(|&&l| l).count();
    if positives(&train.1) < 20 || positives(&valid.1) < 5 || test.2.is_empty() {
        return Err(ModelError::Training {
            what: ModelName::GiftRecipient.to_string(),
            why: format!(
                "{} gifts to a friend with a choice before the training date: too few to learn \
                 who receives them",
                pairs.rows.len()
            ),
        });
    }
    let names: Vec<String> = gifts::PAIR_FEATURES.iter().map(|s| s.to_string()).collect();
    let params = opts.params.for_classifier();
    let classifier = Classifier::train(
        (&train.0, &train.1),
        (&valid.0, &valid.1),
        &names,
        &[],
        &params,
    )?
    .scored_by(opts.scorer)?;
    // Each way of choosing, on the validation senders' gifts: the model must earn its place
    // against the rule there (with few gifts to learn from it does not), and the test
    // senders' gifts then measure all three and the one chosen.
    let threads = params.num_threads;
    let valid_hits = gifts::top_one(&pairs, &valid.2, &classifier.predict(&valid.0, threads)?);
    let chosen = Pick::ALL
        .into_iter()
        .max_by_key(|&p| (valid_hits[p as usize], std::cmp::Reverse(p as usize)))
        .unwrap_or(Pick::Model);
    let hits = gifts::top_one(&pairs, &test.2, &classifier.predict(&test.0, threads)?);
    let n = test.2.len();
    let friends: usize = test.2.iter().map(|&g| pairs.rows[g].len()).sum();
    let share = |i: usize| hits[i] as f64 / n as f64;
    let top_one = TopOne {
        gifts: n,
        mean_friends: friends as f64 / n as f64,
        model: share(Pick::Model as usize),
        most_recent_friend: share(Pick::MostRecentFriend as usize),
        most_active_friend: share(gifts::MOST_ACTIVE),
        chosen,
        chosen_share: share(chosen as usize),
    };
    let all = TrainingSet {
        x: pairs.x.clone(),
        n_features: width,
        treated: vec![false; pairs.label.len()],
        outcome: pairs.label.clone(),
    };
    let mut metadata = metadata(
        ModelName::GiftRecipient,
        Learner::Classifier,
        &TrainingOptions {
            params,
            ..opts.clone()
        },
        &all,
        CategoricalLevels::default(),
        &[cutoff],
        [train.1.len(), valid.1.len(), test.1.len()],
        vec![
            ("top1_model".into(), top_one.model),
            ("top1_most_recent_friend".into(), top_one.most_recent_friend),
            ("top1_most_active_friend".into(), top_one.most_active_friend),
            ("top1".into(), top_one.chosen_share),
            ("test_gifts".into(), n as f64),
        ],
        Vec::new(),
        classifier.calibration,
    );
    metadata.feature_names = names;
    metadata.recipient_pick = Some(chosen);
    Ok(RecipientModel {
        artifact: ModelArtifact {
            models: classifier.to_texts()?,
            metadata,
        },
        classifier,
        figures: RecipientFigures {
            gifts: pairs.gifts,
            to_a_friend: pairs.to_a_friend,
            trained_on: train.2.len() + valid.2.len(),
            top_one,
        },
    })
}

/// The models every user is scored with, loaded, and the categorical levels they were trained
/// with (text values in rules compile to their codes).
#[derive(Debug)]
pub struct Scorers {
    /// Conversion uplift: the purchase probability a message adds.
    pub uplift: UpliftModel,
    /// Discount uplift: the purchase probability a discount offer adds.
    pub discount_uplift: UpliftModel,
    pub sensitivity: Classifier,
    pub levels: CategoricalLevels,
    /// Each model's training profile, by model, for drift monitoring (models stored before
    /// profiles existed have none and are not monitored).
    pub profiles: Vec<(ModelName, Profile)>,
    /// How a gift campaign chooses each user's recipient; `None` without a recipient model
    /// (a gift campaign then fails and says why).
    pub gift_recipient: Option<crate::gifts::Recipients>,
}

/// Tonight's users counted into each monitored model's profile (see [`drift`]), by model
/// name: summed over shards, then set against the profiles.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tallies(pub BTreeMap<String, Tally>);

impl Tallies {
    /// Adds another shard's tallies.
    pub fn merge(&mut self, other: &Tallies) -> std::result::Result<(), drift::TallyMismatch> {
        for (name, t) in &other.0 {
            match self.0.get_mut(name) {
                Some(mine) => mine.merge(t)?,
                None => {
                    self.0.insert(name.clone(), t.clone());
                }
            }
        }
        Ok(())
    }
}

/// Every user's features as of `date`, in `user_id` order.
pub fn user_features(
    src: &SourceTables,
    levels: &CategoricalLevels,
    date: RunDate,
    threads: usize,
) -> Result<FeatureFrame> {
    let cutoffs = numbered(src.users.clone().lazy().select([
        col("user_id"),
        lit(date.cutoff()).cast(DataType::Int64).alias("cutoff"),
    ]))
    .collect()?;
    featurize(src, &cutoffs, levels, threads)
}

/// Sets each freshly trained model's drift [`Profile`] from the population it will score, not
/// from its training rows: the monitored users of `src` (the fixed eighth of
/// [`drift::sampled`]) with their features as of `as_of`, and each model's scores of them. The
/// training rows are no reference for a night's users — exposures sit at past dates (a social
/// graph that has grown since shows as drift), and the sensitivity classifier learns from buyers
/// alone — whereas against this profile, the first night after training is stable by
/// construction and a later one shows what moved since.
pub fn profile_population(
    src: &SourceTables,
    as_of: RunDate,
    uplift: &mut TrainedUplift,
    discount: &mut TrainedUplift,
    sensitivity: &mut TrainedClassifier,
    num_threads: usize,
) -> Result<()> {
    let levels = &uplift.artifact.metadata.categorical_levels;
    let sampled: BooleanChunked = src
        .users
        .column("user_id")?
        .i64()?
        .iter()
        .map(|u| u.is_some_and(drift::sampled))
        .collect();
    let monitored = SourceTables {
        users: src.users.filter(&sampled)?,
        ..src.clone()
    };
    let names = feature_names();
    let x = user_features(&monitored, levels, as_of, num_threads)?.matrix(&names)?;
    // The three models score the same users: their features' bins are one computation.
    let features = drift::features_of(&names, &x);
    let profile =
        |score: &[f64], name: &str| Some(Profile::with_features(features.clone(), score, name));
    let scores = uplift.model.predict(&x, num_threads)?;
    uplift.artifact.metadata.profile = profile(&scores.uplift, "uplift");
    let scores = discount.model.predict(&x, num_threads)?;
    discount.artifact.metadata.profile = profile(&scores.uplift, "uplift");
    let p = sensitivity.classifier.predict(&x, num_threads)?;
    sensitivity.artifact.metadata.profile = profile(&p, "discount_sensitivity");
    Ok(())
}

/// Users scored at once: the feature matrix of a block is about 2 MB a thousand users, so a
/// block stays small beside the night's frames while each call still spreads over the threads.
const SCORE_BLOCK_ROWS: usize = 1 << 16;

/// Every user scored as of `cutoff`: the feature catalogue plus `uplift`, `p_control`,
/// `discount_uplift` (of the largest level the discount model knows), `discount_sensitivity`,
/// `marketing_opt_in` and `suppressed` (0/1), one row per user in `user_id` order.
#[derive(Debug, Clone)]
pub struct ScoredFrame {
    pub frame: DataFrame,
    /// The sampled users counted for drift monitoring.
    pub tallies: Tallies,
    /// The discount model's effect at each level it knows, one value per user in `user_id`
    /// order, as the frame's rows (selection names the columns it reads them from).
    pub discount_by_level: Vec<(u32, Vec<f64>)>,
}

/// Scores every user of `src.users` with the models as of the run date; returns the scores
/// and what a drop's affinity still reads of the tables. The other tables are let go as soon
/// as the features are computed, before the models score.
pub fn score_users(
    src: SourceTables,
    scorers: &Scorers,
    date: RunDate,
    num_threads: usize,
) -> Result<(ScoredFrame, AffinityTables)> {
    let catalogue = feature_names();
    check_schema(&scorers.uplift.feature_names, &catalogue)?;
    check_schema(&scorers.discount_uplift.feature_names, &catalogue)?;
    check_schema(&scorers.sensitivity.feature_names, &catalogue)?;
    let features = user_features(&src, &scorers.levels, date, num_threads)?;
    let suppressed = src
        .suppressions
        .clone()
        .lazy()
        .select([col("user_id")])
        .unique(None, UniqueKeepStrategy::First)
        .with_column(lit(1i64).alias("suppressed"));
    let kept = AffinityTables::from(src);
    let rows = features.height();
    let (mut uplift, mut p_control, mut discount_uplift, mut discount_sensitivity) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    let discount_levels = &scorers.discount_uplift.discount_levels;
    let mut by_level: Vec<Vec<f64>> = vec![Vec::with_capacity(rows); discount_levels.len()];
    let sampled: Vec<bool> = features
        .ints("user_id")?
        .into_iter()
        .map(drift::sampled)
        .collect();
    let mut tallies: Vec<(ModelName, &Profile, Tally)> = scorers
        .profiles
        .iter()
        .map(|(name, p)| (*name, p, p.tally()))
        .collect();
    // Models profiled on the same users (trained together) share their features' bins: each
    // such set is counted once, for the first model that has it, and copied to the others.
    let counted_by: Vec<Option<usize>> = (0..tallies.len())
        .map(|i| (0..i).find(|&j| tallies[j].1.features == tallies[i].1.features))
        .collect();
    // Every row is scored alone, so blocks give the scores of the whole matrix.
    for start in (0..rows).step_by(SCORE_BLOCK_ROWS) {
        let x = features.matrix_rows(&catalogue, start..rows.min(start + SCORE_BLOCK_ROWS))?;
        let scores = scorers.uplift.predict(&x, num_threads)?;
        // A dose model scores its control model once for every level; `discount_uplift` is its
        // largest level's effect, as its `predict` gives it.
        let (levels, _) = scorers.discount_uplift.predict_levels(&x, num_threads)?;
        let discount = match levels.last() {
            Some(top) => top.clone(),
            None => scorers.discount_uplift.predict(&x, num_threads)?.uplift,
        };
        for (column, effect) in by_level.iter_mut().zip(levels) {
            column.extend(effect);
        }
        let sensitivity = scorers.sensitivity.predict(&x, num_threads)?;
        for ((name, profile, tally), shared) in tallies.iter_mut().zip(&counted_by) {
            let score = match name {
                ModelName::ConversionUplift => &scores.uplift,
                ModelName::DiscountUplift => &discount,
                ModelName::DiscountSensitivity => &sensitivity,
                // Scores (sender, friend) pairs, not users: it has no profile of users.
                ModelName::GiftRecipient => continue,
            };
            for (r, row) in x.chunks_exact(catalogue.len()).enumerate() {
                if sampled[start + r] {
                    if shared.is_none() {
                        tally.add_features(profile, row);
                    }
                    tally.add_score(profile, score[r]);
                }
            }
        }
        uplift.extend(scores.uplift);
        p_control.extend(scores.p_control);
        discount_uplift.extend(discount);
        discount_sensitivity.extend(sensitivity);
    }
    for (i, shared) in counted_by.iter().enumerate() {
        if let Some(j) = *shared {
            tallies[i].2.features = tallies[j].2.features.clone();
        }
    }
    let tallies = Tallies(
        tallies
            .into_iter()
            .map(|(name, _, t)| (name.to_string(), t))
            .collect(),
    );
    let mut frame = features.frame;
    frame.with_column(Column::new("uplift".into(), uplift))?;
    frame.with_column(Column::new("p_control".into(), p_control))?;
    frame.with_column(Column::new("discount_uplift".into(), discount_uplift))?;
    frame.with_column(Column::new(
        "discount_sensitivity".into(),
        discount_sensitivity,
    ))?;
    let frame = frame
        .lazy()
        .join(
            kept.users
                .clone()
                .lazy()
                .select([col("user_id"), col("marketing_opt_in")]),
            [col("user_id")],
            [col("user_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            suppressed,
            [col("user_id")],
            [col("user_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("suppressed").fill_null(lit(0i64)))
        .sort(["user_id"], SortMultipleOptions::default())
        .collect()?;
    let discount_by_level = discount_levels.iter().copied().zip(by_level).collect();
    Ok((
        ScoredFrame {
            frame,
            tallies,
            discount_by_level,
        },
        kept,
    ))
}

/// Splits rows into `(rest, held_out)`, holding out `share` of every (arm, outcome) stratum,
/// drawn by a generator seeded with `seed`. Both index lists are sorted.
pub fn stratified_split(
    treated: &[bool],
    outcome: &[bool],
    share: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut rest, mut held) = (Vec::new(), Vec::new());
    for (t, y) in [(false, false), (false, true), (true, false), (true, true)] {
        let mut stratum: Vec<usize> = (0..treated.len())
            .filter(|&i| treated[i] == t && outcome[i] == y)
            .collect();
        stratum.shuffle(&mut rng);
        let n_held = (stratum.len() as f64 * share).round() as usize;
        held.extend_from_slice(&stratum[..n_held]);
        rest.extend_from_slice(&stratum[n_held..]);
    }
    rest.sort_unstable();
    held.sort_unstable();
    (rest, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_mismatch_names_missing_and_extra_features() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        check_schema(&names(&["a", "b"]), &names(&["a", "b"])).unwrap();
        let err = check_schema(&names(&["a", "old"]), &names(&["a", "new"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "feature schema mismatch: missing [\"old\"], unexpected [\"new\"]"
        );
        // Same names in another order would shift every column: refused too.
        check_schema(&names(&["a", "b"]), &names(&["b", "a"])).unwrap_err();
    }

    #[test]
    fn stratified_split_keeps_every_stratum_share() {
        let treated: Vec<bool> = (0..1000).map(|i| i % 4 != 0).collect();
        let outcome: Vec<bool> = (0..1000).map(|i| i % 10 == 0).collect();
        let (rest, held) = stratified_split(&treated, &outcome, 0.3, 7);
        assert_eq!(rest.len() + held.len(), 1000);
        for (t, y) in [(false, false), (false, true), (true, false), (true, true)] {
            let all = (0..1000)
                .filter(|&i| treated[i] == t && outcome[i] == y)
                .count();
            let h = held
                .iter()
                .filter(|&&i| treated[i] == t && outcome[i] == y)
                .count();
            assert_eq!(h, (all as f64 * 0.3).round() as usize);
        }
        assert_eq!(stratified_split(&treated, &outcome, 0.3, 7).1, held);
        assert_ne!(stratified_split(&treated, &outcome, 0.3, 8).1, held);
    }
}

//! Training the conversion uplift model from past randomized exposures, and scoring users with it.
//!
//! Training rows are the exposures of message-only campaigns (`discount_pct = 0`): features as
//! of `assigned_at`, outcome = a purchase within the attribution window after it. Users, not
//! rows, are split into train / validation / test by a seeded hash, so no user's history leaks
//! from the fit into the evaluation.

use polars::prelude::*;

use crate::artifact::fingerprint;
use crate::features::{categorical_indices, feature_names, featurize, purchased_within};
use crate::metrics::{
    calibration_by_decile, log_loss, max_calibration_gap, qini_auc_score, roc_auc, DecileRow,
};
use crate::uplift::{Classifier, Learner};
use crate::{
    CategoricalLevels, FeatureFrame, ModelArtifact, ModelError, ModelMetadata, Result,
    SourceTables, TrainingSet, UpliftModel, UpliftParams,
};

/// Name of the conversion uplift model in the model store.
pub const CONVERSION_UPLIFT: &str = "conversion_uplift";

/// Every model a run scores with, by its name in the model store.
pub const MODEL_NAMES: [&str; 3] = [CONVERSION_UPLIFT, DISCOUNT_UPLIFT, DISCOUNT_SENSITIVITY];

/// What training needs besides the data.
#[derive(Debug, Clone)]
pub struct TrainingOptions {
    pub params: UpliftParams,
    /// The meta-learner; `None` trains all four and keeps the best on validation Qini.
    pub learner: Option<Learner>,
    /// Days after an exposure in which a purchase counts as its outcome.
    pub attribution_days: i64,
    /// Train as of this time (UTC Unix seconds): only exposures whose attribution window closed
    /// before it are used, so a model trained later on the same data is the same.
    pub as_of: i64,
    /// Training time, `YYYY-MM-DDTHH:MM:SSZ`; part of the version. The caller owns the clock.
    pub created_at: String,
    pub code_version: String,
    /// True individual effects by user, known only for synthetic data (the demo). When given,
    /// training also measures the *feature ceiling*: see [`HeldOut::feature_ceiling`].
    pub known_effects: Option<std::sync::Arc<std::collections::HashMap<i64, f64>>>,
}

/// Held-out test exposures with the trained model's uplift scores.
#[derive(Debug, Clone, Default)]
pub struct HeldOut {
    pub user_id: Vec<i64>,
    pub treated: Vec<bool>,
    pub outcome: Vec<bool>,
    pub uplift: Vec<f64>,
    /// With known effects: the test scores of a regressor fitted on the training rows' *true*
    /// effects instead of their outcomes. No model that learns from outcomes can rank better
    /// with these features, so its Qini tells how much of the oracle's Qini the features can
    /// reach at all.
    pub feature_ceiling: Option<Vec<f64>>,
}

/// A trained model with its artifact and its held-out evaluation.
#[derive(Debug)]
pub struct TrainedUplift {
    pub model: UpliftModel,
    pub artifact: ModelArtifact,
    pub test: HeldOut,
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
fn metadata(
    name: &str,
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
        name: name.into(),
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
        data_fingerprint,
        code_version: opts.code_version.clone(),
        created_at: opts.created_at.clone(),
    }
}

/// Which exposures an uplift model learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpliftTarget {
    /// Message-only campaigns (`discount_pct = 0`): the effect of being messaged.
    Conversion,
    /// Discount campaigns (`discount_pct > 0`): the effect of a discount offer.
    Discount,
}

impl UpliftTarget {
    /// The model's name in the store.
    pub fn name(self) -> &'static str {
        match self {
            UpliftTarget::Conversion => CONVERSION_UPLIFT,
            UpliftTarget::Discount => DISCOUNT_UPLIFT,
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

/// Name of the discount uplift model in the model store.
pub const DISCOUNT_UPLIFT: &str = "discount_uplift";

/// Trains an uplift model on the exposures of its target.
pub fn train_uplift(
    src: &SourceTables,
    target: UpliftTarget,
    opts: &TrainingOptions,
) -> Result<TrainedUplift> {
    let name = target.name();
    let (which, described) = target.exposures();
    let exposures = src
        .campaign_exposures
        .clone()
        .lazy()
        .filter(which)
        .filter(
            (col("assigned_at") + lit(opts.attribution_days * crate::DAY))
                .lt_eq(lit(opts.as_of).cast(DataType::Int64)),
        )
        .select([
            col("user_id"),
            col("assigned_at").alias("cutoff"),
            col("arm"),
        ]);
    let exposures = numbered(exposures).collect()?;
    if exposures.height() == 0 {
        return Err(ModelError::Training {
            what: name.into(),
            why: format!(
                "campaign_exposures has no {described} rows whose attribution window closed \
                 before the training date"
            ),
        });
    }
    let levels = CategoricalLevels::from_users(&src.users)?;
    let features = featurize(src, &exposures, &levels)?;
    let outcome = purchased_within(src, &exposures, opts.attribution_days)?;
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
    let [train_idx, valid_idx, test_idx] = split_by_user(&users, opts.params.seed);
    let (train, valid, test) = (
        all.subset(&train_idx),
        all.subset(&valid_idx),
        all.subset(&test_idx),
    );
    let categorical = categorical_indices();
    let (model, selection) = UpliftModel::fit(
        opts.learner,
        &train,
        &valid,
        &names,
        &categorical,
        &opts.params,
    )?;
    let scores = model.predict(&test.x, opts.params.num_threads)?;
    let qini = qini_auc_score(&test.outcome, &scores.uplift, &test.treated);
    let feature_ceiling = match &opts.known_effects {
        Some(effects) => {
            let known = |idx: &[usize]| -> Vec<f64> {
                idx.iter()
                    .map(|&i| effects.get(&users[i]).copied().unwrap_or(0.0))
                    .collect()
            };
            Some(crate::uplift::regress(
                (&train.x, &known(&train_idx)),
                (&valid.x, &known(&valid_idx)),
                &test.x,
                &names,
                &categorical,
                &opts.params,
            )?)
        }
        None => None,
    };
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
    metrics.extend(
        selection
            .iter()
            .map(|(l, q)| (format!("valid_qini_auc_{}", l.name()), *q)),
    );

    let metadata = metadata(
        name,
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
    let artifact = ModelArtifact::new(metadata, &model)?;
    Ok(TrainedUplift {
        model,
        artifact,
        test: HeldOut {
            user_id: test_idx.iter().map(|&i| users[i]).collect(),
            treated: test.treated,
            outcome: test.outcome,
            uplift: scores.uplift,
            feature_ceiling,
        },
    })
}

/// Name of the discount-sensitivity model in the model store.
pub const DISCOUNT_SENSITIVITY: &str = "discount_sensitivity";
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
        let c = opts.as_of - k * h;
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
            what: DISCOUNT_SENSITIVITY.into(),
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
    let features = featurize(src, &cutoffs, &levels)?;
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
    )?;
    let predicted = classifier.predict(&test.x, opts.params.num_threads)?;
    let test_auc = roc_auc(&test.outcome, &predicted);
    let calibration = calibration_by_decile(&test.outcome, &predicted);
    let metadata = metadata(
        DISCOUNT_SENSITIVITY,
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

/// The models every user is scored with.
#[derive(Debug, Clone, Copy)]
pub struct Scorers<'a> {
    /// Conversion uplift: the purchase probability a message adds.
    pub uplift: &'a UpliftModel,
    /// Discount uplift: the purchase probability a discount offer adds.
    pub discount_uplift: &'a UpliftModel,
    pub sensitivity: &'a Classifier,
}

/// Every user scored as of `cutoff`: the feature catalogue plus `uplift`, `p_control`,
/// `discount_uplift`, `discount_sensitivity`, `marketing_opt_in` and `suppressed` (0/1), one row per user in `user_id` order.
#[derive(Debug, Clone)]
pub struct ScoredFrame {
    pub frame: DataFrame,
}

/// Refuses a model whose features differ from the catalogue this build computes, naming the
/// features the frame lacks (`missing`) and those the model does not know (`extra`).
pub fn check_schema(model: &[String], frame: &[String]) -> Result<()> {
    if model == frame {
        return Ok(());
    }
    Err(ModelError::FeatureMismatch {
        missing: model
            .iter()
            .filter(|n| !frame.contains(n))
            .cloned()
            .collect(),
        extra: frame
            .iter()
            .filter(|n| !model.contains(n))
            .cloned()
            .collect(),
    })
}

/// Scores every user of `src.users` with `model` as of `cutoff`.
pub fn score_users(
    src: &SourceTables,
    scorers: Scorers,
    levels: &CategoricalLevels,
    cutoff: i64,
    num_threads: usize,
) -> Result<ScoredFrame> {
    let cutoffs = numbered(src.users.clone().lazy().select([
        col("user_id"),
        lit(cutoff).cast(DataType::Int64).alias("cutoff"),
    ]))
    .collect()?;
    let catalogue = feature_names();
    check_schema(&scorers.uplift.feature_names, &catalogue)?;
    check_schema(&scorers.discount_uplift.feature_names, &catalogue)?;
    check_schema(&scorers.sensitivity.feature_names, &catalogue)?;
    let features: FeatureFrame = featurize(src, &cutoffs, levels)?;
    let x = features.matrix(&catalogue)?;
    let scores = scorers.uplift.predict(&x, num_threads)?;
    let discount_uplift = scorers.discount_uplift.predict(&x, num_threads)?.uplift;
    let discount_sensitivity = scorers.sensitivity.predict(&x, num_threads)?;
    let suppressed = src
        .suppressions
        .clone()
        .lazy()
        .select([col("user_id")])
        .unique(None, UniqueKeepStrategy::First)
        .with_column(lit(1i64).alias("suppressed"));
    let mut frame = features.frame;
    frame.with_column(Column::new("uplift".into(), scores.uplift))?;
    frame.with_column(Column::new("p_control".into(), scores.p_control))?;
    frame.with_column(Column::new("discount_uplift".into(), discount_uplift))?;
    frame.with_column(Column::new(
        "discount_sensitivity".into(),
        discount_sensitivity,
    ))?;
    let frame = frame
        .lazy()
        .join(
            src.users
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
    Ok(ScoredFrame { frame })
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

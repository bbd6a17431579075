//! Uplift learners on LightGBM.
//!
//! The first learner is the T-learner: one classifier on treated exposures, one on control
//! exposures, uplift = P(buy | treated) − P(buy | control). It is honest (each model sees only
//! its own arm), needs no assumed treatment propensity, and its two probabilities are reused as
//! the baseline purchase probability ("would buy anyway").

use lightgbm3::{Booster, Dataset};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{ModelError, Result};

/// LightGBM settings for small, noisy uplift signals: shallow trees, large leaves, L2
/// regularisation and early stopping on a validation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpliftParams {
    /// Threads LightGBM may use; set explicitly so it does not oversubscribe beside tokio.
    pub num_threads: usize,
    pub seed: u64,
    pub learning_rate: f64,
    pub num_leaves: u32,
    pub min_data_in_leaf: u32,
    pub lambda_l2: f64,
    pub feature_fraction: f64,
    pub max_rounds: u32,
    pub early_stopping_rounds: u32,
}

impl Default for UpliftParams {
    fn default() -> Self {
        Self {
            num_threads: 2,
            seed: 42,
            learning_rate: 0.05,
            num_leaves: 15,
            min_data_in_leaf: 100,
            lambda_l2: 10.0,
            feature_fraction: 0.8,
            max_rounds: 400,
            early_stopping_rounds: 30,
        }
    }
}

impl UpliftParams {
    fn lightgbm(&self, categorical: &[usize]) -> serde_json::Value {
        let categorical = categorical
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut p = json!({
            "objective": "binary",
            "metric": "binary_logloss",
            "num_iterations": self.max_rounds,
            "early_stopping_rounds": self.early_stopping_rounds,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "lambda_l2": self.lambda_l2,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": self.seed,
            // Same data, same model: a re-run for the same date must give the same rows.
            "deterministic": true,
            "force_row_wise": true,
            "num_threads": self.num_threads,
            "verbosity": -1,
        });
        if !categorical.is_empty() {
            p["categorical_feature"] = json!(categorical);
        }
        p
    }
}

/// Exposures as a feature matrix (row-major) with their arm and outcome.
#[derive(Debug, Clone, Default)]
pub struct TrainingSet {
    pub x: Vec<f64>,
    pub n_features: usize,
    pub treated: Vec<bool>,
    pub outcome: Vec<bool>,
}

impl TrainingSet {
    pub fn len(&self) -> usize {
        self.treated.len()
    }

    pub fn is_empty(&self) -> bool {
        self.treated.is_empty()
    }

    /// The rows at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> TrainingSet {
        let n = self.n_features;
        let mut x = Vec::with_capacity(idx.len() * n);
        for &i in idx {
            x.extend_from_slice(&self.x[i * n..(i + 1) * n]);
        }
        TrainingSet {
            x,
            n_features: n,
            treated: idx.iter().map(|&i| self.treated[i]).collect(),
            outcome: idx.iter().map(|&i| self.outcome[i]).collect(),
        }
    }

    /// The rows of one arm: features and 0/1 labels.
    fn arm(&self, treated: bool) -> (Vec<f64>, Vec<f32>) {
        let idx: Vec<usize> = (0..self.len())
            .filter(|&i| self.treated[i] == treated)
            .collect();
        let s = self.subset(&idx);
        let labels = s.outcome.iter().map(|&y| f32::from(u8::from(y))).collect();
        (s.x, labels)
    }
}

/// Scores of a T-learner for a set of rows.
#[derive(Debug, Clone, Default)]
pub struct UpliftScores {
    /// P(buy | treated) − P(buy | control): the purchase probability a message adds.
    pub uplift: Vec<f64>,
    pub p_treated: Vec<f64>,
    /// Baseline purchase probability without a message: the "sure things" score high here.
    pub p_control: Vec<f64>,
}

/// A trained T-learner: two LightGBM classifiers over the same features.
pub struct UpliftModel {
    treated: Booster,
    control: Booster,
    pub feature_names: Vec<String>,
}

impl std::fmt::Debug for UpliftModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpliftModel")
            .field("feature_names", &self.feature_names)
            .field("treated_iterations", &self.treated.num_iterations())
            .field("control_iterations", &self.control.num_iterations())
            .finish()
    }
}

fn train_arm(
    train: &TrainingSet,
    valid: &TrainingSet,
    treated: bool,
    names: &[String],
    params: &serde_json::Value,
) -> Result<Booster> {
    let arm = if treated { "treated" } else { "control" };
    let (x, y) = train.arm(treated);
    let (vx, vy) = valid.arm(treated);
    for (set, labels) in [("training", &y), ("validation", &vy)] {
        let positives = labels.iter().filter(|&&l| l > 0.5).count();
        if positives == 0 || positives == labels.len() {
            return Err(ModelError::Training {
                what: format!("the {arm} model"),
                why: format!(
                    "its {set} rows ({}) need both purchases and non-purchases",
                    labels.len()
                ),
            });
        }
    }
    let n = train.n_features as i32;
    let mut ds = Dataset::from_slice(&x, &y, n, true)?;
    ds.set_feature_names(names)?;
    let vds = Dataset::from_slice_with_reference(&vx, &vy, n, true, Some(&ds))?;
    Ok(Booster::train_with_valid(ds, Some(vds), params)?)
}

impl UpliftModel {
    /// Trains the T-learner; `valid` drives early stopping of both arms' models.
    pub fn train(
        train: &TrainingSet,
        valid: &TrainingSet,
        feature_names: &[String],
        categorical: &[usize],
        params: &UpliftParams,
    ) -> Result<Self> {
        if feature_names.len() != train.n_features {
            return Err(ModelError::Training {
                what: "the uplift model".into(),
                why: format!(
                    "{} feature names for {} columns",
                    feature_names.len(),
                    train.n_features
                ),
            });
        }
        let p = params.lightgbm(categorical);
        Ok(Self {
            treated: train_arm(train, valid, true, feature_names, &p)?,
            control: train_arm(train, valid, false, feature_names, &p)?,
            feature_names: feature_names.to_vec(),
        })
    }

    /// Scores a row-major matrix whose columns are [`Self::feature_names`].
    pub fn predict(&self, x: &[f64], num_threads: usize) -> Result<UpliftScores> {
        let n = self.feature_names.len() as i32;
        let threads = format!("num_threads={num_threads}");
        let p_treated = self.treated.predict_with_params(x, n, true, &threads)?;
        let p_control = self.control.predict_with_params(x, n, true, &threads)?;
        let uplift = p_treated
            .iter()
            .zip(&p_control)
            .map(|(t, c)| t - c)
            .collect();
        Ok(UpliftScores {
            uplift,
            p_treated,
            p_control,
        })
    }

    /// The two LightGBM model texts, `(treated, control)`.
    pub fn to_texts(&self) -> Result<(String, String)> {
        Ok((self.treated.save_string()?, self.control.save_string()?))
    }

    /// Loads a model from its two LightGBM texts, refusing one whose stored feature names differ
    /// from `feature_names`.
    pub fn from_texts(treated: &str, control: &str, feature_names: &[String]) -> Result<Self> {
        let treated = Booster::from_string(treated)?;
        let control = Booster::from_string(control)?;
        for booster in [&treated, &control] {
            let stored = booster.feature_name()?;
            if stored != feature_names {
                return Err(ModelError::FeatureMismatch {
                    missing: feature_names
                        .iter()
                        .filter(|n| !stored.contains(n))
                        .cloned()
                        .collect(),
                    extra: stored
                        .iter()
                        .filter(|n| !feature_names.contains(n))
                        .cloned()
                        .collect(),
                });
            }
        }
        Ok(Self {
            treated,
            control,
            feature_names: feature_names.to_vec(),
        })
    }
}

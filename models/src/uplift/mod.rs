//! Uplift meta-learners on LightGBM.
//!
//! - **T**: one classifier per arm; uplift = P(buy | treated) − P(buy | control).
//! - **S**: one classifier with the arm as a feature; uplift = f(x, 1) − f(x, 0).
//! - **X**: the T-learner's arm models impute each row's individual effect; two regressors learn
//!   those effects per arm and are blended by the estimated treatment propensity e(x).
//! - **CT** (class transformation): one classifier of Z = 1 when (treated and bought) or
//!   (control and did not buy); rows are weighted by the estimated propensity so that the arms
//!   count equally, and uplift = 2·P(Z = 1) − 1.
//!
//! The treatment propensity is estimated from the data (a regularised LightGBM classifier of the
//! arm), never assumed to be 0.5. Every learner also carries a *baseline*: the purchase
//! probability without treatment, which selection uses to spot users who would buy anyway.
//!
//! Training runs twice: a first pass with early stopping on the validation rows finds how many
//! rounds each model needs (and lets `auto` compare learners); the final model is refit on the
//! training and validation rows together with those round counts, so no labelled row is wasted.

mod lgbm;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::calibration::Platt;
use crate::forest::Scorer;
use crate::metrics::qini_auc_score;
use crate::{ModelError, Result};
use lgbm::{clip, predict, Fit, Rounds, Rows};
pub use lgbm::{large_benchmark_model, TreeModel};
pub use lgbm::{regress, Classifier};

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
            learning_rate: 0.03,
            num_leaves: 5,
            min_data_in_leaf: 400,
            lambda_l2: 10.0,
            feature_fraction: 0.8,
            max_rounds: 800,
            early_stopping_rounds: 50,
        }
    }
}

impl UpliftParams {
    /// The settings for a plain classifier (discount sensitivity), from these: its label is
    /// observed directly, not a small difference between two arms, so larger trees at a faster
    /// rate reach the same held-out AUC with a fifth of the trees, and a fifth of the scoring
    /// time (demo, 100k users: AUC 0.7402 with 41 trees against 0.7396 with 230).
    pub fn for_classifier(&self) -> Self {
        Self {
            learning_rate: 0.1,
            num_leaves: 15,
            min_data_in_leaf: 100,
            ..self.clone()
        }
    }

    fn lightgbm(&self, objective: &str, categorical: &[usize]) -> serde_json::Value {
        let metric = if objective == "binary" {
            "binary_logloss"
        } else {
            "l2"
        };
        let mut p = json!({
            "objective": objective,
            "metric": metric,
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
            let list: Vec<String> = categorical.iter().map(usize::to_string).collect();
            p["categorical_feature"] = json!(list.join(","));
        }
        p
    }
}

/// How a stored model learns: one of the uplift meta-learners, or a plain classifier (the
/// discount-sensitivity model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Learner {
    T,
    S,
    X,
    Ct,
    Classifier,
}

impl Learner {
    /// The uplift meta-learners (what `auto` chooses from).
    pub const ALL: [Learner; 4] = [Learner::T, Learner::S, Learner::X, Learner::Ct];

    pub fn name(self) -> &'static str {
        match self {
            Learner::T => "t",
            Learner::S => "s",
            Learner::X => "x",
            Learner::Ct => "ct",
            Learner::Classifier => "classifier",
        }
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

    /// These rows followed by `other`'s.
    pub fn concat(&self, other: &TrainingSet) -> TrainingSet {
        let mut out = self.clone();
        out.x.extend_from_slice(&other.x);
        out.treated.extend_from_slice(&other.treated);
        out.outcome.extend_from_slice(&other.outcome);
        out
    }

    fn arm(&self, treated: bool) -> TrainingSet {
        let idx: Vec<usize> = (0..self.len())
            .filter(|&i| self.treated[i] == treated)
            .collect();
        self.subset(&idx)
    }
}

/// A row-major matrix of `n` columns with one more column holding `value(row)` (the arm, for
/// the S-learner).
fn with_column(x: &[f64], n: usize, value: impl Fn(usize) -> f64) -> Vec<f64> {
    let rows = x.len() / n.max(1);
    let mut out = Vec::with_capacity(rows * (n + 1));
    for r in 0..rows {
        out.extend_from_slice(&x[r * n..(r + 1) * n]);
        out.push(value(r));
    }
    out
}

fn labels(v: &[bool]) -> Vec<f32> {
    v.iter().map(|&b| f32::from(u8::from(b))).collect()
}

/// Scores of an uplift model for a set of rows.
#[derive(Debug, Clone, Default)]
pub struct UpliftScores {
    /// The purchase probability a message adds (negative: the message costs purchases).
    pub uplift: Vec<f64>,
    /// Baseline purchase probability without a message: the "sure things" score high here.
    pub p_control: Vec<f64>,
}

/// One LightGBM model of a learner, with the role it plays.
struct Part {
    role: &'static str,
    model: TreeModel,
}

/// A trained uplift model: its learner and LightGBM models by role.
pub struct UpliftModel {
    pub learner: Learner,
    parts: Vec<Part>,
    pub feature_names: Vec<String>,
    /// Platt map of the baseline purchase probability, fitted on the validation control rows.
    pub baseline_calibration: Platt,
}

impl std::fmt::Debug for UpliftModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpliftModel")
            .field("learner", &self.learner)
            .field("roles", &self.roles())
            .field("feature_names", &self.feature_names)
            .field("baseline_calibration", &self.baseline_calibration)
            .finish()
    }
}

/// The column the S-learner appends for the arm.
pub const TREATMENT_FEATURE: &str = "treatment";

/// The roles of a learner's models, in storage order.
pub fn roles(learner: Learner) -> &'static [&'static str] {
    match learner {
        Learner::T => &["treated", "control"],
        Learner::S => &["single"],
        Learner::X => &[
            "treated",
            "control",
            "tau_treated",
            "tau_control",
            "propensity",
        ],
        Learner::Ct => &["transformed", "control", "propensity"],
        Learner::Classifier => &["classifier"],
    }
}

/// Features a role's model was trained on.
fn role_features(role: &str, names: &[String]) -> Vec<String> {
    let mut v = names.to_vec();
    if role == "single" {
        v.push(TREATMENT_FEATURE.into());
    }
    v
}

/// What [`UpliftModel::fit`] tried.
#[derive(Debug, Clone, Default)]
pub struct Tried {
    /// The validation Qini of each learner trained, in the order they were tried.
    pub qini: Vec<(Learner, f64)>,
    /// The learners that could not be trained, with why (only when choosing among all).
    pub failed: Vec<(Learner, String)>,
}

impl UpliftModel {
    /// Trains `learner`, or with `None` every learner and keeps the best Qini on `valid`.
    /// Early stopping on `valid` finds each model's rounds; the chosen learner is then refit on
    /// `train` and `valid` together. Returns the model and what was tried: the validation Qini
    /// of each learner trained and, choosing among all, the learners that could not be trained
    /// on these rows (one arm's validation rows of a single class, say), with why. A learner
    /// asked for by name that cannot be trained fails the fit.
    pub fn fit(
        learner: Option<Learner>,
        train: &TrainingSet,
        valid: &TrainingSet,
        feature_names: &[String],
        categorical: &[usize],
        params: &UpliftParams,
    ) -> Result<(Self, Tried)> {
        let choosing = learner.is_none();
        let candidates = learner.map_or(Learner::ALL.to_vec(), |l| vec![l]);
        let mut best: Option<(Self, f64, Vec<f64>)> = None;
        let mut tried = Tried::default();
        for learner in candidates {
            let first = match Self::fit_pass(
                learner,
                train,
                Some(valid),
                None,
                feature_names,
                categorical,
                params,
            ) {
                Ok(first) => first,
                Err(e) if choosing => {
                    tried.failed.push((learner, e.to_string()));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let s = first.predict(&valid.x, params.num_threads)?;
            let q = qini_auc_score(&valid.outcome, &s.uplift, &valid.treated);
            tried.qini.push((learner, q));
            if best.as_ref().is_none_or(|(_, b, _)| q > *b) {
                best = Some((first, q, s.p_control));
            }
        }
        let (first, _, p_control) = best.ok_or_else(|| ModelError::Training {
            what: "the uplift model".into(),
            why: if tried.failed.is_empty() {
                "no learner to train".into()
            } else {
                let each: Vec<String> = tried
                    .failed
                    .iter()
                    .map(|(l, why)| format!("{}: {why}", l.name()))
                    .collect();
                format!("no learner could be trained ({})", each.join("; "))
            },
        })?;
        // The baseline is calibrated on validation rows without a message, which the refit
        // model has not seen at this stage of its fit either (same rounds, more rows).
        let control: Vec<usize> = (0..valid.len()).filter(|&i| !valid.treated[i]).collect();
        let calibration = Platt::fit(
            &control
                .iter()
                .map(|&i| valid.outcome[i])
                .collect::<Vec<_>>(),
            &control.iter().map(|&i| p_control[i]).collect::<Vec<_>>(),
        );
        let mut model = first.refit(train, valid, categorical, params)?;
        model.baseline_calibration = calibration;
        Ok((model, tried))
    }

    /// The same learner refit on `train` and `valid` together with this model's round counts.
    fn refit(
        &self,
        train: &TrainingSet,
        valid: &TrainingSet,
        categorical: &[usize],
        params: &UpliftParams,
    ) -> Result<Self> {
        let rounds: Rounds = self
            .parts
            .iter()
            .map(|p| (p.role, p.model.booster.num_iterations()))
            .collect();
        Self::fit_pass(
            self.learner,
            &train.concat(valid),
            None,
            Some(&rounds),
            &self.feature_names,
            categorical,
            params,
        )
    }

    /// One fit of every model of a learner: with `valid` for early stopping, or with fixed
    /// `rounds`.
    fn fit_pass(
        learner: Learner,
        train: &TrainingSet,
        valid: Option<&TrainingSet>,
        rounds: Option<&Rounds>,
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
        for (set, s) in [("training", Some(train)), ("validation", valid)] {
            let Some(s) = s else { continue };
            let treated = s.treated.iter().filter(|&&t| t).count();
            if treated == 0 || treated == s.len() {
                return Err(ModelError::Training {
                    what: "the uplift model".into(),
                    why: format!("its {set} rows need both treated and control rows"),
                });
            }
        }
        let fit = Fit {
            params,
            names: feature_names,
            categorical,
            rounds,
        };
        let threads = params.num_threads;
        let n = train.n_features;
        let parts = match learner {
            Learner::Classifier => {
                return Err(ModelError::Training {
                    what: "the uplift model".into(),
                    why: "a classifier is not an uplift learner".into(),
                })
            }
            Learner::T => vec![
                ("treated", fit.arm_model(train, valid, true)?),
                ("control", fit.arm_model(train, valid, false)?),
            ],
            Learner::S => {
                let names = role_features("single", feature_names);
                let arm = |s: &TrainingSet| {
                    with_column(&s.x, s.n_features, |r| f64::from(u8::from(s.treated[r])))
                };
                let (x, y) = (arm(train), labels(&train.outcome));
                let v = valid.map(|v| (arm(v), labels(&v.outcome)));
                let single = fit.run(
                    "single",
                    "binary",
                    Rows {
                        x: &x,
                        y: &y,
                        weights: None,
                    },
                    v.as_ref().map(|(x, y)| Rows {
                        x,
                        y,
                        weights: None,
                    }),
                    &names,
                )?;
                vec![("single", single)]
            }
            Learner::X => {
                let treated = fit.arm_model(train, valid, true)?;
                let control = fit.arm_model(train, valid, false)?;
                // Imputed individual effects: treated rows against the control model, control
                // rows against the treated model.
                let imputed = |set: &TrainingSet, arm: bool| -> Result<(Vec<f64>, Vec<f32>)> {
                    let s = set.arm(arm);
                    let other = predict(if arm { &control } else { &treated }, &s.x, n, threads)?;
                    let d = s
                        .outcome
                        .iter()
                        .zip(&other)
                        .map(|(&y, &p)| {
                            let y = f64::from(u8::from(y));
                            (if arm { y - p } else { p - y }) as f32
                        })
                        .collect();
                    Ok((s.x, d))
                };
                let mut taus = Vec::new();
                for (role, arm) in [("tau_treated", true), ("tau_control", false)] {
                    let (x, d) = imputed(train, arm)?;
                    let v = valid.map(|v| imputed(v, arm)).transpose()?;
                    taus.push(fit.run(
                        role,
                        "regression",
                        Rows {
                            x: &x,
                            y: &d,
                            weights: None,
                        },
                        v.as_ref().map(|(x, y)| Rows {
                            x,
                            y,
                            weights: None,
                        }),
                        feature_names,
                    )?);
                }
                let tau_control = taus.pop().expect("two effect models");
                let tau_treated = taus.pop().expect("two effect models");
                vec![
                    ("treated", treated),
                    ("control", control),
                    ("tau_treated", tau_treated),
                    ("tau_control", tau_control),
                    ("propensity", fit.propensity(train, valid)?),
                ]
            }
            Learner::Ct => {
                let propensity = fit.propensity(train, valid)?;
                let z = |s: &TrainingSet| -> Vec<f32> {
                    s.treated
                        .iter()
                        .zip(&s.outcome)
                        .map(|(&t, &y)| f32::from(u8::from(t == y)))
                        .collect()
                };
                // Weight each arm to half the total mass: the transformation is only unbiased
                // when both arms count equally.
                let e = predict(&propensity, &train.x, n, threads)?;
                let w: Vec<f32> = train
                    .treated
                    .iter()
                    .zip(&e)
                    .map(|(&t, &e)| {
                        let e = clip(e);
                        (if t { 0.5 / e } else { 0.5 / (1.0 - e) }) as f32
                    })
                    .collect();
                let (zy, vz) = (z(train), valid.map(z));
                let transformed = fit.run(
                    "transformed",
                    "binary",
                    Rows {
                        x: &train.x,
                        y: &zy,
                        weights: Some(&w),
                    },
                    valid.zip(vz.as_deref()).map(|(v, y)| Rows {
                        x: &v.x,
                        y,
                        weights: None,
                    }),
                    feature_names,
                )?;
                vec![
                    ("transformed", transformed),
                    ("control", fit.arm_model(train, valid, false)?),
                    ("propensity", propensity),
                ]
            }
        };
        Ok(Self {
            learner,
            parts: parts
                .into_iter()
                .map(|(role, booster)| Part {
                    role,
                    model: TreeModel::new(booster),
                })
                .collect(),
            feature_names: feature_names.to_vec(),
            baseline_calibration: Platt::default(),
        })
    }

    fn part(&self, role: &str) -> Result<&TreeModel> {
        self.parts
            .iter()
            .find(|p| p.role == role)
            .map(|p| &p.model)
            .ok_or_else(|| ModelError::Artifact(format!("the {role} model is missing")))
    }

    pub fn roles(&self) -> Vec<&'static str> {
        self.parts.iter().map(|p| p.role).collect()
    }

    /// Scores a row-major matrix whose columns are [`Self::feature_names`].
    pub fn predict(&self, x: &[f64], num_threads: usize) -> Result<UpliftScores> {
        let n = self.feature_names.len();
        let p = |role: &str| -> Result<Vec<f64>> { self.part(role)?.predict(x, n, num_threads) };
        let (uplift, p_control) = match self.learner {
            Learner::T => {
                let (t, c) = (p("treated")?, p("control")?);
                (t.iter().zip(&c).map(|(t, c)| t - c).collect(), c)
            }
            Learner::S => {
                let single = self.part("single")?;
                let on = single.predict(&with_column(x, n, |_| 1.0), n + 1, num_threads)?;
                let off = single.predict(&with_column(x, n, |_| 0.0), n + 1, num_threads)?;
                (on.iter().zip(&off).map(|(a, b)| a - b).collect(), off)
            }
            Learner::X => {
                let (t1, t0, e) = (p("tau_treated")?, p("tau_control")?, p("propensity")?);
                let uplift = t1
                    .iter()
                    .zip(&t0)
                    .zip(&e)
                    .map(|((t1, t0), e)| {
                        let e = clip(*e);
                        e * t0 + (1.0 - e) * t1
                    })
                    .collect();
                (uplift, p("control")?)
            }
            Learner::Ct => {
                let z = p("transformed")?;
                (z.iter().map(|z| 2.0 * z - 1.0).collect(), p("control")?)
            }
            Learner::Classifier => {
                return Err(ModelError::Artifact("a classifier has no uplift".into()))
            }
        };
        let mut p_control = p_control;
        self.baseline_calibration.apply_all(&mut p_control);
        Ok(UpliftScores { uplift, p_control })
    }

    /// The LightGBM model texts by role.
    pub fn to_texts(&self) -> Result<Vec<(String, String)>> {
        self.parts
            .iter()
            .map(|p| Ok((p.role.to_string(), p.model.booster.save_string()?)))
            .collect()
    }

    /// Scores with `scorer` from now on.
    pub fn scored_by(mut self, scorer: Scorer) -> Result<Self> {
        for part in &mut self.parts {
            part.model.scored_by(scorer, part.role)?;
        }
        Ok(self)
    }

    /// Loads a model from its LightGBM texts by role for `scorer`, refusing one whose stored
    /// feature names differ from `feature_names` (naming the missing and unexpected ones).
    pub fn from_texts(
        learner: Learner,
        texts: &[(String, String)],
        feature_names: &[String],
        scorer: Scorer,
    ) -> Result<Self> {
        let mut parts = Vec::new();
        for role in roles(learner) {
            let text = texts
                .iter()
                .find(|(r, _)| r == role)
                .map(|(_, t)| t)
                .ok_or_else(|| ModelError::Artifact(format!("the {role} model is missing")))?;
            let model = TreeModel::load(text, scorer, role)?;
            let expected = role_features(role, feature_names);
            let stored = model.booster.feature_name()?;
            if stored != expected {
                return Err(ModelError::FeatureMismatch {
                    missing: expected
                        .iter()
                        .filter(|n| !stored.contains(n))
                        .cloned()
                        .collect(),
                    extra: stored
                        .iter()
                        .filter(|n| !expected.contains(n))
                        .cloned()
                        .collect(),
                });
            }
            parts.push(Part { role, model });
        }
        Ok(Self {
            learner,
            parts,
            feature_names: feature_names.to_vec(),
            baseline_calibration: Platt::default(),
        })
    }
}

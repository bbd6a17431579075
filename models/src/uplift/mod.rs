//! Uplift meta-learners on LightGBM.
//!
//! - **T**: one classifier per arm; uplift = P(buy | treated) − P(buy | control).
//! - **S**: one classifier with the arm as a feature; uplift = f(x, 1) − f(x, 0).
//! - **X**: the T-learner's arm models impute each row's individual effect; two regressors learn
//!   those effects per arm and are blended by the estimated treatment propensity e(x).
//! - **CT** (class transformation): one classifier of Z = 1 when (treated and bought) or
//!   (control and did not buy); rows are weighted by the estimated propensity so that the arms
//!   count equally, and uplift = 2·P(Z = 1) − 1.
//! - **Odds**: one classifier of the purchase on both arms' rows and one odds ratio of the
//!   message shared by every user: uplift = σ(f(x) + β₁) − σ(f(x) + β₀). The effect follows the
//!   baseline (a message moves a likely buyer more than an unlikely one), the most constrained
//!   learner and the one chosen when the data cannot tell more flexible ones apart.
//! - **DR**: a regressor of the doubly robust score of each row's effect, built from
//!   cross-fitted arm models and propensity.
//! - **R**: a regressor of the outcome's residual over the arm's residual, weighted by the arm's
//!   residual squared (the R-loss), from the same cross-fitted models.
//! - **Dose** (the discount model): a T-learner whose treated model reads the discount offered
//!   as steps and is constrained to rise with it, so that it gives the effect of each level (see
//!   [`dose`]).
//!
//! The treatment propensity is estimated from the data (a regularised LightGBM classifier of the
//! arm), never assumed to be 0.5. Every learner also carries a *baseline*: the purchase
//! probability without treatment, which selection uses to spot users who would buy anyway.
//!
//! Training runs twice: cross-validation (see [`cv`]) finds how many rounds each model needs
//! and chooses the learner and the LightGBM setting; the final model is refit on all the
//! training rows with those round counts, so no labelled row is wasted. With too few buyers for
//! folds, one validation split does both.

mod choice;
pub mod cv;
mod dose;
mod lgbm;

use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::calibration::Platt;
use crate::forest::Scorer;
use crate::{ModelError, Result};
use choice::Choice;
pub use cv::FoldScores;
use cv::{Nuisance, CV_ROWS, FOLDS, MIN_FOLD_POSITIVES};
pub use dose::{nearest_level, Offered};
use lgbm::{clip, Fit, Rounds, Rows};
pub use lgbm::{large_benchmark_model, TreeModel};
pub use lgbm::{regress, Classifier};

/// LightGBM settings for small, noisy uplift signals: shallow trees, large leaves, L2
/// regularisation and early stopping on held-out rows. The uplift learners take the tree shape
/// (rate, leaves, rows per leaf, L2) from the [`GRID`] setting cross-validation chooses; the
/// defaults are its first.
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
            learning_rate: GRID[0].learning_rate,
            num_leaves: GRID[0].num_leaves,
            min_data_in_leaf: GRID[0].min_data_in_leaf,
            lambda_l2: GRID[0].lambda_l2,
            feature_fraction: 0.8,
            max_rounds: 800,
            early_stopping_rounds: 10,
        }
    }
}

/// A LightGBM tree shape of the grid the uplift learners are cross-validated on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    pub name: &'static str,
    pub learning_rate: f64,
    pub num_leaves: u32,
    pub min_data_in_leaf: u32,
    pub lambda_l2: f64,
}

/// The grid, the same for every dataset, simplest first: small trees with large leaves for weak
/// effects, and larger, less regularised trees for effects that need interactions to show.
pub const GRID: [Setting; 2] = [
    Setting {
        name: "shallow",
        learning_rate: 0.1,
        num_leaves: 5,
        min_data_in_leaf: 400,
        lambda_l2: 10.0,
    },
    Setting {
        name: "deeper",
        learning_rate: 0.1,
        num_leaves: 15,
        min_data_in_leaf: 100,
        lambda_l2: 1.0,
    },
];

impl UpliftParams {
    /// These settings with the tree shape of `setting`.
    pub fn with(&self, setting: &Setting) -> Self {
        Self {
            learning_rate: setting.learning_rate,
            num_leaves: setting.num_leaves,
            min_data_in_leaf: setting.min_data_in_leaf,
            lambda_l2: setting.lambda_l2,
            ..self.clone()
        }
    }

    /// The settings for a plain classifier (discount sensitivity), from these: its label is
    /// observed directly, not a small difference between two arms, so larger trees reach the
    /// same held-out AUC with a fifth of the trees of small ones at a slower rate, and a fifth
    /// of the scoring time (demo, 100k users: AUC 0.7402 with 41 trees against 0.7396 with
    /// 230).
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
            "max_bin": 63,
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
    Odds,
    S,
    T,
    Ct,
    X,
    Dr,
    R,
    Dose,
    Classifier,
}

impl Learner {
    /// The uplift meta-learners (what `auto` chooses from), simplest first: the order in which
    /// the one-standard-error rule prefers them.
    pub const ALL: [Learner; 7] = [
        Learner::Odds,
        Learner::S,
        Learner::T,
        Learner::Ct,
        Learner::X,
        Learner::Dr,
        Learner::R,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Learner::Odds => "odds",
            Learner::S => "s",
            Learner::T => "t",
            Learner::Ct => "ct",
            Learner::X => "x",
            Learner::Dr => "dr",
            Learner::R => "r",
            Learner::Dose => "dose",
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

/// One LightGBM model of a learner, with the role it plays. Shared: the folds of the
/// cross-validation reuse their nuisance models in every learner that has them as parts.
struct Part {
    role: &'static str,
    model: Rc<TreeModel>,
}

/// The odds learner's effect of the message: the log-odds each arm adds to the pooled model's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmShift {
    pub control: f64,
    pub treated: f64,
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-7, 1.0 - 1e-7);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl ArmShift {
    /// Fits one log-odds ratio β of the message by Newton's method (a logistic regression on the
    /// centred arm with the pooled model's logits `f` as offset), then splits it around the
    /// pooled model: the control arm gets −β·share and the treated arm β·(1 − share), where the
    /// share is the treated rows' (the pooled model has learnt their mix).
    fn fit(f: &[f64], treated: &[bool], outcome: &[bool]) -> Self {
        let share = treated.iter().filter(|&&t| t).count() as f64 / treated.len().max(1) as f64;
        let mut beta: f64 = 0.0;
        for _ in 0..50 {
            let (mut grad, mut hess) = (0.0, 0.0);
            for ((&f, &t), &y) in f.iter().zip(treated).zip(outcome) {
                let x = f64::from(u8::from(t)) - share;
                let p = sigmoid(f + beta * x);
                grad += x * (f64::from(u8::from(y)) - p);
                hess += x * x * p * (1.0 - p);
            }
            if hess <= f64::EPSILON {
                break;
            }
            let step = grad / hess;
            // Bounded: an arm whose rows all bought (or none did) has no finite ratio.
            beta = (beta + step).clamp(-10.0, 10.0);
            if step.abs() < 1e-10 {
                break;
            }
        }
        Self {
            control: -beta * share,
            treated: beta * (1.0 - share),
        }
    }
}

/// A trained uplift model: its learner and LightGBM models by role.
pub struct UpliftModel {
    pub learner: Learner,
    parts: Vec<Part>,
    pub feature_names: Vec<String>,
    /// Platt map of the baseline purchase probability, fitted on out-of-fold (or validation)
    /// control rows.
    pub baseline_calibration: Platt,
    /// The odds learner's effect of the message (`None` for the other learners).
    pub arm_shift: Option<ArmShift>,
    /// The discount levels (percent) the dose learner was trained on, ascending (empty for the
    /// other learners).
    pub discount_levels: Vec<u32>,
}

impl std::fmt::Debug for UpliftModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpliftModel")
            .field("learner", &self.learner)
            .field("roles", &self.roles())
            .field("feature_names", &self.feature_names)
            .field("baseline_calibration", &self.baseline_calibration)
            .field("arm_shift", &self.arm_shift)
            .field("discount_levels", &self.discount_levels)
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
        Learner::Odds => &["pooled"],
        Learner::Dr | Learner::R => &["tau", "control"],
        Learner::Dose => &["dose", "control"],
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

/// What [`UpliftModel::fit`] tried and chose.
#[derive(Debug, Clone, Default)]
pub struct Tried {
    /// Each candidate (learner and setting) trained, simplest first, with its Qini on each
    /// held-out fold (one figure each when the choice fell back to one validation split).
    pub scores: Vec<FoldScores>,
    /// The learners that could not be trained, with why (only when choosing among all).
    pub failed: Vec<(Learner, String)>,
    /// The settings the returned model was trained with.
    pub params: UpliftParams,
    /// The name of the chosen [`GRID`] setting.
    pub setting: &'static str,
    /// Why the choice was made on one validation split instead of by cross-validation (too
    /// few buying rows per fold), if it was.
    pub single_split: Option<String>,
}

impl Tried {
    /// Records that `learner` could not be trained, once (its first reason is kept).
    fn fail(&mut self, learner: Learner, why: String) {
        if !self.failed.iter().any(|(l, _)| *l == learner) {
            self.failed.push((learner, why));
        }
    }
}

/// What a fit is given besides its rows: when cross-validating, the fold's nuisance models and
/// the out-of-fold nuisance predictions of its training and validation rows.
#[derive(Clone, Copy, Default)]
struct Given<'a> {
    arms: Option<&'a cv::Arms>,
    nuisance: Option<(&'a Nuisance, Option<&'a Nuisance>)>,
}

impl Given<'_> {
    /// One arm's outcome model: the fold's, or one fitted on these rows.
    fn arm(
        &self,
        fit: &Fit,
        train: &TrainingSet,
        valid: Option<&TrainingSet>,
        treated: bool,
    ) -> Result<Rc<TreeModel>> {
        Ok(match self.arms {
            Some(a) if treated => Rc::clone(&a.treated),
            Some(a) => Rc::clone(&a.control),
            None => Rc::new(TreeModel::new(fit.arm_model(train, valid, treated)?)),
        })
    }

    /// The treatment propensity model: the fold's, or one fitted on these rows.
    fn propensity(
        &self,
        fit: &Fit,
        train: &TrainingSet,
        valid: Option<&TrainingSet>,
    ) -> Result<Rc<TreeModel>> {
        Ok(match self.arms {
            Some(a) => Rc::clone(&a.propensity),
            None => Rc::new(TreeModel::new(fit.propensity(train, valid)?)),
        })
    }

    /// Out-of-fold nuisance predictions of the training and validation rows: the given ones,
    /// or cross-fitted here on both sets together (stopping early on each fold).
    fn nuisance(
        &self,
        fit: &Fit,
        train: &TrainingSet,
        valid: Option<&TrainingSet>,
    ) -> Result<(Nuisance, Option<Nuisance>)> {
        if let Some((t, v)) = self.nuisance {
            return Ok((t.clone(), v.cloned()));
        }
        let all = valid.map_or_else(|| train.clone(), |v| train.concat(v));
        let folds = cv::stratified_folds(&all.treated, &all.outcome, FOLDS, fit.params.seed);
        let early = Fit {
            rounds: None,
            ..*fit
        };
        let split = cv::split_folds(&all, &folds, FOLDS, fit.params.seed);
        let (n, _) = cv::cross_fit(&all, &split, &early)?;
        let idx: Vec<usize> = (0..all.len()).collect();
        let (t, v) = idx.split_at(train.len());
        Ok((n.subset(t), valid.map(|_| n.subset(v))))
    }
}

impl UpliftModel {
    /// Trains `learner`, or with `None` chooses among all of them.
    ///
    /// With enough buying rows (see [`cv::MIN_FOLD_POSITIVES`]), every candidate learner on
    /// every [`GRID`] setting is cross-validated on `train` and `valid` together (on a
    /// stratified sample of [`cv::CV_ROWS`] when they are more), the one-standard-error rule
    /// picks one (see [`cv`]), and it is refit on all rows. With fewer,
    /// each candidate learner is fitted on `train` with early stopping on `valid` at the first
    /// setting, the best validation Qini wins, and it is refit on both; `Tried::single_split`
    /// says why. Returns the model and what was tried, including, when choosing among all, the
    /// learners that could not be trained on these rows (one arm of a fold with a single class,
    /// say), with why. A learner asked for by name that cannot be trained fails the fit.
    pub fn fit(
        learner: Option<Learner>,
        train: &TrainingSet,
        valid: &TrainingSet,
        feature_names: &[String],
        categorical: &[usize],
        params: &UpliftParams,
    ) -> Result<(Self, Tried)> {
        let candidates = learner.map_or(Learner::ALL.to_vec(), |l| vec![l]);
        let all = train.concat(valid);
        // Past CV_ROWS rows the fold Qinis are precise enough to choose by, and the time of
        // cross-validation grows with the rows: choose on a stratified sample, refit on all.
        let parts = all.len().div_ceil(CV_ROWS);
        let sample = (parts > 1).then(|| {
            let part = cv::stratified_folds(&all.treated, &all.outcome, parts, params.seed);
            let keep: Vec<usize> = (0..all.len()).filter(|&i| part[i] == 0).collect();
            all.subset(&keep)
        });
        let rows = sample.as_ref().unwrap_or(&all);
        let folds = cv::stratified_folds(&rows.treated, &rows.outcome, FOLDS, params.seed);
        let (fewest, arm, fold) = cv::fewest_positives(rows, &folds, FOLDS);
        let choice = Choice {
            candidates,
            choosing: learner.is_none(),
            feature_names,
            categorical,
            params,
        };
        if fewest < MIN_FOLD_POSITIVES {
            let why = format!(
                "cross-validation needs {MIN_FOLD_POSITIVES} buying rows per arm in each of \
                 {FOLDS} folds, and fold {} has {fewest} buying {} rows; chose on one validation \
                 split of {} rows",
                fold + 1,
                if arm { "treated" } else { "control" },
                valid.len()
            );
            return choice.on_split(train, valid, why);
        }
        let split = cv::split_folds(rows, &folds, FOLDS, params.seed);
        choice.by_cv(rows, &folds, &split, sample.is_some().then_some(&all))
    }

    /// One fit of every model of a learner: with `valid` for early stopping, or with the fit's
    /// fixed rounds.
    fn fit_pass(
        learner: Learner,
        train: &TrainingSet,
        valid: Option<&TrainingSet>,
        fit: &Fit,
        given: Given,
    ) -> Result<Self> {
        let feature_names = fit.names;
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
        let threads = fit.params.num_threads;
        let n = train.n_features;
        let own = |b| Rc::new(TreeModel::new(b));
        let mut arm_shift = None;
        let parts: Vec<(&'static str, Rc<TreeModel>)> = match learner {
            Learner::Classifier => {
                return Err(ModelError::Training {
                    what: "the uplift model".into(),
                    why: "a classifier is not an uplift learner".into(),
                })
            }
            Learner::Dose => {
                return Err(ModelError::Training {
                    what: "the uplift model".into(),
                    why: "the dose learner needs the discount each row was offered".into(),
                })
            }
            Learner::T => vec![
                ("treated", given.arm(fit, train, valid, true)?),
                ("control", given.arm(fit, train, valid, false)?),
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
                    Rows::plain(&x, &y),
                    v.as_ref().map(|(x, y)| Rows::plain(x, y)),
                    &names,
                )?;
                vec![("single", own(single))]
            }
            Learner::Odds => {
                let (y, vy) = (labels(&train.outcome), valid.map(|v| labels(&v.outcome)));
                let pooled = fit.run(
                    "pooled",
                    "binary",
                    Rows::plain(&train.x, &y),
                    valid.zip(vy.as_deref()).map(|(v, y)| Rows::plain(&v.x, y)),
                    feature_names,
                )?;
                let pooled = own(pooled);
                let f: Vec<f64> = pooled
                    .predict(&train.x, n, threads)?
                    .into_iter()
                    .map(logit)
                    .collect();
                arm_shift = Some(ArmShift::fit(&f, &train.treated, &train.outcome));
                vec![("pooled", pooled)]
            }
            Learner::X => {
                let treated = given.arm(fit, train, valid, true)?;
                let control = given.arm(fit, train, valid, false)?;
                // Imputed individual effects: treated rows against the control model, control
                // rows against the treated model.
                let imputed = |set: &TrainingSet, arm: bool| -> Result<(Vec<f64>, Vec<f32>)> {
                    let s = set.arm(arm);
                    let other = if arm { &control } else { &treated }.predict(&s.x, n, threads)?;
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
                    taus.push(own(fit.run(
                        role,
                        "regression",
                        Rows::plain(&x, &d),
                        v.as_ref().map(|(x, y)| Rows::plain(x, y)),
                        feature_names,
                    )?));
                }
                let tau_control = taus.pop().expect("two effect models");
                let tau_treated = taus.pop().expect("two effect models");
                vec![
                    ("treated", treated),
                    ("control", control),
                    ("tau_treated", tau_treated),
                    ("tau_control", tau_control),
                    ("propensity", given.propensity(fit, train, valid)?),
                ]
            }
            Learner::Ct => {
                let propensity = given.propensity(fit, train, valid)?;
                let z = |s: &TrainingSet| -> Vec<f32> {
                    s.treated
                        .iter()
                        .zip(&s.outcome)
                        .map(|(&t, &y)| f32::from(u8::from(t == y)))
                        .collect()
                };
                // Weight each arm to half the total mass: the transformation is only unbiased
                // when both arms count equally.
                let e = propensity.predict(&train.x, n, threads)?;
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
                    valid.zip(vz.as_deref()).map(|(v, y)| Rows::plain(&v.x, y)),
                    feature_names,
                )?;
                vec![
                    ("transformed", own(transformed)),
                    ("control", given.arm(fit, train, valid, false)?),
                    ("propensity", propensity),
                ]
            }
            Learner::Dr | Learner::R => {
                let (nt, nv) = given.nuisance(fit, train, valid)?;
                let pseudo = |n: &Nuisance, s: &TrainingSet| match learner {
                    Learner::Dr => (n.doubly_robust(s), None),
                    _ => {
                        let (y, w) = n.residualised(s);
                        (y, Some(w))
                    }
                };
                let (y, w) = pseudo(&nt, train);
                let v = valid.zip(nv.as_ref()).map(|(v, n)| pseudo(n, v));
                let tau = fit.run(
                    "tau",
                    "regression",
                    Rows {
                        x: &train.x,
                        y: &y,
                        weights: w.as_deref(),
                    },
                    valid.zip(v.as_ref()).map(|(v, (y, w))| Rows {
                        x: &v.x,
                        y,
                        weights: w.as_deref(),
                    }),
                    feature_names,
                )?;
                vec![
                    ("tau", own(tau)),
                    ("control", given.arm(fit, train, valid, false)?),
                ]
            }
        };
        Ok(Self {
            learner,
            parts: parts
                .into_iter()
                .map(|(role, model)| Part { role, model })
                .collect(),
            feature_names: feature_names.to_vec(),
            baseline_calibration: Platt::default(),
            arm_shift,
            discount_levels: Vec::new(),
        })
    }

    /// The round count of each of this model's LightGBM models.
    fn rounds(&self) -> Rounds {
        self.parts
            .iter()
            .map(|p| (p.role, p.model.booster.num_iterations()))
            .collect()
    }

    fn part(&self, role: &str) -> Result<&TreeModel> {
        self.parts
            .iter()
            .find(|p| p.role == role)
            .map(|p| p.model.as_ref())
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
            Learner::Odds => {
                let shift = self.arm_shift.ok_or_else(|| {
                    ModelError::Artifact("the odds learner's arm shift is missing".into())
                })?;
                let f: Vec<f64> = p("pooled")?.into_iter().map(logit).collect();
                let control: Vec<f64> = f.iter().map(|f| sigmoid(f + shift.control)).collect();
                let uplift = f
                    .iter()
                    .zip(&control)
                    .map(|(f, c)| sigmoid(f + shift.treated) - c)
                    .collect();
                (uplift, control)
            }
            Learner::Dr | Learner::R => (p("tau")?, p("control")?),
            Learner::Dose => {
                // Without a level, the largest: the effect of the offer at its most generous.
                let top = self.discount_levels.last().copied().unwrap_or_default();
                return self.predict_at(x, top, num_threads);
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
            // A fitted model owns its parts; only the folds of a cross-validation share them.
            Rc::get_mut(&mut part.model)
                .ok_or_else(|| ModelError::Artifact(format!("the {} model is shared", part.role)))?
                .scored_by(scorer, part.role)?;
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
        let mut discount_levels = Vec::new();
        for role in roles(learner) {
            let text = texts
                .iter()
                .find(|(r, _)| r == role)
                .map(|(_, t)| t)
                .ok_or_else(|| ModelError::Artifact(format!("the {role} model is missing")))?;
            let model = TreeModel::load(text, scorer, role)?;
            let stored = model.booster.feature_name()?;
            let expected = if *role == "dose" {
                // The dose model's own columns say which levels it learned.
                discount_levels = dose::levels_of(&stored[feature_names.len().min(stored.len())..]);
                dose::features(feature_names, &discount_levels)
            } else {
                role_features(role, feature_names)
            };
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
            parts.push(Part {
                role,
                model: Rc::new(model),
            });
        }
        Ok(Self {
            learner,
            parts,
            feature_names: feature_names.to_vec(),
            baseline_calibration: Platt::default(),
            arm_shift: None,
            discount_levels,
        })
    }
}

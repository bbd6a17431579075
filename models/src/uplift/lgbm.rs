//! LightGBM underneath the learners: one fit with early stopping or fixed rounds, predictions
//! on a row-major matrix (by LightGBM or the native scorer), the classifier of discount
//! sensitivity, and the feature ceiling's regressor.

use lightgbm3::{Booster, Dataset};
use serde_json::json;

use super::{labels, TrainingSet, UpliftParams};
use crate::calibration::Platt;
use crate::forest::{Forest, Scorer};
use crate::{ModelError, Result};

/// One LightGBM model (a role of a learner) and, when the native scorer scores it, its native
/// form. Training predicts with the booster; whoever scores users chooses the scorer.
pub struct TreeModel {
    pub(super) booster: Booster,
    native: Option<Forest>,
}

impl std::fmt::Debug for TreeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeModel")
            .field("native", &self.native.is_some())
            .finish()
    }
}

impl TreeModel {
    pub(super) fn new(booster: Booster) -> Self {
        Self {
            booster,
            native: None,
        }
    }

    /// Loads a model text for `scorer`; `role` names the model in errors.
    pub fn load(text: &str, scorer: Scorer, role: &str) -> Result<Self> {
        let mut model = Self::new(Booster::from_string(text)?);
        model.native = native(text, scorer, role)?;
        Ok(model)
    }

    /// Scores with `scorer` from now on.
    pub(super) fn scored_by(&mut self, scorer: Scorer, role: &str) -> Result<()> {
        self.native = native(&self.booster.save_string()?, scorer, role)?;
        Ok(())
    }

    /// The native form, when the native scorer scores this model.
    pub fn native(&self) -> Option<&Forest> {
        self.native.as_ref()
    }

    /// Outputs for a row-major matrix of `n_features` columns, as LightGBM's predict gives them.
    pub fn predict(&self, x: &[f64], n_features: usize, threads: usize) -> Result<Vec<f64>> {
        match &self.native {
            Some(forest) => Ok(forest.predict(x, n_features, threads)?),
            None => predict(&self.booster, x, n_features, threads),
        }
    }
}

fn native(text: &str, scorer: Scorer, role: &str) -> Result<Option<Forest>> {
    match scorer {
        Scorer::Lightgbm => Ok(None),
        Scorer::Native => Forest::parse(text)
            .map(Some)
            .map_err(|source| ModelError::Scorer {
                role: role.to_string(),
                source,
            }),
    }
}

pub(super) type Rounds = Vec<(&'static str, i32)>;

/// Everything one LightGBM fit needs. Without `rounds`, models stop early on the validation
/// rows; with it, each role trains for exactly its recorded rounds on the given rows.
#[derive(Clone, Copy)]
pub(super) struct Fit<'a> {
    pub(super) params: &'a UpliftParams,
    pub(super) names: &'a [String],
    pub(super) categorical: &'a [usize],
    pub(super) rounds: Option<&'a Rounds>,
    /// The first of the last columns whose rise may only raise the output (LightGBM's monotone
    /// constraint): the discount steps of the dose learner.
    pub(super) increasing: Option<usize>,
}

/// Rows a model learns from: features (row-major), labels, optional weights.
pub(super) struct Rows<'a> {
    pub(super) x: &'a [f64],
    pub(super) y: &'a [f32],
    pub(super) weights: Option<&'a [f32]>,
}

impl<'a> Rows<'a> {
    /// Rows of equal weight.
    pub(super) fn plain(x: &'a [f64], y: &'a [f32]) -> Self {
        Self {
            x,
            y,
            weights: None,
        }
    }
}

impl Fit<'_> {
    pub(super) fn run(
        &self,
        role: &'static str,
        objective: &str,
        train: Rows,
        valid: Option<Rows>,
        names: &[String],
    ) -> Result<Booster> {
        if objective == "binary" {
            let sets = [
                Some(("training", train.y)),
                valid.as_ref().map(|v| ("validation", v.y)),
            ];
            for (set, l) in sets.into_iter().flatten() {
                let positives = l.iter().filter(|&&v| v > 0.5).count();
                if positives == 0 || positives == l.len() {
                    return Err(ModelError::Training {
                        what: format!("the {role} model"),
                        why: format!("its {set} rows ({}) need both classes", l.len()),
                    });
                }
            }
        }
        let n = names.len() as i32;
        let mut ds = Dataset::from_slice(train.x, train.y, n, true)?;
        ds.set_feature_names(names)?;
        if let Some(w) = train.weights {
            ds.set_weights(w)?;
        }
        let mut params = self.params.lightgbm(objective, self.categorical);
        if let Some(first) = self.increasing {
            let signs: Vec<&str> = (0..names.len())
                .map(|i| if i >= first { "1" } else { "0" })
                .collect();
            params["monotone_constraints"] = json!(signs.join(","));
        }
        match (self.rounds, valid) {
            (Some(rounds), _) => {
                let n = rounds
                    .iter()
                    .find(|(r, _)| *r == role)
                    .map_or(1, |(_, n)| *n);
                params["num_iterations"] = json!(n.max(1));
                if let Some(p) = params.as_object_mut() {
                    p.remove("early_stopping_rounds");
                }
                Ok(Booster::train(ds, &params)?)
            }
            (None, Some(v)) => {
                let mut vds = Dataset::from_slice_with_reference(v.x, v.y, n, true, Some(&ds))?;
                if let Some(w) = v.weights {
                    vds.set_weights(w)?;
                }
                Ok(Booster::train_with_valid(ds, Some(vds), &params)?)
            }
            (None, None) => Ok(Booster::train(ds, &params)?),
        }
    }

    /// One model on unweighted rows with early stopping on `valid`, over the fit's features.
    pub(super) fn early_stopped(
        &self,
        role: &'static str,
        objective: &str,
        train: (&[f64], &[f32]),
        valid: (&[f64], &[f32]),
    ) -> Result<Booster> {
        self.run(
            role,
            objective,
            Rows::plain(train.0, train.1),
            Some(Rows::plain(valid.0, valid.1)),
            self.names,
        )
    }

    /// A classifier of the outcome on one arm's rows.
    pub(super) fn arm_model(
        &self,
        train: &TrainingSet,
        valid: Option<&TrainingSet>,
        treated: bool,
    ) -> Result<Booster> {
        let t = train.arm(treated);
        let v = valid.map(|v| v.arm(treated));
        let (ty, vy) = (labels(&t.outcome), v.as_ref().map(|v| labels(&v.outcome)));
        self.run(
            if treated { "treated" } else { "control" },
            "binary",
            Rows::plain(&t.x, &ty),
            v.as_ref()
                .zip(vy.as_deref())
                .map(|(v, y)| Rows::plain(&v.x, y)),
            self.names,
        )
    }

    /// A classifier of the arm itself: the treatment propensity e(x).
    pub(super) fn propensity(
        &self,
        train: &TrainingSet,
        valid: Option<&TrainingSet>,
    ) -> Result<Booster> {
        let ty = labels(&train.treated);
        let vy = valid.map(|v| labels(&v.treated));
        self.run(
            "propensity",
            "binary",
            Rows::plain(&train.x, &ty),
            valid.zip(vy.as_deref()).map(|(v, y)| Rows::plain(&v.x, y)),
            self.names,
        )
    }
}

fn predict(b: &Booster, x: &[f64], n_features: usize, threads: usize) -> Result<Vec<f64>> {
    Ok(b.predict_with_params(
        x,
        n_features as i32,
        true,
        &format!("num_threads={threads}"),
    )?)
}

/// Propensities kept away from 0 and 1 so that weights and blends stay finite.
pub(super) fn clip(e: f64) -> f64 {
    e.clamp(0.05, 0.95)
}

/// A LightGBM regression of `train.1` on `train.0` (early stopping on `valid`), scored on
/// `test_x`: the demo's feature ceiling, which learns the known true effects directly.
pub fn regress(
    train: (&[f64], &[f64]),
    valid: (&[f64], &[f64]),
    test_x: &[f64],
    feature_names: &[String],
    categorical: &[usize],
    params: &UpliftParams,
) -> Result<Vec<f64>> {
    let as_f32 = |v: &[f64]| -> Vec<f32> { v.iter().map(|&y| y as f32).collect() };
    let fit = Fit {
        params,
        names: feature_names,
        categorical,
        rounds: None,
        increasing: None,
    };
    let booster = fit.early_stopped(
        "ceiling",
        "regression",
        (train.0, &as_f32(train.1)),
        (valid.0, &as_f32(valid.1)),
    )?;
    predict(&booster, test_x, feature_names.len(), params.num_threads)
}

/// A LightGBM regression of 1000 trees of 31 leaves on `x` (`n_features` columns), as model
/// text: the large model `bench-score` times the scorers on besides the stored ones. Its label
/// is noise around a few of the features, so that every tree grows all its leaves.
pub fn large_benchmark_model(
    x: &[f64],
    n_features: usize,
    categorical: &[usize],
    threads: usize,
) -> Result<String> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let y: Vec<f32> = x
        .chunks(n_features)
        .map(|row| {
            let signal: f64 = row
                .iter()
                .take(8)
                .map(|v| if v.is_nan() { 0.0 } else { v.tanh() })
                .sum();
            (signal + rng.random_range(-1.0..1.0)) as f32
        })
        .collect();
    let ds = Dataset::from_slice(x, &y, n_features as i32, true)?;
    let mut params = json!({
        "objective": "regression",
        "num_iterations": 1000,
        "num_leaves": 31,
        "min_data_in_leaf": 20,
        "learning_rate": 0.05,
        "seed": 7,
        "deterministic": true,
        "force_row_wise": true,
        "num_threads": threads,
        "verbosity": -1,
    });
    if !categorical.is_empty() {
        let list: Vec<String> = categorical.iter().map(usize::to_string).collect();
        params["categorical_feature"] = json!(list.join(","));
    }
    Ok(Booster::train(ds, &params)?.save_string()?)
}

/// A plain LightGBM binary classifier over the feature catalogue (e.g. discount sensitivity).
pub struct Classifier {
    model: TreeModel,
    pub feature_names: Vec<String>,
    /// Platt map of the output, fitted on the validation rows.
    pub calibration: Platt,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("feature_names", &self.feature_names)
            .finish()
    }
}

impl Classifier {
    /// Trains with early stopping on `valid`, then refits on both with the rounds found.
    pub fn train(
        train: (&[f64], &[bool]),
        valid: (&[f64], &[bool]),
        feature_names: &[String],
        categorical: &[usize],
        params: &UpliftParams,
    ) -> Result<Self> {
        let (ty, vy) = (labels(train.1), labels(valid.1));
        let mut fit = Fit {
            params,
            names: feature_names,
            categorical,
            rounds: None,
            increasing: None,
        };
        let first = fit.early_stopped("classifier", "binary", (train.0, &ty), (valid.0, &vy))?;
        let calibration = Platt::fit(
            valid.1,
            &predict(&first, valid.0, feature_names.len(), params.num_threads)?,
        );
        let rounds: Rounds = vec![("classifier", first.num_iterations())];
        fit.rounds = Some(&rounds);
        let mut x = train.0.to_vec();
        x.extend_from_slice(valid.0);
        let mut y = ty;
        y.extend_from_slice(&vy);
        let booster = fit.run(
            "classifier",
            "binary",
            Rows::plain(&x, &y),
            None,
            feature_names,
        )?;
        Ok(Self {
            model: TreeModel::new(booster),
            feature_names: feature_names.to_vec(),
            calibration,
        })
    }

    /// Scores with `scorer` from now on.
    pub fn scored_by(mut self, scorer: Scorer) -> Result<Self> {
        self.model.scored_by(scorer, "classifier")?;
        Ok(self)
    }

    /// Calibrated probabilities for a row-major matrix whose columns are
    /// [`Self::feature_names`].
    pub fn predict(&self, x: &[f64], num_threads: usize) -> Result<Vec<f64>> {
        let mut p = self
            .model
            .predict(x, self.feature_names.len(), num_threads)?;
        self.calibration.apply_all(&mut p);
        Ok(p)
    }

    pub fn to_texts(&self) -> Result<Vec<(String, String)>> {
        Ok(vec![(
            "classifier".into(),
            self.model.booster.save_string()?,
        )])
    }

    /// Loads a classifier for `scorer`, refusing one whose stored features differ from
    /// `feature_names`.
    pub fn from_texts(
        texts: &[(String, String)],
        feature_names: &[String],
        scorer: Scorer,
    ) -> Result<Self> {
        let text = texts
            .iter()
            .find(|(r, _)| r == "classifier")
            .map(|(_, t)| t)
            .ok_or_else(|| ModelError::Artifact("the classifier model is missing".into()))?;
        let model = TreeModel::load(text, scorer, "classifier")?;
        let stored = model.booster.feature_name()?;
        crate::features::check_schema(&stored, feature_names)?;
        Ok(Self {
            model,
            feature_names: feature_names.to_vec(),
            calibration: Platt::default(),
        })
    }
}

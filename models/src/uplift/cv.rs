//! Cross-validation of the uplift learners.
//!
//! One validation split of a few thousand rows cannot tell learners apart whose Qini differ by
//! less than its noise, so `auto` chooses on [`FOLDS`] seeded folds stratified by arm and
//! outcome, from every learner on every [`Setting`] of a small fixed grid, by the
//! one-standard-error rule: the simplest candidate whose mean fold Qini is within one standard
//! error of the best mean. On data without a clear winner that is a constrained learner; on data
//! with one, the winner.
//!
//! The folds also give the *nuisance* models out of fold: each arm's purchase probability and
//! the treatment propensity, fitted on the other folds. The T-learner is scored from them
//! directly, the X- and class-transformation learners reuse each fold's models, and the final
//! DR- and R-learners build their pseudo-outcomes from the out-of-fold predictions
//! (cross-fitting). Scoring the DR- and R-learners on a fold takes nested cross-fitting (see
//! [`nested`]), or the fold's own outcomes would leak into their training labels.
//! Every candidate's fold models stop early on a fifth of the other folds' rows, never on the
//! fold they are scored on (see [`Fold`]); the chosen candidate is refit on all rows with
//! the mean of its folds' round counts.

use std::rc::Rc;

use super::lgbm::{clip, Fit, Rounds, TreeModel};
use super::{Setting, TrainingSet};
use crate::Result;

/// Folds of the cross-validation.
pub const FOLDS: usize = 3;

/// Rows cross-validation chooses on at most: more are sampled down to about this many, stratified.
pub const CV_ROWS: usize = 50_000;

/// Buying rows each arm needs in every fold for cross-validation; with fewer, the fold Qinis are
/// too noisy to choose by, and the choice falls back to one validation split.
pub const MIN_FOLD_POSITIVES: usize = 50;

/// A fold id per row, in `0..k`: seeded, and stratified by (arm, outcome) so that every fold
/// holds the same share of each.
pub(super) fn stratified_folds(
    treated: &[bool],
    outcome: &[bool],
    k: usize,
    seed: u64,
) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut fold = vec![0; treated.len()];
    let mut next = 0;
    for (t, y) in [(false, false), (false, true), (true, false), (true, true)] {
        let mut stratum: Vec<usize> = (0..treated.len())
            .filter(|&i| treated[i] == t && outcome[i] == y)
            .collect();
        stratum.shuffle(&mut rng);
        // Dealt round-robin, continuing across strata, so fold sizes differ by one at most.
        for i in stratum {
            fold[i] = next % k;
            next += 1;
        }
    }
    fold
}

/// The rows of fold `j` and the rows of the other folds, in row order.
pub(super) fn fold_rows(folds: &[usize], j: usize) -> (Vec<usize>, Vec<usize>) {
    (0..folds.len()).partition(|&i| folds[i] != j)
}

/// Fold `j`'s rows for a fit: the other folds' rows split into those it learns from and a fifth
/// it stops early on (stratified, seeded), and fold j's, which it is scored on. Fold j never
/// chooses the rounds: stopping on it tunes each arm's model to fold j's outcomes, the very
/// difference it is then scored on (measured on the Lenta sample: the T-learner's fold Qini
/// came out 0.02 above its test Qini, against 0.007 for the S-learner, whose loss is
/// dominated by the baseline). Split once, with the rows copied out, and shared by the nuisance
/// models and every candidate on every setting.
pub(super) struct Fold {
    pub(super) fit: Vec<usize>,
    pub(super) stop: Vec<usize>,
    pub(super) held: Vec<usize>,
    pub(super) train_rows: TrainingSet,
    pub(super) stop_rows: TrainingSet,
    pub(super) held_rows: TrainingSet,
}

/// The [`Fold`]s of `set` by its fold ids `folds` (`0..k`).
pub(super) fn split_folds(set: &TrainingSet, folds: &[usize], k: usize, seed: u64) -> Vec<Fold> {
    (0..k)
        .map(|j| {
            let (rest, held) = fold_rows(folds, j);
            let t: Vec<bool> = rest.iter().map(|&i| set.treated[i]).collect();
            let y: Vec<bool> = rest.iter().map(|&i| set.outcome[i]).collect();
            let inner = stratified_folds(&t, &y, 5, seed.wrapping_add(j as u64 + 1));
            let (stop, fit) = (0..rest.len()).partition::<Vec<usize>, _>(|&p| inner[p] == 0);
            let (fit, stop): (Vec<usize>, Vec<usize>) = (
                fit.into_iter().map(|p| rest[p]).collect(),
                stop.into_iter().map(|p| rest[p]).collect(),
            );
            Fold {
                train_rows: set.subset(&fit),
                stop_rows: set.subset(&stop),
                held_rows: set.subset(&held),
                fit,
                stop,
                held,
            }
        })
        .collect()
}

/// The mean round count of each role over `per_fold` (a role missing from a fold counts 0).
pub(super) fn mean_rounds<'a>(per_fold: impl IntoIterator<Item = &'a Rounds>) -> Rounds {
    let mut sum: Vec<(&'static str, i32)> = Vec::new();
    let mut folds = 0;
    for rounds in per_fold {
        folds += 1;
        for &(role, n) in rounds {
            match sum.iter_mut().find(|(r, _)| *r == role) {
                Some((_, s)) => *s += n,
                None => sum.push((role, n)),
            }
        }
    }
    sum.into_iter()
        .map(|(role, s)| {
            (
                role,
                (f64::from(s) / f64::from(folds.max(1))).round() as i32,
            )
        })
        .collect()
}

/// The fewest buying rows of one arm in one fold, with that arm (`true`: treated) and fold.
pub(super) fn fewest_positives(
    set: &TrainingSet,
    folds: &[usize],
    k: usize,
) -> (usize, bool, usize) {
    let mut count = vec![[0usize; 2]; k];
    for i in 0..set.len() {
        if set.outcome[i] {
            count[folds[i]][usize::from(set.treated[i])] += 1;
        }
    }
    let mut fewest = (usize::MAX, false, 0);
    for (j, c) in count.iter().enumerate() {
        for arm in [false, true] {
            if c[usize::from(arm)] < fewest.0 {
                fewest = (c[usize::from(arm)], arm, j);
            }
        }
    }
    fewest
}

/// One fold's nuisance models, fitted on the other folds.
pub(super) struct Arms {
    pub(super) treated: Rc<TreeModel>,
    pub(super) control: Rc<TreeModel>,
    pub(super) propensity: Rc<TreeModel>,
}

/// Out-of-fold nuisance predictions, one per row: each row's purchase probability with and
/// without a message and its treatment propensity, from models that never saw it.
#[derive(Debug, Clone, Default)]
pub(super) struct Nuisance {
    pub(super) treated: Vec<f64>,
    pub(super) control: Vec<f64>,
    pub(super) propensity: Vec<f64>,
}

impl Nuisance {
    /// The predictions of the rows at `idx`, in that order.
    pub(super) fn subset(&self, idx: &[usize]) -> Nuisance {
        let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect();
        Nuisance {
            treated: pick(&self.treated),
            control: pick(&self.control),
            propensity: pick(&self.propensity),
        }
    }

    /// The DR-learner's pseudo-outcome of each row of `set` (whose rows these predictions are):
    /// the doubly robust score of its individual effect, unbiased when either the outcome
    /// models or the propensity are right.
    pub(super) fn doubly_robust(&self, set: &TrainingSet) -> Vec<f32> {
        (0..set.len())
            .map(|i| {
                let (m1, m0, e) = (self.treated[i], self.control[i], clip(self.propensity[i]));
                let y = f64::from(u8::from(set.outcome[i]));
                let psi = if set.treated[i] {
                    m1 - m0 + (y - m1) / e
                } else {
                    m1 - m0 - (y - m0) / (1.0 - e)
                };
                psi as f32
            })
            .collect()
    }

    /// The R-learner's pseudo-outcome and weight of each row of `set`: the outcome's residual
    /// over the arm's residual, weighted by the arm's residual squared (Robinson's
    /// decomposition; the weighted regression minimises the R-loss).
    pub(super) fn residualised(&self, set: &TrainingSet) -> (Vec<f32>, Vec<f32>) {
        (0..set.len())
            .map(|i| {
                let e = clip(self.propensity[i]);
                let m = e * self.treated[i] + (1.0 - e) * self.control[i];
                let r = f64::from(u8::from(set.treated[i])) - e;
                let y = f64::from(u8::from(set.outcome[i]));
                (((y - m) / r) as f32, (r * r) as f32)
            })
            .unzip()
    }
}

/// Cross-fits the nuisance models of `set` on its `folds`: for each fold, both arms' outcome
/// models and the propensity on the other folds (see [`Fold`]). Returns the out-of-fold
/// predictions and each fold's models.
pub(super) fn cross_fit(
    set: &TrainingSet,
    folds: &[Fold],
    fit: &Fit,
) -> Result<(Nuisance, Vec<Arms>)> {
    let n = set.n_features;
    let threads = fit.params.num_threads;
    let mut out = Nuisance {
        treated: vec![0.0; set.len()],
        control: vec![0.0; set.len()],
        propensity: vec![0.0; set.len()],
    };
    let mut arms = Vec::with_capacity(folds.len());
    for fold in folds {
        let (train, stop) = (&fold.train_rows, Some(&fold.stop_rows));
        let model = |b| Rc::new(TreeModel::new(b));
        let models = Arms {
            treated: model(fit.arm_model(train, stop, true)?),
            control: model(fit.arm_model(train, stop, false)?),
            propensity: model(fit.propensity(train, stop)?),
        };
        for (model, into) in [
            (&models.treated, &mut out.treated),
            (&models.control, &mut out.control),
            (&models.propensity, &mut out.propensity),
        ] {
            let p = model.predict(&fold.held_rows.x, n, threads)?;
            for (&i, p) in fold.held.iter().zip(p) {
                into[i] = p;
            }
        }
        arms.push(models);
    }
    Ok((out, arms))
}

/// For each fold j, nuisance predictions of the rows of the other folds from models that saw
/// neither the row's fold nor fold j: the DR- and R-learners' pseudo-outcomes for training on
/// every fold but j. (The out-of-fold predictions of [`cross_fit`] will not do there: a row's
/// were fitted on fold j's outcomes, which would leak into the score of fold j.) The models
/// train for the mean rounds of `arms`, the cross-fit's; rows of fold j itself are left at 0.
pub(super) fn nested(
    set: &TrainingSet,
    folds: &[usize],
    k: usize,
    arms: &[Arms],
    fit: &Fit,
) -> Result<Vec<Nuisance>> {
    let per_fold: Vec<Rounds> = arms
        .iter()
        .map(|a| {
            vec![
                ("treated", a.treated.booster.num_iterations()),
                ("control", a.control.booster.num_iterations()),
                ("propensity", a.propensity.booster.num_iterations()),
            ]
        })
        .collect();
    let rounds = mean_rounds(&per_fold);
    let fixed = Fit {
        rounds: Some(&rounds),
        ..*fit
    };
    let blank = || Nuisance {
        treated: vec![0.0; set.len()],
        control: vec![0.0; set.len()],
        propensity: vec![0.0; set.len()],
    };
    let mut out: Vec<Nuisance> = (0..k).map(|_| blank()).collect();
    let n = set.n_features;
    let threads = fit.params.num_threads;
    for i in 0..k {
        for j in i + 1..k {
            let rest: Vec<usize> = (0..set.len())
                .filter(|&r| folds[r] != i && folds[r] != j)
                .collect();
            let train = set.subset(&rest);
            let models = [
                fixed.arm_model(&train, None, true)?,
                fixed.arm_model(&train, None, false)?,
                fixed.propensity(&train, None)?,
            ]
            .map(TreeModel::new);
            // Fold i's rows serve the folds-but-j fit, and fold j's the folds-but-i fit.
            for (rows_of, into) in [(i, j), (j, i)] {
                let idx: Vec<usize> = (0..set.len()).filter(|&r| folds[r] == rows_of).collect();
                let x = set.subset(&idx).x;
                let target = &mut out[into];
                for (model, column) in models.iter().zip([
                    &mut target.treated,
                    &mut target.control,
                    &mut target.propensity,
                ]) {
                    for (&r, p) in idx.iter().zip(model.predict(&x, n, threads)?) {
                        column[r] = p;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// One candidate's cross-validation: its learner and setting, the Qini of each held-out fold,
/// and the mean round count of each of its models.
#[derive(Debug, Clone)]
pub struct FoldScores {
    pub learner: super::Learner,
    pub setting: &'static Setting,
    pub qini: Vec<f64>,
    pub(super) rounds: Rounds,
    /// Out-of-fold baseline purchase probability of every row (what the baseline is calibrated
    /// on).
    pub(super) p_control: Vec<f64>,
}

impl FoldScores {
    pub fn mean(&self) -> f64 {
        self.qini.iter().sum::<f64>() / self.qini.len().max(1) as f64
    }

    /// Sample standard deviation of the fold Qinis (0 with one fold).
    pub fn sd(&self) -> f64 {
        let n = self.qini.len();
        if n < 2 {
            return 0.0;
        }
        let m = self.mean();
        (self.qini.iter().map(|q| (q - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    }

    /// Standard error of the mean fold Qini.
    pub fn se(&self) -> f64 {
        self.sd() / (self.qini.len().max(1) as f64).sqrt()
    }
}

/// The one-standard-error rule: among `scores` in order of simplicity, the first whose mean is
/// within one standard error of the best mean. `None` when there are no scores.
pub(super) fn one_se_choice(scores: &[FoldScores]) -> Option<usize> {
    let best = scores.iter().max_by(|a, b| a.mean().total_cmp(&b.mean()))?;
    let bar = best.mean() - best.se();
    scores.iter().position(|s| s.mean() >= bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_balanced_per_stratum_and_seeded() {
        let treated: Vec<bool> = (0..1000).map(|i| i % 4 != 0).collect();
        let outcome: Vec<bool> = (0..1000).map(|i| i % 10 == 0).collect();
        let folds = stratified_folds(&treated, &outcome, 3, 7);
        assert_eq!(folds, stratified_folds(&treated, &outcome, 3, 7));
        assert_ne!(folds, stratified_folds(&treated, &outcome, 3, 8));
        for (t, y) in [(false, false), (false, true), (true, false), (true, true)] {
            let per: Vec<usize> = (0..3)
                .map(|j| {
                    (0..1000)
                        .filter(|&i| folds[i] == j && treated[i] == t && outcome[i] == y)
                        .count()
                })
                .collect();
            let (lo, hi) = (per.iter().min().unwrap(), per.iter().max().unwrap());
            assert!(hi - lo <= 1, "stratum ({t}, {y}): {per:?}");
        }
        let (rest, held) = fold_rows(&folds, 1);
        assert_eq!(rest.len() + held.len(), 1000);
        assert!(held.iter().all(|&i| folds[i] == 1) && rest.iter().all(|&i| folds[i] != 1));
    }

    #[test]
    fn fewest_positives_names_the_arm_and_fold() {
        let set = TrainingSet {
            x: vec![0.0; 6],
            n_features: 1,
            treated: vec![true, true, false, false, true, false],
            outcome: vec![true, true, true, false, false, false],
        };
        let folds = [0, 1, 0, 1, 0, 1];
        // Fold 1 has no buying control row; fold 0 and 1 one buying treated row each.
        assert_eq!(fewest_positives(&set, &folds, 2), (0, false, 1));
    }

    #[test]
    fn one_se_rule_prefers_the_simpler_candidate_within_the_noise() {
        let scores = |q: &[&[f64]]| -> Vec<FoldScores> {
            q.iter()
                .map(|q| FoldScores {
                    learner: super::super::Learner::T,
                    setting: &super::super::GRID[0],
                    qini: q.to_vec(),
                    rounds: vec![],
                    p_control: vec![],
                })
                .collect()
        };
        // The second is best by mean, but the first is within one standard error of it.
        let noisy = scores(&[&[0.10, 0.14, 0.12], &[0.08, 0.20, 0.14]]);
        assert_eq!(one_se_choice(&noisy), Some(0));
        // The second is better by far more than its standard error.
        let clear = scores(&[&[0.10, 0.11, 0.12], &[0.30, 0.31, 0.32]]);
        assert_eq!(one_se_choice(&clear), Some(1));
        assert_eq!(one_se_choice(&[]), None);
    }
}

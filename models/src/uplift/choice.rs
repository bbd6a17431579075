//! How [`UpliftModel::fit`] chooses a learner and a setting and fits the final model: by
//! cross-validation on all the training rows, or, with too few buyers for folds, on one
//! validation split.

use super::cv::{self, Fold, FoldScores, Nuisance, FOLDS};
use super::lgbm::Fit;
use super::{Given, Learner, Setting, TrainingSet, Tried, UpliftModel, UpliftParams, GRID};
use crate::calibration::Platt;
use crate::metrics::qini_auc_score;
use crate::{ModelError, Result};

/// The Platt map of the baseline purchase probability `p_control` (one per row of `set`),
/// fitted on `set`'s control rows.
pub(super) fn baseline_calibration(set: &TrainingSet, p_control: &[f64]) -> Platt {
    let (outcome, p): (Vec<bool>, Vec<f64>) = (0..set.len())
        .filter(|&i| !set.treated[i])
        .map(|i| (set.outcome[i], p_control[i]))
        .unzip();
    Platt::fit(&outcome, &p)
}

/// What cross-validating one setting gives (see [`Choice::cv_setting`]).
struct SettingScores {
    scores: Vec<FoldScores>,
    failed: Vec<(Learner, String)>,
    nuisance: Nuisance,
}

/// The candidates and what every fit of them shares.
pub(super) struct Choice<'a> {
    pub(super) candidates: Vec<Learner>,
    /// All learners are candidates: one that cannot be trained is skipped, not fatal.
    pub(super) choosing: bool,
    pub(super) feature_names: &'a [String],
    pub(super) categorical: &'a [usize],
    pub(super) params: &'a UpliftParams,
}

impl Choice<'_> {
    fn fit<'f>(&'f self, params: &'f UpliftParams, rounds: Option<&'f super::Rounds>) -> Fit<'f> {
        Fit {
            params,
            names: self.feature_names,
            categorical: self.categorical,
            rounds,
            increasing: None,
        }
    }

    /// Records a candidate's failure when choosing among all; otherwise it is the fit's.
    fn skip(&self, tried: &mut Tried, learner: Learner, e: ModelError) -> Result<()> {
        if !self.choosing {
            return Err(e);
        }
        tried.fail(learner, e.to_string());
        Ok(())
    }

    /// The error when no candidate could be trained.
    fn none_trained(tried: &Tried) -> ModelError {
        ModelError::Training {
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
        }
    }

    /// Cross-validates every candidate on one `setting` over the shared `split` of `all`
    /// (fold ids `folds`): its fold scores, the candidates that could not be trained, and the
    /// out-of-fold nuisance predictions the DR- and R-learners' final fit needs.
    fn cv_setting(
        &self,
        all: &TrainingSet,
        folds: &[usize],
        split: &[Fold],
        setting: &'static Setting,
    ) -> Result<SettingScores> {
        let params = self.params.with(setting);
        let threads = params.num_threads;
        let fit = self.fit(&params, None);
        let (nuisance, arms) = cv::cross_fit(all, split, &fit)?;
        // Each fold's pseudo-outcome inputs, from models that never saw the fold, once for all
        // candidates (only the DR- and R-learners read them).
        let pseudo = if self
            .candidates
            .iter()
            .any(|l| matches!(l, Learner::Dr | Learner::R))
        {
            cv::nested(all, folds, FOLDS, &arms, &fit)?
        } else {
            Vec::new()
        };
        let per_fold: Vec<(Nuisance, Nuisance)> = split
            .iter()
            .enumerate()
            .map(|(j, fold)| {
                let n = pseudo.get(j).unwrap_or(&nuisance);
                (n.subset(&fold.fit), n.subset(&fold.stop))
            })
            .collect();
        let mut tried = Tried::default();
        let n = self.candidates.len();
        'learner: for (k, &learner) in self.candidates.iter().enumerate() {
            let _span = tracing::info_span!(
                "learner",
                learner = learner.name(),
                k = %format_args!("{}/{n}", k + 1)
            )
            .entered();
            let mut qini = Vec::with_capacity(FOLDS);
            let mut rounds = Vec::with_capacity(FOLDS);
            let mut p_control = vec![0.0; all.len()];
            for ((fold, arms), (nt, ns)) in split.iter().zip(&arms).zip(&per_fold) {
                let given = Given {
                    arms: Some(arms),
                    nuisance: Some((nt, Some(ns))),
                };
                let (train, stop, held) = (&fold.train_rows, &fold.stop_rows, &fold.held_rows);
                let scored = UpliftModel::fit_pass(learner, train, Some(stop), &fit, given)
                    .and_then(|m| Ok((m.predict(&held.x, threads)?, m.rounds())));
                let (s, r) = match scored {
                    Ok(done) => done,
                    Err(e) => {
                        self.skip(&mut tried, learner, e)?;
                        continue 'learner;
                    }
                };
                qini.push(qini_auc_score(&held.outcome, &s.uplift, &held.treated));
                for (&i, p) in fold.held.iter().zip(s.p_control) {
                    p_control[i] = p;
                }
                rounds.push(r);
            }
            tried.scores.push(FoldScores {
                learner,
                setting,
                qini,
                rounds: cv::mean_rounds(&rounds),
                p_control,
            });
        }
        Ok(SettingScores {
            scores: tried.scores,
            failed: tried.failed,
            nuisance,
        })
    }

    /// Cross-validates every candidate on every setting on `all` (fold ids `folds`), keeps the
    /// one-standard-error choice and refits it with its folds' mean rounds on all rows, or on
    /// `full` when `all` is a sample of it.
    pub(super) fn by_cv(
        &self,
        all: &TrainingSet,
        folds: &[usize],
        split: &[Fold],
        full: Option<&TrainingSet>,
    ) -> Result<(UpliftModel, Tried)> {
        // One setting after the other: LightGBM's thread count is process-wide (OpenMP), so
        // two fits side by side are not safe.
        let mut tried = Tried::default();
        let mut nuisances: Vec<Nuisance> = Vec::with_capacity(GRID.len());
        for (k, setting) in GRID.iter().enumerate() {
            let _span = tracing::info_span!(
                "cv",
                setting = %format_args!("{}/{}", k + 1, GRID.len())
            )
            .entered();
            let setting = self.cv_setting(all, folds, split, setting)?;
            tried.scores.extend(setting.scores);
            for (learner, why) in setting.failed {
                tried.fail(learner, why);
            }
            nuisances.push(setting.nuisance);
        }
        // Simplest first: by learner, then by setting.
        let rank = |s: &FoldScores| {
            let l = Learner::ALL.iter().position(|&l| l == s.learner);
            let g = GRID.iter().position(|g| g == s.setting);
            (l, g)
        };
        tried.scores.sort_by_key(rank);
        let pick = cv::one_se_choice(&tried.scores).ok_or_else(|| Self::none_trained(&tried))?;
        let chosen = &tried.scores[pick];
        let g = GRID.iter().position(|g| g == chosen.setting).unwrap_or(0);
        let params = self.params.with(chosen.setting);
        let fit = self.fit(&params, Some(&chosen.rounds));
        // On a sample, the full rows' out-of-fold nuisance is cross-fitted anew when needed.
        let given = Given {
            arms: None,
            nuisance: full.is_none().then(|| (&nuisances[g], None)),
        };
        let mut model =
            UpliftModel::fit_pass(chosen.learner, full.unwrap_or(all), None, &fit, given)?;
        // Out of fold, the baseline of every control row comes from a model that never saw it.
        model.baseline_calibration = baseline_calibration(all, &chosen.p_control);
        tried.setting = chosen.setting.name;
        tried.params = params;
        Ok((model, tried))
    }

    /// Fits every candidate on `train` with early stopping on `valid` at the grid's first
    /// setting, keeps the best validation Qini and refits it on both sets with its rounds.
    pub(super) fn on_split(
        &self,
        train: &TrainingSet,
        valid: &TrainingSet,
        why: String,
    ) -> Result<(UpliftModel, Tried)> {
        let setting = &GRID[0];
        let params = self.params.with(setting);
        let fit = self.fit(&params, None);
        let mut tried = Tried {
            single_split: Some(why),
            ..Tried::default()
        };
        let mut best: Option<usize> = None;
        for &learner in &self.candidates {
            let first = UpliftModel::fit_pass(learner, train, Some(valid), &fit, Given::default())
                .and_then(|m| Ok((m.rounds(), m.predict(&valid.x, params.num_threads)?)));
            let (rounds, s) = match first {
                Ok(done) => done,
                Err(e) => {
                    self.skip(&mut tried, learner, e)?;
                    continue;
                }
            };
            let q = qini_auc_score(&valid.outcome, &s.uplift, &valid.treated);
            tried.scores.push(FoldScores {
                learner,
                setting,
                qini: vec![q],
                rounds,
                p_control: s.p_control,
            });
            if best.is_none_or(|b| q > tried.scores[b].mean()) {
                best = Some(tried.scores.len() - 1);
            }
        }
        let pick = best.ok_or_else(|| Self::none_trained(&tried))?;
        let chosen = &tried.scores[pick];
        // The baseline is calibrated on validation rows without a message, which the refit
        // model has not seen at this stage of its fit either (same rounds, more rows).
        let calibration = baseline_calibration(valid, &chosen.p_control);
        let refit = self.fit(&params, Some(&chosen.rounds));
        let mut model = UpliftModel::fit_pass(
            chosen.learner,
            &train.concat(valid),
            None,
            &refit,
            Given::default(),
        )?;
        model.baseline_calibration = calibration;
        tried.setting = setting.name;
        tried.params = params;
        Ok((model, tried))
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::uplift::cv::MIN_FOLD_POSITIVES;

    /// `n` rows of four standard normal features whose purchase has log-odds −1.5 + x0 without
    /// a message and `effect(x)` more with one (60 % treated), with each row's true uplift.
    fn generated(n: usize, seed: u64, effect: fn(&[f64]) -> f64) -> (TrainingSet, Vec<f64>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut normal = || {
            // Box–Muller: two uniforms, one standard normal.
            let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        };
        let mut set = TrainingSet {
            n_features: 4,
            ..TrainingSet::default()
        };
        let mut truth = Vec::with_capacity(n);
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        for _ in 0..n {
            let x: Vec<f64> = (0..4).map(|_| normal()).collect();
            let base = -1.5 + x[0];
            let t = rng.random::<f64>() < 0.6;
            let p = sig(base + if t { effect(&x) } else { 0.0 });
            set.outcome.push(rng.random::<f64>() < p);
            set.treated.push(t);
            truth.push(sig(base + effect(&x)) - sig(base));
            set.x.extend(x);
        }
        (set, truth)
    }

    fn names() -> Vec<String> {
        (0..4).map(|j| format!("x{j}")).collect()
    }

    fn params() -> UpliftParams {
        UpliftParams {
            max_rounds: 300,
            ..UpliftParams::default()
        }
    }

    /// An effect carried by a feature that does not predict the purchase: the constrained odds
    /// learner cannot rank by it, cross-validation sees that on every fold and chooses a learner
    /// that can, which reaches most of the oracle's Qini on new rows.
    #[test]
    fn cross_validation_finds_an_effect_the_baseline_does_not_carry() {
        let effect = |x: &[f64]| 1.2 * x[2];
        let (train, _) = generated(9_000, 1, effect);
        let (valid, _) = generated(3_000, 2, effect);
        let (test, truth) = generated(8_000, 3, effect);
        let (model, tried) =
            UpliftModel::fit(None, &train, &valid, &names(), &[], &params()).unwrap();
        assert_eq!(tried.single_split, None);
        assert!(tried.failed.is_empty(), "{:?}", tried.failed);
        assert_eq!(tried.scores.len(), Learner::ALL.len() * GRID.len());
        assert!(tried.scores.iter().all(|s| s.qini.len() == FOLDS));
        // The one-standard-error rule: the first candidate within one error of the best mean.
        let best = tried
            .scores
            .iter()
            .max_by(|a, b| a.mean().total_cmp(&b.mean()))
            .unwrap();
        let chosen = tried
            .scores
            .iter()
            .find(|s| s.mean() >= best.mean() - best.se())
            .unwrap();
        assert_eq!(
            (model.learner, chosen.setting.name),
            (chosen.learner, tried.setting)
        );
        assert_eq!(tried.params, params().with(chosen.setting));
        let odds = tried
            .scores
            .iter()
            .filter(|s| s.learner == Learner::Odds)
            .map(FoldScores::mean)
            .fold(f64::MIN, f64::max);
        assert!(odds < best.mean() - best.se(), "odds {odds}, best {best:?}");
        assert_ne!(model.learner, Learner::Odds);
        let q = qini_auc_score(
            &test.outcome,
            &model.predict(&test.x, 2).unwrap().uplift,
            &test.treated,
        );
        let oracle = qini_auc_score(&test.outcome, &truth, &test.treated);
        assert!(q > 0.7 * oracle, "Qini {q}, oracle {oracle}");
    }

    /// One odds ratio for every user: the simplest learner is as good as any on the folds, and
    /// the rule keeps it.
    #[test]
    fn a_shared_odds_ratio_keeps_the_simplest_learner() {
        let effect = |_: &[f64]| 0.5;
        let (train, _) = generated(9_000, 4, effect);
        let (valid, _) = generated(3_000, 5, effect);
        let (model, tried) =
            UpliftModel::fit(None, &train, &valid, &names(), &[], &params()).unwrap();
        assert_eq!(model.learner, Learner::Odds, "{:?}", tried.scores);
        let shift = model.arm_shift.unwrap();
        // The fitted odds ratio is the true one, e^0.5, within its noise.
        let beta = shift.treated - shift.control;
        assert!((beta - 0.5).abs() < 0.15, "log odds ratio {beta}");
    }

    /// With fewer buyers per fold and arm than cross-validation needs, the choice falls back to
    /// one validation split and says so with the counts.
    #[test]
    fn too_few_buyers_per_fold_fall_back_to_one_split() {
        let effect = |x: &[f64]| x[2];
        let (train, _) = generated(700, 6, effect);
        let (valid, _) = generated(300, 7, effect);
        let buyers = train.concat(&valid).outcome.iter().filter(|&&y| y).count();
        assert!(buyers < 2 * FOLDS * MIN_FOLD_POSITIVES, "{buyers} buyers");
        let (model, tried) =
            UpliftModel::fit(None, &train, &valid, &names(), &[], &params()).unwrap();
        let why = tried.single_split.unwrap();
        assert!(
            why.contains("needs 50 buying rows per arm in each of 3 folds")
                && why.contains("one validation split of 300 rows"),
            "{why}"
        );
        assert!(tried.scores.iter().all(|s| s.qini.len() == 1));
        assert_eq!(tried.setting, GRID[0].name);
        assert!(Learner::ALL.contains(&model.learner));
    }
}

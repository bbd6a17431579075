//! The dose learner: the effect of each discount level of an offer, from past deals that
//! offered several levels at random.
//!
//! A T-learner over a dose: one LightGBM classifier of the purchase on the control rows
//! (`control`, c(x)), and one on the treated rows of every level (`dose`, t(x, k)), which reads
//! the level as steps, one column per level learned, `discount_at_least_<k>` (1 when the offer
//! is at least k %): a "thermometer". The effect of level k is t(x, k) − c(x). LightGBM's
//! monotone constraint on the steps makes t rise with the discount, so a user's effects never
//! fall as the discount grows, however noisy the rows of one level: the data decide how much
//! each level adds, never that more discount buys less. One treated model for every level lets
//! the levels share what they have in common (who buys when offered anything), which
//! per-level models would each learn from a third of the rows.
//!
//! Measured on rows where a small discount wins some users (true effect 0.15 at every level)
//! and only a large one wins the others (0 at 10 %, 0.15 at 30 %), at 10 %:
//! - an S-learner with the discount as one column learned its main effect and stopped before
//!   telling the users apart: 0.07 for both (Python's LightGBM the same);
//! - an S-learner with the steps: 0.11 and 0.03;
//! - this learner: 0.16 and 0.02 (Python's LightGBM), since the difference between the arms is
//!   no longer something its trees have to find.

use std::rc::Rc;

use super::choice::baseline_calibration;
use super::lgbm::{Fit, Rounds, Rows};
use super::{labels, Learner, Part, TrainingSet, UpliftModel, UpliftParams};
use super::{TreeModel, UpliftScores};
use crate::{ModelError, Result};

/// The dose learner's columns are this followed by each level: 1 when the offer is at least
/// that many percent.
const STEP_PREFIX: &str = "discount_at_least_";

/// The dose model's features: the catalogue's, then one step per level.
pub(super) fn features(feature_names: &[String], levels: &[u32]) -> Vec<String> {
    let mut v = feature_names.to_vec();
    v.extend(levels.iter().map(|l| format!("{STEP_PREFIX}{l}")));
    v
}

/// The levels of a dose model's step columns (those past the catalogue's), as named; a column
/// that is no step ends them (the feature check then names it).
pub(super) fn levels_of(step_columns: &[String]) -> Vec<u32> {
    step_columns
        .iter()
        .map_while(|c| c.strip_prefix(STEP_PREFIX)?.parse().ok())
        .collect()
}

/// A row-major matrix of `n` columns with the steps of `levels` for a discount of `pct(row)`.
fn stepped(x: &[f64], n: usize, levels: &[u32], pct: impl Fn(usize) -> f64) -> Vec<f64> {
    let rows = x.len() / n.max(1);
    let mut out = Vec::with_capacity(rows * (n + levels.len()));
    for r in 0..rows {
        out.extend_from_slice(&x[r * n..(r + 1) * n]);
        let d = pct(r);
        out.extend(
            levels
                .iter()
                .map(|&l| f64::from(u8::from(d >= f64::from(l)))),
        );
    }
    out
}

/// The discount each row was offered, in percent, in either arm: a control row carries the level
/// its user would have been offered (past deals drew the level before the arm).
#[derive(Debug, Clone, Copy)]
pub struct Offered<'a> {
    pub train: &'a [f64],
    pub valid: &'a [f64],
}

/// The level of `levels` (ascending) closest to `pct`, the lower one on a tie; `None` without
/// levels. An offer at a level the model never saw gets the effect of the nearest one it did:
/// the trees cannot tell levels between two they were trained on apart from either.
pub fn nearest_level(levels: &[u32], pct: f64) -> Option<u32> {
    levels.iter().copied().min_by(|a, b| {
        let (da, db) = ((f64::from(*a) - pct).abs(), (f64::from(*b) - pct).abs());
        da.total_cmp(&db).then(a.cmp(b))
    })
}

impl UpliftModel {
    /// Trains the dose learner: each model with early stopping on `valid`'s rows of its arm,
    /// then refit on both with the rounds found; the baseline is Platt-calibrated on `valid`'s
    /// control rows. The levels are those offered to treated rows.
    pub fn fit_dose(
        train: &TrainingSet,
        valid: &TrainingSet,
        offered: Offered,
        feature_names: &[String],
        categorical: &[usize],
        params: &UpliftParams,
    ) -> Result<Self> {
        let mut levels: Vec<u32> = train
            .treated
            .iter()
            .zip(offered.train)
            .filter(|(&t, _)| t)
            .map(|(_, &pct)| pct.round() as u32)
            .collect();
        levels.sort_unstable();
        levels.dedup();
        if levels.is_empty() || levels[0] == 0 {
            return Err(ModelError::Training {
                what: "the discount model".into(),
                why: "its treated rows need a discount above 0".into(),
            });
        }
        let names = features(feature_names, &levels);
        // The treated rows, with the steps of the level each was offered.
        let treated = |set: &TrainingSet, offered: &[f64]| -> (Vec<f64>, Vec<f32>) {
            let rows = set.arm(true);
            let pct: Vec<f64> = (0..set.len())
                .filter(|&i| set.treated[i])
                .map(|i| offered[i])
                .collect();
            let x = stepped(&rows.x, rows.n_features, &levels, |r| pct[r]);
            (x, labels(&rows.outcome))
        };
        let mut dose_fit = Fit {
            params,
            names: &names,
            categorical,
            rounds: None,
            increasing: Some(feature_names.len()),
        };
        let mut control_fit = Fit {
            names: feature_names,
            increasing: None,
            ..dose_fit
        };
        let ((x, y), (vx, vy)) = (treated(train, offered.train), treated(valid, offered.valid));
        let dose = dose_fit.run(
            "dose",
            "binary",
            Rows::plain(&x, &y),
            Some(Rows::plain(&vx, &vy)),
            &names,
        )?;
        let control = control_fit.arm_model(train, Some(valid), false)?;
        let first = Self::dose(dose, control, feature_names, levels.clone());
        let calibration =
            baseline_calibration(valid, &first.raw_control(&valid.x, params.num_threads)?);
        let rounds: Rounds = first.rounds();
        (dose_fit.rounds, control_fit.rounds) = (Some(&rounds), Some(&rounds));
        let all = train.concat(valid);
        let all_offered: Vec<f64> = offered.train.iter().chain(offered.valid).copied().collect();
        let (x, y) = treated(&all, &all_offered);
        let dose = dose_fit.run("dose", "binary", Rows::plain(&x, &y), None, &names)?;
        let control = control_fit.arm_model(&all, None, false)?;
        let mut model = Self::dose(dose, control, feature_names, levels);
        model.baseline_calibration = calibration;
        Ok(model)
    }

    fn dose(
        dose: lightgbm3::Booster,
        control: lightgbm3::Booster,
        feature_names: &[String],
        discount_levels: Vec<u32>,
    ) -> Self {
        let part = |role, booster| Part {
            role,
            model: Rc::new(TreeModel::new(booster)),
        };
        Self {
            learner: Learner::Dose,
            parts: vec![part("dose", dose), part("control", control)],
            feature_names: feature_names.to_vec(),
            baseline_calibration: Default::default(),
            arm_shift: None,
            discount_levels,
        }
    }

    /// The treated model's uncalibrated purchase probability with an offer of `pct` percent.
    fn raw_at(&self, x: &[f64], pct: f64, num_threads: usize) -> Result<Vec<f64>> {
        let (n, levels) = (self.feature_names.len(), &self.discount_levels);
        self.part("dose")?.predict(
            &stepped(x, n, levels, |_| pct),
            n + levels.len(),
            num_threads,
        )
    }

    /// The control model's uncalibrated purchase probability without a message.
    fn raw_control(&self, x: &[f64], num_threads: usize) -> Result<Vec<f64>> {
        self.part("control")?
            .predict(x, self.feature_names.len(), num_threads)
    }

    /// The effect of each level the dose learner knows, one vector per level in
    /// [`Self::discount_levels`] order, and the calibrated baseline: the control model scores
    /// once for every level. Empty effects for any other learner.
    pub fn predict_levels(
        &self,
        x: &[f64],
        num_threads: usize,
    ) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
        if self.learner != Learner::Dose {
            return Ok((vec![], self.predict(x, num_threads)?.p_control));
        }
        let mut p_control = self.raw_control(x, num_threads)?;
        let effects = self
            .discount_levels
            .iter()
            .map(|&level| {
                let on = self.raw_at(x, f64::from(level), num_threads)?;
                Ok(on.iter().zip(&p_control).map(|(a, b)| a - b).collect())
            })
            .collect::<Result<_>>()?;
        self.baseline_calibration.apply_all(&mut p_control);
        Ok((effects, p_control))
    }

    /// Scores each row at the discount it was offered (`offered`, percent): the dose learner's
    /// effect of the nearest level it knows (see [`nearest_level`]); any other learner's one
    /// effect.
    pub fn predict_offered(
        &self,
        x: &[f64],
        offered: &[f64],
        num_threads: usize,
    ) -> Result<UpliftScores> {
        if self.learner != Learner::Dose {
            return self.predict(x, num_threads);
        }
        let (effects, p_control) = self.predict_levels(x, num_threads)?;
        let uplift = (0..p_control.len())
            .map(|r| {
                let level = nearest_level(&self.discount_levels, offered[r]);
                let k = self.discount_levels.iter().position(|&l| Some(l) == level);
                k.map_or(f64::NAN, |k| effects[k][r])
            })
            .collect();
        Ok(UpliftScores { uplift, p_control })
    }

    /// Scores for an offer of `pct` percent: for the dose learner, the effect of that level,
    /// t(x, pct) − c(x), and the calibrated baseline; any other learner knows one effect of
    /// "a discount" and gives it whatever the level.
    pub fn predict_at(&self, x: &[f64], pct: u32, num_threads: usize) -> Result<UpliftScores> {
        if self.learner != Learner::Dose {
            return self.predict(x, num_threads);
        }
        let on = self.raw_at(x, f64::from(pct), num_threads)?;
        let off = self.raw_control(x, num_threads)?;
        let uplift = on.iter().zip(&off).map(|(a, b)| a - b).collect();
        let mut p_control = off;
        self.baseline_calibration.apply_all(&mut p_control);
        Ok(UpliftScores { uplift, p_control })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn the_nearest_level_takes_the_lower_on_a_tie() {
        assert_eq!(nearest_level(&[10, 20, 30], 15.0), Some(10));
        assert_eq!(nearest_level(&[10, 20, 30], 16.0), Some(20));
        assert_eq!(nearest_level(&[10, 20, 30], 50.0), Some(30));
        assert_eq!(nearest_level(&[], 20.0), None);
    }

    /// Rows with two features: the first decides how large a discount it takes (a small one
    /// wins over users with x0 > 0, the others need the largest), the second is noise.
    fn generated(n: usize, seed: u64) -> (TrainingSet, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut x, mut treated, mut outcome, mut offered) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let (a, b): (f64, f64) = (rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0));
            let level = [10.0, 20.0, 30.0][rng.random_range(0..3)];
            let t = rng.random_bool(0.5);
            let effect = match (t, a > 0.0) {
                (false, _) => 0.0,
                (true, true) => 0.15,
                (true, false) => 0.15 * (level - 10.0) / 20.0,
            };
            x.extend([a, b]);
            treated.push(t);
            outcome.push(rng.random_bool(0.1 + effect));
            offered.push(level);
        }
        let set = TrainingSet {
            x,
            n_features: 2,
            treated,
            outcome,
        };
        (set, offered)
    }

    #[test]
    fn the_dose_learner_finds_who_a_small_discount_wins() {
        let (train, offered_train) = generated(40_000, 1);
        let (valid, offered_valid) = generated(10_000, 2);
        let names = vec!["a".to_string(), "b".to_string()];
        let params = UpliftParams {
            num_threads: 2,
            ..UpliftParams::default()
        };
        let model = UpliftModel::fit_dose(
            &train,
            &valid,
            Offered {
                train: &offered_train,
                valid: &offered_valid,
            },
            &names,
            &[],
            &params,
        )
        .unwrap();
        assert_eq!(model.discount_levels, vec![10, 20, 30]);
        let x = [0.5, 0.0, -0.5, 0.0];
        let at = |pct| model.predict_at(&x, pct, 2).unwrap().uplift;
        let (ten, thirty) = (at(10), at(30));
        // x0 > 0: 10% already does what 30% does (truth 0.15 at both); x0 < 0: 10% does
        // nothing, 30% as much (truth 0 and 0.15).
        assert!(
            ten[0] > 0.12,
            "10% for a user a small discount wins: {ten:?}"
        );
        assert!(ten[1] < 0.03, "10% for a user who needs more: {ten:?}");
        assert!(thirty[1] > 0.12, "30% for a user who needs it: {thirty:?}");
        assert!((thirty[0] - ten[0]).abs() < 0.04, "{ten:?} {thirty:?}");
        // Monotone in the discount, for every user.
        let twenty = at(20);
        for i in 0..2 {
            assert!(ten[i] <= twenty[i] + 1e-12 && twenty[i] <= thirty[i] + 1e-12);
        }
        // Stored and loaded, it scores the same.
        let texts = model.to_texts().unwrap();
        let mut loaded =
            UpliftModel::from_texts(Learner::Dose, &texts, &names, crate::forest::Scorer::Native)
                .unwrap();
        assert_eq!(loaded.discount_levels, model.discount_levels);
        loaded.baseline_calibration = model.baseline_calibration;
        let again = loaded.predict_at(&x, 30, 2).unwrap().uplift;
        assert_eq!(again, thirty);
        assert_eq!(loaded.predict(&x, 2).unwrap().uplift, thirty);
    }
}

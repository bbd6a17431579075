//! Population stability: is tonight's population the one a model was trained on?
//!
//! At training, each feature and the model's score are cut into (up to) ten bins at their
//! deciles over the population the model will score — the users as of the training date (see
//! `training::profile_population`) — and the share of users in each bin and the share
//! missing are kept in the model's metadata as its [`Profile`]. At scoring, tonight's users are counted into the
//! same bins ([`Tally`], additive, so shards count apart and their tallies are summed), and the
//! population stability index of each distribution, `Σ (now − then) · ln(now / then)`, says how
//! far it moved. The usual reading: under 0.1 stable, 0.1–0.25 a moderate shift, above 0.25 a
//! shift that makes the model's scores suspect.
//!
//! Only a fixed eighth of the users is counted (by a hash of the user id, so the sample is the
//! same whatever the sharding): at 1M users that is 125k rows, whose PSI under no drift is about
//! 10⁻⁴ — far below any threshold — at an eighth of the cost of counting everyone.

use serde::{Deserialize, Serialize};

/// Bins per distribution.
const BINS: usize = 10;
/// The share a bin is taken to have when it has none, so that an empty bin on one side gives a
/// large but finite index (the convention of most PSI implementations).
const FLOOR: f64 = 1e-4;
/// A PSI at or above this is a moderate shift.
pub const MODERATE: f64 = 0.1;
/// A PSI at or above this is a shift that makes the model's scores suspect: a warning.
pub const SHIFTED: f64 = 0.25;

/// Whether a user is in the monitored sample: an eighth of the users, by a hash of the id
/// unrelated to the shard hash.
pub fn sampled(user_id: i64) -> bool {
    (user_id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 61 == 0
}

/// A distribution as training saw it: the bins' upper edges (the last bin is open above), the
/// share of present values in each bin, and the share missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binned {
    pub name: String,
    /// Upper edges of every bin but the last, ascending and distinct; a value equal to an
    /// edge belongs to the bin the edge closes.
    pub edges: Vec<f64>,
    /// Share of the present values in each bin (`edges.len() + 1` of them).
    pub shares: Vec<f64>,
    /// Share of values missing (NaN).
    pub missing: f64,
}

impl Binned {
    /// The distribution of `values`, cut at their deciles.
    pub fn of(name: &str, values: impl Iterator<Item = f64>) -> Binned {
        let (mut present, mut missing) = (Vec::new(), 0usize);
        for v in values {
            if v.is_nan() {
                missing += 1;
            } else {
                present.push(v);
            }
        }
        let total = present.len() + missing;
        present.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = (1..BINS)
            .filter_map(|k| present.get(k * present.len() / BINS).copied())
            .collect();
        // A decile equal to the maximum would leave its upper bin always empty.
        edges.retain(|&e| Some(&e) != present.last());
        edges.dedup();
        let mut counts = vec![0u64; edges.len() + 1];
        for &v in &present {
            counts[bin(&edges, v)] += 1;
        }
        let n = present.len().max(1) as f64;
        Binned {
            name: name.to_string(),
            edges,
            shares: counts.iter().map(|&c| c as f64 / n).collect(),
            missing: if total == 0 {
                0.0
            } else {
                missing as f64 / total as f64
            },
        }
    }
}

/// The bin of a present value.
fn bin(edges: &[f64], v: f64) -> usize {
    edges.partition_point(|&e| e < v)
}

/// What a model was trained on, for monitoring: each feature's distribution and its score's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// In the model's feature order.
    pub features: Vec<Binned>,
    /// The model's score (the predicted uplift, or the classifier's probability).
    pub score: Binned,
}

/// The distribution of each column of a row-major matrix of `names.len()` features.
pub fn features_of(names: &[String], x: &[f64]) -> Vec<Binned> {
    let width = names.len();
    names
        .iter()
        .enumerate()
        .map(|(j, name)| Binned::of(name, x.chunks_exact(width).map(|row| row[j])))
        .collect()
}

impl Profile {
    /// The profile of a row-major matrix of `names.len()` features and a score.
    pub fn of(names: &[String], x: &[f64], score: &[f64], score_name: &str) -> Profile {
        Profile::with_features(features_of(names, x), score, score_name)
    }

    /// The profile of a score beside features already binned (models profiled on the same
    /// users share them).
    pub fn with_features(features: Vec<Binned>, score: &[f64], score_name: &str) -> Profile {
        Profile {
            features,
            score: Binned::of(score_name, score.iter().copied()),
        }
    }

    /// An empty tally over this profile's bins.
    pub fn tally(&self) -> Tally {
        let counts = |b: &Binned| Counts {
            bins: vec![0; b.edges.len() + 1],
            missing: 0,
        };
        Tally {
            features: self.features.iter().map(counts).collect(),
            score: counts(&self.score),
        }
    }
}

/// One distribution's counts tonight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub bins: Vec<u64>,
    pub missing: u64,
}

impl Counts {
    fn add(&mut self, edges: &[f64], v: f64) {
        if v.is_nan() {
            self.missing += 1;
        } else {
            self.bins[bin(edges, v)] += 1;
        }
    }

    fn merge(&mut self, other: &Counts) -> Result<(), TallyMismatch> {
        if self.bins.len() != other.bins.len() {
            return Err(TallyMismatch);
        }
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
        self.missing += other.missing;
        Ok(())
    }

    /// The index of these counts against `then`, and the share missing.
    fn against(&self, then: &Binned) -> (f64, f64) {
        let present: u64 = self.bins.iter().sum();
        let total = present + self.missing;
        let psi = if present == 0 {
            f64::NAN
        } else {
            self.bins
                .iter()
                .zip(&then.shares)
                .map(|(&c, &e)| {
                    let a = (c as f64 / present as f64).max(FLOOR);
                    let e = e.max(FLOOR);
                    (a - e) * (a / e).ln()
                })
                .sum()
        };
        let missing = if total == 0 {
            0.0
        } else {
            self.missing as f64 / total as f64
        };
        (psi, missing)
    }
}

/// Tonight's sampled users counted into a [`Profile`]'s bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tally {
    pub features: Vec<Counts>,
    pub score: Counts,
}

/// Two tallies over different bins were to be summed: shards scored with different models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the drift tallies have different bins")]
pub struct TallyMismatch;

impl Tally {
    /// Counts one row of features (in the profile's order) and its score.
    pub fn add(&mut self, profile: &Profile, row: &[f64], score: f64) {
        self.add_features(profile, row);
        self.add_score(profile, score);
    }

    /// Counts one row of features (in the profile's order).
    pub fn add_features(&mut self, profile: &Profile, row: &[f64]) {
        for ((c, b), &v) in self.features.iter_mut().zip(&profile.features).zip(row) {
            c.add(&b.edges, v);
        }
    }

    /// Counts one score.
    pub fn add_score(&mut self, profile: &Profile, score: f64) {
        self.score.add(&profile.score.edges, score);
    }

    /// Adds another shard's tally of the same profile.
    pub fn merge(&mut self, other: &Tally) -> Result<(), TallyMismatch> {
        if self.features.len() != other.features.len() {
            return Err(TallyMismatch);
        }
        for (a, b) in self.features.iter_mut().zip(&other.features) {
            a.merge(b)?;
        }
        self.score.merge(&other.score)
    }

    /// The rows counted.
    pub fn rows(&self) -> u64 {
        self.score.bins.iter().sum::<u64>() + self.score.missing
    }

    /// Every distribution's shift from `profile`, the score's first.
    pub fn drift(&self, profile: &Profile) -> Vec<Shift> {
        let shift = |c: &Counts, b: &Binned| {
            let (psi, missing_now) = c.against(b);
            Shift {
                name: b.name.clone(),
                psi,
                missing_then: b.missing,
                missing_now,
            }
        };
        std::iter::once(shift(&self.score, &profile.score))
            .chain(
                self.features
                    .iter()
                    .zip(&profile.features)
                    .map(|(c, b)| shift(c, b)),
            )
            .collect()
    }
}

/// How far one distribution moved since training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    /// The feature's name, or the score's.
    pub name: String,
    /// Population stability index; NaN when tonight had no present value to compare.
    pub psi: f64,
    pub missing_then: f64,
    pub missing_now: f64,
}

impl Shift {
    /// Shifted enough to warn: a PSI at or above [`SHIFTED`], or a missing share that grew by
    /// more than 10 points (a column that stopped arriving).
    pub fn warns(&self) -> bool {
        self.psi >= SHIFTED || self.missing_now - self.missing_then > 0.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile_of(values: &[f64]) -> Profile {
        Profile::of(&["f".to_string()], values, values, "score")
    }

    fn tally_of(p: &Profile, values: &[f64]) -> Tally {
        let mut t = p.tally();
        for &v in values {
            t.add(p, &[v], v);
        }
        t
    }

    #[test]
    fn deciles_cut_a_uniform_sample_into_tenths() {
        let values: Vec<f64> = (0..1000).map(f64::from).collect();
        let b = Binned::of("f", values.iter().copied());
        assert_eq!(b.edges.len(), 9);
        assert_eq!(b.edges[0], 100.0);
        // Values equal to an edge close its bin: 0..=100 is the first, 101 values.
        assert!((b.shares[0] - 0.101).abs() < 1e-12);
        assert!((b.shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(b.missing, 0.0);
    }

    #[test]
    fn the_same_population_is_stable_and_a_moved_one_is_not() {
        let then: Vec<f64> = (0..10_000).map(|i| f64::from(i % 997)).collect();
        let p = profile_of(&then);
        let same = tally_of(&p, &then);
        assert!(same.drift(&p)[0].psi.abs() < 1e-9);
        // Half the mass moved to the top bin: known PSI from the shares.
        let moved: Vec<f64> = then
            .iter()
            .map(|&v| if v < 500.0 { 2000.0 } else { v })
            .collect();
        let shift = &tally_of(&p, &moved).drift(&p)[1];
        assert_eq!(shift.name, "f");
        let expected: f64 = {
            let t = &p.features[0].shares;
            let mut now = vec![0.0; t.len()];
            for &v in &moved {
                now[bin(&p.features[0].edges, v)] += 1.0 / moved.len() as f64;
            }
            now.iter()
                .zip(t)
                .map(|(&a, &e)| (a.max(FLOOR) - e.max(FLOOR)) * (a.max(FLOOR) / e.max(FLOOR)).ln())
                .sum()
        };
        assert!((shift.psi - expected).abs() < 1e-12);
        assert!(shift.psi > SHIFTED, "psi {}", shift.psi);
        assert!(shift.warns());
    }

    #[test]
    fn missing_values_are_counted_apart_and_warn_when_they_grow() {
        let mut then: Vec<f64> = (0..1000).map(f64::from).collect();
        then[..100].fill(f64::NAN);
        let p = profile_of(&then);
        assert!((p.features[0].missing - 0.1).abs() < 1e-12);
        let mut now = then.clone();
        now[..400].fill(f64::NAN);
        let shift = &tally_of(&p, &now).drift(&p)[1];
        assert!((shift.missing_now - 0.4).abs() < 1e-12);
        assert!(shift.warns());
    }

    #[test]
    fn shard_tallies_sum_to_the_whole() {
        let values: Vec<f64> = (0..5000).map(|i| f64::from(i * 7 % 1013)).collect();
        let p = profile_of(&values);
        let whole = tally_of(&p, &values);
        let mut parts = tally_of(&p, &values[..1234]);
        parts.merge(&tally_of(&p, &values[1234..])).unwrap();
        assert_eq!(parts, whole);
        assert_eq!(whole.rows(), 5000);
        let other = profile_of(&[1.0, 2.0]);
        assert_eq!(parts.merge(&other.tally()), Err(TallyMismatch));
    }

    #[test]
    fn a_constant_feature_has_one_bin() {
        let b = Binned::of("f", std::iter::repeat_n(3.0, 50));
        assert!(b.edges.is_empty());
        assert_eq!(b.shares, vec![1.0]);
    }

    #[test]
    fn the_sample_is_about_an_eighth() {
        let n = (0..80_000).filter(|&u| sampled(u)).count();
        assert!((9_000..11_000).contains(&n), "{n}");
    }
}

//! Probability calibration (Platt scaling) for the probabilities that feed expected value: an
//! uplift model's baseline purchase probability and the discount-sensitivity classifier's output.
//!
//! Gradient-boosted probabilities trained with regularisation and bagging are usually well
//! ranked but a little shrunk or stretched; expected-value arithmetic (discount uplift × margin −
//! P(buy anyway) × discount cost) needs them on the right scale. Platt scaling fits
//! `p' = σ(a · logit(p) + b)` on rows the model did not learn its trees from. Two numbers are
//! robust on small validation sets and, unlike isotonic regression, keep the ranking strict
//! (no ties), which selection relies on.

use serde::{Deserialize, Serialize};

/// A Platt map `p ↦ σ(a · logit(p) + b)`. The default is the identity (`a = 1`, `b = 0`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

impl Default for Platt {
    fn default() -> Self {
        Self { a: 1.0, b: 0.0 }
    }
}

/// Probabilities are kept this far from 0 and 1 so that logits stay finite.
const EPS: f64 = 1e-6;

fn logit(p: f64) -> f64 {
    let p = p.clamp(EPS, 1.0 - EPS);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Platt {
    /// Fits the map by maximum likelihood (Newton's method on the logistic log loss of `label`
    /// given `logit(p)`). Returns the identity when there is nothing to learn from: no rows, or a
    /// single class.
    pub fn fit(label: &[bool], p: &[f64]) -> Platt {
        let positives = label.iter().filter(|&&y| y).count();
        if label.is_empty() || positives == 0 || positives == label.len() {
            return Platt::default();
        }
        let z: Vec<f64> = p.iter().map(|&p| logit(p)).collect();
        let (mut a, mut b) = (1.0, 0.0);
        for _ in 0..100 {
            // Gradient and Hessian of the mean log loss in (a, b); a tiny ridge keeps the
            // Hessian invertible when every logit is the same.
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
            for (&zi, &yi) in z.iter().zip(label) {
                let q = sigmoid(a * zi + b);
                let r = q - f64::from(u8::from(yi));
                let w = q * (1.0 - q);
                ga += r * zi;
                gb += r;
                haa += w * zi * zi;
                hab += w * zi;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-12 {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            a -= da;
            b -= db;
            if da.abs() < 1e-10 && db.abs() < 1e-10 {
                break;
            }
        }
        if a.is_finite() && b.is_finite() && a > 0.0 {
            Platt { a, b }
        } else {
            // A non-increasing map would invert the model's ranking: keep the raw probabilities.
            Platt::default()
        }
    }

    /// The calibrated probability of `p`.
    pub fn apply(&self, p: f64) -> f64 {
        if *self == Platt::default() {
            return p;
        }
        sigmoid(self.a * logit(p) + self.b)
    }

    /// Calibrates every probability of `p` in place.
    pub fn apply_all(&self, p: &mut [f64]) {
        for v in p {
            *v = self.apply(*v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn identity_leaves_probabilities_alone() {
        let id = Platt::default();
        for p in [0.0, 0.01, 0.3, 0.999, 1.0] {
            assert_eq!(id.apply(p), p);
        }
    }

    #[test]
    fn recovers_a_known_distortion() {
        // Outcomes drawn from σ(2·logit(p) − 0.5): the fit must find a ≈ 2 and b ≈ −0.5.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let p: Vec<f64> = (0..200_000).map(|_| rng.random_range(0.02..0.6)).collect();
        let label: Vec<bool> = p
            .iter()
            .map(|&p| rng.random_bool(sigmoid(2.0 * logit(p) - 0.5)))
            .collect();
        let m = Platt::fit(&label, &p);
        assert!((m.a - 2.0).abs() < 0.05, "a = {}", m.a);
        assert!((m.b + 0.5).abs() < 0.05, "b = {}", m.b);
        // Calibrated probabilities match the observed rate overall.
        let mean = p.iter().map(|&v| m.apply(v)).sum::<f64>() / p.len() as f64;
        let rate = label.iter().filter(|&&y| y).count() as f64 / label.len() as f64;
        assert!((mean - rate).abs() < 0.002, "{mean} vs {rate}");
    }

    #[test]
    fn hand_checked_shift() {
        // Every row predicts 0.5 while 1 in 4 buys: a constant logit cannot set a slope, so the
        // fit moves the intercept to logit(0.25) = −ln 3 and maps 0.5 to exactly 0.25.
        let p = vec![0.5; 8];
        let label = [true, false, false, false, true, false, false, false];
        let m = Platt::fit(&label, &p);
        assert!((m.b + 3f64.ln()).abs() < 1e-6, "b = {}", m.b);
        assert!((m.apply(0.5) - 0.25).abs() < 1e-6);
    }

    #[test]
    fn single_class_or_no_rows_give_the_identity() {
        assert_eq!(Platt::fit(&[], &[]), Platt::default());
        assert_eq!(Platt::fit(&[false, false], &[0.2, 0.4]), Platt::default());
        assert_eq!(Platt::fit(&[true, true], &[0.2, 0.4]), Platt::default());
    }

    #[test]
    fn keeps_the_ranking() {
        let p = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7];
        let label = [false, false, true, false, true, true];
        let m = Platt::fit(&label, &p);
        let c: Vec<f64> = p.iter().map(|&v| m.apply(v)).collect();
        assert!(c.windows(2).all(|w| w[0] < w[1]), "{c:?}");
    }
}

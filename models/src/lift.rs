//! Did a campaign work? The lift of a randomized treatment arm over its holdout, with 95 %
//! intervals: Newcombe's hybrid score interval for a difference of conversion rates (good at
//! small rates and small arms, where the Wald interval undercovers), and a seeded percentile
//! bootstrap for money, whose per-user amounts are mostly zero and heavily skewed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};

use crate::metrics::Interval;

/// The standard normal quantile of 0.975: 95 % two-sided.
const Z_95: f64 = 1.959_963_984_540_054;
/// The standard normal quantile of 0.8: 80 % power.
const Z_POWER_80: f64 = 0.841_621_233_572_914_3;

/// Wilson's score interval of a proportion `x / n` at the normal quantile `z`; `(0, 1)` for an
/// empty sample.
pub fn wilson(x: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = x as f64 / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The difference of two proportions `x1 / n1 − x2 / n2` with Newcombe's 95 % hybrid score
/// interval (his method 10: the two arms' Wilson intervals combined). `None` when an arm is
/// empty.
pub fn newcombe_difference(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<Interval> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let arm = |x: u64, n: u64| {
        let (low, high) = wilson(x, n, Z_95);
        Interval {
            estimate: x as f64 / n as f64,
            low,
            high,
        }
    };
    Some(mover_difference(arm(x1, n1), arm(x2, n2)))
}

/// The difference `a − b` of two independent estimates, from their 95 % intervals, by the
/// method of variance estimates recovery (Zou & Donner 2008): each side of the interval
/// recovers the variance of each estimate from the side of its interval that matters there.
/// Newcombe's hybrid interval is this method over two Wilson intervals; the report uses it
/// again for the model's lift minus a random choice's.
pub fn mover_difference(a: Interval, b: Interval) -> Interval {
    let d = a.estimate - b.estimate;
    Interval {
        estimate: d,
        low: d - ((a.estimate - a.low).powi(2) + (b.high - b.estimate).powi(2)).sqrt(),
        high: d + ((a.high - a.estimate).powi(2) + (b.estimate - b.low).powi(2)).sqrt(),
    }
}

/// One arm's per-user amounts (revenue, profit…), kept sparse: most users spend nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Amounts {
    /// Users in the arm.
    pub users: u64,
    /// The amounts of the users whose amount is not zero.
    pub nonzero: Vec<f64>,
}

impl Amounts {
    pub fn total(&self) -> f64 {
        self.nonzero.iter().sum()
    }

    pub fn mean(&self) -> f64 {
        if self.users == 0 {
            return f64::NAN;
        }
        self.total() / self.users as f64
    }

    /// The total of one resample of the arm's users with replacement. Drawing how many of the
    /// `users` draws land on a non-zero user (binomial), then which ones, has the distribution
    /// of a plain resample at the cost of the non-zero users only.
    fn resampled_total(&self, rng: &mut ChaCha8Rng) -> f64 {
        let k = self.nonzero.len();
        if k == 0 {
            return 0.0;
        }
        let hits =
            Binomial::new(self.users, k as f64 / self.users as f64).map_or(0, |b| b.sample(rng));
        (0..hits)
            .map(|_| self.nonzero[rng.random_range(0..k)])
            .sum()
    }
}

/// The difference of the per-user means of two arms, `a − b`, with a 95 % percentile bootstrap
/// interval: `rounds` resamples of each arm, from a generator seeded with `seed`. `None` when
/// an arm is empty.
pub fn bootstrap_mean_difference(
    a: &Amounts,
    b: &Amounts,
    rounds: usize,
    seed: u64,
) -> Option<Interval> {
    if a.users == 0 || b.users == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut diffs: Vec<f64> = (0..rounds)
        .map(|_| {
            a.resampled_total(&mut rng) / a.users as f64
                - b.resampled_total(&mut rng) / b.users as f64
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    let at = |q: f64| diffs[((diffs.len() - 1) as f64 * q).round() as usize];
    Some(Interval {
        estimate: a.mean() - b.mean(),
        low: if diffs.is_empty() {
            f64::NAN
        } else {
            at(0.025)
        },
        high: if diffs.is_empty() {
            f64::NAN
        } else {
            at(0.975)
        },
    })
}

/// The smallest difference of conversion rates that arms of `n1` and `n2` users detect at a
/// two-sided 5 % level with 80 % power, when the rate without the message is `p`.
pub fn minimum_detectable_effect(p: f64, n1: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return f64::INFINITY;
    }
    // A rate of exactly 0 or 1 would claim any effect is detectable.
    let p = p.clamp(0.01, 0.99);
    (Z_95 + Z_POWER_80) * (p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt()
}

/// An interval scaled by `k` (a per-user difference to a total over `k` users).
pub fn scaled(i: Interval, k: f64) -> Interval {
    Interval {
        estimate: i.estimate * k,
        low: i.low * k,
        high: i.high * k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn wilson_matches_newcombe_1998() {
        // Newcombe (1998), Statistics in Medicine 17: 873–890, table I: 81/263 → 0.2553–0.3662.
        let (l, u) = wilson(81, 263, Z_95);
        assert!(close(l, 0.2553) && close(u, 0.3662), "{l} {u}");
        // 0/10 → 0–0.2775.
        let (l, u) = wilson(0, 10, Z_95);
        assert!(close(l, 0.0) && close(u, 0.2775), "{l} {u}");
    }

    #[test]
    fn mover_combines_the_sides_that_matter() {
        let a = Interval {
            estimate: 0.2,
            low: 0.1,
            high: 0.35,
        };
        let b = Interval {
            estimate: 0.05,
            low: 0.0,
            high: 0.1,
        };
        let d = mover_difference(a, b);
        assert!(close(d.estimate, 0.15));
        // Low: a's lower side (0.1) with b's upper side (0.05); high: a's upper (0.15) with
        // b's lower (0.05).
        assert!(close(d.low, 0.15 - (0.01f64 + 0.0025).sqrt()), "{d:?}");
        assert!(close(d.high, 0.15 + (0.0225f64 + 0.0025).sqrt()), "{d:?}");
        let exact = Interval {
            estimate: 0.05,
            low: 0.05,
            high: 0.05,
        };
        let shifted = mover_difference(a, exact);
        assert!(
            close(shifted.low, 0.05) && close(shifted.high, 0.3),
            "{shifted:?}"
        );
    }

    #[test]
    fn newcombe_difference_matches_newcombe_1998() {
        // Newcombe (1998), Statistics in Medicine 17: 873–890, table II, method 10:
        // 56/70 − 48/80 → 0.0524 to 0.3339; 9/10 − 3/10 → 0.1705 to 0.8090.
        let d = newcombe_difference(56, 70, 48, 80).unwrap();
        assert!(close(d.estimate, 0.2), "{d:?}");
        assert!(close(d.low, 0.0524) && close(d.high, 0.3339), "{d:?}");
        let d = newcombe_difference(9, 10, 3, 10).unwrap();
        assert!(close(d.low, 0.1705) && close(d.high, 0.8090), "{d:?}");
        assert!(newcombe_difference(1, 0, 1, 2).is_none());
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_difference() {
        let a = Amounts {
            users: 1000,
            nonzero: (0..120).map(|i| 10.0 + f64::from(i % 7)).collect(),
        };
        let b = Amounts {
            users: 800,
            nonzero: (0..60).map(|i| 10.0 + f64::from(i % 5)).collect(),
        };
        let x = bootstrap_mean_difference(&a, &b, 400, 3).unwrap();
        assert_eq!(Some(x), bootstrap_mean_difference(&a, &b, 400, 3));
        assert!(close(x.estimate, a.mean() - b.mean()));
        assert!(x.low < x.estimate && x.estimate < x.high, "{x:?}");
        // The normal approximation's half width, from the two arms' variances, is ≈ 0.345.
        let half = (x.high - x.low) / 2.0;
        assert!((0.29..0.40).contains(&half), "{x:?}");
        assert!(bootstrap_mean_difference(&a, &Amounts::default(), 10, 1).is_none());
    }

    #[test]
    fn minimum_detectable_effect_follows_the_arms() {
        // 10 % baseline, 1,000 users per arm: 2.8016 × √(0.09 × 0.002) ≈ 0.0376.
        assert!(close(minimum_detectable_effect(0.1, 1000, 1000), 0.037588));
        assert!(minimum_detectable_effect(0.1, 50, 50) > minimum_detectable_effect(0.1, 500, 500));
        assert!(minimum_detectable_effect(0.1, 0, 10).is_infinite());
    }
}

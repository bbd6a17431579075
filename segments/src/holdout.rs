//! Holdouts by deterministic salted hash.
//!
//! A user's bucket is a number in `[0, 1)` derived from SHA-256 of `(salt, user_id)`: the same
//! user lands in the same arm on every re-run of a campaign, and campaigns with different salts
//! hold out different users, so nobody is always held out.

use sha2::{Digest, Sha256};

/// Which side of a campaign's randomisation a selected user is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arm {
    /// Receives the campaign: exported to the CRM.
    Treatment,
    /// Held out: never messaged, kept to measure the campaign's lift.
    Holdout,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Treatment => "treatment",
            Arm::Holdout => "holdout",
        }
    }
}

/// Whether a user belongs to the global control group of `share` under `salt`: never messaged by
/// any campaign, so that every campaign together can be measured against it.
pub fn in_global_control(salt: &str, share: f64, user_id: i64) -> bool {
    bucket(salt, user_id) < share
}

/// The user's bucket in `[0, 1)` for a salt.
pub fn bucket(salt: &str, user_id: i64) -> f64 {
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(b":")
        .chain_update(user_id.to_string().as_bytes())
        .finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    // The top 53 bits give an exactly representable, uniform float.
    (u64::from_be_bytes(head) >> 11) as f64 / (1u64 << 53) as f64
}

/// The arm of a user for a campaign salt and holdout share.
pub fn arm(salt: &str, share: f64, user_id: i64) -> Arm {
    if bucket(salt, user_id) < share {
        Arm::Holdout
    } else {
        Arm::Treatment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_salted() {
        assert_eq!(bucket("a", 42), bucket("a", 42));
        assert_ne!(bucket("a", 42), bucket("b", 42));
        let b = bucket("a", 42);
        assert!((0.0..1.0).contains(&b));
    }

    #[test]
    fn share_of_holdouts_follows_the_setting() {
        let n = 100_000;
        let held = (0..n).filter(|&u| arm("s", 0.1, u) == Arm::Holdout).count();
        let share = held as f64 / n as f64;
        // Binomial sd at n = 100k and p = 0.1 is 0.095 pp; 0.5 pp is over 5 sd.
        assert!((share - 0.1).abs() < 0.005, "{share}");
    }

    /// Pearson's chi-square statistic of observed counts against expected ones.
    fn chi_square(observed: &[f64], expected: &[f64]) -> f64 {
        observed
            .iter()
            .zip(expected)
            .map(|(o, e)| (o - e) * (o - e) / e)
            .sum()
    }

    #[test]
    fn arms_are_balanced_by_chi_square() {
        // 100k users, 20% held out. Critical values at p = 0.001: 10.83 for 1 degree of
        // freedom, 18.47 for 4.
        let n = 100_000usize;
        let share = 0.2;
        let arms: Vec<Arm> = (0..n as i64).map(|u| arm("balance", share, u)).collect();
        let held = arms.iter().filter(|&&a| a == Arm::Holdout).count() as f64;
        let shares = chi_square(
            &[held, n as f64 - held],
            &[n as f64 * share, n as f64 * (1.0 - share)],
        );
        assert!(shares < 10.83, "arm shares: chi-square {shares}");

        // A covariate with five levels (as a country or a platform would be): the arm must
        // not depend on it. Contingency table arm × level, (2 − 1) × (5 − 1) = 4 degrees of
        // freedom.
        let level = |u: usize| (u * 7 + u / 13) % 5;
        let mut table = [[0.0f64; 5]; 2];
        for (u, a) in arms.iter().enumerate() {
            table[usize::from(*a == Arm::Holdout)][level(u)] += 1.0;
        }
        let rows: Vec<f64> = table.iter().map(|r| r.iter().sum()).collect();
        let cols: Vec<f64> = (0..5).map(|j| table[0][j] + table[1][j]).collect();
        let observed: Vec<f64> = table.iter().flatten().copied().collect();
        let expected: Vec<f64> = rows
            .iter()
            .flat_map(|r| cols.iter().map(move |c| r * c / n as f64))
            .collect();
        let independence = chi_square(&observed, &expected);
        assert!(
            independence < 18.47,
            "arm × covariate: chi-square {independence}"
        );

        // The test can fail: an arm that follows the covariate is caught at once.
        let mut skewed = [[0.0f64; 5]; 2];
        for (u, a) in arms.iter().enumerate() {
            let lv = level(u);
            let held = lv == 0 || (*a == Arm::Holdout && u % 2 == 0);
            skewed[usize::from(held)][lv] += 1.0;
        }
        let observed: Vec<f64> = skewed.iter().flatten().copied().collect();
        let rows: Vec<f64> = skewed.iter().map(|r| r.iter().sum()).collect();
        let expected: Vec<f64> = rows
            .iter()
            .flat_map(|r| cols.iter().map(move |c| r * c / n as f64))
            .collect();
        assert!(chi_square(&observed, &expected) > 18.47);
    }
}

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
}

//! Shards: the users split into N parts by a fixed hash of their id, so that a night can be
//! scored a part at a time (bounded memory) or a part per process (scale-out) with the same
//! lists as a run over all users at once.
//!
//! The hash is part of the deployment's contract and never changes between versions: processes
//! of different builds, and the SQL a shard's queries filter with
//! (`sql/statements/shard_of.sql`), must agree on it. With `x = user_id mod 2³¹` (taken
//! non-negative), `h = (x · 1103515245 + 12345) mod 2³¹`, the shard of a user among `n` is
//! `(h div 2¹⁶) mod n`: the upper bits of one step of a linear congruential generator, which
//! spread consecutive and strided ids alike, in integer arithmetic every SQL dialect has and
//! that never overflows 64 bits.

use std::fmt;

/// One part of `count` (`index` < `count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// The most shards a night may be split into.
pub const MAX_SHARDS: u32 = 4096;

impl Shard {
    /// All users in one part.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; `None` unless `index < count <= MAX_SHARDS`.
    pub fn new(index: u32, count: u32) -> Option<Shard> {
        (index < count && count <= MAX_SHARDS).then_some(Shard { index, count })
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// Every shard of `count`, in order.
    pub fn all(count: u32) -> impl Iterator<Item = Shard> {
        (0..count).map(move |index| Shard { index, count })
    }

    /// Whether the user belongs to this shard.
    pub fn holds(self, user_id: i64) -> bool {
        shard_of(user_id, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}", self.index, self.count)
    }
}

const MODULUS: i64 = 1 << 31;

/// The shard of a user among `count` (see the module's documentation).
pub fn shard_of(user_id: i64, count: u32) -> u32 {
    let x = user_id.rem_euclid(MODULUS);
    let h = (x * 1_103_515_245 + 12_345) % MODULUS;
    ((h >> 16) % i64::from(count.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fixed() {
        // These values are the contract: a change here re-shards every deployment.
        let got: Vec<u32> = [0i64, 1, 2, 3, 1000, -1, i64::MAX, i64::MIN, 4_294_967_296]
            .iter()
            .map(|&u| shard_of(u, 1000))
            .collect();
        assert_eq!(got, vec![0, 838, 908, 747, 322, 929, 929, 0, 0]);
    }

    #[test]
    fn consecutive_and_strided_ids_spread_evenly() {
        for (stride, count) in [(1i64, 8u32), (1 << 16, 8), (1000, 7), (2, 16)] {
            let mut sizes = vec![0usize; count as usize];
            let n = 80_000i64;
            for k in 0..n {
                sizes[shard_of(1 + k * stride, count) as usize] += 1;
            }
            let mean = n as f64 / f64::from(count);
            for s in sizes {
                assert!(
                    (s as f64 - mean).abs() < 0.05 * mean,
                    "stride {stride}: {s} vs {mean}"
                );
            }
        }
    }

    #[test]
    fn shards_are_checked() {
        assert!(Shard::new(3, 3).is_none());
        assert!(Shard::new(0, 0).is_none());
        assert!(Shard::new(0, MAX_SHARDS + 1).is_none());
        assert_eq!(
            Shard::new(2, 3).map(|s| s.to_string()),
            Some("2 of 3".into())
        );
        assert!(Shard::all(5).all(|s| s.holds(1) == (s.index() == shard_of(1, 5))));
    }
}

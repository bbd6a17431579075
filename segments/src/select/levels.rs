//! What an offer is worth to a user, and, for an offer with discount levels, which level each
//! user gets under the campaign's budget.
//!
//! Per list price of a purchase, an offer of a discount d (a share) to a user whose purchase
//! probability it raises by `effect` and who would buy anyway with probability `p` is worth
//! `effect × (margin − d) − p × d` in expected incremental profit, and gives away
//! `(p + effect⁺) × d` in expected discount. An offer with levels gives each user the level
//! with the most profit, or no message when none is positive.
//!
//! Under a budget the levels are priced: at a price λ per unit of expected discount, each user
//! gets the level with the most `profit − λ × discount` (the Lagrangian relaxation of the
//! multiple-choice knapsack), the campaign takes the users with the highest such score up to
//! its maximum audience, and λ is the smallest price at which their expected discount fits in
//! the budget, found by bisection. At that price no other choice of levels that gives away as
//! much earns more: a user moves to a more generous level only where the extra profit pays the
//! extra discount at the budget's price. The bisection reads only sums over users, so any split
//! of the users into shards finds the same λ, and the levels are chosen once every shard's
//! candidates are merged (a campaign with levels keeps all its candidates, uncut).

use super::Candidate;
use crate::campaign::{Campaign, Offer, MAX_DISCOUNT_LEVELS};
use crate::holdout::{arm, Arm};

/// The scored users' column of the discount model's effect at `level` percent (one per level
/// the model knows; the scoring stage checks that it wrote them).
pub fn discount_uplift_column(level: u32) -> String {
    format!("discount_uplift_{level}")
}

/// One discount a user could be offered, with what it is worth, per list price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OfferOption {
    /// The discount, in percent.
    pub pct: f64,
    /// Expected incremental profit.
    pub value: f64,
    /// Expected discount given.
    pub cost: f64,
    /// `value − λ × cost` at the price it was chosen at.
    pub score: f64,
}

/// What offering `pct` percent is worth to a user with discount uplift `effect` (or the
/// message's uplift, without a discount) and baseline purchase probability `p_control`.
pub fn offer_value(offer: &Offer, effect: f64, p_control: f64, pct: f64) -> OfferOption {
    let d = pct / 100.0;
    let value = effect * (offer.margin - d) - p_control * d;
    let cost = (p_control + effect.max(0.0)) * d;
    OfferOption {
        pct,
        value,
        cost,
        score: value,
    }
}

/// The level of `offer` with the highest `value − lambda × cost` for a user with these
/// `effects` (one per level) and baseline (the lowest level on a tie).
pub fn best_level(
    offer: &Offer,
    effects: &[f64; MAX_DISCOUNT_LEVELS],
    p_control: f64,
    lambda: f64,
) -> OfferOption {
    let mut best: Option<OfferOption> = None;
    for (&level, &effect) in offer.discount_levels.iter().zip(effects) {
        let mut option = offer_value(offer, effect, p_control, f64::from(level));
        option.score = option.value - lambda * option.cost;
        if best.is_none_or(|b| option.score > b.score) {
            best = Some(option);
        }
    }
    best.unwrap_or(OfferOption {
        pct: 0.0,
        value: f64::NAN,
        cost: 0.0,
        score: f64::NAN,
    })
}

/// Bisection steps for the budget's price: the bracket narrows to 2⁻⁶⁰ of its width.
const BISECTION_STEPS: usize = 60;

/// Chooses each candidate's level of `campaign`'s offer (which has levels) at the budget's
/// price, sets its value, cost, discount and key (the score at that price), drops those no
/// level is worth messaging, and puts the rest in the campaign's order. Returns the price λ (0
/// without a budget, or when the budget does not bind). Public for what can judge the choice
/// against a truth (the demo), with the true effects in place of the models'.
pub fn choose_levels(campaign: &Campaign, candidates: &mut Vec<Candidate>) -> f64 {
    let offer = &campaign.offer;
    let price = offer.average_price;
    let treated: Vec<bool> = candidates
        .iter()
        .map(|c| arm(&campaign.salt, campaign.holdout, c.user_id) == Arm::Treatment)
        .collect();
    // The expected discount, in currency, of the treatment members the campaign takes at
    // price `lambda`: the best `max_audience` users by score among those worth messaging.
    let spend = |lambda: f64| -> f64 {
        let mut taken: Vec<(f64, f64)> = candidates
            .iter()
            .zip(&treated)
            .filter_map(|(c, &t)| {
                let o = best_level(offer, &c.effects, c.p_control, lambda);
                (o.score > 0.0).then_some((o.score, if t { o.cost * price } else { 0.0 }))
            })
            .collect();
        let n = campaign.max_audience;
        if taken.len() > n {
            taken.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0));
            taken.truncate(n);
        }
        taken.iter().map(|(_, cost)| cost).sum()
    };
    let lambda = match offer.budget {
        Some(budget) if spend(0.0) > budget => {
            let (mut lo, mut hi) = (0.0, 1.0);
            while spend(hi) > budget && hi < 1e9 {
                (lo, hi) = (hi, hi * 2.0);
            }
            for _ in 0..BISECTION_STEPS {
                let mid = 0.5 * (lo + hi);
                if spend(mid) > budget {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            hi
        }
        _ => 0.0,
    };
    for c in candidates.iter_mut() {
        let o = best_level(offer, &c.effects, c.p_control, lambda);
        (c.key, c.value, c.discount_cost, c.discount_pct) = (o.score, o.value, o.cost, o.pct);
    }
    candidates.retain(|c| c.key > 0.0);
    candidates.sort_by(Candidate::before);
    lambda
}

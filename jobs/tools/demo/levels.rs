//! An offer's discount levels chosen per user, against each of its levels given to everyone
//! the campaign takes, judged by the truth: what only synthetic data can tell.
//!
//! Each variant is selected on the night's scored users as the night's only campaign, under
//! the same budget and maximum audience (the budget is spent by the models' forecast, as a real
//! night spends it), and its treatment members are then valued by their *true* response: the
//! expected incremental profit `Σ (u(d) × (margin − d) − p₀ × d) × price`, with p₀ the true
//! probability of buying without a message and u(d) what a message offering d truly adds.
//!
//! The comparison is made at the campaign's own budget, and again at tighter ones that bind
//! (75, 50 and 25 % of what its per-user levels spend under its own): where a budget does not
//! bind, every variant messages everyone worth messaging, and per-user levels can only gain by
//! the level each user gets; where it binds, also by how far the budget reaches.

use std::collections::HashMap;

use anyhow::Result;
use segments::campaign::MAX_DISCOUNT_LEVELS;
use segments::holdout::arm;
use segments::select::{choose_levels, discount_mix, offer_value, Candidate, OfferOption};
use segments::{Arm, Audience, Campaign, Offer};
use serde::Serialize;
use tracing::{debug, info};

use super::generate::Response;
use crate::config::Settings;
use crate::pipeline::score::ScoredUsers;
use crate::pipeline::select::Selector;

/// One way of giving an offer's discounts, valued by the truth.
#[derive(Debug, Clone, Serialize)]
pub struct Valued {
    /// The levels it could give, in percent.
    pub levels: Vec<u32>,
    /// Users messaged by the model's choice.
    pub messaged: usize,
    /// True expected incremental profit, in currency units.
    pub true_profit: f64,
    /// True expected discount given, in currency units.
    pub true_discount: f64,
    /// The eligible users' expected purchases without a message that got no discount: the
    /// share of "would buy anyway" the offer did not pay for.
    pub buy_anyway_undiscounted: f64,
    /// How many messaged users got each level (percent), ascending.
    pub mix: Vec<(f64, usize)>,
}

/// A campaign with discount levels against each level alone, at its own budget, then at
/// tighter ones.
#[derive(Debug, Clone, Serialize)]
pub struct LevelsAgainstTruth {
    pub campaign_id: String,
    /// At the campaign's own budget.
    #[serde(flatten)]
    pub written: Comparison,
    /// At budgets binding at 75, 50 and 25 % of what its per-user levels spend under its own.
    pub tighter: Vec<Comparison>,
}

/// Per-user levels against each level alone, at one budget.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The budget, in currency units (`None`: none).
    pub budget: Option<f64>,
    /// What the per-user levels spend of it, by the models' forecast, in currency units.
    pub spent: f64,
    /// The campaign as written: a level per user.
    pub per_user: Valued,
    /// Each level given to everyone the campaign takes.
    pub single: Vec<Valued>,
    /// The single level with the most true profit.
    pub best_single_level: u32,
    /// Per-user levels' true profit over the best single level's, minus 1.
    pub gain_over_best_single: f64,
    /// The truth's own choice among the same eligible users, under the same budget and maximum
    /// audience (what a model that knew every user's response would do): per-user levels, then
    /// each level alone.
    pub oracle: Valued,
    pub oracle_single: Vec<Valued>,
    /// The truth's per-user levels over its best single level, minus 1: what per-user levels
    /// can earn in this world at all.
    pub oracle_gain_over_best_single: f64,
}

/// What offering `pct` percent to a user of response `r` truly earns and gives away, per list
/// price, and their true probability of buying without a message.
fn truly(offer: &Offer, r: &Response, pct: f64) -> (OfferOption, f64) {
    let p0 = r.window_probability(None);
    let uplift = r.window_probability(Some(pct)) - p0;
    (offer_value(offer, uplift, p0, pct), p0)
}

/// The messaged users' true options (with their probability of buying anyway) summed up,
/// against the purchases without a message of all `eligible` users.
fn valued(
    offer: &Offer,
    messaged: &[(OfferOption, f64)],
    eligible: &[i64],
    truth: &HashMap<i64, Response>,
) -> Valued {
    let price = offer.average_price;
    let anyway: f64 = eligible
        .iter()
        .filter_map(|u| truth.get(u))
        .map(|r| r.window_probability(None))
        .sum();
    let discounted_anyway: f64 = messaged.iter().map(|(_, p0)| p0).sum();
    Valued {
        levels: offer.discount_levels.clone(),
        messaged: messaged.len(),
        true_profit: messaged.iter().map(|(o, _)| o.value * price).sum(),
        true_discount: messaged.iter().map(|(o, _)| o.cost * price).sum(),
        buy_anyway_undiscounted: 1.0 - discounted_anyway / anyway.max(f64::MIN_POSITIVE),
        mix: discount_mix(messaged.iter().map(|(o, _)| o.pct)),
    }
}

/// Values `audience` (of `campaign`, whose eligible users are `eligible`) by the truth: the
/// model's treatment members at the levels they got.
fn value(
    campaign: &Campaign,
    eligible: &[i64],
    audience: &Audience,
    truth: &HashMap<i64, Response>,
) -> Valued {
    let offer = &campaign.offer;
    let messaged: Vec<(OfferOption, f64)> = audience
        .members
        .iter()
        .filter(|m| m.arm == Arm::Treatment && !m.explore)
        .filter_map(|m| Some(truly(offer, truth.get(&m.user_id)?, m.discount_pct)))
        .collect();
    valued(offer, &messaged, eligible, truth)
}

/// The truth's own choice: `campaign` selecting among `eligible` as a night does (each user's
/// level, the budget's price, the best `max_audience`, the holdout), with every user's true
/// effects and baseline in place of the models'.
fn oracle(campaign: &Campaign, eligible: &[i64], truth: &HashMap<i64, Response>) -> Valued {
    let offer = &campaign.offer;
    let mut candidates: Vec<Candidate> = eligible
        .iter()
        .filter_map(|&user_id| {
            let r = truth.get(&user_id)?;
            let p_control = r.window_probability(None);
            let mut effects = [f64::NAN; MAX_DISCOUNT_LEVELS];
            for (e, &level) in effects.iter_mut().zip(&offer.discount_levels) {
                *e = r.window_probability(Some(f64::from(level))) - p_control;
            }
            Some(Candidate {
                user_id,
                key: 0.0,
                uplift: 0.0,
                p_control,
                value: 0.0,
                discount_cost: 0.0,
                discount_pct: 0.0,
                effects,
                item_id: None,
                recipient_user_id: None,
            })
        })
        .collect();
    choose_levels(campaign, &mut candidates);
    candidates.truncate(campaign.max_audience);
    let messaged: Vec<(OfferOption, f64)> = candidates
        .iter()
        .filter(|c| arm(&campaign.salt, campaign.holdout, c.user_id) == Arm::Treatment)
        .filter_map(|c| Some(truly(offer, truth.get(&c.user_id)?, c.discount_pct)))
        .collect();
    valued(offer, &messaged, eligible, truth)
}

/// Every campaign of `campaigns` with discount levels, against each of its levels alone, at
/// its own budget and at tighter ones.
pub fn against_truth(
    s: &Settings,
    campaigns: &[Campaign],
    levels: &models::CategoricalLevels,
    scored: &ScoredUsers,
    date: models::RunDate,
    truth: &HashMap<i64, Response>,
) -> Result<Vec<LevelsAgainstTruth>> {
    let mut out = Vec::new();
    for c in campaigns
        .iter()
        .filter(|c| !c.offer.discount_levels.is_empty())
    {
        let written = compare(s, c, levels, scored, date, truth)?;
        // What the per-user levels spend, by the models' forecast, under the campaign's budget.
        let spent = written.spent;
        let mut tighter = Vec::new();
        for share in [0.75, 0.5, 0.25] {
            let mut c = c.clone();
            c.offer.budget = Some(spent * share);
            tighter.push(compare(s, &c, levels, scored, date, truth)?);
        }
        info!(
            campaign = %c.id,
            true_profit = written.per_user.true_profit,
            best_single_level = written.best_single_level,
            best_single_profit = written.best_single_profit(),
            gain = written.gain_over_best_single,
            oracle_gain = written.oracle_gain_over_best_single,
            "discount levels against the truth"
        );
        for t in &tighter {
            debug!(
                campaign = %c.id,
                budget = t.budget.unwrap_or_default(),
                gain = t.gain_over_best_single,
                oracle_gain = t.oracle_gain_over_best_single,
                "discount levels against the truth, under a tighter budget"
            );
        }
        out.push(LevelsAgainstTruth {
            campaign_id: c.id.clone(),
            written,
            tighter,
        });
    }
    Ok(out)
}

/// Per-user levels of `c` against each of its levels alone, at `c`'s budget.
fn compare(
    s: &Settings,
    c: &Campaign,
    levels: &models::CategoricalLevels,
    scored: &ScoredUsers,
    date: models::RunDate,
    truth: &HashMap<i64, Response>,
) -> Result<Comparison> {
    let variants: Vec<Campaign> = std::iter::once(c.clone())
        .chain(c.offer.discount_levels.iter().map(|&level| {
            let mut alone = c.clone();
            alone.offer.discount_levels = vec![level];
            alone
        }))
        .collect();
    let selector = Selector::for_rankings(s, &variants, levels, date);
    let mut eligible = Vec::new();
    let mut spent = 0.0;
    let mut valued = variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (e, audience) = selector.alone(v, scored)?;
            if i == 0 {
                spent = audience
                    .members
                    .iter()
                    .filter(|m| m.arm == Arm::Treatment && !m.explore)
                    .map(|m| m.discount_cost * v.offer.average_price)
                    .sum();
                eligible = e.clone();
            }
            Ok(value(v, &e, &audience, truth))
        })
        .collect::<Result<Vec<_>>>()?;
    let per_user = valued.remove(0);
    let mut oracles: Vec<Valued> = variants
        .iter()
        .map(|v| oracle(v, &eligible, truth))
        .collect();
    let oracle = oracles.remove(0);
    let oracle_best = oracles
        .iter()
        .map(|v| v.true_profit)
        .fold(f64::NEG_INFINITY, f64::max);
    let best = valued
        .iter()
        .max_by(|a, b| a.true_profit.total_cmp(&b.true_profit))
        .cloned()
        .unwrap_or_else(|| per_user.clone());
    Ok(Comparison {
        budget: c.offer.budget,
        spent,
        best_single_level: best.levels.first().copied().unwrap_or_default(),
        gain_over_best_single: per_user.true_profit / best.true_profit - 1.0,
        oracle_gain_over_best_single: oracle.true_profit / oracle_best - 1.0,
        per_user,
        single: valued,
        oracle,
        oracle_single: oracles,
    })
}

impl Comparison {
    /// The true profit of the best single level.
    pub fn best_single_profit(&self) -> f64 {
        self.single
            .iter()
            .find(|v| v.levels == [self.best_single_level])
            .map_or(f64::NAN, |v| v.true_profit)
    }
}

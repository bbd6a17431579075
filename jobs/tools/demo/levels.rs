//! An offer's discount levels chosen per user, against each of its levels given to everyone
//! the campaign takes, judged by the truth: what only synthetic data can tell.
//!
//! Each variant is selected on the night's scored users as the night's only campaign, under
//! the same budget and maximum audience (the budget is spent by the models' forecast, as a real
//! night spends it), and its treatment members are then valued by their *true* response: the
//! expected incremental profit `Σ (u(d) × (margin − d) − p₀ × d) × price`, with p₀ the true
//! probability of buying without a message and u(d) what a message offering d truly adds.

use std::collections::HashMap;

use anyhow::Result;
use segments::select::{discount_mix, offer_value, OfferOption};
use segments::{Arm, Audience, Campaign, Offer};
use serde::Serialize;
use tracing::info;

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

/// A campaign with discount levels against each level alone.
#[derive(Debug, Clone, Serialize)]
pub struct LevelsAgainstTruth {
    pub campaign_id: String,
    /// The campaign as written: a level per user.
    pub per_user: Valued,
    /// Each level given to everyone the campaign takes.
    pub single: Vec<Valued>,
    /// The single level with the most true profit.
    pub best_single_level: u32,
    /// Per-user levels' true profit over the best single level's, minus 1.
    pub gain_over_best_single: f64,
    /// The truth's own choice among the same eligible users, as many of them (what a model that
    /// knew every user's response would do): per-user levels, then each level alone.
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

/// The truth's own choice: each of `eligible` at the level with the most true profit, the best
/// `messaged` of those worth messaging.
fn oracle(
    campaign: &Campaign,
    eligible: &[i64],
    messaged: usize,
    truth: &HashMap<i64, Response>,
) -> Valued {
    let offer = &campaign.offer;
    let mut best: Vec<(OfferOption, f64)> = eligible
        .iter()
        .filter_map(|u| truth.get(u))
        .filter_map(|r| {
            offer
                .discount_levels
                .iter()
                .map(|&level| truly(offer, r, f64::from(level)))
                .max_by(|a, b| a.0.value.total_cmp(&b.0.value))
        })
        .filter(|(o, _)| o.value > 0.0)
        .collect();
    best.sort_by(|a, b| b.0.value.total_cmp(&a.0.value));
    best.truncate(messaged);
    valued(offer, &best, eligible, truth)
}

/// Every campaign of `campaigns` with discount levels, against each of its levels alone.
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
        let variants: Vec<Campaign> = std::iter::once(c.clone())
            .chain(c.offer.discount_levels.iter().map(|&level| {
                let mut alone = c.clone();
                alone.offer.discount_levels = vec![level];
                alone
            }))
            .collect();
        let selector = Selector::for_rankings(s, &variants, levels, date);
        let mut eligible = Vec::new();
        let mut valued = variants
            .iter()
            .map(|v| {
                let (e, audience) = selector.alone(v, scored)?;
                let valued = value(v, &e, &audience, truth);
                if eligible.is_empty() {
                    eligible = e;
                }
                Ok(valued)
            })
            .collect::<Result<Vec<_>>>()?;
        let per_user = valued.remove(0);
        let mut oracles: Vec<Valued> = variants
            .iter()
            .map(|v| oracle(v, &eligible, per_user.messaged, truth))
            .collect();
        let oracle = oracles.remove(0);
        let oracle_best = oracles
            .iter()
            .map(|v| v.true_profit)
            .fold(f64::NEG_INFINITY, f64::max);
        let oracle_gain = oracle.true_profit / oracle_best - 1.0;
        let best = valued
            .iter()
            .max_by(|a, b| a.true_profit.total_cmp(&b.true_profit))
            .cloned()
            .unwrap_or_else(|| per_user.clone());
        let gain = per_user.true_profit / best.true_profit - 1.0;
        info!(
            campaign = %c.id,
            true_profit = per_user.true_profit,
            best_single_level = best.levels.first().copied().unwrap_or_default(),
            best_single_profit = best.true_profit,
            gain,
            oracle_gain,
            "discount levels against the truth"
        );
        out.push(LevelsAgainstTruth {
            campaign_id: c.id.clone(),
            best_single_level: best.levels.first().copied().unwrap_or_default(),
            gain_over_best_single: gain,
            per_user,
            single: valued,
            oracle,
            oracle_single: oracles,
            oracle_gain_over_best_single: oracle_gain,
        });
    }
    Ok(out)
}

//! Who gets which campaign tonight.
//!
//! [`select_night`] builds the audiences of every campaign due on a date in three steps:
//!
//! 1. **rank** each campaign on its own: the filters that always apply whatever a config says
//!    (consent, suppressions, the global control group, the frequency cap and, for an offer with
//!    a discount, the discount cooldown — both read from the assignment history), then the
//!    campaign's eligibility rules, then the kind's own filter and ranking;
//! 2. **arbitrate**: a user gets at most one campaign a night. By priority, campaigns pick in
//!    priority order; by expected value, every (campaign, user) pair is taken in order of the
//!    user's expected incremental profit from it. Either way a campaign stops at its maximum
//!    audience and, for an offer with a budget, when the expected discount cost would pass
//!    it;
//! 3. **split**: each selected user's holdout arm comes from the campaign's salted hash.
//!
//! Every step's survivors are counted into the funnel, so a preview can say where users went.
//!
//! Ranking looks at one user at a time, so the users can be split into parts (shards) that are
//! ranked apart: [`rank`] gives each part's [`Ranking`], [`Ranking::merge`] joins the parts'
//! rankings into the ranking of all users — the same whatever the split — and [`arbitrate`]
//! then runs steps 2 and 3 over them.
//!
//! Arbitration never goes far down a ranking: a campaign stops at its maximum audience, and
//! the others can take only so many of its users first. [`Ranking::cut`] drops the candidates
//! it cannot reach ([`Reach`]), in each part and again after each merge, so that what is kept
//! of millions of users is their ids (for the funnel and the overlaps), not their scores.

mod levels;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use polars::prelude::*;

use crate::campaign::{Campaign, CampaignKind, MAX_DISCOUNT_LEVELS};
use crate::holdout::{arm, in_global_control, Arm};
use crate::items::WANTED_ITEM_COLUMN;
use crate::rules::Catalog;
use crate::{Result, SegmentError};
use levels::best_level;
pub use levels::{choose_levels, discount_uplift_column, offer_value, OfferOption};

/// Settings that hold for every campaign.
#[derive(Debug, Clone)]
pub struct SelectionContext {
    /// Share of all users no campaign ever reaches (the global control group).
    pub global_control_share: f64,
    /// Salt of the global control hash; fixed for the life of a deployment.
    pub global_control_salt: String,
    /// The names eligibility rules use, with the categorical levels of the scoring model.
    pub catalog: Catalog,
    /// The run date as days since 1970-01-01: dates in rules and history windows are relative
    /// to it.
    pub run_day: i64,
    pub limits: Limits,
}

impl SelectionContext {
    /// Whether a user belongs to the global control group.
    pub fn in_global_control(&self, user_id: i64) -> bool {
        in_global_control(
            &self.global_control_salt,
            self.global_control_share,
            user_id,
        )
    }
}

/// Limits across campaigns, from the settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// At most this many messages per user in any window of `cap_days` days, tonight's
    /// included (0: no cap).
    pub max_messages: usize,
    pub cap_days: i64,
    /// No discount to a user who got one in the last this many days (0: no cooldown), so users
    /// are not trained to wait for deals.
    pub discount_cooldown_days: i64,
    pub arbitration: Arbitration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_messages: 0,
            cap_days: 7,
            discount_cooldown_days: 0,
            arbitration: Arbitration::Priority,
        }
    }
}

/// How a user wanted by several campaigns on the same night is given to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arbitration {
    /// The campaign with the higher `priority` (then the smaller id) wins.
    #[default]
    Priority,
    /// The campaign with the higher expected incremental profit for that user wins.
    ExpectedValue,
}

/// One assignment a user got before tonight (either arm of a succeeded run: a holdout member
/// counts as if messaged, so that caps and cooldowns treat both arms alike and keep them
/// comparable).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PastMessage {
    /// Run date, as days since 1970-01-01.
    pub day: i64,
    /// Whether it carried a discount.
    pub discounted: bool,
}

/// The assignment history the cap and the cooldown read, by user.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub by_user: HashMap<i64, Vec<PastMessage>>,
}

impl History {
    /// Messages of `user` in the `days` days before `run_day` (tonight excluded: a re-run of
    /// the same night must not count its own earlier run).
    fn recent(&self, user: i64, run_day: i64, days: i64) -> impl Iterator<Item = &PastMessage> {
        self.by_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter(move |m| m.day < run_day && m.day > run_day - days)
    }
}

/// Users left after one selection step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FunnelStep {
    /// The filter: an always-on step, an eligibility rule as written, or the kind's filter.
    pub step: String,
    pub users: usize,
}

/// One selected user.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub user_id: i64,
    /// 1-based position in the campaign's ranking (holdout members included).
    pub rank: usize,
    pub arm: Arm,
    /// The value the campaign ranked by.
    pub score: f64,
    pub uplift: f64,
    pub p_control: f64,
    /// Expected incremental profit, as a share of the list price of a purchase: see
    /// [`Candidate::value`].
    pub expected_value: f64,
    /// Expected discount given, as a share of the list price (0 without a discount).
    pub discount_cost: f64,
    /// The discount offered, in percent: the offer's one discount, or the level chosen for this
    /// user (0 without a discount).
    pub discount_pct: f64,
    /// For a campaign with `[items]`, the item put in front of this user.
    pub item_id: Option<i64>,
    /// For a gift campaign, the friend suggested as the gift's recipient.
    pub recipient_user_id: Option<i64>,
    /// Chosen at random among the eligible users the model did not pick (the campaign's
    /// `explore` share), not by the model; its arm is the exploration's own holdout.
    pub explore: bool,
}

/// A campaign's audience: selected users in rank order, and how many survived each step.
#[derive(Debug, Clone)]
pub struct Audience {
    pub campaign_id: String,
    pub funnel: Vec<FunnelStep>,
    pub members: Vec<Member>,
    /// For each other campaign of the night: how many of this campaign's eligible users it
    /// wanted too (before arbitration).
    pub overlap: Vec<(String, usize)>,
}

impl Audience {
    /// Users who passed every filter of the campaign itself, before arbitration and the cap.
    pub fn eligible(&self) -> usize {
        self.funnel
            .iter()
            .rev()
            .find(|s| !s.step.starts_with(ARBITRATION_STEP))
            .map_or(0, |s| s.users)
    }

    /// Members of an arm, the explored ones included: messaged (treatment) or held out.
    pub fn count(&self, arm: Arm) -> usize {
        self.members.iter().filter(|m| m.arm == arm).count()
    }

    /// Explored members of an arm (see [`Member::explore`]).
    pub fn explored(&self, arm: Arm) -> usize {
        self.members
            .iter()
            .filter(|m| m.explore && m.arm == arm)
            .count()
    }

    /// Expected incremental purchases from the model's treatment members (the sum of their
    /// uplift): the forecast of the model's choice, exploration aside.
    pub fn expected_conversions(&self) -> f64 {
        self.members
            .iter()
            .filter(|m| m.arm == Arm::Treatment && !m.explore)
            .map(|m| m.uplift)
            .sum()
    }

    /// Expected discount given to the model's treatment members, as a number of list prices.
    pub fn expected_discount_cost(&self) -> f64 {
        self.members
            .iter()
            .filter(|m| m.arm == Arm::Treatment && !m.explore)
            .map(|m| m.discount_cost)
            .sum()
    }

    /// How many of the model's treatment members were offered each discount, ascending by the
    /// discount in percent.
    pub fn discount_mix(&self) -> Vec<(f64, usize)> {
        discount_mix(
            self.members
                .iter()
                .filter(|m| m.arm == Arm::Treatment && !m.explore)
                .map(|m| m.discount_pct),
        )
    }
}

impl Audience {
    /// How many of the model's treatment members were shown each item (a campaign with
    /// `[items]`), the most shown first (ties by id).
    pub fn item_mix(&self) -> Vec<(i64, usize)> {
        let mut counts: HashMap<i64, usize> = HashMap::new();
        for m in &self.members {
            if let (Arm::Treatment, false, Some(item)) = (m.arm, m.explore, m.item_id) {
                *counts.entry(item).or_default() += 1;
            }
        }
        let mut mix: Vec<(i64, usize)> = counts.into_iter().collect();
        mix.sort_unstable_by_key(|&(item, n)| (std::cmp::Reverse(n), item));
        mix
    }
}

/// How many of `discounts` (percent) are each discount, ascending by the discount.
pub fn discount_mix(discounts: impl IntoIterator<Item = f64>) -> Vec<(f64, usize)> {
    let mut mix: Vec<(f64, usize)> = Vec::new();
    for d in discounts {
        match mix.iter_mut().find(|(pct, _)| *pct == d) {
            Some((_, n)) => *n += 1,
            None => mix.push((d, 1)),
        }
    }
    mix.sort_by(|a, b| a.0.total_cmp(&b.0));
    mix
}

/// Funnel step after arbitration.
const ARBITRATION_STEP: &str = "not taken by another campaign tonight";

fn floats(frame: &DataFrame, name: &str) -> Result<Vec<f64>> {
    Ok(frame
        .column(name)?
        .cast(&DataType::Float64)?
        .f64()?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

/// An id column, `None` where a user has no id.
fn ids(frame: &DataFrame, name: &str) -> Result<Vec<Option<i64>>> {
    Ok(frame
        .column(name)?
        .cast(&DataType::Int64)?
        .i64()?
        .iter()
        .collect())
}

/// A user a campaign wants, before arbitration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub user_id: i64,
    /// The kind's ranking key (affinity, uplift or expected profit).
    pub key: f64,
    pub uplift: f64,
    pub p_control: f64,
    /// Expected incremental profit per list price: effect × (margin − d) − p_control × d, with
    /// d the discount share and effect the discount uplift for an offer with a discount, the
    /// conversion uplift otherwise. Users who would buy anyway cost the discount.
    pub value: f64,
    /// Expected discount given per list price: (p_control + effect⁺) × d.
    pub discount_cost: f64,
    /// The discount offered, in percent: the offer's one, or the level chosen for this user.
    pub discount_pct: f64,
    /// For an offer with discount levels, the discount uplift of each level, in the offer's
    /// order (NaN past its levels): arbitration chooses the level (see `levels.rs`).
    pub effects: [f64; MAX_DISCOUNT_LEVELS],
    /// For a campaign with `[items]`, the item of its list this user most likely wants.
    pub item_id: Option<i64>,
    /// For a gift campaign, the friend most likely to receive this user's gift among those
    /// who may be named.
    pub recipient_user_id: Option<i64>,
}

impl Candidate {
    /// The campaign's order: by the kind's key, then uplift, then user id, so that equal scores
    /// order the same way on every run and however the users were split.
    fn before(&self, other: &Candidate) -> std::cmp::Ordering {
        other
            .key
            .total_cmp(&self.key)
            .then(other.uplift.total_cmp(&self.uplift))
            .then(self.user_id.cmp(&other.user_id))
    }
}

/// A campaign's eligible users and its funnel so far: of all users, or of one part of them (a
/// shard).
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    pub funnel: Vec<FunnelStep>,
    /// The eligible users in the campaign's order: all of them, or, once [cut](Ranking::cut),
    /// the first ones, as many as arbitration can reach.
    pub candidates: Vec<Candidate>,
    /// Every eligible user's id, ascending, cut or not: the funnel's arbitration step and the
    /// overlaps count them.
    pub eligible: Vec<i64>,
    /// The eligible users in the campaign's exploration sample (see [`Campaign::explores`]),
    /// by ascending id, never cut: messaged at random, whatever the model would choose (see
    /// [`reserve_exploration`]).
    pub explore: Vec<Candidate>,
}

impl Ranking {
    /// The ranking of the union of disjoint parts of the users: funnels add up step by step and
    /// the candidates interleave in the campaign's order. Refuses parts whose funnels have
    /// different steps (ranked by different campaign versions). Parts cut with the same
    /// [`Reach`] merge into a ranking that holds at least what that reach keeps.
    pub fn merge(parts: Vec<Ranking>) -> Result<Ranking> {
        let mut parts = parts.into_iter();
        let Some(mut whole) = parts.next() else {
            return Ok(Ranking {
                funnel: vec![],
                candidates: vec![],
                eligible: vec![],
                explore: vec![],
            });
        };
        for part in parts {
            let same = part.funnel.len() == whole.funnel.len()
                && part
                    .funnel
                    .iter()
                    .zip(&whole.funnel)
                    .all(|(a, b)| a.step == b.step);
            if !same {
                return Err(SegmentError::Merge(format!(
                    "funnels differ: [{}] against [{}]",
                    steps(&part.funnel),
                    steps(&whole.funnel)
                )));
            }
            for (w, p) in whole.funnel.iter_mut().zip(&part.funnel) {
                w.users += p.users;
            }
            // Both sides are sorted: a linear merge, where sorting the concatenation again
            // would cost a sort of every eligible user at each shard.
            whole.candidates = interleave(whole.candidates, part.candidates, |a, b| {
                a.before(b).is_le()
            });
            whole.eligible = interleave(whole.eligible, part.eligible, |a, b| a <= b);
            whole.explore = interleave(whole.explore, part.explore, |a, b| a.user_id <= b.user_id);
        }
        Ok(whole)
    }

    /// Drops the candidates arbitration cannot reach tonight (see [`Reach`]); what it does
    /// with the rest is unchanged.
    ///
    /// A candidate is *sure* when the campaign takes it whenever it has room: any candidate
    /// without a budget, a candidate that costs nothing under one (a holdout member). Going down
    /// its order, a campaign skips only users other campaigns took before it (at most their
    /// maximum audiences) and, under a budget, users it cannot afford; so once it has passed
    /// `places` sure candidates it is full, and nothing after them is taken.
    pub fn cut(&mut self, campaign: &Campaign, reach: &Reach) {
        // The levels, and with them the order, are chosen once all users are in (see
        // `levels.rs`): any candidate may be reached.
        if !campaign.offer.discount_levels.is_empty() {
            return;
        }
        let places = reach.places(campaign);
        if self.candidates.len() <= places {
            return;
        }
        let sure =
            |c: &Candidate| campaign.offer.budget.is_none() || discount_spend(campaign, c) <= 0.0;
        let mut passed = 0;
        // Whether the campaign is full once it has passed `c`.
        let mut full = |c: &Candidate| {
            passed += usize::from(sure(c));
            passed == places
        };
        match reach.arbitration {
            // Arbitration goes through the campaign's candidates in their order.
            Arbitration::Priority => {
                if let Some(last) = self.candidates.iter().position(full) {
                    self.candidates.truncate(last + 1);
                }
            }
            Arbitration::ExpectedValue => {
                let c = &self.candidates;
                let mut order: Vec<usize> = (0..c.len()).collect();
                order.sort_by(|&a, &b| by_value((a, &c[a]), (b, &c[b])));
                let Some(last) = order.iter().position(|&p| full(&c[p])) else {
                    return;
                };
                let mut keep = vec![false; c.len()];
                for &p in &order[..=last] {
                    keep[p] = true;
                }
                let mut keep = keep.into_iter();
                self.candidates.retain(|_| keep.next().unwrap_or(false));
            }
        }
    }
}

/// How far down each campaign's ranking tonight's arbitration can go, in sure candidates (see
/// [`Ranking::cut`]): its own maximum audience plus those of the campaigns that pick before
/// it — by priority, the campaigns of higher priority (then smaller id); by expected value,
/// all the others, since their users may be worth more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    arbitration: Arbitration,
    /// (campaign id, priority, maximum audience) of every campaign of the night.
    night: Vec<(String, i32, usize)>,
}

impl Reach {
    /// The reach of a night of `campaigns` arbitrated by `arbitration`. Campaigns that end up
    /// not arbitrated (a ranking that failed) only make it longer, which stays exact.
    pub fn of<'a>(
        campaigns: impl IntoIterator<Item = &'a Campaign>,
        arbitration: Arbitration,
    ) -> Reach {
        Reach {
            arbitration,
            night: campaigns
                .into_iter()
                .map(|c| (c.id.clone(), c.priority, c.max_audience))
                .collect(),
        }
    }

    /// How many sure candidates of `campaign` arbitration may pass.
    pub fn places(&self, campaign: &Campaign) -> usize {
        let first = |(id, priority, _): &&(String, i32, usize)| match self.arbitration {
            Arbitration::Priority => {
                by_priority((*priority, id), (campaign.priority, &campaign.id)).is_lt()
            }
            Arbitration::ExpectedValue => true,
        };
        self.night
            .iter()
            .filter(|c| c.0 != campaign.id)
            .filter(first)
            .fold(campaign.max_audience, |n, c| n.saturating_add(c.2))
    }
}

/// Two sorted lists as one sorted list; `first(a, b)`: whether `a` goes before `b`.
fn interleave<T>(a: Vec<T>, b: Vec<T>, first: impl Fn(&T, &T) -> bool) -> Vec<T> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
        let next = if first(x, y) { a.next() } else { b.next() };
        out.extend(next);
    }
    out.extend(a);
    out.extend(b);
    out
}

/// The order in which campaigns pick by priority, given their (priority, id): the higher
/// priority first, then the smaller id.
fn by_priority(a: (i32, &str), b: (i32, &str)) -> std::cmp::Ordering {
    b.0.cmp(&a.0).then(a.1.cmp(b.1))
}

/// The order in which arbitration by expected value goes through one campaign's candidates,
/// given with their positions in its ranking: by value, then in the campaign's order.
fn by_value(a: (usize, &Candidate), b: (usize, &Candidate)) -> std::cmp::Ordering {
    b.1.value.total_cmp(&a.1.value).then(a.0.cmp(&b.0))
}

/// Expected discount cost of `c` to `campaign` in currency units: 0 for a holdout member, who
/// is not messaged.
fn discount_spend(campaign: &Campaign, c: &Candidate) -> f64 {
    match arm(&campaign.salt, campaign.holdout, c.user_id) {
        Arm::Treatment => c.discount_cost * campaign.offer.average_price,
        Arm::Holdout => 0.0,
    }
}

fn steps(funnel: &[FunnelStep]) -> String {
    funnel
        .iter()
        .map(|s| s.step.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns selection reads from the frame of scored users, besides those the rules name:
/// `marketing_opt_in` and `suppressed` are 0/1, `user_id` an integer, the rest numbers.
pub const SCORED_COLUMNS: [&str; 9] = [
    "user_id",
    "uplift",
    "p_control",
    "discount_uplift",
    "discount_sensitivity",
    "marketing_opt_in",
    "suppressed",
    "orders_total",
    "discount_share_orders_365d",
];

/// The column of the scored users' frame a gift campaign reads: the friend each user would
/// most likely send a gift to, among those who may be named (null: none).
pub const RECIPIENT_COLUMN: &str = "gift_recipient";

/// What a campaign's `score` (its ranking key, see [`rank`]) means, for the people and CRMs that
/// read it: it differs by kind.
pub fn score_meaning(campaign: &Campaign) -> &'static str {
    match campaign.kind {
        CampaignKind::Drop { .. } => {
            "affinity to the dropped item: 3 for owning its game, 2 for wishlisting it, 1 for \
             owning an item of its publisher, 1 for a friend owning its game (0 to 7)"
        }
        CampaignKind::WeeklyDeal { .. } if campaign.offer.budget.is_some() => {
            "expected incremental profit per unit of expected discount given (a ratio: the \
             users the budget buys most with come first)"
        }
        CampaignKind::WeeklyDeal { .. } => {
            "expected incremental profit, as a share of the list price of a purchase: \
             uplift x (margin - discount) - P(buy anyway) x discount"
        }
        CampaignKind::NewBuyer | CampaignKind::Seasonal { .. } | CampaignKind::Gift => {
            "predicted uplift: the purchase probability (0 to 1) the message adds"
        }
    }
}

/// Applies the always-on filters, the rules and the kind's filter to the users of `frame`, and
/// ranks the survivors.
///
/// `frame` holds one row per user with the [`SCORED_COLUMNS`] and the catalogue's columns; a
/// drop also needs `affinity`. It may hold all users or one part of them: see
/// [`Ranking::merge`].
pub fn rank(
    campaign: &Campaign,
    frame: &DataFrame,
    ctx: &SelectionContext,
    history: &History,
) -> Result<Ranking> {
    let user: Vec<i64> = frame
        .column("user_id")?
        .i64()?
        .iter()
        .map(|v| v.unwrap_or_default())
        .collect();
    let uplift = floats(frame, "uplift")?;
    let p_control = floats(frame, "p_control")?;
    let discount_uplift = floats(frame, "discount_uplift")?;
    let sensitivity = floats(frame, "discount_sensitivity")?;
    let opt_in = floats(frame, "marketing_opt_in")?;
    let suppressed = floats(frame, "suppressed")?;
    let orders = floats(frame, "orders_total")?;
    let discount_share = floats(frame, "discount_share_orders_365d")?;

    let offer = &campaign.offer;
    // Each level's effect, for an offer with levels; otherwise the one discount's.
    let level_effects: Vec<Vec<f64>> = offer
        .discount_levels
        .iter()
        .map(|&level| {
            floats(frame, &discount_uplift_column(level)).map_err(|_| SegmentError::Selection {
                campaign: campaign.id.clone(),
                why: format!(
                    "the discount model knows no {level}% level: retrain it on past deals that \
                     offered it, or leave it out of offer.discount_levels"
                ),
            })
        })
        .collect::<Result<_>>()?;
    let single = if offer.discount_pct > 0.0 {
        &discount_uplift
    } else {
        &uplift
    };
    let mut effects = vec![[f64::NAN; MAX_DISCOUNT_LEVELS]; user.len()];
    let (mut value, mut cost, mut discount) = (
        vec![0.0; user.len()],
        vec![0.0; user.len()],
        vec![offer.discount_pct; user.len()],
    );
    for i in 0..user.len() {
        if level_effects.is_empty() {
            let option = offer_value(offer, single[i], p_control[i], offer.discount_pct);
            (value[i], cost[i]) = (option.value, option.cost);
            continue;
        }
        for (k, e) in level_effects.iter().enumerate() {
            effects[i][k] = e[i];
        }
        // Until arbitration prices the budget, the level with the most profit.
        let best = best_level(offer, &effects[i], p_control[i], 0.0);
        (value[i], cost[i], discount[i]) = (best.value, best.cost, best.pct);
    }

    let mut keep: Vec<usize> = (0..user.len()).collect();
    let d = offer.discounted();
    let mut funnel = vec![FunnelStep {
        step: "users".into(),
        users: keep.len(),
    }];
    let mut step = |keep: &mut Vec<usize>, name: &str, pass: &dyn Fn(usize) -> bool| {
        keep.retain(|&i| pass(i));
        funnel.push(FunnelStep {
            step: name.to_string(),
            users: keep.len(),
        });
    };

    // Always on, whatever the campaign says.
    step(&mut keep, "consented", &|i| opt_in[i] == 1.0);
    step(&mut keep, "not suppressed", &|i| suppressed[i] == 0.0);
    step(&mut keep, "outside global control", &|i| {
        !ctx.in_global_control(user[i])
    });
    let l = ctx.limits;
    if l.max_messages > 0 {
        // Tonight's message would be one more.
        step(&mut keep, "under frequency cap", &|i| {
            history.recent(user[i], ctx.run_day, l.cap_days).count() < l.max_messages
        });
    }
    if d && l.discount_cooldown_days > 0 {
        step(&mut keep, "outside discount cooldown", &|i| {
            !history
                .recent(user[i], ctx.run_day, l.discount_cooldown_days)
                .any(|m| m.discounted)
        });
    }

    // The campaign's eligibility rules, one funnel step each. A rule that is null for a user
    // (a missing value) does not make the user eligible.
    for rule in &campaign.eligibility {
        let mask = frame
            .clone()
            .lazy()
            .select([rule
                .to_expr(&ctx.catalog, ctx.run_day)
                .fill_null(lit(false))
                .alias("eligible")])
            .collect()?;
        let pass: Vec<bool> = mask
            .column("eligible")?
            .bool()?
            .iter()
            .map(|v| v.unwrap_or(false))
            .collect();
        // A rule without names (`true`) is one value for everyone.
        step(&mut keep, &rule.text, &|i| {
            pass.get(i).or(pass.first()).copied().unwrap_or(false)
        });
    }

    // A campaign about items reaches only users with one of them to want.
    let wanted: Vec<Option<i64>> = match campaign.items {
        None => Vec::new(),
        Some(_) => {
            let wanted = ids(frame, WANTED_ITEM_COLUMN).map_err(|_| SegmentError::Selection {
                campaign: campaign.id.clone(),
                why: "a campaign with [items] needs the item each user wants".into(),
            })?;
            // A gift's item is its recipient's (the column is null without one).
            let step_name = match campaign.kind {
                CampaignKind::Gift => "has a friend who does not own every item of the campaign",
                _ => "does not own every item of the campaign",
            };
            step(&mut keep, step_name, &|i| wanted[i].is_some());
            wanted
        }
    };

    let affinity;
    let mut recipient: Vec<Option<i64>> = Vec::new();
    let key: &[f64] = match &campaign.kind {
        CampaignKind::Drop { .. } => {
            affinity = floats(frame, "affinity").map_err(|_| SegmentError::Selection {
                campaign: campaign.id.clone(),
                why: "a drop needs the affinity of each user to the dropped item".into(),
            })?;
            step(&mut keep, "affinity to the drop", &|i| affinity[i] > 0.0);
            &affinity
        }
        CampaignKind::WeeklyDeal {
            max_discount_share,
            max_sensitivity,
        } => {
            // Missing share = no orders last year: not a deal hunter.
            step(&mut keep, "not deal-conditioned", &|i| {
                discount_share[i].is_nan() || discount_share[i] <= *max_discount_share
            });
            step(&mut keep, "discount sensitivity under threshold", &|i| {
                sensitivity[i] <= *max_sensitivity
            });
            step(&mut keep, "positive expected profit", &|i| value[i] > 0.0);
            // Under a budget the best value for the money comes first.
            affinity = if campaign.offer.budget.is_some() {
                (0..user.len())
                    .map(|i| value[i] / cost[i].max(1e-12))
                    .collect()
            } else {
                value.clone()
            };
            &affinity
        }
        CampaignKind::NewBuyer => {
            step(&mut keep, "no purchase yet", &|i| orders[i] == 0.0);
            &uplift
        }
        CampaignKind::Seasonal { min_uplift } => {
            step(&mut keep, "uplift above floor", &|i| {
                uplift[i] >= *min_uplift
            });
            &uplift
        }
        CampaignKind::Gift => {
            recipient = ids(frame, RECIPIENT_COLUMN).map_err(|_| SegmentError::Selection {
                campaign: campaign.id.clone(),
                why: "a gift campaign needs the friend each user would send a gift to".into(),
            })?;
            step(&mut keep, "has a friend who may receive a gift", &|i| {
                recipient[i].is_some()
            });
            &uplift
        }
    };

    let mut candidates: Vec<Candidate> = keep
        .iter()
        .map(|&i| Candidate {
            user_id: user[i],
            key: key[i],
            uplift: uplift[i],
            p_control: p_control[i],
            value: value[i],
            discount_cost: cost[i],
            discount_pct: discount[i],
            effects: effects[i],
            item_id: wanted.get(i).copied().flatten(),
            recipient_user_id: recipient.get(i).copied().flatten(),
        })
        .collect();
    candidates.sort_by(Candidate::before);
    let mut eligible: Vec<i64> = candidates.iter().map(|c| c.user_id).collect();
    eligible.sort_unstable();
    let mut explore: Vec<Candidate> = if campaign.explore > 0.0 {
        let salt = campaign.explore_salt();
        candidates
            .iter()
            .filter(|c| campaign.explores(&salt, c.user_id))
            .copied()
            .collect()
    } else {
        vec![]
    };
    explore.sort_unstable_by_key(|c| c.user_id);
    Ok(Ranking {
        funnel,
        candidates,
        eligible,
        explore,
    })
}

/// A campaign filling up during arbitration.
struct Filling<'a> {
    campaign: &'a Campaign,
    /// The members so far, each with its position in the campaign's ranking.
    taken: Vec<(usize, Candidate)>,
    /// Expected discount cost of the treatment members so far, in currency units.
    spent: f64,
}

impl Filling<'_> {
    fn cost(&self, c: &Candidate) -> f64 {
        discount_spend(self.campaign, c)
    }

    /// Whether the campaign can still take `c`: room under `max_audience` and under the
    /// offer's budget, if it has one.
    fn accepts(&self, c: &Candidate) -> bool {
        self.taken.len() < self.campaign.max_audience
            && self
                .campaign
                .offer
                .budget
                .is_none_or(|budget| self.spent + self.cost(c) <= budget)
    }

    fn take(&mut self, position: usize, c: Candidate) {
        self.spent += self.cost(&c);
        self.taken.push((position, c));
    }
}

/// Takes the users of every campaign's exploration sample out of every campaign's candidates
/// (all rankings of one set of users: a shard, or all of them). Arbitration gives those users
/// to the explorations before any model chooses, so no campaign can take them; dropping them
/// before [`Ranking::cut`] keeps its count of the places left exact.
pub fn reserve_exploration<'a>(rankings: impl IntoIterator<Item = &'a mut Ranking>) {
    let mut rankings: Vec<&mut Ranking> = rankings.into_iter().collect();
    let reserved: HashSet<i64> = rankings
        .iter()
        .flat_map(|r| r.explore.iter().map(|c| c.user_id))
        .collect();
    if reserved.is_empty() {
        return;
    }
    for r in &mut rankings {
        r.candidates.retain(|c| !reserved.contains(&c.user_id));
    }
}

/// Builds the audiences of the night's campaigns, each from its own frame of scored users
/// (see [`rank`] for the columns), with arbitration, caps and budgets across them. The
/// audiences come back in the order of `campaigns`.
pub fn select_night(
    campaigns: &[(&Campaign, &DataFrame)],
    ctx: &SelectionContext,
    history: &History,
) -> Result<Vec<Audience>> {
    let mut ranked = campaigns
        .iter()
        .map(|(c, frame)| Ok((*c, rank(c, frame, ctx, history)?)))
        .collect::<Result<Vec<_>>>()?;
    reserve_exploration(ranked.iter_mut().map(|(_, r)| r));
    Ok(arbitrate(ranked, ctx))
}

/// Builds the audiences of the night's campaigns from their rankings of all users (see
/// [`rank`] and [`Ranking::merge`]): arbitration, maximum audiences and budgets across them,
/// then each member's arm. The audiences come back in the order of `ranked`.
pub fn arbitrate(ranked: Vec<(&Campaign, Ranking)>, ctx: &SelectionContext) -> Vec<Audience> {
    let (campaigns, mut ranked): (Vec<&Campaign>, Vec<Ranking>) = ranked.into_iter().unzip();
    let mut filling: Vec<Filling> = campaigns
        .iter()
        .map(|c| Filling {
            campaign: c,
            taken: Vec::new(),
            spent: 0.0,
        })
        .collect();
    let mut claimed: HashSet<i64> = HashSet::new();
    let picks_first = |a: usize, b: usize| {
        let (ca, cb) = (campaigns[a], campaigns[b]);
        by_priority((ca.priority, &ca.id), (cb.priority, &cb.id))
    };
    // Each campaign's exploration sample first, in the order campaigns pick (a user in two
    // samples goes to the first): drawn before any model chooses, so that the random choice is
    // random among all the campaign's eligible users, and no model's choice can empty it.
    let mut pick_order: Vec<usize> = (0..campaigns.len()).collect();
    pick_order.sort_by(|&a, &b| picks_first(a, b));
    let mut explored: Vec<Vec<Candidate>> = vec![vec![]; campaigns.len()];
    for &k in &pick_order {
        for c in &ranked[k].explore {
            if claimed.insert(c.user_id) {
                explored[k].push(*c);
            }
        }
    }
    let has_levels = |k: usize| !campaigns[k].offer.discount_levels.is_empty();
    match ctx.limits.arbitration {
        // Campaigns pick one after another: a campaign with discount levels prices its budget
        // on the users the campaigns before it left, so that what they took does not leave
        // its budget unspent.
        Arbitration::Priority => {
            for &k in &pick_order {
                if has_levels(k) {
                    ranked[k]
                        .candidates
                        .retain(|c| !claimed.contains(&c.user_id));
                    choose_levels(campaigns[k], &mut ranked[k].candidates);
                }
                for (p, &c) in ranked[k].candidates.iter().enumerate() {
                    if claimed.contains(&c.user_id) || !filling[k].accepts(&c) {
                        continue;
                    }
                    claimed.insert(c.user_id);
                    filling[k].take(p, c);
                }
            }
        }
        // Users go where they are worth the most, which needs every candidate's value at
        // once: levels are priced on all of a campaign's candidates first.
        Arbitration::ExpectedValue => {
            for k in (0..campaigns.len()).filter(|&k| has_levels(k)) {
                choose_levels(campaigns[k], &mut ranked[k].candidates);
            }
            // (campaign index, position in its ranking) in the order users are given.
            let mut order: Vec<(usize, usize)> = ranked
                .iter()
                .enumerate()
                .flat_map(|(k, r)| (0..r.candidates.len()).map(move |p| (k, p)))
                .collect();
            order.sort_by(|&(a, pa), &(b, pb)| {
                let (ca, cb) = (&ranked[a].candidates[pa], &ranked[b].candidates[pb]);
                cb.value
                    .total_cmp(&ca.value)
                    .then(picks_first(a, b))
                    .then(by_value((pa, ca), (pb, cb)))
            });
            for (k, p) in order {
                let c = ranked[k].candidates[p];
                if claimed.contains(&c.user_id) || !filling[k].accepts(&c) {
                    continue;
                }
                claimed.insert(c.user_id);
                filling[k].take(p, c);
            }
        }
    }
    // Overlaps are counted by merging two sorted lists, which at millions of users takes a
    // fraction of the memory of hash sets.
    let overlap = |k: usize| -> Vec<(String, usize)> {
        (0..campaigns.len())
            .filter(|&j| j != k)
            .map(|j| {
                let n = common(&ranked[k].eligible, &ranked[j].eligible);
                (campaigns[j].id.clone(), n)
            })
            .collect()
    };
    let overlaps: Vec<Vec<(String, usize)>> = (0..campaigns.len()).map(overlap).collect();
    ranked
        .into_iter()
        .zip(filling)
        .zip(overlaps)
        .zip(explored)
        .map(|(((r, f), overlap), explored)| {
            let mut funnel = r.funnel;
            let mine: HashSet<i64> = f
                .taken
                .iter()
                .map(|(_, c)| c.user_id)
                .chain(explored.iter().map(|c| c.user_id))
                .collect();
            // Eligible users that another campaign took tonight.
            let lost = r
                .eligible
                .iter()
                .filter(|u| claimed.contains(u) && !mine.contains(u))
                .count();
            funnel.push(FunnelStep {
                step: ARBITRATION_STEP.into(),
                users: r.eligible.len() - lost,
            });
            // Members keep their campaign's own order; the explored ones follow, by id.
            let mut taken = f.taken;
            taken.sort_unstable_by_key(|&(position, _)| position);
            let campaign = f.campaign;
            let chosen = taken.iter().map(|(_, c)| {
                let arm = arm(&campaign.salt, campaign.holdout, c.user_id);
                (c, arm, false)
            });
            let salt = campaign.explore_holdout_salt();
            let explored = explored
                .iter()
                .map(|c| (c, arm(&salt, campaign.holdout, c.user_id), true));
            Audience {
                campaign_id: campaign.id.clone(),
                funnel,
                members: chosen
                    .chain(explored)
                    .enumerate()
                    .map(|(pos, (c, arm, explore))| Member {
                        user_id: c.user_id,
                        rank: pos + 1,
                        arm,
                        score: c.key,
                        uplift: c.uplift,
                        p_control: c.p_control,
                        expected_value: c.value,
                        discount_cost: c.discount_cost,
                        discount_pct: c.discount_pct,
                        item_id: c.item_id,
                        recipient_user_id: c.recipient_user_id,
                        explore,
                    })
                    .collect(),
                overlap,
            }
        })
        .collect()
}

/// How many values two sorted lists of distinct values share.
fn common(a: &[i64], b: &[i64]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Builds one campaign's audience on its own (no other campaign tonight, no history).
pub fn select(campaign: &Campaign, frame: &DataFrame, ctx: &SelectionContext) -> Result<Audience> {
    let mut audiences = select_night(&[(campaign, frame)], ctx, &History::default())?;
    Ok(audiences.remove(0))
}

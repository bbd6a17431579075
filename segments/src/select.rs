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

use std::collections::{HashMap, HashSet};

use polars::prelude::*;

use crate::campaign::{Campaign, CampaignKind};
use crate::holdout::{arm, bucket, Arm};
use crate::rules::Catalog;
use crate::{Result, SegmentError};

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
        bucket(&self.global_control_salt, user_id) < self.global_control_share
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arbitration {
    /// The campaign with the higher `priority` (then the smaller id) wins.
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

    pub fn count(&self, arm: Arm) -> usize {
        self.members.iter().filter(|m| m.arm == arm).count()
    }

    /// Expected incremental purchases from the treatment members (the sum of their uplift).
    pub fn expected_conversions(&self) -> f64 {
        self.members
            .iter()
            .filter(|m| m.arm == Arm::Treatment)
            .map(|m| m.uplift)
            .sum()
    }

    /// Expected discount given to the treatment members, as a number of list prices.
    pub fn expected_discount_cost(&self) -> f64 {
        self.members
            .iter()
            .filter(|m| m.arm == Arm::Treatment)
            .map(|m| m.discount_cost)
            .sum()
    }
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

/// A user a campaign wants, before arbitration.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    user_id: i64,
    /// The kind's ranking key (affinity, uplift or expected profit).
    key: f64,
    uplift: f64,
    p_control: f64,
    /// Expected incremental profit per list price: effect × (margin − d) − p_control × d, with
    /// d the discount share and effect the discount uplift for an offer with a discount, the
    /// conversion uplift otherwise. Users who would buy anyway cost the discount.
    value: f64,
    /// Expected discount given per list price: (p_control + effect⁺) × d.
    discount_cost: f64,
}

/// A campaign's eligible users in rank order, and its funnel so far.
struct Ranked {
    funnel: Vec<FunnelStep>,
    candidates: Vec<Candidate>,
}

/// Applies the always-on filters, the rules and the kind's filter, and ranks the survivors.
///
/// `frame` holds one row per user with `user_id`, `uplift`, `p_control`, `discount_uplift`,
/// `discount_sensitivity`, `marketing_opt_in` (0/1), `suppressed` (0/1), `orders_total`,
/// `discount_share_orders_365d` and the catalogue's columns; a drop also needs `affinity`.
fn rank(
    campaign: &Campaign,
    frame: &DataFrame,
    ctx: &SelectionContext,
    history: &History,
) -> Result<Ranked> {
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

    let d = campaign.offer.discount_pct / 100.0;
    let effect = if d > 0.0 { &discount_uplift } else { &uplift };
    let margin = campaign.offer.margin;
    let value: Vec<f64> = (0..user.len())
        .map(|i| effect[i] * (margin - d) - p_control[i] * d)
        .collect();
    let cost: Vec<f64> = (0..user.len())
        .map(|i| (p_control[i] + effect[i].max(0.0)) * d)
        .collect();

    let mut keep: Vec<usize> = (0..user.len()).collect();
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
    if d > 0.0 && l.discount_cooldown_days > 0 {
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

    let affinity;
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
    };

    // Rank by the kind's key, then uplift, then user id, so equal scores order the same way on
    // every run.
    keep.sort_by(|&a, &b| {
        key[b]
            .total_cmp(&key[a])
            .then(uplift[b].total_cmp(&uplift[a]))
            .then(user[a].cmp(&user[b]))
    });
    let candidates = keep
        .iter()
        .map(|&i| Candidate {
            user_id: user[i],
            key: key[i],
            uplift: uplift[i],
            p_control: p_control[i],
            value: value[i],
            discount_cost: cost[i],
        })
        .collect();
    Ok(Ranked { funnel, candidates })
}

/// A campaign filling up during arbitration.
struct Filling<'a> {
    campaign: &'a Campaign,
    taken: Vec<Candidate>,
    /// Expected discount cost of the treatment members so far, in currency units.
    spent: f64,
}

impl Filling<'_> {
    /// Expected discount cost of `c` in currency units: 0 for a holdout member, who is not
    /// messaged.
    fn cost(&self, c: &Candidate) -> f64 {
        let o = &self.campaign.offer;
        match arm(&self.campaign.salt, self.campaign.holdout, c.user_id) {
            Arm::Treatment => c.discount_cost * o.average_price,
            Arm::Holdout => 0.0,
        }
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

    fn take(&mut self, c: Candidate) {
        self.spent += self.cost(&c);
        self.taken.push(c);
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
    let ranked: Vec<Ranked> = campaigns
        .iter()
        .map(|(c, frame)| rank(c, frame, ctx, history))
        .collect::<Result<_>>()?;
    let mut filling: Vec<Filling> = campaigns
        .iter()
        .map(|(c, _)| Filling {
            campaign: c,
            taken: Vec::new(),
            spent: 0.0,
        })
        .collect();
    let mut claimed: HashSet<i64> = HashSet::new();
    // (campaign index, position in its ranking) in the order campaigns get to pick.
    let mut order: Vec<(usize, usize)> = ranked
        .iter()
        .enumerate()
        .flat_map(|(k, r)| (0..r.candidates.len()).map(move |p| (k, p)))
        .collect();
    let by_priority = |a: usize, b: usize| {
        let (ca, cb) = (campaigns[a].0, campaigns[b].0);
        cb.priority.cmp(&ca.priority).then(ca.id.cmp(&cb.id))
    };
    match ctx.limits.arbitration {
        Arbitration::Priority => {
            order.sort_by(|&(a, pa), &(b, pb)| by_priority(a, b).then(pa.cmp(&pb)))
        }
        Arbitration::ExpectedValue => order.sort_by(|&(a, pa), &(b, pb)| {
            let (va, vb) = (
                ranked[a].candidates[pa].value,
                ranked[b].candidates[pb].value,
            );
            vb.total_cmp(&va).then(by_priority(a, b)).then(pa.cmp(&pb))
        }),
    }
    for (k, p) in order {
        let c = ranked[k].candidates[p];
        if claimed.contains(&c.user_id) || !filling[k].accepts(&c) {
            continue;
        }
        claimed.insert(c.user_id);
        filling[k].take(c);
    }
    let eligible: Vec<HashSet<i64>> = ranked
        .iter()
        .map(|r| r.candidates.iter().map(|c| c.user_id).collect())
        .collect();
    let overlap = |k: usize| -> Vec<(String, usize)> {
        (0..campaigns.len())
            .filter(|&j| j != k)
            .map(|j| {
                let (small, large) = if eligible[k].len() <= eligible[j].len() {
                    (&eligible[k], &eligible[j])
                } else {
                    (&eligible[j], &eligible[k])
                };
                (
                    campaigns[j].0.id.clone(),
                    small.iter().filter(|u| large.contains(u)).count(),
                )
            })
            .collect()
    };
    let audiences = ranked
        .into_iter()
        .zip(filling)
        .enumerate()
        .map(|(k, (r, f))| {
            let mut funnel = r.funnel;
            let mine: HashSet<i64> = f.taken.iter().map(|c| c.user_id).collect();
            // Eligible users that another campaign took tonight.
            let lost = r
                .candidates
                .iter()
                .filter(|c| claimed.contains(&c.user_id) && !mine.contains(&c.user_id))
                .count();
            funnel.push(FunnelStep {
                step: ARBITRATION_STEP.into(),
                users: r.candidates.len() - lost,
            });
            // Members keep their campaign's own order.
            let mut taken = f.taken;
            let position: HashMap<i64, usize> = r
                .candidates
                .iter()
                .enumerate()
                .map(|(i, c)| (c.user_id, i))
                .collect();
            taken.sort_by_key(|c| position[&c.user_id]);
            Audience {
                campaign_id: f.campaign.id.clone(),
                funnel,
                members: taken
                    .iter()
                    .enumerate()
                    .map(|(pos, c)| Member {
                        user_id: c.user_id,
                        rank: pos + 1,
                        arm: arm(&f.campaign.salt, f.campaign.holdout, c.user_id),
                        score: c.key,
                        uplift: c.uplift,
                        p_control: c.p_control,
                        expected_value: c.value,
                        discount_cost: c.discount_cost,
                    })
                    .collect(),
                overlap: overlap(k),
            }
        })
        .collect();
    Ok(audiences)
}

/// Builds one campaign's audience on its own (no other campaign tonight, no history).
pub fn select(campaign: &Campaign, frame: &DataFrame, ctx: &SelectionContext) -> Result<Audience> {
    let mut audiences = select_night(&[(campaign, frame)], ctx, &History::default())?;
    Ok(audiences.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::parse;
    use crate::rules::{Field, FieldKind};
    use crate::testgen::Gen;

    fn frame() -> DataFrame {
        df! {
            "user_id" => [1i64, 2, 3, 4, 5, 6],
            "uplift" => [0.05, 0.20, -0.01, 0.10, 0.30, 0.15],
            "p_control" => [0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
            "discount_uplift" => [0.40, 0.25, 0.02, 0.2, 0.3, 0.5],
            "discount_sensitivity" => [0.2, 0.3, 0.1, 0.2, 0.2, 0.9],
            "marketing_opt_in" => [1i64, 1, 1, 1, 0, 1],
            "suppressed" => [0i64, 0, 0, 1, 0, 0],
            "orders_total" => [0.0, 3.0, 0.0, 0.0, 0.0, 5.0],
            "discount_share_orders_365d" => [None, Some(0.1), None, None, None, Some(0.9)],
            "affinity" => [0.0, 2.0, 1.0, 3.0, 3.0, 1.0],
        }
        .unwrap()
    }

    fn catalog() -> Catalog {
        let field = |name: &str, kind| Field {
            name: name.into(),
            kind,
            column: name.into(),
            description: String::new(),
        };
        Catalog {
            fields: vec![
                field("orders_total", FieldKind::Number),
                field("uplift", FieldKind::Number),
            ],
        }
    }

    fn campaign_with(id: &str, kind: &str, priority: i32, extra: &str) -> Campaign {
        let text = format!(
            "format_version = 1\nid = \"{id}\"\nkind = \"{kind}\"\npriority = {priority}\n\
             holdout = 0.0\nmax_audience = 10\n{extra}"
        );
        parse("c.toml", &text, &catalog()).unwrap()
    }

    fn campaign(kind: &str, extra: &str) -> Campaign {
        campaign_with("c", kind, 0, extra)
    }

    fn ids(a: &Audience) -> Vec<i64> {
        a.members.iter().map(|m| m.user_id).collect()
    }

    const RUN_DAY: i64 = 20_000;

    fn ctx(limits: Limits) -> SelectionContext {
        SelectionContext {
            global_control_share: 0.0,
            global_control_salt: String::new(),
            catalog: catalog(),
            run_day: RUN_DAY,
            limits,
        }
    }

    fn no_control() -> SelectionContext {
        ctx(Limits::default())
    }

    // Users 4 (suppressed) and 5 (no consent) are never selected, whatever the kind.
    #[test]
    fn weekly_deal_ranks_by_expected_profit_and_drops_deal_hunters() {
        // 20% off at a 30% margin: value = discount_uplift × 0.1 − 0.1 × 0.2, so user 1:
        // 0.02, user 2: 0.005, user 3: −0.018 (out); user 6 is a deal hunter (share 0.9).
        let c = campaign("weekly_deal", "[offer]\ndiscount_pct = 20\n");
        let a = select(&c, &frame(), &no_control()).unwrap();
        assert_eq!(ids(&a), vec![1, 2]);
        assert!((a.members[0].expected_value - 0.02).abs() < 1e-12);
        // Expected discount given: (0.1 + 0.4) × 0.2 + (0.1 + 0.25) × 0.2 list prices.
        assert!((a.expected_discount_cost() - 0.17).abs() < 1e-12);
        assert_eq!(a.eligible(), 2);
    }

    #[test]
    fn weekly_deal_budget_is_never_exceeded() {
        // Costs at an average price of 30: user 1 3.00, user 2 2.10.
        let deal = |budget: f64| {
            campaign(
                "weekly_deal",
                &format!("[offer]\ndiscount_pct = 20\nbudget = {budget}\n"),
            )
        };
        assert_eq!(
            ids(&select(&deal(4.0), &frame(), &no_control()).unwrap()),
            vec![1]
        );
        assert_eq!(
            ids(&select(&deal(2.5), &frame(), &no_control()).unwrap()),
            vec![2]
        );
        assert_eq!(
            ids(&select(&deal(5.2), &frame(), &no_control()).unwrap()),
            vec![1, 2]
        );
        assert!(ids(&select(&deal(1.0), &frame(), &no_control()).unwrap()).is_empty());
    }

    #[test]
    fn new_buyer_keeps_users_without_orders() {
        let a = select(&campaign("new_buyer", ""), &frame(), &no_control()).unwrap();
        assert_eq!(ids(&a), vec![1, 3]);
    }

    #[test]
    fn drop_ranks_by_affinity_then_uplift() {
        let a = select(
            &campaign("drop", "[drop]\nitem_id = 7\n"),
            &frame(),
            &no_control(),
        )
        .unwrap();
        assert_eq!(ids(&a), vec![2, 6, 3]);
        assert_eq!(a.members[0].rank, 1);
    }

    #[test]
    fn seasonal_applies_the_floor_and_the_cap() {
        let mut c = campaign("seasonal", "[seasonal]\nmin_uplift = 0.0\n");
        c.max_audience = 2;
        let a = select(&c, &frame(), &no_control()).unwrap();
        assert_eq!(ids(&a), vec![2, 6]);
        assert_eq!(
            a.funnel.iter().map(|s| s.users).collect::<Vec<_>>(),
            vec![6, 5, 4, 4, 3, 3]
        );
        assert_eq!(a.eligible(), 3);
    }

    #[test]
    fn eligibility_rules_are_funnel_steps() {
        let c = campaign(
            "seasonal",
            "eligibility = [\"orders_total >= 1\", \"uplift < 0.2 or orders_total > 4\"]\n",
        );
        let a = select(&c, &frame(), &no_control()).unwrap();
        // Consented, unsuppressed users 1, 2, 3, 6; with an order: 2, 6; then 2 (uplift
        // 0.20) fails "uplift < 0.2" and has 3 orders, 6 has 5 orders.
        assert_eq!(ids(&a), vec![6]);
        let steps: Vec<(&str, usize)> = a
            .funnel
            .iter()
            .map(|s| (s.step.as_str(), s.users))
            .collect();
        assert_eq!(
            steps,
            vec![
                ("users", 6),
                ("consented", 5),
                ("not suppressed", 4),
                ("outside global control", 4),
                ("orders_total >= 1", 2),
                ("uplift < 0.2 or orders_total > 4", 1),
                ("uplift above floor", 1),
                ("not taken by another campaign tonight", 1),
            ]
        );
    }

    #[test]
    fn arbitration_by_priority_or_by_expected_value() {
        let welcome = campaign_with("welcome", "new_buyer", 25, "");
        let sale = campaign_with("sale", "seasonal", 10, "[offer]\nmargin = 0.5\n");
        let f = frame();
        let night = |arbitration| {
            let limits = Limits {
                arbitration,
                ..Limits::default()
            };
            let a = select_night(
                &[(&sale, &f), (&welcome, &f)],
                &ctx(limits),
                &History::default(),
            )
            .unwrap();
            (ids(&a[0]), ids(&a[1]), a[0].funnel.last().unwrap().users)
        };
        // The welcome campaign picks first and takes user 1 from the sale.
        assert_eq!(night(Arbitration::Priority), (vec![2, 6], vec![1, 3], 2));
        let limits = Limits::default();
        let a = select_night(
            &[(&sale, &f), (&welcome, &f)],
            &ctx(limits),
            &History::default(),
        )
        .unwrap();
        // Both wanted user 1.
        assert_eq!(a[0].overlap, vec![("welcome".to_string(), 1)]);
        assert_eq!(a[1].overlap, vec![("sale".to_string(), 1)]);
        // User 1 is worth 0.05 × 0.5 = 0.025 to the sale and 0.05 × 0.3 = 0.015 to the
        // welcome campaign: the sale gets them.
        assert_eq!(
            night(Arbitration::ExpectedValue),
            (vec![2, 6, 1], vec![3], 3)
        );
    }

    #[test]
    fn frequency_cap_and_discount_cooldown_read_the_history() {
        let mut history = History::default();
        let past = |days_ago: i64, discounted: bool| PastMessage {
            day: RUN_DAY - days_ago,
            discounted,
        };
        history.by_user.insert(2, vec![past(3, false)]);
        history.by_user.insert(6, vec![past(7, false)]);
        history.by_user.insert(1, vec![past(10, true)]);
        let capped = ctx(Limits {
            max_messages: 1,
            cap_days: 7,
            discount_cooldown_days: 14,
            arbitration: Arbitration::Priority,
        });
        // User 2 had a message 3 days ago; user 6's was 7 days ago, outside the window.
        let sale = campaign("seasonal", "");
        let a = &select_night(&[(&sale, &frame())], &capped, &history).unwrap()[0];
        assert_eq!(ids(a), vec![6, 1]);
        // User 1 had a discount 10 days ago: no discount for 14 days.
        let deal = campaign("weekly_deal", "[offer]\ndiscount_pct = 20\n");
        let a = &select_night(&[(&deal, &frame())], &capped, &history).unwrap()[0];
        assert!(ids(a).is_empty(), "{:?}", ids(a));
        assert!(a
            .funnel
            .iter()
            .any(|s| s.step == "outside discount cooldown"));
        // A message without a discount ignores the cooldown.
        let welcome = campaign("new_buyer", "");
        let a = &select_night(&[(&welcome, &frame())], &capped, &history).unwrap()[0];
        assert_eq!(ids(a), vec![1, 3]);
    }

    #[test]
    fn global_control_users_are_never_selected() {
        let ctx = SelectionContext {
            global_control_share: 1.0,
            global_control_salt: "g".into(),
            ..no_control()
        };
        let a = select(&campaign("new_buyer", ""), &frame(), &ctx).unwrap();
        assert!(a.members.is_empty());
    }

    fn random_frame(g: &mut Gen, n: usize) -> DataFrame {
        let mut col =
            |f: &mut dyn FnMut(&mut Gen) -> f64| -> Vec<f64> { (0..n).map(|_| f(g)).collect() };
        let uplift = col(&mut |g| g.unit() * 0.3 - 0.1);
        let p_control = col(&mut |g| g.unit() * 0.3);
        let du = col(&mut |g| g.unit() * 0.4 - 0.1);
        let sens = col(&mut |g| g.unit());
        let opt_in = col(&mut |g| f64::from(u8::from(g.unit() < 0.85)));
        let suppressed = col(&mut |g| f64::from(u8::from(g.unit() < 0.1)));
        let orders = col(&mut |g| g.below(4) as f64);
        let share: Vec<Option<f64>> = orders
            .iter()
            .map(|&o| (o > 0.0).then(|| (o * 0.37) % 1.0))
            .collect();
        let affinity = col(&mut |g| g.below(3) as f64);
        df! {
            "user_id" => (1..=n as i64).collect::<Vec<_>>(),
            "uplift" => uplift,
            "p_control" => p_control,
            "discount_uplift" => du,
            "discount_sensitivity" => sens,
            "marketing_opt_in" => opt_in,
            "suppressed" => suppressed,
            "orders_total" => orders,
            "discount_share_orders_365d" => share,
            "affinity" => affinity,
        }
        .unwrap()
    }

    fn random_campaigns(g: &mut Gen) -> Vec<Campaign> {
        let kinds = [
            ("drop", "[drop]\nitem_id = 1\n"),
            ("weekly_deal", "[offer]\ndiscount_pct = 25\n"),
            ("new_buyer", "[offer]\ndiscount_pct = 10\n"),
            ("seasonal", "[seasonal]\nmin_uplift = -0.05\n"),
        ];
        (0..1 + g.below(4))
            .map(|k| {
                let (kind, extra) = kinds[g.below(4) as usize];
                let mut extra = extra.to_string();
                // The offer table comes last in `extra`: a budget joins it.
                if extra.contains("discount_pct") && g.below(2) == 0 {
                    extra.push_str(&format!("budget = {}\n", g.below(30)));
                }
                let mut c = campaign_with(&format!("c{k}"), kind, g.below(3) as i32, &extra);
                c.holdout = [0.0, 0.1, 0.5][g.below(3) as usize];
                c.max_audience = 1 + g.below(60) as usize;
                c
            })
            .collect()
    }

    #[test]
    fn always_on_rules_caps_cooldowns_and_budgets_hold_over_30_nights() {
        let mut g = Gen(0x2545_F491_4F6C_DD1D);
        for trial in 0..25 {
            let n = 150;
            let limits = Limits {
                max_messages: 1 + g.below(3) as usize,
                cap_days: 3 + g.below(6) as i64,
                discount_cooldown_days: g.below(10) as i64,
                arbitration: if g.below(2) == 0 {
                    Arbitration::Priority
                } else {
                    Arbitration::ExpectedValue
                },
            };
            let campaigns = random_campaigns(&mut g);
            let mut history = History::default();
            // Every message sent, by user: (night, discounted).
            let mut sent: HashMap<i64, Vec<(i64, bool)>> = HashMap::new();
            for night in 0..30 {
                let f = random_frame(&mut g, n);
                let c = SelectionContext {
                    run_day: RUN_DAY + night,
                    global_control_share: 0.05,
                    global_control_salt: "g".into(),
                    ..ctx(limits)
                };
                let pairs: Vec<(&Campaign, &DataFrame)> =
                    campaigns.iter().map(|c| (c, &f)).collect();
                let audiences = select_night(&pairs, &c, &history).unwrap();
                let opt_in = floats(&f, "marketing_opt_in").unwrap();
                let suppressed = floats(&f, "suppressed").unwrap();
                let mut tonight = HashSet::new();
                for (camp, a) in campaigns.iter().zip(&audiences) {
                    assert!(a.members.len() <= camp.max_audience);
                    for m in &a.members {
                        let i = (m.user_id - 1) as usize;
                        assert_eq!(opt_in[i], 1.0, "trial {trial}: consent");
                        assert_eq!(suppressed[i], 0.0, "trial {trial}: suppression");
                        assert!(!c.in_global_control(m.user_id), "global control");
                        assert!(tonight.insert(m.user_id), "one campaign a night");
                        // The arm is the campaign's hash, so a holdout user is never treated.
                        assert_eq!(m.arm, arm(&camp.salt, camp.holdout, m.user_id));
                        let discounted = camp.offer.discount_pct > 0.0;
                        // Both arms go to the history, as the ledger records them.
                        history
                            .by_user
                            .entry(m.user_id)
                            .or_default()
                            .push(PastMessage {
                                day: RUN_DAY + night,
                                discounted,
                            });
                        if m.arm == Arm::Treatment {
                            sent.entry(m.user_id).or_default().push((night, discounted));
                        }
                    }
                    if let Some(budget) = camp.offer.budget {
                        let spent = a.expected_discount_cost() * camp.offer.average_price;
                        assert!(spent <= budget + 1e-9, "budget {budget} spent {spent}");
                    }
                }
            }
            for (user, msgs) in &sent {
                for &(night, discounted) in msgs {
                    // Messages in the cap window ending at this one, this one included.
                    let in_window = msgs
                        .iter()
                        .filter(|(d, _)| *d <= night && *d > night - limits.cap_days)
                        .count();
                    assert!(
                        in_window <= limits.max_messages,
                        "trial {trial}: user {user} got {in_window} messages in {} days",
                        limits.cap_days
                    );
                    if discounted && limits.discount_cooldown_days > 0 {
                        let earlier = msgs.iter().any(|&(d, disc)| {
                            disc && d < night && d > night - limits.discount_cooldown_days
                        });
                        assert!(!earlier, "trial {trial}: user {user} discount in cooldown");
                    }
                }
            }
        }
    }
}

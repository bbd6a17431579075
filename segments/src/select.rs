//! Who gets a campaign tonight.
//!
//! [`select`] narrows the scored users to a campaign's audience in a fixed order: first the
//! filters that always apply whatever a config says (consent, suppressions, the global control
//! group), then the campaign kind's own filter, then ranking, the size cap and the holdout split.
//! Each step's survivors are counted into the funnel, so a preview can say where users went.

use polars::prelude::*;

use crate::campaign::{Campaign, CampaignKind};
use crate::holdout::{arm, bucket, Arm};
use crate::{Result, SegmentError};

/// Settings that hold for every campaign.
#[derive(Debug, Clone)]
pub struct SelectionContext {
    /// Share of all users no campaign ever reaches (the global control group).
    pub global_control_share: f64,
    /// Salt of the global control hash; fixed for the life of a deployment.
    pub global_control_salt: String,
}

impl SelectionContext {
    /// Whether a user belongs to the global control group.
    pub fn in_global_control(&self, user_id: i64) -> bool {
        bucket(&self.global_control_salt, user_id) < self.global_control_share
    }
}

/// Users left after one selection step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelStep {
    pub step: &'static str,
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
}

/// A campaign's audience: selected users in rank order, and how many survived each step.
#[derive(Debug, Clone)]
pub struct Audience {
    pub campaign_id: String,
    pub funnel: Vec<FunnelStep>,
    pub members: Vec<Member>,
}

impl Audience {
    /// Users who passed every filter, before the size cap.
    pub fn eligible(&self) -> usize {
        self.funnel.last().map_or(0, |s| s.users)
    }

    pub fn count(&self, arm: Arm) -> usize {
        self.members.iter().filter(|m| m.arm == arm).count()
    }
}

fn floats(frame: &DataFrame, name: &str) -> Result<Vec<f64>> {
    Ok(frame
        .column(name)?
        .cast(&DataType::Float64)?
        .f64()?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

/// Builds a campaign's audience from scored users.
///
/// `scored` holds one row per user with `user_id`, `uplift`, `p_control`, `marketing_opt_in`
/// (0/1), `suppressed` (0/1), `orders_total` and `discount_share_orders_365d`; a drop also needs
/// `affinity` (higher is closer to the dropped item).
pub fn select(campaign: &Campaign, scored: &DataFrame, ctx: &SelectionContext) -> Result<Audience> {
    let user: Vec<i64> = scored
        .column("user_id")?
        .i64()?
        .iter()
        .map(|v| v.unwrap_or_default())
        .collect();
    let uplift = floats(scored, "uplift")?;
    let p_control = floats(scored, "p_control")?;
    let opt_in = floats(scored, "marketing_opt_in")?;
    let suppressed = floats(scored, "suppressed")?;
    let orders = floats(scored, "orders_total")?;
    let discount_share = floats(scored, "discount_share_orders_365d")?;

    let mut keep: Vec<usize> = (0..user.len()).collect();
    let mut funnel = vec![FunnelStep {
        step: "users",
        users: keep.len(),
    }];
    let mut step = |keep: &mut Vec<usize>, name: &'static str, pass: &dyn Fn(usize) -> bool| {
        keep.retain(|&i| pass(i));
        funnel.push(FunnelStep {
            step: name,
            users: keep.len(),
        });
    };

    // Always on, whatever the campaign says.
    step(&mut keep, "consented", &|i| opt_in[i] == 1.0);
    step(&mut keep, "not suppressed", &|i| suppressed[i] == 0.0);
    step(&mut keep, "outside global control", &|i| {
        !ctx.in_global_control(user[i])
    });

    let affinity;
    let key: &[f64] = match &campaign.kind {
        CampaignKind::Drop { .. } => {
            affinity = floats(scored, "affinity").map_err(|_| SegmentError::Selection {
                campaign: campaign.id.clone(),
                why: "a drop needs the affinity of each user to the dropped item".into(),
            })?;
            step(&mut keep, "affinity to the drop", &|i| affinity[i] > 0.0);
            &affinity
        }
        CampaignKind::WeeklyDeal { max_discount_share } => {
            // Missing share = no orders last year: not a deal hunter.
            step(&mut keep, "not deal-conditioned", &|i| {
                discount_share[i].is_nan() || discount_share[i] <= *max_discount_share
            });
            step(&mut keep, "positive uplift", &|i| uplift[i] > 0.0);
            &uplift
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
    keep.truncate(campaign.max_audience);
    let members = keep
        .iter()
        .enumerate()
        .map(|(pos, &i)| Member {
            user_id: user[i],
            rank: pos + 1,
            arm: arm(&campaign.salt, campaign.holdout, user[i]),
            score: key[i],
            uplift: uplift[i],
            p_control: p_control[i],
        })
        .collect();
    Ok(Audience {
        campaign_id: campaign.id.clone(),
        funnel,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::parse;

    fn frame() -> DataFrame {
        df! {
            "user_id" => [1i64, 2, 3, 4, 5, 6],
            "uplift" => [0.05, 0.20, -0.01, 0.10, 0.30, 0.15],
            "p_control" => [0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
            "marketing_opt_in" => [1i64, 1, 1, 1, 0, 1],
            "suppressed" => [0i64, 0, 0, 1, 0, 0],
            "orders_total" => [0.0, 3.0, 0.0, 0.0, 0.0, 5.0],
            "discount_share_orders_365d" => [None, Some(0.1), None, None, None, Some(0.9)],
            "affinity" => [0.0, 2.0, 1.0, 3.0, 3.0, 1.0],
        }
        .unwrap()
    }

    fn campaign(kind: &str, extra: &str) -> Campaign {
        let text = format!(
            "format_version = 1\nid = \"c\"\nkind = \"{kind}\"\nholdout = 0.0\nmax_audience = 10\n{extra}"
        );
        parse("c.toml", &text).unwrap()
    }

    fn ids(a: &Audience) -> Vec<i64> {
        a.members.iter().map(|m| m.user_id).collect()
    }

    const NO_CONTROL: SelectionContext = SelectionContext {
        global_control_share: 0.0,
        global_control_salt: String::new(),
    };

    // Users 4 (suppressed) and 5 (no consent) are never selected, whatever the kind.
    #[test]
    fn weekly_deal_drops_deal_hunters_and_ranks_by_uplift() {
        let c = campaign("weekly_deal", "[offer]\ndiscount_pct = 20\n");
        let a = select(&c, &frame(), &NO_CONTROL).unwrap();
        assert_eq!(ids(&a), vec![2, 1]);
        assert_eq!(a.eligible(), 2);
    }

    #[test]
    fn new_buyer_keeps_users_without_orders() {
        let a = select(&campaign("new_buyer", ""), &frame(), &NO_CONTROL).unwrap();
        assert_eq!(ids(&a), vec![1, 3]);
    }

    #[test]
    fn drop_ranks_by_affinity_then_uplift() {
        let a = select(
            &campaign("drop", "[drop]\nitem_id = 7\n"),
            &frame(),
            &NO_CONTROL,
        )
        .unwrap();
        assert_eq!(ids(&a), vec![2, 6, 3]);
        assert_eq!(a.members[0].rank, 1);
    }

    #[test]
    fn seasonal_applies_the_floor_and_the_cap() {
        let mut c = campaign("seasonal", "[seasonal]\nmin_uplift = 0.0\n");
        c.max_audience = 2;
        let a = select(&c, &frame(), &NO_CONTROL).unwrap();
        assert_eq!(ids(&a), vec![2, 6]);
        assert_eq!(
            a.funnel.iter().map(|s| s.users).collect::<Vec<_>>(),
            vec![6, 5, 4, 4, 3]
        );
    }

    #[test]
    fn global_control_users_are_never_selected() {
        let ctx = SelectionContext {
            global_control_share: 1.0,
            global_control_salt: "g".into(),
        };
        let a = select(&campaign("new_buyer", ""), &frame(), &ctx).unwrap();
        assert!(a.members.is_empty());
    }
}

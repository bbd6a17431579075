//! The select stage: the night's audiences, chosen all at once, since arbitration, the
//! frequency cap and the discount cooldown span campaigns. Each shard's scored users are ranked
//! for every campaign as they come ([`Selector::rank`]); the rankings of all shards are then
//! merged and arbitrated ([`Selector::select`]). The assignment history comes from the state
//! database; the decisions are `segments`'.

use std::collections::{BTreeMap, HashSet};

use anyhow::{bail, Context, Result};
use models::gifts::Recipients;
use models::uplift::nearest_level;
use models::RunDate;
use polars::prelude::*;
use segments::items::{self, Catalogue, Holdings, WANTED_ITEM_COLUMN};
use segments::rules::DEAL_ITEMS;
use segments::select::{discount_uplift_column, RECIPIENT_COLUMN};
use segments::{Arm, Audience, Campaign, CampaignKind, History, Ranking, Reach, SelectionContext};
use tracing::{info, instrument};

use super::score::ScoredUsers;
use crate::config::{campaigns, Settings};
use crate::state::db::Db;
use crate::state::ledger;

/// Each campaign's audience for the night, or why it has none.
#[derive(Debug)]
pub struct Night {
    pub audiences: BTreeMap<String, Result<Audience, String>>,
    /// For each campaign previewed (a dry run's): how many users each other campaign of the
    /// night would have messaged without it, beyond those it messages with it.
    pub takes: BTreeMap<String, Vec<(String, usize)>>,
}

impl Night {
    /// Takes a campaign's audience out of the night.
    pub fn take(&mut self, campaign_id: &str) -> Result<Audience, String> {
        self.audiences
            .remove(campaign_id)
            .unwrap_or_else(|| Err("not selected".into()))
    }
}

/// Each campaign's ranking of the shards ranked so far, or why it has none. Each shard's
/// ranking is merged in as it comes and cut to what arbitration can reach ([`Reach`]), so what
/// is kept between shards is every eligible user's id and a bounded number of candidates.
#[derive(Debug, Clone)]
pub struct Rankings {
    reach: Reach,
    by_campaign: BTreeMap<String, Result<Ranking, String>>,
}

impl Rankings {
    /// Rankings to be arbitrated with `reach`.
    pub fn new(reach: Reach) -> Rankings {
        Rankings {
            reach,
            by_campaign: BTreeMap::new(),
        }
    }

    /// Adds a shard's ranking of a campaign, or why the campaign could not be ranked (then it
    /// fails, whatever the other shards gave).
    pub fn add(&mut self, campaign: &Campaign, part: Result<Ranking, String>) {
        let merged = match self.by_campaign.remove(&campaign.id) {
            None => part,
            Some(Err(e)) => Err(e),
            Some(Ok(whole)) => {
                part.and_then(|p| Ranking::merge(vec![whole, p]).map_err(|e| e.to_string()))
            }
        };
        let cut = merged.map(|mut r| {
            r.cut(campaign, &self.reach);
            r
        });
        self.by_campaign.insert(campaign.id.clone(), cut);
    }

    /// Each campaign's ranking of all the shards added, or why it has none.
    pub fn into_merged(self) -> BTreeMap<String, Result<Ranking, String>> {
        self.by_campaign
    }
}

/// Campaigns ranked side by side (see [`Selector::rank`]).
const RANK_AT_ONCE: usize = 2;

/// What ranking every shard and selecting the night read: the night's campaigns, the selection
/// context and the assignment history.
pub struct Selector<'a> {
    campaigns: &'a [Campaign],
    ctx: SelectionContext,
    history: History,
    date: RunDate,
    threads: usize,
}

impl<'a> Selector<'a> {
    /// Reads the assignment history of the cap and cooldown windows; `levels` are the scoring
    /// model's categorical levels, which text values in rules compile to.
    #[instrument(name = "history", skip_all)]
    pub async fn new(
        s: &Settings,
        campaigns: &'a [Campaign],
        levels: &models::CategoricalLevels,
        date: RunDate,
        state: &Db,
    ) -> Result<Selector<'a>> {
        let t = &s.targeting;
        let window = t.limits.cap_days.max(t.limits.discount_cooldown_days);
        let history = ledger::history(state, date, window).await?;
        info!(history_users = history.by_user.len(), "history read");
        Ok(Selector::with_history(s, campaigns, levels, date, history))
    }

    /// A selector that only selects from rankings made elsewhere (by the `score-shard` jobs,
    /// which read the history then): it reads no history.
    pub fn for_rankings(
        s: &Settings,
        campaigns: &'a [Campaign],
        levels: &models::CategoricalLevels,
        date: RunDate,
    ) -> Selector<'a> {
        Selector::with_history(s, campaigns, levels, date, History::default())
    }

    fn with_history(
        s: &Settings,
        campaigns: &'a [Campaign],
        levels: &models::CategoricalLevels,
        date: RunDate,
        history: History,
    ) -> Selector<'a> {
        let ctx = s
            .targeting
            .selection_context(campaigns::catalog(Some(levels)), date.day());
        Selector {
            campaigns,
            ctx,
            history,
            date,
            threads: s.threads,
        }
    }

    /// Ranks the scored users (all, or one shard's) for every campaign, adding each ranking to
    /// `into`; `recipients` chooses a gift campaign's recipients. A campaign whose candidates
    /// cannot be built fails alone.
    #[instrument(name = "rank", skip_all, fields(users = scored.frame.height()))]
    pub fn rank(&self, scored: &ScoredUsers, recipients: Option<&Recipients>, into: &mut Rankings) {
        // Built once per shard, when some campaign reads items or is a gift; if they cannot
        // be, those campaigns fail and the others go on.
        let items = ShardItems::of(self.campaigns, scored, self.date).map_err(|e| format!("{e:#}"));
        let gifts = self
            .gift_recipients(scored, recipients)
            .map_err(|e| format!("{e:#}"));
        let rank = |c: &Campaign| {
            let items = match &items {
                Ok(items) => items.as_ref(),
                Err(e) if reads_items(c) => return Err(e.clone()),
                Err(_) => None,
            };
            let gifts = match &gifts {
                Ok(gifts) => gifts.as_ref(),
                Err(e) if c.kind == CampaignKind::Gift => return Err(e.clone()),
                Err(_) => None,
            };
            candidates(c, scored, items, gifts, self.date)
                .and_then(|frame| {
                    segments::rank(c, &frame, &self.ctx, &self.history).map_err(anyhow::Error::from)
                })
                .map_err(|e| format!("{e:#}"))
        };
        // A campaign's ranking runs mostly on one core (the rules' masks, the holdout hashes,
        // the sort), so two at a time use both cores of the machine this was measured on;
        // results are added in the campaigns' order, as before.
        let mut ranked: Vec<_> = tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                self.campaigns
                    .chunks(RANK_AT_ONCE)
                    .flat_map(|group| {
                        let running: Vec<_> =
                            group.iter().map(|c| scope.spawn(move || rank(c))).collect();
                        running
                            .into_iter()
                            .map(|h| h.join().unwrap_or_else(|_| Err("ranking panicked".into())))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
        });
        // Before any cut: the explored users are never the models' to choose.
        segments::reserve_exploration(ranked.iter_mut().filter_map(|r| r.as_mut().ok()));
        for (c, r) in self.campaigns.iter().zip(ranked) {
            into.add(c, r);
        }
    }

    /// The column of the friend each scored user would send a gift to (see
    /// [`segments::select::RECIPIENT_COLUMN`]), in the users' order, when the night has a gift
    /// campaign.
    #[instrument(name = "gift_recipients", skip_all)]
    fn gift_recipients(
        &self,
        scored: &ScoredUsers,
        recipients: Option<&Recipients>,
    ) -> Result<Option<Column>> {
        if !self.campaigns.iter().any(|c| c.kind == CampaignKind::Gift) {
            return Ok(None);
        }
        let Some(recipients) = recipients else {
            bail!(
                "no gift recipient model: the source had too few gifts to a friend to learn \
                 from when the models were trained (`targeting train --model gift_recipient` \
                 once it has more)"
            );
        };
        let senders = self.gift_senders(scored)?;
        let by_user = recipients
            .suggest(
                &scored.tables,
                self.date.cutoff(),
                self.threads,
                Some(&senders),
            )
            .context("the gift recipients")?;
        let column: Vec<Option<i64>> = scored
            .frame
            .column("user_id")?
            .i64()?
            .iter()
            .map(|u| u.and_then(|u| by_user.get(&u).copied()))
            .collect();
        info!(senders = by_user.len(), "gift recipients suggested");
        Ok(Some(Column::new(RECIPIENT_COLUMN.into(), column)))
    }

    /// The users a gift campaign of the night might take, to whom alone a recipient is
    /// suggested: consented, not suppressed, and through every eligibility rule of one of the
    /// gift campaigns (rules on items aside: this may keep more users than a campaign takes,
    /// never fewer). At a million users a few percent of them: the others' friends are never
    /// scored.
    fn gift_senders(&self, scored: &ScoredUsers) -> Result<HashSet<i64>> {
        let mut may: Option<Expr> = None;
        for c in self
            .campaigns
            .iter()
            .filter(|c| c.kind == CampaignKind::Gift)
        {
            let mut this = col("marketing_opt_in")
                .eq(lit(1.0))
                .and(col("suppressed").eq(lit(0.0)));
            for rule in c
                .eligibility
                .iter()
                .filter(|r| r.item_predicates().is_empty())
            {
                let pass = rule.to_expr(&self.ctx.catalog, self.ctx.run_day);
                this = this.and(pass.fill_null(lit(false)));
            }
            may = Some(match may {
                Some(m) => m.or(this),
                None => this,
            });
        }
        let Some(may) = may else {
            return Ok(HashSet::new());
        };
        // The frame with the derived names rules read, as a gift campaign sees it before the
        // columns of items.
        let gift = self
            .campaigns
            .iter()
            .find(|c| c.kind == CampaignKind::Gift)
            .context("no gift campaign")?;
        let frame = candidates(gift, scored, None, None, self.date)?;
        let users = frame
            .lazy()
            .filter(may)
            .select([col("user_id")])
            .collect()?;
        Ok(users.column("user_id")?.i64()?.iter().flatten().collect())
    }

    /// One campaign as if it were the night's only one: every eligible user's id, ascending,
    /// and its audience.
    pub fn alone(&self, c: &Campaign, scored: &ScoredUsers) -> Result<(Vec<i64>, Audience)> {
        let items = ShardItems::of(std::slice::from_ref(c), scored, self.date)?;
        let frame = candidates(c, scored, items.as_ref(), None, self.date)?;
        let mut ranking = segments::rank(c, &frame, &self.ctx, &self.history)?;
        segments::reserve_exploration([&mut ranking]);
        let eligible = ranking.eligible.clone();
        let mut audiences = segments::arbitrate(vec![(c, ranking)], &self.ctx);
        Ok((eligible, audiences.remove(0)))
    }

    /// Empty rankings of the night's campaigns, cut to what this night's arbitration reaches.
    pub fn rankings(&self) -> Rankings {
        Rankings::new(Reach::of(self.campaigns, self.ctx.limits.arbitration))
    }

    /// The night's audiences from the rankings of every shard: arbitration, maximum audiences,
    /// budgets and holdouts across the campaigns. For each of `previewed` (a dry run's
    /// campaigns), the night is also arbitrated without it, to say what it takes from the
    /// others.
    #[instrument(name = "select", skip_all, fields(campaigns = self.campaigns.len()))]
    pub fn select(&self, rankings: Rankings, previewed: &[String]) -> Night {
        let mut night = if previewed.is_empty() {
            self.arbitrate(rankings.into_merged(), None)
        } else {
            let night = self.arbitrate(rankings.clone().into_merged(), None);
            // (The users of every campaign's exploration sample were set apart when ranking:
            // they stay out of the others' audiences either way.)
            let messaged = |n: &Night, id: &str| -> usize {
                n.audiences
                    .get(id)
                    .map_or(0, |a| a.as_ref().map_or(0, |a| a.count(Arm::Treatment)))
            };
            let mut takes = BTreeMap::new();
            for id in previewed {
                let without = self.arbitrate(rankings.clone().into_merged(), Some(id));
                let taken: Vec<(String, usize)> = self
                    .campaigns
                    .iter()
                    .filter(|c| &c.id != id)
                    .map(|c| {
                        let more =
                            messaged(&without, &c.id).saturating_sub(messaged(&night, &c.id));
                        (c.id.clone(), more)
                    })
                    .filter(|(_, n)| *n > 0)
                    .collect();
                takes.insert(id.clone(), taken);
            }
            Night { takes, ..night }
        };
        for a in night.audiences.values().flatten() {
            info!(
                campaign = %a.campaign_id,
                eligible = a.eligible(),
                rows = a.count(Arm::Treatment),
                holdout = a.count(Arm::Holdout),
                "selected"
            );
        }
        night.takes.retain(|_, t| !t.is_empty());
        night
    }

    /// The night of the merged rankings, without the campaign `leave_out` if one is named.
    fn arbitrate(
        &self,
        mut rankings: BTreeMap<String, Result<Ranking, String>>,
        leave_out: Option<&String>,
    ) -> Night {
        let mut audiences: BTreeMap<String, Result<Audience, String>> = BTreeMap::new();
        let mut ranked = Vec::new();
        for c in self.campaigns.iter().filter(|c| Some(&c.id) != leave_out) {
            let merged = rankings
                .remove(&c.id)
                .unwrap_or_else(|| Err("not ranked".into()));
            match merged {
                Ok(r) => ranked.push((c, r)),
                Err(e) => {
                    audiences.insert(c.id.clone(), Err(e));
                }
            }
        }
        for a in tokio::task::block_in_place(|| segments::arbitrate(ranked, &self.ctx)) {
            audiences.insert(a.campaign_id.clone(), Ok(a));
        }
        Night {
            audiences,
            takes: BTreeMap::new(),
        }
    }
}

/// Whether a campaign has `[items]` or a rule with `owns …` or `wishlist has …`.
fn reads_items(c: &Campaign) -> bool {
    c.items.is_some()
        || c.eligibility
            .iter()
            .any(|r| !r.item_predicates().is_empty())
}

/// What item-aware rules and `[items]` read of a shard's users: the catalogue and what each
/// user owns and wishlisted; and for a gift campaign with `[items]`, what the recipients, in
/// any shard, own and wishlisted of its items.
struct ShardItems {
    catalogue: Catalogue,
    holdings: Holdings,
    users: Vec<i64>,
    gift_holdings: Option<Holdings>,
}

impl ShardItems {
    /// Built when one of `campaigns` reads items, from the scored users' tables.
    fn of(campaigns: &[Campaign], scored: &ScoredUsers, date: RunDate) -> Result<Option<Self>> {
        if !campaigns.iter().any(reads_items) {
            return Ok(None);
        }
        let t = &scored.tables;
        let catalogue = Catalogue::new(&t.items, date.day()).context("the items table")?;
        let holdings = Holdings::new(&t.purchases, &t.wishlist, date.cutoff())
            .context("the purchases and wishlist tables")?;
        let users = scored
            .frame
            .column("user_id")?
            .i64()?
            .iter()
            .map(|v| v.unwrap_or_default())
            .collect();
        let mut gift_items = Vec::new();
        for c in campaigns.iter().filter(|c| c.kind == CampaignKind::Gift) {
            if let Some(listed) = &c.items {
                gift_items.extend(catalogue.resolve(&c.id, listed)?);
            }
        }
        let gift_holdings = if gift_items.is_empty() {
            None
        } else {
            let _span = tracing::info_span!("gift_holdings").entered();
            let (purchases, wishlist) = models::features::gift_item_rows(
                t.friend_signals.as_ref(),
                &t.purchases,
                &t.wishlist,
                &gift_items,
            )
            .context("the gift items' holders")?;
            Some(Holdings::new(&purchases, &wishlist, date.cutoff())?)
        };
        Ok(Some(ShardItems {
            catalogue,
            holdings,
            users,
            gift_holdings,
        }))
    }

    /// A campaign's columns of items: one per `owns …` or `wishlist has …` of its rules, and
    /// for a campaign with `[items]`, the item each user wants — for a gift, the item each
    /// user's recipient (of `recipients`, in the users' order) wants.
    fn columns(&self, c: &Campaign, recipients: Option<&Column>) -> Result<Vec<Column>> {
        let listed = match &c.items {
            Some(items) => Some(self.catalogue.resolve(&c.id, items)?),
            None => None,
        };
        let lists: Vec<(&str, &[i64])> = listed
            .iter()
            .map(|ids| (DEAL_ITEMS, ids.as_slice()))
            .collect();
        let mut columns = Vec::new();
        for p in c.eligibility.iter().flat_map(|r| r.item_predicates()) {
            let values =
                items::predicate_values(&p, &self.users, &self.holdings, &self.catalogue, &lists)?;
            columns.push(Column::new(p.column.into(), values));
        }
        let wanted = match (&listed, &c.kind, recipients, &self.gift_holdings) {
            (None, ..) => None,
            (Some(ids), CampaignKind::Gift, Some(recipients), Some(holdings)) => {
                let friend: Vec<Option<i64>> = recipients.i64()?.iter().collect();
                let named: Vec<i64> = friend.iter().flatten().copied().collect();
                let mut wanted = items::wanted(&named, ids, holdings, &self.catalogue).into_iter();
                Some(
                    friend
                        .iter()
                        .map(|f| f.and_then(|_| wanted.next().flatten()))
                        .collect(),
                )
            }
            (Some(_), CampaignKind::Gift, ..) => {
                bail!("campaign {}: the gift items' holders were not read", c.id)
            }
            (Some(ids), ..) => Some(items::wanted(
                &self.users,
                ids,
                &self.holdings,
                &self.catalogue,
            )),
        };
        if let Some(wanted) = wanted {
            columns.push(Column::new(WANTED_ITEM_COLUMN.into(), wanted));
        }
        Ok(columns)
    }
}

/// The frame a campaign selects from: the scored users, plus the affinity to the dropped item
/// for a drop, each user's gift recipient for a gift, and the columns of items its rules and
/// `[items]` read. An offer of one discount reads, as `discount_uplift`, the effect of the
/// level the discount model knows nearest to it.
fn candidates(
    c: &Campaign,
    scored: &ScoredUsers,
    items: Option<&ShardItems>,
    gifts: Option<&Column>,
    date: RunDate,
) -> Result<DataFrame> {
    // Derived names of the rule catalogue (see `campaigns::catalog`).
    let mut frame = scored.frame.clone().lazy().with_column(
        col("orders_total")
            .eq(lit(0.0))
            .cast(DataType::Float64)
            .alias(campaigns::NEW_BUYER_COLUMN),
    );
    if let Some(items) = items {
        // In the users' order, as the frame: added as columns, not joined.
        let columns = items
            .columns(c, gifts)
            .with_context(|| format!("campaign {}", c.id))?;
        frame = frame.with_columns(
            columns
                .into_iter()
                .map(|c| lit(c.take_materialized_series()))
                .collect::<Vec<_>>(),
        );
    }
    if let (CampaignKind::Gift, Some(gifts)) = (&c.kind, gifts) {
        frame = frame.with_column(lit(gifts.as_materialized_series().clone()));
    }
    if c.offer.discount_pct > 0.0 {
        if let Some(level) = nearest_level(&scored.discount_levels, c.offer.discount_pct) {
            frame = frame.with_column(col(discount_uplift_column(level)).alias("discount_uplift"));
        }
    }
    match c.kind {
        CampaignKind::Drop { item_id } => {
            let affinity = models::features::drop_affinity(&scored.tables, item_id, date.cutoff())
                .with_context(|| format!("campaign {}", c.id))?;
            let user = |f: &DataFrame| -> Result<Series> {
                Ok(f.column("user_id")?.as_materialized_series().clone())
            };
            // Both frames hold the scored users in `user_id` order, so the affinity is added as
            // a column: a join would copy every column of the night's frame for each drop.
            let frame = if user(&affinity)?.equals(&user(&scored.frame)?) {
                frame.with_column(lit(affinity
                    .column("affinity")?
                    .as_materialized_series()
                    .clone()))
            } else {
                frame.join(
                    affinity.lazy(),
                    [col("user_id")],
                    [col("user_id")],
                    JoinArgs::new(JoinType::Left),
                )
            };
            Ok(frame
                .with_column(col("affinity").fill_null(lit(0.0)))
                .collect()?)
        }
        _ => Ok(frame.collect()?),
    }
}

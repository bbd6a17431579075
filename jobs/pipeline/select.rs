//! The select stage: the night's audiences, chosen all at once, since arbitration, the
//! frequency cap and the discount cooldown span campaigns. The assignment history comes from
//! the state database; the decisions are `segments`'.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use models::RunDate;
use polars::prelude::*;
use segments::{select_night, Arm, Audience, Campaign, CampaignKind};
use tracing::{info, instrument};

use super::score::ScoredUsers;
use crate::config::{campaigns, Settings};
use crate::state::db::Db;
use crate::state::ledger;

/// Each campaign's audience for the night, or why it has none.
#[derive(Debug)]
pub struct Night {
    pub audiences: BTreeMap<String, Result<Audience, String>>,
}

impl Night {
    /// Takes a campaign's audience out of the night.
    pub fn take(&mut self, campaign_id: &str) -> Result<Audience, String> {
        self.audiences
            .remove(campaign_id)
            .unwrap_or_else(|| Err("not selected".into()))
    }
}

/// Selects the audience of every campaign of the night. A campaign whose candidates cannot be
/// built fails alone; a failure of the night's selection fails every campaign.
#[instrument(name = "select", skip_all, fields(campaigns = campaigns.len()))]
pub async fn select(
    s: &Settings,
    campaigns: &[Campaign],
    scored: &ScoredUsers,
    date: RunDate,
    state: &Db,
) -> Result<Night> {
    let t = &s.targeting;
    let ctx = t.selection_context(campaigns::catalog(Some(&scored.levels)), date.day());
    let window = t.limits.cap_days.max(t.limits.discount_cooldown_days);
    let history = ledger::history(state, date, window).await?;
    info!(history_users = history.by_user.len(), "history read");

    let mut audiences: BTreeMap<String, Result<Audience, String>> = BTreeMap::new();
    let mut frames = Vec::new();
    for c in campaigns {
        match candidates(c, scored, date) {
            Ok(f) => frames.push((c, f)),
            Err(e) => {
                audiences.insert(c.id.clone(), Err(format!("{e:#}")));
            }
        }
    }
    let pairs: Vec<(&Campaign, &DataFrame)> = frames.iter().map(|(c, f)| (*c, f)).collect();
    match tokio::task::block_in_place(|| select_night(&pairs, &ctx, &history)) {
        Ok(selected) => {
            for a in selected {
                info!(
                    campaign = %a.campaign_id,
                    eligible = a.eligible(),
                    rows = a.count(Arm::Treatment),
                    holdout = a.count(Arm::Holdout),
                    "selected"
                );
                audiences.insert(a.campaign_id.clone(), Ok(a));
            }
        }
        Err(e) => {
            for (c, _) in &pairs {
                audiences.insert(c.id.clone(), Err(format!("selection failed: {e}")));
            }
        }
    }
    Ok(Night { audiences })
}

/// The frame a campaign selects from: the scored users, plus the affinity to the dropped item
/// for a drop.
fn candidates(c: &Campaign, scored: &ScoredUsers, date: RunDate) -> Result<DataFrame> {
    // Derived names of the rule catalogue (see `campaigns::catalog`).
    let frame = scored.frame.clone().lazy().with_column(
        col("orders_total")
            .eq(lit(0.0))
            .cast(DataType::Float64)
            .alias(campaigns::NEW_BUYER_COLUMN),
    );
    match c.kind {
        CampaignKind::Drop { item_id } => {
            let affinity = models::features::drop_affinity(&scored.tables, item_id, date.cutoff())
                .with_context(|| format!("campaign {}", c.id))?;
            Ok(frame
                .join(
                    affinity.lazy(),
                    [col("user_id")],
                    [col("user_id")],
                    JoinArgs::new(JoinType::Left),
                )
                .with_column(col("affinity").fill_null(lit(0.0)))
                .collect()?)
        }
        _ => Ok(frame.collect()?),
    }
}

//! The score stage: every user of the extracted tables (all users, or one shard's) scored by the
//! three models as of the run date, and the models to score with (the store's `current` ones,
//! or trained now).

use anyhow::{bail, Result};
use models::features::AffinityTables;
use models::training::Tallies;
use models::{RunDate, Scorers, Shard, SourceTables};
use polars::prelude::*;
use tracing::{info, instrument};

use super::extract;
use crate::config::Settings;
use crate::state::db::Db;
use crate::training::{self, ModelSet};

/// Every user's scores and what a drop's affinity reads of the tables: what selection reads.
/// Built only by [`score`], which checks that the frame has every column selection needs.
#[derive(Debug)]
pub struct ScoredUsers {
    pub tables: AffinityTables,
    /// One row per user: the feature catalogue, the scores and the consent and suppression
    /// flags (see [`segments::select::SCORED_COLUMNS`]).
    pub frame: DataFrame,
    /// The shard's sampled users counted for drift monitoring (see [`super::monitor`]).
    pub tallies: Tallies,
    /// The discount levels the discount model knows, ascending: the frame has the effect of
    /// each (empty for a model that knows one effect of "a discount").
    pub discount_levels: Vec<u32>,
}

/// The models a run scores with; and, when they were trained now on every row of the source
/// (not on a sample of its users), those tables, which a run of one shard scores as they are.
pub struct Models {
    pub set: ModelSet,
    pub trained_on: Option<SourceTables>,
}

/// The models a run scores with: the store's `current` ones unless `retrain`, else trained now
/// (see [`extract::training_tables`]) — and stored as the new `current`, except for a dry run,
/// which changes nothing.
impl Models {
    pub async fn for_run(
        s: &Settings,
        source: &Db,
        state: &Db,
        date: RunDate,
        retrain: bool,
        dry_run: bool,
    ) -> Result<Models> {
        let stored = if retrain {
            None
        } else {
            training::load_stored(s).await?
        };
        let (set, trained_on) = match stored {
            Some(set) => (set, None),
            None => {
                let training = extract::training_tables(source, Some(state), s, date).await?;
                let set = if dry_run {
                    info!("dry run: the models are trained for this preview and not stored");
                    training::train(s, &training.tables, date)?.set
                } else {
                    training::train_and_store(s, &training.tables, date)
                        .await?
                        .set
                };
                let whole = training.sample == Shard::WHOLE;
                (set, whole.then_some(training.tables))
            }
        };
        Ok(Models { set, trained_on })
    }
}

/// Scores every user of `tables` with `scorers` (a [`ModelSet`], loaded) as of `date` (on a
/// blocking thread).
#[instrument(name = "score", skip_all, fields(users = tables.users.height()))]
pub fn score(
    s: &Settings,
    tables: SourceTables,
    scorers: &Scorers,
    date: RunDate,
) -> Result<ScoredUsers> {
    let (scored, tables) = tokio::task::block_in_place(|| {
        models::training::score_users(tables, scorers, date, s.threads)
    })?;
    let (mut frame, tallies) = (scored.frame, scored.tallies);
    // The discount model's effect at each of its levels, under the names selection reads.
    let mut levels = Vec::new();
    for (level, effect) in scored.discount_by_level {
        let name = segments::select::discount_uplift_column(level);
        frame.with_column(Column::new(name.into(), effect))?;
        levels.push(level);
    }
    for name in segments::select::SCORED_COLUMNS {
        if frame.schema().get(name).is_none() {
            bail!("the scored users lack the column {name:?} that selection reads");
        }
    }
    info!(rows = frame.height(), "scored");
    Ok(ScoredUsers {
        tables,
        frame,
        tallies,
        discount_levels: levels,
    })
}

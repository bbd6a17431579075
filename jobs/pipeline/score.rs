//! The score stage: every user of the extracted tables (all users, or one shard's) scored by the
//! three models as of the run date, and the models to score with (the store's `current` ones,
//! or trained now).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use models::{RunDate, Scorers, SourceTables};
use polars::prelude::*;
use tracing::{info, instrument};

use super::extract::{self, Slice};
use crate::config::Settings;
use crate::state::db::Db;
use crate::training::{self, ModelSet, ModelUsed};

/// The extracted tables and every user's scores: what selection reads. Built only by
/// [`score`], which checks that the frame has every column selection needs.
#[derive(Debug)]
pub struct ScoredUsers {
    pub tables: SourceTables,
    /// One row per user: the feature catalogue, the scores and the consent and suppression
    /// flags (see [`segments::select::SCORED_COLUMNS`]).
    pub frame: DataFrame,
    pub model: ModelUsed,
    /// The version of each model by its name, as manifests and the ledger record them.
    pub versions: BTreeMap<String, String>,
    /// Categorical levels of the scoring model: text values in rules compile to its codes.
    pub levels: models::CategoricalLevels,
}

/// The models a run scores with; and, when they were trained now, the tables they were trained
/// on (every row of the source), which a run of one shard scores as they are.
pub struct Models {
    pub set: ModelSet,
    pub trained_on: Option<SourceTables>,
}

/// The models a run scores with: the store's `current` ones unless `retrain`, else trained now on
/// the whole source — and stored as the new `current`, except for a dry run, which changes
/// nothing.
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
                let tables =
                    extract::extract(source, Some(state), s, date, &Slice::Everything).await?;
                let set = if dry_run {
                    info!("dry run: the models are trained for this preview and not stored");
                    training::train(s, &tables, date)?.set
                } else {
                    training::train_and_store(s, &tables, date).await?.set
                };
                (set, Some(tables))
            }
        };
        Ok(Models { set, trained_on })
    }
}

/// Scores every user of `tables` with `set`, loaded as `scorers`, as of `date` (LightGBM runs
/// on a blocking thread).
#[instrument(name = "score", skip_all, fields(users = tables.users.height()))]
pub fn score(
    s: &Settings,
    tables: SourceTables,
    set: &ModelSet,
    scorers: &Scorers,
    date: RunDate,
) -> Result<ScoredUsers> {
    let scored = tokio::task::block_in_place(|| {
        models::training::score_users(&tables, scorers, date, s.threads)
    })?;
    let frame = scored.frame;
    for name in segments::select::SCORED_COLUMNS {
        if frame.schema().get(name).is_none() {
            bail!("the scored users lack the column {name:?} that selection reads");
        }
    }
    info!(rows = frame.height(), "scored");
    Ok(ScoredUsers {
        tables,
        frame,
        model: set.used.clone(),
        versions: set.versions(),
        levels: scorers.levels.clone(),
    })
}

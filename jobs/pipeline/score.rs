//! The score stage: every user of the extracted tables scored by the three models as of the run
//! date, and the models to score with (the store's `current` ones, or trained now).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use models::{RunDate, SourceTables};
use polars::prelude::*;
use tracing::{info, instrument};

use crate::config::Settings;
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

/// The models a run scores with: the store's `current` ones unless `retrain`, else trained now —
/// and stored as the new `current`, except for a dry run, which changes nothing.
pub async fn models(
    s: &Settings,
    tables: &SourceTables,
    date: RunDate,
    retrain: bool,
    dry_run: bool,
) -> Result<ModelSet> {
    if !retrain {
        if let Some(set) = training::load_stored(s).await? {
            return Ok(set);
        }
    }
    if dry_run {
        info!("dry run: the models are trained for this preview and not stored");
        return Ok(training::train(s, tables, date)?.set);
    }
    Ok(training::train_and_store(s, tables, date).await?.set)
}

/// Scores every user with `set` as of `date` (LightGBM runs on a blocking thread).
#[instrument(name = "score", skip_all, fields(users = tables.users.height()))]
pub fn score(
    s: &Settings,
    tables: SourceTables,
    set: &ModelSet,
    date: RunDate,
) -> Result<ScoredUsers> {
    let scorers = set.load(&s.models.store)?;
    let scored = tokio::task::block_in_place(|| {
        models::training::score_users(&tables, &scorers, date, s.threads)
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
        levels: scorers.levels,
    })
}

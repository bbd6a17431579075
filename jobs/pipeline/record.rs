//! The record stage: a staged export's assignments go into the history, then `_SUCCESS` makes
//! the export visible, then the ledger row says how the campaign's run ended.
//!
//! Assignments are recorded before `_SUCCESS`, so a list a CRM can see always has its history
//! (the frequency cap and the cooldown of later nights count it). They are stamped with the run
//! date's cutoff (its midnight, UTC), not the wall clock: they come back as exposures in later
//! nights' features, and a clock time would make those depend on when a night happened to run
//! (a night run before its midnight would even see itself when re-run).

use anyhow::Result;
use chrono::Utc;
use models::RunDate;
use segments::{Arm, Audience};
use tracing::instrument;

use super::publish::{self, Staged};
use crate::state::db::Db;
use crate::state::ledger::{self, Finish, Status};
use crate::store::ObjectStore;

/// Records the audience (both arms) of a staged export and completes the export. On failure
/// the staged files are removed, so nothing unrecorded is ever published.
#[instrument(name = "record", skip_all, fields(rows = audience.members.len()))]
pub async fn record(
    state: &Db,
    store: &ObjectStore,
    staged: &Staged,
    run_id: &str,
    audience: &Audience,
    date: RunDate,
) -> Result<()> {
    let recorded = async {
        ledger::record_assignments(state, run_id, audience, date.cutoff()).await?;
        publish::commit(store, staged).await
    }
    .await;
    if let Err(e) = recorded {
        publish::discard(store, staged).await;
        return Err(e);
    }
    publish::point_latest(store, &staged.prefix).await;
    Ok(())
}

/// How a campaign's run ended, for its ledger row.
#[derive(Debug)]
pub enum Ending<'a> {
    Published {
        audience: &'a Audience,
        uri: &'a str,
    },
    Failed {
        error: &'a str,
    },
    /// Failed after the export at `uri` was complete (its delivery to a watched prefix did not
    /// finish): the row keeps the URI, so the next run adopts the export (see
    /// `publish::Undelivered`).
    Undelivered {
        error: &'a str,
        uri: &'a str,
    },
}

/// Writes the end of a campaign's run to the ledger.
pub async fn finish(
    state: &Db,
    run_id: &str,
    campaign_id: &str,
    ending: Ending<'_>,
    model_versions: &str,
) -> Result<()> {
    let finished_at = Utc::now().timestamp();
    let finish = match ending {
        Ending::Published { audience, uri } => Finish {
            status: Status::Succeeded,
            finished_at,
            audience_size: Some(audience.count(Arm::Treatment)),
            holdout_size: Some(audience.count(Arm::Holdout)),
            model_versions,
            export_uri: Some(uri),
            error: None,
        },
        Ending::Failed { error } => Finish {
            status: Status::Failed,
            finished_at,
            audience_size: None,
            holdout_size: None,
            model_versions,
            export_uri: None,
            error: Some(error),
        },
        Ending::Undelivered { error, uri } => Finish {
            status: Status::Failed,
            finished_at,
            audience_size: None,
            holdout_size: None,
            model_versions,
            export_uri: Some(uri),
            error: Some(error),
        },
    };
    ledger::finish(state, run_id, campaign_id, &finish).await
}

/// A failed ledger row for a campaign whose file does not validate: the night ran without it,
/// and the ledger says why (`runs list` shows it; the next night tries again).
pub async fn invalid_file(
    state: &Db,
    run_id: &str,
    campaign_id: &str,
    date: RunDate,
    problems: &str,
) -> Result<()> {
    let now = Utc::now().timestamp();
    ledger::start(state, run_id, campaign_id, date, now, None).await?;
    let error = format!("the campaign file is invalid: {problems}");
    finish(
        state,
        run_id,
        campaign_id,
        Ending::Failed { error: &error },
        "{}",
    )
    .await
}

//! The record stage: the run ledger (`targeting_runs`) and the assignment history
//! (`targeting_assignments`) in the state database. Frequency caps and lift reports read this
//! history; it is also how an operator sees what ran.

use anyhow::{Context, Result};
use futures::TryStreamExt;
use models::RunDate;
use segments::{Audience, History, PastMessage};
use sqlx::Row;

use crate::state::db::{Db, Value};

const INSERT_RUN: &str = include_str!("../../sql/statements/insert_run.sql");
const FINISH_RUN: &str = include_str!("../../sql/statements/finish_run.sql");
const INSERT_ASSIGNMENTS: &str = include_str!("../../sql/statements/insert_assignments.sql");
const COPY_ASSIGNMENTS: &str = include_str!("../../sql/statements/copy_assignments.sql");
const INSERT_FORECASTS: &str = include_str!("../../sql/statements/insert_forecasts.sql");
const INSERT_DRIFT: &str = include_str!("../../sql/statements/insert_drift.sql");
const RUNS: &str = include_str!("../../sql/queries/runs.sql");
const MESSAGE_HISTORY: &str = include_str!("../../sql/queries/message_history.sql");

/// Where a campaign's run stands, as `targeting_runs.status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started, not finished (or its process died: the daemon marks those `aborted`).
    Running,
    Succeeded,
    Failed,
    /// Stopped at shutdown, or left `running` by a process that stopped.
    Aborted,
}

impl Status {
    const ALL: [Status; 4] = [
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Aborted => "aborted",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Status::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown run status {s:?} in targeting_runs"))
    }
}

/// The end of a campaign's run, as recorded.
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    pub status: Status,
    pub finished_at: i64,
    pub audience_size: Option<usize>,
    pub holdout_size: Option<usize>,
    pub model_versions: &'a str,
    pub export_uri: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// Records that a campaign's run has started, with a note for the operator if any.
pub async fn start(
    db: &Db,
    run_id: &str,
    campaign_id: &str,
    run_date: RunDate,
    at: i64,
    note: Option<&str>,
) -> Result<()> {
    sqlx::query(INSERT_RUN)
        .bind(run_id)
        .bind(campaign_id)
        .bind(run_date.to_string())
        .bind(at)
        .bind(note.map(str::to_string))
        .execute(&db.pool)
        .await
        .with_context(|| format!("cannot record the start of run {run_id} in {}", db.display))?;
    Ok(())
}

/// Records how a campaign's run ended.
pub async fn finish(db: &Db, run_id: &str, campaign_id: &str, f: &Finish<'_>) -> Result<()> {
    sqlx::query(FINISH_RUN)
        .bind(run_id)
        .bind(campaign_id)
        .bind(f.status.as_str())
        .bind(f.finished_at)
        .bind(f.audience_size.map(|n| n as i64))
        .bind(f.holdout_size.map(|n| n as i64))
        .bind(f.model_versions)
        .bind(f.export_uri.map(str::to_string))
        .bind(f.error.map(str::to_string))
        .execute(&db.pool)
        .await
        .with_context(|| format!("cannot record the end of run {run_id} in {}", db.display))?;
    Ok(())
}

/// Records every selected user of a campaign (both arms) with their scores and the discount
/// they were offered: with COPY on PostgreSQL, one prepared insert in one transaction on SQLite.
pub async fn record_assignments(db: &Db, run_id: &str, audience: &Audience, at: i64) -> Result<()> {
    let rows: Vec<Vec<Value>> = audience
        .members
        .iter()
        .map(|m| {
            let scores = serde_json::json!({
                "uplift": m.uplift,
                "p_control": m.p_control,
                "score": m.score,
                "rank": m.rank,
            });
            vec![
                Value::Text(run_id.into()),
                Value::Text(audience.campaign_id.clone()),
                Value::Int(m.user_id),
                Value::Text(m.arm.as_str().into()),
                Value::Text(scores.to_string()),
                Value::Int(at),
                Value::Float(m.discount_pct),
                Value::Bool(m.explore),
            ]
        })
        .collect();
    db.bulk_insert(COPY_ASSIGNMENTS, INSERT_ASSIGNMENTS, rows)
        .await
}

/// What a run expected of one campaign when it chose the audience (`targeting_forecasts`).
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub campaign_id: String,
    pub funnel: Vec<segments::FunnelStep>,
    pub eligible: usize,
    pub audience_size: usize,
    pub holdout_size: usize,
    /// Expected incremental purchases of the treatment arm.
    pub expected_conversions: f64,
    /// Expected discount given to the treatment arm, in currency units.
    pub expected_discount_cost: f64,
    pub discount_pct: f64,
    pub margin: f64,
    pub average_price: f64,
}

/// Records the forecasts of a run's campaigns (a dry run's too, marked as such), in one
/// transaction.
pub async fn record_forecasts(
    db: &Db,
    run_id: &str,
    run_date: RunDate,
    dry_run: bool,
    at: i64,
    forecasts: &[Forecast],
) -> Result<()> {
    let rows = forecasts
        .iter()
        .map(|f| {
            Ok(vec![
                Value::Text(run_id.into()),
                Value::Text(f.campaign_id.clone()),
                Value::Text(run_date.to_string()),
                Value::Bool(dry_run),
                Value::Int(at),
                Value::Text(serde_json::to_string(&f.funnel)?),
                Value::Int(f.eligible as i64),
                Value::Int(f.audience_size as i64),
                Value::Int(f.holdout_size as i64),
                Value::Float(f.expected_conversions),
                Value::Float(f.expected_discount_cost),
                Value::Float(f.discount_pct),
                Value::Float(f.margin),
                Value::Float(f.average_price),
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    db.insert(INSERT_FORECASTS, &rows)
        .await
        .with_context(|| format!("cannot record the forecasts of run {run_id}"))
}

/// One distribution's drift as a run measured it (`targeting_drift`).
#[derive(Debug, Clone, PartialEq)]
pub struct DriftRow {
    pub model: String,
    pub model_version: String,
    pub shift: models::drift::Shift,
    pub sampled: u64,
}

/// Records how far a run's users had moved from those the models were trained for (a dry run's too,
/// marked as such), in one transaction.
pub async fn record_drift(
    db: &Db,
    run_id: &str,
    run_date: RunDate,
    dry_run: bool,
    at: i64,
    drift: &[DriftRow],
) -> Result<()> {
    let rows: Vec<Vec<Value>> = drift
        .iter()
        .map(|d| {
            vec![
                Value::Text(run_id.into()),
                Value::Text(run_date.to_string()),
                Value::Bool(dry_run),
                Value::Int(at),
                Value::Text(d.model.clone()),
                Value::Text(d.model_version.clone()),
                Value::Text(d.shift.name.clone()),
                Value::OptFloat(Some(d.shift.psi).filter(|p| p.is_finite())),
                Value::Float(d.shift.missing_then),
                Value::Float(d.shift.missing_now),
                Value::Int(d.sampled as i64),
            ]
        })
        .collect();
    db.insert(INSERT_DRIFT, &rows)
        .await
        .with_context(|| format!("cannot record the drift of run {run_id}"))
}

/// A campaign run as the ledger has it (times in UTC Unix seconds).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub campaign_id: String,
    pub run_date: String,
    pub status: Status,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub audience_size: Option<i64>,
    pub holdout_size: Option<i64>,
    pub export_uri: Option<String>,
    pub error: Option<String>,
    pub note: Option<String>,
}

/// Which runs [`runs`] reads: `None` is any.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFilter<'a> {
    pub campaign: Option<&'a str>,
    pub status: Option<Status>,
    /// Run dates on or after this one.
    pub since: Option<RunDate>,
}

/// The most recent `limit` campaign runs the filter keeps, newest first.
pub async fn runs(db: &Db, filter: RunFilter<'_>, limit: usize) -> Result<Vec<RunRow>> {
    let context = || format!("cannot read the run ledger in {}", db.display);
    let rows = sqlx::query(RUNS)
        .bind(filter.campaign.unwrap_or("").to_string())
        .bind(limit as i64)
        .bind(filter.status.map_or("", Status::as_str).to_string())
        .bind(filter.since.map_or(String::new(), |d| d.to_string()))
        .fetch_all(&db.pool)
        .await
        .with_context(context)?;
    rows.iter()
        .map(|r| {
            let status: String = r.try_get(3).with_context(context)?;
            Ok(RunRow {
                run_id: r.try_get(0).with_context(context)?,
                campaign_id: r.try_get(1).with_context(context)?,
                run_date: r.try_get(2).with_context(context)?,
                status: status.parse()?,
                started_at: r.try_get(4).with_context(context)?,
                finished_at: r.try_get(5).with_context(context)?,
                audience_size: r.try_get(6).with_context(context)?,
                holdout_size: r.try_get(7).with_context(context)?,
                export_uri: r.try_get(8).with_context(context)?,
                error: r.try_get(9).with_context(context)?,
                note: r.try_get(10).with_context(context)?,
            })
        })
        .collect()
}

/// The assignments (both arms) users got in the `days` days before `run_date`, from the
/// assignment history: what the frequency cap and the discount cooldown read.
pub async fn history(db: &Db, run_date: RunDate, days: i64) -> Result<History> {
    let from = run_date.days_before(days.max(0)).to_string();
    let to = run_date.to_string();
    let mut history = History::default();
    let mut rows = sqlx::query(MESSAGE_HISTORY)
        .bind(from)
        .bind(to)
        .fetch(&db.pool);
    let context = || format!("cannot read the message history in {}", db.display);
    while let Some(row) = rows.try_next().await.with_context(context)? {
        let user: i64 = row.try_get(0).with_context(context)?;
        let date: String = row.try_get(1).with_context(context)?;
        let discount: f64 = row.try_get(2).with_context(context)?;
        let day: RunDate = date
            .parse()
            .with_context(|| format!("run_date {date:?} in targeting_runs is not YYYY-MM-DD"))?;
        history.by_user.entry(user).or_default().push(PastMessage {
            day: day.day(),
            discounted: discount > 0.0,
        });
    }
    Ok(history)
}

const SUCCEEDED_RUN: &str = include_str!("../../sql/queries/succeeded_run.sql");
const UNSETTLED_RUNS: &str = include_str!("../../sql/queries/unsettled_runs.sql");
const ABORT_RUNNING: &str = include_str!("../../sql/statements/abort_running.sql");

/// Whether a campaign already has a succeeded run for a date.
pub async fn has_succeeded(db: &Db, campaign_id: &str, run_date: RunDate) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(SUCCEEDED_RUN)
        .bind(campaign_id)
        .bind(run_date.to_string())
        .fetch_one(&db.pool)
        .await
        .with_context(|| format!("cannot read the run ledger in {}", db.display))?;
    Ok(n > 0)
}

/// The run ids of a campaign and date a complete export may be left of, oldest first: those
/// still `running`, those `aborted` (at shutdown, perhaps mid-delivery), and those `failed`
/// after their export was complete (with its URI).
pub async fn unsettled(db: &Db, campaign_id: &str, run_date: RunDate) -> Result<Vec<String>> {
    sqlx::query_scalar(UNSETTLED_RUNS)
        .bind(campaign_id)
        .bind(run_date.to_string())
        .fetch_all(&db.pool)
        .await
        .with_context(|| format!("cannot read the run ledger in {}", db.display))
}

/// Marks a campaign and date's runs that are still `running` as `aborted`, with the reason;
/// returns how many. Only the holder of that campaign and date's lock may call it.
pub async fn abort_running(
    db: &Db,
    campaign_id: &str,
    run_date: RunDate,
    reason: &str,
) -> Result<u64> {
    let done = sqlx::query(ABORT_RUNNING)
        .bind(campaign_id)
        .bind(run_date.to_string())
        .bind(chrono::Utc::now().timestamp())
        .bind(reason)
        .execute(&db.pool)
        .await
        .with_context(|| format!("cannot mark aborted runs in {}", db.display))?;
    Ok(done.rows_affected())
}

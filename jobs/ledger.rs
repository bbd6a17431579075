//! The record stage: the run ledger (`targeting_runs`) and the assignment history
//! (`targeting_assignments`) in the state database. Frequency caps and lift reports read this
//! history; it is also how an operator sees what ran.

use anyhow::{Context, Result};
use segments::Audience;

use crate::db::{Db, Value};

const INSERT_RUN: &str = include_str!("../sql/statements/insert_run.sql");
const FINISH_RUN: &str = include_str!("../sql/statements/finish_run.sql");
const INSERT_ASSIGNMENTS: &str = include_str!("../sql/statements/insert_assignments.sql");

/// How a campaign's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
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

/// Records that a campaign's run has started.
pub async fn start(
    db: &Db,
    run_id: &str,
    campaign_id: &str,
    run_date: &str,
    at: i64,
) -> Result<()> {
    sqlx::query(INSERT_RUN)
        .bind(run_id)
        .bind(campaign_id)
        .bind(run_date)
        .bind(at)
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

/// Records every selected user of a campaign (both arms) with their scores.
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
            ]
        })
        .collect();
    db.insert(INSERT_ASSIGNMENTS, &rows).await
}

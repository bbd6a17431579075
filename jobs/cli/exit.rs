//! Exit codes a scheduler can act on, and the result file of a run (`--result-json`): a
//! Kubernetes Job's `podFailurePolicy` (see `deploy/cronjob.yaml`) or Airflow's retries can tell
//! a broken configuration, which no retry fixes, from an outage, which one may.
//!
//! | code | meaning | retry? |
//! |---|---|---|
//! | 0 | every campaign asked for succeeded (or had already) | — |
//! | 1 | any other failure | no |
//! | 2 | wrong arguments (clap's own) | no |
//! | 3 | some campaigns failed, not for a transient reason; the others published | no |
//! | 75 | transient: the database or the object store could not be reached or timed out | yes |
//! | 78 | invalid configuration: the settings or a campaign file | no, fix it |

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::campaigns::CampaignProblems;
use crate::pipeline::{self, RunReport};

/// Any failure not classified below.
pub const FAILURE: u8 = 1;
/// Some campaigns failed, not transiently.
pub const CAMPAIGNS_FAILED: u8 = 3;
/// `EX_TEMPFAIL` (sysexits.h): try again later.
pub const TRANSIENT: u8 = 75;
/// `EX_CONFIG` (sysexits.h): the configuration is wrong.
pub const INVALID_CONFIG: u8 = 78;

/// A configuration error: the settings, or the campaigns a command was asked for.
#[derive(Debug)]
pub struct InvalidConfig(pub anyhow::Error);

impl std::fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for InvalidConfig {}

/// Marks an error as a configuration error.
pub fn invalid(e: anyhow::Error) -> anyhow::Error {
    if e.downcast_ref::<CampaignProblems>().is_some() {
        return e;
    }
    InvalidConfig(e).into()
}

/// Campaigns of a run that failed while others may have published.
#[derive(Debug)]
pub struct CampaignsFailed {
    pub message: String,
    /// Every failure was transient: the run as a whole may be tried again.
    pub transient: bool,
}

impl std::fmt::Display for CampaignsFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CampaignsFailed {}

/// The exit code of a failure.
pub fn code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<CampaignProblems>().is_some() || e.downcast_ref::<InvalidConfig>().is_some()
    {
        return INVALID_CONFIG;
    }
    if let Some(f) = e.downcast_ref::<CampaignsFailed>() {
        return if f.transient {
            TRANSIENT
        } else {
            CAMPAIGNS_FAILED
        };
    }
    if pipeline::is_transient(e) {
        TRANSIENT
    } else {
        FAILURE
    }
}

/// What happened to one campaign in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Published (its `_SUCCESS` and ledger row written).
    Published,
    /// Previewed only (`--dry-run`).
    Previewed,
    /// Already published for the date by an earlier run: skipped (`--force` publishes again).
    AlreadyPublished,
    /// A stopped run's complete export was adopted instead of published again.
    Adopted,
    /// Another process holds the campaign-day: not run here (a later try may run it).
    RunningElsewhere,
    Failed,
}

/// One campaign's line of the result file.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignResult {
    pub campaign_id: String,
    pub status: CampaignStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure may go away on its own (the database or the object store).
    pub transient: bool,
}

impl CampaignResult {
    /// A campaign that did not reach the pipeline.
    pub fn without_run(campaign_id: &str, status: CampaignStatus, uri: Option<String>) -> Self {
        CampaignResult {
            campaign_id: campaign_id.to_string(),
            status,
            audience: None,
            holdout: None,
            export_uri: uri,
            error: None,
            transient: false,
        }
    }

    /// Each campaign of a run's report.
    pub fn of_report(report: &RunReport, dry_run: bool) -> Vec<Self> {
        report
            .campaigns
            .iter()
            .map(|c| CampaignResult {
                campaign_id: c.campaign_id.clone(),
                status: match (&c.error, dry_run) {
                    (Some(_), _) => CampaignStatus::Failed,
                    (None, true) => CampaignStatus::Previewed,
                    (None, false) => CampaignStatus::Published,
                },
                audience: Some(c.audience),
                holdout: Some(c.holdout),
                export_uri: c.export_uri.clone(),
                error: c.error.clone(),
                transient: c.transient,
            })
            .collect()
    }
}

/// The result file of `targeting run --result-json FILE`, written whether the run succeeded
/// or not (as dbt's `run_results.json`).
#[derive(Debug, Serialize)]
pub struct RunResult {
    pub run_id: Option<String>,
    pub run_date: String,
    /// The process's exit code (see the module's table).
    pub exit_code: u8,
    /// Why the run failed as a whole, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub campaigns: Vec<CampaignResult>,
}

impl RunResult {
    /// Writes the file (whole: a temporary file renamed).
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("cannot write the result file {}", path.display()))
    }
}

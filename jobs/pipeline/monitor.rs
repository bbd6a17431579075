//! Model monitoring at scoring time: tonight's users against the users each model was trained
//! for, as they were on its training date ([`models::training::profile_population`]).
//!
//! Every shard counts a fixed sample of its users into the bins of each model's training
//! profile ([`models::drift`]); the counts are summed over the shards (in the process, or from
//! the `score-shard` manifests) and set against the profiles here: the population stability of
//! each model's score and of every feature, and the missing-value rates. A shifted distribution
//! is a warning in the run's log and summary, rows in the ledger (`targeting_drift`) for the
//! report, and a gauge on the daemon's `/metrics`.

use chrono::Utc;
use models::drift::{Shift, SHIFTED};
use models::training::Tallies;
use models::RunDate;
use serde::Serialize;
use tracing::warn;

use crate::state::db::Db;
use crate::state::ledger::{self, DriftRow};
use crate::training::ModelSet;

/// One model's drift tonight.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDrift {
    pub model: String,
    pub version: String,
    /// Users counted.
    pub sampled: u64,
    /// The model's score first, then each feature.
    pub shifts: Vec<Shift>,
}

impl ModelDrift {
    /// The distributions that moved enough to warn, largest shift first.
    pub fn warnings(&self) -> Vec<&Shift> {
        let mut w: Vec<&Shift> = self.shifts.iter().filter(|s| s.warns()).collect();
        w.sort_by(|a, b| b.psi.total_cmp(&a.psi));
        w
    }

    /// One line for people: stable, or what moved since training; with the largest shift.
    pub fn verdict(&self) -> String {
        let largest = self.largest().map_or_else(String::new, |s| {
            format!(" (largest PSI {:.3}, {})", s.psi, s.name)
        });
        let shifted = self.warnings();
        if shifted.is_empty() {
            format!("stable since training{largest}")
        } else {
            format!(
                "WARNING, moved since training: {}{largest}",
                describe(&shifted)
            )
        }
    }

    /// The largest PSI of any distribution, with its name.
    pub fn largest(&self) -> Option<&Shift> {
        self.shifts
            .iter()
            .filter(|s| s.psi.is_finite())
            .max_by(|a, b| a.psi.total_cmp(&b.psi))
    }
}

/// Tonight's tallies against the profiles of the set's models (those stored with one), and a
/// warning logged for each model with a shifted distribution.
pub fn assess(set: &ModelSet, tallies: &Tallies) -> Vec<ModelDrift> {
    let drift: Vec<ModelDrift> = set
        .artifacts()
        .into_iter()
        .filter_map(|a| {
            let m = &a.metadata;
            let profile = m.profile.as_ref()?;
            let tally = tallies.0.get(&m.name)?;
            Some(ModelDrift {
                model: m.name.clone(),
                version: m.version.clone(),
                sampled: tally.rows(),
                shifts: tally.drift(profile),
            })
        })
        .collect();
    for d in &drift {
        let shifted = d.warnings();
        if !shifted.is_empty() {
            // The log names what moved; the summary and the report say it with `verdict`.
            warn!(
                model = %d.model,
                version = %d.version,
                shifted = %describe(&shifted),
                threshold = SHIFTED,
                "tonight's users have moved away from those the model was trained for: its scores may be off; consider retraining"
            );
        }
    }
    drift
}

/// `name psi` of each shift, comma-separated, with the missing share when that is what grew.
fn describe(shifts: &[&Shift]) -> String {
    shifts
        .iter()
        .map(|s| {
            if s.psi >= SHIFTED {
                format!("{} {:.2}", s.name, s.psi)
            } else {
                format!(
                    "{} missing {:.0}% (was {:.0}%)",
                    s.name,
                    s.missing_now * 100.0,
                    s.missing_then * 100.0
                )
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records the drift in the ledger. The lists are out by then, so a failure here costs the
/// report its drift chart, not the night: it is a warning.
pub async fn record(state: &Db, run_id: &str, date: RunDate, dry_run: bool, drift: &[ModelDrift]) {
    let rows: Vec<DriftRow> = drift
        .iter()
        .flat_map(|d| {
            d.shifts.iter().map(|s| DriftRow {
                model: d.model.clone(),
                model_version: d.version.clone(),
                shift: s.clone(),
                sampled: d.sampled,
            })
        })
        .collect();
    let at = Utc::now().timestamp();
    if let Err(e) = ledger::record_drift(state, run_id, date, dry_run, at, &rows).await {
        warn!(error = %format!("{e:#}"), "the drift was not recorded");
    }
}

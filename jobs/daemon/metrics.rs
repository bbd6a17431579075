//! What the daemon tells a monitoring system: Prometheus metrics of the runs it recorded, and a
//! health check, served over HTTP by the daemon on a (loopback by default) address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::pipeline::monitor::ModelDrift;
use crate::state::ledger::Status;

/// Counters of the campaign runs this process recorded in the ledger.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// Ledger rows by (campaign, status).
    runs: BTreeMap<(String, String), u64>,
    /// Sum and count of run durations by campaign, in seconds.
    durations: BTreeMap<String, (f64, u64)>,
    /// Rows published (treatment arm) by campaign.
    rows: BTreeMap<String, u64>,
    /// Unix time of the last succeeded run by campaign.
    last_success: BTreeMap<String, i64>,
    /// Firings skipped because the run was done or held elsewhere, by campaign and reason.
    skipped: BTreeMap<(String, String), u64>,
    /// The campaign running now, if any.
    running: Option<String>,
    /// When each model's `current` version was trained (Unix time), as last read.
    trained_at: BTreeMap<String, i64>,
    /// The last run's population stability index by (model, distribution), and the number
    /// of distributions shifted enough to warn by model.
    psi: BTreeMap<(String, String), f64>,
    shifted: BTreeMap<String, usize>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Counters) -> T) -> T {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// A run recorded with `status`.
    pub fn record(&self, campaign: &str, status: Status, seconds: f64, rows: usize) {
        self.with(|c| {
            *c.runs
                .entry((campaign.into(), status.to_string()))
                .or_default() += 1;
            let d = c.durations.entry(campaign.into()).or_default();
            d.0 += seconds;
            d.1 += 1;
            if status == Status::Succeeded {
                *c.rows.entry(campaign.into()).or_default() += rows as u64;
                c.last_success
                    .insert(campaign.into(), chrono::Utc::now().timestamp());
            }
        });
    }

    /// A firing that did not run: `done` (already succeeded) or `locked` (running elsewhere).
    pub fn skipped(&self, campaign: &str, reason: &str) {
        self.with(|c| {
            *c.skipped
                .entry((campaign.into(), reason.into()))
                .or_default() += 1
        });
    }

    /// The drift a run measured: it replaces the previous run's.
    pub fn drift(&self, drift: &[ModelDrift]) {
        self.with(|c| {
            c.psi.clear();
            c.shifted.clear();
            for d in drift {
                c.shifted.insert(d.model.clone(), d.warnings().len());
                for s in d.shifts.iter().filter(|s| s.psi.is_finite()) {
                    c.psi.insert((d.model.clone(), s.name.clone()), s.psi);
                }
            }
        });
    }

    pub fn set_running(&self, campaign: Option<&str>) {
        self.with(|c| c.running = campaign.map(str::to_string));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.with(|c| {
            let mut out = String::new();
            let campaign = |k: &str| format!("{{campaign=\"{k}\"}}");
            family(
                &mut out,
                (
                    "targeting_runs_total",
                    "counter",
                    "Campaign runs recorded in the ledger by this process, by status.",
                ),
                c.runs.iter().map(|((k, status), n)| {
                    (
                        format!("{{campaign=\"{k}\",status=\"{status}\"}}"),
                        n.to_string(),
                    )
                }),
            );
            family(
                &mut out,
                (
                    "targeting_run_duration_seconds",
                    "summary",
                    "Duration of campaign runs.",
                ),
                c.durations.iter().flat_map(|(k, (sum, count))| {
                    [
                        (format!("_sum{}", campaign(k)), format!("{sum:.3}")),
                        (format!("_count{}", campaign(k)), count.to_string()),
                    ]
                }),
            );
            family(
                &mut out,
                (
                    "targeting_rows_published_total",
                    "counter",
                    "Rows published (treatment arm) by succeeded runs.",
                ),
                c.rows.iter().map(|(k, n)| (campaign(k), n.to_string())),
            );
            family(
                &mut out,
                (
                    "targeting_last_success_timestamp_seconds",
                    "gauge",
                    "When the campaign last succeeded.",
                ),
                c.last_success
                    .iter()
                    .map(|(k, t)| (campaign(k), t.to_string())),
            );
            family(
                &mut out,
                (
                    "targeting_skipped_total",
                    "counter",
                    "Firings that did not run: done already, or running elsewhere.",
                ),
                c.skipped.iter().map(|((k, reason), n)| {
                    (
                        format!("{{campaign=\"{k}\",reason=\"{reason}\"}}"),
                        n.to_string(),
                    )
                }),
            );
            family(
                &mut out,
                (
                    "targeting_running",
                    "gauge",
                    "Whether a campaign is running now.",
                ),
                [(String::new(), u8::from(c.running.is_some()).to_string())],
            );
            family(
                &mut out,
                (
                    "targeting_build_info",
                    "gauge",
                    "The running build: 1, labelled with its version.",
                ),
                [(
                    format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
                    "1".to_string(),
                )],
            );
            let now = chrono::Utc::now().timestamp();
            family(
                &mut out,
                (
                    "targeting_model_age_seconds",
                    "gauge",
                    "Age of each model's current version: how long ago it was trained.",
                ),
                c.trained_at.iter().map(|(model, at)| {
                    (format!("{{model=\"{model}\"}}"), (now - at).to_string())
                }),
            );
            family(
                &mut out,
                (
                    "targeting_drift_psi",
                    "gauge",
                    "Population stability index of a model's score or feature, the last run's users against the users the model was trained for, as of its training date.",
                ),
                c.psi.iter().map(|((model, name), psi)| {
                    (
                        format!("{{model=\"{model}\",name=\"{name}\"}}"),
                        format!("{psi:.6}"),
                    )
                }),
            );
            family(
                &mut out,
                (
                    "targeting_drift_shifted",
                    "gauge",
                    "Distributions of a model shifted enough to warn (PSI >= 0.25, or 10 more points missing), last run.",
                ),
                c.shifted
                    .iter()
                    .map(|(model, n)| (format!("{{model=\"{model}\"}}"), n.to_string())),
            );
            out
        })
    }

    /// Notes when each model's `current` version was trained (Unix time).
    pub fn trained(&self, model: &str, at: i64) {
        self.with(|c| {
            c.trained_at.insert(model.to_string(), at);
        });
    }

    /// The body of `/healthz`.
    pub fn health(&self) -> String {
        self.with(|c| {
            serde_json::json!({ "status": "ok", "running": c.running }).to_string() + "\n"
        })
    }
}

/// Appends one metric family: HELP and TYPE, then each sample as the series after the name (a
/// suffix and labels, e.g. `_sum{campaign="x"}`) and its value.
fn family(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    samples: impl IntoIterator<Item = (String, String)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (series, value) in samples {
        let _ = writeln!(out, "{name}{series} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_writes_every_family_with_its_samples() {
        let m = Metrics::default();
        m.record("deal", Status::Succeeded, 2.5, 100);
        m.record("deal", Status::Failed, 0.5, 0);
        m.skipped("deal", "locked");
        let text = m.render();
        for line in [
            "# TYPE targeting_runs_total counter",
            "targeting_runs_total{campaign=\"deal\",status=\"failed\"} 1",
            "targeting_runs_total{campaign=\"deal\",status=\"succeeded\"} 1",
            "targeting_run_duration_seconds_sum{campaign=\"deal\"} 3.000",
            "targeting_run_duration_seconds_count{campaign=\"deal\"} 2",
            "targeting_rows_published_total{campaign=\"deal\"} 100",
            "targeting_skipped_total{campaign=\"deal\",reason=\"locked\"} 1",
            "targeting_running 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn drift_gauges_hold_the_last_run() {
        let shift = |name: &str, psi: f64| models::drift::Shift {
            name: name.into(),
            psi,
            missing_then: 0.0,
            missing_now: 0.0,
        };
        let run = |psi: f64| ModelDrift {
            model: "conversion_uplift".into(),
            version: "v1".into(),
            sampled: 100,
            shifts: vec![shift("uplift", 0.01), shift("orders_365d", psi)],
        };
        let m = Metrics::default();
        m.drift(&[run(0.5)]);
        m.drift(&[run(0.3)]);
        let text = m.render();
        for line in [
            "targeting_drift_psi{model=\"conversion_uplift\",name=\"orders_365d\"} 0.300000",
            "targeting_drift_psi{model=\"conversion_uplift\",name=\"uplift\"} 0.010000",
            "targeting_drift_shifted{model=\"conversion_uplift\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}

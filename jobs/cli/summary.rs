//! The run summary: a table for people on stdout and `summary.json` for machines.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::pipeline::RunReport;
use crate::report::{count, money};
use crate::tools::demo::{AgainstTruth, GiftsAgainstTruth, LevelsAgainstTruth};

/// `summary.json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub run_date: String,
    pub users: usize,
    pub model: ModelSummary,
    pub campaigns: Vec<CampaignSummary>,
    /// Per monitored model: how far tonight's users had moved from those it was trained for.
    pub drift: Vec<DriftSummary>,
    /// The gift recipient model's top-1 accuracy on the truth's gifts, beside the rules
    /// without a model (demo only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gift_recipients: Option<GiftsAgainstTruth>,
}

/// One model's drift, in brief (every distribution's figures are in the ledger's
/// `targeting_drift`).
#[derive(Debug, Serialize)]
pub struct DriftSummary {
    pub model: String,
    /// Users counted (a fixed eighth of the night's).
    pub sampled: u64,
    /// The distribution that moved most, and its population stability index.
    pub largest: Option<(String, f64)>,
    /// The distributions shifted enough to warn (PSI ≥ 0.25, or 10 more points missing).
    pub shifted: Vec<String>,
    /// The same, in a line for people.
    pub verdict: String,
}

/// The model's headline figures.
#[derive(Debug, Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub version: String,
    /// The meta-learner chosen on validation Qini (`t`, `s`, `x`, `ct`).
    pub learner: String,
    /// Trained by this run (false: the store's `current` model was used).
    pub trained: bool,
    pub test_exposures: usize,
    /// Normalized Qini AUC (scikit-uplift's `qini_auc_score`) on held-out exposures.
    pub qini_auc: f64,
    /// Its 95 % bootstrap interval (200 seeded resamples of the held-out exposures).
    pub qini_auc_ci95: (f64, f64),
    /// The same with users ranked by their true uplift (demo only).
    pub oracle_qini_auc: Option<f64>,
    /// The same for a regressor of the training users' true uplift on the features: the most
    /// these features allow (demo only).
    pub feature_ceiling_qini_auc: Option<f64>,
    pub discount_uplift_version: String,
    /// Held-out Qini AUC of the discount uplift model.
    pub discount_uplift_qini_auc: f64,
    pub discount_sensitivity_version: String,
    /// Held-out AUC of the discount-sensitivity model on its own labels.
    pub discount_sensitivity_auc: f64,
    /// ROC AUC of the predicted sensitivity for the true deal hunters (demo only).
    pub discount_sensitivity_truth_auc: Option<f64>,
}

/// One campaign's figures.
#[derive(Debug, Serialize)]
pub struct CampaignSummary {
    pub campaign_id: String,
    pub kind: String,
    pub eligible: usize,
    /// Users the model chose, messaged and held out.
    pub audience: usize,
    pub holdout: usize,
    /// Users chosen at random among the eligible ones the model left (the `explore` share),
    /// messaged and held out.
    pub explore: usize,
    pub explore_holdout: usize,
    /// Expected incremental purchases from the model's exported users.
    pub expected_conversions: f64,
    /// Expected discount given to the exported users, in list prices of a purchase.
    pub expected_discount_cost: f64,
    /// The same in the campaign's currency, and the campaign's budget, if it has one.
    pub expected_discount_spend: f64,
    pub budget: Option<f64>,
    /// The campaign's `max_audience` (holdout included).
    pub max_audience: usize,
    /// What stopped the audience from growing: `max_audience`, `budget` or `eligibility`
    /// (every eligible user no other campaign took is in it).
    pub limited_by: &'static str,
    /// The smallest lift in purchase rate (a share, e.g. 0.012 for 1.2 points) the holdout can
    /// detect against the audience (two-sided 5 %, 80 % power, at the members' predicted base
    /// rate).
    pub holdout_mde: f64,
    /// For an offer with discount levels: how many exported users got each level (percent).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub discount_mix: Vec<(f64, usize)>,
    /// For a campaign with `[items]`: how many exported users were shown each item (item id,
    /// users), the most shown first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub item_mix: Vec<(i64, usize)>,
    /// Per-user levels against each level alone, valued by the truth (demo only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub levels_against_truth: Option<LevelsAgainstTruth>,
    /// Users left after each selection step.
    pub funnel: Vec<(String, usize)>,
    /// Eligible users each other campaign of the night wanted too.
    pub overlap: Vec<(String, usize)>,
    /// For a dry run: how many more users each other campaign would message without this one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub takes_from: Vec<(String, usize)>,
    pub export_uri: Option<String>,
    pub error: Option<String>,
    /// The conversions the message truly caused in the model's treatment arm (the random
    /// exploration aside) over the attribution window, from the truth (demo with
    /// `--outcome-days` only): what the lift report's interval for incremental conversions
    /// should cover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_incremental_conversions: Option<f64>,
}

impl Summary {
    /// The demo's true incremental conversions, by campaign.
    pub fn with_true_incremental(
        mut self,
        truth: &std::collections::BTreeMap<String, f64>,
    ) -> Self {
        for c in &mut self.campaigns {
            c.true_incremental_conversions = truth.get(&c.campaign_id).copied();
        }
        self
    }

    /// The demo's gift recipient model against the truth's gifts.
    pub fn with_gifts(mut self, gifts: Option<GiftsAgainstTruth>) -> Self {
        self.gift_recipients = gifts;
        self
    }

    /// The demo's discount levels against each level alone, by campaign.
    pub fn with_levels(mut self, levels: &[LevelsAgainstTruth]) -> Self {
        for c in &mut self.campaigns {
            c.levels_against_truth = levels
                .iter()
                .find(|l| l.campaign_id == c.campaign_id)
                .cloned();
        }
        self
    }

    /// What each offer gave per user: the discount levels of a campaign with levels (and, in
    /// the demo, what they earned against each level alone), the items of one with `[items]`.
    fn offer_lines(&self) -> String {
        let mut out = String::new();
        for c in &self.campaigns {
            if !c.item_mix.is_empty() {
                out.push_str(&format!(
                    "{}: items shown {}\n",
                    c.campaign_id,
                    item_mix_text(&c.item_mix)
                ));
            }
            if c.discount_mix.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "{}: discount levels {}\n",
                c.campaign_id,
                mix_text(&c.discount_mix)
            ));
            if let Some(l) = c.levels_against_truth.as_ref().map(|l| &l.written) {
                let best = l.single.iter().find(|v| v.levels == [l.best_single_level]);
                let undiscounted = best.map_or(f64::NAN, |b| b.buy_anyway_undiscounted);
                out.push_str(&format!(
                    "  against the truth: expected incremental profit {:.0}, against {:.0} for {}% \
                     to everyone it takes (the best single level), {:+.1}%; the eligible users' \
                     purchases without a message left undiscounted: {:.0}% (best single level: {:.0}%); \
                     knowing every user's true response, per-user levels would earn {:+.1}% over \
                     one level\n",
                    l.per_user.true_profit,
                    l.best_single_profit(),
                    l.best_single_level,
                    100.0 * l.gain_over_best_single,
                    100.0 * l.per_user.buy_anyway_undiscounted,
                    100.0 * undiscounted,
                    100.0 * l.oracle_gain_over_best_single,
                ));
            }
        }
        out
    }

    pub fn new(report: &RunReport, truth: Option<AgainstTruth>) -> Self {
        Summary {
            run_id: report.run_id.clone(),
            run_date: report.run_date.to_string(),
            users: report.users,
            model: ModelSummary {
                name: models::ModelName::ConversionUplift.to_string(),
                version: report.model.version.clone(),
                learner: report.model.learner.into(),
                trained: report.model.trained,
                test_exposures: report.model.test_exposures,
                qini_auc: report.model.qini_auc.estimate,
                qini_auc_ci95: (report.model.qini_auc.low, report.model.qini_auc.high),
                oracle_qini_auc: truth.map(|t| t.oracle_qini_auc),
                feature_ceiling_qini_auc: truth.map(|t| t.feature_ceiling_qini_auc),
                discount_uplift_version: report.model.discount_version.clone(),
                discount_uplift_qini_auc: report.model.discount_qini_auc,
                discount_sensitivity_version: report.model.sensitivity_version.clone(),
                discount_sensitivity_auc: report.model.sensitivity_auc,
                discount_sensitivity_truth_auc: truth.map(|t| t.sensitivity_auc),
            },
            campaigns: report
                .campaigns
                .iter()
                .map(|c| CampaignSummary {
                    campaign_id: c.campaign_id.clone(),
                    kind: c.kind.into(),
                    eligible: c.eligible,
                    audience: c.audience,
                    holdout: c.holdout,
                    explore: c.explore,
                    explore_holdout: c.explore_holdout,
                    expected_conversions: c.expected_conversions,
                    expected_discount_cost: c.expected_discount_cost,
                    expected_discount_spend: c.expected_discount_spend,
                    budget: c.budget,
                    max_audience: c.max_audience,
                    limited_by: limited_by(c),
                    holdout_mde: models::lift::minimum_detectable_effect(
                        c.base_rate,
                        c.audience as u64,
                        c.holdout as u64,
                    ),
                    discount_mix: c.discount_mix.clone(),
                    item_mix: c.item_mix.clone(),
                    levels_against_truth: None,
                    funnel: c.funnel.iter().map(|s| (s.step.clone(), s.users)).collect(),
                    overlap: c.overlap.clone(),
                    takes_from: c.takes_from.clone(),
                    export_uri: c.export_uri.clone(),
                    error: c.error.clone(),
                    true_incremental_conversions: None,
                })
                .collect(),
            drift: report
                .drift
                .iter()
                .map(|d| DriftSummary {
                    model: d.model.clone(),
                    sampled: d.sampled,
                    largest: d.largest().map(|s| (s.name.clone(), s.psi)),
                    shifted: d.warnings().iter().map(|s| s.name.clone()).collect(),
                    verdict: d.verdict(),
                })
                .collect(),
            gift_recipients: None,
        }
    }

    /// One line per monitored model: stable, or what moved since its training.
    fn drift_lines(&self) -> String {
        let mut out = String::new();
        for d in &self.drift {
            out.push_str(&format!(
                "drift {}: {} ({} users sampled)\n",
                d.model, d.verdict, d.sampled
            ));
        }
        out
    }

    /// The dry-run preview: per campaign, the funnel, the sizes, the expected effect and cost,
    /// and the overlap with the night's other campaigns.
    pub fn preview(&self) -> String {
        let mut out = format!(
            "dry run for {} over {} users: nothing published; the forecast is recorded, marked as a dry run\n",
            self.run_date,
            count(self.users as f64)
        );
        for c in &self.campaigns {
            out.push_str(&format!("\n{} ({})\n", c.campaign_id, c.kind));
            if let Some(e) = &c.error {
                out.push_str(&format!("  FAILED: {e}\n"));
                continue;
            }
            // Each step with the share of the step before it kept.
            let mut before: Option<usize> = None;
            for (step, users) in &c.funnel {
                let kept = before.filter(|&b| b > 0).map_or(String::new(), |b| {
                    format!("{:>6.1}%", 100.0 * *users as f64 / b as f64)
                });
                out.push_str(&format!(
                    "  {:>11}  {kept:>7}  {step}\n",
                    count(*users as f64)
                ));
                before = Some(*users);
            }
            let limit = match c.limited_by {
                "max_audience" => format!("max_audience {}", count(c.max_audience as f64)),
                "budget" => "the budget".to_string(),
                _ => "eligibility: every eligible user no other campaign took".to_string(),
            };
            out.push_str(&format!(
                "  audience {} + holdout {} (limited by {limit}); expected incremental \
                 conversions {}\n",
                count(c.audience as f64),
                count(c.holdout as f64),
                money(c.expected_conversions, 1),
            ));
            match c.budget {
                Some(budget) => out.push_str(&format!(
                    "  expected discount {} of the budget {} ({:.0}%)\n",
                    money(c.expected_discount_spend, 0),
                    money(budget, 0),
                    100.0 * c.expected_discount_spend / budget.max(f64::MIN_POSITIVE),
                )),
                None if c.expected_discount_spend > 0.0 => out.push_str(&format!(
                    "  expected discount {} (no budget)\n",
                    money(c.expected_discount_spend, 0),
                )),
                None => {}
            }
            let mde = 100.0 * c.holdout_mde;
            if mde > HOLDOUT_WARNING_POINTS {
                out.push_str(&format!(
                    "  WARNING: a holdout of {} users detects only a lift above {mde:.1} points: \
                     raise holdout or max_audience, or the report will not tell whether this \
                     campaign works\n",
                    count(c.holdout as f64),
                ));
            } else if mde.is_finite() {
                out.push_str(&format!(
                    "  the holdout detects a lift of {mde:.1} points or more\n"
                ));
            }
            if c.explore + c.explore_holdout > 0 {
                out.push_str(&format!(
                    "  explore: {} more messaged at random among the eligible users left, + holdout {} (beyond max_audience and the budget)\n",
                    count(c.explore as f64),
                    count(c.explore_holdout as f64)
                ));
            }
            if !c.discount_mix.is_empty() {
                out.push_str(&format!(
                    "  discount levels: {}\n",
                    mix_text(&c.discount_mix)
                ));
            }
            if !c.item_mix.is_empty() {
                out.push_str(&format!("  items shown: {}\n", item_mix_text(&c.item_mix)));
            }
            // Users per other campaign: those who were eligible for both, and those this one
            // takes from the others.
            for (label, per_campaign) in [
                ("eligible users other campaigns want too", &c.overlap),
                (
                    "takes tonight, in users the other campaigns would message without it",
                    &c.takes_from,
                ),
            ] {
                if !per_campaign.is_empty() {
                    let listed: Vec<String> = per_campaign
                        .iter()
                        .map(|(id, n)| format!("{id} {}", count(*n as f64)))
                        .collect();
                    out.push_str(&format!("  {label}: {}\n", listed.join(", ")));
                }
            }
        }
        if !self.drift.is_empty() {
            out.push('\n');
            out.push_str(&self.drift_lines());
        }
        out
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = format!(
            "run {} for {} over {} users\n\n{:<26} {:<12} {:>9} {:>9} {:>8}  export\n",
            self.run_id,
            self.run_date,
            count(self.users as f64),
            "campaign",
            "kind",
            "eligible",
            "audience",
            "holdout"
        );
        for c in &self.campaigns {
            let export = match (&c.export_uri, &c.error) {
                (Some(uri), _) => uri.clone(),
                (None, Some(e)) => format!("FAILED: {e}"),
                (None, None) => String::new(),
            };
            out.push_str(&format!(
                "{:<26} {:<12} {:>9} {:>9} {:>8}  {}\n",
                c.campaign_id,
                c.kind,
                count(c.eligible as f64),
                count(c.audience as f64),
                count(c.holdout as f64),
                export
            ));
        }
        let offers = self.offer_lines();
        if !offers.is_empty() {
            out.push('\n');
            out.push_str(&offers);
        }
        let m = &self.model;
        if !m.trained {
            out.push_str(&format!(
                "\nmodel {} {} ({}-learner, from the store) — held-out Qini AUC at training: {:.4}\n",
                m.name, m.version, m.learner, m.qini_auc
            ));
            out.push_str(&self.drift_lines());
            return out;
        }
        out.push_str(&format!(
            "\nmodel {} {} ({}-learner) — Qini AUC on {} held-out exposures: {:.4} (95% CI {:.4} to {:.4})",
            m.name,
            m.version,
            m.learner,
            m.test_exposures,
            m.qini_auc,
            m.qini_auc_ci95.0,
            m.qini_auc_ci95.1
        ));
        if let Some(oracle) = m.oracle_qini_auc {
            out.push_str(&format!(
                " (oracle from demo_truth: {oracle:.4}, model/oracle {:.2})",
                m.qini_auc / oracle
            ));
            if let Some(ceiling) = m.feature_ceiling_qini_auc {
                out.push_str(&format!(
                    "\n  feature ceiling (true uplift learned from the features): {ceiling:.4}, \
                     ceiling/oracle {:.2}, model/ceiling {:.2}",
                    ceiling / oracle,
                    m.qini_auc / ceiling
                ));
            }
        }
        out.push_str(&format!(
            "\nmodel discount_uplift {} — held-out Qini AUC {:.4}",
            m.discount_uplift_version, m.discount_uplift_qini_auc
        ));
        out.push_str(&format!(
            "\nmodel discount_sensitivity {} — held-out AUC {:.4}",
            m.discount_sensitivity_version, m.discount_sensitivity_auc
        ));
        if let Some(auc) = m.discount_sensitivity_truth_auc {
            out.push_str(&format!(" (AUC for the true deal hunters: {auc:.4})"));
        }
        if let Some(g) = &self.gift_recipients {
            let t = &g.top_one;
            out.push_str(&format!(
                "\nmodel gift_recipient — the friend it puts first received {:.1}% of {} held-out \
                 gifts ({:.1} friends to choose from); the most recent friend {:.1}%, the most \
                 active friend {:.1}%; chosen on validation gifts: {:?}",
                100.0 * t.model,
                t.gifts,
                t.mean_friends,
                100.0 * t.most_recent_friend,
                100.0 * t.most_active_friend,
                t.chosen,
            ));
        }
        out.push('\n');
        out.push_str(&self.drift_lines());
        out
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Above this minimum detectable lift, in points, a preview warns that the holdout is too
/// small to say whether the campaign works.
const HOLDOUT_WARNING_POINTS: f64 = 5.0;

/// What stopped a campaign's audience from growing (see [`CampaignSummary::limited_by`]).
fn limited_by(c: &crate::pipeline::CampaignReport) -> &'static str {
    let members = c.audience + c.holdout;
    if members >= c.max_audience {
        "max_audience"
    } else if c
        .budget
        .is_some_and(|b| c.expected_discount_spend >= 0.98 * b)
    {
        "budget"
    } else {
        "eligibility"
    }
}

/// `24 items; most shown: item 13 to 2103, item 8 to 1950, …` (the five most shown).
fn item_mix_text(mix: &[(i64, usize)]) -> String {
    let top: Vec<String> = mix
        .iter()
        .take(5)
        .map(|(item, n)| format!("item {item} to {}", count(*n as f64)))
        .collect();
    let more = if mix.len() > 5 { ", …" } else { "" };
    format!("{} items; most shown: {}{more}", mix.len(), top.join(", "))
}

/// How many users got each discount level, e.g. `10% to 1200, 20% to 300`.
fn mix_text(mix: &[(f64, usize)]) -> String {
    mix.iter()
        .map(|(pct, n)| format!("{pct}% to {}", count(*n as f64)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `targeting runs list`: one line per campaign run, newest first; the error, when there is
/// one, on the next line.
pub fn runs_table(runs: &[crate::state::ledger::RunRow]) -> String {
    use std::fmt::Write as _;
    let time = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0).map_or_else(
            || t.to_string(),
            |d| d.format("%Y-%m-%d %H:%M:%S").to_string(),
        )
    };
    let count = |n: Option<i64>| n.map_or_else(|| "-".into(), |n| n.to_string());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<28} {:<10} {:<9} {:<19} {:>7} {:>9} {:>8}  export",
        "run", "campaign", "date", "status", "started (UTC)", "seconds", "audience", "holdout"
    );
    for r in runs {
        let seconds = r
            .finished_at
            .map_or_else(|| "-".into(), |f| (f - r.started_at).to_string());
        let _ = writeln!(
            out,
            "{:<24} {:<28} {:<10} {:<9} {:<19} {:>7} {:>9} {:>8}  {}",
            r.run_id,
            r.campaign_id,
            r.run_date,
            r.status,
            time(r.started_at),
            seconds,
            count(r.audience_size),
            count(r.holdout_size),
            r.export_uri.as_deref().unwrap_or("-"),
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "{:<24} error: {e}", "");
        }
        if let Some(n) = &r.note {
            let _ = writeln!(out, "{:<24} note: {n}", "");
        }
    }
    out
}

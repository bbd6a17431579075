//! `targeting report`: did each campaign work? For every campaign-day in a range of run dates,
//! the treatment arm's outcomes against its holdout's over the attribution window after the run
//! date: conversions, revenue, discount and profit per user, the incremental totals with 95 %
//! intervals ([`models::lift`]), and beside them the forecast the run recorded when it chose
//! the audience. Then the global control group: every user outside it against it.
//!
//! The assignments and forecasts come from the state database; the outcomes from the source,
//! through `sql/queries/outcomes.sql` (or a deployment's own copy), read once for the whole
//! range of windows. Windows still open on the `as_of` date are reported as partial.

mod html;
mod text;

pub(crate) use text::{count, money};

use std::collections::HashMap;

use anyhow::{Context, Result};
use models::features::{ColumnKind, Slicing, TableSpec};
use models::lift::{self, Amounts};
use models::metrics::{qini_auc_score, qini_curve, uplift_by_decile, DecileRow, Interval};
use models::{RunDate, DAY};
use serde::Serialize;
use sqlx::Row;
use tracing::{info, instrument};

use crate::config::Settings;
use crate::pipeline::extract;
use crate::pipeline::monitor::ModelDrift;
use crate::state::db::{query_text, Db};

const OUTCOMES: &str = include_str!("../../sql/queries/outcomes.sql");
const ASSIGNMENTS: &str = include_str!("../../sql/queries/report_assignments.sql");
const FORECASTS: &str = include_str!("../../sql/queries/report_forecasts.sql");
const DRIFT: &str = include_str!("../../sql/queries/report_drift.sql");

/// Resamples of each arm behind the intervals of money.
const BOOTSTRAP_ROUNDS: usize = 1000;
/// Seed of the bootstrap: the same data gives the same report.
const BOOTSTRAP_SEED: u64 = 20_261_202;
/// The margin of a campaign-day without a recorded forecast: the campaign files' default.
const DEFAULT_MARGIN: f64 = segments::campaign::DEFAULT_MARGIN;

/// The columns the outcome query must return.
pub const OUTCOME_SPEC: TableSpec = TableSpec {
    name: "outcomes",
    columns: &[
        ("user_id", ColumnKind::Int),
        ("purchased_at", ColumnKind::Int),
        ("list_price_cents", ColumnKind::Int),
        ("paid_cents", ColumnKind::Int),
    ],
    slicing: Slicing::WHOLE,
};

const ASSIGNMENT_SPEC: TableSpec = TableSpec {
    name: "report_assignments",
    columns: &[
        ("run_id", ColumnKind::Text),
        ("campaign_id", ColumnKind::Text),
        ("run_date", ColumnKind::Text),
        ("user_id", ColumnKind::Int),
        ("arm", ColumnKind::Text),
        ("scores", ColumnKind::Text),
        ("explore", ColumnKind::Int),
    ],
    slicing: Slicing::WHOLE,
};

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    /// Run dates from (inclusive).
    pub from: RunDate,
    /// Run dates to (inclusive).
    pub to: RunDate,
    /// Outcomes are known up to this date's midnight: windows that end later are partial.
    pub as_of: RunDate,
    /// Only these campaigns; empty: all.
    pub campaigns: Vec<String>,
}

/// The report: one entry per campaign-day, and the global control group.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub as_of: String,
    pub attribution_days: i64,
    pub campaigns: Vec<CampaignLift>,
    /// The drift the range's latest run measured: its users against those its models were trained for.
    pub drift: Option<Drift>,
    /// `None` when the settings keep no global control group or no campaign-day is in range.
    pub global_control: Option<GlobalControl>,
}

/// One arm's outcomes over the attribution window; money in currency units.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ArmOutcome {
    pub users: u64,
    /// Users with a purchase in the window.
    pub conversions: u64,
    pub conversion_rate: f64,
    /// Paid by the arm's users in the window.
    pub revenue: f64,
    pub revenue_per_user: f64,
    /// List price minus paid, over the arm's purchases in the window.
    pub discount_given: f64,
    /// Paid minus the cost of the goods (list price × (1 − margin)).
    pub profit: f64,
}

/// A campaign-day's two arms.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Arms {
    pub treatment: ArmOutcome,
    pub holdout: ArmOutcome,
}

/// What the run expected when it chose the audience.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ForecastFigures {
    pub audience: u64,
    pub holdout: u64,
    pub incremental_conversions: f64,
    /// Expected discount given to the treatment arm, in currency units.
    pub discount_cost: f64,
}

/// One campaign-day: its arms, the lift, and the forecast beside it.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignLift {
    pub campaign_id: String,
    pub run_date: String,
    pub run_id: String,
    /// The attribution window has closed by `as_of`.
    pub complete: bool,
    /// The window's last day (inclusive).
    pub window_end: String,
    pub arms: Arms,
    /// Treatment's conversion rate minus the holdout's (per user).
    pub conversion_lift: Option<Interval>,
    /// Conversions the message caused in the treatment arm.
    pub incremental_conversions: Option<Interval>,
    pub incremental_revenue: Option<Interval>,
    pub incremental_profit: Option<Interval>,
    /// Discount given to the treatment arm in the window (currency units).
    pub discount_cost: f64,
    /// The discount the campaign caused: the treatment arm's discount per user minus the
    /// holdout's (who buy at other discounts too), times the treatment arm's users.
    pub incremental_discount: Option<Interval>,
    pub forecast: Option<ForecastFigures>,
    /// The smallest conversion lift the arms can tell from zero (5 % level, 80 % power).
    pub minimum_detectable_effect: Option<f64>,
    /// How the model's predicted uplift held up among the campaign's users (both arms); `None`
    /// without a holdout.
    pub model: Option<ModelCheck>,
    /// The model's choice against a random choice of the eligible users it left (the
    /// campaign's `explore` share); `None` for a campaign without exploration. The figures
    /// above are the model's choice alone.
    pub model_vs_random: Option<ModelVsRandom>,
    /// What a reader must know to read the figures (no holdout, a small holdout, partial).
    pub notes: Vec<String>,
}

/// One incremental figure as the text and the HTML show it, in the same order.
#[derive(Debug, Clone, Copy)]
struct Figure {
    name: &'static str,
    value: Option<Interval>,
    /// Decimals it is shown with: 0 for conversions, 2 for money.
    decimals: usize,
    /// The forecast made at run time, where one was.
    forecast: Option<f64>,
}

impl CampaignLift {
    /// The campaign-day's incremental figures, each beside its forecast.
    fn figures(&self) -> [Figure; 4] {
        let money = |name, value| Figure {
            name,
            value,
            decimals: 2,
            forecast: None,
        };
        [
            Figure {
                name: "incremental conversions",
                value: self.incremental_conversions,
                decimals: 0,
                forecast: self.forecast.map(|f| f.incremental_conversions),
            },
            money("incremental revenue", self.incremental_revenue),
            money("incremental profit", self.incremental_profit),
            money("incremental discount", self.incremental_discount),
        ]
    }
}

impl GlobalControl {
    /// The figures of everyone outside the group against it.
    fn figures(&self) -> [Figure; 2] {
        [
            Figure {
                name: "incremental conversions",
                value: self.incremental_conversions,
                decimals: 0,
                forecast: None,
            },
            Figure {
                name: "incremental revenue",
                value: self.incremental_revenue,
                decimals: 2,
                forecast: None,
            },
        ]
    }
}

/// What the model is worth: the lift per user of its choice against that of a random choice
/// of the eligible users it did not pick, each against its own holdout.
#[derive(Debug, Clone, Serialize)]
pub struct ModelVsRandom {
    /// The random choice's two arms.
    pub arms: Arms,
    /// The model's conversion lift per user (treatment rate minus holdout rate).
    pub model_lift: Option<Interval>,
    /// The random choice's.
    pub random_lift: Option<Interval>,
    /// The model's minus the random choice's (Zou and Donner's method over the two).
    pub difference: Option<Interval>,
}

/// The uplift model against what happened, over one campaign-day's users.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCheck {
    /// Normalized Qini AUC of the predicted uplift on the observed outcomes (as at training,
    /// where it was measured on held-out exposures).
    pub realized_qini_auc: f64,
    /// By decile of predicted uplift (1 = highest): the mean prediction against the observed
    /// difference of conversion rates, treatment minus holdout.
    pub by_decile: Vec<DecileRow>,
    /// The Qini curve, sampled for drawing: after the top `users` by predicted uplift (both
    /// arms), the treated conversions minus the holdout's scaled to the treated count. A
    /// random choice of users is the straight line to its last point.
    pub qini_curve: QiniPoints,
}

/// Points of a Qini curve.
#[derive(Debug, Clone, Serialize)]
pub struct QiniPoints {
    pub users: Vec<f64>,
    pub incremental: Vec<f64>,
}

/// Points of the report's Qini curves: enough for a smooth line, few enough for the JSON.
const QINI_POINTS: usize = 50;

/// A campaign-day's users as the model ranked them, with their outcome and arm.
#[derive(Debug, Default)]
struct Ranked {
    uplift: Vec<f64>,
    converted: Vec<bool>,
    treated: Vec<bool>,
}

impl Ranked {
    fn push(&mut self, uplift: f64, converted: bool, treated: bool) {
        self.uplift.push(uplift);
        self.converted.push(converted);
        self.treated.push(treated);
    }

    fn check(&self) -> ModelCheck {
        ModelCheck {
            realized_qini_auc: qini_auc_score(&self.converted, &self.uplift, &self.treated),
            by_decile: uplift_by_decile(&self.converted, &self.uplift, &self.treated),
            qini_curve: {
                let curve =
                    qini_curve(&self.converted, &self.uplift, &self.treated).sampled(QINI_POINTS);
                QiniPoints {
                    users: curve.x,
                    incremental: curve.y,
                }
            },
        }
    }
}

/// Every user outside the global control group against the group, over the range's windows:
/// by intent to treat, since who in the group a campaign would have reached is not known.
#[derive(Debug, Clone, Serialize)]
pub struct GlobalControl {
    pub from: String,
    pub window_end: String,
    pub complete: bool,
    pub share: f64,
    /// Users outside the group that a campaign of the range messaged.
    pub reached: u64,
    pub arms: GlobalArms,
    pub conversion_lift: Option<Interval>,
    /// Conversions caused across all users outside the group.
    pub incremental_conversions: Option<Interval>,
    pub incremental_revenue: Option<Interval>,
}

/// The drift a run measured (see [`crate::pipeline::monitor`]).
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub run_id: String,
    pub run_date: String,
    pub models: Vec<ModelDrift>,
}

/// Outside the group, and in it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GlobalArms {
    pub outside: ArmOutcome,
    pub control: ArmOutcome,
}

/// A purchase as the outcome query returns it.
#[derive(Debug, Clone, Copy)]
struct Purchase {
    at: i64,
    list_cents: i64,
    paid_cents: i64,
}

/// One user's outcome over a window.
#[derive(Debug, Clone, Copy, Default)]
struct UserOutcome {
    converted: bool,
    revenue: f64,
    discount: f64,
    profit: f64,
}

/// Every purchase in the range's windows, by user.
struct Outcomes(HashMap<i64, Vec<Purchase>>);

impl Outcomes {
    /// A user's outcome over `[from, until)` at `margin`.
    fn of(&self, user: i64, from: i64, until: i64, margin: f64) -> UserOutcome {
        let mut o = UserOutcome::default();
        for p in self.0.get(&user).into_iter().flatten() {
            if p.at >= from && p.at < until {
                o.converted = true;
                o.revenue += p.paid_cents as f64 / 100.0;
                o.discount += (p.list_cents - p.paid_cents) as f64 / 100.0;
                o.profit += (p.paid_cents as f64 - p.list_cents as f64 * (1.0 - margin)) / 100.0;
            }
        }
        o
    }
}

/// An arm's users' outcomes, summed, with the per-user amounts the bootstrap resamples.
#[derive(Debug, Default)]
struct ArmTally {
    users: u64,
    conversions: u64,
    revenue: Amounts,
    profit: Amounts,
    discount: Amounts,
}

impl ArmTally {
    fn add(&mut self, o: UserOutcome) {
        self.users += 1;
        self.revenue.users += 1;
        self.profit.users += 1;
        self.discount.users += 1;
        if o.converted {
            self.conversions += 1;
        }
        if o.revenue != 0.0 {
            self.revenue.nonzero.push(o.revenue);
        }
        if o.profit != 0.0 {
            self.profit.nonzero.push(o.profit);
        }
        if o.discount != 0.0 {
            self.discount.nonzero.push(o.discount);
        }
    }

    fn outcome(&self) -> ArmOutcome {
        let per_user = |x: f64| {
            if self.users == 0 {
                0.0
            } else {
                x / self.users as f64
            }
        };
        ArmOutcome {
            users: self.users,
            conversions: self.conversions,
            conversion_rate: per_user(self.conversions as f64),
            revenue: self.revenue.total(),
            revenue_per_user: per_user(self.revenue.total()),
            discount_given: self.discount.total(),
            profit: self.profit.total(),
        }
    }
}

/// A recorded forecast, as the report reads it.
#[derive(Debug, Clone, Copy)]
struct Recorded {
    figures: ForecastFigures,
    margin: f64,
}

/// One campaign-day's assignments while they are read.
struct Day {
    run_id: String,
    campaign_id: String,
    run_date: RunDate,
    treatment: Vec<Assigned>,
    holdout: Vec<Assigned>,
    /// The exploration sample's arms.
    explore_treatment: Vec<Assigned>,
    explore_holdout: Vec<Assigned>,
}

/// An assigned user, with the uplift the model predicted for them that night.
#[derive(Debug, Clone, Copy)]
struct Assigned {
    user: i64,
    uplift: f64,
}

/// The part of an assignment's `scores` the report reads.
#[derive(serde::Deserialize)]
struct Scores {
    uplift: f64,
}

/// Builds the report (see the module's header).
#[instrument(name = "report", skip_all, fields(from = %req.from, to = %req.to, as_of = %req.as_of))]
pub async fn report(s: &Settings, source: &Db, state: &Db, req: &ReportRequest) -> Result<Report> {
    let days = assignments(s, state, req).await?;
    let forecasts = forecasts(state, req).await?;
    let attribution = s.models.attribution_days;
    let known_until = req.as_of.cutoff();
    let window = |date: RunDate| {
        let from = date.cutoff();
        (from, (from + attribution * DAY).min(known_until))
    };
    let (Some(first), Some(last)) = (
        days.iter().map(|d| d.run_date).min(),
        days.iter().map(|d| d.run_date).max(),
    ) else {
        return Ok(Report {
            as_of: req.as_of.to_string(),
            attribution_days: attribution,
            campaigns: vec![],
            drift: drift(state, req).await?,
            global_control: None,
        });
    };
    let range = Range {
        first,
        from: window(first).0,
        until: window(last).1,
        end: last.days_after(attribution - 1),
        complete: last.cutoff() + attribution * DAY <= known_until,
    };
    let outcomes = outcomes(s, source, range.from, range.until).await?;

    let mut campaigns = Vec::new();
    for (i, day) in days.iter().enumerate() {
        let recorded = forecasts
            .get(&(day.run_id.clone(), day.campaign_id.clone()))
            .copied();
        let margin = recorded.map_or(DEFAULT_MARGIN, |r| r.margin);
        let (from, until) = window(day.run_date);
        // An arm's outcomes; with `ranked`, each user's prediction and outcome go there too.
        let tally = |users: &[Assigned], mut ranked: Option<(&mut Ranked, bool)>| {
            let mut t = ArmTally::default();
            for a in users {
                let o = outcomes.of(a.user, from, until, margin);
                t.add(o);
                if let Some((ranked, treated)) = ranked.as_mut() {
                    ranked.push(a.uplift, o.converted, *treated);
                }
            }
            t
        };
        let mut ranked = Ranked::default();
        let treatment = tally(&day.treatment, Some((&mut ranked, true)));
        let holdout = tally(&day.holdout, Some((&mut ranked, false)));
        let mut lift = campaign_lift(
            day,
            &treatment,
            &holdout,
            recorded,
            attribution,
            known_until,
            BOOTSTRAP_SEED + i as u64,
        );
        if holdout.users > 0 {
            lift.model = Some(ranked.check());
        }
        if !day.explore_treatment.is_empty() || !day.explore_holdout.is_empty() {
            let (t, h) = (
                tally(&day.explore_treatment, None),
                tally(&day.explore_holdout, None),
            );
            let random_lift =
                lift::newcombe_difference(t.conversions, t.users, h.conversions, h.users);
            lift.model_vs_random = Some(ModelVsRandom {
                arms: Arms {
                    treatment: t.outcome(),
                    holdout: h.outcome(),
                },
                model_lift: lift.conversion_lift,
                random_lift,
                difference: lift
                    .conversion_lift
                    .zip(random_lift)
                    .map(|(m, r)| lift::mover_difference(m, r)),
            });
        }
        campaigns.push(lift);
    }
    let global_control = if s.targeting.global_control_share > 0.0 {
        Some(global_control(s, source, &days, &outcomes, &range).await?)
    } else {
        None
    };
    info!(campaign_days = campaigns.len(), "report ready");
    Ok(Report {
        as_of: req.as_of.to_string(),
        attribution_days: attribution,
        campaigns,
        drift: drift(state, req).await?,
        global_control,
    })
}

/// The span of the range's attribution windows, from the first run date's to the last's.
struct Range {
    first: RunDate,
    from: i64,
    /// The end of the last window, or `as_of` when that comes first.
    until: i64,
    /// The last window's last day.
    end: RunDate,
    complete: bool,
}

/// The lift of one campaign-day from its arms' tallies.
fn campaign_lift(
    day: &Day,
    treatment: &ArmTally,
    holdout: &ArmTally,
    recorded: Option<Recorded>,
    attribution: i64,
    known_until: i64,
    seed: u64,
) -> CampaignLift {
    let n_t = treatment.users as f64;
    let end = day.run_date.cutoff() + attribution * DAY;
    let complete = end <= known_until;
    let lift = lift::newcombe_difference(
        treatment.conversions,
        treatment.users,
        holdout.conversions,
        holdout.users,
    );
    let money = |a: &Amounts, b: &Amounts| {
        lift::bootstrap_mean_difference(a, b, BOOTSTRAP_ROUNDS, seed).map(|i| lift::scaled(i, n_t))
    };
    let mut notes = Vec::new();
    let mut mde = None;
    if holdout.users == 0 {
        notes.push(
            "no holdout: without users held out nothing tells what the message caused (give the campaign a holdout share to measure it)"
                .to_string(),
        );
    } else {
        let base = holdout.conversions as f64 / holdout.users as f64;
        let m = lift::minimum_detectable_effect(base, treatment.users, holdout.users);
        mde = Some(m);
        if let Some(r) = recorded.filter(|r| r.figures.audience > 0) {
            let expected = r.figures.incremental_conversions / r.figures.audience as f64;
            if m > expected {
                notes.push(format!(
                    "the holdout of {} users can only tell a lift above {:.1} points from zero, and the forecast was {:.1} points: the interval will likely include zero",
                    holdout.users,
                    m * 100.0,
                    expected * 100.0
                ));
            }
        }
    }
    if !complete {
        notes.push(format!(
            "partial: the attribution window is open until {}",
            day.run_date.days_after(attribution)
        ));
    }
    if recorded.is_none() {
        notes.push(format!(
            "no forecast was recorded for this run: profit assumes a margin of {DEFAULT_MARGIN}"
        ));
    }
    CampaignLift {
        campaign_id: day.campaign_id.clone(),
        run_date: day.run_date.to_string(),
        run_id: day.run_id.clone(),
        complete,
        window_end: day.run_date.days_after(attribution - 1).to_string(),
        arms: Arms {
            treatment: treatment.outcome(),
            holdout: holdout.outcome(),
        },
        conversion_lift: lift,
        incremental_conversions: lift.map(|i| lift::scaled(i, n_t)),
        incremental_revenue: money(&treatment.revenue, &holdout.revenue),
        incremental_profit: money(&treatment.profit, &holdout.profit),
        discount_cost: treatment.discount.total(),
        incremental_discount: money(&treatment.discount, &holdout.discount),
        forecast: recorded.map(|r| r.figures),
        minimum_detectable_effect: mde,
        model: None,
        model_vs_random: None,
        notes,
    }
}

/// Every user outside the global control group against the group, over the whole range.
async fn global_control(
    s: &Settings,
    source: &Db,
    days: &[Day],
    outcomes: &Outcomes,
    range: &Range,
) -> Result<GlobalControl> {
    let t = &s.targeting;
    let users = population(s, source, range.first).await?;
    let (mut outside, mut control) = (ArmTally::default(), ArmTally::default());
    for u in users {
        let o = outcomes.of(u, range.from, range.until, DEFAULT_MARGIN);
        if segments::holdout::in_global_control(&t.global_control_salt, t.global_control_share, u) {
            control.add(o);
        } else {
            outside.add(o);
        }
    }
    let mut reached: Vec<i64> = days
        .iter()
        .flat_map(|d| {
            d.treatment
                .iter()
                .chain(&d.explore_treatment)
                .map(|a| a.user)
        })
        .collect();
    reached.sort_unstable();
    reached.dedup();
    let n = outside.users as f64;
    let lift = lift::newcombe_difference(
        outside.conversions,
        outside.users,
        control.conversions,
        control.users,
    );
    Ok(GlobalControl {
        from: range.first.to_string(),
        window_end: range.end.to_string(),
        complete: range.complete,
        share: t.global_control_share,
        reached: reached.len() as u64,
        arms: GlobalArms {
            outside: outside.outcome(),
            control: control.outcome(),
        },
        conversion_lift: lift,
        incremental_conversions: lift.map(|i| lift::scaled(i, n)),
        incremental_revenue: lift::bootstrap_mean_difference(
            &outside.revenue,
            &control.revenue,
            BOOTSTRAP_ROUNDS,
            BOOTSTRAP_SEED,
        )
        .map(|i| lift::scaled(i, n)),
    })
}

/// The campaign-days of the range (of the requested campaigns), with their arms' users.
async fn assignments(s: &Settings, state: &Db, req: &ReportRequest) -> Result<Vec<Day>> {
    let sql = ASSIGNMENTS
        .replace("{from}", &req.from.to_string())
        .replace("{to}", &req.to.to_string());
    let frame = state
        .fetch_frame(
            &ASSIGNMENT_SPEC,
            &sql,
            "sql/queries/report_assignments.sql",
            s.source.batch_rows,
        )
        .await?;
    let texts = |name: &str| -> Result<Vec<Option<&str>>> {
        Ok(frame.column(name)?.str()?.iter().collect())
    };
    let (runs, campaigns, dates, arms, scores) = (
        texts("run_id")?,
        texts("campaign_id")?,
        texts("run_date")?,
        texts("arm")?,
        texts("scores")?,
    );
    let users = frame.column("user_id")?.i64()?;
    let explore = frame.column("explore")?.i64()?;
    let mut days: Vec<Day> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for (row, user) in users.iter().enumerate() {
        let (Some(run), Some(campaign), Some(date), Some(user)) =
            (runs[row], campaigns[row], dates[row], user)
        else {
            continue;
        };
        if !req.campaigns.is_empty() && !req.campaigns.iter().any(|c| c == campaign) {
            continue;
        }
        let at = match index.get(&(run, campaign)) {
            Some(&at) => at,
            None => {
                let run_date: RunDate = date.parse().with_context(|| {
                    format!("run_date {date:?} in targeting_runs is not YYYY-MM-DD")
                })?;
                days.push(Day {
                    run_id: run.to_string(),
                    campaign_id: campaign.to_string(),
                    run_date,
                    treatment: Vec::new(),
                    holdout: Vec::new(),
                    explore_treatment: Vec::new(),
                    explore_holdout: Vec::new(),
                });
                index.insert((run, campaign), days.len() - 1);
                days.len() - 1
            }
        };
        let scored: Scores = serde_json::from_str(scores[row].unwrap_or_default())
            .with_context(|| format!("the scores of user {user} in targeting_assignments"))?;
        let assigned = Assigned {
            user,
            uplift: scored.uplift,
        };
        let day = &mut days[at];
        match (arms[row], explore.get(row) == Some(1)) {
            (Some("treatment"), false) => day.treatment.push(assigned),
            (Some("holdout"), false) => day.holdout.push(assigned),
            (Some("treatment"), true) => day.explore_treatment.push(assigned),
            (Some("holdout"), true) => day.explore_holdout.push(assigned),
            (other, _) => anyhow::bail!(
                "arm {other:?} of user {user} in targeting_assignments is neither treatment nor holdout"
            ),
        }
    }
    days.sort_by(|a, b| (a.run_date, &a.campaign_id).cmp(&(b.run_date, &b.campaign_id)));
    Ok(days)
}

/// The forecasts the runs of the range recorded, by run and campaign.
async fn forecasts(state: &Db, req: &ReportRequest) -> Result<HashMap<(String, String), Recorded>> {
    let context = || format!("cannot read the forecasts in {}", state.display);
    let rows = sqlx::query(FORECASTS)
        .bind(req.from.to_string())
        .bind(req.to.to_string())
        .fetch_all(&state.pool)
        .await
        .with_context(context)?;
    rows.iter()
        .map(|r| {
            let audience: i64 = r.try_get(2).with_context(context)?;
            let holdout: i64 = r.try_get(3).with_context(context)?;
            let recorded = Recorded {
                figures: ForecastFigures {
                    audience: audience.max(0) as u64,
                    holdout: holdout.max(0) as u64,
                    incremental_conversions: r.try_get(4).with_context(context)?,
                    discount_cost: r.try_get(5).with_context(context)?,
                },
                margin: r.try_get(6).with_context(context)?,
            };
            Ok((
                (
                    r.try_get(0).with_context(context)?,
                    r.try_get(1).with_context(context)?,
                ),
                recorded,
            ))
        })
        .collect()
}

/// The drift of the range's latest run, if one recorded any.
async fn drift(state: &Db, req: &ReportRequest) -> Result<Option<Drift>> {
    let context = || format!("cannot read the drift in {}", state.display);
    let rows = sqlx::query(DRIFT)
        .bind(req.from.to_string())
        .bind(req.to.to_string())
        .fetch_all(&state.pool)
        .await
        .with_context(context)?;
    let mut out: Option<Drift> = None;
    for r in &rows {
        let drift = out.get_or_insert(Drift {
            run_id: r.try_get(0).with_context(context)?,
            run_date: r.try_get(1).with_context(context)?,
            models: vec![],
        });
        let model: String = r.try_get(2).with_context(context)?;
        if drift.models.last().is_none_or(|m| m.model != model) {
            let sampled: i64 = r.try_get(8).with_context(context)?;
            drift.models.push(ModelDrift {
                model,
                version: r.try_get(3).with_context(context)?,
                sampled: sampled.max(0) as u64,
                shifts: vec![],
            });
        }
        let psi: Option<f64> = r.try_get(5).with_context(context)?;
        if let Some(m) = drift.models.last_mut() {
            m.shifts.push(models::drift::Shift {
                name: r.try_get(4).with_context(context)?,
                psi: psi.unwrap_or(f64::NAN),
                missing_then: r.try_get(6).with_context(context)?,
                missing_now: r.try_get(7).with_context(context)?,
            });
        }
    }
    Ok(out)
}

/// The purchases in `[from, until)`, by user, through the outcome query.
async fn outcomes(s: &Settings, source: &Db, from: i64, until: i64) -> Result<Outcomes> {
    let (sql, origin) = query_text(s.source.queries_dir.as_deref(), "outcomes", OUTCOMES)?;
    let sql = extract::restricted(
        &sql,
        &format!("purchased_at >= {from} AND purchased_at < {until}"),
    );
    let frame = source
        .fetch_frame(&OUTCOME_SPEC, &sql, &origin, s.source.batch_rows)
        .await?;
    let ints = |name: &str| -> Result<Vec<Option<i64>>> {
        Ok(frame.column(name)?.i64()?.iter().collect())
    };
    let (users, at, list, paid) = (
        ints("user_id")?,
        ints("purchased_at")?,
        ints("list_price_cents")?,
        ints("paid_cents")?,
    );
    let mut by_user: HashMap<i64, Vec<Purchase>> = HashMap::new();
    for row in 0..users.len() {
        if let (Some(u), Some(at)) = (users[row], at[row]) {
            by_user.entry(u).or_default().push(Purchase {
                at,
                list_cents: list[row].unwrap_or(0),
                paid_cents: paid[row].unwrap_or(0),
            });
        }
    }
    info!(rows = users.len(), users = by_user.len(), "outcomes read");
    Ok(Outcomes(by_user))
}

/// The users of the source's `users` query created before a run date: the population the
/// global control group is drawn from.
async fn population(s: &Settings, source: &Db, date: RunDate) -> Result<Vec<i64>> {
    const SPEC: TableSpec = TableSpec {
        name: "users",
        columns: &[("user_id", ColumnKind::Int)],
        slicing: Slicing::WHOLE,
    };
    let (sql, origin) = extract::contract_query(s, "users")?;
    let sql = format!(
        "SELECT user_id FROM ({}) AS users_of_the_night",
        extract::restricted(&sql, &format!("created_at < {}", date.cutoff()))
    );
    let frame = source
        .fetch_frame(&SPEC, &sql, &origin, s.source.batch_rows)
        .await?;
    Ok(frame.column("user_id")?.i64()?.iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> Day {
        Day {
            run_id: "r".into(),
            campaign_id: "c".into(),
            run_date: "2026-11-20".parse().unwrap(),
            treatment: vec![],
            holdout: vec![],
            explore_treatment: vec![],
            explore_holdout: vec![],
        }
    }

    fn tally(users: u64, conversions: u64) -> ArmTally {
        let mut t = ArmTally::default();
        for i in 0..users {
            t.add(UserOutcome {
                converted: i < conversions,
                revenue: if i < conversions { 20.0 } else { 0.0 },
                discount: 0.0,
                profit: if i < conversions { 6.0 } else { 0.0 },
            });
        }
        t
    }

    fn forecast(audience: u64, conversions: f64) -> Recorded {
        Recorded {
            figures: ForecastFigures {
                audience,
                holdout: 0,
                incremental_conversions: conversions,
                discount_cost: 0.0,
            },
            margin: 0.3,
        }
    }

    #[test]
    fn lift_scales_the_difference_of_rates_to_the_treatment_arm() {
        let c = campaign_lift(
            &day(),
            &tally(1000, 150),
            &tally(1000, 100),
            Some(forecast(1000, 40.0)),
            7,
            i64::MAX,
            1,
        );
        let i = c.incremental_conversions.unwrap();
        assert!((i.estimate - 50.0).abs() < 1e-9, "{i:?}");
        assert!(i.low < 50.0 && i.high > 50.0 && i.low > 0.0, "{i:?}");
        let r = c.incremental_revenue.unwrap();
        assert!((r.estimate - 1000.0).abs() < 1e-6, "{r:?}");
        assert!(c.complete && c.notes.is_empty(), "{:?}", c.notes);
        assert_eq!(c.window_end, "2026-11-26");
        assert_eq!(c.arms.treatment.revenue, 3000.0);
    }

    #[test]
    fn no_holdout_gives_no_lift_and_says_why() {
        let c = campaign_lift(&day(), &tally(500, 50), &tally(0, 0), None, 7, i64::MAX, 1);
        assert!(c.incremental_conversions.is_none() && c.incremental_profit.is_none());
        assert!(c.minimum_detectable_effect.is_none());
        assert!(c.notes[0].starts_with("no holdout"), "{:?}", c.notes);
        assert!(c.notes[1].contains("no forecast"), "{:?}", c.notes);
    }

    #[test]
    fn a_holdout_too_small_for_the_forecast_and_an_open_window_are_said() {
        // 51 users held out detect ~17 points at a 10 % rate; the forecast is 2 points.
        let c = campaign_lift(
            &day(),
            &tally(5000, 600),
            &tally(51, 5),
            Some(forecast(5000, 100.0)),
            7,
            "2026-11-23".parse::<RunDate>().unwrap().cutoff(),
            1,
        );
        assert!(c.minimum_detectable_effect.unwrap() > 0.1);
        assert!(
            c.notes[0].starts_with("the holdout of 51 users can only tell a lift above")
                && c.notes[0].contains("the forecast was 2.0 points"),
            "{:?}",
            c.notes
        );
        assert!(!c.complete);
        assert_eq!(
            c.notes[1],
            "partial: the attribution window is open until 2026-11-27"
        );
    }

    #[test]
    fn outcomes_count_only_the_window() {
        let outcomes = Outcomes(HashMap::from([(
            7,
            vec![
                Purchase {
                    at: 99,
                    list_cents: 1000,
                    paid_cents: 1000,
                },
                Purchase {
                    at: 100,
                    list_cents: 2000,
                    paid_cents: 1500,
                },
                Purchase {
                    at: 200,
                    list_cents: 1000,
                    paid_cents: 1000,
                },
            ],
        )]));
        let o = outcomes.of(7, 100, 200, 0.4);
        assert!(o.converted);
        assert_eq!((o.revenue, o.discount), (15.0, 5.0));
        // Paid 15.00 against goods that cost 20.00 × 0.6.
        assert!((o.profit - 3.0).abs() < 1e-9);
        assert!(!outcomes.of(8, 0, 1000, 0.4).converted);
    }
}

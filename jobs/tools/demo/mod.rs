//! `targeting demo`: a synthetic source with a known truth ([`generate`]), then the nightly run
//! on it, and beside the run what only synthetic data can tell: how the models compare with the
//! truth (the oracle's Qini, the features' ceiling, how well deal hunters are found, who
//! receives a gift).
//!
//! The diagnostics stay here: the demo extracts what training reads, trains and scores those
//! users first, keeps what it needs of that (the held-out exposures, the feature ceiling, the
//! scores), and hands the models to the run, which scores, selects, publishes and records
//! exactly as a nightly run does.

mod generate;
mod levels;
mod outcomes;

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use models::training::{feature_ceiling, UpliftTarget};
use tracing::info;

pub use generate::{ensure, DemoSpec, OUTCOME_DAYS};
pub use levels::LevelsAgainstTruth;

use crate::config::Settings;
use crate::pipeline::score::ScoredUsers;
use crate::pipeline::{self, RunReport, RunRequest};
use crate::state::db::Db;
use crate::training::{self, Trained};

/// The `demo_truth` table as the demo reads it.
const TRUTH_SPEC: models::features::TableSpec = models::features::TableSpec {
    name: "demo_truth",
    columns: &[
        ("user_id", models::features::ColumnKind::Int),
        ("true_uplift", models::features::ColumnKind::Float),
        (
            "true_discount_sensitivity",
            models::features::ColumnKind::Float,
        ),
        ("true_base_rate", models::features::ColumnKind::Float),
        ("true_discount_cap", models::features::ColumnKind::Float),
        (
            "true_discount_threshold",
            models::features::ColumnKind::Float,
        ),
    ],
    slicing: models::features::Slicing::WHOLE,
};

const TRUTH_SQL: &str = include_str!("../../../sql/queries/demo_truth.sql");

/// The demo's truth, by user.
#[derive(Debug, Clone)]
pub struct Truth {
    pub uplift: HashMap<i64, f64>,
    pub sensitivity: HashMap<i64, f64>,
    /// Each user's whole response: purchase rate, message and discount effects.
    pub responses: HashMap<i64, generate::Response>,
}

/// Reads `demo_truth`.
pub async fn truth(db: &Db) -> Result<Truth> {
    let truth = db
        .fetch_frame(
            &TRUTH_SPEC,
            TRUTH_SQL,
            "sql/queries/demo_truth.sql",
            100_000,
        )
        .await?;
    let users: Vec<i64> = truth
        .column("user_id")?
        .i64()?
        .iter()
        .map(|v| v.unwrap_or_default())
        .collect();
    let by_user = |name: &str| -> Result<HashMap<i64, f64>> {
        Ok(users
            .iter()
            .copied()
            .zip(truth.column(name)?.f64()?.iter())
            .map(|(u, v)| (u, v.unwrap_or(f64::NAN)))
            .collect())
    };
    let (uplift, rate) = (by_user("true_uplift")?, by_user("true_base_rate")?);
    let (cap, threshold) = (
        by_user("true_discount_cap")?,
        by_user("true_discount_threshold")?,
    );
    let responses = users
        .iter()
        .map(|u| {
            let response = generate::Response {
                rate: rate[u],
                uplift: uplift[u],
                discount: generate::DoseResponse {
                    cap: cap[u],
                    threshold: threshold[u],
                },
            };
            (*u, response)
        })
        .collect();
    Ok(Truth {
        uplift,
        sensitivity: by_user("true_discount_sensitivity")?,
        responses,
    })
}

/// The demo's figures against `demo_truth`.
#[derive(Debug, Clone, Copy)]
pub struct AgainstTruth {
    /// The Qini of the best possible model: the held-out exposures ranked by their users' *true*
    /// uplift, on the same observed outcomes the model was evaluated on.
    pub oracle_qini_auc: f64,
    /// The Qini of a regressor that learned the training users' true uplift from the features
    /// (see [`feature_ceiling`]): the most any model can reach with these features.
    pub feature_ceiling_qini_auc: f64,
    /// How well the predicted discount sensitivity picks out the true deal hunters (true
    /// sensitivity above 0.5): ROC AUC over the users training read (every user, unless there
    /// were more exposures than `models.max_training_exposures`).
    pub sensitivity_auc: f64,
}

/// The demo's night: the run's report, with the models as trained for it, and the models
/// against the truth.
#[derive(Debug)]
pub struct DemoRun {
    pub report: RunReport,
    pub truth: AgainstTruth,
    /// Per campaign, the conversions its message truly caused in the simulated days after the
    /// night (empty without them).
    pub true_incremental: BTreeMap<String, f64>,
    /// Each campaign with discount levels against each of its levels alone.
    pub levels: Vec<LevelsAgainstTruth>,
    /// The gift recipient model against the truth's gifts, and the rules without a model
    /// (`None` when the source has too few gifts to learn from).
    pub gifts: Option<GiftsAgainstTruth>,
}

/// The gift recipient model's top-1 accuracy on the gifts of held-out senders, drawn from the
/// truth's [`generate::Gifting`], beside the most recent and the most active friend.
pub type GiftsAgainstTruth = models::gifts::RecipientFigures;

/// Trains on the demo source (all of it, or the sample of users training reads above
/// `models.max_training_exposures`), measures the models against the truth on the users it
/// trained on, and runs the night with those models; then draws the `outcome_days` days after
/// it from the truth (none when 0).
pub async fn run(
    s: &Settings,
    source: &Db,
    state: &Db,
    request: RunRequest<'_>,
    spec: DemoSpec,
    outcome_days: i64,
) -> Result<DemoRun> {
    let date = request.date;
    outcomes::clear(source, spec).await?;
    let training = pipeline::extract::training_tables(source, Some(state), s, date).await?;
    let trained = training::train_and_store(s, &training.tables, date).await?;
    let truth = truth(source).await?;
    let ceiling = tokio::task::block_in_place(|| {
        let opts = training::options(s, date);
        feature_ceiling(
            &training.tables,
            UpliftTarget::Conversion,
            &opts,
            &truth.uplift,
        )
    })?;
    // Trained with the other models (the night's gift campaign uses it); its test gifts are
    // the truth's.
    let gifts = trained.gift_figures.clone();
    // Tables of every user are the night's as they are (a clone shares their columns); a
    // sample's are dropped once scored, and the night extracts its users shard by shard.
    let whole = training.sample == models::Shard::WHOLE;
    let trained_on = whole.then(|| training.tables.clone());
    let scored = {
        let scorers = trained.set.load(s)?;
        pipeline::score::score(s, training.tables, &scorers, date)?
    };
    let against = against_truth(&truth, &trained, &ceiling, &scored)?;
    let levels = tokio::task::block_in_place(|| {
        levels::against_truth(
            s,
            &request.campaigns,
            &trained.set.uplift.metadata.categorical_levels,
            &scored,
            date,
            &truth.responses,
        )
    })?;
    drop(scored);
    let models = pipeline::score::Models {
        set: trained.set,
        trained_on,
    };
    let report = pipeline::run_with(request, source, state, models).await?;
    let true_incremental = if outcome_days > 0 {
        outcomes::simulate(source, state, &report.run_id, spec, outcome_days).await?
    } else {
        BTreeMap::new()
    };
    Ok(DemoRun {
        report,
        truth: against,
        true_incremental,
        levels,
        gifts,
    })
}

/// Compares freshly trained models, the feature ceiling and the scores of the users they were
/// trained on with the demo's truth.
fn against_truth(
    truth: &Truth,
    trained: &Trained,
    ceiling: &[f64],
    scored: &ScoredUsers,
) -> Result<AgainstTruth> {
    let test = &trained.held_out;
    let qini =
        |scores: &[f64]| models::metrics::qini_auc_score(&test.outcome, scores, &test.treated);
    let oracle: Vec<f64> = test
        .user_id
        .iter()
        .map(|u| truth.uplift.get(u).copied().unwrap_or(0.0))
        .collect();
    let deal_hunter: Vec<bool> = scored
        .frame
        .column("user_id")?
        .i64()?
        .iter()
        .map(|u| {
            u.and_then(|u| truth.sensitivity.get(&u))
                .is_some_and(|&s| s > 0.5)
        })
        .collect();
    let predicted: Vec<f64> = scored
        .frame
        .column("discount_sensitivity")?
        .f64()?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect();
    let against = AgainstTruth {
        oracle_qini_auc: qini(&oracle),
        feature_ceiling_qini_auc: qini(ceiling),
        sensitivity_auc: models::metrics::roc_auc(&deal_hunter, &predicted),
    };
    info!(
        oracle_qini_auc = against.oracle_qini_auc,
        feature_ceiling_qini_auc = against.feature_ceiling_qini_auc,
        sensitivity_auc = against.sensitivity_auc,
        "models against the truth"
    );
    Ok(against)
}

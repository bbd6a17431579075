//! What happens after the demo's night: the purchases of the days after its run date, drawn
//! from the truth, so that `targeting report` on the demo shows a real lift, and anyone can
//! check the report's intervals against the true effect.
//!
//! In the attribution window (the first [`OUTCOME_DAYS`] days, the window the truth's effects
//! are defined on) each user buys at most once, with the probability of their baseline, plus,
//! in a campaign's treatment arm, the true effect of its message and offer — as in the past
//! campaigns the models learned from ([`Response::window_probability`]). After the window, background
//! orders continue at the user's own rate. Each treatment user adds `p(treated) − p(baseline)`
//! to the campaign's true incremental conversions.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use models::DAY;
use polars::prelude::DataFrame;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};
use sqlx::Row;
use tracing::{info, instrument};

use super::generate::{paid_cents, DemoSpec, DoseResponse, Response, OUTCOME_DAYS};
use super::{TRUTH_SPEC, TRUTH_SQL};
use crate::state::db::{Db, Value};
use crate::state::frames::ChunkSink;

const CLEAR: &str = include_str!("../../../sql/statements/demo_clear_outcomes.sql");
const ASSIGNMENTS: &str = include_str!("../../../sql/queries/demo_run_assignments.sql");
const BASE: &str = include_str!("../../../sql/queries/demo_outcome_base.sql");
const INSERT_PURCHASES: &str = include_str!("../../../sql/statements/insert_purchases.sql");

/// Users of the truth read per chunk.
const CHUNK_ROWS: usize = 100_000;

/// A user's message of the night: the campaign (an index into the night's campaigns), the arm
/// and the offer's discount.
#[derive(Debug, Clone, Copy)]
struct Message {
    campaign: usize,
    treated: bool,
    discount_pct: f64,
    /// Of the campaign's random exploration, not of the model's choice.
    explore: bool,
}

/// Removes the outcomes an earlier demo night drew, before a new night reads the source: they
/// lie after the run date, where the night must see nothing.
pub async fn clear(source: &Db, spec: DemoSpec) -> Result<()> {
    sqlx::query(CLEAR)
        .bind(spec.anchor)
        .execute(&source.pool)
        .await
        .context("cannot clear the demo's earlier outcomes")?;
    Ok(())
}

/// Draws the `days` days after the demo's run date for every user, given the assignments of
/// the night's run `run_id` (after [`clear`]), and writes them to `purchases`. Returns, per
/// campaign, the true incremental conversions of its treatment arm (the model's choice).
#[instrument(name = "outcomes", skip_all, fields(days))]
pub async fn simulate(
    source: &Db,
    state: &Db,
    run_id: &str,
    spec: DemoSpec,
    days: i64,
) -> Result<BTreeMap<String, f64>> {
    let (campaigns, messages) = messages(state, run_id).await?;
    let base = sqlx::query(BASE)
        .fetch_all(&source.pool)
        .await
        .context("cannot read the demo's items")?;
    let mut items = Vec::new();
    let mut last_order = 0i64;
    for row in &base {
        items.push((row.try_get(0)?, row.try_get(1)?));
        last_order = row.try_get(2)?;
    }
    let draw = Draw {
        anchor: spec.anchor,
        days,
        items,
        messages,
        rng: ChaCha8Rng::seed_from_u64(spec.seed ^ 0x6f75_7463_6f6d_6573),
        next_order: last_order + 1,
        rows: Vec::new(),
        truth: vec![0.0; campaigns.len()],
    };
    let drawn = source
        .fetch_chunks(
            &TRUTH_SPEC,
            TRUTH_SQL,
            "sql/queries/demo_truth.sql",
            CHUNK_ROWS,
            draw,
        )
        .await?;
    source.insert(INSERT_PURCHASES, &drawn.rows).await?;
    info!(rows = drawn.rows.len(), "outcomes drawn");
    Ok(campaigns.into_iter().zip(drawn.truth).collect())
}

/// The night's campaigns, and each assigned user's message.
async fn messages(state: &Db, run_id: &str) -> Result<(Vec<String>, HashMap<i64, Message>)> {
    let rows = sqlx::query(ASSIGNMENTS)
        .bind(run_id)
        .fetch_all(&state.pool)
        .await
        .with_context(|| format!("cannot read the assignments of run {run_id}"))?;
    let mut campaigns: Vec<String> = Vec::new();
    let mut messages = HashMap::with_capacity(rows.len());
    for row in rows {
        let campaign: String = row.try_get(0)?;
        let at = match campaigns.iter().position(|c| *c == campaign) {
            Some(at) => at,
            None => {
                campaigns.push(campaign);
                campaigns.len() - 1
            }
        };
        let arm: String = row.try_get(2)?;
        messages.insert(
            row.try_get::<i64, _>(1)?,
            Message {
                campaign: at,
                treated: arm == "treatment",
                discount_pct: row.try_get(3)?,
                explore: row.try_get::<i64, _>(4)? == 1,
            },
        );
    }
    Ok((campaigns, messages))
}

/// Draws each chunk of the truth's users' purchases as it arrives.
struct Draw {
    anchor: i64,
    days: i64,
    /// Item ids and list prices.
    items: Vec<(i64, i64)>,
    messages: HashMap<i64, Message>,
    rng: ChaCha8Rng,
    next_order: i64,
    rows: Vec<Vec<Value>>,
    /// The true incremental conversions, per campaign.
    truth: Vec<f64>,
}

impl Draw {
    fn order(&mut self, user: i64, at: i64, discounted: bool) {
        let (item, price) = self.items[self.rng.random_range(0..self.items.len())];
        let paid = paid_cents(price, discounted, &mut self.rng);
        self.rows.push(vec![
            Value::Int(self.next_order),
            Value::Int(user),
            Value::Int(item),
            Value::Int(at),
            Value::Int(price),
            Value::Int(paid),
            Value::Bool(false),
            Value::OptInt(None),
        ]);
        self.next_order += 1;
    }
}

impl ChunkSink for Draw {
    fn push(&mut self, chunk: DataFrame) -> Result<()> {
        let users = chunk.column("user_id")?.i64()?.clone();
        let uplift = chunk.column("true_uplift")?.f64()?.clone();
        let sensitivity = chunk.column("true_discount_sensitivity")?.f64()?.clone();
        let rate = chunk.column("true_base_rate")?.f64()?.clone();
        let cap = chunk.column("true_discount_cap")?.f64()?.clone();
        let threshold = chunk.column("true_discount_threshold")?.f64()?.clone();
        let window_end = self.anchor + OUTCOME_DAYS.min(self.days) * DAY;
        let end = self.anchor + self.days * DAY;
        for i in 0..chunk.height() {
            let (
                Some(user),
                Some(uplift),
                Some(sensitivity),
                Some(rate),
                Some(cap),
                Some(threshold),
            ) = (
                users.get(i),
                uplift.get(i),
                sensitivity.get(i),
                rate.get(i),
                cap.get(i),
                threshold.get(i),
            )
            else {
                continue;
            };
            let response = Response {
                rate,
                uplift,
                discount: DoseResponse { cap, threshold },
            };
            let message = self.messages.get(&user).copied();
            let treated = message.filter(|m| m.treated);
            let p = response.window_probability(treated.map(|m| m.discount_pct));
            // The truth of the model's treatment arm: what the report's figures measure (the
            // exploration is set apart there).
            if let Some(m) = treated.filter(|m| !m.explore) {
                self.truth[m.campaign] += p - response.window_probability(None);
            }
            if self.rng.random_bool(p) {
                let at = self.rng.random_range(self.anchor..window_end);
                let offered = treated.is_some_and(|m| m.discount_pct > 0.0);
                let discounted = offered || self.rng.random_bool(sensitivity.clamp(0.0, 1.0));
                self.order(user, at, discounted);
            }
            // After the window, the user's own background orders.
            let after = (end - window_end) as f64 / DAY as f64;
            let n = Poisson::new(rate * after)
                .map_or(0, |d: Poisson<f64>| d.sample(&mut self.rng) as u64);
            for _ in 0..n {
                let at = self.rng.random_range(window_end..end);
                let discounted = self.rng.random_bool(sensitivity.clamp(0.0, 1.0));
                self.order(user, at, discounted);
            }
        }
        Ok(())
    }
}

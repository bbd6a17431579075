//! The nightly run, as a chain of stages that each take and return a named type:
//!
//! ```text
//! per shard: extract → SourceTables → score → ScoredUsers → rank → Rankings
//! all shards' drift tallies → monitor → ModelDrift (a warning, ledger rows)
//! select → Night → per campaign: publish → Staged → record → a ledger row
//! ```
//!
//! The users are scored a shard at a time (`runtime.shards`, or as many as `runtime.memory_mb`
//! requires), so memory follows a shard's size; selection then runs over the rankings of all.
//!
//! Every campaign of the run gets a ledger row before any work starts, so a run that dies in an
//! early stage still says so. Each campaign is then published on its own: its parts and
//! manifest, its assignments, and only then `_SUCCESS`; a campaign that fails leaves no files
//! and a `failed` ledger row, and the others still publish.

pub mod extract;
pub mod monitor;
pub mod publish;
pub mod record;
pub mod recover;
pub mod score;
pub mod select;
pub mod shards;
pub mod spill;

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use models::features::{Breach, SharedNeeds};
use models::training::Tallies;
use models::{RunDate, Scorers, Shard, SourceTables};
use rand::Rng;
use segments::{Arm, Audience, Campaign, CampaignKind, FunnelStep};
use tracing::{info, info_span, instrument, warn, Instrument};

use crate::config::{Settings, ShardPlan};
use crate::state::db::Db;
use crate::state::ledger;
use crate::store::ObjectStore;
use crate::training::{self, ModelSet, ModelUsed};
use extract::Slice;
use monitor::ModelDrift;
use publish::ExportRequest;
use record::Ending;
use select::{Night, Rankings, Selector};

/// What to run.
#[derive(Debug)]
pub struct RunRequest<'a> {
    pub settings: &'a Settings,
    pub date: RunDate,
    /// The night's campaigns: all of them take part in arbitration, so a user's campaign for a
    /// night does not depend on how the night is split into runs.
    pub campaigns: Vec<Campaign>,
    /// The campaigns this run publishes (ids); empty: all of them.
    pub only: Vec<String>,
    /// Preview only: select and report, but publish and record nothing.
    pub dry_run: bool,
    /// Train new models instead of scoring with the store's `current` ones.
    pub retrain: bool,
    /// Campaigns published again on purpose although their campaign-day had succeeded
    /// (`run --force`): their ledger rows say so.
    pub forced: Vec<String>,
    /// Select from the outputs of this many `score-shard` jobs instead of scoring
    /// (`run --from-shards N`).
    pub from_shards: Option<u32>,
}

impl RunRequest<'_> {
    /// The campaigns a dry run previews (what each takes from the others is measured), none
    /// for a run that publishes.
    fn previewed(&self) -> Vec<String> {
        if self.dry_run {
            self.published().map(|c| c.id.clone()).collect()
        } else {
            Vec::new()
        }
    }

    /// The campaigns this run publishes.
    fn published(&self) -> impl Iterator<Item = &Campaign> {
        self.campaigns
            .iter()
            .filter(|c| self.only.is_empty() || self.only.contains(&c.id))
    }
}

/// How one campaign of the run ended.
#[derive(Debug, Clone)]
pub struct CampaignReport {
    pub campaign_id: String,
    pub kind: &'static str,
    pub funnel: Vec<FunnelStep>,
    pub eligible: usize,
    /// Users the model chose to export (treatment arm).
    pub audience: usize,
    pub holdout: usize,
    /// Users exported at random (the campaign's `explore` share), and their holdout.
    pub explore: usize,
    pub explore_holdout: usize,
    /// Expected incremental purchases from the model's exported users (the sum of their
    /// uplift).
    pub expected_conversions: f64,
    /// Expected discount given to the exported users, in list prices of a purchase.
    pub expected_discount_cost: f64,
    /// The same in the campaign's currency (times its `average_price`).
    pub expected_discount_spend: f64,
    /// The campaign's limits as written tonight: `max_audience` and the budget.
    pub max_audience: usize,
    pub budget: Option<f64>,
    /// The mean predicted purchase probability without a message of the model's members: the
    /// base rate the holdout's minimum detectable effect is computed at.
    pub base_rate: f64,
    /// For an offer with discount levels, how many of the model's exported users were offered
    /// each (percent), ascending; empty for one discount.
    pub discount_mix: Vec<(f64, usize)>,
    /// For a campaign with `[items]`, how many of the model's exported users were shown each
    /// item, the most shown first.
    pub item_mix: Vec<(i64, usize)>,
    /// For each other campaign of the night, how many eligible users both wanted.
    pub overlap: Vec<(String, usize)>,
    /// For a dry run: how many more users each other campaign would message tonight without
    /// this one (what it takes from them).
    pub takes_from: Vec<(String, usize)>,
    pub export_uri: Option<String>,
    pub error: Option<String>,
    /// The error may go away on its own (the database or the object store was unreachable):
    /// a scheduler may try again.
    pub transient: bool,
}

impl CampaignReport {
    fn new(c: &Campaign, audience: Option<Audience>, export_uri: Option<String>) -> Self {
        let a = audience.unwrap_or_else(|| Audience {
            campaign_id: c.id.clone(),
            funnel: vec![],
            members: vec![],
            overlap: vec![],
        });
        CampaignReport {
            campaign_id: c.id.clone(),
            kind: c.kind.name(),
            eligible: a.eligible(),
            audience: a.count(Arm::Treatment) - a.explored(Arm::Treatment),
            holdout: a.count(Arm::Holdout) - a.explored(Arm::Holdout),
            explore: a.explored(Arm::Treatment),
            explore_holdout: a.explored(Arm::Holdout),
            expected_conversions: a.expected_conversions(),
            expected_discount_cost: a.expected_discount_cost(),
            expected_discount_spend: a.expected_discount_cost() * c.offer.average_price,
            max_audience: c.max_audience,
            budget: c.offer.budget,
            base_rate: {
                let chosen: Vec<f64> = a
                    .members
                    .iter()
                    .filter(|m| !m.explore)
                    .map(|m| m.p_control)
                    .filter(|p| p.is_finite())
                    .collect();
                chosen.iter().sum::<f64>() / chosen.len().max(1) as f64
            },
            discount_mix: if c.offer.discount_levels.is_empty() {
                vec![]
            } else {
                a.discount_mix()
            },
            item_mix: a.item_mix(),
            overlap: a.overlap,
            takes_from: Vec::new(),
            funnel: a.funnel,
            export_uri,
            error: None,
            transient: false,
        }
    }

    fn failed(c: &Campaign, error: String, transient: bool) -> Self {
        CampaignReport {
            error: Some(error),
            transient,
            ..CampaignReport::new(c, None, None)
        }
    }
}

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    pub run_id: String,
    pub run_date: RunDate,
    pub users: usize,
    pub model: ModelUsed,
    pub campaigns: Vec<CampaignReport>,
    /// How far tonight's users had moved from those each model was trained for.
    pub drift: Vec<ModelDrift>,
}

impl RunReport {
    pub fn failed(&self) -> Vec<&CampaignReport> {
        self.campaigns
            .iter()
            .filter(|c| c.error.is_some())
            .collect()
    }
}

/// Whether a failure may go away on its own: the object store or the database could not be
/// reached, or timed out.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::store::StoreError>()
            .is_some_and(|s| s.is_transient())
            || c.downcast_ref::<sqlx::Error>().is_some_and(|s| {
                matches!(
                    s,
                    sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
                )
            })
    })
}

/// A new run id: UTC time and a random suffix, sortable and unique across processes.
pub fn new_run_id() -> String {
    let suffix: u32 = rand::rng().random_range(0..0x100_0000);
    format!("{}-{suffix:06x}", Utc::now().format("%Y%m%dT%H%M%SZ"))
}

/// Runs every requested campaign for the date, recording each in the state database (or, for
/// a dry run, only reporting what it would do). The state database's tables must exist
/// ([`Settings::state_db`] creates them).
pub async fn run(req: RunRequest<'_>, source: &Db, state: &Db) -> Result<RunReport> {
    run_from(req, source, state, None).await
}

/// [`run`] with models trained just before: the demo trains first, for the diagnostics it
/// shows beside the run, and the report shows them as trained by this run.
pub async fn run_with(
    req: RunRequest<'_>,
    source: &Db,
    state: &Db,
    models: score::Models,
) -> Result<RunReport> {
    run_from(req, source, state, Some(models)).await
}

#[instrument(
    name = "run",
    skip_all,
    fields(
        run_id = tracing::field::Empty,
        run_date = %req.date,
        campaigns = req.published().count(),
        dry_run = req.dry_run
    )
)]
async fn run_from(
    req: RunRequest<'_>,
    source: &Db,
    state: &Db,
    given: Option<score::Models>,
) -> Result<RunReport> {
    let run_id = new_run_id();
    tracing::Span::current().record("run_id", tracing::field::display(&run_id));
    if !req.dry_run {
        let started = Utc::now().timestamp();
        for c in req.published() {
            let note = req
                .forced
                .contains(&c.id)
                .then_some("published again on purpose (--force): the campaign-day had succeeded");
            ledger::start(state, &run_id, &c.id, req.date, started, note).await?;
        }
    }
    match night(&req, source, state, given).await {
        Ok((scoring, night, emails)) => {
            let campaigns = publish_night(&req, state, &run_id, &scoring, night, emails).await?;
            monitor::record(state, &run_id, req.date, req.dry_run, &scoring.drift).await;
            Ok(RunReport {
                run_id,
                run_date: req.date,
                users: scoring.users,
                model: scoring.model,
                campaigns,
                drift: scoring.drift,
            })
        }
        Err(e) if req.dry_run => Err(e),
        Err(e) => {
            let error = format!("{e:#}");
            for c in req.published() {
                let failed = Ending::Failed { error: &error };
                record::finish(state, &run_id, &c.id, failed, "{}").await?;
            }
            Err(e)
        }
    }
}

/// Email addresses of consenting users, by user id.
type Emails = HashMap<i64, String>;

/// What the night was scored with, and how many users: for the report, the manifests and the
/// ledger.
struct Scoring {
    users: usize,
    model: ModelUsed,
    /// The version of each model by its name.
    versions: BTreeMap<String, String>,
    drift: Vec<ModelDrift>,
}

/// Everything before publishing: extract, score and select (and the emails a list needs), with
/// the `given` models or those [`score::Models::for_run`] finds.
async fn night(
    req: &RunRequest<'_>,
    source: &Db,
    state: &Db,
    given: Option<score::Models>,
) -> Result<(Scoring, Night, Option<Emails>)> {
    let s = req.settings;
    let (scoring, night) = match req.from_shards {
        Some(of) => gathered_night(req, of).await?,
        None => scored_night(req, source, state, given).await?,
    };
    // Email addresses stay in the database unless a list needs them.
    let emails = if !req.dry_run && req.published().any(|c| publish::needs_emails(c.columns)) {
        Some(extract::contact_emails(source, s).await?)
    } else {
        None
    };
    Ok((scoring, night, emails))
}

/// Scores the night's users a shard at a time, each shard extracted, scored and ranked alone
/// and then dropped, so that memory follows the shard's size, not the source's; then selects
/// the night from the rankings of all shards. The lists are the same for any number of shards.
#[instrument(name = "shards", skip_all, fields(shards = tracing::field::Empty))]
async fn scored_night(
    req: &RunRequest<'_>,
    source: &Db,
    state: &Db,
    given: Option<score::Models>,
) -> Result<(Scoring, Night)> {
    let s = req.settings;
    let date = req.date;
    let models = match given {
        Some(models) => models,
        None => score::Models::for_run(s, source, state, date, req.retrain, req.dry_run).await?,
    };
    let levels = &models.set.uplift.metadata.categorical_levels;
    let selector = Selector::new(s, &req.campaigns, levels, date, state).await?;
    let mut rankings = selector.rankings();
    let mut users = 0;
    let mut tallies = Tallies::default();
    let count = match s.shards {
        ShardPlan::Fixed(n) => n,
        plan => {
            let gifts = req.campaigns.iter().any(|c| c.kind == CampaignKind::Gift);
            plan.shards(extract::count_users(source, s).await?, gifts)
        }
    };
    tracing::Span::current().record("shards", count);
    let score::Models { set, trained_on } = models;
    let part = |shard, needs| ShardPart {
        date,
        shard,
        needs,
        selector: &selector,
    };
    // One shard reads no shared slice.
    let alone = SharedNeeds::default();
    // The LightGBM models are loaded once, after the last wait on the databases (they cannot
    // be held across one).
    if count == 1 {
        let tables = match trained_on {
            // Trained on every row just now: one shard scores those tables as they are.
            Some(tables) => tables,
            None => part(Shard::WHOLE, &alone).extract(s, source, state).await?,
        };
        let scorers = set.load(s)?;
        users +=
            part(Shard::WHOLE, &alone).rank(s, tables, &scorers, &mut rankings, &mut tallies)?;
    } else {
        drop(trained_on);
        // One pass over the source, each shard's rows to its own files (the first shard's stay
        // in memory).
        let needs = extract::shared_needs(source, s, &req.campaigns, date).await?;
        let mut spilled = spill::spill(source, state, s, date, count, &needs).await?;
        let scorers = set.load(s)?;
        for shard in Shard::all(count) {
            let tables = spilled.tables(s, date, shard)?;
            users += part(shard, &needs).rank(s, tables, &scorers, &mut rankings, &mut tallies)?;
        }
    }
    if users == 0 {
        return Err(extract::breaks_contract(s, &[Breach::no_users()]));
    }
    let scoring = Scoring {
        users,
        model: set.used.clone(),
        versions: set.versions(),
        drift: monitor::assess(&set, &tallies),
    };
    Ok((scoring, selector.select(rankings, &req.previewed())))
}

/// One shard of a night to score and rank.
struct ShardPart<'a> {
    date: RunDate,
    shard: Shard,
    /// What the night's campaigns read of other users (see [`Slice::Shared`]).
    needs: &'a SharedNeeds,
    selector: &'a Selector<'a>,
}

impl ShardPart<'_> {
    /// The shard's slice of the source, through its own sliced queries; with what its users'
    /// features read of other users, from the night's shared slice, when the shard is not all
    /// of the users.
    async fn extract(&self, s: &Settings, source: &Db, state: &Db) -> Result<SourceTables> {
        // The shared rows are read and reduced first, so they are gone before the shard's own
        // rows arrive.
        let signals = if self.shard.count() > 1 {
            Some(extract::friend_signals(source, s, self.date, self.needs).await?)
        } else {
            None
        };
        let slice = Slice::Scoring {
            date: self.date,
            shard: self.shard,
        };
        let mut tables = extract::extract(source, Some(state), s, self.date, &slice).await?;
        tables.friend_signals = signals;
        Ok(tables)
    }

    /// Scores the shard's tables with `scorers` (the set's models, loaded) and adds its
    /// rankings to `into` and its drift counts to `tallies`; returns its users. The tables are
    /// dropped on return.
    fn rank(
        &self,
        s: &Settings,
        tables: SourceTables,
        scorers: &Scorers,
        into: &mut Rankings,
        tallies: &mut Tallies,
    ) -> Result<usize> {
        let _span = info_span!("shard", shard = %self.shard).entered();
        let scored = score::score(s, tables, scorers, self.date)?;
        self.selector
            .rank(&scored, scorers.gift_recipient.as_ref(), into);
        // The shards of one process score with the same models: their bins always agree.
        tallies.merge(&scored.tallies)?;
        Ok(scored.frame.height())
    }
}

/// The night from the outputs of `of` `score-shard` jobs: gathered and checked (see
/// [`shards::gather`]), scored with the store's `current` models, then selected as one.
#[instrument(name = "from_shards", skip_all, fields(shards = of))]
async fn gathered_night(req: &RunRequest<'_>, of: u32) -> Result<(Scoring, Night)> {
    let s = req.settings;
    let store = shards::open(s).await?;
    let set = stored_models(s).await?;
    let levels = &set.uplift.metadata.categorical_levels;
    let selector = Selector::for_rankings(s, &req.campaigns, levels, req.date);
    let gathered =
        shards::gather(&store, req.date, of, &req.campaigns, selector.rankings()).await?;
    if set.versions() != gathered.models {
        bail!(
            "the shards were scored with models {:?} but the model store's current ones are {:?}: score the shards again",
            gathered.models,
            set.versions()
        );
    }
    if gathered.users == 0 {
        return Err(extract::breaks_contract(s, &[Breach::no_users()]));
    }
    let scoring = Scoring {
        users: gathered.users,
        model: set.used.clone(),
        versions: set.versions(),
        drift: monitor::assess(&set, &gathered.tallies),
    };
    Ok((
        scoring,
        selector.select(gathered.rankings, &req.previewed()),
    ))
}

/// The store's `current` models, which a shard job and the run gathering the shards must find
/// (neither trains: shards trained apart would score with different models).
async fn stored_models(s: &Settings) -> Result<ModelSet> {
    training::load_stored(s).await?.with_context(|| {
        format!(
            "no current models in {}: train them first (targeting train)",
            s.models.store
        )
    })
}

/// One shard job of a night: `targeting score-shard`.
#[derive(Debug)]
pub struct ShardRequest<'a> {
    pub settings: &'a Settings,
    pub date: RunDate,
    /// The night's campaigns, all ranked (arbitration comes later, over every shard).
    pub campaigns: Vec<Campaign>,
    pub shard: Shard,
}

/// Scores and ranks one shard of the night with the store's `current` models and writes its
/// output to the object store (see [`shards`]); returns the manifest's URI and the shard's
/// users.
#[instrument(name = "score_shard", skip_all, fields(shard = %req.shard, run_date = %req.date))]
pub async fn score_shard(
    req: ShardRequest<'_>,
    source: &Db,
    state: &Db,
) -> Result<(String, usize)> {
    let s = req.settings;
    let set = stored_models(s).await?;
    let levels = &set.uplift.metadata.categorical_levels;
    let selector = Selector::new(s, &req.campaigns, levels, req.date, state).await?;
    let needs = extract::shared_needs(source, s, &req.campaigns, req.date).await?;
    let part = ShardPart {
        date: req.date,
        shard: req.shard,
        needs: &needs,
        selector: &selector,
    };
    let mut rankings = selector.rankings();
    let mut tallies = Tallies::default();
    let tables = part.extract(s, source, state).await?;
    let users = {
        let scorers = set.load(s)?;
        part.rank(s, tables, &scorers, &mut rankings, &mut tallies)?
    };
    let store = shards::open(s).await?;
    let output = shards::ShardOutput {
        date: req.date,
        shard: req.shard,
        users,
        models: set.versions(),
        campaigns: &req.campaigns,
        rankings,
        tallies,
    };
    let uri = shards::write(&store, output).await?;
    Ok((uri, users))
}

/// Publishes and records each campaign of the run (or, for a dry run, only reports it).
async fn publish_night(
    req: &RunRequest<'_>,
    state: &Db,
    run_id: &str,
    scoring: &Scoring,
    mut night: Night,
    emails: Option<Emails>,
) -> Result<Vec<CampaignReport>> {
    let s = req.settings;
    if req.dry_run {
        let reports: Vec<CampaignReport> = req
            .published()
            .map(|c| match night.take(&c.id) {
                Ok(a) => CampaignReport {
                    takes_from: night.takes.remove(&c.id).unwrap_or_default(),
                    ..CampaignReport::new(c, Some(a), None)
                },
                Err(e) => CampaignReport::failed(c, e, false),
            })
            .collect();
        record_forecasts(req, state, run_id, &reports).await;
        return Ok(reports);
    }
    let versions = &scoring.versions;
    let run_date = req.date.to_string();
    let versions_json = serde_json::to_string(&versions)?;

    // One store per destination, opened once: loading the AWS configuration probes the
    // credential chain.
    let mut stores: BTreeMap<String, Result<ObjectStore, String>> = BTreeMap::new();
    for c in req.published() {
        let destination = c.destination.as_deref().unwrap_or(&s.export.destination);
        for uri in std::iter::once(destination).chain(c.deliver_to.as_deref()) {
            if !stores.contains_key(uri) {
                let store = ObjectStore::open(uri, &s.store)
                    .await
                    .map_err(|e| e.to_string());
                stores.insert(uri.to_string(), store);
            }
        }
    }

    let mut reports = Vec::new();
    for c in req.published() {
        let audience = night.take(&c.id);
        let span = info_span!("campaign", campaign = %c.id, kind = c.kind.name());
        let outcome = async {
            let audience = audience.map_err(|e| anyhow::anyhow!(e))?;
            let opened = |uri: &str| match stores.get(uri) {
                Some(Ok(store)) => Ok(store),
                Some(Err(e)) => Err(anyhow::anyhow!("{e}")),
                None => Err(anyhow::anyhow!("no object store for {uri}")),
            };
            let store = opened(c.destination.as_deref().unwrap_or(&s.export.destination))?;
            let created_at = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            let request = ExportRequest {
                campaign: c,
                audience: &audience,
                run_id,
                run_date: &run_date,
                model_versions: versions,
                created_at: &created_at,
                limits: s.export.part_limits,
                emails: emails.as_ref(),
            };
            let staged = publish::stage(store, &request).await?;
            record::record(state, store, &staged, run_id, &audience, req.date).await?;
            if let Some(to) = &c.deliver_to {
                publish::deliver(store, opened(to)?, &staged.prefix, &staged.manifest)
                    .await
                    .with_context(|| publish::Undelivered {
                        uri: staged.uri.clone(),
                        run_date: run_date.clone(),
                    })?;
            }
            info!(uri = %staged.uri, rows = staged.manifest.row_count, "published");
            Ok((audience, staged.uri))
        }
        .instrument(span)
        .await;
        let report = match outcome {
            Ok((audience, uri)) => {
                let ending = Ending::Published {
                    audience: &audience,
                    uri: &uri,
                };
                record::finish(state, run_id, &c.id, ending, &versions_json).await?;
                CampaignReport::new(c, Some(audience), Some(uri))
            }
            Err(e) => {
                let error = format!("{e:#}");
                let transient = is_transient(&e);
                warn!(campaign = %c.id, error = %error, transient, "campaign failed");
                let ending = match e.downcast_ref::<publish::Undelivered>() {
                    Some(u) => Ending::Undelivered {
                        error: &error,
                        uri: &u.uri,
                    },
                    None => Ending::Failed { error: &error },
                };
                record::finish(state, run_id, &c.id, ending, &versions_json).await?;
                CampaignReport::failed(c, error, transient)
            }
        };
        reports.push(report);
    }
    record_forecasts(req, state, run_id, &reports).await;
    Ok(reports)
}

/// The mean discount, in percent, of a campaign's users by their discount mix (`None` without
/// users).
fn mean_discount(mix: &[(f64, usize)]) -> Option<f64> {
    let users: usize = mix.iter().map(|(_, n)| n).sum();
    (users > 0).then(|| mix.iter().map(|(pct, n)| pct * *n as f64).sum::<f64>() / users as f64)
}

/// Records what the run expected of each campaign it selected (see [`ledger::Forecast`]). The
/// lists are out by then, so a failure here costs the report its forecast, not the night: it is
/// a warning.
async fn record_forecasts(
    req: &RunRequest<'_>,
    state: &Db,
    run_id: &str,
    reports: &[CampaignReport],
) {
    let forecasts: Vec<ledger::Forecast> = reports
        .iter()
        .filter(|r| r.error.is_none())
        .filter_map(|r| Some((req.campaigns.iter().find(|c| c.id == r.campaign_id)?, r)))
        .map(|(c, r)| ledger::Forecast {
            campaign_id: c.id.clone(),
            funnel: r.funnel.clone(),
            eligible: r.eligible,
            audience_size: r.audience,
            holdout_size: r.holdout,
            expected_conversions: r.expected_conversions,
            expected_discount_cost: r.expected_discount_cost * c.offer.average_price,
            // An offer with levels: the mean of the levels its users got.
            discount_pct: mean_discount(&r.discount_mix).unwrap_or(c.offer.discount_pct),
            margin: c.offer.margin,
            average_price: c.offer.average_price,
        })
        .collect();
    let at = Utc::now().timestamp();
    if let Err(e) =
        ledger::record_forecasts(state, run_id, req.date, req.dry_run, at, &forecasts).await
    {
        warn!(error = %format!("{e:#}"), "the forecasts were not recorded");
    }
}

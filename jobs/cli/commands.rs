//! The commands' bodies: each reads what it needs, runs the stages or tools, and prints.

use anyhow::{bail, Context, Result};
use models::metrics::Interval;
use models::{ModelArtifact, ModelName, RunDate, Shard};
use segments::campaign::{CampaignItems, CampaignKind};
use segments::Campaign;
use tracing::info;

use super::exit::{self, CampaignResult, CampaignStatus, CampaignsFailed, RunResult};
use super::summary::{runs_table, Summary};
use super::telemetry::print_out;
use super::{
    DemoArgs, ModelsCommand, ReportArgs, RunArgs, RunsListArgs, ScoreShardArgs, TrainArgs,
    ValidateArgs,
};
use crate::config::campaigns::{self, BrokenFile};
use crate::config::Settings;
use crate::pipeline::{self, recover, RunReport, RunRequest, ShardRequest};
use crate::state::claim::{self, Claim};
use crate::state::db::Db;
use crate::state::ledger;
use crate::store::ObjectStore;
use crate::tools::demo::{self, DemoSpec};
use crate::training::{self, model_store};

/// `targeting validate`: every campaign file checked, every problem reported; a summary line
/// per valid campaign. Unless `--offline`, every item id a campaign names (a drop's item, an
/// `[items]` list) is looked up in the source's catalogue, and a gift campaign needs a source
/// with friendships, so that a file `validate` passes does not fail at run time.
pub(super) async fn validate(settings: &Settings, a: &ValidateArgs) -> Result<()> {
    let paths = if a.paths.is_empty() {
        vec![settings.targeting.campaigns_dir.clone()]
    } else {
        a.paths.clone()
    };
    let campaigns = campaigns::load(&paths)?;
    settings
        .check_destinations(&campaigns)
        .map_err(exit::invalid)?;
    // Every item id a campaign names: a drop's item, and the ids of an `[items]` list.
    let named: Vec<(&str, &str, Vec<i64>)> = campaigns
        .iter()
        .filter_map(|c| match (&c.kind, &c.items) {
            (CampaignKind::Drop { item_id }, _) => {
                Some((c.id.as_str(), "[drop] item_id", vec![*item_id]))
            }
            (_, Some(CampaignItems::Ids(ids))) => Some((c.id.as_str(), "[items] ids", ids.clone())),
            _ => None,
        })
        .collect();
    let items_checked = !a.offline && !named.is_empty();
    if items_checked {
        let hint = "cannot check the campaigns' item ids against the source's items \
                    (--offline checks the files alone)";
        let source = settings.source.connect(false).await.context(hint)?;
        let (items, origin) = pipeline::extract::item_ids(&source, settings)
            .await
            .context(hint)?;
        let missing: Vec<String> = named
            .iter()
            .filter_map(|(id, field, ids)| {
                let unknown: Vec<i64> =
                    ids.iter().filter(|i| !items.contains(i)).copied().collect();
                (!unknown.is_empty()).then(|| {
                    format!(
                        "campaign {id}: {field} has {} not in the source's items (query {origin})",
                        segments::items::list_of(&unknown)
                    )
                })
            })
            .collect();
        if !missing.is_empty() {
            return Err(campaigns::CampaignProblems(missing).into());
        }
    }
    let gifts: Vec<&str> = campaigns
        .iter()
        .filter(|c| c.kind == CampaignKind::Gift)
        .map(|c| c.id.as_str())
        .collect();
    let gifts_checked = !a.offline && !gifts.is_empty();
    if gifts_checked {
        check_friendships(settings, &gifts).await?;
    }
    let levels_checked = !a.offline
        && campaigns
            .iter()
            .any(|c| !c.offer.discount_levels.is_empty());
    if levels_checked {
        check_discount_levels(settings, &campaigns).await?;
    }
    for c in &campaigns {
        let schedule = c.schedule.as_ref().map_or("every night".to_string(), |s| {
            format!("{} ({})", s.cron, s.timezone)
        });
        println!(
            "ok  {:<28} {:<12} priority {:<4} holdout {:<5} max_audience {:<8} rules {}  {}",
            c.id,
            c.kind.name(),
            c.priority,
            c.holdout,
            c.max_audience,
            c.eligibility.len(),
            schedule
        );
    }
    if items_checked {
        println!("item ids found in the source's catalogue");
    }
    if levels_checked {
        println!("discount levels known to the discount model");
    }
    if gifts_checked {
        println!("friendships found in the source for the gift campaigns");
    }
    println!("{} campaign files valid", campaigns.len());
    Ok(())
}

/// Checks that the source has friendships for the gift campaigns `gifts` (ids) to suggest, and
/// says when no recipient model is stored yet.
async fn check_friendships(settings: &Settings, gifts: &[&str]) -> Result<()> {
    let hint = "cannot check the source's friendships for the gift campaigns \
                (--offline checks the files alone)";
    let source = settings.source.connect(false).await.context(hint)?;
    let (rows, origin) = pipeline::extract::friendship_rows(&source, settings)
        .await
        .context(hint)?;
    if rows == 0 {
        let problems = gifts
            .iter()
            .map(|id| {
                format!(
                    "campaign {id}: kind = \"gift\" suggests a friend, and the source has no \
                     friendships (query {origin} returned no rows)"
                )
            })
            .collect();
        return Err(campaigns::CampaignProblems(problems).into());
    }
    let store = settings
        .models
        .open_store(&settings.store)
        .await
        .context(hint)?;
    if model_store::current_metadata(&store, ModelName::GiftRecipient)
        .await
        .context(hint)?
        .is_none()
    {
        println!(
            "no gift recipient model stored yet: it is trained with the others once the source \
             has gifts to friends to learn from"
        );
    }
    Ok(())
}

/// Checks that every discount level of an offer with levels is one the store's `current`
/// discount model learned (a model trained later is checked by the run itself).
async fn check_discount_levels(settings: &Settings, campaigns: &[Campaign]) -> Result<()> {
    let hint = "cannot check offer.discount_levels against the discount model \
                (--offline checks the files alone)";
    let store = settings
        .models
        .open_store(&settings.store)
        .await
        .context(hint)?;
    let Some(model) = model_store::current_metadata(&store, ModelName::DiscountUplift)
        .await
        .context(hint)?
    else {
        println!("no discount model stored yet: discount levels are checked when it is trained");
        return Ok(());
    };
    let (known, version) = (&model.discount_levels, &model.version);
    let problems: Vec<String> = campaigns
        .iter()
        .flat_map(|c| {
            c.offer
                .discount_levels
                .iter()
                .filter(|l| !known.contains(l))
                .map(move |l| {
                    format!(
                        "campaign {}: offer.discount_levels has {l}, a level the discount model \
                         {} did not learn (it knows {:?}): retrain it on past deals that offered \
                         it, or leave it out",
                        c.id, version, known
                    )
                })
        })
        .collect();
    if !problems.is_empty() {
        return Err(campaigns::CampaignProblems(problems).into());
    }
    Ok(())
}

/// `targeting demo`: the synthetic source (generated unless already there), then the night on
/// it with the models measured against the truth; `summary.json` in the demo's folder.
pub(super) async fn run_demo(settings: &Settings, a: &DemoArgs) -> Result<()> {
    if a.users < 1_000 {
        bail!("--users must be at least 1000 for the models to have data to learn from");
    }
    if a.outcome_days != 0 && !(demo::OUTCOME_DAYS..=365).contains(&a.outcome_days) {
        bail!(
            "--outcome-days must be 0 or from {} (the attribution window) to 365, got {}",
            demo::OUTCOME_DAYS,
            a.outcome_days
        );
    }
    let all = settings.campaigns().map_err(exit::invalid)?;
    campaigns::check_ids(&all, &a.job.campaigns)?;
    let date = a.job.date.unwrap_or_else(RunDate::today);
    let source = settings.source.connect(true).await?;
    let spec = DemoSpec {
        users: a.users,
        seed: a.seed,
        anchor: date.cutoff(),
    };
    let generated = demo::ensure(&source, spec).await?;
    info!(
        generated,
        users = a.users,
        seed = a.seed,
        "demo source ready"
    );
    let state = settings.state_db(&source).await?;
    let request = RunRequest {
        settings,
        date,
        // Every campaign, due or not: the demo shows them all.
        campaigns: all,
        only: a.job.campaigns.clone(),
        dry_run: false,
        // The demo shows what a model learns: `demo::run` always trains, before the run.
        retrain: false,
        forced: vec![],
        from_shards: None,
    };
    let night = demo::run(settings, &source, &state, request, spec, a.outcome_days).await?;
    let summary = Summary::new(&night.report, Some(night.truth))
        .with_true_incremental(&night.true_incremental)
        .with_levels(&night.levels)
        .with_gifts(night.gifts);
    std::fs::create_dir_all(&a.dir)?;
    summary.write_json(&a.dir.join("summary.json"))?;
    print_out(summary.table());
    if a.outcome_days > 0 {
        // The lift report on the simulated days: what `targeting report` would say then.
        let request = crate::report::ReportRequest {
            from: date,
            to: date,
            as_of: date.days_after(a.outcome_days),
            campaigns: a.job.campaigns.clone(),
        };
        let report = crate::report::report(settings, &source, &state, &request).await?;
        let path = a.dir.join("report.json");
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let html = a.dir.join("report.html");
        std::fs::write(&html, report.html()?)
            .with_context(|| format!("cannot write {}", html.display()))?;
        print_out(format!(
            "\nafter {} simulated days (true incremental conversions in summary.json; charts in {}):\n{}",
            a.outcome_days,
            html.display(),
            report.table()
        ));
    }
    fail_on_campaign_errors(&night.report)
}

/// The night's campaigns (due on `date`, and the named ones) and the source and state
/// databases, connected; `None`, said on stdout, when no campaign is due.
async fn night(
    settings: &Settings,
    all: &[segments::Campaign],
    date: RunDate,
    also: &[String],
) -> Result<Option<(Vec<segments::Campaign>, Db, Db)>> {
    let campaigns = campaigns::night(all, date, also);
    if campaigns.is_empty() {
        println!("no campaign is due on {date}");
        return Ok(None);
    }
    let source = settings.source.connect(false).await?;
    let state = settings.state_db(&source).await?;
    Ok(Some((campaigns, source, state)))
}

/// `targeting score-shard`: one shard of the night scored, ranked and written to the object
/// store, for `targeting run --from-shards N`.
pub(super) async fn score_shard(settings: &Settings, a: &ScoreShardArgs) -> Result<()> {
    let j = &a.job;
    let all = settings.campaigns().map_err(exit::invalid)?;
    campaigns::check_ids(&all, &j.campaigns)?;
    let date = j.date.unwrap_or_else(RunDate::today);
    let index = shard_index(a.shard)?;
    let shard = Shard::new(index, a.of).with_context(|| {
        format!(
            "shard {index} of {} does not exist: --of is 1 to {} and the shard 0 to --of − 1",
            a.of,
            models::shard::MAX_SHARDS
        )
    })?;
    let Some((campaigns, source, state)) = night(settings, &all, date, &j.campaigns).await? else {
        return Ok(());
    };
    let request = ShardRequest {
        settings,
        date,
        campaigns,
        shard,
    };
    let scored = pipeline::score_shard(request, &source, &state).await;
    state.close().await;
    source.close().await;
    let (uri, users) = scored?;
    println!("shard {shard} for {date}: {users} users scored and ranked, written to {uri}");
    Ok(())
}

/// The shard of a `score-shard` job: the flag, else the index a Kubernetes Indexed Job
/// (`JOB_COMPLETION_INDEX`) or an AWS Batch array job (`AWS_BATCH_JOB_ARRAY_INDEX`) gives it.
fn shard_index(flag: Option<u32>) -> Result<u32> {
    if let Some(i) = flag {
        return Ok(i);
    }
    for var in ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"] {
        if let Ok(v) = std::env::var(var) {
            return v
                .trim()
                .parse()
                .with_context(|| format!("{var}={v:?} is not a shard index"));
        }
    }
    bail!(
        "score-shard needs --shard I, or JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job) \
         or AWS_BATCH_JOB_ARRAY_INDEX (set by an AWS Batch array job)"
    )
}

/// `targeting run`: the night's due campaigns (or the named ones) on the configured source.
/// Each campaign-day is claimed first, as the daemon claims it: one held by another process is
/// left to it (and the run fails, so an external scheduler tries again), one that succeeded is
/// skipped unless `--force`, and a complete export of a stopped run is adopted, not published
/// again.
pub(super) async fn run_job(settings: &Settings, a: &RunArgs) -> Result<()> {
    let date = a.job.date.unwrap_or_else(RunDate::today);
    let (mut results, mut run_id) = (Vec::new(), None);
    let outcome = run_night(settings, a, date, &mut results, &mut run_id).await;
    let Some(path) = &a.result_json else {
        return outcome;
    };
    let (exit_code, error) = match &outcome {
        Ok(()) => (0, None),
        Err(e) => (exit::code(e), Some(format!("{e:#}"))),
    };
    let written = RunResult {
        run_id,
        run_date: date.to_string(),
        exit_code,
        error,
        campaigns: results,
    }
    .write(path);
    match (outcome, written) {
        (Ok(()), written) => written,
        (Err(e), Ok(())) => Err(e),
        // The run's own failure is the one to report; the file's is logged.
        (Err(e), Err(w)) => {
            tracing::error!(error = %format!("{w:#}"), "no result file");
            Err(e)
        }
    }
}

/// The body of [`run_job`]: what happened to each campaign goes to `results` as it happens.
/// A campaign file that does not validate fails its own campaign (a failed ledger row, and
/// the exit code of an invalid configuration), not the night: the others run without it.
async fn run_night(
    settings: &Settings,
    a: &RunArgs,
    date: RunDate,
    results: &mut Vec<CampaignResult>,
    run_id: &mut Option<String>,
) -> Result<()> {
    let j = &a.job;
    let (all, broken) = settings.campaigns_each().map_err(exit::invalid)?;
    let broken: Vec<BrokenFile> = broken
        .into_iter()
        .filter(|b| j.campaigns.is_empty() || j.campaigns.contains(&b.id))
        .collect();
    let asked: Vec<String> = j
        .campaigns
        .iter()
        .filter(|id| !broken.iter().any(|b| &b.id == *id))
        .cloned()
        .collect();
    campaigns::check_ids(&all, &asked).map_err(exit::invalid)?;
    let outcome = if j.campaigns.is_empty() || !asked.is_empty() {
        publish_night(settings, a, date, &all, &asked, results, run_id).await
    } else {
        Ok(())
    };
    if broken.is_empty() {
        return outcome;
    }
    if !a.dry_run {
        let id = run_id.get_or_insert_with(pipeline::new_run_id).clone();
        let source = settings.source.connect(false).await?;
        let state = settings.state_db(&source).await?;
        let recorded = async {
            for b in &broken {
                pipeline::record::invalid_file(&state, &id, &b.id, date, &b.problems.join("\n"))
                    .await?;
            }
            anyhow::Ok(())
        }
        .await;
        state.close().await;
        source.close().await;
        recorded?;
    }
    let mut problems = Vec::new();
    for b in broken {
        results.push(CampaignResult {
            error: Some(b.problems.join("\n")),
            ..CampaignResult::without_run(&b.id, CampaignStatus::Failed, None)
        });
        problems.extend(b.problems);
    }
    // An invalid file needs a person whatever else happened; the night's own failure, if any,
    // goes with it.
    if let Err(e) = outcome {
        problems.push(format!("and the night failed: {e:#}"));
    }
    Err(campaigns::CampaignProblems(problems).into())
}

/// Claims, runs and publishes the valid campaigns of the night (`asked`, or every one due).
async fn publish_night(
    settings: &Settings,
    a: &RunArgs,
    date: RunDate,
    all: &[Campaign],
    asked: &[String],
    results: &mut Vec<CampaignResult>,
    run_id: &mut Option<String>,
) -> Result<()> {
    let Some((campaigns, source, state)) = night(settings, all, date, asked).await? else {
        return Ok(());
    };
    let wanted: Vec<String> = if asked.is_empty() {
        campaigns.iter().map(|c| c.id.clone()).collect()
    } else {
        asked.to_vec()
    };
    let (mut locks, mut only, mut forced, mut elsewhere) = (vec![], vec![], vec![], vec![]);
    if a.dry_run {
        only = wanted;
    } else {
        let holder = claim::holder_id();
        let lease = settings.scheduler.lease;
        for id in wanted {
            match claim::claim(&state, &id, date, &holder, lease, a.force).await? {
                Claim::Ours { lock, republish } => {
                    // The night holds every campaign this run publishes (`night` adds the
                    // named ones).
                    let campaign = campaigns
                        .iter()
                        .find(|c| c.id == id)
                        .with_context(|| format!("campaign {id} is not in the night"))?;
                    let adopted = recover::settle(settings, &state, campaign, date).await?;
                    if let Some(uri) = &adopted {
                        print_out(format!(
                            "{id}: adopted the complete export {uri} of a stopped run\n"
                        ));
                        if !a.force {
                            results.push(CampaignResult::without_run(
                                &id,
                                CampaignStatus::Adopted,
                                Some(uri.clone()),
                            ));
                            lock.release().await;
                            continue;
                        }
                    }
                    locks.push(lock);
                    if republish || adopted.is_some() {
                        forced.push(id.clone());
                    }
                    only.push(id);
                }
                Claim::Done => {
                    print_out(format!(
                        "{id}: already published for {date} (--force publishes it again)\n"
                    ));
                    results.push(CampaignResult::without_run(
                        &id,
                        CampaignStatus::AlreadyPublished,
                        None,
                    ));
                }
                Claim::Elsewhere => {
                    results.push(CampaignResult::without_run(
                        &id,
                        CampaignStatus::RunningElsewhere,
                        None,
                    ));
                    elsewhere.push(id);
                }
            }
        }
    }
    let outcome = async {
        if only.is_empty() {
            return Ok(());
        }
        let asked = only.clone();
        let report = pipeline::run(
            RunRequest {
                settings,
                date,
                campaigns,
                only,
                dry_run: a.dry_run,
                retrain: a.retrain,
                forced,
                from_shards: a.from_shards,
            },
            &source,
            &state,
        )
        .await;
        let report = match report {
            Ok(report) => report,
            Err(e) => {
                // The night failed as a whole: every campaign it was to publish with it.
                for id in &asked {
                    results.push(CampaignResult {
                        status: CampaignStatus::Failed,
                        error: Some(format!("{e:#}")),
                        transient: pipeline::is_transient(&e),
                        ..CampaignResult::without_run(id, CampaignStatus::Failed, None)
                    });
                }
                return Err(e);
            }
        };
        *run_id = Some(report.run_id.clone());
        results.extend(CampaignResult::of_report(&report, a.dry_run));
        let summary = Summary::new(&report, None);
        print_out(if a.dry_run {
            summary.preview()
        } else {
            summary.table()
        });
        fail_on_campaign_errors(&report)
    }
    .await;
    for lock in locks {
        lock.release().await;
    }
    state.close().await;
    source.close().await;
    outcome?;
    if !elsewhere.is_empty() {
        // The other process will finish them, or a later try of this run will.
        return Err(CampaignsFailed {
            message: format!(
                "{} campaign(s) for {date} are being run by another process, not by this run: {}",
                elsewhere.len(),
                elsewhere.join(", ")
            ),
            transient: true,
        }
        .into());
    }
    Ok(())
}

/// The run's failure when some of its campaigns failed: transient when all of them failed
/// transiently (then the run may be tried again).
fn fail_on_campaign_errors(report: &RunReport) -> Result<()> {
    let failed = report.failed();
    if failed.is_empty() {
        return Ok(());
    }
    let details: Vec<String> = failed
        .iter()
        .map(|c| format!("{}: {}", c.campaign_id, c.error.as_deref().unwrap_or("")))
        .collect();
    Err(CampaignsFailed {
        message: format!(
            "{} of {} campaigns failed: {}",
            failed.len(),
            report.campaigns.len(),
            details.join("; ")
        ),
        transient: failed.iter().all(|c| c.transient),
    }
    .into())
}

/// `targeting train`: the models (or the one named) trained and stored as `current`.
pub(super) async fn run_train(settings: &Settings, a: &TrainArgs) -> Result<()> {
    let as_of = a.as_of.unwrap_or_else(RunDate::today);
    let source = settings.source.connect(false).await?;
    let state = settings.state_db(&source).await?;
    let src = pipeline::extract::training_tables(&source, Some(&state), settings, as_of)
        .await?
        .tables;
    // Each stored model with its held-out metric; the conversion model's interval when the
    // whole set was trained (the bootstrap runs there).
    let stored: Vec<(ModelArtifact, Option<Interval>)> = match a.model {
        Some(name) => {
            let m = training::train_and_store_one(settings, &src, as_of, name).await?;
            vec![(m, None)]
        }
        None => {
            let set = training::train_and_store(settings, &src, as_of).await?.set;
            let ci = set.used.qini_auc;
            vec![
                (set.uplift, Some(ci)),
                (set.discount_uplift, None),
                (set.sensitivity, None),
            ]
        }
    };
    println!(
        "trained as of {as_of}, stored in {}:",
        settings.models.store
    );
    for (artifact, ci) in &stored {
        let meta = &artifact.metadata;
        let (metric, value) = meta.headline();
        let interval = ci.map_or(String::new(), |ci| {
            format!(" (95% CI {:.4} to {:.4})", ci.low, ci.high)
        });
        println!(
            "  {} {} ({}): held-out {metric} {value:.4}{interval}",
            meta.name,
            meta.version,
            meta.learner.name(),
        );
    }
    Ok(())
}

/// `targeting runs list`: the ledger, newest first, as a table or (`--json`) one JSON array.
pub(super) async fn list_runs(settings: &Settings, a: &RunsListArgs) -> Result<()> {
    let state = Db::connect(&settings.state_url, false).await?;
    state.migrate_state().await?;
    let filter = ledger::RunFilter {
        campaign: a.campaign.as_deref(),
        status: a.status,
        since: a.since,
    };
    let runs = ledger::runs(&state, filter, a.limit).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs in {}", state.display);
        return Ok(());
    }
    print!("{}", runs_table(&runs));
    Ok(())
}

/// `targeting report`: the lift of each campaign-day in the range (see [`crate::report`]).
pub(super) async fn report(settings: &Settings, a: &ReportArgs) -> Result<()> {
    let as_of = a.as_of.unwrap_or_else(RunDate::today);
    let to = a.to.unwrap_or(as_of);
    let from = a.from.unwrap_or_else(|| to.days_before(90));
    if from > to {
        bail!("--from {from} is after --to {to}");
    }
    let source = settings.source.connect(false).await?;
    let state = settings.state_db(&source).await?;
    let request = crate::report::ReportRequest {
        from,
        to,
        as_of,
        campaigns: a.campaigns.clone(),
    };
    let report = crate::report::report(settings, &source, &state, &request).await;
    state.close().await;
    source.close().await;
    let report = report?;
    if let Some(path) = &a.html {
        std::fs::write(path, report.html()?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        info!(path = %path.display(), "html report written");
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// `targeting models …`: list the stored versions, or move a model's `current`.
pub(super) async fn models_command(settings: &Settings, command: ModelsCommand) -> Result<()> {
    let store = settings.models.open_store(&settings.store).await?;
    let moved = match command {
        ModelsCommand::List { json } => return list_models(settings, &store, json).await,
        ModelsCommand::Promote { name, version } => {
            (name, model_store::promote(&store, name, &version).await?)
        }
        ModelsCommand::Rollback { name } => (name, model_store::rollback(&store, name).await?),
    };
    let (name, m) = moved;
    println!(
        "{name}: current is {} (was {}), by {} at {}",
        m.version,
        m.previous.as_deref().unwrap_or("none"),
        m.by,
        m.at
    );
    Ok(())
}

/// One stored model version, as `models list --json` prints it.
#[derive(Debug, serde::Serialize)]
struct ListedModel<'a> {
    model: &'a str,
    version: &'a str,
    current: bool,
    learner: &'static str,
    created_at: &'a str,
    /// Hours since it was trained (for a monitor of stale `current` models).
    age_hours: Option<f64>,
    training_window: &'a (String, String),
    rows_train: usize,
    rows_valid: usize,
    rows_test: usize,
    /// Held-out metrics by name (`qini_auc`, `auc`, `qini_auc_<level>`, …).
    metrics: std::collections::BTreeMap<&'a str, f64>,
}

/// `targeting models list`: every stored version; `*` marks `current`. With `json`, one JSON
/// array instead.
async fn list_models(settings: &Settings, store: &ObjectStore, json: bool) -> Result<()> {
    let listed = model_store::list(store).await?;
    if json {
        let now = chrono::Utc::now();
        let rows: Vec<ListedModel> = listed
            .iter()
            .map(|l| {
                let m = &l.metadata;
                let age_hours = chrono::DateTime::parse_from_rfc3339(&m.created_at)
                    .ok()
                    .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds() as f64 / 3600.0);
                ListedModel {
                    model: &m.name,
                    version: &m.version,
                    current: l.current,
                    learner: m.learner.name(),
                    created_at: &m.created_at,
                    age_hours,
                    training_window: &m.training_window,
                    rows_train: m.rows_train,
                    rows_valid: m.rows_valid,
                    rows_test: m.rows_test,
                    metrics: m.metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect(),
                }
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if listed.is_empty() {
        println!("no models in {}", settings.models.store);
        return Ok(());
    }
    println!(
        "  {:<20} {:<26} {:<10} {:<21} {:>10} {:>9} {:>7}",
        "model", "version", "learner", "created", "rows", "held-out", ""
    );
    for l in listed {
        let m = &l.metadata;
        let (metric, value) = m.headline();
        println!(
            "{} {:<20} {:<26} {:<10} {:<21} {:>10} {:>9} {value:>7.4}",
            if l.current { "*" } else { " " },
            m.name,
            m.version,
            m.learner.name(),
            m.created_at,
            m.rows_train + m.rows_valid,
            metric,
        );
    }
    Ok(())
}

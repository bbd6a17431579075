//! `targeting schedule`: the long-running daemon. Each campaign runs on its own schedule (its
//! `[schedule]`, else the settings' `default_cron`), the models are retrained on the settings'
//! `retrain_cron`, and `/healthz`, `/readyz` and `/metrics` tell a monitoring system how it goes.
//! Each firing reads the campaign files again (see [`Worker::reread`]).
//!
//! Firing times come from the campaign's cron expression in its time zone (correct across DST
//! changes); tokio-cron-scheduler runs a one-shot job at each, which queues the firing and sets
//! up the next. One worker takes the queue in order, so runs never overlap in a process; across
//! processes and machines a lock per campaign and run date (see [`crate::state::lock`]) and the ledger
//! make each campaign run once per date: a firing whose date already succeeded, or whose lock
//! another process holds, is skipped. Transient failures are retried with exponential backoff.
//!
//! A firing whose lock another process holds is looked at again later: by then that process
//! has finished it, or it crashed and its lease expired. On start, a campaign whose last
//! firing in `catch_up_hours` has not succeeded runs once. On
//! SIGTERM or SIGINT no new run starts; a run in progress has `grace_secs` to finish, else it is
//! dropped where it stands (it never wrote `_SUCCESS`) and its ledger rows say `aborted`. The
//! next start catches it up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

mod http;
pub mod metrics;

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use models::{ModelName, RunDate};
use segments::campaign::Schedule;
use segments::Campaign;
use tokio::sync::{mpsc, watch};
use tokio_cron_scheduler::{Job, JobScheduler};
use tracing::{error, info, info_span, warn, Instrument};

use crate::config::{campaigns, Settings};
use crate::pipeline::{self, recover, RunRequest};
use crate::state::claim::{self, Claim};
use crate::state::db::Db;
use crate::state::ledger::{self, Status};
use crate::state::lock::Lock;
use crate::training::{self, model_store};
use metrics::Metrics;

/// What a firing asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Task {
    Campaign(String),
    Retrain,
}

/// A firing: the task and the run date it is for (its date in the schedule's time zone).
#[derive(Debug, Clone)]
struct Fired {
    task: Task,
    date: RunDate,
    /// How many times it was put back because another process held its lock.
    rechecks: u32,
}

/// A firing whose lock another process holds is looked at again this many times, half a
/// lease apart: by then the other process has finished it, or its lease has expired because
/// it crashed and this process takes over.
const MAX_RECHECKS: u32 = 4;

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(settings: &Settings) -> Result<()> {
    // Taken over first: from here on SIGTERM stops the daemon gracefully instead of killing it.
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    let s = &settings.scheduler;
    let campaigns = settings.campaigns()?;
    let source = settings.source.connect(false).await?;
    let state = settings.state_db(&source).await?;

    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .with_context(|| format!("cannot listen on scheduler.listen {}", s.listen))?;
    info!(address = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
    let http = tokio::spawn(http::serve(listener, metrics.clone(), state.pool.clone()));
    note_model_ages(settings, &metrics).await;

    let (queue, mut fired) = mpsc::unbounded_channel::<Fired>();
    let scheduler = JobScheduler::new()
        .await
        .map_err(|e| anyhow!("cannot start the scheduler: {e:?}"))?;
    let schedules: Vec<(Task, Schedule)> = campaigns
        .iter()
        .map(|c| {
            let schedule = c
                .schedule
                .clone()
                .unwrap_or_else(|| s.default_schedule.clone());
            (Task::Campaign(c.id.clone()), schedule)
        })
        .chain(s.retrain.clone().map(|r| (Task::Retrain, r)))
        .collect();
    for (task, schedule) in &schedules {
        let (task, schedule) = (task.clone(), schedule.clone());
        // Said at start, so that an operator sees when each campaign will run.
        if let Some(next) = schedule.next_after(Utc::now()) {
            let name = match &task {
                Task::Campaign(id) => id.as_str(),
                Task::Retrain => "retrain",
            };
            info!(task = %name, next = %next.format("%Y-%m-%dT%H:%M:%SZ"), "next firing");
        }
        arm(scheduler.clone(), task, schedule, queue.clone(), Utc::now()).await?;
    }
    scheduler
        .start()
        .await
        .map_err(|e| anyhow!("cannot start the scheduler: {e:?}"))?;
    info!(campaigns = campaigns.len(), "scheduler started");

    // Catch-up: one run per campaign whose last firing in the window has not succeeded.
    if s.catch_up > chrono::Duration::zero() {
        let now = Utc::now();
        for (task, schedule) in &schedules {
            let Task::Campaign(id) = task else { continue };
            let Some(last) = schedule.last_fired(now, s.catch_up) else {
                continue;
            };
            let date = RunDate::from(schedule.run_date(last));
            if !ledger::has_succeeded(&state, id, date).await? {
                info!(campaign = %id, run_date = %date, "catching up a missed run");
                let _ = queue.send(Fired {
                    task: task.clone(),
                    date,
                    rechecks: 0,
                });
            }
        }
    }

    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal(terminate).await;
        info!("stop signal received: no new runs");
        let _ = stop_tx.send(true);
    });
    let worker = Worker {
        settings,
        campaigns: std::sync::Mutex::new(campaigns),
        source,
        state,
        metrics,
        holder: claim::holder_id(),
        stop: stop.clone(),
        queue: queue.clone(),
    };
    let mut stopping = stop.clone();
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut stopping) => break,
            next = fired.recv() => {
                let Some(f) = next else { break };
                worker.handle(f).await;
            }
        }
    }
    let mut scheduler = scheduler;
    let _ = scheduler.shutdown().await;
    http.abort();
    info!("scheduler stopped");
    Ok(())
}

/// Notes in the metrics when each model's `current` version was trained (a model the store
/// cannot give is left out, and said once in the log).
async fn note_model_ages(settings: &Settings, metrics: &Metrics) {
    let read = async {
        let store = settings.models.open_store(&settings.store).await?;
        for name in ModelName::ALL {
            if let Some(m) = model_store::current_metadata(&store, name).await? {
                if let Ok(at) = chrono::DateTime::parse_from_rfc3339(&m.created_at) {
                    metrics.trained(name.as_str(), at.timestamp());
                }
            }
        }
        anyhow::Ok(())
    };
    if let Err(e) = read.await {
        warn!(error = %format!("{e:#}"), "cannot read the models' ages");
    }
}

/// Sets up the first firing of `schedule` after `after` (and after now) as a one-shot job that
/// queues it and sets up the one after.
fn arm(
    scheduler: JobScheduler,
    task: Task,
    schedule: Schedule,
    queue: mpsc::UnboundedSender<Fired>,
    after: chrono::DateTime<Utc>,
) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> {
    Box::pin(async move {
        let now = Utc::now();
        // A job may fire a little early: never the same firing twice.
        let Some(next) = schedule.next_after(after.max(now)) else {
            warn!(task = ?task, "the schedule never fires again");
            return Ok(());
        };
        let delay = (next - now).to_std().unwrap_or_default();
        let job = Job::new_one_shot_async(delay, move |_, scheduler| {
            let (task, schedule, queue) = (task.clone(), schedule.clone(), queue.clone());
            Box::pin(async move {
                let date = RunDate::from(schedule.run_date(next));
                let fired = Fired {
                    task: task.clone(),
                    date,
                    rechecks: 0,
                };
                if queue.send(fired).is_err() {
                    return; // shutting down
                }
                if let Err(e) = arm(scheduler, task, schedule, queue, next).await {
                    error!(error = %format!("{e:#}"), "cannot schedule the next firing");
                }
            })
        })
        .map_err(|e| anyhow!("cannot schedule a job: {e:?}"))?;
        scheduler
            .add(job)
            .await
            .map_err(|e| anyhow!("cannot schedule a job: {e:?}"))?;
        Ok(())
    })
}

/// Resolves once `stop` is true.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn wait_for_signal(mut terminate: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

struct Worker<'a> {
    settings: &'a Settings,
    /// The campaigns as last read: each firing reads the files again (see
    /// [`Worker::reread`]).
    campaigns: std::sync::Mutex<Vec<Campaign>>,
    source: Db,
    state: Db,
    metrics: Arc<Metrics>,
    holder: String,
    stop: watch::Receiver<bool>,
    /// For putting back a firing whose lock another process holds.
    queue: mpsc::UnboundedSender<Fired>,
}

impl Worker<'_> {
    async fn handle(&self, f: Fired) {
        let name = match &f.task {
            Task::Campaign(id) => id.clone(),
            Task::Retrain => "retrain".to_string(),
        };
        let span = info_span!("scheduled", task = %name, run_date = %f.date);
        async {
            // The files as they are now; a removed file's campaign does not run.
            if let Task::Campaign(id) = &f.task {
                if !self.reread().iter().any(|c| &c.id == id) {
                    warn!("the campaign's file is gone from the campaigns folder: not run");
                    return;
                }
            }
            let lease = self.settings.scheduler.lease;
            let claimed = match &f.task {
                Task::Campaign(id) => {
                    claim::claim(&self.state, id, f.date, &self.holder, lease, false).await
                }
                Task::Retrain => {
                    let key = format!("retrain:{}", f.date);
                    Lock::try_acquire(&self.state, &key, &self.holder, lease)
                        .await
                        .map(|lock| {
                            lock.map_or(Claim::Elsewhere, |lock| Claim::Ours {
                                lock,
                                republish: false,
                            })
                        })
                }
            };
            let lock = match claimed {
                Ok(Claim::Ours { lock, .. }) => lock,
                Ok(Claim::Done) => {
                    info!("already succeeded: skipped");
                    self.metrics.skipped(&name, "done");
                    return;
                }
                Ok(Claim::Elsewhere) => {
                    info!(rechecks = f.rechecks, "held by another process: skipped");
                    self.metrics.skipped(&name, "locked");
                    self.recheck_later(&f);
                    return;
                }
                Err(e) => {
                    // The state database is unreachable: look again later, like a held lock.
                    error!(error = %format!("{e:#}"), "cannot take the lock: skipped");
                    self.recheck_later(&f);
                    return;
                }
            };
            self.metrics.set_running(Some(&name));
            let work = match &f.task {
                Task::Campaign(id) => Box::pin(self.campaign(id, f.date))
                    as Pin<Box<dyn Future<Output = Result<()>> + Send + '_>>,
                Task::Retrain => Box::pin(self.retrain(f.date)),
            };
            let outcome = self.until_stopped(work).await;
            match outcome {
                Some(Ok(())) => {}
                Some(Err(e)) => error!(error = %format!("{e:#}"), "scheduled run failed"),
                None => {
                    // Dropped mid-run: say so in the ledger. If its export was complete by
                    // then (dropped while delivering it), the next firing adopts it: settling
                    // looks at aborted rows too.
                    if let Task::Campaign(id) = &f.task {
                        let reason = "aborted at shutdown: the grace period ran out";
                        match ledger::abort_running(&self.state, id, f.date, reason).await {
                            Ok(n) => {
                                for _ in 0..n {
                                    self.metrics.record(id, Status::Aborted, 0.0, 0);
                                }
                                warn!(runs = n, "run in progress aborted at shutdown");
                            }
                            Err(e) => {
                                error!(error = %format!("{e:#}"), "cannot mark the run aborted")
                            }
                        }
                    }
                }
            }
            self.metrics.set_running(None);
            lock.release().await;
        }
        .instrument(span)
        .await;
    }

    /// Puts a firing back in the queue half a lease from now, up to [`MAX_RECHECKS`] times.
    fn recheck_later(&self, f: &Fired) {
        if f.rechecks >= MAX_RECHECKS {
            return;
        }
        let (queue, wait) = (self.queue.clone(), self.settings.scheduler.lease / 2);
        let again = Fired {
            rechecks: f.rechecks + 1,
            ..f.clone()
        };
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = queue.send(again);
        });
    }

    /// Runs `work`; after a stop signal it has the grace period to finish, else it is dropped
    /// (`None`).
    async fn until_stopped<T>(
        &self,
        mut work: Pin<Box<dyn Future<Output = T> + Send + '_>>,
    ) -> Option<T> {
        let mut stop = self.stop.clone();
        tokio::select! {
            out = &mut work => return Some(out),
            _ = stopped(&mut stop) => {}
        }
        let grace = self.settings.scheduler.grace;
        info!(
            grace_secs = grace.as_secs(),
            "waiting for the run in progress"
        );
        tokio::time::timeout(grace, work).await.ok()
    }

    /// One campaign's run for a date, claimed already (see [`claim::claim`]): unfinished runs
    /// are settled first (a complete export adopted), and transient failures are retried, each
    /// retry only when the ledger still has no succeeded run and no complete export.
    async fn campaign(&self, id: &str, date: RunDate) -> Result<()> {
        // As read at this firing (see `handle`).
        let all = self
            .campaigns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let campaign = all.iter().find(|c| c.id == id).with_context(|| {
            format!("campaign {id}'s file is gone from the campaigns folder: not run")
        })?;
        let s = &self.settings.scheduler;
        let mut wait = s.retry_backoff;
        // The night: every campaign due on the date takes part in arbitration.
        let night = campaigns::night(&all, date, &[id.to_string()]);
        for attempt in 1..=s.attempts {
            if attempt > 1 && ledger::has_succeeded(&self.state, id, date).await? {
                info!(attempt, "succeeded meanwhile: no retry");
                return Ok(());
            }
            // A complete export that an earlier run (or attempt) could not record is the
            // campaign-day's list: adopted, not published again.
            if recover::settle(self.settings, &self.state, campaign, date)
                .await?
                .is_some()
            {
                self.metrics.skipped(id, "done");
                return Ok(());
            }
            let started = Instant::now();
            let result = pipeline::run(
                RunRequest {
                    settings: self.settings,
                    date,
                    campaigns: night.clone(),
                    only: vec![id.to_string()],
                    dry_run: false,
                    retrain: false,
                    forced: vec![],
                    from_shards: None,
                },
                &self.source,
                &self.state,
            )
            .await;
            let seconds = started.elapsed().as_secs_f64();
            if let Ok(report) = &result {
                self.metrics.drift(&report.drift);
            }
            let (failure, transient) = match result {
                Ok(report) => match report.campaigns.iter().find(|c| c.campaign_id == id) {
                    Some(c) if c.error.is_none() => {
                        self.metrics
                            .record(id, Status::Succeeded, seconds, c.audience);
                        info!(rows = c.audience, seconds, "campaign run succeeded");
                        return Ok(());
                    }
                    Some(c) => {
                        self.metrics.record(id, Status::Failed, seconds, 0);
                        (c.error.clone().unwrap_or_default(), c.transient)
                    }
                    None => bail!("campaign {id} is not in the run's report"),
                },
                Err(e) => {
                    self.metrics.record(id, Status::Failed, seconds, 0);
                    (format!("{e:#}"), pipeline::is_transient(&e))
                }
            };
            if !transient || attempt == s.attempts {
                bail!("attempt {attempt} of {}: {failure}", s.attempts);
            }
            warn!(attempt, wait_secs = wait.as_secs(), error = %failure, "transient failure, retrying");
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        Ok(())
    }

    /// The campaign files read again at each firing, so that a marketer's edit takes effect
    /// without a restart: a file that validates replaces what was read before; one that
    /// no longer does keeps the last version that did (said in the log, each firing); a removed
    /// file's campaign no longer runs. A changed `[schedule]`, and a new file's, take effect
    /// at the next start, when the firings are set up.
    fn reread(&self) -> Vec<Campaign> {
        let mut known = self.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        match self.settings.campaigns_each() {
            Ok((valid, broken)) => {
                let mut next = valid;
                for b in broken {
                    let problems = b.problems.join("; ");
                    match known.iter().find(|c| c.id == b.id) {
                        Some(last) => {
                            warn!(campaign = %b.id, %problems, "the campaign file no longer validates: the last version that did runs");
                            next.push(last.clone());
                        }
                        None => {
                            warn!(campaign = %b.id, %problems, "a campaign file does not validate")
                        }
                    }
                }
                *known = next;
            }
            Err(e) => {
                warn!(error = %format!("{e:#}"), "cannot read the campaign files: the versions read before run");
            }
        }
        known.clone()
    }

    /// Retrains the models as of `date`, unless the current conversion model was trained that
    /// day already.
    async fn retrain(&self, date: RunDate) -> Result<()> {
        let store = self
            .settings
            .models
            .open_store(&self.settings.store)
            .await?;
        let name = ModelName::ConversionUplift;
        if let Some(current) = model_store::load_current(&store, name).await? {
            if current
                .metadata
                .created_at
                .starts_with(&RunDate::today().to_string())
            {
                info!(version = %current.metadata.version, "models already trained today: skipped");
                self.metrics.skipped("retrain", "done");
                return Ok(());
            }
        }
        let src = pipeline::extract::training_tables(
            &self.source,
            Some(&self.state),
            self.settings,
            date,
        )
        .await?
        .tables;
        let m = training::train_and_store(self.settings, &src, date).await?;
        info!(version = %m.set.used.version, "models retrained");
        note_model_ages(self.settings, &self.metrics).await;
        Ok(())
    }
}

//! Faults while a run publishes, each followed by recovery the way a scheduler retries:
//! `SIGKILL` at seeded random moments of the publish stage (to a folder on SQLite, to S3 on
//! PostgreSQL), and the state database lost between `_SUCCESS` and the ledger write.
//!
//! The invariant after each: at most one complete export per campaign-day, every complete
//! export read back and checked against its manifest, no `succeeded` ledger row without one;
//! and once recovered, exactly one `succeeded` row per campaign-day, naming that export.
//! The suite kills 4 runs of each kind; `FAULT_TRIALS=20 bash scripts/test.sh --test e2e --
//! faults:: --nocapture` is the sweep (and `scripts/trials/kill_runs.sh` the same against any
//! build of the binary).

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::common::s3;
use crate::common::*;

const CAMPAIGNS: [&str; 5] = [
    "drop-starfall-nightfall",
    "gift-a-friend",
    "new-buyer-welcome",
    "seasonal-winter-sale",
    "weekly-deal",
];

/// The `n`-th night after the demo's.
fn night(n: u64) -> String {
    let date = chrono::NaiveDate::parse_from_str(DATE, "%Y-%m-%d").unwrap();
    (date + chrono::Days::new(n)).format("%Y-%m-%d").to_string()
}

/// `campaign/dt=…/run=…`: how a complete export and a ledger row's `export_uri` are compared
/// (the URI's scheme and root differ between a folder and a bucket).
fn tail(uri: &str) -> String {
    let parts: Vec<&str> = uri.trim_end_matches('/').rsplit('/').take(3).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

/// Where the runs publish.
enum Exports {
    Folder(PathBuf),
    Bucket {
        client: aws_sdk_s3::Client,
        bucket: String,
        root: String,
    },
}

impl Exports {
    fn uri(&self) -> String {
        match self {
            Exports::Folder(dir) => format!("file://{}", dir.display()),
            Exports::Bucket { bucket, root, .. } => format!("s3://{bucket}/{root}"),
        }
    }

    /// Whether anything of `night` has been written: the publish stage has begun.
    async fn begun(&self, night: &str) -> bool {
        match self {
            Exports::Folder(dir) => CAMPAIGNS
                .iter()
                .any(|c| !run_folders(dir, c, night).is_empty()),
            Exports::Bucket {
                client,
                bucket,
                root,
            } => s3::list(client, bucket, &format!("{root}/"))
                .await
                .iter()
                .any(|o| o.key.contains(&format!("/dt={night}/"))),
        }
    }

    /// The complete exports of a campaign-day (with `_SUCCESS`), each read back and checked
    /// against its manifest (parts, row counts, SHA-256, header, no duplicate user), as tails.
    async fn complete(&self, campaign: &str, night: &str) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            Exports::Folder(dir) => {
                for run in run_folders(dir, campaign, night) {
                    if run.join("_SUCCESS").exists() {
                        let export = read_export(&run);
                        assert_eq!(export.manifest["campaign_id"], campaign);
                        out.push(tail(&run.display().to_string()));
                    }
                }
            }
            Exports::Bucket {
                client,
                bucket,
                root,
            } => {
                for prefix in s3::run_prefixes(client, bucket, root, campaign, night).await {
                    let objects = s3::list(client, bucket, &prefix).await;
                    if objects.iter().any(|o| o.key.ends_with("/_SUCCESS")) {
                        let export = s3::read_s3_export(client, bucket, &prefix).await;
                        assert_eq!(export.manifest["campaign_id"], campaign);
                        out.push(tail(&prefix));
                    }
                }
            }
        }
        out
    }

    /// The invariant while a campaign-day may still be unrecovered: at most one complete export
    /// per campaign, and every `succeeded` row names a complete export.
    async fn check(&self, db: &str, night: &str) {
        let rows = ledger(db).await;
        for c in CAMPAIGNS {
            let complete = self.complete(c, night).await;
            assert!(complete.len() <= 1, "{c} {night}: {complete:?}");
            for r in rows
                .iter()
                .filter(|r| r.campaign_id == c && r.run_date == night && r.status == "succeeded")
            {
                let uri = r.export_uri.as_deref().unwrap_or_default();
                assert!(
                    complete.contains(&tail(uri)),
                    "{c} {night}: succeeded row without a complete export: {r:?}, {complete:?}"
                );
            }
        }
    }

    /// The invariant once recovered: each campaign-day has exactly one complete export and one
    /// `succeeded` row naming it, and nothing left `running`.
    async fn check_recovered(&self, db: &str, night: &str) {
        self.check(db, night).await;
        let rows = ledger(db).await;
        for c in CAMPAIGNS {
            let complete = self.complete(c, night).await;
            assert_eq!(complete.len(), 1, "{c} {night}: {complete:?}");
            let of = |status: &str| {
                rows.iter()
                    .filter(|r| r.campaign_id == c && r.run_date == night && r.status == status)
                    .count()
            };
            assert_eq!(of("succeeded"), 1, "{c} {night}: {rows:?}");
            assert_eq!(of("running"), 0, "{c} {night}: {rows:?}");
        }
    }
}

/// `targeting run` for `night`, with the world's models.
fn run_args(world: &TestEnv, exports: &Exports, night: &str) -> Vec<String> {
    job_args("run", night, &world.db, &exports.uri(), "2")
}

/// Starts a run; its stderr goes to `log`, to show when it ends early.
fn start(args: &[String], env: &[(&str, &str)], log: &std::path::Path) -> Child {
    targeting_command(args, env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Runs until it succeeds, as a scheduler retries: a killed run's SQLite lease has to run out
/// first. Returns its stdout.
async fn retry(args: &[String], env: &[(&str, &str)]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (a, e) = (args.to_vec(), owned(env));
        let out = tokio::task::spawn_blocking(move || {
            let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            targeting_env(&a, &e)
        })
        .await
        .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let err = stderr(&out);
        assert!(
            err.contains("being run by another process") && Instant::now() < deadline,
            "{err}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Waits until the run has begun publishing `night` (or has exited, which fails the test).
async fn wait_begun(child: &mut Child, exports: &Exports, night: &str, log: &std::path::Path) {
    while !exports.begun(night).await {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("the run ended ({status}) before publishing {night}:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One run left alone, to measure how long publishing takes here; then `trials` runs each
/// killed at a seeded random moment of that window and run again. Returns how many killed
/// runs had left a complete export that the next run adopted.
async fn kill_trials(
    world: &TestEnv,
    exports: &Exports,
    env: &[(&str, &str)],
    trials: u64,
) -> usize {
    let log = world.dir.join("run.log");
    let first = night(1);
    let mut child = start(&run_args(world, exports, &first), env, &log);
    wait_begun(&mut child, exports, &first, &log).await;
    let begun = Instant::now();
    assert!(child.wait().unwrap().success());
    let window = begun.elapsed();
    exports.check_recovered(&world.db, &first).await;

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261130);
    let mut adopted = 0;
    for t in 0..trials {
        let night = night(2 + t);
        let args = run_args(world, exports, &night);
        let mut child = start(&args, env, &log);
        wait_begun(&mut child, exports, &night, &log).await;
        let at = Duration::from_micros(rng.random_range(0..window.as_micros() as u64));
        tokio::time::sleep(at).await;
        child.kill().unwrap();
        child.wait().unwrap();
        exports.check(&world.db, &night).await;

        let out = retry(&args, env).await;
        adopted += out.matches("adopted the complete export").count();
        exports.check_recovered(&world.db, &night).await;
    }
    adopted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_killed_while_publishing_to_a_folder_publish_each_campaign_day_once_on_sqlite() {
    let world = TestEnv::sqlite("kill-folder");
    assert_ok(&world.demo("5000", &[]));
    let exports = Exports::Folder(world.dir.join("nights"));
    let models = world.dir.join("models").display().to_string();
    let env = [
        ("TARGETING__MODELS__STORE", models.as_str()),
        // A killed run's lease runs out in seconds, not minutes.
        ("TARGETING__SCHEDULER__LEASE_SECS", "3"),
    ];
    let n = trials();
    let adopted = kill_trials(&world, &exports, &env, n).await;
    eprintln!("{n} kill trials to a folder: {adopted} complete exports of killed runs adopted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_killed_while_publishing_to_s3_publish_each_campaign_day_once_on_postgres() {
    let world = TestEnv::postgres("kill-s3").await;
    assert_ok(&world.demo("5000", &[]));
    let client = s3::default_client();
    let bucket = format!("faults-{}", std::process::id());
    s3::create_bucket(&client, &bucket).await;
    let exports = Exports::Bucket {
        client,
        bucket,
        root: "nights".into(),
    };
    let models = world.dir.join("models").display().to_string();
    let env = [
        ("TARGETING__MODELS__STORE", models.as_str()),
        ("TARGETING__S3__FORCE_PATH_STYLE", "true"),
    ];
    let n = trials();
    let adopted = kill_trials(&world, &exports, &env, n).await;
    eprintln!("{n} kill trials to S3: {adopted} complete exports of killed runs adopted");
}

/// Kill trials per test: 4, or `FAULT_TRIALS` for a sweep.
fn trials() -> u64 {
    std::env::var("FAULT_TRIALS").map_or(4, |n| n.parse().expect("FAULT_TRIALS is a number"))
}

/// The state database goes away after a campaign's `_SUCCESS` and before its ledger row says
/// so (the `targeting_runs` table is held locked, then every connection of the run is
/// terminated): the run fails, the row still says `running`, and the next run adopts the
/// complete export instead of publishing the campaign-day again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_database_lost_after_success_leaves_an_export_the_next_run_adopts() {
    let world = TestEnv::postgres("db-lost").await;
    assert_ok(&world.demo("5000", &[]));
    let exports = Exports::Folder(world.dir.join("nights"));
    let models = world.dir.join("models").display().to_string();
    let env = [("TARGETING__MODELS__STORE", models.as_str())];
    let night = night(1);
    let args = run_args(&world, &exports, &night);

    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&world.db)
        .await
        .unwrap();
    let mut child = targeting_command(&args, &env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Every campaign's row is `running`: hold the table, so the first end-of-run write waits.
    loop {
        let rows = ledger(&world.db).await;
        if rows
            .iter()
            .filter(|r| r.run_date == night && r.status == "running")
            .count()
            == CAMPAIGNS.len()
        {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut hold = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE targeting_runs IN EXCLUSIVE MODE")
        .execute(&mut *hold)
        .await
        .unwrap();
    // A campaign is complete and its ledger write waits on the lock.
    let mut done = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.is_none() {
        for c in CAMPAIGNS {
            if !exports.complete(c, &night).await.is_empty() {
                done = Some(c);
            }
        }
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = done.unwrap();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut *hold)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The database goes away for the run: every connection but this one is cut.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut *hold)
    .await
    .unwrap();
    hold.rollback().await.unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the run cannot have recorded its end"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot record the end of run"), "{err}");

    // The export is complete and the ledger does not say so.
    exports.check(&world.db, &night).await;
    let rows = ledger(&world.db).await;
    let row = rows
        .iter()
        .find(|r| r.campaign_id == done && r.run_date == night)
        .unwrap();
    assert_eq!(row.status, "running", "{rows:?}");

    let stdout = retry(&args, &env).await;
    assert!(
        stdout.contains(&format!("{done}: adopted the complete export")),
        "{stdout}"
    );
    exports.check_recovered(&world.db, &night).await;
}

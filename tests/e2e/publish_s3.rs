//! Publishing to S3 — a moto server on loopback, started by `scripts/test.sh` — end to end:
//! the layout, manifests checked against the objects read back, `_SUCCESS` last, a large part
//! as a multipart upload, every format and column preset, the ledger and assignments matching
//! the files, byte-identical parts on a re-run, `runs list`, wrong credentials, a server
//! that stops in the middle of a run, and a delivery to a prefix Braze CDI watches.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::common::s3::{self, run_prefixes, Relay};
use crate::common::*;

const USERS: &str = "30000";

/// Long offer text: it makes the JSON-lines list outgrow one 5 MB upload part.
const LONG_LABEL: &str = "Winter sale: up to 30% off every game in the store, with free \
    shipping on physical editions, double loyalty points on every order, a free month of the \
    premium membership for new subscribers, early access to the spring catalogue, and a \
    surprise gift for everyone who buys before Sunday midnight";

/// The campaign files of these tests: one per format and column preset.
fn campaigns(dir: &Path) -> PathBuf {
    let dir = dir.join("campaigns");
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        (
            "big-list.toml",
            format!(
                r#"format_version = 1
id = "big-list"
kind = "seasonal"
priority = 10
holdout = 0.05
max_audience = 100000
[offer]
discount_pct = 30
label = "{LONG_LABEL}"
[seasonal]
min_uplift = -1.0
[export]
format = "jsonl"
columns = "braze"
"#
            ),
        ),
        (
            "deal-csv.toml",
            r#"format_version = 1
id = "deal-csv"
kind = "weekly_deal"
priority = 20
holdout = 0.1
max_audience = 3000
eligibility = ["not is_new_buyer"]
[offer]
discount_pct = 20
margin = 0.35
[export]
format = "csv_gzip"
columns = "iterable"
"#
            .to_string(),
        ),
        (
            "welcome-parquet.toml",
            r#"format_version = 1
id = "welcome-parquet"
kind = "new_buyer"
priority = 30
holdout = 0.15
max_audience = 3000
[offer]
discount_pct = 15
[export]
format = "parquet"
columns = "generic"
holdout_file = true
"#
            .to_string(),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

const CAMPAIGNS: [&str; 3] = ["big-list", "deal-csv", "welcome-parquet"];

/// Settings of every run: the test's campaigns and model store, 5 MB upload parts, quick
/// retries.
fn env_for(dir: &Path) -> Vec<(String, String)> {
    vec![
        (
            "TARGETING__TARGETING__CAMPAIGNS_DIR".into(),
            campaigns(dir).display().to_string(),
        ),
        (
            "TARGETING__MODELS__STORE".into(),
            dir.join("models").display().to_string(),
        ),
        ("TARGETING__S3__FORCE_PATH_STYLE".into(), "true".into()),
        ("TARGETING__EXPORT__UPLOAD_PART_MB".into(), "5".into()),
        ("TARGETING__EXPORT__RETRY_BACKOFF_MS".into(), "50".into()),
    ]
}

/// Runs the binary on a blocking thread, so that a relay on this runtime keeps serving.
async fn run(args: Vec<String>, env: Vec<(String, String)>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        targeting_env(&args, &env)
    })
    .await
    .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A world with the demo source in a new PostgreSQL database and the models trained
/// (publishing to a local folder).
async fn demo_source(name: &str) -> TestEnv {
    let world = TestEnv::postgres(name).await;
    let mut args = world.demo_args(USERS);
    args.extend([
        "--exports".into(),
        format!("file://{}", world.dir.join("local").display()),
    ]);
    assert_ok(&run(args, env_for(&world.dir)).await);
    world
}

/// `targeting run` for the test date against the generated source: every campaign (they have
/// no schedule, so all are due), published again on purpose (the demo published the date).
fn run_args(db_url: &str, exports: &str) -> Vec<String> {
    let mut args = job_args("run", DATE, db_url, exports, "2");
    args.push("--force".into());
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_to_s3_verifiably_and_repeatably() {
    let world = demo_source("s3-publish").await;
    let (dir, db) = (world.dir.clone(), world.db.clone());
    let client = s3::default_client();
    // Unique per test process: the server may outlive one run of the tests.
    let bucket = &format!("targeting-publish-{}", std::process::id());
    s3::create_bucket(&client, bucket).await;
    let exports = format!("s3://{bucket}/exports");
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let out = run(run_args(&db, &exports), env_for(&dir)).await;
        assert_ok(&out);
        outputs.push(stderr(&out));
    }

    let forbidden = forbidden_users(&db).await;
    let ledger = ledger(&db).await;
    let mut multipart_seen = false;
    for campaign in CAMPAIGNS {
        let runs = run_prefixes(&client, bucket, "exports", campaign, DATE).await;
        assert_eq!(runs.len(), 2, "{campaign}: one folder per run: {runs:?}");
        let a = s3::read_s3_export(&client, bucket, &runs[0]).await;
        let b = s3::read_s3_export(&client, bucket, &runs[1]).await;
        assert_eq!(
            a.part_hashes, b.part_hashes,
            "{campaign}: a re-run gives byte-identical parts"
        );
        assert_eq!(a.manifest["model_versions"], b.manifest["model_versions"]);
        assert!(a.ids.len() > 300, "{campaign}: {} rows", a.ids.len());
        assert!(
            a.ids.iter().all(|u| !forbidden.contains(u)),
            "{campaign}: a suppressed or non-consenting user is in the list"
        );
        for o in &a.objects {
            if o.key.contains("/part-") && o.size > 5 * 1024 * 1024 {
                // A multipart upload's ETag is `<md5 of the part md5s>-<parts>`.
                let parts: usize = o
                    .etag
                    .rsplit_once('-')
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(0);
                assert!(parts >= 2, "{}: {} bytes, ETag {}", o.key, o.size, o.etag);
                multipart_seen = true;
            }
        }
        // The ledger and the assignments say exactly what the files say.
        for export in [&a, &b] {
            let run_id = export.manifest["run_id"].as_str().unwrap();
            let uri = format!("s3://{bucket}/{}", export.prefix.trim_end_matches('/'));
            let row = ledger
                .iter()
                .find(|r| r.campaign_id == campaign && r.export_uri.as_deref() == Some(&uri))
                .unwrap_or_else(|| panic!("{campaign}: no ledger row for {uri}: {ledger:?}"));
            assert_eq!(row.status, "succeeded");
            assert_eq!(row.audience_size, Some(export.ids.len() as i64));
            let held = export.manifest["holdout_count"].as_u64().unwrap() as i64;
            assert_eq!(row.holdout_size, Some(held));
            let treated = assigned(&db, run_id, campaign, "treatment").await;
            let listed: HashSet<i64> = export.ids.iter().copied().collect();
            assert_eq!(treated, listed, "{campaign}: assignments match the list");
            let holdout = assigned(&db, run_id, campaign, "holdout").await;
            assert_eq!(holdout.len() as i64, held);
            assert!(
                holdout.is_disjoint(&listed),
                "{campaign}: holdout in a list"
            );
            if let Some(file) = &export.holdout_ids {
                assert_eq!(
                    file, &holdout,
                    "{campaign}: holdout.csv.gz is the holdout arm"
                );
            }
        }
    }
    assert!(multipart_seen, "no part went through a multipart upload");

    // Training sees the assignments of earlier nights as exposures, never those of its own
    // night: the second run of the date saw none of the first's; the next night sees the last
    // run of the date (the second, which replaced the first), both arms.
    let added = |log: &str| -> u64 {
        let line = log
            .lines()
            .find(|l| l.contains("own assignments added to the exposures"))
            .unwrap_or_else(|| panic!("{log}"));
        line.rsplit("rows=").next().unwrap().trim().parse().unwrap()
    };
    assert_eq!(added(&outputs[1]), 0, "{}", outputs[1]);
    let mut last_run = 0;
    for campaign in CAMPAIGNS {
        let runs = run_prefixes(&client, bucket, "exports", campaign, DATE).await;
        let m = s3::read_s3_export(&client, bucket, &runs[1]).await.manifest;
        last_run += m["row_count"].as_u64().unwrap() + m["holdout_count"].as_u64().unwrap();
    }
    let mut next_night = job_args("run", "2026-11-21", &db, &exports, "2");
    next_night.push("--dry-run".into());
    let out = run(next_night, env_for(&dir)).await;
    assert_ok(&out);
    assert_eq!(added(&stderr(&out)), last_run, "{}", stderr(&out));

    // Presets: the Iterable list carries each user's email address (all of them consented),
    // empty where a user has none.
    let deal = run_prefixes(&client, bucket, "exports", "deal-csv", DATE).await;
    let export = s3::read_s3_export(&client, bucket, &deal[0]).await;
    assert_eq!(export.manifest["preset"], "iterable");
    assert_eq!(export.manifest["columns"][1], "email");
    let part = export.manifest["parts"][0]["path"].as_str().unwrap();
    let bytes = s3::get(&client, bucket, &format!("{}{part}", export.prefix)).await;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    let known = emails(&db).await;
    let mut with_email = 0;
    for rec in csv::Reader::from_reader(text.as_bytes()).records() {
        let rec = rec.unwrap();
        let user: i64 = rec[0].parse().unwrap();
        let email = Some(rec[1].to_string()).filter(|e| !e.is_empty());
        with_email += usize::from(email.is_some());
        assert_eq!(email, known[&user], "email of user {user}");
    }
    assert!(with_email > 0, "no email at all");
    // The Parquet list is typed: ids as text, like every preset's, and read back whole.
    let welcome = run_prefixes(&client, bucket, "exports", "welcome-parquet", DATE).await;
    let export = s3::read_s3_export(&client, bucket, &welcome[0]).await;
    let part = export.manifest["parts"][0]["path"].as_str().unwrap();
    let bytes = s3::get(&client, bucket, &format!("{}{part}", export.prefix)).await;
    let rows = s3::parquet_strings(&bytes, &["external_id", "campaign_id"]);
    assert_eq!(rows.len(), export.ids.len());
    assert!(rows
        .iter()
        .all(|r| r[1].as_deref() == Some("welcome-parquet")));
    let big = run_prefixes(&client, bucket, "exports", "big-list", DATE).await;
    let manifest = s3::read_s3_export(&client, bucket, &big[0]).await.manifest;
    assert_eq!(manifest["columns"][1], "targeting_campaign");

    // `runs list` shows them, newest first.
    let state_env = env_for(&dir);
    let listed = run(
        strings(&[
            "runs",
            "list",
            "--campaign",
            "deal-csv",
            "--state-database-url",
            &db,
        ]),
        state_env,
    )
    .await;
    assert_ok(&listed);
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    // A run's line, then its note for the forced re-publishes of the demo's date.
    let lines: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with(' '))
        .collect();
    assert_eq!(lines.len(), 3, "two S3 runs and the demo's: {text}");
    assert_eq!(
        text.matches("note: published again on purpose (--force)")
            .count(),
        2,
        "{text}"
    );
    assert!(lines
        .iter()
        .all(|l| l.contains("deal-csv") && l.contains("succeeded")));
    let newest = run_prefixes(&client, bucket, "exports", "deal-csv", DATE).await[1].clone();
    assert!(
        lines[0].contains(&format!("s3://{bucket}/{}", newest.trim_end_matches('/'))),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_publish_nothing() {
    let (Ok(endpoint), Ok(bucket), Ok(key), Ok(secret)) = (
        std::env::var("TEST_S3_AUTH_ENDPOINT"),
        std::env::var("TEST_S3_AUTH_BUCKET"),
        std::env::var("TEST_S3_AUTH_KEY_ID"),
        std::env::var("TEST_S3_AUTH_SECRET"),
    ) else {
        panic!(
            "run the tests with `bash scripts/test.sh`: it starts a server that checks signatures"
        );
    };
    let world = demo_source("s3-auth").await;
    let (dir, db) = (world.dir.clone(), world.db.clone());
    // Unique per test process: the server may outlive one run of the tests.
    let root = format!("exports-{}", std::process::id());
    let exports = format!("s3://{bucket}/{root}");
    let mut env = env_for(&dir);
    env.push(("AWS_ENDPOINT_URL".into(), endpoint.clone()));
    env.push(("AWS_ACCESS_KEY_ID".into(), key.clone()));
    let mut wrong = env.clone();
    wrong.push(("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret-key".into()));
    let before = ledger(&db).await;

    let out = run(run_args(&db, &exports), wrong).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: 3 of 3 campaigns failed"), "{err}");
    assert!(last.contains("SignatureDoesNotMatch"), "{err}");
    assert!(last.contains(&format!("{exports}/")), "{err}");
    assert!(
        !err.contains("not-the-secret-key"),
        "the secret leaked: {err}"
    );
    let client = s3::client(&endpoint, &key, &secret);
    assert!(
        s3::list(&client, &bucket, &root).await.is_empty(),
        "nothing is published"
    );
    let rows = ledger_since(&db, &before).await;
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r.status, "failed", "{r:?}");
        assert!(r
            .error
            .as_deref()
            .unwrap()
            .contains("SignatureDoesNotMatch"));
        assert_eq!(r.export_uri, None);
    }

    // The same run with the right secret publishes: the credentials were the only problem.
    let mut right = env;
    right.push(("AWS_SECRET_ACCESS_KEY".into(), secret.clone()));
    assert_ok(&run(run_args(&db, &exports), right).await);
    for campaign in CAMPAIGNS {
        let runs = run_prefixes(&client, &bucket, &root, campaign, DATE).await;
        assert_eq!(runs.len(), 1, "{campaign}");
        s3::read_s3_export(&client, &bucket, &runs[0]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_mid_run_leaves_no_success_and_the_next_run_publishes() {
    let world = demo_source("s3-outage").await;
    let (dir, db) = (world.dir.clone(), world.db.clone());
    let client = s3::default_client();
    let bucket = &format!("targeting-outage-{}", std::process::id());
    s3::create_bucket(&client, bucket).await;
    let upstream = std::env::var("AWS_ENDPOINT_URL").unwrap();
    // The server goes away when the first part of a multipart upload is on its way.
    let relay = Relay::start(upstream.trim_start_matches("http://"), Some(b"partNumber=")).await;
    let exports = format!("s3://{bucket}/exports");
    let mut env = env_for(&dir);
    env.push(("AWS_ENDPOINT_URL".into(), relay.endpoint()));
    let before = ledger(&db).await;

    let out = run(run_args(&db, &exports), env.clone()).await;
    assert!(relay.tripped.load(std::sync::atomic::Ordering::SeqCst));
    assert!(!out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("object store request failed, retrying"),
        "{err}"
    );
    assert!(err.contains("gave up after 5 attempts"), "{err}");
    let rows = ledger_since(&db, &before).await;
    let big = rows.iter().find(|r| r.campaign_id == "big-list").unwrap();
    assert_eq!(big.status, "failed", "{big:?}");
    assert!(
        big.error.as_deref().unwrap().contains("cannot be reached"),
        "{big:?}"
    );
    // Whatever else happened, no run folder of that run is complete.
    for campaign in CAMPAIGNS {
        let status = &rows
            .iter()
            .find(|r| r.campaign_id == campaign)
            .unwrap()
            .status;
        for prefix in run_prefixes(&client, bucket, "exports", campaign, DATE).await {
            let has_success = s3::list(&client, bucket, &format!("{prefix}_SUCCESS"))
                .await
                .len()
                == 1;
            assert_eq!(has_success, status == "succeeded", "{campaign} {prefix}");
        }
    }

    // The server is back: the next run publishes everything.
    relay.restart().await;
    let out = run(run_args(&db, &exports), env).await;
    assert_ok(&out);
    let rows = ledger(&db).await;
    for campaign in CAMPAIGNS {
        let last = rows
            .iter()
            .rev()
            .find(|r| r.campaign_id == campaign)
            .unwrap();
        assert_eq!(last.status, "succeeded");
        let runs = run_prefixes(&client, bucket, "exports", campaign, DATE).await;
        let newest = runs.last().unwrap();
        assert_eq!(
            last.export_uri.as_deref(),
            Some(format!("s3://{bucket}/{}", newest.trim_end_matches('/')).as_str())
        );
        s3::read_s3_export(&client, bucket, newest).await;
    }
}

/// `braze_cdi` on S3: the parts, and nothing else, reach the prefix Braze Cloud Data Ingestion
/// watches, once complete. When the server goes away during the delivery, the run fails and
/// leaves the complete export; the next run adopts it and delivers what is missing, without
/// writing a part twice (each new object there is an import).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braze_cdi_parts_reach_the_watched_prefix_once_even_when_delivery_fails() {
    let world = demo_source("s3-cdi").await;
    let (dir, db) = (world.dir.clone(), world.db.clone());
    let client = s3::default_client();
    let bucket = &format!("targeting-cdi-{}", std::process::id());
    s3::create_bucket(&client, bucket).await;
    let campaigns_dir = dir.join("cdi-campaigns");
    std::fs::create_dir_all(&campaigns_dir).unwrap();
    std::fs::write(
        campaigns_dir.join("cdi-list.toml"),
        format!(
            r#"format_version = 1
id = "cdi-list"
kind = "seasonal"
priority = 10
holdout = 0.1
max_audience = 5000
[offer]
discount_pct = 10
[seasonal]
min_uplift = -1.0
[export]
columns = "braze_cdi"
deliver_to = "s3://{bucket}/braze-cdi"
"#
        ),
    )
    .unwrap();
    let upstream = std::env::var("AWS_ENDPOINT_URL").unwrap();
    // The server goes away at the first request for the watched prefix.
    let relay = Relay::start(upstream.trim_start_matches("http://"), Some(b"/braze-cdi/")).await;
    let mut env = env_for(&dir);
    env.retain(|(k, _)| k != "TARGETING__TARGETING__CAMPAIGNS_DIR");
    env.push((
        "TARGETING__TARGETING__CAMPAIGNS_DIR".into(),
        campaigns_dir.display().to_string(),
    ));
    env.push((
        "TARGETING__EXPORT__ALLOWED_DESTINATIONS".into(),
        format!("[\"s3://{bucket}\"]"),
    ));
    env.push(("AWS_ENDPOINT_URL".into(), relay.endpoint()));
    let exports = format!("s3://{bucket}/exports");
    let args = job_args("run", DATE, &db, &exports, "2");

    let out = run(args.clone(), env.clone()).await;
    assert!(relay.tripped.load(std::sync::atomic::Ordering::SeqCst));
    assert!(!out.status.success(), "{}", stderr(&out));
    let rows = ledger(&db).await;
    let failed = rows.iter().rfind(|r| r.campaign_id == "cdi-list").unwrap();
    assert_eq!(failed.status, "failed", "{failed:?}");
    let error = failed.error.as_deref().unwrap();
    assert!(
        error.contains("is complete but not delivered: the next run for 2026-11-20 delivers it"),
        "{error}"
    );
    assert!(s3::list(&client, bucket, "braze-cdi/").await.is_empty());
    let runs = run_prefixes(&client, bucket, "exports", "cdi-list", DATE).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let export = s3::read_s3_export(&client, bucket, &runs[0]).await;
    assert_eq!(
        export.manifest["columns"],
        serde_json::json!(["EXTERNAL_ID", "PAYLOAD"])
    );
    assert!(export.ids.len() > 100, "{}", export.ids.len());
    assert!(!export.objects.iter().any(|o| o.key.ends_with("_DELIVERED")));
    // The failed row keeps the complete export's URI: that is what the next run adopts.
    assert_eq!(
        failed.export_uri.as_deref(),
        Some(format!("s3://{bucket}/{}", runs[0].trim_end_matches('/')).as_str())
    );

    // The server is back: the next run adopts the complete export and delivers it.
    relay.restart().await;
    let out = run(args.clone(), env.clone()).await;
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cdi-list: adopted the complete export"),
        "{text}"
    );
    let rows = ledger(&db).await;
    let adopted = rows.iter().find(|r| r.run_id == failed.run_id).unwrap();
    assert_eq!(adopted.status, "succeeded", "{adopted:?}");
    let run_id = runs[0]
        .trim_end_matches('/')
        .rsplit_once("run=")
        .unwrap()
        .1
        .to_string();
    let delivered = s3::list(&client, bucket, "braze-cdi/").await;
    let parts = export.manifest["parts"].as_array().unwrap();
    let names: Vec<String> = delivered.iter().map(|o| o.key.clone()).collect();
    let expected: Vec<String> = parts
        .iter()
        .map(|p| {
            format!(
                "braze-cdi/cdi-list-{DATE}-{run_id}-{}",
                p["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, expected);
    for (object, part) in delivered.iter().zip(parts) {
        let bytes = s3::get(&client, bucket, &object.key).await;
        assert_eq!(
            hex(&sha2::Sha256::digest(&bytes)),
            part["sha256"].as_str().unwrap()
        );
        // Every row is an external id and a JSON object of the attributes.
        let mut rows = csv::Reader::from_reader(bytes.as_slice());
        for row in rows.records().take(3) {
            let row = row.unwrap();
            let payload: serde_json::Value = serde_json::from_str(&row[1]).unwrap();
            assert_eq!(payload["targeting_campaign"], "cdi-list");
            assert_eq!(payload["targeting_date"], DATE);
            assert!(export.ids.contains(&row[0].parse().unwrap()));
        }
    }
    s3::read_s3_export(&client, bucket, &runs[0]).await;
    assert_eq!(
        s3::list(&client, bucket, &format!("{}_DELIVERED", runs[0]))
            .await
            .len(),
        1
    );

    // Published: the next run does nothing, and the watched prefix is as it was.
    let out = run(args.clone(), env.clone()).await;
    assert_ok(&out);
    let keys_and_times = |objects: &[s3::Object]| -> Vec<(String, i64)> {
        objects
            .iter()
            .map(|o| (o.key.clone(), o.modified_ms))
            .collect()
    };
    let after = s3::list(&client, bucket, "braze-cdi/").await;
    assert_eq!(keys_and_times(&after), keys_and_times(&delivered));

    // A daemon stopped at shutdown while delivering leaves its row `aborted` (the daemon's
    // shutdown path), the export complete and the delivery cut short: the next run adopts the
    // export and delivers only what is missing.
    execute(
        &db,
        &format!(
            "UPDATE targeting_runs SET status = 'aborted', export_uri = NULL \
             WHERE run_id = '{}' AND campaign_id = 'cdi-list'",
            failed.run_id
        ),
    )
    .await;
    let last = delivered.last().unwrap();
    for key in [last.key.clone(), format!("{}_DELIVERED", runs[0])] {
        client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    let out = run(args, env).await;
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cdi-list: adopted the complete export"),
        "{text}"
    );
    let again = keys_and_times(&s3::list(&client, bucket, "braze-cdi/").await);
    let before = keys_and_times(&delivered);
    assert_eq!(
        again.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        before.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    // Only the missing part was written again.
    assert_eq!(again[..again.len() - 1], before[..before.len() - 1]);
    assert_eq!(
        run_prefixes(&client, bucket, "exports", "cdi-list", DATE).await,
        runs,
        "nothing published again"
    );
    let rows = ledger(&db).await;
    let row = rows.iter().find(|r| r.run_id == failed.run_id).unwrap();
    assert_eq!(row.status, "succeeded", "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_stored_in_s3_and_a_run_scores_from_there() {
    let world = demo_source("s3-models").await;
    let (dir, db) = (world.dir.clone(), world.db.clone());
    let client = s3::default_client();
    let bucket = &format!("targeting-models-{}", std::process::id());
    s3::create_bucket(&client, bucket).await;
    let mut env: Vec<(String, String)> = env_for(&dir)
        .into_iter()
        .filter(|(k, _)| k != "TARGETING__MODELS__STORE")
        .collect();
    env.push((
        "TARGETING__MODELS__STORE".into(),
        format!("s3://{bucket}/models"),
    ));

    let trained = run(
        strings(&[
            "train",
            "--as-of",
            DATE,
            "--database-url",
            &db,
            "--threads",
            "2",
        ]),
        env.clone(),
    )
    .await;
    assert_ok(&trained);
    let keys: Vec<String> = s3::list(&client, bucket, "models/")
        .await
        .into_iter()
        .map(|o| o.key)
        .collect();
    let version =
        String::from_utf8(s3::get(&client, bucket, "models/conversion_uplift/current").await)
            .unwrap();
    for model in [
        "conversion_uplift",
        "discount_uplift",
        "discount_sensitivity",
    ] {
        assert!(
            keys.contains(&format!("models/{model}/current")),
            "{keys:?}"
        );
    }
    let metadata = format!("models/conversion_uplift/{version}/metadata.json");
    assert!(keys.contains(&metadata), "{keys:?}");

    let listed = run(strings(&["models", "list"]), env.clone()).await;
    assert_ok(&listed);
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("* conversion_uplift") && l.contains(&version)),
        "{text}"
    );

    let exports = format!("s3://{bucket}/exports");
    let out = run(run_args(&db, &exports), env).await;
    assert_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table.contains(&format!("{version} (")) && table.contains("from the store"),
        "{table}"
    );
}

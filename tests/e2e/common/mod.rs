//! Helpers for the end-to-end tests: run the real `targeting` binary, read back what it
//! published, and query the databases it wrote.

pub mod browser;
pub mod s3;

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};
use sqlx::Row;

/// The run date of every test: fixed, so that runs are comparable.
pub const DATE: &str = "2026-11-20";

/// A fresh folder under the system temp dir.
fn tempdir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "targeting-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One test's world: a folder of its own (removed when the test passes, kept to look at when it
/// fails) holding the exports and the model store, and the source and state database (SQLite in
/// the folder, or a fresh database on the PostgreSQL server of `DATABASE_URL`).
#[derive(Debug)]
pub struct TestEnv {
    pub dir: PathBuf,
    /// The source database URL; the state lives there too.
    pub db: String,
}

impl TestEnv {
    /// A folder with a SQLite source at `source.db`.
    pub fn sqlite(name: &str) -> Self {
        let dir = tempdir(name);
        let db = format!("sqlite://{}/source.db", dir.display());
        TestEnv { dir, db }
    }

    /// A folder and a new, empty PostgreSQL database.
    pub async fn postgres(name: &str) -> Self {
        let dir = tempdir(name);
        let db = fresh_postgres_db(&name.replace('-', "_")).await;
        TestEnv { dir, db }
    }

    /// The folder as a string, for arguments.
    pub fn path(&self) -> String {
        self.dir.display().to_string()
    }

    /// Where `targeting demo` publishes: `<dir>/exports`.
    pub fn exports(&self) -> PathBuf {
        self.dir.join("exports")
    }

    /// The arguments of `targeting demo` on `users` users in this world.
    pub fn demo_args(&self, users: &str) -> Vec<String> {
        demo_args(users, &self.dir, &self.db)
    }

    /// Runs `targeting demo` on `users` users in this world, with extra arguments.
    pub fn demo(&self, users: &str, extra: &[&str]) -> Output {
        let mut args = self.demo_args(users);
        args.extend(extra.iter().map(|a| a.to_string()));
        targeting(&args)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `targeting demo` on `users` users into `dir` (models in `dir/models`, exports in
/// `dir/exports`), with its source and ledger in `db`, for the test date on two threads.
pub fn demo_args(users: &str, dir: &Path, db: &str) -> Vec<String> {
    let dir = dir.display().to_string();
    [
        "demo",
        "--users",
        users,
        "--dir",
        &dir,
        "--date",
        DATE,
        "--database-url",
        db,
        "--threads",
        "2",
    ]
    .map(str::to_string)
    .to_vec()
}

/// `targeting COMMAND` (`run`, `score-shard`, …) for `date` on the source and ledger `db`,
/// publishing to `exports`, on `threads` threads; callers add what their case needs.
pub fn job_args(command: &str, date: &str, db: &str, exports: &str, threads: &str) -> Vec<String> {
    [
        command,
        "--date",
        date,
        "--database-url",
        db,
        "--exports",
        exports,
        "--threads",
        threads,
    ]
    .map(str::to_string)
    .to_vec()
}

/// Runs the binary from the repository root (where `config/` is), without inherited
/// `TARGETING__*` overrides.
pub fn targeting<S: AsRef<OsStr>>(args: &[S]) -> Output {
    targeting_env(args, &[])
}

/// Runs the binary with extra environment variables (e.g. `TARGETING__MODELS__STORE`).
pub fn targeting_env<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    targeting_command(args, env)
        .output()
        .expect("the binary runs")
}

/// The binary's command, from the repository root, with `env` instead of inherited
/// `TARGETING__*` overrides: for a test that starts it and stops it itself.
pub fn targeting_command<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_targeting"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("TARGETING__") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// Checks that a command failed with one `error: ` line holding every `must_contain`; returns
/// the line.
pub fn assert_one_line_error(out: &std::process::Output, must_contain: &[&str]) -> String {
    assert!(
        !out.status.success(),
        "expected failure, stderr: {}",
        stderr(out)
    );
    let err = stderr(out);
    let last = err.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: "), "{err}");
    for s in must_contain {
        assert!(last.contains(s), "{s:?} not in {last:?}");
    }
    last
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success, showing stderr when not.
pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
}

/// A campaign's holdout share as configured in `config/campaigns/`.
pub fn configured_holdouts() -> BTreeMap<String, f64> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/campaigns");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let v: toml::Table = text.parse().unwrap();
        out.insert(
            v["id"].as_str().unwrap().to_string(),
            v["holdout"].as_float().unwrap(),
        );
    }
    out
}

/// One published run folder of a campaign, read back and verified against its manifest.
#[derive(Debug)]
pub struct Export {
    pub manifest: serde_json::Value,
    /// `external_id` of every row, in file order.
    pub ids: Vec<i64>,
    /// `discount_pct` of every row, for an offer with discount levels (empty otherwise).
    pub discount_pct: Vec<i64>,
    /// `item_id` of every row, for a campaign with `[items]` (empty otherwise).
    pub item_id: Vec<i64>,
    /// `recipient_user_id` of every row, for a gift campaign (empty otherwise).
    pub recipient: Vec<i64>,
    pub part_hashes: Vec<String>,
}

/// Every run folder of a campaign for a date, oldest first.
pub fn run_folders(exports: &Path, campaign: &str, date: &str) -> Vec<PathBuf> {
    let day = exports.join(campaign).join(format!("dt={date}"));
    // The day's `latest` pointer lies beside the run folders.
    let mut runs: Vec<PathBuf> = match std::fs::read_dir(&day) {
        Ok(r) => r
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("run="))
            })
            .collect(),
        Err(_) => vec![],
    };
    runs.sort();
    runs
}

/// Reads a completed run folder, checking the layout: `_SUCCESS`, the manifest's parts with
/// their row counts and SHA-256, the generic header (then `discount_pct` for an offer with
/// discount levels, `recipient_user_id` for a gift campaign and `item_id` for a campaign with
/// `[items]`).
pub fn read_export(dir: &Path) -> Export {
    assert!(
        dir.join("_SUCCESS").exists(),
        "no _SUCCESS in {}",
        dir.display()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut ids = Vec::new();
    let mut discount_pct = Vec::new();
    let mut item_id = Vec::new();
    let mut recipient = Vec::new();
    let mut part_hashes = Vec::new();
    let (mut total, mut explored) = (0, 0);
    for part in manifest["parts"].as_array().unwrap() {
        let name = part["path"].as_str().unwrap();
        assert!(
            name.starts_with("part-") && name.ends_with(".csv.gz"),
            "{name}"
        );
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let sha = hex(&Sha256::digest(&bytes));
        assert_eq!(part["sha256"].as_str().unwrap(), sha, "sha256 of {name}");
        part_hashes.push(sha);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        let levels = header.iter().position(|h| h == "discount_pct");
        let item = header.iter().position(|h| h == "item_id");
        let friend = header.iter().position(|h| h == "recipient_user_id");
        let extra = [levels, item, friend].iter().flatten().count();
        assert_eq!(
            header[..header.len() - extra],
            [
                "external_id",
                "campaign_id",
                "variant",
                "offer",
                "score",
                "rank"
            ]
        );
        let mut rows = 0;
        for rec in reader.records() {
            let rec = rec.unwrap();
            assert_eq!(&rec[1], manifest["campaign_id"].as_str().unwrap());
            // The model's choice, or the campaign's random exploration.
            match &rec[2] {
                "treatment" => {}
                "explore" => explored += 1,
                other => panic!("variant {other} in the list of {}", dir.display()),
            }
            ids.push(rec[0].parse::<i64>().unwrap());
            if let Some(k) = levels {
                discount_pct.push(rec[k].parse::<i64>().unwrap());
            }
            if let Some(k) = item {
                item_id.push(rec[k].parse::<i64>().unwrap());
            }
            if let Some(k) = friend {
                recipient.push(rec[k].parse::<i64>().unwrap());
            }
            rows += 1;
        }
        assert_eq!(
            part["rows"].as_u64().unwrap() as usize,
            rows,
            "rows of {name}"
        );
        total += rows;
    }
    assert_eq!(manifest["row_count"].as_u64().unwrap() as usize, total);
    assert_eq!(
        manifest["explore_count"].as_u64().unwrap() as usize,
        explored
    );
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "duplicate users in {}",
        dir.display()
    );
    Export {
        manifest,
        ids,
        discount_pct,
        item_id,
        recipient,
        part_hashes,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap()
}

/// Runs one statement on a database (to set up what a test needs there).
pub async fn execute(url: &str, sql: &str) {
    sqlx::raw_sql(sql).execute(&pool(url).await).await.unwrap();
}

/// Users no list may contain: without consent, or suppressed.
pub async fn forbidden_users(url: &str) -> HashSet<i64> {
    let pool = pool(url).await;
    let rows = sqlx::query(
        "SELECT user_id FROM users WHERE (CASE WHEN marketing_opt_in THEN 1 ELSE 0 END) = 0 \
         UNION SELECT user_id FROM suppressions",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    rows.iter().map(|r| r.get::<i64, _>(0)).collect()
}

/// Every user's email address (none for some).
pub async fn emails(url: &str) -> std::collections::HashMap<i64, Option<String>> {
    let pool = pool(url).await;
    sqlx::query("SELECT user_id, email FROM users")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<i64, _>(0), r.get::<Option<String>, _>(1)))
        .collect()
}

/// A ledger row.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub run_id: String,
    pub campaign_id: String,
    pub run_date: String,
    pub status: String,
    pub audience_size: Option<i64>,
    pub holdout_size: Option<i64>,
    pub export_uri: Option<String>,
    pub error: Option<String>,
}

pub async fn ledger(url: &str) -> Vec<LedgerRow> {
    let pool = pool(url).await;
    sqlx::query(
        "SELECT campaign_id, status, audience_size, holdout_size, export_uri, error, run_date, \
         run_id FROM targeting_runs ORDER BY started_at, run_id, campaign_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| LedgerRow {
        run_id: r.get(7),
        campaign_id: r.get(0),
        run_date: r.get(6),
        status: r.get(1),
        audience_size: r.get(2),
        holdout_size: r.get(3),
        export_uri: r.get(4),
        error: r.get(5),
    })
    .collect()
}

/// The ledger rows that are not in `before`: those of the runs since. (Rows started in the same
/// second are in no particular order, so an index into the ledger cannot tell them apart.)
pub async fn ledger_since(url: &str, before: &[LedgerRow]) -> Vec<LedgerRow> {
    let mut rows = ledger(url).await;
    rows.retain(|r| !before.contains(r));
    rows
}

/// Users recorded for a run and campaign in one arm.
pub async fn assigned(url: &str, run_id: &str, campaign: &str, arm: &str) -> HashSet<i64> {
    let pool = pool(url).await;
    sqlx::query(
        "SELECT user_id FROM targeting_assignments WHERE run_id = $1 AND campaign_id = $2 AND arm = $3",
    )
    .bind(run_id)
    .bind(campaign)
    .bind(arm)
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<i64, _>(0))
    .collect()
}

/// A new, empty PostgreSQL database on the server of `DATABASE_URL`; returns its URL.
pub async fn fresh_postgres_db(name: &str) -> String {
    let base = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must name a PostgreSQL server: run the tests with `bash scripts/test.sh`, \
         which starts a throwaway one",
    );
    let db = format!("targeting_{name}_{}", std::process::id());
    let admin = pool(&base).await;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&db);
    url.to_string()
}

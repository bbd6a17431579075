//! Bad input: one clear line naming the file, field or URL (never a password), a non-zero exit,
//! and nothing published.

use std::path::Path;

use crate::common::*;

fn no_success_marker(dir: &Path) -> bool {
    fn walk(d: &Path) -> bool {
        std::fs::read_dir(d).map_or(true, |rd| {
            rd.flatten().all(|e| {
                let p = e.path();
                if p.is_dir() {
                    walk(&p)
                } else {
                    p.file_name().unwrap() != "_SUCCESS"
                }
            })
        })
    }
    walk(dir)
}

#[test]
fn missing_config_file() {
    let out = targeting(&["--config", "/nonexistent/targeting.toml", "run"]);
    assert_one_line_error(&out, &["/nonexistent/targeting.toml"]);
}

#[test]
fn invalid_config_file_is_located() {
    let world = TestEnv::sqlite("badconfig");
    let file = world.dir.join("targeting.toml");
    std::fs::write(&file, "[export]\ndestinaton = \"file:///tmp/x\"\n").unwrap();
    let out = targeting(&["--config", file.to_str().unwrap(), "run"]);
    assert_one_line_error(&out, &[&format!("{}:2:1", file.display()), "destinaton"]);
}

#[test]
fn unreachable_database_names_the_url_without_password() {
    let world = TestEnv::sqlite("unreachable");
    let result = world.dir.join("result.json");
    let out = targeting(&[
        "run",
        "--database-url",
        "postgres://app:hunter2@127.0.0.1:1/shop",
        "--result-json",
        result.to_str().unwrap(),
    ]);
    let line = assert_one_line_error(&out, &["postgres://app:***@127.0.0.1:1/shop"]);
    assert!(!stderr(&out).contains("hunter2"), "{line}");
    // Nothing listens there: transient (EX_TEMPFAIL), so a scheduler tries again; the result
    // file says so, without the password either.
    assert_eq!(out.status.code(), Some(75), "{line}");
    let text = std::fs::read_to_string(&result).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["exit_code"], 75, "{r}");
    assert!(r["error"].as_str().unwrap().contains("127.0.0.1:1"), "{r}");
}

#[test]
fn a_broken_campaign_file_fails_its_campaign_not_the_night() {
    let world = TestEnv::sqlite("broken-file");
    assert_ok(&world.demo("3000", &[]));
    // The shipped campaigns and one file that names its campaign but is missing the rest.
    let dir = world.dir.join("campaigns");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir("config/campaigns").unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.join("bad.toml"),
        "format_version = 1\nid = \"spring-sale\"\n",
    )
    .unwrap();
    let result = world.dir.join("result.json");
    let models = world.dir.join("models").display().to_string();
    let exports = format!("file://{}", world.dir.join("night").display());
    let out = targeting_env(
        &[
            "run",
            "--date",
            "2026-11-21",
            "--database-url",
            &world.db,
            "--exports",
            &exports,
            "--result-json",
            result.to_str().unwrap(),
        ],
        &[
            ("TARGETING__TARGETING__CAMPAIGNS_DIR", dir.to_str().unwrap()),
            ("TARGETING__MODELS__STORE", models.as_str()),
        ],
    );
    // EX_CONFIG: no retry fixes a file; the message names it.
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad.toml"), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    assert_eq!(r["exit_code"], 78, "{r}");
    let status = |id: &str| -> String {
        r["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["campaign_id"] == id)
            .map(|c| c["status"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    // The others published; the broken one failed, under the id its file gives.
    for id in [
        "drop-starfall-nightfall",
        "new-buyer-welcome",
        "seasonal-winter-sale",
        "weekly-deal",
    ] {
        assert_eq!(status(id), "published", "{r}");
        assert_eq!(
            run_folders(&world.dir.join("night"), id, "2026-11-21").len(),
            1
        );
    }
    assert_eq!(status("spring-sale"), "failed", "{r}");
    // The ledger says why, for `runs list`.
    let failed = targeting(&[
        "runs",
        "list",
        "--json",
        "--status",
        "failed",
        "--state-database-url",
        &world.db,
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["campaign_id"], "spring-sale");
    assert!(rows[0]["error"]
        .as_str()
        .unwrap()
        .contains("the campaign file is invalid"));
}

#[test]
fn unknown_campaign() {
    let world = TestEnv::sqlite("unknown");
    let out = world.demo("2000", &["--campaign", "no-such-campaign"]);
    assert_one_line_error(
        &out,
        &["unknown campaign \"no-such-campaign\"", "weekly-deal"],
    );
}

#[test]
fn unwritable_export_destination_publishes_nothing() {
    let world = TestEnv::sqlite("unwritable");
    // A regular file where the export folder should be: no folder can be created under it.
    let blocker = world.dir.join("blocker");
    std::fs::write(&blocker, "not a folder").unwrap();
    let dest = format!("file://{}/exports", blocker.display());
    let out = world.demo("3000", &["--exports", &dest]);
    assert_one_line_error(&out, &["5 of 5 campaigns failed", &dest]);
    assert!(no_success_marker(&world.dir));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ledger = rt.block_on(ledger(&world.db));
    assert_eq!(ledger.len(), 5);
    assert!(
        ledger
            .iter()
            .all(|r| r.status == "failed" && r.error.is_some()),
        "{ledger:?}"
    );
}

/// A deployment's own queries that return rows breaking the data contract: a suppression
/// without a user id (as a warehouse without constraints may deliver) stops the run with
/// nothing published; a purchase dated after the run date is dropped, said, and the run goes on.
#[test]
fn the_data_contract_stops_on_null_suppression_ids_and_drops_future_purchases() {
    let world = TestEnv::sqlite("contract");
    // No simulated days after the night: the one purchase after the run date is the test's.
    assert_ok(&world.demo("3000", &["--outcome-days", "0"]));
    let queries = world.dir.join("queries");
    std::fs::create_dir_all(&queries).unwrap();
    let builtin = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/queries");
    for entry in std::fs::read_dir(builtin).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, queries.join(path.file_name().unwrap())).unwrap();
    }
    let query = |name: &str, extra: &str| {
        let path = queries.join(format!("{name}.sql"));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{}\n{extra}\n", text.trim_end())).unwrap();
    };
    // 2026-11-22: two days after the run date.
    query(
        "purchases",
        "UNION ALL SELECT 999999, 1, 1, 1795305600, 1000, 1000, 0, NULL",
    );
    let exports = format!("file://{}", world.exports().display());
    let models = world.dir.join("models").display().to_string();
    let queries_dir = queries.display().to_string();
    let env = [
        ("TARGETING__SOURCE__QUERIES_DIR", queries_dir.as_str()),
        ("TARGETING__MODELS__STORE", models.as_str()),
    ];
    let mut run = job_args("run", DATE, &world.db, &exports, "2");
    run.extend(["--all".to_string(), "--force".to_string()]);
    let out = targeting_env(&run, &env);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("dropped rows that break the data contract")
            && err.contains("purchases.purchased_at is after the run date in 1 row(s)"),
        "{err}"
    );

    query("suppressions", "UNION ALL SELECT NULL, 'legal hold', 0");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = rt.block_on(ledger(&world.db));
    let folders = run_folders(&world.exports(), "weekly-deal", DATE).len();
    let out = targeting_env(&run, &env);
    let suppressions = queries.join("suppressions.sql").display().to_string();
    assert_one_line_error(
        &out,
        &[
            &format!("query {suppressions}: suppressions.user_id is NULL in 1 row(s)"),
            "nobody is selected",
        ],
    );
    assert_eq!(
        run_folders(&world.exports(), "weekly-deal", DATE).len(),
        folders,
        "nothing published"
    );
    let rows = rt.block_on(ledger_since(&world.db, &before));
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(
        rows.iter().all(|r| r.status == "failed"
            && r.error
                .as_deref()
                .unwrap()
                .contains("suppressions.user_id is NULL")),
        "{rows:?}"
    );

    // The lift report's outcome query returning the wrong columns: one line naming the file
    // and the columns it must return.
    let outcomes = queries.join("outcomes.sql");
    std::fs::write(
        &outcomes,
        "SELECT user_id, purchased_at, paid_cents FROM purchases\n",
    )
    .unwrap();
    let report = [
        "report",
        "--from",
        DATE,
        "--as-of",
        "2026-12-04",
        "--database-url",
        world.db.as_str(),
    ];
    let out = targeting_env(&report, &env);
    assert_one_line_error(
        &out,
        &[
            &outcomes.display().to_string(),
            "user_id, purchased_at, list_price_cents, paid_cents",
        ],
    );
}

/// Settings from the environment and the command line: an error names the variable, a value
/// that looks like a number may still be text, a credential in a broken URI is never echoed,
/// and a runaway thread count is refused instead of crashing.
#[test]
fn settings_errors_name_the_variable_and_never_a_secret() {
    let out = targeting_env(
        &["validate", "config/campaigns"],
        &[("TARGETING__EXPORT__ATTEMPTS", "lots")],
    );
    assert_one_line_error(&out, &["environment variable TARGETING__EXPORT__ATTEMPTS"]);
    assert_ok(&targeting_env(
        &["validate", "--offline", "config/campaigns"],
        &[("TARGETING__TARGETING__GLOBAL_CONTROL_SALT", "2024")],
    ));
    let out = targeting(&["run", "--exports", "s3://ops:hunter2@Not_A_Bucket/x"]);
    let line = assert_one_line_error(&out, &["export.destination", "s3://ops:***@"]);
    assert!(!stderr(&out).contains("hunter2"), "{line}");
    let out = targeting(&["run", "--threads", "100000"]);
    // Invalid settings: EX_CONFIG, which a scheduler does not retry.
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert_one_line_error(&out, &["--threads) must be between 0 and 512, got 100000"]);
}

/// A holdout too small to measure anything is said before anything ships.
#[test]
fn a_preview_warns_of_a_holdout_too_small_to_measure() {
    let world = TestEnv::sqlite("small-holdout");
    assert_ok(&world.demo("3000", &[]));
    let dir = world.dir.join("campaigns");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("tiny.toml"),
        "format_version = 1\nid = \"tiny-holdout\"\nkind = \"seasonal\"\nholdout = 0.01\n\
         max_audience = 1000\n[seasonal]\nmin_uplift = -1.0\n",
    )
    .unwrap();
    let models = world.dir.join("models").display().to_string();
    let out = targeting_env(
        &[
            "run",
            "--dry-run",
            "--date",
            "2026-11-21",
            "--database-url",
            &world.db,
        ],
        &[
            ("TARGETING__TARGETING__CAMPAIGNS_DIR", dir.to_str().unwrap()),
            ("TARGETING__MODELS__STORE", models.as_str()),
        ],
    );
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let warning = text
        .lines()
        .find(|l| l.contains("WARNING: a holdout of"))
        .unwrap_or_else(|| panic!("no warning in {text}"));
    // About 10 held-out users: only a lift of tens of points could show.
    let points: f64 = warning
        .split("above ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{warning}"));
    assert!(points > 10.0, "{warning}");
    assert!(text.contains("(limited by max_audience 1,000)"), "{text}");
}

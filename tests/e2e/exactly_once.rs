//! A campaign-day is published once: `targeting run`s started together claim each
//! campaign-day before publishing it (an advisory lock on PostgreSQL, a lease on SQLite), a
//! later run skips what succeeded, `--force` publishes again and says so in the ledger, a
//! complete export whose run stopped before recording it is adopted rather than published
//! again, and the rows a stopped run left `running` are marked `aborted` by the next run.

use crate::common::*;

/// A night after the demo's.
const NIGHT: &str = "2026-11-21";

fn check_once(world: &TestEnv) {
    assert_ok(&world.demo("5000", &[]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A run that stopped on this night, long ago: its row says `running` for ever.
    rt.block_on(execute(
        &world.db,
        &format!(
            "INSERT INTO targeting_runs (run_id, campaign_id, run_date, status, started_at) \
             VALUES ('20261121T000000Z-dead00', 'weekly-deal', '{NIGHT}', 'running', 1)"
        ),
    ));
    let exports = format!("file://{}", world.exports().display());
    let models = world.dir.join("models").display().to_string();
    let args = job_args("run", NIGHT, &world.db, &exports, "1");
    let run = |extra: &[&str]| {
        let mut a = args.clone();
        a.extend(extra.iter().map(|s| s.to_string()));
        let models = models.clone();
        std::thread::spawn(move || targeting_env(&a, &[("TARGETING__MODELS__STORE", &models)]))
    };
    let (first, second) = (run(&[]), run(&[]));
    let outs = [first.join().unwrap(), second.join().unwrap()];
    // Each finished its claim: published, skipped as done, or left to the other (and failed).
    for out in &outs {
        assert!(
            out.status.success() || stderr(out).contains("being run by another process"),
            "{}",
            stderr(out)
        );
    }
    let campaigns = [
        "drop-starfall-nightfall",
        "new-buyer-welcome",
        "seasonal-winter-sale",
        "weekly-deal",
    ];
    for c in campaigns {
        assert_eq!(
            run_folders(&world.exports(), c, NIGHT).len(),
            1,
            "{c}: one list"
        );
    }
    let night = |rows: Vec<LedgerRow>| -> Vec<LedgerRow> {
        rows.into_iter().filter(|r| r.run_date == NIGHT).collect()
    };
    let rows = night(rt.block_on(ledger(&world.db)));
    for c in campaigns {
        let of = |status: &str| {
            rows.iter()
                .filter(|r| r.campaign_id == c && r.status == status)
                .count()
        };
        assert_eq!(of("succeeded"), 1, "{c}: {rows:?}");
        assert_eq!(of("running"), 0, "{c}: {rows:?}");
    }
    let stale = rows
        .iter()
        .find(|r| r.run_id == "20261121T000000Z-dead00")
        .unwrap();
    assert_eq!(stale.status, "aborted", "{stale:?}");

    // A run that wrote `_SUCCESS` and stopped before its ledger row said so (killed, or the
    // state database lost at that moment): the next run adopts its export, not publishing again.
    rt.block_on(execute(
        &world.db,
        &format!(
            "UPDATE targeting_runs SET status = 'running', finished_at = NULL, export_uri = NULL, \
             audience_size = NULL, holdout_size = NULL \
             WHERE run_date = '{NIGHT}' AND campaign_id = 'new-buyer-welcome' AND status = 'succeeded'"
        ),
    ));
    let out = run(&[]).join().unwrap();
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("new-buyer-welcome: adopted the complete export"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let folders = run_folders(&world.exports(), "new-buyer-welcome", NIGHT);
    assert_eq!(folders.len(), 1, "published again");
    let rows = night(rt.block_on(ledger(&world.db)));
    let adopted: Vec<&LedgerRow> = rows
        .iter()
        .filter(|r| r.campaign_id == "new-buyer-welcome" && r.status == "succeeded")
        .collect();
    assert_eq!(adopted.len(), 1, "{rows:?}");
    let manifest = read_export(&folders[0]).manifest;
    assert_eq!(
        adopted[0].audience_size,
        Some(manifest["row_count"].as_i64().unwrap())
    );
    assert!(adopted[0]
        .export_uri
        .as_deref()
        .unwrap()
        .ends_with(folders[0].file_name().unwrap().to_str().unwrap()));

    // Later: every campaign-day succeeded, so nothing is published again…
    let before = rt.block_on(ledger(&world.db));
    let out = run(&[]).join().unwrap();
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("weekly-deal: already published for 2026-11-21"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(rt.block_on(ledger_since(&world.db, &before)).is_empty());
    // …unless on purpose, which the ledger says.
    let out = run(&["--force", "--campaign", "weekly-deal"])
        .join()
        .unwrap();
    assert_ok(&out);
    assert_eq!(run_folders(&world.exports(), "weekly-deal", NIGHT).len(), 2);
    let forced = rt.block_on(ledger_since(&world.db, &before));
    assert_eq!(forced.len(), 1, "{forced:?}");
    assert_eq!(forced[0].status, "succeeded");
    let listing = targeting(&[
        "runs",
        "list",
        "--campaign",
        "weekly-deal",
        "--state-database-url",
        &world.db,
    ]);
    assert!(
        String::from_utf8_lossy(&listing.stdout)
            .contains("note: published again on purpose (--force)"),
        "{}",
        String::from_utf8_lossy(&listing.stdout)
    );
}

#[test]
fn concurrent_runs_publish_a_campaign_day_once_on_sqlite() {
    check_once(&TestEnv::sqlite("once-sqlite"));
}

#[test]
fn concurrent_runs_publish_a_campaign_day_once_on_postgres() {
    let world = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(TestEnv::postgres("once-postgres"));
    check_once(&world);
}

/// A night run before its own midnight, then run again on purpose, publishes the same lists
/// byte for byte: the first run's assignments are stamped with the night's cutoff, so they are
/// not exposures in the second run's features.
#[test]
fn a_night_run_early_and_again_publishes_identical_lists() {
    let world = TestEnv::sqlite("early");
    assert_ok(&world.demo("5000", &[]));
    let tomorrow = (chrono::Utc::now().date_naive() + chrono::Days::new(1))
        .format("%Y-%m-%d")
        .to_string();
    let exports = format!("file://{}", world.dir.join("early").display());
    let models = world.dir.join("models").display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--date",
            &tomorrow,
            "--database-url",
            &world.db,
            "--exports",
            &exports,
        ];
        args.extend(extra);
        assert_ok(&targeting_env(
            &args,
            &[("TARGETING__MODELS__STORE", models.as_str())],
        ));
    };
    run(&[]);
    run(&["--force"]);
    let mut listed = 0;
    for c in [
        "drop-starfall-nightfall",
        "new-buyer-welcome",
        "seasonal-winter-sale",
        "weekly-deal",
    ] {
        let runs = run_folders(&world.dir.join("early"), c, &tomorrow);
        assert_eq!(runs.len(), 2, "{c}: {runs:?}");
        let (first, second) = (read_export(&runs[0]), read_export(&runs[1]));
        listed += first.ids.len();
        assert_eq!(first.part_hashes, second.part_hashes, "{c}");
    }
    assert!(
        listed > 1000,
        "{listed} users listed: too few to prove anything"
    );
    // A third run skips every campaign-day: exit 0, and the result file says why.
    let result = world.dir.join("result.json");
    run(&["--result-json", result.to_str().unwrap()]);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    assert_eq!(r["exit_code"], 0, "{r}");
    let statuses: Vec<&str> = r["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["already_published"; 5], "{r}");
    // Forced, the result file lists each campaign published, with its export.
    run(&["--force", "--result-json", result.to_str().unwrap()]);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    let campaigns = r["campaigns"].as_array().unwrap();
    assert_eq!(campaigns.len(), 5, "{r}");
    for c in campaigns {
        assert_eq!(c["status"], "published", "{r}");
        assert!(c["audience"].as_u64().unwrap() > 0, "{r}");
        assert!(c["export_uri"].as_str().unwrap().contains(&tomorrow), "{r}");
    }
    assert!(r["run_id"].is_string(), "{r}");
}

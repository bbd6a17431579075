//! The model registry: `train` stores versions with a `current` pointer, `models list` shows
//! them, a nightly `run` scores with `current`, and a model whose features do not match is
//! refused with nothing published.

use crate::common::*;

#[test]
fn train_list_run_with_the_stored_model_and_refuse_a_mismatched_one() {
    let world = TestEnv::sqlite("registry");
    let (dir, d) = (&world.dir, world.path());
    assert_ok(&world.demo("20000", &[]));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let demo_version = summary["model"]["version"].as_str().unwrap().to_string();

    let store = format!("{d}/models");
    let env = [("TARGETING__MODELS__STORE", store.as_str())];
    let db = world.db.clone();
    let exports = format!("file://{d}/exports");
    // The demo published this date: the run publishes it again on purpose.
    let mut run = job_args("run", DATE, &db, &exports, "2");
    run.push("--force".into());

    // The nightly run scores with the stored model: same data, model and date give the same rows.
    let out = targeting_env(&run, &env);
    assert_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table.contains(&format!("{demo_version} (")) && table.contains("from the store"),
        "{table}"
    );
    let runs = run_folders(&world.exports(), "weekly-deal", DATE);
    assert_eq!(runs.len(), 2);
    assert_eq!(
        read_export(&runs[0]).part_hashes,
        read_export(&runs[1]).part_hashes
    );

    // train adds a version and moves `current`; list marks it.
    let train_with = |extra: &[&str], env: &[(&str, &str)]| {
        let base = [
            "train",
            "--database-url",
            &db,
            "--as-of",
            DATE,
            "--threads",
            "2",
        ];
        targeting_env(&[&base[..], extra].concat(), env)
    };
    let train = |extra: &[&str]| train_with(extra, &env);
    // Its logs, not on a terminal, say at least once a second here which stage is running.
    let out = train_with(
        &[],
        &[
            ("TARGETING__MODELS__STORE", store.as_str()),
            ("TARGETING__RUNTIME__HEARTBEAT_SECS", "1"),
        ],
    );
    assert_ok(&out);
    assert!(
        stderr(&out).contains("still working stage=\"train\""),
        "{}",
        stderr(&out)
    );
    let listing =
        String::from_utf8_lossy(&targeting_env(&["models", "list"], &env).stdout).into_owned();
    let rows: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("conversion_uplift"))
        .collect();
    assert_eq!(rows.len(), 2, "{listing}");
    assert!(
        rows[0].starts_with(' ') && rows[1].starts_with('*'),
        "{listing}"
    );
    assert!(rows[0].contains(&demo_version), "{listing}");

    // `--model` trains that model alone: a third sensitivity version becomes current, and the
    // uplift models keep theirs. The list shows each model's own held-out metric.
    let current =
        |model: &str| std::fs::read_to_string(dir.join(format!("models/{model}/current"))).unwrap();
    let uplift_before = (current("conversion_uplift"), current("discount_uplift"));
    let out = train(&["--model", "discount_sensitivity"]);
    assert_ok(&out);
    let sensitivity = current("discount_sensitivity");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "discount_sensitivity {sensitivity} (classifier): held-out auc"
        )),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        (current("conversion_uplift"), current("discount_uplift")),
        uplift_before
    );
    let listing =
        String::from_utf8_lossy(&targeting_env(&["models", "list"], &env).stdout).into_owned();
    let count = |model: &str| listing.lines().filter(|l| l.contains(model)).count();
    assert_eq!(
        (
            count("conversion_uplift"),
            count("discount_uplift"),
            count("discount_sensitivity"),
            count("gift_recipient")
        ),
        (2, 2, 3, 2),
        "{listing}"
    );
    // The same as JSON, for a monitor: one current version per model, with its metrics and
    // its age.
    let json = targeting_env(&["models", "list", "--json"], &env);
    assert_ok(&json);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(listed.len(), 9);
    for model in [
        "conversion_uplift",
        "discount_uplift",
        "discount_sensitivity",
    ] {
        let current: Vec<&serde_json::Value> = listed
            .iter()
            .filter(|m| m["model"] == model && m["current"] == true)
            .collect();
        assert_eq!(current.len(), 1, "{model}");
        let age = current[0]["age_hours"].as_f64().unwrap();
        assert!((0.0..1.0).contains(&age), "{model}: {age}");
    }
    let newest_json = listed
        .iter()
        .find(|m| m["version"] == sensitivity.trim())
        .unwrap();
    assert!(newest_json["metrics"]["auc"].as_f64().unwrap() > 0.6);
    // The ledger as JSON: filtered by status and run date.
    let runs = |extra: &[&str]| -> Vec<serde_json::Value> {
        let out = targeting(
            &[
                &["runs", "list", "--json", "--state-database-url", &db][..],
                extra,
            ]
            .concat(),
        );
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let all = runs(&[]);
    assert!(all.len() >= 8, "{all:?}");
    assert!(all
        .iter()
        .all(|r| r["status"] == "succeeded" && r["run_date"] == DATE));
    assert_eq!(runs(&["--status", "failed"]).len(), 0);
    assert_eq!(runs(&["--since", "2026-11-21"]).len(), 0);
    assert_eq!(
        runs(&["--since", DATE, "--campaign", "weekly-deal"]).len(),
        2
    );
    let out = targeting(&[
        "runs",
        "list",
        "--status",
        "done",
        "--state-database-url",
        &db,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("possible values: running, succeeded, failed, aborted"),
        "{}",
        stderr(&out)
    );
    let newest = listing
        .lines()
        .find(|l| l.starts_with('*') && l.contains(&sensitivity))
        .unwrap_or_else(|| panic!("{listing}"));
    let auc: f64 = newest
        .split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{newest}"));
    assert!(
        newest.contains(" auc ") && auc > 0.6 && auc < 1.0,
        "{newest}"
    );
    // Rollback puts back the version before `current`, promote names one; both are recorded
    // with who and when, and an unknown version is refused with the stored ones listed.
    let versions: Vec<String> = listing
        .lines()
        .filter(|l| l.contains("discount_sensitivity"))
        .map(|l| l.split_whitespace().rev().nth(5).unwrap().to_string())
        .collect();
    assert_eq!(versions.len(), 3, "{listing}");
    let out = targeting_env(&["models", "rollback", "discount_sensitivity"], &env);
    assert_ok(&out);
    assert_eq!(current("discount_sensitivity"), versions[1]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&format!(
            "discount_sensitivity: current is {} (was {}), by ",
            versions[1], versions[2]
        )),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_ok(&targeting_env(
        &["models", "promote", "discount_sensitivity", &versions[2]],
        &env,
    ));
    assert_eq!(current("discount_sensitivity"), versions[2]);
    let history: Vec<serde_json::Value> =
        std::fs::read_dir(dir.join("models/discount_sensitivity/history"))
            .unwrap()
            .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
            .collect();
    let actions = |a: &str| history.iter().filter(|h| h["action"] == a).count();
    assert_eq!(
        (actions("train"), actions("rollback"), actions("promote")),
        (3, 1, 1),
        "{history:?}"
    );
    let out = targeting_env(&["models", "promote", "discount_sensitivity", "nope"], &env);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has no version \"nope\"") && stderr(&out).contains(&versions[0]),
        "{}",
        stderr(&out)
    );

    // A dry run changes nothing, even when it must train: with --retrain, and on an empty store.
    let store_files = |root: &std::path::Path| -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.display().to_string());
                }
            }
        }
        out.sort();
        out
    };
    let before = store_files(&dir.join("models"));
    let dry = [&run[..], &["--dry-run".into(), "--retrain".into()]].concat();
    let out = targeting_env(&dry, &env);
    assert_ok(&out);
    assert_eq!(
        store_files(&dir.join("models")),
        before,
        "a dry run stored models"
    );
    let empty = dir.join("empty-store");
    let empty_s = empty.display().to_string();
    let out = targeting_env(
        &[&run[..], &["--dry-run".into()]].concat(),
        &[("TARGETING__MODELS__STORE", empty_s.as_str())],
    );
    assert_ok(&out);
    assert!(
        store_files(&empty).is_empty(),
        "a dry run stored models: {:?}",
        store_files(&empty)
    );

    let out = targeting_env(&["train", "--model", "churn"], &env);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown model \"churn\" (known: conversion_uplift"),
        "{}",
        stderr(&out)
    );

    // A model trained on other features is refused by name, and nothing is published.
    let current = std::fs::read_to_string(dir.join("models/conversion_uplift/current")).unwrap();
    let meta_path = dir
        .join("models/conversion_uplift")
        .join(current.trim())
        .join("metadata.json");
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    std::fs::write(
        &meta_path,
        meta.replace("\"orders_per_year\"", "\"orders_per_decade\""),
    )
    .unwrap();
    let out = targeting_env(&run, &env);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("feature schema mismatch") && err.contains("orders_per_decade"),
        "{err}"
    );
    assert_eq!(
        run_folders(&world.exports(), "weekly-deal", DATE).len(),
        2,
        "nothing new published"
    );
}

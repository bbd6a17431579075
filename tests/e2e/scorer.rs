//! The native scorer on the demo's stored models: `bench-score` times it against LightGBM's
//! predict and fails unless every output is identical; a stored model it cannot read exactly
//! stops the run with one line naming the model, and `runtime.scorer = "lightgbm"` scores it.

use crate::common::*;

/// The demo's models (every role of the three), through both scorers on the demo's users.
#[test]
fn bench_score_checks_every_stored_model() {
    let world = TestEnv::sqlite("bench-score");
    assert_ok(&world.demo("3000", &[]));
    let models = world.dir.join("models");
    let out = targeting(&[
        "bench-score",
        "--rows",
        "20000",
        "--no-large",
        "--repeat",
        "1",
        "--json",
        "--date",
        DATE,
        "--database-url",
        &world.db,
        "--model-store",
        &models.display().to_string(),
        "--threads",
        "2",
    ]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rows"], 20000, "{report}");
    let timings = report["timings"].as_array().unwrap();
    for model in [
        "conversion_uplift",
        "discount_uplift",
        "discount_sensitivity",
    ] {
        // Every role the store holds for the model, then the model's total.
        let stored: Vec<String> = std::fs::read_dir(models.join(model))
            .unwrap()
            .filter_map(|e| {
                let dir = e.ok()?.path();
                dir.is_dir().then_some(dir)
            })
            .flat_map(|dir| std::fs::read_dir(dir).unwrap())
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".txt").map(str::to_string)
            })
            .collect();
        let mut roles: Vec<&str> = timings
            .iter()
            .filter(|t| t["model"] == model && t["role"] != "all")
            .map(|t| t["role"].as_str().unwrap())
            .collect();
        roles.sort_unstable();
        let mut want: Vec<&str> = stored.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(roles, want, "{model}: {report}");
        let all = timings
            .iter()
            .find(|t| t["model"] == model && t["role"] == "all")
            .unwrap_or_else(|| panic!("no total for {model}: {report}"));
        assert!(all["trees"].as_u64().unwrap() > 0, "{all}");
        assert!(all["native_seconds"].as_f64().unwrap() > 0.0, "{all}");
        assert!(all["lightgbm_seconds"].as_f64().unwrap() > 0.0, "{all}");
    }
}

/// A model the native scorer cannot read exactly (here, an objective it does not know) stops
/// the run before anything is scored; with `runtime.scorer = "lightgbm"` the run scores it.
#[test]
fn a_model_the_native_scorer_refuses_is_named() {
    let world = TestEnv::sqlite("scorer-refuses");
    assert_ok(&world.demo("2000", &[]));
    let models = world.dir.join("models");
    let dir = models.join("discount_sensitivity");
    let current = std::fs::read_to_string(dir.join("current")).unwrap();
    let version = current.trim();
    let file = dir.join(version).join("classifier.txt");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("objective=binary sigmoid:1"));
    std::fs::write(
        &file,
        text.replacen("objective=binary sigmoid:1", "objective=cross_entropy", 1),
    )
    .unwrap();
    let store = models.display().to_string();
    let run = |scorer: &str| {
        targeting_env(
            &[
                "run",
                "--date",
                DATE,
                "--dry-run",
                "--database-url",
                &world.db,
                "--threads",
                "2",
            ],
            &[
                ("TARGETING__MODELS__STORE", store.as_str()),
                ("TARGETING__RUNTIME__SCORER", scorer),
            ],
        )
    };
    assert_one_line_error(
        &run("native"),
        &[
            "discount_sensitivity",
            version,
            "the classifier model",
            "the objective \"cross_entropy\"",
            "runtime.scorer = \"lightgbm\"",
        ],
    );
    assert_ok(&run("lightgbm"));
}

//! `targeting validate` on campaign files: the shipped examples pass, and each broken file gets
//! its own clear error with its location, all reported in one run.

use crate::common::*;

#[test]
fn example_campaigns_are_valid() {
    let out = targeting(&["validate", "config/campaigns"]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("4 campaign files valid"), "{stdout}");
    assert!(stdout.contains("ok  weekly-deal"), "{stdout}");
}

#[test]
fn every_broken_file_gets_its_own_located_error() {
    let dir = "tests/fixtures/campaigns/broken";
    let out = targeting(&["validate", dir]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with("error: 7 problem(s) in campaign files:\n"),
        "{err}"
    );
    let expect = [
        (
            "bad-cron.toml:8:8: schedule.cron \"0 25 * * *\": Component error: Number out of \
             bounds. (fields: [second] minute hour day-of-month month day-of-week)",
            "",
        ),
        (
            "bad-rule.toml:6:16: eligibility[0]: expected ')'",
            "    orders_total >= 1 and (country == \"US\"\n                                          ^",
        ),
        ("holdout-too-large.toml:4:11: holdout must be between 0 and 0.5, got 1.5", ""),
        (
            "negative-budget.toml:9:10: offer.budget must be a non-negative amount, got -500",
            "",
        ),
        (
            "unknown-feature.toml:6:16: eligibility[0]: unknown name \"days_since_purchase\", \
             did you mean \"days_since_last_purchase\"?",
            "    days_since_purchase >= 14\n    ^^^^^^^^^^^^^^^^^^^",
        ),
        (
            "unknown-field.toml:4:1: unknown field \"holdot\", did you mean \"holdout\"?",
            "",
        ),
        (
            "wrong-type.toml:5:16: max_audience must be integer, not string",
            "",
        ),
    ];
    for (line, detail) in expect {
        let line = format!("{dir}/{line}");
        assert!(err.contains(&line), "{line:?} not in:\n{err}");
        assert!(err.contains(detail), "{detail:?} not in:\n{err}");
    }
}

#[test]
fn schema_and_fields_describe_the_files() {
    let out = targeting(&["campaigns", "schema"]);
    assert_ok(&out);
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    assert!(schema["properties"]["eligibility"]["description"]
        .as_str()
        .unwrap()
        .contains("rules that must all hold"));
    let out = targeting(&["campaigns", "fields"]);
    assert_ok(&out);
    let fields = String::from_utf8_lossy(&out.stdout);
    for name in [
        "days_since_last_purchase",
        "is_new_buyer",
        "last_purchase_date",
        "country",
    ] {
        assert!(fields.contains(name), "{name} not in {fields}");
    }
}

//! The rule language's tests: parsing, type checks and compiled results on generated frames.

use polars::prelude::*;

use super::parse::chrono_days;
use super::*;
// Ours, not polars' `Field`.
use super::Field;
use crate::testgen::Gen;

fn catalog() -> Catalog {
    let f = |name: &str, kind: FieldKind, column: &str| Field {
        name: name.into(),
        kind,
        column: column.into(),
        description: String::new(),
    };
    Catalog {
        fields: vec![
            f(
                "days_since_last_purchase",
                FieldKind::Number,
                "days_since_last_purchase",
            ),
            f("orders_total", FieldKind::Number, "orders_total"),
            f("is_new_buyer", FieldKind::Bool, "is_new_buyer"),
            f(
                "country",
                FieldKind::Text {
                    levels: vec!["CA".into(), "DE".into(), "US".into()],
                },
                "country",
            ),
            f(
                "last_purchase_date",
                FieldKind::DaysBefore,
                "days_since_last_purchase",
            ),
        ],
        lists: Vec::new(),
    }
}

fn frame() -> DataFrame {
    df! {
        "user_id" => [1i64, 2, 3, 4, 5],
        "days_since_last_purchase" => [Some(3.0), Some(20.0), None, Some(40.0), Some(14.0)],
        "orders_total" => [2.0, 5.0, 0.0, 1.0, 3.0],
        "is_new_buyer" => [0.0, 0.0, 1.0, 0.0, 0.0],
        // US, CA, DE, missing, US
        "country" => [Some(2.0), Some(0.0), Some(1.0), None, Some(2.0)],
    }
    .unwrap()
}

/// Users a rule selects from [`frame`] (run date 2026-11-20).
fn selects(rule: &str) -> Vec<i64> {
    let c = catalog();
    let checked = check(rule, &c).unwrap_or_else(|e| panic!("{e}"));
    let run_day = chrono_days("2026-11-20").unwrap();
    frame()
        .lazy()
        .filter(checked.to_expr(&c, run_day))
        .collect()
        .unwrap()
        .column("user_id")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .collect()
}

#[test]
fn the_issue_example_selects_by_hand() {
    // 1: too recent; 2: CA, 20 days; 3: new buyer; 4: country missing; 5: US, 14 days.
    assert_eq!(
        selects(
            r#"days_since_last_purchase >= 14 and country in ["US", "CA"] and not is_new_buyer"#
        ),
        vec![2, 5]
    );
}

#[test]
fn comparisons_logic_and_nulls() {
    assert_eq!(selects("orders_total > 2"), vec![2, 5]);
    assert_eq!(
        selects("orders_total == 0 or orders_total >= 5"),
        vec![2, 3]
    );
    assert_eq!(selects("not (orders_total > 2)"), vec![1, 3, 4]);
    // Missing values satisfy neither a comparison nor its negation.
    assert_eq!(selects("days_since_last_purchase < 15"), vec![1, 5]);
    assert_eq!(selects("not (days_since_last_purchase < 15)"), vec![2, 4]);
    assert_eq!(selects("days_since_last_purchase is null"), vec![3]);
    assert_eq!(
        selects("days_since_last_purchase is not null"),
        vec![1, 2, 4, 5]
    );
    assert_eq!(selects(r#"country not in ["US"]"#), vec![2, 3]);
    assert_eq!(selects(r#"country == "DE""#), vec![3]);
    assert_eq!(selects(r#"country != "DE""#), vec![1, 2, 5]);
    // A level the data does not have matches nobody.
    assert_eq!(selects(r#"country == "FR""#), Vec::<i64>::new());
    assert_eq!(selects("is_new_buyer"), vec![3]);
    assert_eq!(
        selects("is_new_buyer == false and orders_total < 2"),
        vec![4]
    );
    assert_eq!(selects("orders_total in []"), Vec::<i64>::new());
    assert_eq!(selects("orders_total >= -1.5"), vec![1, 2, 3, 4, 5]);
}

#[test]
fn dates_relative_to_the_run_date() {
    // Run date 2026-11-20: the last purchase of user 2 was on 2026-10-31.
    assert_eq!(selects("last_purchase_date < run_date - 2w"), vec![2, 4]);
    assert_eq!(
        selects("last_purchase_date <= run_date - 14d"),
        vec![2, 4, 5]
    );
    assert_eq!(selects("last_purchase_date == 2026-10-31"), vec![2]);
    assert_eq!(selects("last_purchase_date >= 2026-11-06"), vec![1, 5]);
}

fn error(rule: &str) -> RuleError {
    check(rule, &catalog()).unwrap_err()
}

#[test]
fn errors_point_at_the_fault() {
    let e = error("days_since_purchase >= 14");
    assert_eq!(
        e.message,
        "unknown name \"days_since_purchase\", did you mean \"days_since_last_purchase\"?"
    );
    assert_eq!(e.at, 0..19);
    assert_eq!(
        e.to_string(),
        "unknown name \"days_since_purchase\", did you mean \"days_since_last_purchase\"?\n    \
         days_since_purchase >= 14\n    ^^^^^^^^^^^^^^^^^^^"
    );
    let e = error("orders_total >= 14 and");
    assert_eq!(e.message, "the rule ends here: expected a value or a name");
    assert_eq!(e.at, 22..23);
    let e = error("orders_total = 3");
    assert_eq!((e.message.as_str(), e.at), ("use == to compare", 13..14));
    let e = error("(orders_total > 1");
    assert_eq!(e.message, "expected ')'");
    let e = error("orders_total > 1)");
    assert_eq!((e.message.as_str(), e.at), ("unmatched ')'", 16..17));
    let e = error(r#"country > "US""#);
    assert_eq!(e.message, "text can only be compared with == or !=");
    let e = error(r#"orders_total == "3""#);
    assert_eq!(e.message, "cannot compare a number with text");
    let e = error("orders_total");
    assert_eq!(
        e.message,
        "a number is not a condition: compare it with something"
    );
    let e = error("last_purchase_date < 2026-02-30");
    assert!(
        e.message.contains("\"2026-02-30\" is not a number, a date"),
        "{}",
        e.message
    );
    let e = error(r#"country in ["US", 3]"#);
    assert_eq!(
        (e.message.as_str(), e.at),
        ("the list holds a number but the left side is text", 18..19)
    );
    let e = error("last_purchase_date < run_date - 14");
    assert_eq!(
        e.message,
        "expected a number of days or weeks, like 14d or 2w"
    );
    let e = error("");
    assert_eq!(e.message, "the rule is empty");
    let e = error(&format!(
        "{}orders_total > 1{}",
        "(".repeat(100),
        ")".repeat(100)
    ));
    assert!(e.message.contains("nested deeper than 64"), "{}", e.message);
}

#[test]
fn suggestions_only_for_likely_typos() {
    let c = catalog();
    assert_eq!(c.suggest("orders_totl"), Some("orders_total"));
    assert_eq!(c.suggest("holdout"), None);
    assert_eq!(
        closest("holdot", ["holdout", "id", "kind"].into_iter()),
        Some("holdout")
    );
    // Two swapped characters are one edit: the swap wins over a word two edits away.
    assert_eq!(
        closest("orders_356d", ["orders_30d", "orders_365d"].into_iter()),
        Some("orders_365d")
    );
}

#[test]
fn dates_written_another_way_say_how_to_write_them() {
    for (rule, message) in [
        (
            "last_purchase_date < 2026/11/01",
            "unexpected character '/': dates are written YYYY-MM-DD, e.g. 2026-11-01",
        ),
        (
            "last_purchase_date < 11/01/2026",
            "unexpected character '/': dates are written YYYY-MM-DD, e.g. 2026-11-01",
        ),
        (
            "last_purchase_date < 2026-1-5",
            "2026-1-5 is not a date: dates are written YYYY-MM-DD, e.g. 2026-01-05",
        ),
        (
            "last_purchase_date < 01-11-2026",
            "01-11-2026 is not a date: dates are written YYYY-MM-DD, e.g. 2026-01-05",
        ),
        (
            r#"last_purchase_date < "2026-11-01""#,
            "cannot compare a date with text: dates are written YYYY-MM-DD without quotes, e.g. \
             2026-11-01",
        ),
    ] {
        assert_eq!(error(rule).message, message, "{rule}");
    }
    // A real date and arithmetic on the run date are untouched.
    assert!(check("last_purchase_date < 2026-11-01", &catalog()).is_ok());
    assert!(check("last_purchase_date < run_date - 14d", &catalog()).is_ok());
}

#[test]
fn no_input_makes_the_parser_panic() {
    // Random token soups from the language's own pieces plus arbitrary bytes: every one
    // either parses or gives an error whose span lies inside (or just after) the rule.
    let pieces = [
        "orders_total",
        "country",
        "is_new_buyer",
        "last_purchase_date",
        "x",
        "and",
        "or",
        "not",
        "in",
        "is",
        "null",
        "(",
        ")",
        "[",
        "]",
        ",",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "=",
        "!",
        "-",
        "+",
        "run_date",
        "14d",
        "2w",
        "3",
        "-2.5",
        "1e3",
        ".",
        "\"US\"",
        "\"",
        "\\",
        "2026-11-01",
        "2026-13-01",
        "true",
        "false",
        "é",
        "\u{1F600}",
        "\t",
        " ",
        "99999999999999999999d",
        "0x1F",
        "--",
    ];
    let c = catalog();
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let n = 1 + g.next() % 12;
        let mut rule = String::new();
        for _ in 0..n {
            rule.push_str(g.pick(&pieces));
            if !g.next().is_multiple_of(3) {
                rule.push(' ');
            }
        }
        match check(&rule, &c) {
            Ok(r) => {
                let _ = r.to_expr(&c, 20_000);
            }
            Err(e) => {
                assert!(e.at.start <= rule.len(), "{rule:?}: {e:?}");
                let _ = e.to_string();
            }
        }
    }
    // Arbitrary bytes (as lossy UTF-8), too.
    for _ in 0..20_000 {
        let len = g.next() % 40;
        let bytes: Vec<u8> = (0..len).map(|_| (g.next() % 256) as u8).collect();
        let rule = String::from_utf8_lossy(&bytes).to_string();
        if let Err(e) = check(&rule, &c) {
            let _ = e.to_string();
        }
    }
}

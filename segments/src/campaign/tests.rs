//! Campaign files' tests: parsing, every problem reported at once with its place, schedules.

use super::*;
use crate::rules::{Field, FieldKind};

#[test]
fn schedules_fire_in_their_time_zone() {
    use chrono::TimeZone;
    let s = Schedule::parse("0 3 * * *", Some("Europe/Berlin")).unwrap();
    let utc = |y, m, d, h, min| chrono::Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap();
    // 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer.
    assert_eq!(
        s.next_after(utc(2026, 11, 26, 1, 0)),
        Some(utc(2026, 11, 26, 2, 0))
    );
    assert_eq!(
        s.next_after(utc(2026, 11, 26, 2, 0)),
        Some(utc(2026, 11, 27, 2, 0))
    );
    assert_eq!(
        s.next_after(utc(2026, 7, 1, 0, 0)),
        Some(utc(2026, 7, 1, 1, 0))
    );
    let window = chrono::Duration::hours(24);
    assert_eq!(
        s.last_fired(utc(2026, 11, 26, 2, 0), window),
        Some(utc(2026, 11, 26, 2, 0))
    );
    assert_eq!(
        s.last_fired(utc(2026, 11, 26, 1, 59), window),
        Some(utc(2026, 11, 25, 2, 0))
    );
    assert_eq!(
        s.last_fired(utc(2026, 11, 26, 1, 59), chrono::Duration::hours(6)),
        None
    );
    // 23:30 UTC on the 25th is already the 26th in Berlin.
    let late = chrono::Utc
        .with_ymd_and_hms(2026, 11, 25, 23, 30, 0)
        .unwrap();
    assert_eq!(
        s.run_date(late),
        chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
    );
    let every_2s = Schedule::parse("*/2 * * * * *", None).unwrap();
    let t = chrono::Utc.with_ymd_and_hms(2026, 11, 26, 8, 0, 1).unwrap();
    assert_eq!(
        every_2s.next_after(t),
        Some(t + chrono::Duration::seconds(1))
    );
    // 02:30 Berlin does not exist on 29 March 2026: that night's firing is at 03:00, and
    // catch-up looks for the firing the daemon made.
    let skipped = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
    assert_eq!(
        skipped.last_fired(utc(2026, 3, 29, 12, 0), window),
        Some(utc(2026, 3, 29, 1, 0))
    );
    // A seventh field is not read as a year.
    assert_eq!(
        Schedule::parse("0 0 3 * * * 2027", None).unwrap_err().0,
        "schedule.cron"
    );
}

const DEAL: &str = r#"
format_version = 1
id = "weekly-deal"
kind = "weekly_deal"
holdout = 0.1
max_audience = 1000
eligibility = ["orders_total >= 1"]
[offer]
discount_pct = 20
"#;

fn catalog() -> Catalog {
    Catalog {
        fields: vec![Field {
            name: "orders_total".into(),
            kind: FieldKind::Number,
            column: "orders_total".into(),
            description: String::new(),
        }],
    }
}

fn error(text: &str) -> String {
    parse("deal.toml", text, &catalog())
        .unwrap_err()
        .to_string()
}

#[test]
fn valid_file_gets_defaults() {
    let c = parse("deal.toml", DEAL, &catalog()).unwrap();
    assert_eq!(c.salt, "weekly-deal");
    assert_eq!(c.offer.label, "20% off");
    assert_eq!(
        c.kind,
        CampaignKind::WeeklyDeal {
            max_discount_share: 0.6,
            max_sensitivity: 0.5,
        }
    );
    assert_eq!((c.offer.budget, c.offer.average_price), (None, 30.0));
    assert_eq!(c.offer.margin, 0.3);
    assert_eq!(c.format, ExportFormat::CsvGzip);
    assert_eq!(c.eligibility.len(), 1);
    assert_eq!(c.eligibility[0].text, "orders_total >= 1");
}

#[test]
fn an_id_too_long_for_a_folder_name_is_refused() {
    let long = "a".repeat(MAX_ID_LEN + 1);
    let err = error(&DEAL.replace("weekly-deal", &long));
    assert_eq!(
        err,
        "deal.toml:3:6: id is 65 characters long: at most 64, as it names folders and object keys"
    );
    let longest = "a".repeat(MAX_ID_LEN);
    assert_eq!(
        parse(
            "deal.toml",
            &DEAL.replace("weekly-deal", &longest),
            &catalog()
        )
        .unwrap()
        .id,
        longest
    );
}

#[test]
fn unknown_fields_are_located_with_a_hint() {
    let text = DEAL
        .replace("holdout = 0.1", "holdot = 0.1")
        .replace("discount_pct = 20", "discount_pct = 20\nlabl = \"x\"");
    assert_eq!(
        error(&text),
        "deal.toml:5:1: unknown field \"holdot\", did you mean \"holdout\"?\n\
         deal.toml:10:1: unknown field \"offer.labl\", did you mean \"label\"?"
    );
    let text = DEAL.replace("holdout = 0.1", "holdout = 0.1\ncolour = 3");
    let err = error(&text);
    assert!(
        err.starts_with("deal.toml:6:1: unknown field \"colour\" (known: drop, eligibility,"),
        "{err}"
    );
}

#[test]
fn wrong_type_and_syntax_are_located() {
    let text = DEAL
        .replace("max_audience = 1000", "max_audience = \"lots\"")
        .replace("holdout = 0.1", "holdout = true")
        .replace("kind = \"weekly_deal\"", "kind = \"weekly-deal\"");
    // Every wrong type at once, and an unknown kind with a hint.
    assert_eq!(
        error(&text),
        "deal.toml:5:11: holdout must be number, not boolean\n\
         deal.toml:4:8: kind \"weekly-deal\" is not known, did you mean \"weekly_deal\"?\n\
         deal.toml:6:16: max_audience must be integer, not string"
    );
    let err = error(&DEAL.replace("max_audience = 1000", "max_audience = "));
    assert!(err.starts_with("deal.toml:6:"), "{err}");
}

#[test]
fn all_problems_are_reported_at_once_each_with_its_place() {
    let text = DEAL
        .replace("holdout = 0.1", "holdout = 1.5")
        .replace("discount_pct = 20", "discount_pct = -5")
        .replace("orders_total >= 1", "orders_totl >= 1");
    assert_eq!(
        error(&text),
        "deal.toml:5:11: holdout must be between 0 and 0.5, got 1.5\n\
         deal.toml:9:16: offer.discount_pct must be between 0 and 90, got -5\n\
         deal.toml:9:16: a weekly_deal needs offer.discount_pct above 0\n\
         deal.toml:7:16: eligibility[0]: unknown name \"orders_totl\", did you mean \"orders_total\"?\n    \
         orders_totl >= 1\n    ^^^^^^^^^^^"
    );
}

#[test]
fn schedules_are_validated_and_know_their_days() {
    let with = |schedule: &str| DEAL.replace("[offer]", &format!("{schedule}\n[offer]"));
    let c = parse(
        "deal.toml",
        &with("[schedule]\ncron = \"30 23 * * MON\"\ntimezone = \"America/New_York\""),
        &catalog(),
    )
    .unwrap();
    let s = c.schedule.unwrap();
    let day = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    // 2026-11-23 is a Monday; 23:30 in New York is already Tuesday in UTC, but the day is
    // the campaign's own.
    assert!(s.due_on(day("2026-11-23")));
    assert!(!s.due_on(day("2026-11-24")));
    assert!(!s.due_on(day("2026-11-22")));
    // Six fields: seconds first.
    let c = parse(
        "deal.toml",
        &with("[schedule]\ncron = \"0 0 4 1 12 *\""),
        &catalog(),
    )
    .unwrap();
    assert!(c.schedule.as_ref().unwrap().due_on(day("2026-12-01")));
    assert!(!c.schedule.unwrap().due_on(day("2026-12-02")));

    let err = error(&with("[schedule]\ncron = \"0 25 * * *\""));
    assert!(
        err.starts_with("deal.toml:9:8: schedule.cron \"0 25 * * *\": "),
        "{err}"
    );
    let err = error(&with(
        "[schedule]\ncron = \"0 3 * * *\"\ntimezone = \"Mars/Olympus\"",
    ));
    assert!(
        err.starts_with("deal.toml:10:12: schedule.timezone \"Mars/Olympus\" is not an IANA"),
        "{err}"
    );
}

#[test]
fn the_schema_describes_every_field() {
    let s = schema();
    let props = s["properties"].as_object().unwrap();
    for key in [
        "format_version",
        "id",
        "kind",
        "holdout",
        "eligibility",
        "offer",
    ] {
        assert!(props.contains_key(key), "{key}");
    }
    assert_eq!(s["additionalProperties"], serde_json::json!(false));
    assert!(props["holdout"]["description"]
        .as_str()
        .unwrap()
        .contains("Share of the selected audience"));
}

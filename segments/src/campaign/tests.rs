//! Campaign files' tests: parsing, every problem reported at once with its place, schedules.

use super::*;
use crate::rules::{Field, FieldKind};
use crate::SegmentError;

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
        lists: Vec::new(),
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
        "deal.toml:4:8: kind \"weekly-deal\" is not known, did you mean \"weekly_deal\"?\n\
         deal.toml:5:11: holdout must be number, not boolean\n\
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
         deal.toml:7:16: eligibility[0]: unknown name \"orders_totl\", did you mean \"orders_total\"?\n    \
         orders_totl >= 1\n    ^^^^^^^^^^^\n\
         deal.toml:9:16: offer.discount_pct must be between 0 and 90, got -5\n\
         deal.toml:9:16: a weekly_deal needs offer.discount_pct above 0 (or offer.discount_levels)"
    );
}

#[test]
fn discount_levels_replace_one_discount_on_a_weekly_deal() {
    let levels = DEAL.replace("discount_pct = 20", "discount_levels = [10, 20, 30]");
    let c = parse("deal.toml", &levels, &catalog()).unwrap();
    assert_eq!(c.offer.discount_levels, vec![10, 20, 30]);
    assert_eq!(c.offer.discount_pct, 0.0);
    assert!(c.offer.discounted());
    assert_eq!(c.offer.label, "up to 30% off");
    // Each mistake is located at the levels.
    for (text, message) in [
        (
            DEAL.replace(
                "discount_pct = 20",
                "discount_pct = 20\ndiscount_levels = [10]",
            ),
            "deal.toml:10:19: set offer.discount_levels or offer.discount_pct, not both",
        ),
        (
            DEAL.replace("discount_pct = 20", "discount_levels = [20, 10]"),
            "deal.toml:9:19: offer.discount_levels must be ascending without repeats, got [20, 10]",
        ),
        (
            DEAL.replace("discount_pct = 20", "discount_levels = [10, 95]"),
            "deal.toml:9:19: offer.discount_levels are percentages from 1 to 90, got 95",
        ),
        (
            DEAL.replace("discount_pct = 20", "discount_levels = []"),
            "deal.toml:9:19: offer.discount_levels needs 1 to 4 levels, got 0",
        ),
        (
            levels.replace("weekly_deal", "new_buyer"),
            "deal.toml:9:19: only a weekly_deal chooses a discount level per user",
        ),
    ] {
        assert_eq!(error(&text), message);
    }
}

#[test]
fn items_are_listed_or_selected_and_rules_may_test_them() {
    let with =
        |items: &str, rule: &str| DEAL.replace("orders_total >= 1", rule) + "[items]\n" + items;
    let c = parse(
        "deal.toml",
        &with("ids = [12, 11]\n", "wishlist has item in deal_items"),
        &catalog(),
    )
    .unwrap();
    assert_eq!(c.items, Some(CampaignItems::Ids(vec![12, 11])));
    assert_eq!(c.eligibility[0].item_predicates().len(), 1);
    let c = parse(
        "deal.toml",
        &with("where = 'kind == \"3p\"'\n", "owns game_id == 7"),
        &catalog(),
    )
    .unwrap();
    assert!(matches!(c.items, Some(CampaignItems::Where(_))));
    // Each mistake is located.
    for (text, message) in [
        (
            with("ids = [1]\nwhere = 'kind == \"3p\"'\n", "orders_total >= 1"),
            "deal.toml:10:1: [items] lists ids or a where condition, not both",
        ),
        (
            with("", "orders_total >= 1"),
            "deal.toml:10:1: [items] needs ids = [...] or where = \"...\"",
        ),
        (
            with("ids = [1, 2, 1]\n", "orders_total >= 1"),
            "deal.toml:11:7: [items] ids lists item 1 twice",
        ),
        (
            with("ids = []\n", "orders_total >= 1"),
            "deal.toml:11:7: [items] ids needs 1 to 10000 items, got 0",
        ),
        (
            with("where = 'categroy == 1'\n", "orders_total >= 1"),
            "deal.toml:11:9: items.where: unknown name of an item \"categroy\", did you mean \
             \"category\"?\n    categroy == 1\n    ^^^^^^^^",
        ),
        (
            DEAL.replace("orders_total >= 1", "wishlist has item in deal_items"),
            "deal.toml:7:16: eligibility[0]: unknown list \"deal_items\": give the campaign an \
             [items] table\n    wishlist has item in deal_items\n                         \
             ^^^^^^^^^^",
        ),
        (
            DEAL.replace("weekly_deal", "drop") + "[drop]\nitem_id = 3\n[items]\nids = [1]\n",
            "deal.toml:12:1: [items] does not apply to a drop: its item is [drop] item_id",
        ),
    ] {
        let found = error(&text);
        assert!(found.contains(message), "{found}\n---\n{message}");
    }
}

#[test]
fn a_crm_that_takes_plain_csv_gets_it_and_refuses_the_rest() {
    let c = parse(
        "deal.toml",
        &(DEAL.to_string() + "[export]\ncolumns = \"hubspot\"\n"),
        &catalog(),
    )
    .unwrap();
    assert_eq!(c.format, ExportFormat::Csv);
    assert_eq!(
        error(&(DEAL.to_string() + "[export]\ncolumns = \"sfmc\"\nformat = \"parquet\"\n")),
        "deal.toml:12:10: Salesforce Marketing Cloud's import takes plain CSV: the sfmc preset \
         needs format = \"csv\", not \"parquet\""
    );
    // Iterable takes CSV and JSON lines, not Parquet.
    assert_eq!(
        error(&(DEAL.to_string() + "[export]\ncolumns = \"iterable\"\nformat = \"parquet\"\n")),
        "deal.toml:12:10: Iterable imports lists from CSV (or JSON lines through its bulk API), \
         not Parquet: the iterable preset needs format = \"csv\", \"csv_gzip\" or \"jsonl\""
    );
    // Leaving out users without an email needs an email column.
    assert_eq!(
        error(&(DEAL.to_string() + "[export]\nrequire_email = true\n")),
        "deal.toml:11:17: export.require_email leaves out users without an email, but the generic \
         preset has no email column (iterable, hubspot and sfmc have one)"
    );
    let text = DEAL.to_string() + "[export]\ncolumns = \"iterable\"\nrequire_email = true\n";
    assert!(parse("deal.toml", &text, &catalog()).unwrap().require_email);
    for format in ["csv", "csv_gzip", "jsonl"] {
        let text = format!("{DEAL}[export]\ncolumns = \"iterable\"\nformat = \"{format}\"\n");
        assert!(parse("deal.toml", &text, &catalog()).is_ok(), "{format}");
    }
    // Braze's CSV import reads plain CSV: the braze preset gets it, or JSON lines for an
    // uploader through its API.
    let braze = DEAL.to_string() + "[export]\ncolumns = \"braze\"\n";
    assert_eq!(
        parse("deal.toml", &braze, &catalog()).unwrap().format,
        ExportFormat::Csv
    );
    assert_eq!(
        error(&(braze.clone() + "format = \"csv_gzip\"\n")),
        "deal.toml:12:10: Braze's CSV import takes plain CSV files: the braze preset needs \
         format = \"csv\" (or \"jsonl\" for an uploader through Braze's /users/track API), not \
         \"csv_gzip\""
    );
    assert!(parse("deal.toml", &(braze + "format = \"jsonl\"\n"), &catalog()).is_ok());
    // The others keep their default and every format.
    let c = parse("deal.toml", DEAL, &catalog()).unwrap();
    assert_eq!(c.format, ExportFormat::CsvGzip);
}

/// Braze Cloud Data Ingestion watches a prefix: the preset needs somewhere to deliver the
/// parts, reads plain CSV by default, and refuses gzip.
#[test]
fn braze_cdi_needs_a_prefix_to_deliver_to_and_refuses_gzip() {
    assert_eq!(
        error(&(DEAL.to_string() + "[export]\ncolumns = \"braze_cdi\"\n")),
        "deal.toml:11:11: the braze_cdi preset needs export.deliver_to: Braze Cloud Data \
         Ingestion ingests every new file under the prefix it watches, so the parts are copied \
         there once complete, apart from the manifest and markers"
    );
    let cdi = DEAL.to_string()
        + "[export]\ncolumns = \"braze_cdi\"\ndeliver_to = \"s3://crm-bucket/braze-cdi\"\n";
    let c = parse("deal.toml", &cdi, &catalog()).unwrap();
    assert_eq!(c.format, ExportFormat::Csv);
    assert_eq!(c.deliver_to.as_deref(), Some("s3://crm-bucket/braze-cdi"));
    assert_eq!(
        error(&(cdi.clone() + "format = \"csv_gzip\"\n")),
        "deal.toml:13:10: Braze Cloud Data Ingestion reads CSV, JSON and Parquet files, not gzip: \
         the braze_cdi preset needs format = \"csv\", \"jsonl\" or \"parquet\""
    );
    for format in ["csv", "jsonl", "parquet"] {
        let text = format!("{cdi}format = \"{format}\"\n");
        assert!(parse("deal.toml", &text, &catalog()).is_ok(), "{format}");
    }
    assert_eq!(
        error(&(DEAL.to_string() + "[export]\ndeliver_to = \"/srv/watched\"\n")),
        "deal.toml:11:14: export.deliver_to \"/srv/watched\" must be a file:// or s3:// URI"
    );
}

#[test]
fn exploration_is_a_small_share() {
    let c = parse(
        "deal.toml",
        &DEAL.replace("holdout = 0.1", "holdout = 0.1\nexplore = 0.02"),
        &catalog(),
    )
    .unwrap();
    assert_eq!(c.explore, 0.02);
    let err = error(&DEAL.replace("holdout = 0.1", "holdout = 0.1\nexplore = 0.5"));
    assert_eq!(
        err,
        "deal.toml:6:11: explore must be between 0 and 0.2, got 0.5"
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

/// A file with every section, for the mutation test below.
const FULL: &str = r#"format_version = 1
id = "full-deal"
name = "Full deal"
kind = "weekly_deal"
priority = 3
holdout = 0.1
max_audience = 1000
salt = "s1"
eligibility = ["orders_total >= 1", "not (orders_total > 10)"]
[schedule]
cron = "0 3 * * MON"
timezone = "Europe/Berlin"
[offer]
discount_pct = 20
label = "20% off"
margin = 0.35
budget = 500
average_price = 25
[weekly_deal]
max_discount_share = 0.6
max_sensitivity = 0.5
[items]
where = 'category == "rpg" and list_price >= 20'
[export]
format = "csv"
columns = "braze"
holdout_file = true
destination = "s3://bucket/prefix"
"#;

/// Whether `problem` starts with `deal.toml:LINE:COLUMN: `.
fn is_located(problem: &str) -> bool {
    let Some(rest) = problem.strip_prefix("deal.toml:") else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let number =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    number(parts.next()) && number(parts.next()) && parts.next().is_some_and(|m| m.starts_with(' '))
}

/// The campaign file parser under 30,000 mutated files (pieces of TOML and of the format put
/// in, bytes taken out, lines doubled or dropped, values swapped): it never panics, and every
/// problem it reports is located as `file:line:column`.
#[test]
fn no_file_makes_the_parser_panic_and_every_problem_is_located() {
    let pieces = [
        "=",
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        ",",
        "\"",
        "'",
        "\"\"\"",
        "#",
        "\n",
        " ",
        ".",
        "-",
        "0",
        "-1",
        "1e999",
        "nan",
        "inf",
        "-0.0",
        "99999999999999999999",
        "true",
        "false",
        "1979-05-27",
        "\"\\u0000\"",
        "\"\\x\"",
        "é",
        "\u{1F600}",
        "\t",
        "\r\n",
        "id",
        "kind",
        "drop",
        "weekly_deal",
        "new_buyer",
        "seasonal",
        "[drop]",
        "item_id = 7",
        "[seasonal]",
        "min_uplift = 2",
        "[schedule]",
        "cron = \"0 25 * * *\"",
        "timezone = \"Mars/Olympus\"",
        "eligibility = [\"orders_total >\"]",
        "eligibility = [1]",
        "holdout = 0.9",
        "max_audience = 0",
        "format = \"xml\"",
        "columns = \"generic\"",
        "format_version = 2",
        "[offer.deep]",
        "a.b.c = 1",
        "holdot",
        "offer = 3",
        "export = []",
    ];
    let c = catalog();
    let mut g = crate::testgen::Gen(0xD1B5_4A32_D192_ED03);
    let mut parsed = 0;
    for case in 0..30_000 {
        let mut text = FULL.to_string();
        for _ in 0..1 + g.below(4) {
            // Cut at a character boundary, at or before `i`.
            let floor = |text: &str, mut i: usize| {
                i = i.min(text.len());
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                i
            };
            let at = |g: &mut crate::testgen::Gen, text: &str| {
                floor(text, g.below(text.len() as u64 + 1) as usize)
            };
            match g.below(5) {
                0 => {
                    let i = at(&mut g, &text);
                    text.insert_str(i, g.pick(&pieces));
                }
                1 => {
                    let i = at(&mut g, &text);
                    let j = at(&mut g, &text);
                    let (from, to) = (i.min(j), floor(&text, i.max(j).min(i.min(j) + 12)));
                    text.replace_range(from..to, "");
                }
                2 | 3 => {
                    let mut lines: Vec<String> = text.lines().map(String::from).collect();
                    let n = lines.len() as u64;
                    let k = g.below(n) as usize;
                    match g.below(3) {
                        0 => lines.insert(k, lines[k].clone()),
                        1 => {
                            lines.remove(k);
                        }
                        _ => {
                            // The value of a line swapped for a piece.
                            if let Some((key, _)) = lines[k].clone().split_once('=') {
                                lines[k] = format!("{key}= {}", g.pick(&pieces));
                            }
                        }
                    }
                    text = lines.join("\n");
                }
                _ => {
                    let len = g.below(6);
                    let bytes: Vec<u8> = (0..len).map(|_| g.below(256) as u8).collect();
                    let i = at(&mut g, &text);
                    text.insert_str(i, &String::from_utf8_lossy(&bytes));
                }
            }
        }
        match parse("deal.toml", &text, &c) {
            Ok(_) => parsed += 1,
            Err(SegmentError::InvalidCampaign { problems }) => {
                assert!(!problems.is_empty(), "case {case}: no problem\n{text}");
                for p in &problems {
                    assert!(
                        is_located(p),
                        "case {case}: {p:?} is not located in\n{text}"
                    );
                }
            }
            Err(e) => panic!("case {case}: {e}\n{text}"),
        }
    }
    // The mutations are not all fatal: some files still parse.
    assert!(parsed > 100 && parsed < 29_000, "{parsed} of 30,000 parsed");
}

#[test]
fn a_missing_field_is_located_at_its_table_or_at_the_kind() {
    // `[offer]` is there without the discount a weekly deal needs: at the table.
    let err = error(&FULL.replace("discount_pct = 20\n", ""));
    assert!(
        err.starts_with("deal.toml:13:1: a weekly_deal needs offer.discount_pct"),
        "{err}"
    );
    // No `[offer]` at all: at the kind that asks for it.
    let text = FULL.replace("[offer]\ndiscount_pct = 20\nlabel = \"20% off\"\nmargin = 0.35\nbudget = 500\naverage_price = 25\n", "");
    let err = error(&text);
    assert!(
        err.starts_with("deal.toml:4:8: a weekly_deal needs offer.discount_pct"),
        "{err}"
    );
}

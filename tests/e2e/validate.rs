//! `targeting validate` on campaign files: the shipped examples pass, and each broken file gets
//! its own clear error with its location, all reported in one run.

use crate::common::*;

#[test]
fn example_campaigns_are_valid() {
    let out = targeting(&["validate", "--offline", "config/campaigns"]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("5 campaign files valid"), "{stdout}");
    assert!(stdout.contains("ok  weekly-deal"), "{stdout}");
}

#[test]
fn every_broken_file_gets_its_own_located_error() {
    let dir = "tests/fixtures/campaigns/broken";
    let out = targeting(&["validate", dir]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with("error: 13 problem(s) in campaign files:\n"),
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
        // Several problems of one file, each counted, in the order of the file; dates written
        // another way say how to write them; a swap of two digits is one edit.
        (
            "dates.toml:6:3: eligibility[0]: unexpected character '/': dates are written \
             YYYY-MM-DD, e.g. 2026-11-01",
            "",
        ),
        (
            "dates.toml:7:3: eligibility[1]: cannot compare a date with text: dates are written \
             YYYY-MM-DD without quotes, e.g. 2026-11-01",
            "",
        ),
        (
            "dates.toml:8:3: eligibility[2]: 2026-1-5 is not a date: dates are written \
             YYYY-MM-DD, e.g. 2026-01-05",
            "",
        ),
        (
            "dates.toml:9:3: eligibility[3]: unknown name \"orders_356d\", did you mean \
             \"orders_365d\"?",
            "",
        ),
        ("dates.toml:11:11: holdout must be between 0 and 0.5, got 1.5", ""),
        ("holdout-too-large.toml:4:11: holdout must be between 0 and 0.5, got 1.5", ""),
        (
            "negative-budget.toml:9:10: offer.budget must be a non-negative amount, got -500",
            "",
        ),
        // Latin-1 "é": located at the byte, not "stream did not contain valid UTF-8".
        (
            "not-utf8.toml:4:12: byte 0xe9 is not UTF-8: save the file as UTF-8 text",
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
    let mut at = 0;
    for (line, detail) in expect {
        let line = format!("{dir}/{line}");
        assert!(err.contains(&line), "{line:?} not in:\n{err}");
        assert!(err.contains(detail), "{detail:?} not in:\n{err}");
        // Files by name, each file's problems by place.
        let found = err.find(&line).unwrap();
        assert!(found > at, "{line:?} out of order in:\n{err}");
        at = found;
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

/// A campaign file picks a destination under the operator's allowed roots, never outside them:
/// `validate` refuses the others, naming the campaign and the roots.
#[test]
fn a_campaign_destination_must_lie_under_an_allowed_root() {
    let world = TestEnv::sqlite("destinations");
    let campaign = |id: &str, destination: &str| {
        std::fs::write(
            world.dir.join(format!("{id}.toml")),
            format!(
                "format_version = 1\nid = \"{id}\"\nkind = \"seasonal\"\npriority = 1\n\
                 holdout = 0.1\nmax_audience = 100\n[export]\ndestination = \"{destination}\"\n"
            ),
        )
        .unwrap();
    };
    let dir = world.path();
    campaign("under", "file://demo/exports/braze");
    assert_ok(&targeting(&["validate", &dir]));

    campaign("outside", "file://../elsewhere");
    let out = targeting(&["validate", &dir]);
    // An invalid configuration: no retry fixes it.
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "campaign outside: export.destination file://../elsewhere is not under an allowed \
             destination (export.allowed_destinations: file://demo/exports)"
        ),
        "{err}"
    );

    // The operator's list decides: a bucket of its own is fine once listed.
    campaign("outside", "s3://crm-lists/targeting/braze");
    let out = targeting_env(
        &["validate", &dir],
        &[(
            "TARGETING__EXPORT__ALLOWED_DESTINATIONS",
            "[\"file://demo/exports\", \"s3://crm-lists/targeting\"]",
        )],
    );
    assert_ok(&out);
    let out = targeting(&["validate", &dir]);
    assert!(!out.status.success(), "{}", stderr(&out));

    // A prefix a CRM watches may not hold any campaign's run folders.
    std::fs::write(
        world.dir.join("watched.toml"),
        "format_version = 1\nid = \"watched\"\nkind = \"seasonal\"\npriority = 1\n\
         holdout = 0.1\nmax_audience = 100\n[export]\ncolumns = \"braze_cdi\"\n\
         deliver_to = \"file://demo/exports\"\n",
    )
    .unwrap();
    std::fs::remove_file(world.dir.join("outside.toml")).unwrap();
    let out = targeting(&["validate", &dir]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("export.deliver_to file://demo/exports overlaps the run folders"),
        "{}",
        stderr(&out)
    );
}

/// A source with a catalogue of `items` and one friendship (the example gift campaign's), and
/// nothing else.
async fn catalogue(db: &str, items: &[i64]) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("{db}?mode=rwc"))
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE friendships (user_id INTEGER, friend_id INTEGER, since INTEGER)",
        "INSERT INTO friendships VALUES (1, 2, 0)",
    ] {
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }
    sqlx::query(
        "CREATE TABLE items (item_id INTEGER PRIMARY KEY, title TEXT, kind TEXT, \
         publisher_id INTEGER, game_id INTEGER, category TEXT, list_price_cents INTEGER, \
         released_at INTEGER)",
    )
    .execute(&mut c)
    .await
    .unwrap();
    for id in items {
        sqlx::query("INSERT INTO items VALUES (?, 'x', '1p', 1, 1, 'rpg', 1999, 0)")
            .bind(id)
            .execute(&mut c)
            .await
            .unwrap();
    }
}

/// A gift campaign suggests friends: on a source without any, `validate` (unless `--offline`)
/// says so, naming the campaign and the query, instead of a night that finds no one.
#[tokio::test]
async fn a_gift_campaign_on_a_source_without_friendships_is_reported() {
    let env = TestEnv::sqlite("gifts-no-friends");
    catalogue(&env.db, &[7, 100]).await;
    let ok = targeting(&["validate", "config/campaigns", "--database-url", &env.db]);
    assert_ok(&ok);
    assert!(
        String::from_utf8_lossy(&ok.stdout)
            .contains("friendships found in the source for the gift campaigns"),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    execute(&env.db, "DELETE FROM friendships").await;
    let out = targeting(&["validate", "config/campaigns", "--database-url", &env.db]);
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(78), "invalid configuration");
    let err = stderr(&out);
    assert!(
        err.contains(
            "campaign gift-a-friend: kind = \"gift\" suggests a friend, and the source has no \
             friendships (query sql/queries/friendships.sql returned no rows)"
        ),
        "{err}"
    );
    let out = targeting(&[
        "validate",
        "config/campaigns",
        "--offline",
        "--database-url",
        &env.db,
    ]);
    assert_ok(&out);
}

/// A drop whose item is not in the source's catalogue can only fail at run time, so
/// `validate` looks it up (unless `--offline`) and names the campaign, the item and the query.
#[tokio::test]
async fn a_drop_item_missing_from_the_source_is_reported() {
    let found = TestEnv::sqlite("items-found");
    catalogue(&found.db, &[7, 100]).await;
    let out = targeting(&["validate", "config/campaigns", "--database-url", &found.db]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("item ids found in the source's catalogue"),
        "{stdout}"
    );

    let missing = TestEnv::sqlite("items-missing");
    catalogue(&missing.db, &[7]).await;
    let out = targeting(&[
        "validate",
        "config/campaigns",
        "--database-url",
        &missing.db,
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "campaign drop-starfall-nightfall: [drop] item_id has 100 not in the source's items \
             (query sql/queries/items.sql)"
        ),
        "{err}"
    );

    // An [items] list is looked up the same way, every unknown id named.
    let dir = found.dir.join("campaigns");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("rpg-week.toml"),
        "format_version = 1\nid = \"rpg-week\"\nkind = \"seasonal\"\nholdout = 0.1\n\
         max_audience = 100\neligibility = [\"not owns item in deal_items\"]\n\
         [items]\nids = [7, 55, 56]\n",
    )
    .unwrap();
    let out = targeting(&[
        "validate",
        dir.to_str().unwrap(),
        "--database-url",
        &found.db,
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "campaign rpg-week: [items] ids has 55, 56 not in the source's items \
             (query sql/queries/items.sql)"
        ),
        "{err}"
    );

    // No source at all: an error that says how to check the files alone, which works.
    let nowhere = TestEnv::sqlite("items-nowhere");
    let out = targeting(&[
        "validate",
        "config/campaigns",
        "--database-url",
        &nowhere.db,
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("(--offline checks the files alone)"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    let out = targeting(&[
        "validate",
        "config/campaigns",
        "--offline",
        "--database-url",
        &nowhere.db,
    ]);
    assert_ok(&out);
}

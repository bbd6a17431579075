//! Shards: a night scored in N shards publishes the same lists, byte for byte, and the same
//! funnels as a night scored in one, on SQLite and on PostgreSQL. The demo's drop campaign reads
//! friends owning its game, and the uplift models read friends' orders and gifts received:
//! features that cross shards.

use crate::common::*;

/// The demo's night, published again by every run: the audiences are full (a later night's
/// would be thinned by the frequency cap and the cooldown).
const NIGHT: &str = DATE;

const CAMPAIGNS: [&str; 4] = [
    "drop-starfall-nightfall",
    "new-buyer-welcome",
    "seasonal-winter-sale",
    "weekly-deal",
];

/// Runs the night in each number of shards (a dry run, then a published one) and compares
/// every run with the first.
fn identical_whatever_the_split(world: &TestEnv, splits: &[&str]) {
    assert_ok(&world.demo("5000", &[]));
    let models = world.dir.join("models").display().to_string();
    let run = |shards: &str, extra: &[&str]| {
        let exports = format!("file://{}", world.dir.join(format!("n{shards}")).display());
        let mut args = vec![
            "run",
            "--date",
            NIGHT,
            "--database-url",
            &world.db,
            "--exports",
            &exports,
            "--threads",
            "2",
            "--shards",
            shards,
        ];
        args.extend(extra);
        let out = targeting_env(&args, &[("TARGETING__MODELS__STORE", models.as_str())]);
        assert_ok(&out);
        out
    };
    // A dry run prints every campaign's funnel, audience, holdout and overlap.
    let previews: Vec<String> = splits
        .iter()
        .map(|n| String::from_utf8(run(n, &["--dry-run"]).stdout).unwrap())
        .collect();
    assert!(previews[0].contains("weekly-deal"), "{}", previews[0]);
    for (n, p) in splits.iter().zip(&previews).skip(1) {
        assert_eq!(p, &previews[0], "the preview in {n} shards");
    }
    for n in splits {
        run(n, &["--force"]);
    }
    let mut listed = 0;
    for c in CAMPAIGNS {
        let exports: Vec<Export> = splits
            .iter()
            .map(|n| {
                let runs = run_folders(&world.dir.join(format!("n{n}")), c, NIGHT);
                assert_eq!(runs.len(), 1, "{c} in {n} shards: {runs:?}");
                read_export(&runs[0])
            })
            .collect();
        assert!(!exports[0].ids.is_empty(), "{c}: nobody listed");
        listed += exports[0].ids.len();
        for (n, e) in splits.iter().zip(&exports).skip(1) {
            assert_eq!(e.ids, exports[0].ids, "{c}: the list in {n} shards");
            assert_eq!(
                e.part_hashes, exports[0].part_hashes,
                "{c}: parts in {n} shards"
            );
        }
    }
    assert!(
        listed > 500,
        "{listed} users listed: too few to prove anything"
    );
}

#[test]
fn n_shards_publish_what_one_does_on_sqlite() {
    identical_whatever_the_split(&TestEnv::sqlite("shards"), &["1", "3", "8"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn n_shards_publish_what_one_does_on_postgres() {
    let world = TestEnv::postgres("shards-pg").await;
    tokio::task::block_in_place(|| identical_whatever_the_split(&world, &["1", "4"]));
}

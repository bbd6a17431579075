//! Shards: a night scored in N shards publishes the same lists, byte for byte, and the same
//! funnels as a night scored in one, on SQLite and on PostgreSQL; and so does a night scored by
//! LightGBM's predict instead of the native scorer. The demo's drop campaign reads
//! friends owning its game, its gift campaign friends' recent orders and consent, and the
//! uplift models read friends' orders and gifts received: features that cross shards. On PostgreSQL the demo trains on a sample of its users (its
//! exposures are above a lowered `models.max_training_exposures`).

use crate::common::s3;
use crate::common::*;
use std::process::Output;

/// The demo's night, published again by every run: the audiences are full (a later night's
/// would be thinned by the frequency cap and the cooldown).
const NIGHT: &str = DATE;

const CAMPAIGNS: [&str; 5] = [
    "drop-starfall-nightfall",
    "gift-a-friend",
    "new-buyer-welcome",
    "seasonal-winter-sale",
    "weekly-deal",
];

/// Runs the demo with `demo_env`, then the night in each (number of shards, scorer) (a dry
/// run, then a published one), and compares every run with the first.
fn identical_whatever_the_split(
    world: &TestEnv,
    demo_env: &[(&str, &str)],
    splits: &[(&str, &str)],
) -> Output {
    let demo = targeting_env(&world.demo_args("5000"), demo_env);
    assert_ok(&demo);
    let models = world.dir.join("models").display().to_string();
    let folder = |(shards, scorer): &(&str, &str)| world.dir.join(format!("n{shards}-{scorer}"));
    let run = |split: &(&str, &str), extra: &[&str]| {
        let (shards, scorer) = *split;
        let exports = format!("file://{}", folder(split).display());
        let mut args = job_args("run", NIGHT, &world.db, &exports, "2");
        args.extend(
            ["--shards", shards]
                .iter()
                .chain(extra)
                .map(|a| a.to_string()),
        );
        let out = targeting_env(
            &args,
            &[
                ("TARGETING__MODELS__STORE", models.as_str()),
                ("TARGETING__RUNTIME__SCORER", scorer),
            ],
        );
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
        assert_eq!(p, &previews[0], "the preview in {n:?}");
    }
    for n in splits {
        run(n, &["--force"]);
    }
    let mut listed = 0;
    for c in CAMPAIGNS {
        let exports: Vec<Export> = splits
            .iter()
            .map(|n| {
                let runs = run_folders(&folder(n), c, NIGHT);
                assert_eq!(runs.len(), 1, "{c} in {n:?}: {runs:?}");
                read_export(&runs[0])
            })
            .collect();
        assert!(!exports[0].ids.is_empty(), "{c}: nobody listed");
        listed += exports[0].ids.len();
        for (n, e) in splits.iter().zip(&exports).skip(1) {
            assert_eq!(e.ids, exports[0].ids, "{c}: the list in {n:?}");
            assert_eq!(e.part_hashes, exports[0].part_hashes, "{c}: parts in {n:?}");
        }
    }
    assert!(
        listed > 500,
        "{listed} users listed: too few to prove anything"
    );
    demo
}

/// Also the scorers: LightGBM's predict and the native scorer publish the same lists.
#[test]
fn n_shards_and_either_scorer_publish_what_one_does_on_sqlite() {
    identical_whatever_the_split(
        &TestEnv::sqlite("shards"),
        &[],
        &[
            ("1", "native"),
            ("3", "native"),
            ("8", "native"),
            ("1", "lightgbm"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn n_shards_publish_what_one_does_on_postgres() {
    let world = TestEnv::postgres("shards-pg").await;
    // The demo's ~12k exposures are above this cap: training reads a sample of the users,
    // through the sample's queries on PostgreSQL.
    let cap = [("TARGETING__MODELS__MAX_TRAINING_EXPOSURES", "10000")];
    let demo = tokio::task::block_in_place(|| {
        identical_whatever_the_split(&world, &cap, &[("1", "native"), ("4", "native")])
    });
    let log = stderr(&demo);
    assert!(
        log.contains("training reads a sample of the users") && log.contains("sample=0 of "),
        "{log}"
    );
}

/// Scale-out: `score-shard` processes, each told its shard by `JOB_COMPLETION_INDEX` as a
/// Kubernetes Indexed Job tells its pods, write their outputs to S3; `run --from-shards N` then
/// publishes the night — the same lists and funnels as one run scoring every user. A missing,
/// incomplete, mismatched or foreign shard output stops it with one line naming the shard, and
/// nothing is published; a retried shard job replaces its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_jobs_on_s3_and_postgres_publish_what_one_run_does() {
    let world = TestEnv::postgres("shard-jobs").await;
    let client = s3::default_client();
    let bucket = &format!("targeting-shards-{}", std::process::id());
    s3::create_bucket(&client, bucket).await;
    let night = format!("s3://{bucket}/night");
    let models = world.dir.join("models").display().to_string();
    let env = [("TARGETING__MODELS__STORE", models.as_str())];
    let db = world.db.clone();
    let base = |command: &str, exports: &str| job_args(command, DATE, &db, exports, "1");
    let with = |mut args: Vec<String>, extra: &[&str]| {
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let shard_jobs = |indices: &[u32]| {
        let jobs: Vec<_> = indices
            .iter()
            .map(|i| {
                let index = i.to_string();
                let mut env = env.to_vec();
                env.push(("JOB_COMPLETION_INDEX", index.as_str()));
                targeting_command(&with(base("score-shard", &night), &["--of", "3"]), &env)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for job in jobs {
            assert_ok(&job.wait_with_output().unwrap());
        }
    };
    let merge = |extra: &[&str]| targeting_env(&with(base("run", &night), extra), &env);
    let published = || async {
        let mut folders = 0;
        for c in CAMPAIGNS {
            folders += s3::run_prefixes(&client, bucket, "night", c, DATE)
                .await
                .len();
        }
        folders
    };

    tokio::task::block_in_place(|| {
        assert_ok(&world.demo("5000", &[]));
        shard_jobs(&[0, 1, 2]);
    });
    let shard = |i: u32| format!("night/_shards/dt={DATE}/of=3/shard={i:04}/");
    let files = |i: u32| {
        let client = client.clone();
        async move {
            s3::list(&client, bucket, &shard(i))
                .await
                .into_iter()
                .map(|o| o.key)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(files(1).await.len(), 2, "{:?}", files(1).await);

    // A missing shard.
    let manifest = |i: u32| format!("{}manifest.json", shard(i));
    let kept = s3::get(&client, bucket, &manifest(1)).await;
    client
        .delete_object()
        .bucket(bucket)
        .key(manifest(1))
        .send()
        .await
        .unwrap();
    let out = tokio::task::block_in_place(|| merge(&["--from-shards", "3", "--force"]));
    assert_one_line_error(&out, &[&format!("shard 1 of 3 for {DATE} is missing")]);
    // An incomplete one: its file is not what its manifest says.
    put(&client, bucket, &manifest(1), kept).await;
    let data = files(2)
        .await
        .into_iter()
        .find(|k| k.contains("rankings-"))
        .unwrap();
    put(&client, bucket, &data, b"half a file".to_vec()).await;
    let out = tokio::task::block_in_place(|| merge(&["--from-shards", "3", "--force"]));
    assert_one_line_error(&out, &[&format!("shard 2 of 3 for {DATE} is incomplete")]);
    // Scored with other models.
    let m0 = s3::get(&client, bucket, &manifest(0)).await;
    let other = String::from_utf8(m0.clone()).unwrap().replacen(
        "\"conversion_uplift\": \"",
        "\"conversion_uplift\": \"older-",
        1,
    );
    put(&client, bucket, &manifest(0), other.into_bytes()).await;
    let out = tokio::task::block_in_place(|| merge(&["--from-shards", "3", "--force"]));
    assert_one_line_error(
        &out,
        &[&format!("shard 1 of 3 for {DATE} was scored with models")],
    );
    // Another night, another split: their shards are not there.
    let out = tokio::task::block_in_place(|| merge(&["--from-shards", "4", "--force"]));
    assert_one_line_error(&out, &[&format!("shard 0 of 4 for {DATE} is missing")]);
    assert_eq!(published().await, 0, "a refused merge published something");

    // The faulty shards' jobs run again: each replaces its own output.
    tokio::task::block_in_place(|| shard_jobs(&[0, 2]));
    let now = files(2).await;
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(
        !now.contains(&data),
        "the retried shard left its first attempt: {now:?}"
    );

    // The night from the shards is the night one run scores itself.
    let one = format!("file://{}", world.dir.join("one").display());
    let (preview_shards, preview_one) = tokio::task::block_in_place(|| {
        let a = merge(&["--from-shards", "3", "--dry-run"]);
        let b = targeting_env(
            &with(base("run", &one), &["--shards", "1", "--dry-run"]),
            &env,
        );
        assert_ok(&a);
        assert_ok(&b);
        assert_ok(&merge(&["--from-shards", "3", "--force"]));
        assert_ok(&targeting_env(
            &with(base("run", &one), &["--shards", "1", "--force"]),
            &env,
        ));
        (a.stdout, b.stdout)
    });
    assert_eq!(
        String::from_utf8(preview_shards).unwrap(),
        String::from_utf8(preview_one).unwrap()
    );
    let mut listed = 0;
    for c in CAMPAIGNS {
        let runs = s3::run_prefixes(&client, bucket, "night", c, DATE).await;
        assert_eq!(runs.len(), 1, "{c}: {runs:?}");
        let from_shards = s3::read_s3_export(&client, bucket, &runs[0]).await;
        let folders = run_folders(&world.dir.join("one"), c, DATE);
        let scored = read_export(&folders[0]);
        assert_eq!(from_shards.ids, scored.ids, "{c}: the list from the shards");
        assert_eq!(
            from_shards.part_hashes, scored.part_hashes,
            "{c}: its parts"
        );
        listed += scored.ids.len();
    }
    assert!(
        listed > 1000,
        "{listed} users listed: too few to prove anything"
    );
}

async fn put(client: &aws_sdk_s3::Client, bucket: &str, key: &str, bytes: Vec<u8>) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
}

#[test]
fn a_shard_job_without_a_valid_shard_says_so() {
    let args = ["score-shard", "--of", "3", "--date", DATE];
    let out = targeting(&args);
    assert_one_line_error(
        &out,
        &["score-shard needs --shard I, or JOB_COMPLETION_INDEX"],
    );
    let out = targeting_env(&args, &[("JOB_COMPLETION_INDEX", "x")]);
    assert_one_line_error(&out, &["JOB_COMPLETION_INDEX=\"x\" is not a shard index"]);
    let out = targeting_env(&args, &[("AWS_BATCH_JOB_ARRAY_INDEX", "3")]);
    assert_one_line_error(&out, &["shard 3 of 3 does not exist"]);
}

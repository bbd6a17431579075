//! `targeting demo` end to end, on SQLite and on PostgreSQL: the export layout, manifests that
//! match their parts, consent and suppressions, holdout shares, the ledger and assignments, the
//! model's Qini, and identical rows on a re-run for the same date.

use std::collections::{BTreeMap, HashSet};

use crate::common::*;

const USERS: &str = "30000";

/// Runs the demo twice for the same date and checks everything the foundation promises.
async fn check_demo(env: &TestEnv) {
    let (dir, db_url) = (&env.dir, env.db.as_str());
    let args = env.demo_args(USERS);
    let first = targeting(&args);
    assert_ok(&first);
    let table = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(table.contains("Qini AUC"), "{table}");
    let second = targeting(&args);
    assert_ok(&second);

    // The model ranks by the purchases a message causes: clearly above random (0), and
    // reported next to the oracle.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let qini = summary["model"]["qini_auc"].as_f64().unwrap();
    let oracle = summary["model"]["oracle_qini_auc"].as_f64().unwrap();
    assert!(qini > 0.1, "model Qini {qini} (oracle {oracle})");
    assert!(oracle > qini * 0.9, "oracle {oracle} vs model {qini}");
    let ci = summary["model"]["qini_auc_ci95"].as_array().unwrap();
    assert!(
        ci[0].as_f64().unwrap() <= qini && qini <= ci[1].as_f64().unwrap(),
        "{ci:?}"
    );
    // The discount-sensitivity model picks out the true deal hunters clearly better than chance.
    let truth_auc = summary["model"]["discount_sensitivity_truth_auc"]
        .as_f64()
        .unwrap();
    assert!(
        truth_auc > 0.7,
        "discount sensitivity AUC against the truth: {truth_auc}"
    );

    // The gift recipient model puts first the friend who received the gift more often than
    // the most recent or the most active friend does, on held-out senders' gifts.
    let gifts = &summary["gift_recipients"];
    let share = |k: &str| gifts[k].as_f64().unwrap();
    assert!(
        gifts["gifts"].as_u64().unwrap() >= 200
            && share("model") > share("most_recent_friend").max(share("most_active_friend")),
        "{gifts}"
    );

    let forbidden = forbidden_users(db_url).await;
    assert!(
        !forbidden.is_empty(),
        "the demo has users without consent and suppressed ones"
    );
    let holdouts = configured_holdouts();
    let ledger = ledger(db_url).await;
    let exports = env.exports();
    assert_eq!(holdouts.len(), 5);
    for (campaign, share) in &holdouts {
        let runs = run_folders(&exports, campaign, DATE);
        assert_eq!(runs.len(), 2, "{campaign}: one folder per run");
        let a = read_export(&runs[0]);
        let b = read_export(&runs[1]);
        // The day's pointer names the last complete run, the one to import.
        let latest = std::fs::read_to_string(runs[1].parent().unwrap().join("latest")).unwrap();
        assert_eq!(
            latest.trim(),
            runs[1].file_name().unwrap().to_string_lossy(),
            "{campaign}"
        );
        assert_eq!(
            a.part_hashes, b.part_hashes,
            "{campaign}: re-run gives the same rows"
        );
        // The gift campaign reaches only the users who gifted last year, a few percent.
        let least = if campaign == "gift-a-friend" {
            100
        } else {
            500
        };
        assert!(a.ids.len() > least, "{campaign}: {} rows", a.ids.len());
        assert!(
            a.ids.iter().all(|u| !forbidden.contains(u)),
            "{campaign}: a suppressed or non-consenting user is in the list"
        );
        let held = a.manifest["holdout_count"].as_u64().unwrap() as f64;
        let members = held + a.ids.len() as f64;
        let observed = held / members;
        // A salted hash draws each member's arm: within four binomial standard deviations
        // (about ±0.018 at 4,700 members), so a bias fails and a fair draw does not.
        let sd = (share * (1.0 - share) / members).sqrt();
        assert!(
            (observed - share).abs() <= 4.0 * sd,
            "{campaign}: holdout share {observed} vs configured {share} (sd {sd})"
        );
        for export in [&a, &b] {
            let run_id = export.manifest["run_id"].as_str().unwrap();
            let row = ledger
                .iter()
                .find(|r| {
                    &r.campaign_id == campaign
                        && r.export_uri
                            .as_deref()
                            .is_some_and(|u| u.ends_with(&format!("run={run_id}")))
                })
                .unwrap_or_else(|| panic!("{campaign}: no ledger row for run {run_id}"));
            assert_eq!(row.status, "succeeded");
            assert_eq!(row.audience_size, Some(export.ids.len() as i64));
            assert_eq!(row.holdout_size, Some(held as i64));
            let treated = assigned(db_url, run_id, campaign, "treatment").await;
            let exported: std::collections::HashSet<i64> = export.ids.iter().copied().collect();
            assert_eq!(treated, exported, "{campaign}: assignments match the list");
            let held_out = assigned(db_url, run_id, campaign, "holdout").await;
            assert_eq!(held_out.len(), held as usize);
            assert!(held_out.is_disjoint(&exported));
        }
    }
    assert_eq!(ledger.len(), 10, "two runs of five campaigns");

    // A dry run for the same night previews exactly what was published, and leaves no trace.
    let models = dir.join("models").display().to_string();
    let exports_uri = format!("file://{}", exports.display());
    let dry_run = || {
        targeting_env(
            &[
                job_args("run", DATE, db_url, &exports_uri, "2"),
                vec!["--dry-run".into()],
            ]
            .concat(),
            &[("TARGETING__MODELS__STORE", models.as_str())],
        )
    };
    let preview = dry_run();
    assert_ok(&preview);
    let text = String::from_utf8_lossy(&preview.stdout).into_owned();
    assert!(
        text.contains("nothing published; the forecast is recorded, marked as a dry run"),
        "{text}"
    );
    // Numbers for people: separators, each step's share of the one before, the limit that
    // bound each audience, the budget in money, what the holdout can detect.
    for expected in [
        "     30,000           users",
        "%  consented",
        "(limited by ",
        "of the budget 25,000 (",
        "the holdout detects a lift of",
        // What a campaign takes from the others: the night arbitrated without it.
        "takes tonight, in users the other campaigns would message without it: ",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    // Per campaign: (messaged, held out), the model's choice and the random exploration added.
    let mut previewed: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut campaign = String::new();
    for line in text.lines() {
        if let Some((id, _)) = line.split_once(" (") {
            if !line.starts_with(' ') {
                campaign = id.to_string();
            }
        }
        let counts = line
            .trim()
            .strip_prefix("audience ")
            .or_else(|| line.trim().strip_prefix("explore: "));
        if let Some(rest) = counts {
            let rest = rest.replace(',', "");
            let mut numbers = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty());
            let mut next = || numbers.next().unwrap().parse::<u64>().unwrap();
            let (messaged, held) = (next(), next());
            let sum = previewed.entry(campaign.clone()).or_default();
            sum.0 += messaged;
            sum.1 += held;
        }
    }
    assert_eq!(previewed.len(), 5, "{text}");
    for (campaign, (messaged, held)) in &previewed {
        let published = read_export(&run_folders(&exports, campaign, DATE)[0]);
        assert_eq!(*messaged, published.ids.len() as u64, "{campaign}: {text}");
        assert_eq!(
            Some(*held),
            published.manifest["holdout_count"].as_u64(),
            "{campaign}"
        );
    }
    assert_eq!(
        crate::common::ledger(db_url).await.len(),
        10,
        "a dry run records no run"
    );
    // Every run recorded its forecasts, the dry run too, marked as such.
    let pool = pool(db_url).await;
    let forecasts: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT CASE WHEN dry_run THEN 1 ELSE 0 END AS d, COUNT(*) FROM targeting_forecasts \
         GROUP BY d ORDER BY d",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(forecasts, vec![(0, 10), (1, 5)]);
    check_report(env, &summary, &exports).await;
    for campaign in holdouts.keys() {
        assert_eq!(run_folders(&exports, campaign, DATE).len(), 2, "{campaign}");
    }
    let deal = read_export(&run_folders(&exports, "weekly-deal", DATE)[0]);
    check_discount_levels(&summary, &deal);
    check_deal_items(db_url, &summary, &deal).await;
    let gift = read_export(&run_folders(&exports, "gift-a-friend", DATE)[0]);
    check_gift_recipients(db_url, &gift, &forbidden).await;
    // The manifest says what `score` means for a weekly deal under a budget.
    assert!(
        deal.manifest["score_meaning"]
            .as_str()
            .unwrap()
            .contains("per unit of expected discount"),
        "{}",
        deal.manifest
    );
    let manifest = deal.manifest;
    let versions = manifest["model_versions"].as_object().unwrap();
    assert!(
        versions.contains_key("conversion_uplift") && versions.contains_key("discount_sensitivity")
    );

    // The engagement feed stops arriving: every engagement feature drops to nothing, tonight's
    // users no longer look like those the models were trained for, and a preview says so.
    sqlx::query("DELETE FROM engagement_daily")
        .execute(&pool)
        .await
        .unwrap();
    let preview = dry_run();
    assert_ok(&preview);
    let text = String::from_utf8_lossy(&preview.stdout);
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARNING, moved since training"))
        .collect();
    assert_eq!(warned.len(), 3, "every model warns: {text}");
    assert!(
        warned.iter().all(|l| l.contains("sessions_90d")),
        "{warned:?}"
    );
}

/// A campaign's figures in `summary.json`.
fn campaign_summary<'a>(summary: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    summary["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["campaign_id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {summary}"))
}

/// What the demo's source says users held before the night, of a list of items.
struct Held {
    /// The night's cutoff, UTC Unix seconds.
    cutoff: i64,
    /// The items of the list.
    listed: HashSet<i64>,
    /// (user, item) bought for themselves or received as a gift, and wishlisted.
    owned: HashSet<(i64, i64)>,
    wished: HashSet<(i64, i64)>,
}

impl Held {
    /// The holdings before the night, and the items meeting `condition` (SQL on `items`,
    /// where `{cutoff}` stands for the cutoff).
    async fn read(db_url: &str, condition: &str) -> Held {
        let pool = pool(db_url).await;
        let cutoff = chrono::NaiveDate::parse_from_str(DATE, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp();
        // Numbers written into the SQL: one text for SQLite and PostgreSQL alike.
        let pairs = |sql: String| {
            let pool = pool.clone();
            async move {
                let rows: Vec<(i64, i64)> = sqlx::query_as(&sql).fetch_all(&pool).await.unwrap();
                rows.into_iter().collect::<HashSet<(i64, i64)>>()
            }
        };
        let condition = condition.replace("{cutoff}", &cutoff.to_string());
        let listed =
            sqlx::query_as::<_, (i64,)>(&format!("SELECT item_id FROM items WHERE {condition}"))
                .fetch_all(&pool)
                .await
                .unwrap()
                .into_iter()
                .map(|(i,)| i)
                .collect();
        let owned = pairs(format!(
            "SELECT CASE WHEN is_gift THEN recipient_user_id ELSE user_id END, item_id \
             FROM purchases WHERE purchased_at < {cutoff} \
             AND (NOT is_gift OR recipient_user_id IS NOT NULL)"
        ))
        .await;
        let wished = pairs(format!(
            "SELECT user_id, item_id FROM wishlist WHERE added_at < {cutoff}"
        ))
        .await;
        Held {
            cutoff,
            listed,
            owned,
            wished,
        }
    }

    /// Checks that each of `holders` (the users shown an item, or the friends given one;
    /// `who` names them) got an item of the list they do not own, one they wishlisted when
    /// they wishlisted any they do not own. Returns how many got one of their wishlist, and
    /// the items given.
    fn check_wanted(&self, holders: &[i64], items: &[i64], who: &str) -> (usize, HashSet<i64>) {
        assert_eq!(items.len(), holders.len());
        let (mut from_wishlist, mut shown) = (0, HashSet::new());
        for (&user, &item) in holders.iter().zip(items) {
            assert!(
                self.listed.contains(&item),
                "{who} {user} given item {item}"
            );
            assert!(
                !self.owned.contains(&(user, item)),
                "{who} {user} owns item {item}"
            );
            let wants = self
                .listed
                .iter()
                .any(|&i| self.wished.contains(&(user, i)) && !self.owned.contains(&(user, i)));
            if wants {
                assert!(
                    self.wished.contains(&(user, item)),
                    "{who} {user} wishlisted a listed item and was given {item}"
                );
                from_wishlist += 1;
            }
            shown.insert(item);
        }
        (from_wishlist, shown)
    }
}

/// Every user of the gift campaign is suggested a friend of theirs before the night, never
/// themselves, never a user who has not consented or is suppressed; and several friends are
/// suggested, not one for everyone. The item suggested is one of the campaign's games and
/// expansions the friend does not own, one on the friend's wishlist when there is one.
async fn check_gift_recipients(db_url: &str, gift: &Export, forbidden: &HashSet<i64>) {
    let held = Held::read(db_url, "category IN ('game', 'dlc')").await;
    let friends: HashSet<(i64, i64)> = sqlx::query_as::<_, (i64, i64)>(&format!(
        "SELECT user_id, friend_id FROM friendships WHERE since < {}",
        held.cutoff
    ))
    .fetch_all(&pool(db_url).await)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(gift.recipient.len(), gift.ids.len());
    let (from_wishlist, _) = held.check_wanted(&gift.recipient, &gift.item_id, "friend");
    assert!(from_wishlist > 0, "no gift from a friend's wishlist");
    let mut suggested = HashSet::new();
    for (&user, &friend) in gift.ids.iter().zip(&gift.recipient) {
        assert!(user != friend, "user {user} suggested to themselves");
        assert!(
            friends.contains(&(user, friend)),
            "user {user} suggested {friend}, not a friend before the night"
        );
        assert!(
            !forbidden.contains(&friend),
            "user {user} suggested {friend}, who has not consented or is suppressed"
        );
        suggested.insert(friend);
    }
    assert!(
        suggested.len() * 2 > gift.ids.len(),
        "{} friends suggested to {} users",
        suggested.len(),
        gift.ids.len()
    );
}

/// The weekly deal is about the catalogue's games and expansions (not those of the last 30
/// days): every exported user is shown one of them, never one they own, and one on their
/// wishlist when they wishlisted any they do not own. Checked against the source's rows.
async fn check_deal_items(db_url: &str, summary: &serde_json::Value, deal: &Export) {
    let held = Held::read(
        db_url,
        "category IN ('game', 'dlc') AND released_at < {cutoff} - 2592000",
    )
    .await;
    assert_eq!(held.listed.len(), 24, "the demo's games and expansions");
    let (from_wishlist, shown) = held.check_wanted(&deal.ids, &deal.item_id, "user");
    assert!(
        from_wishlist > 0 && shown.len() >= 5,
        "{from_wishlist} from wishlists, {} items shown",
        shown.len()
    );
    // The summary counts the items the model's choice was shown (exploration aside).
    let c = campaign_summary(summary, "weekly-deal");
    let counted: u64 = c["item_mix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[1].as_u64().unwrap())
        .sum();
    assert_eq!(counted, c["audience"].as_u64().unwrap());
}

/// The weekly deal offers 10, 20 or 30 %: each exported user carries the level chosen for them,
/// the summary counts them, and the demo values them against each level alone by the truth.
fn check_discount_levels(summary: &serde_json::Value, deal: &Export) {
    assert_eq!(deal.discount_pct.len(), deal.ids.len());
    let mut used: Vec<i64> = deal.discount_pct.clone();
    used.sort_unstable();
    used.dedup();
    assert!(
        used.len() >= 2 && used.iter().all(|l| [10, 20, 30].contains(l)),
        "levels used: {used:?}"
    );
    let c = campaign_summary(summary, "weekly-deal");
    let mix: Vec<(f64, u64)> = c["discount_mix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m[0].as_f64().unwrap(), m[1].as_u64().unwrap()))
        .collect();
    // The mix counts the model's choice; the export adds its random exploration.
    let counted: u64 = mix.iter().map(|(_, n)| n).sum();
    assert_eq!(counted, c["audience"].as_u64().unwrap(), "{mix:?}");
    let truth = &c["levels_against_truth"];
    let single = truth["single"].as_array().unwrap();
    assert_eq!(single.len(), 3, "{truth}");
    let best = single
        .iter()
        .map(|v| v["true_profit"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let per_user = truth["per_user"]["true_profit"].as_f64().unwrap();
    assert!(
        per_user > best,
        "per-user levels {per_user} against the best single level {best}"
    );
    let gain = truth["gain_over_best_single"].as_f64().unwrap();
    assert!((gain - (per_user / best - 1.0)).abs() < 1e-9, "{gain}");
}

/// `targeting report` on the demo's simulated days: the arms are the published lists and
/// their holdouts, each campaign's interval covers the true incremental conversions of
/// `summary.json`, and the forecast recorded by the run is beside it.
async fn check_report(env: &TestEnv, summary: &serde_json::Value, exports: &std::path::Path) {
    let page = env.dir.join("report.html");
    let out = targeting(&[
        "report",
        "--json",
        "--html",
        page.to_str().unwrap(),
        "--from",
        DATE,
        "--to",
        DATE,
        "--as-of",
        "2026-12-04",
        "--database-url",
        env.db.as_str(),
    ]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let campaigns = report["campaigns"].as_array().unwrap();
    assert_eq!(campaigns.len(), 5, "{report}");
    for c in campaigns {
        let id = c["campaign_id"].as_str().unwrap();
        assert_eq!(c["complete"], true, "{id}");
        let published = read_export(&run_folders(exports, id, DATE)[1]);
        assert_eq!(
            c["run_id"].as_str(),
            published.manifest["run_id"].as_str(),
            "{id}: the report reads the night's last run"
        );
        // The published list is the model's choice and, with `explore`, the random one.
        let users = |arms: &serde_json::Value, arm: &str| arms[arm]["users"].as_u64().unwrap();
        let random = &c["model_vs_random"]["arms"];
        let (explored, explored_held) = if random.is_null() {
            (0, 0)
        } else {
            (users(random, "treatment"), users(random, "holdout"))
        };
        assert_eq!(
            explored,
            published.manifest["explore_count"].as_u64().unwrap(),
            "{id}"
        );
        let arms = &c["arms"];
        assert_eq!(
            users(arms, "treatment") + explored,
            published.ids.len() as u64
        );
        assert_eq!(
            Some(users(arms, "holdout") + explored_held),
            published.manifest["holdout_count"].as_u64()
        );
        let truth = campaign_summary(summary, id)["true_incremental_conversions"]
            .as_f64()
            .unwrap();
        let i = &c["incremental_conversions"];
        let (low, high) = (i["low"].as_f64().unwrap(), i["high"].as_f64().unwrap());
        assert!(
            low <= truth && truth <= high,
            "{id}: true incremental conversions {truth} outside [{low}, {high}]"
        );
        // A lift told from zero, except for the gift campaign: its holdout of a few dozen
        // users cannot (its report says so).
        assert!(low > 0.0 || id == "gift-a-friend", "{id}: [{low}, {high}]");
        // The model against what happened: its Qini on these users, and ten deciles of its
        // prediction with the observed lift beside each.
        let model = &c["model"];
        assert!(
            model["realized_qini_auc"].as_f64().unwrap().is_finite(),
            "{id}: {model}"
        );
        let deciles = model["by_decile"].as_array().unwrap();
        assert_eq!(deciles.len(), 10, "{id}: {model}");
        assert!(
            deciles[0]["predicted"].as_f64() >= deciles[9]["predicted"].as_f64(),
            "{id}: {model}"
        );
        let forecast = c["forecast"]["incremental_conversions"].as_f64().unwrap();
        assert!(forecast > 0.0, "{id}: forecast {forecast}");
        for money in [
            "incremental_revenue",
            "incremental_profit",
            "incremental_discount",
        ] {
            let m = &c[money];
            assert!(
                m["low"].as_f64() <= m["estimate"].as_f64()
                    && m["estimate"].as_f64() <= m["high"].as_f64(),
                "{id}: {money} {m}"
            );
        }
    }
    let global = &report["global_control"];
    assert!(
        global["incremental_conversions"]["low"].as_f64().unwrap() > 0.0,
        "{global}"
    );
    check_drift(&report["drift"]);
    check_html(env, &page, &report);
    // A day without outcomes yet is partial, and the table says so.
    let out = targeting(&[
        "report",
        "--from",
        DATE,
        "--as-of",
        "2026-11-23",
        "--database-url",
        env.db.as_str(),
    ]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("partial: the attribution window is open until 2026-11-27"),
        "{text}"
    );
}

/// The night's drift, as the report reads it from the ledger: every model, its score and every
/// feature, counted on an eighth of the users.
fn check_drift(drift: &serde_json::Value) {
    let models = drift["models"]
        .as_array()
        .expect("the report has the night's drift");
    let names: Vec<&str> = models
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "conversion_uplift",
            "discount_sensitivity",
            "discount_uplift"
        ],
        "{drift}"
    );
    let users: f64 = USERS.parse().unwrap();
    for m in models {
        let sampled = m["sampled"].as_f64().unwrap();
        assert!(
            (users / 8.0 * 0.85..users / 8.0 * 1.15).contains(&sampled),
            "{sampled} of {users} users sampled: {m}"
        );
        let shifts = m["shifts"].as_array().unwrap();
        assert!(shifts.len() > 20, "the score and every feature: {m}");
        // The models score the population they were trained on: the scores are stable.
        let score = shifts
            .iter()
            .find(|s| ["uplift", "discount_sensitivity"].contains(&s["name"].as_str().unwrap()))
            .unwrap();
        let psi = score["psi"].as_f64().unwrap();
        assert!((0.0..0.25).contains(&psi), "{score}");
    }
}

/// The page `targeting report --html` wrote, rendered in a real browser: every chart present,
/// drawn, and with a mark for every figure the JSON report (of the same call) holds.
fn check_html(env: &TestEnv, page: &std::path::Path, report: &serde_json::Value) {
    let dom = browser::render(page, &env.dir.join("report.png"), 6000);
    assert!(dom.contains("Did it work?"), "{dom}");
    let campaigns = report["campaigns"].as_array().unwrap().len();
    let drift_models = report["drift"]["models"].as_array().unwrap().len();
    // The shipped winter sale explores: its model against random, three intervals.
    let explored = report["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["model_vs_random"]["difference"].is_null())
        .count();
    assert_eq!(explored, 1, "{report}");
    // (chart, how many, the fewest data marks each must hold)
    let expected = [
        ("lift", 1, campaigns),
        ("forecast", 1, 2 * campaigns),
        ("qini", campaigns, 10),
        ("deciles", campaigns, 20),
        ("drift", drift_models, 10),
        ("explore", explored, 3),
    ];
    let charts: Vec<&str> = dom
        .split("<figure class=\"chart\" data-chart=\"")
        .skip(1)
        .collect();
    for (kind, count, marks) in expected {
        let found: Vec<&&str> = charts
            .iter()
            .filter(|c| c.starts_with(&format!("{kind}\"")))
            .collect();
        assert_eq!(found.len(), count, "{kind} charts in the page");
        for chart in found {
            let chart = &chart[..chart.find("</figure>").unwrap()];
            assert!(chart.contains("<svg"), "{kind}: no SVG");
            let drawn = chart.matches("<circle").count();
            assert!(
                drawn >= marks,
                "{kind}: {drawn} marks, at least {marks} expected"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_on_sqlite() {
    check_demo(&TestEnv::sqlite("demo-sqlite")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_on_postgres() {
    check_demo(&TestEnv::postgres("demo-postgres").await).await;
}

/// For a log collector: with `--log-format json` every line on stderr is one JSON object, and
/// every span's end says, as numbers, how long it ran and waited, with its parents.
#[test]
fn json_logs_give_each_span_end_with_numeric_durations() {
    let env = TestEnv::sqlite("demo-json-logs");
    let mut args = env.demo_args("2000");
    args.extend(["--log-format".to_string(), "json".to_string()]);
    let out = targeting(&args);
    assert_ok(&out);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let ends: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "close").collect();
    for stage in [
        "train", "score", "rank", "select", "publish", "record", "run",
    ] {
        let of: Vec<_> = ends.iter().filter(|l| l["span"]["name"] == stage).collect();
        assert!(!of.is_empty(), "no end of {stage}");
        for l in of {
            let (busy, idle) = (l["busy_secs"].as_f64(), l["idle_secs"].as_f64());
            assert!(
                busy.is_some_and(|b| b >= 0.0) && idle.is_some_and(|i| i >= 0.0),
                "{l}"
            );
        }
    }
    // A campaign's publish names its campaign among its parents, and its own fields.
    let publish = ends
        .iter()
        .find(|l| l["span"]["name"] == "publish")
        .unwrap();
    assert!(
        publish["spans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "campaign" && s["campaign"].is_string()),
        "{publish}"
    );
    // The training of the conversion model takes a measurable time.
    let train = ends
        .iter()
        .find(|l| l["span"]["name"] == "train" && l["span"]["model"] == "conversion_uplift")
        .unwrap();
    assert!(train["busy_secs"].as_f64().unwrap() > 0.001, "{train}");
}

//! Feature tests: every feature on a small generated history, computed as of each cutoff.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::DAY;

const USERS: i64 = 6;
const T0: i64 = 1_700_000_000;

/// A small random source; every event time lies within 200 days after `T0`.
fn random_source(rng: &mut ChaCha8Rng) -> SourceTables {
    let mut t = || T0 + rng.random_range(0..200 * DAY);
    let users: Vec<i64> = (1..=USERS).collect();
    let n = 40;
    let (mut pu, mut pt, mut pl, mut pp, mut pg, mut pr) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut rng2 = ChaCha8Rng::seed_from_u64(T0 as u64);
    for _ in 0..n {
        pu.push(rng2.random_range(1..=USERS));
        pt.push(t());
        pl.push(1000i64);
        // A few amounts and gift flags are missing, which the features count as nothing.
        let paid = if rng2.random_bool(0.4) { 700i64 } else { 1000 };
        pp.push((!rng2.random_bool(0.1)).then_some(paid));
        pg.push((!rng2.random_bool(0.1)).then(|| i64::from(rng2.random_bool(0.2))));
        pr.push(rng2.random_bool(0.2).then(|| rng2.random_range(1..=USERS)));
    }
    let days: Vec<i64> = (0..n).map(|_| (t() / DAY) * DAY).collect();
    let eng_users: Vec<i64> = (0..n).map(|i| (i as i64 % USERS) + 1).collect();
    // A day's counts differ by column, and a few are missing.
    let mut daily = |most: i64| -> Vec<Option<i64>> {
        (0..n)
            .map(|_| (!rng2.random_bool(0.1)).then(|| rng2.random_range(0..=most)))
            .collect()
    };
    let sessions = daily(4);
    let wish_t: Vec<i64> = (0..n).map(|_| t()).collect();
    let friend_since: Vec<i64> = (0..n).map(|_| t()).collect();
    let exp_t: Vec<i64> = (0..n).map(|_| t()).collect();
    SourceTables {
        users: df! {
            "user_id" => &users,
            "created_at" => vec![T0; USERS as usize],
            "country" => vec!["US"; USERS as usize],
            "platform" => vec!["pc"; USERS as usize],
            "has_email" => vec![1i64; USERS as usize],
            "marketing_opt_in" => vec![1i64; USERS as usize],
        }
        .unwrap(),
        suppressions: df! { "user_id" => Vec::<i64>::new(), "reason" => Vec::<String>::new(), "created_at" => Vec::<i64>::new() }.unwrap(),
        items: df! {
            "item_id" => [1i64], "title" => ["x"], "kind" => ["1p"], "publisher_id" => [1i64],
            "game_id" => [1i64], "category" => ["game"], "list_price_cents" => [1000i64], "released_at" => [T0],
        }
        .unwrap(),
        purchases: df! {
            "order_id" => (0..n as i64).collect::<Vec<_>>(), "user_id" => pu, "item_id" => vec![1i64; n],
            "purchased_at" => pt, "list_price_cents" => pl, "paid_cents" => pp, "is_gift" => pg,
            "recipient_user_id" => pr,
        }
        .unwrap(),
        engagement_daily: df! {
            "user_id" => eng_users.clone(), "day" => days, "sessions" => sessions,
            "shop_views" => daily(7), "wishlist_adds" => daily(2), "cart_adds" => daily(3),
        }
        .unwrap(),
        wishlist: df! { "user_id" => eng_users.clone(), "item_id" => vec![1i64; n], "added_at" => wish_t }.unwrap(),
        friendships: df! {
            "user_id" => eng_users.clone(),
            "friend_id" => eng_users.iter().map(|u| u % USERS + 1).collect::<Vec<_>>(),
            "since" => friend_since,
        }
        .unwrap(),
        campaign_exposures: df! {
            "campaign_id" => vec!["c"; n], "user_id" => eng_users, "assigned_at" => exp_t,
            "arm" => (0..n).map(|i| if i % 2 == 0 { "treatment" } else { "control" }).collect::<Vec<_>>(),
            "discount_pct" => vec![0.0; n],
        }
        .unwrap(),
        friend_signals: None,
    }
}

/// Moves every event of `table` at or after `cutoff` (whole days for daily rows) by a
/// random amount further into the future, or drops it.
fn scramble_after(
    frame: &DataFrame,
    time: &str,
    cutoff: i64,
    daily: bool,
    rng: &mut ChaCha8Rng,
) -> DataFrame {
    let times: Vec<i64> = frame
        .column(time)
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(Option::unwrap)
        .collect();
    let visible = |t: i64| if daily { t + DAY <= cutoff } else { t < cutoff };
    let keep: Vec<bool> = times
        .iter()
        .map(|&t| visible(t) || rng.random_bool(0.5))
        .collect();
    let moved: Vec<i64> = times
        .iter()
        .map(|&t| {
            if visible(t) {
                t
            } else {
                t + rng.random_range(0..50) * DAY
            }
        })
        .collect();
    let mut out = frame.clone();
    out.with_column(Column::new(time.into(), moved)).unwrap();
    out.filter(&BooleanChunked::from_slice("keep".into(), &keep))
        .unwrap()
}

#[test]
fn events_at_or_after_the_cutoff_never_change_a_rows_features() {
    for seed in 0..20u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let src = random_source(&mut rng);
        let levels = CategoricalLevels::from_users(&src.users).unwrap();
        let cutoff = T0 + rng.random_range(20..180) * DAY + rng.random_range(0..DAY);
        let cutoffs = df! {
            "row_id" => (0..USERS).collect::<Vec<_>>(),
            "user_id" => (1..=USERS).collect::<Vec<_>>(),
            "cutoff" => vec![cutoff; USERS as usize],
        }
        .unwrap();
        let before = featurize(&src, &cutoffs, &levels, 2).unwrap();
        let mut moved = src.clone();
        moved.purchases = scramble_after(&src.purchases, "purchased_at", cutoff, false, &mut rng);
        moved.engagement_daily =
            scramble_after(&src.engagement_daily, "day", cutoff, true, &mut rng);
        moved.wishlist = scramble_after(&src.wishlist, "added_at", cutoff, false, &mut rng);
        moved.friendships = scramble_after(&src.friendships, "since", cutoff, false, &mut rng);
        moved.campaign_exposures = scramble_after(
            &src.campaign_exposures,
            "assigned_at",
            cutoff,
            false,
            &mut rng,
        );
        let after = featurize(&moved, &cutoffs, &levels, 2).unwrap();
        for f in FEATURES {
            let (a, b) = (
                before.values(f.name).unwrap(),
                after.values(f.name).unwrap(),
            );
            let same = a
                .iter()
                .zip(&b)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()));
            assert!(
                same,
                "seed {seed}: feature {} changed: {a:?} vs {b:?}",
                f.name
            );
        }
    }
}

/// `frame` with its `column` in two chunks and the others in one: columns chunked apart.
fn chunked_apart(frame: &DataFrame, column: &str) -> DataFrame {
    let values = frame.column(column).unwrap().i64().unwrap();
    let half = values.len() as i64 / 2;
    let mut two = values.slice(0, half as usize);
    two.append(&values.slice(half, values.len() - half as usize))
        .unwrap();
    assert_eq!(two.chunks().len(), 2);
    let mut out = frame.clone();
    out.with_column(two.into_column()).unwrap();
    out
}

/// A night's rows share one cutoff, and their events are summed by user (see `night.rs`):
/// each row gets the features it gets among rows of many cutoffs, where events are joined to
/// rows first; a user with two rows gets them twice.
#[test]
fn one_cutoff_for_every_row_gives_the_features_of_many() {
    for seed in 0..20u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut src = random_source(&mut rng);
        if seed % 2 == 1 {
            // Every other source has columns chunked apart, which a night's sums realign.
            src.engagement_daily = chunked_apart(&src.engagement_daily, "sessions");
            src.purchases = chunked_apart(&src.purchases, "user_id");
        }
        let levels = CategoricalLevels::from_users(&src.users).unwrap();
        let cutoff = T0 + rng.random_range(20..200) * DAY + rng.random_range(0..DAY);
        let mut users: Vec<i64> = (1..=USERS).collect();
        users.push(rng.random_range(1..=USERS));
        let n = users.len() as i64;
        let one = df! {
            "row_id" => (0..n).collect::<Vec<_>>(),
            "user_id" => users.clone(),
            "cutoff" => vec![cutoff; n as usize],
        }
        .unwrap();
        let other: Vec<i64> = (0..n)
            .map(|_| T0 + rng.random_range(0..220) * DAY)
            .collect();
        let many = df! {
            "row_id" => (0..2 * n).collect::<Vec<_>>(),
            "user_id" => users.iter().chain(&users).copied().collect::<Vec<_>>(),
            "cutoff" => vec![cutoff; n as usize].into_iter().chain(other).collect::<Vec<_>>(),
        }
        .unwrap();
        let single = featurize(&src, &one, &levels, 2).unwrap();
        let mixed = featurize(&src, &many, &levels, 2).unwrap();
        let mut counted = 0.0;
        for f in FEATURES {
            let a = single.values(f.name).unwrap();
            let b = mixed.values(f.name).unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b[..n as usize]), "seed {seed}: {}", f.name);
            counted += a.iter().filter(|x| !x.is_nan()).sum::<f64>();
        }
        assert!(counted > 0.0, "seed {seed}: no events seen");
    }
}

#[test]
fn events_before_the_cutoff_do_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let src = random_source(&mut rng);
    let levels = CategoricalLevels::from_users(&src.users).unwrap();
    let cutoffs = df! {
        "row_id" => (0..USERS).collect::<Vec<_>>(),
        "user_id" => (1..=USERS).collect::<Vec<_>>(),
        "cutoff" => vec![T0 + 201 * DAY; USERS as usize],
    }
    .unwrap();
    let f = featurize(&src, &cutoffs, &levels, 2).unwrap();
    let orders: f64 = f.values("orders_total").unwrap().iter().sum();
    assert_eq!(orders, 40.0, "every order lies before the cutoff");
}

#[test]
fn the_contract_stops_on_unsafe_ids_and_drops_bad_history() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let date = crate::RunDate::new(
        chrono::DateTime::from_timestamp(T0 + 201 * DAY, 0)
            .unwrap()
            .date_naive(),
    );
    let clean = random_source(&mut rng)
        .check_contract(date, Extent::AllUsers)
        .unwrap();
    assert!(clean.stops.is_empty(), "{:?}", clean.stops);
    assert!(clean.dropped.is_empty(), "{:?}", clean.dropped);

    let mut src = clean.tables;
    let (purchases, exposures) = (src.purchases.height(), src.campaign_exposures.height());
    let late = T0 + 203 * DAY;
    src.purchases
        .vstack_mut(
            &df! {
                "order_id" => [900i64, 901, 902], "user_id" => [Some(1i64), Some(2), None],
                "item_id" => [1i64, 1, 1], "purchased_at" => [late, T0, T0],
                "list_price_cents" => [1000i64, 1000, 1000], "paid_cents" => [1000i64, -5, 1000],
                "is_gift" => [0i64, 0, 0], "recipient_user_id" => [None::<i64>, None, None],
            }
            .unwrap(),
        )
        .unwrap();
    src.campaign_exposures
        .vstack_mut(
            &df! {
                "campaign_id" => ["c"], "user_id" => [1i64], "assigned_at" => [T0],
                "arm" => ["foo"], "discount_pct" => [0.0],
            }
            .unwrap(),
        )
        .unwrap();
    src.suppressions = df! {
        "user_id" => [Some(1i64), None], "reason" => ["unsubscribed", "legal"],
        "created_at" => [T0, T0],
    }
    .unwrap();
    let twice = src.users.slice(0, 1);
    src.users.vstack_mut(&twice).unwrap();

    let checked = src.check_contract(date, Extent::AllUsers).unwrap();
    let found = |list: &[Breach]| -> Vec<(&str, &str, usize)> {
        list.iter().map(|b| (b.table, b.column, b.rows)).collect()
    };
    assert_eq!(
        found(&checked.stops),
        [("users", "user_id", 1), ("suppressions", "user_id", 1)]
    );
    assert_eq!(
        found(&checked.dropped),
        [
            ("purchases", "user_id", 1),
            ("purchases", "purchased_at", 1),
            ("purchases", "paid_cents", 1),
            ("campaign_exposures", "arm", 1),
        ]
    );
    assert_eq!(checked.tables.purchases.height(), purchases);
    assert_eq!(checked.tables.campaign_exposures.height(), exposures);
    assert_eq!(
        checked.stops[1].to_string(),
        "suppressions.user_id is NULL in 1 row(s) (a suppressed user without an id would be messaged)"
    );

    let empty = SourceTables {
        users: checked.tables.users.clear(),
        ..checked.tables
    };
    let stops = empty
        .clone()
        .check_contract(date, Extent::AllUsers)
        .unwrap()
        .stops;
    assert_eq!(stops[0].problem, "has no rows");
    // A shard of the users may be empty (the NULL suppression id still stops it).
    let stops = empty.check_contract(date, Extent::SomeUsers).unwrap().stops;
    assert_eq!(found(&stops), [("suppressions", "user_id", 1)]);
}

/// A shard's tables hold its own users' rows only; with the signals of every user computed
/// once ([`FriendSignals`]), its users get the features and drop affinities the whole gets
/// them, friends' orders and a friend owning the dropped game included. Without the signals
/// they would not: the shard's rows miss its users' friends' orders.
#[test]
fn a_shard_with_every_users_signals_gets_the_features_of_the_whole() {
    use crate::shard::{shard_of, Shard};
    let mut missed = 0;
    for seed in 0..10u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let src = random_source(&mut rng);
        let levels = CategoricalLevels::from_users(&src.users).unwrap();
        let cutoff = T0 + rng.random_range(20..200) * DAY + rng.random_range(0..DAY);
        let rows = |users: &[i64]| {
            df! {
                "row_id" => (0..users.len() as i64).collect::<Vec<_>>(),
                "user_id" => users,
                "cutoff" => vec![cutoff; users.len()],
            }
            .unwrap()
        };
        let every: Vec<i64> = (1..=USERS).collect();
        let whole = featurize(&src, &rows(&every), &levels, 2).unwrap();
        let whole_affinity = drop_affinity(&src.clone().into(), 1, cutoff).unwrap();
        let signals = FriendSignals::compute(&src, cutoff, &drop_of(1)).unwrap();
        for shard in Shard::all(2) {
            let mine = |frame: &DataFrame, columns: &[&str]| {
                let keep: Vec<bool> = (0..frame.height())
                    .map(|i| {
                        columns.iter().any(|c| {
                            frame
                                .column(c)
                                .unwrap()
                                .i64()
                                .unwrap()
                                .get(i)
                                .is_some_and(|u| shard_of(u, 2) == shard.index())
                        })
                    })
                    .collect();
                frame
                    .filter(&BooleanChunked::from_slice("keep".into(), &keep))
                    .unwrap()
            };
            let part = SourceTables {
                users: mine(&src.users, &["user_id"]),
                purchases: mine(&src.purchases, &["user_id", "recipient_user_id"]),
                engagement_daily: mine(&src.engagement_daily, &["user_id"]),
                wishlist: mine(&src.wishlist, &["user_id"]),
                friendships: mine(&src.friendships, &["user_id"]),
                campaign_exposures: mine(&src.campaign_exposures, &["user_id"]),
                ..src.clone()
            };
            let users: Vec<i64> = part
                .users
                .column("user_id")
                .unwrap()
                .i64()
                .unwrap()
                .into_no_null_iter()
                .collect();
            let in_whole: Vec<usize> = users.iter().map(|u| (u - 1) as usize).collect();
            let with_signals = SourceTables {
                friend_signals: Some(signals.clone()),
                ..part.clone()
            };
            let f = featurize(&with_signals, &rows(&users), &levels, 2).unwrap();
            let alone = featurize(&part, &rows(&users), &levels, 2).unwrap();
            let bits = |frame: &FeatureFrame, name: &str| -> Vec<u64> {
                frame
                    .values(name)
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect()
            };
            for def in FEATURES {
                let all = bits(&whole, def.name);
                let expected: Vec<u64> = in_whole.iter().map(|&i| all[i]).collect();
                assert_eq!(
                    bits(&f, def.name),
                    expected,
                    "seed {seed}, {shard}: {}",
                    def.name
                );
                missed += usize::from(bits(&alone, def.name) != expected);
            }
            let affinity = drop_affinity(&with_signals.clone().into(), 1, cutoff).unwrap();
            let expected = whole_affinity
                .clone()
                .lazy()
                .join(
                    affinity.clone().lazy().select([col("user_id")]),
                    [col("user_id")],
                    [col("user_id")],
                    JoinArgs::new(JoinType::Inner),
                )
                .collect()
                .unwrap();
            assert_eq!(affinity.height(), users.len());
            assert!(
                affinity.equals(&expected),
                "seed {seed}, {shard}: {affinity} {expected}"
            );
            // Signals of another night are refused, not read.
            let stale = FriendSignals::compute(&src, cutoff - DAY, &drop_of(1)).unwrap();
            let stale = SourceTables {
                friend_signals: Some(stale),
                ..part
            };
            assert!(featurize(&stale, &rows(&users), &levels, 2).is_err());
        }
    }
    assert!(missed > 0, "a shard alone never missed a friend's order");
}

/// What a night with a drop of `item` alone reads of other users.
fn drop_of(item: i64) -> super::SharedNeeds {
    super::SharedNeeds {
        drop_items: vec![item],
        gifts: false,
        gift_items: vec![],
    }
}

//! Gift recipients: when a user sends a gift, which of their friends receives it. A pairwise
//! LightGBM classifier over (sender, friend) pairs, trained point-in-time on past gifts
//! (`purchases.is_gift`, `recipient_user_id`): each gift is a group of rows, one per friend the
//! sender had then, labelled by whether that friend received it, with the pair's features as
//! they were just before the gift. A sender's most likely recipient is the friend with the
//! highest score.
//!
//! Measured by top-1 accuracy on the gifts of held-out senders (split by the same seeded hash
//! as every model), side by side with the two rules a team would write without a model: the
//! most recent friend, and the most active one (sessions in the last 30 days). Whichever of the
//! three does best on the validation senders' gifts is the one chosen ([`Pick`]): with few
//! gifts to learn from, a rule does better than the model.

use std::collections::{HashMap, HashSet};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::training::{split_of, Split, TrainingOptions};
use crate::uplift::Classifier;
use crate::{ModelError, Result, SourceTables, DAY};

/// The features of a (sender, friend) pair as of a time t, in the model's column order.
pub const PAIR_FEATURES: [&str; 9] = [
    // Days the two have been friends.
    "friendship_days",
    // Days after the sender's signup the friendship began (friends made at signup are often
    // friends from elsewhere).
    "friendship_after_signup_days",
    // Gifts the sender sent this friend, and the friend the sender, before t.
    "gifts_to_friend",
    "gifts_from_friend",
    // The friend's sessions in the 30 days before t.
    "friend_sessions_30d",
    // Items on the friend's wishlist, added before t.
    "friend_wishlist_items",
    // The friend's own orders in the 365 days before t.
    "friend_orders_365d",
    // Friends the two share.
    "mutual_friends",
    // The sender's friends made after this one: 0 for the most recent friend.
    "newer_friends",
];

/// Column of the pair features holding the friend's sessions: the "most active friend" rule.
const SESSIONS: usize = 4;
/// Column of the friendship's age: the "most recent friend" rule.
const FRIENDSHIP_DAYS: usize = 0;

/// Gifts the model learns from and is tested on, each a group of candidate rows.
#[derive(Debug, Clone, Default)]
pub struct GiftPairs {
    /// Row-major [`PAIR_FEATURES`].
    pub x: Vec<f64>,
    /// Whether the row's friend received the gift.
    pub label: Vec<bool>,
    /// Each gift's rows: `rows[g]` is the range of gift `g`'s candidates.
    pub rows: Vec<std::ops::Range<usize>>,
    /// Each gift's sender.
    pub sender: Vec<i64>,
    /// Gifts to another user before the cutoff, and those whose recipient was then a friend
    /// of the sender (the others cannot be predicted from friendships).
    pub gifts: usize,
    pub to_a_friend: usize,
}

fn ints(frame: &DataFrame, name: &str) -> Result<Vec<Option<i64>>> {
    Ok(frame
        .column(name)?
        .cast(&DataType::Int64)?
        .i64()?
        .iter()
        .collect())
}

/// Sorted event times per user of a table, for the users in `keep`.
fn times_by_user(
    frame: &DataFrame,
    user: &str,
    time: &str,
    keep: &HashSet<i64>,
) -> Result<HashMap<i64, Vec<i64>>> {
    let (users, times) = (ints(frame, user)?, ints(frame, time)?);
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    for (u, t) in users.into_iter().zip(times) {
        if let (Some(u), Some(t)) = (u, t) {
            if keep.contains(&u) {
                out.entry(u).or_default().push(t);
            }
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    Ok(out)
}

/// How many of `sorted` lie in `[from, to)`.
fn between(sorted: &[i64], from: i64, to: i64) -> usize {
    sorted.partition_point(|&t| t < to) - sorted.partition_point(|&t| t < from)
}

/// The gifts sent before `cutoff` (UTC Unix seconds) as groups of (sender, friend) rows with
/// each pair's features just before the gift. Gifts whose sender had one friend then carry no
/// choice and are left out, as are those to someone who was not a friend.
pub fn gift_pairs(src: &SourceTables, cutoff: i64) -> Result<GiftPairs> {
    let p = &src.purchases;
    let (buyer, at, gift, recipient) = (
        ints(p, "user_id")?,
        ints(p, "purchased_at")?,
        ints(p, "is_gift")?,
        ints(p, "recipient_user_id")?,
    );
    // (sender, recipient, time), in time order: the history each gift's features read.
    let mut gifts: Vec<(i64, i64, i64)> = (0..buyer.len())
        .filter_map(|i| {
            let (s, r, t) = (buyer[i]?, recipient[i]?, at[i]?);
            (gift[i] == Some(1) && s != r && t < cutoff).then_some((s, r, t))
        })
        .collect();
    gifts.sort_unstable_by_key(|&(s, r, t)| (t, s, r));
    let mut sent: HashMap<(i64, i64), Vec<i64>> = HashMap::new();
    for &(s, r, t) in &gifts {
        sent.entry((s, r)).or_default().push(t);
    }

    let f = &src.friendships;
    let (fu, ff, fs) = (
        ints(f, "user_id")?,
        ints(f, "friend_id")?,
        ints(f, "since")?,
    );
    let mut friends: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for i in 0..fu.len() {
        if let (Some(u), Some(v), Some(since)) = (fu[i], ff[i], fs[i]) {
            if u != v && since < cutoff {
                friends.entry(u).or_default().push((v, since));
            }
        }
    }
    for list in friends.values_mut() {
        list.sort_unstable();
        list.dedup_by_key(|(v, _)| *v);
    }
    // Only the senders' friends are read further: a few bytes per candidate, whatever the
    // size of the tables.
    let senders: HashSet<i64> = gifts.iter().map(|&(s, _, _)| s).collect();
    let candidates: HashSet<i64> = senders
        .iter()
        .filter_map(|s| friends.get(s))
        .flatten()
        .map(|&(v, _)| v)
        .collect();
    let created: HashMap<i64, i64> = ints(&src.users, "user_id")?
        .into_iter()
        .zip(ints(&src.users, "created_at")?)
        .filter_map(|(u, c)| Some((u?, c?)))
        .filter(|(u, _)| senders.contains(u))
        .collect();
    let wishlist = times_by_user(&src.wishlist, "user_id", "added_at", &candidates)?;
    let orders = times_by_user(p, "user_id", "purchased_at", &candidates)?;
    // Sessions per friend: days in order with running totals, for sums over any window.
    let mut sessions: HashMap<i64, (Vec<i64>, Vec<i64>)> = HashMap::new();
    {
        let e = &src.engagement_daily;
        let (eu, ed, es) = (ints(e, "user_id")?, ints(e, "day")?, ints(e, "sessions")?);
        let mut by_user: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for i in 0..eu.len() {
            if let (Some(u), Some(d)) = (eu[i], ed[i]) {
                if candidates.contains(&u) {
                    by_user.entry(u).or_default().push((d, es[i].unwrap_or(0)));
                }
            }
        }
        for (u, mut days) in by_user {
            days.sort_unstable();
            let mut total = 0;
            let running = days
                .iter()
                .map(|&(_, n)| {
                    total += n;
                    total
                })
                .collect();
            sessions.insert(u, (days.into_iter().map(|(d, _)| d).collect(), running));
        }
    }
    let sessions_between = |u: i64, from: i64, to: i64| -> f64 {
        let Some((days, running)) = sessions.get(&u) else {
            return 0.0;
        };
        let (a, b) = (
            days.partition_point(|&d| d < from),
            days.partition_point(|&d| d < to),
        );
        let upto = |k: usize| if k == 0 { 0 } else { running[k - 1] };
        (upto(b) - upto(a)) as f64
    };
    let count = |map: &HashMap<i64, Vec<i64>>, u: i64, from: i64, to: i64| -> f64 {
        map.get(&u).map_or(0, |v| between(v, from, to)) as f64
    };
    let gifts_before = |s: i64, r: i64, t: i64| -> f64 {
        sent.get(&(s, r))
            .map_or(0, |v| v.partition_point(|&x| x < t)) as f64
    };

    let mut out = GiftPairs {
        gifts: gifts.len(),
        ..GiftPairs::default()
    };
    let none = Vec::new();
    for &(s, r, t) in &gifts {
        let then: Vec<(i64, i64)> = friends
            .get(&s)
            .unwrap_or(&none)
            .iter()
            .filter(|&&(_, since)| since < t)
            .copied()
            .collect();
        if !then.iter().any(|&(v, _)| v == r) {
            continue;
        }
        out.to_a_friend += 1;
        if then.len() < 2 {
            continue;
        }
        let mine: HashSet<i64> = then.iter().map(|&(v, _)| v).collect();
        let signup = created.get(&s).copied().unwrap_or(t);
        let start = out.label.len();
        for &(v, since) in &then {
            let mutual = friends.get(&v).map_or(0, |theirs| {
                theirs
                    .iter()
                    .filter(|&&(w, w_since)| w_since < t && mine.contains(&w))
                    .count()
            });
            let newer = then.iter().filter(|&&(_, other)| other > since).count();
            out.x.extend_from_slice(&[
                ((t - since) / DAY) as f64,
                ((since - signup) / DAY) as f64,
                gifts_before(s, v, t),
                gifts_before(v, s, t),
                sessions_between(v, t - 30 * DAY, t),
                count(&wishlist, v, i64::MIN, t),
                count(&orders, v, t - 365 * DAY, t),
                mutual as f64,
                newer as f64,
            ]);
            out.label.push(v == r);
        }
        out.rows.push(start..out.label.len());
        out.sender.push(s);
    }
    Ok(out)
}

/// Top-1 accuracy on the test senders' gifts: the share whose recipient was the friend each
/// rule puts first.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopOne {
    /// Test gifts with a choice (two friends or more).
    pub gifts: usize,
    /// Friends to choose from per gift, on average.
    pub mean_friends: f64,
    /// The friend the model scores highest.
    pub model: f64,
    /// The most recent friend.
    pub most_recent_friend: f64,
    /// The friend with the most sessions in the 30 days before the gift.
    pub most_active_friend: f64,
    /// The way chosen on the validation senders' gifts, and its share on the test gifts.
    pub chosen: Pick,
    pub chosen_share: f64,
}

/// A trained recipient model and its test figures.
#[derive(Debug)]
pub struct RecipientModel {
    pub classifier: Classifier,
    pub top_one: TopOne,
    /// Gifts before the training date, those to a friend, and those the model learned from.
    pub gifts: usize,
    pub to_a_friend: usize,
    pub trained_on: usize,
}

/// The index in `rows` (a gift's candidates) of the highest `score`, the first on ties.
fn first_best(rows: std::ops::Range<usize>, score: impl Fn(usize) -> f64) -> usize {
    rows.fold(None::<(usize, f64)>, |best, i| match best {
        Some((_, b)) if b >= score(i) => best,
        _ => Some((i, score(i))),
    })
    .map_or(0, |(i, _)| i)
}

/// Trains the recipient model on the gifts before the training date: train and validation
/// senders fit it (early stopping on validation), test senders measure it.
pub fn train_recipient(src: &SourceTables, opts: &TrainingOptions) -> Result<RecipientModel> {
    let pairs = gift_pairs(src, opts.as_of.cutoff())?;
    let width = PAIR_FEATURES.len();
    let mut parts: [(Vec<f64>, Vec<bool>, Vec<usize>); 3] = Default::default();
    for (g, rows) in pairs.rows.iter().enumerate() {
        let k = match split_of(pairs.sender[g], opts.params.seed) {
            Split::Train => 0,
            Split::Valid => 1,
            Split::Test => 2,
        };
        parts[k]
            .0
            .extend_from_slice(&pairs.x[rows.start * width..rows.end * width]);
        parts[k].1.extend_from_slice(&pairs.label[rows.clone()]);
        parts[k].2.push(g);
    }
    let [train, valid, test] = parts;
    let positives = |labels: &[bool]| labels.iter().filter(|&&l| l).count();
    if positives(&train.1) < 20 || positives(&valid.1) < 5 || test.2.is_empty() {
        return Err(ModelError::Training {
            what: "gift_recipient".into(),
            why: format!(
                "{} gifts to a friend with a choice before the training date: too few to learn \
                 who receives them",
                pairs.rows.len()
            ),
        });
    }
    let names: Vec<String> = PAIR_FEATURES.iter().map(|s| s.to_string()).collect();
    let classifier = Classifier::train(
        (&train.0, &train.1),
        (&valid.0, &valid.1),
        &names,
        &[],
        &opts.params.for_classifier(),
    )?
    .scored_by(opts.scorer)?;
    // Each way of choosing, on the validation senders' gifts: the model must earn its place
    // against the rules there (with few gifts to learn from it does not), and the test
    // senders' gifts then measure all three and the one chosen.
    let threads = opts.params.num_threads;
    let valid_hits = top_one(&pairs, &valid.2, &classifier.predict(&valid.0, threads)?);
    let chosen = Pick::ALL
        .into_iter()
        .max_by_key(|&p| (valid_hits[p as usize], std::cmp::Reverse(p as usize)))
        .unwrap_or(Pick::Model);
    let hits = top_one(&pairs, &test.2, &classifier.predict(&test.0, threads)?);
    let n = test.2.len();
    let friends: usize = test.2.iter().map(|&g| pairs.rows[g].len()).sum();
    let share = |p: Pick| hits[p as usize] as f64 / n as f64;
    Ok(RecipientModel {
        classifier,
        top_one: TopOne {
            gifts: n,
            mean_friends: friends as f64 / n as f64,
            model: share(Pick::Model),
            most_recent_friend: share(Pick::MostRecentFriend),
            most_active_friend: share(Pick::MostActiveFriend),
            chosen,
            chosen_share: share(chosen),
        },
        gifts: pairs.gifts,
        to_a_friend: pairs.to_a_friend,
        trained_on: train.2.len() + valid.2.len(),
    })
}

/// A way of putting one of a sender's friends first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// The friend the recipient model scores highest.
    Model = 0,
    /// The most recent friend.
    MostRecentFriend = 1,
    /// The friend with the most sessions in the 30 days before the gift.
    MostActiveFriend = 2,
}

impl Pick {
    /// In order of preference on a tie: the model, then the simpler rules.
    pub const ALL: [Pick; 3] = [Pick::Model, Pick::MostRecentFriend, Pick::MostActiveFriend];
}

/// For `gifts` (indexes into `pairs`, whose rows are, in that order, those `scores` score): how
/// many each [`Pick`] got right.
fn top_one(pairs: &GiftPairs, gifts: &[usize], scores: &[f64]) -> [usize; 3] {
    let width = PAIR_FEATURES.len();
    let (mut hits, mut offset) = ([0usize; 3], 0usize);
    for &g in gifts {
        let rows = pairs.rows[g].clone();
        let local = offset..offset + rows.len();
        let at = |i: usize, column: usize| pairs.x[(rows.start + i - offset) * width + column];
        let picks = [
            first_best(local.clone(), |i| scores[i]),
            first_best(local.clone(), |i| -at(i, FRIENDSHIP_DAYS)),
            first_best(local.clone(), |i| at(i, SESSIONS)),
        ];
        for (hit, pick) in hits.iter_mut().zip(picks) {
            *hit += usize::from(pairs.label[rows.start + pick - offset]);
        }
        offset += rows.len();
    }
    hits
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::{RunDate, Scorer, UpliftParams};

    const D: i64 = DAY;

    /// Users, purchases (gifts among them), engagement, wishlist and friendships (both
    /// directions); the other tables empty.
    fn tables(
        users: &[(i64, i64)],
        purchases: &[(i64, i64, Option<i64>)],
        engagement: &[(i64, i64, i64)],
        wishlist: &[(i64, i64)],
        friendships: &[(i64, i64, i64)],
    ) -> SourceTables {
        let both: Vec<(i64, i64, i64)> = friendships
            .iter()
            .flat_map(|&(a, b, since)| [(a, b, since), (b, a, since)])
            .collect();
        SourceTables {
            users: df! {
                "user_id" => users.iter().map(|u| u.0).collect::<Vec<_>>(),
                "created_at" => users.iter().map(|u| u.1).collect::<Vec<_>>(),
            }
            .unwrap(),
            purchases: df! {
                "user_id" => purchases.iter().map(|p| p.0).collect::<Vec<_>>(),
                "purchased_at" => purchases.iter().map(|p| p.1).collect::<Vec<_>>(),
                "is_gift" => purchases.iter().map(|p| i64::from(p.2.is_some())).collect::<Vec<_>>(),
                "recipient_user_id" => purchases.iter().map(|p| p.2).collect::<Vec<_>>(),
            }
            .unwrap(),
            engagement_daily: df! {
                "user_id" => engagement.iter().map(|e| e.0).collect::<Vec<_>>(),
                "day" => engagement.iter().map(|e| e.1).collect::<Vec<_>>(),
                "sessions" => engagement.iter().map(|e| e.2).collect::<Vec<_>>(),
            }
            .unwrap(),
            wishlist: df! {
                "user_id" => wishlist.iter().map(|w| w.0).collect::<Vec<_>>(),
                "added_at" => wishlist.iter().map(|w| w.1).collect::<Vec<_>>(),
            }
            .unwrap(),
            friendships: df! {
                "user_id" => both.iter().map(|f| f.0).collect::<Vec<_>>(),
                "friend_id" => both.iter().map(|f| f.1).collect::<Vec<_>>(),
                "since" => both.iter().map(|f| f.2).collect::<Vec<_>>(),
            }
            .unwrap(),
            suppressions: DataFrame::empty(),
            items: DataFrame::empty(),
            campaign_exposures: DataFrame::empty(),
            friend_signals: None,
        }
    }

    #[test]
    fn each_gift_is_a_group_of_the_senders_friends_then_with_their_features_as_of_the_gift() {
        // User 1 (signed up on day 0) befriends 2 on day 5 and 3 on day 200, and 4 after the
        // gifts; 2 and 3 are friends since day 50. 1 gifts 2 on days 300 and 350; 3 gifts 1 on
        // day 310 and orders for themselves on day 330.
        let src = tables(
            &[(1, 0), (2, 0), (3, 0), (4, 0)],
            &[
                (1, 300 * D, Some(2)),
                (3, 310 * D, Some(1)),
                (3, 330 * D, None),
                (1, 350 * D, Some(2)),
                (4, 360 * D, Some(9)),
            ],
            &[(2, 100 * D, 10), (2, 340 * D, 4)],
            &[(3, 20 * D), (3, 30 * D), (3, 400 * D)],
            &[
                (1, 2, 5 * D),
                (1, 3, 200 * D),
                (2, 3, 50 * D),
                (1, 4, 400 * D),
            ],
        );
        let p = gift_pairs(&src, 1000 * D).unwrap();
        // User 4's gift is to a stranger; the three others each had two friends to choose from.
        assert_eq!((p.gifts, p.to_a_friend, p.rows.len()), (4, 3, 3));
        assert_eq!(p.sender, vec![1, 3, 1]);
        let row = |i: usize| p.x[i * PAIR_FEATURES.len()..(i + 1) * PAIR_FEATURES.len()].to_vec();
        // The gift of day 350: friend 2 (received one gift from 1 before, 4 sessions in the
        // 30 days, the older friend, one mutual friend) and friend 3 (sent 1 a gift, two
        // wishlisted items, two orders in the year, the newer friend).
        assert_eq!(p.rows[2], 4..6);
        assert_eq!(row(4), vec![345.0, 5.0, 1.0, 0.0, 4.0, 0.0, 0.0, 1.0, 1.0]);
        assert_eq!(
            row(5),
            vec![150.0, 200.0, 0.0, 1.0, 0.0, 2.0, 2.0, 1.0, 0.0]
        );
        assert_eq!(p.label[4..6], [true, false]);
        // The first gift: nothing sent before it.
        assert_eq!(row(0)[2], 0.0);
    }

    #[test]
    fn the_model_learns_who_receives_gifts_where_the_rules_cannot() {
        // 1,500 senders with three friends each: the gifts go to the friend made at signup,
        // who is neither the most recent friend nor the most active one.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut users, mut purchases, mut engagement, mut friendships) =
            (vec![], vec![], vec![], vec![]);
        for s in 0..1500i64 {
            let sender = 10 * s + 1;
            users.push((sender, 0));
            let close = rng.random_range(0..3i64);
            for k in 0..3i64 {
                let friend = sender + 1 + k;
                users.push((friend, 0));
                let since = if k == close {
                    2 * D
                } else {
                    rng.random_range(30..300) * D
                };
                friendships.push((sender, friend, since));
                engagement.push((friend, 390 * D, rng.random_range(0..20)));
            }
            let at = 400 * D + rng.random_range(0..30) * D;
            let recipient = sender + 1 + close;
            purchases.push((sender, at, Some(recipient)));
        }
        let src = tables(&users, &purchases, &engagement, &[], &friendships);
        let opts = TrainingOptions {
            params: UpliftParams {
                min_data_in_leaf: 20,
                ..UpliftParams::default()
            },
            learner: None,
            attribution_days: 7,
            as_of: RunDate::new(NaiveDate::from_ymd_opt(1971, 6, 1).unwrap()),
            created_at: String::new(),
            code_version: String::new(),
            scorer: Scorer::Native,
        };
        let m = train_recipient(&src, &opts).unwrap();
        let t = m.top_one;
        assert_eq!((m.gifts, m.to_a_friend), (1500, 1500));
        assert!(
            t.gifts > 250 && (t.mean_friends - 3.0).abs() < 1e-12,
            "{t:?}"
        );
        assert!(t.model > 0.95, "{t:?}");
        assert_eq!(t.chosen, Pick::Model, "{t:?}");
        assert!(
            t.most_recent_friend < 0.5 && t.most_active_friend < 0.5,
            "{t:?}"
        );
    }
}

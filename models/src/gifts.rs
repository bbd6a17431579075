//! Gift recipients: when a user sends a gift, which of their friends receives it. A pairwise
//! LightGBM classifier over (sender, friend) pairs, trained point-in-time on past gifts
//! (`purchases.is_gift`, `recipient_user_id`): each gift is a group of rows, one per friend the
//! sender had then, labelled by whether that friend received it, with the pair's features as
//! they were just before the gift. A sender's most likely recipient is the friend with the
//! highest score.
//!
//! The pair features read the sender's own rows (friendships, gifts sent and received,
//! signup) and, of the friend, only the recent order count every shard of a night already
//! holds for every user ([`crate::features::FriendSignals`]): a night's shard ranks its senders'
//! friends exactly as the whole would, whatever shard a friend is in. The friend's wishlist,
//! sessions and own friends are in the friend's shard and are not read: on the demo they added
//! nothing (see the architecture notes).
//!
//! Measured by top-1 accuracy on the gifts of held-out senders (split by the same seeded hash
//! as every model), side by side with the two rules a team would write without a model: the
//! most recent friend, and the most active one (sessions in the last 30 days). Whichever of the
//! model and the most recent friend does better on the validation senders' gifts is the one
//! chosen ([`Pick`]): with few gifts to learn from, the rule does better than the model.

use std::collections::{HashMap, HashSet};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

pub use crate::artifact::Pick;
use crate::features::AffinityTables;
use crate::uplift::Classifier;
use crate::{ModelArtifact, ModelError, Result, Scorer, SourceTables, DAY};

/// The features of a (sender, friend) pair as of a time t, in the model's column order.
pub const PAIR_FEATURES: [&str; 6] = [
    // Days the two have been friends.
    "friendship_days",
    // Days after the sender's signup the friendship began (friends made at signup are often
    // friends from elsewhere).
    "friendship_after_signup_days",
    // Gifts the sender sent this friend, and the friend the sender, before t.
    "gifts_to_friend",
    "gifts_from_friend",
    // The friend's own orders in the 30 days before t.
    "friend_orders_30d",
    // The sender's friends made after this one: 0 for the most recent friend.
    "newer_friends",
];

/// Column of the friendship's age: the "most recent friend" rule.
const FRIENDSHIP_DAYS: usize = 0;

/// Gifts the model learns from and is tested on, each a group of candidate rows.
#[derive(Debug, Clone, Default)]
pub struct GiftPairs {
    /// Row-major [`PAIR_FEATURES`].
    pub x: Vec<f64>,
    /// Whether the row's friend received the gift.
    pub label: Vec<bool>,
    /// The friend's sessions in the 30 days before the gift: the "most active friend" rule,
    /// measured beside the model but not one of its features (a night cannot read it of a
    /// friend in another shard).
    pub friend_sessions_30d: Vec<f64>,
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

/// What the pair features read of senders' own rows before a cutoff: their friends, the gifts
/// between two users, their signups. The same for training (every gift's sender) and for a
/// night (every user of a shard), so the features are computed by one code.
struct SenderHistory {
    /// Gift times by (sender, recipient), ascending.
    sent: HashMap<(i64, i64), Vec<i64>>,
    /// Each sender's (friend, since), by friend, once each.
    friends: HashMap<i64, Vec<(i64, i64)>>,
    /// Each sender's signup time.
    created: HashMap<i64, i64>,
}

impl SenderHistory {
    /// The history before `cutoff` of the senders in `senders` (every user with friends when
    /// `None`), with `gifts` those [`gifts_of`] the purchases gives.
    fn read(
        gifts: &[((i64, i64), i64)],
        friendships: &DataFrame,
        users: &DataFrame,
        cutoff: i64,
        senders: Option<&HashSet<i64>>,
    ) -> Result<SenderHistory> {
        let keep = |u: i64| senders.is_none_or(|s| s.contains(&u));
        let mut sent: HashMap<(i64, i64), Vec<i64>> = HashMap::new();
        // Only gifts between a sender and anyone: the features read no other.
        for &((s, r), t) in gifts.iter().filter(|((s, r), _)| keep(*s) || keep(*r)) {
            sent.entry((s, r)).or_default().push(t);
        }
        for v in sent.values_mut() {
            v.sort_unstable();
        }
        let (fu, ff, fs) = (
            ints(friendships, "user_id")?,
            ints(friendships, "friend_id")?,
            ints(friendships, "since")?,
        );
        let mut friends: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for i in 0..fu.len() {
            if let (Some(u), Some(v), Some(since)) = (fu[i], ff[i], fs[i]) {
                if u != v && since < cutoff && keep(u) {
                    friends.entry(u).or_default().push((v, since));
                }
            }
        }
        for list in friends.values_mut() {
            list.sort_unstable();
            list.dedup_by_key(|(v, _)| *v);
        }
        let created = ints(users, "user_id")?
            .into_iter()
            .zip(ints(users, "created_at")?)
            .filter_map(|(u, c)| Some((u?, c?)))
            .filter(|&(u, _)| friends.contains_key(&u))
            .collect();
        Ok(SenderHistory {
            sent,
            friends,
            created,
        })
    }

    /// The friends `s` had before `t`, by friend.
    fn friends_then(&self, s: i64, t: i64) -> Vec<(i64, i64)> {
        self.friends.get(&s).map_or_else(Vec::new, |list| {
            list.iter()
                .filter(|&&(_, since)| since < t)
                .copied()
                .collect()
        })
    }

    fn gifts_before(&self, s: i64, r: i64, t: i64) -> f64 {
        self.sent
            .get(&(s, r))
            .map_or(0, |v| v.partition_point(|&x| x < t)) as f64
    }

    /// Appends to `x` the [`PAIR_FEATURES`] of `s` and each friend of `then` as of `t`, the
    /// friend's recent orders read by `friend_orders`.
    fn features(
        &self,
        s: i64,
        then: &[(i64, i64)],
        t: i64,
        friend_orders: impl Fn(i64) -> f64,
        x: &mut Vec<f64>,
    ) {
        let signup = self.created.get(&s).copied().unwrap_or(t);
        for &(v, since) in then {
            let newer = then.iter().filter(|&&(_, other)| other > since).count();
            x.extend_from_slice(&[
                ((t - since) / DAY) as f64,
                ((since - signup) / DAY) as f64,
                self.gifts_before(s, v, t),
                self.gifts_before(v, s, t),
                friend_orders(v),
                newer as f64,
            ]);
        }
    }
}

/// ((sender, recipient), time) of every gift to another user before `cutoff`, in time order.
fn gifts_of(purchases: &DataFrame, cutoff: i64) -> Result<Vec<((i64, i64), i64)>> {
    let (buyer, at, gift, recipient) = (
        ints(purchases, "user_id")?,
        ints(purchases, "purchased_at")?,
        ints(purchases, "is_gift")?,
        ints(purchases, "recipient_user_id")?,
    );
    let mut gifts: Vec<((i64, i64), i64)> = (0..buyer.len())
        .filter_map(|i| {
            let (s, r, t) = (buyer[i]?, recipient[i]?, at[i]?);
            (gift[i] == Some(1) && s != r && t < cutoff).then_some(((s, r), t))
        })
        .collect();
    gifts.sort_unstable_by_key(|&((s, r), t)| (t, s, r));
    Ok(gifts)
}

/// The gifts sent before `cutoff` (UTC Unix seconds) as groups of (sender, friend) rows with
/// each pair's features just before the gift. Gifts whose sender had one friend then carry no
/// choice and are left out, as are those to someone who was not a friend.
pub fn gift_pairs(src: &SourceTables, cutoff: i64) -> Result<GiftPairs> {
    let p = &src.purchases;
    let gifts = gifts_of(p, cutoff)?;
    let senders: HashSet<i64> = gifts.iter().map(|&((s, _), _)| s).collect();
    let history =
        SenderHistory::read(&gifts, &src.friendships, &src.users, cutoff, Some(&senders))?;
    // Only the senders' friends are read further: a few bytes per candidate, whatever the
    // size of the tables.
    let candidates: HashSet<i64> = history
        .friends
        .values()
        .flatten()
        .map(|&(v, _)| v)
        .collect();
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

    let mut out = GiftPairs {
        gifts: gifts.len(),
        ..GiftPairs::default()
    };
    for &((s, r), t) in &gifts {
        let then = history.friends_then(s, t);
        if !then.iter().any(|&(v, _)| v == r) {
            continue;
        }
        out.to_a_friend += 1;
        if then.len() < 2 {
            continue;
        }
        let start = out.label.len();
        history.features(
            s,
            &then,
            t,
            |v| orders.get(&v).map_or(0, |o| between(o, t - 30 * DAY, t)) as f64,
            &mut out.x,
        );
        for &(v, _) in &then {
            out.label.push(v == r);
            out.friend_sessions_30d
                .push(sessions_between(v, t - 30 * DAY, t));
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

/// What a recipient model was trained on and its top-1 accuracy on the test senders' gifts.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientFigures {
    /// Gifts before the training date, and those to someone who was then a friend of the
    /// sender.
    pub gifts: usize,
    pub to_a_friend: usize,
    /// Gifts with a choice (two friends or more) the model learned from.
    pub trained_on: usize,
    #[serde(flatten)]
    pub top_one: TopOne,
}

/// A trained recipient model and its test figures.
#[derive(Debug)]
pub struct RecipientModel {
    pub classifier: Classifier,
    pub figures: RecipientFigures,
    /// The model as stored: the classifier's text, with the way chosen
    /// ([`crate::ModelMetadata::recipient_pick`]) and the top-1 shares in its metadata.
    pub artifact: ModelArtifact,
}

/// The index in `rows` (a gift's candidates) of the highest `score`, the first on ties.
pub(crate) fn first_best(rows: std::ops::Range<usize>, score: impl Fn(usize) -> f64) -> usize {
    rows.fold(None::<(usize, f64)>, |best, i| match best {
        Some((_, b)) if b >= score(i) => best,
        _ => Some((i, score(i))),
    })
    .map_or(0, |(i, _)| i)
}

/// Index of the "most active friend" rule's hits in [`top_one`]: measured, never chosen.
pub(crate) const MOST_ACTIVE: usize = 2;

/// For `gifts` (indexes into `pairs`, whose rows are, in that order, those `scores` score): how
/// many the model, the most recent friend and the most active friend got right.
pub(crate) fn top_one(pairs: &GiftPairs, gifts: &[usize], scores: &[f64]) -> [usize; 3] {
    let width = PAIR_FEATURES.len();
    let (mut hits, mut offset) = ([0usize; 3], 0usize);
    for &g in gifts {
        let rows = pairs.rows[g].clone();
        let local = offset..offset + rows.len();
        let row = |i: usize| rows.start + i - offset;
        let picks = [
            first_best(local.clone(), |i| scores[i]),
            first_best(local.clone(), |i| {
                -pairs.x[row(i) * width + FRIENDSHIP_DAYS]
            }),
            first_best(local.clone(), |i| pairs.friend_sessions_30d[row(i)]),
        ];
        for (hit, pick) in hits.iter_mut().zip(picks) {
            *hit += usize::from(pairs.label[row(pick)]);
        }
        offset += rows.len();
    }
    hits
}

/// How a night ranks a sender's friends: the stored model, or the rule it was measured against
/// when that did better.
#[derive(Debug)]
pub enum Recipients {
    Model(Box<Classifier>),
    MostRecentFriend,
}

impl Recipients {
    /// The way a stored recipient model says to choose (its metadata's pick).
    pub fn from_artifact(artifact: &ModelArtifact, scorer: Scorer) -> Result<Recipients> {
        match artifact.metadata.recipient_pick {
            Some(Pick::MostRecentFriend) => Ok(Recipients::MostRecentFriend),
            Some(Pick::Model) => Ok(Recipients::Model(Box::new(artifact.classifier(scorer)?))),
            None => Err(ModelError::Artifact(format!(
                "model {} {} says no way of choosing recipients",
                artifact.metadata.name, artifact.metadata.version
            ))),
        }
    }

    /// Each user of `tables` (of `senders` only, when given) with a friend before `cutoff` who
    /// may be named as a recipient (consented, not suppressed), with the one of them most
    /// likely to receive the user's gift (ties: the lower id). Users whose friends may none be
    /// named are absent. Reads the users' own rows, and of every user their recent orders and
    /// whether they may be named ([`crate::features::FriendSignals`] in a shard), so a user's
    /// suggestion is the same in any shard.
    pub fn suggest(
        &self,
        tables: &AffinityTables,
        cutoff: i64,
        threads: usize,
        senders: Option<&HashSet<i64>>,
    ) -> Result<HashMap<i64, i64>> {
        let history = SenderHistory::read(
            &gifts_of(&tables.purchases, cutoff)?,
            &tables.friendships,
            &tables.users,
            cutoff,
            senders,
        )?;
        let recent = crate::features::recent_orders(
            tables.friend_signals.as_ref(),
            &tables.purchases,
            cutoff,
        )?
        .collect()?;
        let orders: HashMap<i64, f64> = ints(&recent, "user_id")?
            .into_iter()
            .zip(ints(&recent, "orders")?)
            .filter_map(|(u, n)| Some((u?, n? as f64)))
            .collect();
        let may_receive = crate::features::may_receive(
            tables.friend_signals.as_ref(),
            &tables.users,
            &tables.suppressions,
        )?;
        let mut senders: Vec<i64> = history.friends.keys().copied().collect();
        senders.sort_unstable();
        let (mut x, mut groups) = (Vec::new(), Vec::with_capacity(senders.len()));
        for &s in &senders {
            let then = history.friends_then(s, cutoff);
            history.features(
                s,
                &then,
                cutoff,
                |v| orders.get(&v).copied().unwrap_or(0.0),
                &mut x,
            );
            groups.push(then);
        }
        let width = PAIR_FEATURES.len();
        let scores: Vec<f64> = match self {
            Recipients::Model(c) => c.predict(&x, threads)?,
            Recipients::MostRecentFriend => x.chunks(width).map(|r| -r[FRIENDSHIP_DAYS]).collect(),
        };
        let mut out = HashMap::with_capacity(senders.len());
        let mut offset = 0;
        for (s, then) in senders.into_iter().zip(groups) {
            // Friends who may not be named still count in the features (a friend's place
            // among the newer ones), only never as the suggestion.
            let best = then
                .iter()
                .enumerate()
                .filter(|(_, (v, _))| may_receive.binary_search(v).is_ok())
                .map(|(i, &(v, _))| (scores[offset + i], v))
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
            offset += then.len();
            if let Some((_, v)) = best {
                out.insert(s, v);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::training::{train_recipient, TrainingOptions};
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
            // Users whose id is a multiple of 7 have not consented, of 11 are suppressed.
            users: df! {
                "user_id" => users.iter().map(|u| u.0).collect::<Vec<_>>(),
                "created_at" => users.iter().map(|u| u.1).collect::<Vec<_>>(),
                "marketing_opt_in" => users.iter().map(|u| i64::from(u.0 % 7 != 0)).collect::<Vec<_>>(),
            }
            .unwrap(),
            purchases: df! {
                "user_id" => purchases.iter().map(|p| p.0).collect::<Vec<_>>(),
                "item_id" => purchases.iter().map(|_| 1i64).collect::<Vec<_>>(),
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
            suppressions: df! {
                "user_id" => users.iter().map(|u| u.0).filter(|u| u % 11 == 0).collect::<Vec<_>>(),
            }
            .unwrap(),
            items: df! {
                "item_id" => Vec::<i64>::new(),
                "game_id" => Vec::<i64>::new(),
            }
            .unwrap(),
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
        // The gift of day 350: friend 2 (received one gift from 1 before, no orders in the 30
        // days, the older friend; 4 sessions, which only the "most active" rule reads) and
        // friend 3 (sent 1 a gift, one order of their own in the 30 days, the newer friend).
        assert_eq!(p.rows[2], 4..6);
        assert_eq!(row(4), vec![345.0, 5.0, 1.0, 0.0, 0.0, 1.0]);
        assert_eq!(row(5), vec![150.0, 200.0, 0.0, 1.0, 1.0, 0.0]);
        assert_eq!(p.friend_sessions_30d[4..6], [4.0, 0.0]);
        assert_eq!(p.label[4..6], [true, false]);
        // The first gift: nothing sent before it.
        assert_eq!(row(0)[2], 0.0);
    }

    #[test]
    fn the_model_learns_who_receives_gifts_where_the_rules_cannot() {
        // 1,500 senders with three friends each: the gifts go to the friend made at signup,
        // who is neither the most recent friend nor the most active one. Some friends order
        // for themselves in the month before the night, which a shard reads of friends in
        // other shards through the night's signals.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut users, mut purchases, mut engagement, mut friendships) =
            (vec![], vec![], vec![], vec![]);
        let mut closest = Vec::new();
        for s in 0..1500i64 {
            let sender = 10 * s + 1;
            users.push((sender, 0));
            let close = rng.random_range(0..3i64);
            closest.push(sender + 1 + close);
            let shopper = sender + 1 + rng.random_range(0..3i64);
            purchases.push((shopper, 500 * D + rng.random_range(0..15) * D, None));
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
        let t = m.figures.top_one;
        assert_eq!((m.figures.gifts, m.figures.to_a_friend), (1500, 1500));
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
        let stored = Recipients::from_artifact(&m.artifact, Scorer::Native).unwrap();
        assert!(matches!(stored, Recipients::Model(_)));

        // Tonight, each sender is suggested that friend when they may be named, and never a
        // friend who has not consented or is suppressed.
        let cutoff = opts.as_of.cutoff();
        let whole = stored
            .suggest(&AffinityTables::from(src.clone()), cutoff, 1, None)
            .unwrap();
        let named = |u: i64| u % 7 != 0 && u % 11 != 0;
        assert!(whole.values().all(|&v| named(v)));
        let (mut right, mut could) = (0, 0);
        for (s, &close) in closest.iter().enumerate() {
            if named(close) {
                could += 1;
                right += usize::from(whole.get(&(10 * s as i64 + 1)) == Some(&close));
            }
        }
        assert!(
            could > 1100 && right as f64 > 0.95 * could as f64,
            "{right} of {could}"
        );
        // A sender with a friend who may be named gets one of them; one without gets none.
        for s in 0..1500i64 {
            let sender = 10 * s + 1;
            let any = (1..=3).any(|k| named(sender + k));
            assert_eq!(whole.contains_key(&sender), any, "sender {sender}");
        }

        // A shard of the users, with the night's signals of every user, suggests exactly what
        // the whole does for its users.
        let needs = crate::features::SharedNeeds {
            drop_items: vec![],
            gifts: true,
            gift_items: vec![1],
        };
        let signals = crate::features::FriendSignals::compute(&src, cutoff, &needs).unwrap();
        // The gift items' rows: every user's, from the signals as from the whole tables; an
        // item the signals were not computed for is refused.
        let rows = |signals| {
            let (p, w) =
                crate::features::gift_item_rows(signals, &src.purchases, &src.wishlist, &[1])
                    .unwrap();
            (p.height(), w.height())
        };
        assert_eq!(rows(Some(&signals)), rows(None));
        assert_eq!(rows(None), (src.purchases.height(), 0));
        assert!(crate::features::gift_item_rows(
            Some(&signals),
            &src.purchases,
            &src.wishlist,
            &[2]
        )
        .is_err());
        let mine = |u: Option<i64>| u.is_some_and(|u| crate::shard::shard_of(u, 2) == 0);
        let keep = |frame: &DataFrame, by: &[&str]| {
            let columns: Vec<Vec<Option<i64>>> =
                by.iter().map(|c| ints(frame, c).unwrap()).collect();
            let mask: BooleanChunked = (0..frame.height())
                .map(|i| columns.iter().any(|c| mine(c[i])))
                .collect();
            frame.filter(&mask).unwrap()
        };
        let part = AffinityTables {
            users: keep(&src.users, &["user_id"]),
            purchases: keep(&src.purchases, &["user_id", "recipient_user_id"]),
            friendships: keep(&src.friendships, &["user_id"]),
            suppressions: keep(&src.suppressions, &["user_id"]),
            wishlist: src.wishlist.clone(),
            items: src.items.clone(),
            friend_signals: Some(signals),
        };
        let some = stored.suggest(&part, cutoff, 1, None).unwrap();
        // Asked for some senders, it suggests to those alone, the same friends.
        let few: HashSet<i64> = [1, 11, 21, 31].into_iter().collect();
        let chosen = stored
            .suggest(&AffinityTables::from(src.clone()), cutoff, 1, Some(&few))
            .unwrap();
        assert!(!chosen.is_empty() && chosen.keys().all(|u| few.contains(u)));
        assert!(chosen.iter().all(|(u, v)| whole[u] == *v));
        let expected: HashMap<i64, i64> =
            whole.into_iter().filter(|&(u, _)| mine(Some(u))).collect();
        assert!(some.len() > 1000, "{}", some.len());
        assert_eq!(some, expected);
    }
}

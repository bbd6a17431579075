//! The event features of rows that share one cutoff — a night's scoring — computed without a
//! join: each table's events are summed per user in one pass, the user's slot found by a table
//! of ids (or a hash of the id when the ids are sparse), and the sums read out in the rows'
//! order.
//!
//! With many cutoffs (training) the same features come from polars plans that join each row to
//! its user's events (see `compute`); a test holds the two equal on random tables. A
//! night has one cutoff, and there the plans (by parts of the users, grouped, then joined back
//! to the rows eight times) were most of the featurization's time at 1M users; every aggregate
//! is a count, an integer sum or a minimum, so these sums are exact and the same.

use polars::prelude::*;

use super::windows::{within, DAILY, DAILY_COLUMNS, MESSAGE_DAYS};
use super::{friends, windows, SourceTables};
use crate::{Result, DAY};

/// The users of a night's rows, each given a slot that its sums are kept in.
struct Slots {
    index: Index,
    /// How many users have a slot.
    users: usize,
    /// Each row's slot; `None` for a row without a user.
    of_row: Vec<Option<u32>>,
}

/// Where a user's slot is found.
enum Index {
    /// By the id's place from the smallest id (`NONE`: no row has that id). Most platforms
    /// number their users, so a shard's ids are dense enough for a table, which finds a slot
    /// several times faster than a hash.
    Dense { first: i64, slots: Vec<u32> },
    /// By a hash of the id.
    Hashed(PlHashMap<i64, u32>),
}

/// A slot of [`Index::Dense`] that no user has.
const NONE: u32 = u32::MAX;
/// Ids a dense index may span per user: its table then takes at most 64 bytes a user, less
/// than the sums of one table take.
const DENSE_SPAN: i64 = 16;

impl Index {
    fn get(&self, user: i64) -> Option<u32> {
        match self {
            Index::Dense { first, slots } => {
                let at = usize::try_from(user.checked_sub(*first)?).ok()?;
                slots.get(at).copied().filter(|s| *s != NONE)
            }
            Index::Hashed(map) => map.get(&user).copied(),
        }
    }
}

/// Per slot: whether the user had an event in view, and `K` sums of them.
struct Sums<const K: usize> {
    seen: Vec<bool>,
    sums: Vec<[i64; K]>,
}

impl Slots {
    fn new(users: &Int64Chunked) -> Slots {
        let mut map = PlHashMap::with_capacity(users.len());
        let of_row = users
            .iter()
            .map(|u| {
                u.map(|u| {
                    let next = map.len() as u32;
                    *map.entry(u).or_insert(next)
                })
            })
            .collect();
        let count = map.len();
        let index = match (users.min(), users.max()) {
            (Some(first), Some(last))
                if last
                    .checked_sub(first)
                    .is_some_and(|span| span < DENSE_SPAN * count as i64) =>
            {
                let mut slots = vec![NONE; (last - first + 1) as usize];
                for (user, slot) in map {
                    slots[(user - first) as usize] = slot;
                }
                Index::Dense { first, slots }
            }
            _ => Index::Hashed(map),
        };
        Slots {
            index,
            users: count,
            of_row,
        }
    }

    /// Folds every event of `users` at `times` that lies at least `min_age` seconds before
    /// `cutoff` into its user's sums with `add(age, values, sums)`, where `values` holds the
    /// event's entries of the `values` columns. Events of other users, or without a user or a
    /// time, are passed over.
    fn tally<const K: usize>(
        &self,
        users: &Int64Chunked,
        times: &Int64Chunked,
        values: &[&Int64Chunked],
        (cutoff, min_age): (i64, i64),
        mut add: impl FnMut(i64, &[Option<i64>], &mut [i64; K]),
    ) -> Sums<K> {
        let mut out = Sums {
            seen: vec![false; self.users],
            sums: vec![[0; K]; self.users],
        };
        // The columns stream side by side, an array of each at a time (their chunks aligned:
        // copied whole only when a frame's columns were chunked apart), a row at a time.
        let mut all = vec![users, times];
        all.extend_from_slice(values);
        let lengths = |c: &Int64Chunked| c.chunk_lengths().collect::<Vec<_>>();
        let aligned: Vec<std::borrow::Cow<Int64Chunked>> =
            if all.iter().all(|c| lengths(c) == lengths(users)) {
                all.into_iter().map(std::borrow::Cow::Borrowed).collect()
            } else {
                all.into_iter()
                    .map(|c| std::borrow::Cow::Owned(c.rechunk().into_owned()))
                    .collect()
            };
        let arrays: Vec<Vec<_>> = aligned
            .iter()
            .map(|c| c.downcast_iter().collect())
            .collect();
        let mut row = vec![None; values.len()];
        // Most tables list a user's events together: the last user's slot saves most lookups.
        let mut last: Option<(i64, Option<u32>)> = None;
        for chunk in 0..arrays[0].len() {
            let (users, times) = (arrays[0][chunk], arrays[1][chunk]);
            let mut columns: Vec<_> = arrays[2..].iter().map(|c| c[chunk].iter()).collect();
            for (user, time) in users.iter().zip(times.iter()) {
                for (value, column) in row.iter_mut().zip(&mut columns) {
                    *value = column.next().flatten().copied();
                }
                let (Some(&user), Some(&time)) = (user, time) else {
                    continue;
                };
                let age = cutoff - time;
                if age < min_age {
                    continue;
                }
                let slot = match last {
                    Some((u, slot)) if u == user => slot,
                    _ => {
                        let slot = self.index.get(user);
                        last = Some((user, slot));
                        slot
                    }
                };
                let Some(slot) = slot else {
                    continue;
                };
                out.seen[slot as usize] = true;
                add(age, &row, &mut out.sums[slot as usize]);
            }
        }
        out
    }

    /// The sums of each row's user as columns named `names`, in the rows' order; missing for a
    /// user without an event in view, as for a row without a match in a left join. The sums
    /// are let go as soon as they are read.
    fn columns<const K: usize>(&self, names: [&str; K], sums: Sums<K>) -> Vec<Column> {
        (0..K)
            .map(|k| {
                let values = self.of_row.iter().map(|slot| {
                    let s = (*slot)? as usize;
                    sums.seen[s].then_some(sums.sums[s][k])
                });
                Int64Chunked::from_iter_options(names[k].into(), values).into_column()
            })
            .collect()
    }
}

fn ints<'a>(frame: &'a DataFrame, name: &str) -> Result<&'a Int64Chunked> {
    Ok(frame.column(name)?.i64()?)
}

/// The event features of `rows` (`user_id`, in the order the columns are returned), all at
/// `cutoff`: the columns the plans of `featurize` join to the rows, under
/// the same names. With `threads` above one, the daily engagement (most of the events) is
/// summed on a thread of its own beside the other tables.
pub(super) fn event_columns(
    src: &SourceTables,
    rows: &DataFrame,
    cutoff: i64,
    threads: usize,
) -> Result<Vec<Column>> {
    let slots = Slots::new(ints(rows, "user_id")?);
    let (out, daily) = if threads > 1 {
        std::thread::scope(|scope| {
            let daily = scope.spawn(|| daily_columns(&slots, src, cutoff));
            let others = other_columns(&slots, src, cutoff);
            (
                others,
                daily
                    .join()
                    .expect("the daily engagement's sums do not panic"),
            )
        })
    } else {
        (
            other_columns(&slots, src, cutoff),
            daily_columns(&slots, src, cutoff),
        )
    };
    let mut out = out?;
    out.extend(daily?);
    Ok(out)
}

/// The [`DAILY`] features: daily rows count only once the whole day lies before the cutoff.
fn daily_columns(slots: &Slots, src: &SourceTables, cutoff: i64) -> Result<Vec<Column>> {
    let e = &src.engagement_daily;
    let columns = DAILY_COLUMNS
        .iter()
        .map(|c| ints(e, c))
        .collect::<Result<Vec<_>>>()?;
    let daily = slots.tally::<{ DAILY.len() }>(
        ints(e, "user_id")?,
        ints(e, "day")?,
        &columns,
        (cutoff, DAY),
        |age, v, s| {
            for (sum, d) in s.iter_mut().zip(&DAILY) {
                *sum += d.add(age, v);
            }
        },
    );
    Ok(slots.columns(DAILY.map(|d| d.name), daily))
}

/// The features of every table but the daily engagement.
fn other_columns(slots: &Slots, src: &SourceTables, cutoff: i64) -> Result<Vec<Column>> {
    let mut out = Vec::new();

    let p = &src.purchases;
    let orders = slots.tally::<10>(
        ints(p, "user_id")?,
        ints(p, "purchased_at")?,
        &[
            ints(p, "paid_cents")?,
            ints(p, "list_price_cents")?,
            ints(p, "is_gift")?,
        ],
        (cutoff, 1),
        |age, v, s| {
            let (paid, list, gift) = (v[0], v[1], v[2]);
            // A missing price is no discount, and a missing amount adds nothing, as in the plans.
            let discounted = matches!((paid, list), (Some(p), Some(l)) if p < l);
            let (d30, d90, d365) = (within(age, 30), within(age, 90), within(age, 365));
            s[9] = if s[0] == 0 { age } else { s[9].min(age) };
            s[0] += 1;
            s[1] += i64::from(d30);
            s[2] += i64::from(d90);
            s[3] += i64::from(d365);
            s[4] += i64::from(d365 && discounted);
            s[5] += i64::from(discounted);
            if d365 {
                s[6] += paid.unwrap_or(0);
                s[7] += if discounted { paid.unwrap_or(0) } else { 0 };
                s[8] += i64::from(gift == Some(1));
            }
        },
    );
    out.extend(slots.columns(
        [
            "orders_total",
            "orders_30d",
            "orders_90d",
            "orders_365d",
            "discounted_orders_365d",
            "discounted_orders_total",
            "spend_cents_365d",
            "discounted_spend_cents_365d",
            "gifts_sent_365d",
            "last_purchase_age",
        ],
        orders,
    ));

    let gifts = slots.tally::<1>(
        ints(p, "recipient_user_id")?,
        ints(p, "purchased_at")?,
        &[],
        (cutoff, 1),
        |age, _, s| s[0] += i64::from(within(age, 365)),
    );
    out.extend(slots.columns(["gifts_received_365d"], gifts));

    let w = &src.wishlist;
    let wishlist = slots.tally::<1>(
        ints(w, "user_id")?,
        ints(w, "added_at")?,
        &[],
        (cutoff, 1),
        |_, _, s| s[0] += 1,
    );
    out.extend(slots.columns(["wishlist_items"], wishlist));

    // Each user's recent orders counted once (by the night's shards together, see
    // [`super::FriendSignals`]) and summed over the user's friends.
    let recent =
        friends::recent_orders(src.friend_signals.as_ref(), &src.purchases, cutoff)?.collect()?;
    let recent: PlHashMap<i64, i64> = ints(&recent, "user_id")?
        .iter()
        .zip(ints(&recent, "orders")?.iter())
        .filter_map(|(u, n)| Some((u?, n?)))
        .collect();
    let f = &src.friendships;
    let friends = slots.tally::<2>(
        ints(f, "user_id")?,
        ints(f, "since")?,
        &[ints(f, "friend_id")?],
        (cutoff, 1),
        |_, v, s| {
            s[0] += 1;
            s[1] += v[0].and_then(|friend| recent.get(&friend)).unwrap_or(&0);
        },
    );
    out.extend(slots.columns(["friends", "friend_purchases_30d"], friends));

    let treated =
        windows::messages(&src.campaign_exposures, cutoff - MESSAGE_DAYS * DAY).collect()?;
    let messages = slots.tally::<2>(
        ints(&treated, "user_id")?,
        ints(&treated, "assigned_at")?,
        &[],
        (cutoff, 1),
        |age, _, s| {
            s[0] += i64::from(within(age, 30));
            s[1] += i64::from(within(age, 90));
        },
    );
    out.extend(slots.columns(["messages_30d", "messages_90d"], messages));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense ids get a table, sparse ones a hash; both find every user's slot, in the order of
    /// first appearance, and no slot for any other id.
    #[test]
    fn a_user_has_the_same_slot_whichever_index_finds_it() {
        for (ids, dense) in [
            (
                vec![Some(7), Some(3), None, Some(7), Some(9), Some(4)],
                true,
            ),
            (vec![Some(-5), Some(i64::MAX), Some(0), Some(-5)], false),
            (vec![Some(1), Some(1_000)], false),
        ] {
            let users = Int64Chunked::from_iter_options("user_id".into(), ids.clone().into_iter());
            let slots = Slots::new(&users);
            assert_eq!(matches!(slots.index, Index::Dense { .. }), dense, "{ids:?}");
            let mut seen: Vec<i64> = Vec::new();
            for (id, slot) in ids.iter().zip(&slots.of_row) {
                let Some(id) = id else {
                    assert_eq!(*slot, None);
                    continue;
                };
                if !seen.contains(id) {
                    seen.push(*id);
                }
                let first = seen.iter().position(|s| s == id).unwrap() as u32;
                assert_eq!(*slot, Some(first), "{ids:?}");
                assert_eq!(slots.index.get(*id), Some(first), "{ids:?}");
            }
            assert_eq!(slots.users, seen.len());
            for other in [i64::MIN, -6, 2, 5, 8, 10, 999, i64::MAX - 1] {
                if !seen.contains(&other) {
                    assert_eq!(slots.index.get(other), None, "{ids:?}: {other}");
                }
            }
        }
    }
}

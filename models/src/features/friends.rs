//! What a user's features read of *other* users' rows as of one cutoff: how many orders each
//! user placed in the last 30 days (summed over a user's friends: `friend_purchases_30d`), who
//! owns each dropped game (a drop's affinity counts friends owning it), and, on a night with a
//! gift campaign, who may be named as a gift's recipient (consented, not suppressed).
//!
//! A night split into shards computes these once, from the rows of every user (the "shared"
//! slice: the last days' orders and the dropped games' orders), and hands them to each shard,
//! so that a shard reads its own users' rows and nothing else. Tables holding every user (or a
//! training sample with its friends' rows) compute them from their own rows: one code path, so
//! a shard's features are those of the whole.

use polars::prelude::*;

use super::windows::FRIEND_WINDOW_DAYS;
use super::SourceTables;
use crate::{ModelError, Result, DAY};

/// What of other users the night's campaigns read, beside every user's recent orders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedNeeds {
    /// Items of the night's drops (or every item of their games): the owners of their games.
    pub drop_items: Vec<i64>,
    /// A gift campaign runs: who may be named as a recipient.
    pub gifts: bool,
    /// Items of the gift campaigns' `[items]` lists: who owns and who wishlisted each, the
    /// recipients' side of the item a gift suggests.
    pub gift_items: Vec<i64>,
}

impl SharedNeeds {
    /// The items whose rows of a table sliced by `s` are in the shared slice, ascending.
    pub fn items_of(&self, s: &super::Slicing) -> Vec<i64> {
        let mut items = Vec::new();
        if s.shared_for_drops {
            items.extend(&self.drop_items);
        }
        if s.shared_for_gift_items {
            items.extend(&self.gift_items);
        }
        sorted(&items)
    }
}

/// Other users' signals, as of one cutoff, for the features of a shard of users.
#[derive(Debug, Clone)]
pub struct FriendSignals {
    cutoff: i64,
    /// `user_id`, `orders`: each user's orders in the [`FRIEND_WINDOW_DAYS`] days before the
    /// cutoff (users without any are absent).
    recent_orders: DataFrame,
    /// The games of the dropped items the signals cover.
    games: Vec<i64>,
    /// `game_id`, `user_id`: every owner of an item of one of `games` bought before the cutoff,
    /// once per game.
    game_owners: DataFrame,
    /// The users who may be named as a gift's recipient, ascending: consented and not
    /// suppressed. `None` unless a gift campaign asked for them.
    may_receive: Option<std::sync::Arc<[i64]>>,
    /// The gift items the signals cover, ascending, and the `purchases` and `wishlist` rows of
    /// those items.
    gift_items: Vec<i64>,
    gift_rows: (DataFrame, DataFrame),
}

impl FriendSignals {
    /// The signals of every user of `src` as of `cutoff`, with the owners of the games of
    /// `drop_items`. `src` must hold the rows of every user whose signals are read: all users,
    /// or the night's shared slice (see [`super::Slicing`]).
    pub fn compute(src: &SourceTables, cutoff: i64, needs: &SharedNeeds) -> Result<FriendSignals> {
        let games = games_of(src, &needs.drop_items)?;
        Ok(FriendSignals {
            cutoff,
            recent_orders: recent_orders_of(&src.purchases, cutoff).collect()?,
            game_owners: game_owners_of(&src.purchases, &src.items, cutoff, &games)?.collect()?,
            games,
            may_receive: if needs.gifts {
                Some(may_receive_of(&src.users, &src.suppressions)?.into())
            } else {
                None
            },
            gift_rows: rows_of_items(&src.purchases, &src.wishlist, &needs.gift_items)?,
            gift_items: sorted(&needs.gift_items),
        })
    }

    /// Users with signals (for logs).
    pub fn users(&self) -> usize {
        self.recent_orders.height()
    }

    fn check_cutoff(&self, cutoff: i64) -> Result<()> {
        if self.cutoff != cutoff {
            return Err(ModelError::FriendSignals(format!(
                "computed as of {} but read as of {cutoff}",
                self.cutoff
            )));
        }
        Ok(())
    }
}

/// `user_id`, `orders`: each user's orders in the 30 days before `cutoff` — from the tables'
/// `signals`, or from their own `purchases`.
pub(crate) fn recent_orders(
    signals: Option<&FriendSignals>,
    purchases: &DataFrame,
    cutoff: i64,
) -> Result<LazyFrame> {
    match signals {
        Some(signals) => {
            signals.check_cutoff(cutoff)?;
            Ok(signals.recent_orders.clone().lazy())
        }
        None => Ok(recent_orders_of(purchases, cutoff)),
    }
}

/// `user_id`: the owners of `game` before `cutoff` — from the tables' `signals`, or from their
/// own `purchases` and `items`.
pub(super) fn game_owners(
    signals: Option<&FriendSignals>,
    purchases: &DataFrame,
    items: &DataFrame,
    cutoff: i64,
    game: i64,
) -> Result<LazyFrame> {
    let owners = match signals {
        Some(signals) => {
            signals.check_cutoff(cutoff)?;
            if !signals.games.contains(&game) {
                return Err(ModelError::FriendSignals(format!(
                    "computed without the owners of game {game}"
                )));
            }
            signals.game_owners.clone().lazy()
        }
        None => game_owners_of(purchases, items, cutoff, &[game])?,
    };
    Ok(owners
        .filter(col("game_id").eq(lit(game)))
        .select([col("user_id")]))
}

/// The users who may be named as a gift's recipient, ascending — from the tables' `signals`
/// (shared by every shard, not copied: 8 bytes a user of the night), or from their own `users`
/// and `suppressions`.
pub(crate) fn may_receive(
    signals: Option<&FriendSignals>,
    users: &DataFrame,
    suppressions: &DataFrame,
) -> Result<std::sync::Arc<[i64]>> {
    match signals {
        Some(signals) => signals.may_receive.clone().ok_or_else(|| {
            ModelError::FriendSignals("computed without who may receive a gift".into())
        }),
        None => Ok(may_receive_of(users, suppressions)?.into()),
    }
}

/// The `purchases` and `wishlist` rows of `items` (the gift campaigns' lists) — from the
/// tables' `signals`, or from their own `purchases` and `wishlist`: what a gift's item is
/// chosen from, for a recipient in any shard.
pub fn gift_item_rows(
    signals: Option<&FriendSignals>,
    purchases: &DataFrame,
    wishlist: &DataFrame,
    items: &[i64],
) -> Result<(DataFrame, DataFrame)> {
    match signals {
        Some(signals) => {
            let covered = |i: &i64| signals.gift_items.binary_search(i).is_ok();
            if let Some(missing) = items.iter().find(|i| !covered(i)) {
                return Err(ModelError::FriendSignals(format!(
                    "computed without the holders of gift item {missing}"
                )));
            }
            Ok(signals.gift_rows.clone())
        }
        None => rows_of_items(purchases, wishlist, items),
    }
}

fn sorted(items: &[i64]) -> Vec<i64> {
    let mut out = items.to_vec();
    out.sort_unstable();
    out.dedup();
    out
}

/// The rows of `purchases` and `wishlist` whose item is one of `items`.
fn rows_of_items(
    purchases: &DataFrame,
    wishlist: &DataFrame,
    items: &[i64],
) -> Result<(DataFrame, DataFrame)> {
    let items = sorted(items);
    let keep = |frame: &DataFrame| -> Result<DataFrame> {
        if items.is_empty() || frame.height() == 0 {
            return Ok(frame.head(Some(0)));
        }
        let mask: BooleanChunked = frame
            .column("item_id")?
            .i64()?
            .iter()
            .map(|i| i.is_some_and(|i| items.binary_search(&i).is_ok()))
            .collect();
        Ok(frame.filter(&mask)?)
    };
    Ok((keep(purchases)?, keep(wishlist)?))
}

/// Users consented to marketing (`marketing_opt_in` = 1) without any suppression row, as the
/// scored frame's `marketing_opt_in` and `suppressed` flags tell them apart.
fn may_receive_of(users: &DataFrame, suppressions: &DataFrame) -> Result<Vec<i64>> {
    let mut suppressed: Vec<i64> = if suppressions.height() == 0 {
        Vec::new()
    } else {
        suppressions
            .column("user_id")?
            .i64()?
            .iter()
            .flatten()
            .collect()
    };
    suppressed.sort_unstable();
    let ids = users.column("user_id")?.i64()?;
    let opt_in = users.column("marketing_opt_in")?.cast(&DataType::Int64)?;
    let mut out: Vec<i64> = ids
        .iter()
        .zip(opt_in.i64()?.iter())
        .filter_map(|(u, o)| u.filter(|_| o == Some(1)))
        .filter(|u| suppressed.binary_search(u).is_err())
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn recent_orders_of(purchases: &DataFrame, cutoff: i64) -> LazyFrame {
    // An order of age 1 s to 30 days, as the rows' `count_if(within(..))` with `min_age` 1
    // counts it.
    purchases
        .clone()
        .lazy()
        .filter(col("purchased_at").gt_eq(lit(cutoff - FRIEND_WINDOW_DAYS * DAY)))
        .filter(col("purchased_at").lt(lit(cutoff)))
        .group_by([col("user_id")])
        .agg([len().cast(DataType::Int64).alias("orders")])
}

fn game_owners_of(
    purchases: &DataFrame,
    items: &DataFrame,
    cutoff: i64,
    games: &[i64],
) -> Result<LazyFrame> {
    let wanted = df!("game_id" => games).map(IntoLazy::lazy);
    let items = items
        .clone()
        .lazy()
        .select([col("item_id"), col("game_id")])
        .join(
            wanted?,
            [col("game_id")],
            [col("game_id")],
            JoinArgs::new(JoinType::Inner),
        );
    Ok(purchases
        .clone()
        .lazy()
        .filter(col("purchased_at").lt(lit(cutoff)))
        .select([col("user_id"), col("item_id")])
        .join(
            items,
            [col("item_id")],
            [col("item_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .select([col("game_id"), col("user_id")])
        .unique(None, UniqueKeepStrategy::Any))
}

/// The games of `drop_items`, in order, once each (items not in the table have none).
fn games_of(src: &SourceTables, drop_items: &[i64]) -> Result<Vec<i64>> {
    let items = &src.items;
    let ids = items.column("item_id")?.i64()?;
    let games = items.column("game_id")?.i64()?;
    let mut out: Vec<i64> = ids
        .iter()
        .zip(games.iter())
        .filter_map(|(i, g)| i.filter(|i| drop_items.contains(i)).and(g))
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

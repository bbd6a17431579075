//! The feature computations: polars expressions over the extracted tables, every event seen only
//! when it happened before its row's cutoff.

use polars::prelude::*;
use polars_ops::frame::MaintainOrderJoin;

use super::windows::{
    Daily, DAILY, DAILY_COLUMNS, ENGAGEMENT_DAYS, FRIEND_ORDER_DAYS, FRIEND_WINDOW_DAYS,
    MESSAGE_DAYS, SESSIONS,
};
use super::{friends, night, windows, CategoricalLevels, FeatureFrame, SourceTables, FEATURES};
use crate::{ModelError, Result, DAY};

fn days(n: i64) -> Expr {
    lit(n * DAY)
}

/// Whether an event of age `age` (seconds before the cutoff) lies within the last `n` days.
fn within(n: i64) -> Expr {
    col("age").lt_eq(days(n))
}

fn count_if(cond: Expr, name: &str) -> Expr {
    when(cond)
        .then(lit(1i64))
        .otherwise(lit(0i64))
        .sum()
        .alias(name)
}

fn sum_if(cond: Expr, value: Expr, name: &str) -> Expr {
    when(cond)
        .then(value)
        .otherwise(lit(0i64))
        .sum()
        .alias(name)
}

fn ratio(num: &str, den: &str) -> Expr {
    when(col(den).gt(lit(0i64)))
        .then(col(num).cast(DataType::Float64) / col(den).cast(DataType::Float64))
        .otherwise(lit(NULL).cast(DataType::Float64))
}

/// The `(row_id, user_id, cutoff)` rows features are computed for, of many cutoffs (a
/// night's rows, of one, go through `night`).
struct Cutoffs {
    rows: LazyFrame,
}

impl Cutoffs {
    /// Aggregates with `aggs`, for each row, the events of its user (`key`) at least `min_age`
    /// seconds before its cutoff that pass `keep`; `aggs` and `keep` may read the event's `age`
    /// (seconds before the cutoff) and `cutoff`. One row per `row_id` with such events.
    fn aggregate(
        &self,
        events: LazyFrame,
        (key, time): (&str, &str),
        min_age: i64,
        keep: Option<Expr>,
        aggs: Vec<Expr>,
    ) -> LazyFrame {
        let visible = self
            .rows
            .clone()
            .join(
                events,
                [col("user_id")],
                [col(key)],
                JoinArgs::new(JoinType::Inner),
            )
            .with_column((col("cutoff") - col(time)).alias("age"))
            .filter(col("age").gt_eq(lit(min_age)));
        let kept = match keep {
            Some(cond) => visible.filter(cond),
            None => visible,
        };
        kept.group_by([col("row_id")]).agg(aggs)
    }
}

/// A [`Daily`] feature as a polars expression over a user's days (with their `age`).
fn daily_expr(d: &Daily) -> Expr {
    match d.sum {
        Some(c) => sum_if(within(d.days), col(DAILY_COLUMNS[c]), d.name),
        None => count_if(
            within(d.days).and(col(DAILY_COLUMNS[SESSIONS]).gt(lit(0i64))),
            d.name,
        ),
    }
}

/// Computes the feature catalogue for each `(row_id, user_id, cutoff)` row of `cutoffs`. Rows
/// of one cutoff (a night's) are summed on up to `threads` threads; the plans of many run on
/// polars' own pool.
pub fn featurize(
    src: &SourceTables,
    cutoffs: &DataFrame,
    levels: &CategoricalLevels,
    threads: usize,
) -> Result<FeatureFrame> {
    // In `row_id` order, which every join below keeps: the frame is built in its final order
    // instead of sorted at the end, a copy of the whole frame less.
    let cut = cutoffs
        .clone()
        .lazy()
        .select([col("row_id"), col("user_id"), col("cutoff")])
        .sort(["row_id"], SortMultipleOptions::default());
    let (min_cut, max_cut) = cutoff_range(cutoffs)?;
    let events = if cutoffs.height() > 0 && min_cut == max_cut {
        // One cutoff for every row: a night's scoring.
        let rows = cut.collect()?;
        let columns = night::event_columns(src, &rows, min_cut, threads)?;
        rows.hstack(&columns)?.lazy()
    } else {
        event_plans(src, cut, (min_cut, max_cut))
    };

    let users = src.users.clone().lazy().select([
        col("user_id"),
        col("created_at"),
        col("country"),
        col("platform"),
        col("has_email"),
    ]);
    let mut joined = events
        .join(users, [col("user_id")], [col("user_id")], in_row_order())
        .with_column(
            ((col("cutoff") - col("created_at")).cast(DataType::Float64) / lit(DAY as f64))
                .alias("tenure_days"),
        )
        .with_columns([
            (col("spend_cents_365d").cast(DataType::Float64) / lit(100.0)).alias("spend_365d"),
            (col("last_purchase_age").cast(DataType::Float64) / lit(DAY as f64))
                .alias("days_since_last_purchase"),
            ratio("discounted_orders_365d", "orders_365d").alias("discount_share_orders_365d"),
            ratio("discounted_spend_cents_365d", "spend_cents_365d")
                .alias("discount_share_spend_365d"),
            ratio("discounted_orders_total", "orders_total").alias("discount_share_orders_total"),
        ]);

    // A rate rather than a count, so that a young account's buying compares with an old one's.
    let observed_days = when(col("tenure_days").gt(lit(365.0)))
        .then(lit(365.0))
        .when(col("tenure_days").lt(lit(1.0)))
        .then(lit(1.0))
        .otherwise(col("tenure_days"));
    joined = joined.with_column(
        when(col("tenure_days").is_not_null())
            .then(
                col("orders_365d")
                    .cast(DataType::Float64)
                    .fill_null(lit(0.0))
                    * lit(365.0)
                    / observed_days,
            )
            .otherwise(lit(NULL).cast(DataType::Float64))
            .alias("orders_per_year"),
    );

    // Counts are zero, not missing, for users without events; recency and shares stay missing.
    let mut select = vec![col("row_id"), col("user_id"), col("cutoff")];
    select.extend(FEATURES.iter().map(|f| {
        match (f.categorical, f.nullable) {
            (true, _) => col(f.name),
            (false, true) => col(f.name).cast(DataType::Float64),
            (false, false) => col(f.name)
                .cast(DataType::Float64)
                .fill_null(lit(0.0))
                .alias(f.name),
        }
    }));
    let mut frame = joined.select(select).collect()?;

    for f in FEATURES.iter().filter(|f| f.categorical) {
        let known = levels.levels(f.name);
        let codes: Vec<Option<f64>> = frame
            .column(f.name)?
            .str()?
            .iter()
            .map(|v| {
                v.and_then(|s| known.iter().position(|l| l == s))
                    .map(|p| p as f64)
            })
            .collect();
        frame.with_column(Column::new(f.name.into(), codes))?;
    }
    Ok(FeatureFrame { frame })
}

/// A left join that keeps the rows of the left frame in their order.
fn in_row_order() -> JoinArgs {
    JoinArgs {
        maintain_order: MaintainOrderJoin::Left,
        ..JoinArgs::new(JoinType::Left)
    }
}

/// The rows `cut` (in `row_id` order) of cutoffs from `min_cut` to `max_cut` with their event
/// features: each table's events joined to the rows of their user, aggregated by row and
/// joined back, in the rows' order.
fn event_plans(src: &SourceTables, cut: LazyFrame, (min_cut, max_cut): (i64, i64)) -> LazyFrame {
    let rows = Cutoffs { rows: cut.clone() };
    let purchases = src.purchases.clone().lazy();

    let orders = rows.aggregate(
        purchases.clone().select([
            col("user_id"),
            col("purchased_at"),
            col("paid_cents"),
            col("is_gift"),
            col("paid_cents")
                .lt(col("list_price_cents"))
                .alias("discounted"),
        ]),
        ("user_id", "purchased_at"),
        1,
        None,
        vec![
            len().cast(DataType::Int64).alias("orders_total"),
            count_if(within(30), "orders_30d"),
            count_if(within(90), "orders_90d"),
            count_if(within(365), "orders_365d"),
            count_if(within(365).and(col("discounted")), "discounted_orders_365d"),
            count_if(col("discounted"), "discounted_orders_total"),
            sum_if(within(365), col("paid_cents"), "spend_cents_365d"),
            sum_if(
                within(365).and(col("discounted")),
                col("paid_cents"),
                "discounted_spend_cents_365d",
            ),
            count_if(
                within(365).and(col("is_gift").eq(lit(1i64))),
                "gifts_sent_365d",
            ),
            col("age").min().alias("last_purchase_age"),
        ],
    );

    let gifts_received = rows.aggregate(
        purchases
            .clone()
            .filter(col("recipient_user_id").is_not_null())
            .select([col("recipient_user_id"), col("purchased_at")]),
        ("recipient_user_id", "purchased_at"),
        1,
        None,
        vec![count_if(within(365), "gifts_received_365d")],
    );

    // Daily rows count only once the whole day lies before the cutoff.
    let engagement = rows.aggregate(
        src.engagement_daily
            .clone()
            .lazy()
            .filter(col("day").gt_eq(lit(min_cut - ENGAGEMENT_DAYS * DAY)))
            .filter(col("day").lt(lit(max_cut))),
        ("user_id", "day"),
        DAY,
        None,
        DAILY.iter().map(daily_expr).collect(),
    );

    let wishlist = rows.aggregate(
        src.wishlist
            .clone()
            .lazy()
            .select([col("user_id"), col("added_at")]),
        ("user_id", "added_at"),
        1,
        None,
        vec![len().cast(DataType::Int64).alias("wishlist_items")],
    );

    let friends = rows.aggregate(
        src.friendships
            .clone()
            .lazy()
            .select([col("user_id"), col("since")]),
        ("user_id", "since"),
        1,
        None,
        vec![len().cast(DataType::Int64).alias("friends")],
    );

    // Friends' orders: only the 30 days before the latest cutoff can matter, so the purchases
    // are trimmed before the (potentially large) friend × order join.
    let friend_orders = src
        .friendships
        .clone()
        .lazy()
        .select([col("user_id"), col("friend_id"), col("since")])
        .join(
            purchases
                .clone()
                .filter(col("purchased_at").gt_eq(lit(min_cut - FRIEND_ORDER_DAYS * DAY)))
                .filter(col("purchased_at").lt(lit(max_cut)))
                .select([col("user_id").alias("friend_id"), col("purchased_at")]),
            [col("friend_id")],
            [col("friend_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .select([col("user_id"), col("since"), col("purchased_at")]);
    let friend_purchases = rows.aggregate(
        friend_orders,
        ("user_id", "purchased_at"),
        1,
        Some(col("since").lt(col("cutoff"))),
        vec![count_if(within(FRIEND_WINDOW_DAYS), "friend_purchases_30d")],
    );

    let messages = rows.aggregate(
        windows::messages(&src.campaign_exposures, min_cut - MESSAGE_DAYS * DAY),
        ("user_id", "assigned_at"),
        1,
        None,
        vec![
            count_if(within(30), "messages_30d"),
            count_if(within(90), "messages_90d"),
        ],
    );

    let mut joined = cut;
    for part in [
        orders,
        gifts_received,
        engagement,
        wishlist,
        friends,
        friend_purchases,
        messages,
    ] {
        joined = joined.join(part, [col("row_id")], [col("row_id")], in_row_order());
    }
    joined
}

fn cutoff_range(cutoffs: &DataFrame) -> Result<(i64, i64)> {
    let c = cutoffs.column("cutoff")?.i64()?;
    Ok((c.min().unwrap_or(0), c.max().unwrap_or(0)))
}

/// Whether each `(row_id, user_id, cutoff)` row's user bought anything in
/// `[cutoff, cutoff + window_days)`, in `row_id` order: the outcome of an exposure.
pub fn purchased_within(
    src: &SourceTables,
    cutoffs: &DataFrame,
    window_days: i64,
) -> Result<Vec<bool>> {
    let cut = cutoffs
        .clone()
        .lazy()
        .select([col("row_id"), col("user_id"), col("cutoff")]);
    let bought = cut
        .clone()
        .join(
            src.purchases
                .clone()
                .lazy()
                .select([col("user_id"), col("purchased_at")]),
            [col("user_id")],
            [col("user_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(col("purchased_at").gt_eq(col("cutoff")))
        .filter(col("purchased_at").lt(col("cutoff") + days(window_days)))
        .group_by([col("row_id")])
        .agg([len().cast(DataType::Int64).alias("orders")]);
    let frame = cut
        .join(
            bought,
            [col("row_id")],
            [col("row_id")],
            JoinArgs::new(JoinType::Left),
        )
        .sort(["row_id"], SortMultipleOptions::default())
        .collect()?;
    Ok(frame
        .column("orders")?
        .i64()?
        .iter()
        .map(|v| v.unwrap_or(0) > 0)
        .collect())
}

/// What a drop's affinity reads of the source (see [`drop_affinity`]). A night keeps these
/// tables once its users are scored and lets the others go: the daily engagement and the
/// exposures, most of its memory, are read by the features alone.
#[derive(Debug, Clone)]
pub struct AffinityTables {
    pub users: DataFrame,
    pub items: DataFrame,
    pub purchases: DataFrame,
    pub wishlist: DataFrame,
    pub friendships: DataFrame,
    /// Who may not be messaged, nor named as a gift's recipient.
    pub suppressions: DataFrame,
    /// As in [`SourceTables::friend_signals`].
    pub friend_signals: Option<super::FriendSignals>,
}

impl From<SourceTables> for AffinityTables {
    fn from(src: SourceTables) -> Self {
        AffinityTables {
            users: src.users,
            items: src.items,
            purchases: src.purchases,
            wishlist: src.wishlist,
            friendships: src.friendships,
            suppressions: src.suppressions,
            friend_signals: src.friend_signals,
        }
    }
}

/// Affinity of every user to a dropped item, from events before `cutoff`: 3 points for owning
/// an item of its game, 2 for wishlisting one, 1 for owning an item of its publisher, 1 when a
/// friend owns its game. Columns `user_id`, `affinity` (0 for unrelated users), one row per user.
pub fn drop_affinity(src: &AffinityTables, item_id: i64, cutoff: i64) -> Result<DataFrame> {
    let item = src
        .items
        .clone()
        .lazy()
        .filter(col("item_id").eq(lit(item_id)))
        .collect()?;
    if item.height() == 0 {
        return Err(ModelError::UnknownItem(item_id));
    }
    let game = item.column("game_id")?.i64()?.get(0).unwrap_or_default();
    let publisher = item
        .column("publisher_id")?
        .i64()?
        .get(0)
        .unwrap_or_default();
    let items =
        src.items
            .clone()
            .lazy()
            .select([col("item_id"), col("game_id"), col("publisher_id")]);
    let with_items = |events: LazyFrame, time: &str| {
        events.filter(col(time).lt(lit(cutoff))).join(
            items.clone(),
            [col("item_id")],
            [col("item_id")],
            JoinArgs::new(JoinType::Inner),
        )
    };
    let flag = |cond: Expr, name: &str| {
        when(cond)
            .then(lit(1i64))
            .otherwise(lit(0i64))
            .max()
            .alias(name)
    };
    let owned = with_items(src.purchases.clone().lazy(), "purchased_at")
        .group_by([col("user_id")])
        .agg([
            flag(col("game_id").eq(lit(game)), "owns_game"),
            flag(col("publisher_id").eq(lit(publisher)), "owns_publisher"),
        ]);
    let wished = with_items(src.wishlist.clone().lazy(), "added_at")
        .filter(col("game_id").eq(lit(game)))
        .group_by([col("user_id")])
        .agg([len().cast(DataType::Int64).alias("wishlisted_game")]);
    let friend_owns = src
        .friendships
        .clone()
        .lazy()
        .filter(col("since").lt(lit(cutoff)))
        .join(
            friends::game_owners(
                src.friend_signals.as_ref(),
                &src.purchases,
                &src.items,
                cutoff,
                game,
            )?
            .select([col("user_id").alias("friend_id")]),
            [col("friend_id")],
            [col("friend_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .group_by([col("user_id")])
        .agg([len().cast(DataType::Int64).alias("friends_own_game")]);
    let mut users = src.users.clone().lazy().select([col("user_id")]);
    for part in [owned, wished, friend_owns] {
        users = users.join(
            part,
            [col("user_id")],
            [col("user_id")],
            JoinArgs::new(JoinType::Left),
        );
    }
    let points = |name: &str, weight: f64| {
        when(col(name).fill_null(lit(0i64)).gt(lit(0i64)))
            .then(lit(weight))
            .otherwise(lit(0.0))
    };
    Ok(users
        .select([
            col("user_id"),
            (points("owns_game", 3.0)
                + points("wishlisted_game", 2.0)
                + points("owns_publisher", 1.0)
                + points("friends_own_game", 1.0))
            .alias("affinity"),
        ])
        .sort(["user_id"], SortMultipleOptions::default())
        .collect()?)
}

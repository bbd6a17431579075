//! Point-in-time features over the source data contract.
//!
//! Every feature is computed *as of a cutoff*: a row `(row_id, user_id, cutoff)` sees only the
//! events strictly before its cutoff (whole days for the daily engagement table). Training rows
//! use the exposure time as cutoff and scoring rows use the run date, through the same code, so
//! a model is scored on exactly the features it was trained on and a training set rebuilt later
//! is the same.

use polars::prelude::*;

use crate::{ModelError, Result, DAY};

/// What a source column holds once extracted. Times are UTC Unix seconds (`Int`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    Int,
    Float,
    Text,
}

/// One table of the source data contract: the columns its extraction query must return.
#[derive(Debug)]
pub struct TableSpec {
    pub name: &'static str,
    pub columns: &'static [(&'static str, ColumnKind)],
}

use ColumnKind::{Float, Int, Text};

/// The source data contract, in the order the extraction stage reads it. The query
/// `sql/queries/<name>.sql` must return exactly these columns (booleans as 0/1 integers, times
/// as UTC Unix seconds, `day` as the Unix second of the day's midnight).
pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "users",
        columns: &[
            ("user_id", Int),
            ("created_at", Int),
            ("country", Text),
            ("platform", Text),
            ("has_email", Int),
            ("marketing_opt_in", Int),
        ],
    },
    TableSpec {
        name: "suppressions",
        columns: &[("user_id", Int), ("reason", Text), ("created_at", Int)],
    },
    TableSpec {
        name: "items",
        columns: &[
            ("item_id", Int),
            ("title", Text),
            ("kind", Text),
            ("publisher_id", Int),
            ("game_id", Int),
            ("category", Text),
            ("list_price_cents", Int),
            ("released_at", Int),
        ],
    },
    TableSpec {
        name: "purchases",
        columns: &[
            ("order_id", Int),
            ("user_id", Int),
            ("item_id", Int),
            ("purchased_at", Int),
            ("list_price_cents", Int),
            ("paid_cents", Int),
            ("is_gift", Int),
            ("recipient_user_id", Int),
        ],
    },
    TableSpec {
        name: "engagement_daily",
        columns: &[
            ("user_id", Int),
            ("day", Int),
            ("sessions", Int),
            ("shop_views", Int),
            ("wishlist_adds", Int),
            ("cart_adds", Int),
        ],
    },
    TableSpec {
        name: "wishlist",
        columns: &[("user_id", Int), ("item_id", Int), ("added_at", Int)],
    },
    TableSpec {
        name: "friendships",
        columns: &[("user_id", Int), ("friend_id", Int), ("since", Int)],
    },
    TableSpec {
        name: "campaign_exposures",
        columns: &[
            ("campaign_id", Text),
            ("user_id", Int),
            ("assigned_at", Int),
            ("arm", Text),
            ("discount_pct", Float),
        ],
    },
];

/// The extracted source data, one frame per contract table (columns as in [`TABLES`]).
#[derive(Debug, Clone)]
pub struct SourceTables {
    pub users: DataFrame,
    pub suppressions: DataFrame,
    pub items: DataFrame,
    pub purchases: DataFrame,
    pub engagement_daily: DataFrame,
    pub wishlist: DataFrame,
    pub friendships: DataFrame,
    pub campaign_exposures: DataFrame,
}

impl SourceTables {
    /// Assembles the tables from `(name, frame)` pairs in any order; every contract table is
    /// required.
    pub fn from_named(mut frames: Vec<(String, DataFrame)>) -> Result<Self> {
        let mut take = |name: &str| -> Result<DataFrame> {
            let pos = frames.iter().position(|(n, _)| n == name).ok_or_else(|| {
                ModelError::Artifact(format!("source table {name} was not extracted"))
            })?;
            Ok(frames.swap_remove(pos).1)
        };
        Ok(Self {
            users: take("users")?,
            suppressions: take("suppressions")?,
            items: take("items")?,
            purchases: take("purchases")?,
            engagement_daily: take("engagement_daily")?,
            wishlist: take("wishlist")?,
            friendships: take("friendships")?,
            campaign_exposures: take("campaign_exposures")?,
        })
    }

    /// Row counts per table, for logs and fingerprints.
    pub fn row_counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("users", self.users.height()),
            ("suppressions", self.suppressions.height()),
            ("items", self.items.height()),
            ("purchases", self.purchases.height()),
            ("engagement_daily", self.engagement_daily.height()),
            ("wishlist", self.wishlist.height()),
            ("friendships", self.friendships.height()),
            ("campaign_exposures", self.campaign_exposures.height()),
        ]
    }
}

/// A feature of the catalogue: its column name and what it means.
#[derive(Debug)]
pub struct FeatureDef {
    pub name: &'static str,
    pub description: &'static str,
    /// Categorical features are integer codes into [`CategoricalLevels`].
    pub categorical: bool,
    /// Missing (not zero) when the user has no events to compute it from.
    pub nullable: bool,
}

/// A count-like feature: zero when the user has no events.
const fn num(name: &'static str, description: &'static str) -> FeatureDef {
    FeatureDef {
        name,
        description,
        categorical: false,
        nullable: false,
    }
}

/// A feature that stays missing when there is nothing to compute it from.
const fn opt(name: &'static str, description: &'static str) -> FeatureDef {
    FeatureDef {
        name,
        description,
        categorical: false,
        nullable: true,
    }
}

const fn cat(name: &'static str, description: &'static str) -> FeatureDef {
    FeatureDef {
        name,
        description,
        categorical: true,
        nullable: true,
    }
}

/// The feature catalogue, in model column order.
pub const FEATURES: &[FeatureDef] = &[
    opt("tenure_days", "days since the account was created"),
    opt("has_email", "1 when the user has an email address"),
    cat("platform", "platform of the account (categorical)"),
    cat("country", "country of the account (categorical)"),
    num("orders_total", "orders ever placed"),
    num("orders_30d", "orders in the last 30 days"),
    num("orders_90d", "orders in the last 90 days"),
    num("orders_365d", "orders in the last 365 days"),
    num(
        "spend_365d",
        "amount paid in the last 365 days, in currency units",
    ),
    opt(
        "days_since_last_purchase",
        "days since the last order (missing when none)",
    ),
    opt(
        "discount_share_orders_365d",
        "share of last-365-day orders that were discounted (missing when none)",
    ),
    opt(
        "discount_share_spend_365d",
        "share of last-365-day spend paid on discounted orders (missing when none)",
    ),
    num(
        "gifts_sent_365d",
        "gifts bought for others in the last 365 days",
    ),
    num("gifts_received_365d", "gifts received in the last 365 days"),
    num("sessions_30d", "sessions in the last 30 days"),
    num("sessions_90d", "sessions in the last 90 days"),
    num("shop_views_30d", "shop page views in the last 30 days"),
    num("cart_adds_30d", "cart additions in the last 30 days"),
    num(
        "wishlist_adds_30d",
        "wishlist additions in the last 30 days",
    ),
    num(
        "active_days_30d",
        "days with at least one session in the last 30 days",
    ),
    num(
        "active_days_90d",
        "days with at least one session in the last 90 days",
    ),
    num("shop_views_90d", "shop page views in the last 90 days"),
    num(
        "active_days_365d",
        "days with at least one session in the last 365 days",
    ),
    num("sessions_365d", "sessions in the last 365 days"),
    opt(
        "discount_share_orders_total",
        "share of all orders ever placed that were discounted (missing when none)",
    ),
    opt(
        "orders_per_year",
        "orders in the last 365 days per year of account age (young accounts scaled up)",
    ),
    num("wishlist_items", "items on the wishlist"),
    num("friends", "friends on the platform"),
    num(
        "friend_purchases_30d",
        "orders placed by friends in the last 30 days",
    ),
    num(
        "messages_30d",
        "campaign messages received in the last 30 days (fatigue)",
    ),
    num(
        "messages_90d",
        "campaign messages received in the last 90 days",
    ),
];

/// Names of the catalogue's features, in model column order.
pub fn feature_names() -> Vec<String> {
    FEATURES.iter().map(|f| f.name.to_string()).collect()
}

/// Column indices of the categorical features, for LightGBM's `categorical_feature`.
pub fn categorical_indices() -> Vec<usize> {
    FEATURES
        .iter()
        .enumerate()
        .filter(|(_, f)| f.categorical)
        .map(|(i, _)| i)
        .collect()
}

/// The levels of the categorical features, fixed at training time and stored with the model so
/// that scoring encodes them identically (an unseen level becomes missing).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CategoricalLevels {
    pub platform: Vec<String>,
    pub country: Vec<String>,
}

impl CategoricalLevels {
    /// Sorted distinct values of the users' categorical columns.
    pub fn from_users(users: &DataFrame) -> Result<Self> {
        let distinct = |name: &str| -> Result<Vec<String>> {
            let mut v: Vec<String> = users
                .column(name)?
                .str()?
                .iter()
                .flatten()
                .map(str::to_string)
                .collect();
            v.sort_unstable();
            v.dedup();
            Ok(v)
        };
        Ok(Self {
            platform: distinct("platform")?,
            country: distinct("country")?,
        })
    }

    /// The levels of a categorical feature (`platform` or `country`).
    pub fn levels(&self, feature: &str) -> &[String] {
        match feature {
            "platform" => &self.platform,
            _ => &self.country,
        }
    }
}

/// Features of a set of `(row_id, user_id, cutoff)` rows, sorted by `row_id`: columns `row_id`,
/// `user_id`, `cutoff`, then every feature of [`FEATURES`] as `Float64` (missing = null).
#[derive(Debug, Clone)]
pub struct FeatureFrame {
    pub frame: DataFrame,
}

impl FeatureFrame {
    pub fn height(&self) -> usize {
        self.frame.height()
    }

    /// One feature column as floats, missing values as NaN (LightGBM's missing).
    pub fn values(&self, name: &str) -> Result<Vec<f64>> {
        let col = self.frame.column(name)?.cast(&DataType::Float64)?;
        Ok(col.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }

    /// An integer column (`row_id`, `user_id`, `cutoff`).
    pub fn ints(&self, name: &str) -> Result<Vec<i64>> {
        Ok(self
            .frame
            .column(name)?
            .i64()?
            .iter()
            .map(|v| v.unwrap_or_default())
            .collect())
    }

    /// The row-major matrix of the named features, in that order. Refuses names the frame does
    /// not have, naming them, so a model never scores on a shifted schema.
    pub fn matrix(&self, names: &[String]) -> Result<Vec<f64>> {
        let have: Vec<String> = self
            .frame
            .get_column_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !have.contains(n))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(ModelError::FeatureMismatch {
                missing,
                extra: vec![],
            });
        }
        let columns = names
            .iter()
            .map(|n| self.values(n))
            .collect::<Result<Vec<_>>>()?;
        let rows = self.height();
        let mut out = Vec::with_capacity(rows * names.len());
        for r in 0..rows {
            out.extend(columns.iter().map(|c| c[r]));
        }
        Ok(out)
    }
}

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

/// Joins events to the cutoff rows of their user and keeps those at least `min_age` seconds
/// before the cutoff, with their `age`. `events` must hold `key` and `time`.
fn visible(cut: &LazyFrame, events: LazyFrame, key: &str, time: &str, min_age: i64) -> LazyFrame {
    cut.clone()
        .join(
            events,
            [col("user_id")],
            [col(key)],
            JoinArgs::new(JoinType::Inner),
        )
        .with_column((col("cutoff") - col(time)).alias("age"))
        .filter(col("age").gt_eq(lit(min_age)))
}

/// Computes the feature catalogue for each `(row_id, user_id, cutoff)` row of `cutoffs`.
pub fn featurize(
    src: &SourceTables,
    cutoffs: &DataFrame,
    levels: &CategoricalLevels,
) -> Result<FeatureFrame> {
    let cut = cutoffs
        .clone()
        .lazy()
        .select([col("row_id"), col("user_id"), col("cutoff")]);
    let (min_cut, max_cut) = cutoff_range(cutoffs)?;
    let purchases = src.purchases.clone().lazy();

    let orders = visible(
        &cut,
        purchases.clone().select([
            col("user_id"),
            col("purchased_at"),
            col("list_price_cents"),
            col("paid_cents"),
            col("is_gift"),
        ]),
        "user_id",
        "purchased_at",
        1,
    )
    .with_column(
        col("paid_cents")
            .lt(col("list_price_cents"))
            .alias("discounted"),
    )
    .group_by([col("row_id")])
    .agg([
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
    ])
    .with_columns([
        (col("spend_cents_365d").cast(DataType::Float64) / lit(100.0)).alias("spend_365d"),
        (col("last_purchase_age").cast(DataType::Float64) / lit(DAY as f64))
            .alias("days_since_last_purchase"),
        ratio("discounted_orders_365d", "orders_365d").alias("discount_share_orders_365d"),
        ratio("discounted_spend_cents_365d", "spend_cents_365d").alias("discount_share_spend_365d"),
        ratio("discounted_orders_total", "orders_total").alias("discount_share_orders_total"),
    ]);

    let gifts_received = visible(
        &cut,
        purchases
            .clone()
            .filter(col("recipient_user_id").is_not_null())
            .select([col("recipient_user_id"), col("purchased_at")]),
        "recipient_user_id",
        "purchased_at",
        1,
    )
    .group_by([col("row_id")])
    .agg([count_if(within(365), "gifts_received_365d")]);

    // Daily rows count only once the whole day lies before the cutoff.
    let engagement = visible(
        &cut,
        src.engagement_daily
            .clone()
            .lazy()
            .filter(col("day").gt_eq(lit(min_cut - 366 * DAY)))
            .filter(col("day").lt(lit(max_cut))),
        "user_id",
        "day",
        DAY,
    )
    .group_by([col("row_id")])
    .agg([
        sum_if(within(30), col("sessions"), "sessions_30d"),
        sum_if(within(90), col("sessions"), "sessions_90d"),
        sum_if(within(30), col("shop_views"), "shop_views_30d"),
        sum_if(within(30), col("cart_adds"), "cart_adds_30d"),
        sum_if(within(30), col("wishlist_adds"), "wishlist_adds_30d"),
        count_if(
            within(30).and(col("sessions").gt(lit(0i64))),
            "active_days_30d",
        ),
        count_if(
            within(90).and(col("sessions").gt(lit(0i64))),
            "active_days_90d",
        ),
        sum_if(within(90), col("shop_views"), "shop_views_90d"),
        count_if(
            within(365).and(col("sessions").gt(lit(0i64))),
            "active_days_365d",
        ),
        sum_if(within(365), col("sessions"), "sessions_365d"),
    ]);

    let wishlist = visible(
        &cut,
        src.wishlist
            .clone()
            .lazy()
            .select([col("user_id"), col("added_at")]),
        "user_id",
        "added_at",
        1,
    )
    .group_by([col("row_id")])
    .agg([len().cast(DataType::Int64).alias("wishlist_items")]);

    let friends = visible(
        &cut,
        src.friendships
            .clone()
            .lazy()
            .select([col("user_id"), col("since")]),
        "user_id",
        "since",
        1,
    )
    .group_by([col("row_id")])
    .agg([len().cast(DataType::Int64).alias("friends")]);

    // Friends' orders: only the 30 days before the latest cutoff can matter, so the purchases
    // are trimmed before the (potentially large) friend × order join.
    let friend_orders = src
        .friendships
        .clone()
        .lazy()
        .select([col("user_id"), col("friend_id"), col("since")])
        .join(
            purchases
                .filter(col("purchased_at").gt_eq(lit(min_cut - 31 * DAY)))
                .filter(col("purchased_at").lt(lit(max_cut)))
                .select([col("user_id").alias("friend_id"), col("purchased_at")]),
            [col("friend_id")],
            [col("friend_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .select([col("user_id"), col("since"), col("purchased_at")]);
    let friend_purchases = visible(&cut, friend_orders, "user_id", "purchased_at", 1)
        .filter(col("since").lt(col("cutoff")))
        .group_by([col("row_id")])
        .agg([count_if(within(30), "friend_purchases_30d")]);

    let messages = visible(
        &cut,
        src.campaign_exposures
            .clone()
            .lazy()
            .filter(col("arm").eq(lit("treatment")))
            .select([col("user_id"), col("assigned_at")]),
        "user_id",
        "assigned_at",
        1,
    )
    .group_by([col("row_id")])
    .agg([
        count_if(within(30), "messages_30d"),
        count_if(within(90), "messages_90d"),
    ]);

    let users = src.users.clone().lazy().select([
        col("user_id"),
        col("created_at"),
        col("country"),
        col("platform"),
        col("has_email"),
    ]);
    let mut joined = cut
        .join(
            users,
            [col("user_id")],
            [col("user_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(
            ((col("cutoff") - col("created_at")).cast(DataType::Float64) / lit(DAY as f64))
                .alias("tenure_days"),
        );
    for part in [
        orders,
        gifts_received,
        engagement,
        wishlist,
        friends,
        friend_purchases,
        messages,
    ] {
        joined = joined.join(
            part,
            [col("row_id")],
            [col("row_id")],
            JoinArgs::new(JoinType::Left),
        );
    }

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
    let mut frame = joined
        .select(select)
        .sort(["row_id"], SortMultipleOptions::default())
        .collect()?;

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

/// Affinity of every user to a dropped item, from events before `cutoff`: 3 points for owning
/// an item of its game, 2 for wishlisting one, 1 for owning an item of its publisher, 1 when a
/// friend owns its game. Columns `user_id`, `affinity` (0 for unrelated users), one row per user.
pub fn drop_affinity(src: &SourceTables, item_id: i64, cutoff: i64) -> Result<DataFrame> {
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
            owned
                .clone()
                .filter(col("owns_game").eq(lit(1i64)))
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

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

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
            pp.push(if rng2.random_bool(0.4) { 700i64 } else { 1000 });
            pg.push(i64::from(rng2.random_bool(0.2)));
            pr.push(rng2.random_bool(0.2).then(|| rng2.random_range(1..=USERS)));
        }
        let days: Vec<i64> = (0..n).map(|_| (t() / DAY) * DAY).collect();
        let eng_users: Vec<i64> = (0..n).map(|i| (i as i64 % USERS) + 1).collect();
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
                "user_id" => eng_users.clone(), "day" => days, "sessions" => vec![2i64; n],
                "shop_views" => vec![1i64; n], "wishlist_adds" => vec![0i64; n], "cart_adds" => vec![1i64; n],
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
            let before = featurize(&src, &cutoffs, &levels).unwrap();
            let mut moved = src.clone();
            moved.purchases =
                scramble_after(&src.purchases, "purchased_at", cutoff, false, &mut rng);
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
            let after = featurize(&moved, &cutoffs, &levels).unwrap();
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
        let f = featurize(&src, &cutoffs, &levels).unwrap();
        let orders: f64 = f.values("orders_total").unwrap().iter().sum();
        assert_eq!(orders, 40.0, "every order lies before the cutoff");
    }
}

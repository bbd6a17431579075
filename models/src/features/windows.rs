//! What the features count and over which days: the windows that the extraction's slices, the
//! polars plans of many cutoffs (`compute`) and a night's sums (`night`) all read, defined once.

use polars::prelude::*;

use crate::DAY;

/// Whether an event `age` seconds before the cutoff lies within the last `days` days (as the
/// plans' `within` tests it).
pub(super) fn within(age: i64, days: i64) -> bool {
    age <= days * DAY
}

/// Days of daily engagement before a cutoff that any feature reads (the 365-day windows, and the
/// day that is not yet whole).
pub(super) const ENGAGEMENT_DAYS: i64 = 366;
/// Days of friends' orders `friend_purchases_30d` counts.
pub(super) const FRIEND_WINDOW_DAYS: i64 = 30;
/// Days of friends' orders before a cutoff that any feature reads (`friend_purchases_30d`, and
/// the day that is not yet whole).
pub(super) const FRIEND_ORDER_DAYS: i64 = FRIEND_WINDOW_DAYS + 1;
/// Days of campaign exposures before a cutoff that any feature reads (`messages_90d`).
pub(super) const MESSAGE_DAYS: i64 = 91;

/// The messages the `messages_*` features count: `user_id` and `assigned_at` of the exposures
/// in the treatment arm from `since` on (the earliest cutoff less [`MESSAGE_DAYS`]).
pub(super) fn messages(exposures: &DataFrame, since: i64) -> LazyFrame {
    exposures
        .clone()
        .lazy()
        .filter(col("assigned_at").gt_eq(lit(since)))
        .filter(col("arm").eq(lit("treatment")))
        .select([col("user_id"), col("assigned_at")])
}

/// A feature of daily engagement: a column of the days summed, or the active days (with a
/// session) counted, over the last `days` whole days before the cutoff. One table of them
/// defines the features for both ways they are computed: a polars expression per feature for
/// rows of many cutoffs, and a sum per user for a night's (see `night`).
pub(super) struct Daily {
    pub(super) name: &'static str,
    /// The column of [`DAILY_COLUMNS`] summed; `None`: the days with a session are counted.
    pub(super) sum: Option<usize>,
    pub(super) days: i64,
}

/// The columns of a day that the [`DAILY`] features read, by index.
pub(super) const DAILY_COLUMNS: [&str; 4] =
    ["sessions", "shop_views", "wishlist_adds", "cart_adds"];
pub(super) const SESSIONS: usize = 0;
const SHOP_VIEWS: usize = 1;
const WISHLIST_ADDS: usize = 2;
const CART_ADDS: usize = 3;

pub(super) const DAILY: [Daily; 10] = [
    Daily::sum("sessions_30d", SESSIONS, 30),
    Daily::sum("sessions_90d", SESSIONS, 90),
    Daily::sum("shop_views_30d", SHOP_VIEWS, 30),
    Daily::sum("cart_adds_30d", CART_ADDS, 30),
    Daily::sum("wishlist_adds_30d", WISHLIST_ADDS, 30),
    Daily::active("active_days_30d", 30),
    Daily::active("active_days_90d", 90),
    Daily::sum("shop_views_90d", SHOP_VIEWS, 90),
    Daily::active("active_days_365d", 365),
    Daily::sum("sessions_365d", SESSIONS, 365),
];

impl Daily {
    const fn sum(name: &'static str, column: usize, days: i64) -> Daily {
        Daily {
            name,
            sum: Some(column),
            days,
        }
    }

    const fn active(name: &'static str, days: i64) -> Daily {
        Daily {
            name,
            sum: None,
            days,
        }
    }

    /// What a day of `age` with `values` (of [`DAILY_COLUMNS`]) adds to the feature, as
    /// the plans' expression counts it: a missing value adds nothing.
    pub(super) fn add(&self, age: i64, values: &[Option<i64>]) -> i64 {
        if !within(age, self.days) {
            return 0;
        }
        match self.sum {
            Some(c) => values[c].unwrap_or(0),
            None => i64::from(values[SESSIONS].is_some_and(|s| s > 0)),
        }
    }
}

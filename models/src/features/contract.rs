//! The source data contract as the features read it: each table's columns and kinds, and the
//! extracted tables themselves.

use polars::prelude::*;

use crate::{ModelError, Result};

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

//! The source data contract as the features read it: each table's columns and kinds, and the
//! extracted tables themselves.

use polars::prelude::*;

use super::FriendSignals;
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
    /// What of the table a run that only scores reads.
    pub slicing: Slicing,
}

/// What of a table a run that only scores reads (training reads everything): rows no score of
/// the run can see are left in the database, and a shard reads the rows of its own users. The
/// rows other users' features read form the night's shared slice, read once and reduced to
/// [`FriendSignals`] for every shard.
#[derive(Debug, Clone, Copy)]
pub struct Slicing {
    /// The column of each row's event time, when rows are events.
    pub time: Option<&'static str>,
    /// How many days before the cutoff the features read; `None`: the whole history.
    pub lookback_days: Option<i64>,
    /// The columns naming users a row belongs to: a shard reads the rows of its users by any of
    /// them. The first names the row's owner: a row without one belongs to shard 0, where the
    /// contract check sees it. Empty: every shard reads the whole table.
    pub users: &'static [&'static str],
    /// Rows of the last this many days are in the shared slice: a user's features read other
    /// users' recent rows (friends' orders).
    pub shared_days: Option<i64>,
    /// Rows of the dropped items' games are in the shared slice: a drop's affinity reads
    /// whether a user's friends own its game.
    pub shared_for_drops: bool,
    /// Every row is in the shared slice on a night with a gift campaign: a gift's recipient
    /// must be consented and not suppressed, whatever shard they are in.
    pub shared_for_gifts: bool,
    /// Rows of the gift campaigns' items are in the shared slice: a gift's item is one its
    /// recipient does not own, from their wishlist when it can be.
    pub shared_for_gift_items: bool,
    /// The owner's friends read these rows (friends' orders): a training sample of users reads
    /// the rows whose owner is a friend of one of them, whatever their time.
    pub read_by_friends: bool,
}

impl Slicing {
    /// Read whole by every run and every shard.
    pub const WHOLE: Slicing = Slicing {
        time: None,
        lookback_days: None,
        users: &[],
        shared_days: None,
        shared_for_drops: false,
        shared_for_gifts: false,
        shared_for_gift_items: false,
        read_by_friends: false,
    };

    /// Events of users, all their history.
    const fn events(time: &'static str) -> Slicing {
        Slicing {
            time: Some(time),
            users: &["user_id"],
            ..Slicing::WHOLE
        }
    }
}

use super::windows::{ENGAGEMENT_DAYS, FRIEND_ORDER_DAYS, MESSAGE_DAYS};
use ColumnKind::{Float, Int, Text};

/// The source data contract, in the order the extraction stage starts reading it: the largest
/// tables first (by the rows a typical user has in each), so that with a read per core the
/// longest read is never the last to start and the others fill the other cores meanwhile. The query
/// `sql/queries/<name>.sql` must return exactly these columns (booleans as 0/1 integers, times
/// as UTC Unix seconds, `day` as the Unix second of the day's midnight).
pub const TABLES: &[TableSpec] = &[
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
        slicing: Slicing {
            lookback_days: Some(ENGAGEMENT_DAYS),
            ..Slicing::events("day")
        },
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
        slicing: Slicing {
            time: Some("purchased_at"),
            lookback_days: None,
            users: &["user_id", "recipient_user_id"],
            shared_days: Some(FRIEND_ORDER_DAYS),
            shared_for_drops: true,
            shared_for_gifts: false,
            shared_for_gift_items: true,
            read_by_friends: true,
        },
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
        slicing: Slicing {
            lookback_days: Some(MESSAGE_DAYS),
            ..Slicing::events("assigned_at")
        },
    },
    TableSpec {
        name: "friendships",
        columns: &[("user_id", Int), ("friend_id", Int), ("since", Int)],
        slicing: Slicing::events("since"),
    },
    TableSpec {
        name: "wishlist",
        columns: &[("user_id", Int), ("item_id", Int), ("added_at", Int)],
        slicing: Slicing {
            shared_for_gift_items: true,
            ..Slicing::events("added_at")
        },
    },
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
        slicing: Slicing {
            users: &["user_id"],
            shared_for_gifts: true,
            ..Slicing::WHOLE
        },
    },
    TableSpec {
        name: "suppressions",
        columns: &[("user_id", Int), ("reason", Text), ("created_at", Int)],
        slicing: Slicing {
            users: &["user_id"],
            shared_for_gifts: true,
            ..Slicing::WHOLE
        },
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
        slicing: Slicing::WHOLE,
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
    /// What the features read of users the tables do not hold, computed from every user's
    /// rows: set on a shard's tables of a night ([`FriendSignals`]); `None` when the tables
    /// hold the rows themselves (every user, or a training sample with its friends' rows).
    pub friend_signals: Option<FriendSignals>,
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
            friend_signals: None,
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

/// Rows of the source that break the data contract, as one rule finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub table: &'static str,
    /// The column at fault.
    pub column: &'static str,
    /// What is wrong with it, e.g. `is NULL`.
    pub problem: &'static str,
    /// Why it stops the run, or what dropping the rows loses.
    pub why: &'static str,
    pub rows: usize,
}

impl Breach {
    /// No users at all: the run stops.
    pub fn no_users() -> Breach {
        Breach {
            table: "users",
            column: "user_id",
            problem: "has no rows",
            why: "an empty users table is an extraction fault, not a night without users",
            rows: 0,
        }
    }
}

/// Which users extracted tables hold, for the contract check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Every user of the source.
    AllUsers,
    /// One shard of them.
    SomeUsers,
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{} {} in {} row(s) ({})",
            self.table, self.column, self.problem, self.rows, self.why
        )
    }
}

/// The tables after the contract check: rows that break it harmlessly are gone, and said.
#[derive(Debug)]
pub struct Checked {
    pub tables: SourceTables,
    /// Rows dropped as bad data (future-dated events, negative money, unknown arms…).
    pub dropped: Vec<Breach>,
    /// Rows that could put a user who must not be messaged into a list: the run must stop.
    pub stops: Vec<Breach>,
}

/// A rule whose breaking rows are dropped: the table, the column, a mask of the rows that
/// break it (NULL counts as breaking), the problem and what dropping loses.
type DropRule = (&'static str, &'static str, Expr, &'static str, &'static str);

impl SourceTables {
    /// Checks the tables against the contract as of the run `date`. Rows that could let a user
    /// who must not be messaged into a list (NULL or duplicate user ids, NULL consent, NULL
    /// suppression ids, no users at all) are reported in [`Checked::stops`]; data-quality
    /// faults that cannot (events after the run date, negative money, unknown arms, NULL keys of
    /// history) are dropped and reported in [`Checked::dropped`].
    ///
    /// A shard of the users ([`Extent::SomeUsers`]) may be empty: whether the users table is,
    /// is for whoever holds all shards to say ([`Breach::no_users`]).
    pub fn check_contract(self, date: crate::RunDate, extent: Extent) -> Result<Checked> {
        let mut stops = Vec::new();
        let stop = |table, column, problem, why, rows: usize, stops: &mut Vec<Breach>| {
            if rows > 0 {
                stops.push(Breach {
                    table,
                    column,
                    problem,
                    why,
                    rows,
                });
            }
        };
        let users = &self.users;
        if users.height() == 0 && extent == Extent::AllUsers {
            stops.push(Breach::no_users());
        }
        let ids = users.column("user_id")?;
        stop(
            "users",
            "user_id",
            "is NULL",
            "such a user cannot be matched to consent or suppressions",
            ids.null_count(),
            &mut stops,
        );
        stop(
            "users",
            "user_id",
            "is duplicated",
            "two rows of one user may disagree about consent",
            users.height() - ids.n_unique()?,
            &mut stops,
        );
        stop(
            "users",
            "marketing_opt_in",
            "is NULL",
            "consent must be known before anyone is messaged",
            users.column("marketing_opt_in")?.null_count(),
            &mut stops,
        );
        stop(
            "suppressions",
            "user_id",
            "is NULL",
            "a suppressed user without an id would be messaged",
            self.suppressions.column("user_id")?.null_count(),
            &mut stops,
        );

        // Events dated after the run date: no feature sees them, and they can only be faults.
        let end = lit(date.cutoff() + crate::DAY);
        let after = |c: &str| col(c).is_null().or(col(c).gt_eq(end.clone()));
        let null = |c: &str| col(c).is_null();
        let negative = |c: &str| col(c).lt(lit(0i64)).fill_null(lit(false));
        const FUTURE: &str = "is after the run date";
        const FUTURE_WHY: &str = "an event from the future is a fault of the source";
        let rules: Vec<DropRule> = vec![
            (
                "purchases",
                "user_id",
                null("user_id"),
                "is NULL",
                "a purchase of no one",
            ),
            (
                "purchases",
                "purchased_at",
                after("purchased_at"),
                FUTURE,
                FUTURE_WHY,
            ),
            (
                "purchases",
                "list_price_cents",
                negative("list_price_cents"),
                "is negative",
                "a negative price is not a sale",
            ),
            (
                "purchases",
                "paid_cents",
                negative("paid_cents"),
                "is negative",
                "a negative payment is not a sale",
            ),
            (
                "items",
                "list_price_cents",
                negative("list_price_cents"),
                "is negative",
                "a negative price is not an item for sale",
            ),
            ("engagement_daily", "day", after("day"), FUTURE, FUTURE_WHY),
            (
                "wishlist",
                "added_at",
                after("added_at"),
                FUTURE,
                FUTURE_WHY,
            ),
            ("friendships", "since", after("since"), FUTURE, FUTURE_WHY),
            (
                "campaign_exposures",
                "user_id",
                null("user_id"),
                "is NULL",
                "an exposure of no one",
            ),
            (
                "campaign_exposures",
                "assigned_at",
                after("assigned_at"),
                FUTURE,
                FUTURE_WHY,
            ),
            (
                "campaign_exposures",
                "arm",
                col("arm")
                    .eq(lit("treatment"))
                    .or(col("arm").eq(lit("control")))
                    .fill_null(lit(false))
                    .not(),
                "is neither treatment nor control",
                "an exposure of no known arm cannot train an uplift model",
            ),
        ];
        let mut tables = self;
        let mut dropped = Vec::new();
        for (name, frame) in tables.frames_mut() {
            let mine: Vec<&DropRule> = rules.iter().filter(|r| r.0 == name).collect();
            if mine.is_empty() {
                continue;
            }
            // Every rule's count in one pass over the table (the largest has a row per user
            // and day).
            let counts = frame
                .clone()
                .lazy()
                .select(
                    mine.iter()
                        .enumerate()
                        .map(|(i, r)| {
                            r.2.clone()
                                .cast(DataType::Int64)
                                .sum()
                                .alias(format!("r{i}"))
                        })
                        .collect::<Vec<_>>(),
                )
                .collect()?;
            let mut any = false;
            for (i, &&(table, column, _, problem, why)) in mine.iter().enumerate() {
                let rows = counts
                    .column(&format!("r{i}"))?
                    .i64()?
                    .get(0)
                    .unwrap_or(0)
                    .max(0) as usize;
                if rows > 0 {
                    any = true;
                    dropped.push(Breach {
                        table,
                        column,
                        problem,
                        why,
                        rows,
                    });
                }
            }
            if any {
                let bad = mine
                    .iter()
                    .map(|r| r.2.clone())
                    .reduce(|a, b| a.or(b))
                    .unwrap_or(lit(false));
                *frame = frame.clone().lazy().filter(bad.not()).collect()?;
            }
        }
        Ok(Checked {
            tables,
            dropped,
            stops,
        })
    }

    /// Every table by its contract name, to change in place.
    fn frames_mut(&mut self) -> [(&'static str, &mut DataFrame); 8] {
        [
            ("users", &mut self.users),
            ("suppressions", &mut self.suppressions),
            ("items", &mut self.items),
            ("purchases", &mut self.purchases),
            ("engagement_daily", &mut self.engagement_daily),
            ("wishlist", &mut self.wishlist),
            ("friendships", &mut self.friendships),
            ("campaign_exposures", &mut self.campaign_exposures),
        ]
    }
}

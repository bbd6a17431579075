//! Point-in-time features over the source data contract.
//!
//! Every feature is computed *as of a cutoff*: a row `(row_id, user_id, cutoff)` sees only the
//! events strictly before its cutoff (whole days for the daily engagement table). Training rows
//! use the exposure time as cutoff and scoring rows use the run date, through the same code, so
//! a model is scored on exactly the features it was trained on and a training set rebuilt later
//! is the same.

mod compute;
mod contract;
mod friends;
mod night;
#[cfg(test)]
mod tests;
mod windows;

use std::ops::Range;

use polars::prelude::*;

use crate::{ModelError, Result};

pub use compute::{drop_affinity, featurize, purchased_within, AffinityTables};
pub use contract::{Breach, Checked, ColumnKind, Extent, Slicing, SourceTables, TableSpec, TABLES};
pub use friends::{gift_item_rows, FriendSignals, SharedNeeds};
pub(crate) use friends::{may_receive, recent_orders};

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
        self.matrix_rows(names, 0..self.height())
    }

    /// [`FeatureFrame::matrix`] of the rows in `rows` only: a night's users are scored a block
    /// at a time, so the matrix (as large as the frame) is never whole.
    pub fn matrix_rows(&self, names: &[String], rows: Range<usize>) -> Result<Vec<f64>> {
        let missing: Vec<String> = names
            .iter()
            .filter(|n| self.frame.column(n).is_err())
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(ModelError::FeatureMismatch {
                missing,
                extra: vec![],
            });
        }
        let (width, len) = (names.len(), rows.len());
        let mut out = vec![0.0; len * width];
        for (j, name) in names.iter().enumerate() {
            let column = self.frame.column(name)?.cast(&DataType::Float64)?;
            let part = column.slice(rows.start as i64, len);
            for (r, v) in part.f64()?.iter().enumerate() {
                out[r * width + j] = v.unwrap_or(f64::NAN);
            }
        }
        Ok(out)
    }
}

/// Refuses a model whose features differ from the catalogue this build computes, naming the
/// features the frame lacks (`missing`) and those the model does not know (`extra`).
pub fn check_schema(model: &[String], frame: &[String]) -> Result<()> {
    if model == frame {
        return Ok(());
    }
    Err(ModelError::FeatureMismatch {
        missing: model
            .iter()
            .filter(|n| !frame.contains(n))
            .cloned()
            .collect(),
        extra: frame
            .iter()
            .filter(|n| !model.contains(n))
            .cloned()
            .collect(),
    })
}

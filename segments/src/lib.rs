//! Audience building for campaign targeting: campaign configs and their validation, holdouts by
//! salted hash, and the per-kind selection of who gets a campaign tonight.
//!
//! Pure functions over frames and strings: no network, no disk. The binary reads the files and
//! the database; this crate decides.

pub mod campaign;
pub mod holdout;
pub mod items;
pub mod rules;
pub mod select;
#[cfg(test)]
mod testgen;

pub use campaign::{Campaign, CampaignKind, ColumnPreset, ExportFormat, Offer};
pub use holdout::{bucket, Arm};
pub use select::{
    arbitrate, rank, reserve_exploration, select, select_night, Arbitration, Audience, Candidate,
    FunnelStep, History, Limits, Member, PastMessage, Ranking, Reach, SelectionContext,
};

/// Everything that can go wrong while building an audience.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// Every problem of a campaign file, each as `file:line:column: message`.
    #[error("{}", .problems.join("\n"))]
    InvalidCampaign { problems: Vec<String> },
    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("campaign {campaign}: {why}")]
    Selection { campaign: String, why: String },
    /// The items table cannot be read as a catalogue.
    #[error("items: {0}")]
    Items(String),
    /// Rankings of parts of the users that cannot be joined.
    #[error("cannot merge rankings: {0}")]
    Merge(String),
}

pub type Result<T, E = SegmentError> = std::result::Result<T, E>;

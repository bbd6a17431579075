//! Models for campaign targeting: point-in-time features over the source data contract, LightGBM
//! uplift learners, and the metrics that say whether a model ranks users by the purchases a
//! message *causes*.
//!
//! Pure library: frames and numbers in, frames and numbers out. It never touches the network or
//! the disk, so every function here can be tested on fixtures alone.

pub mod artifact;
pub mod calibration;
mod date;
pub mod drift;
pub mod features;
pub mod forest;
pub mod gifts;
pub mod lift;
pub mod metrics;
pub mod shard;
pub mod training;
pub mod uplift;

pub use artifact::{ModelArtifact, ModelMetadata};
pub use date::RunDate;
pub use features::{CategoricalLevels, FeatureFrame, SourceTables, FEATURES};
pub use forest::{Forest, ForestError, Isa, Scorer};
pub use shard::Shard;
pub use training::{ModelName, ScoredFrame, Scorers, TrainedUplift, TrainingOptions};
pub use uplift::{Learner, TrainingSet, UpliftModel, UpliftParams, UpliftScores};

/// Everything that can go wrong inside the models crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("lightgbm: {0}")]
    LightGbm(String),
    #[error("feature schema mismatch: missing {missing:?}, unexpected {extra:?}")]
    FeatureMismatch {
        missing: Vec<String>,
        extra: Vec<String>,
    },
    #[error("cannot train {what}: {why}")]
    Training { what: String, why: String },
    #[error("the friends' signals of a shard were {0}")]
    FriendSignals(String),
    #[error("item {0} is not in the items table")]
    UnknownItem(i64),
    #[error("the {role} model: {source}")]
    Scorer {
        role: String,
        source: crate::forest::ForestError,
    },
    #[error("{0}")]
    Forest(#[from] crate::forest::ForestError),
    #[error("invalid model artifact: {0}")]
    Artifact(String),
    #[error("unknown model {name:?} (known: {known})")]
    UnknownModel { name: String, known: String },
}

impl From<lightgbm3::Error> for ModelError {
    fn from(e: lightgbm3::Error) -> Self {
        ModelError::LightGbm(e.to_string())
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Seconds in a day; every timestamp in the data contract is UTC Unix seconds.
pub const DAY: i64 = 86_400;

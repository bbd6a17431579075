//! Model artifacts: the LightGBM model texts plus the metadata that makes a model reproducible
//! and checkable (feature names and order, categorical levels, training window, row counts,
//! parameters, metrics, data fingerprint, code version). Storing them is the caller's job.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::forest::Scorer;
use crate::uplift::Learner;
use crate::{CategoricalLevels, ModelError, Result, TrainingSet, UpliftModel, UpliftParams};

/// Everything known about a trained model besides its trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMetadata {
    /// Model name, e.g. `conversion_uplift`.
    pub name: String,
    /// Version: training time and data fingerprint, unique per trained model.
    pub version: String,
    /// Meta-learner (`odds`, `s`, `t`, `ct`, `x`, `dr`, `r`) of an uplift model, or
    /// `classifier`.
    pub learner: Learner,
    pub feature_names: Vec<String>,
    pub categorical_levels: CategoricalLevels,
    /// First and last exposure time of the training data, as `YYYY-MM-DD`.
    pub training_window: (String, String),
    pub rows_train: usize,
    pub rows_valid: usize,
    pub rows_test: usize,
    pub params: UpliftParams,
    /// Named metrics on the held-out test exposures (e.g. `qini_auc`).
    pub metrics: Vec<(String, f64)>,
    /// Held-out calibration by decile of the probability that feeds expected value: the
    /// baseline purchase probability of an uplift model (on control rows), the predicted
    /// probability of a classifier.
    #[serde(default)]
    pub calibration: Vec<crate::metrics::DecileRow>,
    /// The Platt map applied to that probability (fitted on the validation rows); the identity
    /// for models stored before calibration existed.
    #[serde(default)]
    pub probability_calibration: crate::calibration::Platt,
    /// The odds learner's log-odds shift per arm; absent for the other learners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm_shift: Option<crate::uplift::ArmShift>,
    /// The discount levels (percent) the dose learner was trained on (as its step columns
    /// say); absent for the other learners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discount_levels: Vec<u32>,
    /// How a gift recipient model's night ranks a sender's friends: by the model, or by the
    /// rule that did better on the validation senders' gifts; absent for the other models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_pick: Option<Pick>,
    /// SHA-256 of the training matrix, arms and outcomes.
    pub data_fingerprint: String,
    /// The training rows' distributions, against which each night's users are checked for
    /// drift; `None` for models stored before monitoring existed.
    #[serde(default)]
    pub profile: Option<crate::drift::Profile>,
    pub code_version: String,
    pub created_at: String,
}

impl ModelMetadata {
    /// A held-out metric by name (NaN when the model has none of that name).
    pub fn metric(&self, key: &str) -> f64 {
        self.metrics
            .iter()
            .find(|(k, _)| k == key)
            .map_or(f64::NAN, |(_, v)| *v)
    }

    /// The metric a model is judged by: the Qini AUC of an uplift model, the AUC of a
    /// classifier, the top-1 accuracy of the way a gift recipient model chooses. Returns its
    /// name and value.
    pub fn headline(&self) -> (&'static str, f64) {
        let key = match self.learner {
            _ if self.recipient_pick.is_some() => "top1",
            Learner::Classifier => "auc",
            _ => "qini_auc",
        };
        (key, self.metric(key))
    }
}

/// A way of putting one of a sender's friends first that a night can run: what a gift
/// recipient model's metadata says to use (see the gifts module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// The friend the recipient model scores highest.
    Model = 0,
    /// The most recent friend.
    MostRecentFriend = 1,
}

impl Pick {
    /// In order of preference on a tie: the model, then the rule.
    pub const ALL: [Pick; 2] = [Pick::Model, Pick::MostRecentFriend];
}

/// A model as stored: metadata plus the LightGBM text of each of the learner's models, by role
/// (e.g. `treated`, `control`).
#[derive(Debug, Clone)]
pub struct ModelArtifact {
    pub metadata: ModelMetadata,
    pub models: Vec<(String, String)>,
}

impl ModelArtifact {
    pub fn new(metadata: ModelMetadata, model: &UpliftModel) -> Result<Self> {
        Ok(Self {
            metadata,
            models: model.to_texts()?,
        })
    }

    /// Rebuilds the model for `scorer`, checking that the trees and the metadata agree on the
    /// features.
    pub fn model(&self, scorer: Scorer) -> Result<UpliftModel> {
        let mut model = UpliftModel::from_texts(
            self.metadata.learner,
            &self.models,
            &self.metadata.feature_names,
            scorer,
        )?;
        model.baseline_calibration = self.metadata.probability_calibration;
        model.arm_shift = self.metadata.arm_shift;
        Ok(model)
    }

    /// Rebuilds a classifier artifact (the discount-sensitivity model).
    pub fn classifier(&self, scorer: Scorer) -> Result<crate::uplift::Classifier> {
        let mut c = crate::uplift::Classifier::from_texts(
            &self.models,
            &self.metadata.feature_names,
            scorer,
        )?;
        c.calibration = self.metadata.probability_calibration;
        Ok(c)
    }

    pub fn metadata_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.metadata)
            .map_err(|e| ModelError::Artifact(e.to_string()))
    }
}

/// SHA-256 over the exact bytes a model was trained on, as lowercase hex.
pub fn fingerprint(set: &TrainingSet) -> String {
    let mut h = Sha256::new();
    h.update((set.n_features as u64).to_le_bytes());
    for v in &set.x {
        h.update(v.to_le_bytes());
    }
    for (&t, &y) in set.treated.iter().zip(&set.outcome) {
        h.update([u8::from(t), u8::from(y)]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

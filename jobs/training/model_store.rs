//! The model store, in the object store (a local folder or `s3://`): `<model>/<version>/` holds
//! the LightGBM text of each of the learner's models (`<role>.txt`) and `metadata.json`;
//! `<model>/current` names the version in use. The pointer is written last, as one object, so
//! a reader sees the old version or the new one, never half of one. Every move of the pointer
//! (training, `models promote`, `models rollback`) is recorded as one object in
//! `<model>/history/`, saying who moved it, when, and from which version.

use anyhow::{bail, Context, Result};
use chrono::Utc;
use models::{ModelArtifact, ModelMetadata, ModelName};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::Settings;
use crate::store::ObjectStore;

/// Saves each artifact to the configured store as its model's new `current` version.
pub async fn save_all(settings: &Settings, artifacts: &[&ModelArtifact]) -> Result<()> {
    let store = settings.models.open_store(&settings.store).await?;
    for artifact in artifacts {
        let uri = save(&store, artifact).await?;
        info!(uri = %uri, "model stored");
    }
    Ok(())
}

/// Saves an artifact and points `current` at it. Returns the version's URI.
pub async fn save(store: &ObjectStore, artifact: &ModelArtifact) -> Result<String> {
    let meta = &artifact.metadata;
    let dir = format!("{}/{}", meta.name, meta.version);
    let uri = store.uri(&dir);
    let write = async {
        for (role, text) in &artifact.models {
            store
                .put(&format!("{dir}/{role}.txt"), text.as_bytes())
                .await?;
        }
        store
            .put(
                &format!("{dir}/metadata.json"),
                artifact.metadata_json()?.as_bytes(),
            )
            .await?;
        anyhow::Ok(())
    };
    write
        .await
        .with_context(|| format!("cannot save model {} to {uri}", meta.version))?;
    point(store, &meta.name, &meta.version, Action::Train).await?;
    Ok(uri)
}

/// Why `current` moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A newly trained version became current.
    Train,
    /// An operator named the version (`models promote`).
    Promote,
    /// An operator put back the version before (`models rollback`).
    Rollback,
}

/// One move of a model's `current` pointer, as `<model>/history/` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointerMove {
    pub version: String,
    /// What `current` named before, if anything.
    pub previous: Option<String>,
    pub action: Action,
    /// The operator (`USER`) and machine (`HOSTNAME`) that moved it.
    pub by: String,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub at: String,
}

/// Points `current` at a stored version and records the move.
async fn point(
    store: &ObjectStore,
    name: &str,
    version: &str,
    action: Action,
) -> Result<PointerMove> {
    let now = Utc::now();
    let record = PointerMove {
        version: version.to_string(),
        previous: current_version(store, name).await?,
        action,
        by: format!(
            "{}@{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown".into())
        ),
        at: now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    let key = format!(
        "{name}/history/{}-{version}.json",
        now.format("%Y%m%dT%H%M%S%.6fZ")
    );
    store
        .put(&key, serde_json::to_string(&record)?.as_bytes())
        .await
        .with_context(|| format!("cannot record the move of {name}/current"))?;
    store
        .put(&format!("{name}/current"), version.as_bytes())
        .await
        .with_context(|| format!("cannot point {name}/current at {version}"))?;
    Ok(record)
}

/// The stored versions of a model, oldest first (a version begins with its training time).
async fn versions(store: &ObjectStore, name: ModelName) -> Result<Vec<String>> {
    let mut out: Vec<String> = store
        .list(&format!("{name}/"))
        .await?
        .iter()
        .filter_map(|k| {
            let rest = k.strip_prefix(&format!("{name}/"))?;
            let version = rest.strip_suffix("/metadata.json")?;
            (!version.contains('/')).then(|| version.to_string())
        })
        .collect();
    out.sort();
    Ok(out)
}

/// `models promote`: points `current` at a stored version.
pub async fn promote(store: &ObjectStore, name: ModelName, version: &str) -> Result<PointerMove> {
    let known = versions(store, name).await?;
    if !known.iter().any(|v| v == version) {
        bail!(
            "model {name} has no version {version:?} in {} (stored: {})",
            store.uri(name.as_str()),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    }
    point(store, name.as_str(), version, Action::Promote).await
}

/// `models rollback`: points `current` at the newest stored version older than it.
pub async fn rollback(store: &ObjectStore, name: ModelName) -> Result<PointerMove> {
    let Some(current) = current_version(store, name.as_str()).await? else {
        bail!(
            "model {name} has no current version in {}",
            store.uri(name.as_str())
        );
    };
    let known = versions(store, name).await?;
    let Some(before) = known.iter().rev().find(|v| **v < current) else {
        bail!("model {name} has no version older than {current} to roll back to");
    };
    point(store, name.as_str(), before, Action::Rollback).await
}

async fn read_metadata(store: &ObjectStore, dir: &str) -> Result<ModelMetadata> {
    let key = format!("{dir}/metadata.json");
    let bytes = store.get(&key).await?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("invalid model metadata {}", store.uri(&key)))
}

/// The version `current` points at, when there is one.
async fn current_version(store: &ObjectStore, name: &str) -> Result<Option<String>> {
    let pointer = store.get_opt(&format!("{name}/current")).await?;
    Ok(pointer.map(|v| String::from_utf8_lossy(&v).trim().to_string()))
}

/// The metadata of the `current` version of a model, or `None` when the store has none.
pub async fn current_metadata(
    store: &ObjectStore,
    name: ModelName,
) -> Result<Option<ModelMetadata>> {
    match current_version(store, name.as_str()).await? {
        Some(version) => Ok(Some(
            read_metadata(store, &format!("{name}/{version}")).await?,
        )),
        None => Ok(None),
    }
}

/// Loads the `current` version of a model, or `None` when the store has none.
pub async fn load_current(store: &ObjectStore, name: ModelName) -> Result<Option<ModelArtifact>> {
    let Some(version) = current_version(store, name.as_str()).await? else {
        return Ok(None);
    };
    let dir = format!("{name}/{version}");
    let metadata = read_metadata(store, &dir).await?;
    let mut texts = Vec::new();
    for role in models::uplift::roles(metadata.learner) {
        let key = format!("{dir}/{role}.txt");
        let bytes = store.get(&key).await?;
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8 text", store.uri(&key)))?;
        texts.push((role.to_string(), text));
    }
    Ok(Some(ModelArtifact {
        metadata,
        models: texts,
    }))
}

/// One stored version, as `targeting models list` shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub metadata: ModelMetadata,
    pub current: bool,
}

/// Every stored version of every model, by model then version (oldest first).
pub async fn list(store: &ObjectStore) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let keys = store.list("").await?;
    // `<model>/<version>/metadata.json`, sorted by key: by model, then version.
    let versions: Vec<(&str, &str)> = keys
        .iter()
        .filter_map(|k| {
            let dir = k.strip_suffix("/metadata.json")?;
            let (name, version) = dir.split_once('/')?;
            (!version.contains('/')).then_some((name, version))
        })
        .collect();
    let mut current: Option<(&str, Option<String>)> = None;
    for (name, version) in versions {
        if current.as_ref().is_none_or(|(n, _)| *n != name) {
            current = Some((name, current_version(store, name).await?));
        }
        let metadata = read_metadata(store, &format!("{name}/{version}")).await?;
        let is_current = current
            .as_ref()
            .and_then(|(_, v)| v.as_deref())
            .is_some_and(|v| v == metadata.version);
        out.push(Listed {
            current: is_current,
            metadata,
        });
    }
    Ok(out)
}

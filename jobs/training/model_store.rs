//! The model store, in the object store (a local folder or `s3://`): `<model>/<version>/` holds
//! the LightGBM text of each of the learner's models (`<role>.txt`) and `metadata.json`;
//! `<model>/current` names the version in use. The pointer is written last, as one object, so
//! a reader sees the old version or the new one, never half of one.

use anyhow::{Context, Result};
use models::{ModelArtifact, ModelMetadata, ModelName};
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
        store
            .put(&format!("{}/current", meta.name), meta.version.as_bytes())
            .await?;
        anyhow::Ok(())
    };
    write
        .await
        .with_context(|| format!("cannot save model {} to {uri}", meta.version))?;
    Ok(uri)
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

//! The model store on the local disk: `<store>/<model>/<version>/` holds the LightGBM text of
//! each of the learner's models (`<role>.txt`) and `metadata.json`; `<store>/<model>/current`
//! names the version in use.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use models::{ModelArtifact, ModelMetadata};

/// Saves an artifact and points `current` at it. Returns the version folder.
pub fn save(store: &Path, artifact: &ModelArtifact) -> Result<PathBuf> {
    let meta = &artifact.metadata;
    let dir = store.join(&meta.name).join(&meta.version);
    let write = || -> Result<()> {
        std::fs::create_dir_all(&dir)?;
        for (role, text) in &artifact.models {
            std::fs::write(dir.join(format!("{role}.txt")), text)?;
        }
        std::fs::write(dir.join("metadata.json"), artifact.metadata_json()?)?;
        // The pointer moves last, by rename, so readers see the old or the new version.
        let current = store.join(&meta.name).join("current");
        let tmp = current.with_extension("tmp");
        std::fs::write(&tmp, &meta.version)?;
        std::fs::rename(&tmp, &current)?;
        Ok(())
    };
    write().with_context(|| format!("cannot save model {} to {}", meta.version, dir.display()))?;
    Ok(dir)
}

fn read_metadata(dir: &Path) -> Result<ModelMetadata> {
    let path = dir.join("metadata.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("invalid model metadata {}", path.display()))
}

/// The version `current` points at, when there is one.
pub fn current_version(store: &Path, name: &str) -> Result<Option<String>> {
    let pointer = store.join(name).join("current");
    match std::fs::read_to_string(&pointer) {
        Ok(v) => Ok(Some(v.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => bail!("cannot read {}: {e}", pointer.display()),
    }
}

/// Loads the `current` version of a model, or `None` when the store has none.
pub fn load_current(store: &Path, name: &str) -> Result<Option<ModelArtifact>> {
    let Some(version) = current_version(store, name)? else {
        return Ok(None);
    };
    let dir = store.join(name).join(&version);
    let metadata = read_metadata(&dir)?;
    let mut texts = Vec::new();
    for role in models::uplift::roles(metadata.learner) {
        let path = dir.join(format!("{role}.txt"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
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
pub fn list(store: &Path) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let Ok(models) = std::fs::read_dir(store) else {
        return Ok(out);
    };
    let mut names: Vec<String> = models
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let current = current_version(store, &name)?;
        let mut versions: Vec<PathBuf> = std::fs::read_dir(store.join(&name))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("metadata.json").exists())
            .collect();
        versions.sort();
        for dir in versions {
            let metadata = read_metadata(&dir)?;
            out.push(Listed {
                current: current.as_deref() == Some(metadata.version.as_str()),
                metadata,
            });
        }
    }
    Ok(out)
}

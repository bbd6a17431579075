//! The model store on the local disk: `<store>/<model>/<version>/` holds the LightGBM text of
//! each of the learner's models (`<role>.txt`) and `metadata.json`; `<store>/<model>/current` names the version in use.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use models::ModelArtifact;

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

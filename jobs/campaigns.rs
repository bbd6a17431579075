//! Loading campaign files from the campaigns folder. Parsing and validation are the `segments`
//! crate's; this module reads the files and reports every broken one at once.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use segments::Campaign;

/// Reads and validates every `*.toml` in `dir` (sorted by file name), or the given files.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Campaign>> {
    let mut files = Vec::new();
    for path in paths {
        if !path.exists() {
            bail!(
                "campaigns folder or file {} does not exist (set targeting.campaigns_dir)",
                path.display()
            );
        }
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read campaigns folder {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        bail!("no campaign files (*.toml) in {}", join(paths));
    }
    let mut campaigns: Vec<Campaign> = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        match read_one(file) {
            Ok(c) => match campaigns.iter().find(|o| o.id == c.id) {
                Some(_) => problems.push(format!(
                    "{}: id {:?} is already used by another campaign file",
                    file.display(),
                    c.id
                )),
                None => campaigns.push(c),
            },
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join(" | "));
    }
    Ok(campaigns)
}

fn read_one(file: &Path) -> Result<Campaign> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read campaign file {}", file.display()))?;
    Ok(segments::campaign::parse(
        &file.display().to_string(),
        &text,
    )?)
}

/// Keeps the campaigns named in `ids` (all when empty); an unknown id is an error naming the
/// known ones.
pub fn pick(campaigns: Vec<Campaign>, ids: &[String]) -> Result<Vec<Campaign>> {
    if ids.is_empty() {
        return Ok(campaigns);
    }
    for id in ids {
        if !campaigns.iter().any(|c| &c.id == id) {
            let known: Vec<&str> = campaigns.iter().map(|c| c.id.as_str()).collect();
            bail!("unknown campaign {id:?} (known: {})", known.join(", "));
        }
    }
    Ok(campaigns
        .into_iter()
        .filter(|c| ids.contains(&c.id))
        .collect())
}

fn join(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

//! The publish stage: a campaign's treatment list as files a CRM tool can ingest.
//!
//! Layout `<destination>/<campaign_id>/dt=<YYYY-MM-DD>/run=<run_id>/`: the parts first, then
//! `manifest.json` (row count and SHA-256 per part), then `_SUCCESS` — the only signal a reader
//! may trust. Each file is written under a temporary name and renamed, so no reader sees half a
//! file; a failed export is removed before `_SUCCESS` could ever exist. Holdout members are
//! never in a list: the manifest only counts them.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use flate2::write::GzEncoder;
use flate2::Compression;
use segments::{Arm, Audience, Campaign, ExportFormat};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Rows per part; CRM imports cap files well above this (Braze: 500 MB per CSV).
pub const MAX_ROWS_PER_PART: usize = 1_000_000;
/// Columns of the `generic` preset, in file order.
pub const GENERIC_COLUMNS: &[&str] = &[
    "external_id",
    "campaign_id",
    "variant",
    "offer",
    "score",
    "rank",
];
/// The completion marker, written last.
pub const SUCCESS: &str = "_SUCCESS";

/// One written part, as listed in the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct PartInfo {
    pub path: String,
    pub rows: usize,
    pub bytes: usize,
    pub sha256: String,
}

/// `manifest.json`: what a reader needs to verify the export.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub campaign_id: String,
    pub campaign_kind: String,
    pub run_id: String,
    pub run_date: String,
    pub format: String,
    pub columns: Vec<String>,
    pub model_versions: std::collections::BTreeMap<String, String>,
    pub parts: Vec<PartInfo>,
    pub row_count: usize,
    pub holdout_count: usize,
    pub created_at: String,
}

/// An export whose parts and manifest are written but which is not yet complete.
#[derive(Debug)]
pub struct Staged {
    pub dir: PathBuf,
    pub uri: String,
    pub manifest: Manifest,
}

/// The local folder of a `file://` URI (`file:///abs` or `file://relative`).
pub fn file_uri_path(uri: &str) -> Result<PathBuf> {
    match uri.strip_prefix("file://") {
        Some(rest) if !rest.is_empty() => Ok(PathBuf::from(rest)),
        _ => bail!("export destination {uri:?} is not a file:// URI with a path"),
    }
}

/// What to publish.
#[derive(Debug)]
pub struct ExportRequest<'a> {
    pub campaign: &'a Campaign,
    pub audience: &'a Audience,
    pub destination: &'a str,
    pub run_id: &'a str,
    pub run_date: &'a str,
    pub model_versions: &'a std::collections::BTreeMap<String, String>,
    pub created_at: &'a str,
}

/// Writes the parts and the manifest of an export (not `_SUCCESS`). On error the run folder is
/// removed.
pub fn stage(req: &ExportRequest) -> Result<Staged> {
    let root = file_uri_path(req.destination)?;
    let rel = format!("{}/dt={}/run={}", req.campaign.id, req.run_date, req.run_id);
    let dir = root.join(&rel);
    let uri = format!("{}/{rel}", req.destination.trim_end_matches('/'));
    let result = write_parts(req, &dir).map(|manifest| Staged {
        dir: dir.clone(),
        uri: uri.clone(),
        manifest,
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.with_context(|| format!("cannot write export {uri}"))
}

fn write_parts(req: &ExportRequest, dir: &Path) -> Result<Manifest> {
    std::fs::create_dir_all(dir)?;
    let treated: Vec<_> = req
        .audience
        .members
        .iter()
        .filter(|m| m.arm == Arm::Treatment)
        .collect();
    let format = req.campaign.format;
    let mut parts = Vec::new();
    for (n, chunk) in treated.chunks(MAX_ROWS_PER_PART).enumerate() {
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record(GENERIC_COLUMNS)?;
        for m in chunk {
            csv.write_record([
                m.user_id.to_string(),
                req.campaign.id.clone(),
                "treatment".into(),
                req.campaign.offer.label.clone(),
                // Fixed precision: the same scores give byte-identical files.
                format!("{:.6}", m.score),
                m.rank.to_string(),
            ])?;
        }
        let plain = csv.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        let bytes = match format {
            ExportFormat::Csv => plain,
            ExportFormat::CsvGzip => {
                let mut gz = GzEncoder::new(Vec::new(), Compression::default());
                gz.write_all(&plain)?;
                gz.finish()?
            }
        };
        let name = format!("part-{n:05}.{}", format.extension());
        write_atomic(&dir.join(&name), &bytes)?;
        parts.push(PartInfo {
            path: name,
            rows: chunk.len(),
            bytes: bytes.len(),
            sha256: hex(&Sha256::digest(&bytes)),
        });
    }
    let manifest = Manifest {
        campaign_id: req.campaign.id.clone(),
        campaign_kind: req.campaign.kind.name().into(),
        run_id: req.run_id.into(),
        run_date: req.run_date.into(),
        format: format.name().into(),
        columns: GENERIC_COLUMNS.iter().map(|c| c.to_string()).collect(),
        model_versions: req.model_versions.clone(),
        row_count: treated.len(),
        holdout_count: req.audience.count(Arm::Holdout),
        parts,
        created_at: req.created_at.into(),
    };
    write_atomic(
        &dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    Ok(manifest)
}

/// Marks a staged export complete by writing `_SUCCESS`.
pub fn commit(staged: &Staged) -> Result<()> {
    write_atomic(&staged.dir.join(SUCCESS), b"")
        .with_context(|| format!("cannot complete export {}", staged.uri))
}

/// Removes a staged export that must not be published.
pub fn discard(staged: &Staged) {
    let _ = std::fs::remove_dir_all(&staged.dir);
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
